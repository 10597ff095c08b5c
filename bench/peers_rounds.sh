#!/bin/bash
# peers_rounds.sh - peers.sh in interleaved rounds, for comparing cairn
# builds (or mount options) with each other and with a peer on a machine
# whose load changes: each round runs every system once, in the order
# given, and the medians over the rounds are printed with the ratio of
# each system to the last one.
#
#   sudo bench/peers_rounds.sh [-n ROUNDS] [-o OUT] SYSTEM...
#
# A SYSTEM is LABEL=PATH, a cairn command to run as `peers.sh -c PATH
# cairn` (a wrapper script can add mount options), or the name of a
# peers.sh system (ext4, fuse2fs, passthrough). ROUNDS defaults to 3;
# OUT (default bench/results/rounds.txt) gets every raw line, labelled.
# Example: the tree against a baseline build and fuse2fs, 4 rounds:
#
#   sudo bench/peers_rounds.sh -n 4 base=/tmp/base/tools/cairn \
#       now=build-rel/tools/cairn fuse2fs
set -euo pipefail

here=$(dirname "$(realpath "$0")")
rounds=3
out=$here/results/rounds.txt
while getopts n:o:h opt; do
	case $opt in
	n) rounds=$OPTARG ;;
	o) out=$OPTARG ;;
	*)
		sed -n '2,17s/^# \{0,1\}//p' "$0"
		exit 2
		;;
	esac
done
shift $((OPTIND - 1))
[ $# -ge 1 ] || { echo "peers_rounds.sh: no system given (-h)" >&2; exit 2; }
: >"$out"
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT

for r in $(seq "$rounds"); do
	for s in "$@"; do
		label=${s%%=*}
		if [ "$label" != "$s" ]; then
			"$here/peers.sh" -c "${s#*=}" -o "$tmp" cairn >/dev/null
		else
			"$here/peers.sh" -o "$tmp" "$s" >/dev/null
		fi
		# peers.sh lines: SYSTEM WORKLOAD VALUE UNIT
		awk -v l="$label" '{ $1 = l; print }' "$tmp" >>"$out"
		echo "# round $r/$rounds: $label done (load $(cut -d' ' -f1 /proc/loadavg))" >&2
	done
done

# medians per system and workload, then each system against the last one
last=${*: -1}
last=${last%%=*}
awk -v last="$last" '
function median(list,   n, a, i, j, t) {
	n = split(list, a, " ")
	for (i = 1; i <= n; i++)
		for (j = i + 1; j <= n; j++)
			if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
	return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
{
	k = $1 SUBSEP $2
	v[k] = v[k] " " $3
	unit[$2] = $4
	if (!($1 in seen)) { seen[$1] = 1; sys[++ns] = $1 }
	if (!($2 in wseen)) { wseen[$2] = 1; wl[++nw] = $2 }
}
END {
	printf "%-13s %-8s", "workload", "unit"
	for (i = 1; i <= ns; i++) printf " %10s", sys[i]
	for (i = 1; i <= ns; i++) if (sys[i] != last) printf " %10s", sys[i] "/" last
	printf "\n"
	for (w = 1; w <= nw; w++) {
		printf "%-13s %-8s", wl[w], unit[wl[w]]
		for (i = 1; i <= ns; i++) m[i] = median(v[sys[i], wl[w]])
		for (i = 1; i <= ns; i++) printf " %10.1f", m[i]
		for (i = 1; i <= ns; i++) {
			if (sys[i] == last) continue
			for (j = 1; j <= ns; j++) if (sys[j] == last) ml = m[j]
			r = unit[wl[w]] == "s" ? ml / m[i] : m[i] / ml
			printf " %10.2f", r
		}
		printf "\n"
	}
}' "$out"

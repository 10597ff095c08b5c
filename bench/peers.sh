#!/bin/bash
# bench/peers.sh - cairn beside its peers, in one run on one machine:
# the workloads of ../shared/bench/fsbench.sh on
#   cairn        `cairn mount` of a fresh sparse image in /var/tmp
#   ext4         kernel ext4 on a loop-mounted image in /var/tmp
#   fuse2fs      the same ext4 image format through FUSE (fuse2fs)
#   passthrough  libfuse's passthrough_ll example over a directory in
#                /var/tmp (the ceiling of any FUSE filesystem here)
# then a table of every figure with the ratios cairn/ext4, cairn/fuse2fs
# and cairn/passthrough.
#
#   bench/peers.sh [-c CAIRN] [-o OUTFILE] [SYSTEM...]
#
#   -c CAIRN    the cairn binary (default build-k9/tools/cairn, else
#               build-release/tools/cairn); build it --buildtype=release
#   -o OUTFILE  keep the raw "SYSTEM WORKLOAD VALUE UNIT" lines (default
#               bench/results/peers-DATE.txt)
#   SYSTEM...   any of cairn ext4 fuse2fs passthrough (default: all four)
#
# Environment: FSBENCH (path of fsbench.sh; default ../shared/bench/),
# PEERS_DIR (work dir, default /var/tmp/cairn-peers), CAIRN_IMAGE_SIZE
# (default 16G), FSBENCH_TAR (a tarball for untar_sync/rm_tree; default:
# one of /usr/include made in PEERS_DIR; "none" skips those workloads).
#
# Sizing: cairn has no segment cleaner yet, so log space is never reused
# and a volume takes only about its own size of writes over its whole
# life. One fsbench pass writes about 1 GiB sequentially, 256 MiB..1 GiB
# of random 4 KiB writes (20 s; each a copy-on-write of the block plus
# metadata), 40 MiB of small files, 8 MiB of fsync appends and the
# untarred tree (~130 MiB): ~2-2.5 GiB including metadata. The cairn
# image is 16 GiB (sparse), several times that; `cairn info` after the
# run shows how much of it was used. ext4 images are 8 GiB as in
# ../shared/bench/peers.sh.
#
# Needs root (loop mounts, drop_caches), fio, bc, gcc, fuse2fs,
# e2fsprogs, libfuse3-dev (scripts/setup.sh installs them). Every mount
# and daemon is torn down and the images removed on exit, failure or not.
set -uo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
CAIRN=""
OUT=""
while getopts c:o:h opt; do
	case $opt in
	c) CAIRN=$(realpath "$OPTARG") ;;
	o) OUT=$OPTARG ;;
	*) sed -n '2,40p' "$0"; exit 2 ;;
	esac
done
shift $((OPTIND - 1))
SYS=${*:-cairn ext4 fuse2fs passthrough}

FSBENCH=${FSBENCH:-$ROOT/../shared/bench/fsbench.sh}
[ -x "$FSBENCH" ] || [ -f "$FSBENCH" ] || { echo "peers.sh: no fsbench.sh at $FSBENCH" >&2; exit 1; }
FSBENCH=$(realpath "$FSBENCH")
if [ -z "$CAIRN" ]; then
	for c in "$ROOT/build-k9/tools/cairn" "$ROOT/build-release/tools/cairn"; do
		[ -x "$c" ] && { CAIRN=$c; break; }
	done
fi
[ "$(id -u)" -eq 0 ] || { echo "peers.sh: needs root (loop mounts, drop_caches)" >&2; exit 1; }
for t in fio bc gcc fusermount3 mkfs.ext4 pkg-config flock; do
	command -v $t >/dev/null || { echo "peers.sh: $t missing (scripts/setup.sh)" >&2; exit 1; }
done

D=${PEERS_DIR:-/var/tmp/cairn-peers}
CSIZE=${CAIRN_IMAGE_SIZE:-16G}
mkdir -p "$D" "$ROOT/bench/results"
[ -n "$OUT" ] || OUT=$ROOT/bench/results/peers-$(date -u +%Y%m%dT%H%M%S).txt
: >"$OUT"

# ---- teardown: whatever happens --------------------------------------------------
DAEMON_PID=""
cleanup() {
	local m
	for m in "$D"/m_*; do
		[ -d "$m" ] || continue
		if mountpoint -q "$m" 2>/dev/null; then
			case $(awk -v m="$m" '$2 == m {print $3}' /proc/mounts) in
			fuse*) fusermount3 -u "$m" 2>/dev/null || fusermount3 -u -z "$m" ;;
			*) umount "$m" 2>/dev/null || umount -l "$m" ;;
			esac
		fi
	done
	[ -n "$DAEMON_PID" ] && kill "$DAEMON_PID" 2>/dev/null
	sleep 0.5
	rm -rf "$D"/*.img "$D"/pt_src "$D"/m_* "$D"/passthrough_ll "$D"/include.tar "$D"/daemon.log "$D"/daemon.pid
	rmdir "$D" 2>/dev/null
}
trap cleanup EXIT
trap 'exit 130' INT TERM

DROP='sync; echo 3 > /proc/sys/vm/drop_caches'
wait_mounted() { # DIR
	local i
	for ((i = 0; i < 400; i++)); do
		mountpoint -q "$1" && return 0
		sleep 0.05
	done
	echo "peers.sh: $1 not mounted after 20 s" >&2
	return 1
}
wait_pid() { # PID: a FUSE daemon finishing after its unmount
	local i
	for ((i = 0; i < 1200; i++)); do
		kill -0 "$1" 2>/dev/null || return 0
		sleep 0.05
	done
	echo "peers.sh: daemon $1 still running after 60 s" >&2
	return 1
}
# The daemons run in the foreground, in the background of this shell, so
# that a remount waits for the previous daemon to have finished writing
# (fusermount3 -u returns before a FUSE daemon's last write). fsbench.sh
# evals its REMOUNT argument in its own bash: these are exported to it,
# and the new daemon's pid goes through a file.
start_daemon() { # DIR CMD...
	local m=$1
	shift
	setsid "$@" >>"$D/daemon.log" 2>&1 </dev/null &
	echo $! >"$D/daemon.pid"
	wait_mounted "$m"
}
remount_fuse() { # DIR CMD...
	local m=$1 pid
	pid=$(cat "$D/daemon.pid")
	fusermount3 -u "$m" && wait_pid "$pid"
	eval "$DROP"
	start_daemon "$@"
}
export D DROP
export -f wait_mounted wait_pid start_daemon remount_fuse

# ---- the tarball for untar_sync / rm_tree -----------------------------------------
if [ "${FSBENCH_TAR:-}" = none ]; then
	unset FSBENCH_TAR
elif [ -z "${FSBENCH_TAR:-}" ]; then
	tar -cf "$D/include.tar" -C /usr include 2>/dev/null
	export FSBENCH_TAR=$D/include.tar
else
	export FSBENCH_TAR
fi

run() { # LABEL DIR REMOUNT
	echo "# $1: $(date -u +%T)" >&2
	bash "$FSBENCH" "$2" "$1" "$3" | tee -a "$OUT"
}

for s in $SYS; do
	case $s in
	cairn)
		[ -x "$CAIRN" ] || { echo "peers.sh: no cairn binary (-c)" >&2; exit 1; }
		img=$D/cairn.img m=$D/m_cairn
		rm -f "$img"; mkdir -p "$m"
		"$CAIRN" mkfs --size "$CSIZE" "$img" >/dev/null || exit 1
		start_daemon "$m" "$CAIRN" mount -f "$img" "$m" || exit 1
		DAEMON_PID=$(cat "$D/daemon.pid")
		run cairn "$m" "remount_fuse $m $CAIRN mount -f $img $m"
		DAEMON_PID=$(cat "$D/daemon.pid")
		fusermount3 -u "$m"; wait_pid "$DAEMON_PID"; DAEMON_PID=""
		echo "# cairn info after the run:" >&2
		"$CAIRN" info "$img" | sed 's/^/#   /' >&2
		rm -f "$img" ;;
	ext4)
		img=$D/ext4.img m=$D/m_ext4
		rm -f "$img"; truncate -s 8G "$img"; mkfs.ext4 -q -F "$img" || exit 1
		mkdir -p "$m"; mount -o loop "$img" "$m" || exit 1
		run ext4 "$m" "umount $m; $DROP; mount -o loop $img $m"
		umount "$m"; rm -f "$img" ;;
	fuse2fs)
		command -v fuse2fs >/dev/null || { echo "peers.sh: fuse2fs missing (apt-get install fuse2fs)" >&2; exit 1; }
		img=$D/f2.img m=$D/m_f2
		rm -f "$img"; truncate -s 8G "$img"; mkfs.ext4 -q -F "$img" || exit 1
		mkdir -p "$m"
		start_daemon "$m" fuse2fs -f "$img" "$m" || exit 1
		DAEMON_PID=$(cat "$D/daemon.pid")
		run fuse2fs "$m" "remount_fuse $m fuse2fs -f $img $m"
		DAEMON_PID=$(cat "$D/daemon.pid")
		fusermount3 -u "$m"; wait_pid "$DAEMON_PID"; DAEMON_PID=""
		rm -f "$img" ;;
	passthrough)
		PT=$D/passthrough_ll EX=/usr/share/doc/libfuse3-dev/examples
		gcc -O2 -I"$EX" "$EX/passthrough_ll.c" $(pkg-config --cflags --libs fuse3) -o "$PT" || exit 1
		m=$D/m_pt
		rm -rf "$D/pt_src"; mkdir -p "$D/pt_src" "$m"
		start_daemon "$m" "$PT" -f -o source="$D/pt_src" "$m" || exit 1
		DAEMON_PID=$(cat "$D/daemon.pid")
		run passthrough "$m" "remount_fuse $m $PT -f -o source=$D/pt_src $m"
		DAEMON_PID=$(cat "$D/daemon.pid")
		fusermount3 -u "$m"; wait_pid "$DAEMON_PID"; DAEMON_PID=""
		rm -rf "$D/pt_src" ;;
	*) echo "peers.sh: unknown system $s" >&2; exit 2 ;;
	esac
done

# ---- the table ----------------------------------------------------------------
# Ratios are speeds: figure/figure for rates, peer/cairn for times (unit
# "s"), so >1 always means cairn is faster than that peer.
echo
echo "raw figures: $OUT"
awk '
	{ v[$1 " " $2] = $3; u[$2] = $4; if (!($2 in seen)) { seen[$2] = 1; order[n++] = $2 } }
	function f(s, w) { return (s " " w) in v ? v[s " " w] : "-" }
	function r(w, p,   c, x) {
		c = f("cairn", w); x = f(p, w)
		if (c == "-" || x == "-" || c + 0 == 0 || x + 0 == 0) return "-"
		return sprintf("%.2f", u[w] == "s" ? x / c : c / x)
	}
	END {
		printf "| %-12s | %-9s | %10s | %10s | %10s | %11s | %10s | %12s | %14s |\n",
			"workload", "unit", "cairn", "ext4", "fuse2fs", "passthrough", "cairn/ext4", "cairn/fuse2fs", "cairn/passthru"
		print "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
		for (i = 0; i < n; i++) {
			w = order[i]
			printf "| %-12s | %-9s | %10s | %10s | %10s | %11s | %10s | %12s | %14s |\n",
				w, u[w], f("cairn", w), f("ext4", w), f("fuse2fs", w), f("passthrough", w),
				r(w, "ext4"), r(w, "fuse2fs"), r(w, "passthrough")
		}
	}' "$OUT"

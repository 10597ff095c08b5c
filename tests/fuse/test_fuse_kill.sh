#!/bin/bash
# test_fuse_kill.sh - kill -9 of the `cairn mount` daemon in the middle of
# a write-and-fsync workload, then remount: fsck is clean and everything
# fsynced is there.
#
#   tests/fuse/test_fuse_kill.sh PATH/TO/cairn PATH/TO/fuse_mkfs PATH/TO/fuse_kill_load
#
# Each run (one cmocka-style case, "kill_seed_<SEED>"): a fresh image
# (`cairn mkfs`), `cairn mount -f` in the background, fuse_kill_load
# writing, overwriting, appending, truncating, renaming and unlinking
# files with fsync, and recording in a manifest (outside the mount) each
# file's size and hash once its fsyncs returned; kill -9 of the daemon at
# a seeded moment; `fusermount3 -u -z` of the dead mount; `cairn fsck`
# (must exit 0); remount; every fsynced file reads back with its hash,
# every fsynced unlink stays unlinked (the operation in flight at the kill
# may have any outcome); a clean unmount (exit 0) and fsck again.
#
# Environment:
#   CAIRN_KILL_RUNS=<n>  runs (default 3); hundreds: CAIRN_KILL_RUNS=300
#   CAIRN_SEED=<n>       the first run's seed (default 1; run k uses n+k);
#                        CAIRN_SEED=random for a new one
# The seed fixes the workload (operations, sizes, contents), the kill
# delay and the commit interval. A failing run prints its replay line;
# the exact interleaving at the kill is timing and is not replayed, so
# the image left by the kill is kept (under $TMPDIR) for a failing run.
#
# Prints cmocka's report lines like test_fuse.sh, which
# scripts/test-summary.py counts; exits 77 with every case SKIPPED where
# FUSE cannot be used. The EXIT trap unmounts and kills whatever is left,
# whatever happens.
set -uo pipefail

usage="usage: test_fuse_kill.sh CAIRN FUSE_MKFS FUSE_KILL_LOAD"
CAIRN=$(realpath "${1:?$usage}")
FUSE_MKFS=$(realpath "${2:?$usage}")
LOAD=$(realpath "${3:?$usage}")

RUNS=${CAIRN_KILL_RUNS:-3}
SEED=${CAIRN_SEED:-1}
[ "$SEED" = random ] && SEED=$(( (RANDOM << 15 | RANDOM) + 1 ))
[[ "$RUNS" =~ ^[0-9]+$ && "$SEED" =~ ^[0-9]+$ ]] || { echo "# bad CAIRN_KILL_RUNS or CAIRN_SEED"; exit 1; }
WAIT_STEPS=200 # polls of 0.05 s: 10 s
IMG_MIB=1024   # sparse; the workload writes well under that before the kill

CASES=()
for ((k = 0; k < RUNS; k++)); do CASES+=("kill_seed_$((SEED + k))"); done

echo "[==========] Running ${#CASES[@]} test(s)."
echo "# seed: test_fuse_kill CAIRN_SEED=$SEED CAIRN_KILL_RUNS=$RUNS"

skip_all() {
	echo "# skip: $*"
	for c in "${CASES[@]}"; do
		echo "[ RUN      ] $c"
		echo "[  SKIPPED ] $c"
	done
	exit 77
}

command -v fusermount3 >/dev/null || skip_all "fusermount3 not installed (fuse3)"
command -v mountpoint >/dev/null || skip_all "mountpoint not installed (util-linux)"
command -v flock >/dev/null || skip_all "flock not installed (util-linux)"
[ -c /dev/fuse ] || skip_all "no /dev/fuse"
(exec 3<>/dev/fuse) 2>/dev/null || skip_all "/dev/fuse is not usable by $(id -un)"
"$CAIRN" help mount >/dev/null 2>&1 || skip_all "cairn was built without libfuse3"

dir=$(mktemp -d "${TMPDIR:-/tmp}/cairn-fuse-kill.XXXXXX")
pids=()

cleanup() {
	local p
	mountpoint -q "$dir/mnt" 2>/dev/null && fusermount3 -u -z "$dir/mnt" 2>/dev/null
	mountpoint -q "$dir/probe" 2>/dev/null && fusermount3 -u -z "$dir/probe" 2>/dev/null
	for p in "${pids[@]}"; do
		kill -9 "$p" 2>/dev/null
	done
	# a stale "dead" mount (ENOTCONN) left by a kill is not a mountpoint -q
	grep -q " $dir/" /proc/mounts && awk -v d="$dir/" 'index($2, d) == 1 {print $2}' /proc/mounts |
		while read -r m; do fusermount3 -u -z "$m" 2>/dev/null; done
	rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
cd "$dir" || exit 1

# ---- helpers (as in test_fuse.sh) ------------------------------------------------

case_name=""
case_failed=false

fail() {
	echo "# FAIL ($case_name): $*"
	case_failed=true
	return 1
}

wait_mounted() { # DIR
	local i
	for ((i = 0; i < WAIT_STEPS; i++)); do
		mountpoint -q "$1" && return 0
		sleep 0.05
	done
	fail "$1 not mounted after 10 s"
}

wait_exit() { # PID: its exit code in $exit_rc
	local i
	for ((i = 0; i < WAIT_STEPS; i++)); do
		if ! kill -0 "$1" 2>/dev/null; then
			{ wait "$1"; } 2>/dev/null # no "Killed" job notice
			exit_rc=$?
			return 0
		fi
		sleep 0.05
	done
	fail "process $1 still running after 10 s"
}

wait_gone() { # IMAGE: no process holds its lock
	local i
	for ((i = 0; i < WAIT_STEPS; i++)); do
		flock -n -E 75 "$1" true 2>/dev/null && return 0
		sleep 0.05
	done
	fail "$1 still locked after 10 s"
}

mount_fg() { # IMAGE DIR [OPTS...]: `cairn mount -f` in the background; pid in $fg_pid
	local img=$1 mnt=$2
	shift 2
	"$CAIRN" -v mount -f "$@" "$img" "$mnt" >>"$dir/daemon.log" 2>&1 &
	fg_pid=$!
	pids+=("$fg_pid")
	wait_mounted "$mnt" || { sed 's/^/#   daemon: /' "$dir/daemon.log"; return 1; }
}

mkimg() { # IMAGE MIB: a new filesystem (cairn mkfs; fuse_mkfs if it makes no namespace)
	local img=$1 mib=$2
	rm -f "$img"
	"$CAIRN" mkfs --size "${mib}M" "$img" >/dev/null 2>&1 || { fail "cairn mkfs $img"; return 1; }
	mkdir -p "$dir/probe"
	if "$CAIRN" mount "$img" "$dir/probe" 2>/dev/null; then
		fusermount3 -u "$dir/probe"
		wait_gone "$img"
		return 0
	fi
	rm -f "$img"
	"$FUSE_MKFS" "$img" "$mib" || fail "fuse_mkfs $img"
}

fsck_clean() { # IMAGE WHEN
	"$CAIRN" fsck "$1" >fsck.out 2>&1
	local rc=$?
	[ "$rc" -eq 0 ] && return 0
	sed 's/^/#   fsck: /' fsck.out | head -40
	fail "cairn fsck $2 exited $rc"
}

# ---- one run ------------------------------------------------------------------------

run_seed() { # SEED
	local s=$1 m=$dir/mnt img=$dir/kill.img load_pid delay_ms commit opts=()
	RANDOM=$s
	delay_ms=$((100 + RANDOM % 2900))
	case $((RANDOM % 3)) in
	0) commit="" ;;
	1) commit=1 ;;
	2) commit=30 ;;
	esac
	[ -n "$commit" ] && opts=(-o "commit=$commit")
	echo "# seed $s: kill after ${delay_ms} ms, commit=${commit:-default}"
	rm -f "$dir/daemon.log" manifest load.err
	mkdir -p "$m"
	mkimg "$img" $IMG_MIB || return
	mount_fg "$img" "$m" "${opts[@]}" || return
	local daemon=$fg_pid
	disown "$daemon" # no "Killed" job notice; it is waited for by kill -0
	"$LOAD" run "$m" manifest "$s" 2>load.err &
	load_pid=$!
	pids+=("$load_pid")
	sleep "$(printf '%d.%03d' $((delay_ms / 1000)) $((delay_ms % 1000)))"
	kill -0 "$load_pid" 2>/dev/null || fail "the workload ended before the kill: $(cat load.err)"
	kill -9 "$daemon"
	wait_exit "$daemon" || return
	wait_exit "$load_pid" || return
	[ "$exit_rc" -eq 0 ] || { fail "the workload exited $exit_rc: $(cat load.err)"; return; }
	fusermount3 -u -z "$m" 2>/dev/null || fail "fusermount3 -u -z of the dead mount"
	wait_gone "$img" || return
	echo "# $(grep -c '^end$' manifest) operations fsynced; $(tail -c 200 load.err | tr '\n' ' ')"
	cp --sparse=always "$img" killed.img
	fsck_clean "$img" "after the kill" || return
	mount_fg "$img" "$m" "${opts[@]}" || return
	"$LOAD" verify "$m" manifest >verify.out 2>&1 || fail "fsynced data lost or wrong after remount:"
	head -40 verify.out
	fusermount3 -u "$m" || fail "fusermount3 -u after the remount"
	wait_exit "$fg_pid" || return
	[ "$exit_rc" -eq 0 ] || fail "daemon exited $exit_rc after unmount"
	fsck_clean "$img" "after the remount" || return
	rm -f "$img" killed.img
}

run_case() { # NAME SEED
	case_name=$1
	case_failed=false
	echo "[ RUN      ] $1"
	run_seed "$2"
	if $case_failed; then
		# whatever is left of this run, so that the next starts clean
		mountpoint -q "$dir/mnt" && fusermount3 -u -z "$dir/mnt" 2>/dev/null
		for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
		grep -q " $dir/mnt " /proc/mounts && fusermount3 -u -z "$dir/mnt" 2>/dev/null
		local keep
		keep=$(mktemp -d "${TMPDIR:-/tmp}/cairn-kill-seed$2.XXXXXX")
		cp --sparse=always killed.img manifest daemon.log load.err "$keep"/ 2>/dev/null
		echo "# kill case failed: CAIRN_SEED=$2"
		echo "# replay: CAIRN_SEED=$2 CAIRN_KILL_RUNS=1 bash $0 $CAIRN $FUSE_MKFS $LOAD"
		echo "# the image as the kill left it, the manifest and the daemon's log: $keep"
		echo "[  FAILED  ] $1"
		failures=$((failures + 1))
	else
		echo "[       OK ] $1"
	fi
	pids=()
}

failures=0
for ((k = 0; k < RUNS; k++)); do
	run_case "${CASES[$k]}" $((SEED + k))
done
echo "[==========] ${#CASES[@]} test(s) run."
[ "$failures" -eq 0 ]

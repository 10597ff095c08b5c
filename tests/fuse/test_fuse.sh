#!/bin/bash
# test_fuse.sh - `cairn mount` driven as a user would drive it: mount a
# fresh volume, use it with ordinary tools, unmount, remount, check.
#
#   tests/fuse/test_fuse.sh PATH/TO/cairn PATH/TO/fuse_mkfs PATH/TO/mount.fuse.cairn \
#	PATH/TO/fuse_model
#
# ONLY_CASES="case ..." in the environment runs only those cases.
# Case `model` runs fuse_model (randomized operations against a model)
# with CAIRN_MODEL_SEEDS (default "1 2 3") and CAIRN_MODEL_OPS (default
# 3000) operations each; CAIRN_MODEL_SEEDS="$(seq 100)" runs a hundred.
#
# Prints cmocka's report lines ("[ RUN      ] case", "[       OK ] case",
# "[  FAILED  ] case", "[  SKIPPED ] case"), which scripts/test-summary.py
# counts. Exits 77 (meson's skip) with every case SKIPPED when FUSE
# cannot be used here (no usable /dev/fuse, no fusermount3). Every mount
# is waited for by polling `mountpoint -q` (bounded), never by sleeping a
# fixed time, and is unmounted by the EXIT trap whatever happens.
set -uo pipefail

CAIRN=$(realpath "${1:?usage: test_fuse.sh CAIRN FUSE_MKFS MOUNT_HELPER FUSE_MODEL}")
FUSE_MKFS=$(realpath "${2:?usage: test_fuse.sh CAIRN FUSE_MKFS MOUNT_HELPER FUSE_MODEL}")
HELPER=$(realpath "${3:?usage: test_fuse.sh CAIRN FUSE_MKFS MOUNT_HELPER FUSE_MODEL}")
MODEL=$(realpath "${4:?usage: test_fuse.sh CAIRN FUSE_MKFS MOUNT_HELPER FUSE_MODEL}")

CASES=(${ONLY_CASES:-errors file_ops large_dir parallel busy persistence remount_at_once sigterm_helper
	permissions read_only enospc flush_once snapshots snapshot_beside
	snapshot_renamed_image checkpoints model names_and_sizes})
WAIT_STEPS=200 # polls of 0.05 s: 10 s

echo "[==========] Running ${#CASES[@]} test(s)."

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
[ -c /dev/fuse ] || skip_all "no /dev/fuse"
(exec 3<>/dev/fuse) 2>/dev/null || skip_all "/dev/fuse is not usable by $(id -un)"
"$CAIRN" help mount >/dev/null 2>&1 || skip_all "cairn was built without libfuse3"

dir=$(mktemp -d "${TMPDIR:-/tmp}/cairn-fuse.XXXXXX")
chmod 755 "$dir" # other users reach the mount in the permissions case
pids=()

cleanup() {
	local m p
	for m in "$dir"/mnt*; do
		mountpoint -q "$m" 2>/dev/null && fusermount3 -u -z "$m" 2>/dev/null
	done
	for p in "${pids[@]}"; do
		kill "$p" 2>/dev/null
	done
	rm -rf "$dir"
}
trap cleanup EXIT
cd "$dir" || exit 1

# ---- helpers ------------------------------------------------------------------

case_name=""
case_failed=false

fail() {
	echo "# FAIL ($case_name): $*"
	case_failed=true
	return 1
}

check() { # check WHAT CMD...: run CMD, fail with WHAT unless it succeeds
	local what=$1
	shift
	"$@" >out 2>err || {
		sed 's/^/#   stdout: /' out
		sed 's/^/#   stderr: /' err
		fail "$what"
	}
}

# expect_error CODE PATTERN WHAT CMD...: exit CODE, one stderr line matching PATTERN
expect_error() {
	local code=$1 pat=$2 what=$3 rc
	shift 3
	"$@" >out 2>err
	rc=$?
	[ "$rc" -eq "$code" ] || { cat err | sed 's/^/#   stderr: /'; fail "$what: exit $rc, expected $code"; return 1; }
	[ "$(wc -l <err)" -eq 1 ] || { sed 's/^/#   stderr: /' err; fail "$what: stderr is not one line"; return 1; }
	grep -q "$pat" err || { sed 's/^/#   stderr: /' err; fail "$what: stderr does not match '$pat'"; return 1; }
}

wait_mounted() { # wait_mounted DIR
	local i
	for ((i = 0; i < WAIT_STEPS; i++)); do
		mountpoint -q "$1" && return 0
		sleep 0.05
	done
	fail "$1 not mounted after 10 s"
}

wait_exit() { # wait_exit PID: the daemon's exit code in $exit_rc
	local i
	for ((i = 0; i < WAIT_STEPS; i++)); do
		if ! kill -0 "$1" 2>/dev/null; then
			wait "$1" 2>/dev/null
			exit_rc=$?
			return 0
		fi
		sleep 0.05
	done
	fail "daemon $1 still running after 10 s"
}

wait_gone() { # wait_gone IMAGE: the daemon that had IMAGE let go of its lock
	local i
	for ((i = 0; i < WAIT_STEPS; i++)); do
		flock -n -E 75 "$1" true 2>/dev/null && return 0
		sleep 0.05
	done
	fail "$1 still locked after 10 s"
}

# mount_fg IMAGE DIR [OPTS...]: `cairn mount -f` in the background; pid in $fg_pid
# mount_fg IMAGE DIR [OPTIONS...]: a daemon in the foreground, its pid in
# fg_pid; its log is $dir/daemon.log, or $MOUNT_LOG for a second mount at once.
declare -A daemon_logs
mount_fg() {
	local img=$1 mnt=$2 log=${MOUNT_LOG:-$dir/daemon.log}
	shift 2
	"$CAIRN" -v mount -f "$@" "$img" "$mnt" >"$log" 2>&1 &
	fg_pid=$!
	pids+=("$fg_pid")
	daemon_logs[$fg_pid]=$log
	wait_mounted "$mnt" || { sed 's/^/#   daemon: /' "$log"; return 1; }
}

unmount() { # unmount DIR PID: fusermount3 -u, then the daemon exits 0
	local log=${daemon_logs[$2]:-$dir/daemon.log}
	fusermount3 -u "$1" || { fail "fusermount3 -u $1"; return 1; }
	wait_exit "$2" || return 1
	[ "$exit_rc" -eq 0 ] || fail "daemon exited $exit_rc after unmount"
	! grep -q "forget" "$log" || fail "lookup counts: $(grep forget "$log")"
}

# mkimg IMAGE MIB: a new filesystem. `cairn mkfs` makes the volume; until
# it also makes the namespace, fuse_mkfs (cairn_mkfs) does both.
mkimg() {
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

run_case() {
	case_name=$1
	case_failed=false
	echo "[ RUN      ] $1"
	"case_$1"
	if $case_failed; then
		echo "[  FAILED  ] $1"
		failures=$((failures + 1))
	else
		echo "[       OK ] $1"
	fi
}

# ---- cases ----------------------------------------------------------------------

case_errors() {
	mkdir -p mnt0
	head -c 1M /dev/zero >notcairn.img
	expect_error 1 "not a cairn volume" "an image that is not cairn" \
		"$CAIRN" mount notcairn.img mnt0
	expect_error 1 "No such file" "a missing image" "$CAIRN" mount missing.img mnt0
	mkimg a.img 64 || return
	expect_error 1 "does not exist" "a missing mount point" "$CAIRN" mount a.img nodir
	expect_error 1 "not a directory" "a mount point that is a file" \
		"$CAIRN" mount a.img notcairn.img
	mkimg broken.img 64 || return
	# its checkpoints and first logs overwritten (the superblock, block 0, kept)
	head -c 8M /dev/zero | tr '\0' '\245' | dd of=broken.img bs=4096 seek=1 conv=notrunc status=none
	expect_error 1 "corrupt" "a corrupt image" "$CAIRN" mount broken.img mnt0
	expect_error 2 "no DIR given" "a missing DIR" "$CAIRN" mount a.img
	expect_error 2 "unknown option" "an unknown option" "$CAIRN" mount --bogus a.img mnt0
	expect_error 2 "bad mount options" "an -o option libfuse does not know" \
		"$CAIRN" mount -o no_such_option a.img mnt0
	expect_error 2 "spin='1001' is not a number" "-o spin= out of range" \
		"$CAIRN" mount -o spin=1001 a.img mnt0
	expect_error 2 "spin='-1' is not a number" "-o spin= negative" \
		"$CAIRN" mount -o spin=-1 a.img mnt0
	mountpoint -q mnt0 && fail "something got mounted"
}

case_file_ops() {
	local m=mnt1
	mkdir -p $m
	mkimg b.img 128 || return
	mount_fg b.img $m || return
	check "write a file" sh -c "echo hello >$m/a"
	[ "$(cat $m/a)" = hello ] || fail "read back"
	check "mkdir" mkdir -p $m/d/e
	check "rename" mv $m/a $m/d/b
	[ ! -e $m/a ] && [ "$(cat $m/d/b)" = hello ] || fail "rename moved nothing"
	[ "$(ls $m/d | tr '\n' ' ')" = "b e " ] || fail "ls: $(ls $m/d)"
	check "overwrite (O_TRUNC)" sh -c "printf 'a longer text' >$m/t; printf ab >$m/t"
	[ "$(cat $m/t)" = ab ] || fail "O_TRUNC left: $(cat $m/t)"
	check "rm" rm $m/t
	check "append" sh -c "echo world >>$m/d/b"
	[ "$(cat $m/d/b)" = "$(printf 'hello\nworld')" ] || fail "append"
	check "hard link" ln $m/d/b $m/hl
	[ "$(stat -c %h $m/hl)" = 2 ] || fail "nlink after ln: $(stat -c %h $m/hl)"
	[ "$(stat -c %i $m/hl)" = "$(stat -c %i $m/d/b)" ] || fail "a hard link has its own inode"
	check "symlink" ln -s d/b $m/sl
	[ "$(readlink $m/sl)" = d/b ] && [ "$(head -1 $m/sl)" = hello ] || fail "symlink"
	check "truncate" truncate -s 3 $m/hl
	[ "$(cat $m/d/b)" = hel ] || fail "truncate through a hard link"
	check "big write" dd if=/dev/urandom of=big.src bs=1M count=8 status=none
	check "copy with fsync" dd if=big.src of=$m/big bs=256K conv=fsync status=none
	cmp -s big.src $m/big || fail "big file differs"
	check "chmod" chmod 640 $m/big
	[ "$(stat -c %a $m/big)" = 640 ] || fail "chmod"
	check "touch -d" touch -d "2001-02-03 04:05:06" $m/big
	[ "$(stat -c %Y $m/big)" = "$(date -d '2001-02-03 04:05:06' +%s)" ] || fail "mtime"
	if command -v setfattr >/dev/null; then
		check "setfattr" setfattr -n user.color -v blue $m/big
		[ "$(getfattr --only-values -n user.color $m/big)" = blue ] || fail "getfattr"
		getfattr -d $m/big 2>/dev/null | grep -q 'user.color="blue"' || fail "listxattr"
		check "setfattr -x" setfattr -x user.color $m/big
		getfattr -n user.color $m/big >/dev/null 2>&1 && fail "xattr still there"
	else
		echo "# setfattr not installed (attr): xattrs not checked"
	fi
	if command -v python3 >/dev/null; then
		check "renameat2 flags" python3 - "$m" <<'PY'
import ctypes, errno, os, sys
m = sys.argv[1]
libc = ctypes.CDLL(None, use_errno=True)
def rename2(a, b, flags):
    r = libc.renameat2(-100, os.fsencode(a), -100, os.fsencode(b), flags)
    return 0 if r == 0 else ctypes.get_errno()
open(m + "/x1", "w").write("one")
open(m + "/x2", "w").write("two")
assert rename2(m + "/x1", m + "/x2", 1) == errno.EEXIST, "NOREPLACE"
assert rename2(m + "/x1", m + "/x2", 2) == 0, "EXCHANGE"
assert open(m + "/x1").read() == "two" and open(m + "/x2").read() == "one", "EXCHANGE swapped nothing"
e = rename2(m + "/x1", m + "/x3", 4)
assert e == errno.EINVAL, "WHITEOUT: %s" % os.strerror(e)
assert os.path.exists(m + "/x1") and not os.path.exists(m + "/x3"), "WHITEOUT renamed"
os.unlink(m + "/x1")
os.unlink(m + "/x2")
PY
	fi
	check "rm" rm $m/hl
	[ "$(stat -c %h $m/d/b)" = 1 ] || fail "nlink after rm"
	check "rmdir" rmdir $m/d/e
	rmdir $m/d 2>/dev/null && fail "rmdir of a non-empty directory"
	check "mknod fifo" mkfifo $m/fifo
	[ -p $m/fifo ] || fail "fifo"
	if [ "$(id -u)" -eq 0 ]; then
		check "mknod char device" mknod $m/cdev c 1 3
		[ "$(stat -c %F:%t:%T $m/cdev)" = "character special file:1:3" ] ||
			fail "char device: $(stat -c %F:%t:%T $m/cdev)"
		check "rm device" rm $m/cdev
	fi
	if command -v fallocate >/dev/null; then
		check "fallocate" fallocate -l 1M $m/fa
		[ "$(stat -c %s $m/fa)" = 1048576 ] || fail "fallocate size"
		check "fallocate -n" fallocate -n -o 1M -l 1M $m/fa
		[ "$(stat -c %s $m/fa)" = 1048576 ] || fail "fallocate -n (KEEP_SIZE) changed the size"
		check "fill" dd if=big.src of=$m/fa bs=1M count=1 conv=notrunc,fsync status=none
		check "punch" fallocate -p -o 4096 -l 8192 $m/fa
		[ "$(head -c 12288 $m/fa | tail -c 8192 | tr -d '\0' | wc -c)" -eq 0 ] ||
			fail "punched range is not zeros"
		cmp -s <(head -c 4096 big.src) <(head -c 4096 $m/fa) || fail "punch hit the block before"
		check "rm" rm $m/fa
	fi
	# a file unlinked while open keeps its data until closed
	check "unlinked open file" sh -c "exec 3<$m/big; rm $m/big; cmp -s big.src /dev/fd/3"
	check "statfs" stat -f $m
	# the kernel forgets what it drops: FORGETs must match the lookups
	if [ -w /proc/sys/vm/drop_caches ]; then
		sync
		echo 2 >/proc/sys/vm/drop_caches
		[ "$(cat $m/d/b)" = hel ] || fail "d/b after dropping the kernel's caches"
		ls -lR $m >/dev/null || fail "ls -lR after dropping the kernel's caches"
		echo 2 >/proc/sys/vm/drop_caches
	fi
	check "sync" sync -f $m
	unmount $m "$fg_pid"
}

# listings longer than one READDIR(PLUS) reply resume at the right cookie
case_large_dir() {
	local m=mnt6 n
	mkdir -p $m
	mkimg f.img 512 || return
	mount_fg f.img $m || return
	check "mkdir" mkdir $m/many
	(cd $m/many && seq -f "file-with-a-longish-name-%04g" 1 1500 | xargs touch) ||
		fail "create 1500 files"
	n=$(ls $m/many | wc -l)
	[ "$n" -eq 1500 ] || fail "ls lists $n of 1500"
	# shellcheck disable=SC2010 # ls -l is the point: READDIRPLUS
	n=$(ls -l $m/many | grep -c '^-')
	[ "$n" -eq 1500 ] || fail "ls -l lists $n of 1500"
	[ "$(ls $m/many | sort -u | wc -l)" -eq 1500 ] || fail "duplicates in the listing"
	# remove while listing: every name that stayed is listed once
	check "rm half while listing" sh -c "ls $m/many >/dev/null & rm $m/many/*[02468]; wait"
	n=$(ls $m/many | wc -l)
	[ "$n" -eq 750 ] || fail "after removing half: $n"
	check "rm -r" rm -r $m/many
	[ -z "$(ls $m)" ] || fail "not empty: $(ls $m)"
	unmount $m "$fg_pid"
}

# several writers and readers at once (the multi-threaded loop)
case_parallel() {
	local m=mnt6 i jobs=()
	mount_fg f.img $m || return
	head -c 4M /dev/urandom >par.src
	for i in 1 2 3 4 5 6; do
		dd if=par.src of=$m/p$i bs=64K conv=fsync status=none &
		jobs+=($!)
	done
	for i in "${jobs[@]}"; do # not a bare wait: the daemon is a child too
		wait "$i" || fail "a writer failed"
	done
	for i in 1 2 3 4 5 6; do
		cmp -s par.src $m/p$i || fail "p$i differs"
	done
	jobs=()
	for i in 1 2 3 4 5 6; do
		mv $m/p$i $m/q$i &
		jobs+=($!)
	done
	for i in "${jobs[@]}"; do
		wait "$i" || fail "a rename failed"
	done
	[ "$(ls $m | tr '\n' ' ')" = "q1 q2 q3 q4 q5 q6 " ] || fail "after renames: $(ls $m)"
	unmount $m "$fg_pid"
}

case_busy() {
	local m=mnt2
	mkdir -p $m mnt2b
	mkimg c.img 64 || return
	mount_fg c.img $m || return
	expect_error 1 "in use" "an image mounted elsewhere" "$CAIRN" mount c.img mnt2b
	expect_error 1 "busy" "a busy mount point" "$CAIRN" mount a.img $m
	mountpoint -q mnt2b && fail "mounted twice"
	# fsck would read a state that changes under it
	expect_error 8 "in use" "fsck of a mounted image" "$CAIRN" fsck c.img
	# at once after the unmount: fsck waits for the daemon's last commit
	fusermount3 -u $m || fail "fusermount3 -u $m"
	check "fsck right after the unmount" "$CAIRN" fsck c.img
	wait_exit "$fg_pid"
}

# unmount, then remount as a daemon: everything file_ops left is there
case_persistence() {
	local m=mnt1
	check "remount (daemon)" "$CAIRN" mount b.img $m || return
	mountpoint -q $m || { fail "not mounted when cairn mount returned"; return; }
	[ "$(cat $m/d/b)" = hel ] || fail "d/b after remount"
	[ "$(readlink $m/sl)" = d/b ] || fail "symlink after remount"
	[ -p $m/fifo ] || fail "fifo after remount"
	[ ! -e $m/big ] || fail "an unlinked file came back"
	[ "$(ls $m | tr '\n' ' ')" = "d fifo sl " ] || fail "ls after remount: $(ls $m)"
	check "write after remount" cp big.src $m/big2
	fusermount3 -u $m || fail "fusermount3 -u"
	wait_gone b.img
}

# `umount && mount` at once: the new mount waits for the old daemon's commit
case_remount_at_once() {
	local m=mnt6
	check "mount" "$CAIRN" mount f.img $m || return
	check "write" cp par.src $m/r
	fusermount3 -u $m || { fail "fusermount3 -u"; return; }
	check "mount again at once" "$CAIRN" mount f.img $m || return
	cmp -s par.src $m/r || fail "r after remount"
	fusermount3 -u $m || fail "fusermount3 -u"
	wait_gone f.img
}

# SIGTERM commits what the kernel still caches; mount.fuse.cairn mounts
case_sigterm_helper() {
	local m=mnt1
	mount_fg b.img $m || return
	cmp -s big.src $m/big2 || fail "big2 after remount"
	check "write" cp big.src $m/big3 # in the writeback cache, not synced
	kill -TERM "$fg_pid"
	wait_exit "$fg_pid" || return
	[ "$exit_rc" -eq 0 ] || fail "exit code $exit_rc after SIGTERM"
	mountpoint -q $m && fail "still mounted after SIGTERM"
	check "mount.fuse.cairn" "$HELPER" "$dir/b.img" "$dir/$m" -o rw,nofail,defaults || return
	mountpoint -q $m || { fail "the helper did not mount"; return; }
	cmp -s big.src $m/big3 || fail "big3 lost at SIGTERM"
	fusermount3 -u $m || fail "fusermount3 -u"
	wait_gone b.img
}

case_permissions() {
	local m=mnt3 as
	if [ "$(id -u)" -ne 0 ] || ! command -v setpriv >/dev/null || ! id nobody >/dev/null 2>&1; then
		echo "# needs root, setpriv and user nobody: not checked"
		return
	fi
	as="setpriv --reuid=$(id -u nobody) --regid=$(id -g nobody) --clear-groups"
	mkdir -p $m
	mkimg d.img 64 || return
	mount_fg d.img $m -o allow_other || return
	chmod 1777 $m
	mkdir $m/private && chmod 700 $m/private && echo secret >$m/private/f
	echo root >$m/rootfile && chmod 644 $m/rootfile
	$as cat $m/private/f >/dev/null 2>&1 && fail "read inside a 0700 directory of root"
	$as sh -c "echo x >$m/rootfile" 2>/dev/null && fail "wrote a 0644 file of root"
	$as chmod 666 $m/rootfile 2>/dev/null && fail "chmod of root's file"
	$as rm $m/rootfile 2>/dev/null && fail "removed root's file from a sticky directory"
	check "create as nobody" $as sh -c "echo mine >$m/nobodyfile"
	[ "$(stat -c %u:%g $m/nobodyfile)" = "$(id -u nobody):$(id -g nobody)" ] ||
		fail "owner of a new file: $(stat -c %u:%g $m/nobodyfile)"
	check "chmod own file" $as chmod 600 $m/nobodyfile
	cat $m/nobodyfile >/dev/null || fail "root cannot read"
	unmount $m "$fg_pid"
}

case_read_only() {
	local m=mnt4
	mkdir -p $m
	mount_fg c.img $m -o ro || return
	grep -q " $dir/$m fuse.cairn ro," /proc/mounts || fail "not mounted ro"
	sh -c "echo x >$m/f" 2>err && fail "wrote on a read-only mount"
	grep -q "Read-only" err || fail "not EROFS: $(cat err)"
	unmount $m "$fg_pid"
}

case_enospc() {
	local m=mnt5
	mkdir -p $m
	mkimg e.img 48 || return
	mount_fg e.img $m || return
	head -c 80M /dev/urandom >fill.src
	dd if=fill.src of=$m/fill bs=1M conv=fsync status=none 2>err && fail "80 MiB fit in 48"
	grep -q "No space left on device" err || fail "not ENOSPC: $(cat err)"
	unmount $m "$fg_pid"
	# without fsync: the writeback cache takes the writes, close(2) fails
	mkimg e2.img 48 || return
	mount_fg e2.img $m || return
	cp fill.src $m/fill 2>err && fail "80 MiB fit in 48 (cp)"
	grep -q "close.*No space left on device" err || fail "close is not ENOSPC: $(cat err)"
	unmount $m "$fg_pid"
}

# close(2) of a written file: the kernel writes the pages and times back
# and sends FLUSH, which the daemon answers ENOSYS once (fuse_file.c,
# invariant 4), so no other close costs a FLUSH round trip; the data and
# the times written before the close are still there after a remount.
case_flush_once() {
	local m=mnt7 i n
	mkdir -p $m
	mkimg g.img 64 || return
	mount_fg g.img $m -d -o spin=0 || return # a loop that never polls, too
	for ((i = 0; i < 20; i++)); do
		echo "file $i" >$m/f$i || fail "write f$i"
	done
	touch -d "2001-02-03 04:05:06" $m/f7
	n=$(grep -c "opcode: FLUSH" "$dir/daemon.log")
	[ "$n" -le 1 ] || fail "$n FLUSH requests for 20 closes"
	fusermount3 -u $m || { fail "fusermount3 -u"; return; }
	wait_exit "$fg_pid" || return
	[ "$exit_rc" -eq 0 ] || fail "daemon exited $exit_rc after unmount"
	mount_fg g.img $m || return
	[ "$(cat $m/f19)" = "file 19" ] || fail "f19 after remount: $(cat $m/f19)"
	[ "$(stat -c %Y $m/f7)" = "$(date -d '2001-02-03 04:05:06' +%s)" ] ||
		fail "mtime of f7 after remount"
	unmount $m "$fg_pid"
}

# Snapshots of the mounted volume through the mount (the control ioctls),
# each frozen while the volume changes; one mounted read-only by name; the
# others' users refused; deleting one through the mount.
# The blocks only snapshots keep, from the 'space pinned' line of df's output in ./out
# (-1 if the line is not there, or not worded as expected).
df_pinned() {
	local re='^space pinned: .*(\([0-9]*\) blocks only snapshots keep, and [0-9]* dead ones' n
	re="$re"' beside them, in [0-9]* segments the cleaner leaves to them)$'
	n=$(sed -n "s/$re/\\1/p" out)
	echo "${n:--1}"
}

case_snapshots() {
	local m=mnt8 s=mnt8s as
	mkdir -p $m $s
	mkimg h.img 64 || return
	mount_fg h.img $m || return
	echo "one" >$m/f && mkdir $m/d && echo kept >$m/d/g
	dd if=/dev/urandom of=$m/big bs=1M count=4 status=none || fail "writing big"
	check "snapshot create through the mount" "$CAIRN" snapshot create $m first
	echo "two" >$m/f && rm $m/d/g $m/big && echo new >$m/h
	check "snapshot create through a subdirectory" "$CAIRN" snapshot create $m/d second
	"$CAIRN" snapshot create $m first 2>err && fail "created a snapshot twice"
	grep -q "exists already" err || fail "create twice: $(cat err)"
	"$CAIRN" snapshot list $m >out || fail "snapshot list through the mount"
	[ "$(awk 'NR > 1 {print $1}' out | tr '\n' ' ')" = "first second " ] ||
		fail "snapshot list: $(cat out)"
	if [ "$(id -u)" -eq 0 ] && command -v setpriv >/dev/null && id nobody >/dev/null 2>&1; then
		as="setpriv --reuid=$(id -u nobody) --regid=$(id -g nobody) --clear-groups"
		$as "$CAIRN" snapshot create $m third 2>err && fail "nobody made a snapshot"
	fi
	"$CAIRN" snapshot create h.img third 2>err && fail "changed a mounted image"
	grep -q "in use" err || fail "mounted image: $(cat err)"
	unmount $m "$fg_pid" || return
	# the deleted 4 MiB (1024 blocks) that "first" keeps are pinned, not dead
	"$CAIRN" df h.img >out || fail "df with snapshots"
	[ "$(df_pinned)" -ge 1024 ] || fail "df: what first keeps is not pinned: $(cat out)"
	mount_fg h.img $s -o snapshot=first || return
	[ "$(cat $s/f)" = "one" ] || fail "snapshot first: f is $(cat $s/f)"
	[ "$(cat $s/d/g)" = "kept" ] || fail "snapshot first: d/g is gone"
	[ ! -e $s/h ] || fail "snapshot first holds a later file"
	sh -c "echo x >$s/f" 2>/dev/null && fail "wrote into a snapshot"
	unmount $s "$fg_pid" || return
	mount_fg h.img $m || return
	[ "$(cat $m/f)" = "two" ] || fail "the volume: f is $(cat $m/f)"
	check "snapshot delete through the mount" "$CAIRN" snapshot delete $m first
	"$CAIRN" snapshot list $m >out
	[ "$(awk 'NR > 1 {print $1}' out)" = "second" ] || fail "after delete: $(cat out)"
	unmount $m "$fg_pid" || return
	"$CAIRN" df h.img >out || fail "df after a snapshot delete"
	[ "$(df_pinned)" -lt 1024 ] || fail "df: still pinned once first is gone: $(cat out)"
	"$CAIRN" fsck h.img >/dev/null || fail "fsck after snapshots"
	if "$CAIRN" mount -o snapshot=first h.img $s 2>err; then
		fusermount3 -u $s
		fail "mounted a deleted snapshot"
	fi
	grep -q "no snapshot named 'first'" err || fail "deleted snapshot: $(cat err)"
}

# A snapshot mounted beside the volume's own mount, either mounted first:
# it reads what it pinned while the volume is written over several times
# (segments reused, the cleaner running), and it cannot be deleted, nor
# the image formatted, while it is mounted.
case_snapshot_beside() {
	local m=mnt9 s=mnt9s wpid spid i
	mkdir -p $m $s
	mkimg i.img 64 || return
	mount_fg i.img $m || return
	wpid=$fg_pid
	echo one >$m/f && mkdir $m/d && echo kept >$m/d/g
	check "snapshot create" "$CAIRN" snapshot create $m s1
	MOUNT_LOG=$dir/daemon-snap.log mount_fg i.img $s -o snapshot=s1 || return
	spid=$fg_pid
	echo two >$m/f && rm $m/d/g && echo new >$m/h
	for i in 1 2 3 4 5 6 7 8; do # 160 MiB through a 64 MiB volume
		dd if=/dev/urandom of=$m/big bs=1M count=20 status=none conv=fsync ||
			fail "write $i of big"
	done
	[ "$(cat $s/f)" = "one" ] || fail "beside: f is $(cat $s/f)"
	[ "$(cat $s/d/g)" = "kept" ] || fail "beside: d/g is gone"
	[ ! -e $s/h ] && [ ! -e $s/big ] || fail "beside: the snapshot holds later files"
	[ "$(cat $m/f)" = "two" ] || fail "the volume: f is $(cat $m/f)"
	"$CAIRN" snapshot list $s >out || fail "snapshot list on a snapshot's mount"
	[ "$(awk 'NR > 1' out)" = "" ] || fail "a snapshot lists snapshots: $(cat out)"
	"$CAIRN" snapshot delete $m s1 2>err && fail "deleted a mounted snapshot"
	grep -q "is mounted or open" err || fail "delete while mounted: $(cat err)"
	unmount $s "$spid" || return
	unmount $m "$wpid" || return

	MOUNT_LOG=$dir/daemon-snap.log mount_fg i.img $s -o snapshot=s1 || return
	spid=$fg_pid
	mount_fg i.img $m || return
	wpid=$fg_pid
	"$CAIRN" snapshot delete $m s1 2>err && fail "deleted a mounted snapshot (mounted first)"
	dd if=/dev/urandom of=$m/big bs=1M count=20 status=none conv=fsync || fail "rewrite big"
	[ "$(cat $s/f)" = "one" ] || fail "alone first: f is $(cat $s/f)"
	unmount $m "$wpid" || return
	"$CAIRN" mkfs --force i.img 2>err && fail "formatted an image whose snapshot is mounted"
	grep -q "a snapshot of it is mounted" err || fail "mkfs: $(cat err)"
	[ "$(cat $s/d/g)" = "kept" ] || fail "after mkfs: d/g is $(cat $s/d/g)"
	unmount $s "$spid" || return
	# beside a read-only mount of the volume, which holds the image too
	mount_fg i.img $m -o ro || return
	wpid=$fg_pid
	MOUNT_LOG=$dir/daemon-snap.log mount_fg i.img $s -o snapshot=s1 ||
		{ fail "no snapshot mount beside a read-only mount"; unmount $m "$wpid"; return; }
	spid=$fg_pid
	[ "$(cat $s/d/g)" = "kept" ] || fail "beside a read-only mount: d/g is $(cat $s/d/g)"
	unmount $s "$spid" || return
	unmount $m "$wpid" || return
	check "snapshot delete once unmounted" "$CAIRN" snapshot delete i.img s1
	"$CAIRN" fsck i.img >/dev/null || fail "fsck after snapshot_beside"
}

# A snapshot opened beside its writer asks the daemon whose mount names the
# image's path. Once the image is renamed and another takes its path, the
# old daemon's mount still names that path: it must not answer for the
# new file (it says ESTALE, given the file's identity), or its record
# would be read from the wrong image.
case_snapshot_renamed_image() {
	local m=mnt11 n=mnt11b s=mnt11s apid bpid spid i
	mkdir -p $m $n $s
	mkimg r.img 64 || return
	mount_fg r.img $m || return
	apid=$fg_pid
	for i in 1 2 3 4 5 6; do # a history unlike the second image's
		echo "$i" >$m/x$i && sync -f $m/x$i
	done
	echo old >$m/f
	check "snapshot create in the first image" "$CAIRN" snapshot create $m s1
	mv r.img r-old.img
	mkimg r.img 64 || return
	MOUNT_LOG=$dir/daemon-b.log mount_fg r.img $n || return
	bpid=$fg_pid
	echo new >$n/f
	check "snapshot create in the second image" "$CAIRN" snapshot create $n s1
	MOUNT_LOG=$dir/daemon-s.log mount_fg r.img $s -o snapshot=s1 || {
		fail "snapshot of the second image beside its writer"
		unmount $n "$bpid"
		unmount $m "$apid"
		return 1
	}
	spid=$fg_pid
	[ "$(cat $s/f)" = new ] || fail "the snapshot shows f as '$(cat $s/f)'"
	[ ! -e $s/x1 ] || fail "the snapshot holds the renamed image's files"
	unmount $s "$spid" || return
	unmount $n "$bpid" || return
	unmount $m "$apid" || return
	"$CAIRN" fsck r-old.img >/dev/null || fail "fsck of the renamed image"
}

# Randomized operations through the mount, each call's result and then the
# tree checked against a model (tests/fuse/fuse_model.c), and the tree
# checked again after an unmount and a mount. Each seed is printed.
# Recent checkpoints: with the mount's default protection the commits of
# two short sessions stay readable, across the remount too; each mounts
# read-only, only while nothing else has the image, and shows the files
# as they were.
case_checkpoints() {
	local m=mntc c=mntcc old new
	mkdir -p $m $c
	mkimg c.img 64 || return
	mount_fg c.img $m || return
	echo one >$m/f && sync $m/f || fail "write and fsync f"
	echo uno >$m/f && sync $m/f || fail "write and fsync f over"
	unmount $m "$fg_pid" || return
	check "list the checkpoints" "$CAIRN" snapshot checkpoints c.img || return
	old=$(awk 'NR == 3 {print $1}' out) # older than the state the remount finds
	mount_fg c.img $m || return
	echo two >$m/f && sync $m/f || fail "write and fsync f again"
	expect_error 1 "in use" "checkpoints of a mounted image" \
		"$CAIRN" snapshot checkpoints c.img
	check "checkpoints through the mount" "$CAIRN" snapshot checkpoints $m
	grep -q "^ *$old " out || fail "checkpoint $old not listed through the mount: $(cat out)"
	check "pin checkpoint $old through the mount" \
		"$CAIRN" snapshot create --checkpoint "$old" $m pinned
	expect_error 1 "not readable" "pin a checkpoint never made" \
		"$CAIRN" snapshot create --checkpoint 999999 $m never
	expect_error 1 "in use" "a checkpoint beside the writer" \
		"$CAIRN" mount -o checkpoint="$old" c.img $c
	unmount $m "$fg_pid" || return
	check "list the checkpoints again" "$CAIRN" snapshot checkpoints c.img || return
	new=$(awk 'NR == 2 {print $1}' out)
	[ "$new" -gt "$old" ] || fail "no newer checkpoint than $old: $(cat out)"
	grep -q "^ *$old " out || fail "checkpoint $old is gone after a remount: $(cat out)"
	mount_fg c.img $c -o checkpoint="$old" || return
	[ "$(cat $c/f)" = "one" ] || fail "checkpoint $old: f is $(cat $c/f)"
	sh -c "echo x >$c/f" 2>/dev/null && fail "wrote into a checkpoint"
	expect_error 1 "in use" "the volume beside a checkpoint" "$CAIRN" mount c.img $m
	unmount $c "$fg_pid" || return
	mount_fg c.img $c -o checkpoint="$new" || return
	[ "$(cat $c/f)" = "two" ] || fail "checkpoint $new: f is $(cat $c/f)"
	unmount $c "$fg_pid" || return
	mount_fg c.img $c -o snapshot=pinned || return
	[ "$(cat $c/f)" = "one" ] || fail "snapshot of checkpoint $old: f is $(cat $c/f)"
	unmount $c "$fg_pid" || return
	expect_error 1 "not readable" "a checkpoint never made" \
		"$CAIRN" mount -o checkpoint=999999 c.img $c
	"$CAIRN" fsck c.img >/dev/null || fail "fsck after checkpoints"
}

case_model() {
	local m=mnt10 sd ops=${CAIRN_MODEL_OPS:-3000}
	mkdir -p $m
	for sd in ${CAIRN_MODEL_SEEDS:-1 2 3}; do
		mkimg k.img 256 || return
		mount_fg k.img $m || return
		"$MODEL" run $m "$sd" "$ops" >out 2>&1 || fail "model, seed $sd: $(tail -n 3 out)"
		tail -n 1 out
		unmount $m "$fg_pid" || return
		"$CAIRN" fsck k.img >/dev/null || fail "fsck after model seed $sd"
		mount_fg k.img $m || return
		"$MODEL" check $m "$sd" "$ops" >out 2>&1 ||
			fail "model after remount, seed $sd: $(tail -n 3 out)"
		unmount $m "$fg_pid" || return
	done
}

# Names of 255 bytes (256: ENAMETOOLONG), a tree 200 directories deep,
# a large file, and a sparse one of 1 TiB that takes almost no space.
case_names_and_sizes() {
	local m=mnt11 long deep i used
	mkdir -p $m
	mkimg l.img 512 || return
	mount_fg l.img $m || return
	long=$(printf 'n%.0s' $(seq 255))
	check "a 255-byte name" sh -c "echo x >$m/$long"
	[ "$(cat "$m/$long")" = x ] || fail "255-byte name reads back wrong"
	[ "$(ls $m)" = "$long" ] || fail "ls of a 255-byte name"
	if touch "$m/${long}n" 2>err; then
		fail "a 256-byte name was created"
	else
		grep -q "too long" err || fail "256-byte name: $(cat err)"
	fi
	deep=$m
	for i in $(seq 200); do
		deep=$deep/d
	done
	check "mkdir -p, 200 levels" mkdir -p "$deep"
	check "a file 200 levels down" sh -c "echo bottom >$deep/f"
	[ "$(find $m -name f -path '*/d/d/*' | wc -l)" -eq 1 ] || fail "find in a deep tree"
	head -c 64M /dev/urandom >large.src
	check "a 64 MiB file" cp large.src $m/large
	cmp -s large.src $m/large || fail "64 MiB file reads back different"
	check "sparse 1 TiB" truncate -s 1T $m/sparse
	check "write at 512 GiB" dd if=large.src of=$m/sparse bs=1M count=1 seek=524288 \
		conv=notrunc,fsync status=none
	[ "$(stat -c %s $m/sparse)" -eq $((1 << 40)) ] || fail "sparse size $(stat -c %s $m/sparse)"
	cmp -s <(head -c 1M large.src) <(dd if=$m/sparse bs=1M skip=524288 count=1 status=none) ||
		fail "the block at 512 GiB reads back different"
	[ "$(dd if=$m/sparse bs=1M skip=1000 count=1 status=none | tr -d '\0' | wc -c)" -eq 0 ] ||
		fail "a hole does not read as zeros"
	used=$(stat -c %b $m/sparse) # 512-byte units
	[ "$used" -lt 8192 ] || fail "the sparse file takes $used sectors"
	unmount $m "$fg_pid" || return
	"$CAIRN" fsck l.img >/dev/null || fail "fsck after names_and_sizes"
	rm -f large.src
}

failures=0
for c in "${CASES[@]}"; do
	run_case "$c"
done
echo "[==========] ${#CASES[@]} test(s) run."
[ "$failures" -eq 0 ]

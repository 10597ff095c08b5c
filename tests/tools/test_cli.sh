#!/bin/bash
# test_cli.sh - the `cairn` command driven as a user would drive it.
#
#   tests/tools/test_cli.sh PATH/TO/cairn
#
# Each check runs the command, then requires its exit code, its stdout
# and its stderr (an error is exactly one line, "cairn CMD: ..."). Every
# file lives in a temporary directory removed on exit. Prints "ok - ..."
# per check; the first failure prints what it saw and exits 1.
set -euo pipefail

CAIRN=${1:?usage: test_cli.sh PATH/TO/cairn}
dir=$(mktemp -d "${TMPDIR:-/tmp}/cairn-cli.XXXXXX")
trap 'rm -rf "$dir"' EXIT
cd "$dir"

rc=0
checks=0

# run ARGS...: run cairn, keeping its exit code in $rc, stdout in out,
# stderr in err.
run() {
	set +e
	"$CAIRN" "$@" >out 2>err
	rc=$?
	set -e
}

fail() {
	echo "not ok - $*"
	echo "# exit code: $rc"
	sed 's/^/# stdout: /' out
	sed 's/^/# stderr: /' err
	exit 1
}

ok() {
	checks=$((checks + 1))
	echo "ok $checks - $*"
}

expect_rc() { # expect_rc CODE WHAT
	[ "$rc" -eq "$1" ] || fail "$2: exit code $rc, expected $1"
}

# expect_error CODE CMD PATTERN WHAT: exit CODE, nothing on stdout, and
# exactly one line on stderr, "cairn CMD: " then something matching PATTERN.
expect_error() {
	expect_rc "$1" "$4"
	[ ! -s out ] || fail "$4: printed on stdout"
	[ "$(wc -l <err)" -eq 1 ] || fail "$4: stderr is not exactly one line"
	grep -q "^cairn $2: .*$3" err || fail "$4: stderr does not match 'cairn $2: .*$3'"
	ok "$4"
}

# field NAME: the value of "NAME: value" in out.
field() {
	sed -n "s/^ *$1: *//p" out
}

# ---- general ------------------------------------------------------------------

run --version
expect_rc 0 "--version"
grep -Eq '^cairn [0-9]+\.[0-9]+\.[0-9]+' out || fail "--version prints no version"
ok "--version prints the version"

for args in "--help" "help" "mkfs --help" "info --help" "help mkfs"; do
	# shellcheck disable=SC2086
	run $args
	expect_rc 0 "$args"
	grep -q '^Usage: cairn' out || fail "$args: no usage line"
	grep -q '2  usage error' out || fail "$args: exit codes not documented"
	[ ! -s err ] || fail "$args: wrote on stderr"
	ok "$args prints help with the exit codes"
done

# ---- usage errors: exit 2 -----------------------------------------------------

run
expect_rc 2 "no command"
[ "$(wc -l <err)" -eq 1 ] || fail "no command: stderr is not exactly one line"
grep -q '^cairn: no command given' err || fail "no command: wrong message"
run frobnicate
expect_rc 2 "unknown command"
grep -q "^cairn: unknown command 'frobnicate'" err || fail "unknown command: wrong message"
ok "no command and an unknown command are usage errors"

run mkfs
expect_error 2 mkfs "no IMAGE given" "mkfs without IMAGE"
run mkfs --bogus img
expect_error 2 mkfs "unknown option '--bogus'" "mkfs with an unknown option"
run mkfs --size
expect_error 2 mkfs "'--size' needs an argument" "mkfs --size without a value"
run mkfs --size 12Q img
expect_error 2 mkfs "is not a size" "mkfs --size 12Q"
run mkfs --size -5M img
expect_error 2 mkfs "is not a size" "mkfs --size -5M"
run mkfs --size 0 img
expect_error 2 mkfs "must not be zero" "mkfs --size 0"
run mkfs --size 99999999T img
expect_error 2 mkfs "too large" "mkfs --size 99999999T (overflow)"
run mkfs --size 99999999999999999999999 img
expect_error 2 mkfs "too large" "mkfs --size with more digits than 64 bits hold"
run mkfs --size 64M --block-size 3000 img
expect_error 2 mkfs "block-size 3000 is not a power of two" "mkfs --block-size 3000"
run mkfs --size 64M --segment-size 4K img
expect_error 2 mkfs "segment-size 4096" "mkfs --segment-size below 16 blocks"
run mkfs --size 64M --label "$(printf 'x%.0s' {1..64})" img
expect_error 2 mkfs "label is longer than 63" "mkfs with a 64-byte label"
run mkfs --size 64M img extra
expect_error 2 mkfs "unexpected argument 'extra'" "mkfs with two images"
run mkfs img
expect_error 2 mkfs "does not exist; --size is needed" "mkfs of a missing file without --size"
[ ! -e img ] || fail "usage errors left an image behind"
ok "usage errors created nothing"
run info
expect_error 2 info "no IMAGE given" "info without IMAGE"
run info -x img
expect_error 2 info "unknown option '-x'" "info with an unknown option"

# ---- mkfs on a new file, info on it -------------------------------------------

run mkfs --size 64M --label test-vol img
expect_rc 0 "mkfs --size 64M img"
[ ! -s err ] || fail "mkfs wrote on stderr"
[ "$(stat -c %s img)" -eq $((64 << 20)) ] || fail "img is not 64 MiB"
alloc=$(($(stat -c %b img) * $(stat -c %B img)))
[ "$alloc" -lt $((8 << 20)) ] || fail "img is not sparse ($alloc bytes allocated)"
ok "mkfs creates a sparse 64 MiB file"
uuid=$(field uuid)
echo "$uuid" | grep -Eq '^[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}$' || fail "mkfs: bad uuid '$uuid'"
[ "$(field segments)" = 14 ] || fail "mkfs: segments is not 14"
[ "$(field label)" = test-vol ] || fail "mkfs: label not shown"
ok "mkfs prints its summary"

sum=$(md5sum <img)
run info img
expect_rc 0 "info img"
[ ! -s err ] || fail "info wrote on stderr"
[ "$(field uuid)" = "$uuid" ] || fail "info: uuid differs from mkfs's"
[ "$(field 'block size')" = 4096 ] || fail "info: block size"
[ "$(field 'segment size')" = "4 MiB (1024 blocks)" ] || fail "info: segment size"
[ "$(field segments)" = 14 ] || fail "info: segments"
[ "$(field 'device size')" = "64 MiB (16384 blocks)" ] || fail "info: device size"
[ "$(field 'committed delta')" = 2 ] || fail "info: committed delta (mkfs commits the root in delta 2)"
[ "$(field checkpoints)" = "1 readable, from delta 2 (cairn snapshot checkpoints)" ] ||
	fail "info: checkpoints (delta 1, the empty volume, is not one)"
for f in 'format version' label 'space total' 'space live' 'space dead' 'space free' 'space kept'; do
	[ -n "$(field "$f")" ] || fail "info: no '$f'"
done
[ "$(field 'space total')" = "56 MiB (14336 blocks)" ] || fail "info: space total"
ok "info prints the volume's fields"
[ "$(md5sum <img)" = "$sum" ] || fail "info modified the image"
ok "info leaves the image unchanged"

# df: the space lines of info, nothing else, same figures
run df img
expect_rc 0 "df img"
[ ! -s err ] || fail "df wrote on stderr"
for f in 'space total' 'space live' 'space dead' 'space free' 'space kept'; do
	[ -n "$(field "$f")" ] || fail "df: no '$f'"
done
[ "$(field 'space total')" = "56 MiB (14336 blocks)" ] || fail "df: space total"
[ -z "$(field uuid)" ] || fail "df printed more than the space"
run df
expect_error 2 df "no IMAGE given" "df without IMAGE"
[ "$(md5sum <img)" = "$sum" ] || fail "df modified the image"
ok "df prints the volume's space and leaves the image unchanged"

# fsck: a fresh filesystem is clean (0), read-only; damage is a problem (4);
# no volume is an operational error (8); a wrong command line 16.
run fsck img
expect_rc 0 "fsck on a fresh image"
grep -q "^namespace: 1 inodes (1 directories" out || fail "fsck: the root directory not counted"
grep -q "img: clean (0 problems)" out || fail "fsck: no clean summary"
[ ! -s err ] || fail "fsck wrote on stderr"
[ "$(md5sum <img)" = "$sum" ] || fail "fsck modified the image"
ok "fsck finds a fresh image clean and leaves it unchanged"
run fsck
[ "$rc" -eq 16 ] || fail "fsck without IMAGE: exit $rc, expected 16"
run fsck --bogus img
[ "$rc" -eq 16 ] || fail "fsck --bogus: exit $rc, expected 16"
ok "fsck usage errors exit 16"
run fsck no-such-image
[ "$rc" -eq 8 ] || fail "fsck on a missing image: exit $rc, expected 8"
[ "$(wc -l <err)" -eq 1 ] || fail "fsck on a missing image: not one line on stderr"
head -c 1M /dev/urandom >noise
run fsck noise
[ "$rc" -eq 8 ] || fail "fsck on noise: exit $rc, expected 8"
ok "fsck on a missing image or noise exits 8 with one line"
cp --sparse=always img damaged
# the first segment (block 1024 on, after the alignment) holds the first
# logs: the root directory and its records
dd if=/dev/zero of=damaged bs=4096 seek=3 count=2045 conv=notrunc status=none
run fsck damaged
[ "$rc" -eq 4 ] || fail "fsck on a damaged image: exit $rc, expected 4"
grep -q "^problem: " out || fail "fsck on a damaged image: no problem line"
grep -q "PROBLEMS FOUND" out || fail "fsck on a damaged image: no summary"
ok "fsck reports a damaged image and exits 4"

run mkfs --size 128M --block-size 512 --segment-size 8K small-blocks
expect_rc 0 "mkfs with 512-byte blocks"
run info small-blocks
expect_rc 0 "info on 512-byte blocks"
[ "$(field 'block size')" = 512 ] || fail "info: block size 512 not found"
[ "$(field 'segment size')" = "8 KiB (16 blocks)" ] || fail "info: 8 KiB segments"
ok "info finds a volume of another block size"

# ---- refusing to overwrite ----------------------------------------------------

run mkfs img
expect_error 1 mkfs "img holds a cairn volume (use --force to overwrite)" "mkfs refuses a cairn volume"
[ "$(md5sum <img)" = "$sum" ] || fail "a refused mkfs modified the image"
run mkfs --force img
expect_rc 0 "mkfs --force img"
[ "$(field uuid)" != "$uuid" ] || fail "mkfs --force made no new volume"
ok "mkfs --force overwrites a cairn volume"

mkfs_ext4=$(PATH=$PATH:/sbin:/usr/sbin command -v mkfs.ext4 || true)
if [ -n "$mkfs_ext4" ]; then
	truncate -s 32M ext4.img
	"$mkfs_ext4" -q -F ext4.img
	sum=$(md5sum <ext4.img)
	run mkfs --size 64M ext4.img
	expect_error 1 mkfs "ext4.img holds an ext4 filesystem (use --force" "mkfs refuses an ext4 image"
	[ "$(md5sum <ext4.img)" = "$sum" ] || fail "a refused mkfs modified the ext4 image"
	[ "$(stat -c %s ext4.img)" -eq $((32 << 20)) ] || fail "a refused mkfs grew the image"
	ok "a refused mkfs leaves the ext4 image as it was"
	run mkfs --force ext4.img
	expect_rc 0 "mkfs --force on ext4"
	run info ext4.img
	expect_rc 0 "info after mkfs --force on ext4"
	ok "mkfs --force overwrites an ext4 image"
else
	echo "ok - # SKIP mkfs.ext4 not installed (e2fsprogs)"
fi

# A DOS partition table: one Linux partition, and the 0x55aa signature.
truncate -s 32M mbr.img
printf '\x83' | dd of=mbr.img bs=1 seek=450 conv=notrunc status=none
printf '\x00\x08\x00\x00\x00\x20\x00\x00' | dd of=mbr.img bs=1 seek=454 conv=notrunc status=none
printf '\x55\xaa' | dd of=mbr.img bs=1 seek=510 conv=notrunc status=none
run mkfs mbr.img
expect_error 1 mkfs "mbr.img holds a dos partition table" "mkfs refuses a partition table"

if command -v flock >/dev/null; then
	exec 9<img
	flock -x 9
	run mkfs --force img
	expect_error 1 mkfs "img is in use" "mkfs refuses an image locked by another process"
	exec 9<&-
fi

# ---- sizes ---------------------------------------------------------------------

run mkfs --size 16M tiny
expect_error 1 mkfs "tiny is too small: 16 MiB holds fewer than 4 segments" "mkfs refuses a size too small"
[ ! -e tiny ] || fail "a failed mkfs left the file it created"
ok "a failed mkfs removes the file it created"
run mkfs --size 64M --segment-size 1M tiny
expect_rc 0 "a 64 MiB volume of 1 MiB segments"
ok "a small size with small segments is accepted"

: >empty
run mkfs empty
expect_error 1 mkfs "empty is too small: 0 B" "mkfs refuses an empty file without --size"
run mkfs --size 64M empty
expect_rc 0 "mkfs grows an empty file"
[ "$(stat -c %s empty)" -eq $((64 << 20)) ] || fail "empty was not grown to 64 MiB"
ok "mkfs --size grows an existing file"
run mkfs --force --size 32M empty
expect_error 1 mkfs "does not shrink" "mkfs refuses to shrink"

mkdir adir
run mkfs adir
expect_error 1 mkfs "adir is a directory" "mkfs on a directory"

# ---- info on what is not a volume ----------------------------------------------

run info missing
expect_error 1 info "missing: No such file or directory" "info on a missing file"
head -c 1000000 /dev/urandom >garbage
run info garbage
expect_error 1 info "garbage is not a cairn volume" "info on a garbage file"
run info empty-not-there/x
expect_error 1 info "No such file or directory" "info below a missing directory"
run info adir
expect_error 1 info "adir is a directory" "info on a directory"
: >zero
run info zero
expect_error 1 info "zero is not a cairn volume" "info on an empty file"

# Valid superblocks, both checkpoint slots gone: the geometry, then one error.
run mkfs --size 64M nostate
dd if=/dev/zero of=nostate bs=4096 seek=1 count=2 conv=notrunc status=none
run info nostate
expect_rc 1 "info on a volume with no state"
[ "$(wc -l <err)" -eq 1 ] || fail "info on a volume with no state: not one line on stderr"
grep -q '^cairn info: nostate: no valid committed state' err || fail "no state: message"
[ "$(field segments)" = 14 ] || fail "no state: the geometry was not printed"
ok "info on a volume with no state prints the geometry and one error"

# snapshot: create, list, delete on an unmounted image; each error one line
run mkfs --size 64M snap
run snapshot create snap first
expect_rc 0 "snapshot create"
run snapshot list snap
expect_rc 0 "snapshot list"
grep -q "^first  *[0-9][0-9]*  20[0-9][0-9]-" out || fail "snapshot list: no 'first' line"
run df snap
[ "$(field snapshots)" = "1 (cairn snapshot list)" ] || fail "df: snapshots"
[ -n "$(field 'space pinned')" ] || fail "df: no 'space pinned'"
run snapshot create snap first
expect_error 1 snapshot "exists already" "snapshot create of an existing name"
run snapshot create snap a/b
expect_error 1 snapshot "cannot name a snapshot" "snapshot create of a bad name"
run snapshot delete snap none
expect_error 1 snapshot "no snapshot named 'none'" "snapshot delete of a missing name"
run snapshot create snap
expect_error 2 snapshot "needs IMAGE and NAME" "snapshot create without NAME"
run snapshot frob snap
expect_error 2 snapshot "unknown action" "snapshot with an unknown action"
run fsck snap
expect_rc 0 "fsck with a snapshot"
run snapshot delete snap first
expect_rc 0 "snapshot delete"
run snapshot list snap
[ "$(wc -l <out)" -eq 1 ] || fail "snapshot list after delete: not just the header"
ok "snapshot creates, lists and deletes"

# recent checkpoints: listed, one older than the image's state pinned
# after the fact (the tools open to write keeping them: CLI_PROTECT_S)
run snapshot checkpoints snap
expect_rc 0 "snapshot checkpoints"
older=$(awk 'NR == 3 {print $1}' out)
grep -q "^ *[0-9][0-9]*  20[0-9][0-9]-" out || fail "snapshot checkpoints: no checkpoint line"
[ -n "$older" ] || fail "snapshot checkpoints: fewer than two: $(cat out)"
run snapshot create --checkpoint "$older" snap pinned
expect_rc 0 "snapshot create --checkpoint"
run snapshot list snap
grep -q "^pinned  *$older  " out || fail "the checkpoint's snapshot: $(cat out)"
run snapshot create --checkpoint 999999 snap never
expect_error 1 snapshot "not readable" "snapshot create of a checkpoint never made"
run snapshot create --checkpoint x snap never
expect_error 2 snapshot "is not a delta" "snapshot create --checkpoint x"
run snapshot list --checkpoint 3 snap
expect_error 2 snapshot "goes with create only" "snapshot list --checkpoint"
run fsck snap
expect_rc 0 "fsck with a checkpoint's snapshot"
ok "recent checkpoints list, and one becomes a snapshot"

# ---- the library's log lines ---------------------------------------------------

run -v info nostate
expect_rc 1 "-v info on a volume with no state"
[ "$(wc -l <err)" -gt 1 ] || fail "-v does not show the library's log lines"
grep -q '^cairn: error: ' err || fail "-v: no library line"
ok "-v shows the library's log lines"

echo "1..$checks"

#!/bin/sh
# test.sh - set up, build and run cairn's whole unit test suite.
#
#   scripts/test.sh                      debug build (asserts, interleaving points)
#   scripts/test.sh --sanitize=address,undefined
#   scripts/test.sh --sanitize=thread
#   scripts/test.sh --release            -O2, asserts and interleaving points off
#
# Each configuration builds in its own directory (build-<name>) with
# warnings as errors, runs every suite, and ends with "N passed, N failed"
# (also written to build-<name>/test-summary.txt). Extra arguments after
# "--" go to meson test (for example: -- --suite buf).
set -eu
cd "$(dirname "$0")/.."

name=debug
opts="--buildtype=debug"
while [ $# -gt 0 ]; do
	case "$1" in
	--sanitize=*)
		san=${1#--sanitize=}
		name=$(echo "$san" | tr ',' '-')
		opts="--buildtype=debug -Db_sanitize=$san -Db_lundef=false"
		;;
	--release) name=release; opts="--buildtype=release" ;;
	--) shift; break ;;
	*) echo "test.sh: unknown option $1" >&2; exit 2 ;;
	esac
	shift
done

scripts/setup.sh
dir=build-$name
# the build directory's configure log; shown if configuring fails
if [ -f "$dir/build.ninja" ]; then
	# shellcheck disable=SC2086
	meson configure "$dir" -Dwerror=true $opts >"$dir.configure.log" 2>&1 ||
		{ cat "$dir.configure.log"; exit 1; }
else
	# shellcheck disable=SC2086
	meson setup "$dir" -Dwerror=true $opts >"$dir.configure.log" 2>&1 ||
		{ cat "$dir.configure.log"; exit 1; }
fi
ninja -C "$dir"

# Sanitizer reports fail the test that caused them.
export ASAN_OPTIONS="halt_on_error=1:abort_on_error=1:detect_leaks=1"
export UBSAN_OPTIONS="halt_on_error=1:abort_on_error=1:print_stacktrace=1"
export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1"
mult=1
case "$name" in
debug | release) ;;
*) export CAIRN_WATCHDOG_SCALE=4; mult=2 ;; # sanitized code runs slower (meson timeouts too)
esac

rc=0
meson test -C "$dir" --print-errorlogs --num-processes 2 --timeout-multiplier "$mult" "$@" \
	>"$dir/test-output.txt" 2>&1 || rc=$?
grep -E "^ *[0-9]+/[0-9]+ " "$dir/test-output.txt" || true
[ $rc -ne 0 ] && cat "$dir/test-output.txt"
python3 scripts/test-summary.py "$name" "$dir/meson-logs/testlog.json" | tee "$dir/test-summary.txt"
exit $rc

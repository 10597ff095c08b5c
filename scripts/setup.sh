#!/bin/sh
# setup.sh - install every Debian package cairn needs to build, test and
# mount, if missing. Idempotent: installs nothing when all are present.
set -eu

PACKAGES="gcc libc6-dev meson ninja-build pkg-config python3
fuse3 libfuse3-dev libcmocka-dev libxxhash-dev libblkid-dev e2fsprogs attr
fuse2fs fio bc"

missing=""
for p in $PACKAGES; do
	status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
	case "$status" in
	*"install ok installed"*) ;;
	*) missing="$missing $p" ;;
	esac
done
[ -z "$missing" ] && exit 0

echo "setup: installing:$missing"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing

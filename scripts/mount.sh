#!/bin/sh
# mount.sh - set up, build, and mount a cairn filesystem on a default image.
#
#   scripts/mount.sh [IMAGE [DIR]]      defaults: cairn.img and mnt/ here
#
# Installs what is missing (scripts/setup.sh), builds the release tool in
# build-release, creates IMAGE (sparse, CAIRN_SIZE bytes, default 4G) with
# `cairn mkfs` if it does not exist, and mounts it on DIR (created if
# needed) in the background. Prints how to use and unmount it.
set -eu
cd "$(dirname "$0")/.."

image=${1:-cairn.img}
dir=${2:-mnt}
size=${CAIRN_SIZE:-4G}

scripts/setup.sh
if [ ! -f build-release/build.ninja ]; then
	meson setup build-release --buildtype=release >build-release.configure.log 2>&1 ||
		{ cat build-release.configure.log; exit 1; }
fi
ninja -C build-release tools/cairn >/dev/null
cairn=build-release/tools/cairn

if [ ! -e "$image" ]; then
	"$cairn" mkfs --size "$size" "$image" >/dev/null
	echo "created $image ($size, sparse)"
fi
mkdir -p "$dir"
if mountpoint -q "$dir"; then
	echo "$dir is already a mount point; unmount it first: fusermount3 -u $dir" >&2
	exit 1
fi
"$cairn" mount "$image" "$dir"
cat <<EOT
cairn is mounted on $dir (image $image). Use it like any directory:
    cp -r /etc/ssh $dir/ && ls -l $dir
Unmount (commits everything):   fusermount3 -u $dir
Check the image:                $cairn fsck $image
Mount again:                    $cairn mount $image $dir
EOT

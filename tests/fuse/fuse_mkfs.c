/*
 * fuse_mkfs.c - make a cairn filesystem (volume and namespace) with
 * cairn_mkfs, for test_fuse.sh while `cairn mkfs` makes the volume only.
 *
 *   fuse_mkfs IMAGE SIZE_MIB
 */
#include <cairn/cairn.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
	struct cairn_mkfs_opts o = {0};
	int err;

	if (argc != 3) {
		fprintf(stderr, "usage: fuse_mkfs IMAGE SIZE_MIB\n");
		return 2;
	}
	o.cmo_size = strtoull(argv[2], NULL, 10) << 20;
	err = cairn_mkfs(argv[1], &o);
	if (err) {
		fprintf(stderr, "fuse_mkfs: %s: %s\n", argv[1], strerror(-err));
		return 1;
	}
	return 0;
}

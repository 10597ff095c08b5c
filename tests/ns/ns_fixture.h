/*
 * ns_fixture.h - cairn filesystems in temporary image files for the
 * namespace tests (through the public API, include/cairn/cairn.h).
 */
#ifndef CAIRN_NS_FIXTURE_H
#define CAIRN_NS_FIXTURE_H

#include <stdint.h>

#include "cairn/cairn.h"

#define NF_PATH_MAX 64

struct nf {
	char nf_path[NF_PATH_MAX];
	struct cairn *nf_c;
};

/* mkfs a sparse image of @mib MiB (4 KiB blocks, 64-block segments) and open it. */
void nf_new(struct nf *f, unsigned mib);
void nf_reopen(struct nf *f);
/* Close and remove the image. */
void nf_done(struct nf *f);
/*
 * Copy the image as it is now (the state a crash now would leave after
 * what was synced: call cairn_syncfs first) to a new file; @out gets its
 * path.
 */
void nf_copy_image(const struct nf *f, char *out);

/* The inode of @path (lstat), failing the test if it does not exist. */
uint64_t nf_ino(struct nf *f, const char *path);
/* Make a regular file at @path holding @len bytes of @data. */
uint64_t nf_file(struct nf *f, const char *path, const void *data, size_t len);

#endif /* CAIRN_NS_FIXTURE_H */

/*
 * ns_fixture.c - see ns_fixture.h.
 */
#include "ns_fixture.h"

#include "harness.h"

#include "delta/delta.h"
#include "ns/ns.h"
#include "vol/vol.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void nf_new(struct nf *f, unsigned mib)
{
	struct cairn_mkfs_opts mo = {.cmo_size = (uint64_t)mib << 20, .cmo_seg_blocks = 64};
	int fd;

	snprintf(f->nf_path, sizeof(f->nf_path), "/tmp/cairn-ns-test-XXXXXX");
	fd = mkstemp(f->nf_path);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(unlink(f->nf_path), 0);
	assert_int_equal(cairn_mkfs(f->nf_path, &mo), 0);
	assert_int_equal(cairn_open(f->nf_path, NULL, &f->nf_c), 0);
}

/* Every commit consumed no more than its transactions reserved (the
 * last one too: a failed sync, in a test of errors, leaves what was). */
static void nf_no_underestimate(const struct nf *f)
{
	struct delta_stats ds;

	(void)cairn_syncfs(f->nf_c);
	vol_delta_stats(f->nf_c->c_vol, &ds);
	assert_int_equal(ds.ds_underestimates, 0);
}

void nf_reopen(struct nf *f)
{
	nf_no_underestimate(f);
	assert_int_equal(cairn_close(f->nf_c), 0);
	assert_int_equal(cairn_open(f->nf_path, NULL, &f->nf_c), 0);
}

void nf_done(struct nf *f)
{
	nf_no_underestimate(f);
	assert_int_equal(cairn_close(f->nf_c), 0);
	f->nf_c = NULL;
	unlink(f->nf_path);
}

void nf_copy_image(const struct nf *f, char *out)
{
	static char buf[1 << 16], zero[1 << 16];
	int in, o;
	ssize_t n;
	off_t pos = 0;

	snprintf(out, NF_PATH_MAX, "/tmp/cairn-ns-copy-XXXXXX");
	o = mkstemp(out);
	assert_true(o >= 0);
	in = open(f->nf_path, O_RDONLY);
	assert_true(in >= 0);
	while ((n = read(in, buf, sizeof(buf))) > 0) {
		if (memcmp(buf, zero, (size_t)n)) /* keep it sparse */
			assert_int_equal(pwrite(o, buf, (size_t)n, pos), n);
		pos += n;
	}
	assert_int_equal(ftruncate(o, pos), 0);
	close(in);
	close(o);
}

uint64_t nf_ino(struct nf *f, const char *path)
{
	struct cairn_stat st;

	assert_int_equal(cairn_lstat_path(f->nf_c, path, &st), 0);
	return st.cs_ino;
}

uint64_t nf_file(struct nf *f, const char *path, const void *data, size_t len)
{
	uint64_t ino;

	assert_int_equal(cairn_create_path(f->nf_c, path, 0644, CAIRN_O_EXCL, NULL, &ino), 0);
	if (len)
		assert_int_equal(cairn_pwrite(f->nf_c, ino, data, len, 0), (ssize_t)len);
	assert_int_equal(cairn_release(f->nf_c, ino), 0);
	return ino;
}

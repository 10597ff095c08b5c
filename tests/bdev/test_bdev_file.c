/*
 * test_bdev_file.c - the file backend: create, reopen, sizes, errors,
 * exclusive lock, read-only, and bdev_save().
 *
 * Every test works in its own directory under /tmp (made by the setup,
 * removed with everything in it by the teardown, also when a test fails).
 */
#include "harness.h"

#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bdev/bdev.h"

#define FILE_BS 4096u

struct file_tmp {
	char ft_dir[64];
	char ft_path[128];  /* the image: <dir>/img */
	char ft_path2[128]; /* a second file: <dir>/copy */
};

static int file_tmp_setup(void **state)
{
	struct file_tmp *t = calloc(1, sizeof(*t));

	if (!t)
		return -1;
	strcpy(t->ft_dir, "/tmp/cairn-bdev-XXXXXX");
	if (!mkdtemp(t->ft_dir)) {
		free(t);
		return -1;
	}
	snprintf(t->ft_path, sizeof(t->ft_path), "%s/img", t->ft_dir);
	snprintf(t->ft_path2, sizeof(t->ft_path2), "%s/copy", t->ft_dir);
	*state = t;
	return 0;
}

static int file_tmp_rm(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static int file_tmp_teardown(void **state)
{
	struct file_tmp *t = *state;
	int rc = nftw(t->ft_dir, file_tmp_rm, 8, FTW_DEPTH | FTW_PHYS);

	free(t);
	return rc;
}

static void file_pattern(unsigned char *buf, size_t len, unsigned tag)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = (unsigned char)(tag * 13 + i * 3 + 1);
}

/* Make a plain file of @len bytes of 0x5a. */
static void file_make(const char *path, size_t len)
{
	unsigned char *buf = malloc(len + 1);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	assert_true(fd >= 0);
	memset(buf, 0x5a, len + 1);
	assert_int_equal(write(fd, buf, len), (ssize_t)len);
	close(fd);
	free(buf);
}

static off_t file_size(const char *path)
{
	struct stat st;

	assert_int_equal(stat(path, &st), 0);
	return st.st_size;
}

static void test_file_create_persist(void **state)
{
	struct file_tmp *t = *state;
	unsigned char w[2 * FILE_BS], r[2 * FILE_BS];
	struct bdev *d;

	assert_int_equal(bdev_open_file(t->ft_path, FILE_BS, 16, BDEV_CREATE, &d), 0);
	assert_int_equal(bdev_block_size(d), FILE_BS);
	assert_int_equal(bdev_nblocks(d), 16);
	assert_int_equal(file_size(t->ft_path), 16 * FILE_BS);
	memset(r, 0xee, sizeof(r));
	assert_int_equal(bdev_read(d, 14, 2, r), 0);
	for (size_t i = 0; i < sizeof(r); i++)
		assert_int_equal(r[i], 0);
	file_pattern(w, sizeof(w), 1);
	assert_int_equal(bdev_write(d, 3, 2, w), 0);
	assert_int_equal(bdev_flush(d), 0);
	bdev_close(d);

	/* reopen: the size is the file's, @nblocks is ignored */
	assert_int_equal(bdev_open_file(t->ft_path, FILE_BS, 999, 0, &d), 0);
	assert_int_equal(bdev_nblocks(d), 16);
	assert_int_equal(bdev_read(d, 3, 2, r), 0);
	assert_memory_equal(r, w, sizeof(w));
	bdev_close(d);

	/* BDEV_CREATE on an existing image opens it as it is */
	assert_int_equal(bdev_open_file(t->ft_path, FILE_BS, 4, BDEV_CREATE, &d), 0);
	assert_int_equal(bdev_nblocks(d), 16);
	assert_int_equal(bdev_read(d, 4, 1, r), 0);
	assert_memory_equal(r, w + FILE_BS, FILE_BS);
	bdev_close(d);
	assert_int_equal(file_size(t->ft_path), 16 * FILE_BS);
}

static void test_file_create_sparse(void **state)
{
	struct file_tmp *t = *state;
	struct stat st;
	struct bdev *d;

	assert_int_equal(bdev_open_file(t->ft_path, FILE_BS, 4096, BDEV_CREATE, &d), 0);
	assert_int_equal(stat(t->ft_path, &st), 0);
	assert_int_equal(st.st_size, 4096 * (off_t)FILE_BS);
	assert_true((off_t)st.st_blocks * 512 < st.st_size); /* holes, not zeros */
	bdev_close(d);
}

static void test_file_size_rounding(void **state)
{
	struct file_tmp *t = *state;
	unsigned char buf[FILE_BS];
	struct bdev *d;

	file_make(t->ft_path, 3 * FILE_BS + 100);
	assert_int_equal(bdev_open_file(t->ft_path, FILE_BS, 0, 0, &d), 0);
	assert_int_equal(bdev_nblocks(d), 3);
	assert_int_equal(bdev_read(d, 2, 1, buf), 0);
	assert_int_equal(buf[FILE_BS - 1], 0x5a);
	assert_int_equal(bdev_read(d, 3, 1, buf), -EINVAL);
	bdev_close(d);
	assert_int_equal(bdev_open_file(t->ft_path, 512, 0, 0, &d), 0);
	assert_int_equal(bdev_nblocks(d), (3 * FILE_BS + 100) / 512);
	bdev_close(d);
	/* less than one block, and empty: -EINVAL */
	file_make(t->ft_path, 100);
	d = NULL;
	assert_int_equal(bdev_open_file(t->ft_path, 512, 0, 0, &d), -EINVAL);
	file_make(t->ft_path, 0);
	assert_int_equal(bdev_open_file(t->ft_path, 512, 0, 0, &d), -EINVAL);
	assert_null(d);
}

static void test_file_range(void **state)
{
	struct file_tmp *t = *state;
	unsigned char buf[2 * FILE_BS] = {0};
	struct bdev *d;

	assert_int_equal(bdev_open_file(t->ft_path, FILE_BS, 8, BDEV_CREATE, &d), 0);
	assert_int_equal(bdev_write(d, 6, 2, buf), 0);
	assert_int_equal(bdev_read(d, 7, 1, buf), 0);
	assert_int_equal(bdev_read(d, 8, 1, buf), -EINVAL);
	assert_int_equal(bdev_write(d, 7, 2, buf), -EINVAL);
	assert_int_equal(bdev_read(d, 0, 0, buf), -EINVAL);
	assert_int_equal(bdev_write(d, 0, 1, NULL), -EINVAL);
	assert_int_equal(bdev_read(d, UINT64_MAX, 2, buf), -EINVAL);
	bdev_close(d);
	/* the failed writes did not grow the file */
	assert_int_equal(file_size(t->ft_path), 8 * FILE_BS);
}

static void test_file_excl_lock(void **state)
{
	struct file_tmp *t = *state;
	struct bdev *a, *b = NULL;

	assert_int_equal(bdev_open_file(t->ft_path, FILE_BS, 8, BDEV_CREATE | BDEV_EXCL_LOCK, &a),
			 0);
	/* a second open file description conflicts, even in this process */
	assert_int_equal(bdev_open_file(t->ft_path, FILE_BS, 8, BDEV_EXCL_LOCK, &b), -EBUSY);
	assert_int_equal(bdev_open_file(t->ft_path, FILE_BS, 8, BDEV_RDONLY | BDEV_EXCL_LOCK, &b),
			 -EBUSY);
	assert_null(b);
	/* without the flag the lock is not asked for */
	assert_int_equal(bdev_open_file(t->ft_path, FILE_BS, 8, 0, &b), 0);
	bdev_close(b);
	/* closing releases it */
	bdev_close(a);
	assert_int_equal(bdev_open_file(t->ft_path, FILE_BS, 8, BDEV_EXCL_LOCK, &b), 0);
	bdev_close(b);
}

/* A shared flock admits other shared ones, not an exclusive one; bdev_unlock lets it in. */
static void test_file_shared_lock(void **state)
{
	struct file_tmp *t = *state;
	struct bdev *a, *b, *c = NULL;

	assert_int_equal(bdev_open_file(t->ft_path, FILE_BS, 8, BDEV_CREATE, &a), 0);
	bdev_close(a);
	assert_int_equal(bdev_open_file(t->ft_path, FILE_BS, 0, BDEV_RDONLY | BDEV_SHARED_LOCK, &a),
			 0);
	assert_int_equal(bdev_open_file(t->ft_path, FILE_BS, 0, BDEV_SHARED_LOCK, &b), 0);
	assert_int_equal(bdev_open_file(t->ft_path, FILE_BS, 0, BDEV_EXCL_LOCK, &c), -EBUSY);
	assert_null(c);
	assert_int_equal(bdev_unlock(a), 0);
	assert_int_equal(bdev_open_file(t->ft_path, FILE_BS, 0, BDEV_EXCL_LOCK, &c), -EBUSY);
	assert_int_equal(bdev_unlock(b), 0);
	assert_int_equal(bdev_open_file(t->ft_path, FILE_BS, 0, BDEV_EXCL_LOCK, &c), 0);
	assert_int_equal(bdev_open_file(t->ft_path, FILE_BS, 0, BDEV_SHARED_LOCK, &b), -EBUSY);
	assert_int_equal(
	    bdev_open_file(t->ft_path, FILE_BS, 0, BDEV_SHARED_LOCK | BDEV_EXCL_LOCK, &b), -EINVAL);
	bdev_close(c); /* the failed opens left b as it was */
	bdev_close(b);
	bdev_close(a);
}

/*
 * Pins between opens of one file: shared with shared, exclusive with
 * none; each open's own pins never conflict with themselves; dropping or
 * closing releases; bdev_pin_any sees any other open's pin, and the
 * exclusive flock does not stand in the way of pins.
 */
static void test_file_pins(void **state)
{
	struct file_tmp *t = *state;
	struct bdev *a, *b, *w;

	assert_int_equal(bdev_open_file(t->ft_path, FILE_BS, 8, BDEV_CREATE | BDEV_EXCL_LOCK, &w),
			 0);
	assert_int_equal(bdev_open_file(t->ft_path, FILE_BS, 0, 0, &a), 0);
	assert_int_equal(bdev_open_file(t->ft_path, FILE_BS, 0, BDEV_RDONLY, &b), 0);
	assert_int_equal(bdev_pin_any(w), 0);
	assert_int_equal(bdev_pin(a, 42, BDEV_PIN_SHARED), 0);
	assert_int_equal(bdev_pin(b, 42, BDEV_PIN_SHARED), 0);
	assert_int_equal(bdev_pin_any(w), -EBUSY);
	assert_int_equal(bdev_pin(w, 42, BDEV_PIN_EXCL), -EBUSY);
	assert_int_equal(bdev_pin(w, 43, BDEV_PIN_EXCL), 0); /* another key */
	assert_int_equal(bdev_pin(a, 43, BDEV_PIN_SHARED), -EBUSY);
	assert_int_equal(bdev_pin(w, 43, BDEV_PIN_DROP), 0);
	assert_int_equal(bdev_pin(a, 43, BDEV_PIN_SHARED), 0);
	assert_int_equal(bdev_pin(a, 42, BDEV_PIN_EXCL), -EBUSY); /* b shares it */
	assert_int_equal(bdev_pin(b, 42, BDEV_PIN_DROP), 0);
	assert_int_equal(bdev_pin(a, 42, BDEV_PIN_EXCL), 0); /* its own shared one */
	assert_int_equal(bdev_pin(b, 42, BDEV_PIN_SHARED), -EBUSY);
	bdev_close(a); /* closing drops a's pins */
	assert_int_equal(bdev_pin_any(w), 0);
	assert_int_equal(bdev_pin(w, 42, BDEV_PIN_EXCL), 0);
	assert_int_equal(bdev_pin(w, UINT64_MAX, BDEV_PIN_EXCL), 0); /* any key */
	assert_int_equal(bdev_pin(b, 44, BDEV_PIN_EXCL), -EBADF);    /* needs writing */
	assert_int_equal(bdev_pin(b, 42, 7), -EINVAL);
	bdev_close(b);
	bdev_close(w);
}

static void test_file_rdonly(void **state)
{
	struct file_tmp *t = *state;
	unsigned char w[FILE_BS], r[FILE_BS];
	struct bdev *d;

	assert_int_equal(bdev_open_file(t->ft_path, FILE_BS, 4, BDEV_CREATE, &d), 0);
	file_pattern(w, sizeof(w), 2);
	assert_int_equal(bdev_write(d, 1, 1, w), 0);
	bdev_close(d);
	assert_int_equal(bdev_open_file(t->ft_path, FILE_BS, 0, BDEV_RDONLY, &d), 0);
	assert_int_equal(bdev_read(d, 1, 1, r), 0);
	assert_memory_equal(r, w, FILE_BS);
	memset(r, 0x77, sizeof(r));
	assert_int_equal(bdev_write(d, 1, 1, r), -EROFS);
	assert_int_equal(bdev_flush(d), 0);
	assert_int_equal(bdev_read(d, 1, 1, r), 0);
	assert_memory_equal(r, w, FILE_BS);
	bdev_close(d);
	/* read-only creation makes no sense */
	d = NULL;
	assert_int_equal(bdev_open_file(t->ft_path2, FILE_BS, 4, BDEV_RDONLY | BDEV_CREATE, &d),
			 -EINVAL);
	assert_null(d);
	assert_int_equal(access(t->ft_path2, F_OK), -1);
}

static void test_file_bad_block_size(void **state)
{
	static const uint32_t bad[] = {0, 1, 256, 511, 1000, 4095, 6144, 131072};
	struct file_tmp *t = *state;
	struct bdev *d = NULL;

	for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
		assert_int_equal(bdev_open_file(t->ft_path, bad[i], 8, BDEV_CREATE, &d), -EINVAL);
	assert_null(d);
	assert_int_equal(access(t->ft_path, F_OK), -1); /* nothing created */
	assert_int_equal(bdev_open_file(t->ft_path, 512, 8, BDEV_CREATE, &d), 0);
	bdev_close(d);
	assert_int_equal(bdev_open_file(t->ft_path, 65536, 8, 0, &d), -EINVAL); /* 4 KiB file */
	assert_int_equal(bdev_open_file(t->ft_path, 4096, 8, 1u << 7, &d), -EINVAL);
}

static void test_file_missing(void **state)
{
	struct file_tmp *t = *state;
	struct bdev *d = NULL;

	assert_int_equal(bdev_open_file(t->ft_path, FILE_BS, 8, 0, &d), -ENOENT);
	assert_int_equal(bdev_open_file(t->ft_path, FILE_BS, 8, BDEV_RDONLY, &d), -ENOENT);
	/* creating with zero blocks fails and leaves no file behind */
	assert_int_equal(bdev_open_file(t->ft_path, FILE_BS, 0, BDEV_CREATE, &d), -EINVAL);
	assert_int_equal(access(t->ft_path, F_OK), -1);
	/* a directory is not a device */
	assert_int_equal(bdev_open_file(t->ft_dir, FILE_BS, 0, BDEV_RDONLY, &d), -EINVAL);
	assert_int_equal(bdev_open_file(t->ft_dir, FILE_BS, 0, 0, &d), -EISDIR);
	assert_null(d);
}

/* Write a pattern to some blocks of @d, leaving the others zero. */
static void file_scatter(struct bdev *d, const uint64_t *blks, size_t n)
{
	unsigned char buf[FILE_BS];

	for (size_t i = 0; i < n; i++) {
		file_pattern(buf, sizeof(buf), (unsigned)blks[i]);
		assert_int_equal(bdev_write(d, blks[i], 1, buf), 0);
	}
}

static void file_compare(struct bdev *a, struct bdev *b)
{
	unsigned char x[FILE_BS], y[FILE_BS];

	assert_int_equal(bdev_nblocks(a), bdev_nblocks(b));
	assert_int_equal(bdev_block_size(a), bdev_block_size(b));
	for (uint64_t blk = 0; blk < bdev_nblocks(a); blk++) {
		assert_int_equal(bdev_read(a, blk, 1, x), 0);
		assert_int_equal(bdev_read(b, blk, 1, y), 0);
		assert_memory_equal(x, y, FILE_BS);
	}
}

static void test_file_save_round_trip(void **state)
{
	static const uint64_t blks[] = {0, 5, 6, 300}; /* the last blocks stay zero */
	struct file_tmp *t = *state;
	unsigned char last_byte[FILE_BS] = {0};
	struct bdev *ram, *img, *copy;
	struct stat st;

	assert_int_equal(bdev_open_ram(FILE_BS, 512, &ram), 0);
	file_scatter(ram, blks, ARRAY_SIZE(blks));
	/* zero but for its last byte: not a block to skip */
	last_byte[FILE_BS - 1] = 1;
	assert_int_equal(bdev_write(ram, 200, 1, last_byte), 0);
	file_make(t->ft_path, 600 * FILE_BS); /* stale content to be replaced */
	assert_int_equal(bdev_save(ram, t->ft_path), 0);
	assert_int_equal(stat(t->ft_path, &st), 0);
	assert_int_equal(st.st_size, 512 * (off_t)FILE_BS);
	/* only the written blocks take space (plus a little metadata) */
	assert_true((off_t)st.st_blocks * 512 <= 16 * (off_t)FILE_BS);
	assert_int_equal(bdev_open_file(t->ft_path, FILE_BS, 0, BDEV_RDONLY, &img), 0);
	file_compare(ram, img);
	/* and a file device saves as well */
	assert_int_equal(bdev_save(img, t->ft_path2), 0);
	assert_int_equal(bdev_open_file(t->ft_path2, FILE_BS, 0, 0, &copy), 0);
	file_compare(ram, copy);
	bdev_close(copy);
	bdev_close(img);
	bdev_close(ram);
	assert_int_equal(bdev_save(NULL, t->ft_path), -EINVAL);
}

static void test_file_save_error(void **state)
{
	struct file_tmp *t = *state;
	char bad[160];
	struct bdev *ram;

	assert_int_equal(bdev_open_ram(FILE_BS, 4, &ram), 0);
	snprintf(bad, sizeof(bad), "%s/no/such/dir", t->ft_dir);
	assert_int_equal(bdev_save(ram, bad), -ENOENT);
	assert_int_equal(bdev_save(ram, NULL), -EINVAL);
	bdev_close(ram);
}

/*
 * bdev_writev: many vectors (more than IOV_MAX, so the file backend
 * loops), on the file and on RAM (the bounce-buffer path), land exactly
 * as one bdev_write of their concatenation would; bad vectors are
 * refused.
 */
static void writev_check(struct bdev *d)
{
	enum { NVEC = 1500, NBLK = NVEC + NVEC / 2 };
	unsigned char *src = malloc((size_t)NBLK * FILE_BS), *r = malloc((size_t)NBLK * FILE_BS);
	struct iovec *iov = calloc(NVEC, sizeof(*iov));
	size_t off = 0;

	file_pattern(src, (size_t)NBLK * FILE_BS, 7);
	for (unsigned i = 0; i < NVEC; i++) { /* every other vector is two blocks */
		size_t len = (i % 2 ? 2 : 1) * (size_t)FILE_BS;
		iov[i] = (struct iovec){src + off, len};
		off += len;
	}
	assert_int_equal(off, (size_t)NBLK * FILE_BS);
	assert_int_equal(bdev_writev(d, 5, iov, NVEC), 0);
	assert_int_equal(bdev_read(d, 5, NBLK, r), 0);
	assert_memory_equal(r, src, (size_t)NBLK * FILE_BS);
	/* the caller's vectors are left as they were */
	assert_ptr_equal(iov[0].iov_base, src);
	assert_int_equal(iov[1].iov_len, 2 * FILE_BS);

	iov[0].iov_len = FILE_BS / 2;
	assert_int_equal(bdev_writev(d, 5, iov, 1), -EINVAL);
	iov[0].iov_len = FILE_BS;
	assert_int_equal(bdev_writev(d, bdev_nblocks(d) - 1, iov, 2), -EINVAL);
	free(iov);
	free(r);
	free(src);
}

static void test_file_writev(void **state)
{
	struct file_tmp *t = *state;
	struct bdev *d;

	assert_int_equal(bdev_open_file(t->ft_path, FILE_BS, 4096, BDEV_CREATE, &d), 0);
	writev_check(d);
	bdev_close(d);
	assert_int_equal(bdev_open_ram(FILE_BS, 4096, &d), 0);
	writev_check(d);
	bdev_close(d);
}

/*
 * bdev_start_writeback is a hint: the data reads back as written, before
 * and after a flush and a reopen; a range past the end, an empty range
 * and a read-only device are ignored, never an error or a write.
 */
static void test_file_start_writeback(void **state)
{
	struct file_tmp *t = *state;
	unsigned char *w = malloc(64 * FILE_BS), *r = malloc(64 * FILE_BS);
	struct bdev *d;

	assert_int_equal(bdev_open_file(t->ft_path, FILE_BS, 256, BDEV_CREATE, &d), 0);
	file_pattern(w, 64 * FILE_BS, 7);
	assert_int_equal(bdev_write(d, 100, 64, w), 0);
	bdev_start_writeback(d, 100, 64);
	bdev_start_writeback(d, 250, 64); /* past the end */
	bdev_start_writeback(d, 256, 1);
	bdev_start_writeback(d, 0, 0);
	assert_int_equal(bdev_read(d, 100, 64, r), 0);
	assert_memory_equal(r, w, 64 * FILE_BS);
	assert_int_equal(bdev_flush(d), 0);
	bdev_close(d);

	assert_int_equal(bdev_open_file(t->ft_path, FILE_BS, 0, BDEV_RDONLY, &d), 0);
	bdev_start_writeback(d, 100, 64);
	assert_int_equal(bdev_read(d, 100, 64, r), 0);
	assert_memory_equal(r, w, 64 * FILE_BS);
	bdev_close(d);

	assert_int_equal(bdev_open_ram(FILE_BS, 256, &d), 0);
	assert_int_equal(bdev_write(d, 1, 64, w), 0);
	bdev_start_writeback(d, 1, 64); /* no cache of its own: nothing to do */
	assert_int_equal(bdev_read(d, 1, 64, r), 0);
	assert_memory_equal(r, w, 64 * FILE_BS);
	bdev_close(d);
	free(w);
	free(r);
}

#define FILE_TEST(fn) cmocka_unit_test_setup_teardown(fn, file_tmp_setup, file_tmp_teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	    FILE_TEST(test_file_create_persist),
	    FILE_TEST(test_file_create_sparse),
	    FILE_TEST(test_file_size_rounding),
	    FILE_TEST(test_file_range),
	    FILE_TEST(test_file_excl_lock),
	    FILE_TEST(test_file_shared_lock),
	    FILE_TEST(test_file_pins),
	    FILE_TEST(test_file_rdonly),
	    FILE_TEST(test_file_bad_block_size),
	    FILE_TEST(test_file_missing),
	    FILE_TEST(test_file_save_round_trip),
	    FILE_TEST(test_file_save_error),
	    FILE_TEST(test_file_writev),
	    FILE_TEST(test_file_start_writeback),
	};
	return TEST_RUN("bdev_file", tests);
}

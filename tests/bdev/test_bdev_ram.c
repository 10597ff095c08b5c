/*
 * test_bdev_ram.c - the in-memory block device: content, range checks,
 * concurrent writers.
 */
#include "harness.h"

#include <stdlib.h>
#include <string.h>

#include "bdev/bdev.h"

#define RAM_BS	    4096u
#define RAM_NBLOCKS 64u

static void ram_fill(unsigned char *buf, size_t len, unsigned tag)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = (unsigned char)(tag * 31 + i * 7 + 1);
}

static void test_ram_read_write(void **state)
{
	unsigned char *w = malloc(3 * RAM_BS), *r = malloc(3 * RAM_BS);
	struct bdev *d;

	(void)state;
	assert_int_equal(bdev_open_ram(RAM_BS, RAM_NBLOCKS, &d), 0);
	assert_int_equal(bdev_block_size(d), RAM_BS);
	assert_int_equal(bdev_nblocks(d), RAM_NBLOCKS);
	/* fresh device reads zeros */
	memset(r, 0xaa, 3 * RAM_BS);
	assert_int_equal(bdev_read(d, 0, 3, r), 0);
	for (size_t i = 0; i < 3 * RAM_BS; i++)
		assert_int_equal(r[i], 0);
	ram_fill(w, 3 * RAM_BS, 5);
	assert_int_equal(bdev_write(d, 10, 3, w), 0);
	assert_int_equal(bdev_flush(d), 0);
	assert_int_equal(bdev_read(d, 10, 3, r), 0);
	assert_memory_equal(r, w, 3 * RAM_BS);
	/* a block read alone is the matching slice */
	assert_int_equal(bdev_read(d, 11, 1, r), 0);
	assert_memory_equal(r, w + RAM_BS, RAM_BS);
	/* the blocks around it are untouched */
	assert_int_equal(bdev_read(d, 9, 1, r), 0);
	assert_int_equal(r[0], 0);
	assert_int_equal(bdev_read(d, 13, 1, r), 0);
	assert_int_equal(r[RAM_BS - 1], 0);
	bdev_close(d);
	free(w);
	free(r);
}

static void test_ram_range(void **state)
{
	unsigned char *buf = calloc(2, RAM_BS);
	struct bdev *d;

	(void)state;
	assert_int_equal(bdev_open_ram(RAM_BS, RAM_NBLOCKS, &d), 0);
	assert_int_equal(bdev_read(d, RAM_NBLOCKS - 1, 1, buf), 0);
	assert_int_equal(bdev_write(d, RAM_NBLOCKS - 2, 2, buf), 0);
	assert_int_equal(bdev_read(d, RAM_NBLOCKS, 1, buf), -EINVAL);
	assert_int_equal(bdev_write(d, RAM_NBLOCKS - 1, 2, buf), -EINVAL);
	assert_int_equal(bdev_read(d, 0, 0, buf), -EINVAL);
	assert_int_equal(bdev_write(d, 0, 0, buf), -EINVAL);
	assert_int_equal(bdev_read(d, 0, 1, NULL), -EINVAL);
	assert_int_equal(bdev_write(d, 0, 1, NULL), -EINVAL);
	/* blk + count wraps around */
	assert_int_equal(bdev_read(d, UINT64_MAX, 2, buf), -EINVAL);
	assert_int_equal(bdev_write(d, UINT64_MAX - 1, 4, buf), -EINVAL);
	bdev_close(d);
	bdev_close(NULL);
	free(buf);
}

static void test_ram_bad_geometry(void **state)
{
	struct bdev *d = NULL;

	(void)state;
	assert_int_equal(bdev_open_ram(0, 8, &d), -EINVAL);
	assert_int_equal(bdev_open_ram(256, 8, &d), -EINVAL);
	assert_int_equal(bdev_open_ram(3000, 8, &d), -EINVAL);
	assert_int_equal(bdev_open_ram(131072, 8, &d), -EINVAL);
	assert_int_equal(bdev_open_ram(4096, 0, &d), -EINVAL);
	assert_null(d);
	assert_int_equal(bdev_open_ram(512, 1, &d), 0);
	bdev_close(d);
	assert_int_equal(bdev_open_ram(65536, 1, &d), 0);
	bdev_close(d);
}

#define RAM_THREADS 4
#define RAM_ROUNDS  200

struct ram_writer {
	struct bdev *rw_dev;
	unsigned rw_id; /* writes blocks rw_id, rw_id + RAM_THREADS, ... */
	uint64_t rw_seed;
};

static void *ram_writer_run(void *arg)
{
	struct ram_writer *rw = arg;
	unsigned char buf[RAM_BS], check[RAM_BS];
	uint64_t per = RAM_NBLOCKS / RAM_THREADS;
	struct prng rng;

	prng_init(&rng, rw->rw_seed + rw->rw_id);
	for (unsigned round = 0; round < RAM_ROUNDS; round++) {
		uint64_t blk = rw->rw_id + RAM_THREADS * prng_below(&rng, per);

		ram_fill(buf, sizeof(buf), (unsigned)blk * 1000 + round);
		if (bdev_write(rw->rw_dev, blk, 1, buf))
			return (void *)1;
		if (bdev_read(rw->rw_dev, blk, 1, check) || memcmp(buf, check, RAM_BS))
			return (void *)1;
	}
	/* finally, every block of this thread holds its final tag */
	for (uint64_t i = 0; i < per; i++) {
		ram_fill(buf, sizeof(buf), (unsigned)(rw->rw_id + RAM_THREADS * i) + 7);
		if (bdev_write(rw->rw_dev, rw->rw_id + RAM_THREADS * i, 1, buf))
			return (void *)1;
	}
	return NULL;
}

static void test_ram_concurrent_writers(void **state)
{
	struct ram_writer rw[RAM_THREADS];
	pthread_t t[RAM_THREADS];
	uint64_t seed = test_seed("ram_concurrent_writers", 42);
	unsigned char buf[RAM_BS], want[RAM_BS];
	struct bdev *d;

	(void)state;
	test_watchdog("ram_concurrent_writers", 60);
	assert_int_equal(bdev_open_ram(RAM_BS, RAM_NBLOCKS, &d), 0);
	for (unsigned i = 0; i < RAM_THREADS; i++) {
		rw[i] = (struct ram_writer){.rw_dev = d, .rw_id = i, .rw_seed = seed};
		test_thread_start(&t[i], ram_writer_run, &rw[i]);
	}
	for (unsigned i = 0; i < RAM_THREADS; i++)
		assert_null(test_thread_join(t[i]));
	for (uint64_t blk = 0; blk < RAM_NBLOCKS; blk++) {
		ram_fill(want, sizeof(want), (unsigned)blk + 7);
		assert_int_equal(bdev_read(d, blk, 1, buf), 0);
		assert_memory_equal(buf, want, RAM_BS);
	}
	bdev_close(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_ram_read_write),
	    cmocka_unit_test(test_ram_range),
	    cmocka_unit_test(test_ram_bad_geometry),
	    cmocka_unit_test(test_ram_concurrent_writers),
	};
	return TEST_RUN("bdev_ram", tests);
}

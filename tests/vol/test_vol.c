/*
 * test_vol.c - the volume: transactions, commits, reads through the maps,
 * persistence across close, crash and failed commits.
 *
 * Proves: mkfs gives an empty volume and open refuses what is not one
 * (no state, a super root that is garbage or names another delta);
 * blocks written read back before and after a sync, after close and
 * reopen, from a small cache that must read them back through the maps;
 * unwritten blocks read as zeros; punches (of cached and uncached blocks,
 * against writes in the same delta); many owners across owner-table
 * blocks and the owner table's own map; reserved owners, indexes past
 * VOL_MAX_INDEX and transactions overrunning their reservation are
 * refused; a write or punch in the next delta while the commit waits
 * (the fork), or after the commit took the block, reads back right and
 * leaves the committing delta unchanged; a walk that holds an address
 * across a whole commit does not cache the old copies it would read
 * (bmap.c's generation); a read into a segment being reused waits, then
 * re-resolves (tracked reads); every crash point of a commit recovers
 * the old delta or the new one whole, punches included; a failed commit
 * (write, flush or read error) loses nothing, punches included, and the
 * next one carries it; truncates of sparse owners over the whole index
 * range (cheap, before and after sync and reopen, regrowing over dropped
 * map blocks), against writes in the same delta and the next, at every
 * crash point of their commit, and across a failed commit, never
 * consuming more than was reserved; many threads writing, rewriting and reading while
 * commits run (for the sanitizers).
 */
#include "harness.h"
#include "vol_fixture.h"

#include "log/log.h"
#include "vol/vol_internal.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define DEV_BLOCKS 4096 /* 16 MiB: 63 segments of 64 blocks */
#define OWNER	   20

static void test_mkfs_gives_empty_volume(void **state)
{
	struct bdev *d = vf_mkfs(DEV_BLOCKS);
	struct vol *v = vf_open(d, 0);

	(void)state;
	assert_int_equal(vol_block_size(v), VF_BS);
	assert_int_equal(vol_committed_delta(v), 1);
	vf_expect(v, OWNER, 0, 0);
	vf_expect(v, VOL_MAX_OWNER, VOL_MAX_INDEX, 0);
	assert_int_equal(vol_close(v), 0);
}

/* A log whose one delta ends with @sr_data as its super root. */
static struct bdev *dev_with_super_root(const void *sr_data, uint64_t delta)
{
	struct log_format_opts lo = {.lfo_block_size = VF_BS, .lfo_seg_blocks = VF_SEG};
	struct log_builder *lb;
	struct bdev *d;
	struct log *l;
	uint64_t pblk;

	assert_int_equal(bdev_emu_open(VF_BS, DEV_BLOCKS, &d), 0);
	assert_int_equal(log_format(d, &lo), 0);
	assert_int_equal(log_open(d, &l), 0);
	assert_int_equal(log_build_begin(l, delta, &lb), 0);
	assert_int_equal(log_build_add(lb, 0, 0, LOG_ENTRY_SUPER_ROOT, sr_data, &pblk), 0);
	assert_int_equal(log_build_finish(lb), 0);
	log_close(l);
	return d;
}

static void expect_open_refused(struct bdev *d)
{
	struct vol *v = NULL;

	assert_int_equal(vol_open(d, NULL, &v), -EUCLEAN);
	assert_null(v);
	bdev_close(d);
}

static void test_open_refuses_what_is_not_a_volume(void **state)
{
	struct log_format_opts lo = {.lfo_block_size = VF_BS, .lfo_seg_blocks = VF_SEG};
	struct vol_sroot sr = {.sr_delta = 1};
	unsigned char block[VF_BS];
	struct bdev *d;

	(void)state;
	assert_int_equal(bdev_emu_open(VF_BS, DEV_BLOCKS, &d), 0);
	expect_open_refused(d); /* blank */
	assert_int_equal(bdev_emu_open(VF_BS, DEV_BLOCKS, &d), 0);
	assert_int_equal(log_format(d, &lo), 0);
	expect_open_refused(d); /* a log, but no state */
	memset(block, 0xa5, sizeof(block));
	expect_open_refused(dev_with_super_root(block, 1)); /* garbage super root */
	vol_sroot_encode(&sr, block, VF_BS);
	block[100] ^= 1;
	expect_open_refused(dev_with_super_root(block, 1)); /* checksum */
	sr.sr_delta = 7;
	vol_sroot_encode(&sr, block, VF_BS);
	expect_open_refused(dev_with_super_root(block, 1)); /* another delta's */
	sr.sr_delta = 1;
	sr.sr_otab_height = 1; /* a height without a root */
	vol_sroot_encode(&sr, block, VF_BS);
	expect_open_refused(dev_with_super_root(block, 1));
	sr.sr_otab_height = 0;
	vol_sroot_encode(&sr, block, VF_BS);
	d = dev_with_super_root(block, 1); /* and the right one opens */
	assert_int_equal(vol_close(vf_open(d, 0)), 0);
}

static void test_write_read_sync_close_reopen(void **state)
{
	char path[VF_PATH_MAX];
	struct vol *v;

	vf_mkfs_file(path, DEV_BLOCKS);
	v = vf_open_file(path, 0);

	(void)state;
	for (uint64_t i = 0; i < 40; i++)
		vf_write(v, OWNER + i % 3, i, 1);
	for (uint64_t i = 0; i < 40; i++)
		vf_expect(v, OWNER + i % 3, i, 1); /* from the cache, uncommitted */
	assert_int_equal(vol_sync(v), 0);
	assert_true(vol_committed_delta(v) > 1);
	for (uint64_t i = 0; i < 40; i += 2)
		vf_write(v, OWNER + i % 3, i, 2);
	assert_int_equal(vol_close(v), 0); /* commits what is open */
	v = vf_open_file(path, 0);
	for (uint64_t i = 0; i < 40; i++)
		vf_expect(v, OWNER + i % 3, i, i % 2 ? 1 : 2);
	vf_check(v);
	assert_int_equal(vol_close(v), 0);
	vf_remove_file(path);
}

static void test_sparse_blocks_read_as_zeros(void **state)
{
	static const uint64_t idx[] = {0, 511, 512, 262144, 1ULL << 30, VOL_MAX_INDEX};
	char path[VF_PATH_MAX];
	struct vol *v;

	(void)state;
	vf_mkfs_file(path, DEV_BLOCKS);
	v = vf_open_file(path, 0);
	for (size_t i = 0; i < ARRAY_SIZE(idx); i += 2)
		vf_write(v, OWNER, idx[i], 3);
	assert_int_equal(vol_sync(v), 0);
	assert_int_equal(vol_close(v), 0);
	v = vf_open_file(path, 16); /* a small cache: reads go through the maps */
	for (size_t i = 0; i < ARRAY_SIZE(idx); i++)
		vf_expect(v, OWNER, idx[i], i % 2 ? 0 : 3);
	vf_expect(v, OWNER, 1, 0);
	vf_expect(v, OWNER, 513, 0);
	vf_expect(v, OWNER, VOL_MAX_INDEX - 1, 0);
	vf_expect(v, OWNER + 1, 0, 0); /* an owner without blocks */
	assert_int_equal(vol_close(v), 0);
	vf_remove_file(path);
}

static void test_punch(void **state)
{
	char path[VF_PATH_MAX];
	unsigned char data[VF_BS];
	uint64_t written;
	struct vol_txn t;
	struct vol *v;

	(void)state;
	vf_mkfs_file(path, DEV_BLOCKS);
	v = vf_open_file(path, 0);
	for (uint64_t i = 0; i < 8; i++)
		vf_write(v, OWNER, i, 1);
	assert_int_equal(vol_sync(v), 0);
	written = v->v_sr.sr_blocks_written;
	vf_punch(v, OWNER, 0); /* cached */
	vf_expect(v, OWNER, 0, 0);
	assert_int_equal(vol_sync(v), 0);
	/* the punched buffer is not written: only its map block, the owner
	 * table's block and map block, the translation's block and map block,
	 * the segment usage file's block and map block (all of height 1
	 * here), the super root */
	assert_int_equal(v->v_sr.sr_blocks_written - written, 8);
	assert_int_equal(vol_close(v), 0);
	v = vf_open_file(path, 0);
	vf_expect(v, OWNER, 0, 0);
	vf_punch(v, OWNER, 1); /* not cached: the pending punch answers the read */
	vf_expect(v, OWNER, 1, 0);
	/* punch then write in one transaction: the write wins */
	vf_pattern(data, OWNER, 2, 2);
	assert_int_equal(vol_txn_begin(v, 2, 0, &t), 0);
	assert_int_equal(vol_punch(&t, OWNER, 2), 0);
	assert_int_equal(vol_write(&t, OWNER, 2, data), 0);
	vol_txn_end(&t);
	/* write then punch in one delta: the punch wins */
	vf_write(v, OWNER, 3, 2);
	vf_punch(v, OWNER, 3);
	vf_punch(v, OWNER, 100); /* a hole: nothing to do */
	vf_expect(v, OWNER, 2, 2);
	vf_expect(v, OWNER, 3, 0);
	assert_int_equal(vol_sync(v), 0);
	/* punch in one delta, write in the next: the write wins */
	vf_punch(v, OWNER, 4);
	assert_int_equal(vol_sync(v), 0);
	vf_write(v, OWNER, 4, 3);
	assert_int_equal(vol_close(v), 0);
	v = vf_open_file(path, 0);
	vf_expect(v, OWNER, 0, 0);
	vf_expect(v, OWNER, 1, 0);
	vf_expect(v, OWNER, 2, 2);
	vf_expect(v, OWNER, 3, 0);
	vf_expect(v, OWNER, 4, 3);
	for (uint64_t i = 5; i < 8; i++)
		vf_expect(v, OWNER, i, 1);
	vf_expect(v, OWNER, 100, 0);
	vf_check(v);
	assert_int_equal(vol_close(v), 0);
	vf_remove_file(path);
}

static void test_many_owners(void **state)
{
	static const uint64_t far[] = {1ULL << 20, 1ULL << 33, VOL_MAX_OWNER};
	char path[VF_PATH_MAX];
	struct vol *v;

	(void)state;
	/* twice the usual size: a cache this small leaves the cleaner no
	 * room to move a segment's blocks, and 600 commits write the usual
	 * size over */
	vf_mkfs_file(path, 2 * DEV_BLOCKS);
	v = vf_open_file(path, 64); /* small: evictions all the way */
	for (uint64_t o = VOL_FIRST_OWNER; o < VOL_FIRST_OWNER + 300; o++) {
		vf_write(v, o, o % 7, 1);
		vf_write(v, o, 1000 + o, 1);
		if (o % 50 == 0)
			assert_int_equal(vol_sync(v), 0);
	}
	for (size_t i = 0; i < ARRAY_SIZE(far); i++)
		vf_write(v, far[i], i, 2);
	assert_int_equal(vol_sync(v), 0);
	for (uint64_t o = VOL_FIRST_OWNER; o < VOL_FIRST_OWNER + 300; o += 7)
		vf_expect(v, o, o % 7, 1);
	assert_int_equal(vol_close(v), 0);
	v = vf_open_file(path, 64);
	for (uint64_t o = VOL_FIRST_OWNER; o < VOL_FIRST_OWNER + 300; o++) {
		vf_expect(v, o, o % 7, 1);
		vf_expect(v, o, 1000 + o, 1);
		vf_expect(v, o, 1 + o % 7, 0);
	}
	for (size_t i = 0; i < ARRAY_SIZE(far); i++) {
		vf_expect(v, far[i], i, 2);
		vf_expect(v, far[i] - 1, i, 0);
	}
	vf_check(v);
	assert_int_equal(vol_close(v), 0);
	vf_remove_file(path);
}

static void test_reserved_owners_and_overruns_refused(void **state)
{
	static const uint64_t bad[][2] = {
	    {0, 0},
	    {VOL_OTAB_OWNER, 0},
	    {VOL_CLIENT_META - 1, 0},
	    {VOL_MAX_OWNER + 1, 0},
	    {OWNER, VOL_MAX_INDEX + 1},
	    {OWNER, VOL_META_BIT},
	};
	struct bdev *d = vf_mkfs(DEV_BLOCKS);
	struct vol *v = vf_open(d, 0);
	unsigned char data[VF_BS] = {1};
	struct vol_txn t;

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		assert_int_equal(vol_txn_begin(v, 2, 0, &t), 0);
		assert_int_equal(vol_write(&t, bad[i][0], bad[i][1], data), -EINVAL);
		assert_int_equal(vol_punch(&t, bad[i][0], bad[i][1]), -EINVAL);
		vol_txn_end(&t);
		assert_int_equal(vol_read(v, bad[i][0], bad[i][1], data), -EINVAL);
	}
	assert_int_equal(vol_txn_begin(v, 1, 0x80, &t), -EINVAL);
	assert_int_equal(vol_txn_begin(v, 2, 0, &t), 0);
	assert_int_equal(vol_write(&t, OWNER, 0, data), 0);
	assert_int_equal(vol_punch(&t, OWNER, 1), 0);
	assert_int_equal(vol_write(&t, OWNER, 2, data), -EINVAL); /* beyond its reservation */
	vol_txn_end(&t);
	assert_int_equal(vol_close(v), 0);
}

/* ---- the fork: the next delta changes blocks the commit still holds ---- */

static void *sync_main(void *arg)
{
	return (void *)(intptr_t)vol_sync(arg);
}

/*
 * vol_write_range keeps the rest of the block, from the cache, from disk
 * and over a hole; client metadata owners work like others; a range past
 * the block is refused.
 */
static void test_write_range(void **state)
{
	char path[VF_PATH_MAX];
	unsigned char data[VF_BS], want[VF_BS], bytes[100];
	struct vol_txn t;
	struct vol *v;

	(void)state;
	vf_mkfs_file(path, DEV_BLOCKS);
	v = vf_open_file(path, 0);
	vf_write(v, OWNER, 3, 1);
	assert_int_equal(vol_sync(v), 0);
	assert_int_equal(vol_close(v), 0);
	v = vf_open_file(path, 0); /* block 3 is on disk only */
	memset(bytes, 0xab, sizeof(bytes));
	assert_int_equal(vol_txn_begin(v, 4, 0, &t), 0);
	assert_int_equal(vol_write_range(&t, OWNER, 3, 4000, 96, bytes), 0);
	assert_int_equal(vol_write_range(&t, OWNER, 9, 10, 100, bytes), 0); /* a hole */
	assert_int_equal(vol_write_range(&t, VOL_CLIENT_META, 0, 0, 8, bytes), 0);
	assert_int_equal(vol_write_range(&t, OWNER, 3, 4000, 97, bytes), -EINVAL);
	assert_int_equal(vol_write_range(&t, OWNER, 3, VF_BS + 1, 0, bytes), -EINVAL);
	vol_txn_end(&t);
	for (int pass = 0; pass < 2; pass++) {
		vf_pattern(want, OWNER, 3, 1);
		memset(want + 4000, 0xab, 96);
		assert_int_equal(vol_read(v, OWNER, 3, data), 0);
		assert_memory_equal(data, want, VF_BS);
		memset(want, 0, VF_BS);
		memset(want + 10, 0xab, 100);
		assert_int_equal(vol_read(v, OWNER, 9, data), 0);
		assert_memory_equal(data, want, VF_BS);
		assert_int_equal(vol_read_range(v, VOL_CLIENT_META, 0, 0, 8, data), 0);
		assert_memory_equal(data, bytes, 8);
		assert_int_equal(vol_read_range(v, OWNER, 9, 4090, 7, data), -EINVAL);
		assert_int_equal(vol_close(v), 0);
		v = vf_open_file(path, 0); /* and again from disk */
	}
	assert_int_equal(vol_close(v), 0);
	vf_remove_file(path);
}

/* Threads each own a range of one block: no partial write loses another's. */
enum { RANGE_THREADS = 4, RANGE_ROUNDS = 200, RANGE_BYTES = VF_BS / RANGE_THREADS };

struct range_arg {
	struct vol *ra_vol;
	unsigned ra_id;
};

static void *range_writer(void *arg)
{
	struct range_arg *a = arg;
	unsigned char bytes[RANGE_BYTES];

	for (unsigned r = 1; r <= RANGE_ROUNDS; r++) {
		struct vol_txn t;

		memset(bytes, (int)(a->ra_id * 50 + r % 50), sizeof(bytes));
		assert_int_equal(vol_txn_begin(a->ra_vol, 1, 0, &t), 0);
		assert_int_equal(
		    vol_write_range(&t, OWNER, 0, a->ra_id * RANGE_BYTES, RANGE_BYTES, bytes), 0);
		vol_txn_end(&t);
		if (r % 50 == 0)
			assert_int_equal(vol_sync(a->ra_vol), 0);
	}
	return NULL;
}

static void test_write_range_threads(void **state)
{
	struct bdev *d = vf_mkfs(DEV_BLOCKS);
	struct vol *v = vf_open(d, 64), *img;
	struct range_arg args[RANGE_THREADS];
	pthread_t th[RANGE_THREADS];
	unsigned char data[VF_BS];

	(void)state;
	test_watchdog("test_write_range_threads", 120);
	for (unsigned i = 0; i < RANGE_THREADS; i++) {
		args[i] = (struct range_arg){v, i};
		test_thread_start(&th[i], range_writer, &args[i]);
	}
	for (unsigned i = 0; i < RANGE_THREADS; i++)
		test_thread_join(th[i]);
	assert_int_equal(vol_sync(v), 0);
	img = vf_reopen_copy(d, 64);
	for (int k = 0; k < 2; k++) {
		assert_int_equal(vol_read(k ? img : v, OWNER, 0, data), 0);
		for (unsigned i = 0; i < VF_BS; i++)
			assert_int_equal(data[i], (i / RANGE_BYTES) * 50 + RANGE_ROUNDS % 50);
	}
	assert_int_equal(vol_close(img), 0);
	assert_int_equal(vol_close(v), 0);
	test_watchdog_cancel();
}

/*
 * A dirty limit per delta far beyond what the cache can commit (deltas
 * close at syncs only) and scattered writes, each needing its own map
 * path, from several threads into a small cache: the throttle keeps the
 * blocks dirty or booked within what the cache can commit, so the
 * commit always finds buffers for the map blocks. Before the throttle
 * counted transactions in flight and bounded by the cache itself, this
 * hung (the watchdog fails it). A transaction larger than the cache can
 * ever commit is refused.
 */
enum { FLOOD_THREADS = 4, FLOOD_TXNS = 40, FLOOD_TXN_BLOCKS = 4 };

static void *flood_writer(void *arg)
{
	struct range_arg *a = arg;
	unsigned char data[VF_BS];

	for (unsigned i = 0; i < FLOOD_TXNS; i++) {
		struct vol_txn t;

		assert_int_equal(vol_txn_begin(a->ra_vol, FLOOD_TXN_BLOCKS, 0, &t), 0);
		for (unsigned j = 0; j < FLOOD_TXN_BLOCKS; j++) {
			uint64_t index = ((uint64_t)(i * FLOOD_TXN_BLOCKS + j) << 18) + a->ra_id;

			vf_pattern(data, OWNER + a->ra_id, index, 1);
			assert_int_equal(vol_write(&t, OWNER + a->ra_id, index, data), 0);
		}
		vol_txn_end(&t);
	}
	return NULL;
}

static void test_throttle_bounds_dirty_blocks_by_the_cache(void **state)
{
	struct vol_open_opts oo = {
	    .voo_cache_blocks = 160, .voo_max_dirty = 1u << 30, .voo_max_age_ms = 3600 * 1000};
	struct bdev *d = vf_mkfs(DEV_BLOCKS * 4);
	struct range_arg args[FLOOD_THREADS];
	pthread_t th[FLOOD_THREADS];
	struct vol_txn t;
	struct vol *v, *img;

	(void)state;
	test_watchdog("test_throttle_bounds_dirty_blocks_by_the_cache", 120);
	assert_int_equal(vol_open(d, &oo, &v), 0);
	assert_int_equal(vol_txn_begin(v, 160, 0, &t), -EINVAL);
	for (unsigned i = 0; i < FLOOD_THREADS; i++) {
		args[i] = (struct range_arg){v, i};
		test_thread_start(&th[i], flood_writer, &args[i]);
	}
	for (unsigned i = 0; i < FLOOD_THREADS; i++)
		test_thread_join(th[i]);
	assert_int_equal(vol_sync(v), 0);
	img = vf_reopen_copy(d, 0);
	for (unsigned w = 0; w < FLOOD_THREADS; w++)
		for (unsigned k = 0; k < FLOOD_TXNS * FLOOD_TXN_BLOCKS; k++)
			vf_expect(img, OWNER + w, ((uint64_t)k << 18) + w, 1);
	assert_int_equal(vol_close(img), 0);
	assert_int_equal(vol_close(v), 0);
	test_watchdog_cancel();
}

/*
 * A transaction that is over the throttle's bound only because of the
 * map paths a commit still holds, when every block of that commit is
 * written (nothing dirty) and no transaction is in flight, waits for the
 * commit to drop them, and is woken when it does. Forced: the commit
 * stops at vol.commit.paths until the transaction waits. Before the
 * commit's end woke the throttle, this hung (the watchdog fails it).
 */
static void *throttled_writer(void *arg)
{
	struct range_arg *a = arg;
	unsigned n = (unsigned)a->ra_vol->v_dirty_limit;
	unsigned char data[VF_BS];
	struct vol_txn t;

	syncpoint_thread_name("W");
	assert_int_equal(vol_txn_begin(a->ra_vol, n, 0, &t), 0);
	for (unsigned j = 0; j < n; j++) {
		vf_pattern(data, OWNER + 1, j, 1);
		assert_int_equal(vol_write(&t, OWNER + 1, j, data), 0);
	}
	vol_txn_end(&t);
	return NULL;
}

static void test_throttle_waits_out_a_commits_paths(void **state)
{
	struct vol_open_opts oo = {
	    .voo_cache_blocks = 160, .voo_max_dirty = 1u << 30, .voo_max_age_ms = 3600 * 1000};
	struct bdev *d = vf_mkfs(DEV_BLOCKS * 4);
	struct range_arg arg;
	unsigned char data[VF_BS];
	pthread_t sync_th, w_th;
	uint64_t worst, scattered;
	struct vol_txn t;
	struct vol *v;

	(void)state;
	test_needs_syncpoints();
	test_watchdog("test_throttle_waits_out_a_commits_paths", 60);
	assert_int_equal(vol_open(d, &oo, &v), 0);
	worst = vol_block_worst(v);
	/* scattered blocks, each its own map path, enough that the paths and
	 * a largest transaction are over the bound without a dirty block */
	scattered =
	    MIN(v->v_dirty_limit, (v->v_buffer_limit - v->v_dirty_limit * worst) / (worst - 1) + 1);
	assert_true(scattered * worst <= v->v_buffer_limit);
	assert_true(scattered * (worst - 1) + v->v_dirty_limit * worst > v->v_buffer_limit);
	assert_int_equal(vol_txn_begin(v, scattered, 0, &t), 0);
	for (uint64_t j = 0; j < scattered; j++) {
		vf_pattern(data, OWNER, j << 18, 1);
		assert_int_equal(vol_write(&t, OWNER, j << 18, data), 0);
	}
	vol_txn_end(&t);

	syncpoint_enable();
	syncpoint_order("vol.txn.throttle_wait_locked@W", "vol.commit.paths");
	test_thread_start(&sync_th, sync_main, v);
	syncpoint_wait_arrived("vol.commit.paths", 1);
	arg = (struct range_arg){v, 0};
	test_thread_start(&w_th, throttled_writer, &arg);
	assert_int_equal((intptr_t)test_thread_join(sync_th), 0);
	test_thread_join(w_th);
	syncpoint_reset();
	assert_int_equal(vol_sync(v), 0);
	for (uint64_t j = 0; j < scattered; j++)
		vf_expect(v, OWNER, j << 18, 1);
	for (unsigned j = 0; j < v->v_dirty_limit; j++)
		vf_expect(v, OWNER + 1, j, 1);
	vf_check(v);
	assert_int_equal(vol_close(v), 0);
	test_watchdog_cancel();
}

/*
 * While a large delta commits, the next one fills: the throttle counts
 * each dirty block's translation blocks only up to the whole translation
 * per delta (vol_dat_cap). A delta of more than a third of the bound
 * (three blocks counted per dirty block) stopped the writer until its
 * commit ended, so deltas that large never overlapped their commits.
 * Forced: the commit stops at vol.commit.data while the writer fills
 * the next delta; were the writer to reach the throttle's wait, the
 * callback releases the commit, so the test fails instead of hanging.
 */
static bool throttle_hit;

static void throttle_release(const char *point, void *arg)
{
	(void)point;
	(void)arg;
	if (!throttle_hit) {
		throttle_hit = true;
		SYNC_POINT("test.release");
	}
}

static void test_throttle_lets_the_next_delta_fill(void **state)
{
	struct vol_open_opts oo = {
	    .voo_cache_blocks = 1024, .voo_max_dirty = 1u << 30, .voo_max_age_ms = 3600 * 1000};
	struct bdev *d = vf_mkfs(DEV_BLOCKS);
	uint64_t worst, vw, big = 250, next = 100;
	pthread_t sync_th;
	struct vol *v;

	(void)state;
	test_needs_syncpoints();
	test_watchdog("test_throttle_lets_the_next_delta_fill", 60);
	assert_int_equal(vol_open(d, &oo, &v), 0);
	worst = vol_block_worst(v);
	vw = vol_vblock_worst(v);
	/* counted 3 per block, the two deltas are over the bound; with the
	 * translation capped, they and two map paths fit */
	assert_true((big + next) * vw + worst > v->v_buffer_limit);
	assert_true(big + next + 2 * vol_dat_cap(v) + 3 * worst <= v->v_buffer_limit);
	for (uint64_t j = 0; j < big; j++)
		vf_write(v, OWNER, j, 1);

	throttle_hit = false;
	syncpoint_enable();
	syncpoint_order("test.release", "vol.commit.data");
	syncpoint_callback("vol.txn.throttle", throttle_release, NULL);
	test_thread_start(&sync_th, sync_main, v);
	syncpoint_wait_arrived("vol.commit.data", 1); /* the big delta closed, held */
	for (uint64_t j = 0; j < next; j++)
		vf_write(v, OWNER + 1, j, 2);
	assert_false(throttle_hit);
	SYNC_POINT("test.release");
	assert_int_equal((intptr_t)test_thread_join(sync_th), 0);
	syncpoint_reset();
	assert_int_equal(vol_sync(v), 0);
	for (uint64_t j = 0; j < big; j++)
		vf_expect(v, OWNER, j, 1);
	for (uint64_t j = 0; j < next; j++)
		vf_expect(v, OWNER + 1, j, 2);
	vf_check(v);
	assert_int_equal(vol_close(v), 0);
	test_watchdog_cancel();
}

static void test_fork_while_committing(void **state)
{
	struct bdev *d = vf_mkfs(DEV_BLOCKS);
	struct vol *v = vf_open(d, 0), *img;
	uint32_t committed;
	pthread_t th;

	(void)state;
	test_needs_syncpoints();
	test_watchdog("test_fork_while_committing", 30);
	vf_write(v, OWNER, 1, 1);
	vf_write(v, OWNER, 2, 1);
	assert_int_equal(vol_sync(v), 0);
	vf_write(v, OWNER, 1, 2); /* delta D */
	vf_write(v, OWNER, 2, 2);
	syncpoint_enable();
	syncpoint_order("test.forked", "vol.commit.begin");
	test_thread_start(&th, sync_main, v);
	syncpoint_wait_arrived("vol.commit.begin", 1); /* D closed, D+1 open */
	committed = vol_committed_delta(v);
	vf_write(v, OWNER, 1, 3); /* D+1: forks the buffer D still has to write */
	vf_punch(v, OWNER, 2);
	vf_expect(v, OWNER, 1, 3);
	vf_expect(v, OWNER, 2, 0);
	assert_true(buf_forks(v->v_cache) >= 2);
	SYNC_POINT("test.forked");
	assert_int_equal((intptr_t)test_thread_join(th), 0);
	assert_int_equal(vol_committed_delta(v), committed + 1);
	vf_expect(v, OWNER, 1, 3);
	vf_expect(v, OWNER, 2, 0);
	img = vf_open_crash(d, BDEV_EMU_DROP_ALL, 0); /* D durable, D+1 not */
	vf_expect(img, OWNER, 1, 2);
	vf_expect(img, OWNER, 2, 2);
	assert_int_equal(vol_close(img), 0);
	assert_int_equal(vol_sync(v), 0);
	img = vf_reopen_copy(d, 0);
	vf_expect(img, OWNER, 1, 3);
	vf_expect(img, OWNER, 2, 0);
	assert_int_equal(vol_close(img), 0);
	vf_check(v);
	assert_int_equal(vol_close(v), 0);
	test_watchdog_cancel();
}

/*
 * The commit has taken the block's buffer and is about to write it when
 * the next delta modifies it: the commit must skip the buffer (now of the
 * next delta) and write the fork's shadow, which holds the content of
 * the committing delta.
 */
static void test_fork_after_the_commit_took_the_block(void **state)
{
	struct bdev *d = vf_mkfs(DEV_BLOCKS);
	struct vol *v = vf_open(d, 0), *img;
	pthread_t th;

	(void)state;
	test_needs_syncpoints();
	test_watchdog("test_fork_after_the_commit_took_the_block", 30);
	vf_write(v, OWNER, 1, 1);
	assert_int_equal(vol_sync(v), 0);
	vf_write(v, OWNER, 1, 2); /* delta D: its only block */
	syncpoint_enable();
	syncpoint_order("test.forked", "vol.commit.taken");
	test_thread_start(&th, sync_main, v);
	syncpoint_wait_arrived("vol.commit.taken", 1);
	vf_write(v, OWNER, 1, 3); /* D+1 forks the taken buffer */
	SYNC_POINT("test.forked");
	assert_int_equal((intptr_t)test_thread_join(th), 0);
	vf_expect(v, OWNER, 1, 3);
	img = vf_open_crash(d, BDEV_EMU_DROP_ALL, 0); /* D durable, D+1 not */
	vf_expect(img, OWNER, 1, 2);
	assert_int_equal(vol_close(img), 0);
	assert_int_equal(vol_sync(v), 0);
	img = vf_reopen_copy(d, 0);
	vf_expect(img, OWNER, 1, 3);
	assert_int_equal(vol_close(img), 0);
	assert_int_equal(vol_close(v), 0);
	test_watchdog_cancel();
}

struct stale_reader {
	struct vol *sr_vol;
	uint64_t sr_index;
};

static void *stale_reader_main(void *arg)
{
	struct stale_reader *r = arg;

	syncpoint_thread_name("R");
	vf_expect(r->sr_vol, OWNER, r->sr_index, 1);
	return NULL;
}

/* Forget every clean map block and owner-table block in the cache. */
static void drop_maps(struct vol *v)
{
	buf_drop_owner(v->v_cache, VOL_DAT_OWNER, 0);
	buf_drop_owner(v->v_cache, VOL_OTAB_OWNER, 0);
	buf_drop_owner(v->v_cache, OWNER, VOL_META_BIT);
}

/*
 * bmap.c's hazard at the volume: a reader's walk holds the owner table's
 * root address when a whole commit moves the table and its map, and the
 * cache forgets them. The reader must not read (and cache) the old
 * copies; if it did, a later read of a block the commit wrote would
 * follow them to the old maps and find a hole.
 */
static void test_walk_across_a_commit(void **state)
{
	struct bdev *d = vf_mkfs(DEV_BLOCKS);
	struct vol *v = vf_open(d, 0);
	struct stale_reader r = {v, 5};
	struct buf *b;
	pthread_t th;

	(void)state;
	test_needs_syncpoints();
	test_watchdog("test_walk_across_a_commit", 30);
	vf_write(v, OWNER, 5, 1);
	assert_int_equal(vol_sync(v), 0);
	buf_drop_owner(v->v_cache, OWNER, 0);
	drop_maps(v);
	syncpoint_enable();
	syncpoint_order("test.moved", "vol.walk.node@R");
	test_thread_start(&th, stale_reader_main, &r);
	syncpoint_wait_arrived("vol.walk.node@R", 1); /* it holds the table's root */
	vf_write(v, OWNER, 6, 1);		      /* same map block, same table block */
	assert_int_equal(vol_sync(v), 0);
	drop_maps(v);
	SYNC_POINT("test.moved");
	test_thread_join(th);
	b = buf_find_hold(v->v_cache, OWNER, 6);
	assert_non_null(b);
	assert_int_equal(buf_drop(b), 0); /* clean: read it back through the maps */
	buf_put(b);
	vf_expect(v, OWNER, 6, 1);
	vf_expect(v, OWNER, 5, 1);
	assert_int_equal(vol_close(v), 0);
	test_watchdog_cancel();
}

static void *read5_main(void *arg)
{
	vf_expect(arg, OWNER, 5, 1);
	return NULL;
}

/*
 * Tracked reads (seed 004): a walk whose read lands in a segment being
 * reused waits for the reuse to end, then resolves its addresses again
 * and reads the block right.
 */
static void test_read_waits_out_a_reused_segment(void **state)
{
	struct bdev *d = vf_mkfs(DEV_BLOCKS);
	struct vol *v = vf_open(d, 0);
	uint64_t zone;
	pthread_t th;

	(void)state;
	test_needs_syncpoints();
	test_watchdog("test_read_waits_out_a_reused_segment", 30);
	vf_write(v, OWNER, 5, 1);
	assert_int_equal(vol_sync(v), 0);
	buf_drop_owner(v->v_cache, OWNER, 0);
	drop_maps(v);
	/* the walk's first read: the translation's root, to resolve the owner
	 * table's */
	zone = (v->v_dat.bt_root - v->v_geo.lg_seg_start) / VF_SEG;
	buf_track_reuse_begin(v->v_track, zone);
	syncpoint_enable();
	test_thread_start(&th, read5_main, v);
	syncpoint_wait_arrived("buf.track.read_wait_locked", 1);
	buf_track_reuse_end(v->v_track, zone);
	test_thread_join(th);
	assert_int_equal(buf_track_readers(v->v_track, zone), 0);
	assert_int_equal(vol_close(v), 0);
	test_watchdog_cancel();
}

/* ---- crashes and failed commits ---------------------------------------- */

static void test_crash_keeps_what_was_synced(void **state)
{
	struct bdev *d = vf_mkfs(DEV_BLOCKS);
	struct vol *v = vf_open(d, 0), *img;

	(void)state;
	for (uint64_t i = 0; i < 50; i++)
		vf_write(v, OWNER, i * 300, 1);
	assert_int_equal(vol_sync(v), 0);
	for (uint64_t i = 0; i < 10; i++)
		vf_write(v, OWNER, i * 300, 2); /* not synced */
	for (int mode = BDEV_EMU_KEEP_ALL; mode <= BDEV_EMU_DROP_ALL; mode++) {
		img = vf_open_crash(d, mode, 16);
		for (uint64_t i = 0; i < 50; i++)
			vf_expect(img, OWNER, i * 300, 1);
		assert_int_equal(vol_close(img), 0);
	}
	assert_int_equal(vol_close(v), 0);
}

/* Every crash point of one commit recovers one delta or the other, whole. */
static void test_crash_points_of_a_commit(void **state)
{
	static const int modes[] = {BDEV_EMU_KEEP_ALL, BDEV_EMU_DROP_ALL, BDEV_EMU_REORDER};
	struct bdev *d = vf_mkfs(DEV_BLOCKS);
	struct vol *v = vf_open(d, 0);
	uint64_t nwrites, nnew = 0;

	(void)state;
	for (uint64_t i = 0; i < 100; i++)
		vf_write(v, OWNER, i * 97, 1);
	vf_write(v, OWNER + 1, 5, 1);
	assert_int_equal(vol_sync(v), 0);
	bdev_emu_keep_history(d);
	for (uint64_t i = 0; i < 100; i++)
		vf_write(v, OWNER, i * 97, 2); /* spans two segments */
	vf_punch(v, OWNER + 1, 5);
	assert_int_equal(vol_sync(v), 0);
	nwrites = bdev_emu_history_writes(d);
	assert_true(nwrites >= 2);
	for (uint64_t n = 1; n <= nwrites + 1; n++) {
		for (size_t m = 0; m < ARRAY_SIZE(modes); m++) {
			struct bdev_emu_crash how = {.ec_mode = modes[m], .ec_seed = n};
			struct bdev *imgdev;
			struct vol *img;
			uint32_t ver;

			assert_int_equal(bdev_emu_crash_at(d, n, &how, &imgdev), 0);
			img = vf_open(imgdev, 64);
			ver = vf_has(img, OWNER, 0, 2) ? 2 : 1;
			nnew += ver == 2;
			for (uint64_t i = 0; i < 100; i++)
				if (!vf_has(img, OWNER, i * 97, ver))
					fail_msg("crash at write %llu mode %d: block %llu is not "
						 "version %u like block 0",
						 (unsigned long long)n, modes[m],
						 (unsigned long long)(i * 97), ver);
			vf_expect(img, OWNER + 1, 5, ver == 2 ? 0 : 1);
			assert_int_equal(vol_close(img), 0);
		}
	}
	assert_true(nnew > 0); /* the last point has the whole commit */
	assert_int_equal(vol_close(v), 0);
}

/* One transaction truncating @owner from @from on. */
static void truncate_txn(struct vol *v, uint64_t owner, uint64_t from)
{
	vf_truncate(v, owner, from, 0);
}

static const uint64_t sparse_idx[] = {
    0, 1, 511, 512, 1000, 1ULL << 20, 1ULL << 30, VOL_MAX_INDEX - 1, VOL_MAX_INDEX};
#define NSPARSE ARRAY_SIZE(sparse_idx)

/* @owner's sparse blocks: version @version below @from, zeros from it on. */
static void expect_sparse(struct vol *v, uint64_t owner, uint64_t from, uint32_t version)
{
	for (size_t i = 0; i < NSPARSE; i++)
		vf_expect(v, owner, sparse_idx[i], sparse_idx[i] < from ? version : 0);
}

/*
 * Truncates of a sparse owner spanning the whole index range (2^36
 * blocks) cost what is mapped, not the range; they hold before and
 * after a sync, after reopening with a small cache (reads through the
 * pruned maps), and the owner can grow again, including over map blocks
 * the truncate dropped.
 */
static void test_truncate_sparse_huge_ranges(void **state)
{
	struct bdev *d = vf_mkfs(DEV_BLOCKS);
	struct vol *v = vf_open(d, 0), *img;
	struct vol_txn t;
	uint64_t from, cost;

	(void)state;
	test_watchdog("test_truncate_sparse_huge_ranges", 60);
	for (size_t i = 0; i < NSPARSE; i++)
		vf_write(v, OWNER, sparse_idx[i], 1);
	vf_write(v, OWNER + 1, 7, 1); /* a neighbour, untouched */
	assert_int_equal(vol_sync(v), 0);
	truncate_txn(v, OWNER, 1000); /* cached blocks, some map blocks */
	expect_sparse(v, OWNER, 1000, 1);
	assert_int_equal(vol_sync(v), 0);
	expect_sparse(v, OWNER, 1000, 1);
	img = vf_reopen_copy(d, 16);
	expect_sparse(img, OWNER, 1000, 1);
	vf_expect(img, OWNER + 1, 7, 1);
	assert_int_equal(vol_close(img), 0);

	truncate_txn(v, OWNER, 1); /* not aligned to a map block */
	expect_sparse(v, OWNER, 1, 1);
	assert_int_equal(vol_sync(v), 0);
	img = vf_reopen_copy(d, 16);
	expect_sparse(img, OWNER, 1, 1);
	assert_int_equal(vol_close(img), 0);

	/* grow again over what the truncates dropped, then empty */
	for (size_t i = 0; i < NSPARSE; i++)
		vf_write(v, OWNER, sparse_idx[i], 2);
	assert_int_equal(vol_sync(v), 0);
	expect_sparse(v, OWNER, UINT64_MAX, 2);
	truncate_txn(v, OWNER, 0);
	expect_sparse(v, OWNER, 0, 2);
	assert_int_equal(vol_sync(v), 0);
	img = vf_reopen_copy(d, 16);
	expect_sparse(img, OWNER, 0, 2);
	vf_expect(img, OWNER + 1, 7, 1);
	vf_check(img);
	assert_int_equal(vol_close(img), 0);
	truncate_txn(v, OWNER, 0);		   /* an empty owner */
	truncate_txn(v, OWNER + 2, 12345);	   /* one never written */
	truncate_txn(v, OWNER, VOL_MAX_INDEX + 1); /* past everything */
	vf_write(v, OWNER, 1ULL << 30, 3);
	assert_int_equal(vol_sync(v), 0);
	img = vf_reopen_copy(d, 16);
	vf_expect(img, OWNER, 1ULL << 30, 3);
	vf_expect(img, OWNER, 0, 0);
	vf_expect(img, OWNER + 1, 7, 1);
	assert_int_equal(vol_close(img), 0);

	assert_int_equal(vol_truncate_plan(v, OWNER, 0, 1ULL << 31, UINT64_MAX, &from, &cost), 0);
	assert_int_equal(from, 0);
	assert_int_equal(cost, 2); /* the path; the block and the map blocks above it */
	assert_int_equal(vol_txn_begin(v, cost, 0, &t), 0);
	assert_int_equal(vol_truncate(&t, 3, 0, 1), -EINVAL);		 /* the volume's own */
	assert_int_equal(vol_truncate(&t, OWNER, 0, cost + 1), -EINVAL); /* more than reserved */
	assert_int_equal(vol_truncate(&t, OWNER, 0, cost), 0);
	assert_int_equal(vol_truncate(&t, OWNER, 0, 1), -EINVAL); /* past its reservation */
	vol_txn_end(&t);
	vf_check(v);
	assert_int_equal(vol_close(v), 0);
	test_watchdog_cancel();
}

#define TRUNCATE_CACHE 4096u /* room for a truncate of 600 blocks in one transaction */

/*
 * One transaction truncating @owner's blocks [@from, @to) (none past @to)
 * at the cost of the range, without the plan's walk (which reads the map).
 */
static void truncate_range_txn(struct vol *v, uint64_t owner, uint64_t from, uint64_t to)
{
	uint64_t cost = vol_truncate_cost(v, to - from);
	struct vol_txn t;

	assert_int_equal(vol_txn_begin(v, cost, 0, &t), 0);
	assert_int_equal(vol_truncate(&t, owner, from, cost), 0);
	vol_txn_end(&t);
}

/* Blocks 0..n-1 of OWNER at version 1, synced; a cold volume (nothing cached) if @cold. */
static struct vol *truncate_setup(struct bdev **d, uint64_t n, bool cold)
{
	struct vol *v;
	struct bdev *copy;

	*d = vf_mkfs(DEV_BLOCKS);
	v = vf_open(*d, TRUNCATE_CACHE);
	for (uint64_t i = 0; i < n; i++)
		vf_write(v, OWNER, i, 1);
	assert_int_equal(vol_sync(v), 0);
	if (!cold)
		return v;
	assert_int_equal(bdev_emu_open_copy(*d, &copy), 0);
	assert_int_equal(vol_close(v), 0);
	*d = copy;
	return vf_open(copy, TRUNCATE_CACHE);
}

/*
 * A truncate's cost is what it frees, counted by vol_truncate_plan: a
 * large one is a loop from the top down, each step within its budget
 * and lower than the last; holes cost nothing, dirty blocks count with
 * the map blocks their commit may add, and the plan never costs more
 * than the range's bound (vol_truncate_cost).
 */
static void test_truncate_plan_from_the_top(void **state)
{
	struct bdev *d = vf_mkfs(DEV_BLOCKS);
	struct vol *v = vf_open(d, 0), *img;
	uint64_t hi = VOL_INDEX_END, from, cost, steps = 0;
	struct vol_txn t;

	(void)state;
	test_watchdog("test_truncate_plan_from_the_top", 120);
	/* an owner of two far blocks: holes cost nothing, one step */
	vf_write(v, OWNER + 1, 0, 1);
	vf_write(v, OWNER + 1, 1ULL << 30, 1);
	assert_int_equal(vol_sync(v), 0);
	assert_int_equal(vol_truncate_plan(v, OWNER + 1, 0, VOL_INDEX_END, 2, &from, &cost), 0);
	assert_int_equal(from, 0);
	assert_int_equal(cost, 2);

	/* committed blocks, then dirty ones above them */
	for (uint64_t i = 0; i < 1000; i++)
		vf_write(v, OWNER, i, 1);
	assert_int_equal(vol_sync(v), 0);
	for (uint64_t i = 1000; i < 1040; i++)
		vf_write(v, OWNER, i, 2);
	assert_int_equal(vol_truncate_plan(v, OWNER, 0, 1040, UINT64_MAX, &from, &cost), 0);
	assert_int_equal(from, 0);
	assert_true(cost <=
		    vol_truncate_cost(v, 1000) + vol_truncate_cost(v, 40 * (1 + v->v_height_max)));
	/* the dirty blocks alone: each with the map blocks it may add */
	assert_int_equal(vol_truncate_plan(v, OWNER, 1000, 1040, UINT64_MAX, &from, &cost), 0);
	assert_true(cost > 2 && cost <= vol_truncate_cost(v, 40 * (1 + v->v_height_max)));
	do {
		assert_int_equal(vol_truncate_plan(v, OWNER, 0, hi, 3, &from, &cost), 0);
		assert_true(cost <= 3);
		assert_true(from < hi);
		assert_int_equal(vol_txn_begin(v, cost, VOL_TXN_FREEING, &t), 0);
		assert_int_equal(vol_truncate(&t, OWNER, from, cost), 0);
		vol_txn_end(&t);
		vf_expect(v, OWNER, from, 0);
		if (from)
			vf_expect(v, OWNER, from - 1, from - 1 < 1000 ? 1 : 2);
		hi = from;
		steps++;
	} while (from > 0);
	assert_true(steps > 10); /* 1040 blocks, a few dozen a step */
	assert_int_equal(vol_sync(v), 0);
	img = vf_reopen_copy(d, 0);
	for (uint64_t i = 0; i < 1040; i++)
		vf_expect(img, OWNER, i, 0);
	vf_expect(img, OWNER + 1, 1ULL << 30, 1);
	vf_check(img);
	assert_int_equal(vol_close(img), 0);
	vf_check(v);
	assert_int_equal(vol_close(v), 0);
	test_watchdog_cancel();
}

struct planner {
	struct vol *pl_vol;
	uint64_t pl_from, pl_cost;
	int pl_err;
};

static void *planner_main(void *arg)
{
	struct planner *pl = arg;

	syncpoint_thread_name("P");
	pl->pl_err = vol_truncate_plan(pl->pl_vol, OWNER, 0, VOL_INDEX_END, UINT64_MAX,
				       &pl->pl_from, &pl->pl_cost);
	return NULL;
}

/*
 * A commit ends while a truncate's plan holds an entry of the owner's
 * map: the plan walks again, from the new generation, and returns the
 * whole owner's cost (it once spun without walking again).
 */
static void test_truncate_plan_across_a_commit(void **state)
{
	struct bdev *d = vf_mkfs(DEV_BLOCKS);
	struct vol *v = vf_open(d, 0);
	struct planner pl = {v, 0, 0, -1};
	uint64_t from, cost;
	pthread_t th;

	(void)state;
	test_needs_syncpoints();
	test_watchdog("test_truncate_plan_across_a_commit", 30);
	for (uint64_t i = 0; i < 4; i++)
		vf_write(v, OWNER, i, 1);
	vf_write(v, OWNER, 1000, 1); /* a map of two levels */
	assert_int_equal(vol_sync(v), 0);
	assert_int_equal(vol_truncate_plan(v, OWNER, 0, VOL_INDEX_END, UINT64_MAX, &from, &cost),
			 0);
	syncpoint_enable();
	syncpoint_order("test.committed", "vol.walk.down@P");
	test_thread_start(&th, planner_main, &pl);
	syncpoint_wait_arrived("vol.walk.down@P", 1); /* it holds the root's entry */
	vf_write(v, OWNER + 1, 0, 1);
	assert_int_equal(vol_sync(v), 0); /* a commit ends */
	SYNC_POINT("test.committed");
	test_thread_join(th);
	assert_true(syncpoint_arrived("vol.walk.down@P") > 1); /* it walked again */
	syncpoint_reset();
	assert_int_equal(pl.pl_err, 0);
	assert_int_equal(pl.pl_from, 0);
	assert_int_equal(pl.pl_cost, cost);
	vf_check(v);
	assert_int_equal(vol_close(v), 0);
	test_watchdog_cancel();
}

/*
 * Writes after a truncate in the same delta win (as after a punch),
 * writes before it lose; a partial write after it sees zeros around its
 * bytes; the same on cached and on cold blocks.
 */
static void test_truncate_then_write_same_delta(void **state)
{
	(void)state;
	for (int cold = 0; cold < 2; cold++) {
		unsigned char buf[VF_BS], part[16];
		struct bdev *d;
		struct vol *v = truncate_setup(&d, 12, cold), *img = NULL;
		struct vol_txn t;

		memset(part, 0x5a, sizeof(part));
		uint64_t from, cost;

		assert_int_equal(vol_truncate_plan(v, OWNER, 6, 12, UINT64_MAX, &from, &cost), 0);
		assert_int_equal(from, 6);
		assert_int_equal(vol_txn_begin(v, 4 + cost, 0, &t), 0);
		vf_pattern(buf, OWNER, 9, 2);
		assert_int_equal(vol_write(&t, OWNER, 9, buf), 0); /* before: lost */
		assert_int_equal(vol_truncate(&t, OWNER, 6, cost), 0);
		vf_pattern(buf, OWNER, 8, 3);
		assert_int_equal(vol_write(&t, OWNER, 8, buf), 0); /* after: wins */
		assert_int_equal(vol_write_range(&t, OWNER, 10, 100, sizeof(part), part), 0);
		vf_pattern(buf, OWNER, 5, 3);
		assert_int_equal(vol_write(&t, OWNER, 5, buf), 0);
		vol_txn_end(&t);
		for (int pass = 0; pass < 3; pass++) {
			struct vol *r = v;

			if (pass == 1)
				assert_int_equal(vol_sync(v), 0);
			if (pass == 2)
				r = img = vf_reopen_copy(d, 16);
			for (uint64_t i = 0; i < 12; i++) {
				if (i == 10) {
					assert_int_equal(vol_read(r, OWNER, i, buf), 0);
					for (uint32_t k = 0; k < VF_BS; k++)
						assert_int_equal(buf[k],
								 k >= 100 && k < 116 ? 0x5a : 0);
					continue;
				}
				vf_expect(r, OWNER, i, i == 5 || i == 8 ? 3 : i < 6 ? 1 : 0);
			}
			if (pass == 2)
				assert_int_equal(vol_close(img), 0);
		}
		vf_check(v);
		assert_int_equal(vol_close(v), 0);
	}
}

/*
 * A truncate in delta D, then, while D's commit waits, writes and reads
 * in D+1: the write (of a cached and of an uncached block) wins, an
 * uncached truncated block reads as zeros before D's commit pruned the
 * map, and a crash after D keeps D's truncate without D+1's writes.
 */
static void test_truncate_then_write_next_delta(void **state)
{
	struct bdev *d;
	struct vol *v = truncate_setup(&d, 12, true), *img;
	pthread_t th;

	(void)state;
	test_needs_syncpoints();
	test_watchdog("test_truncate_then_write_next_delta", 30);
	vf_expect(v, OWNER, 7, 1); /* cached; 8.. are not */
	truncate_txn(v, OWNER, 4); /* delta D */
	syncpoint_enable();
	syncpoint_order("test.written", "vol.commit.begin");
	test_thread_start(&th, sync_main, v);
	syncpoint_wait_arrived("vol.commit.begin", 1); /* D closed, D+1 open */
	vf_write(v, OWNER, 7, 2);		       /* D+1 */
	vf_write(v, OWNER, 9, 2);
	vf_expect(v, OWNER, 10, 0); /* a fill: D's truncate is pending */
	vf_expect(v, OWNER, 3, 1);
	SYNC_POINT("test.written");
	assert_int_equal((intptr_t)test_thread_join(th), 0);
	img = vf_open_crash(d, BDEV_EMU_DROP_ALL, 16); /* D durable, D+1 not */
	for (uint64_t i = 0; i < 12; i++)
		vf_expect(img, OWNER, i, i < 4 ? 1 : 0);
	assert_int_equal(vol_close(img), 0);
	assert_int_equal(vol_sync(v), 0);
	img = vf_reopen_copy(d, 16);
	for (uint64_t i = 0; i < 12; i++)
		vf_expect(img, OWNER, i, i < 4 ? 1 : i == 7 || i == 9 ? 2 : 0);
	assert_int_equal(vol_close(img), 0);
	vf_check(v);
	assert_int_equal(vol_close(v), 0);
	test_watchdog_cancel();
}

/* Every crash point of a commit with truncates: the old state or the new, whole. */
static void test_truncate_across_crash(void **state)
{
	static const int modes[] = {BDEV_EMU_KEEP_ALL, BDEV_EMU_DROP_ALL, BDEV_EMU_REORDER};
	struct bdev *d;
	struct vol *v = truncate_setup(&d, 40, false);
	uint64_t nwrites, nnew = 0;

	(void)state;
	vf_write(v, OWNER + 1, 1000, 1);
	assert_int_equal(vol_sync(v), 0);
	bdev_emu_keep_history(d);
	vf_write(v, OWNER, 2, 2);
	truncate_txn(v, OWNER, 5);
	vf_write(v, OWNER, 30, 2);
	truncate_txn(v, OWNER + 1, 0);
	assert_int_equal(vol_sync(v), 0);
	nwrites = bdev_emu_history_writes(d);
	for (uint64_t n = 1; n <= nwrites + 1; n++) {
		for (size_t m = 0; m < ARRAY_SIZE(modes); m++) {
			struct bdev_emu_crash how = {.ec_mode = modes[m], .ec_seed = n};
			struct bdev *imgdev;
			struct vol *img;
			bool new_state;

			assert_int_equal(bdev_emu_crash_at(d, n, &how, &imgdev), 0);
			img = vf_open(imgdev, 16);
			new_state = vf_has(img, OWNER, 30, 2);
			nnew += new_state;
			for (uint64_t i = 0; i < 40; i++)
				vf_expect(img, OWNER, i,
					  !new_state	      ? 1
					  : i == 2 || i == 30 ? 2
					  : i < 5	      ? 1
							      : 0);
			vf_expect(img, OWNER + 1, 1000, new_state ? 0 : 1);
			assert_int_equal(vol_close(img), 0);
		}
	}
	assert_true(nnew > 0);
	vf_check(v);
	assert_int_equal(vol_close(v), 0);
}

/*
 * A commit fails before it could apply a truncate (reading a map block
 * on its path fails), or after (its write fails): the truncate must be
 * carried by the next commit, and its zeroed blocks not written.
 */
static void test_failed_commit_keeps_truncate(void **state)
{
	(void)state;
	for (int fault = 0; fault < 2; fault++) {
		struct bdev *d;
		struct vol *v = truncate_setup(&d, 600, true), *img;

		vf_expect(v, OWNER, 550, 1); /* cached: the truncate zeroes it */
		truncate_range_txn(v, OWNER, 3, 600);
		vf_expect(v, OWNER, 3, 0);
		vf_expect(v, OWNER, 550, 0);
		bdev_emu_fail_op(d, fault ? BDEV_EMU_WRITE : BDEV_EMU_READ, 1, 1, -EIO);
		assert_int_equal(vol_sync(v), -EIO);
		bdev_emu_clear_faults(d);
		vf_expect(v, OWNER, 4, 0);
		vf_expect(v, OWNER, 550, 0);
		vf_write(v, OWNER, 599, 2);
		assert_int_equal(vol_sync(v), 0);
		img = vf_reopen_copy(d, 16);
		for (uint64_t i = 0; i < 600; i++)
			vf_expect(img, OWNER, i, i < 3 ? 1 : i == 599 ? 2 : 0);
		assert_int_equal(vol_close(img), 0);
		vf_check(v);
		assert_int_equal(vol_close(v), 0);
	}
}

/* vol_check finds a durable state naming a block outside the segments, or one twice. */
static void test_check_reports_damage(void **state)
{
	struct bdev *d = vf_mkfs(DEV_BLOCKS);
	struct vol *v = vf_open(d, 0);
	struct vol_check_stats cs;
	struct vol_sroot saved;

	(void)state;
	vf_write(v, OWNER, 0, 1);
	vf_write(v, OWNER, 600, 1);
	vf_check(v);
	assert_int_equal(vol_check(v, NULL, NULL, &cs), 0);
	/* data, owner map (height 2), otab + its map, translation + its map,
	 * segment usage file + its map, super root */
	assert_int_equal(cs.cs_blocks, 2 + 3 + 2 + 2 + 2 + 1);
	saved = v->v_sr;
	v->v_sr.sr_otab_root = v->v_sr.sr_dat_next + 5; /* no such virtual block */
	/* that, and each entry of the table's map and blocks, named by nothing */
	assert_int_equal(vol_check(v, NULL, NULL, NULL), 1 + 7);
	v->v_sr = saved;
	v->v_sr.sr_dat_root = 1; /* a checkpoint slot */
	assert_true(vol_check(v, NULL, NULL, NULL) >= 1);
	v->v_sr = saved;
	v->v_sr.sr_otab_height =
	    2; /* the otab's map block read as a level-2 one: names itself again */
	assert_true(vol_check(v, NULL, NULL, NULL) >= 1);
	v->v_sr = saved;
	assert_int_equal(vol_check(v, NULL, NULL, NULL), 0);
	assert_int_equal(vol_close(v), 0);
}

static void check_failed_commit(enum bdev_emu_op op)
{
	struct bdev *d = vf_mkfs(DEV_BLOCKS);
	struct vol *v = vf_open(d, 0), *img;
	struct buf_cache_stats bs;
	uint32_t committed;

	for (uint64_t i = 0; i < 10; i++)
		vf_write(v, OWNER, i, 1);
	assert_int_equal(vol_sync(v), 0);
	committed = vol_committed_delta(v);
	for (uint64_t i = 0; i < 5; i++)
		vf_write(v, OWNER, i, 2);
	vf_punch(v, OWNER, 5);
	vf_write(v, OWNER + 1, 600, 2); /* a new owner, a map of height 2 */
	vf_write(v, 5000, 0, 2);	/* in another owner-table block */
	bdev_emu_fail_op(d, op, 1, 1, -EIO);
	assert_int_equal(vol_sync(v), -EIO);
	assert_int_equal(vol_committed_delta(v), committed);
	bdev_emu_clear_faults(d);
	vf_expect(v, OWNER, 0, 2); /* nothing lost meanwhile */
	vf_expect(v, OWNER, 5, 0);
	vf_expect(v, OWNER + 1, 600, 2);
	assert_int_equal(vol_sync(v), 0); /* the next commit carries it all */
	assert_true(vol_committed_delta(v) > committed);
	buf_cache_stats(v->v_cache, &bs);
	assert_int_equal(bs.bs_dirty, 0); /* nothing left behind */
	img = vf_reopen_copy(d, 16);
	for (uint64_t i = 0; i < 10; i++)
		vf_expect(img, OWNER, i, i < 5 ? 2 : i == 5 ? 0 : 1);
	vf_expect(img, OWNER + 1, 600, 2);
	vf_expect(img, 5000, 0, 2);
	assert_int_equal(vol_close(img), 0);
	vf_check(v);
	assert_int_equal(vol_close(v), 0);
}

/*
 * The blocks a failed commit wrote were never counted: write the volume
 * several times over after a failed commit, and the counts still agree
 * with a recount (vol_check), and the segment the failed commit wrote in
 * goes back to the log like any other (before, holding only blocks never
 * counted, it never became a candidate: in use until the next open).
 */
static void test_failed_commit_addresses_reused(void **state)
{
	struct bdev *d = vf_mkfs(DEV_BLOCKS);
	struct vol *v = vf_open(d, 0);
	struct vol_usage_stats us;

	(void)state;
	for (uint64_t i = 0; i < 64; i++)
		vf_write(v, OWNER, i, 1);
	assert_int_equal(vol_sync(v), 0);
	for (uint64_t i = 0; i < 64; i++)
		vf_write(v, OWNER, i, 2);
	bdev_emu_fail_op(d, BDEV_EMU_FLUSH, 1, 1, -EIO); /* written, then the flush fails */
	assert_int_equal(vol_sync(v), -EIO);
	bdev_emu_clear_faults(d);
	assert_int_equal(vol_sync(v), 0);
	for (uint32_t round = 3; round < 3 + 4 * DEV_BLOCKS / 64; round++) {
		for (uint64_t i = 0; i < 64; i++)
			vf_write(v, OWNER, i, round);
		assert_int_equal(vol_sync(v), 0);
	}
	vol_usage(v, &us);
	assert_true(us.vus_released > DEV_BLOCKS / VF_SEG); /* every address taken again */
	vf_check(v);
	/* no segment is in use holding nothing without waiting to go back */
	for (uint64_t s = 0; s < v->v_geo.lg_nsegments; s++)
		if (log_seg_in_use(v->v_log, s) && !v->v_usage.vu_live[s] &&
		    !v->v_usage.vu_pinned[s] && !(v->v_usage.vu_cand[s / 64] >> (s % 64) & 1))
			fail_msg(
			    "segment %" PRIu64 " is in use, holds nothing, and never goes back", s);
	assert_int_equal(vol_close(v), 0);
}

static void test_failed_commit_write_loses_nothing(void **state)
{
	(void)state;
	check_failed_commit(BDEV_EMU_WRITE);
}

static void test_failed_commit_flush_loses_nothing(void **state)
{
	(void)state;
	check_failed_commit(BDEV_EMU_FLUSH);
}

/*
 * A commit fails before it could apply a punch (reading a map block on
 * the punch's path fails): the punch must be carried by the next one.
 */
static void test_failed_commit_keeps_punches(void **state)
{
	struct bdev *d = vf_mkfs(DEV_BLOCKS), *cold;
	struct vol *v = vf_open(d, 0), *img;

	(void)state;
	for (uint64_t i = 0; i < 10; i++)
		vf_write(v, OWNER, i, 1);
	assert_int_equal(vol_sync(v), 0);
	assert_int_equal(bdev_emu_open_copy(d, &cold), 0);
	assert_int_equal(vol_close(v), 0);
	v = vf_open(cold, 0); /* nothing cached: the punch is only recorded */
	vf_punch(v, OWNER, 5);
	vf_expect(v, OWNER, 5, 0);
	bdev_emu_fail_op(cold, BDEV_EMU_READ, 1, 1, -EIO); /* the commit's first read */
	assert_int_equal(vol_sync(v), -EIO);
	bdev_emu_clear_faults(cold);
	vf_expect(v, OWNER, 5, 0);
	assert_int_equal(vol_sync(v), 0);
	img = vf_reopen_copy(cold, 0);
	for (uint64_t i = 0; i < 10; i++)
		vf_expect(img, OWNER, i, i == 5 ? 0 : 1);
	assert_int_equal(vol_close(img), 0);
	assert_int_equal(vol_close(v), 0);
}

/*
 * A block punched in delta D is written again in D+1 while D commits, and
 * D's commit fails: D's punch moves to D+1, and must not make D+1's
 * commit skip the block (it holds D+1's write now, not the punch's zeros).
 */
static void test_failed_commit_punch_then_write(void **state)
{
	struct bdev *d = vf_mkfs(DEV_BLOCKS);
	struct vol *v = vf_open(d, 0), *img;
	pthread_t th;

	(void)state;
	test_needs_syncpoints();
	test_watchdog("test_failed_commit_punch_then_write", 30);
	vf_write(v, OWNER, 1, 1);
	assert_int_equal(vol_sync(v), 0);
	vf_punch(v, OWNER, 1); /* delta D */
	syncpoint_enable();
	syncpoint_order("test.written", "vol.commit.begin");
	bdev_emu_fail_op(d, BDEV_EMU_WRITE, 1, 1, -EIO);
	test_thread_start(&th, sync_main, v);
	syncpoint_wait_arrived("vol.commit.begin", 1);
	vf_write(v, OWNER, 1, 2); /* D+1 */
	SYNC_POINT("test.written");
	assert_int_equal((intptr_t)test_thread_join(th), -EIO);
	bdev_emu_clear_faults(d);
	assert_int_equal(vol_sync(v), 0);
	vf_expect(v, OWNER, 1, 2);
	img = vf_reopen_copy(d, 0);
	vf_expect(img, OWNER, 1, 2);
	assert_int_equal(vol_close(img), 0);
	assert_int_equal(vol_close(v), 0);
	test_watchdog_cancel();
}

/* ---- threads ---------------------------------------------------------------- */

#define NWRITERS 4
#define NREADERS 2
#define STABLE	 150 /* write-once blocks per writer, read by everyone */
#define ROUNDS	 6   /* rewrites of the writer's own blocks */
#define OWN	 8

struct mt {
	struct vol *mt_vol;
	_Atomic uint64_t mt_done[NWRITERS]; /* stable blocks written, per writer */
	_Atomic int mt_writers_left;
	uint64_t mt_seed;
};

struct mt_arg {
	struct mt *ma_mt;
	unsigned ma_id;
};

static uint64_t mt_stable_index(uint64_t i)
{
	return i * 1021; /* spread: many map blocks */
}

static void *mt_writer(void *arg)
{
	struct mt_arg *a = arg;
	struct vol *v = a->ma_mt->mt_vol;
	uint64_t owner = OWNER + a->ma_id;

	for (uint64_t i = 0; i < STABLE; i++) {
		vf_write(v, owner, mt_stable_index(i), 1);
		atomic_store(&a->ma_mt->mt_done[a->ma_id], i + 1);
		if (i % (STABLE / ROUNDS) == 0) {
			uint32_t r = (uint32_t)(i / (STABLE / ROUNDS)) + 2;
			for (uint64_t j = 0; j < OWN; j++)
				vf_write(v, owner, 7 + j, r); /* rewritten: forks */
			for (uint64_t j = 0; j < OWN; j++)
				vf_expect(v, owner, 7 + j, r);
		}
		if (i % 25 == a->ma_id)
			assert_int_equal(vol_sync(v), 0);
	}
	atomic_fetch_sub(&a->ma_mt->mt_writers_left, 1);
	return NULL;
}

static void *mt_reader(void *arg)
{
	struct mt_arg *a = arg;
	struct mt *mt = a->ma_mt;
	struct prng p;

	prng_init(&p, mt->mt_seed + a->ma_id);
	while (atomic_load(&mt->mt_writers_left)) {
		unsigned w = (unsigned)prng_below(&p, NWRITERS);
		uint64_t done = atomic_load(&mt->mt_done[w]);

		if (done)
			vf_expect(mt->mt_vol, OWNER + w, mt_stable_index(prng_below(&p, done)), 1);
	}
	return NULL;
}

static void test_threads_write_rewrite_read(void **state)
{
	struct bdev *d = vf_mkfs(DEV_BLOCKS * 2);
	struct mt mt = {.mt_vol = vf_open(d, 256), .mt_writers_left = NWRITERS};
	struct mt_arg args[NWRITERS + NREADERS];
	pthread_t th[NWRITERS + NREADERS];
	struct vol *img;

	(void)state;
	mt.mt_seed = test_seed("test_threads_write_rewrite_read", 42);
	test_watchdog("test_threads_write_rewrite_read", 120);
	for (unsigned i = 0; i < NWRITERS + NREADERS; i++) {
		args[i] = (struct mt_arg){&mt, i < NWRITERS ? i : i - NWRITERS};
		test_thread_start(&th[i], i < NWRITERS ? mt_writer : mt_reader, &args[i]);
	}
	for (unsigned i = 0; i < NWRITERS + NREADERS; i++)
		test_thread_join(th[i]);
	assert_int_equal(vol_sync(mt.mt_vol), 0);
	img = vf_reopen_copy(d, 64);
	for (unsigned w = 0; w < NWRITERS; w++) {
		for (uint64_t i = 0; i < STABLE; i++)
			vf_expect(img, OWNER + w, mt_stable_index(i), 1);
		for (uint64_t j = 0; j < OWN; j++)
			vf_expect(img, OWNER + w, 7 + j, ROUNDS + 1);
	}
	assert_int_equal(vol_close(img), 0);
	assert_int_equal(vol_close(mt.mt_vol), 0);
	test_watchdog_cancel();
}

int main(void)
{
	static const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_mkfs_gives_empty_volume),
	    cmocka_unit_test(test_open_refuses_what_is_not_a_volume),
	    cmocka_unit_test(test_write_read_sync_close_reopen),
	    cmocka_unit_test(test_sparse_blocks_read_as_zeros),
	    cmocka_unit_test(test_punch),
	    cmocka_unit_test(test_many_owners),
	    cmocka_unit_test(test_reserved_owners_and_overruns_refused),
	    cmocka_unit_test(test_write_range),
	    cmocka_unit_test(test_write_range_threads),
	    cmocka_unit_test(test_throttle_bounds_dirty_blocks_by_the_cache),
	    cmocka_unit_test(test_throttle_waits_out_a_commits_paths),
	    cmocka_unit_test(test_throttle_lets_the_next_delta_fill),
	    cmocka_unit_test(test_fork_while_committing),
	    cmocka_unit_test(test_fork_after_the_commit_took_the_block),
	    cmocka_unit_test(test_walk_across_a_commit),
	    cmocka_unit_test(test_read_waits_out_a_reused_segment),
	    cmocka_unit_test(test_crash_keeps_what_was_synced),
	    cmocka_unit_test(test_crash_points_of_a_commit),
	    cmocka_unit_test(test_failed_commit_write_loses_nothing),
	    cmocka_unit_test(test_failed_commit_addresses_reused),
	    cmocka_unit_test(test_failed_commit_flush_loses_nothing),
	    cmocka_unit_test(test_failed_commit_keeps_punches),
	    cmocka_unit_test(test_failed_commit_punch_then_write),
	    cmocka_unit_test(test_truncate_sparse_huge_ranges),
	    cmocka_unit_test(test_truncate_plan_from_the_top),
	    cmocka_unit_test(test_truncate_plan_across_a_commit),
	    cmocka_unit_test(test_truncate_then_write_same_delta),
	    cmocka_unit_test(test_truncate_then_write_next_delta),
	    cmocka_unit_test(test_truncate_across_crash),
	    cmocka_unit_test(test_failed_commit_keeps_truncate),
	    cmocka_unit_test(test_check_reports_damage),
	    cmocka_unit_test(test_threads_write_rewrite_read),
	};

	vf_filter_from_env();
	return TEST_RUN("vol", tests);
}

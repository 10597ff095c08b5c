/*
 * test_vol_reuse.c - segments that hold no live block are written again.
 *
 * Fill and delete cycles write many times the volume's size: each round
 * writes an owner's blocks (in transactions of TXN blocks), syncs,
 * truncates the owner away and syncs. Without segment reuse the volume
 * is full after about its own size. Proves: the rounds never run out
 * of space; after every sync vol_check finds every live block counted
 * in its segment and no live block in a free segment; a keeper owner
 * written once at the start (whose segment must never be reused) reads
 * back intact, also after a reopen; and an image cut at any of many
 * points through the rounds (unflushed writes dropped, kept, or some
 * kept in another order) recovers to a sound volume holding the
 * keeper, with the round's owner either whole or absent per
 * transaction, never an older round's blocks; and with periodic
 * checkpoints turned off, the commit writes its own when space runs
 * short, so that emptied segments can go. Then the cleaner: half live
 * segments that never empty by themselves are compacted so that writes
 * that do not fit otherwise succeed, with power cuts while it moves
 * blocks.
 */
#include "harness.h"
#include "vol_fixture.h"

#include "util/syncpoint.h"
#include "vol/vol_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SEGS	     64
#define NBLOCKS	     (SEGS * VF_SEG + 64) /* a little over 64 segments: 16 MiB */
#define ROUNDS	     12
#define ROUND_BLOCKS 1280 /* 20 segments of data a round */
#define TXN	     32
#define KEEPER	     17
#define CHURN	     16
#define NKEEP	     8

/* One transaction: blocks [@first, @first + TXN) of the churn owner, version @round. */
static void write_txn(struct vol *v, uint32_t round, uint64_t first)
{
	static unsigned char data[VF_BS];
	struct vol_txn t;

	assert_int_equal(vol_txn_begin(v, TXN, 0, &t), 0);
	for (uint64_t j = first; j < first + TXN; j++) {
		vf_pattern(data, CHURN, j, round);
		assert_int_equal(vol_write(&t, CHURN, j, data), 0);
	}
	vol_txn_end(&t);
}

static void write_round(struct vol *v, uint32_t round)
{
	for (uint64_t i = 0; i < ROUND_BLOCKS; i += TXN)
		write_txn(v, round, i);
}

static void delete_owner(struct vol *v, uint64_t owner)
{
	vf_truncate(v, owner, 0, VOL_TXN_FREEING);
}

static void write_keeper(struct vol *v)
{
	for (uint64_t i = 0; i < NKEEP; i++)
		vf_write(v, KEEPER, i, 1);
}

static void expect_keeper(struct vol *v)
{
	for (uint64_t i = 0; i < NKEEP; i++)
		vf_expect(v, KEEPER, i, 1);
}

static void test_fill_delete_cycles(void **state)
{
	struct bdev *d = vf_mkfs(NBLOCKS);
	struct vol *v = vf_open(d, 0);
	struct vol_usage_stats us;

	(void)state;
	test_watchdog("fill/delete cycles", 600);
	write_keeper(v);
	for (uint32_t r = 1; r <= ROUNDS; r++) {
		write_round(v, r);
		vf_check(v);
		vf_expect(v, CHURN, 0, r);
		vf_expect(v, CHURN, ROUND_BLOCKS - 1, r);
		delete_owner(v, CHURN);
		vf_check(v);
		vol_usage(v, &us);
		assert_true(us.vus_live_blocks < 64); /* the keeper and metadata */
	}
	/* rounds wrote several times the volume: segments were reused */
	assert_true((uint64_t)ROUNDS * ROUND_BLOCKS > 3 * (uint64_t)SEGS * VF_SEG);
	vol_usage(v, &us);
	assert_true(us.vus_released > SEGS);
	expect_keeper(v);
	assert_int_equal(vol_sync(v), 0);
	{
		struct vol *w = vf_reopen_copy(d, 0);

		expect_keeper(w);
		vf_expect(w, CHURN, 0, 0);
		vf_check(w);
		write_round(w, ROUNDS + 1); /* and the reopened volume reuses too */
		vf_check(w);
		vf_expect(w, CHURN, 7, ROUNDS + 1);
		vol_close(w);
	}
	vol_close(v);
	test_watchdog_cancel();
}

/*
 * Periodic checkpoints too rare to matter: segments emptied since the
 * older checkpoint slot's log are held for recovery, so when space runs
 * short the commit must write checkpoints itself to release them (fails
 * with -ENOSPC otherwise). Cuts check that doing so loses nothing.
 */
static void test_checkpoints_when_short(void **state)
{
	struct vol_open_opts oo = {.voo_max_age_ms = 3600 * 1000, .voo_checkpoint_every = 100000};
	struct bdev *d = vf_mkfs(NBLOCKS);
	struct vol *v;

	(void)state;
	test_watchdog("checkpoints when short", 600);
	assert_int_equal(vol_open(d, &oo, &v), 0);
	write_keeper(v);
	for (uint32_t r = 1; r <= ROUNDS; r++) {
		write_round(v, r);
		assert_int_equal(vol_sync(v), 0);
		delete_owner(v, CHURN);
		assert_int_equal(vol_sync(v), 0);
		if (r % 4 == 0) {
			struct vol *w = vf_open_crash(d, BDEV_EMU_DROP_ALL, 0);

			expect_keeper(w);
			vf_expect(w, CHURN, 0, 0);
			vf_check(w);
			vol_close(w);
		}
	}
	vf_check(v);
	expect_keeper(v);
	vol_close(v);
	test_watchdog_cancel();
}

/* The churn owner after a cut: per transaction, all of round @r or none. */
static void expect_churn_whole_or_gone(struct vol *v, uint32_t r)
{
	for (uint64_t i = 0; i < ROUND_BLOCKS; i += TXN) {
		bool first = vf_has(v, CHURN, i, r);

		for (uint64_t j = i; j < i + TXN; j++) {
			if (first)
				vf_expect(v, CHURN, j, r);
			else
				vf_expect(v, CHURN, j, 0);
		}
	}
}

static void check_cut(struct bdev *d, int mode, uint32_t r)
{
	struct vol *w = vf_open_crash(d, mode, 0);

	expect_keeper(w);
	expect_churn_whole_or_gone(w, r);
	vf_check(w);
	vol_close(w);
}

/*
 * Cuts while blocks are written into reused segments and while segments
 * are freed: each recovered image is sound, keeps the keeper, and shows
 * round r's transactions whole or not at all (never round r-1's, which
 * was deleted and synced before round r began).
 */
static void test_cuts_while_reusing(void **state)
{
	static const int modes[] = {BDEV_EMU_DROP_ALL, BDEV_EMU_KEEP_ALL, BDEV_EMU_DROP_SOME,
				    BDEV_EMU_REORDER};
	struct bdev *d = vf_mkfs(NBLOCKS);
	struct vol *v = vf_open(d, 0);
	unsigned cuts = 0;

	(void)state;
	test_watchdog("cuts while reusing segments", 900);
	write_keeper(v);
	assert_int_equal(vol_sync(v), 0);
	for (uint32_t r = 1; r <= ROUNDS / 2; r++) {
		for (uint64_t i = 0; i < ROUND_BLOCKS; i += TXN) {
			write_txn(v, r, i);
			if (r > 2 && i % (8 * TXN) == 0) /* segments of earlier rounds reused */
				check_cut(d, modes[cuts++ % 4], r);
		}
		assert_int_equal(vol_sync(v), 0);
		check_cut(d, modes[cuts++ % 4], r);
		delete_owner(v, CHURN);
		if (r > 2)
			check_cut(d, modes[cuts++ % 4], r); /* the delete: whole, or gone */
		assert_int_equal(vol_sync(v), 0);
		check_cut(d, modes[cuts++ % 4], r);
	}
	printf("# %u cuts\n", cuts);
	vol_close(v);
	test_watchdog_cancel();
}

/* Owners @a and @b interleaved, one block each in turn, @n each, @txn per transaction. */
static void write_interleaved(struct vol *v, uint64_t a, uint64_t b, uint64_t n, uint32_t version)
{
	static unsigned char data[VF_BS];

	for (uint64_t i = 0; i < n; i += TXN / 2) {
		struct vol_txn t;

		assert_int_equal(vol_txn_begin(v, TXN, 0, &t), 0);
		for (uint64_t j = i; j < i + TXN / 2 && j < n; j++) {
			vf_pattern(data, a, j, version);
			assert_int_equal(vol_write(&t, a, j, data), 0);
			vf_pattern(data, b, j, version);
			assert_int_equal(vol_write(&t, b, j, data), 0);
		}
		vol_txn_end(&t);
	}
}

static void write_owner(struct vol *v, uint64_t owner, uint64_t n, uint32_t version)
{
	static unsigned char data[VF_BS];

	for (uint64_t i = 0; i < n; i += TXN) {
		struct vol_txn t;

		assert_int_equal(vol_txn_begin(v, TXN, 0, &t), 0);
		for (uint64_t j = i; j < i + TXN && j < n; j++) {
			vf_pattern(data, owner, j, version);
			assert_int_equal(vol_write(&t, owner, j, data), 0);
		}
		vol_txn_end(&t);
	}
}

#define COLD	20
#define GARBAGE 21
#define HOT	22
#define COLD_N	1200
#define HOT_N	1400

/*
 * Segments that never empty by themselves: a cold owner written
 * interleaved with one deleted at once leaves 31 segments half live.
 * Each round then writes a hot owner that does not fit in the segments
 * that are free (it fails with -ENOSPC without the cleaner) and deletes
 * it: the cleaner must move the cold blocks together to make room.
 * After every round the volume checks sound and the cold owner reads
 * back, also after a reopen.
 */
static void compact_half_live_segments(uint8_t policy)
{
	struct vol_open_opts oo = {.voo_clean_policy = policy};
	struct bdev *d = vf_mkfs(NBLOCKS);
	struct vol *v = vf_open_opts(d, &oo);
	struct vol_usage_stats us;

	test_watchdog("cleaner compacts half-live segments", 600);
	write_interleaved(v, COLD, GARBAGE, COLD_N, 1);
	delete_owner(v, GARBAGE);
	vf_check(v);
	for (uint32_t r = 1; r <= 6; r++) {
		write_owner(v, HOT, HOT_N, r);
		vf_check(v);
		vf_expect(v, HOT, HOT_N - 1, r);
		delete_owner(v, HOT);
		vf_check(v);
		for (uint64_t i = 0; i < COLD_N; i += 97)
			vf_expect(v, COLD, i, 1);
	}
	vol_usage(v, &us);
	printf("# cleaned %llu segments, moved %llu blocks\n", (unsigned long long)us.vus_cleaned,
	       (unsigned long long)us.vus_moved);
	assert_true(us.vus_cleaned > 0 && us.vus_moved >= COLD_N / 2);
	assert_int_equal(vol_sync(v), 0);
	{
		struct vol *w = vf_reopen_copy(d, 0);

		for (uint64_t i = 0; i < COLD_N; i++)
			vf_expect(w, COLD, i, 1);
		vf_check(w);
		vol_close(w);
	}
	vol_close(v);
	test_watchdog_cancel();
}

static void test_cleaner_compacts_half_live_segments(void **state)
{
	(void)state;
	compact_half_live_segments(VOL_CLEAN_COST_BENEFIT);
}

/* The same with greedy selection; an unknown policy is refused. */
static void test_cleaner_compacts_greedily(void **state)
{
	struct vol_open_opts bad = {.voo_clean_policy = VOL_CLEAN_GREEDY + 1};
	struct bdev *d = vf_mkfs(NBLOCKS);
	struct vol *v;

	(void)state;
	assert_int_equal(vol_open(d, &bad, &v), -EINVAL);
	bdev_close(d);
	compact_half_live_segments(VOL_CLEAN_GREEDY);
}

/* Segments with no log in them (what the cleaner's watermarks count). */
static uint64_t free_segments(struct vol *v)
{
	struct log_space sp;

	vol_space(v, &sp);
	return (sp.sp_total - sp.sp_written) / VF_SEG;
}

/*
 * Background cleaning: once a commit leaves fewer than the low watermark
 * of segments free (12 of 63 here; free: neither written nor reserved),
 * the commit thread goes on cleaning, with no write and no sync asking
 * it to, until the high one (20) is free. The test writes and syncs
 * until the cleaner starts, then writes nothing and waits at the
 * interleaving points for it to finish (each start has its done):
 * without the background commits it would never finish (the watchdog
 * fails the test), and the free count would stay under the high mark.
 */
static void test_cleaner_runs_in_background(void **state)
{
	struct vol_open_opts oo = {.voo_clean_low = 12, .voo_clean_high = 20};
	struct bdev *d = vf_mkfs(NBLOCKS);
	struct vol *v = vf_open_opts(d, &oo);
	struct vol_usage_stats us;
	uint64_t hot = 0, started, low, high;

	(void)state;
	if (!SYNCPOINTS_BUILT)
		skip();
	test_watchdog("cleaner runs in background", 120);
	write_interleaved(v, COLD, GARBAGE, COLD_N, 1);
	delete_owner(v, GARBAGE);
	vol_usage(v, &us);
	low = us.vus_clean_low;
	high = us.vus_clean_high;
	assert_true(low == 12 && high == 20);
	assert_true(free_segments(v) >= low);
	/* a commit first: the deletion may have fallen short of space and
	 * asked for cleaning at once (v_clean_urgent); that step finds only
	 * empty segments, moves nothing, and is not what this test watches */
	write_owner(v, HOT + hot++, TXN, 1);
	assert_int_equal(vol_sync(v), 0);
	syncpoint_reset();
	syncpoint_enable();
	while (!syncpoint_passed("vol.clean.start")) {
		assert_true(free_segments(v) >= 2); /* the cleaner must have started long before */
		write_owner(v, HOT + hot, TXN, 1);
		assert_int_equal(vol_sync(v), 0);
		hot++;
	}
	/* no write from here on: only background commits can finish the job */
	started = syncpoint_passed("vol.clean.start");
	syncpoint_wait_passed("vol.clean.done", started); /* the watchdog bounds it */
	printf("# %" PRIu64 " owners written; %" PRIu64 " segments free after cleaning\n", hot,
	       free_segments(v));
	assert_true(free_segments(v) >= high);
	syncpoint_reset();
	/* a step the watermarks do not want forgets the segments the last one
	 * scanned whole: they are kept out of the next step only (kept for
	 * good, once the log reused them they were never victims again; 16
	 * here). Read once the sync returned: the commit thread's field. */
	write_owner(v, HOT + hot++, TXN, 1);
	assert_int_equal(vol_sync(v), 0);
	assert_int_equal(v->v_usage.vu_nrecent, 0);
	vol_usage(v, &us);
	assert_true(us.vus_cleaned > 0 && us.vus_moved > 0);
	vf_check(v);
	for (uint64_t i = 0; i < COLD_N; i++)
		vf_expect(v, COLD, i, 1);
	for (uint64_t o = 0; o < hot; o++)
		vf_expect(v, HOT + o, TXN - 1, 1);
	vol_close(v);
	test_watchdog_cancel();
}

/* After a cut in round @r of the hot writes: cold whole, hot per transaction. */
static void check_clean_cut(struct bdev *d, int mode, uint32_t r)
{
	struct vol *w = vf_open_crash(d, mode, 0);

	for (uint64_t i = 0; i < COLD_N; i++)
		vf_expect(w, COLD, i, 1);
	for (uint64_t i = 0; i < HOT_N; i += TXN) {
		bool first = vf_has(w, HOT, i, r);

		for (uint64_t j = i; j < i + TXN && j < HOT_N; j++)
			vf_expect(w, HOT, j, first ? r : 0);
	}
	vf_check(w);
	vol_close(w);
}

/*
 * Power cuts while the cleaner moves cold blocks (each forced or
 * size-triggered commit of the hot writes cleans): every image recovers
 * sound, with every cold block and the hot transactions whole or absent.
 */
static void test_cuts_while_cleaning(void **state)
{
	static const int modes[] = {BDEV_EMU_DROP_ALL, BDEV_EMU_REORDER, BDEV_EMU_KEEP_ALL,
				    BDEV_EMU_DROP_SOME};
	struct bdev *d = vf_mkfs(NBLOCKS);
	struct vol *v = vf_open(d, 0);
	static unsigned char data[VF_BS];
	struct vol_usage_stats us;
	unsigned cuts = 0;

	(void)state;
	test_watchdog("cuts while cleaning", 900);
	write_interleaved(v, COLD, GARBAGE, COLD_N, 1);
	delete_owner(v, GARBAGE);
	assert_int_equal(vol_sync(v), 0);
	for (uint32_t r = 1; r <= 2; r++) {
		for (uint64_t i = 0; i < HOT_N; i += TXN) {
			struct vol_txn t;

			assert_int_equal(vol_txn_begin(v, TXN, 0, &t), 0);
			for (uint64_t j = i; j < i + TXN && j < HOT_N; j++) {
				vf_pattern(data, HOT, j, r);
				assert_int_equal(vol_write(&t, HOT, j, data), 0);
			}
			vol_txn_end(&t);
			if ((i / TXN) % 3 == 0)
				check_clean_cut(d, modes[cuts++ % 4], r);
		}
		assert_int_equal(vol_sync(v), 0);
		delete_owner(v, HOT);
		assert_int_equal(vol_sync(v), 0);
	}
	vol_usage(v, &us);
	printf("# %u cuts; cleaned %llu segments\n", cuts, (unsigned long long)us.vus_cleaned);
	assert_true(us.vus_cleaned > 0);
	vol_close(v);
	test_watchdog_cancel();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_fill_delete_cycles),
	    cmocka_unit_test(test_cuts_while_reusing),
	    cmocka_unit_test(test_checkpoints_when_short),
	    cmocka_unit_test(test_cleaner_compacts_half_live_segments),
	    cmocka_unit_test(test_cleaner_compacts_greedily),
	    cmocka_unit_test(test_cleaner_runs_in_background),
	    cmocka_unit_test(test_cuts_while_cleaning),
	};

	vf_filter_from_env();
	return TEST_RUN("vol_reuse", tests);
}

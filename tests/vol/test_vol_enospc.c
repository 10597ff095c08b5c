/*
 * test_vol_enospc.c - a full volume (seed 000).
 *
 * Four threads fill a small volume at once, syncing as they go. Proves:
 * writes end with -ENOSPC from vol_txn_begin (the reservation), never
 * from a commit (vol_sync keeps succeeding: what was reserved fits);
 * nothing hangs (a watchdog); every block written before a writer's last
 * successful sync reads back after reopen; and on the full volume a
 * VOL_TXN_FREEING transaction that punches blocks still begins, commits,
 * and its punches survive reopen.
 *
 * A writer's -ENOSPC can come a little early: while the other writers
 * hold reservations, the cleaner's own cannot be made, so the forced
 * commits of a writer short of space may free nothing, and it gives up.
 * Once every writer has stopped, the cleaner can compact what is left.
 * So the test then writes single blocks until -ENOSPC, and requires that
 * to come within one segment's worth: the volume was full but for what
 * the cleaner could still compact, not a free area left unused.
 */
#include "harness.h"
#include "vol_fixture.h"

#include "util/syncpoint.h"
#include "vol/vol_internal.h"

#include <stdlib.h>
#include <string.h>

#define DEV_BLOCKS 1024 /* 4 MiB: 15 segments of 64 blocks */
#define NTHREADS   4
#define OWNER0	   40
#define MAX_BLOCKS 4096		       /* per thread; far more than fit */
#define TOPUP	   (OWNER0 + NTHREADS) /* the blocks written after the fillers */

struct filler {
	struct vol *f_vol;
	unsigned f_id;
	uint64_t f_written;    /* blocks written (each in its own transaction) */
	uint64_t f_synced;     /* blocks written before the last successful sync */
	int f_stop_err;	       /* what stopped it */
	const char *f_stop_at; /* and where */
};

static uint64_t filler_index(uint64_t i)
{
	return i * 3; /* sparse enough to need map blocks of its own */
}

static void *filler_main(void *arg)
{
	struct filler *f = arg;
	uint64_t data[VF_BS / 8];
	struct vol_txn t;
	int err = 0;

	for (uint64_t i = 0; i < MAX_BLOCKS && !err; i++) {
		vf_pattern(data, OWNER0 + f->f_id, filler_index(i), 1);
		f->f_stop_at = "vol_txn_begin";
		err = vol_txn_begin(f->f_vol, 1, 0, &t);
		if (err)
			break;
		f->f_stop_at = "vol_write";
		err = vol_write(&t, OWNER0 + f->f_id, filler_index(i), data);
		vol_txn_end(&t);
		if (err)
			break;
		f->f_written = i + 1;
		if (i % 8 == 7) {
			f->f_stop_at = "vol_sync"; /* a commit that ran out of space */
			err = vol_sync(f->f_vol);
			if (!err)
				f->f_synced = f->f_written;
		}
	}
	f->f_stop_err = err;
	return NULL;
}

static void test_fill_from_threads_then_free(void **state)
{
	char path[VF_PATH_MAX];
	struct filler f[NTHREADS];
	pthread_t th[NTHREADS];
	struct delta_stats ds;
	struct log_space sp;
	struct vol_txn t;
	uint64_t total = 0, topped;
	struct vol *v;

	(void)state;
	test_watchdog("test_fill_from_threads_then_free", 120);
	vf_mkfs_file(path, DEV_BLOCKS);
	v = vf_open_file(path, 0);
	for (unsigned i = 0; i < NTHREADS; i++) {
		f[i] = (struct filler){.f_vol = v, .f_id = i};
		test_thread_start(&th[i], filler_main, &f[i]);
	}
	for (unsigned i = 0; i < NTHREADS; i++) {
		test_thread_join(th[i]);
		if (f[i].f_stop_err != -ENOSPC || strcmp(f[i].f_stop_at, "vol_txn_begin"))
			fail_msg("filler %u stopped with %d in %s, not -ENOSPC in vol_txn_begin", i,
				 f[i].f_stop_err, f[i].f_stop_at);
		total += f[i].f_written;
	}
	vol_space(v, &sp);
	print_message("# %llu blocks written; space: total %llu written %llu free %llu kept %llu\n",
		      (unsigned long long)total, (unsigned long long)sp.sp_total,
		      (unsigned long long)sp.sp_written, (unsigned long long)sp.sp_free,
		      (unsigned long long)sp.sp_kept);
	assert_true(total > 200); /* it did fill something first */
	delta_stats(v->v_ds, &ds);
	assert_int_equal(ds.ds_underestimates, 0); /* every commit fit its reservations */
	assert_true(sp.sp_free < VF_SEG * 2);
	/* full but for what the cleaner could not compact beside the writers */
	for (topped = 0; topped <= VF_SEG; topped++) {
		uint64_t data[VF_BS / 8];
		int err = vol_txn_begin(v, 1, 0, &t);

		if (err == -ENOSPC)
			break;
		assert_int_equal(err, 0);
		vf_pattern(data, TOPUP, topped, 1);
		assert_int_equal(vol_write(&t, TOPUP, topped, data), 0);
		vol_txn_end(&t);
	}
	print_message("# %llu blocks written after the writers stopped\n",
		      (unsigned long long)topped);
	assert_true(topped < VF_SEG);
	assert_int_equal(vol_sync(v), 0);

	/* deleting works on the full volume: the kept reserve */
	assert_int_equal(vol_txn_begin(v, 4, VOL_TXN_FREEING, &t), 0);
	for (unsigned i = 0; i < 4; i++)
		assert_int_equal(vol_punch(&t, OWNER0 + i, filler_index(0)), 0);
	vol_txn_end(&t);
	assert_int_equal(vol_sync(v), 0);
	/* and so does a truncate */
	vf_truncate(v, OWNER0 + NTHREADS - 1, filler_index(1), VOL_TXN_FREEING);
	assert_int_equal(vol_sync(v), 0);
	delta_stats(v->v_ds, &ds);
	assert_int_equal(ds.ds_underestimates, 0);
	assert_int_equal(vol_close(v), 0);

	v = vf_open_file(path, 64);
	for (unsigned i = 0; i < NTHREADS; i++) {
		vf_expect(v, OWNER0 + i, filler_index(0), 0);
		for (uint64_t b = 1; b < f[i].f_synced; b++)
			vf_expect(v, OWNER0 + i, filler_index(b), i == NTHREADS - 1 ? 0 : 1);
	}
	for (uint64_t b = 0; b < topped; b++)
		vf_expect(v, TOPUP, b, 1);
	assert_int_equal(vol_close(v), 0);
	vf_remove_file(path);
	test_watchdog_cancel();
}

/*
 * The retry after a forced commit races with other reservers: A falls
 * short, its commit releases the open delta's reservations, B takes
 * them before A retries (forced: A is held at delta.reserve.retry until
 * B has reserved and ended). A must commit again, not fail: a volume
 * holding a few blocks of data cannot be "full". A single retry gave
 * -ENOSPC here.
 */
struct racer {
	struct vol *r_vol;
	uint64_t r_nblocks;
	int r_err;
};

static void *racer_main(void *arg)
{
	struct racer *r = arg;
	struct vol_txn t;

	syncpoint_thread_name("A");
	r->r_err = vol_txn_begin(r->r_vol, r->r_nblocks, 0, &t);
	if (!r->r_err)
		vol_txn_end(&t);
	return NULL;
}

/* What a transaction of @n blocks reserves on @v (measured, then settled);
 * a huge value if it does not fit at all. */
static uint64_t reserve_of(struct vol *v, uint64_t n)
{
	struct log_space before, in;
	struct vol_txn t;

	assert_int_equal(vol_sync(v), 0);
	vol_space(v, &before);
	if (vol_txn_begin(v, n, 0, &t) == -ENOSPC)
		return UINT64_MAX / 4; /* more than there is */
	vol_space(v, &in);
	vol_txn_end(&t);
	assert_int_equal(vol_sync(v), 0);
	return in.sp_reserved - before.sp_reserved;
}

static void test_reserve_retry_raced_by_another_reserver(void **state)
{
	uint64_t nb, na, rb, free, lo, hi;
	struct log_space sp;
	struct vol_txn t;
	struct racer a;
	struct bdev *d;
	struct vol *v;
	pthread_t th;

	(void)state;
	if (!SYNCPOINTS_BUILT)
		skip();
	test_watchdog("test_reserve_retry_raced_by_another_reserver", 60);
	d = vf_mkfs(DEV_BLOCKS * 4);
	v = vf_open(d, 16384); /* A's and B's bookings both fit (vol_throttle) */
	/*
	 * B's transactions reserve just under half of what is free (so they
	 * never make the reservations "heavy", which would commit at once),
	 * A's a little more than the rest: A falls short while one of B's is
	 * in the open delta. Binary searches: each measurement commits, and
	 * commits use log space.
	 */
	lo = 1, hi = v->v_dirty_limit;
	while (lo < hi) {
		uint64_t mid = (lo + hi + 1) / 2;

		vol_space(v, &sp);
		if (2 * reserve_of(v, mid) < sp.sp_free - sp.sp_free / 16)
			lo = mid;
		else
			hi = mid - 1;
	}
	nb = lo;
	rb = reserve_of(v, nb);
	vol_space(v, &sp);
	free = sp.sp_free;
	lo = nb, hi = v->v_dirty_limit;
	while (lo < hi) { /* the smallest A with rb + its reserve > what is free now */
		uint64_t mid = (lo + hi) / 2;

		if (reserve_of(v, mid) + rb > free)
			hi = mid;
		else
			lo = mid + 1;
	}
	na = lo;
	vol_space(v, &sp);
	print_message("# free %llu, B: %llu blocks reserve %llu, A: %llu blocks reserve %llu\n",
		      (unsigned long long)sp.sp_free, (unsigned long long)nb,
		      (unsigned long long)rb, (unsigned long long)na,
		      (unsigned long long)reserve_of(v, na));
	assert_true(reserve_of(v, na) + rb > sp.sp_free);
	assert_true(2 * rb < sp.sp_free);
	vol_space(v, &sp);
	assert_int_equal(sp.sp_reserved, 0);
	assert_int_equal(vol_txn_begin(v, nb, 0, &t), 0);
	vol_txn_end(&t);
	a = (struct racer){v, na, 1};
	syncpoint_reset();
	syncpoint_enable();
	syncpoint_order("test.b.reserved", "delta.reserve.retry@A");
	test_thread_start(&th, racer_main, &a);
	syncpoint_wait_arrived("delta.reserve.retry@A", 1);
	/* A's commit released B's reservation; B reserves again before A retries */
	assert_int_equal(vol_txn_begin(v, nb, 0, &t), 0);
	vol_txn_end(&t);
	SYNC_POINT("test.b.reserved");
	test_thread_join(th);
	assert_int_equal(a.r_err, 0);
	syncpoint_reset();
	assert_int_equal(vol_close(v), 0);
	test_watchdog_cancel();
}

/*
 * Reservations holding more than what is left free make the open delta
 * commit on its own (no sync, no age or size trigger): its
 * reconciliation gives back what the worst cases overstated, so free
 * space (statfs) recovers. Without the trigger nothing would commit for
 * an hour here (the watchdog fails it).
 */
static void test_heavy_reservations_commit(void **state)
{
	struct bdev *d = vf_mkfs(DEV_BLOCKS * 4);
	struct vol *v = vf_open(d, 8192);
	struct log_space sp, after;
	struct vol_txn t;
	uint64_t n = 1;
	uint32_t before;

	(void)state;
	if (!SYNCPOINTS_BUILT)
		skip();
	test_watchdog("test_heavy_reservations_commit", 60);
	vol_space(v, &sp);
	while (3 * reserve_of(v, n + 1) < sp.sp_free) /* n: just under a third of free */
		n++;
	assert_true(4 * reserve_of(v, n) > sp.sp_free); /* two: over half, under all */
	before = vol_committed_delta(v);
	syncpoint_reset();
	syncpoint_enable();
	assert_int_equal(vol_txn_begin(v, n, 0, &t), 0); /* not heavy yet */
	vol_txn_end(&t);
	assert_int_equal(syncpoint_passed("vol.commit.end"), 0);
	assert_int_equal(vol_txn_begin(v, n, 0, &t), 0); /* heavy: the delta commits */
	vol_txn_end(&t);
	syncpoint_wait_passed("vol.commit.end", 1);
	assert_int_equal(vol_sync(v), 0); /* waits for that commit to settle */
	assert_true(vol_committed_delta(v) > before);
	vol_space(v, &after);
	assert_int_equal(after.sp_reserved, 0);
	syncpoint_reset();
	assert_int_equal(vol_close(v), 0);
	test_watchdog_cancel();
}

/*
 * Changes under one level-1 map block in one delta share its map path:
 * the first reserves the worst case, every later one gives the path
 * back at once (vol.c, vol_book_path), in the same transaction or in
 * another (of another thread) in the same delta. The commit then
 * consumes no more than what stayed reserved.
 */
struct one_more {
	struct vol *om_vol;
	int om_err;
	uint64_t om_given_back;	     /* reservation the write gave back */
	uint64_t om_first, om_count; /* write_run_again's run */
};

/* Another thread's transaction in the same delta writes under the same map block. */
static void *write_one_more(void *arg)
{
	static unsigned char data[VF_BS];
	struct one_more *om = arg;
	struct log_space before, after;
	struct vol_txn t;

	om->om_err = vol_txn_begin(om->om_vol, 2, 0, &t);
	if (om->om_err)
		return NULL;
	vol_space(om->om_vol, &before);
	memset(data, 0x33, sizeof(data));
	om->om_err = vol_write(&t, OWNER0, 40, data);
	vol_space(om->om_vol, &after);
	om->om_given_back = before.sp_reserved - after.sp_reserved;
	vol_txn_end(&t);
	return NULL;
}

static void test_shared_paths_give_reservations_back(void **state)
{
	static unsigned char data[VF_BS];
	/* room enough that the reservations never look heavy: a commit
	 * kicked then would wait for this thread's transaction while the
	 * other thread waits to join the next delta */
	struct bdev *d = vf_mkfs(DEV_BLOCKS * 4);
	struct vol *v = vf_open(d, 0);
	uint64_t path = vol_block_rewrites(v) - 1, n = 32, cap, excess;
	struct one_more om = {.om_vol = v};
	struct log_space begun, written;
	struct delta_stats st;
	struct vol_txn t;
	pthread_t th;

	(void)state;
	test_watchdog("test_shared_paths_give_reservations_back", 60);
	assert_int_equal(vol_txn_begin(v, n, 0, &t), 0);
	vol_space(v, &begun);
	assert_int_equal(begun.sp_reserved, vol_txn_worst(v, n));
	for (uint64_t i = 0; i < n; i++) {
		vf_pattern(data, OWNER0, i, 1);
		assert_int_equal(vol_write(&t, OWNER0, i, data), 0);
	}
	vol_space(v, &written);
	/* each change but the first gives its map path back */
	assert_int_equal(begun.sp_reserved - written.sp_reserved, (n - 1) * path);
	test_thread_start(&th, write_one_more, &om);
	test_thread_join(th);
	assert_int_equal(om.om_err, 0);
	/* its path, and what its translation part adds to the delta's over the cap */
	cap = vol_dat_cap(v);
	excess =
	    vol_txn_dat(v, n) + vol_txn_dat(v, 2) - MIN(vol_txn_dat(v, n) + vol_txn_dat(v, 2), cap);
	assert_int_equal(om.om_given_back, path + MIN(excess, vol_txn_dat(v, 2)));
	vol_txn_end(&t);
	assert_int_equal(vol_sync(v), 0);
	delta_stats(v->v_ds, &st);
	assert_int_equal(st.ds_underestimates, 0);
	vf_check(v);
	for (uint64_t i = 0; i < n; i++)
		vf_expect(v, OWNER0, i, 1);
	assert_int_equal(vol_close(v), 0);
	test_watchdog_cancel();
}

/* A second transaction in the delta writes the same run, its paths booked already. */
static void *write_run_again(void *arg)
{
	static unsigned char data[VF_BS];
	struct one_more *om = arg;
	struct log_space before, after;
	struct vol_txn t;

	om->om_err = vol_txn_begin_run(om->om_vol, OWNER0, om->om_first, om->om_count, 0, 0, &t);
	if (om->om_err)
		return NULL;
	vol_space(om->om_vol, &before);
	for (uint64_t i = 0; i < om->om_count && !om->om_err; i++) {
		vf_pattern(data, OWNER0, om->om_first + i, 2);
		om->om_err = vol_write(&t, OWNER0, om->om_first + i, data);
	}
	vol_space(om->om_vol, &after);
	om->om_given_back = before.sp_reserved - after.sp_reserved;
	vol_txn_end(&t);
	return NULL;
}

/*
 * A run of a file's blocks (a write of a range) reserves one map path per
 * level-1 map block it spans, not one per block; a change past the run
 * counts against the transaction's other blocks; a second run under the
 * same map blocks in the delta gives those paths back; and the commit
 * finds every reservation enough.
 */
static void test_run_reserves_a_path_per_map_block(void **state)
{
	static unsigned char data[VF_BS];
	struct bdev *d = vf_mkfs(DEV_BLOCKS * 4);
	struct vol *v = vf_open(d, 0);
	uint64_t per = VF_BS / 8, first = per - 4, count = 8; /* across two map blocks */
	uint64_t rw = vol_block_rewrites(v), path = rw - 1, dat[2], cap = vol_dat_cap(v);
	struct one_more om = {.om_vol = v, .om_first = first, .om_count = count};
	struct log_space begun, written;
	struct delta_stats st;
	struct vol_txn t;
	pthread_t th;

	(void)state;
	test_watchdog("test_run_reserves_a_path_per_map_block", 60);
	assert_int_equal(vol_txn_begin_run(v, OWNER0, first, count, 1, 0, &t), 0);
	vol_space(v, &begun);
	assert_int_equal(begun.sp_reserved, vol_txn_worst_run(v, first, count, 1));
	assert_true(begun.sp_reserved < vol_txn_worst(v, count + 1));
	for (uint64_t i = first; i < first + count; i++) {
		vf_pattern(data, OWNER0, i, 1);
		assert_int_equal(vol_write(&t, OWNER0, i, data), 0);
	}
	vol_space(v, &written);
	assert_int_equal(written.sp_reserved, begun.sp_reserved); /* nothing booked before */
	/* past the run: the one other block, then nothing */
	vf_pattern(data, OWNER0, 3 * per, 1);
	assert_int_equal(vol_write(&t, OWNER0, 3 * per, data), 0);
	assert_int_equal(vol_write(&t, OWNER0, 3 * per + 1, data), -EINVAL);
	test_thread_start(&th, write_run_again, &om);
	test_thread_join(th);
	assert_int_equal(om.om_err, 0);
	/* its two paths, and what its translation part adds over the cap */
	dat[0] = MIN((count + 2 * path + rw) * (vol_vblock_worst(v) - 1), cap);
	dat[1] = MIN((count + 2 * path) * (vol_vblock_worst(v) - 1), cap);
	assert_int_equal(om.om_given_back,
			 2 * path + MIN(dat[0] + dat[1] - MIN(dat[0] + dat[1], cap), dat[1]));
	vol_txn_end(&t);
	assert_int_equal(vol_sync(v), 0);
	delta_stats(v->v_ds, &st);
	assert_int_equal(st.ds_underestimates, 0);
	vf_check(v);
	for (uint64_t i = first; i < first + count; i++)
		vf_expect(v, OWNER0, i, 2);
	vf_expect(v, OWNER0, 3 * per, 1);
	assert_int_equal(vol_close(v), 0);
	test_watchdog_cancel();
}

int main(void)
{
	static const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_shared_paths_give_reservations_back),
	    cmocka_unit_test(test_run_reserves_a_path_per_map_block),
	    cmocka_unit_test(test_fill_from_threads_then_free),
	    cmocka_unit_test(test_reserve_retry_raced_by_another_reserver),
	    cmocka_unit_test(test_heavy_reservations_commit),
	};

	vf_filter_from_env();
	return TEST_RUN("vol_enospc", tests);
}

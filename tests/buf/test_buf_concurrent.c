/*
 * test_buf_concurrent.c - concurrent requests (seed 003).
 *
 * Proves: of N threads asking for the same uncached block, exactly one
 * creates and fills the buffer while the others sleep until it leaves
 * Reading (forced: all N are in place before the fill is let go); and a
 * seeded multi-threaded workload of reads, writes and flushes keeps every
 * block's content right.
 */
#include "buf_fixture.h"
#include "harness.h"

#include <stdio.h>
#include <string.h>

#define NREQ 8

struct requester {
	struct fixture *rq_fx;
	char rq_tag[8];
	struct buf *rq_buf;
	int rq_err;
};

static void *requester_main(void *arg)
{
	struct requester *rq = arg;

	syncpoint_thread_name(rq->rq_tag);
	rq->rq_err = buf_read(rq->rq_fx->fx_cache, 1, 42, &rq->rq_buf);
	return NULL;
}

/* True once every requester is either filling or asleep on the buffer. */
static bool all_in_place(struct requester *rq, int n)
{
	char name[64];

	for (int i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "buf.wait_locked@%s", rq[i].rq_tag);
		uint64_t waits = syncpoint_arrived(name);
		snprintf(name, sizeof(name), "buf.read.fill@%s", rq[i].rq_tag);
		if (!waits && !syncpoint_arrived(name))
			return false;
	}
	return true;
}

static void test_one_fill_for_many_requests(void **state)
{
	struct fixture *fx = fixture_new(fixture_emu(4), 16, false);
	struct requester rq[NREQ];
	pthread_t t[NREQ];
	uint64_t seen = 0, want[FIX_BLOCK / 8];

	(void)state;
	test_needs_syncpoints();
	test_watchdog("one fill for many requests", 60);
	fixture_put_block(fx, 1, 42, 7);
	syncpoint_order("test.release_fill", "buf.read.fill");
	for (int i = 0; i < NREQ; i++) {
		rq[i] = (struct requester){.rq_fx = fx};
		snprintf(rq[i].rq_tag, sizeof(rq[i].rq_tag), "T%d", i);
		test_thread_start(&t[i], requester_main, &rq[i]);
	}
	/* wait for each new arrival until all eight are in place */
	while (!all_in_place(rq, NREQ))
		syncpoint_wait_arrived("buf.wait_locked", ++seen);
	assert_int_equal(syncpoint_arrived("buf.read.fill"), 1);
	syncpoint_hit("test.release_fill");
	for (int i = 0; i < NREQ; i++)
		test_thread_join(t[i]);
	assert_int_equal(atomic_load(&fx->fx_fills), 1);
	fixture_pattern(want, 1, 42, 7);
	for (int i = 0; i < NREQ; i++) {
		assert_int_equal(rq[i].rq_err, 0);
		assert_ptr_equal(rq[i].rq_buf, rq[0].rq_buf);
		assert_memory_equal(buf_data(rq[i].rq_buf), want, FIX_BLOCK);
		buf_put(rq[i].rq_buf);
	}
	fixture_free(fx);
}

struct late_reader {
	struct fixture *lr_fx;
	struct buf *lr_buf;
	int lr_err;
};

static void *late_reader_main(void *arg)
{
	struct late_reader *lr = arg;

	syncpoint_thread_name("L");
	lr->lr_err = buf_read(lr->lr_fx->fx_cache, 1, 43, &lr->lr_buf);
	return NULL;
}

/*
 * A reader that finds a new block's buffer still Invalid sleeps until its
 * creator dirties it, or, if the creator gives it up, reads the block.
 */
static void test_reader_of_abandoned_new_block(void **state)
{
	struct fixture *fx = fixture_new(fixture_emu(4), 16, false);
	struct late_reader lr = {.lr_fx = fx};
	struct buf *b = NULL;
	uint64_t want[FIX_BLOCK / 8];
	pthread_t t;

	(void)state;
	test_needs_syncpoints();
	test_watchdog("abandoned new block", 30);
	syncpoint_enable();
	fixture_put_block(fx, 1, 43, 5);
	assert_int_equal(buf_get_new(fx->fx_cache, 1, 43, &b), 0);
	test_thread_start(&t, late_reader_main, &lr);
	syncpoint_wait_arrived("buf.wait_locked@L", 1); /* asleep on Invalid */
	buf_put(b);					/* abandoned without content */
	test_thread_join(t);
	assert_int_equal(lr.lr_err, 0);
	fixture_pattern(want, 1, 43, 5);
	assert_memory_equal(buf_data(lr.lr_buf), want, FIX_BLOCK);
	assert_int_equal(atomic_load(&fx->fx_fills), 1);
	buf_put(lr.lr_buf);
	fixture_free(fx);
}

/* ---- randomized workload ---------------------------------------------- */

#define WL_THREADS 4
#define WL_BLOCKS  48 /* per owner */
#define WL_SHARED  0  /* owner read by every thread */

struct worker {
	struct fixture *w_fx;
	uint64_t w_seed;
	uint64_t w_owner; /* written only by this worker */
	uint32_t w_version[WL_BLOCKS];
	long w_ops;
};

static void worker_write(struct worker *w, uint64_t idx)
{
	struct buf *b = NULL;

	assert_int_equal(buf_read(w->w_fx->fx_cache, w->w_owner, idx, &b), 0);
	assert_int_equal(buf_modify_begin(b, 1), 0);
	fixture_pattern(buf_data(b), w->w_owner, idx, ++w->w_version[idx]);
	buf_modify_end(b);
	buf_put(b);
}

static void worker_check(struct worker *w, uint64_t owner, uint64_t idx, uint32_t v)
{
	uint64_t want[FIX_BLOCK / 8];
	struct buf *b = NULL;

	assert_int_equal(buf_read(w->w_fx->fx_cache, owner, idx, &b), 0);
	fixture_pattern(want, owner, idx, v);
	if (memcmp(buf_data(b), want, FIX_BLOCK))
		fail_msg("block (%lu, %lu) is not version %u", (unsigned long)owner,
			 (unsigned long)idx, v);
	buf_put(b);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct prng p;

	prng_init(&p, w->w_seed);
	for (long i = 0; i < w->w_ops; i++) {
		uint64_t idx = prng_below(&p, WL_BLOCKS);
		switch (prng_below(&p, 10)) {
		case 0:
			assert_int_equal(buf_flush_owner(w->w_fx->fx_cache, w->w_owner), 0);
			break;
		case 1:
		case 2:
		case 3:
			worker_write(w, idx);
			break;
		case 4:
		case 5:
		case 6:
			worker_check(w, w->w_owner, idx, w->w_version[idx]);
			break;
		default:
			worker_check(w, WL_SHARED, idx, 1);
		}
	}
	return NULL;
}

static void test_random_workload_keeps_content(void **state)
{
	struct fixture *fx = fixture_new(fixture_emu(WL_THREADS + 1), 64, true);
	uint64_t seed = test_seed("buf random workload", 20261122);
	struct worker w[WL_THREADS];
	pthread_t t[WL_THREADS];

	(void)state;
	test_watchdog("random workload", 240);
	fixture_set_owners(WL_THREADS + 1);
	for (uint64_t i = 0; i < WL_BLOCKS; i++)
		fixture_put_block(fx, WL_SHARED, i, 1);
	for (int i = 0; i < WL_THREADS; i++) {
		w[i] = (struct worker){
		    .w_fx = fx, .w_seed = seed + i, .w_owner = i + 1, .w_ops = 20000};
		for (uint64_t j = 0; j < WL_BLOCKS; j++)
			fixture_put_block(fx, i + 1, j, 0);
		test_thread_start(&t[i], worker_main, &w[i]);
	}
	for (int i = 0; i < WL_THREADS; i++)
		test_thread_join(t[i]);
	for (int i = 0; i < WL_THREADS; i++) {
		assert_int_equal(buf_flush_owner(fx->fx_cache, w[i].w_owner), 0);
		for (uint64_t j = 0; j < WL_BLOCKS; j++)
			assert_true(fixture_dev_has(fx, w[i].w_owner, j, w[i].w_version[j]));
	}
	struct buf_cache_stats st;
	buf_cache_stats(fx->fx_cache, &st);
	assert_int_equal(st.bs_dirty, 0);
	assert_int_equal(st.bs_in_use, 0);
	assert_true(st.bs_evictions > 0); /* the pool was under pressure */
	fixture_free(fx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_one_fill_for_many_requests),
	    cmocka_unit_test(test_reader_of_abandoned_new_block),
	    cmocka_unit_test(test_random_workload_keeps_content),
	};
	return TEST_RUN("buf_concurrent", tests);
}

/*
 * test_buf_evict.c - a bounded pool under pressure (seed 003).
 *
 * Proves: a working set far bigger than the pool reads back right, with
 * evictions, and the pool never grows; buffers in use, Dirty buffers and
 * buffers being written are never evicted; when nothing can be evicted a
 * caller sleeps until a buffer is put (forced, no sleeps), or reclaim is
 * asked to clean buffers; a buffer in the middle of another thread's
 * allocation counts as held, so its pool is not given up on (forced);
 * when nothing could ever free a buffer the answer is -ENOMEM, not a
 * hang; and many threads on a tiny pool finish.
 */
#include "buf_fixture.h"
#include "harness.h"

#include <string.h>

#define OWNER 2

static void check_version(struct buf *b, uint64_t owner, uint64_t index, uint32_t v)
{
	uint64_t want[FIX_BLOCK / 8];

	fixture_pattern(want, owner, index, v);
	assert_memory_equal(buf_data(b), want, FIX_BLOCK);
}

static void read_check(struct fixture *fx, uint64_t owner, uint64_t index, uint32_t v)
{
	struct buf *b = NULL;

	assert_int_equal(buf_read(fx->fx_cache, owner, index, &b), 0);
	check_version(b, owner, index, v);
	buf_put(b);
}

static void test_working_set_bigger_than_pool(void **state)
{
	struct fixture *fx = fixture_new(fixture_emu(4), 8, false);
	struct prng p;
	struct buf_cache_stats st;

	(void)state;
	prng_init(&p, test_seed("evict working set", 11));
	for (uint64_t i = 0; i < 64; i++)
		fixture_put_block(fx, OWNER, i, 3);
	for (uint64_t i = 0; i < 64; i++)
		read_check(fx, OWNER, i, 3);
	for (int i = 0; i < 2000; i++)
		read_check(fx, OWNER, prng_below(&p, 64), 3);
	buf_cache_stats(fx->fx_cache, &st);
	assert_true(st.bs_evictions >= 64 - 8);
	assert_int_equal(st.bs_misses, st.bs_fills);
	assert_int_equal(st.bs_in_use, 0);
	fixture_free(fx);
}

static void test_in_use_dirty_writing_never_evicted(void **state)
{
	struct fixture *fx = fixture_new(fixture_emu(4), 8, false);
	struct buf *held[3], *dirty[2], *writing = NULL;

	(void)state;
	for (uint64_t i = 0; i < 200; i++)
		fixture_put_block(fx, OWNER, i, 1);
	for (int i = 0; i < 3; i++)
		assert_int_equal(buf_read(fx->fx_cache, OWNER, 100 + i, &held[i]), 0);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(buf_read(fx->fx_cache, OWNER, 110 + i, &dirty[i]), 0);
		assert_int_equal(buf_modify_begin(dirty[i], 1), 0);
		fixture_pattern(buf_data(dirty[i]), OWNER, 110 + i, 2);
		buf_modify_end(dirty[i]);
		buf_put(dirty[i]); /* unused but Dirty */
	}
	assert_int_equal(buf_get_new(fx->fx_cache, OWNER, 120, &writing), 0);
	assert_int_equal(buf_dirty(writing, 1), 0);
	assert_int_equal(buf_write_begin(writing), 0);
	buf_put(writing); /* unused but Writing */
	/* 6 of 8 buffers are pinned; stream 100 other blocks through the rest */
	for (uint64_t i = 0; i < 100; i++)
		read_check(fx, OWNER, i, 1);
	for (int i = 0; i < 3; i++) {
		struct buf *b = buf_lookup(fx->fx_cache, OWNER, 100 + i);
		assert_ptr_equal(b, held[i]);
		check_version(b, OWNER, 100 + i, 1);
		buf_put(b);
		buf_put(held[i]);
	}
	for (int i = 0; i < 2; i++) {
		struct buf *b = buf_lookup(fx->fx_cache, OWNER, 110 + i);
		assert_non_null(b);
		assert_int_equal(buf_state(b), BUF_DIRTY);
		check_version(b, OWNER, 110 + i, 2);
		buf_put(b);
	}
	writing = buf_lookup(fx->fx_cache, OWNER, 120);
	assert_non_null(writing);
	assert_int_equal(buf_state(writing), BUF_WRITING);
	assert_int_equal(buf_write_cancel(writing), 0);
	buf_put(writing);
	fixture_free(fx);
}

struct waiter {
	struct fixture *wt_fx;
	_Atomic bool wt_done;
	int wt_err;
};

static void *waiter_main(void *arg)
{
	struct waiter *wt = arg;
	struct buf *b = NULL;

	syncpoint_thread_name("W");
	wt->wt_err = buf_read(wt->wt_fx->fx_cache, OWNER, 50, &b);
	atomic_store(&wt->wt_done, true);
	buf_put(b);
	return NULL;
}

static void test_full_pool_waits_for_a_put(void **state)
{
	struct fixture *fx = fixture_new(fixture_emu(4), 4, false);
	struct waiter wt = {.wt_fx = fx};
	struct buf *held[4];
	pthread_t t;

	(void)state;
	test_needs_syncpoints();
	test_watchdog("full pool waits", 30);
	syncpoint_enable();
	for (int i = 0; i < 4; i++)
		assert_int_equal(buf_read(fx->fx_cache, OWNER, i, &held[i]), 0);
	test_thread_start(&t, waiter_main, &wt);
	syncpoint_wait_arrived("buf.alloc.wait_locked@W", 1); /* asleep: nothing evictable */
	assert_false(atomic_load(&wt.wt_done));
	for (int i = 0; i < 4; i++) /* none of the held buffers was taken */
		assert_int_equal(buf_state(held[i]), BUF_CLEAN);
	buf_put(held[2]);
	test_thread_join(t);
	assert_int_equal(wt.wt_err, 0);
	assert_null(buf_lookup(fx->fx_cache, OWNER, 2)); /* the one put was reused */
	for (int i = 0; i < 4; i++)
		if (i != 2)
			buf_put(held[i]);
	fixture_free(fx);
}

static void dirty_block(struct fixture *fx, uint64_t index, uint32_t v)
{
	struct buf *b = NULL;

	assert_int_equal(buf_get_new(fx->fx_cache, OWNER, index, &b), 0);
	assert_int_equal(buf_modify_begin(b, 1), 0);
	fixture_pattern(buf_data(b), OWNER, index, v);
	buf_modify_end(b);
	buf_put(b);
}

static void test_all_dirty_pool_reclaims(void **state)
{
	struct fixture *fx = fixture_new(fixture_emu(4), 8, true);

	(void)state;
	test_watchdog("dirty pool reclaims", 30);
	fixture_set_owners(4);
	for (uint64_t i = 0; i < 8; i++)
		dirty_block(fx, i, 5);
	fixture_put_block(fx, OWNER, 9, 6);
	read_check(fx, OWNER, 9, 6); /* needs a buffer: reclaim must flush */
	assert_true(atomic_load(&fx->fx_reclaims) >= 1);
	for (uint64_t i = 0; i < 8; i++)
		assert_true(fixture_dev_has(fx, OWNER, i, 5));
	fixture_free(fx);
}

static void test_all_dirty_without_reclaim_fails_not_hangs(void **state)
{
	struct fixture *fx = fixture_new(fixture_emu(4), 4, false);
	struct buf *b = NULL;

	(void)state;
	test_watchdog("dirty pool without reclaim", 30);
	for (uint64_t i = 0; i < 4; i++)
		dirty_block(fx, i, 1);
	assert_int_equal(buf_read(fx->fx_cache, OWNER, 10, &b), -ENOMEM);
	/* nothing lost: the dirty data is still there and can be flushed */
	assert_int_equal(buf_flush_owner(fx->fx_cache, OWNER), 0);
	for (uint64_t i = 0; i < 4; i++)
		assert_true(fixture_dev_has(fx, OWNER, i, 1));
	assert_int_equal(buf_read(fx->fx_cache, OWNER, 10, &b), 0);
	buf_put(b);
	fixture_free(fx);
}

struct allocator {
	struct fixture *al_fx;
	const char *al_tag;
	uint64_t al_index;
	bool al_put; /* put the buffer at once */
	int al_err;
	enum buf_state al_state;
	struct buf *al_buf;
};

static void *allocator_main(void *arg)
{
	struct allocator *al = arg;

	syncpoint_thread_name(al->al_tag);
	al->al_err = buf_get_new(al->al_fx->fx_cache, OWNER, al->al_index, &al->al_buf);
	if (!al->al_err)
		al->al_state = buf_state(al->al_buf);
	SYNC_POINT("test.alloc.returned");
	if (al->al_put) { /* never made Dirty: dropped and freed */
		buf_put(al->al_buf);
		al->al_buf = NULL;
	}
	return NULL;
}

/* B either sleeps for a buffer or has returned: either way, B moved. */
static void note_b_moved(const char *point, void *arg)
{
	(void)point;
	(void)arg;
	syncpoint_hit("test.b.moved");
}

/*
 * A pool of 4: 3 Dirty buffers nobody holds (no reclaim), 1 free. A takes
 * the free one and is held before it inserts it into the hash: the buffer
 * then has no reference and is on no list. B, asking for another new
 * block, finds nothing free or evictable; it must count A's buffer as held
 * and sleep until it comes back, not fail with -ENOMEM. A then puts its
 * buffer unused (dropped, freed) and B gets it.
 */
static void test_buffer_being_allocated_counts_as_held(void **state)
{
	struct fixture *fx = fixture_new(fixture_emu(4), 4, false);
	struct allocator a = {.al_fx = fx, .al_tag = "A", .al_index = 20, .al_put = true};
	struct allocator b = {.al_fx = fx, .al_tag = "B", .al_index = 21};
	struct buf_cache_stats st;
	bool b_slept, b_returned;
	uint32_t in_use_taken;
	pthread_t ta, tb;

	(void)state;
	test_needs_syncpoints();
	test_watchdog("buffer being allocated", 30);
	for (uint64_t i = 0; i < 3; i++)
		dirty_block(fx, i, 1);
	syncpoint_order("test.release_a", "buf.alloc.taken@A");
	syncpoint_callback("buf.alloc.wait_locked@B", note_b_moved, NULL);
	syncpoint_callback("test.alloc.returned@B", note_b_moved, NULL);
	test_thread_start(&ta, allocator_main, &a);
	syncpoint_wait_arrived("buf.alloc.taken@A", 1); /* A has the last free buffer */
	buf_cache_stats(fx->fx_cache, &st);
	in_use_taken = st.bs_in_use;
	test_thread_start(&tb, allocator_main, &b);
	syncpoint_wait_arrived("test.b.moved", 1);
	b_slept = syncpoint_arrived("buf.alloc.wait_locked@B") > 0;
	b_returned = syncpoint_arrived("test.alloc.returned@B") > 0;
	syncpoint_hit("test.release_a");
	test_thread_join(ta); /* A inserted its buffer and put it */
	test_thread_join(tb);
	assert_int_equal(b.al_err, 0); /* not -ENOMEM */
	assert_false(b_returned);      /* not before A gave its buffer back */
	assert_true(b_slept);
	assert_int_equal(in_use_taken, 1); /* A's buffer, unhashed and unreferenced */
	assert_int_equal(a.al_err, 0);
	assert_int_equal(a.al_state, BUF_INVALID);
	assert_int_equal(b.al_state, BUF_INVALID);
	assert_int_equal(buf_index(b.al_buf), 21);
	assert_null(buf_find_hold(fx->fx_cache, OWNER, 20)); /* A's block was dropped */
	buf_put(b.al_buf);
	for (uint64_t i = 0; i < 3; i++) { /* the Dirty buffers were left alone */
		struct buf *d = buf_lookup(fx->fx_cache, OWNER, i);
		assert_non_null(d);
		assert_int_equal(buf_state(d), BUF_DIRTY);
		buf_put(d);
	}
	buf_cache_stats(fx->fx_cache, &st);
	assert_int_equal(st.bs_in_use, 0);
	fixture_free(fx);
}

#define TP_THREADS 8

struct tiny_worker {
	struct fixture *tw_fx;
	uint64_t tw_seed;
};

static void *tiny_worker_main(void *arg)
{
	struct tiny_worker *tw = arg;
	struct prng p;

	prng_init(&p, tw->tw_seed);
	for (int i = 0; i < 3000; i++)
		read_check(tw->tw_fx, OWNER, prng_below(&p, 256), 4);
	return NULL;
}

static void test_many_threads_tiny_pool(void **state)
{
	struct fixture *fx = fixture_new(fixture_emu(4), 4, false);
	uint64_t seed = test_seed("tiny pool", 99);
	struct tiny_worker tw[TP_THREADS];
	pthread_t t[TP_THREADS];
	struct buf_cache_stats st;

	(void)state;
	test_watchdog("many threads tiny pool", 240);
	for (uint64_t i = 0; i < 256; i++)
		fixture_put_block(fx, OWNER, i, 4);
	for (int i = 0; i < TP_THREADS; i++) {
		tw[i] = (struct tiny_worker){.tw_fx = fx, .tw_seed = seed + i};
		test_thread_start(&t[i], tiny_worker_main, &tw[i]);
	}
	for (int i = 0; i < TP_THREADS; i++)
		test_thread_join(t[i]);
	buf_cache_stats(fx->fx_cache, &st);
	assert_int_equal(st.bs_in_use, 0);
	assert_true(st.bs_evictions > 0);
	fixture_free(fx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_working_set_bigger_than_pool),
	    cmocka_unit_test(test_in_use_dirty_writing_never_evicted),
	    cmocka_unit_test(test_full_pool_waits_for_a_put),
	    cmocka_unit_test(test_all_dirty_pool_reclaims),
	    cmocka_unit_test(test_all_dirty_without_reclaim_fails_not_hangs),
	    cmocka_unit_test(test_buffer_being_allocated_counts_as_held),
	    cmocka_unit_test(test_many_threads_tiny_pool),
	};
	return TEST_RUN("buf_evict", tests);
}

/*
 * test_buf_state.c - the buffer state machine of seed 003.
 *
 * Proves: the table of legal transitions is exactly the documented one;
 * every transition function, called from every state, either performs
 * its transition or is refused (an assertion in debug builds, -EINVAL
 * and no change in release builds); delayed drop; redirty of a Written
 * buffer; the delta tag; and that modifying a Writing buffer waits for
 * the write to end.
 */
#include "buf_fixture.h"
#include "harness.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define OWNER 3

/* The documented transitions (docs/DESIGN.md), written out independently. */
static const enum buf_state legal_pairs[][2] = {
    {BUF_INVALID, BUF_READING}, {BUF_INVALID, BUF_DIRTY},   {BUF_INVALID, BUF_DROPPED},
    {BUF_READING, BUF_INVALID}, {BUF_READING, BUF_CLEAN},   {BUF_READING, BUF_DROPPED},
    {BUF_CLEAN, BUF_DIRTY},	{BUF_CLEAN, BUF_DROPPED},   {BUF_DIRTY, BUF_WRITING},
    {BUF_DIRTY, BUF_DROPPED},	{BUF_WRITING, BUF_DIRTY},   {BUF_WRITING, BUF_WRITTEN},
    {BUF_WRITING, BUF_DROPPED}, {BUF_WRITTEN, BUF_CLEAN},   {BUF_WRITTEN, BUF_DIRTY},
    {BUF_WRITTEN, BUF_DROPPED}, {BUF_DROPPED, BUF_INVALID},
};

static void test_legal_table_is_the_documented_one(void **state)
{
	(void)state;
	for (int from = 0; from < BUF_NSTATES; from++) {
		for (int to = 0; to < BUF_NSTATES; to++) {
			bool want = false;
			for (size_t i = 0; i < ARRAY_SIZE(legal_pairs); i++)
				want |= legal_pairs[i][0] == (enum buf_state)from &&
					legal_pairs[i][1] == (enum buf_state)to;
			if (buf_state_legal(from, to) != want)
				fail_msg("%s -> %s: table says %d", buf_state_name(from),
					 buf_state_name(to), !want);
		}
	}
	assert_false(buf_state_legal(BUF_NSTATES, BUF_CLEAN));
}

/* ---- putting a buffer into each state --------------------------------- */

struct held_read {
	struct fixture *hr_fx;
	pthread_t hr_thread;
	uint64_t hr_index;
	struct buf *hr_buf;
};

static void *reader_main(void *arg)
{
	struct held_read *hr = arg;
	struct buf *b = NULL;

	syncpoint_thread_name("R");
	assert_int_equal(buf_read(hr->hr_fx->fx_cache, OWNER, hr->hr_index, &b), 0);
	buf_put(b);
	return NULL;
}

/* A buffer held in Reading by a thread stopped inside its fill. */
static struct buf *enter_reading(struct fixture *fx, uint64_t index, struct held_read *hr)
{
	hr->hr_fx = fx;
	hr->hr_index = index;
	syncpoint_order("test.release_fill", "buf.read.fill@R");
	test_thread_start(&hr->hr_thread, reader_main, hr);
	syncpoint_wait_arrived("buf.read.fill@R", 1);
	/* the buffer is inserted and Reading before the fill point */
	hr->hr_buf = buf_find_hold(fx->fx_cache, OWNER, index);
	assert_non_null(hr->hr_buf);
	assert_int_equal(buf_state(hr->hr_buf), BUF_READING);
	return hr->hr_buf;
}

static struct buf *enter_state(struct fixture *fx, enum buf_state s, uint64_t index,
			       struct held_read *hr)
{
	struct buf *b = NULL;

	if (s == BUF_READING)
		return enter_reading(fx, index, hr);
	if (s == BUF_CLEAN) {
		assert_int_equal(buf_read(fx->fx_cache, OWNER, index, &b), 0);
		assert_int_equal(buf_state(b), BUF_CLEAN);
		return b;
	}
	assert_int_equal(buf_get_new(fx->fx_cache, OWNER, index, &b), 0);
	if (s == BUF_INVALID)
		return b;
	if (s == BUF_DROPPED) {
		assert_int_equal(buf_drop(b), 0);
		return b;
	}
	assert_int_equal(buf_dirty(b, 1), 0);
	if (s >= BUF_WRITING)
		assert_int_equal(buf_write_begin(b), 0);
	if (s == BUF_WRITTEN)
		assert_int_equal(buf_write_end(b, 0), 0);
	assert_int_equal(buf_state(b), s);
	return b;
}

static void leave_state(struct fixture *fx, struct buf *b, struct held_read *hr, bool reading)
{
	if (reading) {
		syncpoint_hit("test.release_fill");
		test_thread_join(hr->hr_thread);
	}
	buf_put(b);
	(void)fx;
}

/* ---- the transition functions ---------------------------------------- */

enum tfn { T_DIRTY, T_WBEGIN, T_WEND_OK, T_WEND_ERR, T_CEND_OK, T_CEND_ERR, T_CANCEL, T_DROP, T_N };
static const char *const tfn_names[T_N] = {
    "buf_dirty",	 "buf_write_begin",	 "buf_write_end(0)", "buf_write_end(-EIO)",
    "buf_commit_end(0)", "buf_commit_end(-EIO)", "buf_write_cancel", "buf_drop",
};

static int call_tfn(enum tfn f, struct buf *b)
{
	switch (f) {
	case T_DIRTY:
		return buf_dirty(b, 2);
	case T_WBEGIN:
		return buf_write_begin(b);
	case T_WEND_OK:
		return buf_write_end(b, 0);
	case T_WEND_ERR:
		return buf_write_end(b, -EIO);
	case T_CEND_OK:
		return buf_commit_end(b, 0);
	case T_CEND_ERR:
		return buf_commit_end(b, -EIO);
	case T_CANCEL:
		return buf_write_cancel(b);
	default:
		return buf_drop(b);
	}
}

/* What f does from s: the resulting state, or -1 if illegal. */
static int expect_tfn(enum tfn f, enum buf_state s)
{
	switch (f) {
	case T_DIRTY:
		return s == BUF_INVALID || s == BUF_CLEAN || s == BUF_DIRTY ? BUF_DIRTY
		       : s == BUF_WRITTEN				    ? BUF_WRITTEN
									    : -1;
	case T_WBEGIN:
		return s == BUF_DIRTY ? BUF_WRITING : -1;
	case T_WEND_OK:
		return s == BUF_WRITING ? BUF_WRITTEN : -1;
	case T_WEND_ERR:
		return s == BUF_WRITING ? BUF_DIRTY : -1;
	case T_CEND_OK:
		return s == BUF_WRITTEN ? BUF_CLEAN : -1;
	case T_CEND_ERR:
		return s == BUF_WRITTEN ? BUF_DIRTY : -1;
	case T_CANCEL:
		return s == BUF_WRITING || s == BUF_WRITTEN ? BUF_DIRTY : -1;
	default:
		/* Reading, Writing, Written: delayed; the state stays for now */
		return s == BUF_READING || s == BUF_WRITING || s == BUF_WRITTEN ? (int)s
										: BUF_DROPPED;
	}
}

/* In a debug build an illegal call must abort: run it in a child. */
static void assert_refused(enum tfn f, struct buf *b, enum buf_state s)
{
#ifdef NDEBUG
	assert_int_equal(call_tfn(f, b), -EINVAL);
	assert_int_equal(buf_state(b), s);
#else
	int status;
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0) {
		/* cmocka catches SIGABRT to report a failed test: undo that in
		 * the child, and keep its expected complaint off the log */
		signal(SIGABRT, SIG_DFL);
		if (!freopen("/dev/null", "w", stderr))
			_exit(1);
		call_tfn(f, b);
		_exit(0); /* not refused: the parent sees a clean exit */
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGABRT)
		fail_msg("%s from %s was not refused", tfn_names[f], buf_state_name(s));
	assert_int_equal(buf_state(b), s);
#endif
}

static void check_one(struct fixture *fx, enum buf_state s, enum tfn f, uint64_t index)
{
	struct held_read hr;
	struct buf *b = enter_state(fx, s, index, &hr);
	int want = expect_tfn(f, s);

	if (want < 0) {
		assert_refused(f, b, s);
	} else {
		int rc = call_tfn(f, b);
		if (rc != 0 || (int)buf_state(b) != want)
			fail_msg("%s from %s: rc %d, state %s, want %s", tfn_names[f],
				 buf_state_name(s), rc, buf_state_name(buf_state(b)),
				 buf_state_name(want));
	}
	if (buf_state(b) == BUF_WRITING) /* settle so the buffer can go */
		assert_int_equal(buf_write_cancel(b), 0);
	leave_state(fx, b, &hr, s == BUF_READING);
	syncpoint_reset();
}

static void test_every_function_from_every_state(void **state)
{
	struct fixture *fx = fixture_new(fixture_emu(8), 64, false);
	uint64_t index = 0;

	(void)state;
	test_needs_syncpoints(); /* Reading is held with an interleaving point */
	test_watchdog("every transition", 120);
	for (int s = 0; s < BUF_NSTATES; s++)
		for (int f = 0; f < T_N; f++) {
			if (s == BUF_WRITING && f == T_DIRTY)
				continue; /* waits: test_dirty_waits_for_write */
			check_one(fx, s, f, index++);
		}
	fixture_free(fx);
}

/* ---- individual behaviours ------------------------------------------ */

static void test_delayed_drop_of_writing_buffer(void **state)
{
	struct fixture *fx = fixture_new(fixture_emu(8), 16, false);
	struct buf *b = enter_state(fx, BUF_WRITING, 5, NULL);
	struct buf *other = NULL;

	(void)state;
	assert_int_equal(buf_drop(b), 0);
	assert_int_equal(buf_state(b), BUF_WRITING); /* the write goes on */
	assert_int_equal(buf_write_end(b, 0), 0);
	assert_int_equal(buf_state(b), BUF_DROPPED); /* dropped when it ended */
	assert_null(buf_lookup(fx->fx_cache, OWNER, 5));
	assert_int_equal(buf_owner_ndirty(fx->fx_cache, OWNER), 0);
	/* a new request creates a new buffer; the old one is still ours */
	assert_int_equal(buf_read(fx->fx_cache, OWNER, 5, &other), 0);
	assert_ptr_not_equal(other, b);
	buf_put(other);
	buf_put(b);
	fixture_free(fx);
}

static void test_drop_discards_dirty_and_frees_on_put(void **state)
{
	struct fixture *fx = fixture_new(fixture_emu(8), 2, false);
	struct buf *b = enter_state(fx, BUF_DIRTY, 1, NULL);
	struct buf_cache_stats st;

	(void)state;
	assert_int_equal(buf_owner_ndirty(fx->fx_cache, OWNER), 1);
	assert_int_equal(buf_drop(b), 0);
	assert_int_equal(buf_owner_ndirty(fx->fx_cache, OWNER), 0);
	buf_put(b);
	buf_cache_stats(fx->fx_cache, &st);
	assert_int_equal(st.bs_dirty, 0);
	assert_int_equal(st.bs_in_use, 0);
	fixture_free(fx);
}

static void test_written_redirtied_goes_dirty_on_commit(void **state)
{
	struct fixture *fx = fixture_new(fixture_emu(8), 16, false);
	struct buf *b = enter_state(fx, BUF_WRITTEN, 2, NULL);

	(void)state;
	assert_false(buf_redirtied(b));
	assert_int_equal(buf_dirty(b, 9), 0);
	assert_int_equal(buf_state(b), BUF_WRITTEN);
	assert_true(buf_redirtied(b));
	assert_int_equal(buf_commit_end(b, 0), 0);
	assert_int_equal(buf_state(b), BUF_DIRTY);
	assert_false(buf_redirtied(b));
	assert_int_equal(buf_delta(b), 9);
	buf_put(b);
	fixture_free(fx);
}

static void test_commit_makes_clean_and_leaves_dirty_list(void **state)
{
	struct fixture *fx = fixture_new(fixture_emu(8), 16, false);
	struct buf *b = enter_state(fx, BUF_WRITTEN, 2, NULL);

	(void)state;
	assert_int_equal(buf_owner_ndirty(fx->fx_cache, OWNER), 1);
	assert_int_equal(buf_commit_end(b, 0), 0);
	assert_int_equal(buf_state(b), BUF_CLEAN);
	assert_int_equal(buf_owner_ndirty(fx->fx_cache, OWNER), 0);
	buf_put(b);
	fixture_free(fx);
}

static void test_delta_tag_is_in_the_state_word(void **state)
{
	struct fixture *fx = fixture_new(fixture_emu(8), 16, false);
	struct buf *b = NULL;

	(void)state;
	assert_int_equal(buf_get_new(fx->fx_cache, OWNER, 1, &b), 0);
	assert_int_equal(buf_dirty(b, 0xfffffff0u), 0);
	assert_int_equal(buf_delta(b), 0xfffffff0u);
	assert_int_equal(buf_state(b), BUF_DIRTY);
	assert_int_equal(buf_dirty(b, 3), 0);
	assert_int_equal(buf_delta(b), 3);
	buf_put(b);
	fixture_free(fx);
}

struct dirtier {
	struct buf *d_buf;
	_Atomic bool d_done;
};

static void *dirtier_main(void *arg)
{
	struct dirtier *d = arg;

	syncpoint_thread_name("D");
	assert_int_equal(buf_dirty(d->d_buf, 4), 0);
	atomic_store(&d->d_done, true);
	return NULL;
}

static void test_dirty_waits_for_write(void **state)
{
	struct fixture *fx = fixture_new(fixture_emu(8), 16, false);
	struct dirtier d = {.d_buf = enter_state(fx, BUF_WRITING, 6, NULL)};
	pthread_t t;

	(void)state;
	test_needs_syncpoints();
	test_watchdog("dirty waits for write", 30);
	syncpoint_enable();
	test_thread_start(&t, dirtier_main, &d);
	syncpoint_wait_arrived("buf.wait_locked@D", 1); /* asleep on the shard */
	assert_false(atomic_load(&d.d_done));
	assert_int_equal(buf_state(d.d_buf), BUF_WRITING);
	assert_int_equal(buf_write_end(d.d_buf, 0), 0); /* Written: modifiable */
	test_thread_join(t);
	assert_true(buf_redirtied(d.d_buf));
	assert_int_equal(buf_commit_end(d.d_buf, 0), 0);
	assert_int_equal(buf_state(d.d_buf), BUF_DIRTY);
	buf_put(d.d_buf);
	fixture_free(fx);
}

static void test_get_new_unused_is_dropped_on_put(void **state)
{
	struct fixture *fx = fixture_new(fixture_emu(8), 16, false);
	struct buf *b = NULL;

	(void)state;
	fixture_put_block(fx, OWNER, 8, 1);
	assert_int_equal(buf_get_new(fx->fx_cache, OWNER, 8, &b), 0);
	assert_int_equal(buf_state(b), BUF_INVALID);
	buf_put(b); /* never made Dirty: must not stay as a zeroed block */
	assert_int_equal(buf_read(fx->fx_cache, OWNER, 8, &b), 0);
	assert_int_equal(buf_state(b), BUF_CLEAN);
	uint64_t want[FIX_BLOCK / 8];
	fixture_pattern(want, OWNER, 8, 1);
	assert_memory_equal(buf_data(b), want, FIX_BLOCK);
	buf_put(b);
	fixture_free(fx);
}

static void test_write_refused_while_modifying(void **state)
{
	struct fixture *fx = fixture_new(fixture_emu(8), 16, false);
	struct buf *b = NULL;

	(void)state;
	assert_int_equal(buf_get_new(fx->fx_cache, OWNER, 1, &b), 0);
	assert_int_equal(buf_modify_begin(b, 1), 0);
	assert_int_equal(buf_state(b), BUF_DIRTY);
	assert_int_equal(buf_write_begin(b), -EBUSY);
	assert_int_equal(buf_state(b), BUF_DIRTY);
	/* a flush leaves it Dirty rather than write half-changed data */
	assert_int_equal(buf_flush_owner(fx->fx_cache, OWNER), 0);
	assert_int_equal(buf_state(b), BUF_DIRTY);
	assert_int_equal(atomic_load(&fx->fx_writes), 0);
	buf_modify_end(b);
	assert_int_equal(buf_flush_owner(fx->fx_cache, OWNER), 0);
	assert_int_equal(buf_state(b), BUF_CLEAN);
	assert_int_equal(atomic_load(&fx->fx_writes), 1);
	buf_put(b);
	fixture_free(fx);
}

struct modifier {
	struct buf *m_buf;
	_Atomic bool m_in;
};

static void *modifier_main(void *arg)
{
	struct modifier *m = arg;

	syncpoint_thread_name("M");
	assert_int_equal(buf_modify_begin(m->m_buf, 2), 0);
	atomic_store(&m->m_in, true);
	buf_modify_end(m->m_buf);
	return NULL;
}

static void test_modifiers_exclude_each_other_and_writes(void **state)
{
	struct fixture *fx = fixture_new(fixture_emu(8), 16, false);
	struct modifier m = {0};
	pthread_t t;

	(void)state;
	test_needs_syncpoints();
	test_watchdog("modifiers exclude", 30);
	syncpoint_enable();
	assert_int_equal(buf_get_new(fx->fx_cache, OWNER, 1, &m.m_buf), 0);
	assert_int_equal(buf_modify_begin(m.m_buf, 1), 0);
	test_thread_start(&t, modifier_main, &m);
	syncpoint_wait_arrived("buf.wait_locked@M", 1);
	assert_false(atomic_load(&m.m_in)); /* second modifier sleeps */
	buf_modify_end(m.m_buf);
	test_thread_join(t);
	assert_true(atomic_load(&m.m_in));
	/* a modifier also waits for a write in progress */
	assert_int_equal(buf_write_begin(m.m_buf), 0);
	atomic_store(&m.m_in, false);
	test_thread_start(&t, modifier_main, &m);
	syncpoint_wait_arrived("buf.wait_locked@M", 2);
	assert_false(atomic_load(&m.m_in));
	assert_int_equal(buf_write_end(m.m_buf, 0), 0);
	test_thread_join(t);
	assert_true(buf_redirtied(m.m_buf));
	assert_int_equal(buf_commit_end(m.m_buf, 0), 0);
	assert_int_equal(buf_state(m.m_buf), BUF_DIRTY);
	buf_put(m.m_buf);
	fixture_free(fx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_legal_table_is_the_documented_one),
	    cmocka_unit_test(test_every_function_from_every_state),
	    cmocka_unit_test(test_delayed_drop_of_writing_buffer),
	    cmocka_unit_test(test_drop_discards_dirty_and_frees_on_put),
	    cmocka_unit_test(test_written_redirtied_goes_dirty_on_commit),
	    cmocka_unit_test(test_commit_makes_clean_and_leaves_dirty_list),
	    cmocka_unit_test(test_delta_tag_is_in_the_state_word),
	    cmocka_unit_test(test_dirty_waits_for_write),
	    cmocka_unit_test(test_get_new_unused_is_dropped_on_put),
	    cmocka_unit_test(test_write_refused_while_modifying),
	    cmocka_unit_test(test_modifiers_exclude_each_other_and_writes),
	};
	return TEST_RUN("buf_state", tests);
}

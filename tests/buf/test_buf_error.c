/*
 * test_buf_error.c - write and fill errors (seed 003): a write error is
 * recorded on the owner (the inode), returned once by its next fsync
 * (buf_flush_owner), and leaves the buffer Dirty with its data: nothing
 * is silently lost.
 *
 * What it proves:
 *   - a failed device write or a failed commit (flush) makes the flush
 *     return -EIO once, leaves the buffer Dirty with its data, and a
 *     retry writes it; a commit failure leaves nothing durable;
 *   - errors belong to their owner and survive the buffer being dropped;
 *   - a failed write of one block leaves only that buffer Dirty;
 *   - buf_write_end and buf_commit_end with an error record it (the first
 *     one until reported), a cancelled write records nothing;
 *   - a failed fill caches nothing, reaches every thread that waited for
 *     it, and happens once.
 */
#include "harness.h"
#include "buf_fixture.h"

#include <string.h>

/* ---- helpers --------------------------------------------------------------- */

/* A fixture for test @what, with the hang watchdog armed (a state wait may hang). */
static struct fixture *error_fixture(const char *what)
{
	test_watchdog(what, 30);
	return fixture_new(fixture_emu(4), 16, false);
}

/* Make @b hold version @v of its block, as a modification in delta 1. */
static void buf_set_version(struct buf *b, uint32_t v)
{
	assert_int_equal(buf_modify_begin(b, 1), 0);
	fixture_pattern(buf_data(b), buf_owner(b), buf_index(b), v);
	buf_modify_end(b);
}

/* (owner, index) read from a device holding version @old, changed to @v. */
static struct buf *dirty_block(struct fixture *fx, uint64_t owner, uint64_t index, uint32_t old,
			       uint32_t v)
{
	struct buf *b = NULL;

	fixture_put_block(fx, owner, index, old);
	assert_int_equal(buf_read(fx->fx_cache, owner, index, &b), 0);
	buf_set_version(b, v);
	assert_int_equal(buf_state(b), BUF_DIRTY);
	return b;
}

/* True if @b holds version @v of its block. */
static bool buf_holds(struct buf *b, uint32_t v)
{
	uint64_t want[FIX_BLOCK / 8];

	fixture_pattern(want, buf_owner(b), buf_index(b), v);
	return !memcmp(want, buf_data(b), FIX_BLOCK);
}

/* True if version @v of (owner, index) would survive a power cut now. */
static bool durable_has(struct fixture *fx, uint64_t owner, uint64_t index, uint32_t v)
{
	struct bdev_emu_crash how = {.ec_mode = BDEV_EMU_DROP_ALL};
	uint64_t want[FIX_BLOCK / 8], got[FIX_BLOCK / 8];
	struct bdev *img = NULL;
	bool ok;

	assert_int_equal(bdev_emu_crash(fx->fx_dev, &how, &img), 0);
	fixture_pattern(want, owner, index, v);
	ok = !bdev_read(img, fixture_pblk(owner, index), 1, got) && !memcmp(want, got, FIX_BLOCK);
	bdev_close(img);
	return ok;
}

/* Write @b to the device outside any flush, as the log's writer does. */
static int write_back(struct fixture *fx, struct buf *b)
{
	int err;

	assert_int_equal(buf_write_begin(b), 0);
	err = bdev_write(fx->fx_dev, fixture_pblk(buf_owner(b), buf_index(b)), 1, buf_data(b));
	assert_int_equal(buf_write_end(b, err), 0);
	return err;
}

/* Error lines logged, and how many of them contain ls_needle. */
static struct {
	const char *ls_needle;
	unsigned ls_errors;
	unsigned ls_named;
} log_seen;

static void log_catch(enum log_level level, const char *line, void *arg)
{
	(void)arg;
	if (level != LOG_ERR)
		return;
	log_seen.ls_errors++;
	if (strstr(line, log_seen.ls_needle))
		log_seen.ls_named++;
}

/* Catch error lines (single-threaded tests only) until cairn_log_set_sink(NULL). */
static void log_catch_start(const char *needle)
{
	memset(&log_seen, 0, sizeof(log_seen));
	log_seen.ls_needle = needle;
	cairn_log_set_sink(log_catch, NULL);
}

/* ---- write and commit errors ------------------------------------------------ */

static void test_write_error_keeps_buffer_dirty(void **state)
{
	struct fixture *fx = error_fixture("buf_error: write_error_keeps_buffer_dirty");
	struct buf *b = dirty_block(fx, 1, 3, 1, 2);

	(void)state;
	log_catch_start("(1, 3)");
	bdev_emu_fail_op(fx->fx_dev, BDEV_EMU_WRITE, 1, 1, -EIO);
	assert_int_equal(buf_flush_owner(fx->fx_cache, 1), -EIO);
	cairn_log_set_sink(NULL, NULL);
	assert_int_equal(buf_state(b), BUF_DIRTY);
	assert_true(buf_holds(b, 2));
	assert_int_equal(buf_owner_ndirty(fx->fx_cache, 1), 1);
	assert_true(fixture_dev_has(fx, 1, 3, 1));
	assert_int_equal(buf_owner_error(fx->fx_cache, 1), 0); /* reported once */
	assert_int_equal(log_seen.ls_errors, 1);
	assert_int_equal(log_seen.ls_named, 1); /* the log line names the block */

	/* nothing was lost: the next flush writes it */
	assert_int_equal(buf_flush_owner(fx->fx_cache, 1), 0);
	assert_true(fixture_dev_has(fx, 1, 3, 2));
	assert_true(durable_has(fx, 1, 3, 2));
	assert_int_equal(buf_state(b), BUF_CLEAN);
	assert_int_equal(buf_owner_ndirty(fx->fx_cache, 1), 0);
	assert_int_equal(buf_owner_error(fx->fx_cache, 1), 0);
	buf_put(b);
	fixture_free(fx);
}

static void test_commit_error_keeps_buffer_dirty(void **state)
{
	struct fixture *fx = error_fixture("buf_error: commit_error_keeps_buffer_dirty");
	struct buf *b = dirty_block(fx, 1, 4, 1, 2);

	(void)state;
	assert_int_equal(bdev_flush(fx->fx_dev), 0); /* version 1 is durable */
	bdev_emu_fail_op(fx->fx_dev, BDEV_EMU_FLUSH, 1, 1, -EIO);
	assert_int_equal(buf_flush_owner(fx->fx_cache, 1), -EIO);
	assert_int_equal(atomic_load(&fx->fx_commits), 1);
	assert_int_equal(buf_state(b), BUF_DIRTY);
	assert_false(buf_redirtied(b));
	assert_true(buf_holds(b, 2));
	assert_true(durable_has(fx, 1, 4, 1)); /* the commit made nothing durable */
	assert_int_equal(buf_owner_error(fx->fx_cache, 1), 0);

	assert_int_equal(buf_flush_owner(fx->fx_cache, 1), 0);
	assert_int_equal(atomic_load(&fx->fx_commits), 2);
	assert_int_equal(buf_state(b), BUF_CLEAN);
	assert_true(durable_has(fx, 1, 4, 2));
	assert_int_equal(buf_owner_error(fx->fx_cache, 1), 0);
	buf_put(b);
	fixture_free(fx);
}

/*
 * Owner 1's write fails outside any flush, owner 2's succeeds: owner 2's
 * fsync must not see owner 1's error, and owner 1's next fsync returns it
 * although its own write then succeeds.
 */
static void test_errors_are_per_owner(void **state)
{
	struct fixture *fx = error_fixture("buf_error: errors_are_per_owner");
	struct buf *b1 = dirty_block(fx, 1, 0, 1, 2);
	struct buf *b2 = dirty_block(fx, 2, 0, 1, 2);

	(void)state;
	bdev_emu_fail_block(fx->fx_dev, BDEV_EMU_WRITE, fixture_pblk(1, 0), 1, -EIO);
	assert_int_equal(write_back(fx, b1), -EIO);
	assert_int_equal(write_back(fx, b2), 0);
	assert_int_equal(buf_state(b1), BUF_DIRTY);
	assert_int_equal(buf_state(b2), BUF_WRITTEN);
	assert_int_equal(bdev_flush(fx->fx_dev), 0);
	assert_int_equal(buf_commit_end(b2, 0), 0);
	assert_int_equal(buf_state(b2), BUF_CLEAN);

	assert_int_equal(buf_flush_owner(fx->fx_cache, 2), 0);
	assert_int_equal(buf_owner_error(fx->fx_cache, 2), 0);
	assert_int_equal(buf_flush_owner(fx->fx_cache, 1), -EIO);
	assert_int_equal(buf_state(b1), BUF_CLEAN);
	assert_true(durable_has(fx, 1, 0, 2));
	assert_int_equal(buf_flush_owner(fx->fx_cache, 1), 0);

	/* and the other way round, through flushes */
	buf_set_version(b1, 3);
	buf_set_version(b2, 3);
	bdev_emu_fail_block(fx->fx_dev, BDEV_EMU_WRITE, fixture_pblk(2, 0), 1, -EIO);
	assert_int_equal(buf_flush_owner(fx->fx_cache, 2), -EIO);
	assert_int_equal(buf_flush_owner(fx->fx_cache, 1), 0);
	assert_int_equal(buf_owner_error(fx->fx_cache, 1), 0);
	assert_int_equal(buf_state(b1), BUF_CLEAN);
	assert_int_equal(buf_state(b2), BUF_DIRTY);
	assert_int_equal(buf_flush_owner(fx->fx_cache, 2), 0);
	assert_true(durable_has(fx, 2, 0, 3));
	buf_put(b1);
	buf_put(b2);
	fixture_free(fx);
}

#define BLOCK_BUFS 4

static void test_block_error_fails_only_that_buffer(void **state)
{
	struct fixture *fx = error_fixture("buf_error: block_error_fails_only_that_buffer");
	struct buf *b[BLOCK_BUFS];

	(void)state;
	for (unsigned i = 0; i < BLOCK_BUFS; i++)
		b[i] = dirty_block(fx, 1, i, 1, 2);
	bdev_emu_fail_block(fx->fx_dev, BDEV_EMU_WRITE, fixture_pblk(1, 2), 1, -EIO);
	assert_int_equal(buf_flush_owner(fx->fx_cache, 1), -EIO);
	for (unsigned i = 0; i < BLOCK_BUFS; i++) {
		assert_int_equal(buf_state(b[i]), i == 2 ? BUF_DIRTY : BUF_CLEAN);
		assert_true(buf_holds(b[i], 2));
		assert_true(durable_has(fx, 1, i, i == 2 ? 1 : 2));
	}
	assert_int_equal(buf_owner_ndirty(fx->fx_cache, 1), 1);
	assert_int_equal(buf_owner_error(fx->fx_cache, 1), 0);

	assert_int_equal(buf_flush_owner(fx->fx_cache, 1), 0);
	assert_int_equal(buf_state(b[2]), BUF_CLEAN);
	assert_true(durable_has(fx, 1, 2, 2));
	assert_int_equal(buf_owner_ndirty(fx->fx_cache, 1), 0);
	for (unsigned i = 0; i < BLOCK_BUFS; i++)
		buf_put(b[i]);
	fixture_free(fx);
}

/* ---- errors passed to the transitions ---------------------------------------- */

static void test_write_end_error_recorded_once(void **state)
{
	struct fixture *fx = error_fixture("buf_error: write_end_error_recorded_once");
	struct buf *b = dirty_block(fx, 1, 2, 1, 5);

	(void)state;
	assert_int_equal(buf_write_begin(b), 0);
	assert_int_equal(buf_state(b), BUF_WRITING);
	assert_int_equal(buf_write_end(b, -EIO), 0);
	assert_int_equal(buf_state(b), BUF_DIRTY);
	assert_true(buf_holds(b, 5));
	assert_int_equal(buf_owner_ndirty(fx->fx_cache, 1), 1);
	assert_int_equal(buf_owner_error(fx->fx_cache, 1), -EIO);
	assert_int_equal(buf_owner_error(fx->fx_cache, 1), 0);

	/* the first error is kept until reported */
	assert_int_equal(buf_write_begin(b), 0);
	assert_int_equal(buf_write_end(b, -EIO), 0);
	assert_int_equal(buf_write_begin(b), 0);
	assert_int_equal(buf_write_end(b, -ENOSPC), 0);
	assert_int_equal(buf_owner_error(fx->fx_cache, 1), -EIO);
	assert_int_equal(buf_owner_error(fx->fx_cache, 1), 0);

	/* an abandoned write is no error */
	assert_int_equal(buf_write_begin(b), 0);
	assert_int_equal(buf_write_cancel(b), 0);
	assert_int_equal(buf_state(b), BUF_DIRTY);
	assert_int_equal(buf_owner_error(fx->fx_cache, 1), 0);
	assert_true(buf_holds(b, 5));
	buf_put(b);
	fixture_free(fx);
}

static void test_commit_end_error_recorded_once(void **state)
{
	struct fixture *fx = error_fixture("buf_error: commit_end_error_recorded_once");
	struct buf *b = dirty_block(fx, 1, 6, 1, 5);

	(void)state;
	assert_int_equal(buf_write_begin(b), 0);
	assert_int_equal(buf_write_end(b, 0), 0);
	assert_int_equal(buf_state(b), BUF_WRITTEN);
	assert_int_equal(buf_commit_end(b, -EIO), 0);
	assert_int_equal(buf_state(b), BUF_DIRTY);
	assert_true(buf_holds(b, 5));
	assert_int_equal(buf_owner_ndirty(fx->fx_cache, 1), 1);
	assert_int_equal(buf_owner_error(fx->fx_cache, 1), -EIO);
	assert_int_equal(buf_owner_error(fx->fx_cache, 1), 0);

	/* modified while Written, then the commit fails: Dirty, one error */
	assert_int_equal(buf_write_begin(b), 0);
	assert_int_equal(buf_write_end(b, 0), 0);
	buf_set_version(b, 6);
	assert_int_equal(buf_state(b), BUF_WRITTEN);
	assert_true(buf_redirtied(b));
	assert_int_equal(buf_commit_end(b, -EIO), 0);
	assert_int_equal(buf_state(b), BUF_DIRTY);
	assert_false(buf_redirtied(b));
	assert_true(buf_holds(b, 6));
	assert_int_equal(buf_owner_error(fx->fx_cache, 1), -EIO);
	assert_int_equal(buf_owner_error(fx->fx_cache, 1), 0);
	buf_put(b);
	fixture_free(fx);
}

/* The buffer whose write failed is discarded (truncate): its error is not. */
static void test_error_outlives_dropped_buffer(void **state)
{
	struct fixture *fx = error_fixture("buf_error: error_outlives_dropped_buffer");
	struct buf *b = dirty_block(fx, 3, 0, 1, 2);

	(void)state;
	assert_int_equal(buf_write_begin(b), 0);
	assert_int_equal(buf_write_end(b, -EIO), 0);
	assert_int_equal(buf_drop(b), 0);
	buf_put(b);
	assert_null(buf_lookup(fx->fx_cache, 3, 0));
	assert_int_equal(buf_owner_ndirty(fx->fx_cache, 3), 0);
	assert_int_equal(buf_flush_owner(fx->fx_cache, 3), -EIO);
	assert_int_equal(buf_flush_owner(fx->fx_cache, 3), 0);
	fixture_free(fx);
}

/* ---- fill errors ------------------------------------------------------------- */

static void test_fill_error_caches_nothing(void **state)
{
	struct fixture *fx = error_fixture("buf_error: fill_error_caches_nothing");
	struct buf_cache_stats st;
	struct buf *b = NULL;

	(void)state;
	fixture_put_block(fx, 1, 9, 4);
	atomic_store(&fx->fx_fill_err, -EIO);
	assert_int_equal(buf_read(fx->fx_cache, 1, 9, &b), -EIO);
	assert_null(buf_lookup(fx->fx_cache, 1, 9));
	assert_null(buf_find_hold(fx->fx_cache, 1, 9));
	buf_cache_stats(fx->fx_cache, &st);
	assert_int_equal(st.bs_in_use, 0);
	assert_int_equal(atomic_load(&fx->fx_fills), 1);

	atomic_store(&fx->fx_fill_err, 0);
	assert_int_equal(buf_read(fx->fx_cache, 1, 9, &b), 0);
	assert_int_equal(buf_state(b), BUF_CLEAN);
	assert_true(buf_holds(b, 4));
	assert_int_equal(atomic_load(&fx->fx_fills), 2);
	buf_put(b);
	fixture_free(fx);
}

/*
 * Events in the order they happened, one char each: points passed (logged
 * by syncpoint callbacks) and what the test's threads log themselves.
 */
static struct {
	pthread_mutex_t el_lock;
	pthread_cond_t el_cond;
	char el_seq[64]; /* protected by el_lock */
	unsigned el_n;	 /* protected by el_lock */
} ev = {.el_lock = PTHREAD_MUTEX_INITIALIZER, .el_cond = PTHREAD_COND_INITIALIZER};

static void ev_reset(void)
{
	pthread_mutex_lock(&ev.el_lock);
	memset(ev.el_seq, 0, sizeof(ev.el_seq));
	ev.el_n = 0;
	pthread_mutex_unlock(&ev.el_lock);
}

static void ev_add(char code)
{
	pthread_mutex_lock(&ev.el_lock);
	if (ev.el_n < sizeof(ev.el_seq) - 1)
		ev.el_seq[ev.el_n++] = code;
	pthread_cond_broadcast(&ev.el_cond);
	pthread_mutex_unlock(&ev.el_lock);
}

static void ev_point_cb(const char *point, void *arg)
{
	(void)point;
	ev_add((char)(uintptr_t)arg);
}

/* Log @code each time @point is passed. */
static void ev_on(const char *point, char code)
{
	syncpoint_callback(point, ev_point_cb, (void *)(uintptr_t)code);
}

/* Wait until @code or @stop is logged; true if @code came and @stop did not. */
static bool ev_wait_for(char code, char stop)
{
	bool ok;

	pthread_mutex_lock(&ev.el_lock);
	while (!strchr(ev.el_seq, code) && !strchr(ev.el_seq, stop))
		pthread_cond_wait(&ev.el_cond, &ev.el_lock);
	ok = strchr(ev.el_seq, code) && !strchr(ev.el_seq, stop);
	pthread_mutex_unlock(&ev.el_lock);
	return ok;
}

/* buf_read of one block in a thread named rd_tag; logs rd_done when back. */
struct reader {
	struct fixture *rd_fx;
	uint64_t rd_owner;
	uint64_t rd_index;
	const char *rd_tag;
	char rd_done;
	struct buf *rd_buf;
	int rd_err;
};

static void *reader_main(void *arg)
{
	struct reader *r = arg;

	syncpoint_thread_name(r->rd_tag);
	r->rd_err = buf_read(r->rd_fx->fx_cache, r->rd_owner, r->rd_index, &r->rd_buf);
	ev_add(r->rd_done);
	return NULL;
}

/*
 * F fills the block and is held before its fill; W asks for the same block
 * and sleeps on it. The fill fails: both get the error, from one fill.
 */
static void test_fill_error_reaches_waiter(void **state)
{
	static struct reader f, w;
	struct buf_cache_stats st;
	struct fixture *fx;
	struct buf *b = NULL;
	pthread_t tf, tw;
	bool w_waited;

	(void)state;
	test_needs_syncpoints();
	fx = error_fixture("buf_error: fill_error_reaches_waiter");
	fixture_put_block(fx, 1, 7, 4);
	f = (struct reader){
	    .rd_fx = fx, .rd_owner = 1, .rd_index = 7, .rd_tag = "F", .rd_done = 'f'};
	w = (struct reader){
	    .rd_fx = fx, .rd_owner = 1, .rd_index = 7, .rd_tag = "W", .rd_done = 'x'};
	ev_reset();
	ev_on("buf.wait_locked@W", 'w');
	syncpoint_order("test.release_fill", "buf.read.fill@F");

	test_thread_start(&tf, reader_main, &f);
	syncpoint_wait_arrived("buf.read.fill@F", 1);
	test_thread_start(&tw, reader_main, &w);
	w_waited = ev_wait_for('w', 'x'); /* W sleeps on the buffer F fills */
	atomic_store(&fx->fx_fill_err, -EIO);
	syncpoint_hit("test.release_fill");
	test_thread_join(tf);
	test_thread_join(tw);

	assert_true(w_waited);
	assert_int_equal(f.rd_err, -EIO);
	assert_int_equal(w.rd_err, -EIO);
	assert_int_equal(atomic_load(&fx->fx_fills), 1);
	buf_cache_stats(fx->fx_cache, &st);
	assert_int_equal(st.bs_fills, 1);
	assert_int_equal(st.bs_in_use, 0);
	assert_null(buf_lookup(fx->fx_cache, 1, 7));

	atomic_store(&fx->fx_fill_err, 0);
	assert_int_equal(buf_read(fx->fx_cache, 1, 7, &b), 0);
	assert_true(buf_holds(b, 4));
	buf_put(b);
	fixture_free(fx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_write_error_keeps_buffer_dirty),
	    cmocka_unit_test(test_commit_error_keeps_buffer_dirty),
	    cmocka_unit_test(test_errors_are_per_owner),
	    cmocka_unit_test(test_block_error_fails_only_that_buffer),
	    cmocka_unit_test(test_write_end_error_recorded_once),
	    cmocka_unit_test(test_commit_end_error_recorded_once),
	    cmocka_unit_test(test_error_outlives_dropped_buffer),
	    cmocka_unit_test(test_fill_error_caches_nothing),
	    cmocka_unit_test(test_fill_error_reaches_waiter),
	};
	return TEST_RUN("buf_error", tests);
}

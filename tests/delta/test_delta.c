/*
 * test_delta.c - the delta pipeline and the buffer fork (seed 001),
 * forced at named interleaving points.
 *
 * The fixture's commit writes a delta's buffers into an in-memory "disk"
 * that records, per block, its content and the delta that wrote it, so a
 * test sees exactly what each commit carried. Proves: a fork during a
 * commit sends the old content to the disk and the new to the next delta
 * (for a buffer still Dirty, one already Written, and one being copied,
 * which is waited for without waiting for the disk); two forks of one
 * buffer racing make one shadow; a transition waits for the operations
 * in flight and holds new ones back, so each operation lands in one
 * delta; syncs from 8 threads cost one commit; a sync that a transition
 * overtakes before it takes the delta lock asks for no commit of the new,
 * empty delta; a failed commit loses nothing; size and age start a commit
 * by themselves; a reservation that falls short gives up once commits
 * free nothing, and freeing ones that fall short take turns.
 */
#include "harness.h"

#include "bdev/bdev.h"
#include "buf/buf.h"
#include "delta/delta.h"
#include "log/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BS     4096
#define OWNERS 4
#define OWNER0 100
#define BLOCKS 16

struct disk_block {
	uint32_t db_delta; /* 0: never written */
	unsigned char db_data[BS];
};

struct dfix {
	struct buf_cache *f_cache;
	struct delta_sys *f_ds;
	pthread_mutex_t f_lock;
	struct disk_block f_disk[OWNERS][BLOCKS]; /* protected by f_lock */
	_Atomic int f_fail_next;
	_Atomic unsigned f_empty_commits; /* successful commits that wrote nothing */
	unsigned char f_staging[64][BS];  /* commit thread only */
};

static struct disk_block *fix_block(struct dfix *f, struct buf *b)
{
	return &f->f_disk[buf_owner(b) - OWNER0][buf_index(b)];
}

static int fix_fill(void *ctx, struct buf *b, void *data, uint64_t hint)
{
	struct dfix *f = ctx;

	(void)hint;
	pthread_mutex_lock(&f->f_lock);
	memcpy(data, fix_block(f, b)->db_data, BS);
	pthread_mutex_unlock(&f->f_lock);
	return 0;
}

/* Copy one batch into staging as the log builder would, then "flush". */
static int fix_commit_batch(struct dfix *f, uint32_t d, struct buf **batch, unsigned n, int fail)
{
	for (unsigned i = 0; i < n; i++) {
		assert_int_equal(buf_write_begin(batch[i]), 0);
		SYNC_POINT("test.commit.copy");
		memcpy(f->f_staging[i], buf_data(batch[i]), BS);
		assert_int_equal(buf_write_end(batch[i], 0), 0);
	}
	SYNC_POINT("test.commit.flush");
	pthread_mutex_lock(&f->f_lock);
	for (unsigned i = 0; i < n && !fail; i++) {
		struct disk_block *db = fix_block(f, batch[i]);
		memcpy(db->db_data, f->f_staging[i], BS);
		db->db_delta = d;
	}
	pthread_mutex_unlock(&f->f_lock);
	for (unsigned i = 0; i < n; i++) {
		buf_commit_end(batch[i], fail);
		buf_put(batch[i]);
	}
	return fail;
}

static int fix_do_commit(void *ctx, uint32_t d, uint64_t *consumed)
{
	struct dfix *f = ctx;
	int fail = atomic_exchange(&f->f_fail_next, 0);
	struct buf *batch[64];
	unsigned n;

	*consumed = 0;
	while ((n = buf_delta_take(f->f_cache, d, batch, ARRAY_SIZE(batch)))) {
		*consumed += n;
		if (fix_commit_batch(f, d, batch, n, fail)) {
			buf_delta_requeue(f->f_cache, d, d + 1);
			return fail;
		}
	}
	if (!*consumed)
		atomic_fetch_add(&f->f_empty_commits, 1);
	return 0;
}

static const struct buf_ops fix_buf_ops = {.bo_fill = fix_fill};
static const struct delta_ops fix_delta_ops = {.do_commit = fix_do_commit};

static struct dfix *fix_new(uint32_t max_dirty, uint32_t max_age_ms)
{
	struct dfix *f = calloc(1, sizeof(*f));
	struct buf_cache_config bc = {BS, 256, &fix_buf_ops, NULL};
	struct delta_config dc = {0};

	assert_non_null(f);
	pthread_mutex_init(&f->f_lock, NULL);
	bc.bcc_ctx = f;
	assert_int_equal(buf_cache_create(&bc, &f->f_cache), 0);
	dc.dc_cache = f->f_cache;
	dc.dc_ops = &fix_delta_ops;
	dc.dc_ctx = f;
	dc.dc_first_delta = 1;
	dc.dc_max_dirty = max_dirty ? max_dirty : 100000;
	dc.dc_max_age_ms = max_age_ms ? max_age_ms : 3600 * 1000;
	assert_int_equal(delta_sys_create(&dc, &f->f_ds), 0);
	return f;
}

static void fix_free(struct dfix *f)
{
	assert_int_equal(delta_sys_destroy(f->f_ds), 0);
	buf_cache_destroy(f->f_cache);
	pthread_mutex_destroy(&f->f_lock);
	free(f);
}

/* Write @val into bytes [from, to) of block (owner, index) inside @op. */
static void fix_write_in(struct dfix *f, struct delta_op *op, uint64_t owner, uint64_t index,
			 int val, size_t from, size_t to)
{
	struct buf *b = NULL;

	assert_int_equal(buf_read(f->f_cache, owner, index, &b), 0);
	assert_int_equal(buf_modify_begin(b, op->dop_delta), 0);
	SYNC_POINT("test.modifying");
	memset((char *)buf_data(b) + from, val, to - from);
	buf_modify_end(b);
	buf_put(b);
}

static void fix_write(struct dfix *f, uint64_t owner, uint64_t index, int val)
{
	struct delta_op op;

	assert_int_equal(delta_op_begin(f->f_ds, 0, 0, &op), 0);
	fix_write_in(f, &op, owner, index, val, 0, BS);
	delta_op_end(f->f_ds, &op);
}

/* The disk holds @val everywhere in (owner, index), written by @delta. */
static void assert_disk(struct dfix *f, uint64_t owner, uint64_t index, int val, uint32_t delta)
{
	struct disk_block *db = &f->f_disk[owner - OWNER0][index];

	pthread_mutex_lock(&f->f_lock);
	assert_int_equal(db->db_delta, delta);
	for (int i = 0; i < BS; i++)
		if (db->db_data[i] != (unsigned char)val)
			fail_msg("block (%lu, %lu) byte %d is %d, want %d", (unsigned long)owner,
				 (unsigned long)index, i, db->db_data[i], val);
	pthread_mutex_unlock(&f->f_lock);
}

struct syncer {
	struct dfix *s_fx;
	char s_tag[8];
	int s_err;
};

static void *syncer_main(void *arg)
{
	struct syncer *s = arg;

	if (s->s_tag[0])
		syncpoint_thread_name(s->s_tag);
	s->s_err = delta_sync(s->s_fx->f_ds);
	return NULL;
}

static void start_sync(struct syncer *s, struct dfix *f, pthread_t *t)
{
	*s = (struct syncer){.s_fx = f};
	test_thread_start(t, syncer_main, s);
}

/* ---- forks ------------------------------------------------------------- */

static void test_fork_of_dirty_buffer_during_commit(void **state)
{
	struct dfix *f = fix_new(0, 0);
	struct syncer s;
	pthread_t t;

	(void)state;
	test_needs_syncpoints();
	test_watchdog("fork of dirty buffer", 30);
	syncpoint_order("test.release_commit", "delta.commit.begin");
	fix_write(f, OWNER0, 3, 0x11);
	start_sync(&s, f, &t);
	syncpoint_wait_arrived("delta.commit.begin", 1); /* delta 1 closed, 2 open */
	fix_write(f, OWNER0, 3, 0x22);			 /* forks the buffer */
	assert_int_equal(buf_forks(f->f_cache), 1);
	syncpoint_hit("test.release_commit");
	test_thread_join(t);
	assert_int_equal(s.s_err, 0);
	assert_disk(f, OWNER0, 3, 0x11, 1); /* the old content, unchanged */
	assert_int_equal(delta_sync(f->f_ds), 0);
	assert_disk(f, OWNER0, 3, 0x22, 2); /* the new, in the next delta */
	fix_free(f);
}

static void test_written_buffer_moves_without_copy(void **state)
{
	struct dfix *f = fix_new(0, 0);
	struct syncer s;
	struct buf *b;
	pthread_t t;

	(void)state;
	test_needs_syncpoints();
	test_watchdog("written buffer", 30);
	syncpoint_order("test.release_flush", "test.commit.flush");
	fix_write(f, OWNER0, 1, 0x11);
	start_sync(&s, f, &t);
	syncpoint_wait_arrived("test.commit.flush", 1); /* copied: Written */
	fix_write(f, OWNER0, 1, 0x22);
	assert_int_equal(buf_forks(f->f_cache), 0); /* the log has its copy */
	b = buf_lookup(f->f_cache, OWNER0, 1);
	assert_int_equal(buf_state(b), BUF_WRITTEN);
	assert_true(buf_redirtied(b));
	assert_int_equal(buf_delta(b), 2);
	syncpoint_hit("test.release_flush");
	test_thread_join(t);
	assert_int_equal(buf_state(b), BUF_DIRTY); /* dirty in delta 2 */
	buf_put(b);
	assert_disk(f, OWNER0, 1, 0x11, 1);
	assert_int_equal(delta_sync(f->f_ds), 0);
	assert_disk(f, OWNER0, 1, 0x22, 2);
	fix_free(f);
}

struct writer {
	struct dfix *w_fx;
	const char *w_tag;
	uint64_t w_index;
	int w_val;
	size_t w_from, w_to;
	uint32_t w_delta;
};

static void *writer_main(void *arg)
{
	struct writer *w = arg;
	struct delta_op op;

	syncpoint_thread_name(w->w_tag);
	assert_int_equal(delta_op_begin(w->w_fx->f_ds, 0, 0, &op), 0);
	w->w_delta = op.dop_delta;
	fix_write_in(w->w_fx, &op, OWNER0, w->w_index, w->w_val, w->w_from, w->w_to);
	delta_op_end(w->w_fx->f_ds, &op);
	SYNC_POINT("test.writer.done");
	return NULL;
}

/*
 * A writer meeting a buffer whose data is being copied into the log waits
 * for the copy, never for the disk: the commit is held before its flush
 * until the writer is done.
 */
static void test_writer_waits_for_copy_not_disk(void **state)
{
	struct dfix *f = fix_new(0, 0);
	struct writer w = {.w_fx = f, .w_tag = "F", .w_index = 2, .w_val = 0x22, .w_to = BS};
	struct syncer s;
	pthread_t ts, tw;

	(void)state;
	test_needs_syncpoints();
	test_watchdog("writer waits for copy", 30);
	syncpoint_order("test.release_copy", "test.commit.copy");
	syncpoint_order("test.writer.done@F", "test.commit.flush");
	fix_write(f, OWNER0, 2, 0x11);
	start_sync(&s, f, &ts);
	syncpoint_wait_arrived("test.commit.copy", 1); /* Writing */
	test_thread_start(&tw, writer_main, &w);
	syncpoint_wait_arrived("buf.wait_locked@F", 1); /* asleep on Writing */
	syncpoint_hit("test.release_copy");
	test_thread_join(tw); /* done while the flush is still held */
	test_thread_join(ts);
	assert_int_equal(s.s_err, 0);
	assert_disk(f, OWNER0, 2, 0x11, 1);
	assert_int_equal(delta_sync(f->f_ds), 0);
	assert_disk(f, OWNER0, 2, 0x22, 2);
	fix_free(f);
}

/* Two writers of delta 2 fork one buffer of delta 1: one shadow, both writes land. */
static void run_two_forks(const char *first, const char *second)
{
	struct dfix *f = fix_new(0, 0);
	struct writer a = {f, "A", 5, 0xaa, 0, BS / 2, 0}, b = {f, "B", 5, 0xbb, BS / 2, BS, 0};
	char first_mod[64], second_begin[64];
	struct syncer s;
	pthread_t ts, ta, tb;

	syncpoint_reset();
	syncpoint_order("test.release_commit", "delta.commit.begin");
	/* the second writer arrives while the first is inside its modification */
	snprintf(first_mod, sizeof(first_mod), "test.modifying@%s", first);
	snprintf(second_begin, sizeof(second_begin), "buf.modify.begin@%s", second);
	syncpoint_order(first_mod, second_begin);
	fix_write(f, OWNER0, 5, 0x11);
	start_sync(&s, f, &ts);
	syncpoint_wait_arrived("delta.commit.begin", 1);
	test_thread_start(&ta, writer_main, &a);
	test_thread_start(&tb, writer_main, &b);
	test_thread_join(ta);
	test_thread_join(tb);
	assert_int_equal(a.w_delta, 2);
	assert_int_equal(b.w_delta, 2);
	assert_int_equal(buf_forks(f->f_cache), 1);
	syncpoint_hit("test.release_commit");
	test_thread_join(ts);
	assert_disk(f, OWNER0, 5, 0x11, 1);
	assert_int_equal(delta_sync(f->f_ds), 0);
	pthread_mutex_lock(&f->f_lock);
	unsigned char *d = f->f_disk[0][5].db_data;
	assert_int_equal(d[0], 0xaa);
	assert_int_equal(d[BS / 2 - 1], 0xaa);
	assert_int_equal(d[BS / 2], 0xbb);
	assert_int_equal(d[BS - 1], 0xbb);
	pthread_mutex_unlock(&f->f_lock);
	fix_free(f);
}

static void test_two_forks_of_one_buffer_racing(void **state)
{
	(void)state;
	test_needs_syncpoints();
	test_watchdog("two forks racing", 30);
	run_two_forks("A", "B");
	run_two_forks("B", "A");
}

/* ---- transitions and group commit ---------------------------------------- */

struct joiner {
	struct dfix *j_fx;
	uint32_t j_delta;
};

static void *joiner_main(void *arg)
{
	struct joiner *j = arg;
	struct delta_op op;

	syncpoint_thread_name("N");
	assert_int_equal(delta_op_begin(j->j_fx->f_ds, 0, 0, &op), 0);
	j->j_delta = op.dop_delta;
	fix_write_in(j->j_fx, &op, OWNER0 + 1, 0, 0x33, 0, BS);
	delta_op_end(j->j_fx->f_ds, &op);
	return NULL;
}

static void test_transition_waits_for_ops_in_flight(void **state)
{
	struct dfix *f = fix_new(0, 0);
	struct joiner j = {.j_fx = f};
	struct delta_op op;
	struct syncer s;
	pthread_t ts, tj;

	(void)state;
	test_needs_syncpoints();
	test_watchdog("transition in flight", 30);
	syncpoint_enable();
	assert_int_equal(delta_op_begin(f->f_ds, 0, 0, &op), 0);
	fix_write_in(f, &op, OWNER0, 0, 0x11, 0, BS);
	start_sync(&s, f, &ts);
	syncpoint_wait_arrived("delta.transition.wait_locked", 1); /* waits for us */
	test_thread_start(&tj, joiner_main, &j);
	syncpoint_wait_arrived("delta.op.wait_locked@N", 1); /* held back */
	fix_write_in(f, &op, OWNER0, 1, 0x11, 0, BS);	     /* still delta 1 */
	delta_op_end(f->f_ds, &op);
	test_thread_join(ts);
	test_thread_join(tj);
	assert_int_equal(op.dop_delta, 1);
	assert_int_equal(j.j_delta, 2);
	assert_disk(f, OWNER0, 0, 0x11, 1);
	assert_disk(f, OWNER0, 1, 0x11, 1);	       /* the whole operation, in one delta */
	assert_int_equal(f->f_disk[1][0].db_delta, 0); /* the later one is not */
	assert_int_equal(delta_sync(f->f_ds), 0);
	assert_disk(f, OWNER0 + 1, 0, 0x33, 2);
	fix_free(f);
}

#define NSYNC 8

struct op_syncer {
	struct dfix *os_fx;
	char os_tag[8];
	int os_n;
	int os_err;
};

static void *op_syncer_main(void *arg)
{
	struct op_syncer *o = arg;

	syncpoint_thread_name(o->os_tag);
	fix_write(o->os_fx, OWNER0 + (uint64_t)o->os_n / BLOCKS, (uint64_t)o->os_n % BLOCKS,
		  o->os_n + 1);
	o->os_err = delta_sync(o->os_fx->f_ds);
	return NULL;
}

static bool all_syncing(struct op_syncer *o)
{
	char name[64];

	for (int i = 0; i < NSYNC; i++) {
		snprintf(name, sizeof(name), "delta.sync.wait_locked@%s", o[i].os_tag);
		if (!syncpoint_arrived(name))
			return false;
	}
	return true;
}

static void test_eight_syncs_one_commit(void **state)
{
	struct dfix *f = fix_new(0, 0);
	struct op_syncer o[NSYNC];
	struct delta_stats st;
	pthread_t t[NSYNC];
	uint64_t seen = 0;

	(void)state;
	test_needs_syncpoints();
	test_watchdog("eight syncs", 30);
	syncpoint_order("test.all_syncing", "delta.commit.start");
	for (int i = 0; i < NSYNC; i++) {
		o[i] = (struct op_syncer){.os_fx = f, .os_n = i};
		snprintf(o[i].os_tag, sizeof(o[i].os_tag), "S%d", i);
		test_thread_start(&t[i], op_syncer_main, &o[i]);
	}
	while (!all_syncing(o))
		syncpoint_wait_arrived("delta.sync.wait_locked", ++seen);
	syncpoint_hit("test.all_syncing");
	for (int i = 0; i < NSYNC; i++) {
		test_thread_join(t[i]);
		assert_int_equal(o[i].os_err, 0);
		assert_disk(f, OWNER0 + (uint64_t)i / BLOCKS, (uint64_t)i % BLOCKS, i + 1, 1);
	}
	delta_stats(f->f_ds, &st);
	assert_int_equal(st.ds_commits, 1);
	assert_int_equal(st.ds_syncs, NSYNC);
	fix_free(f);
}

/*
 * A sync that entered delta_sync while the open delta (1) was dirty, and
 * that a transition overtakes before it takes ds_lock (another sync
 * commits delta 1 and opens 2), must see the new open delta as it is:
 * empty, nobody joined, nothing to commit. Reading the dirty count before
 * the lock made it ask for a commit of empty delta 2, which nobody had
 * reserved for (a second commit, empty; 'reserved 0' on a volume).
 */
static void test_sync_overtaken_by_transition_commits_no_empty_delta(void **state)
{
	struct dfix *f = fix_new(0, 0);
	struct syncer s = {.s_fx = f, .s_tag = "A"};
	struct delta_stats st;
	pthread_t t;

	(void)state;
	test_needs_syncpoints();
	test_watchdog("sync overtaken by a transition", 30);
	syncpoint_order("test.release_sync", "delta.sync.lock@A");
	fix_write(f, OWNER0, 4, 0x77); /* delta 1 holds a dirty block */
	test_thread_start(&t, syncer_main, &s);
	syncpoint_wait_arrived("delta.sync.lock@A", 1); /* A: in delta_sync, before ds_lock */
	assert_int_equal(delta_sync(f->f_ds), 0);	/* the transition: 1 commits, 2 opens */
	delta_stats(f->f_ds, &st);
	assert_int_equal(st.ds_commits, 1);
	assert_int_equal(st.ds_open, 2);
	syncpoint_hit("test.release_sync");
	test_thread_join(t);
	assert_int_equal(s.s_err, 0);
	delta_stats(f->f_ds, &st);
	assert_int_equal(st.ds_syncs, 2);
	assert_int_equal(atomic_load(&f->f_empty_commits), 0); /* no empty delta committed */
	assert_int_equal(st.ds_commits, 1);		       /* A's sync cost no commit */
	assert_int_equal(st.ds_committed, 1);
	assert_int_equal(st.ds_open, 2);
	assert_disk(f, OWNER0, 4, 0x77, 1);
	fix_free(f);
}

/* ---- errors and triggers --------------------------------------------------- */

static void test_failed_commit_loses_nothing(void **state)
{
	struct dfix *f = fix_new(0, 0);
	struct buf *b;

	(void)state;
	cairn_log_set_level(LOG_ERR - 1); /* the failure below is expected */
	fix_write(f, OWNER0, 7, 0x44);
	atomic_store(&f->f_fail_next, -EIO);
	assert_int_equal(delta_sync(f->f_ds), -EIO);
	assert_int_equal(f->f_disk[0][7].db_delta, 0);
	b = buf_lookup(f->f_cache, OWNER0, 7);
	assert_int_equal(buf_state(b), BUF_DIRTY); /* carried by the open delta */
	assert_int_equal(buf_delta(b), 2);
	buf_put(b);
	assert_int_equal(delta_sync(f->f_ds), 0);
	assert_disk(f, OWNER0, 7, 0x44, 2);
	cairn_log_set_level(LOG_WARN);
	fix_free(f);
}

static void test_full_delta_commits_by_itself(void **state)
{
	struct dfix *f = fix_new(4, 0);
	struct delta_op op;

	(void)state;
	test_needs_syncpoints();
	test_watchdog("size trigger", 30);
	syncpoint_enable();
	assert_int_equal(delta_op_begin(f->f_ds, 0, 0, &op), 0);
	for (uint64_t i = 0; i < 5; i++)
		fix_write_in(f, &op, OWNER0, i, 0x55, 0, BS);
	delta_op_end(f->f_ds, &op);
	syncpoint_wait_passed("delta.commit.end", 1); /* no sync asked */
	for (uint64_t i = 0; i < 5; i++)
		assert_disk(f, OWNER0, i, 0x55, 1);
	fix_free(f);
}

static void test_old_delta_commits_by_itself(void **state)
{
	struct dfix *f;

	(void)state;
	test_needs_syncpoints();
	syncpoint_enable(); /* before the commit thread starts */
	f = fix_new(0, 10);
	test_watchdog("age trigger", 30);
	syncpoint_enable();
	/* the commit thread asleep on an empty delta must notice the first op */
	syncpoint_wait_arrived("delta.thread.idle_locked", 1);
	fix_write(f, OWNER0, 9, 0x66);
	syncpoint_wait_passed("delta.commit.end", 1);
	assert_disk(f, OWNER0, 9, 0x66, 1);
	fix_free(f);
}

static void test_sync_with_nothing_to_do_commits_nothing(void **state)
{
	struct dfix *f = fix_new(0, 0);
	struct delta_stats st;

	(void)state;
	assert_int_equal(delta_sync(f->f_ds), 0);
	delta_stats(f->f_ds, &st);
	assert_int_equal(st.ds_commits, 0);
	fix_write(f, OWNER0, 0, 1);
	assert_int_equal(delta_sync(f->f_ds), 0);
	assert_int_equal(delta_sync(f->f_ds), 0);
	delta_stats(f->f_ds, &st);
	assert_int_equal(st.ds_commits, 1);
	fix_free(f);
}

/*
 * A reservation that falls short forces commits while they free space,
 * and gives up (-ENOSPC) once a few in a row bring no more free space
 * than it has seen. Here every other commit takes a segment's worth of
 * space and the next gives it back, so free space goes down and up
 * forever: counting every rise as progress retried without end (the
 * watchdog fails the test).
 */
struct osc {
	struct log *o_log;
	uint64_t o_amount;
	bool o_held;
	_Atomic unsigned o_commits;
};

static int osc_commit(void *ctx, uint32_t d, uint64_t *consumed)
{
	struct osc *o = ctx;

	(void)d;
	*consumed = 0;
	if (o->o_held)
		log_space_release(o->o_log, o->o_amount);
	else
		assert_int_equal(log_space_reserve(o->o_log, o->o_amount, LOG_RES_FREEING), 0);
	o->o_held = !o->o_held;
	atomic_fetch_add(&o->o_commits, 1);
	return 0;
}

static bool osc_reclaimable(void *ctx)
{
	(void)ctx;
	return true; /* every commit might free something */
}

/* A delta system over a log of 16 segments of 16 blocks, on a RAM device. */
struct space_sys {
	struct bdev *ss_dev;
	struct log *ss_log;
	struct buf_cache *ss_cache;
	struct delta_sys *ss_ds;
};

static void space_sys_new(struct space_sys *s, const struct delta_ops *ops, void *ctx)
{
	struct log_format_opts lo = {.lfo_block_size = BS, .lfo_seg_blocks = 16};
	struct buf_cache_config bc = {BS, 64, &fix_buf_ops, NULL};
	struct delta_config dc;

	assert_int_equal(bdev_open_ram(BS, 16 * 16, &s->ss_dev), 0);
	assert_int_equal(log_format(s->ss_dev, &lo), 0);
	assert_int_equal(log_open(s->ss_dev, &s->ss_log), 0);
	assert_int_equal(buf_cache_create(&bc, &s->ss_cache), 0);
	dc = (struct delta_config){.dc_cache = s->ss_cache,
				   .dc_log = s->ss_log,
				   .dc_ops = ops,
				   .dc_ctx = ctx,
				   .dc_first_delta = 1,
				   .dc_max_dirty = 100000,
				   .dc_max_age_ms = 3600 * 1000};
	assert_int_equal(delta_sys_create(&dc, &s->ss_ds), 0);
}

/* Stop the delta system (it commits what is open), then free the rest;
 * what the log still has reserved then into *@reserved, if not NULL. */
static void space_sys_free(struct space_sys *s, uint64_t *reserved)
{
	struct log_space sp;

	assert_int_equal(delta_sys_destroy(s->ss_ds), 0);
	log_space(s->ss_log, &sp);
	if (reserved)
		*reserved = sp.sp_reserved;
	buf_cache_destroy(s->ss_cache);
	log_close(s->ss_log);
	bdev_close(s->ss_dev);
}

static void test_reserve_gives_up_on_oscillating_space(void **state)
{
	static const struct delta_ops ops = {.do_commit = osc_commit,
					     .do_reclaimable = osc_reclaimable};
	struct space_sys s;
	struct osc o = {0};
	struct log_space sp;
	struct delta_op op;

	(void)state;
	test_watchdog("test_reserve_gives_up_on_oscillating_space", 60);
	space_sys_new(&s, &ops, &o);
	o.o_log = s.ss_log; /* before any commit: only an operation starts one */
	o.o_amount = 16;
	log_space(o.o_log, &sp);
	/* more than is ever free */
	assert_int_equal(delta_op_begin(s.ss_ds, sp.sp_total, 0, &op), -ENOSPC);
	print_message("# %u forced commits before -ENOSPC\n", atomic_load(&o.o_commits));
	assert_true(atomic_load(&o.o_commits) <= 8);
	space_sys_free(&s, NULL);
	test_watchdog_cancel();
}

/*
 * Freeing reservations that fall short take turns (delta.c (6)). Only
 * the kept reserve holds a deletion on a full volume, and it holds one:
 * here what a freeing reservation may take holds R blocks once. The
 * test holds R; B asks for R and falls short, which forces a commit;
 * then D asks for R. The test's operation ends, and the commit releases
 * its R. Without turns D, falling short too, retried with B, and took R
 * first (forced here: B's retry waits until D's reservation was either
 * granted or queued); B had to force another commit, and with more
 * deletions coming it could lose every time and give up with -ENOSPC
 * (seen on a full volume beside a snapshot, test_ns_fill). With turns D
 * waits behind B without trying: B is served first, then D.
 */
struct turns {
	struct delta_sys *t_ds;
	uint64_t t_reserve;
	pthread_mutex_t t_lock;
	pthread_cond_t t_cond;
	bool t_d_waiting;	 /* D fell short, or waits for its turn; t_lock */
	bool t_d_queued;	 /* D waits for its turn; t_lock */
	bool t_d_began;		 /* D's reservation was granted; t_lock */
	unsigned t_served;	 /* reservations granted so far; t_lock */
	unsigned t_b_at, t_d_at; /* in which place B's and D's were; t_lock */
	int t_b_err, t_d_err;
};

static int turns_commit(void *ctx, uint32_t d, uint64_t *consumed)
{
	(void)ctx;
	(void)d;
	*consumed = 0; /* the commit settles the delta's reservations */
	return 0;
}

static void turns_set(struct turns *t, bool *flag)
{
	pthread_mutex_lock(&t->t_lock);
	*flag = true;
	pthread_cond_broadcast(&t->t_cond);
	pthread_mutex_unlock(&t->t_lock);
}

static void turns_wait(struct turns *t, const bool *a, const bool *b)
{
	pthread_mutex_lock(&t->t_lock);
	while (!*a && !*b)
		pthread_cond_wait(&t->t_cond, &t->t_lock);
	pthread_mutex_unlock(&t->t_lock);
}

static void turns_d_short(const char *point, void *arg)
{
	struct turns *t = arg;

	(void)point;
	turns_set(t, &t->t_d_waiting);
}

static void turns_d_queued(const char *point, void *arg)
{
	struct turns *t = arg;

	(void)point; /* under ds_lock: t_lock is a leaf here */
	turns_set(t, &t->t_d_queued);
	turns_set(t, &t->t_d_waiting);
}

/* B is about to retry: not before D's reservation was granted or queued. */
static void turns_b_retry(const char *point, void *arg)
{
	struct turns *t = arg;

	(void)point;
	turns_wait(t, &t->t_d_began, &t->t_d_queued);
}

/* Reserve R (freeing), note in which place it was granted, and end. */
static void turns_reserve(struct turns *t, int *err, unsigned *at, bool *began)
{
	struct delta_op op;

	*err = delta_op_begin(t->t_ds, t->t_reserve, LOG_RES_FREEING, &op);
	pthread_mutex_lock(&t->t_lock);
	*at = ++t->t_served;
	pthread_mutex_unlock(&t->t_lock);
	if (began)
		turns_set(t, began);
	if (!*err)
		delta_op_end(t->t_ds, &op);
}

static void *turns_b_main(void *arg)
{
	struct turns *t = arg;

	syncpoint_thread_name("B");
	turns_reserve(t, &t->t_b_err, &t->t_b_at, NULL);
	return NULL;
}

static void *turns_d_main(void *arg)
{
	struct turns *t = arg;

	syncpoint_thread_name("D");
	turns_reserve(t, &t->t_d_err, &t->t_d_at, &t->t_d_began);
	return NULL;
}

static void test_freeing_reservations_take_turns(void **state)
{
	static const struct delta_ops ops = {.do_commit = turns_commit,
					     .do_reclaimable = osc_reclaimable};
	struct turns t = {.t_lock = PTHREAD_MUTEX_INITIALIZER, .t_cond = PTHREAD_COND_INITIALIZER};
	uint64_t reserved;
	struct space_sys s;
	struct delta_op held;
	struct log_space sp;
	pthread_t b, d;

	(void)state;
	test_needs_syncpoints();
	test_watchdog("test_freeing_reservations_take_turns", 60);
	space_sys_new(&s, &ops, NULL);
	t.t_ds = s.ss_ds;
	log_space(s.ss_log, &sp);
	t.t_reserve = sp.sp_total - sp.sp_written - sp.sp_reserved; /* a freeing one fits once */
	syncpoint_reset();
	syncpoint_enable();
	syncpoint_callback("delta.reserve.short@D", turns_d_short, &t);
	syncpoint_callback("delta.reserve.queued_locked@D", turns_d_queued, &t);
	syncpoint_callback("delta.reserve.retry@B", turns_b_retry, &t);
	assert_int_equal(delta_op_begin(t.t_ds, t.t_reserve, LOG_RES_FREEING, &held), 0);
	test_thread_start(&b, turns_b_main, &t);
	syncpoint_wait_arrived("delta.reserve.short@B", 1);
	test_thread_start(&d, turns_d_main, &t);
	turns_wait(&t, &t.t_d_waiting, &t.t_d_waiting);
	delta_op_end(t.t_ds, &held); /* the commit B forced can go, and release R */
	test_thread_join(b);
	test_thread_join(d);
	print_message("# B: %d, granted %u; D: %d, granted %u\n", t.t_b_err, t.t_b_at, t.t_d_err,
		      t.t_d_at);
	assert_int_equal(t.t_b_err, 0);
	assert_int_equal(t.t_d_err, 0);
	assert_true(t.t_b_at < t.t_d_at); /* B fell short first: served first */
	syncpoint_reset();
	space_sys_free(&s, &reserved);
	assert_int_equal(reserved, 0);
	test_watchdog_cancel();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_fork_of_dirty_buffer_during_commit),
	    cmocka_unit_test(test_written_buffer_moves_without_copy),
	    cmocka_unit_test(test_writer_waits_for_copy_not_disk),
	    cmocka_unit_test(test_two_forks_of_one_buffer_racing),
	    cmocka_unit_test(test_transition_waits_for_ops_in_flight),
	    cmocka_unit_test(test_eight_syncs_one_commit),
	    cmocka_unit_test(test_sync_overtaken_by_transition_commits_no_empty_delta),
	    cmocka_unit_test(test_failed_commit_loses_nothing),
	    cmocka_unit_test(test_full_delta_commits_by_itself),
	    cmocka_unit_test(test_old_delta_commits_by_itself),
	    cmocka_unit_test(test_sync_with_nothing_to_do_commits_nothing),
	    cmocka_unit_test(test_reserve_gives_up_on_oscillating_space),
	    cmocka_unit_test(test_freeing_reservations_take_turns),
	};
	return TEST_RUN("delta", tests);
}

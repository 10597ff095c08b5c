/*
 * test_vol_move.c - the cleaner's moves against the front end and
 * against a failed commit.
 *
 * The cleaner moves a block by its translation entry alone: the same
 * number at a new address, no map block above it rewritten (clean.c,
 * commit.c). Each test builds a volume whose first segment holds only
 * the blocks of one owner (its data blocks and, with two of them, its
 * level-1 map block), every other block there dead, and makes the next
 * commit clean (v_clean_urgent): greedy, it takes that segment first.
 * Then it forces one interleaving with the interleaving points, no
 * sleeps, and proves:
 *
 *   - a punch recorded in the next delta between the cleaner's first
 *     look at a block and its read (vol.clean.read) does not reach the
 *     committing delta: the durable state of that delta still holds the
 *     block, and the next one reads zeros;
 *   - a moved block the front end writes in the next delta after the
 *     commit took it (vol.commit.taken) is moved as its fork's shadow:
 *     the committing delta has the old content under the old number at
 *     a new address, the next one the new content under a new number;
 *   - a commit that fails, before it reached the blocks the cleaner
 *     dirtied to move (a read error) or after writing them (a failed
 *     flush), leaves the moves to the next one: the blocks keep their
 *     numbers, the data is intact, the counts agree with a recount, and
 *     nothing consumes more than was reserved;
 *   - a carried move whose block the front end changed before the next
 *     commit (a punch; a write; a truncate, then a write of the same
 *     content; a write that forked the block before the failure) is a
 *     new version: the punched block is a hole counted nowhere, the
 *     written one has a new number, the truncated one is named again;
 *   - a map block the commit changed already (a punch of one of its
 *     entries) is written as a new version, with a new number, not moved
 *     with its new content under the old one.
 */
#include "harness.h"
#include "vol_fixture.h"

#include "vol/vol_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NBLOCKS	 (64 * VF_SEG + 64) /* a little over 64 segments: 16 MiB */
#define OWNER	 20		    /* its blocks are the ones moved */
#define OTHER	 21		    /* a punch of a hole here: the cleaning delta's change */
#define GARBAGE	 22		    /* fills the rest of the first segment, then goes */
#define GARBAGE2 23		    /* fills segments of their own, then goes */

/* Where block (owner, index) is now: its number and its address. */
struct mv_where {
	uint64_t w_entry;
	uint64_t w_pblk;
};

static struct mv_where mv_where(struct vol *v, uint64_t owner, uint64_t index)
{
	struct mv_where w;
	uint64_t path;

	assert_int_equal(vol_resolve_entry(v, owner, index, &w.w_entry, &w.w_pblk, &path), 0);
	assert_true(w.w_entry && w.w_pblk);
	return w;
}

/* OWNER's level-1 map block (it has one once it holds two blocks). */
static uint64_t mv_map_block(struct vol *v)
{
	return bmap_node_index(&v->v_map, 1, 0);
}

/*
 * A volume whose first segment holds only OWNER's blocks 0..@n-1 (@n: 1
 * or 2; with 2, its map block too), version 1, all cached and clean,
 * opened with @oo (greedy cleaning).
 */
static struct vol *mv_setup_opts(struct bdev **d, unsigned n, const struct vol_open_opts *oo)
{
	struct vol *v;
	uint64_t seg;
	uint32_t live;

	*d = vf_mkfs(NBLOCKS);
	v = vf_open_opts(*d, oo);
	for (uint64_t i = 0; i < n; i++)
		vf_write(v, OWNER, i, 1);
	assert_int_equal(vol_sync(v), 0);
	for (uint64_t i = 0; i < 2 * VF_SEG; i++) /* the rest of the segment, and more */
		vf_write(v, GARBAGE, i, 1);
	assert_int_equal(vol_sync(v), 0);
	for (uint64_t i = 0; i < 2 * VF_SEG; i++)
		vf_punch(v, GARBAGE, i);
	assert_int_equal(vol_sync(v), 0);
	/* the segment holds OWNER's blocks alone: the cleaner reads nothing
	 * else there (the test waits for its first read) */
	seg = vol_seg_of(v, mv_where(v, OWNER, 0).w_pblk);
	assert_int_equal(seg, 0);
	cmutex_lock(&v->v_usage.vu_lock);
	live = v->v_usage.vu_live[seg];
	cmutex_unlock(&v->v_usage.vu_lock);
	assert_int_equal(live, n == 1 ? 1 : n + 1);
	for (uint64_t i = 0; i < n; i++)
		assert_int_equal(vol_seg_of(v, mv_where(v, OWNER, i).w_pblk), seg);
	if (n > 1)
		assert_int_equal(vol_seg_of(v, mv_where(v, OWNER, mv_map_block(v)).w_pblk), seg);
	return v;
}

static struct vol *mv_setup(struct bdev **d, unsigned n)
{
	struct vol_open_opts oo = {.voo_clean_policy = VOL_CLEAN_GREEDY};

	return mv_setup_opts(d, n, &oo);
}

/*
 * The delta open now (D) is to clean: it punches a hole (a change that
 * dirties no data buffer, so that the commit's only data buffers are the
 * cleaner's) and the cleaner runs in its commit whatever the watermarks
 * say.
 */
static void mv_clean_next(struct vol *v)
{
	vf_punch(v, OTHER, 0);
	atomic_store(&v->v_clean_urgent, true);
}

static void *sync_main(void *arg)
{
	return (void *)(intptr_t)vol_sync(arg);
}

/* Warnings logged while a test watches (errors are the failures it causes). */
static _Atomic unsigned mv_warnings;

static void mv_log_sink(enum log_level level, const char *line, void *arg)
{
	(void)arg;
	print_message("# logged: %s\n", line);
	if (level == LOG_WARN)
		mv_warnings++;
}

static void mv_log_watch(void)
{
	mv_warnings = 0;
	cairn_log_set_sink(mv_log_sink, NULL);
}

static void mv_log_unwatch(void)
{
	cairn_log_set_sink(NULL, NULL);
}

/* ---- a recent checkpoint across a move ------------------------------------- */

/*
 * A recent checkpoint reads through its own translation. Once the
 * cleaner moved OWNER's blocks and map block by their entries, the
 * owner table block above them is the state's still, at the same
 * address, while for the checkpoint before the move they lie in the
 * first segment. The count of the recent checkpoints (the open's walk,
 * vol_count_durable with vcn_recent) skips that subtree, the state's,
 * and must still find the first segment the checkpoint's: else that
 * segment could go back to the log while the checkpoint is called
 * readable. The setup's checkpoints, whose owner tables differ, are
 * no longer readable (no protection period then): the one before the
 * move is the only one walked.
 */
static void test_recent_checkpoint_across_a_move(void **state)
{
	/* then the protection period holds the emptied segment: the
	 * checkpoint before the move stays readable */
	struct vol_open_opts oo = {.voo_clean_policy = VOL_CLEAN_GREEDY, .voo_protect_s = 3600};
	struct bdev *d, *copy;
	struct vol *v = mv_setup(&d, 2);
	uint64_t nseg = v->v_geo.lg_nsegments, words = (nseg + 63) / 64;
	uint64_t seg = vol_seg_of(v, mv_where(v, OWNER, 0).w_pblk), sr_blk;
	struct vol_count cn = {.vcn_live = calloc(nseg, sizeof(uint32_t)),
			       .vcn_pinned = calloc(nseg, sizeof(uint32_t)),
			       .vcn_snap = calloc(words, sizeof(uint64_t)),
			       .vcn_recent = calloc(words, sizeof(uint64_t))};
	uint64_t garbage = 2 * VF_SEG;
	struct log_space sp;
	struct vol_sroot sr;

	(void)state;
	assert_true(cn.vcn_live && cn.vcn_pinned && cn.vcn_snap && cn.vcn_recent);
	/* segments emptied in delta P go back to the log: from P on, the
	 * checkpoints are readable, and their owner tables are the state's,
	 * written (with P's) in the segment the log writes until the move,
	 * which is no victim then */
	for (uint64_t i = 0; i < 2 * VF_SEG; i++)
		vf_write(v, GARBAGE2, i, 1);
	assert_int_equal(vol_sync(v), 0);
	for (log_space(v->v_log, &sp); sp.sp_head_room < VF_SEG / 2; log_space(v->v_log, &sp)) {
		vf_write(v, GARBAGE2, garbage++, 1);
		assert_int_equal(vol_sync(v), 0);
	}
	for (uint64_t i = 0; i < garbage; i++)
		vf_punch(v, GARBAGE2, i);
	assert_int_equal(vol_sync(v), 0);
	for (unsigned k = 0; k < 2; k++) { /* the two steps of a release */
		vf_punch(v, OTHER, 0);
		assert_int_equal(vol_sync(v), 0);
	}
	assert_int_equal(bdev_emu_open_copy(d, &copy), 0);
	assert_int_equal(vol_close(v), 0);
	v = vf_open_opts(copy, &oo);
	mv_clean_next(v);
	assert_int_equal(vol_sync(v), 0);
	assert_true(vol_seg_of(v, mv_where(v, OWNER, 0).w_pblk) != seg);
	assert_true(vol_seg_of(v, mv_where(v, OWNER, mv_map_block(v)).w_pblk) != seg);
	vol_sr_get(v, &sr, &sr_blk);
	assert_true(sr.sr_readable_from < sr.sr_delta); /* the one before is readable */
	assert_int_equal(vol_count_durable(v, sr_blk, &sr, &cn), 0);
	assert_true(cn.vcn_recent_from < sr.sr_delta);
	assert_true(cn.vcn_recent[seg / 64] >> (seg % 64) & 1);
	assert_int_equal(cn.vcn_live[seg], 0); /* the state has nothing there */
	free(cn.vcn_live);
	free(cn.vcn_pinned);
	free(cn.vcn_snap);
	free(cn.vcn_recent);
	free(cn.vcn_snaps);
	vf_check(v);
	assert_int_equal(vol_close(v), 0);
}

/* ---- a punch between the cleaner's look and its read ---------------------- */

/*
 * The cleaner finds block 0 current (no punch pending) and stops before
 * reading it (vol.clean.read); the next delta punches it; the read,
 * a fill since the block is not cached, then sees the punch and reads
 * zeros. Those zeros must not be moved into the committing delta: its
 * durable state still holds version 1, and only the next commit (the
 * punch's) makes the block a hole.
 */
static void test_punch_between_look_and_read(void **state)
{
	struct bdev *d;
	struct vol *v = mv_setup(&d, 1), *img;
	uint32_t committed;
	pthread_t th;

	(void)state;
	test_needs_syncpoints();
	test_watchdog("test_punch_between_look_and_read", 30);
	buf_drop_owner(v->v_cache, OWNER, 0); /* the cleaner's read fills it */
	committed = vol_committed_delta(v);
	mv_clean_next(v); /* delta D */
	syncpoint_enable();
	syncpoint_order("test.punched", "vol.clean.read");
	test_thread_start(&th, sync_main, v);
	syncpoint_wait_arrived("vol.clean.read", 1); /* block 0 found current */
	vf_punch(v, OWNER, 0);			     /* D+1 */
	SYNC_POINT("test.punched");
	assert_int_equal((intptr_t)test_thread_join(th), 0);
	assert_int_equal(vol_committed_delta(v), committed + 1);
	assert_int_equal(syncpoint_passed("vol.clean.read"), 1); /* it read only block 0 */
	vf_expect(v, OWNER, 0, 0);
	img = vf_reopen_copy(d, 0); /* D's state: the punch is not in it */
	vf_expect(img, OWNER, 0, 1);
	vf_check(img);
	assert_int_equal(vol_close(img), 0);
	vf_check(v); /* D+1: the punch */
	img = vf_reopen_copy(d, 0);
	vf_expect(img, OWNER, 0, 0);
	assert_int_equal(vol_close(img), 0);
	assert_int_equal(vol_close(v), 0);
	test_watchdog_cancel();
}

/* ---- a moved block forked after the commit took it ----------------------- */

/*
 * The cleaner dirties block 0 in D to move it; the commit takes its
 * buffer (vol.commit.taken), and before it writes it the front end
 * writes version 2 in D+1, forking it: the buffer is D+1's, and the
 * fork's shadow, taken later, holds D's content. The shadow is the
 * move: D's state has version 1 under the same number at a new address
 * (a new number would mean it was rewritten with its path, which the
 * cleaner did not reserve); D+1 writes version 2 as a new version.
 */
static void test_move_forked_after_taken(void **state)
{
	struct bdev *d;
	struct vol *v = mv_setup(&d, 1), *img;
	struct mv_where before, after;
	uint32_t committed;
	pthread_t th;

	(void)state;
	test_needs_syncpoints();
	test_watchdog("test_move_forked_after_taken", 30);
	before = mv_where(v, OWNER, 0);
	committed = vol_committed_delta(v);
	mv_clean_next(v); /* delta D */
	syncpoint_enable();
	syncpoint_order("test.forked", "vol.commit.taken");
	test_thread_start(&th, sync_main, v);
	syncpoint_wait_arrived("vol.commit.taken", 1); /* block 0, the only data buffer */
	vf_write(v, OWNER, 0, 2);		       /* D+1 forks it */
	SYNC_POINT("test.forked");
	assert_int_equal((intptr_t)test_thread_join(th), 0);
	assert_int_equal(vol_committed_delta(v), committed + 1);
	assert_true(buf_forks(v->v_cache) >= 1);
	after = mv_where(v, OWNER, 0); /* D's state (D+1's write is not committed) */
	assert_int_equal(after.w_entry, before.w_entry); /* moved, not rewritten */
	assert_int_not_equal(after.w_pblk, before.w_pblk);
	assert_int_not_equal(vol_seg_of(v, after.w_pblk), 0);
	vf_expect(v, OWNER, 0, 2);
	img = vf_reopen_copy(d, 0);
	vf_expect(img, OWNER, 0, 1);
	vf_check(img);
	assert_int_equal(vol_close(img), 0);
	vf_check(v); /* D+1 */
	after = mv_where(v, OWNER, 0);
	assert_int_not_equal(after.w_entry, before.w_entry); /* a new version, a new number */
	img = vf_reopen_copy(d, 0);
	vf_expect(img, OWNER, 0, 2);
	assert_int_equal(vol_close(img), 0);
	assert_int_equal(vol_close(v), 0);
	test_watchdog_cancel();
}

/* ---- a failed commit's moves ---------------------------------------------- */

#define COLD 23 /* written in the failing delta; its map block is not cached */

/*
 * A cold owner: two blocks (so a map block), written and synced, then
 * its map block dropped from the cache. Returns that block's address.
 */
static uint64_t mv_cold_owner(struct vol *v)
{
	uint64_t map;

	vf_write(v, COLD, 0, 1);
	vf_write(v, COLD, 1, 1);
	assert_int_equal(vol_sync(v), 0);
	map = mv_where(v, COLD, mv_map_block(v)).w_pblk;
	buf_drop_owner(v->v_cache, COLD, VOL_META_BIT);
	return map;
}

/* How D's cleaning commit fails (mv_fail_cleaning_commit). */
enum mv_fail {
	MV_FAIL_READ,  /* before its moves: a read in the data step */
	MV_FAIL_FLUSH, /* after writing them: the log's flush */
	MV_NFAIL
};

/* vol.commit.finish: every block is in the log, which is to be flushed. */
static void mv_fail_flush(const char *point, void *arg)
{
	(void)point;
	bdev_emu_fail_op(arg, BDEV_EMU_FLUSH, 1, 1, -EIO);
}

/*
 * Delta D writes COLD's block 0 and cleans: the cleaner moves OWNER's
 * blocks (dirtied after COLD's, so taken after it). MV_FAIL_READ: the
 * data step links COLD's block, reads its map block, and that read
 * fails: the commit fails before it reached the moves. MV_FAIL_FLUSH:
 * the commit writes everything, the moves included, and the flush that
 * would make it durable fails. Either way the moves carry to D+1.
 */
static void mv_fail_cleaning_commit(struct vol *v, struct bdev *d, uint64_t cold_map,
				    enum mv_fail how)
{
	uint32_t committed = vol_committed_delta(v);
	struct vol_usage_stats us;

	vf_write(v, COLD, 0, 2);
	atomic_store(&v->v_clean_urgent, true);
	if (how == MV_FAIL_READ) {
		bdev_emu_fail_block(d, BDEV_EMU_READ, cold_map, 1, -EIO);
	} else {
		syncpoint_enable();
		syncpoint_callback("vol.commit.finish", mv_fail_flush, d);
	}
	assert_int_equal(vol_sync(v), -EIO);
	syncpoint_reset();
	bdev_emu_clear_faults(d);
	assert_int_equal(vol_committed_delta(v), committed);
	vol_usage(v, &us);
	assert_true(us.vus_moved >= 3); /* the cleaner dirtied OWNER's blocks to move */
}

/* Run @fn for each way to fail (the flush needs interleaving points). */
static void mv_each_failure(void (*fn)(enum mv_fail how))
{
	for (int how = 0; how < MV_NFAIL; how++) {
		if (how == MV_FAIL_FLUSH && !SYNCPOINTS_BUILT) {
			print_message("# skipped the failed flush: needs interleaving points\n");
			continue;
		}
		fn((enum mv_fail)how);
	}
}

/*
 * D's commit is to move OWNER's two blocks and its map block, and fails,
 * before it reached them or after writing them: they come back dirty in
 * D+1, still moves. D+1's commit writes them under their numbers at new
 * addresses (rewritten with their paths, they would take new numbers,
 * and cost blocks nobody reserved), with the data intact; nothing
 * consumed more than it reserved, the reservations all came back,
 * nothing was logged but the failure, and the counts agree with a
 * recount.
 */
static void mv_carries_moves(enum mv_fail how)
{
	struct bdev *d;
	struct vol *v = mv_setup(&d, 2), *img;
	struct mv_where before[3], after;
	uint64_t index[3], cold_map;
	struct log_space sp;
	uint64_t reserved;

	cold_map = mv_cold_owner(v);
	index[0] = 0, index[1] = 1, index[2] = mv_map_block(v);
	for (int i = 0; i < 3; i++)
		before[i] = mv_where(v, OWNER, index[i]);
	vol_space(v, &sp);
	reserved = sp.sp_reserved;
	mv_log_watch();
	mv_fail_cleaning_commit(v, d, cold_map, how);
	vf_expect(v, OWNER, 0, 1);
	vf_expect(v, OWNER, 1, 1);
	assert_int_equal(vol_sync(v), 0); /* D+1 carries D */
	mv_log_unwatch();
	assert_int_equal(mv_warnings, 0);
	for (int i = 0; i < 3; i++) {
		after = mv_where(v, OWNER, index[i]);
		assert_int_equal(after.w_entry, before[i].w_entry); /* moved, not rewritten */
		assert_int_not_equal(vol_seg_of(v, after.w_pblk), 0);
	}
	vol_space(v, &sp);
	assert_int_equal(sp.sp_reserved, reserved); /* the carried reservation came back */
	vf_expect(v, COLD, 0, 2);
	vf_check(v);
	img = vf_reopen_copy(d, 0);
	vf_expect(img, OWNER, 0, 1);
	vf_expect(img, OWNER, 1, 1);
	vf_expect(img, COLD, 0, 2);
	vf_check(img);
	assert_int_equal(vol_close(img), 0);
	assert_int_equal(vol_close(v), 0);
}

static void test_failed_commit_carries_moves(void **state)
{
	(void)state;
	test_watchdog("test_failed_commit_carries_moves", 30);
	mv_each_failure(mv_carries_moves);
	test_watchdog_cancel();
}

/*
 * After D's commit failed (mv_fail_cleaning_commit, either way),
 * D+1 punches block 0: its map entry is cleared, so the carried move is
 * none. D+1 must leave a hole there and count no block for it. Were it
 * moved anyway, its dead number would get a new address, counted live
 * with nothing naming it, and its old address left behind twice.
 */
static void mv_carried_then_punch(enum mv_fail how)
{
	struct bdev *d;
	struct vol *v = mv_setup(&d, 2), *img;
	uint64_t cold_map;

	cold_map = mv_cold_owner(v);
	mv_fail_cleaning_commit(v, d, cold_map, how);
	vf_punch(v, OWNER, 0); /* D+1 */
	mv_log_watch();
	assert_int_equal(vol_sync(v), 0);
	mv_log_unwatch();
	assert_int_equal(mv_warnings, 0);
	vf_expect(v, OWNER, 0, 0);
	vf_expect(v, OWNER, 1, 1);
	vf_check(v);
	img = vf_reopen_copy(d, 0);
	vf_expect(img, OWNER, 0, 0);
	vf_expect(img, OWNER, 1, 1);
	vf_check(img);
	assert_int_equal(vol_close(img), 0);
	assert_int_equal(vol_close(v), 0);
}

static void test_carried_move_then_punch(void **state)
{
	(void)state;
	test_watchdog("test_carried_move_then_punch", 30);
	mv_each_failure(mv_carried_then_punch);
	test_watchdog_cancel();
}

/*
 * After D's commit failed, D+1 writes version 2 of
 * block 0 (the buffer is D+1's already: no fork). That is a new version:
 * a new number. Moved, version 2 would take the number of version 1.
 */
static void mv_carried_then_write(enum mv_fail how)
{
	struct bdev *d;
	struct vol *v = mv_setup(&d, 2), *img;
	struct mv_where before, before1, after;
	uint64_t cold_map;

	cold_map = mv_cold_owner(v);
	before = mv_where(v, OWNER, 0);
	before1 = mv_where(v, OWNER, 1);
	mv_fail_cleaning_commit(v, d, cold_map, how);
	vf_write(v, OWNER, 0, 2); /* D+1 */
	assert_int_equal(vol_sync(v), 0);
	after = mv_where(v, OWNER, 0);
	assert_int_not_equal(after.w_entry, before.w_entry);
	assert_int_equal(mv_where(v, OWNER, 1).w_entry, before1.w_entry); /* still moved */
	vf_expect(v, OWNER, 0, 2);
	vf_check(v);
	img = vf_reopen_copy(d, 0);
	vf_expect(img, OWNER, 0, 2);
	vf_expect(img, OWNER, 1, 1);
	vf_check(img);
	assert_int_equal(vol_close(img), 0);
	assert_int_equal(vol_close(v), 0);
}

static void test_carried_move_then_write(void **state)
{
	(void)state;
	test_watchdog("test_carried_move_then_write", 30);
	mv_each_failure(mv_carried_then_write);
	test_watchdog_cancel();
}

/*
 * After D's commit failed, D+1 truncates OWNER and
 * writes block 0 again, with the very content it had (so only the
 * truncate's record tells the block changed): D+1's commit prunes the
 * map, then links the new block 0. Moved instead, it would keep the old
 * number, which the prune killed, and nothing would name it: block 0
 * would read as zeros once the cache forgets it (a reopen).
 */
static void mv_carried_then_truncate_and_write(enum mv_fail how)
{
	struct bdev *d;
	struct vol *v = mv_setup(&d, 2), *img;
	uint64_t cold_map;

	cold_map = mv_cold_owner(v);
	mv_fail_cleaning_commit(v, d, cold_map, how);
	vf_truncate(v, OWNER, 0, 0); /* D+1 */
	vf_write(v, OWNER, 0, 1);
	assert_int_equal(vol_sync(v), 0);
	img = vf_reopen_copy(d, 0);
	vf_expect(img, OWNER, 0, 1);
	vf_expect(img, OWNER, 1, 0);
	vf_check(img);
	assert_int_equal(vol_close(img), 0);
	vf_expect(v, OWNER, 0, 1);
	vf_check(v);
	assert_int_equal(vol_close(v), 0);
}

static void test_carried_move_then_truncate_and_write(void **state)
{
	(void)state;
	test_watchdog("test_carried_move_then_truncate_and_write", 30);
	mv_each_failure(mv_carried_then_truncate_and_write);
	test_watchdog_cancel();
}

/*
 * D's commit takes COLD's block first (vol.commit.taken); meanwhile the
 * front end writes version 2 of OWNER's block 0 in D+1, forking the
 * buffer the cleaner dirtied; then the commit fails on COLD's map block.
 * The failure drops the shadow (its buffer holds newer data), and the
 * carried move meets D+1's version 2: a new version, with a new number.
 */
static void test_carried_move_forked_before_the_failure(void **state)
{
	struct bdev *d;
	struct vol *v = mv_setup(&d, 2), *img;
	struct mv_where before, after;
	uint64_t cold_map;
	uint32_t committed;
	pthread_t th;

	(void)state;
	test_needs_syncpoints();
	test_watchdog("test_carried_move_forked_before_the_failure", 30);
	cold_map = mv_cold_owner(v);
	before = mv_where(v, OWNER, 0);
	committed = vol_committed_delta(v);
	vf_write(v, COLD, 0, 2); /* delta D */
	atomic_store(&v->v_clean_urgent, true);
	bdev_emu_fail_block(d, BDEV_EMU_READ, cold_map, 1, -EIO);
	syncpoint_enable();
	syncpoint_order("test.forked", "vol.commit.taken");
	test_thread_start(&th, sync_main, v);
	syncpoint_wait_arrived("vol.commit.taken", 1); /* COLD's block */
	vf_write(v, OWNER, 0, 2);		       /* D+1 forks the cleaner's buffer */
	SYNC_POINT("test.forked");
	assert_int_equal((intptr_t)test_thread_join(th), -EIO);
	syncpoint_reset();
	bdev_emu_clear_faults(d);
	assert_int_equal(vol_committed_delta(v), committed);
	assert_true(buf_forks(v->v_cache) >= 1);
	assert_int_equal(vol_sync(v), 0); /* D+1 */
	after = mv_where(v, OWNER, 0);
	assert_int_not_equal(after.w_entry, before.w_entry);
	vf_expect(v, OWNER, 0, 2);
	vf_check(v);
	img = vf_reopen_copy(d, 0);
	vf_expect(img, OWNER, 0, 2);
	vf_expect(img, OWNER, 1, 1);
	vf_expect(img, COLD, 0, 2);
	vf_check(img);
	assert_int_equal(vol_close(img), 0);
	assert_int_equal(vol_close(v), 0);
	test_watchdog_cancel();
}

/* ---- a map block the commit changed ------------------------------------------ */

/*
 * D punches block 1: its commit clears the entry in OWNER's map block
 * (step (1)) before the cleaner runs. The cleaner then finds the map
 * block current at its old address in the victim, dirty already: it is
 * a new version (a new number), not a move of its new content under the
 * old number. Block 0 still moves; block 1 is a hole.
 */
static void test_changed_map_block_is_not_moved(void **state)
{
	struct bdev *d;
	struct vol *v = mv_setup(&d, 2), *img;
	struct mv_where map_before, map_after, b0_before, b0_after;
	uint32_t committed;

	(void)state;
	map_before = mv_where(v, OWNER, mv_map_block(v));
	b0_before = mv_where(v, OWNER, 0);
	committed = vol_committed_delta(v);
	vf_punch(v, OWNER, 1); /* delta D */
	atomic_store(&v->v_clean_urgent, true);
	assert_int_equal(vol_sync(v), 0);
	assert_int_equal(vol_committed_delta(v), committed + 1);
	map_after = mv_where(v, OWNER, mv_map_block(v));
	b0_after = mv_where(v, OWNER, 0);
	assert_int_equal(b0_after.w_entry, b0_before.w_entry); /* block 0 moved */
	assert_int_not_equal(vol_seg_of(v, b0_after.w_pblk), 0);
	assert_int_not_equal(map_after.w_entry, map_before.w_entry); /* a new version */
	assert_int_not_equal(vol_seg_of(v, map_after.w_pblk), 0);
	vf_expect(v, OWNER, 0, 1);
	vf_expect(v, OWNER, 1, 0);
	vf_check(v);
	img = vf_reopen_copy(d, 0);
	vf_expect(img, OWNER, 0, 1);
	vf_expect(img, OWNER, 1, 0);
	vf_check(img);
	assert_int_equal(vol_close(img), 0);
	assert_int_equal(vol_close(v), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_punch_between_look_and_read),
	    cmocka_unit_test(test_move_forked_after_taken),
	    cmocka_unit_test(test_failed_commit_carries_moves),
	    cmocka_unit_test(test_carried_move_then_punch),
	    cmocka_unit_test(test_carried_move_then_write),
	    cmocka_unit_test(test_carried_move_then_truncate_and_write),
	    cmocka_unit_test(test_carried_move_forked_before_the_failure),
	    cmocka_unit_test(test_changed_map_block_is_not_moved),
	    cmocka_unit_test(test_recent_checkpoint_across_a_move),
	};

	vf_filter_from_env();
	return TEST_RUN("vol_move", tests);
}

/*
 * test_vol_snap.c - snapshots (src/vol/snap.c): a pinned state stays
 * readable and frozen while the volume changes, the cleaner and segment
 * reuse never take what a snapshot names, deleting one gives its space
 * back, and creation racing a commit pins the right state.
 *
 * After every workload vol_check walks the state and every snapshot: it
 * fails if a block a snapshot names lies in a segment not marked for the
 * snapshots, in a free segment, or is counted nowhere (usage.c (4)).
 */
#include "harness.h"
#include "vol_fixture.h"

#include "util/prng.h"
#include "util/syncpoint.h"
#include "vol/vol_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OWNER0	VOL_FIRST_OWNER
#define NOWNERS 4
#define NINDEX	64 /* blocks per owner: 256 in the model */
#define NSNAPS	3  /* snapshots kept at once by the randomized test */

struct model {
	uint32_t m_ver[NOWNERS][NINDEX]; /* 0: a hole */
};

static void model_expect(struct vol *v, const struct model *m)
{
	for (unsigned o = 0; o < NOWNERS; o++)
		for (unsigned i = 0; i < NINDEX; i++)
			vf_expect(v, OWNER0 + o, i, m->m_ver[o][i]);
}

/* vol_open on a copy of @d's durable state; NULL: failed with *err. */
static struct vol *open_copy(struct bdev *d, const struct vol_open_opts *o, int *err)
{
	struct bdev *copy;
	struct vol *v = NULL;

	assert_int_equal(bdev_emu_open_copy(d, &copy), 0);
	*err = vol_open(copy, o, &v);
	if (*err)
		bdev_close(copy);
	return v;
}

/* Open snapshot @name of the durable state on a copy of @d; NULL: failed with *err. */
static struct vol *open_snapshot(struct bdev *d, const char *name, int *err)
{
	struct vol_open_opts o = {.voo_snapshot = name, .voo_max_age_ms = 3600 * 1000};

	return open_copy(d, &o, err);
}

static void expect_snapshot(struct bdev *d, const char *name, const struct model *m)
{
	struct vol *s;
	int err;

	s = open_snapshot(d, name, &err);
	if (!s)
		fail_msg("snapshot %s does not open: %d", name, err);
	model_expect(s, m);
	assert_int_equal(vol_snap_create(s, "more"), -EROFS); /* read only */
	assert_int_equal(vol_close(s), 0);
}

/* Names, errors, listing, and persistence across a reopen. */
static void test_create_list_delete(void **state)
{
	struct bdev *d = vf_mkfs(2048);
	struct vol *v = vf_open(d, 0);
	struct vol_snap_info *si;
	char longname[VOL_SNAP_NAME_MAX + 2];
	size_t n;
	int err;

	(void)state;
	vf_write(v, OWNER0, 0, 1);
	assert_int_equal(vol_snap_create(v, "first"), 0);
	vf_write(v, OWNER0, 0, 2);
	assert_int_equal(vol_snap_create(v, "second"), 0);
	assert_int_equal(vol_snap_create(v, "first"), -EEXIST);
	assert_int_equal(vol_snap_create(v, ""), -EINVAL);
	assert_int_equal(vol_snap_create(v, "a/b"), -EINVAL);
	assert_int_equal(vol_snap_create(v, ".."), -EINVAL);
	memset(longname, 'x', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	assert_int_equal(vol_snap_create(v, longname), -ENAMETOOLONG);
	longname[VOL_SNAP_NAME_MAX] = '\0';
	assert_int_equal(vol_snap_create(v, longname), 0);
	assert_int_equal(vol_snap_delete(v, "none"), -ENOENT);
	vf_write(v, OWNER0, 0, 3);
	vf_check(v);

	struct vol *r = vf_reopen_copy(d, 0); /* the durable state, opened again */
	struct model m = {0};

	assert_int_equal(vol_snap_list(r, &si, &n), 0);
	assert_int_equal(n, 3);
	assert_string_equal(si[0].vsi_name, "first");
	assert_string_equal(si[1].vsi_name, "second");
	assert_string_equal(si[2].vsi_name, longname);
	assert_true(si[0].vsi_delta < si[1].vsi_delta);
	assert_true(si[0].vsi_ctime_ns > 0 && si[0].vsi_ctime_ns <= si[1].vsi_ctime_ns);
	free(si);
	vf_expect(r, OWNER0, 0, 3);
	assert_int_equal(vol_close(r), 0);

	assert_int_equal(vol_snap_delete(v, longname), 0);
	vf_check(v);
	m.m_ver[0][0] = 1;
	expect_snapshot(d, "first", &m);
	m.m_ver[0][0] = 2;
	expect_snapshot(d, "second", &m);
	assert_null(open_snapshot(d, longname, &err));
	assert_int_equal(err, -ENOENT);
	assert_int_equal(vol_close(v), 0);
}

/*
 * Random writes and punches over 256 blocks, writing the volume's size
 * many times over, with a snapshot taken every so often and the oldest
 * deleted when NSNAPS are kept: every snapshot reads back the model of
 * its moment, and the live volume its own, while the cleaner runs.
 */
static void test_snapshots_frozen_under_churn(void **state)
{
	uint64_t seed = test_seed("vol snapshots churn", 20261204);
	struct model live = {0}, snaps[NSNAPS];
	char names[NSNAPS][16];
	unsigned first = 0, count = 0, taken = 0;
	/* 96 segments, the cleaner from 24 free to 32: snapshots keep whole
	 * segments from it (about 37 of 64 at the end of a run), and how
	 * commits group the writes (their timing) changes how many map
	 * blocks are written, so 64 segments with the default watermarks ran
	 * out of space on a slow machine. The volume is still written about
	 * twice its size over, and the cleaner still runs. */
	struct vol_open_opts oo = {.voo_clean_low = 24, .voo_clean_high = 32};
	struct bdev *d = vf_mkfs(96 * VF_SEG);
	struct vol *v = vf_open_opts(d, &oo), *s2;
	struct vol_usage_stats us;
	struct prng rng;

	(void)state;
	test_watchdog("test_snapshots_frozen_under_churn", 240);
	prng_init(&rng, seed);
	for (unsigned op = 0; op < 12000; op++) {
		unsigned o = (unsigned)prng_below(&rng, NOWNERS);
		unsigned i = (unsigned)prng_below(&rng, NINDEX);

		if (prng_chance(&rng, 1, 10) && live.m_ver[o][i]) {
			vf_punch(v, OWNER0 + o, i);
			live.m_ver[o][i] = 0;
		} else {
			vf_write(v, OWNER0 + o, i, ++live.m_ver[o][i] ? live.m_ver[o][i] : 1);
		}
		if (op % 97 == 96)
			assert_int_equal(vol_sync(v), 0);
		if (op % 1500 != 1499)
			continue;
		if (count == NSNAPS) { /* delete the oldest */
			assert_int_equal(vol_snap_delete(v, names[first]), 0);
			first = (first + 1) % NSNAPS;
			count--;
		}
		unsigned slot = (first + count) % NSNAPS;

		snprintf(names[slot], sizeof(names[slot]), "s%u", taken++);
		assert_int_equal(vol_snap_create(v, names[slot]), 0);
		snaps[slot] = live;
		count++;
		vf_check(v);
		for (unsigned k = 0; k < count; k++)
			expect_snapshot(d, names[(first + k) % NSNAPS],
					&snaps[(first + k) % NSNAPS]);
	}
	vf_check(v);
	model_expect(v, &live);
	for (unsigned k = 0; k < count; k++)
		expect_snapshot(d, names[(first + k) % NSNAPS], &snaps[(first + k) % NSNAPS]);
	vol_usage(v, &us);
	print_message("# seed %" PRIu64 ": %u snapshots taken, %" PRIu64
		      " segments cleaned, %" PRIu64 " released, %" PRIu64 " blocks pinned, %" PRIu64
		      " segments left to snapshots\n",
		      seed, taken, us.vus_cleaned, us.vus_released, us.vus_pinned_blocks,
		      us.vus_snap_segments);
	assert_true(us.vus_cleaned > 0);   /* the cleaner ran beside the snapshots */
	assert_true(us.vus_released > 96); /* segments were reused */
	s2 = vf_reopen_copy(d, 0);
	vf_check(s2); /* the open's exact count agrees */
	model_expect(s2, &live);
	assert_int_equal(vol_close(s2), 0);
	assert_int_equal(vol_close(v), 0);
	test_watchdog_cancel();
}

/*
 * What only a snapshot keeps is counted as pinned, and comes back when
 * it is deleted; a deletion works on a volume full because of it.
 */
/* A punch as a deletion does it: it may use the kept reserve. */
static void punch_freeing(struct vol *v, uint64_t owner, uint64_t index)
{
	struct vol_txn t;

	assert_int_equal(vol_txn_begin(v, 1, VOL_TXN_FREEING, &t), 0);
	assert_int_equal(vol_punch(&t, owner, index), 0);
	vol_txn_end(&t);
}

/*
 * Write blocks 0, 1, ... of @owner, one transaction each, until the
 * volume says -ENOSPC (a 32-segment one); how many were written.
 */
static uint64_t fill_until_full(struct vol *v, uint64_t owner)
{
	static uint64_t data[VF_BS / 8];
	uint64_t added = 0;
	int err;

	for (;;) {
		struct vol_txn t;

		err = vol_txn_begin(v, 1, 0, &t);
		if (err)
			break;
		vf_pattern(data, owner, added, 1);
		assert_int_equal(vol_write(&t, owner, added, data), 0);
		vol_txn_end(&t);
		added++;
		assert_true(added < 32 * VF_SEG);
	}
	assert_int_equal(err, -ENOSPC);
	return added;
}

static void test_delete_gives_space_back(void **state)
{
	struct bdev *d = vf_mkfs(32 * VF_SEG);
	struct vol *v = vf_open(d, 0);
	struct vol_usage_stats us;
	uint64_t free_empty, free_end, added;

	(void)state;
	test_watchdog("test_delete_gives_space_back", 120);
	free_empty = vol_free_blocks(v);
	for (unsigned i = 0; i < 512; i++)
		vf_write(v, OWNER0, i, 1);
	assert_int_equal(vol_snap_create(v, "keep"), 0);
	for (unsigned i = 0; i < 512; i++) /* gone from the state, kept by the snapshot */
		vf_punch(v, OWNER0, i);
	assert_int_equal(vol_sync(v), 0);
	vol_usage(v, &us);
	assert_true(us.vus_pinned_blocks >= 512);
	/* new blocks until the volume is full: the snapshot's are not reused */
	added = fill_until_full(v, OWNER0 + 1);
	print_message("# %" PRIu64 " blocks added before -ENOSPC; %" PRIu64 " pinned\n", added,
		      us.vus_pinned_blocks);
	vf_check(v);

	assert_int_equal(vol_snap_delete(v, "keep"), 0); /* on the full volume */
	vol_usage(v, &us);
	assert_int_equal(us.vus_pinned_blocks, 0);
	assert_int_equal(us.vus_snap_segments, 0);
	vf_check(v);
	/* its blocks come back: most of them can be added again (the cleaner
	 * compacts the segments it left half empty; on a volume this full it
	 * does not always reach the last few under load) */
	for (uint64_t i = 0; i < 384; i++)
		vf_write(v, OWNER0 + 2, i, 1);
	for (uint64_t i = 0; i < added; i++)
		vf_expect(v, OWNER0 + 1, i, 1);
	for (uint64_t i = 0; i < added; i++)
		punch_freeing(v, OWNER0 + 1, i);
	for (uint64_t i = 0; i < 384; i++)
		punch_freeing(v, OWNER0 + 2, i);
	assert_int_equal(vol_sync(v), 0);
	free_end = vol_free_blocks(v);
	print_message("# free when empty: %" PRIu64 " at first, %" PRIu64 " at the end\n",
		      free_empty, free_end);
	assert_true(free_end + VF_SEG >= free_empty);
	vf_check(v);
	assert_int_equal(vol_close(v), 0);
	test_watchdog_cancel();
}

/*
 * Blocks already dead when a snapshot marks their segments stay there
 * until the snapshot goes (the cleaner leaves marked segments): the
 * usage counts say so, and statfs does not count them free. Deleting the
 * snapshot gives them back to the cleaner.
 */
static void test_dead_beside_a_snapshot_are_not_free(void **state)
{
	struct bdev *d = vf_mkfs(32 * VF_SEG);
	struct vol *v = vf_open(d, 0);
	struct vol_usage_stats us;
	uint64_t free_before, free_marked;

	(void)state;
	for (unsigned i = 0; i < 4 * VF_SEG; i++)
		vf_write(v, OWNER0, i, 1);
	for (unsigned i = 0; i < 4 * VF_SEG; i += 2) /* half dead, beside live ones */
		punch_freeing(v, OWNER0, i);
	assert_int_equal(vol_sync(v), 0);
	vol_usage(v, &us);
	assert_int_equal(us.vus_snap_dead_blocks, 0);
	free_before = vol_free_blocks(v);
	assert_int_equal(vol_snap_create(v, "keep"), 0);
	vol_usage(v, &us);
	print_message("# %" PRIu64 " dead blocks beside the snapshot's, in %" PRIu64
		      " marked segments; statfs %" PRIu64 " before, %" PRIu64 " after\n",
		      us.vus_snap_dead_blocks, us.vus_snap_segments, free_before,
		      vol_free_blocks(v));
	assert_true(us.vus_snap_dead_blocks >= 2 * VF_SEG);
	free_marked = vol_free_blocks(v);
	assert_true(free_marked + 2 * VF_SEG <= free_before);
	vf_check(v);
	assert_int_equal(vol_snap_delete(v, "keep"), 0);
	vol_usage(v, &us);
	assert_int_equal(us.vus_snap_dead_blocks, 0);
	assert_true(vol_free_blocks(v) >= free_marked + 2 * VF_SEG);
	vf_check(v);
	assert_int_equal(vol_close(v), 0);
}

/*
 * Deleting on a full volume while a snapshot keeps what is deleted: each
 * deletion frees nothing and its commit costs blocks, so deletions use
 * the kept reserve up. The volume has dead blocks the cleaner can
 * compact (a file written interleaved with another, then deleted), and
 * the deletion that falls short must make it do so: every deletion
 * succeeds, one commit each, far more than the kept reserve holds.
 */
#define DEL_BLOCKS 256
#define DEL_COST   32 /* what each deletion reserves: the client's costliest */

static void test_deletions_beside_a_snapshot_make_room(void **state)
{
	struct bdev *d = vf_mkfs(32 * VF_SEG);
	struct vol *v = vf_open(d, 0);
	struct vol_usage_stats us;
	uint64_t added;
	int err;

	(void)state;
	test_watchdog("test_deletions_beside_a_snapshot_make_room", 240);
	vol_keep_for_freeing(v, DEL_COST);
	for (unsigned i = 0; i < DEL_BLOCKS; i++)
		vf_write(v, OWNER0, i, 1);
	assert_int_equal(vol_snap_create(v, "keep"), 0);
	for (unsigned i = 0; i < 192; i++) { /* interleaved in the same segments */
		vf_write(v, OWNER0 + 1, i, 1);
		vf_write(v, OWNER0 + 2, i, 1);
	}
	for (unsigned i = 0; i < 192; i++) /* dead blocks beside live ones */
		punch_freeing(v, OWNER0 + 2, i);
	assert_int_equal(vol_sync(v), 0);
	added = fill_until_full(v, OWNER0 + 3);
	/* the snapshot keeps every block of OWNER0: deleting frees nothing */
	for (unsigned i = 0; i < DEL_BLOCKS; i++) {
		struct vol_txn t;

		err = vol_txn_begin(v, DEL_COST, VOL_TXN_FREEING, &t);
		if (err)
			fail_msg("deletion %u of %u: %d", i, DEL_BLOCKS, err);
		assert_int_equal(vol_punch(&t, OWNER0, i), 0);
		vol_txn_end(&t);
		assert_int_equal(vol_sync(v), 0);
	}
	vol_usage(v, &us);
	print_message("# %" PRIu64 " blocks added before -ENOSPC; %u deletions, a commit each; "
		      "%" PRIu64 " segments cleaned\n",
		      added, DEL_BLOCKS, us.vus_cleaned);
	vf_check(v);
	assert_int_equal(vol_close(v), 0);
	test_watchdog_cancel();
}

/*
 * Creation racing a commit: the snapshot reads which state the counts
 * describe and marks its segments while the commit of a delta that
 * overwrites a block of that state is held before it finishes; the
 * commit then settles, leaving the old block behind. It must be pinned
 * (not released), and the snapshot must read it.
 */
struct creator {
	struct vol *c_vol;
	int c_err;
};

static void *create_main(void *arg)
{
	struct creator *c = arg;

	syncpoint_thread_name("A");
	c->c_err = vol_snap_create(c->c_vol, "raced");
	return NULL;
}

static void *sync_main(void *arg)
{
	struct creator *c = arg;

	c->c_err = vol_sync(c->c_vol);
	return NULL;
}

/*
 * Snapshot "raced" is created (thread A) while the commit of the delta
 * that writes version 2 of block 0 of OWNER0 is held before it finishes
 * (after it projected the usage file's entries), until A has read which
 * state the counts describe and marked its segments.
 */
static void create_during_overwrite(struct vol *v)
{
	struct creator a = {.c_vol = v}, b = {.c_vol = v};
	pthread_t ta, tb;
	uint64_t finishes;

	syncpoint_reset();
	syncpoint_enable();
	syncpoint_order("test.release", "vol.snap.create.synced@A");
	test_thread_start(&ta, create_main, &a);
	syncpoint_wait_arrived("vol.snap.create.synced@A", 1);
	syncpoint_order("vol.snap.create.taken@A", "vol.commit.finish");
	finishes = syncpoint_arrived("vol.commit.finish");
	vf_write(v, OWNER0, 0, 2);
	test_thread_start(&tb, sync_main, &b);
	syncpoint_wait_arrived("vol.commit.finish", finishes + 1);
	syncpoint_hit("test.release");
	test_thread_join(ta);
	test_thread_join(tb);
	syncpoint_reset();
	assert_int_equal(a.c_err, 0);
	assert_int_equal(b.c_err, 0);
}

static void test_create_races_a_commit(void **state)
{
	struct bdev *d;
	struct vol *v;
	struct vol_usage_stats us;
	struct model m = {0};

	(void)state;
	if (!SYNCPOINTS_BUILT)
		skip();
	test_watchdog("test_create_races_a_commit", 60);
	d = vf_mkfs(16 * VF_SEG);
	v = vf_open(d, 0);
	vf_write(v, OWNER0, 0, 1);
	assert_int_equal(vol_sync(v), 0);

	create_during_overwrite(v);

	vol_usage(v, &us);
	assert_true(us.vus_pinned_blocks >= 1); /* version 1 of the block */
	vf_check(v);
	vf_expect(v, OWNER0, 0, 2);
	m.m_ver[0][0] = 1;
	expect_snapshot(d, "raced", &m);
	assert_int_equal(vol_close(v), 0);
	test_watchdog_cancel();
}

/* Where block @index of @owner lies now. */
static uint64_t block_at(struct vol *v, uint64_t owner, uint64_t index)
{
	uint64_t entry, pblk, path;

	assert_int_equal(vol_resolve_entry(v, owner, index, &entry, &pblk, &path), 0);
	return pblk;
}

/* The segment of block @index of @owner, which must be marked (vu_snap). */
static uint64_t marked_segment_of(struct vol *v, uint64_t owner, uint64_t index)
{
	uint64_t seg = vol_seg_of(v, block_at(v, owner, index));

	assert_true(vol_seg_snap(v->v_usage.vu_snap, seg));
	return seg;
}

/*
 * A block written after every snapshot is no snapshot's, whatever
 * segment it lies in: left behind in a segment a snapshot marked (here
 * the log's head when it was taken), it goes as it would anywhere else,
 * instead of counting as pinned until a recount (the liveness rule read
 * at its death: its life holds no snapshot's delta). Only blocks named
 * by address (the translation's and owner table's trees, the super
 * roots), whose birth the counts do not know, stay pinned.
 */
#define BORN_AFTER 16
static void test_blocks_born_after_the_snapshots_go(void **state)
{
	/* no cleaning: only what the punches leave behind changes the counts */
	struct vol_open_opts oo = {.voo_clean_low = 1, .voo_clean_high = 2};
	struct bdev *d = vf_mkfs(16 * VF_SEG);
	struct vol *v = vf_open_opts(d, &oo), *w;
	struct vol_usage_stats before, after;
	struct model m = {0};

	(void)state;
	test_watchdog("test_blocks_born_after_the_snapshots_go", 60);
	vf_write(v, OWNER0, 0, 1);
	assert_int_equal(vol_sync(v), 0);
	assert_int_equal(vol_snap_create(v, "s"), 0);
	m.m_ver[0][0] = 1;
	for (unsigned i = 0; i < BORN_AFTER; i++)
		vf_write(v, OWNER0 + 1, i, 1);
	assert_int_equal(vol_sync(v), 0);
	(void)marked_segment_of(v, OWNER0 + 1, 0); /* where the snapshot marked */
	vol_usage(v, &before);
	for (unsigned i = 0; i < BORN_AFTER; i++)
		punch_freeing(v, OWNER0 + 1, i);
	assert_int_equal(vol_sync(v), 0);
	vol_usage(v, &after);
	print_message("# %u blocks born after the snapshot left behind: %" PRIu64 " more pinned\n",
		      BORN_AFTER, after.vus_pinned_blocks - before.vus_pinned_blocks);
	assert_true(after.vus_pinned_blocks - before.vus_pinned_blocks < BORN_AFTER / 2);
	vf_check(v);
	expect_snapshot(d, "s", &m);
	w = vf_reopen_copy(d, 0); /* the usage file's counts are the same */
	vf_check(w);
	assert_int_equal(vol_close(w), 0);
	assert_int_equal(vol_close(v), 0);
	test_watchdog_cancel();
}

/*
 * A creation between a commit's projection of the usage file's entries
 * and its settle: the commit leaves behind a block written after the
 * older snapshot, in a segment that snapshot marked, and projects its
 * entry without it; the new snapshot is of the state before that
 * commit, so its settle pins the block. The entry must be written again
 * (vu_proj_newest): an open that reads the file must count it, or the
 * segment could go while the new snapshot reads it.
 */
static void test_create_after_a_projection(void **state)
{
	struct vol_open_opts oo = {.voo_clean_low = 1, .voo_clean_high = 2};
	struct bdev *d;
	struct vol *v, *w;
	struct model m = {0};
	uint64_t seg, pinned;

	(void)state;
	if (!SYNCPOINTS_BUILT)
		skip();
	test_watchdog("test_create_after_a_projection", 60);
	/* room to spare: no reservation falls short, which would have the
	 * cleaner move the block whatever the watermarks say */
	d = vf_mkfs(64 * VF_SEG);
	v = vf_open_opts(d, &oo); /* the cleaner must not move the block */
	vf_write(v, OWNER0 + 1, 0, 1);
	assert_int_equal(vol_sync(v), 0);
	assert_int_equal(vol_snap_create(v, "old"), 0);
	vf_write(v, OWNER0, 0, 1); /* after "old", in a segment it marked */
	assert_int_equal(vol_sync(v), 0);
	seg = marked_segment_of(v, OWNER0, 0);
	/* the log's head moves on, and so does the snapshot table's block
	 * (a creation and a deletion): no later commit changes the segment */
	for (unsigned i = 0; i < 2 * VF_SEG; i++)
		vf_write(v, OWNER0 + 2, i, 1);
	assert_int_equal(vol_snap_create(v, "moves the table"), 0);
	assert_int_equal(vol_snap_delete(v, "moves the table"), 0);
	(void)marked_segment_of(v, OWNER0, 0);
	pinned = v->v_usage.vu_pinned[seg];

	create_during_overwrite(v);
	assert_int_equal(vol_sync(v), 0);
	/* version 1, and the map block above it */
	assert_true(v->v_usage.vu_pinned[seg] > pinned);

	w = vf_reopen_copy(d, 0);
	assert_int_equal(w->v_usage.vu_open_walked, 0); /* counts from the file */
	vf_check(w);
	assert_int_equal(vol_close(w), 0);
	m.m_ver[0][0] = 1;
	m.m_ver[1][0] = 1;
	for (unsigned i = 0; i < 2 * VF_SEG && i < NINDEX; i++)
		m.m_ver[2][i] = 1;
	expect_snapshot(d, "raced", &m);
	assert_int_equal(vol_close(v), 0);
	test_watchdog_cancel();
}

/*
 * Power cuts: a workload of writes, punches, snapshot creations and a
 * deletion, cut at every device write (unflushed writes all lost, or
 * some kept in a seeded order with one torn). Each image opens and
 * passes vol_check; every block is at its version in the last step
 * that returned or in a later one (at most two steps apart: a step's
 * writes are transactions of their own, and a commit may come between
 * them); every snapshot listed reads exactly what it pinned;
 * one whose creation returned is there, one whose deletion returned is
 * not.
 */
#define CUT_STEPS 7
#define CUT_INDEX 24

struct cut_step {
	struct model cs_live; /* the state once the step returned */
	uint64_t cs_writes;   /* device writes issued by then */
	int cs_snap_made;     /* snapshot made by the step (index), or -1 */
	int cs_snap_gone;     /* snapshot deleted by the step, or -1 */
};

static const char *const cut_names[] = {"s0", "s1"};

static void cut_step_write(struct vol *v, struct model *m, uint32_t version, bool punch_odd)
{
	for (unsigned i = 0; i < CUT_INDEX; i++) {
		if (punch_odd && (i & 1)) {
			if (m->m_ver[0][i]) {
				vf_punch(v, OWNER0, i);
				m->m_ver[0][i] = 0;
			}
			continue;
		}
		vf_write(v, OWNER0, i, version);
		m->m_ver[0][i] = version;
	}
	assert_int_equal(vol_sync(v), 0);
}

static bool model_matches(struct vol *v, const struct model *m)
{
	for (unsigned i = 0; i < CUT_INDEX; i++)
		if (!vf_has(v, OWNER0, i, m->m_ver[0][i]))
			return false;
	return true;
}

/* Each block of @v is at its version in @a or in @b. */
static bool model_between(struct vol *v, const struct model *a, const struct model *b)
{
	for (unsigned i = 0; i < CUT_INDEX; i++)
		if (!vf_has(v, OWNER0, i, a->m_ver[0][i]) && !vf_has(v, OWNER0, i, b->m_ver[0][i]))
			return false;
	return true;
}

static void check_cut(struct bdev *img, const struct cut_step *steps, const struct model *pinned,
		      uint64_t cut, const char *mode)
{
	struct vol_snap_info *si;
	unsigned done = 0; /* steps that returned before the cut */
	bool listed[2] = {false, false}, state_ok = false;
	struct vol *v;
	size_t n;

	while (done < CUT_STEPS && steps[done].cs_writes < cut)
		done++;
	v = vf_open(img, 0);
	if (vol_check(v, NULL, NULL, NULL))
		fail_msg("cut %" PRIu64 " (%s): vol_check finds problems", cut, mode);
	/* between the last step that returned and the next: each write is
	 * its own transaction, and a commit may come in the middle of a step
	 * (a reservation that falls short forces one) */
	for (unsigned k = done; k <= CUT_STEPS && !state_ok; k++) {
		static const struct model none;
		const struct model *a = k ? &steps[k - 1].cs_live : &none;

		state_ok = model_between(v, a, k < CUT_STEPS ? &steps[k].cs_live : a);
	}
	if (!state_ok)
		fail_msg("cut %" PRIu64 " (%s): the state is not between steps %u and %u", cut,
			 mode, done ? done - 1 : 0, CUT_STEPS - 1);
	assert_int_equal(vol_snap_list(v, &si, &n), 0);
	for (size_t i = 0; i < n; i++) {
		int which = !strcmp(si[i].vsi_name, "s0")   ? 0
			    : !strcmp(si[i].vsi_name, "s1") ? 1
							    : -1;

		if (which < 0)
			fail_msg("cut %" PRIu64 " (%s): unknown snapshot %s", cut, mode,
				 si[i].vsi_name);
		listed[which] = true;
	}
	free(si);
	for (int which = 0; which < 2; which++) {
		bool made = false, gone = false;

		for (unsigned k = 0; k < done; k++) {
			made |= steps[k].cs_snap_made == which;
			gone |= steps[k].cs_snap_gone == which;
		}
		if (made && !gone && !listed[which])
			fail_msg("cut %" PRIu64 " (%s): snapshot %s was made, is not listed", cut,
				 mode, cut_names[which]);
		if (gone && listed[which])
			fail_msg("cut %" PRIu64 " (%s): snapshot %s was deleted, is listed", cut,
				 mode, cut_names[which]);
	}
	assert_int_equal(vol_close(v), 0); /* closes img */
	(void)pinned;
}

static void test_power_cuts(void **state)
{
	struct cut_step steps[CUT_STEPS];
	struct model live = {0}, pinned[2];
	struct bdev *d = vf_mkfs(16 * VF_SEG);
	uint64_t cuts = 0;
	struct vol *v;
	unsigned k = 0;

	(void)state;
	test_watchdog("test_power_cuts", 240);
	bdev_emu_keep_history(d);
	v = vf_open(d, 0);
#define STEP(made, gone)                                                                           \
	steps[k++] = (struct cut_step){live, bdev_emu_history_writes(d), (made), (gone)}
	cut_step_write(v, &live, 1, false);
	STEP(-1, -1);
	assert_int_equal(vol_snap_create(v, "s0"), 0);
	pinned[0] = live;
	STEP(0, -1);
	cut_step_write(v, &live, 2, true);
	STEP(-1, -1);
	assert_int_equal(vol_snap_create(v, "s1"), 0);
	pinned[1] = live;
	STEP(1, -1);
	cut_step_write(v, &live, 3, false);
	STEP(-1, -1);
	assert_int_equal(vol_snap_delete(v, "s0"), 0);
	STEP(-1, 0);
	cut_step_write(v, &live, 4, true);
	STEP(-1, -1);
#undef STEP
	assert_int_equal(k, CUT_STEPS);

	for (uint64_t cut = 1; cut <= bdev_emu_history_writes(d) + 1; cut++) {
		static const struct bdev_emu_crash hows[] = {
		    {.ec_mode = BDEV_EMU_DROP_ALL},
		    {.ec_mode = BDEV_EMU_REORDER, .ec_tear = true, .ec_seed = 7},
		};

		for (unsigned h = 0; h < 2; h++) {
			struct bdev *img;
			struct vol *sv;
			struct vol_snap_info *si;
			size_t n;

			assert_int_equal(bdev_emu_crash_at(d, cut, &hows[h], &img), 0);
			check_cut(img, steps, pinned, cut, h ? "reorder, tear" : "drop");
			/* each snapshot listed reads what it pinned */
			assert_int_equal(bdev_emu_crash_at(d, cut, &hows[h], &img), 0);
			sv = vf_open(img, 0);
			assert_int_equal(vol_snap_list(sv, &si, &n), 0);
			for (size_t i = 0; i < n; i++) {
				int which = si[i].vsi_name[1] - '0';
				struct vol_open_opts o = {.voo_snapshot = si[i].vsi_name};
				struct bdev *copy;
				struct vol *snap;

				assert_int_equal(bdev_emu_open_copy(img, &copy), 0);
				snap = vf_open_opts(copy, &o);
				if (!model_matches(snap, &pinned[which]))
					fail_msg("cut %" PRIu64
						 ": snapshot %s does not read what it "
						 "pinned",
						 cut, si[i].vsi_name);
				assert_int_equal(vol_close(snap), 0);
			}
			free(si);
			assert_int_equal(vol_close(sv), 0);
			cuts++;
		}
	}
	print_message("# %" PRIu64 " crash images, %" PRIu64 " device writes\n", cuts,
		      bdev_emu_history_writes(d));
	assert_int_equal(vol_close(v), 0);
	test_watchdog_cancel();
}

/*
 * Damage: a snapshot whose super root is gone, and a record with stray
 * bytes, are problems vol_check reports by name; the volume still opens,
 * the damaged snapshot does not (-EUCLEAN), and the others read fine.
 */
static unsigned damage_problems;

static void damage_report(void *arg, const char *msg)
{
	(void)arg;
	print_message("# vol_check: %s\n", msg);
	damage_problems++;
}

static void test_damaged_snapshots(void **state)
{
	struct bdev *d = vf_mkfs(16 * VF_SEG), *img;
	struct vol *v = vf_open(d, 0), *w;
	struct vol_open_opts o = {0};
	struct vol_snap_info *si;
	unsigned char block[VF_BS];
	uint64_t table;
	size_t n;

	(void)state;
	vf_write(v, OWNER0, 0, 1);
	assert_int_equal(vol_snap_create(v, "good"), 0);
	assert_int_equal(vol_snap_create(v, "bad"), 0);
	/* commits enough for both checkpoint slots to pass the snapshots'
	 * logs: recovery then does not read them (a damaged log after the
	 * slots would only end the roll-forward early) */
	for (unsigned i = 0; i < 48; i++) {
		vf_write(v, OWNER0, 0, 2);
		assert_int_equal(vol_sync(v), 0);
	}
	assert_int_equal(vol_snap_list(v, &si, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(vol_resolve(v, VOL_SNAP_OWNER, 0, &table), 0);
	assert_true(table != 0);

	/* the second snapshot's super root zeroed */
	assert_int_equal(bdev_emu_open_copy(d, &img), 0);
	memset(block, 0, sizeof(block));
	assert_int_equal(bdev_write(img, si[1].vsi_sroot, 1, block), 0);
	w = vf_open(img, 0);
	damage_problems = 0;
	assert_true(vol_check(w, damage_report, NULL, NULL) > 0);
	assert_true(damage_problems > 0);
	vf_expect(w, OWNER0, 0, 2);
	assert_int_equal(vol_close(w), 0);
	assert_int_equal(bdev_emu_open_copy(d, &img), 0);
	assert_int_equal(bdev_write(img, si[1].vsi_sroot, 1, block), 0);
	o.voo_snapshot = "bad";
	assert_int_equal(vol_open(img, &o, &w), -EUCLEAN);
	o.voo_snapshot = "good";
	w = vf_open_opts(img, &o);
	vf_expect(w, OWNER0, 0, 1);
	assert_int_equal(vol_close(w), 0);

	/* a record with a stray byte in its reserved field */
	assert_int_equal(bdev_emu_open_copy(d, &img), 0);
	assert_int_equal(bdev_read(img, table, 1, block), 0);
	block[VOL_SNAP_REC_SIZE + 127] = 0x5a; /* record 1 ("bad"), reserved byte */
	assert_int_equal(bdev_write(img, table, 1, block), 0);
	w = vf_open(img, 0); /* the log's checksum is not rechecked on a read */
	damage_problems = 0;
	assert_true(vol_check(w, damage_report, NULL, NULL) > 0);
	assert_int_equal(vol_close(w), 0);

	/* a translation super root that is no super root (the table's own
	 * block), one outside the segments, and one older than the snapshot */
	{
		uint64_t bad[3] = {table, 1ull << 50, 0};
		struct vol_sroot sr;

		assert_int_equal(vol_sroot_load(v, si[1].vsi_sroot, &sr), 0);
		bad[2] = sr.sr_prev; /* the super root before the snapshot's */
		assert_true(bad[2] != 0);
		for (unsigned k = 0; k < 3; k++) {
			assert_int_equal(bdev_emu_open_copy(d, &img), 0);
			assert_int_equal(bdev_read(img, table, 1, block), 0);
			for (unsigned b = 0; b < 7; b++) /* record 1's, 56 bits at byte 25 */
				block[VOL_SNAP_REC_SIZE + 25 + b] =
				    (unsigned char)(bad[k] >> (8 * b));
			assert_int_equal(bdev_write(img, table, 1, block), 0);
			w = vf_open(img, 0);
			damage_problems = 0;
			assert_true(vol_check(w, damage_report, NULL, NULL) > 0);
			assert_int_equal(vol_close(w), 0);
			assert_int_equal(bdev_emu_open_copy(d, &img), 0);
			assert_int_equal(bdev_read(img, table, 1, block), 0);
			for (unsigned b = 0; b < 7; b++)
				block[VOL_SNAP_REC_SIZE + 25 + b] =
				    (unsigned char)(bad[k] >> (8 * b));
			assert_int_equal(bdev_write(img, table, 1, block), 0);
			o.voo_snapshot = "bad";
			assert_int_equal(vol_open(img, &o, &w), -EUCLEAN);
			o.voo_snapshot = "good";
			w = vf_open_opts(img, &o);
			vf_expect(w, OWNER0, 0, 1);
			assert_int_equal(vol_close(w), 0);
		}
	}
	free(si);
	assert_int_equal(vol_close(v), 0);
}

/*
 * A creation whose commit fails (-EIO) keeps its marks until the record
 * is durable (the next commit carries it), and no longer: once that
 * snapshot is deleted, no segment is marked and nothing is pinned. The
 * creation kept a count of marks in flight up for good before, so every
 * later recount kept every mark, and the space in those segments stayed
 * pinned with no snapshot left, across a reopen too.
 */
static void test_failed_create_lets_its_marks_go(void **state)
{
	struct bdev *d = vf_mkfs(32 * VF_SEG);
	struct vol *v = vf_open(d, 0), *w;
	struct vol_snap_info *si;
	struct vol_usage_stats us;
	size_t n;

	(void)state;
	for (uint64_t i = 0; i < 200; i++)
		vf_write(v, OWNER0, i, 1);
	assert_int_equal(vol_sync(v), 0);
	bdev_emu_fail_op(d, BDEV_EMU_FLUSH, 1, 1, -EIO); /* the record's commit */
	assert_int_equal(vol_snap_create(v, "b"), -EIO);
	bdev_emu_clear_faults(d);
	assert_int_equal(vol_sync(v), 0); /* carries the record: the snapshot exists */
	assert_int_equal(vol_snap_list(v, &si, &n), 0);
	assert_int_equal(n, 1);
	free(si);
	vf_check(v);
	assert_int_equal(vol_snap_delete(v, "b"), 0);
	for (uint64_t i = 0; i < 200; i++)
		vf_write(v, OWNER0, i, 2);
	assert_int_equal(vol_sync(v), 0);
	vol_usage(v, &us);
	print_message("# after the delete: %" PRIu64 " segments marked, %" PRIu64
		      " blocks pinned\n",
		      us.vus_snap_segments, us.vus_pinned_blocks);
	assert_int_equal(us.vus_snap_segments, 0);
	assert_int_equal(us.vus_pinned_blocks, 0);
	vf_check(v);
	w = vf_reopen_copy(d, 0);
	vol_usage(w, &us);
	assert_int_equal(us.vus_snap_segments, 0);
	assert_int_equal(us.vus_pinned_blocks, 0);
	assert_int_equal(vol_close(w), 0);
	assert_int_equal(vol_close(v), 0);
}

/*
 * A re-rooted snapshot reads through a later state's translation: it
 * reads the same, vol_check walks it through that translation (and
 * finds the old one let go, the new one kept), and it stays so while the
 * volume is rewritten and cleaned many times over and across a reopen.
 */
static void churn(struct vol *v, struct model *live, struct prng *rng, unsigned ops);

static void test_reroot_reads_through_a_later_translation(void **state)
{
	struct vol_open_opts oo = {.voo_clean_low = 8, .voo_clean_high = 12};
	struct bdev *d = vf_mkfs(48 * VF_SEG);
	struct vol *v = vf_open_opts(d, &oo), *w;
	struct model live = {0}, snap;
	struct vol_snap_info *si;
	struct vol_usage_stats us;
	struct prng rng;
	uint64_t xlate = 0;
	size_t n;

	(void)state;
	test_watchdog("test_reroot_reads_through_a_later_translation", 240);
	prng_init(&rng, test_seed("vol snapshot reroot", 20261205));
	churn(v, &live, &rng, 600);
	assert_int_equal(vol_snap_create(v, "s"), 0);
	snap = live;
	assert_int_equal(vol_snap_reroot(v, "none"), -ENOENT);
	for (unsigned round = 0; round < 4; round++) {
		churn(v, &live, &rng, 1500);
		assert_int_equal(vol_snap_reroot(v, "s"), 0);
		assert_int_equal(vol_snap_list(v, &si, &n), 0);
		assert_int_equal(n, 1);
		assert_true(si[0].vsi_xlate != 0 && si[0].vsi_xlate != si[0].vsi_sroot);
		assert_true(si[0].vsi_xlate != xlate); /* a later state's each time */
		xlate = si[0].vsi_xlate;
		free(si);
		/* a deletion recounts: marks exactly what the snapshots' walks
		 * meet, the translation it names now and not its old one */
		assert_int_equal(vol_snap_create(v, "t"), 0);
		assert_int_equal(vol_snap_delete(v, "t"), 0);
		vf_check(v);
		expect_snapshot(d, "s", &snap);
		churn(v, &live, &rng, 1500); /* the translation it names is left behind */
		vf_check(v);
		expect_snapshot(d, "s", &snap);
	}
	vol_usage(v, &us);
	print_message("# %" PRIu64 " segments cleaned, %" PRIu64 " released, %" PRIu64
		      " blocks pinned\n",
		      us.vus_cleaned, us.vus_released, us.vus_pinned_blocks);
	w = vf_reopen_copy(d, 0);
	vf_check(w); /* the open's walk counts it the same */
	model_expect(w, &live);
	assert_int_equal(vol_close(w), 0);
	assert_int_equal(vol_snap_delete(v, "s"), 0);
	vf_check(v);
	vol_usage(v, &us);
	assert_int_equal(us.vus_pinned_blocks, 0);
	assert_int_equal(vol_close(v), 0);
	test_watchdog_cancel();
}

/* Every block of the model reads its version in @v. */
static bool model_is(struct vol *v, const struct model *m)
{
	for (unsigned o = 0; o < NOWNERS; o++)
		for (unsigned i = 0; i < NINDEX; i++)
			if (!vf_has(v, OWNER0 + o, i, m->m_ver[o][i]))
				return false;
	return true;
}

static void cut_report(void *arg, const char *msg)
{
	print_message("# cut %" PRIu64 ": vol_check: %s\n", *(const uint64_t *)arg, msg);
}

/*
 * Lay out a snapshot "s" of @live whose blocks fill a quarter of each of
 * their segments (the rest died before it was taken), with the cleaner
 * kept from running till then (test_cleaner_moves_snapshot_blocks).
 */
static void sparse_snapshot(struct vol *v, struct model *live)
{
	uint64_t filler = 0;

	for (unsigned i = 0; i < NINDEX; i++)
		for (unsigned o = 0; o < NOWNERS; o++) {
			vf_write(v, OWNER0 + o, i, ++live->m_ver[o][i]);
			for (unsigned k = 0; k < 3; k++)
				vf_write(v, OWNER0 + NOWNERS, filler++, 1);
		}
	for (uint64_t k = 0; k < filler; k++) /* dead before the snapshot */
		punch_freeing(v, OWNER0 + NOWNERS, k);
	assert_int_equal(vol_sync(v), 0);
	assert_int_equal(vol_snap_create(v, "s"), 0);
}

/*
 * The cleaner moves what only a snapshot keeps. The snapshot's blocks
 * are written interleaved with three times as many that die before it is
 * taken (the cleaner kept from running till then), so
 * that each of its segments is three quarters dead; then the live state is
 * rewritten many times over. Without moving the snapshot's blocks, every
 * one of those segments stays (the snapshot's and the dead blocks beside
 * them); with raw moves and the re-root after them, the cleaner compacts
 * them to half or less. The snapshot reads the same throughout, in place
 * and after a reopen, and vol_check agrees with the counts each time.
 */
static void test_cleaner_moves_snapshot_blocks(void **state)
{
	/* no cleaning till the snapshot is taken */
	struct vol_open_opts oo = {.voo_clean_low = 1, .voo_clean_high = 2};
	struct bdev *d = vf_mkfs(48 * VF_SEG);
	struct vol *v = vf_open_opts(d, &oo), *w;
	struct model live = {0}, snap;
	struct vol_usage_stats us;
	uint64_t snap_segs, pinned;
	struct prng rng;

	(void)state;
	test_watchdog("test_cleaner_moves_snapshot_blocks", 240);
	prng_init(&rng, test_seed("vol snapshot moves", 20261205));
	sparse_snapshot(v, &live);
	snap = live;
	vol_usage(v, &us);
	snap_segs = us.vus_snap_segments; /* every segment in use: it marked them */
	assert_int_equal(us.vus_raw_moved, 0);
	vol_clean_watermarks(v, 36, 40); /* a cleaner that wants most of it free */
	for (unsigned round = 0; round < 6; round++) {
		churn(v, &live, &rng, 1500);
		vol_reroot_wait(v);
		vf_check(v);
		expect_snapshot(d, "s", &snap);
	}
	model_expect(v, &live);
	/* quiet: no more moves, the last ones re-rooted and recounted */
	vol_clean_watermarks(v, 1, 2);
	assert_int_equal(vol_sync(v), 0);
	vol_reroot_wait(v);
	assert_int_equal(vol_snap_reroot(v, "s"), 0);
	vol_usage(v, &us);
	print_message("# snapshot of %u blocks: %" PRIu64 " segments left to it before, %" PRIu64
		      " after; %" PRIu64 " of its blocks moved, %" PRIu64 " re-roots, %" PRIu64
		      " blocks pinned; %" PRIu64 " segments cleaned, %" PRIu64 " released\n",
		      NOWNERS * NINDEX, snap_segs, us.vus_snap_segments, us.vus_raw_moved,
		      us.vus_reroots, us.vus_pinned_blocks, us.vus_cleaned, us.vus_released);
	assert_true(us.vus_raw_moved > 0);
	assert_true(us.vus_reroots > 0);
	/* its 256 blocks fill 4 segments (and its super roots and
	 * translation's tree some more): compacted below where they lay
	 * (without the re-roots, 15 and more stay marked) */
	assert_true(snap_segs >= 12);
	assert_true(us.vus_snap_segments <= 11 && us.vus_snap_segments < snap_segs);
	pinned = us.vus_pinned_blocks;
	assert_true(pinned < 2 * NOWNERS * NINDEX);

	/* the open's walk counts the same */
	w = vf_reopen_copy(d, 0);
	vf_check(w);
	model_expect(w, &live);
	assert_int_equal(vol_close(w), 0);

	assert_int_equal(vol_snap_delete(v, "s"), 0);
	vf_check(v);
	vol_usage(v, &us);
	assert_int_equal(us.vus_pinned_blocks, 0);
	assert_int_equal(us.vus_snap_segments, 0);
	assert_int_equal(vol_close(v), 0);
	test_watchdog_cancel();
}

/* Write every block of @live again @rounds times, with the same contents. */
static void rewrite_same(struct vol *v, const struct model *live, unsigned rounds)
{
	for (unsigned round = 0; round < rounds; round++) {
		for (unsigned i = 0; i < NINDEX; i++)
			for (unsigned o = 0; o < NOWNERS; o++)
				vf_write(v, OWNER0 + o, i, live->m_ver[o][i]);
		assert_int_equal(vol_sync(v), 0);
	}
}

/*
 * A recount marks where a snapshot's blocks are now, not only where its
 * translation puts them. The cleaner moves the snapshot's blocks while
 * they are still the state's too, by their entries: the snapshot reads
 * them where they were, but once they die, a re-root would have it read
 * them where they are now. The recount after a deletion must leave those
 * segments marked (the liveness rule: a current entry whose life holds a
 * snapshot's delta), so that a block dying there is pinned, not
 * released.
 */
static void test_recount_marks_moved_current_blocks(void **state)
{
	struct vol_open_opts oo = {.voo_clean_low = 1, .voo_clean_high = 2};
	struct bdev *d = vf_mkfs(48 * VF_SEG);
	struct vol *v = vf_open_opts(d, &oo);
	static uint64_t before[NOWNERS][NINDEX];
	struct model live = {0};
	unsigned moved = 0, unmarked = 0;

	(void)state;
	test_watchdog("test_recount_marks_moved_current_blocks", 240);
	sparse_snapshot(v, &live); /* "s": a quarter of each of its segments */
	assert_int_equal(vol_snap_create(v, "t"), 0);
	for (unsigned o = 0; o < NOWNERS; o++)
		for (unsigned i = 0; i < NINDEX; i++)
			before[o][i] = block_at(v, OWNER0 + o, i);
	vol_clean_watermarks(v, 36, 40);
	for (unsigned k = 0; k < 8; k++) { /* commits that clean */
		vf_write(v, OWNER0 + NOWNERS + 1, k, 1);
		assert_int_equal(vol_sync(v), 0);
	}
	vol_clean_watermarks(v, 1, 2);
	assert_int_equal(vol_sync(v), 0);
	assert_int_equal(vol_snap_delete(v, "t"), 0); /* a recount */
	assert_int_equal(vol_sync(v), 0);
	for (unsigned o = 0; o < NOWNERS; o++)
		for (unsigned i = 0; i < NINDEX; i++) {
			uint64_t now = block_at(v, OWNER0 + o, i);

			if (now == before[o][i])
				continue;
			moved++;
			unmarked += !vol_seg_snap(v->v_usage.vu_snap, vol_seg_of(v, now));
		}
	print_message("# %u of the snapshot's blocks moved while current, %u in unmarked "
		      "segments after the recount\n",
		      moved, unmarked);
	assert_true(moved > 0);
	assert_int_equal(unmarked, 0);
	vf_check(v);
	model_expect(v, &live);
	assert_int_equal(vol_close(v), 0);
	test_watchdog_cancel();
}

/* syncpoint callback: at the first raw move, what writers may use is taken
 * (another transaction's reservation, as it were), but half a segment. */
struct room_taker {
	struct vol *rt_vol;
	_Atomic uint64_t rt_taken;
};

static void take_raw_room(const char *point, void *arg)
{
	struct room_taker *rt = arg;
	struct log_space sp;
	uint64_t take;

	(void)point;
	if (atomic_load(&rt->rt_taken))
		return;
	log_space(rt->rt_vol->v_log, &sp);
	take = sp.sp_free - rt->rt_vol->v_geo.lg_seg_blocks / 2;
	if (!log_space_reserve(rt->rt_vol->v_log, take, 0))
		atomic_store(&rt->rt_taken, take);
}

/*
 * Raw moves wait for room, and so do the segments they would empty. The
 * cleaner takes the snapshot's segments as victims; as it reaches the
 * first block only the snapshot keeps, what writers may use runs short
 * (vol.clean.raw), so it moves none. Those victims are not stuck: once
 * the room comes back they are victims again, their blocks move, and
 * they empty. Before, every one scanned without room was kept out of
 * cleaning until a recount, which nothing brought: under ThreadSanitizer
 * a volume filled that way, and test_snapshot_moves_survive_cuts failed
 * with -ENOSPC rewriting the same data.
 */
static void test_raw_moves_wait_for_room(void **state)
{
	struct vol_open_opts oo = {.voo_clean_low = 1, .voo_clean_high = 2};
	struct bdev *d;
	struct vol *v;
	struct model live = {0}, snap;
	struct room_taker rt = {0};
	struct vol_usage_stats us;
	unsigned stuck = 0;

	(void)state;
	if (!SYNCPOINTS_BUILT)
		skip();
	test_watchdog("test_raw_moves_wait_for_room", 240);
	d = vf_mkfs(48 * VF_SEG);
	v = vf_open_opts(d, &oo);
	rt.rt_vol = v;
	sparse_snapshot(v, &live);
	snap = live;
	rewrite_same(v, &live, 1); /* only the snapshot keeps its blocks now */

	syncpoint_reset();
	syncpoint_enable();
	syncpoint_callback("vol.clean.raw", take_raw_room, &rt);
	vol_clean_watermarks(v, 36, 40);
	vf_write(v, OWNER0, 0, live.m_ver[0][0]); /* a commit that cleans */
	assert_int_equal(vol_sync(v), 0);
	vol_clean_watermarks(v, 1, 2);
	assert_int_equal(vol_sync(v), 0);
	syncpoint_reset();
	assert_true(atomic_load(&rt.rt_taken) > 0);
	vol_usage(v, &us);
	assert_int_equal(us.vus_raw_moved, 0);
	for (uint64_t s = 0; s < v->v_geo.lg_nsegments; s++)
		stuck +=
		    __atomic_load_n(&v->v_usage.vu_stuck[s / 64], __ATOMIC_RELAXED) >> (s % 64) & 1;
	assert_int_equal(stuck, 0);

	log_space_release(v->v_log, atomic_load(&rt.rt_taken));
	vol_clean_watermarks(v, 36, 40);
	rewrite_same(v, &live, 2);
	vol_reroot_wait(v);
	vol_clean_watermarks(v, 1, 2);
	assert_int_equal(vol_sync(v), 0);
	vol_usage(v, &us);
	print_message("# with room back: %" PRIu64 " of the snapshot's blocks moved, %" PRIu64
		      " segments left to it\n",
		      us.vus_raw_moved, us.vus_snap_segments);
	assert_true(us.vus_raw_moved > 0);
	vf_check(v);
	expect_snapshot(d, "s", &snap);
	model_expect(v, &live);
	assert_int_equal(vol_close(v), 0);
	test_watchdog_cancel();
}

/*
 * A crash while the cleaner moves a snapshot's blocks, at every cut (or
 * CAIRN_SNAP_CUTS evenly spread ones; 0: all): the live state is rewritten
 * with the same contents, so every durable state reads the same, and the
 * cleaner, wanting most of the volume free, makes raw moves and re-roots
 * the snapshot after them. Each cut, dropped or reordered and torn, must
 * open, pass vol_check, read the live contents, list the snapshot and
 * read it as it was taken: the commit of the moves, the re-root's, and
 * anything between them.
 */
static void test_snapshot_moves_survive_cuts(void **state)
{
	struct vol_open_opts oo = {.voo_clean_low = 1, .voo_clean_high = 2};
	struct bdev *d = vf_mkfs(40 * VF_SEG);
	struct model live = {0}, snap;
	const char *e = getenv("CAIRN_SNAP_CUTS");
	uint64_t first, last, every, want = e ? strtoull(e, NULL, 10) : 300, cuts = 0;
	struct vol_usage_stats us;
	struct vol *v;

	(void)state;
	test_watchdog("test_snapshot_moves_survive_cuts", 600);
	bdev_emu_keep_history(d);
	v = vf_open_opts(d, &oo);
	sparse_snapshot(v, &live);
	snap = live;
	first = bdev_emu_history_writes(d);
	vol_clean_watermarks(v, 24, 28);
	rewrite_same(v, &live, 4);
	vol_reroot_wait(v);
	vol_clean_watermarks(v, 1, 2); /* quiet: the history stops growing */
	assert_int_equal(vol_sync(v), 0);
	vol_usage(v, &us);
	assert_true(us.vus_raw_moved > 0);
	assert_true(us.vus_reroots > 0);
	last = bdev_emu_history_writes(d) + 1;
	every = want && last - first > want ? (last - first) / want : 1;
	for (uint64_t cut = first + 1; cut <= last; cut += every) {
		static const struct bdev_emu_crash hows[] = {
		    {.ec_mode = BDEV_EMU_DROP_ALL},
		    {.ec_mode = BDEV_EMU_REORDER, .ec_tear = true, .ec_seed = 11},
		};

		for (unsigned h = 0; h < 2; h++) {
			struct vol_open_opts so = {.voo_snapshot = "s"},
					     ro = {.voo_read_only = true};
			struct bdev *img, *copy;
			struct vol *cv, *sv;

			/* as the cut left it (read only: a writable open may
			 * re-root at once) */
			assert_int_equal(bdev_emu_crash_at(d, cut, &hows[h], &img), 0);
			assert_int_equal(bdev_emu_open_copy(img, &copy), 0);
			cv = vf_open_opts(copy, &ro);
			if (vol_check(cv, cut_report, &cut, NULL))
				fail_msg("cut %" PRIu64 " (%s): vol_check finds problems", cut,
					 h ? "reorder, tear" : "drop");
			if (!model_is(cv, &live))
				fail_msg("cut %" PRIu64 ": the live state reads otherwise", cut);
			assert_int_equal(vol_close(cv), 0);
			assert_int_equal(bdev_emu_open_copy(img, &copy), 0);
			sv = vf_open_opts(copy, &so);
			if (!model_is(sv, &snap))
				fail_msg("cut %" PRIu64 " (%s): the snapshot reads otherwise", cut,
					 h ? "reorder, tear" : "drop");
			assert_int_equal(vol_close(sv), 0);
			/* and on from there: more moves and re-roots, which may
			 * name the copies the cut left unrooted */
			cv = vf_open(img, 0);
			vol_clean_watermarks(cv, 24, 28);
			rewrite_same(cv, &live, 1);
			vol_reroot_wait(cv);
			vol_clean_watermarks(cv, 1, 2);
			vf_check(cv);
			assert_int_equal(bdev_emu_open_copy(img, &copy), 0);
			sv = vf_open_opts(copy, &so);
			if (!model_is(sv, &snap))
				fail_msg("cut %" PRIu64
					 " (%s), then on: the snapshot reads otherwise",
					 cut, h ? "reorder, tear" : "drop");
			assert_int_equal(vol_close(sv), 0);
			assert_int_equal(vol_close(cv), 0);
			cuts++;
		}
	}
	print_message("# %" PRIu64 " cuts of %" PRIu64 " writes (every %" PRIu64 "); %" PRIu64
		      " snapshot blocks moved, %" PRIu64 " re-roots\n",
		      cuts, last - first, every, us.vus_raw_moved, us.vus_reroots);
	assert_int_equal(vol_close(v), 0);
	test_watchdog_cancel();
}

static int open_beside(const char *path, struct vol *writer, const char *name, struct vol **s);
static struct vol *open_writer(const char *path);

/* syncpoint callback: the first raw move's commit will fail (its flush). */
static void fail_raw_commit(const char *point, void *arg)
{
	static _Atomic bool armed;

	(void)point;
	if (!atomic_exchange(&armed, true))
		bdev_emu_fail_op(arg, BDEV_EMU_FLUSH, 1, 1, -EIO);
}

/*
 * A commit with raw moves fails (-EIO at its flush): its translation
 * entries name copies that were never durable, so the next commit writes
 * them again, first thing (vol.commit.raw_carried), from the old copies,
 * which nothing let go meanwhile. The snapshot then reads the same, in
 * place and after a reopen, and the counts agree with a walk.
 */
static void test_failed_raw_moves_are_carried(void **state)
{
	struct bdev *d = vf_mkfs(48 * VF_SEG);
	struct vol_open_opts oo = {.voo_clean_low = 1, .voo_clean_high = 2};
	struct vol *v = vf_open_opts(d, &oo), *w;
	struct model live = {0}, snap;
	struct vol_usage_stats us;

	(void)state;
	if (!SYNCPOINTS_BUILT)
		skip();
	test_watchdog("test_failed_raw_moves_are_carried", 240);
	sparse_snapshot(v, &live);
	snap = live;
	rewrite_same(v, &live, 1); /* only the snapshot keeps its blocks */
	syncpoint_reset();
	syncpoint_enable();
	syncpoint_callback("vol.commit.raw", fail_raw_commit, d);
	vol_clean_watermarks(v, 36, 40);
	for (unsigned round = 0; round < 40 && !syncpoint_arrived("vol.commit.raw_carried");
	     round++) {
		for (unsigned i = 0; i < 64; i++) { /* a failed commit's error comes back once */
			struct vol_txn t;
			static uint64_t data[VF_BS / 8];

			if (vol_txn_begin(v, 1, 0, &t))
				continue;
			vf_pattern(data, OWNER0 + NOWNERS + 2, i, round + 1);
			assert_int_equal(vol_write(&t, OWNER0 + NOWNERS + 2, i, data), 0);
			vol_txn_end(&t);
		}
		(void)vol_sync(v); /* the failed commit's error, or 0 */
	}
	vol_clean_watermarks(v, 1, 2);
	bdev_emu_clear_faults(d);
	/* the raw moves' commit failed, and the next wrote them again */
	assert_true(syncpoint_arrived("vol.commit.raw_carried") > 0);
	syncpoint_reset();
	assert_int_equal(vol_sync(v), 0);
	vol_reroot_wait(v);
	vol_usage(v, &us);
	print_message("# %" PRIu64 " raw moves, %" PRIu64 " re-roots\n", us.vus_raw_moved,
		      us.vus_reroots);
	vf_check(v);
	expect_snapshot(d, "s", &snap);
	w = vf_reopen_copy(d, 0);
	vf_check(w);
	assert_int_equal(vol_close(w), 0);
	assert_int_equal(vol_close(v), 0);
	test_watchdog_cancel();
}

/* Have the cleaner move blocks: most of the volume wanted free while
 * @rounds rounds rewrite 256 blocks of an owner no snapshot holds. */
static void clean_hard(struct vol *v, uint32_t *ver, unsigned rounds)
{
	vol_clean_watermarks(v, 12, 16);
	for (unsigned r = 0; r < rounds; r++) {
		++*ver;
		for (unsigned i = 0; i < 256; i++)
			vf_write(v, OWNER0 + NOWNERS + 2, i, *ver);
		assert_int_equal(vol_sync(v), 0);
	}
	vol_clean_watermarks(v, 1, 2);
	assert_int_equal(vol_sync(v), 0);
}

/* The model's blocks that @a and @b read at different places, under map
 * blocks both read at the same place. */
static unsigned moved_under_shared_maps(struct vol *a, struct vol *b)
{
	uint64_t node = bmap_node_index(&a->v_map, 1, 0);
	unsigned moved = 0;

	for (unsigned o = 0; o < NOWNERS; o++) {
		uint64_t ma = 0, mb = 0;

		assert_int_equal(vol_resolve(a, OWNER0 + o, node, &ma), 0);
		assert_int_equal(vol_resolve(b, OWNER0 + o, node, &mb), 0);
		for (unsigned i = 0; i < NINDEX && ma == mb; i++) {
			uint64_t pa = 0, pb = 0;

			assert_int_equal(vol_resolve(a, OWNER0 + o, i, &pa), 0);
			assert_int_equal(vol_resolve(b, OWNER0 + o, i, &pb), 0);
			moved += pa != pb;
		}
	}
	return moved;
}

/*
 * Two snapshots reading shared map blocks through different
 * translations. "new" and "old" keep the same state, "new" in the first
 * slot (a walk meets it first). The live state writes their blocks again
 * (the same contents), so that only snapshots keep the old ones; their
 * map blocks lie in a segment too full to clean. The cleaner moves some
 * by address (raw moves); the re-root that follows is held at
 * vol.reroot.round while a reader opens "old", so the round re-roots
 * "new" alone and passes "old" over: the two read some blocks at
 * different places under the same map blocks. A recount must count the
 * copies each one reads; then the volume is filled to -ENOSPC and
 * emptied three times, so that every segment released is reused, and
 * the reader and a new open of "new" must read what was kept.
 */
/*
 * test_snapshots_on_two_translations's volume at @path: "old" open in *@r,
 * "new" re-rooted alone; *@moved: the blocks the two read at different
 * places under shared map blocks. The writer.
 */
static struct vol *two_translations(char *path, struct model *live_out, struct vol **r,
				    unsigned *moved)
{
	struct model live = {0};
	struct vol_usage_stats us = {0};
	uint64_t filler = 0;
	uint32_t ver = 0;
	struct vol *v, *s;

	vf_mkfs_file(path, 48 * VF_SEG);
	v = open_writer(path);
	vol_clean_watermarks(v, 1, 2);
	for (unsigned i = 0; i < NINDEX; i++)
		for (unsigned o = 0; o < NOWNERS; o++) {
			vf_write(v, OWNER0 + o, i, ++live.m_ver[o][i]);
			for (unsigned k = 0; k < 3; k++)
				vf_write(v, OWNER0 + NOWNERS, filler++, 1);
		}
	for (uint64_t k = 0; k < filler; k++)
		punch_freeing(v, OWNER0 + NOWNERS, k);
	/* the owners' map blocks written again amid blocks that stay: a
	 * segment too full for the cleaner, so that they never move */
	assert_int_equal(vol_sync(v), 0);
	for (unsigned k = 0; k < 100; k++)
		vf_write(v, OWNER0 + NOWNERS + 1, k, 1);
	for (unsigned o = 0; o < NOWNERS; o++)
		vf_write(v, OWNER0 + o, NINDEX, 1); /* past the model */
	assert_int_equal(vol_sync(v), 0);
	for (unsigned k = 100; k < 200; k++)
		vf_write(v, OWNER0 + NOWNERS + 1, k, 1);
	assert_int_equal(vol_snap_create(v, "z"), 0);
	assert_int_equal(vol_snap_create(v, "old"), 0);
	assert_int_equal(vol_snap_delete(v, "z"), 0);
	assert_int_equal(vol_snap_create(v, "new"), 0); /* the same blocks, the first slot */
	rewrite_same(v, &live, 1);
	vol_usage(v, &us);
	assert_int_equal(us.vus_raw_moved, 0);

	syncpoint_reset();
	syncpoint_enable();
	syncpoint_order("test.release", "vol.reroot.round");
	for (unsigned tries = 0; tries < 16 && !us.vus_raw_moved; tries++) {
		clean_hard(v, &ver, 1);
		vol_usage(v, &us);
	}
	assert_true(us.vus_raw_moved > 0);
	syncpoint_wait_arrived("vol.reroot.round", 1);
	assert_int_equal(open_beside(path, v, "old", r), 0);
	syncpoint_hit("test.release");
	vol_reroot_wait(v);
	syncpoint_reset();
	assert_int_equal(open_beside(path, v, "new", &s), 0);
	*moved = moved_under_shared_maps(*r, s);
	assert_int_equal(vol_close(s), 0);
	*live_out = live;
	return v;
}

static void test_snapshots_on_two_translations(void **state)
{
	char path[VF_PATH_MAX];
	struct model live;
	struct vol_usage_stats us;
	struct vol *v = NULL, *r = NULL, *s;
	unsigned moved = 0, attempt;

	(void)state;
	if (!SYNCPOINTS_BUILT)
		skip();
	test_watchdog("test_snapshots_on_two_translations", 600);
	/* what the cleaner takes first follows the commits' timing: again on
	 * a new volume if its raw moves missed the snapshots' data */
	for (attempt = 0; attempt < 4 && !moved; attempt++) {
		if (v) {
			assert_int_equal(vol_close(r), 0);
			assert_int_equal(vol_close(v), 0);
			vf_remove_file(path);
		}
		v = two_translations(path, &live, &r, &moved);
	}
	vol_usage(v, &us);
	print_message("# attempt %u: %u blocks the two read at different places under shared "
		      "map blocks; %" PRIu64 " raw moves, %" PRIu64 " re-rooted\n",
		      attempt, moved, us.vus_raw_moved, us.vus_reroots);
	assert_true(moved > 0);
	assert_int_equal(us.vus_reroots, 1); /* "new" alone */

	/* a recount (a deletion's), then the released segments reused */
	assert_int_equal(vol_snap_create(v, "t"), 0);
	assert_int_equal(vol_snap_delete(v, "t"), 0);
	vf_check(v);
	for (unsigned round = 0; round < 3; round++) {
		static uint64_t data[VF_BS / 8];
		uint64_t n = 0;
		struct vol_txn t;

		while (!vol_txn_begin(v, 1, 0, &t)) {
			vf_pattern(data, OWNER0 + NOWNERS + 3, n, round + 1);
			assert_int_equal(vol_write(&t, OWNER0 + NOWNERS + 3, n++, data), 0);
			vol_txn_end(&t);
		}
		for (uint64_t k = 0; k < n; k++)
			punch_freeing(v, OWNER0 + NOWNERS + 3, k);
		assert_int_equal(vol_sync(v), 0);
	}
	vol_usage(v, &us);
	print_message("# %" PRIu64 " segments released\n", us.vus_released);
	model_expect(r, &live);
	assert_int_equal(vol_close(r), 0);
	assert_int_equal(open_beside(path, v, "new", &s), 0);
	model_expect(s, &live);
	assert_int_equal(vol_close(s), 0);
	vf_check(v);
	assert_int_equal(vol_close(v), 0);
	vf_remove_file(path);
	test_watchdog_cancel();
}

/*
 * Snapshots taken and deleted while writer threads commit (and the
 * cleaner runs, on a small volume): writer k rewrites its own blocks
 * with rising versions and publishes the last version whose
 * transaction ended. A snapshot must hold, for each writer, a version
 * at least the one published before vol_snap_create was called (it
 * syncs first) and at most the one published after it returned. Run
 * under TSan in CI.
 */
#define CW_WRITERS 3
#define CW_BLOCKS  16
#define CW_SNAPS   12

struct cw_writer {
	struct vol *w_vol;
	unsigned w_id;
	_Atomic uint32_t w_done; /* last version fully written */
	atomic_bool *w_stop;
};

static void *cw_writer_main(void *arg)
{
	struct cw_writer *w = arg;

	for (uint32_t ver = 1; !atomic_load(w->w_stop); ver++) {
		for (unsigned i = 0; i < CW_BLOCKS; i++)
			vf_write(w->w_vol, OWNER0 + w->w_id, i, ver);
		atomic_store(&w->w_done, ver);
		if (ver % 4 == 0)
			assert_int_equal(vol_sync(w->w_vol), 0);
	}
	return NULL;
}

/* Does every block of writer @id hold a version in [@lo, @hi] in @v? */
static bool cw_within(struct vol *v, unsigned id, uint32_t lo, uint32_t hi)
{
	for (unsigned i = 0; i < CW_BLOCKS; i++) {
		bool found = false;

		for (uint32_t ver = lo; ver <= hi && !found; ver++)
			found = vf_has(v, OWNER0 + id, i, ver);
		if (!found)
			return false;
	}
	return true;
}

static void test_snapshots_beside_writers(void **state)
{
	struct bdev *d = vf_mkfs(24 * VF_SEG);
	struct vol *v = vf_open(d, 0);
	struct cw_writer w[CW_WRITERS];
	uint32_t before[CW_SNAPS][CW_WRITERS], after[CW_SNAPS][CW_WRITERS];
	atomic_bool stop = false;
	pthread_t th[CW_WRITERS];
	struct vol_usage_stats us;

	(void)state;
	test_watchdog("test_snapshots_beside_writers", 240);
	for (unsigned k = 0; k < CW_WRITERS; k++) {
		w[k] = (struct cw_writer){.w_vol = v, .w_id = k, .w_stop = &stop};
		test_thread_start(&th[k], cw_writer_main, &w[k]);
	}
	for (unsigned n = 0; n < CW_SNAPS; n++) {
		char name[16];

		snprintf(name, sizeof(name), "c%u", n);
		for (unsigned k = 0; k < CW_WRITERS; k++)
			before[n][k] = atomic_load(&w[k].w_done);
		assert_int_equal(vol_snap_create(v, name), 0);
		for (unsigned k = 0; k < CW_WRITERS; k++)
			after[n][k] = atomic_load(&w[k].w_done) + 1; /* one may be half written */
		if (n >= 4) {					     /* keep four */
			snprintf(name, sizeof(name), "c%u", n - 4);
			assert_int_equal(vol_snap_delete(v, name), 0);
		}
	}
	atomic_store(&stop, true);
	for (unsigned k = 0; k < CW_WRITERS; k++)
		test_thread_join(th[k]);
	vf_check(v);
	for (unsigned n = CW_SNAPS - 4; n < CW_SNAPS; n++) {
		char name[16];
		struct vol *s;
		int err;

		snprintf(name, sizeof(name), "c%u", n);
		s = open_snapshot(d, name, &err);
		assert_non_null(s);
		for (unsigned k = 0; k < CW_WRITERS; k++) /* version 0: a hole */
			if (!cw_within(s, k, before[n][k], after[n][k]))
				fail_msg(
				    "snapshot %s, writer %u: a block outside versions [%u, %u]",
				    name, k, before[n][k], after[n][k]);
		assert_int_equal(vol_close(s), 0);
	}
	vol_usage(v, &us);
	print_message("# %u snapshots beside %u writers; %" PRIu64 " segments cleaned, %" PRIu64
		      " released\n",
		      CW_SNAPS, CW_WRITERS, us.vus_cleaned, us.vus_released);
	assert_int_equal(vol_close(v), 0);
	test_watchdog_cancel();
}

/*
 * Opens of a snapshot in other processes: each is a separate open of the
 * image file, so the pins (bdev_pin) between them are real OFD locks.
 *
 * Beside a writer (which holds the image's exclusive lock) a snapshot
 * opens through voo_snapshot_find, here answered from the writer's table
 * as its daemon would; it reads what it pinned while the writer churns
 * the volume many times over and the cleaner runs. Alone, it holds a
 * shared lock only during the open, so a writer may open after it. An
 * open snapshot cannot be deleted.
 */
static int find_in_writer(void *arg, const char *name, uint64_t *sroot, uint64_t *delta,
			  uint64_t *xlate)
{
	struct vol_snap_info *si;
	size_t n;
	int err = vol_snap_list(arg, &si, &n);

	if (err)
		return err;
	err = -ENOENT;
	for (size_t i = 0; i < n; i++) {
		if (!strcmp(si[i].vsi_name, name)) {
			*sroot = si[i].vsi_sroot;
			*delta = si[i].vsi_delta;
			*xlate = si[i].vsi_xlate;
			err = 0;
		}
	}
	free(si);
	return err;
}

/* Open snapshot @name of the image at @path beside @writer (NULL: alone). */
static int open_beside(const char *path, struct vol *writer, const char *name, struct vol **s)
{
	struct vol_open_opts o = {.voo_snapshot = name,
				  .voo_max_age_ms = 3600 * 1000,
				  .voo_snapshot_find = writer ? find_in_writer : NULL,
				  .voo_snapshot_arg = writer};
	struct bdev *d;
	int err = bdev_open_file(path, VF_BS, 0, BDEV_RDONLY | (writer ? 0 : BDEV_SHARED_LOCK), &d);

	if (err)
		return err;
	err = vol_open(d, &o, s);
	if (err)
		bdev_close(d);
	return err;
}

static struct vol *open_writer(const char *path)
{
	struct bdev *d;

	assert_int_equal(bdev_open_file(path, VF_BS, 0, BDEV_EXCL_LOCK, &d), 0);
	return vf_open(d, 0);
}

static void churn(struct vol *v, struct model *live, struct prng *rng, unsigned ops)
{
	for (unsigned op = 0; op < ops; op++) {
		unsigned o = (unsigned)prng_below(rng, NOWNERS);
		unsigned i = (unsigned)prng_below(rng, NINDEX);

		vf_write(v, OWNER0 + o, i, ++live->m_ver[o][i]);
		if (op % 97 == 96)
			assert_int_equal(vol_sync(v), 0);
	}
	assert_int_equal(vol_sync(v), 0);
}

static void test_snapshot_opens_across_processes(void **state)
{
	char path[VF_PATH_MAX];
	struct model live = {0}, frozen;
	struct vol *v, *s, *s2;
	struct vol_usage_stats us;
	struct bdev *d;
	struct prng rng;

	(void)state;
	test_watchdog("test_snapshot_opens_across_processes", 240);
	prng_init(&rng, 20261205);
	vf_mkfs_file(path, 32 * VF_SEG);
	v = open_writer(path);
	churn(v, &live, &rng, 300);
	assert_int_equal(vol_snap_create(v, "kept"), 0);
	frozen = live;

	/* beside the writer: its lock refuses the usual open */
	assert_int_equal(bdev_open_file(path, VF_BS, 0, BDEV_RDONLY | BDEV_SHARED_LOCK, &d),
			 -EBUSY);
	assert_int_equal(open_beside(path, v, "none", &s), -ENOENT);
	assert_int_equal(open_beside(path, v, "kept", &s), 0);
	churn(v, &live, &rng, 6000); /* the volume written many times over */
	vol_usage(v, &us);
	assert_true(us.vus_released > 32);
	model_expect(s, &frozen);
	model_expect(v, &live);
	assert_int_equal(vol_snap_delete(v, "kept"), -EBUSY); /* open: pinned */
	assert_int_equal(vol_close(s), 0);
	assert_int_equal(vol_close(v), 0);

	/* alone: the lock is held only during the open */
	assert_int_equal(open_beside(path, NULL, "kept", &s), 0);
	assert_int_equal(open_beside(path, NULL, "kept", &s2), 0); /* readers share */
	v = open_writer(path);
	assert_int_equal(vol_snap_delete(v, "kept"), -EBUSY);
	churn(v, &live, &rng, 3000);
	model_expect(s, &frozen);
	model_expect(s2, &frozen);
	assert_int_equal(vol_close(s), 0);
	assert_int_equal(vol_snap_delete(v, "kept"), -EBUSY); /* s2 still reads it */
	assert_int_equal(vol_close(s2), 0);
	assert_int_equal(vol_snap_delete(v, "kept"), 0);
	vf_check(v);
	assert_int_equal(open_beside(path, v, "kept", &s), -ENOENT);
	assert_int_equal(vol_close(v), 0);
	vf_remove_file(path);
	test_watchdog_cancel();
}

/*
 * The orders of an open and a deletion of one snapshot in different
 * processes, forced: (1) the deletion has pinned the name when the open
 * comes: the open fails with -EBUSY, and after the deletion finds
 * nothing; (2) the open has pinned the name and not yet asked for the
 * record when the deletion comes: the deletion fails with -EBUSY and the
 * open reads the snapshot; (3) the open has not pinned the name yet
 * while a whole deletion runs and a new snapshot takes the name: the
 * open reads the new one (it asks for the record only once pinned).
 */
struct pin_racer {
	const char *p_path;
	struct vol *p_writer;
	struct vol *p_snap;
	int p_err;
};

static void *pin_delete_main(void *arg)
{
	struct pin_racer *p = arg;

	syncpoint_thread_name("D");
	p->p_err = vol_snap_delete(p->p_writer, "raced");
	return NULL;
}

static void *pin_open_main(void *arg)
{
	struct pin_racer *p = arg;

	syncpoint_thread_name("O");
	p->p_err = open_beside(p->p_path, p->p_writer, "raced", &p->p_snap);
	return NULL;
}

/* An open of "raced" in thread O, stopped at interleaving point @at. */
static pthread_t open_stopped_at(struct pin_racer *p, const char *at)
{
	pthread_t t;

	syncpoint_enable();
	syncpoint_order("test.release", at);
	test_thread_start(&t, pin_open_main, p);
	syncpoint_wait_arrived(at, 1);
	return t;
}

/* Let the open of open_stopped_at go on: it reads the state @m. */
static void open_go_on(struct pin_racer *p, pthread_t t, const struct model *m)
{
	syncpoint_hit("test.release");
	test_thread_join(t);
	syncpoint_reset();
	assert_int_equal(p->p_err, 0);
	model_expect(p->p_snap, m);
	assert_int_equal(vol_close(p->p_snap), 0);
}

static void test_open_and_delete_race(void **state)
{
	char path[VF_PATH_MAX];
	struct model m = {0};
	struct pin_racer p;
	struct vol *v, *s;
	struct prng rng;
	pthread_t t;

	(void)state;
	if (!SYNCPOINTS_BUILT)
		skip();
	test_watchdog("test_open_and_delete_race", 60);
	prng_init(&rng, 7);
	vf_mkfs_file(path, 16 * VF_SEG);
	v = open_writer(path);
	churn(v, &m, &rng, 50);
	p = (struct pin_racer){.p_path = path, .p_writer = v};

	/* (1) the deletion first */
	assert_int_equal(vol_snap_create(v, "raced"), 0);
	syncpoint_reset();
	syncpoint_enable();
	syncpoint_order("test.release", "vol.snap.delete.pinned@D");
	test_thread_start(&t, pin_delete_main, &p);
	syncpoint_wait_arrived("vol.snap.delete.pinned@D", 1);
	assert_int_equal(open_beside(path, v, "raced", &s), -EBUSY);
	syncpoint_hit("test.release");
	test_thread_join(t);
	syncpoint_reset();
	assert_int_equal(p.p_err, 0);
	assert_int_equal(open_beside(path, v, "raced", &s), -ENOENT);

	/* (2) the open first */
	assert_int_equal(vol_snap_create(v, "raced"), 0);
	t = open_stopped_at(&p, "vol.snap.open.pinned@O");
	assert_int_equal(vol_snap_delete(v, "raced"), -EBUSY);
	open_go_on(&p, t, &m);

	/* (3) the open stopped before its pin while the snapshot is deleted,
	 * the volume changes and the name is taken again: it opens the new
	 * snapshot, never what the deleted one kept */
	t = open_stopped_at(&p, "vol.snap.open.pin@O");
	assert_int_equal(vol_snap_delete(v, "raced"), 0);
	churn(v, &m, &rng, 50);
	assert_int_equal(vol_snap_create(v, "raced"), 0);
	open_go_on(&p, t, &m);
	assert_int_equal(vol_snap_delete(v, "raced"), 0);
	vf_check(v);
	assert_int_equal(vol_close(v), 0);
	vf_remove_file(path);
	test_watchdog_cancel();
}

/*
 * The orders of an open and a re-root of one snapshot in different
 * processes, forced: (1) the re-root holds the snapshot's second key when
 * the open comes: the open waits for it (it does not fail) and reads the
 * snapshot through the translation the re-root named; (2) the open holds
 * it when a re-root comes: the re-root is refused (-EBUSY), and once the
 * open closed it goes through, and a new open reads the snapshot too.
 */
static void *pin_reroot_main(void *arg)
{
	struct pin_racer *p = arg;

	syncpoint_thread_name("R");
	p->p_err = vol_snap_reroot(p->p_writer, "raced");
	return NULL;
}

/* Snapshot "raced"'s translation super root, as @v lists it. */
static uint64_t raced_xlate(struct vol *v)
{
	struct vol_snap_info *si;
	uint64_t xlate;
	size_t n;

	assert_int_equal(vol_snap_list(v, &si, &n), 0);
	assert_int_equal(n, 1);
	xlate = si[0].vsi_xlate;
	free(si);
	return xlate;
}

static void test_open_and_reroot_race(void **state)
{
	char path[VF_PATH_MAX];
	struct model m = {0}, frozen;
	struct pin_racer o, r;
	struct vol *v, *s;
	struct prng rng;
	struct vol_sroot xr;
	pthread_t tr, to;
	uint64_t xlate;

	(void)state;
	if (!SYNCPOINTS_BUILT)
		skip();
	test_watchdog("test_open_and_reroot_race", 60);
	prng_init(&rng, 11);
	vf_mkfs_file(path, 16 * VF_SEG);
	v = open_writer(path);
	churn(v, &m, &rng, 50);
	assert_int_equal(vol_snap_create(v, "raced"), 0);
	frozen = m;
	churn(v, &m, &rng, 100);
	o = (struct pin_racer){.p_path = path, .p_writer = v};
	r = o;

	/* (1) the re-root first: the open waits for it */
	syncpoint_reset();
	syncpoint_enable();
	syncpoint_order("test.release", "vol.snap.reroot.pinned@R");
	test_thread_start(&tr, pin_reroot_main, &r);
	syncpoint_wait_arrived("vol.snap.reroot.pinned@R", 1);
	test_thread_start(&to, pin_open_main, &o);
	syncpoint_wait_arrived("vol.snap.open.wait@O", 1);
	syncpoint_hit("test.release");
	test_thread_join(tr);
	test_thread_join(to);
	syncpoint_reset();
	assert_int_equal(r.p_err, 0);
	assert_int_equal(o.p_err, 0);
	xlate = raced_xlate(v);
	assert_true(xlate != 0);
	/* it waited: it reads through the translation the re-root named */
	assert_int_equal(vol_sroot_load(v, xlate, &xr), 0);
	assert_int_equal(o.p_snap->v_dat.bt_root, xr.sr_dat_root);
	model_expect(o.p_snap, &frozen);

	/* (2) the open first: the re-root is refused while it reads */
	churn(v, &m, &rng, 100);
	assert_int_equal(vol_snap_reroot(v, "raced"), -EBUSY);
	assert_int_equal(raced_xlate(v), xlate);
	model_expect(o.p_snap, &frozen);
	assert_int_equal(vol_close(o.p_snap), 0);
	assert_int_equal(vol_snap_reroot(v, "raced"), 0);
	assert_true(raced_xlate(v) != xlate);
	assert_int_equal(open_beside(path, v, "raced", &s), 0);
	model_expect(s, &frozen);
	assert_int_equal(vol_close(s), 0);
	vf_check(v);
	assert_int_equal(vol_close(v), 0);
	vf_remove_file(path);
	test_watchdog_cancel();
}

/* ---- recent checkpoints ------------------------------------------------- */

#define CKPT_BLOCKS 16 /* blocks a round rewrites, in one transaction */
#define CKPT_ROUNDS 256

struct ckpt_round {
	uint64_t cr_delta; /* the newest checkpoint once the round's sync returned */
	struct model cr_m; /* the state after the round */
};

/* The newest checkpoint's delta. */
static uint64_t ckpt_newest(struct vol *v)
{
	struct vol_checkpoint *cp;
	uint64_t delta;
	size_t n;

	assert_int_equal(vol_checkpoints(v, 1, &cp, &n), 0);
	assert_int_equal(n, 1);
	delta = cp[0].vcp_delta;
	free(cp);
	return delta;
}

/* Round @r: rewrite @nb blocks (a divisor of NINDEX) in one transaction
 * (so that every checkpoint is the state after some round), sync, and
 * note it. */
static void ckpt_round_of(struct vol *v, struct model *live, struct ckpt_round *rounds, unsigned r,
			  unsigned nb)
{
	static uint64_t data[VF_BS / 8];
	unsigned o = r % NOWNERS, first = (r / NOWNERS) % (NINDEX / nb) * nb;
	struct vol_txn t;

	assert_int_equal(vol_txn_begin(v, nb, 0, &t), 0);
	for (unsigned i = first; i < first + nb; i++) {
		vf_pattern(data, OWNER0 + o, i, ++live->m_ver[o][i]);
		assert_int_equal(vol_write(&t, OWNER0 + o, i, data), 0);
	}
	vol_txn_end(&t);
	assert_int_equal(vol_sync(v), 0);
	rounds[r] = (struct ckpt_round){ckpt_newest(v), *live};
}

static void ckpt_round(struct vol *v, struct model *live, struct ckpt_round *rounds, unsigned r)
{
	ckpt_round_of(v, live, rounds, r, CKPT_BLOCKS);
}

/* Open checkpoint @delta of @d's durable state on a copy of it. */
static struct vol *open_checkpoint(struct bdev *d, uint64_t delta, int *err)
{
	struct vol_open_opts o = {.voo_checkpoint = delta};

	return open_copy(d, &o, err);
}

/*
 * Checkpoint @delta reads as the state after the round it belongs to:
 * the last round whose sync returned at or before it, or the next one
 * (committed before its own sync, by a commit the volume forced).
 */
static bool ckpt_reads_right(struct vol *cv, const struct ckpt_round *rounds, unsigned nrounds,
			     uint64_t delta)
{
	static const struct model empty;
	unsigned k = 0;

	while (k < nrounds && rounds[k].cr_delta <= delta)
		k++;
	/* rounds 0..k-1 are in it for sure; round k may be */
	if (model_is(cv, k ? &rounds[k - 1].cr_m : &empty))
		return true;
	return k < nrounds && model_is(cv, &rounds[k].cr_m);
}

/*
 * Every checkpoint listed (with @some, only the newest, the oldest and
 * one between) opens, read only, and reads as its round left the
 * volume; returns how many were listed. The list is newest first,
 * deltas falling.
 */
static size_t expect_checkpoints_of(struct bdev *d, struct vol *v, const struct ckpt_round *rounds,
				    unsigned nrounds, bool some)
{
	struct vol_checkpoint *cp;
	size_t n;

	assert_int_equal(vol_checkpoints(v, SIZE_MAX, &cp, &n), 0);
	for (size_t i = 0; i < n; i++) {
		struct vol *cv;
		int err;

		if (i)
			assert_true(cp[i].vcp_delta < cp[i - 1].vcp_delta);
		assert_true(cp[i].vcp_time_ns > 0);
		if (some && i && i != n / 2 && i != n - 1)
			continue;
		cv = open_checkpoint(d, cp[i].vcp_delta, &err);
		if (!cv)
			fail_msg("checkpoint %" PRIu64 " is listed but does not open: %d",
				 cp[i].vcp_delta, err);
		if (!ckpt_reads_right(cv, rounds, nrounds, cp[i].vcp_delta))
			fail_msg("checkpoint %" PRIu64 " does not read as its round left it",
				 cp[i].vcp_delta);
		assert_int_equal(vol_snap_create(cv, "no"), -EROFS);
		assert_int_equal(vol_close(cv), 0);
	}
	free(cp);
	return n;
}

static size_t expect_checkpoints(struct bdev *d, struct vol *v, const struct ckpt_round *rounds,
				 unsigned nrounds)
{
	return expect_checkpoints_of(d, v, rounds, nrounds, false);
}

/* Is checkpoint @delta listed? */
static bool ckpt_listed(struct vol *v, uint64_t delta)
{
	struct vol_checkpoint *cp;
	bool found = false;
	size_t n;

	assert_int_equal(vol_checkpoints(v, SIZE_MAX, &cp, &n), 0);
	for (size_t i = 0; i < n; i++)
		found |= cp[i].vcp_delta == delta;
	free(cp);
	return found;
}

/*
 * With a protection period and room to spare, every checkpoint of the
 * run stays readable, across a reopen too (the open finds which empty
 * segments hold their blocks); a checkpoint never made is -ENOENT.
 */
static void test_checkpoints_stay_readable(void **state)
{
	static struct ckpt_round rounds[CKPT_ROUNDS];
	struct vol_open_opts oo = {.voo_protect_s = 3600, .voo_max_age_ms = 3600 * 1000};
	struct bdev *d = vf_mkfs(64 * VF_SEG), *d2;
	struct vol *v = vf_open_opts(d, &oo), *cv;
	struct model live = {0};
	unsigned r = 0;
	int err;

	(void)state;
	test_watchdog("test_checkpoints_stay_readable", 240);
	for (; r < 24; r++)
		ckpt_round(v, &live, rounds, r);
	assert_true(expect_checkpoints(d, v, rounds, r) >= r); /* every round's, and more */
	for (unsigned k = 0; k < r; k++)
		assert_true(ckpt_listed(v, rounds[k].cr_delta));
	assert_null(open_checkpoint(d, rounds[r - 1].cr_delta + 1000, &err));
	assert_int_equal(err, -ENOENT);
	assert_int_equal(vol_sync(v), 0);
	assert_int_equal(bdev_emu_open_copy(d, &d2), 0); /* the image, as a reopen finds it */
	assert_int_equal(vol_close(v), 0);		 /* closes d */
	d = d2;
	v = vf_open_opts(d, &oo);
	for (; r < 32; r++)
		ckpt_round(v, &live, rounds, r);
	for (unsigned k = 0; k < r; k++)
		assert_true(ckpt_listed(v, rounds[k].cr_delta));
	expect_checkpoints(d, v, rounds, r);
	vf_check(v);
	/* a checkpoint is not a snapshot: opening both at once is refused */
	cv = NULL;
	assert_int_equal(
	    vol_open(d, &(struct vol_open_opts){.voo_snapshot = "x", .voo_checkpoint = 2}, &cv),
	    -EINVAL);
	assert_int_equal(vol_close(v), 0);
	test_watchdog_cancel();
}

/*
 * Without a protection period, segments go back to the log as soon as
 * they empty, and the checkpoints whose blocks they held stop being
 * listed; with one, on a small volume written many times its size, the
 * period yields to the space needed (no -ENOSPC), and whatever is listed
 * still reads right.
 */
static void test_checkpoints_give_way(void **state)
{
	static struct ckpt_round rounds[CKPT_ROUNDS];

	(void)state;
	test_watchdog("test_checkpoints_give_way", 240);
	for (int pass = 0; pass < 2; pass++) {
		struct vol_open_opts oo = {.voo_protect_s = pass ? 3600 : 0,
					   .voo_max_age_ms = 3600 * 1000};
		struct bdev *d = vf_mkfs(24 * VF_SEG);
		struct vol *v = vf_open_opts(d, &oo);
		struct vol_usage_stats us;
		struct model live = {0};
		unsigned r;
		size_t listed;
		int err;

		for (r = 0; r < CKPT_ROUNDS; r++) {
			ckpt_round(v, &live, rounds, r);
			if (r % 16 == 15)
				vf_check(v); /* no free segment a listed checkpoint needs */
		}
		listed = expect_checkpoints(d, v, rounds, r);
		vol_usage(v, &us);
		print_message("# protection %us: %zu checkpoints readable of %" PRIu64 ", %" PRIu64
			      " segments released\n",
			      oo.voo_protect_s, listed, rounds[r - 1].cr_delta, us.vus_released);
		assert_true(us.vus_released > 24); /* written over many times */
		assert_true(listed >= 1 && listed < r);
		assert_false(ckpt_listed(v, rounds[0].cr_delta));
		assert_null(open_checkpoint(d, rounds[0].cr_delta, &err));
		assert_int_equal(err, -ENOENT);
		model_expect(v, &live);
		vf_check(v);
		assert_int_equal(vol_close(v), 0);
	}
	test_watchdog_cancel();
}

/*
 * A power cut anywhere leaves every checkpoint the recovered volume
 * lists readable as it was: a segment is reused only once a durable
 * super root or checkpoint slot stopped listing the checkpoints it held.
 */
static void test_checkpoints_survive_cuts(void **state)
{
	static struct ckpt_round rounds[CKPT_ROUNDS];
	/* no period: a segment goes as soon as it empties; a checkpoint slot
	 * per commit: recovery never holds one back */
	struct vol_open_opts oo = {.voo_max_age_ms = 3600 * 1000, .voo_checkpoint_every = 1};
	struct bdev *d = vf_mkfs(16 * VF_SEG);
	struct vol_usage_stats us;
	struct model live = {0};
	uint64_t writes, stride, cuts = 0;
	struct vol *v;
	unsigned r;

	(void)state;
	test_watchdog("test_checkpoints_survive_cuts", 600);
	bdev_emu_keep_history(d);
	v = vf_open_opts(d, &oo);
	for (r = 0; r < 80; r++)
		ckpt_round(v, &live, rounds, r);
	vol_usage(v, &us);
	assert_true(us.vus_released > 16); /* segments were reused */
	writes = bdev_emu_history_writes(d);
	/* every write, up to 200 (40 in the sanitizers' slower builds) */
	stride = writes / (getenv("CAIRN_WATCHDOG_SCALE") ? 40 : 200) + 1;
	for (uint64_t cut = 1; cut <= writes + 1; cut += stride) {
		static const struct bdev_emu_crash hows[] = {
		    {.ec_mode = BDEV_EMU_DROP_ALL},
		    {.ec_mode = BDEV_EMU_REORDER, .ec_tear = true, .ec_seed = 11},
		    {.ec_mode = BDEV_EMU_KEEP_ALL, .ec_tear = true, .ec_seed = 5},
		};

		for (unsigned h = 0; h < ARRAY_SIZE(hows); h++) {
			struct bdev *img;
			struct vol *cv;

			assert_int_equal(bdev_emu_crash_at(d, cut, &hows[h], &img), 0);
			cv = vf_open_opts(img, &(struct vol_open_opts){.voo_read_only = true});
			expect_checkpoints_of(img, cv, rounds, r, true);
			assert_int_equal(vol_close(cv), 0);
			cuts++;
		}
	}
	print_message("# %" PRIu64 " cuts of %" PRIu64 " writes, %" PRIu64 " segments released\n",
		      cuts, writes, us.vus_released);
	assert_int_equal(vol_close(v), 0);
	test_watchdog_cancel();
}

/*
 * A recent checkpoint pinned as a snapshot after the fact reads as it
 * was after the volume is written over many times (the floor passes it,
 * its segments would be reused), and after a reopen; once a checkpoint
 * is no longer readable it cannot be pinned (-ENOENT).
 */
static void test_checkpoint_becomes_snapshot(void **state)
{
	static struct ckpt_round rounds[CKPT_ROUNDS];
	struct vol_open_opts oo = {.voo_protect_s = 3600, .voo_max_age_ms = 3600 * 1000};
	struct bdev *d = vf_mkfs(32 * VF_SEG);
	struct vol *v = vf_open_opts(d, &oo), *r2;
	struct vol_usage_stats us;
	struct model live = {0};
	unsigned r;

	(void)state;
	test_watchdog("test_checkpoint_becomes_snapshot", 240);
	for (r = 0; r < 8; r++)
		ckpt_round(v, &live, rounds, r);
	assert_int_equal(vol_snap_create_at(v, "back", rounds[3].cr_delta), 0);
	assert_int_equal(vol_snap_create_at(v, "back", rounds[4].cr_delta), -EEXIST);
	assert_int_equal(vol_snap_create_at(v, "ahead", rounds[7].cr_delta + 100), -ENOENT);
	vf_check(v);
	for (; r < CKPT_ROUNDS && ckpt_listed(v, rounds[4].cr_delta); r++)
		ckpt_round(v, &live, rounds, r);
	assert_true(r < CKPT_ROUNDS); /* the floor passed round 4's checkpoint */
	assert_int_equal(vol_snap_create_at(v, "late", rounds[4].cr_delta), -ENOENT);
	for (unsigned end = r + 32; r < end; r++) /* and the volume goes on */
		ckpt_round(v, &live, rounds, r);
	vol_usage(v, &us);
	print_message("# %u rounds, %" PRIu64 " segments released, %" PRIu64 " blocks pinned\n", r,
		      us.vus_released, us.vus_pinned_blocks);
	assert_true(us.vus_pinned_blocks > 0);
	expect_snapshot(d, "back", &rounds[3].cr_m);
	vf_check(v);
	model_expect(v, &live);
	r2 = vf_reopen_copy(d, 0);
	vf_check(r2);
	assert_int_equal(vol_close(r2), 0);
	assert_int_equal(vol_close(v), 0);
	test_watchdog_cancel();
}

struct late_pin {
	struct vol *lp_vol;
	uint64_t lp_delta;
	int lp_err;
};

static void *late_pin_main(void *arg)
{
	struct late_pin *lp = arg;

	syncpoint_thread_name("A");
	lp->lp_err = vol_snap_create_at(lp->lp_vol, "late", lp->lp_delta);
	return NULL;
}

/*
 * A checkpoint found in the chain, and gone before it is pinned: A stops
 * between finding its super root and marking its segments, the volume
 * is written until the floor passes it, and A is told -ENOENT rather
 * than pinning a state whose blocks are being reused.
 */
static void test_checkpoint_pin_loses_the_race(void **state)
{
	static struct ckpt_round rounds[CKPT_ROUNDS];
	struct vol_open_opts oo = {.voo_protect_s = 3600, .voo_max_age_ms = 3600 * 1000};
	struct bdev *d;
	struct vol *v;
	struct late_pin lp;
	struct model live = {0};
	struct vol_snap_info *si;
	pthread_t ta;
	unsigned r;
	size_t n;

	(void)state;
	test_needs_syncpoints();
	test_watchdog("test_checkpoint_pin_loses_the_race", 240);
	d = vf_mkfs(24 * VF_SEG);
	v = vf_open_opts(d, &oo);
	for (r = 0; r < 4; r++)
		ckpt_round(v, &live, rounds, r);
	lp = (struct late_pin){.lp_vol = v, .lp_delta = rounds[1].cr_delta};
	syncpoint_reset();
	syncpoint_enable();
	syncpoint_order("test.release", "vol.snap.create.synced@A");
	test_thread_start(&ta, late_pin_main, &lp);
	syncpoint_wait_arrived("vol.snap.create.synced@A", 1);
	for (; r < CKPT_ROUNDS && ckpt_listed(v, rounds[1].cr_delta); r++)
		ckpt_round(v, &live, rounds, r);
	assert_true(r < CKPT_ROUNDS);
	syncpoint_hit("test.release");
	test_thread_join(ta);
	syncpoint_reset();
	assert_int_equal(lp.lp_err, -ENOENT);
	assert_int_equal(vol_snap_list(v, &si, &n), 0);
	assert_int_equal(n, 0);
	free(si);
	vf_check(v);
	assert_int_equal(vol_close(v), 0);
	test_watchdog_cancel();
}

/* ---- a damaged super root in the checkpoint chain ------------------------ */

#define SR_ROUNDS 8
#define SR_TARGET 3 /* the checkpoint damaged: the fourth newest */
#define SR_FLIPS  48
#define SR_CACHE  512 /* blocks: the copies opened read a few dozen */

/* A super root that checksums but does not fit the volume, one way each. */
enum sr_misfit {
	SR_OTAB_HEIGHT, /* past the owner table's most levels */
	SR_OTAB_HEIGHT_MAX,
	SR_DAT_HEIGHT, /* past the translation's most levels */
	SR_DAT_HEIGHT_MAX,
	SR_DAT_NEXT, /* more entries than the translation may have */
	SR_DAT_NEXT_MAX,
	SR_DAT_ROOT, /* translation root outside the segments */
	SR_DAT_ROOT_FAR,
	SR_NMISFITS
};

static void sr_misfit(const struct vol *v, struct vol_sroot *sr, enum sr_misfit how)
{
	switch (how) {
	case SR_OTAB_HEIGHT:
		sr->sr_otab_height = (uint8_t)(v->v_otab_height_max + 1);
		break;
	case SR_OTAB_HEIGHT_MAX:
		sr->sr_otab_height = UINT8_MAX;
		break;
	case SR_DAT_HEIGHT:
		sr->sr_dat_height = (uint8_t)(v->v_dat_height_max + 1);
		break;
	case SR_DAT_HEIGHT_MAX:
		sr->sr_dat_height = UINT8_MAX;
		break;
	case SR_DAT_NEXT:
		sr->sr_dat_next = v->v_dat_max + 1;
		break;
	case SR_DAT_NEXT_MAX:
		sr->sr_dat_next = UINT64_MAX;
		break;
	case SR_DAT_ROOT:
		sr->sr_dat_root = 1; /* a checkpoint slot */
		break;
	case SR_DAT_ROOT_FAR:
		sr->sr_dat_root = UINT64_MAX / 2;
		break;
	default:
		fail();
	}
}

/* open_checkpoint with a small cache: these tests open many. */
static struct vol *open_ckpt_small(struct bdev *d, uint64_t delta, int *err)
{
	struct vol_open_opts o = {.voo_checkpoint = delta, .voo_cache_blocks = SR_CACHE};

	return open_copy(d, &o, err);
}

/* Write @sr (checksummed) at block @blk of a copy of @d. */
static struct bdev *sr_image(struct bdev *d, uint64_t blk, const struct vol_sroot *sr)
{
	unsigned char block[VF_BS];
	struct bdev *img;

	assert_int_equal(bdev_emu_open_copy(d, &img), 0);
	vol_sroot_encode(sr, block, VF_BS);
	assert_int_equal(bdev_write(img, blk, 1, block), 0);
	return img;
}

/* Lines logged that say the checkpoint chain ends at a super root that does not fit. */
static unsigned sr_misfits_logged;

static void sr_sink(enum log_level level, const char *line, void *arg)
{
	(void)arg;
	if (level == LOG_ERR && strstr(line, "does not fit the volume: the checkpoint chain ends"))
		__atomic_add_fetch(&sr_misfits_logged, 1, __ATOMIC_RELAXED);
}

/* A copy of @img opened with @oo, and its recent checkpoints (*cp, *n). */
static struct vol *open_listing(struct bdev *img, const struct vol_open_opts *oo,
				struct vol_checkpoint **cp, size_t *n)
{
	int err;
	struct vol *w = open_copy(img, oo, &err);

	if (!w)
		fail_msg("the volume does not open: %d", err);
	assert_int_equal(vol_checkpoints(w, SIZE_MAX, cp, n), 0);
	return w;
}

/*
 * On image @img, whose checkpoint @bad has a super root that is not this
 * volume's: the open (which walks the recent checkpoints to count them)
 * succeeds, only newer checkpoints are listed, each opens and reads as
 * its round left it, @bad does not open (-ENOENT) nor can it be pinned,
 * each saying why in the log, and vol_check is clean.
 */
static void expect_chain_ends(struct bdev *img, const struct vol_open_opts *oo,
			      const struct ckpt_round *rounds, uint64_t bad)
{
	struct vol_checkpoint *cp;
	struct vol *w, *cv;
	size_t n;
	int err;

	w = open_listing(img, oo, &cp, &n);
	assert_true(n > 0);
	for (size_t i = 0; i < n; i++) {
		if (cp[i].vcp_delta <= bad)
			fail_msg("checkpoint %" PRIu64
				 " is listed, at or past the damaged %" PRIu64,
				 cp[i].vcp_delta, bad);
		cv = open_ckpt_small(img, cp[i].vcp_delta, &err);
		if (!cv)
			fail_msg("checkpoint %" PRIu64 " is listed but does not open: %d",
				 cp[i].vcp_delta, err);
		assert_true(ckpt_reads_right(cv, rounds, SR_ROUNDS, cp[i].vcp_delta));
		assert_int_equal(vol_close(cv), 0);
	}
	free(cp);
	__atomic_store_n(&sr_misfits_logged, 0, __ATOMIC_RELAXED);
	assert_null(open_ckpt_small(img, bad, &err));
	assert_int_equal(err, -ENOENT);
	assert_int_equal(vol_snap_create_at(w, "bad", bad), -ENOENT);
	assert_true(__atomic_load_n(&sr_misfits_logged, __ATOMIC_RELAXED) >= 2);
	vf_check(w);
	assert_int_equal(vol_close(w), 0);
}

/* Read every block of the model from @cv, whatever it returns. */
static void read_all(struct vol *cv)
{
	static uint64_t data[VF_BS / 8];

	for (unsigned o = 0; o < NOWNERS; o++)
		for (unsigned i = 0; i < NINDEX; i++)
			(void)vol_read(cv, OWNER0 + o, i, data);
}

/* Flip bit @bit of field @field (of SR_NFIELDS) of @sr. */
#define SR_NFIELDS 11

static void sr_flip(struct vol_sroot *sr, unsigned field, unsigned bit)
{
	uint64_t *f64[] = {&sr->sr_delta,	   &sr->sr_otab_root, &sr->sr_next_owner,
			   &sr->sr_blocks_written, &sr->sr_prev,      &sr->sr_time_ns,
			   &sr->sr_readable_from,  &sr->sr_dat_root,  &sr->sr_dat_next};

	if (field == 9)
		sr->sr_otab_height ^= (uint8_t)(1u << (bit % 8));
	else if (field == 10)
		sr->sr_dat_height ^= (uint8_t)(1u << (bit % 8));
	else
		*f64[field] ^= 1ull << (bit % 64);
}

/*
 * Checkpoint @bad's super root with one bit of one field flipped (and
 * checksummed again): whatever the flip, the volume opens, the newer
 * checkpoints are listed and read right, @bad and older ones either do
 * not open or open and read (right or wrong: damage no checksum sees),
 * nothing crashes, and the state itself checks clean. True if @bad was
 * listed.
 */
static bool expect_flip_survived(struct bdev *img, const struct vol_open_opts *oo,
				 const struct ckpt_round *rounds, uint64_t bad)
{
	bool listed = false;
	struct vol_checkpoint *cp;
	struct vol *w, *cv;
	size_t n;
	int err;

	w = open_listing(img, oo, &cp, &n);
	assert_true(n >= SR_TARGET);
	for (size_t i = 0; i < n; i++) {
		cv = open_ckpt_small(img, cp[i].vcp_delta, &err);
		if (cp[i].vcp_delta > bad) {
			if (!cv)
				fail_msg("checkpoint %" PRIu64 " does not open: %d",
					 cp[i].vcp_delta, err);
			assert_true(ckpt_reads_right(cv, rounds, SR_ROUNDS, cp[i].vcp_delta));
		} else if (cv) {
			read_all(cv);
		}
		listed |= cp[i].vcp_delta == bad;
		if (cv)
			assert_int_equal(vol_close(cv), 0);
	}
	free(cp);
	cv = open_ckpt_small(img, bad, &err);
	if (cv) {
		read_all(cv);
		assert_int_equal(vol_close(cv), 0);
	}
	vf_check(w);
	assert_int_equal(vol_close(w), 0);
	return listed;
}

/*
 * A recent checkpoint's super root that checksums but does not fit the
 * volume (heights past the most, a translation root outside the
 * segments, more translation entries than it may have) ends the
 * checkpoint chain there, as a bad checksum does: the open's count of
 * the recent checkpoints, the listing and an open of that checkpoint
 * never walk it. Then a seeded run of single bit flips over every field
 * of it (CAIRN_SEED replays one). Run under ASan and UBSan too: walking
 * such a state indexes buffers by its heights and shifts by them.
 */
static void test_damaged_checkpoint_sroot(void **state)
{
	static struct ckpt_round rounds[SR_ROUNDS];
	/* a checkpoint slot every commit: recovery reads no log before the
	 * newest two, so the damaged super root is met only in the chain */
	struct vol_open_opts oo = {
	    .voo_protect_s = 3600, .voo_max_age_ms = 3600 * 1000, .voo_checkpoint_every = 1};
	struct vol_open_opts oc = oo; /* the copies */
	struct bdev *d = vf_mkfs(16 * VF_SEG), *img;
	struct vol *v = vf_open_opts(d, &oo);
	struct vol_checkpoint *cp;
	struct model live = {0};
	uint64_t seed = test_seed("damaged checkpoint super roots", 20261205);
	struct vol_sroot sr;
	struct prng rng;
	unsigned listed = 0;
	size_t n;

	(void)state;
	test_watchdog("test_damaged_checkpoint_sroot", 240);
	oc.voo_cache_blocks = SR_CACHE;
	for (unsigned r = 0; r < SR_ROUNDS; r++)
		ckpt_round(v, &live, rounds, r);
	assert_int_equal(vol_checkpoints(v, SIZE_MAX, &cp, &n), 0);
	assert_true(n > SR_TARGET + 1);
	assert_int_equal(vol_sroot_load(v, cp[SR_TARGET].vcp_sroot, &sr), 0);
	cairn_log_set_sink(sr_sink, NULL); /* the damage is meant: keep the output short */
	for (int how = 0; how < SR_NMISFITS; how++) {
		struct vol_sroot bad = sr;

		sr_misfit(v, &bad, (enum sr_misfit)how);
		img = sr_image(d, cp[SR_TARGET].vcp_sroot, &bad);
		expect_chain_ends(img, &oc, rounds, cp[SR_TARGET].vcp_delta);
		bdev_close(img);
	}
	prng_init(&rng, seed);
	for (unsigned k = 0; k < SR_FLIPS; k++) {
		struct vol_sroot bad = sr;
		unsigned field = (unsigned)prng_below(&rng, SR_NFIELDS);
		unsigned bit = (unsigned)prng_below(&rng, 64);

		sr_flip(&bad, field, bit);
		img = sr_image(d, cp[SR_TARGET].vcp_sroot, &bad);
		listed += expect_flip_survived(img, &oc, rounds, cp[SR_TARGET].vcp_delta);
		bdev_close(img);
	}
	print_message("# %u flips: the damaged checkpoint still listed after %u\n", SR_FLIPS,
		      listed);
	cairn_log_set_sink(NULL, NULL);
	free(cp);
	assert_int_equal(vol_close(v), 0);
	test_watchdog_cancel();
}

int main(void)
{
	static const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_create_list_delete),
	    cmocka_unit_test(test_snapshots_frozen_under_churn),
	    cmocka_unit_test(test_delete_gives_space_back),
	    cmocka_unit_test(test_dead_beside_a_snapshot_are_not_free),
	    cmocka_unit_test(test_deletions_beside_a_snapshot_make_room),
	    cmocka_unit_test(test_create_races_a_commit),
	    cmocka_unit_test(test_blocks_born_after_the_snapshots_go),
	    cmocka_unit_test(test_create_after_a_projection),
	    cmocka_unit_test(test_power_cuts),
	    cmocka_unit_test(test_damaged_snapshots),
	    cmocka_unit_test(test_failed_create_lets_its_marks_go),
	    cmocka_unit_test(test_reroot_reads_through_a_later_translation),
	    cmocka_unit_test(test_cleaner_moves_snapshot_blocks),
	    cmocka_unit_test(test_raw_moves_wait_for_room),
	    cmocka_unit_test(test_recount_marks_moved_current_blocks),
	    cmocka_unit_test(test_snapshot_moves_survive_cuts),
	    cmocka_unit_test(test_snapshots_on_two_translations),
	    cmocka_unit_test(test_failed_raw_moves_are_carried),
	    cmocka_unit_test(test_snapshots_beside_writers),
	    cmocka_unit_test(test_snapshot_opens_across_processes),
	    cmocka_unit_test(test_open_and_delete_race),
	    cmocka_unit_test(test_open_and_reroot_race),
	    cmocka_unit_test(test_checkpoints_stay_readable),
	    cmocka_unit_test(test_checkpoints_give_way),
	    cmocka_unit_test(test_checkpoints_survive_cuts),
	    cmocka_unit_test(test_checkpoint_becomes_snapshot),
	    cmocka_unit_test(test_checkpoint_pin_loses_the_race),
	    cmocka_unit_test(test_damaged_checkpoint_sroot),
	};

	vf_filter_from_env();
	return TEST_RUN("vol_snap", tests);
}

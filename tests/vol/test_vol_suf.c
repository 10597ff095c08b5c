/*
 * test_vol_suf.c - the segment usage file (src/vol/suf.c).
 *
 * Proves: an open reads the segment counts from the file instead of
 * walking the maps, and gets what the walk gets (live, pinned, marks)
 * after writes, truncates, a snapshot and its deletion; a volume whose
 * file is not current (its first open after mkfs, or a commit that had
 * no room for its entries) is counted by a walk, and the next commit
 * makes the file current again; an entry that cannot be one makes the
 * open walk instead, and one that is wrong but possible is reported by
 * vol_check, never trusted silently.
 *
 * Every vol_check (vf_check) also compares the durable file with its
 * walk, so the other volume tests check the file after each workload
 * and every crash case of test_vol_crash checks it after recovery.
 */
#include "harness.h"
#include "vol_fixture.h"

#include "delta/delta.h"
#include "log/log.h"
#include "vol/vol_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define OWNER	  VOL_FIRST_OWNER
#define NSEGS	  64
#define NOWNERS	  6
#define PER_OWNER 40

/* Each owner's blocks 0..PER_OWNER-1 at @version. */
static void write_all(struct vol *v, uint32_t version)
{
	for (uint64_t o = 0; o < NOWNERS; o++)
		for (uint64_t i = 0; i < PER_OWNER; i++)
			vf_write(v, OWNER + o, i, version);
	assert_int_equal(vol_sync(v), 0);
}

static void expect_all(struct vol *v, uint32_t version, uint64_t from)
{
	for (uint64_t o = 0; o < NOWNERS; o++)
		for (uint64_t i = 0; i < PER_OWNER; i++)
			vf_expect(v, OWNER + o, i,
				  o < from	      ? version
				  : i < PER_OWNER / 2 ? version
						      : 0);
}

/* The counts an open found, to compare with those kept before it. */
static void expect_same_usage(struct vol *a, struct vol *b)
{
	struct vol_usage_stats ua, ub;

	vol_usage(a, &ua);
	vol_usage(b, &ub);
	assert_int_equal(ua.vus_live_blocks, ub.vus_live_blocks);
	assert_int_equal(ua.vus_live_segments, ub.vus_live_segments);
	assert_int_equal(ua.vus_pinned_blocks, ub.vus_pinned_blocks);
	assert_int_equal(ua.vus_snap_segments, ub.vus_snap_segments);
}

static uint32_t open_walked(struct vol *v)
{
	struct vol_usage_stats us;

	vol_usage(v, &us);
	return us.vus_open_walked;
}

/*
 * Writes, overwrites and truncates, then a reopen: the counts come from
 * the file (no walk) and are the ones kept before; the first open after
 * mkfs walks (no file yet).
 */
static void test_open_reads_the_file(void **state)
{
	struct vol_open_opts oo = {.voo_checkpoint_every = 1};
	struct bdev *d = vf_mkfs(NSEGS * VF_SEG);
	struct vol *v = vf_open_opts(d, &oo), *r;

	(void)state;
	assert_int_equal(open_walked(v), 1); /* mkfs wrote no file */
	write_all(v, 1);
	write_all(v, 2);
	for (uint64_t o = 3; o < NOWNERS; o++)
		vf_truncate(v, OWNER + o, PER_OWNER / 2, 0);
	vf_check(v);
	assert_true(v->v_sr.sr_suf_current);
	r = vf_reopen_copy(d, 0);
	assert_int_equal(open_walked(r), 0);
	expect_same_usage(v, r);
	expect_all(r, 2, 3);
	vf_check(r);
	/* and on: the reopened volume's commits keep it */
	vf_write(r, OWNER, PER_OWNER, 3);
	vf_check(r);
	assert_int_equal(vol_close(r), 0);
	assert_int_equal(vol_close(v), 0);
}

/*
 * A snapshot's pins and marks come back from the file; deleting it
 * after the reopen gives its blocks back, and the file follows.
 */
static void test_file_keeps_snapshot_pins(void **state)
{
	struct vol_open_opts oo = {.voo_checkpoint_every = 1};
	struct bdev *d = vf_mkfs(NSEGS * VF_SEG);
	struct vol *v = vf_open_opts(d, &oo), *r, *r2;
	struct vol_usage_stats us;

	(void)state;
	write_all(v, 1);
	assert_int_equal(vol_snap_create(v, "s"), 0);
	write_all(v, 2);
	vf_check(v);
	vol_usage(v, &us);
	assert_true(us.vus_pinned_blocks >= NOWNERS * PER_OWNER);
	r = vf_reopen_copy(d, 0);
	assert_int_equal(open_walked(r), 0);
	expect_same_usage(v, r);
	vf_check(r);
	assert_int_equal(vol_snap_delete(r, "s"), 0);
	vf_write(r, OWNER, 0, 3); /* a commit after the recount writes its entries */
	vf_check(r);
	vol_usage(r, &us);
	assert_int_equal(us.vus_pinned_blocks, 0);
	assert_int_equal(us.vus_snap_segments, 0);
	r2 = vf_reopen_copy(r->v_bdev, 0);
	assert_int_equal(open_walked(r2), 0);
	expect_same_usage(r, r2);
	vf_check(r2);
	assert_int_equal(vol_close(r2), 0);
	assert_int_equal(vol_close(r), 0);
	assert_int_equal(vol_close(v), 0);
}

/* Reserve everything a freeing reservation could still get; the amount. */
static uint64_t take_all_space(struct vol *v)
{
	uint64_t taken = 0;

	for (uint64_t n = 1ull << 20; n; n /= 2)
		while (!log_space_reserve(v->v_log, n, LOG_RES_FREEING))
			taken += n;
	return taken;
}

/*
 * A commit with no room for its entries writes none and says the file
 * is not current: a reopen then walks, and gets the same counts; the
 * next commit with room makes the file current again.
 */
static void test_no_room_makes_the_file_stale(void **state)
{
	struct vol_open_opts oo = {.voo_checkpoint_every = 1};
	struct bdev *d = vf_mkfs(NSEGS * VF_SEG);
	struct vol *v = vf_open_opts(d, &oo), *r;
	uint64_t data[VF_BS / 8], taken;
	struct vol_txn t;

	(void)state;
	write_all(v, 1);
	assert_true(v->v_sr.sr_suf_current);
	vf_pattern(data, OWNER, 0, 2);
	assert_int_equal(vol_txn_begin(v, 1, 0, &t), 0);
	assert_int_equal(vol_write(&t, OWNER, 0, data), 0);
	/* neither what the delta reserved nor any free space is left for the
	 * entries: the commit consumes more than the delta reserved (an
	 * underestimate, logged) */
	delta_op_refund(v->v_ds, &t.vt_op, t.vt_op.dop_reserved);
	taken = take_all_space(v);
	assert_true(taken > 0);
	vol_txn_end(&t);
	assert_int_equal(vol_sync(v), 0);
	log_space_release(v->v_log, taken);
	assert_false(v->v_sr.sr_suf_current);
	assert_int_equal(vol_check(v, NULL, NULL, NULL), 0); /* no entry compared */
	r = vf_reopen_copy(d, 0);
	assert_int_equal(open_walked(r), 1);
	expect_same_usage(v, r);
	vf_expect(r, OWNER, 0, 2);
	assert_int_equal(vol_close(r), 0);
	vf_write(v, OWNER, 1, 2);
	assert_int_equal(vol_sync(v), 0);
	assert_int_equal(vol_check(v, NULL, NULL, NULL), 0);
	assert_true(v->v_sr.sr_suf_current);
	r = vf_reopen_copy(d, 0);
	assert_int_equal(open_walked(r), 0);
	expect_same_usage(v, r);
	vf_check(r);
	assert_int_equal(vol_close(r), 0);
	assert_int_equal(vol_close(v), 0);
}

static const char *check_want;
static unsigned check_seen;

static void check_report(void *arg, const char *msg)
{
	(void)arg;
	print_message("# vol_check: %s\n", msg);
	if (check_want && strstr(msg, check_want))
		check_seen++;
}

/*
 * A segment's entry written wrong (the volume's count of it changed
 * under it, and the segment marked for the next commit to write: the
 * file is then checksummed like any log): an entry that cannot be one
 * (more live blocks than the segment has) makes the open walk, and the
 * first commit writes it right again; one that could be (a live block
 * fewer) is read, and vol_check reports it.
 */
static void test_damaged_entry(void **state)
{
	struct vol_open_opts oo = {.voo_checkpoint_every = 1};
	uint64_t seg = UINT64_MAX;

	(void)state;
	for (int possible = 0; possible < 2; possible++) {
		struct bdev *d = vf_mkfs(NSEGS * VF_SEG);
		struct vol *v = vf_open_opts(d, &oo), *r, *w;
		struct vol_usage *u = &v->v_usage;
		uint32_t live;

		write_all(v, 1);
		for (uint64_t s = 0; s < NSEGS && seg == UINT64_MAX; s++)
			if (u->vu_live[s] > 8 && !u->vu_suf_here[s] &&
			    s != vol_seg_of(v, v->v_sr_blk))
				seg = s;
		assert_true(seg != UINT64_MAX);
		cmutex_lock(&u->vu_lock);
		live = u->vu_live[seg];
		u->vu_live[seg] = possible ? live - 1 : VF_SEG + 1;
		u->vu_suf_dirty[seg / 64] |= 1ull << (seg % 64);
		cmutex_unlock(&u->vu_lock);
		vf_write(v, OWNER + NOWNERS, 0, 1); /* a commit, elsewhere */
		assert_int_equal(vol_sync(v), 0);
		assert_true(v->v_sr.sr_suf_current);
		r = vf_reopen_copy(d, 0);
		assert_int_equal(open_walked(r), possible ? 0 : 1);
		if (possible) {
			check_want = "segment usage entry of segment";
			check_seen = 0;
			assert_true(vol_check(r, check_report, NULL, NULL) >= 1);
			assert_int_equal(check_seen, 1);
			check_want = NULL;
		} else {
			assert_int_equal(r->v_usage.vu_live[seg], live);
			vf_write(r, OWNER + NOWNERS, 1,
				 1); /* the walk's open: every entry written */
			vf_check(r);
			w = vf_reopen_copy(r->v_bdev, 0);
			assert_int_equal(vol_close(r), 0);
			r = w;
			assert_int_equal(open_walked(r), 0);
			vf_check(r);
		}
		expect_all(r, 1, NOWNERS);
		assert_int_equal(vol_close(r), 0);
		assert_int_equal(vol_close(v), 0);
	}
}

/*
 * Entries a commit must write for segments it did not change (every
 * segment, after an open that walked) are written 64 blocks of the file
 * at a time: on a volume whose file has more, the first commit leaves
 * the file not current and the next finishes it.
 */
static void test_dirty_entries_in_steps(void **state)
{
	struct vol_mkfs_opts mo = {.vmo_log = {.lfo_block_size = 512, .lfo_seg_blocks = 16}};
	static uint64_t data[512 / 8];
	struct vol_txn t;
	struct bdev *d;
	struct vol *v, *r;

	(void)state;
	/* 2400 segments: 32 entries a block, 75 blocks of entries */
	assert_int_equal(bdev_emu_open(512, 2400 * 16 + 64, &d), 0);
	assert_int_equal(vol_mkfs(d, &mo), 0);
	v = vf_open(d, 256);
	assert_true(vol_suf_blocks(v) > 64);
	for (uint32_t i = 0; i < 3; i++) {
		data[0] = i;
		assert_int_equal(vol_txn_begin(v, 1, 0, &t), 0);
		assert_int_equal(vol_write(&t, OWNER, i, data), 0);
		vol_txn_end(&t);
		assert_int_equal(vol_sync(v), 0);
		/* the first commit after the walk leaves entries for the next */
		assert_int_equal(v->v_sr.sr_suf_current, i > 0);
	}
	assert_int_equal(vol_check(v, NULL, NULL, NULL), 0);
	r = vf_reopen_copy(d, 256);
	assert_int_equal(open_walked(r), 0);
	expect_same_usage(v, r);
	assert_int_equal(vol_check(r, NULL, NULL, NULL), 0);
	assert_int_equal(vol_close(r), 0);
	assert_int_equal(vol_close(v), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_open_reads_the_file),
	    cmocka_unit_test(test_file_keeps_snapshot_pins),
	    cmocka_unit_test(test_no_room_makes_the_file_stale),
	    cmocka_unit_test(test_damaged_entry),
	    cmocka_unit_test(test_dirty_entries_in_steps),
	};

	vf_filter_from_env();
	return TEST_RUN("vol_suf", tests);
}

/*
 * test_vol_dat.c - the block address translation (src/vol/dat.c) when
 * numbers run out and when a commit fails or meets damage.
 *
 * Proves: when the numbers run out, the allocator's forced pass finds
 * the reusable numbers behind the sweep even where a pass that found
 * nothing would idle it; a commit that fails while linking a block (a
 * data block, or a map block into its parent) leaves no current
 * translation entry that nothing names; a damaged entry a commit leaves
 * behind (naming a block outside the segments, or free) is logged, and
 * that commit and the later ones succeed, vol_check reporting the damage;
 * a commit that fails to kill the number a change leaves behind leaves
 * the map naming it still, and the next commit kills it; a number a
 * failed commit linked before setting its entry is not handed out again
 * before the next commit relinks its block.
 *
 * Faults are read errors of the emulated device on one block, armed
 * before the commit or, for a block the commit itself reads first, at
 * "vol.commit.gone" (a map change is about to leave a block behind):
 * the block is dropped from the cache there, so its next read fails.
 */
#include "harness.h"
#include "vol_fixture.h"

#include "util/syncpoint.h"
#include "vol/vol_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OWNER VOL_FIRST_OWNER
#define TXN   30 /* blocks a transaction of write_run writes */

/* ---- volumes of 4 KiB blocks (vol_fixture.h) or 512-byte ones ----------- */

#define SBS 512 /* 32 translation entries a block */

static struct bdev *mkfs_small(uint64_t nblocks)
{
	struct vol_mkfs_opts mo = {.vmo_log = {.lfo_block_size = SBS, .lfo_seg_blocks = VF_SEG}};
	struct bdev *d;

	assert_int_equal(bdev_emu_open(SBS, nblocks, &d), 0);
	assert_int_equal(vol_mkfs(d, &mo), 0);
	return d;
}

static void small_pattern(uint64_t *w, uint64_t owner, uint64_t index, uint32_t version)
{
	for (size_t i = 0; i < SBS / 8; i++)
		w[i] =
		    (owner * 0x9e3779b97f4a7c15ULL) ^ (index << 20) ^ ((uint64_t)version << 8) ^ i;
}

/* The content of version @version of (@owner, @index) in blocks of @bs. */
static void pattern(void *data, uint32_t bs, uint64_t owner, uint64_t index, uint32_t version)
{
	if (bs == VF_BS)
		vf_pattern(data, owner, index, version);
	else
		small_pattern(data, owner, index, version);
}

/* Blocks [@first, @first + @n) of @owner as version @version, TXN a transaction. */
static void write_run(struct vol *v, uint64_t owner, uint64_t first, uint64_t n, uint32_t version)
{
	static uint64_t data[VF_BS / 8];

	for (uint64_t i = first; i < first + n;) {
		uint64_t end = MIN(first + n, i + TXN);
		struct vol_txn t;

		assert_int_equal(vol_txn_begin(v, end - i, 0, &t), 0);
		for (; i < end; i++) {
			pattern(data, vol_block_size(v), owner, i, version);
			assert_int_equal(vol_write(&t, owner, i, data), 0);
		}
		vol_txn_end(&t);
	}
}

static void small_expect(struct vol *v, uint64_t owner, uint64_t first, uint64_t n,
			 uint32_t version)
{
	static uint64_t want[SBS / 8], got[SBS / 8];

	for (uint64_t i = first; i < first + n; i++) {
		small_pattern(want, owner, i, version);
		assert_int_equal(vol_read(v, owner, i, got), 0);
		if (memcmp(want, got, SBS))
			fail_msg("block (%" PRIu64 ", %" PRIu64 ") is not version %u", owner, i,
				 version);
	}
}

/* ---- numbers run out ------------------------------------------------------ */

/*
 * The reusable numbers lie behind the sweep, in a pass that has found
 * nothing so far (they became reusable after it read their blocks: the
 * floor rose, or a snapshot went), and none lies ahead; and the numbers
 * have run out. The forced pass reads the rest of the pass, finds
 * nothing, ends it (which idles the sweep at this floor), and must then
 * read a whole pass anyway: a commit needing a number gets one of those
 * behind. Not a state a workload reaches: v_dat_max is twice the
 * segments' blocks. So v_dat_max is lowered to the numbers in use, and
 * the sweep put where such a pass leaves it.
 */
static void test_numbers_run_out(void **state)
{
	uint32_t per = vol_dat_per_block(SBS);
	struct bdev *d = mkfs_small(256 * VF_SEG), *img;
	struct vol *v = vf_open(d, 0), *w;
	struct vol_dat *da;
	uint64_t low, behind, nblocks, reused;

	(void)state;
	/* the first numbers, all left behind by the second commit, which
	 * takes every later one and leaves none behind */
	write_run(v, OWNER, 0, 40, 1);
	assert_int_equal(vol_sync(v), 0);
	low = v->v_dat_alloc.vd_next;
	write_run(v, OWNER + 1, 0, 300, 1);
	write_run(v, OWNER, 0, 40, 2);
	assert_int_equal(vol_sync(v), 0);
	/* reopened: the floor is the state's, every dead number reusable */
	assert_int_equal(bdev_emu_open_copy(d, &img), 0);
	w = vf_open(img, 0);
	da = &w->v_dat_alloc;
	behind = (low + per - 1) / per;
	nblocks = (da->vd_next + per - 1) / per;
	assert_true(da->vd_next > low && w->v_sr.sr_readable_from == w->v_sr.sr_delta);
	/* more than one shortfall's read ahead of the sweep: the unforced
	 * read stops short of the pass's end */
	assert_true(behind + 8 < nblocks);
	da->vd_sweep = behind;
	da->vd_pass_found = 0;
	w->v_dat_max = da->vd_next;
	reused = da->vd_reused;
	write_run(w, OWNER + 1, 0, 1, 2);
	assert_int_equal(vol_sync(w), 0);
	assert_true(da->vd_reused > reused);
	assert_true(da->vd_next == w->v_dat_max);
	small_expect(w, OWNER + 1, 0, 1, 2);
	small_expect(w, OWNER + 1, 1, 299, 1);
	small_expect(w, OWNER, 0, 40, 2);
	vf_check(w);
	/* and the volume goes on */
	write_run(w, OWNER + 1, 100, 30, 3);
	assert_int_equal(vol_sync(w), 0);
	small_expect(w, OWNER + 1, 100, 30, 3);
	vf_check(w);
	assert_int_equal(vol_close(w), 0);
	assert_int_equal(vol_close(v), 0);
}

/* ---- a commit that fails while linking ----------------------------------- */

/* At the first "vol.commit.gone": drop @f_index of @f_owner from the cache,
 * and fail the next read of it (at @f_pblk). */
struct fault_at {
	struct vol *f_vol;
	struct bdev *f_dev;
	uint64_t f_owner, f_index, f_pblk;
	bool f_done;
};

/* @d's image reopened (nothing cached) for @f to fail on: its volume. */
static struct vol *fault_open_copy(struct bdev *d, struct fault_at *f, struct bdev **img)
{
	assert_int_equal(bdev_emu_open_copy(d, img), 0);
	f->f_vol = vf_open(*img, 0);
	f->f_dev = *img;
	return f->f_vol;
}

static void drop_and_fail(const char *point, void *arg)
{
	struct fault_at *f = arg;
	struct buf *b;

	(void)point;
	if (f->f_done)
		return;
	f->f_done = true;
	b = buf_find_hold(f->f_vol->v_cache, f->f_owner, f->f_index);
	if (b) {
		assert_int_equal(buf_state(b), BUF_CLEAN);
		assert_int_equal(buf_drop(b), 0);
		buf_put(b);
	}
	bdev_emu_fail_block(f->f_dev, BDEV_EMU_READ, f->f_pblk, 1, -EIO);
}

/*
 * A block gets a new number, is written, then linked: its map entry
 * set (a data block's in its level-1 map block, a map block's in its
 * parent), then its translation entry. The link fails on a read error:
 * the level-1 map block, not cached, for a data block; the root, dropped
 * from the cache once the data step has passed it, for the level-1 map
 * block of an owner whose map has two levels. Nothing may be left
 * current that nothing names: the next commit carries the block with
 * another number, and vol_check (which checks every entry of the
 * translation) finds the volume sound, reopened too.
 */
static void test_failed_link(void **state)
{
	(void)state;
	for (int meta = 0; meta < 1 + SYNCPOINTS_BUILT; meta++) {
		struct bdev *d = vf_mkfs(16 * VF_SEG), *img;
		struct vol *v = vf_open(d, 0), *w, *r;
		uint64_t idx = meta ? 600 : 3; /* 600: the map has two levels */
		struct fault_at f = {0};

		print_message("# the link of a %s block fails\n", meta ? "map" : "data");
		for (uint64_t i = 0; i < 8; i++)
			vf_write(v, OWNER, i, 1);
		vf_write(v, OWNER, 600, 1);
		assert_int_equal(vol_sync(v), 0);
		f.f_owner = OWNER;
		f.f_index = bmap_node_index(&v->v_map, meta ? 2 : 1, meta ? 0 : idx);
		assert_int_equal(vol_resolve(v, OWNER, f.f_index, &f.f_pblk), 0);
		assert_true(f.f_pblk != 0);
		/* the image reopened: nothing cached */
		w = fault_open_copy(d, &f, &img);
		vf_write(w, OWNER, idx, 2);
		if (meta) {
			syncpoint_enable();
			syncpoint_callback("vol.commit.gone", drop_and_fail, &f);
		} else {
			bdev_emu_fail_block(img, BDEV_EMU_READ, f.f_pblk, 1, -EIO);
		}
		assert_int_equal(vol_sync(w), -EIO);
		assert_true(f.f_done || !meta);
		syncpoint_reset();
		bdev_emu_clear_faults(img);
		assert_int_equal(vol_sync(w), 0); /* the next commit carries it */
		vf_expect(w, OWNER, idx, 2);
		vf_check(w);
		r = vf_reopen_copy(img, 0);
		vf_expect(r, OWNER, idx, 2);
		vf_check(r);
		assert_int_equal(vol_close(r), 0);
		assert_int_equal(vol_close(w), 0);
		assert_int_equal(vol_close(v), 0);
	}
}

/* ---- a damaged entry left behind ------------------------------------------ */

/* Lines logged that hold sink_want; vol_check's reports that hold check_want. */
static const char *sink_want, *check_want;
static unsigned sink_seen, check_seen;

static void sink(enum log_level level, const char *line, void *arg)
{
	(void)arg;
	if (level <= LOG_WARN && sink_want && strstr(line, sink_want))
		__atomic_add_fetch(&sink_seen, 1, __ATOMIC_RELAXED);
}

static void check_report(void *arg, const char *msg)
{
	(void)arg;
	print_message("# vol_check: %s\n", msg);
	if (check_want && strstr(msg, check_want))
		check_seen++;
}

/* vol_check of @v: its problems, and how many reports held @want. */
static int check_for(struct vol *v, const char *want, unsigned *seen)
{
	int n;

	check_want = want;
	check_seen = 0;
	n = vol_check(v, check_report, NULL, NULL);
	*seen = check_seen;
	return n;
}

/*
 * An owner's block 3, whose translation entry is damaged on the image:
 * it names a block outside the segments (a checkpoint slot), or it is
 * zeroed (free). The entry's translation block is one no later commit
 * rewrote (checkpoint slots after it), so recovery does not see it. A
 * commit that rewrites the block leaves that entry behind: dat_kill
 * meets -EUCLEAN. The damage is logged, the commit succeeds and so do
 * later ones, the new version reads back, and vol_check reports the
 * damage before the rewrite and, for the entry naming a block outside
 * the segments (still current: it could not be killed), after it and
 * after a reopen too.
 */
static void test_damaged_entry_left_behind(void **state)
{
	uint32_t per = vol_dat_per_block(VF_BS);
	struct vol_open_opts oo = {.voo_checkpoint_every = 1};
	struct bdev *d = vf_mkfs(64 * VF_SEG), *img;
	struct vol *v = vf_open_opts(d, &oo), *w, *r;
	unsigned char block[VF_BS];
	uint64_t x, pblk, path, tblk;
	char logged[128], reported[128];
	unsigned seen;

	(void)state;
	/* owner 16's numbers in translation block 0; the later commits,
	 * whose numbers are in block 1 on, leave none of them behind but
	 * owner 18's, lower: the sweep hands out the lowest reusable number
	 * first, and takes a zeroed entry for a reusable one, so the rewrite
	 * of block 3 must not get its own number back */
	vf_write(v, OWNER + 2, 0, 1);
	for (uint64_t i = 0; i < 8; i++)
		vf_write(v, OWNER, i, 1);
	assert_int_equal(vol_sync(v), 0);
	write_run(v, OWNER + 1, 0, 300, 1);
	vf_write(v, OWNER + 2, 0, 2);
	assert_int_equal(vol_sync(v), 0);
	for (uint32_t k = 2; k <= 3; k++) {
		vf_write(v, OWNER + 1, 0, k);
		assert_int_equal(vol_sync(v), 0);
	}
	assert_int_equal(vol_resolve_entry(v, OWNER, 3, &x, &pblk, &path), 0);
	assert_true(x < per);
	assert_int_equal(vol_resolve(v, VOL_DAT_OWNER, x / per, &tblk), 0);
	cairn_log_set_sink(sink, NULL);
	for (int zeroed = 0; zeroed < 2; zeroed++) {
		unsigned char *e = block + (x % per) * VOL_DAT_ENTRY_BYTES;

		print_message("# the entry %s\n", zeroed ? "zeroed" : "outside the segments");
		assert_int_equal(bdev_emu_open_copy(d, &img), 0);
		assert_int_equal(bdev_read(img, tblk, 1, block), 0);
		assert_int_equal(util_get_le64(e), pblk);
		if (zeroed)
			memset(e, 0, VOL_DAT_ENTRY_BYTES);
		else
			util_put_le64(e, 1); /* a checkpoint slot */
		assert_int_equal(bdev_write(img, tblk, 1, block), 0);
		w = vf_open(img, 0);
		snprintf(reported, sizeof(reported), "virtual block %" PRIu64 ", which is free", x);
		assert_true(
		    check_for(w, zeroed ? reported : "at 1 is outside the segments", &seen) > 0);
		assert_int_equal(seen, 1);

		if (zeroed)
			snprintf(logged, sizeof(logged),
				 "virtual block %" PRIu64 " is named but has no translation", x);
		else
			snprintf(logged, sizeof(logged),
				 "virtual block %" PRIu64 " translates to block 1, outside", x);
		sink_want = logged;
		sink_seen = 0;
		vf_write(w, OWNER, 3, 2);
		assert_int_equal(vol_sync(w), 0);
		assert_true(__atomic_load_n(&sink_seen, __ATOMIC_RELAXED) > 0);
		sink_want = NULL;
		vf_write(w, OWNER, 4, 2);
		assert_int_equal(vol_sync(w), 0);
		vf_write(w, OWNER, 3, 3);
		assert_int_equal(vol_sync(w), 0);
		vf_expect(w, OWNER, 3, 3);
		vf_expect(w, OWNER, 4, 2);
		vf_expect(w, OWNER, 5, 1);

		snprintf(reported, sizeof(reported),
			 "translation entry %" PRIu64 " names block 1, outside the segments", x);
		if (zeroed) {
			vf_check(w); /* left free: nothing names it, nothing to report */
		} else {
			assert_int_equal(check_for(w, reported, &seen), 1);
			assert_int_equal(seen, 1);
		}
		r = vf_reopen_copy(img, 0);
		vf_expect(r, OWNER, 3, 3);
		assert_int_equal(check_for(r, reported, &seen), zeroed ? 0 : 1);
		assert_int_equal(seen, zeroed ? 0 : 1);
		assert_int_equal(vol_close(r), 0);
		assert_int_equal(vol_close(w), 0);
	}
	cairn_log_set_sink(NULL, NULL);
	assert_int_equal(vol_close(v), 0);
}

/* ---- a commit that fails while killing an entry --------------------------- */

/*
 * Owner 17's numbers low, owner 18's in translation block 1 on, and a
 * few numbers in block 0 reusable (owner 17's block 0 rewritten).
 */
static void spread_numbers(struct vol *v)
{
	for (uint64_t i = 0; i < 4; i++)
		vf_write(v, OWNER + 1, i, 1);
	assert_int_equal(vol_sync(v), 0);
	write_run(v, OWNER + 2, 0, 300, 1);
	assert_int_equal(vol_sync(v), 0);
	vf_write(v, OWNER + 1, 0, 2);
	assert_int_equal(vol_sync(v), 0);
}

/*
 * Owner 18's block 260, whose number (in translation block 1) its
 * rewrite leaves behind; the translation block holding that number is
 * dropped from the cache where the commit's map change leaves it
 * behind, and its read fails: dat_kill fails, and the commit with it.
 * The next commit carries the block under another number. The number
 * left behind must then be dead: vol_check finds no current entry that
 * nothing names, reopened too.
 */
static void test_failed_kill(void **state)
{
	uint32_t per = vol_dat_per_block(VF_BS);
	struct bdev *d = vf_mkfs(64 * VF_SEG), *img;
	struct vol *v = vf_open(d, 0), *w, *r;
	struct fault_at f = {0};
	uint64_t x, pblk, path;

	(void)state;
	test_needs_syncpoints();
	spread_numbers(v);
	assert_int_equal(vol_resolve_entry(v, OWNER + 2, 260, &x, &pblk, &path), 0);
	assert_true(x / per == 1);
	f = (struct fault_at){.f_owner = VOL_DAT_OWNER, .f_index = x / per};
	assert_int_equal(vol_resolve(v, VOL_DAT_OWNER, f.f_index, &f.f_pblk), 0);
	w = fault_open_copy(d, &f, &img);
	vf_write(w, OWNER + 2, 260, 2);
	syncpoint_enable();
	syncpoint_callback("vol.commit.gone", drop_and_fail, &f);
	assert_int_equal(vol_sync(w), -EIO);
	assert_true(f.f_done);
	syncpoint_reset();
	bdev_emu_clear_faults(img);
	assert_int_equal(vol_sync(w), 0);
	vf_expect(w, OWNER + 2, 260, 2);
	vf_expect(w, OWNER + 2, 259, 1);
	vf_check(w);
	r = vf_reopen_copy(img, 0);
	vf_expect(r, OWNER + 2, 260, 2);
	vf_check(r);
	assert_int_equal(vol_close(r), 0);
	assert_int_equal(vol_close(w), 0);
	assert_int_equal(vol_close(v), 0);
}

/* ---- a number linked without its entry ----------------------------------- */

struct syncer {
	struct vol *s_vol;
	int s_err;
};

static void *sync_main(void *arg)
{
	struct syncer *s = arg;

	s->s_err = vol_sync(s->s_vol);
	return NULL;
}

/*
 * Owner 18's block 260 is rewritten: its new number, the lowest reusable
 * one (in translation block 0), is linked, then its translation entry
 * is set; translation block 0, dropped from the cache at the point the
 * link leaves the old number behind, fails to read, and the commit
 * fails with the map block, dirty and requeued, naming a number whose
 * entry is not set. Meanwhile (the commit held at its start) another
 * owner's blocks were written into the next delta, ahead of the
 * requeued block: their commit takes the rest of the sweep's list,
 * sweeps again, and must not hand that number out again, or the
 * relink of block 260 kills the entry of a block that got it. vol_check
 * after the next commit finds every named number current (and every
 * block reads back), reopened too.
 */
static void test_failed_birth(void **state)
{
	struct bdev *d = vf_mkfs(64 * VF_SEG), *img;
	struct vol *v = vf_open(d, 0), *w, *r;
	struct fault_at f = {.f_owner = VOL_DAT_OWNER, .f_index = 0};
	struct syncer s;
	pthread_t t;

	(void)state;
	test_needs_syncpoints();
	spread_numbers(v);
	assert_int_equal(vol_resolve(v, VOL_DAT_OWNER, 0, &f.f_pblk), 0);
	w = fault_open_copy(d, &f, &img);
	vf_write(w, OWNER + 2, 260, 2);
	syncpoint_enable();
	syncpoint_order("test.written", "vol.commit.begin");
	s = (struct syncer){w, 0};
	test_thread_start(&t, sync_main, &s);
	syncpoint_wait_arrived("vol.commit.begin", 1);
	for (uint64_t i = 0; i < 16; i++) /* into the next delta */
		vf_write(w, OWNER + 3, i, 1);
	syncpoint_callback("vol.commit.gone", drop_and_fail, &f);
	syncpoint_hit("test.written");
	test_thread_join(t);
	assert_int_equal(s.s_err, -EIO);
	assert_true(f.f_done);
	syncpoint_reset();
	bdev_emu_clear_faults(img);
	assert_int_equal(vol_sync(w), 0);
	vf_expect(w, OWNER + 2, 260, 2);
	for (uint64_t i = 0; i < 16; i++)
		vf_expect(w, OWNER + 3, i, 1);
	vf_check(w);
	r = vf_reopen_copy(img, 0);
	for (uint64_t i = 0; i < 16; i++)
		vf_expect(r, OWNER + 3, i, 1);
	vf_expect(r, OWNER + 2, 260, 2);
	vf_check(r);
	assert_int_equal(vol_close(r), 0);
	assert_int_equal(vol_close(w), 0);
	assert_int_equal(vol_close(v), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_numbers_run_out),
	    cmocka_unit_test(test_failed_link),
	    cmocka_unit_test(test_damaged_entry_left_behind),
	    cmocka_unit_test(test_failed_kill),
	    cmocka_unit_test(test_failed_birth),
	};

	vf_filter_from_env();
	return TEST_RUN("vol_dat", tests);
}

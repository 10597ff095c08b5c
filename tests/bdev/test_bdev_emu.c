/*
 * test_bdev_emu.c - the emulated device: records, power cuts, the image
 * after a crash under each mode, torn writes, fault rules, copies, and
 * the history (every crash point of a run, checked against replays),
 * and early flushes (bdev_start_flush) on the emulated device.
 *
 * Block content is a pattern named by a tag (emu_pattern), so a test can
 * say which write a block came from. Randomized tests print their seed.
 */
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bdev/bdev.h"

#define EMU_BS	    4096u
#define EMU_NBLOCKS 32u

static void emu_pattern(unsigned char *buf, size_t len, unsigned tag)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = (unsigned char)(tag * 37 + (i / 512) * 11 + i + 1);
}

/* Write @count blocks at @blk, block i holding the pattern @tag + i. */
static int emu_put(struct bdev *d, uint64_t blk, uint32_t count, unsigned tag)
{
	size_t bs = bdev_block_size(d);
	unsigned char *buf = malloc(count * bs);
	int err;

	assert_non_null(buf);
	for (uint32_t i = 0; i < count; i++)
		emu_pattern(buf + i * bs, bs, tag + i);
	err = bdev_write(d, blk, count, buf);
	free(buf);
	return err;
}

/* Does block @blk hold the pattern @tag (tag 0: zeros)? */
static bool emu_block_is(struct bdev *d, uint64_t blk, unsigned tag)
{
	size_t bs = bdev_block_size(d);
	unsigned char *got = malloc(bs), *want = calloc(1, bs);
	bool same;

	assert_non_null(got);
	assert_non_null(want);
	assert_int_equal(bdev_read(d, blk, 1, got), 0);
	if (tag)
		emu_pattern(want, bs, tag);
	same = !memcmp(got, want, bs);
	free(got);
	free(want);
	return same;
}

/* The whole content of @d, malloc()ed. */
static unsigned char *emu_image(struct bdev *d)
{
	size_t len = bdev_nblocks(d) * bdev_block_size(d);
	unsigned char *img = malloc(len);

	assert_non_null(img);
	assert_int_equal(bdev_read(d, 0, (uint32_t)bdev_nblocks(d), img), 0);
	return img;
}

static struct bdev *emu_crash(struct bdev *d, enum bdev_emu_crash_mode mode, bool tear,
			      uint64_t seed)
{
	struct bdev_emu_crash how = {.ec_mode = mode, .ec_tear = tear, .ec_seed = seed};
	struct bdev *c = NULL;

	assert_int_equal(bdev_emu_crash(d, &how, &c), 0);
	assert_non_null(c);
	return c;
}

static void emu_record_is(struct bdev *d, uint64_t i, enum bdev_emu_op op, uint64_t seq,
			  uint64_t blk, uint32_t count)
{
	struct bdev_emu_record r;

	assert_int_equal(bdev_emu_record(d, i, &r), 0);
	assert_int_equal(r.er_op, op);
	assert_int_equal(r.er_seq, seq);
	if (op == BDEV_EMU_WRITE) {
		assert_int_equal(r.er_blk, blk);
		assert_int_equal(r.er_count, count);
	}
}

/* ---- records, reads, power ------------------------------------------- */

static void test_emu_records(void **state)
{
	struct bdev_emu_stats st;
	struct bdev_emu_record r;
	unsigned char buf[EMU_BS];
	struct bdev *d;

	(void)state;
	assert_int_equal(bdev_emu_open(EMU_BS, EMU_NBLOCKS, &d), 0);
	assert_int_equal(bdev_emu_record(d, 0, &r), -ENOENT);
	assert_int_equal(emu_put(d, 0, 1, 1), 0);
	assert_int_equal(emu_put(d, 2, 3, 2), 0);
	bdev_emu_stats(d, &st);
	assert_int_equal(st.es_writes, 2);
	assert_int_equal(st.es_unflushed, 2);
	assert_int_equal(bdev_flush(d), 0);
	assert_int_equal(emu_put(d, 5, 1, 3), 0);
	assert_int_equal(emu_put(d, EMU_NBLOCKS, 1, 3), -EINVAL); /* not recorded */
	assert_int_equal(bdev_flush(d), 0);
	assert_int_equal(bdev_flush(d), 0);
	assert_int_equal(bdev_read(d, 0, 1, buf), 0);
	assert_int_equal(bdev_read(d, 5, 1, buf), 0);
	assert_int_equal(bdev_read(d, 0, 0, buf), -EINVAL); /* not counted */

	emu_record_is(d, 0, BDEV_EMU_WRITE, 1, 0, 1);
	emu_record_is(d, 1, BDEV_EMU_WRITE, 2, 2, 3);
	emu_record_is(d, 2, BDEV_EMU_FLUSH, 2, 0, 0);
	emu_record_is(d, 3, BDEV_EMU_WRITE, 3, 5, 1);
	emu_record_is(d, 4, BDEV_EMU_FLUSH, 3, 0, 0);
	emu_record_is(d, 5, BDEV_EMU_FLUSH, 3, 0, 0);
	assert_int_equal(bdev_emu_record(d, 6, &r), -ENOENT);
	bdev_emu_stats(d, &st);
	assert_int_equal(st.es_reads, 2);
	assert_int_equal(st.es_writes, 3);
	assert_int_equal(st.es_flushes, 3);
	assert_int_equal(st.es_unflushed, 0);
	assert_false(st.es_cut);
	bdev_close(d);
}

static void test_emu_read_sees_unflushed(void **state)
{
	struct bdev *d;

	(void)state;
	assert_int_equal(bdev_emu_open(EMU_BS, EMU_NBLOCKS, &d), 0);
	assert_true(emu_block_is(d, 4, 0));
	assert_int_equal(emu_put(d, 4, 2, 10), 0);
	assert_true(emu_block_is(d, 4, 10));
	assert_true(emu_block_is(d, 5, 11));
	assert_int_equal(emu_put(d, 5, 1, 20), 0);
	assert_true(emu_block_is(d, 5, 20));
	assert_int_equal(bdev_flush(d), 0);
	assert_true(emu_block_is(d, 4, 10));
	assert_true(emu_block_is(d, 5, 20));
	bdev_close(d);
}

static void test_emu_cut_after(void **state)
{
	struct bdev_emu_stats st;
	struct bdev_emu_record r;
	unsigned char buf[EMU_BS];
	struct bdev *d, *c;

	(void)state;
	assert_int_equal(bdev_emu_open(EMU_BS, EMU_NBLOCKS, &d), 0);
	bdev_emu_cut_after(d, 3);
	assert_int_equal(emu_put(d, 0, 1, 1), 0);
	assert_int_equal(bdev_flush(d), 0);
	assert_int_equal(emu_put(d, 1, 1, 2), 0);
	assert_int_equal(emu_put(d, 2, 1, 3), -EIO); /* write 3: power goes */
	assert_int_equal(emu_put(d, 3, 1, 4), -EIO);
	assert_int_equal(bdev_read(d, 0, 1, buf), -EIO);
	assert_int_equal(bdev_flush(d), -EIO);
	bdev_emu_stats(d, &st);
	assert_true(st.es_cut);
	assert_int_equal(st.es_writes, 2);
	assert_int_equal(st.es_flushes, 1);
	assert_int_equal(st.es_unflushed, 1);
	assert_int_equal(st.es_reads, 0);
	assert_int_equal(bdev_emu_record(d, 3, &r), -ENOENT);
	/* cancelling a cut that happened does not bring the power back */
	bdev_emu_cut_after(d, 0);
	assert_int_equal(emu_put(d, 3, 1, 4), -EIO);
	/* the refused writes reached no image */
	c = emu_crash(d, BDEV_EMU_KEEP_ALL, false, 1);
	assert_true(emu_block_is(c, 0, 1));
	assert_true(emu_block_is(c, 1, 2));
	assert_true(emu_block_is(c, 2, 0));
	assert_true(emu_block_is(c, 3, 0));
	bdev_emu_stats(c, &st);
	assert_false(st.es_cut);
	assert_int_equal(st.es_writes, 0);
	bdev_close(c);
	bdev_close(d);
}

static void test_emu_cut_cancel_and_now(void **state)
{
	unsigned char buf[EMU_BS];
	struct bdev_emu_stats st;
	struct bdev *d;

	(void)state;
	assert_int_equal(bdev_emu_open(EMU_BS, EMU_NBLOCKS, &d), 0);
	bdev_emu_cut_after(d, 2);
	bdev_emu_cut_after(d, 0);
	for (unsigned i = 0; i < 4; i++)
		assert_int_equal(emu_put(d, i, 1, i + 1), 0);
	/* write 2 is past: the next write cuts */
	bdev_emu_cut_after(d, 2);
	assert_int_equal(emu_put(d, 4, 1, 5), -EIO);
	assert_int_equal(bdev_emu_record(d, 4, &(struct bdev_emu_record){0}), -ENOENT);
	bdev_close(d);

	assert_int_equal(bdev_emu_open(EMU_BS, EMU_NBLOCKS, &d), 0);
	assert_int_equal(bdev_read(d, 0, 1, buf), 0);
	bdev_emu_cut_now(d);
	assert_int_equal(bdev_read(d, 0, 1, buf), -EIO);
	assert_int_equal(emu_put(d, 0, 1, 1), -EIO);
	assert_int_equal(bdev_flush(d), -EIO);
	bdev_emu_stats(d, &st);
	assert_true(st.es_cut);
	assert_int_equal(st.es_reads, 1);
	assert_int_equal(st.es_writes, 0);
	bdev_close(d);
}

/* ---- the image after a crash ----------------------------------------- */

/* Blocks 0..3 flushed with tags 1..4, then blocks 2..5 unflushed, 12..15. */
static struct bdev *emu_two_generations(void)
{
	struct bdev *d;

	assert_int_equal(bdev_emu_open(EMU_BS, EMU_NBLOCKS, &d), 0);
	assert_int_equal(emu_put(d, 0, 4, 1), 0);
	assert_int_equal(bdev_flush(d), 0);
	assert_int_equal(emu_put(d, 2, 4, 12), 0);
	return d;
}

static void test_emu_crash_drop_all(void **state)
{
	struct bdev *d = emu_two_generations(), *c;

	(void)state;
	bdev_emu_cut_now(d);
	c = emu_crash(d, BDEV_EMU_DROP_ALL, false, 7);
	for (unsigned i = 0; i < 4; i++)
		assert_true(emu_block_is(c, i, 1 + i));
	assert_true(emu_block_is(c, 4, 0));
	assert_true(emu_block_is(c, 5, 0));
	/* the new device works: power on, and a flush makes things durable */
	assert_int_equal(emu_put(c, 4, 1, 50), 0);
	assert_int_equal(bdev_flush(c), 0);
	bdev_close(c);
	/* DROP_ALL with a tear has nothing to tear */
	c = emu_crash(d, BDEV_EMU_DROP_ALL, true, 7);
	for (unsigned i = 0; i < 6; i++)
		assert_true(emu_block_is(c, i, i < 4 ? 1 + i : 0));
	bdev_close(c);
	bdev_close(d);
}

static void test_emu_crash_keep_all(void **state)
{
	struct bdev *d = emu_two_generations(), *c, *c2;
	unsigned char *a, *b;

	(void)state;
	assert_int_equal(emu_put(d, 3, 1, 30), 0);
	c = emu_crash(d, BDEV_EMU_KEEP_ALL, false, 7);
	assert_true(emu_block_is(c, 0, 1));
	assert_true(emu_block_is(c, 1, 2));
	assert_true(emu_block_is(c, 2, 12));
	assert_true(emu_block_is(c, 3, 30)); /* the later write wins */
	assert_true(emu_block_is(c, 4, 14));
	assert_true(emu_block_is(c, 5, 15));
	/* the source is unchanged: the same crash gives the same image */
	c2 = emu_crash(d, BDEV_EMU_KEEP_ALL, false, 8);
	a = emu_image(c);
	b = emu_image(c2);
	assert_memory_equal(a, b, EMU_NBLOCKS * EMU_BS);
	/* and equals what the source reads */
	free(b);
	b = emu_image(d);
	assert_memory_equal(a, b, EMU_NBLOCKS * EMU_BS);
	free(a);
	free(b);
	bdev_close(c2);
	bdev_close(c);
	bdev_close(d);
}

#define EMU_SOME_WRITES 16u

/* Blocks 0..15 flushed with tags 1..16; then each rewritten, 101..116. */
static struct bdev *emu_many_unflushed(void)
{
	struct bdev *d;

	assert_int_equal(bdev_emu_open(EMU_BS, EMU_NBLOCKS, &d), 0);
	assert_int_equal(emu_put(d, 0, EMU_SOME_WRITES, 1), 0);
	assert_int_equal(bdev_flush(d), 0);
	for (unsigned i = 0; i < EMU_SOME_WRITES; i++)
		assert_int_equal(emu_put(d, i, 1, 101 + i), 0);
	return d;
}

/* How many of the rewrites survived in @c; fails if a block is neither. */
static unsigned emu_count_kept(struct bdev *c)
{
	unsigned kept = 0;

	for (unsigned i = 0; i < EMU_SOME_WRITES; i++) {
		bool is_new = emu_block_is(c, i, 101 + i);

		assert_true(is_new || emu_block_is(c, i, 1 + i));
		kept += is_new;
	}
	for (unsigned i = EMU_SOME_WRITES; i < EMU_NBLOCKS; i++)
		assert_true(emu_block_is(c, i, 0));
	return kept;
}

static void test_emu_crash_drop_some(void **state)
{
	uint64_t seed = test_seed("emu_crash_drop_some", 1234);
	struct bdev *d = emu_many_unflushed(), *c1, *c2;
	unsigned kept = 0;
	unsigned char *a, *b;

	(void)state;
	for (uint64_t s = seed; s < seed + 8; s++) {
		c1 = emu_crash(d, BDEV_EMU_DROP_SOME, false, s);
		kept += emu_count_kept(c1);
		/* determinism: the same seed gives the same image */
		c2 = emu_crash(d, BDEV_EMU_DROP_SOME, false, s);
		a = emu_image(c1);
		b = emu_image(c2);
		assert_memory_equal(a, b, EMU_NBLOCKS * EMU_BS);
		free(a);
		free(b);
		bdev_close(c2);
		bdev_close(c1);
	}
	/* 128 coins: some kept, some dropped */
	assert_true(kept > 0 && kept < 8 * EMU_SOME_WRITES);
	bdev_close(d);
}

/*
 * Two overlapping unflushed writes: W1 = blocks 0-1 (tags 1, 2), then
 * W2 = blocks 1-2 (tags 11, 12). Returns true if both landed, and W1
 * landed last (block 1 holds W1's data).
 */
static bool emu_older_won(struct bdev *c, bool *both)
{
	bool w1 = emu_block_is(c, 0, 1), w2 = emu_block_is(c, 2, 12);

	assert_true(w1 || emu_block_is(c, 0, 0));
	assert_true(w2 || emu_block_is(c, 2, 0));
	if (w1 && w2)
		assert_true(emu_block_is(c, 1, 2) || emu_block_is(c, 1, 11));
	else if (w1)
		assert_true(emu_block_is(c, 1, 2));
	else if (w2)
		assert_true(emu_block_is(c, 1, 11));
	else
		assert_true(emu_block_is(c, 1, 0));
	*both = w1 && w2;
	return *both && emu_block_is(c, 1, 2);
}

static struct bdev *emu_overlapping(void)
{
	struct bdev *d;

	assert_int_equal(bdev_emu_open(EMU_BS, EMU_NBLOCKS, &d), 0);
	assert_int_equal(emu_put(d, 0, 2, 1), 0);
	assert_int_equal(emu_put(d, 1, 2, 11), 0);
	return d;
}

static void test_emu_drop_some_keeps_order(void **state)
{
	uint64_t seed = test_seed("emu_drop_some_keeps_order", 99);
	struct bdev *d = emu_overlapping(), *c;
	unsigned both = 0;
	bool b;

	(void)state;
	for (uint64_t s = seed; s < seed + 64; s++) {
		c = emu_crash(d, BDEV_EMU_DROP_SOME, false, s);
		assert_false(emu_older_won(c, &b));
		both += b;
		bdev_close(c);
	}
	assert_true(both > 0); /* the order was checked at least once */
	bdev_close(d);
}

static void test_emu_reorder(void **state)
{
	uint64_t seed = test_seed("emu_reorder", 5);
	struct bdev *d = emu_overlapping(), *c;
	bool older = false, b;
	uint64_t s;

	(void)state;
	for (s = seed; s < seed + 1000 && !older; s++) {
		c = emu_crash(d, BDEV_EMU_REORDER, false, s);
		older = emu_older_won(c, &b);
		bdev_close(c);
	}
	print_message("# reorder: older write landed last at seed %llu\n",
		      (unsigned long long)(s - 1));
	assert_true(older);
	/* a reordered crash is a subset too */
	bdev_close(d);
	d = emu_many_unflushed();
	c = emu_crash(d, BDEV_EMU_REORDER, false, seed);
	emu_count_kept(c);
	bdev_close(c);
	bdev_close(d);
}

/* ---- torn writes ------------------------------------------------------ */

/*
 * In @c, blocks @blk.. of @count blocks hold a prefix of @new_tag's
 * pattern and then @old_tag's (0: zeros). Returns the new prefix length
 * in bytes; fails if the two do not split at one point.
 */
static size_t emu_split_point(struct bdev *c, uint64_t blk, uint32_t count, unsigned old_tag,
			      unsigned new_tag)
{
	size_t bs = bdev_block_size(c), len = count * bs, split = len;
	unsigned char *got = malloc(len), *old = calloc(1, len), *new = malloc(len);

	assert_int_equal(bdev_read(c, blk, count, got), 0);
	for (uint32_t i = 0; i < count; i++) {
		if (old_tag)
			emu_pattern(old + i * bs, bs, old_tag + i);
		emu_pattern(new + i *bs, bs, new_tag + i);
	}
	for (size_t i = 0; i < len; i++) {
		if (got[i] != new[i]) {
			split = i;
			break;
		}
	}
	/* the pattern differs in the first byte of every sector */
	assert_memory_equal(got + split, old + split, len - split);
	free(got);
	free(old);
	free(new);
	return split;
}

static void test_emu_tear(void **state)
{
	uint64_t seed = test_seed("emu_tear", 77);
	struct bdev *d, *c;
	size_t len = 4 * EMU_BS, first = 0;
	bool varied = false;

	(void)state;
	assert_int_equal(bdev_emu_open(EMU_BS, EMU_NBLOCKS, &d), 0);
	assert_int_equal(emu_put(d, 8, 4, 1), 0);
	assert_int_equal(bdev_flush(d), 0);
	assert_int_equal(emu_put(d, 8, 4, 21), 0);
	for (uint64_t s = seed; s < seed + 16; s++) {
		size_t split;

		c = emu_crash(d, BDEV_EMU_KEEP_ALL, true, s);
		split = emu_split_point(c, 8, 4, 1, 21);
		assert_int_equal(split % 512, 0);
		assert_true(split > 0 && split < len);
		assert_true(emu_block_is(c, 7, 0));
		assert_true(emu_block_is(c, 12, 0));
		varied |= s > seed && split != first;
		first = s == seed ? split : first;
		bdev_close(c);
	}
	assert_true(varied);
	/* without ec_tear the write lands whole */
	c = emu_crash(d, BDEV_EMU_KEEP_ALL, false, seed);
	assert_int_equal(emu_split_point(c, 8, 4, 1, 21), len);
	bdev_close(c);
	bdev_close(d);
}

static void test_emu_tear_one_of_many(void **state)
{
	uint64_t seed = test_seed("emu_tear_one_of_many", 3);
	struct bdev *d, *c;

	(void)state;
	assert_int_equal(bdev_emu_open(EMU_BS, EMU_NBLOCKS, &d), 0);
	for (unsigned w = 0; w < 3; w++)
		assert_int_equal(emu_put(d, 4 * w, 2, 10 * (w + 1)), 0);
	for (uint64_t s = seed; s < seed + 8; s++) {
		unsigned torn = 0;

		c = emu_crash(d, BDEV_EMU_KEEP_ALL, true, s);
		for (unsigned w = 0; w < 3; w++) {
			size_t split = emu_split_point(c, 4 * w, 2, 0, 10 * (w + 1));

			torn += split != 2 * EMU_BS;
		}
		assert_int_equal(torn, 1);
		bdev_close(c);
	}
	bdev_close(d);
}

static void test_emu_tear_single_sector(void **state)
{
	struct bdev *d, *c;

	(void)state;
	assert_int_equal(bdev_emu_open(512, 8, &d), 0);
	assert_int_equal(emu_put(d, 3, 1, 1), 0);
	assert_int_equal(bdev_flush(d), 0);
	assert_int_equal(emu_put(d, 3, 1, 2), 0);
	c = emu_crash(d, BDEV_EMU_KEEP_ALL, true, 1);
	assert_true(emu_block_is(c, 3, 1)); /* a torn one-sector write does not land */
	bdev_close(c);
	c = emu_crash(d, BDEV_EMU_KEEP_ALL, false, 1);
	assert_true(emu_block_is(c, 3, 2));
	bdev_close(c);
	bdev_close(d);
}

static void test_emu_crash_args(void **state)
{
	struct bdev_emu_crash how = {.ec_mode = (enum bdev_emu_crash_mode)9};
	struct bdev *d, *c = NULL;

	(void)state;
	assert_int_equal(bdev_emu_open(EMU_BS, EMU_NBLOCKS, &d), 0);
	assert_int_equal(bdev_emu_crash(d, &how, &c), -EINVAL);
	assert_int_equal(bdev_emu_crash(d, NULL, &c), -EINVAL);
	assert_null(c);
	assert_int_equal(bdev_emu_open(1000, 4, &c), -EINVAL);
	assert_int_equal(bdev_emu_open(EMU_BS, 0, &c), -EINVAL);
	assert_null(c);
	bdev_close(d);
}

/* ---- fault rules ------------------------------------------------------ */

static void test_emu_fail_op(void **state)
{
	unsigned char buf[EMU_BS];
	struct bdev_emu_stats st;
	struct bdev *d, *c;

	(void)state;
	assert_int_equal(bdev_emu_open(EMU_BS, EMU_NBLOCKS, &d), 0);
	assert_int_equal(emu_put(d, 0, 1, 1), 0); /* before the rule: not counted */
	bdev_emu_fail_op(d, BDEV_EMU_WRITE, 2, 2, -ENOSPC);
	assert_int_equal(emu_put(d, 1, 1, 2), 0);
	assert_int_equal(emu_put(d, 0, 1, 3), -ENOSPC);
	assert_int_equal(emu_put(d, 2, 1, 4), -ENOSPC);
	assert_int_equal(emu_put(d, 2, 1, 5), 0);
	assert_int_equal(emu_put(d, 3, 1, 6), 0);
	assert_true(emu_block_is(d, 0, 1)); /* the failed writes changed nothing */
	assert_true(emu_block_is(d, 2, 5));
	bdev_emu_stats(d, &st);
	assert_int_equal(st.es_writes, 4);
	assert_int_equal(st.es_unflushed, 4);

	/* reads: the first fails, once */
	bdev_emu_fail_op(d, BDEV_EMU_READ, 1, 1, EIO);
	memset(buf, 0xcc, sizeof(buf));
	assert_int_equal(bdev_read(d, 0, 1, buf), -EIO);
	assert_int_equal(buf[0], 0xcc);
	assert_true(emu_block_is(d, 0, 1));

	/* flushes: forever, until cleared; a failed flush makes nothing durable */
	bdev_emu_fail_op(d, BDEV_EMU_FLUSH, 1, 0, -EIO);
	for (unsigned i = 0; i < 5; i++)
		assert_int_equal(bdev_flush(d), -EIO);
	bdev_emu_stats(d, &st);
	assert_int_equal(st.es_flushes, 0);
	assert_int_equal(st.es_unflushed, 4);
	c = emu_crash(d, BDEV_EMU_DROP_ALL, false, 1);
	assert_true(emu_block_is(c, 0, 0));
	bdev_close(c);
	bdev_emu_clear_faults(d);
	assert_int_equal(bdev_flush(d), 0);
	c = emu_crash(d, BDEV_EMU_DROP_ALL, false, 1);
	assert_true(emu_block_is(c, 0, 1));
	assert_true(emu_block_is(c, 2, 5));
	bdev_close(c);
	bdev_close(d);
}

static void test_emu_fail_block(void **state)
{
	unsigned char buf[4 * EMU_BS];
	struct bdev *d;

	(void)state;
	assert_int_equal(bdev_emu_open(EMU_BS, EMU_NBLOCKS, &d), 0);
	bdev_emu_fail_block(d, BDEV_EMU_WRITE, 5, 1, -EROFS);
	assert_int_equal(emu_put(d, 0, 5, 1), 0); /* ends before block 5 */
	assert_int_equal(emu_put(d, 6, 2, 1), 0); /* starts after it */
	assert_int_equal(emu_put(d, 4, 2, 9), -EROFS);
	assert_true(emu_block_is(d, 4, 5));
	assert_true(emu_block_is(d, 5, 0));
	assert_int_equal(emu_put(d, 4, 2, 9), 0); /* used up */
	assert_true(emu_block_is(d, 5, 10));

	bdev_emu_fail_block(d, BDEV_EMU_READ, 3, 0, -EUCLEAN);
	assert_int_equal(bdev_read(d, 0, 4, buf), -EUCLEAN);
	assert_int_equal(bdev_read(d, 0, 3, buf), 0);
	assert_int_equal(bdev_read(d, 4, 4, buf), 0);
	for (unsigned i = 0; i < 3; i++)
		assert_int_equal(bdev_read(d, 3, 1, buf), -EUCLEAN);
	assert_int_equal(emu_put(d, 3, 1, 40), 0); /* writes are not affected */
	assert_int_equal(bdev_flush(d), 0);	   /* nor flushes */
	bdev_emu_clear_faults(d);
	assert_true(emu_block_is(d, 3, 40));
	bdev_close(d);
}

/* ---- copies ----------------------------------------------------------- */

static void emu_same_content(struct bdev *a, struct bdev *b)
{
	unsigned char *x = emu_image(a), *y = emu_image(b);

	assert_int_equal(bdev_nblocks(a), bdev_nblocks(b));
	assert_int_equal(bdev_block_size(a), bdev_block_size(b));
	assert_memory_equal(x, y, bdev_nblocks(a) * bdev_block_size(a));
	free(x);
	free(y);
}

static void test_emu_save(void **state)
{
	char path[] = "/tmp/cairn-emu-save-XXXXXX";
	struct bdev *d, *f;
	int fd;

	(void)state;
	fd = mkstemp(path);
	assert_true(fd >= 0);
	close(fd);
	d = emu_two_generations(); /* flushed and unflushed content */
	assert_int_equal(emu_put(d, 31, 1, 77), 0);
	assert_int_equal(bdev_save(d, path), 0);
	assert_int_equal(bdev_open_file(path, EMU_BS, 0, BDEV_RDONLY, &f), 0);
	emu_same_content(d, f);
	assert_true(emu_block_is(f, 5, 15));
	assert_true(emu_block_is(f, 31, 77));
	bdev_close(f);
	bdev_close(d);
	unlink(path);
}

static void test_emu_open_copy(void **state)
{
	struct bdev *ram, *d, *c, *cc;
	struct bdev_emu_stats st;

	(void)state;
	assert_int_equal(bdev_open_ram(512, 300, &ram), 0);
	assert_int_equal(emu_put(ram, 0, 3, 1), 0);
	assert_int_equal(emu_put(ram, 299, 1, 9), 0);
	assert_int_equal(bdev_emu_open_copy(ram, &d), 0);
	emu_same_content(ram, d);
	bdev_emu_stats(d, &st);
	assert_int_equal(st.es_writes, 0);
	assert_int_equal(st.es_reads, 1); /* only emu_same_content's one read */
	/* the copied content is durable */
	c = emu_crash(d, BDEV_EMU_DROP_ALL, false, 1);
	emu_same_content(ram, c);
	bdev_close(c);

	/* a copy of an emulated device takes its current content, unflushed too */
	assert_int_equal(emu_put(d, 10, 1, 50), 0);
	assert_int_equal(bdev_emu_open_copy(d, &c), 0);
	cc = emu_crash(c, BDEV_EMU_DROP_ALL, false, 1);
	assert_true(emu_block_is(cc, 10, 50));
	assert_true(emu_block_is(cc, 299, 9));
	bdev_close(cc);
	bdev_close(c);
	/* a source that cannot be read gives no copy */
	bdev_emu_cut_now(d);
	c = NULL;
	assert_int_equal(bdev_emu_open_copy(d, &c), -EIO);
	assert_null(c);
	bdev_close(d);
	bdev_close(ram);
}

/* ---- history: crash points after the run ----------------------------- */

#define EMU_HIST_OPS 40u

/*
 * A seeded run of writes (1 to 3 blocks at random places, seeded tags)
 * and flushes. Writes refused by a power cut are fine (a replay with
 * bdev_emu_cut_after); a failed flush ends it (a replay of a flush cut,
 * whose flush a fault rule fails).
 */
static void emu_hist_workload(struct bdev *d, uint64_t seed)
{
	struct prng rng;

	prng_init(&rng, seed);
	for (unsigned i = 0; i < EMU_HIST_OPS; i++) {
		uint32_t count = 1 + (uint32_t)prng_below(&rng, 3);
		uint64_t blk = prng_below(&rng, EMU_NBLOCKS - count + 1);
		unsigned tag = 1 + (unsigned)prng_below(&rng, 1000);

		(void)emu_put(d, blk, count, tag);
		if (prng_chance(&rng, 1, 4) && bdev_flush(d))
			return; /* a failed flush ends the run (a replay of a flush cut) */
	}
}

/* Some durable writes, then some unflushed ones: history starts after them. */
static void emu_hist_prelude(struct bdev *d)
{
	assert_int_equal(emu_put(d, 0, 4, 500), 0);
	assert_int_equal(bdev_flush(d), 0);
	assert_int_equal(emu_put(d, 2, 4, 600), 0);
	assert_int_equal(emu_put(d, 20, 2, 700), 0);
}

#define EMU_PRELUDE_WRITES 3u

static struct bdev *emu_crash_at(struct bdev *d, uint64_t nth, enum bdev_emu_crash_mode mode,
				 bool tear, uint64_t seed)
{
	struct bdev_emu_crash how = {.ec_mode = mode, .ec_tear = tear, .ec_seed = seed};
	struct bdev *c = NULL;

	assert_int_equal(bdev_emu_crash_at(d, nth, &how, &c), 0);
	assert_non_null(c);
	return c;
}

/* The image of a fresh replay of the run, cut when history write @nth is issued. */
static struct bdev *emu_replay_crash(uint64_t seed, uint64_t nth, enum bdev_emu_crash_mode mode,
				     bool tear, uint64_t cseed)
{
	struct bdev *r, *c;

	assert_int_equal(bdev_emu_open(EMU_BS, EMU_NBLOCKS, &r), 0);
	emu_hist_prelude(r);
	bdev_emu_cut_after(r, EMU_PRELUDE_WRITES + nth);
	emu_hist_workload(r, seed);
	c = emu_crash(r, mode, tear, cseed);
	bdev_close(r);
	return c;
}

/* The image of a fresh replay of the run whose history flush @nth fails, then a crash. */
static struct bdev *emu_replay_flush_crash(uint64_t seed, uint64_t nth,
					   enum bdev_emu_crash_mode mode, bool tear, uint64_t cseed)
{
	struct bdev *r, *c;

	assert_int_equal(bdev_emu_open(EMU_BS, EMU_NBLOCKS, &r), 0);
	emu_hist_prelude(r);
	bdev_emu_fail_op(r, BDEV_EMU_FLUSH, nth, 0, -EIO); /* counts from now */
	emu_hist_workload(r, seed);
	c = emu_crash(r, mode, tear, cseed);
	bdev_close(r);
	return c;
}

static struct bdev *emu_crash_at_flush(struct bdev *d, uint64_t nth, enum bdev_emu_crash_mode mode,
				       bool tear, uint64_t seed)
{
	struct bdev_emu_crash how = {.ec_mode = mode, .ec_tear = tear, .ec_seed = seed};
	struct bdev *c = NULL;

	assert_int_equal(bdev_emu_crash_at_flush(d, nth, &how, &c), 0);
	assert_non_null(c);
	return c;
}

static void test_emu_history_matches_replay(void **state)
{
	uint64_t seed = test_seed("emu_history_matches_replay", 4242);
	struct bdev_emu_stats st;
	struct bdev *d, *a, *b;
	uint64_t writes;

	(void)state;
	assert_int_equal(bdev_emu_open(EMU_BS, EMU_NBLOCKS, &d), 0);
	emu_hist_prelude(d);
	bdev_emu_keep_history(d);
	emu_hist_workload(d, seed);
	writes = bdev_emu_history_writes(d);
	bdev_emu_stats(d, &st);
	assert_int_equal(writes, EMU_HIST_OPS);
	assert_int_equal(st.es_writes, EMU_PRELUDE_WRITES + writes);
	for (uint64_t n = 1; n <= writes + 1; n++) {
		for (unsigned m = 0; m < 8; m++) {
			enum bdev_emu_crash_mode mode = (enum bdev_emu_crash_mode)(m % 4);
			uint64_t cseed = seed + 1000 * n + m;

			a = emu_crash_at(d, n, mode, m >= 4, cseed);
			b = emu_replay_crash(seed, n, mode, m >= 4, cseed);
			emu_same_content(a, b);
			bdev_close(b);
			bdev_close(a);
		}
	}
	assert_true(bdev_emu_history_flushes(d) > 2);
	for (uint64_t f = 1; f <= bdev_emu_history_flushes(d); f++) {
		for (unsigned m = 0; m < 8; m++) {
			enum bdev_emu_crash_mode mode = (enum bdev_emu_crash_mode)(m % 4);
			uint64_t cseed = seed + 7000 * f + m;

			a = emu_crash_at_flush(d, f, mode, m >= 4, cseed);
			b = emu_replay_flush_crash(seed, f, mode, m >= 4, cseed);
			emu_same_content(a, b);
			bdev_close(b);
			bdev_close(a);
		}
	}
	bdev_close(d);
}

/*
 * W1 blk 0 (tag 1), flush, W2 blk 1 (2), W3 blk 2 (3), flush, W4 blk 0 (4).
 * Write n sees durable what the last flush before it made durable.
 */
static void test_emu_history_flush_boundaries(void **state)
{
	static const unsigned want[5][2][3] = {
	    /* per nth: DROP_ALL {blk0, blk1, blk2}, KEEP_ALL {...} */
	    {{0, 0, 0}, {0, 0, 0}}, {{1, 0, 0}, {1, 0, 0}}, {{1, 0, 0}, {1, 2, 0}},
	    {{1, 2, 3}, {1, 2, 3}}, {{1, 2, 3}, {4, 2, 3}},
	};
	struct bdev *d, *c;

	(void)state;
	assert_int_equal(bdev_emu_open(EMU_BS, EMU_NBLOCKS, &d), 0);
	bdev_emu_keep_history(d);
	assert_int_equal(emu_put(d, 0, 1, 1), 0);
	assert_int_equal(bdev_flush(d), 0);
	assert_int_equal(emu_put(d, 1, 1, 2), 0);
	assert_int_equal(emu_put(d, 2, 1, 3), 0);
	assert_int_equal(bdev_flush(d), 0);
	assert_int_equal(bdev_flush(d), 0);
	assert_int_equal(emu_put(d, 0, 1, 4), 0);
	assert_int_equal(bdev_emu_history_writes(d), 4);
	for (uint64_t n = 1; n <= 5; n++) {
		for (unsigned k = 0; k < 2; k++) {
			c = emu_crash_at(d, n, k ? BDEV_EMU_KEEP_ALL : BDEV_EMU_DROP_ALL, false, 1);
			for (unsigned b = 0; b < 3; b++)
				assert_true(emu_block_is(c, b, want[n - 1][k][b]));
			bdev_close(c);
		}
	}
	/* flush cuts: flush 1 (W1 unflushed), 2 (W2, W3), 3 (nothing new) */
	assert_int_equal(bdev_emu_history_flushes(d), 3);
	c = emu_crash_at_flush(d, 1, BDEV_EMU_DROP_ALL, false, 1);
	assert_true(emu_block_is(c, 0, 0));
	bdev_close(c);
	c = emu_crash_at_flush(d, 1, BDEV_EMU_KEEP_ALL, false, 1);
	assert_true(emu_block_is(c, 0, 1));
	bdev_close(c);
	c = emu_crash_at_flush(d, 2, BDEV_EMU_DROP_ALL, false, 1);
	for (unsigned b = 0; b < 3; b++)
		assert_true(emu_block_is(c, b, b ? 0 : 1));
	bdev_close(c);
	c = emu_crash_at_flush(d, 2, BDEV_EMU_KEEP_ALL, false, 1);
	for (unsigned b = 0; b < 3; b++)
		assert_true(emu_block_is(c, b, b + 1));
	bdev_close(c);
	c = emu_crash_at_flush(d, 3, BDEV_EMU_DROP_ALL, false, 1);
	for (unsigned b = 0; b < 3; b++)
		assert_true(emu_block_is(c, b, b + 1));
	bdev_close(c);
	/* a write after the last history write is a later cut point */
	assert_int_equal(bdev_flush(d), 0);
	c = emu_crash_at(d, 5, BDEV_EMU_DROP_ALL, false, 1);
	assert_true(emu_block_is(c, 0, 4));
	bdev_close(c);
	bdev_close(d);
}

static void test_emu_history_args(void **state)
{
	struct bdev_emu_crash how = {.ec_mode = BDEV_EMU_DROP_ALL};
	struct bdev *d, *c = NULL;

	(void)state;
	assert_int_equal(bdev_emu_open(EMU_BS, EMU_NBLOCKS, &d), 0);
	assert_int_equal(emu_put(d, 0, 1, 1), 0);
	assert_int_equal(bdev_emu_history_writes(d), 0);
	assert_int_equal(bdev_emu_crash_at(d, 1, &how, &c), -EINVAL); /* history off */
	assert_int_equal(bdev_emu_crash_at_flush(d, 1, &how, &c), -EINVAL);
	assert_int_equal(bdev_emu_history_flushes(d), 0);
	bdev_emu_keep_history(d);
	assert_int_equal(bdev_emu_crash_at_flush(d, 1, &how, &c), -EINVAL); /* no flush yet */
	assert_int_equal(bdev_emu_crash_at_flush(d, 0, &how, &c), -EINVAL);
	assert_int_equal(bdev_emu_crash_at(d, 0, &how, &c), -EINVAL);
	assert_int_equal(bdev_emu_crash_at(d, 2, &how, &c), -EINVAL);
	assert_int_equal(bdev_emu_crash_at(d, 1, NULL, &c), -EINVAL);
	how.ec_mode = (enum bdev_emu_crash_mode)9;
	assert_int_equal(bdev_emu_crash_at(d, 1, &how, &c), -EINVAL);
	assert_null(c);
	how.ec_mode = BDEV_EMU_KEEP_ALL;
	assert_int_equal(bdev_emu_crash_at(d, 1, &how, &c), 0);
	/* the write unflushed when history began is unflushed at cut 1 */
	assert_true(emu_block_is(c, 0, 1));
	bdev_close(c);
	c = emu_crash_at(d, 1, BDEV_EMU_DROP_ALL, false, 1);
	assert_true(emu_block_is(c, 0, 0));
	bdev_close(c);
	bdev_close(d);
}

/* A new history starts from the durable content of then; nothing leaks. */
static void test_emu_history_restart(void **state)
{
	struct bdev *d, *c;

	(void)state;
	assert_int_equal(bdev_emu_open(EMU_BS, EMU_NBLOCKS, &d), 0);
	bdev_emu_keep_history(d);
	assert_int_equal(emu_put(d, 0, 1, 1), 0);
	assert_int_equal(emu_put(d, 1, 1, 2), 0);
	assert_int_equal(bdev_flush(d), 0);
	assert_int_equal(emu_put(d, 2, 1, 3), 0); /* unflushed across the restart */
	bdev_emu_keep_history(d);
	assert_int_equal(bdev_emu_history_writes(d), 0);
	assert_int_equal(emu_put(d, 3, 1, 4), 0);
	c = emu_crash_at(d, 1, BDEV_EMU_DROP_ALL, false, 1);
	assert_true(emu_block_is(c, 0, 1));
	assert_true(emu_block_is(c, 1, 2));
	assert_true(emu_block_is(c, 2, 0));
	bdev_close(c);
	c = emu_crash_at(d, 2, BDEV_EMU_KEEP_ALL, false, 1);
	assert_true(emu_block_is(c, 2, 3));
	assert_true(emu_block_is(c, 3, 4));
	bdev_close(c);
	assert_int_equal(bdev_flush(d), 0);
	/* the device goes on working, and crash agrees with crash_at at the end */
	c = emu_crash_at(d, 2, BDEV_EMU_DROP_ALL, false, 1);
	emu_same_content(c, d);
	bdev_close(c);
	bdev_close(d);
}

/* Same seed, same image; other seeds vary the subset and the tear. */
static void test_emu_history_deterministic(void **state)
{
	uint64_t seed = test_seed("emu_history_deterministic", 77);
	struct bdev *d, *a, *b;
	unsigned char *ia, *ib, *first = NULL;
	size_t len = EMU_NBLOCKS * EMU_BS;
	bool varied = false;

	(void)state;
	d = emu_many_unflushed();
	bdev_emu_keep_history(d);
	for (unsigned i = 0; i < EMU_SOME_WRITES; i++)
		assert_int_equal(emu_put(d, i, 1, 201 + i), 0);
	for (uint64_t s = seed; s < seed + 8; s++) {
		for (unsigned m = BDEV_EMU_DROP_SOME; m <= BDEV_EMU_REORDER; m++) {
			a = emu_crash_at(d, EMU_SOME_WRITES + 1, m, true, s);
			b = emu_crash_at(d, EMU_SOME_WRITES + 1, m, true, s);
			ia = emu_image(a);
			ib = emu_image(b);
			assert_memory_equal(ia, ib, len);
			if (!first)
				first = ia;
			else
				varied |= memcmp(first, ia, len) != 0;
			if (ia != first)
				free(ia);
			free(ib);
			bdev_close(b);
			bdev_close(a);
		}
	}
	assert_true(varied);
	free(first);
	bdev_close(d);
}

/* ---- threads ---------------------------------------------------------- */

struct emu_writer {
	struct bdev *ew_dev;
	unsigned ew_id;
};

#define EMU_THREADS 4
#define EMU_ROUNDS  50

static void *emu_writer_run(void *arg)
{
	struct emu_writer *w = arg;

	for (unsigned r = 0; r < EMU_ROUNDS; r++) {
		uint64_t blk = w->ew_id + EMU_THREADS * (r % (EMU_NBLOCKS / EMU_THREADS));
		unsigned tag = 1 + 1000 * w->ew_id + r;

		if (emu_put(w->ew_dev, blk, 1, tag) || !emu_block_is(w->ew_dev, blk, tag))
			return (void *)1;
		if (r % 7 == 0 && bdev_flush(w->ew_dev))
			return (void *)1;
	}
	return NULL;
}

static void test_emu_concurrent(void **state)
{
	struct emu_writer w[EMU_THREADS];
	pthread_t t[EMU_THREADS];
	struct bdev_emu_stats st;
	struct bdev *d, *c;

	(void)state;
	test_watchdog("emu_concurrent", 60);
	assert_int_equal(bdev_emu_open(EMU_BS, EMU_NBLOCKS, &d), 0);
	bdev_emu_keep_history(d);
	for (unsigned i = 0; i < EMU_THREADS; i++) {
		w[i] = (struct emu_writer){.ew_dev = d, .ew_id = i};
		test_thread_start(&t[i], emu_writer_run, &w[i]);
	}
	for (unsigned i = 0; i < EMU_THREADS; i++)
		assert_null(test_thread_join(t[i]));
	bdev_emu_stats(d, &st);
	assert_int_equal(st.es_writes, EMU_THREADS * EMU_ROUNDS);
	assert_int_equal(bdev_flush(d), 0);
	c = emu_crash(d, BDEV_EMU_DROP_ALL, false, 1);
	emu_same_content(d, c);
	bdev_close(c);
	/* the history saw the writes in the order the device took them */
	assert_int_equal(bdev_emu_history_writes(d), EMU_THREADS * EMU_ROUNDS);
	c = emu_crash_at(d, EMU_THREADS * EMU_ROUNDS + 1, BDEV_EMU_KEEP_ALL, false, 1);
	emu_same_content(d, c);
	bdev_close(c);
	bdev_close(d);
}

struct emu_io_arg {
	struct bdev *ea_dev;
	int ea_rc;
};

static void *emu_write_one(void *arg)
{
	struct emu_io_arg *a = arg;

	syncpoint_thread_name("W");
	a->ea_rc = emu_put(a->ea_dev, 1, 1, 5);
	return NULL;
}

/* A thread stopped at bdev.emu.write holds no lock: others go on. */
static void test_emu_syncpoint_write(void **state)
{
	struct emu_io_arg a = {0};
	struct bdev_emu_stats st;
	pthread_t t;

	(void)state;
	test_needs_syncpoints();
	test_watchdog("emu_syncpoint_write", 30);
	assert_int_equal(bdev_emu_open(EMU_BS, EMU_NBLOCKS, &a.ea_dev), 0);
	syncpoint_enable();
	syncpoint_order("test.release", "bdev.emu.write@W");
	test_thread_start(&t, emu_write_one, &a);
	syncpoint_wait_arrived("bdev.emu.write@W", 1);
	bdev_emu_stats(a.ea_dev, &st);
	assert_int_equal(st.es_writes, 0);
	assert_true(emu_block_is(a.ea_dev, 1, 0));
	assert_int_equal(bdev_flush(a.ea_dev), 0);
	assert_int_equal(syncpoint_passed("bdev.emu.read"), 1);
	SYNC_POINT("test.release");
	test_thread_join(t);
	assert_int_equal(a.ea_rc, 0);
	assert_true(emu_block_is(a.ea_dev, 1, 5));
	bdev_close(a.ea_dev);
}

/* ---- early flushes ---------------------------------------------------------- */

/* Without bdev_emu_early_flush, bdev_start_flush does nothing. */
static void test_emu_early_flush_off(void **state)
{
	struct bdev_emu_stats st;
	struct bdev *d;

	(void)state;
	assert_int_equal(bdev_emu_open(EMU_BS, EMU_NBLOCKS, &d), 0);
	assert_int_equal(emu_put(d, 1, 1, 3), 0);
	bdev_start_flush(d);
	bdev_emu_stats(d, &st);
	assert_int_equal(st.es_flushes, 0);
	assert_int_equal(st.es_unflushed, 1);
	assert_int_equal(bdev_early_flushes(d), 0);
	bdev_close(d);
}

/* An early flush that failed fails the next bdev_flush, once. */
static void test_emu_early_flush_error_reported(void **state)
{
	struct bdev_emu_stats st;
	struct bdev *d;

	(void)state;
	test_needs_syncpoints();
	test_watchdog("emu_early_flush_error_reported", 30);
	assert_int_equal(bdev_emu_open(EMU_BS, EMU_NBLOCKS, &d), 0);
	assert_int_equal(bdev_emu_early_flush(d), 0);
	syncpoint_enable();
	assert_int_equal(emu_put(d, 1, 1, 3), 0);
	bdev_emu_fail_op(d, BDEV_EMU_FLUSH, 1, 1, -EIO);
	bdev_start_flush(d);
	syncpoint_wait_passed("bdev.flusher.done_locked", 1);
	assert_int_equal(bdev_early_flushes(d), 1);
	bdev_emu_stats(d, &st);
	assert_int_equal(st.es_unflushed, 1);  /* the early flush failed */
	assert_int_equal(bdev_flush(d), -EIO); /* its own succeeds */
	bdev_emu_stats(d, &st);
	assert_int_equal(st.es_unflushed, 0);
	assert_int_equal(bdev_flush(d), 0);
	syncpoint_reset();
	bdev_close(d);
}

/*
 * A bdev_flush whose own flush ends while an early flush runs waits for
 * it, and reports its error: the early flush may have been told of a
 * lost write that its own no longer sees.
 */
static void test_emu_early_flush_waited(void **state)
{
	struct bdev *d;

	(void)state;
	test_needs_syncpoints();
	test_watchdog("emu_early_flush_waited", 30);
	assert_int_equal(bdev_emu_open(EMU_BS, EMU_NBLOCKS, &d), 0);
	assert_int_equal(bdev_emu_early_flush(d), 0);
	syncpoint_enable();
	syncpoint_order("bdev.flush.collect", "bdev.flusher.flush");
	assert_int_equal(emu_put(d, 1, 1, 3), 0);
	bdev_emu_fail_op(d, BDEV_EMU_FLUSH, 2, 1, -EIO); /* the second to reach the device */
	bdev_start_flush(d);
	syncpoint_wait_arrived("bdev.flusher.flush", 1); /* busy, held before its flush */
	assert_int_equal(bdev_flush(d), -EIO);
	assert_int_equal(bdev_early_flushes(d), 1);
	assert_int_equal(bdev_flush(d), 0);
	syncpoint_reset();
	bdev_close(d);
}

/* Asked while one runs, one more early flush runs after it; not more. */
static void test_emu_early_flush_again(void **state)
{
	struct bdev_emu_stats st;
	struct bdev *d;

	(void)state;
	test_needs_syncpoints();
	test_watchdog("emu_early_flush_again", 30);
	assert_int_equal(bdev_emu_open(EMU_BS, EMU_NBLOCKS, &d), 0);
	assert_int_equal(bdev_emu_early_flush(d), 0);
	syncpoint_enable();
	syncpoint_order("test.release", "bdev.flusher.flush");
	assert_int_equal(emu_put(d, 1, 1, 3), 0);
	bdev_start_flush(d);
	syncpoint_wait_arrived("bdev.flusher.flush", 1);
	bdev_start_flush(d);
	bdev_start_flush(d);
	SYNC_POINT("test.release");
	syncpoint_wait_passed("bdev.flusher.done_locked", 2);
	assert_int_equal(bdev_early_flushes(d), 2);
	bdev_emu_stats(d, &st);
	assert_int_equal(st.es_flushes, 2);
	assert_int_equal(st.es_unflushed, 0);
	syncpoint_reset();
	bdev_close(d); /* joins the idle thread */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_emu_records),
	    cmocka_unit_test(test_emu_read_sees_unflushed),
	    cmocka_unit_test(test_emu_cut_after),
	    cmocka_unit_test(test_emu_cut_cancel_and_now),
	    cmocka_unit_test(test_emu_crash_drop_all),
	    cmocka_unit_test(test_emu_crash_keep_all),
	    cmocka_unit_test(test_emu_crash_drop_some),
	    cmocka_unit_test(test_emu_drop_some_keeps_order),
	    cmocka_unit_test(test_emu_reorder),
	    cmocka_unit_test(test_emu_tear),
	    cmocka_unit_test(test_emu_tear_one_of_many),
	    cmocka_unit_test(test_emu_tear_single_sector),
	    cmocka_unit_test(test_emu_crash_args),
	    cmocka_unit_test(test_emu_fail_op),
	    cmocka_unit_test(test_emu_fail_block),
	    cmocka_unit_test(test_emu_save),
	    cmocka_unit_test(test_emu_open_copy),
	    cmocka_unit_test(test_emu_history_matches_replay),
	    cmocka_unit_test(test_emu_history_flush_boundaries),
	    cmocka_unit_test(test_emu_history_args),
	    cmocka_unit_test(test_emu_history_restart),
	    cmocka_unit_test(test_emu_history_deterministic),
	    cmocka_unit_test(test_emu_concurrent),
	    cmocka_unit_test(test_emu_syncpoint_write),
	    cmocka_unit_test(test_emu_early_flush_off),
	    cmocka_unit_test(test_emu_early_flush_error_reported),
	    cmocka_unit_test(test_emu_early_flush_waited),
	    cmocka_unit_test(test_emu_early_flush_again),
	};
	return TEST_RUN("bdev_emu", tests);
}

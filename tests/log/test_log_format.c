/*
 * test_log_format.c - formatting, the two superblocks, opening, probing.
 *
 * What it proves:
 *   - log_format writes both superblocks byte for byte as FORMAT.md says
 *     (decoded here by offset, checksum recomputed) and blank slots, and
 *     log_open reads the geometry back; the default segment is 4 MiB;
 *   - a bad superblock A is replaced by B, with a line naming block 0;
 *     neither valid is -EUCLEAN; log_probe agrees;
 *   - a superblock with a right checksum but impossible geometry, or a
 *     block size other than the device's, is refused, and so is one from
 *     a device since truncated;
 *   - bad options and devices smaller than 4 segments are refused.
 */
#include "harness.h"
#include "log_fixture.h"

#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#define SEG 16u

/* Superblock field offsets (FORMAT.md). */
enum {
	SB_VERSION = 8,
	SB_BLOCK_SIZE = 12,
	SB_SEG_BLOCKS = 16,
	SB_RESERVED = 20,
	SB_NBLOCKS = 24,
	SB_SEG_START = 32,
	SB_NSEGMENTS = 40,
	SB_UUID = 48,
	SB_LABEL = 64,
	SB_CTIME = 128,
	SB_FEATURES = 136,
	SB_CHECKSUM = 144,
	SB_SIZE = 152,
};

/* The checksum FORMAT.md gives for the superblock in @blk. */
static uint64_t sb_csum(const unsigned char *blk)
{
	unsigned char tmp[SB_SIZE];

	memcpy(tmp, blk, SB_SIZE);
	lt_put_le64(tmp, SB_CHECKSUM, 0);
	return XXH3_64bits(tmp, SB_SIZE);
}

/* Re-checksum the superblock in @blk after a field was changed. */
static void sb_reseal(unsigned char *blk)
{
	lt_put_le64(blk, SB_CHECKSUM, sb_csum(blk));
}

static void test_format_round_trip(void **state)
{
	struct bdev *d = lt_dev(SEG, 6);
	unsigned char a[LT_BS], b[LT_BS], zero[LT_BS] = {0};
	const struct log_geometry *g;
	struct log *l;

	(void)state;
	lt_format(d, SEG);
	lt_read(d, 0, a);
	assert_memory_equal(a, "CAIRNSB1", 8);
	assert_int_equal(lt_get_le32(a, SB_VERSION), 3);
	assert_int_equal(lt_get_le32(a, SB_BLOCK_SIZE), LT_BS);
	assert_int_equal(lt_get_le32(a, SB_SEG_BLOCKS), SEG);
	assert_int_equal(lt_get_le32(a, SB_RESERVED), 0);
	assert_int_equal(lt_get_le64(a, SB_NBLOCKS), bdev_nblocks(d));
	assert_int_equal(lt_get_le64(a, SB_SEG_START), SEG); /* first multiple of 16 >= 3 */
	assert_int_equal(lt_get_le64(a, SB_NSEGMENTS), 6);
	assert_memory_equal(a + SB_UUID, lt_uuid, 16);
	assert_string_equal((char *)a + SB_LABEL, "test");
	assert_true(lt_get_le64(a, SB_CTIME) > 1600000000u);
	assert_int_equal(lt_get_le64(a, SB_FEATURES), 0);
	assert_int_equal(lt_get_le64(a, SB_CHECKSUM), sb_csum(a));
	assert_memory_equal(a + SB_SIZE, zero, LT_BS - SB_SIZE);
	/* B is the same block at the device's end; both slots are blank */
	lt_read(d, bdev_nblocks(d) - 1, b);
	assert_memory_equal(a, b, LT_BS);
	lt_read(d, 1, b);
	assert_memory_equal(b, zero, LT_BS);
	lt_read(d, 2, b);
	assert_memory_equal(b, zero, LT_BS);

	l = lt_open(d);
	g = log_geometry(l);
	assert_int_equal(g->lg_block_size, LT_BS);
	assert_int_equal(g->lg_seg_blocks, SEG);
	assert_int_equal(g->lg_nblocks, bdev_nblocks(d));
	assert_int_equal(g->lg_seg_start, SEG);
	assert_int_equal(g->lg_nsegments, 6);
	assert_memory_equal(g->lg_uuid, lt_uuid, 16);
	assert_ptr_equal(log_bdev(l), d);
	log_close(l);
	bdev_close(d);
}

/* Everything format writes is durable when it returns. */
static void test_format_is_durable(void **state)
{
	struct bdev *d = lt_dev(SEG, 4), *img;
	struct log *l = NULL;

	(void)state;
	lt_format(d, SEG);
	img = lt_crash(d, BDEV_EMU_DROP_ALL, false, 1);
	assert_int_equal(log_open(img, &l), 0);
	log_close(l);
	bdev_close(img);
	bdev_close(d);
}

/* Defaults: 4096-byte blocks, 4 MiB segments, a random uuid. */
static void test_format_defaults(void **state)
{
	struct bdev *d = NULL;
	struct log *l;
	uint8_t zero[16] = {0};

	(void)state;
	assert_int_equal(bdev_open_ram(4096, 1024 + 4 * 1024 + 1, &d), 0);
	assert_int_equal(log_format(d, NULL), 0);
	l = lt_open(d);
	assert_int_equal(log_geometry(l)->lg_seg_blocks, 1024);
	assert_int_equal(log_geometry(l)->lg_seg_start, 1024);
	assert_int_equal(log_geometry(l)->lg_nsegments, 4);
	assert_memory_not_equal(log_geometry(l)->lg_uuid, zero, 16);
	assert_int_equal(log_geometry(l)->lg_uuid[6] >> 4, 4); /* version 4 uuid */
	log_close(l);
	bdev_close(d);
}

static void test_open_uses_b_when_a_is_bad(void **state)
{
	struct bdev *d = lt_dev(SEG, 4);
	struct log *l = NULL;

	(void)state;
	lt_format(d, SEG);
	assert_true(log_probe(d));
	lt_flip(d, 0, 77); /* one bit of superblock A */
	assert_true(log_probe(d));
	lt_log_catch("block 0");
	assert_int_equal(log_open(d, &l), 0);
	assert_int_equal(lt_log_lines(), 1);
	assert_int_equal(lt_log_named(), 1);
	lt_log_catch_stop();
	assert_int_equal(log_geometry(l)->lg_nsegments, 4);
	log_close(l);
	bdev_close(d);
}

static void test_open_both_bad(void **state)
{
	struct bdev *d = lt_dev(SEG, 4);
	struct log *l = NULL;

	(void)state;
	lt_format(d, SEG);
	lt_flip(d, 0, 8 * SB_CTIME); /* only the checksum can tell */
	lt_zero(d, bdev_nblocks(d) - 1);
	assert_false(log_probe(d));
	lt_log_catch("block 0");
	assert_int_equal(log_open(d, &l), -EUCLEAN);
	assert_int_equal(lt_log_named(), 1);
	lt_log_catch_stop();
	bdev_close(d);
}

static void test_probe_blank_and_garbage(void **state)
{
	struct bdev *d = lt_dev(SEG, 4);
	unsigned char buf[LT_BS];
	struct prng rng;
	struct log *l = NULL;

	(void)state;
	assert_false(log_probe(d));
	prng_init(&rng, test_seed("log_format: probe_garbage", 11));
	prng_fill(&rng, buf, sizeof(buf));
	memcpy(buf, "CAIRNSB1", 8); /* the magic alone is not enough */
	lt_write(d, 0, buf);
	lt_write(d, bdev_nblocks(d) - 1, buf);
	assert_false(log_probe(d));
	lt_log_mute();
	assert_int_equal(log_open(d, &l), -EUCLEAN);
	lt_log_catch_stop();
	bdev_close(d);
}

/* Rewrite both superblocks with field @off set to @v (32 or 64 bits), resealed. */
static void sb_forge(struct bdev *d, size_t off, uint64_t v, bool wide)
{
	unsigned char a[LT_BS];

	lt_read(d, 0, a);
	if (wide)
		lt_put_le64(a, off, v);
	else
		lt_put_le32(a, off, (uint32_t)v);
	sb_reseal(a);
	lt_write(d, 0, a);
	lt_write(d, bdev_nblocks(d) - 1, a);
}

/* A checksum is not enough: every geometry field is checked. */
static void test_open_refuses_bad_geometry(void **state)
{
	static const struct {
		size_t off;
		uint64_t v;
		bool wide;
	} bad[] = {
	    {SB_VERSION, 1, false}, /* before mount nonces */
	    {SB_VERSION, 2, false}, /* before summary tags */
	    {SB_VERSION, 4, false},
	    {SB_BLOCK_SIZE, 8192, false},
	    {SB_BLOCK_SIZE, 4000, false},
	    {SB_BLOCK_SIZE, 0, false},
	    {SB_SEG_BLOCKS, 8, false},
	    {SB_SEG_BLOCKS, 0, false},
	    {SB_SEG_BLOCKS, 1u << 31, false},
	    {SB_RESERVED, 1, false},
	    {SB_NBLOCKS, 1ull << 62, true},
	    {SB_NBLOCKS, 0, true},
	    {SB_SEG_START, 0, true},
	    {SB_SEG_START, 3, true},
	    {SB_NSEGMENTS, 5, true},
	    {SB_NSEGMENTS, 3, true},
	    {SB_NSEGMENTS, UINT64_MAX, true},
	    {SB_FEATURES, 1, true},
	    {SB_LABEL + 60, 0x41414141u, false},
	};
	struct log *l = NULL;

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		struct bdev *d = lt_dev(SEG, 4);

		lt_format(d, SEG);
		sb_forge(d, bad[i].off, bad[i].v, bad[i].wide);
		lt_log_mute();
		if (log_open(d, &l) != -EUCLEAN)
			fail_msg("case %zu (offset %zu) accepted", i, bad[i].off);
		assert_false(log_probe(d));
		lt_log_catch_stop();
		bdev_close(d);
	}
}

/* A volume copied to a shorter device, and to one with another block size. */
static void test_open_refuses_other_device(void **state)
{
	struct bdev *d = lt_dev(SEG, 4), *small = NULL, *b512 = NULL;
	unsigned char buf[LT_BS];
	struct log *l = NULL;

	(void)state;
	lt_format(d, SEG);
	assert_int_equal(bdev_emu_open(LT_BS, bdev_nblocks(d) - 1, &small), 0);
	assert_int_equal(bdev_emu_open(512, 8 * bdev_nblocks(d), &b512), 0);
	for (uint64_t blk = 0; blk < bdev_nblocks(d); blk++) {
		lt_read(d, blk, buf);
		if (blk < bdev_nblocks(small))
			assert_int_equal(bdev_write(small, blk, 1, buf), 0);
		assert_int_equal(bdev_write(b512, blk * 8, 8, buf), 0);
	}
	lt_log_catch("larger than the device");
	assert_int_equal(log_open(small, &l), -EUCLEAN);
	assert_int_equal(lt_log_named(), 1);
	lt_log_catch("block size");
	assert_int_equal(log_open(b512, &l), -EUCLEAN);
	assert_int_equal(lt_log_named(), 1);
	lt_log_catch_stop();
	bdev_close(b512);
	bdev_close(small);
	bdev_close(d);
}

static void test_format_refuses_bad_options(void **state)
{
	char label[80];
	struct bdev *d = lt_dev(SEG, 4);
	struct log_format_opts o = {.lfo_block_size = LT_BS, .lfo_seg_blocks = SEG};

	(void)state;
	o.lfo_block_size = 512; /* not the device's */
	assert_int_equal(log_format(d, &o), -EINVAL);
	o.lfo_block_size = LT_BS;
	o.lfo_seg_blocks = 15;
	assert_int_equal(log_format(d, &o), -EINVAL);
	o.lfo_seg_blocks = (256u << 20) / LT_BS + 1; /* over 256 MiB */
	assert_int_equal(log_format(d, &o), -EINVAL);
	o.lfo_seg_blocks = SEG;
	memset(label, 'x', 64);
	label[64] = '\0';
	o.lfo_label = label;
	assert_int_equal(log_format(d, &o), -EINVAL);
	label[63] = '\0'; /* 63 bytes fit */
	assert_int_equal(log_format(d, &o), 0);
	assert_true(log_probe(d));
	bdev_close(d);
}

static void test_format_refuses_small_device(void **state)
{
	struct bdev *d = NULL;
	struct log_format_opts o = {.lfo_block_size = LT_BS, .lfo_seg_blocks = SEG};

	(void)state;
	/* 4 segments but no room for superblock B after them */
	assert_int_equal(bdev_emu_open(LT_BS, SEG + 4 * SEG, &d), 0);
	assert_int_equal(log_format(d, &o), -EINVAL);
	assert_false(log_probe(d));
	bdev_close(d);
	assert_int_equal(bdev_emu_open(LT_BS, SEG + 4 * SEG + 1, &d), 0);
	assert_int_equal(log_format(d, &o), 0);
	bdev_close(d);
	assert_int_equal(bdev_emu_open(LT_BS, 2, &d), 0);
	assert_int_equal(log_format(d, &o), -EINVAL);
	bdev_close(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_format_round_trip),
	    cmocka_unit_test(test_format_is_durable),
	    cmocka_unit_test(test_format_defaults),
	    cmocka_unit_test(test_open_uses_b_when_a_is_bad),
	    cmocka_unit_test(test_open_both_bad),
	    cmocka_unit_test(test_probe_blank_and_garbage),
	    cmocka_unit_test(test_open_refuses_bad_geometry),
	    cmocka_unit_test(test_open_refuses_other_device),
	    cmocka_unit_test(test_format_refuses_bad_options),
	    cmocka_unit_test(test_format_refuses_small_device),
	};

	return TEST_RUN("log_format", tests);
}

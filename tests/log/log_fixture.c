/*
 * log_fixture.c - volumes on the emulated device for the log tests.
 */
#include "harness.h"
#include "log_fixture.h"

#include <stdlib.h>
#include <string.h>

const uint8_t lt_uuid[16] = {0xca, 0x12, 0x4e, 0x01, 0x02, 0x03, 0x04, 0x05,
			     0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d};

struct bdev *lt_dev(uint32_t seg_blocks, uint64_t nsegs)
{
	struct bdev *d = NULL;

	/* segment 0 starts at block seg_blocks; superblock B after the last */
	assert_int_equal(bdev_emu_open(LT_BS, seg_blocks + nsegs * seg_blocks + 1, &d), 0);
	return d;
}

void lt_format(struct bdev *d, uint32_t seg_blocks)
{
	struct log_format_opts o = {
	    .lfo_block_size = LT_BS,
	    .lfo_seg_blocks = seg_blocks,
	    .lfo_label = "test",
	    .lfo_uuid = lt_uuid,
	};

	assert_int_equal(log_format(d, &o), 0);
}

struct log *lt_open(struct bdev *d)
{
	struct log *l = NULL;

	assert_int_equal(log_open(d, &l), 0);
	return l;
}

void lt_release_unneeded(struct log *l)
{
	assert_int_equal(log_checkpoint(l), 0);
	for (uint64_t s = 0; s < log_geometry(l)->lg_nsegments; s++) {
		int err = log_seg_release(l, s);

		assert_true(err == 0 || err == -EBUSY);
	}
}

struct log *lt_recover(struct bdev *d, struct log_state *st)
{
	struct log *l = lt_open(d);

	assert_int_equal(log_recover(l, st), 0);
	lt_release_unneeded(l);
	return l;
}

struct log *lt_volume(uint32_t seg_blocks, uint64_t nsegs, struct bdev **dev)
{
	*dev = lt_dev(seg_blocks, nsegs);
	lt_format(*dev, seg_blocks);
	return lt_open(*dev);
}

/* ---- block content --------------------------------------------------------- */

void lt_pattern(void *buf, uint64_t owner, uint64_t index, uint64_t delta)
{
	uint64_t *w = buf, x = owner * 0x9e3779b97f4a7c15ull ^ index * 0xbf58476d1ce4e5b9ull ^
			       delta * 0x94d049bb133111ebull ^ 0x5eed;

	for (size_t i = 0; i < LT_BS / 8; i++) {
		x ^= x >> 12; /* xorshift64* */
		x ^= x << 25;
		x ^= x >> 27;
		w[i] = x * 0x2545f4914f6cdd1dull;
	}
}

void lt_sr_pattern(void *buf, uint64_t delta)
{
	lt_pattern(buf, LT_SR_OWNER, 0, delta);
	memcpy(buf, "SUPERROOT", 9);
	memcpy((char *)buf + 16, &delta, sizeof(delta));
}

int lt_delta(struct log *l, uint64_t delta, uint32_t ndata, uint64_t *addrs, uint64_t *sr_blk)
{
	unsigned char buf[LT_BS];
	struct log_builder *lb = NULL;
	uint64_t blk;

	assert_int_equal(log_build_begin(l, delta, &lb), 0);
	for (uint32_t i = 0; i < ndata; i++) {
		lt_pattern(buf, LT_DATA_OWNER, i, delta);
		assert_int_equal(
		    log_build_add_tagged(lb, LT_DATA_OWNER, i, lt_tag(delta, i), 0, buf, &blk), 0);
		if (addrs)
			addrs[i] = blk;
	}
	lt_sr_pattern(buf, delta);
	assert_int_equal(
	    log_build_add(lb, LT_SR_OWNER, 0, LOG_ENTRY_SUPER_ROOT | LOG_ENTRY_META, buf, &blk), 0);
	if (sr_blk)
		*sr_blk = blk;
	return log_build_finish(lb);
}

void lt_delta_ok(struct log *l, uint64_t delta, uint32_t ndata, uint64_t *addrs, uint64_t *sr_blk)
{
	assert_int_equal(lt_delta(l, delta, ndata, addrs, sr_blk), 0);
}

bool lt_block_is(struct bdev *d, uint64_t blk, uint64_t owner, uint64_t index, uint64_t delta)
{
	unsigned char want[LT_BS], got[LT_BS];

	lt_pattern(want, owner, index, delta);
	return !bdev_read(d, blk, 1, got) && !memcmp(want, got, LT_BS);
}

uint64_t lt_sr_delta(struct bdev *d, uint64_t blk)
{
	unsigned char want[LT_BS], got[LT_BS];
	uint64_t delta;

	if (bdev_read(d, blk, 1, got))
		return UINT64_MAX;
	memcpy(&delta, got + 16, sizeof(delta));
	lt_sr_pattern(want, delta);
	return memcmp(want, got, LT_BS) ? UINT64_MAX : delta;
}

void lt_assert_state(struct bdev *d, const struct log_state *st, uint64_t delta)
{
	assert_int_equal(st->ls_delta, delta);
	assert_int_equal(lt_sr_delta(d, st->ls_sr_blk), delta);
}

struct bdev *lt_crash(struct bdev *d, enum bdev_emu_crash_mode mode, bool tear, uint64_t seed)
{
	struct bdev_emu_crash how = {.ec_mode = mode, .ec_tear = tear, .ec_seed = seed};
	struct bdev *img = NULL;

	assert_int_equal(bdev_emu_crash(d, &how, &img), 0);
	return img;
}

/* ---- raw access ------------------------------------------------------------- */

void lt_read(struct bdev *d, uint64_t blk, void *buf)
{
	assert_int_equal(bdev_read(d, blk, 1, buf), 0);
}

void lt_write(struct bdev *d, uint64_t blk, const void *buf)
{
	assert_int_equal(bdev_write(d, blk, 1, buf), 0);
	assert_int_equal(bdev_flush(d), 0);
}

void lt_flip(struct bdev *d, uint64_t blk, uint32_t bit)
{
	unsigned char buf[LT_BS];

	lt_read(d, blk, buf);
	buf[(bit / 8) % LT_BS] ^= (unsigned char)(1u << (bit % 8));
	lt_write(d, blk, buf);
}

void lt_zero(struct bdev *d, uint64_t blk)
{
	unsigned char buf[LT_BS] = {0};

	lt_write(d, blk, buf);
}

uint64_t lt_get_le64(const void *p, size_t off)
{
	const unsigned char *b = (const unsigned char *)p + off;
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = v << 8 | b[i];
	return v;
}

uint32_t lt_get_le32(const void *p, size_t off)
{
	const unsigned char *b = (const unsigned char *)p + off;

	return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

void lt_put_le64(void *p, size_t off, uint64_t v)
{
	unsigned char *b = (unsigned char *)p + off;

	for (int i = 0; i < 8; i++, v >>= 8)
		b[i] = (unsigned char)v;
}

void lt_put_le32(void *p, size_t off, uint32_t v)
{
	unsigned char *b = (unsigned char *)p + off;

	for (int i = 0; i < 4; i++, v >>= 8)
		b[i] = (unsigned char)v;
}

/* ---- catching log lines ----------------------------------------------------- */

static struct {
	const char *lc_needle;
	unsigned lc_errors;
	unsigned lc_named;
} lt_caught;

static void lt_log_sink(enum log_level level, const char *line, void *arg)
{
	(void)arg;
	if (level > LOG_WARN || !lt_caught.lc_needle)
		return;
	lt_caught.lc_errors++;
	if (strstr(line, lt_caught.lc_needle))
		lt_caught.lc_named++;
}

void lt_log_catch(const char *needle)
{
	memset(&lt_caught, 0, sizeof(lt_caught));
	lt_caught.lc_needle = needle;
	cairn_log_set_sink(lt_log_sink, NULL);
}

void lt_log_mute(void)
{
	memset(&lt_caught, 0, sizeof(lt_caught));
	cairn_log_set_sink(lt_log_sink, NULL);
}

void lt_log_catch_stop(void)
{
	cairn_log_set_sink(NULL, NULL);
	lt_caught.lc_needle = NULL;
}

unsigned lt_log_lines(void)
{
	return lt_caught.lc_errors;
}

unsigned lt_log_named(void)
{
	return lt_caught.lc_named;
}

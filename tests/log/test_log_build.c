/*
 * test_log_build.c - laying out and writing deltas.
 *
 * What it proves:
 *   - every address log_build_add returns is where the block lands, in
 *     the layout FORMAT.md gives (header, reserved summary, payload);
 *   - headers and summary entries hold what FORMAT.md says, checksums
 *     included (decoded here by offset, recomputed with XXH3), and logs
 *     chain across segments (next_blk, seq, prev_nonce, prev_sum);
 *   - every log of a mount carries its nonce; each open of a fresh
 *     volume and each recovery draws a new one, and the first log after
 *     it names the previous mount's last log;
 *   - a delta's last log is followed by the next one in the same segment
 *     only while 3 blocks remain;
 *   - -ENOSPC when no segment is left, in add and in finish;
 *   - finish flushes (and the first finish also writes a checkpoint):
 *     what it returned 0 for survives a power cut;
 *   - misuse is refused; abort leaves the head where the next delta
 *     continues;
 *   - a failed write or flush moves the next delta to a fresh segment,
 *     never reuses a sequence number, and the next finish anchors it
 *     with a checkpoint so it survives a power cut.
 */
#include "harness.h"
#include "log_fixture.h"

#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#define SEG  16u
#define SEG0 SEG /* first block of segment 0 with 16-block segments */
#define CAP  14u /* payload blocks of a log filling a 16-block segment */

/* Log header field offsets (FORMAT.md). */
enum {
	LH_VERSION = 8,
	LH_FLAGS = 12,
	LH_SEQ = 16,
	LH_DELTA = 24,
	LH_NBLOCKS = 32,
	LH_NENTRIES = 36,
	LH_NEXT = 40,
	LH_UUID = 48,
	LH_NONCE = 64,
	LH_PREV_NONCE = 72,
	LH_PREV = 80,
	LH_SUM = 88,
	LH_DATA = 96,
	LH_SIZE = 104,
};

/* A log read raw from the device: its blocks and decoded header. */
struct raw_log {
	unsigned char *rl_buf;
	uint64_t rl_blk;
	uint32_t rl_nblocks, rl_nentries, rl_flags;
	uint64_t rl_seq, rl_delta, rl_next, rl_nonce, rl_prev_nonce, rl_prev, rl_sum, rl_data;
};

static void raw_log_read(struct bdev *d, uint64_t blk, struct raw_log *rl)
{
	unsigned char head[LT_BS];

	lt_read(d, blk, head);
	assert_memory_equal(head, "CAIRNLG1", 8);
	assert_int_equal(lt_get_le32(head, LH_VERSION), 3);
	assert_memory_equal(head + LH_UUID, lt_uuid, 16);
	rl->rl_blk = blk;
	rl->rl_flags = lt_get_le32(head, LH_FLAGS);
	rl->rl_seq = lt_get_le64(head, LH_SEQ);
	rl->rl_delta = lt_get_le64(head, LH_DELTA);
	rl->rl_nblocks = lt_get_le32(head, LH_NBLOCKS);
	rl->rl_nentries = lt_get_le32(head, LH_NENTRIES);
	rl->rl_next = lt_get_le64(head, LH_NEXT);
	rl->rl_nonce = lt_get_le64(head, LH_NONCE);
	rl->rl_prev_nonce = lt_get_le64(head, LH_PREV_NONCE);
	rl->rl_prev = lt_get_le64(head, LH_PREV);
	rl->rl_sum = lt_get_le64(head, LH_SUM);
	rl->rl_data = lt_get_le64(head, LH_DATA);
	assert_true(rl->rl_nblocks >= 3 && rl->rl_nblocks <= SEG * 16);
	rl->rl_buf = malloc((size_t)rl->rl_nblocks * LT_BS);
	assert_non_null(rl->rl_buf);
	assert_int_equal(bdev_read(d, blk, rl->rl_nblocks, rl->rl_buf), 0);
}

/* Check both checksums of @rl as FORMAT.md defines them. */
static void raw_log_check_csums(const struct raw_log *rl)
{
	size_t head_bytes = (size_t)(rl->rl_nblocks - rl->rl_nentries) * LT_BS;
	unsigned char *copy = malloc(head_bytes);

	assert_non_null(copy);
	memcpy(copy, rl->rl_buf, head_bytes);
	lt_put_le64(copy, LH_SUM, 0);
	lt_put_le64(copy, LH_DATA, 0);
	assert_int_equal(XXH3_64bits(copy, head_bytes), rl->rl_sum);
	assert_int_equal(XXH3_64bits(rl->rl_buf + head_bytes, (size_t)rl->rl_nentries * LT_BS),
			 rl->rl_data);
	free(copy);
}

/* Summary entry @i of @rl. */
static const unsigned char *raw_entry(const struct raw_log *rl, uint32_t i)
{
	return rl->rl_buf + LT_BS + (size_t)i * 32;
}

static void raw_log_free(struct raw_log *rl)
{
	free(rl->rl_buf);
}

/* ---- layout ------------------------------------------------------------------ */

/* log_seg_scan: every block of a segment's logs, with its summary entry and tag. */
struct scan_seen {
	uint64_t ss_n, ss_sr;
	uint64_t ss_blk[64];
};

static int scan_one(void *arg, uint64_t owner, uint64_t index, uint64_t tag, uint32_t flags,
		    uint64_t blk)
{
	struct scan_seen *ss = arg;

	if (flags & LOG_ENTRY_SUPER_ROOT) {
		assert_int_equal(owner, LT_SR_OWNER);
		assert_int_equal(tag, 0);
		ss->ss_sr = blk;
		return 0;
	}
	assert_int_equal(owner, LT_DATA_OWNER);
	assert_int_equal(tag, lt_tag(2, index)); /* what lt_delta tagged it with */
	assert_true(index < ARRAY_SIZE(ss->ss_blk));
	ss->ss_blk[index] = blk;
	ss->ss_n++;
	return 0;
}

static void test_build_tags_scan_back(void **state)
{
	struct bdev *d;
	struct log *l = lt_volume(SEG, 8, &d);
	struct scan_seen ss = {0};
	uint64_t addrs[10], sr;

	(void)state;
	lt_delta_ok(l, 1, 0, NULL, NULL);
	lt_delta_ok(l, 2, 10, addrs, &sr);
	assert_int_equal(log_seg_scan(l, 0, scan_one, &ss), 0);
	assert_int_equal(ss.ss_n, 10);
	assert_int_equal(ss.ss_sr, sr);
	for (uint32_t i = 0; i < 10; i++)
		assert_int_equal(ss.ss_blk[i], addrs[i]);
	log_close(l);
	bdev_close(d);
}

static void test_build_addresses_land(void **state)
{
	struct bdev *d;
	struct log *l = lt_volume(SEG, 8, &d);
	struct log_builder *lb = NULL;
	unsigned char buf[LT_BS];
	uint64_t addrs[38], blk, sr;

	(void)state;
	assert_int_equal(log_build_begin(l, 1, &lb), 0);
	assert_int_equal(log_build_blocks(lb), 0);
	for (uint32_t i = 0; i < 38; i++) {
		lt_pattern(buf, LT_DATA_OWNER, i, 1);
		assert_int_equal(log_build_add(lb, LT_DATA_OWNER, i, 0, buf, &addrs[i]), 0);
		memset(buf, 0xee, sizeof(buf)); /* the data was copied */
		/* log i/14 in segment i/14, after its header and one summary block */
		assert_int_equal(addrs[i], SEG0 + (i / CAP) * SEG + 2 + i % CAP);
	}
	assert_int_equal(log_build_blocks(lb), 2 * SEG + 2 + 10);
	lt_sr_pattern(buf, 1);
	assert_int_equal(log_build_add(lb, LT_SR_OWNER, 0, LOG_ENTRY_SUPER_ROOT, buf, &sr), 0);
	assert_int_equal(sr, SEG0 + 2 * SEG + 2 + 10);
	assert_int_equal(log_build_blocks(lb), 2 * SEG + 2 + 11);
	assert_int_equal(log_build_finish(lb), 0);
	for (uint32_t i = 0; i < 38; i++)
		assert_true(lt_block_is(d, addrs[i], LT_DATA_OWNER, i, 1));
	assert_int_equal(lt_sr_delta(d, sr), 1);

	/* the next delta follows in the 3 blocks left, then the next segment */
	lt_delta_ok(l, 2, 1, &blk, &sr);
	assert_int_equal(blk, SEG0 + 2 * SEG + 13 + 2);
	assert_int_equal(sr, SEG0 + 3 * SEG + 2);
	assert_true(lt_block_is(d, blk, LT_DATA_OWNER, 0, 2));
	assert_int_equal(lt_sr_delta(d, sr), 2);
	log_close(l);
	bdev_close(d);
}

static void test_build_raw_logs(void **state)
{
	struct bdev *d;
	struct log *l = lt_volume(SEG, 8, &d);
	struct raw_log rl[2];
	unsigned char zero[32] = {0}, head[LT_BS];

	(void)state;
	lt_delta_ok(l, 7, 20, NULL, NULL); /* logs of 14 and 6 + 1 payload blocks */
	raw_log_read(d, SEG0, &rl[0]);
	raw_log_read(d, rl[0].rl_next, &rl[1]);
	assert_int_equal(rl[0].rl_next, SEG0 + SEG); /* the next segment */

	assert_int_equal(rl[0].rl_seq, 1); /* the volume's first log */
	assert_int_equal(rl[0].rl_prev, 0);
	assert_int_equal(rl[0].rl_prev_nonce, 0);
	assert_int_not_equal(rl[0].rl_nonce, 0);
	assert_int_equal(rl[0].rl_flags, 0);
	assert_int_equal(rl[0].rl_delta, 7);
	assert_int_equal(rl[0].rl_nblocks, 16);
	assert_int_equal(rl[0].rl_nentries, 14);
	raw_log_check_csums(&rl[0]);

	assert_int_equal(rl[1].rl_seq, 2);
	assert_int_equal(rl[1].rl_prev, rl[0].rl_sum);
	assert_int_equal(rl[1].rl_nonce, rl[0].rl_nonce); /* one mount */
	assert_int_equal(rl[1].rl_prev_nonce, rl[0].rl_nonce);
	assert_int_equal(rl[1].rl_flags, 1); /* SR */
	assert_int_equal(rl[1].rl_nblocks, 1 + 1 + 7);
	assert_int_equal(rl[1].rl_nentries, 7);
	assert_int_equal(rl[1].rl_next, SEG0 + SEG + 9); /* right after it */
	raw_log_check_csums(&rl[1]);
	for (uint32_t i = 0; i < 7; i++) {
		const unsigned char *e = raw_entry(&rl[1], i);
		bool sr = i == 6;

		assert_int_equal(lt_get_le64(e, 0), sr ? LT_SR_OWNER : LT_DATA_OWNER);
		assert_int_equal(lt_get_le64(e, 8), sr ? 0 : 14 + i);
		assert_int_equal(lt_get_le64(e, 16), sr ? 0 : lt_tag(7, 14 + i)); /* the client's */
		assert_int_equal(lt_get_le32(e, 24), sr ? 0x3 : 0);
		assert_int_equal(lt_get_le32(e, 28), 0);
	}
	assert_memory_equal(raw_entry(&rl[1], 7), zero, 32); /* unused entries are zero */
	lt_read(d, SEG0, head);
	assert_memory_equal(head + LH_SIZE, zero, sizeof(zero)); /* the header ends there */
	/* nothing written yet at the head: no header there */
	lt_read(d, rl[1].rl_next, head);
	assert_memory_not_equal(head, "CAIRNLG1", 8);
	for (int i = 0; i < 2; i++)
		raw_log_free(&rl[i]);
	log_close(l);
	bdev_close(d);
}

/* A log in a larger segment keeps its full summary area even when short. */
static void test_build_reserved_summary(void **state)
{
	struct bdev *d;
	struct log *l = lt_volume(256, 4, &d); /* capacity 253: 2 summary blocks */
	unsigned char zero[LT_BS] = {0};
	uint64_t addrs[3], sr;
	struct raw_log rl;

	(void)state;
	lt_delta_ok(l, 1, 3, addrs, &sr);
	for (uint32_t i = 0; i < 3; i++)
		assert_int_equal(addrs[i], 256 + 3 + i);
	assert_int_equal(sr, 256 + 6);
	raw_log_read(d, 256, &rl);
	assert_int_equal(rl.rl_nentries, 4);
	assert_int_equal(rl.rl_nblocks, 1 + 2 + 4);
	assert_int_equal(rl.rl_next, 256 + 7);
	assert_memory_equal(rl.rl_buf + 2 * LT_BS, zero, LT_BS); /* unused summary block */
	raw_log_check_csums(&rl);
	raw_log_free(&rl);
	log_close(l);
	bdev_close(d);
}

/* The last log is followed in its segment only if 3 blocks remain. */
static void test_build_last_log_next(void **state)
{
	struct bdev *d;
	struct log *l = lt_volume(SEG, 8, &d);
	uint64_t blk, sr;
	struct raw_log rl;

	(void)state;
	lt_delta_ok(l, 1, 10, NULL, NULL); /* 13 blocks: 3 remain */
	raw_log_read(d, SEG0, &rl);
	assert_int_equal(rl.rl_next, SEG0 + 13);
	raw_log_free(&rl);
	lt_delta_ok(l, 2, 0, NULL, &sr); /* a 3-block log fills the segment */
	assert_int_equal(sr, SEG0 + 15);
	raw_log_read(d, SEG0 + 13, &rl);
	assert_int_equal(rl.rl_next, SEG0 + SEG);
	raw_log_free(&rl);
	lt_delta_ok(l, 3, 11, NULL, NULL); /* 14 blocks: 2 remain, skipped */
	raw_log_read(d, SEG0 + SEG, &rl);
	assert_int_equal(rl.rl_next, SEG0 + 2 * SEG);
	raw_log_free(&rl);
	lt_delta_ok(l, 4, 0, &blk, &sr);
	assert_int_equal(sr, SEG0 + 2 * SEG + 2);
	log_close(l);
	bdev_close(d);
}

/* The header of the log at @blk, its checksums checked (rl_buf freed). */
static void raw_log_header(struct bdev *d, uint64_t blk, struct raw_log *rl)
{
	raw_log_read(d, blk, rl);
	raw_log_check_csums(rl);
	assert_int_not_equal(rl->rl_nonce, 0);
	raw_log_free(rl);
}

/*
 * Each placing of the head is a new mount with a new nonce: opening a
 * fresh volume, and every recovery, even on a handle that wrote before.
 * The first log of a mount names the last log before it, of the mount
 * before (prev_nonce, prev_sum).
 */
static void test_build_nonce_per_mount(void **state)
{
	struct bdev *d;
	struct log *l = lt_volume(SEG, 8, &d);
	struct raw_log rl[4];
	struct log_state st;

	(void)state;
	/* one 3-block log per delta, from SEG0 on: two by the first mount */
	lt_delta_ok(l, 1, 0, NULL, NULL);
	lt_delta_ok(l, 2, 0, NULL, NULL);
	log_close(l);
	l = lt_recover(d, &st); /* a second mount */
	lt_delta_ok(l, 3, 0, NULL, NULL);
	assert_int_equal(log_recover(l, &st), 0); /* a third, on the same handle */
	lt_delta_ok(l, 4, 0, NULL, NULL);
	for (int i = 0; i < 4; i++)
		raw_log_header(d, SEG0 + 3 * (uint64_t)i, &rl[i]);
	assert_int_equal(rl[0].rl_prev_nonce, 0);
	assert_int_equal(rl[1].rl_nonce, rl[0].rl_nonce);
	for (int i = 1; i < 4; i++) {
		assert_int_equal(rl[i].rl_prev_nonce, rl[i - 1].rl_nonce);
		assert_int_equal(rl[i].rl_prev, rl[i - 1].rl_sum);
	}
	assert_int_not_equal(rl[2].rl_nonce, rl[1].rl_nonce);
	assert_int_not_equal(rl[3].rl_nonce, rl[2].rl_nonce);
	assert_int_not_equal(rl[3].rl_nonce, rl[1].rl_nonce);
	assert_int_equal(log_recover(l, &st), 0); /* and the chain crosses the mounts */
	lt_assert_state(d, &st, 4);
	assert_int_equal(st.ls_rolled, 2); /* from the second mount's checkpoint */
	log_close(l);
	bdev_close(d);
}

/* ---- space ------------------------------------------------------------------- */

static void test_build_enospc(void **state)
{
	struct bdev *d;
	struct log *l = lt_volume(SEG, 4, &d);
	struct log_builder *lb = NULL;
	unsigned char buf[LT_BS] = {0};
	uint64_t blk;
	uint32_t i;

	(void)state;
	assert_int_equal(log_build_begin(l, 1, &lb), 0);
	for (i = 0; i < 4 * CAP; i++)
		assert_int_equal(log_build_add(lb, LT_DATA_OWNER, i, 0, buf, &blk), 0);
	assert_int_equal(log_build_add(lb, LT_DATA_OWNER, i, 0, buf, &blk), -ENOSPC);
	assert_int_equal(log_build_add(lb, LT_SR_OWNER, 0, LOG_ENTRY_SUPER_ROOT, buf, &blk),
			 -ENOSPC);
	log_build_abort(lb);
	log_close(l);
	bdev_close(d);

	/* the super root fits, but no segment is left for the next log */
	l = lt_volume(SEG, 4, &d);
	assert_int_equal(lt_delta(l, 1, 4 * CAP - 1, NULL, NULL), -ENOSPC);
	log_close(l);
	bdev_close(d);
}

/* ---- durability ---------------------------------------------------------------- */

static void test_build_finish_flushes(void **state)
{
	struct bdev *d, *img;
	struct log *l = lt_volume(SEG, 8, &d), *r;
	struct bdev_emu_stats s0, s1;
	struct log_state st;
	unsigned char slot[LT_BS], zero[LT_BS] = {0};

	(void)state;
	/* the first finish anchors the volume with a checkpoint: 2 flushes */
	bdev_emu_stats(d, &s0);
	lt_delta_ok(l, 1, 3, NULL, NULL);
	bdev_emu_stats(d, &s1);
	assert_int_equal(s1.es_flushes, s0.es_flushes + 2);
	assert_int_equal(s1.es_unflushed, 0);
	lt_read(d, 1, slot);
	assert_memory_not_equal(slot, zero, LT_BS);
	/* later ones flush once, after their last write */
	lt_delta_ok(l, 2, 20, NULL, NULL);
	bdev_emu_stats(d, &s0);
	assert_int_equal(s0.es_flushes, s1.es_flushes + 1);
	assert_int_equal(s0.es_unflushed, 0);

	img = lt_crash(d, BDEV_EMU_DROP_ALL, false, 1);
	r = lt_recover(img, &st);
	lt_assert_state(img, &st, 2);
	log_close(r);
	bdev_close(img);
	log_close(l);
	bdev_close(d);
}

static void test_build_misuse(void **state)
{
	struct bdev *d;
	struct log *l = lt_volume(SEG, 8, &d), *l2;
	struct log_builder *lb = NULL, *lb2 = NULL;
	unsigned char buf[LT_BS] = {0};
	uint64_t blk;

	(void)state;
	assert_int_equal(log_checkpoint(l), -EINVAL); /* no state yet */
	assert_int_equal(log_build_begin(l, 1, &lb), 0);
	assert_int_equal(log_build_begin(l, 1, &lb2), -EBUSY);
	assert_int_equal(log_build_finish(lb), -EINVAL); /* empty */
	assert_int_equal(log_build_begin(l, 1, &lb), 0);
	assert_int_equal(log_build_add(lb, 1, 0, 0x4, buf, &blk), -EINVAL);
	assert_int_equal(log_build_add(lb, 1, 0, 0, buf, &blk), 0);
	assert_int_equal(log_build_finish(lb), -EINVAL); /* no super root */
	assert_int_equal(log_build_begin(l, 1, &lb), 0);
	assert_int_equal(log_build_add(lb, 1, 0, LOG_ENTRY_SUPER_ROOT, buf, &blk), 0);
	assert_int_equal(log_build_add(lb, 1, 1, 0, buf, &blk), -EINVAL); /* after the SR */
	assert_int_equal(log_build_finish(lb), 0);
	assert_int_equal(blk, SEG0 + 2); /* the refused deltas left nothing behind */
	assert_int_equal(log_checkpoint(l), 0);

	/* a volume with state must be recovered before it is written */
	l2 = lt_open(d);
	assert_int_equal(log_build_begin(l2, 2, &lb2), -EINVAL);
	log_close(l2);
	log_close(l);
	bdev_close(d);
}

/* An aborted delta leaves the head for the next; a written log of it stays chained. */
static void test_build_abort(void **state)
{
	struct bdev *d, *img;
	struct log *l = lt_volume(SEG, 8, &d), *r;
	struct log_builder *lb = NULL;
	unsigned char buf[LT_BS] = {0};
	struct log_state st;
	uint64_t blk, first;

	(void)state;
	lt_delta_ok(l, 1, 1, NULL, NULL); /* 4 blocks */
	assert_int_equal(log_build_begin(l, 2, &lb), 0);
	assert_int_equal(log_build_add(lb, LT_DATA_OWNER, 0, 0, buf, &first), 0);
	log_build_abort(lb);
	lt_delta_ok(l, 3, 1, &blk, NULL);
	assert_int_equal(blk, first);

	/* abort after a full log was written: the next delta chains after it */
	assert_int_equal(log_build_begin(l, 4, &lb), 0);
	for (uint32_t i = 0; i < CAP + 1; i++)
		assert_int_equal(log_build_add(lb, LT_DATA_OWNER, i, 0, buf, &blk), 0);
	log_build_abort(lb);
	lt_delta_ok(l, 5, 1, &blk, NULL);
	assert_int_equal(blk, SEG0 + SEG + 2);
	img = lt_crash(d, BDEV_EMU_DROP_ALL, false, 1);
	r = lt_recover(img, &st);
	lt_assert_state(img, &st, 5);
	assert_true(lt_block_is(img, blk, LT_DATA_OWNER, 0, 5));
	log_close(r);
	bdev_close(img);
	log_close(l);
	bdev_close(d);
}

/* ---- I/O errors ------------------------------------------------------------------ */

/*
 * After an error in delta 2 (@op fails), delta 3 must land in a fresh
 * segment with a fresh sequence number, and survive a power cut.
 */
static void build_error_case(enum bdev_emu_op op)
{
	struct bdev *d, *img;
	struct log *l = lt_volume(SEG, 8, &d), *r;
	struct bdev_emu_stats s0, s1;
	struct log_state st;
	struct raw_log rl;
	uint64_t blk, sr;

	lt_delta_ok(l, 1, 1, NULL, &sr); /* log seq 1 */
	bdev_emu_fail_op(d, op, 1, 1, -EIO);
	lt_log_mute();
	assert_int_equal(lt_delta(l, 2, 1, NULL, NULL), -EIO); /* log seq 2 */
	lt_log_catch_stop();
	bdev_emu_stats(d, &s0);
	lt_delta_ok(l, 3, 1, &blk, &sr);
	bdev_emu_stats(d, &s1);
	assert_int_equal(blk, SEG0 + SEG + 2);		    /* segment 1, not block SEG0 + 4 */
	assert_int_equal(s1.es_flushes, s0.es_flushes + 2); /* + the anchoring checkpoint */
	raw_log_read(d, SEG0 + SEG, &rl);
	assert_int_equal(rl.rl_seq, 3);
	raw_log_free(&rl);

	img = lt_crash(d, BDEV_EMU_DROP_ALL, false, 1);
	r = lt_recover(img, &st);
	lt_assert_state(img, &st, 3);
	assert_int_equal(st.ls_sr_blk, sr);
	assert_true(lt_block_is(img, blk, LT_DATA_OWNER, 0, 3));
	log_close(r);
	bdev_close(img);
	log_close(l);
	bdev_close(d);
}

static void test_build_write_error(void **state)
{
	(void)state;
	build_error_case(BDEV_EMU_WRITE);
}

static void test_build_flush_error(void **state)
{
	(void)state;
	build_error_case(BDEV_EMU_FLUSH);
}

/* A failed segment write inside a delta is sticky: the delta cannot finish. */
static void test_build_error_is_sticky(void **state)
{
	struct bdev *d;
	struct log *l = lt_volume(SEG, 8, &d);
	struct log_builder *lb = NULL;
	unsigned char buf[LT_BS] = {0};
	uint64_t blk;
	uint32_t i;

	(void)state;
	lt_delta_ok(l, 1, 1, NULL, NULL);
	assert_int_equal(log_build_begin(l, 2, &lb), 0);
	bdev_emu_fail_op(d, BDEV_EMU_WRITE, 1, 1, -EIO);
	lt_log_catch("block 20"); /* the log that failed */
	for (i = 0; i < CAP - 4; i++)
		assert_int_equal(log_build_add(lb, LT_DATA_OWNER, i, 0, buf, &blk), 0);
	assert_int_equal(log_build_add(lb, LT_DATA_OWNER, i, 0, buf, &blk), -EIO);
	assert_int_equal(lt_log_named(), 1);
	lt_log_catch_stop();
	assert_int_equal(log_build_add(lb, LT_DATA_OWNER, i, 0, buf, &blk), -EIO);
	assert_int_equal(log_build_add(lb, LT_SR_OWNER, 0, LOG_ENTRY_SUPER_ROOT, buf, &blk), -EIO);
	assert_int_equal(log_build_finish(lb), -EIO);
	lt_delta_ok(l, 3, 0, NULL, &blk);
	assert_int_equal(blk, SEG0 + 2 * SEG + 2); /* past segment 1, taken by the failed log */
	log_close(l);
	bdev_close(d);
}

/*
 * Early flushes (a file's; the emulated device's on request): a delta of
 * several logs asks for one after each full log. An early flush that
 * fails, the finish's own flush succeeding after it, fails the delta;
 * the next one lands and survives a power cut.
 */
static void test_build_early_flush_error(void **state)
{
	struct bdev *d, *img;
	struct log *l = lt_volume(SEG, 8, &d), *r;
	struct log_state st;
	uint64_t sr;

	(void)state;
	test_needs_syncpoints();
	test_watchdog("build_early_flush_error", 30);
	assert_int_equal(bdev_emu_early_flush(d), 0);
	lt_delta_ok(l, 1, 3 * CAP, NULL, NULL); /* three logs */
	syncpoint_enable();
	syncpoint_order("bdev.flusher.done_locked", "log.build.flush");
	bdev_emu_fail_op(d, BDEV_EMU_FLUSH, 1, 1, -EIO);
	lt_log_mute();
	assert_int_equal(lt_delta(l, 2, 3 * CAP, NULL, NULL), -EIO);
	lt_log_catch_stop();
	assert_true(bdev_early_flushes(d) >= 1);
	syncpoint_reset();
	lt_delta_ok(l, 3, 1, NULL, &sr);
	img = lt_crash(d, BDEV_EMU_DROP_ALL, false, 1);
	r = lt_recover(img, &st);
	lt_assert_state(img, &st, 3);
	assert_int_equal(st.ls_sr_blk, sr);
	log_close(r);
	bdev_close(img);
	log_close(l);
	bdev_close(d);
}

/* A failed anchoring checkpoint fails the finish; the next finish anchors. */
static void test_build_anchor_error(void **state)
{
	struct bdev *d, *img;
	struct log *l = lt_volume(SEG, 8, &d), *r;
	struct log_state st;

	(void)state;
	bdev_emu_fail_op(d, BDEV_EMU_FLUSH, 2, 1, -EIO); /* the checkpoint's flush */
	lt_log_mute();
	assert_int_equal(lt_delta(l, 1, 1, NULL, NULL), -EIO);
	lt_log_catch_stop();
	assert_int_equal(log_checkpoint(l), -EINVAL); /* delta 1 never became the state */
	lt_delta_ok(l, 2, 1, NULL, NULL);
	img = lt_crash(d, BDEV_EMU_DROP_ALL, false, 1);
	r = lt_recover(img, &st);
	lt_assert_state(img, &st, 2);
	log_close(r);
	bdev_close(img);
	log_close(l);
	bdev_close(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_build_addresses_land),
	    cmocka_unit_test(test_build_tags_scan_back),
	    cmocka_unit_test(test_build_raw_logs),
	    cmocka_unit_test(test_build_reserved_summary),
	    cmocka_unit_test(test_build_last_log_next),
	    cmocka_unit_test(test_build_nonce_per_mount),
	    cmocka_unit_test(test_build_enospc),
	    cmocka_unit_test(test_build_finish_flushes),
	    cmocka_unit_test(test_build_misuse),
	    cmocka_unit_test(test_build_abort),
	    cmocka_unit_test(test_build_write_error),
	    cmocka_unit_test(test_build_flush_error),
	    cmocka_unit_test(test_build_error_is_sticky),
	    cmocka_unit_test(test_build_anchor_error),
	    cmocka_unit_test(test_build_early_flush_error),
	};

	return TEST_RUN("log_build", tests);
}

/*
 * test_log_recover.c - finding the newest valid state.
 *
 * What it proves:
 *   - recovery finds the newest finished delta, from a checkpoint and by
 *     rolling forward over the logs written after it (ls_rolled counts
 *     them), and readies the head where ls_next_blk says;
 *   - a lost, torn or corrupted last delta (one log or two) gives the
 *     delta before it; so does a delta whose first log is corrupt;
 *   - a log is followed only if every check FORMAT.md lists holds: each
 *     is broken alone on a log forged here from FORMAT.md (with right
 *     checksums), and the unbroken forgery is accepted;
 *   - stale logs are not followed: an older log at next_blk, a log of
 *     an unfinished delta whose place the next delta reused (prev_sum),
 *     even when the new log has the same header and summary and only
 *     its payload and mount nonce differ (prev_nonce), and a new mount's
 *     log after a log without super root;
 *   - slots alternate, hold what FORMAT.md says, are retried in place
 *     after a failed write, and a bad slot (or a slot naming a bad log)
 *     falls back to the other; nothing valid is -EUCLEAN, logged;
 *   - at every power cut of a workload, under every crash mode, recovery
 *     finds a finished delta no older than the last acknowledged one, and
 *     the volume goes on from there.
 */
#include "harness.h"
#include "log_fixture.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#define SEG  16u
#define SEG0 SEG
#define CAP  14u

/* A copy of @d to corrupt. */
static struct bdev *dev_copy(struct bdev *d)
{
	struct bdev *c = NULL;

	assert_int_equal(bdev_emu_open_copy(d, &c), 0);
	return c;
}

/* Recover @d (not changed) and return the delta found; -errno on failure. */
static int64_t recover_delta(struct bdev *d, struct log_state *out)
{
	struct log_state st;
	struct log *l = NULL;
	int err;

	err = log_open(d, &l);
	if (err)
		return err;
	err = log_recover(l, &st);
	log_close(l);
	if (err)
		return err;
	assert_int_equal(lt_sr_delta(d, st.ls_sr_blk), st.ls_delta);
	if (out)
		*out = st;
	return (int64_t)st.ls_delta;
}

/* The header sequence number of the log at @blk. */
static uint64_t raw_seq(struct bdev *d, uint64_t blk)
{
	unsigned char buf[LT_BS];

	lt_read(d, blk, buf);
	assert_memory_equal(buf, "CAIRNLG1", 8);
	return lt_get_le64(buf, 16);
}

/* Log header fields (FORMAT.md). */
enum { LH_NONCE = 64, LH_PREV_NONCE = 72, LH_PREV = 80, LH_SUM = 88, LH_DATA = 96, LH_SIZE = 104 };

static uint64_t raw_sum(struct bdev *d, uint64_t blk)
{
	unsigned char buf[LT_BS];

	lt_read(d, blk, buf);
	return lt_get_le64(buf, LH_SUM);
}

static uint64_t raw_nonce(struct bdev *d, uint64_t blk)
{
	unsigned char buf[LT_BS];

	lt_read(d, blk, buf);
	return lt_get_le64(buf, LH_NONCE);
}

/* ---- finding the newest state ---------------------------------------------- */

static void test_recover_fresh_volume(void **state)
{
	struct bdev *d;
	struct log *l = lt_volume(SEG, 4, &d);
	struct log_state st;

	(void)state;
	lt_log_catch("blocks 1 and 2");
	assert_int_equal(log_recover(l, &st), -EUCLEAN);
	assert_int_equal(lt_log_named(), 1);
	lt_log_catch_stop();
	log_close(l);
	bdev_close(d);
}

static void test_recover_newest(void **state)
{
	static const uint32_t sizes[] = {0, 3, 20, 1, 14, 5};
	struct bdev *d, *img;
	struct log *l = lt_volume(SEG, 12, &d), *r;
	uint64_t sr[7], sr7;
	struct log_state st;

	(void)state;
	for (uint32_t i = 0; i < ARRAY_SIZE(sizes); i++) {
		lt_delta_ok(l, i + 1, sizes[i], NULL, &sr[i + 1]);
		if (i == 2)
			assert_int_equal(log_checkpoint(l), 0);
	}
	img = lt_crash(d, BDEV_EMU_DROP_ALL, false, 1);
	r = lt_recover(img, &st);
	lt_assert_state(img, &st, 6);
	assert_int_equal(st.ls_sr_blk, sr[6]);
	assert_int_equal(st.ls_cp_seq, 2);
	assert_int_equal(st.ls_next_seq, st.ls_log_seq + 1);
	/* the head is where ls_next_blk says, with ls_next_seq */
	lt_delta_ok(r, 7, 0, NULL, &sr7);
	assert_int_equal(sr7, st.ls_next_blk + 2);
	assert_int_equal(raw_seq(img, st.ls_next_blk), st.ls_next_seq);
	log_close(r);
	assert_int_equal(recover_delta(img, NULL), 7);
	bdev_close(img);
	log_close(l);
	bdev_close(d);
}

static void test_recover_rolls_forward(void **state)
{
	struct bdev *d;
	struct log *l = lt_volume(SEG, 12, &d);
	struct log_state st;

	(void)state;
	lt_delta_ok(l, 1, 0, NULL, NULL); /* anchored by checkpoint 1 */
	assert_int_equal(log_checkpoint(l), 0);
	for (uint64_t delta = 2; delta <= 8; delta++)
		lt_delta_ok(l, delta, 1, NULL, NULL); /* one log each */
	assert_int_equal(recover_delta(d, &st), 8);
	assert_int_equal(st.ls_rolled, 7);
	assert_int_equal(st.ls_cp_seq, 2);
	lt_delta_ok(l, 9, 20, NULL, NULL); /* two or three logs */
	assert_int_equal(recover_delta(d, &st), 9);
	assert_true(st.ls_rolled >= 9);
	assert_int_equal(st.ls_rolled, st.ls_log_seq - 1);
	log_close(l);
	bdev_close(d);
}

/* ---- lost, torn and corrupt deltas ------------------------------------------ */

/* Deltas 1..3 finished, delta 4 (two logs) written but its flush failed. */
static struct bdev *volume_with_unflushed_delta(void)
{
	struct bdev *d;
	struct log *l = lt_volume(SEG, 12, &d);

	lt_delta_ok(l, 1, 2, NULL, NULL);
	lt_delta_ok(l, 2, 5, NULL, NULL);
	lt_delta_ok(l, 3, 1, NULL, NULL);
	bdev_emu_fail_op(d, BDEV_EMU_FLUSH, 1, 1, -EIO);
	lt_log_mute();
	assert_int_equal(lt_delta(l, 4, 16, NULL, NULL), -EIO);
	lt_log_catch_stop();
	log_close(l);
	return d;
}

static void test_recover_unflushed_delta(void **state)
{
	static const enum bdev_emu_crash_mode modes[] = {BDEV_EMU_DROP_SOME, BDEV_EMU_REORDER};
	struct bdev *d = volume_with_unflushed_delta(), *img;
	uint64_t seed = test_seed("log_recover: unflushed_delta", 4242);
	unsigned seen[5] = {0};
	struct log *l;
	struct log_state st;

	(void)state;
	img = lt_crash(d, BDEV_EMU_DROP_ALL, false, seed);
	assert_int_equal(recover_delta(img, NULL), 3);
	bdev_close(img);
	img = lt_crash(d, BDEV_EMU_KEEP_ALL, false, seed);
	assert_int_equal(recover_delta(img, NULL), 4);
	bdev_close(img);
	for (uint64_t i = 0; i < 8; i++) { /* a torn log never counts */
		img = lt_crash(d, BDEV_EMU_KEEP_ALL, true, seed + i);
		assert_int_equal(recover_delta(img, NULL), 3);
		bdev_close(img);
	}
	for (uint64_t i = 0; i < 32; i++) {
		int64_t got;

		img = lt_crash(d, modes[i % 2], i % 3 == 0, seed + i);
		got = recover_delta(img, NULL);
		if (got != 3 && got != 4)
			fail_msg("seed %llu case %llu: delta %lld", (unsigned long long)seed,
				 (unsigned long long)i, (long long)got);
		seen[got]++;
		/* the volume goes on from what was found */
		l = lt_recover(img, &st);
		lt_delta_ok(l, 5, 20, NULL, NULL);
		log_close(l);
		assert_int_equal(recover_delta(img, NULL), 5);
		bdev_close(img);
	}
	assert_true(seen[3] && seen[4]); /* the seeds reach both outcomes */
	bdev_close(d);
}

/* Corrupting any part of the last delta's only log gives the delta before. */
static void test_recover_corrupt_last_log(void **state)
{
	struct bdev *d, *c;
	struct log *l = lt_volume(SEG, 8, &d);
	uint64_t sr, head;
	/* bits of the log: header fields, header padding, summary, payload */
	const uint64_t bits[] = {0,	 8 * 16, 8 * 32 + 3, 8 * 40,  8 * 64,
				 8 * 72, 8 * 80, 8 * 88,     8 * 104, 8 * 4000};
	struct log_state st;

	(void)state;
	lt_delta_ok(l, 1, 3, NULL, NULL);
	lt_delta_ok(l, 2, 3, NULL, &sr);
	head = sr - 5; /* header, summary, 3 data, super root */
	assert_int_equal(recover_delta(d, &st), 2);
	for (size_t i = 0; i < ARRAY_SIZE(bits); i++) {
		c = dev_copy(d);
		lt_flip(c, head, (uint32_t)bits[i]);
		assert_int_equal(recover_delta(c, NULL), 1);
		bdev_close(c);
	}
	for (uint64_t blk = head + 1; blk <= sr; blk++) {
		c = dev_copy(d);
		lt_flip(c, blk, 12345);
		assert_int_equal(recover_delta(c, NULL), 1);
		bdev_close(c);
	}
	log_close(l);
	bdev_close(d);
}

/* A delta of two logs is only as good as both. */
static void test_recover_two_log_delta(void **state)
{
	struct bdev *d, *c;
	struct log *l = lt_volume(SEG, 8, &d);
	struct log_state st;
	uint64_t sr, addrs[20];

	(void)state;
	lt_delta_ok(l, 1, 1, NULL, NULL);
	lt_delta_ok(l, 2, 20, addrs, &sr); /* logs at SEG0 + 4 and in segment 1 */
	assert_int_equal(addrs[0], SEG0 + 6);
	assert_int_equal(sr, SEG0 + SEG + 2 + 10);
	assert_int_equal(recover_delta(d, &st), 2);
	assert_int_equal(st.ls_rolled, 2);

	c = dev_copy(d); /* the first log's payload */
	lt_flip(c, addrs[3], 99);
	assert_int_equal(recover_delta(c, NULL), 1);
	bdev_close(c);
	c = dev_copy(d); /* the first log's header */
	lt_flip(c, SEG0 + 4, 8 * 20);
	assert_int_equal(recover_delta(c, NULL), 1);
	bdev_close(c);
	c = dev_copy(d); /* the second log */
	lt_flip(c, sr - 1, 7);
	assert_int_equal(recover_delta(c, NULL), 1);
	bdev_close(c);
	log_close(l);
	bdev_close(d);
}

/* ---- logs forged from FORMAT.md ----------------------------------------------- */

/* What to write in a forged log; fields are FORMAT.md's. */
struct forge {
	uint64_t fg_seq, fg_delta, fg_prev, fg_next, fg_nonce, fg_prev_nonce;
	uint32_t fg_flags, fg_nentries, fg_nblocks; /* fg_nblocks 0: 2 + nentries */
	uint32_t fg_last_flags, fg_reserved, fg_entry_flag;
	bool fg_other_uuid;
};

/*
 * Write the log @f describes at @blk, checksums computed as FORMAT.md
 * says; returns its summary checksum. Its summary area fills what
 * fg_nblocks leaves (one block if fg_nblocks is 0 or too small to lay
 * the log out).
 */
static uint64_t forge_log(struct bdev *d, uint64_t blk, const struct forge *f)
{
	uint32_t n = MAX(f->fg_nentries, 1);
	uint32_t nblocks = f->fg_nblocks ? f->fg_nblocks : 2 + f->fg_nentries;
	uint32_t nsum = nblocks >= 2 + n ? nblocks - 1 - n : 1;
	unsigned char *buf = calloc(1 + nsum + n, LT_BS), *pay = buf + (1 + nsum) * LT_BS;
	uint64_t sum;
	uint8_t uuid[16];

	assert_non_null(buf);
	memcpy(uuid, lt_uuid, 16);
	uuid[15] ^= f->fg_other_uuid;
	memcpy(buf, "CAIRNLG1", 8);
	lt_put_le32(buf, 8, 3);
	lt_put_le32(buf, 12, f->fg_flags);
	lt_put_le64(buf, 16, f->fg_seq);
	lt_put_le64(buf, 24, f->fg_delta);
	lt_put_le32(buf, 32, nblocks);
	lt_put_le32(buf, 36, f->fg_nentries);
	lt_put_le64(buf, 40, f->fg_next);
	memcpy(buf + 48, uuid, 16);
	lt_put_le64(buf, LH_NONCE, f->fg_nonce);
	lt_put_le64(buf, LH_PREV_NONCE, f->fg_prev_nonce);
	lt_put_le64(buf, LH_PREV, f->fg_prev);
	for (uint32_t i = 0; i < n; i++) {
		unsigned char *e = buf + LT_BS + 32 * i;
		bool last = i + 1 == n;

		lt_put_le64(e, 0, last ? LT_SR_OWNER : LT_DATA_OWNER);
		lt_put_le64(e, 8, last ? 0 : i);
		lt_put_le64(e, 16, 1000 + i); /* the client's tag: anything */
		lt_put_le32(e, 24, last ? f->fg_last_flags | f->fg_entry_flag : 0);
		lt_put_le32(e, 28, last ? f->fg_reserved : 0);
		if (last)
			lt_sr_pattern(pay + i * LT_BS, f->fg_delta);
		else
			lt_pattern(pay + i * LT_BS, LT_DATA_OWNER, i, f->fg_delta);
	}
	sum = XXH3_64bits(buf, (1 + nsum) * LT_BS); /* both checksums zero */
	lt_put_le64(buf, LH_SUM, sum);
	lt_put_le64(buf, LH_DATA, XXH3_64bits(pay, (size_t)f->fg_nentries * LT_BS));
	assert_int_equal(bdev_write(d, blk, 1 + nsum + n, buf), 0);
	assert_int_equal(bdev_flush(d), 0);
	free(buf);
	return sum;
}

/*
 * Break forged log @f (at @head, 7 blocks left in its segment) in way
 * number @i: each breaks one check of FORMAT.md's list, checksums kept
 * right. Returns what was broken; NULL past the last way.
 */
static const char *forge_spoil(struct forge *f, int i, uint64_t head)
{
	switch (i) {
	case 0:
		f->fg_seq++;
		return "sequence number skips one";
	case 1:
		f->fg_seq--;
		return "sequence number repeats";
	case 2:
		f->fg_prev ^= 1;
		return "prev_sum names another log";
	case 3:
		f->fg_delta = 2;
		return "delta older than the previous log's";
	case 4:
		f->fg_other_uuid = true;
		return "uuid of another volume";
	case 5:
		f->fg_next = head + 5;
		return "next_blk in the segment, not right after";
	case 6:
		f->fg_next = SEG0 + 8 * SEG;
		return "next_blk past the last segment";
	case 7:
		f->fg_nblocks = 23;
		f->fg_next = head + 23;
		return "log crosses its segment";
	case 8:
		f->fg_nblocks = 3;
		return "no room for the summary";
	case 9:
		f->fg_last_flags = 0;
		return "SR flag without the super root entry";
	case 10:
		f->fg_flags = 0;
		return "super root entry without the SR flag";
	case 11:
		f->fg_reserved = 1;
		return "entry reserved field not 0";
	case 12:
		f->fg_flags = 3;
		return "unknown header flag";
	case 13:
		f->fg_entry_flag = 0x8;
		return "unknown entry flag";
	case 14:
		f->fg_next = SEG0 + SEG + 1;
		return "next_blk in another segment, not its start";
	case 15:
		f->fg_nblocks = 6;
		f->fg_next = head + 6;
		return "next_blk leaves 1 block";
	case 16:
		f->fg_nentries = 0;
		f->fg_next = head + 2;
		return "no entries";
	case 17:
		f->fg_prev_nonce ^= 1;
		return "prev_nonce names another mount";
	case 18:
		f->fg_prev_nonce = 0;
		return "prev_nonce says there is no previous log";
	case 19:
		f->fg_nonce = 0;
		return "no mount nonce";
	}
	return NULL;
}

static void test_recover_forged_logs(void **state)
{
	struct bdev *d, *c;
	struct log *l = lt_volume(SEG, 8, &d);
	struct log_state st;
	struct forge good, f;
	const char *what;
	uint64_t head, nonce;

	(void)state;
	lt_delta_ok(l, 1, 0, NULL, NULL);
	lt_delta_ok(l, 2, 0, NULL, NULL);
	lt_delta_ok(l, 3, 0, NULL, NULL); /* logs at SEG0, +3, +6 */
	log_close(l);
	assert_int_equal(recover_delta(d, &st), 3);
	head = st.ls_next_blk;
	assert_int_equal(head, SEG0 + 9);
	nonce = ~raw_nonce(d, SEG0 + 6); /* a later mount's */
	good = (struct forge){
	    .fg_seq = st.ls_next_seq,
	    .fg_delta = 4,
	    .fg_prev = raw_sum(d, SEG0 + 6),
	    .fg_next = head + 4, /* 3 blocks remain after it */
	    .fg_nonce = nonce,
	    .fg_prev_nonce = raw_nonce(d, SEG0 + 6),
	    .fg_flags = 1,
	    .fg_nentries = 2,
	    .fg_last_flags = LOG_ENTRY_SUPER_ROOT,
	};
	c = dev_copy(d);
	forge_log(c, head, &good);
	assert_int_equal(recover_delta(c, &st), 4); /* FORMAT.md is enough to write a log */
	assert_int_equal(st.ls_next_blk, head + 4);
	bdev_close(c);

	for (int i = 0;; i++) {
		f = good;
		what = forge_spoil(&f, i, head);
		if (!what)
			break;
		c = dev_copy(d);
		forge_log(c, head, &f);
		if (recover_delta(c, NULL) != 3)
			fail_msg("forged log followed: %s", what);
		bdev_close(c);
	}
	bdev_close(d);
}

/*
 * A new mount starts writing right after the super root it recovered:
 * a log whose nonce differs from the previous log's is followed only
 * after a log with a super root.
 */
static void test_recover_forged_mount_change(void **state)
{
	struct bdev *d, *c;
	struct log *l = lt_volume(SEG, 8, &d);
	struct log_state st;
	struct forge a, b;
	uint64_t head, nonce;

	(void)state;
	lt_delta_ok(l, 1, 0, NULL, NULL);
	lt_delta_ok(l, 2, 0, NULL, NULL);
	lt_delta_ok(l, 3, 0, NULL, NULL); /* logs at SEG0, +3, +6 */
	log_close(l);
	head = SEG0 + 9;
	nonce = ~raw_nonce(d, SEG0 + 6); /* a later mount's */
	/* A: delta 4 without its super root, by a new mount, after delta 3 */
	a = (struct forge){
	    .fg_seq = 4,
	    .fg_delta = 4,
	    .fg_prev = raw_sum(d, SEG0 + 6),
	    .fg_next = head + 3,
	    .fg_nonce = nonce,
	    .fg_prev_nonce = raw_nonce(d, SEG0 + 6),
	    .fg_nentries = 1,
	};
	/* B: delta 4's super root, the last 3 blocks of the segment */
	b = (struct forge){
	    .fg_seq = 5,
	    .fg_delta = 4,
	    .fg_next = SEG0 + SEG,
	    .fg_nonce = nonce,
	    .fg_prev_nonce = nonce,
	    .fg_flags = 1,
	    .fg_nentries = 1,
	    .fg_last_flags = LOG_ENTRY_SUPER_ROOT,
	};
	for (int other = 0; other < 2; other++) {
		c = dev_copy(d);
		b.fg_prev = forge_log(c, head, &a);
		b.fg_nonce = other ? ~nonce : nonce; /* B by the mount of A, or the next */
		forge_log(c, head + 3, &b);
		assert_int_equal(recover_delta(c, &st), other ? 3 : 4);
		assert_int_equal(st.ls_next_blk, other ? head : SEG0 + SEG);
		bdev_close(c);
	}
	bdev_close(d);
}

/* ---- stale logs ---------------------------------------------------------------- */

/*
 * A complete log left at next_blk by an earlier life of the place (here:
 * an earlier volume with the same uuid) has an older sequence number and
 * is not followed.
 */
static void test_recover_stale_older_log(void **state)
{
	struct bdev *d;
	struct log *l = lt_volume(SEG, 8, &d);
	unsigned char old[3 * LT_BS];
	struct log_state st;

	(void)state;
	lt_delta_ok(l, 1, 9, NULL, NULL); /* SEG0 .. +11 */
	lt_delta_ok(l, 7, 0, NULL, NULL); /* seq 2 at +12, next: segment 1 */
	log_close(l);
	assert_int_equal(raw_seq(d, SEG0 + 12), 2);
	assert_int_equal(bdev_read(d, SEG0 + 12, 3, old), 0);

	lt_format(d, SEG);
	l = lt_open(d);
	lt_delta_ok(l, 1, 1, NULL, NULL);
	lt_delta_ok(l, 2, 1, NULL, NULL);
	lt_delta_ok(l, 3, 1, NULL, NULL); /* seq 3 at +8, next: +12 */
	log_close(l);
	assert_int_equal(bdev_write(d, SEG0 + 12, 3, old), 0);
	assert_int_equal(recover_delta(d, &st), 3);
	assert_int_equal(st.ls_next_blk, SEG0 + 12);
	assert_int_equal(st.ls_next_seq, 4);
	assert_int_equal(st.ls_rolled, 2);
	bdev_close(d);
}

/*
 * After a crash, the next delta reuses the place and sequence numbers of
 * the unfinished delta's logs. When it reaches the segment where such a
 * log (with a super root) still lies, that log has the right sequence
 * number but names another predecessor: it must not be followed.
 */
static void test_recover_stale_after_reuse(void **state)
{
	struct bdev *d;
	struct log *l = lt_volume(SEG, 8, &d);
	struct log_builder *lb = NULL;
	unsigned char buf[LT_BS];
	struct log_state st;
	uint64_t blk;

	(void)state;
	lt_delta_ok(l, 1, 1, NULL, NULL);  /* SEG0 .. +3 */
	lt_delta_ok(l, 2, 15, NULL, NULL); /* logs at SEG0 + 4 (full) and SEG0 + SEG */
	log_close(l);
	lt_zero(d, SEG0 + 4); /* delta 2's first log never landed */
	l = lt_recover(d, &st);
	lt_assert_state(d, &st, 1);
	assert_int_equal(st.ls_next_blk, SEG0 + 4);

	/* delta 2 again, other content: its first log fills the same place */
	assert_int_equal(log_build_begin(l, 2, &lb), 0);
	for (uint32_t i = 0; i < 11; i++) {
		lt_pattern(buf, LT_DATA_OWNER, 1000 + i, 2);
		assert_int_equal(log_build_add(lb, LT_DATA_OWNER, 1000 + i, 0, buf, &blk), 0);
	}
	assert_int_equal(blk, SEG0 + SEG + 2); /* the first log was written */
	log_build_abort(lb);		       /* and then the power went */
	assert_int_equal(bdev_flush(d), 0);
	log_close(l);
	assert_int_equal(raw_seq(d, SEG0 + SEG), raw_seq(d, SEG0 + 4) + 1);
	assert_int_equal(recover_delta(d, &st), 1);
	assert_int_equal(st.ls_next_blk, SEG0 + 4);
	bdev_close(d);
}

/*
 * The same when the new delta lays out exactly what the lost log held:
 * the same delta, owners and indexes with other content, so the new log
 * has the header and summary of the lost one but for its mount's nonce.
 * Without the nonce both would have the same summary checksum, and the
 * stale log after them would name the new one as its predecessor.
 */
static void test_recover_stale_same_summary(void **state)
{
	struct bdev *d;
	struct log *l = lt_volume(SEG, 8, &d);
	struct log_builder *lb = NULL;
	unsigned char buf[LT_BS], lost[2 * LT_BS], now[2 * LT_BS];
	struct log_state st;
	uint64_t blk;

	(void)state;
	lt_delta_ok(l, 1, 1, NULL, NULL);  /* SEG0 .. +3 */
	lt_delta_ok(l, 2, 15, NULL, NULL); /* logs at SEG0 + 4 (10 entries) and SEG0 + SEG */
	log_close(l);
	/* delta 2's first log (its header and summary kept here) never landed */
	assert_int_equal(bdev_read(d, SEG0 + 4, 2, lost), 0);
	lt_zero(d, SEG0 + 4);
	l = lt_recover(d, &st);
	lt_assert_state(d, &st, 1);

	/* delta 2 again, its first log with the same blocks, other content */
	assert_int_equal(log_build_begin(l, 2, &lb), 0);
	for (uint32_t i = 0; i < 11; i++) {
		lt_pattern(buf, LT_DATA_OWNER, i, 1002);
		assert_int_equal(
		    log_build_add_tagged(lb, LT_DATA_OWNER, i, lt_tag(2, i), 0, buf, &blk), 0);
	}
	assert_int_equal(blk, SEG0 + SEG + 2); /* the first log was written */
	log_build_abort(lb);		       /* and then the power went */
	assert_int_equal(bdev_flush(d), 0);
	log_close(l);
	assert_int_equal(bdev_read(d, SEG0 + 4, 2, now), 0);
	/* all alike but the nonce and the checksums */
	assert_memory_equal(now, lost, LH_NONCE);
	assert_memory_not_equal(now + LH_NONCE, lost + LH_NONCE, 8);
	assert_memory_equal(now + LH_PREV_NONCE, lost + LH_PREV_NONCE, LH_SUM - LH_PREV_NONCE);
	assert_memory_equal(now + LH_SIZE, lost + LH_SIZE, 2 * LT_BS - LH_SIZE);
	assert_int_equal(recover_delta(d, &st), 1);
	assert_int_equal(st.ls_next_blk, SEG0 + 4);
	bdev_close(d);
}

/* ---- checkpoint slots ----------------------------------------------------------- */

/* Checkpoint slot fields (FORMAT.md). */
enum { CP_NONCE = 56, CP_CHECKSUM = 80, CP_SIZE = 88 };

/* Slot @blk holds checkpoint @cp_seq naming delta @delta, as FORMAT.md says. */
static void assert_slot(struct bdev *d, uint64_t blk, uint64_t cp_seq, uint64_t delta,
			uint64_t sr_blk)
{
	unsigned char buf[LT_BS], tmp[CP_SIZE], zero[CP_SIZE] = {0};

	lt_read(d, blk, buf);
	assert_memory_equal(buf, "CAIRNCP1", 8);
	assert_int_equal(lt_get_le32(buf, 8), 3);
	assert_int_equal(lt_get_le32(buf, 12), 0);
	assert_int_equal(lt_get_le64(buf, 16), cp_seq);
	assert_int_equal(lt_get_le64(buf, 40), sr_blk);
	assert_int_equal(lt_get_le64(buf, 48), delta);
	assert_int_equal(raw_seq(d, lt_get_le64(buf, 32)), lt_get_le64(buf, 24));
	assert_int_equal(raw_nonce(d, lt_get_le64(buf, 32)), lt_get_le64(buf, CP_NONCE));
	assert_memory_equal(buf + 64, lt_uuid, 16);
	memcpy(tmp, buf, CP_SIZE);
	lt_put_le64(tmp, CP_CHECKSUM, 0);
	assert_int_equal(lt_get_le64(buf, CP_CHECKSUM), XXH3_64bits(tmp, CP_SIZE));
	assert_memory_equal(buf + CP_SIZE, zero, CP_SIZE); /* the slot ends there */
}

/* Set the nonce slot @blk names to @nonce, checksum kept right. */
static void slot_forge_nonce(struct bdev *d, uint64_t blk, uint64_t nonce)
{
	unsigned char buf[LT_BS];

	lt_read(d, blk, buf);
	lt_put_le64(buf, CP_NONCE, nonce);
	lt_put_le64(buf, CP_CHECKSUM, 0);
	lt_put_le64(buf, CP_CHECKSUM, XXH3_64bits(buf, CP_SIZE));
	lt_write(d, blk, buf);
}

static void test_recover_slots_alternate(void **state)
{
	struct bdev *d;
	struct log *l = lt_volume(SEG, 8, &d);
	uint64_t sr1, sr2;
	struct log_state st;

	(void)state;
	lt_delta_ok(l, 1, 1, NULL, &sr1);
	assert_slot(d, 1, 1, 1, sr1); /* the anchoring checkpoint */
	assert_int_equal(log_checkpoint(l), 0);
	assert_slot(d, 2, 2, 1, sr1);
	lt_delta_ok(l, 2, 1, NULL, &sr2);

	/* a failed slot write or flush is retried in the same slot */
	bdev_emu_fail_op(d, BDEV_EMU_WRITE, 1, 1, -EIO);
	lt_log_mute();
	assert_int_equal(log_checkpoint(l), -EIO);
	bdev_emu_fail_op(d, BDEV_EMU_FLUSH, 1, 1, -EIO);
	assert_int_equal(log_checkpoint(l), -EIO);
	lt_log_catch_stop();
	assert_slot(d, 2, 2, 1, sr1); /* the fallback slot is untouched */
	assert_int_equal(log_checkpoint(l), 0);
	assert_slot(d, 1, 3, 2, sr2);
	assert_slot(d, 2, 2, 1, sr1);
	assert_int_equal(recover_delta(d, &st), 2);
	assert_int_equal(st.ls_cp_seq, 3);
	assert_int_equal(st.ls_rolled, 0);
	log_close(l);
	bdev_close(d);
}

/* A slot carries the client's floor (at most its delta) to recovery. */
static void test_recover_floor(void **state)
{
	struct bdev *d, *img;
	struct log *l = lt_volume(SEG, 8, &d);
	struct log_state st;

	(void)state;
	lt_delta_ok(l, 1, 1, NULL, NULL);
	img = lt_crash(d, BDEV_EMU_DROP_ALL, false, 1);
	log_close(lt_recover(img, &st));
	assert_int_equal(st.ls_floor, 0); /* mkfs's slot says none */
	bdev_close(img);
	lt_delta_ok(l, 2, 3, NULL, NULL);
	log_set_floor(l, 2);
	assert_int_equal(log_checkpoint(l), 0);
	lt_delta_ok(l, 3, 1, NULL, NULL);
	img = lt_crash(d, BDEV_EMU_DROP_ALL, false, 1);
	log_close(lt_recover(img, &st));
	assert_int_equal(st.ls_delta, 3); /* rolled forward past the slot */
	assert_int_equal(st.ls_floor, 2);
	bdev_close(img);
	log_set_floor(l, 9); /* past the state the slot names: cut to it */
	assert_int_equal(log_checkpoint(l), 0);
	img = lt_crash(d, BDEV_EMU_DROP_ALL, false, 1);
	log_close(lt_recover(img, &st));
	assert_int_equal(st.ls_floor, 3);
	bdev_close(img);
	log_close(l);
	bdev_close(d);
}

static void test_recover_slot_fallback(void **state)
{
	struct bdev *d, *c;
	struct log *l = lt_volume(SEG, 8, &d);
	struct log_state st;
	uint64_t sr2;

	(void)state;
	lt_delta_ok(l, 1, 1, NULL, NULL); /* checkpoint 1 in slot A */
	lt_delta_ok(l, 2, 1, NULL, &sr2);
	assert_int_equal(log_checkpoint(l), 0); /* checkpoint 2 in slot B */
	lt_delta_ok(l, 3, 1, NULL, NULL);
	log_close(l);

	c = dev_copy(d); /* slot B corrupt: A, then roll forward */
	lt_flip(c, 2, 8 * 30);
	lt_log_catch("block 2");
	assert_int_equal(recover_delta(c, &st), 3);
	assert_int_equal(lt_log_named(), 1);
	assert_int_equal(st.ls_cp_seq, 1);
	assert_int_equal(st.ls_rolled, 2);
	bdev_close(c);

	c = dev_copy(d); /* the log slot B names is corrupt: A, up to it */
	lt_flip(c, sr2, 5);
	lt_log_catch("block 20");
	assert_int_equal(recover_delta(c, &st), 1);
	assert_int_equal(lt_log_named(), 1);
	assert_int_equal(st.ls_cp_seq, 1);
	bdev_close(c);

	c = dev_copy(d); /* slot B names another mount's log: A, then roll forward */
	slot_forge_nonce(c, 2, ~raw_nonce(c, sr2 - 3)); /* delta 2's header */
	lt_log_catch("mount nonce");
	assert_int_equal(recover_delta(c, &st), 3);
	assert_int_equal(lt_log_named(), 1);
	assert_int_equal(st.ls_cp_seq, 1);
	bdev_close(c);

	c = dev_copy(d); /* slot B names no nonce at all: A */
	slot_forge_nonce(c, 2, 0);
	lt_log_catch("block 2");
	assert_int_equal(recover_delta(c, &st), 3);
	assert_int_equal(lt_log_named(), 1);
	assert_int_equal(st.ls_cp_seq, 1);
	bdev_close(c);

	c = dev_copy(d); /* and slot A blank: nothing valid */
	lt_flip(c, sr2, 5);
	lt_zero(c, 1);
	lt_log_catch("block 20");
	assert_int_equal(recover_delta(c, &st), -EUCLEAN);
	assert_int_equal(lt_log_named(), 1);
	bdev_close(c);

	c = dev_copy(d); /* both slots corrupt */
	lt_flip(c, 1, 8 * 16);
	lt_flip(c, 2, 8 * 16);
	lt_log_mute();
	assert_int_equal(recover_delta(c, &st), -EUCLEAN);
	lt_log_catch_stop();
	bdev_close(c);
	bdev_close(d);
}

/* ---- crashes at every write ------------------------------------------------------ */

#define WORKLOAD_DELTAS 8

/* Delta sizes of the workload; checkpoints after deltas 3 and 6. */
static const uint32_t workload_sizes[WORKLOAD_DELTAS] = {0, 5, 20, 1, 13, 30, 2, 9};

/* One delta that may fail anywhere (power cut): 0 or the first error. */
static int workload_delta(struct log *l, uint64_t delta, uint32_t ndata)
{
	struct log_builder *lb = NULL;
	unsigned char buf[LT_BS];
	uint64_t blk;
	int err;

	err = log_build_begin(l, delta, &lb);
	if (err)
		return err;
	for (uint32_t i = 0; !err && i < ndata; i++) {
		lt_pattern(buf, LT_DATA_OWNER, i, delta);
		err = log_build_add(lb, LT_DATA_OWNER, i, 0, buf, &blk);
	}
	lt_sr_pattern(buf, delta);
	if (!err)
		err = log_build_add(lb, LT_SR_OWNER, 0, LOG_ENTRY_SUPER_ROOT, buf, &blk);
	if (err) {
		log_build_abort(lb);
		return err;
	}
	return log_build_finish(lb);
}

/* Run the workload on @l; *acked: the last delta whose finish returned 0. */
static void workload_run(struct log *l, uint64_t *acked)
{
	*acked = 0;
	for (uint64_t delta = 1; delta <= WORKLOAD_DELTAS; delta++) {
		if (workload_delta(l, delta, workload_sizes[delta - 1]))
			return;
		*acked = delta;
		if ((delta == 3 || delta == 6) && log_checkpoint(l))
			return;
	}
}

/* Check the image @img after a cut, @acked deltas acknowledged. */
static void crash_check(struct bdev *img, uint64_t acked, const char *what)
{
	struct log_state st;
	int64_t got = recover_delta(img, &st);
	struct log *l;

	if (acked == 0 && got == -EUCLEAN)
		return; /* nothing was ever acknowledged */
	if (got < (int64_t)MAX(acked, 1) || got > WORKLOAD_DELTAS)
		fail_msg("%s: recovered %lld, acknowledged %llu", what, (long long)got,
			 (unsigned long long)acked);
	l = lt_recover(img, &st);
	lt_delta_ok(l, 100, 17, NULL, NULL);
	log_close(l);
	if (recover_delta(img, NULL) != 100)
		fail_msg("%s: the delta written after recovery is lost", what);
}

static void test_recover_every_crash_point(void **state)
{
	static const struct {
		enum bdev_emu_crash_mode mode;
		bool tear;
	} how[] = {
	    {BDEV_EMU_DROP_ALL, false},	 {BDEV_EMU_KEEP_ALL, false}, {BDEV_EMU_KEEP_ALL, true},
	    {BDEV_EMU_DROP_SOME, false}, {BDEV_EMU_REORDER, false},  {BDEV_EMU_REORDER, true},
	};
	uint64_t seed = test_seed("log_recover: every_crash_point", 777);
	struct bdev_emu_stats s;
	uint64_t acked, base, total;
	struct bdev *d, *img;
	struct log *l;
	char what[128];

	(void)state;
	l = lt_volume(SEG, 16, &d); /* count the workload's writes */
	bdev_emu_stats(d, &s);
	base = s.es_writes;
	workload_run(l, &acked);
	assert_int_equal(acked, WORKLOAD_DELTAS);
	bdev_emu_stats(d, &s);
	total = s.es_writes - base;
	log_close(l);
	bdev_close(d);

	lt_log_mute();
	for (uint64_t n = 1; n <= total + 1; n++) {
		l = lt_volume(SEG, 16, &d);
		bdev_emu_cut_after(d, base + n);
		workload_run(l, &acked);
		for (size_t i = 0; i < ARRAY_SIZE(how); i++) {
			snprintf(what, sizeof(what), "seed %llu cut at write %llu mode %zu",
				 (unsigned long long)seed, (unsigned long long)n, i);
			img = lt_crash(d, how[i].mode, how[i].tear, seed + n);
			crash_check(img, acked, what);
			bdev_close(img);
		}
		log_close(l);
		bdev_close(d);
	}
	lt_log_catch_stop();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_recover_fresh_volume),
	    cmocka_unit_test(test_recover_newest),
	    cmocka_unit_test(test_recover_rolls_forward),
	    cmocka_unit_test(test_recover_unflushed_delta),
	    cmocka_unit_test(test_recover_corrupt_last_log),
	    cmocka_unit_test(test_recover_two_log_delta),
	    cmocka_unit_test(test_recover_forged_logs),
	    cmocka_unit_test(test_recover_forged_mount_change),
	    cmocka_unit_test(test_recover_stale_older_log),
	    cmocka_unit_test(test_recover_stale_after_reuse),
	    cmocka_unit_test(test_recover_stale_same_summary),
	    cmocka_unit_test(test_recover_slots_alternate),
	    cmocka_unit_test(test_recover_slot_fallback),
	    cmocka_unit_test(test_recover_floor),
	    cmocka_unit_test(test_recover_every_crash_point),
	};

	return TEST_RUN("log_recover", tests);
}

/*
 * test_ns_fill.c - a full filesystem through libcairn: fill and delete
 * cycles from several threads, honest free space, nothing lost.
 *
 * An 8 MiB filesystem (32 segments of 64 blocks). Each of the rounds
 * (100; CAIRN_FILL_ROUNDS sets another number): FILL_THREADS threads each
 * create files in a directory of their own and append CHUNK bytes (a
 * pattern naming round, thread, file and offset) to them until the
 * filesystem says -ENOSPC; then each
 * thread reads every one of its files back and unlinks it (on a full
 * filesystem), and the main thread syncs. Proves, round after round:
 *   - no hang (a watchdog bounds the test), and no error but -ENOSPC
 *     from any write, create or unlink;
 *   - statfs is honest: the round wrote at least 90% of the blocks that
 *     statfs called free when it began (it leaves the cleaner's low
 *     watermark out, so a round writes more than that; less would be
 *     file metadata, log headers and summaries of short logs, and the
 *     worst cases the threads' last writes reserved at once), though
 *     every round writes over what the last one deleted: segments are
 *     reused and cleaned;
 *   - no space leaks: after the deletion and a sync, statfs reports the
 *     same free blocks as a round before, unless the round used an inode
 *     number for the first time (the inode file and bitmap grew) or a
 *     block translation entry for the first time (the translation grew),
 *     and at most METADATA_GROWTH fewer than after the first round (more
 *     by what the translation grew since); a reopen agrees;
 *   - nothing lost: every file reads back what was written to it, and
 *     at the end the filesystem reopens and vol_check and ns_check find
 *     it sound.
 * The same with snapshots taken and deleted along the way: see
 * test_fill_delete_rounds_with_snapshots.
 */
#include "harness.h"
#include "ns_fixture.h"

#include "ns/check.h"
#include "ns/ns.h"
#include "vol/vol.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>

#define FILL_MIB     8
#define FILL_THREADS 3
#define CHUNK	     (16 * 4096)
#define FILE_CHUNKS  24 /* a file grows to at most this many chunks */
#define MAX_FILES    256
/*
 * Blocks the metadata may grow by over the rounds without a leak: the
 * inode allocator hands out up to 32 never-used numbers before freed ones
 * (so the inode file and bitmap may grow a little), and directories keep
 * nodes they emptied.
 */
#define METADATA_GROWTH 8

struct filler {
	struct cairn *fl_c;
	unsigned fl_id;
	uint32_t fl_round;
	uint64_t fl_dir;
	uint64_t fl_ino[MAX_FILES];
	uint64_t fl_size[MAX_FILES];
	unsigned fl_nfiles;
	uint64_t fl_bytes;   /* written this round */
	uint64_t fl_limit;   /* stop filling past this many bytes (0: at -ENOSPC) */
	const char *fl_fail; /* what failed with another error than -ENOSPC */
	int fl_err;
};

/* The bytes of file @file of filler @id in round @round at offset @off. */
static void pattern(unsigned char *buf, size_t len, unsigned id, uint32_t round, unsigned file,
		    uint64_t off)
{
	for (size_t i = 0; i < len; i += 8) {
		uint64_t w = ((uint64_t)round << 40) ^ ((uint64_t)id << 32) ^
			     ((uint64_t)file << 20) ^ ((off + i) >> 3);

		memcpy(buf + i, &w, 8);
	}
}

static void filler_fail(struct filler *fl, const char *what, int err)
{
	if (!fl->fl_fail) {
		fl->fl_fail = what;
		fl->fl_err = err;
	}
}

/*
 * Create files and append to them until -ENOSPC (or fl_limit bytes this
 * round), after the files the round has already.
 */
static void *fill_main(void *arg)
{
	static _Thread_local unsigned char buf[CHUNK];
	struct filler *fl = arg;

	for (;;) {
		struct cairn_stat st;
		char name[32];
		unsigned f = fl->fl_nfiles;
		int err;

		if (f == MAX_FILES) {
			filler_fail(fl, "too many files (the volume never filled)", 0);
			return NULL;
		}
		snprintf(name, sizeof(name), "f%u", f);
		err = cairn_mknod(fl->fl_c, fl->fl_dir, name, 0100644, 0, NULL, &st);
		if (err == -ENOSPC)
			return NULL;
		if (err) {
			filler_fail(fl, "cairn_mknod", err);
			return NULL;
		}
		fl->fl_ino[f] = st.cs_ino;
		fl->fl_size[f] = 0;
		fl->fl_nfiles++;
		for (unsigned k = 0; k < FILE_CHUNKS; k++) {
			uint64_t off = fl->fl_size[f];
			ssize_t n;

			if (fl->fl_limit && fl->fl_bytes >= fl->fl_limit)
				return NULL;
			pattern(buf, CHUNK, fl->fl_id, fl->fl_round, f, off);
			n = cairn_pwrite(fl->fl_c, st.cs_ino, buf, CHUNK, off);
			if (n == -ENOSPC)
				return NULL;
			if (n < 0) {
				filler_fail(fl, "cairn_pwrite", (int)n);
				return NULL;
			}
			fl->fl_size[f] += (uint64_t)n;
			fl->fl_bytes += (uint64_t)n;
			if (n < CHUNK) /* a short write: the volume is full */
				return NULL;
		}
	}
}

/* Read every file back and unlink it. */
static void *empty_main(void *arg)
{
	static _Thread_local unsigned char buf[CHUNK], want[CHUNK];
	struct filler *fl = arg;

	for (unsigned f = 0; f < fl->fl_nfiles; f++) {
		struct cairn_stat st;
		char name[32];
		int err;

		if (cairn_getattr(fl->fl_c, fl->fl_ino[f], &st) || st.cs_size != fl->fl_size[f]) {
			filler_fail(fl, "a file's size is not what was written", 0);
			return NULL;
		}
		for (uint64_t off = 0; off < fl->fl_size[f]; off += CHUNK) {
			size_t len = (size_t)MIN((uint64_t)CHUNK, fl->fl_size[f] - off);
			ssize_t n = cairn_pread(fl->fl_c, fl->fl_ino[f], buf, len, off);

			pattern(want, CHUNK, fl->fl_id, fl->fl_round, f, off);
			if (n != (ssize_t)len || memcmp(buf, want, len)) {
				filler_fail(fl, "a file does not read back what was written",
					    (int)n);
				return NULL;
			}
		}
		snprintf(name, sizeof(name), "f%u", f);
		err = cairn_unlink(fl->fl_c, fl->fl_dir, name);
		if (err) { /* deleting must work on a full volume */
			filler_fail(fl, "cairn_unlink", err);
			return NULL;
		}
	}
	fl->fl_nfiles = 0;
	return NULL;
}

static void run_all(struct filler *fl, void *(*fn)(void *))
{
	pthread_t th[FILL_THREADS];

	for (unsigned i = 0; i < FILL_THREADS; i++)
		test_thread_start(&th[i], fn, &fl[i]);
	for (unsigned i = 0; i < FILL_THREADS; i++)
		test_thread_join(th[i]);
	for (unsigned i = 0; i < FILL_THREADS; i++)
		if (fl[i].fl_fail)
			fail_msg("round %" PRIu32 ", thread %u: %s: %d", fl[i].fl_round, i,
				 fl[i].fl_fail, fl[i].fl_err);
}

static uint64_t free_blocks(struct cairn *c)
{
	struct statvfs sv;

	assert_int_equal(cairn_statfs(c, &sv), 0);
	return sv.f_bfree;
}

static void ns_problem(void *ctx, uint64_t ino, const char *problem)
{
	(void)ctx;
	print_message("# ns_check: ino %" PRIu64 ": %s\n", ino, problem);
}

static void vol_problem(void *ctx, const char *msg)
{
	(void)ctx;
	print_message("# vol_check: %s\n", msg);
}

/* A filesystem of @mib MiB with a directory per filler, synced. */
static void fill_setup(struct nf *f, unsigned mib, struct filler *fl)
{
	nf_new(f, mib);
	for (unsigned i = 0; i < FILL_THREADS; i++) {
		char dir[16];

		snprintf(dir, sizeof(dir), "/t%u", i);
		assert_int_equal(cairn_mkdir_path(f->nf_c, dir, 0755, NULL), 0);
		fl[i] = (struct filler){.fl_c = f->nf_c, .fl_id = i, .fl_dir = nf_ino(f, dir)};
	}
	assert_int_equal(cairn_syncfs(f->nf_c), 0);
}

/* The fillers start round @r with no files, each to write up to @limit bytes (0: no limit). */
static void fill_round(struct filler *fl, uint32_t r, uint64_t limit)
{
	for (unsigned i = 0; i < FILL_THREADS; i++)
		fl[i] = (struct filler){.fl_c = fl[i].fl_c,
					.fl_id = i,
					.fl_dir = fl[i].fl_dir,
					.fl_round = r,
					.fl_limit = limit};
}

/* Rounds: @env's number if set, else @dflt. */
static uint64_t fill_rounds(const char *env, uint64_t dflt)
{
	const char *s = getenv(env);

	return s ? strtoull(s, NULL, 10) : dflt;
}

static void test_fill_delete_rounds(void **state)
{
	uint64_t rounds = fill_rounds("CAIRN_FILL_ROUNDS", 100);
	uint64_t first = 0, last = 0, least = UINT64_MAX, most = 0, high = 0;
	uint64_t dat_first = 0, dat = 0, ckpt = 0, ckpt_first = 0;
	struct filler fl[FILL_THREADS];
	struct vol_usage_stats us;
	struct nf f;

	(void)state;
	test_watchdog("fill and delete rounds", 120 + (unsigned)rounds * 6);
	fill_setup(&f, FILL_MIB, fl);
	last = free_blocks(f.nf_c); /* what the reopen at the end must agree with */
	vol_usage(f.nf_c->c_vol, &us);
	ckpt = us.vus_ckpt_blocks;
	for (uint32_t r = 1; r <= rounds; r++) {
		uint64_t before = free_blocks(f.nf_c), written = 0, after, high_before = high;
		uint64_t dat_before = dat, ckpt_before = ckpt;

		fill_round(fl, r, 0);
		run_all(fl, fill_main);
		for (unsigned i = 0; i < FILL_THREADS; i++)
			for (unsigned k = 0; k < fl[i].fl_nfiles; k++)
				high = MAX(high, fl[i].fl_ino[k]);
		for (unsigned i = 0; i < FILL_THREADS; i++)
			written += fl[i].fl_bytes / 4096;
		if (written * 100 < before * 90)
			fail_msg("round %" PRIu32 ": statfs said %" PRIu64
				 " blocks free, but only %" PRIu64 " could be written",
				 r, before, written);
		least = MIN(least, written);
		most = MAX(most, written);
		run_all(fl, empty_main);
		assert_int_equal(cairn_syncfs(f.nf_c), 0);
		after = free_blocks(f.nf_c);
		vol_usage(f.nf_c->c_vol, &us);
		dat = us.vus_dat_blocks;
		ckpt = us.vus_ckpt_blocks;
		if (r == 1) {
			first = after;
			dat_first = dat;
			ckpt_first = ckpt;
		}
		/* the checkpoint file takes a block more, or less, as the
		 * checkpoints go by: compared with it counted in */
		if (r > 1 && high == high_before && dat == dat_before &&
		    after + ckpt != last + ckpt_before)
			fail_msg(
			    "round %" PRIu32 ": %" PRIu64
			    " blocks free after deleting (and %" PRIu64
			    " in the checkpoint file), %" PRIu64 " (and %" PRIu64
			    ") a round before, and no inode number or translation entry was used "
			    "for the first time: space leaks",
			    r, after, ckpt, last, ckpt_before);
		if (after + METADATA_GROWTH + (dat - dat_first) + ckpt < first + ckpt_first)
			fail_msg("round %" PRIu32 ": %" PRIu64
				 " blocks free after deleting, %" PRIu64 " after round 1",
				 r, after, first);
		last = after;
	}
	vol_usage(f.nf_c->c_vol, &us);
	print_message("# %" PRIu64 " rounds: %" PRIu64 "..%" PRIu64
		      " blocks written a round; free after deleting: %" PRIu64
		      " after round 1, %" PRIu64 " at the end; %" PRIu64
		      " segments reused, %" PRIu64 " cleaned\n",
		      rounds, least, most, first, last, us.vus_released, us.vus_cleaned);
	nf_reopen(&f);
	vol_usage(f.nf_c->c_vol, &us);
	assert_int_equal(free_blocks(f.nf_c) + us.vus_ckpt_blocks, last + ckpt);
	assert_int_equal(vol_check(f.nf_c->c_vol, vol_problem, NULL, NULL), 0);
	assert_int_equal(ns_check(f.nf_c->c_vol, ns_problem, NULL, NULL), 0);
	nf_done(&f);
	test_watchdog_cancel();
}

/*
 * Fill and delete rounds with snapshots taken and deleted along the way
 * (SNAP_ROUNDS; CAIRN_FILL_SNAP_ROUNDS sets another number). Each round
 * fills half of what statfs calls free, takes a snapshot (which pins
 * those files), fills on until -ENOSPC, reads every file back and
 * deletes it, then deletes the snapshot of the round before, all on a
 * volume as full as it gets. statfs must stay honest (a round writes at
 * least 90% of what it said was free when the round began, whatever the
 * snapshot of the round before pins), deleting files and snapshots must
 * always succeed, and once the last snapshot is deleted the free space
 * must come back to what it was before the first round (but for the
 * metadata growth the rounds above allow). A 32 MiB filesystem: on the
 * 8 MiB one the free space a snapshot leaves is about one creation's
 * worst case, which no round could write 90% of.
 */
#define SNAP_ROUNDS   30
#define SNAP_FILL_MIB 32

static void test_fill_delete_rounds_with_snapshots(void **state)
{
	uint64_t rounds = fill_rounds("CAIRN_FILL_SNAP_ROUNDS", SNAP_ROUNDS);
	uint64_t start, end, dat_start, ckpt_start, least = UINT64_MAX;
	struct filler fl[FILL_THREADS];
	struct vol_usage_stats us;
	struct nf f;

	(void)state;
	test_watchdog("fill and delete rounds with snapshots", 120 + (unsigned)rounds * 8);
	fill_setup(&f, SNAP_FILL_MIB, fl);
	start = free_blocks(f.nf_c);
	vol_usage(f.nf_c->c_vol, &us);
	dat_start = us.vus_dat_blocks;
	ckpt_start = us.vus_ckpt_blocks;
	for (uint32_t r = 1; r <= rounds; r++) {
		uint64_t before = free_blocks(f.nf_c), written = 0;
		char name[16];

		fill_round(fl, r, before * 4096 / 2 / FILL_THREADS);
		run_all(fl, fill_main);
		snprintf(name, sizeof(name), "s%" PRIu32, r);
		assert_int_equal(cairn_snapshot_create(f.nf_c, name), 0);
		for (unsigned i = 0; i < FILL_THREADS; i++)
			fl[i].fl_limit = 0;
		run_all(fl, fill_main);
		for (unsigned i = 0; i < FILL_THREADS; i++)
			written += fl[i].fl_bytes / 4096;
		vol_usage(f.nf_c->c_vol, &us);
		print_message("# round %" PRIu32 ": %" PRIu64 " free, %" PRIu64 " written; %" PRIu64
			      " pinned in %" PRIu64 " marked segments\n",
			      r, before, written, us.vus_pinned_blocks, us.vus_snap_segments);
		if (written * 100 < before * 90)
			fail_msg("round %" PRIu32 ": statfs said %" PRIu64
				 " blocks free, but only %" PRIu64 " could be written",
				 r, before, written);
		least = MIN(least, written);
		run_all(fl, empty_main);
		if (r > 1) { /* on the full volume */
			snprintf(name, sizeof(name), "s%" PRIu32, r - 1);
			assert_int_equal(cairn_snapshot_delete(f.nf_c, name), 0);
		}
		assert_int_equal(cairn_syncfs(f.nf_c), 0);
	}
	{
		char name[16];

		snprintf(name, sizeof(name), "s%" PRIu64, rounds);
		assert_int_equal(cairn_snapshot_delete(f.nf_c, name), 0);
	}
	assert_int_equal(cairn_syncfs(f.nf_c), 0);
	end = free_blocks(f.nf_c);
	vol_usage(f.nf_c->c_vol, &us);
	print_message("# %" PRIu64 " rounds: at least %" PRIu64
		      " blocks written a round; free: %" PRIu64 " at first, %" PRIu64
		      " at the end; %" PRIu64 " pinned, %" PRIu64 " segments cleaned\n",
		      rounds, least, start, end, us.vus_pinned_blocks, us.vus_cleaned);
	assert_int_equal(us.vus_pinned_blocks, 0);
	assert_int_equal(us.vus_snap_segments, 0);
	assert_int_equal(us.vus_snap_dead_blocks, 0);
	if (end + METADATA_GROWTH + (us.vus_dat_blocks - dat_start) + us.vus_ckpt_blocks <
	    start + ckpt_start)
		fail_msg("%" PRIu64 " blocks free at the end, %" PRIu64 " at first: space leaks",
			 end, start);
	nf_reopen(&f);
	assert_int_equal(vol_check(f.nf_c->c_vol, vol_problem, NULL, NULL), 0);
	assert_int_equal(ns_check(f.nf_c->c_vol, ns_problem, NULL, NULL), 0);
	nf_done(&f);
	test_watchdog_cancel();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_fill_delete_rounds),
	    cmocka_unit_test(test_fill_delete_rounds_with_snapshots),
	};

	return TEST_RUN("ns_fill", tests);
}

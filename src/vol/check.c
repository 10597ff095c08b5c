/*
 * check.c - vol_check: the volume half of fsck.
 *
 * Walks the durable state (the super root the last commit wrote, read
 * from the device, not the cache): the owner table's map, every owner
 * record in it, and every owner's map, and checks that
 *
 *   - every block named (map block, owner-table block, data block) lies
 *     inside a segment, and is named once in the whole volume;
 *   - every record's height is possible and its root set iff it has a
 *     height; only client owners (>= VOL_CLIENT_META) have records;
 *   - each segment's live-block count (usage.c) is the walk's, and no
 *     segment holding a live block is free in the log.
 *
 * Each problem is told to @report as one line; the count of problems is
 * returned (0: clean), or a negative errno if a block cannot be read.
 * Call it with no transaction in flight and after vol_sync, so that the
 * durable state is the whole state (tests do, after every workload and
 * after crash recovery). With the block address translation (next) it
 * will also check each virtual block's translation entry.
 *
 * No shared state but the volume's immutable fields and v_sr, which the
 * caller keeps still (no commit runs).
 */
#include "vol/vol_internal.h"

#include <endian.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct vol_checker {
	struct vol *ck_vol;
	void (*ck_report)(void *arg, const char *msg);
	void *ck_arg;
	struct vol_table ck_seen; /* pblk -> 1: blocks named so far */
	bool ck_count_only;	  /* vol_count_durable: no checks, no ck_seen */
	uint32_t *ck_counted;	  /* blocks per segment */
	uint64_t ck_problems;
	uint64_t ck_blocks;
};

static void ck_problem(struct vol_checker *ck, const char *fmt, ...)
{
	char msg[200];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	ck->ck_problems++;
	if (ck->ck_report)
		ck->ck_report(ck->ck_arg, msg);
}

/* Count block @pblk named by (owner, index); false if it is not usable. */
static bool ck_claim(struct vol_checker *ck, uint64_t owner, uint64_t index, uint64_t pblk)
{
	const struct log_geometry *g = &ck->ck_vol->v_geo;

	if (pblk < g->lg_seg_start ||
	    pblk - g->lg_seg_start >= g->lg_nsegments * g->lg_seg_blocks) {
		ck_problem(
		    ck, "block (%" PRIu64 ", %#" PRIx64 ") at %" PRIu64 " is outside the segments",
		    owner, index, pblk);
		return false;
	}
	if (ck->ck_count_only) {
		ck->ck_counted[vol_seg_of(ck->ck_vol, pblk)]++;
		ck->ck_blocks++;
		return true;
	}
	if (vol_table_get(&ck->ck_seen, pblk, 0)) {
		ck_problem(
		    ck, "block %" PRIu64 " is named twice (again by (%" PRIu64 ", %#" PRIx64 "))",
		    pblk, owner, index);
		return false;
	}
	ck->ck_counted[vol_seg_of(ck->ck_vol, pblk)]++;
	ck->ck_blocks++;
	return vol_table_put(&ck->ck_seen, pblk, 0, (void *)1) == 0;
}

static int ck_tree(struct vol_checker *ck, uint64_t owner, uint64_t pblk, unsigned level,
		   uint64_t first, void *bufs);

/* Owner-table block @blk (@data): check and walk each record's map. */
static int ck_otab_block(struct vol_checker *ck, uint64_t blk, const unsigned char *data,
			 void *bufs)
{
	struct vol *v = ck->ck_vol;
	int err = 0;

	for (uint32_t i = 0; i < v->v_recs_per_block && !err; i++) {
		uint64_t owner = blk * v->v_recs_per_block + i, root;
		const unsigned char *p = data + (size_t)i * VOL_REC_SIZE;
		uint8_t height = p[8];

		memcpy(&root, p, sizeof(root));
		root = le64toh(root);
		if (!root && !height)
			continue;
		if (owner < VOL_CLIENT_META || owner > VOL_MAX_OWNER) {
			ck_problem(ck, "owner %" PRIu64 " (not a client owner) has a record",
				   owner);
			continue;
		}
		if (!root != !height || height > v->v_height_max) {
			ck_problem(ck,
				   "owner %" PRIu64 ": bad record (root %" PRIu64 ", height %u)",
				   owner, root, height);
			continue;
		}
		err = ck_tree(ck, owner, root, height, 0, bufs);
	}
	return err;
}

/*
 * The map block of @owner at @level (>= 1) covering data from @first,
 * at @pblk; @bufs: room for one block per level below it.
 */
static int ck_tree(struct vol_checker *ck, uint64_t owner, uint64_t pblk, unsigned level,
		   uint64_t first, void *bufs)
{
	struct vol *v = ck->ck_vol;
	unsigned shift = v->v_map.bm_shift;
	unsigned char *data = bufs;
	uint64_t nidx = bmap_node_index(&v->v_map, level, first);
	int err;

	if (!ck_claim(ck, owner, nidx, pblk))
		return 0;
	err = bdev_read(v->v_bdev, pblk, 1, data);
	if (err)
		return err;
	for (uint32_t s = 0; s < v->v_map.bm_entries && !err; s++) {
		uint64_t child = bmap_entry(data, s);
		uint64_t cfirst = first + ((uint64_t)s << (shift * (level - 1)));

		if (!child)
			continue;
		if (level > 1) {
			err = ck_tree(ck, owner, child, level - 1, cfirst, data + v->v_block_size);
			continue;
		}
		if (!ck_claim(ck, owner, cfirst, child) || owner != VOL_OTAB_OWNER)
			continue;
		err = bdev_read(v->v_bdev, child, 1, data + v->v_block_size);
		if (!err)
			err = ck_otab_block(ck, cfirst, data + v->v_block_size,
					    data + 2 * (size_t)v->v_block_size);
	}
	return err;
}

/* The walk: the super root, then the owner table's map and everything below. */
static int ck_walk(struct vol_checker *ck)
{
	struct vol *v = ck->ck_vol;
	/* a block per level of the owner table's map, its data block, and an
	 * owner's map below it */
	size_t nbufs = (size_t)v->v_otab_height_max + 2 + v->v_height_max;
	void *bufs = malloc(nbufs * v->v_block_size);
	int err = 0;

	if (!bufs)
		return -ENOMEM;
	if (v->v_sr_blk)
		ck_claim(ck, VOL_SROOT_OWNER, 0, v->v_sr_blk);
	if (v->v_sr.sr_otab_height)
		err = ck_tree(ck, VOL_OTAB_OWNER, v->v_sr.sr_otab_root, v->v_sr.sr_otab_height, 0,
			      bufs);
	free(bufs);
	vol_table_clear(&ck->ck_seen, NULL);
	return err;
}

int vol_count_durable(struct vol *v, uint32_t *counted)
{
	struct vol_checker ck = {.ck_vol = v, .ck_count_only = true, .ck_counted = counted};

	return ck_walk(&ck);
}

static void ck_usage_problem(void *arg, const char *msg)
{
	ck_problem(arg, "%s", msg);
}

int vol_check(struct vol *v, void (*report)(void *arg, const char *msg), void *arg,
	      struct vol_check_stats *st)
{
	struct vol_checker ck = {.ck_vol = v, .ck_report = report, .ck_arg = arg};
	int err;

	ck.ck_counted = calloc(v->v_geo.lg_nsegments, sizeof(*ck.ck_counted));
	if (!ck.ck_counted)
		return -ENOMEM;
	err = ck_walk(&ck);
	if (!err && !ck.ck_problems)
		vol_usage_check(v, ck.ck_counted, ck_usage_problem, &ck);
	free(ck.ck_counted);
	if (st)
		*st = (struct vol_check_stats){.cs_blocks = ck.ck_blocks};
	if (err)
		return err;
	return (int)MIN(ck.ck_problems, (uint64_t)INT32_MAX);
}

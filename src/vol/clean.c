/*
 * clean.c - the segment cleaner: moves the live blocks out of partly
 * used segments so that they empty and go back to the log (usage.c).
 *
 * It runs inside the commit (commit.c, after the delta's punches and
 * truncates, before its data), when fewer than CLEAN_FREE_DIV-th of the
 * segments (plus two) are free: the front end's reservations fail once
 * space is short, which forces commits (delta.c), and so cleaning,
 * until space comes back. Each run:
 *
 *   (1) chooses victims among the segments in use that recovery no
 *       longer needs (if every one is still needed, it writes two
 *       checkpoints first, so that only the newest logs are), hold live
 *       blocks but at most CLEAN_UTIL_MAX percent,
 *       by cost-benefit, (1 - u) * age / (1 + u), where u is the
 *       segment's live fraction and age the deltas since its youngest
 *       block was written; greedy, (1 - u), when almost nothing is free;
 *       up to a budget of live blocks per commit (the cache must hold
 *       them dirty along with the delta's own);
 *   (2) reserves what writing them may cost (vol_txn_worst), from the
 *       kept reserve if need be (a freeing operation): the budget of (1)
 *       shrinks to what can be reserved;
 *   (3) reads each victim's logs (log_seg_scan) and, for each block the
 *       summary names, asks the maps where that block is now
 *       (vol_resolve): only a block still named at this address is live;
 *   (4) dirties each live block in the committing delta, unchanged: a
 *       data block only if it is Clean (buf_dirty_clean: one dirty in the
 *       open delta is written by that delta anyway, and a modifier that
 *       comes later forks it like any buffer of a committing delta); a map
 *       or owner-table block (only the commit changes those) always, and
 *       the commit's bookkeeping keeps it for its level.
 *
 * The commit then writes them like any dirty block, and their new
 * addresses go up the maps as usual, so every old address is left behind
 * (bc_gone) and the victim's count falls to 0 once the commit is durable;
 * usage.c then gives it back. Nothing is written in place, so a crash at
 * any point leaves either the old state (the victim still named and
 * still in use) or the new one.
 *
 * Without a block address translation, moving a block rewrites the map
 * blocks above it; the translation entries of the DAT (issue 4) will
 * make that one entry per block.
 *
 * Commit thread only (its state: usage.c (3)).
 */
#include "vol/vol_internal.h"

#include <inttypes.h>
#include <stdlib.h>

#define CLEAN_FREE_DIV	 8   /* clean while fewer than nsegments / 8 + 2 are free */
#define CLEAN_UTIL_MAX	 90  /* never move a segment fuller than this percent */
#define CLEAN_VICTIMS	 16  /* most segments per commit */
#define CLEAN_BUDGET_MAX 512 /* most live blocks moved per commit */

struct clean_run {
	struct vol *cr_vol;
	uint32_t cr_delta;
	int (*cr_keep_meta)(void *arg, struct buf *b);
	void *cr_arg;
	uint64_t cr_moved;
};

/* log_scan_fn: move the block at @blk if the maps still name it there. */
static int clean_block(void *arg, uint64_t owner, uint64_t index, uint32_t flags, uint64_t blk)
{
	struct clean_run *cr = arg;
	struct vol *v = cr->cr_vol;
	bool meta = owner == VOL_OTAB_OWNER || bmap_is_node(index);
	uint64_t now;
	struct buf *b;
	int err;

	if (flags & LOG_ENTRY_SUPER_ROOT)
		return 0; /* every commit writes a new one */
	if (owner == VOL_SROOT_OWNER || owner > VOL_MAX_OWNER)
		return 0;
	err = vol_resolve(v, owner, index, &now);
	if (err || now != blk)
		return err == -EINVAL ? 0 : err; /* stale summary entry: dead */
	if (!meta) {
		err = buf_read(v->v_cache, owner, index, &b);
		if (err)
			return err;
		err = buf_dirty_clean(b, cr->cr_delta);
		buf_put(b);
		if (err == -EBUSY)
			return 0; /* dirty already: written by its own delta */
		cr->cr_moved += !err;
		return err;
	}
	do
		err = buf_read_hint(v->v_cache, owner, index, blk, &b);
	while (err == -ESTALE);
	if (err)
		return err;
	err = buf_modify_begin(b, cr->cr_delta);
	if (!err) {
		buf_modify_end(b);
		err = cr->cr_keep_meta(cr->cr_arg, b);
	}
	buf_put(b);
	cr->cr_moved += !err;
	return err;
}

/* Segments free in the log now. */
static uint64_t clean_free_segments(struct vol *v)
{
	struct log_space sp;

	log_space(v->v_log, &sp);
	return (sp.sp_total - MIN(sp.sp_written, sp.sp_total)) / v->v_geo.lg_seg_blocks;
}

/*
 * The most live blocks (up to @budget) whose move can be reserved now,
 * the kept reserve included: cleaning is a freeing operation.
 */
static uint64_t clean_affordable(struct vol *v, uint64_t budget)
{
	struct log_space sp;
	uint64_t avail;

	log_space(v->v_log, &sp);
	avail = sp.sp_total > sp.sp_written + sp.sp_reserved
		    ? sp.sp_total - sp.sp_written - sp.sp_reserved
		    : 0;
	while (budget && vol_txn_worst(v, budget) > avail)
		budget = budget * 3 / 4;
	return budget;
}

/* (1) Up to CLEAN_VICTIMS victims into @victims; their live blocks. */
static uint64_t clean_choose(struct vol *v, uint32_t delta, bool greedy, uint64_t budget,
			     uint64_t *victims, unsigned *n, bool *held)
{
	struct vol_usage *u = &v->v_usage;
	uint64_t nseg = v->v_geo.lg_nsegments, seg_blocks = v->v_geo.lg_seg_blocks, total = 0;

	*n = 0;
	while (*n < CLEAN_VICTIMS) {
		uint64_t best = UINT64_MAX;
		double best_score = 0;

		for (uint64_t s = 0; s < nseg; s++) {
			uint32_t live = u->vu_live[s];
			double util = (double)live / (double)seg_blocks, score;
			bool taken = false;

			if (!live || live * 100 > seg_blocks * CLEAN_UTIL_MAX ||
			    total + live > budget)
				continue;
			for (unsigned i = 0; i < *n && !taken; i++)
				taken = victims[i] == s;
			if (taken || !log_seg_in_use(v->v_log, s))
				continue;
			if (log_seg_needed(v->v_log, s)) {
				*held = true;
				continue;
			}
			score = greedy
				    ? 1 - util
				    : (1 - util) * (double)(delta - MIN(u->vu_age[s], delta) + 1) /
					  (1 + util);
			if (best == UINT64_MAX || score > best_score)
				best = s, best_score = score;
		}
		if (best == UINT64_MAX)
			break;
		victims[(*n)++] = best;
		total += u->vu_live[best];
	}
	return total;
}

bool vol_clean_worthwhile(void *ctx)
{
	struct vol *v = ctx;
	struct vol_usage *u = &v->v_usage;
	uint64_t nseg = v->v_geo.lg_nsegments, seg_blocks = v->v_geo.lg_seg_blocks;
	bool some = false;

	if (v->v_read_only || !u->vu_live || clean_free_segments(v) >= nseg / CLEAN_FREE_DIV + 2)
		return false;
	cmutex_lock(&u->vu_lock);
	for (uint64_t s = 0; s < nseg && !some; s++)
		some = u->vu_live[s] * 100 <= seg_blocks * CLEAN_UTIL_MAX &&
		       log_seg_in_use(v->v_log, s);
	cmutex_unlock(&u->vu_lock);
	return some;
}

int vol_clean(struct vol *v, uint32_t delta, int (*keep_meta)(void *arg, struct buf *b), void *arg,
	      uint64_t *reserved)
{
	struct clean_run cr = {v, delta, keep_meta, arg, 0};
	uint64_t nseg = v->v_geo.lg_nsegments, free_segs, victims[CLEAN_VICTIMS], live, res;
	uint64_t budget = MIN((uint64_t)CLEAN_BUDGET_MAX, MAX(v->v_dirty_limit / 4, 1));
	bool held = false;
	unsigned n;
	int err = 0;

	*reserved = 0;
	if (v->v_read_only || !v->v_usage.vu_live)
		return 0;
	free_segs = clean_free_segments(v);
	if (free_segs >= nseg / CLEAN_FREE_DIV + 2)
		return 0;
	budget = clean_affordable(v, budget);
	live = clean_choose(v, delta, free_segs < 2, budget, victims, &n, &held);
	if (!n && held) {
		/* victims held only for recovery: move the checkpoint slots on */
		for (int i = 0; i < 2 && !err; i++)
			err = log_checkpoint(v->v_log);
		if (!err)
			live = clean_choose(v, delta, free_segs < 2, budget, victims, &n, &held);
	}
	if (!n)
		return 0;
	res = vol_txn_worst(v, live);
	if (log_space_reserve(v->v_log, res, LOG_RES_FREEING))
		return 0; /* no room even to move: the reserve is spent */
	*reserved = res;
	for (unsigned i = 0; i < n && !err; i++)
		err = log_seg_scan(v->v_log, victims[i], clean_block, &cr);
	/* what was dirtied is written; the rest stays for a later run */
	if (err)
		log_warn("vol: cleaning in delta %" PRIu32 " stopped: %d", delta, err);
	cmutex_lock(&v->v_usage.vu_lock);
	v->v_usage.vu_cleaned += n;
	v->v_usage.vu_moved += cr.cr_moved;
	cmutex_unlock(&v->v_usage.vu_lock);
	return 0;
}

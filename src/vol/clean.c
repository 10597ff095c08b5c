/*
 * clean.c - the segment cleaner: moves the live blocks out of partly
 * used segments so that they empty and go back to the log (usage.c).
 *
 * It runs inside the commit (commit.c, after the delta's punches and
 * truncates, before its data), between two watermarks of free segments
 * (free: neither written, nor reserved, nor kept: what writers may use;
 * vol_open_opts.voo_clean_low and _high, or defaults from the segments
 * writers may use, vol_clean_free_segments): it starts in the first
 * commit that finds fewer than the low one free, or after a commit that
 * left fewer, and goes on in every commit until the high one is reached
 * (or as many as the live blocks leave, if fewer: clean_free_segments)
 * or no victim is left. While it goes on, each commit asks for the next
 * at once (delta_ops.do_again), writes or not: that is the background
 * cleaning, on the commit thread.
 * It stops asking when a step moved nothing, or gained no free segment
 * while no transaction ended (clean_stop; a full volume would otherwise
 * compact its own map blocks forever), until a transaction ends. In the
 * foreground, a reservation that falls short makes the next commit clean
 * whatever the watermarks say (v_clean_urgent) and forces commits
 * (delta.c, do_reclaimable) until space comes back. Each run:
 *
 *   (1) chooses victims among the segments in use that recovery no
 *       longer needs (if every one is still needed, it writes two
 *       checkpoints first, so that only the newest logs are), hold live
 *       blocks but at most CLEAN_UTIL_MAX percent (CLEAN_UTIL_PRESSED
 *       when fewer than two segments are free), counting in a segment a
 *       snapshot marked (vu_snap, usage.c) the blocks only snapshots keep
 *       too, and taking one only while raw moves may be made (below),
 *       by cost-benefit, (1 - u) * age / (1 + u), where u is the
 *       segment's movable fraction and age the deltas since its youngest
 *       block was written; greedy, (1 - u), when almost nothing is free
 *       or when the volume was opened with VOL_CLEAN_GREEDY;
 *       up to a budget of live blocks per commit (the cache must hold
 *       them dirty along with the delta's own);
 *   (2) reserves the headers and summaries of the logs the victims'
 *       live blocks may take (clean_log_room; fewer victims when that
 *       does not fit), then, block by block as it finds them in (3),
 *       what moving each may cost (clean_reserve: the block and its
 *       translation block, vol_move_worst; a block of the translation's
 *       own tree and its path), from the kept reserve if need be: up to
 *       log_space_cleaner_room in all, as the run starts (all of it but
 *       the part kept for deletions, or all that is left once deletions
 *       that freed nothing left less than that part, log_space.c);
 *       the run ends where that fails, or at the victims' live blocks;
 *   (3) reads each victim's logs (log_seg_scan) and, for each block the
 *       summary names with its virtual number (the tag), asks whether it
 *       is current there: its owner's tree still names that number for
 *       it, and the translation puts the number at this address
 *       (vol_resolve_entry). A block of the translation's or the
 *       segment usage file's own tree is current if that tree names
 *       this address;
 *   (4) dirties each current block in the committing delta, unchanged: a
 *       data block only if it is Clean (buf_dirty_clean: one dirty in the
 *       open delta is written by that delta anyway, and a modifier that
 *       comes later forks it like any buffer of a committing delta); a map
 *       or owner-table block (only the commit changes those) always, and
 *       the commit's bookkeeping keeps it for its level; and tells the
 *       commit it is a move (co_move). A block a punch or truncate of the
 *       open delta removes is left alone: it goes with that commit;
 *   (5) a block that is not current there may still be a snapshot's: its
 *       translation entry puts its number at this address, is dead, and
 *       a snapshot's delta lies in its [birth, death) (the liveness rule,
 *       clean_kept_block). The commit writes it again by address at once
 *       (co_move_raw, commit.c's raw moves), from what writers may use
 *       with room to spare, never the kept reserve (clean_reserve_raw):
 *       it is kept twice until the re-rooter (snap.c) points the
 *       snapshots at the translation that has the move, and no raw move
 *       is made while that is pending (vol_reroot_pending). A marked
 *       victim that gave nothing is stuck (vu_stuck) until a recount,
 *       unless a snapshot's block there waited for room (it moves once
 *       space comes back: before, such segments stayed for good).
 *
 * The commit writes a moved block under the same number and changes its
 * translation entry alone: no map block above it is rewritten (a map
 * block whose entries the same commit changes is a new version, with a
 * new number, as always). The old address leaves the counts and the
 * victim's count falls to 0 once the commit is durable; usage.c then
 * gives it back. Nothing is written in place, so a crash at any point
 * leaves either the old state (the old entry, the victim in use) or the
 * new one.
 *
 * Interleaving points: vol.clean.start, .done (the watermarks'
 * hysteresis), .victims (chosen, the base reserved), .read (a block
 * found current, before it is read), .raw (a snapshot's block to move
 * by address, before its room is reserved).
 *
 * Commit thread only (its state: usage.c (3)).
 */
#include "vol/vol_internal.h"
#include "util/syncpoint.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define CLEAN_LOW_DIV	   32 /* default low watermark: nsegments / 32 + 4 free */
#define CLEAN_LOW_ADD	   4
#define CLEAN_HIGH_DIV	   16 /* default high watermark: nsegments / 16 + 8 free */
#define CLEAN_HIGH_ADD	   8
#define CLEAN_UTIL_MAX	   90		     /* never move a segment fuller than this percent, */
#define CLEAN_UTIL_PRESSED 97		     /* or this one when fewer than two segments are free */
#define CLEAN_VICTIMS	   VOL_CLEAN_VICTIMS /* most segments per commit */
#define CLEAN_BUDGET_MAX   4096		     /* most live blocks moved per commit */

struct clean_run {
	struct vol *cr_vol;
	uint32_t cr_delta;
	const struct vol_clean_ops *cr_ops;
	uint64_t cr_moved;
	uint64_t cr_budget;    /* most blocks to move */
	uint64_t cr_reserved;  /* reserved for the moves so far */
	uint64_t cr_room;      /* the most the run may reserve (log_space_cleaner_room) */
	bool cr_full;	       /* a reservation failed: the run ends */
	bool cr_raw_full;      /* no room for raw moves: the run makes no more */
	uint64_t cr_raw_moved; /* of cr_moved, raw moves */
	uint64_t *cr_snaps;    /* the snapshots' deltas, sorted (raw moves: NULL, none) */
	size_t cr_nsnaps;
};

/* Segment @s's bit in bitmap @map, read or set by any thread. */
static bool clean_bit(const uint64_t *map, uint64_t s)
{
	return __atomic_load_n(&map[s / 64], __ATOMIC_RELAXED) >> (s % 64) & 1;
}

/*
 * What moving segment @s's blocks takes: its live blocks, and with @raw
 * (snapshots' blocks may move) those only snapshots keep, if it is marked
 * and not stuck (vu_stuck: scanned whole once, nothing moved, so what it
 * counts is blocks named by address or dead ones counted too high).
 * 0: not a victim. vu_lock, or the commit thread.
 */
static uint64_t clean_movable(const struct vol_usage *u, uint64_t s, bool raw)
{
	if (!vol_seg_snap(u->vu_snap, s))
		return u->vu_live[s];
	if (!raw || clean_bit(u->vu_stuck, s))
		return 0;
	return (uint64_t)u->vu_live[s] + u->vu_pinned[s];
}

/*
 * Reserve what moving a block costs the commit, @cost: from the kept
 * reserve, within the run's room ((2) above): cleaning frees space.
 * -ENOSPC: the run stops here.
 */
static int clean_reserve(struct clean_run *cr, uint64_t cost)
{
	int err = cr->cr_reserved + cost > cr->cr_room
		      ? -ENOSPC
		      : log_space_reserve(cr->cr_vol->v_log, cost, LOG_RES_FREEING);

	if (!err)
		cr->cr_reserved += cost;
	return err;
}

/*
 * Whether what writers may use holds @cost blocks for raw moves
 * (clean_kept_block) with a segment's worth left over: a raw move frees
 * nothing until the snapshots are re-rooted.
 */
static bool clean_raw_room(struct vol *v, uint64_t cost)
{
	struct log_space sp;

	log_space(v->v_log, &sp);
	return sp.sp_free >= cost + v->v_geo.lg_seg_blocks;
}

/*
 * Whether a run with @free_segs free segments may make raw moves at all:
 * two segments free, room for one move, and no re-root pending (the
 * copies would be kept three times). vol_clean asks clean_snaps too.
 */
static bool clean_raw_allowed(struct vol *v, uint64_t free_segs)
{
	return free_segs >= 2 && clean_raw_room(v, vol_move_worst(v)) && !vol_reroot_pending(v);
}

/* Reserve what a raw move costs, if there is room for it. False: no room. */
static bool clean_reserve_raw(struct clean_run *cr, uint64_t cost)
{
	if (!clean_raw_room(cr->cr_vol, cost) || log_space_reserve(cr->cr_vol->v_log, cost, 0))
		return false;
	cr->cr_reserved += cost;
	return true;
}

/* A reservation of clean_reserve that was not needed after all. */
static void clean_unreserve(struct clean_run *cr, uint64_t cost)
{
	log_space_release(cr->cr_vol->v_log, cost);
	cr->cr_reserved -= cost;
}

/*
 * A block the state no longer names at @blk (its summary entry: @owner,
 * @index, @tag, @flags): dead, unless a snapshot keeps it, which is the
 * issue's rule read off the translation: its entry still puts @tag at
 * @blk, it died, and a snapshot's delta lies in [birth, death). Then it
 * moves by address (co_move_raw: no tree of the state names it, so no
 * buffer), its translation entry alone changed. A block a snapshot names
 * by address (its translation's tree, its super roots) stays: so does
 * its segment, until a re-root or the snapshot's deletion lets it go.
 */
static int clean_kept_block(struct clean_run *cr, uint64_t owner, uint64_t index, uint64_t tag,
			    uint32_t flags, uint64_t blk)
{
	struct vol *v = cr->cr_vol;
	struct vol_dat_entry e;
	uint64_t cost = vol_move_worst(v);
	int err;

	if (!cr->cr_nsnaps || !bmap_virtual(owner) || !tag || tag >= v->v_dat_alloc.vd_next ||
	    !vol_seg_snap(v->v_usage.vu_snap, vol_seg_of(v, blk)))
		return 0;
	err = dat_entry(v, tag, &e);
	if (err)
		return err == -EINVAL || err == -EUCLEAN ? 0 : err;
	if (e.de_pblk != blk || !e.de_death ||
	    !vol_snaps_keep(cr->cr_snaps, cr->cr_nsnaps, e.de_birth, e.de_death))
		return 0;
	if (cr->cr_moved >= cr->cr_budget) {
		cr->cr_full = true;
		return 1; /* enough for this commit */
	}
	/* the copy is kept twice until the re-root: from what writers may
	 * use, a segment's worth left over, never from the kept reserve */
	SYNC_POINT("vol.clean.raw");
	if (cr->cr_raw_full || !clean_reserve_raw(cr, cost)) {
		cr->cr_raw_full = true;
		return 0;
	}
	err = cr->cr_ops->co_move_raw(cr->cr_ops->co_arg, owner, index, tag, flags, blk);
	if (err) {
		clean_unreserve(cr, cost);
		return err;
	}
	cr->cr_moved++;
	cr->cr_raw_moved++;
	return 0;
}

/*
 * log_scan_fn: move the block at @blk if it is still current there. A
 * block of a tree that names virtual blocks (@tag, its number) is
 * current if its owner's tree still names @tag for it and the
 * translation says @tag is at @blk; it moves by its translation entry
 * alone (co_move): the same number at a new address, no tree above it
 * rewritten. A block of the translation's or the segment usage file's
 * tree is current if that tree names @blk for it; it is rewritten with
 * its path, like any change of those trees.
 */
static int clean_block(void *arg, uint64_t owner, uint64_t index, uint64_t tag, uint32_t flags,
		       uint64_t blk)
{
	struct clean_run *cr = arg;
	struct vol *v = cr->cr_vol;
	bool meta = !bmap_direct_root(owner) || bmap_is_node(index);
	uint64_t now, cost, path, entry;
	bool moved = true;
	struct buf *b;
	int err;

	if (flags & LOG_ENTRY_SUPER_ROOT)
		return 0; /* every commit writes a new one */
	if (owner == VOL_SROOT_OWNER || owner > VOL_MAX_OWNER)
		return 0;
	if (!bmap_is_node(index) && bmap_direct_root(owner) &&
	    vol_punch_pending(&v->v_punches, owner, index))
		return 0; /* punched or truncated by the open delta: it goes then */
	err = vol_resolve_entry(v, owner, index, &entry, &now, &path);
	if (err && err != -EINVAL)
		return err;
	if (err || now != blk || (bmap_virtual(owner) && entry != tag))
		return clean_kept_block(cr, owner, index, tag, flags, blk); /* dead to the state */
	cost = bmap_virtual(owner) ? vol_move_worst(v) : path;
	if (cr->cr_moved >= cr->cr_budget || clean_reserve(cr, cost)) {
		cr->cr_full = true;
		return 1; /* enough for this commit */
	}
	/* current at the first look, not read yet: a punch may come in between */
	SYNC_POINT("vol.clean.read");
	err = buf_read(v->v_cache, owner, index, &b); /* a walk finds it */
	if (err) {
		clean_unreserve(cr, cost);
		return err;
	}
	if (!meta && vol_punch_pending(&v->v_punches, owner, index)) {
		/* punched since the first look: the fill may have read its zeros
		 * (punches stay recorded until their commit ends, so none now
		 * means the fill read the block) */
		buf_put(b);
		clean_unreserve(cr, cost);
		return 0;
	}
	if (!meta) {
		err = buf_dirty_clean(b, cr->cr_delta);
	} else {
		/* changed by this commit already (a punch, a truncate): a new
		 * version, written with a new number, not a move */
		moved = buf_state(b) == BUF_CLEAN;
		err = buf_modify_begin(b, cr->cr_delta);
		if (!err) {
			buf_modify_end(b);
			err = cr->cr_ops->co_keep_meta(cr->cr_ops->co_arg, b);
		}
	}
	buf_put(b);
	if (err == -EBUSY) { /* dirty already: written by its own delta */
		clean_unreserve(cr, cost);
		return 0;
	}
	if (!err && bmap_virtual(owner) && moved)
		err = cr->cr_ops->co_move(cr->cr_ops->co_arg, owner, index, tag, blk);
	cr->cr_moved += !err || meta; /* dirtied even if not kept: the commit writes it */
	return err;
}

/*
 * Segments' worth of space free in the log now, not promised to a
 * reservation and not in the kept reserve: what the watermarks compare
 * with (reservations in flight are the front end's next writes; the kept
 * reserve is no writer's, and on a small volume it is many segments).
 * The default watermarks come from the segments a writer may use at all
 * (the kept reserve grows once the client declares its deletions), at
 * most a quarter and a half of them: on a small volume nsegments / 32 +
 * 4 would be most of it, and the cleaner would never stop.
 */
uint64_t vol_clean_free_segments(struct vol *v, const struct log_space *sp, uint64_t *low,
				 uint64_t *high)
{
	uint64_t seg = v->v_geo.lg_seg_blocks, used = sp->sp_written + sp->sp_reserved;
	uint64_t usable = (sp->sp_total - MIN(sp->sp_kept, sp->sp_total)) / seg, lo, hi;
	uint32_t want_lo = atomic_load(&v->v_clean_low), want_hi = atomic_load(&v->v_clean_high);

	lo = want_lo ? want_lo : MAX(MIN(usable / CLEAN_LOW_DIV + CLEAN_LOW_ADD, usable / 4), 1);
	hi = want_hi ? want_hi : MIN(usable / CLEAN_HIGH_DIV + CLEAN_HIGH_ADD, usable / 2);
	if (low)
		*low = lo;
	if (high)
		*high = MAX(hi, lo);
	return (sp->sp_total - MIN(used + sp->sp_kept, sp->sp_total)) / seg;
}

/*
 * Free segments as the cleaner sees them: empty ones the protection
 * period holds, or that wait for the next super root (usage.c), are
 * free for the asking, and go before anything is moved. With @high (the
 * commit thread only), the high watermark the cleaner stops at: at most
 * the free segments it can reach at best, those a writer may use (free
 * and in use) less what the live and pinned blocks fill and the head's
 * segment; it could not get further, however much it moved.
 */
static uint64_t clean_free_segments(struct vol *v, uint64_t *low, uint64_t *high)
{
	struct vol_usage *u = &v->v_usage;
	uint64_t seg = v->v_geo.lg_seg_blocks, waiting, free_segs, in_use, full;
	struct log_space sp;

	log_space(v->v_log, &sp);
	cmutex_lock(&u->vu_lock);
	waiting = u->vu_waiting;
	cmutex_unlock(&u->vu_lock);
	free_segs = vol_clean_free_segments(v, &sp, low, high) + waiting;
	if (high) {
		in_use = sp.sp_written / seg;
		full = (u->vu_total + u->vu_pinned_total + seg - 1) / seg + 1;
		*high = MIN(*high, free_segs + in_use > full ? free_segs + in_use - full : 0);
	}
	return free_segs;
}

/* The fullest victim worth moving, in percent, with @free_segs free. */
static unsigned clean_util_max(uint64_t free_segs)
{
	return free_segs < 2 ? CLEAN_UTIL_PRESSED : CLEAN_UTIL_MAX;
}

/*
 * (1) Up to CLEAN_VICTIMS victims into @victims; the blocks to move
 * (clean_movable, @raw). The first @recent of vu_recent are not taken.
 */
static uint64_t clean_choose(struct vol *v, uint32_t delta, bool greedy, bool raw,
			     unsigned util_max, unsigned recent, uint64_t budget, uint64_t *victims,
			     unsigned *n, bool *held)
{
	struct vol_usage *u = &v->v_usage;
	uint64_t nseg = v->v_geo.lg_nsegments, seg_blocks = v->v_geo.lg_seg_blocks, total = 0;

	*n = 0;
	while (*n < CLEAN_VICTIMS) {
		uint64_t best = UINT64_MAX;
		double best_score = 0;

		for (uint64_t s = 0; s < nseg; s++) {
			uint64_t live = clean_movable(u, s, raw);
			double util = (double)live / (double)seg_blocks, score;
			bool taken = false;

			if (!live || live * 100 > seg_blocks * util_max || total + live > budget)
				continue;
			for (unsigned i = 0; i < *n && !taken; i++)
				taken = victims[i] == s;
			/* scanned whole by the last step: what it left is dirty
			 * in the delta this commit writes, and empties then */
			for (unsigned i = 0; i < recent && !taken; i++)
				taken = u->vu_recent[i] == s;
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
		total += clean_movable(u, best, raw);
	}
	return total;
}

bool vol_clean_worthwhile(void *ctx)
{
	struct vol *v = ctx;
	struct vol_usage *u = &v->v_usage;
	uint64_t nseg = v->v_geo.lg_nsegments, seg_blocks = v->v_geo.lg_seg_blocks;
	uint64_t free_segs;
	unsigned util_max;
	bool some = false, raw;

	if (v->v_read_only || !u->vu_live)
		return false;
	free_segs = clean_free_segments(v, NULL, NULL);
	util_max = clean_util_max(free_segs);
	raw = clean_raw_allowed(v, free_segs); /* as vol_clean would */
	cmutex_lock(&u->vu_lock);
	for (uint64_t s = 0; s < nseg && !some; s++) {
		uint64_t movable = clean_movable(u, s, raw);

		/* one the cleaner could empty (or empty, unless a snapshot's) */
		some = (movable || !vol_seg_snap(u->vu_snap, s)) &&
		       movable * 100 <= seg_blocks * util_max && log_seg_in_use(v->v_log, s);
	}
	cmutex_unlock(&u->vu_lock);
	atomic_store(&u->vu_short, true); /* protection yields (usage.c) */
	if (some)			  /* the next commit cleans, whatever the watermarks say */
		atomic_store(&v->v_clean_urgent, true);
	return some;
}

void vol_clean_watermarks(struct vol *v, uint32_t low, uint32_t high)
{
	atomic_store(&v->v_clean_low, low);
	atomic_store(&v->v_clean_high, high);
}

/* Whether the cleaner runs now: the watermarks' hysteresis. */
static bool clean_wanted(struct vol *v, uint64_t free_segs, uint64_t low, uint64_t high)
{
	struct vol_usage *u = &v->v_usage;
	/* urgent: a reservation fell short; clean to the high mark */
	bool urgent = atomic_exchange(&v->v_clean_urgent, false);

	if (!u->vu_cleaning && (urgent || free_segs < low)) {
		u->vu_cleaning = true;
		u->vu_again_free = free_segs;
		u->vu_again_txns = atomic_load(&v->v_txn_ends);
		SYNC_POINT("vol.clean.start");
	} else if (free_segs >= high && u->vu_cleaning) {
		u->vu_cleaning = false;
		SYNC_POINT("vol.clean.done");
	}
	return u->vu_cleaning;
}

/*
 * Nothing (more) to move: the cleaner stops. A commit that comes anyway
 * tries again if free segments are under the low watermark, but it asks
 * for no commit of its own (vol_clean_again) until a transaction has
 * ended since: never a loop of commits that move nothing.
 */
static void clean_stop(struct vol *v)
{
	v->v_usage.vu_stalled = true;
	v->v_usage.vu_stall_txns = atomic_load(&v->v_txn_ends);
	if (v->v_usage.vu_cleaning) {
		v->v_usage.vu_cleaning = false;
		SYNC_POINT("vol.clean.done");
	}
}

bool vol_clean_again(void *ctx)
{
	struct vol *v = ctx;
	struct vol_usage *u = &v->v_usage;
	uint64_t free_segs, txns, low, high;
	bool was;

	if (v->v_read_only || !u->vu_live)
		return false;
	if (u->vu_stalled && atomic_load(&v->v_txn_ends) == u->vu_stall_txns)
		return false; /* stopped for want of progress, and nothing changed since */
	free_segs = clean_free_segments(v, &low, &high);
	was = u->vu_cleaning;
	if (!clean_wanted(v, free_segs, low, high))
		return false;
	txns = atomic_load(&v->v_txn_ends);
	if (was && free_segs <= u->vu_again_free && txns == u->vu_again_txns) {
		/* the last step gained no segment and nothing was written
		 * meanwhile (a full volume would compact its own map blocks
		 * forever): the background waits for writes */
		clean_stop(v);
		return false;
	}
	u->vu_again_free = free_segs;
	u->vu_again_txns = txns;
	return true;
}

/*
 * The snapshots whose blocks this run may move by address (once
 * clean_raw_allowed), sorted into @cr: none while an open elsewhere
 * reads one of them (it could not be re-rooted: the copies would stay
 * twice, and what they left would not empty), none if the list cannot
 * be had. Whether there are any.
 */
static bool clean_snaps(struct clean_run *cr)
{
	struct vol *v = cr->cr_vol;
	struct vol_usage *u = &v->v_usage;
	bool busy = false;

	cmutex_lock(&u->vu_lock);
	cr->cr_nsnaps = u->vu_snap_deltas.uv_n;
	cr->cr_snaps = cr->cr_nsnaps ? malloc(cr->cr_nsnaps * sizeof(uint64_t)) : NULL;
	if (cr->cr_snaps)
		memcpy(cr->cr_snaps, u->vu_snap_deltas.uv_v, cr->cr_nsnaps * sizeof(uint64_t));
	else
		cr->cr_nsnaps = 0;
	for (size_t i = 0; i < u->vu_snap_keys.uv_n && !busy; i++)
		busy = bdev_pin_held(v->v_bdev, u->vu_snap_keys.uv_v[i]) != 0;
	cmutex_unlock(&u->vu_lock);
	if (busy) {
		free(cr->cr_snaps);
		cr->cr_snaps = NULL;
		cr->cr_nsnaps = 0;
	}
	vol_snaps_sort(cr->cr_snaps, cr->cr_nsnaps);
	return cr->cr_nsnaps != 0;
}

/*
 * (2) What the logs of a run moving @live blocks take besides the moves'
 * own reservations: headers and summaries for the most the moves' costs
 * add up to (a block of the translation's own tree costs its path), the
 * translation's upper map blocks and the super root; and those blocks.
 */
static uint64_t clean_log_room(struct vol *v, uint64_t live)
{
	uint64_t payload =
	    live * MAX(vol_move_worst(v), 1 + (uint64_t)v->v_dat_height_max) + vol_dat_upper(v) + 1;

	return vol_log_overhead(v, payload) + vol_dat_upper(v) + 1;
}

int vol_clean(struct vol *v, uint32_t delta, const struct vol_clean_ops *ops, uint64_t *reserved)
{
	/* the moved blocks are dirty in the cache beside the delta's own:
	 * half of what one transaction may book */
	uint64_t budget =
	    MIN((uint64_t)CLEAN_BUDGET_MAX, MAX(v->v_buffer_limit / (2 * vol_move_worst(v)), 1));
	struct clean_run cr = {.cr_vol = v, .cr_delta = delta, .cr_ops = ops, .cr_budget = budget};
	uint64_t free_segs, victims[CLEAN_VICTIMS], base = 0, live, low, high;
	bool held = false, greedy, raw, stuck[CLEAN_VICTIMS] = {false};
	unsigned n, util_max, scanned = 0, whole, recent;
	int err = 0;

	*reserved = 0;
	if (v->v_read_only || !v->v_usage.vu_live)
		return 0;
	/* scanned whole by the last step: kept out of this one only (kept
	 * for good, once the log reused them they were never victims again) */
	recent = v->v_usage.vu_nrecent;
	v->v_usage.vu_nrecent = 0;
	free_segs = clean_free_segments(v, &low, &high);
	if (!clean_wanted(v, free_segs, low, high))
		return 0;
	greedy = free_segs < 2 || v->v_clean_policy == VOL_CLEAN_GREEDY;
	util_max = clean_util_max(free_segs);
	/* snapshots' blocks move only with room to spare: they free nothing
	 * until the re-root */
	raw = clean_raw_allowed(v, free_segs) && clean_snaps(&cr);
	live = clean_choose(v, delta, greedy, raw, util_max, recent, budget, victims, &n, &held);
	if (!n && held) {
		/* victims held only for recovery: move the checkpoint slots on */
		for (int i = 0; i < 2 && !err; i++)
			err = vol_checkpoint(v);
		if (!err)
			live = clean_choose(v, delta, greedy, raw, util_max, recent, budget,
					    victims, &n, &held);
	}
	/* (2) the logs the moved blocks may take, for the victims' live
	 * blocks: fewer victims when that does not fit (on a small volume
	 * the cleaner's part of the kept reserve is a few segments) */
	cr.cr_room = log_space_cleaner_room(v->v_log);
	for (; n; live -= clean_movable(&v->v_usage, victims[--n], raw)) {
		base = clean_log_room(v, live);
		if (base <= cr.cr_room && !log_space_reserve(v->v_log, base, LOG_RES_FREEING))
			break;
	}
	if (!n) {
		clean_stop(v); /* nothing to move, or no room even to move */
		free(cr.cr_snaps);
		return 0;
	}
	cr.cr_budget = live; /* what the logs were reserved for */
	cr.cr_reserved = base;
	SYNC_POINT("vol.clean.victims");
	for (; scanned < n && !err && !cr.cr_full; scanned++) {
		uint64_t before = cr.cr_moved;
		bool room = !cr.cr_raw_full;

		err = log_seg_scan(v->v_log, victims[scanned], clean_block, &cr);
		/* nothing to move there, not a snapshot's block passed over
		 * for want of room (that one moves once space comes back) */
		stuck[scanned] = cr.cr_moved == before && room && !cr.cr_raw_full;
	}
	*reserved = cr.cr_reserved;
	whole = scanned && (cr.cr_full || err) ? scanned - 1 : scanned; /* the last cut short */
	for (unsigned i = 0; i < whole; i++) {
		uint64_t s = victims[i];

		v->v_usage.vu_recent[v->v_usage.vu_nrecent++] = s;
		if (stuck[i] && vol_seg_snap(v->v_usage.vu_snap, s)) /* (1): till a recount */
			__atomic_fetch_or(&v->v_usage.vu_stuck[s / 64], 1ull << (s % 64),
					  __ATOMIC_RELAXED);
	}
	free(cr.cr_snaps);
	/* what was dirtied is written; the rest stays for a later run */
	if (err)
		log_warn("vol: cleaning in delta %" PRIu32 " stopped: %d", delta, err);
	if (err || !cr.cr_moved)
		clean_stop(v); /* no progress: no commit of its own for the next step */
	else
		v->v_usage.vu_stalled = false;
	cmutex_lock(&v->v_usage.vu_lock);
	v->v_usage.vu_cleaned += scanned;
	v->v_usage.vu_moved += cr.cr_moved;
	v->v_usage.vu_raw_moved += cr.cr_raw_moved;
	v->v_usage.vu_clean_read += (uint64_t)scanned * v->v_geo.lg_seg_blocks;
	cmutex_unlock(&v->v_usage.vu_lock);
	return 0;
}

/*
 * usage.c - segment usage: live blocks per segment, and giving the
 * segments that hold none back to the log.
 *
 * A block is live while the durable state names it: a data, map or
 * owner-table block some entry or record points at, or the super root.
 * vu_live[s] counts the live blocks of segment s. It is built at open by
 * walking the durable state (vol_count_durable), then kept by the
 * commit: every block it adds to the log is born, every block a map
 * change of it leaves behind (an entry overwritten or cleared, a root
 * replaced, a subtree a truncate unlinks, the previous super root) is
 * gone (bmap_change.bc_gone). Both lists are applied only once the
 * commit is durable, so the counts always describe the durable state.
 *
 * A segment whose count falls to 0 is a candidate; after each commit
 * (and its checkpoint, if it wrote one) every candidate is offered to
 * the log (log_seg_release), which refuses those recovery could still
 * need (log_space.c); they stay candidates and are offered again after
 * the next commit; when under a quarter of the segments are free and
 * some are held only for recovery, two checkpoints are written at once
 * so that they can go. Before a segment is released its tracked reads are
 * drained (buf_track_reuse_begin, seed 004): a reader holding an old
 * address in it finishes first, and one arriving meanwhile is told to
 * resolve its address again.
 *
 * A failed commit wrote nothing durable: its born blocks are forgotten
 * but kept in vu_unborn, since the trees it built are kept (commit.c
 * (4)) and may name them; when a later change leaves such a block behind
 * it was never counted, so it is not subtracted. Its gone list is kept
 * too: those blocks leave the durable state with the commit that makes
 * the kept trees durable. An address no tree ever names (the failed
 * commit's super root) stays noted until the log takes it again: the
 * block born there counts, and its leaving is subtracted. A segment the
 * failed commit wrote in may hold nothing else, and no change empties
 * it: the next commit that succeeds makes it a candidate
 * (vu_failed_segs).
 *
 * Snapshots (snap.c) keep blocks the state has left. vu_snap marks the
 * segments that may hold a block a snapshot names; a block left behind
 * in such a segment moves from vu_live to vu_pinned instead of going
 * if it may be a snapshot's, and a segment is a candidate only when both
 * counts are 0. Which blocks may be is the liveness rule read at death:
 * a block's life [birth, death) must hold a snapshot's delta, and it
 * dies after every snapshot taken so far, so one written after the
 * newest (vu_snap_newest; the birth is its translation entry's) goes as
 * in any segment; one whose birth is not known (a block of the
 * translation's own tree, a super root) stays. Creating a snapshot marks
 * every segment holding a block of the state it pins
 * (vol_usage_snap_taken: a pass over the segments, whatever the volume
 * holds) and raises vu_snap_newest, both under vu_lock, so a settle sees
 * both or neither. The open counts both exactly (a walk of the state and
 * of each snapshot, vol_count_durable); so does the commit after a
 * snapshot is deleted (vol_usage_recount_at). In between, vu_pinned may
 * count too much (a block of a deleted snapshot, a block of the
 * translation's tree), never too little. The cleaner
 * moves a snapshot's blocks out of a marked segment too (clean.c (5)):
 * each copy is born pinned in a segment marked at once
 * (vol_usage_born_pinned), and the old one stays counted until the
 * recount of the snapshots' re-root lets it go.
 *
 * Recent checkpoints. Every commit's super root names the one before it
 * (sroot.c), and a state stays whole, readable as it was, until one of
 * the segments that held its blocks is reused. vu_emptied[s] is the
 * delta whose commit left segment s empty: states older than it may have
 * blocks there, that one and newer do not. So releasing s makes every
 * state before vu_emptied[s] unreadable, and the super root says so:
 * sr_readable_from is the oldest delta whose state is whole. A segment
 * is released in two steps, so that the claim is durable before the
 * segment can be written again: the first offer raises vu_readable_from
 * (the next super root's value; the segment is "retiring"), and only an
 * offer after a super root carrying it is durable releases it. A
 * candidate emptied less than v_protect_ms ago is held, not retired,
 * unless space is needed (fewer free segments than the cleaner's low
 * watermark, or a reservation fell short: vu_short); then every held
 * candidate goes, before the cleaner moves anything.
 *
 * The segment usage file (suf.c) keeps these counts on disk: each
 * commit writes the entries of the segments it changed, and an open
 * reads them (vol_usage_read_file) instead of walking every map, unless
 * the super root says the file is not current; then it walks
 * (vol_usage_count), and the next commit writes every entry. The file
 * leaves out the blocks of its own tree (vu_suf_here) and the super
 * root, which the open adds back; a count that changes outside a
 * commit's blocks marks its segment in vu_suf_dirty.
 *
 * Invariants
 *   (1) Between commits, vu_live[s] is the number of blocks of the
 *       durable state in segment s, and vu_total their sum (vol_check
 *       recounts them).
 *   (2) A segment with a live block is in use in the log: only a count
 *       of 0 makes a candidate, and the count of a released segment can
 *       rise again only when the log has taken it again.
 *   (3) vu_born, vu_gone, vu_cand and vu_unborn are the commit thread's
 *       (and vol_open's, before any commit).
 *   (4) Every block a snapshot names lies in a segment marked in vu_snap
 *       and is counted, in vu_live if the state names it too, else in
 *       vu_pinned: so its segment is never released. vu_pinned[s] is at
 *       least the number of such blocks the state does not name.
 *   (5) A segment is released only when the durable super root's
 *       sr_readable_from is at least vu_emptied[s]: no state a durable
 *       super root calls readable has a block in a segment the log may
 *       reuse, whatever the crash.
 *
 * Lock order: vu_lock is held only to change or read counts; under it
 * only the log's l_space_lock is taken (vol_usage_check asks whether a
 * segment is in use), never the other way round.
 */
#include "vol/vol_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define VU_UNBORN      ((void *)1) /* written by a failed commit, maybe named */
#define VU_FORGOTTEN   ((void *)2) /* such a block, left behind since */
#define VU_UNPROTECTED UINT64_MAX  /* vu_emptied_ms: holds nothing to protect */

static int vol_u64_cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

void vol_snaps_sort(uint64_t *deltas, size_t n)
{
	if (n)
		qsort(deltas, n, sizeof(*deltas), vol_u64_cmp);
}

int vol_u64vec_push(struct vol_u64vec *uv, uint64_t x)
{
	if (uv->uv_n == uv->uv_cap) {
		size_t cap = uv->uv_cap ? uv->uv_cap * 2 : 256;
		uint64_t *v = realloc(uv->uv_v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		uv->uv_v = v;
		uv->uv_cap = cap;
	}
	uv->uv_v[uv->uv_n++] = x;
	return 0;
}

/* Push @x onto @a and @y onto @b, both or neither. */
static int vol_u64vec_push2(struct vol_u64vec *a, uint64_t x, struct vol_u64vec *b, uint64_t y)
{
	int err = vol_u64vec_push(a, x);

	if (!err && (err = vol_u64vec_push(b, y)))
		a->uv_n--;
	return err;
}

/* Does segment @seg hold no block the state or a snapshot names? (vu_lock) */
static bool vol_seg_empty(const struct vol_usage *u, uint64_t seg)
{
	return !u->vu_live[seg] && !u->vu_pinned[seg];
}

/* Mark segment @seg's entry in the usage file as maybe wrong (vu_lock). */
static void vol_suf_dirty(struct vol_usage *u, uint64_t seg)
{
	u->vu_suf_dirty[seg / 64] |= 1ull << (seg % 64);
}

static void vol_cand_set(struct vol_usage *u, uint64_t seg, bool on)
{
	if (on)
		u->vu_cand[seg / 64] |= 1ull << (seg % 64);
	else
		u->vu_cand[seg / 64] &= ~(1ull << (seg % 64));
}

/*
 * Make @seg a candidate if it holds nothing and the log has it in use; a new candidate was emptied
 * by the durable delta (states before it may have blocks there).
 */
static void vol_cand_mark(struct vol *v, uint64_t seg, uint64_t now_ms)
{
	struct vol_usage *u = &v->v_usage;

	if (!vol_seg_empty(u, seg) || !log_seg_in_use(v->v_log, seg)) {
		vol_cand_set(u, seg, false);
		return;
	}
	if (u->vu_cand[seg / 64] & (1ull << (seg % 64)))
		return; /* keeps the delta and time it was emptied at */
	vol_cand_set(u, seg, true);
	u->vu_emptied[seg] = v->v_sr.sr_delta;
	u->vu_emptied_ms[seg] = now_ms;
}

uint64_t vol_usage_readable_from(struct vol *v)
{
	struct vol_usage *u = &v->v_usage;
	uint64_t from;

	if (!u->vu_live)
		return v->v_sr.sr_readable_from;
	cmutex_lock(&u->vu_lock);
	from = MAX(u->vu_readable_from, v->v_sr.sr_readable_from);
	cmutex_unlock(&u->vu_lock);
	return from;
}

/*
 * May candidate @seg be released now? Held while the protection period
 * runs (unless @pressed); otherwise the next super root is told first,
 * and the release waits for it to be durable: invariant (5).
 */
static bool vol_cand_due(struct vol *v, uint64_t seg, uint64_t now_ms, bool pressed,
			 uint64_t *waiting, uint64_t *retiring)
{
	struct vol_usage *u = &v->v_usage;

	if (!pressed && u->vu_emptied_ms[seg] != VU_UNPROTECTED &&
	    now_ms - u->vu_emptied_ms[seg] < v->v_protect_ms) {
		(*waiting)++;
		return false;
	}
	if (u->vu_emptied[seg] <= v->v_sr.sr_readable_from)
		return true;
	cmutex_lock(&u->vu_lock);
	u->vu_readable_from = MAX(u->vu_readable_from, u->vu_emptied[seg]);
	cmutex_unlock(&u->vu_lock);
	(*waiting)++;
	(*retiring)++;
	return false;
}

int vol_checkpoint(struct vol *v)
{
	uint64_t floor = vol_usage_readable_from(v);
	int err;

	log_set_floor(v->v_log, floor);
	err = log_checkpoint(v->v_log);
	if (!err) { /* durable now, as if a super root said it: (5) */
		cmutex_lock(&v->v_sr_lock);
		v->v_sr.sr_readable_from = MAX(v->v_sr.sr_readable_from, floor);
		cmutex_unlock(&v->v_sr_lock);
	}
	return err;
}

/*
 * Offer every candidate to the log; drain its tracked reads first. The
 * number still needed by recovery only (not the head's); in @retiring,
 * those waiting for the floor to be durable.
 */
static uint64_t vol_usage_offer(struct vol *v, bool pressed, uint64_t *retiring)
{
	struct vol_usage *u = &v->v_usage;
	uint64_t n = v->v_geo.lg_nsegments, needed = 0, waiting = 0, now_ms = util_monotonic_ms();

	for (uint64_t w = 0; w < (n + 63) / 64; w++) {
		uint64_t bits = u->vu_cand[w];

		while (bits) {
			uint64_t seg = w * 64 + (uint64_t)__builtin_ctzll(bits);
			int err;

			bits &= bits - 1;
			if (!vol_seg_empty(u, seg)) { /* the log took it again */
				vol_cand_set(u, seg, false);
				continue;
			}
			if (!log_seg_in_use(v->v_log, seg)) {
				vol_cand_set(u, seg, false);
				continue;
			}
			if (vol_seg_snap(u->vu_snap, seg) && atomic_load(&u->vu_recount_at))
				continue; /* maybe a new snapshot's, not counted yet */
			if (!vol_cand_due(v, seg, now_ms, pressed, &waiting, retiring))
				continue;
			if (log_seg_needed(v->v_log, seg)) {
				needed++;
				continue; /* recovery may read it: later */
			}
			buf_track_reuse_begin(v->v_track, seg);
			err = log_seg_release(v->v_log, seg);
			buf_track_reuse_end(v->v_track, seg);
			if (!err) {
				vol_cand_set(u, seg, false);
				cmutex_lock(&u->vu_lock);
				vol_suf_dirty(u, seg); /* its entry, back to a free one's */
				__atomic_fetch_and(&u->vu_snap[seg / 64], ~(1ull << (seg % 64)),
						   __ATOMIC_RELAXED);
				__atomic_fetch_and(&u->vu_stuck[seg / 64], ~(1ull << (seg % 64)),
						   __ATOMIC_RELAXED);
				u->vu_released++;
				cmutex_unlock(&u->vu_lock);
			}
		}
	}
	cmutex_lock(&u->vu_lock);
	u->vu_waiting = waiting;
	cmutex_unlock(&u->vu_lock);
	return needed;
}

/*
 * Release what can be. The protection period yields when the cleaner
 * would otherwise start, or a reservation fell short. When space is
 * short (a quarter of what reservations may take is left, or less, or
 * that reservation) and empty segments are held only because the
 * checkpoint slots are old or the floor they wait for is not durable
 * yet, write checkpoints (two: the older slot is the one that protects
 * recovery; either carries the floor) and offer them again, rather than
 * wait for the periodic checkpoint or the next super root.
 */
void vol_usage_release(struct vol *v)
{
	struct vol_usage *u = &v->v_usage;
	bool urgent = atomic_exchange(&u->vu_short, false);
	uint64_t retiring = 0, needed, free_segs, low;
	struct log_space sp;
	bool pressed;

	log_space(v->v_log, &sp);
	free_segs = vol_clean_free_segments(v, &sp, &low, NULL);
	pressed = urgent || free_segs < low;
	needed = vol_usage_offer(v, pressed, &retiring);
	if (!needed && !retiring)
		return;
	log_space(v->v_log, &sp);
	if (!urgent && sp.sp_free > (sp.sp_total - MIN(sp.sp_kept, sp.sp_total)) / 4)
		return;
	for (int i = 0; i < 2; i++) {
		int err = vol_checkpoint(v);

		if (err) {
			log_warn("vol: checkpoint to free segments failed: %d", err);
			return;
		}
	}
	retiring = 0;
	vol_usage_offer(v, pressed, &retiring);
}

/* List a snapshot for the cleaner (vu_snap_deltas, vu_snap_keys); vu_lock. */
static void vol_usage_snap_list_locked(struct vol_usage *u, uint64_t delta, uint64_t key)
{
	if (vol_u64vec_push2(&u->vu_snap_deltas, delta, &u->vu_snap_keys, key))
		log_warn("vol: out of memory listing snapshot of delta %" PRIu64
			 ": the cleaner leaves its blocks where they are",
			 delta);
}

/*
 * The snapshots @si (@n) are all there are: listed for the cleaner, and
 * the newest of their deltas is what a block may be kept for
 * (vu_snap_newest); vu_lock.
 */
static void vol_usage_snaps_locked(struct vol_usage *u, const struct vol_snap_info *si, size_t n)
{
	u->vu_snap_deltas.uv_n = 0;
	u->vu_snap_keys.uv_n = 0;
	u->vu_snap_newest = 0;
	for (size_t i = 0; i < n; i++) {
		vol_usage_snap_list_locked(u, si[i].vsi_delta, vol_snap_reroot_key(si[i].vsi_name));
		u->vu_snap_newest = MAX(u->vu_snap_newest, si[i].vsi_delta);
	}
}

/* Take the counts of @cn (both per segment) and its snapshots; vu_lock held or no thread runs. */
static void vol_usage_take(struct vol_usage *u, uint64_t nseg, struct vol_count *cn)
{
	u->vu_total = u->vu_pinned_total = 0;
	for (uint64_t s = 0; s < nseg; s++) {
		u->vu_live[s] = cn->vcn_live[s];
		u->vu_pinned[s] = cn->vcn_pinned[s];
		u->vu_total += u->vu_live[s];
		u->vu_pinned_total += u->vu_pinned[s];
	}
	for (uint64_t w = 0; w < (nseg + 63) / 64; w++) {
		__atomic_store_n(&u->vu_snap[w], cn->vcn_snap[w], __ATOMIC_RELAXED);
		/* counted again: the cleaner may look again */
		__atomic_store_n(&u->vu_stuck[w], 0, __ATOMIC_RELAXED);
	}
	free(u->vu_snaps);
	u->vu_snaps = cn->vcn_snaps;
	u->vu_nsnaps = cn->vcn_nsnaps;
	cn->vcn_snaps = NULL;
	vol_usage_snaps_locked(u, u->vu_snaps, u->vu_nsnaps);
}

static void vol_count_free(struct vol_count *cn)
{
	free(cn->vcn_recent);
	free(cn->vcn_live);
	free(cn->vcn_pinned);
	free(cn->vcn_snap);
	free(cn->vcn_snaps);
}

/* Count the durable state and its snapshots into a new @cn; with
 * @recent, find the segments of the recent checkpoints too; with @suf
 * (zeroed), the usage file's own blocks per segment. */
static int vol_count_new(struct vol *v, struct vol_count *cn, bool recent, uint32_t *suf)
{
	uint64_t n = v->v_geo.lg_nsegments;
	int err;

	*cn = (struct vol_count){.vcn_live = calloc(n, sizeof(uint32_t)),
				 .vcn_pinned = calloc(n, sizeof(uint32_t)),
				 .vcn_snap = calloc((n + 63) / 64, sizeof(uint64_t)),
				 .vcn_recent =
				     recent ? calloc((n + 63) / 64, sizeof(uint64_t)) : NULL,
				 .vcn_suf = suf};
	err = cn->vcn_live && cn->vcn_pinned && cn->vcn_snap && (cn->vcn_recent || !recent)
		  ? vol_count_durable(v, v->v_sr_blk, &v->v_sr, cn)
		  : -ENOMEM;
	if (err)
		vol_count_free(cn);
	return err;
}

/* vol_suf_ops.so_block: a block of the usage file's tree. */
static void vol_usage_suf_block(void *arg, uint64_t pblk)
{
	struct vol *v = arg;
	uint64_t seg = vol_seg_of(v, pblk);

	v->v_usage.vu_suf_here[seg]++;
}

/* vol_suf_ops.so_entry: segment @seg's counts from the file. */
static int vol_usage_suf_entry(void *arg, uint64_t seg, const struct vol_suf_entry *e)
{
	struct vol *v = arg;
	struct vol_usage *u = &v->v_usage;

	if (!log_seg_in_use(v->v_log, seg))
		return 0; /* suf.c (2) */
	if ((uint64_t)e->se_live + e->se_pinned > v->v_geo.lg_seg_blocks ||
	    (e->se_flags & ~VOL_SUF_SNAP) || e->se_delta > v->v_sr.sr_delta) {
		log_warn("vol: segment usage entry of segment %" PRIu64 " is not one (%" PRIu32
			 " live, %" PRIu32 " pinned, delta %" PRIu32 ", flags %#" PRIx32 ")",
			 seg, e->se_live, e->se_pinned, e->se_delta, e->se_flags);
		return -EUCLEAN;
	}
	u->vu_live[seg] = e->se_live;
	u->vu_pinned[seg] = e->se_pinned;
	if (e->se_flags & VOL_SUF_SNAP)
		u->vu_snap[seg / 64] |= 1ull << (seg % 64);
	if (e->se_live || e->se_pinned)
		u->vu_age[seg] = e->se_delta;
	else
		u->vu_emptied[seg] = e->se_delta;
	return 0;
}

/*
 * The counts from the segment usage file (suf.c (1)): its entries, plus
 * the blocks of its tree and the super root, which they leave out. An
 * empty segment was emptied by the delta its entry says: held for the
 * protection period if a checkpoint still called readable may have
 * blocks there. Any error: the caller counts by a walk instead.
 */
static int vol_usage_read_file(struct vol *v, bool writable)
{
	struct vol_usage *u = &v->v_usage;
	const struct vol_suf_ops ops = {vol_usage_suf_entry, vol_usage_suf_block};
	uint64_t n = v->v_geo.lg_nsegments, now_ms = util_monotonic_ms();
	int err;

	err = vol_suf_read(v, v->v_sr.sr_suf_root, v->v_sr.sr_suf_height, &ops, v);
	if (err)
		return err;
	if (vol_pblk_valid(v, v->v_sr_blk))
		u->vu_live[vol_seg_of(v, v->v_sr_blk)]++;
	for (uint64_t s = 0; s < n; s++) {
		if ((uint64_t)u->vu_live[s] + u->vu_suf_here[s] > v->v_geo.lg_seg_blocks)
			return -EUCLEAN;
		if (!u->vu_live[s] && !u->vu_pinned[s] && u->vu_suf_here[s])
			u->vu_age[s] = (uint32_t)v->v_sr.sr_delta; /* the file's: young */
		u->vu_live[s] += u->vu_suf_here[s];
		u->vu_total += u->vu_live[s];
		u->vu_pinned_total += u->vu_pinned[s];
		if (!vol_seg_empty(u, s) || !log_seg_in_use(v->v_log, s))
			continue;
		vol_cand_set(u, s, true);
		u->vu_emptied_ms[s] =
		    writable && v->v_protect_ms && u->vu_emptied[s] > v->v_sr.sr_readable_from
			? now_ms
			: VU_UNPROTECTED;
	}
	if (writable && !v->v_protect_ms) /* no period: the past goes now */
		u->vu_readable_from = v->v_sr.sr_delta;
	return 0;
}

/* Forget what vol_usage_read_file read (per-segment arrays zeroed). */
static void vol_usage_forget(struct vol *v)
{
	struct vol_usage *u = &v->v_usage;
	uint64_t n = v->v_geo.lg_nsegments, words = (n + 63) / 64;

	memset(u->vu_live, 0, n * sizeof(*u->vu_live));
	memset(u->vu_pinned, 0, n * sizeof(*u->vu_pinned));
	memset(u->vu_age, 0, n * sizeof(*u->vu_age));
	memset(u->vu_emptied, 0, n * sizeof(*u->vu_emptied));
	memset(u->vu_suf_here, 0, n * sizeof(*u->vu_suf_here));
	memset(u->vu_snap, 0, words * sizeof(*u->vu_snap));
	memset(u->vu_stuck, 0, words * sizeof(*u->vu_stuck));
	memset(u->vu_cand, 0, words * sizeof(*u->vu_cand));
	u->vu_total = u->vu_pinned_total = 0;
	u->vu_readable_from = v->v_sr.sr_readable_from;
}

/*
 * The counts by a walk of the state, its snapshots and (with a period)
 * its recent checkpoints, as fsck does: without a current usage file,
 * and for a snapshot's or a checkpoint's open (which needs the snapshot
 * table the walk reads). A writable open then has every entry of the
 * file written by the next commit.
 */
static int vol_usage_count(struct vol *v, bool writable)
{
	struct vol_usage *u = &v->v_usage;
	uint64_t n = v->v_geo.lg_nsegments;
	struct vol_count cn;
	int err;

	/* the recent checkpoints matter only if the period may keep them;
	 * the walk counts the usage file's own blocks apart (vu_suf_here) */
	err = vol_count_new(v, &cn, writable && v->v_protect_ms, u->vu_suf_here);
	if (err)
		return err;
	vol_usage_take(u, n, &cn);
	/*
	 * When each empty segment was emptied is not known: as if by the
	 * recovered delta, if a recent checkpoint walked holds a block there;
	 * else only checkpoints older than those walked may, and the floor
	 * rises to the oldest walked (made durable by the slot below) before
	 * such a segment goes.
	 */
	for (uint64_t s = 0, now_ms = util_monotonic_ms(); s < n; s++) {
		vol_cand_mark(v, s, now_ms);
		if (cn.vcn_recent && vol_seg_snap(u->vu_cand, s) &&
		    !vol_seg_snap(cn.vcn_recent, s)) {
			u->vu_emptied[s] = cn.vcn_recent_from;
			u->vu_emptied_ms[s] = VU_UNPROTECTED;
		}
		if (writable) /* free ones too: an entry of a past use may be left */
			vol_suf_dirty(u, s);
	}
	if (cn.vcn_recent)
		u->vu_readable_from = MAX(u->vu_readable_from, cn.vcn_recent_from);
	else if (writable) /* no period: the segments go now, and with them the past */
		u->vu_readable_from = v->v_sr.sr_delta;
	vol_count_free(&cn);
	return 0;
}

static void vol_usage_free(struct vol_usage *u)
{
	free(u->vu_live);
	free(u->vu_pinned);
	free(u->vu_snap);
	free(u->vu_stuck);
	free(u->vu_age);
	free(u->vu_cand);
	free(u->vu_snaps);
	free(u->vu_snap_deltas.uv_v);
	free(u->vu_snap_keys.uv_v);
	free(u->vu_emptied);
	free(u->vu_emptied_ms);
	free(u->vu_suf_here);
	free(u->vu_suf_dirty);
	free(u->vu_suf_born_n);
	free(u->vu_suf_gone_n);
	free(u->vu_suf_kept_n);
	free(u->vu_born.uv_v);
	free(u->vu_gone.uv_v);
	free(u->vu_gone_birth.uv_v);
	free(u->vu_moved_to.uv_v);
	free(u->vu_moved_birth.uv_v);
	free(u->vu_suf_born.uv_v);
	free(u->vu_suf_gone.uv_v);
	free(u->vu_failed_segs.uv_v);
	vol_table_clear(&u->vu_unborn, NULL);
	*u = (struct vol_usage){0};
}

int vol_usage_open(struct vol *v, bool writable)
{
	struct vol_usage *u = &v->v_usage;
	uint64_t n = v->v_geo.lg_nsegments;
	int err;

	u->vu_dat_next = v->v_sr.sr_dat_next;
	u->vu_ckpt_root = v->v_sr.sr_ckpt_root;
	u->vu_ckpt_height = v->v_sr.sr_ckpt_height;
	u->vu_live = calloc(n, sizeof(*u->vu_live));
	u->vu_pinned = calloc(n, sizeof(*u->vu_pinned));
	u->vu_snap = calloc((n + 63) / 64, sizeof(*u->vu_snap));
	u->vu_stuck = calloc((n + 63) / 64, sizeof(*u->vu_stuck));
	u->vu_age = calloc(n, sizeof(*u->vu_age));
	u->vu_cand = calloc((n + 63) / 64, sizeof(*u->vu_cand));
	u->vu_emptied = calloc(n, sizeof(*u->vu_emptied));
	u->vu_emptied_ms = calloc(n, sizeof(*u->vu_emptied_ms));
	u->vu_suf_here = calloc(n, sizeof(*u->vu_suf_here));
	u->vu_suf_dirty = calloc((n + 63) / 64, sizeof(*u->vu_suf_dirty));
	u->vu_suf_born_n = calloc(n, sizeof(*u->vu_suf_born_n));
	u->vu_suf_gone_n = calloc(n, sizeof(*u->vu_suf_gone_n));
	u->vu_suf_kept_n = calloc(n, sizeof(*u->vu_suf_kept_n));
	u->vu_snap_newest = UINT64_MAX; /* till a count or the table says */
	u->vu_proj_newest = UINT64_MAX;
	err = u->vu_live && u->vu_pinned && u->vu_snap && u->vu_stuck && u->vu_age && u->vu_cand &&
		      u->vu_emptied && u->vu_emptied_ms && u->vu_suf_here && u->vu_suf_dirty &&
		      u->vu_suf_born_n && u->vu_suf_gone_n && u->vu_suf_kept_n
		  ? cmutex_init(&u->vu_lock)
		  : -ENOMEM;
	if (err)
		goto out_free;
	if (v->v_snapshot_beside) /* the live state is the writer's: no counts */
		return 0;
	u->vu_sr_blk = v->v_sr_blk;
	u->vu_sr_delta = v->v_sr.sr_delta;
	u->vu_readable_from = v->v_sr.sr_readable_from;
	err = -ENOENT;
	if (!v->v_snapshot && v->v_sr.sr_suf_current) {
		err = vol_usage_read_file(v, writable);
		if (err) {
			log_warn("vol: the segment usage file of delta %" PRIu64
				 " cannot be read (%d); counting the segments",
				 v->v_sr.sr_delta, err);
			vol_usage_forget(v);
		}
	}
	if (err) {
		u->vu_open_walked = true;
		err = vol_usage_count(v, writable);
	}
	if (err)
		goto out_lock;
	if (!writable)
		return 0;
	/* name the recovered state in both slots' chains, and the floor,
	 * before releasing */
	err = vol_checkpoint(v);
	if (err)
		goto out_lock;
	{
		uint64_t retiring = 0;

		vol_usage_offer(v, false, &retiring); /* what no recent checkpoint needs */
	}
	vol_usage_release(v);
	return 0;
out_lock:
	cmutex_destroy(&u->vu_lock);
out_free:
	vol_usage_free(u);
	return err;
}

void vol_usage_close(struct vol *v)
{
	struct vol_usage *u = &v->v_usage;

	if (!u->vu_live)
		return;
	cmutex_destroy(&u->vu_lock);
	vol_usage_free(u);
}

void vol_usage_snap_taken(struct vol *v, bool reroot, uint64_t *sr_blk, uint64_t *sr_delta)
{
	struct vol_usage *u = &v->v_usage;

	cmutex_lock(&u->vu_lock);
	if (!reroot) /* a snapshot of that state: what it holds may be kept from now on */
		u->vu_snap_newest = MAX(u->vu_snap_newest, u->vu_sr_delta);
	u->vu_mark_gen++;		     /* a recount walking now keeps these marks */
	atomic_fetch_add(&u->vu_marking, 1); /* and one after, till the record is durable */
	for (uint64_t s = 0; s < v->v_geo.lg_nsegments; s++)
		if (!vol_seg_empty(u, s) && !vol_seg_snap(u->vu_snap, s)) {
			__atomic_fetch_or(&u->vu_snap[s / 64], 1ull << (s % 64), __ATOMIC_RELAXED);
			vol_suf_dirty(u, s);
		}
	*sr_blk = u->vu_sr_blk;
	*sr_delta = u->vu_sr_delta;
	cmutex_unlock(&u->vu_lock);
}

int vol_usage_snap_taken_at(struct vol *v, uint64_t delta, uint64_t txn_delta)
{
	struct vol_usage *u = &v->v_usage;
	int err = 0;

	cmutex_lock(&u->vu_lock);
	if (delta < u->vu_readable_from) {
		err = -ENOENT; /* its segments may be going: too late */
	} else {
		/* pending before any mark shows: an offer that sees a mark
		 * (after this lock) sees the recount pending too. The
		 * transaction holds txn_delta open: not too late. */
		vol_usage_recount_at(v, txn_delta);
		u->vu_snap_newest = MAX(u->vu_snap_newest, delta);
		u->vu_mark_gen++;
		atomic_fetch_add(&u->vu_marking, 1);
		/* its blocks are in segments holding live blocks, or emptied
		 * after it (usage.c (5)): emptied at or before it, or retaken
		 * since, a segment holds none */
		for (uint64_t s = 0; s < v->v_geo.lg_nsegments; s++)
			if ((!vol_seg_empty(u, s) ||
			     (log_seg_in_use(v->v_log, s) && u->vu_emptied[s] > delta)) &&
			    !vol_seg_snap(u->vu_snap, s)) {
				__atomic_fetch_or(&u->vu_snap[s / 64], 1ull << (s % 64),
						  __ATOMIC_RELAXED);
				vol_suf_dirty(u, s);
			}
	}
	cmutex_unlock(&u->vu_lock);
	return err;
}

void vol_usage_snap_listed(struct vol *v, uint64_t delta, const char *name)
{
	struct vol_usage *u = &v->v_usage;

	cmutex_lock(&u->vu_lock);
	vol_usage_snap_list_locked(u, delta, vol_snap_reroot_key(name));
	cmutex_unlock(&u->vu_lock);
}

void vol_usage_snaps_read(struct vol *v, const struct vol_snap_info *si, size_t n)
{
	struct vol_usage *u = &v->v_usage;

	cmutex_lock(&u->vu_lock);
	vol_usage_snaps_locked(u, si, n);
	cmutex_unlock(&u->vu_lock);
}

void vol_usage_snap_done(struct vol *v)
{
	atomic_fetch_sub(&v->v_usage.vu_marking, 1);
}

void vol_usage_snap_done_at(struct vol *v, uint64_t delta)
{
	struct vol_usage *u = &v->v_usage;

	cmutex_lock(&u->vu_lock);
	u->vu_marking_late++;
	u->vu_marking_until = MAX(u->vu_marking_until, delta);
	cmutex_unlock(&u->vu_lock);
}

void vol_usage_recount_at(struct vol *v, uint64_t delta)
{
	uint64_t at = atomic_load(&v->v_usage.vu_recount_at);

	while ((!at || at < delta) &&
	       !atomic_compare_exchange_weak(&v->v_usage.vu_recount_at, &at, delta))
		;
}

/*
 * Count again what snapshots keep (one was deleted), from the durable
 * state the counts describe. Commit thread. On failure the counts stay
 * as they were: too high, never too low, and the next commit tries again.
 */
static void vol_usage_recount(struct vol *v)
{
	struct vol_usage *u = &v->v_usage;
	uint64_t n = v->v_geo.lg_nsegments, gen, newest;
	struct vol_count cn;
	bool keep;
	int err;

	cmutex_lock(&u->vu_lock);
	gen = u->vu_mark_gen;
	cmutex_unlock(&u->vu_lock);
	err = vol_count_new(v, &cn, false, NULL);
	if (err) {
		log_warn("vol: counting the snapshots' blocks failed: %d; will try again", err);
		vol_usage_recount_at(v, v->v_sr.sr_delta + 1);
		return;
	}
	cmutex_lock(&u->vu_lock);
	for (uint64_t s = 0; s < n; s++)
		if (cn.vcn_live[s] != u->vu_live[s]) {
			log_warn("vol: segment %" PRIu64 ": %" PRIu32
				 " live blocks, counted %" PRIu32,
				 s, u->vu_live[s], cn.vcn_live[s]);
			break;
		}
	/* a snapshot marked segments during the walk, or before it for a
	 * record the walk may not have found durable: its marks stay, and so
	 * do the blocks they pinned (the walk counts none of that record's) */
	keep = u->vu_mark_gen != gen || atomic_load(&u->vu_marking);
	if (keep) {
		for (uint64_t w = 0; w < (n + 63) / 64; w++)
			cn.vcn_snap[w] |= __atomic_load_n(&u->vu_snap[w], __ATOMIC_RELAXED);
		for (uint64_t s = 0; s < n; s++)
			cn.vcn_pinned[s] = MAX(cn.vcn_pinned[s], u->vu_pinned[s]);
	}
	for (uint64_t s = 0; s < n; s++) /* the usage file's entries to write again */
		if (cn.vcn_live[s] != u->vu_live[s] || cn.vcn_pinned[s] != u->vu_pinned[s] ||
		    vol_seg_snap(cn.vcn_snap, s) != vol_seg_snap(u->vu_snap, s))
			vol_suf_dirty(u, s);
	newest = u->vu_snap_newest;
	vol_usage_take(u, n, &cn);
	if (keep) /* and so does what it pins: (4) */
		u->vu_snap_newest = MAX(u->vu_snap_newest, newest);
	u->vu_suf_stale = false; /* the counts are the walk's */
	for (uint64_t s = 0, now_ms = util_monotonic_ms(); s < n; s++)
		vol_cand_mark(v, s, now_ms); /* vu_emptied: under vu_lock */
	cmutex_unlock(&u->vu_lock);
	vol_count_free(&cn);
}

int vol_usage_born(struct vol *v, uint64_t pblk)
{
	return vol_u64vec_push(&v->v_usage.vu_born, pblk);
}

/* Mark segment @seg as one that may hold a snapshot's block (vu_lock). */
static void vol_usage_mark_locked(struct vol_usage *u, uint64_t seg)
{
	if (!vol_seg_snap(u->vu_snap, seg)) {
		__atomic_fetch_or(&u->vu_snap[seg / 64], 1ull << (seg % 64), __ATOMIC_RELAXED);
		vol_suf_dirty(u, seg);
	}
}

int vol_usage_moved(struct vol *v, uint64_t pblk, uint64_t birth)
{
	struct vol_usage *u = &v->v_usage;
	int err = 0;

	cmutex_lock(&u->vu_lock);
	if (vol_usage_may_keep(u, birth))
		vol_usage_mark_locked(u, vol_seg_of(v, pblk));
	else
		err = vol_u64vec_push2(&u->vu_moved_to, pblk, &u->vu_moved_birth, birth);
	cmutex_unlock(&u->vu_lock);
	return err;
}

int vol_usage_born_pinned(struct vol *v, uint64_t pblk)
{
	struct vol_usage *u = &v->v_usage;
	int err;

	/* marked at once: the translation sweep of this very commit must not
	 * take its entry for reusable (dat.c), nor may an offer release it */
	cmutex_lock(&u->vu_lock);
	vol_usage_mark_locked(u, vol_seg_of(v, pblk));
	cmutex_unlock(&u->vu_lock);
	/* born and left behind: counted at the settle, then pinned (its
	 * segment is marked, its birth taken for unknown), which the usage
	 * file's entry projects too */
	err = vol_u64vec_push(&u->vu_born, pblk);
	if (!err && (err = vol_u64vec_push2(&u->vu_gone, pblk, &u->vu_gone_birth, 0)))
		u->vu_born.uv_n--;
	return err;
}

/* A block at @pblk the commit left behind was never counted: forget it. */
static bool vol_usage_forgotten(struct vol_usage *u, uint64_t pblk, int *err)
{
	if (vol_table_get(&u->vu_unborn, pblk, 0) != VU_UNBORN)
		return false;
	*err = vol_table_set(&u->vu_unborn, pblk, 0, VU_FORGOTTEN); /* not subtracted */
	return true;
}

int vol_usage_gone(struct vol *v, uint64_t pblk, uint64_t birth)
{
	struct vol_usage *u = &v->v_usage;
	int err;

	if (vol_usage_forgotten(u, pblk, &err))
		return err;
	return vol_u64vec_push2(&u->vu_gone, pblk, &u->vu_gone_birth, birth);
}

int vol_usage_born_suf(struct vol *v, uint64_t pblk)
{
	return vol_u64vec_push(&v->v_usage.vu_suf_born, pblk);
}

int vol_usage_gone_suf(struct vol *v, uint64_t pblk)
{
	struct vol_usage *u = &v->v_usage;
	int err;

	if (vol_usage_forgotten(u, pblk, &err))
		return err;
	return vol_u64vec_push(&u->vu_suf_gone, pblk);
}

/* A block the commit wrote at @pblk, now durable: counted (vu_lock). Its segment. */
static uint64_t vol_usage_count_born(struct vol *v, uint64_t pblk)
{
	struct vol_usage *u = &v->v_usage;
	uint64_t seg = vol_seg_of(v, pblk);

	/* a failed commit's address the log took again: counted now */
	if (u->vu_unborn.vt_n && vol_table_get(&u->vu_unborn, pblk, 0) == VU_UNBORN &&
	    vol_table_set(&u->vu_unborn, pblk, 0, VU_FORGOTTEN))
		log_warn("vol: block %" PRIu64 " may be counted too low", pblk);
	u->vu_live[seg]++;
	u->vu_total++;
	return seg;
}

/*
 * The blocks of the usage file's own tree the commit wrote and left
 * behind (vu_lock): counted, and in vu_suf_here, never pinned (no
 * snapshot reads the file).
 */
static void vol_usage_settle_suf(struct vol *v, uint64_t now_ms)
{
	struct vol_usage *u = &v->v_usage;

	for (size_t i = 0; i < u->vu_suf_born.uv_n; i++)
		u->vu_suf_here[vol_usage_count_born(v, u->vu_suf_born.uv_v[i])]++;
	for (size_t i = 0; i < u->vu_suf_gone.uv_n; i++) {
		uint64_t pblk = u->vu_suf_gone.uv_v[i], seg = vol_seg_of(v, pblk);

		if (!vol_pblk_valid(v, pblk) || !u->vu_live[seg] || !u->vu_suf_here[seg]) {
			log_warn("vol: segment usage block %" PRIu64 " left behind, not counted",
				 pblk);
			continue;
		}
		u->vu_live[seg]--;
		u->vu_total--;
		u->vu_suf_here[seg]--;
		if (vol_seg_empty(u, seg))
			vol_cand_mark(v, seg, now_ms);
	}
	u->vu_suf_born.uv_n = 0;
	u->vu_suf_gone.uv_n = 0;
}

void vol_usage_settle(struct vol *v)
{
	struct vol_usage *u = &v->v_usage;
	uint64_t at, now_ms = util_monotonic_ms();

	cmutex_lock(&u->vu_lock);
	for (size_t i = 0; i < u->vu_born.uv_n; i++)
		u->vu_age[vol_usage_count_born(v, u->vu_born.uv_v[i])] = (uint32_t)v->v_sr.sr_delta;
	for (size_t i = 0; i < u->vu_gone.uv_n; i++) {
		uint64_t pblk = u->vu_gone.uv_v[i], seg = vol_seg_of(v, pblk);
		uint64_t birth = u->vu_gone_birth.uv_v[i];

		if (pblk < v->v_geo.lg_seg_start || seg >= v->v_geo.lg_nsegments) {
			log_warn("vol: a map named block %" PRIu64 ", outside the segments", pblk);
			continue; /* damage: never counted */
		}
		if (!u->vu_live[seg]) {
			log_warn("vol: block %" PRIu64 " left behind twice (segment %" PRIu64
				 " counts none)",
				 pblk, seg);
			continue;
		}
		u->vu_total--;
		u->vu_live[seg]--;
		if (vol_seg_snap(u->vu_snap, seg) && vol_usage_may_keep(u, birth)) {
			/* maybe a snapshot's: (4) */
			u->vu_pinned[seg]++;
			u->vu_pinned_total++;
			if (birth > u->vu_proj_newest) /* one taken since the projection */
				vol_suf_dirty(u, seg);
		} else if (vol_seg_empty(u, seg)) {
			vol_cand_mark(v, seg, now_ms);
		}
	}
	/* moves a snapshot taken since may read once re-rooted */
	for (size_t i = 0; i < u->vu_moved_to.uv_n; i++)
		if (vol_usage_may_keep(u, u->vu_moved_birth.uv_v[i]))
			vol_usage_mark_locked(u, vol_seg_of(v, u->vu_moved_to.uv_v[i]));
	vol_usage_settle_suf(v, now_ms);
	/* the kept trees are durable now, at new addresses: what a failed
	 * commit wrote is named by nothing */
	for (size_t i = 0; i < u->vu_failed_segs.uv_n; i++)
		vol_cand_mark(v, u->vu_failed_segs.uv_v[i], now_ms);
	u->vu_failed_segs.uv_n = 0;
	if (u->vu_marking_late && v->v_sr.sr_delta >= u->vu_marking_until) {
		/* the records of creations whose commit failed are durable now */
		atomic_fetch_sub(&u->vu_marking, u->vu_marking_late);
		u->vu_marking_late = 0;
		vol_usage_recount_at(v, v->v_sr.sr_delta); /* below: the marks they kept */
	}
	u->vu_sr_blk = v->v_sr_blk;
	u->vu_sr_delta = v->v_sr.sr_delta;
	u->vu_dat_next = v->v_sr.sr_dat_next;
	u->vu_ckpt_root = v->v_sr.sr_ckpt_root;
	u->vu_ckpt_height = v->v_sr.sr_ckpt_height;
	cmutex_unlock(&u->vu_lock);
	u->vu_born.uv_n = 0;
	u->vu_gone.uv_n = u->vu_gone_birth.uv_n = 0;
	u->vu_moved_to.uv_n = u->vu_moved_birth.uv_n = 0;
	u->vu_proj_newest = UINT64_MAX;
	at = atomic_load(&u->vu_recount_at);
	if (at && v->v_sr.sr_delta >= at) {
		atomic_compare_exchange_strong(&u->vu_recount_at, &at, 0);
		vol_usage_recount(v);
	}
	vol_usage_release(v);
}

void vol_usage_fail(struct vol *v)
{
	struct vol_usage *u = &v->v_usage;

	/* the usage file's blocks it wrote: no different from the others */
	for (size_t i = 0; i < u->vu_suf_born.uv_n; i++)
		if (vol_u64vec_push(&u->vu_born, u->vu_suf_born.uv_v[i]))
			log_warn("vol: out of memory noting segment usage block %" PRIu64
				 " of a failed commit",
				 u->vu_suf_born.uv_v[i]);
	u->vu_suf_born.uv_n = 0;
	for (size_t i = 0; i < u->vu_born.uv_n; i++) {
		uint64_t pblk = u->vu_born.uv_v[i];

		if (vol_table_set(&u->vu_unborn, pblk, 0, VU_UNBORN))
			log_warn("vol: out of memory noting block %" PRIu64
				 " of a failed commit; its segment's count may stay high",
				 pblk);
		/* a segment holding only such blocks empties by no change:
		 * looked at by the next commit that succeeds */
		if (vol_u64vec_push(&u->vu_failed_segs, vol_seg_of(v, pblk)))
			log_warn("vol: out of memory noting segment of block %" PRIu64
				 " of a failed commit; it may stay in use until the next open",
				 pblk);
	}
	u->vu_born.uv_n = 0;
	/* a block it wrote and left behind at once (a raw move's copy, born
	 * pinned: vol_usage_born_pinned) was never counted: not subtracted */
	size_t kept = 0;

	for (size_t i = 0; i < u->vu_gone.uv_n; i++) {
		uint64_t pblk = u->vu_gone.uv_v[i];

		if (vol_table_get(&u->vu_unborn, pblk, 0) == VU_UNBORN) {
			(void)vol_table_set(&u->vu_unborn, pblk, 0, VU_FORGOTTEN);
		} else {
			u->vu_gone_birth.uv_v[kept] = u->vu_gone_birth.uv_v[i];
			u->vu_gone.uv_v[kept++] = pblk;
		}
	}
	u->vu_gone.uv_n = u->vu_gone_birth.uv_n = kept;
	/* its moves come again with the next commit */
	u->vu_moved_to.uv_n = u->vu_moved_birth.uv_n = 0;
	u->vu_proj_newest = UINT64_MAX;
}

int vol_usage_kept(struct vol *v, struct vol_count *kept, uint64_t *sr_blk)
{
	struct vol_usage *u = &v->v_usage;
	uint64_t n = v->v_geo.lg_nsegments, words = (n + 63) / 64;

	*kept = (struct vol_count){.vcn_live = calloc(n, sizeof(uint32_t)),
				   .vcn_pinned = calloc(n, sizeof(uint32_t)),
				   .vcn_snap = calloc(words, sizeof(uint64_t))};
	if (!kept->vcn_live || !kept->vcn_pinned || !kept->vcn_snap) {
		vol_count_free(kept);
		return -ENOMEM;
	}
	*sr_blk = 0;
	if (!u->vu_live)
		return 0;
	cmutex_lock(&u->vu_lock);
	memcpy(kept->vcn_live, u->vu_live, n * sizeof(uint32_t));
	memcpy(kept->vcn_pinned, u->vu_pinned, n * sizeof(uint32_t));
	for (uint64_t w = 0; w < words; w++)
		kept->vcn_snap[w] = __atomic_load_n(&u->vu_snap[w], __ATOMIC_RELAXED);
	*sr_blk = u->vu_sr_blk;
	cmutex_unlock(&u->vu_lock);
	return 0;
}

void vol_usage_kept_free(struct vol_count *kept)
{
	vol_count_free(kept);
}

uint64_t vol_usage_check(struct vol *v, const struct vol_count *cn, const struct vol_count *kept,
			 uint64_t readable_from, void (*problem)(void *arg, const char *msg),
			 void *arg)
{
	struct vol_usage *u = &v->v_usage;
	uint64_t bad = 0;
	char msg[160];

	if (!u->vu_live)
		return 0;
	cmutex_lock(&u->vu_lock);
	for (uint64_t s = 0; s < v->v_geo.lg_nsegments; s++) {
		const char *what = NULL;

		if (cn->vcn_live[s] != kept->vcn_live[s]) {
			snprintf(msg, sizeof(msg),
				 "segment %" PRIu64 ": %" PRIu32
				 " live blocks, usage says %" PRIu32,
				 s, cn->vcn_live[s], kept->vcn_live[s]);
			what = msg;
		} else if ((cn->vcn_live[s] || cn->vcn_pinned[s]) && !log_seg_in_use(v->v_log, s)) {
			snprintf(msg, sizeof(msg),
				 "segment %" PRIu64 " holds %" PRIu32 " live and %" PRIu32
				 " snapshot blocks but is free",
				 s, cn->vcn_live[s], cn->vcn_pinned[s]);
			what = msg;
		} else if (vol_seg_snap(cn->vcn_snap, s) && !vol_seg_snap(kept->vcn_snap, s)) {
			snprintf(msg, sizeof(msg),
				 "segment %" PRIu64 " holds snapshot blocks but is not marked so",
				 s);
			what = msg;
		} else if (!log_seg_in_use(v->v_log, s) && u->vu_emptied[s] > readable_from) {
			snprintf(msg, sizeof(msg),
				 "segment %" PRIu64 " is free, but checkpoint %" PRIu64
				 " whose blocks it held is still called readable (from %" PRIu64
				 ")",
				 s, u->vu_emptied[s] - 1, readable_from);
			what = msg;
		} else if (cn->vcn_pinned[s] > kept->vcn_pinned[s]) {
			snprintf(msg, sizeof(msg),
				 "segment %" PRIu64 ": %" PRIu32
				 " blocks only snapshots name, usage keeps %" PRIu32,
				 s, cn->vcn_pinned[s], kept->vcn_pinned[s]);
			what = msg;
		}
		if (what) {
			bad++;
			if (problem)
				problem(arg, what);
		}
	}
	cmutex_unlock(&u->vu_lock);
	return bad;
}

/*
 * Dead blocks in the segments a snapshot marked (vu_lock): the cleaner
 * leaves those segments to the snapshots, so their dead blocks come back
 * only once the snapshots go. The head's unwritten rest is not dead.
 * With @marked, also the marked segments.
 */
static uint64_t vol_snap_dead_locked(struct vol *v, const struct log_space *sp, uint64_t *marked)
{
	struct vol_usage *u = &v->v_usage;
	uint64_t seg = v->v_geo.lg_seg_blocks, n = v->v_geo.lg_nsegments, dead = 0;

	for (uint64_t w = 0; w < (n + 63) / 64; w++) { /* a word of marks at a time */
		uint64_t bits = __atomic_load_n(&u->vu_snap[w], __ATOMIC_RELAXED);

		while (bits) {
			uint64_t s = w * 64 + (uint64_t)__builtin_ctzll(bits), held, written;

			bits &= bits - 1;
			if (s >= n)
				continue;
			if (marked)
				(*marked)++;
			if (!log_seg_in_use(v->v_log, s))
				continue;
			held = (uint64_t)u->vu_live[s] + u->vu_pinned[s];
			written = s == sp->sp_head_seg ? seg - MIN(sp->sp_head_room, seg) : seg;
			if (written > held)
				dead += written - held;
		}
	}
	return dead;
}

uint64_t vol_free_blocks(struct vol *v)
{
	struct vol_usage *u = &v->v_usage;
	uint64_t seg = v->v_geo.lg_seg_blocks, taken, held, low;
	uint64_t sum = (seg * VOL_LOG_ENTRY_BYTES + v->v_block_size - 1) / v->v_block_size;
	struct log_space sp;

	if (v->v_snapshot)
		return 0; /* nothing can be written to a snapshot */
	log_space(v->v_log, &sp);
	(void)vol_clean_free_segments(v, &sp, &low, NULL);
	if (!u->vu_live)
		return sp.sp_free; /* no counts: only what no segment holds */
	cmutex_lock(&u->vu_lock);
	/* live, pinned, and dead where the cleaner does not go */
	held = u->vu_total + u->vu_pinned_total + vol_snap_dead_locked(v, &sp, NULL);
	cmutex_unlock(&u->vu_lock);
	taken = held + sp.sp_reserved + sp.sp_kept + low * seg;
	if (sp.sp_total <= taken)
		return 0;
	/* every segment holds at least one log: its header and summary */
	return (sp.sp_total - taken) / seg * (seg - 1 - sum) + (sp.sp_total - taken) % seg;
}

void vol_usage(struct vol *v, struct vol_usage_stats *us)
{
	struct vol_usage *u = &v->v_usage;
	uint64_t ckpt_root;
	unsigned ckpt_height;
	uint64_t low, high;
	struct log_space sp;

	*us = (struct vol_usage_stats){0};
	log_space(v->v_log, &sp);
	(void)vol_clean_free_segments(v, &sp, &low, &high);
	cmutex_lock(&u->vu_lock);
	us->vus_live_blocks = u->vu_total;
	for (uint64_t s = 0; s < v->v_geo.lg_nsegments; s++)
		us->vus_live_segments += !vol_seg_empty(u, s);
	us->vus_released = u->vu_released;
	us->vus_cleaned = u->vu_cleaned;
	us->vus_clean_read = u->vu_clean_read;
	us->vus_clean_low = (uint32_t)low;
	us->vus_clean_high = (uint32_t)high;
	us->vus_written = u->vu_written;
	us->vus_moved = u->vu_moved;
	us->vus_raw_moved = u->vu_raw_moved;
	us->vus_reroots = u->vu_reroots;
	us->vus_pinned_blocks = u->vu_pinned_total;
	us->vus_open_walked = u->vu_open_walked;
	us->vus_dat_blocks = (u->vu_dat_next + vol_dat_per_block(v->v_block_size) - 1) /
			     vol_dat_per_block(v->v_block_size);
	us->vus_snap_dead_blocks = vol_snap_dead_locked(v, &sp, &us->vus_snap_segments);
	ckpt_root = u->vu_ckpt_root;
	ckpt_height = u->vu_ckpt_height;
	cmutex_unlock(&u->vu_lock);
	us->vus_ckpt_blocks = vol_ckpt_nblocks(v, ckpt_root, ckpt_height);
}

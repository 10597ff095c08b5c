/*
 * commit.c - the commit (segment constructor): delta_ops.do_commit.
 *
 * Writes delta D, closed and without operations, while the front end
 * works in D+1. The order is the on-disk order, each block added to the
 * log only once everything it points at has an address:
 *
 *   (1) truncates of D: prune the owners' maps (the map path of the
 *       first index truncated, or the whole map: bmap_prune) and drop the
 *       cached map blocks of the subtrees unlinked; then punches of D:
 *       clear their map entries
 *   (1b) first a failed commit's raw moves, written again
 *       (vol_commit_raw_carried); then, when free segments are short, the
 *       cleaner (clean.c) dirties the current blocks of its victims in D,
 *       unchanged, and notes each as a move (vc_moves): this commit
 *       writes it elsewhere under the same virtual number. A block only
 *       snapshots keep it moves at once, by address (vol_commit_raw: no
 *       buffer, no tree of the state names it), its translation entry
 *       alone changed; the new copy is born pinned, the old one stays
 *       counted until the snapshots are re-rooted (snap.c), which a
 *       durable commit with raw moves asks for
 *   (2) data: every buffer dirty in D (buf_delta_take until none is
 *       left; a fork's shadow like any other): a new virtual number
 *       (dat_alloc), Writing, log_build_add_tagged (the summary names
 *       the number), Written, its map entry := the number (the old
 *       number dies first: bc_gone, dat_kill; then a level-1 map block
 *       is dirtied), then its translation entry (born in D). A move
 *       keeps its number and changes only its translation entry. Map,
 *       owner-table and translation blocks taken here (requeued by a
 *       failed commit, or dirtied by this one) wait for their turn.
 *   (3) owners' map blocks, level 1 up: each the same way, then its
 *       parent's entry (dirtying a block one level up) or, for a root,
 *       the owner's record (dirtying an owner-table block); a map block
 *       the cleaner moved and nothing changed since only moves
 *   (4) the owner-table blocks (data of owner 1, whose map entries they
 *       set), then owner 1's map blocks level by level; its root goes in
 *       the super root
 *   (4b) the translation blocks (owner 3's data: every entry this
 *       commit set is final by now), then the translation's map blocks
 *       level by level; they name physical blocks (no number of their
 *       own), and the root goes in the super root
 *   (4b') every VOL_CKPT_BATCH commits, the checkpoint file's entries
 *       of the checkpoints noted since (ckpt.c: each commit notes the
 *       one it replaces), then its map blocks, physical like the
 *       translation's; the root goes in the super root
 *   (4c) the segment usage entries of the segments this commit changed
 *       (suf.c: every block it wrote or left behind is known by now but
 *       those of this step and the super root, which the entries leave
 *       out), then the file's map blocks, physical like the
 *       translation's; the root goes in the super root
 *   (5) the super root, last, then log_build_finish: durable. A delta
 *       with nothing else to write reserves its super root from the kept
 *       reserve (vol_commit_own_sroot); if even that is spent it writes
 *       nothing and settles as it is (vol_commit_settle_empty)
 *   (6) every written buffer: buf_commit_end; every N commits a
 *       checkpoint; then the segment usage takes the blocks the commit
 *       wrote and those its map changes left behind (usage.c), and
 *       segments left with no live block go back to the log
 *
 *   On error: log_build_abort, every written buffer back to Dirty
 *   (buf_write_cancel: a shadow has no owner to record an error on, and
 *   delta_sync reports the commit's error), buf_delta_requeue(D, D+1)
 *   and the punches to D+1, so D+1's commit carries everything; the
 *   cleaner's moves too, written or not (v_moves), each a new version
 *   instead if the front end changed its block meanwhile
 *   (vol_commit_unchanged); a number linked without its translation
 *   entry is held (dat_hold) until a commit succeeds.
 *
 * Invariants
 *   (1) A map or owner-table block is added to the log only after every
 *       block it points at was: levels are processed bottom up, and a
 *       block's entries are set only by the level below it (data for
 *       level 1, owners' roots for owner-table blocks). A translation
 *       block is added only after every entry of the commit is set: the
 *       translation's class comes last, and placing its blocks changes
 *       only its own (physical) map.
 *   (2) Every block the commit dirtied or took is in vc_done (written) or
 *       in vc_meta (to write), referenced, until the commit ends, and
 *       vc_seen holds each map or owner-table block at most once.
 *   (3) No buffer of D becomes Clean (evictable) before the log is
 *       durable and the map generation was bumped (bmap.c (2)).
 *   (4) The in-memory map state a failed commit built (v_trees, v_otab)
 *       is kept: it matches the cached map blocks, which stay dirty and
 *       are requeued with the data; the next commit finishes the job. The
 *       durable super root (v_sr) changes only after a finish succeeded.
 *
 * Runs on the delta system's thread only, as a busy thread (vol.c (3)):
 * if the cache runs dry it waits, it never waits for a commit.
 */
#include "vol/vol_internal.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "util/syncpoint.h"

#define VOL_TAKE_BATCH 64

enum {
	VOL_CLASS_OWNERS = 0,
	VOL_CLASS_OTAB = 1,
	VOL_CLASS_DAT = 2,
	VOL_CLASS_SUF = 3,
	VOL_CLASS_CKPT = 4,
	VOL_NCLASSES
};

struct vol_bufvec {
	struct buf **bv_bufs;
	size_t bv_n;
	size_t bv_cap;
};

/* One commit's state; the commit thread's alone. */
struct vol_commit {
	struct vol *vc_vol;
	uint32_t vc_delta;
	struct log_builder *vc_lb;
	struct bmap_change vc_change;
	struct vol_bufvec vc_done; /* Written, to settle at the end */
	uint64_t vc_sr_blk;	   /* where the super root went */
	uint64_t vc_own_res;	   /* reserved by the commit itself: vol_commit_own */
	/* map blocks by class and level to write (owner-table blocks: OTAB, 0;
	 * translation blocks: DAT, 0) */
	struct vol_bufvec vc_meta[VOL_NCLASSES][VOL_MAX_LEVELS + 1];
	struct vol_table vc_seen;  /* the blocks in vc_meta */
	struct vol_table vc_moves; /* (owner, index) -> struct vol_move: blocks the cleaner moves */
	void *vc_scratch;	   /* a block: the content a carried move leaves, a raw move's */
	struct vol_raw_moves vc_raw;	/* raw moves it made: carried should it fail */
	bool vc_rooted;			/* every snapshot was re-rooted since the last raw moves */
	bool vc_moved;			/* it moved a block by its entry (sr_moved) */
	uint64_t vc_payload;		/* blocks added to the log */
	uint64_t vc_consumed;		/* log blocks, headers and summaries included */
	struct vol_suf_commit vc_suf;	/* the segment usage entries it writes (suf.c) */
	struct vol_ckpt_commit vc_ckpt; /* the checkpoint file's (ckpt.c) */
};

/* ---- bookkeeping ----------------------------------------------------------- */

static int vol_bufvec_push(struct vol_bufvec *bv, struct buf *b)
{
	if (bv->bv_n == bv->bv_cap) {
		size_t cap = bv->bv_cap ? bv->bv_cap * 2 : 64;
		struct buf **bufs = realloc(bv->bv_bufs, cap * sizeof(*bufs));

		if (!bufs)
			return -ENOMEM;
		bv->bv_bufs = bufs;
		bv->bv_cap = cap;
	}
	bv->bv_bufs[bv->bv_n++] = b;
	return 0;
}

static void vol_bufvec_release(struct vol_bufvec *bv)
{
	for (size_t i = 0; i < bv->bv_n; i++)
		buf_put(bv->bv_bufs[i]);
	free(bv->bv_bufs);
	*bv = (struct vol_bufvec){0};
}

static bool vol_is_meta(struct buf *b)
{
	return !bmap_direct_root(buf_owner(b)) || bmap_is_node(buf_index(b));
}

/* Keep map or owner-table block @b (taking over a reference) for its level. */
static int vol_commit_keep(struct vol_commit *vc, struct buf *b)
{
	uint64_t owner = buf_owner(b), index = buf_index(b);
	int class = owner == VOL_OTAB_OWNER   ? VOL_CLASS_OTAB
		    : owner == VOL_DAT_OWNER  ? VOL_CLASS_DAT
		    : owner == VOL_SUF_OWNER  ? VOL_CLASS_SUF
		    : owner == VOL_CKPT_OWNER ? VOL_CLASS_CKPT
					      : VOL_CLASS_OWNERS;
	unsigned level = bmap_is_node(index) ? bmap_node_level(index) : 0;
	int err;

	assert(level <= VOL_MAX_LEVELS && (level || class != VOL_CLASS_OWNERS));
	err = vol_table_put(&vc->vc_seen, owner, index, b);
	if (!err)
		err = vol_bufvec_push(&vc->vc_meta[class][level], b);
	if (err)
		buf_put(b);
	return err;
}

#define VOL_MOVE_NONE ((void *)1) /* vc_moves: no longer a move (the table has no removal) */

/* A block the cleaner dirtied unchanged, to move (clean.c). */
struct vol_move {
	uint64_t vm_vblk; /* its number, which stays */
	uint64_t vm_pblk; /* where it was (durable until this move is) */
	bool vm_carried;  /* from a failed commit: the front end may have changed it since */
	bool vm_written;  /* moved by this commit: kept should the commit fail */
};

/* vol_clean_ops.co_move */
static int vol_commit_move_note(void *arg, uint64_t owner, uint64_t index, uint64_t vblk,
				uint64_t pblk)
{
	struct vol_commit *vc = arg;
	struct vol_move *m = malloc(sizeof(*m)), *old;
	int err;

	if (!m)
		return -ENOMEM;
	*m = (struct vol_move){vblk, pblk, false, false};
	old = vol_table_get(&vc->vc_moves, owner, index);
	err = vol_table_set(&vc->vc_moves, owner, index, m);
	if (err)
		free(m);
	else if (old != VOL_MOVE_NONE)
		free(old); /* carried from a failed commit, and found again */
	return err;
}

/*
 * The move of (@owner, @index), if it is one still to write: the cleaner
 * dirtied it and nothing changed it since (a map block whose entries
 * changed is a new version, with a new number). Taken out of vc_moves.
 */
static struct vol_move *vol_commit_move_take(struct vol_commit *vc, uint64_t owner, uint64_t index)
{
	struct vol_move *m = vol_table_get(&vc->vc_moves, owner, index);

	if (!m || m == VOL_MOVE_NONE || m->vm_written)
		return NULL;
	(void)vol_table_set(&vc->vc_moves, owner, index, VOL_MOVE_NONE);
	return m;
}

/* bmap_change.bc_note: the commit dirtied map or owner-table block @b. */
static int vol_commit_note(void *arg, struct buf *b)
{
	struct vol_commit *vc = arg;

	free(vol_commit_move_take(vc, buf_owner(b), buf_index(b))); /* changed: not a move */
	assert(buf_state(b) == BUF_DIRTY); /* never changed once written: (1) */
	if (vol_table_get(&vc->vc_seen, buf_owner(b), buf_index(b)))
		return 0;
	buf_hold(b);
	return vol_commit_keep(vc, b);
}

/*
 * bmap_change.bc_gone: a map change of the commit leaves behind the
 * block @entry named: a virtual block dies (dat.c), and its address
 * leaves the counts; an address of the translation's own tree leaves
 * them at once. On an error the entry is not changed (bmap.c (7)).
 */
static int vol_commit_gone(void *arg, uint64_t owner, uint64_t entry)
{
	struct vol_commit *vc = arg;
	uint64_t pblk = entry, birth = 0; /* a block of a tree named by address: not known */
	int err = 0;

	SYNC_POINT("vol.commit.gone");
	if (bmap_virtual(owner))
		err = dat_kill(vc->vc_vol, &vc->vc_change, entry, &pblk, &birth);
	if (err == -EUCLEAN) {
		/* a damaged entry (logged): what it named stays counted until a
		 * recount, asked for at this commit's settle (no super root
		 * calls the segment usage file current till then); the change
		 * goes on */
		vc->vc_vol->v_usage.vu_suf_stale = true;
		vol_usage_recount_at(vc->vc_vol, vc->vc_delta);
		return 0;
	}
	if (!err && pblk)
		err = owner == VOL_SUF_OWNER ? vol_usage_gone_suf(vc->vc_vol, pblk)
					     : vol_usage_gone(vc->vc_vol, pblk, birth);
	return err;
}

/* bmap_change.bc_root: an owner's record names its tree's new root. */
static int vol_commit_root(void *arg, const struct bmap_tree *t)
{
	struct vol_commit *vc = arg;
	struct vol_rec rec = {t->bt_root, t->bt_root_height, VOL_REC_IN_USE};

	if (!bmap_direct_root(t->bt_owner))
		return 0; /* the super root names it (vol_commit_sroot) */
	return otab_store(vc->vc_vol, &vc->vc_change, t->bt_owner, &rec);
}

/* A taken map or owner-table block (@b's reference is the take's). */
static int vol_commit_take_meta(struct vol_commit *vc, struct buf *b)
{
	if (vol_table_get(&vc->vc_seen, buf_owner(b), buf_index(b))) {
		buf_put(b);
		return 0;
	}
	return vol_commit_keep(vc, b);
}

/* The map of @owner as this commit builds it (from its record at first). */
static int vol_commit_tree(struct vol_commit *vc, uint64_t owner, struct bmap_tree **out)
{
	struct vol *v = vc->vc_vol;
	struct bmap_tree *t = vol_table_get(&v->v_trees, owner, 0);
	struct vol_rec rec;
	int err;

	if (t) {
		*out = t;
		return 0;
	}
	err = otab_load(v, owner, &rec);
	if (err)
		return err;
	t = malloc(sizeof(*t));
	if (!t)
		return -ENOMEM;
	*t = (struct bmap_tree){owner, rec.vr_root, rec.vr_height, rec.vr_height, false};
	err = vol_table_put(&v->v_trees, owner, 0, t);
	if (err)
		free(t);
	*out = t;
	return err;
}

/* ---- raw moves ---------------------------------------------------------------- */

static int vol_raw_push(struct vol_raw_moves *r, const struct vol_raw_move *m)
{
	if (r->rms_n == r->rms_cap) {
		size_t cap = r->rms_cap ? r->rms_cap * 2 : 64;
		struct vol_raw_move *nv = realloc(r->rms_v, cap * sizeof(*nv));

		if (!nv)
			return -ENOMEM;
		r->rms_v = nv;
		r->rms_cap = cap;
	}
	r->rms_v[r->rms_n++] = *m;
	return 0;
}

/*
 * Write a snapshot's block again by address (@m): read the copy at
 * rm_from, add it to the log under its number and point its translation
 * entry at the new copy, born pinned. No buffer: no tree of the state
 * names the block, and the cache's blocks are the state's. The copy at
 * rm_from stays counted: the snapshots read it through their records'
 * translation until they are re-rooted (snap.c). Noted in vc_raw first,
 * so that a failure carries it to the next commit, which writes it again
 * from rm_from (still counted: no recount comes between) and leaves
 * behind the failed commit's copy, which was never counted.
 */
static int vol_commit_raw(struct vol_commit *vc, const struct vol_raw_move *m)
{
	struct vol *v = vc->vc_vol;
	uint64_t pblk, old, birth;
	int err = vol_raw_push(&vc->vc_raw, m);

	if (err)
		return err;
	if (!vc->vc_scratch && !(vc->vc_scratch = malloc(v->v_block_size)))
		return -ENOMEM;
	SYNC_POINT("vol.commit.raw");
	err = bdev_read(v->v_bdev, m->rm_from, 1, vc->vc_scratch);
	if (!err)
		err = log_build_add_tagged(vc->vc_lb, m->rm_owner, m->rm_index, m->rm_vblk,
					   m->rm_flags, vc->vc_scratch, &pblk);
	if (!err)
		err = vol_usage_born_pinned(v, pblk);
	if (!err)
		err = dat_move(v, &vc->vc_change, m->rm_vblk, pblk, &old, &birth);
	vc->vc_payload += !err;
	vc->vc_moved = true; /* tried, at least: a failure fails the commit anyway */
	return err;
}

/* vol_clean_ops.co_move_raw */
static int vol_commit_raw_note(void *arg, uint64_t owner, uint64_t index, uint64_t vblk,
			       uint32_t flags, uint64_t pblk)
{
	struct vol_raw_move m = {owner, index, vblk, flags, pblk};

	return vol_commit_raw(arg, &m);
}

/* A failed commit's raw moves, first thing: its translation entries name
 * copies that were never durable. */
static int vol_commit_raw_carried(struct vol_commit *vc)
{
	struct vol_raw_moves carried = vc->vc_vol->v_raw_moves;
	int err = 0;

	vc->vc_vol->v_raw_moves = (struct vol_raw_moves){0};
	if (carried.rms_n)
		SYNC_POINT("vol.commit.raw_carried");
	for (size_t i = 0; i < carried.rms_n && !err; i++)
		err = vol_commit_raw(vc, &carried.rms_v[i]);
	/* not written: still to write (vc_raw has those that were) */
	for (size_t i = vc->vc_raw.rms_n; err && i < carried.rms_n; i++)
		if (vol_raw_push(&vc->vc_raw, &carried.rms_v[i]))
			log_err("vol: out of memory carrying a snapshot block's move: "
				"virtual block %" PRIu64 " may name a block never written",
				carried.rms_v[i].rm_vblk);
	free(carried.rms_v);
	return err;
}

/* ---- writing one block ------------------------------------------------------ */

/*
 * Take @b through Writing to Written, adding it to the log unless !@add
 * (a punched block: nothing to write). @b goes to vc_done with a
 * reference of its own. *pblk: its address. *mine false: @b left D
 * (forked to the open delta after it was taken) and was not touched.
 * With @same (a carried move: vol_commit_unchanged), @b is written only
 * if its data, fixed once Writing, is @same: else -ESTALE, nothing done.
 */
static int vol_commit_write(struct vol_commit *vc, struct buf *b, uint32_t flags, bool add,
			    uint64_t tag, const void *same, uint64_t *pblk, bool *mine)
{
	int err;

	*mine = false;
	*pblk = 0;
	err = buf_write_begin(b);
	if (err == -EBUSY)
		return 0; /* a modifier of the open delta holds it: forked */
	if (err)
		return err;
	if (buf_delta(b) != vc->vc_delta)
		goto out_cancel; /* forked to the open delta before we got here */
	if (same && memcmp(buf_data(b), same, vc->vc_vol->v_block_size)) {
		err = -ESTALE; /* written since the move was noted */
		goto out_cancel;
	}
	if (add) {
		err = log_build_add_tagged(vc->vc_lb, buf_owner(b), buf_index(b), tag, flags,
					   buf_data(b), pblk);
		if (!err)
			err = buf_owner(b) == VOL_SUF_OWNER ? vol_usage_born_suf(vc->vc_vol, *pblk)
							    : vol_usage_born(vc->vc_vol, *pblk);
		if (err)
			goto out_cancel;
	}
	buf_write_end(b, 0);
	err = vol_bufvec_push(&vc->vc_done, b);
	if (err)
		goto out_cancel; /* Written -> Dirty: write_cancel takes both */
	buf_hold(b);		 /* vc_done's */
	vc->vc_payload += add;
	*mine = true;
	return 0;
out_cancel:
	buf_write_cancel(b);
	return err;
}

/*
 * May move @m of block @b still be one? A carried move's block came back
 * dirty with the failed commit's delta, which the front end may have
 * changed since: a punch or a truncate of it (recorded until its commit
 * ends) clears its map entry, a write changes its content. Either makes
 * it a new version, which that change's transaction reserved for. False
 * if one is recorded, or if the content to compare with cannot be had
 * (a new version is never wrong). Else *same is the content the move
 * leaves (durable at vm_pblk until the move is), for vol_commit_write to
 * compare @b's with; NULL for a move noted by this commit, or of a map
 * block (only the commit changes those, and a change is no move:
 * vol_commit_note).
 */
static bool vol_commit_unchanged(struct vol_commit *vc, struct buf *b, const struct vol_move *m,
				 const void **same)
{
	struct vol *v = vc->vc_vol;

	*same = NULL;
	if (!m->vm_carried || vol_is_meta(b))
		return true;
	if (vol_punch_pending(&v->v_punches, buf_owner(b), buf_index(b)))
		return false;
	if (!vc->vc_scratch && !(vc->vc_scratch = malloc(v->v_block_size)))
		return false;
	/* its segment goes only once the move is durable: no tracked read */
	if (!vol_pblk_valid(v, m->vm_pblk) || bdev_read(v->v_bdev, m->vm_pblk, 1, vc->vc_scratch))
		return false;
	*same = vc->vc_scratch;
	return true;
}

/*
 * Write block @b, moved by the cleaner (@m): same number, new address;
 * only its translation entry changes. @m goes back to vc_moves, written
 * (a failure carries it), or still to write if @b was forked. @b's
 * reference stays the caller's. -ESTALE: a carried move of a block
 * changed since (vol_commit_unchanged), @m freed and @b untouched: the
 * caller writes it as a new version.
 */
static int vol_commit_moved(struct vol_commit *vc, struct buf *b, uint32_t flags,
			    struct vol_move *m)
{
	const void *same;
	uint64_t pblk, old, birth;
	bool mine;
	int err;

	if (!vol_commit_unchanged(vc, b, m, &same)) {
		free(m);
		return -ESTALE;
	}
	err = vol_commit_write(vc, b, flags, true, m->vm_vblk, same, &pblk, &mine);
	if (err == -ESTALE) {
		free(m);
		return err;
	}
	if (!err && !mine) /* forked: its shadow, taken later, is the move */
		return vol_table_set(&vc->vc_moves, buf_owner(b), buf_index(b), m);
	if (!err)
		err = dat_move(vc->vc_vol, &vc->vc_change, m->vm_vblk, pblk, &old, &birth);
	vc->vc_moved = true;
	/* a snapshot may name it (usage.c (4)): once it dies, the copy it
	 * would be re-rooted to must stay (the liveness rule, check.c) */
	if (!err)
		err = vol_usage_moved(vc->vc_vol, pblk, birth);
	if (!err && old)
		err = vol_usage_gone(vc->vc_vol, old, birth);
	if (err) {
		free(m);
		return err;
	}
	/* kept: should the commit fail, the block comes back, still to move */
	m->vm_written = true;
	return vol_table_set(&vc->vc_moves, buf_owner(b), buf_index(b), m);
}

/*
 * Write block @b of @owner's tree with a new number (dat_alloc: its
 * summary entry names it): *entry is what the tree is to name it by
 * (@b's address in the translation's own tree), *pblk where it went.
 * The caller links *entry, then sets its translation entry
 * (vol_commit_born): a failure in between leaves no current entry that
 * nothing names, and a number the kept map may name with no entry set,
 * which vol_commit_born holds. *entry 0: not written (forked, or a
 * punched block, !@add).
 */
static int vol_commit_new(struct vol_commit *vc, struct buf *b, uint64_t owner, uint32_t flags,
			  bool add, uint64_t *entry, uint64_t *pblk)
{
	uint64_t vblk = 0;
	bool mine;
	int err;

	*entry = 0;
	if (add && bmap_virtual(owner) && (err = dat_alloc(vc->vc_vol, &vblk)))
		return err;
	err = vol_commit_write(vc, b, flags, add, vblk, NULL, pblk, &mine);
	if (err || !mine || !add)
		return err;
	*entry = bmap_virtual(owner) ? vblk : *pblk;
	return 0;
}

/*
 * The translation entry of a block vol_commit_new wrote, once linked
 * (@err: the link's error). If the link or the entry failed, the
 * number is held (dat_hold): the map may name it, and the sweep would
 * take it for reusable.
 */
static int vol_commit_born(struct vol_commit *vc, uint64_t owner, uint64_t entry, uint64_t pblk,
			   int err)
{
	if (!bmap_virtual(owner))
		return err;
	if (!err)
		err = dat_set_new(vc->vc_vol, &vc->vc_change, entry, pblk);
	if (err)
		dat_hold(vc->vc_vol, entry);
	return err;
}

/* (2) one taken data buffer; @b's reference is the take's. */
static int vol_commit_data_block(struct vol_commit *vc, struct buf *b)
{
	struct vol *v = vc->vc_vol;
	uint64_t owner = buf_owner(b), index = buf_index(b), vblk, pblk;
	struct vol_move *m;
	struct bmap_tree *t;
	bool zeroed;
	int err;

	SYNC_POINT("vol.commit.taken");
	m = vol_commit_move_take(vc, owner, index);
	if (m && (err = vol_commit_moved(vc, b, 0, m)) != -ESTALE) {
		buf_put(b);
		return err;
	}
	zeroed = vol_punch_zeroed(&v->v_punches, owner, index, vc->vc_delta);
	err = vol_commit_new(vc, b, owner, 0, !zeroed, &vblk, &pblk);
	buf_put(b);
	if (err || !vblk)
		return err; /* forked, or punched: its entry was cleared in (1) */
	err = vol_commit_tree(vc, owner, &t);
	if (!err)
		err = bmap_set(&v->v_map, t, &vc->vc_change, 1, index, vblk);
	return vol_commit_born(vc, owner, vblk, pblk, err);
}

/* (3), (4) map or owner-table block @b of tree @t: write it, then link it. */
static int vol_commit_meta(struct vol_commit *vc, struct buf *b, struct bmap_tree *t)
{
	struct vol *v = vc->vc_vol;
	uint64_t index = buf_index(b), entry, pblk;
	struct vol_move *m;
	int err;

	if (bmap_is_node(index) && !bmap_in_tree(&v->v_map, t, index)) {
		log_err("vol: map block (%" PRIu64 ", %#" PRIx64
			") is outside its tree of height %u",
			buf_owner(b), index, t->bt_height);
		return -EINVAL;
	}
	m = vol_commit_move_take(vc, buf_owner(b), index);
	if (m) /* moved unchanged: its parent still names it */
		return vol_commit_moved(vc, b, LOG_ENTRY_META, m);
	err = vol_commit_new(vc, b, t->bt_owner, LOG_ENTRY_META, true, &entry, &pblk);
	if (err)
		return err;
	assert(entry);		  /* the front end never touches these */
	if (!bmap_is_node(index)) /* an owner-table or translation block */
		err = bmap_set(&v->v_map, t, &vc->vc_change, 1, index, entry);
	else
		err = bmap_place(&v->v_map, t, &vc->vc_change, b, entry);
	return vol_commit_born(vc, t->bt_owner, entry, pblk, err);
}

/* ---- the steps --------------------------------------------------------------- */

/*
 * Drop the cached map blocks of @owner that cover only data indexes at
 * or past @from: a truncate unlinked them (bmap.c (6)).
 */
static int vol_commit_drop_nodes(struct vol_commit *vc, uint64_t owner, uint64_t from)
{
	struct vol *v = vc->vc_vol;
	uint64_t *idx;
	size_t n;
	int err;

	err = buf_owner_cached(v->v_cache, owner, VOL_META_BIT, &idx, &n);
	for (size_t i = 0; i < n && !err; i++) {
		struct buf *b;

		if (bmap_node_first(&v->v_map, idx[i]) < from)
			continue;
		b = buf_find_hold(v->v_cache, owner, idx[i]);
		if (!b)
			continue;
		assert(!vol_table_get(&vc->vc_seen, owner, idx[i]));
		buf_drop(b);
		buf_put(b);
	}
	free(idx);
	return err;
}

/*
 * (1) a truncate of @t's owner from @from on: prune the map (a map path
 * rewritten, or the owner emptied: one record), then drop the blocks of
 * the subtrees it unlinked.
 */
static int vol_commit_truncate(struct vol_commit *vc, struct bmap_tree *t, uint64_t from)
{
	struct vol *v = vc->vc_vol;
	int err = 0;

	if (from)
		err = bmap_prune(&v->v_map, t, &vc->vc_change, from);
	else if (t->bt_height || t->bt_root || t->bt_record_stale)
		err = bmap_empty(&v->v_map, t, &vc->vc_change);
	if (!err)
		err = vol_commit_drop_nodes(vc, t->bt_owner, from);
	return err;
}

/* (1) */
static int vol_commit_punches(struct vol_commit *vc)
{
	struct vol *v = vc->vc_vol;
	struct vol_punch_key *keys;
	struct bmap_tree *t;
	size_t n;
	int err;

	err = vol_trunc_collect(&v->v_punches, vc->vc_delta, &keys, &n);
	for (size_t i = 0; i < n && !err; i++) {
		err = vol_commit_tree(vc, keys[i].pk_owner, &t);
		if (!err)
			err = vol_commit_truncate(vc, t, keys[i].pk_index);
	}
	free(keys);
	if (err)
		return err;
	err = vol_punch_collect(&v->v_punches, vc->vc_delta, &keys, &n);
	for (size_t i = 0; i < n && !err; i++) {
		err = vol_commit_tree(vc, keys[i].pk_owner, &t);
		if (!err)
			err = bmap_clear(&v->v_map, t, &vc->vc_change, keys[i].pk_index);
	}
	free(keys);
	return err;
}

/* (2) */
static int vol_commit_data(struct vol_commit *vc)
{
	struct buf *batch[VOL_TAKE_BATCH];
	unsigned n;
	int err = 0;

	SYNC_POINT("vol.commit.data");
	while (!err &&
	       (n = buf_delta_take(vc->vc_vol->v_cache, vc->vc_delta, batch, ARRAY_SIZE(batch)))) {
		for (unsigned i = 0; i < n; i++) {
			if (err)
				buf_put(batch[i]);
			else if (vol_is_meta(batch[i]))
				err = vol_commit_take_meta(vc, batch[i]);
			else
				err = vol_commit_data_block(vc, batch[i]);
		}
	}
	return err;
}

/* (3) or (4): the blocks of @class, from @level up. */
static int vol_commit_levels(struct vol_commit *vc, int class, unsigned level)
{
	struct vol *v = vc->vc_vol;
	int err = 0;

	for (; level <= VOL_MAX_LEVELS && !err; level++) {
		struct vol_bufvec *bv = &vc->vc_meta[class][level];

		/* placing a block dirties only higher levels: bv is stable */
		for (size_t i = 0; i < bv->bv_n && !err; i++) {
			struct buf *b = bv->bv_bufs[i];
			struct bmap_tree *t = class == VOL_CLASS_DAT	? &v->v_dat
					      : class == VOL_CLASS_SUF	? &v->v_suf
					      : class == VOL_CLASS_CKPT ? &v->v_ckpt
									: &v->v_otab;

			if (class == VOL_CLASS_OWNERS)
				err = vol_commit_tree(vc, buf_owner(b), &t);
			if (!err)
				err = vol_commit_meta(vc, b, t);
		}
	}
	return err;
}

/* (5) the super root, then durable. */
static int vol_commit_sroot(struct vol_commit *vc, struct vol_sroot *sr)
{
	struct vol *v = vc->vc_vol;
	struct log_builder *lb = vc->vc_lb;
	uint64_t pblk, recount;
	void *block;
	int err;

	assert(v->v_otab.bt_root_height == v->v_otab.bt_height);
	assert(v->v_dat.bt_root_height == v->v_dat.bt_height);
	assert(v->v_suf.bt_root_height == v->v_suf.bt_height);
	assert(v->v_ckpt.bt_root_height == v->v_ckpt.bt_height);
	*sr = v->v_sr;
	sr->sr_delta = vc->vc_delta;
	sr->sr_otab_root = v->v_otab.bt_root;
	sr->sr_otab_height = v->v_otab.bt_root_height;
	sr->sr_dat_root = v->v_dat.bt_root;
	sr->sr_dat_height = v->v_dat.bt_root_height;
	sr->sr_dat_next = v->v_dat_alloc.vd_next;
	sr->sr_ckpt_root = v->v_ckpt.bt_root;
	sr->sr_ckpt_height = v->v_ckpt.bt_root_height;
	if (vc->vc_ckpt.cc_written) { /* the file goes up to its newest note */
		sr->sr_ckpt_next = vc->vc_ckpt.cc_next;
		if (!sr->sr_ckpt_from || vc->vc_ckpt.cc_lost)
			sr->sr_ckpt_from = vc->vc_ckpt.cc_from;
		if (vc->vc_ckpt.cc_pruned) /* what went was below the floor */
			sr->sr_ckpt_from =
			    MAX(sr->sr_ckpt_from,
				vc->vc_ckpt.cc_pruned * (v->v_block_size / VOL_CKPT_ENTRY_BYTES));
	}
	sr->sr_suf_root = v->v_suf.bt_root;
	sr->sr_suf_height = v->v_suf.bt_root_height;
	/* a recount at this settle may change what the entries say (pins of
	 * a snapshot of an older checkpoint: usage.c), and one may be due (a
	 * damaged translation entry met: vu_suf_stale) */
	recount = atomic_load(&v->v_usage.vu_recount_at);
	sr->sr_suf_current = !vc->vc_suf.sc_skipped && !vc->vc_suf.sc_partial &&
			     v->v_suf.bt_root_height && !(recount && recount <= vc->vc_delta) &&
			     !v->v_usage.vu_suf_stale;
	/* raw moves whose copies a snapshot may not be re-rooted to: the
	 * open asks for a re-root if a crash comes first (snap.c) */
	sr->sr_unrooted = (v->v_sr.sr_unrooted && !vc->vc_rooted) || vc->vc_raw.rms_n;
	sr->sr_moved = vc->vc_moved ? vc->vc_delta : v->v_sr.sr_moved;
	sr->sr_blocks_written += vc->vc_payload + 1;
	sr->sr_prev = v->v_sr_blk; /* the checkpoint chain (sroot.c) */
	sr->sr_time_ns = util_realtime_ns();
	sr->sr_readable_from = vol_usage_readable_from(v);
	block = malloc(v->v_block_size);
	if (!block)
		return -ENOMEM;
	vol_sroot_encode(sr, block, v->v_block_size);
	err = log_build_add(lb, VOL_SROOT_OWNER, 0, LOG_ENTRY_SUPER_ROOT, block, &pblk);
	free(block);
	if (!err)
		err = vol_usage_born(v, pblk);
	if (err)
		return err;
	vc->vc_sr_blk = pblk;
	vc->vc_consumed = log_build_blocks(lb);
	SYNC_POINT("vol.commit.finish");
	vc->vc_lb = NULL; /* finish frees it, whatever happens */
	return log_build_finish(lb);
}

/* (6) the delta is durable. */
static void vol_commit_settle(struct vol_commit *vc, const struct vol_sroot *sr)
{
	struct vol *v = vc->vc_vol;
	uint64_t old_blk;
	int err;

	bmap_gen_bump(&v->v_map); /* before any buffer can be evicted: (3) */
	for (size_t i = 0; i < vc->vc_done.bv_n; i++)
		buf_commit_end(vc->vc_done.bv_bufs[i], 0);
	vol_punch_forget(&v->v_punches, vc->vc_delta);
	old_blk = v->v_sr_blk;
	cmutex_lock(&v->v_sr_lock); /* the pair changes at once: vol_sr_get */
	v->v_sr = *sr;
	v->v_sr_blk = vc->vc_sr_blk;
	cmutex_unlock(&v->v_sr_lock);
	atomic_store(&v->v_committed, sr->sr_delta);
	atomic_store(&v->v_ckpt_from, sr->sr_ckpt_from);
	atomic_store(&v->v_ckpt_next, sr->sr_ckpt_next);
	vol_table_clear(&v->v_trees, free);
	/* the old super root goes with the commit that replaced it */
	err = old_blk ? vol_usage_gone(v, old_blk, 0) : 0;
	if (err)
		log_warn("vol: super root %" PRIu64 " not counted as left behind: %d", old_blk,
			 err);
	cmutex_lock(&v->v_usage.vu_lock);
	v->v_usage.vu_written += vc->vc_consumed;
	cmutex_unlock(&v->v_usage.vu_lock);
	if (++v->v_commits % v->v_checkpoint_every == 0) {
		err = vol_checkpoint(v);
		if (err)
			log_warn("vol: checkpoint after delta %" PRIu32 " failed: %d", vc->vc_delta,
				 err);
	}
	vol_usage_settle(v); /* after the checkpoint: it may free segments */
}

static void vol_commit_fail(struct vol_commit *vc, int err)
{
	struct vol *v = vc->vc_vol;

	log_err("vol: commit of delta %" PRIu32 " failed: %d", vc->vc_delta, err);
	if (vc->vc_lb) {
		vc->vc_consumed = log_build_blocks(vc->vc_lb);
		log_build_abort(vc->vc_lb);
		vc->vc_lb = NULL;
	}
	for (size_t i = 0; i < vc->vc_done.bv_n; i++)
		buf_write_cancel(vc->vc_done.bv_bufs[i]);
	buf_delta_requeue(v->v_cache, vc->vc_delta, vc->vc_delta + 1);
	vol_punch_requeue(&v->v_punches, vc->vc_delta, vc->vc_delta + 1);
	vol_usage_fail(v);
	bmap_gen_bump(&v->v_map);
}

/*
 * What the commit reserved for itself (vc_own_res): the cleaner's moves
 * (clean.c), or the super root of a delta with nothing else to write,
 * taken from the kept reserve (a commit forced to reclaim space may have
 * no transaction that reserved it); and its segment usage entries, if
 * the delta's reservations had no room left for them (suf.c,
 * vc_suf.sc_res). Given back once the commit is
 * durable, else carried (the moved blocks are requeued with the delta).
 * What the commit consumed beyond it is what the delta's own
 * reservations pay for.
 */
static uint64_t vol_commit_own_settle(struct vol_commit *vc, int err)
{
	struct vol_usage *u = &vc->vc_vol->v_usage;
	uint64_t res = vc->vc_own_res + u->vu_own_carry + vc->vc_suf.sc_res + vc->vc_ckpt.cc_res;

	vol_suf_commit_end(vc->vc_vol, &vc->vc_suf, !err);
	vol_ckpt_commit_end(vc->vc_vol, &vc->vc_ckpt, !err);
	if (err) { /* the usage file's blocks come back too: carried with them */
		u->vu_own_carry = res;
		return vc->vc_consumed;
	}
	u->vu_own_carry = 0;
	if (res)
		log_space_release(vc->vc_vol->v_log, res);
	return vc->vc_consumed - MIN(vc->vc_consumed, res);
}

/* What the delta's operations and the commit itself reserved, less what
 * the commit wrote so far. */
static uint64_t vol_commit_slack(const struct vol_commit *vc)
{
	struct vol *v = vc->vc_vol;
	uint64_t res = delta_commit_charged(v->v_ds) + vc->vc_own_res + v->v_usage.vu_own_carry +
		       vc->vc_ckpt.cc_res + vc->vc_suf.sc_res;
	uint64_t used = log_build_blocks(vc->vc_lb);

	return res > used ? res - used : 0;
}

int vol_commit_room(struct vol *v, uint64_t slack, uint64_t cost, uint64_t *res)
{
	*res = 0;
	if (slack >= cost + vol_txn_worst(v, 0))
		return 0;
	if (log_space_reserve(v->v_log, cost, LOG_RES_FREEING))
		return -ENOSPC;
	*res = cost;
	return 0;
}

/*
 * A commit with nothing to write but its super root: no data block, no
 * map or owner-table change, no block for the cleaner to move (a commit
 * forced to reclaim space that found nothing, a sync with nothing new).
 * Nobody may have reserved that super root (vol_commit_own_sroot).
 */
static bool vol_commit_empty(const struct vol_commit *vc)
{
	if (vc->vc_payload || vc->vc_own_res || vc->vc_seen.vt_n)
		return false;
	for (int c = 0; c < VOL_NCLASSES; c++)
		for (unsigned l = 0; l <= VOL_MAX_LEVELS; l++)
			if (vc->vc_meta[c][l].bv_n)
				return false;
	return true;
}

/*
 * An empty commit still writes its super root, so that the durable delta
 * is the one a sync waited for, if the kept reserve holds it: 0 if
 * reserved. Else nothing is written (vol_commit_settle_empty).
 */
static int vol_commit_own_sroot(struct vol_commit *vc)
{
	uint64_t res = vol_txn_worst(vc->vc_vol, 0);
	int err = log_space_reserve(vc->vc_vol->v_log, res, LOG_RES_FREEING);

	if (!err)
		vc->vc_own_res = res;
	return err;
}

/*
 * The settle of an empty commit that found no room for its super root:
 * nothing is written, for the durable state says all the delta changed.
 * Its buffers (blocks written and then punched in the delta, so holes
 * still) are clean; its punches of holes are forgotten.
 */
static void vol_commit_settle_empty(struct vol_commit *vc)
{
	struct vol *v = vc->vc_vol;

	log_build_abort(vc->vc_lb);
	vc->vc_lb = NULL;
	bmap_gen_bump(&v->v_map);
	for (size_t i = 0; i < vc->vc_done.bv_n; i++)
		buf_commit_end(vc->vc_done.bv_bufs[i], 0);
	vol_punch_forget(&v->v_punches, vc->vc_delta); /* of holes only */
	vol_table_clear(&v->v_trees, free);
	/* the durable state is this delta's too: a sync waiting on it is met
	 * (vol.c (4)) */
	atomic_store(&v->v_committed, vc->vc_delta);
	vol_usage_release(v); /* segments a checkpoint may now let go */
}

static void vol_commit_move_free(void *m)
{
	if (m != VOL_MOVE_NONE)
		free(m);
}

/* A move a failed commit left (written or not): to write again. */
static void vol_commit_move_carried(void *arg)
{
	struct vol_move *m = arg;

	if (m != VOL_MOVE_NONE) {
		m->vm_carried = true;
		m->vm_written = false;
	}
}

void vol_commit_moves_clear(struct vol *v)
{
	vol_table_clear(&v->v_moves, vol_commit_move_free);
	free(v->v_raw_moves.rms_v);
	v->v_raw_moves = (struct vol_raw_moves){0};
}

static void vol_commit_release(struct vol_commit *vc)
{
	vol_bufvec_release(&vc->vc_done);
	for (int c = 0; c < VOL_NCLASSES; c++)
		for (unsigned l = 0; l <= VOL_MAX_LEVELS; l++)
			vol_bufvec_release(&vc->vc_meta[c][l]);
	vol_table_clear(&vc->vc_seen, NULL);
	vol_table_clear(&vc->vc_moves, vol_commit_move_free);
	free(vc->vc_raw.rms_v);
	free(vc->vc_scratch);
}

int vol_commit(void *ctx, uint32_t delta, uint64_t *consumed)
{
	struct vol_commit vc = {.vc_vol = ctx, .vc_delta = delta};
	struct vol *v = ctx;
	struct vol_sroot sr;
	int err;

	vol_busy_enter();
	SYNC_POINT("vol.commit.begin");
	vc.vc_rooted = atomic_exchange(&v->v_reroot.vr_rooted, false);
	bmap_cursors_begin(&v->v_map);
	/* a failed commit's moves: their blocks came back with the delta */
	vc.vc_moves = v->v_moves;
	v->v_moves = (struct vol_table){0};
	vol_table_each(&vc.vc_moves, vol_commit_move_carried);
	vc.vc_change =
	    (struct bmap_change){delta, vol_commit_note, vol_commit_gone, vol_commit_root, &vc};
	err = log_build_begin(v->v_log, delta, &vc.vc_lb);
	if (!err)
		err = vol_commit_punches(&vc);
	if (!err)
		err = vol_commit_raw_carried(&vc);
	if (!err) {
		struct vol_clean_ops co = {vol_commit_note, vol_commit_move_note,
					   vol_commit_raw_note, &vc};

		err = vol_clean(v, delta, &co, &vc.vc_own_res);
	}
	if (!err)
		err = vol_commit_data(&vc);
	if (!err)
		err = vol_commit_levels(&vc, VOL_CLASS_OWNERS, 1);
	if (!err)
		err = vol_commit_levels(&vc, VOL_CLASS_OTAB, 0);
	if (!err)
		err = vol_commit_levels(&vc, VOL_CLASS_DAT, 0);
	if (!err && vol_commit_empty(&vc) && vol_commit_own_sroot(&vc))
		vol_commit_settle_empty(&vc);
	else {
		if (v->v_sr.sr_otab_height) /* the empty volume mkfs wrote is no checkpoint */
			vol_ckpt_note(v, v->v_sr.sr_delta, v->v_sr_blk, v->v_sr.sr_time_ns);
		if (!err)
			err = vol_ckpt_commit(v, &vc.vc_change, vol_commit_slack(&vc),
					      vol_usage_readable_from(v), &vc.vc_ckpt);
		if (!err)
			err = vol_commit_levels(&vc, VOL_CLASS_CKPT, 0);
		if (!err)
			err = vol_suf_commit(v, &vc.vc_change, vol_commit_slack(&vc), &vc.vc_suf);
		if (!err)
			err = vol_commit_levels(&vc, VOL_CLASS_SUF, 0);
		if (!err)
			err = vol_commit_sroot(&vc, &sr);
		if (err)
			vol_commit_fail(&vc, err);
		else
			vol_commit_settle(&vc, &sr);
	}
	SYNC_POINT("vol.commit.paths"); /* every block written, paths still booked */
	vol_paths_settle(v, delta, err != 0);
	*consumed = vol_commit_own_settle(&vc, err);
	if (err) { /* the moved blocks are requeued: the next commit moves them */
		v->v_moves = vc.vc_moves;
		vc.vc_moves = (struct vol_table){0};
		v->v_raw_moves = vc.vc_raw; /* and the raw moves are written again */
		vc.vc_raw = (struct vol_raw_moves){0};
	} else {
		dat_commit_ok(v);    /* what a failed commit linked is relinked */
		if (vc.vc_raw.rms_n) /* durable: the snapshots may read the copies now */
			vol_reroot_ask(v);
	}
	bmap_cursors_end(&v->v_map);
	vol_commit_release(&vc);
	SYNC_POINT("vol.commit.end");
	vol_busy_leave();
	return err;
}

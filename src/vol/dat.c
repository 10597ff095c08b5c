/*
 * dat.c - the block address translation: virtual block numbers.
 *
 * Every tree of the volume but one names its blocks by virtual block
 * number: an owner's map entries and height-0 root, the owner table's
 * map, the owner records' roots and the super root's owner-table root.
 * The translation, owner 3's data, says for each number v where block v
 * lies and when it was part of the state (docs/FORMAT.md, "Translation
 * block"):
 *
 *   entry v = { physical block, birth, death }   16 bytes, 0: free
 *
 * birth is the delta whose commit wrote the block, death the delta whose
 * commit left it behind (0 while the state still names it). A block
 * never changes under its number: a new version of a block is a new
 * number, and the old one dies. The translation's own tree (map blocks
 * over its blocks, root in the super root) names physical blocks, so
 * that nothing translates through itself.
 *
 *   super root --otab root (virtual)--> owner table --> owner's map
 *        \                                    (every entry virtual)
 *         `--translation root (physical)--> translation blocks
 *
 * Reading block v: its translation block, found through the tree, then
 * its entry. A reader's walk resolves each number it meets through the
 * translation as it was when the walk began (bmap_walk.w_dat), with the
 * same generation check as the maps (bmap.c (5)); a fill does it only
 * when the block is not cached (dat_xlate_fill). The commit resolves
 * through the translation as it builds it (dat_xlate_commit).
 *
 * The commit (commit.c) gives every block it writes a new number
 * (dat_new: birth = its delta) and kills the number each map change
 * leaves behind (dat_kill, from bc_gone: death = its delta); both dirty
 * translation blocks, which the commit writes after the owner table,
 * then their map, then the super root. So the translation is part of
 * each delta like everything else, and a crash leaves the old one or
 * the new one.
 *
 * Numbers are reused. An entry may be given out again once no state
 * anyone may still read names it: it is dead, its death is at or below
 * the readable floor of the durable super root (no listed checkpoint is
 * in [birth, death): usage.c (5)), and its block lies in no segment a
 * snapshot marked (usage.c (4): every block a snapshot names lies in a
 * marked segment). A sweep reads translation blocks in turn and keeps
 * the reusable numbers it finds; the allocator hands those out first,
 * in order, and new numbers past vd_next only when the sweep has none.
 * It sweeps only with an empty list and never past the end of a pass
 * in one go (so nothing is found twice), at most DAT_SWEEP_BLOCKS blocks
 * per shortfall, and not again at the same floor once a whole pass
 * found nothing. A walker that still holds an
 * old number cannot meet it reused: a number is reusable only once no
 * tree a walk can start from names it.
 *
 * Entries at most v_dat_max: every entry not reusable names a distinct
 * block of a segment not released (a dead block's segment is released
 * only once the floor passed its death) so entries in use never
 * outnumber the blocks of the segments; twice that leaves the sweep
 * room, and when the numbers run out a whole pass is forced.
 *
 * A failed commit keeps the map it built for the next one (commit.c).
 * A number it linked there before setting its entry (the commit links
 * first, then sets the entry) still reads free, or dead where it was
 * reused from: to the sweep it is as reusable as before, and handed out
 * again it would be killed for its new block when the next commit
 * relinks the old one. So the commit holds each number whose link or
 * entry failed (dat_hold): the sweep skips it, and dat_kill finds
 * nothing to kill in its unset entry. A commit that succeeds has
 * relinked, punched or truncated every block a failed one linked, and
 * the held numbers go back (dat_commit_ok).
 *
 * Invariants
 *   (1) An entry named by a tree a reader can walk is not free, and its
 *       physical block is the block of that number.
 *   (2) Entries change only in the commit thread, under bm_lock
 *       exclusive; readers read them under bm_lock shared with their
 *       walk still valid.
 *   (3) vd_free holds only numbers below vd_next whose entries are
 *       reusable, each once, and none held.
 *   (4) A number the kept map of a failed commit names is current, or
 *       held (vd_held) until a commit succeeds.
 *
 * Commit thread only, but for the readers' dat_xlate_walk.
 */
#include "vol/vol_internal.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define DAT_SWEEP_BLOCKS 8 /* translation blocks one shortfall may read */

void vol_dat_decode(const void *block, uint32_t slot, struct vol_dat_entry *e)
{
	const unsigned char *p = (const unsigned char *)block + (size_t)slot * VOL_DAT_ENTRY_BYTES;

	e->de_pblk = util_get_le64(p);
	e->de_birth = util_get_le32(p + 8);
	e->de_death = util_get_le32(p + 12);
}

static void dat_encode(void *block, uint32_t slot, const struct vol_dat_entry *e)
{
	unsigned char *p = (unsigned char *)block + (size_t)slot * VOL_DAT_ENTRY_BYTES;

	util_put_le64(p, e->de_pblk);
	util_put_le32(p + 8, e->de_birth);
	util_put_le32(p + 12, e->de_death);
}

/* ---- reading -------------------------------------------------------------- */

/* True (logged) if entry @e of @vblk names a block outside the segments. */
static bool dat_entry_bad(const struct bmap *m, uint64_t vblk, const struct vol_dat_entry *e)
{
	const struct vol *v = container_of(m, const struct vol, v_map);

	if (vol_pblk_valid(v, e->de_pblk))
		return false;
	log_err("vol: virtual block %" PRIu64 " translates to block %" PRIu64
		", outside the segments",
		vblk, e->de_pblk);
	return true;
}

int dat_xlate_walk(struct bmap_walk *w, uint64_t vblk, uint64_t *pblk)
{
	struct bmap *m = w->w_map;
	uint32_t per = m->bm_entries * 8 / VOL_DAT_ENTRY_BYTES;
	struct vol_dat_entry e = {0};
	uint64_t dblk;
	struct buf *b;
	int err;

	err = bmap_lookup(w, VOL_DAT_OWNER, &w->w_dat, 0, vblk / per, &dblk);
	if (err)
		return err;
	if (!dblk)
		goto out_free;
	err = bmap_read_block(w, VOL_DAT_OWNER, vblk / per, dblk, &b);
	if (err)
		return err;
	pthread_rwlock_rdlock(&m->bm_lock);
	if (bmap_walk_valid_locked(w))
		vol_dat_decode(buf_data(b), (uint32_t)(vblk % per), &e);
	else
		err = -EAGAIN;
	pthread_rwlock_unlock(&m->bm_lock);
	buf_put(b);
	if (err)
		return err;
	if (e.de_pblk && !dat_entry_bad(w->w_map, vblk, &e)) {
		*pblk = e.de_pblk;
		return 0;
	}
	if (e.de_pblk)
		return -EUCLEAN;
out_free:
	log_err("vol: virtual block %" PRIu64 " is named but has no translation", vblk);
	return -EUCLEAN;
}

/* Entry @vblk as the commit sees it, whatever it holds. */
static int dat_peek(struct vol *v, uint64_t vblk, struct vol_dat_entry *e)
{
	uint32_t per = vol_dat_per_block(v->v_block_size);
	struct buf *b;
	int err;

	*e = (struct vol_dat_entry){0};
	err = bmap_get_block(&v->v_map, &v->v_dat, vblk / per, false, &b);
	if (err)
		return err;
	if (b) {
		vol_dat_decode(buf_data(b), (uint32_t)(vblk % per), e);
		buf_put(b);
	}
	return 0;
}

int dat_entry(struct vol *v, uint64_t vblk, struct vol_dat_entry *e)
{
	return dat_peek(v, vblk, e);
}

/* Entry @vblk as the commit sees it; -EUCLEAN if it is free. */
static int dat_load(struct vol *v, uint64_t vblk, struct vol_dat_entry *e)
{
	int err = dat_peek(v, vblk, e);

	if (err)
		return err;
	if (e->de_pblk)
		return dat_entry_bad(&v->v_map, vblk, e) ? -EUCLEAN : 0;
	log_err("vol: virtual block %" PRIu64 " is named but has no translation", vblk);
	return -EUCLEAN;
}

int dat_xlate_commit(struct vol *v, uint64_t vblk, uint64_t *pblk)
{
	struct vol_dat_entry e;
	int err = dat_load(v, vblk, &e);

	*pblk = e.de_pblk;
	return err;
}

int dat_xlate_fill(struct vol *v, uint64_t owner, uint64_t entry, uint64_t *pblk)
{
	struct bmap_walk *w = bmap_fill_walk();
	int err;

	if (!bmap_virtual(owner)) {
		*pblk = entry;
		return 0;
	}
	if (!w || w->w_map != &v->v_map)
		return dat_xlate_commit(v, entry, pblk); /* the commit's own fill */
	err = dat_xlate_walk(w, entry, pblk);
	return err == -EAGAIN ? -ESTALE : err; /* the cache keeps -EAGAIN */
}

/* ---- changing ------------------------------------------------------------- */

struct dat_put {
	uint32_t dp_slot;
	const struct vol_dat_entry *dp_e;
};

static void dat_put(void *arg, void *data)
{
	const struct dat_put *dp = arg;

	dat_encode(data, dp->dp_slot, dp->dp_e);
}

/* Store entry @vblk in the commit's delta (dirtying its translation block). */
static int dat_store(struct vol *v, const struct bmap_change *ch, uint64_t vblk,
		     const struct vol_dat_entry *e)
{
	uint32_t per = vol_dat_per_block(v->v_block_size);
	struct dat_put dp = {(uint32_t)(vblk % per), e};

	return bmap_change_block(&v->v_map, &v->v_dat, ch, vblk / per, dat_put, &dp);
}

/* Is @vblk held (dat_hold)? */
static bool dat_held(const struct vol_dat *d, uint64_t vblk)
{
	return d->vd_held.vt_n && vol_table_get(&d->vd_held, vblk, 0);
}

/* May entry @e be given out again (given the durable floor @floor)? */
static bool dat_reusable(struct vol *v, const struct vol_dat_entry *e, uint64_t floor)
{
	if (!e->de_pblk)
		return true;
	if (!e->de_death || e->de_death > floor)
		return false; /* current, or a listed checkpoint may name it */
	return !vol_pblk_valid(v, e->de_pblk) ||
	       !vol_seg_snap(v->v_usage.vu_snap, vol_seg_of(v, e->de_pblk));
}

/*
 * Read up to @max translation blocks from the sweep's place, keeping
 * every reusable number (vd_free is empty). A pass that ends having
 * found nothing idles the sweep until the floor moves.
 */
static int dat_sweep(struct vol *v, uint64_t max, bool force)
{
	struct vol_dat *d = &v->v_dat_alloc;
	uint32_t per = vol_dat_per_block(v->v_block_size);
	uint64_t floor = v->v_sr.sr_readable_from;
	uint64_t nblocks = (d->vd_next + per - 1) / per;
	int err = 0;

	assert(!d->vd_free.uv_n);
	if (d->vd_sweep >= nblocks) { /* a pass ended; the next begins */
		if (!d->vd_pass_found)
			d->vd_idle_floor = floor;
		d->vd_sweep = 0;
		d->vd_pass_found = 0;
	}
	if (floor == d->vd_idle_floor && !force)
		return 0;
	/* never past the pass's end: what it found is not handed out yet */
	for (uint64_t i = 0; i < max && !err && d->vd_free.uv_n < per && d->vd_sweep < nblocks;
	     i++) {
		struct buf *b;

		err = bmap_get_block(&v->v_map, &v->v_dat, d->vd_sweep, false, &b);
		for (uint32_t s = 0; s < per && !err; s++) {
			uint64_t vblk = d->vd_sweep * per + s;
			struct vol_dat_entry e = {0};

			if (!vblk || vblk >= d->vd_next)
				continue;
			if (b)
				vol_dat_decode(buf_data(b), s, &e);
			if (dat_reusable(v, &e, floor) && !dat_held(d, vblk))
				err = vol_u64vec_push(&d->vd_free, vblk);
		}
		if (b)
			buf_put(b);
		d->vd_sweep++;
	}
	d->vd_pass_found += d->vd_free.uv_n;
	return err;
}

int dat_alloc(struct vol *v, uint64_t *vblk)
{
	struct vol_dat *d = &v->v_dat_alloc;
	uint32_t per = vol_dat_per_block(v->v_block_size);
	int err;

	if (d->vd_head == d->vd_free.uv_n) {
		d->vd_head = d->vd_free.uv_n = 0;
		err = dat_sweep(v, DAT_SWEEP_BLOCKS, false);
		/* out of numbers: the rest of this pass, then a whole one */
		for (int i = 0; i < 2 && !err && !d->vd_free.uv_n && d->vd_next >= v->v_dat_max;
		     i++)
			err = dat_sweep(v, (d->vd_next + per - 1) / per, true);
		if (err)
			return err;
	}
	if (d->vd_head < d->vd_free.uv_n) {
		*vblk = d->vd_free.uv_v[d->vd_head++];
		d->vd_reused++;
	} else if (d->vd_next < v->v_dat_max) {
		*vblk = d->vd_next++;
	} else {
		log_err("vol: no translation entry is free (%" PRIu64 " in use)", d->vd_next);
		return -ENOSPC;
	}
	d->vd_allocated++;
	return 0;
}

int dat_set_new(struct vol *v, const struct bmap_change *ch, uint64_t vblk, uint64_t pblk)
{
	struct vol_dat_entry e = {pblk, ch->bc_delta, 0};

	return dat_store(v, ch, vblk, &e);
}

int dat_move(struct vol *v, const struct bmap_change *ch, uint64_t vblk, uint64_t pblk,
	     uint64_t *old, uint64_t *birth)
{
	struct vol_dat_entry e;
	int err;

	*old = 0;
	*birth = 0;
	err = dat_load(v, vblk, &e);
	if (err)
		return err;
	*old = e.de_pblk;
	*birth = e.de_birth;
	e.de_pblk = pblk;
	return dat_store(v, ch, vblk, &e);
}

int dat_kill(struct vol *v, const struct bmap_change *ch, uint64_t vblk, uint64_t *pblk,
	     uint64_t *birth)
{
	struct vol_dat_entry e;
	int err;

	*pblk = 0;
	*birth = 0;
	if (dat_held(&v->v_dat_alloc, vblk)) {
		/* linked by a failed commit: if its entry was never set (free,
		 * or the dead one it was reused from), there is nothing to kill */
		err = dat_peek(v, vblk, &e);
		if (err || !e.de_pblk || e.de_death)
			return err;
	}
	err = dat_load(v, vblk, &e);
	if (err)
		return err;
	if (e.de_death) {
		/* named twice (damage fsck reports): it left already */
		log_warn("vol: virtual block %" PRIu64 " left behind again (died in delta %" PRIu32
			 ")",
			 vblk, e.de_death);
		return 0;
	}
	e.de_death = ch->bc_delta;
	err = dat_store(v, ch, vblk, &e);
	if (!err) {
		*pblk = e.de_pblk;
		*birth = e.de_birth;
		v->v_dat_alloc.vd_killed++;
	}
	return err;
}

void dat_hold(struct vol *v, uint64_t vblk)
{
	struct vol_dat *d = &v->v_dat_alloc;

	if (!dat_held(d, vblk) && vol_table_put(&d->vd_held, vblk, 0, (void *)1))
		log_warn("vol: out of memory holding virtual block %" PRIu64
			 " of a failed commit; it may be handed out while named",
			 vblk);
}

void dat_commit_ok(struct vol *v)
{
	vol_table_clear(&v->v_dat_alloc.vd_held, NULL);
}

void dat_open(struct vol *v)
{
	struct vol_dat *d = &v->v_dat_alloc;

	*d = (struct vol_dat){.vd_next = MAX(v->v_sr.sr_dat_next, 1), .vd_idle_floor = UINT64_MAX};
}

void dat_close(struct vol *v)
{
	free(v->v_dat_alloc.vd_free.uv_v);
	v->v_dat_alloc.vd_free = (struct vol_u64vec){0};
	vol_table_clear(&v->v_dat_alloc.vd_held, NULL);
}

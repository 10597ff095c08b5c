/*
 * ckpt.c - the checkpoint file: where each checkpoint's super root is,
 * by delta.
 *
 * Every commit is a checkpoint, and its super root names the one before
 * (sr_prev: the chain, sroot.c), so the checkpoints can be listed by
 * walking down from the newest; finding one by its delta that way reads
 * every super root above it. Owner 5's data is an entry per delta
 * (docs/FORMAT.md, "Checkpoint block"):
 *
 *   entry d = { super root block, commit time }   two le64, 0: none
 *
 * indexed by the delta, so a lookup reads one block of the file and the
 * super root it names (vol_ckpt_lookup). Like the translation's, the
 * file's tree names addresses, and the super root names its root.
 *
 * The commit adds entries in batches: each commit notes the checkpoint
 * it replaces (the durable super root) in v_ckpt_pending, and one commit
 * in VOL_CKPT_BATCH writes the notes (vol_ckpt_commit, commit.c (4b')),
 * after the translation and before the segment usage entries, so a
 * checkpoint costs its file a sixteenth of a block and its map path.
 * The super root says up to where the file goes (sr_ckpt_next: every
 * checkpoint below it that is readable has its entry); the few above it
 * are found by the chain, and an open notes them again (vol_ckpt_open).
 * The file starts at the first delta a volume wrote it in
 * (sr_ckpt_from); older checkpoints are found by the chain.
 *
 * Entries of checkpoints no longer readable (below the readable floor)
 * are taken out a block at a time, once a whole block is below it: the
 * commit clears its map entry (vol_ckpt_commit), so the file holds about
 * as many blocks as the readable checkpoints need.
 *
 * A commit pays for the file's blocks as for the segment usage entries
 * (suf.c): out of what its delta reserved and did not use, or from its
 * own reservation; with neither, it keeps the notes for a later commit.
 *
 * Invariants
 *   (1) For every readable checkpoint of delta d with sr_ckpt_from <= d <
 *       sr_ckpt_next, entry d names its super root (vol_check compares
 *       the file with the chain).
 *   (2) The file's blocks are dirtied only by the commit, in its own
 *       delta; readers find entries through a walk of its tree
 *       (bmap_walk.w_ckpt) under the map generation, like the
 *       translation's (dat.c).
 *
 * Commit thread only, but for vol_ckpt_lookup (any thread).
 */
#include "vol/vol_internal.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define VOL_CKPT_BATCH	    16 /* checkpoints noted before the commit writes them */
#define VOL_CKPT_BLOCKS_MAX 2  /* blocks of entries one commit writes, at most */

static uint32_t ckpt_per_block(uint32_t bs)
{
	return bs / VOL_CKPT_ENTRY_BYTES;
}

static void ckpt_decode(const void *block, uint32_t slot, struct vol_ckpt_entry *e)
{
	const unsigned char *p = (const unsigned char *)block + (size_t)slot * VOL_CKPT_ENTRY_BYTES;

	e->ce_sroot = util_get_le64(p);
	e->ce_time_ns = util_get_le64(p + 8);
}

static void ckpt_encode(void *block, uint32_t slot, const struct vol_ckpt_entry *e)
{
	unsigned char *p = (unsigned char *)block + (size_t)slot * VOL_CKPT_ENTRY_BYTES;

	util_put_le64(p, e->ce_sroot);
	util_put_le64(p + 8, e->ce_time_ns);
}

uint64_t vol_ckpt_blocks_max(const struct vol *v)
{
	return ((uint64_t)UINT32_MAX + 1) / ckpt_per_block(v->v_block_size);
}

/* ---- reading ---------------------------------------------------------------- */

int vol_ckpt_lookup(struct vol *v, uint64_t delta, struct vol_ckpt_entry *e)
{
	uint32_t per = ckpt_per_block(v->v_block_size);
	struct bmap_root otab;
	struct bmap_walk w;
	uint64_t pblk;
	struct buf *b;
	int err;

	*e = (struct vol_ckpt_entry){0};
	if (delta > UINT32_MAX)
		return 0;
	do {
		bmap_walk_begin(&v->v_map, &v->v_otab, &w, &otab);
		err = bmap_lookup(&w, VOL_CKPT_OWNER, &w.w_ckpt, 0, delta / per, &pblk);
		if (err || !pblk)
			continue;
		err = bmap_read_block(&w, VOL_CKPT_OWNER, delta / per, pblk, &b);
		if (err)
			continue;
		pthread_rwlock_rdlock(&v->v_map.bm_lock);
		if (bmap_walk_valid_locked(&w))
			ckpt_decode(buf_data(b), (uint32_t)(delta % per), e);
		else
			err = -EAGAIN;
		pthread_rwlock_unlock(&v->v_map.bm_lock);
		buf_put(b);
	} while (err == -EAGAIN);
	return err;
}

int vol_ckpt_read(struct vol *v, const struct vol_sroot *sr, uint64_t delta,
		  struct vol_ckpt_entry *e)
{
	uint32_t per = ckpt_per_block(v->v_block_size);
	uint64_t index = delta / per, pblk = sr->sr_ckpt_root;
	unsigned char *buf = malloc(v->v_block_size);
	int err = 0;

	*e = (struct vol_ckpt_entry){0};
	if (!buf)
		return -ENOMEM;
	unsigned shift = v->v_map.bm_shift;

	if (!sr->sr_ckpt_height ||
	    (shift * sr->sr_ckpt_height < 64 && index >> (shift * sr->sr_ckpt_height)))
		pblk = 0; /* past what the tree covers */
	for (unsigned level = sr->sr_ckpt_height; level >= 1 && pblk && !err; level--) {
		if (!vol_pblk_valid(v, pblk)) {
			err = -EUCLEAN;
			break;
		}
		err = bdev_read(v->v_bdev, pblk, 1, buf);
		if (!err)
			pblk = bmap_entry(buf, (uint32_t)(index >> (shift * (level - 1))) &
						   (v->v_map.bm_entries - 1));
	}
	if (!err && pblk && !vol_pblk_valid(v, pblk))
		err = -EUCLEAN;
	if (!err && pblk)
		err = bdev_read(v->v_bdev, pblk, 1, buf);
	if (!err && pblk)
		ckpt_decode(buf, (uint32_t)(delta % per), e);
	free(buf);
	return err;
}

/* bmap_dev_walk: one more block of the file's tree. */
static int ckpt_count(void *arg, uint64_t pblk, unsigned level, uint64_t index)
{
	(void)pblk, (void)level, (void)index;
	(*(uint64_t *)arg)++;
	return 0;
}

uint64_t vol_ckpt_nblocks(struct vol *v, uint64_t root, unsigned height)
{
	uint64_t n = 0;

	if (height > v->v_ckpt_height_max || bmap_dev_walk(v, root, height, ckpt_count, &n))
		return 0;
	return n;
}

/* ---- writing ---------------------------------------------------------------- */

/* What writing @nblocks blocks of the file (and clearing one) may cost. */
static uint64_t ckpt_cost(const struct vol *v, uint64_t nblocks)
{
	uint64_t payload = nblocks + (nblocks + 1) * v->v_ckpt_height_max;

	return payload + vol_log_overhead(v, payload);
}

uint64_t vol_ckpt_worst(const struct vol *v)
{
	return ckpt_cost(v, VOL_CKPT_BLOCKS_MAX);
}

void vol_ckpt_note(struct vol *v, uint64_t delta, uint64_t sroot, uint64_t time_ns)
{
	struct vol_ckpt_pending *p = &v->v_ckpt_pending;

	if (!sroot || delta > UINT32_MAX)
		return;
	if (p->cp_n && p->cp_e[p->cp_n - 1].cn_delta >= delta)
		return; /* noted already (a failed commit's, or the open's) */
	if (p->cp_n == VOL_CKPT_PENDING_MAX) { /* no room to write them for long: the
						  oldest go (the chain still finds them) */
		memmove(p->cp_e, p->cp_e + 1, (p->cp_n - 1) * sizeof(p->cp_e[0]));
		p->cp_n--;
		p->cp_lost = true;
	}
	p->cp_e[p->cp_n++] = (struct vol_ckpt_note){delta, {sroot, time_ns}};
}

struct ckpt_put {
	const struct vol_ckpt_note *cp_notes;
	size_t cp_n;
	uint32_t cp_per;
};

/* bmap_change_block: the notes that fall in one block of the file. */
static void ckpt_put(void *arg, void *data)
{
	const struct ckpt_put *cp = arg;

	for (size_t i = 0; i < cp->cp_n; i++)
		ckpt_encode(data, (uint32_t)(cp->cp_notes[i].cn_delta % cp->cp_per),
			    &cp->cp_notes[i].cn_e);
}

int vol_ckpt_commit(struct vol *v, const struct bmap_change *ch, uint64_t slack, uint64_t floor,
		    struct vol_ckpt_commit *cc)
{
	struct vol_ckpt_pending *p = &v->v_ckpt_pending;
	uint32_t per = ckpt_per_block(v->v_block_size);
	uint64_t nblocks = 0, prune;
	size_t n = 0;
	struct buf *b;
	int err = 0;

	*cc = (struct vol_ckpt_commit){0};
	if (p->cp_n < VOL_CKPT_BATCH)
		return 0;
	/* the oldest notes, in VOL_CKPT_BLOCKS_MAX blocks at most (what
	 * vol_ckpt_worst keeps room for): the range stays whole */
	for (; n < p->cp_n; n++) {
		bool new_block = !n || p->cp_e[n].cn_delta / per != p->cp_e[n - 1].cn_delta / per;

		if (new_block && nblocks == VOL_CKPT_BLOCKS_MAX)
			break;
		nblocks += new_block;
	}
	if (vol_commit_room(v, slack, ckpt_cost(v, nblocks), &cc->cc_res))
		return 0; /* kept for a commit with room */
	for (size_t i = 0, j; i < n && !err; i = j) {
		struct ckpt_put cp = {&p->cp_e[i], 0, per};
		uint64_t index = p->cp_e[i].cn_delta / per;

		for (j = i; j < n && p->cp_e[j].cn_delta / per == index; j++)
			cp.cp_n++;
		err = bmap_change_block(&v->v_map, &v->v_ckpt, ch, index, ckpt_put, &cp);
	}
	if (err)
		return err;
	cc->cc_next = p->cp_e[n - 1].cn_delta + 1;
	cc->cc_from = p->cp_e[0].cn_delta;
	cc->cc_lost = p->cp_lost;
	cc->cc_written = n;
	/*
	 * One block wholly below the readable floor goes, the oldest; not one
	 * the cleaner dirtied in this commit to move it (its buffer would be
	 * written and linked again after the clear).
	 */
	prune = v->v_sr.sr_ckpt_from ? v->v_ckpt_low : MAX(v->v_ckpt_low, cc->cc_from / per);
	if ((prune + 1) * per > floor || prune >= cc->cc_from / per)
		return 0;
	b = buf_find_hold(v->v_cache, VOL_CKPT_OWNER, prune);
	if (b) {
		bool dirty = buf_state(b) != BUF_CLEAN;

		buf_put(b);
		if (dirty)
			return 0;
	}
	err = bmap_clear(&v->v_map, &v->v_ckpt, ch, prune);
	if (!err)
		cc->cc_pruned = prune + 1;
	return err;
}

void vol_ckpt_commit_end(struct vol *v, const struct vol_ckpt_commit *cc, bool durable)
{
	struct vol_ckpt_pending *p = &v->v_ckpt_pending;

	if (!durable || !cc->cc_written)
		return;
	memmove(p->cp_e, p->cp_e + cc->cc_written, (p->cp_n - cc->cc_written) * sizeof(p->cp_e[0]));
	p->cp_n -= cc->cc_written;
	p->cp_lost = false;
	if (cc->cc_pruned)
		v->v_ckpt_low = cc->cc_pruned;
}

/* bmap_dev_walk: the first data block, leftmost first, ends the walk. */
static int ckpt_first_block(void *arg, uint64_t pblk, unsigned level, uint64_t index)
{
	(void)pblk;
	if (level)
		return 0;
	*(uint64_t *)arg = index;
	return 1;
}

int vol_ckpt_open(struct vol *v)
{
	const struct vol_sroot *top = &v->v_sr;
	uint64_t bound = MAX(MAX(top->sr_ckpt_next, top->sr_readable_from), 1);
	uint64_t blk = top->sr_prev, newer = top->sr_delta;
	struct vol_ckpt_note *found;
	bool whole = false;
	size_t n = 0;

	/* where pruning goes on from: the first block of entries the durable
	 * file has (map blocks a prune emptied are passed over) */
	if (top->sr_ckpt_height > v->v_ckpt_height_max ||
	    bmap_dev_walk(v, top->sr_ckpt_root, top->sr_ckpt_height, ckpt_first_block,
			  &v->v_ckpt_low) != 1)
		v->v_ckpt_low = top->sr_ckpt_from / ckpt_per_block(v->v_block_size);
	/*
	 * The checkpoints above the file's range, from the chain (the durable
	 * super root itself is noted by the next commit). Unless the walk
	 * reaches below the range or the chain's end, the notes may leave a
	 * gap: the file starts again at them (cp_lost).
	 */
	found = calloc(VOL_CKPT_PENDING_MAX, sizeof(*found));
	if (!found)
		return -ENOMEM;
	while (blk) {
		struct vol_sroot sr;

		if (vol_sroot_load(v, blk, &sr) || sr.sr_delta >= newer)
			break; /* the chain ends early */
		if (sr.sr_delta < bound || !sr.sr_otab_height) {
			whole = true; /* below the range, or the empty volume */
			break;
		}
		if (n == VOL_CKPT_PENDING_MAX)
			break;
		found[n++] = (struct vol_ckpt_note){sr.sr_delta, {blk, sr.sr_time_ns}};
		newer = sr.sr_delta;
		blk = sr.sr_prev;
	}
	whole |= !blk;
	while (n--) /* oldest first */
		vol_ckpt_note(v, found[n].cn_delta, found[n].cn_e.ce_sroot,
			      found[n].cn_e.ce_time_ns);
	if (!whole) {
		log_warn("vol: the checkpoint chain above delta %" PRIu64
			 " could not be walked whole: the checkpoint file starts again",
			 top->sr_ckpt_next);
		v->v_ckpt_pending.cp_lost = true;
	}
	free(found);
	return 0;
}

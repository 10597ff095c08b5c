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

#define VOL_CKPT_BATCH 16 /* checkpoints noted before the commit writes them */

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

/* ---- writing ---------------------------------------------------------------- */

/* What writing @nblocks blocks of the file (and clearing one) may cost. */
static uint64_t ckpt_cost(const struct vol *v, uint64_t nblocks)
{
	uint64_t payload = nblocks + (nblocks + 1) * v->v_ckpt_height_max;

	return payload + vol_log_overhead(v, payload);
}

uint64_t vol_ckpt_worst(const struct vol *v)
{
	return ckpt_cost(v, (VOL_CKPT_BATCH + ckpt_per_block(v->v_block_size) - 1) /
				    ckpt_per_block(v->v_block_size) +
				1);
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
	int err = 0;

	*cc = (struct vol_ckpt_commit){0};
	if (p->cp_n < VOL_CKPT_BATCH)
		return 0;
	for (size_t i = 0; i < p->cp_n; i++)
		nblocks += !i || p->cp_e[i].cn_delta / per != p->cp_e[i - 1].cn_delta / per;
	cc->cc_res = ckpt_cost(v, nblocks);
	if (slack >= cc->cc_res + vol_txn_worst(v, 0)) {
		cc->cc_res = 0;
	} else if (log_space_reserve(v->v_log, cc->cc_res, LOG_RES_FREEING)) {
		cc->cc_res = 0;
		return 0; /* kept for a commit with room */
	}
	for (size_t i = 0, j; i < p->cp_n && !err; i = j) {
		struct ckpt_put cp = {&p->cp_e[i], 0, per};
		uint64_t index = p->cp_e[i].cn_delta / per;

		for (j = i; j < p->cp_n && p->cp_e[j].cn_delta / per == index; j++)
			cp.cp_n++;
		err = bmap_change_block(&v->v_map, &v->v_ckpt, ch, index, ckpt_put, &cp);
	}
	if (err)
		return err;
	cc->cc_next = p->cp_e[p->cp_n - 1].cn_delta + 1;
	cc->cc_from = p->cp_e[0].cn_delta;
	cc->cc_lost = p->cp_lost;
	cc->cc_written = p->cp_n;
	/* one block wholly below the readable floor goes, the oldest */
	prune = v->v_ckpt_low;
	if ((prune + 1) * per <= floor && prune < p->cp_e[0].cn_delta / per) {
		err = bmap_clear(&v->v_map, &v->v_ckpt, ch, prune);
		if (!err)
			cc->cc_pruned = prune + 1;
	}
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

/* vol_ckpt_walk: note each checkpoint the file does not hold yet. */
static int ckpt_open_one(void *arg, const struct vol_checkpoint *cp, const struct vol_sroot *sr)
{
	struct vol_checkpoint *found = arg;

	(void)sr;
	if (found[VOL_CKPT_PENDING_MAX - 1].vcp_sroot)
		return 1;
	memmove(found + 1, found, (VOL_CKPT_PENDING_MAX - 1) * sizeof(*found));
	found[0] = *cp; /* oldest first, in the end */
	return 0;
}

int vol_ckpt_open(struct vol *v)
{
	uint32_t per = ckpt_per_block(v->v_block_size);
	struct vol_checkpoint *found;
	int err;

	v->v_ckpt_low = v->v_sr.sr_ckpt_from / per;
	if (v->v_sr.sr_ckpt_next > v->v_sr.sr_delta)
		return 0;
	found = calloc(VOL_CKPT_PENDING_MAX, sizeof(*found));
	if (!found)
		return -ENOMEM;
	/* the durable super root itself is noted by the next commit */
	err = vol_ckpt_walk(v, v->v_sr.sr_prev,
			    MAX(MAX(v->v_sr.sr_ckpt_next, v->v_sr.sr_readable_from), 1),
			    ckpt_open_one, found);
	if (err < 0) { /* the chain ends early: the file lists what it has */
		log_warn("vol: checkpoints above %" PRIu64 " not in the checkpoint file: %d",
			 v->v_sr.sr_ckpt_next, err);
		err = 0;
	}
	for (size_t i = 0; i < VOL_CKPT_PENDING_MAX; i++)
		if (found[i].vcp_sroot)
			vol_ckpt_note(v, found[i].vcp_delta, found[i].vcp_sroot,
				      found[i].vcp_time_ns);
	free(found);
	return 0;
}

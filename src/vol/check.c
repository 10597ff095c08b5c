/*
 * check.c - vol_check: the volume half of fsck.
 *
 * Walks the durable state (the super root the last commit wrote, read
 * from the device, not the cache): the owner table's map, every owner
 * record in it, and every owner's map, and checks that
 *
 *   - every block named (map block, owner-table block, data block) lies
 *     inside a segment, and is named once in the whole volume;
 *   - every record's height is possible and its root set if it has a
 *     height (at height 0 a root is data block 0); only client owners
 *     (>= VOL_CLIENT_META) have records;
 *   - each segment's live-block count (usage.c) is the walk's, and no
 *     segment holding a live block is free in the log;
 *   - every checkpoint of the chain in the checkpoint file's range
 *     (ckpt.c) has its entry there, and every entry in that range names
 *     a checkpoint of the chain;
 *   - if the super root calls its segment usage file current (suf.c),
 *     each entry of a segment in use says what the walk counted there,
 *     less the file's own blocks and the super root, and at least the
 *     blocks only snapshots name, and marks every segment holding one;
 *   - each snapshot the snapshot table names (snap.c) has a valid record
 *     and super root, and every block it names lies inside a segment
 *     that is in use, marked as holding a snapshot's blocks, and counted
 *     at least once (live, or pinned by snapshots).
 *
 * Each problem is told to @report as one line; the count of problems is
 * returned (0: clean), or a negative errno if a block cannot be read.
 * Call it with no transaction in flight and after vol_sync, so that the
 * durable state is the whole state (tests do, after every workload and
 * after crash recovery). Every virtual block is resolved through the
 * translation of the state that names it (dat.c), and the state's
 * translation is checked entry by entry: what the state names is
 * current and named once, what it does not name is not current.
 *
 * No shared state but the volume's immutable fields and v_sr, read once
 * at the start (vol_sr_get): a background commit (the cleaner's) may
 * settle during a check, which the caller then takes again.
 */
#include "vol/vol_internal.h"

#include <endian.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CK_DAT_CACHE 64 /* translation blocks a walk keeps (direct-mapped) */

struct vol_checker {
	struct vol *ck_vol;
	/* vol_check: the durable super root as it found it (a background
	 * commit may settle meanwhile) */
	struct vol_sroot ck_sr;
	uint64_t ck_sr_blk;
	void (*ck_report)(void *arg, const char *msg);
	void *ck_arg;
	struct vol_table ck_seen; /* pblk -> 1: blocks named so far */
	bool ck_count_only;	  /* vol_count_durable: no checks, no ck_seen */
	uint32_t *ck_counted;	  /* blocks per segment */
	uint32_t *ck_suf_counted; /* of them, the usage file's own (vol_count.vcn_suf) */
	uint64_t ck_problems;
	uint64_t ck_blocks;
	/* snapshots: the walk of the state marks its blocks in ck_state;
	 * then each snapshot's walk marks its own in ck_snap_seen (a block
	 * met again is a subtree met before: skipped), and the first time any
	 * walk meets a block (ck_snap_counted) counts it in ck_pinned if it is
	 * not in ck_state and sets its segment in ck_snap_segs. A subtree is
	 * the same only where the translations agree: the cleaner moves a
	 * block by its entry alone, so a map block two translations share
	 * may have its children in different places for each. Two agree on
	 * every number both states name when no commit between them moved a
	 * block (the same sr_moved): the snapshots are walked in groups by the
	 * sr_moved of the translation they read through, ck_snap_seen emptied
	 * between groups */
	uint64_t *ck_state;		/* bitmap of blocks from lg_seg_start; NULL: none */
	uint64_t *ck_snap_seen;		/* the same, for the snapshots' walks */
	uint64_t *ck_snap_counted;	/* and for their counts */
	bool ck_in_snap;		/* walking a snapshot */
	uint32_t *ck_pinned;		/* per segment */
	uint64_t *ck_snap_segs;		/* bitmap of segments */
	uint64_t *ck_recent_segs;	/* walking recent checkpoints (vol_count.vcn_recent):
					   their segments, ck_in_snap set too */
	uint64_t *ck_recent_dat;	/* their translations' blocks read (ck_claim_recent) */
	uint64_t ck_recent_delta;	/* the checkpoint being walked */
	struct vol_snap_info *ck_snaps; /* the state's snapshot table */
	size_t ck_nsnaps, ck_snaps_cap;
	/* the translation of the state being walked (dat.c): its root, and a
	 * few of its blocks read */
	uint64_t ck_dat_root, ck_dat_next;
	unsigned ck_dat_height;
	unsigned char *ck_dat_blocks;	    /* CK_DAT_CACHE blocks, then a path's worth */
	uint64_t ck_dat_tags[CK_DAT_CACHE]; /* translation block + 1 in each; 0: none */
	uint64_t *ck_named;		    /* bitmap of the virtual blocks the state names
					       (vol_check's walk of the state only) */
};

static bool ck_bit(const uint64_t *bits, uint64_t i)
{
	return bits[i / 64] >> (i % 64) & 1;
}

static void ck_bit_set(uint64_t *bits, uint64_t i)
{
	bits[i / 64] |= 1ull << (i % 64);
}

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
	else /* counting at open: damage the volume works around */
		log_warn("vol: %s", msg);
}

/* A snapshot's block @rel (from lg_seg_start) in segment @seg, counted once. */
static void ck_snap_count(struct vol_checker *ck, uint64_t rel, uint64_t seg)
{
	if (ck_bit(ck->ck_snap_counted, rel))
		return;
	ck_bit_set(ck->ck_snap_counted, rel);
	ck_bit_set(ck->ck_snap_segs, seg);
	if (!ck_bit(ck->ck_state, rel))
		ck->ck_pinned[seg]++;
}

/*
 * A recent checkpoint's block @rel (from lg_seg_start) in segment @seg,
 * of @owner's tree: false if the state names it (live already) or a
 * walk met it before (a subtree met before), else its segment is the
 * checkpoint's. That skips subtrees across translations: a map block the
 * state and the checkpoint share may have its children elsewhere for
 * the checkpoint, which reads through its own translation, since the
 * cleaner moved them by their entries (and the same for a snapshot's
 * translation, or a newer checkpoint's). Every such move changed an
 * entry, so the block of the checkpoint's translation holding it is not
 * the state's: those blocks are read, whoever met them, and each entry
 * alive at the checkpoint gives its segment (ck_data,
 * ck_recent_entries). A block of the translation another checkpoint's
 * walk read already is skipped: that one is newer, and the same block
 * holds no entry alive at this checkpoint that was not alive at it.
 */
static bool ck_claim_recent(struct vol_checker *ck, uint64_t owner, uint64_t rel, uint64_t seg)
{
	uint64_t *met = owner == VOL_DAT_OWNER ? ck->ck_recent_dat : ck->ck_snap_seen;

	if (ck_bit(ck->ck_state, rel) || ck_bit(met, rel))
		return false;
	ck_bit_set(met, rel);
	ck_bit_set(ck->ck_recent_segs, seg);
	return true;
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
	if (ck->ck_in_snap) { /* a snapshot's block: false if met before */
		uint64_t rel = pblk - g->lg_seg_start, seg = vol_seg_of(ck->ck_vol, pblk);

		if (ck->ck_recent_segs)
			return ck_claim_recent(ck, owner, rel, seg);
		if (ck_bit(ck->ck_snap_seen, rel))
			return false;
		ck_bit_set(ck->ck_snap_seen, rel);
		ck_snap_count(ck, rel, seg);
		return true;
	}
	if (ck->ck_state)
		ck_bit_set(ck->ck_state, pblk - g->lg_seg_start);
	if (ck->ck_count_only) {
		ck->ck_counted[vol_seg_of(ck->ck_vol, pblk)]++;
		if (owner == VOL_SUF_OWNER && ck->ck_suf_counted)
			ck->ck_suf_counted[vol_seg_of(ck->ck_vol, pblk)]++;
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

/*
 * Translation block @dblk of the state being walked, read from the
 * device through its tree (cached); NULL data if it is a hole. 1: a
 * problem was reported.
 */
static int ck_dat_block(struct vol_checker *ck, uint64_t dblk, const unsigned char **data)
{
	struct vol *v = ck->ck_vol;
	uint32_t bs = v->v_block_size, slot = (uint32_t)(dblk % CK_DAT_CACHE);
	unsigned char *cached = ck->ck_dat_blocks + (size_t)slot * bs;
	unsigned char *node = ck->ck_dat_blocks + (size_t)CK_DAT_CACHE * bs;
	unsigned shift = v->v_map.bm_shift;
	uint64_t cur = ck->ck_dat_root;
	int err;

	*data = NULL;
	if (ck->ck_dat_tags[slot] == dblk + 1) {
		*data = cached;
		return 0;
	}
	if (!ck->ck_dat_height ||
	    ((uint64_t)ck->ck_dat_height * shift < 64 && dblk >> (ck->ck_dat_height * shift)))
		return 0; /* beyond the tree: a hole */
	for (unsigned l = ck->ck_dat_height; l >= 1 && cur; l--) {
		if (!vol_pblk_valid(v, cur)) {
			ck_problem(ck,
				   "translation block %" PRIu64 ": its map names block %" PRIu64
				   ", outside the segments",
				   dblk, cur);
			return 1;
		}
		err = bdev_read(v->v_bdev, cur, 1, node);
		if (err)
			return err;
		cur = bmap_entry(
		    node, (unsigned)((dblk >> (shift * (l - 1))) & (v->v_map.bm_entries - 1)));
	}
	if (!cur)
		return 0;
	if (!vol_pblk_valid(v, cur)) {
		ck_problem(ck,
			   "translation block %" PRIu64 " at %" PRIu64 " is outside the segments",
			   dblk, cur);
		return 1;
	}
	err = bdev_read(v->v_bdev, cur, 1, cached);
	if (err)
		return err;
	ck->ck_dat_tags[slot] = dblk + 1;
	*data = cached;
	return 0;
}

/*
 * Where the block @owner's tree names @entry (for (owner, index)) lies
 * in the state being walked: *pblk. 1 if it cannot be followed (a
 * problem was reported), or a negative errno.
 */
static int ck_resolve(struct vol_checker *ck, uint64_t owner, uint64_t index, uint64_t entry,
		      uint64_t *pblk)
{
	uint32_t per = vol_dat_per_block(ck->ck_vol->v_block_size);
	const unsigned char *data;
	struct vol_dat_entry e = {0};
	int err;

	*pblk = entry;
	if (!bmap_virtual(owner))
		return 0;
	if (entry >= ck->ck_dat_next) {
		ck_problem(ck,
			   "block (%" PRIu64 ", %#" PRIx64 ") names virtual block %" PRIu64
			   ", past the translation's %" PRIu64 " entries",
			   owner, index, entry, ck->ck_dat_next);
		return 1;
	}
	err = ck_dat_block(ck, entry / per, &data);
	if (err)
		return err;
	if (data)
		vol_dat_decode(data, (uint32_t)(entry % per), &e);
	if (!e.de_pblk || (!ck->ck_in_snap && e.de_death)) {
		ck_problem(ck,
			   "block (%" PRIu64 ", %#" PRIx64 ") names virtual block %" PRIu64
			   ", which is %s",
			   owner, index, entry, e.de_pblk ? "dead" : "free");
		return 1;
	}
	if (ck->ck_named) {
		if (ck_bit(ck->ck_named, entry)) {
			ck_problem(ck,
				   "virtual block %" PRIu64 " is named twice (again by (%" PRIu64
				   ", %#" PRIx64 "))",
				   entry, owner, index);
			return 1;
		}
		ck_bit_set(ck->ck_named, entry);
	}
	*pblk = e.de_pblk;
	return 0;
}

static int ck_tree(struct vol_checker *ck, uint64_t owner, uint64_t pblk, unsigned level,
		   uint64_t first, void *bufs);
static int ck_data(struct vol_checker *ck, uint64_t owner, uint64_t index, uint64_t pblk,
		   void *bufs);

/* A block of a recent checkpoint's translation (@data): the segment of
 * every entry alive at that checkpoint is the checkpoint's (ck_claim_recent). */
static int ck_recent_entries(struct vol_checker *ck, const unsigned char *data)
{
	uint32_t per = vol_dat_per_block(ck->ck_vol->v_block_size);

	for (uint32_t s = 0; s < per; s++) {
		struct vol_dat_entry e;

		vol_dat_decode(data, s, &e);
		if (e.de_pblk && vol_pblk_valid(ck->ck_vol, e.de_pblk) &&
		    vol_snaps_keep(&ck->ck_recent_delta, 1, e.de_birth,
				   e.de_death ? e.de_death : UINT64_MAX))
			ck_bit_set(ck->ck_recent_segs, vol_seg_of(ck->ck_vol, e.de_pblk));
	}
	return 0;
}

/* Block @index of the snapshot table (@data): keep its valid records. */
static int ck_snap_block(struct vol_checker *ck, uint64_t index, const unsigned char *data)
{
	uint32_t per = vol_snap_per_block(ck->ck_vol->v_block_size);

	for (uint32_t i = 0; i < per; i++) {
		struct vol_snap_info si;
		const char *why;
		int r = vol_snap_decode(ck->ck_vol, data, i, index, &si, &why);

		if (r > 0)
			continue;
		if (r < 0) {
			ck_problem(ck, "snapshot record %" PRIu64 ": %s", index * per + i, why);
			continue;
		}
		if (ck->ck_nsnaps == ck->ck_snaps_cap) {
			size_t cap = ck->ck_snaps_cap ? 2 * ck->ck_snaps_cap : 16;
			struct vol_snap_info *x = realloc(ck->ck_snaps, cap * sizeof(*x));

			if (!x)
				return -ENOMEM;
			ck->ck_snaps = x;
			ck->ck_snaps_cap = cap;
		}
		ck->ck_snaps[ck->ck_nsnaps++] = si;
	}
	return 0;
}

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
		if ((owner < VOL_CLIENT_META && owner != VOL_SNAP_OWNER) || owner > VOL_MAX_OWNER) {
			ck_problem(ck, "owner %" PRIu64 " (not a client owner) has a record",
				   owner);
			continue;
		}
		if ((!root && height) || height > v->v_height_max) {
			ck_problem(ck,
				   "owner %" PRIu64 ": bad record (root %" PRIu64 ", height %u)",
				   owner, root, height);
			continue;
		}
		if (height)
			err = ck_tree(ck, owner, root, height, 0, bufs);
		else /* a tree of height 0: its root is data block 0 */
			err = ck_data(ck, owner, 0, root, bufs);
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

	err = ck_resolve(ck, owner, nidx, pblk, &pblk);
	if (err)
		return err > 0 ? 0 : err;
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
		if (level > 1)
			err = ck_tree(ck, owner, child, level - 1, cfirst, data + v->v_block_size);
		else
			err = ck_data(ck, owner, cfirst, child, data + v->v_block_size);
	}
	return err;
}

/*
 * Data block @index of @owner at @pblk: claimed, and read and walked if
 * it holds records (of owners, or of snapshots); @bufs as for ck_tree.
 */
static int ck_data(struct vol_checker *ck, uint64_t owner, uint64_t index, uint64_t pblk,
		   void *bufs)
{
	struct vol *v = ck->ck_vol;
	unsigned char *data = bufs;
	int err;

	err = ck_resolve(ck, owner, index, pblk, &pblk);
	if (err)
		return err > 0 ? 0 : err;
	if (!ck_claim(ck, owner, index, pblk))
		return 0;
	if (owner != VOL_OTAB_OWNER && (owner != VOL_SNAP_OWNER || ck->ck_in_snap) &&
	    (owner != VOL_DAT_OWNER || !ck->ck_recent_segs))
		return 0;
	err = bdev_read(v->v_bdev, pblk, 1, data);
	if (err)
		return err;
	if (owner == VOL_DAT_OWNER)
		return ck_recent_entries(ck, data);
	if (owner == VOL_SNAP_OWNER)
		return ck_snap_block(ck, index, data);
	return ck_otab_block(ck, index, data, data + v->v_block_size);
}

/* Walk through the translation of @sr from now on (ck_dat_block). */
static void ck_dat_use(struct vol_checker *ck, const struct vol_sroot *sr)
{
	ck->ck_dat_root = sr->sr_dat_root;
	ck->ck_dat_height = sr->sr_dat_height;
	ck->ck_dat_next = sr->sr_dat_next;
	memset(ck->ck_dat_tags, 0, sizeof(ck->ck_dat_tags));
}

/*
 * Call @fn on every entry of the translation in use (ck_dat_use) in its
 * first @nblocks blocks, holes skipped; a block that does not read is
 * reported by ck_dat_block and skipped. Stops at @fn's error.
 */
static int ck_dat_each(struct vol_checker *ck, uint64_t nblocks,
		       int (*fn)(struct vol_checker *ck, uint64_t vblk,
				 const struct vol_dat_entry *e, void *arg),
		       void *arg)
{
	uint32_t per = vol_dat_per_block(ck->ck_vol->v_block_size);
	int err = 0;

	for (uint64_t dblk = 0; dblk < nblocks && !err; dblk++) {
		const unsigned char *data;

		err = ck_dat_block(ck, dblk, &data);
		if (err || !data) {
			err = err > 0 ? 0 : err;
			continue;
		}
		for (uint32_t s = 0; s < per && !err; s++) {
			struct vol_dat_entry e;

			vol_dat_decode(data, s, &e);
			err = fn(ck, dblk * per + s, &e, arg);
		}
	}
	return err;
}

/* ck_dat_each: one entry of the state @arg's translation (ck_dat_entries). */
static int ck_dat_entry(struct vol_checker *ck, uint64_t vblk, const struct vol_dat_entry *e,
			void *arg)
{
	const struct vol_sroot *sr = arg;

	if (!e->de_pblk && !e->de_birth && !e->de_death)
		return 0;
	if (vblk >= sr->sr_dat_next || !vblk)
		ck_problem(ck, "translation entry %" PRIu64 " is used, past %" PRIu64, vblk,
			   sr->sr_dat_next);
	else if (!e->de_pblk || !vol_pblk_valid(ck->ck_vol, e->de_pblk))
		ck_problem(ck,
			   "translation entry %" PRIu64 " names block %" PRIu64
			   ", outside the segments",
			   vblk, e->de_pblk);
	else if (!e->de_birth || e->de_birth > sr->sr_delta || e->de_death > sr->sr_delta ||
		 (e->de_death && e->de_death < e->de_birth))
		ck_problem(ck,
			   "translation entry %" PRIu64 ": born in delta %" PRIu32
			   ", dead in %" PRIu32 " (state %" PRIu64 ")",
			   vblk, e->de_birth, e->de_death, sr->sr_delta);
	else if (!e->de_death && !ck_bit(ck->ck_named, vblk))
		ck_problem(
		    ck, "virtual block %" PRIu64 " at %" PRIu64 " is current, but nothing names it",
		    vblk, e->de_pblk);
	return 0;
}

/*
 * After the walk of the state (@sr): every entry of its translation, and
 * one block past its end. An entry the state names is current (ck_resolve
 * checked it); one it does not name is free or dead; every one past
 * sr_dat_next is free; a birth or death is no later than the state, a
 * death after the birth.
 */
static int ck_dat_entries(struct vol_checker *ck, const struct vol_sroot *sr)
{
	uint32_t per = vol_dat_per_block(ck->ck_vol->v_block_size);

	return ck_dat_each(ck, (sr->sr_dat_next + per - 1) / per + 1, ck_dat_entry, (void *)sr);
}

/*
 * The walk of one state: its super root, its translation's tree, the
 * owner table's map and everything below (each virtual block resolved
 * through that translation).
 */
static int ck_walk_state(struct vol_checker *ck, uint64_t sr_blk, const struct vol_sroot *sr)
{
	struct vol *v = ck->ck_vol;
	/* a block per level of the owner table's map, its data block, and an
	 * owner's map below it; or the translation's map */
	size_t nbufs = MAX(MAX((size_t)v->v_otab_height_max + 2 + v->v_height_max,
			       (size_t)v->v_dat_height_max + 1),
			   (size_t)v->v_ckpt_height_max + 1);
	void *bufs = malloc(nbufs * v->v_block_size);
	bool names = !ck->ck_count_only && !ck->ck_in_snap;
	int err = 0;

	if (!bufs)
		return -ENOMEM;
	if (!ck->ck_dat_blocks)
		ck->ck_dat_blocks = malloc((size_t)(CK_DAT_CACHE + 1) * v->v_block_size);
	if (names)
		ck->ck_named = calloc((size_t)(sr->sr_dat_next + 63) / 64 + 1, sizeof(uint64_t));
	if (!ck->ck_dat_blocks || (names && !ck->ck_named)) {
		err = -ENOMEM;
		goto out;
	}
	ck_dat_use(ck, sr);
	/* a snapshot of a state met before, or a bad one (a recent checkpoint
	 * a snapshot's walk met read through another translation) */
	if (sr_blk && !ck_claim(ck, VOL_SROOT_OWNER, 0, sr_blk) && ck->ck_in_snap &&
	    !ck->ck_recent_segs)
		goto out;
	if (sr->sr_dat_height)
		err = ck_tree(ck, VOL_DAT_OWNER, sr->sr_dat_root, sr->sr_dat_height, 0, bufs);
	/* the state's usage and checkpoint files: no snapshot reads its own */
	if (!err && sr->sr_suf_height && !ck->ck_in_snap)
		err = ck_tree(ck, VOL_SUF_OWNER, sr->sr_suf_root, sr->sr_suf_height, 0, bufs);
	if (!err && sr->sr_ckpt_height && !ck->ck_in_snap)
		err = ck_tree(ck, VOL_CKPT_OWNER, sr->sr_ckpt_root, sr->sr_ckpt_height, 0, bufs);
	if (!err && sr->sr_otab_height)
		err = ck_tree(ck, VOL_OTAB_OWNER, sr->sr_otab_root, sr->sr_otab_height, 0, bufs);
	if (!err && names)
		err = ck_dat_entries(ck, sr);
out:
	free(ck->ck_named);
	ck->ck_named = NULL;
	free(bufs);
	return err;
}

/* Snapshot @si's super root, read and checked; -EUCLEAN if it is not one. */
static int ck_snap_sroot(struct vol_checker *ck, const struct vol_snap_info *si,
			 struct vol_sroot *sr)
{
	const char *why;
	int err = vol_snap_state(ck->ck_vol, si, sr, &why);

	if (err == -EUCLEAN)
		ck_problem(ck,
			   "snapshot \"%s\" (super root %" PRIu64 ", delta %" PRIu64
			   ", translation super root %" PRIu64 "): %s",
			   si->vsi_name, si->vsi_sroot, si->vsi_delta, si->vsi_xlate, why);
	return err;
}

/* A zeroed bitmap of one bit per block of the segments; NULL if out of memory. */
static uint64_t *ck_bitmap_new(const struct vol_checker *ck)
{
	const struct log_geometry *g = &ck->ck_vol->v_geo;

	return calloc((size_t)((g->lg_nsegments * g->lg_seg_blocks + 63) / 64), sizeof(uint64_t));
}

/*
 * After the snapshots' walks (ck_in_snap): every entry of the state's
 * translation (@sr) whose life, [birth, death) or from birth on if it is
 * current, holds a snapshot's delta names a block that snapshot keeps,
 * wherever it lies now: the cleaner may have moved it after the
 * translation the snapshot reads through was written, and a re-root will
 * name it there (docs/DESIGN.md, Snapshots). A dead one is counted as the
 * snapshots' (a block their walks met is not counted twice); a current
 * one is the state's, and its segment is marked, so that when it dies
 * there it is pinned, not released. The liveness rule read off the
 * translation: what keeps a moved copy until its snapshot is re-rooted.
 */
static int ck_snap_live_entry(struct vol_checker *ck, uint64_t vblk, const struct vol_dat_entry *e,
			      void *arg)
{
	const uint64_t *deltas = arg;

	if (e->de_pblk && vol_pblk_valid(ck->ck_vol, e->de_pblk) &&
	    vol_snaps_keep(deltas, ck->ck_nsnaps, e->de_birth,
			   e->de_death ? e->de_death : UINT64_MAX))
		(void)ck_claim(ck, VOL_DAT_OWNER, vblk, e->de_pblk);
	return 0;
}

static int ck_snap_live_entries(struct vol_checker *ck, const struct vol_sroot *sr)
{
	uint32_t per = vol_dat_per_block(ck->ck_vol->v_block_size);
	uint64_t *deltas = malloc(ck->ck_nsnaps * sizeof(*deltas));
	int err;

	if (!deltas)
		return -ENOMEM;
	for (size_t i = 0; i < ck->ck_nsnaps; i++)
		deltas[i] = ck->ck_snaps[i].vsi_delta;
	vol_snaps_sort(deltas, ck->ck_nsnaps);
	ck_dat_use(ck, sr);
	err = ck_dat_each(ck, (sr->sr_dat_next + per - 1) / per, ck_snap_live_entry, deltas);
	free(deltas);
	return err;
}

struct ck_snap_walk {
	size_t sw_i;		/* in ck_snaps */
	struct vol_sroot sw_sr; /* its state, with the translation it reads through */
};

static int ck_snap_walk_cmp(const void *a, const void *b)
{
	const struct ck_snap_walk *x = a, *y = b;

	if (x->sw_sr.sr_moved != y->sw_sr.sr_moved)
		return x->sw_sr.sr_moved < y->sw_sr.sr_moved ? -1 : 1;
	return x->sw_i < y->sw_i ? -1 : x->sw_i > y->sw_i;
}

/* The snapshots' walks (ck_in_snap), grouped by the moves their translations
 * have (sr_moved): ck_state's comment. */
static int ck_walk_snaps(struct vol_checker *ck, struct ck_snap_walk *sw, size_t n)
{
	const struct log_geometry *g = &ck->ck_vol->v_geo;
	size_t bytes = (size_t)((g->lg_nsegments * g->lg_seg_blocks + 63) / 64) * sizeof(uint64_t);
	int err = 0;

	qsort(sw, n, sizeof(*sw), ck_snap_walk_cmp);
	for (size_t k = 0; k < n && !err; k++) {
		const struct vol_snap_info *si = &ck->ck_snaps[sw[k].sw_i];

		if (k && sw[k].sw_sr.sr_moved != sw[k - 1].sw_sr.sr_moved)
			memset(ck->ck_snap_seen, 0, bytes); /* moves between the translations */
		/* the translation super root is the snapshot's block too (its
		 * translation's tree is walked with the rest); counted, not
		 * seen: a snapshot whose own super root it is walks its state */
		if (si->vsi_xlate)
			ck_snap_count(ck, si->vsi_xlate - g->lg_seg_start,
				      vol_seg_of(ck->ck_vol, si->vsi_xlate));
		err = ck_walk_state(ck, si->vsi_sroot, &sw[k].sw_sr);
	}
	/* every snapshot's block is seen by what walks after (recent
	 * checkpoints, the liveness rule's entries) */
	memcpy(ck->ck_snap_seen, ck->ck_snap_counted, bytes);
	return err;
}

/*
 * The walk: the state (@sr at @sr_blk), then, when ck_state is set, each
 * snapshot its table names. A snapshot whose super root is bad is a
 * problem, and left out of the table kept.
 */
static int ck_walk(struct vol_checker *ck, uint64_t sr_blk, const struct vol_sroot *sr)
{
	int err = ck_walk_state(ck, sr_blk, sr);
	struct ck_snap_walk *sw;
	size_t kept = 0;

	vol_table_clear(&ck->ck_seen, NULL);
	if (err || !ck->ck_state || !ck->ck_nsnaps)
		return err;
	if (!ck->ck_snap_seen) /* only now: most volumes have no snapshot */
		ck->ck_snap_seen = ck_bitmap_new(ck);
	if (!ck->ck_snap_counted)
		ck->ck_snap_counted = ck_bitmap_new(ck);
	sw = malloc(ck->ck_nsnaps * sizeof(*sw));
	if (!ck->ck_snap_seen || !ck->ck_snap_counted || !sw) {
		free(sw);
		return -ENOMEM;
	}
	ck->ck_in_snap = true;
	for (size_t i = 0; i < ck->ck_nsnaps && !err; i++) {
		err = ck_snap_sroot(ck, &ck->ck_snaps[i], &sw[kept].sw_sr);
		if (err == -EUCLEAN) {
			err = 0;
			continue;
		}
		ck->ck_snaps[kept] = ck->ck_snaps[i];
		sw[kept].sw_i = kept;
		kept++;
	}
	ck->ck_nsnaps = kept;
	if (!err)
		err = ck_walk_snaps(ck, sw, kept);
	free(sw);
	if (!err && kept)
		err = ck_snap_live_entries(ck, sr);
	ck->ck_in_snap = false;
	return err;
}

/* ck_state, which the snapshots' walks need (ck_walk allocates ck_snap_seen); -ENOMEM. */
static int ck_snap_bitmaps(struct vol_checker *ck)
{
	ck->ck_state = ck_bitmap_new(ck);
	return ck->ck_state ? 0 : -ENOMEM;
}

static void ck_free(struct vol_checker *ck)
{
	free(ck->ck_dat_blocks);
	free(ck->ck_state);
	free(ck->ck_snap_seen);
	free(ck->ck_snap_counted);
	free(ck->ck_recent_dat);
	free(ck->ck_snaps);
}

struct ck_recent {
	struct vol_checker *cr_ck;
	struct vol_count *cr_cn;
	uint64_t cr_state; /* the state's delta: walked already */
	unsigned cr_walked;
};

static int ck_recent_one(void *arg, const struct vol_checkpoint *cp, const struct vol_sroot *sr)
{
	struct ck_recent *cr = arg;
	uint64_t problems = cr->cr_ck->ck_problems;

	if (cp->vcp_delta == cr->cr_state)
		return 0;
	cr->cr_ck->ck_recent_delta = cp->vcp_delta;
	if (cr->cr_walked++ == VOL_OPEN_CHECKPOINTS ||
	    ck_walk_state(cr->cr_ck, cp->vcp_sroot, sr) || cr->cr_ck->ck_problems != problems)
		return 1; /* this checkpoint is not counted whole */
	cr->cr_cn->vcn_recent_from = cp->vcp_delta;
	return 0;
}

/*
 * After ck_walk: the checkpoints below @sr, newest first, while readable
 * (sr_readable_from) and VOL_OPEN_CHECKPOINTS at most, into vcn_recent.
 * A subtree of the state, or met in a snapshot's or a newer checkpoint's
 * walk, is skipped, and what the cleaner moved since is found in the
 * blocks of the checkpoint's translation (ck_claim_recent): the cost is
 * what the checkpoints changed, not their size. vcn_recent_from: the
 * oldest walked whole. A bad or unreadable block ends the walk there
 * (the checkpoint it was in is not counted).
 */
static void ck_walk_recent(struct vol_checker *ck, uint64_t sr_blk, const struct vol_sroot *sr,
			   struct vol_count *cn)
{
	struct ck_recent cr = {ck, cn, sr->sr_delta, 0};

	cn->vcn_recent_from = sr->sr_delta;
	if (!ck->ck_snap_seen)
		ck->ck_snap_seen = ck_bitmap_new(ck);
	ck->ck_recent_dat = ck_bitmap_new(ck);
	if (!ck->ck_snap_seen || !ck->ck_recent_dat)
		return;
	ck->ck_in_snap = true;
	ck->ck_recent_segs = cn->vcn_recent;
	/* from the state's own super root, so that the next is older than it */
	vol_ckpt_walk(ck->ck_vol, sr_blk, sr->sr_readable_from, ck_recent_one, &cr);
	ck->ck_in_snap = false;
	ck->ck_recent_segs = NULL;
}

int vol_count_durable(struct vol *v, uint64_t sr_blk, const struct vol_sroot *sr,
		      struct vol_count *cn)
{
	struct vol_checker ck = {.ck_vol = v,
				 .ck_count_only = true,
				 .ck_counted = cn->vcn_live,
				 .ck_suf_counted = cn->vcn_suf,
				 .ck_pinned = cn->vcn_pinned,
				 .ck_snap_segs = cn->vcn_snap};
	int err = ck_snap_bitmaps(&ck);

	if (!err)
		err = ck_walk(&ck, sr_blk, sr);
	if (!err && cn->vcn_recent)
		ck_walk_recent(&ck, sr_blk, sr, cn);
	cn->vcn_snaps = NULL;
	cn->vcn_nsnaps = 0;
	if (!err) {
		cn->vcn_snaps = ck.ck_snaps;
		cn->vcn_nsnaps = ck.ck_nsnaps;
		ck.ck_snaps = NULL;
	}
	ck_free(&ck);
	return err;
}

static void ck_usage_problem(void *arg, const char *msg)
{
	ck_problem(arg, "%s", msg);
}

/*
 * The durable checkpoint file against the chain (ckpt.c (1)), for the
 * deltas in its range that are readable: each checkpoint of the chain
 * has its entry, and no entry between them names anything. Where the
 * chain ends early (a super root that is not one: the older
 * checkpoints are not readable), the entries below it are not compared.
 */
static int ck_ckpt_file(struct vol_checker *ck)
{
	struct vol *v = ck->ck_vol;
	const struct vol_sroot *top = &ck->ck_sr;
	uint64_t lo = MAX(top->sr_ckpt_from, top->sr_readable_from);
	uint64_t blk = top->sr_prev, newer = top->sr_delta, d = top->sr_ckpt_next;
	int err = 0;

	if (!top->sr_ckpt_from || lo >= top->sr_ckpt_next)
		return 0;
	for (;;) {
		struct vol_sroot sr = {0};
		struct vol_ckpt_entry e;
		bool valid =
		    blk && !vol_sroot_load(v, blk, &sr) && sr.sr_delta < newer && sr.sr_otab_height;
		uint64_t until = valid ? MAX(sr.sr_delta + 1, lo) : blk ? newer : lo;

		if (valid && sr.sr_delta >= top->sr_ckpt_next) { /* above the range */
			newer = sr.sr_delta;
			blk = sr.sr_prev;
			continue;
		}
		/* no entry between the chain's checkpoints */
		for (; d > until && !err; d--) {
			err = vol_ckpt_read(v, top, d - 1, &e);
			if (!err && e.ce_sroot)
				ck_problem(ck,
					   "checkpoint file entry of delta %" PRIu64
					   " names block %" PRIu64 ", no checkpoint of the chain",
					   d - 1, e.ce_sroot);
		}
		if (err || !valid || sr.sr_delta < lo)
			break;
		err = vol_ckpt_read(v, top, sr.sr_delta, &e);
		if (!err && e.ce_sroot != blk)
			ck_problem(ck,
				   "checkpoint file entry of delta %" PRIu64 " names block %" PRIu64
				   ", the checkpoint chain %" PRIu64,
				   sr.sr_delta, e.ce_sroot, blk);
		d = sr.sr_delta;
		newer = sr.sr_delta;
		blk = sr.sr_prev;
	}
	if (err == -EUCLEAN) {
		ck_problem(ck, "the checkpoint file of delta %" PRIu64 " leaves the segments",
			   top->sr_delta);
		err = 0;
	}
	return err;
}

/* The walk's counts, and the usage file's entries to compare with them. */
struct ck_suf {
	struct vol_checker *cs_ck;
	uint32_t *cs_here; /* per segment: blocks of the file's tree */
	uint64_t cs_sr_seg;
};

static void ck_suf_block(void *arg, uint64_t pblk)
{
	struct ck_suf *cs = arg;

	cs->cs_here[vol_seg_of(cs->cs_ck->ck_vol, pblk)]++;
}

static int ck_suf_entry(void *arg, uint64_t seg, const struct vol_suf_entry *e)
{
	struct ck_suf *cs = arg;
	struct vol_checker *ck = cs->cs_ck;
	uint64_t live = (uint64_t)e->se_live + cs->cs_here[seg] + (seg == cs->cs_sr_seg);

	if (!log_seg_in_use(ck->ck_vol->v_log, seg))
		return 0; /* suf.c (2) */
	if (live != ck->ck_counted[seg])
		ck_problem(ck,
			   "segment usage entry of segment %" PRIu64 ": %" PRIu64
			   " live blocks, the walk counts %" PRIu32,
			   seg, live, ck->ck_counted[seg]);
	else if (e->se_pinned < ck->ck_pinned[seg])
		ck_problem(ck,
			   "segment usage entry of segment %" PRIu64 ": %" PRIu32
			   " blocks only snapshots name, the walk counts %" PRIu32,
			   seg, e->se_pinned, ck->ck_pinned[seg]);
	else if (ck_bit(ck->ck_snap_segs, seg) && !(e->se_flags & VOL_SUF_SNAP))
		ck_problem(ck,
			   "segment usage entry of segment %" PRIu64
			   " does not mark it as holding snapshot blocks",
			   seg);
	else if ((e->se_flags & ~VOL_SUF_SNAP) || e->se_delta > ck->ck_sr.sr_delta)
		ck_problem(ck,
			   "segment usage entry of segment %" PRIu64 ": flags %#" PRIx32
			   ", delta %" PRIu32 " (state %" PRIu64 ")",
			   seg, e->se_flags, e->se_delta, ck->ck_sr.sr_delta);
	return 0;
}

/*
 * After a clean walk: the durable state's usage file against the walk's
 * counts (ck_counted, ck_pinned, ck_snap_segs), if it says it is current.
 */
static int ck_suf_file(struct vol_checker *ck)
{
	struct vol *v = ck->ck_vol;
	const struct vol_suf_ops ops = {ck_suf_entry, NULL};
	const struct vol_sroot *sr = &ck->ck_sr;
	struct ck_suf cs = {ck, NULL, vol_seg_of(v, ck->ck_sr_blk)};
	int err;

	if (!sr->sr_suf_current)
		return 0;
	cs.cs_here = calloc(v->v_geo.lg_nsegments, sizeof(uint32_t));
	if (!cs.cs_here)
		return -ENOMEM;
	/* the tree first: an entry's block may come before a block of the
	 * tree in another segment */
	err = vol_suf_read(v, sr->sr_suf_root, sr->sr_suf_height,
			   &(const struct vol_suf_ops){NULL, ck_suf_block}, &cs);
	if (!err)
		err = vol_suf_read(v, sr->sr_suf_root, sr->sr_suf_height, &ops, &cs);
	if (err == -EUCLEAN) {
		ck_problem(ck, "the segment usage file of delta %" PRIu64 " is not one",
			   sr->sr_delta);
		err = 0;
	}
	free(cs.cs_here);
	return err;
}

int vol_check(struct vol *v, void (*report)(void *arg, const char *msg), void *arg,
	      struct vol_check_stats *st)
{
	struct vol_checker ck = {.ck_vol = v, .ck_report = report, .ck_arg = arg};
	uint64_t nseg = v->v_geo.lg_nsegments, kept_blk;
	struct vol_count kept;
	int err;

	/* the state the kept counts describe, and those counts, at once: a
	 * commit that settles during the walk changes neither */
	err = vol_usage_kept(v, &kept, &kept_blk);
	if (err)
		return err;
	vol_sr_get(v, &ck.ck_sr, &ck.ck_sr_blk);
	if (kept_blk && kept_blk != ck.ck_sr_blk &&
	    (err = vol_sroot_load(v, kept_blk, &ck.ck_sr))) {
		vol_usage_kept_free(&kept);
		return err;
	}
	if (kept_blk)
		ck.ck_sr_blk = kept_blk;
	ck.ck_counted = calloc(nseg, sizeof(*ck.ck_counted));
	ck.ck_pinned = calloc(nseg, sizeof(*ck.ck_pinned));
	ck.ck_snap_segs = calloc((nseg + 63) / 64, sizeof(uint64_t));
	err = ck.ck_counted && ck.ck_pinned && ck.ck_snap_segs ? ck_snap_bitmaps(&ck) : -ENOMEM;
	if (!err)
		err = ck_walk(&ck, ck.ck_sr_blk, &ck.ck_sr);
	if (!err && !ck.ck_problems) {
		struct vol_count cn = {.vcn_live = ck.ck_counted,
				       .vcn_pinned = ck.ck_pinned,
				       .vcn_snap = ck.ck_snap_segs};

		vol_usage_check(v, &cn, &kept, ck.ck_sr.sr_readable_from, ck_usage_problem, &ck);
		err = ck_suf_file(&ck);
		if (!err)
			err = ck_ckpt_file(&ck);
	}
	free(ck.ck_counted);
	free(ck.ck_pinned);
	free(ck.ck_snap_segs);
	vol_usage_kept_free(&kept);
	ck_free(&ck);
	if (st)
		*st = (struct vol_check_stats){.cs_blocks = ck.ck_blocks};
	if (err)
		return err;
	return (int)MIN(ck.ck_problems, (uint64_t)INT32_MAX);
}

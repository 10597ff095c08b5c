/*
 * suf.c - the segment usage file: each segment's counts, kept on disk
 * so that an open reads them instead of walking every map.
 *
 * Owner 4's data, one 16-byte entry per segment (docs/FORMAT.md,
 * "Segment usage block"):
 *
 *   entry s = { live, pinned, delta, flags }   four le32
 *
 * live and pinned are usage.c's counts (vu_live, vu_pinned), delta is
 * the delta of the segment's youngest block while it holds one (vu_age,
 * the cleaner's age) and the delta that emptied it once it holds none
 * (vu_emptied: what releasing it costs the recent checkpoints), and
 * flags bit 0 says a snapshot may name a block there (vu_snap). Like
 * the translation's, the file's tree names addresses, and the super
 * root names its root.
 *
 * Each commit writes the entries of the segments it changed, after the
 * translation and before the super root (commit.c (4c)). An entry
 * cannot count the blocks of the file that holds it, nor the super root
 * written after it, without a fixed point, so it leaves both out: the
 * file's live count of a segment is its count less the blocks of the
 * file's own tree there (vu_suf_here) and less the super root of the
 * state, and an open adds them back (suf_read gives each block of the
 * tree; the super root is the one the open read). A block of the file
 * left behind is never pinned: no snapshot reads the file. An old super
 * root left behind in a marked segment is pinned like any block (a
 * snapshot names its super root).
 *
 * The commit computes each changed segment's entry as the settle will
 * leave its counts (suf_commit, "the projection"): the counts of the
 * durable state, plus the blocks the commit wrote, less those its
 * changes left behind (pinned, in a marked segment, if a snapshot may
 * keep them: vol_usage_may_keep), so an entry never waits for the
 * commit to be durable. A segment whose counts change otherwise (a
 * snapshot marks it, or is taken between the projection and the
 * settle, a recount after a deletion, a commit that wrote no entry) is
 * noted in vu_suf_dirty, and the next commit that writes entries
 * writes its entry too.
 *
 * A commit pays for the blocks it writes here out of what its delta's
 * operations reserved and it did not use, or reserves them itself (the
 * kept reserve holds the most it can need: vol_suf_worst). If even that
 * fails, it writes no entry, and its super root says the file is not
 * current (sr_suf_current false): the next open walks the maps as
 * before, and the next commit that writes entries writes every one
 * that changed meanwhile, which makes the file current again. So does
 * a damaged translation entry met (the block it named stays counted
 * until a walk), until a recount. A commit with nothing but its super
 * root to write (commit.c) writes entries only for the dirty segments
 * and the old super root's, when that one empties or a snapshot marked
 * it; so does every commit. A segment left holding nothing but the
 * file's own old blocks is not rewritten when they go: its entry keeps
 * the delta that emptied it of everything else, which only the file's
 * blocks of older checkpoints outlive, and nothing reads those.
 *
 * Invariants
 *   (1) With sr_suf_current, every entry of a segment the log has in
 *       use holds that segment's counts in the state of that super
 *       root, less the blocks of the file's tree and the super root
 *       there; its pinned count and mark are at least what the
 *       snapshots whose records are durable need (usage.c (4)).
 *   (2) An entry of a free segment means nothing: the open reads the
 *       log's use first.
 *   (3) The file's blocks are dirtied only by the commit, in its own
 *       delta (bmap_change_block): the front end never touches them.
 *
 * Commit thread only, but for suf_read (vol_open, vol_check: no commit
 * runs).
 */
#include "vol/vol_internal.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define SUF_DIRTY_BLOCKS 64 /* blocks of dirty entries one commit writes, at most */

void vol_suf_decode(const void *block, uint32_t slot, struct vol_suf_entry *e)
{
	const unsigned char *p = (const unsigned char *)block + (size_t)slot * VOL_SUF_ENTRY_BYTES;

	e->se_live = util_get_le32(p);
	e->se_pinned = util_get_le32(p + 4);
	e->se_delta = util_get_le32(p + 8);
	e->se_flags = util_get_le32(p + 12);
}

static void suf_encode(void *block, uint32_t slot, const struct vol_suf_entry *e)
{
	unsigned char *p = (unsigned char *)block + (size_t)slot * VOL_SUF_ENTRY_BYTES;

	util_put_le32(p, e->se_live);
	util_put_le32(p + 4, e->se_pinned);
	util_put_le32(p + 8, e->se_delta);
	util_put_le32(p + 12, e->se_flags);
}

/* ---- reading ---------------------------------------------------------------- */

struct suf_reader {
	struct vol *sr_vol;
	const struct vol_suf_ops *sr_ops;
	void *sr_arg;
	unsigned char *sr_data; /* a data block's room */
};

/* bmap_dev_walk: a block of the file's tree; a data block's entries. */
static int suf_read_block(void *arg, uint64_t pblk, unsigned level, uint64_t index)
{
	struct suf_reader *rd = arg;
	struct vol *v = rd->sr_vol;
	uint32_t per = vol_suf_per_block(v->v_block_size);
	int err;

	if (index >= vol_suf_blocks(v)) {
		log_err("vol: segment usage block %" PRIu64 " (level %u) at %" PRIu64
			" is outside the file",
			index, level, pblk);
		return -EUCLEAN;
	}
	if (rd->sr_ops->so_block)
		rd->sr_ops->so_block(rd->sr_arg, pblk);
	if (level || !rd->sr_ops->so_entry)
		return 0;
	err = bdev_read(v->v_bdev, pblk, 1, rd->sr_data);
	for (uint32_t s = 0; !err && s < per && index * per + s < v->v_geo.lg_nsegments; s++) {
		struct vol_suf_entry e;

		vol_suf_decode(rd->sr_data, s, &e);
		err = rd->sr_ops->so_entry(rd->sr_arg, index * per + s, &e);
	}
	return err;
}

int vol_suf_read(struct vol *v, uint64_t root, unsigned height, const struct vol_suf_ops *ops,
		 void *arg)
{
	struct suf_reader rd = {v, ops, arg, NULL};
	int err;

	if (height > v->v_suf_height_max)
		return -EUCLEAN;
	rd.sr_data = malloc(v->v_block_size);
	if (!rd.sr_data)
		return -ENOMEM;
	err = bmap_dev_walk(v, root, height, suf_read_block, &rd);
	free(rd.sr_data);
	return err;
}

/* ---- writing ------------------------------------------------------------------ */

/* The most blocks of the file, and of its map, a commit writes. */
static uint64_t suf_map_blocks(const struct vol *v)
{
	uint64_t n = 0, blocks = vol_suf_blocks(v), e = v->v_block_size / 8;

	for (unsigned l = 1; l <= v->v_suf_height_max; l++) {
		blocks = (blocks + e - 1) / e;
		n += blocks;
	}
	return n;
}

uint64_t vol_suf_blocks(const struct vol *v)
{
	uint32_t per = vol_suf_per_block(v->v_block_size);

	return (v->v_geo.lg_nsegments + per - 1) / per;
}

/* What writing @nblocks blocks of the file may cost the commit. */
static uint64_t suf_cost(const struct vol *v, uint64_t nblocks)
{
	uint64_t payload = nblocks + MIN(nblocks * v->v_suf_height_max, suf_map_blocks(v));

	return payload + vol_log_overhead(v, payload);
}

uint64_t vol_suf_worst(const struct vol *v)
{
	return suf_cost(v, vol_suf_blocks(v));
}

static int suf_cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

/* Note segment @seg as touched (unless @pblk lies outside the segments). */
static int suf_touch_pblk(struct vol *v, struct vol_suf_commit *sc, uint64_t pblk, int32_t *n)
{
	uint64_t seg;
	int err;

	if (!vol_pblk_valid(v, pblk))
		return 0; /* damage: settle leaves it out too */
	seg = vol_seg_of(v, pblk);
	err = vol_u64vec_push(&sc->sc_touched, seg);
	if (!err) /* counted only once touched: suf_scratch_clear zeroes it */
		n[seg]++;
	return err;
}

/*
 * The entry segment @seg will have once the commit settles (vu_lock):
 * see the projection above. @sr_seg: the durable super root's segment
 * (left behind by this commit), @delta this commit's.
 */
static struct vol_suf_entry suf_project(struct vol *v, uint64_t seg, uint64_t sr_seg,
					uint32_t delta)
{
	struct vol_usage *u = &v->v_usage;
	int64_t born = u->vu_suf_born_n[seg], gone = u->vu_suf_gone_n[seg];
	int64_t kept = u->vu_suf_kept_n[seg];
	int64_t live = (int64_t)u->vu_live[seg] - u->vu_suf_here[seg] - (seg == sr_seg);
	bool marked = vol_seg_snap(u->vu_snap, seg);
	struct vol_suf_entry e = {0};

	live += born - gone;
	e.se_live = (uint32_t)MAX(live, 0);
	e.se_pinned = u->vu_pinned[seg] + (marked ? (uint32_t)(kept + (seg == sr_seg)) : 0);
	e.se_flags = marked ? VOL_SUF_SNAP : 0;
	if (e.se_live || e.se_pinned)
		e.se_delta = born ? delta : u->vu_age[seg];
	else if (!log_seg_in_use(v->v_log, seg))
		e.se_delta = 0; /* free: its release protects nothing (suf.c (2)) */
	else if (vol_seg_snap(u->vu_cand, seg) && !u->vu_live[seg] && !u->vu_pinned[seg])
		e.se_delta = (uint32_t)u->vu_emptied[seg]; /* empty already: keeps its delta */
	else
		e.se_delta = delta;
	return e;
}

struct suf_put {
	const uint64_t *sp_segs;
	const struct vol_suf_entry *sp_ents;
	size_t sp_n;
	uint32_t sp_per;
};

/* bmap_change_block: the entries of one block of the file. */
static void suf_put(void *arg, void *data)
{
	const struct suf_put *sp = arg;

	for (size_t i = 0; i < sp->sp_n; i++)
		suf_encode(data, (uint32_t)(sp->sp_segs[i] % sp->sp_per), &sp->sp_ents[i]);
}

/*
 * Collect the segments the commit changes into sc_touched (sorted, each
 * once), with the counts the projection needs; the dirty ones are taken
 * out of vu_suf_dirty. vu_lock held.
 */
static int suf_collect(struct vol *v, struct vol_suf_commit *sc, uint64_t sr_seg)
{
	struct vol_usage *u = &v->v_usage;
	uint64_t nseg = v->v_geo.lg_nsegments;
	size_t n = 0;
	int err = 0;

	/*
	 * The dirty ones, lowest first, in SUF_DIRTY_BLOCKS blocks of the file
	 * at most (a snapshot marks every segment: on a large volume the
	 * whole file would not fit the cache beside the delta), the rest left
	 * for the next commits (sc_partial: the file is not current till
	 * then). They leave the bitmap only once all are taken; a failure
	 * puts back every touched one (vol_suf_commit_end).
	 */
	uint32_t per = vol_suf_per_block(v->v_block_size);
	uint64_t stop = nseg, blocks = 0, last = UINT64_MAX;

	for (uint64_t w = 0; w < (nseg + 63) / 64 && !err && stop == nseg; w++) {
		uint64_t bits = u->vu_suf_dirty[w];

		while (bits && !err) {
			uint64_t seg = w * 64 + (uint64_t)__builtin_ctzll(bits);

			if (seg / per != last && blocks == SUF_DIRTY_BLOCKS) {
				stop = seg;
				sc->sc_partial = true;
				break;
			}
			blocks += seg / per != last;
			last = seg / per;
			err = vol_u64vec_push(&sc->sc_touched, seg);
			bits &= bits - 1;
		}
	}
	for (uint64_t s = 0; !err && s < stop; s += 64) /* the taken ones */
		u->vu_suf_dirty[s / 64] &= stop - s >= 64 ? 0 : ~((1ull << (stop - s)) - 1);
	for (size_t i = 0; i < u->vu_born.uv_n && !err; i++)
		err = suf_touch_pblk(v, sc, u->vu_born.uv_v[i], u->vu_suf_born_n);
	u->vu_proj_newest = u->vu_snap_newest; /* a later creation: vol_usage_settle */
	for (size_t i = 0; i < u->vu_gone.uv_n && !err; i++) {
		uint64_t pblk = u->vu_gone.uv_v[i];

		err = suf_touch_pblk(v, sc, pblk, u->vu_suf_gone_n);
		if (!err && vol_pblk_valid(v, pblk) &&
		    vol_usage_may_keep(u, u->vu_gone_birth.uv_v[i]))
			u->vu_suf_kept_n[vol_seg_of(v, pblk)]++;
	}
	/* the super root left behind: pinned if its segment is marked, and
	 * the segment emptied if it held nothing else */
	if (!err && sr_seg < nseg &&
	    (vol_seg_snap(u->vu_snap, sr_seg) ||
	     (int64_t)u->vu_live[sr_seg] - u->vu_suf_here[sr_seg] - 1 + u->vu_suf_born_n[sr_seg] -
		     u->vu_suf_gone_n[sr_seg] <=
		 0))
		err = vol_u64vec_push(&sc->sc_touched, sr_seg);
	if (err)
		return err;
	if (sc->sc_touched.uv_n)
		qsort(sc->sc_touched.uv_v, sc->sc_touched.uv_n, sizeof(uint64_t), suf_cmp_u64);
	for (size_t i = 0; i < sc->sc_touched.uv_n; i++)
		if (!n || sc->sc_touched.uv_v[n - 1] != sc->sc_touched.uv_v[i])
			sc->sc_touched.uv_v[n++] = sc->sc_touched.uv_v[i];
	sc->sc_touched.uv_n = n;
	return 0;
}

/* Zero the projection's scratch counts of the touched segments. */
static void suf_scratch_clear(struct vol *v, const struct vol_suf_commit *sc)
{
	for (size_t i = 0; i < sc->sc_touched.uv_n; i++) {
		v->v_usage.vu_suf_born_n[sc->sc_touched.uv_v[i]] = 0;
		v->v_usage.vu_suf_gone_n[sc->sc_touched.uv_v[i]] = 0;
		v->v_usage.vu_suf_kept_n[sc->sc_touched.uv_v[i]] = 0;
	}
}

int vol_suf_commit(struct vol *v, const struct bmap_change *ch, uint64_t slack,
		   struct vol_suf_commit *sc)
{
	struct vol_usage *u = &v->v_usage;
	uint32_t per = vol_suf_per_block(v->v_block_size);
	uint64_t sr_seg = vol_pblk_valid(v, v->v_sr_blk) ? vol_seg_of(v, v->v_sr_blk) : UINT64_MAX;
	struct vol_suf_entry *ents;
	uint64_t nblocks = 0;
	int err;

	cmutex_lock(&u->vu_lock);
	err = suf_collect(v, sc, sr_seg);
	ents = err ? NULL : malloc(MAX(sc->sc_touched.uv_n, 1) * sizeof(*ents));
	if (!err && !ents)
		err = -ENOMEM;
	for (size_t i = 0; !err && i < sc->sc_touched.uv_n; i++)
		ents[i] = suf_project(v, sc->sc_touched.uv_v[i], sr_seg, ch->bc_delta);
	cmutex_unlock(&u->vu_lock);
	suf_scratch_clear(v, sc);
	if (err)
		goto out;
	for (size_t i = 0; i < sc->sc_touched.uv_n; i++)
		nblocks += !i || sc->sc_touched.uv_v[i] / per != sc->sc_touched.uv_v[i - 1] / per;
	if (!nblocks)
		goto out;
	/*
	 * Reserved by the commit (the kept reserve holds it: vol_suf_worst),
	 * or out of what the delta's operations reserved and the commit has
	 * not used (@slack: their worst cases, the super root's among them,
	 * are far more than most deltas write); else the file is not current.
	 */
	if (vol_commit_room(v, slack, suf_cost(v, nblocks), &sc->sc_res)) {
		log_warn("vol: no room for %" PRIu64 " segment usage blocks in delta %" PRIu32
			 "; the next open counts the segments",
			 nblocks, ch->bc_delta);
		sc->sc_skipped = true;
		goto out;
	}
	for (size_t i = 0, j; i < sc->sc_touched.uv_n && !err; i = j) {
		struct suf_put sp = {&sc->sc_touched.uv_v[i], &ents[i], 0, per};
		uint64_t index = sc->sc_touched.uv_v[i] / per;

		for (j = i; j < sc->sc_touched.uv_n && sc->sc_touched.uv_v[j] / per == index; j++)
			sp.sp_n++;
		err = bmap_change_block(&v->v_map, &v->v_suf, ch, index, suf_put, &sp);
	}
out:
	free(ents);
	return err;
}

void vol_suf_commit_end(struct vol *v, struct vol_suf_commit *sc, bool durable)
{
	struct vol_usage *u = &v->v_usage;

	if (!durable || sc->sc_skipped) { /* the file may not say what it computed */
		cmutex_lock(&u->vu_lock);
		for (size_t i = 0; i < sc->sc_touched.uv_n; i++) {
			uint64_t seg = sc->sc_touched.uv_v[i];

			u->vu_suf_dirty[seg / 64] |= 1ull << (seg % 64);
		}
		cmutex_unlock(&u->vu_lock);
	}
	free(sc->sc_touched.uv_v);
	*sc = (struct vol_suf_commit){0};
}

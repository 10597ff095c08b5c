/*
 * vol.c - the volume: owners' blocks in transactions on a segment log.
 *
 * The front end (any thread) changes data buffers only:
 *
 *   vol_txn_begin   reserve the worst case (vol_txn_worst) and join the
 *                   open delta (delta_op_begin); never waits holding
 *                   anything (seed 000)
 *   vol_write       buf_get_overwrite, buf_modify_begin(delta) (forks a buffer
 *                   still dirty in the committing delta), copy, end
 *   vol_punch       record the punch (punch.c); if the block is cached,
 *                   zero it inside a modification, like a write
 *   vol_truncate    record the truncate (punch.c), then zero each cached
 *                   block at or past it like a punch; the commit prunes
 *                   the map (one block of the reservation)
 *   vol_read        buf_read; a miss fills through vol_fill
 *   vol_txn_end     leave the delta
 *
 * The back end (the delta system's thread, commit.c) writes each delta:
 * punches, data, map blocks bottom up, the owner table, its map, and the
 * super root last. Only the back end touches map and owner-table blocks.
 *
 *   vol_fill(b): pending punch or truncate? zeros : walk super root -> owner table ->
 *                owner's map (bmap.c) -> address; 0: zeros; else a tracked
 *                read (zone = segment) of that block
 *
 * A punch does not drop the cached buffer: dropping races with a write
 * of the block already holding it (buf_modify_begin of a dropped buffer
 * is illegal), and would lose a write still dirty in the committing
 * delta. Zeroing it in the punch's delta forks such a buffer like any
 * write, and the commit, seeing the punch was the block's last change
 * (vol_punch_zeroed), writes nothing for it.
 *
 * Invariants
 *   (1) Every front-end change happens inside a transaction, to a data
 *       buffer, between buf_modify_begin and buf_modify_end in the
 *       transaction's delta; a transaction changes at most the blocks it
 *       reserved for (vt_left, and vt_run_left in its run).
 *   (2) A punch is recorded before its buffer is looked up, and a write
 *       cancels the punch of its delta inside its modification, so the
 *       record and the buffer never disagree about which came last
 *       (punch.c).
 *   (3) A thread inside a transaction, a fill or the commit never waits
 *       for a commit (vol_busy): the commit may need the delta it is in,
 *       the buffer it is filling, or itself. bo_reclaim then only asks the
 *       cache to wait (-EAGAIN).
 *   (4) vol_committed_delta is the delta of the newest durable super
 *       root, which vol_open checks is the one recovery found; or a
 *       newer delta that changed nothing and found no room, even in the
 *       kept reserve, for a super root of its own (commit.c): recovery
 *       then finds the older one, which names the same state.
 *   (5) A transaction begins only when the buffers dirty in the cache
 *       (each with the translation blocks it may need: vol_vblock_worst;
 *       at most the whole translation per delta, vol_dat_cap),
 *       plus the map paths booked for the dirty blocks (v_paths: one
 *       worst case per level-1 map block a thread's run of changes
 *       entered, vol_book_path), plus the worst case of every block the
 *       transactions in flight (and it) booked, stay under
 *       v_buffer_limit (7/8 of the cache); else it first waits for a
 *       commit, outside any delta (vol_throttle): the open delta cannot
 *       commit while one of its transactions waits for a buffer, so it
 *       must not fill the cache, and the commit needs buffers for the map
 *       blocks of what it writes. This holds whatever dirty limit per
 *       delta was asked for; clustered writes book one path per map
 *       block, so deltas can be large. A delta's bookings are dropped
 *       when its commit ends (carried to the next if it failed).
 *
 * Lock order: delta system (ds_lock) and buffer cache locks are taken
 * and released inside their calls; bm_lock (bmap.c), vp_lock (punch.c)
 * and v_sr_lock (the durable super root: the commit thread writes it
 * under the lock, others read it with vol_sr_get) are leaves. No vol
 * lock is held across a buffer get.
 *
 * Interleaving points: vol.txn.throttle, vol.walk.node and vol.walk.down (a walker, or a truncate's
 * plan, holds an address), vol.commit.begin, .data, .taken (a data buffer taken, not yet written),
 * .finish, .end.
 */
#include "vol/vol_internal.h"
#include "util/syncpoint.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define VOL_CACHE_DEFAULT      4096
#define VOL_CHECKPOINT_DEFAULT 16
/* The smallest log the log layer writes: a shorter segment tail is skipped. */
#define VOL_LOG_MIN_BLOCKS 3u

static _Thread_local unsigned vol_tls_busy; /* invariant (3) */
static _Atomic uint64_t vol_next_id;	    /* tells volumes apart (vol_book_path) */

void vol_busy_enter(void)
{
	vol_tls_busy++;
}

void vol_busy_leave(void)
{
	assert(vol_tls_busy > 0);
	vol_tls_busy--;
}

/* ---- geometry and reservations ------------------------------------------ */

/* Levels a map needs to hold indexes 0..@max with 2^@shift entries a block. */
static unsigned vol_levels(unsigned shift, uint64_t max)
{
	unsigned h = 1;

	while ((uint64_t)h * shift < 64 && (max >> (h * shift)))
		h++;
	return h;
}

static bool vol_is_pow2(uint64_t x)
{
	return x && !(x & (x - 1));
}

/* Map blocks of the translation's tree at levels @from and up, at most. */
static uint64_t vol_dat_map_blocks(const struct vol *v, unsigned from)
{
	uint64_t n = 0, blocks = vol_dat_blocks_max(v), e = v->v_block_size / 8;

	for (unsigned l = 1; l <= v->v_dat_height_max; l++) {
		blocks = (blocks + e - 1) / e;
		if (l >= from)
			n += blocks;
	}
	return n;
}

/*
 * A translation whose map has at most this many blocks has them all
 * counted once per transaction (1 GiB at 4 KiB has 5); a larger one
 * counts each rewritten block's level-1 map blocks, and the levels above
 * once.
 */
#define VOL_DAT_MAP_ONCE 64

static void vol_geometry_set(struct vol *v, const struct log_geometry *g)
{
	unsigned shift = (unsigned)__builtin_ctz(g->lg_block_size / 8);

	v->v_geo = *g;
	v->v_block_size = g->lg_block_size;
	v->v_recs_per_block = g->lg_block_size / VOL_REC_SIZE;
	v->v_height_max = vol_levels(shift, VOL_MAX_INDEX);
	v->v_otab_height_max = vol_levels(shift, VOL_MAX_OWNER / v->v_recs_per_block);
	/* dat.c: entries not reusable never outnumber the segments' blocks;
	 * twice that leaves the sweep room */
	v->v_dat_max = 2 * g->lg_nsegments * g->lg_seg_blocks + vol_dat_per_block(g->lg_block_size);
	v->v_dat_height_max = vol_levels(shift, vol_dat_blocks_max(v));
	v->v_dat_map_small = vol_dat_map_blocks(v, 1) <= VOL_DAT_MAP_ONCE;
	v->v_suf_height_max = vol_levels(shift, vol_suf_blocks(v));
	v->v_ckpt_height_max = vol_levels(shift, vol_ckpt_blocks_max(v));
}

uint64_t vol_dat_blocks_max(const struct vol *v)
{
	uint32_t per = vol_dat_per_block(v->v_block_size);

	return (v->v_dat_max + per - 1) / per;
}

static bool vol_dat_map_small(const struct vol *v)
{
	return v->v_dat_map_small;
}

/*
 * Blocks the commit may write for each block it rewrites: the block, the
 * translation blocks of its new entry and of the entry it leaves behind
 * (dat.c), and, in a large translation, their level-1 map blocks (the
 * rest of its map: vol_dat_upper).
 */
uint64_t vol_vblock_worst(const struct vol *v)
{
	return vol_dat_map_small(v) ? 3 : 5;
}

/* The translation's map blocks a transaction counts once: all of them in
 * a small translation, else those above level 1. */
uint64_t vol_dat_upper(const struct vol *v)
{
	return vol_dat_map_blocks(v, vol_dat_map_small(v) ? 1 : 2);
}

void vol_sr_get(struct vol *v, struct vol_sroot *sr, uint64_t *blk)
{
	cmutex_lock(&v->v_sr_lock);
	*sr = v->v_sr;
	*blk = v->v_sr_blk;
	cmutex_unlock(&v->v_sr_lock);
}

/* The most translation blocks and map blocks one delta can write. */
uint64_t vol_dat_cap(const struct vol *v)
{
	return vol_dat_blocks_max(v) + vol_dat_map_blocks(v, 1);
}

uint64_t vol_move_worst(const struct vol *v)
{
	return vol_dat_map_small(v) ? 2 : 3;
}

/* Blocks one write or punch can make its delta write besides log overhead. */
uint64_t vol_block_worst(const struct vol *v)
{
	/* the block, its map path, its owner's record block and that one's
	 * path: each rewritten with its translation entries */
	return (1 + v->v_height_max + 1 + v->v_otab_height_max) * vol_vblock_worst(v);
}

/* Headers and summaries of the logs holding @payload blocks, and the tail
 * of a segment too short for a log. */
uint64_t vol_log_overhead(const struct vol *v, uint64_t payload)
{
	uint64_t seg = v->v_geo.lg_seg_blocks, bs = v->v_block_size;
	uint64_t sum = (seg * VOL_LOG_ENTRY_BYTES + bs - 1) / bs; /* a log's summary, at most */
	uint64_t cap = seg - 1 - sum;		       /* payload of a log filling a segment */
	uint64_t logs = (payload + cap - 1) / cap + 1; /* + one in a segment's tail */

	return logs * (1 + sum) + (VOL_LOG_MIN_BLOCKS - 1);
}

/*
 * vol_txn_worst - what a transaction of @nblocks writes and punches must
 * reserve: the most blocks its delta can write because of it (seed 000).
 *
 *   per block   the block, every map block on its path (all new or
 *               rewritten: v_height_max), the owner-table block with its
 *               owner's record (every block may be another owner's) and
 *               that block's path in the owner table's map; each of them
 *               with the translation blocks of its new entry and of the
 *               one it leaves behind, and their level-1 map blocks
 *               (vol_vblock_worst); all of that at most every block of
 *               the translation and of its map (vol_dat_cap)
 *   once        the super root, and the translation's map blocks above
 *               level 1 (vol_dat_upper)
 *   logs        a header and summary blocks per log the payload spans,
 *               one more log for a segment's tail, and a tail too short
 *               for a log (vol_log_overhead)
 *
 * An over-estimate: blocks of one delta share map blocks and logs. The
 * delta system gives it back when the delta commits. Not counted: a tree
 * that grows by more than one level in a delta also gets new map blocks
 * on the left edge under its new root (bmap_grow), up to v_height_max -
 * 1 per owner and delta, which only a write far past a small tree's end
 * makes. The translation's part and the shared blocks have always left
 * more room than that; were they not to, the delta system logs the
 * underestimate and the kept reserve holds the difference.
 */
/* Blocks a change may rewrite: itself, its map path, its owner's record
 * block and that one's path. */
uint64_t vol_block_rewrites(const struct vol *v)
{
	return vol_block_worst(v) / vol_vblock_worst(v);
}

/* The translation blocks of @rewrites rewritten blocks' entries. */
static uint64_t vol_dat_of(const struct vol *v, uint64_t rewrites)
{
	return MIN(rewrites * (vol_vblock_worst(v) - 1), vol_dat_cap(v));
}

/* What a transaction whose changes may rewrite @rewrites blocks reserves. */
static uint64_t vol_worst_of(const struct vol *v, uint64_t rewrites)
{
	uint64_t payload = rewrites + vol_dat_of(v, rewrites) + vol_dat_upper(v) + 1;

	return payload + vol_log_overhead(v, payload);
}

/* The translation part of vol_txn_worst(@nblocks). */
uint64_t vol_txn_dat(const struct vol *v, uint64_t nblocks)
{
	return vol_dat_of(v, nblocks * vol_block_rewrites(v));
}

uint64_t vol_txn_worst(const struct vol *v, uint64_t nblocks)
{
	return vol_worst_of(v, nblocks * vol_block_rewrites(v));
}

/* The level-1 map blocks (vol_book_path's nodes) over [@first, @first + @count). */
static uint64_t vol_run_nodes(const struct vol *v, uint64_t first, uint64_t count)
{
	uint64_t per = v->v_block_size / 8;

	return count ? (first + count - 1) / per - first / per + 1 : 0;
}

/*
 * Blocks the changes of a run of @count blocks from @first, and of
 * @nblocks others, may rewrite: each block of the run, and for each
 * level-1 map block it spans one map path with the owner's record block
 * and that one's path (the rest of vol_block_rewrites); each other block
 * with all of that.
 */
static uint64_t vol_run_rewrites(const struct vol *v, uint64_t first, uint64_t count,
				 uint64_t nblocks)
{
	uint64_t rw = vol_block_rewrites(v);

	return count + vol_run_nodes(v, first, count) * (rw - 1) + nblocks * rw;
}

uint64_t vol_txn_worst_run(const struct vol *v, uint64_t first, uint64_t count, uint64_t nblocks)
{
	return vol_worst_of(v, vol_run_rewrites(v, first, count, nblocks));
}

/*
 * Buffers the front end may fill (vol.c (5)): an eighth of the cache
 * stays for reads and fills.
 */
static uint64_t vol_buffer_limit(uint32_t nbuffers)
{
	return MAX((uint64_t)nbuffers * 7 / 8, 1);
}

/*
 * The most blocks one transaction may book: each counts its worst case
 * (the block, its map path, its owner's record and that one's path)
 * until the transaction ends.
 */
static uint64_t vol_dirty_limit(const struct vol *v, uint32_t nbuffers)
{
	return vol_buffer_limit(nbuffers) / vol_block_worst(v); /* 0: no transaction fits */
}

/* The default dirty limit of a delta: a quarter of the cache, so that a
 * delta being committed and the next one filling up both fit with their
 * map blocks when writes are clustered (the throttle bounds the rest). */
static uint32_t vol_default_max_dirty(uint32_t nbuffers)
{
	return (uint32_t)MAX(nbuffers / 4, 1);
}

/* ---- reading blocks -------------------------------------------------------- */

/* Read block @pblk (0: a hole, zeros) as a tracked read. -ESTALE: its zone
 * is being reused, resolve the address again. */
static int vol_read_pblk(struct vol *v, uint64_t owner, uint64_t index, uint64_t pblk, void *data)
{
	uint64_t zaddr = pblk - v->v_geo.lg_seg_start;
	int err;

	if (!pblk) {
		memset(data, 0, v->v_block_size);
		return 0;
	}
	if (!vol_pblk_valid(v, pblk)) {
		log_err("vol: block (%" PRIu64 ", %#" PRIx64 ") maps to block %" PRIu64
			", outside the segments",
			owner, index, pblk);
		return -EUCLEAN;
	}
	err = buf_track_read_begin(v->v_track, zaddr);
	if (err)
		return err == -EAGAIN ? -ESTALE : err; /* the cache keeps -EAGAIN */
	err = bdev_read(v->v_bdev, pblk, 1, data);
	buf_track_read_end(v->v_track, zaddr);
	return err;
}

/* One walk for the block at @level on @index's path in @owner's map:
 * the entry naming it, and where it lies. */
static int vol_resolve_once(struct vol *v, uint64_t owner, unsigned level, uint64_t index,
			    uint64_t *entry, uint64_t *pblk, uint64_t *path)
{
	struct bmap_root otab, root;
	struct bmap_walk w;
	int err;

	bmap_walk_begin(&v->v_map, &v->v_otab, &w, &otab);
	if (!bmap_virtual(owner)) { /* the translation's, usage and checkpoint files' */
		root = owner == VOL_DAT_OWNER	? w.w_dat
		       : owner == VOL_SUF_OWNER ? w.w_suf
						: w.w_ckpt;
		*path = 1 + root.br_height;
	} else if (owner == VOL_OTAB_OWNER) {
		root = otab;
		*path = 1 + otab.br_height;
	} else {
		err = otab_read(v, &w, &otab, owner, &root);
		if (err)
			return err;
		*path = 1 + root.br_height + 1 + otab.br_height;
	}
	err = bmap_lookup(&w, owner, &root, level, index, entry);
	*pblk = *entry;
	if (!err && *entry && bmap_virtual(owner))
		err = dat_xlate_walk(&w, *entry, pblk);
	return err;
}

int vol_resolve_entry(struct vol *v, uint64_t owner, uint64_t index, uint64_t *entry,
		      uint64_t *pblk, uint64_t *path)
{
	unsigned level = 0;
	int err;

	if (bmap_is_node(index)) {
		level = bmap_node_level(index);
		index = bmap_node_first(&v->v_map, index);
	}
	do {
		err = vol_resolve_once(v, owner, level, index, entry, pblk, path);
	} while (err == -EAGAIN);
	return err;
}

/* The address of block (owner, index), data or map block; 0: a hole. */
int vol_resolve_path(struct vol *v, uint64_t owner, uint64_t index, uint64_t *pblk, uint64_t *path)
{
	uint64_t entry;

	return vol_resolve_entry(v, owner, index, &entry, pblk, path);
}

int vol_resolve(struct vol *v, uint64_t owner, uint64_t index, uint64_t *pblk)
{
	uint64_t path;

	return vol_resolve_path(v, owner, index, pblk, &path);
}

/* Fill a block nobody told us the address of. */
static int vol_fill_resolve(struct vol *v, uint64_t owner, uint64_t index, void *data)
{
	uint64_t pblk;
	int err;

	do {
		if (!bmap_is_node(index) && vol_punch_pending(&v->v_punches, owner, index))
			pblk = 0; /* punched; the map changes when the punch commits */
		else if ((err = vol_resolve(v, owner, index, &pblk)))
			return err;
		err = vol_read_pblk(v, owner, index, pblk, data);
	} while (err == -ESTALE);
	return err;
}

/* bo_fill: a walker passes the address it found as @hint (bmap.c (5)). */
static int vol_fill(void *ctx, struct buf *b, void *data, uint64_t hint)
{
	struct vol *v = ctx;
	int err;

	vol_busy_enter();
	if (hint == BUF_NO_HINT) {
		err = vol_fill_resolve(v, buf_owner(b), buf_index(b), data);
	} else {
		uint64_t pblk;

		/* a walker's hint is the entry it read: a virtual block */
		err = dat_xlate_fill(v, buf_owner(b), hint, &pblk);
		if (!err)
			err = vol_read_pblk(v, buf_owner(b), buf_index(b), pblk, data);
		if (!err)
			err = bmap_hint_check(&v->v_map);
	}
	vol_busy_leave();
	return err;
}

/* bo_reclaim: commit, unless this thread may not wait for a commit. */
static int vol_reclaim(void *ctx)
{
	struct vol *v = ctx;

	if (vol_tls_busy || !v->v_ds)
		return -EAGAIN; /* invariant (3): the cache waits for the commit */
	return delta_sync(v->v_ds);
}

static const struct buf_ops vol_buf_ops = {
    .bo_fill = vol_fill,
    .bo_reclaim = vol_reclaim,
};

static const struct delta_ops vol_delta_ops = {
    .do_commit = vol_commit,
    .do_reclaimable = vol_clean_worthwhile,
    .do_again = vol_clean_again,
};

/* ---- mkfs ------------------------------------------------------------------ */

/* Write delta 1: an empty owner table, as the super root says. */
static int vol_mkfs_first_delta(struct log *l, uint32_t bs)
{
	struct vol_sroot sr = {.sr_delta = 1,
			       .sr_next_owner = VOL_FIRST_OWNER,
			       .sr_blocks_written = 1,
			       .sr_time_ns = util_realtime_ns(),
			       .sr_readable_from = 1,
			       .sr_dat_next = 1};
	struct log_builder *lb;
	uint64_t pblk;
	void *block;
	int err;

	block = malloc(bs);
	if (!block)
		return -ENOMEM;
	vol_sroot_encode(&sr, block, bs);
	err = log_build_begin(l, sr.sr_delta, &lb);
	if (err)
		goto out_free;
	err = log_build_add(lb, VOL_SROOT_OWNER, 0, LOG_ENTRY_SUPER_ROOT, block, &pblk);
	if (err) {
		log_build_abort(lb);
		goto out_free;
	}
	err = log_build_finish(lb);
	if (!err)
		err = log_checkpoint(l);
out_free:
	free(block);
	return err;
}

/*
 * Always formats: refusing to overwrite an existing volume (log_probe)
 * is the tool's decision (cairn mkfs --force), not the library's.
 */
int vol_mkfs(struct bdev *d, const struct vol_mkfs_opts *o)
{
	struct log_format_opts lo = o ? o->vmo_log : (struct log_format_opts){0};
	struct log *l;
	int err;

	if (lo.lfo_seg_blocks && !vol_is_pow2(lo.lfo_seg_blocks))
		return -EINVAL; /* a segment is a zone of tracked reads */
	err = log_format(d, &lo);
	if (err)
		return err;
	err = log_open(d, &l);
	if (err)
		return err;
	if (!vol_is_pow2(log_geometry(l)->lg_seg_blocks))
		err = -EINVAL;
	else
		err = vol_mkfs_first_delta(l, log_geometry(l)->lg_block_size);
	log_close(l);
	return err;
}

/* ---- open and close -------------------------------------------------------- */

/* Read and check the super root recovery found. */
static int vol_sroot_read(struct vol *v, const struct log_state *st)
{
	int err = vol_sroot_load(v, st->ls_sr_blk, &v->v_sr);

	v->v_sr_blk = st->ls_sr_blk;
	if (err)
		return err;
	if (v->v_sr.sr_delta != st->ls_delta || v->v_sr.sr_otab_height > v->v_otab_height_max ||
	    v->v_sr.sr_dat_height > v->v_dat_height_max || v->v_sr.sr_dat_next > v->v_dat_max ||
	    (v->v_sr.sr_dat_root && !vol_pblk_valid(v, v->v_sr.sr_dat_root)) ||
	    v->v_sr.sr_suf_height > v->v_suf_height_max ||
	    (v->v_sr.sr_suf_root && !vol_pblk_valid(v, v->v_sr.sr_suf_root)) ||
	    v->v_sr.sr_ckpt_height > v->v_ckpt_height_max ||
	    (v->v_sr.sr_ckpt_root && !vol_pblk_valid(v, v->v_sr.sr_ckpt_root)) ||
	    st->ls_delta >= UINT32_MAX - 1) {
		log_err("vol: super root at block %" PRIu64 " does not match the log's state "
			"(delta %" PRIu64 ", log says %" PRIu64 ")",
			st->ls_sr_blk, v->v_sr.sr_delta, st->ls_delta);
		return -EUCLEAN;
	}
	/* the checkpoint slot may say more of what is gone (usage.c (5)) */
	v->v_sr.sr_readable_from =
	    MAX(v->v_sr.sr_readable_from, MIN(st->ls_floor, v->v_sr.sr_delta));
	return 0;
}

/*
 * Open the log; unless @recover is false (a snapshot read beside a
 * writer: vol_open_snapshot reads its super root), recover and read the
 * super root.
 */
static int vol_open_log(struct vol *v, bool recover)
{
	const struct log_geometry *g;
	struct log_state st;
	int err;

	err = log_open(v->v_bdev, &v->v_log);
	if (err)
		return err;
	g = log_geometry(v->v_log);
	if (g->lg_block_size != bdev_block_size(v->v_bdev) || !vol_is_pow2(g->lg_seg_blocks) ||
	    g->lg_block_size < 512) {
		log_err("vol: log geometry (block %" PRIu32 ", segment %" PRIu32
			" blocks) is not a cairn volume's",
			g->lg_block_size, g->lg_seg_blocks);
		err = -EUCLEAN;
		goto out_close;
	}
	vol_geometry_set(v, g);
	if (!recover)
		return 0;
	err = log_recover(v->v_log, &st);
	if (!err)
		err = vol_sroot_read(v, &st);
	if (!err)
		return 0;
out_close:
	log_close(v->v_log);
	v->v_log = NULL;
	return err;
}

static void vol_close_cache(struct vol *v)
{
	buf_cache_destroy(v->v_cache);
	buf_track_destroy(v->v_track);
	bmap_destroy(&v->v_map);
	vol_punches_destroy(&v->v_punches);
	vol_table_clear(&v->v_trees, free);
	vol_commit_moves_clear(v);
	dat_close(v);
}

/* The buffer cache, tracked reads, maps and punches. */
static int vol_open_cache(struct vol *v, const struct vol_open_opts *o)
{
	struct buf_cache_config bc = {
	    .bcc_block_size = v->v_block_size,
	    .bcc_nbuffers = o->voo_cache_blocks ? o->voo_cache_blocks : VOL_CACHE_DEFAULT,
	    .bcc_ops = &vol_buf_ops,
	    .bcc_ctx = v,
	};
	const struct log_geometry *g = &v->v_geo;
	int err;

	err = vol_punches_init(&v->v_punches);
	if (err)
		return err;
	err = buf_track_create(g->lg_nsegments * g->lg_seg_blocks,
			       (unsigned)__builtin_ctz(g->lg_seg_blocks), &v->v_track);
	if (err)
		goto out_punches;
	err = buf_cache_create(&bc, &v->v_cache);
	if (err)
		goto out_track;
	err = bmap_init(&v->v_map, v->v_cache);
	if (err)
		goto out_cache;
	v->v_otab = (struct bmap_tree){VOL_OTAB_OWNER, v->v_sr.sr_otab_root, v->v_sr.sr_otab_height,
				       v->v_sr.sr_otab_height, false};
	v->v_dat = (struct bmap_tree){VOL_DAT_OWNER, v->v_sr.sr_dat_root, v->v_sr.sr_dat_height,
				      v->v_sr.sr_dat_height, false};
	v->v_map.bm_dat = &v->v_dat;
	v->v_suf = (struct bmap_tree){VOL_SUF_OWNER, v->v_sr.sr_suf_root, v->v_sr.sr_suf_height,
				      v->v_sr.sr_suf_height, false};
	v->v_map.bm_suf = &v->v_suf;
	v->v_ckpt = (struct bmap_tree){VOL_CKPT_OWNER, v->v_sr.sr_ckpt_root, v->v_sr.sr_ckpt_height,
				       v->v_sr.sr_ckpt_height, false};
	v->v_map.bm_ckpt = &v->v_ckpt;
	atomic_store(&v->v_ckpt_from, v->v_sr.sr_ckpt_from);
	atomic_store(&v->v_ckpt_next, v->v_sr.sr_ckpt_next);
	dat_open(v);
	atomic_store(&v->v_committed, v->v_sr.sr_delta);
	return 0;
out_cache:
	buf_cache_destroy(v->v_cache);
out_track:
	buf_track_destroy(v->v_track);
out_punches:
	vol_punches_destroy(&v->v_punches);
	return err;
}

static int vol_open_deltas(struct vol *v, const struct vol_open_opts *o)
{
	struct delta_config dc = {
	    .dc_cache = v->v_cache,
	    .dc_log = v->v_log,
	    .dc_ops = &vol_delta_ops,
	    .dc_ctx = v,
	    .dc_first_delta = (uint32_t)v->v_sr.sr_delta + 1,
	    .dc_max_age_ms = o->voo_max_age_ms,
	};
	uint32_t nbuffers = o->voo_cache_blocks ? o->voo_cache_blocks : VOL_CACHE_DEFAULT;

	v->v_max_dirty = o->voo_max_dirty ? o->voo_max_dirty : vol_default_max_dirty(nbuffers);
	v->v_dirty_limit = vol_dirty_limit(v, nbuffers);
	v->v_buffer_limit = vol_buffer_limit(nbuffers);
	v->v_id = atomic_fetch_add(&vol_next_id, 1) + 1;
	dc.dc_max_dirty = v->v_max_dirty;
	v->v_checkpoint_every =
	    o->voo_checkpoint_every ? o->voo_checkpoint_every : VOL_CHECKPOINT_DEFAULT;
	return delta_sys_create(&dc, &v->v_ds);
}

static void vol_booked_destroy(struct vol *v)
{
	vol_table_clear(&v->v_booked[0], NULL);
	vol_table_clear(&v->v_booked[1], NULL);
	cmutex_destroy(&v->v_book_lock);
}

/*
 * The snapshots' deltas, for the cleaner's raw moves (usage.c,
 * vu_snap_deltas), when the open read the counts from the usage file
 * instead of walking the snapshots, and the newest of them
 * (vu_snap_newest). Without them the cleaner leaves the snapshots'
 * blocks where they are, and every block left behind in a marked
 * segment is taken for a snapshot's, which is never wrong: a table that
 * cannot be read does not stop the open.
 */
static void vol_open_snap_deltas(struct vol *v)
{
	struct vol_snap_info *si;
	size_t n;
	int err;

	if (v->v_usage.vu_snap_deltas.uv_n || v->v_usage.vu_nsnaps)
		return; /* the walk listed them */
	err = vol_snap_list(v, &si, &n);
	if (err) {
		log_warn("vol: the snapshot table does not read (%d): the cleaner leaves the "
			 "snapshots' blocks where they are",
			 err);
		return;
	}
	vol_usage_snaps_read(v, si, n);
	free(si);
}

/* On error @d stays the caller's. */
int vol_open(struct bdev *d, const struct vol_open_opts *o, struct vol **out)
{
	struct vol_open_opts opts = o ? *o : (struct vol_open_opts){0};
	struct vol *v;
	int err;

	if (opts.voo_snapshot && opts.voo_checkpoint)
		return -EINVAL;
	v = calloc(1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	v->v_bdev = d;
	cmutex_init(&v->v_sr_lock);
	cmutex_init(&v->v_throttle_lock);
	cmutex_init(&v->v_book_lock);
	cmutex_init(&v->v_snap_lock);
	pthread_cond_init(&v->v_throttle_cond, NULL);
	v->v_snapshot = opts.voo_snapshot != NULL || opts.voo_checkpoint;
	v->v_snapshot_beside = v->v_snapshot && opts.voo_snapshot_find;
	err = vol_open_log(v, !v->v_snapshot_beside);
	if (err)
		goto out_free;
	err = vol_open_cache(v, &opts);
	if (err)
		goto out_log;
	v->v_read_only = opts.voo_read_only || v->v_snapshot;
	if (opts.voo_clean_policy > VOL_CLEAN_GREEDY) {
		err = -EINVAL;
		goto out_cache;
	}
	v->v_clean_policy = opts.voo_clean_policy;
	vol_clean_watermarks(v, opts.voo_clean_low, opts.voo_clean_high);
	v->v_protect_ms = (uint64_t)opts.voo_protect_s * 1000;
	err = vol_usage_open(v, !v->v_read_only);
	if (err)
		goto out_cache;
	if (opts.voo_checkpoint)
		err = vol_open_checkpoint(v, opts.voo_checkpoint);
	else if (v->v_snapshot)
		err = vol_open_snapshot(v, opts.voo_snapshot, opts.voo_snapshot_find,
					opts.voo_snapshot_arg);
	if (!err && opts.voo_snapshot && !v->v_snapshot_beside)
		err = bdev_unlock(d); /* pinned: a writer may come now */
	if (err)
		goto out_usage;
	if (!v->v_read_only)
		err = vol_ckpt_open(v);
	if (err)
		goto out_usage;
	if (!v->v_read_only)
		vol_keep_for_freeing(v, VOL_KEEP_FREEING_BLOCKS);
	err = vol_open_deltas(v, &opts);
	if (err)
		goto out_usage;
	if (!v->v_read_only)
		vol_open_snap_deltas(v);
	err = vol_reroot_start(v);
	if (err) {
		delta_sys_destroy(v->v_ds);
		goto out_usage;
	}
	if (!v->v_read_only && v->v_sr.sr_unrooted) {
		/* a crash came before a re-root (snap.c): the moved blocks are
		 * kept twice until it is done, so it is done before any write */
		vol_reroot_ask(v);
		vol_reroot_wait(v);
	}
	*out = v;
	return 0;
out_usage:
	vol_usage_close(v);
out_cache:
	vol_close_cache(v);
out_log:
	log_close(v->v_log);
out_free:
	cmutex_destroy(&v->v_sr_lock);
	cmutex_destroy(&v->v_throttle_lock);
	cmutex_destroy(&v->v_snap_lock);
	vol_booked_destroy(v);
	pthread_cond_destroy(&v->v_throttle_cond);
	free(v);
	return err;
}

int vol_close(struct vol *v)
{
	int err, cp_err;

	if (!v)
		return 0;
	vol_reroot_stop(v);		  /* a re-root asked for is done first */
	err = delta_sys_destroy(v->v_ds); /* commits what is open */
	vol_reroot_destroy(v);
	cp_err = v->v_read_only ? 0 : vol_checkpoint(v);
	if (cp_err)
		log_err("vol: checkpoint at close failed: %d", cp_err);
	vol_usage_close(v);
	vol_close_cache(v);
	log_close(v->v_log);
	bdev_close(v->v_bdev);
	cmutex_destroy(&v->v_sr_lock);
	cmutex_destroy(&v->v_throttle_lock);
	cmutex_destroy(&v->v_snap_lock);
	vol_booked_destroy(v);
	pthread_cond_destroy(&v->v_throttle_cond);
	free(v);
	return err ? err : cp_err;
}

/* ---- transactions ------------------------------------------------------------ */

/*
 * Before joining a delta (so waiting is safe: seed 000), make sure the
 * blocks dirty in the cache, plus those the transactions in flight and
 * this one may still dirty, stay under v_dirty_limit: the open delta
 * cannot commit while one of its transactions waits for a buffer, and
 * the commit needs buffers for the map blocks of what it writes. Over
 * the limit, wait for one commit (delta_throttle) and look again.
 * Transactions book their blocks in v_inflight until they end.
 */
/*
 * Wait until some transaction ends or some commit drops its map paths
 * (since @ends and @settled were read).
 */
static void vol_throttle_wait_end(struct vol *v, uint64_t ends, uint64_t settled)
{
	cmutex_lock(&v->v_throttle_lock);
	atomic_fetch_add(&v->v_throttle_waiters, 1);
	while (atomic_load(&v->v_txn_ends) == ends && atomic_load(&v->v_paths_settled) == settled) {
		SYNC_POINT("vol.txn.throttle_wait_locked");
		cmutex_wait(&v->v_throttle_lock, &v->v_throttle_cond);
	}
	atomic_fetch_sub(&v->v_throttle_waiters, 1);
	cmutex_unlock(&v->v_throttle_lock);
}

/* Wake vol_throttle_wait_end's waiters: a transaction or a commit's paths ended. */
static void vol_throttle_wake(struct vol *v)
{
	if (atomic_load(&v->v_throttle_waiters)) { /* seq_cst: pairs with the waiter's */
		cmutex_lock(&v->v_throttle_lock);
		pthread_cond_broadcast(&v->v_throttle_cond);
		cmutex_unlock(&v->v_throttle_lock);
	}
}

/*
 * The translation blocks (and their map blocks) the commit of a delta
 * with @dirty dirty blocks may need: each block's new entry and the one
 * it leaves behind, but no more than the whole translation (vol_dat_cap),
 * however many blocks the delta holds.
 */
static uint64_t vol_dirty_dat(const struct vol *v, uint64_t dirty)
{
	return MIN(dirty * (vol_vblock_worst(v) - 1), vol_dat_cap(v));
}

static int vol_throttle(struct vol *v, uint64_t nblocks)
{
	uint64_t worst = vol_block_worst(v);

	for (;;) {
		uint64_t ends = atomic_load(&v->v_txn_ends), dirty, dirty_open, dirty_old;
		uint64_t inflight, paths;
		uint64_t settled = atomic_load(&v->v_paths_settled);
		struct delta_stats st;
		int err;

		delta_stats(v->v_ds, &st);
		dirty_open = buf_delta_ndirty(v->v_cache, st.ds_open);
		dirty_old = buf_delta_ndirty(v->v_cache, st.ds_open - 1);
		dirty = dirty_open + dirty_old;
		paths = atomic_load(&v->v_paths[0]) + atomic_load(&v->v_paths[1]);
		inflight = atomic_fetch_add(&v->v_inflight, nblocks);
		if (dirty + vol_dirty_dat(v, dirty_open) + vol_dirty_dat(v, dirty_old) + paths +
			(inflight + nblocks) * worst <=
		    v->v_buffer_limit)
			return 0;
		atomic_fetch_sub(&v->v_inflight, nblocks);
		SYNC_POINT("vol.txn.throttle");
		if (!dirty && atomic_load(&v->v_paths[st.ds_open & 1]) &&
		    !atomic_load(&v->v_inflight)) {
			/* the open delta's truncates booked what their frees
			 * need at commit, and nothing will close it: commit it */
			err = delta_sync(v->v_ds);
			if (err)
				return err;
			continue;
		}
		if (!dirty) {
			/* transactions in flight, or the paths of a commit whose
			 * blocks are all written: wait for either to end (with
			 * none in flight, only the commit's end wakes us) */
			vol_throttle_wait_end(v, ends, settled);
			continue;
		}
		err = delta_throttle(v->v_ds);
		if (err)
			return err;
	}
}

void vol_keep_for_freeing(struct vol *v, uint64_t nblocks)
{
	/* and what the commit writes of the segment usage and checkpoint files */
	log_space_keep(v->v_log, vol_txn_worst(v, nblocks) + vol_suf_worst(v) + vol_ckpt_worst(v));
}

uint64_t vol_txn_max(struct vol *v)
{
	return v->v_dirty_limit;
}

static bool vol_owner_valid(uint64_t owner, uint64_t index)
{
	return owner >= VOL_CLIENT_META && owner <= VOL_MAX_OWNER && index <= VOL_MAX_INDEX;
}

int vol_txn_begin_run(struct vol *v, uint64_t owner, uint64_t first, uint64_t count,
		      uint64_t nblocks, unsigned flags, struct vol_txn *t)
{
	unsigned res = (flags & VOL_TXN_FREEING) ? LOG_RES_FREEING : 0;
	uint64_t total = count + nblocks;
	int err;

	if ((flags & ~VOL_TXN_FREEING) || nblocks > VOL_MAX_INDEX || count > VOL_MAX_INDEX ||
	    total > VOL_MAX_INDEX)
		return -EINVAL;
	if (count && (first > VOL_MAX_INDEX - (count - 1) || !vol_owner_valid(owner, first)))
		return -EINVAL;
	if (total > v->v_dirty_limit) {
		log_err("vol: a transaction of %" PRIu64
			" blocks cannot fit in the cache (at most %" PRIu64 ")",
			total, v->v_dirty_limit);
		return -EINVAL;
	}
	err = vol_throttle(v, total);
	if (err)
		return err;
	err = delta_op_begin(v->v_ds, vol_txn_worst_run(v, first, count, nblocks), res, &t->vt_op);
	if (err) {
		atomic_fetch_sub(&v->v_inflight, total);
		return err;
	}
	*t = (struct vol_txn){.vt_vol = v,
			      .vt_op = t->vt_op,
			      .vt_left = nblocks,
			      .vt_booked = total,
			      .vt_refund = vol_block_rewrites(v) - 1,
			      .vt_dat = vol_dat_of(v, vol_run_rewrites(v, first, count, nblocks)),
			      .vt_run_owner = owner,
			      .vt_run_first = first,
			      .vt_run_end = first + count,
			      .vt_run_left = count};
	vol_busy_enter();
	return 0;
}

int vol_txn_begin(struct vol *v, uint64_t nblocks, unsigned flags, struct vol_txn *t)
{
	return vol_txn_begin_run(v, 0, 0, 0, nblocks, flags, t);
}

void vol_txn_end(struct vol_txn *t)
{
	struct vol *v = t->vt_vol;

	delta_op_end(v->v_ds, &t->vt_op);
	atomic_fetch_sub(&v->v_inflight, t->vt_booked);
	atomic_fetch_add(&v->v_txn_ends, 1);
	vol_throttle_wake(v);
	vol_busy_leave();
}

/*
 * Book the map blocks a change of (owner, index) may need at commit
 * (vol.c (5)): the first change under a level-1 map block in a delta
 * books the whole path (worst case but the block itself, which is
 * counted dirty) and returns false; the next ones under the same map
 * block in that delta book nothing and return true: their transaction
 * may give back the path it reserved for them (seed 000: the delta's
 * reservations still hold the first change's whole worst case). The
 * delta's map blocks are in v_booked[delta & 1] (under v_book_lock); a
 * thread keeps the last few it met, to skip the lock. Distinct level-1
 * map blocks, hence map paths, never outnumber the bookings, so the
 * sums stay upper bounds.
 */
#define VOL_PATH_CACHE 4
static _Thread_local struct vol_path_seen {
	uint64_t ps_vol, ps_owner, ps_node;
	uint32_t ps_delta;
} vol_tls_paths[VOL_PATH_CACHE];
static _Thread_local unsigned vol_tls_path_next;

static bool vol_book_path(struct vol_txn *t, uint64_t owner, uint64_t index)
{
	struct vol *v = t->vt_vol;
	uint32_t delta = t->vt_op.dop_delta;
	uint64_t node = index / (v->v_block_size / 8);
	struct vol_table *booked = &v->v_booked[delta & 1];
	struct vol_path_seen *ps;
	bool seen;

	for (unsigned i = 0; i < VOL_PATH_CACHE; i++) {
		ps = &vol_tls_paths[i];
		if (ps->ps_vol == v->v_id && ps->ps_delta == delta && ps->ps_owner == owner &&
		    ps->ps_node == node)
			return true;
	}
	cmutex_lock(&v->v_book_lock);
	seen = vol_table_get(booked, owner, node) != NULL;
	if (!seen) {
		/* out of memory: the next change books the path again, only safe */
		(void)vol_table_put(booked, owner, node, (void *)1);
		atomic_fetch_add(&v->v_paths[delta & 1], vol_block_worst(v) - vol_vblock_worst(v));
	}
	cmutex_unlock(&v->v_book_lock);
	ps = &vol_tls_paths[vol_tls_path_next++ % VOL_PATH_CACHE];
	*ps = (struct vol_path_seen){v->v_id, owner, node, delta};
	return seen;
}

/*
 * Book @t's translation part to its delta, at its first change: no delta
 * writes more translation blocks than the translation and its map hold
 * (vol_dat_cap), so what the delta's transactions booked beyond that is
 * given back (their reservations stay with the delta until it commits,
 * and a failed delta's go to the next with its bookings).
 */
static void vol_book_dat(struct vol_txn *t)
{
	struct vol *v = t->vt_vol;
	uint64_t cap = vol_dat_cap(v);
	uint64_t after =
	    atomic_fetch_add(&v->v_dat_booked[t->vt_op.dop_delta & 1], t->vt_dat) + t->vt_dat;
	uint64_t excess = after > cap ? MIN(t->vt_dat, after - cap) : 0; /* past the cap */

	t->vt_dat_booked = true;
	if (excess)
		delta_op_refund(v->v_ds, &t->vt_op, excess);
}

/*
 * Count a change of block @index of @t's run: the run reserved one map
 * path per level-1 map block it spans, given back at the run's first
 * change under that map block if the delta booked its path already.
 * (Past the 64th map block of a run nothing is given back: only safe.)
 */
static void vol_txn_charge_run(struct vol_txn *t, uint64_t index)
{
	uint64_t per = t->vt_vol->v_block_size / 8;
	uint64_t node = index / per - t->vt_run_first / per;
	bool first = node < 64 && !(t->vt_run_nodes & (1ULL << node));

	t->vt_run_left--;
	if (first)
		t->vt_run_nodes |= 1ULL << node;
	if (vol_book_path(t, t->vt_run_owner, index) && first)
		delta_op_refund(t->vt_vol->v_ds, &t->vt_op, t->vt_refund);
}

/* Check a front-end change of (owner, index) and count it against @t. */
static int vol_txn_charge_as(struct vol_txn *t, uint64_t owner, uint64_t index, bool own)
{
	bool run;

	if (own ? index > VOL_MAX_INDEX : !vol_owner_valid(owner, index))
		return -EINVAL;
	run = !own && t->vt_run_left && owner == t->vt_run_owner && index >= t->vt_run_first &&
	      index < t->vt_run_end;
	if (!run && !t->vt_left) {
		log_err("vol: transaction changes more blocks than it reserved");
		return -EINVAL;
	}
	if (!t->vt_dat_booked)
		vol_book_dat(t);
	if (run) {
		vol_txn_charge_run(t, index);
		return 0;
	}
	t->vt_left--;
	if (vol_book_path(t, owner, index)) /* only the block itself is new */
		delta_op_refund(t->vt_vol->v_ds, &t->vt_op, t->vt_refund);
	return 0;
}

static int vol_txn_charge(struct vol_txn *t, uint64_t owner, uint64_t index)
{
	return vol_txn_charge_as(t, owner, index, false);
}

void vol_paths_settle(struct vol *v, uint32_t delta, bool failed)
{
	uint64_t n = atomic_exchange(&v->v_paths[delta & 1], 0);
	uint64_t dat = atomic_exchange(&v->v_dat_booked[delta & 1], 0);

	/* a failed delta's paths go to the next, booked anew there: only safe */
	cmutex_lock(&v->v_book_lock);
	vol_table_clear(&v->v_booked[delta & 1], NULL);
	cmutex_unlock(&v->v_book_lock);

	if (failed) { /* its blocks go to the next delta, and so do their paths */
		atomic_fetch_add(&v->v_paths[(delta + 1) & 1], n);
		atomic_fetch_add(&v->v_dat_booked[(delta + 1) & 1], dat);
	}
	atomic_fetch_add(&v->v_paths_settled, 1);
	vol_throttle_wake(v);
}

/* ---- the front end ------------------------------------------------------------- */

static int vol_write_as(struct vol_txn *t, uint64_t owner, uint64_t index, const void *data,
			bool own)
{
	struct vol *v = t->vt_vol;
	struct buf *b;
	int err;

	err = vol_txn_charge_as(t, owner, index, own);
	if (err)
		return err;
	err = buf_get_overwrite(v->v_cache, owner, index, &b);
	if (err)
		return err;
	err = buf_modify_begin(b, t->vt_op.dop_delta);
	if (!err) {
		vol_punch_cancel(&v->v_punches, owner, index, t->vt_op.dop_delta);
		memcpy(buf_data(b), data, v->v_block_size);
		buf_modify_end(b);
	}
	buf_put(b);
	return err;
}

int vol_write(struct vol_txn *t, uint64_t owner, uint64_t index, const void *data)
{
	return vol_write_as(t, owner, index, data, false);
}

int vol_write_own(struct vol_txn *t, uint64_t owner, uint64_t index, const void *data)
{
	return vol_write_as(t, owner, index, data, true);
}

int vol_write_range(struct vol_txn *t, uint64_t owner, uint64_t index, uint32_t off, uint32_t len,
		    const void *data)
{
	struct vol *v = t->vt_vol;
	struct buf *b;
	int err;

	if (off > v->v_block_size || len > v->v_block_size - off)
		return -EINVAL;
	if (off == 0 && len == v->v_block_size)
		return vol_write(t, owner, index, data);
	err = vol_txn_charge(t, owner, index);
	if (err)
		return err;
	err = buf_read(v->v_cache, owner, index, &b);
	if (err)
		return err;
	err = buf_modify_begin(b, t->vt_op.dop_delta);
	if (!err) {
		vol_punch_cancel(&v->v_punches, owner, index, t->vt_op.dop_delta);
		memcpy((unsigned char *)buf_data(b) + off, data, len);
		buf_modify_end(b);
	}
	buf_put(b);
	return err;
}

/*
 * The punch of (owner, index) in @delta is recorded: if the block is
 * cached, zero it in @delta (forking a buffer of the committing delta)
 * and say again, inside the modification, that the punch came last (2).
 * With @keep_clean_zeros (a truncate's), a Clean block of zeros is left
 * as it is: an earlier step of a large truncate zeroed it, and
 * redirtying it would cost a buffer for nothing to write.
 */
static int vol_zero_cached(struct vol *v, uint64_t owner, uint64_t index, uint32_t delta,
			   bool keep_clean_zeros)
{
	struct buf *b;
	bool keep;
	int err;

	b = buf_find_hold(v->v_cache, owner, index);
	if (!b)
		return 0; /* a later fill sees the record */
	keep = keep_clean_zeros && buf_state(b) == BUF_CLEAN &&
	       util_all_zero(buf_data(b), v->v_block_size);
	buf_put(b);
	if (keep)
		return 0;
	err = buf_get_new(v->v_cache, owner, index, &b); /* waits out a fill or a new write */
	if (err)
		return err;
	err = buf_modify_begin(b, delta);
	if (!err) {
		memset(buf_data(b), 0, v->v_block_size);
		err = vol_punch_add(&v->v_punches, owner, index, delta, true); /* (2) */
		buf_modify_end(b);
	}
	buf_put(b);
	return err;
}

int vol_punch(struct vol_txn *t, uint64_t owner, uint64_t index)
{
	struct vol *v = t->vt_vol;
	uint32_t delta = t->vt_op.dop_delta;
	int err;

	err = vol_txn_charge(t, owner, index);
	if (!err)
		err = vol_punch_add(&v->v_punches, owner, index, delta, true);
	if (err)
		return err;
	return vol_zero_cached(v, owner, index, delta, false);
}

/* ---- truncates ---------------------------------------------------------------- */

/*
 * What the commit writes for a block a truncate frees: the translation
 * block (and, in a large translation, its level-1 map block) where its
 * number dies.
 */
static uint64_t vol_free_worst(const struct vol *v)
{
	return (vol_vblock_worst(v) - 1) / 2;
}

/*
 * Blocks a truncate may free for each block of its transaction: a
 * block's reservation holds the translation blocks of every block it
 * may rewrite (vol_txn_worst), which is what frees need.
 */
static uint64_t vol_frees_per_block(const struct vol *v)
{
	return vol_block_rewrites(v) * (vol_vblock_worst(v) - 1) / vol_free_worst(v);
}

/* The transaction blocks of a truncate freeing @nfree blocks. */
static uint64_t vol_truncate_blocks(const struct vol *v, uint64_t nfree)
{
	uint64_t per = vol_frees_per_block(v);

	return 1 + nfree / per + (nfree % per != 0);
}

uint64_t vol_truncate_cost(const struct vol *v, uint64_t n)
{
	uint64_t nfree = n, entries = v->v_block_size / 8, span = 1;

	if (!n)
		return 0;
	/* at each level, the map blocks wholly inside a range of n indexes
	 * that starts anywhere: at most ceil(n / span) */
	for (unsigned l = 1; l <= v->v_height_max; l++) {
		span = span > UINT64_MAX / entries ? UINT64_MAX : span * entries;
		nfree += (n + span - 1) / span;
	}
	return vol_truncate_blocks(v, nfree);
}

/*
 * A truncate frees blocks the transaction never touched, and the commit
 * writes a translation block for each of them (its number dies, dat.c),
 * so its cost is the blocks it frees, not one. vol_truncate_plan finds
 * how far down a truncate can go for a budget: it counts, from the top
 * of the range down, the blocks a truncate from each index would free:
 *
 *   - the owner's committed tree: each data block, and each map block
 *     wholly at or past the index (bmap_walk_down);
 *   - each data block dirty in the cache, which a delta not yet
 *     committed may add to the tree with the map blocks above it
 *     (1 + v_height_max: the tree may also grow for it).
 *
 * The cache is listed before the tree is walked: a dirty block whose
 * commit ends in between is counted twice, never missed. Both counts
 * are upper bounds as long as nothing is written in the range before
 * the truncate's transaction ends (the caller's to ensure: vol.h).
 */
struct vol_trunc_plan {
	uint64_t tp_budget, tp_total, tp_from;
	uint64_t *tp_dirty; /* dirty data blocks in range, highest first */
	size_t tp_ndirty, tp_next;
	uint64_t tp_dirty_cost;
	bool tp_done;
};

/* Count @cost blocks freed from @index down; stop once the budget is spent. */
static int vol_trunc_plan_add(struct vol_trunc_plan *p, uint64_t index, uint64_t cost)
{
	if (index >= p->tp_from) {
		p->tp_total += cost; /* freed anyway by a truncate from tp_from */
		return 0;
	}
	if (p->tp_total && p->tp_total + cost > p->tp_budget) {
		p->tp_done = true; /* the first index always goes in: progress */
		return 1;
	}
	p->tp_total += cost;
	p->tp_from = index;
	return 0;
}

/* Count the dirty blocks at or above @index. */
static int vol_trunc_plan_dirty(struct vol_trunc_plan *p, uint64_t index)
{
	int stop = 0;

	while (!stop && p->tp_next < p->tp_ndirty && p->tp_dirty[p->tp_next] >= index)
		stop = vol_trunc_plan_add(p, p->tp_dirty[p->tp_next++], p->tp_dirty_cost);
	return stop;
}

static int vol_trunc_plan_visit(void *arg, uint64_t index, unsigned level)
{
	struct vol_trunc_plan *p = arg;
	int stop = vol_trunc_plan_dirty(p, index);

	(void)level;
	return stop ? stop : vol_trunc_plan_add(p, index, 1);
}

static int vol_cmp_desc(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? 1 : x > y ? -1 : 0;
}

/* The data blocks of @owner in [@lo, @hi) dirty in the cache, highest first. */
static int vol_trunc_dirty(struct vol *v, uint64_t owner, uint64_t lo, uint64_t hi,
			   struct vol_trunc_plan *p)
{
	uint64_t *idx;
	size_t n, got = 0;
	int err;

	err = buf_owner_cached(v->v_cache, owner, lo, &idx, &n);
	if (err)
		return err;
	for (size_t i = 0; i < n; i++) {
		struct buf *b;

		if (bmap_is_node(idx[i]) || idx[i] >= hi)
			continue;
		b = buf_find_hold(v->v_cache, owner, idx[i]);
		if (!b)
			continue; /* gone: in the tree, if anywhere */
		if (buf_state(b) != BUF_CLEAN)
			idx[got++] = idx[i];
		buf_put(b);
	}
	if (got)
		qsort(idx, got, sizeof(*idx), vol_cmp_desc);
	p->tp_dirty = idx;
	p->tp_ndirty = got;
	return 0;
}

static int vol_trunc_plan_once(struct vol *v, uint64_t owner, uint64_t lo, uint64_t hi,
			       struct vol_trunc_plan *p)
{
	struct bmap_root otab, root;
	struct bmap_walk w;
	int err;

	bmap_walk_begin(&v->v_map, &v->v_otab, &w, &otab);
	err = otab_read(v, &w, &otab, owner, &root);
	if (!err)
		err = bmap_walk_down(&w, owner, &root, lo, hi, vol_trunc_plan_visit, p);
	if (!err)
		err = vol_trunc_plan_dirty(p, lo);
	return err > 0 ? 0 : err;
}

int vol_truncate_plan(struct vol *v, uint64_t owner, uint64_t lo, uint64_t hi, uint64_t budget,
		      uint64_t *from, uint64_t *cost)
{
	struct vol_trunc_plan p = {0};
	int err;

	if (!vol_owner_valid(owner, MIN(lo, VOL_MAX_INDEX)) || lo > hi)
		return -EINVAL;
	*from = lo;
	*cost = 0;
	if (lo >= hi || lo > VOL_MAX_INDEX)
		return 0;
	err = vol_trunc_dirty(v, owner, lo, hi, &p);
	if (err)
		return err;
	do {
		p = (struct vol_trunc_plan){.tp_budget =
						budget ? (budget - 1) * vol_frees_per_block(v) : 0,
					    .tp_from = hi,
					    .tp_dirty = p.tp_dirty,
					    .tp_ndirty = p.tp_ndirty,
					    .tp_dirty_cost = 1 + v->v_height_max};
		err = vol_trunc_plan_once(v, owner, lo, hi, &p);
	} while (err == -EAGAIN); /* a commit ended under the walk: walk again */
	free(p.tp_dirty);
	if (err)
		return err;
	*from = p.tp_done ? p.tp_from : lo;
	*cost = p.tp_total ? vol_truncate_blocks(v, p.tp_total) : 0; /* 0: nothing to free */
	return 0;
}

/*
 * The truncate is recorded first (2), so a fill that starts later reads
 * zeros; then every cached data block at or past @from_index is zeroed
 * as a punch would (a fill in progress is waited out by buf_get_new). A
 * block not cached needs nothing until the commit prunes the map. Its
 * first block of @t is the map path and owner record the commit
 * rewrites (commit.c (1)); each other one covers vol_frees_per_block
 * blocks it frees, whose translation blocks the commit dirties: booked
 * with the delta's map paths (vol.c (5)), so the throttle leaves them
 * room in the cache.
 */
int vol_truncate(struct vol_txn *t, uint64_t owner, uint64_t from_index, uint64_t cost)
{
	struct vol *v = t->vt_vol;
	uint32_t delta = t->vt_op.dop_delta;
	uint64_t *idx;
	size_t n;
	int err;

	if (!cost)
		return -EINVAL;
	if (t->vt_left < cost) {
		log_err("vol: a truncate costs more blocks than its transaction has left");
		return -EINVAL;
	}
	err = vol_txn_charge(t, owner, MIN(from_index, VOL_MAX_INDEX));
	if (err || from_index > VOL_MAX_INDEX)
		return err; /* past every block: nothing to do */
	t->vt_left -= cost - 1;
	atomic_fetch_add(&v->v_paths[delta & 1],
			 (cost - 1) * vol_frees_per_block(v) * vol_free_worst(v));
	err = vol_trunc_add(&v->v_punches, owner, from_index, delta);
	if (!err)
		err = buf_owner_cached(v->v_cache, owner, from_index, &idx, &n);
	if (err)
		return err;
	for (size_t i = 0; i < n && !err; i++) {
		if (bmap_is_node(idx[i]))
			continue; /* a map block: the commit's */
		err = vol_zero_cached(v, owner, idx[i], delta, true);
	}
	free(idx);
	return err;
}

int vol_read_range(struct vol *v, uint64_t owner, uint64_t index, uint32_t off, uint32_t len,
		   void *data)
{
	struct buf *b;
	int err;

	if (!vol_owner_valid(owner, index) || off > v->v_block_size || len > v->v_block_size - off)
		return -EINVAL;
	err = buf_read(v->v_cache, owner, index, &b);
	if (err)
		return err;
	memcpy(data, (const unsigned char *)buf_data(b) + off, len);
	buf_put(b);
	return 0;
}

int vol_read(struct vol *v, uint64_t owner, uint64_t index, void *data)
{
	return vol_read_range(v, owner, index, 0, v->v_block_size, data);
}

int vol_sync(struct vol *v)
{
	return delta_sync(v->v_ds);
}

uint32_t vol_block_size(const struct vol *v)
{
	return v->v_block_size;
}

uint32_t vol_committed_delta(struct vol *v)
{
	return (uint32_t)atomic_load(&v->v_committed);
}

void vol_delta_stats(struct vol *v, struct delta_stats *st)
{
	delta_stats(v->v_ds, st);
}

void vol_space(struct vol *v, struct log_space *sp)
{
	log_space(v->v_log, sp);
}

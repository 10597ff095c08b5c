/*
 * vol_internal.h - what the files of the volume layer share (private to
 * src/vol/ and its tests).
 *
 *   vol.c     open, close, transactions, the front end (write, punch,
 *             read), the fill callback, reservations; the design
 *   bmap.c    block maps: radix trees of map blocks, the walk
 *   otab.c    the owner table (owner 1): one record per owner
 *   sroot.c   the super root block
 *   punch.c   punches waiting for their delta's commit
 *   commit.c  the commit (segment constructor)
 *   table.c   a small hash table keyed by (owner, index)
 *   check.c   vol_check: the volume half of fsck
 *   dat.c     the block address translation (owner 3): virtual block numbers
 *   usage.c   segment usage: live blocks per segment, releasing empty ones
 *   clean.c   the segment cleaner: moving live blocks out of victims
 *
 * docs/FORMAT.md ("Metadata blocks") describes the on-disk bytes.
 */
#ifndef CAIRN_VOL_INTERNAL_H
#define CAIRN_VOL_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "buf/buf.h"
#include "util/util.h"
#include "vol/vol.h"

/* ---- block numbering --------------------------------------------------- */

#define VOL_OTAB_OWNER	1 /* the owner table is owner 1's data */
#define VOL_SNAP_OWNER	2 /* the snapshot table is owner 2's data (snap.c) */
#define VOL_DAT_OWNER	3 /* the block address translation is owner 3's data (dat.c) */
#define VOL_SUF_OWNER	4 /* the segment usage file is owner 4's data (suf.c) */
#define VOL_CKPT_OWNER	5 /* the checkpoint file is owner 5's data (ckpt.c) */
#define VOL_SROOT_OWNER 0 /* summary entry of a super root (owner 0, index 0) */

/*
 * Map blocks are buffers of the owner whose tree they belong to, with
 * index VOL_META_BIT | level << VOL_LEVEL_SHIFT | node number. Level 1
 * points at data; the node at level l covering data index i is number
 * i >> (shift * l).
 */
#define VOL_META_BIT	(1ULL << 63)
#define VOL_LEVEL_SHIFT 48
#define VOL_NODE_MASK	((1ULL << VOL_LEVEL_SHIFT) - 1)
/* Enough levels for the largest tree at the smallest block (512 bytes). */
#define VOL_MAX_LEVELS 8

/* ---- table.c: a hash table keyed by (owner, index) --------------------- */

struct vol_kv {
	uint64_t kv_owner;
	uint64_t kv_index;
	void *kv_val; /* NULL: empty slot */
};

/* Open addressing, no removal; owned by one thread (the commit's). */
/* Bytes of one log summary entry (docs/FORMAT.md, "Summary entry"). */
#define VOL_LOG_ENTRY_BYTES 32u

struct vol_table {
	struct vol_kv *vt_slots;
	size_t vt_cap; /* power of two, or 0 */
	size_t vt_n;
};

void *vol_table_get(const struct vol_table *t, uint64_t owner, uint64_t index);
/* Insert a new key (@val non-NULL); -ENOMEM. */
int vol_table_put(struct vol_table *t, uint64_t owner, uint64_t index, void *val);
/* Call @fn on every value, then empty the table and free its memory. */
/* Insert, or replace the value of an existing key. */
int vol_table_set(struct vol_table *t, uint64_t owner, uint64_t index, void *val);
void vol_table_clear(struct vol_table *t, void (*fn)(void *val));
/* Call @fn on every value. */
void vol_table_each(struct vol_table *t, void (*fn)(void *val));

/* ---- bmap.c: block maps ---------------------------------------------- */

/*
 * The map machinery of one volume: the buffer cache the map blocks live
 * in, their geometry, and the one lock and generation that guard every
 * map block, every owner-table block and the owner table's root.
 */
struct bmap {
	struct buf_cache *bm_cache; /* immutable */
	uint32_t bm_entries;	    /* immutable: entries per map block */
	unsigned bm_shift;	    /* immutable: log2(bm_entries) */
	/*
	 * Readers of map entries, owner records and placed roots hold it
	 * shared; the commit changes them holding it exclusive.
	 */
	pthread_rwlock_t bm_lock;
	uint64_t bm_gen;		 /* commits ended; protected by bm_lock */
	const struct bmap_tree *bm_dat;	 /* immutable: the translation's tree (dat.c) */
	const struct bmap_tree *bm_suf;	 /* immutable: the segment usage file's (suf.c) */
	const struct bmap_tree *bm_ckpt; /* immutable: the checkpoint file's (ckpt.c) */
	/* the commit's cursors (bmap.c (8)): its thread alone, between
	 * bmap_cursors_begin and _end */
	_Atomic bool bm_cursoring;
	pthread_t bm_cursor_thread;
	struct buf *bm_cursor[2]; /* the last level-1 map block, the last block */
};

/* One block map (of an owner, or of the owner table). */
struct bmap_tree {
	uint64_t bt_owner;	/* immutable */
	uint64_t bt_root;	/* block of the placed root, 0: none; bm_lock */
	uint8_t bt_root_height; /* height bt_root is the root of; bm_lock */
	uint8_t bt_height;	/* height being built (>= bt_root_height);
				   commit thread only */
	bool bt_record_stale;	/* the record was not stored (bc_root
				   failed); commit thread only */
};

/* A placed root, as a reader sees it. */
struct bmap_root {
	uint64_t br_pblk;
	unsigned br_height;
};

/* A reader's walk: the generation it started in, and the translation's
 * root then (virtual block numbers are resolved through it: dat.c). */
struct bmap_walk {
	struct bmap *w_map;
	uint64_t w_gen;
	struct bmap_root w_dat;
	struct bmap_root w_suf;	 /* the segment usage file's root then */
	struct bmap_root w_ckpt; /* the checkpoint file's */
};

/* What the commit changing map blocks needs: the delta, and a hook told of
 * every map or owner-table block it dirtied (it takes its own reference). */
struct bmap_change {
	uint32_t bc_delta;
	int (*bc_note)(void *arg, struct buf *b);
	/* the change leaves behind the block @owner's entry named (a virtual
	 * block number, or an address in the translation's own tree); told
	 * before the entry changes, which a failure here leaves as it was
	 * (bmap.c (7)) */
	int (*bc_gone)(void *arg, uint64_t owner, uint64_t entry);
	/* @t's placed root (or height) changed: its owner's record must say so */
	int (*bc_root)(void *arg, const struct bmap_tree *t);
	void *bc_arg;
};

int bmap_init(struct bmap *m, struct buf_cache *c);
void bmap_destroy(struct bmap *m);
/* The commit's cursors (bmap.c (8)): from _begin to _end, on its thread. */
void bmap_cursors_begin(struct bmap *m);
void bmap_cursors_end(struct bmap *m);

static inline uint64_t bmap_node_index(const struct bmap *m, unsigned level, uint64_t index)
{
	return VOL_META_BIT | ((uint64_t)level << VOL_LEVEL_SHIFT) |
	       (index >> (m->bm_shift * level));
}

/*
 * Owners whose tree of height 0 has its data block 0 as its root; the
 * owner table's, the translation's and the segment usage file's always
 * have map blocks (height 0: no blocks).
 */
static inline bool bmap_direct_root(uint64_t owner)
{
	return owner != VOL_OTAB_OWNER && owner != VOL_DAT_OWNER && owner != VOL_SUF_OWNER &&
	       owner != VOL_CKPT_OWNER;
}

/* Trees whose entries are virtual block numbers: all but the translation's
 * and the segment usage file's, which name addresses. */
static inline bool bmap_virtual(uint64_t owner)
{
	return owner != VOL_DAT_OWNER && owner != VOL_SUF_OWNER && owner != VOL_CKPT_OWNER;
}

static inline bool bmap_is_node(uint64_t index)
{
	return index & VOL_META_BIT;
}

static inline unsigned bmap_node_level(uint64_t node_index)
{
	return (unsigned)((node_index & ~VOL_META_BIT) >> VOL_LEVEL_SHIFT);
}

/* The first data index a map block covers. */
static inline uint64_t bmap_node_first(const struct bmap *m, uint64_t node_index)
{
	return (node_index & VOL_NODE_MASK) << (m->bm_shift * bmap_node_level(node_index));
}

/* The least height whose tree holds data index @index (>= 1). */
unsigned bmap_height_for(const struct bmap *m, uint64_t index);
/* Entry @slot of a map block's data, in host order. */
uint64_t bmap_entry(const void *data, unsigned slot);

/* Readers (any thread). -EAGAIN from any of them: restart the walk. */
void bmap_walk_begin(struct bmap *m, const struct bmap_tree *t, struct bmap_walk *w,
		     struct bmap_root *root);
/* True if no commit ended since @w began; bm_lock held (shared). */
bool bmap_walk_valid_locked(const struct bmap_walk *w);
/*
 * The block at @level (0: data) on data index @index's path in the tree
 * under @root: *pblk, 0 if there is none (a hole).
 */
int bmap_lookup(struct bmap_walk *w, uint64_t owner, const struct bmap_root *root, unsigned level,
		uint64_t index, uint64_t *pblk);
/*
 * Visit every block of the tree under @root that a truncate from data
 * index @lo or above could free, below @hi, highest index first: each
 * data block in [@lo, @hi) as (its index, 0), and each map block whose
 * first data index is in [@lo, @hi) as (that index, its level), after
 * every block under it. @fn's nonzero return stops the walk and is
 * returned.
 */
typedef int (*bmap_down_fn)(void *arg, uint64_t index, unsigned level);
int bmap_walk_down(struct bmap_walk *w, uint64_t owner, const struct bmap_root *root, uint64_t lo,
		   uint64_t hi, bmap_down_fn fn, void *arg);
/* Get block (owner, index), whose address the walk found to be @pblk. */
int bmap_read_block(struct bmap_walk *w, uint64_t owner, uint64_t index, uint64_t pblk,
		    struct buf **out);
/*
 * For bo_fill, after reading a block at a hinted address: -ESTALE if the
 * walk that passed the hint is stale (a commit ended since it read the
 * address), so the fill must fail rather than cache what may be an old
 * copy. 0 for fills not started by a walk (the commit's own).
 */
int bmap_hint_check(struct bmap *m);
/* The walk whose fill this thread runs (NULL: none, the commit's). */
struct bmap_walk *bmap_fill_walk(void);
/* A commit ended: stale walks must restart. */
void bmap_gen_bump(struct bmap *m);

/* The commit (one thread). */
/*
 * Set the entry for data index @index in @t's map block at @level; data
 * block 0 of an owner's tree of height 0 is its root instead (bc_root).
 */
int bmap_set(struct bmap *m, struct bmap_tree *t, const struct bmap_change *ch, unsigned level,
	     uint64_t index, uint64_t value);
/* Clear @index's data entry if it is set (a punch). */
int bmap_clear(struct bmap *m, struct bmap_tree *t, const struct bmap_change *ch, uint64_t index);
/*
 * Map block @node of @t now lives at @pblk: set its parent's entry, or
 * make it @t's placed root (told to bc_root).
 */
int bmap_place(struct bmap *m, struct bmap_tree *t, const struct bmap_change *ch, struct buf *node,
	       uint64_t pblk);
/*
 * A truncate: clear every entry of @t for data indexes >= @from (> 0),
 * rewriting only the map blocks on @from's path; the subtrees unlinked
 * are the caller's to drop from the cache (bmap.c (6)). Every block
 * they hold goes to bc_gone (their map blocks are read to find them).
 */
int bmap_prune(struct bmap *m, struct bmap_tree *t, const struct bmap_change *ch, uint64_t from);
/* A truncate to 0: @t has no blocks any more; each of them goes to
 * bc_gone, and the empty root to bc_root. */
int bmap_empty(struct bmap *m, struct bmap_tree *t, const struct bmap_change *ch);
/* True if map block @node_index is part of @t as being built. */
bool bmap_in_tree(const struct bmap *m, const struct bmap_tree *t, uint64_t node_index);
/*
 * The commit: change data block @index of @t (created if a hole) in
 * @ch's delta: @fn(@arg, its data) runs under bm_lock exclusive (readers
 * see all of the change or none), then bc_note (owner-table and
 * translation blocks).
 */
int bmap_change_block(struct bmap *m, struct bmap_tree *t, const struct bmap_change *ch,
		      uint64_t index, void (*fn)(void *arg, void *data), void *arg);
/*
 * Data block @index of @t for the commit: cached, read from its address,
 * new (zeroed, Invalid) when @create, else *out = NULL (a hole).
 */
int bmap_get_block(struct bmap *m, struct bmap_tree *t, uint64_t index, bool create,
		   struct buf **out);
/*
 * Visit every block of a tree naming addresses (the translation's, the
 * segment usage file's, the checkpoint file's) whose root @root has
 * @height, read from the device, not the cache (an open, vol_check):
 * @fn(@arg, pblk, level, index) for each map block before its children
 * (level >= 1, index: the first data index it covers), and for each data
 * block (level 0, its index; not read), leftmost first. A nonzero return
 * of @fn stops the walk and is returned; -EUCLEAN for an address outside
 * the segments.
 */
int bmap_dev_walk(struct vol *v, uint64_t root, unsigned height,
		  int (*fn)(void *arg, uint64_t pblk, unsigned level, uint64_t index), void *arg);

/* ---- otab.c: the owner table ------------------------------------------ */

#define VOL_REC_SIZE   64
#define VOL_REC_IN_USE 0x1

struct vol_rec {
	uint64_t vr_root;
	uint8_t vr_height;
	uint8_t vr_flags;
};

struct vol;

/* Reader: @owner's record through walk @w, *root its map's root. */
int otab_read(struct vol *v, struct bmap_walk *w, const struct bmap_root *otab, uint64_t owner,
	      struct bmap_root *root);
/* Commit: @owner's record as the commit sees it. */
int otab_load(struct vol *v, uint64_t owner, struct vol_rec *rec);
/* Commit: store @owner's record (dirties an owner-table block). */
int otab_store(struct vol *v, const struct bmap_change *ch, uint64_t owner,
	       const struct vol_rec *rec);

/* ---- dat.c: the block address translation --------------------------------- */

/*
 * Every block of a tree but the translation's own (owner 3) is named by
 * a virtual block number; entry v of the translation says where block v
 * is, and from which delta to which it was part of the state. 16 bytes
 * (docs/FORMAT.md, "Translation block"):
 *
 *   0 physical block u64 (0: the entry is free)
 *   8 birth u32: the delta that wrote it
 *   12 death u32: the delta that left it behind, 0 while it is current
 */
#define VOL_DAT_ENTRY_BYTES 16u

struct vol_dat_entry {
	uint64_t de_pblk;
	uint32_t de_birth;
	uint32_t de_death;
};

/* Entries per translation block. */
static inline uint32_t vol_dat_per_block(uint32_t bs)
{
	return bs / VOL_DAT_ENTRY_BYTES;
}

void vol_dat_decode(const void *block, uint32_t slot, struct vol_dat_entry *e);

/*
 * Segment usage (usage.c): how many blocks of the durable state each
 * segment holds. The commit collects its changes (blocks written, blocks
 * its map changes left behind) and applies them once durable.
 */
struct vol_u64vec {
	uint64_t *uv_v;
	size_t uv_n, uv_cap;
};

/* The allocator of virtual block numbers; commit thread only. */
struct vol_dat {
	uint64_t vd_next;	   /* no entry at or past it was ever used */
	struct vol_u64vec vd_free; /* numbers the sweep found reusable, in order; */
	size_t vd_head;		   /* those from vd_head on not handed out yet */
	uint64_t vd_sweep;	   /* the translation block the sweep reads next */
	uint64_t vd_idle_floor;	   /* a whole pass at this floor found nothing */
	uint64_t vd_pass_found;	   /* numbers found since the pass began */
	struct vol_table vd_held;  /* numbers a failed commit may have linked
				      without setting their entry (dat_hold) */
	uint64_t vd_allocated;	   /* statistics: numbers handed out, */
	uint64_t vd_reused;	   /* of them found by the sweep, */
	uint64_t vd_killed;	   /* and entries left behind */
};

/*
 * Readers: the block virtual number @vblk names, through walk @w's
 * translation (-EAGAIN: restart the walk; -EUCLEAN: a free entry).
 */
int dat_xlate_walk(struct bmap_walk *w, uint64_t vblk, uint64_t *pblk);
/* The commit (and fills it started): through the translation as it builds it. */
int dat_xlate_commit(struct vol *v, uint64_t vblk, uint64_t *pblk);
/* The commit: entry @vblk as it builds the translation, whatever it holds
 * (all zero: free, or past the numbers ever used). */
int dat_entry(struct vol *v, uint64_t vblk, struct vol_dat_entry *e);
/* For a fill at hint @entry of a block of @owner: its address. */
int dat_xlate_fill(struct vol *v, uint64_t owner, uint64_t entry, uint64_t *pblk);
/* The commit: a number for a block it is about to write. */
int dat_alloc(struct vol *v, uint64_t *vblk);
/*
 * The commit: entry @vblk (from dat_alloc) for a block it wrote at @pblk,
 * born in @ch->bc_delta. Dirties a translation block (bc_note).
 */
int dat_set_new(struct vol *v, const struct bmap_change *ch, uint64_t vblk, uint64_t pblk);
/*
 * The commit moved block @vblk, current, to @pblk: its entry says so
 * (the trees naming it do not change); *old where it was, *birth the
 * delta that wrote it (for the usage counts: vol_usage_gone).
 */
int dat_move(struct vol *v, const struct bmap_change *ch, uint64_t vblk, uint64_t pblk,
	     uint64_t *old, uint64_t *birth);
/*
 * The commit: block @vblk is no longer part of the state from
 * @ch->bc_delta on (its death); *pblk where it lies and *birth the delta
 * that wrote it, for the usage counts (0, 0: nothing to leave behind).
 */
int dat_kill(struct vol *v, const struct bmap_change *ch, uint64_t vblk, uint64_t *pblk,
	     uint64_t *birth);
/*
 * The commit failed between dat_alloc's @vblk and its dat_set_new (from
 * linking on): the map, kept for the next commit, may name it with no
 * entry set. It is not handed out again, and leaving it behind is no
 * damage, until a commit succeeds (dat_commit_ok), which has relinked
 * everything a failed one linked.
 */
void dat_hold(struct vol *v, uint64_t vblk);
void dat_commit_ok(struct vol *v);
/* vol_open: the allocator as the super root leaves it. */
void dat_open(struct vol *v);
void dat_close(struct vol *v);

/* ---- sroot.c: the super root ------------------------------------------- */

/*
 * 2: an owner's tree of height 0 may have a root, its data block 0.
 * 3: the previous super root, the commit time and the oldest readable
 * delta (the checkpoint chain).
 * 4: the block address translation: every tree but its own names
 * virtual blocks. An older state names physical blocks; it is refused.
 */
#define VOL_SR_VERSION	   5u
#define VOL_SR_VERSION_MIN 4u

struct vol_sroot {
	uint64_t sr_delta;
	uint64_t sr_otab_root;
	uint8_t sr_otab_height;
	uint64_t sr_next_owner;	    /* hint for the namespace layer */
	uint64_t sr_blocks_written; /* payload blocks of committed deltas */
	uint64_t sr_prev;	    /* the previous checkpoint's super root, or 0 */
	uint64_t sr_time_ns;	    /* commit time, CLOCK_REALTIME; 0: unknown */
	uint64_t sr_readable_from;  /* the oldest delta whose state is whole */
	uint64_t sr_dat_root;	    /* the translation's root block (physical) */
	uint8_t sr_dat_height;
	uint64_t sr_dat_next; /* no translation entry at or past it is used */
	uint64_t sr_suf_root; /* the segment usage file's root block (physical) */
	uint8_t sr_suf_height;
	bool sr_suf_current;   /* the file's counts are this state's (suf.c) */
	bool sr_unrooted;      /* raw moves some snapshot may not be re-rooted to (snap.c) */
	uint64_t sr_ckpt_root; /* the checkpoint file's root block (physical) */
	uint8_t sr_ckpt_height;
	uint64_t sr_ckpt_from; /* the file lists the readable checkpoints from this delta */
	uint64_t sr_ckpt_next; /* up to below this one (ckpt.c) */
	uint64_t sr_moved;     /* the newest delta up to this one that moved a block (sroot.c) */
};

/* Encode @sr into the block @buf of @bs bytes (zeroed, checksummed). */
void vol_sroot_encode(const struct vol_sroot *sr, void *buf, uint32_t bs);
/* Decode and check block @blk; -EUCLEAN (logged) if it is not a valid one. */
int vol_sroot_decode(const void *buf, uint32_t bs, uint64_t blk, struct vol_sroot *sr);
/* Read block @blk of the device and decode it (vol_sroot_decode); -EUCLEAN
 * also for a block outside the segments. */
int vol_sroot_load(struct vol *v, uint64_t blk, struct vol_sroot *sr);

/* ---- punch.c: punches waiting for their commit -------------------------- */

struct vol_punch_rec;
struct vol_trunc_rec;

struct vol_punches {
	struct cmutex vp_lock;
	struct vol_punch_rec **vp_buckets; /* protected by vp_lock */
	size_t vp_nbuckets;		   /* protected by vp_lock */
	_Atomic uint64_t vp_count;	   /* records; changed under vp_lock */
	struct vol_trunc_rec **vp_truncs;  /* truncates hashed by owner (VOL_TRUNC_BUCKETS);
					      protected by vp_lock */
	_Atomic uint64_t vp_ntrunc;	   /* truncates; changed under vp_lock */
};

struct vol_punch_key {
	uint64_t pk_owner;
	uint64_t pk_index;
};

int vol_punches_init(struct vol_punches *p);
void vol_punches_destroy(struct vol_punches *p);
/*
 * Record a punch of (owner, index) in @delta. @zeroed: it is the newest
 * change of the block in @delta (its cached buffer, if any, holds zeros).
 */
int vol_punch_add(struct vol_punches *p, uint64_t owner, uint64_t index, uint32_t delta,
		  bool zeroed);
/* A write in @delta overrides a punch of the block in @delta. */
void vol_punch_cancel(struct vol_punches *p, uint64_t owner, uint64_t index, uint32_t delta);
/*
 * True if some delta not yet committed punched (owner, index), or
 * truncated @owner at or below @index: the block reads as zeros.
 */
bool vol_punch_pending(struct vol_punches *p, uint64_t owner, uint64_t index);
/* Record a truncate of @owner from @from on, in @delta. */
int vol_trunc_add(struct vol_punches *p, uint64_t owner, uint64_t from, uint32_t delta);
/* The truncates of @delta as (owner, from) keys, malloc'ed (NULL if none). */
int vol_trunc_collect(struct vol_punches *p, uint32_t delta, struct vol_punch_key **keys,
		      size_t *n);
/* True if a punch is the newest change of the block in @delta. */
bool vol_punch_zeroed(struct vol_punches *p, uint64_t owner, uint64_t index, uint32_t delta);
/* The punches of @delta, in a malloc'ed array (*keys NULL if none). */
int vol_punch_collect(struct vol_punches *p, uint32_t delta, struct vol_punch_key **keys,
		      size_t *n);
/* @delta committed: forget its punches and truncates. */
void vol_punch_forget(struct vol_punches *p, uint32_t delta);
/* @from failed: its punches and truncates move to @to ("zeroed" only if
 * no later delta wrote the block since). */
void vol_punch_requeue(struct vol_punches *p, uint32_t from, uint32_t to);

/* ---- vol.c: the volume -------------------------------------------------- */

#define VOL_CLEAN_VICTIMS 16 /* most victims of one cleaning step (clean.c) */

/* ckpt.c: the checkpoint file's entries, and those noted for it */
#define VOL_CKPT_ENTRY_BYTES 16u
#define VOL_CKPT_PENDING_MAX 256 /* checkpoints noted, not written yet, at most */

/* A checkpoint's entry (docs/FORMAT.md, "Checkpoint block"). */
struct vol_ckpt_entry {
	uint64_t ce_sroot; /* its super root; 0: none */
	uint64_t ce_time_ns;
};

struct vol_ckpt_note {
	uint64_t cn_delta;
	struct vol_ckpt_entry cn_e;
};

/* Checkpoints noted for the file, oldest first (ckpt.c). */
struct vol_ckpt_pending {
	struct vol_ckpt_note cp_e[VOL_CKPT_PENDING_MAX];
	size_t cp_n;
	bool cp_lost; /* older ones dropped for room: the file starts again */
};

struct vol_usage {
	struct cmutex vu_lock;	   /* vu_live, vu_total: any thread reads them */
	uint32_t *vu_live;	   /* per segment */
	uint64_t vu_total;	   /* sum of vu_live */
	uint64_t *vu_cand;	   /* bitmap: no live block, maybe still in use; commit thread */
	struct vol_u64vec vu_born; /* this commit's; commit thread */
	struct vol_u64vec vu_gone; /* this commit's, and a failed one's; commit thread */
	struct vol_u64vec vu_failed_segs; /* segments failed commits wrote in; commit thread */
	struct vol_table vu_unborn;	  /* written by a failed commit, maybe still named */
	uint64_t vu_released;		  /* segments released since open; vu_lock */
	uint32_t *vu_age;		  /* per segment: delta of its youngest block (0: before
					     the open); commit thread */
	uint64_t vu_cleaned;		  /* victims the cleaner took; vu_lock */
	uint64_t vu_moved;		  /* blocks it moved; vu_lock */
	uint64_t vu_raw_moved;		  /* of which only snapshots kept; vu_lock */
	uint64_t vu_reroots;		  /* snapshots re-rooted after raw moves; vu_lock */
	uint64_t vu_clean_read;		  /* blocks of the victims it read; vu_lock */
	uint64_t vu_written;		  /* blocks the commits wrote; vu_lock */
	bool vu_cleaning;		  /* between the watermarks (clean.c); commit thread */
	bool vu_stalled;	/* stopped for want of progress (clean.c); commit thread */
	uint64_t vu_stall_txns; /* v_txn_ends then; commit thread */
	uint64_t vu_again_free; /* free segments after the last background step, */
	uint64_t vu_again_txns; /* and v_txn_ends then; commit thread */
	uint64_t vu_recent[VOL_CLEAN_VICTIMS]; /* victims the last step scanned whole (clean.c) */
	unsigned vu_nrecent;		       /* commit thread */
	uint64_t *vu_stuck;    /* bitmap: marked, scanned whole by the cleaner, nothing moved
				  from it: its blocks stay until a recount (clean.c); commit thread */
	uint64_t vu_own_carry; /* vc_own_res of failed commits (commit.c); commit thread */
	/* snapshots (snap.c): what they alone keep */
	uint32_t *vu_pinned;	  /* per segment: blocks only snapshots name; vu_lock */
	uint64_t vu_pinned_total; /* their sum; vu_lock */
	uint64_t *vu_snap;	  /* bitmap: may hold a block a snapshot names; vu_lock */
	uint64_t vu_sr_blk;	  /* the super root the counts describe; vu_lock */
	uint64_t vu_sr_delta;	  /* and its delta; vu_lock */
	uint64_t vu_dat_next;	  /* and its sr_dat_next; vu_lock */
	uint64_t vu_ckpt_root;	  /* and its checkpoint file's root, height; vu_lock */
	uint8_t vu_ckpt_height;
	_Atomic uint64_t vu_recount_at; /* recount at the settle of this delta or later */
	struct vol_snap_info *vu_snaps; /* the table as the open found it (snapshot opens) */
	size_t vu_nsnaps;
	/* the snapshots' deltas, as the last count found them and those
	 * created since (any thread adds, under vu_lock): what the cleaner
	 * moves blocks for (clean.c) */
	struct vol_u64vec vu_snap_deltas;
	struct vol_u64vec vu_snap_keys; /* and their re-root keys (snap.c), the same order */
	/* no snapshot's delta is later than this (UINT64_MAX: not known): a
	 * block written after it is no snapshot's, and leaving it behind
	 * pins nothing (vol_usage_may_keep); raised by every creation,
	 * lowered only by a count; vu_lock */
	uint64_t vu_snap_newest;
	uint64_t vu_proj_newest; /* vu_snap_newest when the commit projected the usage
				    file's entries (UINT64_MAX: not yet); commit thread */
	/* recent checkpoints: what a segment's release costs them */
	uint64_t *vu_emptied;	   /* per candidate: the delta that emptied it; written by
				      the commit thread under vu_lock */
	uint64_t *vu_emptied_ms;   /* and when (CLOCK_MONOTONIC); commit thread */
	uint64_t vu_mark_gen;	   /* snapshot marks made (a recount keeps them); vu_lock */
	uint64_t vu_readable_from; /* the next super root's sr_readable_from; vu_lock */
	uint64_t vu_waiting;	   /* candidates held by the protection period, or
				      retiring (usage.c); vu_lock */
	atomic_bool vu_short;	   /* a reservation fell short: protection yields */
	/* the segment usage file (suf.c): what its entries leave out, and
	 * which may differ from the counts */
	uint32_t *vu_suf_here;	       /* per segment: blocks of the file's own tree;
					  commit thread */
	struct vol_u64vec vu_suf_born; /* this commit's blocks of that tree; commit thread */
	struct vol_u64vec vu_suf_gone; /* and those it left behind; commit thread */
	uint64_t *vu_suf_dirty;	       /* bitmap: an entry the file may have wrong; vu_lock */
	bool vu_open_walked;	       /* the open counted by a walk (vol_usage_stats) */
	atomic_uint vu_marking;	       /* snapshots marked whose records may not be durable yet: a
					  recount keeps every mark (usage.c) */
	unsigned vu_marking_late;      /* of those, records whose commit failed; vu_lock */
	uint64_t vu_marking_until;     /* durable once a commit of this delta succeeds; vu_lock */
	bool vu_suf_stale;	/* a count may be wrong until a recount (a damaged translation
				   entry met): no super root calls the file current; commit thread */
	int32_t *vu_suf_born_n; /* per segment, scratch of the projection: */
	int32_t *vu_suf_gone_n; /* zero between commits; commit thread */
	int32_t *vu_suf_kept_n; /* (of vu_suf_gone_n, those a snapshot may keep) */
	struct vol_u64vec vu_gone_birth; /* per vu_gone entry: the delta that wrote it
					    (0: not known); commit thread */
	/* where the commit moved blocks a snapshot may read once re-rooted
	 * though none seemed to when it moved them, and their births: looked
	 * at again as it settles (vol_usage_moved); commit thread */
	struct vol_u64vec vu_moved_to, vu_moved_birth;
};

/* A snapshot's block the cleaner wrote again by address (commit.c). */
struct vol_raw_move {
	uint64_t rm_owner, rm_index, rm_vblk; /* its summary entry */
	uint32_t rm_flags;
	uint64_t rm_from; /* the copy the snapshots read: durable, counted till a re-root */
};

struct vol_raw_moves {
	struct vol_raw_move *rms_v;
	size_t rms_n, rms_cap;
};

/* The re-rooter (snap.c): a thread that re-roots the snapshots once the
 * cleaner moved some of their blocks. */
struct vol_reroot {
	pthread_t vr_thread;
	bool vr_started; /* vr_lock and vr_cond exist (the open's thread only) */
	struct cmutex vr_lock;
	pthread_cond_t vr_cond; /* vr_wanted, vr_stop, or a round done */
	bool vr_wanted;		/* a commit made raw moves; vr_lock */
	bool vr_stop;		/* vol_close; vr_lock */
	atomic_bool vr_pending; /* raw moves wait for their re-root: the cleaner makes no more */
	atomic_bool vr_rooted;	/* a round re-rooted every snapshot: the next commit
				   clears sr_unrooted */
	uint64_t vr_rounds;	/* re-roots done (tests); vr_lock */
};
struct vol {
	struct bdev *v_bdev;		  /* immutable */
	struct log *v_log;		  /* immutable */
	struct log_geometry v_geo;	  /* immutable */
	struct buf_cache *v_cache;	  /* immutable */
	struct buf_track *v_track;	  /* immutable: zone = segment */
	struct delta_sys *v_ds;		  /* immutable once open */
	uint32_t v_block_size;		  /* immutable */
	uint32_t v_recs_per_block;	  /* immutable: owner records per block */
	unsigned v_height_max;		  /* immutable: levels of an owner's map */
	unsigned v_otab_height_max;	  /* immutable: levels of the owner table's */
	unsigned v_dat_height_max;	  /* immutable: levels of the translation's */
	unsigned v_suf_height_max;	  /* immutable: levels of the usage file's */
	unsigned v_ckpt_height_max;	  /* immutable: levels of the checkpoint file's */
	uint64_t v_dat_max;		  /* immutable: most translation entries (dat.c) */
	bool v_dat_map_small;		  /* immutable: its map counted once (vol.c) */
	uint32_t v_checkpoint_every;	  /* immutable */
	uint64_t v_protect_ms;		  /* immutable: vol_open_opts.voo_protect_s */
	_Atomic uint32_t v_clean_low;	  /* voo_clean_low (0: default), or changed since */
	_Atomic uint32_t v_clean_high;	  /* voo_clean_high (0: default) */
	uint8_t v_clean_policy;		  /* immutable: VOL_CLEAN_* */
	atomic_bool v_clean_urgent;	  /* a reservation fell short: clean in the next commit */
	uint32_t v_max_dirty;		  /* immutable: a delta's dirty limit */
	uint64_t v_dirty_limit;		  /* immutable: most blocks one transaction may book */
	uint64_t v_buffer_limit;	  /* immutable: vol.c invariant (5) */
	uint64_t v_id;			  /* immutable: unique among this process's volumes */
	bool v_read_only;		  /* immutable: vol_open_opts.voo_read_only */
	bool v_snapshot;		  /* immutable: a snapshot is open (voo_snapshot) */
	bool v_snapshot_beside;		  /* immutable: ... beside a writer (voo_snapshot_find):
					     nothing of the live state was read or counted */
	_Atomic uint64_t v_paths[2];	  /* map-path buffers booked, by delta parity: (5) */
	_Atomic uint64_t v_dat_booked[2]; /* translation blocks booked, by delta parity */
	struct cmutex v_book_lock;	  /* protects v_booked */
	struct vol_table v_booked[2];	  /* level-1 map blocks booked, by delta parity */
	_Atomic uint64_t v_inflight;	  /* blocks booked by open transactions */
	_Atomic uint64_t v_txn_ends;	  /* transactions ended, for the throttle */
	_Atomic uint64_t v_paths_settled; /* commits that dropped their paths, for it too */
	_Atomic unsigned v_throttle_waiters;
	struct cmutex v_throttle_lock; /* a leaf: only to wait for a txn end */
	pthread_cond_t v_throttle_cond;
	struct bmap v_map;			/* lock and generation of every map */
	struct bmap_tree v_otab;		/* the owner table's map (bmap_tree rules) */
	struct bmap_tree v_dat;			/* the translation's map (bmap_tree rules) */
	struct bmap_tree v_suf;			/* the segment usage file's (bmap_tree rules) */
	struct bmap_tree v_ckpt;		/* the checkpoint file's (bmap_tree rules) */
	struct vol_ckpt_pending v_ckpt_pending; /* ckpt.c; commit thread */
	uint64_t v_ckpt_low;			/* its first block not pruned; commit thread */
	_Atomic uint64_t v_ckpt_from;		/* the durable sr_ckpt_from, for any thread */
	_Atomic uint64_t v_ckpt_next;		/* and sr_ckpt_next */
	struct vol_dat v_dat_alloc;		/* dat.c; commit thread */
	struct vol_punches v_punches;		/* its own lock */
	/*
	 * Owner maps a commit changed, with their heights as being built:
	 * emptied by a successful commit, kept across a failed one (whose
	 * map blocks are requeued with it). Commit thread only.
	 */
	struct vol_table v_trees;
	/* the moves of a failed commit (commit.c), whose blocks are requeued:
	 * the next commit moves them. Commit thread only. */
	struct vol_table v_moves;
	/* the raw moves of a failed commit (commit.c): the next commit writes
	 * them again before anything else. Commit thread only. */
	struct vol_raw_moves v_raw_moves;
	/* the snapshots' re-roots after raw moves (snap.c): asked for by the
	 * commit thread, done by the re-rooter thread */
	struct vol_reroot v_reroot;
	/* the newest durable super root and where it is: written by the
	 * commit thread (and the open) under v_sr_lock, which another thread
	 * takes to read them (vol_sr_get); the commit thread reads freely */
	struct vol_sroot v_sr;
	uint64_t v_sr_blk;
	struct cmutex v_sr_lock;      /* a leaf */
	struct vol_usage v_usage;     /* usage.c */
	_Atomic uint64_t v_committed; /* newest delta durable (v_sr.sr_delta, or an
					 empty one after it), for any thread */
	uint64_t v_commits;	      /* commit thread */
	struct cmutex v_snap_lock;    /* serializes snapshot creation and deletion */
};

/* vol.c: what a transaction of @nblocks must reserve (seed 000). */
uint64_t vol_txn_worst(const struct vol *v, uint64_t nblocks);
/* vol.c: what one of a run of @count blocks from @first and @nblocks
 * others must reserve (vol_txn_begin_run). */
uint64_t vol_txn_worst_run(const struct vol *v, uint64_t first, uint64_t count, uint64_t nblocks);
/* vol.c: what one block adds to that, log overhead aside: the block, its
 * map path, its owner's record block and that one's path, each with its
 * translation entries (vol_vblock_worst). */
uint64_t vol_block_worst(const struct vol *v);
/* vol.c: what one rewritten block costs with its translation entries. */
uint64_t vol_vblock_worst(const struct vol *v);
/* vol.c: the most translation blocks a volume may have. */
uint64_t vol_dat_blocks_max(const struct vol *v);
/* vol.c: the most translation and translation-map blocks a delta writes. */
uint64_t vol_dat_cap(const struct vol *v);
/* v_sr and v_sr_blk as they are, for a thread other than the commit's. */
void vol_sr_get(struct vol *v, struct vol_sroot *sr, uint64_t *blk);
/* vol.c: blocks one change may rewrite (vol_block_worst without translation). */
uint64_t vol_block_rewrites(const struct vol *v);
/* vol.c: the translation part of vol_txn_worst(@nblocks). */
uint64_t vol_txn_dat(const struct vol *v, uint64_t nblocks);
/* vol.c: the translation's map blocks a transaction reserves once. */
uint64_t vol_dat_upper(const struct vol *v);
/* vol.c: headers and summaries of the logs holding @payload blocks. */
uint64_t vol_log_overhead(const struct vol *v, uint64_t payload);
/* vol.c: the address of block (owner, index), data or map block, as a
 * reader would find it now; 0: a hole. */
int vol_resolve(struct vol *v, uint64_t owner, uint64_t index, uint64_t *pblk);
/* vol.c: vol_resolve, and *path: the blocks rewriting that block writes
 * now (it, its owner's map path, the owner's record block and the owner
 * table's map path). Commit thread (the heights it reads are the
 * commit's). */
int vol_resolve_path(struct vol *v, uint64_t owner, uint64_t index, uint64_t *pblk, uint64_t *path);
/* vol.c: vol_resolve_path, and *entry: what the tree names it by (its
 * virtual block, or its address in the translation's own tree). */
int vol_resolve_entry(struct vol *v, uint64_t owner, uint64_t index, uint64_t *entry,
		      uint64_t *pblk, uint64_t *path);
/* vol.c: what moving one block by its translation entry costs: the block,
 * its translation block and that one's level-1 map block. */
uint64_t vol_move_worst(const struct vol *v);

/* ---- clean.c ---------------------------------------------------------------- */

/*
 * At the start of the commit of @delta, after its punches: when free
 * segments are short, choose victims and dirty their live blocks in
 * @delta so that this commit writes them elsewhere; map and owner-table
 * blocks go to @keep_meta (which takes a reference). The blocks it
 * reserved for that (*reserved) are the caller's to release once the
 * commit is durable, or to carry to the next on failure.
 */
struct vol_clean_ops {
	/* a map block it dirtied: the commit keeps it for its level (and
	 * takes a reference) */
	int (*co_keep_meta)(void *arg, struct buf *b);
	/* block (owner, index), current as virtual block @vblk at @pblk and
	 * dirtied unchanged, is to be moved: the same number at a new address */
	int (*co_move)(void *arg, uint64_t owner, uint64_t index, uint64_t vblk, uint64_t pblk);
	/* block @vblk at @pblk, which no tree of the state names but a
	 * snapshot keeps (its summary entry: @owner, @index, @flags), is to be
	 * written again by address: the same number at a new address, the old
	 * copy kept until the snapshots are re-rooted (commit.c, raw moves) */
	int (*co_move_raw)(void *arg, uint64_t owner, uint64_t index, uint64_t vblk, uint32_t flags,
			   uint64_t pblk);
	void *co_arg;
};
int vol_clean(struct vol *v, uint32_t delta, const struct vol_clean_ops *ops, uint64_t *reserved);
/* delta_ops.do_reclaimable: some segment could be emptied (by the
 * cleaner, or is empty already); if so the next commit cleans, above the
 * low watermark too. Any thread. */
bool vol_clean_worthwhile(void *ctx);
/* delta_ops.do_again: the cleaner is between its watermarks. */
bool vol_clean_again(void *ctx);
/* The watermarks asked for (0: the defaults): at open, or since (tests). */
void vol_clean_watermarks(struct vol *v, uint32_t low, uint32_t high);
/*
 * Segments' worth of space neither written, nor promised to a
 * reservation, nor kept (what a writer may use), and the cleaner's
 * watermarks (@low, @high; either may be NULL) for the log space @sp.
 */
uint64_t vol_clean_free_segments(struct vol *v, const struct log_space *sp, uint64_t *low,
				 uint64_t *high);

/* ---- usage.c ---------------------------------------------------------------- */

/* Append @x to @uv; -ENOMEM. */
int vol_u64vec_push(struct vol_u64vec *uv, uint64_t x);

/* The segment of block @pblk (which lies in the segments). */
static inline uint64_t vol_seg_of(const struct vol *v, uint64_t pblk)
{
	return (pblk - v->v_geo.lg_seg_start) / v->v_geo.lg_seg_blocks;
}

/* Count the durable state's blocks per segment, write a checkpoint and
 * release every segment holding none (vol_open, before the deltas run). */
int vol_usage_open(struct vol *v, bool writable);
void vol_usage_close(struct vol *v);
/* The commit wrote a block at @pblk (a payload block or the super root). */
int vol_usage_born(struct vol *v, uint64_t pblk);
/* A raw move's copy at @pblk (commit.c): a block no tree of the state names
 * but a snapshot keeps; its segment is marked at once, and it counts as
 * pinned once the commit is durable. */
int vol_usage_born_pinned(struct vol *v, uint64_t pblk);
/*
 * The cleaner moved a current block written in delta @birth to @pblk
 * (commit.c). If a snapshot's delta may be @birth or later, a re-root
 * would have that snapshot read it there once it dies, so its segment
 * is marked (vu_snap), at once and, for a snapshot taken before the
 * commit settles, then. -ENOMEM.
 */
int vol_usage_moved(struct vol *v, uint64_t pblk, uint64_t birth);
/*
 * May a block written in delta @birth, left behind now, be a snapshot's?
 * Only if a snapshot's delta is @birth or later: its life must hold one
 * (the liveness rule), and it ends after every snapshot taken so far.
 * vu_lock.
 */
static inline bool vol_usage_may_keep(const struct vol_usage *u, uint64_t birth)
{
	return birth <= u->vu_snap_newest;
}
/*
 * A change of the commit left the block at @pblk behind (bc_gone), a
 * block written in delta @birth (0: not known, as for a block no
 * translation entry names): in a marked segment it stays, pinned, if a
 * snapshot's delta may be @birth or later (usage.c, vu_snap_newest).
 */
int vol_usage_gone(struct vol *v, uint64_t pblk, uint64_t birth);
/* The same for a block of the segment usage file's own tree (suf.c). */
int vol_usage_born_suf(struct vol *v, uint64_t pblk);
int vol_usage_gone_suf(struct vol *v, uint64_t pblk);
/* The commit is durable: apply its changes, release what emptied. */
void vol_usage_settle(struct vol *v);
/* The sr_readable_from of the super root being written now. Commit thread. */
uint64_t vol_usage_readable_from(struct vol *v);
/* log_checkpoint, the slot carrying the readable floor (usage.c (5)). Commit thread. */
int vol_checkpoint(struct vol *v);
/* Offer the candidate segments to the log (and write checkpoints first
 * if space is short): vol_usage_settle's last step, and what a commit
 * that wrote nothing does. Commit thread. */
void vol_usage_release(struct vol *v);
/* The commit failed: its blocks were never written; its trees are kept. */
void vol_usage_fail(struct vol *v);
/*
 * For vol_check: a copy of the kept counts (live, pinned, marks) into
 * @kept, and the super root they describe (*@sr_blk; 0 if none are kept),
 * taken at once, so that the walk of that state compares with them
 * however many commits settle meanwhile. -ENOMEM.
 */
struct vol_count;
int vol_usage_kept(struct vol *v, struct vol_count *kept, uint64_t *sr_blk);
void vol_usage_kept_free(struct vol_count *kept);
/*
 * For vol_check: compare @cn (the walk's counts) with @kept (the kept
 * counts, vol_usage_kept), and every counted segment with the log's use
 * now (a free segment must not
 * hold a checkpoint at or above @readable_from, the checked state's
 * floor); each difference to @problem. Returns the differences. The
 * kept pinned counts may be higher than the walk's, never lower
 * (usage.c (4)).
 */
uint64_t vol_usage_check(struct vol *v, const struct vol_count *cn, const struct vol_count *kept,
			 uint64_t readable_from, void (*problem)(void *arg, const char *msg),
			 void *arg);

/*
 * check.c: walk the durable state (super root @sr_blk, @sr) and the
 * snapshots its snapshot table names; count per segment (nsegments
 * entries, zeroed by the caller) the blocks of the state in vcn_live
 * (super root included, no duplicate check) and those only snapshots
 * name in vcn_pinned, and set in vcn_snap every segment holding a block
 * a snapshot names. vcn_snaps: the table's valid records (malloc'ed);
 * a bad record or snapshot is logged and left out.
 */
struct vol_count {
	uint32_t *vcn_live;
	uint32_t *vcn_pinned;
	uint64_t *vcn_snap;
	struct vol_snap_info *vcn_snaps;
	size_t vcn_nsnaps;
	/* if not NULL: also walk the recent checkpoints (the chain below the
	 * state, VOL_OPEN_CHECKPOINTS at most) and set here each segment
	 * holding one of their blocks the state does not name; vcn_recent_from
	 * is then the oldest checkpoint walked (the state's delta if none) */
	uint64_t *vcn_recent;
	uint64_t vcn_recent_from;
	/* if not NULL: the blocks of the state's segment usage file's own tree
	 * per segment (in vcn_live too) */
	uint32_t *vcn_suf;
};
#define VOL_OPEN_CHECKPOINTS 1024
int vol_count_durable(struct vol *v, uint64_t sr_blk, const struct vol_sroot *sr,
		      struct vol_count *cn);
/* usage.c: after vol_snap_create (or a re-root: @reroot) read the
 * durable super root under vu_lock, every segment holding a block of it
 * may hold one a snapshot names. Returns that super root's block and
 * delta. */
void vol_usage_snap_taken(struct vol *v, bool reroot, uint64_t *sr_blk, uint64_t *sr_delta);
/* usage.c: for a snapshot of recent checkpoint @delta, in a transaction
 * of @txn_delta: mark every segment in use, and recount at the settle of
 * @txn_delta; -ENOENT if the checkpoint is no longer readable. */
int vol_usage_snap_taken_at(struct vol *v, uint64_t delta, uint64_t txn_delta);
/* usage.c: snapshot @name of @delta was written: the cleaner moves its
 * blocks too from now on (vu_snap_deltas), unless an open reads it. */
void vol_usage_snap_listed(struct vol *v, uint64_t delta, const char *name);
/* usage.c: the open read the counts from the usage file, and the
 * snapshot table says which snapshots there are (@si, @n): listed, and
 * what they may keep known (vu_snap_newest). */
void vol_usage_snaps_read(struct vol *v, const struct vol_snap_info *si, size_t n);
/* usage.c: the snapshot vol_usage_snap_taken(_at) marked for is durable
 * now (its creation returned 0), or will never be (its record was not
 * written): a recount may drop marks again. */
void vol_usage_snap_done(struct vol *v);
/* usage.c: its record was written in transaction delta @delta, whose
 * commit failed: it is durable once a commit of @delta or later
 * succeeds (a failed commit's blocks go to the next), done then. */
void vol_usage_snap_done_at(struct vol *v, uint64_t delta);
/* usage.c: recount what snapshots keep at the settle of @delta or later
 * (a snapshot deleted in @delta). */
void vol_usage_recount_at(struct vol *v, uint64_t delta);
/* Segment @seg may hold a block a snapshot names (vu_snap; any thread). */
static inline bool vol_seg_snap(const uint64_t *bits, uint64_t seg)
{
	return __atomic_load_n(&bits[seg / 64], __ATOMIC_RELAXED) >> (seg % 64) & 1;
}

/* Sort @n snapshots' deltas, for vol_snaps_keep. */
void vol_snaps_sort(uint64_t *deltas, size_t n);
/*
 * Does one of the @n sorted snapshots' @deltas lie in [@birth, @death)?
 * The liveness rule of a dead translation entry (clean.c, check.c).
 */
static inline bool vol_snaps_keep(const uint64_t *deltas, size_t n, uint64_t birth, uint64_t death)
{
	size_t lo = 0, hi = n;

	while (lo < hi) { /* the oldest snapshot at or after the birth */
		size_t mid = lo + (hi - lo) / 2;

		if (deltas[mid] < birth)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < n && deltas[lo] < death;
}

/* ---- ckpt.c: the checkpoint file -------------------------------------------- */

/* What one commit wrote of the file. */
struct vol_ckpt_commit {
	uint64_t cc_res;    /* reserved for its blocks */
	size_t cc_written;  /* notes written */
	uint64_t cc_from;   /* the oldest of them, */
	uint64_t cc_next;   /* and the delta past the newest */
	bool cc_lost;	    /* notes were dropped before them */
	uint64_t cc_pruned; /* a block taken out: its index + 1 */
};

/* The most blocks the file may have. */
uint64_t vol_ckpt_blocks_max(const struct vol *v);
/* The most a commit's writing of the file may cost it. */
uint64_t vol_ckpt_worst(const struct vol *v);
/* Entry @delta of the file of super root @sr, read from the device
 * (vol_check); -EUCLEAN if its tree leaves the segments. */
int vol_ckpt_read(struct vol *v, const struct vol_sroot *sr, uint64_t delta,
		  struct vol_ckpt_entry *e);
/* Entry @delta of the file as a reader finds it now (zeroed: none). */
int vol_ckpt_lookup(struct vol *v, uint64_t delta, struct vol_ckpt_entry *e);
/* Note checkpoint @delta (its super root @sroot) for the file. Commit thread. */
void vol_ckpt_note(struct vol *v, uint64_t delta, uint64_t sroot, uint64_t time_ns);
/* Write the notes, once there are enough of them, and take out one block
 * wholly below @floor; @slack as for vol_suf_commit. */
int vol_ckpt_commit(struct vol *v, const struct bmap_change *ch, uint64_t slack, uint64_t floor,
		    struct vol_ckpt_commit *cc);
/* The commit ended (@durable: it succeeded): the notes written go. */
void vol_ckpt_commit_end(struct vol *v, const struct vol_ckpt_commit *cc, bool durable);
/* The blocks of the file whose tree is @root of @height, read from the
 * device (its map blocks only); 0 if one cannot be read. */
uint64_t vol_ckpt_nblocks(struct vol *v, uint64_t root, unsigned height);
/* vol_open: note the checkpoints the durable file does not hold yet. */
int vol_ckpt_open(struct vol *v);

/* ---- suf.c: the segment usage file ---------------------------------------- */

#define VOL_SUF_ENTRY_BYTES 16u
#define VOL_SUF_SNAP	    1u /* se_flags: a snapshot may name a block there */

/* One segment's entry (docs/FORMAT.md, "Segment usage block"). */
struct vol_suf_entry {
	uint32_t se_live;   /* vu_live, less the file's own blocks and the super root */
	uint32_t se_pinned; /* vu_pinned */
	uint32_t se_delta;  /* youngest block's delta; once empty, the delta that emptied it */
	uint32_t se_flags;  /* VOL_SUF_SNAP */
};

static inline uint32_t vol_suf_per_block(uint32_t bs)
{
	return bs / VOL_SUF_ENTRY_BYTES;
}

void vol_suf_decode(const void *block, uint32_t slot, struct vol_suf_entry *e);
/* Blocks of the file: an entry per segment. */
uint64_t vol_suf_blocks(const struct vol *v);
/* The most one commit's entries may cost it (the file, its map, logs). */
uint64_t vol_suf_worst(const struct vol *v);

/* What vol_suf_read tells of the file of a super root. */
struct vol_suf_ops {
	/* each entry of a block of the file (segments past the file's blocks
	 * read as zeros: no call); nonzero stops the read */
	int (*so_entry)(void *arg, uint64_t seg, const struct vol_suf_entry *e);
	void (*so_block)(void *arg, uint64_t pblk); /* each block of its tree */
};
/* Read the file whose tree is @root of @height from the device;
 * -EUCLEAN if its tree is not one (bmap_dev_walk). */
int vol_suf_read(struct vol *v, uint64_t root, unsigned height, const struct vol_suf_ops *ops,
		 void *arg);

/* One commit's entries (commit.c (4c)). */
struct vol_suf_commit {
	struct vol_u64vec sc_touched; /* segments whose entries it writes, sorted */
	uint64_t sc_res;	      /* reserved for their blocks */
	bool sc_skipped;	      /* no room: written no entry, the file not current */
	bool sc_partial;	      /* dirty entries left for the next commits */
};
/* Dirty the entries of the segments the commit changed (and the dirty
 * ones), as its settle will leave them; after the translation. @slack:
 * what the delta's operations reserved and the commit did not use yet. */
int vol_suf_commit(struct vol *v, const struct bmap_change *ch, uint64_t slack,
		   struct vol_suf_commit *sc);
/* The commit ended (@durable: it succeeded); sc_res is the commit's to
 * release (or carry, with its blocks, should it have failed). */
void vol_suf_commit_end(struct vol *v, struct vol_suf_commit *sc, bool durable);

/* ---- snap.c ------------------------------------------------------------------ */

#define VOL_SNAP_REC_SIZE 128u
#define VOL_SNAP_MAX	  1024u /* records in the table */

/* Records per block of @bs bytes, and blocks of the table. */
static inline uint32_t vol_snap_per_block(uint32_t bs)
{
	return bs / VOL_SNAP_REC_SIZE;
}
/*
 * Decode record @slot of table block @block: 1 if the slot is empty, 0
 * and @si if it holds a valid record, -EUCLEAN and *why if not.
 */
int vol_snap_decode(const struct vol *v, const void *block, uint32_t slot, uint64_t index,
		    struct vol_snap_info *si, const char **why);
/* Does @pblk lie inside a segment (where every block a map names lies)? */
static inline bool vol_pblk_valid(const struct vol *v, uint64_t pblk)
{
	const struct log_geometry *g = &v->v_geo;

	return pblk >= g->lg_seg_start &&
	       pblk - g->lg_seg_start < g->lg_nsegments * g->lg_seg_blocks;
}

/* Read the super root of a snapshot record (@sroot, @delta) into @sr:
 * -EUCLEAN if it is not a valid super root of @delta (not logged). */
int vol_snap_sroot(struct vol *v, uint64_t sroot, uint64_t delta, struct vol_sroot *sr);
/*
 * The super root to read snapshot @si by: its own (vol_snap_sroot), with
 * the translation of its translation super root if the record names one,
 * whose delta must be no earlier than the snapshot's. -EUCLEAN, and
 * *@why, if either is not what the record says.
 */
int vol_snap_state(struct vol *v, const struct vol_snap_info *si, struct vol_sroot *sr,
		   const char **why);
/* The key an open of snapshot @name holds shared while it reads it, and a
 * re-root exclusive (snap.c). */
uint64_t vol_snap_reroot_key(const char *name);
/* Point snapshot @name's translation at the newest durable state's (snap.c);
 * -EBUSY while an open holds it. */
int vol_snap_reroot(struct vol *v, const char *name);
/* snap.c, the re-rooter: started by the open (a thread if writable),
 * stopped by the close before its deltas (a round asked for meanwhile is
 * done first), destroyed after them. */
int vol_reroot_start(struct vol *v);
void vol_reroot_stop(struct vol *v);
void vol_reroot_destroy(struct vol *v);
/* The commit thread: a commit with raw moves is durable: re-root. */
void vol_reroot_ask(struct vol *v);
/* Is a re-root asked for and not done yet? (The cleaner: no raw moves.) */
bool vol_reroot_pending(struct vol *v);
/* Wait until no re-root is pending; the rounds done (tests). */
uint64_t vol_reroot_wait(struct vol *v);
/* vol_open: pin snapshot @name and put its state in place of the newest
 * (read only); its record is @find's answer if @find is not NULL
 * (vol_open_opts.voo_snapshot_find), else the table's. */
int vol_open_snapshot(struct vol *v, const char *name, vol_snap_find_fn *find, void *arg);
/*
 * snap.c: walk the checkpoint chain from super root @blk down to delta
 * @from, newest first, calling @fn on each (with its super root, read and
 * checked) until it returns non-zero; that value is returned (1 meaning
 * "stop, found"). A block that is not a valid super root older than the
 * one before it ends the chain, as does the empty volume mkfs wrote; only
 * the first block must be valid (else its error).
 */
typedef int vol_ckpt_fn(void *arg, const struct vol_checkpoint *cp, const struct vol_sroot *sr);
int vol_ckpt_walk(struct vol *v, uint64_t blk, uint64_t from, vol_ckpt_fn *fn, void *arg);
/* vol_open: put recent checkpoint @delta's state in place of the newest
 * (read only). -ENOENT if it is not readable (logged). */
int vol_open_checkpoint(struct vol *v, uint64_t delta);
/* vol.c: vol_write for the volume's own owners (the snapshot table). */
int vol_write_own(struct vol_txn *t, uint64_t owner, uint64_t index, const void *data);

/* Per thread: inside a transaction, a fill or the commit (no commit may
 * be waited for: see vol_reclaim). */
void vol_busy_enter(void);
/* The commit of @delta ended: drop its map-path bookings (to the next delta if @failed). */
void vol_paths_settle(struct vol *v, uint32_t delta, bool failed);
void vol_busy_leave(void);

/*
 * commit.c: room for @cost blocks a commit writes of its own accord (its
 * segment usage and checkpoint entries): out of what its delta reserved
 * and it did not use (@slack; the worst case of the super root and its
 * logs kept aside), else reserved now, from the kept reserve if need be.
 * *res: what was reserved (0 when the slack has it); -ENOSPC: neither.
 */
int vol_commit_room(struct vol *v, uint64_t slack, uint64_t cost, uint64_t *res);
/* commit.c: delta_ops.do_commit. */
int vol_commit(void *ctx, uint32_t delta, uint64_t *consumed);
/* commit.c: forget the moves a failed commit left (vol_close). */
void vol_commit_moves_clear(struct vol *v);

#endif /* CAIRN_VOL_INTERNAL_H */

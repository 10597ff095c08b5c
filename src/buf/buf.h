/*
 * buf.h - the buffer cache: a bounded pool of block buffers keyed by
 * (owner, index), with the explicit state machine of seed 003 and the
 * tracked reads of seed 004. See buf.c for the design and invariants.
 *
 * An owner is a 64-bit id: an inode number for file data, or a metadata
 * file's number. An index is a block offset within the owner. Physical
 * addresses are not the cache's business: the layer above resolves them
 * in its fill and write callbacks, and brackets each device read of a
 * physical block with buf_track_read_begin/end.
 *
 * All functions return 0 or a negative errno unless stated otherwise.
 */
#ifndef CAIRN_BUF_H
#define CAIRN_BUF_H

#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>

struct buf;
struct buf_cache;

#define BUF_NO_HINT UINT64_MAX
struct buf_track;

/* The seven states of a buffer (seed 003). */
enum buf_state {
	BUF_INVALID = 0, /* reserved for a block, no meaningful data yet */
	BUF_READING = 1, /* being filled; waiters sleep until it changes */
	BUF_CLEAN = 2,	 /* valid, unmodified; evictable when unused */
	BUF_DIRTY = 3,	 /* modified, must be written */
	BUF_WRITING = 4, /* being written; readable, not modifiable */
	BUF_WRITTEN = 5, /* write done, not yet committed */
	BUF_DROPPED = 6, /* reused for a different block or discarded */
};
#define BUF_NSTATES 7

const char *buf_state_name(enum buf_state s);
/* True if the state machine allows @from -> @to (the one table of it). */
bool buf_state_legal(enum buf_state from, enum buf_state to);

/*
 * Callbacks from the cache to the layer above. Called without any cache
 * lock held, with a reference on @b.
 *   bo_fill:    read block (owner, index) into @data (block_size bytes).
 *               For a block that was never written, fill with zeros.
 *               @hint is what the reader passed to buf_read_hint (its
 *               physical address, when the caller knows it), else
 *               BUF_NO_HINT.
 *   bo_write:   write @data as the content of (owner, index). Used by
 *               buf_flush_owner(); the delta back end has its own path.
 *   bo_commit:  make the writes done by bo_write durable (flush).
 *   bo_reclaim: the pool has no evictable buffer: make some clean (start
 *               a commit) or return -ENOSPC if nothing can be done. The
 *               cache then waits for a buffer to become evictable. May be
 *               NULL (the cache only waits).
 */
struct buf_ops {
	int (*bo_fill)(void *ctx, struct buf *b, void *data, uint64_t hint);
	int (*bo_write)(void *ctx, struct buf *b, const void *data);
	int (*bo_commit)(void *ctx);
	int (*bo_reclaim)(void *ctx);
};

struct buf_cache_config {
	uint32_t bcc_block_size; /* bytes per buffer, power of two */
	uint32_t bcc_nbuffers;	 /* pool size, >= 2 */
	const struct buf_ops *bcc_ops;
	void *bcc_ctx; /* passed to every callback */
};

int buf_cache_create(const struct buf_cache_config *cfg, struct buf_cache **out);
/* Every buffer must be unreferenced. Dirty content is discarded. */
void buf_cache_destroy(struct buf_cache *c);
uint32_t buf_cache_block_size(const struct buf_cache *c);

struct buf_cache_stats {
	uint64_t bs_hits;      /* lookups that found a valid buffer */
	uint64_t bs_misses;    /* lookups that created a buffer */
	uint64_t bs_fills;     /* bo_fill calls */
	uint64_t bs_evictions; /* clean buffers reused for another block */
	uint64_t bs_waits;     /* allocations that had to wait for a buffer */
	uint32_t bs_dirty;     /* buffers now Dirty, Writing or Written */
	uint32_t bs_in_use;    /* buffers now referenced */
};
void buf_cache_stats(struct buf_cache *c, struct buf_cache_stats *st);

/* ---- getting and putting buffers ----------------------------------- */

/*
 * Get block (owner, index) with valid data, reading it through bo_fill
 * on a miss. Of several concurrent callers for one uncached block exactly
 * one fills it; the others sleep until it leaves Reading. On success
 * *out holds a reference the caller must buf_put().
 * Errors: whatever bo_fill returned (the buffer is then dropped and a
 * later call retries), -ENOMEM if the pool is full of unevictable
 * buffers that nobody holds and bo_reclaim cannot clean any.
 */
int buf_read(struct buf_cache *c, uint64_t owner, uint64_t index, struct buf **out);
/* buf_read, passing @hint to bo_fill if this call fills the buffer. */
int buf_read_hint(struct buf_cache *c, uint64_t owner, uint64_t index, uint64_t hint,
		  struct buf **out);
/*
 * Get a buffer for a block the caller will overwrite entirely (a new
 * block): no read. A buffer created here is Invalid and zero-filled; the
 * caller makes it Dirty (buf_modify_begin) before putting it, or the put
 * drops it (and others asking for the block meanwhile look it up again).
 * An existing buffer is returned as buf_read would.
 */
int buf_get_new(struct buf_cache *c, uint64_t owner, uint64_t index, struct buf **out);
/*
 * buf_get_new, but a buffer created here holds undefined bytes (no
 * memset): for a caller that overwrites the whole block inside its
 * modification, before anyone else can see the data.
 */
int buf_get_overwrite(struct buf_cache *c, uint64_t owner, uint64_t index, struct buf **out);
/* The cached, valid buffer for (owner, index), referenced, or NULL. */
struct buf *buf_lookup(struct buf_cache *c, uint64_t owner, uint64_t index);
/*
 * The hashed buffer for (owner, index) in whatever state it is, even
 * Reading or Invalid, referenced; NULL if none. For inspection and for
 * dropping; its data is valid only in Clean, Dirty, Writing, Written.
 */
struct buf *buf_find_hold(struct buf_cache *c, uint64_t owner, uint64_t index);
/* Take another reference on a buffer the caller holds. */
void buf_hold(struct buf *b);
/* Drop a reference. NULL is accepted. */
void buf_put(struct buf *b);

void *buf_data(struct buf *b);
uint64_t buf_owner(const struct buf *b);
uint64_t buf_index(const struct buf *b);
enum buf_state buf_state(const struct buf *b);
/* The delta a dirty buffer belongs to (meaningful in Dirty..Written). */
uint32_t buf_delta(const struct buf *b);
/* True if the buffer was modified while Written (it goes Dirty on commit). */
bool buf_redirtied(const struct buf *b);

/* ---- transitions (one function each; illegal ones assert) ----------- */

/*
 * Mark @b modified in @delta before changing its data. Clean and Invalid
 * become Dirty; Dirty stays Dirty; Written stays Written and is flagged
 * to go Dirty at commit. A Writing buffer cannot be modified: the caller
 * sleeps until its write ends. (Seed 001's fork will replace that wait.)
 * -EINVAL from Reading or Dropped.
 */
int buf_dirty(struct buf *b, uint32_t delta);
/*
 * Clean -> Dirty in @delta, unchanged, in one step; -EBUSY (nothing
 * done) in any other state. The segment cleaner's way to have a block
 * written again by the committing delta: a buffer a modifier has
 * dirtied meanwhile is written by its own delta anyway, and one it
 * dirties afterwards forks as any buffer of a committing delta.
 */
int buf_dirty_clean(struct buf *b, uint32_t delta);
/*
 * Change a buffer's data: buf_modify_begin() waits until no other thread
 * is modifying it and it is not being written, then marks it dirty in
 * @delta (as buf_dirty) and gives the caller the sole right to change its
 * data until buf_modify_end(). A write (buf_write_begin) is refused while
 * the modification lasts, so no write ever sees half-changed data.
 * (Seed 001's fork will let a modification proceed on a copy instead of
 * waiting for a write.) Errors as buf_dirty.
 */
int buf_modify_begin(struct buf *b, uint32_t delta);
void buf_modify_end(struct buf *b);
/*
 * Dirty -> Writing: the caller is about to write the buffer's data.
 * -EBUSY, changing nothing, while a modification is in progress: the
 * buffer stays Dirty and is written by a later flush. (Waiting here could
 * deadlock against a modifier that is itself waiting for a buffer.)
 */
int buf_write_begin(struct buf *b);
/*
 * Writing -> Written on success. On error: -> Dirty, @err is recorded on
 * the owner (returned once by buf_owner_error), nothing is lost. A buffer
 * dropped while it was written (truncate) is dropped now, and its error,
 * about data nobody wants any more, is not recorded.
 */
int buf_write_end(struct buf *b, int err);
/*
 * Written -> Clean, or Dirty if it was modified meanwhile, when @err is
 * 0. On error -> Dirty and @err is recorded on the owner.
 */
int buf_commit_end(struct buf *b, int err);
/* Writing or Written -> Dirty: the write was abandoned, no error of its own. */
int buf_write_cancel(struct buf *b);
/*
 * Discard @b (truncate, unlink). Clean, Dirty and Invalid buffers are
 * Dropped now; a buffer in Reading, Writing or Written is dropped when
 * its I/O or commit ends (delayed drop). Its memory is reused only after
 * the last reference is put.
 */
int buf_drop(struct buf *b);
/*
 * The indexes of @owner's hashed buffers (any state) at or past @from, in
 * a malloc'ed array (*idx, NULL if none): a snapshot, for a caller that
 * then looks each one up. -ENOMEM.
 */
int buf_owner_cached(struct buf_cache *c, uint64_t owner, uint64_t from, uint64_t **idx,
		     size_t *count);
/* Drop every buffer of @owner with index >= @from (truncate/unlink). */
void buf_drop_owner(struct buf_cache *c, uint64_t owner, uint64_t from);

/* ---- deltas (seed 001) ---------------------------------------------- */

/*
 * A buffer dirty in a delta is on that delta's dirty list (the delta is
 * in its state word). buf_modify_begin(b, d) on a buffer still Dirty in
 * an older delta forks it: a shadow buffer (not in the hash) takes a copy
 * of the old data and the old delta's place, so the back end writes the
 * old content unchanged, while @b moves to delta @d and is modified. A
 * buffer Written in the older delta needs no copy (its data is already in
 * the log): it moves to @d and goes Dirty when the old delta commits. A
 * Writing buffer (its data being copied into the log) is waited for: a
 * memory copy, never a disk write.
 *
 * Take up to @max buffers dirty in @delta (shadows included), oldest
 * first, referenced, for the back end to write. Returns how many.
 */
unsigned buf_delta_take(struct buf_cache *c, uint32_t delta, struct buf **out, unsigned max);
/* Buffers dirty in @delta and not yet taken. */
uint64_t buf_delta_ndirty(struct buf_cache *c, uint32_t delta);
/*
 * After a failed commit of @from: every buffer still dirty in @from moves
 * to delta @to (so a later commit carries it), and shadows of @from are
 * dropped (their buffers, dirty in a newer delta, hold newer data).
 */
void buf_delta_requeue(struct buf_cache *c, uint32_t from, uint32_t to);
/* True for a fork's shadow: a copy the back end writes, not in the cache. */
bool buf_is_shadow(const struct buf *b);
/* Forks done since the cache was created. */
uint64_t buf_forks(struct buf_cache *c);

/* ---- owners: dirty lists, flush and write errors ---------------------- */

/*
 * Take references on up to @max Dirty buffers of @owner not yet taken
 * for writing, oldest first, into @out. Returns how many.
 */
unsigned buf_owner_dirty(struct buf_cache *c, uint64_t owner, struct buf **out, unsigned max);
/* Number of buffers of @owner in Dirty, Writing or Written. */
uint64_t buf_owner_ndirty(struct buf_cache *c, uint64_t owner);
/*
 * The write error recorded on @owner since the last call, or 0; the
 * error is returned once and cleared.
 */
int buf_owner_error(struct buf_cache *c, uint64_t owner);
/*
 * Write every dirty buffer of @owner with bo_write, then bo_commit, then
 * settle each buffer (Clean, or Dirty on failure). Returns the first
 * error of this flush or one recorded earlier on the owner (once).
 */
int buf_flush_owner(struct buf_cache *c, uint64_t owner);

/* ---- tracked reads (seed 004) --------------------------------------- */

/*
 * Tracked reads count in-flight reads per zone of physical blocks (a
 * zone is 2^zone_shift blocks; the log uses one zone per segment).
 * Whoever reuses a zone's space (cleaner, snapshot delete) waits for its
 * count to drain; once it waits, new readers of that zone wait behind it,
 * so the reuser is not starved, and are then told to re-resolve.
 */
int buf_track_create(uint64_t nblocks, unsigned zone_shift, struct buf_track **out);
void buf_track_destroy(struct buf_track *t);
/*
 * Count a read of physical block @pblk as in flight. Returns 0, or
 * -EAGAIN if the zone was being reused: the caller waited until the
 * reuse ended, holds no count, and must resolve its address again.
 * -EINVAL past the end.
 */
int buf_track_read_begin(struct buf_track *t, uint64_t pblk);
void buf_track_read_end(struct buf_track *t, uint64_t pblk);
/* Start reusing zone @zone: stop new readers, wait for readers to drain. */
void buf_track_reuse_begin(struct buf_track *t, uint64_t zone);
void buf_track_reuse_end(struct buf_track *t, uint64_t zone);
/* In-flight reads in @zone (for tests and fsck of live state). */
uint32_t buf_track_readers(struct buf_track *t, uint64_t zone);

#endif /* CAIRN_BUF_H */

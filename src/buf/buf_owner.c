/*
 * buf_owner.c - per-owner bookkeeping of the buffer cache: which buffers
 * an owner (an inode, a metadata file) has cached, which of them are
 * dirty (oldest first), and the write error to report on its next flush
 * (seed 003's per-inode flush requests and write errors).
 *
 * Invariants
 *   (1) A hashed buffer is on exactly one owner record's or_bufs; a
 *       buffer in Dirty, Writing or Written is also on its or_dirty.
 *   (2) A record lives while it has buffers or an unreported error.
 *   (3) An error recorded on an owner is returned by exactly one call of
 *       buf_owner_error() (and so of buf_flush_owner()), then cleared.
 *   (4) A buffer taken by buf_owner_dirty() (b_flushing) is not taken
 *       again until it has been written (write_begin clears the mark).
 *
 * Lock order: a buffer shard lock, then one owner shard lock (bos_lock).
 * The *_locked functions here are called with the buffer's shard lock
 * held and take the owner shard lock themselves.
 */
#include "buf/buf_internal.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

static struct buf_owner_shard *buf_owner_shard(struct buf_cache *c, uint64_t owner)
{
	return &c->bc_owners[XXH3_64bits(&owner, sizeof(owner)) & (BUF_NOWNER_SHARDS - 1)];
}

static struct buf_owner_rec **buf_owner_bucket(struct buf_owner_shard *os, uint64_t owner)
{
	return &os->bos_buckets[(XXH3_64bits(&owner, sizeof(owner)) >> 6) & os->bos_mask];
}

int buf_owners_init(struct buf_cache *c)
{
	uint32_t nb = 16;

	while (nb < c->bc_nbuffers / BUF_NOWNER_SHARDS)
		nb <<= 1;
	for (unsigned i = 0; i < BUF_NOWNER_SHARDS; i++) {
		struct buf_owner_shard *os = &c->bc_owners[i];
		os->bos_buckets = calloc(nb, sizeof(*os->bos_buckets));
		if (!os->bos_buckets)
			return -ENOMEM;
		os->bos_mask = nb - 1;
		cmutex_init(&os->bos_lock);
	}
	return 0;
}

void buf_owners_destroy(struct buf_cache *c)
{
	for (unsigned i = 0; i < BUF_NOWNER_SHARDS; i++) {
		struct buf_owner_shard *os = &c->bc_owners[i];
		if (!os->bos_buckets)
			continue;
		for (uint32_t j = 0; j <= os->bos_mask; j++) {
			struct buf_owner_rec *r = os->bos_buckets[j], *next;
			for (; r; r = next) {
				next = r->or_next;
				free(r);
			}
		}
		free(os->bos_buckets);
		cmutex_destroy(&os->bos_lock);
	}
}

static struct buf_owner_rec *buf_owner_find_locked(struct buf_owner_shard *os, uint64_t owner)
{
	for (struct buf_owner_rec *r = *buf_owner_bucket(os, owner); r; r = r->or_next)
		if (r->or_owner == owner)
			return r;
	return NULL;
}

/* Free @r if nothing keeps it (invariant 2). */
static void buf_owner_release_locked(struct buf_owner_shard *os, struct buf_owner_rec *r)
{
	struct buf_owner_rec **pp;

	assert(cmutex_held(&os->bos_lock));
	if (r->or_nbufs || r->or_err)
		return;
	assert(!r->or_ndirty);
	for (pp = buf_owner_bucket(os, r->or_owner); *pp != r; pp = &(*pp)->or_next)
		;
	*pp = r->or_next;
	free(r);
}

int buf_owner_attach_locked(struct buf *b)
{
	struct buf_owner_shard *os = buf_owner_shard(b->b_cache, b->b_owner);
	struct buf_owner_rec *r;
	int err = 0;

	cmutex_lock(&os->bos_lock);
	r = buf_owner_find_locked(os, b->b_owner);
	if (!r && (r = calloc(1, sizeof(*r)))) {
		r->or_owner = b->b_owner;
		list_init(&r->or_bufs);
		list_init(&r->or_dirty);
		r->or_next = *buf_owner_bucket(os, b->b_owner);
		*buf_owner_bucket(os, b->b_owner) = r;
	}
	if (r) {
		list_add_tail(&r->or_bufs, &b->b_owner_node);
		r->or_nbufs++;
		b->b_orec = r;
	} else {
		err = -ENOMEM;
	}
	cmutex_unlock(&os->bos_lock);
	return err;
}

void buf_owner_detach_locked(struct buf *b)
{
	struct buf_owner_shard *os = buf_owner_shard(b->b_cache, b->b_owner);
	struct buf_owner_rec *r = b->b_orec;

	cmutex_lock(&os->bos_lock);
	assert(!list_linked(&b->b_dirty_node)); /* unhash went through Dropped */
	list_del(&b->b_owner_node);
	r->or_nbufs--;
	b->b_orec = NULL;
	b->b_flushing = false;
	buf_owner_release_locked(os, r);
	cmutex_unlock(&os->bos_lock);
}

void buf_owner_mark_dirty_locked(struct buf *b)
{
	struct buf_owner_shard *os = buf_owner_shard(b->b_cache, b->b_owner);

	cmutex_lock(&os->bos_lock);
	list_add_tail(&b->b_orec->or_dirty, &b->b_dirty_node);
	b->b_orec->or_ndirty++;
	cmutex_unlock(&os->bos_lock);
}

void buf_owner_mark_clean_locked(struct buf *b)
{
	struct buf_owner_shard *os = buf_owner_shard(b->b_cache, b->b_owner);

	cmutex_lock(&os->bos_lock);
	list_del(&b->b_dirty_node);
	b->b_orec->or_ndirty--;
	b->b_flushing = false;
	cmutex_unlock(&os->bos_lock);
}

/* Called on Dirty -> Writing: the buffer may be taken for a later flush again. */
void buf_owner_write_started_locked(struct buf *b)
{
	struct buf_owner_shard *os = buf_owner_shard(b->b_cache, b->b_owner);

	cmutex_lock(&os->bos_lock);
	b->b_flushing = false;
	cmutex_unlock(&os->bos_lock);
}

void buf_owner_record_error_locked(struct buf *b, int err)
{
	struct buf_owner_shard *os = buf_owner_shard(b->b_cache, b->b_owner);

	log_err("buf: write of block (%" PRIu64 ", %" PRIu64 ") failed: %s", b->b_owner, b->b_index,
		strerror(-err));
	cmutex_lock(&os->bos_lock);
	if (!b->b_orec->or_err)
		b->b_orec->or_err = err;
	cmutex_unlock(&os->bos_lock);
}

int buf_owner_error(struct buf_cache *c, uint64_t owner)
{
	struct buf_owner_shard *os = buf_owner_shard(c, owner);
	struct buf_owner_rec *r;
	int err = 0;

	cmutex_lock(&os->bos_lock);
	r = buf_owner_find_locked(os, owner);
	if (r) {
		err = r->or_err;
		r->or_err = 0;
		buf_owner_release_locked(os, r);
	}
	cmutex_unlock(&os->bos_lock);
	return err;
}

uint64_t buf_owner_ndirty(struct buf_cache *c, uint64_t owner)
{
	struct buf_owner_shard *os = buf_owner_shard(c, owner);
	struct buf_owner_rec *r;
	uint64_t n = 0;

	cmutex_lock(&os->bos_lock);
	r = buf_owner_find_locked(os, owner);
	if (r)
		n = r->or_ndirty;
	cmutex_unlock(&os->bos_lock);
	return n;
}

unsigned buf_owner_dirty(struct buf_cache *c, uint64_t owner, struct buf **out, unsigned max)
{
	struct buf_owner_shard *os = buf_owner_shard(c, owner);
	struct buf_owner_rec *r;
	struct list_node *n;
	unsigned got = 0;

	cmutex_lock(&os->bos_lock);
	r = buf_owner_find_locked(os, owner);
	if (r) {
		list_for_each(n, &r->or_dirty)
		{
			struct buf *b = container_of(n, struct buf, b_dirty_node);
			if (got == max)
				break;
			uint64_t w = buf_word(b);
			if (b->b_flushing || bw_state(w) != BUF_DIRTY || (w & BW_MODIFYING))
				continue;
			b->b_flushing = true;
			atomic_fetch_add(&b->b_refs, 1); /* safe: invariant (3) of buf.c */
			out[got++] = b;
		}
	}
	cmutex_unlock(&os->bos_lock);
	return got;
}

/* @b was taken for a flush that skips it: let a later flush take it. */
static void buf_owner_unflush(struct buf *b)
{
	struct buf_owner_shard *os = buf_owner_shard(b->b_cache, b->b_owner);

	cmutex_lock(&os->bos_lock);
	b->b_flushing = false;
	cmutex_unlock(&os->bos_lock);
}

/* Write, commit and settle one batch of dirty buffers; first error or 0. */
static int buf_flush_batch(struct buf_cache *c, struct buf **batch, unsigned n)
{
	const struct buf_ops *ops = c->bc_ops;
	int err = 0, werr;

	for (unsigned i = 0; i < n; i++) {
		struct buf *b = batch[i];
		if (buf_write_begin(b)) { /* -EBUSY: being modified, stays Dirty */
			buf_owner_unflush(b);
			batch[i] = NULL, buf_put(b);
			continue;
		}
		SYNC_POINT("buf.flush.write");
		werr = ops->bo_write(c->bc_ctx, b, b->b_data);
		buf_write_end(b, werr);
		if (werr) {
			err = err ? err : werr;
			batch[i] = NULL, buf_put(b);
		}
	}
	werr = ops->bo_commit ? ops->bo_commit(c->bc_ctx) : 0;
	err = err ? err : werr;
	for (unsigned i = 0; i < n; i++) {
		if (!batch[i])
			continue;
		buf_commit_end(batch[i], werr);
		buf_put(batch[i]);
	}
	return err;
}

int buf_flush_owner(struct buf_cache *c, uint64_t owner)
{
	struct buf *batch[64];
	/* what was dirty when we started, so that a writer that keeps
	 * dirtying the owner cannot keep the flush going forever */
	uint64_t budget = buf_owner_ndirty(c, owner);
	unsigned n;
	int err = 0, recorded;

	if (!c->bc_ops->bo_write)
		return -EOPNOTSUPP;
	while (!err && budget &&
	       (n = buf_owner_dirty(c, owner, batch, (unsigned)MIN(budget, ARRAY_SIZE(batch))))) {
		budget -= n;
		err = buf_flush_batch(c, batch, n);
	}
	recorded = buf_owner_error(c, owner);
	return recorded ? recorded : err;
}

/* Collect the indexes of @owner's cached buffers at or past @from. */
static uint64_t *buf_owner_indexes(struct buf_cache *c, uint64_t owner, uint64_t from,
				   size_t *count)
{
	struct buf_owner_shard *os = buf_owner_shard(c, owner);
	struct buf_owner_rec *r;
	struct list_node *n;
	uint64_t *idx = NULL;
	size_t got = 0;

	cmutex_lock(&os->bos_lock);
	r = buf_owner_find_locked(os, owner);
	if (r && r->or_nbufs && (idx = malloc(r->or_nbufs * sizeof(*idx)))) {
		list_for_each(n, &r->or_bufs)
		{
			struct buf *b = container_of(n, struct buf, b_owner_node);
			if (b->b_index >= from)
				idx[got++] = b->b_index;
		}
	}
	cmutex_unlock(&os->bos_lock);
	*count = got;
	return idx;
}

int buf_owner_cached(struct buf_cache *c, uint64_t owner, uint64_t from, uint64_t **idx,
		     size_t *count)
{
	struct buf_owner_shard *os = buf_owner_shard(c, owner);
	struct buf_owner_rec *r;
	struct list_node *n;
	uint64_t *out = NULL;
	size_t got = 0;
	int err = 0;

	cmutex_lock(&os->bos_lock);
	r = buf_owner_find_locked(os, owner);
	if (r && r->or_nbufs) {
		out = malloc(r->or_nbufs * sizeof(*out));
		if (!out)
			err = -ENOMEM;
		else
			list_for_each(n, &r->or_bufs)
			{
				struct buf *b = container_of(n, struct buf, b_owner_node);
				if (b->b_index >= from)
					out[got++] = b->b_index;
			}
	}
	cmutex_unlock(&os->bos_lock);
	*idx = out;
	*count = got;
	return err;
}

void buf_drop_owner(struct buf_cache *c, uint64_t owner, uint64_t from)
{
	size_t n;
	uint64_t *idx = buf_owner_indexes(c, owner, from, &n);

	for (size_t i = 0; i < n; i++) {
		struct buf *b = buf_find_hold(c, owner, idx[i]);
		if (!b)
			continue;
		if (bw_state(buf_word(b)) != BUF_DROPPED)
			buf_drop(b);
		buf_put(b);
	}
	free(idx);
}

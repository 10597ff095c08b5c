/*
 * buf.c - the buffer cache (seeds 003 and 004).
 *
 * A fixed pool of bc_nbuffers block buffers, found by (owner, index)
 * through a hash table split into BUF_NSHARDS shards. Each shard has its
 * own lock and condition variable, so lookups of different blocks do not
 * serialize on one lock, and a hit costs one hash, one uncontended lock
 * and two atomic operations.
 *
 * States and transitions (one function each, in buf_state.c):
 *
 *             alloc          read_begin            read_end(0)
 *   Dropped ---------> Invalid ---------> Reading -------------> Clean
 *      ^                  |                  | read_end(err):        |
 *      |                  | buf_dirty        v Invalid, unhashed      | buf_dirty
 *      |                  +-------------> Dirty <---------------------+
 *      |                                  |   ^  ^
 *      |                      write_begin v   |  | write_end(err), write_cancel
 *      |                               Writing --+
 *      |                                  | write_end(0)
 *      |                                  v
 *      |                               Written --> Clean (commit_end(0)) or
 *      |                                           Dirty (commit_end(err),
 *      |                                           redirtied, write_cancel)
 *      +--- buf_drop, eviction (Clean only), read failure; delayed drop of
 *           Reading, Writing and Written buffers when their I/O ends.
 *
 * Invariants
 *   (1) Every buffer is in exactly one state, kept with its flags and its
 *       delta in one word (b_word) that is written only under the
 *       buffer's shard lock, after buf_state_legal() allowed it, and is
 *       read anywhere with one atomic load.
 *   (2) At most one hashed buffer exists per (owner, index); a buffer is
 *       hashed iff BW_HASHED, and the hash holds one reference on it.
 *   (3) A reference is raised from the hash only under the shard lock, or
 *       under the owner shard lock for a buffer on its owner's dirty list
 *       (it cannot be unhashed without that lock). So a hashed buffer seen
 *       with b_refs == 1 under its shard lock has no user, and gains none
 *       while the lock is held.
 *   (4) Whoever drops b_refs to 0 owns the buffer: it is unhashed, and
 *       goes to the free list or is reused at once.
 *   (5) Only Clean buffers without users are evicted; Invalid, Reading,
 *       Dirty, Writing, Written and referenced buffers never are.
 *   (6) Of concurrent requests for one block, the one that inserts the
 *       buffer fills it: it moves Invalid -> Reading before the shard lock
 *       is dropped, so no reader ever sees a half-filled buffer; the
 *       others sleep on the shard's condition variable until it leaves
 *       Reading. Nobody busy-waits.
 *   (7) A thread waiting for a free buffer holds no cache lock but the
 *       pool lock it sleeps on. If no buffer is evictable, bo_reclaim
 *       runs (without locks) to clean some; if nothing is in use and
 *       nothing can be reclaimed, the allocation fails with -ENOMEM
 *       instead of waiting forever.
 *   (8) The cache never reads or writes a buffer's data, except to zero a
 *       new buffer before anyone else can see it.
 *   (9) A buffer's data changes only between buf_modify_begin and
 *       buf_modify_end (BW_MODIFYING), by one thread at a time, and never
 *       while it is Writing: buf_write_begin refuses a buffer under
 *       modification (-EBUSY) and buf_modify_begin waits for a write to
 *       end. Writes never wait for modifiers, so a modifier may itself
 *       wait for a free buffer (and the reclaim that flushes) safely.
 *
 * Lock order: bc_pool_lock -> one bsh_lock -> one bos_lock (buf_owner.c).
 * The syncpoint lock is a leaf. Callbacks (bo_*) run with no cache lock.
 * A caller holds only a few buffers at once, fewer than the pool size
 * divided by the number of threads; a thread that holds the whole pool
 * and asks for more waits for itself.
 */
#include "buf/buf_internal.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

static uint64_t buf_hash(uint64_t owner, uint64_t index)
{
	uint64_t key[2] = {owner, index};

	return XXH3_64bits(key, sizeof(key));
}

static struct buf_shard *buf_shard_for(struct buf_cache *c, uint64_t h)
{
	return &c->bc_shards[h & (BUF_NSHARDS - 1)];
}

static struct buf **buf_bucket(struct buf_shard *sh, uint64_t h)
{
	return &sh->bsh_buckets[(h >> 6) & sh->bsh_mask];
}

static struct buf *buf_find_locked(struct buf_shard *sh, uint64_t h, uint64_t owner, uint64_t index)
{
	for (struct buf *b = *buf_bucket(sh, h); b; b = b->b_hnext)
		if (b->b_owner == owner && b->b_index == index)
			return b;
	return NULL;
}

/* Mark @b recently used for CLOCK, writing its line only if needed. */
static void buf_touch(struct buf *b)
{
	if (!atomic_load_explicit(&b->b_clock, memory_order_relaxed))
		atomic_store_explicit(&b->b_clock, 1, memory_order_relaxed);
}

static uint32_t buf_pow2_at_least(uint32_t n)
{
	uint32_t p = 1;

	while (p < n)
		p <<= 1;
	return p;
}

/* ---- creation -------------------------------------------------------- */

static int buf_shards_init(struct buf_cache *c)
{
	uint32_t nb = buf_pow2_at_least(MAX(c->bc_nbuffers * 2 / BUF_NSHARDS, 4));

	for (unsigned i = 0; i < BUF_NSHARDS; i++) {
		struct buf_shard *sh = &c->bc_shards[i];
		sh->bsh_buckets = calloc(nb, sizeof(*sh->bsh_buckets));
		if (!sh->bsh_buckets)
			return -ENOMEM;
		sh->bsh_mask = nb - 1;
		cmutex_init(&sh->bsh_lock);
		pthread_cond_init(&sh->bsh_cond, NULL);
	}
	return 0;
}

static void buf_pool_init(struct buf_cache *c)
{
	list_init(&c->bc_free);
	for (uint32_t i = 0; i < c->bc_nbuffers; i++) {
		struct buf *b = &c->bc_bufs[i];
		b->b_cache = c;
		b->b_slot = i;
		b->b_data = c->bc_memory + (size_t)i * c->bc_block_size;
		atomic_init(&b->b_word, (uint64_t)BUF_DROPPED);
		list_init(&b->b_owner_node);
		list_init(&b->b_dirty_node);
		list_init(&b->b_delta_node);
		list_add_tail(&c->bc_free, &b->b_free_node);
	}
	cmutex_init(&c->bc_pool_lock);
	pthread_cond_init(&c->bc_pool_cond, NULL);
}

int buf_cache_create(const struct buf_cache_config *cfg, struct buf_cache **out)
{
	uint32_t bs = cfg->bcc_block_size;
	struct buf_cache *c;
	int err = -ENOMEM;

	if (bs < 512 || (bs & (bs - 1)) || cfg->bcc_nbuffers < 2 || !cfg->bcc_ops ||
	    !cfg->bcc_ops->bo_fill)
		return -EINVAL;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->bc_block_size = bs;
	c->bc_nbuffers = cfg->bcc_nbuffers;
	c->bc_ops = cfg->bcc_ops;
	c->bc_ctx = cfg->bcc_ctx;
	c->bc_bufs = calloc(c->bc_nbuffers, sizeof(*c->bc_bufs));
	c->bc_memory = aligned_alloc(4096, (size_t)c->bc_nbuffers * bs);
	if (!c->bc_bufs || !c->bc_memory)
		goto out_free;
	if ((err = buf_shards_init(c)) || (err = buf_owners_init(c)))
		goto out_free;
	buf_pool_init(c);
	buf_delta_init(c);
	*out = c;
	return 0;
out_free:
	buf_cache_destroy(c);
	return err;
}

void buf_cache_destroy(struct buf_cache *c)
{
	if (!c)
		return;
	for (unsigned i = 0; i < BUF_NSHARDS; i++) {
		struct buf_shard *sh = &c->bc_shards[i];
		if (!sh->bsh_buckets)
			continue;
		free(sh->bsh_buckets);
		cmutex_destroy(&sh->bsh_lock);
		pthread_cond_destroy(&sh->bsh_cond);
	}
	buf_owners_destroy(c);
	if (c->bc_bufs && c->bc_memory) {
		buf_delta_destroy(c);
		cmutex_destroy(&c->bc_pool_lock);
		pthread_cond_destroy(&c->bc_pool_cond);
	}
	free(c->bc_memory);
	free(c->bc_bufs);
	free(c);
}

uint32_t buf_cache_block_size(const struct buf_cache *c)
{
	return c->bc_block_size;
}

/* ---- hashing in and out --------------------------------------------- */

bool buf_unhash_locked(struct buf *b)
{
	struct buf_shard *sh = buf_shard_of(b);
	uint64_t w = buf_word(b);
	struct buf **pp = buf_bucket(sh, buf_hash(b->b_owner, b->b_index));

	assert(w & BW_HASHED);
	while (*pp != b)
		pp = &(*pp)->b_hnext;
	*pp = b->b_hnext;
	b->b_hnext = NULL;
	if (bw_state(w) != BUF_DROPPED)
		buf_state_set_locked(b, BUF_DROPPED);
	buf_owner_detach_locked(b);
	buf_word_set_locked(b, buf_word(b) & ~(BW_HASHED | BW_DROP | BW_REDIRTY | BW_MODIFYING));
	pthread_cond_broadcast(&sh->bsh_cond);
	return atomic_fetch_sub(&b->b_refs, 1) == 1;
}

/* Publish a fresh buffer for (owner, index); the caller holds one reference. */
static int buf_insert_locked(struct buf_shard *sh, uint64_t h, struct buf *b, uint64_t owner,
			     uint64_t index)
{
	b->b_owner = owner;
	b->b_index = index;
	b->b_shard = (uint32_t)(sh - b->b_cache->bc_shards);
	b->b_err = 0;
	atomic_store(&b->b_refs, 2);
	atomic_store(&b->b_clock, 1);
	buf_word_set_locked(b, BUF_INVALID | BW_HASHED);
	if (buf_owner_attach_locked(b)) {
		buf_word_set_locked(b, BUF_DROPPED);
		return -ENOMEM;
	}
	b->b_hnext = *buf_bucket(sh, h);
	*buf_bucket(sh, h) = b;
	return 0;
}

/* ---- the pool: free list, CLOCK eviction, waiting --------------------- */

static void buf_free(struct buf_cache *c, struct buf *b)
{
	cmutex_lock(&c->bc_pool_lock);
	list_add_tail(&c->bc_free, &b->b_free_node);
	pthread_cond_broadcast(&c->bc_pool_cond);
	cmutex_unlock(&c->bc_pool_lock);
}

void buf_pool_kick(struct buf_cache *c)
{
	cmutex_lock(&c->bc_pool_lock);
	pthread_cond_broadcast(&c->bc_pool_cond);
	cmutex_unlock(&c->bc_pool_lock);
}

static bool buf_evictable(uint64_t w, struct buf *b)
{
	return (w & BW_HASHED) && bw_state(w) == BUF_CLEAN && !(w & BW_DROP) &&
	       atomic_load(&b->b_refs) == 1;
}

/* Try to take @b from the hash for reuse; true if it is now ours. */
static bool buf_evict_one_locked(struct buf *b)
{
	struct buf_shard *sh = buf_shard_of(b);
	bool ours = false;

	assert(cmutex_held(&b->b_cache->bc_pool_lock));
	cmutex_lock(&sh->bsh_lock);
	if (buf_evictable(buf_word(b), b))
		ours = buf_unhash_locked(b);
	cmutex_unlock(&sh->bsh_lock);
	return ours;
}

/* One CLOCK sweep: the first unused Clean buffer not recently used. */
static struct buf *buf_evict_locked(struct buf_cache *c)
{
	for (uint32_t i = 0; i < 2 * c->bc_nbuffers; i++) {
		struct buf *b = &c->bc_bufs[c->bc_clock_hand];
		c->bc_clock_hand = (c->bc_clock_hand + 1) % c->bc_nbuffers;
		if (!buf_evictable(buf_word(b), b) || atomic_exchange(&b->b_clock, 0))
			continue;
		if (buf_evict_one_locked(b)) {
			atomic_fetch_add(&c->bc_evictions, 1);
			return b;
		}
	}
	return NULL;
}

static struct buf *buf_take_free_locked(struct buf_cache *c)
{
	struct list_node *n;

	if (list_empty(&c->bc_free))
		return NULL;
	n = c->bc_free.next;
	list_del(n);
	return container_of(n, struct buf, b_free_node);
}

/*
 * True if some thread holds @b: a reference beyond the hash's, or, for a
 * buffer neither hashed nor on the free list, an allocation in flight
 * (taken by buf_alloc, not yet inserted or freed). Pool lock held.
 */
static bool buf_has_users(struct buf *b)
{
	uint64_t w = buf_word(b);

	if (!(w & BW_HASHED) && !list_linked(&b->b_free_node))
		return true;
	return atomic_load(&b->b_refs) > ((w & BW_HASHED) ? 1u : 0u);
}

/* True if some thread holds a buffer (and so will put it later). */
static bool buf_pool_has_users(struct buf_cache *c)
{
	for (uint32_t i = 0; i < c->bc_nbuffers; i++)
		if (buf_has_users(&c->bc_bufs[i]))
			return true;
	return false;
}

/*
 * Nothing is evictable: let the layer above clean buffers, or sleep until
 * a buffer is put or becomes Clean. -ENOMEM if nothing ever could.
 */
static int buf_pool_stall_locked(struct buf_cache *c, bool *reclaimed, bool *swept_idle)
{
	const struct buf_ops *ops = c->bc_ops;
	int err;

	if (ops->bo_reclaim && !c->bc_reclaiming && !*reclaimed) {
		c->bc_reclaiming = true;
		cmutex_unlock(&c->bc_pool_lock);
		err = ops->bo_reclaim(c->bc_ctx);
		cmutex_lock(&c->bc_pool_lock);
		c->bc_reclaiming = false;
		pthread_cond_broadcast(&c->bc_pool_cond);
		*reclaimed = (err == 0);
		if (*reclaimed)
			return 0;
	}
	atomic_fetch_add(&c->bc_pool_waiters, 1);
	if (!c->bc_reclaiming && !buf_pool_has_users(c)) {
		atomic_fetch_sub(&c->bc_pool_waiters, 1);
		/*
		 * Nobody holds a buffer. The holders seen by the last sweep may
		 * have put theirs since: sweep once more before giving up.
		 */
		if (!*swept_idle) {
			*swept_idle = true;
			return 0;
		}
		log_err("buf: pool of %u buffers is full of dirty buffers nothing can write",
			c->bc_nbuffers);
		return -ENOMEM;
	}
	SYNC_POINT("buf.alloc.wait_locked");
	cmutex_wait(&c->bc_pool_lock, &c->bc_pool_cond);
	atomic_fetch_sub(&c->bc_pool_waiters, 1);
	*reclaimed = false;
	*swept_idle = false;
	return 0;
}

/* A buffer that is ours alone (unhashed, no references), or an error. */
static int buf_alloc(struct buf_cache *c, struct buf **out)
{
	bool waited = false, reclaimed = false, swept_idle = false;
	struct buf *b;
	int err = 0;

	cmutex_lock(&c->bc_pool_lock);
	while (!(b = buf_take_free_locked(c)) && !(b = buf_evict_locked(c))) {
		if (!waited)
			atomic_fetch_add(&c->bc_waits, 1);
		waited = true;
		if ((err = buf_pool_stall_locked(c, &reclaimed, &swept_idle)))
			break;
	}
	cmutex_unlock(&c->bc_pool_lock);
	*out = b;
	return err;
}

/* ---- get and put ------------------------------------------------------ */

/*
 * Take a reference on hashed @b and wait until it holds valid data.
 * 0, the fill error that made it go away, or -EAGAIN if it went away
 * (dropped, evicted after a drop): look it up again.
 */
static int buf_use_locked(struct buf *b)
{
	uint64_t w;

	atomic_fetch_add(&b->b_refs, 1);
	buf_touch(b);
	buf_wait_while_locked(b, (1u << BUF_READING) | (1u << BUF_INVALID));
	w = buf_word(b);
	if (w & BW_HASHED)
		return 0;
	return b->b_err ? b->b_err : -EAGAIN;
}

static int buf_fill(struct buf_cache *c, struct buf *b, uint64_t hint)
{
	struct buf_shard *sh = buf_shard_of(b);
	int err;

	SYNC_POINT("buf.read.fill");
	atomic_fetch_add(&c->bc_fills, 1);
	err = c->bc_ops->bo_fill(c->bc_ctx, b, b->b_data, hint);
	if (err == -EAGAIN) { /* reserved for "look it up again" inside the cache */
		log_err("buf: fill of block (%" PRIu64 ", %" PRIu64 ") returned -EAGAIN",
			b->b_owner, b->b_index);
		err = -EIO;
	}
	cmutex_lock(&sh->bsh_lock);
	buf_read_end_locked(b, err);
	cmutex_unlock(&sh->bsh_lock);
	return err;
}

/*
 * Find (owner, index) and wait for valid data, or insert *@fresh for it
 * (Invalid; Reading if @read). NULL with *err == 0: allocate and retry.
 */
static struct buf *buf_find_or_insert(struct buf_cache *c, uint64_t owner, uint64_t index,
				      struct buf **fresh, bool read, int *err)
{
	uint64_t h = buf_hash(owner, index);
	struct buf_shard *sh = buf_shard_for(c, h);
	struct buf *b;

	cmutex_lock(&sh->bsh_lock);
	b = buf_find_locked(sh, h, owner, index);
	if (b) {
		sh->bsh_hits++;
		*err = buf_use_locked(b);
	} else if (*fresh) {
		*err = buf_insert_locked(sh, h, *fresh, owner, index);
		if (!*err) {
			b = *fresh;
			*fresh = NULL;
			sh->bsh_misses++;
			if (read)
				buf_read_begin_locked(b);
		}
	}
	cmutex_unlock(&sh->bsh_lock);
	return b;
}

enum buf_get_mode { BUF_GET_READ, BUF_GET_ZEROED, BUF_GET_OVERWRITE };

static int buf_get(struct buf_cache *c, uint64_t owner, uint64_t index, enum buf_get_mode mode,
		   uint64_t hint, struct buf **out)
{
	struct buf *b, *fresh = NULL;
	int err = 0;

	for (;;) {
		err = 0;
		b = buf_find_or_insert(c, owner, index, &fresh, mode == BUF_GET_READ, &err);
		if (b && err == -EAGAIN) {
			buf_put(b);
			continue;
		}
		if (b || err)
			break;
		if ((err = buf_alloc(c, &fresh)))
			return err;
		if (mode == BUF_GET_ZEROED) /* a read or the caller overwrites the rest */
			memset(fresh->b_data, 0, c->bc_block_size);
		SYNC_POINT("buf.alloc.taken"); /* ours, not yet hashed; no lock held */
	}
	if (fresh)
		buf_free(c, fresh); /* someone else inserted it first, or attach failed */
	if (err) {
		buf_put(b);
		return err;
	}
	if (bw_state(buf_word(b)) == BUF_READING && (err = buf_fill(c, b, hint))) {
		buf_put(b);
		return err;
	}
	*out = b;
	return 0;
}

int buf_read(struct buf_cache *c, uint64_t owner, uint64_t index, struct buf **out)
{
	return buf_get(c, owner, index, BUF_GET_READ, BUF_NO_HINT, out);
}

int buf_read_hint(struct buf_cache *c, uint64_t owner, uint64_t index, uint64_t hint,
		  struct buf **out)
{
	return buf_get(c, owner, index, BUF_GET_READ, hint, out);
}

int buf_get_new(struct buf_cache *c, uint64_t owner, uint64_t index, struct buf **out)
{
	return buf_get(c, owner, index, BUF_GET_ZEROED, BUF_NO_HINT, out);
}

int buf_get_overwrite(struct buf_cache *c, uint64_t owner, uint64_t index, struct buf **out)
{
	return buf_get(c, owner, index, BUF_GET_OVERWRITE, BUF_NO_HINT, out);
}

/*
 * The hashed buffer for (owner, index), referenced, or NULL; with
 * @valid_only, NULL also for one still Invalid or Reading (no data yet).
 */
static struct buf *buf_find_ref(struct buf_cache *c, uint64_t owner, uint64_t index,
				bool valid_only)
{
	uint64_t h = buf_hash(owner, index);
	struct buf_shard *sh = buf_shard_for(c, h);
	struct buf *b;

	cmutex_lock(&sh->bsh_lock);
	b = buf_find_locked(sh, h, owner, index);
	if (b && valid_only) {
		enum buf_state s = bw_state(buf_word(b));
		if (s == BUF_INVALID || s == BUF_READING)
			b = NULL;
		else
			sh->bsh_hits++;
	}
	if (b) {
		atomic_fetch_add(&b->b_refs, 1);
		buf_touch(b);
	}
	cmutex_unlock(&sh->bsh_lock);
	return b;
}

struct buf *buf_lookup(struct buf_cache *c, uint64_t owner, uint64_t index)
{
	return buf_find_ref(c, owner, index, true);
}

struct buf *buf_find_hold(struct buf_cache *c, uint64_t owner, uint64_t index)
{
	return buf_find_ref(c, owner, index, false);
}

void buf_hold(struct buf *b)
{
	uint32_t old = atomic_fetch_add(&b->b_refs, 1);

	assert(old > 0); /* only a holder may take another reference */
	(void)old;
}

/*
 * A reference to an Invalid buffer (from buf_get_new, never made Dirty)
 * was put: nobody will give it content, so drop it. Threads asleep on it
 * wake, see it gone and look the block up again.
 */
static void buf_put_invalid(struct buf *b)
{
	struct buf_shard *sh = buf_shard_of(b);
	bool ours = false;
	uint64_t w;

	cmutex_lock(&sh->bsh_lock);
	w = buf_word(b);
	if ((w & BW_HASHED) && bw_state(w) == BUF_INVALID)
		ours = buf_unhash_locked(b);
	cmutex_unlock(&sh->bsh_lock);
	if (ours)
		buf_free(b->b_cache, b);
}

void buf_put(struct buf *b)
{
	struct buf_cache *c;
	uint32_t old;
	uint64_t w;

	if (!b)
		return;
	c = b->b_cache;
	old = atomic_fetch_sub(&b->b_refs, 1);
	assert(old > 0);
	if (old == 1) { /* unhashed and we were the last */
		if (buf_word(b) & BW_SHADOW)
			buf_shadow_free(b);
		else
			buf_free(c, b);
		return;
	}
	w = buf_word(b);
	if (!(w & BW_HASHED))
		return;
	if (bw_state(w) == BUF_INVALID)
		buf_put_invalid(b); /* its creator gave up on it: waiters retry */
	else if (old == 2 && atomic_load(&c->bc_pool_waiters))
		buf_pool_kick(c);
}

/* ---- accessors -------------------------------------------------------- */

void *buf_data(struct buf *b)
{
	return b->b_data;
}

uint64_t buf_owner(const struct buf *b)
{
	return b->b_owner;
}

uint64_t buf_index(const struct buf *b)
{
	return b->b_index;
}

enum buf_state buf_state(const struct buf *b)
{
	return bw_state(buf_word(b));
}

uint32_t buf_delta(const struct buf *b)
{
	return (uint32_t)(buf_word(b) >> BW_DELTA_SHIFT);
}

bool buf_redirtied(const struct buf *b)
{
	return buf_word(b) & BW_REDIRTY;
}

void buf_cache_stats(struct buf_cache *c, struct buf_cache_stats *st)
{
	st->bs_hits = st->bs_misses = 0;
	for (unsigned i = 0; i < BUF_NSHARDS; i++) {
		struct buf_shard *sh = &c->bc_shards[i];
		cmutex_lock(&sh->bsh_lock);
		st->bs_hits += sh->bsh_hits;
		st->bs_misses += sh->bsh_misses;
		cmutex_unlock(&sh->bsh_lock);
	}
	st->bs_fills = atomic_load(&c->bc_fills);
	st->bs_evictions = atomic_load(&c->bc_evictions);
	st->bs_waits = atomic_load(&c->bc_waits);
	st->bs_dirty = atomic_load(&c->bc_ndirty);
	st->bs_in_use = 0;
	cmutex_lock(&c->bc_pool_lock);
	for (uint32_t i = 0; i < c->bc_nbuffers; i++)
		st->bs_in_use += buf_has_users(&c->bc_bufs[i]);
	cmutex_unlock(&c->bc_pool_lock);
}

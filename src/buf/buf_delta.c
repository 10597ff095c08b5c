/*
 * buf_delta.c - the buffer cache's side of the delta pipeline (seed 001):
 * per-delta dirty lists and the buffer fork.
 *
 * Every buffer in Dirty, Writing or Written is on the dirty list of its
 * delta (the delta is in its state word). Only two deltas are live at a
 * time, the open one and the one being committed, so two lists indexed by
 * the delta's parity suffice.
 *
 * The fork. A front-end operation of delta D+1 about to modify a buffer
 * that is still Dirty in delta D (closed, being committed) must not change
 * what D writes. buf_fork_locked makes a shadow: a buffer outside the
 * hash holding a copy of the data, tagged D, that takes the buffer's
 * place on D's list; the buffer itself moves to D+1 and is modified. The
 * back end writes the shadow like any buffer and never reads memory the
 * front end can write. A buffer the back end already copied into the log
 * (Written) needs no shadow: it just moves to D+1. One being copied
 * (Writing) is waited for: a memory copy, not a disk write.
 *
 * Each parity has two lists: bc_delta_dirty holds the buffers not yet
 * taken by the commit, bc_delta_taken the ones buf_delta_take handed out,
 * so that a commit's takes cost time linear in the delta's size.
 *
 * Invariants
 *   (1) A buffer is on bc_delta_dirty[d & 1] or bc_delta_taken[d & 1] iff
 *       it is in Dirty, Writing or Written with delta d; bc_delta_count
 *       counts both lists of a parity. It is on bc_delta_taken iff its
 *       b_taken is set.
 *   (2) A buffer on a delta list is hashed or a shadow, so a reference may
 *       be raised under bc_delta_lock alone (buf_delta_take).
 *   (3) A shadow is never hashed, never modified, has no owner record and
 *       is freed (data and all) when its last reference goes.
 *   (4) At most one shadow per buffer exists: a fork happens only from
 *       the committing delta to the open one, and the next transition
 *       waits for the commit to end.
 *
 * Lock order: a buffer's shard lock, then bc_delta_lock (a leaf).
 */
#include "buf/buf_internal.h"

#include <stdlib.h>
#include <string.h>

void buf_delta_init(struct buf_cache *c)
{
	cmutex_init(&c->bc_delta_lock);
	for (int p = 0; p < 2; p++) {
		list_init(&c->bc_delta_dirty[p]);
		list_init(&c->bc_delta_taken[p]);
	}
}

void buf_delta_destroy(struct buf_cache *c)
{
	struct buf *shadows[64];
	unsigned n;

	/* shadows still listed (a cache destroyed mid-commit) belong to us */
	for (int l = 0; l < 4; l++) {
		struct list_node *head = l < 2 ? &c->bc_delta_dirty[l] : &c->bc_delta_taken[l - 2];
		do {
			n = 0;
			struct list_node *node, *next;
			for (node = head->next; node != head && n < 64; node = next) {
				next = node->next;
				struct buf *b = container_of(node, struct buf, b_delta_node);
				list_del(node);
				if (buf_word(b) & BW_SHADOW)
					shadows[n++] = b;
			}
			for (unsigned i = 0; i < n; i++)
				buf_shadow_free(shadows[i]);
		} while (n);
	}
	cmutex_destroy(&c->bc_delta_lock);
}

void buf_delta_link_locked(struct buf *b)
{
	struct buf_cache *c = b->b_cache;
	unsigned p = bw_delta(buf_word(b)) & 1;

	cmutex_lock(&c->bc_delta_lock);
	list_add_tail(&c->bc_delta_dirty[p], &b->b_delta_node);
	c->bc_delta_count[p]++;
	cmutex_unlock(&c->bc_delta_lock);
}

void buf_delta_unlink_locked(struct buf *b)
{
	struct buf_cache *c = b->b_cache;
	unsigned p = bw_delta(buf_word(b)) & 1;

	cmutex_lock(&c->bc_delta_lock);
	list_del(&b->b_delta_node);
	c->bc_delta_count[p]--;
	atomic_store(&b->b_taken, false);
	cmutex_unlock(&c->bc_delta_lock);
}

void buf_delta_retag_locked(struct buf *b, uint32_t delta)
{
	struct buf_cache *c = b->b_cache;
	uint64_t w = buf_word(b);
	unsigned from = bw_delta(w) & 1, to = delta & 1;

	if (from != to) {
		/* neighbours' takes and forks rewrite the node: read it locked */
		cmutex_lock(&c->bc_delta_lock);
		if (list_linked(&b->b_delta_node)) {
			list_del(&b->b_delta_node);
			c->bc_delta_count[from]--;
			list_add_tail(&c->bc_delta_dirty[to], &b->b_delta_node);
			c->bc_delta_count[to]++;
			atomic_store(&b->b_taken, false);
		}
		cmutex_unlock(&c->bc_delta_lock);
	}
	w &= (1ULL << BW_DELTA_SHIFT) - 1;
	buf_word_set_locked(b, w | ((uint64_t)delta << BW_DELTA_SHIFT));
}

static struct buf *buf_shadow_new(struct buf *b)
{
	struct buf_cache *c = b->b_cache;
	struct buf *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->b_data = malloc(c->bc_block_size);
	if (!s->b_data) {
		free(s);
		return NULL;
	}
	memcpy(s->b_data, b->b_data, c->bc_block_size);
	s->b_cache = c;
	s->b_slot = UINT32_MAX;
	s->b_shard = b->b_shard;
	s->b_owner = b->b_owner;
	s->b_index = b->b_index;
	atomic_init(&s->b_refs, 1); /* the delta list's */
	atomic_init(&s->b_word, buf_word(b) & ~(BW_HASHED | BW_MODIFYING | BW_REDIRTY));
	atomic_store(&s->b_word, atomic_load(&s->b_word) | BW_SHADOW);
	list_init(&s->b_owner_node);
	list_init(&s->b_dirty_node);
	list_init(&s->b_free_node);
	list_init(&s->b_delta_node);
	return s;
}

int buf_fork_locked(struct buf *b, uint32_t delta)
{
	struct buf_cache *c = b->b_cache;
	struct buf *s;

	assert(bw_state(buf_word(b)) == BUF_DIRTY && bw_delta(buf_word(b)) != delta);
	SYNC_POINT("buf.fork_locked");
	s = buf_shadow_new(b);
	if (!s)
		return -ENOMEM;
	/*
	 * The shadow takes @b's place on the old delta's untaken list. It is
	 * never taken yet: if the commit took @b, it holds @b (and will skip
	 * it, now of another delta), so the shadow must stay takeable for the
	 * commit's next buf_delta_take, or its data is lost.
	 */
	cmutex_lock(&c->bc_delta_lock);
	if (atomic_load(&b->b_taken)) {
		list_del(&b->b_delta_node);
		list_add_tail(&c->bc_delta_dirty[bw_delta(buf_word(b)) & 1], &s->b_delta_node);
	} else {
		s->b_delta_node.prev = b->b_delta_node.prev;
		s->b_delta_node.next = b->b_delta_node.next;
		s->b_delta_node.prev->next = &s->b_delta_node;
		s->b_delta_node.next->prev = &s->b_delta_node;
	}
	list_init(&b->b_delta_node);
	atomic_store(&s->b_taken, false);
	atomic_store(&b->b_taken, false);
	list_add_tail(&c->bc_delta_dirty[delta & 1], &b->b_delta_node);
	c->bc_delta_count[delta & 1]++;
	cmutex_unlock(&c->bc_delta_lock);
	atomic_fetch_add(&c->bc_ndirty, 1);
	atomic_fetch_add(&c->bc_forks, 1);
	buf_word_set_locked(b, (buf_word(b) & ((1ULL << BW_DELTA_SHIFT) - 1)) |
				   ((uint64_t)delta << BW_DELTA_SHIFT));
	return 0;
}

void buf_shadow_free(struct buf *b)
{
	assert(buf_word(b) & BW_SHADOW);
	free(b->b_data);
	free(b);
}

bool buf_is_shadow(const struct buf *b)
{
	return buf_word(b) & BW_SHADOW;
}

uint64_t buf_forks(struct buf_cache *c)
{
	return atomic_load(&c->bc_forks);
}

unsigned buf_delta_take(struct buf_cache *c, uint32_t delta, struct buf **out, unsigned max)
{
	struct list_node *head = &c->bc_delta_dirty[delta & 1], *n, *next;
	unsigned got = 0;

	cmutex_lock(&c->bc_delta_lock);
	for (n = head->next; n != head && got < max; n = next) {
		struct buf *b = container_of(n, struct buf, b_delta_node);
		uint64_t w = buf_word(b);

		next = n->next;
		if (bw_delta(w) != delta || bw_state(w) != BUF_DIRTY || (w & BW_MODIFYING))
			continue;
		assert(!atomic_load(&b->b_taken));
		atomic_store(&b->b_taken, true);
		list_del(n);
		list_add_tail(&c->bc_delta_taken[delta & 1], n);
		atomic_fetch_add(&b->b_refs, 1); /* safe: invariant (2) */
		out[got++] = b;
	}
	cmutex_unlock(&c->bc_delta_lock);
	return got;
}

uint64_t buf_delta_ndirty(struct buf_cache *c, uint32_t delta)
{
	uint64_t n;

	cmutex_lock(&c->bc_delta_lock);
	n = c->bc_delta_count[delta & 1];
	cmutex_unlock(&c->bc_delta_lock);
	return n;
}

/* References on up to @max buffers on @delta's list (any state). */
static unsigned buf_delta_hold(struct buf_cache *c, uint32_t delta, struct buf **out, unsigned max)
{
	struct list_node *n;
	unsigned got = 0;

	cmutex_lock(&c->bc_delta_lock);
	for (int l = 0; l < 2; l++) {
		struct list_node *head =
		    l ? &c->bc_delta_taken[delta & 1] : &c->bc_delta_dirty[delta & 1];
		list_for_each(n, head)
		{
			struct buf *b = container_of(n, struct buf, b_delta_node);
			if (got == max)
				break;
			if (bw_delta(buf_word(b)) != delta)
				continue;
			atomic_fetch_add(&b->b_refs, 1);
			out[got++] = b;
		}
	}
	cmutex_unlock(&c->bc_delta_lock);
	return got;
}

/* Requeue one buffer of a failed delta; true if it left @from. */
static bool buf_requeue_one(struct buf *b, uint32_t from, uint32_t to)
{
	struct buf_shard *sh = buf_shard_of(b);
	uint64_t w;
	bool moved = false, linked;

	cmutex_lock(&sh->bsh_lock);
	w = buf_word(b);
	cmutex_lock(&b->b_cache->bc_delta_lock); /* neighbours rewrite the node */
	linked = list_linked(&b->b_delta_node);
	cmutex_unlock(&b->b_cache->bc_delta_lock);
	if (bw_delta(w) == from && linked) {
		if (w & BW_SHADOW) {
			/* its buffer is dirty in a newer delta with newer data */
			buf_state_set_locked(b, BUF_DROPPED);
		} else {
			assert(bw_state(w) == BUF_DIRTY);
			buf_delta_retag_locked(b, to);
		}
		moved = true;
	}
	cmutex_unlock(&sh->bsh_lock);
	return moved;
}

void buf_delta_requeue(struct buf_cache *c, uint32_t from, uint32_t to)
{
	struct buf *batch[64];
	unsigned n;
	bool progress = true;

	while (progress && (n = buf_delta_hold(c, from, batch, ARRAY_SIZE(batch)))) {
		progress = false;
		for (unsigned i = 0; i < n; i++) {
			progress |= buf_requeue_one(batch[i], from, to);
			buf_put(batch[i]);
		}
	}
}

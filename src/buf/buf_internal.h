/*
 * buf_internal.h - structures shared by the files of the buffer cache
 * layer (buf.c, buf_state.c, buf_owner.c). Nothing outside src/buf/
 * includes this. See buf.c for the design, invariants and lock order.
 */
#ifndef CAIRN_BUF_INTERNAL_H
#define CAIRN_BUF_INTERNAL_H

#include "buf/buf.h"
#include "util/syncpoint.h"
#include "util/util.h"

/*
 * The state word: everything about a buffer's state in one 64-bit word
 * that changes atomically (written only under the buffer's shard lock,
 * read anywhere with an atomic load):
 *
 *   bits  0..3   enum buf_state
 *   bit   4      BW_REDIRTY   modified while Written: commit makes it Dirty
 *   bit   5      BW_DROP      delayed drop: drop when the I/O ends
 *   bit   6      BW_HASHED    in the hash table (holds one reference)
 *   bit   7      BW_MODIFYING a thread is changing the data (modify_begin..end)
 *   bit   8      BW_SHADOW    a fork's copy for the back end (never hashed)
 *   bits 32..63  the delta a dirty buffer belongs to (seed 001)
 */
#define BW_STATE_MASK  0xfULL
#define BW_REDIRTY     (1ULL << 4)
#define BW_DROP	       (1ULL << 5)
#define BW_HASHED      (1ULL << 6)
#define BW_MODIFYING   (1ULL << 7)
#define BW_SHADOW      (1ULL << 8)
#define BW_DELTA_SHIFT 32

#define BUF_NSHARDS	  64 /* hash shards; power of two */
#define BUF_NOWNER_SHARDS 64

struct buf_owner_rec;

struct buf {
	struct buf_cache *b_cache; /* immutable */
	void *b_data;		   /* immutable */
	uint32_t b_slot;	   /* immutable: index in bc_bufs */
	uint32_t b_shard;	   /* set before BW_HASHED is published */
	uint64_t b_owner;	   /* stable while hashed; set before BW_HASHED */
	uint64_t b_index;	   /* stable while hashed; set before BW_HASHED */
	_Atomic uint64_t b_word;   /* state word; stored under shard lock */
	/*
	 * References: one per user, plus one while BW_HASHED. Raised from
	 * the hash only under the shard lock; whoever drops it to 0 frees.
	 */
	_Atomic uint32_t b_refs;
	_Atomic uint8_t b_clock;       /* CLOCK referenced bit */
	int b_err;		       /* fill error, for waiters; protected by shard lock */
	struct buf *b_hnext;	       /* hash chain; protected by shard lock */
	struct buf_owner_rec *b_orec;  /* while hashed; protected by shard lock */
	struct list_node b_owner_node; /* on or_bufs; protected by owner shard lock */
	struct list_node b_dirty_node; /* on or_dirty; protected by owner shard lock */
	struct list_node b_free_node;  /* on bc_free; protected by bc_pool_lock */
	bool b_flushing; /* taken by buf_owner_dirty, not yet Writing; owner shard lock */
	struct list_node b_delta_node; /* on a bc_delta_dirty or _taken list; bc_delta_lock */
	_Atomic bool b_taken;	       /* taken by buf_delta_take, not yet Writing */
};

struct buf_shard {
	_Alignas(64) struct cmutex bsh_lock;
	pthread_cond_t bsh_cond;  /* any state change of this shard's buffers */
	struct buf **bsh_buckets; /* protected by bsh_lock */
	uint32_t bsh_mask;	  /* buckets - 1; immutable */
	/* statistics kept per shard, so that a hit writes no shared line */
	uint64_t bsh_hits;   /* protected by bsh_lock */
	uint64_t bsh_misses; /* protected by bsh_lock */
};

/* Per-owner bookkeeping: every cached buffer, dirty ones, last error. */
struct buf_owner_rec {
	uint64_t or_owner;
	struct list_node or_bufs;      /* all hashed buffers; protected by owner shard */
	struct list_node or_dirty;     /* Dirty/Writing/Written, oldest first; ditto */
	uint64_t or_nbufs;	       /* protected by owner shard lock */
	uint64_t or_ndirty;	       /* protected by owner shard lock */
	int or_err;		       /* first unreported write error; ditto */
	struct buf_owner_rec *or_next; /* hash chain; ditto */
};

struct buf_owner_shard {
	_Alignas(64) struct cmutex bos_lock;
	struct buf_owner_rec **bos_buckets; /* protected by bos_lock */
	uint32_t bos_mask;
};

struct buf_cache {
	uint32_t bc_block_size; /* immutable */
	uint32_t bc_nbuffers;	/* immutable */
	const struct buf_ops *bc_ops;
	void *bc_ctx;
	struct buf *bc_bufs;	  /* immutable array */
	unsigned char *bc_memory; /* immutable: bc_nbuffers blocks */
	struct buf_shard bc_shards[BUF_NSHARDS];
	struct buf_owner_shard bc_owners[BUF_NOWNER_SHARDS];

	struct cmutex bc_pool_lock;
	pthread_cond_t bc_pool_cond; /* a buffer may have become reusable */
	struct list_node bc_free;    /* unhashed buffers; protected by bc_pool_lock */
	uint32_t bc_clock_hand;	     /* protected by bc_pool_lock */
	bool bc_reclaiming;	     /* protected by bc_pool_lock */

	/* read by every buf_put: alone on its cache line */
	_Alignas(64) _Atomic uint32_t bc_pool_waiters; /* threads waiting in buf_alloc */

	/* slow-path statistics and the dirty count, away from the hot lines */
	_Alignas(64) _Atomic uint64_t bc_fills;
	_Atomic uint64_t bc_evictions, bc_waits;
	_Atomic uint32_t bc_ndirty;
	_Atomic uint64_t bc_forks;

	/*
	 * Buffers in Dirty, Writing or Written, by the parity of their delta:
	 * only two deltas are ever live (the open one and the committing one).
	 */
	struct cmutex bc_delta_lock;
	struct list_node bc_delta_dirty[2]; /* not yet taken; protected by bc_delta_lock */
	struct list_node bc_delta_taken[2]; /* taken by the commit; bc_delta_lock */
	uint64_t bc_delta_count[2];	    /* protected by bc_delta_lock */
};

static inline enum buf_state bw_state(uint64_t w)
{
	return (enum buf_state)(w & BW_STATE_MASK);
}

static inline uint64_t buf_word(const struct buf *b)
{
	return atomic_load_explicit(&b->b_word, memory_order_acquire);
}

static inline struct buf_shard *buf_shard_of(struct buf *b)
{
	return &b->b_cache->bc_shards[b->b_shard];
}

/* buf_state.c: the only writers of the state word. */
void buf_word_set_locked(struct buf *b, uint64_t w);
int buf_state_set_locked(struct buf *b, enum buf_state to);
int buf_illegal(struct buf *b, const char *fn);
void buf_read_begin_locked(struct buf *b);
void buf_read_end_locked(struct buf *b, int err);
/* Wait on the shard while @b is in one of the states in @mask (bits 1<<state). */
void buf_wait_while_locked(struct buf *b, unsigned mask);
/* Wait on the shard while @b is hashed and has one of the word flags @flags. */
void buf_wait_flags_locked(struct buf *b, uint64_t flags);

/* buf_delta.c: called with the buffer's shard lock held. */
void buf_delta_link_locked(struct buf *b);
void buf_delta_unlink_locked(struct buf *b);
/* Give @b the tag @delta, moving it between delta lists if it is on one. */
void buf_delta_retag_locked(struct buf *b, uint32_t delta);
/* Fork @b, Dirty in an older delta, into a shadow; @b moves to @delta. */
int buf_fork_locked(struct buf *b, uint32_t delta);
void buf_shadow_free(struct buf *b);
void buf_delta_init(struct buf_cache *c);
void buf_delta_destroy(struct buf_cache *c);

static inline uint32_t bw_delta(uint64_t w)
{
	return (uint32_t)(w >> BW_DELTA_SHIFT);
}

/* buf.c */
/* Remove @b from the hash (state -> Dropped); true if that was the last reference. */
bool buf_unhash_locked(struct buf *b);
void buf_pool_kick(struct buf_cache *c);

/* buf_owner.c: called with the buffer's shard lock held. */
int buf_owner_attach_locked(struct buf *b);
void buf_owner_detach_locked(struct buf *b);
void buf_owner_mark_dirty_locked(struct buf *b);
void buf_owner_mark_clean_locked(struct buf *b);
void buf_owner_write_started_locked(struct buf *b);
void buf_owner_record_error_locked(struct buf *b, int err);
int buf_owners_init(struct buf_cache *c);
void buf_owners_destroy(struct buf_cache *c);

#endif /* CAIRN_BUF_INTERNAL_H */

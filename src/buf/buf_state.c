/*
 * buf_state.c - the buffer state machine (seed 003): the one table of
 * legal transitions and one function per transition.
 *
 * Every change of a buffer's state goes through buf_state_set_locked(),
 * which checks the table, keeps the owner's dirty list and the cache's
 * dirty count in step, publishes the new state word atomically and wakes
 * every thread sleeping on the shard. An illegal transition is a bug in
 * the caller: it is logged with the block it concerns, asserts in debug
 * builds and returns -EINVAL in release builds, changing nothing.
 *
 *   from \ to   Inv Rea Cle Dir Wri Wtn Dro
 *   Invalid      .   x   .   x   .   .   x     read_begin, buf_dirty, drop
 *   Reading      x   .   x   .   .   .   x     read_end(err), read_end(0), delayed drop
 *   Clean        .   .   .   x   .   .   x     buf_dirty, drop/evict
 *   Dirty        .   .   .   .   x   .   x     write_begin, drop
 *   Writing      .   .   .   x   .   x   x     write_end(err)/cancel, write_end(0), delayed drop
 *   Written      .   .   x   x   .   .   x     commit_end, commit_end(err)/redirtied/cancel,
 * delayed drop Dropped      x   .   .   .   .   .   .     reuse for another block (alloc)
 */
#include "buf/buf_internal.h"

#include <inttypes.h>

#define L(s) (1u << (s))
static const unsigned buf_legal_to[BUF_NSTATES] = {
    [BUF_INVALID] = L(BUF_READING) | L(BUF_DIRTY) | L(BUF_DROPPED),
    [BUF_READING] = L(BUF_INVALID) | L(BUF_CLEAN) | L(BUF_DROPPED),
    [BUF_CLEAN] = L(BUF_DIRTY) | L(BUF_DROPPED),
    [BUF_DIRTY] = L(BUF_WRITING) | L(BUF_DROPPED),
    [BUF_WRITING] = L(BUF_DIRTY) | L(BUF_WRITTEN) | L(BUF_DROPPED),
    [BUF_WRITTEN] = L(BUF_CLEAN) | L(BUF_DIRTY) | L(BUF_DROPPED),
    [BUF_DROPPED] = L(BUF_INVALID),
};
#define BUF_DIRTY_SET (L(BUF_DIRTY) | L(BUF_WRITING) | L(BUF_WRITTEN))

static const char *const buf_state_names[BUF_NSTATES] = {
    "Invalid", "Reading", "Clean", "Dirty", "Writing", "Written", "Dropped",
};

const char *buf_state_name(enum buf_state s)
{
	return (unsigned)s < BUF_NSTATES ? buf_state_names[s] : "?";
}

bool buf_state_legal(enum buf_state from, enum buf_state to)
{
	if ((unsigned)from >= BUF_NSTATES || (unsigned)to >= BUF_NSTATES)
		return false;
	return buf_legal_to[from] & L(to);
}

void buf_word_set_locked(struct buf *b, uint64_t w)
{
	assert(cmutex_held(&buf_shard_of(b)->bsh_lock));
	atomic_store_explicit(&b->b_word, w, memory_order_release);
}

int buf_illegal(struct buf *b, const char *fn)
{
	log_err("buf: illegal %s on block (%" PRIu64 ", %" PRIu64 ") in state %s", fn, b->b_owner,
		b->b_index, buf_state_name(bw_state(buf_word(b))));
	assert(!"illegal buffer state transition");
	return -EINVAL;
}

/* Keep the dirty list and count in step with a change of state. */
static void buf_dirty_account_locked(struct buf *b, enum buf_state from, enum buf_state to)
{
	bool was = BUF_DIRTY_SET & L(from), is = BUF_DIRTY_SET & L(to);

	if (was == is)
		return;
	if (is) {
		atomic_fetch_add(&b->b_cache->bc_ndirty, 1);
		if (b->b_orec)
			buf_owner_mark_dirty_locked(b);
		buf_delta_link_locked(b);
		return;
	}
	atomic_fetch_sub(&b->b_cache->bc_ndirty, 1);
	if (b->b_orec)
		buf_owner_mark_clean_locked(b);
	buf_delta_unlink_locked(b);
	if (buf_word(b) & BW_SHADOW) {
		/* the delta list's reference; whoever settled it holds another */
		uint32_t old = atomic_fetch_sub(&b->b_refs, 1);
		assert(old > 1);
		(void)old;
	}
}

int buf_state_set_locked(struct buf *b, enum buf_state to)
{
	uint64_t w = buf_word(b);
	enum buf_state from = bw_state(w);

	if (!buf_state_legal(from, to))
		return buf_illegal(b, buf_state_name(to));
	buf_dirty_account_locked(b, from, to);
	buf_word_set_locked(b, (w & ~BW_STATE_MASK) | (uint64_t)to);
	pthread_cond_broadcast(&buf_shard_of(b)->bsh_cond);
	return 0;
}

void buf_wait_while_locked(struct buf *b, unsigned mask)
{
	struct buf_shard *sh = buf_shard_of(b);

	for (;;) {
		uint64_t w = buf_word(b);
		if (!(mask & L(bw_state(w))) || !(w & BW_HASHED))
			return;
		SYNC_POINT("buf.wait_locked");
		cmutex_wait(&sh->bsh_lock, &sh->bsh_cond);
	}
}

void buf_wait_flags_locked(struct buf *b, uint64_t flags)
{
	struct buf_shard *sh = buf_shard_of(b);

	while ((buf_word(b) & flags) && (buf_word(b) & BW_HASHED)) {
		SYNC_POINT("buf.wait_locked");
		cmutex_wait(&sh->bsh_lock, &sh->bsh_cond);
	}
}

static void buf_flags_set_locked(struct buf *b, uint64_t set, uint64_t clear)
{
	buf_word_set_locked(b, (buf_word(b) & ~clear) | set);
}

/* A delayed drop (BW_DROP) takes effect when the I/O or commit ends. */
static bool buf_drop_if_pending_locked(struct buf *b)
{
	if (!(buf_word(b) & BW_DROP))
		return false;
	buf_unhash_locked(b);
	return true;
}

void buf_read_begin_locked(struct buf *b)
{
	int err = buf_state_set_locked(b, BUF_READING);

	assert(!err);
	(void)err;
}

void buf_read_end_locked(struct buf *b, int err)
{
	if (bw_state(buf_word(b)) != BUF_READING) {
		buf_illegal(b, "read_end");
		return;
	}
	if (err) {
		b->b_err = err;
		buf_state_set_locked(b, BUF_INVALID);
		buf_unhash_locked(b);
	} else if (!buf_drop_if_pending_locked(b)) {
		buf_state_set_locked(b, BUF_CLEAN);
	}
}

static void buf_set_delta_locked(struct buf *b, uint32_t delta)
{
	uint64_t w = buf_word(b) & ((1ULL << BW_DELTA_SHIFT) - 1);

	buf_word_set_locked(b, w | ((uint64_t)delta << BW_DELTA_SHIFT));
}

/*
 * The transition of buf_dirty; the caller waited out any write. A buffer
 * Dirty in another (the committing) delta is forked; one Written in it
 * moves to @delta and goes Dirty when that delta commits.
 */
static int buf_dirty_locked(struct buf *b, uint32_t delta)
{
	uint64_t w = buf_word(b);
	int err = 0;

	if (w & BW_SHADOW)
		return buf_illegal(b, "buf_dirty of a shadow");
	switch (bw_state(w)) {
	case BUF_INVALID:
	case BUF_CLEAN:
		buf_set_delta_locked(b, delta);
		err = buf_state_set_locked(b, BUF_DIRTY);
		break;
	case BUF_DIRTY:
		if (bw_delta(w) != delta)
			err = buf_fork_locked(b, delta);
		break;
	case BUF_WRITTEN:
		buf_flags_set_locked(b, BW_REDIRTY, 0);
		if (bw_delta(w) != delta)
			buf_delta_retag_locked(b, delta);
		break;
	default:
		err = buf_illegal(b, "buf_dirty");
	}
	return err;
}

int buf_dirty(struct buf *b, uint32_t delta)
{
	struct buf_shard *sh = buf_shard_of(b);
	int err;

	cmutex_lock(&sh->bsh_lock);
	buf_wait_while_locked(b, L(BUF_WRITING));
	err = buf_dirty_locked(b, delta);
	cmutex_unlock(&sh->bsh_lock);
	return err;
}

int buf_dirty_clean(struct buf *b, uint32_t delta)
{
	struct buf_shard *sh = buf_shard_of(b);
	int err = -EBUSY;

	cmutex_lock(&sh->bsh_lock);
	if (!(buf_word(b) & BW_SHADOW) && bw_state(buf_word(b)) == BUF_CLEAN)
		err = buf_dirty_locked(b, delta);
	cmutex_unlock(&sh->bsh_lock);
	return err;
}

int buf_modify_begin(struct buf *b, uint32_t delta)
{
	struct buf_shard *sh = buf_shard_of(b);
	int err;

	SYNC_POINT("buf.modify.begin");
	cmutex_lock(&sh->bsh_lock);
	for (;;) {
		buf_wait_while_locked(b, L(BUF_WRITING));
		if (!(buf_word(b) & BW_MODIFYING) || !(buf_word(b) & BW_HASHED))
			break;
		buf_wait_flags_locked(b, BW_MODIFYING);
	}
	err = buf_dirty_locked(b, delta);
	if (!err)
		buf_flags_set_locked(b, BW_MODIFYING, 0);
	cmutex_unlock(&sh->bsh_lock);
	return err;
}

void buf_modify_end(struct buf *b)
{
	struct buf_shard *sh = buf_shard_of(b);

	cmutex_lock(&sh->bsh_lock);
	/* a buffer dropped meanwhile (truncate) lost the flag with its hash */
	assert((buf_word(b) & BW_MODIFYING) || !(buf_word(b) & BW_HASHED));
	buf_flags_set_locked(b, 0, BW_MODIFYING);
	pthread_cond_broadcast(&sh->bsh_cond);
	cmutex_unlock(&sh->bsh_lock);
}

int buf_write_begin(struct buf *b)
{
	struct buf_shard *sh = buf_shard_of(b);
	int err;

	cmutex_lock(&sh->bsh_lock);
	if (bw_state(buf_word(b)) != BUF_DIRTY) {
		err = buf_illegal(b, "buf_write_begin");
	} else if (buf_word(b) & BW_MODIFYING) {
		err = -EBUSY; /* never wait here: the modifier may be waiting for us */
	} else {
		buf_flags_set_locked(b, 0, BW_REDIRTY);
		buf_owner_write_started_locked(b);
		err = buf_state_set_locked(b, BUF_WRITING);
	}
	cmutex_unlock(&sh->bsh_lock);
	return err;
}

int buf_write_end(struct buf *b, int ioerr)
{
	struct buf_shard *sh = buf_shard_of(b);
	int err = 0;

	cmutex_lock(&sh->bsh_lock);
	if (bw_state(buf_word(b)) != BUF_WRITING) {
		err = buf_illegal(b, "buf_write_end");
	} else if (buf_drop_if_pending_locked(b)) {
		/* discarded while being written: the outcome no longer matters */
	} else if (ioerr) {
		buf_owner_record_error_locked(b, ioerr);
		err = buf_state_set_locked(b, BUF_DIRTY);
	} else {
		err = buf_state_set_locked(b, BUF_WRITTEN);
	}
	cmutex_unlock(&sh->bsh_lock);
	return err;
}

int buf_commit_end(struct buf *b, int ioerr)
{
	struct buf_shard *sh = buf_shard_of(b);
	uint64_t w;
	int err = 0;

	cmutex_lock(&sh->bsh_lock);
	w = buf_word(b);
	if (bw_state(w) != BUF_WRITTEN) {
		err = buf_illegal(b, "buf_commit_end");
	} else if (buf_drop_if_pending_locked(b)) {
		/* discarded meanwhile */
	} else if (ioerr) {
		buf_owner_record_error_locked(b, ioerr);
		buf_flags_set_locked(b, 0, BW_REDIRTY);
		err = buf_state_set_locked(b, BUF_DIRTY);
	} else {
		buf_flags_set_locked(b, 0, BW_REDIRTY);
		err = buf_state_set_locked(b, (w & BW_REDIRTY) ? BUF_DIRTY : BUF_CLEAN);
	}
	cmutex_unlock(&sh->bsh_lock);
	return err;
}

int buf_write_cancel(struct buf *b)
{
	struct buf_shard *sh = buf_shard_of(b);
	enum buf_state s;
	int err = 0;

	cmutex_lock(&sh->bsh_lock);
	s = bw_state(buf_word(b));
	if (s != BUF_WRITING && s != BUF_WRITTEN) {
		err = buf_illegal(b, "buf_write_cancel");
	} else if (!buf_drop_if_pending_locked(b)) {
		buf_flags_set_locked(b, 0, BW_REDIRTY);
		err = buf_state_set_locked(b, BUF_DIRTY);
	}
	cmutex_unlock(&sh->bsh_lock);
	return err;
}

int buf_drop(struct buf *b)
{
	struct buf_shard *sh = buf_shard_of(b);
	int err = 0;

	cmutex_lock(&sh->bsh_lock);
	switch (bw_state(buf_word(b))) {
	case BUF_READING:
	case BUF_WRITING:
	case BUF_WRITTEN:
		buf_flags_set_locked(b, BW_DROP, 0);
		break;
	case BUF_DROPPED:
		break; /* dropped by someone else meanwhile: nothing left to do */
	default:
		buf_unhash_locked(b);
	}
	cmutex_unlock(&sh->bsh_lock);
	return err;
}

/*
 * delta.c - the delta pipeline (seed 001).
 *
 *            op_begin (joins)      transition (commit thread)
 *   front end ----------------> [ open delta D+1 ]
 *                                     ^
 *   closing: new ops wait for the in-flight ops of D (CPU work, never
 *   disk I/O), then D+1 opens and the back end commits D while the
 *   front end works in D+1, forking buffers still dirty in D.
 *
 * The commit thread loops: wait until a sync wants a delta committed, the
 * open delta holds too many dirty blocks or its reservations more than
 * half of the space left, or it is too old; close it (the
 * transition); commit it through do_commit; settle its reservations; wake
 * the syncers. One thread, so at most one delta is ever committing, and a
 * transition never overtakes a commit.
 *
 * Invariants
 *   (1) ds_open is the only delta operations can join; an operation holds
 *       a reference (ds_refs) from op_begin to op_end.
 *   (2) A transition closes ds_open only when no delta is committing, and
 *       opens the next only after ds_refs has drained: no operation of the
 *       closed delta runs while the next delta's operations do, so a
 *       buffer is never tagged with a delta newer than the operation
 *       modifying it, and each operation's changes land in one delta.
 *   (3) ds_done is the newest delta whose commit has ended (well or
 *       not), ds_committed <= ds_done the newest that reached the disk;
 *       both are below ds_open.
 *   (4) A reservation is taken before an operation joins a delta and
 *       charged to that delta; it is released when the delta's commit
 *       succeeds, whatever the commit consumed (an overshoot is logged).
 *       A failed commit's buffers go to the next delta, and so does its
 *       reservation.
 *   (5) Nobody waits for space inside an operation: op_begin refuses to
 *       run inside another operation of the same thread (assert), and the
 *       commit it may force needs nothing the caller holds.
 *   (6) Freeing reservations that fall short are served in turn: the
 *       first takes a ticket and forces commits (delta_reserve); every
 *       freeing reservation that comes while a ticket is out takes the
 *       next one and waits, without trying, for its turn. Only the kept
 *       reserve holds a deletion on a full volume, and it holds one
 *       deletion's worst case: without turns, deletions in several
 *       threads each retook what a forced commit released before the one
 *       that forced it retried, and the loser gave up with -ENOSPC while
 *       the others went on (test_freeing_reservations_take_turns). The
 *       turn passes on once the reservation is charged to the open delta
 *       (op_begin), not when it is granted: the next one's forced commits
 *       must be of a delta that releases it, or they free nothing and the
 *       next one gives up.
 *
 * Lock order: ds_lock is taken with no other cairn lock held; under it
 * only the buffer cache's delta lock and the interleaving-point lock,
 * both leaves. do_commit runs without ds_lock.
 */
#include "delta/delta.h"
#include "util/syncpoint.h"
#include "util/util.h"

#include <inttypes.h>
#include <stdlib.h>
#include <time.h>

/* Forced commits in a row that may free nothing before a reservation gives up. */
#define DELTA_RECLAIM_TRIES 3

struct delta_sys {
	struct buf_cache *ds_cache; /* immutable */
	struct log *ds_log;	    /* immutable; NULL: no space accounting */
	const struct delta_ops *ds_ops;
	void *ds_ctx;
	uint32_t ds_max_dirty;	/* immutable */
	uint32_t ds_max_age_ms; /* immutable */

	struct cmutex ds_lock;
	pthread_cond_t ds_cond;			 /* any change below */
	uint32_t ds_open;			 /* protected by ds_lock */
	uint64_t ds_refs;			 /* ops in ds_open; protected by ds_lock */
	uint64_t ds_joined;			 /* ops that joined ds_open; protected by ds_lock */
	bool ds_closing;			 /* transition waiting for ds_refs; ds_lock */
	uint32_t ds_committing;			 /* delta being committed, or 0; ds_lock */
	uint64_t ds_commit_charged;		 /* what it reserved; commit thread */
	uint32_t ds_done;			 /* newest delta whose commit ended; ds_lock */
	uint32_t ds_committed;			 /* newest delta on disk; ds_lock */
	uint32_t ds_want;			 /* newest delta a syncer waits for; ds_lock */
	bool ds_kick;				 /* the open delta is full; ds_lock */
	bool ds_stop;				 /* protected by ds_lock */
	int ds_err;				 /* error of the last failed commit; ds_lock */
	uint64_t ds_charged[2];			 /* reservations by delta parity; ds_lock */
	struct timespec ds_opened;		 /* when ds_open opened; ds_lock */
	uint64_t ds_commits, ds_syncs, ds_under; /* protected by ds_lock */
	uint64_t ds_freeing_ticket;		 /* next ticket, invariant (6); ds_lock */
	uint64_t ds_freeing_turn;		 /* the ticket being served; ds_lock */
	pthread_t ds_thread;
};

static _Thread_local unsigned delta_ops_held; /* operations this thread is in */

static uint64_t delta_ms_since(const struct timespec *t)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (uint64_t)(now.tv_sec - t->tv_sec) * 1000 +
	       (uint64_t)((now.tv_nsec - t->tv_nsec) / 1000000);
}

/*
 * True if the open delta must be committed now: a syncer waits for it, or
 * it has operations and is full, too old, or the system is stopping.
 */
static bool delta_due_locked(struct delta_sys *ds)
{
	if (ds->ds_want >= ds->ds_open)
		return true;
	if (!ds->ds_joined)
		return false;
	return ds->ds_kick || ds->ds_stop || delta_ms_since(&ds->ds_opened) >= ds->ds_max_age_ms;
}

/* Sleep until something changes, or until the open delta grows old. */
static void delta_wait_due_locked(struct delta_sys *ds)
{
	struct timespec until = ds->ds_opened;

	if (!ds->ds_joined) {
		SYNC_POINT("delta.thread.idle_locked");
		cmutex_wait(&ds->ds_lock, &ds->ds_cond);
		return;
	}
	until.tv_sec += ds->ds_max_age_ms / 1000;
	until.tv_nsec += (long)(ds->ds_max_age_ms % 1000) * 1000000;
	if (until.tv_nsec >= 1000000000) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000;
	}
	cmutex_timedwait(&ds->ds_lock, &ds->ds_cond, &until);
}

/* Close the open delta once its operations are done; returns it. */
static uint32_t delta_transition_locked(struct delta_sys *ds)
{
	uint32_t d = ds->ds_open;

	ds->ds_closing = true;
	while (ds->ds_refs) {
		SYNC_POINT("delta.transition.wait_locked");
		cmutex_wait(&ds->ds_lock, &ds->ds_cond);
	}
	ds->ds_open = d + 1;
	ds->ds_joined = 0;
	ds->ds_kick = false;
	ds->ds_closing = false;
	ds->ds_committing = d;
	clock_gettime(CLOCK_MONOTONIC, &ds->ds_opened);
	pthread_cond_broadcast(&ds->ds_cond);
	return d;
}

/* Settle the reservations of @d after its commit consumed @consumed. */
static void delta_settle(struct delta_sys *ds, uint32_t d, uint64_t charged, uint64_t consumed)
{
	if (!ds->ds_log)
		return; /* no space accounting */
	log_space_release(ds->ds_log, charged);
	if (consumed > charged) {
		log_warn("delta %" PRIu32 ": reserved %" PRIu64 " blocks, consumed %" PRIu64, d,
			 charged, consumed);
		cmutex_lock(&ds->ds_lock);
		ds->ds_under++;
		cmutex_unlock(&ds->ds_lock);
	}
}

/* Commit delta @d (closed, no operations left in it). */
static void delta_commit(struct delta_sys *ds, uint32_t d, uint64_t charged)
{
	uint64_t consumed = 0;
	bool again;
	int err;

	SYNC_POINT("delta.commit.begin");
	ds->ds_commit_charged = charged;
	err = ds->ds_ops->do_commit(ds->ds_ctx, d, &consumed);
	SYNC_POINT("delta.commit.end");
	if (!err)
		delta_settle(ds, d, charged, consumed);
	again = !err && ds->ds_ops->do_again && ds->ds_ops->do_again(ds->ds_ctx);
	cmutex_lock(&ds->ds_lock);
	if (err) /* the open delta carries the failed one's blocks: and its reservation */
		ds->ds_charged[(d + 1) & 1] += charged;
	ds->ds_committing = 0;
	ds->ds_done = d;
	ds->ds_commits++;
	if (err) {
		log_err("delta %" PRIu32 ": commit failed: %d", d, err);
		ds->ds_err = err;
	} else {
		ds->ds_committed = d;
		if (again && !ds->ds_stop && ds->ds_want < ds->ds_open)
			ds->ds_want = ds->ds_open; /* the commit thread goes on */
	}
	pthread_cond_broadcast(&ds->ds_cond);
	cmutex_unlock(&ds->ds_lock);
}

static void *delta_thread(void *arg)
{
	struct delta_sys *ds = arg;

	cmutex_lock(&ds->ds_lock);
	for (;;) {
		if (!delta_due_locked(ds)) {
			if (ds->ds_stop)
				break;
			delta_wait_due_locked(ds);
			continue;
		}
		cmutex_unlock(&ds->ds_lock);
		SYNC_POINT("delta.commit.start");
		cmutex_lock(&ds->ds_lock);
		uint32_t d = delta_transition_locked(ds);
		uint64_t charged = ds->ds_charged[d & 1];
		ds->ds_charged[d & 1] = 0;
		cmutex_unlock(&ds->ds_lock);
		delta_commit(ds, d, charged);
		cmutex_lock(&ds->ds_lock);
	}
	cmutex_unlock(&ds->ds_lock);
	return NULL;
}

int delta_sys_create(const struct delta_config *cfg, struct delta_sys **out)
{
	struct delta_sys *ds;
	int err;

	if (!cfg->dc_cache || !cfg->dc_ops || !cfg->dc_ops->do_commit || cfg->dc_first_delta < 1)
		return -EINVAL;
	ds = calloc(1, sizeof(*ds));
	if (!ds)
		return -ENOMEM;
	ds->ds_cache = cfg->dc_cache;
	ds->ds_log = cfg->dc_log;
	ds->ds_ops = cfg->dc_ops;
	ds->ds_ctx = cfg->dc_ctx;
	ds->ds_max_dirty = cfg->dc_max_dirty ? cfg->dc_max_dirty : 1024;
	ds->ds_max_age_ms = cfg->dc_max_age_ms ? cfg->dc_max_age_ms : 5000;
	ds->ds_open = cfg->dc_first_delta;
	ds->ds_done = ds->ds_committed = cfg->dc_first_delta - 1;
	clock_gettime(CLOCK_MONOTONIC, &ds->ds_opened);
	cmutex_init(&ds->ds_lock);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&ds->ds_cond, &ca);
	pthread_condattr_destroy(&ca);
	err = -pthread_create(&ds->ds_thread, NULL, delta_thread, ds);
	if (err) {
		cmutex_destroy(&ds->ds_lock);
		pthread_cond_destroy(&ds->ds_cond);
		free(ds);
		return err;
	}
	*out = ds;
	return 0;
}

int delta_sys_destroy(struct delta_sys *ds)
{
	int err;

	if (!ds)
		return 0;
	err = delta_sync(ds);
	cmutex_lock(&ds->ds_lock);
	ds->ds_stop = true;
	pthread_cond_broadcast(&ds->ds_cond);
	cmutex_unlock(&ds->ds_lock);
	pthread_join(ds->ds_thread, NULL);
	cmutex_destroy(&ds->ds_lock);
	pthread_cond_destroy(&ds->ds_cond);
	free(ds);
	return err;
}

static int delta_sync_as(struct delta_sys *ds, bool force);

/* Space no segment holds and nobody reserved, the kept reserve included:
 * what a forced commit must grow to count as progress (below the kept
 * reserve, sp_free stays 0 however much the cleaner frees). */
static uint64_t delta_free_space(struct delta_sys *ds)
{
	struct log_space sp;
	uint64_t used;

	log_space(ds->ds_log, &sp);
	used = sp.sp_written + sp.sp_reserved;
	return sp.sp_total > used ? sp.sp_total - used : 0;
}

/*
 * Reserve, forcing a commit (which releases the committed delta's
 * reservations) on a shortfall, and again while commits free something:
 * other threads may take what a commit released before this one retries.
 * -ENOSPC once a commit brought nothing new. Forced commits count as
 * progress only when free space reaches a new high: a cleaner that frees
 * a segment in one commit and fills one in the next must not keep a
 * reservation retrying forever.
 */
static int delta_reserve_forcing(struct delta_sys *ds, uint64_t reserve, unsigned flags)
{
	unsigned fruitless = 0; /* forced commits in a row that freed nothing new */
	uint64_t best = 0;	/* the most free space seen after a forced commit */
	int err;

	for (;;) {
		uint64_t free_before, free_after;
		uint32_t before;
		bool force;

		err = log_space_reserve(ds->ds_log, reserve, flags);
		if (err != -ENOSPC)
			return err;
		SYNC_POINT("delta.reserve.short");
		force = ds->ds_ops->do_reclaimable && fruitless < DELTA_RECLAIM_TRIES &&
			ds->ds_ops->do_reclaimable(ds->ds_ctx);
		free_before = force ? delta_free_space(ds) : 0;
		cmutex_lock(&ds->ds_lock);
		before = ds->ds_committed;
		cmutex_unlock(&ds->ds_lock);
		err = delta_sync_as(ds, force);
		if (err)
			return err;
		cmutex_lock(&ds->ds_lock);
		err = ds->ds_committed == before ? -ENOSPC : 0;
		cmutex_unlock(&ds->ds_lock);
		if (force) {
			free_after = delta_free_space(ds);
			if (free_after > MAX(free_before, best))
				fruitless = 0;
			else
				fruitless++;
			best = MAX(best, free_after);
		}
		SYNC_POINT("delta.reserve.retry");
		if (err)
			return log_space_reserve(ds->ds_log, reserve, flags);
	}
}

/* Let the next freeing reservation that fell short have its turn. */
static void delta_turn_done_locked(struct delta_sys *ds)
{
	assert(cmutex_held(&ds->ds_lock));
	ds->ds_freeing_turn++;
	pthread_cond_broadcast(&ds->ds_cond);
}

/*
 * Reserve: at once if the space is there, else by forced commits
 * (delta_reserve_forcing). A freeing reservation does that in turn with
 * the others that fell short (invariant (6)): none tries while an
 * earlier one is being served, so what a commit releases goes to the
 * one that forced it. *@turn: the reservation was granted in its turn,
 * which the caller hands on once it is charged to a delta.
 */
static int delta_reserve(struct delta_sys *ds, uint64_t reserve, unsigned flags, bool *turn)
{
	uint64_t ticket;
	bool queued;
	int err;

	if (!ds->ds_log || !reserve)
		return 0;
	if (!(flags & LOG_RES_FREEING))
		return delta_reserve_forcing(ds, reserve, flags); /* which tries at once first */
	cmutex_lock(&ds->ds_lock);
	queued = ds->ds_freeing_ticket != ds->ds_freeing_turn;
	cmutex_unlock(&ds->ds_lock);
	if (!queued) {
		err = log_space_reserve(ds->ds_log, reserve, flags);
		if (err != -ENOSPC)
			return err;
	}
	cmutex_lock(&ds->ds_lock);
	ticket = ds->ds_freeing_ticket++;
	while (ticket != ds->ds_freeing_turn) {
		SYNC_POINT("delta.reserve.queued_locked");
		cmutex_wait(&ds->ds_lock, &ds->ds_cond);
	}
	cmutex_unlock(&ds->ds_lock);
	err = delta_reserve_forcing(ds, reserve, flags);
	if (!err) {
		*turn = true;
		return 0;
	}
	cmutex_lock(&ds->ds_lock);
	delta_turn_done_locked(ds);
	cmutex_unlock(&ds->ds_lock);
	return err;
}

/*
 * True when reservations hold more than what is still free: worst cases
 * overstate what operations consume many times over, so waiting for the
 * size or age trigger would make the volume look full (statfs) and send
 * reservations into the forced-commit path. A commit settles them.
 */
static bool delta_reservations_heavy(struct delta_sys *ds)
{
	struct log_space sp;

	if (!ds->ds_log)
		return false;
	log_space(ds->ds_log, &sp);
	return sp.sp_reserved > sp.sp_free;
}

int delta_op_begin(struct delta_sys *ds, uint64_t reserve, unsigned flags, struct delta_op *op)
{
	bool heavy, turn = false;
	int err;

	assert(delta_ops_held == 0); /* invariant (5) */
	err = delta_reserve(ds, reserve, flags, &turn);
	if (err)
		return err;
	heavy = delta_reservations_heavy(ds);
	cmutex_lock(&ds->ds_lock);
	while (ds->ds_closing) {
		SYNC_POINT("delta.op.wait_locked");
		cmutex_wait(&ds->ds_lock, &ds->ds_cond);
	}
	op->dop_delta = ds->ds_open;
	op->dop_reserved = reserve;
	op->dop_flags = flags;
	ds->ds_refs++;
	if (!ds->ds_joined++) /* the commit thread sleeps untimed on an empty delta */
		pthread_cond_broadcast(&ds->ds_cond);
	ds->ds_charged[op->dop_delta & 1] += reserve;
	if (turn) /* charged: a commit of the open delta releases it (invariant (6)) */
		delta_turn_done_locked(ds);
	if (heavy && !ds->ds_kick) { /* commit soon: its reconciliation frees the excess */
		ds->ds_kick = true;
		pthread_cond_broadcast(&ds->ds_cond);
	}
	cmutex_unlock(&ds->ds_lock);
	delta_ops_held++;
	return 0;
}

void delta_op_refund(struct delta_sys *ds, struct delta_op *op, uint64_t n)
{
	n = MIN(n, op->dop_reserved);
	if (!ds->ds_log || !n)
		return;
	cmutex_lock(&ds->ds_lock);
	assert(op->dop_delta == ds->ds_open && ds->ds_charged[op->dop_delta & 1] >= n);
	ds->ds_charged[op->dop_delta & 1] -= n;
	cmutex_unlock(&ds->ds_lock);
	op->dop_reserved -= n;
	log_space_release(ds->ds_log, n);
}

void delta_op_end(struct delta_sys *ds, struct delta_op *op)
{
	bool full = buf_delta_ndirty(ds->ds_cache, op->dop_delta) >= ds->ds_max_dirty;

	cmutex_lock(&ds->ds_lock);
	assert(op->dop_delta == ds->ds_open && ds->ds_refs > 0);
	ds->ds_refs--;
	if (full)
		ds->ds_kick = true;
	if ((ds->ds_closing && !ds->ds_refs) || full)
		pthread_cond_broadcast(&ds->ds_cond);
	cmutex_unlock(&ds->ds_lock);
	delta_ops_held--;
}

int delta_sync(struct delta_sys *ds)
{
	return delta_sync_as(ds, false);
}

/* delta_sync; with @force the open delta commits even if empty. */
static int delta_sync_as(struct delta_sys *ds, bool force)
{
	uint64_t open_dirty;
	uint32_t target;
	int err = 0;

	assert(delta_ops_held == 0);
	SYNC_POINT("delta.sync.lock");
	cmutex_lock(&ds->ds_lock);
	/* under ds_lock, so no transition slips in (bc_delta_lock is a leaf) */
	open_dirty = buf_delta_ndirty(ds->ds_cache, ds->ds_open);
	ds->ds_syncs++;
	/*
	 * What ended before this call is in the open delta or older ones.
	 * The open one needs a commit if operations joined it, or it carries
	 * the buffers of a failed commit (dirty, or an error to retry).
	 */
	target = ds->ds_open - 1;
	if (ds->ds_joined || open_dirty || ds->ds_committed < ds->ds_done || force)
		target = ds->ds_open;
	if (target > ds->ds_want)
		ds->ds_want = target;
	pthread_cond_broadcast(&ds->ds_cond);
	while (ds->ds_done < target) {
		SYNC_POINT("delta.sync.wait_locked");
		cmutex_wait(&ds->ds_lock, &ds->ds_cond);
	}
	if (ds->ds_committed < target)
		err = ds->ds_err ? ds->ds_err : -EIO;
	cmutex_unlock(&ds->ds_lock);
	return err;
}

uint64_t delta_commit_charged(const struct delta_sys *ds)
{
	return ds->ds_commit_charged;
}

int delta_throttle(struct delta_sys *ds)
{
	uint32_t d;
	int err = 0;

	assert(delta_ops_held == 0);
	cmutex_lock(&ds->ds_lock);
	if (ds->ds_committing) {
		d = ds->ds_committing;
		while (ds->ds_done < d) {
			SYNC_POINT("delta.throttle.commit_locked");
			cmutex_wait(&ds->ds_lock, &ds->ds_cond);
		}
		if (ds->ds_committed < d)
			err = ds->ds_err ? ds->ds_err : -EIO;
	} else if (ds->ds_joined || buf_delta_ndirty(ds->ds_cache, ds->ds_open)) {
		d = ds->ds_open;
		if (d > ds->ds_want)
			ds->ds_want = d;
		pthread_cond_broadcast(&ds->ds_cond);
		while (ds->ds_open == d) {
			SYNC_POINT("delta.throttle.close_locked");
			cmutex_wait(&ds->ds_lock, &ds->ds_cond);
		}
	}
	cmutex_unlock(&ds->ds_lock);
	return err;
}

void delta_stats(struct delta_sys *ds, struct delta_stats *st)
{
	cmutex_lock(&ds->ds_lock);
	st->ds_open = ds->ds_open;
	st->ds_committed = ds->ds_committed;
	st->ds_commits = ds->ds_commits;
	st->ds_syncs = ds->ds_syncs;
	st->ds_underestimates = ds->ds_under;
	st->ds_committing = ds->ds_committing;
	cmutex_unlock(&ds->ds_lock);
}

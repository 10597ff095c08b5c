/*
 * delta.h - the delta pipeline (seed 001): atomic commit in deltas.
 *
 * Front-end operations join the open delta (delta_op_begin) and leave it
 * (delta_op_end). A transition closes the open delta and opens the next;
 * the back end (one commit thread) commits the closed delta once its last
 * operation has left, while the front end goes on in the next one. At
 * most one delta is committing at a time. A front-end write to a buffer
 * still dirty in the committing delta forks it (buf_modify_begin): the
 * back end writes the old copy unchanged, the front end goes on with the
 * buffer. Transitions happen on a sync, when the open delta holds too
 * many dirty blocks, or when it grows old.
 *
 * Space (seed 000): delta_op_begin reserves the operation's worst case
 * before it joins a delta, so nobody waits for space while holding a
 * buffer, a lock or a delta reference. A shortfall forces commits (which
 * reconcile reservations with what was really used, and let a cleaner
 * run) while they free space, then -ENOSPC. Freeing reservations that
 * fall short take turns, so deletions on a full volume all get through.
 *
 * What a commit writes is the business of the layer above: it registers
 * do_commit, which lays out the delta's dirty buffers through the log and
 * reports how many blocks it consumed.
 */
#ifndef CAIRN_DELTA_H
#define CAIRN_DELTA_H

#include <stdint.h>

#include "buf/buf.h"
#include "log/log.h"

struct delta_sys;

struct delta_ops {
	/*
	 * Write delta @delta durably (every buffer dirty in it, through a
	 * log builder) and settle its buffers. Called from the commit thread
	 * with no front-end operation left in @delta. On success set
	 * *consumed to the blocks written. On error the delta's buffers must
	 * be dirty again (buf_delta_requeue) so a later delta carries them.
	 */
	int (*do_commit)(void *ctx, uint32_t delta, uint64_t *consumed);
	/*
	 * Optional. Space is short: would a commit free some even with
	 * nothing to write (a segment cleaner with work to do)? Then a
	 * reservation that falls short forces one, empty or not. Any thread.
	 */
	bool (*do_reclaimable)(void *ctx);
	/*
	 * Optional. After a commit that succeeded: should the next delta
	 * commit at once, with operations or not (background work of the
	 * client's, such as cleaning, that each commit carries a step of)?
	 * Asked on the commit thread; not while the system stops.
	 */
	bool (*do_again)(void *ctx);
};

struct delta_config {
	struct buf_cache *dc_cache;
	struct log *dc_log;
	const struct delta_ops *dc_ops;
	void *dc_ctx;
	uint32_t dc_first_delta; /* the first delta to open (recovered + 1) */
	uint32_t dc_max_dirty; /* transition when the open delta dirties this many blocks; 0: 1/4 of
				  the cache */
	uint32_t dc_max_age_ms; /* transition when the open delta is this old; 0: 5000 */
};

int delta_sys_create(const struct delta_config *cfg, struct delta_sys **out);
/* Commit what is open (as delta_sync) and stop the commit thread. */
int delta_sys_destroy(struct delta_sys *ds);

/* An operation's membership in a delta. */
struct delta_op {
	uint32_t dop_delta;    /* the delta this operation is part of */
	uint64_t dop_reserved; /* blocks it reserved */
	unsigned dop_flags;
};

/*
 * Give back @n of the blocks @op reserved (at most what it holds), which
 * its delta will not need after all; @op is still in its delta.
 */
void delta_op_refund(struct delta_sys *ds, struct delta_op *op, uint64_t n);

/*
 * Reserve @reserve blocks (LOG_RES_FREEING for operations that free
 * space) and join the open delta. Must not be called while the caller
 * is inside another operation. -ENOSPC when the space is not there even
 * after a commit; the error a commit failed with if it cannot commit.
 */
int delta_op_begin(struct delta_sys *ds, uint64_t reserve, unsigned flags, struct delta_op *op);
/* Leave the delta. The reservation is settled when the delta commits. */
void delta_op_end(struct delta_sys *ds, struct delta_op *op);

/*
 * Make everything done by operations that ended before this call
 * durable. Concurrent callers are met by one commit (group commit).
 * Returns the error of a failed commit, once per caller that waited
 * for it.
 */
int delta_sync(struct delta_sys *ds);

/*
 * Make room, waiting for at most one commit: if a delta is being
 * committed, wait for its commit to end; else ask for the open delta to
 * be committed (if operations joined it or it carries blocks) and wait
 * only until it is closed. For a caller outside any operation that finds
 * too many blocks dirty. Returns the awaited commit's error.
 */
int delta_throttle(struct delta_sys *ds);

/*
 * What the operations of the delta being committed reserved (the
 * commit thread's, from do_commit): a commit that writes blocks no
 * operation asked for may count on what they reserved and did not use.
 */
uint64_t delta_commit_charged(const struct delta_sys *ds);

struct delta_stats {
	uint32_t ds_open;	    /* the open delta */
	uint32_t ds_committed;	    /* the newest committed delta */
	uint64_t ds_commits;	    /* commits done (empty deltas are not committed) */
	uint64_t ds_syncs;	    /* delta_sync calls */
	uint64_t ds_underestimates; /* commits that consumed more than reserved */
	uint32_t ds_committing;	    /* the delta being committed now; 0: none */
};
void delta_stats(struct delta_sys *ds, struct delta_stats *st);

#endif /* CAIRN_DELTA_H */

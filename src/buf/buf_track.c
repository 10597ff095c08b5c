/*
 * buf_track.c - tracked reads (seed 004).
 *
 * A read of a physical block counts itself on the block's zone (a run of
 * 2^zone_shift blocks: the log uses one zone per segment) from the moment
 * it is issued until its I/O completes. Whoever reuses a zone's space
 * (the segment cleaner, snapshot delete) first announces the reuse, then
 * waits for the zone's count to drain. Once a reuse is announced, new
 * readers of that zone do not add to the count: they wait until the reuse
 * ends and are then told (-EAGAIN) to resolve their address again, since
 * what they meant to read has moved. So a reuser waits only for reads
 * that were in flight when it arrived, and cannot be starved by a stream
 * of new ones; and a reader never reads space that is being reused.
 *
 * Unlike the sleep loop of the original, both sides sleep on condition
 * variables and are woken by the event they wait for.
 *
 * Invariants
 *   (1) tz_readers counts reads begun and not ended in the zone.
 *   (2) While tz_reusing, tz_readers only falls.
 *   (3) At most one reuser per zone at a time; others wait their turn.
 *   (4) All fields of a zone are protected by the lock of its stripe
 *       (zone % TRACK_STRIPES); waiting is on the stripe's cond.
 *
 * Lock order: a stripe lock is a leaf.
 */
#include "buf/buf_internal.h"

#include <inttypes.h>
#include <stdlib.h>

#define TRACK_STRIPES 64

struct track_zone {
	uint32_t tz_readers; /* protected by the stripe lock */
	bool tz_reusing;     /* protected by the stripe lock */
};

struct track_stripe {
	_Alignas(64) struct cmutex ts_lock;
	pthread_cond_t ts_cond;
};

struct buf_track {
	uint64_t bt_nblocks; /* immutable */
	unsigned bt_shift;   /* immutable */
	uint64_t bt_nzones;  /* immutable */
	struct track_zone *bt_zones;
	struct track_stripe bt_stripes[TRACK_STRIPES];
};

int buf_track_create(uint64_t nblocks, unsigned zone_shift, struct buf_track **out)
{
	struct buf_track *t;

	if (!nblocks || zone_shift > 40)
		return -EINVAL;
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->bt_nblocks = nblocks;
	t->bt_shift = zone_shift;
	t->bt_nzones = ((nblocks - 1) >> zone_shift) + 1;
	t->bt_zones = calloc(t->bt_nzones, sizeof(*t->bt_zones));
	if (!t->bt_zones) {
		free(t);
		return -ENOMEM;
	}
	for (unsigned i = 0; i < TRACK_STRIPES; i++) {
		cmutex_init(&t->bt_stripes[i].ts_lock);
		pthread_cond_init(&t->bt_stripes[i].ts_cond, NULL);
	}
	*out = t;
	return 0;
}

void buf_track_destroy(struct buf_track *t)
{
	if (!t)
		return;
	for (unsigned i = 0; i < TRACK_STRIPES; i++) {
		cmutex_destroy(&t->bt_stripes[i].ts_lock);
		pthread_cond_destroy(&t->bt_stripes[i].ts_cond);
	}
	free(t->bt_zones);
	free(t);
}

static struct track_stripe *track_stripe(struct buf_track *t, uint64_t zone)
{
	return &t->bt_stripes[zone % TRACK_STRIPES];
}

int buf_track_read_begin(struct buf_track *t, uint64_t pblk)
{
	uint64_t zone = pblk >> t->bt_shift;
	struct track_stripe *ts;
	struct track_zone *z;
	int err = 0;

	if (pblk >= t->bt_nblocks)
		return -EINVAL;
	ts = track_stripe(t, zone);
	z = &t->bt_zones[zone];
	SYNC_POINT("buf.track.read_begin");
	cmutex_lock(&ts->ts_lock);
	if (z->tz_reusing) {
		err = -EAGAIN;
		while (z->tz_reusing) {
			SYNC_POINT("buf.track.read_wait_locked");
			cmutex_wait(&ts->ts_lock, &ts->ts_cond);
		}
	} else {
		z->tz_readers++;
	}
	cmutex_unlock(&ts->ts_lock);
	return err;
}

/* True if @zone exists; a bad one is a caller's bug, logged, never a crash. */
static bool track_zone_ok(struct buf_track *t, uint64_t zone, const char *fn)
{
	if (zone < t->bt_nzones)
		return true;
	log_err("buf: %s: zone %" PRIu64 " past the end (%" PRIu64 " zones)", fn, zone,
		t->bt_nzones);
	assert(!"tracked-read zone out of range");
	return false;
}

void buf_track_read_end(struct buf_track *t, uint64_t pblk)
{
	uint64_t zone = pblk >> t->bt_shift;
	struct track_stripe *ts;
	struct track_zone *z;

	if (pblk >= t->bt_nblocks || !track_zone_ok(t, zone, "read_end"))
		return;
	ts = track_stripe(t, zone);
	z = &t->bt_zones[zone];
	SYNC_POINT("buf.track.read_end");
	cmutex_lock(&ts->ts_lock);
	assert(z->tz_readers > 0);
	z->tz_readers--;
	if (!z->tz_readers && z->tz_reusing)
		pthread_cond_broadcast(&ts->ts_cond);
	cmutex_unlock(&ts->ts_lock);
}

void buf_track_reuse_begin(struct buf_track *t, uint64_t zone)
{
	struct track_stripe *ts;
	struct track_zone *z;

	if (!track_zone_ok(t, zone, "reuse_begin"))
		return;
	ts = track_stripe(t, zone);
	z = &t->bt_zones[zone];
	SYNC_POINT("buf.track.reuse_begin");
	cmutex_lock(&ts->ts_lock);
	while (z->tz_reusing) { /* invariant (3) */
		SYNC_POINT("buf.track.reuse_turn_wait_locked");
		cmutex_wait(&ts->ts_lock, &ts->ts_cond);
	}
	z->tz_reusing = true;
	while (z->tz_readers) {
		SYNC_POINT("buf.track.reuse_wait_locked");
		cmutex_wait(&ts->ts_lock, &ts->ts_cond);
	}
	cmutex_unlock(&ts->ts_lock);
	SYNC_POINT("buf.track.reuse_drained");
}

void buf_track_reuse_end(struct buf_track *t, uint64_t zone)
{
	struct track_stripe *ts;
	struct track_zone *z;

	if (!track_zone_ok(t, zone, "reuse_end"))
		return;
	ts = track_stripe(t, zone);
	z = &t->bt_zones[zone];
	cmutex_lock(&ts->ts_lock);
	assert(z->tz_reusing);
	z->tz_reusing = false;
	pthread_cond_broadcast(&ts->ts_cond);
	cmutex_unlock(&ts->ts_lock);
}

uint32_t buf_track_readers(struct buf_track *t, uint64_t zone)
{
	struct track_stripe *ts;
	uint32_t n;

	if (!track_zone_ok(t, zone, "readers"))
		return 0;
	ts = track_stripe(t, zone);
	cmutex_lock(&ts->ts_lock);
	n = t->bt_zones[zone].tz_readers;
	cmutex_unlock(&ts->ts_lock);
	return n;
}

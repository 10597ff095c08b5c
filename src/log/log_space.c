/*
 * log_space.c - which segments are in use, and space reservations
 * (seed 000).
 *
 * A segment is in use from the moment the log head enters it until the
 * layer above releases it (log_seg_release): it holds no live block,
 * and recovery can no longer need it. The builder takes the next free
 * segment after the head's (log_seg_take_next wraps around). At mount
 * every segment is in use (log_seg_reset) until the layer above, which
 * alone knows where live blocks are, releases the others.
 *
 * Which segments recovery may need: every log from the one named by the
 * older checkpoint slot on (the newer slot may be torn or corrupt, and
 * recovery then rolls forward from the older). The write side records,
 * per segment, the sequence number of the last log it wrote (or that
 * recovery followed) there; a segment whose last log is at or after the
 * older slot's log, or that holds the head, is protected. A segment
 * whose logs all came before is free to reuse: a later chain never runs
 * into its stale logs (their sequence numbers and links do not match,
 * log.c (3)).
 *
 * Space, in blocks:
 *
 *   total    = nsegments * seg_blocks
 *   written  = segments in use * seg_blocks (a segment counts whole once
 *              entered: its unused tail is lost until cleaning)
 *   kept     = base + deletes, base = max(2 segments, 1% of total):
 *              only LOG_RES_FREEING reservations may use it all, so
 *              deleting works on a full volume; a cleaning run all but
 *              deletes (log_space_keep: the worst case of one deletion,
 *              set by the layer above), so the cleaner never takes what
 *              a deletion needs. But deletions may leave less than that:
 *              a deletion frees nothing while a snapshot keeps what it
 *              deletes, and its commit costs blocks, so deletions on a
 *              full volume can use the reserve up until the next one's
 *              worst case does not fit, and the cleaner would then get
 *              nothing to compact the dead blocks the volume does have.
 *              So once less than the deletions' part is left, a cleaning
 *              run may take all of it (log_space_cleaner_room): no
 *              deletion's worst case fits then, and only cleaning gives
 *              room back
 *   free     = total - written - reserved - kept, at least 0
 *
 * The front end never holds an allocated block, only a reservation, so
 * seed 000's deadlock (a writer waiting for space while holding what the
 * cleaner needs) cannot arise: log_space_reserve never waits.
 *
 * Invariants
 *   (1) l_nused is the number of bits set in l_seg_used.
 *   (2) A reservation is granted only if, with it, written + reserved
 *       stays within total - kept (within total for LOG_RES_FREEING);
 *       otherwise it is refused at once, never waited for. written grows
 *       as the log enters segments, before the commit that used the
 *       reservation releases it, so the two may briefly count the same
 *       blocks; free is clamped at 0.
 *   (3) l_reserved never underflows (release asserts it).
 *   (4) A segment is released only if it is not the head's and its last
 *       log came before the log the older checkpoint slot names; never
 *       while no checkpoint is known.
 *
 * Lock order: l_space_lock protects l_seg_used, l_nused and l_reserved;
 * it is a leaf, held for a few instructions and never across I/O.
 * l_seg_seq and the checkpoint fields are the write side's (the
 * committing thread's, log.c): log_seg_release runs there too.
 */
#include "log/log_internal.h"

#include <stdlib.h>
#include <string.h>

#define LOG_KEPT_MIN_SEGMENTS 2u
#define LOG_KEPT_PERCENT      1u

/* ---- segment bitmap ------------------------------------------------------ */

int log_seg_init(struct log *l)
{
	size_t words = (size_t)((l->l_geo.lg_nsegments + 63) / 64);
	int err;

	l->l_seg_used = calloc(words, sizeof(*l->l_seg_used));
	l->l_seg_seq = calloc(l->l_geo.lg_nsegments, sizeof(*l->l_seg_seq));
	l->l_cp_log_seq[0] = l->l_cp_log_seq[1] = UINT64_MAX;
	err = l->l_seg_used && l->l_seg_seq ? cmutex_init(&l->l_space_lock) : -ENOMEM;
	if (err) {
		free(l->l_seg_used);
		free(l->l_seg_seq);
		l->l_seg_used = NULL;
		l->l_seg_seq = NULL;
	}
	return err;
}

void log_seg_destroy(struct log *l)
{
	cmutex_destroy(&l->l_space_lock);
	free(l->l_seg_used);
	free(l->l_seg_seq);
	l->l_seg_used = NULL;
	l->l_seg_seq = NULL;
}

static bool log_seg_used_locked(struct log *l, uint64_t seg)
{
	assert(cmutex_held(&l->l_space_lock));
	return l->l_seg_used[seg / 64] & (1ull << (seg % 64));
}

static void log_seg_take_locked(struct log *l, uint64_t seg)
{
	assert(cmutex_held(&l->l_space_lock));
	assert(seg < l->l_geo.lg_nsegments);
	if (log_seg_used_locked(l, seg))
		return;
	l->l_seg_used[seg / 64] |= 1ull << (seg % 64);
	l->l_nused++;
}

void log_seg_take(struct log *l, uint64_t seg)
{
	cmutex_lock(&l->l_space_lock);
	log_seg_take_locked(l, seg);
	cmutex_unlock(&l->l_space_lock);
}

int log_seg_take_next(struct log *l, uint64_t cur, uint64_t *seg)
{
	uint64_t n = l->l_geo.lg_nsegments;
	int err = -ENOSPC;

	cmutex_lock(&l->l_space_lock);
	for (uint64_t i = 1; i < n; i++) {
		uint64_t s = (cur + i) % n;

		if (!log_seg_used_locked(l, s)) {
			log_seg_take_locked(l, s);
			*seg = s;
			err = 0;
			break;
		}
	}
	cmutex_unlock(&l->l_space_lock);
	return err;
}

void log_seg_reset(struct log *l)
{
	size_t words = (size_t)((l->l_geo.lg_nsegments + 63) / 64);

	cmutex_lock(&l->l_space_lock);
	memset(l->l_seg_used, 0, words * sizeof(*l->l_seg_used));
	l->l_nused = 0;
	for (uint64_t s = 0; s < l->l_geo.lg_nsegments; s++)
		log_seg_take_locked(l, s);
	cmutex_unlock(&l->l_space_lock);
	memset(l->l_seg_seq, 0, l->l_geo.lg_nsegments * sizeof(*l->l_seg_seq));
}

void log_seg_wrote(struct log *l, uint64_t blk, uint64_t seq)
{
	uint64_t seg = log_seg_of(l, blk);

	if (seq > l->l_seg_seq[seg])
		l->l_seg_seq[seg] = seq;
}

bool log_seg_needed(struct log *l, uint64_t seg)
{
	uint64_t keep = MIN(l->l_cp_log_seq[0], l->l_cp_log_seq[1]);

	return keep == UINT64_MAX || l->l_seg_seq[seg] >= keep ||
	       (l->l_writable && seg == log_seg_of(l, l->l_head_blk));
}

int log_seg_release(struct log *l, uint64_t seg)
{
	int err = 0;

	if (seg >= l->l_geo.lg_nsegments)
		return -EINVAL;
	if (log_seg_needed(l, seg))
		return -EBUSY;
	cmutex_lock(&l->l_space_lock);
	if (log_seg_used_locked(l, seg)) {
		l->l_seg_used[seg / 64] &= ~(1ull << (seg % 64));
		l->l_nused--;
	}
	cmutex_unlock(&l->l_space_lock);
	return err;
}

bool log_seg_in_use(struct log *l, uint64_t seg)
{
	bool used;

	if (seg >= l->l_geo.lg_nsegments)
		return false;
	cmutex_lock(&l->l_space_lock);
	used = log_seg_used_locked(l, seg);
	cmutex_unlock(&l->l_space_lock);
	return used;
}

/* ---- space accounting ---------------------------------------------------- */

static uint64_t log_space_total(const struct log *l)
{
	return l->l_geo.lg_nsegments * l->l_geo.lg_seg_blocks;
}

static uint64_t log_space_kept(const struct log *l)
{
	uint64_t total = log_space_total(l);

	return MAX((uint64_t)LOG_KEPT_MIN_SEGMENTS * l->l_geo.lg_seg_blocks,
		   total * LOG_KEPT_PERCENT / 100) +
	       l->l_kept_deletes;
}

/* Blocks a reservation of class @flags can still get. */
static uint64_t log_space_avail_locked(struct log *l, unsigned flags)
{
	uint64_t total = log_space_total(l), kept = log_space_kept(l);
	uint64_t used = l->l_nused * l->l_geo.lg_seg_blocks + l->l_reserved;
	uint64_t avail;

	assert(cmutex_held(&l->l_space_lock));
	avail = used < total ? total - used : 0;
	if (flags & LOG_RES_FREEING)
		return avail;
	return avail > kept ? avail - kept : 0;
}

uint64_t log_space_cleaner_room(struct log *l)
{
	uint64_t deletes, avail;

	cmutex_lock(&l->l_space_lock);
	deletes = l->l_kept_deletes;
	avail = log_space_avail_locked(l, LOG_RES_FREEING);
	cmutex_unlock(&l->l_space_lock);
	return avail >= deletes ? avail - deletes : avail;
}

void log_space_keep(struct log *l, uint64_t nblocks)
{
	cmutex_lock(&l->l_space_lock);
	l->l_kept_deletes = nblocks;
	cmutex_unlock(&l->l_space_lock);
}

int log_space_reserve(struct log *l, uint64_t nblocks, unsigned flags)
{
	int err = 0;

	if (flags & ~LOG_RES_FREEING)
		return -EINVAL;
	cmutex_lock(&l->l_space_lock);
	if (nblocks > log_space_avail_locked(l, flags))
		err = -ENOSPC;
	else
		l->l_reserved += nblocks;
	cmutex_unlock(&l->l_space_lock);
	return err;
}

void log_space_release(struct log *l, uint64_t nblocks)
{
	cmutex_lock(&l->l_space_lock);
	assert(nblocks <= l->l_reserved);
	l->l_reserved -= MIN(nblocks, l->l_reserved);
	cmutex_unlock(&l->l_space_lock);
}

void log_space(struct log *l, struct log_space *sp)
{
	uint64_t head;

	cmutex_lock(&l->l_space_lock);
	sp->sp_total = log_space_total(l);
	sp->sp_written = l->l_nused * l->l_geo.lg_seg_blocks;
	sp->sp_reserved = l->l_reserved;
	sp->sp_kept = log_space_kept(l);
	head = l->l_head_blk;
	sp->sp_head_room = log_seg_end_of(l, head) - head;
	sp->sp_head_seg = log_seg_of(l, head);
	sp->sp_free = log_space_avail_locked(l, 0);
	cmutex_unlock(&l->l_space_lock);
}

/*
 * log_internal.h - what the files of the segment log share (private).
 *
 * The design, its invariants and its lock order are at the top of log.c.
 */
#ifndef CAIRN_LOG_INTERNAL_H
#define CAIRN_LOG_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "log/format.h"
#include "log/log.h"
#include "util/util.h"

/* A state recovery can reach: a super root and the log holding it. */
struct log_durable {
	bool du_valid;
	uint64_t du_sr_blk;
	uint64_t du_log_seq;
	uint64_t du_log_blk;
	uint64_t du_delta;
	uint64_t du_nonce; /* hd_nonce of the log holding it */
};

struct log {
	/* Immutable while open. */
	struct bdev *l_bdev;
	struct log_geometry l_geo;
	uint64_t l_seg_end; /* first block after the last segment */

	/*
	 * The write side. Owned by the committing thread: changed only by
	 * log_open, log_recover, the one builder and log_checkpoint, which
	 * the layer above never runs concurrently (l_building catches a
	 * second builder).
	 */
	unsigned char *l_segbuf;      /* one segment: the log being laid out, or
					 the log being verified by recovery */
	atomic_bool l_building;	      /* a builder exists */
	bool l_writable;	      /* the head is known (fresh or recovered) */
	_Atomic uint64_t l_head_blk;  /* where the next log's header goes */
	uint64_t l_head_seq;	      /* the next log's sequence number */
	uint64_t l_head_prev;	      /* hd_sum_csum of the log before it */
	uint64_t l_head_prev_nonce;   /* hd_nonce of the log before it (0: none) */
	uint64_t l_nonce;	      /* this mount's, in every log it writes;
					 drawn whenever the head is placed */
	bool l_head_skip;	      /* after an I/O error: next log in a fresh segment */
	bool l_unanchored;	      /* no checkpoint reaches the head: the next
					 finish writes one */
	struct log_durable l_durable; /* newest state a finish made durable */
	uint64_t l_cp_seq;	      /* cp_seq of the slot written or recovered last */
	uint64_t l_floor;	      /* what the next slot carries (log_set_floor) */
	uint64_t l_cp_log_seq[2];     /* the log each slot names (by cp_seq % 2);
					 UINT64_MAX: none known */

	/* Space and segment use. */
	struct cmutex l_space_lock;
	uint64_t *l_seg_used;	 /* bitmap of segments in use; protected by l_space_lock */
	uint64_t l_nused;	 /* bits set in l_seg_used; protected by l_space_lock */
	uint64_t l_reserved;	 /* blocks reserved; protected by l_space_lock */
	uint64_t l_kept_deletes; /* of the kept reserve, for deletions only; l_space_lock */
	/* per segment, the sequence number of the last log known to be
	 * written there (0: none since the mount); the write side's */
	uint64_t *l_seg_seq;
};

/* ---- log.c ----------------------------------------------------------- */

/* Draw a new mount nonce (random, never 0) into *nonce; -errno if none. */
int log_nonce_draw(uint64_t *nonce);

/* ---- log_super.c ----------------------------------------------------- */

/* Read a valid superblock of @d (A, else B) into @sb, in host order.
 * -EUCLEAN if neither copy is valid (logged unless @quiet). */
int log_super_read(struct bdev *d, bool quiet, struct log_super_disk *sb);

/* ---- log_cp.c -------------------------------------------------------- */

/* The block of the slot holding @cp_seq. */
uint64_t log_cp_slot_blk(uint64_t cp_seq);
/* Read the slot at @blk: 0 and @cp (host order) if valid, -ENODATA if
 * all zero (never written), -EUCLEAN if anything else (not logged: the
 * caller knows whether it matters), or the read's error. */
int log_cp_read(struct log *l, uint64_t blk, struct log_cp_disk *cp);
/* Write @du in the slot after the current one and flush. */
int log_cp_write(struct log *l, const struct log_durable *du);

/* ---- log_space.c ----------------------------------------------------- */

int log_seg_init(struct log *l);
void log_seg_destroy(struct log *l);
/*
 * Every segment in use, none known written since the mount (recovery; no
 * builder): the layer above knows which hold live blocks and releases
 * the others (log_seg_release).
 */
void log_seg_reset(struct log *l);
/* The write side wrote log @seq into the segment of @blk. */
void log_seg_wrote(struct log *l, uint64_t blk, uint64_t seq);
/* Mark @seg in use if it is not. */
void log_seg_take(struct log *l, uint64_t seg);
/* Take the lowest free segment after @cur (wrapping); -ENOSPC if none. */
int log_seg_take_next(struct log *l, uint64_t cur, uint64_t *seg);

static inline uint64_t log_seg_of(const struct log *l, uint64_t blk)
{
	return (blk - l->l_geo.lg_seg_start) / l->l_geo.lg_seg_blocks;
}

static inline uint64_t log_seg_first(const struct log *l, uint64_t seg)
{
	return l->l_geo.lg_seg_start + seg * l->l_geo.lg_seg_blocks;
}

/* First block after the segment holding @blk. */
static inline uint64_t log_seg_end_of(const struct log *l, uint64_t blk)
{
	return log_seg_first(l, log_seg_of(l, blk) + 1);
}

/* Is @blk inside some segment? */
static inline bool log_blk_in_segments(const struct log *l, uint64_t blk)
{
	return blk >= l->l_geo.lg_seg_start && blk < l->l_seg_end;
}

#endif /* CAIRN_LOG_INTERNAL_H */

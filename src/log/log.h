/*
 * log.h - the segment log: cairn's on-disk format and the only writer of
 * it (seed 000). See docs/FORMAT.md for the bytes, log.c for the design.
 *
 * The device is split into a few fixed blocks (two superblocks, two
 * checkpoint slots) and fixed-size segments. Everything else is written
 * as logs (partial segments) appended in segment order: a header block,
 * summary blocks naming each payload block's owner, index and delta, and
 * the payload. A delta's last log ends with a super root block (the roots
 * of every metadata file, opaque to this layer). Logs are chained: each
 * names the block of the next; sequence numbers rise by one.
 *
 * Addresses are assigned as the log is laid out (delayed allocation):
 * log_build_add() says where a block will be written when it is added.
 * The front end never holds an allocated block; it holds a reservation
 * (log_space_reserve), so seed 000's deadlock cannot arise.
 *
 * All functions return 0 or a negative errno; -EUCLEAN means corrupt
 * on-disk data and is logged with the block it concerns.
 */
#ifndef CAIRN_LOG_H
#define CAIRN_LOG_H

#include <stdbool.h>
#include <stdint.h>

#include "bdev/bdev.h"

struct log;
struct log_builder;

/* The geometry read from the superblock; immutable while open. */
struct log_geometry {
	uint32_t lg_block_size; /* bytes per block */
	uint32_t lg_seg_blocks; /* blocks per segment */
	uint64_t lg_nblocks;	/* blocks on the device used by the volume */
	uint64_t lg_seg_start;	/* first block of segment 0 */
	uint64_t lg_nsegments;	/* whole segments */
	uint8_t lg_uuid[16];
};

/* ---- creating and opening ------------------------------------------- */

struct log_format_opts {
	uint32_t lfo_block_size; /* 0: 4096 */
	uint32_t lfo_seg_blocks; /* 0: default segment size (see FORMAT.md) */
	const char *lfo_label;	 /* NULL: none; at most 63 bytes */
	const uint8_t *lfo_uuid; /* NULL: random */
};

/*
 * Write an empty log format on @d: both superblocks and both checkpoint
 * slots zeroed (no state yet). The layer above then writes its first
 * log with a super root and a checkpoint. -EINVAL if the device is too
 * small (fewer than 4 segments) or the options are bad.
 */
int log_format(struct bdev *d, const struct log_format_opts *o);
/* True if @d holds a cairn superblock (for mkfs's overwrite check). */
bool log_probe(struct bdev *d);
/*
 * Open the log on @d: read and check a superblock (A, else B; -EUCLEAN
 * if neither is valid). A freshly formatted volume (both checkpoint
 * slots blank) can be written at once; any other must be recovered
 * (log_recover) before log_build_begin accepts it.
 */
int log_open(struct bdev *d, struct log **out);
void log_close(struct log *l);
const struct log_geometry *log_geometry(const struct log *l);
struct bdev *log_bdev(const struct log *l);

/* ---- recovery -------------------------------------------------------- */

/* The newest valid state found on disk. */
struct log_state {
	uint64_t ls_delta;    /* delta of the newest super root */
	uint64_t ls_sr_blk;   /* its block (read it with bdev_read) */
	uint64_t ls_log_seq;  /* sequence number of the log holding it */
	uint64_t ls_next_blk; /* where the next log is written */
	uint64_t ls_next_seq; /* the next log's sequence number */
	uint64_t ls_rolled;   /* logs rolled forward past the checkpoint's
				 log to reach the state's log */
	uint64_t ls_cp_seq;   /* sequence number of the checkpoint used */
	uint64_t ls_floor;    /* the floor it carries (log_set_floor) */
};

/*
 * Find the newest valid state: take the newest checkpoint slot whose
 * checksum is right and whose log checks out, then follow the chain of
 * logs after it while each is complete (header, summary and payload
 * checksums right, sequence number the next one, naming the previous
 * log by its mount nonce and summary checksum); the newest super root
 * met is the state. Stops at the first invalid log and trusts no byte
 * no checksum covers. Also readies the log for writing right after that
 * state's log, as a new mount with a new nonce (logs of an unfinished
 * delta after it are overwritten, and what the last mount left further
 * on can never be linked to). -EUCLEAN if no valid state exists (no
 * valid slot, or its log is bad); -EBUSY while a builder exists; the
 * error if no random nonce can be drawn.
 */
int log_recover(struct log *l, struct log_state *st);

/* ---- writing: one builder per committing delta ----------------------- */

/* Summary entry flags. */
#define LOG_ENTRY_SUPER_ROOT 0x1 /* the delta's super root; last entry */
#define LOG_ENTRY_META	     0x2 /* a metadata block (tree node, table) */

/*
 * Begin laying out delta @delta after the current head. Blocks are added
 * in the order they should land; a log closes when its segment is full
 * and the next continues in the next free segment. -EBUSY if a builder
 * exists (there is one at a time), -EINVAL if the log was neither freshly
 * formatted nor recovered.
 */
int log_build_begin(struct log *l, uint64_t delta, struct log_builder **out);
/*
 * Add one block: its data is copied at once (the caller may reuse or
 * change its memory on return), and *pblk says where it will be written.
 * May write out a full segment (no flush). -ENOSPC if the volume has no
 * free segment left (a reservation failed to cover the delta).
 */
int log_build_add(struct log_builder *lb, uint64_t owner, uint64_t index, uint32_t flags,
		  const void *data, uint64_t *pblk);
/* log_build_add with the client's @tag in the block's summary entry
 * (log_seg_scan gives it back; log_build_add's is 0). */
int log_build_add_tagged(struct log_builder *lb, uint64_t owner, uint64_t index, uint64_t tag,
			 uint32_t flags, const void *data, uint64_t *pblk);
/* Blocks added so far, including log headers and summaries. */
uint64_t log_build_blocks(const struct log_builder *lb);
/*
 * Write what remains (the last log ends with the super root, which must
 * have been added last, with LOG_ENTRY_SUPER_ROOT), then flush: on return
 * 0 the delta is durable and recovery finds it. If no checkpoint reaches
 * it through the chain (the volume's first delta, or the first after an
 * I/O error) a checkpoint is written and flushed first. Always frees the
 * builder. -EINVAL if the super root is missing, -ENOSPC if no segment
 * is left for the log after it, or the I/O error. On error nothing of
 * the delta may be trusted; the head moves past what was written.
 * Interleaving points: "log.build.write" before each log is written,
 * "log.build.flush" before the flush.
 */
int log_build_finish(struct log_builder *lb);
/* Abandon a delta that will not be finished; frees the builder. */
void log_build_abort(struct log_builder *lb);

/*
 * Write the checkpoint slot after the current one, naming the newest
 * durable super root (written by the last successful log_build_finish,
 * or recovered), then flush. Cheap and optional: recovery rolls forward
 * from an older slot, but a newer one shortens that and lets old
 * segments be reused. A failed attempt is retried in the same slot.
 * -EINVAL if there is no durable state yet. Interleaving points:
 * "log.cp.write", "log.cp.flush".
 */
int log_checkpoint(struct log *l);
/*
 * The floor every later checkpoint slot carries: a delta (at most
 * 2^32 - 1) the client says its states older than may be gone; recovery
 * returns the one of the slot it used (ls_floor). Lets the client make
 * such a claim durable without writing a segment's block. Same thread
 * as log_checkpoint.
 */
void log_set_floor(struct log *l, uint64_t floor);

/* ---- space ----------------------------------------------------------- */

/*
 * Reservation class: freeing operations (and the cleaner, within
 * log_space_cleaner_room) may dip into a kept reserve.
 */
#define LOG_RES_FREEING 0x1

struct log_space {
	uint64_t sp_total;     /* blocks in all segments */
	uint64_t sp_written;   /* blocks the log has written (or skipped) */
	uint64_t sp_reserved;  /* blocks reserved and not yet consumed */
	uint64_t sp_head_room; /* blocks of the head's segment not written yet */
	uint64_t sp_head_seg;  /* that segment */
	uint64_t sp_kept;      /* the reserve only freeing operations may use */
	uint64_t sp_free;      /* what a normal reservation can still get */
};

/*
 * Keep @nblocks of the kept reserve for LOG_RES_FREEING reservations
 * alone (a deletion's worst case, so that one can always run): the kept
 * reserve grows by it. The last call wins. Any thread.
 */
void log_space_keep(struct log *l, uint64_t nblocks);
/*
 * Reserve @nblocks for an operation about to dirty blocks, under one
 * lock. -ENOSPC if they are not available now (the caller commits, which
 * reconciles reservations, and retries once). Never waits.
 */
int log_space_reserve(struct log *l, uint64_t nblocks, unsigned flags);
/*
 * The most a cleaning run that starts now may reserve in all (its
 * reservations are LOG_RES_FREEING ones; the run keeps count): all of
 * the kept reserve but the part kept for deletions (log_space_keep), or
 * all that is left once that is less than the deletions' part
 * (log_space.c). Any thread.
 */
uint64_t log_space_cleaner_room(struct log *l);
/* Give back @nblocks of reservation (after the commit that used them). */
void log_space_release(struct log *l, uint64_t nblocks);
void log_space(struct log *l, struct log_space *sp);

/*
 * Segment @seg holds no live block: free it for the builder to take
 * again. -EBUSY (still in use) if recovery could need its logs: it holds
 * the head, or a log at or after the one the older checkpoint slot names,
 * or no checkpoint was written since the mount yet. The caller must have
 * drained the segment's tracked reads. Committing thread only (log.c).
 */
int log_seg_release(struct log *l, uint64_t seg);
/*
 * Call @fn for every payload block of every complete log (checksums
 * verified) lying in segment @seg, from its first block on, until a
 * block that does not begin one: its summary's owner, index and flags
 * and its address. Logs left by an earlier use of the segment may be
 * among them: the caller checks that a block is still named before
 * trusting it. A positive return from @fn stops the scan (0 returned);
 * a negative one is returned. Any thread (its own buffer).
 */
typedef int (*log_scan_fn)(void *arg, uint64_t owner, uint64_t index, uint64_t tag, uint32_t flags,
			   uint64_t blk);
int log_seg_scan(struct log *l, uint64_t seg, log_scan_fn fn, void *arg);
/* Would log_seg_release refuse @seg now (committing thread only)? */
bool log_seg_needed(struct log *l, uint64_t seg);
/* Is segment @seg in use (false past the last)? */
bool log_seg_in_use(struct log *l, uint64_t seg);

#endif /* CAIRN_LOG_H */

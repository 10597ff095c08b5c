/*
 * log.c - the segment log: opening and closing a volume's log (seed 000).
 *
 * The log is the only writer of cairn's on-disk format (docs/FORMAT.md).
 * The device holds two superblocks (first and last block), two checkpoint
 * slots (blocks 1 and 2) and fixed-size segments. Everything else is
 * written as logs (partial segments): a header, summary blocks saying
 * whose each payload block is, then the payload. A delta is one or more
 * logs; its last log ends with the super root. Files:
 *
 *   log.c          open, close, the design (this comment)
 *   log_super.c    format, probe, superblocks
 *   log_build.c    laying out and writing a delta's logs
 *   log_recover.c  finding the newest valid state after a crash; scanning
 *                  a segment's logs (log_seg_scan, for the cleaner)
 *   log_cp.c       checkpoint slots
 *   log_space.c    segment use and space reservations
 *
 * Commit order (log_build_finish, then log_checkpoint):
 *
 *   logs written as segments fill (no flush)
 *     -> last log written -> flush: the delta is durable
 *       -> [head unanchored: checkpoint slot written -> flush]
 *         -> finish returns 0
 *   log_checkpoint: next slot written -> flush.
 *
 * The write head:
 *
 *   log_open, slots blank ----------------> writable, unanchored
 *   log_open, slots written --> closed --log_recover(0)--> writable
 *   writable: log_build_begin -> log_build_add* -> log_build_finish
 *             (or log_build_abort); an I/O error skips the head to a
 *             fresh segment and unanchors it.
 *
 * Invariants
 *   (1) Nothing is rewritten in place but the checkpoint slots (one at a
 *       time, alternating) and, by log_format only, the superblocks.
 *   (2) A checkpoint slot names only a log that a flush has made durable,
 *       and is flushed before log_checkpoint returns 0.
 *   (3) Logs form a chain: each names the next log's header block
 *       (hd_next_blk) and the previous log's mount nonce and summary
 *       checksum (hd_prev_nonce, hd_prev_sum); sequence numbers rise by
 *       one. Recovery follows a log only if it is complete and the links
 *       and the sequence match, so it never follows a stale log, older
 *       or from an unfinished delta whose place was reused after a
 *       crash: see (10).
 *   (4) A log never crosses a segment boundary. A log's hd_next_blk is
 *       either right after it, with at least LOG_MIN_LOG_BLOCKS left in
 *       the segment, or the first block of another segment.
 *   (5) A payload block's address is final when log_build_add returns:
 *       a log's summary area is sized for its capacity when it opens.
 *   (6) log_build_finish returns 0 only after a flush, and only if the
 *       delta's super root is reachable from a durable checkpoint
 *       through the chain. When it would not be (fresh volume, or the
 *       chain broken by an I/O error), finish writes a checkpoint first.
 *   (7) After a failed write or flush the head moves to a fresh segment
 *       and the failed sequence numbers are never reused: no possibly
 *       torn place is written again by the chain that follows.
 *   (8) The head's segment is in use; a segment is taken (and counted
 *       as written, whole) before anything is written into it.
 *   (9) Recovery trusts no field before its checksum is verified and
 *       checks every block address read from disk against the geometry
 *       before using it; corrupt input yields -EUCLEAN, never a crash.
 *  (10) Every log carries its mount's nonce (hd_nonce, l_nonce): random,
 *       nonzero, drawn anew whenever the head is placed (log_open of a
 *       fresh volume, log_recover), covered by hd_sum_csum. After a
 *       crash the next mount writes again where unflushed logs of the
 *       last one may lie, with the same sequence numbers, and may lay
 *       out the same header and summary (same delta, owners, indexes:
 *       hd_sum_csum does not cover the payload). Its nonce differs, so
 *       neither link of a log the earlier mount left further on names
 *       the new log, and the chain ends there instead of running into
 *       a state that never existed. A nonce changes only right after a
 *       super root (the head is placed after the recovered state).
 *       A random nonce needs no write: a counter would have to be made
 *       durable before a mount's first log, since a mount that crashed
 *       before anything of it was durable leaves no trace of the value
 *       it used, and the next would use it again.
 *
 * Concurrency and lock order: the write side (l_head_*, l_durable,
 * l_cp_seq, l_segbuf) belongs to the committing thread: log_recover, the
 * one builder and log_checkpoint run there, one at a time (the delta
 * layer guarantees it; l_building refuses a second builder). The
 * segment bitmap and the space counters are protected by l_space_lock,
 * a leaf held only around counter updates, never across I/O, so
 * log_space_* may run on any thread while a builder writes.
 */
#include "log/log_internal.h"

#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "util/util.h"

int log_nonce_draw(uint64_t *nonce)
{
	uint64_t n;

	if (getrandom(&n, sizeof(n), 0) != (ssize_t)sizeof(n))
		return errno ? -errno : -EIO;
	*nonce = n ? n : 1; /* 0 means "no previous log" in hd_prev_nonce */
	return 0;
}

static int log_geometry_from_super(struct log *l, const struct log_super_disk *sb)
{
	struct log_geometry *g = &l->l_geo;

	g->lg_block_size = sb->sd_block_size;
	g->lg_seg_blocks = sb->sd_seg_blocks;
	g->lg_nblocks = sb->sd_nblocks;
	g->lg_seg_start = sb->sd_seg_start;
	g->lg_nsegments = sb->sd_nsegments;
	memcpy(g->lg_uuid, sb->sd_uuid, sizeof(g->lg_uuid));
	l->l_seg_end = g->lg_seg_start + g->lg_nsegments * g->lg_seg_blocks;
	l->l_segbuf = malloc((size_t)g->lg_seg_blocks * g->lg_block_size);
	return l->l_segbuf ? 0 : -ENOMEM;
}

/*
 * A freshly formatted volume has both checkpoint slots blank: nothing
 * was ever written, so the head is the start of segment 0 and the first
 * finish must write a checkpoint. Otherwise log_recover finds the head.
 */
static int log_head_init(struct log *l)
{
	struct log_cp_disk cp;
	int a, b, err;

	a = log_cp_read(l, LOG_CP_A_BLK, &cp);
	b = log_cp_read(l, LOG_CP_B_BLK, &cp);
	if (a < 0 && a != -ENODATA && a != -EUCLEAN)
		return a;
	if (b < 0 && b != -ENODATA && b != -EUCLEAN)
		return b;
	if (a != -ENODATA || b != -ENODATA)
		return 0;
	err = log_nonce_draw(&l->l_nonce);
	if (err)
		return err;
	l->l_writable = true;
	l->l_unanchored = true;
	l->l_head_blk = l->l_geo.lg_seg_start;
	l->l_head_seq = 1;
	l->l_head_prev = 0;
	l->l_head_prev_nonce = 0;
	log_seg_take(l, 0);
	return 0;
}

int log_open(struct bdev *d, struct log **out)
{
	struct log_super_disk sb;
	struct log *l;
	int err;

	err = log_super_read(d, false, &sb);
	if (err)
		return err;
	l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	l->l_bdev = d;
	atomic_init(&l->l_building, false);
	err = log_geometry_from_super(l, &sb);
	if (err)
		goto out_free;
	err = log_seg_init(l);
	if (err)
		goto out_free;
	err = log_head_init(l);
	if (err)
		goto out_seg;
	*out = l;
	return 0;
out_seg:
	log_seg_destroy(l);
out_free:
	free(l->l_segbuf);
	free(l);
	return err;
}

void log_close(struct log *l)
{
	if (!l)
		return;
	assert(!atomic_load(&l->l_building));
	log_seg_destroy(l);
	free(l->l_segbuf);
	free(l);
}

const struct log_geometry *log_geometry(const struct log *l)
{
	return &l->l_geo;
}

struct bdev *log_bdev(const struct log *l)
{
	return l->l_bdev;
}

/*
 * log_build.c - laying out a delta as logs, and writing them.
 *
 * A builder lays out one delta at the write head. Blocks are copied into
 * the log buffer (l_segbuf, one segment's worth) as they are added; a
 * log is written with one bdev_write when its segment has no room for
 * the next block, and the delta's last log, ending with the super root,
 * by log_build_finish, which then flushes. After each full log the
 * builder asks the device to start writing it out (bdev_start_writeback)
 * and to flush early (bdev_start_flush), so the disk works while the
 * next log is built and the finish's flush waits for the last logs only.
 * Neither makes anything durable that recovery would follow: only the
 * last log names the super root, and it is written after them.
 *
 * A log opens with all the room left in its segment. Its capacity (the
 * most payload blocks that fit with their summary) fixes the summary
 * size, and so every payload block's address, when the log opens:
 *
 *   head: | header | summary x lb_sum | payload 0 .. lb_cap-1 |
 *   payload i lands at lb_blk + 1 + lb_sum + i, as log_build_add says.
 *
 * A log that closes early keeps its full summary area (unused summary
 * blocks are zero; hd_nentries counts the entries).
 *
 *   begin --add--> log open --add (no room)--> written, next segment,
 *                      |                        log open --> ...
 *                      +--finish--> last log written --> flush [--> checkpoint]
 *   Any write or flush error is sticky: the builder refuses further
 *   work, and the head skips to a fresh segment (log.c (7)).
 *
 * Invariants
 *   (1) lb_n <= lb_cap, and 1 + lb_sum + lb_cap fits in the segment.
 *   (2) The super root, once added, is the builder's last block.
 *   (3) Every log written names its successor (hd_next_blk), whose
 *       segment is taken before the log is written, and its predecessor
 *       (hd_prev_nonce = l_head_prev_nonce, hd_prev_sum = l_head_prev),
 *       and carries the mount's nonce (hd_nonce = l_nonce).
 *   (4) l_durable changes only after the flush (and, if the head was
 *       unanchored, the checkpoint) of a finish succeeded.
 *
 * Runs on the committing thread (log.c); only the segment bitmap, under
 * l_space_lock, is shared with other threads.
 */
#include "log/log_internal.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "util/syncpoint.h"

struct log_builder {
	struct log *lb_log;
	uint64_t lb_delta;
	int lb_err;	    /* the first write or flush error; sticky */
	bool lb_open;	    /* a log is being laid out in l_segbuf */
	bool lb_sr;	    /* the super root was added (it is the last block) */
	uint64_t lb_blk;    /* the open log's header block */
	uint64_t lb_seq;    /* its sequence number */
	uint32_t lb_sum;    /* its summary blocks, sized for lb_cap */
	uint32_t lb_cap;    /* payload blocks it can hold */
	uint32_t lb_n;	    /* payload blocks it holds */
	uint64_t lb_blocks; /* blocks of the logs already written */
};

/*
 * The most payload blocks a log of at most @left blocks can hold, and
 * in *nsum the summary blocks they need. 0 if @left < LOG_MIN_LOG_BLOCKS.
 */
static uint32_t log_build_capacity(uint32_t bs, uint64_t left, uint32_t *nsum)
{
	uint64_t per = bs / LOG_ENTRY_SIZE, best = 0, best_sum = 0;

	for (uint64_t s = 1; s + 1 < left; s++) {
		uint64_t p = MIN(s * per, left - 1 - s);

		if (p > best) {
			best = p;
			best_sum = s;
		}
		if (s * per >= left - 1 - s)
			break;
	}
	*nsum = (uint32_t)best_sum;
	return (uint32_t)best;
}

static size_t log_build_bytes(const struct log_builder *lb, uint64_t blocks)
{
	return (size_t)blocks * lb->lb_log->l_geo.lg_block_size;
}

/* ---- opening a log ------------------------------------------------------- */

/* After an I/O error: move the head to the start of a fresh segment. */
static int log_build_skip(struct log *l)
{
	uint64_t seg;
	int err;

	err = log_seg_take_next(l, log_seg_of(l, l->l_head_blk), &seg);
	if (err)
		return err;
	l->l_head_blk = log_seg_first(l, seg);
	l->l_head_skip = false;
	return 0;
}

/* Open a log at the head with all the room its segment has left. */
static int log_build_open(struct log_builder *lb)
{
	struct log *l = lb->lb_log;
	uint64_t left;
	int err;

	if (l->l_head_skip) {
		err = log_build_skip(l);
		if (err)
			return err;
	}
	left = log_seg_end_of(l, l->l_head_blk) - l->l_head_blk;
	lb->lb_cap = log_build_capacity(l->l_geo.lg_block_size, left, &lb->lb_sum);
	assert(lb->lb_cap > 0); /* log.c (4) */
	lb->lb_blk = l->l_head_blk;
	lb->lb_seq = l->l_head_seq;
	lb->lb_n = 0;
	lb->lb_open = true;
	memset(l->l_segbuf, 0, log_build_bytes(lb, 1 + lb->lb_sum));
	return 0;
}

/* ---- writing a log ------------------------------------------------------- */

/* Fill in the open log's header in l_segbuf, checksums last. */
static uint64_t log_build_seal(struct log_builder *lb, uint64_t next_blk)
{
	struct log *l = lb->lb_log;
	unsigned char *buf = l->l_segbuf;
	uint64_t nsum = 1 + (uint64_t)lb->lb_sum;
	struct log_header_disk h = {
	    .hd_version = LOG_FORMAT_VERSION,
	    .hd_flags = lb->lb_sr ? LOG_SR : 0,
	    .hd_seq = lb->lb_seq,
	    .hd_delta = lb->lb_delta,
	    .hd_nblocks = 1 + lb->lb_sum + lb->lb_n,
	    .hd_nentries = lb->lb_n,
	    .hd_next_blk = next_blk,
	    .hd_nonce = l->l_nonce,
	    .hd_prev_nonce = l->l_head_prev_nonce,
	    .hd_prev_sum = l->l_head_prev,
	};
	uint64_t sum_csum, data_csum;

	assert(l->l_nonce); /* drawn when the head was placed (log.c (10)) */
	memcpy(h.hd_magic, LOG_HDR_MAGIC, LOG_MAGIC_LEN);
	memcpy(h.hd_uuid, l->l_geo.lg_uuid, sizeof(h.hd_uuid));
	log_header_le(&h);
	memcpy(buf, &h, sizeof(h));
	data_csum = XXH3_64bits(buf + log_build_bytes(lb, nsum), log_build_bytes(lb, lb->lb_n));
	sum_csum = XXH3_64bits(buf, log_build_bytes(lb, nsum));
	h.hd_sum_csum = htole64(sum_csum);
	h.hd_data_csum = htole64(data_csum);
	memcpy(buf, &h, sizeof(h));
	return sum_csum;
}

/* A write or flush failed: stop the builder and move the head off the chain. */
static int log_build_fail(struct log_builder *lb, const char *what, int err)
{
	struct log *l = lb->lb_log;

	log_err("log: log %" PRIu64 " at block %" PRIu64 ": %s failed: %d", lb->lb_seq, lb->lb_blk,
		what, err);
	lb->lb_err = err;
	l->l_head_skip = true;
	l->l_unanchored = true;
	if (l->l_head_seq <= lb->lb_seq)
		l->l_head_seq = lb->lb_seq + 1; /* never reuse a seq that may be on disk */
	return err;
}

/* Write the open log, naming @next_blk as its successor; the head moves there. */
static int log_build_write(struct log_builder *lb, uint64_t next_blk)
{
	struct log *l = lb->lb_log;
	uint32_t nblocks = 1 + lb->lb_sum + lb->lb_n;
	uint64_t sum_csum = log_build_seal(lb, next_blk);
	int err;

	lb->lb_open = false;
	SYNC_POINT("log.build.write");
	err = bdev_write(l->l_bdev, lb->lb_blk, nblocks, l->l_segbuf);
	if (err)
		return log_build_fail(lb, "write", err);
	lb->lb_blocks += nblocks;
	if (!lb->lb_sr) { /* not the last log: the finish's flush waits for less */
		bdev_start_writeback(l->l_bdev, lb->lb_blk, nblocks);
		bdev_start_flush(l->l_bdev);
	}
	log_seg_wrote(l, lb->lb_blk, lb->lb_seq);
	l->l_head_blk = next_blk;
	l->l_head_seq = lb->lb_seq + 1;
	l->l_head_prev = sum_csum;
	l->l_head_prev_nonce = l->l_nonce;
	return 0;
}

/* Make room for one more block: open a log, or write a full one and open the next. */
static int log_build_room(struct log_builder *lb)
{
	struct log *l = lb->lb_log;
	uint64_t seg;
	int err;

	if (lb->lb_open && lb->lb_n < lb->lb_cap)
		return 0;
	if (lb->lb_open) {
		err = log_seg_take_next(l, log_seg_of(l, lb->lb_blk), &seg);
		if (err)
			return err;
		err = log_build_write(lb, log_seg_first(l, seg));
		if (err)
			return err;
	}
	return log_build_open(lb);
}

/* ---- the interface ------------------------------------------------------- */

int log_build_begin(struct log *l, uint64_t delta, struct log_builder **out)
{
	struct log_builder *lb;

	if (!l->l_writable)
		return -EINVAL; /* log_recover first, unless freshly formatted */
	if (atomic_exchange(&l->l_building, true))
		return -EBUSY;
	lb = calloc(1, sizeof(*lb));
	if (!lb) {
		atomic_store(&l->l_building, false);
		return -ENOMEM;
	}
	lb->lb_log = l;
	lb->lb_delta = delta;
	*out = lb;
	return 0;
}

static void log_build_put(struct log_builder *lb, uint64_t owner, uint64_t index, uint64_t tag,
			  uint32_t flags, const void *data)
{
	unsigned char *buf = lb->lb_log->l_segbuf;
	struct log_entry_disk e = {
	    .ed_owner = owner,
	    .ed_index = index,
	    .ed_tag = tag,
	    .ed_flags = flags,
	};

	log_entry_le(&e);
	memcpy(buf + log_build_bytes(lb, 1) + (size_t)lb->lb_n * LOG_ENTRY_SIZE, &e, sizeof(e));
	memcpy(buf + log_build_bytes(lb, 1 + (uint64_t)lb->lb_sum + lb->lb_n), data,
	       log_build_bytes(lb, 1));
	lb->lb_n++;
	if (flags & LOG_ENTRY_SUPER_ROOT)
		lb->lb_sr = true;
}

int log_build_add(struct log_builder *lb, uint64_t owner, uint64_t index, uint32_t flags,
		  const void *data, uint64_t *pblk)
{
	return log_build_add_tagged(lb, owner, index, 0, flags, data, pblk);
}

int log_build_add_tagged(struct log_builder *lb, uint64_t owner, uint64_t index, uint64_t tag,
			 uint32_t flags, const void *data, uint64_t *pblk)
{
	int err;

	if (lb->lb_err)
		return lb->lb_err;
	if ((flags & ~LOG_ENTRY_FLAGS) || lb->lb_sr)
		return -EINVAL; /* unknown flag, or a block after the super root */
	err = log_build_room(lb);
	if (err)
		return err;
	*pblk = lb->lb_blk + 1 + lb->lb_sum + lb->lb_n;
	log_build_put(lb, owner, index, tag, flags, data);
	return 0;
}

uint64_t log_build_blocks(const struct log_builder *lb)
{
	return lb->lb_blocks + (lb->lb_open ? 1 + (uint64_t)lb->lb_sum + lb->lb_n : 0);
}

/* Where the delta's last log says the next one goes (log.c (4)). */
static int log_build_last_next(struct log_builder *lb, uint64_t *next)
{
	struct log *l = lb->lb_log;
	uint64_t end = lb->lb_blk + 1 + lb->lb_sum + lb->lb_n, seg;
	int err;

	if (log_seg_end_of(l, lb->lb_blk) - end >= LOG_MIN_LOG_BLOCKS) {
		*next = end;
		return 0;
	}
	err = log_seg_take_next(l, log_seg_of(l, lb->lb_blk), &seg);
	if (!err)
		*next = log_seg_first(l, seg);
	return err;
}

/* Write the last log and flush; anchor the head with a checkpoint if needed. */
static int log_build_commit(struct log_builder *lb)
{
	struct log *l = lb->lb_log;
	struct log_durable du = {
	    .du_valid = true,
	    .du_sr_blk = lb->lb_blk + lb->lb_sum + lb->lb_n, /* the last payload block */
	    .du_log_seq = lb->lb_seq,
	    .du_log_blk = lb->lb_blk,
	    .du_delta = lb->lb_delta,
	    .du_nonce = l->l_nonce,
	};
	uint64_t next;
	int err;

	err = log_build_last_next(lb, &next);
	if (!err)
		err = log_build_write(lb, next);
	if (err)
		return err;
	SYNC_POINT("log.build.flush");
	err = bdev_flush(l->l_bdev);
	if (err)
		return log_build_fail(lb, "flush", err);
	if (l->l_unanchored) {
		err = log_cp_write(l, &du);
		if (err)
			return err;
		l->l_unanchored = false;
	}
	l->l_durable = du;
	return 0;
}

static void log_build_end(struct log_builder *lb)
{
	atomic_store(&lb->lb_log->l_building, false);
	free(lb);
}

int log_build_finish(struct log_builder *lb)
{
	int err = lb->lb_err;

	if (!err && (!lb->lb_sr || !lb->lb_open))
		err = -EINVAL; /* the delta must end with its super root */
	if (!err)
		err = log_build_commit(lb);
	log_build_end(lb);
	return err;
}

void log_build_abort(struct log_builder *lb)
{
	log_build_end(lb);
}

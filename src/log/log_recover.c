/*
 * log_recover.c - finding the newest valid state after a crash.
 *
 * Recovery takes the newest valid checkpoint slot whose log checks out
 * (else the other slot), then rolls forward along the chain of logs:
 *
 *   slot --log_blk--> log (must hold the slot's super root)
 *     --hd_next_blk--> log seq+1 --hd_next_blk--> log seq+2 ...
 *
 * A log is followed only if it is complete (header, summary and payload
 * checksums right, fields consistent with the geometry), its sequence
 * number is the previous one's plus one, it names the previous log
 * (hd_prev_nonce its mount nonce, hd_prev_sum its summary checksum),
 * its delta is not older, and, if a new mount wrote it, the previous
 * log holds a super root (a mount starts writing right after the state
 * it recovered). The newest log with a super root met is the state;
 * logs after it without one belong to a delta that never finished, and
 * the head goes right after the state's log, where they will be
 * overwritten by a mount with a new nonce (log.c (10)).
 *
 * Invariants
 *   (1) No field of a log is trusted before its header and summary
 *       checksum is verified; the few read before that (magic, length)
 *       are bounded by the segment before use, so corrupt input costs at
 *       most one segment's read and never an access out of bounds.
 *   (2) The roll-forward visits each block at most once (sequence
 *       numbers rise) and at most l_seg_end / LOG_MIN_LOG_BLOCKS logs.
 *   (3) On success the head is readied exactly as a finish that wrote
 *       the state's log would have left it, but for the nonce: a new one
 *       is drawn, so that nothing written from here links to what the
 *       last mount left past the head. Every segment up to the head's is
 *       in use.
 *
 * Runs on the committing thread with no builder (log.c).
 */
#include "log/log_internal.h"

#include <inttypes.h>
#include <string.h>
#include <stdlib.h>
#include <xxhash.h>

/* A log that log_verify() found complete, in host order. */
struct log_verified {
	uint64_t lv_blk; /* its header block */
	uint64_t lv_seq;
	uint64_t lv_delta;
	uint64_t lv_next_blk;
	uint64_t lv_nonce;
	uint64_t lv_prev_nonce;
	uint64_t lv_prev_sum;
	uint64_t lv_sum_csum;
	uint32_t lv_flags;
	uint32_t lv_nblocks;
	uint32_t lv_nentries;
};

/* ---- verifying one log ----------------------------------------------------- */

/* Decode the header in @buf and check what can be checked before reading on. */
static const char *log_verify_header(struct log *l, const unsigned char *buf, uint64_t blk,
				     struct log_header_disk *h)
{
	uint64_t room = log_seg_end_of(l, blk) - blk;

	memcpy(h, buf, sizeof(*h));
	if (memcmp(h->hd_magic, LOG_HDR_MAGIC, LOG_MAGIC_LEN))
		return "no log header (bad magic)";
	log_header_le(h);
	if (h->hd_version != LOG_FORMAT_VERSION)
		return "unknown log version";
	if (memcmp(h->hd_uuid, l->l_geo.lg_uuid, sizeof(h->hd_uuid)))
		return "log of another volume";
	if (!h->hd_nentries || h->hd_nblocks > room ||
	    h->hd_nblocks < 1 + log_sum_blocks(h->hd_nentries, l->l_geo.lg_block_size) +
				(uint64_t)h->hd_nentries)
		return "bad log length";
	return NULL;
}

/* Check both checksums of the log of @h read whole into @buf. */
static const char *log_verify_csums(struct log *l, unsigned char *buf,
				    const struct log_header_disk *h)
{
	size_t bs = l->l_geo.lg_block_size;
	size_t head_bytes = (size_t)(h->hd_nblocks - h->hd_nentries) * bs;

	/* both checksum fields are zero while the summary checksum is taken */
	memset(buf + offsetof(struct log_header_disk, hd_sum_csum), 0, 2 * sizeof(uint64_t));
	if (XXH3_64bits(buf, head_bytes) != h->hd_sum_csum)
		return "bad summary checksum";
	if (XXH3_64bits(buf + head_bytes, (size_t)h->hd_nentries * bs) != h->hd_data_csum)
		return "bad payload checksum";
	return NULL;
}

/* Check the summary entries against the header (checksums already right). */
static const char *log_verify_entries(struct log *l, const unsigned char *buf,
				      const struct log_header_disk *h)
{
	const unsigned char *sum = buf + l->l_geo.lg_block_size;
	struct log_entry_disk e;

	if (h->hd_flags & ~LOG_HDR_FLAGS)
		return "unknown log flags";
	for (uint32_t i = 0; i < h->hd_nentries; i++) {
		bool last = i + 1 == h->hd_nentries;

		memcpy(&e, sum + (size_t)i * LOG_ENTRY_SIZE, sizeof(e));
		log_entry_le(&e);
		if ((e.ed_flags & ~LOG_ENTRY_FLAGS) || e.ed_reserved)
			return "bad summary entry";
		if ((e.ed_flags & LOG_ENTRY_SUPER_ROOT) && !(last && (h->hd_flags & LOG_SR)))
			return "super root entry out of place";
		if (last && (h->hd_flags & LOG_SR) && !(e.ed_flags & LOG_ENTRY_SUPER_ROOT))
			return "super root entry missing";
	}
	return NULL;
}

/* Does @h's next_blk obey log.c (4)? */
static bool log_next_sane(const struct log *l, uint64_t blk, const struct log_header_disk *h)
{
	uint64_t next = h->hd_next_blk, end = blk + h->hd_nblocks;

	if (!log_blk_in_segments(l, next))
		return false;
	if (log_seg_of(l, next) == log_seg_of(l, blk))
		return next == end && log_seg_end_of(l, blk) - end >= LOG_MIN_LOG_BLOCKS;
	return (next - l->l_geo.lg_seg_start) % l->l_geo.lg_seg_blocks == 0;
}

/*
 * Read and verify the log whose header is at @blk into @buf (room for a
 * segment). 0 and @lv if it is complete and consistent; -EUCLEAN and
 * *why if not; a read's error.
 */
static int log_verify(struct log *l, unsigned char *buf, uint64_t blk, struct log_verified *lv,
		      const char **why)
{
	struct log_header_disk h;
	int err;

	*why = "block outside the segments";
	if (!log_blk_in_segments(l, blk))
		return -EUCLEAN;
	err = bdev_read(l->l_bdev, blk, 1, buf);
	if (err)
		goto out_unreadable;
	if ((*why = log_verify_header(l, buf, blk, &h)))
		return -EUCLEAN;
	err = bdev_read(l->l_bdev, blk + 1, h.hd_nblocks - 1, buf + l->l_geo.lg_block_size);
	if (err)
		goto out_unreadable;
	if ((*why = log_verify_csums(l, buf, &h)) || (*why = log_verify_entries(l, buf, &h)))
		return -EUCLEAN;
	*why = "no mount nonce";
	if (!h.hd_nonce)
		return -EUCLEAN;
	*why = "bad next log address";
	if (!log_next_sane(l, blk, &h))
		return -EUCLEAN;
	*lv = (struct log_verified){
	    .lv_blk = blk,
	    .lv_seq = h.hd_seq,
	    .lv_delta = h.hd_delta,
	    .lv_next_blk = h.hd_next_blk,
	    .lv_nonce = h.hd_nonce,
	    .lv_prev_nonce = h.hd_prev_nonce,
	    .lv_prev_sum = h.hd_prev_sum,
	    .lv_sum_csum = h.hd_sum_csum,
	    .lv_flags = h.hd_flags,
	    .lv_nblocks = h.hd_nblocks,
	    .lv_nentries = h.hd_nentries,
	};
	*why = NULL;
	return 0;
out_unreadable:
	*why = "unreadable";
	log_err("log: block %" PRIu64 ": read failed: %d", blk, err);
	return err;
}

/* The super root of verified log @lv (its last payload block). */
static uint64_t log_verified_sr_blk(const struct log_verified *lv)
{
	return lv->lv_blk + lv->lv_nblocks - 1;
}

/* ---- the chain ------------------------------------------------------------- */

/* Why the verified log @lv cannot be the one slot @cp names; NULL if it is. */
static const char *log_anchor_mismatch(const struct log_cp_disk *cp, const struct log_verified *lv)
{
	if (lv->lv_seq != cp->cd_log_seq)
		return "sequence number differs from the checkpoint's";
	if (!(lv->lv_flags & LOG_SR))
		return "no super root";
	if (log_verified_sr_blk(lv) != cp->cd_sr_blk || lv->lv_delta != cp->cd_delta)
		return "super root differs from the checkpoint's";
	if (lv->lv_nonce != cp->cd_log_nonce)
		return "mount nonce differs from the checkpoint's";
	return NULL;
}

/* Why verified log @nx does not follow @cur in the chain; NULL if it does. */
static const char *log_link_mismatch(const struct log_verified *cur, const struct log_verified *nx)
{
	if (nx->lv_seq != cur->lv_seq + 1)
		return "stale log (sequence number not the next)";
	if (nx->lv_prev_nonce != cur->lv_nonce)
		return "stale log (follows a log of another mount)";
	if (nx->lv_prev_sum != cur->lv_sum_csum)
		return "stale log (does not name the previous log)";
	if (nx->lv_delta < cur->lv_delta)
		return "stale log (older delta)";
	if (nx->lv_nonce != cur->lv_nonce && !(cur->lv_flags & LOG_SR))
		return "stale log (a mount began after a log without super root)";
	return NULL;
}

/*
 * Roll forward from verified log @cur: *best becomes the newest log
 * with a super root, *rolled the logs followed to reach it.
 */
static int log_roll_forward(struct log *l, struct log_verified cur, struct log_verified *best,
			    uint64_t *rolled)
{
	uint64_t limit = l->l_seg_end / LOG_MIN_LOG_BLOCKS, n = 0;
	const char *why = NULL;
	struct log_verified nx;
	int err;

	*best = cur;
	*rolled = 0;
	while (n < limit) {
		err = log_verify(l, l->l_segbuf, cur.lv_next_blk, &nx, &why);
		if (err == -EUCLEAN || (!err && (why = log_link_mismatch(&cur, &nx))))
			break;
		if (err)
			return err;
		n++;
		log_seg_wrote(l, nx.lv_blk, nx.lv_seq);
		if (nx.lv_flags & LOG_SR) {
			*best = nx;
			*rolled = n;
		}
		cur = nx;
	}
	log_info("log: chain ends at block %" PRIu64 " after log %" PRIu64 ": %s", cur.lv_next_blk,
		 cur.lv_seq, why ? why : "too long");
	return 0;
}

/* Recover from slot @cp: verify the log it names, then roll forward. */
static int log_recover_from(struct log *l, const struct log_cp_disk *cp, struct log_verified *best,
			    uint64_t *rolled)
{
	struct log_verified anchor;
	const char *why;
	int err;

	err = log_verify(l, l->l_segbuf, cp->cd_log_blk, &anchor, &why);
	if (!err && (why = log_anchor_mismatch(cp, &anchor)))
		err = -EUCLEAN;
	if (err) {
		log_err("log: checkpoint %" PRIu64 " names log %" PRIu64 " at block %" PRIu64
			": %s",
			cp->cd_cp_seq, cp->cd_log_seq, cp->cd_log_blk, why);
		return err;
	}
	log_seg_wrote(l, anchor.lv_blk, anchor.lv_seq);
	return log_roll_forward(l, anchor, best, rolled);
}

/* ---- slots and the result -------------------------------------------------- */

/* Read both slots; *n valid ones into @cps, newest first. */
static int log_recover_slots(struct log *l, struct log_cp_disk cps[2], unsigned *n)
{
	static const uint64_t blks[2] = {LOG_CP_A_BLK, LOG_CP_B_BLK};
	int err;

	*n = 0;
	for (unsigned i = 0; i < 2; i++) {
		err = log_cp_read(l, blks[i], &cps[*n]);
		if (!err)
			(*n)++;
		else if (err == -EUCLEAN)
			log_warn("log: checkpoint slot %c (block %" PRIu64 ") is corrupt", "AB"[i],
				 blks[i]);
		else if (err != -ENODATA)
			return err;
	}
	if (*n == 2 && cps[1].cd_cp_seq > cps[0].cd_cp_seq) {
		struct log_cp_disk t = cps[0];

		cps[0] = cps[1];
		cps[1] = t;
	}
	return 0;
}

/*
 * Ready the head after @best, recovered from slot @cp, for a mount with
 * the new nonce @nonce, and fill @st.
 */
static void log_recover_ready(struct log *l, const struct log_cp_disk *cp,
			      const struct log_verified *best, uint64_t rolled, uint64_t nonce,
			      struct log_state *st)
{
	l->l_head_blk = best->lv_next_blk;
	l->l_head_seq = best->lv_seq + 1;
	l->l_head_prev = best->lv_sum_csum;
	l->l_head_prev_nonce = best->lv_nonce;
	l->l_nonce = nonce;
	l->l_head_skip = false;
	l->l_unanchored = false;
	l->l_durable = (struct log_durable){
	    .du_valid = true,
	    .du_sr_blk = log_verified_sr_blk(best),
	    .du_log_seq = best->lv_seq,
	    .du_log_blk = best->lv_blk,
	    .du_delta = best->lv_delta,
	    .du_nonce = best->lv_nonce,
	};
	l->l_cp_seq = cp->cd_cp_seq;
	/* the other slot's chain was not followed: keep everything until a
	 * checkpoint is written (log_space.c) */
	l->l_cp_log_seq[cp->cd_cp_seq % 2] = cp->cd_log_seq;
	l->l_cp_log_seq[(cp->cd_cp_seq + 1) % 2] = 0;
	log_seg_take(l, log_seg_of(l, l->l_head_blk));
	l->l_writable = true;
	*st = (struct log_state){
	    .ls_delta = best->lv_delta,
	    .ls_sr_blk = log_verified_sr_blk(best),
	    .ls_log_seq = best->lv_seq,
	    .ls_next_blk = l->l_head_blk,
	    .ls_next_seq = l->l_head_seq,
	    .ls_rolled = rolled,
	    .ls_cp_seq = cp->cd_cp_seq,
	    .ls_floor = cp->cd_floor,
	};
	l->l_floor = cp->cd_floor;
}

int log_recover(struct log *l, struct log_state *st)
{
	struct log_cp_disk cps[2];
	struct log_verified best;
	uint64_t rolled, nonce;
	unsigned n, i;
	int err;

	if (atomic_load(&l->l_building))
		return -EBUSY;
	err = log_nonce_draw(&nonce);
	if (err)
		return err;
	err = log_recover_slots(l, cps, &n);
	if (err)
		return err;
	log_seg_reset(l); /* every segment in use; the chain followed is marked */
	for (i = 0, err = -EUCLEAN; i < n && err == -EUCLEAN; i++)
		err = log_recover_from(l, &cps[i], &best, &rolled);
	if (err == -EUCLEAN)
		log_err("log: no valid state: %s (checkpoint slots at blocks 1 and 2)",
			n ? "no checkpoint names a valid log" : "no valid checkpoint");
	if (err)
		return err;
	log_recover_ready(l, &cps[i - 1], &best, rolled, nonce, st);
	return 0;
}

/* ---- scanning a segment ------------------------------------------------------ */

int log_seg_scan(struct log *l, uint64_t seg, log_scan_fn fn, void *arg)
{
	size_t bs = l->l_geo.lg_block_size;
	unsigned char *buf;
	uint64_t blk, end;
	int err = 0;

	if (seg >= l->l_geo.lg_nsegments)
		return -EINVAL;
	buf = malloc((size_t)l->l_geo.lg_seg_blocks * bs);
	if (!buf)
		return -ENOMEM;
	blk = log_seg_first(l, seg);
	end = blk + l->l_geo.lg_seg_blocks;
	while (!err && blk + LOG_MIN_LOG_BLOCKS <= end) {
		struct log_verified lv;
		const unsigned char *sum = buf + bs;
		const char *why;
		uint64_t payload;

		err = log_verify(l, buf, blk, &lv, &why);
		if (err == -EUCLEAN) {
			err = 0;
			break; /* no (more) complete logs here */
		}
		payload = blk + lv.lv_nblocks - lv.lv_nentries;
		for (uint32_t i = 0; i < lv.lv_nentries && !err; i++) {
			struct log_entry_disk e;

			memcpy(&e, sum + (size_t)i * LOG_ENTRY_SIZE, sizeof(e));
			log_entry_le(&e);
			err = fn(arg, e.ed_owner, e.ed_index, e.ed_tag, e.ed_flags, payload + i);
		}
		blk += lv.lv_nblocks;
	}
	free(buf);
	return err > 0 ? 0 : err;
}

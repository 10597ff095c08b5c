/*
 * log_cp.c - the two checkpoint slots.
 *
 * A slot names a durable state: the log holding a super root (its block,
 * sequence number and mount nonce), the super root's block and its
 * delta; and carries the client's floor (log_set_floor), a delta below
 * which its older states may be gone, made durable here without a
 * segment's block. Slots are written alternately, odd cp_seq in slot A (block 1),
 * even in slot B (block 2), so the slot being written is never the one
 * recovery would fall back to. Recovery starts from the newest valid
 * slot and rolls forward along the chain of logs.
 *
 * Invariants
 *   (1) A slot names only a state a finished flush made durable
 *       (l_durable), and log_checkpoint returns 0 only after the slot
 *       itself has been flushed.
 *   (2) l_cp_seq advances only when a slot write and its flush succeed;
 *       a failed attempt is retried in the same slot, so the other slot,
 *       the one recovery falls back to, is never overwritten while the
 *       newer one may be torn.
 *   (3) A slot is trusted only if its magic, checksum, version, uuid and
 *       slot parity are right, its block addresses lie in segments and
 *       it names a nonce (never 0 in a log).
 *
 * Runs on the committing thread (log.c); no lock of its own.
 */
#include "log/log_internal.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "util/syncpoint.h"

uint64_t log_cp_slot_blk(uint64_t cp_seq)
{
	return (cp_seq & 1) ? LOG_CP_A_BLK : LOG_CP_B_BLK;
}

/* The checksum of disk-order @cp with its checksum field taken as zero. */
static uint64_t log_cp_csum(const struct log_cp_disk *cp)
{
	struct log_cp_disk tmp = *cp;

	tmp.cd_checksum = 0;
	return XXH3_64bits(&tmp, sizeof(tmp));
}

/* Is host-order @cp, read from slot @blk, a state of this volume? */
static bool log_cp_sane(const struct log *l, uint64_t blk, const struct log_cp_disk *cp)
{
	return cp->cd_version == LOG_FORMAT_VERSION && cp->cd_floor <= cp->cd_delta &&
	       cp->cd_cp_seq && log_cp_slot_blk(cp->cd_cp_seq) == blk && cp->cd_log_seq &&
	       cp->cd_log_nonce && !memcmp(cp->cd_uuid, l->l_geo.lg_uuid, sizeof(cp->cd_uuid)) &&
	       log_blk_in_segments(l, cp->cd_log_blk) && log_blk_in_segments(l, cp->cd_sr_blk);
}

static int log_cp_decode(const struct log *l, uint64_t blk, const unsigned char *buf,
			 struct log_cp_disk *cp)
{
	if (util_all_zero(buf, l->l_geo.lg_block_size))
		return -ENODATA;
	memcpy(cp, buf, sizeof(*cp));
	if (memcmp(cp->cd_magic, LOG_CP_MAGIC, LOG_MAGIC_LEN) ||
	    le64toh(cp->cd_checksum) != log_cp_csum(cp))
		return -EUCLEAN;
	log_cp_le(cp);
	return log_cp_sane(l, blk, cp) ? 0 : -EUCLEAN;
}

int log_cp_read(struct log *l, uint64_t blk, struct log_cp_disk *cp)
{
	unsigned char *buf = malloc(l->l_geo.lg_block_size);
	int err;

	if (!buf)
		return -ENOMEM;
	err = bdev_read(l->l_bdev, blk, 1, buf);
	if (!err)
		err = log_cp_decode(l, blk, buf, cp);
	free(buf);
	return err;
}

/* Encode the slot for @cp_seq naming @du into the zeroed block @buf. */
static void log_cp_encode(const struct log *l, uint64_t cp_seq, const struct log_durable *du,
			  unsigned char *buf)
{
	struct log_cp_disk cp = {
	    .cd_version = LOG_FORMAT_VERSION,
	    .cd_cp_seq = cp_seq,
	    .cd_log_seq = du->du_log_seq,
	    .cd_log_blk = du->du_log_blk,
	    .cd_sr_blk = du->du_sr_blk,
	    .cd_delta = du->du_delta,
	    .cd_log_nonce = du->du_nonce,
	    .cd_floor = (uint32_t)MIN(l->l_floor, du->du_delta),
	};

	memcpy(cp.cd_magic, LOG_CP_MAGIC, LOG_MAGIC_LEN);
	memcpy(cp.cd_uuid, l->l_geo.lg_uuid, sizeof(cp.cd_uuid));
	log_cp_le(&cp);
	cp.cd_checksum = htole64(log_cp_csum(&cp));
	memcpy(buf, &cp, sizeof(cp));
}

int log_cp_write(struct log *l, const struct log_durable *du)
{
	uint64_t cp_seq = l->l_cp_seq + 1, blk = log_cp_slot_blk(cp_seq);
	unsigned char *buf;
	int err;

	assert(du->du_valid);
	buf = calloc(1, l->l_geo.lg_block_size);
	if (!buf)
		return -ENOMEM;
	log_cp_encode(l, cp_seq, du, buf);
	SYNC_POINT("log.cp.write");
	err = bdev_write(l->l_bdev, blk, 1, buf);
	if (!err) {
		SYNC_POINT("log.cp.flush");
		err = bdev_flush(l->l_bdev);
	}
	if (err)
		log_err("log: checkpoint %" PRIu64 " (block %" PRIu64 ") not written: %d", cp_seq,
			blk, err);
	else
		l->l_cp_seq = cp_seq;
	if (!err)
		l->l_cp_log_seq[cp_seq % 2] = du->du_log_seq;
	free(buf);
	return err;
}

void log_set_floor(struct log *l, uint64_t floor)
{
	l->l_floor = MIN(floor, (uint64_t)UINT32_MAX);
}

int log_checkpoint(struct log *l)
{
	if (!l->l_durable.du_valid)
		return -EINVAL; /* nothing durable yet: no state to name */
	return log_cp_write(l, &l->l_durable);
}

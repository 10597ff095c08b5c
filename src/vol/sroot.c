/*
 * sroot.c - the super root: the one block naming a delta's whole state.
 *
 * Each delta's commit writes it last, as the log entry flagged
 * LOG_ENTRY_SUPER_ROOT; recovery (log_recover) finds the newest one the
 * log holds intact, and vol_open reads it back. Layout (docs/FORMAT.md,
 * "Super root"), little-endian, the rest of the block zero:
 *
 *   0  magic "CAIRNSR1"     8  version u32       12 otab height u8
 *   13 translation height u8  14 segment usage height u8
 *   15 flags u8: bit 0, the segment usage file's counts are this state's;
 *      bit 1, the cleaner moved snapshots' blocks that some snapshot
 *      may not be re-rooted to yet (the open asks for a re-root)
 *   16 delta u64            24 otab root u64 (a virtual block)
 *   32 next owner u64       40 blocks written u64
 *   48 checksum u64: XXH3_64bits of the whole block, this field zero
 *   56 previous super root u64   64 commit time u64 (ns since the epoch)
 *   72 readable from u64: the oldest delta whose state is still whole
 *   80 translation root u64 (a physical block)
 *   88 translation next u64: no entry at or past it was ever used
 *   96 segment usage root u64 (a physical block; version 5 on, else 0)
 *   104 checkpoint file root u64 (a physical block; version 5 on, else 0)
 *   112 checkpoint file from u64   120 checkpoint file next u64
 *   128 checkpoint file height u8
 *   136 moved u64: the newest delta, this one or before, whose commit
 *       moved a block by its translation entry (the cleaner's moves);
 *       two translations whose super roots say the same resolve every
 *       number both states name alike (check.c walks snapshots so)
 *
 * The previous super root links the checkpoints into a chain, newest
 * first (vol_checkpoints); "readable from" says where the chain stops
 * being trustworthy: a state older than it may have blocks in a segment
 * the log has reused (usage.c).
 *
 * Invariants
 *   (1) A decoded super root has passed its magic, version and checksum,
 *       and its otab and translation roots and heights are consistent,
 *       and the otab root a number below translation next; nothing else
 *       of it is trusted before that.
 *   (2) The checksum covers the whole block, reserved bytes included,
 *       so a block with stray bytes is refused, not half-read.
 *   (3) readable_from <= delta, and the previous super root is 0 or a
 *       block of the segments (checked when it is read).
 *
 * No shared state: pure encoding, and vol_sroot_load, which reads one
 * block of the device to decode it (recovery's state and snapshots).
 */
#include "log/format.h"
#include "vol/vol_internal.h"

#include <endian.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#define VOL_SR_MAGIC	   "CAIRNSR1"
#define VOL_SR_MAGIC_LEN   8
#define SR_VERSION_OFF	   8
#define SR_HEIGHT_OFF	   12
#define SR_DAT_HEIGHT_OFF  13
#define SR_DELTA_OFF	   16
#define SR_ROOT_OFF	   24
#define SR_NEXT_OWNER_OFF  32
#define SR_WRITTEN_OFF	   40
#define SR_CSUM_OFF	   48
#define SR_PREV_OFF	   56
#define SR_TIME_OFF	   64
#define SR_READABLE_OFF	   72
#define SR_DAT_ROOT_OFF	   80
#define SR_DAT_NEXT_OFF	   88
#define SR_SUF_HEIGHT_OFF  14
#define SR_FLAGS_OFF	   15
#define SR_SUF_ROOT_OFF	   96
#define SR_CKPT_ROOT_OFF   104
#define SR_CKPT_FROM_OFF   112
#define SR_CKPT_NEXT_OFF   120
#define SR_CKPT_HEIGHT_OFF 128
#define SR_MOVED_OFF	   136
#define SR_END		   144

#define SR_FLAG_SUF_CURRENT 1u
#define SR_FLAG_UNROOTED    2u

_Static_assert(SR_END <= LOG_BLOCK_MIN, "the super root fits the smallest block");

/* The checksum of block @p, whose checksum field is zero. */
static uint64_t sr_csum(const unsigned char *p, uint32_t bs)
{
	return XXH3_64bits(p, bs);
}

void vol_sroot_encode(const struct vol_sroot *sr, void *buf, uint32_t bs)
{
	unsigned char *p = buf;
	uint32_t version = htole32(VOL_SR_VERSION);

	memset(p, 0, bs);
	memcpy(p, VOL_SR_MAGIC, VOL_SR_MAGIC_LEN);
	memcpy(p + SR_VERSION_OFF, &version, sizeof(version));
	p[SR_HEIGHT_OFF] = sr->sr_otab_height;
	util_put_le64(p + SR_DELTA_OFF, sr->sr_delta);
	util_put_le64(p + SR_ROOT_OFF, sr->sr_otab_root);
	util_put_le64(p + SR_NEXT_OWNER_OFF, sr->sr_next_owner);
	util_put_le64(p + SR_WRITTEN_OFF, sr->sr_blocks_written);
	util_put_le64(p + SR_PREV_OFF, sr->sr_prev);
	util_put_le64(p + SR_TIME_OFF, sr->sr_time_ns);
	util_put_le64(p + SR_READABLE_OFF, sr->sr_readable_from);
	p[SR_DAT_HEIGHT_OFF] = sr->sr_dat_height;
	util_put_le64(p + SR_DAT_ROOT_OFF, sr->sr_dat_root);
	util_put_le64(p + SR_DAT_NEXT_OFF, sr->sr_dat_next);
	p[SR_SUF_HEIGHT_OFF] = sr->sr_suf_height;
	p[SR_FLAGS_OFF] = (uint8_t)((sr->sr_suf_current ? SR_FLAG_SUF_CURRENT : 0) |
				    (sr->sr_unrooted ? SR_FLAG_UNROOTED : 0));
	util_put_le64(p + SR_SUF_ROOT_OFF, sr->sr_suf_root);
	util_put_le64(p + SR_CKPT_ROOT_OFF, sr->sr_ckpt_root);
	util_put_le64(p + SR_CKPT_FROM_OFF, sr->sr_ckpt_from);
	util_put_le64(p + SR_CKPT_NEXT_OFF, sr->sr_ckpt_next);
	p[SR_CKPT_HEIGHT_OFF] = sr->sr_ckpt_height;
	util_put_le64(p + SR_MOVED_OFF, sr->sr_moved);
	util_put_le64(p + SR_CSUM_OFF, sr_csum(p, bs)); /* the field was zero */
}

/* Why block @p (@tmp: room for a copy) is not a valid super root, or NULL. */
static const char *sr_invalid(const unsigned char *p, unsigned char *tmp, uint32_t bs)
{
	uint32_t version;

	if (memcmp(p, VOL_SR_MAGIC, VOL_SR_MAGIC_LEN))
		return "bad magic";
	memcpy(tmp, p, bs);
	util_put_le64(tmp + SR_CSUM_OFF, 0);
	if (util_get_le64(p + SR_CSUM_OFF) != sr_csum(tmp, bs))
		return "bad checksum";
	memcpy(&version, p + SR_VERSION_OFF, sizeof(version));
	version = le32toh(version);
	if (version < VOL_SR_VERSION_MIN || version > VOL_SR_VERSION)
		return version < VOL_SR_VERSION_MIN
			   ? "written by an older cairn (no block address translation)"
			   : "unknown version";
	if (!p[SR_HEIGHT_OFF] != !util_get_le64(p + SR_ROOT_OFF))
		return "owner table root and height disagree";
	if (!p[SR_DAT_HEIGHT_OFF] != !util_get_le64(p + SR_DAT_ROOT_OFF))
		return "translation root and height disagree";
	if (!p[SR_SUF_HEIGHT_OFF] != !util_get_le64(p + SR_SUF_ROOT_OFF))
		return "segment usage root and height disagree";
	if (p[SR_FLAGS_OFF] & ~(SR_FLAG_SUF_CURRENT | SR_FLAG_UNROOTED))
		return "unknown flags";
	if (!p[SR_CKPT_HEIGHT_OFF] != !util_get_le64(p + SR_CKPT_ROOT_OFF))
		return "checkpoint file root and height disagree";
	if (util_get_le64(p + SR_CKPT_FROM_OFF) > util_get_le64(p + SR_CKPT_NEXT_OFF) ||
	    util_get_le64(p + SR_CKPT_NEXT_OFF) > util_get_le64(p + SR_DELTA_OFF))
		return "checkpoint file range past its own delta";
	if (util_get_le64(p + SR_ROOT_OFF) >= MAX(util_get_le64(p + SR_DAT_NEXT_OFF), 1))
		return "owner table root past the translation's entries";
	if (util_get_le64(p + SR_READABLE_OFF) > util_get_le64(p + SR_DELTA_OFF))
		return "readable from a delta past its own";
	return NULL;
}

int vol_sroot_decode(const void *buf, uint32_t bs, uint64_t blk, struct vol_sroot *sr)
{
	const unsigned char *p = buf;
	unsigned char *tmp = malloc(bs);
	const char *why;

	if (!tmp)
		return -ENOMEM;
	why = sr_invalid(p, tmp, bs);
	free(tmp);
	if (why) {
		log_err("vol: super root at block %" PRIu64 ": %s", blk, why);
		return -EUCLEAN;
	}
	sr->sr_otab_height = p[SR_HEIGHT_OFF];
	sr->sr_delta = util_get_le64(p + SR_DELTA_OFF);
	sr->sr_otab_root = util_get_le64(p + SR_ROOT_OFF);
	sr->sr_next_owner = util_get_le64(p + SR_NEXT_OWNER_OFF);
	sr->sr_blocks_written = util_get_le64(p + SR_WRITTEN_OFF);
	sr->sr_prev = util_get_le64(p + SR_PREV_OFF);
	sr->sr_time_ns = util_get_le64(p + SR_TIME_OFF);
	sr->sr_readable_from = util_get_le64(p + SR_READABLE_OFF);
	sr->sr_dat_height = p[SR_DAT_HEIGHT_OFF];
	sr->sr_dat_root = util_get_le64(p + SR_DAT_ROOT_OFF);
	sr->sr_dat_next = util_get_le64(p + SR_DAT_NEXT_OFF);
	sr->sr_suf_height = p[SR_SUF_HEIGHT_OFF];
	sr->sr_suf_root = util_get_le64(p + SR_SUF_ROOT_OFF);
	sr->sr_suf_current = (p[SR_FLAGS_OFF] & SR_FLAG_SUF_CURRENT) && sr->sr_suf_height;
	sr->sr_unrooted = p[SR_FLAGS_OFF] & SR_FLAG_UNROOTED;
	sr->sr_ckpt_root = util_get_le64(p + SR_CKPT_ROOT_OFF);
	sr->sr_ckpt_from = util_get_le64(p + SR_CKPT_FROM_OFF);
	sr->sr_ckpt_next = util_get_le64(p + SR_CKPT_NEXT_OFF);
	sr->sr_ckpt_height = p[SR_CKPT_HEIGHT_OFF];
	sr->sr_moved = util_get_le64(p + SR_MOVED_OFF);
	return 0;
}

int vol_sroot_load(struct vol *v, uint64_t blk, struct vol_sroot *sr)
{
	void *block;
	int err;

	if (!vol_pblk_valid(v, blk))
		return -EUCLEAN;
	block = malloc(v->v_block_size);
	if (!block)
		return -ENOMEM;
	err = bdev_read(v->v_bdev, blk, 1, block);
	if (!err)
		err = vol_sroot_decode(block, v->v_block_size, blk, sr);
	free(block);
	return err;
}

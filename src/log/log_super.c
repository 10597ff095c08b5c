/*
 * log_super.c - formatting a device, and its two superblocks.
 *
 * The superblock says how the device is cut up (block size, segment
 * size, where segments start, how many) and names the volume (uuid,
 * label). Two identical copies: block 0 (A) and the volume's last block
 * (B); log_format writes both and they never change afterwards. Opening
 * prefers A and falls back to B.
 *
 * Invariants
 *   (1) No field of a superblock is looked at before its checksum and
 *       magic are verified; then every geometry field is checked against
 *       the others and the device, so a superblock that passes describes
 *       segments that lie inside the device.
 *   (2) log_format writes blank checkpoint slots and both superblocks,
 *       then flushes: a formatted device has no state until the first
 *       finish (which anchors it with a checkpoint, log.c (6)).
 *
 * No locks: format and open run before anything else uses the device.
 */
#include "log/log_internal.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <xxhash.h>

#define LOG_BLOCK_DEFAULT 4096u

static bool log_pow2(uint64_t x)
{
	return x && !(x & (x - 1));
}

/* First block of segment 0: the first multiple of @seg_blocks past the fixed blocks. */
static uint64_t log_seg_start_for(uint32_t seg_blocks)
{
	return (LOG_FIXED_BLOCKS + seg_blocks - 1) / seg_blocks * seg_blocks;
}

/* Whole segments between @seg_start and superblock B; 0 if none fit. */
static uint64_t log_nsegments_for(uint64_t nblocks, uint64_t seg_start, uint32_t seg_blocks)
{
	if (nblocks < seg_start + 1)
		return 0;
	return (nblocks - 1 - seg_start) / seg_blocks;
}

/* ---- encoding and checking --------------------------------------------- */

/* The checksum of disk-order @sb with its checksum field taken as zero. */
static uint64_t log_super_csum(const struct log_super_disk *sb)
{
	struct log_super_disk tmp = *sb;

	tmp.sd_checksum = 0;
	return XXH3_64bits(&tmp, sizeof(tmp));
}

/* Encode host-order @sb into the zeroed block @blk, checksummed. */
static void log_super_encode(const struct log_super_disk *sb, void *blk)
{
	struct log_super_disk d = *sb;

	d.sd_checksum = 0;
	log_super_le(&d);
	d.sd_checksum = htole64(log_super_csum(&d));
	memcpy(blk, &d, sizeof(d));
}

/* Why host-order @sb cannot describe a volume on @d; NULL if it can. */
static const char *log_super_insane(struct bdev *d, const struct log_super_disk *sb)
{
	uint64_t seg_bytes = (uint64_t)sb->sd_seg_blocks * sb->sd_block_size;

	if (sb->sd_version != LOG_FORMAT_VERSION)
		return "unknown format version";
	if (sb->sd_features || sb->sd_reserved)
		return "unknown features";
	if (!log_pow2(sb->sd_block_size) || sb->sd_block_size < LOG_BLOCK_MIN ||
	    sb->sd_block_size > LOG_BLOCK_MAX)
		return "bad block size";
	if (sb->sd_block_size != bdev_block_size(d))
		return "block size differs from the device's";
	if (sb->sd_seg_blocks < LOG_SEG_BLOCKS_MIN || seg_bytes > LOG_SEG_BYTES_MAX)
		return "bad segment size";
	if (sb->sd_nblocks > bdev_nblocks(d))
		return "volume larger than the device";
	if (sb->sd_seg_start != log_seg_start_for(sb->sd_seg_blocks))
		return "bad segment start";
	if (sb->sd_nsegments < LOG_MIN_SEGMENTS ||
	    sb->sd_nsegments !=
		log_nsegments_for(sb->sd_nblocks, sb->sd_seg_start, sb->sd_seg_blocks))
		return "bad segment count";
	if (sb->sd_label[LOG_LABEL_LEN - 1])
		return "label not terminated";
	return NULL;
}

/* Decode and check the superblock copy in block @blk (@buf: one block). */
static const char *log_super_decode(struct bdev *d, uint64_t blk, const void *buf,
				    struct log_super_disk *sb)
{
	const char *why;

	memcpy(sb, buf, sizeof(*sb));
	if (memcmp(sb->sd_magic, LOG_SB_MAGIC, LOG_MAGIC_LEN))
		return "bad magic";
	if (le64toh(sb->sd_checksum) != log_super_csum(sb))
		return "bad checksum";
	log_super_le(sb);
	why = log_super_insane(d, sb);
	if (!why && blk && sb->sd_nblocks - 1 != blk)
		why = "superblock B not at the volume's last block";
	return why;
}

/* Read and check the copy at @blk; 0, or -EUCLEAN with *why set, or -EIO. */
static int log_super_load(struct bdev *d, uint64_t blk, void *buf, struct log_super_disk *sb,
			  const char **why)
{
	int err = bdev_read(d, blk, 1, buf);

	if (err) {
		*why = "unreadable";
		return err;
	}
	*why = log_super_decode(d, blk, buf, sb);
	return *why ? -EUCLEAN : 0;
}

int log_super_read(struct bdev *d, bool quiet, struct log_super_disk *sb)
{
	uint64_t blk_b = bdev_nblocks(d) - 1;
	const char *why_a, *why_b;
	int err_a, err_b = 0;
	void *buf;

	buf = malloc(bdev_block_size(d));
	if (!buf)
		return -ENOMEM;
	err_a = log_super_load(d, LOG_SB_A_BLK, buf, sb, &why_a);
	if (!err_a)
		goto out_buf;
	err_b = log_super_load(d, blk_b, buf, sb, &why_b);
	if (quiet)
		goto out_buf;
	if (!err_b)
		log_err("log: superblock A (block 0): %s; using superblock B (block %" PRIu64 ")",
			why_a, blk_b);
	else
		log_err("log: no valid superblock: A (block 0): %s; B (block %" PRIu64 "): %s",
			why_a, blk_b, why_b);
out_buf:
	free(buf);
	if (err_a && err_b) /* an I/O error says more than "corrupt" */
		return err_a != -EUCLEAN ? err_a : err_b;
	return 0;
}

bool log_probe(struct bdev *d)
{
	struct log_super_disk sb;

	return log_super_read(d, true, &sb) == 0;
}

/* ---- formatting -------------------------------------------------------- */

static int log_uuid_fill(uint8_t uuid[16], const uint8_t *given)
{
	if (given) {
		memcpy(uuid, given, 16);
		return 0;
	}
	if (getrandom(uuid, 16, 0) != 16)
		return errno ? -errno : -EIO;
	uuid[6] = (uint8_t)((uuid[6] & 0x0f) | 0x40); /* RFC 4122 version 4 */
	uuid[8] = (uint8_t)((uuid[8] & 0x3f) | 0x80);
	return 0;
}

/* The host-order superblock @o describes on @d; -EINVAL if it cannot. */
static int log_super_build(struct bdev *d, const struct log_format_opts *o,
			   struct log_super_disk *sb)
{
	uint32_t bs = o->lfo_block_size ? o->lfo_block_size : LOG_BLOCK_DEFAULT;
	uint32_t seg = o->lfo_seg_blocks ? o->lfo_seg_blocks : LOG_SEG_BYTES_DEFAULT / bs;

	memset(sb, 0, sizeof(*sb));
	if (bs != bdev_block_size(d) || !log_pow2(bs) || bs < LOG_BLOCK_MIN || bs > LOG_BLOCK_MAX)
		return -EINVAL;
	if (seg < LOG_SEG_BLOCKS_MIN || (uint64_t)seg * bs > LOG_SEG_BYTES_MAX)
		return -EINVAL;
	if (o->lfo_label && strnlen(o->lfo_label, LOG_LABEL_LEN) >= LOG_LABEL_LEN)
		return -EINVAL;
	memcpy(sb->sd_magic, LOG_SB_MAGIC, LOG_MAGIC_LEN);
	sb->sd_version = LOG_FORMAT_VERSION;
	sb->sd_block_size = bs;
	sb->sd_seg_blocks = seg;
	sb->sd_nblocks = bdev_nblocks(d);
	sb->sd_seg_start = log_seg_start_for(seg);
	sb->sd_nsegments = log_nsegments_for(sb->sd_nblocks, sb->sd_seg_start, seg);
	if (sb->sd_nsegments < LOG_MIN_SEGMENTS)
		return -EINVAL;
	if (o->lfo_label)
		memcpy(sb->sd_label, o->lfo_label, strlen(o->lfo_label));
	sb->sd_ctime = (uint64_t)time(NULL);
	return log_uuid_fill(sb->sd_uuid, o->lfo_uuid);
}

int log_format(struct bdev *d, const struct log_format_opts *o)
{
	static const struct log_format_opts defaults;
	uint32_t bs = bdev_block_size(d);
	struct log_super_disk sb;
	unsigned char *buf;
	int err;

	err = log_super_build(d, o ? o : &defaults, &sb);
	if (err)
		return err;
	buf = calloc(2, bs);
	if (!buf)
		return -ENOMEM;
	err = bdev_write(d, LOG_CP_A_BLK, 2, buf); /* blank slots: no state */
	if (err)
		goto out_buf;
	log_super_encode(&sb, buf);
	err = bdev_write(d, LOG_SB_A_BLK, 1, buf);
	if (!err)
		err = bdev_write(d, sb.sd_nblocks - 1, 1, buf);
	if (!err)
		err = bdev_flush(d);
out_buf:
	free(buf);
	return err;
}

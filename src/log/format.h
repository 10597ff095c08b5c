/*
 * format.h - the on-disk structures of the segment log (private to
 * src/log/). docs/FORMAT.md describes the same bytes in prose; the two
 * must agree, and the _Static_asserts below pin every size and offset.
 *
 * Every multi-byte integer is little-endian on disk. The structs are
 * laid out with explicit widths and no implicit padding, so a struct in
 * memory is the bytes on disk once its integers are converted; the
 * log_*_le() helpers convert in place and are their own inverse (on a
 * little-endian host they do nothing).
 *
 * Checksums are XXH3_64bits with seed 0 (libxxhash). The superblock and
 * a checkpoint slot are checksummed over their struct with the checksum
 * field zero (in disk byte order); a log's header checksum covers whole
 * blocks (see struct log_header_disk).
 */
#ifndef CAIRN_LOG_FORMAT_H
#define CAIRN_LOG_FORMAT_H

#include <endian.h>
#include <stddef.h>
#include <stdint.h>

/* 2: mount nonces in log headers and slots; 3: a summary entry carries the
 * client's tag where it repeated the delta */
#define LOG_FORMAT_VERSION 3u

#define LOG_SB_MAGIC  "CAIRNSB1" /* superblock */
#define LOG_CP_MAGIC  "CAIRNCP1" /* checkpoint slot */
#define LOG_HDR_MAGIC "CAIRNLG1" /* log header */
#define LOG_MAGIC_LEN 8

/* Fixed blocks. Superblock B is the volume's last block (sd_nblocks - 1). */
#define LOG_SB_A_BLK	 0u
#define LOG_CP_A_BLK	 1u /* checkpoint slot A: odd cp_seq */
#define LOG_CP_B_BLK	 2u /* checkpoint slot B: even cp_seq */
#define LOG_FIXED_BLOCKS 3u /* blocks before the first possible segment */

/* Geometry limits. */
#define LOG_BLOCK_MIN	      512u
#define LOG_BLOCK_MAX	      65536u
#define LOG_SEG_BLOCKS_MIN    16u
#define LOG_SEG_BYTES_DEFAULT (4u << 20)   /* see FORMAT.md, "Segments" */
#define LOG_SEG_BYTES_MAX     (256u << 20) /* bounds the per-handle log buffer */
#define LOG_MIN_SEGMENTS      4u
#define LOG_LABEL_LEN	      64u /* including the terminating NUL */

/* The smallest log: a header, one summary block, one payload block. */
#define LOG_MIN_LOG_BLOCKS 3u

/* ---- superblock (blocks 0 and nblocks - 1) ---------------------------- */

struct log_super_disk {
	char sd_magic[LOG_MAGIC_LEN]; /* "CAIRNSB1" */
	uint32_t sd_version;	      /* LOG_FORMAT_VERSION */
	uint32_t sd_block_size;	      /* bytes per block */
	uint32_t sd_seg_blocks;	      /* blocks per segment */
	uint32_t sd_reserved;	      /* 0 */
	uint64_t sd_nblocks;	      /* device blocks used by the volume */
	uint64_t sd_seg_start;	      /* first block of segment 0 */
	uint64_t sd_nsegments;	      /* whole segments */
	uint8_t sd_uuid[16];
	char sd_label[LOG_LABEL_LEN]; /* NUL-terminated, zero-padded */
	uint64_t sd_ctime;	      /* format time, seconds since the epoch */
	uint64_t sd_features;	      /* 0: no feature bits are defined */
	uint64_t sd_checksum;	      /* over this struct, this field zero */
};

_Static_assert(sizeof(struct log_super_disk) == 152, "superblock size");
_Static_assert(offsetof(struct log_super_disk, sd_version) == 8, "sd_version");
_Static_assert(offsetof(struct log_super_disk, sd_block_size) == 12, "sd_block_size");
_Static_assert(offsetof(struct log_super_disk, sd_seg_blocks) == 16, "sd_seg_blocks");
_Static_assert(offsetof(struct log_super_disk, sd_nblocks) == 24, "sd_nblocks");
_Static_assert(offsetof(struct log_super_disk, sd_seg_start) == 32, "sd_seg_start");
_Static_assert(offsetof(struct log_super_disk, sd_nsegments) == 40, "sd_nsegments");
_Static_assert(offsetof(struct log_super_disk, sd_uuid) == 48, "sd_uuid");
_Static_assert(offsetof(struct log_super_disk, sd_label) == 64, "sd_label");
_Static_assert(offsetof(struct log_super_disk, sd_ctime) == 128, "sd_ctime");
_Static_assert(offsetof(struct log_super_disk, sd_features) == 136, "sd_features");
_Static_assert(offsetof(struct log_super_disk, sd_checksum) == 144, "sd_checksum");

static inline void log_super_le(struct log_super_disk *s)
{
	s->sd_version = htole32(s->sd_version);
	s->sd_block_size = htole32(s->sd_block_size);
	s->sd_seg_blocks = htole32(s->sd_seg_blocks);
	s->sd_reserved = htole32(s->sd_reserved);
	s->sd_nblocks = htole64(s->sd_nblocks);
	s->sd_seg_start = htole64(s->sd_seg_start);
	s->sd_nsegments = htole64(s->sd_nsegments);
	s->sd_ctime = htole64(s->sd_ctime);
	s->sd_features = htole64(s->sd_features);
	s->sd_checksum = htole64(s->sd_checksum);
}

/* ---- checkpoint slot (blocks 1 and 2) ---------------------------------- */

struct log_cp_disk {
	char cd_magic[LOG_MAGIC_LEN]; /* "CAIRNCP1" */
	uint32_t cd_version;	      /* LOG_FORMAT_VERSION */
	uint32_t cd_floor;	      /* the client's oldest readable delta (0: none);
					 deltas are 32-bit in the pipeline */
	uint64_t cd_cp_seq;	      /* rises by one per slot write; odd: A */
	uint64_t cd_log_seq;	      /* seq of the log holding the super root */
	uint64_t cd_log_blk;	      /* header block of that log */
	uint64_t cd_sr_blk;	      /* the super root block */
	uint64_t cd_delta;	      /* the super root's delta */
	uint64_t cd_log_nonce;	      /* hd_nonce of that log */
	uint8_t cd_uuid[16];	      /* the superblock's */
	uint64_t cd_checksum;	      /* over this struct, this field zero */
};

_Static_assert(sizeof(struct log_cp_disk) == 88, "checkpoint slot size");
_Static_assert(offsetof(struct log_cp_disk, cd_version) == 8, "cd_version");
_Static_assert(offsetof(struct log_cp_disk, cd_cp_seq) == 16, "cd_cp_seq");
_Static_assert(offsetof(struct log_cp_disk, cd_log_seq) == 24, "cd_log_seq");
_Static_assert(offsetof(struct log_cp_disk, cd_log_blk) == 32, "cd_log_blk");
_Static_assert(offsetof(struct log_cp_disk, cd_sr_blk) == 40, "cd_sr_blk");
_Static_assert(offsetof(struct log_cp_disk, cd_delta) == 48, "cd_delta");
_Static_assert(offsetof(struct log_cp_disk, cd_log_nonce) == 56, "cd_log_nonce");
_Static_assert(offsetof(struct log_cp_disk, cd_uuid) == 64, "cd_uuid");
_Static_assert(offsetof(struct log_cp_disk, cd_checksum) == 80, "cd_checksum");

static inline void log_cp_le(struct log_cp_disk *c)
{
	c->cd_version = htole32(c->cd_version);
	c->cd_floor = htole32(c->cd_floor);
	c->cd_cp_seq = htole64(c->cd_cp_seq);
	c->cd_log_seq = htole64(c->cd_log_seq);
	c->cd_log_blk = htole64(c->cd_log_blk);
	c->cd_sr_blk = htole64(c->cd_sr_blk);
	c->cd_delta = htole64(c->cd_delta);
	c->cd_log_nonce = htole64(c->cd_log_nonce);
	c->cd_checksum = htole64(c->cd_checksum);
}

/* ---- log header (first block of each log) ------------------------------ */

#define LOG_SR	      0x1u /* hd_flags: the last payload block is the super root */
#define LOG_HDR_FLAGS LOG_SR

/*
 * A log is 1 header block, hd_nblocks - 1 - hd_nentries summary blocks
 * (at least enough for hd_nentries entries; unused ones are zero), then
 * hd_nentries payload blocks. hd_sum_csum covers the header block (with
 * hd_sum_csum and hd_data_csum zero) followed by every summary block;
 * hd_data_csum covers the payload blocks.
 *
 * hd_nonce names the mount that wrote the log: a random nonzero value
 * drawn each time the write head is placed (a fresh volume opened, or
 * a recovery), the same in every log that mount writes. The link to the
 * previous log is hd_prev_nonce and hd_prev_sum, and hd_sum_csum covers
 * hd_nonce, so a log a later mount rewrites in place never links to
 * what an earlier mount left after it, even when its header and summary
 * are otherwise the same (log.c (3)).
 */
struct log_header_disk {
	char hd_magic[LOG_MAGIC_LEN]; /* "CAIRNLG1" */
	uint32_t hd_version;	      /* LOG_FORMAT_VERSION */
	uint32_t hd_flags;	      /* LOG_SR */
	uint64_t hd_seq;	      /* rises by one per log over the volume's life */
	uint64_t hd_delta;	      /* the delta the log belongs to */
	uint32_t hd_nblocks;	      /* 1 + summary blocks + payload blocks */
	uint32_t hd_nentries;	      /* payload blocks */
	uint64_t hd_next_blk;	      /* header block of the next log */
	uint8_t hd_uuid[16];	      /* the superblock's */
	uint64_t hd_nonce;	      /* the writing mount's; never 0 */
	uint64_t hd_prev_nonce;	      /* hd_nonce of the previous log; 0 for the first */
	uint64_t hd_prev_sum;	      /* hd_sum_csum of the previous log; 0 for the first */
	uint64_t hd_sum_csum;	      /* header block + summary blocks */
	uint64_t hd_data_csum;	      /* payload blocks */
};

_Static_assert(sizeof(struct log_header_disk) == 104, "log header size");
_Static_assert(offsetof(struct log_header_disk, hd_version) == 8, "hd_version");
_Static_assert(offsetof(struct log_header_disk, hd_flags) == 12, "hd_flags");
_Static_assert(offsetof(struct log_header_disk, hd_seq) == 16, "hd_seq");
_Static_assert(offsetof(struct log_header_disk, hd_delta) == 24, "hd_delta");
_Static_assert(offsetof(struct log_header_disk, hd_nblocks) == 32, "hd_nblocks");
_Static_assert(offsetof(struct log_header_disk, hd_nentries) == 36, "hd_nentries");
_Static_assert(offsetof(struct log_header_disk, hd_next_blk) == 40, "hd_next_blk");
_Static_assert(offsetof(struct log_header_disk, hd_uuid) == 48, "hd_uuid");
_Static_assert(offsetof(struct log_header_disk, hd_nonce) == 64, "hd_nonce");
_Static_assert(offsetof(struct log_header_disk, hd_prev_nonce) == 72, "hd_prev_nonce");
_Static_assert(offsetof(struct log_header_disk, hd_prev_sum) == 80, "hd_prev_sum");
_Static_assert(offsetof(struct log_header_disk, hd_sum_csum) == 88, "hd_sum_csum");
_Static_assert(offsetof(struct log_header_disk, hd_data_csum) == 96, "hd_data_csum");

static inline void log_header_le(struct log_header_disk *h)
{
	h->hd_version = htole32(h->hd_version);
	h->hd_flags = htole32(h->hd_flags);
	h->hd_seq = htole64(h->hd_seq);
	h->hd_delta = htole64(h->hd_delta);
	h->hd_nblocks = htole32(h->hd_nblocks);
	h->hd_nentries = htole32(h->hd_nentries);
	h->hd_next_blk = htole64(h->hd_next_blk);
	h->hd_nonce = htole64(h->hd_nonce);
	h->hd_prev_nonce = htole64(h->hd_prev_nonce);
	h->hd_prev_sum = htole64(h->hd_prev_sum);
	h->hd_sum_csum = htole64(h->hd_sum_csum);
	h->hd_data_csum = htole64(h->hd_data_csum);
}

/* ---- summary entry (block_size / 32 per summary block) ---------------- */

/* LOG_ENTRY_SUPER_ROOT and LOG_ENTRY_META are public (log.h). */
#define LOG_ENTRY_FLAGS (LOG_ENTRY_SUPER_ROOT | LOG_ENTRY_META)

struct log_entry_disk {
	uint64_t ed_owner;
	uint64_t ed_index;
	uint64_t ed_tag;      /* the client's (the volume: the block's virtual number) */
	uint32_t ed_flags;    /* LOG_ENTRY_* */
	uint32_t ed_reserved; /* 0 */
};

#define LOG_ENTRY_SIZE 32u
_Static_assert(sizeof(struct log_entry_disk) == LOG_ENTRY_SIZE, "summary entry size");
_Static_assert(offsetof(struct log_entry_disk, ed_index) == 8, "ed_index");
_Static_assert(offsetof(struct log_entry_disk, ed_tag) == 16, "ed_tag");
_Static_assert(offsetof(struct log_entry_disk, ed_flags) == 24, "ed_flags");
_Static_assert(offsetof(struct log_entry_disk, ed_reserved) == 28, "ed_reserved");

static inline void log_entry_le(struct log_entry_disk *e)
{
	e->ed_owner = htole64(e->ed_owner);
	e->ed_index = htole64(e->ed_index);
	e->ed_tag = htole64(e->ed_tag);
	e->ed_flags = htole32(e->ed_flags);
	e->ed_reserved = htole32(e->ed_reserved);
}

/* Summary blocks needed for @nentries entries in blocks of @bs bytes. */
static inline uint64_t log_sum_blocks(uint64_t nentries, uint32_t bs)
{
	return (nentries * LOG_ENTRY_SIZE + bs - 1) / bs;
}

#endif /* CAIRN_LOG_FORMAT_H */

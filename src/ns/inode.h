/*
 * inode.h - inode records and inode allocation (seed 002).
 *
 * An inode number is a vol owner: numbers start at INODE_ROOT
 * (VOL_FIRST_OWNER, the root directory) and a file's data lives in the
 * owner equal to its number. Two client metadata owners hold the rest:
 *
 *   INODE_FILE_OWNER (8)    the inode file: a 256-byte record per number,
 *                           record N at byte N * 256 (slot 0 is the
 *                           allocator's header, slots 1..15 are unused)
 *   INODE_BITMAP_OWNER (9)  the allocation bitmap: bit N set = inode N
 *                           in use (byte N / 8, bit N % 8)
 *
 * Both are ordinary owners, written inside the caller's vol transaction,
 * so deltas and copy-on-write cover them. inode.c describes the record
 * byte by byte, the allocator's invariants and its lock order.
 *
 * Generations: every allocation of a number gets a generation strictly
 * greater than any earlier (durable) use of that number, so (ino,
 * generation) never repeats over the volume's life.
 */
#ifndef CAIRN_NS_INODE_H
#define CAIRN_NS_INODE_H

#include <stdint.h>

#include "vol/vol.h"

#define INODE_FILE_OWNER   VOL_CLIENT_META
#define INODE_BITMAP_OWNER (VOL_CLIENT_META + 1)
#define INODE_ROOT	   VOL_FIRST_OWNER
#define INODE_REC_SIZE	   256u

#define INODE_SYMLINK_INLINE 80u /* a symlink target up to this long lives in the record */
#define INODE_XATTR_INLINE   40u /* bytes of inline xattr area (format: ns/xattr, later) */

/* ir_flags */
#define INODE_F_IN_USE 0x01u
#define INODE_F_ORPHAN 0x02u /* unlinked, still open: freed at last close or mount */
#define INODE_F_ALL    (INODE_F_IN_USE | INODE_F_ORPHAN)

/*
 * Worst-case blocks each call writes in the caller's transaction: add
 * them up for vol_txn_begin's @nblocks (each vol_write or
 * vol_write_range consumes one).
 */
#define IALLOC_ALLOC_BLOCKS 3u /* allocator header, bitmap block, record block */
#define IALLOC_FREE_BLOCKS  2u /* record block, bitmap block */
#define INODE_WRITE_BLOCKS  1u /* record block */

struct inode_time {
	int64_t it_sec; /* seconds since the epoch */
	uint32_t it_nsec;
};

/* An inode record in memory (the disk form is in inode.c). */
struct inode_rec {
	uint8_t ir_flags; /* INODE_F_* */
	uint32_t ir_mode; /* S_IF* type and permission bits */
	uint32_t ir_nlink;
	uint32_t ir_uid;
	uint32_t ir_gid;
	uint64_t ir_rdev;
	uint64_t ir_size;	 /* bytes */
	uint64_t ir_blocks;	 /* blocks in use by the file's data */
	uint64_t ir_gen;	 /* generation: kept by the caller as ialloc_alloc set it */
	uint64_t ir_parent;	 /* directories: parent hint; 0 otherwise */
	uint64_t ir_xattr_owner; /* owner holding xattrs that do not fit inline; 0: none */
	struct inode_time ir_atime, ir_mtime, ir_ctime, ir_btime;
	uint16_t ir_symlink_len; /* bytes of ir_symlink used (symlinks) */
	uint16_t ir_xattr_len;	 /* bytes of ir_xattr used */
	uint8_t ir_symlink[INODE_SYMLINK_INLINE];
	uint8_t ir_xattr[INODE_XATTR_INLINE];
};

/*
 * The largest inode number a volume of block size @bs can hold: the
 * inode file's last record must sit below VOL_MAX_INDEX, and the number
 * must be an owner (2^40 - 1 at 4 KiB blocks).
 */
uint64_t inode_max_ino(uint32_t bs);

/*
 * Encode @r as the record of @ino into @out (INODE_REC_SIZE bytes),
 * checksum included. -EINVAL for unknown flags or inline lengths past
 * their areas.
 */
int inode_encode(uint64_t ino, const struct inode_rec *r, void *out);
/*
 * Decode the record of @ino from @in. A record never written (all zero)
 * decodes as a free record of generation 0. -EUCLEAN for a bad checksum
 * (a record copied to another slot fails too), an unknown version or
 * flags, or lengths past their areas: it is never trusted.
 */
int inode_decode(uint64_t ino, const void *in, struct inode_rec *r);

/* Read and decode @ino's record. -EINVAL for a number out of range, -EUCLEAN, read errors. */
int inode_read(struct vol *v, uint64_t ino, struct inode_rec *r);
/*
 * Write @ino's record in @t (one block of it). The caller serializes
 * the changes of one inode and keeps ir_gen. Errors as inode_encode and
 * vol_write_range.
 */
int inode_write(struct vol_txn *t, uint64_t ino, const struct inode_rec *r);

/*
 * The allocator header's high mark: no inode number >= *@high was ever
 * allocated on the volume (for fsck: the range to check). -EUCLEAN for
 * a corrupt header, read errors.
 */
int inode_high(struct vol *v, uint64_t *high);

/* ---- allocation ----------------------------------------------------- */

struct ialloc;

struct ialloc_opts {
	uint64_t iao_max_ino; /* largest number handed out; 0: inode_max_ino() */
	uint32_t iao_cache;   /* free numbers kept in memory; 0: 256 */
};

/*
 * Create the allocator of the open volume @v (NULL @o: defaults). Reads
 * only the allocator's header (no bitmap scan), so it is fast whatever
 * the number of inodes. One allocator per volume; it must be destroyed
 * before vol_close. -EUCLEAN for a corrupt header, -EINVAL for a bad
 * option, -ENOMEM, read errors.
 */
int ialloc_create(struct vol *v, const struct ialloc_opts *o, struct ialloc **out);
/* Free @a. No allocation or free may be in progress. */
void ialloc_destroy(struct ialloc *a);

/*
 * Allocate an inode number in @t (IALLOC_ALLOC_BLOCKS of it): set its
 * bitmap bit and write an initialized record (in use, new generation,
 * every attribute zero) that the caller then fills with inode_write.
 * Thread-safe. Returns the number in @ino and its generation in @gen.
 * A free number whose record is corrupt is logged and set aside for
 * this allocator's life, and another is taken. -ENOSPC when every
 * number up to the maximum is in use; -EUCLEAN when the bitmap already
 * shows the number taken (the number is set aside); read and write
 * errors. On an error after the bitmap bit is set the number stays
 * allocated on disk (leaked, never handed out twice).
 */
int ialloc_alloc(struct ialloc *a, struct vol_txn *t, uint64_t *ino, uint64_t *gen);
/*
 * Free @ino in @t (IALLOC_FREE_BLOCKS of it): mark its record free,
 * keeping its generation, then clear its bit; the number may be handed
 * out again at once. -EINVAL for a number out of range or not in use,
 * -EBUSY if it is being allocated or freed, -EUCLEAN for a corrupt
 * record, read and write errors.
 */
int ialloc_free(struct ialloc *a, struct vol_txn *t, uint64_t ino);

#endif /* CAIRN_NS_INODE_H */

/*
 * inode.c - inode records and inode allocation (seed 002).
 *
 * ---- The inode record (INODE_FILE_OWNER's data) ------------------------
 *
 * The record of inode N is 256 bytes at byte N * 256 of owner 8, i.e. in
 * block N * 256 / bs at offset (N * 256) % bs. Integers are little-endian
 * with the width given; s64 is two's complement.
 *
 * | offset | size | field          | meaning                                   |
 * | -----: | ---: | -------------- | ----------------------------------------- |
 * |      0 |    1 | version        | 1 (0 with every other byte 0: never used) |
 * |      1 |    1 | flags          | 0x1 IN_USE, 0x2 ORPHAN; others 0          |
 * |      2 |    2 | symlink_len    | bytes of the inline symlink target, <= 80 |
 * |      4 |    4 | mode           | S_IF* type and permission bits            |
 * |      8 |    4 | nlink          | hard links                                |
 * |     12 |    4 | uid            |                                           |
 * |     16 |    4 | gid            |                                           |
 * |     20 |    2 | xattr_len      | bytes of the inline xattr area used, <= 40|
 * |     22 |    2 | reserved       | 0                                         |
 * |     24 |    8 | rdev           | device number (character, block devices)  |
 * |     32 |    8 | size           | bytes                                     |
 * |     40 |    8 | blocks         | blocks in use by the data                 |
 * |     48 |    8 | generation     | see below                                 |
 * |     56 |    8 | parent         | directories: parent hint; else 0          |
 * |     64 |    8 | xattr_owner    | owner of the xattrs not inline; 0: none   |
 * |     72 |    8 | atime_sec      | s64 seconds since the epoch               |
 * |     80 |    8 | mtime_sec      | s64                                       |
 * |     88 |    8 | ctime_sec      | s64                                       |
 * |     96 |    8 | btime_sec      | s64 (birth)                               |
 * |    104 |    4 | atime_nsec     | < 10^9                                    |
 * |    108 |    4 | mtime_nsec     | < 10^9                                    |
 * |    112 |    4 | ctime_nsec     | < 10^9                                    |
 * |    116 |    4 | btime_nsec     | < 10^9                                    |
 * |    120 |    8 | reserved       | 0                                         |
 * |    128 |   80 | symlink        | a target of <= 80 bytes (not terminated); |
 * |        |      |                | a longer one is the file's data           |
 * |    208 |   40 | xattr          | inline xattrs (their format: later)       |
 * |    248 |    8 | checksum       | XXH3_64bits_withSeed(bytes 0..247, N)     |
 *
 * The checksum is seeded with the inode number, so a record copied into
 * another slot fails it too. A record that fails it, or has an unknown
 * version or flag, or a length past its area, is -EUCLEAN and never
 * trusted. A free record keeps only version, flags 0 and generation.
 *
 * Slot 0 (bytes 0..255 of block 0) is the allocator's header, 32 bytes
 * then zeros; all zero on a volume whose allocator never wrote it:
 *
 * | offset | size | field    | meaning                                        |
 * | -----: | ---: | -------- | ---------------------------------------------- |
 * |      0 |    8 | magic    | "CAIRNIH1"                                     |
 * |      8 |    4 | version  | 1                                              |
 * |     12 |    4 | reserved | 0                                              |
 * |     16 |    8 | high     | no number >= high was ever allocated           |
 * |     24 |    8 | checksum | XXH3_64bits (seed 0) of bytes 0..23            |
 *
 * The bitmap (INODE_BITMAP_OWNER's data): bit N % 8 of byte N / 8 set
 * iff inode N is allocated. Bits below VOL_FIRST_OWNER are always 0.
 *
 * ---- The allocator (Bach, §4.6: the inode allocation race) -------------
 *
 * In memory: a cache of free numbers (a ring, the superblock free list),
 * refilled by scanning the bitmap from a rotating cursor over [first,
 * high), or, when the scan's window holds nothing, by taking never-used
 * numbers from high up ("bump"); and a set of busy numbers (a_busy).
 *
 *   take:    cache -> busy (a_lock)          ialloc.alloc.taken
 *   alloc:   read old record (generation), header high > N, set bit
 *            (fails if set), write record IN_USE gen+1
 *   settle:  busy -> gone, or SETTLED while a scan runs; a free's
 *            number goes to the cache (when there is room)
 *   scan:    a_scanning; read bitmap blocks with no a_lock
 *            (ialloc.scan.begin, ialloc.scan.read); merge under a_lock:
 *            skip busy, settled and cached numbers; drop SETTLED entries
 *
 * The seed's race: A takes I and sleeps before I's bit is written; B,
 * with the cache empty, scans and sees I free on disk; without the busy
 * set B would put I back in the cache and C would be handed I again.
 *
 * Invariants
 *   (1) The in-memory allocator is the authority: a number is in at most
 *       one of {cache, busy (BUSY or BAD)}, and a number is handed out
 *       only from the cache.
 *   (2) A number is made BUSY under a_lock before any I/O or wait on it
 *       (by ialloc_alloc when it leaves the cache, by ialloc_free before
 *       it reads the record), and stays so until its bit and record are
 *       written (or the attempt failed).
 *   (3) A scan reads the bitmap with no a_lock, so what it read may be
 *       stale. A number it found clear is put in the cache only if, at
 *       the merge, it is not busy and did not settle since the scan
 *       began: a number that settles while a_scanning stays in a_busy
 *       as SETTLED until that scan merges. A number whose bit a scan
 *       read clear and that is neither can only be free: every alloc
 *       and free of it is busy from before its bit changes until it
 *       settles, and a scan starts only with the cache empty, so a
 *       number cached at the merge was cached by a free that settled
 *       during the scan (SETTLED).
 *   (4) One scan at a time (a_scanning); the scanner owns a_scan_buf and
 *       a_scan_cand. Others wait on a_cond.
 *   (5) Every number >= a_high was never handed out in this allocator's
 *       life, and every number >= the header's high never on the volume;
 *       an allocation of N writes high > N (if needed) in its own
 *       transaction before its bit, so they reach the disk together.
 *   (6) A generation is the old record's + 1, read while the number is
 *       busy; free keeps it. A record never written has generation 0.
 *   (7) A bitmap block is read and changed only under its stripe lock
 *       (a_bm_lock), so two bits of one byte are never lost and a scan
 *       never reads a byte being written.
 *   (8) a_full (-ENOSPC without a scan) is set only by a scan of the
 *       whole range that found nothing and saw no free settle; any
 *       settled free clears it.
 *
 * Lock order: a_lock, a_hdr_lock and each a_bm_lock are leaves with
 * respect to each other (never nested). a_hdr_lock and a_bm_lock are
 * held across vol calls (the buffer cache's locks nest inside); a_lock
 * never is. SYNC_POINTs that may block are outside every ialloc lock;
 * ialloc.wait_locked (a thread waiting for a scan) is count-only.
 */
#include "ns/inode.h"
#include "util/syncpoint.h"
#include "util/util.h"

#include <endian.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

/* ---- the record on disk ----------------------------------------------- */

#define INODE_VERSION 1u
#define INODE_NSEC    1000000000u

struct inode_disk {
	uint8_t id_version;
	uint8_t id_flags;
	uint16_t id_symlink_len;
	uint32_t id_mode;
	uint32_t id_nlink;
	uint32_t id_uid;
	uint32_t id_gid;
	uint16_t id_xattr_len;
	uint16_t id_reserved0;
	uint64_t id_rdev;
	uint64_t id_size;
	uint64_t id_blocks;
	uint64_t id_gen;
	uint64_t id_parent;
	uint64_t id_xattr_owner;
	int64_t id_sec[4];   /* atime, mtime, ctime, btime */
	uint32_t id_nsec[4]; /* the same order */
	uint64_t id_reserved1;
	uint8_t id_symlink[INODE_SYMLINK_INLINE];
	uint8_t id_xattr[INODE_XATTR_INLINE];
	uint64_t id_checksum;
};

_Static_assert(sizeof(struct inode_disk) == INODE_REC_SIZE, "inode record size");
_Static_assert(offsetof(struct inode_disk, id_flags) == 1, "id_flags");
_Static_assert(offsetof(struct inode_disk, id_symlink_len) == 2, "id_symlink_len");
_Static_assert(offsetof(struct inode_disk, id_mode) == 4, "id_mode");
_Static_assert(offsetof(struct inode_disk, id_nlink) == 8, "id_nlink");
_Static_assert(offsetof(struct inode_disk, id_gid) == 16, "id_gid");
_Static_assert(offsetof(struct inode_disk, id_xattr_len) == 20, "id_xattr_len");
_Static_assert(offsetof(struct inode_disk, id_rdev) == 24, "id_rdev");
_Static_assert(offsetof(struct inode_disk, id_size) == 32, "id_size");
_Static_assert(offsetof(struct inode_disk, id_blocks) == 40, "id_blocks");
_Static_assert(offsetof(struct inode_disk, id_gen) == 48, "id_gen");
_Static_assert(offsetof(struct inode_disk, id_parent) == 56, "id_parent");
_Static_assert(offsetof(struct inode_disk, id_xattr_owner) == 64, "id_xattr_owner");
_Static_assert(offsetof(struct inode_disk, id_sec) == 72, "id_sec");
_Static_assert(offsetof(struct inode_disk, id_nsec) == 104, "id_nsec");
_Static_assert(offsetof(struct inode_disk, id_reserved1) == 120, "id_reserved1");
_Static_assert(offsetof(struct inode_disk, id_symlink) == 128, "id_symlink");
_Static_assert(offsetof(struct inode_disk, id_xattr) == 208, "id_xattr");
_Static_assert(offsetof(struct inode_disk, id_checksum) == 248, "id_checksum");

#define INODE_CSUM_BYTES offsetof(struct inode_disk, id_checksum)

uint64_t inode_max_ino(uint32_t bs)
{
	uint64_t recs = (VOL_MAX_INDEX + 1) * (uint64_t)(bs / INODE_REC_SIZE);

	return MIN(VOL_MAX_OWNER, recs - 1);
}

static bool inode_ino_valid(uint32_t bs, uint64_t ino)
{
	return ino >= VOL_FIRST_OWNER && ino <= inode_max_ino(bs);
}

static uint64_t inode_csum(uint64_t ino, const struct inode_disk *d)
{
	return XXH3_64bits_withSeed(d, INODE_CSUM_BYTES, ino);
}

static void inode_times_encode(const struct inode_rec *r, struct inode_disk *d)
{
	const struct inode_time *t[4] = {&r->ir_atime, &r->ir_mtime, &r->ir_ctime, &r->ir_btime};

	for (int i = 0; i < 4; i++) {
		d->id_sec[i] = (int64_t)htole64((uint64_t)t[i]->it_sec);
		d->id_nsec[i] = htole32(t[i]->it_nsec);
	}
}

static bool inode_rec_valid(const struct inode_rec *r)
{
	const struct inode_time *t[4] = {&r->ir_atime, &r->ir_mtime, &r->ir_ctime, &r->ir_btime};

	for (int i = 0; i < 4; i++)
		if (t[i]->it_nsec >= INODE_NSEC)
			return false;
	return !(r->ir_flags & ~INODE_F_ALL) && r->ir_symlink_len <= INODE_SYMLINK_INLINE &&
	       r->ir_xattr_len <= INODE_XATTR_INLINE;
}

int inode_encode(uint64_t ino, const struct inode_rec *r, void *out)
{
	struct inode_disk d = {0};

	if (!inode_rec_valid(r))
		return -EINVAL;
	d.id_version = INODE_VERSION;
	d.id_flags = r->ir_flags;
	d.id_symlink_len = htole16(r->ir_symlink_len);
	d.id_mode = htole32(r->ir_mode);
	d.id_nlink = htole32(r->ir_nlink);
	d.id_uid = htole32(r->ir_uid);
	d.id_gid = htole32(r->ir_gid);
	d.id_xattr_len = htole16(r->ir_xattr_len);
	d.id_rdev = htole64(r->ir_rdev);
	d.id_size = htole64(r->ir_size);
	d.id_blocks = htole64(r->ir_blocks);
	d.id_gen = htole64(r->ir_gen);
	d.id_parent = htole64(r->ir_parent);
	d.id_xattr_owner = htole64(r->ir_xattr_owner);
	inode_times_encode(r, &d);
	memcpy(d.id_symlink, r->ir_symlink, r->ir_symlink_len);
	memcpy(d.id_xattr, r->ir_xattr, r->ir_xattr_len);
	d.id_checksum = htole64(inode_csum(ino, &d));
	memcpy(out, &d, sizeof(d));
	return 0;
}

static void inode_decode_fields(const struct inode_disk *d, struct inode_rec *r)
{
	struct inode_time *t[4] = {&r->ir_atime, &r->ir_mtime, &r->ir_ctime, &r->ir_btime};

	r->ir_flags = d->id_flags;
	r->ir_symlink_len = le16toh(d->id_symlink_len);
	r->ir_mode = le32toh(d->id_mode);
	r->ir_nlink = le32toh(d->id_nlink);
	r->ir_uid = le32toh(d->id_uid);
	r->ir_gid = le32toh(d->id_gid);
	r->ir_xattr_len = le16toh(d->id_xattr_len);
	r->ir_rdev = le64toh(d->id_rdev);
	r->ir_size = le64toh(d->id_size);
	r->ir_blocks = le64toh(d->id_blocks);
	r->ir_gen = le64toh(d->id_gen);
	r->ir_parent = le64toh(d->id_parent);
	r->ir_xattr_owner = le64toh(d->id_xattr_owner);
	for (int i = 0; i < 4; i++) {
		t[i]->it_sec = (int64_t)le64toh((uint64_t)d->id_sec[i]);
		t[i]->it_nsec = le32toh(d->id_nsec[i]);
	}
	memcpy(r->ir_symlink, d->id_symlink, sizeof(r->ir_symlink));
	memcpy(r->ir_xattr, d->id_xattr, sizeof(r->ir_xattr));
}

int inode_decode(uint64_t ino, const void *in, struct inode_rec *r)
{
	struct inode_disk d;

	memcpy(&d, in, sizeof(d));
	memset(r, 0, sizeof(*r));
	if (util_all_zero(&d, sizeof(d)))
		return 0; /* never written: free, generation 0 */
	if (le64toh(d.id_checksum) != inode_csum(ino, &d) || d.id_version != INODE_VERSION)
		return -EUCLEAN;
	inode_decode_fields(&d, r);
	if (!inode_rec_valid(r) || d.id_reserved0 || d.id_reserved1)
		return -EUCLEAN;
	return 0;
}

static void inode_pos(uint32_t bs, uint64_t ino, uint64_t *blk, uint32_t *off)
{
	uint64_t byte = ino * INODE_REC_SIZE;

	*blk = byte / bs;
	*off = (uint32_t)(byte % bs);
}

int inode_read(struct vol *v, uint64_t ino, struct inode_rec *r)
{
	uint8_t raw[INODE_REC_SIZE];
	uint32_t bs = vol_block_size(v), off;
	uint64_t blk;
	int err;

	if (!inode_ino_valid(bs, ino))
		return -EINVAL;
	inode_pos(bs, ino, &blk, &off);
	err = vol_read_range(v, INODE_FILE_OWNER, blk, off, INODE_REC_SIZE, raw);
	if (err)
		return err;
	err = inode_decode(ino, raw, r);
	if (err)
		log_err("ns: inode %" PRIu64 ": bad record (owner %u block %" PRIu64 " offset %u)",
			ino, INODE_FILE_OWNER, blk, off);
	return err;
}

int inode_write(struct vol_txn *t, uint64_t ino, const struct inode_rec *r)
{
	uint8_t raw[INODE_REC_SIZE];
	uint32_t bs = vol_block_size(t->vt_vol), off;
	uint64_t blk;
	int err;

	if (!inode_ino_valid(bs, ino))
		return -EINVAL;
	err = inode_encode(ino, r, raw);
	if (err)
		return err;
	inode_pos(bs, ino, &blk, &off);
	return vol_write_range(t, INODE_FILE_OWNER, blk, off, INODE_REC_SIZE, raw);
}

/* ---- the allocator's header (slot 0) ---------------------------------- */

#define IALLOC_HDR_MAGIC   "CAIRNIH1"
#define IALLOC_HDR_VERSION 1u

struct ialloc_hdr_disk {
	char ih_magic[8];
	uint32_t ih_version;
	uint32_t ih_reserved;
	uint64_t ih_high;
	uint64_t ih_checksum;
};

_Static_assert(sizeof(struct ialloc_hdr_disk) == 32, "ialloc header size");
_Static_assert(offsetof(struct ialloc_hdr_disk, ih_high) == 16, "ih_high");
_Static_assert(offsetof(struct ialloc_hdr_disk, ih_checksum) == 24, "ih_checksum");

/* ---- the allocator ----------------------------------------------------- */

#define IALLOC_CACHE_DEFAULT 256u
#define IALLOC_BUMP_MAX	     32u /* never-used numbers put in the cache at once */
#define IALLOC_BM_STRIPES    16u
#define IALLOC_SCAN_WINDOW   8u /* bitmap blocks a refill reads before it bumps */

enum ialloc_busy_state {
	IB_BUSY,    /* being allocated or freed */
	IB_SETTLED, /* settled while a scan ran: hidden from that scan's merge */
	IB_BAD,	    /* corrupt record or bitmap: set aside for the allocator's life */
};

struct ialloc_busy {
	uint64_t ib_ino;
	enum ialloc_busy_state ib_state;
};

struct ialloc {
	struct vol *a_vol;	 /* const */
	uint32_t a_bs;		 /* const */
	uint64_t a_max;		 /* const: largest number handed out */
	uint32_t a_cache_cap;	 /* const */
	uint64_t a_bits_per_blk; /* const */

	struct cmutex a_lock;
	pthread_cond_t a_cond;	      /* a scan ended; with a_lock */
	uint64_t *a_cache;	      /* ring of free numbers; a_lock */
	uint32_t a_cache_head;	      /* a_lock */
	uint32_t a_cache_n;	      /* a_lock */
	struct ialloc_busy *a_busy;   /* a_lock */
	uint32_t a_nbusy, a_busy_cap; /* a_lock */
	bool a_scanning;	      /* a_lock; invariant (4) */
	bool a_full;		      /* a_lock; invariant (8) */
	uint64_t a_frees;	      /* frees settled; a_lock */
	uint64_t a_cursor;	      /* next number a scan examines; a_lock */
	uint64_t a_high;	      /* invariant (5); a_lock */

	uint8_t *a_scan_buf;   /* one bitmap block; the scanner's */
	uint64_t *a_scan_cand; /* a_cache_cap numbers; the scanner's */

	struct cmutex a_hdr_lock;
	uint64_t a_hdr_high; /* high as written (in some transaction); a_hdr_lock */

	struct cmutex a_bm_lock[IALLOC_BM_STRIPES]; /* invariant (7) */
};

/* What one refill scan looks at and found. */
struct ialloc_scan {
	uint64_t is_pos;   /* in: where to start; out: where the next scan starts */
	uint64_t is_end;   /* numbers below it are scanned */
	bool is_all;	   /* no bump possible: do not stop at the window */
	uint32_t is_n;	   /* candidates found */
	bool is_complete;  /* examined the whole range */
	uint64_t is_frees; /* a_frees when it began */
};

static int ialloc_hdr_decode(const uint8_t *slot, uint64_t max, uint64_t *high)
{
	struct ialloc_hdr_disk h;

	if (util_all_zero(slot, INODE_REC_SIZE)) {
		*high = VOL_FIRST_OWNER;
		return 0;
	}
	memcpy(&h, slot, sizeof(h));
	if (memcmp(h.ih_magic, IALLOC_HDR_MAGIC, 8) ||
	    le32toh(h.ih_version) != IALLOC_HDR_VERSION || h.ih_reserved ||
	    le64toh(h.ih_checksum) != XXH3_64bits(&h, 24) ||
	    !util_all_zero(slot + sizeof(h), INODE_REC_SIZE - sizeof(h)))
		return -EUCLEAN;
	*high = le64toh(h.ih_high);
	if (*high < VOL_FIRST_OWNER || *high > max + 1)
		return -EUCLEAN;
	return 0;
}

static int ialloc_hdr_read(struct ialloc *a)
{
	uint8_t slot[INODE_REC_SIZE];
	int err;

	err = vol_read_range(a->a_vol, INODE_FILE_OWNER, 0, 0, INODE_REC_SIZE, slot);
	if (err)
		return err;
	err = ialloc_hdr_decode(slot, inode_max_ino(a->a_bs), &a->a_hdr_high);
	if (err)
		log_err("ns: inode allocator header is corrupt (owner %u block 0)",
			INODE_FILE_OWNER);
	return err;
}

/* Make the header say high > @ino (at least @hint) in @t, if it does not yet. */
static int ialloc_hdr_cover(struct ialloc *a, struct vol_txn *t, uint64_t ino, uint64_t hint)
{
	uint8_t slot[INODE_REC_SIZE] = {0};
	struct ialloc_hdr_disk h = {.ih_version = htole32(IALLOC_HDR_VERSION)};
	uint64_t high = MIN(MAX(ino + 1, hint), a->a_max + 1);
	int err = 0;

	cmutex_lock(&a->a_hdr_lock);
	if (a->a_hdr_high > ino)
		goto out;
	memcpy(h.ih_magic, IALLOC_HDR_MAGIC, 8);
	h.ih_high = htole64(high);
	h.ih_checksum = htole64(XXH3_64bits(&h, 24));
	memcpy(slot, &h, sizeof(h));
	err = vol_write_range(t, INODE_FILE_OWNER, 0, 0, INODE_REC_SIZE, slot);
	if (!err)
		a->a_hdr_high = high;
out:
	cmutex_unlock(&a->a_hdr_lock);
	return err;
}

/* ---- bitmap --------------------------------------------------------------- */

static struct cmutex *ialloc_bm_lock(struct ialloc *a, uint64_t blk)
{
	return &a->a_bm_lock[blk % IALLOC_BM_STRIPES];
}

/*
 * Set (@set) or clear bit @ino in @t, under its block's stripe lock.
 * -EUCLEAN if it is already set when setting, -EINVAL if already clear
 * when clearing (nothing written then).
 */
static int ialloc_bm_change(struct ialloc *a, struct vol_txn *t, uint64_t ino, bool set)
{
	uint64_t byte = ino / 8, blk = byte / a->a_bs;
	uint32_t off = (uint32_t)(byte % a->a_bs);
	uint8_t mask = (uint8_t)(1u << (ino % 8)), val;
	struct cmutex *l = ialloc_bm_lock(a, blk);
	int err;

	cmutex_lock(l);
	err = vol_read_range(a->a_vol, INODE_BITMAP_OWNER, blk, off, 1, &val);
	if (err)
		goto out;
	if (!!(val & mask) == set) {
		err = set ? -EUCLEAN : -EINVAL;
		goto out;
	}
	val = set ? (uint8_t)(val | mask) : (uint8_t)(val & ~mask);
	err = vol_write_range(t, INODE_BITMAP_OWNER, blk, off, 1, &val);
out:
	cmutex_unlock(l);
	return err;
}

/* ---- cache and busy set (a_lock) ------------------------------------------ */

static bool ialloc_cache_has_locked(struct ialloc *a, uint64_t ino)
{
	for (uint32_t i = 0; i < a->a_cache_n; i++)
		if (a->a_cache[(a->a_cache_head + i) % a->a_cache_cap] == ino)
			return true;
	return false;
}

static bool ialloc_cache_push_locked(struct ialloc *a, uint64_t ino)
{
	assert(cmutex_held(&a->a_lock));
	if (a->a_cache_n == a->a_cache_cap)
		return false;
	a->a_cache[(a->a_cache_head + a->a_cache_n++) % a->a_cache_cap] = ino;
	return true;
}

static uint64_t ialloc_cache_pop_locked(struct ialloc *a)
{
	uint64_t ino = a->a_cache[a->a_cache_head];

	assert(cmutex_held(&a->a_lock) && a->a_cache_n);
	a->a_cache_head = (a->a_cache_head + 1) % a->a_cache_cap;
	a->a_cache_n--;
	return ino;
}

static struct ialloc_busy *ialloc_busy_find_locked(struct ialloc *a, uint64_t ino)
{
	assert(cmutex_held(&a->a_lock));
	for (uint32_t i = 0; i < a->a_nbusy; i++)
		if (a->a_busy[i].ib_ino == ino)
			return &a->a_busy[i];
	return NULL;
}

static int ialloc_busy_add_locked(struct ialloc *a, uint64_t ino)
{
	assert(cmutex_held(&a->a_lock));
	if (a->a_nbusy == a->a_busy_cap) {
		uint32_t cap = a->a_busy_cap ? a->a_busy_cap * 2 : 16;
		struct ialloc_busy *nb = realloc(a->a_busy, cap * sizeof(*nb));

		if (!nb)
			return -ENOMEM;
		a->a_busy = nb;
		a->a_busy_cap = cap;
	}
	a->a_busy[a->a_nbusy++] = (struct ialloc_busy){.ib_ino = ino, .ib_state = IB_BUSY};
	return 0;
}

static void ialloc_busy_del_locked(struct ialloc *a, struct ialloc_busy *b)
{
	*b = a->a_busy[--a->a_nbusy];
}

/* Drop the entries that settled during the scan that ends. */
static void ialloc_busy_reap_locked(struct ialloc *a)
{
	for (uint32_t i = 0; i < a->a_nbusy;) {
		if (a->a_busy[i].ib_state == IB_SETTLED)
			ialloc_busy_del_locked(a, &a->a_busy[i]);
		else
			i++;
	}
}

/* How the work on a busy number ended. */
enum ialloc_outcome {
	IO_USED,    /* allocated */
	IO_FREED,   /* freed: cache it if there is room */
	IO_UNKNOWN, /* failed: its bit may be either; a later scan decides */
	IO_BAD,	    /* corrupt record or bitmap: set aside for good */
};

/*
 * Mark @ino busy (invariant (2)): a new entry, or one that settled
 * during the running scan made busy again (the scan must still skip it).
 */
static int ialloc_busy_mark_locked(struct ialloc *a, uint64_t ino)
{
	struct ialloc_busy *b = ialloc_busy_find_locked(a, ino);

	if (!b)
		return ialloc_busy_add_locked(a, ino);
	assert(b->ib_state == IB_SETTLED);
	b->ib_state = IB_BUSY;
	return 0;
}

/* The work on busy @ino is over (invariants (3), (8)). */
static void ialloc_settle(struct ialloc *a, uint64_t ino, enum ialloc_outcome how)
{
	struct ialloc_busy *b;

	cmutex_lock(&a->a_lock);
	b = ialloc_busy_find_locked(a, ino);
	assert(b && b->ib_state == IB_BUSY);
	if (how == IO_BAD)
		b->ib_state = IB_BAD;
	else if (a->a_scanning)
		b->ib_state = IB_SETTLED; /* invariant (3) */
	else
		ialloc_busy_del_locked(a, b);
	if (how == IO_FREED || how == IO_UNKNOWN) {
		a->a_frees++;
		a->a_full = false;
	}
	if (how == IO_FREED)
		ialloc_cache_push_locked(a, ino); /* full: a later scan finds it */
	cmutex_unlock(&a->a_lock);
}

/* ---- refill ------------------------------------------------------------------ */

/* Collect clear bits of one bitmap block (in a_scan_buf) from s->is_pos. */
static void ialloc_scan_block(struct ialloc *a, struct ialloc_scan *s, uint64_t stop,
			      uint64_t *seen)
{
	uint64_t pos = s->is_pos, base = pos - pos % a->a_bits_per_blk;

	while (pos < stop && s->is_n < a->a_cache_cap) {
		uint64_t bit = pos - base;

		if (bit % 8 == 0 && pos + 8 <= stop && a->a_scan_buf[bit / 8] == 0xff) {
			pos += 8;
			*seen += 8;
			continue;
		}
		if (!(a->a_scan_buf[bit / 8] & (1u << (bit % 8))))
			a->a_scan_cand[s->is_n++] = pos;
		pos++;
		(*seen)++;
	}
	s->is_pos = pos;
}

/*
 * Scan the bitmap from s->is_pos over [VOL_FIRST_OWNER, s->is_end),
 * wrapping, for up to a_cache_cap clear bits; stop after
 * IALLOC_SCAN_WINDOW blocks unless s->is_all and nothing was found.
 * Called by the scanner with no lock held.
 */
static int ialloc_scan(struct ialloc *a, struct ialloc_scan *s)
{
	uint64_t first = VOL_FIRST_OWNER, len = s->is_end - first, seen = 0;
	unsigned blocks = 0;
	int err;

	if (s->is_pos < first || s->is_pos >= s->is_end)
		s->is_pos = first;
	while (seen < len && s->is_n < a->a_cache_cap) {
		uint64_t blk = s->is_pos / a->a_bits_per_blk;
		struct cmutex *l = ialloc_bm_lock(a, blk);

		if (blocks == IALLOC_SCAN_WINDOW && (s->is_n || !s->is_all))
			break;
		cmutex_lock(l);
		err = vol_read(a->a_vol, INODE_BITMAP_OWNER, blk, a->a_scan_buf);
		cmutex_unlock(l);
		if (err)
			return err;
		SYNC_POINT("ialloc.scan.read");
		ialloc_scan_block(a, s, MIN(s->is_end, (blk + 1) * a->a_bits_per_blk), &seen);
		blocks++;
		if (s->is_pos == s->is_end)
			s->is_pos = first;
	}
	s->is_complete = seen >= len;
	return 0;
}

/*
 * Hand out never-used numbers from a_high up, at most IALLOC_BUMP_MAX:
 * numbers freed meanwhile queue behind them in the cache, so the fewer
 * new ones it holds, the sooner freed ones are used again and the less
 * the inode file grows under create and delete churn.
 */
static void ialloc_bump_locked(struct ialloc *a)
{
	for (unsigned n = 0;
	     n < IALLOC_BUMP_MAX && a->a_high <= a->a_max && ialloc_cache_push_locked(a, a->a_high);
	     n++)
		a->a_high++;
}

/* The scan is over: put what it found in the cache (invariant (3)). */
static void ialloc_merge_locked(struct ialloc *a, const struct ialloc_scan *s)
{
	uint32_t usable = 0;

	for (uint32_t i = 0; i < s->is_n; i++) {
		uint64_t ino = a->a_scan_cand[i];

		if (ialloc_busy_find_locked(a, ino) || ialloc_cache_has_locked(a, ino))
			continue;
		usable += ialloc_cache_push_locked(a, ino);
	}
	a->a_cursor = s->is_pos;
	if (usable || a->a_cache_n)
		return;
	if (a->a_high <= a->a_max)
		ialloc_bump_locked(a);
	else if (s->is_complete && a->a_frees == s->is_frees)
		a->a_full = true;
}

/*
 * Refill the empty cache: become the scanner, scan with a_lock dropped,
 * merge. Called and returns with a_lock held.
 */
static int ialloc_refill_locked(struct ialloc *a)
{
	struct ialloc_scan s = {.is_pos = a->a_cursor,
				.is_end = MIN(a->a_high, a->a_max + 1),
				.is_all = a->a_high > a->a_max,
				.is_frees = a->a_frees};
	int err;

	assert(cmutex_held(&a->a_lock) && !a->a_scanning && !a->a_cache_n);
	a->a_scanning = true;
	cmutex_unlock(&a->a_lock);
	SYNC_POINT("ialloc.scan.begin");
	err = ialloc_scan(a, &s);
	cmutex_lock(&a->a_lock);
	if (!err)
		ialloc_merge_locked(a, &s);
	ialloc_busy_reap_locked(a);
	a->a_scanning = false;
	pthread_cond_broadcast(&a->a_cond);
	return err;
}

/*
 * Take a free number from the cache, refilling it if empty, and mark it
 * busy (invariant (2)). @high: a_high then, a hint for the header.
 */
static int ialloc_take(struct ialloc *a, uint64_t *ino, uint64_t *high)
{
	int err = 0;

	cmutex_lock(&a->a_lock);
	for (;;) {
		if (a->a_cache_n) {
			*ino = ialloc_cache_pop_locked(a);
			*high = a->a_high;
			err = ialloc_busy_mark_locked(a, *ino);
			if (err) /* back where it was: nobody took it */
				ialloc_cache_push_locked(a, *ino);
			break;
		}
		if (a->a_scanning) {
			SYNC_POINT("ialloc.wait_locked");
			cmutex_wait(&a->a_lock, &a->a_cond);
			continue;
		}
		if (a->a_full) {
			err = -ENOSPC;
			break;
		}
		err = ialloc_refill_locked(a);
		if (err)
			break;
	}
	cmutex_unlock(&a->a_lock);
	return err;
}

/* ---- alloc and free ----------------------------------------------------------- */

/* Read busy @ino's record for an allocation: its generation. */
static int ialloc_old_gen(struct ialloc *a, uint64_t ino, uint64_t *gen)
{
	struct inode_rec old;
	int err;

	err = inode_read(a->a_vol, ino, &old);
	if (err)
		return err;
	*gen = old.ir_gen + 1;
	return 0;
}

/* Allocate busy @ino in @t: header, bit, record (invariants (5), (6)). */
static int ialloc_init(struct ialloc *a, struct vol_txn *t, uint64_t ino, uint64_t high,
		       uint64_t gen)
{
	struct inode_rec r = {.ir_flags = INODE_F_IN_USE, .ir_gen = gen};
	int err;

	err = ialloc_hdr_cover(a, t, ino, high);
	if (err)
		return err;
	err = ialloc_bm_change(a, t, ino, true);
	if (err == -EUCLEAN)
		log_err("ns: inode %" PRIu64 " is free in memory but set in the bitmap", ino);
	if (err)
		return err;
	return inode_write(t, ino, &r);
}

int ialloc_alloc(struct ialloc *a, struct vol_txn *t, uint64_t *ino, uint64_t *gen)
{
	uint64_t n, high, g;
	int err;

	for (;;) {
		err = ialloc_take(a, &n, &high);
		if (err)
			return err;
		SYNC_POINT("ialloc.alloc.taken");
		err = ialloc_old_gen(a, n, &g);
		if (err != -EUCLEAN)
			break;
		ialloc_settle(a, n, IO_BAD); /* set aside; take another */
	}
	if (!err)
		err = ialloc_init(a, t, n, high, g);
	ialloc_settle(a, n, !err ? IO_USED : err == -EUCLEAN ? IO_BAD : IO_UNKNOWN);
	if (!err) {
		*ino = n;
		*gen = g;
	}
	return err;
}

/* Mark @ino's record free (keeping its generation), then clear its bit. */
static int ialloc_release(struct ialloc *a, struct vol_txn *t, uint64_t ino)
{
	struct inode_rec r;
	int err;

	err = inode_read(a->a_vol, ino, &r);
	if (err)
		return err;
	if (!(r.ir_flags & INODE_F_IN_USE)) {
		log_err("ns: free of inode %" PRIu64 ", which is not in use", ino);
		return -EINVAL;
	}
	r = (struct inode_rec){.ir_gen = r.ir_gen};
	err = inode_write(t, ino, &r);
	if (err)
		return err;
	err = ialloc_bm_change(a, t, ino, false);
	if (err == -EINVAL)
		log_err("ns: inode %" PRIu64 " is in use but clear in the bitmap", ino);
	return err;
}

int ialloc_free(struct ialloc *a, struct vol_txn *t, uint64_t ino)
{
	struct ialloc_busy *b;
	int err;

	if (!inode_ino_valid(a->a_bs, ino))
		return -EINVAL;
	cmutex_lock(&a->a_lock);
	b = ialloc_busy_find_locked(a, ino);
	if (b && b->ib_state != IB_SETTLED)
		err = b->ib_state == IB_BAD ? -EUCLEAN : -EBUSY;
	else if (ialloc_cache_has_locked(a, ino))
		err = -EINVAL; /* free already */
	else
		err = ialloc_busy_mark_locked(a, ino);
	cmutex_unlock(&a->a_lock);
	if (err)
		return err;
	SYNC_POINT("ialloc.free.taken");
	err = ialloc_release(a, t, ino);
	ialloc_settle(a, ino, err ? IO_UNKNOWN : IO_FREED);
	return err;
}

/* ---- create and destroy --------------------------------------------------------- */

static int ialloc_locks_init(struct ialloc *a)
{
	int err = pthread_cond_init(&a->a_cond, NULL);

	if (err)
		return -err;
	cmutex_init(&a->a_lock);
	cmutex_init(&a->a_hdr_lock);
	for (unsigned i = 0; i < IALLOC_BM_STRIPES; i++)
		cmutex_init(&a->a_bm_lock[i]);
	return 0;
}

static void ialloc_locks_destroy(struct ialloc *a)
{
	pthread_cond_destroy(&a->a_cond);
	for (unsigned i = 0; i < IALLOC_BM_STRIPES; i++)
		cmutex_destroy(&a->a_bm_lock[i]);
	cmutex_destroy(&a->a_hdr_lock);
	cmutex_destroy(&a->a_lock);
}

static void ialloc_free_mem(struct ialloc *a)
{
	free(a->a_cache);
	free(a->a_scan_buf);
	free(a->a_scan_cand);
	free(a->a_busy);
	free(a);
}

static int ialloc_config(struct ialloc *a, struct vol *v, const struct ialloc_opts *o)
{
	struct ialloc_opts def = {0};

	if (!o)
		o = &def;
	a->a_vol = v;
	a->a_bs = vol_block_size(v);
	a->a_bits_per_blk = (uint64_t)a->a_bs * 8;
	a->a_max = o->iao_max_ino ? o->iao_max_ino : inode_max_ino(a->a_bs);
	a->a_cache_cap = o->iao_cache ? o->iao_cache : IALLOC_CACHE_DEFAULT;
	if (a->a_max < VOL_FIRST_OWNER || a->a_max > inode_max_ino(a->a_bs))
		return -EINVAL;
	a->a_cache = calloc(a->a_cache_cap, sizeof(*a->a_cache));
	a->a_scan_cand = calloc(a->a_cache_cap, sizeof(*a->a_scan_cand));
	a->a_scan_buf = malloc(a->a_bs);
	if (!a->a_cache || !a->a_scan_cand || !a->a_scan_buf)
		return -ENOMEM;
	return 0;
}

int ialloc_create(struct vol *v, const struct ialloc_opts *o, struct ialloc **out)
{
	struct ialloc *a = calloc(1, sizeof(*a));
	int err;

	if (!a)
		return -ENOMEM;
	err = ialloc_config(a, v, o);
	if (err)
		goto out_mem;
	err = ialloc_hdr_read(a);
	if (err)
		goto out_mem;
	err = ialloc_locks_init(a);
	if (err)
		goto out_mem;
	a->a_high = a->a_hdr_high;
	a->a_cursor = VOL_FIRST_OWNER;
	*out = a;
	return 0;
out_mem:
	ialloc_free_mem(a);
	return err;
}

void ialloc_destroy(struct ialloc *a)
{
	if (!a)
		return;
	for (uint32_t i = 0; i < a->a_nbusy; i++)
		assert(a->a_busy[i].ib_state == IB_BAD);
	assert(!a->a_scanning);
	ialloc_locks_destroy(a);
	ialloc_free_mem(a);
}

int inode_high(struct vol *v, uint64_t *high)
{
	uint8_t slot[INODE_REC_SIZE];
	int err;

	err = vol_read_range(v, INODE_FILE_OWNER, 0, 0, INODE_REC_SIZE, slot);
	if (!err)
		err = ialloc_hdr_decode(slot, inode_max_ino(vol_block_size(v)), high);
	return err;
}

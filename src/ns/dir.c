/*
 * dir.c - directories: a B+tree of names keyed by a keyed hash, in the
 * blocks of one vol owner per directory.
 *
 * A directory D keeps its entries in vol owner D: block 0 is its header,
 * the other blocks are the nodes of a B+tree whose keys are 63-bit
 * values made from the name,
 *
 *     key = p << 8 | seq     p   = the top 55 bits of XXH3_64(name, seed),
 *                                  clamped to [1, 2^55 - 2]
 *                            seq = 0..255, the smallest not taken by
 *                                  another name of the same p
 *
 * so names of one hash (a collision group) have adjacent keys, and a
 * key never changes while its name exists. The seed is drawn at
 * dir_create (random: the hash is keyed, so nobody can aim names at one
 * group) and kept in the header. A group holds at most 256 names; a 257th
 * is -ENOSPC, which chance does not reach (2^-2000 or so per name at a
 * million names). The test hook dh_hash_bits keeps fewer bits of p,
 * recorded in the header, so collisions can be forced.
 *
 * Lookup descends root -> leaf for p << 8 and scans the group's keys
 * (rarely more than one entry, at most across one leaf boundary),
 * comparing names. Readdir returns entries in key order; the cookie
 * after an entry is its key + 1 ('.' is 1, '..' 2, keys start at 256),
 * and resuming from a cookie descends to the first key at or after it.
 * Since a key is fixed for its name's lifetime and the order is by key,
 * an entry that exists for a whole listing is returned exactly once,
 * whatever splits and merges happen between calls; a removed name's key
 * may be reused by a later name of the same group (and then listed or
 * not, like any added name). Two live names never share a key, so
 * never a cookie.
 *
 * Nodes have no sibling links (a split or merge would have to rewrite
 * neighbours): a scan that runs off a leaf descends again from the root
 * for the leaf's upper bound, which the descent recorded.
 *
 * Invariants (dir_check verifies every one)
 *   (1) The header's magic, version, directory, checksum and block size
 *       are right; its height is 1..dir_max_height(bs).
 *   (2) Every tree block is reachable once, at the level its header
 *       names; a leaf holds only keys in its parent's range [lo, hi),
 *       strictly increasing; an internal node's key 0 is its lo and its
 *       other keys strictly increase inside (lo, hi).
 *   (3) A non-root internal node has at least ceil(F/2) children (F per
 *       block), the root at least 2 when internal; a non-root leaf holds
 *       at least one entry. (So a tree's height is bounded, below.)
 *   (4) Every entry's key has the p of its name's hash; names are valid
 *       (1..255 bytes, no '/' or NUL, not "." or ".."), unique; inos are
 *       nonzero.
 *   (5) The entries add up to the header's count and the tree blocks to
 *       its node count.
 *   (6) Every index in [0, hwm) is exactly one of: the header, a tree
 *       block, a free-list block, or a free index (listed in the header
 *       or a free-list block, and punched: it reads as zeros).
 *
 * Space. Tree blocks are allocated from the header's free array, then
 * the free-list chain, then the high-water mark. A freed block is
 * punched (its space goes back to the log) and its index pushed on the
 * header's array; when that is full, the freed block itself becomes a
 * free-list block holding the array's indexes (so one block of storage
 * per (bs-40)/8 free indexes, 0.2% at 4 KiB) and the array starts over.
 * Allocation takes a free-list block back (its indexes refill the array)
 * before raising the high-water mark. Nothing is ever leaked.
 *
 * Shrinking. A leaf left empty always merges into a sibling; a leaf below
 * a quarter full merges when the two fit in three quarters of a block
 * (room left, so the next insert does not split it again). Internal
 * nodes merge or borrow as in any B+tree, and a root left with one child
 * is replaced by it. A directory that shrinks back so returns its tree
 * blocks; what stays is the free-list blocks (one per (bs-40)/8 blocks
 * of the peak) and the high-water mark of indexes (sparse: no space).
 *
 * Worst case per operation (dir_op_blocks). F = (bs - 32) / 16 children
 * per internal node, m = ceil(F/2). A tree of height H >= 2 has at least
 * 2 * m^(H-2) leaves, each holding an entry, and there are fewer than
 * 2^63 keys: H <= Hmax, the largest H with 2 * m^(H-2) <= 2^63 (17 at
 * 512 bytes, 10 at 4 KiB). An insert writes the header, the leaf and at
 * most 2 new leaves (at 512 bytes two 273-byte entries do not fit a leaf,
 * so a full leaf can split in three), then per level above the node and
 * one new sibling, and a new root: 1 + 3 + 2 (H-1) + 1 = 2H + 3. A
 * remove writes the header, per level below the root the node and its
 * sibling (merged: punched or made a free-list block), and the root (or
 * punches it when it collapses): 2H. Replace and set-parent write one
 * block, create two. So 2 Hmax + 3: 37 at 512 bytes, 23 at 4 KiB.
 *
 * Errors. Every block read is checked (magic, version, directory,
 * level, checksum, and the bytes parse) before use: damage is -EUCLEAN
 * with a log line naming the block, never a crash. A changing operation
 * does every read before its first write (blocks it changes are kept in
 * memory and written at the end), so a read error or damage found
 * changes nothing. A write failing midway could leave a partial change
 * in the transaction: the volume has no transaction abort (vol_write
 * fails only for a caller's mistake or out of memory today).
 *
 * Locking: none here. The caller holds the directory's lock, exclusive
 * for changes and shared for reads; readers only read (vol_read copies).
 *
 * ---- On-disk format (little-endian; for docs/FORMAT.md) ------------------
 *
 * Every block of a directory starts with the same 32 bytes:
 *
 *   offset size field
 *   0      4    magic      "CDH1" 0x31484443 header, "CDN1" 0x314e4443
 *                          internal node, "CDL1" 0x314c4443 leaf,
 *                          "CDF1" 0x31464443 free-list block
 *   4      2    version    1
 *   6      2    level      header: hash bits (0: 55) in the low byte;
 *                          nodes: 0 for a leaf, height-1 at the root;
 *                          free-list block: 0
 *   8      8    dir        the directory's inode number (vol owner)
 *   16     8    csum       XXH3_64 of the whole block with this field
 *                          zero, seeded with dir * 0x9e3779b97f4a7c15 ^
 *                          block index (a block in the wrong place fails)
 *   24     4    count      header: block size; internal: children; leaf:
 *                          entries; free-list: indexes held
 *   28     4    used       header: tree height; internal: 16 * count;
 *                          leaf: bytes of entries; free-list: 8 * count
 *
 * Header (index 0), then:
 *   32     8    parent     '..' inode number
 *   40     8    entries    live names ('.' and '..' not counted)
 *   48     8    seed       XXH3 seed of the name hash
 *   56     8    root       index of the root node (a leaf when height 1)
 *   64     8    nodes      tree blocks
 *   72     8    hwm        indexes [0, hwm) have been used
 *   80     8    free_head  first free-list block, 0: none
 *   88     8    free_chain free-list blocks in the chain
 *   96     4    nfree      indexes in the free array
 *   100    4    reserved   0
 *   104    8*n  free[]     free (punched) indexes, n = (bs - 104) / 8
 *
 * Internal node: after the 32 bytes, count entries of 16 bytes:
 *   0      8    key        lowest key of the child (entry 0: the node's
 *                          lower bound, 0 at the root)
 *   8      8    child      block index of the child
 *
 * Leaf: after the 32 bytes, count packed entries of 18 + namelen bytes,
 * in increasing key order, "used" bytes in all:
 *   0      8    key        p << 8 | seq (above)
 *   8      8    ino        inode number, nonzero
 *   16     1    type       DT_* (0..15)
 *   17     1    namelen    1..255
 *   18     n    name       bytes, no '/' or NUL
 *
 * Free-list block:
 *   32     8    next       next free-list block, 0: last
 *   40     8*n  free[]     free (punched) indexes, count of them
 */
#include "ns/dir.h"

#include <assert.h>
#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <xxhash.h>

#include "util/util.h"

#define DIR_MAGIC_HDR  0x31484443u /* "CDH1" */
#define DIR_MAGIC_NODE 0x314e4443u /* "CDN1" */
#define DIR_MAGIC_LEAF 0x314c4443u /* "CDL1" */
#define DIR_MAGIC_FREE 0x31464443u /* "CDF1" */
#define DIR_VERSION    1

#define DIR_HASH_BITS  55
#define DIR_SEQ_BITS   8
#define DIR_KEY_MIN    (1ULL << DIR_SEQ_BITS)
#define DIR_KEY_INF    UINT64_MAX /* upper bound of the last node */
#define DIR_ENT_HDR    18
#define DIR_ENT_MAX    (DIR_ENT_HDR + DIR_NAME_MAX)
#define DIR_HEIGHT_MAX 17 /* dir_max_height(512), the largest */
#define DIR_PEND_MAX   (2 * DIR_HEIGHT_MAX + 4)
_Static_assert(2 * DIR_HEIGHT_MAX + 3 == DIR_OP_BLOCKS_MAX, "dir.h's bound is 2 Hmax + 3");

struct dir_blk {
	uint32_t db_magic;
	uint16_t db_version;
	uint16_t db_level;
	uint64_t db_dir;
	uint64_t db_csum;
	uint32_t db_count;
	uint32_t db_used;
};
_Static_assert(sizeof(struct dir_blk) == 32, "dir block header is 32 bytes");
_Static_assert(offsetof(struct dir_blk, db_csum) == 16, "csum at 16");
_Static_assert(offsetof(struct dir_blk, db_count) == 24, "count at 24");

struct dir_hdr {
	struct dir_blk hd_blk; /* count: block size, used: height, level: hash bits */
	uint64_t hd_parent;
	uint64_t hd_entries;
	uint64_t hd_seed;
	uint64_t hd_root;
	uint64_t hd_nodes;
	uint64_t hd_hwm;
	uint64_t hd_free_head;
	uint64_t hd_free_chain;
	uint32_t hd_nfree;
	uint32_t hd_reserved;
	uint64_t hd_free[];
};
_Static_assert(sizeof(struct dir_hdr) == 104, "dir header is 104 bytes before free[]");
_Static_assert(offsetof(struct dir_hdr, hd_parent) == 32, "parent at 32");
_Static_assert(offsetof(struct dir_hdr, hd_root) == 56, "root at 56");
_Static_assert(offsetof(struct dir_hdr, hd_nfree) == 96, "nfree at 96");

struct dir_ikey {
	uint64_t ik_key;
	uint64_t ik_child;
};
_Static_assert(sizeof(struct dir_ikey) == 16, "internal entry is 16 bytes");

struct dir_free {
	struct dir_blk fb_blk;
	uint64_t fb_next;
	uint64_t fb_free[];
};
_Static_assert(sizeof(struct dir_free) == 40, "free-list block is 40 bytes before free[]");

struct dir_hooks dir_hooks;

/* ---- geometry ------------------------------------------------------------ */

static uint32_t dir_fanout(uint32_t bs)
{
	return (bs - sizeof(struct dir_blk)) / sizeof(struct dir_ikey);
}

static uint32_t dir_min_fanout(uint32_t bs)
{
	return (dir_fanout(bs) + 1) / 2;
}

static uint32_t dir_leaf_cap(uint32_t bs)
{
	return bs - sizeof(struct dir_blk);
}

static uint32_t dir_hdr_free_cap(uint32_t bs)
{
	return (bs - sizeof(struct dir_hdr)) / 8;
}

static uint32_t dir_fl_cap(uint32_t bs)
{
	return (bs - sizeof(struct dir_free)) / 8;
}

/* The greatest height a valid tree can have (see the top). */
static uint32_t dir_max_height(uint32_t bs)
{
	uint64_t m = dir_min_fanout(bs), leaves = 2;
	uint32_t h = 2;

	while (leaves <= (1ULL << 63) / m) {
		leaves *= m;
		h++;
	}
	return h;
}

uint32_t dir_op_blocks(uint32_t block_size)
{
	return 2 * dir_max_height(block_size) + 3;
}

/* ---- little-endian access ------------------------------------------------ */

static uint64_t dir_csum(const void *blk, uint32_t bs, uint64_t d, uint64_t idx)
{
	struct dir_blk *b = (struct dir_blk *)blk;
	uint64_t saved = b->db_csum, sum;

	b->db_csum = 0;
	sum = XXH3_64bits_withSeed(blk, bs, d * 0x9e3779b97f4a7c15ULL ^ idx);
	b->db_csum = saved;
	return sum;
}

static void dir_blk_init(void *blk, uint32_t bs, uint32_t magic, uint16_t level, uint64_t d)
{
	struct dir_blk *b = blk;

	memset(blk, 0, bs);
	b->db_magic = htole32(magic);
	b->db_version = htole16(DIR_VERSION);
	b->db_level = htole16(level);
	b->db_dir = htole64(d);
}

static uint32_t blk_count(const void *blk)
{
	return le32toh(((const struct dir_blk *)blk)->db_count);
}

static uint32_t blk_used(const void *blk)
{
	return le32toh(((const struct dir_blk *)blk)->db_used);
}

static void blk_set(void *blk, uint32_t count, uint32_t used)
{
	((struct dir_blk *)blk)->db_count = htole32(count);
	((struct dir_blk *)blk)->db_used = htole32(used);
}

/* Internal node entries. */
static struct dir_ikey *node_ent(void *blk)
{
	return (struct dir_ikey *)((uint8_t *)blk + sizeof(struct dir_blk));
}

static uint64_t node_key(void *blk, uint32_t i)
{
	return le64toh(node_ent(blk)[i].ik_key);
}

static uint64_t node_child(void *blk, uint32_t i)
{
	return le64toh(node_ent(blk)[i].ik_child);
}

static uint8_t *leaf_data(void *blk)
{
	return (uint8_t *)blk + sizeof(struct dir_blk);
}

static uint32_t ent_size(const uint8_t *e)
{
	return DIR_ENT_HDR + e[17];
}

/* ---- names and keys ------------------------------------------------------- */

static int dir_name_valid(const char *name, size_t len)
{
	if (len == 0)
		return -EINVAL;
	if (len > DIR_NAME_MAX)
		return -ENAMETOOLONG;
	if (memchr(name, '/', len) || memchr(name, '\0', len))
		return -EINVAL;
	if ((len == 1 && name[0] == '.') || (len == 2 && name[0] == '.' && name[1] == '.'))
		return -EINVAL;
	return 0;
}

/* The hash part p of a name's key, for a directory of @bits and @seed. */
static uint64_t dir_hash_p(uint64_t seed, unsigned bits, const char *name, size_t len)
{
	uint64_t p = XXH3_64bits_withSeed(name, len, seed) >> (64 - (bits ? bits : DIR_HASH_BITS));

	if (p < 1)
		p = 1;
	if (p > (1ULL << DIR_HASH_BITS) - 2)
		p = (1ULL << DIR_HASH_BITS) - 2;
	return p;
}

/* ---- one operation --------------------------------------------------------- */

struct dir_level {
	uint64_t dl_idx;
	uint8_t *dl_buf;
	uint32_t dl_slot; /* internal: the child taken */
};

struct dir_pend {
	uint64_t dp_idx;
	uint8_t *dp_buf; /* NULL: punch */
};

struct dir_op {
	struct vol *o_vol;
	struct vol_txn *o_txn; /* NULL for a reader */
	uint64_t o_dir;
	uint32_t o_bs;
	struct dir_hdr *o_hdr;
	unsigned o_height;			     /* of the tree as read */
	struct dir_level o_path[DIR_HEIGHT_MAX + 1]; /* [0] leaf .. [height-1] root */
	uint64_t o_hi;				     /* upper bound of the leaf reached */
	struct dir_pend o_pend[DIR_PEND_MAX];	     /* blocks to write at the end */
	unsigned o_npend;
	void *o_bufs[2 * DIR_PEND_MAX + DIR_HEIGHT_MAX + 4];
	unsigned o_nbufs;
	bool o_hdr_dirty;
};

static void *op_buf(struct dir_op *o)
{
	void *b;

	if (o->o_nbufs == ARRAY_SIZE(o->o_bufs))
		return NULL;
	b = malloc(o->o_bs);
	if (b)
		o->o_bufs[o->o_nbufs++] = b;
	return b;
}

static void op_fini(struct dir_op *o)
{
	while (o->o_nbufs)
		free(o->o_bufs[--o->o_nbufs]);
}

static int dir_damaged(struct dir_op *o, uint64_t idx, const char *what)
{
	log_err("dir %" PRIu64 ": block %" PRIu64 ": %s", o->o_dir, idx, what);
	return -EUCLEAN;
}

/* Queue @buf (NULL: a punch) as the new content of @idx; a later call wins. */
static void op_pend(struct dir_op *o, uint64_t idx, uint8_t *buf)
{
	for (unsigned i = 0; i < o->o_npend; i++) {
		if (o->o_pend[i].dp_idx == idx) {
			o->o_pend[i].dp_buf = buf;
			return;
		}
	}
	assert(o->o_npend < DIR_PEND_MAX);
	o->o_pend[o->o_npend++] = (struct dir_pend){.dp_idx = idx, .dp_buf = buf};
}

/* Write every queued block (and the header if changed). */
static int op_flush(struct dir_op *o)
{
	int err = 0;

	if (o->o_hdr_dirty)
		op_pend(o, 0, (uint8_t *)o->o_hdr);
	assert(o->o_npend <= dir_op_blocks(o->o_bs));
	for (unsigned i = 0; i < o->o_npend && !err; i++) {
		struct dir_pend *p = &o->o_pend[i];

		if (!p->dp_buf) {
			err = vol_punch(o->o_txn, o->o_dir, p->dp_idx);
			continue;
		}
		((struct dir_blk *)p->dp_buf)->db_csum =
		    htole64(dir_csum(p->dp_buf, o->o_bs, o->o_dir, p->dp_idx));
		err = vol_write(o->o_txn, o->o_dir, p->dp_idx, p->dp_buf);
	}
	if (err)
		log_err("dir %" PRIu64 ": write failed midway (%d)", o->o_dir, err);
	return err;
}

/* ---- checking blocks ------------------------------------------------------- */

/* What is wrong with the common header of block @idx, or NULL. */
static const char *blk_bad(const struct dir_op *o, const void *blk, uint64_t idx, uint32_t magic)
{
	const struct dir_blk *b = blk;

	if (le32toh(b->db_magic) != magic)
		return "bad magic";
	if (le16toh(b->db_version) != DIR_VERSION)
		return "unknown version";
	if (le64toh(b->db_dir) != o->o_dir)
		return "belongs to another directory";
	if (le64toh(b->db_csum) != dir_csum((void *)blk, o->o_bs, o->o_dir, idx))
		return "bad checksum";
	return NULL;
}

static const char *hdr_bad(const struct dir_op *o, const struct dir_hdr *h)
{
	const char *why = blk_bad(o, h, 0, DIR_MAGIC_HDR);
	uint32_t height = le32toh(h->hd_blk.db_used);
	uint64_t hwm = le64toh(h->hd_hwm), root = le64toh(h->hd_root);

	if (why)
		return why;
	if (le32toh(h->hd_blk.db_count) != o->o_bs)
		return "header names another block size";
	if (le16toh(h->hd_blk.db_level) > DIR_HASH_BITS)
		return "bad hash bits";
	if (height < 1 || height > dir_max_height(o->o_bs))
		return "bad tree height";
	if (hwm < 2 || hwm > VOL_MAX_INDEX + 1 || root < 1 || root >= hwm)
		return "bad root or high-water mark";
	if (le32toh(h->hd_nfree) > dir_hdr_free_cap(o->o_bs))
		return "free array overflows";
	if (le64toh(h->hd_free_head) >= hwm)
		return "free list head past the high-water mark";
	return NULL;
}

/* Whether a leaf's bytes parse: entries inside "used", keys increasing. */
static const char *leaf_bad(const struct dir_op *o, void *blk)
{
	uint32_t used = blk_used(blk), count = blk_count(blk), n = 0, off = 0;
	const uint8_t *p = leaf_data(blk);
	uint64_t prev = 0;

	if (used > dir_leaf_cap(o->o_bs))
		return "leaf overflows";
	while (off < used) {
		if (used - off < DIR_ENT_HDR || used - off < ent_size(p + off))
			return "leaf entry runs past the end";
		if (p[off + 17] == 0)
			return "empty name";
		if (util_get_le64(p + off) <= prev)
			return "leaf keys out of order";
		prev = util_get_le64(p + off);
		off += ent_size(p + off);
		n++;
	}
	if (n != count)
		return "leaf count does not match its entries";
	return NULL;
}

static const char *node_bad(const struct dir_op *o, void *blk)
{
	uint32_t count = blk_count(blk);

	if (count < 1 || count > dir_fanout(o->o_bs) || blk_used(blk) != 16 * count)
		return "bad internal node count";
	for (uint32_t i = 1; i < count; i++)
		if (node_key(blk, i) <= node_key(blk, i - 1))
			return "internal keys out of order";
	return NULL;
}

/* Everything checkable of tree block @idx alone, expected at @level. */
static const char *tree_blk_bad(const struct dir_op *o, void *blk, uint64_t idx, unsigned level)
{
	uint64_t hwm = le64toh(o->o_hdr->hd_hwm);
	const char *why;

	if (idx == 0 || idx >= hwm)
		return "child index out of range";
	why = blk_bad(o, blk, idx, level ? DIR_MAGIC_NODE : DIR_MAGIC_LEAF);
	if (why)
		return why;
	if (le16toh(((struct dir_blk *)blk)->db_level) != level)
		return "node at the wrong level";
	return level ? node_bad(o, blk) : leaf_bad(o, blk);
}

/* ---- reading ------------------------------------------------------------- */

static int op_begin(struct dir_op *o, struct vol *v, struct vol_txn *t, uint64_t d)
{
	const char *why;
	int err;

	memset(o, 0, sizeof(*o));
	o->o_vol = v;
	o->o_txn = t;
	o->o_dir = d;
	o->o_bs = vol_block_size(v);
	o->o_hdr = op_buf(o);
	if (!o->o_hdr)
		return -ENOMEM;
	err = vol_read(v, d, 0, o->o_hdr);
	if (err)
		return err;
	if (o->o_hdr->hd_blk.db_magic == 0 && o->o_hdr->hd_blk.db_csum == 0)
		return -ENOTDIR; /* never made a directory */
	why = hdr_bad(o, o->o_hdr);
	if (why)
		return dir_damaged(o, 0, why);
	o->o_height = le32toh(o->o_hdr->hd_blk.db_used);
	return 0;
}

static int read_tree_blk(struct dir_op *o, uint64_t idx, unsigned level, void *buf)
{
	const char *why;
	int err;

	if (idx == 0 || idx >= le64toh(o->o_hdr->hd_hwm))
		return dir_damaged(o, idx, "child index out of range");
	err = vol_read(o->o_vol, o->o_dir, idx, buf);
	if (err)
		return err;
	why = tree_blk_bad(o, buf, idx, level);
	return why ? dir_damaged(o, idx, why) : 0;
}

/* The slot of the child covering @key: the last with key <= @key, else 0. */
static uint32_t node_find(void *blk, uint64_t key)
{
	uint32_t lo = 1, hi = blk_count(blk); /* answer in [lo-1, hi-1] */

	while (lo < hi) {
		uint32_t mid = (lo + hi) / 2;

		if (node_key(blk, mid) <= key)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo - 1;
}

/* Descend to the leaf covering @key, filling o_path and o_hi. */
static int op_descend(struct dir_op *o, uint64_t key)
{
	uint64_t idx = le64toh(o->o_hdr->hd_root), hi = DIR_KEY_INF;
	int err;

	for (unsigned l = o->o_height; l-- > 0;) {
		struct dir_level *dl = &o->o_path[l];

		if (!dl->dl_buf && !(dl->dl_buf = op_buf(o)))
			return -ENOMEM;
		dl->dl_idx = idx;
		err = read_tree_blk(o, idx, l, dl->dl_buf);
		if (err)
			return err;
		if (l == 0)
			break;
		dl->dl_slot = node_find(dl->dl_buf, key);
		if (dl->dl_slot + 1 < blk_count(dl->dl_buf))
			hi = node_key(dl->dl_buf, dl->dl_slot + 1);
		idx = node_child(dl->dl_buf, dl->dl_slot);
	}
	o->o_hi = hi;
	return 0;
}

/* Called per entry of a scan; nonzero stops it (returned by op_scan if > 0). */
typedef int (*scan_fn)(void *ctx, const uint8_t *ent);

/* Call @fn for every entry with a key in [@from, @to], in key order. */
static int op_scan(struct dir_op *o, uint64_t from, uint64_t to, scan_fn fn, void *ctx)
{
	for (;;) {
		int err = op_descend(o, from);
		uint8_t *leaf = o->o_path[0].dl_buf, *p = leaf_data(leaf);

		if (err)
			return err;
		for (uint32_t off = 0; off < blk_used(leaf); off += ent_size(p + off)) {
			uint64_t key = util_get_le64(p + off);

			if (key < from)
				continue;
			if (key > to)
				return 0;
			err = fn(ctx, p + off);
			if (err)
				return err;
		}
		if (o->o_hi == DIR_KEY_INF || o->o_hi > to)
			return 0;
		from = o->o_hi;
	}
}

/* ---- finding a name --------------------------------------------------------- */

struct dir_find {
	const char *f_name;
	size_t f_len;
	uint64_t f_key; /* found: its key; else 0 */
	uint64_t f_ino;
	uint8_t f_type;
	uint8_t f_seq_used[32]; /* bitmap of the group's sequence numbers */
};

static int find_cb(void *ctx, const uint8_t *e)
{
	struct dir_find *f = ctx;
	uint64_t key = util_get_le64(e);

	f->f_seq_used[(key & 0xff) / 8] |= 1u << (key & 7);
	if (e[17] != f->f_len || memcmp(e + DIR_ENT_HDR, f->f_name, f->f_len))
		return 0;
	f->f_key = key;
	f->f_ino = util_get_le64(e + 8);
	f->f_type = e[16];
	return 0; /* go on: dir_add wants the whole group's sequence numbers */
}

/* Find @name in the directory of @o: 0 with f_key set, or f_key 0. */
static int op_find(struct dir_op *o, const char *name, size_t len, struct dir_find *f)
{
	const struct dir_hdr *h = o->o_hdr;
	uint64_t p = dir_hash_p(le64toh(h->hd_seed), le16toh(h->hd_blk.db_level), name, len);

	memset(f, 0, sizeof(*f));
	f->f_name = name;
	f->f_len = len;
	return op_scan(o, p << DIR_SEQ_BITS, (p << DIR_SEQ_BITS) | 0xff, find_cb, f);
}

static void fill_entry(struct dir_entry *out, uint64_t key, uint64_t ino, uint8_t type)
{
	if (out)
		*out = (struct dir_entry){.de_ino = ino, .de_type = type, .de_cookie = key + 1};
}

int dir_lookup(struct vol *v, uint64_t d, const char *name, size_t len, struct dir_entry *out)
{
	struct dir_find f;
	struct dir_op o;
	int err;

	bool dot = len == 1 && name[0] == '.', dotdot = len == 2 && !memcmp(name, "..", 2);

	err = dot || dotdot ? 0 : dir_name_valid(name, len);
	if (err)
		return err;
	err = op_begin(&o, v, NULL, d);
	if (err)
		goto out;
	if (dot) {
		fill_entry(out, DIR_COOKIE_START, d, DT_DIR);
		goto out;
	}
	if (dotdot) {
		fill_entry(out, DIR_COOKIE_DOT, le64toh(o.o_hdr->hd_parent), DT_DIR);
		goto out;
	}
	err = op_find(&o, name, len, &f);
	if (!err && !f.f_key)
		err = -ENOENT;
	if (!err)
		fill_entry(out, f.f_key, f.f_ino, f.f_type);
out:
	op_fini(&o);
	return err;
}

/* ---- allocation ---------------------------------------------------------- */

/* A block index for a new tree block. Reads (a free-list block) only. */
static int op_alloc(struct dir_op *o, uint64_t *idx)
{
	struct dir_hdr *h = o->o_hdr;
	uint32_t nfree = le32toh(h->hd_nfree);
	uint64_t head = le64toh(h->hd_free_head);
	struct dir_free *fb;
	const char *why;
	int err;

	if (nfree) {
		*idx = le64toh(h->hd_free[--nfree]);
		h->hd_nfree = htole32(nfree);
	} else if (head) {
		fb = op_buf(o);
		if (!fb)
			return -ENOMEM;
		err = vol_read(o->o_vol, o->o_dir, head, fb);
		if (err)
			return err;
		why = blk_bad(o, fb, head, DIR_MAGIC_FREE);
		if (!why && (blk_count(fb) > dir_hdr_free_cap(o->o_bs) ||
			     le64toh(fb->fb_next) >= le64toh(h->hd_hwm)))
			why = "bad free-list block";
		if (why)
			return dir_damaged(o, head, why);
		memcpy(h->hd_free, fb->fb_free, 8 * blk_count(fb));
		h->hd_nfree = fb->fb_blk.db_count;
		h->hd_free_head = fb->fb_next;
		h->hd_free_chain = htole64(le64toh(h->hd_free_chain) - 1);
		*idx = head;
	} else {
		*idx = le64toh(h->hd_hwm);
		if (*idx > VOL_MAX_INDEX)
			return -ENOSPC;
		h->hd_hwm = htole64(*idx + 1);
	}
	h->hd_nodes = htole64(le64toh(h->hd_nodes) + 1);
	o->o_hdr_dirty = true;
	return 0;
}

/* Give back tree block @idx: punched, or made a free-list block. */
static int op_free(struct dir_op *o, uint64_t idx)
{
	struct dir_hdr *h = o->o_hdr;
	uint32_t nfree = le32toh(h->hd_nfree);
	struct dir_free *fb;

	if (nfree < dir_hdr_free_cap(o->o_bs)) {
		h->hd_free[nfree] = htole64(idx);
		h->hd_nfree = htole32(nfree + 1);
		op_pend(o, idx, NULL);
	} else {
		fb = op_buf(o);
		if (!fb)
			return -ENOMEM;
		dir_blk_init(fb, o->o_bs, DIR_MAGIC_FREE, 0, o->o_dir);
		blk_set(fb, nfree, 8 * nfree);
		fb->fb_next = h->hd_free_head;
		memcpy(fb->fb_free, h->hd_free, 8 * nfree);
		h->hd_free_head = htole64(idx);
		h->hd_free_chain = htole64(le64toh(h->hd_free_chain) + 1);
		h->hd_nfree = 0;
		op_pend(o, idx, (uint8_t *)fb);
	}
	h->hd_nodes = htole64(le64toh(h->hd_nodes) - 1);
	o->o_hdr_dirty = true;
	return 0;
}

/* ---- inserting ------------------------------------------------------------- */

/* A child to insert into a parent: its lowest key and index. */
struct dir_carry {
	uint64_t c_key;
	uint64_t c_idx;
};

/* Split @n bytes of packed entries at @src into at most 3 runs that each
 * fit a leaf; @cut gets the end offsets. Returns the number of runs. */
static unsigned leaf_split_points(const struct dir_op *o, const uint8_t *src, uint32_t n,
				  uint32_t cut[3])
{
	uint32_t cap = dir_leaf_cap(o->o_bs), best = UINT32_MAX, off = 0, runs = 0;

	/* the most even cut in two, if one fits */
	for (off = ent_size(src); off < n; off += ent_size(src + off)) {
		uint32_t worst = MAX(off, n - off);

		if (off <= cap && n - off <= cap && worst < best) {
			best = worst;
			cut[0] = off;
		}
	}
	if (best != UINT32_MAX) {
		cut[1] = n;
		return 2;
	}
	/* else greedy: each run as long as fits (three at most, see the top) */
	for (off = 0; off < n;) {
		uint32_t start = off;

		while (off < n && off + ent_size(src + off) - start <= cap)
			off += ent_size(src + off);
		assert(runs < 3);
		cut[runs++] = off;
	}
	return runs;
}

/* Put @n bytes of entries at @src into leaf @blk (already initialized). */
static void leaf_fill(void *blk, const uint8_t *src, uint32_t n)
{
	uint32_t count = 0;

	memcpy(leaf_data(blk), src, n);
	for (uint32_t off = 0; off < n; off += ent_size(src + off))
		count++;
	blk_set(blk, count, n);
}

/* Insert entry @ent (@esz bytes) into the leaf of o_path[0]; new leaves
 * from a split go to @carry. */
static int leaf_insert(struct dir_op *o, const uint8_t *ent, uint32_t esz, struct dir_carry *carry,
		       unsigned *ncarry)
{
	struct dir_level *dl = &o->o_path[0];
	uint32_t used = blk_used(dl->dl_buf), off = 0, cut[3], runs;
	uint8_t *p = leaf_data(dl->dl_buf), *scratch;
	uint64_t key = util_get_le64(ent);
	int err;

	while (off < used && util_get_le64(p + off) < key)
		off += ent_size(p + off);
	op_pend(o, dl->dl_idx, dl->dl_buf);
	if (used + esz <= dir_leaf_cap(o->o_bs)) {
		memmove(p + off + esz, p + off, used - off);
		memcpy(p + off, ent, esz);
		blk_set(dl->dl_buf, blk_count(dl->dl_buf) + 1, used + esz);
		return 0;
	}
	scratch = malloc(used + esz);
	if (!scratch)
		return -ENOMEM;
	memcpy(scratch, p, off);
	memcpy(scratch + off, ent, esz);
	memcpy(scratch + off + esz, p + off, used - off);
	runs = leaf_split_points(o, scratch, used + esz, cut);
	err = 0;
	for (unsigned r = 0; r < runs && !err; r++) {
		uint32_t start = r ? cut[r - 1] : 0;
		uint8_t *blk = dl->dl_buf;
		uint64_t idx = dl->dl_idx;

		if (r) {
			blk = op_buf(o);
			err = blk ? op_alloc(o, &idx) : -ENOMEM;
			if (err)
				break;
			carry[(*ncarry)++] =
			    (struct dir_carry){util_get_le64(scratch + start), idx};
			op_pend(o, idx, blk);
		}
		dir_blk_init(blk, o->o_bs, DIR_MAGIC_LEAF, 0, o->o_dir);
		leaf_fill(blk, scratch + start, cut[r] - start);
	}
	free(scratch);
	return err;
}

/* Write @n internal entries @e into node @blk at @level. */
static void node_fill(struct dir_op *o, void *blk, unsigned level, const struct dir_ikey *e,
		      uint32_t n)
{
	dir_blk_init(blk, o->o_bs, DIR_MAGIC_NODE, level, o->o_dir);
	memcpy(node_ent(blk), e, n * sizeof(*e));
	blk_set(blk, n, n * sizeof(*e));
}

/* Insert @n carried children after o_path[level]'s slot; split if full. */
static int node_insert(struct dir_op *o, unsigned level, struct dir_carry *carry, unsigned *n)
{
	struct dir_level *dl = &o->o_path[level];
	uint32_t count = blk_count(dl->dl_buf), total = count + *n, left;
	struct dir_ikey *all;
	uint64_t idx;
	uint8_t *rb;
	int err;

	all = malloc(total * sizeof(*all));
	if (!all)
		return -ENOMEM;
	memcpy(all, node_ent(dl->dl_buf), (dl->dl_slot + 1) * sizeof(*all));
	for (unsigned i = 0; i < *n; i++)
		all[dl->dl_slot + 1 + i] =
		    (struct dir_ikey){htole64(carry[i].c_key), htole64(carry[i].c_idx)};
	memcpy(all + dl->dl_slot + 1 + *n, node_ent(dl->dl_buf) + dl->dl_slot + 1,
	       (count - dl->dl_slot - 1) * sizeof(*all));
	op_pend(o, dl->dl_idx, dl->dl_buf);
	*n = 0;
	err = 0;
	if (total <= dir_fanout(o->o_bs)) {
		node_fill(o, dl->dl_buf, level, all, total);
		goto out;
	}
	left = total / 2;
	rb = op_buf(o);
	err = rb ? op_alloc(o, &idx) : -ENOMEM;
	if (err)
		goto out;
	node_fill(o, dl->dl_buf, level, all, left);
	node_fill(o, rb, level, all + left, total - left);
	op_pend(o, idx, rb);
	carry[(*n)++] = (struct dir_carry){le64toh(all[left].ik_key), idx};
out:
	free(all);
	return err;
}

/* A new root over the old one and @n carried children. */
static int root_grow(struct dir_op *o, struct dir_carry *carry, unsigned n)
{
	struct dir_ikey e[4];
	uint64_t idx;
	uint8_t *blk;
	int err;

	if (o->o_height >= dir_max_height(o->o_bs))
		return dir_damaged(o, 0, "tree would outgrow its bound");
	blk = op_buf(o);
	err = blk ? op_alloc(o, &idx) : -ENOMEM;
	if (err)
		return err;
	e[0] = (struct dir_ikey){0, o->o_hdr->hd_root};
	for (unsigned i = 0; i < n; i++)
		e[i + 1] = (struct dir_ikey){htole64(carry[i].c_key), htole64(carry[i].c_idx)};
	node_fill(o, blk, o->o_height, e, n + 1);
	op_pend(o, idx, blk);
	o->o_hdr->hd_root = htole64(idx);
	o->o_height++;
	o->o_hdr->hd_blk.db_used = htole32(o->o_height);
	return 0;
}

static int tree_insert(struct dir_op *o, const uint8_t *ent, uint32_t esz)
{
	struct dir_carry carry[2];
	unsigned n = 0, level;
	int err;

	err = op_descend(o, util_get_le64(ent));
	if (!err)
		err = leaf_insert(o, ent, esz, carry, &n);
	for (level = 1; !err && n && level < o->o_height; level++)
		err = node_insert(o, level, carry, &n);
	if (!err && n)
		err = root_grow(o, carry, n);
	return err;
}

/* The smallest sequence number the group has free, or -ENOSPC. */
static int free_seq(const struct dir_find *f)
{
	for (int s = 0; s < 256; s++)
		if (!(f->f_seq_used[s / 8] & (1u << (s % 8))))
			return s;
	return -ENOSPC;
}

int dir_add(struct vol_txn *t, uint64_t d, const char *name, size_t len, uint64_t ino, uint8_t type)
{
	uint8_t ent[DIR_ENT_MAX];
	struct dir_find f;
	struct dir_op o;
	uint64_t p;
	int err, seq;

	err = dir_name_valid(name, len);
	if (!err && (ino == 0 || type > 15))
		err = -EINVAL;
	if (err)
		return err;
	err = op_begin(&o, t->vt_vol, t, d);
	if (err)
		goto out;
	err = op_find(&o, name, len, &f);
	if (!err && f.f_key)
		err = -EEXIST;
	seq = err ? 0 : free_seq(&f);
	if (!err && seq < 0)
		err = seq;
	if (err)
		goto out;
	p = dir_hash_p(le64toh(o.o_hdr->hd_seed), le16toh(o.o_hdr->hd_blk.db_level), name, len);
	util_put_le64(ent, p << DIR_SEQ_BITS | (uint64_t)seq);
	util_put_le64(ent + 8, ino);
	ent[16] = type;
	ent[17] = (uint8_t)len;
	memcpy(ent + DIR_ENT_HDR, name, len);
	err = tree_insert(&o, ent, DIR_ENT_HDR + (uint32_t)len);
	if (err)
		goto out;
	o.o_hdr->hd_entries = htole64(le64toh(o.o_hdr->hd_entries) + 1);
	o.o_hdr_dirty = true;
	err = op_flush(&o);
out:
	op_fini(&o);
	return err;
}

/* ---- removing ------------------------------------------------------------- */

/* Remove the entry of @key from the leaf of o_path[0]. */
static void leaf_remove(struct dir_op *o, uint64_t key)
{
	struct dir_level *dl = &o->o_path[0];
	uint32_t used = blk_used(dl->dl_buf), off = 0, esz;
	uint8_t *p = leaf_data(dl->dl_buf);

	while (util_get_le64(p + off) != key)
		off += ent_size(p + off);
	esz = ent_size(p + off);
	memmove(p + off, p + off + esz, used - off - esz);
	memset(p + used - esz, 0, esz);
	blk_set(dl->dl_buf, blk_count(dl->dl_buf) - 1, used - esz);
	op_pend(o, dl->dl_idx, dl->dl_buf);
}

/* Remove entry @slot from internal node @blk. */
static void node_remove(void *blk, uint32_t slot)
{
	uint32_t count = blk_count(blk);
	struct dir_ikey *e = node_ent(blk);

	memmove(e + slot, e + slot + 1, (count - slot - 1) * sizeof(*e));
	memset(e + count - 1, 0, sizeof(*e));
	blk_set(blk, count - 1, (count - 1) * sizeof(*e));
}

/* Whether node @blk at @level should look for a sibling to merge with. */
static bool node_underfull(const struct dir_op *o, void *blk, unsigned level)
{
	if (level)
		return blk_count(blk) < dir_min_fanout(o->o_bs);
	return blk_count(blk) == 0 || blk_used(blk) < dir_leaf_cap(o->o_bs) / 4;
}

/*
 * Merge or rebalance o_path[level] (left or right of a sibling under
 * o_path[level + 1]). Sets *@parent_lost when the parent lost a child.
 */
static int node_fix(struct dir_op *o, unsigned level, bool *parent_lost)
{
	struct dir_level *dl = &o->o_path[level], *pl = &o->o_path[level + 1];
	uint32_t s = pl->dl_slot, pcount = blk_count(pl->dl_buf), rs;
	uint8_t *sib, *lb, *rb;
	uint64_t ridx;
	int err;

	*parent_lost = false;
	if (pcount < 2)
		return dir_damaged(o, pl->dl_idx, "internal node with one child");
	rs = s > 0 ? s : s + 1; /* the right one's slot in the parent */
	sib = op_buf(o);
	if (!sib)
		return -ENOMEM;
	err = read_tree_blk(o, node_child(pl->dl_buf, s > 0 ? s - 1 : s + 1), level, sib);
	if (err)
		return err;
	lb = s > 0 ? sib : dl->dl_buf;
	rb = s > 0 ? dl->dl_buf : sib;
	ridx = node_child(pl->dl_buf, rs);
	if (level == 0) {
		uint32_t lu = blk_used(lb), ru = blk_used(rb);

		if (blk_count(dl->dl_buf) && lu + ru > dir_leaf_cap(o->o_bs) * 3 / 4)
			return 0; /* no merge; leaves are not rebalanced */
		memcpy(leaf_data(lb) + lu, leaf_data(rb), ru);
		blk_set(lb, blk_count(lb) + blk_count(rb), lu + ru);
	} else {
		uint32_t lc = blk_count(lb), rc = blk_count(rb);

		node_ent(rb)[0].ik_key = node_ent(pl->dl_buf)[rs].ik_key;
		if (lc + rc > dir_fanout(o->o_bs)) {
			/* borrow one child across, keep both */
			if (lc < rc) {
				node_ent(lb)[lc] = node_ent(rb)[0];
				blk_set(lb, lc + 1, (lc + 1) * 16);
				node_remove(rb, 0);
			} else {
				memmove(node_ent(rb) + 1, node_ent(rb), rc * 16);
				node_ent(rb)[0] = node_ent(lb)[lc - 1];
				blk_set(rb, rc + 1, (rc + 1) * 16);
				node_remove(lb, lc - 1);
			}
			node_ent(pl->dl_buf)[rs].ik_key = node_ent(rb)[0].ik_key;
			op_pend(o, node_child(pl->dl_buf, rs - 1), lb);
			op_pend(o, ridx, rb);
			op_pend(o, pl->dl_idx, pl->dl_buf);
			return 0;
		}
		memcpy(node_ent(lb) + lc, node_ent(rb), rc * 16);
		blk_set(lb, lc + rc, (lc + rc) * 16);
	}
	op_pend(o, node_child(pl->dl_buf, rs - 1), lb);
	node_remove(pl->dl_buf, rs);
	op_pend(o, pl->dl_idx, pl->dl_buf);
	*parent_lost = true;
	return op_free(o, ridx);
}

/* After a leaf lost an entry: merge up, collapse a root of one child. */
static int tree_rebalance(struct dir_op *o)
{
	bool lost = true;
	unsigned level;
	int err = 0;

	for (level = 0; lost && level + 1 < o->o_height; level++) {
		if (!node_underfull(o, o->o_path[level].dl_buf, level))
			return 0;
		err = node_fix(o, level, &lost);
		if (err)
			return err;
	}
	if (lost && o->o_height > 1 && blk_count(o->o_path[o->o_height - 1].dl_buf) == 1) {
		uint8_t *root = o->o_path[o->o_height - 1].dl_buf;

		o->o_hdr->hd_root = node_ent(root)[0].ik_child;
		err = op_free(o, o->o_path[o->o_height - 1].dl_idx);
		o->o_height--;
		o->o_hdr->hd_blk.db_used = htole32(o->o_height);
	}
	return err;
}

int dir_remove(struct vol_txn *t, uint64_t d, const char *name, size_t len, struct dir_entry *old)
{
	struct dir_find f;
	struct dir_op o;
	int err;

	err = dir_name_valid(name, len);
	if (err)
		return err;
	err = op_begin(&o, t->vt_vol, t, d);
	if (err)
		goto out;
	err = op_find(&o, name, len, &f);
	if (!err && !f.f_key)
		err = -ENOENT;
	if (err)
		goto out;
	fill_entry(old, f.f_key, f.f_ino, f.f_type);
	err = op_descend(&o, f.f_key);
	if (err)
		goto out;
	leaf_remove(&o, f.f_key);
	err = tree_rebalance(&o);
	if (err)
		goto out;
	o.o_hdr->hd_entries = htole64(le64toh(o.o_hdr->hd_entries) - 1);
	o.o_hdr_dirty = true;
	err = op_flush(&o);
out:
	op_fini(&o);
	return err;
}

int dir_replace(struct vol_txn *t, uint64_t d, const char *name, size_t len, uint64_t ino,
		uint8_t type, struct dir_entry *old)
{
	uint32_t off = 0;
	struct dir_find f;
	struct dir_op o;
	uint8_t *p;
	int err;

	err = dir_name_valid(name, len);
	if (!err && (ino == 0 || type > 15))
		err = -EINVAL;
	if (err)
		return err;
	err = op_begin(&o, t->vt_vol, t, d);
	if (err)
		goto out;
	err = op_find(&o, name, len, &f);
	if (!err && !f.f_key)
		err = -ENOENT;
	if (!err)
		err = op_descend(&o, f.f_key);
	if (err)
		goto out;
	fill_entry(old, f.f_key, f.f_ino, f.f_type);
	p = leaf_data(o.o_path[0].dl_buf);
	while (util_get_le64(p + off) != f.f_key)
		off += ent_size(p + off);
	util_put_le64(p + off + 8, ino);
	p[off + 16] = type;
	op_pend(&o, o.o_path[0].dl_idx, o.o_path[0].dl_buf);
	err = op_flush(&o);
out:
	op_fini(&o);
	return err;
}

/* ---- the header alone ------------------------------------------------------ */

int dir_create(struct vol_txn *t, uint64_t d, uint64_t parent_ino)
{
	struct dir_op o;
	struct dir_hdr *h;
	uint8_t *leaf;
	uint64_t seed = dir_hooks.dh_seed;
	int err = 0;

	memset(&o, 0, sizeof(o));
	o.o_vol = t->vt_vol;
	o.o_txn = t;
	o.o_dir = d;
	o.o_bs = vol_block_size(t->vt_vol);
	h = o.o_hdr = op_buf(&o);
	leaf = op_buf(&o);
	if (!h || !leaf) {
		err = -ENOMEM;
		goto out;
	}
	if (!dir_hooks.dh_fixed_seed && getrandom(&seed, sizeof(seed), 0) != sizeof(seed))
		seed = XXH3_64bits(&d, sizeof(d)) ^ (uint64_t)(uintptr_t)h;
	dir_blk_init(h, o.o_bs, DIR_MAGIC_HDR, (uint16_t)MIN(dir_hooks.dh_hash_bits, DIR_HASH_BITS),
		     d);
	blk_set(h, o.o_bs, 1);
	h->hd_parent = htole64(parent_ino);
	h->hd_seed = htole64(seed);
	h->hd_root = htole64(1);
	h->hd_nodes = htole64(1);
	h->hd_hwm = htole64(2);
	dir_blk_init(leaf, o.o_bs, DIR_MAGIC_LEAF, 0, d);
	op_pend(&o, 1, leaf);
	o.o_hdr_dirty = true;
	err = op_flush(&o);
out:
	op_fini(&o);
	return err;
}

int dir_set_parent(struct vol_txn *t, uint64_t d, uint64_t parent_ino)
{
	struct dir_op o;
	int err;

	err = op_begin(&o, t->vt_vol, t, d);
	if (!err) {
		o.o_hdr->hd_parent = htole64(parent_ino);
		o.o_hdr_dirty = true;
		err = op_flush(&o);
	}
	op_fini(&o);
	return err;
}

int dir_get_parent(struct vol *v, uint64_t d, uint64_t *parent_ino)
{
	struct dir_op o;
	int err = op_begin(&o, v, NULL, d);

	if (!err)
		*parent_ino = le64toh(o.o_hdr->hd_parent);
	op_fini(&o);
	return err;
}

int dir_stats(struct vol *v, uint64_t d, struct dir_stats *st)
{
	struct dir_op o;
	int err = op_begin(&o, v, NULL, d);

	if (!err) {
		const struct dir_hdr *h = o.o_hdr;

		st->ds_entries = le64toh(h->hd_entries);
		st->ds_height = o.o_height;
		st->ds_nodes = le64toh(h->hd_nodes);
		st->ds_free_blocks = le64toh(h->hd_free_chain);
		st->ds_hwm = le64toh(h->hd_hwm);
		st->ds_free = st->ds_hwm - 1 - st->ds_nodes - st->ds_free_blocks;
	}
	op_fini(&o);
	return err;
}

int dir_count(struct vol *v, uint64_t d, uint64_t *count)
{
	struct dir_stats st;
	int err = dir_stats(v, d, &st);

	if (!err)
		*count = st.ds_entries;
	return err;
}

int dir_is_empty(struct vol *v, uint64_t d, bool *empty)
{
	uint64_t n;
	int err = dir_count(v, d, &n);

	if (!err)
		*empty = n == 0;
	return err;
}

/* ---- listing -------------------------------------------------------------- */

struct dir_list {
	dir_fill_fn l_fill;
	void *l_ctx;
};

static int list_cb(void *ctx, const uint8_t *e)
{
	struct dir_list *l = ctx;

	return l->l_fill(l->l_ctx, (const char *)e + DIR_ENT_HDR, e[17], util_get_le64(e + 8),
			 e[16], util_get_le64(e) + 1)
		   ? 1
		   : 0;
}

int dir_readdir(struct vol *v, uint64_t d, uint64_t cookie, dir_fill_fn fill, void *ctx)
{
	struct dir_list l = {.l_fill = fill, .l_ctx = ctx};
	struct dir_op o;
	int err;

	if (cookie >= DIR_COOKIE_END + 1)
		return -EINVAL;
	err = op_begin(&o, v, NULL, d);
	if (err)
		goto out;
	if (cookie == DIR_COOKIE_START && fill(ctx, ".", 1, d, DT_DIR, DIR_COOKIE_DOT))
		goto out;
	if (cookie <= DIR_COOKIE_DOT &&
	    fill(ctx, "..", 2, le64toh(o.o_hdr->hd_parent), DT_DIR, DIR_COOKIE_DOTDOT))
		goto out;
	err = op_scan(&o, MAX(cookie, DIR_KEY_MIN), DIR_KEY_INF - 1, list_cb, &l);
	if (err > 0)
		err = 0;
out:
	op_fini(&o);
	return err;
}

/* ---- checking ------------------------------------------------------------- */

struct dir_checker {
	struct dir_op *c_op;
	dir_report_fn c_report;
	void *c_ctx;
	uint64_t c_problems;
	uint64_t c_entries, c_nodes;
	uint8_t *c_seen; /* bitmap of indexes accounted for, or NULL */
	uint8_t *c_level_buf[DIR_HEIGHT_MAX];
	/* the current collision group, across leaves */
	uint64_t c_group;
	unsigned c_ngroup;
	uint8_t c_gname[256][DIR_NAME_MAX + 1]; /* [0] = length */
};

static void check_report(struct dir_checker *c, uint64_t blk, const char *what)
{
	c->c_problems++;
	if (c->c_report)
		c->c_report(c->c_ctx, c->c_op->o_dir, blk, what);
}

/* Account for index @idx; false if it was already (reported). */
static bool check_mark(struct dir_checker *c, uint64_t idx, const char *what)
{
	if (!c->c_seen)
		return true;
	if (idx >= le64toh(c->c_op->o_hdr->hd_hwm)) {
		check_report(c, idx, what);
		return false;
	}
	if (c->c_seen[idx / 8] & (1u << (idx % 8))) {
		check_report(c, idx, "block used twice");
		return false;
	}
	c->c_seen[idx / 8] |= 1u << (idx % 8);
	return true;
}

static void check_entry(struct dir_checker *c, uint64_t idx, const uint8_t *e)
{
	const struct dir_hdr *h = c->c_op->o_hdr;
	uint64_t key = util_get_le64(e), p;
	const char *name = (const char *)e + DIR_ENT_HDR;
	size_t len = e[17];

	c->c_entries++;
	if (dir_name_valid(name, len))
		check_report(c, idx, "invalid name");
	if (util_get_le64(e + 8) == 0 || e[16] > 15)
		check_report(c, idx, "bad inode number or type");
	p = dir_hash_p(le64toh(h->hd_seed), le16toh(h->hd_blk.db_level), name, len);
	if (key >> DIR_SEQ_BITS != p)
		check_report(c, idx, "key does not match the name's hash");
	if (key >> DIR_SEQ_BITS != c->c_group) {
		c->c_group = key >> DIR_SEQ_BITS;
		c->c_ngroup = 0;
	}
	for (unsigned i = 0; i < c->c_ngroup; i++)
		if (c->c_gname[i][0] == len && !memcmp(c->c_gname[i] + 1, name, len))
			check_report(c, idx, "duplicate name");
	if (c->c_ngroup < 256) {
		c->c_gname[c->c_ngroup][0] = (uint8_t)len;
		memcpy(c->c_gname[c->c_ngroup++] + 1, name, len);
	}
}

static int check_node(struct dir_checker *c, uint64_t idx, unsigned level, uint64_t lo, uint64_t hi,
		      bool root);

static int check_children(struct dir_checker *c, uint64_t idx, uint8_t *blk, unsigned level,
			  uint64_t lo, uint64_t hi, bool root)
{
	uint32_t count = blk_count(blk);
	int err = 0;

	if (node_key(blk, 0) != lo)
		check_report(c, idx, "internal key 0 is not the node's lower bound");
	if (count > 1 && (node_key(blk, 1) <= lo || node_key(blk, count - 1) >= hi))
		check_report(c, idx, "internal keys outside the node's range");
	if (count < (root ? 2 : dir_min_fanout(c->c_op->o_bs)))
		check_report(c, idx, "internal node underfull");
	for (uint32_t i = 0; i < count && !err; i++) { /* children use the buffers below */
		uint64_t clo = i ? node_key(blk, i) : lo;
		uint64_t chi = i + 1 < count ? node_key(blk, i + 1) : hi;
		uint64_t child = node_child(blk, i);

		err = check_node(c, child, level - 1, clo, chi, false);
	}
	return err;
}

static int check_node(struct dir_checker *c, uint64_t idx, unsigned level, uint64_t lo, uint64_t hi,
		      bool root)
{
	struct dir_op *o = c->c_op;
	uint8_t *blk = c->c_level_buf[level];
	const char *why;
	int err;

	if (!check_mark(c, idx, "child index out of range"))
		return 0;
	err = vol_read(o->o_vol, o->o_dir, idx, blk);
	if (err)
		return err;
	why = tree_blk_bad(o, blk, idx, level);
	if (why) {
		check_report(c, idx, why);
		return 0;
	}
	c->c_nodes++;
	if (level)
		return check_children(c, idx, blk, level, lo, hi, root);
	if (!root && blk_count(blk) == 0)
		check_report(c, idx, "empty leaf");
	for (uint32_t off = 0; off < blk_used(blk); off += ent_size(leaf_data(blk) + off)) {
		const uint8_t *e = leaf_data(blk) + off;

		if (util_get_le64(e) < lo || util_get_le64(e) >= hi ||
		    util_get_le64(e) < DIR_KEY_MIN)
			check_report(c, idx, "leaf key outside the node's range");
		check_entry(c, idx, e);
	}
	return 0;
}

/* The free array, the free-list chain, and that every index is accounted for. */
static int check_free(struct dir_checker *c, uint8_t *zero, uint8_t *buf)
{
	struct dir_op *o = c->c_op;
	const struct dir_hdr *h = o->o_hdr;
	uint64_t head = le64toh(h->hd_free_head), chain = 0, hwm = le64toh(h->hd_hwm);
	int err;

	for (uint32_t i = 0; i < le32toh(h->hd_nfree); i++) {
		uint64_t idx = le64toh(h->hd_free[i]);

		if (!check_mark(c, idx, "free index past the high-water mark"))
			continue;
		err = vol_read(o->o_vol, o->o_dir, idx, buf);
		if (err)
			return err;
		if (memcmp(buf, zero, o->o_bs))
			check_report(c, idx, "free index not punched");
	}
	for (; head; head = le64toh(((struct dir_free *)buf)->fb_next)) {
		struct dir_free *fb = (struct dir_free *)buf;
		const char *why;

		if (!check_mark(c, head, "free-list block past the high-water mark"))
			break;
		err = vol_read(o->o_vol, o->o_dir, head, buf);
		if (err)
			return err;
		why = blk_bad(o, buf, head, DIR_MAGIC_FREE);
		if (!why && blk_count(buf) > dir_fl_cap(o->o_bs))
			why = "free-list block overflows";
		if (why) {
			check_report(c, head, why);
			break;
		}
		chain++;
		for (uint32_t i = 0; i < blk_count(fb); i++)
			check_mark(c, le64toh(fb->fb_free[i]),
				   "free index past the high-water mark");
	}
	if (chain != le64toh(h->hd_free_chain))
		check_report(c, 0, "free-list chain length does not match the header");
	for (uint64_t i = 0; c->c_seen && i < hwm; i++)
		if (!(c->c_seen[i / 8] & (1u << (i % 8)))) {
			check_report(c, i, "block index neither used nor free");
			break;
		}
	return 0;
}

static int check_walk(struct dir_checker *c)
{
	struct dir_op *o = c->c_op;
	const struct dir_hdr *h = o->o_hdr;
	uint64_t hwm = le64toh(h->hd_hwm);
	uint8_t *zero = NULL, *buf = NULL;
	int err = -ENOMEM;

	for (unsigned l = 0; l < o->o_height; l++)
		if (!(c->c_level_buf[l] = op_buf(o)))
			return -ENOMEM;
	if (hwm <= (1ULL << 32)) {
		c->c_seen = calloc(hwm / 8 + 1, 1);
		if (!c->c_seen)
			return -ENOMEM;
		c->c_seen[0] |= 1; /* the header */
	} else {
		check_report(c, 0, "high-water mark too large to account for");
	}
	c->c_group = UINT64_MAX;
	err = check_node(c, le64toh(h->hd_root), o->o_height - 1, 0, DIR_KEY_INF, true);
	if (err)
		goto out;
	if (c->c_entries != le64toh(h->hd_entries))
		check_report(c, 0, "entry count does not match the header");
	if (c->c_nodes != le64toh(h->hd_nodes))
		check_report(c, 0, "node count does not match the header");
	zero = calloc(1, o->o_bs);
	buf = op_buf(o);
	err = zero && buf ? check_free(c, zero, buf) : -ENOMEM;
out:
	free(zero);
	free(c->c_seen);
	return err;
}

int dir_check(struct vol *v, uint64_t d, dir_report_fn report, void *ctx)
{
	struct dir_checker *c;
	struct dir_op o;
	int err;

	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->c_op = &o;
	c->c_report = report;
	c->c_ctx = ctx;
	err = op_begin(&o, v, NULL, d);
	if (err == -EUCLEAN) {
		check_report(c, 0, "bad header");
	} else if (err == -ENOTDIR) {
		check_report(c, 0, "no directory header");
		err = -EUCLEAN;
	} else if (!err) {
		err = check_walk(c);
	}
	if (!err && c->c_problems)
		err = -EUCLEAN;
	op_fini(&o);
	free(c);
	return err;
}

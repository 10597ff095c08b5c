/*
 * dir.h - directories: names to inode numbers, in the blocks of one vol
 * owner per directory.
 *
 * A directory with inode number D keeps its entries in vol owner D: a
 * header block (index 0) and a B+tree keyed by a 63-bit key made of a
 * keyed XXH3 hash of the name and a collision sequence number (the
 * format is at the top of dir.c). Lookup reads one block per level of
 * the tree; a directory of a million entries is three levels at 4 KiB.
 *
 * Locking is the caller's (the namespace): it holds the directory's lock
 * exclusively around dir_create, dir_add, dir_remove, dir_replace and
 * dir_set_parent, and at least shared around the others. Changing
 * functions run inside a vol transaction the caller began with at least
 * dir_op_blocks() blocks (vt_left) for each of them; read-only ones take
 * the volume. Every function returns 0 or a negative errno; -EUCLEAN
 * means the directory's blocks are damaged (logged, naming the block).
 *
 * On an error other than -EINVAL, -ENOENT, -EEXIST, -ENAMETOOLONG or
 * -ENOSPC (which are found before anything is written), a changing
 * function may have written part of its change into the transaction: the
 * volume has no transaction abort yet (see dir.c).
 */
#ifndef CAIRN_NS_DIR_H
#define CAIRN_NS_DIR_H

#include <stdbool.h>
#include <stdint.h>
#include <dirent.h> /* DT_* */

#include "vol/vol.h"

#define DIR_NAME_MAX 255

/*
 * The most blocks one changing operation (dir_add, dir_remove,
 * dir_replace, dir_set_parent, dir_create) writes or punches, for a
 * volume of @block_size, whatever the directory's size: begin its
 * transaction with at least this many (vol_txn_begin's @nblocks).
 * DIR_OP_BLOCKS_MAX covers every block size (512..65536); the derivation
 * is at the top of dir.c.
 */
#define DIR_OP_BLOCKS_MAX 37
uint32_t dir_op_blocks(uint32_t block_size);

/* Readdir cookies: 0 starts a listing; every cookie is below 2^63. */
#define DIR_COOKIE_START  0
#define DIR_COOKIE_DOT	  1		     /* after '.' */
#define DIR_COOKIE_DOTDOT 2		     /* after '..' */
#define DIR_COOKIE_END	  ((1ULL << 63) - 1) /* past every entry */

struct dir_entry {
	uint64_t de_ino;
	uint8_t de_type;    /* DT_* */
	uint64_t de_cookie; /* readdir cookie that resumes after this entry */
};

/*
 * Make @d (vol owner @d, the directory's inode number) an empty
 * directory whose '..' is @parent_ino. Overwrites whatever @d held: the
 * caller creates only fresh inodes. 2 blocks.
 */
int dir_create(struct vol_txn *t, uint64_t d, uint64_t parent_ino);

/*
 * Find @name (@len bytes) in @d. -ENOENT; -EINVAL / -ENAMETOOLONG for a
 * name no entry can have. "." and ".." are found too (type DT_DIR).
 */
int dir_lookup(struct vol *v, uint64_t d, const char *name, size_t len, struct dir_entry *out);

/*
 * Add @name -> (@ino, @type). Names are 1..DIR_NAME_MAX bytes without '/'
 * or NUL, and not "." or "..": -EINVAL, -ENAMETOOLONG. @ino 0 or a @type
 * above 15: -EINVAL. -EEXIST if the name is there. -ENOSPC if 256 names
 * share the name's 55-bit hash (see dir.c; not reachable by chance).
 */
int dir_add(struct vol_txn *t, uint64_t d, const char *name, size_t len, uint64_t ino,
	    uint8_t type);

/* Remove @name, returning what it pointed at in @old (may be NULL). -ENOENT. */
int dir_remove(struct vol_txn *t, uint64_t d, const char *name, size_t len, struct dir_entry *old);

/*
 * Point the existing @name at (@ino, @type) (rename over an existing
 * name), returning the old target in @old (may be NULL). The entry keeps
 * its cookie. -ENOENT. 1 block.
 */
int dir_replace(struct vol_txn *t, uint64_t d, const char *name, size_t len, uint64_t ino,
		uint8_t type, struct dir_entry *old);

/* '..' of @d (a directory moved to another parent). 1 block. */
int dir_set_parent(struct vol_txn *t, uint64_t d, uint64_t parent_ino);
int dir_get_parent(struct vol *v, uint64_t d, uint64_t *parent_ino);

/* Number of entries, '.' and '..' not counted; empty: no entry (rmdir). */
int dir_count(struct vol *v, uint64_t d, uint64_t *count);
int dir_is_empty(struct vol *v, uint64_t d, bool *empty);

/*
 * Called once per entry by dir_readdir with the cookie that resumes after
 * it. Return nonzero to stop (the entry counts as returned).
 */
typedef int (*dir_fill_fn)(void *ctx, const char *name, size_t len, uint64_t ino, uint8_t type,
			   uint64_t next_cookie);

/*
 * List @d from @cookie: 0 starts with '.' then '..', then the entries in
 * key order. A cookie handed to @fill stays valid for ever: resuming from
 * it returns every entry that existed the whole time exactly once, and
 * an entry added or removed meanwhile at most once (a name removed and
 * added again is a new entry: it may come back), across any number of
 * changes and a close and reopen of the volume. -EINVAL for a cookie not
 * below 2^63. Returns 0 at the end or when @fill stopped.
 */
int dir_readdir(struct vol *v, uint64_t d, uint64_t cookie, dir_fill_fn fill, void *ctx);

/*
 * fsck's oracle: check every invariant of @d's structure (see dir.c),
 * calling @report for each problem found with the block index it is in
 * (-1 when none). Returns 0 if clean, -EUCLEAN if anything was reported,
 * or another error that stopped the walk (-ENOMEM, a read's).
 */
typedef void (*dir_report_fn)(void *ctx, uint64_t d, uint64_t blk, const char *problem);
int dir_check(struct vol *v, uint64_t d, dir_report_fn report, void *ctx);

/* What dir_check also measures (for tests and fsck's statistics). */
struct dir_stats {
	uint64_t ds_entries;
	uint32_t ds_height;	 /* levels of the tree, leaves included */
	uint64_t ds_nodes;	 /* tree blocks */
	uint64_t ds_free_blocks; /* blocks of the free list chain */
	uint64_t ds_free;	 /* free indexes (punched) */
	uint64_t ds_hwm;	 /* indexes ever used: [0, hwm) */
};
int dir_stats(struct vol *v, uint64_t d, struct dir_stats *st);

/*
 * Test hooks, read by dir_create only: a directory created while
 * dh_hash_bits is nonzero uses only that many bits of hash (recorded in
 * its header, so it stays so), forcing collisions; dh_fixed_seed makes
 * the hash key dh_seed instead of a random one.
 */
struct dir_hooks {
	unsigned dh_hash_bits;
	bool dh_fixed_seed;
	uint64_t dh_seed;
};
extern struct dir_hooks dir_hooks;

#endif /* CAIRN_NS_DIR_H */

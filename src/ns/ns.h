/*
 * ns.h - the namespace layer's shared internals: the open filesystem
 * (struct cairn), in-memory inodes, transactions and locks. The public
 * API is include/cairn/cairn.h; ns.c opens with the design (invariants,
 * lock order).
 */
#ifndef CAIRN_NS_NS_H
#define CAIRN_NS_NS_H

#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

#include "cairn/cairn.h"
#include "ns/dir.h"
#include "ns/inode.h"
#include "util/util.h"

/* Client metadata owners (8 and 9 are inode.h's). */
#define NS_ORPHAN_OWNER (VOL_CLIENT_META + 2) /* 10: orphan list, a dir.c directory */
#define NS_SUPER_OWNER	(VOL_CLIENT_META + 3) /* 11: the namespace superblock */
/* An inode's xattrs live in owner NS_XATTR_BASE + ino (inodes stay below it). */
#define NS_XATTR_BASE (1ULL << 41)

#define NS_TXN_DATA_MAX 256u	      /* data blocks per transaction of a write or truncate */
#define NS_FREE_INLINE	32u	      /* blocks a deleting operation may spend freeing inline */
#define NS_XATTR_TOTAL	(128u * 1024) /* bytes of one inode's xattr blob */
#define NS_SYMLINK_MAX	4095u
#define NS_HASH_BUCKETS 1024u

/*
 * An inode in memory. Found through c_itab while referenced (ni_refs);
 * freed at the last reference.
 */
struct ns_inode {
	uint64_t ni_ino;
	unsigned ni_refs;	  /* protected by c_itab_lock */
	bool ni_hashed;		  /* protected by c_itab_lock */
	struct ns_inode *ni_next; /* protected by c_itab_lock */
	struct cmutex ni_load;	  /* serializes the first read of the record */
	_Atomic bool ni_loaded;	  /* ni_rec valid (set once under ni_load) */
	int ni_load_err;	  /* protected by ni_load */
	pthread_rwlock_t ni_lock; /* the record copy, data, dir entries, xattrs */
	struct inode_rec ni_rec;  /* protected by ni_lock; authoritative while cached */
	unsigned ni_open;	  /* protected by ni_lock (write) */
	uint64_t ni_parent;	  /* directories' '..': changed under c_rename_lock + ni_lock */
	struct cmutex ni_io;	  /* outermost: size-changing data ops, across transactions */
};

struct cairn {
	struct vol *c_vol;
	struct ialloc *c_ialloc;
	uint32_t c_bs;
	uint32_t c_dir_blocks;	/* dir_op_blocks(c_bs) */
	uint32_t c_txn_data;	/* data blocks per transaction of a write or truncate:
				   NS_TXN_DATA_MAX, or what the volume's cache holds */
	uint32_t c_free_inline; /* blocks an unlink may spend freeing inline:
				   NS_FREE_INLINE, or what the volume's cache leaves */
	bool c_rdonly;
	uint64_t c_max_ino;
	struct cmutex c_itab_lock;
	struct ns_inode *c_itab[NS_HASH_BUCKETS]; /* protected by c_itab_lock */
	struct cmutex c_rename_lock;		  /* serializes renames (and ni_parent) */
	struct cmutex c_orphan_lock;		  /* the orphan list (owner 10) */
	struct cmutex c_super_lock;		  /* c_inodes and its block */
	uint64_t c_inodes;			  /* inodes in use; protected by c_super_lock */
	struct bdev_identity c_image;		  /* immutable: the image file (cairn_open) */
	int c_image_err;			  /* immutable: 0 if c_image is known */
};

/* ---- ns.c: inodes, transactions, times --------------------------------------- */

/* Get a referenced, loaded inode. -ENOENT if it is not in use (or out of range). */
/*
 * Format @d (taken over: closed in every case) as an empty filesystem:
 * vol_mkfs, then the root directory, the orphan list and the namespace
 * superblock, durable. For cairn_mkfs and the tool, which opens and
 * checks the device itself. Errors as vol_mkfs (-EINVAL: too small or
 * bad options), and the first transaction's.
 */
int ns_mkfs(struct bdev *d, const struct vol_mkfs_opts *mo);

/*
 * cairn_open on an already-open device @d (taken over: closed on error
 * too, and by cairn_close): vol_open (recovery), the namespace superblock
 * and allocator, and the orphans freed unless o->coo_read_only. For
 * tests on the emulated device and tools that open the device
 * themselves; no lock is taken on it. Errors as cairn_open.
 */
int ns_open_dev(struct bdev *d, const struct cairn_open_opts *o, struct cairn **out);
/* ns_daemon.c: the image a snapshot is opened of, beside its daemon. */
struct ns_daemon_image {
	char di_path[PATH_MAX];	    /* absolute: what the daemon's mount names */
	struct bdev_identity di_id; /* the file this open has, whatever its path is now */
};
/*
 * vol_open_opts.voo_snapshot_find for an image (@arg: a struct
 * ns_daemon_image) that a `cairn mount` daemon has mounted; -EBUSY if
 * none has (a daemon of another file at that path does not count).
 */
vol_snap_find_fn ns_daemon_snapshot_find;
/*
 * Call @fn(@arg, dir) for each directory where a `cairn mount` daemon
 * serves @image (an absolute path), read-write or read only (a snapshot's
 * mount among them), until @fn returns non-zero,
 * which is returned; 0 after the last; -errno if the mounts cannot be read.
 */
int ns_daemon_each(const char *image, int (*fn)(void *arg, const char *dir), void *arg);

int ns_iget(struct cairn *c, uint64_t ino, struct ns_inode **out);
/* As ns_iget, but any loaded record (free ones too): for reclaim. */
int ns_iget_any(struct cairn *c, uint64_t ino, struct ns_inode **out);
void ns_iput(struct cairn *c, struct ns_inode *ni);
/* A new inode's node (replacing a stale one of the number), record @r. */
int ns_inew(struct cairn *c, uint64_t ino, const struct inode_rec *r, struct ns_inode **out);

void ns_wlock(struct ns_inode *ni);
void ns_rlock(struct ns_inode *ni);
void ns_unlock(struct ns_inode *ni);
/* Lock @a and @b (either may be NULL or equal) for writing, ascending ino. */
void ns_wlock2(struct ns_inode *a, struct ns_inode *b);
void ns_unlock2(struct ns_inode *a, struct ns_inode *b);

/* vol_txn_begin, -EROFS on a read-only volume. */
int ns_txn_begin(struct cairn *c, uint64_t nblocks, unsigned flags, struct vol_txn *t);
/* ns_txn_begin for @count blocks of @ino from @first on, and @nblocks
 * others (vol_txn_begin_run): a write or a punch of a file's range. */
int ns_txn_begin_run(struct cairn *c, uint64_t ino, uint64_t first, uint64_t count,
		     uint64_t nblocks, unsigned flags, struct vol_txn *t);
/* Write the record copy of @ni (locked for writing) in @t. */
int ns_iwrite(struct vol_txn *t, struct ns_inode *ni);
void ns_now(struct inode_time *t);
void ns_stat_fill(struct cairn *c, const struct ns_inode *ni, struct cairn_stat *st);
void ns_stat_rec(struct cairn *c, uint64_t ino, const struct inode_rec *r, struct cairn_stat *st);
bool ns_alive(const struct ns_inode *ni); /* in use, linked or open */

/* Allocate an inode with @r's attributes in @t (IALLOC_ALLOC_BLOCKS + 2). */
int ns_ialloc(struct cairn *c, struct vol_txn *t, struct inode_rec *r, struct ns_inode **out);
/* Blocks a dropping operation adds to its transaction (ns_drop_locked). */
uint64_t ns_drop_blocks(struct cairn *c);
/* The blocks of an xattr change's transaction. */
uint64_t ns_xattr_txn_blocks(const struct cairn *c);
/* Blocks an unlink or rmdir reserves: the name, two inode records, the drop. */
uint64_t ns_remove_blocks(struct cairn *c);
/* The blocks of a rename's transaction (it may drop the inode it replaces). */
uint64_t ns_rename_blocks(struct cairn *c);
/*
 * @ni (locked for writing, nlink just 0) lost its last name in @t: free it
 * now if it is not open and that fits in @t, else put it on the orphan
 * list. *reclaim is set when the caller must ns_reclaim it after ending
 * @t and dropping its locks.
 */
int ns_drop_locked(struct cairn *c, struct vol_txn *t, struct ns_inode *ni, bool *reclaim);
/* Free an orphan that is no longer open: data, xattrs, the inode. */
int ns_reclaim(struct cairn *c, uint64_t ino);
/* Orphan list entries: "<ino>" to free, "<ino>.<end>" to punch blocks >= size up to end. */
int ns_orphan_add(struct cairn *c, struct vol_txn *t, uint64_t ino, uint64_t end);
int ns_orphan_remove(struct cairn *c, struct vol_txn *t, uint64_t ino, uint64_t end);
/* Change the count of inodes in use (in @t: one block). */
int ns_count_inodes(struct cairn *c, struct vol_txn *t, int delta);

/* ---- ns_file.c: data ----------------------------------------------------------- */

uint64_t ns_size_blocks(const struct cairn *c, uint64_t size);
uint64_t ns_max_size(const struct cairn *c);
/*
 * Punch the blocks of owner @owner in [@from, @to) in @t, which has room
 * for @cost (ns_punch_cost, or ns_punch_plan's); nothing is mapped at or
 * past @to. With @mapped, *mapped counts the blocks that held data (the
 * caller keeps ir_blocks with ns_blocks_after).
 */
int ns_punch_range(struct vol_txn *t, uint64_t owner, uint64_t from, uint64_t to, uint64_t cost,
		   uint64_t *mapped);
/* What punching [@from, @to) costs at most, whatever it holds (0 if empty). */
uint64_t ns_punch_cost(const struct cairn *c, uint64_t from, uint64_t to);
/*
 * The top of [@lo, @hi) one transaction with @room blocks for punching
 * can free: [*from, @hi), for *cost blocks (at least one index's blocks).
 */
int ns_punch_plan(struct cairn *c, uint64_t owner, uint64_t lo, uint64_t hi, uint64_t room,
		  uint64_t *from, uint64_t *cost);
#define NS_COUNT_MAX	  4096u	     /* blocks ns_punch_range reads to count what it frees */
#define NS_MAPPED_UNKNOWN UINT64_MAX /* ns_punch_range's *mapped past NS_COUNT_MAX */
/* ir_blocks after freeing @freed blocks (or NS_MAPPED_UNKNOWN) from block @from on. */
uint64_t ns_blocks_after(uint64_t blocks, uint64_t freed, uint64_t from);
/* Change the size of @ni (regular) to @size; the caller holds nothing. */
int ns_truncate(struct cairn *c, struct ns_inode *ni, uint64_t size, const struct cairn_setattr *sa,
		unsigned mask);
/*
 * One more transaction of a truncate: punch the top of [@lo, *@hi) (the
 * rest of a truncate whose orphan entry is "<ino>.<to>"), lowering *@hi
 * and keeping ir_blocks; the one that reaches @lo removes the entry.
 * @ni's ni_io is held.
 */
int ns_trunc_more(struct cairn *c, struct ns_inode *ni, uint64_t lo, uint64_t *hi, uint64_t to);

/* ---- ns_xattr.c -------------------------------------------------------------------- */

/* ---- ns_name.c --------------------------------------------------------------------- */

/* Look @name up in @dir (read-locks it). */
int ns_lookup_ino(struct cairn *c, uint64_t dir, const char *name, size_t len, uint64_t *ino);
int ns_set_attrs(struct cairn *c, struct ns_inode *ni, unsigned mask,
		 const struct cairn_setattr *sa);

#endif /* CAIRN_NS_NS_H */

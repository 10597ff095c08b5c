/*
 * ns.c - the namespace layer: the open filesystem (struct cairn),
 * inodes in memory, transactions, orphans; the design of libcairn.
 *
 * The namespace keeps a POSIX filesystem in the owners of a volume
 * (src/vol): inode N's data (a file's bytes, a directory's B+tree, a long
 * symlink's target) is owner N, block i holding bytes [i*bs, (i+1)*bs);
 * its xattrs are owner NS_XATTR_BASE + N (ns_xattr.c); records and the
 * allocation bitmap are inode.c's owners 8 and 9. Two more client
 * metadata owners:
 *
 *   10 (NS_ORPHAN_OWNER)  the orphan list: a dir.c directory whose names
 *                         are "<ino>" (an inode with no name left, to
 *                         free: open when it was unlinked, or too big to
 *                         free in its unlink's transaction) or
 *                         "<ino>.<end>" (a truncate an older cairn had
 *                         in progress: blocks from the size's end up to
 *                         <end> still to punch; none are made now)
 *   11 (NS_SUPER_OWNER)   the namespace superblock, 32 bytes in block 0:
 *                         magic "CAIRNNS1", u32 version 1, u32 0, u64
 *                         inodes in use, u64 XXH3 of bytes 0..23
 *
 * Files. A block that reads as zeros is never mapped: a write whose block
 * comes out all zero punches it instead (holes stay holes, and a block is
 * mapped iff its content is not zero), so the record's block count is
 * exact: a block write reads the old block first when it lies inside the
 * file (outside, it is a hole: truncate punches everything past the end)
 * and counts the change. Writes are split into transactions of at most
 * NS_TXN_DATA_MAX blocks (fewer if the cache is small: c_txn_data). A
 * truncate costs what it frees (vol_truncate_plan), so it goes from the
 * top down, a transaction per step of what its room frees, each step
 * lowering the size to where it cut; the last zeroes the partial last
 * block and sets the size asked for. An error or a crash between steps
 * leaves a file cut at a step, with nothing stale past its end
 * (ns_truncate). The block count of a step over NS_COUNT_MAX blocks is
 * conservative (vol_truncate does not say how many blocks it freed): the
 * count is capped at the blocks below the step.
 *
 * Orphans. Unlinking the last name of an inode that is open (ni_open)
 * sets INODE_F_ORPHAN and puts "<ino>" on the orphan list in the same
 * transaction; its last cairn_release frees data, xattrs and the inode
 * (ns_reclaim: transactions of punches, then one that frees the inode and
 * removes the entry). One that is not open is freed in the unlink's own
 * transaction when that fits (c_free_inline blocks, NS_FREE_INLINE if the
 * cache allows), else the same way
 * at once. cairn_open frees everything on the list (the process died with
 * the file open, or in a reclaim).
 *
 * Transactions. Every operation's changes are one vol transaction, so a
 * crash shows all or nothing of it (writes and truncates past one
 * transaction excepted, as above). It is begun with the worst-case block
 * count (the sum of the documented per-call bounds) BEFORE any namespace
 * lock is taken, and ended after they are released: vol_txn_begin may
 * wait for a commit, which waits for every transaction of its delta to
 * end, and one of those may be waiting for our lock. Deleting operations
 * begin with VOL_TXN_FREEING (they work on a full volume). A reservation
 * failure is the caller's -ENOSPC.
 *
 * Invariants
 *   (1) While an inode is in c_itab, its ni_rec is the authority: every
 *       change is made under ni_lock (write) and written with inode_write
 *       in the changing operation's transaction. A node leaves c_itab at
 *       its last reference (or when its number is reallocated: the stale
 *       node, whose record says free, is unhashed), so a record read from
 *       disk is only ever loaded when no copy is cached.
 *   (2) A record is loaded once (ni_load, ni_loaded), before any change.
 *   (3) Every mapped data block holds a nonzero byte; ir_blocks counts
 *       them (at most, after a huge truncate: see above); blocks at or
 *       past the end of the size are holes, except
 *       while "<ino>.<end>" is on the orphan list.
 *   (4) An inode with nlink 0 is either being freed in the operation that
 *       dropped its last name, or is on the orphan list with
 *       INODE_F_ORPHAN until it is freed.
 *   (5) ni_parent of a directory changes only under c_rename_lock (and
 *       its ni_lock), so a walk up the tree under c_rename_lock sees a
 *       fixed tree.
 *   (6) Owner ino's blocks are all holes when ino is freed (ialloc_free),
 *       so a reused number starts empty.
 *
 * Lock order (outermost first):
 *   ni_io (one inode's size-changing data ops; taken before the
 *     transaction, and held across the transactions of one write or
 *     truncate: no thread inside a transaction ever waits for it)
 *   -> vol transaction (vol_txn_begin)
 *   -> c_rename_lock (every rename)
 *   -> ni_lock of the inodes involved, by ascending inode number; an
 *      operation that finds a name under its parent's lock and must lock
 *      a lower-numbered child unlocks, locks both in order and looks
 *      again (ns_name.c)
 *   -> c_orphan_lock, c_super_lock, ialloc's and vol's own locks (leaves)
 *   c_itab_lock and ni_load are leaves: held only around the hash table,
 *   and around the first read of a record (no ni_lock held by that thread
 *   on the same node; a loader holds nothing that a changing op waits on).
 *
 * Permissions are not checked (the FUSE adapter mounts with
 * default_permissions). atime is only changed by setattr (as noatime).
 */
#include "ns/ns.h"

#include <endian.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "bdev/bdev.h"
#include "log/log.h"

#define NS_SUPER_MAGIC	 "CAIRNNS1"
#define NS_SUPER_VERSION 1u
#define NS_CACHE_MB	 64u
#define NS_MKFS_BLOCKS	 (IALLOC_ALLOC_BLOCKS + 2 + INODE_WRITE_BLOCKS + 2 + 1)

struct ns_super_disk {
	char sd_magic[8];
	uint32_t sd_version;
	uint32_t sd_reserved;
	uint64_t sd_inodes;
	uint64_t sd_csum;
};
_Static_assert(sizeof(struct ns_super_disk) == 32, "ns superblock is 32 bytes");

/* ---- small helpers ------------------------------------------------------------ */

void ns_now(struct inode_time *t)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	t->it_sec = ts.tv_sec;
	t->it_nsec = (uint32_t)ts.tv_nsec;
}

bool ns_alive(const struct ns_inode *ni)
{
	return (ni->ni_rec.ir_flags & INODE_F_IN_USE) && (ni->ni_rec.ir_nlink || ni->ni_open);
}

int ns_txn_begin_run(struct cairn *c, uint64_t ino, uint64_t first, uint64_t count,
		     uint64_t nblocks, unsigned flags, struct vol_txn *t)
{
	if (c->c_rdonly)
		return -EROFS;
	return vol_txn_begin_run(c->c_vol, ino, first, count, nblocks, flags, t);
}

int ns_txn_begin(struct cairn *c, uint64_t nblocks, unsigned flags, struct vol_txn *t)
{
	return ns_txn_begin_run(c, 0, 0, 0, nblocks, flags, t);
}

int ns_iwrite(struct vol_txn *t, struct ns_inode *ni)
{
	return inode_write(t, ni->ni_ino, &ni->ni_rec);
}

void ns_stat_rec(struct cairn *c, uint64_t ino, const struct inode_rec *r, struct cairn_stat *st)
{
	if (!st)
		return;
	*st = (struct cairn_stat){
	    .cs_ino = ino,
	    .cs_gen = r->ir_gen,
	    .cs_mode = r->ir_mode,
	    .cs_nlink = r->ir_nlink,
	    .cs_uid = r->ir_uid,
	    .cs_gid = r->ir_gid,
	    .cs_rdev = r->ir_rdev,
	    .cs_size = r->ir_size,
	    .cs_blocks = r->ir_blocks * (c->c_bs / 512),
	    .cs_blksize = c->c_bs,
	    .cs_atime = {r->ir_atime.it_sec, r->ir_atime.it_nsec},
	    .cs_mtime = {r->ir_mtime.it_sec, r->ir_mtime.it_nsec},
	    .cs_ctime = {r->ir_ctime.it_sec, r->ir_ctime.it_nsec},
	};
}

void ns_stat_fill(struct cairn *c, const struct ns_inode *ni, struct cairn_stat *st)
{
	ns_stat_rec(c, ni->ni_ino, &ni->ni_rec, st);
}

/* ---- the inode table ------------------------------------------------------------ */

static unsigned ns_bucket(uint64_t ino)
{
	return (unsigned)((ino * 0x9e3779b97f4a7c15ULL) >> 54) % NS_HASH_BUCKETS;
}

static struct ns_inode *ns_node_new(uint64_t ino)
{
	struct ns_inode *ni = calloc(1, sizeof(*ni));

	if (!ni)
		return NULL;
	ni->ni_ino = ino;
	ni->ni_refs = 1;
	cmutex_init(&ni->ni_load);
	cmutex_init(&ni->ni_io);
	pthread_rwlock_init(&ni->ni_lock, NULL);
	return ni;
}

static void ns_node_free(struct ns_inode *ni)
{
	cmutex_destroy(&ni->ni_load);
	cmutex_destroy(&ni->ni_io);
	pthread_rwlock_destroy(&ni->ni_lock);
	free(ni);
}

static void ns_unhash_locked(struct cairn *c, struct ns_inode *ni)
{
	struct ns_inode **pp = &c->c_itab[ns_bucket(ni->ni_ino)];

	assert(cmutex_held(&c->c_itab_lock));
	while (*pp != ni)
		pp = &(*pp)->ni_next;
	*pp = ni->ni_next;
	ni->ni_hashed = false;
}

/* Find or insert @ino's node, referenced. @fresh: a new node is wanted. */
static int ns_ifind(struct cairn *c, uint64_t ino, struct ns_inode *fresh, struct ns_inode **out)
{
	struct ns_inode *ni, *nn = NULL;
	unsigned b = ns_bucket(ino);

	if (!fresh) {
		nn = ns_node_new(ino);
		if (!nn)
			return -ENOMEM;
	}
	cmutex_lock(&c->c_itab_lock);
	for (ni = c->c_itab[b]; ni && ni->ni_ino != ino; ni = ni->ni_next)
		;
	if (ni && fresh) { /* a stale node of a freed number: (1) */
		ns_unhash_locked(c, ni);
		ni = NULL;
	}
	if (ni) {
		ni->ni_refs++;
	} else {
		ni = fresh ? fresh : nn;
		nn = NULL;
		ni->ni_next = c->c_itab[b];
		ni->ni_hashed = true;
		c->c_itab[b] = ni;
	}
	cmutex_unlock(&c->c_itab_lock);
	if (nn)
		ns_node_free(nn);
	*out = ni;
	return 0;
}

void ns_iput(struct cairn *c, struct ns_inode *ni)
{
	bool last;

	if (!ni)
		return;
	cmutex_lock(&c->c_itab_lock);
	last = --ni->ni_refs == 0;
	if (last && ni->ni_hashed)
		ns_unhash_locked(c, ni);
	cmutex_unlock(&c->c_itab_lock);
	if (last)
		ns_node_free(ni);
}

static int ns_iload(struct cairn *c, struct ns_inode *ni)
{
	int err;

	if (atomic_load(&ni->ni_loaded))
		return 0;
	cmutex_lock(&ni->ni_load);
	if (!atomic_load(&ni->ni_loaded)) {
		ni->ni_load_err = inode_read(c->c_vol, ni->ni_ino, &ni->ni_rec);
		if (!ni->ni_load_err && S_ISDIR(ni->ni_rec.ir_mode))
			ni->ni_parent = ni->ni_rec.ir_parent;
		if (!ni->ni_load_err)
			atomic_store(&ni->ni_loaded, true);
	}
	err = ni->ni_load_err;
	cmutex_unlock(&ni->ni_load);
	return err;
}

int ns_iget_any(struct cairn *c, uint64_t ino, struct ns_inode **out)
{
	struct ns_inode *ni;
	int err;

	if (ino < INODE_ROOT || ino > c->c_max_ino)
		return -ENOENT;
	err = ns_ifind(c, ino, NULL, &ni);
	if (err)
		return err;
	err = ns_iload(c, ni);
	if (err) {
		ns_iput(c, ni);
		return err;
	}
	*out = ni;
	return 0;
}

int ns_iget(struct cairn *c, uint64_t ino, struct ns_inode **out)
{
	struct ns_inode *ni;
	bool used;
	int err;

	err = ns_iget_any(c, ino, &ni);
	if (err)
		return err;
	ns_rlock(ni);
	used = ni->ni_rec.ir_flags & INODE_F_IN_USE;
	ns_unlock(ni);
	if (!used) {
		ns_iput(c, ni);
		return -ENOENT;
	}
	*out = ni;
	return 0;
}

int ns_inew(struct cairn *c, uint64_t ino, const struct inode_rec *r, struct ns_inode **out)
{
	struct ns_inode *ni = ns_node_new(ino);

	if (!ni)
		return -ENOMEM;
	ni->ni_rec = *r;
	ni->ni_parent = S_ISDIR(r->ir_mode) ? r->ir_parent : 0;
	atomic_store(&ni->ni_loaded, true);
	return ns_ifind(c, ino, ni, out);
}

void ns_wlock(struct ns_inode *ni)
{
	pthread_rwlock_wrlock(&ni->ni_lock);
}

void ns_rlock(struct ns_inode *ni)
{
	pthread_rwlock_rdlock(&ni->ni_lock);
}

void ns_unlock(struct ns_inode *ni)
{
	pthread_rwlock_unlock(&ni->ni_lock);
}

void ns_wlock2(struct ns_inode *a, struct ns_inode *b)
{
	if (a && b && a != b && b->ni_ino < a->ni_ino) {
		struct ns_inode *x = a;

		a = b;
		b = x;
	}
	if (a)
		ns_wlock(a);
	if (b && b != a)
		ns_wlock(b);
}

void ns_unlock2(struct ns_inode *a, struct ns_inode *b)
{
	if (a)
		ns_unlock(a);
	if (b && b != a)
		ns_unlock(b);
}

/* ---- the superblock (owner 11) ------------------------------------------------------- */

static void ns_super_encode(uint64_t inodes, struct ns_super_disk *sd)
{
	memset(sd, 0, sizeof(*sd));
	memcpy(sd->sd_magic, NS_SUPER_MAGIC, 8);
	sd->sd_version = htole32(NS_SUPER_VERSION);
	sd->sd_inodes = htole64(inodes);
	sd->sd_csum = htole64(XXH3_64bits(sd, offsetof(struct ns_super_disk, sd_csum)));
}

static int ns_super_read(struct cairn *c)
{
	struct ns_super_disk sd;
	int err;

	err = vol_read_range(c->c_vol, NS_SUPER_OWNER, 0, 0, sizeof(sd), &sd);
	if (err)
		return err;
	if (memcmp(sd.sd_magic, NS_SUPER_MAGIC, 8) || le32toh(sd.sd_version) != NS_SUPER_VERSION ||
	    le64toh(sd.sd_csum) != XXH3_64bits(&sd, offsetof(struct ns_super_disk, sd_csum))) {
		log_err("ns: bad namespace superblock (owner %u block 0)", NS_SUPER_OWNER);
		return -EUCLEAN;
	}
	c->c_inodes = le64toh(sd.sd_inodes);
	return 0;
}

int ns_count_inodes(struct cairn *c, struct vol_txn *t, int delta)
{
	struct ns_super_disk sd;
	int err;

	cmutex_lock(&c->c_super_lock);
	ns_super_encode(c->c_inodes + (uint64_t)(int64_t)delta, &sd);
	err = vol_write_range(t, NS_SUPER_OWNER, 0, 0, sizeof(sd), &sd);
	if (!err)
		c->c_inodes += (uint64_t)(int64_t)delta;
	cmutex_unlock(&c->c_super_lock);
	return err;
}

/* ---- allocation and freeing ------------------------------------------------------------- */

int ns_ialloc(struct cairn *c, struct vol_txn *t, struct inode_rec *r, struct ns_inode **out)
{
	uint64_t ino, gen;
	int err;

	err = ialloc_alloc(c->c_ialloc, t, &ino, &gen);
	if (err)
		return err;
	r->ir_flags = INODE_F_IN_USE;
	r->ir_gen = gen;
	err = inode_write(t, ino, r);
	if (!err)
		err = ns_count_inodes(c, t, 1);
	if (!err)
		err = ns_inew(c, ino, r, out);
	return err;
}

/*
 * Free @ni's data blocks (costing @dcost: ns_punch_plan), xattr blocks
 * (@xcost) and number in @t (its lock held for writing).
 */
static int ns_free_locked(struct cairn *c, struct vol_txn *t, struct ns_inode *ni, uint64_t dcost,
			  uint64_t xcost)
{
	int err;

	err = ns_punch_range(t, ni->ni_ino, 0, 0, dcost, NULL);
	if (!err)
		err = ns_punch_range(t, NS_XATTR_BASE + ni->ni_ino, 0, 0, xcost, NULL);
	if (!err)
		err = ialloc_free(c->c_ialloc, t, ni->ni_ino);
	if (!err)
		err = ns_count_inodes(c, t, -1);
	if (!err)
		ni->ni_rec = (struct inode_rec){.ir_gen = ni->ni_rec.ir_gen};
	return err;
}

uint64_t ns_drop_blocks(struct cairn *c)
{
	return c->c_free_inline + IALLOC_FREE_BLOCKS + 1 + c->c_dir_blocks + INODE_WRITE_BLOCKS;
}

uint64_t ns_rename_blocks(struct cairn *c)
{
	return 4 * c->c_dir_blocks + 4 * INODE_WRITE_BLOCKS + ns_drop_blocks(c);
}

uint64_t ns_remove_blocks(struct cairn *c)
{
	return c->c_dir_blocks + 2 * INODE_WRITE_BLOCKS + ns_drop_blocks(c);
}

int ns_drop_locked(struct cairn *c, struct vol_txn *t, struct ns_inode *ni, bool *reclaim)
{
	int err;

	*reclaim = false;
	if (!ni->ni_open) { /* what fits in c_free_inline is freed here */
		uint64_t dfrom, dcost, xfrom, xcost;

		err = ns_punch_plan(c, ni->ni_ino, 0, VOL_INDEX_END, c->c_free_inline, &dfrom,
				    &dcost);
		xfrom = xcost = 0; /* no xattr owner: nothing to free there */
		if (!err && ni->ni_rec.ir_xattr_owner)
			err = ns_punch_plan(c, NS_XATTR_BASE + ni->ni_ino, 0, VOL_INDEX_END,
					    c->c_free_inline - MIN(dcost, c->c_free_inline), &xfrom,
					    &xcost);
		/* a plan that failed (a map block unreadable) leaves the freeing
		 * to the orphan list: the name goes now */
		if (!err && !dfrom && !xfrom && dcost + xcost <= c->c_free_inline)
			return ns_free_locked(c, t, ni, dcost, xcost);
	}
	ni->ni_rec.ir_flags |= INODE_F_ORPHAN;
	err = ns_iwrite(t, ni);
	if (!err)
		err = ns_orphan_add(c, t, ni->ni_ino, 0);
	*reclaim = !err && !ni->ni_open;
	return err;
}

/* ---- orphans ------------------------------------------------------------------------------ */

static size_t ns_orphan_name(char *buf, size_t len, uint64_t ino, uint64_t end)
{
	int n = end ? snprintf(buf, len, "%" PRIu64 ".%" PRIu64, ino, end)
		    : snprintf(buf, len, "%" PRIu64, ino);

	return (size_t)n;
}

int ns_orphan_add(struct cairn *c, struct vol_txn *t, uint64_t ino, uint64_t end)
{
	char name[48];
	size_t len = ns_orphan_name(name, sizeof(name), ino, end);
	int err;

	cmutex_lock(&c->c_orphan_lock);
	err = dir_add(t, NS_ORPHAN_OWNER, name, len, ino, DT_REG);
	cmutex_unlock(&c->c_orphan_lock);
	return err;
}

int ns_orphan_remove(struct cairn *c, struct vol_txn *t, uint64_t ino, uint64_t end)
{
	char name[48];
	size_t len = ns_orphan_name(name, sizeof(name), ino, end);
	int err;

	cmutex_lock(&c->c_orphan_lock);
	err = dir_remove(t, NS_ORPHAN_OWNER, name, len, NULL);
	cmutex_unlock(&c->c_orphan_lock);
	return err;
}

/* Punch owner @owner's blocks [@lo, @hi) in transactions of their own, from the top down. */
static int ns_punch_txns(struct cairn *c, uint64_t owner, uint64_t lo, uint64_t hi)
{
	struct vol_txn t;
	int err = 0;

	while (!err && lo < hi) {
		uint64_t from, cost;

		err = ns_punch_plan(c, owner, lo, hi, c->c_txn_data, &from, &cost);
		if (err || !cost)
			break; /* nothing (more) to free */
		err = ns_txn_begin(c, cost, VOL_TXN_FREEING, &t);
		if (err)
			break;
		err = ns_punch_range(&t, owner, from, hi, cost, NULL);
		vol_txn_end(&t);
		hi = from;
	}
	return err;
}

int ns_reclaim(struct cairn *c, uint64_t ino)
{
	struct ns_inode *ni;
	struct vol_txn t;
	int err;

	err = ns_iget_any(c, ino, &ni);
	if (err)
		return err;
	cmutex_lock(&ni->ni_io);
	ns_rlock(ni);
	err = ns_alive(ni) || !(ni->ni_rec.ir_flags & INODE_F_ORPHAN) ? -EBUSY : 0;
	ns_unlock(ni);
	if (!err)
		err = ns_punch_txns(c, ino, 0, VOL_INDEX_END);
	if (!err)
		err = ns_punch_txns(c, NS_XATTR_BASE + ino, 0, VOL_INDEX_END);
	if (!err)
		err =
		    ns_txn_begin(c, IALLOC_FREE_BLOCKS + 1 + c->c_dir_blocks, VOL_TXN_FREEING, &t);
	if (!err) {
		ns_wlock(ni);
		err = ns_free_locked(c, &t, ni, 0, 0);
		if (!err)
			err = ns_orphan_remove(c, &t, ino, 0);
		ns_unlock(ni);
		vol_txn_end(&t);
	}
	cmutex_unlock(&ni->ni_io);
	ns_iput(c, ni);
	if (err)
		log_err("ns: cannot free orphan inode %" PRIu64 ": %d", ino, err);
	return err;
}

/* Finish a truncate a crash cut: punch [size's end, @end). */
static int ns_orphan_trunc(struct cairn *c, uint64_t ino, uint64_t end)
{
	struct ns_inode *ni;
	uint64_t from, hi;
	int err;

	err = ns_iget_any(c, ino, &ni);
	if (err)
		return err;
	cmutex_lock(&ni->ni_io);
	ns_rlock(ni);
	from = MIN(ns_size_blocks(c, ni->ni_rec.ir_size), end);
	ns_unlock(ni);
	/* from the top, as the cut truncate went; nothing if the file has
	 * grown past @end since (its blocks there are new) */
	hi = from < end ? VOL_INDEX_END : from;
	do /* at least once: the last removes the orphan entry */
		err = ns_trunc_more(c, ni, from, &hi, end);
	while (!err && from < hi);
	cmutex_unlock(&ni->ni_io);
	ns_iput(c, ni);
	return err;
}

struct ns_orphan_list {
	uint64_t *ol_ino, *ol_end;
	size_t ol_n, ol_cap;
};

static int ns_orphan_collect(void *ctx, const char *name, size_t len, uint64_t ino, uint8_t type,
			     uint64_t next_cookie)
{
	struct ns_orphan_list *l = ctx;
	char buf[48];
	const char *dot;

	(void)type;
	(void)next_cookie;
	if (len >= sizeof(buf) || (len <= 2 && name[0] == '.'))
		return 0;
	memcpy(buf, name, len);
	buf[len] = 0;
	if (l->ol_n == l->ol_cap) {
		size_t cap = l->ol_cap ? 2 * l->ol_cap : 16;
		uint64_t *a = realloc(l->ol_ino, cap * sizeof(*a)), *b;

		if (!a)
			return -ENOMEM;
		l->ol_ino = a;
		b = realloc(l->ol_end, cap * sizeof(*b));
		if (!b)
			return -ENOMEM;
		l->ol_end = b;
		l->ol_cap = cap;
	}
	dot = strchr(buf, '.');
	l->ol_ino[l->ol_n] = ino;
	l->ol_end[l->ol_n] = dot ? strtoull(dot + 1, NULL, 10) : 0;
	l->ol_n++;
	return 0;
}

/* Free what the orphan list holds (at open). */
static int ns_orphans_replay(struct cairn *c)
{
	struct ns_orphan_list l = {0};
	int err;

	err = dir_readdir(c->c_vol, NS_ORPHAN_OWNER, DIR_COOKIE_DOTDOT, ns_orphan_collect, &l);
	for (size_t i = 0; !err && i < l.ol_n; i++) {
		if (l.ol_end[i])
			err = ns_orphan_trunc(c, l.ol_ino[i], l.ol_end[i]);
		else
			err = ns_reclaim(c, l.ol_ino[i]);
		if (!err)
			log_info("ns: freed orphan inode %" PRIu64, l.ol_ino[i]);
	}
	free(l.ol_ino);
	free(l.ol_end);
	return err;
}

/* ---- mkfs, open, close -------------------------------------------------------------------------
 */

static const uint32_t ns_block_sizes[] = {512, 1024, 2048, 4096, 8192, 16384, 32768, 65536};

static int ns_find_block_size(const char *path, uint32_t *bs)
{
	for (size_t i = 0; i < ARRAY_SIZE(ns_block_sizes); i++) {
		struct bdev *d;
		bool found;
		int err = bdev_open_file(path, ns_block_sizes[i], 0, BDEV_RDONLY, &d);

		if (err == -EINVAL)
			continue;
		if (err)
			return err;
		found = log_probe(d);
		bdev_close(d);
		if (found) {
			*bs = ns_block_sizes[i];
			return 0;
		}
	}
	return -EUCLEAN;
}

static int ns_mkfs_root(struct vol *v)
{
	struct inode_rec r = {.ir_flags = INODE_F_IN_USE,
			      .ir_mode = S_IFDIR | 0755,
			      .ir_nlink = 2,
			      .ir_parent = INODE_ROOT};
	struct ns_super_disk sd;
	struct ialloc *a;
	struct vol_txn t;
	uint64_t ino, gen;
	int err;

	err = ialloc_create(v, NULL, &a);
	if (err)
		return err;
	err = vol_txn_begin(v, NS_MKFS_BLOCKS, 0, &t);
	if (err)
		goto out_ialloc;
	err = ialloc_alloc(a, &t, &ino, &gen);
	if (!err && ino != INODE_ROOT)
		err = -EUCLEAN;
	if (!err)
		err = dir_create(&t, INODE_ROOT, INODE_ROOT);
	ns_now(&r.ir_atime);
	r.ir_mtime = r.ir_ctime = r.ir_btime = r.ir_atime;
	r.ir_gen = gen;
	if (!err)
		err = inode_write(&t, INODE_ROOT, &r);
	if (!err)
		err = dir_create(&t, NS_ORPHAN_OWNER, NS_ORPHAN_OWNER);
	ns_super_encode(1, &sd);
	if (!err)
		err = vol_write_range(&t, NS_SUPER_OWNER, 0, 0, sizeof(sd), &sd);
	vol_txn_end(&t);
out_ialloc:
	ialloc_destroy(a);
	return err;
}

int cairn_mkfs(const char *path, const struct cairn_mkfs_opts *o)
{
	struct cairn_mkfs_opts def = {0};
	struct vol_mkfs_opts mo = {0};
	uint32_t bs;
	struct bdev *d;
	int err;

	if (!o)
		o = &def;
	bs = o->cmo_block_size ? o->cmo_block_size : 4096;
	mo.vmo_log = (struct log_format_opts){
	    .lfo_block_size = bs, .lfo_seg_blocks = o->cmo_seg_blocks, .lfo_label = o->cmo_label};
	err = bdev_open_file(path, bs, o->cmo_size / bs,
			     (o->cmo_size ? BDEV_CREATE : 0) | BDEV_EXCL_LOCK, &d);
	if (err)
		return err;
	return ns_mkfs(d, &mo);
}

int ns_mkfs(struct bdev *d, const struct vol_mkfs_opts *mo)
{
	struct vol *v;
	int err;

	err = bdev_pin_any(d); /* -EBUSY: a snapshot of it is open somewhere */
	if (!err)
		err = vol_mkfs(d, mo);
	if (!err)
		err = vol_open(d, NULL, &v);
	if (err) {
		bdev_close(d);
		return err;
	}
	err = ns_mkfs_root(v);
	if (!err)
		err = vol_sync(v);
	if (!err)
		err = vol_close(v);
	else
		vol_close(v);
	return err;
}

static void ns_free_struct(struct cairn *c)
{
	cmutex_destroy(&c->c_itab_lock);
	cmutex_destroy(&c->c_rename_lock);
	cmutex_destroy(&c->c_orphan_lock);
	cmutex_destroy(&c->c_super_lock);
	free(c);
}

static struct cairn *ns_alloc_struct(void)
{
	struct cairn *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	cmutex_init(&c->c_itab_lock);
	cmutex_init(&c->c_rename_lock);
	cmutex_init(&c->c_orphan_lock);
	cmutex_init(&c->c_super_lock);
	return c;
}

static void ns_vol_opts(const struct cairn_open_opts *o, uint32_t bs, struct vol_open_opts *vo)
{
	uint32_t mb = o->coo_cache_mb ? o->coo_cache_mb : NS_CACHE_MB;

	*vo = (struct vol_open_opts){.voo_max_age_ms = o->coo_max_age_ms,
				     .voo_snapshot = o->coo_snapshot,
				     .voo_checkpoint = o->coo_checkpoint,
				     .voo_protect_s = o->coo_protect_s};
	vo->voo_cache_blocks = (uint32_t)MIN((uint64_t)mb * 1024 * 1024 / bs, UINT32_MAX);
}

/*
 * Open @path, which a writer holds, for a snapshot to be read beside it:
 * *image says which file this open has, for its daemon to be asked.
 */
static int ns_daemon_image_open(const char *path, uint32_t bs, struct ns_daemon_image **image,
				struct bdev **d)
{
	struct ns_daemon_image *im = calloc(1, sizeof(*im));
	int err;

	if (!im)
		return -ENOMEM;
	if (!realpath(path, im->di_path)) {
		free(im);
		return -errno;
	}
	err = bdev_open_file(path, bs, 0, BDEV_RDONLY, d);
	if (!err) {
		err = bdev_identity(*d, &im->di_id);
		if (err)
			bdev_close(*d);
	}
	if (err)
		free(im);
	else
		*image = im;
	return err;
}

static int ns_open_vol(struct cairn *c, const char *path, const struct cairn_open_opts *o)
{
	struct ns_daemon_image *image = NULL;
	struct vol_open_opts vo;
	struct bdev *d;
	uint32_t bs = 0;
	int err;

	err = ns_find_block_size(path, &bs);
	if (err)
		return err;
	ns_vol_opts(o, bs, &vo);
	if (o->coo_checkpoint) {
		/* nothing pins it: no writer, as long as it is open */
		err = bdev_open_file(path, bs, 0, BDEV_RDONLY | BDEV_SHARED_LOCK, &d);
	} else if (!o->coo_snapshot) {
		err = bdev_open_file(path, bs, 0, BDEV_EXCL_LOCK, &d);
	} else {
		/* nobody writes: a shared lock until the snapshot is pinned (vol_open) */
		err = bdev_open_file(path, bs, 0, BDEV_RDONLY | BDEV_SHARED_LOCK, &d);
		if (err == -EBUSY) /* a writer: ask its daemon */
			err = ns_daemon_image_open(path, bs, &image, &d);
		if (image) {
			vo.voo_snapshot_find = ns_daemon_snapshot_find;
			vo.voo_snapshot_arg = image;
		}
	}
	if (err)
		return err;
	c->c_image_err = bdev_identity(d, &c->c_image);
	err = vol_open(d, &vo, &c->c_vol);
	if (err)
		bdev_close(d);
	free(image);
	return err;
}

/* The namespace on c->c_vol (open): superblock, allocator, orphans. Closes the volume on error. */
static int ns_open_ns(struct cairn *c, const struct cairn_open_opts *o);

int cairn_open(const char *path, const struct cairn_open_opts *o, struct cairn **out)
{
	struct cairn_open_opts def = {0};
	struct cairn *c;
	int err;

	if (!o)
		o = &def;
	c = ns_alloc_struct();
	if (!c)
		return -ENOMEM;
	err = ns_open_vol(c, path, o);
	if (!err)
		err = ns_open_ns(c, o);
	if (err) {
		ns_free_struct(c);
		return err;
	}
	*out = c;
	return 0;
}

int ns_open_dev(struct bdev *d, const struct cairn_open_opts *o, struct cairn **out)
{
	struct cairn_open_opts def = {0};
	struct vol_open_opts vo;
	struct cairn *c;
	int err;

	if (!o)
		o = &def;
	c = ns_alloc_struct();
	if (!c) {
		bdev_close(d);
		return -ENOMEM;
	}
	ns_vol_opts(o, bdev_block_size(d), &vo);
	c->c_image_err = bdev_identity(d, &c->c_image);
	err = vol_open(d, &vo, &c->c_vol);
	if (err) {
		bdev_close(d);
		ns_free_struct(c);
		return err;
	}
	err = ns_open_ns(c, o);
	if (err) {
		ns_free_struct(c);
		return err;
	}
	*out = c;
	return 0;
}

static int ns_open_ns(struct cairn *c, const struct cairn_open_opts *o)
{
	struct ialloc_opts io = {0};
	uint64_t room, fixed;
	int err;

	c->c_bs = vol_block_size(c->c_vol);
	c->c_dir_blocks = dir_op_blocks(c->c_bs);
	/* a write's transaction: its data, the inode, a directory change */
	room = vol_txn_max(c->c_vol);
	fixed = 1 + INODE_WRITE_BLOCKS + c->c_dir_blocks;
	c->c_txn_data = (uint32_t)MIN((uint64_t)NS_TXN_DATA_MAX, room > fixed ? room - fixed : 0);
	/* the largest transactions of a fixed size: a rename (freeing inline
	 * what the rest leaves, up to NS_FREE_INLINE) and an xattr change */
	c->c_free_inline = 0;
	fixed = MAX(fixed + 1, MAX(ns_rename_blocks(c), ns_xattr_txn_blocks(c)));
	if (room < fixed && !o->coo_read_only && !o->coo_snapshot && !o->coo_checkpoint) {
		log_err("ns: the cache holds too few blocks for a transaction (%" PRIu64
			", at least %" PRIu64 " needed): give it more memory",
			room, fixed);
		err = -EINVAL;
		goto out_vol;
	}
	c->c_txn_data = MAX(c->c_txn_data, 1u);
	c->c_free_inline = (uint32_t)MIN(
	    (uint64_t)NS_FREE_INLINE, room > ns_rename_blocks(c) ? room - ns_rename_blocks(c) : 0);
	/* an unlink or rmdir can always run, on a full volume too */
	vol_keep_for_freeing(c->c_vol, ns_remove_blocks(c));
	c->c_max_ino = io.iao_max_ino = MIN(inode_max_ino(c->c_bs), NS_XATTR_BASE - 1);
	err = ns_super_read(c);
	if (!err)
		err = ialloc_create(c->c_vol, &io, &c->c_ialloc);
	if (err)
		goto out_vol;
	c->c_rdonly = o->coo_read_only || o->coo_snapshot || o->coo_checkpoint;
	if (!c->c_rdonly)
		err = ns_orphans_replay(c);
	if (err)
		goto out_ialloc;
	return 0;
out_ialloc:
	ialloc_destroy(c->c_ialloc);
out_vol:
	vol_close(c->c_vol);
	c->c_vol = NULL;
	return err;
}

/* Release every inode still open (freeing the unlinked ones). No other thread runs. */
static void ns_release_all(struct cairn *c)
{
	uint64_t *inos = NULL;
	size_t n = 0, cap = 0;

	cmutex_lock(&c->c_itab_lock);
	for (unsigned b = 0; b < NS_HASH_BUCKETS; b++) {
		for (struct ns_inode *ni = c->c_itab[b]; ni; ni = ni->ni_next) {
			if (n == cap) {
				uint64_t *x =
				    realloc(inos, (cap = cap ? 2 * cap : 64) * sizeof(*x));

				if (!x)
					break;
				inos = x;
			}
			if (n < cap)
				inos[n++] = ni->ni_ino;
		}
	}
	cmutex_unlock(&c->c_itab_lock);
	for (size_t i = 0; i < n; i++)
		while (!cairn_release(c, inos[i]))
			;
	free(inos);
}

int cairn_close(struct cairn *c)
{
	int err;

	if (!c)
		return 0;
	if (!c->c_rdonly)
		ns_release_all(c);
	ialloc_destroy(c->c_ialloc);
	err = vol_close(c->c_vol);
	for (unsigned b = 0; b < NS_HASH_BUCKETS; b++) {
		while (c->c_itab[b]) { /* leaked references (a caller's bug): free anyway */
			struct ns_inode *ni = c->c_itab[b];

			c->c_itab[b] = ni->ni_next;
			ns_node_free(ni);
		}
	}
	ns_free_struct(c);
	return err;
}

/* ---- open counts, attributes, sync, statfs --------------------------------------------- */

int cairn_open_inode(struct cairn *c, uint64_t ino)
{
	struct ns_inode *ni;
	int err;

	err = ns_iget(c, ino, &ni);
	if (err)
		return err;
	ns_wlock(ni);
	err = ns_alive(ni) ? 0 : -ENOENT;
	if (!err)
		ni->ni_open++;
	ns_unlock(ni);
	if (err)
		ns_iput(c, ni);
	return err; /* the reference stays with the open */
}

int cairn_release(struct cairn *c, uint64_t ino)
{
	struct ns_inode *ni;
	bool reclaim;
	int err;

	err = ns_iget_any(c, ino, &ni);
	if (err)
		return err;
	ns_wlock(ni);
	err = ni->ni_open ? 0 : -EINVAL;
	if (!err)
		ni->ni_open--;
	reclaim =
	    !err && !ni->ni_open && !ni->ni_rec.ir_nlink && (ni->ni_rec.ir_flags & INODE_F_ORPHAN);
	ns_unlock(ni);
	if (!err)
		ns_iput(c, ni); /* the open's reference */
	if (reclaim && !c->c_rdonly)
		err = ns_reclaim(c, ino);
	ns_iput(c, ni);
	return err;
}

int cairn_getattr(struct cairn *c, uint64_t ino, struct cairn_stat *st)
{
	struct ns_inode *ni;
	int err;

	err = ns_iget(c, ino, &ni);
	if (err)
		return err;
	ns_rlock(ni);
	ns_stat_fill(c, ni, st);
	ns_unlock(ni);
	ns_iput(c, ni);
	return 0;
}

static void ns_time_set(struct inode_time *dst, const struct timespec *ts,
			const struct inode_time *now)
{
	if (ts->tv_nsec == UTIME_OMIT)
		return;
	if (ts->tv_nsec == UTIME_NOW) {
		*dst = *now;
		return;
	}
	dst->it_sec = ts->tv_sec;
	dst->it_nsec = (uint32_t)ts->tv_nsec;
}

static bool ns_time_valid(const struct timespec *ts)
{
	return ts->tv_nsec == UTIME_NOW || ts->tv_nsec == UTIME_OMIT ||
	       (ts->tv_nsec >= 0 && ts->tv_nsec < 1000000000L);
}

/* Apply the non-size attributes of @mask to @ni (locked for writing). */
int ns_set_attrs(struct cairn *c, struct ns_inode *ni, unsigned mask,
		 const struct cairn_setattr *sa)
{
	struct inode_rec *r = &ni->ni_rec;
	struct inode_time now;

	(void)c;
	ns_now(&now);
	if (mask & CAIRN_SET_MODE)
		r->ir_mode = (r->ir_mode & S_IFMT) | (sa->csa_mode & 07777);
	if (mask & CAIRN_SET_UID)
		r->ir_uid = sa->csa_uid;
	if (mask & CAIRN_SET_GID)
		r->ir_gid = sa->csa_gid;
	if (mask & CAIRN_SET_ATIME)
		ns_time_set(&r->ir_atime, &sa->csa_atime, &now);
	if (mask & CAIRN_SET_MTIME)
		ns_time_set(&r->ir_mtime, &sa->csa_mtime, &now);
	r->ir_ctime = now;
	if (mask & CAIRN_SET_CTIME)
		ns_time_set(&r->ir_ctime, &sa->csa_ctime, &now);
	return 0;
}

int cairn_setattr(struct cairn *c, uint64_t ino, unsigned mask, const struct cairn_setattr *sa,
		  struct cairn_stat *st)
{
	struct ns_inode *ni;
	struct vol_txn t;
	int err;

	if ((mask & ~0x7fu) || (mask && !sa) ||
	    ((mask & CAIRN_SET_ATIME) && !ns_time_valid(&sa->csa_atime)) ||
	    ((mask & CAIRN_SET_MTIME) && !ns_time_valid(&sa->csa_mtime)) ||
	    ((mask & CAIRN_SET_CTIME) && !ns_time_valid(&sa->csa_ctime)))
		return -EINVAL;
	err = ns_iget(c, ino, &ni);
	if (err)
		return err;
	if (mask & CAIRN_SET_SIZE) {
		err = ns_truncate(c, ni, sa->csa_size, sa, mask);
		goto out;
	}
	if (!mask)
		goto out;
	err = ns_txn_begin(c, INODE_WRITE_BLOCKS, 0, &t);
	if (err)
		goto out;
	ns_wlock(ni);
	err = ns_alive(ni) ? 0 : -ENOENT;
	if (!err)
		err = ns_set_attrs(c, ni, mask, sa);
	if (!err)
		err = ns_iwrite(&t, ni);
	ns_unlock(ni);
	vol_txn_end(&t);
out:
	if (!err && st) {
		ns_rlock(ni);
		ns_stat_fill(c, ni, st);
		ns_unlock(ni);
	}
	ns_iput(c, ni);
	return err;
}

int cairn_fsync(struct cairn *c, uint64_t ino, int datasync)
{
	(void)ino;
	(void)datasync;
	return c->c_rdonly ? 0 : vol_sync(c->c_vol);
}

int cairn_syncfs(struct cairn *c)
{
	return c->c_rdonly ? 0 : vol_sync(c->c_vol);
}

int cairn_snapshot_create(struct cairn *c, const char *name)
{
	return c->c_rdonly ? -EROFS : vol_snap_create(c->c_vol, name);
}

int cairn_snapshot_create_at(struct cairn *c, const char *name, uint64_t delta)
{
	return c->c_rdonly ? -EROFS : vol_snap_create_at(c->c_vol, name, delta);
}

int cairn_snapshot_delete(struct cairn *c, const char *name)
{
	return c->c_rdonly ? -EROFS : vol_snap_delete(c->c_vol, name);
}

int cairn_snapshot_list(struct cairn *c, struct cairn_snapshot **out, size_t *n)
{
	struct vol_snap_info *si;
	int err = vol_snap_list(c->c_vol, &si, n);

	_Static_assert(CAIRN_SNAP_NAME_MAX == VOL_SNAP_NAME_MAX, "one name limit");
	*out = NULL;
	if (err || !*n)
		return err;
	*out = calloc(*n, sizeof(**out));
	if (!*out) {
		free(si);
		*n = 0;
		return -ENOMEM;
	}
	for (size_t i = 0; i < *n; i++) {
		memcpy((*out)[i].cs_name, si[i].vsi_name, sizeof((*out)[i].cs_name));
		(*out)[i].cs_delta = si[i].vsi_delta;
		(*out)[i].cs_ctime_ns = si[i].vsi_ctime_ns;
		(*out)[i].cs_sroot = si[i].vsi_sroot;
		(*out)[i].cs_xlate = si[i].vsi_xlate;
	}
	free(si);
	return 0;
}

int cairn_checkpoints(struct cairn *c, size_t max, struct cairn_checkpoint **out, size_t *n)
{
	struct vol_checkpoint *cp;
	int err = vol_checkpoints(c->c_vol, max, &cp, n);

	*out = NULL;
	if (err || !*n)
		return err;
	*out = calloc(*n, sizeof(**out));
	if (!*out) {
		free(cp);
		*n = 0;
		return -ENOMEM;
	}
	for (size_t i = 0; i < *n; i++)
		(*out)[i] = (struct cairn_checkpoint){cp[i].vcp_delta, (int64_t)cp[i].vcp_time_ns};
	free(cp);
	return 0;
}

int cairn_image_identity(struct cairn *c, uint64_t *dev, uint64_t *ino)
{
	if (c->c_image_err)
		return c->c_image_err;
	*dev = c->c_image.bi_dev;
	*ino = c->c_image.bi_ino;
	return 0;
}

int cairn_statfs(struct cairn *c, struct statvfs *sv)
{
	struct log_space sp;
	uint64_t files = c->c_max_ino - INODE_ROOT + 1, used, free_blocks;

	vol_space(c->c_vol, &sp);
	free_blocks = vol_free_blocks(c->c_vol);
	cmutex_lock(&c->c_super_lock);
	used = c->c_inodes;
	cmutex_unlock(&c->c_super_lock);
	memset(sv, 0, sizeof(*sv));
	sv->f_bsize = sv->f_frsize = c->c_bs;
	sv->f_blocks = sp.sp_total;
	sv->f_bfree = sv->f_bavail = free_blocks;
	sv->f_files = files;
	sv->f_ffree = sv->f_favail = files > used ? files - used : 0;
	sv->f_namemax = DIR_NAME_MAX;
	if (c->c_rdonly)
		sv->f_flag |= ST_RDONLY;
	return 0;
}

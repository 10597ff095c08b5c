/*
 * ns_name.c - names: lookup, mknod, mkdir, symlink, link, unlink, rmdir,
 * rename, readdir, readlink.
 *
 * Each changing call is one transaction (begun before any lock, ns.c)
 * holding the inodes it changes locked for writing, by ascending number.
 * A call that finds its child by name under the parent's lock locks a
 * higher-numbered child at once; a lower-numbered one only after
 * unlocking the parent, locking both in order and looking the name up
 * again (ns_lock_child). Renames are serialized by c_rename_lock, which
 * also fixes every directory's '..' (ni_parent), so the check that a
 * directory is not moved into its own subtree walks '..' from the target
 * directory up to the root before the inodes are locked, and the result
 * stays true until the rename ends.
 *
 * Directory link counts: 2 + subdirectories. Looking up, listing,
 * creating or renaming in a removed directory (nlink 0, or already freed
 * while the caller held it) is -ENOENT: its blocks may be gone.
 *
 * No transaction abort exists yet: a call checks everything it can
 * (lookups, emptiness, types) before it writes; a failure after its first
 * write (an I/O error, or dir_add's -ENOSPC of a full hash group) leaves
 * its partial change in the transaction (possibly a leaked inode).
 */
#include "ns/ns.h"
#include "util/syncpoint.h"

#include <stdlib.h>
#include <string.h>

#define NS_RETRY_MAX 1000 /* lookups that keep changing: damage, not a race */

static uint8_t ns_dtype(uint32_t mode)
{
	return (uint8_t)((mode & S_IFMT) >> 12);
}

static bool ns_is_dot(const char *name, size_t len)
{
	return (len == 1 && name[0] == '.') || (len == 2 && name[0] == '.' && name[1] == '.');
}

static int ns_name_check(const char *name, size_t *len)
{
	if (!name)
		return -EINVAL;
	*len = strlen(name);
	if (*len == 0)
		return -ENOENT;
	if (*len > DIR_NAME_MAX)
		return -ENAMETOOLONG;
	return memchr(name, '/', *len) ? -EINVAL : 0;
}

/* @d (locked) can get entries: a live directory. */
static int ns_check_dir(const struct ns_inode *d)
{
	if (!(d->ni_rec.ir_flags & INODE_F_IN_USE))
		return -ENOENT;
	if (!S_ISDIR(d->ni_rec.ir_mode))
		return -ENOTDIR;
	return d->ni_rec.ir_nlink ? 0 : -ENOENT;
}

static void ns_touch_dir(struct ns_inode *d, const struct inode_time *now)
{
	d->ni_rec.ir_mtime = d->ni_rec.ir_ctime = *now;
}

int ns_lookup_ino(struct cairn *c, uint64_t dir, const char *name, size_t len, uint64_t *ino)
{
	struct dir_entry de;
	struct ns_inode *d;
	int err;

	err = ns_iget(c, dir, &d);
	if (err)
		return err;
	SYNC_POINT("ns.lookup.dir_held"); /* an rmdir may free the directory here */
	ns_rlock(d);
	err = ns_check_dir(d);
	if (!err)
		err = dir_lookup(c->c_vol, dir, name, len, &de);
	ns_unlock(d);
	ns_iput(c, d);
	if (!err)
		*ino = de.de_ino;
	return err;
}

int cairn_lookup(struct cairn *c, uint64_t parent, const char *name, struct cairn_stat *st)
{
	uint64_t ino;
	size_t len;
	int err;

	err = ns_name_check(name, &len);
	if (!err)
		err = ns_lookup_ino(c, parent, name, len, &ino);
	if (!err)
		err = cairn_getattr(c, ino, st);
	return err;
}

/*
 * Lock @p (referenced) and the inode its @name names, both for writing,
 * by ascending number; *child is referenced. Nothing is locked on error.
 */
static int ns_lock_child(struct cairn *c, struct ns_inode *p, const char *name, size_t len,
			 struct ns_inode **child)
{
	struct dir_entry de;
	struct ns_inode *ch;
	uint64_t again;
	int err;

	for (int i = 0; i < NS_RETRY_MAX; i++) {
		ns_wlock(p);
		err = ns_check_dir(p);
		if (!err)
			err = dir_lookup(c->c_vol, p->ni_ino, name, len, &de);
		if (!err && de.de_ino > p->ni_ino)
			err = ns_iget(c, de.de_ino, &ch);
		if (err || de.de_ino > p->ni_ino) {
			if (err) {
				ns_unlock(p);
				return err;
			}
			ns_wlock(ch);
			*child = ch;
			return 0;
		}
		ns_unlock(p);
		if (ns_iget(c, de.de_ino, &ch))
			continue;
		ns_wlock2(p, ch);
		err = ns_check_dir(p);
		if (!err)
			err = dir_lookup(c->c_vol, p->ni_ino, name, len, &de);
		again = err ? 0 : de.de_ino;
		if (!err && again == ch->ni_ino) {
			*child = ch;
			return 0;
		}
		ns_unlock2(p, ch);
		ns_iput(c, ch);
		if (err)
			return err;
	}
	return -EUCLEAN;
}

/* ---- creating ---------------------------------------------------------------------- */

struct ns_create_args {
	uint32_t ca_mode;
	uint64_t ca_rdev;
	const struct cairn_cred *ca_cred;
	const char *ca_target; /* symlinks */
	size_t ca_target_len;
};

/* Write a long symlink target as @ino's data, in @t. */
static int ns_symlink_data(struct cairn *c, struct vol_txn *t, uint64_t ino, const char *target,
			   size_t len)
{
	uint8_t *blk = calloc(1, c->c_bs);
	int err = 0;

	if (!blk)
		return -ENOMEM;
	for (uint64_t i = 0; !err && i * c->c_bs < len; i++) {
		size_t n = MIN((size_t)c->c_bs, len - i * c->c_bs);

		memset(blk, 0, c->c_bs);
		memcpy(blk, target + i * c->c_bs, n);
		err = vol_write(t, ino, i, blk);
	}
	free(blk);
	return err;
}

static void ns_create_rec(struct cairn *c, const struct ns_create_args *a, uint64_t parent,
			  struct inode_rec *r)
{
	memset(r, 0, sizeof(*r));
	r->ir_mode = a->ca_mode;
	r->ir_nlink = S_ISDIR(a->ca_mode) ? 2 : 1;
	r->ir_uid = a->ca_cred ? a->ca_cred->cc_uid : 0;
	r->ir_gid = a->ca_cred ? a->ca_cred->cc_gid : 0;
	r->ir_rdev = (S_ISCHR(a->ca_mode) || S_ISBLK(a->ca_mode)) ? a->ca_rdev : 0;
	r->ir_parent = S_ISDIR(a->ca_mode) ? parent : 0;
	ns_now(&r->ir_atime);
	r->ir_mtime = r->ir_ctime = r->ir_btime = r->ir_atime;
	if (S_ISLNK(a->ca_mode)) {
		r->ir_size = a->ca_target_len;
		if (a->ca_target_len <= INODE_SYMLINK_INLINE) {
			r->ir_symlink_len = (uint16_t)a->ca_target_len;
			memcpy(r->ir_symlink, a->ca_target, a->ca_target_len);
		} else {
			r->ir_blocks = ns_size_blocks(c, a->ca_target_len);
		}
	}
}

/* The create itself, @p locked for writing, inside @t. */
static int ns_create_locked(struct cairn *c, struct vol_txn *t, struct ns_inode *p,
			    const char *name, size_t len, const struct ns_create_args *a,
			    struct cairn_stat *st)
{
	struct ns_inode *ch = NULL;
	struct inode_rec r;
	struct dir_entry de;
	int err;

	err = ns_check_dir(p);
	if (!err) {
		err = dir_lookup(c->c_vol, p->ni_ino, name, len, &de);
		err = err == -ENOENT ? 0 : err ? err : -EEXIST;
	}
	if (err)
		return err;
	ns_create_rec(c, a, p->ni_ino, &r);
	err = ns_ialloc(c, t, &r, &ch);
	if (!err && S_ISDIR(a->ca_mode))
		err = dir_create(t, ch->ni_ino, p->ni_ino);
	if (!err && S_ISLNK(a->ca_mode) && !r.ir_symlink_len)
		err = ns_symlink_data(c, t, ch->ni_ino, a->ca_target, a->ca_target_len);
	if (!err)
		err = dir_add(t, p->ni_ino, name, len, ch->ni_ino, ns_dtype(a->ca_mode));
	if (!err) {
		if (S_ISDIR(a->ca_mode))
			p->ni_rec.ir_nlink++;
		ns_touch_dir(p, &r.ir_ctime);
		err = ns_iwrite(t, p);
	}
	if (!err)
		ns_stat_rec(c, ch->ni_ino, &r, st);
	ns_iput(c, ch);
	return err;
}

static int ns_create(struct cairn *c, uint64_t parent, const char *name,
		     const struct ns_create_args *a, struct cairn_stat *st)
{
	uint64_t nblocks = c->c_dir_blocks + IALLOC_ALLOC_BLOCKS + 2 + INODE_WRITE_BLOCKS + 2;
	struct ns_inode *p;
	struct vol_txn t;
	size_t len;
	int err;

	err = ns_name_check(name, &len);
	if (!err && ns_is_dot(name, len))
		err = -EEXIST;
	if (err)
		return err;
	if (S_ISLNK(a->ca_mode))
		nblocks += ns_size_blocks(c, a->ca_target_len);
	err = ns_iget(c, parent, &p);
	if (err)
		return err;
	err = ns_txn_begin(c, nblocks, 0, &t);
	if (!err) {
		ns_wlock(p);
		err = ns_create_locked(c, &t, p, name, len, a, st);
		ns_unlock(p);
		vol_txn_end(&t);
	}
	ns_iput(c, p);
	return err;
}

int cairn_mknod(struct cairn *c, uint64_t parent, const char *name, uint32_t mode, uint64_t rdev,
		const struct cairn_cred *cr, struct cairn_stat *st)
{
	struct ns_create_args a = {.ca_mode = mode, .ca_rdev = rdev, .ca_cred = cr};

	if (!(mode & S_IFMT))
		a.ca_mode |= S_IFREG;
	switch (a.ca_mode & S_IFMT) {
	case S_IFREG:
	case S_IFIFO:
	case S_IFSOCK:
	case S_IFCHR:
	case S_IFBLK:
		break;
	default:
		return -EINVAL;
	}
	a.ca_mode &= S_IFMT | 07777;
	return ns_create(c, parent, name, &a, st);
}

int cairn_mkdir(struct cairn *c, uint64_t parent, const char *name, uint32_t mode,
		const struct cairn_cred *cr, struct cairn_stat *st)
{
	struct ns_create_args a = {.ca_mode = S_IFDIR | (mode & 07777), .ca_cred = cr};

	return ns_create(c, parent, name, &a, st);
}

int cairn_symlink(struct cairn *c, uint64_t parent, const char *name, const char *target,
		  const struct cairn_cred *cr, struct cairn_stat *st)
{
	struct ns_create_args a = {.ca_mode = S_IFLNK | 0777, .ca_cred = cr, .ca_target = target};

	if (!target)
		return -EINVAL;
	a.ca_target_len = strlen(target);
	if (a.ca_target_len == 0)
		return -ENOENT;
	if (a.ca_target_len > NS_SYMLINK_MAX)
		return -ENAMETOOLONG;
	return ns_create(c, parent, name, &a, st);
}

ssize_t cairn_readlink(struct cairn *c, uint64_t ino, char *buf, size_t size)
{
	struct ns_inode *ni;
	size_t n = 0;
	int err;

	err = ns_iget(c, ino, &ni);
	if (err)
		return err;
	ns_rlock(ni);
	err = S_ISLNK(ni->ni_rec.ir_mode) ? 0 : -EINVAL;
	if (!err) {
		n = (size_t)MIN((uint64_t)size, ni->ni_rec.ir_size);
		if (ni->ni_rec.ir_symlink_len)
			memcpy(buf, ni->ni_rec.ir_symlink, n);
		for (uint64_t i = 0; !err && !ni->ni_rec.ir_symlink_len && i * c->c_bs < n; i++)
			err = vol_read_range(c->c_vol, ino, i, 0,
					     (uint32_t)MIN((size_t)c->c_bs, n - i * c->c_bs),
					     buf + i * c->c_bs);
	}
	ns_unlock(ni);
	ns_iput(c, ni);
	return err ? err : (ssize_t)n;
}

/* ---- links ---------------------------------------------------------------------------- */

int cairn_link(struct cairn *c, uint64_t ino, uint64_t newparent, const char *newname,
	       struct cairn_stat *st)
{
	struct ns_inode *ni = NULL, *p = NULL;
	struct inode_time now;
	struct dir_entry de;
	struct vol_txn t;
	size_t len;
	int err;

	err = ns_name_check(newname, &len);
	if (!err && ns_is_dot(newname, len))
		err = -EEXIST;
	if (!err)
		err = ns_iget(c, ino, &ni);
	if (!err)
		err = ns_iget(c, newparent, &p);
	if (!err)
		err = ns_txn_begin(c, c->c_dir_blocks + 2 * INODE_WRITE_BLOCKS, 0, &t);
	if (err)
		goto out;
	ns_wlock2(ni, p);
	err = ns_check_dir(p);
	if (!err && S_ISDIR(ni->ni_rec.ir_mode))
		err = -EPERM;
	if (!err && (!ns_alive(ni) || !ni->ni_rec.ir_nlink))
		err = -ENOENT;
	if (!err && ni->ni_rec.ir_nlink >= UINT32_MAX - 1)
		err = -EMLINK;
	if (!err) {
		err = dir_lookup(c->c_vol, p->ni_ino, newname, len, &de);
		err = err == -ENOENT ? 0 : err ? err : -EEXIST;
	}
	if (!err)
		err = dir_add(&t, p->ni_ino, newname, len, ino, ns_dtype(ni->ni_rec.ir_mode));
	if (!err) {
		ns_now(&now);
		ni->ni_rec.ir_nlink++;
		ni->ni_rec.ir_ctime = now;
		ns_touch_dir(p, &now);
		err = ns_iwrite(&t, ni);
	}
	if (!err)
		err = ns_iwrite(&t, p);
	if (!err)
		ns_stat_fill(c, ni, st);
	ns_unlock2(ni, p);
	vol_txn_end(&t);
out:
	ns_iput(c, p);
	ns_iput(c, ni);
	return err;
}

/* unlink and rmdir: remove @name from @parent. */
static int ns_remove(struct cairn *c, uint64_t parent, const char *name, bool dir)
{
	struct ns_inode *p, *ch = NULL;
	struct inode_time now;
	struct vol_txn t;
	bool reclaim = false, empty;
	uint64_t chino = 0;
	size_t len;
	int err;

	err = ns_name_check(name, &len);
	if (!err && ns_is_dot(name, len))
		err = !dir ? -EISDIR : len == 1 ? -EINVAL : -ENOTEMPTY;
	if (err)
		return err;
	err = ns_iget(c, parent, &p);
	if (err)
		return err;
	err = ns_txn_begin(c, ns_remove_blocks(c), VOL_TXN_FREEING, &t);
	if (err)
		goto out;
	err = ns_lock_child(c, p, name, len, &ch);
	if (err)
		goto out_txn;
	chino = ch->ni_ino;
	if (dir && !S_ISDIR(ch->ni_rec.ir_mode))
		err = -ENOTDIR;
	else if (!dir && S_ISDIR(ch->ni_rec.ir_mode))
		err = -EISDIR;
	if (!err && dir) {
		err = dir_is_empty(c->c_vol, chino, &empty);
		if (!err && !empty)
			err = -ENOTEMPTY;
	}
	if (!err)
		err = dir_remove(&t, p->ni_ino, name, len, NULL);
	if (!err) {
		ns_now(&now);
		ch->ni_rec.ir_nlink = dir ? 0 : ch->ni_rec.ir_nlink - 1;
		ch->ni_rec.ir_ctime = now;
		if (dir)
			p->ni_rec.ir_nlink--;
		ns_touch_dir(p, &now);
		if (ch->ni_rec.ir_nlink)
			err = ns_iwrite(&t, ch);
		else
			err = ns_drop_locked(c, &t, ch, &reclaim);
	}
	if (!err)
		err = ns_iwrite(&t, p);
	ns_unlock2(p, ch);
out_txn:
	vol_txn_end(&t);
	if (reclaim)
		ns_reclaim(c, chino);
out:
	ns_iput(c, ch);
	ns_iput(c, p);
	return err;
}

int cairn_unlink(struct cairn *c, uint64_t parent, const char *name)
{
	return ns_remove(c, parent, name, false);
}

int cairn_rmdir(struct cairn *c, uint64_t parent, const char *name)
{
	return ns_remove(c, parent, name, true);
}

/* ---- rename ---------------------------------------------------------------------------- */

struct ns_rename {
	struct ns_inode *rn_p1, *rn_p2, *rn_s, *rn_d; /* rn_d may be NULL */
	const char *rn_n1, *rn_n2;
	size_t rn_l1, rn_l2;
	unsigned rn_flags;
	bool rn_reclaim;
};

/* Lock the distinct inodes of @n for writing by ascending number (or unlock). */
static void ns_rename_lock(struct ns_rename *rn, bool lock)
{
	struct ns_inode *v[4] = {rn->rn_p1, rn->rn_p2, rn->rn_s, rn->rn_d}, *x;
	int n = 0;

	for (int i = 0; i < 4; i++) {
		bool dup = !v[i];

		for (int j = 0; j < n && !dup; j++)
			dup = v[j] == v[i];
		if (!dup)
			v[n++] = v[i];
	}
	for (int i = 1; i < n; i++)
		for (int j = i; j > 0 && v[j]->ni_ino < v[j - 1]->ni_ino; j--)
			x = v[j], v[j] = v[j - 1], v[j - 1] = x;
	for (int i = 0; i < n; i++) {
		if (lock)
			ns_wlock(v[i]);
		else
			ns_unlock(v[n - 1 - i]);
	}
}

/* Is directory @anc an ancestor of (or) @d? Under c_rename_lock. */
static int ns_is_ancestor(struct cairn *c, uint64_t anc, uint64_t d, bool *yes)
{
	assert(cmutex_held(&c->c_rename_lock));
	for (int depth = 0; depth < 1 << 20; depth++) {
		struct ns_inode *ni;
		int err;

		if (d == anc || d == INODE_ROOT) {
			*yes = d == anc;
			return 0;
		}
		err = ns_iget(c, d, &ni);
		if (err)
			return err;
		d = ni->ni_parent; /* fixed under c_rename_lock: (5) */
		ns_iput(c, ni);
	}
	return -EUCLEAN;
}

static bool ns_isdir(struct ns_inode *ni)
{
	bool dir;

	if (!ni)
		return false;
	ns_rlock(ni);
	dir = S_ISDIR(ni->ni_rec.ir_mode);
	ns_unlock(ni);
	return dir;
}

/* With everything locked, both parents live: do the names still name S and D? */
static bool ns_rename_same(struct cairn *c, struct ns_rename *rn)
{
	struct dir_entry de;
	int err;

	err = dir_lookup(c->c_vol, rn->rn_p1->ni_ino, rn->rn_n1, rn->rn_l1, &de);
	if (err || de.de_ino != rn->rn_s->ni_ino)
		return false;
	err = dir_lookup(c->c_vol, rn->rn_p2->ni_ino, rn->rn_n2, rn->rn_l2, &de);
	if (rn->rn_d)
		return !err && de.de_ino == rn->rn_d->ni_ino;
	return err == -ENOENT;
}

/* Check the subtree rule for S (and D, exchanged) under c_rename_lock. */
static int ns_rename_subtree(struct cairn *c, struct ns_rename *rn)
{
	bool bad = false;
	int err = 0;

	if (rn->rn_s == rn->rn_d)
		return 0;
	if (ns_isdir(rn->rn_s))
		err = ns_is_ancestor(c, rn->rn_s->ni_ino, rn->rn_p2->ni_ino, &bad);
	if (!err && !bad && (rn->rn_flags & CAIRN_RENAME_EXCHANGE) && ns_isdir(rn->rn_d))
		err = ns_is_ancestor(c, rn->rn_d->ni_ino, rn->rn_p1->ni_ino, &bad);
	return err ? err : bad ? -EINVAL : 0;
}

/* Find S and D, check the subtree rule, lock everything, look again. */
static int ns_rename_prepare(struct cairn *c, struct ns_rename *rn)
{
	for (int i = 0; i < NS_RETRY_MAX; i++) {
		uint64_t s, d = 0;
		int err;

		rn->rn_s = rn->rn_d = NULL;
		err = ns_lookup_ino(c, rn->rn_p1->ni_ino, rn->rn_n1, rn->rn_l1, &s);
		if (!err) {
			err = ns_lookup_ino(c, rn->rn_p2->ni_ino, rn->rn_n2, rn->rn_l2, &d);
			if (err == -ENOENT)
				err = 0, d = 0;
		}
		if (err)
			return err;
		if (!ns_iget(c, s, &rn->rn_s) && (!d || !ns_iget(c, d, &rn->rn_d))) {
			err = ns_rename_subtree(c, rn);
			if (err) {
				ns_iput(c, rn->rn_s);
				ns_iput(c, rn->rn_d);
				rn->rn_s = rn->rn_d = NULL;
				return err;
			}
			ns_rename_lock(rn, true);
			/* a removed parent stays removed: -ENOENT, not a retry */
			err = ns_check_dir(rn->rn_p1);
			if (!err)
				err = ns_check_dir(rn->rn_p2);
			if (!err && ns_rename_same(c, rn))
				return 0;
			ns_rename_lock(rn, false);
			if (err) {
				ns_iput(c, rn->rn_s);
				ns_iput(c, rn->rn_d);
				rn->rn_s = rn->rn_d = NULL;
				return err;
			}
		}
		ns_iput(c, rn->rn_s);
		ns_iput(c, rn->rn_d);
	}
	rn->rn_s = rn->rn_d = NULL;
	return -EUCLEAN;
}

/* Semantic checks of a rename, everything locked. 1: nothing to do. */
static int ns_rename_check(struct cairn *c, struct ns_rename *rn)
{
	bool sdir = S_ISDIR(rn->rn_s->ni_rec.ir_mode), empty;
	int err;

	if (rn->rn_flags & CAIRN_RENAME_EXCHANGE)
		return !rn->rn_d ? -ENOENT : rn->rn_s == rn->rn_d ? 1 : 0;
	if (rn->rn_d && (rn->rn_flags & CAIRN_RENAME_NOREPLACE))
		return -EEXIST;
	if (!rn->rn_d)
		return 0;
	if (rn->rn_s == rn->rn_d)
		return 1; /* two names of one inode: POSIX says do nothing */
	if (sdir && !S_ISDIR(rn->rn_d->ni_rec.ir_mode))
		return -ENOTDIR;
	if (!sdir && S_ISDIR(rn->rn_d->ni_rec.ir_mode))
		return -EISDIR;
	if (!sdir)
		return 0;
	err = dir_is_empty(c->c_vol, rn->rn_d->ni_ino, &empty);
	return err ? err : empty ? 0 : -ENOTEMPTY;
}

/* Directory @x moves from @from to @to: '..', link counts. */
static int ns_rename_reparent(struct vol_txn *t, struct ns_inode *x, struct ns_inode *from,
			      struct ns_inode *to)
{
	if (!S_ISDIR(x->ni_rec.ir_mode) || from == to)
		return 0;
	from->ni_rec.ir_nlink--;
	to->ni_rec.ir_nlink++;
	x->ni_parent = x->ni_rec.ir_parent = to->ni_ino;
	return dir_set_parent(t, x->ni_ino, to->ni_ino);
}

static int ns_rename_exchange(struct vol_txn *t, struct ns_rename *rn)
{
	struct ns_inode *s = rn->rn_s, *d = rn->rn_d;
	int err;

	err = dir_replace(t, rn->rn_p1->ni_ino, rn->rn_n1, rn->rn_l1, d->ni_ino,
			  ns_dtype(d->ni_rec.ir_mode), NULL);
	if (!err)
		err = dir_replace(t, rn->rn_p2->ni_ino, rn->rn_n2, rn->rn_l2, s->ni_ino,
				  ns_dtype(s->ni_rec.ir_mode), NULL);
	if (!err)
		err = ns_rename_reparent(t, s, rn->rn_p1, rn->rn_p2);
	if (!err)
		err = ns_rename_reparent(t, d, rn->rn_p2, rn->rn_p1);
	return err;
}

static int ns_rename_move(struct cairn *c, struct vol_txn *t, struct ns_rename *rn)
{
	struct ns_inode *s = rn->rn_s, *d = rn->rn_d;
	int err;

	if (d)
		err = dir_replace(t, rn->rn_p2->ni_ino, rn->rn_n2, rn->rn_l2, s->ni_ino,
				  ns_dtype(s->ni_rec.ir_mode), NULL);
	else
		err = dir_add(t, rn->rn_p2->ni_ino, rn->rn_n2, rn->rn_l2, s->ni_ino,
			      ns_dtype(s->ni_rec.ir_mode));
	if (!err)
		err = dir_remove(t, rn->rn_p1->ni_ino, rn->rn_n1, rn->rn_l1, NULL);
	if (!err)
		err = ns_rename_reparent(t, s, rn->rn_p1, rn->rn_p2);
	if (err || !d)
		return err;
	if (S_ISDIR(d->ni_rec.ir_mode)) {
		d->ni_rec.ir_nlink = 0;
		rn->rn_p2->ni_rec.ir_nlink--;
	} else {
		d->ni_rec.ir_nlink--;
	}
	if (!d->ni_rec.ir_nlink)
		return ns_drop_locked(c, t, d, &rn->rn_reclaim);
	return 0;
}

static int ns_rename_locked(struct cairn *c, struct vol_txn *t, struct ns_rename *rn)
{
	struct inode_time now;
	bool exch = rn->rn_flags & CAIRN_RENAME_EXCHANGE;
	int err;

	err = ns_rename_check(c, rn);
	if (err)
		return err == 1 ? 0 : err;
	err = exch ? ns_rename_exchange(t, rn) : ns_rename_move(c, t, rn);
	if (err)
		return err;
	ns_now(&now);
	rn->rn_s->ni_rec.ir_ctime = now;
	ns_touch_dir(rn->rn_p1, &now);
	ns_touch_dir(rn->rn_p2, &now);
	err = ns_iwrite(t, rn->rn_s);
	if (!err && rn->rn_p1 != rn->rn_s)
		err = ns_iwrite(t, rn->rn_p1);
	if (!err && rn->rn_p2 != rn->rn_p1)
		err = ns_iwrite(t, rn->rn_p2);
	if (!err && rn->rn_d && (rn->rn_d->ni_rec.ir_nlink || exch)) {
		rn->rn_d->ni_rec.ir_ctime = now;
		err = ns_iwrite(t, rn->rn_d);
	}
	return err;
}

int cairn_rename(struct cairn *c, uint64_t parent, const char *name, uint64_t newparent,
		 const char *newname, unsigned flags)
{
	struct ns_rename rn = {.rn_n1 = name, .rn_n2 = newname, .rn_flags = flags};
	uint64_t dino = 0;
	struct vol_txn t;
	int err;

	if ((flags & ~(CAIRN_RENAME_NOREPLACE | CAIRN_RENAME_EXCHANGE)) ||
	    flags == (CAIRN_RENAME_NOREPLACE | CAIRN_RENAME_EXCHANGE))
		return -EINVAL;
	err = ns_name_check(name, &rn.rn_l1);
	if (!err)
		err = ns_name_check(newname, &rn.rn_l2);
	if (!err && (ns_is_dot(name, rn.rn_l1) || ns_is_dot(newname, rn.rn_l2)))
		err = -EINVAL;
	if (err)
		return err;
	if (parent == newparent && rn.rn_l1 == rn.rn_l2 && !memcmp(name, newname, rn.rn_l1)) {
		uint64_t ino;

		err = ns_lookup_ino(c, parent, name, rn.rn_l1, &ino);
		return err ? err : (flags & CAIRN_RENAME_NOREPLACE) ? -EEXIST : 0;
	}
	err = ns_iget(c, parent, &rn.rn_p1);
	if (!err)
		err = ns_iget(c, newparent, &rn.rn_p2);
	SYNC_POINT("ns.rename.parents_held"); /* an rmdir may remove one here */
	if (!err)
		err = ns_txn_begin(c, ns_rename_blocks(c), VOL_TXN_FREEING, &t);
	if (err)
		goto out;
	cmutex_lock(&c->c_rename_lock);
	err = ns_rename_prepare(c, &rn);
	if (!err) {
		err = ns_rename_locked(c, &t, &rn);
		dino = rn.rn_d ? rn.rn_d->ni_ino : 0;
		ns_rename_lock(&rn, false);
	}
	cmutex_unlock(&c->c_rename_lock);
	vol_txn_end(&t);
	if (rn.rn_reclaim)
		ns_reclaim(c, dino);
out:
	ns_iput(c, rn.rn_s);
	ns_iput(c, rn.rn_d);
	ns_iput(c, rn.rn_p1);
	ns_iput(c, rn.rn_p2);
	return err;
}

/* ---- readdir ------------------------------------------------------------------------------ */

struct ns_readdir_ctx {
	cairn_fill_fn rc_fill;
	void *rc_ctx;
};

static int ns_readdir_cb(void *ctx, const char *name, size_t len, uint64_t ino, uint8_t type,
			 uint64_t next_cookie)
{
	struct ns_readdir_ctx *rc = ctx;

	return rc->rc_fill(rc->rc_ctx, name, len, ino, type, next_cookie);
}

int cairn_readdir(struct cairn *c, uint64_t ino, uint64_t cookie, cairn_fill_fn fill, void *ctx)
{
	struct ns_readdir_ctx rc = {fill, ctx};
	struct ns_inode *d;
	int err;

	err = ns_iget(c, ino, &d);
	if (err)
		return err;
	SYNC_POINT("ns.readdir.dir_held");
	ns_rlock(d);
	err = ns_check_dir(d); /* a removed directory lists nothing: -ENOENT */
	if (!err)
		err = dir_readdir(c->c_vol, ino, cookie, ns_readdir_cb, &rc);
	ns_unlock(d);
	ns_iput(c, d);
	return err;
}

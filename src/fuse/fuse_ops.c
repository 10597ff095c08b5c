/*
 * fuse_ops.c - the request table, the connection (init), and the
 * requests about names and attributes.
 *
 * Every callback answers its request exactly once: a reply, or an error
 * (fuse_reply_err with libcairn's errno made positive), or nothing for
 * FORGET. Node ids are inode numbers (cfuse_ino_in/out map FUSE's root 1
 * to cairn's 16); the generation of each entry is the inode's, and
 * (ino, generation) never repeats over the volume's life.
 *
 * Invariants
 *   (1) Every entry reply (cfuse_reply_entry, create, readdirplus) adds
 *       one lookup to the node table before it is sent, and takes it back
 *       if the kernel did not get it (the reply failed: the request was
 *       interrupted).
 *   (2) A negative lookup is an entry with node id 0 and the long
 *       timeout: the kernel caches it until a create through it.
 *   (3) New inodes get the caller's uid; the gid is the caller's, or the
 *       parent's when the parent is set-group-ID (and a new directory
 *       inherits the bit), as the kernel does for local filesystems.
 *   (4) Permissions are the kernel's (default_permissions is always on):
 *       libcairn checks none.
 */
#include "fuse/fuse_internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "util/util.h"

/* ---- attributes and entries ------------------------------------------------- */

void cfuse_stat_fill(const struct cairn_stat *cs, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = (ino_t)cs->cs_ino;
	st->st_mode = (mode_t)cs->cs_mode;
	st->st_nlink = (nlink_t)cs->cs_nlink;
	st->st_uid = (uid_t)cs->cs_uid;
	st->st_gid = (gid_t)cs->cs_gid;
	st->st_rdev = (dev_t)cs->cs_rdev;
	st->st_size = (off_t)cs->cs_size;
	st->st_blocks = (blkcnt_t)cs->cs_blocks;
	st->st_blksize = (blksize_t)cs->cs_blksize;
	st->st_atim = cs->cs_atime;
	st->st_mtim = cs->cs_mtime;
	st->st_ctim = cs->cs_ctime;
}

void cfuse_entry_fill(const struct cairn_stat *cs, struct fuse_entry_param *e)
{
	memset(e, 0, sizeof(*e));
	e->ino = cfuse_ino_out(cs->cs_ino);
	e->generation = cs->cs_gen;
	cfuse_stat_fill(cs, &e->attr);
	e->attr_timeout = CFUSE_TIMEOUT;
	e->entry_timeout = CFUSE_TIMEOUT;
}

void cfuse_reply_entry(fuse_req_t req, const struct cairn_stat *cs)
{
	struct cfuse *f = cfuse_of(req);
	struct fuse_entry_param e;

	cfuse_entry_fill(cs, &e);
	if (cfuse_node_ref(&f->cf_nodes, e.ino, cs->cs_mode)) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	if (fuse_reply_entry(req, &e)) /* invariant (1) */
		cfuse_node_forget(&f->cf_nodes, e.ino, 1);
}

/* The credentials and mode of a new inode in @parent (invariant 3). */
static int cfuse_new_owner(fuse_req_t req, fuse_ino_t parent, bool dir, struct cairn_cred *cr,
			   uint32_t *mode)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	struct cairn_stat pst;
	int err;

	cr->cc_uid = (uint32_t)ctx->uid;
	cr->cc_gid = (uint32_t)ctx->gid;
	err = cairn_getattr(cfuse_of(req)->cf_cairn, cfuse_ino_in(parent), &pst);
	if (err)
		return err;
	if (pst.cs_mode & S_ISGID) {
		cr->cc_gid = pst.cs_gid;
		if (dir)
			*mode |= S_ISGID;
	}
	return 0;
}

/* ---- the connection ------------------------------------------------------------- */

static void cfuse_init(void *userdata, struct fuse_conn_info *conn)
{
	struct cfuse *f = userdata;

	/* The writeback cache: the kernel owns sizes and mtimes and sends
	 * whole pages; far fewer WRITE requests. But it writes an inode's
	 * times back with a SETATTR of their own: after every unlink(2) of a
	 * regular file (the ctime, synchronously), and at close after a
	 * write. Not on a read-only mount. */
	if (!f->cf_read_only && f->cf_want_wbcache && (conn->capable & FUSE_CAP_WRITEBACK_CACHE)) {
		conn->want |= FUSE_CAP_WRITEBACK_CACHE;
		atomic_store(&f->cf_wbcache, true);
	}
	/* The kernel clears set-user/group-ID bits on write, truncate and
	 * chown (with SETATTR); libcairn would not. */
	conn->want &= ~(unsigned)FUSE_CAP_HANDLE_KILLPRIV;
	/* ACL xattrs are stored, not interpreted: the kernel must not rely
	 * on them (fuse_xattr.c refuses them). */
	conn->want &= ~(unsigned)FUSE_CAP_POSIX_ACL;
	if (conn->capable & FUSE_CAP_CACHE_SYMLINKS) /* a symlink never changes */
		conn->want |= FUSE_CAP_CACHE_SYMLINKS;
	/* open(O_TRUNC) arrives as an OPEN with O_TRUNC (cfuse_open
	 * truncates), not as OPEN plus SETATTR. */
	if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC)
		conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
	/* the control ioctls (fuse_ctl.c) on the root directory too */
	if (conn->capable & FUSE_CAP_IOCTL_DIR)
		conn->want |= FUSE_CAP_IOCTL_DIR;
	/* Large writes: 1 MiB per WRITE (libfuse's buffer holds 256 pages
	 * and announces max_pages to the kernel); there is no separate
	 * "big writes" flag in FUSE 3, they are always on. */
	conn->max_write = CFUSE_MAX_WRITE;
	conn->time_gran = CFUSE_TIME_GRAN;
}

static void cfuse_destroy(void *userdata)
{
	struct cfuse *f = userdata;
	uint64_t bad;
	size_t held;

	cfuse_nodes_stats(&f->cf_nodes, &held, &bad);
	log_debug("fuse: session ends with %zu nodes held, %llu bad forgets", held,
		  (unsigned long long)bad);
}

/* ---- lookups ---------------------------------------------------------------------- */

static void cfuse_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct cairn_stat cs;
	struct fuse_entry_param neg = {.ino = 0, .entry_timeout = CFUSE_TIMEOUT};
	int err = cairn_lookup(cfuse_of(req)->cf_cairn, cfuse_ino_in(parent), name, &cs);

	if (err == -ENOENT) /* invariant (2) */
		fuse_reply_entry(req, &neg);
	else if (err)
		fuse_reply_err(req, cfuse_errno(err));
	else
		cfuse_reply_entry(req, &cs);
}

static void cfuse_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	cfuse_node_forget(&cfuse_of(req)->cf_nodes, ino, nlookup);
	fuse_reply_none(req);
}

static void cfuse_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
	struct cfuse *f = cfuse_of(req);

	for (size_t i = 0; i < count; i++)
		cfuse_node_forget(&f->cf_nodes, forgets[i].ino, forgets[i].nlookup);
	fuse_reply_none(req);
}

/* ---- attributes ------------------------------------------------------------------- */

static void cfuse_reply_attr(fuse_req_t req, int err, const struct cairn_stat *cs)
{
	struct stat st;

	if (err) {
		fuse_reply_err(req, cfuse_errno(err));
		return;
	}
	cfuse_stat_fill(cs, &st);
	fuse_reply_attr(req, &st, CFUSE_TIMEOUT);
}

static void cfuse_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct cairn_stat cs;

	(void)fi;
	cfuse_reply_attr(req, cairn_getattr(cfuse_of(req)->cf_cairn, cfuse_ino_in(ino), &cs), &cs);
}

/* One time of a SETATTR: given, now (UTIME_NOW), or not asked. */
static void cfuse_setattr_time(int valid, int set, int now, const struct timespec *t, unsigned bit,
			       unsigned *mask, struct timespec *out)
{
	if (valid & now) {
		*mask |= bit;
		*out = (struct timespec){.tv_nsec = UTIME_NOW};
	} else if (valid & set) {
		*mask |= bit;
		*out = *t;
	}
}

/*
 * A SETATTR of times only, for node @ino that libcairn has freed (-ENOENT):
 * the kernel writing back the times of an inode it still caches after its
 * last name and open went (fuse_flush_times at eviction). The inode is
 * gone, so there is nothing to keep; answer as a local filesystem would,
 * or the kernel records ENOENT as a writeback error that the next
 * syncfs(2) returns. True if answered.
 */
static bool cfuse_setattr_gone(fuse_req_t req, fuse_ino_t ino, const struct stat *attr, int valid)
{
	const int times = FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_ATIME_NOW |
			  FUSE_SET_ATTR_MTIME_NOW | FUSE_SET_ATTR_CTIME;
	struct stat st = *attr;
	uint32_t mode;

	if ((valid & ~(times | FUSE_SET_ATTR_FILE)) ||
	    cfuse_node_mode(&cfuse_of(req)->cf_nodes, ino, &mode))
		return false;
	st.st_ino = (ino_t)cfuse_ino_in(ino);
	st.st_mode = (mode_t)mode;
	st.st_nlink = 0;
	fuse_reply_attr(req, &st, 0);
	return true;
}

static void cfuse_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int valid,
			  struct fuse_file_info *fi)
{
	struct cairn_setattr sa = {0};
	struct cairn_stat cs;
	unsigned mask = 0;
	int err;

	(void)fi; /* ftruncate and futimens: the inode is what counts */
	if (valid & FUSE_SET_ATTR_MODE) {
		mask |= CAIRN_SET_MODE;
		sa.csa_mode = attr->st_mode & 07777;
	}
	if (valid & FUSE_SET_ATTR_UID) {
		mask |= CAIRN_SET_UID;
		sa.csa_uid = attr->st_uid;
	}
	if (valid & FUSE_SET_ATTR_GID) {
		mask |= CAIRN_SET_GID;
		sa.csa_gid = attr->st_gid;
	}
	if (valid & FUSE_SET_ATTR_SIZE) {
		mask |= CAIRN_SET_SIZE;
		sa.csa_size = (uint64_t)attr->st_size;
	}
	cfuse_setattr_time(valid, FUSE_SET_ATTR_ATIME, FUSE_SET_ATTR_ATIME_NOW, &attr->st_atim,
			   CAIRN_SET_ATIME, &mask, &sa.csa_atime);
	cfuse_setattr_time(valid, FUSE_SET_ATTR_MTIME, FUSE_SET_ATTR_MTIME_NOW, &attr->st_mtim,
			   CAIRN_SET_MTIME, &mask, &sa.csa_mtime);
	if (valid & FUSE_SET_ATTR_CTIME) {
		mask |= CAIRN_SET_CTIME;
		sa.csa_ctime = attr->st_ctim;
	}
	err = cairn_setattr(cfuse_of(req)->cf_cairn, cfuse_ino_in(ino), mask, &sa, &cs);
	if (err == -ENOENT && cfuse_setattr_gone(req, ino, attr, valid))
		return;
	cfuse_reply_attr(req, err, &cs);
}

static void cfuse_readlink(fuse_req_t req, fuse_ino_t ino)
{
	char buf[CAIRN_PATH_MAX];
	ssize_t n =
	    cairn_readlink(cfuse_of(req)->cf_cairn, cfuse_ino_in(ino), buf, sizeof(buf) - 1);

	if (n < 0) {
		fuse_reply_err(req, cfuse_errno(n));
		return;
	}
	buf[n] = '\0';
	fuse_reply_readlink(req, buf);
}

static void cfuse_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct statvfs sv;
	int err = cairn_statfs(cfuse_of(req)->cf_cairn, &sv);

	(void)ino;
	if (err)
		fuse_reply_err(req, cfuse_errno(err));
	else
		fuse_reply_statfs(req, &sv);
}

/* ---- making and removing names ------------------------------------------------------ */

static void cfuse_reply_made(fuse_req_t req, int err, const struct cairn_stat *cs)
{
	if (err)
		fuse_reply_err(req, cfuse_errno(err));
	else
		cfuse_reply_entry(req, cs);
}

static void cfuse_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
			dev_t rdev)
{
	struct cairn_cred cr;
	struct cairn_stat cs;
	uint32_t m = (uint32_t)mode;
	int err = cfuse_new_owner(req, parent, false, &cr, &m);

	if (!err)
		err = cairn_mknod(cfuse_of(req)->cf_cairn, cfuse_ino_in(parent), name, m,
				  (uint64_t)rdev, &cr, &cs);
	cfuse_reply_made(req, err, &cs);
}

static void cfuse_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	struct cairn_cred cr;
	struct cairn_stat cs;
	uint32_t m = (uint32_t)mode & 07777;
	int err = cfuse_new_owner(req, parent, true, &cr, &m);

	if (!err)
		err = cairn_mkdir(cfuse_of(req)->cf_cairn, cfuse_ino_in(parent), name, m, &cr, &cs);
	cfuse_reply_made(req, err, &cs);
}

static void cfuse_symlink(fuse_req_t req, const char *target, fuse_ino_t parent, const char *name)
{
	struct cairn_cred cr;
	struct cairn_stat cs;
	uint32_t m = 0777;
	int err = cfuse_new_owner(req, parent, false, &cr, &m);

	if (!err)
		err = cairn_symlink(cfuse_of(req)->cf_cairn, cfuse_ino_in(parent), name, target,
				    &cr, &cs);
	cfuse_reply_made(req, err, &cs);
}

static void cfuse_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
	struct cairn_stat cs;
	int err = cairn_link(cfuse_of(req)->cf_cairn, cfuse_ino_in(ino), cfuse_ino_in(newparent),
			     newname, &cs);

	cfuse_reply_made(req, err, &cs);
}

static void cfuse_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	int err = cairn_unlink(cfuse_of(req)->cf_cairn, cfuse_ino_in(parent), name);

	fuse_reply_err(req, err ? cfuse_errno(err) : 0);
}

static void cfuse_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	int err = cairn_rmdir(cfuse_of(req)->cf_cairn, cfuse_ino_in(parent), name);

	fuse_reply_err(req, err ? cfuse_errno(err) : 0);
}

static void cfuse_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
			 const char *newname, unsigned int flags)
{
	int err;

	/* RENAME_WHITEOUT and whatever comes later: never a plain rename. */
	if (flags & ~(CAIRN_RENAME_NOREPLACE | CAIRN_RENAME_EXCHANGE)) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	err = cairn_rename(cfuse_of(req)->cf_cairn, cfuse_ino_in(parent), name,
			   cfuse_ino_in(newparent), newname, flags);
	fuse_reply_err(req, err ? cfuse_errno(err) : 0);
}

const struct fuse_lowlevel_ops cfuse_ops = {
    .init = cfuse_init,
    .destroy = cfuse_destroy,
    .lookup = cfuse_lookup,
    .forget = cfuse_forget,
    .forget_multi = cfuse_forget_multi,
    .getattr = cfuse_getattr,
    .setattr = cfuse_setattr,
    .readlink = cfuse_readlink,
    .mknod = cfuse_mknod,
    .mkdir = cfuse_mkdir,
    .unlink = cfuse_unlink,
    .rmdir = cfuse_rmdir,
    .symlink = cfuse_symlink,
    .rename = cfuse_rename,
    .link = cfuse_link,
    .open = cfuse_open,
    .read = cfuse_read,
    .write = cfuse_write,
    .flush = cfuse_flush,
    .release = cfuse_release,
    .fsync = cfuse_fsync,
    .opendir = cfuse_opendir,
    .readdir = cfuse_readdir,
    .releasedir = cfuse_releasedir,
    .fsyncdir = cfuse_fsyncdir,
    .statfs = cfuse_statfs,
    .setxattr = cfuse_setxattr,
    .getxattr = cfuse_getxattr,
    .listxattr = cfuse_listxattr,
    .removexattr = cfuse_removexattr,
    .create = cfuse_create,
    .fallocate = cfuse_fallocate,
    .readdirplus = cfuse_readdirplus,
    .ioctl = cfuse_ioctl,
};

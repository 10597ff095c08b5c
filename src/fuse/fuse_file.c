/*
 * fuse_file.c - open files: open, create, read, write, flush, fsync,
 * fallocate, release.
 *
 * An OPEN or CREATE counts an open of the inode in libcairn
 * (cairn_open_inode), and its RELEASE undoes it, so a file unlinked
 * while open keeps its data until the last close (or, after a crash,
 * until the next mount frees it). The adapter keeps no per-handle state:
 * reads and writes go to the inode at the offset the kernel gives.
 *
 * Invariants
 *   (1) Each successful open is released exactly once: by RELEASE, or
 *       here if the open reply never reached the kernel (interrupted),
 *       since then no RELEASE will come.
 *   (2) With the writeback cache, the kernel owns the size and the
 *       append position: opens are taken as O_RDWR (the kernel reads
 *       around partial pages even of a write-only file) without O_APPEND
 *       (every WRITE carries its offset). This adapter neither checks
 *       the access mode nor appends on its own, so it only records that.
 *   (3) fsync and fdatasync return after cairn_fsync, i.e. once the
 *       change is durable; the kernel writes its dirty pages back first.
 *   (4) A FLUSH has nothing to write: every WRITE already reached
 *       libcairn, whose errors (ENOSPC among them) came back with it, and
 *       the kernel reports its own writeback errors at close. So the
 *       first FLUSH is answered ENOSYS and the kernel sends no more
 *       (fc->no_flush): one round trip less per close(2). The kernel's
 *       close still writes the dirty pages and the times back
 *       (write_inode_now) and returns their errors before it looks at
 *       no_flush. cairn keeps no locks of its own (the kernel's POSIX
 *       locks are released by the VFS), so FLUSH's lock owner is unused.
 */
#include "fuse/fuse_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>

/* Invariant (2). */
static void cfuse_open_flags(struct cfuse *f, struct fuse_file_info *fi)
{
	if (!atomic_load(&f->cf_wbcache))
		return;
	if ((fi->flags & O_ACCMODE) == O_WRONLY)
		fi->flags = (fi->flags & ~O_ACCMODE) | O_RDWR;
	fi->flags &= ~O_APPEND;
}

/* Count the open of @ino, truncating it first for O_TRUNC (ATOMIC_O_TRUNC). */
static int cfuse_open_inode(struct cfuse *f, uint64_t ino, const struct fuse_file_info *fi)
{
	struct cairn_setattr sa = {.csa_size = 0};
	int err = cairn_open_inode(f->cf_cairn, ino);

	if (err || !(fi->flags & O_TRUNC))
		return err;
	err = cairn_setattr(f->cf_cairn, ino, CAIRN_SET_SIZE, &sa, NULL);
	if (err)
		cairn_release(f->cf_cairn, ino);
	return err;
}

void cfuse_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct cfuse *f = cfuse_of(req);
	int err;

	cfuse_open_flags(f, fi);
	err = cfuse_open_inode(f, cfuse_ino_in(ino), fi);
	if (err) {
		fuse_reply_err(req, cfuse_errno(err));
		return;
	}
	fi->keep_cache = 1;	      /* every change comes through this mount */
	if (fuse_reply_open(req, fi)) /* invariant (1) */
		cairn_release(f->cf_cairn, cfuse_ino_in(ino));
}

/* CREATE of an existing name (no O_EXCL): open it as OPEN would. */
static int cfuse_create_existing(struct cfuse *f, uint64_t parent, const char *name,
				 const struct fuse_file_info *fi, struct cairn_stat *cs)
{
	int err = cairn_lookup(f->cf_cairn, parent, name, cs);

	if (!err && S_ISDIR(cs->cs_mode))
		err = -EISDIR;
	if (!err)
		err = cfuse_open_inode(f, cs->cs_ino, fi);
	if (!err && (fi->flags & O_TRUNC))
		err = cairn_getattr(f->cf_cairn, cs->cs_ino, cs);
	return err;
}

void cfuse_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		  struct fuse_file_info *fi)
{
	struct cfuse *f = cfuse_of(req);
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	struct cairn_cred cr = {.cc_uid = (uint32_t)ctx->uid, .cc_gid = (uint32_t)ctx->gid};
	struct fuse_entry_param e;
	struct cairn_stat cs;
	int err;

	cfuse_open_flags(f, fi);
	err = cairn_getattr(f->cf_cairn, cfuse_ino_in(parent), &cs);
	if (!err && (cs.cs_mode & S_ISGID)) /* fuse_ops.c, invariant (3) */
		cr.cc_gid = cs.cs_gid;
	if (!err)
		err = cairn_mknod(f->cf_cairn, cfuse_ino_in(parent), name,
				  S_IFREG | ((uint32_t)mode & 07777), 0, &cr, &cs);
	if (!err)
		err = cairn_open_inode(f->cf_cairn, cs.cs_ino);
	else if (err == -EEXIST && !(fi->flags & O_EXCL))
		err = cfuse_create_existing(f, cfuse_ino_in(parent), name, fi, &cs);
	if (err) {
		fuse_reply_err(req, cfuse_errno(err));
		return;
	}
	fi->keep_cache = 1;
	cfuse_entry_fill(&cs, &e);
	if (cfuse_node_ref(&f->cf_nodes, e.ino, cs.cs_mode)) {
		cairn_release(f->cf_cairn, cs.cs_ino);
		fuse_reply_err(req, ENOMEM);
		return;
	}
	if (fuse_reply_create(req, &e, fi)) { /* invariant (1), fuse_ops.c's (1) */
		cfuse_node_forget(&f->cf_nodes, e.ino, 1);
		cairn_release(f->cf_cairn, cs.cs_ino);
	}
}

void cfuse_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	int err = cairn_release(cfuse_of(req)->cf_cairn, cfuse_ino_in(ino));

	(void)fi;
	fuse_reply_err(req, err ? cfuse_errno(err) : 0); /* the kernel ignores it */
}

void cfuse_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
	char *buf = malloc(size ? size : 1);
	ssize_t n;

	(void)fi;
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	n = cairn_pread(cfuse_of(req)->cf_cairn, cfuse_ino_in(ino), buf, size, (uint64_t)off);
	if (n < 0)
		fuse_reply_err(req, cfuse_errno(n));
	else
		fuse_reply_buf(req, buf, (size_t)n);
	free(buf);
}

void cfuse_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
		 struct fuse_file_info *fi)
{
	ssize_t n;

	(void)fi;
	n = cairn_pwrite(cfuse_of(req)->cf_cairn, cfuse_ino_in(ino), buf, size, (uint64_t)off);
	if (n < 0)
		fuse_reply_err(req, cfuse_errno(n));
	else
		fuse_reply_write(req, (size_t)n);
}

void cfuse_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	(void)fi;
	fuse_reply_err(req, ENOSYS); /* invariant (4): no FLUSH from now on */
}

void cfuse_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	int err = cairn_fsync(cfuse_of(req)->cf_cairn, cfuse_ino_in(ino), datasync);

	(void)fi;
	fuse_reply_err(req, err ? cfuse_errno(err) : 0);
}

void cfuse_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len,
		     struct fuse_file_info *fi)
{
	int err;

	(void)fi;
	if (off < 0 || len <= 0) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	/* FALLOC_FL_KEEP_SIZE and FALLOC_FL_PUNCH_HOLE have libcairn's values. */
	err = cairn_fallocate(cfuse_of(req)->cf_cairn, cfuse_ino_in(ino), (unsigned)mode,
			      (uint64_t)off, (uint64_t)len);
	fuse_reply_err(req, err ? cfuse_errno(err) : 0);
}

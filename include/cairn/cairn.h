/*
 * cairn.h - libcairn, the public API of the cairn filesystem.
 *
 * A cairn volume lives in one image file or block device. Open it with
 * cairn_open, work on it with the calls below, close it with
 * cairn_close. Every call is thread-safe and returns 0 (or a count, where
 * it says so) or a negative errno: -ENOENT, -EEXIST, -ENOTDIR, -EISDIR,
 * -ENOTEMPTY, -ENAMETOOLONG, -ELOOP, -EINVAL, -ENOSPC, -EROFS, -EIO,
 * -EUCLEAN (the volume is damaged), ...
 *
 * Two families mirror POSIX:
 *   - inode-based calls, as a FUSE low-level adapter needs them: an inode
 *     is named by its number (uint64_t), the root is CAIRN_ROOT_INO, and
 *     names are one component (1..255 bytes, no '/');
 *   - path-based calls, '/'-separated from the root (a leading '/' is
 *     optional), following symbolic links (-ELOOP after 40), -ENAMETOOLONG
 *     for a component over 255 bytes or a path over 4096.
 *
 * Permissions are NOT checked here: the caller (the FUSE adapter, mounted
 * with default_permissions) does it. The credentials passed to creating
 * calls only set the new inode's owner. Every change is atomic across a
 * crash (all or nothing) except writes and truncates larger than one
 * transaction (256 blocks), which may be cut at a block boundary, as POSIX
 * allows; cairn_fsync / cairn_syncfs make changes durable.
 *
 * (ino, generation) never repeats over the life of a volume.
 */
#ifndef CAIRN_CAIRN_H
#define CAIRN_CAIRN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/statvfs.h>
#include <sys/types.h>
#include <time.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CAIRN_ROOT_INO	     16u   /* the root directory */
#define CAIRN_NAME_MAX	     255u  /* bytes of one name */
#define CAIRN_PATH_MAX	     4096u /* bytes of a path, its terminating NUL included */
#define CAIRN_SYMLOOP_MAX    40u   /* symbolic links followed in one path walk */
#define CAIRN_XATTR_NAME_MAX 255u
#define CAIRN_XATTR_SIZE_MAX 65536u

struct cairn; /* an open volume */

/* ---- volumes -------------------------------------------------------------- */

struct cairn_mkfs_opts {
	uint64_t cmo_size;	 /* bytes of a new image file; 0: an existing file or device */
	uint32_t cmo_block_size; /* 0: 4096 */
	uint32_t cmo_seg_blocks; /* blocks per segment (a power of two); 0: default */
	const char *cmo_label;	 /* NULL: none */
};

/*
 * Make a new, empty cairn filesystem at @path (an image file, created
 * sparse when missing and cmo_size is set, or a block device): the
 * volume, then the root directory (mode 0755, owned by uid/gid 0). It
 * always formats; refusing to overwrite is the caller's decision.
 */
int cairn_mkfs(const char *path, const struct cairn_mkfs_opts *o);

struct cairn_open_opts {
	uint32_t coo_cache_mb;	  /* buffer cache in MiB; 0: 64 */
	int coo_read_only;	  /* refuse every change with -EROFS (orphans are left) */
	uint32_t coo_max_age_ms;  /* commit changes at least this often; 0: 5000 */
	const char *coo_snapshot; /* open this snapshot, read only, instead of the
				     newest state; -ENOENT if there is none */
	uint64_t coo_checkpoint;  /* or this recent checkpoint (cairn_checkpoints),
				     read only; not with coo_snapshot */
	uint32_t coo_protect_s;	  /* keep what recent checkpoints need this many
				     seconds before its space is reused, unless the
				     space is needed; 0: reuse at once, and a
				     writable open drops every older checkpoint */
};

/*
 * Open the filesystem at @path (NULL @o: defaults), taking an exclusive
 * lock on the image (-EBUSY if it is open elsewhere), recovering the
 * newest valid state after a crash and freeing the files that were
 * unlinked while still open when the volume was last used.
 *
 * A snapshot (coo_snapshot) opens with a lock held only during the open
 * if no other process has the image open, and beside a `cairn mount`
 * daemon that has it mounted for writing by asking the daemon (its
 * control ioctl, cairn/ioctl.h; root or the user who mounted it) where
 * the snapshot is. -EBUSY if another program (not a mount) has the
 * image open, or while the snapshot is being deleted. While it is open
 * the snapshot cannot be deleted (-EBUSY there) nor the image formatted.
 *
 * A recent checkpoint (coo_checkpoint) is not pinned by anything but
 * this open's shared lock on the image, held until cairn_close: -EBUSY
 * if another program has the image open for writing (pin it as a
 * snapshot there instead), -ENOENT if it is no longer readable. No
 * writer can open the image meanwhile.
 */
int cairn_open(const char *path, const struct cairn_open_opts *o, struct cairn **out);
/*
 * Make everything durable and close. Files still open are released
 * (an unlinked one is freed). Returns the error of the last commit.
 */
int cairn_close(struct cairn *c);

/* ---- attributes ------------------------------------------------------------ */

struct cairn_cred {
	uint32_t cc_uid;
	uint32_t cc_gid;
};

struct cairn_stat {
	uint64_t cs_ino;
	uint64_t cs_gen; /* generation: (ino, gen) never repeats */
	uint32_t cs_mode;
	uint32_t cs_nlink;
	uint32_t cs_uid;
	uint32_t cs_gid;
	uint64_t cs_rdev;
	uint64_t cs_size;
	uint64_t cs_blocks; /* 512-byte units actually allocated, as stat(2) */
	uint32_t cs_blksize;
	struct timespec cs_atime, cs_mtime, cs_ctime;
};

int cairn_getattr(struct cairn *c, uint64_t ino, struct cairn_stat *st);

/* cairn_setattr's @mask */
#define CAIRN_SET_MODE	0x01u /* permission bits (07777); the type never changes */
#define CAIRN_SET_UID	0x02u
#define CAIRN_SET_GID	0x04u
#define CAIRN_SET_SIZE	0x08u /* truncate up or down (regular files) */
#define CAIRN_SET_ATIME 0x10u /* tv_nsec may be UTIME_NOW or UTIME_OMIT */
#define CAIRN_SET_MTIME 0x20u
#define CAIRN_SET_CTIME 0x40u /* else ctime becomes now on any change */

struct cairn_setattr {
	uint32_t csa_mode;
	uint32_t csa_uid;
	uint32_t csa_gid;
	uint64_t csa_size;
	struct timespec csa_atime, csa_mtime, csa_ctime;
};

/*
 * Change the attributes @mask names, in one atomic change (a size change
 * past one transaction frees the blocks beyond it afterwards). @st (may
 * be NULL) receives the new attributes. -EISDIR for the size of a
 * directory, -EINVAL for that of another non-regular file, -EFBIG past
 * the largest file.
 */
int cairn_setattr(struct cairn *c, uint64_t ino, unsigned mask, const struct cairn_setattr *sa,
		  struct cairn_stat *st);

/* ---- names ----------------------------------------------------------------- */

/* Find @name in directory @parent; @st gets the child's attributes. */
int cairn_lookup(struct cairn *c, uint64_t parent, const char *name, struct cairn_stat *st);
/*
 * Make a regular file, FIFO, socket, character or block device (by the
 * type in @mode; 0 means regular) named @name in @parent. -EINVAL for a
 * directory or symlink type (see cairn_mkdir, cairn_symlink).
 */
int cairn_mknod(struct cairn *c, uint64_t parent, const char *name, uint32_t mode, uint64_t rdev,
		const struct cairn_cred *cr, struct cairn_stat *st);
int cairn_mkdir(struct cairn *c, uint64_t parent, const char *name, uint32_t mode,
		const struct cairn_cred *cr, struct cairn_stat *st);
/* A symbolic link to @target (1..4095 bytes). */
int cairn_symlink(struct cairn *c, uint64_t parent, const char *name, const char *target,
		  const struct cairn_cred *cr, struct cairn_stat *st);
/*
 * Copy the target of symlink @ino into @buf (not NUL-terminated,
 * truncated to @size as readlink(2)); returns its length placed.
 * -EINVAL if @ino is not a symlink.
 */
ssize_t cairn_readlink(struct cairn *c, uint64_t ino, char *buf, size_t size);
/* A new name for @ino (not a directory: -EPERM). */
int cairn_link(struct cairn *c, uint64_t ino, uint64_t newparent, const char *newname,
	       struct cairn_stat *st);
int cairn_unlink(struct cairn *c, uint64_t parent, const char *name);
int cairn_rmdir(struct cairn *c, uint64_t parent, const char *name);

#define CAIRN_RENAME_NOREPLACE 0x1u /* = RENAME_NOREPLACE */
#define CAIRN_RENAME_EXCHANGE  0x2u /* = RENAME_EXCHANGE */
/*
 * rename(2) and renameat2(2): over a file or an empty directory, across
 * directories, never a directory into its own subtree (-EINVAL); flags as
 * renameat2 (others: -EINVAL). One volume: -EXDEV cannot happen.
 */
int cairn_rename(struct cairn *c, uint64_t parent, const char *name, uint64_t newparent,
		 const char *newname, unsigned flags);

/*
 * Called by cairn_readdir per entry ('.' and '..' first) with the cookie
 * that resumes after it; return nonzero to stop. Runs with the directory
 * locked for reading: it must not change that directory.
 */
typedef int (*cairn_fill_fn)(void *ctx, const char *name, size_t len, uint64_t ino,
			     unsigned type /* DT_* */, uint64_t next_cookie);
/*
 * List directory @ino from @cookie (0: the start). A cookie stays valid
 * while the directory changes: resuming returns each entry that existed
 * the whole time exactly once.
 */
int cairn_readdir(struct cairn *c, uint64_t ino, uint64_t cookie, cairn_fill_fn fill, void *ctx);

/* ---- files ----------------------------------------------------------------- */

/*
 * Count an open of @ino (any type); cairn_release undoes it. A file
 * unlinked while open keeps its data until its last release; if the
 * process dies first, the next cairn_open frees it. -ENOENT for an inode
 * that is gone.
 */
int cairn_open_inode(struct cairn *c, uint64_t ino);
int cairn_release(struct cairn *c, uint64_t ino);

/* Read up to @size bytes at @off of regular file @ino; returns the bytes read (0 at EOF). */
ssize_t cairn_pread(struct cairn *c, uint64_t ino, void *buf, size_t size, uint64_t off);
/* Write @size bytes at @off, growing the file; returns @size. Holes read as zeros. */
ssize_t cairn_pwrite(struct cairn *c, uint64_t ino, const void *buf, size_t size, uint64_t off);

#define CAIRN_FALLOC_KEEP_SIZE	0x01u /* = FALLOC_FL_KEEP_SIZE */
#define CAIRN_FALLOC_PUNCH_HOLE 0x02u /* = FALLOC_FL_PUNCH_HOLE */
/*
 * fallocate(2): mode 0 extends the size to @off + @len (blocks are not
 * preallocated: a copy-on-write volume allocates at every write, so
 * nothing could be kept); KEEP_SIZE alone does nothing; PUNCH_HOLE |
 * KEEP_SIZE frees the whole blocks in the range and zeroes the partial
 * ends. Other modes: -EOPNOTSUPP.
 */
int cairn_fallocate(struct cairn *c, uint64_t ino, unsigned mode, uint64_t off, uint64_t len);
/* Make @ino's changes durable (the whole volume's, in fact: one commit). */
int cairn_fsync(struct cairn *c, uint64_t ino, int datasync);
int cairn_syncfs(struct cairn *c);
/*
 * f_bsize/f_frsize, f_blocks, f_bfree = f_bavail (what writes can still
 * get), f_files, f_ffree, f_namemax = 255.
 */
int cairn_statfs(struct cairn *c, struct statvfs *sv);
/*
 * Which file the volume is open on, whatever its path is now: st_dev
 * and st_ino as fstat(2) gave them at open. -ENOTSUP if it is not on a
 * file (a device the caller opened through the internal API).
 */
int cairn_image_identity(struct cairn *c, uint64_t *dev, uint64_t *ino);

/* ---- snapshots ---------------------------------------------------------------- */

/*
 * A snapshot pins the filesystem as it is (everything written before the
 * call) under a name, read-only, until it is deleted; taking one costs
 * the same however many files there are. Open one with
 * cairn_open_opts.coo_snapshot. Names: 1 to CAIRN_SNAP_NAME_MAX bytes,
 * no '/', not "." or "..". create: -EEXIST, -EINVAL, -ENAMETOOLONG,
 * -ENOSPC, -EROFS; delete (works on a full volume): -ENOENT, -EROFS,
 * -EBUSY (open: mounted, or open through libcairn, somewhere).
 */
#define CAIRN_SNAP_NAME_MAX 95
struct cairn_snapshot {
	char cs_name[CAIRN_SNAP_NAME_MAX + 1];
	uint64_t cs_delta;   /* the commit whose state it keeps */
	uint64_t cs_sroot;   /* the block where that state starts (its super root) */
	uint64_t cs_xlate;   /* the super root it reads its blocks' places through (0: cs_sroot) */
	int64_t cs_ctime_ns; /* when it was taken, ns since the epoch */
};
int cairn_snapshot_create(struct cairn *c, const char *name);
/* Pin recent checkpoint @delta (cairn_checkpoints) as snapshot @name
 * instead of the newest state; -ENOENT if it is no longer readable. */
int cairn_snapshot_create_at(struct cairn *c, const char *name, uint64_t delta);
int cairn_snapshot_delete(struct cairn *c, const char *name);
/* Every snapshot, in a malloc'ed array (*out NULL if none). */
int cairn_snapshot_list(struct cairn *c, struct cairn_snapshot **out, size_t *n);

/*
 * Recent checkpoints. Every commit is a checkpoint, and each stays
 * readable, unpinned, until a segment that held its blocks is reused:
 * as soon as it empties, or after cairn_open_opts.coo_protect_s seconds,
 * or sooner when the space is needed. Open one read only with
 * cairn_open_opts.coo_checkpoint.
 */
struct cairn_checkpoint {
	uint64_t ccp_delta;  /* the commit it ends: what coo_checkpoint takes */
	int64_t ccp_time_ns; /* when it was committed, ns since the epoch; 0: unknown */
};
/* The readable checkpoints, newest first, at most @max, in a malloc'ed
 * array (*out NULL if none). */
int cairn_checkpoints(struct cairn *c, size_t max, struct cairn_checkpoint **out, size_t *n);

/* ---- extended attributes -------------------------------------------------- */

#define CAIRN_XATTR_CREATE  0x1u /* = XATTR_CREATE */
#define CAIRN_XATTR_REPLACE 0x2u /* = XATTR_REPLACE */
/*
 * Names in user., trusted., security., and system.posix_acl_access /
 * system.posix_acl_default (stored byte for byte, not interpreted);
 * others -EOPNOTSUPP. -ERANGE for a name over 255 bytes, -E2BIG for a
 * value over 64 KiB, -EEXIST / -ENODATA for the flags, -ENOSPC when the
 * inode's xattrs would pass 128 KiB.
 */
int cairn_setxattr(struct cairn *c, uint64_t ino, const char *name, const void *value, size_t size,
		   unsigned flags);
/* Returns the value's size; @size 0 asks for it only; -ERANGE if @size is too small; -ENODATA. */
ssize_t cairn_getxattr(struct cairn *c, uint64_t ino, const char *name, void *buf, size_t size);
/* NUL-terminated names one after another; sizes as cairn_getxattr. */
ssize_t cairn_listxattr(struct cairn *c, uint64_t ino, char *buf, size_t size);
int cairn_removexattr(struct cairn *c, uint64_t ino, const char *name);

/* ---- paths ----------------------------------------------------------------- */

/* stat(2) (follows a final symlink) and lstat(2). */
int cairn_stat_path(struct cairn *c, const char *path, struct cairn_stat *st);
int cairn_lstat_path(struct cairn *c, const char *path, struct cairn_stat *st);
int cairn_mkdir_path(struct cairn *c, const char *path, uint32_t mode, const struct cairn_cred *cr);
#define CAIRN_O_EXCL 0x1u /* fail with -EEXIST if it exists */
/*
 * open(O_CREAT [| O_EXCL]): create a regular file (or open the existing
 * one, following a final symlink) and count an open of it; @ino receives
 * its number: cairn_release it.
 */
int cairn_create_path(struct cairn *c, const char *path, uint32_t mode, unsigned flags,
		      const struct cairn_cred *cr, uint64_t *ino);
/* open(2) of an existing inode: cairn_release the returned @ino. */
int cairn_open_path(struct cairn *c, const char *path, uint64_t *ino);
int cairn_unlink_path(struct cairn *c, const char *path);
int cairn_rmdir_path(struct cairn *c, const char *path);
int cairn_rename_path(struct cairn *c, const char *from, const char *to, unsigned flags);
int cairn_symlink_path(struct cairn *c, const char *target, const char *linkpath,
		       const struct cairn_cred *cr);
int cairn_link_path(struct cairn *c, const char *existing, const char *newpath);
/* pread/pwrite by path; cairn_write_path creates a missing file (0644, root's). */
ssize_t cairn_read_path(struct cairn *c, const char *path, void *buf, size_t size, uint64_t off);
ssize_t cairn_write_path(struct cairn *c, const char *path, const void *buf, size_t size,
			 uint64_t off);

#ifdef __cplusplus
}
#endif

#endif /* CAIRN_CAIRN_H */

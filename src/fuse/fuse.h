/*
 * fuse.h - the FUSE adapter: a cairn volume served through the libfuse3
 * low-level API. The `cairn mount` command (tools/cmd_mount.c) is its
 * one user.
 *
 *   cfuse_check_mountpoint   is DIR a directory nobody has mounted on?
 *   cfuse_mount              parse the options (a fuse session), open
 *                            the image (libcairn, which locks it), mount
 *   cfuse_run                serve requests until unmount or a signal
 *   cfuse_unmount            unmount, commit (cairn_close), free
 *
 * The adapter is the only place where libcairn's negative errno values
 * become the positive ones the kernel gets. It never prints: failures
 * come back as -errno plus the step and libfuse's own message (struct
 * cfuse_err), for the tool to put on one line.
 *
 * Design (libfuse 3.14, Debian 12: FUSE_USE_VERSION 312)
 *   - Files: fuse_session.c (mount, loop, signals, unmount), fuse_ops.c
 *     (init, names, attributes: the request table), fuse_file.c,
 *     fuse_dir.c, fuse_xattr.c, fuse_nodes.c (lookup counts).
 *   - Node ids are inode numbers; FUSE's root (1) is cairn's 16. Entry
 *     replies carry the inode's generation; (ino, gen) never repeats.
 *   - The writeback cache is on (cfo_writeback_cache; never for -o ro),
 *     1 MiB writes, time_gran 1 ns; entry, attribute and negative-entry
 *     timeouts of a day, and keep_cache / cache_readdir: every change
 *     goes through this mount.
 *   - The session loop is multi-threaded with at most one thread reading
 *     /dev/fuse at a time (fuse_session.c).
 *   - default_permissions is always on: libcairn checks no permissions,
 *     the kernel does. HANDLE_KILLPRIV is off (the kernel clears set-ID
 *     bits); POSIX ACLs are refused (nothing would enforce them).
 *   - Durability: fsync, fdatasync and fsyncdir return after
 *     cairn_fsync. syncfs(2) and sync(2) cannot be made durable from
 *     here: the kernel sends FUSE_SYNCFS only to virtiofs, so they only
 *     write the kernel's dirty pages back; libcairn commits those within
 *     its commit interval (-o commit=, 5 s by default). An unmount, or a
 *     SIGTERM/SIGINT/SIGHUP (which syncs the mount first), commits all.
 *   - With the writeback cache, write(2) lands in the kernel's cache:
 *     ENOSPC and other write errors come back from fsync(2) and close(2).
 *   - Snapshots: the control ioctls of include/cairn/ioctl.h (fuse_ctl.c)
 *     create, delete and list them on the mounted volume; cfo_snapshot
 *     mounts one, read-only (the image's lock still allows one mount at
 *     a time: a snapshot mount beside the writable one is not yet).
 */
#ifndef CAIRN_FUSE_H
#define CAIRN_FUSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cfuse; /* a mounted volume */

#define CFUSE_SPIN_US	  25 /* cfo_spin_us's default (fuse_session.c) */
#define CFUSE_SPIN_US_MAX 1000

struct cfuse_opts {
	const char *cfo_image;	    /* an absolute path (fsname= of the mount) */
	const char *cfo_mountpoint; /* an absolute path */
	bool cfo_read_only;	    /* -o ro: the volume and the mount */
	bool cfo_writeback_cache;   /* the kernel's writeback cache (never with cfo_read_only) */
	bool cfo_allow_other;	    /* -o allow_other */
	bool cfo_debug;		    /* -d: libfuse traces every request on stderr */
	const char *cfo_fuse_opts;  /* other -o options for libfuse ("a,b=c"); NULL: none */
	unsigned cfo_threads;	    /* most worker threads; 0: sized to the machine */
	uint32_t cfo_spin_us;	    /* poll for the next request this long before
				       sleeping in read(2); 0: never (CFUSE_SPIN_US) */
	uint32_t cfo_cache_mb;	    /* libcairn's buffer cache; 0: its default */
	uint32_t cfo_commit_ms;	    /* commit at least this often; 0: libcairn's default */
	const char *cfo_snapshot;   /* mount this snapshot (with cfo_read_only); NULL: none */
	uint64_t cfo_checkpoint;    /* or this recent checkpoint (with cfo_read_only); 0: none */
	uint32_t cfo_protect_s;	    /* cairn_open_opts.coo_protect_s */
};

/* Which step of cfuse_mount failed. */
enum cfuse_step {
	CFUSE_STEP_OPTIONS = 1, /* libfuse refused an option: a usage error */
	CFUSE_STEP_IMAGE,	/* cairn_open: busy, corrupt, not cairn, I/O */
	CFUSE_STEP_MOUNT,	/* fuse_session_mount */
	CFUSE_STEP_MEMORY,
};

struct cfuse_err {
	enum cfuse_step ce_step;
	int ce_err;	  /* -errno (-EIO when libfuse gave none) */
	char ce_msg[256]; /* libfuse's last message, "" if none */
};

/*
 * Is @dir fit to mount on: 0, -ENOENT, -ENOTDIR, -EBUSY (something is
 * already mounted there), -ENOTCONN (a dead FUSE mount: unmount it) or
 * another -errno of stat(2).
 */
int cfuse_check_mountpoint(const char *dir);

/*
 * Open @o->cfo_image and mount it on @o->cfo_mountpoint. Call from the
 * process's only thread: it blocks SIGHUP, SIGINT and SIGTERM in the
 * calling thread (so every thread libcairn starts has them blocked;
 * cfuse_run takes them in a thread of its own). On failure *@e says
 * where and why; nothing is left open or mounted.
 */
int cfuse_mount(const struct cfuse_opts *o, struct cfuse **out, struct cfuse_err *e);

/*
 * Serve requests until the volume is unmounted (umount, fusermount3 -u)
 * or SIGHUP, SIGINT or SIGTERM arrives; on a signal, the kernel's dirty
 * pages are written back (syncfs on the mount) before the loop ends.
 * 0, or the -errno that stopped the loop.
 */
int cfuse_run(struct cfuse *f);

/*
 * Unmount (if still mounted), commit everything and close the volume,
 * free @f. Returns cairn_close's error (the last commit's).
 */
int cfuse_unmount(struct cfuse *f);

#endif /* CAIRN_FUSE_H */

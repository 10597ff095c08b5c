/*
 * fuse_internal.h - what the FUSE adapter's files share: the mounted
 * volume, inode number translation, the lookup-count table and the
 * request table.
 */
#ifndef CAIRN_FUSE_INTERNAL_H
#define CAIRN_FUSE_INTERNAL_H

#ifndef FUSE_USE_VERSION
#define FUSE_USE_VERSION 312 /* 3.12: Debian 12 has libfuse 3.14 */
#endif

#include <fuse_lowlevel.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "cairn/cairn.h"
#include "fuse/fuse.h"

/*
 * Entry and attribute timeouts, seconds. Every change to the volume goes
 * through this mount, so the kernel's caches are never wrong; they are
 * kept as long as the kernel likes. Negative entries too.
 */
#define CFUSE_TIMEOUT 86400.0
/* libcairn's timestamps are in nanoseconds. */
#define CFUSE_TIME_GRAN 1u
#define CFUSE_MAX_WRITE (1u << 20)

/*
 * The lookup-count table: per node id, how many lookups the kernel holds
 * (every entry it was given: lookup, mknod, mkdir, symlink, link,
 * create, readdirplus but '.' and '..') minus what it forgot. libcairn
 * keeps no count of its own; the table is what makes a FORGET checkable
 * (an unknown node or one forgotten too often is a bug, logged) and
 * tells at unmount how many nodes the kernel still held.
 */
struct cfuse_node {
	uint64_t cn_ino; /* node id */
	uint64_t cn_nlookup;
	uint32_t cn_mode; /* the inode's type and mode when last handed out */
	struct cfuse_node *cn_next;
};

struct cfuse_nodes {
	pthread_mutex_t cns_lock;
	struct cfuse_node **cns_buckets; /* protected by cns_lock */
	size_t cns_nbuckets;		 /* a power of two; protected by cns_lock */
	size_t cns_count;		 /* nodes in the table; protected by cns_lock */
	uint64_t cns_bad_forgets;	 /* protected by cns_lock */
};

int cfuse_nodes_init(struct cfuse_nodes *ns);
void cfuse_nodes_destroy(struct cfuse_nodes *ns);
/* Add one lookup of node @ino, whose mode is @mode; -ENOMEM. */
int cfuse_node_ref(struct cfuse_nodes *ns, uint64_t ino, uint32_t mode);
/* The mode node @ino had when handed out; -ENOENT if the kernel holds no lookup. */
int cfuse_node_mode(struct cfuse_nodes *ns, uint64_t ino, uint32_t *mode);
/* Drop @n lookups of @ino (a FORGET, or a reply the kernel never got). */
void cfuse_node_forget(struct cfuse_nodes *ns, uint64_t ino, uint64_t n);
/* Nodes still held, and FORGETs that did not match a count. */
void cfuse_nodes_stats(struct cfuse_nodes *ns, size_t *held, uint64_t *bad);

/*
 * The session loop's workers (fuse_session.c): at most one of them reads
 * /dev/fuse at a time (the reader); the others wait on cl_cond.
 */
struct cfuse_loop {
	pthread_mutex_t cl_lock;
	pthread_cond_t cl_cond; /* no reader, or the session ended */
	pthread_t *cl_workers;	/* cl_max; [0] is cfuse_run's own thread */
	unsigned cl_max;
	unsigned cl_started; /* workers started, [0] included; protected by cl_lock */
	unsigned cl_idle;    /* workers waiting on cl_cond; protected by cl_lock */
	bool cl_reading;     /* a worker is the reader; protected by cl_lock */
	pthread_t cl_reader; /* that worker, if cl_reading; protected by cl_lock */
	int cl_err;	     /* the read error that ended the loop; protected by cl_lock */
};

struct cfuse {
	struct cairn *cf_cairn; /* set before the session is mounted */
	struct fuse_session *cf_se;
	char *cf_mountpoint;
	bool cf_read_only;
	bool cf_want_wbcache;	/* cfo_writeback_cache */
	bool cf_mounted;	/* main thread only */
	atomic_bool cf_wbcache; /* the writeback cache was negotiated (init) */
	unsigned cf_threads;
	uint64_t cf_spin_ns; /* cfo_spin_us */
	struct cfuse_nodes cf_nodes;
	struct cfuse_loop cf_loop; /* while cfuse_run runs */
	/* signals: cfuse_run's signal thread and the loop's workers */
	pthread_t cf_sigthread;
	bool cf_sigthread_started; /* main thread only */
	atomic_bool cf_loop_done;  /* every worker is out of the loop */
	sigset_t cf_sigs;	   /* SIGHUP, SIGINT, SIGTERM */
	sigset_t cf_oldmask;
};

/* Node ids are inode numbers, but the root: FUSE's 1 is cairn's 16. */
static inline uint64_t cfuse_ino_in(fuse_ino_t ino)
{
	return ino == FUSE_ROOT_ID ? CAIRN_ROOT_INO : (uint64_t)ino;
}

static inline fuse_ino_t cfuse_ino_out(uint64_t ino)
{
	return ino == CAIRN_ROOT_INO ? FUSE_ROOT_ID : (fuse_ino_t)ino;
}

static inline struct cfuse *cfuse_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

/* libcairn's -errno as the kernel wants it (positive; EIO for nonsense). */
static inline int cfuse_errno(long err)
{
	return err < 0 && err > -4096 ? (int)-err : 5 /* EIO */;
}

/* ---- fuse_ops.c -------------------------------------------------------------- */
extern const struct fuse_lowlevel_ops cfuse_ops;

void cfuse_stat_fill(const struct cairn_stat *cs, struct stat *st);
/* Reply an entry for @cs, counting the lookup (undone if the kernel never got it). */
void cfuse_reply_entry(fuse_req_t req, const struct cairn_stat *cs);
void cfuse_entry_fill(const struct cairn_stat *cs, struct fuse_entry_param *e);

/* ---- fuse_file.c, fuse_dir.c, fuse_xattr.c ------------------------------------- */
void cfuse_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void cfuse_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		  struct fuse_file_info *fi);
void cfuse_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void cfuse_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi);
void cfuse_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
		 struct fuse_file_info *fi);
void cfuse_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void cfuse_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi);
void cfuse_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len,
		     struct fuse_file_info *fi);

void cfuse_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void cfuse_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		   struct fuse_file_info *fi);
void cfuse_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi);
void cfuse_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void cfuse_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi);

void cfuse_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
		    size_t size, int flags);
void cfuse_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size);
void cfuse_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size);
void cfuse_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name);

/* ---- fuse_ctl.c: the control ioctls (cairn/ioctl.h) ---------------------------- */
void cfuse_ioctl(fuse_req_t req, fuse_ino_t ino, unsigned cmd, void *arg, struct fuse_file_info *fi,
		 unsigned flags, const void *in_buf, size_t in_bufsz, size_t out_bufsz);

#endif /* CAIRN_FUSE_INTERNAL_H */

/*
 * fuse_session.c - mounting, serving and unmounting a volume.
 *
 *   cfuse_mount     fuse_session_new (libfuse checks the options)
 *                   -> block SIGHUP/SIGINT/SIGTERM -> cairn_open (locks
 *                   the image, recovers) -> fuse_session_mount
 *   cfuse_run       signal thread; fuse_session_loop_mt
 *   cfuse_unmount   fuse_session_unmount -> cairn_close (commits)
 *                   -> fuse_session_destroy
 *
 * Signals. libfuse's own handlers (fuse_set_signal_handlers) end the loop
 * at once, dropping the pages the kernel still holds dirty in its
 * writeback cache, and they may run in any thread that does not block
 * the signal, libcairn's included, where they would not wake the loop.
 * So SIGHUP, SIGINT and SIGTERM are blocked in every thread (cfuse_mount
 * blocks them before cairn_open starts libcairn's threads; libfuse's
 * workers inherit the mask), and one thread takes them with sigwait:
 * it syncs the mount (the kernel writes its dirty pages back through the
 * workers), ends the session and wakes the main thread out of the
 * loop's wait with SIGUSR1 (a handler that does nothing, without
 * SA_RESTART), again every 50 ms until the loop has returned, since the
 * wake-up can land just before the main thread starts waiting.
 *
 * Invariants
 *   (1) Either cfuse_mount fails with nothing open or mounted, or it
 *       returns a mounted volume that cfuse_unmount will commit.
 *   (2) cairn_close runs after the loop returned (no request in flight)
 *       and after the unmount (no request can come).
 *   (3) libfuse's messages are captured (the last one, for the caller's
 *       error line) until the volume is mounted; printed with -d.
 */
#include "fuse/fuse_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "util/util.h"

#define CFUSE_WAKE_SIGNAL SIGUSR1
#define CFUSE_WAKE_NS	  (50 * 1000 * 1000)

/* ---- libfuse's log (invariant 3) ---------------------------------------------------- */

static pthread_mutex_t cfuse_log_lock = PTHREAD_MUTEX_INITIALIZER;
static char cfuse_log_last[256]; /* protected by cfuse_log_lock */
static bool cfuse_log_print;	 /* protected by cfuse_log_lock */

static void cfuse_log_fn(enum fuse_log_level level, const char *fmt, va_list ap)
{
	char line[sizeof(cfuse_log_last)];
	size_t n;

	vsnprintf(line, sizeof(line), fmt, ap);
	n = strlen(line);
	while (n && line[n - 1] == '\n')
		line[--n] = '\0';
	pthread_mutex_lock(&cfuse_log_lock);
	if (cfuse_log_print)
		fprintf(stderr, "%s\n", line);
	else if (level <= FUSE_LOG_WARNING)
		memcpy(cfuse_log_last, line, n + 1);
	pthread_mutex_unlock(&cfuse_log_lock);
}

static void cfuse_log_capture(bool print)
{
	pthread_mutex_lock(&cfuse_log_lock);
	cfuse_log_last[0] = '\0';
	cfuse_log_print = print;
	pthread_mutex_unlock(&cfuse_log_lock);
	fuse_set_log_func(cfuse_log_fn);
}

static int cfuse_fail(struct cfuse_err *e, enum cfuse_step step, int err)
{
	e->ce_step = step;
	e->ce_err = err < 0 ? err : -EIO;
	pthread_mutex_lock(&cfuse_log_lock);
	snprintf(e->ce_msg, sizeof(e->ce_msg), "%s", cfuse_log_last);
	pthread_mutex_unlock(&cfuse_log_lock);
	return e->ce_err;
}

/* ---- the mount point ------------------------------------------------------------------ */

int cfuse_check_mountpoint(const char *dir)
{
	char parent[PATH_MAX];
	struct stat st, pst;

	if (stat(dir, &st) < 0)
		return -errno;
	if (!S_ISDIR(st.st_mode))
		return -ENOTDIR;
	if (snprintf(parent, sizeof(parent), "%s/..", dir) >= (int)sizeof(parent))
		return -ENAMETOOLONG;
	if (stat(parent, &pst) < 0)
		return -errno;
	/* a mount point: another device than its parent, or the root itself */
	if (st.st_dev != pst.st_dev || st.st_ino == pst.st_ino)
		return -EBUSY;
	return 0;
}

/* ---- mounting --------------------------------------------------------------------------- */

/* Append @opt to the comma-separated options in @buf. */
static int cfuse_opt_add(char *buf, size_t size, const char *opt)
{
	size_t n = strlen(buf);

	if (n + 1 + strlen(opt) + 1 > size)
		return -ENAMETOOLONG;
	snprintf(buf + n, size - n, "%s%s", n ? "," : "", opt);
	return 0;
}

/* "fsname=@image", ',' and '\' escaped with '\' as fuse_opt reads them. */
static int cfuse_opt_fsname(char *buf, size_t size, const char *image)
{
	size_t n = (size_t)snprintf(buf, size, "fsname=");

	for (; *image && n + 3 < size; image++) {
		if (*image == ',' || *image == '\\')
			buf[n++] = '\\';
		buf[n++] = *image;
	}
	buf[n] = '\0';
	return *image ? -ENAMETOOLONG : 0;
}

/* The mount options: ours, then the caller's extra ones. */
static int cfuse_mount_opts(const struct cfuse_opts *o, char *buf, size_t size)
{
	char fsname[2 * PATH_MAX + 16];
	int err = cfuse_opt_fsname(fsname, sizeof(fsname), o->cfo_image);

	buf[0] = '\0';
	if (!err)
		err = cfuse_opt_add(buf, size, "subtype=cairn,default_permissions");
	if (!err)
		err = cfuse_opt_add(buf, size, fsname);
	if (!err && o->cfo_read_only)
		err = cfuse_opt_add(buf, size, "ro");
	if (!err && o->cfo_allow_other)
		err = cfuse_opt_add(buf, size, "allow_other");
	if (!err && o->cfo_debug)
		err = cfuse_opt_add(buf, size, "debug");
	if (!err && o->cfo_fuse_opts && *o->cfo_fuse_opts)
		err = cfuse_opt_add(buf, size, o->cfo_fuse_opts);
	return err;
}

static int cfuse_session_new(struct cfuse *f, const struct cfuse_opts *o, struct cfuse_err *e)
{
	char opts[2 * PATH_MAX + 1024];
	char *argv[] = {"cairn", "-o", opts, NULL};
	struct fuse_args args = FUSE_ARGS_INIT(3, argv);
	int err = cfuse_mount_opts(o, opts, sizeof(opts));

	if (err)
		return cfuse_fail(e, CFUSE_STEP_OPTIONS, err);
	f->cf_se = fuse_session_new(&args, &cfuse_ops, sizeof(cfuse_ops), f);
	fuse_opt_free_args(&args);
	if (!f->cf_se)
		return cfuse_fail(e, CFUSE_STEP_OPTIONS, -EINVAL);
	return 0;
}

static unsigned cfuse_default_threads(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	/* requests block on commits (fsync) and reads: a few per CPU */
	if (n < 2)
		n = 2;
	return n > 16 ? 64u : (unsigned)n * 4;
}

static struct cfuse *cfuse_alloc(const struct cfuse_opts *o)
{
	struct cfuse *f = calloc(1, sizeof(*f));

	if (!f)
		return NULL;
	f->cf_mountpoint = strdup(o->cfo_mountpoint);
	if (!f->cf_mountpoint || cfuse_nodes_init(&f->cf_nodes)) {
		free(f->cf_mountpoint);
		free(f);
		return NULL;
	}
	f->cf_read_only = o->cfo_read_only;
	f->cf_threads = o->cfo_threads ? o->cfo_threads : cfuse_default_threads();
	sigemptyset(&f->cf_sigs);
	sigaddset(&f->cf_sigs, SIGHUP);
	sigaddset(&f->cf_sigs, SIGINT);
	sigaddset(&f->cf_sigs, SIGTERM);
	return f;
}

static void cfuse_free(struct cfuse *f)
{
	cfuse_nodes_destroy(&f->cf_nodes);
	free(f->cf_mountpoint);
	free(f);
}

int cfuse_mount(const struct cfuse_opts *o, struct cfuse **out, struct cfuse_err *e)
{
	struct cairn_open_opts coo = {.coo_cache_mb = o->cfo_cache_mb,
				      .coo_read_only = o->cfo_read_only,
				      .coo_max_age_ms = o->cfo_commit_ms,
				      .coo_snapshot = o->cfo_snapshot};
	struct cfuse *f = cfuse_alloc(o);
	int err;

	memset(e, 0, sizeof(*e));
	if (!f)
		return cfuse_fail(e, CFUSE_STEP_MEMORY, -ENOMEM);
	cfuse_log_capture(o->cfo_debug);
	err = cfuse_session_new(f, o, e);
	if (err)
		goto out_free;
	pthread_sigmask(SIG_BLOCK, &f->cf_sigs, &f->cf_oldmask);
	err = cairn_open(o->cfo_image, &coo, &f->cf_cairn);
	if (err) {
		cfuse_fail(e, CFUSE_STEP_IMAGE, err);
		goto out_session;
	}
	if (fuse_session_mount(f->cf_se, f->cf_mountpoint)) {
		err = cfuse_fail(e, CFUSE_STEP_MOUNT, -EIO);
		goto out_close;
	}
	f->cf_mounted = true;
	cfuse_log_capture(true); /* from now on the daemon's stderr is its log */
	*out = f;
	return 0;

out_close:
	cairn_close(f->cf_cairn);
out_session:
	pthread_sigmask(SIG_SETMASK, &f->cf_oldmask, NULL);
	fuse_session_destroy(f->cf_se);
out_free:
	cfuse_free(f);
	return err;
}

/* ---- serving ----------------------------------------------------------------------------- */

static void cfuse_wake_handler(int sig)
{
	(void)sig; /* only interrupts the loop's wait */
}

/* Write the kernel's dirty pages back, end the session, wake the loop. */
static void cfuse_stop(struct cfuse *f)
{
	struct timespec pause = {.tv_nsec = CFUSE_WAKE_NS};
	int fd = open(f->cf_mountpoint, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd >= 0) {
		syncfs(fd);
		close(fd);
	}
	fuse_session_exit(f->cf_se);
	while (!atomic_load(&f->cf_loop_done)) {
		pthread_kill(f->cf_main, CFUSE_WAKE_SIGNAL);
		nanosleep(&pause, NULL);
	}
}

static void *cfuse_sig_main(void *arg)
{
	struct cfuse *f = arg;
	int sig;

	while (!atomic_load(&f->cf_loop_done)) {
		if (sigwait(&f->cf_sigs, &sig))
			continue;
		if (atomic_load(&f->cf_loop_done))
			break;
		log_info("fuse: signal %d: unmounting %s", sig, f->cf_mountpoint);
		cfuse_stop(f);
	}
	return NULL;
}

static int cfuse_signals_start(struct cfuse *f)
{
	struct sigaction sa = {.sa_handler = cfuse_wake_handler}; /* no SA_RESTART */
	int err;

	sigemptyset(&sa.sa_mask);
	sigaction(CFUSE_WAKE_SIGNAL, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	f->cf_main = pthread_self();
	err = pthread_create(&f->cf_sigthread, NULL, cfuse_sig_main, f);
	if (err)
		return -err;
	f->cf_sigthread_started = true;
	return 0;
}

static void cfuse_signals_stop(struct cfuse *f)
{
	atomic_store(&f->cf_loop_done, true);
	if (!f->cf_sigthread_started)
		return;
	pthread_kill(f->cf_sigthread, SIGHUP); /* out of sigwait; it sees loop_done */
	pthread_join(f->cf_sigthread, NULL);
	f->cf_sigthread_started = false;
}

int cfuse_run(struct cfuse *f)
{
	struct fuse_loop_config *cfg = fuse_loop_cfg_create();
	int ret;

	if (!cfg)
		return -ENOMEM;
	fuse_loop_cfg_set_max_threads(cfg, f->cf_threads);
	fuse_loop_cfg_set_idle_threads(cfg, f->cf_threads / 2 ? f->cf_threads / 2 : 1);
	fuse_loop_cfg_set_clone_fd(cfg, 0); /* not measured to help yet */
	ret = cfuse_signals_start(f);
	if (!ret)
		ret = fuse_session_loop_mt(f->cf_se, cfg);
	cfuse_signals_stop(f);
	fuse_loop_cfg_destroy(cfg);
	return ret < 0 ? ret : 0; /* > 0: the signal that ended it */
}

int cfuse_unmount(struct cfuse *f)
{
	uint64_t bad;
	size_t held;
	int err;

	if (f->cf_mounted)
		fuse_session_unmount(f->cf_se); /* invariant (2) */
	f->cf_mounted = false;
	err = cairn_close(f->cf_cairn);
	fuse_session_destroy(f->cf_se);
	cfuse_nodes_stats(&f->cf_nodes, &held, &bad);
	if (bad)
		log_err("fuse: %llu forgets did not match a lookup", (unsigned long long)bad);
	pthread_sigmask(SIG_SETMASK, &f->cf_oldmask, NULL);
	cfuse_free(f);
	return err;
}

/*
 * fuse_session.c - mounting, serving and unmounting a volume.
 *
 *   cfuse_mount     fuse_session_new (libfuse checks the options)
 *                   -> block SIGHUP/SIGINT/SIGTERM -> cairn_open (locks
 *                   the image, recovers) -> fuse_session_mount
 *   cfuse_run       signal thread; the workers (cfuse_loop_work)
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
 * workers), ends the session and wakes the worker reading /dev/fuse with
 * SIGUSR1 (a handler that does nothing, without SA_RESTART), again every
 * 50 ms until the loop has returned, since the wake-up can land just
 * before the reader starts reading.
 *
 * The loop: one reader at a time. libfuse's multi-threaded loop keeps
 * every idle worker in read(2) on /dev/fuse. The kernel wakes them in
 * turn, and a worker coming back from a reply races the woken one for
 * the next request, so a caller that waits for each reply (unlink,
 * create, stat of many files) costs more context switches and more
 * contention on the device's lock than with a single-threaded loop
 * (fsbench's 10,000 unlinks ran 1.35x faster, creates 1.3x, with
 * libfuse's fuse_session_loop). But one thread would serialise fsyncs,
 * which group commit needs concurrent, and everything behind a request
 * that waits. So here at most one worker reads (the reader); it serves the
 * request it read itself and then reads again, as a single-threaded
 * loop does, unless it hands the reading over to another worker first
 * (cfuse_loop_hand_off):
 *   - for a request that waits for a commit (FSYNC, FSYNCDIR, the
 *     control ioctls), so that the next ones, fsyncs included, are
 *     read and served meanwhile;
 *   - when another request is already waiting (poll(2) on the device),
 *     so that concurrent callers are served concurrently. A poll is a
 *     system call, as dear here as the read: it is made for each READ
 *     and WRITE (they may read the image; readahead and writeback send
 *     several at once), but only every CFUSE_POLL_EVERY-th other request
 *     in a row, and never for the quick ones nobody waits for (FORGET,
 *     RELEASE: a close's RELEASE comes while its caller goes on, so the
 *     next request is nearly always waiting, and serving it a few
 *     microseconds later costs less than waking a worker for it).
 * A reader about to read tries for up to cf_spin_ns (-o spin=US) before
 * it sleeps (the device is then non-blocking, and a sleeping reader waits
 * in poll(2), not read(2): cfuse_loop_receive): a caller that
 * waits for each reply sends its next request within microseconds (an
 * unlink here is three: GETATTR of the directory, UNLINK, and the
 * kernel's SETATTR of the file's times), and waking a thread asleep in
 * read(2) costs more than that, most of all in a virtual machine, where
 * it is an interrupt to an idle CPU (fsbench's 10,000 unlinks ran 1.28x
 * faster, creates 1.3x, with 20 us than without). Only a reader that
 * just served a request itself spins, at most that long: an idle daemon
 * sleeps, and a worker that a hand-over woke (an fsync's, whose commit
 * wants the CPU) reads at once.
 * The other workers wait on a condition variable, not in the kernel; one
 * is started when a hand-over finds none waiting, up to cf_threads, and
 * none exits before the session ends. A request that waits without
 * being one of those (a cache miss's read from the image) holds up the
 * ones that come after it until the next hand-over, as in a
 * single-threaded loop.
 *
 * Invariants
 *   (1) Either cfuse_mount fails with nothing open or mounted, or it
 *       returns a mounted volume that cfuse_unmount will commit.
 *   (2) cairn_close runs after the loop returned (no request in flight)
 *       and after the unmount (no request can come).
 *   (3) libfuse's messages are captured (the last one, for the caller's
 *       error line) until the volume is mounted; printed with -d.
 *   (4) At most one worker reads /dev/fuse; while the session runs, one
 *       worker is the reader or about to become it (cl_reading, or a
 *       worker that is not waiting on cl_cond will take it).
 */
#include "fuse/fuse_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/fuse.h>
#include <poll.h>
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
#define CFUSE_POLL_EVERY  16 /* metadata requests served in a row between polls */

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
	f->cf_want_wbcache = o->cfo_writeback_cache;
	f->cf_threads = o->cfo_threads ? o->cfo_threads : cfuse_default_threads();
	f->cf_spin_ns = (uint64_t)o->cfo_spin_us * 1000;
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
				      .coo_snapshot = o->cfo_snapshot,
				      .coo_checkpoint = o->cfo_checkpoint,
				      .coo_protect_s = o->cfo_protect_s};
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

/* ---- serving: the loop ----------------------------------------------------------------- */

static void *cfuse_worker_main(void *arg);

static int cfuse_loop_init(struct cfuse_loop *l, unsigned max)
{
	int err;

	memset(l, 0, sizeof(*l));
	l->cl_workers = calloc(max, sizeof(*l->cl_workers));
	if (!l->cl_workers)
		return -ENOMEM;
	l->cl_max = max;
	l->cl_started = 1; /* cfuse_run's thread */
	err = -pthread_mutex_init(&l->cl_lock, NULL);
	if (!err) {
		err = -pthread_cond_init(&l->cl_cond, NULL);
		if (err)
			pthread_mutex_destroy(&l->cl_lock);
	}
	if (err)
		free(l->cl_workers);
	return err;
}

static void cfuse_loop_destroy(struct cfuse_loop *l)
{
	pthread_cond_destroy(&l->cl_cond);
	pthread_mutex_destroy(&l->cl_lock);
	free(l->cl_workers);
}

/*
 * Should the reader let another worker read before it serves @buf? The
 * loop's design above; *@unpolled counts the requests this worker served
 * since its last poll.
 */
static bool cfuse_loop_hand_off(struct fuse_session *se, const struct fuse_buf *buf,
				unsigned *unpolled)
{
	const struct fuse_in_header *in = buf->mem;
	struct pollfd pfd = {.fd = fuse_session_fd(se), .events = POLLIN};

	if (!(buf->flags & FUSE_BUF_IS_FD) && buf->size >= sizeof(*in)) {
		switch (in->opcode) {
		case FUSE_FORGET:
		case FUSE_BATCH_FORGET:
		case FUSE_INTERRUPT:
		case FUSE_RELEASE:
		case FUSE_RELEASEDIR:
		case FUSE_FLUSH:
			return false;
		case FUSE_FSYNC:
		case FUSE_FSYNCDIR:
		case FUSE_IOCTL:
			return true;
		case FUSE_READ:
		case FUSE_WRITE:
			break;
		default:
			if (++*unpolled < CFUSE_POLL_EVERY)
				return false;
			break;
		}
	}
	*unpolled = 0;
	return poll(&pfd, 1, 0) > 0 && (pfd.revents & POLLIN);
}

/* CLOCK_MONOTONIC in nanoseconds. */
static uint64_t cfuse_now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/*
 * The reader's read of the next request into @buf (as
 * fuse_session_receive_buf). With cf_spin_ns the device is non-blocking
 * (cfuse_run): a reader that has just served a request (@spin) tries
 * again for up to cf_spin_ns, so that a request that comes meanwhile
 * costs one read(2); then, and at once for any other reader, it sleeps
 * in poll(2) until one waits. -EINTR: interrupted, still the reader.
 */
static int cfuse_loop_receive(struct cfuse *f, struct fuse_buf *buf, bool spin)
{
	struct fuse_session *se = f->cf_se;
	struct pollfd pfd = {.fd = fuse_session_fd(se), .events = POLLIN};
	uint64_t until;
	int res;

	if (!f->cf_spin_ns)
		return fuse_session_receive_buf(se, buf); /* a blocking read */
	until = spin ? cfuse_now_ns() + f->cf_spin_ns : 0;
	for (;;) {
		res = fuse_session_receive_buf(se, buf);
		if (res != -EAGAIN)
			return res; /* 0 once the session ended (ENODEV) */
		if (until && cfuse_now_ns() < until)
			continue;
		until = 0;
		if (poll(&pfd, 1, -1) < 0) {
			if (errno != EINTR)
				return -errno;
			return fuse_session_exited(se) ? 0 : -EINTR;
		}
	}
}

/* Someone must read: wake a waiting worker, or start one; cl_lock held. */
static void cfuse_loop_wake_one(struct cfuse *f)
{
	struct cfuse_loop *l = &f->cf_loop;

	if (l->cl_idle) {
		pthread_cond_signal(&l->cl_cond);
		return;
	}
	if (l->cl_started == l->cl_max || fuse_session_exited(f->cf_se))
		return; /* the reader's place waits for a worker that ends its request */
	/* the new worker inherits the mask: SIGHUP, SIGINT, SIGTERM blocked */
	if (!pthread_create(&l->cl_workers[l->cl_started], NULL, cfuse_worker_main, f))
		l->cl_started++;
}

/*
 * One worker: wait for the reader's place, read, hand the reading over
 * or not, serve, and again until the session ends (invariant 4).
 */
static void cfuse_loop_work(struct cfuse *f)
{
	struct cfuse_loop *l = &f->cf_loop;
	struct fuse_session *se = f->cf_se;
	struct fuse_buf buf = {.mem = NULL};
	bool reader = false, served = false, hand_off;
	unsigned unpolled = 0;
	int res;

	pthread_mutex_lock(&l->cl_lock);
	for (;;) {
		if (!reader) {
			l->cl_idle++;
			while (l->cl_reading && !fuse_session_exited(se))
				pthread_cond_wait(&l->cl_cond, &l->cl_lock);
			l->cl_idle--;
			if (fuse_session_exited(se))
				break;
			l->cl_reading = reader = true;
			l->cl_reader = pthread_self();
			served = false;
		}
		pthread_mutex_unlock(&l->cl_lock);
		/* spin unless just woken: nobody waits on a hand-over's reader */
		res = cfuse_loop_receive(f, &buf, served); /* 0: the session ended */
		hand_off = res > 0 && cfuse_loop_hand_off(se, &buf, &unpolled);
		pthread_mutex_lock(&l->cl_lock);
		if (res == -EINTR)
			continue; /* still the reader */
		if (res <= 0) {
			if (res < 0 && !l->cl_err)
				l->cl_err = res;
			fuse_session_exit(se);
			break;
		}
		if (hand_off) {
			l->cl_reading = reader = false;
			cfuse_loop_wake_one(f);
		}
		pthread_mutex_unlock(&l->cl_lock);
		fuse_session_process_buf(se, &buf);
		served = true;
		pthread_mutex_lock(&l->cl_lock);
	}
	if (reader)
		l->cl_reading = false;
	pthread_cond_broadcast(&l->cl_cond); /* the others see the end */
	pthread_mutex_unlock(&l->cl_lock);
	free(buf.mem);
}

static void *cfuse_worker_main(void *arg)
{
	cfuse_loop_work(arg);
	return NULL;
}

/* After cfuse_run's own cfuse_loop_work: the others end too. */
static void cfuse_loop_join(struct cfuse_loop *l)
{
	pthread_t t;

	/* only a running worker starts one: none once all are joined */
	for (unsigned i = 1;; i++) {
		pthread_mutex_lock(&l->cl_lock);
		if (i >= l->cl_started) {
			pthread_mutex_unlock(&l->cl_lock);
			return;
		}
		t = l->cl_workers[i];
		pthread_mutex_unlock(&l->cl_lock);
		pthread_join(t, NULL);
	}
}

/* The session ended: wake the waiting workers and the reader. */
static void cfuse_loop_wake(struct cfuse_loop *l)
{
	pthread_mutex_lock(&l->cl_lock);
	pthread_cond_broadcast(&l->cl_cond);
	if (l->cl_reading)
		pthread_kill(l->cl_reader, CFUSE_WAKE_SIGNAL);
	pthread_mutex_unlock(&l->cl_lock);
}

/* ---- serving: signals ---------------------------------------------------------------------- */

static void cfuse_wake_handler(int sig)
{
	(void)sig; /* only interrupts the reader's read(2) */
}

/* Write the kernel's dirty pages back, end the session, wake the workers. */
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
		cfuse_loop_wake(&f->cf_loop);
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
	struct cfuse_loop *l = &f->cf_loop;
	int ret = cfuse_loop_init(l, f->cf_threads);

	if (ret)
		return ret;
	if (f->cf_spin_ns) { /* cfuse_loop_receive */
		int fd = fuse_session_fd(f->cf_se), fl = fcntl(fd, F_GETFL);

		if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
			f->cf_spin_ns = 0; /* blocking reads, then: slower, not wrong */
	}
	ret = cfuse_signals_start(f);
	if (!ret) {
		cfuse_loop_work(f);
		cfuse_loop_join(l);
		ret = l->cl_err;
	}
	cfuse_signals_stop(f); /* no cfuse_loop_wake after this */
	cfuse_loop_destroy(l);
	fuse_session_reset(f->cf_se);
	return ret;
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

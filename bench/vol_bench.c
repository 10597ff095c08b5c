/*
 * vol_bench.c - benchmark of the volume (src/vol/) on an image file on
 * the real disk: commit throughput against the raw bandwidth of the same
 * file, and the latency of vol_sync with concurrent syncers.
 *
 * Figures (bench/README.md says how to read them):
 *
 *   raw            pwrite 1 MiB chunks over the first --mib MiB of the
 *                  image, then one fdatasync: the ceiling the commit
 *                  figures are compared with ("x raw"). The chunks come
 *                  from one 1 MiB buffer, hot in the CPU's cache.
 *   raw-cold       the same from a 256 MiB source (touched first, untimed)
 *                  read in turn, so every chunk comes from memory, as a
 *                  volume's committed data does ("x cold").
 *   raw-sync       one thread loops for --seconds: pwrite one 4 KiB
 *                  block of the image, then fdatasync; the floor of a
 *                  sync's latency on this file (run with the sync phase
 *                  when the raw phase runs too).
 *   commit         vol_mkfs on the image (default segment size), vol_open
 *                  with a --cache block cache and a delta dirty limit of
 *                  D blocks (voo_max_dirty, one figure per D of
 *                  --deltas), the warm-up (5), then one thread writes
 *                  --mib MiB of 4 KiB blocks of one owner at sequential
 *                  indexes, in transactions of --txn blocks, then
 *                  vol_sync. MiB/s is the data made durable over the time
 *                  from the first vol_txn_begin to the return of vol_sync.
 *   sync           vol_mkfs, vol_open (default dirty limit), the warm-up
 *                  (5), then T threads (--threads), each on an owner of its own,
 *                  loop: a transaction writing one 4 KiB block (the next
 *                  index), then vol_sync. Latency is that of vol_sync
 *                  alone; syncs/s counts whole loops of all threads;
 *                  commits/sync is the delta system's commits over the
 *                  syncs of the figure (group commit: < 1 when several
 *                  syncers share a commit).
 *   burst          as sync, but the T threads go in rounds: each writes
 *                  its block, all meet at a barrier, then all call
 *                  vol_sync at once. A round's latency is its slowest
 *                  sync, from the barrier; commits/round is the delta
 *                  system's commits over the rounds. T syncs issued
 *                  together should cost about what one does: round
 *                  p50 x T1 near 1.
 *   raw-burst      the burst rounds on the image file itself, with the
 *                  raw phase: each thread pwrites one 4 KiB block of its
 *                  own part of the first --mib MiB, then all fdatasync
 *                  the one descriptor at once.
 *
 * Method
 *   (1) One image, created sparse by the run (it must not exist), used
 *       by every figure and removed at the end unless --keep. Every
 *       commit and sync figure formats it again (vol_mkfs), so each
 *       starts on an empty volume and writes the same range of the file.
 *   (2) Before the first figure the range the figures write is written
 *       once (the prefill, untimed but printed), so that every figure
 *       overwrites allocated blocks whose pages are in the page cache:
 *       raw and volume figures run in the same state, whatever their
 *       order. Before every figure: sync(2); with --drop-caches the page
 *       cache is dropped too (see bench/README.md: on a VM that hands
 *       free memory back to the host, dropping makes the next figure pay
 *       the host's page faults).
 *   (3) Times are CLOCK_MONOTONIC; cpu is the process's user + system
 *       time over the figure (getrusage), kernel writeback threads not
 *       included; faults its minor + major page faults, csw its
 *       voluntary + involuntary context switches. other-cpu is the busy
 *       time of all CPUs (/proc/stat) minus the process's: what else ran
 *       during the figure, to tell a disturbed figure from a slow one.
 *   (4) Sync figures run for --seconds after their T threads and the
 *       main thread meet at a barrier; every vol_sync is timed and p50
 *       and p99 are nearest-rank percentiles over all threads' samples.
 *   (5) The warm-up: before a volume figure is timed, --cache blocks of
 *       another owner are written and synced, so every buffer of the
 *       cache has been touched once (its first-touch page faults are not
 *       timed) and the cache is full, as in a volume that has been up
 *       for a while.
 *
 * Not a test: it asserts nothing about speed and meson test does not run it.
 */
#include "bench_util.h"
#include "bdev/bdev.h"
#include "delta/delta.h"
#include "util/util.h"
#include "vol/vol.h"

#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define BENCH_BLOCK	  4096 /* bytes per block */
#define BENCH_MIB	  (1024 * 1024)
#define BENCH_CHUNK	  BENCH_MIB	  /* raw: bytes per pwrite */
#define BENCH_COLD_MIB	  256		  /* raw-cold: a source far larger than the CPU's caches */
#define BENCH_OWNER	  VOL_FIRST_OWNER /* commit figures' owner */
#define BENCH_WARM_OWNER  (VOL_FIRST_OWNER + 1000) /* the warm-up's (5) */
#define BENCH_IMAGE	  "/var/tmp/cairn-bench.img"
#define BENCH_SIZE	  (4ULL << 30) /* default image size */
#define BENCH_MAX_THREADS 64
#define BENCH_MAX_LIST	  16 /* entries of --deltas, --threads */

/* ---- options and results ------------------------------------------------ */

struct bench_opts {
	const char *bo_image;
	uint64_t bo_size;		    /* bytes of the image */
	uint64_t bo_mib;		    /* data of a raw or commit figure */
	uint32_t bo_cache;		    /* voo_cache_blocks */
	uint32_t bo_txn;		    /* blocks per transaction (commit figures) */
	uint32_t bo_seg_blocks;		    /* lfo_seg_blocks; 0: the default */
	uint32_t bo_deltas[BENCH_MAX_LIST]; /* voo_max_dirty per commit figure */
	unsigned bo_ndeltas;
	unsigned bo_threads[BENCH_MAX_LIST]; /* T per sync figure */
	unsigned bo_nthreads;
	double bo_seconds; /* per sync figure */
	bool bo_keep;
	bool bo_drop;				   /* --drop-caches */
	bool bo_marks;				   /* --timestamps */
	bool bo_raw, bo_commit, bo_sync, bo_burst; /* phases to run (--phases) */
};

/* CPU time of the machine and of this process at the start of a figure (3). */
struct bench_load {
	uint64_t bl_ticks; /* busy ticks of all CPUs (/proc/stat) */
	double bl_self_s;  /* this process's cpu */
};

struct bench_raw {
	double rr_write_s; /* the pwrites */
	double rr_sync_s;  /* the fdatasync */
	double rr_mib_s;
	double rr_other_s;     /* cpu of the rest of the machine (3) */
	uint64_t rr_t0, rr_t1; /* ns, CLOCK_MONOTONIC: the timed span */
};

struct bench_commit {
	uint32_t cr_max_dirty;
	uint64_t cr_mib;    /* data written */
	double cr_s;	    /* first vol_txn_begin to vol_sync's return */
	double cr_begin_s;  /* in vol_txn_begin (throttle and joins) */
	double cr_front_s;  /* until the last vol_txn_end */
	double cr_cpu_s;    /* process cpu (3) */
	double cr_other_s;  /* cpu of the rest of the machine (3) */
	uint64_t cr_faults; /* page faults (3) */
	double cr_mib_s;
	uint64_t cr_commits;   /* delta_stats */
	uint64_t cr_written;   /* log blocks consumed (whole segments taken) */
	uint64_t cr_t0, cr_t1; /* ns, CLOCK_MONOTONIC: the timed span */
};

struct bench_sync {
	const char *sr_name; /* "sync", "burst" or "raw-sync" */
	unsigned sr_threads;
	uint64_t sr_syncs;   /* vol_sync calls of the bench threads */
	uint64_t sr_commits; /* delta_stats */
	double sr_syncs_s;   /* loops of all threads over the wall time */
	double sr_p50_us, sr_p99_us, sr_mean_us, sr_max_us;
	double sr_cpu_s;
	double sr_other_s; /* cpu of the rest of the machine (3) */
	uint64_t sr_faults;
	uint64_t sr_csw;       /* context switches (3) */
	uint64_t sr_t0, sr_t1; /* ns, CLOCK_MONOTONIC: the timed span */
	uint64_t sr_rounds;    /* burst: rounds, and their latency (slowest sync) */
	double sr_round_p50_us, sr_round_p99_us;
};

struct bench_report {
	struct bench_raw rp_raw;     /* hot source */
	struct bench_raw rp_rawcold; /* cold source */
	bool rp_has_raw;
	struct bench_commit rp_commit[BENCH_MAX_LIST];
	unsigned rp_ncommit;
	struct bench_sync rp_rawsync;
	bool rp_has_rawsync;
	struct bench_sync rp_sync[BENCH_MAX_LIST];
	unsigned rp_nsync;
	struct bench_sync rp_burst[BENCH_MAX_LIST];
	unsigned rp_nburst;
	struct bench_sync rp_rawburst[BENCH_MAX_LIST];
	unsigned rp_nrawburst;
};

/* ---- clocks, the page cache, the image ----------------------------------- */

static double bench_secs(uint64_t t0, uint64_t t1)
{
	return (double)(t1 - t0) / 1e9;
}

/* User + system time of the whole process, in seconds. */
static double bench_cpu_s(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
	       (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/* --timestamps: the timed span of a figure, for perf report --time. */
static void bench_mark(const struct bench_opts *o, const char *what, uint64_t t0, uint64_t t1)
{
	if (o->bo_marks)
		printf("# %s timed from %.6f to %.6f (CLOCK_MONOTONIC s)\n", what, (double)t0 / 1e9,
		       (double)t1 / 1e9);
}

/* Minor + major page faults of the whole process. */
static uint64_t bench_faults(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (uint64_t)(ru.ru_minflt + ru.ru_majflt);
}

/* Voluntary + involuntary context switches of the whole process. */
static uint64_t bench_csw(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (uint64_t)(ru.ru_nvcsw + ru.ru_nivcsw);
}

/* Busy ticks of all CPUs since boot: user, nice, system, irq, softirq. */
static uint64_t bench_machine_ticks(void)
{
	unsigned long long v[7] = {0};
	FILE *f = fopen("/proc/stat", "re");

	if (!f)
		return 0;
	if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4],
		   &v[5], &v[6]) != 7)
		memset(v, 0, sizeof(v));
	fclose(f);
	return v[0] + v[1] + v[2] + v[5] + v[6];
}

static void bench_load_begin(struct bench_load *l)
{
	l->bl_ticks = bench_machine_ticks();
	l->bl_self_s = bench_cpu_s();
}

/*
 * CPU seconds the rest of the machine used since @l began: other
 * processes, and kernel threads (writeback workers included). Anything
 * well above 0 means the figure shared the CPUs.
 */
static double bench_load_other_s(const struct bench_load *l)
{
	double all = (double)(bench_machine_ticks() - l->bl_ticks) / (double)sysconf(_SC_CLK_TCK);
	double other = all - (bench_cpu_s() - l->bl_self_s);

	return other > 0 ? other : 0;
}

static void bench_sleep(double seconds)
{
	struct timespec ts = {
	    .tv_sec = (time_t)seconds,
	    .tv_nsec = (long)((seconds - (double)(time_t)seconds) * 1e9),
	};

	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

/* Method (2): write back everything; drop the page cache if asked. */
static void bench_settle(const struct bench_opts *o)
{
	static bool warned;
	int fd;

	sync();
	if (!o->bo_drop)
		return;
	fd = open("/proc/sys/vm/drop_caches", O_WRONLY | O_CLOEXEC);
	if (fd >= 0 && write(fd, "3", 1) == 1) {
		close(fd);
		return;
	}
	if (fd >= 0)
		close(fd);
	if (!warned)
		fprintf(stderr, "warning: cannot drop the page cache (not root?): figures may "
				"inherit cached pages\n");
	warned = true;
}

/* A new volume on the image, opened with dirty limit @max_dirty. */
static int bench_vol_create(const struct bench_opts *o, uint32_t max_dirty, struct vol **out)
{
	const struct vol_mkfs_opts mo = {.vmo_log = {.lfo_seg_blocks = o->bo_seg_blocks}};
	const struct vol_open_opts oo = {.voo_cache_blocks = o->bo_cache,
					 .voo_max_dirty = max_dirty};
	struct bdev *d;
	int err;

	err = bdev_open_file(o->bo_image, BENCH_BLOCK, 0, 0, &d);
	if (err)
		return err;
	err = vol_mkfs(d, &mo);
	if (!err)
		err = vol_open(d, &oo, out);
	if (err)
		bdev_close(d);
	return err;
}

/* ---- raw bandwidth of the image ------------------------------------------- */

static int bench_pwrite_all(int fd, const unsigned char *p, size_t len, off_t off)
{
	while (len) {
		ssize_t n = pwrite(fd, p, len, off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		p += n;
		len -= (size_t)n;
		off += n;
	}
	return 0;
}

/*
 * pwrite @mib MiB from offset 0 of the image in 1 MiB chunks, then
 * fdatasync; the times of both into @res. The chunks come from a source
 * of @src_mib MiB (touched first, untimed), in turn: 1 MiB stays in the
 * CPU's cache, BENCH_COLD_MIB does not, like the data a volume commits.
 */
static int bench_raw_write(const struct bench_opts *o, uint64_t mib, uint64_t src_mib,
			   struct bench_raw *res)
{
	unsigned char *src, *chunk;
	uint64_t t0, t1, t2;
	int fd, err = 0;

	src = aligned_alloc(BENCH_BLOCK, src_mib * BENCH_CHUNK);
	if (!src)
		return -ENOMEM;
	memset(src, 0xa5, src_mib * BENCH_CHUNK);
	fd = open(o->bo_image, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		err = -errno;
		goto out_free;
	}
	t0 = bench_now_ns();
	for (uint64_t i = 0; i < mib && !err; i++) {
		chunk = src + (i % src_mib) * BENCH_CHUNK;
		memcpy(chunk, &i, sizeof(i)); /* every chunk different */
		err = bench_pwrite_all(fd, chunk, BENCH_CHUNK, (off_t)(i * BENCH_CHUNK));
	}
	t1 = bench_now_ns();
	if (!err && fdatasync(fd) < 0)
		err = -errno;
	t2 = bench_now_ns();
	res->rr_t0 = t0;
	res->rr_t1 = t2;
	res->rr_write_s = bench_secs(t0, t1);
	res->rr_sync_s = bench_secs(t1, t2);
	res->rr_mib_s = (double)mib / bench_secs(t0, t2);
	close(fd);
out_free:
	free(src);
	return err;
}

/* The MiB the figures write: the warm-up, and --mib with room for metadata. */
static uint64_t bench_prefill_mib(const struct bench_opts *o)
{
	uint64_t mib = (uint64_t)o->bo_cache * BENCH_BLOCK / BENCH_MIB + 2 * o->bo_mib;

	return MIN(mib, o->bo_size / BENCH_MIB);
}

/* Create the sparse image and prefill it (method (1), (2)); -EEXIST if
 * something is there. */
static int bench_image_create(const struct bench_opts *o)
{
	struct bench_raw pre;
	struct bdev *d;
	int err;

	if (access(o->bo_image, F_OK) == 0)
		return -EEXIST;
	err = bdev_open_file(o->bo_image, BENCH_BLOCK, o->bo_size / BENCH_BLOCK, BDEV_CREATE, &d);
	if (err)
		return err;
	bdev_close(d);
	err = bench_raw_write(o, bench_prefill_mib(o), 1, &pre);
	if (err)
		return err;
	printf("# prefill MiB=%" PRIu64 " s=%.2f MiB/s=%.1f (first write of the sparse image)\n",
	       bench_prefill_mib(o), pre.rr_write_s + pre.rr_sync_s, pre.rr_mib_s);
	fflush(stdout);
	return 0;
}

/* One raw figure, from a source of @src_mib MiB. */
static int bench_raw_one(const struct bench_opts *o, const char *name, uint64_t src_mib,
			 struct bench_raw *res)
{
	struct bench_load load;
	int err;

	bench_settle(o);
	bench_load_begin(&load);
	err = bench_raw_write(o, o->bo_mib, src_mib, res);
	if (err)
		return err;
	res->rr_other_s = bench_load_other_s(&load);
	bench_mark(o, name, res->rr_t0, res->rr_t1);
	printf("%s MiB=%" PRIu64 " source-MiB=%" PRIu64 " s=%.2f MiB/s=%.1f pwrite-s=%.2f"
	       " fdatasync-s=%.2f other-cpu-s=%.2f\n",
	       name, o->bo_mib, src_mib, res->rr_write_s + res->rr_sync_s, res->rr_mib_s,
	       res->rr_write_s, res->rr_sync_s, res->rr_other_s);
	fflush(stdout);
	return 0;
}

/* The raw figures: a hot source, then a cold one. */
static int bench_raw_run(const struct bench_opts *o, struct bench_report *rep)
{
	int err = bench_raw_one(o, "raw", 1, &rep->rp_raw);

	if (!err)
		err =
		    bench_raw_one(o, "raw-cold", MIN(BENCH_COLD_MIB, o->bo_mib), &rep->rp_rawcold);
	if (!err)
		rep->rp_has_raw = true;
	return err;
}

/* ---- commit throughput ------------------------------------------------------ */

/*
 * One transaction: blocks @first.. of @owner, @n of them, each stamped
 * with its index. Adds the time spent in vol_txn_begin to *begin_ns.
 */
static int bench_commit_txn(struct vol *v, uint64_t owner, unsigned char *block, uint64_t first,
			    uint32_t n, uint64_t *begin_ns)
{
	uint64_t t0 = bench_now_ns();
	struct vol_txn t;
	int err;

	err = vol_txn_begin(v, n, 0, &t);
	*begin_ns += bench_now_ns() - t0;
	if (err)
		return err;
	for (uint64_t i = first; i < first + n && !err; i++) {
		memcpy(block, &i, sizeof(i));
		err = vol_write(&t, owner, i, block);
	}
	vol_txn_end(&t);
	return err;
}

/* The warm-up (5): --cache blocks of BENCH_WARM_OWNER, then vol_sync. */
static int bench_vol_warm(const struct bench_opts *o, struct vol *v)
{
	uint64_t begin_ns = 0;
	unsigned char *block;
	int err = 0;

	block = aligned_alloc(BENCH_BLOCK, BENCH_BLOCK);
	if (!block)
		return -ENOMEM;
	memset(block, 0x77, BENCH_BLOCK);
	for (uint64_t i = 0; i < o->bo_cache && !err; i += o->bo_txn)
		err = bench_commit_txn(v, BENCH_WARM_OWNER, block, i,
				       (uint32_t)MIN(o->bo_txn, o->bo_cache - i), &begin_ns);
	if (!err)
		err = vol_sync(v);
	free(block);
	return err;
}

/* Write --mib MiB in transactions, then vol_sync; fills @res's times. */
static int bench_commit_write(const struct bench_opts *o, struct vol *v, struct bench_commit *res)
{
	uint64_t nblocks = o->bo_mib * (BENCH_MIB / BENCH_BLOCK), begin_ns = 0, t0, t1, t2;
	unsigned char *block;
	int err = 0;

	block = aligned_alloc(BENCH_BLOCK, BENCH_BLOCK);
	if (!block)
		return -ENOMEM;
	memset(block, 0x5a, BENCH_BLOCK);
	t0 = bench_now_ns();
	for (uint64_t i = 0; i < nblocks && !err; i += o->bo_txn)
		err = bench_commit_txn(v, BENCH_OWNER, block, i,
				       (uint32_t)MIN(o->bo_txn, nblocks - i), &begin_ns);
	t1 = bench_now_ns();
	if (!err)
		err = vol_sync(v);
	t2 = bench_now_ns();
	free(block);
	res->cr_t0 = t0;
	res->cr_t1 = t2;
	res->cr_s = bench_secs(t0, t2);
	res->cr_front_s = bench_secs(t0, t1);
	res->cr_begin_s = (double)begin_ns / 1e9;
	res->cr_mib_s = (double)o->bo_mib / res->cr_s;
	return err;
}

static void bench_commit_print(const struct bench_opts *o, const struct bench_report *rep,
			       const struct bench_commit *r)
{
	printf("commit max-dirty=%" PRIu32 " MiB=%" PRIu64 " s=%.2f MiB/s=%.1f", r->cr_max_dirty,
	       o->bo_mib, r->cr_s, r->cr_mib_s);
	if (rep->rp_has_raw)
		printf(" x-raw=%.2f x-cold=%.2f", r->cr_mib_s / rep->rp_raw.rr_mib_s,
		       r->cr_mib_s / rep->rp_rawcold.rr_mib_s);
	printf(" commits=%" PRIu64 " log-MiB=%.0f front-s=%.2f begin-s=%.2f cpu-s=%.2f"
	       " faults=%" PRIu64 " other-cpu-s=%.2f\n",
	       r->cr_commits, (double)r->cr_written * BENCH_BLOCK / BENCH_MIB, r->cr_front_s,
	       r->cr_begin_s, r->cr_cpu_s, r->cr_faults, r->cr_other_s);
	fflush(stdout);
}

/* The timed part of a commit figure, on @v warmed up; counters into @res. */
static int bench_commit_measure(const struct bench_opts *o, struct vol *v, struct bench_commit *res)
{
	struct delta_stats before, after;
	struct log_space sp0, sp1;
	struct bench_load load;
	uint64_t faults0;
	int err;

	vol_delta_stats(v, &before);
	vol_space(v, &sp0);
	bench_settle(o);
	bench_load_begin(&load);
	faults0 = bench_faults();
	err = bench_commit_write(o, v, res);
	res->cr_cpu_s = bench_cpu_s() - load.bl_self_s;
	res->cr_other_s = bench_load_other_s(&load);
	res->cr_faults = bench_faults() - faults0;
	vol_delta_stats(v, &after);
	vol_space(v, &sp1);
	res->cr_commits = after.ds_commits - before.ds_commits;
	res->cr_written = sp1.sp_written - sp0.sp_written;
	if (after.ds_underestimates != before.ds_underestimates)
		fprintf(stderr, "warning: max-dirty=%" PRIu32 ": %" PRIu64 " reservations short\n",
			res->cr_max_dirty, after.ds_underestimates - before.ds_underestimates);
	return err;
}

/* One commit figure, on a new volume with dirty limit @max_dirty. */
static int bench_commit_figure(const struct bench_opts *o, struct bench_report *rep,
			       uint32_t max_dirty)
{
	struct bench_commit *res = &rep->rp_commit[rep->rp_ncommit];
	struct vol *v;
	int err, cerr;

	err = bench_vol_create(o, max_dirty, &v);
	if (err)
		return err;
	*res = (struct bench_commit){.cr_max_dirty = max_dirty, .cr_mib = o->bo_mib};
	err = bench_vol_warm(o, v);
	if (!err)
		err = bench_commit_measure(o, v, res);
	cerr = vol_close(v);
	err = err ? err : cerr;
	if (err)
		return err;
	rep->rp_ncommit++;
	bench_mark(o, "commit", res->cr_t0, res->cr_t1);
	bench_commit_print(o, rep, res);
	return 0;
}

static int bench_commit_run(const struct bench_opts *o, struct bench_report *rep)
{
	int err = 0;

	for (unsigned i = 0; i < o->bo_ndeltas && !err; i++)
		err = bench_commit_figure(o, rep, o->bo_deltas[i]);
	return err;
}

/* ---- sync latency -------------------------------------------------------------- */

/* Shared by the threads of one sync figure. */
struct bench_run {
	struct vol *br_vol;	    /* immutable during the run */
	int br_fd;		    /* raw-burst: the image, written directly; else -1 */
	uint64_t br_stride;	    /* raw-burst: blocks of the image per thread */
	pthread_barrier_t br_start; /* T threads + main */
	atomic_bool br_stop;	    /* raised by main when time is up */
	bool br_burst;		    /* immutable: the burst figure's rounds */
	pthread_barrier_t br_round; /* burst: the T threads, twice a round */
	atomic_bool br_go;	    /* burst: the round goes on (set between barriers) */
	atomic_bool br_failed;	    /* burst: a thread's write or sync failed */
};

/* One thread: written by it alone, read after join. */
struct bench_thread {
	pthread_t bt_tid;
	struct bench_run *bt_run;
	unsigned bt_id;
	uint64_t *bt_lat; /* ns of each vol_sync */
	size_t bt_n, bt_cap;
	uint64_t bt_t0, bt_t1; /* ns, the loop */
	int bt_err;
};

static int bench_lat_push(struct bench_thread *t, uint64_t ns)
{
	if (t->bt_n == t->bt_cap) {
		size_t cap = t->bt_cap ? 2 * t->bt_cap : 4096;
		uint64_t *lat = realloc(t->bt_lat, cap * sizeof(*lat));

		if (!lat)
			return -ENOMEM;
		t->bt_lat = lat;
		t->bt_cap = cap;
	}
	t->bt_lat[t->bt_n++] = ns;
	return 0;
}

/*
 * A one-block transaction at @index of the thread's own owner; raw-burst:
 * a pwrite of one block in the thread's own part of the image.
 */
static int bench_sync_write(struct bench_thread *t, unsigned char *block, uint64_t index)
{
	struct bench_run *r = t->bt_run;
	struct vol_txn txn;
	int err;

	if (r->br_fd >= 0)
		return bench_pwrite_all(
		    r->br_fd, block, BENCH_BLOCK,
		    (off_t)((t->bt_id * r->br_stride + index % r->br_stride) * BENCH_BLOCK));
	err = vol_txn_begin(t->bt_run->br_vol, 1, 0, &txn);
	if (err)
		return err;
	memcpy(block, &index, sizeof(index));
	err = vol_write(&txn, BENCH_OWNER + 1 + t->bt_id, index, block);
	vol_txn_end(&txn);
	return err;
}

/* A vol_sync (raw-burst: an fdatasync), timed. */
static int bench_sync_timed(struct bench_thread *t)
{
	struct bench_run *r = t->bt_run;
	uint64_t t0 = bench_now_ns();
	int err = r->br_fd >= 0 ? (fdatasync(r->br_fd) < 0 ? -errno : 0) : vol_sync(r->br_vol);

	return err ? err : bench_lat_push(t, bench_now_ns() - t0);
}

/* One loop: a one-block transaction at @index, then a timed vol_sync. */
static int bench_sync_once(struct bench_thread *t, unsigned char *block, uint64_t index)
{
	int err = bench_sync_write(t, block, index);

	return err ? err : bench_sync_timed(t);
}

/*
 * The burst figure's rounds: write, meet, sync together. Whether a round
 * starts is decided once, by the barrier's serial thread, so every
 * thread runs the same rounds and none is left waiting at a barrier.
 */
static int bench_burst_rounds(struct bench_thread *t, unsigned char *block)
{
	struct bench_run *r = t->bt_run;
	uint64_t index = 0;
	int err = 0, e;

	for (;;) {
		e = bench_sync_write(t, block, index++);
		if (e) {
			err = err ? err : e;
			atomic_store(&r->br_failed, true);
		}
		if (pthread_barrier_wait(&r->br_round) == PTHREAD_BARRIER_SERIAL_THREAD)
			atomic_store(&r->br_go,
				     !atomic_load(&r->br_stop) && !atomic_load(&r->br_failed));
		pthread_barrier_wait(&r->br_round);
		if (!atomic_load(&r->br_go))
			return err;
		e = bench_sync_timed(t);
		if (e) {
			err = err ? err : e;
			atomic_store(&r->br_failed, true);
		}
	}
}

static void *bench_sync_main(void *arg)
{
	struct bench_thread *t = arg;
	struct bench_run *r = t->bt_run;
	unsigned char block[BENCH_BLOCK];
	uint64_t index = 0;
	int err = 0;

	memset(block, 0x3c, sizeof(block));
	pthread_barrier_wait(&r->br_start);
	t->bt_t0 = bench_now_ns();
	if (r->br_burst)
		err = bench_burst_rounds(t, block);
	while (!r->br_burst && !err && !atomic_load_explicit(&r->br_stop, memory_order_relaxed))
		err = bench_sync_once(t, block, index++);
	t->bt_t1 = bench_now_ns();
	t->bt_err = err;
	return NULL;
}

/* Start @n threads on @r, let them run --seconds, stop and join them. */
static int bench_sync_threads(const struct bench_opts *o, struct bench_run *r,
			      struct bench_thread *ts, unsigned n)
{
	int err = 0;

	pthread_barrier_init(&r->br_start, NULL, n + 1);
	pthread_barrier_init(&r->br_round, NULL, n);
	atomic_init(&r->br_stop, false);
	atomic_init(&r->br_go, true);
	atomic_init(&r->br_failed, false);
	for (unsigned i = 0; i < n; i++) {
		ts[i] = (struct bench_thread){.bt_run = r, .bt_id = i};
		if (pthread_create(&ts[i].bt_tid, NULL, bench_sync_main, &ts[i])) {
			fprintf(stderr, "vol_bench: cannot create thread %u\n", i);
			exit(1); /* the barrier would never open */
		}
	}
	pthread_barrier_wait(&r->br_start);
	bench_sleep(o->bo_seconds);
	atomic_store(&r->br_stop, true);
	for (unsigned i = 0; i < n; i++) {
		pthread_join(ts[i].bt_tid, NULL);
		err = err ? err : ts[i].bt_err;
	}
	pthread_barrier_destroy(&r->br_start);
	pthread_barrier_destroy(&r->br_round);
	return err;
}

static int bench_cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

/* Nearest-rank percentile @p of @n sorted samples, in µs. */
static double bench_pct_us(const uint64_t *s, size_t n, unsigned p)
{
	size_t rank = (n * p + 99) / 100;

	return n ? (double)s[rank ? rank - 1 : 0] / 1e3 : 0;
}

/* Latency percentiles and rates of @n threads into @res (method (4)). */
static int bench_sync_stats(const struct bench_thread *ts, unsigned n, struct bench_sync *res)
{
	uint64_t t0 = UINT64_MAX, t1 = 0, sum = 0, *all;
	size_t total = 0, k = 0;

	for (unsigned i = 0; i < n; i++)
		total += ts[i].bt_n;
	all = malloc(MAX(total, 1) * sizeof(*all));
	if (!all)
		return -ENOMEM;
	for (unsigned i = 0; i < n; i++) {
		memcpy(all + k, ts[i].bt_lat, ts[i].bt_n * sizeof(*all));
		k += ts[i].bt_n;
		t0 = MIN(t0, ts[i].bt_t0);
		t1 = MAX(t1, ts[i].bt_t1);
	}
	qsort(all, total, sizeof(*all), bench_cmp_u64);
	for (size_t i = 0; i < total; i++)
		sum += all[i];
	res->sr_t0 = t0;
	res->sr_t1 = t1;
	res->sr_syncs = total;
	res->sr_syncs_s = total ? (double)total / bench_secs(t0, t1) : 0;
	res->sr_p50_us = bench_pct_us(all, total, 50);
	res->sr_p99_us = bench_pct_us(all, total, 99);
	res->sr_max_us = total ? (double)all[total - 1] / 1e3 : 0;
	res->sr_mean_us = total ? (double)sum / (double)total / 1e3 : 0;
	free(all);
	return 0;
}

/*
 * Burst: round k is sample k of every thread (all run the same rounds);
 * its latency is the slowest of them.
 */
static int bench_burst_stats(const struct bench_thread *ts, unsigned n, struct bench_sync *res)
{
	size_t rounds = ts[0].bt_n;
	uint64_t *worst;

	for (unsigned i = 1; i < n; i++)
		rounds = MIN(rounds, ts[i].bt_n);
	worst = calloc(MAX(rounds, 1), sizeof(*worst));
	if (!worst)
		return -ENOMEM;
	for (size_t k = 0; k < rounds; k++)
		for (unsigned i = 0; i < n; i++)
			worst[k] = MAX(worst[k], ts[i].bt_lat[k]);
	qsort(worst, rounds, sizeof(*worst), bench_cmp_u64);
	res->sr_rounds = rounds;
	res->sr_round_p50_us = bench_pct_us(worst, rounds, 50);
	res->sr_round_p99_us = bench_pct_us(worst, rounds, 99);
	free(worst);
	return 0;
}

static void bench_sync_print(const struct bench_sync *r)
{
	if (r->sr_rounds) {
		printf("burst threads=%u rounds=%" PRIu64 " round-p50-us=%.0f round-p99-us=%.0f"
		       " sync-p50-us=%.0f commits=%" PRIu64 " commits/round=%.3f cpu-s=%.2f"
		       " other-cpu-s=%.2f\n",
		       r->sr_threads, r->sr_rounds, r->sr_round_p50_us, r->sr_round_p99_us,
		       r->sr_p50_us, r->sr_commits, (double)r->sr_commits / (double)r->sr_rounds,
		       r->sr_cpu_s, r->sr_other_s);
		fflush(stdout);
		return;
	}
	printf("sync threads=%u syncs=%" PRIu64 " syncs/s=%.0f p50-us=%.0f p99-us=%.0f "
	       "mean-us=%.0f max-us=%.0f commits=%" PRIu64 " commits/sync=%.3f cpu-s=%.2f"
	       " faults=%" PRIu64 " csw/sync=%.1f other-cpu-s=%.2f\n",
	       r->sr_threads, r->sr_syncs, r->sr_syncs_s, r->sr_p50_us, r->sr_p99_us, r->sr_mean_us,
	       r->sr_max_us, r->sr_commits,
	       r->sr_syncs ? (double)r->sr_commits / (double)r->sr_syncs : 0, r->sr_cpu_s,
	       r->sr_faults, r->sr_syncs ? (double)r->sr_csw / (double)r->sr_syncs : 0,
	       r->sr_other_s);
	fflush(stdout);
}

/*
 * Run @n threads on @r (settled first) and fill @res: the process's and
 * the machine's CPU, faults, context switches, latencies and, for
 * bursts, the rounds'.
 */
static int bench_sync_measure(const struct bench_opts *o, struct bench_run *r, unsigned n,
			      struct bench_sync *res)
{
	struct bench_thread ts[BENCH_MAX_THREADS];
	struct bench_load load;
	uint64_t faults0, csw0;
	int err;

	bench_settle(o);
	bench_load_begin(&load);
	faults0 = bench_faults();
	csw0 = bench_csw();
	err = bench_sync_threads(o, r, ts, n);
	res->sr_cpu_s = bench_cpu_s() - load.bl_self_s;
	res->sr_other_s = bench_load_other_s(&load);
	res->sr_faults = bench_faults() - faults0;
	res->sr_csw = bench_csw() - csw0;
	if (!err)
		err = bench_sync_stats(ts, n, res);
	if (!err && r->br_burst)
		err = bench_burst_stats(ts, n, res);
	for (unsigned i = 0; i < n; i++)
		free(ts[i].bt_lat);
	return err;
}

/*
 * One sync figure with @n threads, or with @burst one burst figure, on a
 * new volume (default dirty limit).
 */
static int bench_sync_figure(const struct bench_opts *o, struct bench_report *rep, unsigned n,
			     bool burst)
{
	struct bench_sync *res =
	    burst ? &rep->rp_burst[rep->rp_nburst] : &rep->rp_sync[rep->rp_nsync];
	struct bench_run r = {.br_burst = burst, .br_fd = -1};
	struct delta_stats before, after;
	int err, cerr;

	err = bench_vol_create(o, 0, &r.br_vol);
	if (err)
		return err;
	*res = (struct bench_sync){.sr_name = burst ? "burst" : "sync", .sr_threads = n};
	err = bench_vol_warm(o, r.br_vol);
	if (err)
		goto out_close;
	vol_delta_stats(r.br_vol, &before);
	err = bench_sync_measure(o, &r, n, res);
	vol_delta_stats(r.br_vol, &after);
	res->sr_commits = after.ds_commits - before.ds_commits;
out_close:
	cerr = vol_close(r.br_vol);
	err = err ? err : cerr;
	if (err)
		return err;
	if (burst)
		rep->rp_nburst++;
	else
		rep->rp_nsync++;
	bench_mark(o, res->sr_name, res->sr_t0, res->sr_t1);
	bench_sync_print(res);
	return 0;
}

/*
 * raw-sync: the floor of a sync on this file. One thread loops for
 * --seconds: pwrite one 4 KiB block (the next one of the first --mib
 * MiB), then fdatasync; both are timed.
 */
static int bench_rawsync_loop(const struct bench_opts *o, int fd, struct bench_thread *t)
{
	uint64_t nblocks = o->bo_mib * (BENCH_MIB / BENCH_BLOCK), end, t0;
	unsigned char block[BENCH_BLOCK];
	int err = 0;

	memset(block, 0x3c, sizeof(block));
	t->bt_t0 = bench_now_ns();
	end = t->bt_t0 + (uint64_t)(o->bo_seconds * 1e9);
	for (uint64_t i = 0; !err && (t0 = bench_now_ns()) < end; i++) {
		err = bench_pwrite_all(fd, block, BENCH_BLOCK, (off_t)(i % nblocks * BENCH_BLOCK));
		if (!err && fdatasync(fd) < 0)
			err = -errno;
		if (!err)
			err = bench_lat_push(t, bench_now_ns() - t0);
	}
	t->bt_t1 = bench_now_ns();
	return err;
}

static int bench_rawsync_figure(const struct bench_opts *o, struct bench_report *rep)
{
	struct bench_sync *res = &rep->rp_rawsync;
	struct bench_thread t = {0};
	struct bench_load load;
	int fd, err;

	fd = open(o->bo_image, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	*res = (struct bench_sync){.sr_name = "raw-sync", .sr_threads = 1};
	bench_settle(o);
	bench_load_begin(&load);
	err = bench_rawsync_loop(o, fd, &t);
	res->sr_cpu_s = bench_cpu_s() - load.bl_self_s;
	res->sr_other_s = bench_load_other_s(&load);
	close(fd);
	if (!err)
		err = bench_sync_stats(&t, 1, res);
	free(t.bt_lat);
	if (err)
		return err;
	rep->rp_has_rawsync = true;
	bench_mark(o, "raw-sync", res->sr_t0, res->sr_t1);
	printf("raw-sync threads=1 syncs=%" PRIu64 " syncs/s=%.0f p50-us=%.0f p99-us=%.0f "
	       "mean-us=%.0f max-us=%.0f other-cpu-s=%.2f\n",
	       res->sr_syncs, res->sr_syncs_s, res->sr_p50_us, res->sr_p99_us, res->sr_mean_us,
	       res->sr_max_us, res->sr_other_s);
	fflush(stdout);
	return 0;
}

/*
 * raw-burst T: the burst figure's rounds on the image file itself. Each
 * of T threads pwrites one block of its own part of the first --mib MiB,
 * all meet, then all call fdatasync on the one descriptor at once.
 */
static int bench_rawburst_figure(const struct bench_opts *o, struct bench_report *rep, unsigned n)
{
	struct bench_sync *res = &rep->rp_rawburst[rep->rp_nrawburst];
	struct bench_run r = {.br_burst = true};
	int err;

	r.br_fd = open(o->bo_image, O_RDWR | O_CLOEXEC);
	if (r.br_fd < 0)
		return -errno;
	r.br_stride = o->bo_mib * (BENCH_MIB / BENCH_BLOCK) / n;
	*res = (struct bench_sync){.sr_name = "raw-burst", .sr_threads = n};
	err = bench_sync_measure(o, &r, n, res);
	close(r.br_fd);
	if (err)
		return err;
	rep->rp_nrawburst++;
	bench_mark(o, res->sr_name, res->sr_t0, res->sr_t1);
	printf("raw-burst threads=%u rounds=%" PRIu64 " round-p50-us=%.0f round-p99-us=%.0f"
	       " sync-p50-us=%.0f other-cpu-s=%.2f\n",
	       n, res->sr_rounds, res->sr_round_p50_us, res->sr_round_p99_us, res->sr_p50_us,
	       res->sr_other_s);
	fflush(stdout);
	return 0;
}

static int bench_sync_run(const struct bench_opts *o, struct bench_report *rep)
{
	int err = 0;

	if (o->bo_raw)
		err = bench_rawsync_figure(o, rep);

	for (unsigned i = 0; i < o->bo_nthreads && !err && o->bo_sync; i++)
		err = bench_sync_figure(o, rep, o->bo_threads[i], false);
	for (unsigned i = 0; i < o->bo_nthreads && !err && o->bo_burst && o->bo_raw; i++)
		err = bench_rawburst_figure(o, rep, o->bo_threads[i]);
	for (unsigned i = 0; i < o->bo_nthreads && !err && o->bo_burst; i++)
		err = bench_sync_figure(o, rep, o->bo_threads[i], true);
	return err;
}

/* ---- summary ------------------------------------------------------------------- */

/* Throughput: MiB/s, and as a multiple of each raw figure's. */
static void bench_summary_mib(const struct bench_report *rep)
{
	double raw = rep->rp_has_raw ? rep->rp_raw.rr_mib_s : 0;
	double cold = rep->rp_has_raw ? rep->rp_rawcold.rr_mib_s : 0;
	char x[16] = "-", xc[16] = "-";

	printf("\n%-8s %9s %9s %6s %6s %8s %10s %6s %9s\n", "figure", "max-dirty", "MiB/s", "x raw",
	       "x cold", "commits", "MiB/commit", "cpu-s", "other-cpu");
	if (rep->rp_has_raw) {
		printf("%-8s %9s %9.1f %6.2f %6.2f %8s %10s %6s %9.2f\n", "raw", "-", raw, 1.0,
		       raw / cold, "-", "-", "-", rep->rp_raw.rr_other_s);
		printf("%-8s %9s %9.1f %6.2f %6.2f %8s %10s %6s %9.2f\n", "raw-cold", "-", cold,
		       cold / raw, 1.0, "-", "-", "-", rep->rp_rawcold.rr_other_s);
	}
	for (unsigned i = 0; i < rep->rp_ncommit; i++) {
		const struct bench_commit *r = &rep->rp_commit[i];
		double per = r->cr_commits ? (double)r->cr_mib / (double)r->cr_commits : 0;

		if (raw > 0) {
			snprintf(x, sizeof(x), "%.2f", r->cr_mib_s / raw);
			snprintf(xc, sizeof(xc), "%.2f", r->cr_mib_s / cold);
		}
		printf("%-8s %9" PRIu32 " %9.1f %6s %6s %8" PRIu64 " %10.1f %6.2f %9.2f\n",
		       "commit", r->cr_max_dirty, r->cr_mib_s, x, xc, r->cr_commits, per,
		       r->cr_cpu_s, r->cr_other_s);
	}
}

/* Sync latency, and p50 as a multiple of the first figure's (1 thread). */
static void bench_summary_sync(const struct bench_report *rep)
{
	const struct bench_sync *one = &rep->rp_sync[0];

	printf("\n%-8s %7s %8s %7s %7s %7s %12s %8s %9s\n", "figure", "threads", "syncs/s",
	       "p50-us", "p99-us", "mean-us", "commits/sync", "p50 x T1", "other-cpu");
	if (rep->rp_has_rawsync) {
		const struct bench_sync *r = &rep->rp_rawsync;

		printf("%-8s %7u %8.0f %7.0f %7.0f %7.0f %12s %8s %9.2f\n", r->sr_name,
		       r->sr_threads, r->sr_syncs_s, r->sr_p50_us, r->sr_p99_us, r->sr_mean_us, "-",
		       "-", r->sr_other_s);
	}
	for (unsigned i = 0; i < rep->rp_nsync; i++) {
		const struct bench_sync *r = &rep->rp_sync[i];

		printf("%-8s %7u %8.0f %7.0f %7.0f %7.0f %12.3f %7.2fx %9.2f\n", r->sr_name,
		       r->sr_threads, r->sr_syncs_s, r->sr_p50_us, r->sr_p99_us, r->sr_mean_us,
		       r->sr_syncs ? (double)r->sr_commits / (double)r->sr_syncs : 0,
		       one->sr_p50_us > 0 ? r->sr_p50_us / one->sr_p50_us : 0, r->sr_other_s);
	}
}

/* One row: raw-burst has no commits ("-"). */
static void bench_summary_burst_row(const struct bench_sync *r, const struct bench_sync *one,
				    bool commits)
{
	char per[16] = "-";

	if (commits)
		snprintf(per, sizeof(per), "%.3f",
			 (double)r->sr_commits / (double)MAX(r->sr_rounds, 1));
	printf("%-9s %7u %8" PRIu64 " %10.0f %10.0f %13s %9.2fx %9.2f\n", r->sr_name, r->sr_threads,
	       r->sr_rounds, r->sr_round_p50_us, r->sr_round_p99_us, per,
	       one->sr_round_p50_us > 0 ? r->sr_round_p50_us / one->sr_round_p50_us : 0,
	       r->sr_other_s);
}

/*
 * Burst rounds: the slowest sync of a round, and its p50 over that of the
 * same kind's first figure (1 thread).
 */
static void bench_summary_burst(const struct bench_report *rep)
{
	printf("\n%-9s %7s %8s %10s %10s %13s %10s %9s\n", "figure", "threads", "rounds",
	       "round-p50", "round-p99", "commits/round", "p50 x T1", "other-cpu");
	for (unsigned i = 0; i < rep->rp_nrawburst; i++)
		bench_summary_burst_row(&rep->rp_rawburst[i], &rep->rp_rawburst[0], false);
	for (unsigned i = 0; i < rep->rp_nburst; i++)
		bench_summary_burst_row(&rep->rp_burst[i], &rep->rp_burst[0], true);
}

/* ---- options ------------------------------------------------------------------- */

static void bench_usage(FILE *f)
{
	fprintf(f,
		"usage: vol_bench [--image PATH] [--size N[KMG]] [--mib N] [--cache BLOCKS]\n"
		"                 [--txn BLOCKS] [--seg-blocks N] [--deltas D1,D2,...]\n"
		"                 [--threads T1,T2,...] [--seconds S] [--phases LIST] [--keep]\n"
		"                 [--drop-caches] [--timestamps]\n"
		"  --image PATH    image file to create (default %s); must not exist\n"
		"  --size N        image size, sparse (default 4G)\n"
		"  --mib N         MiB written by each raw and commit figure (default 1024)\n"
		"  --cache B       buffer cache, in 4 KiB blocks (default 65536)\n"
		"  --txn B         blocks per transaction in commit figures (default 256)\n"
		"  --seg-blocks N  segment size in blocks, a power of two (default: vol_mkfs's)\n"
		"  --deltas L      dirty limits (voo_max_dirty, blocks), one commit figure each\n"
		"                  (default 16384,4096,1024,256); the volume bounds\n"
		"                  what both deltas hold by what the cache can commit\n"
		"  --threads L     thread counts, one sync figure each, 1..%d (default 1,8)\n"
		"  --seconds S     time per sync figure (default 5)\n"
		"  --phases L      any of raw,commit,sync,burst (default all four)\n"
		"  --keep          keep the image at the end\n"
		"  --drop-caches   drop the page cache before every figure (root)\n"
		"  --timestamps    print each figure's timed span (perf report --time)\n",
		BENCH_IMAGE, BENCH_MAX_THREADS);
}

/* Parse "1,2,4" into @out (each in @min..@max); -EINVAL if malformed. */
static int bench_parse_list(const char *s, unsigned long min, unsigned long max, uint32_t *out,
			    unsigned *n)
{
	char *end;

	*n = 0;
	do {
		unsigned long x = strtoul(s, &end, 10);
		if (end == s || x < min || x > max || *n == BENCH_MAX_LIST)
			return -EINVAL;
		out[(*n)++] = (uint32_t)x;
		s = end + 1;
	} while (*end == ',');
	return *end ? -EINVAL : 0;
}

/* One number in @min..@max. */
static int bench_parse_u32(const char *s, unsigned long min, unsigned long max, uint32_t *out)
{
	uint32_t x[BENCH_MAX_LIST];
	unsigned n;

	if (bench_parse_list(s, min, max, x, &n) || n != 1)
		return -EINVAL;
	*out = x[0];
	return 0;
}

static int bench_parse_phases(struct bench_opts *o, const char *s)
{
	char buf[64], *save = NULL;

	if (strlen(s) >= sizeof(buf))
		return -EINVAL;
	strcpy(buf, s);
	o->bo_raw = o->bo_commit = o->bo_sync = o->bo_burst = false;
	for (char *p = strtok_r(buf, ",", &save); p; p = strtok_r(NULL, ",", &save)) {
		if (!strcmp(p, "raw"))
			o->bo_raw = true;
		else if (!strcmp(p, "commit"))
			o->bo_commit = true;
		else if (!strcmp(p, "sync"))
			o->bo_sync = true;
		else if (!strcmp(p, "burst"))
			o->bo_burst = true;
		else
			return -EINVAL;
	}
	return 0;
}

/* Parse one option @ch with argument @arg; -EINVAL if bad. */
static int bench_parse_one(struct bench_opts *o, int ch, const char *arg)
{
	uint32_t threads[BENCH_MAX_LIST], x;
	char *end;

	switch (ch) {
	case 'i':
		o->bo_image = arg;
		return 0;
	case 'z':
		return bench_parse_size(arg, &o->bo_size);
	case 'm':
		o->bo_mib = strtoull(arg, &end, 10);
		return *end || !o->bo_mib ? -EINVAL : 0;
	case 'c':
		return bench_parse_u32(arg, 64, UINT32_MAX, &o->bo_cache);
	case 'x':
		return bench_parse_u32(arg, 1, 1u << 20, &o->bo_txn);
	case 'g':
		if (bench_parse_u32(arg, 16, 1u << 16, &x) || (x & (x - 1)))
			return -EINVAL;
		o->bo_seg_blocks = x;
		return 0;
	case 'd':
		return bench_parse_list(arg, 1, UINT32_MAX, o->bo_deltas, &o->bo_ndeltas);
	case 't':
		if (bench_parse_list(arg, 1, BENCH_MAX_THREADS, threads, &o->bo_nthreads))
			return -EINVAL;
		for (unsigned i = 0; i < o->bo_nthreads; i++)
			o->bo_threads[i] = threads[i];
		return 0;
	case 's':
		o->bo_seconds = strtod(arg, &end);
		return *end || !(o->bo_seconds > 0 && o->bo_seconds <= 3600) ? -EINVAL : 0;
	case 'p':
		return bench_parse_phases(o, arg);
	case 'k':
		o->bo_keep = true;
		return 0;
	case 'D':
		o->bo_drop = true;
		return 0;
	case 'T':
		o->bo_marks = true;
		return 0;
	default:
		return -EINVAL;
	}
}

static int bench_parse(struct bench_opts *o, int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"image", required_argument, NULL, 'i'},
	    {"size", required_argument, NULL, 'z'},
	    {"mib", required_argument, NULL, 'm'},
	    {"cache", required_argument, NULL, 'c'},
	    {"txn", required_argument, NULL, 'x'},
	    {"seg-blocks", required_argument, NULL, 'g'},
	    {"deltas", required_argument, NULL, 'd'},
	    {"threads", required_argument, NULL, 't'},
	    {"seconds", required_argument, NULL, 's'},
	    {"phases", required_argument, NULL, 'p'},
	    {"keep", no_argument, NULL, 'k'},
	    {"drop-caches", no_argument, NULL, 'D'},
	    {"timestamps", no_argument, NULL, 'T'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	int ch;

	while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		if (ch == 'h')
			return 1;
		if (bench_parse_one(o, ch, optarg))
			return -EINVAL;
	}
	if (o->bo_mib * BENCH_MIB > o->bo_size / 2)
		return -EINVAL; /* raw writes --mib MiB; the volume needs more */
	return optind == argc ? 0 : -EINVAL;
}

static int bench_run(const struct bench_opts *o, struct bench_report *rep)
{
	int err = 0;

	if (o->bo_raw)
		err = bench_raw_run(o, rep);
	if (!err && o->bo_commit)
		err = bench_commit_run(o, rep);
	if (!err && (o->bo_sync || o->bo_burst))
		err = bench_sync_run(o, rep);
	return err;
}

int main(int argc, char **argv)
{
	static struct bench_report rep;
	struct bench_opts o = {
	    .bo_image = BENCH_IMAGE,
	    .bo_size = BENCH_SIZE,
	    .bo_mib = 1024,
	    .bo_cache = 65536,
	    .bo_txn = 256,
	    .bo_deltas = {16384, 4096, 1024, 256},
	    .bo_ndeltas = 4,
	    .bo_threads = {1, 8},
	    .bo_nthreads = 2,
	    .bo_seconds = 5,
	    .bo_raw = true,
	    .bo_commit = true,
	    .bo_sync = true,
	    .bo_burst = true,
	};
	int err;

	err = bench_parse(&o, argc, argv);
	if (err) {
		bench_usage(err > 0 ? stdout : stderr);
		return err > 0 ? 0 : 2;
	}
	printf("# image %s, %" PRIu64 " MiB sparse; block %u B; %" PRIu64 " MiB per figure;"
	       " cache %" PRIu32 " blocks; %" PRIu32 " blocks per transaction; %.2f s per sync"
	       " figure\n",
	       o.bo_image, o.bo_size / BENCH_MIB, BENCH_BLOCK, o.bo_mib, o.bo_cache, o.bo_txn,
	       o.bo_seconds);
	fflush(stdout);
	err = bench_image_create(&o);
	if (err) {
		fprintf(stderr, "vol_bench: cannot create %s: %s\n", o.bo_image, strerror(-err));
		return 1;
	}
	err = bench_run(&o, &rep);
	if (rep.rp_has_raw || rep.rp_ncommit)
		bench_summary_mib(&rep);
	if (rep.rp_nsync)
		bench_summary_sync(&rep);
	if (rep.rp_nburst || rep.rp_nrawburst)
		bench_summary_burst(&rep);
	if (!o.bo_keep)
		unlink(o.bo_image);
	if (err)
		fprintf(stderr, "vol_bench: %s\n", strerror(-err));
	return err ? 1 : 0;
}

/*
 * buf_bench.c - micro-benchmark of the buffer cache (src/buf/).
 *
 * Figures (bench/README.md says how to read them):
 *
 *   buf hit       T threads buf_read + buf_put random blocks of a working
 *                 set that fits in the cache: every lookup is a hit.
 *   buf hit-same  the same, with every thread on one block: one shard lock
 *                 and one reference count for all, the worst case for
 *                 hits. Compare with "buf hit" to see whether hits
 *                 serialize.
 *   buf miss      a cache of 256 buffers over 65536 blocks: nearly every
 *                 buf_read is a miss that evicts a Clean buffer and fills
 *                 from a RAM bdev (bdev_read, one 4 KiB memcpy).
 *   ref ...       costs measured in the same run to read the figures as
 *                 ratios: an uncontended pthread mutex lock+unlock pair,
 *                 the same for the cmutex the cache uses, one 4 KiB memcpy
 *                 from a hot and from a cold source, one 4 KiB memset, and
 *                 the PRNG draw that every buf and memcpy operation makes.
 *                 The PRNG runs at every thread count: it shares nothing,
 *                 so its "x T=1" is how far anything can scale here.
 *   ref line-pingpong  two threads pass one cache line back and forth:
 *                 ns/op is a round trip, two core-to-core transfers. A hit
 *                 from several threads writes shared lines (shard lock,
 *                 buffer reference count, statistics), so this is the unit
 *                 in which contended hits are paid; on a VM it changes with
 *                 where the host runs the vCPUs, hence measured every run.
 *
 * Method
 *   (1) Every figure runs for a fixed time (--seconds). Its T threads and
 *       the main thread meet at a barrier; each thread then runs batches
 *       of BENCH_BATCH operations until the main thread raises br_stop,
 *       and times its own loop with CLOCK_MONOTONIC.
 *   (2) ops/s is the operations of all threads over the wall time (first
 *       thread start to last thread end). ns/op is per thread: the sum of
 *       the threads' loop times over all operations, i.e. how long one
 *       operation takes for the thread that issues it. If an operation
 *       scales, ns/op stays flat as T grows; if it serializes, ns/op grows
 *       with T. Beyond the core count it grows anyway (time slicing).
 *   (3) Each thread draws block numbers from its own xorshift PRNG
 *       (util/prng.h) seeded from the run's seed and its thread number,
 *       so a run is repeatable: the seed is printed, CAIRN_SEED sets it.
 *   (4) After every buf figure the cache's own counters are checked: a
 *       hit figure that missed is reported on stderr; miss figures show
 *       their miss ratio in the summary.
 *   (5) The RAM bdev is written in full before use, so fills copy from
 *       real pages and not from the kernel's shared zero page.
 *
 * Not a test: it asserts nothing about speed and meson test does not run it.
 */
#include "bench_util.h"
#include "bdev/bdev.h"
#include "buf/buf.h"
#include "util/prng.h"
#include "util/util.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BENCH_BLOCK	   4096	 /* bytes per block and buffer */
#define BENCH_HIT_BUFFERS  4096	 /* hit cache: pool size */
#define BENCH_HIT_BLOCKS   4096	 /* hit working set: fits the pool */
#define BENCH_MISS_BUFFERS 256	 /* miss cache: pool size */
#define BENCH_MISS_BLOCKS  65536 /* miss working set, and RAM bdev size */
#define BENCH_OWNER	   1	 /* every block belongs to one file */
#define BENCH_BATCH	   256	 /* operations between two looks at br_stop */
#define BENCH_MAX_THREADS  64
#define BENCH_MAX_TLIST	   16 /* entries of --threads */
#define BENCH_MAX_FIGURES  128

/* ---- figures and the report --------------------------------------- */

/* What a batch sees of the thread that runs it; on that thread's stack. */
struct bench_self {
	struct prng bs_prng;
	unsigned bs_id;		    /* 0..T-1 */
	const atomic_bool *bs_stop; /* for batches that wait on another thread */
};

/* Run @n operations; 0 or the first error. */
typedef int (*bench_batch_fn)(void *arg, struct bench_self *self, unsigned n);

/* One thing to measure. */
struct bench_work {
	const char *bw_name; /* "buf hit", "ref mutex", ... */
	bench_batch_fn bw_batch;
	void *bw_arg;
	struct buf_cache *bw_cache; /* buf figures: whose counters to check */
	bool bw_all_hits;	    /* a miss is a setup error */
};

struct bench_result {
	const char *re_name;
	unsigned re_threads;
	double re_ops_s;    /* all threads */
	double re_ns_op;    /* per thread */
	double re_miss_pct; /* buf figures: misses per lookup; < 0 otherwise */
};

struct bench_report {
	struct bench_result rp_res[BENCH_MAX_FIGURES];
	unsigned rp_n;
};

struct bench_opts {
	double bo_seconds;
	unsigned bo_threads[BENCH_MAX_TLIST];
	unsigned bo_nthreads; /* entries in bo_threads */
	uint64_t bo_seed;
};

/* ---- timing: threads, barrier, stop flag ---------------------------- */

/* Shared by the threads of one figure. */
struct bench_run {
	const struct bench_work *br_work; /* immutable during the run */
	pthread_barrier_t br_start;	  /* T threads + main */
	atomic_bool br_stop;		  /* raised by main when time is up */
	uint64_t br_seed;		  /* immutable */
};

/* One thread's figures: written by it once, at its end; read after join. */
struct bench_thread {
	pthread_t bt_tid;
	struct bench_run *bt_run;
	unsigned bt_id;
	uint64_t bt_ops;
	uint64_t bt_t0, bt_t1; /* ns, CLOCK_MONOTONIC */
	int bt_err;
};

static void bench_sleep(double seconds)
{
	struct timespec ts = {
	    .tv_sec = (time_t)seconds,
	    .tv_nsec = (long)((seconds - (double)(time_t)seconds) * 1e9),
	};

	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

/* Keep the compiler from dropping a copy whose result nobody reads. */
static inline void bench_clobber(void *p)
{
	__asm__ volatile("" : : "r"(p) : "memory");
}

static void *bench_thread_main(void *arg)
{
	struct bench_thread *t = arg;
	struct bench_run *r = t->bt_run;
	const struct bench_work *w = r->br_work;
	struct bench_self self = {.bs_id = t->bt_id, .bs_stop = &r->br_stop};
	uint64_t ops = 0, t0;
	int err = 0;

	prng_init(&self.bs_prng, r->br_seed + t->bt_id);
	pthread_barrier_wait(&r->br_start);
	t0 = bench_now_ns();
	while (!err && !atomic_load_explicit(&r->br_stop, memory_order_relaxed)) {
		err = w->bw_batch(w->bw_arg, &self, BENCH_BATCH);
		ops += BENCH_BATCH;
	}
	t->bt_t1 = bench_now_ns();
	t->bt_t0 = t0;
	t->bt_ops = ops;
	t->bt_err = err;
	return NULL;
}

/* Start @n threads on @r, let them run @seconds, stop and join them. */
static int bench_run_threads(struct bench_run *r, struct bench_thread *ts, unsigned n,
			     double seconds)
{
	int err = 0;

	pthread_barrier_init(&r->br_start, NULL, n + 1);
	atomic_init(&r->br_stop, false);
	for (unsigned i = 0; i < n; i++) {
		ts[i] = (struct bench_thread){.bt_run = r, .bt_id = i};
		if (pthread_create(&ts[i].bt_tid, NULL, bench_thread_main, &ts[i])) {
			fprintf(stderr, "buf_bench: cannot create thread %u\n", i);
			exit(1); /* the barrier would never open */
		}
	}
	pthread_barrier_wait(&r->br_start);
	bench_sleep(seconds);
	atomic_store(&r->br_stop, true);
	for (unsigned i = 0; i < n; i++) {
		pthread_join(ts[i].bt_tid, NULL);
		err = err ? err : ts[i].bt_err;
	}
	pthread_barrier_destroy(&r->br_start);
	return err;
}

/* ops/s over the wall time and ns/op per thread (method (2)). */
static void bench_rates(const struct bench_thread *ts, unsigned n, struct bench_result *res)
{
	uint64_t ops = 0, busy = 0, t0 = UINT64_MAX, t1 = 0;

	for (unsigned i = 0; i < n; i++) {
		ops += ts[i].bt_ops;
		busy += ts[i].bt_t1 - ts[i].bt_t0;
		t0 = MIN(t0, ts[i].bt_t0);
		t1 = MAX(t1, ts[i].bt_t1);
	}
	res->re_ops_s = ops ? (double)ops * 1e9 / (double)(t1 - t0) : 0;
	res->re_ns_op = ops ? (double)busy / (double)ops : 0;
}

/* Misses per lookup between @a and @b, and the hit-figure check (4). */
static double bench_check_cache(const struct bench_work *w, unsigned n,
				const struct buf_cache_stats *a, const struct buf_cache_stats *b)
{
	uint64_t misses = b->bs_misses - a->bs_misses;
	uint64_t lookups = misses + b->bs_hits - a->bs_hits;

	if (w->bw_all_hits && misses)
		fprintf(stderr, "warning: %s threads=%u: %" PRIu64 " misses in a hit figure\n",
			w->bw_name, n, misses);
	return lookups ? 100.0 * (double)misses / (double)lookups : 0;
}

/* Measure @w with @n threads, print its line and add it to @rep. */
static int bench_figure(const struct bench_opts *o, struct bench_report *rep,
			const struct bench_work *w, unsigned n)
{
	struct bench_thread ts[BENCH_MAX_THREADS];
	struct bench_result *res = &rep->rp_res[rep->rp_n];
	struct buf_cache_stats before = {0}, after = {0};
	struct bench_run r = {.br_work = w, .br_seed = o->bo_seed};
	int err;

	if (rep->rp_n == BENCH_MAX_FIGURES)
		return -ENOSPC;
	if (w->bw_cache)
		buf_cache_stats(w->bw_cache, &before);
	err = bench_run_threads(&r, ts, n, o->bo_seconds);
	if (err) {
		fprintf(stderr, "buf_bench: %s threads=%u: %s\n", w->bw_name, n, strerror(-err));
		return err;
	}
	*res = (struct bench_result){.re_name = w->bw_name, .re_threads = n, .re_miss_pct = -1};
	bench_rates(ts, n, res);
	if (w->bw_cache) {
		buf_cache_stats(w->bw_cache, &after);
		res->re_miss_pct = bench_check_cache(w, n, &before, &after);
	}
	rep->rp_n++;
	printf("%s threads=%u ops/s=%.0f ns/op=%.1f\n", w->bw_name, n, res->re_ops_s,
	       res->re_ns_op);
	fflush(stdout);
	return 0;
}

/* Measure @w with every thread count of --threads. */
static int bench_figures(const struct bench_opts *o, struct bench_report *rep,
			 const struct bench_work *w)
{
	int err = 0;

	for (unsigned i = 0; i < o->bo_nthreads && !err; i++)
		err = bench_figure(o, rep, w, o->bo_threads[i]);
	return err;
}

/* ---- reference costs ------------------------------------------------- */

struct bench_copy_arg {
	unsigned char *ca_src; /* ca_nblocks blocks */
	uint64_t ca_nblocks;
	unsigned char *ca_dst; /* one block */
};

static int bench_mutex_batch(void *arg, struct bench_self *self, unsigned n)
{
	pthread_mutex_t *m = arg;

	(void)self;
	for (unsigned i = 0; i < n; i++) {
		pthread_mutex_lock(m);
		pthread_mutex_unlock(m);
	}
	return 0;
}

static int bench_cmutex_batch(void *arg, struct bench_self *self, unsigned n)
{
	struct cmutex *m = arg;

	(void)self;
	for (unsigned i = 0; i < n; i++) {
		cmutex_lock(m);
		cmutex_unlock(m);
	}
	return 0;
}

/* Scales perfectly: run at every thread count, it is the machine's ceiling. */
static int bench_prng_batch(void *arg, struct bench_self *self, unsigned n)
{
	uint64_t sum = 0;

	(void)arg;
	for (unsigned i = 0; i < n; i++)
		sum += prng_below(&self->bs_prng, BENCH_MISS_BLOCKS);
	bench_clobber(&sum);
	return 0;
}

/* Two threads pass a turn back and forth through one cache line. */
struct bench_pingpong {
	_Alignas(64) atomic_uint_fast64_t pp_turn; /* even: thread 0 moves, odd: 1 */
};

/*
 * One op: wait for my turn, hand it over. The threads alternate, so each
 * thread's ns/op is a round trip: two one-way transfers of the line.
 */
static int bench_pingpong_batch(void *arg, struct bench_self *self, unsigned n)
{
	struct bench_pingpong *pp = arg;
	uint_fast64_t t;

	for (unsigned i = 0; i < n; i++) {
		while (((t = atomic_load_explicit(&pp->pp_turn, memory_order_acquire)) & 1) !=
		       self->bs_id)
			if (atomic_load_explicit(self->bs_stop, memory_order_relaxed))
				return 0; /* the other thread may be gone */
		atomic_store_explicit(&pp->pp_turn, t + 1, memory_order_release);
	}
	return 0;
}

/* One block from a random block of the source, like a RAM bdev read. */
static int bench_memcpy_batch(void *arg, struct bench_self *self, unsigned n)
{
	struct bench_copy_arg *a = arg;

	for (unsigned i = 0; i < n; i++) {
		uint64_t blk = prng_below(&self->bs_prng, a->ca_nblocks);
		memcpy(a->ca_dst, a->ca_src + blk * BENCH_BLOCK, BENCH_BLOCK);
		bench_clobber(a->ca_dst);
	}
	return 0;
}

static int bench_memset_batch(void *arg, struct bench_self *self, unsigned n)
{
	struct bench_copy_arg *a = arg;

	(void)self;
	for (unsigned i = 0; i < n; i++) {
		memset(a->ca_dst, (int)i, BENCH_BLOCK);
		bench_clobber(a->ca_dst);
	}
	return 0;
}

/*
 * The reference figures: one thread each, but the PRNG at every thread
 * count and the ping-pong with two threads.
 */
static int bench_refs(const struct bench_opts *o, struct bench_report *rep,
		      struct bench_copy_arg *hot, struct bench_copy_arg *cold)
{
	pthread_mutex_t mutex = PTHREAD_MUTEX_INITIALIZER;
	struct bench_pingpong pp = {0};
	struct cmutex cm;
	const struct bench_work prng = {.bw_name = "ref prng", .bw_batch = bench_prng_batch};
	const struct bench_work pingpong = {
	    .bw_name = "ref line-pingpong", .bw_batch = bench_pingpong_batch, .bw_arg = &pp};
	const struct bench_work works[] = {
	    {.bw_name = "ref mutex", .bw_batch = bench_mutex_batch, .bw_arg = &mutex},
	    {.bw_name = "ref cmutex", .bw_batch = bench_cmutex_batch, .bw_arg = &cm},
	    {.bw_name = "ref memcpy4k-hot", .bw_batch = bench_memcpy_batch, .bw_arg = hot},
	    {.bw_name = "ref memcpy4k-cold", .bw_batch = bench_memcpy_batch, .bw_arg = cold},
	    {.bw_name = "ref memset4k", .bw_batch = bench_memset_batch, .bw_arg = hot},
	};
	int err = 0;

	cmutex_init(&cm);
	for (unsigned i = 0; i < ARRAY_SIZE(works) && !err; i++)
		err = bench_figure(o, rep, &works[i], 1);
	if (!err)
		err = bench_figures(o, rep, &prng);
	if (!err)
		err = bench_figure(o, rep, &pingpong, 2);
	cmutex_destroy(&cm);
	pthread_mutex_destroy(&mutex);
	return err;
}

/* A hot and a cold (BENCH_MISS_BLOCKS blocks, written) copy source. */
static int bench_refs_run(const struct bench_opts *o, struct bench_report *rep)
{
	size_t cold_bytes = (size_t)BENCH_MISS_BLOCKS * BENCH_BLOCK;
	unsigned char *mem = aligned_alloc(4096, cold_bytes + 2 * BENCH_BLOCK);
	struct bench_copy_arg hot, cold;
	int err;

	if (!mem)
		return -ENOMEM;
	memset(mem, 0xa5, cold_bytes + 2 * BENCH_BLOCK);
	hot = (struct bench_copy_arg){mem + cold_bytes, 1, mem + cold_bytes + BENCH_BLOCK};
	cold = (struct bench_copy_arg){mem, BENCH_MISS_BLOCKS, hot.ca_dst};
	err = bench_refs(o, rep, &hot, &cold);
	free(mem);
	return err;
}

/* ---- the buffer cache ------------------------------------------------ */

struct bench_buf_arg {
	struct buf_cache *ba_cache;
	uint64_t ba_nblocks; /* blocks 0..ba_nblocks-1 of BENCH_OWNER */
};

static int bench_fill(void *ctx, struct buf *b, void *data, uint64_t hint)
{
	(void)hint;
	return bdev_read(ctx, buf_index(b), 1, data);
}

static const struct buf_ops bench_buf_ops = {
    .bo_fill = bench_fill,
};

static int bench_read_batch(void *arg, struct bench_self *self, unsigned n)
{
	struct bench_buf_arg *a = arg;
	struct buf *b;
	int err;

	for (unsigned i = 0; i < n; i++) {
		uint64_t index = prng_below(&self->bs_prng, a->ba_nblocks);
		err = buf_read(a->ba_cache, BENCH_OWNER, index, &b);
		if (err)
			return err;
		buf_put(b);
	}
	return 0;
}

/* A RAM bdev of BENCH_MISS_BLOCKS blocks, every one written (method (5)). */
static int bench_dev_open(struct bdev **out)
{
	unsigned char block[BENCH_BLOCK];
	struct bdev *d;
	int err;

	err = bdev_open_ram(BENCH_BLOCK, BENCH_MISS_BLOCKS, &d);
	for (uint64_t i = 0; !err && i < BENCH_MISS_BLOCKS; i++) {
		memset(block, (int)(i & 0xff), sizeof(block));
		err = bdev_write(d, i, 1, block);
	}
	if (err) {
		bdev_close(d);
		return err;
	}
	*out = d;
	return 0;
}

static int bench_cache_create(struct bdev *d, uint32_t nbuffers, struct buf_cache **out)
{
	const struct buf_cache_config cfg = {
	    .bcc_block_size = BENCH_BLOCK,
	    .bcc_nbuffers = nbuffers,
	    .bcc_ops = &bench_buf_ops,
	    .bcc_ctx = d,
	};

	return buf_cache_create(&cfg, out);
}

/* Read blocks 0..@nblocks-1 once, in order, to fill the cache. */
static int bench_cache_warm(struct buf_cache *c, uint64_t nblocks)
{
	struct buf *b;
	int err = 0;

	for (uint64_t i = 0; i < nblocks; i++) {
		err = buf_read(c, BENCH_OWNER, i, &b);
		if (err)
			break;
		buf_put(b);
	}
	return err;
}

/* buf hit and buf hit-same: a working set that fits, pre-filled. */
static int bench_hits(const struct bench_opts *o, struct bench_report *rep, struct bdev *d)
{
	struct bench_buf_arg all = {.ba_nblocks = BENCH_HIT_BLOCKS}, one = {.ba_nblocks = 1};
	struct bench_work hit = {"buf hit", bench_read_batch, &all, NULL, true};
	struct bench_work same = {"buf hit-same", bench_read_batch, &one, NULL, true};
	struct buf_cache *c;
	int err;

	err = bench_cache_create(d, BENCH_HIT_BUFFERS, &c);
	if (err)
		return err;
	all.ba_cache = one.ba_cache = hit.bw_cache = same.bw_cache = c;
	err = bench_cache_warm(c, BENCH_HIT_BLOCKS);
	if (!err)
		err = bench_figures(o, rep, &hit);
	if (!err)
		err = bench_figures(o, rep, &same);
	buf_cache_destroy(c);
	return err;
}

/* buf miss: a small cache, a large working set, every block on the bdev. */
static int bench_misses(const struct bench_opts *o, struct bench_report *rep, struct bdev *d)
{
	struct bench_buf_arg arg = {.ba_nblocks = BENCH_MISS_BLOCKS};
	struct bench_work miss = {"buf miss", bench_read_batch, &arg, NULL, false};
	struct bench_self self = {.bs_id = 0};
	struct buf_cache *c;
	int err;

	err = bench_cache_create(d, BENCH_MISS_BUFFERS, &c);
	if (err)
		return err;
	arg.ba_cache = miss.bw_cache = c;
	prng_init(&self.bs_prng, o->bo_seed ^ 0x5eed);
	err = bench_read_batch(&arg, &self, 4 * BENCH_MISS_BUFFERS); /* pool full: evict */
	if (!err)
		err = bench_figures(o, rep, &miss);
	buf_cache_destroy(c);
	return err;
}

static int bench_cache_run(const struct bench_opts *o, struct bench_report *rep)
{
	struct bdev *d;
	int err;

	err = bench_dev_open(&d);
	if (err)
		return err;
	err = bench_hits(o, rep, d);
	if (!err)
		err = bench_misses(o, rep, d);
	bdev_close(d);
	return err;
}

/* ---- summary ----------------------------------------------------------- */

static const struct bench_result *bench_find(const struct bench_report *rep, const char *name,
					     unsigned threads)
{
	for (unsigned i = 0; i < rep->rp_n; i++)
		if (!strcmp(rep->rp_res[i].re_name, name) && rep->rp_res[i].re_threads == threads)
			return &rep->rp_res[i];
	return NULL;
}

/* @v / @ref as "12.3x", or "-" without a reference. */
static void bench_ratio(char *s, size_t len, double v, const struct bench_result *ref, bool by_ns)
{
	double r = ref ? (by_ns ? ref->re_ns_op : ref->re_ops_s) : 0;

	if (r > 0)
		snprintf(s, len, "%.2fx", v / r);
	else
		snprintf(s, len, "-");
}

static void bench_summary_line(const struct bench_report *rep, const struct bench_result *r)
{
	const struct bench_result *mutex = bench_find(rep, "ref mutex", 1);
	const struct bench_result *copy = bench_find(rep, "ref memcpy4k-hot", 1);
	char xm[16], xc[16], sc[16], miss[16] = "-";

	bench_ratio(xm, sizeof(xm), r->re_ns_op, mutex, true);
	bench_ratio(xc, sizeof(xc), r->re_ns_op, copy, true);
	bench_ratio(sc, sizeof(sc), r->re_ops_s, bench_find(rep, r->re_name, 1), false);
	if (r->re_miss_pct >= 0)
		snprintf(miss, sizeof(miss), "%.1f", r->re_miss_pct);
	printf("%-18s %7u %13.0f %10.1f %9s %9s %8s %6s\n", r->re_name, r->re_threads, r->re_ops_s,
	       r->re_ns_op, xm, xc, sc, miss);
}

/*
 * The table: ns/op as multiples of a mutex pair and of a hot 4 KiB
 * memcpy, ops/s as a multiple of the same figure with one thread.
 */
static void bench_summary(const struct bench_report *rep)
{
	printf("\n%-18s %7s %13s %10s %9s %9s %8s %6s\n", "figure", "threads", "ops/s", "ns/op",
	       "x mutex", "x memcpy", "x T=1", "miss%");
	for (unsigned i = 0; i < rep->rp_n; i++)
		bench_summary_line(rep, &rep->rp_res[i]);
}

/* ---- options ----------------------------------------------------------- */

static void bench_usage(FILE *f)
{
	fprintf(f,
		"usage: buf_bench [--seconds S] [--threads T1,T2,...]\n"
		"  --seconds S   time per figure (default 1)\n"
		"  --threads L   thread counts, 1..%d (default 1,2,4)\n"
		"  CAIRN_SEED=n  seed of the per-thread PRNGs (default 1)\n",
		BENCH_MAX_THREADS);
}

/* Parse "1,2,4" into o->bo_threads; -EINVAL if malformed. */
static int bench_parse_threads(struct bench_opts *o, const char *s)
{
	char *end;

	o->bo_nthreads = 0;
	do {
		unsigned long t = strtoul(s, &end, 10);
		if (end == s || t < 1 || t > BENCH_MAX_THREADS || o->bo_nthreads == BENCH_MAX_TLIST)
			return -EINVAL;
		o->bo_threads[o->bo_nthreads++] = (unsigned)t;
		s = end + 1;
	} while (*end == ',');
	return *end ? -EINVAL : 0;
}

static int bench_parse(struct bench_opts *o, int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"seconds", required_argument, NULL, 's'},
	    {"threads", required_argument, NULL, 't'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	char *end;
	int ch;

	while ((ch = getopt_long(argc, argv, "s:t:h", longopts, NULL)) != -1) {
		if (ch == 's') {
			o->bo_seconds = strtod(optarg, &end);
			if (*end || !(o->bo_seconds > 0 && o->bo_seconds <= 3600))
				return -EINVAL;
		} else if (ch == 't') {
			if (bench_parse_threads(o, optarg))
				return -EINVAL;
		} else {
			return ch == 'h' ? 1 : -EINVAL;
		}
	}
	return optind == argc ? 0 : -EINVAL;
}

int main(int argc, char **argv)
{
	static struct bench_report rep;
	struct bench_opts o = {.bo_seconds = 1, .bo_threads = {1, 2, 4}, .bo_nthreads = 3};
	int err;

	err = bench_parse(&o, argc, argv);
	if (err) {
		bench_usage(err > 0 ? stdout : stderr);
		return err > 0 ? 0 : 2;
	}
	o.bo_seed = prng_seed_from_env("buf_bench", 1);
	printf("# block %u B; hit: %u buffers, %u blocks; miss: %u buffers, %u blocks;"
	       " %.2f s per figure\n",
	       BENCH_BLOCK, BENCH_HIT_BUFFERS, BENCH_HIT_BLOCKS, BENCH_MISS_BUFFERS,
	       BENCH_MISS_BLOCKS, o.bo_seconds);
	err = bench_refs_run(&o, &rep);
	if (!err)
		err = bench_cache_run(&o, &rep);
	bench_summary(&rep);
	if (err)
		fprintf(stderr, "buf_bench: %s\n", strerror(-err));
	return err ? 1 : 0;
}

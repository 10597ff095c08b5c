/*
 * clean_bench.c - the segment cleaner's write cost (src/vol/clean.c).
 *
 * For each utilization u (--util), workload and selection policy, on a
 * fresh volume in memory (bdev ram, 4 KiB blocks, --segs segments of
 * --seg-blocks blocks):
 *
 *   fill     L = u * (the blocks a transaction may reserve: all segments
 *            but the kept reserve) blocks of data, in files (owners) of
 *            FILE_BLOCKS blocks, written in order;
 *   warm-up  --warmup * L single-block overwrites (untimed, uncounted),
 *            so the segments reach the steady state of the workload;
 *   measure  --turnover * L more overwrites, in transactions of TXN
 *            random blocks, then vol_sync.
 *
 * Workloads: "uniform" (every block equally likely) and "hot" (90% of
 * the writes go to the first 10% of the files, the rest to the others,
 * uniform inside each set: the hot/cold workload of Sprite LFS).
 * Policies: cost-benefit (VOL_CLEAN_COST_BENEFIT) and greedy
 * (VOL_CLEAN_GREEDY).
 *
 * Figures, over the measured phase only (vol_usage counters, N = blocks
 * the workload wrote):
 *
 *   cost      (read + moved + N) / N: blocks of victim segments the
 *             cleaner read, live blocks it wrote again, and the new
 *             data, per new block: Sprite's write cost, whose ideal for
 *             victims of utilization u is 2 / (1 - u) ("2/(1-u)": at
 *             the volume's u; the cleaner does better by choosing
 *             emptier segments than the average)
 *   total     (read + written) / N, where written is every block the
 *             commits wrote: data, moved blocks, map blocks, log headers
 *             and summaries, super roots
 *   u-clean   the mean utilization of the segments cleaned,
 *             moved / (victims * seg-blocks)
 *
 * Counts, not times: the figures are the same on any machine for one
 * seed (--seed), apart from how deltas happen to be cut, which the
 * commit thread's timing decides.
 *
 *   clean_bench [--segs N] [--seg-blocks N] [--util 50,75,90]
 *               [--workload hot,uniform] [--policy cost-benefit,greedy]
 *               [--cache N] [--max-dirty N] [--warmup X] [--turnover X] [--seed N]
 */
#include "bdev/bdev.h"
#include "util/prng.h"
#include "util/util.h"
#include "vol/vol.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BS	    4096u
#define FILE_BLOCKS 256u /* blocks per file (owner) */
#define FIRST_OWNER 16u
#define TXN	    16u /* random blocks per transaction */
#define HOT_FILES   10u /* percent of the files that are hot */
#define HOT_WRITES  90u /* percent of the writes they take */

struct bench_opts {
	uint64_t segs, seg_blocks, seed, cache, max_dirty;
	double warmup, turnover;
	char utils[64], workloads[64], policies[64];
};

struct figure {
	uint64_t live, written_new, read, moved, written, victims, released, done;
	const char *phase; /* where -ENOSPC came, if it did */
};

static void die(const char *what, int err)
{
	fprintf(stderr, "clean_bench: %s: %s\n", what, strerror(-err));
	exit(1);
}

/* Block @i of the data: (owner, index). */
static void block_of(uint64_t i, uint64_t *owner, uint64_t *index)
{
	*owner = FIRST_OWNER + i / FILE_BLOCKS;
	*index = i % FILE_BLOCKS;
}

/* The next block the workload writes, of @live blocks in @files files. */
static uint64_t pick(struct prng *p, bool hot, uint64_t live)
{
	uint64_t files = (live + FILE_BLOCKS - 1) / FILE_BLOCKS;
	uint64_t hot_blocks = MAX(files * HOT_FILES / 100, 1) * FILE_BLOCKS;

	if (!hot || hot_blocks >= live)
		return prng_below(p, live);
	if (prng_chance(p, HOT_WRITES, 100))
		return prng_below(p, hot_blocks);
	return hot_blocks + prng_below(p, live - hot_blocks);
}

/*
 * Write @n blocks: in order from 0 if !@random, else as the workload
 * picks. -ENOSPC (and *@done) if the volume refused a transaction.
 */
static int write_blocks(struct vol *v, struct prng *p, bool random, bool hot, uint64_t live,
			uint64_t n, uint32_t version, uint64_t *done)
{
	static unsigned char data[BS];

	for (*done = 0; *done < n;) {
		struct vol_txn t;
		uint64_t k = MIN((uint64_t)TXN, n - *done);
		int err = vol_txn_begin(v, k, 0, &t);

		if (err == -ENOSPC)
			return err;
		if (err)
			die("vol_txn_begin", err);
		for (uint64_t j = 0; j < k; j++, (*done)++) {
			uint64_t i = random ? pick(p, hot, live) : *done, owner, index;

			block_of(i, &owner, &index);
			memcpy(data, &i, sizeof(i));
			memcpy(data + sizeof(i), &version, sizeof(version));
			err = vol_write(&t, owner, index, data);
			if (err)
				die("vol_write", err);
		}
		vol_txn_end(&t);
	}
	return 0;
}

static int run(const struct bench_opts *o, unsigned util, bool hot, uint8_t policy,
	       struct figure *f)
{
	uint64_t nblocks = o->segs * o->seg_blocks + 4 * o->seg_blocks;
	struct vol_mkfs_opts mo = {
	    .vmo_log = {.lfo_block_size = BS, .lfo_seg_blocks = (uint32_t)o->seg_blocks}};
	struct vol_open_opts oo = {.voo_clean_policy = policy,
				   .voo_cache_blocks = (uint32_t)o->cache,
				   .voo_max_dirty = (uint32_t)o->max_dirty};
	struct vol_usage_stats a, b;
	struct log_space sp;
	struct bdev *d;
	struct prng p;
	struct vol *v;
	int err;

	err = bdev_open_ram(BS, nblocks, &d);
	if (!err)
		err = vol_mkfs(d, &mo);
	if (!err)
		err = vol_open(d, &oo, &v);
	if (err)
		die("a volume in memory", err);
	prng_init(&p, o->seed);
	vol_space(v, &sp);
	f->live = (sp.sp_total - sp.sp_kept) * util / 100;
	f->phase = "fill";
	err = write_blocks(v, &p, false, hot, f->live, f->live, 1, &f->done);
	if (!err) {
		f->phase = "warm-up";
		err = write_blocks(v, &p, true, hot, f->live,
				   (uint64_t)(o->warmup * (double)f->live), 2, &f->done);
	}
	if (!err && (err = vol_sync(v)))
		die("vol_sync", err);
	vol_usage(v, &a);
	f->written_new = (uint64_t)(o->turnover * (double)f->live);
	if (!err) {
		f->phase = "measure";
		err = write_blocks(v, &p, true, hot, f->live, f->written_new, 3, &f->done);
	}
	if (!err && (err = vol_sync(v)))
		die("vol_sync", err);
	if (err) { /* -ENOSPC: reported, and the next figure runs */
		vol_close(v);
		return err;
	}
	vol_usage(v, &b);
	f->read = b.vus_clean_read - a.vus_clean_read;
	f->moved = b.vus_moved - a.vus_moved;
	f->written = b.vus_written - a.vus_written;
	f->victims = b.vus_cleaned - a.vus_cleaned;
	f->released = b.vus_released - a.vus_released;
	return vol_close(v);
}

static void usage(void)
{
	fprintf(stderr, "usage: clean_bench [--segs N] [--seg-blocks N] [--util 50,75,90]\n"
			"  [--workload hot,uniform] [--policy cost-benefit,greedy]\n"
			"  [--cache N] [--max-dirty N] [--warmup X] [--turnover X] [--seed N]\n");
	exit(2);
}

/* Copy a comma-separated list; "" if it fits, else the rest (an error). */
static char *list_arg(char *dst, size_t size, const char *val)
{
	static char none[] = "", rest[] = "too long";

	return (size_t)snprintf(dst, size, "%s", val) < size ? none : rest;
}

static void parse(int argc, char **argv, struct bench_opts *o)
{
	*o = (struct bench_opts){.segs = 1024,
				 .seg_blocks = 128,
				 .seed = 20261204,
				 .cache = 16384,
				 .max_dirty = 512,
				 .warmup = 2,
				 .turnover = 4};
	snprintf(o->utils, sizeof(o->utils), "50,75,90");
	snprintf(o->workloads, sizeof(o->workloads), "hot,uniform");
	snprintf(o->policies, sizeof(o->policies), "cost-benefit,greedy");
	for (int i = 1; i < argc; i++) {
		const char *arg = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
		char *end;

		if (!val)
			usage();
		i++;
		if (!strcmp(arg, "--segs"))
			o->segs = strtoull(val, &end, 10);
		else if (!strcmp(arg, "--seg-blocks"))
			o->seg_blocks = strtoull(val, &end, 10);
		else if (!strcmp(arg, "--cache"))
			o->cache = strtoull(val, &end, 10);
		else if (!strcmp(arg, "--max-dirty"))
			o->max_dirty = strtoull(val, &end, 10);
		else if (!strcmp(arg, "--seed"))
			o->seed = strtoull(val, &end, 10);
		else if (!strcmp(arg, "--warmup"))
			o->warmup = strtod(val, &end);
		else if (!strcmp(arg, "--turnover"))
			o->turnover = strtod(val, &end);
		else if (!strcmp(arg, "--util"))
			end = list_arg(o->utils, sizeof(o->utils), val);
		else if (!strcmp(arg, "--workload"))
			end = list_arg(o->workloads, sizeof(o->workloads), val);
		else if (!strcmp(arg, "--policy"))
			end = list_arg(o->policies, sizeof(o->policies), val);
		else
			usage();
		if (*end)
			usage();
	}
	if (o->segs < 8 || o->seg_blocks < 16 || o->turnover <= 0 || o->warmup < 0)
		usage();
}

int main(int argc, char **argv)
{
	struct bench_opts o;
	char utils[64], *usave = NULL;

	parse(argc, argv, &o);
	printf("# clean_bench: %" PRIu64 " segments of %" PRIu64
	       " blocks (4 KiB), warm-up %.1fx, measured %.1fx the live data, seed %" PRIu64 "\n",
	       o.segs, o.seg_blocks, o.warmup, o.turnover, o.seed);
	printf("%-5s %-8s %-13s %8s %7s %7s %8s %7s %9s %9s\n", "util", "workload", "policy",
	       "live", "cost", "total", "2/(1-u)", "u-clean", "victims", "freed");
	snprintf(utils, sizeof(utils), "%s", o.utils);
	for (char *us = strtok_r(utils, ",", &usave); us; us = strtok_r(NULL, ",", &usave)) {
		unsigned util = (unsigned)atoi(us);
		char workloads[64];
		char *wsave = NULL;

		if (util < 1 || util > 99)
			usage();
		snprintf(workloads, sizeof(workloads), "%s", o.workloads);
		for (char *w = strtok_r(workloads, ",", &wsave); w;
		     w = strtok_r(NULL, ",", &wsave)) {
			char policies[64];
			char *psave = NULL;

			if (strcmp(w, "hot") && strcmp(w, "uniform"))
				usage();
			snprintf(policies, sizeof(policies), "%s", o.policies);
			for (char *pol = strtok_r(policies, ",", &psave); pol;
			     pol = strtok_r(NULL, ",", &psave)) {
				struct figure f;
				uint8_t policy;
				int err;

				if (!strcmp(pol, "cost-benefit"))
					policy = VOL_CLEAN_COST_BENEFIT;
				else if (!strcmp(pol, "greedy"))
					policy = VOL_CLEAN_GREEDY;
				else
					usage();
				err = run(&o, util, !strcmp(w, "hot"), policy, &f);
				if (err == -ENOSPC) {
					printf("%-5u %-8s %-13s %8" PRIu64
					       "   ENOSPC in the %s after %" PRIu64 " blocks\n",
					       util, w, pol, f.live, f.phase, f.done);
					continue;
				}
				if (err)
					die("vol_close", err);
				printf("%-5u %-8s %-13s %8" PRIu64
				       " %7.2f %7.2f %8.2f %7.2f %9" PRIu64 " %9" PRIu64 "\n",
				       util, w, pol, f.live,
				       (double)(f.read + f.moved + f.written_new) /
					   (double)f.written_new,
				       (double)(f.read + f.written) / (double)f.written_new,
				       2.0 / (1.0 - util / 100.0),
				       f.victims
					   ? (double)f.moved / (double)(f.victims * o.seg_blocks)
					   : 0.0,
				       f.victims, f.released);
				fflush(stdout);
			}
		}
	}
	return 0;
}

/*
 * snap_bench.c - the time cairn_snapshot_create takes against the number
 * of files the volume holds. It should not depend on it: a snapshot keeps
 * the newest durable state by marking the segments that hold it, a pass
 * over the segments (src/vol/snap.c), and writes one 128-byte record, so
 * 1,000 files and 1,000,000 files should give the same latency on
 * volumes of the same size.
 *
 * For each N of --files (default 1000,1000000), on a new volume:
 *
 *   mkfs      cairn_mkfs of a new sparse image (--image, --size; default
 *             block and segment size), cairn_open (--cache MiB of buffer
 *             cache);
 *   populate  N empty regular files, --per-dir to a directory (d0000000,
 *             d0000001, ... under the root), made with cairn_mkdir and
 *             cairn_mknod (inode-based: no path walk, no open to
 *             release), then cairn_syncfs. Timed, informative: files/s,
 *             and the space the files took (cairn_statfs's used blocks
 *             after, minus those of the new volume);
 *   create    --repeat K snapshots (snap-000, snap-001, ...), one after
 *             the other, each call timed alone, wall time and the
 *             process's CPU time. Nothing changes between them: each
 *             pins the same files, and its commit writes only the
 *             snapshot table's record. Before each call, the flush
 *             reference below is taken once;
 *   reopen    cairn_close and cairn_open of the populated volume, 3
 *             times, each open timed alone (wall), with the image's
 *             pages dropped from the page cache before it
 *             (POSIX_FADV_DONTNEED), as after a reboot: what an open
 *             costs against the files it holds;
 *   list      cairn_snapshot_list must return the K names;
 *   delete    the K snapshots, oldest first, each call timed alone.
 *             Informative: a deletion asks for a recount of what the
 *             snapshots left keep (a walk of the maps, src/vol/usage.c),
 *             so it may grow with N;
 *   close     cairn_close; the image is removed before the next N and at
 *             the end.
 *
 * The flush reference ("flush"): one 4 KiB pwrite and one fdatasync of a
 * small file beside the image (<image>.flush, written in full first,
 * removed at the end). A creation is one commit, i.e. one fdatasync of
 * the image, so on a fast machine its latency is that of a flush plus
 * the volume's work. Taking the two in turn lets them be compared in the
 * same conditions: a VM's flush latency moves by 10x from one moment to
 * the next (bench/README.md).
 *
 * Figures, per N (one key=value line per phase as it completes, the
 * samples in call order on a comment line, then a summary table): min,
 * median and max of the K latencies in microseconds (the median of an
 * even K is the mean of the two middle ones). cpu-us is the median of the
 * process's CPU time per create (CLOCK_PROCESS_CPUTIME_ID: every thread,
 * the commit thread included): the volume's own work, whatever the disk
 * does. "x first" divides a median by the same median at the first N of
 * --files: for the default list, median(1000000) / median(1000). Wall
 * times are CLOCK_MONOTONIC.
 *
 * Not a test: it asserts nothing about speed and meson test does not run
 * it. It uses only the public API (include/cairn/cairn.h).
 */
#include "bench_util.h"
#include <cairn/cairn.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define BENCH_IMAGE	"/var/tmp/cairn-snap-bench.img"
#define BENCH_SIZE	(8ULL << 30) /* default image size */
#define BENCH_MIB	(1024.0 * 1024.0)
#define BENCH_MAX_LIST	16	  /* entries of --files */
#define BENCH_MAX_FILES 100000000 /* per N */
#define BENCH_MAX_SNAPS 1000	  /* --repeat; the volume keeps 1024 */
#define BENCH_FLUSH_BS	4096u	  /* the flush reference's write */
#define BENCH_FLUSH_N	256u	  /* blocks of its file, written in turn */

struct bench_opts {
	const char *bo_image;
	char bo_flush[4096];		   /* the flush reference's file */
	uint64_t bo_size;		   /* bytes of the image */
	uint64_t bo_files[BENCH_MAX_LIST]; /* N per volume */
	unsigned bo_nfiles;
	uint32_t bo_repeat;  /* K snapshots per N */
	uint32_t bo_per_dir; /* files per directory */
	uint32_t bo_cache;   /* coo_cache_mb; 0: the library's default */
};

/* min, median, max of K samples (us) */
struct bench_stat {
	double bs_min, bs_median, bs_max;
};

struct bench_result {
	uint64_t br_files;
	uint64_t br_dirs;
	double br_populate_s;
	double br_used_mib;	     /* cairn_statfs: what populate took */
	struct bench_stat br_create; /* wall, us */
	struct bench_stat br_cpu;    /* process CPU per create, us */
	struct bench_stat br_flush;  /* the reference, us */
	struct bench_stat br_delete; /* wall, us */
	struct bench_stat br_reopen; /* cairn_open, wall, us */
};

static int bench_cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* Sorts @v. */
static struct bench_stat bench_stat_of(double *v, size_t n)
{
	qsort(v, n, sizeof(*v), bench_cmp_double);
	return (struct bench_stat){
	    .bs_min = v[0],
	    .bs_median = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2,
	    .bs_max = v[n - 1],
	};
}

static void bench_fail(const char *what, long err)
{
	fprintf(stderr, "snap_bench: %s: %s\n", what, strerror((int)-err));
}

/* The samples in call order on a comment line, then the key=value line; sorts @v. */
static struct bench_stat bench_report(const char *what, uint64_t files, double *v, size_t n,
				      const char *extra)
{
	struct bench_stat s;

	printf("# %s files=%" PRIu64 " samples-us=", what, files);
	for (size_t i = 0; i < n; i++)
		printf("%s%.0f", i ? "," : "", v[i]);
	printf("\n");
	s = bench_stat_of(v, n);
	printf("%s files=%" PRIu64 " n=%zu min-us=%.0f median-us=%.0f max-us=%.0f%s\n", what, files,
	       n, s.bs_min, s.bs_median, s.bs_max, extra);
	fflush(stdout);
	return s;
}

/* ---- the flush reference -------------------------------------------------------- */

/* Create the reference's file (it must not exist), written in full and flushed. */
static int bench_flush_create(const struct bench_opts *o, int *fd)
{
	static char block[BENCH_FLUSH_BS];
	int err = 0;

	*fd = open(o->bo_flush, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (*fd < 0)
		return -errno;
	for (unsigned i = 0; i < BENCH_FLUSH_N && !err; i++)
		if (pwrite(*fd, block, sizeof(block), (off_t)i * BENCH_FLUSH_BS) != sizeof(block))
			err = -EIO;
	if (!err && fdatasync(*fd) < 0)
		err = -errno;
	if (err) {
		close(*fd);
		unlink(o->bo_flush);
	}
	return err;
}

/* One 4 KiB overwrite and fdatasync; its wall time in us. */
static int bench_flush_once(int fd, unsigned i, double *us)
{
	static char block[BENCH_FLUSH_BS];
	uint64_t t0 = bench_now_ns();

	block[0] = (char)i;
	if (pwrite(fd, block, sizeof(block), (off_t)(i % BENCH_FLUSH_N) * BENCH_FLUSH_BS) !=
	    sizeof(block))
		return -EIO;
	if (fdatasync(fd) < 0)
		return -errno;
	*us = (double)(bench_now_ns() - t0) / 1e3;
	return 0;
}

/* ---- one volume ----------------------------------------------------------------- */

/* N empty files, --per-dir to a directory, then cairn_syncfs. */
static int bench_populate(const struct bench_opts *o, struct cairn *c, struct bench_result *r)
{
	uint64_t n = r->br_files, dir = 0, t0 = bench_now_ns(), step = n / 10;
	struct cairn_stat st;
	char name[32];
	int err = 0;

	for (uint64_t i = 0; i < n && !err; i++) {
		if (i % o->bo_per_dir == 0) {
			snprintf(name, sizeof(name), "d%07" PRIu64, i / o->bo_per_dir);
			err = cairn_mkdir(c, CAIRN_ROOT_INO, name, 0755, NULL, &st);
			if (err) {
				bench_fail("cairn_mkdir", err);
				break;
			}
			dir = st.cs_ino;
			r->br_dirs++;
		}
		snprintf(name, sizeof(name), "f%08" PRIu64, i);
		err = cairn_mknod(c, dir, name, S_IFREG | 0644, 0, NULL, NULL);
		if (err)
			bench_fail("cairn_mknod", err);
		if (n >= 100000 && (i + 1) % step == 0)
			fprintf(stderr, "# populate files=%" PRIu64 "/%" PRIu64 " s=%.1f\n", i + 1,
				n, (double)(bench_now_ns() - t0) / 1e9);
	}
	if (!err && (err = cairn_syncfs(c)))
		bench_fail("cairn_syncfs", err);
	r->br_populate_s = (double)(bench_now_ns() - t0) / 1e9;
	return err;
}

/* cairn_snapshot_list must name exactly snap-000 .. snap-(K-1). */
static int bench_check_list(struct cairn *c, uint32_t k)
{
	struct cairn_snapshot *s;
	bool *seen = calloc(k ? k : 1, sizeof(*seen));
	size_t n;
	int err;

	if (!seen)
		return -ENOMEM;
	err = cairn_snapshot_list(c, &s, &n);
	if (err) {
		bench_fail("cairn_snapshot_list", err);
		free(seen);
		return err;
	}
	for (size_t i = 0; i < n && !err; i++) {
		unsigned x;
		char end;

		if (sscanf(s[i].cs_name, "snap-%u%c", &x, &end) != 1 || x >= k || seen[x])
			err = -EINVAL;
		else
			seen[x] = true;
	}
	if (!err && n != k)
		err = -EINVAL;
	if (err)
		fprintf(stderr,
			"snap_bench: cairn_snapshot_list: %zu snapshots, expected %" PRIu32
			" (snap-000 ...)\n",
			n, k);
	free(s);
	free(seen);
	return err;
}

/* K creations (each after one flush reference), the list, K deletions. */
static int bench_snapshots(const struct bench_opts *o, struct cairn *c, int flush_fd,
			   struct bench_result *r)
{
	uint32_t k = o->bo_repeat;
	double *wall = calloc(k, sizeof(double)), *cpu = calloc(k, sizeof(double));
	double *flush = calloc(k, sizeof(double));
	char name[16], extra[64];
	int err = wall && cpu && flush ? 0 : -ENOMEM;

	for (uint32_t i = 0; i < k && !err; i++) {
		uint64_t t0, c0;

		err = bench_flush_once(flush_fd, i, &flush[i]);
		if (err) {
			bench_fail("the flush reference", err);
			break;
		}
		snprintf(name, sizeof(name), "snap-%03" PRIu32, i);
		c0 = bench_clock_ns(CLOCK_PROCESS_CPUTIME_ID);
		t0 = bench_now_ns();
		err = cairn_snapshot_create(c, name);
		wall[i] = (double)(bench_now_ns() - t0) / 1e3;
		cpu[i] = (double)(bench_clock_ns(CLOCK_PROCESS_CPUTIME_ID) - c0) / 1e3;
		if (err)
			bench_fail("cairn_snapshot_create", err);
	}
	if (err)
		goto out;
	r->br_cpu = bench_stat_of(cpu, k);
	snprintf(extra, sizeof(extra), " cpu-median-us=%.0f", r->br_cpu.bs_median);
	r->br_create = bench_report("create", r->br_files, wall, k, extra);
	r->br_flush = bench_report("flush", r->br_files, flush, k, "");
	err = bench_check_list(c, k);
	for (uint32_t i = 0; i < k && !err; i++) {
		uint64_t t0;

		snprintf(name, sizeof(name), "snap-%03" PRIu32, i);
		t0 = bench_now_ns();
		err = cairn_snapshot_delete(c, name);
		wall[i] = (double)(bench_now_ns() - t0) / 1e3;
		if (err)
			bench_fail("cairn_snapshot_delete", err);
	}
	if (!err)
		err = bench_check_list(c, 0);
	if (!err)
		r->br_delete = bench_report("delete", r->br_files, wall, k, "");
out:
	free(wall);
	free(cpu);
	free(flush);
	return err;
}

/* Used space of the volume, MiB. */
static int bench_used_mib(struct cairn *c, double *mib)
{
	struct statvfs sv;
	int err = cairn_statfs(c, &sv);

	if (err)
		bench_fail("cairn_statfs", err);
	else
		*mib = (double)(sv.f_blocks - sv.f_bfree) * (double)sv.f_frsize / BENCH_MIB;
	return err;
}

#define BENCH_REOPENS 3

/* Drop the clean pages of @path from the page cache (best effort). */
static void bench_drop_pages(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return;
	(void)fdatasync(fd);
	(void)posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
	close(fd);
}

/* Close *@c and open it again, BENCH_REOPENS times, each open timed. */
static int bench_reopen(const struct bench_opts *o, struct cairn **c, struct bench_result *r)
{
	struct cairn_open_opts oo = {.coo_cache_mb = o->bo_cache};
	double wall[BENCH_REOPENS];
	int err = 0;

	for (unsigned i = 0; i < BENCH_REOPENS && !err; i++) {
		uint64_t t0;

		err = cairn_close(*c);
		*c = NULL;
		if (err) {
			bench_fail("cairn_close", err);
			break;
		}
		bench_drop_pages(o->bo_image);
		t0 = bench_now_ns();
		err = cairn_open(o->bo_image, &oo, c);
		wall[i] = (double)(bench_now_ns() - t0) / 1e3;
		if (err)
			bench_fail("cairn_open", err);
	}
	if (!err)
		r->br_reopen = bench_report("reopen", r->br_files, wall, BENCH_REOPENS, "");
	return err;
}

/* One N: a new volume, populate, reopen, snapshots, close. */
static int bench_one(const struct bench_opts *o, int flush_fd, struct bench_result *r)
{
	struct cairn_mkfs_opts mo = {.cmo_size = o->bo_size};
	struct cairn_open_opts oo = {.coo_cache_mb = o->bo_cache};
	double used0 = 0, used1 = 0;
	struct cairn *c;
	int err, cerr;

	err = cairn_mkfs(o->bo_image, &mo);
	if (err) {
		bench_fail("cairn_mkfs", err);
		return err;
	}
	err = cairn_open(o->bo_image, &oo, &c);
	if (err) {
		bench_fail("cairn_open", err);
		return err;
	}
	err = bench_used_mib(c, &used0);
	if (!err)
		err = bench_populate(o, c, r);
	if (!err && !(err = bench_used_mib(c, &used1))) {
		r->br_used_mib = used1 - used0;
		printf("populate files=%" PRIu64 " dirs=%" PRIu64
		       " s=%.2f files/s=%.0f used-MiB=%.1f\n",
		       r->br_files, r->br_dirs, r->br_populate_s,
		       (double)r->br_files / r->br_populate_s, r->br_used_mib);
		fflush(stdout);
	}
	if (!err)
		err = bench_reopen(o, &c, r);
	if (!err)
		err = bench_snapshots(o, c, flush_fd, r);
	cerr = c ? cairn_close(c) : 0;
	if (cerr)
		bench_fail("cairn_close", cerr);
	return err ? err : cerr;
}

static void bench_summary(const struct bench_result *r, unsigned n)
{
	const struct bench_result *f = &r[0];

	printf("\n%9s %10s %8s %9s %9s %9s %8s %8s %9s %9s %9s %9s\n", "files", "populate-s",
	       "used-MiB", "create-us", "min", "max", "x first", "cpu-us", "x first", "flush-us",
	       "delete-us", "reopen-us");
	for (unsigned i = 0; i < n; i++)
		printf("%9" PRIu64
		       " %10.2f %8.1f %9.0f %9.0f %9.0f %7.2fx %8.0f %8.2fx %9.0f %9.0f %9.0f\n",
		       r[i].br_files, r[i].br_populate_s, r[i].br_used_mib,
		       r[i].br_create.bs_median, r[i].br_create.bs_min, r[i].br_create.bs_max,
		       r[i].br_create.bs_median / f->br_create.bs_median, r[i].br_cpu.bs_median,
		       r[i].br_cpu.bs_median / f->br_cpu.bs_median, r[i].br_flush.bs_median,
		       r[i].br_delete.bs_median, r[i].br_reopen.bs_median);
	for (unsigned i = 1; i < n; i++)
		printf("ratio files=%" PRIu64 "/%" PRIu64 " create-median=%.2f cpu-median=%.2f "
		       "flush-median=%.2f\n",
		       r[i].br_files, f->br_files,
		       r[i].br_create.bs_median / f->br_create.bs_median,
		       r[i].br_cpu.bs_median / f->br_cpu.bs_median,
		       r[i].br_flush.bs_median / f->br_flush.bs_median);
}

/* ---- options ------------------------------------------------------------------- */

static void bench_usage(FILE *f)
{
	fprintf(f,
		"usage: snap_bench [--files N1,N2,...] [--repeat K] [--per-dir N]\n"
		"                  [--image PATH] [--size N[KMG]] [--cache MIB]\n"
		"  --files L      files on the volume, one new volume each\n"
		"                 (default 1000,1000000; at most %d values)\n"
		"  --repeat K     snapshots created, then deleted, per volume, 1..%d\n"
		"                 (default 10)\n"
		"  --per-dir N    files per directory (default 1000)\n"
		"  --image PATH   image file to create, sparse (default %s);\n"
		"                 it and PATH.flush must not exist; both are removed\n"
		"  --size N       image size (default 8G)\n"
		"  --cache MIB    buffer cache (coo_cache_mb; default 0: the library's, 64)\n"
		"  --help         this text\n",
		BENCH_MAX_LIST, BENCH_MAX_SNAPS, BENCH_IMAGE);
}

/* One unsigned number in @min..@max, the whole of @s. */
static int bench_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	char *end;
	unsigned long long x;

	errno = 0;
	x = strtoull(s, &end, 10);
	if (end == s || *end || errno || *s == '-' || x < min || x > max)
		return -EINVAL;
	*out = x;
	return 0;
}

/* "1000,1000000" into @out; -EINVAL if malformed. */
static int bench_parse_list(const char *s, uint64_t *out, unsigned *n)
{
	char buf[256], *save = NULL;

	if (strlen(s) >= sizeof(buf) || !*s || s[strlen(s) - 1] == ',')
		return -EINVAL;
	strcpy(buf, s);
	*n = 0;
	for (char *p = strtok_r(buf, ",", &save); p; p = strtok_r(NULL, ",", &save))
		if (*n == BENCH_MAX_LIST || bench_parse_u64(p, 1, BENCH_MAX_FILES, &out[(*n)++]))
			return -EINVAL;
	return *n ? 0 : -EINVAL;
}

static int bench_parse_one(struct bench_opts *o, int ch, const char *arg)
{
	uint64_t x;
	int err;

	switch (ch) {
	case 'f':
		return bench_parse_list(arg, o->bo_files, &o->bo_nfiles);
	case 'r':
		err = bench_parse_u64(arg, 1, BENCH_MAX_SNAPS, &x);
		o->bo_repeat = (uint32_t)x;
		return err;
	case 'd':
		err = bench_parse_u64(arg, 1, UINT32_MAX, &x);
		o->bo_per_dir = (uint32_t)x;
		return err;
	case 'i':
		o->bo_image = arg;
		return 0;
	case 'z':
		return bench_parse_size(arg, &o->bo_size);
	case 'c':
		err = bench_parse_u64(arg, 0, UINT32_MAX, &x);
		o->bo_cache = (uint32_t)x;
		return err;
	default:
		return -EINVAL;
	}
}

/* 0, 1 for --help, -EINVAL. */
static int bench_parse(struct bench_opts *o, int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"files", required_argument, NULL, 'f'},   {"repeat", required_argument, NULL, 'r'},
	    {"per-dir", required_argument, NULL, 'd'}, {"image", required_argument, NULL, 'i'},
	    {"size", required_argument, NULL, 'z'},    {"cache", required_argument, NULL, 'c'},
	    {"help", no_argument, NULL, 'h'},	       {NULL, 0, NULL, 0},
	};
	int ch;

	while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		if (ch == 'h')
			return 1;
		if (bench_parse_one(o, ch, optarg))
			return -EINVAL;
	}
	if ((size_t)snprintf(o->bo_flush, sizeof(o->bo_flush), "%s.flush", o->bo_image) >=
	    sizeof(o->bo_flush))
		return -EINVAL;
	return optind == argc ? 0 : -EINVAL;
}

int main(int argc, char **argv)
{
	static struct bench_result res[BENCH_MAX_LIST];
	static struct bench_opts o = {
	    .bo_image = BENCH_IMAGE,
	    .bo_size = BENCH_SIZE,
	    .bo_files = {1000, 1000000},
	    .bo_nfiles = 2,
	    .bo_repeat = 10,
	    .bo_per_dir = 1000,
	};
	struct stat st;
	unsigned done = 0;
	int err, flush_fd;

	err = bench_parse(&o, argc, argv);
	if (err) {
		bench_usage(err > 0 ? stdout : stderr);
		return err > 0 ? 0 : 2;
	}
	if (stat(o.bo_image, &st) == 0 || errno != ENOENT) {
		fprintf(stderr, "snap_bench: %s exists (or cannot be checked); remove it first\n",
			o.bo_image);
		return 1;
	}
	err = bench_flush_create(&o, &flush_fd);
	if (err) {
		fprintf(stderr, "snap_bench: cannot create %s: %s\n", o.bo_flush, strerror(-err));
		return 1;
	}
	printf("# snap_bench: image %s, %.0f MiB sparse; %" PRIu32 " files per directory; %" PRIu32
	       " snapshots per volume; cache %s%" PRIu32 " MiB\n",
	       o.bo_image, (double)o.bo_size / BENCH_MIB, o.bo_per_dir, o.bo_repeat,
	       o.bo_cache ? "" : "default, ", o.bo_cache ? o.bo_cache : 64);
	fflush(stdout);
	for (unsigned i = 0; i < o.bo_nfiles && !err; i++) {
		res[i].br_files = o.bo_files[i];
		err = bench_one(&o, flush_fd, &res[i]);
		if (!err)
			done++;
		unlink(o.bo_image); /* the next N gets a new sparse image */
	}
	close(flush_fd);
	unlink(o.bo_flush);
	if (done)
		bench_summary(res, done);
	return err ? 1 : 0;
}

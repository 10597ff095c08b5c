/*
 * test_ns_corrupt.c - a damaged filesystem image makes open or fsck fail
 * with an error, never a crash, a hang or a sanitizer report.
 *
 * A small filesystem is built on the emulated device through libcairn:
 * directories (one deep enough for a multi-block B+tree), files of a few
 * blocks, hard links, symlinks (inline and long), xattrs (so xattr
 * owners exist), and a file unlinked while open (so the orphan list,
 * owner 10, holds an entry); its image is taken while that file is still
 * open. Every file data block starts with a marker, so the blocks of the
 * image that are not data are metadata: log headers and summaries, map
 * and owner-table blocks, the super root and checkpoints, the inode file
 * (owner 8), the bitmap (9), directories, the orphan list (10), the
 * namespace superblock (11) and xattr blobs. Nothing names their
 * addresses to a client (the volume exposes none), hence the marker.
 *
 * Each case damages a copy, seeded: 1 to 3 blocks (metadata blocks
 * 7 times in 8, half of those among the newest NK_TAIL, which hold the
 * live copies of the last commits' metadata; any written block otherwise), each with 1 to 16
 * flipped bits, a flipped 8-byte word, or zeroed. Then: ns_open_dev (recovery, orphan replay),
 * syncfs, vol_check, ns_check, a walk of the whole tree reading every file, symlink and xattr list,
 * and cairn_close. Each step may fail with a negative errno or report problems; none may crash,
 * hang (the watchdog) or trip a sanitizer. A crash prints the case's
 * line (a signal handler, and the sanitizers' death callback):
 *   corrupt case: CAIRN_SEED=<s> case=<i>
 * and the base image is kept in /tmp (it differs from run to run: times,
 * commits); CAIRN_CORRUPT_IMAGE=<file> CAIRN_CORRUPT_CASE=<i> replays a
 * case on it, CAIRN_CORRUPT_CASE=<i> alone runs that case only; CAIRN_CORRUPT_CASES=<n>
 * runs more (default 200, 100 when CAIRN_WATCHDOG_SCALE is set).
 */
#include "harness.h"

#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#include <sanitizer/common_interface_defs.h>
#define NK_SANITIZED 1
#endif

#include "bdev/bdev.h"
#include "cairn/cairn.h"
#include "ns/check.h"
#include "ns/ns.h"
#include "vol/vol.h"

#define NK_BS	    4096u
#define NK_NBLOCKS  4096u /* 16 MiB */
#define NK_SEED	    20251123u
#define NK_MARK	    "CAIRN-TEST-FILEDATA:"
#define NK_WALK_MAX 4096u /* entries a walk visits at most */
#define NK_TAIL	    96u /* the newest metadata blocks (a copy-on-write log: older ones are stale) */

static char nk_line[512]; /* the case running, for the crash handlers */

static void nk_say_line(void)
{
	ssize_t n = write(2, nk_line, strlen(nk_line));

	(void)n;
}

static void nk_signal(int sig)
{
	nk_say_line();
	signal(sig, SIG_DFL);
	raise(sig);
}

static void nk_handlers(void)
{
	static const int sigs[] = {SIGSEGV, SIGBUS, SIGABRT, SIGFPE, SIGILL};

	for (size_t i = 0; i < ARRAY_SIZE(sigs); i++)
		signal(sigs[i], nk_signal);
#ifdef NK_SANITIZED
	__sanitizer_set_death_callback(nk_say_line);
#endif
}

/* ---- the filesystem ------------------------------------------------------- */

static void nk_data(unsigned char *buf, size_t n, uint64_t salt)
{
	struct prng p;

	prng_init(&p, salt);
	prng_fill(&p, buf, n);
	for (size_t b = 0; b < n; b += NK_BS)
		memcpy(buf + b, NK_MARK, MIN(sizeof(NK_MARK) - 1, n - b));
}

static uint64_t nk_file(struct cairn *c, const char *path, size_t n, uint64_t salt)
{
	static unsigned char buf[6 * NK_BS];
	uint64_t ino;

	assert_true(n <= sizeof(buf));
	nk_data(buf, n, salt);
	assert_int_equal(cairn_create_path(c, path, 0644, CAIRN_O_EXCL, NULL, &ino), 0);
	if (n)
		assert_int_equal(cairn_pwrite(c, ino, buf, n, 0), (ssize_t)n);
	assert_int_equal(cairn_release(c, ino), 0);
	return ino;
}

/* The image of a small, varied filesystem, as an emulated device. */
static struct bdev *nk_build(void)
{
	struct cairn_mkfs_opts mo = {.cmo_size = (uint64_t)NK_NBLOCKS * NK_BS,
				     .cmo_seg_blocks = 64};
	const struct cairn_open_opts oo = {.coo_cache_mb = 32, .coo_max_age_ms = 3600000};
	char path[64], name[64], target[300];
	struct bdev *f, *d, *img;
	struct cairn_stat st;
	struct cairn *c;
	uint64_t ino;
	int fd;

	snprintf(path, sizeof(path), "/tmp/cairn-ns-corrupt-XXXXXX");
	fd = mkstemp(path);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(unlink(path), 0);
	assert_int_equal(cairn_mkfs(path, &mo), 0);
	assert_int_equal(bdev_open_file(path, NK_BS, 0, BDEV_RDONLY, &f), 0);
	assert_int_equal(bdev_emu_open_copy(f, &d), 0);
	bdev_close(f);
	unlink(path);

	assert_int_equal(ns_open_dev(d, &oo, &c), 0);
	assert_int_equal(cairn_mkdir_path(c, "a", 0755, NULL), 0);
	assert_int_equal(cairn_mkdir_path(c, "a/b", 0700, NULL), 0);
	assert_int_equal(cairn_mkdir_path(c, "big", 0755, NULL), 0);
	assert_int_equal(cairn_lstat_path(c, "big", &st), 0);
	for (unsigned i = 0; i < 6; i++) {
		snprintf(name, sizeof(name), "a/file%u", i);
		ino = nk_file(c, name, 1 + i * 4000, i + 1);
		assert_int_equal(cairn_setxattr(c, ino, "user.k", name, strlen(name), 0), 0);
	}
	nk_file(c, "a/b/deep", 3 * NK_BS + 5, 99);
	for (unsigned i = 0; i < 300; i++) { /* a directory of several blocks */
		snprintf(name, sizeof(name), "big/entry-with-a-longish-name-%04u", i);
		if (i % 30 == 0)
			nk_file(c, name, 100 + i, 1000 + i);
		else
			assert_int_equal(cairn_mknod(c, st.cs_ino, strchr(name, '/') + 1,
						     S_IFIFO | 0644, 0, NULL, NULL),
					 0);
	}
	assert_int_equal(cairn_link_path(c, "a/file1", "a/b/hard"), 0);
	assert_int_equal(cairn_symlink_path(c, "a/file2", "short", NULL), 0);
	memset(target, 'x', sizeof(target) - 1);
	target[sizeof(target) - 1] = 0;
	assert_int_equal(cairn_symlink_path(c, target, "a/long", NULL), 0);
	/* an orphan: unlinked while open, image taken while it is open */
	ino = nk_file(c, "gone", 2 * NK_BS, 7);
	assert_int_equal(cairn_open_inode(c, ino), 0);
	assert_int_equal(cairn_unlink_path(c, "gone"), 0);
	assert_int_equal(cairn_syncfs(c), 0);
	assert_int_equal(bdev_emu_open_copy(d, &img), 0);
	assert_int_equal(cairn_release(c, ino), 0);
	assert_int_equal(cairn_close(c), 0);
	return img;
}

/* ---- the walk --------------------------------------------------------------- */

struct nk_walk {
	struct cairn *w_c;
	unsigned w_visited;
	unsigned w_errors;
};

struct nk_names {
	char (*n)[CAIRN_NAME_MAX + 1];
	size_t len, cap;
};

static int nk_collect(void *ctx, const char *name, size_t len, uint64_t ino, unsigned type,
		      uint64_t next)
{
	struct nk_names *ns = ctx;

	(void)ino, (void)type, (void)next;
	if (len > CAIRN_NAME_MAX)
		return 1;
	if ((len == 1 && name[0] == '.') || (len == 2 && name[0] == '.' && name[1] == '.'))
		return 0;
	if (ns->len >= NK_WALK_MAX)
		return 1;
	if (ns->len == ns->cap) {
		ns->cap = ns->cap ? ns->cap * 2 : 16;
		ns->n = realloc(ns->n, ns->cap * sizeof(*ns->n));
		assert_non_null(ns->n);
	}
	memcpy(ns->n[ns->len], name, len);
	ns->n[ns->len++][len] = 0;
	return 0;
}

static void nk_err(struct nk_walk *w, long err)
{
	assert_true(err <= 0);
	if (err < 0)
		w->w_errors++;
}

/* Visit everything under @dir; errors are counted, limits stop loops. */
static void nk_walk_dir(struct nk_walk *w, uint64_t dir, unsigned depth)
{
	static unsigned char buf[64 * 1024];
	struct nk_names ns = {0};
	int err = cairn_readdir(w->w_c, dir, 0, nk_collect, &ns);

	nk_err(w, err);
	for (size_t i = 0; i < ns.len && w->w_visited < NK_WALK_MAX; i++) {
		struct cairn_stat st;
		ssize_t n;

		w->w_visited++;
		err = cairn_lookup(w->w_c, dir, ns.n[i], &st);
		nk_err(w, err);
		if (err)
			continue;
		n = cairn_listxattr(w->w_c, st.cs_ino, (char *)buf, sizeof(buf));
		nk_err(w, n < 0 ? n : 0);
		if (S_ISDIR(st.cs_mode)) {
			if (depth < 8)
				nk_walk_dir(w, st.cs_ino, depth + 1);
		} else if (S_ISREG(st.cs_mode)) {
			nk_err(w, cairn_open_inode(w->w_c, st.cs_ino));
			for (uint64_t off = 0; off < st.cs_size && off < (1u << 20);
			     off += sizeof(buf)) {
				n = cairn_pread(w->w_c, st.cs_ino, buf, sizeof(buf), off);
				nk_err(w, n < 0 ? n : 0);
				if (n <= 0)
					break;
			}
			cairn_release(w->w_c, st.cs_ino);
		} else if (S_ISLNK(st.cs_mode)) {
			n = cairn_readlink(w->w_c, st.cs_ino, (char *)buf, sizeof(buf));
			nk_err(w, n < 0 ? n : 0);
		}
	}
	free(ns.n);
}

/* ---- cases ---------------------------------------------------------------- */

struct nk_image {
	struct bdev *i_dev;
	uint64_t *i_meta; /* written blocks that are not file data */
	uint64_t *i_all;  /* every written block */
	size_t i_nmeta, i_nall;
};

static void nk_scan(struct nk_image *im)
{
	static unsigned char blk[NK_BS], zero[NK_BS];
	uint64_t n = bdev_nblocks(im->i_dev);

	im->i_meta = calloc(n, sizeof(uint64_t));
	im->i_all = calloc(n, sizeof(uint64_t));
	assert_true(im->i_meta && im->i_all);
	for (uint64_t b = 0; b < n; b++) {
		assert_int_equal(bdev_read(im->i_dev, b, 1, blk), 0);
		if (!memcmp(blk, zero, NK_BS))
			continue;
		im->i_all[im->i_nall++] = b;
		if (memcmp(blk, NK_MARK, sizeof(NK_MARK) - 1))
			im->i_meta[im->i_nmeta++] = b;
	}
	print_message("# image: %zu blocks written, %zu of them metadata\n", im->i_nall,
		      im->i_nmeta);
}

static void nk_vreport(void *arg, const char *msg)
{
	(void)msg;
	++*(unsigned *)arg;
}

static void nk_nreport(void *ctx, uint64_t ino, const char *problem)
{
	(void)ino, (void)problem;
	++*(unsigned *)ctx;
}

struct nk_result {
	int r_open, r_sync, r_vcheck, r_ncheck, r_close;
	unsigned r_walk_errors;
};

static const char *nk_base; /* the base image's file, for the replay line */

/* Case @i; @sweep: the whole block meta[nmeta - 1 - i] inverted (i even) or zeroed (odd). */
static void nk_case(const struct nk_image *im, uint64_t seed, uint64_t i, bool sweep,
		    struct nk_result *res)
{
	static unsigned char blk[NK_BS];
	const struct cairn_open_opts oo = {.coo_cache_mb = 16};
	struct ns_check_stats st;
	struct bdev *d;
	struct cairn *c;
	struct prng p;
	unsigned nblk, problems = 0;

	snprintf(nk_line, sizeof(nk_line),
		 "# corrupt case: CAIRN_SEED=%" PRIu64 " case=%s%" PRIu64 " image=%s\n"
		 "# replay: CAIRN_SEED=%" PRIu64 " CAIRN_CORRUPT_CASE=%s%" PRIu64
		 " CAIRN_CORRUPT_IMAGE=%s\n",
		 seed, sweep ? "s" : "", i, nk_base, seed, sweep ? "s" : "", i, nk_base);
	memset(res, 0, sizeof(*res));
	prng_init(&p, seed ^ (i * 0x9e3779b97f4a7c15ULL));
	assert_int_equal(bdev_emu_open_copy(im->i_dev, &d), 0);
	nblk = sweep ? 0 : 1 + (unsigned)prng_below(&p, 3);
	if (sweep) {
		uint64_t b = im->i_meta[im->i_nmeta - 1 - i / 2];

		assert_int_equal(bdev_read(d, b, 1, blk), 0);
		for (unsigned j = 0; j < NK_BS; j++)
			blk[j] = i % 2 ? 0 : (unsigned char)~blk[j];
		assert_int_equal(bdev_write(d, b, 1, blk), 0);
	}
	for (unsigned k = 0; k < nblk; k++) {
		bool meta = prng_chance(&p, 7, 8) && im->i_nmeta;
		/* half the metadata picks among the newest (highest) blocks: live, not stale */
		size_t tail = MIN(im->i_nmeta, (size_t)NK_TAIL);
		uint64_t b = !meta ? im->i_all[prng_below(&p, im->i_nall)]
			     : prng_chance(&p, 1, 2)
				 ? im->i_meta[im->i_nmeta - 1 - prng_below(&p, tail)]
				 : im->i_meta[prng_below(&p, im->i_nmeta)];
		unsigned how = (unsigned)prng_below(&p, 8);

		assert_int_equal(bdev_read(d, b, 1, blk), 0);
		if (how == 0) {
			memset(blk, 0, NK_BS);
		} else if (how == 1) {
			uint64_t w = prng_below(&p, NK_BS / 8);

			for (unsigned j = 0; j < 8; j++)
				blk[w * 8 + j] ^= 0xff;
		} else {
			unsigned flips = 1 + (unsigned)prng_below(&p, 16);

			for (unsigned j = 0; j < flips; j++) {
				uint64_t bit = prng_below(&p, NK_BS * 8);

				blk[bit / 8] ^= (unsigned char)(1u << (bit % 8));
			}
		}
		assert_int_equal(bdev_write(d, b, 1, blk), 0);
	}
	assert_int_equal(bdev_flush(d), 0);

	res->r_open = ns_open_dev(d, &oo, &c);
	assert_true(res->r_open <= 0);
	if (res->r_open)
		return;
	res->r_sync = cairn_syncfs(c);
	assert_true(res->r_sync <= 0);
	if (!res->r_sync) {
		res->r_vcheck = vol_check(c->c_vol, nk_vreport, &problems, NULL);
		assert_true(res->r_vcheck <= 0 || (unsigned)res->r_vcheck == problems);
	}
	res->r_ncheck = ns_check(c->c_vol, nk_nreport, &problems, &st);
	assert_true(res->r_ncheck <= 0);
	{
		struct nk_walk w = {.w_c = c};

		nk_walk_dir(&w, CAIRN_ROOT_INO, 0);
		res->r_walk_errors = w.w_errors;
	}
	res->r_close = cairn_close(c);
	assert_true(res->r_close <= 0);
}

static void test_ns_corrupt_seeded(void **state)
{
	struct nk_image im = {0};
	uint64_t seed = test_seed("ns corrupt", NK_SEED);
	const char *one = getenv("CAIRN_CORRUPT_CASE");
	const char *ncases = getenv("CAIRN_CORRUPT_CASES");
	uint64_t n = ncases && *ncases ? strtoull(ncases, NULL, 0)
				       : (getenv("CAIRN_WATCHDOG_SCALE") ? 100 : 200);
	uint64_t first = 0, sweep_first = 0, sweep_n;
	unsigned refused = 0, vproblems = 0, nproblems = 0, walk = 0, clean = 0;

	const char *keep = getenv("CAIRN_CORRUPT_IMAGE");
	char base[64];

	(void)state;
	test_watchdog("test_ns_corrupt_seeded", 600);
	nk_handlers();
	if (keep && *keep) {
		struct bdev *f;

		snprintf(base, sizeof(base), "%s", keep);
		assert_int_equal(bdev_open_file(base, NK_BS, 0, BDEV_RDONLY, &f), 0);
		assert_int_equal(bdev_emu_open_copy(f, &im.i_dev), 0);
		bdev_close(f);
	} else {
		/* the image differs from run to run (times, commits): keep it for a replay */
		int fd;

		im.i_dev = nk_build();
		snprintf(base, sizeof(base), "/tmp/cairn-ns-corrupt-base-XXXXXX");
		fd = mkstemp(base);
		assert_true(fd >= 0);
		close(fd);
		assert_int_equal(bdev_save(im.i_dev, base), 0);
	}
	nk_scan(&im);
	nk_base = base;
	sweep_n = 2 * MIN(im.i_nmeta, (size_t)NK_TAIL);
	if (one && *one) {
		sweep_n = 0;
		if (one[0] == 's') {
			sweep_first = strtoull(one + 1, NULL, 0);
			sweep_n = 1;
			n = 0;
		} else {
			first = strtoull(one, NULL, 0);
			n = 1;
		}
	}
	for (uint64_t c = 0; c < sweep_n + n; c++) {
		bool sweep = c < sweep_n;
		uint64_t i = sweep ? sweep_first + c : first + c - sweep_n;
		struct nk_result r;
		struct timespec t0, t1;
		double secs;

		clock_gettime(CLOCK_MONOTONIC, &t0);
		nk_case(&im, seed, i, sweep, &r);
		clock_gettime(CLOCK_MONOTONIC, &t1);
		secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
		if (secs > 2.0)
			print_message("# case %s%" PRIu64 " took %.1f s\n", sweep ? "s" : "", i,
				      secs);
		if (r.r_open)
			refused++;
		else if (r.r_vcheck)
			vproblems++;
		else if (r.r_ncheck)
			nproblems++;
		else if (r.r_walk_errors || r.r_sync || r.r_close)
			walk++;
		else
			clean++;
		if (one && *one)
			print_message("# case %s%" PRIu64
				      ": open %d sync %d vol_check %d ns_check %d "
				      "walk errors %u close %d\n",
				      sweep ? "s" : "", i, r.r_open, r.r_sync, r.r_vcheck,
				      r.r_ncheck, r.r_walk_errors, r.r_close);
	}
	nk_line[0] = 0;
	if (!(keep && *keep))
		if (!getenv("CAIRN_CORRUPT_KEEP"))
			unlink(base); /* no case crashed: the image is not needed */
	print_message("# %" PRIu64 " sweep + %" PRIu64
		      " seeded cases: %u refused at open, %u vol_check problems, %u "
		      "ns_check problems, %u errors in the walk or sync, %u clean\n",
		      sweep_n, n, refused, vproblems, nproblems, walk, clean);
	bdev_close(im.i_dev);
	free(im.i_meta);
	free(im.i_all);
	test_watchdog_cancel();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_ns_corrupt_seeded),
	};

	return TEST_RUN("ns_corrupt", tests);
}

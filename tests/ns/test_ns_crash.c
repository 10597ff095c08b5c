/*
 * test_ns_crash.c - crash consistency of the filesystem: test_vol_crash's
 * approach lifted to libcairn's operations.
 *
 * A seeded workload runs through libcairn (one thread, so the device's
 * history is a function of the seed) on a volume on the emulated device
 * with its history on: create, pwrite, rename (to a new name and over an
 * existing file, across directories), unlink, link, truncate, mkdir,
 * rmdir, a file unlinked while open (kept open to the end), and now and
 * then cairn_fsync of a file or cairn_syncfs. Commits happen only when
 * the workload syncs (coo_max_age_ms is large).
 *
 * The model: after every operation the test walks the live filesystem
 * into a canonical text (every path sorted, its type, link count, size
 * and content hash, and which names share an inode), so state k is the
 * tree after operations 1..k; it also records the device's history write
 * and flush counts when each operation returned. libcairn makes every
 * operation one transaction of one delta, and deltas commit in order, so
 * after a crash the tree must be exactly some state k with
 *   lo <= k <= hi:
 *   lo = the last fsync/syncfs that returned before the cut (everything
 *        up to it is durable: more than POSIX promises, which is the
 *        fsynced file's data and, after syncfs, the names);
 *   hi = the operation in progress when the cut happened (nothing newer).
 * Being one of the states is what makes every rename all or nothing
 * (source gone and target holding the source's inode, or both as
 * before; never both names on different inodes inconsistent with
 * either, never neither), and every unlink, link and truncate too.
 *
 * For each cut: rebuild the image (bdev_emu_crash_at / _at_flush and a
 * mode), open it on a copy (ns_open_dev: recovery and the orphan list
 * replayed), syncfs, vol_check and ns_check must be clean, no orphan may
 * be left and the inodes in use must be exactly those the tree reaches
 * (the file unlinked while open is freed), the tree must be a state in
 * [lo, hi]; then "crash" right after that recovery (a copy of the
 * device) and open again: the same state, checks clean again.
 *
 * Tests: every cut (each write and each flush) of a small run with
 * DROP_ALL, KEEP_ALL, a seeded DROP_SOME and KEEP_ALL with a torn write;
 * and CAIRN_CRASH_CASES (default 120, 40 when CAIRN_WATCHDOG_SCALE is
 * set) seeded random cuts, REORDER or DROP_SOME, torn or not, of a
 * larger run. A failure prints
 *   crash case: CAIRN_SEED=<s> run=<small|large> cut=<n|fn> mode=<m> tear=<t>
 * and CAIRN_SEED, CAIRN_CRASH_RUN, CAIRN_CRASH_CUT, _MODE, _TEAR run
 * that case only (its image before recovery is saved under /tmp).
 */
#include "harness.h"

#include <fcntl.h>
#include <stdarg.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bdev/bdev.h"
#include "cairn/cairn.h"
#include "ns/check.h"
#include "ns/ns.h"
#include "vol/vol.h"

#define NC_BS 4096u
/*
 * Without the cleaner, log space is not reused, and a commit takes at
 * least a segment's worth of its own: devices are sized to the runs.
 */
#define NC_NBLOCKS     4096u /* 16 MiB */
#define NC_BIG_NBLOCKS 8192u /* 32 MiB, for the large run */
#define NC_SEED	       20251122u
#define NC_SMALL_OPS   48u
#define NC_LARGE_OPS   120u
#define NC_MAX_FILES   24u
#define NC_MAX_REPORTS 10u
#define NC_MAX_FILE    (3u * NC_BS + 700u)

static const char *const nc_mode_names[] = {"keep_all", "drop_all", "drop_some", "reorder"};
static const char *const nc_dirs[] = {"", "d0", "d1/e"};

/* ---- the canonical tree --------------------------------------------------- */

struct nc_buf {
	char *b;
	size_t len, cap;
};

static void nc_printf(struct nc_buf *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void nc_printf(struct nc_buf *s, const char *fmt, ...)
{
	va_list ap;
	int n;

	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(s->b ? s->b + s->len : NULL, s->b ? s->cap - s->len : 0, fmt, ap);
		va_end(ap);
		assert_true(n >= 0);
		if (s->b && s->len + (size_t)n < s->cap)
			break;
		s->cap = (s->cap + (size_t)n + 1) * 2;
		s->b = realloc(s->b, s->cap);
		assert_non_null(s->b);
	}
	s->len += (size_t)n;
}

struct nc_names {
	char (*n)[CAIRN_NAME_MAX + 1];
	size_t len, cap;
};

static int nc_collect(void *ctx, const char *name, size_t len, uint64_t ino, unsigned type,
		      uint64_t next)
{
	struct nc_names *ns = ctx;

	(void)ino, (void)type, (void)next;
	if ((len == 1 && name[0] == '.') || (len == 2 && name[0] == '.' && name[1] == '.'))
		return 0;
	if (ns->len == ns->cap) {
		ns->cap = ns->cap ? ns->cap * 2 : 16;
		ns->n = realloc(ns->n, ns->cap * sizeof(*ns->n));
		assert_non_null(ns->n);
	}
	memcpy(ns->n[ns->len], name, len);
	ns->n[ns->len++][len] = 0;
	return 0;
}

static int nc_cmp(const void *a, const void *b)
{
	return strcmp(a, b);
}

/* The inodes met in a walk, numbered in order of meeting (link groups). */
struct nc_seen {
	uint64_t ino[256];
	unsigned n;
};

static unsigned nc_seen_id(struct nc_seen *s, uint64_t ino, bool *first)
{
	for (unsigned i = 0; i < s->n; i++) {
		if (s->ino[i] == ino) {
			*first = false;
			return i;
		}
	}
	assert_true(s->n < ARRAY_SIZE(s->ino));
	s->ino[s->n] = ino;
	*first = true;
	return s->n++;
}

static uint64_t nc_hash(const unsigned char *p, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 0x100000001b3ULL;
	return h;
}

/* Append directory @dir (named @path) to @s. Returns the first error met. */
static int nc_walk_dir(struct cairn *c, uint64_t dir, const char *path, struct nc_buf *s,
		       struct nc_seen *seen, unsigned depth)
{
	struct nc_names ns = {0};
	int err = cairn_readdir(c, dir, 0, nc_collect, &ns);

	if (!err && depth > 16)
		err = -ELOOP;
	if (err)
		goto out;
	if (ns.len) /* qsort wants a non-null array, even empty */
		qsort(ns.n, ns.len, sizeof(*ns.n), nc_cmp);
	for (size_t i = 0; i < ns.len && !err; i++) {
		char sub[1024];
		struct cairn_stat st;
		bool first;
		unsigned id;

		snprintf(sub, sizeof(sub), "%s/%s", path, ns.n[i]);
		err = cairn_lookup(c, dir, ns.n[i], &st);
		if (err)
			break;
		id = nc_seen_id(seen, st.cs_ino, &first);
		if (S_ISDIR(st.cs_mode)) {
			nc_printf(s, "%s d nlink=%u\n", sub, st.cs_nlink);
			if (!first) {
				err = -ELOOP;
				break;
			}
			err = nc_walk_dir(c, st.cs_ino, sub, s, seen, depth + 1);
		} else if (S_ISREG(st.cs_mode)) {
			static unsigned char data[NC_MAX_FILE + 1];
			ssize_t n = cairn_pread(c, st.cs_ino, data, sizeof(data), 0);

			if (n < 0) {
				err = (int)n;
				break;
			}
			nc_printf(s,
				  "%s f#%u nlink=%u size=%" PRIu64 " read=%zd h=%016" PRIx64 "\n",
				  sub, id, st.cs_nlink, st.cs_size, n, nc_hash(data, (size_t)n));
		} else {
			nc_printf(s, "%s o#%u mode=%o\n", sub, id, st.cs_mode);
		}
	}
out:
	free(ns.n);
	return err;
}

/* The canonical text of @c's tree (malloc'd); *inodes: inodes reached (the root too). */
static int nc_walk(struct cairn *c, char **out, uint64_t *inodes)
{
	struct nc_buf s = {0};
	struct nc_seen seen = {.ino = {CAIRN_ROOT_INO}, .n = 1};
	int err;

	nc_printf(&s, "/\n");
	err = nc_walk_dir(c, CAIRN_ROOT_INO, "", &s, &seen, 0);
	if (inodes)
		*inodes = seen.n;
	if (err) {
		free(s.b);
		return err;
	}
	*out = s.b;
	return 0;
}

/* ---- the workload --------------------------------------------------------- */

struct nc_run {
	uint64_t r_seed;
	unsigned r_nops;
	bool r_large;
	struct bdev *r_dev; /* the emulated device (history on), the cairn's */
	struct cairn *r_c;
	char **r_state;	     /* [0..r_nops]: the tree after op k (0: before any) */
	uint64_t *r_writes;  /* [k]: history writes when op k returned */
	uint64_t *r_flushes; /* [k]: history flushes when op k returned */
	bool *r_synced;	     /* [k]: op k was an fsync/syncfs (or the start) */
	char r_op[NC_LARGE_OPS + 1][80];
	/* the names in use */
	char r_files[NC_MAX_FILES][48];
	unsigned r_nfiles;
	char r_empty[8][16]; /* empty directories (mkdir'd, not yet rmdir'd) */
	unsigned r_nempty;
	unsigned r_name_no;
	uint64_t r_orphan; /* a file unlinked while open (0: none yet) */
	bool r_fill;	   /* the last file created is written next */
};

static void nc_fill(struct prng *p, unsigned char *buf, size_t n)
{
	/* content with zero runs too, so holes and punches happen */
	prng_fill(p, buf, n);
	if (prng_chance(p, 1, 3)) {
		size_t at = prng_below(p, n), len = prng_below(p, n - at + 1);

		memset(buf + at, 0, len);
	}
}

static void nc_new_name(struct nc_run *r, struct prng *p, char *out, size_t len)
{
	snprintf(out, len, "%s/f%u", nc_dirs[prng_below(p, ARRAY_SIZE(nc_dirs))], r->r_name_no++);
}

static void nc_file_add(struct nc_run *r, const char *path)
{
	assert_true(r->r_nfiles < NC_MAX_FILES);
	snprintf(r->r_files[r->r_nfiles++], sizeof(r->r_files[0]), "%s", path);
}

static void nc_file_del(struct nc_run *r, unsigned i)
{
	memmove(r->r_files[i], r->r_files[i + 1], (r->r_nfiles - i - 1) * sizeof(r->r_files[0]));
	r->r_nfiles--;
}

static uint64_t nc_ino(struct cairn *c, const char *path)
{
	struct cairn_stat st;

	assert_int_equal(cairn_lstat_path(c, path, &st), 0);
	return st.cs_ino;
}

/* One operation; returns whether it was a sync. @desc describes it. */
static bool nc_op(struct nc_run *r, struct prng *p, char *desc, size_t dlen)
{
	static unsigned char data[NC_MAX_FILE];
	struct cairn *c = r->r_c;
	unsigned what = (unsigned)prng_below(p, 100);
	char name[48];
	uint64_t ino;

	if (r->r_fill) { /* a created file's content: the operation after its create */
		size_t n = 1 + prng_below(p, NC_MAX_FILE);

		nc_fill(p, data, n);
		assert_int_equal(cairn_write_path(c, r->r_files[r->r_nfiles - 1], data, n, 0),
				 (ssize_t)n);
		snprintf(desc, dlen, "fill %s %zu", r->r_files[r->r_nfiles - 1], n);
		r->r_fill = false;
		return false;
	}
	if (r->r_nfiles == 0 && what >= 16)
		what = 0; /* nothing to link or write yet: create */
	if (r->r_nfiles < 3 && what >= 30)
		what = 0;
	if (r->r_nfiles >= NC_MAX_FILES - 2 && what < 22)
		what = 40; /* unlink instead of creating */
	if (what < 16) {   /* create (empty: the next operation writes it) */
		nc_new_name(r, p, name, sizeof(name));
		assert_int_equal(cairn_create_path(c, name, 0644, CAIRN_O_EXCL, NULL, &ino), 0);
		assert_int_equal(cairn_release(c, ino), 0);
		nc_file_add(r, name);
		r->r_fill = prng_chance(p, 7, 8);
		snprintf(desc, dlen, "create %s", name);
	} else if (what < 22) { /* link */
		unsigned i = (unsigned)prng_below(p, r->r_nfiles);

		nc_new_name(r, p, name, sizeof(name));
		assert_int_equal(cairn_link_path(c, r->r_files[i], name), 0);
		nc_file_add(r, name);
		snprintf(desc, dlen, "link %s %s", r->r_files[i], name);
	} else if (what < 36) { /* pwrite */
		unsigned i = (unsigned)prng_below(p, r->r_nfiles);
		uint64_t off = prng_below(p, NC_MAX_FILE - 1);
		size_t n = 1 + prng_below(p, NC_MAX_FILE - off);

		nc_fill(p, data, n);
		assert_int_equal(cairn_write_path(c, r->r_files[i], data, n, off), (ssize_t)n);
		snprintf(desc, dlen, "pwrite %s %" PRIu64 "+%zu", r->r_files[i], off, n);
	} else if (what < 44) { /* unlink */
		unsigned i = (unsigned)prng_below(p, r->r_nfiles);

		assert_int_equal(cairn_unlink_path(c, r->r_files[i]), 0);
		snprintf(desc, dlen, "unlink %s", r->r_files[i]);
		nc_file_del(r, i);
	} else if (what < 52) { /* truncate */
		unsigned i = (unsigned)prng_below(p, r->r_nfiles);
		struct cairn_setattr sa = {.csa_size = prng_below(p, NC_MAX_FILE)};

		ino = nc_ino(c, r->r_files[i]);
		assert_int_equal(cairn_setattr(c, ino, CAIRN_SET_SIZE, &sa, NULL), 0);
		snprintf(desc, dlen, "truncate %s %" PRIu64, r->r_files[i], sa.csa_size);
	} else if (what < 62) { /* rename to a new name */
		unsigned i = (unsigned)prng_below(p, r->r_nfiles);

		nc_new_name(r, p, name, sizeof(name));
		assert_int_equal(cairn_rename_path(c, r->r_files[i], name, 0), 0);
		snprintf(desc, dlen, "rename %s %s", r->r_files[i], name);
		snprintf(r->r_files[i], sizeof(r->r_files[0]), "%s", name);
	} else if (what < 74) { /* rename over an existing file */
		unsigned i = (unsigned)prng_below(p, r->r_nfiles);
		unsigned j = (unsigned)prng_below(p, r->r_nfiles);

		if (i == j || nc_ino(c, r->r_files[i]) == nc_ino(c, r->r_files[j])) {
			snprintf(desc, dlen, "nothing");
			return false;
		}
		assert_int_equal(cairn_rename_path(c, r->r_files[i], r->r_files[j], 0), 0);
		snprintf(desc, dlen, "rename-over %s %s", r->r_files[i], r->r_files[j]);
		nc_file_del(r, i);
	} else if (what < 80) { /* mkdir / rmdir */
		if (r->r_nempty &&
		    (r->r_nempty == ARRAY_SIZE(r->r_empty) || prng_chance(p, 1, 2))) {
			unsigned i = (unsigned)prng_below(p, r->r_nempty);

			assert_int_equal(cairn_rmdir_path(c, r->r_empty[i]), 0);
			snprintf(desc, dlen, "rmdir %s", r->r_empty[i]);
			memcpy(r->r_empty[i], r->r_empty[--r->r_nempty], sizeof(r->r_empty[0]));
		} else {
			char *d = r->r_empty[r->r_nempty++];

			snprintf(d, sizeof(r->r_empty[0]), "d1/x%u", r->r_name_no++);
			assert_int_equal(cairn_mkdir_path(c, d, 0755, NULL), 0);
			snprintf(desc, dlen, "mkdir %s", d);
		}
	} else if (what < 83 && !r->r_orphan) { /* unlink while open */
		unsigned i = (unsigned)prng_below(p, r->r_nfiles);
		struct cairn_stat st;

		assert_int_equal(cairn_lstat_path(c, r->r_files[i], &st), 0);
		if (st.cs_nlink != 1) {
			snprintf(desc, dlen, "nothing");
			return false;
		}
		ino = st.cs_ino;
		assert_int_equal(cairn_open_inode(c, ino), 0);
		r->r_orphan = ino;
		snprintf(desc, dlen, "open+unlink %s (ino %" PRIu64 ")", r->r_files[i], ino);
		assert_int_equal(cairn_unlink_path(c, r->r_files[i]), 0);
		nc_file_del(r, i);
		/* only a sync shows it on the orphan list: do one */
		assert_int_equal(cairn_syncfs(c), 0);
		return true;
	} else if (what < 93) { /* fsync of a file */
		unsigned i = (unsigned)prng_below(p, r->r_nfiles);

		assert_int_equal(cairn_open_path(c, r->r_files[i], &ino), 0);
		assert_int_equal(cairn_fsync(c, ino, prng_chance(p, 1, 3)), 0);
		assert_int_equal(cairn_release(c, ino), 0);
		snprintf(desc, dlen, "fsync %s", r->r_files[i]);
		return true;
	} else {
		assert_int_equal(cairn_syncfs(c), 0);
		snprintf(desc, dlen, "syncfs");
		return true;
	}
	return false;
}

static void nc_make_image(struct bdev **out, uint64_t nblocks)
{
	struct cairn_mkfs_opts mo = {.cmo_size = nblocks * NC_BS, .cmo_seg_blocks = 64};
	char path[64];
	struct bdev *f;
	int fd;

	snprintf(path, sizeof(path), "/tmp/cairn-ns-crash-XXXXXX");
	fd = mkstemp(path);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(unlink(path), 0);
	assert_int_equal(cairn_mkfs(path, &mo), 0);
	assert_int_equal(bdev_open_file(path, NC_BS, 0, BDEV_RDONLY, &f), 0);
	assert_int_equal(bdev_emu_open_copy(f, out), 0);
	bdev_close(f);
	unlink(path);
}

static const struct cairn_open_opts nc_open_opts = {.coo_cache_mb = 32, .coo_max_age_ms = 3600000};

static void nc_record(struct nc_run *r, unsigned k, bool synced)
{
	assert_int_equal(nc_walk(r->r_c, &r->r_state[k], NULL), 0);
	r->r_writes[k] = bdev_emu_history_writes(r->r_dev);
	r->r_flushes[k] = bdev_emu_history_flushes(r->r_dev);
	r->r_synced[k] = synced;
}

/* Run the workload; the cairn stays open (its device holds the history). */
static void nc_run(struct nc_run *r, uint64_t seed, bool large)
{
	struct prng p;
	unsigned n = large ? NC_LARGE_OPS : NC_SMALL_OPS;

	memset(r, 0, sizeof(*r));
	r->r_seed = seed;
	r->r_large = large;
	r->r_nops = n;
	r->r_state = calloc(n + 1, sizeof(*r->r_state));
	r->r_writes = calloc(n + 1, sizeof(*r->r_writes));
	r->r_flushes = calloc(n + 1, sizeof(*r->r_flushes));
	r->r_synced = calloc(n + 1, sizeof(*r->r_synced));
	assert_true(r->r_state && r->r_writes && r->r_flushes && r->r_synced);
	nc_make_image(&r->r_dev, large ? NC_BIG_NBLOCKS : NC_NBLOCKS);
	assert_int_equal(ns_open_dev(r->r_dev, &nc_open_opts, &r->r_c), 0);
	assert_int_equal(cairn_mkdir_path(r->r_c, "d0", 0755, NULL), 0);
	assert_int_equal(cairn_mkdir_path(r->r_c, "d1", 0755, NULL), 0);
	assert_int_equal(cairn_mkdir_path(r->r_c, "d1/e", 0755, NULL), 0);
	assert_int_equal(cairn_syncfs(r->r_c), 0);
	bdev_emu_keep_history(r->r_dev); /* the base: state 0, durable */
	nc_record(r, 0, true);
	snprintf(r->r_op[0], sizeof(r->r_op[0]), "start (d0, d1/e made)");
	prng_init(&p, seed ^ (large ? 0x1a76e : 0x5a11));
	for (unsigned k = 1; k <= n; k++) {
		bool synced = nc_op(r, &p, r->r_op[k], sizeof(r->r_op[k]));

		nc_record(r, k, synced);
	}
	if (getenv("CAIRN_CRASH_VERBOSE")) {
		for (unsigned k = 0; k <= n; k++)
			print_message("# op %u: %s (w %" PRIu64 " f %" PRIu64 "%s)\n%s", k,
				      r->r_op[k], r->r_writes[k], r->r_flushes[k],
				      r->r_synced[k] ? " synced" : "", r->r_state[k]);
	}
	print_message("# %s run: %u operations, %" PRIu64 " device writes, %" PRIu64 " flushes\n",
		      large ? "large" : "small", n, bdev_emu_history_writes(r->r_dev),
		      bdev_emu_history_flushes(r->r_dev));
}

static void nc_run_done(struct nc_run *r)
{
	assert_int_equal(cairn_close(r->r_c), 0); /* closes r_dev */
	for (unsigned k = 0; k <= r->r_nops; k++)
		free(r->r_state[k]);
	free(r->r_state);
	free(r->r_writes);
	free(r->r_flushes);
	free(r->r_synced);
}

/* ---- one crash case --------------------------------------------------------- */

struct nc_case {
	bool cc_flush;
	uint64_t cc_cut;
	enum bdev_emu_crash_mode cc_mode;
	bool cc_tear;
};

static void nc_problem(void *ctx, uint64_t ino, const char *problem)
{
	(void)ctx;
	print_message("#   ns_check: ino %" PRIu64 ": %s\n", ino, problem);
}

static void nc_vproblem(void *ctx, const char *msg)
{
	(void)ctx;
	print_message("#   vol_check: %s\n", msg);
}

/*
 * Open @d (taken over), check it, and find its state in [lo, hi].
 * Returns NULL or a description of the failure; *state gets the state.
 */
static const char *nc_check_open(struct nc_run *r, struct bdev *d, unsigned lo, unsigned hi,
				 int *state, struct bdev **after)
{
	struct ns_check_stats st;
	struct cairn *c;
	uint64_t inodes = 0;
	char *tree = NULL;
	int err;

	*state = -1;
	err = ns_open_dev(d, NULL, &c);
	if (err) {
		print_message("#   open: %d\n", err);
		return "the volume does not open";
	}
	if (cairn_syncfs(c)) {
		cairn_close(c);
		return "syncfs after recovery failed";
	}
	if (vol_check(c->c_vol, nc_vproblem, NULL, NULL) != 0) {
		cairn_close(c);
		return "vol_check found problems";
	}
	err = ns_check(c->c_vol, nc_problem, NULL, &st);
	if (err) {
		cairn_close(c);
		print_message("#   ns_check: %d\n", err);
		return "ns_check found problems";
	}
	err = nc_walk(c, &tree, &inodes);
	if (err) {
		cairn_close(c);
		print_message("#   walk: %d\n", err);
		return "the tree cannot be walked";
	}
	if (st.nc_orphans || st.nc_inodes != inodes) {
		print_message("#   %" PRIu64 " orphans, %" PRIu64 " inodes in use, %" PRIu64
			      " reached\n",
			      st.nc_orphans, st.nc_inodes, inodes);
		free(tree);
		cairn_close(c);
		return "an orphan was not freed at open";
	}
	for (unsigned k = lo; k <= hi; k++) {
		if (!strcmp(tree, r->r_state[k]))
			*state = (int)k;
	}
	if (*state < 0) {
		int any = -1;

		for (unsigned k = 0; k <= r->r_nops; k++) {
			if (!strcmp(tree, r->r_state[k]))
				any = (int)k;
		}
		print_message("#   recovered tree (state %d of the run%s):\n%s", any,
			      any < 0 ? ": none" : "", tree);
		print_message("#   state %u (last durable):\n%s", lo, r->r_state[lo]);
		free(tree);
		cairn_close(c);
		return any < 0 ? "the tree is no state of the run (a torn operation, a "
				 "half rename?)"
			       : "the tree is a state outside [last sync, op in progress]";
	}
	free(tree);
	if (after) /* a crash right after recovery: everything is flushed */
		assert_int_equal(bdev_emu_open_copy(d, after), 0);
	err = cairn_close(c);
	if (err) {
		print_message("#   close: %d\n", err);
		return "close after recovery failed";
	}
	return NULL;
}

static bool nc_case_run(struct nc_run *r, const struct nc_case *cc)
{
	struct bdev_emu_crash how = {.ec_mode = cc->cc_mode,
				     .ec_tear = cc->cc_tear,
				     .ec_seed = r->r_seed ^ (cc->cc_cut << 8) ^
						((uint64_t)cc->cc_flush << 7) ^
						((uint64_t)cc->cc_mode << 4)};
	struct bdev *img, *d, *again;
	unsigned lo = 0, hi = r->r_nops;
	const char *why;
	int state, state2;

	if (cc->cc_flush)
		assert_int_equal(bdev_emu_crash_at_flush(r->r_dev, cc->cc_cut, &how, &img), 0);
	else
		assert_int_equal(bdev_emu_crash_at(r->r_dev, cc->cc_cut, &how, &img), 0);
	for (unsigned k = 0; k <= r->r_nops; k++) {
		uint64_t done = cc->cc_flush ? r->r_flushes[k] : r->r_writes[k];

		/* op k returned before the cut: flush f / write n not begun */
		if (r->r_synced[k] && done < cc->cc_cut)
			lo = k;
		if (done >= cc->cc_cut && k < hi) {
			hi = k;
			break;
		}
	}
	assert_int_equal(bdev_emu_open_copy(img, &d), 0);
	why = nc_check_open(r, d, lo, hi, &state, &again);
	if (!why) {
		/* open again the state that recovery left: reopen twice */
		why = nc_check_open(r, again, (unsigned)state, (unsigned)state, &state2, NULL);
		if (why)
			why = "second open after recovery: see above";
	}
	if (why) {
		char path[64];

		snprintf(path, sizeof(path), "/tmp/cairn-ns-crash-case-XXXXXX");
		int fd = mkstemp(path);

		if (fd >= 0) {
			close(fd);
			if (bdev_save(img, path))
				path[0] = 0;
		}
		print_message("# FAILED: %s (durable: state %u \"%s\"; cut during op %u \"%s\")\n",
			      why, lo, r->r_op[lo], hi, r->r_op[hi]);
		print_message("# crash case: CAIRN_SEED=%" PRIu64 " run=%s cut=%s%" PRIu64
			      " mode=%s tear=%d (image: %s)\n",
			      r->r_seed, r->r_large ? "large" : "small", cc->cc_flush ? "f" : "",
			      cc->cc_cut, nc_mode_names[cc->cc_mode], cc->cc_tear, path);
	}
	bdev_close(img);
	return why == NULL;
}

/* ---- the environment ---------------------------------------------------- */

static uint64_t nc_env_u64(const char *name, uint64_t fallback)
{
	const char *e = getenv(name);

	return e && *e ? strtoull(e, NULL, 0) : fallback;
}

/* The one case the environment asks for (CAIRN_CRASH_CUT set), for run @large. */
static bool nc_env_case(bool large, struct nc_case *cc)
{
	const char *cut = getenv("CAIRN_CRASH_CUT"), *m = getenv("CAIRN_CRASH_MODE");
	if (!cut || !*cut)
		return false;
	cc->cc_flush = cut[0] == 'f';
	cc->cc_cut = strtoull(cut + cc->cc_flush, NULL, 0);
	cc->cc_mode = BDEV_EMU_DROP_ALL;
	for (unsigned i = 0; m && i < ARRAY_SIZE(nc_mode_names); i++) {
		if (!strcmp(m, nc_mode_names[i]) || (m[0] == (char)('0' + i) && !m[1]))
			cc->cc_mode = (enum bdev_emu_crash_mode)i;
	}
	cc->cc_tear = nc_env_u64("CAIRN_CRASH_TEAR", 0) != 0;
	(void)large;
	return true;
}

static bool nc_env_wants(bool large)
{
	const char *run = getenv("CAIRN_CRASH_RUN");
	const char *cut = getenv("CAIRN_CRASH_CUT");

	if (!cut || !*cut)
		return true;
	return run && !strcmp(run, large ? "large" : "small");
}

static bool nc_slow(void)
{
	return getenv("CAIRN_WATCHDOG_SCALE") != NULL;
}

/* ---- tests ----------------------------------------------------------------- */

/* Every cut of the small run, four ways. */
static void test_ns_crash_every_cut(void **state)
{
	static const struct {
		enum bdev_emu_crash_mode m;
		bool tear;
	} ways[] = {{BDEV_EMU_DROP_ALL, false},
		    {BDEV_EMU_KEEP_ALL, false},
		    {BDEV_EMU_DROP_SOME, false},
		    {BDEV_EMU_KEEP_ALL, true}};
	struct nc_run r;
	struct nc_case cc;
	unsigned failed = 0;
	uint64_t ran = 0, seed;

	(void)state;
	if (!nc_env_wants(false)) {
		skip();
		return;
	}
	seed = test_seed("ns crash small", NC_SEED);
	test_watchdog("test_ns_crash_every_cut", 600);
	nc_run(&r, seed, false);
	if (nc_env_case(false, &cc)) {
		assert_true(nc_case_run(&r, &cc));
		nc_run_done(&r);
		test_watchdog_cancel();
		return;
	}
	for (unsigned w = 0; w < ARRAY_SIZE(ways) && failed < NC_MAX_REPORTS; w++) {
		uint64_t writes = bdev_emu_history_writes(r.r_dev);
		uint64_t flushes = bdev_emu_history_flushes(r.r_dev);

		for (uint64_t i = 1; i <= writes + 1 + flushes && failed < NC_MAX_REPORTS; i++) {
			cc = (struct nc_case){.cc_flush = i > writes + 1,
					      .cc_cut = i > writes + 1 ? i - writes - 1 : i,
					      .cc_mode = ways[w].m,
					      .cc_tear = ways[w].tear};
			if (!nc_case_run(&r, &cc))
				failed++;
			ran++;
		}
	}
	print_message("# %" PRIu64 " crash cases, %u failed\n", ran, failed);
	nc_run_done(&r);
	test_watchdog_cancel();
	assert_int_equal(failed, 0);
}

/* Seeded random cuts of the large run, reordered or dropped in part, torn or not. */
static void test_ns_crash_random_cuts(void **state)
{
	struct nc_run r;
	struct nc_case cc;
	struct prng p;
	unsigned failed = 0;
	uint64_t n = nc_env_u64("CAIRN_CRASH_CASES", nc_slow() ? 40 : 120), ran = 0, seed;

	(void)state;
	if (!nc_env_wants(true)) {
		skip();
		return;
	}
	seed = test_seed("ns crash large", NC_SEED);
	test_watchdog("test_ns_crash_random_cuts", 900);
	nc_run(&r, seed, true);
	if (nc_env_case(true, &cc)) {
		assert_true(nc_case_run(&r, &cc));
		nc_run_done(&r);
		test_watchdog_cancel();
		return;
	}
	prng_init(&p, seed ^ 0xc075);
	for (uint64_t i = 0; i < n && failed < NC_MAX_REPORTS; i++) {
		uint64_t writes = bdev_emu_history_writes(r.r_dev);
		uint64_t flushes = bdev_emu_history_flushes(r.r_dev);

		cc.cc_flush = prng_chance(&p, 1, 3);
		cc.cc_cut =
		    cc.cc_flush ? 1 + prng_below(&p, flushes) : 1 + prng_below(&p, writes + 1);
		cc.cc_mode = prng_chance(&p, 2, 3) ? BDEV_EMU_REORDER : BDEV_EMU_DROP_SOME;
		cc.cc_tear = prng_chance(&p, 1, 2);
		if (!nc_case_run(&r, &cc))
			failed++;
		ran++;
	}
	print_message("# %" PRIu64 " random crash cases, %u failed\n", ran, failed);
	nc_run_done(&r);
	test_watchdog_cancel();
	assert_int_equal(failed, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_ns_crash_every_cut),
	    cmocka_unit_test(test_ns_crash_random_cuts),
	};

	return TEST_RUN("ns_crash", tests);
}

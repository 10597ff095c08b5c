/*
 * test_ns_threads.c - randomized operations from several threads,
 * checked against an in-memory model, through libcairn's API.
 *
 * Each thread owns two directories (/tN/a, /tN/b) of a few names and a
 * model of them: files with their bytes, sizes and link counts. It runs
 * seeded random operations (create, write, truncate, punch, read,
 * unlink, link, rename with every flag, across its two directories) and
 * checks every result and error against the model. Meanwhile all threads
 * also churn a shared directory (create, unlink, rename of files and
 * directories into each other), where only the set of possible errors is
 * checked: that part is there for the locks (inode order, the rename
 * mutex, the allocator, the orphan list). At the end each model is
 * compared with the directories and files, and again after a close and
 * reopen. The seed is printed; CAIRN_SEED replays a thread's operations
 * (the interleaving is the scheduler's). CAIRN_NS_OPS sets the operations
 * per thread. Races the churn has found are forced at interleaving points
 * in tests of their own.
 */
#include "harness.h"
#include "ns_fixture.h"
#include "util/syncpoint.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define NTHREADS 4
#define NNAMES	 10
#define NFILES	 (2 * NNAMES + 1)
#define MAXSIZE	 (96 * 1024)

struct mfile {
	uint64_t mf_ino;
	uint32_t mf_nlink; /* 0: slot unused */
	uint64_t mf_size;
	uint8_t mf_data[MAXSIZE];
};

struct worker {
	struct nf *w_f;
	int w_id;
	uint64_t w_seed;
	unsigned w_ops;
	struct prng w_rng;
	uint64_t w_dir[2];
	int w_slot[2][NNAMES]; /* file index or -1 */
	struct mfile w_files[NFILES];
	uint8_t w_buf[MAXSIZE];
	uint64_t w_shared;
};

static const char *nm(int i)
{
	static const char *names[NNAMES] = {"n0", "n1", "n2", "n3", "n4",
					    "n5", "n6", "n7", "n8", "n9"};
	return names[i];
}

static int mf_new(struct worker *w, uint64_t ino)
{
	for (int i = 0; i < NFILES; i++) {
		if (!w->w_files[i].mf_nlink) {
			w->w_files[i].mf_ino = ino;
			w->w_files[i].mf_nlink = 1;
			w->w_files[i].mf_size = 0;
			memset(w->w_files[i].mf_data, 0, MAXSIZE);
			return i;
		}
	}
	fail_msg("model: out of files");
	return -1;
}

static void mf_unref(struct worker *w, int fi)
{
	w->w_files[fi].mf_nlink--;
}

static void check_file(struct worker *w, int fi)
{
	struct mfile *m = &w->w_files[fi];
	struct cairn_stat st;
	ssize_t n;

	assert_int_equal(cairn_getattr(w->w_f->nf_c, m->mf_ino, &st), 0);
	assert_int_equal(st.cs_size, m->mf_size);
	assert_int_equal(st.cs_nlink, m->mf_nlink);
	n = cairn_pread(w->w_f->nf_c, m->mf_ino, w->w_buf, MAXSIZE, 0);
	assert_int_equal(n, (ssize_t)m->mf_size);
	assert_memory_equal(w->w_buf, m->mf_data, m->mf_size);
}

/* ---- operations on the thread's own directories ------------------------------------- */

static void op_create(struct worker *w, int d, int n)
{
	struct cairn_stat st;
	int err = cairn_mknod(w->w_f->nf_c, w->w_dir[d], nm(n), 0644, 0, NULL, &st);

	if (w->w_slot[d][n] >= 0) {
		assert_int_equal(err, -EEXIST);
		return;
	}
	assert_int_equal(err, 0);
	w->w_slot[d][n] = mf_new(w, st.cs_ino);
}

static void op_write(struct worker *w, int fi)
{
	struct mfile *m = &w->w_files[fi];
	uint64_t off = prng_below(&w->w_rng, MAXSIZE - 16384);
	size_t len = 1 + prng_below(&w->w_rng, 16384);

	if (prng_chance(&w->w_rng, 1, 4))
		memset(w->w_buf, 0, len); /* zeros: punches */
	else
		prng_fill(&w->w_rng, w->w_buf, len);
	assert_int_equal(cairn_pwrite(w->w_f->nf_c, m->mf_ino, w->w_buf, len, off), (ssize_t)len);
	memcpy(m->mf_data + off, w->w_buf, len);
	m->mf_size = MAX(m->mf_size, off + len);
}

static void op_truncate(struct worker *w, int fi)
{
	struct mfile *m = &w->w_files[fi];
	struct cairn_setattr sa = {.csa_size = prng_below(&w->w_rng, MAXSIZE)};

	assert_int_equal(cairn_setattr(w->w_f->nf_c, m->mf_ino, CAIRN_SET_SIZE, &sa, NULL), 0);
	if (sa.csa_size < m->mf_size)
		memset(m->mf_data + sa.csa_size, 0, m->mf_size - sa.csa_size);
	m->mf_size = sa.csa_size;
}

static void op_punch(struct worker *w, int fi)
{
	struct mfile *m = &w->w_files[fi];
	uint64_t off = prng_below(&w->w_rng, MAXSIZE), len = 1 + prng_below(&w->w_rng, 20000);

	assert_int_equal(cairn_fallocate(w->w_f->nf_c, m->mf_ino,
					 CAIRN_FALLOC_PUNCH_HOLE | CAIRN_FALLOC_KEEP_SIZE, off,
					 len),
			 0);
	if (off < m->mf_size)
		memset(m->mf_data + off, 0, MIN(len, m->mf_size - off));
}

static void op_unlink(struct worker *w, int d, int n)
{
	int err = cairn_unlink(w->w_f->nf_c, w->w_dir[d], nm(n));

	if (w->w_slot[d][n] < 0) {
		assert_int_equal(err, -ENOENT);
		return;
	}
	assert_int_equal(err, 0);
	mf_unref(w, w->w_slot[d][n]);
	w->w_slot[d][n] = -1;
}

static void op_link(struct worker *w, int d1, int n1, int d2, int n2)
{
	int fi = w->w_slot[d1][n1], err;

	if (fi < 0)
		return;
	err = cairn_link(w->w_f->nf_c, w->w_files[fi].mf_ino, w->w_dir[d2], nm(n2), NULL);
	if (w->w_slot[d2][n2] >= 0) {
		assert_int_equal(err, -EEXIST);
		return;
	}
	assert_int_equal(err, 0);
	w->w_files[fi].mf_nlink++;
	w->w_slot[d2][n2] = fi;
}

static int rename_expect(struct worker *w, int d1, int n1, int d2, int n2, unsigned flags)
{
	int *s = &w->w_slot[d1][n1], *t = &w->w_slot[d2][n2], x;

	if (*s < 0)
		return -ENOENT;
	if (s == t)
		return (flags & CAIRN_RENAME_NOREPLACE) ? -EEXIST : 0;
	if (flags & CAIRN_RENAME_EXCHANGE) {
		if (*t < 0)
			return -ENOENT;
		x = *s, *s = *t, *t = x;
		return 0;
	}
	if (*t >= 0 && (flags & CAIRN_RENAME_NOREPLACE))
		return -EEXIST;
	if (*t == *s)
		return 0; /* two names of one file */
	if (*t >= 0)
		mf_unref(w, *t);
	*t = *s;
	*s = -1;
	return 0;
}

static void op_rename(struct worker *w, int d1, int n1, int d2, int n2)
{
	static const unsigned flags[] = {0, 0, CAIRN_RENAME_NOREPLACE, CAIRN_RENAME_EXCHANGE};
	unsigned fl = flags[prng_below(&w->w_rng, 4)];
	int err = cairn_rename(w->w_f->nf_c, w->w_dir[d1], nm(n1), w->w_dir[d2], nm(n2), fl);

	assert_int_equal(err, rename_expect(w, d1, n1, d2, n2, fl));
}

/* ---- the shared directory: only the errors are checked -------------------------------- */

static void shared_op(struct worker *w)
{
	struct cairn *c = w->w_f->nf_c;
	char a[16], b[16];
	int err = 0, k = (int)prng_below(&w->w_rng, 5);
	uint64_t d;
	struct cairn_stat st;

	snprintf(a, sizeof(a), "s%d", (int)prng_below(&w->w_rng, 6));
	snprintf(b, sizeof(b), "s%d", (int)prng_below(&w->w_rng, 6));
	switch (k) {
	case 0:
		err = cairn_mknod(c, w->w_shared, a, 0644, 0, NULL, NULL);
		break;
	case 1:
		err = cairn_mkdir(c, w->w_shared, a, 0755, NULL, NULL);
		break;
	case 2:
		err = cairn_unlink(c, w->w_shared, a);
		if (err == -EISDIR)
			err = cairn_rmdir(c, w->w_shared, a);
		break;
	case 3:
		err = cairn_rename(c, w->w_shared, a, w->w_shared, b,
				   (unsigned)prng_below(&w->w_rng, 3));
		break;
	case 4: /* move into a subdirectory, or back up */
		err = cairn_lookup(c, w->w_shared, b, &st);
		if (!err && S_ISDIR(st.cs_mode)) {
			d = st.cs_ino;
			err = prng_chance(&w->w_rng, 1, 2)
				  ? cairn_rename(c, w->w_shared, a, d, a, 0)
				  : cairn_rename(c, d, a, w->w_shared, a, 0);
		}
		break;
	}
	if (err && err != -ENOENT && err != -EEXIST && err != -ENOTEMPTY && err != -EINVAL &&
	    err != -ENOTDIR && err != -EISDIR)
		fail_msg("shared op %d: unexpected %d", k, err);
}

static void worker_step(struct worker *w)
{
	int d = (int)prng_below(&w->w_rng, 2), n = (int)prng_below(&w->w_rng, NNAMES);
	int d2 = (int)prng_below(&w->w_rng, 2), n2 = (int)prng_below(&w->w_rng, NNAMES);
	int fi = w->w_slot[d][n];

	switch (prng_below(&w->w_rng, 11)) {
	case 0:
		op_create(w, d, n);
		break;
	case 1:
	case 2:
		if (fi >= 0)
			op_write(w, fi);
		else
			op_create(w, d, n);
		break;
	case 3:
		if (fi >= 0)
			op_truncate(w, fi);
		break;
	case 4:
		if (fi >= 0)
			op_punch(w, fi);
		break;
	case 5:
		if (fi >= 0)
			check_file(w, fi);
		break;
	case 6:
		op_unlink(w, d, n);
		break;
	case 7:
		op_link(w, d, n, d2, n2);
		break;
	case 8:
	case 9:
		op_rename(w, d, n, d2, n2);
		break;
	default:
		shared_op(w);
		break;
	}
}

static void *worker_run(void *arg)
{
	struct worker *w = arg;

	prng_init(&w->w_rng, w->w_seed);
	for (unsigned i = 0; i < w->w_ops; i++)
		worker_step(w);
	return NULL;
}

/* ---- checking the model ------------------------------------------------------------------- */

struct listing {
	int l_found[NNAMES];
	uint64_t l_ino[NNAMES];
	int l_other;
};

static int listing_cb(void *ctx, const char *name, size_t len, uint64_t ino, unsigned type,
		      uint64_t next)
{
	struct listing *l = ctx;
	int n;

	(void)type;
	(void)next;
	if (len == 2 && name[0] == 'n' && (n = name[1] - '0') >= 0 && n < NNAMES) {
		l->l_found[n]++;
		l->l_ino[n] = ino;
	} else if (!(len <= 2 && name[0] == '.')) {
		l->l_other++;
	}
	return 0;
}

static void worker_verify(struct worker *w)
{
	for (int d = 0; d < 2; d++) {
		struct listing l = {0};

		assert_int_equal(cairn_readdir(w->w_f->nf_c, w->w_dir[d], 0, listing_cb, &l), 0);
		assert_int_equal(l.l_other, 0);
		for (int n = 0; n < NNAMES; n++) {
			int fi = w->w_slot[d][n];

			assert_int_equal(l.l_found[n], fi >= 0);
			if (fi < 0)
				continue;
			assert_int_equal(l.l_ino[n], w->w_files[fi].mf_ino);
			check_file(w, fi);
		}
	}
}

static void worker_init(struct worker *w, struct nf *f, int id, uint64_t seed, unsigned ops)
{
	char path[32];

	memset(w, 0, sizeof(*w));
	w->w_f = f;
	w->w_id = id;
	w->w_seed = seed;
	w->w_ops = ops;
	memset(w->w_slot, -1, sizeof(w->w_slot));
	for (int d = 0; d < 2; d++) {
		snprintf(path, sizeof(path), "/t%d", id);
		if (d == 0)
			assert_int_equal(cairn_mkdir_path(f->nf_c, path, 0755, NULL), 0);
		snprintf(path, sizeof(path), "/t%d/%c", id, 'a' + d);
		assert_int_equal(cairn_mkdir_path(f->nf_c, path, 0755, NULL), 0);
		w->w_dir[d] = nf_ino(f, path);
	}
	w->w_shared = nf_ino(f, "/shared");
}

static void test_threads_model(void **state)
{
	static struct worker workers[NTHREADS];
	const char *env = getenv("CAIRN_NS_OPS");
	unsigned ops = env ? (unsigned)atoi(env) : 1500;
	uint64_t seed = test_seed("ns threads", 20261122);
	pthread_t th[NTHREADS];
	struct statvfs sv;
	struct nf f;

	(void)state;
	test_watchdog("test_threads_model", 900);
	nf_new(&f, 1024);
	assert_int_equal(cairn_mkdir_path(f.nf_c, "/shared", 0755, NULL), 0);
	for (int i = 0; i < NTHREADS; i++)
		worker_init(&workers[i], &f, i, seed + (uint64_t)i * 7919, ops);
	for (int i = 0; i < NTHREADS; i++)
		test_thread_start(&th[i], worker_run, &workers[i]);
	for (int i = 0; i < NTHREADS; i++)
		test_thread_join(th[i]);
	for (int i = 0; i < NTHREADS; i++)
		worker_verify(&workers[i]);
	assert_int_equal(cairn_statfs(f.nf_c, &sv), 0);
	nf_reopen(&f);
	for (int i = 0; i < NTHREADS; i++)
		worker_verify(&workers[i]);
	nf_done(&f);
	test_watchdog_cancel();
}

/* ---- forced interleavings ------------------------------------------------------------------ */

enum dir_op { OP_LOOKUP, OP_READDIR, OP_RENAME_INTO, OP_NOPS };

struct dir_reader {
	struct cairn *r_c;
	uint64_t r_dir;
	enum dir_op r_op;
	int r_err;
};

static int count_cb(void *ctx, const char *name, size_t len, uint64_t ino, unsigned type,
		    uint64_t next)
{
	(void)name, (void)len, (void)ino, (void)type, (void)next;
	++*(int *)ctx;
	return 0;
}

static void *dir_reader_run(void *arg)
{
	struct dir_reader *r = arg;
	struct cairn_stat st;
	int n = 0;

	syncpoint_thread_name("R");
	switch (r->r_op) {
	case OP_LOOKUP:
		r->r_err = cairn_lookup(r->r_c, r->r_dir, "x", &st);
		break;
	case OP_READDIR:
		r->r_err = cairn_readdir(r->r_c, r->r_dir, 0, count_cb, &n);
		break;
	default:
		r->r_err = cairn_rename(r->r_c, CAIRN_ROOT_INO, "f", r->r_dir, "f", 0);
		break;
	}
	return NULL;
}

/*
 * A lookup, listing or rename has taken its directory when an rmdir
 * removes and frees it: the directory's blocks are gone, and the answer
 * must be -ENOENT, not a damaged directory (-EUCLEAN) nor a rename that
 * retries until it gives up (-EUCLEAN). The shared-directory churn of
 * the model test met both when a rename moved a name into, or out of, a
 * subdirectory another thread was removing.
 */
static void test_dir_removed_meanwhile(void **state)
{
	static const char *point[OP_NOPS] = {"ns.lookup.dir_held@R", "ns.readdir.dir_held@R",
					     "ns.rename.parents_held@R"};
	struct cairn_stat st, f;
	struct nf nf;

	(void)state;
	test_needs_syncpoints();
	test_watchdog("operations on a directory removed meanwhile", 120);
	nf_new(&nf, 64);
	assert_int_equal(cairn_mknod(nf.nf_c, CAIRN_ROOT_INO, "f", 0644, 0, NULL, &f), 0);
	for (int op = 0; op < OP_NOPS; op++) {
		struct dir_reader r = {.r_c = nf.nf_c, .r_op = op};
		pthread_t t;

		assert_int_equal(cairn_mkdir(nf.nf_c, CAIRN_ROOT_INO, "d", 0755, NULL, &st), 0);
		r.r_dir = st.cs_ino;
		syncpoint_order("test.release_r", point[op]);
		test_thread_start(&t, dir_reader_run, &r);
		syncpoint_wait_arrived(point[op], 1); /* R holds d */
		assert_int_equal(cairn_rmdir(nf.nf_c, CAIRN_ROOT_INO, "d"), 0);
		syncpoint_hit("test.release_r");
		test_thread_join(t);
		assert_int_equal(r.r_err, -ENOENT);
		assert_int_equal(cairn_getattr(nf.nf_c, r.r_dir, &st), -ENOENT);
		assert_int_equal(cairn_lookup(nf.nf_c, CAIRN_ROOT_INO, "f", &st), 0);
		assert_int_equal(st.cs_ino, f.cs_ino);
		syncpoint_reset();
	}
	nf_done(&nf);
	test_watchdog_cancel();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_dir_removed_meanwhile),
	    cmocka_unit_test(test_threads_model),
	};

	return TEST_RUN("ns_threads", tests);
}

/*
 * fuse_model - randomized operations through a mounted cairn, checked
 * against a model of the tree held in memory.
 *
 *   fuse_model run DIR SEED OPS    OPS random operations under DIR, each
 *                                  result (0 or the errno) checked as it
 *                                  returns, the whole tree every 500 and
 *                                  at the end
 *   fuse_model check DIR SEED OPS  the tree under DIR against the model
 *                                  after those operations (rebuilt by
 *                                  replaying the model alone: after an
 *                                  unmount and a mount, nothing is lost)
 *
 * Operations: write at an offset (creating), truncate, unlink, mkdir,
 * rmdir, rename (files and directories, over files and empty or full
 * directories, into a directory's own subtree, RENAME_NOREPLACE and
 * RENAME_EXCHANGE), hard link, symlink, setxattr/removexattr, chmod,
 * utimensat with nanoseconds, fsync. Names come from a small pool, so
 * that operations meet each other's results. The model computes what
 * POSIX (Linux) says each call returns; a call that returns anything
 * else, or a tree that differs from the model, is a failure: one
 * "# ..." line with the seed and the operation number, exit 1.
 * Prints "# seed SEED: N operations, ..." on success.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "util/prng.h"

#define MAXKIDS	 16
#define MAXFILE	 (96u * 1024)
#define MAXPATH	 512
#define NNAMES	 6
#define NINODES	 4096
#define XATTR	 "user.model"
#define MAXDEPTH 6  /* mkdir: deepest parent */
#define MAXNEST	 16 /* rename: deepest directory after a move */

static const char *const names[NNAMES] = {"a", "b", "c", "dir1", "dir2", "x"};

enum mtype { M_FILE = 1, M_DIR, M_LINK };

struct mnode {
	enum mtype type;
	int nlink;	     /* names naming it (files and links) */
	unsigned char *data; /* M_FILE */
	size_t size;
	char target[32];	    /* M_LINK */
	char xval[24];		    /* user.model, "" if none */
	unsigned mode;		    /* permission bits */
	int64_t mtime_ns;	    /* set by utimensat only; -1: not tracked */
	struct mnode *kid[MAXKIDS]; /* M_DIR: children by name index */
	struct mnode *parent;	    /* M_DIR */
};

static struct mnode inodes[NINODES];
static unsigned ninodes;
static struct prng rng;
static uint64_t seed, opno;
static const char *root_path;
static bool dry; /* replaying the model only: no calls, each returns what it says */

static uint64_t below(uint64_t n)
{
	return prng_below(&rng, n);
}

static void die(const char *fmt, ...)
{
	va_list ap;

	printf("# FAIL seed %" PRIu64 " op %" PRIu64 ": ", seed, opno);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	exit(1);
}

static struct mnode *mnew(enum mtype t)
{
	struct mnode *n;

	if (ninodes == NINODES)
		die("model out of inodes");
	n = &inodes[ninodes++];
	memset(n, 0, sizeof(*n));
	n->type = t;
	n->nlink = 1;
	n->mode = t == M_DIR ? 0755 : 0644;
	n->mtime_ns = -1;
	return n;
}

/* ---- paths: a directory of the model and a name index in it ---------- */

struct mpath {
	struct mnode *dir;
	int name;
	char path[MAXPATH];
};

static void dir_path(const struct mnode *d, char *out)
{
	const struct mnode *chain[MAXNEST + 2];
	int n = 0;

	for (; d->parent; d = d->parent)
		chain[n++] = d;
	strcpy(out, root_path);
	while (n--) {
		const struct mnode *p = chain[n]->parent;

		for (int i = 0; i < MAXKIDS; i++)
			if (p->kid[i] == chain[n])
				snprintf(out + strlen(out), MAXPATH - strlen(out), "/%s", names[i]);
	}
}

static int depth(const struct mnode *d)
{
	int n = 0;

	for (; d->parent; d = d->parent)
		n++;
	return n;
}

/* Levels of directories below @d (0 for a leaf). */
static int height(const struct mnode *d)
{
	int h = 0;

	for (int i = 0; i < NNAMES; i++)
		if (d->kid[i] && d->kid[i]->type == M_DIR && height(d->kid[i]) + 1 > h)
			h = height(d->kid[i]) + 1;
	return h;
}

/* Every directory of the model into @out; their number. */
static int all_dirs(struct mnode *d, struct mnode **out, int n)
{
	out[n++] = d;
	for (int i = 0; i < NNAMES; i++)
		if (d->kid[i] && d->kid[i]->type == M_DIR)
			n = all_dirs(d->kid[i], out, n);
	return n;
}

static void pick(struct mnode *root, struct mpath *p)
{
	struct mnode *dirs[NINODES];
	int n = all_dirs(root, dirs, 0);

	p->dir = dirs[below((uint64_t)n)];
	p->name = (int)below(NNAMES);
	dir_path(p->dir, p->path);
	snprintf(p->path + strlen(p->path), MAXPATH - strlen(p->path), "/%s", names[p->name]);
}

static struct mnode *at(const struct mpath *p)
{
	return p->dir->kid[p->name];
}

static bool dir_empty(const struct mnode *d)
{
	for (int i = 0; i < NNAMES; i++)
		if (d->kid[i])
			return false;
	return true;
}

/* Is @a @d or above it? */
static bool is_ancestor(const struct mnode *a, const struct mnode *d)
{
	for (; d; d = d->parent)
		if (d == a)
			return true;
	return false;
}

/* ---- checking one call ------------------------------------------------- */

static uint64_t ncalls, nerrors; /* calls checked; those the model said fail */

static void expect(const char *what, const char *path, int got, int want)
{
	ncalls++;
	nerrors += want != 0;
	if (getenv("FUSE_MODEL_TRACE"))
		printf("%s %s -> %s\n", what, path, want ? strerror(want) : "ok");
	if (got != want)
		die("%s %s: got %s, model says %s", what, path, got ? strerror(got) : "success",
		    want ? strerror(want) : "success");
}

static int rc(int r)
{
	return r < 0 ? errno : 0;
}

/* A call's result: in a replay, what the model says (@want). */
#define CALL(want, call) (dry ? (want) : rc(call))

static void fill(unsigned char *buf, size_t len)
{
	prng_fill(&rng, buf, len);
}

/* ---- operations ---------------------------------------------------------- */

static void op_write(struct mnode *root)
{
	static unsigned char buf[16384];
	struct mpath p;
	struct mnode *n;
	size_t off = below(MAXFILE - sizeof(buf)), len = 1 + below(sizeof(buf));
	bool sync = below(8) == 0;
	int want = 0, fd = -1;

	pick(root, &p);
	n = at(&p);
	if (n && n->type == M_DIR)
		want = EISDIR;
	else if (n && n->type == M_LINK)
		want = ELOOP; /* O_NOFOLLOW */
	if (!dry) {
		fd = open(p.path, O_WRONLY | O_CREAT | O_NOFOLLOW, 0644);
		expect("open(O_CREAT)", p.path, fd < 0 ? errno : 0, want);
	}
	fill(buf, len);
	if (want)
		return;
	if (!n) {
		n = mnew(M_FILE);
		n->data = calloc(1, MAXFILE);
		if (!n->data)
			die("out of memory");
		p.dir->kid[p.name] = n;
	}
	if (!dry && pwrite(fd, buf, len, (off_t)off) != (ssize_t)len)
		die("pwrite %s: %s", p.path, strerror(errno));
	memcpy(n->data + off, buf, len);
	if (off + len > n->size)
		n->size = off + len;
	n->mtime_ns = -1;
	if (dry)
		return;
	if (sync)
		expect("fsync", p.path, rc(fsync(fd)), 0);
	expect("close", p.path, rc(close(fd)), 0);
}

static void op_truncate(struct mnode *root)
{
	struct mpath p;
	struct mnode *n;
	size_t size = below(MAXFILE);
	int want = 0;

	pick(root, &p);
	n = at(&p);
	if (!n)
		want = ENOENT;
	else if (n->type == M_DIR)
		want = EISDIR;
	else if (n->type == M_LINK)
		return; /* truncate follows links: not modelled */
	expect("truncate", p.path, CALL(want, truncate(p.path, (off_t)size)), want);
	if (want)
		return;
	if (size < n->size)
		memset(n->data + size, 0, n->size - size);
	n->size = size;
	n->mtime_ns = -1;
}

static void drop_name(struct mpath *p)
{
	struct mnode *n = at(p);

	p->dir->kid[p->name] = NULL;
	if (n->type != M_DIR)
		n->nlink--;
}

static void op_unlink(struct mnode *root)
{
	struct mpath p;
	struct mnode *n;
	int want = 0;

	pick(root, &p);
	n = at(&p);
	if (!n)
		want = ENOENT;
	else if (n->type == M_DIR)
		want = EISDIR;
	expect("unlink", p.path, CALL(want, unlink(p.path)), want);
	if (!want)
		drop_name(&p);
}

static void op_mkdir(struct mnode *root)
{
	struct mpath p;
	int want = 0;

	pick(root, &p);
	if (at(&p))
		want = EEXIST;
	else if (depth(p.dir) >= MAXDEPTH)
		return;
	expect("mkdir", p.path, CALL(want, mkdir(p.path, 0755)), want);
	if (!want) {
		struct mnode *d = mnew(M_DIR);

		d->parent = p.dir;
		p.dir->kid[p.name] = d;
	}
}

static void op_rmdir(struct mnode *root)
{
	struct mpath p;
	struct mnode *n;
	int want = 0;

	pick(root, &p);
	n = at(&p);
	if (!n)
		want = ENOENT;
	else if (n->type != M_DIR)
		want = ENOTDIR;
	else if (!dir_empty(n))
		want = ENOTEMPTY;
	expect("rmdir", p.path, CALL(want, rmdir(p.path)), want);
	if (!want)
		p.dir->kid[p.name] = NULL;
}

static void op_link(struct mnode *root)
{
	struct mpath s, d;
	struct mnode *n;
	int want = 0;

	pick(root, &s);
	pick(root, &d);
	n = at(&s);
	if (!n)
		want = ENOENT;
	else if (at(&d))
		want = EEXIST;
	else if (n->type == M_DIR)
		want = EPERM;
	expect("link", s.path, CALL(want, link(s.path, d.path)), want);
	if (want)
		return;
	d.dir->kid[d.name] = n;
	n->nlink++;
}

static void op_symlink(struct mnode *root)
{
	struct mpath p;
	struct mnode *n;
	char target[32];
	int want = 0;

	pick(root, &p);
	snprintf(target, sizeof(target), "t%" PRIu64, below(1000));
	if (at(&p))
		want = EEXIST;
	expect("symlink", p.path, CALL(want, symlink(target, p.path)), want);
	if (want)
		return;
	n = mnew(M_LINK);
	snprintf(n->target, sizeof(n->target), "%s", target);
	n->mode = 0777;
	p.dir->kid[p.name] = n;
}

/*
 * What rename(2) (with @flags) of @s onto @d returns, in the order Linux
 * checks (do_renameat2, then vfs_rename); -1 for a move the model does
 * not make (too deep).
 */
static int rename_expect(const struct mpath *s, const struct mpath *d, unsigned flags)
{
	struct mnode *a = at(s), *b = at(d);

	if (!a || ((flags & RENAME_EXCHANGE) && !b))
		return ENOENT;
	if ((flags & RENAME_NOREPLACE) && b)
		return EEXIST;
	if (a->type == M_DIR && is_ancestor(a, d->dir)) /* into its own subtree */
		return EINVAL;
	if (b && b->type == M_DIR && is_ancestor(b, s->dir)) /* onto an ancestor */
		return (flags & RENAME_EXCHANGE) ? EINVAL : ENOTEMPTY;
	if (a == b)
		return 0;
	if ((a->type == M_DIR && depth(d->dir) + 1 + height(a) > MAXNEST) ||
	    (b && (flags & RENAME_EXCHANGE) && b->type == M_DIR &&
	     depth(s->dir) + 1 + height(b) > MAXNEST))
		return -1;
	if (flags & RENAME_EXCHANGE)
		return 0;
	if (b && a->type == M_DIR && b->type != M_DIR)
		return ENOTDIR;
	if (b && a->type != M_DIR && b->type == M_DIR)
		return EISDIR;
	if (b && b->type == M_DIR && !dir_empty(b))
		return ENOTEMPTY;
	return 0;
}

static void op_rename(struct mnode *root)
{
	static const unsigned flag_set[] = {0, 0, 0, RENAME_NOREPLACE, RENAME_EXCHANGE};
	unsigned flags = flag_set[below(5)];
	struct mpath s, d;
	struct mnode *a, *b;
	int want;

	pick(root, &s);
	pick(root, &d);
	want = rename_expect(&s, &d, flags);
	if (want < 0)
		return;
	a = at(&s);
	b = at(&d);
	expect(flags == RENAME_EXCHANGE	   ? "rename(EXCHANGE)"
	       : flags == RENAME_NOREPLACE ? "rename(NOREPLACE)"
					   : "rename",
	       s.path, CALL(want, renameat2(AT_FDCWD, s.path, AT_FDCWD, d.path, flags)), want);
	if (want || a == b)
		return;
	if (flags & RENAME_EXCHANGE) {
		s.dir->kid[s.name] = b;
		d.dir->kid[d.name] = a;
		if (a->type == M_DIR)
			a->parent = d.dir;
		if (b->type == M_DIR)
			b->parent = s.dir;
		return;
	}
	if (b && b->type != M_DIR)
		b->nlink--;
	s.dir->kid[s.name] = NULL;
	d.dir->kid[d.name] = a;
	if (a->type == M_DIR)
		a->parent = d.dir;
}

static void op_xattr(struct mnode *root)
{
	struct mpath p;
	struct mnode *n;
	char v[24];
	int want = 0;

	pick(root, &p);
	n = at(&p);
	if (!n)
		want = ENOENT;
	else if (n->type == M_LINK)
		return; /* user.* xattrs on symlinks: EPERM, not modelled */
	if (below(3) == 0) {
		if (!want && !n->xval[0])
			want = ENODATA;
		expect("removexattr", p.path, CALL(want, removexattr(p.path, XATTR)), want);
		if (!want)
			n->xval[0] = 0;
		return;
	}
	snprintf(v, sizeof(v), "v%" PRIu64, below(100000));
	expect("setxattr", p.path, CALL(want, setxattr(p.path, XATTR, v, strlen(v), 0)), want);
	if (!want)
		snprintf(n->xval, sizeof(n->xval), "%s", v);
}

static void op_chmod_utimens(struct mnode *root)
{
	struct mpath p;
	struct mnode *n;
	unsigned mode = 0600 | (unsigned)below(0100);
	struct timespec ts[2];
	int want = 0;

	for (int i = 0; i < 2; i++) { /* in this order: a replay draws the same */
		ts[i].tv_sec = 1000000000 + (time_t)below(100000000);
		ts[i].tv_nsec = (long)below(1000000000);
	}

	pick(root, &p);
	n = at(&p);
	if (!n)
		want = ENOENT;
	else if (n->type == M_LINK)
		return; /* both follow links */
	if (n && n->type == M_DIR)
		mode |= 0700;
	expect("chmod", p.path, CALL(want, chmod(p.path, mode)), want);
	expect("utimensat", p.path, CALL(want, utimensat(AT_FDCWD, p.path, ts, 0)), want);
	if (want)
		return;
	n->mode = mode;
	n->mtime_ns = (int64_t)ts[1].tv_sec * 1000000000 + ts[1].tv_nsec;
}

/* ---- checking the tree ---------------------------------------------------- */

static void check_node(const char *path, const struct mnode *n)
{
	static unsigned char buf[MAXFILE + 1];
	struct stat st;
	char v[64];
	ssize_t len;

	if (lstat(path, &st) < 0)
		die("lstat %s: %s (the model has it)", path, strerror(errno));
	if ((n->type == M_FILE && !S_ISREG(st.st_mode)) ||
	    (n->type == M_DIR && !S_ISDIR(st.st_mode)) ||
	    (n->type == M_LINK && !S_ISLNK(st.st_mode)))
		die("%s: mode %o, not the model's type %d", path, st.st_mode, n->type);
	if (n->type != M_LINK && (st.st_mode & 07777) != n->mode)
		die("%s: permissions %o, model %o", path, st.st_mode & 07777, n->mode);
	if (n->type != M_DIR && st.st_nlink != (nlink_t)n->nlink)
		die("%s: nlink %lu, model %d", path, (unsigned long)st.st_nlink, n->nlink);
	if (n->mtime_ns >= 0 && n->type == M_FILE &&
	    (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec != n->mtime_ns)
		die("%s: mtime %lld.%09ld, model %lld ns", path, (long long)st.st_mtim.tv_sec,
		    st.st_mtim.tv_nsec, (long long)n->mtime_ns);
	if (n->type == M_LINK) {
		len = readlink(path, v, sizeof(v) - 1);
		if (len < 0 || (size_t)len != strlen(n->target) ||
		    memcmp(v, n->target, (size_t)len))
			die("%s: readlink differs from the model's %s", path, n->target);
		return;
	}
	len = getxattr(path, XATTR, v, sizeof(v));
	if (n->xval[0] ? (len != (ssize_t)strlen(n->xval) || memcmp(v, n->xval, (size_t)len))
		       : !(len < 0 && errno == ENODATA))
		die("%s: xattr %s differs from the model's '%s'", path, XATTR, n->xval);
	if (n->type == M_FILE) {
		int fd = open(path, O_RDONLY);

		if (fd < 0)
			die("open %s: %s", path, strerror(errno));
		len = pread(fd, buf, sizeof(buf), 0);
		close(fd);
		if (len != (ssize_t)n->size || (size_t)st.st_size != n->size)
			die("%s: %zd bytes read, size %lld, model %zu", path, len,
			    (long long)st.st_size, n->size);
		if (memcmp(buf, n->data, n->size))
			die("%s: content differs from the model", path);
	}
}

static void check_tree(const char *path, const struct mnode *d)
{
	bool seen[NNAMES] = {false};
	struct dirent *e;
	DIR *dir;

	check_node(path, d);
	dir = opendir(path);
	if (!dir)
		die("opendir %s: %s", path, strerror(errno));
	while ((e = readdir(dir))) {
		int i;

		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		for (i = 0; i < NNAMES && strcmp(e->d_name, names[i]); i++)
			;
		if (i == NNAMES || !d->kid[i])
			die("%s/%s is listed; the model has no such name", path, e->d_name);
		if (seen[i])
			die("%s/%s is listed twice", path, e->d_name);
		seen[i] = true;
	}
	closedir(dir);
	for (int i = 0; i < NNAMES; i++) {
		char sub[MAXPATH];

		if (!d->kid[i])
			continue;
		if (!seen[i])
			die("%s/%s is not listed", path, names[i]);
		snprintf(sub, sizeof(sub), "%s/%s", path, names[i]);
		if (d->kid[i]->type == M_DIR)
			check_tree(sub, d->kid[i]);
		else
			check_node(sub, d->kid[i]);
	}
}

/* How often each operation is drawn, in twentieths. */
static const struct {
	unsigned m_weight;
	void (*m_op)(struct mnode *root);
} mix[] = {
    {5, op_write},  {1, op_truncate}, {2, op_unlink},  {2, op_mkdir}, {1, op_rmdir},
    {3, op_rename}, {1, op_link},     {1, op_symlink}, {2, op_xattr}, {2, op_chmod_utimens},
};
#define MIX_TOTAL 20

/* Run (or, if dry, replay) @ops operations from @seed under root_path. */
static struct mnode *run(uint64_t ops)
{
	struct mnode *root = mnew(M_DIR);
	struct stat st;

	if (stat(root_path, &st) < 0)
		die("stat %s: %s", root_path, strerror(errno));
	root->mode = st.st_mode & 07777;
	for (opno = 1; opno <= ops; opno++) {
		unsigned k = (unsigned)below(MIX_TOTAL), i = 0;

		while (k >= mix[i].m_weight)
			k -= mix[i++].m_weight;
		mix[i].m_op(root);
		if (!dry && opno % 500 == 0)
			check_tree(root_path, root);
	}
	opno = ops;
	return root;
}

int main(int argc, char **argv)
{
	uint64_t ops;

	if (argc != 5 || (strcmp(argv[1], "run") && strcmp(argv[1], "check"))) {
		fprintf(stderr, "usage: fuse_model run|check DIR SEED OPS\n");
		return 2;
	}
	root_path = argv[2];
	seed = strtoull(argv[3], NULL, 0);
	ops = strtoull(argv[4], NULL, 0);
	prng_init(&rng, seed);
	dry = !strcmp(argv[1], "check");
	check_tree(root_path, run(ops));
	if (dry)
		printf("# seed %" PRIu64 ": the tree after %" PRIu64
		       " operations matches the model (%u inodes)\n",
		       seed, ops, ninodes);
	else
		printf("# seed %" PRIu64 ": %" PRIu64 " calls of %" PRIu64
		       " operations returned what the model said (%" PRIu64
		       " of them an error), the tree matches it (%u inodes)\n",
		       seed, ncalls, ops, nerrors, ninodes);
	return 0;
}

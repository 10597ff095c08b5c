/*
 * fuse_kill_load - the workload and the checker of test_fuse_kill.sh.
 *
 *   fuse_kill_load run DIR MANIFEST SEED
 *	Writes, overwrites, appends to, truncates, renames and unlinks
 *	files under DIR (four subdirectories d0..d3), fsyncing the file and
 *	its directories after each operation, until an operation fails
 *	(the daemon was killed: ENOTCONN) or 100,000 operations are done.
 *	MANIFEST (on another filesystem) records, with unbuffered write(2):
 *	    pending NAME [NAME2]     before an operation starts
 *	    done NAME SIZE HASH      once its fsyncs returned: its content
 *	    gone NAME                once an unlink/rename-away was fsynced
 *	    end                      the operation is durable
 *	Exits 0 after a failure of the file system (expected: the kill),
 *	1 on a usage or manifest error.
 *
 *   fuse_kill_load verify DIR MANIFEST
 *	Replays MANIFEST: every name whose last record is "done" must hold
 *	exactly that content; every "gone" name must be absent; names of
 *	the last operation if it has no "end" may be anything or absent; no
 *	other file may exist. Prints one "# ..." line per problem, exits 1
 *	if there is any.
 *
 * Content is a function of (seed, operation number), hashed with 64-bit
 * FNV-1a, and the workload keeps a model of every file to know the hash
 * of a file after an append, a partial overwrite or a truncate.
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
#include <unistd.h>

#define NDIRS  4
#define NFILES 48 /* names f0..f47, spread over the directories */
#define MAXSZ  (3u << 20)

static uint64_t rng;
static uint64_t next(void) /* xorshift64* */
{
	rng ^= rng >> 12;
	rng ^= rng << 25;
	rng ^= rng >> 27;
	return rng * 2685821657736338717ull;
}
static uint64_t below(uint64_t n)
{
	return next() % n;
}

static uint64_t fnv(const unsigned char *p, size_t n)
{
	uint64_t h = 1469598103934665603ull;
	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 1099511628211ull;
	return h;
}

struct file {
	bool exists;
	unsigned char *data;
	size_t size;
};
static struct file files[NFILES];
static const char *dir;
static int mfd;

static void name_of(int i, char *buf, size_t n)
{
	snprintf(buf, n, "d%d/f%d", i % NDIRS, i);
}

static void mlog(const char *fmt, ...)
{
	char line[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	if (write(mfd, line, n) != n) {
		perror("fuse_kill_load: manifest");
		exit(1);
	}
}

/* Any failure of the mount ends the run: exit 0 (the kill is expected). */
static void gone(const char *what, const char *path)
{
	fprintf(stderr, "fuse_kill_load: stopped: %s %s: %s\n", what, path, strerror(errno));
	exit(0);
}

static void fsync_path(const char *rel, bool is_dir)
{
	char p[4096];
	snprintf(p, sizeof p, "%s/%s", dir, rel);
	int fd = open(p, is_dir ? O_RDONLY | O_DIRECTORY : O_RDONLY);
	if (fd < 0 || fsync(fd) < 0)
		gone("fsync", p);
	close(fd);
}

static void fill(unsigned char *p, size_t n)
{
	for (size_t i = 0; i < n; i += 8) {
		uint64_t v = next();
		memcpy(p + i, &v, n - i < 8 ? n - i : 8);
	}
}

static size_t pick_size(void)
{
	switch (below(8)) {
	case 0:
		return 0;
	case 1:
		return below(4096) + 1;
	case 2:
		return MAXSZ / 2 + below(MAXSZ / 2);
	default:
		return below(256 << 10) + 1;
	}
}

static void do_write(int fd, const unsigned char *p, size_t n, off_t off, const char *path)
{
	while (n) {
		ssize_t w = pwrite(fd, p, n, off);
		if (w <= 0)
			gone("write", path);
		p += w, n -= w, off += w;
	}
}

static void record_done(int i)
{
	char nm[64];
	name_of(i, nm, sizeof nm);
	mlog("done %s %zu %016" PRIx64 "\n", nm, files[i].size, fnv(files[i].data, files[i].size));
}

static void one_op(void)
{
	int i = below(NFILES), op = below(10);
	struct file *f = &files[i];
	char nm[64], p[4096];
	name_of(i, nm, sizeof nm);
	snprintf(p, sizeof p, "%s/%s", dir, nm);
	if (!f->exists)
		op = 0;
	if (op <= 3) { /* create or overwrite from scratch */
		size_t n = pick_size();
		mlog("pending %s\n", nm);
		int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (fd < 0)
			gone("open", p);
		f->data = realloc(f->data, n ? n : 1);
		fill(f->data, n);
		do_write(fd, f->data, n, 0, p);
		if (fsync(fd) < 0)
			gone("fsync", p);
		close(fd);
		f->size = n, f->exists = true;
		fsync_path(nm, false); /* nothing: a second fsync of clean data */
		snprintf(p, sizeof p, "d%d", i % NDIRS);
		fsync_path(p, true);
		record_done(i);
	} else if (op <= 5) { /* append, or write somewhere inside */
		size_t n = below(64 << 10) + 1;
		size_t off = op == 4 ? f->size : below(f->size + 1);
		if (off + n > MAXSZ) /* keep files within MAXSZ: an in-place write */
			off = 0, op = 5;
		mlog("pending %s\n", nm);
		int fd = open(p, op == 4 ? O_WRONLY | O_APPEND : O_WRONLY);
		if (fd < 0)
			gone("open", p);
		if (off + n > f->size) {
			f->data = realloc(f->data, off + n);
			if (off > f->size)
				memset(f->data + f->size, 0, off - f->size);
			f->size = off + n;
		}
		fill(f->data + off, n);
		if (op == 4) {
			if (write(fd, f->data + off, n) != (ssize_t)n)
				gone("append", p);
		} else {
			do_write(fd, f->data + off, n, off, p);
		}
		if (fdatasync(fd) < 0 || fsync(fd) < 0)
			gone("fsync", p);
		close(fd);
		record_done(i);
	} else if (op == 6) { /* truncate, shorter or longer */
		size_t n = below(f->size + (128 << 10));
		if (n > MAXSZ)
			n = MAXSZ;
		mlog("pending %s\n", nm);
		if (truncate(p, n) < 0)
			gone("truncate", p);
		f->data = realloc(f->data, n ? n : 1);
		if (n > f->size)
			memset(f->data + f->size, 0, n - f->size);
		f->size = n;
		fsync_path(nm, false);
		record_done(i);
	} else if (op <= 8) { /* rename onto another name (maybe in another dir) */
		int j = below(NFILES);
		char nm2[64], p2[4096], d[8];
		if (j == i)
			return;
		name_of(j, nm2, sizeof nm2);
		snprintf(p2, sizeof p2, "%s/%s", dir, nm2);
		mlog("pending %s %s\n", nm, nm2);
		if (rename(p, p2) < 0)
			gone("rename", p);
		snprintf(d, sizeof d, "d%d", i % NDIRS);
		fsync_path(d, true);
		snprintf(d, sizeof d, "d%d", j % NDIRS);
		fsync_path(d, true);
		free(files[j].data);
		files[j] = *f;
		*f = (struct file){0};
		mlog("gone %s\n", nm);
		record_done(j);
	} else { /* unlink */
		char d[8];
		mlog("pending %s\n", nm);
		if (unlink(p) < 0)
			gone("unlink", p);
		snprintf(d, sizeof d, "d%d", i % NDIRS);
		fsync_path(d, true);
		free(f->data);
		*f = (struct file){0};
		mlog("gone %s\n", nm);
	}
	mlog("end\n");
}

static int run(const char *manifest, uint64_t seed)
{
	char p[4096];
	rng = seed * 0x9e3779b97f4a7c15ull + 1;
	mfd = open(manifest, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
	if (mfd < 0) {
		perror(manifest);
		return 1;
	}
	for (int d = 0; d < NDIRS; d++) {
		snprintf(p, sizeof p, "%s/d%d", dir, d);
		if (mkdir(p, 0755) < 0 && errno != EEXIST)
			gone("mkdir", p);
	}
	fsync_path(".", true);
	mlog("dirs\n");
	for (int n = 0; n < 100000; n++)
		one_op();
	return 0;
}

/* ---- verify ------------------------------------------------------------------------ */

struct want {
	char name[64];
	int state; /* 0 unknown, 1 done, 2 gone, 3 in flight */
	size_t size;
	uint64_t hash;
};
static struct want want[NFILES];
static int problems;

static struct want *want_of(const char *name)
{
	int i;
	if (sscanf(name, "d%*d/f%d", &i) != 1 || i < 0 || i >= NFILES)
		return NULL;
	snprintf(want[i].name, sizeof want[i].name, "%s", name);
	return &want[i];
}

static void problem(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	printf("# ");
	vprintf(fmt, ap);
	printf("\n");
	va_end(ap);
	problems++;
}

static int verify(const char *manifest)
{
	FILE *m = fopen(manifest, "r");
	char line[512], a[64], b[64];
	bool dirs = false;
	struct want *pend[2] = {0};
	if (!m) {
		perror(manifest);
		return 1;
	}
	while (fgets(line, sizeof line, m)) {
		size_t sz;
		uint64_t h;
		struct want *w;
		if (strcmp(line, "dirs\n") == 0) {
			dirs = true;
		} else if (strcmp(line, "end\n") == 0) {
			pend[0] = pend[1] = NULL;
		} else if (sscanf(line, "pending %63s %63s", a, b) == 2) {
			pend[0] = want_of(a), pend[1] = want_of(b);
		} else if (sscanf(line, "pending %63s", a) == 1) {
			pend[0] = want_of(a), pend[1] = NULL;
		} else if (sscanf(line, "done %63s %zu %" SCNx64, a, &sz, &h) == 3 &&
			   (w = want_of(a))) {
			w->state = 1, w->size = sz, w->hash = h;
		} else if (sscanf(line, "gone %63s", a) == 1 && (w = want_of(a))) {
			w->state = 2;
		} else if (line[strlen(line) - 1] == '\n') {
			problem("manifest line not understood: %s", line);
		} /* else: a torn last line (the workload was writing it) */
	}
	fclose(m);
	for (int k = 0; k < 2; k++)
		if (pend[k])
			pend[k]->state = 3;
	for (int d = 0; dirs && d < NDIRS; d++) {
		char p[4096];
		snprintf(p, sizeof p, "%s/d%d", dir, d);
		DIR *dh = opendir(p);
		struct dirent *de;
		if (!dh) {
			problem("directory d%d: %s", d, strerror(errno));
			continue;
		}
		while ((de = readdir(dh))) {
			int i;
			char extra;
			if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
				continue;
			if (sscanf(de->d_name, "f%d%c", &i, &extra) != 1 || i < 0 || i >= NFILES ||
			    i % NDIRS != d) {
				problem("d%d/%s: a name the workload never made", d, de->d_name);
				continue;
			}
			if (want[i].state == 0 || want[i].state == 2)
				problem("d%d/%s exists; it was %s", d, de->d_name,
					want[i].state ? "unlinked or renamed away, and fsynced"
						      : "never fsynced");
		}
		closedir(dh);
	}
	for (int i = 0; i < NFILES; i++) {
		struct want *w = &want[i];
		char p[8192];
		if (w->state != 1)
			continue;
		snprintf(p, sizeof p, "%s/%s", dir, w->name);
		int fd = open(p, O_RDONLY);
		if (fd < 0) {
			problem("%s: fsynced (%zu bytes), now %s", w->name, w->size,
				strerror(errno));
			continue;
		}
		unsigned char *buf = malloc(MAXSZ + 1);
		size_t n = 0;
		ssize_t r;
		while (n <= MAXSZ && (r = read(fd, buf + n, MAXSZ + 1 - n)) > 0)
			n += r;
		close(fd);
		uint64_t h = fnv(buf, n);
		free(buf);
		if (n != w->size || h != w->hash)
			problem("%s: fsynced %zu bytes hash %016" PRIx64
				", reads %zu bytes hash %016" PRIx64,
				w->name, w->size, w->hash, n, h);
	}
	return problems ? 1 : 0;
}

int main(int argc, char **argv)
{
	if (argc == 5 && !strcmp(argv[1], "run")) {
		dir = argv[2];
		return run(argv[3], strtoull(argv[4], NULL, 0));
	}
	if (argc == 4 && !strcmp(argv[1], "verify")) {
		dir = argv[2];
		return verify(argv[3]);
	}
	fprintf(stderr, "usage: fuse_kill_load run DIR MANIFEST SEED | verify DIR MANIFEST\n");
	return 1;
}

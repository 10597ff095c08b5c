/*
 * cairn_example.c - libcairn in a few lines: make a filesystem in a
 * temporary image, create a directory and a file, write it, read it
 * back, list the directory, and close. Uses only <cairn/cairn.h>.
 */
#include <cairn/cairn.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int list_entry(void *ctx, const char *name, size_t len, uint64_t ino, unsigned type,
		      uint64_t next_cookie)
{
	(void)next_cookie;
	(*(int *)ctx)++;
	printf("  %.*s  (inode %llu, %s)\n", (int)len, name, (unsigned long long)ino,
	       type == DT_DIR ? "directory" : "file");
	return 0;
}

static int fail(const char *what, long err)
{
	fprintf(stderr, "cairn_example: %s: %s\n", what, strerror((int)-err));
	return 1;
}

int main(void)
{
	struct cairn_mkfs_opts mo = {.cmo_size = 64ull << 20, .cmo_seg_blocks = 64};
	const char msg[] = "hello, cairn\n";
	char path[] = "/tmp/cairn-example-XXXXXX", buf[64];
	struct cairn_stat st;
	struct cairn *c;
	int fd, err, n = 0;
	ssize_t got;

	fd = mkstemp(path);
	if (fd < 0)
		return 1;
	close(fd);
	unlink(path); /* cairn_mkfs creates it, sparse */
	if ((err = cairn_mkfs(path, &mo)))
		return fail("mkfs", err);
	if ((err = cairn_open(path, NULL, &c)))
		return fail("open", err);
	if ((err = cairn_mkdir_path(c, "/docs", 0755, NULL)))
		return fail("mkdir", err);
	if ((got = cairn_write_path(c, "/docs/hello.txt", msg, sizeof(msg) - 1, 0)) < 0)
		return fail("write", got);
	got = cairn_read_path(c, "/docs/hello.txt", buf, sizeof(buf), 0);
	if (got != (ssize_t)sizeof(msg) - 1 || memcmp(buf, msg, (size_t)got))
		return fail("read back", got < 0 ? got : -5);
	if ((err = cairn_stat_path(c, "/docs", &st)))
		return fail("stat", err);
	printf("/docs:\n");
	if ((err = cairn_readdir(c, st.cs_ino, 0, list_entry, &n)))
		return fail("readdir", err);
	if ((err = cairn_close(c)))
		return fail("close", err);
	unlink(path);
	printf("read back %zd bytes, listed %d entries: ok\n", got, n);
	return n == 3 ? 0 : 1;
}

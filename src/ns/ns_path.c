/*
 * ns_path.c - path-based calls: '/'-separated paths resolved from the
 * root, one component at a time through cairn's inode calls.
 *
 * ns_walk keeps the part of the path still to resolve in a buffer; a
 * symbolic link met on the way (or at the end, when following) is
 * replaced by its target followed by the rest, from the root for an
 * absolute target, else from the directory holding the link; more than
 * CAIRN_SYMLOOP_MAX links is -ELOOP. A path of CAIRN_PATH_MAX bytes or
 * more, or a component over 255 bytes, is -ENAMETOOLONG; an empty path
 * -ENOENT; a non-directory in the middle -ENOTDIR. No lock is held
 * between components (as a path walk in any filesystem: each lookup is
 * atomic, the walk is not).
 */
#include "ns/ns.h"

#include <stdlib.h>
#include <string.h>

struct ns_walk {
	uint64_t w_dir;		       /* directory holding the last component */
	uint64_t w_ino;		       /* what it names; 0: nothing (yet) */
	char w_last[DIR_NAME_MAX + 1]; /* the last component; "" for the root */
};

/* Replace the walk's remaining path @rest with @target + "/" + @rest. */
static int ns_walk_splice(struct cairn *c, uint64_t link, char *buf, char **rest)
{
	size_t rl = strlen(*rest);
	char *tmp = malloc(CAIRN_PATH_MAX + 1);
	ssize_t n;
	int err = 0;

	if (!tmp)
		return -ENOMEM;
	n = cairn_readlink(c, link, tmp, CAIRN_PATH_MAX);
	if (n < 0)
		err = (int)n;
	else if ((size_t)n + 1 + rl >= 2 * CAIRN_PATH_MAX)
		err = -ENAMETOOLONG;
	if (!err) {
		memmove(buf + n + 1, *rest, rl + 1);
		memcpy(buf, tmp, (size_t)n);
		buf[n] = '/';
		*rest = buf;
	}
	free(tmp);
	return err;
}

static int ns_walk_type(struct cairn *c, uint64_t ino, uint32_t *mode)
{
	struct cairn_stat st;
	int err = cairn_getattr(c, ino, &st);

	*mode = st.cs_mode;
	return err;
}

/* Resolve @path into @w; @follow: follow a symlink as the last component. */
static int ns_walk_path(struct cairn *c, const char *path, bool follow, struct ns_walk *w,
			char *buf)
{
	char *rest = buf;
	unsigned links = 0;
	uint64_t cur = INODE_ROOT;
	int err;

	if (!path)
		return -EINVAL;
	if (strlen(path) >= CAIRN_PATH_MAX)
		return -ENAMETOOLONG;
	if (!*path)
		return -ENOENT;
	strcpy(buf, path);
	for (;;) {
		size_t len;
		bool last;
		uint64_t ino;
		uint32_t mode;

		if (*rest == '/') {
			cur = rest == buf && links == 0 ? INODE_ROOT : cur;
			while (*rest == '/')
				rest++;
		}
		if (!*rest) { /* the path names the directory itself */
			*w = (struct ns_walk){.w_dir = cur, .w_ino = cur};
			return 0;
		}
		len = strcspn(rest, "/");
		if (len > DIR_NAME_MAX)
			return -ENAMETOOLONG;
		last = rest[len + strspn(rest + len, "/")] == 0;
		err = ns_lookup_ino(c, cur, rest, len, &ino);
		if (err && !(err == -ENOENT && last))
			return err;
		if (err) /* the last component does not exist */
			ino = 0;
		mode = 0;
		if (ino && (err = ns_walk_type(c, ino, &mode)))
			return err;
		if (ino && S_ISLNK(mode) && (!last || follow)) {
			if (++links > CAIRN_SYMLOOP_MAX)
				return -ELOOP;
			rest += len;
			err = ns_walk_splice(c, ino, buf + 2 * CAIRN_PATH_MAX + 2, &rest);
			if (err)
				return err;
			memmove(buf, rest, strlen(rest) + 1);
			rest = buf;
			if (*rest == '/')
				cur = INODE_ROOT;
			continue;
		}
		if (last) {
			w->w_dir = cur;
			w->w_ino = ino;
			memcpy(w->w_last, rest, len);
			w->w_last[len] = 0;
			return 0;
		}
		if (!S_ISDIR(mode))
			return -ENOTDIR;
		cur = ino;
		rest += len;
	}
}

static int ns_walk(struct cairn *c, const char *path, bool follow, struct ns_walk *w)
{
	char *buf = malloc(4 * CAIRN_PATH_MAX + 4);
	int err;

	if (!buf)
		return -ENOMEM;
	err = ns_walk_path(c, path, follow, w, buf);
	free(buf);
	return err;
}

static int ns_stat_walk(struct cairn *c, const char *path, bool follow, struct cairn_stat *st)
{
	struct ns_walk w;
	int err = ns_walk(c, path, follow, &w);

	if (!err && !w.w_ino)
		err = -ENOENT;
	return err ? err : cairn_getattr(c, w.w_ino, st);
}

int cairn_stat_path(struct cairn *c, const char *path, struct cairn_stat *st)
{
	return ns_stat_walk(c, path, true, st);
}

int cairn_lstat_path(struct cairn *c, const char *path, struct cairn_stat *st)
{
	return ns_stat_walk(c, path, false, st);
}

int cairn_mkdir_path(struct cairn *c, const char *path, uint32_t mode, const struct cairn_cred *cr)
{
	struct ns_walk w;
	int err = ns_walk(c, path, false, &w);

	if (!err && (w.w_ino || !w.w_last[0]))
		err = -EEXIST;
	return err ? err : cairn_mkdir(c, w.w_dir, w.w_last, mode, cr, NULL);
}

int cairn_create_path(struct cairn *c, const char *path, uint32_t mode, unsigned flags,
		      const struct cairn_cred *cr, uint64_t *ino)
{
	struct cairn_stat st;
	struct ns_walk w;
	int err = -EAGAIN;

	if (flags & ~CAIRN_O_EXCL)
		return -EINVAL;
	for (int i = 0; i < 8 && (err == -EAGAIN || err == -ENOENT || err == -EEXIST); i++) {
		err = ns_walk(c, path, !(flags & CAIRN_O_EXCL), &w);
		if (err)
			return err;
		if (w.w_ino && (flags & CAIRN_O_EXCL))
			return -EEXIST;
		if (!w.w_ino) {
			err =
			    cairn_mknod(c, w.w_dir, w.w_last, S_IFREG | (mode & 07777), 0, cr, &st);
			if (err == -EEXIST && !(flags & CAIRN_O_EXCL))
				continue; /* raced with another creator: open it */
			if (err)
				return err;
			w.w_ino = st.cs_ino;
		} else {
			err = ns_walk_type(c, w.w_ino, &st.cs_mode);
			if (!err && S_ISDIR(st.cs_mode))
				return -EISDIR;
		}
		if (!err)
			err = cairn_open_inode(c, w.w_ino);
		if (!err)
			*ino = w.w_ino;
		if (err != -ENOENT)
			return err;
	}
	return err;
}

int cairn_open_path(struct cairn *c, const char *path, uint64_t *ino)
{
	struct ns_walk w;
	int err = ns_walk(c, path, true, &w);

	if (!err && !w.w_ino)
		err = -ENOENT;
	if (!err)
		err = cairn_open_inode(c, w.w_ino);
	if (!err)
		*ino = w.w_ino;
	return err;
}

int cairn_unlink_path(struct cairn *c, const char *path)
{
	struct ns_walk w;
	int err = ns_walk(c, path, false, &w);

	if (!err && !w.w_last[0])
		err = -EISDIR;
	return err ? err : cairn_unlink(c, w.w_dir, w.w_last);
}

int cairn_rmdir_path(struct cairn *c, const char *path)
{
	struct ns_walk w;
	int err = ns_walk(c, path, false, &w);

	if (!err && !w.w_last[0])
		err = -EBUSY;
	return err ? err : cairn_rmdir(c, w.w_dir, w.w_last);
}

int cairn_rename_path(struct cairn *c, const char *from, const char *to, unsigned flags)
{
	struct ns_walk a, b;
	int err = ns_walk(c, from, false, &a);

	if (!err)
		err = ns_walk(c, to, false, &b);
	if (!err && (!a.w_last[0] || !b.w_last[0]))
		err = -EBUSY;
	return err ? err : cairn_rename(c, a.w_dir, a.w_last, b.w_dir, b.w_last, flags);
}

int cairn_symlink_path(struct cairn *c, const char *target, const char *linkpath,
		       const struct cairn_cred *cr)
{
	struct ns_walk w;
	int err = ns_walk(c, linkpath, false, &w);

	if (!err && (w.w_ino || !w.w_last[0]))
		err = -EEXIST;
	return err ? err : cairn_symlink(c, w.w_dir, w.w_last, target, cr, NULL);
}

int cairn_link_path(struct cairn *c, const char *existing, const char *newpath)
{
	struct ns_walk a, b;
	int err = ns_walk(c, existing, false, &a);

	if (!err && !a.w_ino)
		err = -ENOENT;
	if (!err)
		err = ns_walk(c, newpath, false, &b);
	if (!err && (b.w_ino || !b.w_last[0]))
		err = -EEXIST;
	return err ? err : cairn_link(c, a.w_ino, b.w_dir, b.w_last, NULL);
}

ssize_t cairn_read_path(struct cairn *c, const char *path, void *buf, size_t size, uint64_t off)
{
	uint64_t ino;
	ssize_t n;
	int err = cairn_open_path(c, path, &ino);

	if (err)
		return err;
	n = cairn_pread(c, ino, buf, size, off);
	cairn_release(c, ino);
	return n;
}

ssize_t cairn_write_path(struct cairn *c, const char *path, const void *buf, size_t size,
			 uint64_t off)
{
	uint64_t ino;
	ssize_t n;
	int err = cairn_create_path(c, path, 0644, 0, NULL, &ino);

	if (err)
		return err;
	n = cairn_pwrite(c, ino, buf, size, off);
	cairn_release(c, ino);
	return n;
}

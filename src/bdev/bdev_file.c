/*
 * bdev_file.c - the block device backed by an image file or a block device.
 *
 * Block n lives at byte offset n * block_size of the file. Reads and
 * writes are pread()/pwrite() loops; flush is fdatasync(). The size is
 * fixed at open: fstat() for a regular file, ioctl(BLKGETSIZE64) for a
 * block device, rounded down to whole blocks.
 *
 *   bdev_open_file
 *     -> bdev_file_open_fd    open (creating with O_EXCL if asked)
 *     -> bdev_file_lock       flock(LOCK_EX or LOCK_SH, | LOCK_NB) if asked
 *     -> bdev_file_size       ftruncate a new image; measure
 *     -> bdev_flusher_enable  a writable open flushes early when asked
 *                             (bdev.c): fdatasync waits for the medium
 *
 * Invariants
 *   (1) bf_fd and bf_rdonly never change between open and close, and
 *       pread/pwrite/fdatasync on one descriptor are safe from many
 *       threads: the backend needs no lock.
 *   (2) Every read and write transfers the whole range or returns an
 *       error: EINTR and short transfers are retried; end of file inside
 *       the device (the file shrank under us) is -EIO.
 *   (3) A read-only device never writes: bdev_write returns -EROFS.
 *   (4) If open fails after creating the image, the image is removed.
 *   (5) The flock, if taken, is held until bdev_unlock or bdev_close (it
 *       is released by closing bf_fd); so are pins, until dropped.
 *
 * Lock order: none (no locks are taken).
 */
#include "bdev/bdev_internal.h"
#include "util/util.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <limits.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#define BDEV_FILE_FLAGS (BDEV_RDONLY | BDEV_CREATE | BDEV_EXCL_LOCK | BDEV_SHARED_LOCK)

/*
 * Pins are open file description locks (F_OFD_SETLK) on one byte each, at
 * offsets far past any image's end so they never meet a lock on data:
 * key k locks byte BDEV_PIN_BASE + (k & BDEV_PIN_MASK). They are apart
 * from the flock: a writer's exclusive flock and readers' pins coexist.
 */
#define BDEV_PIN_BASE ((off_t)1 << 62)
#define BDEV_PIN_MASK (((uint64_t)1 << 61) - 1)

struct bdev_file {
	struct bdev bf_bdev;
	int bf_fd;	/* immutable after open */
	bool bf_rdonly; /* immutable after open */
};

static struct bdev_file *bdev_to_file(struct bdev *d)
{
	return container_of(d, struct bdev_file, bf_bdev);
}

int bdev_fd_pread(int fd, void *buf, size_t len, off_t off)
{
	unsigned char *p = buf;

	while (len) {
		ssize_t n = pread(fd, p, len, off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO;
		p += n;
		len -= (size_t)n;
		off += n;
	}
	return 0;
}

int bdev_fd_pwrite(int fd, const void *buf, size_t len, off_t off)
{
	const unsigned char *p = buf;

	while (len) {
		ssize_t n = pwrite(fd, p, len, off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO;
		p += n;
		len -= (size_t)n;
		off += n;
	}
	return 0;
}

int bdev_fd_pwritev(int fd, struct iovec *iov, unsigned n, off_t off)
{
	while (n) {
		ssize_t done = pwritev(fd, iov, (int)MIN(n, (unsigned)IOV_MAX), off);

		if (done < 0 && errno == EINTR)
			continue;
		if (done < 0)
			return -errno;
		if (done == 0)
			return -EIO;
		off += done;
		while (n && (size_t)done >= iov->iov_len) {
			done -= (ssize_t)iov->iov_len;
			iov++;
			n--;
		}
		if (n) {
			iov->iov_base = (unsigned char *)iov->iov_base + done;
			iov->iov_len -= (size_t)done;
		}
	}
	return 0;
}

static int bdev_file_read(struct bdev *d, uint64_t blk, uint32_t count, void *buf)
{
	struct bdev_file *f = bdev_to_file(d);

	return bdev_fd_pread(f->bf_fd, buf, bdev_bytes(d, count), (off_t)bdev_bytes(d, blk));
}

static int bdev_file_write(struct bdev *d, uint64_t blk, uint32_t count, const void *buf)
{
	struct bdev_file *f = bdev_to_file(d);

	if (f->bf_rdonly)
		return -EROFS;
	return bdev_fd_pwrite(f->bf_fd, buf, bdev_bytes(d, count), (off_t)bdev_bytes(d, blk));
}

static int bdev_file_writev(struct bdev *d, uint64_t blk, const struct iovec *iov, unsigned n)
{
	struct bdev_file *f = bdev_to_file(d);
	struct iovec *copy;
	int err;

	if (f->bf_rdonly)
		return -EROFS;
	copy = malloc(n * sizeof(*copy)); /* bdev_fd_pwritev consumes it */
	if (!copy)
		return -ENOMEM;
	memcpy(copy, iov, n * sizeof(*copy));
	err = bdev_fd_pwritev(f->bf_fd, copy, n, (off_t)bdev_bytes(d, blk));
	free(copy);
	return err;
}

static int bdev_file_flush(struct bdev *d)
{
	struct bdev_file *f = bdev_to_file(d);

	if (fdatasync(f->bf_fd) < 0)
		return -errno;
	return 0;
}

/*
 * Queue the range's dirty pages for writeback (sync_file_range's
 * SYNC_FILE_RANGE_WRITE: no wait, no device cache flush). The log calls
 * it after each full log of a commit, so the disk works while the commit
 * builds the next one, and the commit's fdatasync waits for the last log
 * only. Failures are ignored: fdatasync still writes and reports them.
 */
static void bdev_file_start_writeback(struct bdev *d, uint64_t blk, uint32_t count)
{
	struct bdev_file *f = bdev_to_file(d);

	if (!f->bf_rdonly)
		(void)sync_file_range(f->bf_fd, (off_t)bdev_bytes(d, blk),
				      (off_t)bdev_bytes(d, count), SYNC_FILE_RANGE_WRITE);
}

static void bdev_file_close(struct bdev *d)
{
	struct bdev_file *f = bdev_to_file(d);

	close(f->bf_fd);
	free(f);
}

static int bdev_file_unlock(struct bdev *d)
{
	struct bdev_file *f = bdev_to_file(d);

	while (flock(f->bf_fd, LOCK_UN) < 0)
		if (errno != EINTR)
			return -errno;
	return 0;
}

static int bdev_file_pin(struct bdev *d, uint64_t key, enum bdev_pin_mode how)
{
	static const short type[] = {[BDEV_PIN_SHARED] = F_RDLCK,
				     [BDEV_PIN_EXCL] = F_WRLCK,
				     [BDEV_PIN_DROP] = F_UNLCK,
				     [BDEV_PIN_SHARED_WAIT] = F_RDLCK};
	struct bdev_file *f = bdev_to_file(d);
	struct flock fl = {.l_type = type[how],
			   .l_whence = SEEK_SET,
			   .l_start = BDEV_PIN_BASE + (off_t)(key & BDEV_PIN_MASK),
			   .l_len = 1};

	while (fcntl(f->bf_fd, how == BDEV_PIN_SHARED_WAIT ? F_OFD_SETLKW : F_OFD_SETLK, &fl) < 0) {
		if (errno == EAGAIN || errno == EACCES)
			return -EBUSY;
		if (errno != EINTR)
			return -errno;
	}
	return 0;
}

static int bdev_file_pin_any(struct bdev *d)
{
	struct bdev_file *f = bdev_to_file(d);
	struct flock fl = {.l_type = F_WRLCK,
			   .l_whence = SEEK_SET,
			   .l_start = BDEV_PIN_BASE,
			   .l_len = (off_t)BDEV_PIN_MASK + 1};

	if (fcntl(f->bf_fd, F_OFD_GETLK, &fl) < 0)
		return -errno;
	return fl.l_type == F_UNLCK ? 0 : -EBUSY;
}

static int bdev_file_pin_held(struct bdev *d, uint64_t key)
{
	struct bdev_file *f = bdev_to_file(d);
	struct flock fl = {.l_type = F_WRLCK,
			   .l_whence = SEEK_SET,
			   .l_start = BDEV_PIN_BASE + (off_t)(key & BDEV_PIN_MASK),
			   .l_len = 1};

	if (fcntl(f->bf_fd, F_OFD_GETLK, &fl) < 0)
		return -errno;
	return fl.l_type == F_UNLCK ? 0 : -EBUSY;
}

static int bdev_file_identity(struct bdev *d, struct bdev_identity *id)
{
	struct stat st;

	if (fstat(bdev_to_file(d)->bf_fd, &st) < 0)
		return -errno;
	*id = (struct bdev_identity){(uint64_t)st.st_dev, (uint64_t)st.st_ino};
	return 0;
}

static const struct bdev_ops bdev_file_ops = {
    .bo_read = bdev_file_read,
    .bo_write = bdev_file_write,
    .bo_writev = bdev_file_writev,
    .bo_start_writeback = bdev_file_start_writeback,
    .bo_flush = bdev_file_flush,
    .bo_close = bdev_file_close,
    .bo_unlock = bdev_file_unlock,
    .bo_pin = bdev_file_pin,
    .bo_pin_any = bdev_file_pin_any,
    .bo_pin_held = bdev_file_pin_held,
    .bo_identity = bdev_file_identity,
};

/*
 * Open @path; with BDEV_CREATE try to create it first (O_EXCL, so that
 * *@created says truthfully whether this call made the file).
 * Returns the descriptor or -errno.
 */
static int bdev_file_open_fd(const char *path, unsigned flags, bool *created)
{
	int oflags = O_CLOEXEC | ((flags & BDEV_RDONLY) ? O_RDONLY : O_RDWR);
	int fd;

	*created = false;
	if (flags & BDEV_CREATE) {
		fd = open(path, oflags | O_CREAT | O_EXCL, 0644);
		if (fd >= 0 || errno != EEXIST) {
			*created = fd >= 0;
			return fd >= 0 ? fd : -errno;
		}
	}
	fd = open(path, oflags);
	return fd >= 0 ? fd : -errno;
}

static int bdev_file_lock(int fd, unsigned flags)
{
	if (!(flags & (BDEV_EXCL_LOCK | BDEV_SHARED_LOCK)))
		return 0;
	while (flock(fd, ((flags & BDEV_EXCL_LOCK) ? LOCK_EX : LOCK_SH) | LOCK_NB) < 0) {
		if (errno == EWOULDBLOCK)
			return -EBUSY;
		if (errno != EINTR)
			return -errno;
	}
	return 0;
}

/* The size in bytes of the regular file or block device behind @fd. */
static int bdev_file_measure(int fd, uint64_t *bytes)
{
	struct stat st;

	if (fstat(fd, &st) < 0)
		return -errno;
	if (S_ISREG(st.st_mode)) {
		*bytes = (uint64_t)st.st_size;
		return 0;
	}
	if (!S_ISBLK(st.st_mode))
		return -EINVAL;
	if (ioctl(fd, BLKGETSIZE64, bytes) < 0)
		return -errno;
	return 0;
}

/*
 * Size a new image to @nblocks blocks (sparse), or measure an existing
 * one; the result is in whole blocks and passes bdev_geometry_check().
 */
static int bdev_file_size(int fd, bool created, uint32_t block_size, uint64_t *nblocks)
{
	uint64_t bytes;
	int err;

	if (created) {
		err = bdev_geometry_check(block_size, *nblocks);
		if (err)
			return err;
		if (ftruncate(fd, (off_t)(*nblocks * block_size)) < 0)
			return -errno;
		return 0;
	}
	err = bdev_file_measure(fd, &bytes);
	if (err)
		return err;
	*nblocks = bytes / block_size;
	return bdev_geometry_check(block_size, *nblocks);
}

static int bdev_file_args_check(const char *path, uint32_t block_size, unsigned flags,
				struct bdev **out)
{
	if (!path || !out || (flags & ~(unsigned)BDEV_FILE_FLAGS))
		return -EINVAL;
	if ((flags & BDEV_RDONLY) && (flags & BDEV_CREATE))
		return -EINVAL;
	if ((flags & BDEV_EXCL_LOCK) && (flags & BDEV_SHARED_LOCK))
		return -EINVAL;
	/* any nblocks will do to check the block size */
	return bdev_geometry_check(block_size, 1);
}

int bdev_open_file(const char *path, uint32_t block_size, uint64_t nblocks, unsigned flags,
		   struct bdev **out)
{
	struct bdev_file *f;
	bool created;
	int fd, err;

	err = bdev_file_args_check(path, block_size, flags, out);
	if (err)
		return err;
	f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	fd = bdev_file_open_fd(path, flags, &created);
	if (fd < 0) {
		err = fd;
		goto out_free;
	}
	err = bdev_file_lock(fd, flags);
	if (!err)
		err = bdev_file_size(fd, created, block_size, &nblocks);
	if (err)
		goto out_close;
	bdev_init(&f->bf_bdev, &bdev_file_ops, block_size, nblocks);
	if (!(flags & BDEV_RDONLY))
		err = bdev_flusher_enable(&f->bf_bdev);
	if (err)
		goto out_close;
	f->bf_fd = fd;
	f->bf_rdonly = flags & BDEV_RDONLY;
	*out = &f->bf_bdev;
	return 0;

out_close:
	if (created)
		unlink(path);
	close(fd);
out_free:
	free(f);
	return err;
}

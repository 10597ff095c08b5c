/*
 * bdev.c - the common front of every block device backend.
 *
 * Callers see only struct bdev (opaque, bdev.h); the backends (file, ram,
 * emu) fill a struct bdev_ops (bdev_internal.h). This file checks every
 * argument once, so the backends can trust theirs, and holds what does
 * not depend on the backend: geometry checks, bdev_save() and early
 * flushes.
 *
 * Early flushes. A large commit writes many logs, then flushes; the
 * flush waits for the medium to take all of them (on a virtual disk, for
 * the host to write its cache out), while the writer sits idle. A
 * backend that enables early flushes (bdev_flusher_enable) gets a thread
 * of its own that runs its bo_flush whenever bdev_start_flush asks, so
 * the medium takes the logs while the next ones are laid out, and the
 * commit's own flush waits for the tail only:
 *
 *   start_flush --> [want] --thread--> [busy: bo_flush] --> idle
 *                     ^  asked while busy: runs once more  |
 *                     +------------------------------------+
 *   bdev_flush: its own bo_flush, then waits while busy and takes the
 *   error an early flush left (bfl_err).
 *
 * Invariants
 *   (1) A backend op is called only with 0 < count, blk + count <=
 *       nblocks (no overflow) and a non-NULL buffer; anything else is
 *       -EINVAL here and never reaches the backend.
 *   (2) bdev_save() reads the device only through bdev_read(), so it
 *       sees exactly what a reader of the device sees (and on an emulated
 *       device, counts as reads).
 *   (3) bdev_save() leaves either a complete, fsync()ed copy at @path or
 *       no file there.
 *   (4) An early flush's error is reported by the next bdev_flush to
 *       return, which waits for a running early flush first: no error of
 *       a write made before a bdev_flush call escapes it.
 *
 * Lock order: bfl_lock is a leaf, never held across bo_flush; each
 * backend documents its own locks.
 *
 * Interleaving points: bdev.flusher.flush (an early flush begins; busy),
 * bdev.flusher.done_locked (it ended), bdev.flush.collect (a bdev_flush
 * did its own flush, about to wait for an early one).
 */
#include "bdev/bdev_internal.h"
#include "util/syncpoint.h"
#include "util/util.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BDEV_SAVE_CHUNK (1u << 20) /* bytes read per step of bdev_save() */

struct bdev_flusher {
	struct cmutex bfl_lock;
	pthread_cond_t bfl_cond;
	pthread_t bfl_thread;
	bool bfl_started; /* bfl_thread runs */
	bool bfl_want;	  /* an early flush was asked for, not begun */
	bool bfl_busy;	  /* an early flush runs */
	bool bfl_stop;	  /* bdev_close: the thread ends */
	int bfl_err;	  /* the first error of an early flush not reported yet */
	uint64_t bfl_done;
};

void bdev_init(struct bdev *d, const struct bdev_ops *ops, uint32_t block_size, uint64_t nblocks)
{
	d->bd_ops = ops;
	d->bd_block_size = block_size;
	d->bd_nblocks = nblocks;
	d->bd_flusher = NULL;
}

/* ---- early flushes ------------------------------------------------------ */

int bdev_flusher_enable(struct bdev *d)
{
	struct bdev_flusher *fl;

	if (d->bd_flusher)
		return 0;
	fl = calloc(1, sizeof(*fl));
	if (!fl)
		return -ENOMEM;
	if (cmutex_init(&fl->bfl_lock)) {
		free(fl);
		return -ENOMEM;
	}
	if (pthread_cond_init(&fl->bfl_cond, NULL)) {
		cmutex_destroy(&fl->bfl_lock);
		free(fl);
		return -ENOMEM;
	}
	d->bd_flusher = fl;
	return 0;
}

static void *bdev_flusher_main(void *arg)
{
	struct bdev *d = arg;
	struct bdev_flusher *fl = d->bd_flusher;

	cmutex_lock(&fl->bfl_lock);
	for (;;) {
		int err;

		while (!fl->bfl_want && !fl->bfl_stop)
			cmutex_wait(&fl->bfl_lock, &fl->bfl_cond);
		if (fl->bfl_stop)
			break;
		fl->bfl_want = false;
		fl->bfl_busy = true;
		cmutex_unlock(&fl->bfl_lock);
		SYNC_POINT("bdev.flusher.flush");
		err = d->bd_ops->bo_flush(d);
		cmutex_lock(&fl->bfl_lock);
		fl->bfl_busy = false;
		fl->bfl_done++;
		if (err && !fl->bfl_err)
			fl->bfl_err = err;
		pthread_cond_broadcast(&fl->bfl_cond);
		SYNC_POINT("bdev.flusher.done_locked");
	}
	cmutex_unlock(&fl->bfl_lock);
	return NULL;
}

void bdev_start_flush(struct bdev *d)
{
	struct bdev_flusher *fl;

	assert(d);
	fl = d->bd_flusher;
	if (!fl)
		return;
	cmutex_lock(&fl->bfl_lock);
	if (!fl->bfl_started && !fl->bfl_stop)
		fl->bfl_started = !pthread_create(&fl->bfl_thread, NULL, bdev_flusher_main, d);
	if (fl->bfl_started) { /* else a hint not taken: bdev_flush does it all */
		fl->bfl_want = true;
		pthread_cond_broadcast(&fl->bfl_cond);
	}
	cmutex_unlock(&fl->bfl_lock);
}

/* Invariant (4): wait out a running early flush, take what failed. */
static int bdev_flusher_collect(struct bdev_flusher *fl)
{
	int err;

	cmutex_lock(&fl->bfl_lock);
	while (fl->bfl_busy)
		cmutex_wait(&fl->bfl_lock, &fl->bfl_cond);
	fl->bfl_want = false; /* what it would flush, this bdev_flush did */
	err = fl->bfl_err;
	fl->bfl_err = 0;
	cmutex_unlock(&fl->bfl_lock);
	return err;
}

static void bdev_flusher_destroy(struct bdev *d)
{
	struct bdev_flusher *fl = d->bd_flusher;

	if (!fl)
		return;
	cmutex_lock(&fl->bfl_lock);
	fl->bfl_stop = true;
	pthread_cond_broadcast(&fl->bfl_cond);
	cmutex_unlock(&fl->bfl_lock);
	if (fl->bfl_started)
		pthread_join(fl->bfl_thread, NULL);
	pthread_cond_destroy(&fl->bfl_cond);
	cmutex_destroy(&fl->bfl_lock);
	free(fl);
	d->bd_flusher = NULL;
}

uint64_t bdev_early_flushes(struct bdev *d)
{
	struct bdev_flusher *fl;
	uint64_t n;

	assert(d);
	fl = d->bd_flusher;
	if (!fl)
		return 0;
	cmutex_lock(&fl->bfl_lock);
	n = fl->bfl_done;
	cmutex_unlock(&fl->bfl_lock);
	return n;
}

int bdev_geometry_check(uint32_t block_size, uint64_t nblocks)
{
	if (block_size < BDEV_BLOCK_MIN || block_size > BDEV_BLOCK_MAX)
		return -EINVAL;
	if (block_size & (block_size - 1))
		return -EINVAL;
	if (nblocks == 0 || nblocks > (uint64_t)INT64_MAX / block_size)
		return -EINVAL;
	return 0;
}

size_t bdev_bytes(const struct bdev *d, uint64_t count)
{
	return (size_t)(count * d->bd_block_size);
}

int bdev_mem_alloc(uint32_t block_size, uint64_t nblocks, unsigned char **out)
{
	if (nblocks > SIZE_MAX / block_size)
		return -ENOMEM;
	*out = calloc((size_t)nblocks, block_size);
	return *out ? 0 : -ENOMEM;
}

/* -EINVAL unless [@blk, @blk + @count) is a non-empty range inside @d. */
static int bdev_range_check(const struct bdev *d, uint64_t blk, uint32_t count, const void *buf)
{
	if (!buf || count == 0)
		return -EINVAL;
	if (blk >= d->bd_nblocks || count > d->bd_nblocks - blk)
		return -EINVAL;
	return 0;
}

int bdev_read(struct bdev *d, uint64_t blk, uint32_t count, void *buf)
{
	int err;

	assert(d);
	err = bdev_range_check(d, blk, count, buf);
	if (err)
		return err;
	return d->bd_ops->bo_read(d, blk, count, buf);
}

int bdev_write(struct bdev *d, uint64_t blk, uint32_t count, const void *buf)
{
	int err;

	assert(d);
	err = bdev_range_check(d, blk, count, buf);
	if (err)
		return err;
	return d->bd_ops->bo_write(d, blk, count, buf);
}

int bdev_writev(struct bdev *d, uint64_t blk, const struct iovec *iov, unsigned n)
{
	uint64_t bytes = 0, count;
	unsigned char *bounce, *p;
	int err;

	assert(d);
	for (unsigned i = 0; i < n; i++) {
		if (!iov[i].iov_base || iov[i].iov_len % d->bd_block_size)
			return -EINVAL;
		bytes += iov[i].iov_len;
	}
	count = bytes / d->bd_block_size;
	if (count > UINT32_MAX)
		return -EINVAL;
	err = bdev_range_check(d, blk, (uint32_t)count, iov);
	if (err)
		return err;
	if (d->bd_ops->bo_writev)
		return d->bd_ops->bo_writev(d, blk, iov, n);
	bounce = malloc(bytes);
	if (!bounce)
		return -ENOMEM;
	p = bounce;
	for (unsigned i = 0; i < n; i++) {
		memcpy(p, iov[i].iov_base, iov[i].iov_len);
		p += iov[i].iov_len;
	}
	err = d->bd_ops->bo_write(d, blk, (uint32_t)count, bounce);
	free(bounce);
	return err;
}

int bdev_flush(struct bdev *d)
{
	int err, early;

	assert(d);
	err = d->bd_ops->bo_flush(d);
	if (!d->bd_flusher)
		return err;
	SYNC_POINT("bdev.flush.collect");
	early = bdev_flusher_collect(d->bd_flusher);
	return err ? err : early;
}

void bdev_start_writeback(struct bdev *d, uint64_t blk, uint32_t count)
{
	assert(d);
	if (!d->bd_ops->bo_start_writeback || count == 0 || blk >= d->bd_nblocks ||
	    count > d->bd_nblocks - blk)
		return;
	d->bd_ops->bo_start_writeback(d, blk, count);
}

uint32_t bdev_block_size(const struct bdev *d)
{
	return d->bd_block_size;
}

uint64_t bdev_nblocks(const struct bdev *d)
{
	return d->bd_nblocks;
}

void bdev_close(struct bdev *d)
{
	if (!d)
		return;
	bdev_flusher_destroy(d);
	d->bd_ops->bo_close(d);
}

int bdev_unlock(struct bdev *d)
{
	assert(d);
	return d->bd_ops->bo_unlock ? d->bd_ops->bo_unlock(d) : 0;
}

int bdev_pin(struct bdev *d, uint64_t key, enum bdev_pin_mode how)
{
	assert(d);
	if (how != BDEV_PIN_SHARED && how != BDEV_PIN_EXCL && how != BDEV_PIN_DROP &&
	    how != BDEV_PIN_SHARED_WAIT)
		return -EINVAL;
	return d->bd_ops->bo_pin ? d->bd_ops->bo_pin(d, key, how) : 0;
}

int bdev_pin_any(struct bdev *d)
{
	assert(d);
	return d->bd_ops->bo_pin_any ? d->bd_ops->bo_pin_any(d) : 0;
}

int bdev_pin_held(struct bdev *d, uint64_t key)
{
	assert(d);
	return d->bd_ops->bo_pin_held ? d->bd_ops->bo_pin_held(d, key) : 0;
}

int bdev_identity(struct bdev *d, struct bdev_identity *id)
{
	assert(d && id);
	return d->bd_ops->bo_identity ? d->bd_ops->bo_identity(d, id) : -ENOTSUP;
}

/* Copy every non-zero block of @d to @fd at the same offset. */
static int bdev_save_blocks(struct bdev *d, int fd, unsigned char *buf, uint32_t chunk)
{
	size_t bs = d->bd_block_size;
	int err = 0;

	for (uint64_t blk = 0; blk < d->bd_nblocks && !err; blk += chunk) {
		uint32_t n = (uint32_t)MIN((uint64_t)chunk, d->bd_nblocks - blk);

		err = bdev_read(d, blk, n, buf);
		for (uint32_t i = 0; i < n && !err; i++) {
			if (util_all_zero(buf + i * bs, bs))
				continue;
			err = bdev_fd_pwrite(fd, buf + i * bs, bs, (off_t)((blk + i) * bs));
		}
	}
	return err;
}

/* Give the file its full size (the zero blocks are holes) and sync it. */
static int bdev_save_finish(struct bdev *d, int fd)
{
	if (ftruncate(fd, (off_t)bdev_bytes(d, d->bd_nblocks)) < 0)
		return -errno;
	if (fsync(fd) < 0)
		return -errno;
	return 0;
}

int bdev_save(struct bdev *d, const char *path)
{
	uint32_t chunk;
	unsigned char *buf;
	int fd, err;

	if (!d || !path)
		return -EINVAL;
	chunk = BDEV_SAVE_CHUNK / d->bd_block_size;
	buf = malloc(bdev_bytes(d, chunk));
	if (!buf)
		return -ENOMEM;
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		err = -errno;
		goto out_buf;
	}
	err = bdev_save_blocks(d, fd, buf, chunk);
	if (!err)
		err = bdev_save_finish(d, fd);
	if (close(fd) < 0 && !err)
		err = -errno;
	if (err)
		unlink(path);
out_buf:
	free(buf);
	return err;
}

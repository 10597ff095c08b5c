/*
 * bdev_internal.h - what the backends of the block device layer share.
 *
 * Only files under src/bdev include this. Every backend embeds a struct
 * bdev as its first member and hands bdev.c a const ops table; bdev.c
 * checks arguments and ranges once, so a backend op is only ever called
 * with 0 < count, blk + count <= nblocks and a non-NULL buffer.
 *
 * Invariants
 *   (1) bd_ops, bd_block_size and bd_nblocks are set before the handle
 *       is returned to a caller and never change: no lock protects them.
 *   (2) bd_block_size is a power of two in [BDEV_BLOCK_MIN, BDEV_BLOCK_MAX],
 *       so it is a whole number of 512-byte sectors.
 *   (3) bd_nblocks > 0 and bd_nblocks * bd_block_size fits in an off_t.
 */
#ifndef CAIRN_BDEV_INTERNAL_H
#define CAIRN_BDEV_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "bdev/bdev.h"

#define BDEV_BLOCK_MIN 512u
#define BDEV_BLOCK_MAX 65536u
#define BDEV_SECTOR    512u /* the unit a torn write is cut at */

struct bdev_ops {
	int (*bo_read)(struct bdev *d, uint64_t blk, uint32_t count, void *buf);
	int (*bo_write)(struct bdev *d, uint64_t blk, uint32_t count, const void *buf);
	/* optional: without it, bdev_writev gathers into a bounce buffer */
	int (*bo_writev)(struct bdev *d, uint64_t blk, const struct iovec *iov, unsigned n);
	int (*bo_flush)(struct bdev *d);
	/* optional: without it, bdev_start_writeback does nothing */
	void (*bo_start_writeback)(struct bdev *d, uint64_t blk, uint32_t count);
	/* Free the backend; does not flush. */
	void (*bo_close)(struct bdev *d);
	/* optional (bdev.h, "Pins"): without them, bdev_unlock, bdev_pin and
	 * bdev_pin_any return 0 */
	int (*bo_unlock)(struct bdev *d);
	int (*bo_pin)(struct bdev *d, uint64_t key, enum bdev_pin_mode how);
	int (*bo_pin_any)(struct bdev *d);
	int (*bo_pin_held)(struct bdev *d, uint64_t key);
	/* optional: without it, bdev_identity is -ENOTSUP */
	int (*bo_identity)(struct bdev *d, struct bdev_identity *id);
};

struct bdev_flusher;

struct bdev {
	const struct bdev_ops *bd_ops;	 /* immutable after open */
	uint32_t bd_block_size;		 /* immutable after open */
	uint64_t bd_nblocks;		 /* immutable after open */
	struct bdev_flusher *bd_flusher; /* early flushes (bdev.c); NULL: none */
};

/* Fill in the common part of a backend's handle (no early flushes). */
void bdev_init(struct bdev *d, const struct bdev_ops *ops, uint32_t block_size, uint64_t nblocks);
/*
 * Let bdev_start_flush run the backend's bo_flush early, on a thread of
 * the device's own (bdev.c), for a backend whose flush waits for a
 * medium. Called before the handle is shared; -ENOMEM.
 */
int bdev_flusher_enable(struct bdev *d);
/* 0 if @block_size and @nblocks satisfy invariants (2) and (3), else -EINVAL. */
int bdev_geometry_check(uint32_t block_size, uint64_t nblocks);
/* Bytes in @count blocks of @d. */
size_t bdev_bytes(const struct bdev *d, uint64_t count);
/* Allocate @nblocks * @block_size zeroed bytes (geometry already checked);
 * -ENOMEM if it does not fit in memory. */
int bdev_mem_alloc(uint32_t block_size, uint64_t nblocks, unsigned char **out);

/* Whole-buffer pread/pwrite: retry on EINTR and short transfers (bdev_file.c). */
int bdev_fd_pread(int fd, void *buf, size_t len, off_t off);
int bdev_fd_pwrite(int fd, const void *buf, size_t len, off_t off);
/* pwritev all of @iov (consumed: its entries are advanced), retrying short writes. */
int bdev_fd_pwritev(int fd, struct iovec *iov, unsigned n, off_t off);

#endif /* CAIRN_BDEV_INTERNAL_H */

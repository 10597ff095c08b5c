/*
 * bdev_ram.c - the block device that lives in memory only.
 *
 * One zeroed array of nblocks * block_size bytes. Writes are durable as
 * soon as they return (flush is a no-op) and vanish at bdev_close. For
 * tests and benchmarks that do not look at crashes (bdev_emu.c does).
 *
 * Invariants
 *   (1) br_data is allocated at open and freed at close; its size never
 *       changes.
 *   (2) Readers hold br_lock shared, writers exclusive, so a read never
 *       sees half of a write and concurrent I/O is race-free.
 *
 * Lock order: br_lock is a leaf.
 */
#include "bdev/bdev_internal.h"
#include "util/util.h"

#include <stdlib.h>
#include <string.h>

struct bdev_ram {
	struct bdev br_bdev;
	pthread_rwlock_t br_lock;
	unsigned char *br_data; /* contents protected by br_lock */
};

static struct bdev_ram *bdev_to_ram(struct bdev *d)
{
	return container_of(d, struct bdev_ram, br_bdev);
}

static int bdev_ram_read(struct bdev *d, uint64_t blk, uint32_t count, void *buf)
{
	struct bdev_ram *r = bdev_to_ram(d);

	pthread_rwlock_rdlock(&r->br_lock);
	memcpy(buf, r->br_data + bdev_bytes(d, blk), bdev_bytes(d, count));
	pthread_rwlock_unlock(&r->br_lock);
	return 0;
}

static int bdev_ram_write(struct bdev *d, uint64_t blk, uint32_t count, const void *buf)
{
	struct bdev_ram *r = bdev_to_ram(d);

	pthread_rwlock_wrlock(&r->br_lock);
	memcpy(r->br_data + bdev_bytes(d, blk), buf, bdev_bytes(d, count));
	pthread_rwlock_unlock(&r->br_lock);
	return 0;
}

static int bdev_ram_flush(struct bdev *d)
{
	(void)d;
	return 0;
}

static void bdev_ram_close(struct bdev *d)
{
	struct bdev_ram *r = bdev_to_ram(d);

	pthread_rwlock_destroy(&r->br_lock);
	free(r->br_data);
	free(r);
}

static const struct bdev_ops bdev_ram_ops = {
    .bo_read = bdev_ram_read,
    .bo_write = bdev_ram_write,
    .bo_flush = bdev_ram_flush,
    .bo_close = bdev_ram_close,
};

int bdev_open_ram(uint32_t block_size, uint64_t nblocks, struct bdev **out)
{
	struct bdev_ram *r;
	int err;

	if (!out)
		return -EINVAL;
	err = bdev_geometry_check(block_size, nblocks);
	if (err)
		return err;
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	err = bdev_mem_alloc(block_size, nblocks, &r->br_data);
	if (err)
		goto out_free;
	err = -pthread_rwlock_init(&r->br_lock, NULL);
	if (err)
		goto out_data;
	bdev_init(&r->br_bdev, &bdev_ram_ops, block_size, nblocks);
	*out = &r->br_bdev;
	return 0;

out_data:
	free(r->br_data);
out_free:
	free(r);
	return err;
}

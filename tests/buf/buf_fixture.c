/* buf_fixture.c - see buf_fixture.h. */
#include "buf_fixture.h"
#include "harness.h"

#include <stdlib.h>
#include <string.h>

static unsigned fixture_owners = 8;

void fixture_set_owners(unsigned owners)
{
	fixture_owners = owners;
}

uint64_t fixture_pblk(uint64_t owner, uint64_t index)
{
	return owner * FIX_SPAN + index;
}

void fixture_pattern(void *data, uint64_t owner, uint64_t index, uint32_t v)
{
	uint64_t *w = data;

	for (unsigned i = 0; i < FIX_BLOCK / 8; i++)
		w[i] = (owner << 48) ^ (index << 24) ^ ((uint64_t)v << 8) ^ i;
}

static int fix_fill(void *ctx, struct buf *b, void *data, uint64_t hint)
{
	struct fixture *fx = ctx;
	uint64_t pblk = fixture_pblk(buf_owner(b), buf_index(b));
	int err = atomic_load(&fx->fx_fill_err);

	if (hint != BUF_NO_HINT)
		pblk = hint; /* the reader knew the address */
	atomic_fetch_add(&fx->fx_fills, 1);
	atomic_store(&fx->fx_filling, b);
	if (err)
		return err;
	while ((err = buf_track_read_begin(fx->fx_track, pblk)) == -EAGAIN)
		; /* the zone was reused while we waited: resolve again (same address here) */
	if (err)
		return err;
	err = bdev_read(fx->fx_dev, pblk, 1, data);
	buf_track_read_end(fx->fx_track, pblk);
	return err;
}

static int fix_write(void *ctx, struct buf *b, const void *data)
{
	struct fixture *fx = ctx;

	atomic_fetch_add(&fx->fx_writes, 1);
	return bdev_write(fx->fx_dev, fixture_pblk(buf_owner(b), buf_index(b)), 1, data);
}

static int fix_commit(void *ctx)
{
	struct fixture *fx = ctx;

	atomic_fetch_add(&fx->fx_commits, 1);
	return bdev_flush(fx->fx_dev);
}

static int fix_reclaim(void *ctx)
{
	struct fixture *fx = ctx;
	int err = 0;

	atomic_fetch_add(&fx->fx_reclaims, 1);
	for (unsigned o = 0; o < fixture_owners; o++) {
		int e = buf_flush_owner(fx->fx_cache, o);
		err = err ? err : e;
	}
	return err;
}

struct bdev *fixture_emu(unsigned owners)
{
	struct bdev *d = NULL;

	assert_int_equal(bdev_emu_open(FIX_BLOCK, (uint64_t)owners * FIX_SPAN, &d), 0);
	return d;
}

struct fixture *fixture_new(struct bdev *dev, uint32_t nbuffers, bool reclaim)
{
	struct fixture *fx = calloc(1, sizeof(*fx));
	struct buf_cache_config cfg;

	assert_non_null(fx);
	fx->fx_dev = dev;
	fx->fx_ops.bo_fill = fix_fill;
	fx->fx_ops.bo_write = fix_write;
	fx->fx_ops.bo_commit = fix_commit;
	fx->fx_ops.bo_reclaim = reclaim ? fix_reclaim : NULL;
	cfg.bcc_block_size = FIX_BLOCK;
	cfg.bcc_nbuffers = nbuffers;
	cfg.bcc_ops = &fx->fx_ops;
	cfg.bcc_ctx = fx;
	assert_int_equal(buf_cache_create(&cfg, &fx->fx_cache), 0);
	assert_int_equal(buf_track_create(bdev_nblocks(dev), FIX_ZONE_SHIFT, &fx->fx_track), 0);
	return fx;
}

void fixture_free(struct fixture *fx)
{
	buf_cache_destroy(fx->fx_cache);
	buf_track_destroy(fx->fx_track);
	bdev_close(fx->fx_dev);
	free(fx);
}

void fixture_put_block(struct fixture *fx, uint64_t owner, uint64_t index, uint32_t v)
{
	static _Thread_local uint64_t data[FIX_BLOCK / 8];

	fixture_pattern(data, owner, index, v);
	assert_int_equal(bdev_write(fx->fx_dev, fixture_pblk(owner, index), 1, data), 0);
}

bool fixture_dev_has(struct fixture *fx, uint64_t owner, uint64_t index, uint32_t v)
{
	static _Thread_local uint64_t want[FIX_BLOCK / 8], got[FIX_BLOCK / 8];

	fixture_pattern(want, owner, index, v);
	if (bdev_read(fx->fx_dev, fixture_pblk(owner, index), 1, got))
		return false;
	return !memcmp(want, got, FIX_BLOCK);
}

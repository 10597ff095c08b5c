/*
 * buf_fixture.h - a buffer cache over a real device for the buf tests.
 *
 * Block (owner, index) lives at physical block owner * FIX_SPAN + index
 * of a bdev (RAM or emulated). Fills read through tracked reads, so the
 * fixture is also the model of the read path the log will have: resolve
 * an address, count the read on its zone, read, uncount.
 */
#ifndef CAIRN_BUF_FIXTURE_H
#define CAIRN_BUF_FIXTURE_H

#include "bdev/bdev.h"
#include "buf/buf.h"

#define FIX_BLOCK      4096
#define FIX_SPAN       1024 /* blocks per owner */
#define FIX_ZONE_SHIFT 4

struct fixture {
	struct bdev *fx_dev;
	struct buf_cache *fx_cache;
	struct buf_track *fx_track;
	struct buf_ops fx_ops;
	_Atomic uint64_t fx_fills;   /* bo_fill calls */
	_Atomic uint64_t fx_writes;  /* bo_write calls */
	_Atomic uint64_t fx_commits; /* bo_commit calls */
	_Atomic uint64_t fx_reclaims;
	_Atomic int fx_fill_err;	/* error to return from the next fills */
	struct buf *_Atomic fx_filling; /* the buffer of the latest fill */
};

/* A fixture over @dev (taken over) with a pool of @nbuffers. */
struct fixture *fixture_new(struct bdev *dev, uint32_t nbuffers, bool reclaim);
/* An emulated device big enough for @owners owners. */
struct bdev *fixture_emu(unsigned owners);
void fixture_free(struct fixture *fx);
uint64_t fixture_pblk(uint64_t owner, uint64_t index);
/* Deterministic content of (owner, index) in version @v. */
void fixture_pattern(void *data, uint64_t owner, uint64_t index, uint32_t v);
/* Write version @v of (owner, index) straight to the device. */
void fixture_put_block(struct fixture *fx, uint64_t owner, uint64_t index, uint32_t v);
/* True if the device holds version @v of (owner, index). */
bool fixture_dev_has(struct fixture *fx, uint64_t owner, uint64_t index, uint32_t v);
/* Reclaim callback for tests: flush every owner below @owners. */
void fixture_set_owners(unsigned owners);

#endif /* CAIRN_BUF_FIXTURE_H */

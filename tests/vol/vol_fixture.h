/*
 * vol_fixture.h - volumes on emulated devices for the vol tests.
 *
 * Blocks are 4 KiB and segments 64 blocks, so a few MiB make a volume
 * with tens of segments. Block contents are deterministic patterns of
 * (owner, index, version), so any read can be checked without keeping
 * copies.
 */
#ifndef CAIRN_VOL_FIXTURE_H
#define CAIRN_VOL_FIXTURE_H

#include <stdbool.h>
#include <stdint.h>

#include "bdev/bdev.h"
#include "vol/vol.h"

#define VF_BS  4096
#define VF_SEG 64

/* A fresh emulated device of @nblocks, with a new volume on it. */
struct bdev *vf_mkfs(uint64_t nblocks);
/*
 * A new volume in a temporary image file of @nblocks, for tests that
 * close and reopen (vol_close closes the device). @path: VF_PATH_MAX.
 */
#define VF_PATH_MAX 64
void vf_mkfs_file(char *path, uint64_t nblocks);
struct vol *vf_open_file(const char *path, uint32_t cache_blocks);
void vf_remove_file(const char *path);
/* Open the volume on @d with a cache of @cache_blocks (0: default). */
struct vol *vf_open(struct bdev *d, uint32_t cache_blocks);
/* Open the volume on @d with @o (no age trigger unless it sets one). */
struct vol *vf_open_opts(struct bdev *d, const struct vol_open_opts *o);
/* Open a copy of @d's current content (the image a clean restart sees). */
struct vol *vf_reopen_copy(struct bdev *d, uint32_t cache_blocks);
/* The image after a power cut now, unflushed writes treated as @mode. */
struct vol *vf_open_crash(struct bdev *d, int mode, uint32_t cache_blocks);

/* Run only the tests matching CAIRN_TEST_FILTER (a cmocka glob), if set. */
void vf_filter_from_env(void);

void vf_pattern(void *data, uint64_t owner, uint64_t index, uint32_t version);
/* One transaction writing version @version of (owner, index). */
void vf_write(struct vol *v, uint64_t owner, uint64_t index, uint32_t version);
/* Truncate @owner from @from on, in transactions from the top down (vol_truncate_plan). */
void vf_truncate(struct vol *v, uint64_t owner, uint64_t from, unsigned flags);
void vf_punch(struct vol *v, uint64_t owner, uint64_t index);
/* Fail the test unless (owner, index) reads as @version (0: zeros). */
void vf_expect(struct vol *v, uint64_t owner, uint64_t index, uint32_t version);
bool vf_has(struct vol *v, uint64_t owner, uint64_t index, uint32_t version);

/*
 * Sync, then fail the test unless vol_check finds the durable state
 * sound and no commit consumed more than it reserved. No transaction
 * may be in flight.
 */
void vf_check(struct vol *v);

#endif /* CAIRN_VOL_FIXTURE_H */

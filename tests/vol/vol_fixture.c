/*
 * vol_fixture.c - see vol_fixture.h.
 */
#include "vol_fixture.h"

#include "harness.h"
#include "vol/vol_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct bdev *vf_mkfs(uint64_t nblocks)
{
	struct vol_mkfs_opts mo = {.vmo_log = {.lfo_block_size = VF_BS, .lfo_seg_blocks = VF_SEG}};
	struct bdev *d;

	assert_int_equal(bdev_emu_open(VF_BS, nblocks, &d), 0);
	assert_int_equal(vol_mkfs(d, &mo), 0);
	return d;
}

void vf_mkfs_file(char *path, uint64_t nblocks)
{
	struct vol_mkfs_opts mo = {.vmo_log = {.lfo_block_size = VF_BS, .lfo_seg_blocks = VF_SEG}};
	struct bdev *d;
	int fd;

	snprintf(path, VF_PATH_MAX, "/tmp/cairn-vol-test-XXXXXX");
	fd = mkstemp(path);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(unlink(path), 0); /* BDEV_CREATE makes it, sparse */
	assert_int_equal(bdev_open_file(path, VF_BS, nblocks, BDEV_CREATE, &d), 0);
	assert_int_equal(vol_mkfs(d, &mo), 0);
	bdev_close(d);
}

struct vol *vf_open_file(const char *path, uint32_t cache_blocks)
{
	struct bdev *d;

	assert_int_equal(bdev_open_file(path, VF_BS, 0, 0, &d), 0);
	return vf_open(d, cache_blocks);
}

void vf_remove_file(const char *path)
{
	assert_int_equal(unlink(path), 0);
}

struct vol *vf_open_opts(struct bdev *d, const struct vol_open_opts *o)
{
	struct vol_open_opts oo = *o;
	struct vol *v;

	if (!oo.voo_max_age_ms)
		oo.voo_max_age_ms = 3600 * 1000;
	assert_int_equal(vol_open(d, &oo, &v), 0);
	return v;
}

struct vol *vf_open(struct bdev *d, uint32_t cache_blocks)
{
	struct vol_open_opts oo = {
	    .voo_cache_blocks = cache_blocks,
	    .voo_max_age_ms = 3600 * 1000, /* commits only when a test says */
	};
	struct vol *v;

	assert_int_equal(vol_open(d, &oo, &v), 0);
	return v;
}

struct vol *vf_reopen_copy(struct bdev *d, uint32_t cache_blocks)
{
	struct bdev *copy;

	assert_int_equal(bdev_emu_open_copy(d, &copy), 0);
	return vf_open(copy, cache_blocks);
}

struct vol *vf_open_crash(struct bdev *d, int mode, uint32_t cache_blocks)
{
	struct bdev_emu_crash how = {.ec_mode = (enum bdev_emu_crash_mode)mode, .ec_seed = 1};
	struct bdev *img;

	assert_int_equal(bdev_emu_crash(d, &how, &img), 0);
	return vf_open(img, cache_blocks);
}

void vf_filter_from_env(void)
{
	const char *f = getenv("CAIRN_TEST_FILTER");

	if (f)
		cmocka_set_test_filter(f);
}

void vf_pattern(void *data, uint64_t owner, uint64_t index, uint32_t version)
{
	uint64_t *w = data;

	if (!version) {
		memset(data, 0, VF_BS);
		return;
	}
	for (size_t i = 0; i < VF_BS / 8; i++)
		w[i] =
		    (owner * 0x9e3779b97f4a7c15ULL) ^ (index << 20) ^ ((uint64_t)version << 8) ^ i;
}

void vf_write(struct vol *v, uint64_t owner, uint64_t index, uint32_t version)
{
	static _Thread_local uint64_t data[VF_BS / 8];
	struct vol_txn t;

	vf_pattern(data, owner, index, version);
	assert_int_equal(vol_txn_begin(v, 1, 0, &t), 0);
	assert_int_equal(vol_write(&t, owner, index, data), 0);
	vol_txn_end(&t);
}

void vf_punch(struct vol *v, uint64_t owner, uint64_t index)
{
	struct vol_txn t;

	assert_int_equal(vol_txn_begin(v, 1, 0, &t), 0);
	assert_int_equal(vol_punch(&t, owner, index), 0);
	vol_txn_end(&t);
}

void vf_truncate(struct vol *v, uint64_t owner, uint64_t from, unsigned flags)
{
	uint64_t hi = VOL_MAX_INDEX + 1, start, cost;
	struct vol_txn t;

	do { /* from the top down, as much as a transaction may hold each time */
		assert_int_equal(
		    vol_truncate_plan(v, owner, from, hi, vol_txn_max(v), &start, &cost), 0);
		assert_true(start >= from && start <= hi);
		if (!cost)
			break; /* nothing to free */
		assert_int_equal(vol_txn_begin(v, cost, flags, &t), 0);
		assert_int_equal(vol_truncate(&t, owner, start, cost), 0);
		assert_int_equal(t.vt_left, 0);
		vol_txn_end(&t);
		hi = start;
	} while (start > from);
}

bool vf_has(struct vol *v, uint64_t owner, uint64_t index, uint32_t version)
{
	static _Thread_local uint64_t want[VF_BS / 8], got[VF_BS / 8];

	vf_pattern(want, owner, index, version);
	assert_int_equal(vol_read(v, owner, index, got), 0);
	return !memcmp(want, got, VF_BS);
}

void vf_expect(struct vol *v, uint64_t owner, uint64_t index, uint32_t version)
{
	if (!vf_has(v, owner, index, version))
		fail_msg("block (%llu, %llu) is not version %u", (unsigned long long)owner,
			 (unsigned long long)index, version);
}

static void vf_check_report(void *arg, const char *msg)
{
	(void)arg;
	print_message("# vol_check: %s\n", msg);
}

/*
 * vol_check after a sync. A background commit (the cleaner's, between its
 * watermarks, or a re-root's) may run while the check does, and release
 * segments the checked state names or change the checkpoints it calls
 * readable: a check with problems during which a commit ran (one was in
 * progress as it began or ended, or one ended meanwhile) is taken again,
 * after another sync; one during which none did stands.
 */
void vf_check(struct vol *v)
{
	struct vol_check_stats cs;
	struct delta_stats ds;
	uint64_t commits;
	bool busy;
	int problems;

	for (int tries = 0;; tries++) {
		assert_int_equal(vol_sync(v), 0);
		vol_delta_stats(v, &ds);
		commits = ds.ds_commits;
		busy = ds.ds_committing != 0;
		problems = vol_check(v, vf_check_report, NULL, &cs);
		vol_delta_stats(v, &ds);
		busy = busy || ds.ds_committing != 0 || ds.ds_commits != commits;
		if (!problems || !busy || tries == 8)
			break;
		print_message("# vol_check: a commit ran meanwhile; again\n");
	}
	assert_int_equal(problems, 0);
	assert_int_equal(ds.ds_underestimates, 0);
}

/*
 * test_vol_ckpt.c - the checkpoint file (src/vol/ckpt.c).
 *
 * Proves: the file holds an entry for every readable checkpoint of its
 * range, naming the super root the chain names, across reopens (the
 * open notes again the checkpoints above the file's range); a
 * checkpoint is found by its delta from the file and opens read-only; a
 * block of entries wholly below the readable floor is taken out.
 *
 * vol_check (vf_check) compares the file with the chain after every
 * workload of the volume tests, so the crash tests check it after
 * every recovery too.
 */
#include "harness.h"
#include "vol_fixture.h"

#include "vol/vol_internal.h"

#include <inttypes.h>
#include <stdlib.h>

#define OWNER VOL_FIRST_OWNER

/* @n commits, each writing one block. */
static void commits(struct vol *v, unsigned n, uint32_t version)
{
	for (unsigned i = 0; i < n; i++) {
		vf_write(v, OWNER, i % 8, version);
		assert_int_equal(vol_sync(v), 0);
	}
}

/* Every listed checkpoint in the file's range has its entry there. */
static unsigned expect_entries(struct vol *v)
{
	struct vol_checkpoint *cp;
	unsigned in_file = 0;
	size_t n;

	assert_int_equal(vol_checkpoints(v, SIZE_MAX, &cp, &n), 0);
	for (size_t i = 0; i < n; i++) {
		struct vol_ckpt_entry e;

		if (cp[i].vcp_delta < v->v_sr.sr_ckpt_from ||
		    cp[i].vcp_delta >= v->v_sr.sr_ckpt_next)
			continue;
		assert_int_equal(vol_ckpt_lookup(v, cp[i].vcp_delta, &e), 0);
		assert_int_equal(e.ce_sroot, cp[i].vcp_sroot);
		assert_int_equal(e.ce_time_ns, cp[i].vcp_time_ns);
		in_file++;
	}
	free(cp);
	return in_file;
}

/*
 * With a protection period every checkpoint stays listed; the file
 * holds all but the newest few, before and after a reopen, and a
 * checkpoint it holds opens read-only by its delta.
 */
static void test_file_holds_the_checkpoints(void **state)
{
	struct vol_open_opts oo = {.voo_protect_s = 3600, .voo_max_age_ms = 3600 * 1000};
	struct bdev *d = vf_mkfs(64 * VF_SEG);
	struct vol *v = vf_open_opts(d, &oo), *r, *cv;
	struct bdev *d2;
	uint64_t delta;

	(void)state;
	commits(v, 40, 1);
	assert_true(v->v_sr.sr_ckpt_from > 0);
	assert_true(v->v_sr.sr_ckpt_next > v->v_sr.sr_ckpt_from + 16);
	assert_true(expect_entries(v) >= 32);
	vf_check(v);
	assert_int_equal(bdev_emu_open_copy(d, &d2), 0);
	r = vf_open_opts(d2, &oo); /* the same period: the checkpoints stay */
	assert_true(expect_entries(r) >= 32);
	commits(r, 40, 2); /* the open noted the newest ones again: no gap */
	assert_true(expect_entries(r) >= 64);
	vf_check(r);
	/* one the file holds, opened by its delta */
	delta = r->v_sr.sr_ckpt_from + 5;
	assert_int_equal(bdev_emu_open_copy(d2, &d), 0);
	assert_int_equal(vol_close(r), 0);
	assert_int_equal(vol_close(v), 0);
	assert_int_equal(vol_open(d, &(struct vol_open_opts){.voo_checkpoint = delta}, &cv), 0);
	assert_int_equal(cv->v_sr.sr_delta, delta);
	vf_expect(cv, OWNER, 0, 1);
	assert_int_equal(vol_close(cv), 0);
}

/*
 * Without a period the floor follows the newest checkpoint, and the
 * file's blocks of entries below it go, one per commit that writes the
 * file: the file stays small however many commits there were.
 */
static void test_entries_below_the_floor_go(void **state)
{
	struct vol_mkfs_opts mo = {.vmo_log = {.lfo_block_size = 512, .lfo_seg_blocks = VF_SEG}};
	struct vol_ckpt_entry e;
	struct bdev *d;
	struct vol *v;

	(void)state;
	assert_int_equal(bdev_emu_open(512, 64 * VF_SEG, &d), 0);
	assert_int_equal(vol_mkfs(d, &mo), 0);
	v = vf_open_opts(d, &(struct vol_open_opts){.voo_cache_blocks = 256});
	for (unsigned i = 0; i < 400; i++) {
		static uint64_t data[512 / 8];
		struct vol_txn t;

		data[0] = i;
		assert_int_equal(vol_txn_begin(v, 1, 0, &t), 0);
		assert_int_equal(vol_write(&t, OWNER, i % 8, data), 0);
		vol_txn_end(&t);
		assert_int_equal(vol_sync(v), 0);
	}
	/* 32 entries a block: 400 commits, a few blocks taken out */
	assert_true(v->v_ckpt_low >= 4);
	assert_int_equal(vol_ckpt_lookup(v, 40, &e), 0);
	assert_int_equal(e.ce_sroot, 0);
	assert_int_equal(vol_check(v, NULL, NULL, NULL), 0);
	assert_int_equal(vol_close(v), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_file_holds_the_checkpoints),
	    cmocka_unit_test(test_entries_below_the_floor_go),
	};

	vf_filter_from_env();
	return TEST_RUN("vol_ckpt", tests);
}

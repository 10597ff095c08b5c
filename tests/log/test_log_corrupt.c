/*
 * test_log_corrupt.c - recovery over seeded corruption.
 *
 * A volume is built with LC_DELTAS deltas (seeded sizes, some spanning
 * segments, a checkpoint now and then). Each case copies it, damages the
 * copy (flipped bits, zeroed blocks, a block copied over another, a
 * truncated device), and opens and recovers it. Recovery must either
 * fail with a negative error or find a state whose super root holds the
 * delta it names, one of those written; and the volume must then take a
 * new delta (once the segments recovery does not need are given back, as
 * the volume above would) that a second recovery finds. It must never
 * crash or read out of bounds (the suite also runs under ASan and UBSan).
 *
 * The default case count keeps the test to a few seconds;
 * CAIRN_LOG_CORRUPT_CASES raises it. A failure prints the seed and the
 * case; CAIRN_SEED=<seed> replays the run.
 */
#include "harness.h"
#include "log_fixture.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LC_SEG		 32u
#define LC_NSEGS	 32u
#define LC_DELTAS	 20u
#define LC_CASES_DEFAULT 300u
#define LC_MAX_LOGS	 256u

enum lc_kind { LC_FLIP, LC_ZERO, LC_COPY, LC_TRUNCATE, LC_KINDS };

static const char *const lc_kind_names[] = {"flip bits", "zero blocks", "copy a block", "truncate"};

/* The base volume, where its log headers and super roots are. */
struct lc_volume {
	struct bdev *lv_dev;
	uint64_t lv_headers[LC_MAX_LOGS];
	unsigned lv_nheaders;
	uint64_t lv_srs[LC_DELTAS];
};

/* Follow the chain from segment 0's first block, recording every header. */
static void lc_find_headers(struct lc_volume *v)
{
	unsigned char buf[LT_BS];
	uint64_t blk = LC_SEG; /* segment 0 */

	v->lv_nheaders = 0;
	while (v->lv_nheaders < LC_MAX_LOGS) {
		lt_read(v->lv_dev, blk, buf);
		if (memcmp(buf, "CAIRNLG1", 8))
			break;
		v->lv_headers[v->lv_nheaders++] = blk;
		blk = lt_get_le64(buf, 40);
	}
}

static void lc_build(struct lc_volume *v, struct prng *rng)
{
	struct log *l = lt_volume(LC_SEG, LC_NSEGS, &v->lv_dev);

	for (uint64_t delta = 1; delta <= LC_DELTAS; delta++) {
		lt_delta_ok(l, delta, (uint32_t)prng_below(rng, 40), NULL, &v->lv_srs[delta - 1]);
		if (delta % 6 == 0)
			assert_int_equal(log_checkpoint(l), 0);
	}
	log_close(l);
	lc_find_headers(v);
	assert_true(v->lv_nheaders > LC_DELTAS);
}

/* A block worth damaging: fixed blocks, log headers, super roots, or anywhere. */
static uint64_t lc_target(const struct lc_volume *v, struct prng *rng)
{
	uint64_t n = bdev_nblocks(v->lv_dev);
	uint64_t r = prng_below(rng, 100);

	if (r < 20) {
		const uint64_t fixed[] = {0, 1, 2, n - 1};
		return fixed[prng_below(rng, 4)];
	}
	if (r < 50)
		return v->lv_headers[prng_below(rng, v->lv_nheaders)];
	if (r < 65)
		return v->lv_srs[prng_below(rng, LC_DELTAS)];
	return prng_below(rng, n);
}

/* A copy of @src shortened to a random length. */
static struct bdev *lc_truncated(struct bdev *src, struct prng *rng)
{
	uint64_t n = 1 + prng_below(rng, bdev_nblocks(src) - 1);
	unsigned char *buf = malloc((size_t)n * LT_BS);
	struct bdev *d = NULL;

	assert_non_null(buf);
	assert_int_equal(bdev_emu_open(LT_BS, n, &d), 0);
	assert_int_equal(bdev_read(src, 0, (uint32_t)n, buf), 0);
	assert_int_equal(bdev_write(d, 0, (uint32_t)n, buf), 0);
	free(buf);
	return d;
}

/* The damaged copy for case @kind. */
static struct bdev *lc_damage(const struct lc_volume *v, enum lc_kind kind, struct prng *rng)
{
	unsigned char buf[LT_BS];
	struct bdev *c = NULL;
	unsigned n = 1 + (unsigned)prng_below(rng, 6);

	if (kind == LC_TRUNCATE)
		return lc_truncated(v->lv_dev, rng);
	assert_int_equal(bdev_emu_open_copy(v->lv_dev, &c), 0);
	for (unsigned i = 0; i < n; i++) {
		uint64_t blk = lc_target(v, rng);

		switch (kind) {
		case LC_FLIP:
			lt_flip(c, blk, (uint32_t)prng_below(rng, 8 * LT_BS));
			break;
		case LC_ZERO:
			lt_zero(c, blk);
			break;
		default:
			lt_read(c, lc_target(v, rng), buf);
			lt_write(c, blk, buf);
			break;
		}
	}
	return c;
}

/* Lay out delta @delta with a few blocks on @l; 0 or the first error. */
static int lc_new_delta(struct log *l, uint64_t delta)
{
	struct log_builder *lb = NULL;
	unsigned char buf[LT_BS];
	uint64_t blk;
	int err;

	err = log_build_begin(l, delta, &lb);
	if (err)
		return err;
	for (uint32_t i = 0; !err && i < 3; i++) {
		lt_pattern(buf, LT_DATA_OWNER, i, delta);
		err = log_build_add(lb, LT_DATA_OWNER, i, 0, buf, &blk);
	}
	lt_sr_pattern(buf, delta);
	if (!err)
		err = log_build_add(lb, LT_SR_OWNER, 0, LOG_ENTRY_SUPER_ROOT, buf, &blk);
	if (err) {
		log_build_abort(lb);
		return err;
	}
	return log_build_finish(lb);
}

/* Open and recover @d: the error, or 0 and the delta found, checked. */
static int lc_recover(struct bdev *d, struct log **out, uint64_t *delta, const char *what)
{
	struct log_state st;
	struct log *l = NULL;
	int err;

	err = log_open(d, &l);
	if (err) {
		if (err > 0)
			fail_msg("%s: log_open returned %d", what, err);
		return err;
	}
	err = log_recover(l, &st);
	if (err) {
		log_close(l);
		if (err > 0)
			fail_msg("%s: log_recover returned %d", what, err);
		return err;
	}
	if (st.ls_delta < 1 || (st.ls_delta > LC_DELTAS && st.ls_delta != LC_DELTAS + 1) ||
	    lt_sr_delta(d, st.ls_sr_blk) != st.ls_delta)
		fail_msg("%s: recovered delta %llu, super root at block %llu holds %llu", what,
			 (unsigned long long)st.ls_delta, (unsigned long long)st.ls_sr_blk,
			 (unsigned long long)lt_sr_delta(d, st.ls_sr_blk));
	*out = l;
	*delta = st.ls_delta;
	return 0;
}

/*
 * After recovery every segment is in use until the layer above, which
 * knows what its blocks are, gives back those it does not need (the
 * volume recounts). Do what it would at most: checkpoint twice, so both
 * slots name the chain just recovered, and release each segment recovery
 * no longer needs (lt_release_unneeded writes the second checkpoint).
 * Without it a new delta fits only if the head's segment has room.
 */
static void lc_release_unneeded(struct log *l)
{
	assert_int_equal(log_checkpoint(l), 0);
	lt_release_unneeded(l);
}

/* One case: damage, recover, write a new delta, recover it. */
static void lc_case(const struct lc_volume *v, uint64_t seed, uint64_t i, unsigned *found)
{
	enum lc_kind kind = (enum lc_kind)(i % LC_KINDS);
	struct log *l = NULL;
	struct prng rng;
	uint64_t delta;
	struct bdev *c;
	char what[160];
	int err;

	prng_init(&rng, seed ^ (i * 0x9e3779b97f4a7c15ull));
	snprintf(what, sizeof(what), "CAIRN_SEED=%llu case %llu (%s)", (unsigned long long)seed,
		 (unsigned long long)i, lc_kind_names[kind]);
	c = lc_damage(v, kind, &rng);
	if (lc_recover(c, &l, &delta, what))
		goto out_dev;
	(*found)++;
	lc_release_unneeded(l);
	err = lc_new_delta(l, LC_DELTAS + 1);
	log_close(l);
	if (err)
		fail_msg("%s: a new delta after recovering %llu failed: %d", what,
			 (unsigned long long)delta, err);
	if (lc_recover(c, &l, &delta, what) || delta != LC_DELTAS + 1)
		fail_msg("%s: the new delta was not recovered", what);
	log_close(l);
out_dev:
	bdev_close(c);
}

static void test_corrupt_loop(void **state)
{
	uint64_t seed = test_seed("log_corrupt: loop", 20240601);
	const char *env = getenv("CAIRN_LOG_CORRUPT_CASES");
	uint64_t cases = env && atoll(env) > 0 ? (uint64_t)atoll(env) : LC_CASES_DEFAULT;
	struct lc_volume v;
	unsigned found = 0;
	struct prng rng;

	(void)state;
	test_watchdog("log_corrupt: loop", 600);
	prng_init(&rng, seed);
	lc_build(&v, &rng);
	lt_log_mute();
	for (uint64_t i = 0; i < cases; i++)
		lc_case(&v, seed, i, &found);
	lt_log_catch_stop();
	print_message("# %llu cases, %u recovered a state\n", (unsigned long long)cases, found);
	assert_true(found > cases / 3); /* most damage leaves some state */
	bdev_close(v.lv_dev);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_corrupt_loop),
	};

	return TEST_RUN("log_corrupt", tests);
}

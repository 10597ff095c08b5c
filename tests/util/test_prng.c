/* test_prng.c - the seeded PRNG is deterministic and uniform enough. */
#include "harness.h"

#include <string.h>

static void test_same_seed_same_sequence(void **state)
{
	struct prng a, b;

	(void)state;
	prng_init(&a, 42);
	prng_init(&b, 42);
	for (int i = 0; i < 1000; i++)
		assert_int_equal(prng_next(&a), prng_next(&b));
}

static void test_different_seeds_differ(void **state)
{
	struct prng a, b;
	int same = 0;

	(void)state;
	prng_init(&a, 1);
	prng_init(&b, 2);
	for (int i = 0; i < 100; i++)
		same += prng_next(&a) == prng_next(&b);
	assert_true(same < 2);
}

static void test_below_in_range_and_spread(void **state)
{
	struct prng p;
	unsigned hist[10] = {0};

	(void)state;
	prng_init(&p, test_seed("prng_below", 7));
	for (int i = 0; i < 100000; i++) {
		uint64_t v = prng_below(&p, 10);
		assert_true(v < 10);
		hist[v]++;
	}
	for (int i = 0; i < 10; i++)
		assert_in_range(hist[i], 9000, 11000);
}

static void test_fill_covers_odd_lengths(void **state)
{
	struct prng p;
	unsigned char buf[13];

	(void)state;
	memset(buf, 0, sizeof(buf));
	prng_init(&p, 3);
	prng_fill(&p, buf, sizeof(buf));
	/* the tail past the last whole word is written too */
	assert_true(buf[8] | buf[9] | buf[10] | buf[11] | buf[12]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_same_seed_same_sequence),
	    cmocka_unit_test(test_different_seeds_differ),
	    cmocka_unit_test(test_below_in_range_and_spread),
	    cmocka_unit_test(test_fill_covers_odd_lengths),
	};
	return TEST_RUN("prng", tests);
}

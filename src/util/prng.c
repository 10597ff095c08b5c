/*
 * prng.c - xorshift64* (Marsaglia's xorshift with a multiplicative
 * output scramble). Determinism matters more than quality here.
 */
#include "util/prng.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void prng_init(struct prng *p, uint64_t seed)
{
	/* splitmix64 step so that small seeds give well-mixed states */
	uint64_t z = seed + 0x9e3779b97f4a7c15ULL;

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	z ^= z >> 31;
	p->pr_state = z ? z : 0x2545f4914f6cdd1dULL;
}

uint64_t prng_next(struct prng *p)
{
	uint64_t x = p->pr_state;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	p->pr_state = x;
	return x * 0x2545f4914f6cdd1dULL;
}

uint64_t prng_below(struct prng *p, uint64_t bound)
{
	return prng_next(p) % bound;
}

int prng_chance(struct prng *p, uint64_t num, uint64_t den)
{
	return prng_below(p, den) < num;
}

void prng_fill(struct prng *p, void *buf, unsigned long len)
{
	unsigned char *b = buf;

	while (len >= 8) {
		uint64_t v = prng_next(p);
		memcpy(b, &v, 8);
		b += 8;
		len -= 8;
	}
	if (len) {
		uint64_t v = prng_next(p);
		memcpy(b, &v, len);
	}
}

/*
 * CAIRN_SEED=random: one seed drawn per process, so that every caller
 * gets the same one, as with a number; the printed seed then replays the
 * whole run (a test that runs its workload twice and compares needs it).
 */
static uint64_t prng_random_seed(void)
{
	static _Atomic uint64_t drawn;
	uint64_t seed = atomic_load(&drawn), none = 0;
	struct timespec ts;

	if (seed)
		return seed;
	clock_gettime(CLOCK_REALTIME, &ts);
	seed = (uint64_t)ts.tv_sec * 1000000007ULL ^ (uint64_t)ts.tv_nsec;
	seed = seed ? seed : 1;
	if (!atomic_compare_exchange_strong(&drawn, &none, seed))
		seed = none; /* another thread drew first */
	return seed;
}

uint64_t prng_seed_from_env(const char *what, uint64_t fallback)
{
	const char *env = getenv("CAIRN_SEED");
	uint64_t seed = fallback;

	if (env && !strcmp(env, "random")) {
		seed = prng_random_seed();
	} else if (env && *env) {
		seed = strtoull(env, NULL, 0);
	}
	printf("# seed: %s CAIRN_SEED=%" PRIu64 "\n", what, seed);
	fflush(stdout);
	return seed;
}

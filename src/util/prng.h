/*
 * prng.h - the one seeded PRNG of cairn's tests and emulated device.
 *
 * xorshift64*: tiny, fast and, above all, deterministic; a seed names a
 * run exactly. Every randomized test prints its seed (prng_seed_from_env)
 * and takes it back through CAIRN_SEED to replay the run.
 */
#ifndef CAIRN_PRNG_H
#define CAIRN_PRNG_H

#include <stdint.h>

struct prng {
	uint64_t pr_state; /* never 0 */
};

void prng_init(struct prng *p, uint64_t seed);
uint64_t prng_next(struct prng *p);
/* Uniform in [0, bound); bound > 0. */
uint64_t prng_below(struct prng *p, uint64_t bound);
/* True with probability num/den. */
int prng_chance(struct prng *p, uint64_t num, uint64_t den);
void prng_fill(struct prng *p, void *buf, unsigned long len);

/*
 * The seed for a test run named @what: CAIRN_SEED from the environment
 * if set ("random" draws one from the clock), else @fallback. The chosen
 * seed is printed as "seed: <what> CAIRN_SEED=<n>" so a failure replays.
 */
uint64_t prng_seed_from_env(const char *what, uint64_t fallback);

#endif /* CAIRN_PRNG_H */

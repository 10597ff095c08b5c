/*
 * bench_util.c - clocks and size arguments for the benchmarks
 * (bench_util.h).
 */
#include "bench_util.h"

#include <errno.h>
#include <stdlib.h>

uint64_t bench_clock_ns(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t bench_now_ns(void)
{
	return bench_clock_ns(CLOCK_MONOTONIC);
}

int bench_parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long x = strtoull(s, &end, 10);
	unsigned shift = 0;

	if (end == s || *s == '-')
		return -EINVAL;
	if (*end == 'K' || *end == 'k')
		shift = 10;
	else if (*end == 'M' || *end == 'm')
		shift = 20;
	else if (*end == 'G' || *end == 'g')
		shift = 30;
	if (shift)
		end++;
	if (*end || !x || x > (UINT64_MAX >> shift))
		return -EINVAL;
	*out = (uint64_t)x << shift;
	return 0;
}

/*
 * bench_util.h - what the benchmarks share: clocks and size arguments.
 * No state.
 */
#ifndef CAIRN_BENCH_UTIL_H
#define CAIRN_BENCH_UTIL_H

#include <stdint.h>
#include <time.h>

/* Clock @id in nanoseconds. */
uint64_t bench_clock_ns(clockid_t id);
/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t bench_now_ns(void);
/* "8G", "512M", "65536K" (either case) or bytes, not 0: -EINVAL otherwise. */
int bench_parse_size(const char *s, uint64_t *out);

#endif /* CAIRN_BENCH_UTIL_H */

/*
 * harness.h - what every cairn unit test includes.
 *
 * cmocka is the framework (Debian's libcmocka-dev). On top of it:
 *   - test_seed(): the one seeded PRNG's seed for a run, printed, and
 *     taken back from CAIRN_SEED to replay (see util/prng.h);
 *   - test_watchdog(): a test that could hang (a deadlock is the bug it
 *     looks for) arms a watchdog; if it fires, the process prints which
 *     test hung and aborts, so the suite fails instead of stalling;
 *   - test_needs_syncpoints(): skips a test in builds without
 *     interleaving points (release), saying so.
 * Tests never sleep to make a race likely: they force interleavings with
 * SYNC_POINT rules (util/syncpoint.h).
 */
#ifndef CAIRN_TEST_HARNESS_H
#define CAIRN_TEST_HARNESS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "util/prng.h"
#include "util/syncpoint.h"
#include "util/util.h"

uint64_t test_seed(const char *what, uint64_t fallback);
/* Abort the process with a message naming @what after @seconds. */
void test_watchdog(const char *what, unsigned seconds);
void test_watchdog_cancel(void);
/* Skip the calling test when interleaving points are compiled out. */
#define test_needs_syncpoints()                                                                    \
	do {                                                                                       \
		if (!SYNCPOINTS_BUILT) {                                                           \
			print_message("# skipped: needs interleaving points (not in release)\n");  \
			skip();                                                                    \
		}                                                                                  \
	} while (0)

/* Start a thread or fail the test. */
void test_thread_start(pthread_t *t, void *(*fn)(void *), void *arg);
void *test_thread_join(pthread_t t);

/* Run @tests with cmocka; also resets interleaving points between tests. */
int test_run(const char *group, const struct CMUnitTest *tests, size_t count);
#define TEST_RUN(group, tests) test_run(group, tests, sizeof(tests) / sizeof((tests)[0]))

#endif /* CAIRN_TEST_HARNESS_H */

/*
 * harness.c - seed, watchdog and thread helpers for the unit tests.
 */
#include "harness.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char watchdog_what[128];

static void watchdog_fire(int sig)
{
	static const char msg[] = "\n# watchdog: test hung: ";

	(void)sig;
	/* async-signal-safe output only */
	if (write(STDERR_FILENO, msg, sizeof(msg) - 1) < 0 ||
	    write(STDERR_FILENO, watchdog_what, strlen(watchdog_what)) < 0 ||
	    write(STDERR_FILENO, "\n", 1) < 0)
		_exit(99);
	abort();
}

uint64_t test_seed(const char *what, uint64_t fallback)
{
	return prng_seed_from_env(what, fallback);
}

void test_watchdog(const char *what, unsigned seconds)
{
	unsigned scale = 1;
	const char *env = getenv("CAIRN_WATCHDOG_SCALE"); /* slower sanitizer builds */

	if (env && atoi(env) > 0)
		scale = (unsigned)atoi(env);
	snprintf(watchdog_what, sizeof(watchdog_what), "%s", what);
	signal(SIGALRM, watchdog_fire);
	alarm(seconds * scale);
}

void test_watchdog_cancel(void)
{
	alarm(0);
}

void test_thread_start(pthread_t *t, void *(*fn)(void *), void *arg)
{
	int rc = pthread_create(t, NULL, fn, arg);

	assert_int_equal(rc, 0);
}

void *test_thread_join(pthread_t t)
{
	void *ret = NULL;

	assert_int_equal(pthread_join(t, &ret), 0);
	return ret;
}

static int test_reset_points(void **state)
{
	(void)state;
	syncpoint_reset();
	syncpoint_thread_name(NULL);
	test_watchdog_cancel();
	return 0;
}

int test_run(const char *group, const struct CMUnitTest *tests, size_t count)
{
	struct CMUnitTest *copy = calloc(count, sizeof(*copy));
	const char *filter = getenv("CAIRN_TEST_FILTER"); /* a test name, '*' and '?' allowed */
	int rc;

	assert(copy);
	if (filter && *filter)
		cmocka_set_test_filter(filter);
	for (size_t i = 0; i < count; i++) {
		copy[i] = tests[i];
		if (!copy[i].teardown_func)
			copy[i].teardown_func = test_reset_points;
	}
	rc = _cmocka_run_group_tests(group, copy, count, NULL, NULL);
	free(copy);
	return rc;
}

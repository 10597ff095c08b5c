/*
 * test_syncpoint.c - the interleaving points force orders, count
 * arrivals, run callbacks, tell threads apart, and cost nothing when
 * disarmed.
 */
#include "harness.h"

#include <string.h>

struct order_log {
	pthread_mutex_t ol_lock;
	char ol_seq[16];
	int ol_n;
};

static void order_log_add(struct order_log *l, char c)
{
	pthread_mutex_lock(&l->ol_lock);
	l->ol_seq[l->ol_n++] = c;
	pthread_mutex_unlock(&l->ol_lock);
}

static struct order_log order_log = {.ol_lock = PTHREAD_MUTEX_INITIALIZER};

static void *thread_a(void *arg)
{
	(void)arg;
	SYNC_POINT("t.a.start");
	order_log_add(&order_log, 'a');
	SYNC_POINT("t.a.done");
	return NULL;
}

static void *thread_b(void *arg)
{
	(void)arg;
	SYNC_POINT("t.b.start");
	order_log_add(&order_log, 'b');
	SYNC_POINT("t.b.done");
	return NULL;
}

/* Run a and b with the given rule and return the order they logged. */
static const char *run_ab(const char *before, const char *after)
{
	pthread_t ta, tb;

	memset(order_log.ol_seq, 0, sizeof(order_log.ol_seq));
	order_log.ol_n = 0;
	syncpoint_reset();
	syncpoint_order(before, after);
	test_thread_start(&ta, thread_a, NULL);
	test_thread_start(&tb, thread_b, NULL);
	test_thread_join(ta);
	test_thread_join(tb);
	return order_log.ol_seq;
}

static void test_order_forces_both_interleavings(void **state)
{
	(void)state;
	test_needs_syncpoints();
	test_watchdog("syncpoint order", 30);
	for (int i = 0; i < 20; i++) {
		assert_string_equal(run_ab("t.a.done", "t.b.start"), "ab");
		assert_string_equal(run_ab("t.b.done", "t.a.start"), "ba");
	}
}

static void *thread_tagged(void *arg)
{
	syncpoint_thread_name(arg);
	SYNC_POINT("t.shared");
	order_log_add(&order_log, *(const char *)arg);
	return NULL;
}

static void test_thread_tag_stops_only_that_thread(void **state)
{
	pthread_t t1, t2;

	(void)state;
	test_needs_syncpoints();
	test_watchdog("syncpoint tag", 30);
	order_log.ol_n = 0;
	memset(order_log.ol_seq, 0, sizeof(order_log.ol_seq));
	syncpoint_order("test.release", "t.shared@X");
	test_thread_start(&t1, thread_tagged, "X");
	test_thread_start(&t2, thread_tagged, "Y");
	/* Y passes freely; X is held until the test releases it */
	syncpoint_wait_passed("t.shared@Y", 1);
	syncpoint_wait_arrived("t.shared@X", 1);
	test_thread_join(t2);
	assert_int_equal(syncpoint_passed("t.shared@X"), 0);
	syncpoint_hit("test.release");
	test_thread_join(t1);
	assert_string_equal(order_log.ol_seq, "YX");
}

static void count_cb(const char *point, void *arg)
{
	(void)point;
	(*(int *)arg)++;
}

static void test_callback_and_counts(void **state)
{
	int calls = 0;

	(void)state;
	test_needs_syncpoints();
	syncpoint_callback("t.cb", count_cb, &calls);
	for (int i = 0; i < 3; i++)
		SYNC_POINT("t.cb");
	SYNC_POINT("t.other");
	assert_int_equal(calls, 3);
	assert_int_equal(syncpoint_arrived("t.cb"), 3);
	assert_int_equal(syncpoint_passed("t.cb"), 3);
	assert_int_equal(syncpoint_passed("t.other"), 1);
}

static void test_disarmed_points_count_nothing(void **state)
{
	(void)state;
	syncpoint_reset();
	SYNC_POINT("t.quiet");
	syncpoint_enable();
	assert_int_equal(syncpoint_passed("t.quiet"), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_order_forces_both_interleavings),
	    cmocka_unit_test(test_thread_tag_stops_only_that_thread),
	    cmocka_unit_test(test_callback_and_counts),
	    cmocka_unit_test(test_disarmed_points_count_nothing),
	};
	return TEST_RUN("syncpoint", tests);
}

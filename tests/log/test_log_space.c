/*
 * test_log_space.c - space accounting and reservations (seed 000).
 *
 * What it proves:
 *   - total, written, kept and free follow FORMAT.md and log_space.c:
 *     a segment counts as written, whole, once the head enters it, and
 *     after recovery every segment up to the head's does;
 *   - reservations take from free; only LOG_RES_FREEING ones reach the
 *     kept reserve; what is not there is -ENOSPC, at once; release gives
 *     it back;
 *   - the kept reserve is 2 segments or 1% of the volume, the larger;
 *   - reservations from other threads while a builder takes segments
 *     keep the counters exact (run under TSan too).
 */
#include "harness.h"
#include "log_fixture.h"

#include <string.h>

#define SEG  16u
#define SEG0 SEG

static void space_get(struct log *l, struct log_space *sp)
{
	memset(sp, 0xa5, sizeof(*sp));
	log_space(l, sp);
}

static void test_space_fresh_volume(void **state)
{
	struct bdev *d;
	struct log *l = lt_volume(SEG, 10, &d);
	struct log_space sp;

	(void)state;
	space_get(l, &sp);
	assert_int_equal(sp.sp_total, 10 * SEG);
	assert_int_equal(sp.sp_written, SEG); /* the head's segment */
	assert_int_equal(sp.sp_reserved, 0);
	assert_int_equal(sp.sp_kept, 2 * SEG);
	assert_int_equal(sp.sp_free, 10 * SEG - SEG - 2 * SEG);
	log_close(l);
	bdev_close(d);
}

static void test_space_reserve_release(void **state)
{
	struct bdev *d;
	struct log *l = lt_volume(SEG, 10, &d);
	struct log_space sp;
	uint64_t free0;

	(void)state;
	space_get(l, &sp);
	free0 = sp.sp_free;
	assert_int_equal(log_space_reserve(l, 10, 0), 0);
	space_get(l, &sp);
	assert_int_equal(sp.sp_reserved, 10);
	assert_int_equal(sp.sp_free, free0 - 10);
	assert_int_equal(log_space_reserve(l, free0 - 10 + 1, 0), -ENOSPC);
	assert_int_equal(log_space_reserve(l, free0 - 10, 0), 0); /* all of it */
	assert_int_equal(log_space_reserve(l, 1, 0), -ENOSPC);
	space_get(l, &sp);
	assert_int_equal(sp.sp_free, 0);
	assert_int_equal(sp.sp_reserved, free0);

	/* the kept reserve is for freeing operations only */
	assert_int_equal(log_space_reserve(l, 2 * SEG + 1, LOG_RES_FREEING), -ENOSPC);
	assert_int_equal(log_space_reserve(l, 2 * SEG, LOG_RES_FREEING), 0);
	assert_int_equal(log_space_reserve(l, 1, LOG_RES_FREEING), -ENOSPC);
	space_get(l, &sp);
	assert_int_equal(sp.sp_reserved, free0 + 2 * SEG);
	assert_int_equal(sp.sp_free, 0);

	log_space_release(l, 2 * SEG);
	assert_int_equal(log_space_reserve(l, 1, 0), -ENOSPC); /* kept again */
	log_space_release(l, free0);
	space_get(l, &sp);
	assert_int_equal(sp.sp_reserved, 0);
	assert_int_equal(sp.sp_free, free0);
	assert_int_equal(log_space_reserve(l, 0, 0), 0);
	assert_int_equal(log_space_reserve(l, 1, 0x10), -EINVAL);
	log_close(l);
	bdev_close(d);
}

/*
 * log_space_keep grows the kept reserve by a deletion's worst case:
 * freeing operations may use all of the kept reserve, a cleaning run
 * (log_space_cleaner_room) all but that part, or all that is left once
 * deletions left less than that part.
 */
static void test_space_kept_for_deletions(void **state)
{
	struct bdev *d;
	struct log *l = lt_volume(SEG, 10, &d);
	struct log_space sp;
	uint64_t free0;

	(void)state;
	log_space_keep(l, 5);
	space_get(l, &sp);
	assert_int_equal(sp.sp_kept, 2 * SEG + 5);
	free0 = sp.sp_free;
	assert_int_equal(free0, 10 * SEG - SEG - 2 * SEG - 5);
	assert_int_equal(log_space_reserve(l, free0, 0), 0);
	assert_int_equal(log_space_reserve(l, 1, 0), -ENOSPC);
	/* a cleaning run: the kept reserve but the deletions' part */
	assert_int_equal(log_space_cleaner_room(l), 2 * SEG);
	assert_int_equal(log_space_reserve(l, 2 * SEG, LOG_RES_FREEING), 0);
	assert_int_equal(log_space_cleaner_room(l), 0); /* a deletion still fits */
	/* a deletion: what is left */
	assert_int_equal(log_space_reserve(l, 6, LOG_RES_FREEING), -ENOSPC);
	assert_int_equal(log_space_reserve(l, 5, LOG_RES_FREEING), 0);
	space_get(l, &sp);
	assert_int_equal(sp.sp_reserved, free0 + 2 * SEG + 5);
	log_space_release(l, 2 * SEG + 5);
	/* deletions that freed nothing used the reserve up to 3 blocks: no
	 * deletion fits, and a cleaning run may take those 3 */
	assert_int_equal(log_space_reserve(l, 2 * SEG + 2, LOG_RES_FREEING), 0);
	assert_int_equal(log_space_cleaner_room(l), 3);
	log_space_release(l, 2 * SEG + 2 + free0);
	log_space_keep(l, 0); /* the last call wins */
	space_get(l, &sp);
	assert_int_equal(sp.sp_kept, 2 * SEG);
	log_close(l);
	bdev_close(d);
}

static void test_space_kept_percent(void **state)
{
	struct bdev *d = NULL;
	struct log *l;
	struct log_space sp;

	(void)state;
	/* 300 segments of 16: 1% is 48 blocks, more than 2 segments */
	assert_int_equal(bdev_open_ram(LT_BS, SEG + 300 * SEG + 1, &d), 0);
	lt_format(d, SEG);
	l = lt_open(d);
	space_get(l, &sp);
	assert_int_equal(sp.sp_total, 300 * SEG);
	assert_int_equal(sp.sp_kept, 48);
	assert_int_equal(sp.sp_free, 300 * SEG - SEG - 48);
	log_close(l);
	bdev_close(d);
}

static void test_space_written_counts_segments(void **state)
{
	struct bdev *d;
	struct log *l = lt_volume(SEG, 10, &d), *r;
	struct log_space sp;
	struct log_state st;

	(void)state;
	lt_delta_ok(l, 1, 3, NULL, NULL); /* 6 blocks of segment 0 */
	space_get(l, &sp);
	assert_int_equal(sp.sp_written, SEG);
	lt_delta_ok(l, 2, 20, NULL, NULL); /* into segments 1 and 2 */
	space_get(l, &sp);
	assert_int_equal(sp.sp_written, 3 * SEG);
	assert_int_equal(sp.sp_free, 10 * SEG - 3 * SEG - 2 * SEG);

	r = lt_recover(d, &st); /* every segment up to the head's */
	assert_int_equal(st.ls_next_blk / SEG - 1, 2);
	space_get(r, &sp);
	assert_int_equal(sp.sp_written, 3 * SEG);
	log_close(r);
	log_close(l);
	bdev_close(d);
}

/* Reservations made and released by another thread while deltas are written. */
struct space_thread {
	struct log *st_log;
	_Atomic bool st_stop;
	uint64_t st_granted;
};

static void *space_hammer(void *arg)
{
	struct space_thread *t = arg;

	while (!atomic_load(&t->st_stop)) {
		struct log_space sp;

		if (!log_space_reserve(t->st_log, 3, t->st_granted & 1 ? LOG_RES_FREEING : 0)) {
			t->st_granted++;
			log_space(t->st_log, &sp);
			assert(sp.sp_reserved >= 3);
			log_space_release(t->st_log, 3);
		}
	}
	return NULL;
}

static void test_space_concurrent_with_builder(void **state)
{
	struct bdev *d;
	struct log *l = lt_volume(SEG, 40, &d);
	struct space_thread t = {.st_log = l};
	struct log_space sp;
	pthread_t th;

	(void)state;
	test_watchdog("log_space: concurrent_with_builder", 60);
	atomic_init(&t.st_stop, false);
	test_thread_start(&th, space_hammer, &t);
	for (uint64_t delta = 1; delta <= 30; delta++)
		lt_delta_ok(l, delta, 7, NULL, NULL);
	atomic_store(&t.st_stop, true);
	test_thread_join(th);
	space_get(l, &sp);
	assert_int_equal(sp.sp_reserved, 0);
	assert_true(sp.sp_written >= 15 * SEG);
	log_close(l);
	bdev_close(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_space_fresh_volume),
	    cmocka_unit_test(test_space_reserve_release),
	    cmocka_unit_test(test_space_kept_for_deletions),
	    cmocka_unit_test(test_space_kept_percent),
	    cmocka_unit_test(test_space_written_counts_segments),
	    cmocka_unit_test(test_space_concurrent_with_builder),
	};

	return TEST_RUN("log_space", tests);
}

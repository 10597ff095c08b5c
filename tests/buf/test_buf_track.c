/*
 * test_buf_track.c - tracked reads (seed 004): a read that goes through
 * to a block about to be reused finishes before the block is reused, and
 * a pending reuse is not starved by new readers.
 *
 * What it proves:
 *   - a reuser waits for the read that was in flight when it arrived, and
 *     the reader gets the data from before the reuse;
 *   - once a reuser waits, new readers of the zone wait behind it without
 *     counting, so it drains; they are then told to re-resolve (-EAGAIN)
 *     and read what the reuse left;
 *   - the API: -EAGAIN after a reuse and no count held, other zones (also
 *     one sharing a lock stripe) unaffected, -EINVAL past the end, two
 *     reusers of one zone one after the other;
 *   - under a seeded stress run (for ThreadSanitizer), no read is counted
 *     in a zone while its reuser believes it owns it.
 *
 * Thread orders are forced with interleaving points, never with sleeps.
 */
#include "harness.h"
#include "buf_fixture.h"

#include <string.h>

/* ---- an event log the test can wait on --------------------------------- */

#define EV_MAX 256

/*
 * One char per event, in the order they happened: points passed (logged
 * by syncpoint callbacks, which run in the passing thread right after the
 * point) and what the test's threads log themselves.
 */
static struct {
	pthread_mutex_t el_lock;
	pthread_cond_t el_cond;
	char el_seq[EV_MAX + 1]; /* protected by el_lock */
	unsigned el_n;		 /* protected by el_lock */
} ev = {.el_lock = PTHREAD_MUTEX_INITIALIZER, .el_cond = PTHREAD_COND_INITIALIZER};

static void ev_reset(void)
{
	pthread_mutex_lock(&ev.el_lock);
	memset(ev.el_seq, 0, sizeof(ev.el_seq));
	ev.el_n = 0;
	pthread_mutex_unlock(&ev.el_lock);
}

static void ev_add(char code)
{
	pthread_mutex_lock(&ev.el_lock);
	if (ev.el_n < EV_MAX)
		ev.el_seq[ev.el_n++] = code;
	pthread_cond_broadcast(&ev.el_cond);
	pthread_mutex_unlock(&ev.el_lock);
}

static void ev_point_cb(const char *point, void *arg)
{
	(void)point;
	ev_add((char)(uintptr_t)arg);
}

/* Log @code each time @point is passed. */
static void ev_on(const char *point, char code)
{
	syncpoint_callback(point, ev_point_cb, (void *)(uintptr_t)code);
}

static bool ev_has_all_locked(const char *codes)
{
	for (; *codes; codes++)
		if (!strchr(ev.el_seq, *codes))
			return false;
	return true;
}

static bool ev_has_any_locked(const char *codes)
{
	for (; *codes; codes++)
		if (strchr(ev.el_seq, *codes))
			return true;
	return false;
}

/*
 * Wait until every code of @all was logged, or any code of @stop. True if
 * all were and none of @stop: a broken order ends the wait with false
 * instead of hanging.
 */
static bool ev_wait_for(const char *all, const char *stop)
{
	bool ok;

	pthread_mutex_lock(&ev.el_lock);
	while (!ev_has_all_locked(all) && !ev_has_any_locked(stop))
		pthread_cond_wait(&ev.el_cond, &ev.el_lock);
	ok = ev_has_all_locked(all) && !ev_has_any_locked(stop);
	pthread_mutex_unlock(&ev.el_lock);
	return ok;
}

/* Position of the first @code in the log, or -1. */
static int ev_pos(char code)
{
	const char *p;
	int pos;

	pthread_mutex_lock(&ev.el_lock);
	p = strchr(ev.el_seq, code);
	pos = p ? (int)(p - ev.el_seq) : -1;
	pthread_mutex_unlock(&ev.el_lock);
	return pos;
}

/* ---- threads ------------------------------------------------------------- */

/* buf_read of one block in a thread named rd_tag; logs rd_done when back. */
struct reader {
	struct fixture *rd_fx;
	uint64_t rd_owner;
	uint64_t rd_index;
	const char *rd_tag;
	char rd_done;
	struct buf *rd_buf;
	int rd_err;
};

static void *reader_main(void *arg)
{
	struct reader *r = arg;

	syncpoint_thread_name(r->rd_tag);
	r->rd_err = buf_read(r->rd_fx->fx_cache, r->rd_owner, r->rd_index, &r->rd_buf);
	ev_add(r->rd_done);
	return NULL;
}

/*
 * Reuse a zone: wait for it to drain, write version ru_version of blocks
 * ru_first.. of ru_owner (the new content of the space), log 'u', pass
 * "test.reuse_gate" (a test may hold it there), end the reuse.
 */
struct reuser {
	struct fixture *ru_fx;
	uint64_t ru_zone;
	const char *ru_tag;
	uint64_t ru_owner;
	uint64_t ru_first;
	unsigned ru_count;
	uint32_t ru_version;
	int ru_err;
};

static void *reuser_main(void *arg)
{
	struct reuser *u = arg;
	uint64_t data[FIX_BLOCK / 8];
	int err = 0;

	syncpoint_thread_name(u->ru_tag);
	buf_track_reuse_begin(u->ru_fx->fx_track, u->ru_zone);
	for (unsigned i = 0; i < u->ru_count && !err; i++) {
		uint64_t index = u->ru_first + i;

		fixture_pattern(data, u->ru_owner, index, u->ru_version);
		err = bdev_write(u->ru_fx->fx_dev, fixture_pblk(u->ru_owner, index), 1, data);
	}
	u->ru_err = err;
	ev_add('u');
	syncpoint_hit("test.reuse_gate");
	buf_track_reuse_end(u->ru_fx->fx_track, u->ru_zone);
	return NULL;
}

/* buf_track_read_begin in a thread named tr_tag; logs tr_done when back. */
struct tracked {
	struct buf_track *tr_track;
	uint64_t tr_pblk;
	const char *tr_tag;
	char tr_done;
	int tr_err;
};

static void *tracked_main(void *arg)
{
	struct tracked *r = arg;

	syncpoint_thread_name(r->tr_tag);
	r->tr_err = buf_track_read_begin(r->tr_track, r->tr_pblk);
	ev_add(r->tr_done);
	return NULL;
}

/* buf_track_reuse_begin in a thread named "U2"; logs 'b' when back, 'f' when ended. */
struct second_reuser {
	struct buf_track *sr_track;
	uint64_t sr_zone;
};

static void *second_reuser_main(void *arg)
{
	struct second_reuser *u = arg;

	syncpoint_thread_name("U2");
	buf_track_reuse_begin(u->sr_track, u->sr_zone);
	ev_add('b');
	buf_track_reuse_end(u->sr_track, u->sr_zone);
	ev_add('f');
	return NULL;
}

/* True if @b holds version @v of its block. */
static bool buf_holds(struct buf *b, uint32_t v)
{
	uint64_t want[FIX_BLOCK / 8];

	fixture_pattern(want, buf_owner(b), buf_index(b), v);
	return !memcmp(want, buf_data(b), FIX_BLOCK);
}

static uint64_t zone_of(uint64_t owner, uint64_t index)
{
	return fixture_pblk(owner, index) >> FIX_ZONE_SHIFT;
}

/* ---- (a) a reuse waits for the read in flight ---------------------------- */

/*
 * Thread arguments live in static storage: a test that fails leaves its
 * threads behind, and they must not write into a dead stack frame.
 * Observations are made while the threads run, asserted once they are
 * joined, unless going on would deadlock.
 */
static void test_reuse_waits_for_read_in_flight(void **state)
{
	static struct reader r;
	static struct reuser u;
	uint64_t zone = zone_of(1, 5);
	uint32_t counted, held_readers;
	bool u_waited;
	struct fixture *fx;
	pthread_t tr, tu;

	(void)state;
	test_needs_syncpoints();
	test_watchdog("buf_track: reuse waits for read in flight", 30);
	fx = fixture_new(fixture_emu(4), 16, false);
	r = (struct reader){
	    .rd_fx = fx, .rd_owner = 1, .rd_index = 5, .rd_tag = "R", .rd_done = 'r'};
	u = (struct reuser){.ru_fx = fx,
			    .ru_zone = zone,
			    .ru_tag = "U",
			    .ru_owner = 1,
			    .ru_first = 5,
			    .ru_count = 1,
			    .ru_version = 9};
	fixture_put_block(fx, 1, 5, 3);
	ev_reset();
	ev_on("buf.track.read_end", 'e');
	ev_on("buf.track.reuse_wait_locked", 'w');
	ev_on("buf.track.reuse_drained", 'd');
	syncpoint_order("test.release_read", "bdev.emu.read@R");

	/* R is counted and held inside the device read */
	test_thread_start(&tr, reader_main, &r);
	syncpoint_wait_arrived("bdev.emu.read@R", 1);
	counted = buf_track_readers(fx->fx_track, zone);

	/* U announces the reuse and waits for R, not past the drain */
	test_thread_start(&tu, reuser_main, &u);
	u_waited = ev_wait_for("w", "d");
	held_readers = buf_track_readers(fx->fx_track, zone);

	syncpoint_hit("test.release_read");
	test_thread_join(tr);
	test_thread_join(tu);
	assert_int_equal(counted, 1);
	assert_true(u_waited); /* at reuse_wait_locked, not past reuse_drained */
	assert_int_equal(held_readers, 1);
	assert_int_equal(r.rd_err, 0);
	assert_int_equal(u.ru_err, 0);
	assert_true(buf_holds(r.rd_buf, 3)); /* the content from before the reuse */
	assert_true(ev_pos('e') >= 0);
	assert_true(ev_pos('e') < ev_pos('d')); /* read ended, then the zone drained */
	assert_true(fixture_dev_has(fx, 1, 5, 9));
	assert_int_equal(buf_track_readers(fx->fx_track, zone), 0);
	buf_put(r.rd_buf);
	fixture_free(fx);
}

/* ---- (b) new readers wait behind a pending reuse ------------------------- */

#define NEW_READERS 4

static const char *const new_tags[NEW_READERS] = {"N0", "N1", "N2", "N3"};
static const char *const new_waits[NEW_READERS] = {
    "buf.track.read_wait_locked@N0", "buf.track.read_wait_locked@N1",
    "buf.track.read_wait_locked@N2", "buf.track.read_wait_locked@N3"};

/* Start the new readers of blocks 1..NEW_READERS of owner 1, logging 'c' when done. */
static void new_readers_start(struct fixture *fx, struct reader *n, pthread_t *tn)
{
	for (unsigned i = 0; i < NEW_READERS; i++) {
		n[i] = (struct reader){.rd_fx = fx,
				       .rd_owner = 1,
				       .rd_index = 1 + i,
				       .rd_tag = new_tags[i],
				       .rd_done = 'c'};
		test_thread_start(&tn[i], reader_main, &n[i]);
	}
}

static void test_reuse_not_starved_by_new_readers(void **state)
{
	static struct reader r1, n[NEW_READERS];
	static struct reuser u;
	uint64_t zone = zone_of(1, 0);
	pthread_t tr1, tu, tn[NEW_READERS];
	bool u_waited, new_waited, drained;
	uint32_t drained_readers;
	struct fixture *fx;

	(void)state;
	test_needs_syncpoints();
	test_watchdog("buf_track: reuse not starved", 30);
	fx = fixture_new(fixture_emu(4), 16, false);
	r1 = (struct reader){
	    .rd_fx = fx, .rd_owner = 1, .rd_index = 0, .rd_tag = "R1", .rd_done = 'r'};
	u = (struct reuser){.ru_fx = fx,
			    .ru_zone = zone,
			    .ru_tag = "U",
			    .ru_owner = 1,
			    .ru_first = 0,
			    .ru_count = NEW_READERS + 1,
			    .ru_version = 20};
	for (unsigned i = 0; i <= NEW_READERS; i++) {
		assert_int_equal(zone_of(1, i), zone);
		fixture_put_block(fx, 1, i, 10);
	}
	ev_reset();
	ev_on("buf.track.reuse_wait_locked", 'w');
	ev_on("buf.track.reuse_drained", 'd');
	for (unsigned i = 0; i < NEW_READERS; i++)
		ev_on(new_waits[i], (char)('0' + i));
	syncpoint_order("test.release_r1", "bdev.emu.read@R1");
	syncpoint_order("test.release_reuse", "test.reuse_gate");

	/* R1 in flight, U waiting for it */
	test_thread_start(&tr1, reader_main, &r1);
	syncpoint_wait_arrived("bdev.emu.read@R1", 1);
	test_thread_start(&tu, reuser_main, &u);
	u_waited = ev_wait_for("w", "d");

	/* new readers of the zone wait behind U and do not count */
	new_readers_start(fx, n, tn);
	new_waited = ev_wait_for("0123", "cd");
	/* counted waiters would keep U from draining: stop here */
	assert_int_equal(buf_track_readers(fx->fx_track, zone), 1);

	/* R1 ends: U drains and holds the zone while the new readers still wait */
	syncpoint_hit("test.release_r1");
	drained = ev_wait_for("du", "c");
	drained_readers = buf_track_readers(fx->fx_track, zone);

	/* U ends the reuse: the new readers re-resolve and read the new content */
	syncpoint_hit("test.release_reuse");
	test_thread_join(tu);
	test_thread_join(tr1);
	for (unsigned i = 0; i < NEW_READERS; i++)
		test_thread_join(tn[i]);
	assert_true(u_waited);
	assert_true(new_waited); /* all at read_wait_locked, none done, U not drained */
	assert_true(drained);	 /* U drained and reused, no new reader done */
	assert_int_equal(drained_readers, 0);
	assert_int_equal(u.ru_err, 0);
	assert_int_equal(r1.rd_err, 0);
	assert_true(buf_holds(r1.rd_buf, 10));
	for (unsigned i = 0; i < NEW_READERS; i++) {
		assert_int_equal(n[i].rd_err, 0);
		assert_true(buf_holds(n[i].rd_buf, 20));
		buf_put(n[i].rd_buf);
	}
	assert_int_equal(atomic_load(&fx->fx_fills), 1 + NEW_READERS);
	/* R1 once, each new reader twice: once told -EAGAIN, once counted */
	assert_int_equal(syncpoint_passed("buf.track.read_begin"), 1 + 2 * NEW_READERS);
	assert_int_equal(buf_track_readers(fx->fx_track, zone), 0);
	buf_put(r1.rd_buf);
	fixture_free(fx);
}

/* ---- (c) the API ---------------------------------------------------------- */

static void test_read_begin_during_reuse_waits_then_eagain(void **state)
{
	static struct tracked a;
	struct buf_track *t = NULL;
	uint32_t waiting_readers;
	pthread_t ta;
	bool waited;

	(void)state;
	test_needs_syncpoints();
	test_watchdog("buf_track: read_begin during reuse", 30);
	assert_int_equal(buf_track_create(1024, 4, &t), 0);
	a = (struct tracked){.tr_track = t, .tr_pblk = 3 * 16 + 7, .tr_tag = "A", .tr_done = 'a'};
	ev_reset();
	ev_on("buf.track.read_wait_locked@A", 'w');

	buf_track_reuse_begin(t, 3); /* no readers: returns at once */
	test_thread_start(&ta, tracked_main, &a);
	waited = ev_wait_for("w", "a");
	waiting_readers = buf_track_readers(t, 3);
	buf_track_reuse_end(t, 3);
	test_thread_join(ta);
	assert_true(waited); /* held until the reuse ended */
	assert_int_equal(waiting_readers, 0);
	assert_int_equal(a.tr_err, -EAGAIN);	      /* then told to re-resolve */
	assert_int_equal(buf_track_readers(t, 3), 0); /* holding no count */

	/* the retry counts */
	assert_int_equal(buf_track_read_begin(t, a.tr_pblk), 0);
	assert_int_equal(buf_track_readers(t, 3), 1);
	buf_track_read_end(t, a.tr_pblk);
	assert_int_equal(buf_track_readers(t, 3), 0);
	buf_track_destroy(t);
}

/*
 * A reuse stops only its own zone: reads of other zones count during it,
 * a reuse does not wait for another zone's readers, and two zones can be
 * reused at once. Zone z + 64 shares a lock stripe with zone z in the
 * current implementation (TRACK_STRIPES), the case most likely to mix up.
 */
static void test_reuse_stops_only_its_zone(void **state)
{
	struct buf_track *t = NULL;

	(void)state;
	test_watchdog("buf_track: reuse stops only its zone", 30);
	assert_int_equal(buf_track_create(2048, 4, &t), 0); /* 128 zones */
	assert_int_equal(buf_track_read_begin(t, 70 * 16 + 1), 0);

	buf_track_reuse_begin(t, 6); /* the reader of zone 70 is not waited for */
	assert_int_equal(buf_track_readers(t, 6), 0);
	assert_int_equal(buf_track_read_begin(t, 7 * 16), 0);
	assert_int_equal(buf_track_read_begin(t, 70 * 16 + 15), 0);
	assert_int_equal(buf_track_readers(t, 7), 1);
	assert_int_equal(buf_track_readers(t, 70), 2);
	buf_track_reuse_begin(t, 71); /* a second zone reused at the same time */
	buf_track_read_end(t, 70 * 16 + 1);
	buf_track_read_end(t, 70 * 16 + 15);
	buf_track_read_end(t, 7 * 16);
	buf_track_reuse_end(t, 71);
	buf_track_reuse_end(t, 6);
	for (uint64_t z = 0; z < 128; z++)
		assert_int_equal(buf_track_readers(t, z), 0);
	buf_track_destroy(t);
}

static void test_bounds(void **state)
{
	struct buf_track *t = NULL;

	(void)state;
	test_watchdog("buf_track: bounds", 30);
	assert_int_equal(buf_track_create(0, 4, &t), -EINVAL);
	assert_int_equal(buf_track_create(16, 41, &t), -EINVAL);
	/* 100 blocks of zones of 16: zone 6 is the partial last one */
	assert_int_equal(buf_track_create(100, 4, &t), 0);
	assert_int_equal(buf_track_read_begin(t, 100), -EINVAL);
	/* in zone 7, which does not exist */
	assert_int_equal(buf_track_read_begin(t, 112), -EINVAL);
	assert_int_equal(buf_track_read_begin(t, UINT64_MAX), -EINVAL);
	assert_int_equal(buf_track_readers(t, 6), 0);
	assert_int_equal(buf_track_read_begin(t, 99), 0);
	assert_int_equal(buf_track_readers(t, 6), 1);
	buf_track_read_end(t, 99);
	buf_track_reuse_begin(t, 6);
	assert_int_equal(buf_track_read_begin(t, 100), -EINVAL); /* checked before waiting */
	buf_track_reuse_end(t, 6);
	assert_int_equal(buf_track_readers(t, 6), 0);
	buf_track_destroy(t);
}

/*
 * Two reusers of one zone: the second returns from reuse_begin only after
 * the first ended its reuse. The test logs 'E' just before the first
 * reuse_end and U2 logs 'b' when its reuse_begin returns.
 *
 * The wait for a turn (invariant 3) has no interleaving point, so the test
 * cannot know when U2 sleeps there: it waits until U2 passed
 * "buf.track.reuse_begin", just before U2 takes the lock. A correct
 * implementation passes every round whatever the timing; a broken one is
 * caught in the rounds where U2 gets in before the first reuser ends ('b'
 * before 'E', or a reuse_end finding the zone not reused), hence the
 * rounds. A point in that loop would make this exact.
 */
#define SERIAL_ROUNDS 100

static void reusers_one_round(struct buf_track *t, struct second_reuser *u2, unsigned round)
{
	pthread_t tu;

	ev_reset();
	buf_track_reuse_begin(t, u2->sr_zone);
	test_thread_start(&tu, second_reuser_main, u2);
	syncpoint_wait_passed("buf.track.reuse_begin@U2", round + 1);
	ev_add('E');
	buf_track_reuse_end(t, u2->sr_zone);
	test_thread_join(tu);
	assert_true(ev_pos('E') >= 0);
	assert_true(ev_pos('E') < ev_pos('b'));
	assert_true(ev_pos('b') < ev_pos('f'));
}

static void test_reusers_of_one_zone_serialize(void **state)
{
	static struct second_reuser u2;
	struct buf_track *t = NULL;

	(void)state;
	test_needs_syncpoints();
	test_watchdog("buf_track: reusers serialize", 30);
	assert_int_equal(buf_track_create(1024, 4, &t), 0);
	u2 = (struct second_reuser){.sr_track = t, .sr_zone = 5};
	syncpoint_enable();
	for (unsigned round = 0; round < SERIAL_ROUNDS; round++)
		reusers_one_round(t, &u2, round);
	assert_int_equal(syncpoint_passed("buf.track.reuse_drained@U2"), SERIAL_ROUNDS);
	assert_int_equal(buf_track_readers(t, 5), 0);
	/* the zone is free again */
	assert_int_equal(buf_track_read_begin(t, 5 * 16), 0);
	buf_track_read_end(t, 5 * 16);
	buf_track_destroy(t);
}

/* ---- (d) stress, for ThreadSanitizer --------------------------------------- */

#define STRESS_READERS 4
#define STRESS_ITERS   20000
#define STRESS_SHIFT   2
#define STRESS_ZONES   128

struct stress {
	struct buf_track *st_track;
	uint64_t st_seed;
	pthread_barrier_t st_start;	      /* all threads begin together */
	_Atomic bool st_reused[STRESS_ZONES]; /* between reuse_begin and reuse_end */
	_Atomic uint64_t st_violations;
	_Atomic uint64_t st_eagain;
	_Atomic uint64_t st_reads;
};

struct stress_thread {
	struct stress *sth_stress;
	unsigned sth_id;
};

/* Zones 0/64 and 1/65 share lock stripes; most picks go to these few. */
static const uint64_t stress_hot[] = {0, 1, 64, 65};

static uint64_t stress_zone(struct prng *p)
{
	if (prng_chance(p, 3, 4))
		return stress_hot[prng_below(p, ARRAY_SIZE(stress_hot))];
	return prng_below(p, STRESS_ZONES);
}

/* Stay a little while in a read or a reuse (work, not a sleep). */
static void stress_linger(struct prng *p)
{
	for (uint64_t n = prng_below(p, 64); n; n--)
		prng_next(p);
}

static void stress_check(struct stress *s, bool ok)
{
	if (!ok)
		atomic_fetch_add(&s->st_violations, 1);
}

/* One read: counted reads must never overlap a reuse of their zone. */
static void stress_read_one(struct stress *s, struct prng *p)
{
	uint64_t zone = stress_zone(p);
	uint64_t pblk = (zone << STRESS_SHIFT) + prng_below(p, 1u << STRESS_SHIFT);
	int err = buf_track_read_begin(s->st_track, pblk);

	if (err == -EAGAIN) {
		atomic_fetch_add(&s->st_eagain, 1);
		return;
	}
	stress_check(s, err == 0);
	if (err)
		return;
	atomic_fetch_add(&s->st_reads, 1);
	stress_check(s, !atomic_load(&s->st_reused[zone]));
	stress_linger(p);
	stress_check(s, !atomic_load(&s->st_reused[zone]));
	buf_track_read_end(s->st_track, pblk);
}

static void *stress_reader(void *arg)
{
	struct stress_thread *th = arg;
	struct prng p;

	prng_init(&p, th->sth_stress->st_seed + th->sth_id);
	pthread_barrier_wait(&th->sth_stress->st_start);
	for (unsigned i = 0; i < STRESS_ITERS; i++)
		stress_read_one(th->sth_stress, &p);
	return NULL;
}

static void *stress_reuser(void *arg)
{
	struct stress_thread *th = arg;
	struct stress *s = th->sth_stress;
	struct prng p;

	prng_init(&p, s->st_seed + th->sth_id);
	pthread_barrier_wait(&s->st_start);
	for (unsigned i = 0; i < STRESS_ITERS; i++) {
		uint64_t zone = stress_zone(&p);

		buf_track_reuse_begin(s->st_track, zone);
		stress_check(s, !atomic_exchange(&s->st_reused[zone], true));
		stress_check(s, buf_track_readers(s->st_track, zone) == 0);
		stress_linger(&p);
		stress_check(s, buf_track_readers(s->st_track, zone) == 0);
		atomic_store(&s->st_reused[zone], false);
		buf_track_reuse_end(s->st_track, zone);
	}
	return NULL;
}

static void test_stress_reads_and_reuses(void **state)
{
	static struct stress s;
	struct stress_thread th[STRESS_READERS + 1];
	pthread_t tid[STRESS_READERS + 1];

	(void)state;
	test_watchdog("buf_track: stress", 120);
	memset(&s, 0, sizeof(s));
	s.st_seed = test_seed("buf_track stress", 4);
	assert_int_equal(buf_track_create(STRESS_ZONES << STRESS_SHIFT, STRESS_SHIFT, &s.st_track),
			 0);
	assert_int_equal(pthread_barrier_init(&s.st_start, NULL, STRESS_READERS + 1), 0);
	for (unsigned i = 0; i <= STRESS_READERS; i++) {
		th[i] = (struct stress_thread){.sth_stress = &s, .sth_id = i};
		test_thread_start(&tid[i], i < STRESS_READERS ? stress_reader : stress_reuser,
				  &th[i]);
	}
	for (unsigned i = 0; i <= STRESS_READERS; i++)
		test_thread_join(tid[i]);
	print_message("# stress: %llu reads counted, %llu told to re-resolve\n",
		      (unsigned long long)atomic_load(&s.st_reads),
		      (unsigned long long)atomic_load(&s.st_eagain));
	assert_int_equal(atomic_load(&s.st_violations), 0);
	for (uint64_t z = 0; z < STRESS_ZONES; z++)
		assert_int_equal(buf_track_readers(s.st_track, z), 0);
	pthread_barrier_destroy(&s.st_start);
	buf_track_destroy(s.st_track);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_reuse_waits_for_read_in_flight),
	    cmocka_unit_test(test_reuse_not_starved_by_new_readers),
	    cmocka_unit_test(test_read_begin_during_reuse_waits_then_eagain),
	    cmocka_unit_test(test_reuse_stops_only_its_zone),
	    cmocka_unit_test(test_bounds),
	    cmocka_unit_test(test_reusers_of_one_zone_serialize),
	    cmocka_unit_test(test_stress_reads_and_reuses),
	};
	return TEST_RUN("buf_track", tests);
}

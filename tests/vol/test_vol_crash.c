/*
 * test_vol_crash.c - crash consistency of the volume: at every crash
 * point of a concurrent workload, the volume must recover to a state the
 * model explains.
 *
 * A workload runs on a fresh volume on an emulated device whose history
 * is on (bdev_emu_keep_history), so after it every crash point can be
 * rebuilt without running it again. A cut is either at a write
 * (bdev_emu_crash_at(n): power went when device write n was issued) or
 * at a flush (bdev_emu_crash_at_flush(f): power went while flush f was in
 * progress, so the writes just before it are unflushed: a commit's most
 * exposed moment, which no write cut shows). The unflushed writes of
 * that moment are dropped, kept, kept in part, reordered or torn as the
 * case says.
 *
 * The workload: CR_THREADS threads, each the only writer of its
 * CR_OWNERS owners. Each runs transactions of 1..4 writes (half of them
 * rewrites of a block it changed lately, to meet its own buffers in the
 * committing delta), sometimes a punch, and after some a vol_sync.
 * Content names thread, transaction, owner and block (vol_model.h).
 * Each thread records its transactions in order with the delta each
 * joined; for each sync, the delta it promised (its last transaction's,
 * or the committed one if newer) and the device's write and flush counts
 * when it returned. After each transaction it reads two of its blocks
 * back: vol_read must return what it last wrote, whatever the commit
 * thread is doing.
 *
 * For a cut, recovery (vol_open) must succeed, and the delta R it
 * recovers (vol_committed_delta) must satisfy:
 *   (1) R >= every delta a sync promised before the cut (it returned
 *       before write n was issued, or before flush f began), and R >= the
 *       delta committed when the history began;
 *   (2) R <= the newest delta any transaction joined;
 *   (3) every block of every owner reads back as the model says after
 *       applying, per thread in order, every transaction whose delta is
 *       <= R: whole transactions, whole deltas, nothing newer, nothing
 *       lost (punched and never-written blocks read as zeros).
 *
 * Two schedules:
 *   deterministic  the threads run their transactions one at a time in a
 *                  seeded order, and deltas close only at syncs. Each
 *                  commit draws (seeded by its number) whether to stop at
 *                  an interleaving point - before it takes any buffer
 *                  (vol.commit.begin), once it took them (the first
 *                  vol.commit.taken) or with all written (vol.commit.
 *                  finish) - and for how many turns. After a syncing turn
 *                  no turn is given until that commit is parked there (or,
 *                  unheld, has ended), and once its turns are done none
 *                  until it went on: so the front end forks the commit's
 *                  buffers, or redirties written ones, at points the seed
 *                  fixes. What joins which delta, every fork made while a
 *                  commit is held, and where each device write and flush
 *                  falls are then a function of the seed
 *                  (test_vol_crash_deterministic checks it), and a failing
 *                  case replays exactly; only the order of blocks inside
 *                  a delta's log may differ. Needs interleaving points
 *                  (not in release builds).
 *   free           the threads run at once, and the pipeline also commits
 *                  on its own (small voo_max_dirty and voo_max_age_ms):
 *                  real front-end concurrency, commits by size and age.
 *                  A replay reruns the same per-thread operations and
 *                  crash choices, not necessarily the same history, so a
 *                  failing image is also saved to a file.
 *
 * Tests: the determinism check; every cut of a small deterministic run
 * with DROP_ALL, KEEP_ALL, a seeded DROP_SOME and KEEP_ALL with a torn
 * write; seeded random cuts, REORDER and torn, of a larger deterministic
 * run and of a free run (CAIRN_CRASH_CASES each, default 200, 50 in
 * sanitizer builds); and the double crash: at flush cuts where a delta's
 * later log lands without an earlier one, recover, run a second workload
 * that writes over what the crash left (the first run's operations again,
 * as a program that starts over after a crash would, with other content:
 * so the new logs may match the lost ones in all but their payload), and
 * check every cut of it, unflushed writes dropped, kept, a seeded subset
 * kept, or kept with one torn
 * (CAIRN_CRASH_TWICE first crashes, default 8, 2 in sanitizer builds):
 * the log chain must never be followed into a stale log. Double crashes
 * that once failed are also run every time, each from a fixed line
 * (test_vol_crash_twice_regressions).
 *
 * A failure prints "crash case: CAIRN_SEED=<seed> cut=<n|fn> mode=<m>
 * tear=<t>" (a double crash adds "var=", and "cut2= mode2= tear2=" for
 * the second cut); the variables CAIRN_CRASH_CUT, _MODE (a name or
 * number), _TEAR and _VAR, and CAIRN_CRASH_CUT2, _MODE2, _TEAR2, run only
 * that case. Its image before recovery is saved under /tmp.
 */
#include "harness.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bdev/bdev.h"
#include "vol/vol.h"
#include "vol/vol_internal.h" /* vol_check */
#include "vol_model.h"

#define CR_BS	      4096u
#define CR_SEG_BLOCKS 64u
/*
 * Devices are small (each case copies one, which costs under TSan) but
 * roomy: a transaction reserves its worst case until its delta commits,
 * and a deterministic run must never run short (a reservation that forces
 * a commit makes the schedule depend on timing; such a run fails).
 */
#define CR_NBLOCKS     2048u /* 8 MiB */
#define CR_BIG_NBLOCKS 3072u /* 12 MiB, for the larger deterministic run */
/*
 * The double crash's: its second runs start where a first crash left
 * the volume, some late in the first run, and must not run short either.
 */
#define CR_TWICE_NBLOCKS CR_BIG_NBLOCKS
/*
 * The free run's device is larger: a transaction reserves its worst case
 * (17 to 47 blocks here) until its delta commits, and four threads that
 * outrun the commit thread hold many such reservations at once.
 */
#define CR_FREE_NBLOCKS	    4096u /* 16 MiB */
#define CR_THREADS	    4u
#define CR_OWNERS	    2u	/* per thread */
#define CR_BLOCKS	    24u /* per owner */
#define CR_SYNC_ONE_IN	    5u	/* a thread syncs after about one transaction in 5 */
#define CR_FREE_SYNC_ONE_IN 16u /* in the free schedule (commits by size and age too) */
#define CR_PUNCH_ONE_IN	    8u
#define CR_RECENT	    4u /* "recent" transactions of a thread, for rewrites */
#define CR_LIVE_READS	    2u /* blocks a thread reads back after each transaction */
#define CR_SEED		    20240601u
#define CR_MAX_REPORTS	    10u /* failing cases printed before giving up */
#define CR_COMMIT_BEGIN	    "vol.commit.begin"
#define CR_COMMIT_END	    "vol.commit.end"
#define CR_RESERVE_SHORT    "delta.reserve.short" /* a reservation forces a commit */
#define CR_FORK_POINT	    "buf.fork_locked"

static const char *const cr_mode_names[] = {"keep_all", "drop_all", "drop_some", "reorder"};

/* ---- the workload's record ----------------------------------------------- */

/*
 * A vol_sync that returned 0: every transaction that ended before it is
 * durable, so the delta of the thread's last one, and whatever
 * vol_committed_delta says after it, is promised.
 */
struct cr_sync {
	uint32_t cs_delta;   /* the newest delta it promised */
	uint64_t cs_writes;  /* history writes when it returned */
	uint64_t cs_flushes; /* and history flushes */
};

struct cr_run;

struct cr_thread {
	struct cr_run *ct_run;
	bool ct_full;		 /* the free run filled the volume: this thread stopped */
	bool ct_in_sync;	 /* protected by cr_lock */
	uint64_t ct_sync_commit; /* the commit its sync waits for; cr_lock */
	uint32_t ct_id;
	struct prng ct_rng;
	struct vm_txn *ct_txns; /* ct_ntxns ended, in order */
	uint32_t ct_ntxns;
	struct cr_sync *ct_syncs;
	uint32_t ct_nsyncs;
	struct vm_state ct_now; /* its owners as its transactions left them (live reads) */
	int ct_err;
	char ct_why[200];
};

enum cr_sched { CR_SCHED_DET, CR_SCHED_FREE };

struct cr_case;

struct cr_run {
	const char *cr_name;
	uint64_t cr_seed;
	enum cr_sched cr_sched;
	uint32_t cr_txns; /* per thread */
	/*
	 * A run on a volume recovered from a crash of another run (the
	 * double crash): what the first run left (its model at the delta
	 * recovered), the case that crashed it, and tags of its own.
	 */
	const struct vm_state *cr_base; /* NULL: a fresh volume */
	const struct cr_case *cr_first;
	uint32_t cr_tag_base; /* added to thread numbers in tags */
	uint32_t cr_cp_every; /* voo_checkpoint_every */
	uint64_t cr_nblocks;  /* the device's */
	uint64_t cr_rec0;     /* device records before the history began */
	uint64_t cr_ms;	      /* how long the workload ran */
	struct bdev *cr_dev;
	struct vol *cr_vol;
	uint32_t cr_delta0;    /* committed when the history began */
	uint32_t cr_max_delta; /* newest delta a transaction joined (or cr_delta0) */
	uint64_t cr_writes;    /* history writes after the workload */
	uint64_t cr_flushes;   /* and flushes */
	uint64_t cr_forks;     /* buffers forked (0 where interleaving points are off) */
	uint64_t cr_digest;    /* of the device's records (cr_records_digest) */
	struct cr_thread cr_th[CR_THREADS];

	struct cr_sync cr_final; /* the main thread's sync after the workload */

	/* The deterministic schedule; all protected by cr_lock. */
	pthread_mutex_t cr_lock;
	pthread_cond_t cr_cond;
	int cr_turn;		/* the thread that may run its next transaction; -1: none */
	bool cr_yielded;	/* the turn's transaction has ended */
	bool cr_syncing;	/* and its thread is about to sync */
	uint64_t cr_turns;	/* turns ended */
	uint64_t cr_sched_wait; /* the commit the scheduler waits for; 0: none */
	bool cr_finished;	/* every turn was given */
	bool cr_abort;		/* the schedule broke down: threads stop */
	uint64_t cr_commit_no;	/* commits begun (numbered from 1) */
	uint64_t cr_commits_ended;
	uint64_t cr_parked;	   /* the commit stopped at its hold point; 0: none */
	uint64_t cr_hold_until;	   /* it goes on once this many turns ended */
	int cr_hold;		   /* where this commit is held (enum cr_hold) */
	uint64_t cr_hold_turns;	   /* for how many turns */
	bool cr_held;		   /* this commit was held already */
	uint64_t cr_holds;	   /* commits held */
	uint64_t cr_hold_forks[4]; /* forks while a commit was held, by enum cr_hold */
	uint64_t cr_hold_timeouts; /* holds given up on (should be 0) */
	uint64_t cr_short;	   /* reservations that had to force a commit */
};

/*
 * Where the deterministic schedule holds a commit while the front end
 * goes on in the next delta, so that it forks the commit's buffers: not
 * at all, before it takes anything, at its first data block, or when
 * everything is written and the super root is about to be.
 */
enum cr_hold { CR_HOLD_NONE, CR_HOLD_BEGIN, CR_HOLD_TAKEN, CR_HOLD_FINISH, CR_NHOLDS };
static const char *const cr_hold_points[] = {NULL, "vol.commit.begin", "vol.commit.taken",
					     "vol.commit.finish"};
#define CR_HOLD_TIMEOUT_S 10 /* a hold, or a wait for a commit, this long is a bug */

/* ---- log lines: kept, shown only with a failure ---------------------------- */

#define CR_LOG_KEEP 8u

static struct {
	pthread_mutex_t cl_lock;
	char cl_line[CR_LOG_KEEP][200]; /* protected by cl_lock */
	uint64_t cl_n;			/* protected by cl_lock */
} cr_log = {.cl_lock = PTHREAD_MUTEX_INITIALIZER};

static void cr_log_sink(enum log_level level, const char *line, void *arg)
{
	(void)arg;
	pthread_mutex_lock(&cr_log.cl_lock);
	snprintf(cr_log.cl_line[cr_log.cl_n++ % CR_LOG_KEEP], sizeof(cr_log.cl_line[0]), "%c %s",
		 "EWID"[level], line);
	pthread_mutex_unlock(&cr_log.cl_lock);
}

static void cr_log_show(void)
{
	pthread_mutex_lock(&cr_log.cl_lock);
	for (uint64_t i = cr_log.cl_n > CR_LOG_KEEP ? cr_log.cl_n - CR_LOG_KEEP : 0;
	     i < cr_log.cl_n; i++)
		print_message("#   log: %s\n", cr_log.cl_line[i % CR_LOG_KEEP]);
	pthread_mutex_unlock(&cr_log.cl_lock);
}

/* ---- the workload ------------------------------------------------------------ */

static void cr_fail(struct cr_thread *th, int err, const char *what)
{
	if (th->ct_err)
		return;
	th->ct_err = err ? err : -EINVAL;
	snprintf(th->ct_why, sizeof(th->ct_why), "thread %u txn %u: %s: %d", th->ct_id,
		 th->ct_ntxns, what, err);
}

/*
 * The block of an operation: half the time one the thread changed in
 * its last few transactions (likely still dirty in the committing delta:
 * a fork, or a redirty once written), else any block of its owners.
 */
static void cr_op_block(struct cr_thread *th, uint32_t *local, uint32_t *index)
{
	uint32_t back = 1 + (uint32_t)prng_below(&th->ct_rng, CR_RECENT);
	const struct vm_txn *x;

	if (prng_chance(&th->ct_rng, 1, 2) && th->ct_ntxns >= back) {
		x = &th->ct_txns[th->ct_ntxns - back];
		*local = x->vx_ops[0].vo_owner % CR_OWNERS;
		*index = x->vx_ops[0].vo_index;
		return;
	}
	*local = (uint32_t)prng_below(&th->ct_rng, CR_OWNERS);
	*index = (uint32_t)prng_below(&th->ct_rng, CR_BLOCKS);
}

/* What a truncate of an owner's blocks costs at most (they all lie below CR_BLOCKS). */
static uint64_t cr_trunc_cost(const struct vol *v)
{
	return vol_truncate_cost(v, CR_BLOCKS);
}

/* Draw one operation of the thread's next transaction into @op. */
static void cr_op_draw(struct cr_thread *th, struct vm_op *op)
{
	uint32_t local, index;

	cr_op_block(th, &local, &index);
	op->vo_owner = th->ct_id * CR_OWNERS + local;
	op->vo_index = index;
	op->vo_punch = prng_chance(&th->ct_rng, 1, CR_PUNCH_ONE_IN);
	op->vo_trunc = false;
	op->vo_tag = 0;
	if (op->vo_punch && (op->vo_index & 3) == 3) {
		/* a quarter of the punches truncate instead (no draw of its own, so
		 * the schedules of the recorded cases stay what they were) */
		op->vo_punch = false;
		op->vo_trunc = true;
	} else if (!op->vo_punch) {
		op->vo_tag =
		    vm_tag(th->ct_run->cr_tag_base + th->ct_id, th->ct_ntxns, local, op->vo_index);
	}
}

/* Apply operation @op in @t. */
static int cr_op_apply(struct cr_thread *th, struct vol_txn *t, const struct vm_op *op, void *buf)
{
	uint64_t owner = VOL_FIRST_OWNER + op->vo_owner;

	if (op->vo_trunc)
		return vol_truncate(t, owner, op->vo_index, cr_trunc_cost(th->ct_run->cr_vol));
	if (op->vo_punch)
		return vol_punch(t, owner, op->vo_index);
	vm_fill(buf, CR_BS, op->vo_tag);
	return vol_write(t, owner, op->vo_index, buf);
}

/* Run and record the thread's next transaction. */
static void cr_txn(struct cr_thread *th, void *buf)
{
	struct vm_txn *x = &th->ct_txns[th->ct_ntxns];
	uint32_t k = 1 + (uint32_t)prng_below(&th->ct_rng, VM_TXN_OPS);
	uint64_t nblocks = 0;
	struct vol_txn t;
	int err;

	/* drawn first, so the transaction reserves what its truncates cost */
	for (uint32_t i = 0; i < k; i++) {
		cr_op_draw(th, &x->vx_ops[i]);
		nblocks += x->vx_ops[i].vo_trunc ? cr_trunc_cost(th->ct_run->cr_vol) : 1;
	}
	err = vol_txn_begin(th->ct_run->cr_vol, nblocks, 0, &t);
	if (err == -ENOSPC && th->ct_run->cr_sched == CR_SCHED_FREE) {
		th->ct_full = true; /* no cleaner yet: the log filled the volume */
		return;
	}
	if (err) {
		cr_fail(th, err, "vol_txn_begin");
		return;
	}
	x->vx_delta = t.vt_op.dop_delta;
	x->vx_nops = k;
	for (uint32_t i = 0; i < k && !err; i++) {
		err = cr_op_apply(th, &t, &x->vx_ops[i], buf);
		if (err)
			cr_fail(th, err,
				x->vx_ops[i].vo_trunc	? "vol_truncate"
				: x->vx_ops[i].vo_punch ? "vol_punch"
							: "vol_write");
	}
	vol_txn_end(&t);
	if (th->ct_ntxns && x->vx_delta < x[-1].vx_delta)
		cr_fail(th, 0, "delta went back");
	th->ct_ntxns++;
}

/* The model before the run's first transaction. */
static void cr_state_start(const struct cr_run *r, struct vm_state *s)
{
	if (r->cr_base)
		*s = *r->cr_base;
	else
		vm_state_init(s, CR_THREADS * CR_OWNERS, CR_BLOCKS, VOL_FIRST_OWNER);
}

/*
 * Read back a few of the thread's blocks: vol_read returns the newest
 * content, committed or not, whatever the commit thread is doing.
 */
static void cr_live_reads(struct cr_thread *th, void *buf, void *want)
{
	struct vol *v = th->ct_run->cr_vol;

	for (unsigned i = 0; i < CR_LIVE_READS && !th->ct_err; i++) {
		uint32_t o = th->ct_id * CR_OWNERS + (uint32_t)prng_below(&th->ct_rng, CR_OWNERS);
		uint32_t b = (uint32_t)prng_below(&th->ct_rng, CR_BLOCKS);
		int err = vol_read(v, th->ct_now.vs_owner_id[o], b, buf);

		vm_fill(want, CR_BS, th->ct_now.vs_tag[o][b]);
		if (err)
			cr_fail(th, err, "vol_read");
		else if (memcmp(buf, want, CR_BS))
			cr_fail(th, 0, "vol_read returned other data than the thread last wrote");
	}
}

static void cr_sync(struct cr_thread *th)
{
	struct cr_run *r = th->ct_run;
	struct cr_sync *s = &th->ct_syncs[th->ct_nsyncs];
	int err = vol_sync(r->cr_vol);

	pthread_mutex_lock(&r->cr_lock);
	th->ct_in_sync = false;
	pthread_cond_broadcast(&r->cr_cond);
	pthread_mutex_unlock(&r->cr_lock);
	if (err) {
		cr_fail(th, err, "vol_sync");
		return;
	}
	s->cs_delta = vol_committed_delta(r->cr_vol);
	s->cs_writes = bdev_emu_history_writes(r->cr_dev);
	s->cs_flushes = bdev_emu_history_flushes(r->cr_dev);
	if (th->ct_ntxns && s->cs_delta < th->ct_txns[th->ct_ntxns - 1].vx_delta)
		cr_fail(th, 0, "vol_sync returned before the last transaction's delta committed");
	s->cs_delta = MAX(s->cs_delta, th->ct_ntxns ? th->ct_txns[th->ct_ntxns - 1].vx_delta : 0);
	th->ct_nsyncs++;
}

/* Deterministic schedule: wait for this thread's turn; false if the schedule broke down. */
static bool cr_turn_wait(struct cr_thread *th)
{
	struct cr_run *r = th->ct_run;
	bool go;

	pthread_mutex_lock(&r->cr_lock);
	while (r->cr_turn != (int)th->ct_id && !r->cr_abort)
		pthread_cond_wait(&r->cr_cond, &r->cr_lock);
	go = !r->cr_abort;
	pthread_mutex_unlock(&r->cr_lock);
	return go;
}

static void cr_turn_yield(struct cr_thread *th, bool syncing)
{
	struct cr_run *r = th->ct_run;

	pthread_mutex_lock(&r->cr_lock);
	r->cr_turn = -1;
	r->cr_yielded = true;
	r->cr_syncing = syncing;
	r->cr_turns++;
	th->ct_in_sync = syncing;
	pthread_cond_broadcast(&r->cr_cond);
	pthread_mutex_unlock(&r->cr_lock);
}

static void *cr_thread_run(void *arg)
{
	struct cr_thread *th = arg;
	bool det = th->ct_run->cr_sched == CR_SCHED_DET;
	void *buf = malloc(CR_BS), *want = malloc(CR_BS);

	assert_true(buf && want);
	cr_state_start(th->ct_run, &th->ct_now);
	for (uint32_t i = 0; i < th->ct_run->cr_txns; i++) {
		bool sync;

		if (det && !cr_turn_wait(th)) {
			cr_fail(th, 0, "the schedule stopped (see above)");
			break;
		}
		if (!th->ct_err) {
			cr_txn(th, buf);
			if (th->ct_full)
				break;
			vm_txn_apply(&th->ct_now, &th->ct_txns[th->ct_ntxns - 1]);
			cr_live_reads(th, buf, want);
		}
		sync = prng_chance(&th->ct_rng, 1, det ? CR_SYNC_ONE_IN : CR_FREE_SYNC_ONE_IN) &&
		       !th->ct_err;
		if (det)
			cr_turn_yield(th, sync);
		if (sync)
			cr_sync(th);
	}
	free(want);
	free(buf);
	return NULL;
}

/* Seconds to wait for a commit a sync asked for, stretched like the watchdogs. */
static unsigned cr_commit_timeout(void)
{
	const char *e = getenv("CAIRN_WATCHDOG_SCALE");

	return CR_HOLD_TIMEOUT_S * (e && atoi(e) > 0 ? (unsigned)atoi(e) : 1);
}

/*
 * Wait until commit @c is parked at its hold point, or has ended if it is
 * not held; false if that did not happen in time (a sync that starts no
 * commit). Until then no turn is given, so what the front end does
 * during a hold, and so every fork it makes there, is fixed by the seed.
 */
static bool cr_schedule_wait_commit(struct cr_run *r, uint64_t c)
{
	struct timespec deadline;
	bool ok = true;

	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += cr_commit_timeout();
	pthread_mutex_lock(&r->cr_lock);
	r->cr_sched_wait = c;
	pthread_cond_broadcast(&r->cr_cond);
	while (r->cr_parked != c && r->cr_commits_ended < c && ok)
		ok = !pthread_cond_timedwait(&r->cr_cond, &r->cr_lock, &deadline);
	r->cr_sched_wait = 0;
	pthread_mutex_unlock(&r->cr_lock);
	return ok;
}

/*
 * A held commit must let go when the schedule cannot go on without it:
 * the scheduler waits for a later commit, the turn's thread is in a sync
 * that waits for this commit, or no turn is left. Each is a point of the
 * seeded schedule, not of timing.
 */
static bool cr_hold_stalled_locked(const struct cr_run *r)
{
	const struct cr_thread *th = r->cr_turn >= 0 ? &r->cr_th[r->cr_turn] : NULL;

	if (r->cr_finished || r->cr_short || r->cr_sched_wait > r->cr_parked)
		return true;
	return th && th->ct_in_sync && th->ct_sync_commit >= r->cr_parked;
}

static void cr_hold_wait_locked(struct cr_run *r)
{
	uint64_t until = r->cr_turns + r->cr_hold_turns, forks = syncpoint_arrived(CR_FORK_POINT);
	struct timespec deadline;

	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += cr_commit_timeout();
	r->cr_held = true;
	r->cr_holds++;
	r->cr_parked = r->cr_commit_no;
	r->cr_hold_until = until;
	pthread_cond_broadcast(&r->cr_cond);
	while (r->cr_turns < until && !cr_hold_stalled_locked(r)) {
		if (pthread_cond_timedwait(&r->cr_cond, &r->cr_lock, &deadline)) {
			r->cr_hold_timeouts++;
			break;
		}
	}
	/* the commit thread is stopped here: only the front end forks */
	r->cr_hold_forks[r->cr_hold] += syncpoint_arrived(CR_FORK_POINT) - forks;
	r->cr_parked = 0;
	pthread_cond_broadcast(&r->cr_cond);
}

/*
 * Interleaving-point callback on the commit thread: at each commit's
 * start draw (seeded by the commit's number) where to hold it and for how
 * many turns, and hold it there; count commits that end.
 */
static void cr_hold_point(const char *point, void *arg)
{
	struct cr_run *r = arg;

	pthread_mutex_lock(&r->cr_lock);
	if (!strcmp(point, CR_COMMIT_BEGIN)) {
		struct prng p;

		prng_init(&p, r->cr_seed ^ (++r->cr_commit_no << 20));
		r->cr_hold = (int)prng_below(&p, CR_NHOLDS);
		r->cr_hold_turns = 1 + prng_below(&p, 3);
		r->cr_held = false;
	}
	if (!strcmp(point, CR_RESERVE_SHORT)) {
		r->cr_short++; /* the turn waits for a commit: let any hold go */
		pthread_cond_broadcast(&r->cr_cond);
	} else if (!strcmp(point, CR_COMMIT_END)) {
		r->cr_commits_ended++;
		pthread_cond_broadcast(&r->cr_cond);
	} else if (r->cr_hold != CR_HOLD_NONE && !r->cr_held &&
		   !strcmp(point, cr_hold_points[r->cr_hold])) {
		cr_hold_wait_locked(r);
	}
	pthread_mutex_unlock(&r->cr_lock);
}

/*
 * The deterministic schedule: give turns in a seeded order; after a turn
 * whose thread syncs (asking for commit c), give no turn until commit c
 * is parked at its hold point or, unheld, has ended; and once a parked
 * commit's turns are done, none until it went on.
 */
static void cr_schedule(struct cr_run *r)
{
	uint32_t n = CR_THREADS * r->cr_txns, *order = malloc(n * sizeof(*order));
	uint64_t commits = 0;
	struct prng rng;
	bool syncing;

	assert_non_null(order);
	prng_init(&rng, r->cr_seed ^ 0x5c4ed);
	for (uint32_t i = 0; i < n; i++)
		order[i] = i % CR_THREADS;
	for (uint32_t i = n; i > 1; i--) {
		uint32_t j = (uint32_t)prng_below(&rng, i), t = order[i - 1];

		order[i - 1] = order[j];
		order[j] = t;
	}
	for (uint32_t i = 0; i < n; i++) {
		pthread_mutex_lock(&r->cr_lock);
		/* a hold whose turns are done: let the commit go on before the next turn */
		while (r->cr_parked && r->cr_turns >= r->cr_hold_until)
			pthread_cond_wait(&r->cr_cond, &r->cr_lock);
		r->cr_turn = (int)order[i];
		r->cr_yielded = false;
		pthread_cond_broadcast(&r->cr_cond);
		while (!r->cr_yielded)
			pthread_cond_wait(&r->cr_cond, &r->cr_lock);
		syncing = r->cr_syncing;
		if (syncing)
			r->cr_th[order[i]].ct_sync_commit = ++commits;
		pthread_mutex_unlock(&r->cr_lock);
		if (syncing && !cr_schedule_wait_commit(r, commits)) {
			print_message("# %s: turn %u: a vol_sync started no commit in %u s\n",
				      r->cr_name, i, cr_commit_timeout());
			break;
		}
	}
	pthread_mutex_lock(&r->cr_lock);
	r->cr_abort = r->cr_turns < n;
	r->cr_finished = true;
	pthread_cond_broadcast(&r->cr_cond);
	pthread_mutex_unlock(&r->cr_lock);
	free(order);
}

/* How many operations the device recorded so far. */
static uint64_t cr_records(struct cr_run *r)
{
	struct bdev_emu_record rec;
	uint64_t n = 0;

	while (!bdev_emu_record(r->cr_dev, n, &rec))
		n++;
	return n;
}

/*
 * Writes a cut at history flush @f finds unflushed (those since flush
 * f-1), and the records of the first and the last of them.
 */
static uint64_t cr_flush_unflushed(struct cr_run *r, uint64_t f, struct bdev_emu_record *first,
				   struct bdev_emu_record *last)
{
	struct bdev_emu_record rec;
	uint64_t flushes = 0, writes = 0;

	for (uint64_t i = r->cr_rec0; !bdev_emu_record(r->cr_dev, i, &rec); i++) {
		if (rec.er_op == BDEV_EMU_WRITE) {
			if (!writes++)
				*first = rec;
			*last = rec;
		} else if (++flushes == f) {
			return writes;
		} else {
			writes = 0;
		}
	}
	return 0;
}

/*
 * A fresh volume on an emulated device, history on from vol_open's end;
 * or, for a run on a recovered volume (cr_vol set), just the history.
 */
static void cr_volume(struct cr_run *r)
{
	static const uint8_t uuid[16] = "cairn-crash-test";
	struct vol_mkfs_opts mo = {
	    .vmo_log = {.lfo_block_size = CR_BS, .lfo_seg_blocks = CR_SEG_BLOCKS, .lfo_uuid = uuid},
	};
	struct vol_open_opts oo = {.voo_checkpoint_every = r->cr_cp_every};

	if (r->cr_vol) {
		r->cr_nblocks = bdev_nblocks(r->cr_dev);
		r->cr_rec0 = cr_records(r);
		bdev_emu_keep_history(r->cr_dev);
		r->cr_delta0 = vol_committed_delta(r->cr_vol);
		return;
	}
	if (r->cr_sched == CR_SCHED_DET) {
		oo.voo_max_dirty = 1u << 30; /* deltas close at syncs only */
		oo.voo_max_age_ms = 3600u * 1000;
	} else {
		oo.voo_max_dirty = 4;
		oo.voo_max_age_ms = 5;
	}
	if (!r->cr_nblocks)
		r->cr_nblocks = r->cr_sched == CR_SCHED_FREE ? CR_FREE_NBLOCKS : CR_NBLOCKS;
	assert_int_equal(bdev_emu_open(CR_BS, r->cr_nblocks, &r->cr_dev), 0);
	assert_int_equal(vol_mkfs(r->cr_dev, &mo), 0);
	/* vol_open takes the device over; it stays valid until vol_close */
	assert_int_equal(vol_open(r->cr_dev, &oo, &r->cr_vol), 0);
	r->cr_rec0 = cr_records(r);
	bdev_emu_keep_history(r->cr_dev);
	r->cr_delta0 = vol_committed_delta(r->cr_vol);
}

/*
 * A digest of the device's write and flush records (where each write
 * went, how long it was, where the flushes fell): what decides every
 * crash case. The deterministic schedule must reproduce it exactly; the
 * bytes may differ (mkfs's time, and the order of blocks inside a delta's
 * log, which follows the order the commit meets dirty buffers in).
 */
static uint64_t cr_records_digest(struct cr_run *r)
{
	struct bdev_emu_record rec;
	uint64_t h = 0xcbf29ce484222325ull;

	for (uint64_t i = 0; !bdev_emu_record(r->cr_dev, i, &rec); i++) {
		uint64_t v[3] = {rec.er_op, rec.er_blk, rec.er_count};

		for (unsigned k = 0; k < 3; k++)
			h = (h ^ v[k]) * 0x100000001b3ull;
	}
	return h;
}

/* Start the run's threads (and arm the holds of the deterministic schedule). */
static void cr_threads_start(struct cr_run *r, pthread_t *t)
{
	pthread_mutex_init(&r->cr_lock, NULL);
	pthread_cond_init(&r->cr_cond, NULL);
	r->cr_turn = -1;
	syncpoint_enable(); /* counts forks; the deterministic schedule also waits on points */
	r->cr_forks = syncpoint_arrived(CR_FORK_POINT); /* the count before */
	if (r->cr_sched == CR_SCHED_DET) {
		for (unsigned h = CR_HOLD_BEGIN; h < CR_NHOLDS; h++)
			syncpoint_callback(cr_hold_points[h], cr_hold_point, r);
		syncpoint_callback(CR_COMMIT_END, cr_hold_point, r);
		syncpoint_callback(CR_RESERVE_SHORT, cr_hold_point, r);
	}
	for (uint32_t i = 0; i < CR_THREADS; i++) {
		struct cr_thread *th = &r->cr_th[i];

		th->ct_run = r;
		th->ct_id = i;
		prng_init(&th->ct_rng, r->cr_seed * 31 + i + 1);
		th->ct_txns = calloc(r->cr_txns, sizeof(*th->ct_txns));
		th->ct_syncs = calloc(r->cr_txns, sizeof(*th->ct_syncs));
		assert_true(th->ct_txns && th->ct_syncs);
		test_thread_start(&t[i], cr_thread_run, th);
	}
}

/* After the threads: their errors, the newest delta joined, a last sync. */
static void cr_threads_done(struct cr_run *r)
{
	r->cr_max_delta = r->cr_delta0;
	for (uint32_t i = 0; i < CR_THREADS; i++) {
		struct cr_thread *th = &r->cr_th[i];

		if (th->ct_err) {
			cr_log_show();
			fail_msg("workload: %s", th->ct_why);
		}
		if (th->ct_ntxns)
			r->cr_max_delta =
			    MAX(r->cr_max_delta, th->ct_txns[th->ct_ntxns - 1].vx_delta);
	}
	/* everything ended: a last sync, so the end state is promised too */
	assert_int_equal(vol_sync(r->cr_vol), 0);
	r->cr_final.cs_delta = vol_committed_delta(r->cr_vol);
	r->cr_final.cs_writes = bdev_emu_history_writes(r->cr_dev);
	r->cr_final.cs_flushes = bdev_emu_history_flushes(r->cr_dev);
	r->cr_writes = r->cr_final.cs_writes;
	r->cr_flushes = r->cr_final.cs_flushes;
}

static void cr_workload_report(struct cr_run *r)
{
	struct log_space sp;
	unsigned full = 0, txns = 0;

	for (uint32_t i = 0; i < CR_THREADS; i++) {
		full += r->cr_th[i].ct_full;
		txns += r->cr_th[i].ct_ntxns;
	}
	if (full)
		print_message(
		    "# %s: the volume filled up (no cleaner yet): %u threads stopped early\n",
		    r->cr_name, full);
	vol_space(r->cr_vol, &sp);
	print_message("# %s: %u transactions in %" PRIu64 " ms, deltas %u..%u, %" PRIu64
		      " commits held (forks while held: %" PRIu64 " at begin, %" PRIu64
		      " after take), %" PRIu64 " forks, %" PRIu64 " device writes and %" PRIu64
		      " flushes, %" PRIu64 " of %" PRIu64 " blocks written, records %016" PRIx64
		      "\n",
		      r->cr_name, txns, r->cr_ms, r->cr_delta0, r->cr_max_delta, r->cr_holds,
		      r->cr_hold_forks[CR_HOLD_BEGIN], r->cr_hold_forks[CR_HOLD_TAKEN], r->cr_forks,
		      r->cr_writes, r->cr_flushes, sp.sp_written, sp.sp_total, r->cr_digest);
}

/* Run the workload of @r on its volume (a fresh one unless cr_vol is set), and record it. */
static void cr_workload(struct cr_run *r)
{
	pthread_t t[CR_THREADS];
	struct timespec t0, t1;

	cr_volume(r);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	cr_threads_start(r, t);
	if (r->cr_sched == CR_SCHED_DET)
		cr_schedule(r);
	for (uint32_t i = 0; i < CR_THREADS; i++)
		test_thread_join(t[i]);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	r->cr_ms = (uint64_t)((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000);
	cr_threads_done(r);
	r->cr_forks = syncpoint_arrived(CR_FORK_POINT) - r->cr_forks;
	syncpoint_reset(); /* no holds for the recoveries */
	if (r->cr_sched == CR_SCHED_DET && r->cr_short)
		fail_msg("%s: %" PRIu64 " reservations forced a commit: the device (%" PRIu64
			 " blocks) is too small for a deterministic run",
			 r->cr_name, r->cr_short, r->cr_nblocks);
	assert_int_equal(r->cr_hold_timeouts, 0);
	r->cr_digest = cr_records_digest(r);
	cr_workload_report(r);
}

static void cr_run_free(struct cr_run *r)
{
	assert_int_equal(vol_close(r->cr_vol), 0); /* closes the device and its history */
	for (uint32_t i = 0; i < CR_THREADS; i++) {
		free(r->cr_th[i].ct_txns);
		free(r->cr_th[i].ct_syncs);
	}
	pthread_mutex_destroy(&r->cr_lock);
	pthread_cond_destroy(&r->cr_cond);
}

/* ---- one crash case ------------------------------------------------------------ */

/*
 * A crash case: power goes when device write cc_cut is issued, or (with
 * cc_flush) while flush cc_cut is in progress (bdev_emu_crash_at_flush:
 * the writes just before it are unflushed, the commit's exposed moment).
 * Written "cut=<n>" and "cut=f<n>".
 */
struct cr_case {
	uint64_t cc_cut;
	bool cc_flush;
	enum bdev_emu_crash_mode cc_mode;
	bool cc_tear;
	uint32_t cc_var; /* another draw of the same case ("var=<n>"; 0: none) */
};

static uint64_t cr_case_seed(const struct cr_run *r, const struct cr_case *c)
{
	struct prng p;

	prng_init(&p, r->cr_seed ^ (c->cc_cut << 8) ^ ((uint64_t)c->cc_flush << 4) ^
			  ((uint64_t)c->cc_mode << 2) ^ c->cc_tear ^ ((uint64_t)c->cc_var << 40));
	return prng_next(&p);
}

/*
 * Did sync @s return before cut @c? Before write n was issued, if the
 * device had issued fewer than n writes when it returned (its flush came
 * before write n); before flush f began, if fewer than f flushes had
 * completed then.
 */
static bool cr_sync_before(const struct cr_sync *s, const struct cr_case *c)
{
	return c->cc_flush ? s->cs_flushes < c->cc_cut : s->cs_writes < c->cc_cut;
}

/* The newest delta a sync promised before cut @c. */
static uint32_t cr_promised(const struct cr_run *r, const struct cr_case *c)
{
	uint32_t d = cr_sync_before(&r->cr_final, c) ? r->cr_final.cs_delta : r->cr_delta0;

	for (uint32_t i = 0; i < CR_THREADS; i++) {
		const struct cr_thread *th = &r->cr_th[i];

		for (uint32_t s = 0; s < th->ct_nsyncs; s++) {
			if (cr_sync_before(&th->ct_syncs[s], c))
				d = MAX(d, th->ct_syncs[s].cs_delta);
		}
	}
	return d;
}

/* vol_check's report: keep the first problem (200 bytes at @arg). */
static void cr_check_report(void *arg, const char *msg)
{
	char *first = arg;

	if (!first[0])
		snprintf(first, 200, "%s", msg);
}

/*
 * Check the recovered volume @v against the model, then its maps with
 * vol_check; *why says what is wrong.
 */
static bool cr_case_check(const struct cr_run *r, struct vol *v, const struct cr_case *c, char *why,
			  size_t len)
{
	uint32_t rd = vol_committed_delta(v), promised = cr_promised(r, c);
	const struct cr_thread *th;
	struct vm_report rep;
	struct vm_state s;
	char hist[200];

	if (rd < promised || rd > r->cr_max_delta) {
		snprintf(why, len, "recovered delta %u, want %u..%u (a sync promised %u)", rd,
			 promised, r->cr_max_delta, promised);
		return false;
	}
	cr_state_start(r, &s);
	for (uint32_t i = 0; i < CR_THREADS; i++)
		vm_state_apply(&s, r->cr_th[i].ct_txns, r->cr_th[i].ct_ntxns, rd);
	if (vm_check(v, &s, &rep)) {
		char first[200] = "";
		int problems = vol_check(v, cr_check_report, first, NULL);

		if (!problems)
			return true;
		snprintf(why, len, "at delta %u: vol_check: %d (problems, or an error); first: %s",
			 rd, problems, first);
		return false;
	}
	th = &r->cr_th[rep.vr_first_owner / CR_OWNERS];
	vm_block_history(th->ct_txns, th->ct_ntxns, rep.vr_first_owner, rep.vr_first_block, hist,
			 sizeof(hist));
	snprintf(why, len,
		 "at delta %u: %" PRIu64 " wrong, %" PRIu64 " errors of %" PRIu64
		 " blocks; first: %s; its writes (thread %u): %s",
		 rd, rep.vr_wrong, rep.vr_errors, rep.vr_checked, rep.vr_first, th->ct_id, hist);
	return false;
}

/* "cut=f5 mode=reorder tear=1", with @sfx after each name (the double crash's "2"). */
static void cr_case_str(const struct cr_case *c, const char *sfx, char *buf, size_t len)
{
	int n = snprintf(buf, len, "cut%s=%s%" PRIu64 " mode%s=%s tear%s=%d", sfx,
			 c->cc_flush ? "f" : "", c->cc_cut, sfx, cr_mode_names[c->cc_mode], sfx,
			 c->cc_tear);

	if (c->cc_var && n > 0 && (size_t)n < len)
		snprintf(buf + n, len - (size_t)n, " var%s=%u", sfx, c->cc_var);
}

static struct bdev *cr_case_image(const struct cr_run *r, const struct cr_case *c)
{
	struct bdev_emu_crash how = {
	    .ec_mode = c->cc_mode, .ec_tear = c->cc_tear, .ec_seed = cr_case_seed(r, c)};
	struct bdev *img = NULL;

	if (c->cc_flush)
		assert_int_equal(bdev_emu_crash_at_flush(r->cr_dev, c->cc_cut, &how, &img), 0);
	else
		assert_int_equal(bdev_emu_crash_at(r->cr_dev, c->cc_cut, &how, &img), 0);
	return img;
}

/* Case @c as a piece of a file name: "-f5-reorder-1", "-var3" if it has one. */
static void cr_case_file(const struct cr_case *c, char *buf, size_t len)
{
	int n = snprintf(buf, len, "-%s%" PRIu64 "-%s-%d", c->cc_flush ? "f" : "", c->cc_cut,
			 cr_mode_names[c->cc_mode], c->cc_tear);

	if (c->cc_var && n > 0 && (size_t)n < len)
		snprintf(buf + n, len - (size_t)n, "-var%u", c->cc_var);
}

/* Keep the image of a failing case (built again: it is deterministic). */
static void cr_case_save(const struct cr_run *r, const struct cr_case *c)
{
	struct bdev *img = cr_case_image(r, c);
	char path[240], first[60] = "", this[60];

	if (r->cr_first) {
		cr_case_file(r->cr_first, first, sizeof(first) - 6);
		strcat(first, "-then");
	}
	cr_case_file(c, this, sizeof(this));
	snprintf(path, sizeof(path), "/tmp/cairn-crash-%" PRIu64 "%s%s.img", r->cr_seed, first,
		 this);
	if (!bdev_save(img, path))
		print_message("#   image before recovery: %s\n", path);
	bdev_close(img);
}

/*
 * Recover the image of case @c with options @oo and check it: true, and
 * the open volume in *v and its device in *img; or false and *why says
 * what is wrong (nothing left open).
 */
static bool cr_case_recover_open(const struct cr_run *r, const struct cr_case *c,
				 const struct vol_open_opts *oo, struct vol **v, struct bdev **img,
				 char *why, size_t len)
{
	int err;

	*img = cr_case_image(r, c);
	err = vol_open(*img, oo, v);
	if (err) {
		snprintf(why, len, "vol_open failed: %d", err);
		bdev_close(*img); /* a failed vol_open leaves the device to its caller */
		return false;
	}
	if (cr_case_check(r, *v, c, why, len))
		return true;
	vol_close(*v);
	return false;
}

/* Recover the image of case @c and check it; *why says what is wrong. */
static bool cr_case_recover(const struct cr_run *r, const struct cr_case *c, char *why, size_t len)
{
	struct vol_open_opts oo = {0};
	struct bdev *img;
	struct vol *v;
	int err;

	if (!cr_case_recover_open(r, c, &oo, &v, &img, why, len))
		return false;
	err = vol_close(v);
	if (err)
		snprintf(why, len, "vol_close of the recovered volume failed: %d", err);
	return !err;
}

static void cr_case_report(const struct cr_run *r, const struct cr_case *c, const char *why);

/* Run one case; false (and a replay line) if it fails. */
static bool cr_case_run(const struct cr_run *r, const struct cr_case *c)
{
	char why[600];

	if (cr_case_recover(r, c, why, sizeof(why)))
		return true;
	cr_case_report(r, c, why);
	return false;
}

/* Print the replay line of failed case @c, why it failed, and keep its image. */
static void cr_case_report(const struct cr_run *r, const struct cr_case *c, const char *why)
{
	char first[80] = "", this[80];

	if (r->cr_first)
		cr_case_str(r->cr_first, "", first, sizeof(first));
	cr_case_str(c, r->cr_first ? "2" : "", this, sizeof(this));
	print_message("crash case: CAIRN_SEED=%" PRIu64 " %s%s%s\n", r->cr_seed, first,
		      r->cr_first ? " " : "", this);
	print_message("#   %s: %s\n", r->cr_name, why);
	if (r->cr_sched == CR_SCHED_FREE)
		print_message("#   free schedule: a replay reruns the same operations, not "
			      "necessarily the same history\n");
	cr_case_save(r, c);
	cr_log_show();
}

/* ---- choosing cases -------------------------------------------------------------- */

/* The environment variable CAIRN_CRASH_<what><sfx>. */
static const char *cr_env(const char *what, const char *sfx)
{
	char name[64];

	snprintf(name, sizeof(name), "CAIRN_CRASH_%s%s", what, sfx);
	return getenv(name);
}

/* CAIRN_CRASH_MODE<sfx> as a mode (a name or its number), -1 if unset. */
static int cr_env_mode(const char *sfx)
{
	const char *e = cr_env("MODE", sfx);

	if (!e || !*e)
		return -1;
	for (unsigned m = 0; m < ARRAY_SIZE(cr_mode_names); m++) {
		if (!strcmp(e, cr_mode_names[m]))
			return (int)m;
	}
	if (e[0] >= '0' && e[0] <= '3' && !e[1])
		return e[0] - '0';
	fail_msg("CAIRN_CRASH_MODE=%s: want keep_all, drop_all, drop_some or reorder", e);
	return -1;
}

static uint64_t cr_env_u64(const char *name, uint64_t fallback)
{
	const char *e = getenv(name);

	return e && *e ? strtoull(e, NULL, 0) : fallback;
}

/*
 * The one case the environment asks for, if it does: CAIRN_CRASH_CUT,
 * _MODE, _TEAR (with @sfx "2": the double crash's second case).
 */
static bool cr_env_case(const char *sfx, enum bdev_emu_crash_mode mode, bool tear,
			struct cr_case *c)
{
	const char *cut = cr_env("CUT", sfx), *t = cr_env("TEAR", sfx);
	int m = cr_env_mode(sfx);

	c->cc_flush = cut && cut[0] == 'f';
	c->cc_cut = cut ? strtoull(cut + c->cc_flush, NULL, 0) : 0;
	c->cc_mode = m >= 0 ? (enum bdev_emu_crash_mode)m : mode;
	c->cc_tear = t && *t ? strtoull(t, NULL, 0) != 0 : tear;
	c->cc_var = (uint32_t)strtoull(cr_env("VAR", sfx) ? cr_env("VAR", sfx) : "0", NULL, 0);
	return c->cc_cut != 0;
}

/* How many random cases: CAIRN_CRASH_CASES, else 200 (50 in sanitizer builds). */
static uint64_t cr_cases(void)
{
	bool slow = getenv("CAIRN_WATCHDOG_SCALE") != NULL;

	return cr_env_u64("CAIRN_CRASH_CASES", slow ? 50 : 200);
}

/* Run the cases of @c[0..n); fails the test after the first few failures. */
static void cr_cases_run(struct cr_run *r, const struct cr_case *c, uint64_t n)
{
	unsigned failed = 0;
	uint64_t ran = 0;

	for (uint64_t i = 0; i < n && failed < CR_MAX_REPORTS; i++) {
		if (c[i].cc_cut > (c[i].cc_flush ? r->cr_flushes : r->cr_writes + 1)) {
			print_message("# cut %s%" PRIu64 " is past this run's %" PRIu64
				      " writes and %" PRIu64 " flushes: skipped\n",
				      c[i].cc_flush ? "f" : "", c[i].cc_cut, r->cr_writes,
				      r->cr_flushes);
			continue;
		}
		failed += !cr_case_run(r, &c[i]);
		ran++;
	}
	print_message("# %s: %" PRIu64 " crash cases, %u failed\n", r->cr_name, ran, failed);
	if (failed)
		fail_msg("%s: %u crash case(s) failed (see the replay lines above)", r->cr_name,
			 failed);
}

/* ---- the tests --------------------------------------------------------------------- */

/*
 * Run a workload of seed @seed, @txns per thread (@nblocks device
 * blocks; 0: the default), to crash.
 */
static void cr_setup_seeded(struct cr_run *r, const char *name, uint64_t seed, enum cr_sched sched,
			    uint32_t txns, uint32_t cp_every, uint64_t nblocks)
{
	memset(r, 0, sizeof(*r));
	r->cr_name = name;
	r->cr_seed = seed;
	r->cr_sched = sched;
	r->cr_txns = txns;
	r->cr_cp_every = cp_every;
	r->cr_nblocks = nblocks;
	cairn_log_set_sink(cr_log_sink, NULL);
	cr_workload(r);
	/*
	 * The deterministic schedule exists to force forks, among them of
	 * buffers the commit had already taken: if it no longer does (an
	 * interleaving point renamed?), the test has lost its point. Any
	 * seed must hold commits; the default seed must also fork after a
	 * take (another seed's small run may draw no such fork).
	 */
	if (sched == CR_SCHED_DET &&
	    (!r->cr_holds || (r->cr_seed == CR_SEED && !r->cr_hold_forks[CR_HOLD_TAKEN])))
		fail_msg("%s: %" PRIu64 " commits held, %" PRIu64
			 " forks after a take: the schedule "
			 "no longer forces them (interleaving points %s, %s?)",
			 name, r->cr_holds, r->cr_hold_forks[CR_HOLD_TAKEN],
			 cr_hold_points[CR_HOLD_BEGIN], cr_hold_points[CR_HOLD_TAKEN]);
}

/* The same with the seed of the run (CAIRN_SEED, else CR_SEED). */
static void cr_setup(struct cr_run *r, const char *name, enum cr_sched sched, uint32_t txns,
		     uint32_t cp_every, uint64_t nblocks)
{
	cr_setup_seeded(r, name, test_seed("vol crash", CR_SEED), sched, txns, cp_every, nblocks);
}

static void cr_teardown(struct cr_run *r)
{
	cr_run_free(r);
	cairn_log_set_sink(NULL, NULL);
}

/*
 * Every cut of @r (each write, after the last write, each flush) in each
 * of the @nmodes modes of @modes; or the one case CAIRN_CRASH_CUT<sfx>
 * asks for. *n cases in a calloc()ed array.
 */
static struct cr_case *cr_every_cut(const struct cr_run *r, const char *sfx,
				    const struct cr_case *modes, size_t nmodes, uint64_t *n)
{
	uint64_t cuts = r->cr_writes + 1 + r->cr_flushes;
	struct cr_case *c = calloc(cuts * nmodes + 1, sizeof(*c));

	assert_non_null(c);
	*n = 0;
	if (cr_env_case(sfx, modes[0].cc_mode, modes[0].cc_tear, &c[0])) {
		*n = 1;
		return c;
	}
	for (uint64_t k = 0; k < cuts; k++) {
		bool flush = k > r->cr_writes;

		for (size_t m = 0; m < nmodes; m++) {
			c[*n] = modes[m];
			c[*n].cc_cut = flush ? k - r->cr_writes : k + 1;
			c[*n].cc_flush = flush;
			(*n)++;
		}
	}
	return c;
}

/*
 * Every cut (write and flush) of a small deterministic run: DROP_ALL,
 * KEEP_ALL, a seeded DROP_SOME, and KEEP_ALL with a seeded torn write.
 */
static void test_vol_crash_every_cut(void **state)
{
	/* and KEEP_ALL with one write torn: what checksums are for */
	static const struct cr_case modes[] = {{.cc_mode = BDEV_EMU_DROP_ALL, .cc_tear = false},
					       {.cc_mode = BDEV_EMU_KEEP_ALL, .cc_tear = false},
					       {.cc_mode = BDEV_EMU_DROP_SOME, .cc_tear = false},
					       {.cc_mode = BDEV_EMU_KEEP_ALL, .cc_tear = true}};
	struct cr_case *c;
	struct cr_run r;
	uint64_t n;

	(void)state;
	test_needs_syncpoints();
	test_watchdog("vol_crash_every_cut", 120);
	cr_setup(&r, "every cut", CR_SCHED_DET, 32, 3, 0);
	c = cr_every_cut(&r, "", modes, ARRAY_SIZE(modes), &n);
	cr_cases_run(&r, c, n);
	free(c);
	cr_teardown(&r);
}

/*
 * Two deterministic runs of one seed: the same deltas, the same holds and
 * forks made while commits were held, the same device writes and flushes.
 */
static void test_vol_crash_deterministic(void **state)
{
	struct cr_run *a = calloc(2, sizeof(*a)), *b = a + 1;

	(void)state;
	assert_non_null(a);
	test_needs_syncpoints();
	test_watchdog("vol_crash_deterministic", 120);
	cr_setup(a, "first run", CR_SCHED_DET, 32, 3, 0);
	cr_setup(b, "second run", CR_SCHED_DET, 32, 3, 0);
	for (uint32_t i = 0; i < CR_THREADS; i++) {
		for (uint32_t x = 0; x < a->cr_th[i].ct_ntxns; x++) {
			if (a->cr_th[i].ct_txns[x].vx_delta != b->cr_th[i].ct_txns[x].vx_delta)
				fail_msg("thread %u txn %u joined delta %u, then %u", i, x,
					 a->cr_th[i].ct_txns[x].vx_delta,
					 b->cr_th[i].ct_txns[x].vx_delta);
		}
	}
	assert_int_equal(a->cr_writes, b->cr_writes);
	assert_int_equal(a->cr_flushes, b->cr_flushes);
	assert_int_equal(a->cr_holds, b->cr_holds);
	for (unsigned h = 0; h < CR_NHOLDS; h++)
		assert_int_equal(a->cr_hold_forks[h], b->cr_hold_forks[h]);
	if (a->cr_digest != b->cr_digest)
		fail_msg("same seed, other device writes: %016" PRIx64 " then %016" PRIx64,
			 a->cr_digest, b->cr_digest);
	cr_teardown(b);
	cr_teardown(a);
	free(a);
}

/* Does @img hold write @w as @all (every write landed) does and @none does not? */
static bool cr_write_landed(struct bdev *img, struct bdev *all, struct bdev *none,
			    const struct bdev_emu_record *w)
{
	size_t len = (size_t)w->er_count * CR_BS;
	unsigned char *a = malloc(len), *b = malloc(len), *c = malloc(len);
	bool landed;

	assert_true(a && b && c);
	assert_int_equal(bdev_read(img, w->er_blk, w->er_count, a), 0);
	assert_int_equal(bdev_read(all, w->er_blk, w->er_count, b), 0);
	assert_int_equal(bdev_read(none, w->er_blk, w->er_count, c), 0);
	landed = !memcmp(a, b, len) && memcmp(b, c, len);
	free(a);
	free(b);
	free(c);
	return landed;
}

/*
 * The unflushed writes of flush cut f: the first and the last, and the
 * images with all of them kept and all dropped.
 */
struct cr_tail {
	struct bdev_emu_record ct_w1, ct_wn;
	struct bdev *ct_all, *ct_none;
};

/* Set @t up for flush cut @f; false (nothing to close) if fewer than 2 writes are unflushed. */
static bool cr_tail_open(struct cr_run *r, uint64_t f, struct cr_tail *t)
{
	struct cr_case all = {f, true, BDEV_EMU_KEEP_ALL, false, 0};
	struct cr_case none = {f, true, BDEV_EMU_DROP_ALL, false, 0};

	if (cr_flush_unflushed(r, f, &t->ct_w1, &t->ct_wn) < 2)
		return false;
	t->ct_all = cr_case_image(r, &all);
	t->ct_none = cr_case_image(r, &none);
	return true;
}

static void cr_tail_close(struct cr_tail *t)
{
	bdev_close(t->ct_none);
	bdev_close(t->ct_all);
}

/*
 * Does case @c (of @t's flush cut) leave a stale tail: the first of the
 * unflushed writes not landed and the last landed? A delta's later log
 * on disk without the earlier one, what the log chain must not follow
 * into once the space before it is written again.
 */
static bool cr_tail_stale(struct cr_run *r, const struct cr_tail *t, const struct cr_case *c)
{
	struct bdev *img = cr_case_image(r, c);
	bool stale = !cr_write_landed(img, t->ct_all, t->ct_none, &t->ct_w1) &&
		     cr_write_landed(img, t->ct_all, t->ct_none, &t->ct_wn);

	bdev_close(img);
	return stale;
}

/*
 * A draw (cc_var) of DROP_SOME at flush cut @f that leaves a stale tail
 * (cr_tail_stale), in *c. False if none of a few does.
 */
static bool cr_stale_tail_case(struct cr_run *r, uint64_t f, struct cr_case *c)
{
	struct cr_tail t;
	bool found = false;

	if (!cr_tail_open(r, f, &t))
		return false;
	for (uint32_t var = 1; var <= 32 && !found; var++) {
		*c = (struct cr_case){f, true, BDEV_EMU_DROP_SOME, false, var};
		found = cr_tail_stale(r, &t, c);
	}
	cr_tail_close(&t);
	return found;
}

/* Does flush cut @c leave a stale tail (cr_tail_stale)? */
static bool cr_case_stale_tail(struct cr_run *r, const struct cr_case *c)
{
	struct cr_tail t;
	bool stale;

	if (!c->cc_flush || !cr_tail_open(r, c->cc_cut, &t))
		return false;
	stale = cr_tail_stale(r, &t, c);
	cr_tail_close(&t);
	return stale;
}

/*
 * First crashes for the double crash: flush cuts at which a delta's
 * later log lands without an earlier one (cr_stale_tail_case). Or the
 * one CAIRN_CRASH_CUT asks for. At most @max.
 */
static uint64_t cr_first_crashes(struct cr_run *r, struct cr_case *c, uint64_t max)
{
	uint64_t n = 0;

	if (cr_env_case("", BDEV_EMU_DROP_SOME, false, &c[0]))
		return 1;
	for (uint64_t f = 1; f <= r->cr_flushes && n < max; f++)
		if (cr_stale_tail_case(r, f, &c[n])) {
			print_message("# first crash: CAIRN_CRASH_CUT=f%" PRIu64
				      " CAIRN_CRASH_MODE=drop_some CAIRN_CRASH_TEAR=0 "
				      "CAIRN_CRASH_VAR=%" PRIu32 "\n",
				      c[n].cc_cut, c[n].cc_var);
			n++;
		}
	return n;
}

/*
 * After the first crash @c1 of @a: recover, check, run a second
 * deterministic workload on the recovered volume, and check every cut
 * of that run (or only @c2, if not NULL) against the first run's model
 * at the recovered delta followed by the second run's transactions.
 */
static void cr_crash_again(struct cr_run *a, const struct cr_case *c1, const struct cr_case *c2)
{
	static const struct cr_case modes[] = {{.cc_mode = BDEV_EMU_DROP_ALL, .cc_tear = false},
					       {.cc_mode = BDEV_EMU_KEEP_ALL, .cc_tear = false},
					       {.cc_mode = BDEV_EMU_DROP_SOME, .cc_tear = false},
					       {.cc_mode = BDEV_EMU_KEEP_ALL, .cc_tear = true}};
	struct vol_open_opts oo = {
	    .voo_max_dirty = 1u << 30, .voo_max_age_ms = 3600u * 1000, .voo_checkpoint_every = 3};
	struct cr_run *b = calloc(1, sizeof(*b));
	struct vm_state base;
	struct cr_case *c;
	char why[600];
	uint64_t n;

	assert_non_null(b);
	if (!cr_case_recover_open(a, c1, &oo, &b->cr_vol, &b->cr_dev, why, sizeof(why))) {
		cr_case_report(a, c1, why);
		fail_msg("%s: the first crash failed already", a->cr_name);
	}
	cr_state_start(a, &base);
	for (uint32_t i = 0; i < CR_THREADS; i++)
		vm_state_apply(&base, a->cr_th[i].ct_txns, a->cr_th[i].ct_ntxns,
			       vol_committed_delta(b->cr_vol));
	b->cr_name = "after a crash";
	b->cr_seed = a->cr_seed;
	b->cr_sched = CR_SCHED_DET;
	b->cr_txns = 12;
	b->cr_cp_every = 3;
	b->cr_base = &base;
	b->cr_first = c1;
	b->cr_tag_base = CR_THREADS;
	cr_workload(b);
	if (c2) {
		if (c2->cc_cut > (c2->cc_flush ? b->cr_flushes : b->cr_writes + 1))
			fail_msg("%s: second cut %s%" PRIu64 " is past the run's %" PRIu64
				 " writes and %" PRIu64 " flushes (the schedule changed?)",
				 b->cr_name, c2->cc_flush ? "f" : "", c2->cc_cut, b->cr_writes,
				 b->cr_flushes);
		cr_cases_run(b, c2, 1);
	} else {
		c = cr_every_cut(b, "2", modes, ARRAY_SIZE(modes), &n);
		cr_cases_run(b, c, n);
		free(c);
	}
	cr_run_free(b);
	free(b);
}

/* Crash, recover, write over what the crash left, crash again: stale logs. */
static void test_vol_crash_twice(void **state)
{
	bool slow = getenv("CAIRN_WATCHDOG_SCALE") != NULL;
	uint64_t max = cr_env_u64("CAIRN_CRASH_TWICE", slow ? 2 : 8), n;
	struct cr_case *first;
	struct cr_run r;

	(void)state;
	test_needs_syncpoints();
	test_watchdog("vol_crash_twice", 120 + (unsigned)max * 20);
	cr_setup(&r, "first of two", CR_SCHED_DET, 32, 3, CR_TWICE_NBLOCKS);
	first = calloc(max + 1, sizeof(*first));
	assert_non_null(first);
	n = cr_first_crashes(&r, first, max);
	assert_true(n > 0);
	for (uint64_t i = 0; i < n; i++)
		cr_crash_again(&r, &first[i], NULL);
	free(first);
	cr_teardown(&r);
}

/*
 * Double crashes that once failed: a seed's first run (as in
 * test_vol_crash_twice), its first crash, and the one second crash that
 * showed the bug. Replay one with its line, e.g. CAIRN_SEED=10
 * CAIRN_CRASH_CUT=f14 CAIRN_CRASH_MODE=drop_some CAIRN_CRASH_TEAR=0
 * CAIRN_CRASH_VAR=7 CAIRN_CRASH_CUT2=2 CAIRN_CRASH_MODE2=keep_all
 * CAIRN_CRASH_TEAR2=0.
 */
struct cr_twice_case {
	uint64_t ct_seed;
	struct cr_case ct_first, ct_second;
};

/*
 * The first crash leaves a delta's second log (from the first run)
 * without its first; after recovery the second run writes that delta's
 * first log in the same place with the same header, other content, and
 * the power goes before (cut=2) or while (cut=f1, its second log
 * dropped) that log's delta is flushed. Until logs carried their mount's
 * nonce (format version 2), a new log with the lost one's summary had
 * its summary checksum, and recovery followed the old second log into a
 * delta that never existed; the old second log must still be refused.
 * The first crash is the first such flush cut of seed 10 (f6 until the
 * segment usage file added blocks to each commit, f14 since).
 */
static const struct cr_twice_case cr_twice_regressions[] = {
    {10, {14, true, BDEV_EMU_DROP_SOME, false, 7}, {2, false, BDEV_EMU_KEEP_ALL, false, 0}},
    {10, {14, true, BDEV_EMU_DROP_SOME, false, 7}, {1, true, BDEV_EMU_DROP_SOME, false, 2}},
};

static void test_vol_crash_twice_regressions(void **state)
{
	struct cr_run *r = calloc(1, sizeof(*r));

	(void)state;
	assert_non_null(r);
	test_needs_syncpoints();
	test_watchdog("vol_crash_twice_regressions", 120);
	for (size_t i = 0; i < ARRAY_SIZE(cr_twice_regressions); i++) {
		const struct cr_twice_case *t = &cr_twice_regressions[i];

		cr_setup_seeded(r, "first of two (regression)", t->ct_seed, CR_SCHED_DET, 32, 3,
				CR_TWICE_NBLOCKS);
		/* a first crash that no longer leaves a stale tail tests nothing */
		if (!cr_case_stale_tail(r, &t->ct_first))
			fail_msg("regression %zu (CAIRN_SEED=%" PRIu64
				 "): its first crash no longer leaves a delta's later log without "
				 "the earlier one (the schedule changed?): find another with "
				 "CAIRN_SEED=<n> CAIRN_CRASH_TWICE=64",
				 i, t->ct_seed);
		cr_crash_again(r, &t->ct_first, &t->ct_second);
		cr_teardown(r);
	}
	free(r);
}

/* @n seeded random cut points of @r, REORDER with a torn write. */
static struct cr_case *cr_random_cases(const struct cr_run *r, uint64_t *n)
{
	struct cr_case *c;
	struct prng rng;

	*n = cr_cases();
	c = calloc(*n + 1, sizeof(*c));
	assert_non_null(c);
	if (cr_env_case("", BDEV_EMU_REORDER, true, &c[0])) {
		*n = 1;
		return c;
	}
	prng_init(&rng, r->cr_seed ^ 0xc075);
	for (uint64_t i = 0; i < *n; i++) {
		uint64_t k = prng_below(&rng, r->cr_writes + 1 + r->cr_flushes);
		bool flush = k > r->cr_writes;

		c[i] = (struct cr_case){.cc_cut = flush ? k - r->cr_writes : k + 1,
					.cc_flush = flush,
					.cc_mode = BDEV_EMU_REORDER,
					.cc_tear = true};
	}
	return c;
}

static void cr_random(const char *name, enum cr_sched sched, uint32_t txns, uint32_t cp_every,
		      uint64_t nblocks)
{
	struct cr_case *c;
	struct cr_run r;
	uint64_t n;

	cr_setup(&r, name, sched, txns, cp_every, nblocks);
	c = cr_random_cases(&r, &n);
	cr_cases_run(&r, c, n);
	free(c);
	cr_teardown(&r);
}

/* Random cut points of a larger deterministic run, reordered and torn. */
static void test_vol_crash_random(void **state)
{
	(void)state;
	test_needs_syncpoints();
	test_watchdog("vol_crash_random", 600);
	cr_random("random cuts", CR_SCHED_DET, 64, 7, CR_BIG_NBLOCKS);
}

/* Random cut points of a free-running run (the pipeline commits on its own too). */
static void test_vol_crash_free(void **state)
{
	(void)state;
	test_watchdog("vol_crash_free", 600);
	cr_random("free run", CR_SCHED_FREE, 160, 0, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_vol_crash_deterministic),
	    cmocka_unit_test(test_vol_crash_every_cut),
	    cmocka_unit_test(test_vol_crash_random),
	    cmocka_unit_test(test_vol_crash_free),
	    cmocka_unit_test(test_vol_crash_twice),
	    cmocka_unit_test(test_vol_crash_twice_regressions),
	};
	return TEST_RUN("vol_crash", tests);
}

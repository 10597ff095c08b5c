/*
 * test_vol_corrupt.c - recovery from a damaged image: no crash, no hang,
 * no silent lie where a checksum covers the data.
 *
 * A single-threaded seeded workload builds a volume of about CO_DELTAS
 * deltas (a vol_sync after every few transactions), and the image is
 * taken while the volume is still open, so recovery both starts from a
 * checkpoint and rolls forward over logs after it. Two of the owners are
 * written in the first half only: their map blocks stay in logs before
 * the last checkpoint, which recovery does not verify, so damage there
 * reaches the volume's own checks of the addresses it reads. Each case then damages
 * a copy of that image, seeded: flips bits in random blocks, zeroes
 * random blocks, truncates the device (a copy into a shorter emulated
 * device), flips bits in the on-disk structs that open blocks with a
 * "CAIRN" magic (superblocks, checkpoint slots, log headers), or several
 * of these. Blocks are picked mostly among those the
 * run wrote, so the damage lands in superblocks, checkpoint slots, log
 * headers, summaries, map blocks and data; half the flipped bits are
 * address bits of a nonzero word, as a damaged map entry would have.
 *
 * vol_open must then either fail with a negative errno after logging why
 * (an error or warning line), or succeed with a delta R the run committed,
 * after which every block read must return an error or the model's data
 * at R. One exception: a block whose last write came before the newest
 * checkpoint lies in a log that recovery does not verify (only the
 * checkpoint's log and those after it are checked), and nothing checks
 * its bytes later, so damage there may read back wrong; such a case only
 * must not crash or hang, and is counted as "uncovered". Damage only to
 * blocks the run never wrote, or to one of the two superblocks, or to one
 * of the two checkpoint slots, must change nothing: R is the last delta
 * and every block is right (the other copy serves; the older checkpoint
 * rolls forward over logs that nothing has reused yet).
 *
 * CAIRN_CORRUPT_CASES=N runs N cases (default 200); a failure prints
 * "corrupt case: CAIRN_SEED=<seed> case=<i>", and CAIRN_CORRUPT_CASE=<i>
 * runs only that case.
 */
#include "harness.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bdev/bdev.h"
#include "vol/vol.h"
#include "vol_model.h"

#define CO_BS	      4096u
#define CO_SEG_BLOCKS 64u
#define CO_NBLOCKS    2048u /* 8 MiB: the run never fills it, so nothing cleans */
#define CO_OWNERS     4u
#define CO_COLD	      2u /* owners 0..CO_COLD-1 are written in the first half only */
#define CO_BLOCKS     24u
/* Block b of an owner is its block b * CO_STRIDE: more than a map block's 512
 * entries apart, so each has a map block of its own to damage. */
#define CO_STRIDE      601u
#define CO_DELTAS      20u
#define CO_TXNS	       (4u * CO_DELTAS) /* the most transactions the run records */
#define CO_SEED	       20240602u
#define CO_MAX_REPORTS 10u

enum co_kind { CO_FLIP, CO_ZERO, CO_TRUNCATE, CO_MIXED, CO_HEADER, CO_NKINDS };
static const char *const co_kind_names[] = {"flip", "zero", "truncate", "mixed", "header"};
#define CO_HDR_BYTES   160 /* the on-disk structs at a block's start are shorter */
#define CO_STRUCT_LOGS 8   /* log headers test_vol_corrupt_structs damages every byte of */

/* The run, and what each block of its image is. */
struct co_run {
	uint64_t co_seed;
	struct bdev *co_image;	 /* the volume, open, after the run */
	uint32_t co_delta_first; /* committed after mkfs */
	uint32_t co_delta_last;	 /* committed at the end */
	struct vm_txn co_txns[CO_TXNS];
	uint32_t co_ntxns;
	int64_t co_last_write[CO_NBLOCKS]; /* record index of a block's last write; -1: never */
	int64_t co_last_cp;		   /* record index of the last checkpoint slot write */
	uint64_t co_hdr[CO_NBLOCKS];	   /* blocks that open with a "CAIRN" magic */
	uint64_t co_nhdr;
};

/* What one case did to the image. */
struct co_damage {
	enum co_kind cd_kind;
	uint64_t cd_nblocks; /* the damaged device's size */
	uint64_t cd_blk[8];  /* blocks flipped or zeroed */
	unsigned cd_n;
	bool cd_uncovered; /* some damage is where no checksum looks */
	bool cd_exact;	   /* recovery must find the last delta, every block right:
			      the damage is where the run never wrote, or on one
			      of two superblocks, one of two checkpoint slots */
};

/* ---- log lines ------------------------------------------------------------------- */

static struct {
	pthread_mutex_t cl_lock;
	char cl_last[200];   /* protected by cl_lock */
	unsigned cl_serious; /* errors and warnings; protected by cl_lock */
} co_log = {.cl_lock = PTHREAD_MUTEX_INITIALIZER};

static void co_log_sink(enum log_level level, const char *line, void *arg)
{
	(void)arg;
	pthread_mutex_lock(&co_log.cl_lock);
	if (level <= LOG_WARN) {
		co_log.cl_serious++;
		snprintf(co_log.cl_last, sizeof(co_log.cl_last), "%s", line);
	}
	pthread_mutex_unlock(&co_log.cl_lock);
}

static void co_log_reset(void)
{
	pthread_mutex_lock(&co_log.cl_lock);
	co_log.cl_serious = 0;
	co_log.cl_last[0] = 0;
	pthread_mutex_unlock(&co_log.cl_lock);
}

/* ---- the run --------------------------------------------------------------------- */

/*
 * One transaction, on any owner while @all, else only on the hot owners
 * (the others' map blocks then stay in logs before the last checkpoint).
 */
static void co_txn(struct co_run *r, struct vol *v, struct prng *rng, bool all, void *buf)
{
	struct vm_txn *x = &r->co_txns[r->co_ntxns];
	struct vol_txn t;

	x->vx_nops = 1 + (uint32_t)prng_below(rng, VM_TXN_OPS);
	assert_int_equal(vol_txn_begin(v, x->vx_nops, 0, &t), 0);
	x->vx_delta = t.vt_op.dop_delta;
	for (uint32_t i = 0; i < x->vx_nops; i++) {
		struct vm_op *op = &x->vx_ops[i];
		uint64_t owner;

		op->vo_owner = all ? (uint32_t)prng_below(rng, CO_OWNERS)
				   : CO_COLD + (uint32_t)prng_below(rng, CO_OWNERS - CO_COLD);
		op->vo_index = (uint32_t)prng_below(rng, CO_BLOCKS);
		op->vo_punch = prng_chance(rng, 1, 8);
		op->vo_trunc = false;
		owner = VOL_FIRST_OWNER + op->vo_owner;
		if (op->vo_punch) {
			assert_int_equal(vol_punch(&t, owner, op->vo_index * CO_STRIDE), 0);
			continue;
		}
		op->vo_tag = vm_tag(0, r->co_ntxns, op->vo_owner, op->vo_index);
		vm_fill(buf, CO_BS, op->vo_tag);
		assert_int_equal(vol_write(&t, owner, op->vo_index * CO_STRIDE, buf), 0);
	}
	vol_txn_end(&t);
	r->co_ntxns++;
}

/* Which record wrote each block last, and which wrote the last checkpoint slot. */
static void co_classify(struct co_run *r, struct bdev *d)
{
	struct bdev_emu_record rec;

	for (unsigned b = 0; b < CO_NBLOCKS; b++)
		r->co_last_write[b] = -1;
	r->co_last_cp = -1;
	for (uint64_t i = 0; !bdev_emu_record(d, i, &rec); i++) {
		if (rec.er_op != BDEV_EMU_WRITE)
			continue;
		for (uint64_t b = rec.er_blk; b < rec.er_blk + rec.er_count; b++)
			r->co_last_write[b] = (int64_t)i;
		if (rec.er_blk == 1 || rec.er_blk == 2) /* checkpoint slots (FORMAT.md) */
			r->co_last_cp = (int64_t)i;
	}
}

/* List the blocks of the image that open with a "CAIRN" magic. */
static void co_find_headers(struct co_run *r)
{
	unsigned char *buf = malloc(CO_BS);

	assert_non_null(buf);
	r->co_nhdr = 0;
	for (uint64_t b = 0; b < CO_NBLOCKS; b++) {
		assert_int_equal(bdev_read(r->co_image, b, 1, buf), 0);
		if (!memcmp(buf, "CAIRN", 5))
			r->co_hdr[r->co_nhdr++] = b;
	}
	free(buf);
	assert_true(r->co_nhdr > 4); /* two superblocks, two slots, logs */
}

static void co_build(struct co_run *r)
{
	static const uint8_t uuid[16] = "cairn-corrupt-ts";
	struct vol_mkfs_opts mo = {
	    .vmo_log = {.lfo_block_size = CO_BS, .lfo_seg_blocks = CO_SEG_BLOCKS, .lfo_uuid = uuid},
	};
	/* no commit but the run's: the cleaner waits for a full volume, and
	 * the run never fills this one */
	struct vol_open_opts oo = {.voo_max_dirty = 1u << 30,
				   .voo_max_age_ms = 3600u * 1000,
				   .voo_checkpoint_every = 8,
				   .voo_clean_low = 1,
				   .voo_clean_high = 1};
	struct bdev_emu_crash keep = {.ec_mode = BDEV_EMU_KEEP_ALL};
	void *buf = malloc(CO_BS);
	struct prng rng;
	struct bdev *d;
	struct vol *v;

	assert_non_null(buf);
	memset(r, 0, sizeof(*r));
	r->co_seed = test_seed("vol corrupt", CO_SEED);
	prng_init(&rng, r->co_seed);
	assert_int_equal(bdev_emu_open(CO_BS, CO_NBLOCKS, &d), 0);
	assert_int_equal(vol_mkfs(d, &mo), 0);
	assert_int_equal(vol_open(d, &oo, &v), 0);
	r->co_delta_first = vol_committed_delta(v);
	for (unsigned i = 0; i < CO_DELTAS; i++) {
		unsigned n = 1 + (unsigned)prng_below(&rng, 4);

		for (unsigned j = 0; j < n; j++)
			co_txn(r, v, &rng, i < CO_DELTAS / 2, buf);
		assert_int_equal(vol_sync(v), 0);
	}
	r->co_delta_last = vol_committed_delta(v);
	co_classify(r, d);
	assert_int_equal(bdev_emu_crash(d, &keep, &r->co_image), 0);
	co_find_headers(r);
	vol_close(v);
	free(buf);
	print_message("# corrupt: deltas %u..%u, %u transactions\n", r->co_delta_first,
		      r->co_delta_last, r->co_ntxns);
}

/* ---- damage ---------------------------------------------------------------------- */

/* A block to damage: mostly one the run wrote. */
static uint64_t co_pick(const struct co_run *r, struct prng *rng)
{
	uint64_t b = prng_below(rng, CO_NBLOCKS);

	if (prng_chance(rng, 1, 8))
		return b;
	for (unsigned tries = 0; tries < 256 && r->co_last_write[b] < 0; tries++)
		b = prng_below(rng, CO_NBLOCKS);
	return b;
}

/* Is damage to @b outside every checksum recovery checks? */
static bool co_uncovered(const struct co_run *r, uint64_t b)
{
	if (b <= 2 || b == CO_NBLOCKS - 1)
		return false; /* superblocks and checkpoint slots are checksummed */
	return r->co_last_write[b] >= 0 && r->co_last_write[b] < r->co_last_cp;
}

static void co_note(const struct co_run *r, struct co_damage *dm, uint64_t b)
{
	if (dm->cd_n < ARRAY_SIZE(dm->cd_blk))
		dm->cd_blk[dm->cd_n++] = b;
	dm->cd_uncovered |= co_uncovered(r, b);
}

/* Is the damage of @dm such that nothing may change (cd_exact)? */
static bool co_exact(const struct co_run *r, const struct co_damage *dm)
{
	bool sb[2] = {false, false}, cp[2] = {false, false};

	if (dm->cd_nblocks != CO_NBLOCKS)
		return false; /* the second superblock is gone */
	for (unsigned i = 0; i < dm->cd_n; i++) {
		uint64_t b = dm->cd_blk[i];

		if (b == 0 || b == CO_NBLOCKS - 1)
			sb[b != 0] = true;
		else if (b == 1 || b == 2)
			cp[b - 1] = true; /* checkpoint slots: FORMAT.md */
		else if (r->co_last_write[b] >= 0)
			return false;
	}
	return !(sb[0] && sb[1]) && !(cp[0] && cp[1]);
}

/*
 * A bit of block @buf to flip: anywhere, or half the time one of bits
 * 16..55 of a nonzero little-endian word, as a block address in a map
 * block or the owner table would be (so that it points far away).
 */
static uint64_t co_flip_bit(const unsigned char *buf, struct prng *rng)
{
	uint64_t word = prng_below(rng, CO_BS / 8), w;

	if (prng_chance(rng, 1, 2))
		return prng_below(rng, CO_BS * 8);
	for (unsigned tries = 0; tries < 64; tries++) {
		memcpy(&w, buf + word * 8, sizeof(w));
		if (w)
			break;
		word = prng_below(rng, CO_BS / 8);
	}
	return word * 64 + 16 + prng_below(rng, 40);
}

static void co_flip(const struct co_run *r, struct bdev *d, struct prng *rng, struct co_damage *dm)
{
	unsigned char *buf = malloc(CO_BS);
	uint64_t b = co_pick(r, rng);
	unsigned flips = 1 + (unsigned)prng_below(rng, 8);

	assert_non_null(buf);
	assert_int_equal(bdev_read(d, b, 1, buf), 0);
	for (unsigned i = 0; i < flips; i++) {
		uint64_t bit = co_flip_bit(buf, rng);

		buf[bit / 8] ^= (unsigned char)(1u << (bit % 8));
	}
	assert_int_equal(bdev_write(d, b, 1, buf), 0);
	co_note(r, dm, b);
	free(buf);
}

static void co_zero(const struct co_run *r, struct bdev *d, struct prng *rng, struct co_damage *dm)
{
	unsigned char *buf = calloc(1, CO_BS);
	uint64_t b = co_pick(r, rng);

	assert_non_null(buf);
	assert_int_equal(bdev_write(d, b, 1, buf), 0);
	co_note(r, dm, b);
	free(buf);
}

/*
 * Flip 1..4 bits in the on-disk struct at the start of a block that holds
 * one (a superblock, a checkpoint slot, a log header: they open with a
 * "CAIRN" magic): the fields recovery reads first.
 */
static void co_flip_header(const struct co_run *r, struct bdev *d, uint64_t b, struct prng *rng,
			   struct co_damage *dm)
{
	unsigned char *buf = malloc(CO_BS);
	unsigned flips = 1 + (unsigned)prng_below(rng, 4);

	assert_non_null(buf);
	assert_int_equal(bdev_read(d, b, 1, buf), 0);
	for (unsigned i = 0; i < flips; i++) {
		uint64_t bit = prng_below(rng, CO_HDR_BYTES * 8);

		buf[bit / 8] ^= (unsigned char)(1u << (bit % 8));
	}
	assert_int_equal(bdev_write(d, b, 1, buf), 0);
	co_note(r, dm, b);
	free(buf);
}

/* A copy of the first @n blocks of @src on a new emulated device. */
static struct bdev *co_truncated(struct bdev *src, uint64_t n)
{
	unsigned char *buf = malloc(n * CO_BS);
	struct bdev *d;

	assert_non_null(buf);
	assert_int_equal(bdev_emu_open(CO_BS, n, &d), 0);
	assert_int_equal(bdev_read(src, 0, (uint32_t)n, buf), 0);
	assert_int_equal(bdev_write(d, 0, (uint32_t)n, buf), 0);
	assert_int_equal(bdev_flush(d), 0);
	free(buf);
	return d;
}

/* The damaged image of case @i, described in @dm. */
static struct bdev *co_damage(const struct co_run *r, uint64_t i, struct co_damage *dm)
{
	uint64_t redundant = 0; /* 1 + the one fixed block a header case damages */
	struct prng rng;
	struct bdev *d;
	unsigned n;

	prng_init(&rng, r->co_seed * 1000003 + i);
	memset(dm, 0, sizeof(*dm));
	dm->cd_kind = (enum co_kind)prng_below(&rng, CO_NKINDS);
	dm->cd_nblocks = CO_NBLOCKS;
	assert_int_equal(bdev_emu_open_copy(r->co_image, &d), 0);
	n = 1 + (unsigned)prng_below(&rng, 3);
	if (dm->cd_kind == CO_HEADER && prng_chance(&rng, 1, 2)) {
		/* one of the redundant blocks only: a superblock or a checkpoint slot */
		static const uint64_t fixed[] = {0, CO_NBLOCKS - 1, 1, 2};

		redundant = 1 + fixed[prng_below(&rng, ARRAY_SIZE(fixed))];
		n = 1;
	}
	for (unsigned k = 0; k < n && dm->cd_kind != CO_TRUNCATE; k++) {
		if (dm->cd_kind == CO_HEADER && redundant)
			co_flip_header(r, d, redundant - 1, &rng, dm);
		else if (dm->cd_kind == CO_HEADER)
			co_flip_header(r, d, r->co_hdr[prng_below(&rng, r->co_nhdr)], &rng, dm);
		else if (dm->cd_kind == CO_FLIP ||
			 (dm->cd_kind == CO_MIXED && prng_chance(&rng, 1, 2)))
			co_flip(r, d, &rng, dm);
		else
			co_zero(r, d, &rng, dm);
	}
	if (dm->cd_kind == CO_TRUNCATE || (dm->cd_kind == CO_MIXED && prng_chance(&rng, 1, 3))) {
		struct bdev *t;

		dm->cd_nblocks = 1 + prng_below(&rng, CO_NBLOCKS - 1);
		t = co_truncated(d, dm->cd_nblocks);
		bdev_close(d);
		d = t;
	}
	dm->cd_exact = co_exact(r, dm);
	return d;
}

/* ---- one case -------------------------------------------------------------------- */

struct co_tally {
	unsigned ct_refused, ct_exact, ct_older, ct_read_errors, ct_uncovered;
};

/* Check a volume that opened; *why says what is wrong. */
static bool co_check_open(const struct co_run *r, struct vol *v, const struct co_damage *dm,
			  struct co_tally *t, char *why, size_t len)
{
	uint32_t rd = vol_committed_delta(v);
	struct vm_report rep;
	struct vm_state s;

	if (rd < r->co_delta_first || rd > r->co_delta_last) {
		snprintf(why, len, "recovered delta %u, the run committed %u..%u", rd,
			 r->co_delta_first, r->co_delta_last);
		return false;
	}
	if (dm->cd_exact && rd != r->co_delta_last) {
		snprintf(why, len,
			 "damage where nothing may change, yet recovered delta %u, not %u", rd,
			 r->co_delta_last);
		return false;
	}
	vm_state_init(&s, CO_OWNERS, CO_BLOCKS, VOL_FIRST_OWNER);
	s.vs_stride = CO_STRIDE;
	vm_state_apply(&s, r->co_txns, r->co_ntxns, rd);
	vm_check(v, &s, &rep);
	t->ct_exact += rd == r->co_delta_last;
	t->ct_older += rd != r->co_delta_last;
	t->ct_read_errors += rep.vr_errors > 0;
	if (!rep.vr_wrong && !(rep.vr_errors && dm->cd_exact))
		return true;
	if (rep.vr_wrong && dm->cd_uncovered && !dm->cd_exact) {
		t->ct_uncovered++;
		return true;
	}
	snprintf(why, len, "at delta %u: %" PRIu64 " blocks wrong, %" PRIu64 " errors; first: %s",
		 rd, rep.vr_wrong, rep.vr_errors, rep.vr_first);
	return false;
}

/* Recover the damaged image @d (taken over) and check it; *why says what is wrong. */
static bool co_recover(const struct co_run *r, struct bdev *d, const struct co_damage *dm,
		       struct co_tally *t, char *why, size_t len)
{
	struct vol_open_opts oo = {0};
	struct vol *v;
	int err;

	why[0] = 0;
	co_log_reset();
	err = vol_open(d, &oo, &v);
	if (err) {
		bdev_close(d); /* a failed vol_open leaves the device to its caller */
		t->ct_refused++;
		if (err > 0 || dm->cd_exact)
			snprintf(why, len, "vol_open returned %d", err);
		else if (!co_log.cl_serious)
			snprintf(why, len, "vol_open failed (%d) without a log line", err);
	} else {
		co_check_open(r, v, dm, t, why, len);
		vol_close(v); /* may fail on a damaged device; must not crash */
	}
	return !why[0];
}

static void co_report(const struct co_damage *dm, const char *why)
{
	print_message("#   %s, %u block(s) (first %" PRIu64 "), device %" PRIu64 " blocks: %s\n",
		      co_kind_names[dm->cd_kind], dm->cd_n, dm->cd_n ? dm->cd_blk[0] : 0,
		      dm->cd_nblocks, why);
	if (co_log.cl_last[0])
		print_message("#   last log line: %s\n", co_log.cl_last);
}

static bool co_case(const struct co_run *r, uint64_t i, struct co_tally *t)
{
	struct co_damage dm;
	struct bdev *d = co_damage(r, i, &dm);
	char why[320];

	if (co_recover(r, d, &dm, t, why, sizeof(why)))
		return true;
	print_message("corrupt case: CAIRN_SEED=%" PRIu64 " case=%" PRIu64 "\n", r->co_seed, i);
	co_report(&dm, why);
	return false;
}

static void test_vol_corrupt(void **state)
{
	const char *one = getenv("CAIRN_CORRUPT_CASE");
	bool slow = getenv("CAIRN_WATCHDOG_SCALE") != NULL;
	uint64_t n = slow ? 100 : 200, first = 0;
	struct co_tally t = {0};
	struct co_run *r = calloc(1, sizeof(*r));
	unsigned failed = 0;

	(void)state;
	assert_non_null(r);
	if (getenv("CAIRN_CORRUPT_CASES"))
		n = strtoull(getenv("CAIRN_CORRUPT_CASES"), NULL, 0);
	if (one && *one) {
		first = strtoull(one, NULL, 0);
		n = 1;
	}
	test_watchdog("vol_corrupt", 120 + (unsigned)(n / 10));
	cairn_log_set_sink(co_log_sink, NULL);
	co_build(r);
	for (uint64_t i = first; i < first + n && failed < CO_MAX_REPORTS; i++)
		failed += !co_case(r, i, &t);
	cairn_log_set_sink(NULL, NULL);
	print_message("# corrupt: %" PRIu64 " cases: %u refused, %u recovered the last delta, %u "
		      "an older one, %u with read errors, %u read uncovered damage\n",
		      n, t.ct_refused, t.ct_exact, t.ct_older, t.ct_read_errors, t.ct_uncovered);
	bdev_close(r->co_image);
	free(r);
	if (failed)
		fail_msg("%u corrupt case(s) failed (see the replay lines above)", failed);
}

/* ---- every byte of the on-disk structs ---------------------------------------------- */

/* Invert byte @off of block @b of a copy of the image. */
static struct bdev *co_invert(const struct co_run *r, uint64_t b, unsigned off,
			      struct co_damage *dm)
{
	unsigned char *buf = malloc(CO_BS);
	struct bdev *d;

	assert_non_null(buf);
	assert_int_equal(bdev_emu_open_copy(r->co_image, &d), 0);
	assert_int_equal(bdev_read(d, b, 1, buf), 0);
	buf[off] ^= 0xff;
	assert_int_equal(bdev_write(d, b, 1, buf), 0);
	free(buf);
	memset(dm, 0, sizeof(*dm));
	dm->cd_kind = CO_HEADER;
	dm->cd_nblocks = CO_NBLOCKS;
	co_note(r, dm, b);
	dm->cd_exact = co_exact(r, dm);
	return d;
}

/* Every one of the first @bytes of block @b; returns the failures so far. */
static unsigned co_struct_bytes(const struct co_run *r, uint64_t b, unsigned bytes,
				struct co_tally *t, unsigned failed)
{
	struct co_damage dm;
	char why[320];

	for (unsigned off = 0; off < bytes && failed < CO_MAX_REPORTS; off++) {
		struct bdev *d = co_invert(r, b, off, &dm);

		if (co_recover(r, d, &dm, t, why, sizeof(why)))
			continue;
		print_message("corrupt struct: CAIRN_SEED=%" PRIu64 " block=%" PRIu64 " byte=%u\n",
			      r->co_seed, b, off);
		co_report(&dm, why);
		failed++;
	}
	return failed;
}

/*
 * Every byte of the structs recovery reads first, inverted in turn: both
 * superblocks and both checkpoint slots (each a redundant copy: nothing
 * may change), and the headers of the last CO_STRUCT_LOGS logs (a quarter
 * as many in sanitizer builds), those after the checkpoint among them
 * (recovery may stop before the damaged log, and must stay right).
 * Deterministic and exhaustive where random damage would rarely hit a
 * field. The byte counts bound the structs (FORMAT.md: superblock 152
 * bytes, checkpoint slot 88, log header 104).
 */
static void test_vol_corrupt_structs(void **state)
{
	static const uint64_t fixed[] = {0, CO_NBLOCKS - 1, 1, 2};
	static const unsigned fixed_bytes[] = {160, 160, 104, 104};
	uint64_t logs = 0, nlogs = CO_STRUCT_LOGS / (getenv("CAIRN_WATCHDOG_SCALE") ? 4 : 1);
	struct co_run *r = calloc(1, sizeof(*r));
	struct co_tally t = {0};
	unsigned failed = 0;

	(void)state;
	assert_non_null(r);
	test_watchdog("vol_corrupt_structs", 300);
	cairn_log_set_sink(co_log_sink, NULL);
	co_build(r);
	for (unsigned i = 0; i < ARRAY_SIZE(fixed); i++)
		failed = co_struct_bytes(r, fixed[i], fixed_bytes[i], &t, failed);
	for (uint64_t i = r->co_nhdr; i-- > 0 && logs < nlogs;) {
		uint64_t b = r->co_hdr[i];

		if (b <= 2 || b == CO_NBLOCKS - 1)
			continue;
		failed = co_struct_bytes(r, b, 112, &t, failed);
		logs++;
	}
	cairn_log_set_sink(NULL, NULL);
	print_message("# corrupt structs: %u blocks: %u refused, %u recovered the last delta, %u "
		      "an older one\n",
		      (unsigned)(ARRAY_SIZE(fixed) + logs), t.ct_refused, t.ct_exact, t.ct_older);
	bdev_close(r->co_image);
	free(r);
	if (failed)
		fail_msg("%u struct damage(s) failed (see above)", failed);
}

/* The undamaged image recovers the last delta exactly: the baseline of every case. */
static void test_vol_corrupt_baseline(void **state)
{
	struct co_run *r = calloc(1, sizeof(*r));
	struct vol_open_opts oo = {0};
	struct vm_report rep;
	struct vm_state s;
	struct bdev *d;
	struct vol *v;

	(void)state;
	assert_non_null(r);
	test_watchdog("vol_corrupt_baseline", 60);
	co_build(r);
	assert_int_equal(bdev_emu_open_copy(r->co_image, &d), 0);
	assert_int_equal(vol_open(d, &oo, &v), 0);
	assert_int_equal(vol_committed_delta(v), r->co_delta_last);
	vm_state_init(&s, CO_OWNERS, CO_BLOCKS, VOL_FIRST_OWNER);
	s.vs_stride = CO_STRIDE;
	vm_state_apply(&s, r->co_txns, r->co_ntxns, r->co_delta_last);
	if (!vm_check(v, &s, &rep))
		fail_msg("baseline: %s", rep.vr_first);
	assert_int_equal(vol_close(v), 0);
	bdev_close(r->co_image);
	free(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_vol_corrupt_baseline),
	    cmocka_unit_test(test_vol_corrupt),
	    cmocka_unit_test(test_vol_corrupt_structs),
	};
	return TEST_RUN("vol_corrupt", tests);
}

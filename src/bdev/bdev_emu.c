/*
 * bdev_emu.c - the emulated block device for crash and fault tests.
 *
 * The device holds one image of the disk and a list:
 *
 *   em_durable    what survives any power cut: every write that a
 *                 successful flush made durable;
 *   em_unflushed  every accepted write since the last flush, in order,
 *                 each with its sequence number and a copy of its data.
 *
 * Reads see em_durable with the unflushed writes that overlap them laid
 * over it, oldest first. (No second image of "current" content is kept:
 * the list is short, since a flush empties it, and a crash image is then
 * one copy of the disk, not two.)
 *
 * Every accepted write and flush is recorded (bdev_emu_record); reads are
 * counted. A power cut (bdev_emu_cut_now, or write number em_cut_at)
 * turns the device off for good. bdev_emu_crash() then builds, on a new
 * device, the image the next boot would find: em_durable plus a seeded
 * choice of the unflushed writes (all, none, a subset, a subset in
 * another order), one of which may be torn at a 512-byte sector.
 * Fault rules fail chosen operations with a chosen error while the
 * power is on.
 *
 * History (bdev_emu_keep_history) lets a test take every crash point of
 * one run instead of replaying the workload once per point: from the call
 * on, the device keeps the durable image of that moment (the base) and
 * every accepted write, data included, with the flushes between them.
 * bdev_emu_crash_at(n) rebuilds the durable image as it stood when write
 * n was issued (base, then every write made durable by the last flush
 * before it) and lands the writes still unflushed at that moment by the
 * same code, and the same PRNG draws, as bdev_emu_crash: so crash_at(n)
 * gives exactly what cut_after(n) then bdev_emu_crash would have given.
 * bdev_emu_crash_at_flush(f) is the cut while flush f was in progress:
 * the writes since flush f-1 are the unflushed ones. The two kinds of
 * cut together are every moment power can go: a cut at a write never
 * sees the writes just before a flush unflushed, the state a commit
 * ("write the log, flush") is most exposed in.
 * The history holds a copy of every byte written: it is for small test
 * devices and short workloads, and is freed only with the device.
 *
 *   power on --bdev_emu_cut_now()-----------------------> power off
 *            --write number em_cut_at (bdev_emu_cut_after)--^
 *   power off is sticky; bdev_emu_crash() returns a new device, power on.
 *
 * Invariants
 *   (1) A read returns em_durable with the writes on em_unflushed that
 *       overlap it applied oldest first.
 *   (2) em_unflushed holds es_unflushed writes with increasing ew_seq;
 *       ew_seq is the write's 1-based number among accepted writes, so
 *       the newest write has ew_seq == es_writes.
 *   (3) Once es_cut is set it stays set, and every read, write and flush
 *       returns -EIO without looking at fault rules or changing anything.
 *   (4) A refused operation (power off, fault rule, -ENOMEM) changes no
 *       image, record or stat; only fault rules count it.
 *   (5) em_records holds one record per accepted write and flush, in the
 *       order they were accepted.
 *   (6) Every choice of bdev_emu_crash() comes from one PRNG seeded with
 *       ec_seed and drawn in a fixed order: keep coins (oldest write
 *       first), shuffle, tear victim, tear point. The device's state and
 *       @how so determine the image exactly.
 *   (7) bdev_emu_crash(), bdev_emu_crash_at() and bdev_emu_open_copy()
 *       never change their source.
 *   (8) With history on, eh_writes holds, oldest first, the writes that
 *       were unflushed when it began (eh_first of them, not numbered)
 *       and then every accepted write; eh_flushes[i] is the number of
 *       eh_writes entries that flush i made durable (non-decreasing).
 *       Applying eh_writes[0..eh_flushes[last]) to eh_base gives
 *       em_durable, and all of them what reads see.
 *   (9) A struct emu_write is freed when it is neither on em_unflushed
 *       nor held by the history (ew_kept).
 *
 * Lock order: em_lock protects all emulated state and is a leaf: no
 * other lock is taken and nothing is waited for while it is held
 * (bdev_emu_crash allocates the new device before taking it, and
 * bdev_emu_open_copy holds no emu lock of its own while reading @src).
 * The interleaving points bdev.emu.{read,write,flush} are passed before
 * it is taken, so a test may stop a thread there.
 */
#include "bdev/bdev_internal.h"
#include "util/prng.h"
#include "util/syncpoint.h"
#include "util/util.h"

#include <stdlib.h>
#include <string.h>

#define EMU_COPY_CHUNK (1u << 20) /* bytes per read of bdev_emu_open_copy() */

/*
 * One accepted write, while it is not yet flushed or while the history
 * holds it (invariant 9); all of it protected by em_lock.
 */
struct emu_write {
	struct list_node ew_node; /* on em_unflushed while unflushed */
	uint64_t ew_seq;	  /* 1-based number among accepted writes */
	uint64_t ew_blk;
	uint32_t ew_count;
	bool ew_kept;		 /* held by the history (eh_writes) */
	unsigned char ew_data[]; /* ew_count blocks */
};

/* The write history (bdev_emu_keep_history); protected by em_lock. */
struct emu_history {
	unsigned char *eh_base;	      /* em_durable when the history began */
	struct emu_write **eh_writes; /* see invariant (8) */
	uint64_t eh_nwrites;
	uint64_t eh_writes_cap;
	uint64_t eh_first;    /* writes unflushed at the start (not numbered) */
	uint64_t *eh_flushes; /* per flush: eh_writes entries durable after it */
	uint64_t eh_nflushes;
	uint64_t eh_flushes_cap;
};

enum emu_fault_kind { EMU_FAULT_OP, EMU_FAULT_BLOCK };

/* One fault rule (bdev_emu_fail_op, bdev_emu_fail_block); protected by em_lock. */
struct emu_fault {
	struct list_node ef_node; /* on em_faults */
	enum emu_fault_kind ef_kind;
	enum bdev_emu_op ef_op;
	uint64_t ef_nth;  /* EMU_FAULT_OP: first failing op, 1-based */
	uint64_t ef_seen; /* EMU_FAULT_OP: ops of ef_op seen since set */
	uint64_t ef_blk;  /* EMU_FAULT_BLOCK: the block */
	uint32_t ef_left; /* failures left, unless ef_forever */
	bool ef_forever;
	int ef_err; /* negative errno */
};

struct bdev_emu {
	struct bdev em_bdev;
	struct cmutex em_lock;
	unsigned char *em_durable;	    /* protected by em_lock */
	struct list_node em_unflushed;	    /* emu_write, oldest first; protected by em_lock */
	struct list_node em_faults;	    /* emu_fault, in order set; protected by em_lock */
	struct bdev_emu_record *em_records; /* protected by em_lock */
	uint64_t em_nrecords;		    /* protected by em_lock */
	uint64_t em_records_cap;	    /* protected by em_lock */
	uint64_t em_cut_at;		    /* first refused write, 0: none; protected by em_lock */
	struct bdev_emu_stats em_stats;	    /* protected by em_lock */
	struct emu_history *em_history;	    /* NULL: off; protected by em_lock */
};

static const struct bdev_ops bdev_emu_ops;

static struct bdev_emu *bdev_to_emu(struct bdev *d)
{
	assert(d && d->bd_ops == &bdev_emu_ops);
	return container_of(d, struct bdev_emu, em_bdev);
}

/* ---- records, power and faults ---------------------------------------- */

/* Make room for one more record, so that appending cannot fail. */
static int emu_records_reserve_locked(struct bdev_emu *e)
{
	struct bdev_emu_record *r;
	uint64_t cap;

	assert(cmutex_held(&e->em_lock));
	if (e->em_nrecords < e->em_records_cap)
		return 0;
	cap = e->em_records_cap ? 2 * e->em_records_cap : 64;
	r = realloc(e->em_records, cap * sizeof(*r));
	if (!r)
		return -ENOMEM;
	e->em_records = r;
	e->em_records_cap = cap;
	return 0;
}

static void emu_record_add_locked(struct bdev_emu *e, enum bdev_emu_op op, uint64_t blk,
				  uint32_t count)
{
	struct bdev_emu_record *r;

	assert(cmutex_held(&e->em_lock));
	assert(e->em_nrecords < e->em_records_cap);
	r = &e->em_records[e->em_nrecords++];
	r->er_op = op;
	r->er_seq = e->em_stats.es_writes;
	r->er_blk = blk;
	r->er_count = count;
}

/* -EIO if the power is off, or goes off at this write (@op == write). */
static int emu_power_check_locked(struct bdev_emu *e, enum bdev_emu_op op)
{
	assert(cmutex_held(&e->em_lock));
	if (op == BDEV_EMU_WRITE && e->em_cut_at && e->em_stats.es_writes + 1 >= e->em_cut_at)
		e->em_stats.es_cut = true;
	return e->em_stats.es_cut ? -EIO : 0;
}

/* Does rule @f fail this operation? Counts the operation for @f. */
static bool emu_fault_matches(struct emu_fault *f, enum bdev_emu_op op, uint64_t blk,
			      uint32_t count)
{
	if (f->ef_op != op)
		return false;
	if (f->ef_kind == EMU_FAULT_OP)
		return ++f->ef_seen >= f->ef_nth;
	return op != BDEV_EMU_FLUSH && f->ef_blk >= blk && f->ef_blk - blk < count;
}

/*
 * Run the fault rules on an operation: every matching rule uses up one
 * failure (and is dropped when it has none left); the first matching
 * rule's error is returned, 0 if none matched.
 */
static int emu_faults_check_locked(struct bdev_emu *e, enum bdev_emu_op op, uint64_t blk,
				   uint32_t count)
{
	struct list_node *pos, *next;
	int err = 0;

	assert(cmutex_held(&e->em_lock));
	for (pos = e->em_faults.next; pos != &e->em_faults; pos = next) {
		struct emu_fault *f = container_of(pos, struct emu_fault, ef_node);

		next = pos->next;
		if (!emu_fault_matches(f, op, blk, count))
			continue;
		if (!err)
			err = f->ef_err;
		if (!f->ef_forever && --f->ef_left == 0) {
			list_del(&f->ef_node);
			free(f);
		}
	}
	return err;
}

static void emu_fault_add(struct bdev *d, struct emu_fault *f, uint32_t repeat, int err)
{
	struct bdev_emu *e = bdev_to_emu(d);

	list_init(&f->ef_node);
	f->ef_left = repeat;
	f->ef_forever = repeat == 0;
	f->ef_err = err > 0 ? -err : (err < 0 ? err : -EIO);
	cmutex_lock(&e->em_lock);
	list_add_tail(&e->em_faults, &f->ef_node);
	cmutex_unlock(&e->em_lock);
}

/* ---- history ----------------------------------------------------------- */

/* Grow the array *@arr of *@cap elements of @size bytes to hold @need. */
static int emu_array_reserve(void **arr, uint64_t *cap, uint64_t need, size_t size)
{
	uint64_t ncap = *cap ? *cap : 64;
	void *a;

	if (need <= *cap)
		return 0;
	while (ncap < need)
		ncap *= 2;
	a = realloc(*arr, ncap * size);
	if (!a)
		return -ENOMEM;
	*arr = a;
	*cap = ncap;
	return 0;
}

/* Make room in the history, if on, for one more @op, so that appending cannot fail. */
static int emu_history_reserve_locked(struct bdev_emu *e, enum bdev_emu_op op)
{
	struct emu_history *h = e->em_history;

	assert(cmutex_held(&e->em_lock));
	if (!h)
		return 0;
	if (op == BDEV_EMU_WRITE)
		return emu_array_reserve((void **)&h->eh_writes, &h->eh_writes_cap,
					 h->eh_nwrites + 1, sizeof(*h->eh_writes));
	return emu_array_reserve((void **)&h->eh_flushes, &h->eh_flushes_cap, h->eh_nflushes + 1,
				 sizeof(*h->eh_flushes));
}

/* Free @w unless it is still unflushed or held by the history (invariant 9). */
static void emu_write_release(struct emu_write *w)
{
	if (!w->ew_kept && !list_linked(&w->ew_node))
		free(w);
}

static void emu_history_free_locked(struct bdev_emu *e, struct emu_history *h)
{
	assert(cmutex_held(&e->em_lock));
	(void)e; /* only asserted on */
	if (!h)
		return;
	for (uint64_t i = 0; i < h->eh_nwrites; i++) {
		h->eh_writes[i]->ew_kept = false;
		emu_write_release(h->eh_writes[i]);
	}
	free(h->eh_writes);
	free(h->eh_flushes);
	free(h->eh_base);
	free(h);
}

/* ---- the device operations -------------------------------------------- */

static void emu_write_apply(unsigned char *image, const struct bdev *d, const struct emu_write *w,
			    size_t bytes)
{
	memcpy(image + bdev_bytes(d, w->ew_blk), w->ew_data, bytes);
}

/* What reads of blocks @blk..@blk+@count see: invariant (1). */
static void emu_read_locked(struct bdev_emu *e, uint64_t blk, uint32_t count, unsigned char *buf)
{
	const struct bdev *d = &e->em_bdev;
	struct list_node *pos;

	assert(cmutex_held(&e->em_lock));
	memcpy(buf, e->em_durable + bdev_bytes(d, blk), bdev_bytes(d, count));
	list_for_each(pos, &e->em_unflushed)
	{
		const struct emu_write *w = container_of(pos, struct emu_write, ew_node);
		uint64_t from = MAX(blk, w->ew_blk), to = MIN(blk + count, w->ew_blk + w->ew_count);

		if (from < to)
			memcpy(buf + bdev_bytes(d, from - blk),
			       w->ew_data + bdev_bytes(d, from - w->ew_blk),
			       bdev_bytes(d, to - from));
	}
}

static int bdev_emu_read(struct bdev *d, uint64_t blk, uint32_t count, void *buf)
{
	struct bdev_emu *e = bdev_to_emu(d);
	int err;

	SYNC_POINT("bdev.emu.read");
	cmutex_lock(&e->em_lock);
	err = emu_power_check_locked(e, BDEV_EMU_READ);
	if (!err)
		err = emu_faults_check_locked(e, BDEV_EMU_READ, blk, count);
	if (!err) {
		emu_read_locked(e, blk, count, buf);
		e->em_stats.es_reads++;
	}
	cmutex_unlock(&e->em_lock);
	return err;
}

/* Accept @w: queue it as unflushed (reads see it from now on), record it. */
static void emu_write_accept_locked(struct bdev_emu *e, struct emu_write *w)
{
	struct emu_history *h = e->em_history;

	assert(cmutex_held(&e->em_lock));
	w->ew_seq = ++e->em_stats.es_writes;
	e->em_stats.es_unflushed++;
	list_add_tail(&e->em_unflushed, &w->ew_node);
	emu_record_add_locked(e, BDEV_EMU_WRITE, w->ew_blk, w->ew_count);
	if (h) {
		assert(h->eh_nwrites < h->eh_writes_cap);
		w->ew_kept = true;
		h->eh_writes[h->eh_nwrites++] = w;
	}
}

static int bdev_emu_write(struct bdev *d, uint64_t blk, uint32_t count, const void *buf)
{
	struct bdev_emu *e = bdev_to_emu(d);
	size_t bytes = bdev_bytes(d, count);
	struct emu_write *w;
	int err;

	SYNC_POINT("bdev.emu.write");
	w = malloc(sizeof(*w) + bytes);
	if (!w)
		return -ENOMEM;
	w->ew_blk = blk;
	w->ew_count = count;
	w->ew_kept = false;
	memcpy(w->ew_data, buf, bytes);
	cmutex_lock(&e->em_lock);
	err = emu_power_check_locked(e, BDEV_EMU_WRITE);
	if (!err)
		err = emu_records_reserve_locked(e);
	if (!err)
		err = emu_history_reserve_locked(e, BDEV_EMU_WRITE);
	if (!err)
		err = emu_faults_check_locked(e, BDEV_EMU_WRITE, blk, count);
	if (!err) {
		emu_write_accept_locked(e, w);
		w = NULL;
	}
	cmutex_unlock(&e->em_lock);
	free(w);
	return err;
}

/* Move every unflushed write into em_durable, oldest first; note the flush in the history. */
static void emu_unflushed_persist_locked(struct bdev_emu *e)
{
	const struct bdev *d = &e->em_bdev;
	struct emu_history *h = e->em_history;

	assert(cmutex_held(&e->em_lock));
	while (!list_empty(&e->em_unflushed)) {
		struct emu_write *w = container_of(e->em_unflushed.next, struct emu_write, ew_node);

		emu_write_apply(e->em_durable, d, w, bdev_bytes(d, w->ew_count));
		list_del(&w->ew_node);
		emu_write_release(w);
	}
	e->em_stats.es_unflushed = 0;
	if (h) {
		assert(h->eh_nflushes < h->eh_flushes_cap);
		h->eh_flushes[h->eh_nflushes++] = h->eh_nwrites;
	}
}

static int bdev_emu_flush(struct bdev *d)
{
	struct bdev_emu *e = bdev_to_emu(d);
	int err;

	SYNC_POINT("bdev.emu.flush");
	cmutex_lock(&e->em_lock);
	err = emu_power_check_locked(e, BDEV_EMU_FLUSH);
	if (!err)
		err = emu_records_reserve_locked(e);
	if (!err)
		err = emu_history_reserve_locked(e, BDEV_EMU_FLUSH);
	if (!err)
		err = emu_faults_check_locked(e, BDEV_EMU_FLUSH, 0, 0);
	if (!err) {
		emu_unflushed_persist_locked(e);
		e->em_stats.es_flushes++;
		emu_record_add_locked(e, BDEV_EMU_FLUSH, 0, 0);
	}
	cmutex_unlock(&e->em_lock);
	return err;
}

static void bdev_emu_free(struct bdev_emu *e)
{
	cmutex_lock(&e->em_lock);
	emu_history_free_locked(e, e->em_history);
	e->em_history = NULL;
	cmutex_unlock(&e->em_lock);
	while (!list_empty(&e->em_unflushed)) {
		struct list_node *n = e->em_unflushed.next;

		list_del(n);
		emu_write_release(container_of(n, struct emu_write, ew_node));
	}
	bdev_emu_clear_faults(&e->em_bdev);
	cmutex_destroy(&e->em_lock);
	free(e->em_records);
	free(e->em_durable);
	free(e);
}

static void bdev_emu_close(struct bdev *d)
{
	bdev_emu_free(bdev_to_emu(d));
}

static const struct bdev_ops bdev_emu_ops = {
    .bo_read = bdev_emu_read,
    .bo_write = bdev_emu_write,
    .bo_flush = bdev_emu_flush,
    .bo_close = bdev_emu_close,
};

/* ---- open ------------------------------------------------------------- */

/* A new device with zeroed images, power on, no records and no rules. */
static int bdev_emu_alloc(uint32_t block_size, uint64_t nblocks, struct bdev_emu **out)
{
	struct bdev_emu *e;
	int err;

	err = bdev_geometry_check(block_size, nblocks);
	if (err)
		return err;
	e = calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	err = bdev_mem_alloc(block_size, nblocks, &e->em_durable);
	if (err)
		goto out_free;
	err = cmutex_init(&e->em_lock);
	if (err)
		goto out_durable;
	bdev_init(&e->em_bdev, &bdev_emu_ops, block_size, nblocks);
	list_init(&e->em_unflushed);
	list_init(&e->em_faults);
	*out = e;
	return 0;

out_durable:
	free(e->em_durable);
out_free:
	free(e);
	return err;
}

int bdev_emu_open(uint32_t block_size, uint64_t nblocks, struct bdev **out)
{
	struct bdev_emu *e;
	int err;

	if (!out)
		return -EINVAL;
	err = bdev_emu_alloc(block_size, nblocks, &e);
	if (!err)
		*out = &e->em_bdev;
	return err;
}

/* Read all of @src into @image (nblocks * block_size bytes). */
static int emu_image_read(struct bdev *src, unsigned char *image)
{
	uint64_t n = bdev_nblocks(src);
	uint32_t chunk = EMU_COPY_CHUNK / bdev_block_size(src);
	int err = 0;

	for (uint64_t blk = 0; blk < n && !err; blk += chunk) {
		uint32_t count = (uint32_t)MIN((uint64_t)chunk, n - blk);

		err = bdev_read(src, blk, count, image + bdev_bytes(src, blk));
	}
	return err;
}

int bdev_emu_open_copy(struct bdev *src, struct bdev **out)
{
	struct bdev_emu *e;
	int err;

	if (!src || !out)
		return -EINVAL;
	err = bdev_emu_alloc(bdev_block_size(src), bdev_nblocks(src), &e);
	if (err)
		return err;
	err = emu_image_read(src, e->em_durable);
	if (err)
		goto out_free;
	*out = &e->em_bdev;
	return 0;

out_free:
	bdev_emu_free(e);
	return err;
}

/* ---- power, faults, stats, records ------------------------------------ */

void bdev_emu_cut_after(struct bdev *d, uint64_t nth)
{
	struct bdev_emu *e = bdev_to_emu(d);

	cmutex_lock(&e->em_lock);
	e->em_cut_at = nth;
	cmutex_unlock(&e->em_lock);
}

void bdev_emu_cut_now(struct bdev *d)
{
	struct bdev_emu *e = bdev_to_emu(d);

	cmutex_lock(&e->em_lock);
	e->em_stats.es_cut = true;
	cmutex_unlock(&e->em_lock);
}

void bdev_emu_fail_op(struct bdev *d, enum bdev_emu_op op, uint64_t nth, uint32_t repeat, int err)
{
	struct emu_fault *f = calloc(1, sizeof(*f));

	assert(f); /* a test helper: no way to report -ENOMEM */
	f->ef_kind = EMU_FAULT_OP;
	f->ef_op = op;
	f->ef_nth = nth ? nth : 1;
	emu_fault_add(d, f, repeat, err);
}

void bdev_emu_fail_block(struct bdev *d, enum bdev_emu_op op, uint64_t blk, uint32_t repeat,
			 int err)
{
	struct emu_fault *f = calloc(1, sizeof(*f));

	assert(f); /* a test helper: no way to report -ENOMEM */
	f->ef_kind = EMU_FAULT_BLOCK;
	f->ef_op = op;
	f->ef_blk = blk;
	emu_fault_add(d, f, repeat, err);
}

void bdev_emu_clear_faults(struct bdev *d)
{
	struct bdev_emu *e = bdev_to_emu(d);

	cmutex_lock(&e->em_lock);
	while (!list_empty(&e->em_faults)) {
		struct list_node *n = e->em_faults.next;

		list_del(n);
		free(container_of(n, struct emu_fault, ef_node));
	}
	cmutex_unlock(&e->em_lock);
}

int bdev_emu_early_flush(struct bdev *d)
{
	return bdev_flusher_enable(d);
}

void bdev_emu_stats(struct bdev *d, struct bdev_emu_stats *st)
{
	struct bdev_emu *e = bdev_to_emu(d);

	cmutex_lock(&e->em_lock);
	*st = e->em_stats;
	cmutex_unlock(&e->em_lock);
}

int bdev_emu_record(struct bdev *d, uint64_t i, struct bdev_emu_record *rec)
{
	struct bdev_emu *e = bdev_to_emu(d);
	int err = 0;

	if (!rec)
		return -EINVAL;
	cmutex_lock(&e->em_lock);
	if (i < e->em_nrecords)
		*rec = e->em_records[i];
	else
		err = -ENOENT;
	cmutex_unlock(&e->em_lock);
	return err;
}

/* ---- the image after a power cut -------------------------------------- */

/*
 * Keep, in place at the front of @ws (the @n unflushed writes, oldest
 * first), the writes that survive under @how, in the order they land;
 * returns how many.
 */
static uint64_t emu_crash_pick(const struct bdev_emu_crash *how, struct prng *rng,
			       struct emu_write **ws, uint64_t n)
{
	uint64_t kept = 0;

	if (how->ec_mode == BDEV_EMU_DROP_ALL)
		return 0;
	for (uint64_t i = 0; i < n; i++) {
		if (how->ec_mode == BDEV_EMU_KEEP_ALL || prng_chance(rng, 1, 2))
			ws[kept++] = ws[i];
	}
	if (how->ec_mode != BDEV_EMU_REORDER)
		return kept;
	for (uint64_t i = kept; i > 1; i--) { /* Fisher-Yates */
		uint64_t j = prng_below(rng, i);
		struct emu_write *t = ws[i - 1];

		ws[i - 1] = ws[j];
		ws[j] = t;
	}
	return kept;
}

/*
 * Land the @n writes of @keep on @image in order. With @tear, one of
 * them (seeded) lands only a prefix of whole sectors, strictly shorter
 * than the write and, if the write has two sectors or more, not empty.
 */
static void emu_crash_land(const struct bdev *d, struct emu_write **keep, uint64_t n, bool tear,
			   struct prng *rng, unsigned char *image)
{
	uint64_t victim = UINT64_MAX;
	size_t torn = 0;

	if (tear && n) {
		size_t sectors;

		victim = prng_below(rng, n);
		sectors = bdev_bytes(d, keep[victim]->ew_count) / BDEV_SECTOR;
		if (sectors >= 2)
			torn = (1 + prng_below(rng, sectors - 1)) * BDEV_SECTOR;
	}
	for (uint64_t i = 0; i < n; i++) {
		size_t bytes = bdev_bytes(d, keep[i]->ew_count);

		emu_write_apply(image, d, keep[i], i == victim ? torn : bytes);
	}
}

/*
 * The one treatment of unflushed writes at a power cut, shared by
 * bdev_emu_crash and bdev_emu_crash_at: of the @n writes @ws (oldest
 * first; the array is reordered), land on @image those that @how keeps,
 * drawing every choice from a PRNG seeded with ec_seed (invariant 6).
 */
static void emu_unflushed_land(const struct bdev *d, const struct bdev_emu_crash *how,
			       struct emu_write **ws, uint64_t n, unsigned char *image)
{
	struct prng rng;

	prng_init(&rng, how->ec_seed);
	n = emu_crash_pick(how, &rng, ws, n);
	emu_crash_land(d, ws, n, how->ec_tear, &rng, image);
}

static bool emu_crash_how_valid(const struct bdev_emu_crash *how)
{
	switch (how->ec_mode) {
	case BDEV_EMU_KEEP_ALL:
	case BDEV_EMU_DROP_ALL:
	case BDEV_EMU_DROP_SOME:
	case BDEV_EMU_REORDER:
		return true;
	}
	return false;
}

int bdev_emu_crash(struct bdev *d, const struct bdev_emu_crash *how, struct bdev **out)
{
	struct bdev_emu *e = bdev_to_emu(d), *c;
	struct emu_write **ws;
	struct list_node *pos;
	uint64_t n = 0;
	int err;

	if (!how || !out || !emu_crash_how_valid(how))
		return -EINVAL;
	err = bdev_emu_alloc(d->bd_block_size, d->bd_nblocks, &c);
	if (err)
		return err;
	cmutex_lock(&e->em_lock);
	ws = calloc(e->em_stats.es_unflushed + 1, sizeof(*ws));
	if (!ws) {
		err = -ENOMEM;
		goto out_unlock;
	}
	list_for_each(pos, &e->em_unflushed) ws[n++] = container_of(pos, struct emu_write, ew_node);
	memcpy(c->em_durable, e->em_durable, bdev_bytes(d, d->bd_nblocks));
	emu_unflushed_land(d, how, ws, n, c->em_durable);
	free(ws);
out_unlock:
	cmutex_unlock(&e->em_lock);
	if (err)
		bdev_emu_free(c);
	else
		*out = &c->em_bdev;
	return err;
}

/* ---- history: every crash point of one run ----------------------------- */

void bdev_emu_keep_history(struct bdev *d)
{
	struct bdev_emu *e = bdev_to_emu(d);
	struct emu_history *h = calloc(1, sizeof(*h)), *old;
	struct list_node *pos;
	int err;

	assert(h); /* a test helper: no way to report -ENOMEM */
	err = bdev_mem_alloc(d->bd_block_size, d->bd_nblocks, &h->eh_base);
	assert(!err);
	(void)err;
	cmutex_lock(&e->em_lock);
	err = emu_array_reserve((void **)&h->eh_writes, &h->eh_writes_cap,
				e->em_stats.es_unflushed + 1, sizeof(*h->eh_writes));
	assert(!err);
	memcpy(h->eh_base, e->em_durable, bdev_bytes(d, d->bd_nblocks));
	old = e->em_history;
	e->em_history = NULL;
	emu_history_free_locked(e, old); /* before the new one claims the unflushed writes */
	list_for_each(pos, &e->em_unflushed)
	{
		struct emu_write *w = container_of(pos, struct emu_write, ew_node);

		w->ew_kept = true;
		h->eh_writes[h->eh_nwrites++] = w;
	}
	h->eh_first = h->eh_nwrites;
	e->em_history = h;
	cmutex_unlock(&e->em_lock);
}

uint64_t bdev_emu_history_writes(struct bdev *d)
{
	struct bdev_emu *e = bdev_to_emu(d);
	uint64_t n = 0;

	cmutex_lock(&e->em_lock);
	if (e->em_history)
		n = e->em_history->eh_nwrites - e->em_history->eh_first;
	cmutex_unlock(&e->em_lock);
	return n;
}

uint64_t bdev_emu_history_flushes(struct bdev *d)
{
	struct bdev_emu *e = bdev_to_emu(d);
	uint64_t n = 0;

	cmutex_lock(&e->em_lock);
	if (e->em_history)
		n = e->em_history->eh_nflushes;
	cmutex_unlock(&e->em_lock);
	return n;
}

/* Of the @end first history writes, how many the last flush before them made durable. */
static uint64_t emu_history_durable(const struct emu_history *h, uint64_t end)
{
	uint64_t i = h->eh_nflushes;

	while (i > 0 && h->eh_flushes[i - 1] > end)
		i--;
	return i ? h->eh_flushes[i - 1] : 0;
}

/*
 * Build on @image the device as it would boot after a cut when the first
 * @end history writes had been issued and the first @durable of them
 * flushed: the base, the durable writes, then the others as @how says.
 */
static int emu_history_image_locked(struct bdev_emu *e, uint64_t durable, uint64_t end,
				    const struct bdev_emu_crash *how, unsigned char *image)
{
	const struct bdev *d = &e->em_bdev;
	struct emu_history *h = e->em_history;
	struct emu_write **ws;

	assert(cmutex_held(&e->em_lock));
	assert(durable <= end && end <= h->eh_nwrites);
	ws = calloc(end - durable + 1, sizeof(*ws));
	if (!ws)
		return -ENOMEM;
	memcpy(image, h->eh_base, bdev_bytes(d, d->bd_nblocks));
	for (uint64_t i = 0; i < durable; i++)
		emu_write_apply(image, d, h->eh_writes[i],
				bdev_bytes(d, h->eh_writes[i]->ew_count));
	memcpy(ws, h->eh_writes + durable, (end - durable) * sizeof(*ws));
	emu_unflushed_land(d, how, ws, end - durable, image);
	free(ws);
	return 0;
}

/*
 * The cut of bdev_emu_crash_at (@flush false) or bdev_emu_crash_at_flush
 * (@flush true) at @nth, as the history writes issued and flushed then;
 * false if there is no such cut.
 */
static bool emu_history_cut_locked(struct bdev_emu *e, uint64_t nth, bool flush, uint64_t *durable,
				   uint64_t *end)
{
	struct emu_history *h = e->em_history;

	assert(cmutex_held(&e->em_lock));
	if (!h || nth == 0)
		return false;
	if (flush) {
		if (nth > h->eh_nflushes)
			return false;
		*end = h->eh_flushes[nth - 1];
		*durable = nth > 1 ? h->eh_flushes[nth - 2] : 0;
		return true;
	}
	if (nth > h->eh_nwrites - h->eh_first + 1)
		return false;
	*end = h->eh_first + nth - 1;
	*durable = emu_history_durable(h, *end);
	return true;
}

static int emu_crash_at(struct bdev *d, uint64_t nth, bool flush, const struct bdev_emu_crash *how,
			struct bdev **out)
{
	struct bdev_emu *e = bdev_to_emu(d), *c;
	uint64_t durable, end;
	int err;

	if (!how || !out || !emu_crash_how_valid(how))
		return -EINVAL;
	err = bdev_emu_alloc(d->bd_block_size, d->bd_nblocks, &c);
	if (err)
		return err;
	cmutex_lock(&e->em_lock);
	if (!emu_history_cut_locked(e, nth, flush, &durable, &end))
		err = -EINVAL;
	else
		err = emu_history_image_locked(e, durable, end, how, c->em_durable);
	cmutex_unlock(&e->em_lock);
	if (err) {
		bdev_emu_free(c);
		return err;
	}
	*out = &c->em_bdev;
	return 0;
}

int bdev_emu_crash_at(struct bdev *d, uint64_t nth, const struct bdev_emu_crash *how,
		      struct bdev **out)
{
	return emu_crash_at(d, nth, false, how, out);
}

int bdev_emu_crash_at_flush(struct bdev *d, uint64_t nth, const struct bdev_emu_crash *how,
			    struct bdev **out)
{
	return emu_crash_at(d, nth, true, how, out);
}

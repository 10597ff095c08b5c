/*
 * snap.c - snapshots: durable states pinned by name.
 *
 * Every commit writes a super root naming its whole state, and nothing
 * it names is overwritten in place (copy-on-write). A snapshot is such a
 * state kept: the snapshot table, the data of owner 2 (VOL_SNAP_OWNER),
 * holds one 128-byte record per snapshot, VOL_SNAP_MAX at most (docs/
 * FORMAT.md, "Snapshot table"), little-endian:
 *
 *   0  super root block u64 (0: the slot is free)
 *   8  delta u64: the super root's
 *   16 taken at u64: nanoseconds since the epoch
 *   24 name length u8 (1..95)
 *   25 translation super root, 56 bits (0: the snapshot's own)
 *   32 name (95 bytes, zero past its length)   127 reserved (zero)
 *
 * A snapshot reads its trees from its own super root, and resolves their
 * virtual blocks through the translation of the translation super root
 * when the record names one (a later durable state's, which has the
 * moves the cleaner made of the snapshot's blocks since), else through
 * its own.
 *
 * The table is written through transactions like a client's file, so
 * deltas, recovery and the cleaner cover it. What a snapshot names must
 * outlive the state that left it: usage.c (4) keeps every such block
 * counted, so its segment is never released, and the cleaner does not
 * take its segment as a victim.
 *
 * vol_snap_create
 *   1. vol_sync: everything written before the call is durable;
 *   2. vol_usage_snap_taken, under vu_lock: read which super root the
 *      counts describe (the newest durable state) and mark every segment
 *      holding one of its blocks. From then on a block of that state left
 *      behind is pinned, not released: the state is safe before its
 *      record exists. A pass over the segments: the cost does not depend
 *      on how many files the volume holds.
 *   3. write the record in a transaction, and vol_sync.
 * A crash before 3 is durable leaves no record: the next open counts
 * exactly again. A failure after 2 leaves segments marked: counted too
 * high until the next recount, never too low. A recount keeps every mark
 * while a creation's record may not be durable (vu_marking): until 3
 * returns, or, if its commit failed, until a later commit carries the
 * record (vol_usage_snap_done_at); not at all if the record was never
 * written. (Kept for good after a failed commit, the marks outlived the
 * snapshot, and its space stayed pinned: test_failed_create_lets_its_marks_go.)
 *
 * vol_snap_create_at pins a recent checkpoint instead (delta given):
 *   a. find its super root in the checkpoint chain (no sync: it is
 *      durable already);
 *   b. in a transaction, vol_usage_snap_taken_at, under vu_lock: if the
 *      floor has not passed it meanwhile, none of its segments has been
 *      released (usage.c (5)); mark every segment in use, and ask for a
 *      recount at the settle of the transaction's delta. Until then no
 *      marked empty segment is released (its blocks may be the
 *      checkpoint's, counted nowhere yet); the recount, which walks the
 *      new record too, counts them exactly;
 *   c. as 3.
 *
 * vol_snap_delete clears the record (a VOL_TXN_FREEING transaction: it
 * works on a full volume) and asks for a recount at the settle of its
 * delta (vol_usage_recount_at, while the transaction still holds that
 * delta open, so the request cannot come too late); vol_sync returns once
 * that commit, and the recount, are done.
 *
 * Opening a snapshot (vol_open_opts.voo_snapshot) opens the volume read
 * only with the snapshot's super root in place of the newest one. Other
 * processes may have the image open, so a pin on the device
 * (bdev_pin, keyed by the name's hash) keeps the two apart: the open
 * pins the name shared before it reads the record and keeps the pin
 * until it closes; vol_snap_delete pins it exclusive, or fails with
 * -EBUSY. So a snapshot being read is never deleted, and from the pin on
 * every block its super root reaches stays where it is (its segments
 * are marked in every writer's counts: a writer that opens later counts
 * the record, which still exists). A snapshot open beside a writer
 * (voo_snapshot_find) reads nothing else of the volume but the
 * superblock and the checkpoint slots (checksummed): the writer's live
 * state changes under it, and no checksum covers a map block.
 * vol_snap_list waits for a creation in progress, so a writer never
 * names a record its commit has not made durable.
 *
 * Recent checkpoints are not pinned: each super root names the one
 * before it, and the chain is readable down to sr_readable_from
 * (usage.c (5)). vol_checkpoints walks it; vol_open_checkpoint opens
 * one state of it read only, on a volume nobody writes meanwhile.
 *
 * Lock order: v_snap_lock (creation and deletion, one at a time) is
 * taken before anything else, and held across vol_sync; no commit needs
 * it.
 */
#include "vol/vol_internal.h"
#include "util/syncpoint.h"

#include <endian.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <xxhash.h>

#define SNAP_SROOT_OFF	 0
#define SNAP_DELTA_OFF	 8
#define SNAP_TIME_OFF	 16
#define SNAP_NAMELEN_OFF 24
#define SNAP_XLATE_OFF	 25
#define SNAP_XLATE_BYTES 7
#define SNAP_NAME_OFF	 32

_Static_assert(SNAP_NAME_OFF + VOL_SNAP_NAME_MAX + 1 == VOL_SNAP_REC_SIZE,
	       "a snapshot record is 128 bytes");

/*
 * The key of snapshot @name's pin (bdev_pin): an open of the snapshot
 * holds it shared, a deletion exclusive, so neither happens during the
 * other, whichever process does them.
 */
static uint64_t snap_pin_key(const char *name)
{
	return XXH3_64bits(name, strlen(name));
}

/*
 * The second key of a snapshot's name: held shared, waiting, by a reader
 * once it holds the first; exclusive, not waiting, by a re-root. A reader
 * that comes during a re-root waits for it (two commits and a recount),
 * then reads the new record; a re-root passes over a snapshot being read.
 */
uint64_t vol_snap_reroot_key(const char *name)
{
	return XXH3_64bits_withSeed(name, strlen(name), 0x5245524f4f54 /* "REROOT" */);
}

/* NULL if @name (of @len bytes) can name a snapshot, else why not. */
static const char *snap_name_invalid(const char *name, size_t len)
{
	if (!len)
		return "empty name";
	if (len > VOL_SNAP_NAME_MAX)
		return "name too long";
	if (memchr(name, '/', len) || memchr(name, '\0', len))
		return "name holds '/' or a NUL byte";
	if ((len == 1 && name[0] == '.') || (len == 2 && name[0] == '.' && name[1] == '.'))
		return "name is . or ..";
	return NULL;
}

/* The 56-bit little-endian translation super root at @p. */
static uint64_t snap_get_xlate(const unsigned char *p)
{
	uint64_t x = 0;

	for (int i = SNAP_XLATE_BYTES - 1; i >= 0; i--)
		x = x << 8 | p[i];
	return x;
}

static void snap_put_xlate(unsigned char *p, uint64_t x)
{
	for (int i = 0; i < SNAP_XLATE_BYTES; i++, x >>= 8)
		p[i] = (unsigned char)x;
}

/* Is @blk a block of the segments? */
static bool snap_blk_valid(const struct log_geometry *g, uint64_t blk)
{
	return blk >= g->lg_seg_start && blk - g->lg_seg_start < g->lg_nsegments * g->lg_seg_blocks;
}

int vol_snap_decode(const struct vol *v, const void *block, uint32_t slot, uint64_t index,
		    struct vol_snap_info *si, const char **why)
{
	const unsigned char *p = (const unsigned char *)block + (size_t)slot * VOL_SNAP_REC_SIZE;
	const struct log_geometry *g = &v->v_geo;
	uint64_t sroot = util_get_le64(p + SNAP_SROOT_OFF);
	size_t len = p[SNAP_NAMELEN_OFF];

	if (!sroot) {
		*why = "a free slot holds bytes";
		return util_all_zero(p, VOL_SNAP_REC_SIZE) ? 1 : -EUCLEAN;
	}
	uint64_t xlate = snap_get_xlate(p + SNAP_XLATE_OFF);

	*why = "super root outside the segments";
	if (!snap_blk_valid(g, sroot))
		return -EUCLEAN;
	*why = "translation super root outside the segments";
	if (xlate && !snap_blk_valid(g, xlate))
		return -EUCLEAN;
	*why = "reserved bytes set";
	if (len <= VOL_SNAP_NAME_MAX &&
	    !util_all_zero(p + SNAP_NAME_OFF + len, VOL_SNAP_REC_SIZE - SNAP_NAME_OFF - len))
		return -EUCLEAN;
	*why = snap_name_invalid((const char *)p + SNAP_NAME_OFF, len);
	if (*why)
		return -EUCLEAN;
	*why = "beyond the table's last record";
	if (index * vol_snap_per_block(v->v_block_size) + slot >= VOL_SNAP_MAX)
		return -EUCLEAN;
	memset(si, 0, sizeof(*si));
	memcpy(si->vsi_name, p + SNAP_NAME_OFF, len);
	si->vsi_sroot = sroot;
	si->vsi_xlate = xlate;
	si->vsi_delta = util_get_le64(p + SNAP_DELTA_OFF);
	si->vsi_ctime_ns = (int64_t)util_get_le64(p + SNAP_TIME_OFF);
	si->vsi_slot = (uint32_t)(index * vol_snap_per_block(v->v_block_size) + slot);
	*why = NULL;
	return 0;
}

/* Does record @slot of @block carry the name @name, whatever else it holds? */
static bool snap_names(const void *block, uint32_t slot, const char *name)
{
	const unsigned char *p = (const unsigned char *)block + (size_t)slot * VOL_SNAP_REC_SIZE;
	size_t len = p[SNAP_NAMELEN_OFF];

	return len <= VOL_SNAP_NAME_MAX && strlen(name) == len &&
	       !memcmp(p + SNAP_NAME_OFF, name, len);
}

static void snap_encode(void *block, uint32_t slot, const struct vol_snap_info *si)
{
	unsigned char *p = (unsigned char *)block + (size_t)slot * VOL_SNAP_REC_SIZE;
	size_t len = strlen(si->vsi_name);

	memset(p, 0, VOL_SNAP_REC_SIZE);
	util_put_le64(p + SNAP_SROOT_OFF, si->vsi_sroot);
	util_put_le64(p + SNAP_DELTA_OFF, si->vsi_delta);
	util_put_le64(p + SNAP_TIME_OFF, (uint64_t)si->vsi_ctime_ns);
	p[SNAP_NAMELEN_OFF] = (unsigned char)len;
	snap_put_xlate(p + SNAP_XLATE_OFF, si->vsi_xlate);
	memcpy(p + SNAP_NAME_OFF, si->vsi_name, len);
}

static uint32_t snap_blocks(const struct vol *v)
{
	uint32_t per = vol_snap_per_block(v->v_block_size);

	return (VOL_SNAP_MAX + per - 1) / per;
}

/* Table block @index as the newest state has it (cached or read). */
static int snap_read_block(struct vol *v, uint64_t index, void *data)
{
	struct buf *b;
	int err = buf_read(v->v_cache, VOL_SNAP_OWNER, index, &b);

	if (err)
		return err;
	memcpy(data, buf_data(b), v->v_block_size);
	buf_put(b);
	return 0;
}

/*
 * Walk the table: the valid records into *out (if not NULL), the slot of
 * @name into *found (UINT32_MAX: none; a bad record that carries the name
 * counts), the first free slot into *free (UINT32_MAX: none). A bad
 * record is logged and neither used nor free.
 */
static int snap_scan(struct vol *v, const char *name, struct vol_snap_info **out, size_t *n,
		     uint32_t *found, uint32_t *free_slot)
{
	uint32_t per = vol_snap_per_block(v->v_block_size);
	unsigned char *block = malloc(v->v_block_size);
	size_t cap = 0;
	int err = 0;

	*found = *free_slot = UINT32_MAX;
	if (out) {
		*out = NULL;
		*n = 0;
	}
	if (!block)
		return -ENOMEM;
	for (uint32_t i = 0; i < snap_blocks(v) && !err; i++) {
		err = snap_read_block(v, i, block);
		for (uint32_t s = 0; s < per && !err && i * per + s < VOL_SNAP_MAX; s++) {
			struct vol_snap_info si;
			const char *why;
			int r = vol_snap_decode(v, block, s, i, &si, &why);

			if (r > 0) {
				if (*free_slot == UINT32_MAX)
					*free_slot = i * per + s;
				continue;
			}
			if (r < 0) {
				log_err("vol: snapshot record %" PRIu32 ": %s", i * per + s, why);
				if (name && snap_names(block, s, name))
					*found = i * per + s; /* damaged, but named so */
				continue;
			}
			if (name && !strcmp(si.vsi_name, name))
				*found = si.vsi_slot;
			if (!out)
				continue;
			if (*n == cap) {
				struct vol_snap_info *x;

				cap = cap ? 2 * cap : 16;
				x = realloc(*out, cap * sizeof(*x));
				if (!x) {
					err = -ENOMEM;
					break;
				}
				*out = x;
			}
			(*out)[(*n)++] = si;
		}
	}
	free(block);
	if (err && out) {
		free(*out);
		*out = NULL;
		*n = 0;
	}
	return err;
}

int vol_snap_list(struct vol *v, struct vol_snap_info **out, size_t *n)
{
	uint32_t found, free_slot;
	int err;

	if (v->v_snapshot) { /* a snapshot's own table is out of date: it has none */
		*out = NULL;
		*n = 0;
		return 0;
	}
	/* not while a creation runs: its record is durable only when it returns
	 * (a reader in another process trusts what the list says) */
	cmutex_lock(&v->v_snap_lock);
	err = snap_scan(v, NULL, out, n, &found, &free_slot);
	cmutex_unlock(&v->v_snap_lock);
	return err;
}

/* Write record @slot (cleared if @si is NULL) in transaction @t. */
static int snap_write(struct vol_txn *t, uint32_t slot, const struct vol_snap_info *si)
{
	struct vol *v = t->vt_vol;
	uint32_t per = vol_snap_per_block(v->v_block_size);
	unsigned char *block = malloc(v->v_block_size);
	int err;

	if (!block)
		return -ENOMEM;
	err = snap_read_block(v, slot / per, block);
	if (!err) {
		if (si)
			snap_encode(block, slot % per, si);
		else
			memset(block + (size_t)(slot % per) * VOL_SNAP_REC_SIZE, 0,
			       VOL_SNAP_REC_SIZE);
		err = vol_write_own(t, VOL_SNAP_OWNER, slot / per, block);
	}
	free(block);
	return err;
}

static int ckpt_find(struct vol *v, uint64_t delta, struct vol_checkpoint *found);

int vol_snap_create_at(struct vol *v, const char *name, uint64_t delta)
{
	struct vol_snap_info si = {0};
	uint32_t found, free_slot;
	const char *why = snap_name_invalid(name, strnlen(name, VOL_SNAP_NAME_MAX + 1));
	struct vol_checkpoint cp = {0};
	struct timespec now;
	struct vol_txn t;
	int err;

	if (v->v_read_only)
		return -EROFS;
	if (why)
		return strlen(name) > VOL_SNAP_NAME_MAX ? -ENAMETOOLONG : -EINVAL;
	cmutex_lock(&v->v_snap_lock);
	err = snap_scan(v, name, NULL, NULL, &found, &free_slot);
	if (!err && found != UINT32_MAX)
		err = -EEXIST;
	if (!err && free_slot == UINT32_MAX) {
		log_err("vol: the snapshot table is full (%u snapshots)", VOL_SNAP_MAX);
		err = -ENOSPC;
	}
	if (!err && !delta)
		err = vol_sync(v); /* 1 */
	if (!err && delta)	   /* a recent checkpoint's super root: (a) */
		err = ckpt_find(v, delta, &cp);
	SYNC_POINT("vol.snap.create.synced");
	if (!err)
		err = vol_txn_begin(v, 1, 0, &t);
	if (err)
		goto out;
	SYNC_POINT("vol.snap.create.begun");
	if (!delta) {
		vol_usage_snap_taken(v, false, &si.vsi_sroot, &si.vsi_delta); /* 2 */
	} else { /* (b), or gone meanwhile */
		err = vol_usage_snap_taken_at(v, delta, t.vt_op.dop_delta);
		si.vsi_sroot = cp.vcp_sroot;
		si.vsi_delta = delta;
		if (err) {
			vol_txn_end(&t);
			goto out;
		}
	}
	clock_gettime(CLOCK_REALTIME, &now);
	si.vsi_ctime_ns = (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
	memcpy(si.vsi_name, name, strlen(name));
	SYNC_POINT("vol.snap.create.taken");
	err = snap_write(&t, free_slot, &si); /* 3 */
	if (!err)
		vol_usage_snap_listed(v, si.vsi_delta, name);
	if (err) /* no record: the marks keep nothing; the commit's recount drops them */
		vol_usage_recount_at(v, t.vt_op.dop_delta);
	vol_txn_end(&t);
	if (err) {
		vol_usage_snap_done(v);
		goto out;
	}
	err = vol_sync(v);
	if (!err)
		vol_usage_snap_done(v);
	else /* the record goes with the next commit: the marks stay till then */
		vol_usage_snap_done_at(v, t.vt_op.dop_delta);
out:
	cmutex_unlock(&v->v_snap_lock);
	return err;
}

int vol_snap_create(struct vol *v, const char *name)
{
	return vol_snap_create_at(v, name, 0);
}

int vol_snap_delete(struct vol *v, const char *name)
{
	uint64_t key = snap_pin_key(name);
	uint32_t found, free_slot;
	struct vol_txn t;
	int err;

	if (v->v_read_only)
		return -EROFS;
	cmutex_lock(&v->v_snap_lock);
	/* -EBUSY while an open reads it (vol_open_snapshot's pin) */
	err = bdev_pin(v->v_bdev, key, BDEV_PIN_EXCL);
	if (err)
		goto out_unlock;
	SYNC_POINT("vol.snap.delete.pinned");
	err = snap_scan(v, name, NULL, NULL, &found, &free_slot);
	if (!err && found == UINT32_MAX)
		err = -ENOENT;
	if (!err)
		err = vol_txn_begin(v, 1, VOL_TXN_FREEING, &t);
	if (err)
		goto out;
	err = snap_write(&t, found, NULL);
	if (!err) /* the delta cannot commit before the transaction ends */
		vol_usage_recount_at(v, t.vt_op.dop_delta);
	vol_txn_end(&t);
	if (!err)
		err = vol_sync(v);
out:
	bdev_pin(v->v_bdev, key, BDEV_PIN_DROP);
out_unlock:
	cmutex_unlock(&v->v_snap_lock);
	return err;
}

/*
 * Re-root snapshot @name, or every snapshot no open holds (@name NULL):
 * its record's translation super root becomes the newest durable
 * state's, so that it reads its blocks where that state's translation
 * puts them (the cleaner moved some: commit.c, raw moves). Like a
 * creation, under vu_lock, read which super root the counts describe and
 * mark every segment holding one of its blocks (the translation's tree
 * is the snapshots' now, and so is that super root); the recount at the
 * records' commit lets the old translations and the old copies go. Not
 * while a snapshot is open elsewhere: the pin, as for a deletion (-EBUSY
 * for @name; passed over for NULL). *@done: the snapshots re-rooted;
 * *@all: every one (none passed over).
 */
static int snap_reroot(struct vol *v, const char *name, size_t *done, bool *all)
{
	struct vol_snap_info *list = NULL;
	uint32_t found, free_slot;
	bool *pinned = NULL;
	size_t n = 0, npinned = 0;
	uint64_t xlate;
	struct vol_txn t;
	int err;

	*done = 0;
	*all = false;
	if (v->v_read_only)
		return -EROFS;
	cmutex_lock(&v->v_snap_lock);
	err = snap_scan(v, name, &list, &n, &found, &free_slot);
	if (!err && name && found == UINT32_MAX)
		err = -ENOENT;
	if (!err && !(pinned = calloc(n + 1, sizeof(*pinned))))
		err = -ENOMEM;
	for (size_t i = 0; !err && i < n; i++) {
		int perr;

		if (name && list[i].vsi_slot != found)
			continue;
		perr = bdev_pin(v->v_bdev, vol_snap_reroot_key(list[i].vsi_name), BDEV_PIN_EXCL);
		if (!perr) {
			pinned[i] = true;
			npinned++;
		} else if (name || perr != -EBUSY) {
			err = perr;
		}
	}
	if (!err && name && !npinned)
		err = -EUCLEAN; /* found, but not one of the valid records */
	if (!err && !npinned)
		*all = !n;
	if (err || !npinned)
		goto out;
	SYNC_POINT("vol.snap.reroot.pinned");
	err = vol_sync(v);
	if (!err)
		err = vol_txn_begin(v, npinned, VOL_TXN_FREEING, &t);
	if (err)
		goto out;
	vol_usage_snap_taken(v, true, &xlate, &(uint64_t){0});
	for (size_t i = 0; !err && i < n; i++) {
		if (!pinned[i])
			continue;
		list[i].vsi_xlate = xlate;
		err = snap_write(&t, list[i].vsi_slot, &list[i]);
	}
	/* the delta cannot commit before the transaction ends; a record not
	 * written changes nothing. The marks are kept until the records are
	 * durable (with that commit, or the next that succeeds), and no
	 * longer: the recount at that commit's settle is what lets the old
	 * copies go, and it would keep every count it found while they are. */
	vol_usage_recount_at(v, t.vt_op.dop_delta);
	vol_usage_snap_done_at(v, t.vt_op.dop_delta);
	vol_txn_end(&t);
	if (!err)
		err = vol_sync(v);
	if (!err) {
		*done = npinned;
		*all = npinned == n;
	}
out:
	for (size_t i = 0; pinned && i < n; i++)
		if (pinned[i])
			bdev_pin(v->v_bdev, vol_snap_reroot_key(list[i].vsi_name), BDEV_PIN_DROP);
	free(pinned);
	free(list);
	cmutex_unlock(&v->v_snap_lock);
	return err;
}

int vol_snap_reroot(struct vol *v, const char *name)
{
	size_t done;
	bool all;

	return snap_reroot(v, name, &done, &all);
}

/* ---- the re-rooter ------------------------------------------------------------ */

/*
 * The re-rooter's thread: a round re-roots every snapshot no open holds,
 * once a commit with raw moves is durable (vol_reroot_ask), and once more
 * at close if one was asked for since. It runs apart from the commit
 * thread because a re-root is a transaction and two syncs; the cleaner
 * makes no raw move while a round is pending (vr_pending), so the copies
 * it keeps twice are those of one step at most.
 */
static void *snap_reroot_main(void *arg)
{
	struct vol *v = arg;
	struct vol_reroot *r = &v->v_reroot;

	cmutex_lock(&r->vr_lock);
	for (;;) {
		size_t done;
		bool all;
		int err;

		while (!r->vr_wanted && !r->vr_stop)
			cmutex_wait(&r->vr_lock, &r->vr_cond);
		if (!r->vr_wanted)
			break; /* stopping, nothing asked */
		r->vr_wanted = false;
		cmutex_unlock(&r->vr_lock);
		SYNC_POINT("vol.reroot.round");
		err = snap_reroot(v, NULL, &done, &all);
		if (!err && done) {
			cmutex_lock(&v->v_usage.vu_lock);
			v->v_usage.vu_reroots += done;
			cmutex_unlock(&v->v_usage.vu_lock);
		}
		if (err)
			log_warn("vol: re-rooting the snapshots after the cleaner moved their "
				 "blocks failed: %d; their old copies stay until the next try",
				 err);
		cmutex_lock(&r->vr_lock);
		r->vr_rounds++;
		if (!r->vr_wanted) {
			if (!err && all) /* the next commit says so */
				atomic_store(&r->vr_rooted, true);
			atomic_store(&r->vr_pending, false);
		}
		pthread_cond_broadcast(&r->vr_cond);
	}
	cmutex_unlock(&r->vr_lock);
	return NULL;
}

int vol_reroot_start(struct vol *v)
{
	struct vol_reroot *r = &v->v_reroot;
	int err = cmutex_init(&r->vr_lock);

	if (err)
		return err;
	pthread_cond_init(&r->vr_cond, NULL);
	r->vr_stop = v->v_read_only; /* nothing to re-root */
	if (!v->v_read_only) {
		err = -pthread_create(&r->vr_thread, NULL, snap_reroot_main, v);
		if (err) {
			pthread_cond_destroy(&r->vr_cond);
			cmutex_destroy(&r->vr_lock);
			return err;
		}
	}
	r->vr_started = true;
	return 0;
}

void vol_reroot_stop(struct vol *v)
{
	struct vol_reroot *r = &v->v_reroot;
	bool running;

	if (!r->vr_started)
		return;
	cmutex_lock(&r->vr_lock);
	running = !r->vr_stop;
	r->vr_stop = true;
	pthread_cond_broadcast(&r->vr_cond);
	cmutex_unlock(&r->vr_lock);
	if (running)
		pthread_join(r->vr_thread, NULL);
}

void vol_reroot_destroy(struct vol *v)
{
	struct vol_reroot *r = &v->v_reroot;

	if (!r->vr_started)
		return;
	pthread_cond_destroy(&r->vr_cond);
	cmutex_destroy(&r->vr_lock);
	r->vr_started = false;
}

void vol_reroot_ask(struct vol *v)
{
	struct vol_reroot *r = &v->v_reroot;

	cmutex_lock(&r->vr_lock);
	/* stopped (closing): pending stays, so the last commits make no
	 * more raw moves; the copies made are kept by the liveness rule */
	atomic_store(&r->vr_pending, true);
	r->vr_wanted = true;
	pthread_cond_broadcast(&r->vr_cond);
	cmutex_unlock(&r->vr_lock);
}

bool vol_reroot_pending(struct vol *v)
{
	return atomic_load(&v->v_reroot.vr_pending);
}

uint64_t vol_reroot_wait(struct vol *v)
{
	struct vol_reroot *r = &v->v_reroot;
	uint64_t rounds;

	cmutex_lock(&r->vr_lock);
	while (atomic_load(&r->vr_pending) && !r->vr_stop)
		cmutex_wait(&r->vr_lock, &r->vr_cond);
	rounds = r->vr_rounds;
	cmutex_unlock(&r->vr_lock);
	return rounds;
}

/* Snapshot @name's record, from the table as the open counted it. */
static int snap_find_counted(struct vol *v, const char *name, uint64_t *sroot, uint64_t *delta,
			     uint64_t *xlate)
{
	struct vol_usage *u = &v->v_usage;
	uint32_t found, free_slot;
	int err;

	for (size_t i = 0; i < u->vu_nsnaps; i++) {
		if (!strcmp(u->vu_snaps[i].vsi_name, name)) {
			*sroot = u->vu_snaps[i].vsi_sroot;
			*delta = u->vu_snaps[i].vsi_delta;
			*xlate = u->vu_snaps[i].vsi_xlate;
			return 0;
		}
	}
	/* none, or one the open's count left out as damaged */
	err = snap_scan(v, name, NULL, NULL, &found, &free_slot);
	if (!err && found != UINT32_MAX) {
		log_err("vol: snapshot \"%s\" is damaged", name);
		err = -EUCLEAN;
	}
	return err ? err : -ENOENT;
}

/* Does @sr fit this volume (heights, translation root and size)? */
static bool snap_sroot_fits(const struct vol *v, const struct vol_sroot *sr)
{
	return sr->sr_otab_height <= v->v_otab_height_max &&
	       sr->sr_dat_height <= v->v_dat_height_max && sr->sr_dat_next <= v->v_dat_max &&
	       (!sr->sr_dat_root || vol_pblk_valid(v, sr->sr_dat_root));
}

int vol_snap_sroot(struct vol *v, uint64_t sroot, uint64_t delta, struct vol_sroot *sr)
{
	int err = vol_sroot_load(v, sroot, sr);

	if (!err && (sr->sr_delta != delta || !snap_sroot_fits(v, sr)))
		err = -EUCLEAN;
	return err;
}

int vol_snap_state(struct vol *v, const struct vol_snap_info *si, struct vol_sroot *sr,
		   const char **why)
{
	struct vol_sroot xr;
	int err = vol_snap_sroot(v, si->vsi_sroot, si->vsi_delta, sr);

	*why = "its super root is not one of its delta";
	if (err || !si->vsi_xlate)
		return err;
	*why = "its translation super root is not one of a later delta";
	if (!snap_blk_valid(&v->v_geo, si->vsi_xlate))
		return -EUCLEAN;
	err = vol_sroot_load(v, si->vsi_xlate, &xr);
	if (!err && (xr.sr_delta < si->vsi_delta || !snap_sroot_fits(v, &xr)))
		err = -EUCLEAN;
	if (err)
		return err;
	sr->sr_dat_root = xr.sr_dat_root;
	sr->sr_dat_height = xr.sr_dat_height;
	sr->sr_dat_next = xr.sr_dat_next;
	sr->sr_moved = xr.sr_moved;
	return 0;
}

/* vol_open: the state of super root @sroot (@sr) in place of the newest. */
static void snap_open_state(struct vol *v, uint64_t sroot, const struct vol_sroot *sr)
{
	v->v_sr = *sr;
	/* its segment usage and checkpoint files are nobody's: no snapshot
	 * keeps them (suf.c, ckpt.c); lookups go to the newest state's */
	v->v_sr.sr_suf_root = 0;
	v->v_sr.sr_suf_height = 0;
	v->v_sr.sr_suf_current = false;
	v->v_sr.sr_ckpt_root = 0;
	v->v_sr.sr_ckpt_height = 0;
	v->v_sr.sr_ckpt_from = v->v_sr.sr_ckpt_next = 0;
	v->v_sr_blk = sroot;
	v->v_otab = (struct bmap_tree){VOL_OTAB_OWNER, sr->sr_otab_root, sr->sr_otab_height,
				       sr->sr_otab_height, false};
	/* its own translation, or its translation super root's (vol_snap_state) */
	v->v_dat = (struct bmap_tree){VOL_DAT_OWNER, sr->sr_dat_root, sr->sr_dat_height,
				      sr->sr_dat_height, false};
	dat_open(v);
	atomic_store(&v->v_committed, sr->sr_delta);
}

int vol_open_snapshot(struct vol *v, const char *name, vol_snap_find_fn *find, void *arg)
{
	struct vol_snap_info si = {0};
	struct vol_sroot sr;
	const char *why;
	int err;

	/* first the pin, then the record: no deletion can come in between */
	SYNC_POINT("vol.snap.open.pin");
	err = bdev_pin(v->v_bdev, snap_pin_key(name), BDEV_PIN_SHARED);
	SYNC_POINT("vol.snap.open.pinned");
	/* then no re-root: one under way ends first (vol_snap_reroot_key) */
	SYNC_POINT("vol.snap.open.wait");
	if (!err)
		err = bdev_pin(v->v_bdev, vol_snap_reroot_key(name), BDEV_PIN_SHARED_WAIT);
	if (!err)
		err = find
			  ? find(arg, name, &si.vsi_sroot, &si.vsi_delta, &si.vsi_xlate)
			  : snap_find_counted(v, name, &si.vsi_sroot, &si.vsi_delta, &si.vsi_xlate);
	if (err)
		return err;
	err = vol_snap_state(v, &si, &sr, &why);
	if (err == -EUCLEAN)
		log_err("vol: snapshot \"%s\" (super root %" PRIu64 ", delta %" PRIu64
			", translation super root %" PRIu64 "): %s",
			name, si.vsi_sroot, si.vsi_delta, si.vsi_xlate, why);
	if (err)
		return err;
	snap_open_state(v, si.vsi_sroot, &sr);
	return 0;
}

/* ---- recent checkpoints ------------------------------------------------- */

/* The one walk of the chain (vol_internal.h), for listing, finding, and the open's count. */
int vol_ckpt_walk(struct vol *v, uint64_t blk, uint64_t from, vol_ckpt_fn *fn, void *arg)
{
	uint64_t newer = UINT64_MAX;
	bool first = true;

	while (blk) {
		struct vol_sroot sr;
		struct vol_checkpoint cp;
		int err = vol_sroot_load(v, blk, &sr);

		if (!err && !snap_sroot_fits(v, &sr)) {
			/* checksummed, but not this volume's */
			log_err("vol: super root at block %" PRIu64 " (delta %" PRIu64
				") does not fit the volume: the checkpoint chain ends there",
				blk, sr.sr_delta);
			err = -EUCLEAN;
		}
		if (err)
			return first ? err : 0;
		if (sr.sr_delta >= newer || sr.sr_delta < from || !sr.sr_otab_height)
			return 0; /* the oldest, or the empty volume mkfs wrote: nothing to read */
		cp = (struct vol_checkpoint){sr.sr_delta, blk, sr.sr_time_ns};
		err = fn(arg, &cp, &sr);
		if (err)
			return err;
		first = false;
		newer = sr.sr_delta;
		blk = sr.sr_prev;
	}
	return 0;
}

struct ckpt_list {
	struct vol_checkpoint *cl_v;
	size_t cl_n, cl_cap, cl_max;
};

static int ckpt_list_add(void *arg, const struct vol_checkpoint *cp, const struct vol_sroot *sr)
{
	struct ckpt_list *cl = arg;

	(void)sr;
	if (cl->cl_n == cl->cl_max)
		return 1;
	if (cl->cl_n == cl->cl_cap) {
		size_t cap = cl->cl_cap ? cl->cl_cap * 2 : 64;
		struct vol_checkpoint *nv = realloc(cl->cl_v, cap * sizeof(*nv));

		if (!nv)
			return -ENOMEM;
		cl->cl_v = nv;
		cl->cl_cap = cap;
	}
	cl->cl_v[cl->cl_n++] = *cp;
	return 0;
}

/* vol_ckpt_walk from the newest durable super root down to the floor. */
static int vol_checkpoints_walk(struct vol *v, vol_ckpt_fn *fn, void *arg)
{
	struct vol_usage *u = &v->v_usage;
	uint64_t blk, from;

	if (v->v_snapshot || !u->vu_live) { /* a state that does not change */
		blk = v->v_sr_blk;
		from = v->v_sr.sr_readable_from;
	} else { /* the commit moves both on: the counts' copies */
		cmutex_lock(&u->vu_lock);
		blk = u->vu_sr_blk;
		from = u->vu_readable_from;
		cmutex_unlock(&u->vu_lock);
	}
	return vol_ckpt_walk(v, blk, from, fn, arg);
}

int vol_checkpoints(struct vol *v, size_t max, struct vol_checkpoint **out, size_t *n)
{
	struct ckpt_list cl = {.cl_max = max};
	int err;

	*out = NULL;
	*n = 0;
	err = vol_checkpoints_walk(v, ckpt_list_add, &cl);
	if (err < 0) {
		free(cl.cl_v);
		return err;
	}
	*out = cl.cl_v;
	*n = cl.cl_n;
	return 0;
}

struct ckpt_find_arg {
	uint64_t cf_delta;
	struct vol_checkpoint cf_found;
};

static int ckpt_find_one(void *arg, const struct vol_checkpoint *cp, const struct vol_sroot *sr)
{
	struct ckpt_find_arg *cf = arg;

	(void)sr;
	if (cp->vcp_delta > cf->cf_delta)
		return 0;
	if (cp->vcp_delta < cf->cf_delta)
		return -ENOENT; /* deltas a failed commit skipped */
	cf->cf_found = *cp;
	return 1;
}

/* The readable floor the listing starts from (vol_checkpoints_walk's). */
static uint64_t ckpt_floor(struct vol *v)
{
	struct vol_usage *u = &v->v_usage;
	uint64_t from;

	if (v->v_snapshot || !u->vu_live)
		return v->v_sr.sr_readable_from;
	cmutex_lock(&u->vu_lock);
	from = u->vu_readable_from;
	cmutex_unlock(&u->vu_lock);
	return from;
}

/*
 * Readable checkpoint @delta into @found: 0, -ENOENT (none) or a read's
 * error. The checkpoint file holds it if it is in the file's range (one
 * block and the super root read: ckpt.c); else the chain is walked.
 */
static int ckpt_find(struct vol *v, uint64_t delta, struct vol_checkpoint *found)
{
	struct ckpt_find_arg cf = {.cf_delta = delta};
	/* next first: the settle stores from first, so a range read across
	 * it is one of the two, or within both */
	uint64_t next = atomic_load(&v->v_ckpt_next), from = atomic_load(&v->v_ckpt_from);
	int err;

	if (from && delta >= from && delta < next && delta >= ckpt_floor(v)) {
		struct vol_ckpt_entry e;
		struct vol_sroot sr;

		err = vol_ckpt_lookup(v, delta, &e);
		if (err)
			return err;
		if (!e.ce_sroot)
			return -ENOENT; /* no such checkpoint (ckpt.c (1)) */
		/* checked as the chain checks each: else it ends there */
		err = vol_snap_sroot(v, e.ce_sroot, delta, &sr);
		if (err == -EUCLEAN)
			log_err("vol: the checkpoint file names block %" PRIu64
				" for delta %" PRIu64 ", not its super root",
				e.ce_sroot, delta);
		if (err)
			return err == -EUCLEAN ? -ENOENT : err;
		*found = (struct vol_checkpoint){delta, e.ce_sroot, e.ce_time_ns};
		return 0;
	}
	err = vol_checkpoints_walk(v, ckpt_find_one, &cf);

	if (err == 1)
		*found = cf.cf_found;
	return err == 1 ? 0 : err ? err : -ENOENT; /* 0: older than the floor, or past the newest */
}

int vol_open_checkpoint(struct vol *v, uint64_t delta)
{
	struct vol_checkpoint cp;
	struct vol_sroot sr;
	int err = ckpt_find(v, delta, &cp); /* v_snapshot: from v_sr, down to its floor */

	if (err == -ENOENT) {
		uint64_t blk;

		vol_sr_get(v, &sr, &blk);
		log_err("vol: checkpoint %" PRIu64 " is not readable (the newest is %" PRIu64
			", the oldest readable %" PRIu64 ")",
			delta, sr.sr_delta, sr.sr_readable_from);
	}
	if (!err)
		err = vol_snap_sroot(v, cp.vcp_sroot, delta, &sr);
	if (err)
		return err;
	snap_open_state(v, cp.vcp_sroot, &sr);
	return 0;
}

/*
 * punch.c - punches waiting for their delta's commit.
 *
 * vol_punch cannot change the map (only the commit does), so it records
 * (owner, index, delta) here; the commit of that delta clears the map
 * entry before it lays out the delta's writes, then forgets the record.
 * Until then the record answers two questions:
 *
 *   - a fill of the block (vol.c) must give zeros, not what the map
 *     still names (vol_punch_pending, any delta);
 *   - the commit must not write the block's cached buffer, which holds
 *     the zeros the punch left (vol_punch_zeroed, this delta, "zeroed").
 *
 * A write of the block in the same delta cancels the record (the write
 * is newer); vol.c makes the cancel and the punch's own record happen
 * inside the buffer's modification, so for every block the record says
 * "zeroed" exactly when a punch was the block's last change in the delta.
 * A write in a later delta marks the older records of the block "newer".
 * After a failed commit the records move to the next delta, "zeroed"
 * only if no later write came (not "newer"): the punch must still be
 * applied (before that delta's writes, which are newer), and the buffer
 * still holds the punch's zeros unless a newer write changed it. So a
 * requeued punch or truncate never makes the next commit write a block
 * of zeros its transaction did not reserve.
 *
 * Truncates (vol_truncate) are recorded the same way, one record per
 * (owner, delta) holding the lowest index truncated from: a fill of a
 * block at or past it gives zeros until the commit prunes the map
 * (vol_punch_pending), and the commit collects them (vol_trunc_collect)
 * before the punches. The truncate's cached blocks each get a punch
 * record ("zeroed"), so the commit does not write them.
 *
 * Invariants
 *   (1) At most one record per (owner, index, delta).
 *   (2) vp_count is the number of records; it changes only under vp_lock
 *       and may be read without it to skip the lock when it is 0.
 *   (3) Records of a delta are removed only after its commit set the map
 *       entries (the map then says hole), or moved by a failed commit.
 *   (4) A record is "zeroed" only while the block's cached buffer, if
 *       any, holds the punch's zeros as its newest content in the
 *       record's delta: a write in that delta removes the record, one in
 *       a later delta sets "newer", which a requeue turns into not zeroed.
 *   (5) At most one truncate record per (owner, delta); vp_ntrunc counts
 *       them like vp_count. They are hashed by owner alone (a fill asks
 *       "is this owner truncated at or below this index", and a bulk
 *       delete records thousands in one delta), so finding one costs a
 *       chain, not every record.
 *
 * Lock order: vp_lock is a leaf, taken inside buffer modifications.
 */
#include "vol/vol_internal.h"

#include <stdlib.h>
#include <xxhash.h>

struct vol_punch_rec {
	uint64_t pr_owner;
	uint64_t pr_index;
	uint32_t pr_delta;
	bool pr_zeroed;
	bool pr_newer; /* a later delta wrote the block */
	struct vol_punch_rec *pr_next;
};

/* A truncate of pr_owner from pr_index on (vp_truncs). */
struct vol_trunc_rec {
	uint64_t tr_owner;
	uint64_t tr_from;
	uint32_t tr_delta;
	struct vol_trunc_rec *tr_next;
};

#define VOL_TRUNC_BUCKETS 1024u

int vol_punches_init(struct vol_punches *p)
{
	p->vp_nbuckets = 256;
	p->vp_buckets = calloc(p->vp_nbuckets, sizeof(*p->vp_buckets));
	p->vp_truncs = calloc(VOL_TRUNC_BUCKETS, sizeof(*p->vp_truncs));
	if (!p->vp_buckets || !p->vp_truncs) {
		free(p->vp_buckets);
		free(p->vp_truncs);
		p->vp_buckets = NULL;
		p->vp_truncs = NULL;
		return -ENOMEM;
	}
	atomic_init(&p->vp_count, 0);
	atomic_init(&p->vp_ntrunc, 0);
	return cmutex_init(&p->vp_lock);
}

void vol_punches_destroy(struct vol_punches *p)
{
	for (size_t i = 0; p->vp_buckets && i < p->vp_nbuckets; i++) {
		struct vol_punch_rec *r, *next;

		for (r = p->vp_buckets[i]; r; r = next) {
			next = r->pr_next;
			free(r);
		}
	}
	for (size_t i = 0; p->vp_truncs && i < VOL_TRUNC_BUCKETS; i++) {
		while (p->vp_truncs[i]) {
			struct vol_trunc_rec *t = p->vp_truncs[i];

			p->vp_truncs[i] = t->tr_next;
			free(t);
		}
	}
	free(p->vp_truncs);
	p->vp_truncs = NULL;
	free(p->vp_buckets);
	if (p->vp_buckets)
		cmutex_destroy(&p->vp_lock);
	p->vp_buckets = NULL;
}

/* The chain of @owner's truncate records (invariant 5). */
static struct vol_trunc_rec **vol_trunc_bucket(struct vol_punches *p, uint64_t owner)
{
	assert(cmutex_held(&p->vp_lock));
	return &p->vp_truncs[XXH3_64bits(&owner, sizeof(owner)) & (VOL_TRUNC_BUCKETS - 1)];
}

static struct vol_punch_rec **vol_punch_bucket(struct vol_punches *p, uint64_t owner,
					       uint64_t index)
{
	uint64_t key[2] = {owner, index};

	assert(cmutex_held(&p->vp_lock));
	return &p->vp_buckets[XXH3_64bits(key, sizeof(key)) & (p->vp_nbuckets - 1)];
}

/* The link to the record of (owner, index, delta), or to the chain's end. */
static struct vol_punch_rec **vol_punch_find_locked(struct vol_punches *p, uint64_t owner,
						    uint64_t index, uint32_t delta)
{
	struct vol_punch_rec **pp = vol_punch_bucket(p, owner, index);

	while (*pp &&
	       ((*pp)->pr_owner != owner || (*pp)->pr_index != index || (*pp)->pr_delta != delta))
		pp = &(*pp)->pr_next;
	return pp;
}

/* Double the buckets when the chains grow long (best effort). */
static void vol_punch_grow_locked(struct vol_punches *p)
{
	size_t n = p->vp_nbuckets * 2, old_n = p->vp_nbuckets;
	struct vol_punch_rec **old = p->vp_buckets, *r, *next;

	if (atomic_load(&p->vp_count) < 2 * old_n)
		return;
	p->vp_buckets = calloc(n, sizeof(*p->vp_buckets));
	if (!p->vp_buckets) {
		p->vp_buckets = old;
		return;
	}
	p->vp_nbuckets = n;
	for (size_t i = 0; i < old_n; i++) {
		for (r = old[i]; r; r = next) {
			struct vol_punch_rec **pp = vol_punch_bucket(p, r->pr_owner, r->pr_index);

			next = r->pr_next;
			r->pr_next = *pp;
			*pp = r;
		}
	}
	free(old);
}

/* Add or update a record; vp_lock held. */
static int vol_punch_add_locked(struct vol_punches *p, uint64_t owner, uint64_t index,
				uint32_t delta, bool zeroed)
{
	struct vol_punch_rec **pp = vol_punch_find_locked(p, owner, index, delta), *r;

	if (*pp) {
		(*pp)->pr_zeroed |= zeroed;
		return 0;
	}
	r = malloc(sizeof(*r));
	if (!r)
		return -ENOMEM;
	*r = (struct vol_punch_rec){owner, index, delta, zeroed, false, NULL};
	*pp = r;
	atomic_fetch_add(&p->vp_count, 1);
	vol_punch_grow_locked(p);
	return 0;
}

int vol_punch_add(struct vol_punches *p, uint64_t owner, uint64_t index, uint32_t delta,
		  bool zeroed)
{
	int err;

	cmutex_lock(&p->vp_lock);
	err = vol_punch_add_locked(p, owner, index, delta, zeroed);
	cmutex_unlock(&p->vp_lock);
	return err;
}

void vol_punch_cancel(struct vol_punches *p, uint64_t owner, uint64_t index, uint32_t delta)
{
	struct vol_punch_rec **pp, *r;

	if (!atomic_load(&p->vp_count))
		return; /* (2): a punch recorded later happens after this write */
	cmutex_lock(&p->vp_lock);
	pp = vol_punch_bucket(p, owner, index);
	while ((r = *pp)) {
		if (r->pr_owner != owner || r->pr_index != index) {
			pp = &r->pr_next;
		} else if (r->pr_delta == delta) {
			*pp = r->pr_next;
			atomic_fetch_sub(&p->vp_count, 1);
			free(r);
		} else {
			r->pr_newer = true; /* an older delta's: this write is newer */
			pp = &r->pr_next;
		}
	}
	cmutex_unlock(&p->vp_lock);
}

bool vol_punch_pending(struct vol_punches *p, uint64_t owner, uint64_t index)
{
	struct vol_punch_rec *r;
	struct vol_trunc_rec *t;
	bool found = false;

	if (!atomic_load(&p->vp_count) && !atomic_load(&p->vp_ntrunc))
		return false;
	cmutex_lock(&p->vp_lock);
	for (r = *vol_punch_bucket(p, owner, index); r && !found; r = r->pr_next)
		found = r->pr_owner == owner && r->pr_index == index;
	for (t = *vol_trunc_bucket(p, owner); t && !found; t = t->tr_next)
		found = t->tr_owner == owner && t->tr_from <= index;
	cmutex_unlock(&p->vp_lock);
	return found;
}

/* The link to the truncate record of (owner, delta), or to the list's end. */
static struct vol_trunc_rec **vol_trunc_find_locked(struct vol_punches *p, uint64_t owner,
						    uint32_t delta)
{
	struct vol_trunc_rec **pp = vol_trunc_bucket(p, owner);

	assert(cmutex_held(&p->vp_lock));
	while (*pp && ((*pp)->tr_owner != owner || (*pp)->tr_delta != delta))
		pp = &(*pp)->tr_next;
	return pp;
}

/* Add a truncate record, or lower the one of (owner, delta); vp_lock held. */
static int vol_trunc_add_locked(struct vol_punches *p, uint64_t owner, uint64_t from,
				uint32_t delta)
{
	struct vol_trunc_rec **pp = vol_trunc_find_locked(p, owner, delta), *t;

	if (*pp) {
		(*pp)->tr_from = MIN((*pp)->tr_from, from);
		return 0;
	}
	t = malloc(sizeof(*t));
	if (!t)
		return -ENOMEM;
	*t = (struct vol_trunc_rec){owner, from, delta, NULL};
	*pp = t;
	atomic_fetch_add(&p->vp_ntrunc, 1);
	return 0;
}

int vol_trunc_add(struct vol_punches *p, uint64_t owner, uint64_t from, uint32_t delta)
{
	int err;

	cmutex_lock(&p->vp_lock);
	err = vol_trunc_add_locked(p, owner, from, delta);
	cmutex_unlock(&p->vp_lock);
	return err;
}

int vol_trunc_collect(struct vol_punches *p, uint32_t delta, struct vol_punch_key **keys, size_t *n)
{
	struct vol_punch_key *k = NULL;
	struct vol_trunc_rec *t;
	size_t got = 0;
	int err = 0;

	cmutex_lock(&p->vp_lock);
	if (atomic_load(&p->vp_ntrunc)) {
		k = malloc(atomic_load(&p->vp_ntrunc) * sizeof(*k));
		if (!k)
			err = -ENOMEM;
		for (size_t i = 0; k && i < VOL_TRUNC_BUCKETS; i++)
			for (t = p->vp_truncs[i]; t; t = t->tr_next)
				if (t->tr_delta == delta)
					k[got++] = (struct vol_punch_key){t->tr_owner, t->tr_from};
	}
	cmutex_unlock(&p->vp_lock);
	*keys = k;
	*n = got;
	return err;
}

/* Forget @delta's truncates, or move them to @to (if not 0); vp_lock held. */
static void vol_trunc_move_locked(struct vol_punches *p, uint32_t delta, uint32_t to)
{
	struct vol_trunc_rec **pp, *t, *moved = NULL;

	for (size_t i = 0; i < VOL_TRUNC_BUCKETS; i++) {
		pp = &p->vp_truncs[i];
		while ((t = *pp)) {
			if (t->tr_delta != delta) {
				pp = &t->tr_next;
				continue;
			}
			*pp = t->tr_next;
			atomic_fetch_sub(&p->vp_ntrunc, 1);
			t->tr_next = moved;
			moved = t;
		}
	}
	while ((t = moved)) {
		moved = t->tr_next;
		/* merged into (owner, to)'s record if there is one: no allocation */
		pp = vol_trunc_find_locked(p, t->tr_owner, to);
		if (!to || *pp) {
			if (to)
				(*pp)->tr_from = MIN((*pp)->tr_from, t->tr_from);
			free(t);
			continue;
		}
		t->tr_delta = to;
		t->tr_next = NULL;
		*pp = t;
		atomic_fetch_add(&p->vp_ntrunc, 1);
	}
}

bool vol_punch_zeroed(struct vol_punches *p, uint64_t owner, uint64_t index, uint32_t delta)
{
	struct vol_punch_rec *r;
	bool zeroed;

	if (!atomic_load(&p->vp_count))
		return false;
	cmutex_lock(&p->vp_lock);
	r = *vol_punch_find_locked(p, owner, index, delta);
	zeroed = r && r->pr_zeroed;
	cmutex_unlock(&p->vp_lock);
	return zeroed;
}

/* Call @fn on every record of @delta (which it may unlink through *pp). */
static int vol_punch_each_locked(struct vol_punches *p, uint32_t delta,
				 int (*fn)(struct vol_punches *p, struct vol_punch_rec **pp,
					   void *arg),
				 void *arg)
{
	int err = 0;

	for (size_t i = 0; i < p->vp_nbuckets && !err; i++) {
		struct vol_punch_rec **pp = &p->vp_buckets[i];

		while (*pp && !err) {
			struct vol_punch_rec *r = *pp;

			if (r->pr_delta == delta)
				err = fn(p, pp, arg);
			if (*pp == r)
				pp = &r->pr_next;
		}
	}
	return err;
}

struct vol_punch_vec {
	struct vol_punch_key *pv_keys;
	size_t pv_n;
};

static int vol_punch_collect_one(struct vol_punches *p, struct vol_punch_rec **pp, void *arg)
{
	struct vol_punch_vec *pv = arg;

	(void)p;
	pv->pv_keys[pv->pv_n++] = (struct vol_punch_key){(*pp)->pr_owner, (*pp)->pr_index};
	return 0;
}

int vol_punch_collect(struct vol_punches *p, uint32_t delta, struct vol_punch_key **keys, size_t *n)
{
	struct vol_punch_vec pv = {NULL, 0};
	int err = 0;

	cmutex_lock(&p->vp_lock);
	if (atomic_load(&p->vp_count)) {
		pv.pv_keys = malloc(atomic_load(&p->vp_count) * sizeof(*pv.pv_keys));
		if (pv.pv_keys)
			vol_punch_each_locked(p, delta, vol_punch_collect_one, &pv);
		else
			err = -ENOMEM;
	}
	cmutex_unlock(&p->vp_lock);
	*keys = pv.pv_keys;
	*n = pv.pv_n;
	return err;
}

static int vol_punch_forget_one(struct vol_punches *p, struct vol_punch_rec **pp, void *arg)
{
	struct vol_punch_rec *r = *pp;

	(void)arg;
	*pp = r->pr_next;
	atomic_fetch_sub(&p->vp_count, 1);
	free(r);
	return 0;
}

void vol_punch_forget(struct vol_punches *p, uint32_t delta)
{
	cmutex_lock(&p->vp_lock);
	vol_punch_each_locked(p, delta, vol_punch_forget_one, NULL);
	vol_trunc_move_locked(p, delta, 0);
	cmutex_unlock(&p->vp_lock);
}

static int vol_punch_unlink_one(struct vol_punches *p, struct vol_punch_rec **pp, void *arg)
{
	struct vol_punch_rec *r = *pp, **moved = arg;

	*pp = r->pr_next;
	atomic_fetch_sub(&p->vp_count, 1);
	r->pr_next = *moved;
	*moved = r;
	return 0;
}

/* Link unlinked record @r, or merge it into the record it duplicates. */
static void vol_punch_link_locked(struct vol_punches *p, struct vol_punch_rec *r)
{
	struct vol_punch_rec **pp = vol_punch_find_locked(p, r->pr_owner, r->pr_index, r->pr_delta);

	if (*pp) {
		(*pp)->pr_zeroed |= r->pr_zeroed;
		(*pp)->pr_newer |= r->pr_newer;
		free(r);
		return;
	}
	r->pr_next = NULL;
	*pp = r;
	atomic_fetch_add(&p->vp_count, 1);
}

void vol_punch_requeue(struct vol_punches *p, uint32_t from, uint32_t to)
{
	struct vol_punch_rec *moved = NULL, *r;

	cmutex_lock(&p->vp_lock);
	vol_punch_each_locked(p, from, vol_punch_unlink_one, &moved);
	while ((r = moved)) {
		moved = r->pr_next;
		r->pr_delta = to;
		r->pr_zeroed &= !r->pr_newer; /* the buffer holds a newer write */
		vol_punch_link_locked(p, r);
	}
	vol_trunc_move_locked(p, from, to);
	cmutex_unlock(&p->vp_lock);
}

/*
 * table.c - a small hash table keyed by (owner, index), for the commit's
 * bookkeeping (the map blocks it dirtied, the owner maps it changed).
 *
 * Open addressing with linear probing, at most half full, no removal: a
 * commit only adds, then empties the table at its end.
 *
 * Invariants
 *   (1) vt_cap is 0 or a power of two, and vt_n <= vt_cap / 2.
 *   (2) A slot is empty iff its kv_val is NULL.
 *
 * Not thread safe: a table belongs to one thread (the commit's).
 */
#include "vol/vol_internal.h"

#include <stdlib.h>
#include <xxhash.h>

static size_t vol_table_slot(const struct vol_table *t, uint64_t owner, uint64_t index)
{
	uint64_t key[2] = {owner, index};

	return (size_t)XXH3_64bits(key, sizeof(key)) & (t->vt_cap - 1);
}

static struct vol_kv *vol_table_find(const struct vol_table *t, uint64_t owner, uint64_t index)
{
	size_t i;

	if (!t->vt_cap)
		return NULL;
	for (i = vol_table_slot(t, owner, index);; i = (i + 1) & (t->vt_cap - 1)) {
		struct vol_kv *kv = &t->vt_slots[i];

		if (!kv->kv_val || (kv->kv_owner == owner && kv->kv_index == index))
			return kv;
	}
}

void *vol_table_get(const struct vol_table *t, uint64_t owner, uint64_t index)
{
	struct vol_kv *kv = vol_table_find(t, owner, index);

	return kv ? kv->kv_val : NULL;
}

static int vol_table_grow(struct vol_table *t)
{
	struct vol_table bigger = {.vt_cap = t->vt_cap ? t->vt_cap * 2 : 64};

	bigger.vt_slots = calloc(bigger.vt_cap, sizeof(*bigger.vt_slots));
	if (!bigger.vt_slots)
		return -ENOMEM;
	for (size_t i = 0; i < t->vt_cap; i++) {
		struct vol_kv *kv = &t->vt_slots[i];

		if (kv->kv_val)
			*vol_table_find(&bigger, kv->kv_owner, kv->kv_index) = *kv;
	}
	bigger.vt_n = t->vt_n;
	free(t->vt_slots);
	*t = bigger;
	return 0;
}

int vol_table_put(struct vol_table *t, uint64_t owner, uint64_t index, void *val)
{
	struct vol_kv *kv;
	int err;

	assert(val && !vol_table_get(t, owner, index));
	if ((t->vt_n + 1) * 2 > t->vt_cap && (err = vol_table_grow(t)))
		return err;
	kv = vol_table_find(t, owner, index);
	*kv = (struct vol_kv){owner, index, val};
	t->vt_n++;
	return 0;
}

int vol_table_set(struct vol_table *t, uint64_t owner, uint64_t index, void *val)
{
	struct vol_kv *kv = vol_table_find(t, owner, index);

	assert(val);
	if (kv && kv->kv_val) {
		kv->kv_val = val;
		return 0;
	}
	return vol_table_put(t, owner, index, val);
}

void vol_table_each(struct vol_table *t, void (*fn)(void *val))
{
	for (size_t i = 0; i < t->vt_cap; i++)
		if (t->vt_slots[i].kv_val)
			fn(t->vt_slots[i].kv_val);
}

void vol_table_clear(struct vol_table *t, void (*fn)(void *val))
{
	for (size_t i = 0; fn && i < t->vt_cap; i++)
		if (t->vt_slots[i].kv_val)
			fn(t->vt_slots[i].kv_val);
	free(t->vt_slots);
	*t = (struct vol_table){0};
}

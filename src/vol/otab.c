/*
 * otab.c - the owner table: where each owner's block map starts.
 *
 * The owner table is the data of owner 1 (VOL_OTAB_OWNER): 64-byte owner
 * records, block_size / 64 per block, the record of owner o in block
 * o / per_block at offset (o % per_block) * 64. A record holds the root
 * block and height of the owner's map and flags; the rest of its 64
 * bytes is reserved (zero) for the inode fields of the namespace layer.
 * The table's own blocks are found through owner 1's block map, like any
 * owner's, whose root is in the super root (v_otab in memory).
 *
 *   super root --otab root--> owner 1's map --> owner-table block
 *     --record of owner o--> owner o's map --> owner o's data
 *
 * A never-written record (all zero) is an owner without blocks.
 *
 * Invariants
 *   (1) A record changes only in the commit, under bm_lock exclusive
 *       (bmap.c (1)), and only when the owner's new root is placed (a map
 *       block, or at height 0 data block 0 once it has an address) or
 *       the owner is emptied: a record always names a complete map.
 *   (2) Readers copy a record under bm_lock shared, after checking that
 *       their walk is still valid.
 *
 * Lock order: as bmap.c (bm_lock never held while getting a buffer).
 */
#include "vol/vol_internal.h"

#include <endian.h>
#include <inttypes.h>
#include <string.h>

static uint64_t otab_block_of(const struct vol *v, uint64_t owner)
{
	return owner / v->v_recs_per_block;
}

static size_t otab_offset(const struct vol *v, uint64_t owner)
{
	return (size_t)(owner % v->v_recs_per_block) * VOL_REC_SIZE;
}

static void otab_rec_decode(const void *block, size_t off, struct vol_rec *rec)
{
	const unsigned char *p = (const unsigned char *)block + off;
	uint64_t root;

	memcpy(&root, p, sizeof(root));
	rec->vr_root = le64toh(root);
	rec->vr_height = p[8];
	rec->vr_flags = p[9];
}

static void otab_rec_encode(void *block, size_t off, const struct vol_rec *rec)
{
	unsigned char *p = (unsigned char *)block + off;
	uint64_t root = htole64(rec->vr_root);

	memcpy(p, &root, sizeof(root));
	p[8] = rec->vr_height;
	p[9] = rec->vr_flags;
}

/*
 * -EUCLEAN (logged) if @rec cannot be a record of @owner: a tree with map
 * blocks has a root (height 0 with a root: the root is data block 0).
 */
static int otab_rec_check(const struct vol *v, uint64_t owner, const struct vol_rec *rec)
{
	if (rec->vr_height <= v->v_height_max && (rec->vr_root || !rec->vr_height))
		return 0;
	log_err("vol: owner %" PRIu64 ": bad owner record (height %u, root %" PRIu64 ")", owner,
		rec->vr_height, rec->vr_root);
	return -EUCLEAN;
}

int otab_read(struct vol *v, struct bmap_walk *w, const struct bmap_root *otab, uint64_t owner,
	      struct bmap_root *root)
{
	uint64_t blk = otab_block_of(v, owner), pblk;
	struct vol_rec rec = {0};
	struct buf *b;
	int err;

	err = bmap_lookup(w, VOL_OTAB_OWNER, otab, 0, blk, &pblk);
	if (err || !pblk)
		goto out;
	err = bmap_read_block(w, VOL_OTAB_OWNER, blk, pblk, &b);
	if (err)
		goto out;
	pthread_rwlock_rdlock(&v->v_map.bm_lock);
	if (bmap_walk_valid_locked(w))
		otab_rec_decode(buf_data(b), otab_offset(v, owner), &rec);
	else
		err = -EAGAIN;
	pthread_rwlock_unlock(&v->v_map.bm_lock);
	buf_put(b);
	if (!err)
		err = otab_rec_check(v, owner, &rec);
out:
	root->br_pblk = rec.vr_root;
	root->br_height = rec.vr_height;
	return err;
}

int otab_load(struct vol *v, uint64_t owner, struct vol_rec *rec)
{
	struct buf *b;
	int err;

	*rec = (struct vol_rec){0};
	err = bmap_get_block(&v->v_map, &v->v_otab, otab_block_of(v, owner), false, &b);
	if (err || !b)
		return err;
	otab_rec_decode(buf_data(b), otab_offset(v, owner), rec);
	buf_put(b);
	err = otab_rec_check(v, owner, rec);
	if (err)
		*rec = (struct vol_rec){0};
	return err;
}

struct otab_put {
	size_t op_off;
	const struct vol_rec *op_rec;
};

static void otab_put(void *arg, void *data)
{
	const struct otab_put *op = arg;

	otab_rec_encode(data, op->op_off, op->op_rec);
}

int otab_store(struct vol *v, const struct bmap_change *ch, uint64_t owner,
	       const struct vol_rec *rec)
{
	struct otab_put op = {otab_offset(v, owner), rec};

	return bmap_change_block(&v->v_map, &v->v_otab, ch, otab_block_of(v, owner), otab_put, &op);
}

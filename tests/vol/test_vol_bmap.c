/*
 * test_vol_bmap.c - block maps (bmap.c) directly on a buffer cache.
 *
 * A tiny stand-in for the commit lays map blocks out on an in-memory
 * "disk" bottom up (bmap_place), as commit.c does through the log, so
 * the trees can be read back from the cache and, after dropping every
 * cached map block, through hinted fills. Proves: an empty tree and
 * unset entries are holes; entries set at every level read back, up to
 * VOL_MAX_INDEX, at 4 KiB and at 512-byte blocks; the tree grows with
 * the old root as entry 0 of the new one; clearing an entry; and a walk
 * that read an address before a commit moved the block refuses it
 * (-EAGAIN) without leaving the old copy in the cache (bmap.c (5)); and
 * every block a change leaves behind is reported once (bc_gone); an
 * owner of block 0 alone needs no map block (a tree of height 0).
 */
#include "harness.h"
#include "vol_fixture.h"

#include "vol/vol_internal.h"

#include <stdlib.h>
#include <string.h>

#define OWNER	    100
#define DISK_BLOCKS 4096
#define PBLK_BASE   1000

struct mfix {
	uint32_t mf_bs;
	struct buf_cache *mf_cache;
	struct bmap mf_map;
	struct bmap_tree mf_tree;
	unsigned char *mf_disk[DISK_BLOCKS]; /* by pblk - PBLK_BASE */
	uint64_t mf_next;		     /* next free pblk */
	_Atomic uint64_t mf_fills;
	struct buf *mf_noted[1024]; /* dirtied map blocks, referenced */
	unsigned mf_nnoted;
	uint64_t mf_gone[64]; /* blocks changes left behind (bc_gone) */
	unsigned mf_ngone;
	unsigned mf_roots;  /* roots told (bc_root) */
	int mf_root_err;    /* the next bc_root fails with it */
	uint64_t mf_record; /* the owner's record: the last root told */
	uint8_t mf_record_height;
	uint32_t mf_delta;
};

static int mf_fill(void *ctx, struct buf *b, void *data, uint64_t hint)
{
	struct mfix *f = ctx;

	assert_int_equal(buf_owner(b), OWNER);
	atomic_fetch_add(&f->mf_fills, 1);
	assert_true(hint != BUF_NO_HINT); /* map blocks are always read at an address */
	assert_true(hint >= PBLK_BASE && hint < f->mf_next);
	memcpy(data, f->mf_disk[hint - PBLK_BASE], f->mf_bs);
	return bmap_hint_check(&f->mf_map);
}

static const struct buf_ops mf_ops = {.bo_fill = mf_fill};

static struct mfix *mf_new(uint32_t bs)
{
	struct mfix *f = calloc(1, sizeof(*f));
	struct buf_cache_config bc = {bs, 512, &mf_ops, NULL};

	assert_non_null(f);
	bc.bcc_ctx = f;
	f->mf_bs = bs;
	f->mf_next = PBLK_BASE;
	f->mf_delta = 1;
	assert_int_equal(buf_cache_create(&bc, &f->mf_cache), 0);
	assert_int_equal(bmap_init(&f->mf_map, f->mf_cache), 0);
	f->mf_tree = (struct bmap_tree){.bt_owner = OWNER};
	return f;
}

static void mf_free(struct mfix *f)
{
	assert_int_equal(f->mf_nnoted, 0);
	bmap_destroy(&f->mf_map);
	buf_cache_destroy(f->mf_cache);
	for (unsigned i = 0; i < DISK_BLOCKS; i++)
		free(f->mf_disk[i]);
	free(f);
}

static int mf_note(void *arg, struct buf *b)
{
	struct mfix *f = arg;

	for (unsigned i = 0; i < f->mf_nnoted; i++)
		if (f->mf_noted[i] == b)
			return 0;
	assert_true(f->mf_nnoted < ARRAY_SIZE(f->mf_noted));
	buf_hold(b);
	f->mf_noted[f->mf_nnoted++] = b;
	return 0;
}

static int mf_gone(void *arg, uint64_t owner, uint64_t pblk)
{
	struct mfix *f = arg;

	assert_int_equal(owner, OWNER);
	assert_true(f->mf_ngone < ARRAY_SIZE(f->mf_gone));
	f->mf_gone[f->mf_ngone++] = pblk;
	return 0;
}

static int mf_root(void *arg, const struct bmap_tree *t)
{
	struct mfix *f = arg;

	assert_ptr_equal(t, &f->mf_tree);
	if (f->mf_root_err) {
		int err = f->mf_root_err;

		f->mf_root_err = 0;
		return err;
	}
	f->mf_roots++;
	f->mf_record = t->bt_root;
	f->mf_record_height = t->bt_root_height;
	return 0;
}

static struct bmap_change mf_change(struct mfix *f)
{
	return (struct bmap_change){f->mf_delta, mf_note, mf_gone, mf_root, f};
}

static int u64_cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* The blocks left behind since the last call are exactly @want (any order). */
static void mf_expect_gone(struct mfix *f, const uint64_t *want, unsigned n)
{
	uint64_t w[64];

	assert_int_equal(f->mf_ngone, n);
	if (!n)
		return;
	memcpy(w, want, n * sizeof(*w));
	qsort(w, n, sizeof(*w), u64_cmp);
	qsort(f->mf_gone, n, sizeof(*w), u64_cmp);
	for (unsigned i = 0; i < n; i++)
		assert_int_equal(f->mf_gone[i], w[i]);
	f->mf_ngone = 0;
}

static void mf_set(struct mfix *f, uint64_t index, uint64_t value)
{
	struct bmap_change ch = mf_change(f);

	assert_int_equal(bmap_set(&f->mf_map, &f->mf_tree, &ch, 1, index, value), 0);
}

/* Write map block @b to the disk as the commit would; its new address. */
static uint64_t mf_write(struct mfix *f, struct buf *b)
{
	uint64_t pblk = f->mf_next++;

	assert_true(pblk - PBLK_BASE < DISK_BLOCKS);
	assert_int_equal(buf_write_begin(b), 0);
	f->mf_disk[pblk - PBLK_BASE] = malloc(f->mf_bs);
	assert_non_null(f->mf_disk[pblk - PBLK_BASE]);
	memcpy(f->mf_disk[pblk - PBLK_BASE], buf_data(b), f->mf_bs);
	assert_int_equal(buf_write_end(b, 0), 0);
	return pblk;
}

/* The commit of the map blocks dirtied so far: bottom up, then settle. */
static void mf_commit(struct mfix *f)
{
	struct bmap_change ch = mf_change(f);

	for (unsigned level = 1; level <= VOL_MAX_LEVELS; level++) {
		for (unsigned i = 0; i < f->mf_nnoted; i++) {
			struct buf *b = f->mf_noted[i];
			if (bmap_node_level(buf_index(b)) != level)
				continue;
			assert_true(bmap_in_tree(&f->mf_map, &f->mf_tree, buf_index(b)));
			assert_int_equal(
			    bmap_place(&f->mf_map, &f->mf_tree, &ch, b, mf_write(f, b)), 0);
		}
	}
	assert_int_equal(f->mf_tree.bt_root_height, f->mf_tree.bt_height);
	/* the record names the placed root */
	assert_int_equal(f->mf_record, f->mf_tree.bt_root);
	assert_int_equal(f->mf_record_height, f->mf_tree.bt_root_height);
	bmap_gen_bump(&f->mf_map);
	for (unsigned i = 0; i < f->mf_nnoted; i++) {
		assert_int_equal(buf_commit_end(f->mf_noted[i], 0), 0);
		buf_put(f->mf_noted[i]);
	}
	f->mf_nnoted = 0;
	f->mf_delta++;
}

/* Forget every cached map block: later walks read them at their addresses. */
static void mf_drop_cache(struct mfix *f)
{
	buf_drop_owner(f->mf_cache, OWNER, 0);
}

static int mf_lookup_err(struct bmap_walk *w, const struct bmap_root *root, uint64_t index,
			 uint64_t *pblk)
{
	return bmap_lookup(w, OWNER, root, 0, index, pblk);
}

static uint64_t mf_lookup(struct mfix *f, uint64_t index)
{
	struct bmap_root root;
	struct bmap_walk w;
	uint64_t pblk;

	bmap_walk_begin(&f->mf_map, &f->mf_tree, &w, &root);
	assert_int_equal(mf_lookup_err(&w, &root, index, &pblk), 0);
	return pblk;
}

/* ---- tests -------------------------------------------------------------- */

static void test_empty_tree_is_all_holes(void **state)
{
	struct mfix *f = mf_new(4096);

	(void)state;
	assert_int_equal(mf_lookup(f, 0), 0);
	assert_int_equal(mf_lookup(f, 12345), 0);
	assert_int_equal(mf_lookup(f, VOL_MAX_INDEX), 0);
	/* a tree of height 1: beyond it is a hole too, found without reading */
	mf_set(f, 3, 0x33);
	assert_int_equal(mf_lookup(f, 3), 0); /* not placed yet: readers see none */
	mf_commit(f);
	mf_drop_cache(f);
	assert_int_equal(mf_lookup(f, 512), 0);
	assert_int_equal(mf_lookup(f, 512 * 512 + 3), 0);
	assert_int_equal(mf_lookup(f, VOL_MAX_INDEX), 0);
	assert_int_equal(atomic_load(&f->mf_fills), 0);
	assert_int_equal(mf_lookup(f, 3), 0x33);
	assert_int_equal(atomic_load(&f->mf_fills), 1);
	mf_free(f);
}

static const uint64_t spread[] = {
    0,
    1,
    511,
    512,
    513,
    262143,
    262144,
    262145,
    134217727,
    134217728,
    9999999999ULL,
    VOL_MAX_INDEX - 1,
    VOL_MAX_INDEX,
};

static bool in_spread(uint64_t index)
{
	for (size_t i = 0; i < ARRAY_SIZE(spread); i++)
		if (spread[i] == index)
			return true;
	return false;
}

/* Set every index in spread[], commit, and read them back, cached and not. */
static void check_spread(uint32_t bs, unsigned want_height)
{
	struct mfix *f = mf_new(bs);

	for (size_t i = 0; i < ARRAY_SIZE(spread); i++)
		mf_set(f, spread[i], 0x1000 + i);
	mf_commit(f);
	assert_int_equal(f->mf_tree.bt_root_height, want_height);
	for (int pass = 0; pass < 2; pass++) {
		for (size_t i = 0; i < ARRAY_SIZE(spread); i++) {
			assert_int_equal(mf_lookup(f, spread[i]), 0x1000 + i);
			if (spread[i] > 0 && !in_spread(spread[i] - 1))
				assert_int_equal(mf_lookup(f, spread[i] - 1),
						 0); /* neighbours: holes */
		}
		assert_int_equal(mf_lookup(f, 77777), 0);
		mf_drop_cache(f); /* second pass: every map block read at its address */
	}
	assert_true(atomic_load(&f->mf_fills) > 0);
	mf_free(f);
}

static void test_set_lookup_every_level_4k(void **state)
{
	(void)state;
	check_spread(4096, 4); /* 512 entries a block: 512^4 = 2^36 */
}

static void test_set_lookup_every_level_512(void **state)
{
	(void)state;
	check_spread(512, 6); /* 64 entries a block: 64^6 = 2^36 */
}

static void test_growth_keeps_old_root_as_entry_0(void **state)
{
	struct mfix *f = mf_new(4096);
	uint64_t old_root;
	struct buf *b;

	(void)state;
	mf_set(f, 7, 0x70);
	mf_commit(f);
	assert_int_equal(f->mf_tree.bt_root_height, 1);
	old_root = f->mf_tree.bt_root;
	mf_set(f, 512 * 512 + 3, 0x80); /* needs height 3 */
	assert_int_equal(f->mf_tree.bt_height, 3);
	assert_int_equal(f->mf_tree.bt_root_height, 1); /* readers still see the old tree */
	assert_int_equal(mf_lookup(f, 7), 0x70);
	mf_commit(f);
	assert_int_equal(f->mf_tree.bt_root_height, 3);
	/* the old root is reused as it is, through entry 0 of each new level */
	assert_int_equal(
	    buf_read_hint(f->mf_cache, OWNER, bmap_node_index(&f->mf_map, 2, 0), BUF_NO_HINT, &b),
	    0);
	assert_int_equal(bmap_entry(buf_data(b), 0), old_root);
	buf_put(b);
	mf_drop_cache(f);
	assert_int_equal(mf_lookup(f, 7), 0x70);
	assert_int_equal(mf_lookup(f, 512 * 512 + 3), 0x80);
	assert_int_equal(mf_lookup(f, 512 * 512 * 512), 0); /* beyond the tree */
	mf_free(f);
}

static void test_clear_entry(void **state)
{
	struct mfix *f = mf_new(4096);
	struct bmap_change ch = mf_change(f);

	(void)state;
	mf_set(f, 1000, 0x11);
	mf_set(f, 1001, 0x22);
	mf_commit(f);
	ch = mf_change(f);
	assert_int_equal(bmap_clear(&f->mf_map, &f->mf_tree, &ch, 5000000), 0); /* a hole */
	assert_int_equal(bmap_clear(&f->mf_map, &f->mf_tree, &ch, 1002), 0);	/* a hole */
	assert_int_equal(f->mf_nnoted, 0); /* nothing dirtied */
	assert_int_equal(bmap_clear(&f->mf_map, &f->mf_tree, &ch, 1000), 0);
	assert_int_equal(f->mf_nnoted, 1);
	mf_commit(f);
	mf_drop_cache(f);
	assert_int_equal(mf_lookup(f, 1000), 0);
	assert_int_equal(mf_lookup(f, 1001), 0x22);
	mf_free(f);
}

/*
 * The hazard of bmap.c's design comment: a walker reads the root's
 * address, a whole commit rewrites the root elsewhere and the cache
 * forgets it, then the walker reads the old address. The walk must
 * fail (-EAGAIN) and the old copy must not stay cached under the
 * block's name; a new walk sees the new tree.
 */
static void test_stale_walk_refuses_old_copy(void **state)
{
	struct mfix *f = mf_new(4096);
	struct bmap_root root;
	struct bmap_walk w;
	uint64_t pblk;
	struct buf *b;

	(void)state;
	mf_set(f, 5, 0x55);
	mf_commit(f);
	mf_drop_cache(f);
	bmap_walk_begin(&f->mf_map, &f->mf_tree, &w, &root); /* reads the old root */
	mf_set(f, 5, 0x66);
	mf_commit(f);
	mf_drop_cache(f);
	assert_int_not_equal(root.br_pblk, f->mf_tree.bt_root);
	assert_int_equal(mf_lookup_err(&w, &root, 5, &pblk), -EAGAIN);
	b = buf_lookup(f->mf_cache, OWNER, bmap_node_index(&f->mf_map, 1, 5));
	assert_null(b); /* the old copy was not published */
	assert_int_equal(mf_lookup(f, 5), 0x66);
	mf_free(f);
}

/* A walk that began before a commit ended restarts even on cached blocks. */
static void test_walk_restarts_after_commit(void **state)
{
	struct mfix *f = mf_new(4096);
	struct bmap_root root;
	struct bmap_walk w;
	uint64_t pblk;

	(void)state;
	mf_set(f, 600, 0x1);
	mf_commit(f);
	bmap_walk_begin(&f->mf_map, &f->mf_tree, &w, &root);
	mf_set(f, 601, 0x2);
	mf_commit(f);
	assert_int_equal(mf_lookup_err(&w, &root, 600, &pblk), -EAGAIN);
	assert_int_equal(mf_lookup(f, 600), 0x1);
	assert_int_equal(mf_lookup(f, 601), 0x2);
	mf_free(f);
}

/* The map's address of its map block at @level covering @index (after a commit). */
static uint64_t mf_node_addr(struct mfix *f, unsigned level, uint64_t index)
{
	unsigned l = f->mf_tree.bt_root_height;
	uint64_t pblk = f->mf_tree.bt_root;

	while (l > level) {
		struct buf *b;

		assert_int_equal(buf_read_hint(f->mf_cache, OWNER,
					       bmap_node_index(&f->mf_map, l, index), pblk, &b),
				 0);
		pblk = bmap_entry(buf_data(b), (unsigned)((index >> (9 * (l - 1))) & 511));
		buf_put(b);
		l--;
	}
	return pblk;
}

/* Every block the subtree of map block @nidx at @pblk names, @pblk too. */
static void mf_named(struct mfix *f, uint64_t nidx, uint64_t pblk, uint64_t *out, unsigned *n)
{
	unsigned level = bmap_node_level(nidx);
	uint64_t first = bmap_node_first(&f->mf_map, nidx);
	struct buf *b;

	assert_true(*n < 64);
	out[(*n)++] = pblk;
	assert_int_equal(buf_read_hint(f->mf_cache, OWNER, nidx, pblk, &b), 0);
	for (unsigned s = 0; s < f->mf_map.bm_entries; s++) {
		uint64_t e = bmap_entry(buf_data(b), s);

		if (!e)
			continue;
		if (level == 1) {
			assert_true(*n < 64);
			out[(*n)++] = e;
			continue;
		}
		mf_named(f,
			 bmap_node_index(&f->mf_map, level - 1,
					 first + ((uint64_t)s << (9 * (level - 1)))),
			 e, out, n);
	}
	buf_put(b);
}

/* The one block left behind that is not in @known (of @n). */
static uint64_t mf_gone_other(struct mfix *f, const uint64_t *known, unsigned n)
{
	uint64_t other = 0;

	for (unsigned i = 0; i < f->mf_ngone; i++) {
		bool k = false;

		for (unsigned j = 0; j < n; j++)
			k |= f->mf_gone[i] == known[j];
		if (!k) {
			assert_int_equal(other, 0);
			other = f->mf_gone[i];
		}
	}
	return other;
}

/*
 * Every block a change stops naming goes to bc_gone, once: an entry
 * overwritten or cleared, a map block rewritten, a replaced root, the
 * subtrees a truncate unlinks (read back from disk when not cached), a
 * whole tree emptied; a root that becomes the child of a new root is
 * not gone. The segment usage counts (usage.c) are built on this.
 */
static void test_gone_reports_every_block_left_behind(void **state)
{
	struct mfix *f = mf_new(4096);
	uint64_t root1, root2, leaf0, leaf3, old_root, want[64];
	struct bmap_change ch;
	unsigned n = 0;

	(void)state;
	mf_set(f, 0, 0xa0);
	mf_set(f, 1, 0xa1);
	mf_commit(f);
	root1 = f->mf_tree.bt_root; /* height 1 */
	mf_expect_gone(f, NULL, 0);
	mf_set(f, 3 * 512, 0xb0); /* grows: the old root is entry 0 of the new */
	mf_commit(f);
	leaf3 = mf_node_addr(f, 1, 3 * 512);
	root2 = f->mf_tree.bt_root;
	assert_int_equal(mf_node_addr(f, 1, 0), root1);
	mf_expect_gone(f, NULL, 0);

	mf_set(f, 0, 0xa2); /* overwrite: the data, its leaf and the root move */
	mf_commit(f);
	leaf0 = mf_node_addr(f, 1, 0);
	want[0] = 0xa0, want[1] = root1, want[2] = root2;
	mf_expect_gone(f, want, 3);

	old_root = f->mf_tree.bt_root;
	mf_drop_cache(f); /* the truncate must read what it unlinks */
	ch = mf_change(f);
	assert_int_equal(bmap_prune(&f->mf_map, &f->mf_tree, &ch, 512), 0);
	mf_commit(f); /* the root is rewritten: its entry 3 cleared */
	want[0] = leaf3, want[1] = 0xb0, want[2] = old_root;
	mf_expect_gone(f, want, 3);

	mf_set(f, 1, 0); /* a cleared entry */
	mf_commit(f);
	want[0] = 0xa1, want[1] = leaf0;
	want[2] = mf_gone_other(f, want, 2); /* and the root before */
	assert_true(want[2] && want[2] != f->mf_tree.bt_root);
	mf_expect_gone(f, want, 3);

	mf_set(f, 512 * 512, 0xc0); /* height 3: the old root becomes a child */
	mf_commit(f);
	mf_expect_gone(f, NULL, 0);
	mf_named(f, bmap_node_index(&f->mf_map, 3, 0), f->mf_tree.bt_root, want, &n);
	assert_int_equal(n, 7); /* top, two level 2, two leaves, two data */
	mf_drop_cache(f);
	ch = mf_change(f);
	assert_int_equal(bmap_empty(&f->mf_map, &f->mf_tree, &ch), 0);
	mf_expect_gone(f, want, n);
	assert_int_equal(f->mf_tree.bt_height, 0);
	mf_free(f);
}

/*
 * An owner of data block 0 alone has a tree of height 0 whose root is
 * that block: no map block is dirtied or read, the record names the
 * block (bc_root), a rewrite, a punch and an empty leave the old one
 * behind, and growth makes it entry 0 of the first map block, which
 * readers see only once that block is placed.
 */
static void test_height_0_root_is_data_block_0(void **state)
{
	struct mfix *f = mf_new(4096);
	struct bmap_change ch;
	uint64_t want[2];
	struct buf *b;

	(void)state;
	mf_set(f, 0, 0xd0);
	assert_int_equal(f->mf_nnoted, 0); /* no map block */
	assert_int_equal(f->mf_tree.bt_height, 0);
	assert_int_equal(f->mf_tree.bt_root, 0xd0);
	assert_int_equal(f->mf_roots, 1);
	mf_commit(f);
	mf_drop_cache(f);
	assert_int_equal(mf_lookup(f, 0), 0xd0);
	assert_int_equal(mf_lookup(f, 1), 0);
	assert_int_equal(mf_lookup(f, VOL_MAX_INDEX), 0);
	assert_int_equal(atomic_load(&f->mf_fills), 0); /* nothing read */
	mf_expect_gone(f, NULL, 0);

	mf_set(f, 0, 0xd1); /* a rewrite */
	mf_set(f, 0, 0xd1); /* the same again: nothing changes */
	assert_int_equal(f->mf_roots, 2);
	want[0] = 0xd0;
	mf_expect_gone(f, want, 1);
	mf_commit(f);

	ch = mf_change(f);
	assert_int_equal(bmap_clear(&f->mf_map, &f->mf_tree, &ch, 1), 0); /* a hole */
	assert_int_equal(f->mf_roots, 2);
	assert_int_equal(bmap_clear(&f->mf_map, &f->mf_tree, &ch, 0), 0); /* a punch */
	assert_int_equal(f->mf_tree.bt_root, 0);
	assert_int_equal(f->mf_record, 0);
	want[0] = 0xd1;
	mf_expect_gone(f, want, 1);
	mf_commit(f);
	assert_int_equal(mf_lookup(f, 0), 0);

	mf_set(f, 0, 0xd2);
	mf_commit(f);
	mf_set(f, 5, 0xd5); /* grows to height 1 */
	assert_int_equal(f->mf_tree.bt_height, 1);
	assert_int_equal(f->mf_tree.bt_root_height, 0);
	assert_int_equal(mf_lookup(f, 0), 0xd2); /* readers: the placed root still */
	assert_int_equal(mf_lookup(f, 5), 0);
	mf_commit(f);
	mf_expect_gone(f, NULL, 0); /* the old root is a child now */
	assert_int_equal(f->mf_tree.bt_root_height, 1);
	mf_drop_cache(f);
	assert_int_equal(mf_lookup(f, 0), 0xd2);
	assert_int_equal(mf_lookup(f, 5), 0xd5);
	assert_int_equal(
	    buf_read_hint(f->mf_cache, OWNER, bmap_node_index(&f->mf_map, 1, 0), BUF_NO_HINT, &b),
	    0);
	assert_int_equal(bmap_entry(buf_data(b), 0), 0xd2);
	buf_put(b);
	mf_free(f);

	/* a record that could not be stored (the commit fails) is stored by
	 * the next one, even when the block comes back at the same address */
	f = mf_new(4096);
	mf_set(f, 0, 0xd0);
	mf_commit(f);
	ch = mf_change(f);
	f->mf_root_err = -EIO;
	assert_int_equal(bmap_set(&f->mf_map, &f->mf_tree, &ch, 1, 0, 0xd1), -EIO);
	assert_int_equal(f->mf_record, 0xd0);
	mf_set(f, 0, 0xd1); /* the requeued block, written at the same address */
	assert_int_equal(f->mf_record, 0xd1);
	want[0] = 0xd0; /* once */
	mf_expect_gone(f, want, 1);
	mf_commit(f);
	mf_free(f);

	f = mf_new(4096); /* emptying a tree of height 0 */
	mf_set(f, 0, 0xe0);
	mf_commit(f);
	ch = mf_change(f);
	assert_int_equal(bmap_empty(&f->mf_map, &f->mf_tree, &ch), 0);
	want[0] = 0xe0;
	mf_expect_gone(f, want, 1);
	assert_int_equal(f->mf_tree.bt_root, 0);
	assert_int_equal(f->mf_record, 0);
	mf_free(f);
}

static void test_geometry_helpers(void **state)
{
	struct mfix *f = mf_new(4096);
	struct bmap *m = &f->mf_map;
	struct bmap_tree t = {.bt_owner = OWNER, .bt_height = 2};

	(void)state;
	assert_int_equal(bmap_height_for(m, 0), 1);
	assert_int_equal(bmap_height_for(m, 511), 1);
	assert_int_equal(bmap_height_for(m, 512), 2);
	assert_int_equal(bmap_height_for(m, VOL_MAX_INDEX), 4);
	assert_int_equal(bmap_node_level(bmap_node_index(m, 3, 12345)), 3);
	assert_int_equal(bmap_node_first(m, bmap_node_index(m, 1, 1000)), 512);
	assert_true(bmap_in_tree(m, &t, bmap_node_index(m, 2, 0)));
	assert_true(bmap_in_tree(m, &t, bmap_node_index(m, 1, 512 * 511)));
	assert_false(bmap_in_tree(m, &t, bmap_node_index(m, 1, 512 * 512)));
	assert_false(bmap_in_tree(m, &t, bmap_node_index(m, 3, 0)));
	assert_false(bmap_in_tree(m, &t, bmap_node_index(m, 2, 512 * 512))); /* a second root */
	assert_false(bmap_in_tree(m, &t, 42));				     /* a data block */
	mf_free(f);
}

int main(void)
{
	static const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_empty_tree_is_all_holes),
	    cmocka_unit_test(test_set_lookup_every_level_4k),
	    cmocka_unit_test(test_set_lookup_every_level_512),
	    cmocka_unit_test(test_growth_keeps_old_root_as_entry_0),
	    cmocka_unit_test(test_clear_entry),
	    cmocka_unit_test(test_stale_walk_refuses_old_copy),
	    cmocka_unit_test(test_walk_restarts_after_commit),
	    cmocka_unit_test(test_gone_reports_every_block_left_behind),
	    cmocka_unit_test(test_height_0_root_is_data_block_0),
	    cmocka_unit_test(test_geometry_helpers),
	};

	vf_filter_from_env();
	return TEST_RUN("vol_bmap", tests);
}

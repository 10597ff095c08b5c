/*
 * bmap.c - block maps: where an owner's blocks are on disk.
 *
 * Each owner's blocks are found through a radix tree of map blocks: a
 * map block is block_size / 8 little-endian u64 entries (E entries,
 * E = 2^shift), 0 meaning a hole. An entry is a virtual block number,
 * which the translation (dat.c) resolves to an address, in every tree
 * but the translation's own, whose entries are addresses (bmap_virtual).
 * This file deals in entries; a fill given an entry as its hint
 * translates it (dat_xlate_fill), with the walk's view of the
 * translation, only when the block is not cached. A tree of height h covers
 * data indexes below E^h. An owner's tree of height 0 covers index 0
 * alone: its root, if any, is that data block itself, so an owner of
 * one block has no map block to write at creation or to read when it is
 * deleted (the owner table's own tree always has map blocks: its height
 * 0 means no blocks). The entry for data
 * index i in the map block at level l (level 1 points at data) is
 * (i >> shift*(l-1)) & (E-1), and that block is node i >> shift*l.
 * When an index beyond the tree is set the tree grows: a new root at
 * level h+1 whose entry 0 is the old root.
 *
 *            root (level h, node 0) -- from the owner's record (otab.c)
 *             /        \
 *     level h-1 ...    ...
 *          |
 *     level 1: entries are data blocks
 *
 * Map blocks are buffers of their tree's owner in the buffer cache, index
 * VOL_META_BIT | level << 48 | node. Only the commit (commit.c) changes
 * them: the front end writes data buffers and never touches a map block.
 * The commit builds the new trees bottom up (data, then each level's map
 * blocks once all their entries are final, then roots); a tree's placed
 * root (bt_root) changes only when its new root has an address, so a
 * reader always walks a complete tree, new or old.
 *
 * Readers (bo_fill of a block not in the cache) walk from the super
 * root's owner-table root, through the owner table, down the owner's
 * tree, with no lock held while they get a buffer (getting one may need
 * a commit to finish first: a lock held there could deadlock). Instead:
 *
 *   walk:  shared lock { gen = bm_gen; root = placed root }
 *          for each level:
 *            buf_read_hint(node, hint = entry read above)   (no lock)
 *            shared lock { restart if bm_gen != gen; read entry }
 *
 * and a fill that reads a block at a hinted address checks, once the
 * block is read and before it is published, that bm_gen has not moved
 * (bmap_hint_check); if it has, the fill fails with -ESTALE (the cache
 * keeps -EAGAIN for itself), the buffer is dropped, and the walk (and
 * any walker that waited for that fill) restarts. Why: a walker may read a parent's
 * entry (old address A of child C), then lose the CPU while a whole
 * commit rewrites C elsewhere, commits, and C, now Clean, is evicted.
 * Reading C from A would then cache an old copy of C under C's name, for
 * every later walker to trust. The generation is bumped once per commit,
 * after its map changes and before any of its buffers can become
 * evictable (buf_commit_end), which is enough: until then every block
 * whose address changed in the commit is dirty, so it is found in the
 * cache by name and its old address is never read.
 *
 * Invariants
 *   (1) Map blocks, owner-table blocks and placed roots change only in
 *       the commit thread, holding bm_lock exclusive; readers read them
 *       holding it shared. bm_gen only rises, once per commit end.
 *   (2) An entry names either a block written by a committed delta, or a
 *       block of the delta being committed (or of a failed one, requeued)
 *       whose buffer is dirty, hence in the cache and never evicted.
 *   (3) A map block the commit created but has not yet linked into its
 *       parent (entry still 0) holds only entries of blocks that are
 *       dirty in the cache, so a reader treating the 0 as a hole misses
 *       nothing: it only walks for blocks the cache does not hold.
 *   (4) A tree's placed root (bt_root, bt_root_height) is always a
 *       complete tree; bt_height >= bt_root_height is the height being
 *       built, seen only by the commit.
 *   (5) A fill at a hinted address publishes its block only if no commit
 *       ended since the hint was read (bmap_hint_check).
 *   (6) A truncate unlinks whole subtrees (bmap_prune). Their cached map
 *       blocks are dropped by the commit that prunes them (no reader of
 *       data can be on them: a fill of a truncated block reads zeros
 *       until that commit ends, and vol_truncate waited out the fills in
 *       progress). A truncate's plan (bmap_walk_down) may still read one
 *       back after the drop, under its walk's generation: a Clean map
 *       block found where the tree being built has no entry is such a
 *       leftover, dropped, never reused.
 *   (7) The commit tells bc_gone of what an entry or a placed root names
 *       before it changes it (truncates too): if bc_gone fails, the
 *       commit fails with the entry unchanged, and the next commit, which
 *       changes it again, tells it again. So no block the map left
 *       behind goes untold (for the translation: no number stays current
 *       that nothing names).
 *   (8) The commit changes one map block, or one block of the
 *       translation, many times in a row (a delta's blocks come in
 *       order). A cursor keeps the last of each, with a reference, so
 *       that the next change finds it without a walk from the root and a
 *       lookup per level. A cursor stands for the buffer a lookup of its
 *       name would give while that buffer is dirty (Dirty, Writing or
 *       Written): it is hashed then (a drop makes it Dropped), and
 *       bmap_node_get returns the hashed buffer whatever its parent
 *       names; a Clean one it may drop (6), so a Clean cursor is not used.
 *       Only the thread that began the cursors uses them (the commit's);
 *       their references go at bmap_cursors_end.
 *
 * Lock order: bm_lock is taken with no other lock held and is never held
 * while getting, modifying or putting a buffer (buffer shard locks are
 * taken and released before it). The thread-local bmap_tls_walk says
 * which walk a fill on this thread serves: buf.c runs bo_fill in the
 * thread that inserted the buffer, the one calling buf_read_hint.
 */
#include "vol/vol_internal.h"
#include "util/syncpoint.h"

#include <endian.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

static _Thread_local struct bmap_walk *bmap_tls_walk; /* the walk this thread's fill serves */

int bmap_init(struct bmap *m, struct buf_cache *c)
{
	uint32_t bs = buf_cache_block_size(c);

	m->bm_cache = c;
	m->bm_entries = bs / 8;
	m->bm_shift = (unsigned)__builtin_ctz(m->bm_entries);
	m->bm_gen = 0;
	m->bm_dat = NULL;
	m->bm_suf = NULL;
	m->bm_ckpt = NULL;
	m->bm_cursor[0] = m->bm_cursor[1] = NULL;
	atomic_init(&m->bm_cursoring, false);
	return -pthread_rwlock_init(&m->bm_lock, NULL);
}

void bmap_destroy(struct bmap *m)
{
	/* every commit ended its cursors; the cache may be gone already */
	assert(!m->bm_cursor[0] && !m->bm_cursor[1]);
	pthread_rwlock_destroy(&m->bm_lock);
}

/* ---- the commit's cursors (8) --------------------------------------------- */

enum { BMAP_CURSOR_LEAF, BMAP_CURSOR_BLOCK };

void bmap_cursors_begin(struct bmap *m)
{
	m->bm_cursor_thread = pthread_self();
	atomic_store_explicit(&m->bm_cursoring, true, memory_order_relaxed);
}

void bmap_cursors_end(struct bmap *m)
{
	atomic_store_explicit(&m->bm_cursoring, false, memory_order_relaxed);
	for (int i = 0; i < 2; i++) {
		buf_put(m->bm_cursor[i]);
		m->bm_cursor[i] = NULL;
	}
}

static bool bmap_cursors_ours(const struct bmap *m)
{
	return atomic_load_explicit(&m->bm_cursoring, memory_order_relaxed) &&
	       pthread_equal(m->bm_cursor_thread, pthread_self());
}

/* Cursor @which if it is block @index of @owner and dirty: a reference. */
static struct buf *bmap_cursor_find(struct bmap *m, int which, uint64_t owner, uint64_t index)
{
	struct buf *b;
	enum buf_state s;

	if (!bmap_cursors_ours(m))
		return NULL;
	b = m->bm_cursor[which];
	if (!b || buf_index(b) != index || buf_owner(b) != owner)
		return NULL;
	s = buf_state(b);
	if (s != BUF_DIRTY && s != BUF_WRITING && s != BUF_WRITTEN)
		return NULL;
	buf_hold(b);
	return b;
}

/* Make @b (held by the caller) cursor @which. */
static void bmap_cursor_keep(struct bmap *m, int which, struct buf *b)
{
	if (!b || m->bm_cursor[which] == b || !bmap_cursors_ours(m))
		return;
	buf_hold(b);
	buf_put(m->bm_cursor[which]);
	m->bm_cursor[which] = b;
}

static void bmap_rdlock(struct bmap *m)
{
	int rc = pthread_rwlock_rdlock(&m->bm_lock);

	assert(!rc);
	(void)rc;
}

static void bmap_wrlock(struct bmap *m)
{
	int rc = pthread_rwlock_wrlock(&m->bm_lock);

	assert(!rc);
	(void)rc;
}

static void bmap_unlock(struct bmap *m)
{
	pthread_rwlock_unlock(&m->bm_lock);
}

/* True if a tree of @height holds data index @index (height 0: index 0). */
static bool bmap_covers(const struct bmap *m, unsigned height, uint64_t index)
{
	if ((uint64_t)height * m->bm_shift >= 64)
		return true;
	return (index >> (height * m->bm_shift)) == 0;
}

unsigned bmap_height_for(const struct bmap *m, uint64_t index)
{
	unsigned h = 1;

	while (!bmap_covers(m, h, index))
		h++;
	return h;
}

/* The slot of data index @index in its map block at @level. */
static unsigned bmap_slot(const struct bmap *m, unsigned level, uint64_t index)
{
	return (unsigned)((index >> (m->bm_shift * (level - 1))) & (m->bm_entries - 1));
}

uint64_t bmap_entry(const void *data, unsigned slot)
{
	return util_get_le64((const unsigned char *)data + (size_t)slot * 8);
}

static void bmap_entry_store(void *data, unsigned slot, uint64_t value)
{
	util_put_le64((unsigned char *)data + (size_t)slot * 8, value);
}

/* ---- readers ------------------------------------------------------------- */

void bmap_walk_begin(struct bmap *m, const struct bmap_tree *t, struct bmap_walk *w,
		     struct bmap_root *root)
{
	bmap_rdlock(m);
	w->w_map = m;
	w->w_gen = m->bm_gen;
	root->br_pblk = t->bt_root;
	root->br_height = t->bt_root_height;
	w->w_dat.br_pblk = m->bm_dat ? m->bm_dat->bt_root : 0;
	w->w_dat.br_height = m->bm_dat ? m->bm_dat->bt_root_height : 0;
	w->w_suf.br_pblk = m->bm_suf ? m->bm_suf->bt_root : 0;
	w->w_suf.br_height = m->bm_suf ? m->bm_suf->bt_root_height : 0;
	w->w_ckpt.br_pblk = m->bm_ckpt ? m->bm_ckpt->bt_root : 0;
	w->w_ckpt.br_height = m->bm_ckpt ? m->bm_ckpt->bt_root_height : 0;
	bmap_unlock(m);
}

bool bmap_walk_valid_locked(const struct bmap_walk *w)
{
	return w->w_map->bm_gen == w->w_gen;
}

int bmap_read_block(struct bmap_walk *w, uint64_t owner, uint64_t index, uint64_t pblk,
		    struct buf **out)
{
	struct bmap_walk *outer = bmap_tls_walk;
	int err;

	bmap_tls_walk = w;
	err = buf_read_hint(w->w_map->bm_cache, owner, index, pblk, out);
	bmap_tls_walk = outer;
	return err == -ESTALE ? -EAGAIN : err; /* this fill, or one we waited for */
}

struct bmap_walk *bmap_fill_walk(void)
{
	return bmap_tls_walk;
}

int bmap_hint_check(struct bmap *m)
{
	struct bmap_walk *w = bmap_tls_walk;
	int err = 0;

	if (!w || w->w_map != m)
		return 0; /* not a walker's fill: the commit's, whose hints are current */
	bmap_rdlock(m);
	if (!bmap_walk_valid_locked(w))
		err = -ESTALE;
	bmap_unlock(m);
	return err;
}

void bmap_gen_bump(struct bmap *m)
{
	bmap_wrlock(m);
	m->bm_gen++;
	bmap_unlock(m);
}

/* Entry for @index in map block (owner, @level) found at @pblk. */
static int bmap_read_entry(struct bmap_walk *w, uint64_t owner, unsigned level, uint64_t index,
			   uint64_t pblk, uint64_t *entry)
{
	struct bmap *m = w->w_map;
	struct buf *b;
	int err;

	SYNC_POINT("vol.walk.node"); /* holding an address, no lock */
	err = bmap_read_block(w, owner, bmap_node_index(m, level, index), pblk, &b);
	if (err)
		return err;
	bmap_rdlock(m);
	if (bmap_walk_valid_locked(w))
		*entry = bmap_entry(buf_data(b), bmap_slot(m, level, index));
	else
		err = -EAGAIN;
	bmap_unlock(m);
	buf_put(b);
	return err;
}

int bmap_lookup(struct bmap_walk *w, uint64_t owner, const struct bmap_root *root, unsigned level,
		uint64_t index, uint64_t *pblk)
{
	uint64_t cur = root->br_pblk;
	unsigned l;
	int err;

	*pblk = 0;
	if (level > root->br_height || !bmap_covers(w->w_map, root->br_height, index))
		return 0;
	for (l = root->br_height; l > level && cur; l--) {
		err = bmap_read_entry(w, owner, l, index, cur, &cur);
		if (err)
			return err;
	}
	*pblk = cur;
	return 0;
}

/*
 * bmap_walk_down's visit of the subtree at @level (0: a data block)
 * whose block @entry names and whose first data index is @first.
 */
static int bmap_down(struct bmap_walk *w, uint64_t owner, unsigned level, uint64_t entry,
		     uint64_t first, uint64_t lo, uint64_t hi, bmap_down_fn fn, void *arg)
{
	struct bmap *m = w->w_map;
	uint64_t *entries;
	struct buf *b;
	int err = 0;

	if (!level)
		return first >= lo ? fn(arg, first, 0) : 0;
	entries = malloc(m->bm_entries * sizeof(*entries));
	if (!entries)
		return -ENOMEM;
	SYNC_POINT("vol.walk.down"); /* holding an entry, no lock */
	err = bmap_read_block(w, owner, bmap_node_index(m, level, first), entry, &b);
	if (err == -EUCLEAN) {
		/* damaged: a truncate frees the block but not what is under it
		 * (bmap_gone_subtree), so only the block is counted */
		err = 0;
		goto self;
	}
	if (err)
		goto out;
	bmap_rdlock(m);
	if (bmap_walk_valid_locked(w))
		for (unsigned s = 0; s < m->bm_entries; s++)
			entries[s] = bmap_entry(buf_data(b), s);
	else
		err = -EAGAIN;
	bmap_unlock(m);
	buf_put(b);
	for (unsigned s = m->bm_entries; s-- > 0 && !err;) {
		uint64_t child = first + ((uint64_t)s << (m->bm_shift * (level - 1)));
		uint64_t last = child + ((1ULL << (m->bm_shift * (level - 1))) - 1);

		if (last < lo)
			break; /* this slot and the ones below it: all under @lo */
		if (entries[s] && child < hi)
			err = bmap_down(w, owner, level - 1, entries[s], child, lo, hi, fn, arg);
	}
self:
	if (!err && first >= lo)
		err = fn(arg, first, level);
out:
	free(entries);
	return err;
}

int bmap_walk_down(struct bmap_walk *w, uint64_t owner, const struct bmap_root *root, uint64_t lo,
		   uint64_t hi, bmap_down_fn fn, void *arg)
{
	if (!root->br_pblk)
		return 0;
	if (!root->br_height && !bmap_direct_root(owner))
		return 0; /* a height-0 root names no block in these trees */
	return lo < hi ? bmap_down(w, owner, root->br_height, root->br_pblk, 0, lo, hi, fn, arg)
		       : 0;
}

/* ---- the commit ------------------------------------------------------------ */

/*
 * Map block @nidx of @owner for the commit: from the cache, else read at
 * @pblk; if @pblk is 0 (not linked yet, or a hole), the cached block or,
 * with @create, a new one; else NULL.
 */
static int bmap_node_get(struct bmap *m, uint64_t owner, uint64_t nidx, uint64_t pblk, bool create,
			 struct buf **out)
{
	int err;

	if (pblk) {
		do /* -ESTALE: we waited for a stale walker's fill; ours is current */
			err = buf_read_hint(m->bm_cache, owner, nidx, pblk, out);
		while (err == -ESTALE);
		return err;
	}
	/* an unlinked node is one this commit (or a failed one) made: Dirty */
	for (;;) {
		struct buf *b = buf_lookup(m->bm_cache, owner, nidx);

		if (!b && create && (err = buf_get_new(m->bm_cache, owner, nidx, &b)))
			return err;
		if (!b || buf_state(b) != BUF_CLEAN) {
			*out = b;
			return 0;
		}
		buf_drop(b); /* (6): a pruned subtree's, not ours */
		buf_put(b);
	}
}

/*
 * The map block at @level on @index's path in @t as being built (the
 * commit's view: its entries are read without the lock, as only this
 * thread writes them). *out NULL: a hole, and !@create.
 */
static int bmap_path_get(struct bmap *m, struct bmap_tree *t, unsigned level, uint64_t index,
			 bool create, struct buf **out)
{
	unsigned l = t->bt_height;
	uint64_t pblk = t->bt_root_height == l ? t->bt_root : 0;
	struct buf *b = NULL;
	int err;

	assert(level >= 1 && level <= l);
	if (level == 1) {
		b = bmap_cursor_find(m, BMAP_CURSOR_LEAF, t->bt_owner,
				     bmap_node_index(m, 1, index));
		if (b) {
			*out = b;
			return 0;
		}
	}
	for (;;) {
		err = bmap_node_get(m, t->bt_owner, bmap_node_index(m, l, index), pblk, create, &b);
		if (err || !b || l == level)
			break;
		pblk = bmap_entry(buf_data(b), bmap_slot(m, l, index));
		buf_put(b);
		b = NULL;
		l--;
	}
	if (!err && level == 1)
		bmap_cursor_keep(m, BMAP_CURSOR_LEAF, b);
	*out = b;
	return err;
}

/*
 * Change entry @slot of map block @b to @value, in the commit's delta.
 * What it named goes first (bc_gone): if that fails, the entry still
 * names it, and the next commit, changing it again, tells it again (7).
 */
static int bmap_modify(struct bmap *m, const struct bmap_change *ch, struct buf *b, unsigned slot,
		       uint64_t value)
{
	uint64_t old = bmap_entry(buf_data(b), slot);
	int err = 0;

	if (old && old != value)
		err = ch->bc_gone(ch->bc_arg, buf_owner(b), old);
	if (!err)
		err = buf_modify_begin(b, ch->bc_delta);
	if (err)
		return err;
	bmap_wrlock(m);
	bmap_entry_store(buf_data(b), slot, value);
	bmap_unlock(m);
	buf_modify_end(b);
	return ch->bc_note(ch->bc_arg, b);
}

/*
 * Tell bc_gone of every block of the subtree whose root, map block
 * @nidx of @owner, is at @pblk (0: not linked yet, then only if cached):
 * a truncate unlinks it. Reads the map blocks that are not cached.
 */
static int bmap_gone_entries(struct bmap *m, const struct bmap_change *ch, struct buf *b,
			     unsigned from_slot);

static int bmap_gone_subtree(struct bmap *m, const struct bmap_change *ch, uint64_t owner,
			     uint64_t nidx, uint64_t pblk)
{
	struct buf *b;
	int err = 0;

	if (pblk)
		err = ch->bc_gone(ch->bc_arg, owner, pblk);
	if (!err)
		err = bmap_node_get(m, owner, nidx, pblk, false, &b);
	if (err == -EUCLEAN) {
		/* a damaged map block: its blocks stay counted (until a recount
		 * at open), the truncate goes on */
		log_warn("vol: map block (%" PRIu64 ", %#" PRIx64
			 ") of a truncated subtree is damaged; its blocks stay counted",
			 owner, nidx);
		return 0;
	}
	if (err || !b)
		return err;
	err = bmap_gone_entries(m, ch, b, 0);
	buf_put(b);
	return err;
}

/* Tell bc_gone of every block below entries [@from_slot, E) of map block @b. */
static int bmap_gone_entries(struct bmap *m, const struct bmap_change *ch, struct buf *b,
			     unsigned from_slot)
{
	uint64_t nidx = buf_index(b), first = bmap_node_first(m, nidx);
	unsigned level = bmap_node_level(nidx);
	int err = 0;

	for (unsigned s = from_slot; s < m->bm_entries && !err; s++) {
		uint64_t e = bmap_entry(buf_data(b), s);

		if (!e)
			continue;
		if (level == 1)
			err = ch->bc_gone(ch->bc_arg, buf_owner(b), e);
		else
			err = bmap_gone_subtree(
			    m, ch, buf_owner(b),
			    bmap_node_index(m, level - 1,
					    first + ((uint64_t)s << (m->bm_shift * (level - 1)))),
			    e);
	}
	return err;
}

/*
 * @t's placed root changed (what it replaced was told to bc_gone first,
 * as in bmap_modify): tell bc_root of the new root. If bc_root fails (the
 * commit fails), bt_record_stale says so: the next commit stores the
 * record even if it finds the root as it wants it (a requeued block
 * written at the same address), or the tree already empty.
 */
static int bmap_root_changed(struct bmap_tree *t, const struct bmap_change *ch)
{
	int err = ch->bc_root(ch->bc_arg, t);

	t->bt_record_stale = err != 0;
	return err;
}

/*
 * Make @pblk the placed root of @t, an owner's tree of height 0: its data
 * block 0 (0: none). The owner's record must say so (bc_root).
 */
static int bmap_set_direct(struct bmap *m, struct bmap_tree *t, const struct bmap_change *ch,
			   uint64_t pblk)
{
	uint64_t old = t->bt_root;
	int err;

	assert(!t->bt_height && !t->bt_root_height && bmap_direct_root(t->bt_owner));
	if (old == pblk && !t->bt_record_stale)
		return 0;
	if (old && old != pblk && (err = ch->bc_gone(ch->bc_arg, t->bt_owner, old)))
		return err;
	bmap_wrlock(m);
	t->bt_root = pblk;
	bmap_unlock(m);
	return bmap_root_changed(t, ch);
}

/*
 * Grow @t until it has @height levels: each new root's entry 0 is the old
 * (a height-0 root, a data block, becomes entry 0 of the first map block).
 */
static int bmap_grow(struct bmap *m, struct bmap_tree *t, const struct bmap_change *ch,
		     unsigned height)
{
	int err = 0;

	while (!err && t->bt_height < height) {
		uint64_t old = 0;

		if (t->bt_root_height == t->bt_height)
			old = t->bt_root; /* placed: link it; an unplaced one links itself */
		t->bt_height++;
		if (old && (err = bmap_set(m, t, ch, t->bt_height, 0, old)))
			t->bt_height--; /* not linked: the next commit grows it again */
	}
	return err;
}

int bmap_set(struct bmap *m, struct bmap_tree *t, const struct bmap_change *ch, unsigned level,
	     uint64_t index, uint64_t value)
{
	struct buf *b;
	int err;

	if (level == 1 && !index && !t->bt_height && bmap_direct_root(t->bt_owner))
		return bmap_set_direct(m, t, ch, value);
	err = bmap_grow(m, t, ch, MAX(level, bmap_height_for(m, index)));
	if (err)
		return err;
	err = bmap_path_get(m, t, level, index, true, &b);
	if (err)
		return err;
	err = bmap_modify(m, ch, b, bmap_slot(m, level, index), value);
	buf_put(b);
	return err;
}

int bmap_clear(struct bmap *m, struct bmap_tree *t, const struct bmap_change *ch, uint64_t index)
{
	unsigned slot = bmap_slot(m, 1, index);
	struct buf *b;
	int err;

	if (!bmap_covers(m, t->bt_height, index))
		return 0;
	if (!t->bt_height)
		return t->bt_root ? bmap_set_direct(m, t, ch, 0) : 0;
	err = bmap_path_get(m, t, 1, index, false, &b);
	if (err || !b)
		return err;
	if (bmap_entry(buf_data(b), slot))
		err = bmap_modify(m, ch, b, slot, 0);
	buf_put(b);
	return err;
}

int bmap_place(struct bmap *m, struct bmap_tree *t, const struct bmap_change *ch, struct buf *node,
	       uint64_t pblk)
{
	uint64_t nidx = buf_index(node);
	unsigned level = bmap_node_level(nidx);
	uint64_t old = 0;
	int err;

	assert(bmap_in_tree(m, t, nidx));
	if (level != t->bt_height)
		return bmap_set(m, t, ch, level + 1, bmap_node_first(m, nidx), pblk);
	if (t->bt_root_height == level)
		old = t->bt_root; /* replaced; a lower one is the new root's child */
	if (old && old != pblk && (err = ch->bc_gone(ch->bc_arg, t->bt_owner, old)))
		return err;
	bmap_wrlock(m);
	t->bt_root = pblk;
	t->bt_root_height = (uint8_t)level;
	bmap_unlock(m);
	return bmap_root_changed(t, ch);
}

/*
 * Clear entries [@from_slot, E) of map block @b in one modification
 * (nothing if they are all holes already).
 */
static int bmap_clear_from(struct bmap *m, const struct bmap_change *ch, struct buf *b,
			   unsigned from_slot)
{
	unsigned s = from_slot;
	int err;

	while (s < m->bm_entries && !bmap_entry(buf_data(b), s))
		s++;
	if (s == m->bm_entries)
		return 0;
	err = bmap_gone_entries(m, ch, b, s);
	if (err)
		return err;
	err = buf_modify_begin(b, ch->bc_delta);
	if (err)
		return err;
	bmap_wrlock(m);
	for (; s < m->bm_entries; s++)
		bmap_entry_store(buf_data(b), s, 0);
	bmap_unlock(m);
	buf_modify_end(b);
	return ch->bc_note(ch->bc_arg, b);
}

int bmap_prune(struct bmap *m, struct bmap_tree *t, const struct bmap_change *ch, uint64_t from)
{
	unsigned l = t->bt_height;
	uint64_t pblk = t->bt_root_height == l ? t->bt_root : 0;
	int err = 0;

	assert(from > 0);
	if (!bmap_covers(m, l, from))
		return 0; /* nothing at or past @from */
	for (; l >= 1 && !err; l--) {
		uint64_t span_mask = (1ULL << (m->bm_shift * (l - 1))) - 1;
		unsigned slot = bmap_slot(m, l, from);
		bool whole = l == 1 || !(from & span_mask); /* the child at slot is all >= from */
		struct buf *b;

		err = bmap_node_get(m, t->bt_owner, bmap_node_index(m, l, from), pblk, false, &b);
		if (err || !b)
			return err;
		pblk = bmap_entry(buf_data(b), slot);
		err = bmap_clear_from(m, ch, b, whole ? slot : slot + 1);
		buf_put(b);
		if (whole)
			break;
	}
	return err;
}

int bmap_empty(struct bmap *m, struct bmap_tree *t, const struct bmap_change *ch)
{
	int err = 0;

	if (t->bt_height)
		err = bmap_gone_subtree(m, ch, t->bt_owner, bmap_node_index(m, t->bt_height, 0),
					t->bt_root_height == t->bt_height ? t->bt_root : 0);
	else if (t->bt_root)
		err = ch->bc_gone(ch->bc_arg, t->bt_owner, t->bt_root); /* a height-0 root: data */
	if (err)
		return err;
	bmap_wrlock(m);
	t->bt_root = 0;
	t->bt_root_height = 0;
	t->bt_height = 0;
	bmap_unlock(m);
	return bmap_root_changed(t, ch);
}

bool bmap_in_tree(const struct bmap *m, const struct bmap_tree *t, uint64_t node_index)
{
	unsigned level = bmap_node_level(node_index);

	return bmap_is_node(node_index) && level >= 1 && level <= t->bt_height &&
	       (level == t->bt_height
		    ? (node_index & VOL_NODE_MASK) == 0
		    : bmap_covers(m, t->bt_height, bmap_node_first(m, node_index)));
}

int bmap_change_block(struct bmap *m, struct bmap_tree *t, const struct bmap_change *ch,
		      uint64_t index, void (*fn)(void *arg, void *data), void *arg)
{
	struct buf *b;
	int err;

	err = bmap_get_block(m, t, index, true, &b);
	if (err)
		return err;
	err = buf_modify_begin(b, ch->bc_delta);
	if (err)
		goto out_put;
	bmap_wrlock(m);
	fn(arg, buf_data(b));
	bmap_unlock(m);
	buf_modify_end(b);
	err = ch->bc_note(ch->bc_arg, b);
out_put:
	buf_put(b);
	return err;
}

int bmap_get_block(struct bmap *m, struct bmap_tree *t, uint64_t index, bool create,
		   struct buf **out)
{
	uint64_t pblk = 0;
	struct buf *leaf = NULL;
	int err = 0;

	*out = bmap_cursor_find(m, BMAP_CURSOR_BLOCK, t->bt_owner, index);
	if (*out)
		return 0;
	if (!t->bt_height)
		pblk = index ? 0 : t->bt_root; /* an owner's height-0 root is data */
	else if (bmap_covers(m, t->bt_height, index))
		err = bmap_path_get(m, t, 1, index, false, &leaf);
	if (err)
		return err;
	if (leaf)
		pblk = bmap_entry(buf_data(leaf), bmap_slot(m, 1, index));
	buf_put(leaf);
	err = bmap_node_get(m, t->bt_owner, index, pblk, create, out);
	if (!err)
		bmap_cursor_keep(m, BMAP_CURSOR_BLOCK, *out);
	return err;
}

/* ---- trees of addresses, read from the device --------------------------- */

struct bmap_dev_walk {
	struct vol *dw_vol;
	int (*dw_fn)(void *arg, uint64_t pblk, unsigned level, uint64_t index);
	void *dw_arg;
};

/* Map block @pblk at @level covering data from @first; @buf: a block per level. */
static int bmap_dev_walk_node(struct bmap_dev_walk *dw, uint64_t pblk, unsigned level,
			      uint64_t first, unsigned char *buf)
{
	struct vol *v = dw->dw_vol;
	int err;

	if (!vol_pblk_valid(v, pblk))
		return -EUCLEAN;
	err = dw->dw_fn(dw->dw_arg, pblk, level, first);
	if (!err)
		err = bdev_read(v->v_bdev, pblk, 1, buf);
	for (uint32_t s = 0; s < v->v_map.bm_entries && !err; s++) {
		uint64_t child = bmap_entry(buf, s);
		uint64_t cfirst = first + ((uint64_t)s << (v->v_map.bm_shift * (level - 1)));

		if (!child)
			continue;
		if (level > 1)
			err =
			    bmap_dev_walk_node(dw, child, level - 1, cfirst, buf + v->v_block_size);
		else if (!vol_pblk_valid(v, child))
			err = -EUCLEAN;
		else
			err = dw->dw_fn(dw->dw_arg, child, 0, cfirst);
	}
	return err;
}

int bmap_dev_walk(struct vol *v, uint64_t root, unsigned height,
		  int (*fn)(void *arg, uint64_t pblk, unsigned level, uint64_t index), void *arg)
{
	struct bmap_dev_walk dw = {v, fn, arg};
	unsigned char *buf;
	int err;

	if (!height)
		return root ? -EUCLEAN : 0;
	buf = malloc((size_t)height * v->v_block_size);
	if (!buf)
		return -ENOMEM;
	err = bmap_dev_walk_node(&dw, root, height, 0, buf);
	free(buf);
	return err;
}

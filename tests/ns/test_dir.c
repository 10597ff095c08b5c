/*
 * test_dir.c - directories (src/ns/dir.c).
 *
 * Proves: an empty directory has '.', '..' and nothing else; add, lookup,
 * remove, replace, set/get parent and count work, and every error case
 * is refused before anything is written (bad names, 255 bytes ok and 256
 * -ENAMETOOLONG, '.', '..', '/', NUL, ino 0, a bad type, -EEXIST,
 * -ENOENT, -ENOTDIR, a cookie past 2^63); every block size from 512 to
 * 65536 builds, shrinks and regrows a directory of long and short names
 * (splits in three at 512 bytes) within dir_op_blocks() per operation,
 * dir_check clean after each phase, and the tree shrinks back to one
 * leaf; readdir resumed from cookies across random adds and removes
 * returns every entry that stayed exactly once and nothing twice (against
 * an in-memory model, seeded), with forced hash collisions too; cookies,
 * names and the structure survive vol_close and reopen; a collision group
 * is full at 256 names; damage (garbage, a punched block, a damaged
 * header) is reported by dir_check and makes lookups fail with -EUCLEAN,
 * not crash; and a big directory (100,000 entries, CAIRN_DIR_BIG=1 for
 * 1,000,000) is built, sampled, halved and listed exactly, with timings.
 */
#include "harness.h"

#include "ns/dir.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#define DIR_INO	   100
#define PARENT_INO 42
#define SEG_BLOCKS 64

static atomic_uint max_used; /* most blocks one operation used */

/* ---- volumes --------------------------------------------------------- */

static struct vol *open_dev(struct bdev *d, uint32_t cache)
{
	struct vol_open_opts oo = {.voo_cache_blocks = cache, .voo_max_age_ms = 3600 * 1000};
	struct vol *v;

	assert_int_equal(vol_open(d, &oo, &v), 0);
	return v;
}

static struct vol *mkvol(uint32_t bs, uint64_t nblocks, uint32_t cache)
{
	struct vol_mkfs_opts mo = {.vmo_log = {.lfo_block_size = bs, .lfo_seg_blocks = SEG_BLOCKS}};
	struct bdev *d;

	assert_int_equal(bdev_open_ram(bs, nblocks, &d), 0);
	assert_int_equal(vol_mkfs(d, &mo), 0);
	return open_dev(d, cache);
}

/* ---- one operation per transaction ----------------------------------------- */

static uint32_t op_blocks(struct vol *v)
{
	return dir_op_blocks(vol_block_size(v));
}

static void txn_begin(struct vol *v, uint64_t n, struct vol_txn *t)
{
	int err = vol_txn_begin(v, n, 0, t);
	struct log_space sp;

	if (err) {
		vol_space(v, &sp);
		fail_msg("vol_txn_begin(%" PRIu64 "): %d (space: %" PRIu64 " written, %" PRIu64
			 " reserved, %" PRIu64 " free)",
			 n, err, sp.sp_written, sp.sp_reserved, sp.sp_free);
	}
}

static void txn_end(struct vol_txn *t, uint64_t before)
{
	uint32_t used = (uint32_t)(before - t->vt_left);

	unsigned old = atomic_load(&max_used);

	while (used > old && !atomic_compare_exchange_weak(&max_used, &old, used))
		;
	vol_txn_end(t);
}

static void do_create(struct vol *v, uint64_t d, uint64_t parent)
{
	struct vol_txn t;

	txn_begin(v, 2, &t);
	assert_int_equal(dir_create(&t, d, parent), 0);
	assert_int_equal(t.vt_left, 0);
	vol_txn_end(&t);
}

static int do_add(struct vol *v, uint64_t d, const char *name, size_t len, uint64_t ino)
{
	struct vol_txn t;
	int err;

	txn_begin(v, op_blocks(v), &t);
	err = dir_add(&t, d, name, len, ino, DT_REG);
	txn_end(&t, op_blocks(v));
	return err;
}

static int do_remove(struct vol *v, uint64_t d, const char *name, size_t len, struct dir_entry *e)
{
	struct vol_txn t;
	int err;

	txn_begin(v, op_blocks(v), &t);
	err = dir_remove(&t, d, name, len, e);
	txn_end(&t, op_blocks(v));
	return err;
}

static int add_s(struct vol *v, uint64_t d, const char *name, uint64_t ino)
{
	return do_add(v, d, name, strlen(name), ino);
}

static int remove_s(struct vol *v, uint64_t d, const char *name)
{
	return do_remove(v, d, name, strlen(name), NULL);
}

static int lookup_s(struct vol *v, uint64_t d, const char *name, struct dir_entry *e)
{
	return dir_lookup(v, d, name, strlen(name), e);
}

/* ---- checking --------------------------------------------------------- */

struct problems {
	unsigned p_n;
	char p_first[160];
};

static void report(void *ctx, uint64_t d, uint64_t blk, const char *what)
{
	struct problems *p = ctx;

	if (!p->p_n++)
		snprintf(p->p_first, sizeof(p->p_first), "dir %" PRIu64 " block %" PRIu64 ": %s", d,
			 blk, what);
}

static void expect_clean(struct vol *v, uint64_t d)
{
	struct problems p = {0};
	int err = dir_check(v, d, report, &p);

	if (err || p.p_n)
		fail_msg("dir_check: %d, %u problems, first: %s", err, p.p_n, p.p_first);
}

/* ---- names ------------------------------------------------------------- */

/* Name number @i: "<i>." padded with letters to a length that depends on i
 * (1..255 bytes overall when @long_names, else up to 24). */
static size_t name_of(uint64_t i, bool long_names, char *buf)
{
	size_t len = (size_t)snprintf(buf, 32, "%" PRIu64 ".", i);
	uint64_t h = i * 0x9e3779b97f4a7c15ULL;
	size_t want = long_names ? 1 + (h >> 32) % DIR_NAME_MAX : 8 + (h >> 32) % 16;

	if ((h & 7) == 0 && long_names)
		want = DIR_NAME_MAX;
	for (; len < want; len++)
		buf[len] = (char)('a' + (i + len) % 26);
	buf[len] = '\0';
	return len;
}

/* The number a name was made from. */
static uint64_t num_of(const char *name)
{
	return strtoull(name, NULL, 10);
}

/* ---- readdir into a model ----------------------------------------------- */

struct listing {
	uint64_t l_n;	   /* size of the arrays */
	uint32_t *l_seen;  /* times each number was returned */
	uint64_t *l_ino;   /* ino returned */
	uint64_t l_total;  /* entries returned (not '.' '..') */
	uint64_t l_cookie; /* resume here */
	uint64_t l_limit;  /* stop after this many in one call (0: none) */
	uint64_t l_in_call;
	uint64_t l_prev_cookie; /* cookies grow */
	bool l_dots[2];
	uint64_t l_other; /* names not made by name_of */
};

static int list_fill(void *ctx, const char *name, size_t len, uint64_t ino, uint8_t type,
		     uint64_t next)
{
	struct listing *l = ctx;
	char buf[DIR_NAME_MAX + 1];

	assert_true(next > l->l_prev_cookie);
	assert_true(next < (1ULL << 63));
	l->l_prev_cookie = next;
	l->l_cookie = next;
	memcpy(buf, name, len);
	buf[len] = '\0';
	if (!strcmp(buf, ".") || !strcmp(buf, "..")) {
		assert_int_equal(type, DT_DIR);
		l->l_dots[len - 1] = true;
	} else if (buf[0] < '0' || buf[0] > '9') {
		l->l_other++;
	} else {
		uint64_t i = num_of(buf);
		char want[DIR_NAME_MAX + 1];

		assert_true(i < l->l_n);
		assert_true(len == name_of(i, true, want) || len == name_of(i, false, want));
		l->l_seen[i]++;
		l->l_ino[i] = ino;
		l->l_total++;
	}
	return l->l_limit && ++l->l_in_call >= l->l_limit;
}

static void listing_init(struct listing *l, uint64_t n)
{
	memset(l, 0, sizeof(*l));
	l->l_n = n;
	l->l_seen = calloc(n, sizeof(*l->l_seen));
	l->l_ino = calloc(n, sizeof(*l->l_ino));
	assert_non_null(l->l_seen);
	assert_non_null(l->l_ino);
}

static void listing_fini(struct listing *l)
{
	free(l->l_seen);
	free(l->l_ino);
}

/* One readdir call; false once the listing is complete. */
static bool list_step(struct vol *v, uint64_t d, struct listing *l)
{
	uint64_t before = l->l_total + l->l_other + l->l_dots[0] + l->l_dots[1];

	l->l_in_call = 0;
	assert_int_equal(dir_readdir(v, d, l->l_cookie, list_fill, l), 0);
	return l->l_limit &&
	       l->l_total + l->l_other + l->l_dots[0] + l->l_dots[1] - before == l->l_limit;
}

/* ---- basics ------------------------------------------------------------- */

static void test_bounds(void **state)
{
	(void)state;
	for (uint32_t bs = 512; bs <= 65536; bs *= 2)
		assert_true(dir_op_blocks(bs) <= DIR_OP_BLOCKS_MAX);
	assert_int_equal(dir_op_blocks(512), DIR_OP_BLOCKS_MAX);
	assert_int_equal(dir_op_blocks(4096), 23);
	assert_true(DIR_OP_BLOCKS_MAX <= 64);
}

static void test_basics(void **state)
{
	struct vol *v = mkvol(4096, 4096, 1024);
	struct dir_entry e;
	struct listing l;
	uint64_t n, parent;
	bool empty;
	struct vol_txn t;

	(void)state;
	assert_int_equal(dir_lookup(v, DIR_INO, "a", 1, &e), -ENOTDIR);
	do_create(v, DIR_INO, PARENT_INO);
	expect_clean(v, DIR_INO);
	assert_int_equal(dir_count(v, DIR_INO, &n), 0);
	assert_int_equal(n, 0);
	assert_int_equal(dir_is_empty(v, DIR_INO, &empty), 0);
	assert_true(empty);
	assert_int_equal(lookup_s(v, DIR_INO, ".", &e), 0);
	assert_int_equal(e.de_ino, DIR_INO);
	assert_int_equal(lookup_s(v, DIR_INO, "..", &e), 0);
	assert_int_equal(e.de_ino, PARENT_INO);
	assert_int_equal(lookup_s(v, DIR_INO, "a", &e), -ENOENT);

	assert_int_equal(add_s(v, DIR_INO, "a", 1000), 0);
	assert_int_equal(add_s(v, DIR_INO, "b", 1001), 0);
	assert_int_equal(add_s(v, DIR_INO, "a", 1002), -EEXIST);
	assert_int_equal(lookup_s(v, DIR_INO, "a", &e), 0);
	assert_int_equal(e.de_ino, 1000);
	assert_int_equal(e.de_type, DT_REG);
	assert_true(e.de_cookie > DIR_COOKIE_DOTDOT && e.de_cookie < (1ULL << 63));
	assert_int_equal(dir_count(v, DIR_INO, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(dir_is_empty(v, DIR_INO, &empty), 0);
	assert_false(empty);

	/* replace keeps the cookie */
	txn_begin(v, 1, &t);
	assert_int_equal(dir_replace(&t, DIR_INO, "a", 1, 2000, DT_DIR, &e), 0);
	assert_int_equal(e.de_ino, 1000);
	assert_int_equal(dir_replace(&t, DIR_INO, "zz", 2, 2000, DT_DIR, NULL), -ENOENT);
	vol_txn_end(&t);
	{
		struct dir_entry e2;

		assert_int_equal(lookup_s(v, DIR_INO, "a", &e2), 0);
		assert_int_equal(e2.de_ino, 2000);
		assert_int_equal(e2.de_type, DT_DIR);
		assert_int_equal(e2.de_cookie, e.de_cookie);
	}

	/* parent */
	txn_begin(v, 1, &t);
	assert_int_equal(dir_set_parent(&t, DIR_INO, 77), 0);
	vol_txn_end(&t);
	assert_int_equal(dir_get_parent(v, DIR_INO, &parent), 0);
	assert_int_equal(parent, 77);

	/* a listing: '.', '..', then both; a stop after each entry resumes */
	listing_init(&l, 2000);
	l.l_limit = 1;
	while (list_step(v, DIR_INO, &l))
		;
	assert_true(l.l_dots[0] && l.l_dots[1]);
	assert_int_equal(l.l_other, 2);
	listing_fini(&l);

	assert_int_equal(remove_s(v, DIR_INO, "a"), 0);
	assert_int_equal(remove_s(v, DIR_INO, "a"), -ENOENT);
	assert_int_equal(lookup_s(v, DIR_INO, "a", &e), -ENOENT);
	assert_int_equal(do_remove(v, DIR_INO, "b", 1, &e), 0);
	assert_int_equal(e.de_ino, 1001);
	assert_int_equal(dir_is_empty(v, DIR_INO, &empty), 0);
	assert_true(empty);
	expect_clean(v, DIR_INO);
	assert_int_equal(vol_close(v), 0);
}

static void test_errors(void **state)
{
	struct vol *v = mkvol(4096, 4096, 1024);
	char name[DIR_NAME_MAX + 2];
	struct dir_entry e;
	struct vol_txn t;

	(void)state;
	do_create(v, DIR_INO, PARENT_INO);
	memset(name, 'x', sizeof(name));
	assert_int_equal(do_add(v, DIR_INO, name, DIR_NAME_MAX, 5), 0);
	assert_int_equal(dir_lookup(v, DIR_INO, name, DIR_NAME_MAX, &e), 0);
	assert_int_equal(do_add(v, DIR_INO, name, DIR_NAME_MAX + 1, 5), -ENAMETOOLONG);
	assert_int_equal(dir_lookup(v, DIR_INO, name, DIR_NAME_MAX + 1, &e), -ENAMETOOLONG);
	assert_int_equal(do_remove(v, DIR_INO, name, DIR_NAME_MAX + 1, NULL), -ENAMETOOLONG);
	assert_int_equal(do_add(v, DIR_INO, "", 0, 5), -EINVAL);
	assert_int_equal(do_add(v, DIR_INO, ".", 1, 5), -EINVAL);
	assert_int_equal(do_add(v, DIR_INO, "..", 2, 5), -EINVAL);
	assert_int_equal(do_add(v, DIR_INO, "a/b", 3, 5), -EINVAL);
	assert_int_equal(do_add(v, DIR_INO, "a\0b", 3, 5), -EINVAL);
	assert_int_equal(do_add(v, DIR_INO, "...", 3, 5), 0); /* only . and .. are special */
	assert_int_equal(do_add(v, DIR_INO, "ok", 2, 0), -EINVAL);
	assert_int_equal(do_remove(v, DIR_INO, ".", 1, NULL), -EINVAL);
	assert_int_equal(do_remove(v, DIR_INO, "..", 2, NULL), -EINVAL);
	assert_int_equal(do_remove(v, DIR_INO, "nope", 4, NULL), -ENOENT);
	txn_begin(v, 1, &t);
	assert_int_equal(dir_add(&t, DIR_INO, "ok", 2, 9, 16), -EINVAL);
	assert_int_equal(dir_replace(&t, DIR_INO, "...", 3, 0, DT_REG, NULL), -EINVAL);
	assert_int_equal(dir_replace(&t, DIR_INO, "..", 2, 9, DT_REG, NULL), -EINVAL);
	assert_int_equal(t.vt_left, 1); /* nothing written */
	vol_txn_end(&t);
	assert_int_equal(dir_lookup(v, DIR_INO, "", 0, &e), -EINVAL);
	assert_int_equal(dir_lookup(v, DIR_INO, "a/b", 3, &e), -EINVAL);
	assert_int_equal(dir_readdir(v, DIR_INO, 1ULL << 63, list_fill, NULL), -EINVAL);
	assert_int_equal(dir_readdir(v, DIR_INO + 1, 0, list_fill, NULL), -ENOTDIR);
	expect_clean(v, DIR_INO);
	assert_int_equal(vol_close(v), 0);
}

/* ---- every block size: grow, shrink, regrow ------------------------------------ */

static void build_and_shrink(uint32_t bs, uint64_t n, bool long_names)
{
	struct vol *v = mkvol(bs, bs < 4096 ? 262144 : 65536, 4096);
	char name[DIR_NAME_MAX + 1];
	struct dir_stats st;
	struct dir_entry e;
	struct listing l;
	size_t len;

	max_used = 0;
	do_create(v, DIR_INO, PARENT_INO);
	for (uint64_t i = 0; i < n; i++) {
		len = name_of(i, long_names, name);
		assert_int_equal(do_add(v, DIR_INO, name, len, 1000 + i), 0);
	}
	expect_clean(v, DIR_INO);
	assert_int_equal(dir_stats(v, DIR_INO, &st), 0);
	print_message("# bs %u: %" PRIu64 " names (%s): height %u, %" PRIu64 " nodes\n", bs, n,
		      long_names ? "long" : "short", st.ds_height, st.ds_nodes);
	for (uint64_t i = 0; i < n; i++) {
		len = name_of(i, long_names, name);
		assert_int_equal(dir_lookup(v, DIR_INO, name, len, &e), 0);
		assert_int_equal(e.de_ino, 1000 + i);
	}
	listing_init(&l, n);
	while (list_step(v, DIR_INO, &l))
		;
	assert_int_equal(l.l_total, n);
	for (uint64_t i = 0; i < n; i++)
		assert_int_equal(l.l_seen[i], 1);
	listing_fini(&l);
	/* remove the odd ones, check, then the rest */
	for (uint64_t pass = 0; pass < 2; pass++) {
		for (uint64_t i = 1 - pass; i < n; i += 2) {
			len = name_of(i, long_names, name);
			assert_int_equal(do_remove(v, DIR_INO, name, len, &e), 0);
			assert_int_equal(e.de_ino, 1000 + i);
		}
		expect_clean(v, DIR_INO);
	}
	assert_int_equal(dir_stats(v, DIR_INO, &st), 0);
	assert_int_equal(st.ds_entries, 0);
	assert_int_equal(st.ds_height, 1);
	assert_int_equal(st.ds_nodes, 1);
	print_message("# bs %u: emptied: %" PRIu64 " free-list blocks, %" PRIu64
		      " free indexes, hwm %" PRIu64 "; most blocks per op %u of %u\n",
		      bs, st.ds_free_blocks, st.ds_free, st.ds_hwm, max_used, dir_op_blocks(bs));
	/* regrow: reuses the free indexes first */
	for (uint64_t i = 0; i < n / 2; i++) {
		len = name_of(i, long_names, name);
		assert_int_equal(do_add(v, DIR_INO, name, len, 1000 + i), 0);
	}
	expect_clean(v, DIR_INO);
	{
		struct dir_stats st2;

		assert_int_equal(dir_stats(v, DIR_INO, &st2), 0);
		assert_int_equal(st2.ds_hwm, st.ds_hwm);
	}
	assert_true(max_used <= dir_op_blocks(bs));
	assert_int_equal(vol_close(v), 0);
}

static void test_block_sizes(void **state)
{
	(void)state;
	test_watchdog("test_block_sizes", 300);
	build_and_shrink(512, 3000, true);
	build_and_shrink(512, 3000, false);
	build_and_shrink(1024, 3000, true);
	build_and_shrink(4096, 6000, true);
	build_and_shrink(4096, 6000, false);
	build_and_shrink(65536, 6000, true);
	test_watchdog_cancel();
}

/* ---- readdir stability against a model ------------------------------------------ */

#define POOL 4000

/*
 * Listings resumed from cookies while random adds and removes run
 * between the calls: every name present for the whole listing comes
 * back exactly once, no name twice, and nothing that never existed.
 */
static void stability_run(uint32_t bs, unsigned hash_bits, uint64_t seed)
{
	struct vol *v;
	bool *present = calloc(POOL, 1), *ever = calloc(POOL, 1), *stayed = calloc(POOL, 1);
	bool *readded = calloc(POOL, 1);
	char name[DIR_NAME_MAX + 1];
	struct prng rng;
	size_t len;

	assert_non_null(present);
	dir_hooks =
	    (struct dir_hooks){.dh_hash_bits = hash_bits, .dh_fixed_seed = true, .dh_seed = seed};
	v = mkvol(bs, 262144, 4096);
	do_create(v, DIR_INO, PARENT_INO);
	dir_hooks = (struct dir_hooks){0};
	prng_init(&rng, seed);
	for (unsigned i = 0; i < POOL / 2; i++) {
		uint64_t k = prng_below(&rng, POOL);

		if (present[k])
			continue;
		len = name_of(k, true, name);
		assert_int_equal(do_add(v, DIR_INO, name, len, k + 1), 0);
		present[k] = true;
	}
	for (unsigned round = 0; round < 12; round++) {
		struct listing l;

		listing_init(&l, POOL);
		l.l_limit = 1 + prng_below(&rng, 40);
		for (unsigned k = 0; k < POOL; k++) {
			ever[k] = stayed[k] = present[k];
			readded[k] = false;
		}
		while (list_step(v, DIR_INO, &l)) {
			unsigned changes = (unsigned)prng_below(&rng, 30);

			for (unsigned c = 0; c < changes; c++) {
				uint64_t k = prng_below(&rng, POOL);

				len = name_of(k, true, name);
				if (present[k]) {
					assert_int_equal(do_remove(v, DIR_INO, name, len, NULL), 0);
					stayed[k] = false;
				} else {
					assert_int_equal(do_add(v, DIR_INO, name, len, k + 1), 0);
					readded[k] = ever[k];
					ever[k] = true;
				}
				present[k] = !present[k];
			}
		}
		for (unsigned k = 0; k < POOL; k++) {
			if (stayed[k] && l.l_seen[k] != 1)
				fail_msg("seed %" PRIu64
					 ": name %u present throughout, listed %u times",
					 seed, k, l.l_seen[k]);
			/* a name removed and added again is a new entry: it may be
			 * listed again (with collisions it can get another key) */
			if ((l.l_seen[k] > 1 && !readded[k]) || l.l_seen[k] > 2 ||
			    (l.l_seen[k] && !ever[k]))
				fail_msg("seed %" PRIu64 ": name %u listed %u times (existed: %d)",
					 seed, k, l.l_seen[k], ever[k]);
			if (l.l_seen[k])
				assert_int_equal(l.l_ino[k], k + 1);
		}
		listing_fini(&l);
		expect_clean(v, DIR_INO);
	}
	assert_int_equal(vol_close(v), 0);
	free(present);
	free(ever);
	free(stayed);
	free(readded);
}

static void test_readdir_stability(void **state)
{
	uint64_t seed = test_seed("readdir stability", 20240601);

	(void)state;
	test_watchdog("test_readdir_stability", 300);
	stability_run(512, 0, seed);
	stability_run(4096, 0, seed + 1);
	stability_run(512, 5, seed + 2); /* 32 hash values: groups of ~60 names */
	test_watchdog_cancel();
}

/* ---- collisions ---------------------------------------------------------------- */

static void test_collisions(void **state)
{
	char name[DIR_NAME_MAX + 1];
	struct dir_entry e;
	struct listing l;
	struct vol *v;
	size_t len;
	uint64_t *cookies;

	(void)state;
	/* one bit of hash: every name is in group 1 (p 0 is clamped to 1) */
	dir_hooks = (struct dir_hooks){.dh_hash_bits = 1, .dh_fixed_seed = true, .dh_seed = 7};
	v = mkvol(512, 65536, 4096);
	do_create(v, DIR_INO, PARENT_INO);
	dir_hooks = (struct dir_hooks){0};
	cookies = calloc(256, sizeof(*cookies));
	for (uint64_t i = 0; i < 256; i++) {
		len = name_of(i, false, name);
		assert_int_equal(do_add(v, DIR_INO, name, len, 1000 + i), 0);
	}
	len = name_of(256, false, name);
	assert_int_equal(do_add(v, DIR_INO, name, len, 1256), -ENOSPC);
	expect_clean(v, DIR_INO);
	for (uint64_t i = 0; i < 256; i++) {
		len = name_of(i, false, name);
		assert_int_equal(dir_lookup(v, DIR_INO, name, len, &e), 0);
		assert_int_equal(e.de_ino, 1000 + i);
		cookies[i] = e.de_cookie;
		for (uint64_t j = 0; j < i; j++)
			assert_true(cookies[j] != cookies[i]);
	}
	/* the group spans many leaves at 512 bytes; remove some, re-add others */
	for (uint64_t i = 0; i < 256; i += 3) {
		len = name_of(i, false, name);
		assert_int_equal(do_remove(v, DIR_INO, name, len, NULL), 0);
	}
	for (uint64_t i = 256; i < 256 + 40; i++) {
		len = name_of(i, false, name);
		assert_int_equal(do_add(v, DIR_INO, name, len, 1000 + i), 0);
	}
	expect_clean(v, DIR_INO);
	listing_init(&l, 512);
	l.l_limit = 7;
	while (list_step(v, DIR_INO, &l))
		;
	for (uint64_t i = 0; i < 296; i++)
		assert_int_equal(l.l_seen[i], (i < 256 && i % 3 == 0) ? 0 : 1);
	listing_fini(&l);
	/* an entry that stayed keeps its cookie */
	len = name_of(1, false, name);
	assert_int_equal(dir_lookup(v, DIR_INO, name, len, &e), 0);
	assert_int_equal(e.de_cookie, cookies[1]);
	free(cookies);
	assert_int_equal(vol_close(v), 0);

	/* a few bits: many groups, each several names */
	dir_hooks = (struct dir_hooks){.dh_hash_bits = 3, .dh_fixed_seed = true, .dh_seed = 9};
	v = mkvol(1024, 65536, 4096);
	do_create(v, DIR_INO, PARENT_INO);
	dir_hooks = (struct dir_hooks){0};
	for (uint64_t i = 0; i < 1000; i++) {
		len = name_of(i, true, name);
		int err = do_add(v, DIR_INO, name, len, 1000 + i);

		assert_true(err == 0 || err == -ENOSPC);
	}
	expect_clean(v, DIR_INO);
	assert_int_equal(vol_close(v), 0);
}

/* ---- persistence --------------------------------------------------------------- */

static void test_persistence(void **state)
{
	struct vol_mkfs_opts mo = {
	    .vmo_log = {.lfo_block_size = 4096, .lfo_seg_blocks = SEG_BLOCKS}};
	char path[] = "/tmp/cairn-dir-test-XXXXXX", name[DIR_NAME_MAX + 1];
	struct listing l;
	struct dir_entry e;
	struct bdev *d;
	struct vol *v;
	uint64_t n = 3000, parent;
	size_t len;
	int fd;

	(void)state;
	fd = mkstemp(path);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(unlink(path), 0);
	assert_int_equal(bdev_open_file(path, 4096, 32768, BDEV_CREATE, &d), 0);
	assert_int_equal(vol_mkfs(d, &mo), 0);
	v = open_dev(d, 4096);
	do_create(v, DIR_INO, PARENT_INO);
	for (uint64_t i = 0; i < n; i++) {
		len = name_of(i, true, name);
		assert_int_equal(do_add(v, DIR_INO, name, len, 1000 + i), 0);
	}
	/* list half way, close, reopen, resume */
	listing_init(&l, n + 100);
	l.l_limit = n / 2;
	assert_true(list_step(v, DIR_INO, &l));
	assert_int_equal(vol_close(v), 0);

	assert_int_equal(bdev_open_file(path, 4096, 0, 0, &d), 0);
	v = open_dev(d, 1024);
	expect_clean(v, DIR_INO);
	assert_int_equal(dir_get_parent(v, DIR_INO, &parent), 0);
	assert_int_equal(parent, PARENT_INO);
	for (uint64_t i = 0; i < n; i++) {
		len = name_of(i, true, name);
		assert_int_equal(dir_lookup(v, DIR_INO, name, len, &e), 0);
		assert_int_equal(e.de_ino, 1000 + i);
	}
	/* remove some not yet listed ones... after adding a few */
	for (uint64_t i = n; i < n + 100; i++) {
		len = name_of(i, true, name);
		assert_int_equal(do_add(v, DIR_INO, name, len, 1000 + i), 0);
	}
	l.l_limit = 0;
	list_step(v, DIR_INO, &l);
	for (uint64_t i = 0; i < n; i++)
		assert_int_equal(l.l_seen[i], 1);
	listing_fini(&l);
	assert_int_equal(vol_close(v), 0);
	assert_int_equal(unlink(path), 0);
}

/* ---- damage --------------------------------------------------------------------- */

static void damage_and_probe(struct vol *v, uint64_t blk, bool punch, uint64_t n)
{
	char name[DIR_NAME_MAX + 1];
	struct problems p = {0};
	uint8_t *junk = malloc(vol_block_size(v));
	struct prng rng;
	struct dir_entry e;
	struct vol_txn t;
	unsigned bad = 0;
	size_t len;

	prng_init(&rng, blk);
	prng_fill(&rng, junk, vol_block_size(v));
	txn_begin(v, 1, &t);
	if (punch)
		assert_int_equal(vol_punch(&t, DIR_INO, blk), 0);
	else
		assert_int_equal(vol_write(&t, DIR_INO, blk, junk), 0);
	vol_txn_end(&t);
	assert_int_equal(dir_check(v, DIR_INO, report, &p), -EUCLEAN);
	assert_true(p.p_n > 0);
	print_message("# damaged block %" PRIu64 "%s: %u problems, first: %s\n", blk,
		      punch ? " (punched)" : "", p.p_n, p.p_first);
	for (uint64_t i = 0; i < n; i++) {
		int err;

		len = name_of(i, false, name);
		err = dir_lookup(v, DIR_INO, name, len, &e);
		assert_true(err == 0 || err == -EUCLEAN);
		bad += err == -EUCLEAN;
	}
	assert_true(bad > 0);
	{
		struct listing l;
		int err;

		listing_init(&l, n);
		err = dir_readdir(v, DIR_INO, 0, list_fill, &l);
		assert_true(err == -EUCLEAN); /* every listing reaches the damage */
		listing_fini(&l);
	}
	free(junk);
}

static void quiet(enum log_level level, const char *line, void *arg)
{
	(void)level;
	(void)line;
	(void)arg;
}

static void test_damage(void **state)
{
	char name[DIR_NAME_MAX + 1];
	struct dir_stats st;
	struct vol *v;
	uint64_t n = 2000;
	size_t len;

	(void)state;
	cairn_log_set_sink(quiet, NULL); /* the damage is meant: keep the output short */
	for (int kind = 0; kind < 3; kind++) {
		v = mkvol(4096, 16384, 4096);
		do_create(v, DIR_INO, PARENT_INO);
		for (uint64_t i = 0; i < n; i++) {
			len = name_of(i, false, name);
			assert_int_equal(do_add(v, DIR_INO, name, len, 1000 + i), 0);
		}
		assert_int_equal(dir_stats(v, DIR_INO, &st), 0);
		assert_true(st.ds_height >= 2);
		expect_clean(v, DIR_INO);
		if (kind == 0)
			damage_and_probe(v, 3, false, n); /* a leaf or node: garbage */
		else if (kind == 1)
			damage_and_probe(v, 2, true, n); /* punched: zeros */
		else
			damage_and_probe(v, 0, false, n); /* the header */
		assert_int_equal(vol_close(v), 0);
	}
	cairn_log_set_sink(NULL, NULL);
}

/* Rewrite block @blk of the directory as @data with its checksum made
 * right again (the documented seed), so only the structure is wrong. */
static void forge(struct vol *v, uint64_t blk, uint8_t *data)
{
	uint32_t bs = vol_block_size(v);
	uint64_t sum;
	struct vol_txn t;

	memset(data + 16, 0, 8);
	sum = htole64(XXH3_64bits_withSeed(data, bs, DIR_INO * 0x9e3779b97f4a7c15ULL ^ blk));
	memcpy(data + 16, &sum, 8);
	txn_begin(v, 1, &t);
	assert_int_equal(vol_write(&t, DIR_INO, blk, data), 0);
	vol_txn_end(&t);
}

/* Damage with good checksums: only dir_check's invariants can see it. */
static void test_forged_blocks(void **state)
{
	char name[DIR_NAME_MAX + 1];
	uint8_t *hdr = malloc(4096), *leaf = malloc(4096);
	struct problems p = {0};
	struct dir_entry e;
	uint64_t n = 2000, leafblk;
	struct vol *v;
	size_t len;

	(void)state;
	v = mkvol(4096, 16384, 4096);
	do_create(v, DIR_INO, PARENT_INO);
	for (uint64_t i = 0; i < n; i++) {
		len = name_of(i, false, name);
		assert_int_equal(do_add(v, DIR_INO, name, len, 1000 + i), 0);
	}
	/* a leaf with a few entries */
	for (leafblk = 1;; leafblk++) {
		assert_int_equal(vol_read(v, DIR_INO, leafblk, leaf), 0);
		if (!memcmp(leaf, "CDL1", 4) && leaf[24] > 1)
			break;
		assert_true(leafblk < 100);
	}
	/* the first entry's name no longer hashes to its key */
	len = leaf[32 + 17];
	memcpy(name, leaf + 32 + 18, len);
	name[len] = '\0';
	leaf[32 + 18] = leaf[32 + 18] == 'Q' ? 'R' : 'Q';
	forge(v, leafblk, leaf);
	assert_int_equal(vol_read(v, DIR_INO, 0, hdr), 0);
	/* and the header counts one entry too many */
	hdr[40]++;
	forge(v, 0, hdr);
	assert_int_equal(dir_check(v, DIR_INO, report, &p), -EUCLEAN);
	print_message("# forged: %u problems, first: %s\n", p.p_n, p.p_first);
	assert_true(p.p_n >= 2);
	assert_int_equal(lookup_s(v, DIR_INO, name, &e), -ENOENT); /* its name is gone */
	free(hdr);
	free(leaf);
	assert_int_equal(vol_close(v), 0);
}

/* ---- threads (for TSan): writers on their own directories, readers on a
 * shared one (the caller's locking contract: readers share, a writer is
 * alone on its directory) ---- */

#define THREADS	   4
#define THREAD_OPS 1500

struct thread_arg {
	struct vol *ta_vol;
	unsigned ta_id;
};

static void *writer(void *p)
{
	struct thread_arg *a = p;
	uint64_t d = DIR_INO + 1 + a->ta_id;
	char name[DIR_NAME_MAX + 1];
	struct dir_entry e;
	size_t len;

	bool present[THREAD_OPS] = {0};

	for (uint64_t i = 0; i < THREAD_OPS; i++) {
		uint64_t k = i % 2 ? i / 2 : i; /* adds, and toggles of older names */

		len = name_of(k, true, name);
		if (present[k])
			assert_int_equal(do_remove(a->ta_vol, d, name, len, &e), 0);
		else
			assert_int_equal(do_add(a->ta_vol, d, name, len, 1000 + k), 0);
		present[k] = !present[k];
		assert_int_equal(dir_lookup(a->ta_vol, d, name, len, &e), present[k] ? 0 : -ENOENT);
		/* Commit often: each transaction reserves its worst case (~250
		 * blocks), and concurrent ones that pile up in one delta get
		 * -ENOSPC from vol_txn_begin on an empty volume (a vol issue). */
		if (i % 50 == 49)
			assert_int_equal(vol_sync(a->ta_vol), 0);
	}
	return NULL;
}

static void *reader(void *p)
{
	struct thread_arg *a = p;
	char name[DIR_NAME_MAX + 1];
	struct dir_entry e;
	struct listing l;
	size_t len;

	for (unsigned round = 0; round < 20; round++) {
		for (uint64_t i = 0; i < 500; i++) {
			len = name_of(i, false, name);
			assert_int_equal(dir_lookup(a->ta_vol, DIR_INO, name, len, &e), 0);
			assert_int_equal(e.de_ino, 1000 + i);
		}
		listing_init(&l, 500);
		l.l_limit = 17;
		while (list_step(a->ta_vol, DIR_INO, &l))
			;
		assert_int_equal(l.l_total, 500);
		listing_fini(&l);
	}
	return NULL;
}

static void test_threads(void **state)
{
	struct thread_arg args[2 * THREADS];
	pthread_t th[2 * THREADS];
	char name[DIR_NAME_MAX + 1];
	struct vol *v = mkvol(4096, 262144, 4096);
	size_t len;

	(void)state;
	test_watchdog("test_threads", 300);
	do_create(v, DIR_INO, PARENT_INO);
	for (uint64_t i = 0; i < 500; i++) {
		len = name_of(i, false, name);
		assert_int_equal(do_add(v, DIR_INO, name, len, 1000 + i), 0);
	}
	for (unsigned i = 0; i < THREADS; i++)
		do_create(v, DIR_INO + 1 + i, DIR_INO);
	for (unsigned i = 0; i < 2 * THREADS; i++) {
		args[i] = (struct thread_arg){.ta_vol = v, .ta_id = i % THREADS};
		test_thread_start(&th[i], i < THREADS ? writer : reader, &args[i]);
	}
	for (unsigned i = 0; i < 2 * THREADS; i++)
		test_thread_join(th[i]);
	for (unsigned i = 0; i < THREADS; i++)
		expect_clean(v, DIR_INO + 1 + i);
	expect_clean(v, DIR_INO);
	assert_int_equal(vol_close(v), 0);
	test_watchdog_cancel();
}

/* ---- a big directory --------------------------------------------------------------- */

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

#define BATCH 16 /* operations per transaction */

static void test_big(void **state)
{
	const char *env = getenv("CAIRN_DIR_BIG");
	uint64_t n = env && atoi(env) > 0 ? 1000000 : 100000;
	uint32_t nb;
	char name[DIR_NAME_MAX + 1];
	struct dir_stats st;
	struct dir_entry e;
	struct listing l;
	struct log_space sp;
	struct vol_txn t;
	struct vol *v;
	double t0, t1, t2, t3, t4;
	size_t len;

	(void)state;
	test_watchdog("test_big", 900);
	dir_hooks = (struct dir_hooks){.dh_fixed_seed = true, .dh_seed = 12345};
	v = mkvol(4096, n >= 1000000 ? 4u << 20 : 1u << 19, 24576);
	do_create(v, DIR_INO, PARENT_INO);
	dir_hooks = (struct dir_hooks){0};
	nb = op_blocks(v);
	t0 = now_s();
	for (uint64_t i = 0; i < n; i += BATCH) {
		txn_begin(v, (uint64_t)nb * BATCH, &t);
		for (uint64_t j = i; j < MIN(i + BATCH, n); j++) {
			len = name_of(j, false, name);
			assert_int_equal(dir_add(&t, DIR_INO, name, len, 1000 + j, DT_REG), 0);
		}
		vol_txn_end(&t);
	}
	t1 = now_s();
	assert_int_equal(dir_stats(v, DIR_INO, &st), 0);
	assert_int_equal(st.ds_entries, n);
	for (uint64_t i = 0; i < n; i += 7) {
		len = name_of(i, false, name);
		assert_int_equal(dir_lookup(v, DIR_INO, name, len, &e), 0);
		assert_int_equal(e.de_ino, 1000 + i);
	}
	len = name_of(n, false, name);
	assert_int_equal(dir_lookup(v, DIR_INO, name, len, &e), -ENOENT);
	t2 = now_s();
	for (uint64_t i = 0; i < n; i += 2 * BATCH) {
		txn_begin(v, (uint64_t)nb * BATCH, &t);
		for (uint64_t j = i; j < MIN(i + 2 * BATCH, n); j += 2) {
			len = name_of(j, false, name);
			assert_int_equal(dir_remove(&t, DIR_INO, name, len, NULL), 0);
		}
		vol_txn_end(&t);
	}
	t3 = now_s();
	listing_init(&l, n);
	list_step(v, DIR_INO, &l);
	assert_int_equal(l.l_total, n / 2);
	for (uint64_t i = 0; i < n; i++)
		if (l.l_seen[i] != (i & 1))
			fail_msg("entry %" PRIu64 " listed %u times", i, l.l_seen[i]);
	listing_fini(&l);
	t4 = now_s();
	expect_clean(v, DIR_INO);
	assert_int_equal(dir_stats(v, DIR_INO, &st), 0);
	vol_space(v, &sp);
	print_message("# big: %" PRIu64 " adds %.2fs, %" PRIu64 " lookups %.2fs, %" PRIu64
		      " removes %.2fs, readdir %.2fs, check %.2fs\n",
		      n, t1 - t0, n / 7 + 1, t2 - t1, n / 2, t3 - t2, t4 - t3, now_s() - t4);
	print_message(
	    "# big: after removing half: height %u, %" PRIu64 " nodes, %" PRIu64
	    " free-list blocks, hwm %" PRIu64 "; log written %" PRIu64 " of %" PRIu64 " blocks\n",
	    st.ds_height, st.ds_nodes, st.ds_free_blocks, st.ds_hwm, sp.sp_written, sp.sp_total);
	assert_int_equal(vol_close(v), 0);
	test_watchdog_cancel();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_bounds),
	    cmocka_unit_test(test_basics),
	    cmocka_unit_test(test_errors),
	    cmocka_unit_test(test_block_sizes),
	    cmocka_unit_test(test_readdir_stability),
	    cmocka_unit_test(test_collisions),
	    cmocka_unit_test(test_persistence),
	    cmocka_unit_test(test_damage),
	    cmocka_unit_test(test_forged_blocks),
	    cmocka_unit_test(test_threads),
	    cmocka_unit_test(test_big),
	};
	const char *f = getenv("CAIRN_TEST_FILTER");

	if (f)
		cmocka_set_test_filter(f);
	return TEST_RUN("dir", tests);
}

/*
 * test_inode.c - inode records and inode allocation (seed 002).
 *
 * Proves: records encode and decode, and any damaged byte is -EUCLEAN;
 * allocation starts at the root (16), sets the bit and an initialized
 * record, free keeps the generation and reuse raises it, across
 * close and reopen; the limit is -ENOSPC; corrupt records and headers
 * are errors, never trusted. Then the seed's race, forced at
 * interleaving points: A takes inode I and is held before I is written;
 * B finds the cache empty and scans a bitmap that still shows I free; C
 * allocates. Nobody is handed I twice, also when A finishes while B's
 * scan is between its read and its merge. A seeded multi-threaded
 * alloc/free workload checks that no number is live twice and that
 * generations only grow.
 */
#include "harness.h"
#include "ns/inode.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define T_BS  4096
#define T_SEG 64

static const struct vol_open_opts t_open_opts = {
    .voo_max_age_ms = 3600 * 1000, /* commits only when a test syncs */
};

static struct vol *t_vol_new(uint64_t nblocks)
{
	struct vol_mkfs_opts mo = {.vmo_log = {.lfo_block_size = T_BS, .lfo_seg_blocks = T_SEG}};
	struct bdev *d;
	struct vol *v;

	assert_int_equal(bdev_emu_open(T_BS, nblocks, &d), 0);
	assert_int_equal(vol_mkfs(d, &mo), 0);
	assert_int_equal(vol_open(d, &t_open_opts, &v), 0);
	return v;
}

/* A new volume in a temporary image file (for close and reopen). */
static void t_file_new(char *path, size_t len, uint64_t nblocks)
{
	struct vol_mkfs_opts mo = {.vmo_log = {.lfo_block_size = T_BS, .lfo_seg_blocks = T_SEG}};
	struct bdev *d;
	int fd;

	snprintf(path, len, "/tmp/cairn-inode-test-XXXXXX");
	fd = mkstemp(path);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(unlink(path), 0);
	assert_int_equal(bdev_open_file(path, T_BS, nblocks, BDEV_CREATE, &d), 0);
	assert_int_equal(vol_mkfs(d, &mo), 0);
	bdev_close(d);
}

static struct vol *t_file_open(const char *path)
{
	struct bdev *d;
	struct vol *v;

	assert_int_equal(bdev_open_file(path, T_BS, 0, 0, &d), 0);
	assert_int_equal(vol_open(d, &t_open_opts, &v), 0);
	return v;
}

static struct ialloc *t_ialloc(struct vol *v, uint64_t max_ino, uint32_t cache)
{
	struct ialloc_opts o = {.iao_max_ino = max_ino, .iao_cache = cache};
	struct ialloc *a;

	assert_int_equal(ialloc_create(v, &o, &a), 0);
	return a;
}

/* One transaction allocating one inode. */
static int t_alloc(struct vol *v, struct ialloc *a, uint64_t *ino, uint64_t *gen)
{
	struct vol_txn t;
	int err;

	assert_int_equal(vol_txn_begin(v, IALLOC_ALLOC_BLOCKS, 0, &t), 0);
	err = ialloc_alloc(a, &t, ino, gen);
	vol_txn_end(&t);
	return err;
}

static uint64_t t_alloc_ok(struct vol *v, struct ialloc *a)
{
	uint64_t ino = 0, gen = 0;

	assert_int_equal(t_alloc(v, a, &ino, &gen), 0);
	return ino;
}

static int t_free(struct vol *v, struct ialloc *a, uint64_t ino)
{
	struct vol_txn t;
	int err;

	assert_int_equal(vol_txn_begin(v, IALLOC_FREE_BLOCKS, 0, &t), 0);
	err = ialloc_free(a, &t, ino);
	vol_txn_end(&t);
	return err;
}

static void t_write(struct vol *v, uint64_t ino, const struct inode_rec *r)
{
	struct vol_txn t;

	assert_int_equal(vol_txn_begin(v, INODE_WRITE_BLOCKS, 0, &t), 0);
	assert_int_equal(inode_write(&t, ino, r), 0);
	vol_txn_end(&t);
}

static bool t_bit(struct vol *v, uint64_t ino)
{
	uint8_t b;

	assert_int_equal(vol_read_range(v, INODE_BITMAP_OWNER, ino / 8 / T_BS,
					(uint32_t)((ino / 8) % T_BS), 1, &b),
			 0);
	return b & (1u << (ino % 8));
}

/* Fail unless @ino is allocated with generation @gen. */
static void t_expect_live(struct vol *v, uint64_t ino, uint64_t gen)
{
	struct inode_rec r;

	assert_int_equal(inode_read(v, ino, &r), 0);
	assert_true(r.ir_flags & INODE_F_IN_USE);
	assert_int_equal(r.ir_gen, gen);
	assert_true(t_bit(v, ino));
}

static void t_expect_free(struct vol *v, uint64_t ino, uint64_t gen)
{
	struct inode_rec r;

	assert_int_equal(inode_read(v, ino, &r), 0);
	assert_false(r.ir_flags & INODE_F_IN_USE);
	assert_int_equal(r.ir_gen, gen);
	assert_false(t_bit(v, ino));
}

static struct inode_rec t_rec(uint64_t ino, uint64_t gen)
{
	struct inode_rec r = {
	    .ir_flags = INODE_F_IN_USE,
	    .ir_mode = S_IFREG | 0644,
	    .ir_nlink = 1,
	    .ir_uid = 1000 + (uint32_t)ino,
	    .ir_gid = 100,
	    .ir_rdev = 0x0801,
	    .ir_size = ino * 4096 + 7,
	    .ir_blocks = ino + 1,
	    .ir_gen = gen,
	    .ir_parent = INODE_ROOT,
	    .ir_xattr_owner = 0,
	    .ir_atime = {-5, 1},
	    .ir_mtime = {1700000000, 999999999},
	    .ir_ctime = {(int64_t)ino, 3},
	    .ir_btime = {42, 0},
	    .ir_xattr_len = 3,
	    .ir_xattr = {'a', 'b', 'c'},
	};
	return r;
}

static void t_rec_equal(const struct inode_rec *a, const struct inode_rec *b)
{
	assert_memory_equal(a, b, sizeof(*a));
}

/* ---- records ---------------------------------------------------------- */

static void test_record_roundtrip(void **state)
{
	struct inode_rec r = t_rec(77, 9), got;
	uint8_t raw[INODE_REC_SIZE], bad[INODE_REC_SIZE], zero[INODE_REC_SIZE] = {0};

	(void)state;
	r.ir_mode = S_IFLNK | 0777;
	r.ir_symlink_len = 11;
	memcpy(r.ir_symlink, "../a/target", 11);
	assert_int_equal(inode_encode(77, &r, raw), 0);
	memset(&got, 0xaa, sizeof(got));
	assert_int_equal(inode_decode(77, raw, &got), 0);
	t_rec_equal(&r, &got);
	assert_int_equal(raw[0], 1); /* version */
	assert_int_equal(raw[1], INODE_F_IN_USE);
	assert_int_equal(raw[48], 9); /* generation, little-endian */

	/* never written: free, generation 0 */
	assert_int_equal(inode_decode(77, zero, &got), 0);
	assert_int_equal(got.ir_flags, 0);
	assert_int_equal(got.ir_gen, 0);

	/* every byte inverted, and the record in another slot, is -EUCLEAN */
	for (unsigned i = 0; i < INODE_REC_SIZE; i++) {
		memcpy(bad, raw, sizeof(bad));
		bad[i] = (uint8_t)~bad[i];
		assert_int_equal(inode_decode(77, bad, &got), -EUCLEAN);
	}
	assert_int_equal(inode_decode(78, raw, &got), -EUCLEAN);

	/* what cannot be encoded */
	r.ir_symlink_len = INODE_SYMLINK_INLINE + 1;
	assert_int_equal(inode_encode(77, &r, raw), -EINVAL);
	r = t_rec(77, 9);
	r.ir_flags = 0x80;
	assert_int_equal(inode_encode(77, &r, raw), -EINVAL);
	r = t_rec(77, 9);
	r.ir_mtime.it_nsec = 1000000000;
	assert_int_equal(inode_encode(77, &r, raw), -EINVAL);
	assert_int_equal(inode_max_ino(4096), (1ULL << 40) - 1);
}

/* ---- allocation --------------------------------------------------------- */

static void test_alloc_basic(void **state)
{
	struct vol *v = t_vol_new(2048);
	struct ialloc *a = t_ialloc(v, 0, 0);
	struct inode_rec r, got;
	uint64_t ino, gen;
	struct vol_txn t;

	(void)state;
	/* the first number is the root, generation 1; exactly the blocks documented */
	assert_int_equal(vol_txn_begin(v, IALLOC_ALLOC_BLOCKS, 0, &t), 0);
	assert_int_equal(ialloc_alloc(a, &t, &ino, &gen), 0);
	assert_int_equal(t.vt_left, 0);
	vol_txn_end(&t);
	assert_int_equal(ino, INODE_ROOT);
	assert_int_equal(gen, 1);
	t_expect_live(v, ino, 1);
	assert_int_equal(inode_read(v, ino, &got), 0);
	assert_int_equal(got.ir_mode, 0);

	/* the caller fills the attributes */
	r = t_rec(ino, gen);
	r.ir_mode = S_IFDIR | 0755;
	t_write(v, ino, &r);
	assert_int_equal(inode_read(v, ino, &got), 0);
	t_rec_equal(&r, &got);

	assert_int_equal(t_alloc_ok(v, a), 17);
	assert_int_equal(t_alloc_ok(v, a), 18);

	/* free: record free, generation kept, bit clear */
	assert_int_equal(vol_txn_begin(v, IALLOC_FREE_BLOCKS, 0, &t), 0);
	assert_int_equal(ialloc_free(a, &t, 17), 0);
	assert_int_equal(t.vt_left, 0);
	vol_txn_end(&t);
	t_expect_free(v, 17, 1);
	assert_int_equal(t_free(v, a, 17), -EINVAL);  /* twice */
	assert_int_equal(t_free(v, a, 500), -EINVAL); /* never allocated */
	assert_int_equal(t_free(v, a, 3), -EINVAL);   /* not an inode number */
	assert_int_equal(inode_read(v, 3, &got), -EINVAL);
	t_expect_live(v, 16, 1);
	t_expect_live(v, 18, 1);

	ialloc_destroy(a);
	assert_int_equal(vol_close(v), 0);
}

static void test_enospc(void **state)
{
	struct vol *v = t_vol_new(2048);
	struct ialloc *a = t_ialloc(v, INODE_ROOT + 9, 4);
	uint64_t ino, gen;

	(void)state;
	for (uint64_t i = 0; i < 10; i++)
		assert_int_equal(t_alloc_ok(v, a), INODE_ROOT + i);
	assert_int_equal(t_alloc(v, a, &ino, &gen), -ENOSPC);
	assert_int_equal(t_alloc(v, a, &ino, &gen), -ENOSPC);
	assert_int_equal(t_free(v, a, 21), 0);
	assert_int_equal(t_alloc(v, a, &ino, &gen), 0);
	assert_int_equal(ino, 21);
	assert_int_equal(gen, 2);
	assert_int_equal(t_alloc(v, a, &ino, &gen), -ENOSPC);
	for (uint64_t i = 0; i < 10; i++)
		assert_true(t_bit(v, INODE_ROOT + i));
	assert_false(t_bit(v, INODE_ROOT + 10));

	/* a new allocator finds the same by scanning (its cache starts empty) */
	ialloc_destroy(a);
	a = t_ialloc(v, INODE_ROOT + 9, 4);
	assert_int_equal(t_alloc(v, a, &ino, &gen), -ENOSPC);
	assert_int_equal(t_free(v, a, 19), 0);
	assert_int_equal(t_free(v, a, 24), 0);
	ialloc_destroy(a);
	a = t_ialloc(v, INODE_ROOT + 9, 4);
	assert_int_equal(t_alloc_ok(v, a), 19);
	assert_int_equal(t_alloc_ok(v, a), 24);
	assert_int_equal(t_alloc(v, a, &ino, &gen), -ENOSPC);
	ialloc_destroy(a);
	assert_int_equal(vol_close(v), 0);
}

static void test_persist_generations(void **state)
{
	char path[64];
	struct vol *v;
	struct ialloc *a;
	struct inode_rec r, got;
	uint64_t ino, gen;

	(void)state;
	t_file_new(path, sizeof(path), 2048);
	v = t_file_open(path);
	a = t_ialloc(v, 20, 4);
	for (uint64_t i = 16; i <= 20; i++) {
		assert_int_equal(t_alloc(v, a, &ino, &gen), 0);
		assert_int_equal(ino, i);
		assert_int_equal(gen, 1);
		r = t_rec(ino, gen);
		t_write(v, ino, &r);
	}
	for (uint64_t g = 2; g <= 3; g++) { /* reuse raises the generation */
		assert_int_equal(t_free(v, a, 18), 0);
		assert_int_equal(t_alloc(v, a, &ino, &gen), 0);
		assert_int_equal(ino, 18);
		assert_int_equal(gen, g);
	}
	assert_int_equal(t_free(v, a, 18), 0);
	ialloc_destroy(a);
	assert_int_equal(vol_close(v), 0);

	/* reopen: records, bitmap and generations are back */
	v = t_file_open(path);
	for (uint64_t i = 16; i <= 20; i++) {
		if (i == 18) {
			t_expect_free(v, i, 3);
			continue;
		}
		r = t_rec(i, 1);
		assert_int_equal(inode_read(v, i, &got), 0);
		t_rec_equal(&r, &got);
		assert_true(t_bit(v, i));
	}
	syncpoint_enable(); /* count the scans */
	a = t_ialloc(v, 20, 4);
	assert_int_equal(syncpoint_arrived("ialloc.scan.read"), 0); /* none at create */
	assert_int_equal(t_alloc(v, a, &ino, &gen), 0);
	assert_int_equal(ino, 18);
	assert_int_equal(gen, 4);
	assert_int_equal(t_alloc(v, a, &ino, &gen), -ENOSPC);
	assert_int_equal(t_free(v, a, 18), 0);
	ialloc_destroy(a);
	assert_int_equal(vol_close(v), 0);

	/* with room: the header's high resumes past every number ever used */
	v = t_file_open(path);
	a = t_ialloc(v, 0, 4);
	assert_int_equal(t_alloc(v, a, &ino, &gen), 0);
	assert_int_equal(ino, 18); /* a scan of [16, high) finds the one free */
	assert_int_equal(gen, 5);
	assert_int_equal(t_alloc_ok(v, a), 21);
	ialloc_destroy(a);
	assert_int_equal(vol_close(v), 0);
	assert_int_equal(unlink(path), 0);
}

/* Rewrite @ino's record slot through vol_write: @garbage, or one byte flipped. */
static void t_corrupt(struct vol *v, uint64_t ino, bool garbage)
{
	uint64_t blk = ino * INODE_REC_SIZE / T_BS;
	uint32_t off = (uint32_t)(ino * INODE_REC_SIZE % T_BS);
	uint8_t *b = malloc(T_BS);
	struct vol_txn t;
	struct prng p;

	assert_non_null(b);
	assert_int_equal(vol_read(v, INODE_FILE_OWNER, blk, b), 0);
	prng_init(&p, ino);
	if (garbage)
		prng_fill(&p, b + off, INODE_REC_SIZE);
	else
		b[off + 60] ^= 0x10;
	assert_int_equal(vol_txn_begin(v, 1, 0, &t), 0);
	assert_int_equal(vol_write(&t, INODE_FILE_OWNER, blk, b), 0);
	vol_txn_end(&t);
	free(b);
}

static void test_corrupt_records(void **state)
{
	struct vol *v = t_vol_new(2048);
	struct ialloc *a = t_ialloc(v, 0, 8);
	struct inode_rec got;
	uint8_t *junk = malloc(T_BS);
	struct vol_txn t;
	struct prng p;

	(void)state;
	assert_int_equal(t_alloc_ok(v, a), 16);
	assert_int_equal(t_alloc_ok(v, a), 17);
	assert_int_equal(t_alloc_ok(v, a), 18);
	t_corrupt(v, 17, false);
	assert_int_equal(inode_read(v, 17, &got), -EUCLEAN);
	assert_int_equal(inode_read(v, 16, &got), 0);
	assert_int_equal(t_free(v, a, 17), -EUCLEAN);
	assert_true(t_bit(v, 17)); /* nothing changed */

	/* a free number with a corrupt record is set aside, not handed out */
	t_corrupt(v, 19, true);
	assert_int_equal(inode_read(v, 19, &got), -EUCLEAN);
	assert_int_equal(t_alloc_ok(v, a), 20);
	assert_false(t_bit(v, 19));
	assert_int_equal(t_free(v, a, 19), -EUCLEAN);

	/* a whole block of garbage */
	assert_non_null(junk);
	prng_init(&p, 7);
	prng_fill(&p, junk, T_BS);
	assert_int_equal(vol_txn_begin(v, 1, 0, &t), 0);
	assert_int_equal(vol_write(&t, INODE_FILE_OWNER, 2, junk), 0);
	vol_txn_end(&t);
	for (uint64_t i = 32; i < 48; i++)
		assert_int_equal(inode_read(v, i, &got), -EUCLEAN);
	ialloc_destroy(a);

	/* a corrupt allocator header: the allocator refuses to start */
	assert_int_equal(vol_txn_begin(v, 1, 0, &t), 0);
	assert_int_equal(vol_write(&t, INODE_FILE_OWNER, 0, junk), 0);
	vol_txn_end(&t);
	assert_int_equal(ialloc_create(v, NULL, &a), -EUCLEAN);
	free(junk);
	assert_int_equal(vol_close(v), 0);
}

/* ---- the seed's race ---------------------------------------------------- */

struct racer {
	struct vol *r_vol;
	struct ialloc *r_a;
	const char *r_tag;
	uint64_t r_ino, r_gen;
	int r_err;
};

static void *racer_main(void *arg)
{
	struct racer *r = arg;

	syncpoint_thread_name(r->r_tag);
	r->r_err = t_alloc(r->r_vol, r->r_a, &r->r_ino, &r->r_gen);
	return NULL;
}

/*
 * Cache of 2. Numbers 16..23 allocated; 20 and 21 freed into the cache;
 * 18 freed when the cache is full, so only the bitmap shows it free.
 */
static struct ialloc *t_race_setup(struct vol *v)
{
	struct ialloc *a = t_ialloc(v, 0, 2);

	for (uint64_t i = 16; i < 24; i++)
		assert_int_equal(t_alloc_ok(v, a), i);
	assert_int_equal(t_free(v, a, 20), 0);
	assert_int_equal(t_free(v, a, 21), 0);
	assert_int_equal(t_free(v, a, 18), 0);
	return a;
}

static void t_all_distinct(const uint64_t *ino, int n)
{
	for (int i = 0; i < n; i++)
		for (int j = i + 1; j < n; j++)
			if (ino[i] == ino[j])
				fail_msg("inode %llu handed out twice", (unsigned long long)ino[i]);
}

/*
 * Bach's figure 4.16: A takes I = 20 and is held before its bit or
 * record is written; D takes 21, emptying the cache; B scans the bitmap
 * from 16 and reads I free (and 18); C allocates. Without the busy set
 * B would cache I and C would get it.
 */
static void test_race_abc(void **state)
{
	struct vol *v;
	struct ialloc *a;
	struct racer ra = {.r_tag = "A"};
	uint64_t got[4], gen;
	pthread_t ta;

	(void)state;
	test_needs_syncpoints();
	v = t_vol_new(2048);
	a = t_race_setup(v);
	ra.r_vol = v;
	ra.r_a = a;
	test_watchdog("inode allocation race A/B/C", 60);
	syncpoint_order("test.release_a", "ialloc.alloc.taken@A");
	test_thread_start(&ta, racer_main, &ra);
	syncpoint_wait_arrived("ialloc.alloc.taken@A", 1); /* A holds I, unwritten */

	assert_int_equal(t_alloc(v, a, &got[1], &gen), 0); /* D */
	assert_int_equal(got[1], 21);
	assert_false(t_bit(v, 20)); /* I still free on disk */

	assert_int_equal(t_alloc(v, a, &got[2], &gen), 0); /* B: cache empty, scans */
	assert_int_equal(syncpoint_arrived("ialloc.scan.begin"), 1);
	assert_true(syncpoint_arrived("ialloc.scan.read") >= 1);
	assert_int_equal(got[2], 18);
	assert_int_equal(syncpoint_passed("ialloc.alloc.taken@A"), 0); /* A still held */

	assert_int_equal(t_alloc(v, a, &got[3], &gen), 0); /* C */
	assert_int_equal(syncpoint_passed("ialloc.alloc.taken@A"), 0);
	if (got[2] == 20 || got[3] == 20) /* A still holds it */
		fail_msg("inode 20 handed out twice: to A and to %s", got[2] == 20 ? "B" : "C");

	syncpoint_hit("test.release_a");
	test_thread_join(ta);
	assert_int_equal(ra.r_err, 0);
	got[0] = ra.r_ino;
	assert_int_equal(got[0], 20);
	assert_int_equal(ra.r_gen, 2);
	t_all_distinct(got, 4);
	for (int i = 0; i < 4; i++)
		assert_true(t_bit(v, got[i]));
	ialloc_destroy(a);
	assert_int_equal(vol_close(v), 0);
}

/*
 * The same, but A finishes while B is between reading the bitmap (I
 * free) and merging what it read; C arrives during B's scan and waits
 * for it. B's merge must still not cache I.
 */
static void test_race_settle_during_scan(void **state)
{
	struct vol *v;
	struct ialloc *a;
	struct racer ra = {.r_tag = "A"};
	struct racer rb = {.r_tag = "B"};
	struct racer rc = {.r_tag = "C"};
	uint64_t got[4], gen;
	pthread_t ta, tb, tc;

	(void)state;
	test_needs_syncpoints();
	v = t_vol_new(2048);
	a = t_race_setup(v);
	ra.r_vol = v;
	ra.r_a = a;
	rb.r_vol = v;
	rb.r_a = a;
	rc.r_vol = v;
	rc.r_a = a;
	test_watchdog("inode allocation race, settle during scan", 60);
	syncpoint_order("test.release_a", "ialloc.alloc.taken@A");
	syncpoint_order("test.release_b", "ialloc.scan.read@B");
	test_thread_start(&ta, racer_main, &ra);
	syncpoint_wait_arrived("ialloc.alloc.taken@A", 1);
	assert_int_equal(t_alloc(v, a, &got[1], &gen), 0); /* D empties the cache */
	assert_int_equal(got[1], 21);

	test_thread_start(&tb, racer_main, &rb);
	syncpoint_wait_arrived("ialloc.scan.read@B", 1); /* B read I free */
	test_thread_start(&tc, racer_main, &rc);
	syncpoint_wait_arrived("ialloc.wait_locked@C", 1); /* C waits for B's scan */

	syncpoint_hit("test.release_a"); /* A writes I and settles mid-scan */
	test_thread_join(ta);
	assert_int_equal(ra.r_err, 0);
	assert_true(t_bit(v, 20));
	syncpoint_hit("test.release_b");
	test_thread_join(tb);
	test_thread_join(tc);
	if (rb.r_err || rc.r_err) /* -EUCLEAN: the bitmap caught a number handed out twice */
		fail_msg("B: %d, C: %d", rb.r_err, rc.r_err);
	got[0] = ra.r_ino;
	got[2] = rb.r_ino;
	got[3] = rc.r_ino;
	assert_int_equal(got[0], 20);
	t_all_distinct(got, 4);
	for (int i = 0; i < 4; i++)
		assert_true(t_bit(v, got[i]));
	ialloc_destroy(a);
	assert_int_equal(vol_close(v), 0);
}

/* ---- randomized workload ------------------------------------------------- */

#define ST_THREADS    4
#define ST_NUMBERS    256 /* inode numbers 16 .. 16 + ST_NUMBERS - 1 */
#define ST_LIVE	      50  /* per thread: 200 < ST_NUMBERS, so never -ENOSPC */
#define ST_MAX	      (INODE_ROOT + ST_NUMBERS - 1)
#define ST_ROUNDS     12
#define ST_DEV_BLOCKS 32768 /* a delta's reservations add up until it commits */

struct stress {
	struct vol *s_vol;
	struct ialloc *s_a;
	_Atomic uint8_t s_live[ST_MAX + 1];
	_Atomic uint64_t s_gen[ST_MAX + 1]; /* the last generation handed out */
	long s_ops;
	uint64_t s_sync_chance; /* 1 in this many ops commits; 0: none */
};

struct stress_worker {
	struct stress *w_s;
	uint64_t w_seed;
	uint64_t w_live[ST_LIVE];
	unsigned w_n;
};

static void stress_alloc(struct stress_worker *w)
{
	struct stress *s = w->w_s;
	uint64_t ino, gen, last;
	struct inode_rec r;

	assert_int_equal(t_alloc(s->s_vol, s->s_a, &ino, &gen), 0);
	assert_true(ino >= INODE_ROOT && ino <= ST_MAX);
	if (atomic_exchange(&s->s_live[ino], 1))
		fail_msg("inode %llu handed out while live", (unsigned long long)ino);
	last = atomic_exchange(&s->s_gen[ino], gen);
	if (gen <= last)
		fail_msg("inode %llu: generation %llu after %llu", (unsigned long long)ino,
			 (unsigned long long)gen, (unsigned long long)last);
	/* the record only: its bitmap byte is shared with other threads' numbers */
	assert_int_equal(inode_read(s->s_vol, ino, &r), 0);
	assert_true(r.ir_flags & INODE_F_IN_USE);
	assert_int_equal(r.ir_gen, gen);
	r = t_rec(ino, gen);
	t_write(s->s_vol, ino, &r);
	w->w_live[w->w_n++] = ino;
}

static void stress_free(struct stress_worker *w, struct prng *p)
{
	unsigned i = (unsigned)prng_below(p, w->w_n);
	uint64_t ino = w->w_live[i];
	struct inode_rec r;

	assert_int_equal(inode_read(w->w_s->s_vol, ino, &r), 0);
	assert_int_equal(r.ir_uid, 1000 + ino);
	w->w_live[i] = w->w_live[--w->w_n];
	atomic_store(&w->w_s->s_live[ino], 0); /* before: it may be reused at once */
	assert_int_equal(t_free(w->w_s->s_vol, w->w_s->s_a, ino), 0);
}

static void *stress_main(void *arg)
{
	struct stress_worker *w = arg;
	struct stress *s = w->w_s;
	struct prng p;

	prng_init(&p, w->w_seed);
	for (long i = 0; i < s->s_ops; i++) {
		bool alloc = w->w_n < ST_LIVE && (w->w_n == 0 || prng_chance(&p, 1, 2));

		if (alloc)
			stress_alloc(w);
		else
			stress_free(w, &p);
		if (s->s_sync_chance && prng_chance(&p, 1, s->s_sync_chance))
			assert_int_equal(vol_sync(s->s_vol), 0);
	}
	w->w_seed = prng_next(&p); /* the next round's */
	return NULL;
}

/*
 * Rounds of ST_THREADS threads allocating and freeing at random, a
 * commit between rounds (a round's reservations fit the volume, so no
 * commit is forced while the threads run). CAIRN_INODE_STRESS_SYNCS=1
 * also commits while they run: under TSan that meets a race in the
 * buffer cache (buf_delta_retag_locked reads b_delta_node without
 * bc_delta_lock), which is not this layer's.
 */
static void test_stress(void **state)
{
	uint64_t seed = test_seed("inode alloc/free stress", 20260214);
	struct stress *s = calloc(1, sizeof(*s));
	struct stress_worker w[ST_THREADS];
	pthread_t t[ST_THREADS];
	unsigned live = 0;

	(void)state;
	assert_non_null(s);
	test_watchdog("inode alloc/free stress", 300);
	s->s_vol = t_vol_new(ST_DEV_BLOCKS);
	s->s_a = t_ialloc(s->s_vol, ST_MAX, 8);
	s->s_ops = 100;
	s->s_sync_chance = getenv("CAIRN_INODE_STRESS_SYNCS") ? 100 : 0;
	for (int i = 0; i < ST_THREADS; i++)
		w[i] = (struct stress_worker){.w_s = s, .w_seed = seed * 31 + (uint64_t)i};
	for (int round = 0; round < ST_ROUNDS; round++) {
		for (int i = 0; i < ST_THREADS; i++)
			test_thread_start(&t[i], stress_main, &w[i]);
		for (int i = 0; i < ST_THREADS; i++)
			test_thread_join(t[i]);
		assert_int_equal(vol_sync(s->s_vol), 0);
	}
	/* memory, bitmap and records agree */
	for (uint64_t ino = INODE_ROOT; ino <= ST_MAX; ino++) {
		uint64_t gen = atomic_load(&s->s_gen[ino]);

		if (atomic_load(&s->s_live[ino])) {
			t_expect_live(s->s_vol, ino, gen);
			live++;
		} else {
			t_expect_free(s->s_vol, ino, gen);
		}
	}
	for (int i = 0; i < ST_THREADS; i++)
		live -= w[i].w_n;
	assert_int_equal(live, 0);
	ialloc_destroy(s->s_a);
	assert_int_equal(vol_close(s->s_vol), 0);
	free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_record_roundtrip),
	    cmocka_unit_test(test_alloc_basic),
	    cmocka_unit_test(test_enospc),
	    cmocka_unit_test(test_persist_generations),
	    cmocka_unit_test(test_corrupt_records),
	    cmocka_unit_test(test_race_abc),
	    cmocka_unit_test(test_race_settle_during_scan),
	    cmocka_unit_test(test_stress),
	};
	const char *filter = getenv("CAIRN_TEST_FILTER"); /* a cmocka glob */

	if (filter)
		cmocka_set_test_filter(filter);
	return TEST_RUN("ns inode", tests);
}

/*
 * test_check.c - ns_check, fsck's namespace half: a namespace built by
 * hand (the allocator, directories and records, as the namespace layer
 * writes them) checks clean, and each way of breaking it is reported,
 * naming the inode.
 *
 * The tree: / (16) holds dir "a" (17) and file "f" (18); "a" holds the
 * hard link "g" to f, and a symlink "s" (19). So f has 2 links, / has 3
 * (2 + a), a has 2.
 */
#include "harness.h"
#include "ns/check.h"
#include "ns/dir.h"
#include "ns/inode.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define T_BS	 4096u
#define T_BLOCKS 4096u
#define T_TXN	 64u

enum { ROOT = INODE_ROOT, DIR_A = 17, FILE_F = 18, LINK_S = 19 };

struct fx {
	struct vol *fx_vol;
	struct ialloc *fx_ia;
};

static struct vol *t_open(void)
{
	struct vol_open_opts oo = {.voo_cache_blocks = 4096, .voo_max_age_ms = 3600 * 1000};
	struct vol_mkfs_opts mo = {.vmo_log = {.lfo_seg_blocks = 64}};
	struct bdev *d;
	struct vol *v;

	assert_int_equal(bdev_emu_open(T_BS, T_BLOCKS, &d), 0);
	assert_int_equal(vol_mkfs(d, &mo), 0);
	assert_int_equal(vol_open(d, &oo, &v), 0);
	return v;
}

static void t_begin(struct fx *f, struct vol_txn *t)
{
	assert_int_equal(vol_txn_begin(f->fx_vol, T_TXN, 0, t), 0);
}

/* Allocate the next inode (it must be @want) as @mode with @nlink links. */
static void t_inode(struct fx *f, struct vol_txn *t, uint64_t want, uint32_t mode, uint32_t nlink,
		    struct inode_rec *r)
{
	uint64_t ino, gen;

	assert_int_equal(ialloc_alloc(f->fx_ia, t, &ino, &gen), 0);
	assert_int_equal(ino, want);
	assert_int_equal(inode_read(f->fx_vol, ino, r), 0);
	r->ir_mode = mode;
	r->ir_nlink = nlink;
	assert_int_equal(inode_write(t, ino, r), 0);
}

static int t_setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	struct inode_rec r;
	struct vol_txn t;

	f->fx_vol = t_open();
	assert_int_equal(ialloc_create(f->fx_vol, NULL, &f->fx_ia), 0);
	t_begin(f, &t);
	t_inode(f, &t, ROOT, S_IFDIR | 0755, 3, &r);
	assert_int_equal(dir_create(&t, ROOT, ROOT), 0);
	t_inode(f, &t, DIR_A, S_IFDIR | 0755, 2, &r);
	assert_int_equal(dir_create(&t, DIR_A, ROOT), 0);
	assert_int_equal(dir_add(&t, ROOT, "a", 1, DIR_A, DT_DIR), 0);
	t_inode(f, &t, FILE_F, S_IFREG | 0644, 2, &r);
	assert_int_equal(dir_add(&t, ROOT, "f", 1, FILE_F, DT_REG), 0);
	assert_int_equal(dir_add(&t, DIR_A, "g", 1, FILE_F, DT_REG), 0);
	vol_txn_end(&t);
	t_begin(f, &t);
	assert_int_equal(ialloc_alloc(f->fx_ia, &t, &(uint64_t){0}, &(uint64_t){0}), 0);
	assert_int_equal(inode_read(f->fx_vol, LINK_S, &r), 0);
	r.ir_mode = S_IFLNK | 0777;
	r.ir_nlink = 1;
	r.ir_size = 3;
	r.ir_symlink_len = 3;
	memcpy(r.ir_symlink, "../", 3);
	assert_int_equal(inode_write(&t, LINK_S, &r), 0);
	assert_int_equal(dir_add(&t, DIR_A, "s", 1, LINK_S, DT_LNK), 0);
	vol_txn_end(&t);
	*state = f;
	return 0;
}

static int t_teardown(void **state)
{
	struct fx *f = *state;

	ialloc_destroy(f->fx_ia);
	assert_int_equal(vol_close(f->fx_vol), 0);
	free(f);
	return 0;
}

/* The problems one check reported. */
struct seen {
	unsigned s_n;
	uint64_t s_ino[16];
	char s_line[16][256];
};

static void t_report(void *ctx, uint64_t ino, const char *problem)
{
	struct seen *s = ctx;

	print_message("# problem: %s\n", problem);
	if (s->s_n < 16) {
		s->s_ino[s->s_n] = ino;
		snprintf(s->s_line[s->s_n], sizeof(s->s_line[0]), "%s", problem);
	}
	s->s_n++;
}

/* Check, and expect a problem naming @ino whose line contains @what. */
static void t_expect(struct fx *f, uint64_t ino, const char *what)
{
	struct seen s = {0};
	bool found = false;

	assert_int_equal(ns_check(f->fx_vol, t_report, &s, NULL), -EUCLEAN);
	for (unsigned i = 0; i < s.s_n && i < 16; i++)
		found |= s.s_ino[i] == ino && strstr(s.s_line[i], what);
	if (!found)
		fail_msg("no problem about inode %llu with '%s'", (unsigned long long)ino, what);
}

static void t_rewrite(struct fx *f, uint64_t ino, void (*change)(struct inode_rec *r))
{
	struct inode_rec r;
	struct vol_txn t;

	assert_int_equal(inode_read(f->fx_vol, ino, &r), 0);
	change(&r);
	t_begin(f, &t);
	assert_int_equal(inode_write(&t, ino, &r), 0);
	vol_txn_end(&t);
}

static void test_clean_tree(void **state)
{
	struct fx *f = *state;
	struct ns_check_stats st;

	assert_int_equal(ns_check(f->fx_vol, t_report, &(struct seen){0}, &st), 0);
	assert_int_equal(st.nc_inodes, 4);
	assert_int_equal(st.nc_dirs, 2);
	assert_int_equal(st.nc_files, 1);
	assert_int_equal(st.nc_symlinks, 1);
	assert_int_equal(st.nc_entries, 4);
	assert_int_equal(st.nc_problems, 0);
	/* and from the disk */
	assert_int_equal(vol_sync(f->fx_vol), 0);
	assert_int_equal(ns_check(f->fx_vol, NULL, NULL, NULL), 0);
}

static void add_one_link(struct inode_rec *r)
{
	r->ir_nlink++;
}

static void test_wrong_link_count(void **state)
{
	struct fx *f = *state;

	t_rewrite(f, FILE_F, add_one_link);
	t_expect(f, FILE_F, "link count 3, should be 2");
	t_rewrite(f, ROOT, add_one_link);
	t_expect(f, ROOT, "link count 4, should be 3");
}

static void test_entry_to_free_inode(void **state)
{
	struct fx *f = *state;
	struct vol_txn t;

	t_begin(f, &t);
	assert_int_equal(dir_add(&t, DIR_A, "ghost", 5, 40, DT_REG), 0);
	assert_int_equal(dir_add(&t, ROOT, "far", 3, 1ULL << 39, DT_REG), 0);
	vol_txn_end(&t);
	t_expect(f, DIR_A, "names inode 40, free");
	t_expect(f, ROOT, "names inode 549755813888, out of range");
}

static void test_entry_type_mismatch(void **state)
{
	struct fx *f = *state;
	struct dir_entry old;
	struct vol_txn t;

	t_begin(f, &t);
	assert_int_equal(dir_replace(&t, ROOT, "f", 1, FILE_F, DT_DIR, &old), 0);
	vol_txn_end(&t);
	t_expect(f, ROOT, "is type");
}

static void test_unreachable_inode(void **state)
{
	struct fx *f = *state;
	struct dir_entry old;
	struct vol_txn t;

	t_begin(f, &t);
	assert_int_equal(dir_remove(&t, DIR_A, "s", 1, &old), 0);
	vol_txn_end(&t);
	t_expect(f, LINK_S, "not in any directory");
}

static void test_bitmap_disagrees(void **state)
{
	struct fx *f = *state;
	uint8_t blk[T_BS];
	struct vol_txn t;

	assert_int_equal(vol_read(f->fx_vol, INODE_BITMAP_OWNER, 0, blk), 0);
	blk[FILE_F / 8] &= (uint8_t) ~(1u << (FILE_F % 8));
	t_begin(f, &t);
	assert_int_equal(vol_write(&t, INODE_BITMAP_OWNER, 0, blk), 0);
	vol_txn_end(&t);
	t_expect(f, FILE_F, "bitmap says free");
}

static void test_directory_linked_twice(void **state)
{
	struct fx *f = *state;
	struct vol_txn t;

	t_begin(f, &t);
	assert_int_equal(dir_add(&t, ROOT, "again", 5, DIR_A, DT_DIR), 0);
	vol_txn_end(&t);
	t_expect(f, ROOT, "a second time");
}

static void test_wrong_dotdot(void **state)
{
	struct fx *f = *state;
	struct vol_txn t;

	t_begin(f, &t);
	assert_int_equal(dir_set_parent(&t, DIR_A, DIR_A), 0);
	vol_txn_end(&t);
	t_expect(f, DIR_A, "'..' is 17, but it is reached from 16");
}

static void test_corrupt_record(void **state)
{
	struct fx *f = *state;
	uint8_t junk[64];
	struct vol_txn t;

	memset(junk, 0x5a, sizeof(junk));
	t_begin(f, &t);
	assert_int_equal(vol_write_range(&t, INODE_FILE_OWNER, FILE_F * INODE_REC_SIZE / T_BS,
					 (FILE_F * INODE_REC_SIZE) % T_BS + 8, sizeof(junk), junk),
			 0);
	vol_txn_end(&t);
	t_expect(f, FILE_F, "record does not decode");
	t_expect(f, ROOT, "names inode 18, unreadable");
}

static void test_corrupt_directory(void **state)
{
	struct fx *f = *state;
	uint8_t junk[T_BS];
	struct vol_txn t;

	memset(junk, 0xa5, sizeof(junk));
	t_begin(f, &t);
	assert_int_equal(vol_write(&t, DIR_A, 0, junk), 0);
	vol_txn_end(&t);
	t_expect(f, DIR_A, "directory 17");
}

static void bad_symlink(struct inode_rec *r)
{
	r->ir_symlink_len = 2;
}

static void test_bad_symlink_length(void **state)
{
	struct fx *f = *state;

	t_rewrite(f, LINK_S, bad_symlink);
	t_expect(f, LINK_S, "symlink of 3 bytes has 2 bytes inline");
}

static void make_orphan(struct inode_rec *r)
{
	r->ir_flags |= INODE_F_ORPHAN;
}

static void test_orphan_still_linked(void **state)
{
	struct fx *f = *state;

	t_rewrite(f, FILE_F, make_orphan);
	t_expect(f, FILE_F, "orphan, but still linked");
}

static void test_orphan_unlinked_is_clean(void **state)
{
	struct fx *f = *state;
	struct ns_check_stats st;
	struct dir_entry old;
	struct inode_rec r;
	struct vol_txn t;

	/* unlink "s" while it is (say) open: an orphan with no links is fine */
	assert_int_equal(inode_read(f->fx_vol, LINK_S, &r), 0);
	r.ir_flags |= INODE_F_ORPHAN;
	r.ir_nlink = 0;
	t_begin(f, &t);
	assert_int_equal(dir_remove(&t, DIR_A, "s", 1, &old), 0);
	assert_int_equal(inode_write(&t, LINK_S, &r), 0);
	vol_txn_end(&t);
	assert_int_equal(ns_check(f->fx_vol, t_report, &(struct seen){0}, &st), 0);
	assert_int_equal(st.nc_orphans, 1);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, t_setup, t_teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	    T(test_clean_tree),
	    T(test_wrong_link_count),
	    T(test_entry_to_free_inode),
	    T(test_entry_type_mismatch),
	    T(test_unreachable_inode),
	    T(test_bitmap_disagrees),
	    T(test_directory_linked_twice),
	    T(test_wrong_dotdot),
	    T(test_corrupt_record),
	    T(test_corrupt_directory),
	    T(test_bad_symlink_length),
	    T(test_orphan_still_linked),
	    T(test_orphan_unlinked_is_clean),
	};
	return TEST_RUN("ns_check", tests);
}

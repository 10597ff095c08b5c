/*
 * check.c - the namespace's consistency check (fsck's namespace half).
 *
 * Three passes over a volume nobody changes meanwhile (fsck opens it
 * alone; a test calls it between operations):
 *
 *   (1) inodes: the allocator header gives the high mark H; every record
 *       in [VOL_FIRST_OWNER, H) is read and decoded, and its bitmap bit
 *       compared with its IN_USE flag. A record that does not decode is
 *       reported and left out of the later passes.
 *   (2) tree: from the root, breadth first, each directory is checked by
 *       dir_check (its own structure) and listed; every entry must name
 *       an in-use inode of the entry's type; a directory must be reached
 *       once only and name the directory it was reached from as '..'.
 *       References and subdirectories are counted per inode.
 *   (3) totals: every in-use inode was reached, unless it is an orphan
 *       (unlinked while open), which must not be; link counts match
 *       (a directory: 2 + subdirectories; others: their references; an
 *       orphan: 0).
 *
 * Memory: one small record per inode number below H (a volume with a
 * million inodes costs some tens of MiB). Problems are reported as they
 * are found, one line each, naming the inode.
 */
#include "ns/check.h"
#include "ns/dir.h"
#include "ns/inode.h"
#include "util/util.h"

#include <dirent.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

/* What the check knows about one inode number. */
struct nc_inode {
	uint32_t ni_mode;
	uint32_t ni_nlink;
	uint32_t ni_refs;    /* entries naming it */
	uint32_t ni_subdirs; /* directories among its entries (a directory) */
	uint64_t ni_size;
	uint16_t ni_symlink_len;
	uint8_t ni_flags; /* INODE_F_* from its record */
	bool ni_bad;	  /* its record did not decode */
	bool ni_reached;  /* a directory: reached in the walk */
};

struct nc {
	struct vol *nc_vol;
	ns_problem_fn nc_fn;
	void *nc_ctx;
	struct ns_check_stats nc_st;
	uint64_t nc_high;
	struct nc_inode *nc_inodes; /* [VOL_FIRST_OWNER, nc_high) */
	uint64_t *nc_queue;	    /* directories to list */
	uint64_t nc_qhead, nc_qtail, nc_qcap;
	uint64_t nc_dir; /* the directory being listed */
};

static void nc_problem(struct nc *c, uint64_t ino, const char *fmt, ...)
{
	char line[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	c->nc_st.nc_problems++;
	if (c->nc_fn)
		c->nc_fn(c->nc_ctx, ino, line);
}

static struct nc_inode *nc_inode(struct nc *c, uint64_t ino)
{
	if (ino < VOL_FIRST_OWNER || ino >= c->nc_high)
		return NULL;
	return &c->nc_inodes[ino - VOL_FIRST_OWNER];
}

static bool nc_in_use(const struct nc_inode *ni)
{
	return ni && !ni->ni_bad && (ni->ni_flags & INODE_F_IN_USE);
}

static uint8_t nc_dtype(uint32_t mode)
{
	switch (mode & S_IFMT) {
	case S_IFREG:
		return DT_REG;
	case S_IFDIR:
		return DT_DIR;
	case S_IFLNK:
		return DT_LNK;
	case S_IFCHR:
		return DT_CHR;
	case S_IFBLK:
		return DT_BLK;
	case S_IFIFO:
		return DT_FIFO;
	case S_IFSOCK:
		return DT_SOCK;
	default:
		return DT_UNKNOWN;
	}
}

/* ---- (1) inodes ---------------------------------------------------------------- */

/* Bit @ino of the inode bitmap, read a block at a time into @blk. */
static int nc_bitmap_bit(struct nc *c, uint64_t ino, uint8_t *blk, uint64_t *cached, bool *bit)
{
	uint32_t bs = vol_block_size(c->nc_vol);
	uint64_t index = ino / 8 / bs;
	int err;

	if (*cached != index) {
		err = vol_read(c->nc_vol, INODE_BITMAP_OWNER, index, blk);
		if (err)
			return err;
		*cached = index;
	}
	*bit = blk[(ino / 8) % bs] & (1u << (ino % 8));
	return 0;
}

static void nc_record_shape(struct nc *c, uint64_t ino, const struct inode_rec *r)
{
	uint8_t type = nc_dtype(r->ir_mode);

	if (type == DT_UNKNOWN) {
		nc_problem(c, ino, "inode %" PRIu64 ": file type %#o is not valid", ino,
			   r->ir_mode & S_IFMT);
		return;
	}
	if (type == DT_LNK) {
		bool inline_target = r->ir_size <= INODE_SYMLINK_INLINE;

		if (r->ir_size == 0 ||
		    (inline_target ? r->ir_symlink_len != r->ir_size : r->ir_symlink_len != 0))
			nc_problem(c, ino,
				   "inode %" PRIu64 ": symlink of %" PRIu64
				   " bytes has %u bytes inline",
				   ino, r->ir_size, r->ir_symlink_len);
	} else if (r->ir_symlink_len) {
		nc_problem(c, ino, "inode %" PRIu64 ": not a symlink but has a symlink target",
			   ino);
	}
}

static int nc_pass_inodes(struct nc *c)
{
	uint8_t *blk = malloc(vol_block_size(c->nc_vol));
	uint64_t cached = UINT64_MAX;
	int err = 0;

	if (!blk)
		return -ENOMEM;
	for (uint64_t ino = VOL_FIRST_OWNER; ino < c->nc_high && !err; ino++) {
		struct nc_inode *ni = nc_inode(c, ino);
		struct inode_rec r;
		bool bit;

		err = nc_bitmap_bit(c, ino, blk, &cached, &bit);
		if (err)
			break;
		err = inode_read(c->nc_vol, ino, &r);
		if (err == -EUCLEAN) {
			nc_problem(c, ino, "inode %" PRIu64 ": record does not decode", ino);
			ni->ni_bad = true;
			err = 0;
			continue;
		}
		if (err)
			break;
		ni->ni_flags = r.ir_flags;
		ni->ni_mode = r.ir_mode;
		ni->ni_nlink = r.ir_nlink;
		ni->ni_size = r.ir_size;
		ni->ni_symlink_len = r.ir_symlink_len;
		if (bit != !!(r.ir_flags & INODE_F_IN_USE))
			nc_problem(c, ino, "inode %" PRIu64 ": bitmap says %s, record says %s", ino,
				   bit ? "in use" : "free", bit ? "free" : "in use");
		if (!(r.ir_flags & INODE_F_IN_USE)) {
			if (r.ir_flags & INODE_F_ORPHAN)
				nc_problem(c, ino, "inode %" PRIu64 ": free but marked orphan",
					   ino);
			continue;
		}
		c->nc_st.nc_inodes++;
		nc_record_shape(c, ino, &r);
	}
	free(blk);
	return err;
}

/* ---- (2) the tree ------------------------------------------------------------------- */

static int nc_enqueue(struct nc *c, uint64_t dir)
{
	if (c->nc_qtail == c->nc_qcap) {
		uint64_t cap = c->nc_qcap ? 2 * c->nc_qcap : 64;
		uint64_t *q = realloc(c->nc_queue, cap * sizeof(*q));

		if (!q)
			return -ENOMEM;
		c->nc_queue = q;
		c->nc_qcap = cap;
	}
	c->nc_queue[c->nc_qtail++] = dir;
	return 0;
}

static void nc_dir_report(void *ctx, uint64_t d, uint64_t blk, const char *problem)
{
	struct nc *c = ctx;

	if (blk == (uint64_t)-1)
		nc_problem(c, d, "directory %" PRIu64 ": %s", d, problem);
	else
		nc_problem(c, d, "directory %" PRIu64 " block %" PRIu64 ": %s", d, blk, problem);
}

/* One entry of the directory being listed. */
static int nc_entry(void *ctx, const char *name, size_t len, uint64_t ino, uint8_t type,
		    uint64_t next_cookie)
{
	struct nc *c = ctx;
	uint64_t d = c->nc_dir;
	struct nc_inode *ni = nc_inode(c, ino), *parent = nc_inode(c, d);
	int n = (int)MIN(len, 255);

	(void)next_cookie;
	if ((len == 1 && name[0] == '.') || (len == 2 && name[0] == '.' && name[1] == '.'))
		return 0;
	c->nc_st.nc_entries++;
	if (!ni || ni->ni_bad || !(ni->ni_flags & INODE_F_IN_USE)) {
		nc_problem(c, d, "directory %" PRIu64 ": entry '%.*s' names inode %" PRIu64 ", %s",
			   d, n, name, ino,
			   !ni		? "out of range"
			   : ni->ni_bad ? "unreadable"
					: "free");
		return 0;
	}
	ni->ni_refs++;
	if (type != nc_dtype(ni->ni_mode))
		nc_problem(c, d,
			   "directory %" PRIu64 ": entry '%.*s' says type %u, inode %" PRIu64
			   " is type %u",
			   d, n, name, type, ino, nc_dtype(ni->ni_mode));
	if (!S_ISDIR(ni->ni_mode))
		return 0;
	parent->ni_subdirs++;
	if (ni->ni_reached || ino == INODE_ROOT) {
		nc_problem(c, d,
			   "directory %" PRIu64 ": entry '%.*s' links directory %" PRIu64
			   " a second time",
			   d, n, name, ino);
		return 0;
	}
	ni->ni_reached = true;
	return nc_enqueue(c, ino) ? 1 : 0;
}

static int nc_walk_dir(struct nc *c, uint64_t d, uint64_t from)
{
	uint64_t parent;
	int err;

	err = dir_check(c->nc_vol, d, nc_dir_report, c);
	if (err == -EUCLEAN)
		return 0; /* reported; its entries cannot be trusted */
	if (err)
		return err;
	err = dir_get_parent(c->nc_vol, d, &parent);
	if (err)
		return err;
	if (parent != from)
		nc_problem(c, d,
			   "directory %" PRIu64 ": '..' is %" PRIu64
			   ", but it is reached from %" PRIu64,
			   d, parent, from);
	c->nc_dir = d;
	return dir_readdir(c->nc_vol, d, DIR_COOKIE_START, nc_entry, c);
}

/* Where each directory was reached from: its parent is the one listing it. */
static int nc_pass_tree(struct nc *c)
{
	struct nc_inode *root = nc_inode(c, INODE_ROOT);
	uint64_t *from;
	int err = 0;

	if (!nc_in_use(root) || !S_ISDIR(root->ni_mode)) {
		nc_problem(c, INODE_ROOT, "the root (inode %u) is not an in-use directory",
			   INODE_ROOT);
		return 0;
	}
	root->ni_reached = true;
	from = calloc(c->nc_high - VOL_FIRST_OWNER, sizeof(*from));
	if (!from)
		return -ENOMEM;
	from[0] = INODE_ROOT;
	err = nc_enqueue(c, INODE_ROOT);
	while (!err && c->nc_qhead < c->nc_qtail) {
		uint64_t d = c->nc_queue[c->nc_qhead++];
		uint64_t tail = c->nc_qtail;

		c->nc_st.nc_dirs++;
		err = nc_walk_dir(c, d, from[d - VOL_FIRST_OWNER]);
		for (uint64_t i = tail; i < c->nc_qtail; i++)
			from[c->nc_queue[i] - VOL_FIRST_OWNER] = d;
	}
	free(from);
	return err;
}

/* ---- (3) totals ---------------------------------------------------------------------- */

static void nc_pass_totals(struct nc *c)
{
	for (uint64_t ino = VOL_FIRST_OWNER; ino < c->nc_high; ino++) {
		struct nc_inode *ni = nc_inode(c, ino);
		bool orphan = ni->ni_flags & INODE_F_ORPHAN;
		uint64_t want;

		if (!nc_in_use(ni))
			continue;
		switch (nc_dtype(ni->ni_mode)) {
		case DT_REG:
			c->nc_st.nc_files++;
			break;
		case DT_DIR:
			break;
		case DT_LNK:
			c->nc_st.nc_symlinks++;
			break;
		default:
			c->nc_st.nc_special++;
			break;
		}
		if (orphan) {
			c->nc_st.nc_orphans++;
			if (ni->ni_refs || ni->ni_reached)
				nc_problem(c, ino, "inode %" PRIu64 ": orphan, but still linked",
					   ino);
			if (ni->ni_nlink)
				nc_problem(c, ino, "inode %" PRIu64 ": orphan with %u links", ino,
					   ni->ni_nlink);
			continue;
		}
		if (!ni->ni_refs && ino != INODE_ROOT) {
			nc_problem(c, ino, "inode %" PRIu64 ": in use but not in any directory",
				   ino);
			continue;
		}
		want = S_ISDIR(ni->ni_mode) ? 2 + (uint64_t)ni->ni_subdirs : ni->ni_refs;
		if (S_ISDIR(ni->ni_mode) && !ni->ni_reached)
			continue; /* reported where its entries were */
		if (ni->ni_nlink != want)
			nc_problem(c, ino, "inode %" PRIu64 ": link count %u, should be %" PRIu64,
				   ino, ni->ni_nlink, want);
	}
}

int ns_check(struct vol *v, ns_problem_fn fn, void *ctx, struct ns_check_stats *st)
{
	struct nc c = {.nc_vol = v, .nc_fn = fn, .nc_ctx = ctx};
	int err;

	err = inode_high(v, &c.nc_high);
	if (err == -EUCLEAN) {
		nc_problem(&c, 0, "the inode allocator's header (inode file block 0) is corrupt");
		goto out;
	}
	if (err)
		return err;
	if (c.nc_high <= INODE_ROOT) {
		nc_problem(&c, INODE_ROOT, "no inode was ever allocated: the root is missing");
		goto out;
	}
	c.nc_inodes = calloc(c.nc_high - VOL_FIRST_OWNER, sizeof(*c.nc_inodes));
	if (!c.nc_inodes)
		return -ENOMEM;
	err = nc_pass_inodes(&c);
	if (!err)
		err = nc_pass_tree(&c);
	if (!err)
		nc_pass_totals(&c);
	free(c.nc_inodes);
	free(c.nc_queue);
	if (err)
		return err;
out:
	if (st)
		*st = c.nc_st;
	return c.nc_st.nc_problems ? -EUCLEAN : 0;
}

/*
 * check.h - the namespace's consistency check: fsck's namespace half.
 *
 * ns_check reads a volume's inode file, inode bitmap and every directory
 * reachable from the root, and reports each broken invariant of the
 * namespace format (docs/FORMAT.md, "Namespace metadata files") through a
 * callback, naming the inode it concerns. It changes nothing. It is the
 * oracle the tests use: a volume a test or a crash left behind must
 * check clean.
 */
#ifndef CAIRN_NS_CHECK_H
#define CAIRN_NS_CHECK_H

#include <stdint.h>

#include "vol/vol.h"

/* One problem: the inode it concerns (0: the volume), and one line. */
typedef void (*ns_problem_fn)(void *ctx, uint64_t ino, const char *problem);

struct ns_check_stats {
	uint64_t nc_inodes;   /* inodes in use */
	uint64_t nc_dirs;     /* directories reached from the root */
	uint64_t nc_files;    /* regular files */
	uint64_t nc_symlinks; /* symbolic links */
	uint64_t nc_special;  /* devices, FIFOs, sockets */
	uint64_t nc_orphans;  /* unlinked inodes kept for an open file */
	uint64_t nc_entries;  /* directory entries ('.' and '..' not counted) */
	uint64_t nc_problems; /* problems reported */
};

/*
 * Check the namespace of the open volume @v. Every problem found is
 * reported through @fn (may be NULL) and counted; @st (may be NULL)
 * receives the counts. Returns 0 for a clean namespace, -EUCLEAN if a
 * problem was found, or another negative errno if the check could not
 * run (-ENOMEM, a read error).
 *
 * Checked: the allocator header; every record below its high mark
 * decodes; the bitmap bit of every inode matches its record; the root
 * is an in-use directory; each directory reached passes dir_check, names
 * its parent as '..', and is reached exactly once; every entry points
 * to an in-use inode of the type it names; every in-use inode is reached
 * or is an orphan (and an orphan is not reached); link counts (a
 * directory: 2 + its subdirectories; others: their entries; an orphan:
 * 0); file types and inline symlink lengths are valid.
 */
int ns_check(struct vol *v, ns_problem_fn fn, void *ctx, struct ns_check_stats *st);

#endif /* CAIRN_NS_CHECK_H */

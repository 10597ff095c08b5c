/*
 * ns_daemon.c - finding a snapshot through the daemon that has its image
 * mounted, for a snapshot open beside the writer (cairn_open with
 * coo_snapshot while `cairn mount` holds the image's lock).
 *
 * The live state of such an image changes under every read, and map
 * blocks carry no checksum, so the snapshot's record cannot be read from
 * the device: the daemon, which owns the live state, is asked for it.
 *
 *   ns_daemon_snapshot_find      vol_open_opts.voo_snapshot_find
 *     -> ns_daemon_each           the mounts of the image (`cairn mount`
 *                                 waits for them too): /proc/self/mounts,
 *                                 type fuse.cairn, the
 *                                 image's absolute path as source (cairn
 *                                 mount refuses -o fsname=), read-write or
 *                                 read only (a read-only mount of the volume
 *                                 holds the image as a writer does; a
 *                                 snapshot's mount answers ENOENT, (1))
 *     -> CAIRN_IOC_SNAP_FIND      on each mount's root, until one has it;
 *                                 with the identity of the file the
 *                                 reader opened (st_dev, st_ino): a
 *                                 daemon serving another file (the path
 *                                 renamed or replaced since it mounted)
 *                                 answers ESTALE and is passed over
 *
 * Invariants
 *   (1) Only a mount of the volume itself answers: a snapshot's mount
 *       lists no snapshots (vol_snap_list), so its out-of-date table is
 *       never taken for the volume's.
 *   (2) vol_open_snapshot asks only after it has pinned the name, so the
 *       record cannot be deleted between the answer and the reads.
 *
 * Lock order: none (no locks are taken).
 */
#include "ns/ns.h"
#include "cairn/ioctl.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <mntent.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

/*
 * Ask the daemon mounted on @dir for snapshot @name of image @id; -ENOENT
 * if it has none, -ESTALE if it serves another file.
 */
static int ns_daemon_ask(const char *dir, const struct bdev_identity *id, const char *name,
			 uint64_t *sroot, uint64_t *delta, uint64_t *xlate)
{
	struct cairn_ioc_snap q = {.cis_dev = id->bi_dev, .cis_ino = id->bi_ino};
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int err = 0;

	if (fd < 0)
		return -errno;
	if (strlen(name) >= sizeof(q.cis_name))
		err = -ENOENT; /* longer than any name */
	if (!err) {
		memcpy(q.cis_name, name, strlen(name));
		if (ioctl(fd, CAIRN_IOC_SNAP_FIND, &q) < 0)
			err = -errno;
	}
	close(fd);
	if (err)
		return err;
	*sroot = q.cis_sroot;
	*delta = q.cis_delta;
	*xlate = q.cis_xlate;
	return 0;
}

int ns_daemon_each(const char *image, int (*fn)(void *arg, const char *dir), void *arg)
{
	char buf[3 * PATH_MAX];
	struct mntent me;
	int r = 0;
	FILE *f = setmntent("/proc/self/mounts", "r");

	if (!f)
		return -errno;
	while (!r && getmntent_r(f, &me, buf, sizeof(buf))) {
		if (strcmp(me.mnt_type, "fuse.cairn") || strcmp(me.mnt_fsname, image))
			continue;
		r = fn(arg, me.mnt_dir);
	}
	endmntent(f);
	return r;
}

struct ns_daemon_query {
	const struct ns_daemon_image *q_image;
	const char *q_name;
	uint64_t *q_sroot, *q_delta, *q_xlate;
	bool q_mounted; /* a daemon was asked */
	int q_err;	/* -ENOENT, or the error of one that failed */
};

/* ns_daemon_each: ask the daemon at @dir; 1 (stop) once one has it. */
static int ns_daemon_query_one(void *arg, const char *dir)
{
	struct ns_daemon_query *q = arg;
	int r =
	    ns_daemon_ask(dir, &q->q_image->di_id, q->q_name, q->q_sroot, q->q_delta, q->q_xlate);

	if (r == -ESTALE)
		return 0; /* not the daemon of our file */
	q->q_mounted = true;
	if (r && r != -ENOENT)
		q->q_err = r; /* kept unless another mount answers */
	return !r;
}

int ns_daemon_snapshot_find(void *arg, const char *name, uint64_t *sroot, uint64_t *delta,
			    uint64_t *xlate)
{
	const struct ns_daemon_image *image = arg;
	struct ns_daemon_query q = {image, name, sroot, delta, xlate, false, -ENOENT};
	int r = ns_daemon_each(image->di_path, ns_daemon_query_one, &q);

	if (r < 0)
		return r;
	if (r > 0)
		return 0;
	/* no daemon of ours: a program other than `cairn mount` has the lock */
	return q.q_mounted ? q.q_err : -EBUSY;
}

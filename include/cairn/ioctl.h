/*
 * cairn/ioctl.h - the control interface of a mounted cairn volume.
 *
 * `cairn mount` answers these ioctls on any file or directory of the
 * mount (the mount's root is the usual target), from root or from the
 * user who mounted it (-EPERM otherwise); `cairn snapshot` uses them
 * when given a mount point instead of an image. Write the kernel's dirty
 * pages back first (syncfs(2) on the mount), so that a snapshot holds
 * what programs wrote: the daemon then makes it all durable before it
 * pins the state.
 *
 *   CAIRN_IOC_SNAP_CREATE  cis_name: create it (cairn_snapshot_create);
 *                          with cis_delta not 0, of that recent
 *                          checkpoint (cairn_snapshot_create_at)
 *   CAIRN_IOC_SNAP_DELETE  cis_name: delete it (cairn_snapshot_delete)
 *   CAIRN_IOC_SNAP_GET     cis_index in, the cis_index-th snapshot out
 *                          (ENOENT past the last): a list, one by one;
 *                          none on a snapshot's mount
 *   CAIRN_IOC_SNAP_FIND    cis_name and the asker's image (cis_dev,
 *                          cis_ino: fstat of the image it opened) in,
 *                          that snapshot out (ENOENT: none; ESTALE: this
 *                          daemon serves another file, a path since
 *                          renamed or replaced)
 *
 *   CAIRN_IOC_CKPT_LIST    cic_before in (0: from the newest), out up to
 *                          CAIRN_IOC_CKPTS readable checkpoints older than
 *                          it, newest first (cairn_checkpoints); cic_n 0
 *                          past the oldest
 *
 * Errors are those of the libcairn calls (positive, in errno); EROFS on
 * a read-only mount for create and delete.
 */
#ifndef CAIRN_IOCTL_H
#define CAIRN_IOCTL_H

#include <stdint.h>
#include <sys/ioctl.h>

#include "cairn/cairn.h"

struct cairn_ioc_snap {
	char cis_name[CAIRN_SNAP_NAME_MAX + 1]; /* NUL-terminated */
	uint32_t cis_index;			/* CAIRN_IOC_SNAP_GET: which one */
	uint32_t cis_reserved;			/* 0 */
	uint64_t cis_delta;			/* GET: the commit it keeps */
	int64_t cis_ctime_ns;			/* GET: when it was taken */
	uint64_t cis_sroot;			/* GET: where its state starts (cs_sroot) */
	uint64_t cis_dev;			/* FIND: the image's st_dev; out: the daemon's */
	uint64_t cis_ino;			/* FIND: the image's st_ino; out: the daemon's */
	uint64_t
	    cis_xlate; /* GET: the super root whose translation it reads through (0: its own) */
};

#define CAIRN_IOC_CKPTS 64
struct cairn_ioc_ckpts {
	uint64_t cic_before; /* in: older than this delta; 0: from the newest */
	uint32_t cic_n;	     /* out: how many follow */
	uint32_t cic_reserved;
	struct {
		uint64_t delta;
		int64_t time_ns; /* committed, ns since the epoch; 0: unknown */
	} cic_cp[CAIRN_IOC_CKPTS];
};

#define CAIRN_IOC_MAGIC	      0xCA
#define CAIRN_IOC_SNAP_CREATE _IOW(CAIRN_IOC_MAGIC, 1, struct cairn_ioc_snap)
#define CAIRN_IOC_SNAP_DELETE _IOW(CAIRN_IOC_MAGIC, 2, struct cairn_ioc_snap)
#define CAIRN_IOC_SNAP_GET    _IOWR(CAIRN_IOC_MAGIC, 3, struct cairn_ioc_snap)
#define CAIRN_IOC_SNAP_FIND   _IOWR(CAIRN_IOC_MAGIC, 4, struct cairn_ioc_snap)
#define CAIRN_IOC_CKPT_LIST   _IOWR(CAIRN_IOC_MAGIC, 5, struct cairn_ioc_ckpts)

#endif /* CAIRN_IOCTL_H */

/*
 * fuse_ctl.c - the mount's control ioctls (include/cairn/ioctl.h):
 * snapshots and recent checkpoints of the mounted volume.
 *
 * They are restricted ioctls: the kernel copies the struct in and out by
 * the size _IOC encodes, so in_buf holds a whole struct cairn_ioc_snap
 * and the reply carries one back. FUSE_CAP_IOCTL_DIR is asked for at
 * init so that the mount's root directory, the natural target, takes
 * them too. Only root or the user who mounted may use them: a snapshot
 * pins space, and deleting one frees what others may rely on.
 *
 * A snapshot pins what libcairn has committed after a sync: data still
 * in the kernel's writeback cache is not in it. The caller writes it
 * back first (syncfs(2) on the mount), as `cairn snapshot` does.
 *
 * No state of its own: every call is one libcairn call, which is
 * thread-safe (snapshot creation and deletion serialize inside).
 */
#include "fuse/fuse_internal.h"

#include "cairn/ioctl.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/*
 * The snapshot named @name if it is not NULL, else the @index-th, into
 * @out; -ENOENT if there is none.
 */
static int cfuse_snap_get(struct cairn *c, const char *name, uint32_t index,
			  struct cairn_ioc_snap *out)
{
	struct cairn_snapshot *list;
	size_t n;
	int err = cairn_snapshot_list(c, &list, &n);

	if (err)
		return err;
	for (size_t i = 0; name && i < n; i++)
		if (!strcmp(list[i].cs_name, name))
			index = (uint32_t)i;
	if (index >= n || (name && strcmp(list[index].cs_name, name))) {
		free(list);
		return -ENOENT;
	}
	memset(out, 0, sizeof(*out));
	memcpy(out->cis_name, list[index].cs_name, sizeof(out->cis_name));
	out->cis_index = index;
	out->cis_delta = list[index].cs_delta;
	out->cis_ctime_ns = list[index].cs_ctime_ns;
	out->cis_sroot = list[index].cs_sroot;
	out->cis_xlate = list[index].cs_xlate;
	free(list);
	return cairn_image_identity(c, &out->cis_dev, &out->cis_ino);
}

/* CAIRN_IOC_CKPT_LIST: the readable checkpoints older than @q's cic_before. */
static int cfuse_ckpt_list(struct cairn *c, const struct cairn_ioc_ckpts *q,
			   struct cairn_ioc_ckpts *out)
{
	struct cairn_checkpoint *cp;
	size_t n, i = 0;
	int err = cairn_checkpoints(c, SIZE_MAX, &cp, &n);

	if (err)
		return err;
	memset(out, 0, sizeof(*out));
	out->cic_before = q->cic_before;
	while (i < n && q->cic_before && cp[i].ccp_delta >= q->cic_before)
		i++;
	for (; i < n && out->cic_n < CAIRN_IOC_CKPTS; i++, out->cic_n++) {
		out->cic_cp[out->cic_n].delta = cp[i].ccp_delta;
		out->cic_cp[out->cic_n].time_ns = cp[i].ccp_time_ns;
	}
	free(cp);
	return 0;
}

/* -ESTALE unless @q asks about the file this volume is open on. */
static int cfuse_same_image(struct cairn *c, const struct cairn_ioc_snap *q)
{
	uint64_t dev, ino;

	if (cairn_image_identity(c, &dev, &ino) || dev != q->cis_dev || ino != q->cis_ino)
		return -ESTALE; /* a path renamed or replaced since we opened it */
	return 0;
}

void cfuse_ioctl(fuse_req_t req, fuse_ino_t ino, unsigned cmd, void *arg, struct fuse_file_info *fi,
		 unsigned flags, const void *in_buf, size_t in_bufsz, size_t out_bufsz)
{
	struct cfuse *f = cfuse_of(req);
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	struct cairn_ioc_snap in, out;
	unsigned ucmd = cmd;
	bool get = ucmd == CAIRN_IOC_SNAP_GET || ucmd == CAIRN_IOC_SNAP_FIND;
	int err;

	(void)ino;
	(void)arg;
	(void)fi;
	if (flags & FUSE_IOCTL_COMPAT) {
		fuse_reply_err(req, ENOSYS);
		return;
	}
	if (ucmd != CAIRN_IOC_SNAP_CREATE && ucmd != CAIRN_IOC_SNAP_DELETE &&
	    ucmd != CAIRN_IOC_SNAP_GET && ucmd != CAIRN_IOC_SNAP_FIND &&
	    ucmd != CAIRN_IOC_CKPT_LIST) {
		fuse_reply_err(req, ENOTTY);
		return;
	}
	if (ctx->uid != 0 && ctx->uid != getuid()) {
		fuse_reply_err(req, EPERM);
		return;
	}
	if (ucmd == CAIRN_IOC_CKPT_LIST) {
		struct cairn_ioc_ckpts q, *r;

		if (in_bufsz != sizeof(q) || out_bufsz < sizeof(*r)) {
			fuse_reply_err(req, EINVAL);
			return;
		}
		r = malloc(sizeof(*r));
		if (!r) {
			fuse_reply_err(req, ENOMEM);
			return;
		}
		memcpy(&q, in_buf, sizeof(q));
		err = cfuse_ckpt_list(f->cf_cairn, &q, r);
		if (err)
			fuse_reply_err(req, cfuse_errno(err));
		else
			fuse_reply_ioctl(req, 0, r, sizeof(*r));
		free(r);
		return;
	}
	if (in_bufsz != sizeof(in) || (get && out_bufsz < sizeof(out))) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	memcpy(&in, in_buf, sizeof(in));
	if (!memchr(in.cis_name, '\0', sizeof(in.cis_name))) {
		fuse_reply_err(req, ENAMETOOLONG);
		return;
	}
	if (get) {
		err = ucmd == CAIRN_IOC_SNAP_FIND ? cfuse_same_image(f->cf_cairn, &in) : 0;
		if (!err)
			err = cfuse_snap_get(f->cf_cairn,
					     ucmd == CAIRN_IOC_SNAP_FIND ? in.cis_name : NULL,
					     in.cis_index, &out);
		if (err)
			fuse_reply_err(req, cfuse_errno(err));
		else
			fuse_reply_ioctl(req, 0, &out, sizeof(out));
		return;
	}
	if (ucmd == CAIRN_IOC_SNAP_CREATE)
		err = cairn_snapshot_create_at(f->cf_cairn, in.cis_name, in.cis_delta);
	else
		err = cairn_snapshot_delete(f->cf_cairn, in.cis_name);
	if (err)
		fuse_reply_err(req, cfuse_errno(err));
	else
		fuse_reply_ioctl(req, 0, NULL, 0);
}

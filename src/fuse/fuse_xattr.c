/*
 * fuse_xattr.c - extended attributes.
 *
 * A GETXATTR or LISTXATTR of size 0 asks for the size only (answered
 * with fuse_reply_xattr); otherwise the value is replied if it fits and
 * ERANGE if not, as libcairn decides.
 *
 * POSIX ACLs (system.posix_acl_access, system.posix_acl_default) are
 * refused with EOPNOTSUPP: libcairn would store them byte for byte, but
 * the mount does not negotiate FUSE_CAP_POSIX_ACL, so nothing would
 * enforce them, and a setfacl that seems to work but grants nothing is
 * worse than one that fails.
 */
#include "fuse/fuse_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static bool cfuse_xattr_acl(const char *name)
{
	return !strcmp(name, "system.posix_acl_access") ||
	       !strcmp(name, "system.posix_acl_default");
}

void cfuse_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
		    size_t size, int flags)
{
	int err;

	if (cfuse_xattr_acl(name)) {
		fuse_reply_err(req, EOPNOTSUPP);
		return;
	}
	/* XATTR_CREATE and XATTR_REPLACE have libcairn's values. */
	err = cairn_setxattr(cfuse_of(req)->cf_cairn, cfuse_ino_in(ino), name, value, size,
			     (unsigned)flags);
	fuse_reply_err(req, err ? cfuse_errno(err) : 0);
}

/* Reply @n (a size or -errno) for a request of @size bytes whose answer is in @buf. */
static void cfuse_xattr_reply(fuse_req_t req, ssize_t n, size_t size, const char *buf)
{
	if (n < 0)
		fuse_reply_err(req, cfuse_errno(n));
	else if (!size)
		fuse_reply_xattr(req, (size_t)n);
	else
		fuse_reply_buf(req, buf, (size_t)n);
}

void cfuse_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	char *buf = NULL;
	ssize_t n;

	if (cfuse_xattr_acl(name)) {
		fuse_reply_err(req, ENODATA);
		return;
	}
	if (size && !(buf = malloc(size))) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	n = cairn_getxattr(cfuse_of(req)->cf_cairn, cfuse_ino_in(ino), name, buf, size);
	cfuse_xattr_reply(req, n, size, buf);
	free(buf);
}

void cfuse_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	char *buf = NULL;
	ssize_t n;

	if (size && !(buf = malloc(size))) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	n = cairn_listxattr(cfuse_of(req)->cf_cairn, cfuse_ino_in(ino), buf, size);
	cfuse_xattr_reply(req, n, size, buf);
	free(buf);
}

void cfuse_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	int err = cairn_removexattr(cfuse_of(req)->cf_cairn, cfuse_ino_in(ino), name);

	fuse_reply_err(req, err ? cfuse_errno(err) : 0);
}

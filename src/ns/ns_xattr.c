/*
 * ns_xattr.c - extended attributes.
 *
 * An inode's xattrs are one blob in vol owner NS_XATTR_BASE + ino (2^41 +
 * ino: inode numbers are capped below 2^41, so these owners are free);
 * the record's ir_xattr_owner names it (0: no xattrs). The record's
 * inline xattr area is not used. The blob, little-endian:
 *
 *   0   4   length L of the entries that follow
 *   4   L   entries: u8 name length n, u32 value length m, n name bytes
 *           (no NUL), m value bytes
 *
 * A change reads the blob, edits it in memory and writes it back whole
 * (blocks [0, ceil((4 + L)/bs))), punching the blocks it no longer needs,
 * all in one transaction with the record (ctime): at most
 * ns_xattr_max_blocks + 1 blocks. The blob is capped at NS_XATTR_TOTAL
 * (-ENOSPC past it). Protected by the inode's ni_lock. Values are stored
 * byte for byte: POSIX ACLs (system.posix_acl_*) are kept, not
 * interpreted (permissions are the FUSE adapter's).
 */
#include "ns/ns.h"

#include <endian.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define NS_XATTR_HDR 4u
#define NS_XENT_HDR  5u

struct ns_xblob {
	uint8_t *xb_data; /* NS_XATTR_HDR + xb_len bytes, rounded up to blocks */
	uint32_t xb_len;  /* bytes of entries */
};

static uint64_t ns_xattr_max_blocks(const struct cairn *c)
{
	return (NS_XATTR_HDR + NS_XATTR_TOTAL + NS_XENT_HDR + 255 + c->c_bs - 1) / c->c_bs;
}

uint64_t ns_xattr_txn_blocks(const struct cairn *c)
{
	/* the blob written, its old tail punched, the inode */
	return ns_xattr_max_blocks(c) + ns_punch_cost(c, 0, ns_xattr_max_blocks(c)) +
	       INODE_WRITE_BLOCKS;
}

static uint64_t ns_xblob_blocks(const struct cairn *c, uint32_t len)
{
	return len ? (NS_XATTR_HDR + len + c->c_bs - 1) / c->c_bs : 0;
}

static int ns_xblob_read(struct cairn *c, const struct ns_inode *ni, struct ns_xblob *xb)
{
	uint64_t owner = ni->ni_rec.ir_xattr_owner, nb;
	uint32_t len = 0;
	int err = 0;

	xb->xb_len = 0;
	xb->xb_data = calloc(ns_xattr_max_blocks(c), c->c_bs);
	if (!xb->xb_data)
		return -ENOMEM;
	if (!owner)
		return 0;
	err = vol_read_range(c->c_vol, owner, 0, 0, sizeof(len), &len);
	len = le32toh(len);
	if (!err && len > NS_XATTR_TOTAL) {
		log_err("ns: inode %" PRIu64 ": xattr blob of %u bytes (owner %" PRIu64 ")",
			ni->ni_ino, len, owner);
		err = -EUCLEAN;
	}
	nb = ns_xblob_blocks(c, len);
	for (uint64_t i = 0; !err && i < nb; i++)
		err = vol_read(c->c_vol, owner, i, xb->xb_data + i * c->c_bs);
	xb->xb_len = len;
	return err;
}

/* Write @xb (new length) over the blob of @old_len bytes, in @t. */
static int ns_xblob_write(struct cairn *c, struct vol_txn *t, struct ns_inode *ni,
			  struct ns_xblob *xb, uint32_t old_len)
{
	uint64_t owner = NS_XATTR_BASE + ni->ni_ino;
	uint64_t nb = ns_xblob_blocks(c, xb->xb_len), ob = ns_xblob_blocks(c, old_len);
	uint32_t le = htole32(xb->xb_len);
	size_t used = NS_XATTR_HDR + xb->xb_len;
	int err = 0;

	memcpy(xb->xb_data, &le, sizeof(le));
	if (nb)
		memset(xb->xb_data + used, 0, nb * c->c_bs - used);
	for (uint64_t i = 0; !err && i < nb; i++)
		err = vol_write(t, owner, i, xb->xb_data + i * c->c_bs);
	if (!err && ob > nb)
		err = ns_punch_range(t, owner, nb, ob, ns_punch_cost(c, nb, ob), NULL);
	if (!err)
		ni->ni_rec.ir_xattr_owner = nb ? owner : 0;
	return err;
}

/* Find @name in @xb: its entry's offset (from xb_data) or -1. */
static long ns_xfind(const struct ns_xblob *xb, const char *name, size_t nlen, uint32_t *vlen)
{
	size_t pos = NS_XATTR_HDR, end = NS_XATTR_HDR + xb->xb_len;

	while (pos + NS_XENT_HDR <= end) {
		const uint8_t *e = xb->xb_data + pos;
		uint32_t m;

		memcpy(&m, e + 1, sizeof(m));
		m = le32toh(m);
		if (e[0] == nlen && !memcmp(e + NS_XENT_HDR, name, nlen)) {
			*vlen = m;
			return (long)pos;
		}
		pos += NS_XENT_HDR + e[0] + (size_t)m;
	}
	return -1;
}

static void ns_xremove(struct ns_xblob *xb, long at)
{
	uint8_t *e = xb->xb_data + at;
	uint32_t m;
	size_t sz, end = NS_XATTR_HDR + xb->xb_len;

	memcpy(&m, e + 1, sizeof(m));
	sz = NS_XENT_HDR + e[0] + (size_t)le32toh(m);
	memmove(e, e + sz, end - (size_t)at - sz);
	xb->xb_len -= (uint32_t)sz;
}

static void ns_xappend(struct ns_xblob *xb, const char *name, size_t nlen, const void *val,
		       size_t vlen)
{
	uint8_t *e = xb->xb_data + NS_XATTR_HDR + xb->xb_len;
	uint32_t m = htole32((uint32_t)vlen);

	e[0] = (uint8_t)nlen;
	memcpy(e + 1, &m, sizeof(m));
	memcpy(e + NS_XENT_HDR, name, nlen);
	if (vlen)
		memcpy(e + NS_XENT_HDR + nlen, val, vlen);
	xb->xb_len += (uint32_t)(NS_XENT_HDR + nlen + vlen);
}

static int ns_xname_check(const char *name, size_t *len)
{
	static const char *const prefixes[] = {"user.", "trusted.", "security."};

	if (!name || !*name)
		return -EINVAL;
	*len = strlen(name);
	if (*len > CAIRN_XATTR_NAME_MAX)
		return -ERANGE;
	if (!strcmp(name, "system.posix_acl_access") || !strcmp(name, "system.posix_acl_default"))
		return 0;
	for (size_t i = 0; i < ARRAY_SIZE(prefixes); i++) {
		size_t pl = strlen(prefixes[i]);

		if (!strncmp(name, prefixes[i], pl))
			return *len > pl ? 0 : -EINVAL;
	}
	return -EOPNOTSUPP;
}

/* user.* only on regular files and directories, as Linux. */
static int ns_xtype_check(const struct ns_inode *ni, const char *name)
{
	uint32_t m = ni->ni_rec.ir_mode;

	if (!strncmp(name, "user.", 5) && !S_ISREG(m) && !S_ISDIR(m))
		return -EPERM;
	return 0;
}

/* The change of one setxattr / removexattr (@val NULL: remove), @ni locked. */
static int ns_xchange_locked(struct cairn *c, struct vol_txn *t, struct ns_inode *ni,
			     const char *name, size_t nlen, const void *val, size_t vlen,
			     unsigned flags)
{
	struct ns_xblob xb;
	uint32_t old_len, m;
	long at;
	int err;

	err = ns_xblob_read(c, ni, &xb);
	if (err)
		goto out;
	old_len = xb.xb_len;
	at = ns_xfind(&xb, name, nlen, &m);
	if (at >= 0 && val && (flags & CAIRN_XATTR_CREATE))
		err = -EEXIST;
	else if (at < 0 && (!val || (flags & CAIRN_XATTR_REPLACE)))
		err = -ENODATA;
	if (err)
		goto out;
	if (at >= 0)
		ns_xremove(&xb, at);
	if (val && xb.xb_len + NS_XENT_HDR + nlen + vlen > NS_XATTR_TOTAL) {
		err = -ENOSPC;
		goto out;
	}
	if (val)
		ns_xappend(&xb, name, nlen, val, vlen);
	err = ns_xblob_write(c, t, ni, &xb, old_len);
	if (!err) {
		ns_now(&ni->ni_rec.ir_ctime);
		err = ns_iwrite(t, ni);
	}
out:
	free(xb.xb_data);
	return err;
}

static int ns_xchange(struct cairn *c, uint64_t ino, const char *name, const void *val, size_t vlen,
		      unsigned flags)
{
	struct ns_inode *ni;
	struct vol_txn t;
	size_t nlen;
	int err;

	err = ns_xname_check(name, &nlen);
	if (err)
		return err;
	err = ns_iget(c, ino, &ni);
	if (err)
		return err;
	err = ns_txn_begin(c, ns_xattr_txn_blocks(c), 0, &t);
	if (err)
		goto out;
	ns_wlock(ni);
	err = ns_alive(ni) ? ns_xtype_check(ni, name) : -ENOENT;
	if (!err)
		err = ns_xchange_locked(c, &t, ni, name, nlen, val, vlen, flags);
	ns_unlock(ni);
	vol_txn_end(&t);
out:
	ns_iput(c, ni);
	return err;
}

int cairn_setxattr(struct cairn *c, uint64_t ino, const char *name, const void *value, size_t size,
		   unsigned flags)
{
	static const uint8_t empty;

	if (flags & ~(CAIRN_XATTR_CREATE | CAIRN_XATTR_REPLACE))
		return -EINVAL;
	if (size > CAIRN_XATTR_SIZE_MAX)
		return -E2BIG;
	if (size && !value)
		return -EINVAL;
	return ns_xchange(c, ino, name, size ? value : &empty, size, flags);
}

int cairn_removexattr(struct cairn *c, uint64_t ino, const char *name)
{
	return ns_xchange(c, ino, name, NULL, 0, 0);
}

ssize_t cairn_getxattr(struct cairn *c, uint64_t ino, const char *name, void *buf, size_t size)
{
	struct ns_inode *ni;
	struct ns_xblob xb = {0};
	uint32_t m = 0;
	size_t nlen;
	long at = -1;
	int err;

	err = ns_xname_check(name, &nlen);
	if (err)
		return err;
	err = ns_iget(c, ino, &ni);
	if (err)
		return err;
	ns_rlock(ni);
	err = ns_xblob_read(c, ni, &xb);
	if (!err)
		at = ns_xfind(&xb, name, nlen, &m);
	if (!err && at < 0)
		err = -ENODATA;
	else if (!err && size && size < m)
		err = -ERANGE;
	else if (!err && size && m)
		memcpy(buf, xb.xb_data + at + NS_XENT_HDR + nlen, m);
	ns_unlock(ni);
	free(xb.xb_data);
	ns_iput(c, ni);
	return err ? err : (ssize_t)m;
}

ssize_t cairn_listxattr(struct cairn *c, uint64_t ino, char *buf, size_t size)
{
	struct ns_inode *ni;
	struct ns_xblob xb = {0};
	size_t pos = NS_XATTR_HDR, need = 0;
	int err;

	err = ns_iget(c, ino, &ni);
	if (err)
		return err;
	ns_rlock(ni);
	err = ns_xblob_read(c, ni, &xb);
	while (!err && pos + NS_XENT_HDR <= NS_XATTR_HDR + xb.xb_len) {
		const uint8_t *e = xb.xb_data + pos;
		uint32_t m;

		memcpy(&m, e + 1, sizeof(m));
		if (size && need + e[0] + 1 > size)
			err = -ERANGE;
		else if (size) {
			memcpy(buf + need, e + NS_XENT_HDR, e[0]);
			buf[need + e[0]] = 0;
		}
		need += e[0] + 1u;
		pos += NS_XENT_HDR + e[0] + (size_t)le32toh(m);
	}
	ns_unlock(ni);
	free(xb.xb_data);
	ns_iput(c, ni);
	return err ? err : (ssize_t)need;
}

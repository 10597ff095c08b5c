/*
 * fuse_dir.c - directories: opendir, readdir, readdirplus, releasedir,
 * fsyncdir.
 *
 * A READDIR's offset is libcairn's cookie (0: the start; each entry
 * carries the cookie that resumes after it), so listing a directory that
 * changes meanwhile returns each entry that stayed exactly once.
 *
 * Invariants
 *   (1) cairn_readdir's callback runs with the directory locked: it only
 *       copies entries out. READDIR packs them straight into the reply;
 *       READDIRPLUS collects them and reads each child's attributes
 *       after cairn_readdir returned.
 *   (2) READDIRPLUS: every entry but '.' and '..' is a lookup (node
 *       table) the kernel takes; '.' and '..' carry node id 0, which the
 *       kernel does not link. If the reply does not reach the kernel,
 *       every lookup it carried is taken back.
 *   (3) An entry whose inode vanished between the listing and its
 *       attributes (a concurrent unlink) is left out; the next entry
 *       still resumes at the right cookie.
 *   (4) The kernel caches the listing (cache_readdir, keep_cache): it
 *       drops that cache itself when a change goes through this mount.
 */
#include "fuse/fuse_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct cfuse_dirent {
	uint64_t cd_ino;
	uint64_t cd_cookie; /* resumes after this entry */
	unsigned cd_type;   /* DT_* */
	char cd_name[CAIRN_NAME_MAX + 1];
};

struct cfuse_dirbuf {
	fuse_req_t db_req;
	bool db_plus;
	char *db_buf; /* READDIR: the reply */
	size_t db_size;
	size_t db_used;		      /* bytes of the reply (READDIRPLUS: as estimated) */
	struct cfuse_dirent *db_ents; /* READDIRPLUS */
	size_t db_nents, db_cap;
	int db_err;
};

static bool cfuse_dot_or_dotdot(const char *name)
{
	return name[0] == '.' && (!name[1] || (name[1] == '.' && !name[2]));
}

/* cairn_fill_fn: invariant (1). Stops (returns 1) when the reply is full. */
static int cfuse_dir_fill(void *ctx, const char *name, size_t len, uint64_t ino, unsigned type,
			  uint64_t next_cookie)
{
	struct cfuse_dirbuf *db = ctx;
	struct cfuse_dirent *d;
	struct stat st = {.st_ino = (ino_t)ino, .st_mode = type << 12};
	char nm[CAIRN_NAME_MAX + 1];
	size_t need;

	if (len > CAIRN_NAME_MAX) {
		db->db_err = -EUCLEAN;
		return 1;
	}
	memcpy(nm, name, len);
	nm[len] = '\0';
	if (!db->db_plus) {
		need = fuse_add_direntry(db->db_req, db->db_buf + db->db_used,
					 db->db_size - db->db_used, nm, &st, (off_t)next_cookie);
		if (need > db->db_size - db->db_used)
			return 1;
		db->db_used += need;
		return 0;
	}
	need = fuse_add_direntry_plus(db->db_req, NULL, 0, nm, NULL, 0);
	if (need > db->db_size - db->db_used)
		return 1;
	if (db->db_nents == db->db_cap) {
		size_t cap = db->db_cap ? db->db_cap * 2 : 16;

		d = realloc(db->db_ents, cap * sizeof(*d));
		if (!d) {
			db->db_err = -ENOMEM;
			return 1;
		}
		db->db_ents = d;
		db->db_cap = cap;
	}
	d = &db->db_ents[db->db_nents++];
	d->cd_ino = ino;
	d->cd_cookie = next_cookie;
	d->cd_type = type;
	memcpy(d->cd_name, nm, len + 1);
	db->db_used += need;
	return 0;
}

/* List from @off into @db; 0 or -errno (an error after entries still replies them). */
static int cfuse_dir_list(fuse_req_t req, fuse_ino_t ino, off_t off, struct cfuse_dirbuf *db)
{
	int err = cairn_readdir(cfuse_of(req)->cf_cairn, cfuse_ino_in(ino), (uint64_t)off,
				cfuse_dir_fill, db);

	if (!err)
		err = db->db_err;
	if (err && (db->db_used || db->db_nents))
		err = 0; /* reply what was listed; the next READDIR meets the error */
	return err;
}

void cfuse_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		   struct fuse_file_info *fi)
{
	struct cfuse_dirbuf db = {.db_req = req, .db_size = size};
	int err;

	(void)fi;
	db.db_buf = malloc(size ? size : 1);
	if (!db.db_buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	err = cfuse_dir_list(req, ino, off, &db);
	if (err)
		fuse_reply_err(req, cfuse_errno(err));
	else
		fuse_reply_buf(req, db.db_buf, db.db_used);
	free(db.db_buf);
}

/*
 * Add entry @d to the READDIRPLUS reply at @buf (@rem bytes left);
 * returns the bytes used, 0 for an entry left out (invariant 3), or
 * -errno. Counts the lookup (invariant 2).
 */
static long cfuse_plus_add(fuse_req_t req, const struct cfuse_dirent *d, char *buf, size_t rem)
{
	struct cfuse *f = cfuse_of(req);
	struct fuse_entry_param e = {0};
	struct cairn_stat cs;
	size_t n;
	int err;

	if (cfuse_dot_or_dotdot(d->cd_name)) {
		e.attr.st_ino = (ino_t)d->cd_ino;
		e.attr.st_mode = d->cd_type << 12;
		n = fuse_add_direntry_plus(req, buf, rem, d->cd_name, &e, (off_t)d->cd_cookie);
		return n > rem ? -ENOSPC : (long)n;
	}
	err = cairn_getattr(f->cf_cairn, d->cd_ino, &cs);
	if (err == -ENOENT)
		return 0;
	if (err)
		return err;
	cfuse_entry_fill(&cs, &e);
	n = fuse_add_direntry_plus(req, buf, rem, d->cd_name, &e, (off_t)d->cd_cookie);
	if (n > rem)
		return -ENOSPC; /* cannot happen: sizes were reserved */
	if (cfuse_node_ref(&f->cf_nodes, e.ino, cs.cs_mode))
		return -ENOMEM; /* the entry is not counted: cut the reply before it */
	return (long)n;
}

/* Take back the lookups of the first @n entries of @db (invariant 2). */
static void cfuse_plus_unref(struct cfuse *f, const struct cfuse_dirbuf *db, size_t n,
			     const bool *counted)
{
	for (size_t i = 0; i < n; i++)
		if (counted[i])
			cfuse_node_forget(&f->cf_nodes, cfuse_ino_out(db->db_ents[i].cd_ino), 1);
}

static void cfuse_plus_reply(fuse_req_t req, struct cfuse_dirbuf *db)
{
	struct cfuse *f = cfuse_of(req);
	bool *counted = calloc(db->db_nents + 1, sizeof(bool));
	char *buf = malloc(db->db_size ? db->db_size : 1);
	size_t used = 0, i;
	long n = 0;

	if (!counted || !buf) {
		fuse_reply_err(req, ENOMEM);
		goto out_free;
	}
	for (i = 0; i < db->db_nents; i++) {
		n = cfuse_plus_add(req, &db->db_ents[i], buf + used, db->db_size - used);
		if (n < 0)
			break;
		counted[i] = n > 0 && !cfuse_dot_or_dotdot(db->db_ents[i].cd_name);
		used += (size_t)n;
	}
	if (n < 0 && !used) {
		fuse_reply_err(req, cfuse_errno(n));
		goto out_free;
	}
	if (fuse_reply_buf(req, buf, used))
		cfuse_plus_unref(f, db, i, counted);
out_free:
	free(counted);
	free(buf);
}

void cfuse_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	struct cfuse_dirbuf db = {.db_req = req, .db_size = size, .db_plus = true};
	int err;

	(void)fi;
	err = cfuse_dir_list(req, ino, off, &db);
	if (err)
		fuse_reply_err(req, cfuse_errno(err));
	else
		cfuse_plus_reply(req, &db);
	free(db.db_ents);
}

void cfuse_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct cfuse *f = cfuse_of(req);
	int err = cairn_open_inode(f->cf_cairn, cfuse_ino_in(ino));

	if (err) {
		fuse_reply_err(req, cfuse_errno(err));
		return;
	}
	fi->cache_readdir = 1; /* invariant (4) */
	fi->keep_cache = 1;
	if (fuse_reply_open(req, fi)) /* no RELEASEDIR will come */
		cairn_release(f->cf_cairn, cfuse_ino_in(ino));
}

void cfuse_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	int err = cairn_release(cfuse_of(req)->cf_cairn, cfuse_ino_in(ino));

	(void)fi;
	fuse_reply_err(req, err ? cfuse_errno(err) : 0);
}

void cfuse_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	int err = cairn_fsync(cfuse_of(req)->cf_cairn, cfuse_ino_in(ino), datasync);

	(void)fi;
	fuse_reply_err(req, err ? cfuse_errno(err) : 0);
}

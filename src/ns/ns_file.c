/*
 * ns_file.c - regular files' data: read, write, truncate, fallocate.
 *
 * File @ino's block i is vol owner @ino's block i (bytes [i*bs,
 * (i+1)*bs)). A block is mapped iff it holds a nonzero byte (ns.c,
 * invariant 3): every block change goes through ns_block_change, which
 * reads the old block (when it lies inside the file: past the end it is a
 * hole), applies the change, and writes the block, or punches it when it
 * came out all zero, keeping ir_blocks exact. So holes read as zeros and
 * take no space, and writing zeros keeps a file sparse.
 *
 * Truncation and freeing use vol_truncate, which costs what it frees:
 * ns_punch_plan says how far down from the top one transaction's room
 * goes, and a truncate takes as many steps as it needs, each lowering
 * the size to where it cut (nothing stale is ever past the end).
 *
 * Size-changing operations (write, truncate, fallocate) hold the inode's
 * ni_io from before their first transaction to after their last, so the
 * size they split their work by does not move under them; each
 * transaction takes ni_lock for writing inside it (ns.c's lock order).
 * Reads take ni_lock shared.
 */
#include "ns/ns.h"
#include "util/syncpoint.h"

#include <stdlib.h>
#include <string.h>

uint64_t ns_size_blocks(const struct cairn *c, uint64_t size)
{
	return size / c->c_bs + (size % c->c_bs != 0);
}

uint64_t ns_max_size(const struct cairn *c)
{
	return (VOL_MAX_INDEX + 1) * c->c_bs;
}

uint64_t ns_punch_cost(const struct cairn *c, uint64_t from, uint64_t to)
{
	return to > from ? vol_truncate_cost(c->c_vol, to - from) : 0;
}

int ns_punch_plan(struct cairn *c, uint64_t owner, uint64_t lo, uint64_t hi, uint64_t room,
		  uint64_t *from, uint64_t *cost)
{
	*from = lo;
	*cost = ns_punch_cost(c, lo, hi);
	if (*cost <= room) /* the whole range fits, whatever it holds */
		return 0;
	return vol_truncate_plan(c->c_vol, owner, lo, hi, room, from, cost);
}

/*
 * vol_truncate drops everything from @from on (@to only bounds the
 * counting; a zero @cost, an empty plan, frees nothing). The volume does not say how many blocks
 * were mapped, so with @mapped the range is read first when it is at most NS_COUNT_MAX blocks (a
 * hole costs a map walk, no I/O: invariant 3 makes nonzero = mapped); past that *mapped is
 * NS_MAPPED_UNKNOWN and the caller keeps a conservative count (see ns_blocks_after).
 */
int ns_punch_range(struct vol_txn *t, uint64_t owner, uint64_t from, uint64_t to, uint64_t cost,
		   uint64_t *mapped)
{
	uint32_t bs = vol_block_size(t->vt_vol);
	uint8_t *blk;
	int err = 0;

	if (mapped)
		*mapped = 0;
	if (!cost)
		return 0; /* nothing to free */
	if (mapped && to > from && to - from > NS_COUNT_MAX) {
		*mapped = NS_MAPPED_UNKNOWN;
	} else if (mapped) {
		blk = malloc(bs);
		if (!blk)
			return -ENOMEM;
		for (uint64_t i = from; !err && i < to; i++) {
			err = vol_read(t->vt_vol, owner, i, blk);
			if (!err && !util_all_zero(blk, bs))
				(*mapped)++;
		}
		free(blk);
	}
	return err ? err : vol_truncate(t, owner, from, cost);
}

uint64_t ns_blocks_after(uint64_t blocks, uint64_t freed, uint64_t from)
{
	if (freed == NS_MAPPED_UNKNOWN) /* every mapped block is now below @from */
		return MIN(blocks, from);
	return blocks - MIN(freed, blocks);
}

/*
 * Change bytes [@off, @off + @len) of block @idx of @ni (locked for
 * writing) to @src (NULL: zeros), in @t (one block of it), keeping
 * invariant 3 and ir_blocks. @blk is a scratch block.
 */
static int ns_block_change(struct cairn *c, struct vol_txn *t, struct ns_inode *ni, uint64_t idx,
			   uint32_t off, uint32_t len, const void *src, uint8_t *blk)
{
	struct inode_rec *r = &ni->ni_rec;
	bool was_mapped = false;
	int err;

	if (idx < ns_size_blocks(c, r->ir_size)) {
		err = vol_read(c->c_vol, ni->ni_ino, idx, blk);
		if (err)
			return err;
		was_mapped = !util_all_zero(blk, c->c_bs);
	} else {
		memset(blk, 0, c->c_bs);
	}
	if (src)
		memcpy(blk + off, src, len);
	else
		memset(blk + off, 0, len);
	if (!util_all_zero(blk, c->c_bs)) {
		err = vol_write(t, ni->ni_ino, idx, blk);
		if (!err && !was_mapped)
			r->ir_blocks++;
		return err;
	}
	if (!was_mapped)
		return 0;
	err = vol_punch(t, ni->ni_ino, idx);
	if (!err)
		r->ir_blocks--;
	return err;
}

static int ns_check_reg(const struct ns_inode *ni)
{
	if (!ns_alive(ni))
		return -ENOENT;
	if (S_ISDIR(ni->ni_rec.ir_mode))
		return -EISDIR;
	return S_ISREG(ni->ni_rec.ir_mode) ? 0 : -EINVAL;
}

static void ns_touch_data(struct ns_inode *ni)
{
	ns_now(&ni->ni_rec.ir_mtime);
	ni->ni_rec.ir_ctime = ni->ni_rec.ir_mtime;
}

/* ---- read ----------------------------------------------------------------------- */

ssize_t cairn_pread(struct cairn *c, uint64_t ino, void *buf, size_t size, uint64_t off)
{
	struct ns_inode *ni;
	uint8_t *dst = buf;
	size_t done = 0;
	int err;

	err = ns_iget(c, ino, &ni);
	if (err)
		return err;
	ns_rlock(ni);
	err = ns_check_reg(ni);
	if (!err && off < ni->ni_rec.ir_size)
		size = (size_t)MIN((uint64_t)size, ni->ni_rec.ir_size - off);
	else
		size = 0;
	while (!err && done < size) {
		uint64_t pos = off + done;
		uint32_t boff = (uint32_t)(pos % c->c_bs);
		uint32_t n = (uint32_t)MIN((uint64_t)(c->c_bs - boff), size - done);

		err = vol_read_range(c->c_vol, ino, pos / c->c_bs, boff, n, dst + done);
		if (!err)
			done += n;
	}
	ns_unlock(ni);
	ns_iput(c, ni);
	return done ? (ssize_t)done : err;
}

/* ---- write ----------------------------------------------------------------------- */

/* One transaction of a write: bytes [@off, @off + @len), at most c_txn_data blocks. */
static int ns_write_chunk(struct cairn *c, struct ns_inode *ni, const uint8_t *src, uint64_t off,
			  size_t len, uint8_t *blk)
{
	uint64_t first = off / c->c_bs, last = (off + len - 1) / c->c_bs;
	struct vol_txn t;
	size_t done = 0;
	int err;

	err = ns_txn_begin_run(c, ni->ni_ino, first, last - first + 1, INODE_WRITE_BLOCKS, 0, &t);
	if (err)
		return err;
	ns_wlock(ni);
	err = ns_check_reg(ni);
	while (!err && done < len) {
		uint64_t pos = off + done;
		uint32_t boff = (uint32_t)(pos % c->c_bs);
		uint32_t n = (uint32_t)MIN((uint64_t)(c->c_bs - boff), len - done);

		err = ns_block_change(c, &t, ni, pos / c->c_bs, boff, n, src + done, blk);
		if (!err)
			done += n;
	}
	if (done) {
		ni->ni_rec.ir_size = MAX(ni->ni_rec.ir_size, off + done);
		ns_touch_data(ni);
		if (!err)
			err = ns_iwrite(&t, ni);
		else
			ns_iwrite(&t, ni); /* what was written stays: record it */
	}
	ns_unlock(ni);
	vol_txn_end(&t);
	return err;
}

ssize_t cairn_pwrite(struct cairn *c, uint64_t ino, const void *buf, size_t size, uint64_t off)
{
	uint64_t chunk_max;
	struct ns_inode *ni;
	size_t done = 0;
	uint8_t *blk;
	int err;

	if (off > ns_max_size(c) || size > ns_max_size(c) - off)
		return -EFBIG;
	err = ns_iget(c, ino, &ni);
	if (err)
		return err;
	blk = malloc(c->c_bs);
	if (!blk) {
		ns_iput(c, ni);
		return -ENOMEM;
	}
	chunk_max = (uint64_t)c->c_txn_data * c->c_bs;
	cmutex_lock(&ni->ni_io);
	if (!size) {
		ns_rlock(ni);
		err = ns_check_reg(ni);
		ns_unlock(ni);
	}
	while (!err && done < size) {
		uint64_t pos = off + done;
		size_t n = (size_t)MIN(size - done, chunk_max - pos % c->c_bs);

		err = ns_write_chunk(c, ni, (const uint8_t *)buf + done, pos, n, blk);
		if (!err)
			done += n;
	}
	cmutex_unlock(&ni->ni_io);
	free(blk);
	ns_iput(c, ni);
	return done ? (ssize_t)done : err;
}

/* ---- truncate ------------------------------------------------------------------------ */

/*
 * Punch the top of [@lo, *@hi) of a truncated file, one transaction
 * (what c_txn_data blocks cover: ns_punch_plan), lowering *@hi; the
 * one that reaches @lo removes "<ino>.<to>".
 */
int ns_trunc_more(struct cairn *c, struct ns_inode *ni, uint64_t lo, uint64_t *hi, uint64_t to)
{
	uint64_t from, cost, freed = 0;
	struct vol_txn t;
	int err;

	err = ns_punch_plan(c, ni->ni_ino, lo, *hi, c->c_txn_data, &from, &cost);
	if (!err)
		err = ns_txn_begin(c, cost + INODE_WRITE_BLOCKS + c->c_dir_blocks, VOL_TXN_FREEING,
				   &t);
	if (err)
		return err;
	ns_wlock(ni);
	err = ns_punch_range(&t, ni->ni_ino, from, MIN(*hi, to), cost, &freed);
	if (!err) {
		ni->ni_rec.ir_blocks = ns_blocks_after(ni->ni_rec.ir_blocks, freed, from);
		err = ns_iwrite(&t, ni);
	}
	if (!err && from == lo)
		err = ns_orphan_remove(c, &t, ni->ni_ino, to);
	ns_unlock(ni);
	vol_txn_end(&t);
	if (!err)
		*hi = from;
	return err;
}

/*
 * One transaction of a truncate to @size: free [@from, @hi) (@cost,
 * ns_punch_plan's; nothing past @hi is mapped but what an earlier step
 * frees) and set the size to the most of @size and @from's offset, so
 * that nothing stale is ever left past the end, whatever fails or
 * crashes between steps. The last step (@from at @size's end) also
 * zeroes the partial last block and sets the attributes.
 */
static int ns_trunc_step(struct cairn *c, struct ns_inode *ni, uint64_t size,
			 const struct cairn_setattr *sa, unsigned mask, uint64_t from, uint64_t hi,
			 uint64_t cost)
{
	struct inode_rec *r = &ni->ni_rec;
	bool last = from <= ns_size_blocks(c, size);
	uint64_t freed = 0;
	struct vol_txn t;
	uint8_t *blk = NULL;
	int err;

	if (last && !(blk = malloc(c->c_bs)))
		return -ENOMEM;
	err = ns_txn_begin(c, last + cost + INODE_WRITE_BLOCKS, VOL_TXN_FREEING, &t);
	if (err)
		goto out;
	ns_wlock(ni);
	err = ns_check_reg(ni);
	if (!err && size < r->ir_size) {
		uint64_t end = ns_size_blocks(c, r->ir_size);

		if (last && size % c->c_bs)
			err = ns_block_change(c, &t, ni, size / c->c_bs, (uint32_t)(size % c->c_bs),
					      c->c_bs - (uint32_t)(size % c->c_bs), NULL, blk);
		if (!err)
			err = ns_punch_range(&t, ni->ni_ino, from, MIN(hi, end), cost, &freed);
		if (!err)
			r->ir_blocks = ns_blocks_after(r->ir_blocks, freed, from);
	}
	if (!err) {
		r->ir_size = last ? size : MIN(r->ir_size, from * c->c_bs);
		if (last)
			ns_set_attrs(c, ni, mask & ~CAIRN_SET_SIZE, sa);
		else
			ns_touch_data(ni);
		if (!(mask & CAIRN_SET_MTIME))
			r->ir_mtime = r->ir_ctime;
		err = ns_iwrite(&t, ni);
	}
	ns_unlock(ni);
	vol_txn_end(&t);
out:
	free(blk);
	return err;
}

int ns_truncate(struct cairn *c, struct ns_inode *ni, uint64_t size, const struct cairn_setattr *sa,
		unsigned mask)
{
	uint64_t lo = ns_size_blocks(c, size), hi = VOL_INDEX_END, from = lo, cost = 0, old;
	int err;

	ns_rlock(ni);
	err = ns_check_reg(ni);
	ns_unlock(ni);
	if (err)
		return err;
	if (size > ns_max_size(c))
		return -EFBIG;
	cmutex_lock(&ni->ni_io); /* the size moves only under it */
	ns_rlock(ni);
	old = ni->ni_rec.ir_size;
	ns_unlock(ni);
	/* from the top of the owner down (an error may have left blocks past
	 * the end of a step), each step a transaction's room */
	do {
		if (size < old)
			err = ns_punch_plan(c, ni->ni_ino, lo, hi, c->c_txn_data, &from, &cost);
		if (!err)
			err = ns_trunc_step(c, ni, size, sa, mask, from, hi, cost);
		if (!err && from > lo)
			SYNC_POINT("ns.truncate.more"); /* a crash here: a file of size @from */
		hi = from;
	} while (!err && from > lo);
	cmutex_unlock(&ni->ni_io);
	return err;
}

/* ---- fallocate ------------------------------------------------------------------------- */

/* Zero [@off, @end) (inside the file), one transaction of at most c_txn_data blocks. */
static int ns_punch_chunk(struct cairn *c, struct ns_inode *ni, uint64_t off, uint64_t end,
			  uint8_t *blk)
{
	uint64_t first = off / c->c_bs, last = (end - 1) / c->c_bs;
	struct vol_txn t;
	int err;

	err = ns_txn_begin_run(c, ni->ni_ino, first, last - first + 1, INODE_WRITE_BLOCKS,
			       VOL_TXN_FREEING, &t);
	if (err)
		return err;
	ns_wlock(ni);
	err = ns_check_reg(ni);
	for (uint64_t pos = off; !err && pos < end;) {
		uint32_t boff = (uint32_t)(pos % c->c_bs);
		uint32_t n = (uint32_t)MIN((uint64_t)(c->c_bs - boff), end - pos);

		if (pos / c->c_bs < ns_size_blocks(c, ni->ni_rec.ir_size))
			err = ns_block_change(c, &t, ni, pos / c->c_bs, boff, n, NULL, blk);
		pos += n;
	}
	ns_touch_data(ni);
	if (!err)
		err = ns_iwrite(&t, ni);
	ns_unlock(ni);
	vol_txn_end(&t);
	return err;
}

static int ns_punch_hole(struct cairn *c, struct ns_inode *ni, uint64_t off, uint64_t len)
{
	uint64_t chunk = (uint64_t)c->c_txn_data * c->c_bs, end;
	uint8_t *blk = malloc(c->c_bs);
	int err = 0;

	if (!blk)
		return -ENOMEM;
	ns_rlock(ni);
	end = MIN(off + len, ni->ni_rec.ir_size); /* past the end: holes already */
	ns_unlock(ni);
	while (!err && off < end) {
		uint64_t n = MIN(end - off, chunk - off % c->c_bs);

		err = ns_punch_chunk(c, ni, off, off + n, blk);
		off += n;
	}
	free(blk);
	return err;
}

/* Mode 0: grow the size to @end (no preallocation: see cairn.h). */
static int ns_falloc_extend(struct cairn *c, struct ns_inode *ni, uint64_t end)
{
	struct vol_txn t;
	int err;

	err = ns_txn_begin(c, INODE_WRITE_BLOCKS, 0, &t);
	if (err)
		return err;
	ns_wlock(ni);
	err = ns_check_reg(ni);
	if (!err && end > ni->ni_rec.ir_size) {
		ni->ni_rec.ir_size = end;
		ns_touch_data(ni);
		err = ns_iwrite(&t, ni);
	}
	ns_unlock(ni);
	vol_txn_end(&t);
	return err;
}

int cairn_fallocate(struct cairn *c, uint64_t ino, unsigned mode, uint64_t off, uint64_t len)
{
	struct ns_inode *ni;
	int err;

	if (mode & ~(CAIRN_FALLOC_KEEP_SIZE | CAIRN_FALLOC_PUNCH_HOLE))
		return -EOPNOTSUPP;
	if (mode == CAIRN_FALLOC_PUNCH_HOLE)
		return -EOPNOTSUPP; /* PUNCH_HOLE needs KEEP_SIZE, as Linux */
	if (len == 0 || (int64_t)off < 0 || (int64_t)len < 0)
		return -EINVAL;
	if (off + len > ns_max_size(c))
		return -EFBIG;
	err = ns_iget(c, ino, &ni);
	if (err)
		return err;
	cmutex_lock(&ni->ni_io);
	ns_rlock(ni);
	err = ns_check_reg(ni);
	ns_unlock(ni);
	if (err == -EINVAL)
		err = -ENODEV;
	if (!err && mode == 0)
		err = ns_falloc_extend(c, ni, off + len);
	else if (!err && (mode & CAIRN_FALLOC_PUNCH_HOLE))
		err = ns_punch_hole(c, ni, off, len);
	cmutex_unlock(&ni->ni_io);
	ns_iput(c, ni);
	return err;
}

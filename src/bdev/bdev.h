/*
 * bdev.h - the block device layer: cairn's only door to storage.
 *
 * A bdev is an array of fixed-size blocks with three operations: read,
 * write and flush. A write is volatile until a later flush returns 0:
 * flush is the barrier the log's commit order is built on. Backends:
 *
 *   file  - an image file or a block device (pread/pwrite, fdatasync);
 *   ram   - memory only, for tests and benchmarks;
 *   emu   - the emulated device for crash and fault tests: it records
 *           every write and flush, can cut power after the Nth write
 *           (then drops, keeps, reorders or tears the unflushed writes by
 *           seeded choice), and returns -EIO on chosen operations;
 *           with its history on it can build the image of any crash
 *           point of a run after the run (bdev_emu_crash_at).
 *
 * The interface is the seam where a segment store on another engine
 * (an object store) can later replace the image file: the log only ever
 * writes whole runs of blocks and flushes.
 *
 * All functions return 0 or a negative errno. A bdev may be used from
 * many threads at once; each backend documents what protects its state.
 */
#ifndef CAIRN_BDEV_H
#define CAIRN_BDEV_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

struct bdev;

/* ---- common interface ----------------------------------------------- */

/* Read @count blocks starting at @blk into @buf. -EINVAL past the end. */
int bdev_read(struct bdev *d, uint64_t blk, uint32_t count, void *buf);
/* Write @count blocks from @buf at @blk; volatile until bdev_flush(). */
int bdev_write(struct bdev *d, uint64_t blk, uint32_t count, const void *buf);
/*
 * bdev_write of the concatenation of @iov[0..@n) (each a whole number of
 * blocks) at @blk: one write, gathered without a copy where the backend
 * can (a file: pwritev). -EINVAL for a partial block or past the end.
 */
int bdev_writev(struct bdev *d, uint64_t blk, const struct iovec *iov, unsigned n);
/*
 * Make every write that returned before this call durable. Also reports
 * the error of an early flush (bdev_start_flush) that failed since the
 * last bdev_flush: the medium may have lost a write of before it, which
 * a flush of its own might no longer see (a file's error is told to one
 * fdatasync only).
 */
int bdev_flush(struct bdev *d);
/*
 * A hint: start a flush now, in the background, so that a later
 * bdev_flush has less left to wait for: the medium works on what was
 * written so far while the caller goes on writing. Durability is
 * unchanged: only bdev_flush gives it, and it waits for an early flush
 * still running. Asked while one runs, one more runs after it. Only a
 * backend whose flush waits for a medium (a file) does it; the emulated
 * device only after bdev_emu_early_flush, the others never.
 */
void bdev_start_flush(struct bdev *d);
/* Early flushes bdev_start_flush ran (a statistic). */
uint64_t bdev_early_flushes(struct bdev *d);
/*
 * A hint: start writing @count blocks at @blk, already written, out to
 * the medium now, without waiting, so that a later bdev_flush has less
 * left to wait for. Durability is unchanged: only bdev_flush gives it.
 * A backend without a cache of its own ignores it.
 */
void bdev_start_writeback(struct bdev *d, uint64_t blk, uint32_t count);
uint32_t bdev_block_size(const struct bdev *d);
uint64_t bdev_nblocks(const struct bdev *d);
/* Close and free; does not flush. NULL is accepted. */
void bdev_close(struct bdev *d);
/* Copy the device's current content to a new file at @path (a sparse
 * copy: all-zero blocks are skipped). For saving a failing test case. */
int bdev_save(struct bdev *d, const char *path);

/* ---- file backend --------------------------------------------------- */

enum bdev_open_flags {
	BDEV_RDONLY = 1 << 0,
	BDEV_CREATE = 1 << 1,	   /* create a sparse image of @nblocks if missing */
	BDEV_EXCL_LOCK = 1 << 2,   /* take an exclusive flock; -EBUSY if held */
	BDEV_SHARED_LOCK = 1 << 3, /* take a shared flock; -EBUSY if an exclusive one is held */
};

/*
 * Open an image file or block device at @path with @block_size blocks.
 * With BDEV_CREATE a missing file is created with @nblocks blocks;
 * otherwise @nblocks is ignored and the size is the file's (or the block
 * device's) size rounded down to whole blocks.
 * Errors: -ENOENT, -EACCES, -EBUSY (locked elsewhere), -EINVAL (size
 * not a whole block, zero size, bad block size), other -errno from open.
 * "Size not a whole block" means smaller than one block: a larger size is
 * rounded down. A block size is a power of two from 512 to 65536.
 * BDEV_RDONLY with BDEV_CREATE, both locks, or an unknown flag, is -EINVAL.
 */
int bdev_open_file(const char *path, uint32_t block_size, uint64_t nblocks, unsigned flags,
		   struct bdev **out);

/*
 * Drop the flock taken at open (BDEV_EXCL_LOCK or BDEV_SHARED_LOCK): a
 * reader that needed the image quiet only while it opened lets writers
 * in. A no-op for the other backends and for an open without a lock.
 */
int bdev_unlock(struct bdev *d);

/*
 * Pins: advisory locks across processes on a key (any 64-bit value; two
 * keys may share a lock, rarely), held by this open until dropped or
 * closed. Another open of the same file holding a conflicting pin makes
 * the call fail with -EBUSY at once, but for BDEV_PIN_SHARED_WAIT, which
 * waits until no other open holds the key exclusive (the holder must not
 * wait for the waiter). An exclusive pin needs an open for writing
 * (-EBADF otherwise). The volume pins a snapshot's name shared while it
 * reads the snapshot and exclusive while it deletes one, and a second key
 * of the name the same way while it reads it and while it re-roots it
 * (snap.c). Backends other than files serve one open: a no-op.
 */
enum bdev_pin_mode {
	BDEV_PIN_SHARED,
	BDEV_PIN_EXCL,
	BDEV_PIN_DROP,
	BDEV_PIN_SHARED_WAIT,
};

int bdev_pin(struct bdev *d, uint64_t key, enum bdev_pin_mode how);
/* -EBUSY if another open holds a pin of any key (mkfs over a volume that a
 * snapshot reader still uses); 0 otherwise. */
int bdev_pin_any(struct bdev *d);
/* -EBUSY if another open holds a pin of @key, in either mode; 0 otherwise.
 * Takes nothing: the answer may change at once. */
int bdev_pin_held(struct bdev *d, uint64_t key);

/*
 * Which file an open is of, whatever its path is now: st_dev and st_ino
 * (fstat of the open file). Two opens with equal identities are of one
 * file. -ENOTSUP for the backends that are not files.
 */
struct bdev_identity {
	uint64_t bi_dev;
	uint64_t bi_ino;
};

int bdev_identity(struct bdev *d, struct bdev_identity *id);

/* ---- RAM backend ---------------------------------------------------- */

/* Block size and count as for bdev_open_file; -ENOMEM if it does not fit. */
int bdev_open_ram(uint32_t block_size, uint64_t nblocks, struct bdev **out);

/* ---- emulated device ------------------------------------------------ */

/* What happens to unflushed writes at a power cut (bdev_emu_crash). */
enum bdev_emu_crash_mode {
	BDEV_EMU_KEEP_ALL = 0,	/* every accepted write survives, in order */
	BDEV_EMU_DROP_ALL = 1,	/* only flushed writes survive */
	BDEV_EMU_DROP_SOME = 2, /* each unflushed write kept by seeded coin */
	BDEV_EMU_REORDER = 3,	/* DROP_SOME, and kept writes land in a seeded order */
};

struct bdev_emu_crash {
	enum bdev_emu_crash_mode ec_mode;
	bool ec_tear;	  /* one surviving unflushed write is torn */
	uint64_t ec_seed; /* drives every choice above */
};

enum bdev_emu_op { BDEV_EMU_READ, BDEV_EMU_WRITE, BDEV_EMU_FLUSH };

/* One recorded operation (reads are counted, not recorded). */
struct bdev_emu_record {
	enum bdev_emu_op er_op;
	uint64_t er_seq;   /* 1-based index among writes (flush: writes before it) */
	uint64_t er_blk;   /* writes: first block */
	uint32_t er_count; /* writes: number of blocks */
};

struct bdev_emu_stats {
	uint64_t es_reads;     /* read calls accepted */
	uint64_t es_writes;    /* write calls accepted */
	uint64_t es_flushes;   /* flush calls accepted */
	uint64_t es_unflushed; /* writes accepted since the last flush */
	bool es_cut;	       /* power is off */
};

/*
 * Interleaving points (util/syncpoint.h), passed before the device lock
 * is taken, so a test may stop a thread inside device I/O:
 * "bdev.emu.read", "bdev.emu.write", "bdev.emu.flush".
 */

/* A new emulated device of @nblocks zeroed blocks, in memory (block size
 * and count as for bdev_open_file). */
int bdev_emu_open(uint32_t block_size, uint64_t nblocks, struct bdev **out);
/* A new emulated device whose durable content is a copy of @src's: what
 * bdev_read() of @src returns now (of an emulated @src, its current
 * content, unflushed writes included). */
int bdev_emu_open_copy(struct bdev *src, struct bdev **out);
/*
 * Cut power when write number @nth (1-based, counted from device open)
 * is issued: writes 1..nth-1 are accepted, write nth and every later
 * read, write and flush fail with -EIO. 0 cancels.
 * Writes are numbered as es_writes and er_seq count them: a write failed
 * by a fault rule takes no number. If write @nth is already past, the
 * next write cuts. Cancelling does not turn the power back on.
 */
void bdev_emu_cut_after(struct bdev *d, uint64_t nth);
/* Cut power now. */
void bdev_emu_cut_now(struct bdev *d);
/*
 * Fail the @nth (1-based) @op from now on with @err, then @repeat - 1
 * more of the same op after it (repeat 0 means forever).
 * Fault rules apply only while the power is on. An operation that matches
 * several rules uses up one failure of each and fails with the error of
 * the oldest. @err may be given as -EIO or EIO; 0 means -EIO; @nth 0 is 1.
 */
void bdev_emu_fail_op(struct bdev *d, enum bdev_emu_op op, uint64_t nth, uint32_t repeat, int err);
/*
 * Fail every @op that touches block @blk with @err, @repeat times (0:
 * forever). A flush touches no block.
 */
void bdev_emu_fail_block(struct bdev *d, enum bdev_emu_op op, uint64_t blk, uint32_t repeat,
			 int err);
/* Remove every fault rule. */
void bdev_emu_clear_faults(struct bdev *d);
/*
 * Run bdev_start_flush's early flushes, as a file does, on a thread of
 * the device's own (call before the device is shared; -ENOMEM). Their
 * timing is the scheduler's, so a run with them is not replayed by its
 * seed and cut point: for tests of early flushes only.
 */
int bdev_emu_early_flush(struct bdev *d);
void bdev_emu_stats(struct bdev *d, struct bdev_emu_stats *st);
/* Copy out recorded operation @i (0-based); -ENOENT past the end. */
int bdev_emu_record(struct bdev *d, uint64_t i, struct bdev_emu_record *rec);
/*
 * The image after the power cut, as the next boot would see it: the
 * durable content plus the unflushed writes chosen by @how. Returns a
 * new emulated device (power on, no faults) that holds it; @d is left
 * unchanged, so the same cut can be replayed with other choices.
 */
int bdev_emu_crash(struct bdev *d, const struct bdev_emu_crash *how, struct bdev **out);

/*
 * History: every crash point of one run, without replaying it.
 *
 * From this call on, @d remembers its durable content of now (the base)
 * and every accepted write, data included, and every flush, in the order
 * the device accepted them. Writes still unflushed now stay unflushed in
 * the history until the next flush but take no number: history writes
 * are numbered 1, 2, ... from this call (es_writes counts from open, so
 * the history's write n is es_writes(at this call) + n). Calling it again
 * starts a new history. The history holds a copy of every byte written
 * and lives until bdev_close: it is for small test devices and short
 * workloads (a few MiB of device, some tens of MiB written).
 */
void bdev_emu_keep_history(struct bdev *d);
/* Writes and flushes in the history so far (0 if history is off). */
uint64_t bdev_emu_history_writes(struct bdev *d);
uint64_t bdev_emu_history_flushes(struct bdev *d);
/*
 * The image the next boot would see had power been cut when history
 * write @nth was issued (1-based; bdev_emu_history_writes() + 1 means
 * after the last write): the base, every write made durable by the last
 * flush before write @nth, and the writes issued after that flush and
 * before @nth treated as unflushed under @how exactly as bdev_emu_crash
 * treats them (same code, same seeded draws). So on a replay of the same
 * workload from open with history on from the start, bdev_emu_cut_after
 * (@nth) then bdev_emu_crash(@how) gives the same image. Returns a new
 * emulated device (power on, no faults, no history); @d is unchanged.
 * -EINVAL if history is off, @nth is 0 or past history writes + 1, or
 * @how is bad; -ENOMEM.
 */
int bdev_emu_crash_at(struct bdev *d, uint64_t nth, const struct bdev_emu_crash *how,
		      struct bdev **out);
/*
 * The image had power been cut while history flush @nth (1-based) was in
 * progress, so that it never completed: what flush @nth - 1 made durable,
 * and the writes issued after it (and before flush @nth) treated as
 * unflushed under @how. A cut at a write never sees the writes just
 * before a flush unflushed; this one does. As with bdev_emu_fail_op of
 * that flush and a crash right after it. -EINVAL if history is off or
 * @nth is 0 or past bdev_emu_history_flushes(); -ENOMEM.
 */
int bdev_emu_crash_at_flush(struct bdev *d, uint64_t nth, const struct bdev_emu_crash *how,
			    struct bdev **out);

#endif /* CAIRN_BDEV_H */

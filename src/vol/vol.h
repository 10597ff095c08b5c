/*
 * vol.h - the volume: a transactional store of owners' blocks on a
 * segment log, the layer the namespace is built on.
 *
 * An owner is a 64-bit id (an inode number, later) holding a sparse array
 * of blocks; a block never written reads as zeros. Changes are made in
 * transactions (vol_txn_begin .. vol_txn_end) that belong to one delta
 * and so reach the disk together or not at all. vol_sync makes every
 * ended transaction durable. After a crash, vol_open finds the state of
 * the newest committed delta that reached the disk intact.
 *
 * On disk each owner's blocks are found through its block map (a radix
 * tree of map blocks) whose root lives in the owner table, itself a file
 * whose root lives in the super root. The commit (the segment
 * constructor) lays out a delta's data blocks, then the map blocks it
 * changed, bottom up, then the owner table, then the super root.
 *
 * Owners 0..VOL_FIRST_OWNER-1 are reserved for metadata files.
 */
#ifndef CAIRN_VOL_H
#define CAIRN_VOL_H

#include <stdint.h>

#include "bdev/bdev.h"
#include "delta/delta.h"
#include "log/log.h"

/*
 * Owners 0..VOL_CLIENT_META-1 are the volume's own metadata files;
 * VOL_CLIENT_META..VOL_FIRST_OWNER-1 are the client's (the namespace's
 * inode file, ...), and from VOL_FIRST_OWNER on its ordinary owners:
 * both are written and read alike.
 */
#define VOL_CLIENT_META 8
#define VOL_FIRST_OWNER 16
#define VOL_MAX_OWNER	((1ULL << 42) - 1)
#define VOL_INDEX_END	(VOL_MAX_INDEX + 1) /* past every index */
#define VOL_MAX_INDEX	((1ULL << 36) - 1)  /* 2^36 blocks of 4 KiB: 256 TiB per owner */

struct vol;

struct vol_mkfs_opts {
	struct log_format_opts vmo_log;
};

/*
 * Create an empty volume on @d (log_format, then delta 1: an empty owner
 * table and its super root, and a checkpoint). Always formats: refusing
 * to overwrite a volume (log_probe) is the tool's decision. Segments must
 * be a power of two blocks (a segment is a zone of tracked reads):
 * -EINVAL otherwise. @d stays the caller's.
 */
int vol_mkfs(struct bdev *d, const struct vol_mkfs_opts *o);

/*
 * Where snapshot @name's state is, as its record says: its super root and
 * delta, and the super root whose translation it reads through (0: its
 * own). 0 or -errno.
 */
typedef int vol_snap_find_fn(void *arg, const char *name, uint64_t *sroot, uint64_t *delta,
			     uint64_t *xlate);

struct vol_open_opts {
	uint32_t voo_cache_blocks;     /* buffer cache size; 0: 4096 */
	uint32_t voo_max_dirty;	       /* see delta_config; 0: what the cache can
					  commit (cache / (2 * worst case per block)) */
	uint32_t voo_max_age_ms;       /* see delta_config; 0: default */
	uint32_t voo_checkpoint_every; /* write a checkpoint slot every N commits; 0: 16 */
	bool voo_read_only;	       /* the device is read-only (fsck): recover and
					  read, write nothing, free no segment */
	/* The segment cleaner (clean.c): it starts when fewer than
	 * voo_clean_low segments are free to writers (the kept reserve is
	 * not) and goes on, commit after commit (with or without writes),
	 * until voo_clean_high are, or as many as the live blocks leave.
	 * 0: of the N segments writers may use, N / 32 + 4 and N / 16 + 8,
	 * at most N / 4 and N / 2. */
	uint32_t voo_clean_low;
	uint32_t voo_clean_high;
	uint8_t voo_clean_policy; /* VOL_CLEAN_COST_BENEFIT (0) or VOL_CLEAN_GREEDY */
	/* Open the snapshot of this name instead of the newest state: read
	 * only (voo_read_only is implied); -ENOENT if there is none, -EBUSY
	 * while it is being deleted. The name stays pinned (bdev_pin) until
	 * vol_close, so that no other open deletes it meanwhile (-EBUSY
	 * there). Without voo_snapshot_find the open reads the volume as
	 * usual, so nothing may write it meanwhile (hold a lock on @d until
	 * vol_open returns: it then drops it, bdev_unlock, for a writer may
	 * come once the snapshot is pinned). */
	const char *voo_snapshot;
	/* With voo_snapshot, for a volume a writer has open (in another
	 * process): its live state changes under any read, so none is read.
	 * Once the name is pinned, the snapshot's record is asked of
	 * voo_snapshot_find (the writer's answer), and only what its super
	 * roots reach is read. */
	vol_snap_find_fn *voo_snapshot_find;
	void *voo_snapshot_arg;
	/* Open the state of this recent checkpoint (a delta number, as
	 * vol_checkpoints lists) instead of the newest: read only, like a
	 * snapshot, but nothing pins it, so nothing may write the volume
	 * while it is open (hold a shared lock on @d until vol_close).
	 * -ENOENT if it is no longer readable. Not with voo_snapshot. */
	uint64_t voo_checkpoint;
	/* Keep the segments a commit empties for this long before they are
	 * reused, so that the checkpoints of that time stay readable, unless
	 * the space is needed (the cleaner's low watermark, or a reservation
	 * falling short). 0: reused as soon as the log may. */
	uint32_t voo_protect_s;
};

#define VOL_CLEAN_COST_BENEFIT 0 /* (1 - u) * age / (1 + u); greedy when almost full */
#define VOL_CLEAN_GREEDY       1 /* (1 - u) always: the least live first */

/*
 * Open the volume on @d (taken over: vol_close closes it), recovering
 * the newest valid state. -EUCLEAN if the image is not a valid cairn
 * volume or no valid state exists. On error @d stays the caller's.
 */
int vol_open(struct bdev *d, const struct vol_open_opts *o, struct vol **out);
/* Commit, write a checkpoint, and close. Returns the commit's error. */
int vol_close(struct vol *v);

struct vol_txn {
	struct vol *vt_vol;
	struct delta_op vt_op; /* membership of the delta */
	uint64_t vt_left;      /* writes and punches its reservation still covers */
	uint64_t vt_booked;    /* blocks counted in flight (the throttle's) */
	uint64_t vt_refund;    /* given back per change whose map path is booked already */
	uint64_t vt_dat;       /* its translation part, booked to the delta at the first change */
	bool vt_dat_booked;
	uint64_t vt_run_owner; /* the run of vol_txn_begin_run: its owner, */
	uint64_t vt_run_first; /* first block, */
	uint64_t vt_run_end;   /* the block past it, */
	uint64_t vt_run_left;  /* how many changes it still covers, */
	uint64_t vt_run_nodes; /* and its level-1 map blocks changed (bits) */
};

/* The most blocks one transaction may write or punch: what the cache holds
 * with their worst case (0: none fits; vol_txn_begin refuses more). */
uint64_t vol_txn_max(struct vol *v);

/*
 * Begin a transaction that will write or punch at most @nblocks blocks
 * (the worst case of the map blocks and metadata they touch is added
 * here, and reserved before joining the open delta). VOL_TXN_FREEING
 * marks a transaction that frees space: it may use the kept reserve, so
 * deletion works on a full volume. May first wait for a commit when the
 * cache holds too many dirty blocks. Transactions do not nest (one per
 * thread). -ENOSPC; -EINVAL for unknown flags or more blocks than the
 * cache can hold for one commit; a failed commit's error.
 */
#define VOL_TXN_FREEING 0x1
int vol_txn_begin(struct vol *v, uint64_t nblocks, unsigned flags, struct vol_txn *t);
/*
 * vol_txn_begin for a transaction that changes at most @count blocks of
 * @owner in [@first, @first + @count) and @nblocks others, as a write or
 * a punch of a file's range does. The run's blocks share their map
 * paths: it reserves one path per level-1 map block the run spans, not
 * one per block, so a large write needs far less free space to begin
 * (vol_txn_worst_run). Changes past the run count against @nblocks.
 */
int vol_txn_begin_run(struct vol *v, uint64_t owner, uint64_t first, uint64_t count,
		      uint64_t nblocks, unsigned flags, struct vol_txn *t);
void vol_txn_end(struct vol_txn *t);

/*
 * Write a whole block. -EINVAL for one of the volume's own owners, an index past
 * VOL_MAX_INDEX, or a transaction past the @nblocks it reserved.
 */
int vol_write(struct vol_txn *t, uint64_t owner, uint64_t index, const void *data);
/*
 * Write @len bytes at byte @off of a block (@off + @len at most a
 * block), keeping the rest of its content: read (if not cached), then
 * changed inside one modification, so concurrent partial writes of one
 * block never lose each other's bytes. Counts as one block of @t.
 * Errors as vol_write, -EINVAL for a range past the block, and a read's.
 */
int vol_write_range(struct vol_txn *t, uint64_t owner, uint64_t index, uint32_t off, uint32_t len,
		    const void *data);
/*
 * Forget a block: it reads as zeros again and its space is no longer
 * live (its map entry is cleared when the delta commits). Errors as
 * vol_write. A write and a punch of one block in one delta: the later
 * one wins.
 */
int vol_punch(struct vol_txn *t, uint64_t owner, uint64_t index);
/*
 * Forget every block of @owner at index @from_index or past it: they
 * read as zeros from now on and their space is no longer live (the
 * commit prunes the owner's map; from_index 0 empties the owner, its
 * map root goes away). Counts as @cost blocks of @t: one for the map
 * path and owner record the commit rewrites, and one for every few
 * dozen blocks it frees (the commit records each one's death in the
 * translation: a block's reservation covers that many). @cost comes from
 * vol_truncate_plan, and nothing may be written at or past @from_index
 * between the plan and the end of @t. Works on a full volume in a
 * VOL_TXN_FREEING transaction. Writes in the same delta after it win,
 * as after a punch. A @from_index past VOL_MAX_INDEX truncates nothing.
 * Errors as vol_write.
 */
int vol_truncate(struct vol_txn *t, uint64_t owner, uint64_t from_index, uint64_t cost);
/*
 * The cost vol_truncate_plan may give for a range of @n indexes with
 * nothing past it, without walking: every index mapped, and every map
 * block above them (0 for an empty range).
 */
uint64_t vol_truncate_cost(const struct vol *v, uint64_t n);
/*
 * Plan a truncate of @owner's blocks in [@lo, @hi) that fits in
 * @budget blocks of a transaction: *from, the lowest index at or above
 * @lo from which vol_truncate costs no more than that (at least one
 * index's blocks, to make progress), and *cost, the blocks of a transaction that
 * vol_truncate(*from) counts (0: there is nothing to free, no need to
 * truncate). Blocks at or past @hi are not counted: pass
 * VOL_INDEX_END unless a truncate from @hi is already made (a loop of
 * these from the top down, each in its own transaction, frees a large
 * range). The cost is in the blocks mapped or dirty, not in the range,
 * so holes cost nothing. The count walks the owner's map: call it
 * outside a transaction, or inside one with no buffer held.
 */
int vol_truncate_plan(struct vol *v, uint64_t owner, uint64_t lo, uint64_t hi, uint64_t budget,
		      uint64_t *from, uint64_t *cost);
/*
 * Read a whole block (the newest content, committed or not), from any
 * thread, inside a transaction or not. A read racing with a write of the
 * same block may see part of each: the layer above serializes them.
 */
int vol_read(struct vol *v, uint64_t owner, uint64_t index, void *data);
/* vol_read of @len bytes at byte @off of the block. */
int vol_read_range(struct vol *v, uint64_t owner, uint64_t index, uint32_t off, uint32_t len,
		   void *data);
/* Make every ended transaction durable (group commit); the commit's error. */
int vol_sync(struct vol *v);

uint32_t vol_block_size(const struct vol *v);
/* The newest committed delta (for tests: the state recovery must find). */
uint32_t vol_committed_delta(struct vol *v);
/* The delta system's counters (commits, syncs): for benchmarks and tests. */
void vol_delta_stats(struct vol *v, struct delta_stats *st);
void vol_space(struct vol *v, struct log_space *sp);

/* Where the durable state's blocks are (usage.c). */
struct vol_usage_stats {
	uint64_t vus_live_blocks;   /* blocks the durable state names, super root included */
	uint64_t vus_live_segments; /* segments holding one of them, or a pinned one */
	uint64_t vus_released;	    /* segments given back to the log since the open */
	uint64_t vus_cleaned;	    /* victims the cleaner took since the open */
	uint64_t vus_moved;	    /* blocks it moved out of them, */
	uint64_t vus_raw_moved;	    /* of which only snapshots kept (raw moves) */
	uint64_t vus_reroots;	    /* re-roots of the snapshots after raw moves */
	uint64_t vus_clean_read;    /* blocks of the victims it read */
	uint32_t vus_clean_low;	    /* its watermarks, in free segments */
	uint32_t vus_clean_high;
	uint64_t vus_written;	       /* blocks the commits wrote since the open (moved
					  ones, map blocks and super roots included) */
	uint64_t vus_pinned_blocks;    /* blocks only snapshots keep (at least) */
	uint64_t vus_snap_segments;    /* segments the cleaner leaves to the snapshots */
	uint64_t vus_snap_dead_blocks; /* dead blocks in those: back once the snapshots go */
	uint64_t vus_dat_blocks;       /* translation blocks entries were ever used in */
	uint64_t vus_ckpt_blocks;      /* blocks of the checkpoint file (it grows and shrinks
					  by a block as the checkpoints go by) */
	uint32_t vus_open_walked;      /* 1: the open counted by a walk, the segment usage
					  file not current (0: read from it) */
};
void vol_usage(struct vol *v, struct vol_usage_stats *us);
/*
 * Blocks that can still be written (statfs): the segments' blocks less
 * the live and pinned ones (dead blocks in used segments come back
 * through the cleaner), the dead ones in segments a snapshot marked (the
 * cleaner leaves those: they come back with the snapshots), those
 * reserved by transactions in flight, the kept reserve,
 * and the room the cleaner works in (its low watermark of segments),
 * less a log header and summary per segment.
 */
uint64_t vol_free_blocks(struct vol *v);
/*
 * Keep room in the kept reserve for one VOL_TXN_FREEING transaction of
 * @nblocks (the client's costliest deletion), which nothing else (the
 * cleaner included) may take: so a deletion can always run on a full
 * volume. statfs's free space shrinks by it. A writable volume opens
 * keeping room for VOL_KEEP_FREEING_BLOCKS; the last call wins.
 */
#define VOL_KEEP_FREEING_BLOCKS 16
void vol_keep_for_freeing(struct vol *v, uint64_t nblocks);

/*
 * Snapshots (snap.c): a snapshot is a durable state (a delta's super
 * root) pinned by name in the snapshot table, so that nothing it names
 * is reclaimed until it is deleted. Creation costs the same whatever the
 * volume holds. Names: 1 to VOL_SNAP_NAME_MAX bytes, no '/', not "." or
 * "..".
 */
#define VOL_SNAP_NAME_MAX 95
struct vol_snap_info {
	char vsi_name[VOL_SNAP_NAME_MAX + 1];
	uint64_t vsi_delta;   /* the delta whose state it keeps */
	uint64_t vsi_sroot;   /* that delta's super root */
	uint64_t vsi_xlate;   /* the super root whose translation it reads through; 0: its own */
	int64_t vsi_ctime_ns; /* when it was taken (CLOCK_REALTIME) */
	uint32_t vsi_slot;    /* its record in the table */
};
/*
 * Make everything written before the call durable, and pin the durable
 * state as snapshot @name. -EEXIST, -EINVAL (a bad name), -ENAMETOOLONG,
 * -ENOSPC (the volume, or the table's VOL_SNAP_MAX records, is full),
 * -EROFS.
 */
int vol_snap_create(struct vol *v, const char *name);
/* Or pin recent checkpoint @delta (vol_checkpoints) as @name, with
 * nothing synced; -ENOENT if it is not readable. @delta 0: the above. */
int vol_snap_create_at(struct vol *v, const char *name, uint64_t delta);
/* Delete snapshot @name; what only it kept is reclaimed. Works on a full
 * volume. -ENOENT, -EROFS. */
int vol_snap_delete(struct vol *v, const char *name);
/* The snapshots, oldest slot first, in a malloc'ed array (NULL if none). */
int vol_snap_list(struct vol *v, struct vol_snap_info **out, size_t *n);

/*
 * Recent checkpoints (snap.c). Every commit is a checkpoint: its super
 * root names its whole state and the one before it. A checkpoint's
 * state stays readable until a segment holding one of its blocks is
 * reused; the super root says from which delta on that has not happened
 * (voo_protect_s delays it).
 */
struct vol_checkpoint {
	uint64_t vcp_delta;   /* the delta it ends */
	uint64_t vcp_sroot;   /* its super root */
	uint64_t vcp_time_ns; /* when it was committed (CLOCK_REALTIME); 0: unknown */
};
/*
 * The readable checkpoints, newest first, at most @max of them, in a
 * malloc'ed array (NULL if none). Beside the commit, a super root the
 * log reuses during the walk is most likely no valid super root of an
 * older delta and ends the list there; a checkpoint read as listed may
 * still have gone by the time it is opened (a snapshot pins one:
 * vol_snap_create_at).
 */
int vol_checkpoints(struct vol *v, size_t max, struct vol_checkpoint **out, size_t *n);

/* check.c: the volume half of fsck (see there). */
struct vol_check_stats {
	uint64_t cs_blocks; /* blocks of the durable state: its trees' and the super root */
};
/*
 * Check the durable state (no transaction in flight, after vol_sync):
 * every block named once and inside a segment, every owner record
 * sound. Each problem goes to @report (may be NULL) as one line.
 * Returns the number of problems, or a read's negative errno.
 */
int vol_check(struct vol *v, void (*report)(void *arg, const char *msg), void *arg,
	      struct vol_check_stats *st);

#endif /* CAIRN_VOL_H */

/*
 * vol_model.h - the reference model the volume's crash and corruption
 * tests check a recovered volume against.
 *
 * A workload's blocks hold content named by a 64-bit tag (vm_fill): every
 * 8-byte word is a mix of the tag and the word's position, so a block
 * says exactly which write (thread, transaction, owner, index) it came
 * from, and a torn or misplaced block never looks like another one. Tag
 * 0 is a block of zeros (never written, or punched).
 *
 * The model keeps, per owner, the tag of every block (struct vm_state).
 * A test records the transactions each thread ran, with the delta each
 * joined (struct vm_txn), and builds the state recovery must find at
 * delta R by applying, per thread in order, every transaction whose
 * delta is <= R (vm_state_apply). vm_check() then reads every block of
 * every owner back from the volume.
 */
#ifndef CAIRN_TEST_VOL_MODEL_H
#define CAIRN_TEST_VOL_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vol/vol.h"

#define VM_MAX_OWNERS 16u
#define VM_MAX_BLOCKS 64u
#define VM_TXN_OPS    4u /* the most operations in one transaction */

/* One operation of a transaction. */
struct vm_op {
	bool vo_punch;
	bool vo_trunc;	   /* vol_truncate from vo_index (vo_punch false) */
	uint32_t vo_owner; /* index into the model's owners */
	uint32_t vo_index; /* block in that owner */
	uint64_t vo_tag;   /* content written (0 for a punch) */
};

/* One ended transaction and the delta it joined. */
struct vm_txn {
	uint32_t vx_delta;
	uint32_t vx_nops;
	struct vm_op vx_ops[VM_TXN_OPS];
};

/* What every block of every owner holds. */
struct vm_state {
	uint32_t vs_nowners;
	uint32_t vs_nblocks; /* blocks per owner that the workload uses */
	uint64_t vs_stride;  /* model block b is the owner's block b * vs_stride (default 1) */
	uint64_t vs_owner_id[VM_MAX_OWNERS];	       /* volume owner ids */
	uint64_t vs_tag[VM_MAX_OWNERS][VM_MAX_BLOCKS]; /* 0: zeros */
};

/* Fill a block of @bs bytes with the content named by @tag (0: zeros). */
void vm_fill(void *buf, size_t bs, uint64_t tag);
/* The tag of a write: thread, transaction number, owner, index, all small. */
uint64_t vm_tag(uint32_t thread, uint32_t txn, uint32_t owner, uint32_t index);

/* An empty state of @nowners owners (ids @first_id, @first_id + 1, ...). */
void vm_state_init(struct vm_state *s, uint32_t nowners, uint32_t nblocks, uint64_t first_id);
/* Apply the @n transactions of @txns (one thread, in order) whose delta is <= @upto. */
void vm_state_apply(struct vm_state *s, const struct vm_txn *txns, size_t n, uint32_t upto);
/* Apply one transaction. */
void vm_txn_apply(struct vm_state *s, const struct vm_txn *t);

/* The outcome of reading a volume back against a state. */
struct vm_report {
	uint64_t vr_checked;	 /* blocks read */
	uint64_t vr_wrong;	 /* read 0 but data differs from the model */
	uint64_t vr_errors;	 /* vol_read returned an error */
	int vr_first_err;	 /* the first such error */
	uint32_t vr_first_owner; /* the first problem's owner (model index) */
	uint32_t vr_first_block; /* and block */
	char vr_first[160];	 /* the first problem, in words */
};

/*
 * Describe in @buf which of the @n transactions @txns changed block
 * @index of model owner @owner, and in which delta ("x12@d5 x14@d6 ...").
 */
void vm_block_history(const struct vm_txn *txns, size_t n, uint32_t owner, uint32_t index,
		      char *buf, size_t len);

/*
 * Read every block 0..vs_nblocks (one past the workload's range too: it
 * must read zeros) of every owner of @s from @v and compare. Returns
 * true if every read returned 0 with the model's data.
 */
bool vm_check(struct vol *v, const struct vm_state *s, struct vm_report *r);

#endif /* CAIRN_TEST_VOL_MODEL_H */

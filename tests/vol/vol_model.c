/*
 * vol_model.c - the reference model of the volume tests (vol_model.h).
 *
 * Content: word 0 of a block is its tag, word 1 the tag's complement,
 * and every later word a mix of the tag and the word's index, so a block
 * read back names the write it came from (vm_tag_str) and no prefix or
 * suffix of one write's block equals another's.
 */
#include "vol_model.h"

#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Tag layout: thread 8 bits | txn 24 | owner 8 | index 16 | 0xa5. */
uint64_t vm_tag(uint32_t thread, uint32_t txn, uint32_t owner, uint32_t index)
{
	return (uint64_t)(thread & 0xff) << 56 | (uint64_t)(txn & 0xffffff) << 32 |
	       (uint64_t)(owner & 0xff) << 24 | (uint64_t)(index & 0xffff) << 8 | 0xa5;
}

static void vm_tag_str(uint64_t tag, char *buf, size_t len)
{
	if (!tag)
		snprintf(buf, len, "zeros");
	else
		snprintf(buf, len, "t%u/x%u/o%u/i%u", (unsigned)(tag >> 56),
			 (unsigned)(tag >> 32 & 0xffffff), (unsigned)(tag >> 24 & 0xff),
			 (unsigned)(tag >> 8 & 0xffff));
}

static uint64_t vm_mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

void vm_fill(void *buf, size_t bs, uint64_t tag)
{
	uint64_t *w = buf;

	if (!tag) {
		memset(buf, 0, bs);
		return;
	}
	w[0] = tag;
	w[1] = ~tag;
	for (size_t i = 2; i < bs / sizeof(*w); i++)
		w[i] = vm_mix(tag ^ (i << 40));
}

void vm_state_init(struct vm_state *s, uint32_t nowners, uint32_t nblocks, uint64_t first_id)
{
	assert(nowners <= VM_MAX_OWNERS && nblocks < VM_MAX_BLOCKS);
	memset(s, 0, sizeof(*s));
	s->vs_nowners = nowners;
	s->vs_nblocks = nblocks;
	s->vs_stride = 1;
	for (uint32_t i = 0; i < nowners; i++)
		s->vs_owner_id[i] = first_id + i;
}

void vm_txn_apply(struct vm_state *s, const struct vm_txn *t)
{
	for (uint32_t i = 0; i < t->vx_nops; i++) {
		const struct vm_op *op = &t->vx_ops[i];

		assert(op->vo_owner < s->vs_nowners && op->vo_index < s->vs_nblocks);
		if (op->vo_trunc) {
			for (uint32_t b = op->vo_index; b < s->vs_nblocks; b++)
				s->vs_tag[op->vo_owner][b] = 0;
			continue;
		}
		s->vs_tag[op->vo_owner][op->vo_index] = op->vo_punch ? 0 : op->vo_tag;
	}
}

void vm_state_apply(struct vm_state *s, const struct vm_txn *txns, size_t n, uint32_t upto)
{
	for (size_t i = 0; i < n; i++) {
		if (txns[i].vx_delta <= upto)
			vm_txn_apply(s, &txns[i]);
	}
}

/* Note the first problem of a check in @r. */
static void vm_report_first(struct vm_report *r, const struct vm_state *s, uint32_t o, uint32_t b,
			    int err, uint64_t want, const uint64_t *got)
{
	char w[48], g[48];

	if (r->vr_first[0])
		return;
	r->vr_first_owner = o;
	r->vr_first_block = b;
	vm_tag_str(want, w, sizeof(w));
	if (err) {
		snprintf(r->vr_first, sizeof(r->vr_first),
			 "owner %" PRIu64 " block %u: read error %d, want %s", s->vs_owner_id[o], b,
			 err, w);
		return;
	}
	if (got[0] && got[1] == ~got[0])
		vm_tag_str(got[0], g, sizeof(g)); /* names a write, if not whole */
	else
		snprintf(g, sizeof(g), "%s", got[0] ? "other data" : "zeros at word 0");
	snprintf(r->vr_first, sizeof(r->vr_first), "owner %" PRIu64 " block %u: holds %s, want %s",
		 s->vs_owner_id[o], b, g, w);
}

bool vm_check(struct vol *v, const struct vm_state *s, struct vm_report *r)
{
	size_t bs = vol_block_size(v);
	uint64_t *got = malloc(bs), *want = malloc(bs);

	assert(got && want);
	memset(r, 0, sizeof(*r));
	for (uint32_t o = 0; o < s->vs_nowners; o++) {
		for (uint32_t b = 0; b <= s->vs_nblocks; b++) {
			uint64_t tag = b < s->vs_nblocks ? s->vs_tag[o][b] : 0;
			int err = vol_read(v, s->vs_owner_id[o], b * s->vs_stride, got);

			r->vr_checked++;
			vm_fill(want, bs, tag);
			if (!err && !memcmp(got, want, bs))
				continue;
			if (err) {
				r->vr_errors++;
				r->vr_first_err = r->vr_first_err ? r->vr_first_err : err;
			} else {
				r->vr_wrong++;
			}
			vm_report_first(r, s, o, b, err, tag, got);
		}
	}
	free(got);
	free(want);
	return !r->vr_wrong && !r->vr_errors;
}

void vm_block_history(const struct vm_txn *txns, size_t n, uint32_t owner, uint32_t index,
		      char *buf, size_t len)
{
	size_t used = 0;

	buf[0] = 0;
	for (size_t i = 0; i < n && used + 1 < len; i++) {
		for (uint32_t k = 0; k < txns[i].vx_nops; k++) {
			const struct vm_op *op = &txns[i].vx_ops[k];
			int w;

			if (op->vo_owner != owner ||
			    (op->vo_trunc ? op->vo_index > index : op->vo_index != index))
				continue;
			w = snprintf(buf + used, len - used, "%sx%zu%s@d%u", used ? " " : "", i,
				     op->vo_trunc   ? "(trunc)"
				     : op->vo_punch ? "(punch)"
						    : "",
				     txns[i].vx_delta);
			used += w > 0 ? (size_t)w : 0;
			break;
		}
	}
}

/*
 * log_fixture.h - volumes on the emulated device for the log tests.
 *
 * A test volume is an emulated device of LT_BS-byte blocks cut into
 * small segments. A test delta holds data blocks whose content names
 * (owner, index, delta) and ends with a super root whose content names
 * the delta, so a test can tell which delta recovery found, and that its
 * blocks are where log_build_add said they would be.
 *
 * The raw readers (lt_get_le*) decode on-disk bytes by the offsets in
 * docs/FORMAT.md, independently of src/log/format.h.
 */
#ifndef CAIRN_LOG_FIXTURE_H
#define CAIRN_LOG_FIXTURE_H

#include <stdbool.h>
#include <stdint.h>

#include "bdev/bdev.h"
#include "log/log.h"

#define LT_BS	      4096u
#define LT_SR_OWNER   1u   /* owner of super root blocks */
#define LT_DATA_OWNER 100u /* owner of data blocks */

extern const uint8_t lt_uuid[16];

/* An emulated device with room for @nsegs segments of @seg_blocks. */
struct bdev *lt_dev(uint32_t seg_blocks, uint64_t nsegs);
/* Format @d with @seg_blocks-block segments and lt_uuid; asserts success. */
void lt_format(struct bdev *d, uint32_t seg_blocks);
/* Open the log on @d; asserts success. */
struct log *lt_open(struct bdev *d);
/* Open and recover; asserts both succeed. */
struct log *lt_recover(struct bdev *d, struct log_state *st);
/*
 * What a client keeping no blocks does after log_recover: write a
 * checkpoint, then release every segment recovery no longer needs (at
 * mount every segment is in use until its client says otherwise).
 */
void lt_release_unneeded(struct log *l);
/* A formatted emulated device, opened: lt_dev + lt_format + lt_open. */
struct log *lt_volume(uint32_t seg_blocks, uint64_t nsegs, struct bdev **dev);

/* Content of a data block, and of the super root of @delta. */
void lt_pattern(void *buf, uint64_t owner, uint64_t index, uint64_t delta);
void lt_sr_pattern(void *buf, uint64_t delta);

/*
 * Lay out delta @delta: @ndata data blocks (owner LT_DATA_OWNER, index
 * 0..ndata-1), then its super root. Their addresses go to @addrs (ndata
 * entries, may be NULL), the super root's to *sr_blk (may be NULL).
 * Asserts every add succeeds; returns what log_build_finish returned.
 */
/* The tag lt_delta gives data block @index of @delta (its super root: 0). */
static inline uint64_t lt_tag(uint64_t delta, uint64_t index)
{
	return delta << 20 | index;
}
int lt_delta(struct log *l, uint64_t delta, uint32_t ndata, uint64_t *addrs, uint64_t *sr_blk);
/* Same, asserting the finish succeeds. */
void lt_delta_ok(struct log *l, uint64_t delta, uint32_t ndata, uint64_t *addrs, uint64_t *sr_blk);

/* Does block @blk of @d hold the data block (owner, index, delta)? */
bool lt_block_is(struct bdev *d, uint64_t blk, uint64_t owner, uint64_t index, uint64_t delta);
/* The delta whose super root block @blk holds; UINT64_MAX if none. */
uint64_t lt_sr_delta(struct bdev *d, uint64_t blk);
/* Check that @st names delta @delta and its super root really holds it. */
void lt_assert_state(struct bdev *d, const struct log_state *st, uint64_t delta);

/* The image a power cut would leave now. */
struct bdev *lt_crash(struct bdev *d, enum bdev_emu_crash_mode mode, bool tear, uint64_t seed);

/* Raw block access for corruption and format checks. */
void lt_read(struct bdev *d, uint64_t blk, void *buf);
void lt_write(struct bdev *d, uint64_t blk, const void *buf);
/* Flip bit @bit of block @blk (written and flushed). */
void lt_flip(struct bdev *d, uint64_t blk, uint32_t bit);
void lt_zero(struct bdev *d, uint64_t blk);
uint64_t lt_get_le64(const void *p, size_t off);
uint32_t lt_get_le32(const void *p, size_t off);
void lt_put_le64(void *p, size_t off, uint64_t v);
void lt_put_le32(void *p, size_t off, uint32_t v);

/* Catch log lines (single-threaded tests) until lt_log_catch_stop(). */
void lt_log_catch(const char *needle);
void lt_log_catch_stop(void);
/* Error and warning lines seen, and those of them containing the needle. */
unsigned lt_log_lines(void);
unsigned lt_log_named(void);
/* Silence every log line until lt_log_catch_stop(). */
void lt_log_mute(void);

#endif /* CAIRN_LOG_FIXTURE_H */

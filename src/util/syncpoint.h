/*
 * syncpoint.h - named interleaving points.
 *
 * Code marks the places where a race can happen with SYNC_POINT("layer.
 * object.event"). In release builds the macro is empty. In every other
 * build a test can, at those points:
 *
 *   - order threads: syncpoint_order("a", "b") makes any thread that
 *     arrives at "b" wait until "a" has been passed (at least once since
 *     the rule was set);
 *   - know where threads are: syncpoint_wait_arrived("b", n) blocks the
 *     test until "b" has been reached n times;
 *   - act: syncpoint_callback("b", fn, arg) runs fn when "b" is passed
 *     (to inject a fault or trigger work at an exact moment).
 *
 * A thread may name itself (syncpoint_thread_name("A")); a point it
 * reaches then also counts as "point@A", and rules may name "point@A" to
 * stop only that thread. Any interleaving can so be forced and replayed
 * without sleeps.
 *
 * Rules: a point inside a critical section may be counted and waited on
 * (syncpoint_wait_arrived), but must not be made to block (the thread
 * that would release it may need the same lock). Such points are named
 * with the suffix "_locked" to say so.
 *
 * Invariants
 *   (1) With no rules, callbacks or waiters armed (syncpoint_enable not
 *       called), SYNC_POINT is one relaxed atomic load.
 *   (2) Counts only grow until syncpoint_reset(); arrivals are counted
 *       before a thread blocks, passes after it is released.
 *   (3) All state is protected by sp_lock; waiting uses sp_cond only.
 */
#ifndef CAIRN_SYNCPOINT_H
#define CAIRN_SYNCPOINT_H

#include <stdbool.h>
#include <stdint.h>

#ifdef CAIRN_SYNCPOINTS
#define SYNC_POINT(name) syncpoint_hit(name)
#define SYNCPOINTS_BUILT 1
#else
#define SYNC_POINT(name) ((void)0)
#define SYNCPOINTS_BUILT 0
#endif

typedef void (*syncpoint_fn)(const char *point, void *arg);

void syncpoint_hit(const char *name);

/* Test side. */
void syncpoint_enable(void);
/* Drop every rule, callback and count, and disable. */
void syncpoint_reset(void);
void syncpoint_order(const char *before, const char *after);
void syncpoint_callback(const char *name, syncpoint_fn fn, void *arg);
void syncpoint_thread_name(const char *tag);
uint64_t syncpoint_arrived(const char *name);
uint64_t syncpoint_passed(const char *name);
void syncpoint_wait_arrived(const char *name, uint64_t count);
void syncpoint_wait_passed(const char *name, uint64_t count);

#endif /* CAIRN_SYNCPOINT_H */

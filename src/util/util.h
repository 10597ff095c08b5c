/*
 * util.h - the foundation every layer of cairn stands on.
 *
 * Small pieces with no knowledge of filesystems: compiler helpers,
 * intrusive lists, mutex helpers that assert ownership, logging.
 * The interleaving points (syncpoint.h) and the test PRNG (prng.h) have
 * headers of their own because tests include them directly.
 *
 * Error convention for all of cairn: functions return 0 or a negative
 * errno (-ENOSPC, -EIO, -EUCLEAN for corruption). Only the FUSE adapter
 * turns them positive.
 */
#ifndef CAIRN_UTIL_H
#define CAIRN_UTIL_H

#include <assert.h>
#include <endian.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#ifndef EUCLEAN
#define EUCLEAN 117 /* structure needs cleaning: on-disk corruption */
#endif

#define ARRAY_SIZE(a)			(sizeof(a) / sizeof((a)[0]))
#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))
#define likely(x)			__builtin_expect(!!(x), 1)
#define unlikely(x)			__builtin_expect(!!(x), 0)
#define MIN(a, b)			((a) < (b) ? (a) : (b))
#define MAX(a, b)			((a) > (b) ? (a) : (b))

/* Are the @n bytes at @p all zero? (An empty range is.) */
static inline bool util_all_zero(const void *p, size_t n)
{
	const unsigned char *b = p;

	return n == 0 || (b[0] == 0 && memcmp(b, b + 1, n - 1) == 0);
}

/* The little-endian u64 at @p (any alignment), as every on-disk integer is. */
/* Nanoseconds since the epoch (CLOCK_REALTIME): a time to show a user. */
static inline uint64_t util_realtime_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Milliseconds of CLOCK_MONOTONIC: for spans of time. */
static inline uint64_t util_monotonic_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static inline uint64_t util_get_le64(const void *p)
{
	uint64_t x;

	memcpy(&x, p, sizeof(x));
	return le64toh(x);
}

static inline void util_put_le64(void *p, uint64_t x)
{
	x = htole64(x);
	memcpy(p, &x, sizeof(x));
}

static inline uint32_t util_get_le32(const void *p)
{
	uint32_t x;

	memcpy(&x, p, sizeof(x));
	return le32toh(x);
}

static inline void util_put_le32(void *p, uint32_t x)
{
	x = htole32(x);
	memcpy(p, &x, sizeof(x));
}

/* ---- intrusive doubly linked list ---------------------------------- */

struct list_node {
	struct list_node *next, *prev;
};

static inline void list_init(struct list_node *head)
{
	head->next = head;
	head->prev = head;
}

static inline bool list_empty(const struct list_node *head)
{
	return head->next == head;
}

/* True if @n is on some list (nodes are list_init()ed when removed). */
static inline bool list_linked(const struct list_node *n)
{
	return n->next != n;
}

static inline void list_add_tail(struct list_node *head, struct list_node *n)
{
	n->prev = head->prev;
	n->next = head;
	head->prev->next = n;
	head->prev = n;
}

static inline void list_del(struct list_node *n)
{
	n->prev->next = n->next;
	n->next->prev = n->prev;
	list_init(n);
}

#define list_for_each(pos, head) for ((pos) = (head)->next; (pos) != (head); (pos) = (pos)->next)

/* ---- mutexes that know their owner --------------------------------- */

/*
 * A mutex that records its holder, so that code can assert a lock is held
 * ("Every shared field says what protects it, and the code asserts it").
 * The owner field is only used in assertions.
 */
struct cmutex {
	pthread_mutex_t cm_mutex;
	_Atomic(pthread_t) cm_owner; /* valid while cm_held */
	_Atomic bool cm_held;
};

int cmutex_init(struct cmutex *m);
void cmutex_destroy(struct cmutex *m);
void cmutex_lock(struct cmutex *m);
void cmutex_unlock(struct cmutex *m);
/* Wait on @cv; @m must be held by the caller and is held again on return. */
void cmutex_wait(struct cmutex *m, pthread_cond_t *cv);
/* As cmutex_wait, but gives up at @until (on the clock @cv was made with). */
void cmutex_timedwait(struct cmutex *m, pthread_cond_t *cv, const struct timespec *until);
bool cmutex_held(struct cmutex *m);

/* ---- logging -------------------------------------------------------- */

enum log_level { LOG_ERR, LOG_WARN, LOG_INFO, LOG_DEBUG };

/* printf-style message on the log sink (stderr unless redirected). */
void cairn_log(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Redirect log lines (for tests that assert on them); NULL restores stderr. */
typedef void (*log_sink_fn)(enum log_level level, const char *line, void *arg);
void cairn_log_set_sink(log_sink_fn fn, void *arg);
void cairn_log_set_level(enum log_level max_level);

#define log_err(...)   cairn_log(LOG_ERR, __VA_ARGS__)
#define log_warn(...)  cairn_log(LOG_WARN, __VA_ARGS__)
#define log_info(...)  cairn_log(LOG_INFO, __VA_ARGS__)
#define log_debug(...) cairn_log(LOG_DEBUG, __VA_ARGS__)

#endif /* CAIRN_UTIL_H */

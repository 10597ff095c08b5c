/*
 * log.c - cairn's log sink and the owner-aware mutex.
 *
 * One line per message, prefixed with its level. Tests may redirect the
 * sink to assert on what was logged (an underestimated reservation, a
 * corrupt block). The sink is global and protected by log_lock.
 */
#include "util/util.h"

#include <stdarg.h>
#include <stdio.h>

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static log_sink_fn log_sink; /* protected by log_lock */
static void *log_sink_arg;   /* protected by log_lock */
static _Atomic int log_max = LOG_WARN;

static const char *const log_names[] = {"error", "warning", "info", "debug"};

void cairn_log_set_sink(log_sink_fn fn, void *arg)
{
	pthread_mutex_lock(&log_lock);
	log_sink = fn;
	log_sink_arg = arg;
	pthread_mutex_unlock(&log_lock);
}

void cairn_log_set_level(enum log_level max_level)
{
	log_max = (int)max_level;
}

void cairn_log(enum log_level level, const char *fmt, ...)
{
	char line[512];
	va_list ap;

	if ((int)level > log_max)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&log_lock);
	if (log_sink)
		log_sink(level, line, log_sink_arg);
	else
		fprintf(stderr, "cairn: %s: %s\n", log_names[level], line);
	pthread_mutex_unlock(&log_lock);
}

/*
 * The holder's note, for cmutex_held (assertions). The mutex orders it
 * for its holders; the release store lets another thread that reads held
 * also read this owner, not an older one. Plain stores, not the full
 * barriers of sequentially consistent ones: every lock pays for them.
 */
static void cmutex_note_held(struct cmutex *m)
{
	atomic_store_explicit(&m->cm_owner, pthread_self(), memory_order_relaxed);
	atomic_store_explicit(&m->cm_held, true, memory_order_release);
}

int cmutex_init(struct cmutex *m)
{
	m->cm_held = false;
	return -pthread_mutex_init(&m->cm_mutex, NULL);
}

void cmutex_destroy(struct cmutex *m)
{
	assert(!m->cm_held);
	pthread_mutex_destroy(&m->cm_mutex);
}

void cmutex_lock(struct cmutex *m)
{
	pthread_mutex_lock(&m->cm_mutex);
	cmutex_note_held(m);
}

void cmutex_unlock(struct cmutex *m)
{
	assert(cmutex_held(m));
	atomic_store_explicit(&m->cm_held, false, memory_order_relaxed);
	pthread_mutex_unlock(&m->cm_mutex);
}

void cmutex_wait(struct cmutex *m, pthread_cond_t *cv)
{
	assert(cmutex_held(m));
	atomic_store_explicit(&m->cm_held, false, memory_order_relaxed);
	pthread_cond_wait(cv, &m->cm_mutex);
	cmutex_note_held(m);
}

void cmutex_timedwait(struct cmutex *m, pthread_cond_t *cv, const struct timespec *until)
{
	assert(cmutex_held(m));
	atomic_store_explicit(&m->cm_held, false, memory_order_relaxed);
	pthread_cond_timedwait(cv, &m->cm_mutex, until);
	cmutex_note_held(m);
}

bool cmutex_held(struct cmutex *m)
{
	/* acquire: a holder's owner is seen with its held */
	return atomic_load_explicit(&m->cm_held, memory_order_acquire) &&
	       pthread_equal(atomic_load_explicit(&m->cm_owner, memory_order_relaxed),
			     pthread_self());
}

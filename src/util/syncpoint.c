/*
 * syncpoint.c - the registry behind SYNC_POINT().
 *
 * Tables are small fixed arrays searched linearly: only tests arm points,
 * and a test arms a handful. Exceeding a table is a test bug and aborts.
 *
 * Lock order: sp_lock is a leaf; callbacks run with it released.
 */
#include "util/syncpoint.h"
#include "util/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SP_NAME_MAX  96
#define SP_COUNTERS  512
#define SP_RULES     64
#define SP_CALLBACKS 32

struct sp_counter {
	char sc_name[SP_NAME_MAX];
	uint64_t sc_arrived;
	uint64_t sc_passed;
};

struct sp_rule {
	char sr_before[SP_NAME_MAX];
	char sr_after[SP_NAME_MAX];
};

struct sp_callback {
	char scb_name[SP_NAME_MAX];
	syncpoint_fn scb_fn;
	void *scb_arg;
};

static pthread_mutex_t sp_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t sp_cond = PTHREAD_COND_INITIALIZER;
static _Atomic bool sp_enabled;
static struct sp_counter sp_counters[SP_COUNTERS];    /* protected by sp_lock */
static unsigned sp_ncounters;			      /* protected by sp_lock */
static struct sp_rule sp_rules[SP_RULES];	      /* protected by sp_lock */
static unsigned sp_nrules;			      /* protected by sp_lock */
static struct sp_callback sp_callbacks[SP_CALLBACKS]; /* protected by sp_lock */
static unsigned sp_ncallbacks;			      /* protected by sp_lock */
static _Thread_local char sp_thread_tag[32];

static void sp_copy_name(char *dst, const char *src)
{
	if (strlen(src) >= SP_NAME_MAX) {
		fprintf(stderr, "syncpoint: name too long: %s\n", src);
		abort();
	}
	strcpy(dst, src);
}

static struct sp_counter *sp_counter_locked(const char *name)
{
	for (unsigned i = 0; i < sp_ncounters; i++)
		if (!strcmp(sp_counters[i].sc_name, name))
			return &sp_counters[i];
	if (sp_ncounters == SP_COUNTERS) {
		fprintf(stderr, "syncpoint: too many points\n");
		abort();
	}
	struct sp_counter *c = &sp_counters[sp_ncounters++];
	sp_copy_name(c->sc_name, name);
	c->sc_arrived = c->sc_passed = 0;
	return c;
}

/* True if a rule stops @name (or @tagged) until its "before" is passed. */
static bool sp_must_wait_locked(const char *name, const char *tagged)
{
	for (unsigned i = 0; i < sp_nrules; i++) {
		struct sp_rule *r = &sp_rules[i];
		if (strcmp(r->sr_after, name) && (!tagged || strcmp(r->sr_after, tagged)))
			continue;
		if (sp_counter_locked(r->sr_before)->sc_passed == 0)
			return true;
	}
	return false;
}

static void sp_run_callbacks(const char *name, const char *tagged)
{
	struct sp_callback todo[SP_CALLBACKS];
	unsigned n = 0;

	pthread_mutex_lock(&sp_lock);
	for (unsigned i = 0; i < sp_ncallbacks; i++) {
		const char *cn = sp_callbacks[i].scb_name;
		if (!strcmp(cn, name) || (tagged && !strcmp(cn, tagged)))
			todo[n++] = sp_callbacks[i];
	}
	pthread_mutex_unlock(&sp_lock);
	for (unsigned i = 0; i < n; i++)
		todo[i].scb_fn(name, todo[i].scb_arg);
}

void syncpoint_hit(const char *name)
{
	char tagged[SP_NAME_MAX + 40];
	const char *tag = NULL;

	if (!atomic_load_explicit(&sp_enabled, memory_order_relaxed))
		return;
	if (sp_thread_tag[0]) {
		snprintf(tagged, sizeof(tagged), "%s@%s", name, sp_thread_tag);
		tag = tagged;
	}
	pthread_mutex_lock(&sp_lock);
	sp_counter_locked(name)->sc_arrived++;
	if (tag)
		sp_counter_locked(tag)->sc_arrived++;
	pthread_cond_broadcast(&sp_cond);
	while (sp_must_wait_locked(name, tag))
		pthread_cond_wait(&sp_cond, &sp_lock);
	sp_counter_locked(name)->sc_passed++;
	if (tag)
		sp_counter_locked(tag)->sc_passed++;
	pthread_cond_broadcast(&sp_cond);
	pthread_mutex_unlock(&sp_lock);
	sp_run_callbacks(name, tag);
}

void syncpoint_enable(void)
{
	atomic_store(&sp_enabled, true);
}

void syncpoint_reset(void)
{
	pthread_mutex_lock(&sp_lock);
	atomic_store(&sp_enabled, false);
	sp_ncounters = sp_nrules = sp_ncallbacks = 0;
	pthread_cond_broadcast(&sp_cond);
	pthread_mutex_unlock(&sp_lock);
}

void syncpoint_order(const char *before, const char *after)
{
	pthread_mutex_lock(&sp_lock);
	if (sp_nrules == SP_RULES) {
		fprintf(stderr, "syncpoint: too many rules\n");
		abort();
	}
	sp_copy_name(sp_rules[sp_nrules].sr_before, before);
	sp_copy_name(sp_rules[sp_nrules].sr_after, after);
	sp_nrules++;
	pthread_mutex_unlock(&sp_lock);
	syncpoint_enable();
}

void syncpoint_callback(const char *name, syncpoint_fn fn, void *arg)
{
	pthread_mutex_lock(&sp_lock);
	if (sp_ncallbacks == SP_CALLBACKS) {
		fprintf(stderr, "syncpoint: too many callbacks\n");
		abort();
	}
	sp_copy_name(sp_callbacks[sp_ncallbacks].scb_name, name);
	sp_callbacks[sp_ncallbacks].scb_fn = fn;
	sp_callbacks[sp_ncallbacks].scb_arg = arg;
	sp_ncallbacks++;
	pthread_mutex_unlock(&sp_lock);
	syncpoint_enable();
}

void syncpoint_thread_name(const char *tag)
{
	snprintf(sp_thread_tag, sizeof(sp_thread_tag), "%s", tag ? tag : "");
}

uint64_t syncpoint_arrived(const char *name)
{
	pthread_mutex_lock(&sp_lock);
	uint64_t n = sp_counter_locked(name)->sc_arrived;
	pthread_mutex_unlock(&sp_lock);
	return n;
}

uint64_t syncpoint_passed(const char *name)
{
	pthread_mutex_lock(&sp_lock);
	uint64_t n = sp_counter_locked(name)->sc_passed;
	pthread_mutex_unlock(&sp_lock);
	return n;
}

void syncpoint_wait_arrived(const char *name, uint64_t count)
{
	pthread_mutex_lock(&sp_lock);
	while (sp_counter_locked(name)->sc_arrived < count)
		pthread_cond_wait(&sp_cond, &sp_lock);
	pthread_mutex_unlock(&sp_lock);
}

void syncpoint_wait_passed(const char *name, uint64_t count)
{
	pthread_mutex_lock(&sp_lock);
	while (sp_counter_locked(name)->sc_passed < count)
		pthread_cond_wait(&sp_cond, &sp_lock);
	pthread_mutex_unlock(&sp_lock);
}

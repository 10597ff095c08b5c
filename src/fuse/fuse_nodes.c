/*
 * fuse_nodes.c - the kernel's lookup counts, per node id.
 *
 * FUSE's contract: every reply that hands the kernel an entry (lookup,
 * mknod, mkdir, symlink, link, create, each readdirplus entry but '.'
 * and '..') adds one lookup to that node; FORGET and BATCH_FORGET give
 * them back, and the kernel holds a node id until its count reaches 0.
 * All names of a hard-linked file share one node id (the inode number).
 *
 * libcairn needs no count: an inode stays valid while it has a name or
 * an open (cairn_open_inode), and an (ino, generation) pair never comes
 * back. So the table only checks the kernel and the adapter against each
 * other: a FORGET of an unknown node, or of more than it holds, is a
 * bug on one side, counted and logged; at unmount the nodes still held
 * are reported (the kernel sends no FORGET while unmounting).
 *
 * Invariants
 *   (1) A node is in the table exactly while its count is above 0.
 *   (2) Every field is protected by cns_lock; no other lock is taken
 *       under it and nothing under it blocks.
 *   (3) The table doubles when it holds more nodes than buckets, so a
 *       chain stays short; it never shrinks.
 */
#include "fuse/fuse_internal.h"

#include <errno.h>
#include <stdlib.h>

#include "util/util.h"

#define CFUSE_NODES_INITIAL 1024u

static size_t cfuse_node_hash(uint64_t ino, size_t nbuckets)
{
	ino ^= ino >> 33;
	ino *= 0xff51afd7ed558ccdull;
	ino ^= ino >> 33;
	return (size_t)ino & (nbuckets - 1);
}

int cfuse_nodes_init(struct cfuse_nodes *ns)
{
	*ns = (struct cfuse_nodes){.cns_nbuckets = CFUSE_NODES_INITIAL};
	ns->cns_buckets = calloc(ns->cns_nbuckets, sizeof(*ns->cns_buckets));
	if (!ns->cns_buckets)
		return -ENOMEM;
	pthread_mutex_init(&ns->cns_lock, NULL);
	return 0;
}

void cfuse_nodes_destroy(struct cfuse_nodes *ns)
{
	struct cfuse_node *n, *next;

	if (!ns->cns_buckets)
		return;
	for (size_t i = 0; i < ns->cns_nbuckets; i++)
		for (n = ns->cns_buckets[i]; n; n = next) {
			next = n->cn_next;
			free(n);
		}
	free(ns->cns_buckets);
	ns->cns_buckets = NULL;
	pthread_mutex_destroy(&ns->cns_lock);
}

/* Double the buckets (invariant 3); on no memory the chains just grow. */
static void cfuse_nodes_grow_locked(struct cfuse_nodes *ns)
{
	size_t nb = ns->cns_nbuckets * 2;
	struct cfuse_node **b = calloc(nb, sizeof(*b));
	struct cfuse_node *n, *next;

	if (!b)
		return;
	for (size_t i = 0; i < ns->cns_nbuckets; i++)
		for (n = ns->cns_buckets[i]; n; n = next) {
			size_t h = cfuse_node_hash(n->cn_ino, nb);

			next = n->cn_next;
			n->cn_next = b[h];
			b[h] = n;
		}
	free(ns->cns_buckets);
	ns->cns_buckets = b;
	ns->cns_nbuckets = nb;
}

static struct cfuse_node **cfuse_node_slot_locked(struct cfuse_nodes *ns, uint64_t ino)
{
	struct cfuse_node **p = &ns->cns_buckets[cfuse_node_hash(ino, ns->cns_nbuckets)];

	while (*p && (*p)->cn_ino != ino)
		p = &(*p)->cn_next;
	return p;
}

int cfuse_node_ref(struct cfuse_nodes *ns, uint64_t ino, uint32_t mode)
{
	struct cfuse_node **p, *n;
	int err = 0;

	pthread_mutex_lock(&ns->cns_lock);
	p = cfuse_node_slot_locked(ns, ino);
	if (*p) {
		(*p)->cn_nlookup++;
		(*p)->cn_mode = mode;
		goto out_unlock;
	}
	n = malloc(sizeof(*n));
	if (!n) {
		err = -ENOMEM;
		goto out_unlock;
	}
	*n = (struct cfuse_node){.cn_ino = ino, .cn_nlookup = 1, .cn_mode = mode};
	*p = n;
	if (++ns->cns_count > ns->cns_nbuckets)
		cfuse_nodes_grow_locked(ns);
out_unlock:
	pthread_mutex_unlock(&ns->cns_lock);
	return err;
}

int cfuse_node_mode(struct cfuse_nodes *ns, uint64_t ino, uint32_t *mode)
{
	struct cfuse_node *n;

	pthread_mutex_lock(&ns->cns_lock);
	n = *cfuse_node_slot_locked(ns, ino);
	if (n)
		*mode = n->cn_mode;
	pthread_mutex_unlock(&ns->cns_lock);
	return n ? 0 : -ENOENT;
}

void cfuse_node_forget(struct cfuse_nodes *ns, uint64_t ino, uint64_t nlookup)
{
	struct cfuse_node **p, *n;
	uint64_t had = 0;

	pthread_mutex_lock(&ns->cns_lock);
	p = cfuse_node_slot_locked(ns, ino);
	n = *p;
	if (n)
		had = n->cn_nlookup;
	if (n && n->cn_nlookup > nlookup) {
		n->cn_nlookup -= nlookup;
		n = NULL;
	} else if (n) {
		*p = n->cn_next;
		ns->cns_count--;
	}
	if (had < nlookup)
		ns->cns_bad_forgets++;
	pthread_mutex_unlock(&ns->cns_lock);
	free(n);
	if (had < nlookup)
		log_err("fuse: forget of %llu lookups of node %llu, which had %llu",
			(unsigned long long)nlookup, (unsigned long long)ino,
			(unsigned long long)had);
}

void cfuse_nodes_stats(struct cfuse_nodes *ns, size_t *held, uint64_t *bad)
{
	pthread_mutex_lock(&ns->cns_lock);
	*held = ns->cns_count;
	*bad = ns->cns_bad_forgets;
	pthread_mutex_unlock(&ns->cns_lock);
}

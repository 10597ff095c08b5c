/*
 * cmd_info.c - `cairn info`: describe the cairn volume on an image,
 * without changing it; and `cairn df`: its space alone.
 *
 *   info_stat          a regular file or a block device, else exit 1
 *   cli_find_volume    the block size whose superblock log_probe accepts
 *   info_geometry      log_open on a read-only device: the superblock's
 *                      geometry and uuid
 *   info_state         vol_open read-only (voo_read_only): recovery,
 *                      which only reads, and the count of live blocks
 *                      per segment; then vol_space, vol_usage and the
 *                      committed delta; vol_close
 *
 * Read-only: recovery (log_recover, the super root read) never writes,
 * and a read-only vol_open writes no checkpoint and frees no segment;
 * the commit thread has nothing to commit. The image is not modified.
 *
 * No lock is taken, so info works on a mounted image: recovery trusts
 * only complete, checksummed logs, so it sees some committed state, not
 * necessarily the newest.
 *
 * When the superblock is valid but recovery fails (no committed state,
 * corrupt logs), info prints the geometry it did read and exits 1 with
 * the reason.
 *
 * Not shown yet: the format version and the label. log.h does not expose
 * them (struct log_geometry has neither), and the tool reads nothing the
 * public headers do not give it.
 */
#include "cli.h"
#include "util/util.h"

#include "log/log.h"
#include "vol/vol.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define INFO_CACHE_BLOCKS 64 /* recovery and the super root need a handful */

/* The end of both helps: IMAGE is only read; the options; exit codes. */
static void info_help_tail(void)
{
	printf("IMAGE is opened read-only and never modified; it may be in use.\n"
	       "\n"
	       "Options:\n"
	       "  -v, --verbose  show the library's log lines\n"
	       "  -h, --help     show this help\n"
	       "\n"
	       "%s",
	       cli_exit_help);
}

static void df_help(void)
{
	printf("Usage: cairn df [OPTIONS] IMAGE\n"
	       "\n"
	       "Show how the space of the cairn volume on IMAGE is used: live data\n"
	       "(data and metadata the newest state names), space the segment cleaner\n"
	       "can reclaim (dead blocks in segments that still hold live ones), space\n"
	       "only snapshots keep (back when they are deleted), free segments, and the\n"
	       "reserve kept for deletions and the cleaner.\n");
	info_help_tail();
}

static void info_help(void)
{
	printf("Usage: cairn info [OPTIONS] IMAGE\n"
	       "\n"
	       "Describe the cairn volume on IMAGE (a regular file or a block device):\n"
	       "uuid, geometry, space and the newest committed delta.\n");
	info_help_tail();
}

static int info_parse(int argc, char **argv, const char **path, bool *help)
{
	static const struct option opts[] = {
	    {"verbose", no_argument, NULL, 'v'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	int c;

	*help = false;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":vh", opts, NULL)) != -1) {
		if (c == 'v')
			cli_verbose();
		else if (c == 'h')
			*help = true;
		else
			return cli_opt_err(c, argv);
	}
	if (*help)
		return CLI_OK;
	if (optind >= argc)
		return cli_usage_err("no IMAGE given");
	if (optind + 1 < argc)
		return cli_usage_err("unexpected argument '%s'", argv[optind + 1]);
	*path = argv[optind];
	return CLI_OK;
}

static int info_stat(const char *path)
{
	struct stat st;

	if (stat(path, &st) < 0) {
		cli_err("%s: %s", path, strerror(errno));
		return CLI_FAIL;
	}
	if (S_ISREG(st.st_mode) || S_ISBLK(st.st_mode))
		return CLI_OK;
	if (S_ISDIR(st.st_mode))
		cli_err("%s is a directory", path);
	else
		cli_err("%s is not a regular file or a block device", path);
	return CLI_FAIL;
}

/* Read the geometry of the volume on @d (the superblock); 0 or -errno. */
static int info_geometry(struct bdev *d, struct log_geometry *g)
{
	struct log *l;
	int err;

	err = log_open(d, &l);
	if (err)
		return err;
	*g = *log_geometry(l);
	log_close(l);
	return 0;
}

static void info_print_geometry(const char *path, struct bdev *d, const struct log_geometry *g)
{
	uint64_t dev = bdev_nblocks(d) * bdev_block_size(d);
	uint64_t seg = (uint64_t)g->lg_seg_blocks * g->lg_block_size;
	char b1[32], b2[32], b3[32], u[40];

	printf("image:           %s\n"
	       "format version:  (not exposed by the library)\n"
	       "uuid:            %s\n"
	       "label:           (not exposed by the library)\n"
	       "block size:      %" PRIu32 "\n"
	       "segment size:    %s (%" PRIu32 " blocks)\n"
	       "segments:        %" PRIu64 "\n"
	       "device size:     %s (%" PRIu64 " blocks)\n"
	       "volume size:     %s (%" PRIu64 " blocks)\n",
	       path, cli_uuid_str(g->lg_uuid, u), g->lg_block_size,
	       cli_size_str(seg, b1, sizeof(b1)), g->lg_seg_blocks, g->lg_nsegments,
	       cli_size_str(dev, b2, sizeof(b2)), bdev_nblocks(d),
	       cli_size_str(g->lg_nblocks * g->lg_block_size, b3, sizeof(b3)), g->lg_nblocks);
}

/*
 * Read-only, no segment is released: the space that is free after a
 * writable open is every segment holding no live block, less the kept
 * reserve (a mount also keeps the few segments recovery still needs).
 * Reclaimable: the dead blocks of the segments that hold live ones (the
 * unwritten rest of the head's segment aside), which only the cleaner
 * gives back, less those in segments a snapshot marked: the cleaner
 * leaves those, and they come back with the snapshots (shown as pinned).
 */
static void info_print_space(const struct log_space *sp, const struct vol_usage_stats *us,
			     uint32_t bs, uint32_t seg_blocks)
{
	uint64_t busy = us->vus_live_segments * seg_blocks;
	uint64_t kept = us->vus_live_blocks + us->vus_pinned_blocks + sp->sp_head_room;
	uint64_t dead = busy > kept ? busy - kept : 0;
	uint64_t snap_dead = MIN(us->vus_snap_dead_blocks, dead);
	uint64_t avail = sp->sp_total > busy + sp->sp_kept ? sp->sp_total - busy - sp->sp_kept : 0;
	char b1[32], b2[32], b3[32], b4[32], b5[32], b6[32];

	printf("space total:     %s (%" PRIu64 " blocks)\n"
	       "space live:      %s (%" PRIu64 " blocks, in %" PRIu64 " segments)\n"
	       "space dead:      %s (%" PRIu64
	       " blocks in those segments: the cleaner's to reclaim)\n"
	       "space pinned:    %s (%" PRIu64 " blocks only snapshots keep, and %" PRIu64
	       " dead ones beside them, in %" PRIu64 " segments the cleaner leaves to them)\n"
	       "space kept:      %s (%" PRIu64 " blocks, for freeing operations)\n"
	       "space free:      %s (%" PRIu64 " blocks, in segments holding nothing live)\n",
	       cli_size_str(sp->sp_total * bs, b1, sizeof(b1)), sp->sp_total,
	       cli_size_str(us->vus_live_blocks * bs, b2, sizeof(b2)), us->vus_live_blocks,
	       us->vus_live_segments, cli_size_str((dead - snap_dead) * bs, b5, sizeof(b5)),
	       dead - snap_dead,
	       cli_size_str((us->vus_pinned_blocks + snap_dead) * bs, b6, sizeof(b6)),
	       us->vus_pinned_blocks, snap_dead, us->vus_snap_segments,
	       cli_size_str(sp->sp_kept * bs, b3, sizeof(b3)), sp->sp_kept,
	       cli_size_str(avail * bs, b4, sizeof(b4)), avail);
}

/* Recover the state on @d (taken over) and print it; CLI_OK or CLI_FAIL. */
static int info_state(const char *path, struct bdev *d, uint32_t bs, uint32_t seg_blocks, bool df)
{
	struct vol_open_opts o = {.voo_cache_blocks = INFO_CACHE_BLOCKS, .voo_read_only = true};
	struct vol_usage_stats us;
	struct vol_snap_info *snaps = NULL;
	struct vol_checkpoint *cps = NULL;
	size_t nsnaps = 0, ncps = 0;
	uint64_t oldest;
	struct log_space sp;
	struct vol *v;
	uint32_t delta;
	int err, cerr;

	err = vol_open(d, &o, &v);
	if (err) {
		bdev_close(d);
		cli_err("%s: no valid committed state: %s", path, cli_strerror(err));
		return CLI_FAIL;
	}
	vol_space(v, &sp);
	vol_usage(v, &us);
	delta = vol_committed_delta(v);
	err = vol_snap_list(v, &snaps, &nsnaps);
	free(snaps);
	if (!err && !df)
		err = vol_checkpoints(v, SIZE_MAX, &cps, &ncps);
	oldest = ncps ? cps[ncps - 1].vcp_delta : 0;
	free(cps);
	cerr = vol_close(v);
	if (!err)
		err = cerr;
	if (err) {
		cli_err("%s: %s", path, cli_strerror(err));
		return CLI_FAIL;
	}
	info_print_space(&sp, &us, bs, seg_blocks);
	if (!df)
		printf("committed delta: %" PRIu32 "\n"
		       "checkpoints:     %zu readable, from delta %" PRIu64
		       " (cairn snapshot checkpoints)\n",
		       delta, ncps, oldest);
	printf("snapshots:       %zu (cairn snapshot list)\n", nsnaps);
	return CLI_OK;
}

static int info_show(const char *path, bool df)
{
	struct log_geometry g;
	struct bdev *d;
	int err;

	if (cli_open_volume(path, BDEV_RDONLY, &d))
		return CLI_FAIL;
	err = info_geometry(d, &g);
	if (err) {
		bdev_close(d);
		cli_err("%s: cannot read the superblock: %s", path, cli_strerror(err));
		return CLI_FAIL;
	}
	if (!df)
		info_print_geometry(path, d, &g);
	fflush(stdout);
	return info_state(path, d, bdev_block_size(d), g.lg_seg_blocks, df);
}

static int info_or_df(int argc, char **argv, bool df)
{
	const char *path = NULL;
	bool help;
	int ret;

	ret = info_parse(argc, argv, &path, &help);
	if (ret != CLI_OK)
		return ret;
	if (help) {
		if (df)
			df_help();
		else
			info_help();
		return CLI_OK;
	}
	cli_log_setup();
	ret = info_stat(path);
	if (ret == CLI_OK)
		ret = info_show(path, df);
	return ret;
}

static int info_run(int argc, char **argv)
{
	return info_or_df(argc, argv, false);
}

static int df_run(int argc, char **argv)
{
	return info_or_df(argc, argv, true);
}

const struct cli_cmd cli_cmd_info = {
    .cc_name = "info",
    .cc_summary = "describe the cairn volume on an image",
    .cc_help = info_help,
    .cc_run = info_run,
};

const struct cli_cmd cli_cmd_df = {
    .cc_name = "df",
    .cc_summary = "show how the space of a cairn volume is used",
    .cc_help = df_help,
    .cc_run = df_run,
};

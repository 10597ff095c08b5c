/*
 * cmd_snapshot.c - `cairn snapshot`: create, list and delete the
 * snapshots of a cairn volume on an image that is not mounted.
 *
 *   snapshot create IMAGE NAME   vol_snap_create: everything committed
 *                                is pinned as NAME
 *   snapshot delete IMAGE NAME   vol_snap_delete: what only NAME kept
 *                                is given back to the cleaner
 *   snapshot list IMAGE          vol_snap_list: name, delta, time
 *
 * The image is opened with an exclusive lock (BDEV_EXCL_LOCK), so a
 * mounted image is refused with one clear line rather than changed under
 * the daemon. list opens it read-only and takes no lock.
 */
#include "cli.h"

#include "vol/vol.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SNAP_CACHE_BLOCKS 1024

static void snapshot_help(void)
{
	printf("Usage: cairn snapshot create IMAGE NAME\n"
	       "       cairn snapshot delete IMAGE NAME\n"
	       "       cairn snapshot list IMAGE\n"
	       "\n"
	       "Pin the newest committed state of the cairn volume on IMAGE as snapshot\n"
	       "NAME, delete one (what only it kept becomes reclaimable), or list them.\n"
	       "A snapshot is read through libcairn (cairn_open_opts.coo_snapshot).\n"
	       "NAME: 1 to %d bytes, no '/'.\n"
	       "The image must not be mounted (create and delete lock it).\n"
	       "\n"
	       "Options:\n"
	       "  -v, --verbose  show the library's log lines\n"
	       "  -h, --help     show this help\n"
	       "\n"
	       "%s",
	       VOL_SNAP_NAME_MAX, cli_exit_help);
}

/* Open the volume on @path; CLI_OK and *out, or CLI_FAIL (reported). */
static int snapshot_open(const char *path, bool write, struct vol **out)
{
	struct vol_open_opts o = {.voo_cache_blocks = SNAP_CACHE_BLOCKS, .voo_read_only = !write};
	struct bdev *d;
	uint32_t bs;
	int err;

	err = cli_find_volume(path, &bs);
	if (!err && !bs) {
		cli_err("%s is not a cairn volume (no valid superblock)", path);
		return CLI_FAIL;
	}
	if (!err)
		err = bdev_open_file(path, bs, 0, write ? BDEV_EXCL_LOCK : BDEV_RDONLY, &d);
	if (err) {
		cli_err("cannot open %s: %s", path,
			err == -EBUSY ? "in use (mounted, or open in another cairn process)"
				      : cli_strerror(err));
		return CLI_FAIL;
	}
	err = vol_open(d, &o, out);
	if (err) {
		bdev_close(d);
		cli_err("%s: no valid committed state: %s", path, cli_strerror(err));
		return CLI_FAIL;
	}
	return CLI_OK;
}

static int snapshot_list(const char *path)
{
	struct vol_snap_info *si;
	struct vol *v;
	size_t n;
	int err, ret = snapshot_open(path, false, &v);

	if (ret != CLI_OK)
		return ret;
	err = vol_snap_list(v, &si, &n);
	vol_close(v);
	if (err) {
		cli_err("%s: cannot read the snapshot table: %s", path, cli_strerror(err));
		return CLI_FAIL;
	}
	printf("%-24s %10s  %s\n", "NAME", "DELTA", "TAKEN (UTC)");
	for (size_t i = 0; i < n; i++) {
		time_t t = (time_t)(si[i].vsi_ctime_ns / 1000000000);
		char when[32] = "?";
		struct tm tm;

		if (gmtime_r(&t, &tm))
			strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);
		printf("%-24s %10" PRIu64 "  %s\n", si[i].vsi_name, si[i].vsi_delta, when);
	}
	free(si);
	return CLI_OK;
}

static int snapshot_change(const char *path, const char *what, const char *name)
{
	bool create = !strcmp(what, "create");
	struct vol *v;
	int err, cerr, ret = snapshot_open(path, true, &v);

	if (ret != CLI_OK)
		return ret;
	err = create ? vol_snap_create(v, name) : vol_snap_delete(v, name);
	cerr = vol_close(v);
	if (!err)
		err = cerr;
	if (err == -EEXIST)
		cli_err("%s: a snapshot named '%s' exists already", path, name);
	else if (err == -ENOENT)
		cli_err("%s: no snapshot named '%s'", path, name);
	else if (err == -EINVAL || err == -ENAMETOOLONG)
		cli_err("'%s' cannot name a snapshot (1 to %d bytes, no '/', not . or ..)", name,
			VOL_SNAP_NAME_MAX);
	else if (err)
		cli_err("%s: cannot %s snapshot '%s': %s", path, what, name, cli_strerror(err));
	return err ? CLI_FAIL : CLI_OK;
}

static int snapshot_run(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"verbose", no_argument, NULL, 'v'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *what;
	int c, want;

	opterr = 0;
	while ((c = getopt_long(argc, argv, ":vh", opts, NULL)) != -1) {
		if (c == 'v') {
			cli_verbose();
		} else if (c == 'h') {
			snapshot_help();
			return CLI_OK;
		} else {
			return cli_opt_err(c, argv);
		}
	}
	if (optind >= argc)
		return cli_usage_err("no action given (create, delete or list)");
	what = argv[optind];
	if (!strcmp(what, "list"))
		want = 1;
	else if (!strcmp(what, "create") || !strcmp(what, "delete"))
		want = 2;
	else
		return cli_usage_err("unknown action '%s' (create, delete or list)", what);
	if (argc - optind - 1 < want)
		return cli_usage_err(want == 1 ? "no IMAGE given" : "%s needs IMAGE and NAME",
				     what);
	if (argc - optind - 1 > want)
		return cli_usage_err("unexpected argument '%s'", argv[optind + 1 + want]);
	cli_log_setup();
	if (want == 1)
		return snapshot_list(argv[optind + 1]);
	return snapshot_change(argv[optind + 1], what, argv[optind + 2]);
}

const struct cli_cmd cli_cmd_snapshot = {
    .cc_name = "snapshot",
    .cc_summary = "create, list or delete snapshots of an unmounted volume",
    .cc_help = snapshot_help,
    .cc_run = snapshot_run,
};

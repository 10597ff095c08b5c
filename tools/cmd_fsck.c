/*
 * cmd_fsck.c - cairn fsck: check a volume, change nothing.
 *
 *   cairn fsck [-v] IMAGE
 *
 * Stages, each reported as it runs:
 *   (1) the log: a superblock, then recovery finds the newest committed
 *       state (the newest valid checkpoint rolled forward over complete,
 *       checksummed logs); a torn tail after a crash is normal and not a
 *       problem, no valid state at all is;
 *   (2) the volume (vol_check): every block the durable state's trees
 *       name is inside a segment and named once, every owner record sound;
 *   (3) the namespace (ns_check): inode records, the inode bitmap, every
 *       directory's structure, reachability, types and link counts.
 * Every problem is one line on stdout naming the inode (or block) it is
 * in; a summary line ends the report.
 *
 * The image is opened read-only (the checkpoint vol_close would write is
 * refused by the device and ignored, as in cairn info), so fsck can run on
 * an image that was not closed cleanly without changing it, and repeated
 * runs agree. It holds a shared lock on the image while it checks: an
 * image a writer has open (mounted) is refused, as its state changes
 * under every read, and no writer opens it meanwhile.
 *
 * Exit codes follow fsck(8): 0 no problems, 4 problems left uncorrected
 * (fsck never corrects), 8 an operational error (missing or unreadable
 * image, not a cairn volume, in use by a writer), 16 a usage error.
 */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "ns/check.h"
#include "vol/vol.h"

#define FSCK_CACHE_BLOCKS 4096

enum { FSCK_OK = 0, FSCK_UNCORRECTED = 4, FSCK_OPERATIONAL = 8, FSCK_USAGE = 16 };

static void fsck_help(void)
{
	printf("Usage: cairn fsck [OPTIONS] IMAGE\n"
	       "\n"
	       "Check the cairn volume on IMAGE and report every problem, one line each,\n"
	       "naming the inode or block it is in. IMAGE is opened read-only and never\n"
	       "modified; an IMAGE that is mounted (or open for writing) is refused.\n"
	       "\n"
	       "Options:\n"
	       "  -v, --verbose  show the library's log lines\n"
	       "  -h, --help     show this help\n"
	       "\n"
	       "Exit status (as fsck(8)):\n"
	       "  0   no problems found\n"
	       "  4   problems found (fsck corrects nothing)\n"
	       "  8   operational error: IMAGE missing, unreadable, not a cairn volume,\n"
	       "      or in use (mounted)\n"
	       "  16  usage error: wrong options or arguments\n");
}

static int fsck_parse(int argc, char **argv, const char **path, bool *help)
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
			return cli_opt_err(c, argv) ? FSCK_USAGE : FSCK_OK;
	}
	if (*help)
		return FSCK_OK;
	if (optind >= argc) {
		cli_usage_err("no IMAGE given");
		return FSCK_USAGE;
	}
	if (optind + 1 < argc) {
		cli_usage_err("unexpected argument '%s'", argv[optind + 1]);
		return FSCK_USAGE;
	}
	*path = argv[optind];
	return FSCK_OK;
}

static void fsck_vol_problem(void *ctx, const char *problem)
{
	(void)ctx;
	printf("problem: %s\n", problem);
}

static void fsck_problem(void *ctx, uint64_t ino, const char *problem)
{
	(void)ctx;
	(void)ino;
	printf("problem: %s\n", problem);
}

/* (1): open read-only, recovering; FSCK_OK with *@out, or an exit code. */
static int fsck_open(const char *path, struct vol **out)
{
	struct vol_open_opts o = {.voo_cache_blocks = FSCK_CACHE_BLOCKS, .voo_read_only = true};
	struct stat st;
	struct bdev *d;
	int err;

	if (stat(path, &st) < 0) {
		cli_err("%s: %s", path, strerror(errno));
		return FSCK_OPERATIONAL;
	}
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
		cli_err("%s is not a regular file or a block device", path);
		return FSCK_OPERATIONAL;
	}
	/* shared: no writer (a mount) changes the image while it is checked */
	if (cli_open_volume(path, BDEV_RDONLY | BDEV_SHARED_LOCK, &d))
		return FSCK_OPERATIONAL;
	err = vol_open(d, &o, out);
	if (err) {
		bdev_close(d);
		printf("problem: no valid committed state (%s)\n", cli_strerror(err));
		printf("%s: PROBLEMS FOUND (1 problem)\n", path);
		return FSCK_UNCORRECTED;
	}
	printf("log: newest committed delta %" PRIu32 "\n", vol_committed_delta(*out));
	return FSCK_OK;
}

static int fsck_check(const char *path)
{
	struct ns_check_stats st = {0};
	struct vol_check_stats vs = {0};
	uint64_t problems = 0;
	struct vol *v;
	int ret, err;

	ret = fsck_open(path, &v);
	if (ret != FSCK_OK)
		return ret;
	err = vol_check(v, fsck_vol_problem, NULL, &vs);
	if (err < 0) {
		cli_err("%s: the volume check stopped: %s", path, cli_strerror(err));
		ret = FSCK_OPERATIONAL;
		goto out;
	}
	problems = (uint64_t)err;
	printf("volume: %" PRIu64 " blocks in use\n", vs.cs_blocks);
	err = ns_check(v, fsck_problem, NULL, &st);
	if (err && err != -EUCLEAN) {
		cli_err("%s: the namespace check stopped: %s", path, cli_strerror(err));
		ret = FSCK_OPERATIONAL;
		goto out;
	}
	problems += st.nc_problems;
	printf("namespace: %" PRIu64 " inodes (%" PRIu64 " directories, %" PRIu64 " files, %" PRIu64
	       " symlinks, %" PRIu64 " special, %" PRIu64 " orphans), %" PRIu64 " entries\n",
	       st.nc_inodes, st.nc_dirs, st.nc_files, st.nc_symlinks, st.nc_special, st.nc_orphans,
	       st.nc_entries);
	ret = problems ? FSCK_UNCORRECTED : FSCK_OK;
out:
	err = vol_close(v);
	if (err && err != -EROFS) { /* -EROFS: the closing checkpoint, see the top */
		cli_err("%s: %s", path, cli_strerror(err));
		return FSCK_OPERATIONAL;
	}
	if (ret != FSCK_OPERATIONAL)
		printf("%s: %s (%" PRIu64 " problem%s)\n", path,
		       ret == FSCK_OK ? "clean" : "PROBLEMS FOUND", problems,
		       problems == 1 ? "" : "s");
	return ret;
}

static int fsck_run(int argc, char **argv)
{
	const char *path = NULL;
	bool help;
	int ret;

	ret = fsck_parse(argc, argv, &path, &help);
	if (ret != FSCK_OK)
		return ret;
	if (help) {
		fsck_help();
		return FSCK_OK;
	}
	cli_log_setup();
	return fsck_check(path);
}

const struct cli_cmd cli_cmd_fsck = {
    .cc_name = "fsck",
    .cc_summary = "check a cairn volume (read-only)",
    .cc_help = fsck_help,
    .cc_run = fsck_run,
};

/*
 * cmd_snapshot.c - `cairn snapshot`: create, list and delete the
 * snapshots of a cairn volume, on an image or through its mount.
 *
 *   snapshot create TARGET NAME  everything committed is pinned as NAME
 *   snapshot delete TARGET NAME  what only NAME kept goes back to the
 *                                cleaner
 *   snapshot list TARGET         name, delta, time
 *   snapshot checkpoints TARGET  the recent checkpoints still readable
 *                                (delta, time), newest first
 *   snapshot create --checkpoint DELTA TARGET NAME
 *                                pin that recent checkpoint instead
 *
 * TARGET is an image (a regular file or a block device) or a directory
 * of a mounted cairn volume.
 *
 *   - An image: vol_snap_create / vol_snap_delete / vol_snap_list on it,
 *     opened with an exclusive lock (BDEV_EXCL_LOCK), so a mounted image
 *     is refused with one clear line rather than changed under the
 *     daemon; list opens it read-only and takes no lock.
 *   - A directory: the daemon's control ioctls (include/cairn/ioctl.h),
 *     after syncfs(2) on it so that the kernel's writeback cache reaches
 *     the daemon first; a directory of another filesystem answers ENOTTY.
 */
#include "cli.h"

#include "cairn/ioctl.h"
#include "vol/vol.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

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
	printf("Usage: cairn snapshot create TARGET NAME\n"
	       "       cairn snapshot delete TARGET NAME\n"
	       "       cairn snapshot list TARGET\n"
	       "       cairn snapshot checkpoints TARGET\n"
	       "       cairn snapshot create --checkpoint DELTA TARGET NAME\n"
	       "\n"
	       "Pin the newest committed state of a cairn volume as snapshot NAME,\n"
	       "delete one (what only it kept becomes reclaimable), or list them.\n"
	       "TARGET is the volume's image, if it is not mounted, or a directory of\n"
	       "its mount (the daemon does the work; root or the user who mounted).\n"
	       "A snapshot mounts read-only (cairn mount -o snapshot=NAME IMAGE DIR),\n"
	       "beside the volume's own mount or alone, or opens through libcairn\n"
	       "(cairn_open_opts.coo_snapshot); one that is mounted or open cannot be\n"
	       "deleted.\n"
	       "Every commit is a checkpoint, readable until the space it used is reused\n"
	       "(cairn mount -o protect=SECONDS keeps it that long, unless the space is\n"
	       "needed); checkpoints lists those still readable, newest first. One\n"
	       "becomes a snapshot with create --checkpoint DELTA (mounted or not), or\n"
	       "mounts read-only with cairn mount -o checkpoint=DELTA while the image is\n"
	       "not mounted otherwise.\n"
	       "NAME: 1 to %d bytes, no '/'.\n"
	       "\n"
	       "Options:\n"
	       "  -c, --checkpoint DELTA  create: pin recent checkpoint DELTA\n"
	       "  -v, --verbose  show the library's log lines\n"
	       "  -h, --help     show this help\n"
	       "\n"
	       "%s",
	       VOL_SNAP_NAME_MAX, cli_exit_help);
}

/* Open the volume on @path; CLI_OK and *out, or CLI_FAIL (reported). */
static int snapshot_open(const char *path, bool write, struct vol **out)
{
	struct vol_open_opts o = {.voo_cache_blocks = SNAP_CACHE_BLOCKS,
				  .voo_read_only = !write,
				  .voo_protect_s = CLI_PROTECT_S};
	struct bdev *d;
	int err;

	if (cli_open_volume(path, write ? BDEV_EXCL_LOCK : BDEV_RDONLY, &d))
		return CLI_FAIL;
	err = vol_open(d, &o, out);
	if (err) {
		bdev_close(d);
		cli_err("%s: no valid committed state: %s", path, cli_strerror(err));
		return CLI_FAIL;
	}
	return CLI_OK;
}

static void snapshot_print(const char *name, uint64_t delta, int64_t ctime_ns)
{
	time_t t = (time_t)(ctime_ns / 1000000000);
	char when[32] = "?";
	struct tm tm;

	if (gmtime_r(&t, &tm))
		strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);
	printf("%-24s %10" PRIu64 "  %s\n", name, delta, when);
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
	for (size_t i = 0; i < n; i++)
		snapshot_print(si[i].vsi_name, si[i].vsi_delta, si[i].vsi_ctime_ns);
	free(si);
	return CLI_OK;
}

static void checkpoint_print(uint64_t delta, uint64_t time_ns)
{
	time_t t = (time_t)(time_ns / 1000000000);
	char when[40] = "?";
	struct tm tm;

	if (time_ns && gmtime_r(&t, &tm)) {
		size_t len = strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);

		snprintf(when + len, sizeof(when) - len, ".%03u",
			 (unsigned)(time_ns / 1000000 % 1000));
	}
	printf("%10" PRIu64 "  %s\n", delta, when);
}

/* The recent checkpoints of the unmounted image @path, newest first. */
static int snapshot_checkpoints(const char *path)
{
	struct vol_open_opts o = {.voo_cache_blocks = SNAP_CACHE_BLOCKS, .voo_read_only = true};
	struct vol_checkpoint *cp;
	struct bdev *d;
	struct vol *v;
	size_t n;
	int err;

	/* shared: no writer changes what is read, as fsck */
	if (cli_open_volume(path, BDEV_RDONLY | BDEV_SHARED_LOCK, &d))
		return CLI_FAIL;
	err = vol_open(d, &o, &v);
	if (err) {
		bdev_close(d);
		cli_err("%s: no valid committed state: %s", path, cli_strerror(err));
		return CLI_FAIL;
	}
	err = vol_checkpoints(v, SIZE_MAX, &cp, &n);
	vol_close(v);
	if (err) {
		cli_err("%s: cannot read the checkpoints: %s", path, cli_strerror(err));
		return CLI_FAIL;
	}
	printf("%10s  %s\n", "DELTA", "COMMITTED (UTC)");
	for (size_t i = 0; i < n; i++)
		checkpoint_print(cp[i].vcp_delta, cp[i].vcp_time_ns);
	free(cp);
	return CLI_OK;
}

/*
 * The error line for @what (create, delete, list) of snapshot @name on
 * @target (an image, or a directory of a mount: -errno of the ioctl).
 */
static void snapshot_err(const char *target, const char *what, const char *name, int err)
{
	if (err == -ENOTTY || err == -ENOSYS)
		cli_err("%s is not in a mounted cairn volume", target);
	else if (err == -EEXIST)
		cli_err("%s: a snapshot named '%s' exists already", target, name);
	else if (err == -ENOENT && !strcmp(what, "create"))
		cli_err("%s: that checkpoint is not readable (any more): see cairn snapshot "
			"checkpoints",
			target);
	else if (err == -ENOENT)
		cli_err("%s: no snapshot named '%s'", target, name);
	else if (err == -EBUSY)
		cli_err("%s: snapshot '%s' is mounted or open: unmount it first", target, name);
	else if (err == -EINVAL || err == -ENAMETOOLONG)
		cli_err("'%s' cannot name a snapshot (1 to %d bytes, no '/', not . or ..)", name,
			VOL_SNAP_NAME_MAX);
	else if (err == -EPERM)
		cli_err("%s: only root or the user who mounted it may %s snapshots", target, what);
	else
		cli_err("%s: cannot %s snapshot '%s': %s", target, what, name, cli_strerror(err));
}

static int snapshot_change(const char *path, const char *what, const char *name, uint64_t delta)
{
	bool create = !strcmp(what, "create");
	struct vol *v;
	int err, cerr, ret = snapshot_open(path, true, &v);

	if (ret != CLI_OK)
		return ret;
	err = create ? vol_snap_create_at(v, name, delta) : vol_snap_delete(v, name);
	cerr = vol_close(v);
	if (!err)
		err = cerr;
	if (err)
		snapshot_err(path, what, name, err);
	return err ? CLI_FAIL : CLI_OK;
}

/* The mounted volume's directory @dir, open, synced (syncfs); -1 on failure (reported). */
static int snapshot_open_mount(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0) {
		cli_err("%s: %s", dir, strerror(errno));
		return -1;
	}
	if (syncfs(fd) < 0) {
		cli_err("%s: syncfs: %s", dir, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

/* The recent checkpoints of the volume mounted on @dir, through its daemon. */
static int snapshot_checkpoints_mounted(const char *dir)
{
	struct cairn_ioc_ckpts *q = calloc(1, sizeof(*q));
	int fd = q ? snapshot_open_mount(dir) : -1, ret = CLI_OK;

	if (!q)
		cli_err("out of memory");
	if (fd < 0) {
		free(q);
		return CLI_FAIL;
	}
	printf("%10s  %s\n", "DELTA", "COMMITTED (UTC)");
	for (;;) {
		uint32_t n;

		if (ioctl(fd, CAIRN_IOC_CKPT_LIST, q) < 0) {
			snapshot_err(dir, "list", "", -errno);
			ret = CLI_FAIL;
			break;
		}
		n = q->cic_n < CAIRN_IOC_CKPTS ? q->cic_n : CAIRN_IOC_CKPTS;
		for (uint32_t i = 0; i < n; i++)
			checkpoint_print(q->cic_cp[i].delta, (uint64_t)q->cic_cp[i].time_ns);
		if (!n)
			break;
		q->cic_before = q->cic_cp[n - 1].delta;
	}
	close(fd);
	free(q);
	return ret;
}

static int snapshot_mounted(const char *dir, const char *what, const char *name, uint64_t delta)
{
	struct cairn_ioc_snap s = {0};
	int fd = snapshot_open_mount(dir), ret = CLI_OK;

	if (fd < 0)
		return CLI_FAIL;
	if (name) {
		s.cis_delta = delta;
		if (strlen(name) > CAIRN_SNAP_NAME_MAX) {
			snapshot_err(dir, what, name, -ENAMETOOLONG);
			close(fd);
			return CLI_FAIL;
		}
		memcpy(s.cis_name, name, strlen(name));
		if (ioctl(fd,
			  !strcmp(what, "create") ? CAIRN_IOC_SNAP_CREATE : CAIRN_IOC_SNAP_DELETE,
			  &s) < 0) {
			snapshot_err(dir, what, name, -errno);
			ret = CLI_FAIL;
		}
		close(fd);
		return ret;
	}
	for (uint32_t i = 0;; i++) {
		s = (struct cairn_ioc_snap){.cis_index = i};
		if (ioctl(fd, CAIRN_IOC_SNAP_GET, &s) < 0) {
			if (errno != ENOENT) {
				snapshot_err(dir, "list", "", -errno);
				ret = CLI_FAIL;
			}
			break;
		}
		if (!i)
			printf("%-24s %10s  %s\n", "NAME", "DELTA", "TAKEN (UTC)");
		snapshot_print(s.cis_name, s.cis_delta, s.cis_ctime_ns);
	}
	close(fd);
	return ret;
}

static int snapshot_run(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"checkpoint", required_argument, NULL, 'c'},
	    {"verbose", no_argument, NULL, 'v'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	uint64_t delta = 0;
	const char *what;
	struct stat st;
	int c, want;

	opterr = 0;
	while ((c = getopt_long(argc, argv, ":c:vh", opts, NULL)) != -1) {
		if (c == 'c') {
			char *end;

			errno = 0;
			delta = strtoull(optarg, &end, 10);
			if (errno || end == optarg || *end || *optarg == '-' || !delta ||
			    delta > UINT32_MAX)
				return cli_usage_err("--checkpoint '%s' is not a delta", optarg);
		} else if (c == 'v') {
			cli_verbose();
		} else if (c == 'h') {
			snapshot_help();
			return CLI_OK;
		} else {
			return cli_opt_err(c, argv);
		}
	}
	if (optind >= argc)
		return cli_usage_err("no action given (create, delete, list or checkpoints)");
	what = argv[optind];
	if (!strcmp(what, "list") || !strcmp(what, "checkpoints"))
		want = 1;
	else if (!strcmp(what, "create") || !strcmp(what, "delete"))
		want = 2;
	else
		return cli_usage_err("unknown action '%s' (create, delete, list or checkpoints)",
				     what);
	if (argc - optind - 1 < want)
		return cli_usage_err(want == 1 ? "no IMAGE given" : "%s needs IMAGE and NAME",
				     what);
	if (argc - optind - 1 > want)
		return cli_usage_err("unexpected argument '%s'", argv[optind + 1 + want]);
	if (delta && strcmp(what, "create"))
		return cli_usage_err("--checkpoint goes with create only");
	cli_log_setup();
	if (stat(argv[optind + 1], &st) == 0 && S_ISDIR(st.st_mode)) {
		if (!strcmp(what, "checkpoints"))
			return snapshot_checkpoints_mounted(argv[optind + 1]);
		return snapshot_mounted(argv[optind + 1], what, want == 1 ? NULL : argv[optind + 2],
					delta);
	}
	if (!strcmp(what, "checkpoints"))
		return snapshot_checkpoints(argv[optind + 1]);
	if (want == 1)
		return snapshot_list(argv[optind + 1]);
	return snapshot_change(argv[optind + 1], what, argv[optind + 2], delta);
}

const struct cli_cmd cli_cmd_snapshot = {
    .cc_name = "snapshot",
    .cc_summary = "create, list or delete snapshots of an unmounted volume",
    .cc_help = snapshot_help,
    .cc_run = snapshot_run,
};

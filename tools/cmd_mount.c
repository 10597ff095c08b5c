/*
 * cmd_mount.c - `cairn mount`: serve a cairn volume through FUSE.
 *
 *   cairn mount [-f] [-d] [-v] [-o OPTIONS] IMAGE DIR
 *
 *   mount_parse        options -> struct mount_args (usage errors: exit 2)
 *   mount_check        IMAGE holds a cairn volume (cli_find_volume, no
 *                      lock); DIR is a directory nothing is mounted on
 *   mount_detach       unless -f: fork; the parent waits for the child's
 *                      verdict on a pipe and exits with it
 *   cfuse_mount        (src/fuse) options, cairn_open (the image lock:
 *                      "in use"), the mount itself
 *   mount_ready        tell the parent, let go of the terminal
 *   cfuse_run          serve until unmount or SIGTERM/SIGINT/SIGHUP
 *   cfuse_unmount      unmount, commit, close: exit 0
 *
 * Why not fuse_daemonize: it forks after the mount, and libcairn's
 * threads (started by cairn_open, which must come before the mount so
 * that a busy or corrupt image is an error on the terminal) would not
 * survive a fork. So the fork comes first, and the child reports back.
 *
 * Invariants
 *   (1) Every failure before the volume is served is one line on stderr
 *       and exit 1 (2 for the command line), from the foreground process:
 *       the parent exits only once the child has mounted or failed.
 *   (2) The command never waits for anything unbounded before mounting:
 *       an image locked by a mounted cairn is refused at once; one locked
 *       with no mount of it in /proc/self/mounts (a daemon finishing its
 *       final commit after an unmount) is tried again for at most 10 s.
 *   (3) Once mounted, the exit code says whether the final commit
 *       (cairn_close) succeeded.
 */
#include "cli.h"

#include "cairn/cairn.h"
#include "fuse/fuse.h"
#include "ns/ns.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <syslog.h>
#include <unistd.h>

#define MOUNT_OPTS_MAX	    4096
#define MOUNT_PROTECT_MAX_S (7 * 86400) /* a week */

struct mount_args {
	const char *ma_image;
	const char *ma_dir;
	bool ma_foreground;
	bool ma_debug;
	bool ma_read_only;
	bool ma_allow_other;
	bool ma_writeback_cache; /* -o [no_]writeback_cache */
	uint32_t ma_spin_us;	 /* -o spin=US */
	uint32_t ma_commit_ms;	 /* -o commit=SECONDS; 0: the library's 5 s */
	const char *ma_snapshot; /* -o snapshot=NAME (read only); NULL: the volume */
	uint64_t ma_checkpoint;	 /* -o checkpoint=DELTA (read only); 0: the volume */
	uint32_t ma_protect_s;	 /* -o protect=SECONDS */
	char ma_snapshot_buf[CAIRN_SNAP_NAME_MAX + 1];
	char ma_extra[MOUNT_OPTS_MAX]; /* -o options for libfuse */
	bool ma_help;
};

static void mount_help(void)
{
	printf("Usage: cairn mount [OPTIONS] IMAGE DIR\n"
	       "\n"
	       "Mount the cairn volume on IMAGE (an image file or a block device) on the\n"
	       "directory DIR, through FUSE, and serve it in the background until it is\n"
	       "unmounted (umount DIR, or fusermount3 -u DIR) or the daemon gets SIGTERM,\n"
	       "SIGINT or SIGHUP; either way everything is committed before it exits.\n"
	       "IMAGE is locked while mounted: a second mount is refused.\n"
	       "\n"
	       "Options:\n"
	       "  -f, --foreground   stay in the foreground\n"
	       "  -d, --debug        trace every FUSE request on stderr (implies -f)\n"
	       "  -o OPTIONS         comma-separated mount options (repeatable):\n"
	       "                       ro                   read-only volume and mount\n"
	       "                       rw                   read-write (the default)\n"
	       "                       allow_other          let other users in (a user\n"
	       "                                            needs user_allow_other in\n"
	       "                                            /etc/fuse.conf)\n"
	       "                       default_permissions  accepted; always on: the\n"
	       "                                            kernel checks permissions\n"
	       "                       commit=SECONDS       commit changes at least this\n"
	       "                                            often (default 5); fsync and\n"
	       "                                            fdatasync commit at once\n"
	       "                       snapshot=NAME        mount snapshot NAME, read-only\n"
	       "                                            (cairn snapshot list IMAGE)\n"
	       "                       checkpoint=DELTA     mount recent checkpoint DELTA,\n"
	       "                                            read-only, while nothing else\n"
	       "                                            has the image open (cairn\n"
	       "                                            snapshot checkpoints IMAGE)\n"
	       "                       protect=SECONDS      keep the space recent checkpoints\n"
	       "                                            need this long before reusing\n"
	       "                                            it, unless it is needed sooner\n"
	       "                                            (default %u; 0: reuse at once)\n"
	       "                       spin=US              after a request, poll for the\n"
	       "                                            next one this long (0 to 1000,\n"
	       "                                            default 25) before sleeping:\n"
	       "                                            faster replies to callers that\n"
	       "                                            wait for each; 0: never poll\n"
	       "                       writeback_cache      the kernel caches writes and\n"
	       "                                            sends whole pages (the default)\n"
	       "                       no_writeback_cache   every write(2) reaches the\n"
	       "                                            daemon: fewer requests per\n"
	       "                                            unlink, more per small write\n"
	       "                     mount(8)'s own (defaults, noauto, nofail, _netdev,\n"
	       "                     user, x-...) are ignored; others go to libfuse\n"
	       "                     (max_read=, nosuid, nodev, noatime, ...)\n"
	       "  -v, --verbose      show the library's log lines\n"
	       "  -h, --help         show this help\n"
	       "\n"
	       "`mount -t fuse.cairn IMAGE DIR` and /etc/fstab lines of type fuse.cairn\n"
	       "use the helper mount.fuse.cairn, installed next to mount(8)'s others.\n"
	       "\n"
	       "%s",
	       CLI_PROTECT_S, cli_exit_help);
}

/* ---- arguments ---------------------------------------------------------------- */

/* mount(8)'s own options, meaningless to the filesystem. */
static bool mount_opt_ignored(const char *o)
{
	static const char *const names[] = {"defaults", "auto",	 "noauto", "nofail", "_netdev",
					    "user",	"users", "nouser", "owner",  "group"};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (!strcmp(o, names[i]))
			return true;
	return !strncmp(o, "x-", 2) || !strncmp(o, "comment=", 8);
}

/* -o commit=SECONDS: 1 to 3600. */
static int mount_opt_commit(struct mount_args *a, const char *v)
{
	char *end;
	unsigned long s;

	errno = 0;
	s = strtoul(v, &end, 10);
	if (errno || end == v || *end || s < 1 || s > 3600)
		return cli_usage_err("-o commit='%s' is not a number of seconds from 1 to 3600", v);
	a->ma_commit_ms = (uint32_t)s * 1000;
	return CLI_OK;
}

/* -o spin=US: 0 to CFUSE_SPIN_US_MAX. */
static int mount_opt_spin(struct mount_args *a, const char *v)
{
	char *end;
	unsigned long us;

	errno = 0;
	us = strtoul(v, &end, 10);
	if (errno || end == v || *end || *v == '-' || us > CFUSE_SPIN_US_MAX)
		return cli_usage_err("-o spin='%s' is not a number of microseconds from 0 to %d", v,
				     CFUSE_SPIN_US_MAX);
	a->ma_spin_us = (uint32_t)us;
	return CLI_OK;
}

/* -o NAME=N: a whole number from @min to @max into *@out. */
static int mount_opt_number(const char *name, const char *v, uint64_t min, uint64_t max,
			    uint64_t *out)
{
	char *end;
	unsigned long long n;

	errno = 0;
	n = strtoull(v, &end, 10);
	if (errno || end == v || *end || *v == '-' || n < min || n > max)
		return cli_usage_err("-o %s='%s' is not a number from %" PRIu64 " to %" PRIu64,
				     name, v, min, max);
	*out = n;
	return CLI_OK;
}

/* -o snapshot=NAME: a snapshot's name; the mount is read-only. */
static int mount_opt_snapshot(struct mount_args *a, const char *v)
{
	if (!*v || strlen(v) > CAIRN_SNAP_NAME_MAX)
		return cli_usage_err("-o snapshot='%s' is not a snapshot name (1 to %d bytes)", v,
				     CAIRN_SNAP_NAME_MAX);
	snprintf(a->ma_snapshot_buf, sizeof(a->ma_snapshot_buf), "%s", v);
	a->ma_snapshot = a->ma_snapshot_buf;
	return CLI_OK;
}

static int mount_opt_one(struct mount_args *a, const char *o)
{
	size_t n = strlen(a->ma_extra);

	if (!strcmp(o, "ro"))
		a->ma_read_only = true;
	else if (!strcmp(o, "rw"))
		a->ma_read_only = false;
	else if (!strcmp(o, "allow_other"))
		a->ma_allow_other = true;
	else if (!strcmp(o, "writeback_cache"))
		a->ma_writeback_cache = true;
	else if (!strcmp(o, "no_writeback_cache"))
		a->ma_writeback_cache = false;
	else if (!strncmp(o, "commit=", 7))
		return mount_opt_commit(a, o + 7);
	else if (!strncmp(o, "spin=", 5))
		return mount_opt_spin(a, o + 5);
	else if (!strncmp(o, "snapshot=", 9))
		return mount_opt_snapshot(a, o + 9);
	else if (!strncmp(o, "checkpoint=", 11))
		return mount_opt_number("checkpoint", o + 11, 1, UINT32_MAX, &a->ma_checkpoint);
	else if (!strncmp(o, "protect=", 8)) {
		uint64_t s;
		int ret = mount_opt_number("protect", o + 8, 0, MOUNT_PROTECT_MAX_S, &s);

		a->ma_protect_s = (uint32_t)s;
		return ret;
	} else if (!strncmp(o, "fsname=", 7)) /* the image's path: how a mount is found */
		return cli_usage_err(
		    "-o fsname= is not allowed: a cairn mount's source is its image");
	else if (!strcmp(o, "default_permissions") || !*o || mount_opt_ignored(o))
		; /* always on, or not ours */
	else if (n + strlen(o) + 2 > sizeof(a->ma_extra))
		return cli_usage_err("-o options are too long");
	else
		snprintf(a->ma_extra + n, sizeof(a->ma_extra) - n, "%s%s", n ? "," : "", o);
	return CLI_OK;
}

/* One -o argument: options separated by commas. */
static int mount_opt_list(struct mount_args *a, const char *list)
{
	char *copy = strdup(list), *save = NULL, *o;
	int ret = CLI_OK;

	if (!copy) {
		cli_err("out of memory");
		return CLI_FAIL;
	}
	for (o = strtok_r(copy, ",", &save); o && ret == CLI_OK; o = strtok_r(NULL, ",", &save))
		ret = mount_opt_one(a, o);
	free(copy);
	return ret;
}

static int mount_parse(int argc, char **argv, struct mount_args *a)
{
	static const struct option opts[] = {
	    {"foreground", no_argument, NULL, 'f'},
	    {"debug", no_argument, NULL, 'd'},
	    {"verbose", no_argument, NULL, 'v'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	int c, ret;

	memset(a, 0, sizeof(*a));
	a->ma_writeback_cache = true;
	a->ma_spin_us = CFUSE_SPIN_US;
	a->ma_protect_s = CLI_PROTECT_S;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":fdo:vh", opts, NULL)) != -1) {
		switch (c) {
		case 'f':
			a->ma_foreground = true;
			break;
		case 'd':
			a->ma_debug = a->ma_foreground = true;
			break;
		case 'o':
			ret = mount_opt_list(a, optarg);
			if (ret != CLI_OK)
				return ret;
			break;
		case 'v':
			cli_verbose();
			break;
		case 'h':
			a->ma_help = true;
			break;
		default:
			return cli_opt_err(c, argv);
		}
	}
	if (a->ma_help)
		return CLI_OK;
	if (a->ma_snapshot && a->ma_checkpoint)
		return cli_usage_err("-o snapshot= and -o checkpoint= name two states: give one");
	if (argc - optind < 2)
		return cli_usage_err(optind < argc ? "no DIR given" : "no IMAGE given");
	if (argc - optind > 2)
		return cli_usage_err("unexpected argument '%s'", argv[optind + 2]);
	a->ma_image = argv[optind];
	a->ma_dir = argv[optind + 1];
	return CLI_OK;
}

/* ---- checks ------------------------------------------------------------------- */

/* IMAGE made absolute (the daemon leaves the working directory) and probed. */
static int mount_check_image(const char *image, char *abs)
{
	uint32_t bs;
	int err;

	if (!realpath(image, abs)) {
		cli_err("cannot open %s: %s", image, strerror(errno));
		return CLI_FAIL;
	}
	err = cli_find_volume(abs, &bs);
	if (err) {
		cli_err("cannot read %s: %s", image, cli_strerror(err));
		return CLI_FAIL;
	}
	if (!bs) {
		cli_err("%s is not a cairn volume", image);
		return CLI_FAIL;
	}
	return CLI_OK;
}

static int mount_check_dir(const char *dir, char *abs)
{
	int err = realpath(dir, abs) ? cfuse_check_mountpoint(abs) : -errno;

	if (err == -ENOENT)
		cli_err("mount point %s does not exist", dir);
	else if (err == -ENOTDIR)
		cli_err("mount point %s is not a directory", dir);
	else if (err == -EBUSY)
		cli_err("mount point %s is busy: something is mounted on it", dir);
	else if (err == -ENOTCONN)
		cli_err("mount point %s is a dead FUSE mount (fusermount3 -u it first)", dir);
	else if (err)
		cli_err("mount point %s: %s", dir, strerror(-err));
	return err ? CLI_FAIL : CLI_OK;
}

/* ---- the daemon ----------------------------------------------------------------- */

/*
 * Unless -f, fork. The parent waits for the child's exit code on a pipe
 * (invariant 1): *@parent is set and the return value is that code. The
 * child, or the process itself with -f, gets CLI_OK and *@ready_fd to
 * report on (-1 in the foreground).
 */
static int mount_detach(const struct mount_args *a, int *ready_fd, bool *parent)
{
	unsigned char code;
	int p[2], status;
	pid_t pid;

	*ready_fd = -1;
	*parent = false;
	if (a->ma_foreground)
		return CLI_OK;
	if (pipe2(p, O_CLOEXEC) < 0 || (pid = fork()) < 0) {
		cli_err("cannot start the daemon: %s", strerror(errno));
		return CLI_FAIL;
	}
	if (pid == 0) {
		close(p[0]);
		setsid();
		*ready_fd = p[1];
		return CLI_OK;
	}
	*parent = true;
	close(p[1]);
	if (read(p[0], &code, 1) == 1) {
		close(p[0]);
		return code;
	}
	close(p[0]);
	/* the child died without a word: its own exit code, if any */
	if (waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status))
		return WEXITSTATUS(status);
	cli_err("the daemon died before mounting");
	return CLI_FAIL;
}

/* Report @code to the waiting parent (if any). */
static void mount_report(int *ready_fd, unsigned char code)
{
	if (*ready_fd < 0)
		return;
	if (write(*ready_fd, &code, 1) != 1) {
		/* the parent is gone; nothing to tell */
	}
	close(*ready_fd);
	*ready_fd = -1;
}

/* Mounted: tell the parent, and (a daemon) let go of the terminal. */
static void mount_ready(const struct mount_args *a, int *ready_fd)
{
	int fd;

	if (a->ma_foreground)
		return;
	openlog("cairn", LOG_PID, LOG_DAEMON);
	if (chdir("/") < 0) {
		/* "/" always exists; nothing depends on the directory */
	}
	fd = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (fd >= 0) {
		dup2(fd, STDIN_FILENO);
		dup2(fd, STDOUT_FILENO);
		dup2(fd, STDERR_FILENO);
		if (fd > STDERR_FILENO)
			close(fd);
	}
	mount_report(ready_fd, CLI_OK);
}

/* An error once the volume is served: stderr, and syslog for a daemon. */
static void mount_late_err(const struct mount_args *a, const char *what, int err)
{
	cli_err("%s %s: %s", what, a->ma_image, cli_strerror(err));
	if (!a->ma_foreground)
		syslog(LOG_ERR, "%s %s: %s", what, a->ma_image, cli_strerror(err));
}

/* The error line for a failed cfuse_mount; the exit code. */
static int mount_fail(const struct mount_args *a, const struct cfuse_err *e)
{
	const char *why = e->ce_msg[0] ? e->ce_msg : cli_strerror(e->ce_err);

	switch (e->ce_step) {
	case CFUSE_STEP_OPTIONS:
		return cli_usage_err("bad mount options: %s", why);
	case CFUSE_STEP_IMAGE:
		if (e->ce_err == -EBUSY && a->ma_snapshot)
			cli_err("%s: snapshot '%s' is being deleted, or the image is open in "
				"a cairn process other than a mount",
				a->ma_image, a->ma_snapshot);
		else if (e->ce_err == -EBUSY && a->ma_checkpoint)
			cli_err("%s is in use: a checkpoint mounts only while nothing writes the "
				"image (pin it as a snapshot through the mount instead)",
				a->ma_image);
		else if (e->ce_err == -EBUSY)
			cli_err("%s is in use: mounted, or open in another cairn process",
				a->ma_image);
		else if (e->ce_err == -ENOENT && a->ma_snapshot)
			cli_err("%s has no snapshot named '%s'", a->ma_image, a->ma_snapshot);
		else if (e->ce_err == -ENOENT && a->ma_checkpoint)
			cli_err("%s: checkpoint %" PRIu64 " is not readable (any more); see cairn "
				"snapshot checkpoints %s",
				a->ma_image, a->ma_checkpoint, a->ma_image);
		else
			cli_err("cannot open %s: %s", a->ma_image, cli_strerror(e->ce_err));
		return CLI_FAIL;
	case CFUSE_STEP_MOUNT:
		cli_err("cannot mount %s on %s: %s", a->ma_image, a->ma_dir, why);
		return CLI_FAIL;
	default:
		cli_err("cannot mount %s: %s", a->ma_image, cli_strerror(e->ce_err));
		return CLI_FAIL;
	}
}

/*
 * cfuse_mount; an image locked by no mount (the daemon of a mount just
 * unmounted is still committing) is tried again for a bounded time, so
 * that `umount DIR && mount DIR` works. Invariant (2).
 */
static int mount_open(const struct cfuse_opts *o, struct cfuse **f, struct cfuse_err *e)
{
	int err;

	for (unsigned tries = 0;; tries++) {
		err = cfuse_mount(o, f, e);
		if (err != -EBUSY || e->ce_step != CFUSE_STEP_IMAGE ||
		    !cli_wait_unmounted(o->cfo_image, tries))
			return err;
	}
}

/* Mount and serve; the exit code (invariant 3). */
static int mount_serve(const struct mount_args *a, const struct cfuse_opts *o, int *ready_fd)
{
	struct cfuse_err e;
	struct cfuse *f;
	int err, ret = CLI_OK;

	err = mount_open(o, &f, &e);
	if (err)
		return mount_fail(a, &e);
	mount_ready(a, ready_fd);
	err = cfuse_run(f);
	if (err) {
		mount_late_err(a, "serving", err);
		ret = CLI_FAIL;
	}
	err = cfuse_unmount(f);
	if (err) {
		mount_late_err(a, "final commit of", err);
		ret = CLI_FAIL;
	}
	return ret;
}

static int mount_run(int argc, char **argv)
{
	char image[PATH_MAX], dir[PATH_MAX];
	struct mount_args a;
	struct cfuse_opts o;
	int ret, ready_fd;
	bool parent;

	ret = mount_parse(argc, argv, &a);
	if (ret != CLI_OK || a.ma_help) {
		if (a.ma_help && ret == CLI_OK)
			mount_help();
		return ret;
	}
	cli_log_setup();
	ret = mount_check_image(a.ma_image, image);
	if (ret == CLI_OK)
		ret = mount_check_dir(a.ma_dir, dir);
	if (ret != CLI_OK)
		return ret;
	ret = mount_detach(&a, &ready_fd, &parent);
	if (ret != CLI_OK || parent)
		return ret;
	o = (struct cfuse_opts){
	    .cfo_image = image,
	    .cfo_mountpoint = dir,
	    .cfo_read_only = a.ma_read_only || a.ma_snapshot || a.ma_checkpoint,
	    .cfo_writeback_cache = a.ma_writeback_cache,
	    .cfo_spin_us = a.ma_spin_us,
	    .cfo_snapshot = a.ma_snapshot,
	    .cfo_checkpoint = a.ma_checkpoint,
	    .cfo_protect_s = a.ma_protect_s,
	    .cfo_allow_other = a.ma_allow_other,
	    .cfo_debug = a.ma_debug,
	    .cfo_fuse_opts = a.ma_extra,
	    .cfo_commit_ms = a.ma_commit_ms,
	};
	ret = mount_serve(&a, &o, &ready_fd);
	mount_report(&ready_fd, (unsigned char)ret); /* a failure before mount_ready */
	return ret;
}

const struct cli_cmd cli_cmd_mount = {
    .cc_name = "mount",
    .cc_summary = "mount a cairn volume through FUSE",
    .cc_help = mount_help,
    .cc_run = mount_run,
};

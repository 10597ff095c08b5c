/*
 * cli.h - what the `cairn` command's subcommands share.
 *
 * The command is a table of subcommands (cairn.c): `cairn CMD ARGS...`
 * finds CMD in cli_cmds[] and calls its run function with argv[0] = CMD.
 * A new subcommand (fsck, mount, snapshot, ...) is one file defining a
 * `const struct cli_cmd cli_cmd_<name>` and one line in that table.
 *
 * Conventions every subcommand follows
 *   (1) Exit codes: CLI_OK (0) success; CLI_FAIL (1) an operational error
 *       (I/O, busy, not a cairn volume, corrupt, refused to overwrite);
 *       CLI_USAGE (2) the command line is wrong. The rule: 2 if checking
 *       the arguments alone shows the problem, 1 if it took looking at
 *       the image.
 *   (2) Every error is one line on stderr, "cairn CMD: ...", printed by
 *       cli_err (usage errors by cli_usage_err, which adds a pointer to
 *       --help). Results go to stdout.
 *   (3) The library's own log lines are silenced unless -v is given
 *       (cli_verbose); with -v they appear on stderr as the library
 *       writes them.
 *   (4) Only public library headers (log.h, vol.h, bdev.h, util.h) are
 *       used: the tool re-implements nothing of the format.
 */
#ifndef CAIRN_CLI_H
#define CAIRN_CLI_H

#include <stdbool.h>
#include <stdint.h>

#include "bdev/bdev.h"

enum cli_exit {
	CLI_OK = 0,
	CLI_FAIL = 1,
	CLI_USAGE = 2,
};

struct cli_cmd {
	const char *cc_name;		      /* "mkfs" */
	const char *cc_summary;		      /* one line for `cairn --help` */
	void (*cc_help)(void);		      /* full help on stdout */
	int (*cc_run)(int argc, char **argv); /* argv[0] is cc_name; returns enum cli_exit */
};

extern const struct cli_cmd cli_cmd_mkfs;
extern const struct cli_cmd cli_cmd_info;
extern const struct cli_cmd cli_cmd_df;
extern const struct cli_cmd cli_cmd_fsck;
extern const struct cli_cmd cli_cmd_snapshot;
extern const struct cli_cmd cli_cmd_mount; /* built with libfuse3 (CAIRN_HAVE_MOUNT) */

/* The help text's exit code paragraph, shared by every help page. */
extern const char cli_exit_help[];

/* The subcommand being run ("cairn CMD: " prefix); NULL before dispatch. */
void cli_set_cmd(const char *name);
/* One error line on stderr: "cairn CMD: <fmt>". */
void cli_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* A usage error line, ending with a pointer to --help; returns CLI_USAGE. */
int cli_usage_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/*
 * The usage error for what getopt_long (optstring starting with ':',
 * opterr 0) returned as @c: a missing argument or an unknown option.
 * Returns CLI_USAGE.
 */
int cli_opt_err(int c, char **argv);
/* Raise the verbosity by one (each -v): 1 shows the library's warnings
 * and errors, 2 its info lines, 3 and more its debug lines. */
void cli_verbose(void);
/* Install the library log sink for the current verbosity. */
void cli_log_setup(void);

/*
 * Parse a size: decimal digits and an optional K, M, G or T suffix
 * (powers of 1024, either case). -EINVAL for anything else, -ERANGE if
 * the bytes do not fit in an off_t.
 */
int cli_parse_size(const char *s, uint64_t *bytes);
/* "20 MiB", "4 KiB", "1536 B": @bytes with the largest exact unit. */
const char *cli_size_str(uint64_t bytes, char *buf, size_t len);
/* The RFC 4122 text form of @uuid; @buf holds at least 37 bytes. */
const char *cli_uuid_str(const uint8_t uuid[16], char *buf);
/* The message for a library error (-EUCLEAN reads "corrupt"). */
const char *cli_strerror(int err);

/*
 * Find a cairn volume on @path: try each block size the format allows
 * (the superblock's own block size must match the device's) and return
 * the block size that log_probe accepts in *@block_size, or 0 if none
 * does. Opens @path read-only without a lock. 0, or the -errno of the
 * first open that failed for a reason other than size (-ENOENT, -EACCES).
 */
int cli_find_volume(const char *path, uint32_t *block_size);
/*
 * cli_find_volume, then open the image with its block size and @flags
 * (BDEV_RDONLY, BDEV_EXCL_LOCK, BDEV_SHARED_LOCK): 0 and *d, or a
 * negative errno after one error line (not a cairn volume, in use,
 * unreadable). A lock held by no mount is waited for, a bounded time
 * (cli_wait_unmounted), so that `umount DIR && cairn fsck IMAGE` works.
 */
int cli_open_volume(const char *path, unsigned flags, struct bdev **d);
/* Seconds the tools that write a volume (mount, snapshot) keep emptied
 * space for recent checkpoints (cairn_open_opts.coo_protect_s): with none,
 * opening a volume to write would drop every checkpoint before it. */
#define CLI_PROTECT_S 60u
/*
 * Tries of an open that found @image locked: -EBUSY (@image is an
 * absolute path) is worth another try, after a pause, while no cairn
 * daemon has @image mounted for writing (one that was unmounted is still
 * finishing its last commit) and fewer than CLI_BUSY_TRIES were made:
 * true after that pause; false: give up.
 */
#define CLI_BUSY_TRIES	  100 /* x 100 ms */
#define CLI_BUSY_PAUSE_NS (100 * 1000 * 1000)
bool cli_wait_unmounted(const char *image, unsigned tries);

#endif /* CAIRN_CLI_H */

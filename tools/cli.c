/*
 * cli.c - helpers shared by the `cairn` subcommands: error lines, the
 * library's log sink, sizes, uuids, and finding a volume's block size.
 *
 * Invariants
 *   (1) An error is one line: cli_err writes the prefix, the message and
 *       one newline in a single fprintf, and messages never contain a
 *       newline of their own.
 *   (2) cli_parse_size accepts only what it documents (no sign, no
 *       blanks, no hex, no fraction) and never overflows: the product
 *       is checked before it is formed.
 *   (3) cli_find_volume opens the image read-only and without the
 *       exclusive lock, so it may look at a mounted image; it never
 *       writes.
 *   (4) cli_open_volume waits for a locked image only while no cairn
 *       daemon has it mounted, and at most CLI_BUSY_TRIES pauses.
 *
 * State: the subcommand name and the verbosity, set once by the single
 * thread of main before the library is used; no locks.
 */
#include "cli.h"

#include "log/log.h"
#include "ns/ns.h"
#include "util/util.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static const char *cli_cmd_name; /* the subcommand, or NULL */
static int cli_verbosity;	 /* number of -v */

const char cli_exit_help[] =
    "Exit status:\n"
    "  0  success\n"
    "  1  operational error: I/O, image busy or missing, not a cairn volume,\n"
    "     corrupt, refused to overwrite\n"
    "  2  usage error: bad option, argument or number\n";

void cli_set_cmd(const char *name)
{
	cli_cmd_name = name;
}

static void cli_verr(const char *fmt, va_list ap, const char *tail)
{
	char msg[512];

	vsnprintf(msg, sizeof(msg), fmt, ap);
	if (cli_cmd_name)
		fprintf(stderr, "cairn %s: %s%s\n", cli_cmd_name, msg, tail);
	else
		fprintf(stderr, "cairn: %s%s\n", msg, tail);
}

void cli_err(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	cli_verr(fmt, ap, "");
	va_end(ap);
}

int cli_usage_err(const char *fmt, ...)
{
	char tail[64];
	va_list ap;

	snprintf(tail, sizeof(tail), " (see cairn %s%s--help)", cli_cmd_name ? cli_cmd_name : "",
		 cli_cmd_name ? " " : "");
	va_start(ap, fmt);
	cli_verr(fmt, ap, tail);
	va_end(ap);
	return CLI_USAGE;
}

int cli_opt_err(int c, char **argv)
{
	if (c == ':')
		return cli_usage_err("option '%s' needs an argument", argv[optind - 1]);
	if (optopt)
		return cli_usage_err("unknown option '-%c'", optopt);
	return cli_usage_err("unknown option '%s'", argv[optind - 1]);
}

/* ---- the library's log lines ------------------------------------------------ */

static void cli_log_discard(enum log_level level, const char *line, void *arg)
{
	(void)level;
	(void)line;
	(void)arg;
}

void cli_verbose(void)
{
	cli_verbosity++;
}

void cli_log_setup(void)
{
	if (cli_verbosity == 0) {
		cairn_log_set_level(LOG_ERR);
		cairn_log_set_sink(cli_log_discard, NULL);
		return;
	}
	cairn_log_set_sink(NULL, NULL);
	if (cli_verbosity == 1)
		cairn_log_set_level(LOG_WARN);
	else if (cli_verbosity == 2)
		cairn_log_set_level(LOG_INFO);
	else
		cairn_log_set_level(LOG_DEBUG);
}

/* ---- sizes, uuids, errors --------------------------------------------------- */

static int cli_size_shift(char c)
{
	switch (c) {
	case 'k':
	case 'K':
		return 10;
	case 'm':
	case 'M':
		return 20;
	case 'g':
	case 'G':
		return 30;
	case 't':
	case 'T':
		return 40;
	default:
		return -1;
	}
}

int cli_parse_size(const char *s, uint64_t *bytes)
{
	uint64_t v = 0;
	const char *p;
	int shift = 0;

	if (!s || *s < '0' || *s > '9')
		return -EINVAL;
	for (p = s; *p >= '0' && *p <= '9'; p++) {
		if (v > (UINT64_MAX - (uint64_t)(*p - '0')) / 10)
			return -ERANGE;
		v = v * 10 + (uint64_t)(*p - '0');
	}
	if (*p) {
		shift = cli_size_shift(*p);
		if (shift < 0 || p[1])
			return -EINVAL;
	}
	if (v > ((uint64_t)INT64_MAX >> shift))
		return -ERANGE;
	*bytes = v << shift;
	return 0;
}

const char *cli_size_str(uint64_t bytes, char *buf, size_t len)
{
	static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
	unsigned u = 0;

	while (bytes && !(bytes & 1023) && u + 1 < ARRAY_SIZE(units)) {
		bytes >>= 10;
		u++;
	}
	snprintf(buf, len, "%" PRIu64 " %s", bytes, units[u]);
	return buf;
}

const char *cli_uuid_str(const uint8_t uuid[16], char *buf)
{
	char *p = buf;

	for (int i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			*p++ = '-';
		p += sprintf(p, "%02x", uuid[i]);
	}
	return buf;
}

const char *cli_strerror(int err)
{
	if (err == -EUCLEAN)
		return "corrupt (structure needs cleaning)";
	return strerror(-err);
}

/* ---- finding a volume ------------------------------------------------------- */

/* Every block size the format allows, the default first. */
static const uint32_t cli_block_sizes[] = {4096, 512, 1024, 2048, 8192, 16384, 32768, 65536};

int cli_find_volume(const char *path, uint32_t *block_size)
{
	struct bdev *d;
	bool found;
	int err;

	*block_size = 0;
	for (size_t i = 0; i < ARRAY_SIZE(cli_block_sizes); i++) {
		err = bdev_open_file(path, cli_block_sizes[i], 0, BDEV_RDONLY, &d);
		if (err == -EINVAL) /* smaller than one block of this size */
			continue;
		if (err)
			return err;
		found = log_probe(d);
		bdev_close(d);
		if (found) {
			*block_size = cli_block_sizes[i];
			return 0;
		}
	}
	return 0;
}

/* ns_daemon_each: one is enough. */
static int cli_daemon_found(void *arg, const char *dir)
{
	(void)arg;
	(void)dir;
	return 1;
}

bool cli_wait_unmounted(const char *image, unsigned tries)
{
	struct timespec pause = {.tv_nsec = CLI_BUSY_PAUSE_NS};

	/* < 0 from ns_daemon_each: cannot tell; do not wait */
	if (tries >= CLI_BUSY_TRIES || ns_daemon_each(image, cli_daemon_found, NULL) != 0)
		return false;
	nanosleep(&pause, NULL);
	return true;
}

int cli_open_volume(const char *path, unsigned flags, struct bdev **d)
{
	char abs[PATH_MAX];
	uint32_t bs;
	int err = cli_find_volume(path, &bs);

	if (!err && !bs) {
		cli_err("%s is not a cairn volume (no valid superblock)", path);
		return -EUCLEAN;
	}
	for (unsigned tries = 0; !err; tries++) {
		err = bdev_open_file(path, bs, 0, flags, d);
		if (err != -EBUSY || !realpath(path, abs) || !cli_wait_unmounted(abs, tries))
			break;
		err = 0;
	}
	if (err == -EBUSY)
		cli_err("cannot open %s: in use (mounted, or open in another cairn process)", path);
	else if (err)
		cli_err("cannot %s %s: %s", (flags & BDEV_RDONLY) ? "read" : "open", path,
			cli_strerror(err));
	return err;
}

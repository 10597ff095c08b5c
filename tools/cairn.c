/*
 * cairn.c - the `cairn` command: global options and the dispatch to a
 * subcommand.
 *
 *   cairn [-v] [--help | --version] CMD [ARGS...]
 *   cairn help [CMD]
 *
 * main parses the global options (stopping at the first operand, so a
 * subcommand's options are its own), finds CMD in cli_cmds[] and runs it
 * with argv[0] = CMD and getopt reset. Each subcommand lives in its own
 * file (cmd_<name>.c) and exports one struct cli_cmd; adding one is a
 * line in cli_cmds[] and a line in meson.build.
 *
 * Invariants
 *   (1) Whatever happens, main returns an enum cli_exit: 0 ok, 1
 *       operational error, 2 usage error (cli.h).
 *   (2) The library's log is set up (cli_log_setup) before any
 *       subcommand touches the library, and only once the verbosity is
 *       known: global -v and the subcommand's -v both count.
 */
#include "cli.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

#ifndef CAIRN_VERSION
#define CAIRN_VERSION "unknown"
#endif

static const struct cli_cmd *const cli_cmds[] = {
    &cli_cmd_mkfs,  &cli_cmd_info, &cli_cmd_df, &cli_cmd_fsck, &cli_cmd_snapshot,
#ifdef CAIRN_HAVE_MOUNT
    &cli_cmd_mount,
#endif
};

static const struct cli_cmd *cli_cmd_find(const char *name)
{
	for (size_t i = 0; i < sizeof(cli_cmds) / sizeof(cli_cmds[0]); i++)
		if (!strcmp(cli_cmds[i]->cc_name, name))
			return cli_cmds[i];
	return NULL;
}

static void cli_help(void)
{
	printf("Usage: cairn [-v] COMMAND [ARGS...]\n"
	       "       cairn help [COMMAND] | --help | --version\n"
	       "\n"
	       "cairn: a copy-on-write, log-structured filesystem.\n"
	       "\n"
	       "Commands:\n");
	for (size_t i = 0; i < sizeof(cli_cmds) / sizeof(cli_cmds[0]); i++)
		printf("  %-10s %s\n", cli_cmds[i]->cc_name, cli_cmds[i]->cc_summary);
	printf("\n"
	       "Options:\n"
	       "  -v, --verbose  show the library's log lines (repeat for more)\n"
	       "  -h, --help     show this help\n"
	       "  -V, --version  show the version\n"
	       "\n"
	       "`cairn COMMAND --help` describes a command.\n"
	       "\n"
	       "%s",
	       cli_exit_help);
}

/* `cairn help [CMD]` */
static int cli_help_cmd(int argc, char **argv)
{
	const struct cli_cmd *c;

	if (argc < 2) {
		cli_help();
		return CLI_OK;
	}
	if (argc > 2)
		return cli_usage_err("help takes at most one command");
	c = cli_cmd_find(argv[1]);
	if (!c)
		return cli_usage_err("unknown command '%s'", argv[1]);
	c->cc_help();
	return CLI_OK;
}

static int cli_dispatch(int argc, char **argv)
{
	const struct cli_cmd *c;

	if (!strcmp(argv[0], "help"))
		return cli_help_cmd(argc, argv);
	c = cli_cmd_find(argv[0]);
	if (!c)
		return cli_usage_err("unknown command '%s'", argv[0]);
	cli_set_cmd(c->cc_name);
	optind = 0; /* glibc: full reinitialisation for the subcommand */
	return c->cc_run(argc, argv);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"help", no_argument, NULL, 'h'},
	    {"version", no_argument, NULL, 'V'},
	    {"verbose", no_argument, NULL, 'v'},
	    {NULL, 0, NULL, 0},
	};
	int c;

	opterr = 0;
	while ((c = getopt_long(argc, argv, "+:hVv", opts, NULL)) != -1) {
		switch (c) {
		case 'h':
			cli_help();
			return CLI_OK;
		case 'V':
			printf("cairn %s\n", CAIRN_VERSION);
			return CLI_OK;
		case 'v':
			cli_verbose();
			break;
		default:
			return cli_opt_err(c, argv);
		}
	}
	if (optind >= argc)
		return cli_usage_err("no command given");
	return cli_dispatch(argc - optind, argv + optind);
}

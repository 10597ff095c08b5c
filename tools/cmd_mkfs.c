/*
 * cmd_mkfs.c - `cairn mkfs`: create an empty cairn volume on an image
 * file or a block device.
 *
 *   mkfs_parse        options -> struct mkfs_args (usage errors: exit 2)
 *   mkfs_create       a missing image: created empty (O_EXCL), then
 *                     handled as an existing one of size 0
 *   mkfs_claim        exclusive lock (bdev_open_file, BDEV_EXCL_LOCK, at
 *                     512-byte blocks, which fit any image) -> size ->
 *                     overwrite checks -> grow a regular file to --size
 *   mkfs_format       reopen at the volume's block size with the lock,
 *                     vol_mkfs, read the geometry back, print a summary
 *
 * Size rules
 *   - A missing file is created sparse with --size (required then).
 *   - An existing regular file is grown to --size if that is larger;
 *     --size smaller than the file is refused (mkfs never shrinks).
 *   - A block device's size is its own: --size, if given, must equal it.
 *   - --size must be a whole number of blocks; the volume then takes the
 *     whole image (log_format uses every whole block of the device).
 *
 * Invariants
 *   (1) Nothing is written to an image before every check has passed:
 *       it is not locked by another cairn process, log_probe finds no
 *       cairn superblock at any block size, and libblkid finds no
 *       filesystem, RAID/crypto signature or partition table (unless
 *       --force). Growing a regular file only appends zeros, and happens
 *       after the checks.
 *   (2) The lock is held from the checks to the end of the format except
 *       between mkfs_claim and mkfs_format (a close and a reopen); a
 *       process that takes the image in that window makes the reopen
 *       fail with "in use", and nothing is formatted.
 *   (3) An image this command created is removed again if it fails.
 *   (4) A missing or tiny (< 512 bytes) file cannot be locked through a
 *       bdev; it cannot hold a volume either, so it needs no lock until
 *       it is grown and reopened.
 */
#include "cli.h"
#include "ns/ns.h"

#include "log/log.h"
#include "vol/vol.h"

#include <blkid.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Limits of the format (docs/FORMAT.md, "Superblock" and "Segments"). */
#define MKFS_BLOCK_MIN	       512u
#define MKFS_BLOCK_MAX	       65536u
#define MKFS_BLOCK_DEFAULT     4096u
#define MKFS_SEG_BLOCKS_MIN    16u
#define MKFS_SEG_BYTES_MAX     (256ull << 20)
#define MKFS_SEG_BYTES_DEFAULT (4ull << 20)
#define MKFS_LABEL_MAX	       63u
#define MKFS_MIN_SEGMENTS      4u
#define MKFS_FIXED_BLOCKS      3u /* superblock A, checkpoint slots A and B */

struct mkfs_args {
	const char *ma_path;
	uint64_t ma_size; /* bytes; 0: not given */
	uint32_t ma_block_size;
	uint64_t ma_seg_bytes;
	const char *ma_label; /* NULL: none */
	bool ma_force;
	bool ma_help;
};

static void mkfs_help(void)
{
	printf("Usage: cairn mkfs [OPTIONS] IMAGE\n"
	       "\n"
	       "Create an empty cairn volume on IMAGE, a regular file or a block device.\n"
	       "A missing file is created (sparse) with --size; an existing file is grown\n"
	       "to --size if that is larger, never shrunk; a block device keeps its own\n"
	       "size (--size, if given, must equal it). The volume takes the whole image.\n"
	       "\n"
	       "IMAGE is refused if it is in use by another cairn process, or if it\n"
	       "holds a cairn volume, another filesystem, a RAID or crypto signature or\n"
	       "a partition table, unless --force is given.\n"
	       "\n"
	       "Options:\n"
	       "  -s, --size SIZE          image size (needed to create IMAGE)\n"
	       "  -b, --block-size N       block size, a power of two from 512 to 64K\n"
	       "                           (default 4096)\n"
	       "  -S, --segment-size SIZE  segment size, a power of two of at least 16\n"
	       "                           blocks and at most 256M (default 4M)\n"
	       "  -L, --label LABEL        volume label, at most 63 bytes\n"
	       "  -f, --force              overwrite whatever IMAGE holds\n"
	       "  -v, --verbose            show the library's log lines\n"
	       "  -h, --help               show this help\n"
	       "\n"
	       "SIZE is a number of bytes with an optional suffix K, M, G or T (powers\n"
	       "of 1024). A volume needs room for 4 segments and a few fixed blocks.\n"
	       "\n"
	       "%s",
	       cli_exit_help);
}

/* ---- arguments ---------------------------------------------------------------- */

static bool mkfs_pow2(uint64_t x)
{
	return x && !(x & (x - 1));
}

/* Parse the SIZE of option @opt into *@bytes; CLI_OK or CLI_USAGE. */
static int mkfs_parse_size(const char *opt, const char *arg, uint64_t *bytes)
{
	int err = cli_parse_size(arg, bytes);

	if (err == -ERANGE)
		return cli_usage_err("%s '%s' is too large", opt, arg);
	if (err)
		return cli_usage_err(
		    "%s '%s' is not a size (a number, optionally with K, M, G or T)", opt, arg);
	if (!*bytes)
		return cli_usage_err("%s must not be zero", opt);
	return CLI_OK;
}

/* The arguments checked against each other (everything that needs no image). */
static int mkfs_check_args(const struct mkfs_args *a)
{
	uint64_t bs = a->ma_block_size;

	if (!mkfs_pow2(bs) || bs < MKFS_BLOCK_MIN || bs > MKFS_BLOCK_MAX)
		return cli_usage_err(
		    "--block-size %" PRIu64 " is not a power of two from 512 to 65536", bs);
	if (!mkfs_pow2(a->ma_seg_bytes) || a->ma_seg_bytes < MKFS_SEG_BLOCKS_MIN * bs ||
	    a->ma_seg_bytes > MKFS_SEG_BYTES_MAX)
		return cli_usage_err("--segment-size %" PRIu64
				     " is not a power of two from 16 blocks (%" PRIu64 ") to 256M",
				     a->ma_seg_bytes, MKFS_SEG_BLOCKS_MIN * bs);
	if (a->ma_size % bs)
		return cli_usage_err("--size %" PRIu64 " is not a whole number of %" PRIu64
				     "-byte blocks",
				     a->ma_size, bs);
	if (a->ma_label && strlen(a->ma_label) > MKFS_LABEL_MAX)
		return cli_usage_err("--label is longer than %u bytes", MKFS_LABEL_MAX);
	return CLI_OK;
}

static int mkfs_parse_opt(int c, struct mkfs_args *a, char **argv)
{
	uint64_t v;
	int ret;

	switch (c) {
	case 's':
		return mkfs_parse_size("--size", optarg, &a->ma_size);
	case 'b':
		ret = mkfs_parse_size("--block-size", optarg, &v);
		if (ret == CLI_OK && v > UINT32_MAX)
			return cli_usage_err("--block-size '%s' is too large", optarg);
		a->ma_block_size = (uint32_t)v;
		return ret;
	case 'S':
		return mkfs_parse_size("--segment-size", optarg, &a->ma_seg_bytes);
	case 'L':
		a->ma_label = optarg;
		return CLI_OK;
	case 'f':
		a->ma_force = true;
		return CLI_OK;
	case 'v':
		cli_verbose();
		return CLI_OK;
	case 'h':
		a->ma_help = true;
		return CLI_OK;
	default:
		return cli_opt_err(c, argv);
	}
}

static int mkfs_parse(int argc, char **argv, struct mkfs_args *a)
{
	static const struct option opts[] = {
	    {"size", required_argument, NULL, 's'},
	    {"block-size", required_argument, NULL, 'b'},
	    {"segment-size", required_argument, NULL, 'S'},
	    {"label", required_argument, NULL, 'L'},
	    {"force", no_argument, NULL, 'f'},
	    {"verbose", no_argument, NULL, 'v'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	int c, ret;

	*a = (struct mkfs_args){.ma_block_size = MKFS_BLOCK_DEFAULT,
				.ma_seg_bytes = MKFS_SEG_BYTES_DEFAULT};
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":s:b:S:L:fvh", opts, NULL)) != -1) {
		ret = mkfs_parse_opt(c, a, argv);
		if (ret != CLI_OK)
			return ret;
	}
	if (a->ma_help)
		return CLI_OK;
	if (optind >= argc)
		return cli_usage_err("no IMAGE given");
	if (optind + 1 < argc)
		return cli_usage_err("unexpected argument '%s'", argv[optind + 1]);
	a->ma_path = argv[optind];
	return mkfs_check_args(a);
}

/* ---- checking what the image holds -------------------------------------------- */

static const char *mkfs_article(const char *word)
{
	return strchr("aeiouAEIOU", word[0]) && word[0] ? "an" : "a";
}

/* Report the signature libblkid found in @pr; CLI_FAIL. */
static int mkfs_refuse_blkid(const char *path, blkid_probe pr)
{
	const char *type = NULL, *usage = NULL;

	if (!blkid_probe_lookup_value(pr, "TYPE", &type, NULL)) {
		if (blkid_probe_lookup_value(pr, "USAGE", &usage, NULL) || !strcmp(usage, "other"))
			usage = "signature";
		cli_err("%s holds %s %s %s (use --force to overwrite)", path, mkfs_article(type),
			type, usage);
	} else if (!blkid_probe_lookup_value(pr, "PTTYPE", &type, NULL)) {
		cli_err("%s holds %s %s partition table (use --force to overwrite)", path,
			mkfs_article(type), type);
	} else {
		cli_err("%s holds an unnamed signature (use --force to overwrite)", path);
	}
	return CLI_FAIL;
}

/* Refuse if libblkid recognises a filesystem or partition table on @path. */
static int mkfs_check_blkid(const char *path)
{
	blkid_probe pr;
	int rc, ret = CLI_OK;

	pr = blkid_new_probe_from_filename(path);
	if (!pr) {
		cli_err("cannot probe %s: %s", path, strerror(errno ? errno : EIO));
		return CLI_FAIL;
	}
	blkid_probe_enable_superblocks(pr, 1);
	blkid_probe_set_superblocks_flags(pr, BLKID_SUBLKS_TYPE | BLKID_SUBLKS_USAGE);
	blkid_probe_enable_partitions(pr, 1);
	blkid_probe_set_partitions_flags(pr, BLKID_PARTS_MAGIC);
	rc = blkid_do_safeprobe(pr);
	if (rc == 0) {
		ret = mkfs_refuse_blkid(path, pr);
	} else if (rc == -2) {
		cli_err("%s holds several conflicting signatures (use --force to overwrite)", path);
		ret = CLI_FAIL;
	} else if (rc < 0) {
		cli_err("cannot probe %s: %s", path, strerror(errno ? errno : EIO));
		ret = CLI_FAIL;
	}
	blkid_free_probe(pr);
	return ret;
}

/* The overwrite checks of invariant (1); CLI_OK if IMAGE may be formatted. */
static int mkfs_check_content(const struct mkfs_args *a)
{
	uint32_t bs;
	int err;

	if (a->ma_force)
		return CLI_OK;
	err = cli_find_volume(a->ma_path, &bs);
	if (err) {
		cli_err("cannot read %s: %s", a->ma_path, cli_strerror(err));
		return CLI_FAIL;
	}
	if (bs) {
		cli_err("%s holds a cairn volume (use --force to overwrite)", a->ma_path);
		return CLI_FAIL;
	}
	return mkfs_check_blkid(a->ma_path);
}

/* ---- sizing ------------------------------------------------------------------- */

/* Create the missing image @a->ma_path empty; *@created says if this call did. */
static int mkfs_create(const struct mkfs_args *a, bool *created)
{
	int fd;

	*created = false;
	if (!a->ma_size)
		return cli_usage_err("%s does not exist; --size is needed to create it",
				     a->ma_path);
	fd = open(a->ma_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0 && errno == EEXIST) /* appeared meanwhile: treat it as existing */
		return CLI_OK;
	if (fd < 0) {
		cli_err("cannot create %s: %s", a->ma_path, strerror(errno));
		return CLI_FAIL;
	}
	close(fd);
	*created = true;
	return CLI_OK;
}

/*
 * The size IMAGE will have, from its current @cur bytes (@blk: a block
 * device) and --size; CLI_FAIL with a message if they conflict.
 */
static int mkfs_target_size(const struct mkfs_args *a, bool blk, uint64_t cur, uint64_t *size)
{
	char b1[32], b2[32];

	*size = a->ma_size ? a->ma_size : cur;
	if (blk && a->ma_size && a->ma_size != cur) {
		cli_err("%s is a block device of %s; --size %s differs (omit --size)", a->ma_path,
			cli_size_str(cur, b1, sizeof(b1)),
			cli_size_str(a->ma_size, b2, sizeof(b2)));
		return CLI_FAIL;
	}
	if (a->ma_size && a->ma_size < cur) {
		cli_err("%s is %s, larger than --size %s (mkfs does not shrink an image)",
			a->ma_path, cli_size_str(cur, b1, sizeof(b1)),
			cli_size_str(a->ma_size, b2, sizeof(b2)));
		return CLI_FAIL;
	}
	return CLI_OK;
}

/* What @path is: CLI_OK with *@blk and *@bytes (0 for a block device:
 * measured by mkfs_claim), CLI_FAIL for a missing path or another kind. */
static int mkfs_stat(const char *path, bool *blk, uint64_t *bytes)
{
	struct stat st;

	if (stat(path, &st) < 0) {
		cli_err("%s: %s", path, strerror(errno));
		return CLI_FAIL;
	}
	*blk = S_ISBLK(st.st_mode);
	*bytes = S_ISREG(st.st_mode) ? (uint64_t)st.st_size : 0;
	if (S_ISDIR(st.st_mode))
		cli_err("%s is a directory", path);
	else if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
		cli_err("%s is not a regular file or a block device", path);
	else
		return CLI_OK;
	return CLI_FAIL;
}

/* Open @path with the exclusive lock; NULL in *@d for an image under 512 bytes. */
static int mkfs_lock(const char *path, struct bdev **d)
{
	int err = bdev_open_file(path, MKFS_BLOCK_MIN, 0, BDEV_EXCL_LOCK, d);

	if (err == -EINVAL) { /* fewer than 512 bytes: invariant (4) */
		*d = NULL;
		return CLI_OK;
	}
	if (err == -EBUSY)
		cli_err("%s is in use by another cairn process", path);
	else if (err)
		cli_err("cannot open %s: %s", path, cli_strerror(err));
	return err ? CLI_FAIL : CLI_OK;
}

/*
 * Lock the image, find its size, run the overwrite checks and grow a
 * regular file to its target size. *@size is the image's size after.
 */
static int mkfs_claim(const struct mkfs_args *a, uint64_t *size)
{
	struct bdev *d;
	uint64_t cur;
	bool blk;
	int ret;

	ret = mkfs_stat(a->ma_path, &blk, &cur);
	if (ret == CLI_OK)
		ret = mkfs_lock(a->ma_path, &d);
	if (ret != CLI_OK)
		return ret;
	if (blk && d)
		cur = bdev_nblocks(d) * MKFS_BLOCK_MIN;
	ret = mkfs_target_size(a, blk, cur, size);
	if (ret == CLI_OK)
		ret = mkfs_check_content(a);
	if (ret == CLI_OK && !blk && *size > cur && truncate(a->ma_path, (off_t)*size) < 0) {
		cli_err("cannot grow %s: %s", a->ma_path, strerror(errno));
		ret = CLI_FAIL;
	}
	bdev_close(d);
	return ret;
}

/* ---- formatting --------------------------------------------------------------- */

/* The smallest image that holds 4 segments (docs/FORMAT.md, "Layout"). */
static uint64_t mkfs_min_bytes(const struct mkfs_args *a)
{
	uint64_t seg = a->ma_seg_bytes / a->ma_block_size;
	uint64_t seg_start = (MKFS_FIXED_BLOCKS + seg - 1) / seg * seg;

	return (seg_start + MKFS_MIN_SEGMENTS * seg + 1) * a->ma_block_size;
}

static void mkfs_summary(const struct mkfs_args *a, const struct log_geometry *g, uint64_t bytes)
{
	char b1[32], b2[32], b3[40];

	printf("created a cairn volume on %s\n"
	       "  size:         %s (%" PRIu64 " bytes)\n"
	       "  block size:   %" PRIu32 "\n"
	       "  segment size: %s (%" PRIu32 " blocks)\n"
	       "  segments:     %" PRIu64 "\n"
	       "  uuid:         %s\n"
	       "  label:        %s\n",
	       a->ma_path, cli_size_str(bytes, b1, sizeof(b1)), bytes, g->lg_block_size,
	       cli_size_str((uint64_t)g->lg_seg_blocks * g->lg_block_size, b2, sizeof(b2)),
	       g->lg_seg_blocks, g->lg_nsegments, cli_uuid_str(g->lg_uuid, b3),
	       a->ma_label ? a->ma_label : "(none)");
}

/* The refusal of an image of @bytes too small for a volume; CLI_FAIL. */
static int mkfs_too_small(const struct mkfs_args *a, uint64_t bytes)
{
	char b1[32], b2[32], b3[32];

	cli_err("%s is too small: %s holds fewer than 4 segments of %s (at least %s needed)",
		a->ma_path, cli_size_str(bytes, b1, sizeof(b1)),
		cli_size_str(a->ma_seg_bytes, b2, sizeof(b2)),
		cli_size_str(mkfs_min_bytes(a), b3, sizeof(b3)));
	return CLI_FAIL;
}

/* Format the locked device @d (taken over) as an empty filesystem and print what was made. */
static int mkfs_format_dev(const struct mkfs_args *a, struct bdev *d)
{
	struct vol_mkfs_opts o = {
	    .vmo_log = {
		.lfo_block_size = a->ma_block_size,
		.lfo_seg_blocks = (uint32_t)(a->ma_seg_bytes / a->ma_block_size),
		.lfo_label = a->ma_label,
	    }};
	uint64_t bytes = bdev_nblocks(d) * bdev_block_size(d);
	struct log *l;
	int err;

	err = ns_mkfs(d, &o); /* the arguments are checked: -EINVAL is the size */
	if (err == -EINVAL)
		return mkfs_too_small(a, bytes);
	if (!err)
		err = bdev_open_file(a->ma_path, a->ma_block_size, 0, BDEV_RDONLY, &d);
	if (!err) {
		err = log_open(d, &l);
		if (err)
			bdev_close(d);
	}
	if (err) {
		cli_err("cannot format %s: %s", a->ma_path, cli_strerror(err));
		return CLI_FAIL;
	}
	mkfs_summary(a, log_geometry(l), bytes);
	log_close(l);
	bdev_close(d);
	return CLI_OK;
}

static int mkfs_format(const struct mkfs_args *a, uint64_t size)
{
	struct bdev *d;
	int err;

	err = bdev_open_file(a->ma_path, a->ma_block_size, 0, BDEV_EXCL_LOCK, &d);
	if (err == -EINVAL) /* less than one block */
		return mkfs_too_small(a, size);
	if (err) {
		cli_err("cannot open %s: %s", a->ma_path,
			err == -EBUSY ? "in use by another cairn process" : cli_strerror(err));
		return CLI_FAIL;
	}
	if (bdev_pin_any(d) == -EBUSY) { /* its readers hold no lock, only pins */
		cli_err("%s is in use: a snapshot of it is mounted or open", a->ma_path);
		bdev_close(d);
		return CLI_FAIL;
	}
	return mkfs_format_dev(a, d);
}

static int mkfs_run(int argc, char **argv)
{
	struct mkfs_args a;
	bool created = false;
	uint64_t size;
	int ret;

	ret = mkfs_parse(argc, argv, &a);
	if (ret != CLI_OK || a.ma_help) {
		if (a.ma_help && ret == CLI_OK)
			mkfs_help();
		return ret;
	}
	cli_log_setup();
	if (access(a.ma_path, F_OK) < 0 && errno == ENOENT) {
		ret = mkfs_create(&a, &created);
		if (ret != CLI_OK)
			return ret;
	}
	ret = mkfs_claim(&a, &size);
	if (ret == CLI_OK)
		ret = mkfs_format(&a, size);
	if (ret != CLI_OK && created)
		unlink(a.ma_path);
	return ret;
}

const struct cli_cmd cli_cmd_mkfs = {
    .cc_name = "mkfs",
    .cc_summary = "create an empty cairn volume on an image file or block device",
    .cc_help = mkfs_help,
    .cc_run = mkfs_run,
};

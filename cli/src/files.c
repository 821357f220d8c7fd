/* sandpit cp and sandpit fs: files in a sandbox through the agent's files API
 * (docs/files.md). Directories travel as tar.gz, made and unpacked here with
 * libarchive; unpacking refuses "..", absolute names and paths through
 * symlinks. */
#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>

#include "cli.h"
#include "sandpit/macro.h"
#include "sandpit/util.h"

bool cli_remote_path(const char *s, char **ret_id, const char **ret_path)
{
        const char *colon = strchr(s, ':');
        if (!colon || colon == s || memchr(s, '/', (size_t) (colon - s)))
                return false;
        if (ret_id && !(*ret_id = strndup(s, (size_t) (colon - s))))
                return false;
        if (ret_path)
                *ret_path = colon + 1;
        return true;
}

/* r (< 0) from ctx->agent in ctx->error, unless an on_data callback already
 * said why. */
static int agent_failed(CliContext *ctx, int r)
{
        return ctx->error[0] ? r : cli_agent_error(ctx, r);
}

/* An unlinked temporary file for an archive: on disk under $TMPDIR (else
 * /var/tmp) when possible, else in memory. */
static int spool_fd(void)
{
        const char *dir = getenv("TMPDIR");
        int fd = open(dir && *dir ? dir : "/var/tmp", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
        return fd >= 0 ? fd : memfd_create("sandpit-cp", MFD_CLOEXEC);
}

/* --- local trees as tar.gz ------------------------------------------------------ */

static void archive_read_freep(struct archive **a)
{
        if (*a)
                archive_read_free(*a);
}

static void archive_write_freep(struct archive **a)
{
        if (*a)
                archive_write_free(*a);
}

#define cleanup_archive_read  __attribute__((cleanup(archive_read_freep)))
#define cleanup_archive_write __attribute__((cleanup(archive_write_freep)))

/* Packs the contents of dir (not following symlinks) as tar.gz into fd. */
static int pack_dir(CliContext *ctx, const char *dir, int fd)
{
        cleanup_archive_read struct archive *disk = archive_read_disk_new();
        cleanup_archive_write struct archive *out = archive_write_new();
        if (!disk || !out)
                return cli_set_error(ctx, -ENOMEM, "out of memory");
        (void) archive_read_disk_set_standard_lookup(disk);
        if (archive_write_set_format_pax_restricted(out) != ARCHIVE_OK ||
            archive_write_add_filter_gzip(out) != ARCHIVE_OK ||
            archive_write_open_fd(out, fd) != ARCHIVE_OK ||
            archive_read_disk_open(disk, dir) != ARCHIVE_OK)
                return cli_set_error(ctx, -EIO, "cannot read %s: %s", dir,
                                     archive_error_string(disk) ? archive_error_string(disk)
                                                                : archive_error_string(out));
        size_t prefix = strlen(dir);
        char buf[65536];
        for (;;) {
                struct archive_entry *e = archive_entry_new();
                if (!e)
                        return cli_set_error(ctx, -ENOMEM, "out of memory");
                int r = archive_read_next_header2(disk, e);
                if (r == ARCHIVE_EOF) {
                        archive_entry_free(e);
                        break;
                }
                if (r < ARCHIVE_WARN) {
                        (void) cli_set_error(ctx, -EIO, "cannot read %s: %s", dir,
                                             archive_error_string(disk));
                        archive_entry_free(e);
                        return -EIO;
                }
                (void) archive_read_disk_descend(disk);
                const char *full = archive_entry_pathname(e);
                const char *rel = full + (strncmp(full, dir, prefix) == 0 ? prefix : 0);
                while (*rel == '/')
                        rel++;
                if (!*rel) { /* the directory itself */
                        archive_entry_free(e);
                        continue;
                }
                cleanup_free char *src = strdup(archive_entry_sourcepath(e));
                cleanup_free char *relcopy = strdup(rel);
                archive_entry_set_pathname(e, relcopy);
                r = archive_write_header(out, e);
                if (r >= ARCHIVE_WARN && archive_entry_filetype(e) == AE_IFREG &&
                    archive_entry_size(e) > 0) {
                        cleanup_close int in = open(src, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
                        ssize_t n;
                        while (in >= 0 && (n = read(in, buf, sizeof(buf))) > 0)
                                (void) archive_write_data(out, buf, (size_t) n);
                }
                archive_entry_free(e);
                if (r < ARCHIVE_WARN)
                        return cli_set_error(ctx, -EIO, "cannot archive %s: %s", rel,
                                             archive_error_string(out));
        }
        if (archive_write_close(out) != ARCHIVE_OK)
                return cli_set_error(ctx, -EIO, "cannot write the archive: %s",
                                     archive_error_string(out));
        return 0;
}

/* Unpacks the tar.gz in fd into the current directory, refusing names that
 * would leave it. */
static int unpack_here(CliContext *ctx, int fd, const char *dir)
{
        cleanup_archive_read struct archive *in = archive_read_new();
        cleanup_archive_write struct archive *disk = archive_write_disk_new();
        if (!in || !disk)
                return cli_set_error(ctx, -ENOMEM, "out of memory");
        (void) archive_read_support_filter_gzip(in);
        (void) archive_read_support_format_tar(in);
        (void) archive_write_disk_set_options(disk, ARCHIVE_EXTRACT_TIME | ARCHIVE_EXTRACT_PERM |
                                                            ARCHIVE_EXTRACT_SECURE_NODOTDOT |
                                                            ARCHIVE_EXTRACT_SECURE_SYMLINKS |
                                                            ARCHIVE_EXTRACT_SECURE_NOABSOLUTEPATHS);
        if (lseek(fd, 0, SEEK_SET) < 0 || archive_read_open_fd(in, fd, 65536) != ARCHIVE_OK)
                return cli_set_error(ctx, -EIO, "cannot read the archive: %s",
                                     archive_error_string(in));
        struct archive_entry *e;
        int r;
        while ((r = archive_read_next_header(in, &e)) == ARCHIVE_OK) {
                const char *name = archive_entry_pathname(e);
                if (archive_write_header(disk, e) < ARCHIVE_WARN)
                        return cli_set_error(ctx, -EIO, "cannot write %s/%s: %s", dir, name,
                                             archive_error_string(disk));
                const void *buf;
                size_t len;
                la_int64_t off;
                while ((r = archive_read_data_block(in, &buf, &len, &off)) == ARCHIVE_OK)
                        if (archive_write_data_block(disk, buf, len, off) < ARCHIVE_WARN)
                                return cli_set_error(ctx, -EIO, "cannot write %s/%s: %s", dir, name,
                                                     archive_error_string(disk));
                if (r != ARCHIVE_EOF)
                        return cli_set_error(ctx, -EIO, "corrupt archive: %s",
                                             archive_error_string(in));
                (void) archive_write_finish_entry(disk);
        }
        if (r != ARCHIVE_EOF)
                return cli_set_error(ctx, -EIO, "corrupt archive: %s", archive_error_string(in));
        return archive_write_close(disk) == ARCHIVE_OK
                       ? 0
                       : cli_set_error(ctx, -EIO, "cannot finish %s: %s", dir,
                                       archive_error_string(disk));
}

static int unpack_into(CliContext *ctx, int fd, const char *dir)
{
        cleanup_close int cwd = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (cwd < 0 || chdir(dir) < 0)
                return cli_set_error(ctx, -errno, "%s: %s", dir, strerror(errno));
        int r = unpack_here(ctx, fd, dir);
        if (fchdir(cwd) < 0 && r == 0)
                r = cli_set_error(ctx, -errno, "cannot return to the working directory: %s",
                                  strerror(errno));
        return r;
}

/* --- cp ------------------------------------------------------------------------ */

typedef struct {
        CliContext *ctx;
        int fd;
        const char *name;
} Sink;

static int sink_write(const char *data, size_t len, void *userdata)
{
        Sink *s = userdata;
        int r = write_all(s->fd, data, len);
        return r < 0 ? cli_set_error(s->ctx, r, "cannot write %s: %s", s->name, strerror(-r)) : 0;
}

static const char *base_name(const char *p)
{
        const char *s = strrchr(p, '/');
        return s && s[1] ? s + 1 : p;
}

static int cp_to_sandbox(CliContext *ctx, const CliArgs *a, const char *local, const char *id,
                         const char *path)
{
        cleanup_free char *target = NULL;
        struct stat st;
        bool from_stdin = streq(local, "-");
        if (!from_stdin && stat(local, &st) < 0)
                return cli_set_error(ctx, -errno, "%s: %s", local, strerror(errno));
        if (!from_stdin && S_ISDIR(st.st_mode)) {
                cleanup_close int tmp = spool_fd();
                if (tmp < 0)
                        return cli_set_error(ctx, -errno, "temporary file: %s", strerror(errno));
                int r = pack_dir(ctx, local, tmp);
                if (r < 0)
                        return r;
                if (lseek(tmp, 0, SEEK_SET) < 0)
                        return cli_set_error(ctx, -errno, "temporary file: %s", strerror(errno));
                r = agent_client_archive_write_fd(ctx->agent, id, path, a->user, tmp, NULL);
                return r < 0 ? agent_failed(ctx, r) : 0;
        }
        size_t len = strlen(path);
        if (len == 0 || path[len - 1] == '/') {
                if (from_stdin)
                        return cli_set_error(ctx, -EINVAL,
                                             "cp: give the file name to write stdin to");
                if (asprintf(&target, "%s%s", path, base_name(local)) < 0)
                        return cli_set_error(ctx, -ENOMEM, "out of memory");
                path = target;
        }
        cleanup_close int fd =
                from_stdin ? dup(STDIN_FILENO) : open(local, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return cli_set_error(ctx, -errno, "%s: %s", local, strerror(errno));
        int r = agent_client_file_write_fd(ctx->agent, id, path, a->user, fd, NULL);
        return r < 0 ? agent_failed(ctx, r) : 0;
}

static int cp_from_sandbox(CliContext *ctx, const CliArgs *a, const char *id, const char *path,
                           const char *local)
{
        cleanup_json json_object *entry = NULL;
        int r = agent_client_stat(ctx->agent, id, path, a->user, &entry);
        if (r < 0)
                return agent_failed(ctx, r);
        cleanup_free char *target = NULL;
        bool to_stdout = streq(local, "-");
        struct stat st;
        bool local_dir = !to_stdout && stat(local, &st) == 0 && S_ISDIR(st.st_mode);
        if (streq(json_text(entry, "type") ?: "", "dir")) {
                if (to_stdout)
                        return cli_set_error(ctx, -EINVAL, "cp: %s is a directory", path);
                if (!local_dir && mkdir(local, 0755) < 0)
                        return cli_set_error(ctx, -errno, "%s: %s", local, strerror(errno));
                cleanup_close int tmp = spool_fd();
                if (tmp < 0)
                        return cli_set_error(ctx, -errno, "temporary file: %s", strerror(errno));
                Sink s = {.ctx = ctx, .fd = tmp, .name = "the archive"};
                r = agent_client_archive_read(ctx->agent, id, path, a->user, sink_write, &s);
                if (r < 0)
                        return agent_failed(ctx, r);
                return unpack_into(ctx, tmp, local);
        }
        if (local_dir) {
                if (asprintf(&target, "%s/%s", local, base_name(path)) < 0)
                        return cli_set_error(ctx, -ENOMEM, "out of memory");
                local = target;
        }
        cleanup_close int fd =
                to_stdout ? dup(STDOUT_FILENO)
                          : open(local, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOCTTY, 0644);
        if (fd < 0)
                return cli_set_error(ctx, -errno, "%s: %s", local, strerror(errno));
        Sink s = {.ctx = ctx, .fd = fd, .name = to_stdout ? "stdout" : local};
        r = agent_client_file_read(ctx->agent, id, path, a->user, sink_write, &s);
        return r < 0 ? agent_failed(ctx, r) : 0;
}

int cli_cmd_cp(CliContext *ctx, const CliArgs *a)
{
        cleanup_free char *id = NULL;
        const char *path = NULL;
        int r;
        /* cp moves whole trees: the agent's largest limit, not its default 1 GiB. */
        agent_client_set_max_bytes(ctx->agent, CLI_CP_MAX_BYTES);
        if (cli_remote_path(a->args[1], &id, &path))
                r = cp_to_sandbox(ctx, a, a->args[0], id, path);
        else if (cli_remote_path(a->args[0], &id, &path))
                r = cp_from_sandbox(ctx, a, id, path, a->args[1]);
        else
                return cli_set_error(ctx, -EINVAL,
                                     "cp: exactly one of SRC and DST must be ID:PATH");
        return r < 0 ? r : 0;
}

/* --- fs -------------------------------------------------------------------------- */

static int print_entries(json_object *entries)
{
        static const char *const header[] = {"TYPE", "PERMISSIONS", "OWNER",
                                             "SIZE", "MODIFIED",    "PATH"};
        const size_t cols = ARRAY_SIZE(header), n = json_object_array_length(entries);
        const char **grid = calloc((n + 1) * cols, sizeof(char *));
        cleanup_strv char **owned = calloc(2 * n + 1, sizeof(char *)); /* size, path per row */
        if (!grid || !owned) {
                free(grid);
                return -ENOMEM;
        }
        for (size_t c = 0; c < cols; c++)
                grid[c] = header[c];
        int r = 0;
        for (size_t i = 0; i < n && r == 0; i++) {
                json_object *e = json_object_array_get_idx(entries, i), *t = NULL;
                const char **row = grid + (i + 1) * cols;
                bool link = json_object_object_get_ex(e, "symlink_target", &t);
                if (asprintf(&owned[2 * i], "%" PRId64, json_int(e, "size", 0)) < 0 ||
                    asprintf(&owned[2 * i + 1], "%s%s%s", json_text(e, "path") ?: "",
                             link ? " -> " : "", link ? json_object_get_string(t) : "") < 0) {
                        r = -ENOMEM;
                        break;
                }
                row[0] = json_text(e, "type") ?: "";
                row[1] = json_text(e, "permissions") ?: "";
                row[2] = json_text(e, "owner") ?: "";
                row[3] = owned[2 * i];
                row[4] = json_text(e, "modified_time") ?: "";
                row[5] = owned[2 * i + 1];
        }
        if (r == 0)
                r = cli_print_table(stdout, grid, cols, n + 1);
        free(grid);
        return r;
}

int cli_cmd_fs(CliContext *ctx, const CliArgs *a)
{
        const char *sub = a->args[0], *id = a->args[1], *path = a->args[2];
        cleanup_json json_object *out = NULL;
        int r;
        if (streq(sub, "ls")) {
                r = agent_client_ls(ctx->agent, id, path, a->user, (unsigned) a->depth, &out);
                if (r < 0)
                        return agent_failed(ctx, r);
                if (a->json)
                        return cli_print_json_member(ctx, "entries", TAKE_PTR(out));
                r = print_entries(out);
        } else if (streq(sub, "stat")) {
                r = agent_client_stat(ctx->agent, id, path, a->user, &out);
                if (r < 0)
                        return agent_failed(ctx, r);
                if (a->json)
                        return cli_print_json_member(ctx, "entry", TAKE_PTR(out));
                json_object_object_foreach(out, key, val)
                        printf("%-15s %s\n", key, json_object_get_string(val));
        } else {
                if (streq(sub, "mv"))
                        r = agent_client_mv(ctx->agent, id, path, a->args[3], a->user, true, NULL);
                else if (streq(sub, "rm"))
                        r = agent_client_rm(ctx->agent, id, path, a->user, a->recursive);
                else
                        r = agent_client_mkdir(ctx->agent, id, path, a->user, true, NULL);
                return r < 0 ? agent_failed(ctx, r) : 0;
        }
        if (r < 0)
                return cli_set_error(ctx, -EIO, "cannot write output");
        return cli_finish_output(ctx);
}

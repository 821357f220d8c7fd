/* sandpit template build: the context as a tar (.dockerignore honoured) to
 * the agent's build route, its progress as it comes (docs/build.md). */
#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "sandpit/agent-client.h"
#include "sandpit/json.h"
#include "sandpit/macro.h"
#include "sandpit/util.h"

/* The name the Dockerfile goes by in the tar when it is not in the context. */
#define OUTSIDE_DOCKERFILE ".sandpit-dockerfile"
#define IGNORE_MAX         ((size_t) 1024 * 1024)
#define DEPTH_MAX          256

typedef struct {
        char **patterns; /* .dockerignore's, in order; "!" re-includes */
} Ignore;

static int ignore_load(int ctx_fd, Ignore *ig)
{
        ig->patterns = calloc(1, sizeof(char *));
        if (!ig->patterns)
                return -ENOMEM;
        cleanup_close int fd = openat(ctx_fd, ".dockerignore", O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return errno == ENOENT ? 0 : -errno;
        cleanup_free char *text = NULL;
        size_t len = 0;
        int r = cli_read_all(fd, IGNORE_MAX, &text, &len);
        if (r < 0)
                return r;
        size_t n = 0;
        char *save = NULL;
        for (char *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
                l += strspn(l, " \t");
                size_t e = strlen(l);
                while (e > 0 && strchr(" \t\r/", l[e - 1]))
                        l[--e] = '\0';
                if (!*l || *l == '#')
                        continue;
                bool neg = *l == '!';
                char *p = l + neg;
                while (*p == '/')
                        p++;
                if (strncmp(p, "./", 2) == 0)
                        p += 2;
                char **nv = realloc(ig->patterns, (n + 2) * sizeof(char *));
                if (!nv)
                        return -ENOMEM;
                ig->patterns = nv;
                if (asprintf(&nv[n], "%s%s", neg ? "!" : "", p) < 0)
                        return -ENOMEM;
                nv[++n] = NULL;
        }
        return 0;
}

/* Whether rel (or a directory above it) matches a pattern, the last one deciding. */
static bool ignored(const Ignore *ig, const char *rel)
{
        bool out = false;
        STRV_FOREACH(p, ig->patterns) {
                bool neg = (*p)[0] == '!';
                const char *pat = *p + neg;
                bool match = fnmatch(pat, rel, FNM_PATHNAME) == 0;
                char prefix[PATH_MAX];
                for (const char *s = strchr(rel, '/'); !match && s; s = strchr(s + 1, '/')) {
                        (void) snprintf(prefix, sizeof(prefix), "%.*s", (int) (s - rel), rel);
                        match = fnmatch(pat, prefix, FNM_PATHNAME) == 0;
                }
                if (match)
                        out = !neg;
        }
        return out;
}

static int add_entry(struct archive *ar, const char *name, const struct stat *st, const char *link,
                     int data_fd)
{
        struct archive_entry *e = archive_entry_new();
        if (!e)
                return -ENOMEM;
        archive_entry_copy_stat(e, st);
        archive_entry_set_pathname(e, name);
        archive_entry_set_nlink(e, 1);
        if (link)
                archive_entry_set_symlink(e, link);
        if (!S_ISREG(st->st_mode))
                archive_entry_set_size(e, 0);
        int r = archive_write_header(ar, e) == ARCHIVE_OK ? 0 : -EIO;
        char buf[65536];
        for (int64_t left = st->st_size; r == 0 && data_fd >= 0 && left > 0;) {
                ssize_t n = read(data_fd, buf, sizeof(buf));
                if (n <= 0) {
                        r = n < 0 ? -errno : -EIO;
                        break;
                }
                if ((int64_t) n > left)
                        n = (ssize_t) left;
                if (archive_write_data(ar, buf, (size_t) n) != n)
                        r = -EIO;
                left -= n;
        }
        archive_entry_free(e);
        return r;
}

static int add_tree(struct archive *ar, int dfd, const char *prefix, const Ignore *ig,
                    unsigned depth)
{
        if (depth > DEPTH_MAX)
                return -ELOOP;
        int fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        DIR *d = fd < 0 ? NULL : fdopendir(fd);
        if (!d) {
                int r = -errno;
                if (fd >= 0)
                        (void) close(fd);
                return r;
        }
        int r = 0;
        struct dirent *de;
        while (r == 0 && (de = readdir(d))) {
                if (streq(de->d_name, ".") || streq(de->d_name, ".."))
                        continue;
                cleanup_free char *rel = NULL;
                if (asprintf(&rel, "%s%s", prefix, de->d_name) < 0)
                        return -ENOMEM;
                if (ignored(ig, rel))
                        continue;
                struct stat st;
                if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
                        r = -errno;
                        break;
                }
                if (S_ISDIR(st.st_mode)) {
                        cleanup_close int sub =
                                openat(dirfd(d), de->d_name,
                                       O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                        cleanup_free char *sp = NULL;
                        if (sub < 0 || asprintf(&sp, "%s/", rel) < 0) {
                                r = sub < 0 ? -errno : -ENOMEM;
                                break;
                        }
                        r = add_entry(ar, sp, &st, NULL, -1);
                        if (r == 0)
                                r = add_tree(ar, sub, sp, ig, depth + 1);
                } else if (S_ISREG(st.st_mode)) {
                        cleanup_close int f =
                                openat(dirfd(d), de->d_name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
                        r = f < 0 ? -errno : add_entry(ar, rel, &st, NULL, f);
                } else if (S_ISLNK(st.st_mode)) {
                        char target[PATH_MAX];
                        ssize_t n = readlinkat(dirfd(d), de->d_name, target, sizeof(target) - 1);
                        if (n < 0) {
                                r = -errno;
                                break;
                        }
                        target[n] = '\0';
                        r = add_entry(ar, rel, &st, target, -1);
                } /* devices, sockets, FIFOs: not sent */
        }
        (void) closedir(d);
        return r;
}

/* The context (and the Dockerfile when it is outside) as a tar in an unnamed file. */
static int make_context(CliContext *ctx, const char *dir, const char *dockerfile,
                        char **ret_df_name, int *ret_fd)
{
        cleanup_close int ctx_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (ctx_fd < 0)
                return cli_set_error(ctx, -errno, "cannot open the build context %s: %m", dir);
        char ctx_real[PATH_MAX], df_real[PATH_MAX];
        if (!realpath(dir, ctx_real) || !realpath(dockerfile, df_real))
                return cli_set_error(ctx, -errno, "cannot open the Dockerfile %s: %m", dockerfile);
        Ignore ig = {0};
        int r = ignore_load(ctx_fd, &ig);
        if (r < 0) {
                strv_free(ig.patterns);
                return cli_set_error(ctx, r, "cannot read .dockerignore: %s", strerror(-r));
        }
        size_t n = strlen(ctx_real);
        const char *rel =
                strncmp(df_real, ctx_real, n) == 0 && df_real[n] == '/' ? df_real + n + 1 : NULL;
        bool outside = !rel || ignored(&ig, rel);
        int fd = memfd_create("sandpit-build-context", MFD_CLOEXEC);
        struct archive *ar = archive_write_new();
        r = fd >= 0 && ar && archive_write_set_format_pax_restricted(ar) == ARCHIVE_OK &&
                            archive_write_add_filter_gzip(ar) == ARCHIVE_OK &&
                            archive_write_open_fd(ar, fd) == ARCHIVE_OK
                    ? 0
                    : -EIO;
        if (r == 0)
                r = add_tree(ar, ctx_fd, "", &ig, 0);
        if (r == 0 && outside) {
                cleanup_close int df = open(df_real, O_RDONLY | O_CLOEXEC);
                struct stat st;
                r = df < 0 || fstat(df, &st) < 0 ? -errno
                                                 : add_entry(ar, OUTSIDE_DOCKERFILE, &st, NULL, df);
        }
        if (ar && archive_write_close(ar) != ARCHIVE_OK && r == 0)
                r = -EIO;
        archive_write_free(ar);
        strv_free(ig.patterns);
        if (r == 0 && lseek(fd, 0, SEEK_SET) < 0)
                r = -errno;
        if (r < 0) {
                if (fd >= 0)
                        (void) close(fd);
                return cli_set_error(ctx, r, "cannot pack the build context %s: %s", dir,
                                     strerror(-r));
        }
        /* rel points into df_real, which is this function's. */
        if (!(*ret_df_name = strdup(outside ? OUTSIDE_DOCKERFILE : rel))) {
                (void) close(fd);
                return cli_set_error(ctx, -ENOMEM, "out of memory");
        }
        *ret_fd = fd;
        return 0;
}

typedef struct {
        bool json;
        char error[1024];
        bool done;
} Progress;

static int on_event(json_object *ev, void *userdata)
{
        Progress *p = userdata;
        if (p->json) {
                printf("%s\n", json_object_to_json_string_ext(ev, JSON_C_TO_STRING_PLAIN));
        } else if (json_text(ev, "instruction")) {
                printf("Step %lld/%lld : %s\n", (long long) json_int(ev, "step", 0),
                       (long long) json_int(ev, "steps", 0), json_text(ev, "instruction"));
        } else if (json_text(ev, "stream")) {
                const char *data = json_text(ev, "data") ?: "";
                fputs(data, streq(json_text(ev, "stream"), "stderr") ? stderr : stdout);
        } else if (json_field(ev, "cached")) {
                if (json_object_get_boolean(json_field(ev, "cached")))
                        printf(" ---> cached\n");
                else if (json_text(ev, "layer"))
                        printf(" ---> layer %s\n", json_text(ev, "layer"));
        } else if (json_text(ev, "image")) {
                printf("Built %s (%s, %lld layers)\n", json_text(ev, "image"),
                       json_text(ev, "digest") ?: "-", (long long) json_int(ev, "layers", 0));
                p->done = true;
        }
        if (json_text(ev, "error")) {
                cli_one_line(json_text(ev, "error"), p->error, sizeof(p->error));
                if (!p->json && json_text(ev, "output_tail") && !*json_text(ev, "output_tail"))
                        printf("(no output)\n");
        }
        (void) fflush(stdout);
        return 0;
}

int cli_template_build(CliContext *ctx, const CliArgs *a)
{
        const char *dir = a->n_args > 1 ? a->args[1] : ".";
        cleanup_free char *df_default = NULL;
        const char *dockerfile = a->dockerfile;
        if (!dockerfile) {
                if (asprintf(&df_default, "%s/Dockerfile", dir) < 0)
                        return cli_set_error(ctx, -ENOMEM, "out of memory");
                dockerfile = df_default;
        }
        cleanup_free char *df_name = NULL;
        cleanup_close int fd = -1;
        int r = make_context(ctx, dir, dockerfile, &df_name, &fd);
        if (r < 0)
                return r;
        cleanup_json json_object *params = json_object_new_object();
        (void) json_object_object_add(params, "tag", json_object_new_string(a->build_tag));
        (void) json_object_object_add(params, "dockerfile", json_object_new_string(df_name));
        (void) json_object_object_add(params, "build_arg", json_object_get(a->build_args));
        if (a->build_target)
                (void) json_object_object_add(params, "target",
                                              json_object_new_string(a->build_target));
        json_object_object_foreach(a->create, k, v)
                (void) json_object_object_add(params, k, json_object_get(v));
        Progress p = {.json = a->json};
        r = agent_client_template_build(ctx->agent, params, fd, on_event, &p);
        if (r < 0)
                return cli_agent_error(ctx, r);
        if (p.error[0])
                return cli_set_error(ctx, -EIO, "%s", p.error);
        if (!p.done)
                return cli_set_error(ctx, -EIO, "the build ended without a result");
        return cli_finish_output(ctx);
}

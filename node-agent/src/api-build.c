/* The build route (see api-build.h, docs/build.md). */
#include "api-build.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api-internal.h"
#include "build.h"
#include "dockerfile.h"
#include "image.h"
#include "sandpit/json.h"
#include "sandpit/macro.h"
#include "sandpit/strbuf.h"
#include "sandpit/util.h"

#define DOCKERFILE_MAX ((size_t) 1024 * 1024)

typedef struct {
        Build *b;
        StrBuf out;
        size_t off;
        bool end;
} BuildStream;

static ssize_t stream_read(void *cls, int client_fd, char *buf, size_t max)
{
        BuildStream *s = cls;
        for (;;) {
                if (s->off < s->out.len) {
                        size_t n = s->out.len - s->off < max ? s->out.len - s->off : max;
                        memcpy(buf, s->out.data + s->off, n);
                        s->off += n;
                        return (ssize_t) n;
                }
                if (s->end)
                        return 0;
                s->out.len = 0;
                s->off = 0;
                int r = build_next(s->b, client_fd, &s->out);
                if (r < 0)
                        return r; /* the client went away: build_free() ends the step */
                if (r == 0)
                        s->end = true;
        }
}

static void stream_destroy(void *cls)
{
        BuildStream *s = cls;
        build_free(s->b);
        strbuf_done(&s->out);
        free(s);
}

static const HttpStreamOps build_stream_ops = {.read = stream_read, .destroy = stream_destroy};

size_t api_build_spool_limit(HttpRequest *req)
{
        if (!streq(http_request_method(req), "POST") ||
            !streq(http_request_path(req), "/v1/templates/build"))
                return 0;
        return BUILD_CONTEXT_MAX;
}

/* Reads the Dockerfile at the relative path in the context, following no link. */
static int read_dockerfile(int ctx_fd, const char *path, char **ret, size_t *ret_len)
{
        cleanup_free char *copy = strdup(path);
        if (!copy)
                return -ENOMEM;
        cleanup_close int dir = openat(ctx_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dir < 0)
                return -errno;
        char *save = NULL, *next = NULL;
        for (char *c = strtok_r(copy, "/", &save); c; c = next) {
                next = strtok_r(NULL, "/", &save);
                if (streq(c, "..") || streq(c, "."))
                        return -EPERM;
                int fd = openat(dir, c,
                                (next ? O_DIRECTORY : 0) | O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
                if (fd < 0)
                        return errno == ELOOP || errno == ENOTDIR ? -EPERM : -errno;
                (void) close(dir);
                dir = fd;
        }
        struct stat st;
        if (fstat(dir, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode))
                return -EPERM;
        if ((size_t) st.st_size > DOCKERFILE_MAX)
                return -EFBIG;
        char *text = calloc((size_t) st.st_size + 1, 1);
        if (!text)
                return -ENOMEM;
        size_t got = 0;
        while (got < (size_t) st.st_size) {
                ssize_t n = read(dir, text + got, (size_t) st.st_size - got);
                if (n <= 0) {
                        free(text);
                        return n < 0 ? -errno : -EIO;
                }
                got += (size_t) n;
        }
        *ret = text;
        *ret_len = got;
        return 0;
}

/* The RUN sandboxes' create fields from the query, checked by a dry parse. */
static int sandbox_options(HttpRequest *req, json_object **ret, char *err, size_t errlen)
{
        json_object *o = json_object_new_object();
        const char *net = http_request_query(req, "network");
        int r = 0;
        if (net && *net) {
                json_object *n = NULL;
                if (json_parse_strict(net, strlen(net), 8, &n, NULL) < 0 ||
                    !json_object_is_type(n, json_type_object)) {
                        json_object_put(n);
                        (void) snprintf(err, errlen,
                                        "network must be a JSON object, as a "
                                        "sandbox's \"network\"");
                        r = -EINVAL;
                } else
                        (void) json_object_object_add(o, "network", n);
        }
        static const char *const quantities[] = {"memory", "disk", "cpu", "pids"};
        for (size_t i = 0; r == 0 && i < ARRAY_SIZE(quantities); i++) {
                const char *v = http_request_query(req, quantities[i]);
                if (!v || !*v)
                        continue;
                json_object *q = NULL;
                if (json_parse_strict(v, strlen(v), 1, &q, NULL) == 0 &&
                    (json_object_is_type(q, json_type_int) ||
                     json_object_is_type(q, json_type_double)))
                        (void) json_object_object_add(o, quantities[i], q);
                else {
                        json_object_put(q);
                        (void) json_object_object_add(o, quantities[i], json_object_new_string(v));
                }
        }
        if (r == 0) {
                /* The same checks as a create's. */
                SandboxSpec spec = {0};
                json_object *probe = json_object_new_object();
                json_object_object_foreach(o, k, v)
                        (void) json_object_object_add(probe, k, json_object_get(v));
                r = sandbox_spec_from_json(probe, &spec, err, errlen);
                json_object_put(probe);
                if (r == 0)
                        sandbox_spec_done(&spec);
        }
        if (r < 0) {
                json_object_put(o);
                return r;
        }
        *ret = o;
        return 0;
}

static void handle_build(Agent *a, HttpRequest *req)
{
        char err[512] = "";
        const char *tag = http_request_query(req, "tag");
        const char *df_path = http_request_query(req, "dockerfile");
        if (!df_path || !*df_path)
                df_path = "Dockerfile";
        cleanup_free char *name = NULL;
        if (!tag || !*tag || build_image_name(a, tag, &name) < 0) {
                http_respond_error(req, 400,
                                   "give the image's name as ?tag=NAME[:TAG] (and the "
                                   "build context as a tar body)");
                return;
        }
        if (strncmp(name, BUILD_CACHE_REPO ":", strlen(BUILD_CACHE_REPO) + 1) == 0) {
                http_respond_error(req, 400, "%s is the build cache's name", BUILD_CACHE_REPO);
                return;
        }
        cleanup_strv char **build_args = NULL;
        if (http_request_query_all(req, "build_arg", &build_args) < 0) {
                http_respond_error(req, 500, "out of memory");
                return;
        }
        STRV_FOREACH(e, build_args) {
                size_t k = strcspn(*e, "=");
                if (!(*e)[k] || !dockerfile_name_valid(*e, k)) {
                        http_respond_error(req, 400, "build_arg must be NAME=VALUE, not \"%.64s\"",
                                           *e);
                        return;
                }
        }
        cleanup_json json_object *opts = NULL;
        if (sandbox_options(req, &opts, err, sizeof(err)) < 0) {
                http_respond_error(req, 400, "%s", err);
                return;
        }
        /* The context: the spooled tar, else a small buffered body. */
        int body = http_request_body_fd(req);
        cleanup_close int own = -1;
        if (body < 0) {
                size_t len = 0;
                const char *data = http_request_body(req, &len);
                own = open(image_store_tmp_dir(a->images), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
                if (own < 0 || (len > 0 && write_all(own, data, len) < 0)) {
                        http_respond_error(req, 500, "cannot keep the build context");
                        return;
                }
                body = own;
        }
        if (lseek(body, 0, SEEK_SET) < 0) {
                http_respond_error(req, 500, "cannot read the build context");
                return;
        }
        char *ctx = NULL;
        if (asprintf(&ctx, "%s/build-ctx.XXXXXX", image_store_tmp_dir(a->images)) < 0 ||
            !mkdtemp(ctx)) {
                free(ctx);
                http_respond_error(req, 500, "cannot make a directory for the build context");
                return;
        }
        int r = image_layer_unpack(body, ctx, image_store_max_layer_size(a->images), err,
                                   sizeof(err));
        cleanup_free char *text = NULL;
        size_t text_len = 0;
        if (r < 0) {
                http_respond_errno(req, r == -EFBIG ? -EFBIG : -EINVAL,
                                   "the build context is not a usable tar: %s", err);
        } else {
                cleanup_close int ctx_fd = open(ctx, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                r = ctx_fd < 0 ? -errno : read_dockerfile(ctx_fd, df_path, &text, &text_len);
                /* The CLI's name for a Dockerfile from outside the context: not the context's. */
                if (r == 0 && streq(df_path, BUILD_OUTSIDE_DOCKERFILE))
                        (void) unlinkat(ctx_fd, df_path, 0);
                if (r < 0)
                        http_respond_error(
                                req, 400,
                                "cannot read the Dockerfile %.200s in the "
                                "build context: %s",
                                df_path, r == -EPERM ? "not a file of the context" : strerror(-r));
        }
        Dockerfile df = {0};
        if (r == 0 && (r = dockerfile_parse(text, text_len, &df, err, sizeof(err))) < 0)
                http_respond_error(req, 400, "%s: %s", df_path, err);
        const char *target = http_request_query(req, "target");
        if (target && !*target)
                target = NULL;
        if (r == 0 && target) {
                /* An unknown target is the request's fault: 400 before anything runs. */
                bool *needed = calloc(df.nstages + 1, sizeof(bool));
                size_t t = 0;
                r = needed ? dockerfile_plan(&df, target, needed, &t, err, sizeof(err)) : -ENOMEM;
                free(needed);
                if (r < 0)
                        http_respond_error(req, r == -ENOMEM ? 500 : 400, "%s: %s", df_path, err);
                if (r < 0)
                        dockerfile_done(&df);
        }
        Build *b = NULL;
        if (r == 0) {
                BuildOptions o = {
                        .name = name, .target = target, .build_args = build_args, .sandbox = opts};
                r = build_new(a, &df, ctx, &o, &b);
                dockerfile_done(&df);
                if (r == 0)
                        ctx = NULL; /* the build's now */
                else
                        api_respond_errno(req, r, NULL, "cannot start the build");
        }
        if (ctx) {
                (void) rm_rf(ctx);
                free(ctx);
        }
        if (r < 0)
                return;
        BuildStream *s = calloc(1, sizeof(*s));
        if (!s) {
                build_free(b);
                http_respond_error(req, 500, "out of memory");
                return;
        }
        s->b = b;
        http_respond_stream(req, 200, "application/x-ndjson", &build_stream_ops, s);
}

bool api_build_handle(Agent *a, HttpRequest *req)
{
        const char *p = http_request_path(req);
        if (!streq(p, "/v1/templates/build"))
                return false;
        if (streq(http_request_method(req), "POST"))
                handle_build(a, req);
        else
                http_respond_error(req, 405, "use POST");
        return true;
}

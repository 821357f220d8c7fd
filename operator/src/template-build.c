/* SandboxTemplates with source.build (docs/build.md#sandboxtemplates): the
 * spec's checks, the build context (the Dockerfile and a ConfigMap's files)
 * as a tar, and the agent's build progress read into a result. The reconcile
 * (reconcile.c) builds on the node a Sandbox of the template is placed on,
 * before its create. */
#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "operator.h"
#include "sandpit/json.h"
#include "sandpit/macro.h"
#include "sandpit/util.h"

const K8sResource operator_configmaps = {"", "v1", "configmaps", true};

/* The builds this process has in flight: one per node and image. */
typedef struct InFlight {
        char *key; /* "NODE IMAGE" */
        struct InFlight *next;
} InFlight;
static pthread_mutex_t inflight_lock = PTHREAD_MUTEX_INITIALIZER;
static InFlight *inflight;

/* The name the agent reads the Dockerfile from and drops from the context. */
#define DOCKERFILE_NAME ".sandpit-dockerfile"
#define CONTEXT_MAX     ((size_t) 64 << 20)

/* An ARG name: what the Dockerfile parser takes (letters, digits, '_'). */
static bool arg_name_ok(const char *s)
{
        if (!*s || (*s >= '0' && *s <= '9'))
                return false;
        for (; *s; s++)
                if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
                      (*s >= '0' && *s <= '9') || *s == '_'))
                        return false;
        return true;
}

int template_build_check(json_object *build, const char *name, char *msg, size_t msglen)
{
        if (!json_object_is_type(build, json_type_object)) {
                snprintf(msg, msglen, "SandboxTemplate %s: source.build is not an object", name);
                return -EINVAL;
        }
        json_object *df = json_field(build, "dockerfile");
        if (!df || !json_object_is_type(df, json_type_string) || !*json_object_get_string(df)) {
                snprintf(msg, msglen, "SandboxTemplate %s: source.build.dockerfile is empty", name);
                return -EINVAL;
        }
        json_object *ctx = json_field(build, "context");
        if (ctx && (!json_object_is_type(ctx, json_type_string) || !*json_object_get_string(ctx))) {
                snprintf(msg, msglen,
                         "SandboxTemplate %s: source.build.context is not a ConfigMap's name",
                         name);
                return -EINVAL;
        }
        json_object *args = json_field(build, "buildArgs");
        if (args && !json_object_is_type(args, json_type_object)) {
                snprintf(msg, msglen, "SandboxTemplate %s: source.build.buildArgs is not a map",
                         name);
                return -EINVAL;
        }
        if (!args)
                return 0;
        json_object_object_foreach(args, k, v) {
                if (!arg_name_ok(k)) {
                        snprintf(msg, msglen,
                                 "SandboxTemplate %s: source.build.buildArgs: %s is not an ARG "
                                 "name (letters, digits and _)",
                                 name, k);
                        return -EINVAL;
                }
                if (!json_object_is_type(v, json_type_string)) {
                        snprintf(msg, msglen,
                                 "SandboxTemplate %s: source.build.buildArgs.%s is not a string",
                                 name, k);
                        return -EINVAL;
                }
        }
        return 0;
}

/* A ConfigMap key as a file at the context's root: what Kubernetes allows
 * in a key ([-._a-zA-Z0-9]+, not "." or ".."), less the Dockerfile's name. */
static bool key_ok(const char *k)
{
        if (!*k || streq(k, ".") || streq(k, "..") || streq(k, DOCKERFILE_NAME))
                return false;
        for (const char *p = k; *p; p++)
                if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                      (*p >= '0' && *p <= '9') || *p == '-' || *p == '.' || *p == '_'))
                        return false;
        return true;
}

static int add_file(struct archive *ar, const char *path, const void *data, size_t len)
{
        struct archive_entry *e = archive_entry_new();
        if (!e)
                return -ENOMEM;
        archive_entry_set_pathname(e, path);
        archive_entry_set_filetype(e, AE_IFREG);
        archive_entry_set_perm(e, 0644);
        archive_entry_set_size(e, (la_int64_t) len);
        archive_entry_set_mtime(e, 0, 0);
        archive_entry_set_uid(e, 0);
        archive_entry_set_gid(e, 0);
        int r = archive_write_header(ar, e) == ARCHIVE_OK ? 0 : -EIO;
        if (r == 0 && len > 0 && archive_write_data(ar, data, len) != (la_ssize_t) len)
                r = -EIO;
        archive_entry_free(e);
        return r;
}

static int cmp_str(const void *a, const void *b)
{
        return strcmp(*(const char *const *) a, *(const char *const *) b);
}

/* The keys of o (a ConfigMap's data or binaryData), sorted: the tar's order
 * must not depend on the API server's. */
static int sorted_keys(json_object *o, const char ***ret, size_t *ret_n)
{
        size_t n = o && json_object_is_type(o, json_type_object) ? json_object_object_length(o) : 0;
        const char **keys = calloc(n + 1, sizeof(*keys));
        if (!keys)
                return -ENOMEM;
        size_t i = 0;
        if (n > 0) {
                json_object_object_foreach(o, k, v) {
                        (void) v;
                        keys[i++] = k;
                }
        }
        qsort(keys, i, sizeof(*keys), cmp_str);
        *ret = keys;
        *ret_n = i;
        return 0;
}

/* The files of one of the ConfigMap's maps into ar. */
static int add_map(struct archive *ar, json_object *cm, const char *field, bool binary,
                   size_t *total, char *msg, size_t msglen)
{
        json_object *m = json_field(cm, field);
        if (m && !json_object_is_type(m, json_type_object)) {
                snprintf(msg, msglen, "ConfigMap %s: %s is not a map", k8s_obj_name(cm), field);
                return -EINVAL;
        }
        cleanup_free const char **keys = NULL;
        size_t n = 0;
        int r = sorted_keys(m, &keys, &n);
        for (size_t i = 0; r == 0 && i < n; i++) {
                json_object *v = json_field(m, keys[i]);
                const char *s = json_object_get_string(v);
                if (!key_ok(keys[i]) || !json_object_is_type(v, json_type_string)) {
                        snprintf(msg, msglen, "ConfigMap %s: %s.%s cannot be a file of the context",
                                 k8s_obj_name(cm), field, keys[i]);
                        return -EINVAL;
                }
                if (binary && json_field(json_field(cm, "data"), keys[i])) {
                        snprintf(msg, msglen, "ConfigMap %s: %s is in both data and binaryData",
                                 k8s_obj_name(cm), keys[i]);
                        return -EINVAL;
                }
                cleanup_free uint8_t *bytes = NULL;
                size_t len = strlen(s);
                if (binary && base64_decode(s, &bytes, &len) < 0) {
                        snprintf(msg, msglen, "ConfigMap %s: binaryData.%s is not base64",
                                 k8s_obj_name(cm), keys[i]);
                        return -EINVAL;
                }
                *total += len;
                if (*total > CONTEXT_MAX) {
                        snprintf(msg, msglen, "ConfigMap %s: the context is over %zu MiB",
                                 k8s_obj_name(cm), CONTEXT_MAX >> 20);
                        return -EINVAL;
                }
                r = add_file(ar, keys[i], binary ? (const void *) bytes : s, len);
        }
        return r;
}

int template_build_context(const char *dockerfile, json_object *cm, int *ret_fd, char *msg,
                           size_t msglen)
{
        cleanup_close int fd = memfd_create("sandpit-template-context", MFD_CLOEXEC);
        if (fd < 0)
                return -errno;
        struct archive *ar = archive_write_new();
        int r = ar && archive_write_set_format_pax_restricted(ar) == ARCHIVE_OK &&
                                archive_write_open_fd(ar, fd) == ARCHIVE_OK
                        ? 0
                        : -EIO;
        size_t total = strlen(dockerfile);
        if (r == 0)
                r = add_file(ar, DOCKERFILE_NAME, dockerfile, total);
        if (r == 0 && cm)
                r = add_map(ar, cm, "data", false, &total, msg, msglen);
        if (r == 0 && cm)
                r = add_map(ar, cm, "binaryData", true, &total, msg, msglen);
        if (ar && archive_write_close(ar) != ARCHIVE_OK && r == 0)
                r = -EIO;
        archive_write_free(ar);
        if (r == 0 && lseek(fd, 0, SEEK_SET) < 0)
                r = -errno;
        if (r < 0)
                return r;
        *ret_fd = TAKE_FD(fd);
        return 0;
}

json_object *template_build_params(const SandboxTemplateInfo *t)
{
        cleanup_json json_object *p = json_object_new_object();
        json_object *args = json_object_new_array();
        if (!p || !args) {
                json_object_put(args);
                return NULL;
        }
        json_object_object_add(p, "tag", json_object_new_string(t->built_image));
        json_object_object_add(p, "dockerfile", json_object_new_string(DOCKERFILE_NAME));
        json_object *given = json_field(t->build, "buildArgs");
        if (given) {
                json_object_object_foreach(given, k, v) {
                        cleanup_free char *a = NULL;
                        if (asprintf(&a, "%s=%s", k, json_object_get_string(v)) < 0) {
                                json_object_put(args);
                                return NULL;
                        }
                        json_object_array_add(args, json_object_new_string(a));
                }
        }
        json_object_object_add(p, "build_arg", args);
        return TAKE_PTR(p);
}

int template_build_event(json_object *ev, void *userdata)
{
        TemplateBuildResult *res = userdata;
        const char *error = json_str(ev, "error"), *image = json_str(ev, "image");
        if (error) {
                /* The step's own message and the last line of its output. */
                const char *tail = json_str(ev, "output_tail") ?: "";
                size_t n = strlen(tail);
                while (n > 0 && (tail[n - 1] == '\n' || tail[n - 1] == '\r'))
                        n--;
                const char *last = tail + n;
                while (last > tail && last[-1] != '\n')
                        last--;
                if (last < tail + n)
                        snprintf(res->error, sizeof(res->error), "%s: %.*s", error,
                                 (int) (tail + n - last), last);
                else
                        snprintf(res->error, sizeof(res->error), "%s", error);
        } else if (image) {
                res->done = true;
                snprintf(res->digest, sizeof(res->digest), "%s", json_str(ev, "digest") ?: "");
        }
        return 0;
}

static char *inflight_key(const char *node, const char *image)
{
        char *k = NULL;
        return asprintf(&k, "%s %s", node, image) < 0 ? NULL : k;
}

int template_build_begin(const char *node, const char *image)
{
        cleanup_free char *k = inflight_key(node, image);
        if (!k)
                return -ENOMEM;
        pthread_mutex_lock(&inflight_lock);
        int r = 0;
        for (InFlight *f = inflight; f; f = f->next)
                if (streq(f->key, k))
                        r = -EBUSY;
        InFlight *f = r == 0 ? malloc(sizeof(*f)) : NULL;
        if (r == 0 && !f)
                r = -ENOMEM;
        if (r == 0) {
                *f = (InFlight){.key = TAKE_PTR(k), .next = inflight};
                inflight = f;
        }
        pthread_mutex_unlock(&inflight_lock);
        return r;
}

void template_build_end(const char *node, const char *image)
{
        cleanup_free char *k = inflight_key(node, image);
        pthread_mutex_lock(&inflight_lock);
        for (InFlight **p = &inflight; k && *p; p = &(*p)->next) {
                if (streq((*p)->key, k)) {
                        InFlight *f = *p;
                        *p = f->next;
                        free(f->key);
                        free(f);
                        break;
                }
        }
        pthread_mutex_unlock(&inflight_lock);
}

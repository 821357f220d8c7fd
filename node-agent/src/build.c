/* The builder's steps (see build.h, docs/build.md). */
#include "build.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "build-layer.h"
#include "code.h"
#include "exec.h"
#include "image.h"
#include "initproto.h"
#include "sandbox.h"
#include "sandpit/http-fetch.h"
#include "sandpit/json.h"
#include "sandpit/log.h"
#include "sandpit/macro.h"
#include "sandpit/oci.h"
#include "sandpit/util.h"
#include "template.h"
#include "userns.h"

#define PROGRESS_MAX       ((size_t) 64 * 1024 * 1024)
#define TAIL_MAX           2048
#define RUN_TIMEOUT_S      3600
#define EVENT_LINE_MAX     ((size_t) 4 * 1024 * 1024)
#define ADD_URL_TIMEOUT_MS (10L * 60 * 1000)
#define ADD_URL_REDIRECTS  5L

/* A stage's result, for a later FROM or COPY --from. */
typedef struct {
        bool done;
        char key[OCI_DIGEST_MAX];
        char **layers;
        char *base;
        json_object *config;
} StageResult;

struct Build {
        Agent *a;
        ImageStore *s;
        Dockerfile df;
        size_t pc; /* the next instruction */
        char *ctx_dir;
        int ctx_fd;
        char *name;
        char **build_args;
        char **args;      /* declared ARGs with a value: "K=V" */
        char **from_args; /* those declared before FROM: defaults for the same names after */
        json_object *sandbox_opts;
        bool from_done, finished;
        /* Stages: the one built (target), those it needs, their results. */
        bool *needed;
        size_t target;
        StageResult *stages;
        int cur_stage;
        char **held; /* names held against the store's GC (image_hold()) */
        /* The state after the steps so far. */
        char key[OCI_DIGEST_MAX];
        char **layers; /* digests, bottom first */
        char *base;    /* a directory template under them, or NULL */
        json_object *config;
        /* A RUN in progress. */
        char *sandbox_id;
        ExecStream *es;
        StrBuf events; /* its stream, up to the next newline */
        char tail[TAIL_MAX + 1];
        char run_key[OCI_DIGEST_MAX];
        int exit_code;
        bool exited, oom_killed, timed_out;
        char run_error[256];
};

/* --- small helpers ------------------------------------------------------------ */

static int emit(StrBuf *out, json_object *o)
{
        size_t len = 0;
        const char *t = json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN, &len);
        int r = strbuf_append(out, t, len, PROGRESS_MAX);
        if (r == 0)
                r = strbuf_append(out, "\n", 1, PROGRESS_MAX);
        json_object_put(o);
        return r;
}

static json_object *step_obj(Build *b, const DfInstr *in)
{
        json_object *o = json_object_new_object();
        (void) json_object_object_add(o, "step",
                                      json_object_new_int64((int64_t) (in - b->df.v) + 1));
        (void) json_object_object_add(o, "steps", json_object_new_int64((int64_t) b->df.n));
        (void) json_object_object_add(o, "line", json_object_new_int64(in->line));
        return o;
}

static int emit_error(Build *b, StrBuf *out, const DfInstr *in, const char *msg)
{
        json_object *o = in ? step_obj(b, in) : json_object_new_object();
        char full[1024];
        if (in)
                (void) snprintf(full, sizeof(full), "step %zu (line %u, %s): %s",
                                (size_t) (in - b->df.v) + 1, in->line,
                                dockerfile_kind_name(in->kind), msg);
        else
                (void) snprintf(full, sizeof(full), "%s", msg);
        (void) json_object_object_add(o, "error", json_object_new_string(full));
        b->finished = true;
        return emit(out, o);
}

/* key = sha256(prev key, text). */
static int chain(const char *prev, const char *text, char *ret)
{
        OciHasher *h = NULL;
        int r = oci_hasher_new(&h);
        if (r == 0)
                r = oci_hasher_update(h, prev, strlen(prev));
        if (r == 0)
                r = oci_hasher_update(h, "\n", 1);
        if (r == 0)
                r = oci_hasher_update(h, text, strlen(text));
        if (r == 0)
                r = oci_hasher_final(h, ret);
        oci_hasher_free(h);
        return r;
}

static int cache_name(const char *key, char **ret)
{
        return asprintf(ret, "%s:%s", BUILD_CACHE_REPO, key + 7) < 0 ? -ENOMEM : 0;
}

/* Appends a copy of s to the NULL-terminated *v. */
static int strv_append(char ***v, const char *s)
{
        size_t n = 0;
        while (*v && (*v)[n])
                n++;
        return strv_push(v, &n, strdup(s));
}

/* Holds name (a record or a layer) against the store's GC for the build's
 * life; already_held: the store holds it for us already (image_layer_add()). */
static int hold(Build *b, const char *name, bool already_held)
{
        for (char **e = b->held; e && *e; e++)
                if (streq(*e, name)) {
                        if (already_held)
                                image_release(b->s, name);
                        return 0;
                }
        if (!already_held) {
                int r = image_hold(b->s, name);
                if (r < 0)
                        return r;
        }
        int r = strv_append(&b->held, name);
        if (r < 0) /* held by the store, but not on our list: give it back now */
                image_release(b->s, name);
        return r;
}

/* Sets "K=V" in an env strv (replacing K's entry). */
static int env_put(char ***v, const char *kv)
{
        size_t k = strcspn(kv, "=");
        for (size_t i = 0; *v && (*v)[i]; i++)
                if (strncmp((*v)[i], kv, k) == 0 && ((*v)[i][k] == '=' || !(*v)[i][k])) {
                        char *d = strdup(kv);
                        if (!d)
                                return -ENOMEM;
                        free((*v)[i]);
                        (*v)[i] = d;
                        return 0;
                }
        return strv_append(v, kv);
}

static char **config_strv(Build *b, const char *field)
{
        json_object *a = json_field(b->config, field);
        size_t n = a && json_object_is_type(a, json_type_array) ? json_object_array_length(a) : 0;
        char **v = calloc(n + 1, sizeof(char *));
        for (size_t i = 0; v && i < n; i++)
                if (!(v[i] = strdup(json_object_get_string(json_object_array_get_idx(a, i))
                                            ?: ""))) {
                        strv_free(v);
                        return NULL;
                }
        return v;
}

static json_object *strv_json(char *const *v)
{
        json_object *a = json_object_new_array();
        for (char *const *e = v; e && *e; e++)
                (void) json_object_array_add(a, json_object_new_string(*e));
        return a;
}

/* What $X means here: the ARGs, then the ENV (which wins). */
static char **vars_now(Build *b)
{
        cleanup_strv char **env = config_strv(b, "env");
        char **v = strv_copy(b->args);
        for (char **e = env; v && e && *e; e++)
                if (env_put(&v, *e) < 0) {
                        strv_free(v);
                        return NULL;
                }
        return v;
}

/* The lower layers of a state, top first (as overlayfs takes them). */
static char **lowers_of(Build *b, char *const *layers, const char *base)
{
        size_t n = 0;
        while (layers && layers[n])
                n++;
        Template *t = NULL;
        if (base && template_load(b->a->cfg.templates_dir, base, &t) < 0)
                return NULL;
        size_t nb = 0;
        while (t && t->lowers[nb])
                nb++;
        char **v = calloc(n + nb + 1, sizeof(char *));
        for (size_t i = 0; v && i < n; i++)
                if (image_layer_path(b->s, layers[n - 1 - i], &v[i]) < 0) {
                        strv_free(v);
                        v = NULL;
                }
        for (size_t i = 0; v && i < nb; i++)
                if (!(v[n + i] = strdup(t->lowers[i]))) {
                        strv_free(v);
                        v = NULL;
                }
        template_free(t);
        return v;
}

static char **lowers_now(Build *b)
{
        return lowers_of(b, b->layers, b->base);
}

/* The cached state of key: its layers and config, when the record and every
 * layer are there. */
static bool cache_load(Build *b, const char *key)
{
        cleanup_free char *name = NULL;
        cleanup_json json_object *rec = NULL;
        /* Held before it is read: the GC must not take it between two steps. */
        if (cache_name(key, &name) < 0 || hold(b, name, false) < 0 ||
            image_record_get(b->s, name, &rec) < 0)
                return false;
        json_object *layers = json_field(rec, "layers");
        size_t n = json_object_array_length(layers);
        char **v = calloc(n + 1, sizeof(char *));
        for (size_t i = 0; v && i < n; i++) {
                const char *d = json_object_get_string(json_object_array_get_idx(layers, i));
                cleanup_free char *dir = NULL;
                struct stat st;
                if (!d || image_layer_path(b->s, d, &dir) < 0 || stat(dir, &st) < 0 ||
                    !(v[i] = strdup(d))) {
                        strv_free(v);
                        return false;
                }
        }
        if (!v)
                return false;
        strv_free(b->layers);
        b->layers = v;
        json_object_put(b->config);
        b->config = json_object_get(json_obj(rec, "config"));
        if (!b->config)
                b->config = json_object_new_object();
        return true;
}

static int cache_save(Build *b, const char *key)
{
        cleanup_free char *name = NULL;
        int r = cache_name(key, &name);
        if (r == 0)
                r = hold(b, name, false);
        if (r == 0)
                r = image_record_local(b->s, name, b->base, b->layers, b->config, true);
        return r;
}

/* The step's end: the state is key's; cached when the store had it. */
static int step_done(Build *b, StrBuf *out, const DfInstr *in, const char *key, bool cached,
                     const char *layer)
{
        int r = cached ? 0 : cache_save(b, key);
        if (r < 0)
                return r;
        (void) snprintf(b->key, sizeof(b->key), "%s", key);
        json_object *o = step_obj(b, in);
        (void) json_object_object_add(o, "cached", json_object_new_boolean(cached));
        if (layer)
                (void) json_object_object_add(o, "layer", json_object_new_string(layer));
        return emit(out, o);
}

static int tmpfile_in_store(Build *b)
{
        int fd = open(image_store_tmp_dir(b->s), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
        return fd < 0 ? -errno : fd;
}

/* --- FROM ------------------------------------------------------------------------ */

/* The image or template ref names as a state (layers, base, config) and the
 * text its key is made of; -ENOENT with the reason in err. */
static int resolve_image(Build *b, const char *ref, char ***ret_layers, char **ret_base,
                         json_object **ret_config, char **ret_text, char *err, size_t errlen)
{
        if (strncmp(ref, IMAGE_TEMPLATE_PREFIX, strlen(IMAGE_TEMPLATE_PREFIX)) == 0)
                ref += strlen(IMAGE_TEMPLATE_PREFIX);
        else {
                Template *t = NULL;
                if (template_load(b->a->cfg.templates_dir, ref, &t) == 0) {
                        template_free(t);
                        *ret_layers = calloc(1, sizeof(char *));
                        *ret_base = strdup(ref);
                        *ret_config = json_object_new_object();
                        (void) json_object_object_add(*ret_config, "env", json_object_new_array());
                        if (asprintf(ret_text, "FROM template:%s", ref) < 0)
                                *ret_text = NULL;
                        return *ret_layers && *ret_base && *ret_text ? 0 : -ENOMEM;
                }
        }
        /* A name of a build of this node (-t app), else an image to pull. */
        cleanup_json json_object *rec = NULL;
        cleanup_free char *local = NULL;
        char why[512] = "";
        if (build_image_name(b->a, ref, &local) == 0)
                (void) image_record_get(b->s, local, &rec);
        if (!rec && image_pull(b->s, ref, false, &rec, why, sizeof(why)) < 0) {
                (void) snprintf(err, errlen, "%s is neither a template nor an image: %s", ref, why);
                return -ENOENT;
        }
        /* Held until the build's records name its layers. */
        int r = hold(b, json_str(rec, "name") ?: ref, false);
        json_object *layers = json_field(rec, "layers");
        char **v = calloc(1, sizeof(char *));
        if (!v)
                return -ENOMEM;
        for (size_t i = 0; r == 0 && i < json_object_array_length(layers); i++)
                r = strv_append(&v,
                                json_object_get_string(json_object_array_get_idx(layers, i)) ?: "");
        *ret_base = NULL;
        if (r == 0 && json_str(rec, "base") && !(*ret_base = strdup(json_str(rec, "base"))))
                r = -ENOMEM;
        if (r == 0 && asprintf(ret_text, "FROM image:%s@%s", json_str(rec, "name") ?: ref,
                               json_str(rec, "digest") ?: "") < 0)
                r = -ENOMEM;
        if (r < 0) {
                strv_free(v);
                free(*ret_base);
                return r;
        }
        *ret_layers = v;
        *ret_config = json_object_get(json_obj(rec, "config"));
        if (!*ret_config)
                *ret_config = json_object_new_object();
        return 0;
}

/* The stage (before the current one) that ref names, by name or index; -1. */
static int stage_named(Build *b, const char *ref)
{
        for (int i = 0; i < b->cur_stage; i++)
                if (b->df.stages[i].name && strcasecmp(b->df.stages[i].name, ref) == 0)
                        return i;
        return -1;
}

static void stage_result_done(StageResult *r)
{
        strv_free(r->layers);
        free(r->base);
        json_object_put(r->config);
        *r = (StageResult){0};
}

/* Keeps the state as the current stage's result. */
static int stage_save(Build *b)
{
        if (b->cur_stage < 0)
                return 0;
        StageResult *r = &b->stages[b->cur_stage];
        stage_result_done(r);
        r->layers = strv_copy(b->layers ? b->layers : (char *[]){NULL});
        r->base = b->base ? strdup(b->base) : NULL;
        if (json_object_deep_copy(b->config, &r->config, NULL) < 0)
                r->config = NULL;
        (void) snprintf(r->key, sizeof(r->key), "%s", b->key);
        r->done = r->layers && r->config && (!b->base || r->base);
        return r->done ? 0 : -ENOMEM;
}

static int do_from(Build *b, const DfInstr *in, StrBuf *out)
{
        char err[512] = "", key[OCI_DIGEST_MAX];
        /* A new stage: nothing of the previous one's state stays. */
        strv_free(b->layers);
        b->layers = NULL;
        free(b->base);
        b->base = NULL;
        json_object_put(b->config);
        b->config = NULL;
        b->key[0] = '\0';
        cleanup_strv char **w = NULL;
        int r = dockerfile_words(in->args, b->from_args, &w, err, sizeof(err));
        if (r < 0)
                return emit_error(b, out, in, err);
        int j = in->from_stage >= 0 ? in->from_stage : stage_named(b, w[0]);
        if (j >= 0) {
                StageResult *st = &b->stages[j];
                if (!st->done)
                        return emit_error(b, out, in, "that stage was not built");
                b->layers = strv_copy(st->layers);
                if (st->base && !(b->base = strdup(st->base)))
                        return -ENOMEM;
                if (!b->layers || json_object_deep_copy(st->config, &b->config, NULL) < 0)
                        return -ENOMEM;
                return step_done(b, out, in, st->key, true, NULL);
        }
        cleanup_free char *text = NULL;
        r = resolve_image(b, w[0], &b->layers, &b->base, &b->config, &text, err, sizeof(err));
        if (r == -ENOENT)
                return emit_error(b, out, in, err);
        if (r < 0 || !text)
                return r < 0 ? r : -ENOMEM;
        if ((r = chain("", text, key)) < 0)
                return r;
        return step_done(b, out, in, key, cache_load(b, key), NULL);
}

/* --- COPY, ADD, and WORKDIR's directory -------------------------------------------- */

/* Packs the staged tree into a layer: its digest is part of the step's key. */
static int stage_to_layer(Build *b, const DfInstr *in, const char *stage, json_object *text,
                          StrBuf *out)
{
        char err[512] = "", tar_digest[OCI_DIGEST_MAX], key[OCI_DIGEST_MAX];
        cleanup_close int sfd = open(stage, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        int fd = tmpfile_in_store(b);
        if (sfd < 0 || fd < 0) {
                if (fd >= 0)
                        (void) close(fd);
                return -errno;
        }
        int r = build_layer_pack(sfd, fd, true, NULL, 0, 0, err, sizeof(err));
        if (r == 0)
                r = oci_digest_fd(fd, tar_digest, NULL);
        if (r == 0) {
                (void) json_object_array_add(text, json_object_new_string(tar_digest));
                r = chain(b->key, json_object_to_json_string_ext(text, JSON_C_TO_STRING_PLAIN),
                          key);
        }
        if (r == 0 && cache_load(b, key)) {
                (void) close(fd);
                return step_done(b, out, in, key, true, NULL);
        }
        char layer[OCI_DIGEST_MAX];
        if (r == 0 && (r = image_layer_add(b->s, fd, layer, err, sizeof(err))) == 0)
                r = hold(b, layer, true);
        (void) close(fd);
        if (r < 0) {
                if (*err)
                        return emit_error(b, out, in, err);
                return r;
        }
        if ((r = strv_append(&b->layers, layer)) < 0)
                return r;
        return step_done(b, out, in, key, false, layer);
}

static int make_stage(Build *b, char **ret)
{
        char *stage = NULL;
        if (asprintf(&stage, "%s/build-stage.XXXXXX", image_store_tmp_dir(b->s)) < 0)
                return -ENOMEM;
        if (!mkdtemp(stage) || chmod(stage, 0755) < 0) {
                int r = -errno;
                free(stage);
                return r;
        }
        *ret = stage;
        return 0;
}

static int parse_chown(const char *s, uid_t *uid, gid_t *gid)
{
        char *end = NULL;
        errno = 0;
        unsigned long u = strtoul(s, &end, 10), g = u;
        if (errno || end == s || (*end && *end != ':'))
                return -EINVAL;
        if (*end == ':') {
                const char *gs = end + 1;
                g = strtoul(gs, &end, 10);
                if (errno || end == gs || *end)
                        return -EINVAL;
        }
        if (u > 0xfffffffeUL || g > 0xfffffffeUL)
                return -EINVAL;
        *uid = (uid_t) u;
        *gid = (gid_t) g;
        return 0;
}

/* A read-only view of a state's merged tree, for COPY --from: one lower
 * directory as it is, several in an overlay mounted at a directory of the
 * store's tmp (*ret_mnt, for view_close()). */
static int view_open(Build *b, char *const *lowers, char **ret_mnt, int *ret_fd)
{
        size_t n = 0;
        while (lowers[n])
                n++;
        *ret_mnt = NULL;
        if (n == 0)
                return -ENOENT;
        if (n == 1) {
                *ret_fd = open(lowers[0], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                return *ret_fd < 0 ? -errno : 0;
        }
        if (n > 500)
                return -E2BIG;
        cleanup_free char *mnt = NULL, *opts = calloc(n + 1, 32);
        if (!opts || asprintf(&mnt, "%s/build-from.XXXXXX", image_store_tmp_dir(b->s)) < 0)
                return -ENOMEM;
        if (!mkdtemp(mnt))
                return -errno;
        /* The layers by fd, as rootfs.c mounts them: no path is misread. */
        int *fds = calloc(n, sizeof(int)), r = fds ? 0 : -ENOMEM;
        size_t len = (size_t) sprintf(opts, "lowerdir=");
        size_t k = 0;
        for (; r == 0 && k < n; k++) {
                fds[k] = open(lowers[k], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                if (fds[k] < 0) {
                        r = -errno;
                        break;
                }
                len += (size_t) sprintf(opts + len, "%s/proc/self/fd/%d", k ? ":" : "", fds[k]);
        }
        if (r == 0 &&
            mount("sandpit-build-from", mnt, "overlay", MS_RDONLY | MS_NODEV | MS_NOSUID, opts) < 0)
                r = -errno;
        for (size_t i = 0; fds && i < k; i++)
                if (fds[i] >= 0)
                        (void) close(fds[i]);
        free(fds);
        if (r == 0 && (*ret_fd = open(mnt, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
                r = -errno;
                (void) umount2(mnt, MNT_DETACH);
        }
        if (r < 0) {
                (void) rmdir(mnt);
                return r;
        }
        *ret_mnt = TAKE_PTR(mnt);
        return 0;
}

static void view_close(char *mnt, int fd)
{
        if (fd >= 0)
                (void) close(fd);
        if (mnt) {
                if (umount2(mnt, MNT_DETACH) < 0)
                        log_error_errno(-errno, "build: cannot unmount %s", mnt);
                (void) rmdir(mnt);
                free(mnt);
        }
}

static bool is_url(const char *s)
{
        return strncmp(s, "http://", 7) == 0 || strncmp(s, "https://", 8) == 0;
}

/* ADD of a URL: fetched by the agent into the staged tree at dst (into it,
 * named by the URL's last path component, when dest_dir), mode 0600 as Docker
 * makes it, owned by uid:gid, mtime its Last-Modified (else 0); with
 * --checksum its sha256 must match. */
static int add_url(Build *b, const DfInstr *in, const char *url, int sfd, const char *dst,
                   bool dest_dir, char *const *lowers, uid_t uid, gid_t gid, char *err,
                   size_t errlen)
{
        cleanup_free char *target = NULL, *dir = NULL;
        if (dest_dir) {
                const char *host = url + strcspn(url, ":") + 3;
                size_t plen = strcspn(host, "?#");
                const char *path = memchr(host, '/', plen);
                const char *end = host + plen, *name = end;
                while (path && name > path && name[-1] != '/')
                        name--;
                if (!path || name == end || (end - name == 1 && *name == '.') ||
                    (end - name == 2 && strncmp(name, "..", 2) == 0)) {
                        (void) snprintf(err, errlen,
                                        "%.200s names no file: give ADD a destination file", url);
                        return -EINVAL;
                }
                if (asprintf(&target, "%s/%.*s", streq(dst, "/") ? "" : dst, (int) (end - name),
                             name) < 0)
                        return -ENOMEM;
        } else if (!(target = strdup(dst)))
                return -ENOMEM;
        if (streq(target, "/")) {
                (void) snprintf(err, errlen, "ADD of %.200s onto /", url);
                return -EINVAL;
        }
        char *slash = strrchr(target, '/');
        if (!(dir = strndup(target, (size_t) (slash - target) + (slash == target))))
                return -ENOMEM;
        int r = build_mkdirs(sfd, dir, lowers);
        cleanup_close int dfd = r < 0 ? -1
                                      : openat(sfd, streq(dir, "/") ? "." : dir + 1,
                                               O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (r == 0 && dfd < 0)
                r = -errno;
        if (r < 0) {
                (void) snprintf(err, errlen, "ADD %.200s to %.200s: %s", url, target, strerror(-r));
                return r;
        }
        const char *base = slash + 1;
        (void) unlinkat(dfd, base, 0);
        cleanup_close int fd =
                openat(dfd, base, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0) {
                r = -errno;
                (void) snprintf(err, errlen, "ADD %.200s to %.200s: %s", url, target, strerror(-r));
                return r;
        }
        /* Never where a sandbox may not go (docs/networking.md): the sandbox range
         * and --blocked-cidr, beyond the private ranges and the node's own. */
        const NetConfig *nc = &b->a->cfg.net;
        size_t nblocked = 0, ndeny = 0;
        while (nc->blocked_cidrs && nc->blocked_cidrs[nblocked])
                nblocked++;
        cleanup_free HttpFetchCidr *deny = calloc(nblocked + 1, sizeof(*deny));
        if (!deny) {
                (void) unlinkat(dfd, base, 0);
                return -ENOMEM;
        }
        if (nc->sandbox_cidr && http_fetch_cidr_parse(nc->sandbox_cidr, &deny[ndeny]) == 0)
                ndeny++;
        for (size_t i = 0; i < nblocked; i++, ndeny++)
                if (http_fetch_cidr_parse(nc->blocked_cidrs[i], &deny[ndeny]) < 0) {
                        (void) snprintf(err, errlen, "ADD %.200s: bad --blocked-cidr %.60s", url,
                                        nc->blocked_cidrs[i]);
                        (void) unlinkat(dfd, base, 0);
                        return -EINVAL;
                }
        HttpFetchOptions o = {.max_bytes = image_store_max_layer_size(b->s),
                              .timeout_ms = ADD_URL_TIMEOUT_MS,
                              .max_redirects = ADD_URL_REDIRECTS,
                              .allow = b->a->cfg.build_fetch_allow,
                              .nallow = b->a->cfg.nbuild_fetch_allow,
                              .deny = deny,
                              .ndeny = ndeny};
        int64_t mtime = 0;
        r = http_fetch(url, fd, &o, &mtime, err, errlen);
        if (r == -EACCES) {
                char why[160];
                (void) snprintf(why, sizeof(why), "%s", err);
                (void) snprintf(err, errlen,
                                "ADD %.200s: %s; the agent fetches only public addresses unless "
                                "--build-fetch-allow names it",
                                url, why);
        }
        char digest[OCI_DIGEST_MAX];
        if (r == 0 && in->checksum && (r = oci_digest_fd(fd, digest, NULL)) == 0 &&
            !streq(digest, in->checksum)) {
                (void) snprintf(err, errlen, "%.200s has checksum %s, not the %s --checksum gives",
                                url, digest, in->checksum);
                r = -EBADMSG;
        }
        struct timespec ts[2] = {{.tv_sec = mtime}, {.tv_sec = mtime}};
        if (r == 0 && (fchown(fd, uid, gid) < 0 || fchmod(fd, 0600) < 0 || futimens(fd, ts) < 0))
                r = -errno;
        if (r < 0)
                (void) unlinkat(dfd, base, 0);
        return r;
}

/* Whether fd holds an archive ADD unpacks: tar, gzip, zstd (what the
 * store's unpacker reads). */
static bool is_archive(int fd)
{
        unsigned char h[512];
        ssize_t n = pread(fd, h, sizeof(h), 0);
        if (n >= 2 && h[0] == 0x1f && h[1] == 0x8b)
                return true;
        if (n >= 4 && memcmp(h, "\x28\xb5\x2f\xfd", 4) == 0)
                return true;
        return n == 512 && memcmp(h + 257, "ustar", 5) == 0;
}

/* ADD of an archive of the context (src; opened as COPY would reach it, no
 * link followed): unpacked by the store's layer unpacker (no entry lands
 * outside it) into a directory of the store's tmp, whose contents are then
 * copied to dst. 1 when src is no archive (then COPY's rules apply). */
static int add_archive(Build *b, const char *src, int sfd, const char *dst, char *const *lowers,
                       uid_t uid, gid_t gid, char *err, size_t errlen)
{
        const char *rel = src + strspn(src, "/");
        struct open_how how = {.flags = O_RDONLY | O_CLOEXEC | O_NOFOLLOW,
                               .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
                                          RESOLVE_NO_MAGICLINKS};
        cleanup_close int fd =
                *rel ? (int) syscall(SYS_openat2, b->ctx_fd, rel, &how, sizeof(how)) : -1;
        struct stat st;
        if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || !is_archive(fd))
                return 1; /* COPY's rules (and errors) */
        cleanup_free char *tmp = NULL;
        if (asprintf(&tmp, "%s/build-add.XXXXXX", image_store_tmp_dir(b->s)) < 0)
                return -ENOMEM;
        if (!mkdtemp(tmp))
                return -errno;
        char why[384] = "";
        int r = image_layer_unpack(fd, tmp, image_store_max_layer_size(b->s), why, sizeof(why));
        if (r < 0)
                (void) snprintf(err, errlen, "ADD %.100s: %.380s", src, why);
        cleanup_close int tfd = r < 0 ? -1 : open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (r == 0 && tfd < 0)
                r = -errno;
        if (r == 0)
                r = build_copy(tfd, "/", "the archive", sfd, dst, true, lowers, uid, gid, err,
                               errlen);
        (void) rm_rf(tmp);
        return r;
}

static int do_copy(Build *b, const DfInstr *in, StrBuf *out)
{
        char err[512] = "";
        cleanup_strv char **vars = vars_now(b), **w = NULL, **lowers = NULL, **from_lowers = NULL;
        if (!vars)
                return -ENOMEM;
        int r = 0;
        if (in->argv) {
                /* The JSON form's strings substitute too, each one word. */
                w = calloc(1, sizeof(char *));
                if (!w)
                        return -ENOMEM;
                for (char **e = in->argv; r == 0 && *e; e++) {
                        cleanup_free char *x = NULL;
                        r = dockerfile_expand(*e, vars, &x, err, sizeof(err));
                        if (r == 0)
                                r = strv_append(&w, x);
                }
        } else
                r = dockerfile_words(in->args, vars, &w, err, sizeof(err));
        if (r < 0)
                return r == -EINVAL ? emit_error(b, out, in, err) : r;
        size_t n = 0;
        while (w[n])
                n++;
        uid_t uid = 0;
        gid_t gid = 0;
        if (in->chown && parse_chown(in->chown, &uid, &gid) < 0)
                return emit_error(b, out, in,
                                  "--chown takes numeric ids (UID[:GID]) in sandpit's builder");
        if (n < 2 || !*w[n - 1])
                return emit_error(b, out, in, "needs a source and a destination");
        const char *dest = w[n - 1];
        bool dest_dir = n > 2 || dest[strlen(dest) - 1] == '/';
        cleanup_free char *joined = NULL, *dst = NULL, *stage = NULL, *from_text = NULL;
        if (asprintf(&joined, "%s/%s", dest[0] == '/' ? "" : json_str(b->config, "working_dir") ?: "",
                     dest) < 0)
                return -ENOMEM;
        if ((r = build_path_normalize(joined, &dst)) < 0)
                return r;
        for (size_t i = 0; i + 1 < n; i++) {
                if (strstr(w[i], "://") && (in->kind != DF_ADD || !is_url(w[i])))
                        return emit_error(b, out, in,
                                          in->kind == DF_ADD
                                                  ? "ADD fetches http:// and https:// URLs only"
                                                  : "COPY takes no URL (ADD does)");
                if (strpbrk(w[i], "*?[") && !is_url(w[i]))
                        return emit_error(b, out, in, "wildcards in sources are not supported");
        }
        /* COPY --from: the sources are paths of an earlier stage's result, or of
         * an image or template. */
        char where[160] = "the build context";
        int src_fd = b->ctx_fd;
        char *view_mnt = NULL;
        int view_fd = -1;
        if (in->from) {
                if (in->from_stage >= 0) {
                        const StageResult *st = &b->stages[in->from_stage];
                        const char *nm = b->df.stages[in->from_stage].name;
                        if (!st->done)
                                return emit_error(b, out, in, "that stage was not built");
                        from_lowers = lowers_of(b, st->layers, st->base);
                        if (nm)
                                (void) snprintf(where, sizeof(where), "stage %s", nm);
                        else
                                (void) snprintf(where, sizeof(where), "stage %d", in->from_stage);
                        if (asprintf(&from_text, "stage@%s", st->key) < 0)
                                from_text = NULL;
                } else {
                        cleanup_strv char **fl = NULL;
                        cleanup_free char *fb = NULL;
                        cleanup_json json_object *fc = NULL;
                        r = resolve_image(b, in->from, &fl, &fb, &fc, &from_text, err, sizeof(err));
                        if (r == -ENOENT)
                                return emit_error(b, out, in, err);
                        if (r < 0)
                                return r;
                        from_lowers = lowers_of(b, fl, fb);
                        (void) snprintf(where, sizeof(where), "%.150s", in->from);
                }
                if (!from_lowers || !from_text)
                        return -ENOMEM;
                if ((r = view_open(b, from_lowers, &view_mnt, &view_fd)) < 0) {
                        char msg[512];
                        (void) snprintf(msg, sizeof(msg), "cannot read %s: %s", where,
                                        strerror(-r));
                        return emit_error(b, out, in, msg);
                }
                src_fd = view_fd;
        }
        if (!(lowers = lowers_now(b)) || (r = make_stage(b, &stage)) < 0 || !stage) {
                view_close(view_mnt, view_fd);
                return r < 0 ? r : -ENOMEM;
        }
        cleanup_close int sfd = open(stage, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (sfd < 0)
                r = -errno;
        json_object *text = json_object_new_array();
        (void) json_object_array_add(text, json_object_new_string(dockerfile_kind_name(in->kind)));
        (void) json_object_array_add(text, json_object_new_string(in->chown ?: ""));
        (void) json_object_array_add(text, json_object_new_string(dst));
        if (from_text)
                (void) json_object_array_add(text, json_object_new_string(from_text));
        for (size_t i = 0; r == 0 && i + 1 < n; i++) {
                (void) json_object_array_add(text, json_object_new_string(w[i]));
                if (in->kind == DF_ADD && is_url(w[i])) {
                        r = add_url(b, in, w[i], sfd, dst, dest_dir, lowers, uid, gid, err,
                                    sizeof(err));
                        continue;
                }
                if (in->kind == DF_ADD &&
                    (r = add_archive(b, w[i], sfd, dst, lowers, uid, gid, err, sizeof(err))) <= 0)
                        continue;
                r = build_copy(src_fd, w[i], where, sfd, dst, dest_dir, lowers, uid, gid, err,
                               sizeof(err));
        }
        view_close(view_mnt, view_fd);
        if (r == 0)
                r = stage_to_layer(b, in, stage, text, out);
        else if (*err)
                r = emit_error(b, out, in, err);
        json_object_put(text);
        (void) rm_rf(stage);
        return r;
}

/* --- the steps that only change the config ---------------------------------------- */

static int do_config(Build *b, const DfInstr *in, StrBuf *out)
{
        char err[512] = "", key[OCI_DIGEST_MAX];
        cleanup_strv char **vars = vars_now(b), **w = NULL;
        cleanup_free char *wd = NULL;
        if (!vars)
                return -ENOMEM;
        int r = 0;
        json_object *text = json_object_new_array();
        (void) json_object_array_add(text, json_object_new_string(dockerfile_kind_name(in->kind)));
        switch (in->kind) {
        case DF_ENV: {
                if ((r = dockerfile_env_pairs(in->args, vars, &w, err, sizeof(err))) < 0)
                        break;
                cleanup_strv char **env = config_strv(b, "env");
                for (char **e = w; r == 0 && *e; e++) {
                        r = env_put(&env, *e);
                        (void) json_object_array_add(text, json_object_new_string(*e));
                }
                if (r == 0)
                        (void) json_object_object_add(b->config, "env", strv_json(env));
                break;
        }
        case DF_ARG: {
                if ((r = dockerfile_env_pairs(in->args, vars, &w, err, sizeof(err))) < 0)
                        break;
                size_t k = strcspn(w[0], "=");
                const char *val = NULL;
                for (char **e = b->build_args; e && *e; e++)
                        if (strncmp(*e, w[0], k) == 0 && (*e)[k] == '=')
                                val = *e;
                if (!val && w[0][k] == '=')
                        val = w[0];
                for (char **e = b->from_args; !val && e && *e; e++)
                        if (strncmp(*e, w[0], k) == 0 && (*e)[k] == '=')
                                val = *e;
                if (val) {
                        cleanup_free char *kv = NULL;
                        if (asprintf(&kv, "%.*s=%s", (int) k, w[0], strchr(val, '=') + 1) < 0)
                                r = -ENOMEM;
                        else
                                r = env_put(&b->args, kv);
                }
                /* The name only: a value counts where it is used (substituted into
                 * a later step's text, or in a RUN's env). */
                (void) json_object_array_add(text, json_object_new_string(w[0]));
                break;
        }
        case DF_WORKDIR:
        case DF_USER: {
                if ((r = dockerfile_words(in->args, vars, &w, err, sizeof(err))) < 0)
                        break;
                if (in->kind == DF_USER) {
                        (void) json_object_object_add(b->config, "user",
                                                      json_object_new_string(w[0]));
                        (void) json_object_array_add(text, json_object_new_string(w[0]));
                        break;
                }
                const char *cwd = json_str(b->config, "working_dir") ?: "/";
                cleanup_free char *joined = NULL, *dir = NULL;
                if (asprintf(&joined, "%s/%s", w[0][0] == '/' ? "" : cwd, w[0]) < 0)
                        return -ENOMEM;
                if ((r = build_path_normalize(joined, &dir)) < 0)
                        break;
                if (!(wd = strdup(dir)))
                        return -ENOMEM;
                (void) json_object_object_add(b->config, "working_dir",
                                              json_object_new_string(dir));
                (void) json_object_array_add(text, json_object_new_string(dir));
                break;
        }
        case DF_CMD:
        case DF_ENTRYPOINT: {
                json_object *argv = in->argv ? strv_json(in->argv) : json_object_new_array();
                if (!in->argv && *in->args) {
                        (void) json_object_array_add(argv, json_object_new_string("/bin/sh"));
                        (void) json_object_array_add(argv, json_object_new_string("-c"));
                        (void) json_object_array_add(argv, json_object_new_string(in->args));
                }
                (void) json_object_array_add(text, json_object_get(argv));
                (void) json_object_object_add(b->config, in->kind == DF_CMD ? "cmd" : "entrypoint",
                                              argv);
                if (in->kind == DF_ENTRYPOINT) /* as Docker: a new entrypoint drops the CMD */
                        (void) json_object_object_del(b->config, "cmd");
                break;
        }
        default: /* LABEL, EXPOSE: accepted, not applied */
                (void) json_object_array_add(text, json_object_new_string(in->args));
                break;
        }
        if (r == 0 && wd) {
                /* WORKDIR makes its directory when the layers so far have none. */
                cleanup_strv char **lowers = lowers_now(b);
                struct stat st;
                if (!lowers)
                        r = -ENOMEM;
                else if (build_lower_stat(lowers, wd, &st) < 0) {
                        cleanup_free char *stage = NULL;
                        if ((r = make_stage(b, &stage)) < 0 || !stage) {
                                json_object_put(text);
                                return r < 0 ? r : -ENOMEM;
                        }
                        cleanup_close int sfd = open(stage, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                        r = sfd < 0 ? -errno : build_mkdirs(sfd, wd, lowers);
                        if (r == 0)
                                r = stage_to_layer(b, in, stage, text, out);
                        (void) rm_rf(stage);
                        json_object_put(text);
                        return r;
                }
        }
        if (r == 0)
                r = chain(b->key, json_object_to_json_string_ext(text, JSON_C_TO_STRING_PLAIN),
                          key);
        json_object_put(text);
        if (r == -EINVAL || r == -EPERM)
                return emit_error(b, out, in, *err ? err : "bad argument");
        if (r < 0)
                return r;
        bool cached = cache_load(b, key);
        return step_done(b, out, in, key, cached, NULL);
}

/* --- RUN --------------------------------------------------------------------------- */

static void tail_add(Build *b, const char *data)
{
        size_t have = strlen(b->tail), n = strlen(data);
        if (n >= TAIL_MAX) {
                memcpy(b->tail, data + n - TAIL_MAX, TAIL_MAX);
                b->tail[TAIL_MAX] = '\0';
                return;
        }
        if (have + n > TAIL_MAX) {
                memmove(b->tail, b->tail + (have + n - TAIL_MAX), TAIL_MAX - n);
                have = TAIL_MAX - n;
        }
        memcpy(b->tail + have, data, n + 1);
}

static void run_end_sandbox(Build *b)
{
        if (b->es) {
                exec_stream_free(b->es);
                b->es = NULL;
        }
        if (b->sandbox_id) {
                int r = sandbox_delete(b->a, b->sandbox_id);
                if (r < 0 && r != -ENOENT)
                        log_error_errno(r, "build: cannot delete sandbox %s", b->sandbox_id);
                free(b->sandbox_id);
                b->sandbox_id = NULL;
        }
        strbuf_done(&b->events);
}

static int run_start(Build *b, const DfInstr *in, StrBuf *out)
{
        char err[512] = "";
        cleanup_strv char **argv = NULL;
        if (in->argv)
                argv = strv_copy(in->argv);
        else {
                char *sh[] = {"/bin/sh", "-c", in->args, NULL};
                argv = strv_copy(sh);
        }
        if (!argv)
                return -ENOMEM;
        /* The key: the state, the command, and the ARGs it sees in its env. */
        json_object *text = json_object_new_array();
        (void) json_object_array_add(text, json_object_new_string("RUN"));
        (void) json_object_array_add(text, strv_json(argv));
        (void) json_object_array_add(text, strv_json(b->args));
        int r = chain(b->key, json_object_to_json_string_ext(text, JSON_C_TO_STRING_PLAIN),
                      b->run_key);
        json_object_put(text);
        if (r < 0)
                return r;
        if (cache_load(b, b->run_key))
                return step_done(b, out, in, b->run_key, true, NULL);

        /* A sandbox on the state so far (its record is written at every step's end). */
        cleanup_free char *state = NULL, *tpl = NULL;
        char id[32] = "build-";
        if ((r = cache_name(b->key, &state)) < 0 || asprintf(&tpl, "image:%s", state) < 0 ||
            (r = random_id(id + 6, 14)) < 0)
                return r < 0 ? r : -ENOMEM;
        json_object *req = json_object_new_object();
        if (b->sandbox_opts) {
                json_object_object_foreach(b->sandbox_opts, k, v)
                        (void) json_object_object_add(req, k, json_object_get(v));
        }
        json_object *labels = json_object_new_object();
        (void) json_object_object_add(labels, "sandpit.build", json_object_new_string(b->name));
        (void) json_object_object_add(req, "id", json_object_new_string(id));
        (void) json_object_object_add(req, "template", json_object_new_string(tpl));
        (void) json_object_object_add(req, "labels", labels);
        (void) json_object_object_add(req, "timeout", json_object_new_int64(RUN_TIMEOUT_S));
        (void) json_object_object_add(req, "user", json_object_new_string("root"));
        SandboxSpec spec = {0};
        r = sandbox_spec_from_json(req, &spec, err, sizeof(err));
        json_object_put(req);
        if (r < 0)
                return emit_error(b, out, in, err);
        json_object *made = NULL;
        r = sandbox_create(b->a, &spec, &made, err, sizeof(err));
        json_object_put(made);
        if (r < 0) {
                char msg[768];
                (void) snprintf(msg, sizeof(msg), "cannot make the sandbox: %s",
                                *err ? err : strerror(-r));
                return emit_error(b, out, in, msg);
        }
        if (!(b->sandbox_id = strdup(id)))
                return -ENOMEM;

        SandboxExecInfo info;
        if (sandbox_exec_info(b->a, id, &info) < 0)
                return emit_error(b, out, in, "the sandbox went away");
        json_object *body = json_object_new_object(), *env = json_object_new_object();
        for (char **e = b->args; e && *e; e++) {
                size_t k = strcspn(*e, "=");
                cleanup_free char *name = strndup(*e, k);
                if (name)
                        (void) json_object_object_add(env, name,
                                                      json_object_new_string(*e + k + 1));
        }
        const char *user = json_str(b->config, "user");
        cleanup_free char *u = user ? strndup(user, strcspn(user, ":")) : strdup("root");
        (void) json_object_object_add(body, "cmd", strv_json(argv));
        (void) json_object_object_add(body, "env", env);
        (void) json_object_object_add(body, "user", json_object_new_string(u && *u ? u : "root"));
        (void) json_object_object_add(
                body, "cwd", json_object_new_string(json_str(b->config, "working_dir") ?: "/"));
        ExecRequest er;
        r = exec_request_from_json(body, &info, &er, err, sizeof(err));
        json_object_put(body);
        int fd = -1;
        uint32_t pid = 0;
        if (r == 0) {
                r = exec_spawn(info.socket_path, info.init_pid, &er, &fd, &pid, err, sizeof(err));
                exec_request_done(&er);
        }
        if (r == 0)
                r = exec_stream_new(fd, pid, b->a, info.name, 0, &b->es);
        sandbox_exec_info_done(&info);
        if (r < 0) {
                char msg[768];
                (void) snprintf(msg, sizeof(msg), "cannot start the command: %s",
                                *err ? err : strerror(-r));
                run_end_sandbox(b);
                return emit_error(b, out, in, msg);
        }
        b->tail[0] = '\0';
        b->exited = b->oom_killed = b->timed_out = false;
        b->exit_code = -1;
        b->run_error[0] = '\0';
        return 0;
}

/* One event of the command's stream. */
static int run_event(Build *b, const DfInstr *in, const char *line, StrBuf *out)
{
        cleanup_json json_object *ev = NULL;
        if (json_parse_strict(line, strlen(line), 8, &ev, NULL) < 0)
                return 0;
        const char *type = json_str(ev, "type") ?: "";
        if (streq(type, "stdout") || streq(type, "stderr")) {
                const char *data = json_str(ev, "data") ?: "";
                tail_add(b, data);
                json_object *o = step_obj(b, in);
                (void) json_object_object_add(o, "stream", json_object_new_string(type));
                (void) json_object_object_add(o, "data", json_object_new_string(data));
                return emit(out, o);
        }
        if (streq(type, "exit")) {
                b->exited = true;
                b->exit_code = (int) json_object_get_int(json_field(ev, "exit_code"));
                if (json_object_get_int(json_field(ev, "signal")) != 0)
                        b->exit_code = 128 + json_object_get_int(json_field(ev, "signal"));
                b->oom_killed = json_object_get_boolean(json_field(ev, "oom_killed"));
                b->timed_out = json_object_get_boolean(json_field(ev, "timed_out"));
        } else if (streq(type, "error"))
                (void) snprintf(b->run_error, sizeof(b->run_error), "%s",
                                json_str(ev, "message") ?: "the command failed");
        return 0;
}

/* The command ended: its upper dir becomes the layer, or the build fails. */
static int run_finish(Build *b, const DfInstr *in, StrBuf *out)
{
        char err[512] = "", msg[768];
        if (!b->exited || b->exit_code != 0) {
                if (!b->exited)
                        (void) snprintf(msg, sizeof(msg), "%s",
                                        *b->run_error ? b->run_error
                                                      : "the command did not finish");
                else
                        (void) snprintf(msg, sizeof(msg), "the command exited with %d%s%s",
                                        b->exit_code, b->oom_killed ? " (out of memory)" : "",
                                        b->timed_out ? " (timed out)" : "");
                run_end_sandbox(b);
                json_object *o = step_obj(b, in);
                char full[1024];
                (void) snprintf(full, sizeof(full), "step %zu (line %u, RUN): %.700s",
                                (size_t) (in - b->df.v) + 1, in->line, msg);
                (void) json_object_object_add(o, "error", json_object_new_string(full));
                if (b->exited)
                        (void) json_object_object_add(o, "exit_code",
                                                      json_object_new_int(b->exit_code));
                (void) json_object_object_add(o, "output_tail", json_object_new_string(b->tail));
                b->finished = true;
                return emit(out, o);
        }
        cleanup_free char *upper = NULL;
        if (asprintf(&upper, "%s/%s/disk/upper", b->a->sandboxes_dir, b->sandbox_id) < 0)
                return -ENOMEM;
        cleanup_close int ufd = open(upper, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        int fd = tmpfile_in_store(b);
        int r = ufd < 0 || fd < 0 ? -errno : 0;
        /* The mount points the sandbox's setup made are not the command's doing. */
        char *skip[] = {IP_CONTROL_DIR + 1, CODE_SOCKETS_MOUNT + 1, CODE_KERNELS_MOUNT + 1, NULL};
        /* With user namespaces the upper layer holds host ids (userns.h). */
        SandboxFsInfo fi = {0};
        if (r == 0)
                r = sandbox_fs_info(b->a, b->sandbox_id, &fi);
        if (r == 0)
                r = build_layer_pack(ufd, fd, false, skip, fi.id_shift,
                                     b->a->userns ? userns_alloc_size(b->a->userns) : 0, err,
                                     sizeof(err));
        sandbox_fs_info_done(&fi);
        run_end_sandbox(b);
        char layer[OCI_DIGEST_MAX];
        if (r == 0 && (r = image_layer_add(b->s, fd, layer, err, sizeof(err))) == 0)
                r = hold(b, layer, true);
        if (fd >= 0)
                (void) close(fd);
        if (r < 0) {
                (void) snprintf(msg, sizeof(msg), "cannot store its layer: %s",
                                *err ? err : strerror(-r));
                return emit_error(b, out, in, msg);
        }
        if ((r = strv_append(&b->layers, layer)) < 0)
                return r;
        return step_done(b, out, in, b->run_key, false, layer);
}

/* Reads what the command sent; 1 while it runs. */
static int run_poll(Build *b, const DfInstr *in, int client_fd, StrBuf *out)
{
        char buf[16384];
        ssize_t n = exec_stream_read(b->es, client_fd, buf, sizeof(buf));
        if (n < 0)
                return (int) n;
        if (n == 0)
                return run_finish(b, in, out);
        int r = strbuf_append(&b->events, buf, (size_t) n, EVENT_LINE_MAX);
        if (r < 0)
                return r;
        size_t start = 0;
        for (size_t i = 0; i < b->events.len; i++) {
                if (b->events.data[i] != '\n')
                        continue;
                b->events.data[i] = '\0';
                if ((r = run_event(b, in, b->events.data + start, out)) < 0)
                        return r;
                start = i + 1;
        }
        memmove(b->events.data, b->events.data + start, b->events.len - start);
        b->events.len -= start;
        if (b->events.data)
                b->events.data[b->events.len] = '\0';
        return 1;
}

/* --- the build ---------------------------------------------------------------------- */

int build_image_name(Agent *a, const char *tag, char **ret)
{
        /* A bare name is this node's: never looked up in a default registry. */
        size_t first = strcspn(tag, "/");
        bool registry = tag[first] == '/' && (memchr(tag, '.', first) || memchr(tag, ':', first) ||
                                              (first == 9 && strncmp(tag, "localhost", 9) == 0));
        cleanup_free char *full = NULL;
        if (!registry && asprintf(&full, "%s/%s", BUILD_LOCAL_REGISTRY, tag) < 0)
                return -ENOMEM;
        return image_canonical_name(a->images, full ? full : tag, ret);
}

int build_new(Agent *a, Dockerfile *df, char *ctx_dir, const BuildOptions *o, Build **ret)
{
        Build *b = calloc(1, sizeof(*b));
        if (!b)
                return -ENOMEM;
        b->a = a;
        b->s = a->images;
        b->df = *df;
        *df = (Dockerfile){0};
        b->ctx_dir = ctx_dir;
        b->ctx_fd = open(ctx_dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        b->name = strdup(o->name);
        b->build_args = strv_copy(o->build_args ? o->build_args : (char *[]){NULL});
        b->args = calloc(1, sizeof(char *));
        b->from_args = calloc(1, sizeof(char *));
        b->sandbox_opts = json_object_get(o->sandbox);
        b->cur_stage = -1;
        b->needed = calloc(b->df.nstages + 1, sizeof(bool));
        b->stages = calloc(b->df.nstages + 1, sizeof(StageResult));
        if (b->ctx_fd < 0 || !b->name || !b->build_args || !b->args || !b->from_args ||
            !b->needed || !b->stages) {
                int r = b->ctx_fd < 0 ? -errno : -ENOMEM;
                build_free(b);
                return r;
        }
        char err[256];
        int r = dockerfile_plan(&b->df, o->target, b->needed, &b->target, err, sizeof(err));
        if (r < 0) {
                build_free(b);
                return r;
        }
        *ret = b;
        return 0;
}

static int finish(Build *b, StrBuf *out)
{
        int r = image_record_local(b->s, b->name, b->base, b->layers, b->config, false);
        if (r < 0)
                return emit_error(b, out, NULL, "cannot record the image");
        cleanup_json json_object *rec = NULL;
        (void) image_record_get(b->s, b->name, &rec);
        json_object *o = json_object_new_object();
        size_t n = 0;
        while (b->layers && b->layers[n])
                n++;
        (void) json_object_object_add(o, "image", json_object_new_string(b->name));
        (void) json_object_object_add(o, "digest",
                                      json_object_new_string(json_str(rec, "digest") ?: ""));
        (void) json_object_object_add(o, "layers", json_object_new_int64((int64_t) n));
        if (b->base)
                (void) json_object_object_add(o, "base", json_object_new_string(b->base));
        b->finished = true;
        log_info("built image %s (%zu layers)", b->name, n);
        return emit(out, o);
}

/* Skips the stages the target does not need; true at the end of the target
 * stage (the end of the file, or a stage after it). */
static bool at_end(Build *b)
{
        while (b->pc < b->df.n && b->df.v[b->pc].stage >= 0 &&
               (size_t) b->df.v[b->pc].stage < b->target && !b->needed[b->df.v[b->pc].stage])
                b->pc++;
        return b->pc == b->df.n ||
               (b->df.v[b->pc].stage >= 0 && (size_t) b->df.v[b->pc].stage > b->target);
}

int build_next(Build *b, int client_fd, StrBuf *out)
{
        if (b->finished)
                return 0;
        int r = 0;
        if (b->es)
                r = run_poll(b, &b->df.v[b->pc - 1], client_fd, out);
        else if (at_end(b))
                r = finish(b, out);
        else {
                const DfInstr *in = &b->df.v[b->pc++];
                json_object *o = step_obj(b, in);
                cleanup_free char *shown = NULL;
                if (asprintf(&shown, "%s %s", dockerfile_kind_name(in->kind), in->args) < 0)
                        shown = NULL;
                (void) json_object_object_add(o, "instruction",
                                              json_object_new_string(shown ?: ""));
                if ((r = emit(out, o)) < 0)
                        return r;
                if (!b->from_done && in->kind == DF_ARG) {
                        /* Before FROM: a variable for the FROMs only. */
                        char err[256] = "";
                        cleanup_strv char **w = NULL;
                        r = dockerfile_env_pairs(in->args, NULL, &w, err, sizeof(err));
                        size_t k = r == 0 ? strcspn(w[0], "=") : 0;
                        const char *val = NULL;
                        for (char **e = b->build_args; r == 0 && *e; e++)
                                if (strncmp(*e, w[0], k) == 0 && (*e)[k] == '=')
                                        val = *e;
                        if (r == 0 && (val || w[0][k] == '='))
                                r = env_put(&b->from_args, val ? val : w[0]);
                        json_object *d = step_obj(b, in);
                        (void) json_object_object_add(d, "cached", json_object_new_boolean(true));
                        if (r == 0)
                                r = emit(out, d);
                        else
                                json_object_put(d);
                } else if (in->kind == DF_FROM) {
                        /* The stage before is done; ARGs are each stage's own (those
                         * before the first FROM give the defaults of the same names). */
                        b->from_done = true;
                        r = stage_save(b);
                        b->cur_stage = in->stage;
                        strv_free(b->args);
                        if (!(b->args = calloc(1, sizeof(char *))))
                                r = -ENOMEM;
                        if (r == 0)
                                r = do_from(b, in, out);
                } else if (in->kind == DF_RUN)
                        r = run_start(b, in, out);
                else if (in->kind == DF_COPY || in->kind == DF_ADD)
                        r = do_copy(b, in, out);
                else
                        r = do_config(b, in, out);
        }
        if (r == -ECONNRESET)
                return r;
        if (r < 0 && !b->finished) {
                char msg[256];
                (void) snprintf(msg, sizeof(msg), "the build failed: %s", strerror(-r));
                r = emit_error(b, out, b->pc ? &b->df.v[b->pc - 1] : NULL, msg);
        }
        if (r < 0)
                return r;
        return b->finished ? 0 : 1;
}

void build_free(Build *b)
{
        if (!b)
                return;
        run_end_sandbox(b);
        if (b->ctx_fd >= 0)
                (void) close(b->ctx_fd);
        if (b->ctx_dir)
                (void) rm_rf(b->ctx_dir);
        free(b->ctx_dir);
        dockerfile_done(&b->df);
        free(b->name);
        strv_free(b->build_args);
        strv_free(b->args);
        strv_free(b->from_args);
        for (size_t i = 0; b->stages && i < b->df.nstages; i++)
                stage_result_done(&b->stages[i]);
        free(b->stages);
        free(b->needed);
        /* What the build held against the GC: its records name the layers now. */
        for (char **e = b->held; e && *e; e++)
                image_release(b->s, *e);
        strv_free(b->held);
        strv_free(b->layers);
        free(b->base);
        json_object_put(b->config);
        json_object_put(b->sandbox_opts);
        free(b);
}

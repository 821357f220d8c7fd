/* The node's image store (see image.h): pulls with lib's OCI registry client,
 * layers checked against their digests and unpacked once each, images as
 * templates. One lock (ImageStore.lock) over the table of pulls in flight;
 * never held across the network or the disk, except by image_remove(). */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "image.h"
#include "sandpit/json.h"
#include "sandpit/log.h"
#include "sandpit/macro.h"
#include "sandpit/oci.h"
#include "sandpit/util.h"

#define RECORD_MAX         ((size_t) 16 * 1024 * 1024)
#define AUTH_FILE_MAX      ((size_t) 1024 * 1024)
#define REQUEST_TIMEOUT_MS (30L * 60 * 1000)

/* nftw() has no userdata: the sum of disk_use(), under ImageStore.lock. */
static uint64_t du_total;

typedef struct Pin {
        char *name; /* an image's canonical name */
        unsigned n;
        struct Pin *next;
} Pin;

typedef struct Pull {
        char *name;
        bool done;
        int result;
        char err[512];
        unsigned refs; /* the puller and its waiters */
        struct Pull *next;
} Pull;

struct ImageStore {
        char *dir, *layers_dir, *images_dir, *tmp_dir;
        char *ca_file, *auth_file, *default_registry;
        char **insecure;
        uint64_t max_layer_size, max_store_size;
        char *sandboxes_dir;
        char *templates_dir; /* a built image's "base" directory template */
        bool (*in_use)(const char *name, void *userdata);
        void *userdata;
        pthread_mutex_t lock;
        pthread_cond_t done; /* a pull finished */
        Pull *pulls;
        unsigned active;
        Pin *pins; /* images whose sandboxes are being created */
};

void image_store_free(ImageStore *s)
{
        if (!s)
                return;
        free(s->dir);
        free(s->layers_dir);
        free(s->images_dir);
        free(s->tmp_dir);
        free(s->ca_file);
        free(s->auth_file);
        free(s->default_registry);
        free(s->sandboxes_dir);
        free(s->templates_dir);
        strv_free(s->insecure);
        for (Pin *p = s->pins, *next; p; p = next) {
                next = p->next;
                free(p->name);
                free(p);
        }
        (void) pthread_mutex_destroy(&s->lock);
        (void) pthread_cond_destroy(&s->done);
        free(s);
}

static char *strdup_opt(const char *s)
{
        return s ? strdup(s) : NULL;
}

static bool dead_agent_tmp(const char *dir, const char *name, void *userdata)
{
        (void) dir, (void) userdata;
        char *end = NULL;
        long pid = strtol(name, &end, 10);
        if (*end || pid <= 0 || pid > INT32_MAX)
                return true; /* not ours to keep */
        return pid == getpid() || (kill((pid_t) pid, 0) < 0 && errno == ESRCH);
}

static int clean_tmp(const char *store)
{
        cleanup_free char *tmp = NULL;
        cleanup_strv char **dead = NULL;
        if (asprintf(&tmp, "%s/tmp", store) < 0)
                return -ENOMEM;
        int r = dir_list(tmp, dead_agent_tmp, NULL, &dead);
        STRV_FOREACH(d, dead) {
                cleanup_free char *p = NULL;
                if (r == 0 && asprintf(&p, "%s/%s", tmp, *d) < 0)
                        return -ENOMEM;
                if (r == 0)
                        r = rm_rf(p);
        }
        return r;
}

int image_store_new(const ImageStoreConfig *cfg, ImageStore **ret)
{
        ImageStore *s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        (void) pthread_mutex_init(&s->lock, NULL);
        (void) pthread_cond_init(&s->done, NULL);
        s->max_layer_size = cfg->max_layer_size;
        s->max_store_size = cfg->max_store_size;
        s->in_use = cfg->in_use;
        s->userdata = cfg->userdata;
        s->sandboxes_dir = strdup_opt(cfg->sandboxes_dir);
        s->templates_dir = strdup_opt(cfg->templates_dir);
        s->dir = strdup(cfg->dir);
        s->ca_file = strdup_opt(cfg->ca_file);
        s->auth_file = strdup_opt(cfg->auth_file);
        s->default_registry = strdup_opt(cfg->default_registry);
        s->insecure = strv_copy(cfg->insecure);
        if (asprintf(&s->layers_dir, "%s/layers", cfg->dir) < 0)
                s->layers_dir = NULL;
        if (asprintf(&s->images_dir, "%s/images", cfg->dir) < 0)
                s->images_dir = NULL;
        /* tmp/<pid>: another agent on the same store keeps its own. */
        if (asprintf(&s->tmp_dir, "%s/tmp/%d", cfg->dir, (int) getpid()) < 0)
                s->tmp_dir = NULL;
        int r = 0;
        if (!s->dir || !s->layers_dir || !s->images_dir || !s->tmp_dir || !s->insecure ||
            (cfg->ca_file && !s->ca_file) || (cfg->auth_file && !s->auth_file) ||
            (cfg->default_registry && !s->default_registry) ||
            (cfg->sandboxes_dir && !s->sandboxes_dir) || (cfg->templates_dir && !s->templates_dir))
                r = -ENOMEM;
        /* What killed pulls left: the tmp/<pid> of agents that are gone. */
        if (r == 0)
                r = clean_tmp(cfg->dir);
        if (r == 0 &&
            ((r = mkdir_p(s->layers_dir, 0700)) < 0 || (r = mkdir_p(s->images_dir, 0700)) < 0 ||
             (r = mkdir_p(s->tmp_dir, 0700)) < 0))
                log_error_errno(r, "cannot make the image store %s", s->dir);
        if (r < 0) {
                image_store_free(s);
                return r;
        }
        *ret = s;
        return 0;
}

/* --- names and records ------------------------------------------------------ */

int image_canonical_name(ImageStore *s, const char *ref, char **ret)
{
        OciRef r = {0};
        int k = oci_ref_parse(ref, s->default_registry, &r);
        if (k < 0)
                return k;
        k = oci_ref_format(&r, ret);
        oci_ref_done(&r);
        return k;
}

static int record_path(ImageStore *s, const char *name, char **ret)
{
        char d[OCI_DIGEST_MAX];
        int r = oci_digest(name, strlen(name), d);
        if (r < 0)
                return r;
        return asprintf(ret, "%s/%s.json", s->images_dir, d + 7) < 0 ? -ENOMEM : 0;
}

static int record_load_path(const char *path, json_object **ret)
{
        cleanup_free char *text = NULL;
        size_t len = 0;
        int r = read_file(path, RECORD_MAX, &text, &len);
        if (r < 0)
                return r;
        json_object *o = NULL;
        if (json_parse_strict(text, len, 16, &o, NULL) < 0 ||
            !json_object_is_type(o, json_type_object) || !json_str(o, "name") ||
            !json_object_is_type(json_field(o, "layers"), json_type_array)) {
                json_object_put(o);
                return -EBADMSG;
        }
        *ret = o;
        return 0;
}

static bool record_exists(ImageStore *s, const char *name)
{
        cleanup_free char *path = NULL;
        return record_path(s, name, &path) == 0 && access(path, F_OK) == 0;
}

static int record_load(ImageStore *s, const char *name, json_object **ret)
{
        cleanup_free char *path = NULL;
        int r = record_path(s, name, &path);
        if (r < 0)
                return r;
        return record_load_path(path, ret);
}

static json_object *strv_to_json(char **v)
{
        if (!v)
                return NULL;
        json_object *a = json_object_new_array();
        STRV_FOREACH(e, v)
                (void) json_object_array_add(a, json_object_new_string(*e));
        return a;
}

static int record_save(ImageStore *s, const char *name, const char *digest,
                       const char *manifest_digest, bool public, const OciManifest *m,
                       const OciImageConfig *cfg)
{
        json_object *o = json_object_new_object(), *layers = json_object_new_array(),
                    *c = json_object_new_object();
        uint64_t size = 0;
        char when[64];
        format_rfc3339_us(now_realtime_us(), when, sizeof(when));
        for (size_t i = 0; i < m->n_layers; i++) {
                (void) json_object_array_add(layers, json_object_new_string(m->layers[i].digest));
                size += m->layers[i].size;
        }
        (void) json_object_object_add(o, "name", json_object_new_string(name));
        (void) json_object_object_add(o, "digest", json_object_new_string(digest));
        (void) json_object_object_add(o, "manifest_digest",
                                      json_object_new_string(manifest_digest));
        (void) json_object_object_add(o, "size", json_object_new_int64((int64_t) size));
        (void) json_object_object_add(o, "pulled", json_object_new_string(when));
        /* Pulled without credentials: anyone may have it from the node's copy. */
        (void) json_object_object_add(o, "public", json_object_new_boolean(public));
        (void) json_object_object_add(o, "layers", layers);
        (void) json_object_object_add(c, "env", strv_to_json(cfg->env));
        if (cfg->working_dir)
                (void) json_object_object_add(c, "working_dir",
                                              json_object_new_string(cfg->working_dir));
        if (cfg->user)
                (void) json_object_object_add(c, "user", json_object_new_string(cfg->user));
        if (cfg->entrypoint)
                (void) json_object_object_add(c, "entrypoint", strv_to_json(cfg->entrypoint));
        if (cfg->cmd)
                (void) json_object_object_add(c, "cmd", strv_to_json(cfg->cmd));
        (void) json_object_object_add(o, "config", c);
        cleanup_free char *path = NULL;
        int r = record_path(s, name, &path);
        if (r == 0) {
                size_t len = 0;
                const char *text =
                        json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN, &len);
                r = write_file_atomic(path, text, len, 0600);
        }
        json_object_put(o);
        return r;
}

/* --- pulling ------------------------------------------------------------------ */

static int layer_dir(ImageStore *s, const char *digest, char **ret)
{
        if (!oci_digest_valid(digest))
                return -EBADMSG;
        return asprintf(ret, "%s/%s", s->layers_dir, digest + 7) < 0 ? -ENOMEM : 0;
}

/* Downloads, checks and unpacks one layer unless the store has it. */
static int layer_fetch(ImageStore *s, OciRegistry *reg, const OciDescriptor *d, char *err,
                       size_t errlen)
{
        cleanup_free char *final = NULL, *tmp = NULL;
        int r = layer_dir(s, d->digest, &final);
        if (r < 0)
                return r;
        struct stat st;
        if (stat(final, &st) == 0 && S_ISDIR(st.st_mode))
                return 0; /* unpacked once, shared */
        /* Unnamed until never: a failed download leaves nothing. */
        cleanup_close int fd = open(s->tmp_dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
        if (fd < 0)
                return -errno;
        r = oci_registry_get_blob(reg, d, fd);
        if (r < 0) {
                (void) snprintf(err, errlen, "%s", oci_registry_last_error(reg));
                return r;
        }
        if (asprintf(&tmp, "%s/%.16s.XXXXXX", s->tmp_dir, d->digest + 7) < 0) {
                tmp = NULL;
                return -ENOMEM;
        }
        if (!mkdtemp(tmp) || chmod(tmp, 0755) < 0) {
                r = -errno;
                (void) rm_rf(tmp);
                return r;
        }
        r = image_layer_unpack(fd, tmp, s->max_layer_size, err, errlen);
        if (r == -EPERM) /* an entry that would leave the layer: a bad upstream */
                r = -EBADMSG;
        if (r == 0 && rename(tmp, final) < 0 && errno != EEXIST && errno != ENOTEMPTY) {
                r = -errno;
                (void) snprintf(err, errlen, "cannot store layer %s: %s", d->digest, strerror(-r));
        }
        (void) rm_rf(tmp); /* gone when renamed; else a failure or another pull's twin */
        return r;
}

static char *read_auth(ImageStore *s, size_t *ret_len)
{
        char *text = NULL;
        if (!s->auth_file || read_file(s->auth_file, AUTH_FILE_MAX, &text, ret_len) < 0)
                return NULL;
        return text;
}

/* The registry client's configuration for one pull: the caller's credentials
 * (o->auth) or the agent's --registry-auth-file (read into *ret_auth). */
static OciRegistryConfig registry_config(ImageStore *s, const ImagePullOptions *o, char **ret_auth,
                                         size_t *ret_auth_len)
{
        *ret_auth = NULL;
        *ret_auth_len = 0;
        if (!o->auth)
                *ret_auth = read_auth(s, ret_auth_len);
        return (OciRegistryConfig){.ca_file = s->ca_file,
                                   .insecure = s->insecure,
                                   .auth_config = o->auth ? o->auth : *ret_auth,
                                   .auth_config_len = o->auth ? o->auth_len : *ret_auth_len,
                                   .max_blob_size = s->max_layer_size,
                                   .timeout_ms = REQUEST_TIMEOUT_MS};
}

static void auth_done(char *auth, size_t len)
{
        if (auth)
                explicit_bzero(auth, len);
        free(auth);
}

OciRegistryConfig image_registry_config(ImageStore *s, const char *auth, size_t auth_len,
                                        char **ret_auth, size_t *ret_auth_len)
{
        ImagePullOptions o = {.auth = auth, .auth_len = auth_len};
        return registry_config(s, &o, ret_auth, ret_auth_len);
}

void image_registry_auth_done(char *auth, size_t len)
{
        auth_done(auth, len);
}

static int do_pull(ImageStore *s, const OciRef *ref, const char *name, const ImagePullOptions *o,
                   char *err, size_t errlen)
{
        size_t auth_len = 0;
        char *auth = NULL;
        OciRegistryConfig rc = registry_config(s, o, &auth, &auth_len);
        OciRegistry *reg = NULL;
        OciManifest m = {0};
        OciImageConfig cfg = {0};
        cleanup_free char *data = NULL, *ct = NULL, *cdata = NULL;
        char digest[OCI_DIGEST_MAX] = "", mdigest[OCI_DIGEST_MAX] = "";
        size_t len = 0;
        const char *what = "";
        int r = oci_registry_new(&rc, ref, &reg);
        if (r < 0)
                goto out;
        what = "manifest";
        r = oci_registry_get_manifest(reg, ref->digest ? ref->digest : ref->tag, &data, &len, &ct,
                                      digest);
        if (r < 0)
                goto reg_error;
        r = oci_manifest_parse(data, len, ct, &m);
        (void) snprintf(mdigest, sizeof(mdigest), "%s", digest);
        if (r == 0 && m.is_index) {
                OciDescriptor p = m.platform;
                oci_manifest_done(&m);
                free(data);
                free(ct);
                data = ct = NULL;
                r = oci_registry_get_manifest(reg, p.digest, &data, &len, &ct, mdigest);
                if (r < 0)
                        goto reg_error;
                r = oci_manifest_parse(data, len, ct, &m);
                if (r == 0 && m.is_index)
                        r = -EBADMSG;
        }
        if (r < 0) {
                (void) snprintf(err, errlen, "%s: %s", name,
                                r == -ENOENT       ? "the image index has no linux/amd64 image"
                                : r == -EOPNOTSUPP ? "unsupported manifest or layer type"
                                : r == -EFBIG      ? "too many layers"
                                                   : "the registry sent a malformed manifest");
                if (r == -ENOENT || r == -EOPNOTSUPP)
                        r = -EMEDIUMTYPE;
                goto out;
        }
        what = "config";
        r = oci_registry_get_blob_mem(reg, &m.config, OCI_CONFIG_MAX, &cdata, &len);
        if (r < 0)
                goto reg_error;
        r = oci_config_parse(cdata, len, &cfg);
        if (r == 0 && cfg.diff_ids && cfg.diff_ids[0]) {
                size_t n = 0;
                STRV_FOREACH(d, cfg.diff_ids)
                        n++;
                if (n != m.n_layers)
                        r = -EBADMSG;
        }
        if (r < 0) {
                (void) snprintf(err, errlen, "%s: the registry sent a malformed image config",
                                name);
                goto out;
        }
        for (size_t i = 0; i < m.n_layers; i++) {
                char lerr[400] = "";
                r = layer_fetch(s, reg, &m.layers[i], lerr, sizeof(lerr));
                if (r < 0) {
                        (void) snprintf(err, errlen, "%s: layer %s: %s", name, m.layers[i].digest,
                                        lerr[0] ? lerr : strerror(-r));
                        goto out;
                }
        }
        r = record_save(s, name, digest, mdigest, !oci_registry_used_credentials(reg), &m, &cfg);
        if (r < 0)
                (void) snprintf(err, errlen, "%s: cannot save the image: %s", name, strerror(-r));
        goto out;
reg_error:
        (void) snprintf(err, errlen, "%s: %s: %s", name, what,
                        oci_registry_last_error(reg)[0] ? oci_registry_last_error(reg)
                                                        : strerror(-r));
out:
        /* What the registry sent failed its checks: the upstream's fault (502). */
        if (r == -EBADMSG)
                r = -EREMOTEIO;
        oci_config_done(&cfg);
        oci_manifest_done(&m);
        oci_registry_free(reg);
        auth_done(auth, auth_len);
        return r;
}

/* May the caller of o have the node's copy rec of image ref? Yes when it was
 * pulled anonymously; else when the registry gives its manifest (by digest:
 * one small GET, and the answer is the same image) to the caller's
 * credentials. A registry that cannot be asked refuses the copy too. */
static int recheck(ImageStore *s, const OciRef *ref, const char *name, json_object *rec,
                   const ImagePullOptions *o, char *err, size_t errlen)
{
        json_object *pub = json_field(rec, "public");
        const char *digest = json_str(rec, "digest");
        if (pub && json_object_get_boolean(pub))
                return 0;
        if (!digest) {
                (void) snprintf(err, errlen, "%s: the node's record of it has no digest", name);
                return -EIO;
        }
        size_t auth_len = 0;
        char *auth = NULL;
        OciRegistryConfig rc = registry_config(s, o, &auth, &auth_len);
        OciRegistry *reg = NULL;
        cleanup_free char *data = NULL, *ct = NULL;
        char got[OCI_DIGEST_MAX] = "";
        size_t len = 0;
        int r = oci_registry_new(&rc, ref, &reg);
        if (r == 0)
                r = oci_registry_get_manifest(reg, digest, &data, &len, &ct, got);
        if (r < 0) {
                const char *why = reg && oci_registry_last_error(reg)[0]
                                          ? oci_registry_last_error(reg)
                                          : strerror(-r);
                if (r == -ENOENT || r == -EACCES || r == -EPERM) {
                        /* Registries answer 404 for a private repository as often as 401. */
                        (void) snprintf(err, errlen,
                                        "%s: the node has the image, but the registry does not "
                                        "give it to this request's credentials: %s",
                                        name, why);
                        r = -EACCES;
                } else {
                        (void) snprintf(err, errlen,
                                        "%s: cannot check this request's credentials for the "
                                        "node's copy with the registry: %s",
                                        name, why);
                        if (r == -EBADMSG)
                                r = -EREMOTEIO;
                }
        }
        oci_registry_free(reg);
        auth_done(auth, auth_len);
        return r;
}

static void pull_unref_locked(ImageStore *s, Pull *p)
{
        (void) s;
        if (--p->refs > 0)
                return;
        free(p->name);
        free(p);
}

int image_pull(ImageStore *s, const char *ref, bool refresh, json_object **ret, char *err,
               size_t errlen)
{
        return image_pull_with(s, ref, &(ImagePullOptions){.refresh = refresh}, ret, err, errlen);
}

/* The record of name for a caller that did not pull it itself: rechecked
 * when o asks. Consumes nothing; *ret set only on success. */
static int cached(ImageStore *s, const OciRef *ref, const char *name, const ImagePullOptions *o,
                  json_object **ret, char *err, size_t errlen)
{
        json_object *rec = NULL;
        int r = record_load(s, name, &rec);
        if (r < 0)
                return r;
        if (o->verify && (r = recheck(s, ref, name, rec, o, err, errlen)) < 0) {
                json_object_put(rec);
                return r;
        }
        *ret = rec;
        return 0;
}

int image_pull_with(ImageStore *s, const char *ref, const ImagePullOptions *o, json_object **ret,
                    char *err, size_t errlen)
{
        bool refresh = o->refresh;
        OciRef oref = {0};
        cleanup_free char *name = NULL;
        int r = oci_ref_parse(ref, s->default_registry, &oref);
        if (r < 0) {
                (void) snprintf(err, errlen, "bad image reference \"%.200s\"%s", ref,
                                s->default_registry || strchr(ref, '/')
                                        ? ""
                                        : " (no registry in it, and the agent has no "
                                          "--default-registry)");
                return -EINVAL;
        }
        if ((r = oci_ref_format(&oref, &name)) < 0) {
                oci_ref_done(&oref);
                return r;
        }
        (void) pthread_mutex_lock(&s->lock);
        Pull *p = s->pulls;
        while (p && !streq(p->name, name))
                p = p->next;
        if (p) { /* share the one in flight */
                p->refs++;
                while (!p->done)
                        (void) pthread_cond_wait(&s->done, &s->lock);
                r = p->result;
                (void) snprintf(err, errlen, "%s", p->err);
                pull_unref_locked(s, p);
                (void) pthread_mutex_unlock(&s->lock);
                /* Another caller's pull, with its credentials: checked for ours. */
                if (r == 0)
                        r = cached(s, &oref, name, o, ret, err, errlen);
                oci_ref_done(&oref);
                return r;
        }
        if (!refresh && record_exists(s, name)) {
                (void) pthread_mutex_unlock(&s->lock);
                /* Outside the lock: the check asks the registry. */
                r = cached(s, &oref, name, o, ret, err, errlen);
                oci_ref_done(&oref);
                if (r != -ENOENT && r != -EBADMSG)
                        return r;
                /* Gone meanwhile (a remove or the GC), or unreadable: pulled again. */
                return image_pull_with(s, ref,
                                       &(ImagePullOptions){.refresh = true,
                                                           .verify = o->verify,
                                                           .auth = o->auth,
                                                           .auth_len = o->auth_len},
                                       ret, err, errlen);
        }
        p = calloc(1, sizeof(*p));
        if (!p || !(p->name = strdup(name))) {
                free(p);
                (void) pthread_mutex_unlock(&s->lock);
                oci_ref_done(&oref);
                return -ENOMEM;
        }
        p->refs = 1;
        p->next = s->pulls;
        s->pulls = p;
        s->active++;
        (void) pthread_mutex_unlock(&s->lock);

        uint64_t t0 = now_monotonic_us();
        r = do_pull(s, &oref, name, o, p->err, sizeof(p->err));
        oci_ref_done(&oref);
        if (r < 0)
                log_error_errno(r, "image pull failed: %s", p->err);
        else
                log_info("pulled image %s in %.1f ms", name,
                         (double) (now_monotonic_us() - t0) / 1000.0);

        if (r == 0)
                (void) image_gc(s, name, NULL);
        (void) pthread_mutex_lock(&s->lock);
        for (Pull **pp = &s->pulls; *pp; pp = &(*pp)->next)
                if (*pp == p) {
                        *pp = p->next;
                        break;
                }
        s->active--;
        p->done = true;
        p->result = r;
        (void) snprintf(err, errlen, "%s", p->err);
        (void) pthread_cond_broadcast(&s->done);
        pull_unref_locked(s, p);
        (void) pthread_mutex_unlock(&s->lock);
        return r < 0 ? r : record_load(s, name, ret);
}

/* --- images as templates ---------------------------------------------------------- */

static int strv_from_json_array(json_object *a, char ***ret)
{
        *ret = NULL;
        if (!a)
                return 0;
        if (!json_object_is_type(a, json_type_array))
                return -EBADMSG;
        size_t n = json_object_array_length(a);
        char **v = calloc(n + 1, sizeof(char *));
        for (size_t i = 0; v && i < n; i++)
                if (!(v[i] = strdup(json_object_get_string(json_object_array_get_idx(a, i))
                                            ?: ""))) {
                        strv_free(v);
                        v = NULL;
                }
        if (!v)
                return -ENOMEM;
        *ret = v;
        return 0;
}

int image_template(ImageStore *s, const char *ref, Template **ret, char *err, size_t errlen)
{
        cleanup_free char *name = NULL;
        cleanup_json json_object *rec = NULL;
        int r = image_canonical_name(s, ref, &name);
        if (r < 0) {
                (void) snprintf(err, errlen, "bad image reference \"%.200s\"", ref);
                return r;
        }
        if ((r = record_load(s, name, &rec)) < 0) {
                (void) snprintf(err, errlen, "image %s is not on this node", name);
                return r == -EBADMSG ? -EIO : r;
        }
        json_object *layers = json_field(rec, "layers"), *cfg = json_obj(rec, "config");
        size_t n = json_object_array_length(layers);
        /* Built on a directory template (build.c): its lowers go below the layers. */
        Template *base = NULL;
        const char *base_name = json_str(rec, "base");
        if (base_name &&
            (!s->templates_dir || template_load(s->templates_dir, base_name, &base) < 0)) {
                (void) snprintf(err, errlen,
                                "image %s is built on template %s, which is not usable", name,
                                base_name);
                return -ENOENT;
        }
        size_t nb = 0;
        STRV_FOREACH(l, base ? base->lowers : NULL)
                nb++;
        Template *t = calloc(1, sizeof(*t));
        if (!t) {
                template_free(base);
                return -ENOMEM;
        }
        t->lowers = calloc(n + nb + 1, sizeof(char *));
        t->binds = base ? strv_copy(base->binds) : calloc(1, sizeof(char *));
        r = t->lowers && t->binds && n + nb > 0 &&
                            asprintf(&t->name, "%s%s", IMAGE_TEMPLATE_PREFIX, name) >= 0
                    ? 0
                    : -ENOMEM;
        for (size_t i = 0; r == 0 && i < nb; i++)
                if (!(t->lowers[n + i] = strdup(base->lowers[i])))
                        r = -ENOMEM;
        template_free(base);
        for (size_t i = 0; r == 0 && i < n; i++) {
                /* Overlayfs takes the top layer first; the manifest lists the bottom first. */
                const char *d = json_object_get_string(json_object_array_get_idx(layers, i));
                r = layer_dir(s, d ? d : "", &t->lowers[n - 1 - i]);
                struct stat st;
                if (r == 0 && (stat(t->lowers[n - 1 - i], &st) < 0 || !S_ISDIR(st.st_mode))) {
                        (void) snprintf(err, errlen, "image %s is missing layer %s", name, d);
                        r = -ENOENT;
                }
        }
        if (r == 0 && !(t->rootfs = strdup(t->lowers[0])))
                r = -ENOMEM;
        if (r == 0)
                r = strv_from_json_array(json_field(cfg, "env"), &t->env);
        if (r == 0 && json_str(cfg, "working_dir") &&
            !(t->workdir = strdup(json_str(cfg, "working_dir"))))
                r = -ENOMEM;
        if (r == 0 && json_str(cfg, "user") && !(t->user = strdup(json_str(cfg, "user"))))
                r = -ENOMEM;
        if (r == 0) {
                cleanup_strv char **ep = NULL, **cmd = NULL;
                r = strv_from_json_array(json_field(cfg, "entrypoint"), &ep);
                if (r == 0)
                        r = strv_from_json_array(json_field(cfg, "cmd"), &cmd);
                size_t k = 0;
                STRV_FOREACH(e, ep)
                        k++;
                STRV_FOREACH(e, cmd)
                        k++;
                if (r == 0 && k > 0) {
                        t->start_cmd = calloc(k + 1, sizeof(char *));
                        k = 0;
                        STRV_FOREACH(e, ep)
                                if (t->start_cmd && !(t->start_cmd[k++] = strdup(*e)))
                                        r = -ENOMEM;
                        STRV_FOREACH(e, cmd)
                                if (t->start_cmd && !(t->start_cmd[k++] = strdup(*e)))
                                        r = -ENOMEM;
                        if (!t->start_cmd)
                                r = -ENOMEM;
                }
        }
        if (r == 0)
                r = image_hold(s, name);
        if (r < 0) {
                template_free(t);
                return r;
        }
        *ret = t;
        return 0;
}

int image_hold(ImageStore *s, const char *name)
{
        int r = 0;
        (void) pthread_mutex_lock(&s->lock);
        Pin *pin = s->pins;
        while (pin && !streq(pin->name, name))
                pin = pin->next;
        if (!pin && (pin = calloc(1, sizeof(*pin))) && (pin->name = strdup(name))) {
                pin->next = s->pins;
                s->pins = pin;
        } else if (!pin || !pin->name) {
                free(pin);
                pin = NULL;
                r = -ENOMEM;
        }
        if (r == 0)
                pin->n++;
        (void) pthread_mutex_unlock(&s->lock);
        return r;
}

void image_unpin(ImageStore *s, const char *template_name)
{
        size_t plen = strlen(IMAGE_TEMPLATE_PREFIX);
        if (!template_name || strncmp(template_name, IMAGE_TEMPLATE_PREFIX, plen) != 0)
                return;
        image_release(s, template_name + plen);
}

void image_release(ImageStore *s, const char *name)
{
        (void) pthread_mutex_lock(&s->lock);
        for (Pin **pp = &s->pins; *pp; pp = &(*pp)->next) {
                Pin *p = *pp;
                if (!streq(p->name, name))
                        continue;
                if (--p->n == 0) {
                        *pp = p->next;
                        free(p->name);
                        free(p);
                }
                break;
        }
        (void) pthread_mutex_unlock(&s->lock);
}

static bool pinned_locked(ImageStore *s, const char *name)
{
        for (Pin *p = s->pins; p; p = p->next)
                if (streq(p->name, name))
                        return true;
        return false;
}

/* --- listing and removing ---------------------------------------------------------- */

static bool is_record(const char *dir, const char *name, void *userdata)
{
        (void) dir;
        (void) userdata;
        size_t n = strlen(name);
        return n == 64 + 5 && streq(name + 64, ".json");
}

int image_list_json(ImageStore *s, json_object **ret)
{
        cleanup_strv char **names = NULL;
        int r = dir_list(s->images_dir, is_record, NULL, &names);
        if (r < 0)
                return r;
        json_object *a = json_object_new_array();
        if (!a)
                return -ENOMEM;
        STRV_FOREACH(n, names) {
                cleanup_free char *path = NULL;
                json_object *o = NULL;
                if (asprintf(&path, "%s/%s", s->images_dir, *n) < 0 ||
                    record_load_path(path, &o) < 0)
                        continue;
                /* A build's intermediate steps (build.c): not images of their own. */
                if (json_object_get_boolean(json_field(o, "build_cache")))
                        json_object_put(o);
                else
                        (void) json_object_array_add(a, o);
        }
        *ret = a;
        return 0;
}

static bool layer_referenced(json_object *records, const char *digest)
{
        size_t n = json_object_array_length(records);
        for (size_t i = 0; i < n; i++) {
                json_object *layers = json_field(json_object_array_get_idx(records, i), "layers");
                size_t k = json_object_array_length(layers);
                for (size_t j = 0; j < k; j++)
                        if (streq(json_object_get_string(json_object_array_get_idx(layers, j))
                                          ?: "",
                                  digest))
                                return true;
        }
        return false;
}

int image_remove(ImageStore *s, const char *ref, char *err, size_t errlen)
{
        cleanup_free char *name = NULL, *path = NULL;
        cleanup_json json_object *rec = NULL, *rest = NULL;
        int r = image_canonical_name(s, ref, &name);
        if (r < 0) {
                (void) snprintf(err, errlen, "bad image reference \"%.200s\"", ref);
                return -EINVAL;
        }
        if ((r = record_path(s, name, &path)) < 0)
                return r;
        /* Held throughout: no pull may start using a layer being removed. */
        (void) pthread_mutex_lock(&s->lock);
        if (s->active > 0) {
                (void) snprintf(err, errlen, "a pull is in progress; try again when it is done");
                r = -EBUSY;
        } else if (record_load_path(path, &rec) < 0) {
                (void) snprintf(err, errlen, "image %s is not on this node", name);
                r = -ENOENT;
        } else if (pinned_locked(s, name) || (s->in_use && s->in_use(name, s->userdata))) {
                (void) snprintf(err, errlen, "image %s is in use by a sandbox", name);
                r = -EBUSY;
        } else if (unlink(path) < 0) {
                r = -errno;
        } else if ((r = image_list_json(s, &rest)) == 0) {
                json_object *layers = json_field(rec, "layers");
                size_t n = json_object_array_length(layers);
                for (size_t i = 0; i < n; i++) {
                        const char *d =
                                json_object_get_string(json_object_array_get_idx(layers, i));
                        cleanup_free char *dir = NULL;
                        if (!d || layer_referenced(rest, d) || layer_dir(s, d, &dir) < 0)
                                continue;
                        int k = rm_rf(dir);
                        if (k < 0 && k != -ENOENT)
                                log_error_errno(k, "cannot remove layer %s", dir);
                }
        }
        (void) pthread_mutex_unlock(&s->lock);
        return r;
}

/* --- garbage collection ----------------------------------------------------------- */

int image_write_layers(const Template *t, const char *sandbox_dir)
{
        StrBuf b = {0};
        int r = 0;
        STRV_FOREACH(l, t->lowers) {
                const char *base = strrchr(*l, '/');
                base = base ? base + 1 : *l;
                if ((r = strbuf_append(&b, base, strlen(base), SIZE_MAX)) < 0 ||
                    (r = strbuf_append(&b, "\n", 1, SIZE_MAX)) < 0)
                        break;
        }
        char path[4096];
        (void) snprintf(path, sizeof(path), "%s/layers", sandbox_dir);
        if (r == 0)
                r = write_file_atomic(path, b.data ? b.data : "", b.len, 0600);
        strbuf_done(&b);
        return r;
}

/* Appends the layers (hex names) sandboxes list in <sandboxes_dir>/<id>/layers. */
static int layers_of_sandboxes(ImageStore *s, StrBuf *set)
{
        cleanup_strv char **ids = NULL;
        if (!s->sandboxes_dir)
                return 0;
        int r = dir_list(s->sandboxes_dir, dir_keep_ids, NULL, &ids);
        if (r < 0)
                return r;
        STRV_FOREACH(id, ids) {
                cleanup_free char *path = NULL, *text = NULL;
                if (asprintf(&path, "%s/%s/layers", s->sandboxes_dir, *id) < 0)
                        return -ENOMEM;
                size_t len = 0;
                if (read_file(path, RECORD_MAX, &text, &len) < 0)
                        continue;
                if ((r = strbuf_append(set, text, len, SIZE_MAX)) < 0)
                        return r;
        }
        return 0;
}

static bool in_line_set(const StrBuf *set, const char *hex)
{
        size_t n = strlen(hex);
        for (const char *p = set->data; p && *p;) {
                const char *nl = strchr(p, '\n');
                size_t len = nl ? (size_t) (nl - p) : strlen(p);
                if (len == n && strncmp(p, hex, n) == 0)
                        return true;
                p = nl ? nl + 1 : p + len;
        }
        return false;
}

static int du_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
        (void) path, (void) flag, (void) ftw;
        du_total += (uint64_t) st->st_blocks * 512;
        return 0;
}

static uint64_t disk_use(const char *dir)
{
        du_total = 0;
        (void) nftw(dir, du_cb, 16, FTW_PHYS | FTW_MOUNT);
        return du_total;
}

static bool is_layer_dir(const char *dir, const char *name, void *userdata)
{
        (void) dir, (void) userdata;
        return strlen(name) == 64 && strspn(name, "0123456789abcdef") == 64;
}

/* Called with s->lock held. */
static int gc_locked(ImageStore *s, const char *keep, uint64_t *ret_used)
{
        cleanup_strv char **layers = NULL;
        cleanup_json json_object *records = NULL;
        StrBuf used_by_sandboxes = {0};
        int r = dir_list(s->layers_dir, is_layer_dir, NULL, &layers);
        if (r == 0)
                r = image_list_json(s, &records);
        if (r == 0)
                r = layers_of_sandboxes(s, &used_by_sandboxes);
        if (r < 0) {
                strbuf_done(&used_by_sandboxes);
                return r;
        }
        size_t nl = 0;
        for (char *const *l = layers; l && *l; l++)
                nl++;
        uint64_t *sizes = calloc(nl + 1, sizeof(uint64_t)), total = 0;
        if (!sizes) {
                strbuf_done(&used_by_sandboxes);
                return -ENOMEM;
        }
        for (size_t i = 0; i < nl; i++) {
                char path[4096];
                (void) snprintf(path, sizeof(path), "%s/%s", s->layers_dir, layers[i]);
                sizes[i] = disk_use(path);
                total += sizes[i];
        }
        /* Drop images, oldest pull first, until the layers nobody else has fit. */
        for (;;) {
                size_t n = json_object_array_length(records);
                /* Free what no record and no sandbox has. */
                for (size_t i = 0; i < nl; i++) {
                        char digest[OCI_DIGEST_MAX];
                        (void) snprintf(digest, sizeof(digest), "sha256:%s", layers[i]);
                        if (!layers[i][0])
                                continue; /* removed in an earlier round */
                        if (layer_referenced(records, digest) ||
                            in_line_set(&used_by_sandboxes, layers[i]) || pinned_locked(s, digest))
                                continue;
                        char path[4096];
                        (void) snprintf(path, sizeof(path), "%s/%s", s->layers_dir, layers[i]);
                        if (rm_rf(path) == 0) {
                                log_info("image store: removed layer %s (%llu bytes)", digest,
                                         (unsigned long long) sizes[i]);
                                total -= sizes[i];
                                sizes[i] = 0;
                                layers[i][0] = '\0';
                        }
                }
                if (total <= s->max_store_size)
                        break;
                size_t oldest = n;
                const char *oldest_when = NULL;
                for (size_t i = 0; i < n; i++) {
                        json_object *rec = json_object_array_get_idx(records, i);
                        const char *name = json_str(rec, "name"), *when = json_str(rec, "pulled");
                        if (!name || (keep && streq(name, keep)) || pinned_locked(s, name) ||
                            (s->in_use && s->in_use(name, s->userdata)))
                                continue;
                        if (!oldest_when || (when && strcmp(when, oldest_when) < 0)) {
                                oldest = i;
                                oldest_when = when ? when : "";
                        }
                }
                if (oldest == n)
                        break; /* everything left is in use */
                const char *name = json_str(json_object_array_get_idx(records, oldest), "name");
                cleanup_free char *path = NULL;
                if (record_path(s, name, &path) < 0 || unlink(path) < 0)
                        break;
                log_info("image store: removed image %s (over --image-store-max)", name);
                (void) json_object_array_del_idx(records, oldest, 1);
        }
        free(sizes);
        strbuf_done(&used_by_sandboxes);
        if (ret_used)
                *ret_used = total;
        return 0;
}

int image_gc(ImageStore *s, const char *keep, uint64_t *ret_used)
{
        if (!s->max_store_size)
                return 0;
        (void) pthread_mutex_lock(&s->lock);
        /* Another pull may be about to name a layer that looks unused. */
        int r = s->active > 1 ? 0 : gc_locked(s, keep, ret_used);
        (void) pthread_mutex_unlock(&s->lock);
        return r;
}

/* --- local images (build.c) ------------------------------------------------------ */

const char *image_store_tmp_dir(ImageStore *s)
{
        return s->tmp_dir;
}

uint64_t image_store_max_layer_size(ImageStore *s)
{
        return s->max_layer_size;
}

int image_layer_path(ImageStore *s, const char *digest, char **ret)
{
        return layer_dir(s, digest, ret);
}

int image_layer_add(ImageStore *s, int fd, char *digest, char *err, size_t errlen)
{
        uint64_t off = 0;
        int r = oci_digest_fd(fd, digest, &off);
        if (r < 0)
                return r;
        if (off > s->max_layer_size) {
                (void) snprintf(err, errlen, "the layer is larger than --image-max-layer-size");
                return -EFBIG;
        }
        cleanup_free char *final = NULL, *tmp = NULL;
        if ((r = layer_dir(s, digest, &final)) < 0)
                return r;
        /* Held before it is there: the GC must not take it before a record names it. */
        if ((r = image_hold(s, digest)) < 0)
                return r;
        struct stat st;
        if (stat(final, &st) == 0 && S_ISDIR(st.st_mode))
                return 0;
        if (asprintf(&tmp, "%s/%.16s.XXXXXX", s->tmp_dir, digest + 7) < 0) {
                tmp = NULL;
                return -ENOMEM;
        }
        if (!mkdtemp(tmp) || chmod(tmp, 0755) < 0) {
                r = -errno;
                (void) rm_rf(tmp);
                return r;
        }
        if (lseek(fd, 0, SEEK_SET) < 0)
                r = -errno;
        if (r == 0)
                r = image_layer_unpack(fd, tmp, s->max_layer_size, err, errlen);
        if (r == 0 && rename(tmp, final) < 0 && errno != EEXIST && errno != ENOTEMPTY) {
                r = -errno;
                (void) snprintf(err, errlen, "cannot store layer %s: %s", digest, strerror(-r));
        }
        (void) rm_rf(tmp);
        if (r < 0)
                image_release(s, digest);
        return r;
}

int image_record_get(ImageStore *s, const char *ref, json_object **ret)
{
        cleanup_free char *name = NULL;
        int r = image_canonical_name(s, ref, &name);
        if (r < 0)
                return r;
        return record_load(s, name, ret);
}

int image_record_local(ImageStore *s, const char *name, const char *base, char *const *layers,
                       json_object *config, bool cache)
{
        json_object *o = json_object_new_object(), *ls = json_object_new_array();
        char when[64], digest[OCI_DIGEST_MAX];
        format_rfc3339_us(now_realtime_us(), when, sizeof(when));
        for (char *const *l = layers; l && *l; l++)
                (void) json_object_array_add(ls, json_object_new_string(*l));
        (void) json_object_object_add(o, "layers", ls);
        (void) json_object_object_add(o, "config", json_object_get(config));
        if (base)
                (void) json_object_object_add(o, "base", json_object_new_string(base));
        /* What the image is made of, named: its layers, base and config. */
        const char *what = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
        int r = oci_digest(what, strlen(what), digest);
        uint64_t size = 0;
        for (char *const *l = layers; l && *l; l++) {
                cleanup_free char *dir = NULL;
                if (layer_dir(s, *l, &dir) < 0)
                        continue;
                (void) pthread_mutex_lock(&s->lock);
                size += disk_use(dir);
                (void) pthread_mutex_unlock(&s->lock);
        }
        (void) json_object_object_add(o, "name", json_object_new_string(name));
        (void) json_object_object_add(o, "digest", json_object_new_string(r == 0 ? digest : ""));
        (void) json_object_object_add(o, "size", json_object_new_int64((int64_t) size));
        (void) json_object_object_add(o, "pulled", json_object_new_string(when));
        /* Made on this node from what its caller sent: no registry to ask. */
        (void) json_object_object_add(o, "public", json_object_new_boolean(true));
        (void) json_object_object_add(o, "built", json_object_new_boolean(true));
        if (cache)
                (void) json_object_object_add(o, "build_cache", json_object_new_boolean(true));
        cleanup_free char *path = NULL;
        if (r == 0)
                r = record_path(s, name, &path);
        if (r == 0) {
                size_t len = 0;
                const char *text =
                        json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN, &len);
                r = write_file_atomic(path, text, len, 0600);
        }
        json_object_put(o);
        return r;
}

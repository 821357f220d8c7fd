/* OCI parsing (see sandpit/oci.h): references, digests, manifests, indexes,
 * image configs, WWW-Authenticate challenges, docker config credentials. */
#include "sandpit/oci.h"

#include <ctype.h>
#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json-c/json.h>

#include "sandpit/json.h"
#include "sandpit/macro.h"
#include "sandpit/util.h"

/* --- references ----------------------------------------------------------- */

void oci_ref_done(OciRef *r)
{
        free(r->registry);
        free(r->repository);
        free(r->tag);
        free(r->digest);
        *r = (OciRef){0};
}

static bool repo_component_ok(const char *s, size_t n)
{
        /* [a-z0-9]+ separated by '.', '_', "__" or '-'s. */
        if (n == 0 || !isalnum((unsigned char) s[0]) || !isalnum((unsigned char) s[n - 1]))
                return false;
        for (size_t i = 0; i < n; i++) {
                char c = s[i];
                if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))
                        continue;
                if (c != '.' && c != '_' && c != '-')
                        return false;
                if (c == '.' && s[i + 1] == '.')
                        return false;
        }
        return true;
}

static bool tag_ok(const char *t)
{
        size_t n = strlen(t);
        if (n == 0 || n > 128 || !(isalnum((unsigned char) t[0]) || t[0] == '_'))
                return false;
        for (size_t i = 0; i < n; i++)
                if (!isalnum((unsigned char) t[i]) && t[i] != '_' && t[i] != '.' && t[i] != '-')
                        return false;
        return true;
}

static bool registry_ok(const char *h)
{
        size_t n = strlen(h);
        if (n == 0 || n > 255)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!isalnum((unsigned char) h[i]) && !strchr(".-:[]", h[i]))
                        return false;
        return true;
}

int oci_ref_parse(const char *s, const char *default_registry, OciRef *ret)
{
        if (!s || strlen(s) > 1024)
                return -EINVAL;
        cleanup_free char *buf = strdup(s);
        if (!buf)
                return -ENOMEM;
        OciRef r = {0};
        char *at = strchr(buf, '@');
        if (at) {
                *at = '\0';
                if (!oci_digest_valid(at + 1))
                        return -EINVAL;
                if (!(r.digest = strdup(at + 1)))
                        return -ENOMEM;
        }
        char *name = buf, *slash = strchr(buf, '/');
        size_t first = slash ? (size_t) (slash - buf) : 0;
        if (slash && (memchr(buf, '.', first) || memchr(buf, ':', first) ||
                      (first == strlen("localhost") && strncmp(buf, "localhost", first) == 0))) {
                *slash = '\0';
                r.registry = strdup(buf);
                name = slash + 1;
        } else if (default_registry) {
                r.registry = strdup(default_registry);
        } else {
                oci_ref_done(&r);
                return -EINVAL;
        }
        /* A tag is after the last ':' that follows the last '/'. */
        char *last_slash = strrchr(name, '/'), *colon = strrchr(name, ':');
        if (colon && (!last_slash || colon > last_slash)) {
                *colon = '\0';
                if (!tag_ok(colon + 1)) {
                        oci_ref_done(&r);
                        return -EINVAL;
                }
                r.tag = strdup(colon + 1);
        } else if (!r.digest) {
                r.tag = strdup("latest");
        }
        bool ok = r.registry && registry_ok(r.registry) && *name && strlen(name) <= 255;
        for (const char *c = name; ok && *c;) {
                size_t n = strcspn(c, "/");
                ok = repo_component_ok(c, n);
                c += n;
                if (*c == '/') {
                        c++;
                        ok = ok && *c;
                }
        }
        if (!ok) {
                oci_ref_done(&r);
                return -EINVAL;
        }
        r.repository = strdup(name);
        if (!r.repository || (!r.tag && !r.digest)) {
                oci_ref_done(&r);
                return -ENOMEM;
        }
        *ret = r;
        return 0;
}

int oci_ref_format(const OciRef *r, char **ret)
{
        if (asprintf(ret, "%s/%s%s%s%s%s", r->registry, r->repository, r->tag ? ":" : "",
                     r->tag ? r->tag : "", r->digest ? "@" : "", r->digest ? r->digest : "") < 0)
                return -ENOMEM;
        return 0;
}

/* --- digests ---------------------------------------------------------------- */

bool oci_digest_valid(const char *d)
{
        if (!d || strncmp(d, "sha256:", 7) != 0 || strlen(d) != 7 + 64)
                return false;
        for (const char *p = d + 7; *p; p++)
                if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
                        return false;
        return true;
}

struct OciHasher {
        EVP_MD_CTX *ctx;
};

int oci_hasher_new(OciHasher **ret)
{
        OciHasher *h = calloc(1, sizeof(*h));
        if (!h)
                return -ENOMEM;
        h->ctx = EVP_MD_CTX_new();
        if (!h->ctx || EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL) != 1) {
                oci_hasher_free(h);
                return -ENOMEM;
        }
        *ret = h;
        return 0;
}

void oci_hasher_free(OciHasher *h)
{
        if (!h)
                return;
        EVP_MD_CTX_free(h->ctx);
        free(h);
}

int oci_hasher_update(OciHasher *h, const void *data, size_t len)
{
        return EVP_DigestUpdate(h->ctx, data, len) == 1 ? 0 : -EIO;
}

int oci_hasher_final(OciHasher *h, char *buf)
{
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned n = 0;
        if (EVP_DigestFinal_ex(h->ctx, md, &n) != 1 || n != 32)
                return -EIO;
        static const char hex[] = "0123456789abcdef";
        char *p = buf + snprintf(buf, OCI_DIGEST_MAX, "sha256:");
        for (unsigned i = 0; i < n; i++) {
                *p++ = hex[md[i] >> 4];
                *p++ = hex[md[i] & 15];
        }
        *p = '\0';
        return 0;
}

int oci_digest(const void *data, size_t len, char *ret)
{
        OciHasher *h = NULL;
        int r = oci_hasher_new(&h);
        if (r < 0)
                return r;
        r = oci_hasher_update(h, data, len);
        if (r == 0)
                r = oci_hasher_final(h, ret);
        oci_hasher_free(h);
        return r;
}

int oci_digest_check(const void *data, size_t len, const char *expected)
{
        char got[OCI_DIGEST_MAX];
        int r = oci_digest(data, len, got);
        if (r < 0)
                return r;
        return streq(got, expected) ? 0 : -EBADMSG;
}

int oci_digest_fd(int fd, char *ret, uint64_t *ret_size)
{
        OciHasher *h = NULL;
        int r = oci_hasher_new(&h);
        char buf[65536];
        uint64_t off = 0;
        while (r == 0) {
                ssize_t n = pread(fd, buf, sizeof(buf), (off_t) off);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0) {
                        r = n < 0 ? -errno : 0;
                        break;
                }
                off += (uint64_t) n;
                r = oci_hasher_update(h, buf, (size_t) n);
        }
        if (r == 0)
                r = oci_hasher_final(h, ret);
        oci_hasher_free(h);
        if (r == 0 && ret_size)
                *ret_size = off;
        return r;
}

/* --- manifests ---------------------------------------------------------------- */

#define MT_OCI_INDEX     "application/vnd.oci.image.index.v1+json"
#define MT_OCI_MANIFEST  "application/vnd.oci.image.manifest.v1+json"
#define MT_DOCKER_LIST   "application/vnd.docker.distribution.manifest.list.v2+json"
#define MT_DOCKER_V2     "application/vnd.docker.distribution.manifest.v2+json"
#define MT_OCI_CONFIG    "application/vnd.oci.image.config.v1+json"
#define MT_DOCKER_CONFIG "application/vnd.docker.container.image.v1+json"

void oci_manifest_done(OciManifest *m)
{
        free(m->layers);
        *m = (OciManifest){0};
}

static int descriptor_from_json(json_object *o, OciDescriptor *d)
{
        const char *digest = json_str(o, "digest");
        json_object *size = json_field(o, "size");
        if (!json_object_is_type(o, json_type_object) || !oci_digest_valid(digest) ||
            !json_object_is_type(size, json_type_int) || json_object_get_int64(size) < 0)
                return -EBADMSG;
        (void) snprintf(d->digest, sizeof(d->digest), "%s", digest);
        d->size = (uint64_t) json_object_get_int64(size);
        return 0;
}

static int layer_compression(const char *mt, OciCompression *ret)
{
        static const struct {
                const char *type;
                OciCompression c;
        } types[] = {
                {"application/vnd.oci.image.layer.v1.tar", OCI_COMPRESSION_NONE},
                {"application/vnd.oci.image.layer.v1.tar+gzip", OCI_COMPRESSION_GZIP},
                {"application/vnd.oci.image.layer.v1.tar+zstd", OCI_COMPRESSION_ZSTD},
                {"application/vnd.docker.image.rootfs.diff.tar.gzip", OCI_COMPRESSION_GZIP},
                {"application/vnd.docker.image.rootfs.diff.tar", OCI_COMPRESSION_NONE},
        };
        for (size_t i = 0; mt && i < ARRAY_SIZE(types); i++)
                if (streq(mt, types[i].type)) {
                        *ret = types[i].c;
                        return 0;
                }
        return -EOPNOTSUPP; /* foreign, non-distributable or unknown */
}

static int parse_index(json_object *doc, OciManifest *m)
{
        json_object *list = json_field(doc, "manifests");
        if (!json_object_is_type(list, json_type_array))
                return -EBADMSG;
        size_t n = json_object_array_length(list);
        for (size_t i = 0; i < n; i++) {
                json_object *e = json_object_array_get_idx(list, i), *p = json_obj(e, "platform");
                OciDescriptor d = {0};
                if (descriptor_from_json(e, &d) < 0)
                        return -EBADMSG;
                const char *variant = json_str(p, "variant");
                if (streq(json_str(p, "os") ?: "", "linux") &&
                    streq(json_str(p, "architecture") ?: "", "amd64") &&
                    (!variant || streq(variant, "v1") || streq(variant, "v2") ||
                     streq(variant, "v3"))) {
                        m->platform = d;
                        m->is_index = true;
                        return 0;
                }
        }
        return -ENOENT;
}

int oci_manifest_parse(const char *data, size_t len, const char *content_type, OciManifest *ret)
{
        cleanup_json json_object *doc = NULL;
        if (len > OCI_MANIFEST_MAX)
                return -EFBIG;
        if (json_parse_strict(data, len, 16, &doc, NULL) < 0 ||
            !json_object_is_type(doc, json_type_object))
                return -EBADMSG;
        json_object *ver = json_field(doc, "schemaVersion");
        if (!json_object_is_type(ver, json_type_int) || json_object_get_int(ver) != 2)
                return json_object_get_int(ver) == 1 ? -EOPNOTSUPP : -EBADMSG;
        const char *mt = json_str(doc, "mediaType");
        if (!mt) /* compared as prefixes below: parameters ("; charset=") do not matter */
                mt = content_type;
        OciManifest m = {0};
        bool index = mt ? (strncmp(mt, MT_OCI_INDEX, strlen(MT_OCI_INDEX)) == 0 ||
                           strncmp(mt, MT_DOCKER_LIST, strlen(MT_DOCKER_LIST)) == 0)
                        : json_field(doc, "manifests") != NULL;
        if (index) {
                int r = parse_index(doc, &m);
                if (r < 0)
                        return r;
                *ret = m;
                return 0;
        }
        if (mt && strncmp(mt, MT_OCI_MANIFEST, strlen(MT_OCI_MANIFEST)) != 0 &&
            strncmp(mt, MT_DOCKER_V2, strlen(MT_DOCKER_V2)) != 0)
                return -EOPNOTSUPP;
        json_object *cfg = json_field(doc, "config"), *layers = json_field(doc, "layers");
        if (descriptor_from_json(cfg, &m.config) < 0 ||
            !json_object_is_type(layers, json_type_array))
                return -EBADMSG;
        const char *cmt = json_str(cfg, "mediaType");
        if (cmt && !streq(cmt, MT_OCI_CONFIG) && !streq(cmt, MT_DOCKER_CONFIG))
                return -EOPNOTSUPP; /* an artifact, not an image */
        size_t n = json_object_array_length(layers);
        if (n == 0 || n > OCI_LAYERS_MAX)
                return n == 0 ? -EBADMSG : -EFBIG;
        m.layers = calloc(n, sizeof(*m.layers));
        if (!m.layers)
                return -ENOMEM;
        m.n_layers = n;
        for (size_t i = 0; i < n; i++) {
                json_object *l = json_object_array_get_idx(layers, i);
                int r = descriptor_from_json(l, &m.layers[i]);
                if (r == 0)
                        r = layer_compression(json_str(l, "mediaType"), &m.layers[i].compression);
                if (r < 0) {
                        oci_manifest_done(&m);
                        return r;
                }
        }
        *ret = m;
        return 0;
}

/* --- image configs -------------------------------------------------------------- */

void oci_config_done(OciImageConfig *c)
{
        free(c->os);
        free(c->architecture);
        strv_free(c->env);
        strv_free(c->entrypoint);
        strv_free(c->cmd);
        free(c->working_dir);
        free(c->user);
        strv_free(c->diff_ids);
        *c = (OciImageConfig){0};
}

/* An array of strings (NULL or null: *ret NULL, unless empty_if_absent). */
static int strv_from_json(json_object *a, bool empty_if_absent, char ***ret)
{
        *ret = NULL;
        if (!a) {
                if (empty_if_absent && !(*ret = calloc(1, sizeof(char *))))
                        return -ENOMEM;
                return 0;
        }
        if (!json_object_is_type(a, json_type_array) || json_object_array_length(a) > 4096)
                return -EBADMSG;
        size_t n = json_object_array_length(a);
        char **v = calloc(n + 1, sizeof(char *));
        if (!v)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                json_object *s = json_object_array_get_idx(a, i);
                if (!json_object_is_type(s, json_type_string)) {
                        strv_free(v);
                        return -EBADMSG;
                }
                if (!(v[i] = strdup(json_object_get_string(s)))) {
                        strv_free(v);
                        return -ENOMEM;
                }
        }
        *ret = v;
        return 0;
}

static int dup_opt(json_object *o, const char *key, char **ret)
{
        json_object *v = json_field(o, key);
        *ret = NULL;
        if (!v)
                return 0;
        if (!json_object_is_type(v, json_type_string))
                return -EBADMSG;
        const char *s = json_object_get_string(v);
        if (!*s)
                return 0;
        return (*ret = strdup(s)) ? 0 : -ENOMEM;
}

int oci_config_parse(const char *data, size_t len, OciImageConfig *ret)
{
        cleanup_json json_object *doc = NULL;
        if (len > OCI_CONFIG_MAX)
                return -EFBIG;
        if (json_parse_strict(data, len, 32, &doc, NULL) < 0 ||
            !json_object_is_type(doc, json_type_object))
                return -EBADMSG;
        json_object *c = json_field(doc, "config"), *rootfs = json_field(doc, "rootfs");
        if (c && !json_object_is_type(c, json_type_object) &&
            !json_object_is_type(c, json_type_null))
                return -EBADMSG;
        OciImageConfig cfg = {0};
        int r = dup_opt(doc, "os", &cfg.os);
        if (r == 0)
                r = dup_opt(doc, "architecture", &cfg.architecture);
        if (r == 0)
                r = strv_from_json(json_field(c, "Env"), true, &cfg.env);
        if (r == 0)
                r = strv_from_json(json_field(c, "Entrypoint"), false, &cfg.entrypoint);
        if (r == 0)
                r = strv_from_json(json_field(c, "Cmd"), false, &cfg.cmd);
        if (r == 0)
                r = dup_opt(c, "WorkingDir", &cfg.working_dir);
        if (r == 0)
                r = dup_opt(c, "User", &cfg.user);
        if (r == 0)
                r = strv_from_json(json_field(rootfs, "diff_ids"), true, &cfg.diff_ids);
        STRV_FOREACH(e, cfg.env)
                if (r == 0 && (!strchr(*e, '=') || **e == '='))
                        r = -EBADMSG;
        if (r == 0 && cfg.working_dir && cfg.working_dir[0] != '/')
                r = -EBADMSG;
        if (r < 0) {
                oci_config_done(&cfg);
                return r;
        }
        *ret = cfg;
        return 0;
}

/* --- WWW-Authenticate ----------------------------------------------------------- */

void oci_challenge_done(OciChallenge *c)
{
        free(c->scheme);
        free(c->realm);
        free(c->service);
        free(c->scope);
        *c = (OciChallenge){0};
}

int oci_challenge_parse(const char *value, OciChallenge *ret)
{
        OciChallenge c = {0};
        const char *p = value;
        while (*p == ' ' || *p == '\t')
                p++;
        size_t n = strcspn(p, " \t");
        if (n == 0 || n > 32)
                return -EBADMSG;
        if (!(c.scheme = strndup(p, n)))
                return -ENOMEM;
        for (char *s = c.scheme; *s; s++)
                *s = (char) tolower((unsigned char) *s);
        p += n;
        int r = 0;
        while (r == 0) {
                while (*p == ' ' || *p == '\t' || *p == ',')
                        p++;
                if (!*p)
                        break;
                size_t kn = strcspn(p, "= \t,");
                if (kn == 0 || p[kn] != '=') {
                        r = -EBADMSG;
                        break;
                }
                const char *key = p;
                p += kn + 1;
                StrBuf v = {0};
                if (*p == '"') {
                        for (p++; *p && *p != '"'; p++) {
                                if (*p == '\\' && p[1])
                                        p++;
                                if ((r = strbuf_append(&v, p, 1, 4096)) < 0)
                                        break;
                        }
                        if (r == 0 && *p != '"')
                                r = -EBADMSG;
                        if (r == 0)
                                p++;
                } else {
                        size_t vn = strcspn(p, ", \t");
                        r = strbuf_append(&v, p, vn, 4096);
                        p += vn;
                }
                if (r == 0) {
                        char **dst = kn == 5 && strncasecmp(key, "realm", 5) == 0     ? &c.realm
                                     : kn == 7 && strncasecmp(key, "service", 7) == 0 ? &c.service
                                     : kn == 5 && strncasecmp(key, "scope", 5) == 0   ? &c.scope
                                                                                      : NULL;
                        if (dst) {
                                free(*dst);
                                *dst = strdup(v.data ? v.data : "");
                                if (!*dst)
                                        r = -ENOMEM;
                        }
                }
                strbuf_done(&v);
        }
        if (r < 0) {
                oci_challenge_done(&c);
                return r == -E2BIG ? -EBADMSG : r;
        }
        *ret = c;
        return 0;
}

/* --- docker config credentials --------------------------------------------------- */

/* "https://host:5000/v1/" -> "host:5000" compared with registry. */
static bool auth_key_matches(const char *key, const char *registry)
{
        const char *k = key;
        if (strncmp(k, "https://", 8) == 0)
                k += 8;
        else if (strncmp(k, "http://", 7) == 0)
                k += 7;
        size_t n = strcspn(k, "/");
        return n == strlen(registry) && strncmp(k, registry, n) == 0;
}

int oci_docker_config_auth(const char *json_text, size_t len, const char *registry, char **ret_user,
                           char **ret_password)
{
        cleanup_json json_object *doc = NULL;
        if (json_parse_strict(json_text, len, 16, &doc, NULL) < 0 ||
            !json_object_is_type(doc, json_type_object))
                return -EBADMSG;
        json_object *auths = json_field(doc, "auths");
        if (!json_object_is_type(auths, json_type_object))
                return auths ? -EBADMSG : -ENOENT;
        json_object_object_foreach(auths, key, val) {
                if (!auth_key_matches(key, registry))
                        continue;
                const char *auth = json_str(val, "auth"), *user = json_str(val, "username"),
                           *pass = json_str(val, "password");
                cleanup_free char *u = NULL, *p = NULL;
                if (auth && *auth) {
                        cleanup_free uint8_t *raw = NULL;
                        size_t rn = 0;
                        if (base64_decode(auth, &raw, &rn) < 0)
                                return -EBADMSG;
                        const uint8_t *colon = memchr(raw, ':', rn);
                        if (!colon || memchr(raw, '\0', rn))
                                return -EBADMSG;
                        u = strndup((const char *) raw, (size_t) (colon - raw));
                        p = strndup((const char *) colon + 1, rn - (size_t) (colon - raw) - 1);
                } else if (user && pass) {
                        u = strdup(user);
                        p = strdup(pass);
                } else {
                        continue;
                }
                if (!u || !p)
                        return -ENOMEM;
                *ret_user = TAKE_PTR(u);
                *ret_password = TAKE_PTR(p);
                return 0;
        }
        return -ENOENT;
}

/* A client of the OCI distribution API (sandpit/oci.h): manifests and blobs of
 * one repository, anonymous or with Basic or Bearer-token authentication
 * answering the registry's WWW-Authenticate challenge, over HTTPS (system CAs
 * or a configured CA) or plain HTTP for registries configured as insecure.
 * Every byte is checked against the digest that names it before it is
 * returned. One client is used from one thread at a time. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <json-c/json.h>

#include "curl-internal.h"
#include "sandpit/http-status.h"
#include "sandpit/json.h"
#include "sandpit/macro.h"
#include "sandpit/oci.h"
#include "sandpit/util.h"

#define CONNECT_TIMEOUT_MS 10000
#define ERROR_BODY_MAX     ((size_t) 64 * 1024)
#define TOKEN_BODY_MAX     ((size_t) 256 * 1024)

struct OciRegistry {
        const OciRegistryConfig *cfg;
        char *registry, *repository;
        char *base; /* "https://host[:port]" */
        bool insecure;
        CURL *h;
        char *authorization;   /* "Authorization: ..." once authenticated */
        bool authenticated;    /* a challenge was answered: a second 401 is final */
        bool used_credentials; /* a challenge was answered with the configured ones */
        char err[512];
        char errbuf[CURL_ERROR_SIZE];
        /* Headers of the last response. */
        char content_type[256];
        char challenge[2048];
        char location[2048];
};

/* What a request other than a GET sends: data, or size bytes of fd from its start. */
typedef struct {
        const char *method; /* "HEAD", "POST", "PUT" */
        const char *content_type;
        const char *data;
        size_t len;
        int fd; /* -1: data */
        uint64_t size;
} Send;

typedef struct {
        OciRegistry *c;
        int fd;
        OciHasher *hasher;
        uint64_t got, limit;
        StrBuf *mem; /* instead of fd */
        size_t mem_max;
} BlobSink;

void oci_registry_free(OciRegistry *c)
{
        if (!c)
                return;
        if (c->h)
                curl_easy_cleanup(c->h);
        free(c->registry);
        free(c->repository);
        free(c->base);
        free(c->authorization);
        free(c);
}

const char *oci_registry_last_error(const OciRegistry *c)
{
        return c->err;
}

bool oci_registry_used_credentials(const OciRegistry *c)
{
        return c->used_credentials;
}

int oci_registry_new(const OciRegistryConfig *cfg, const OciRef *ref, OciRegistry **ret)
{
        int r = curl_core_global_init();
        if (r < 0)
                return r;
        OciRegistry *c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->cfg = cfg;
        STRV_FOREACH(i, cfg->insecure)
                if (streq(*i, ref->registry))
                        c->insecure = true;
        c->registry = strdup(ref->registry);
        c->repository = strdup(ref->repository);
        if (asprintf(&c->base, "%s://%s", c->insecure ? "http" : "https", ref->registry) < 0)
                c->base = NULL;
        c->h = curl_easy_init();
        if (!c->registry || !c->repository || !c->base || !c->h) {
                oci_registry_free(c);
                return -ENOMEM;
        }
        *ret = c;
        return 0;
}

static void copy_header_value(char *dst, size_t n, const char *v, size_t len)
{
        while (len && (*v == ' ' || *v == '\t'))
                v++, len--;
        while (len && (v[len - 1] == '\r' || v[len - 1] == '\n' || v[len - 1] == ' '))
                len--;
        if (len >= n)
                len = n - 1;
        memcpy(dst, v, len);
        dst[len] = '\0';
}

static size_t header_cb(char *data, size_t size, size_t nmemb, void *userdata)
{
        OciRegistry *c = userdata;
        size_t n = size * nmemb;
        if (n >= 5 && strncmp(data, "HTTP/", 5) == 0) { /* a new response (redirects) */
                c->content_type[0] = c->challenge[0] = c->location[0] = '\0';
                return n;
        }
        static const char ct[] = "content-type:", wa[] = "www-authenticate:", lo[] = "location:";
        if (n > sizeof(ct) - 1 && strncasecmp(data, ct, sizeof(ct) - 1) == 0)
                copy_header_value(c->content_type, sizeof(c->content_type), data + sizeof(ct) - 1,
                                  n - (sizeof(ct) - 1));
        else if (n > sizeof(wa) - 1 && strncasecmp(data, wa, sizeof(wa) - 1) == 0 &&
                 !c->challenge[0])
                copy_header_value(c->challenge, sizeof(c->challenge), data + sizeof(wa) - 1,
                                  n - (sizeof(wa) - 1));
        else if (n > sizeof(lo) - 1 && strncasecmp(data, lo, sizeof(lo) - 1) == 0)
                copy_header_value(c->location, sizeof(c->location), data + sizeof(lo) - 1,
                                  n - (sizeof(lo) - 1));
        return n;
}

/* The registry's {"errors": [{"code", "message"}]} as text. */
static void note_error_body(OciRegistry *c, long status, const StrBuf *body)
{
        cleanup_json json_object *doc = NULL;
        json_object *e = NULL;
        if (body->len && json_parse_strict(body->data, body->len, 16, &doc, NULL) == 0 &&
            json_object_is_type(json_field(doc, "errors"), json_type_array))
                e = json_object_array_get_idx(json_field(doc, "errors"), 0);
        if (e)
                (void) snprintf(c->err, sizeof(c->err), "registry %s answered %ld %s: %s",
                                c->registry, status, json_str(e, "code") ?: "",
                                json_str(e, "message") ?: "");
        else
                (void) snprintf(c->err, sizeof(c->err), "registry %s answered %ld", c->registry,
                                status);
}

static size_t read_cb(char *buf, size_t size, size_t nmemb, void *userdata)
{
        const Send *send = userdata;
        ssize_t n = read(send->fd, buf, size * nmemb);
        return n < 0 ? CURL_READFUNC_ABORT : (size_t) n;
}

static int set_send(OciRegistry *c, const Send *send)
{
        if (!send)
                return curl_core_set_method(c->h, "GET", NULL);
        if (streq(send->method, "HEAD"))
                return curl_easy_setopt(c->h, CURLOPT_NOBODY, 1L) == CURLE_OK ? 0 : -EIO;
        if (send->fd >= 0) {
                if (lseek(send->fd, 0, SEEK_SET) < 0)
                        return -errno;
                return curl_easy_setopt(c->h, CURLOPT_UPLOAD, 1L) == CURLE_OK &&
                                       curl_easy_setopt(c->h, CURLOPT_READFUNCTION, read_cb) ==
                                               CURLE_OK &&
                                       curl_easy_setopt(c->h, CURLOPT_READDATA, send) == CURLE_OK &&
                                       curl_easy_setopt(c->h, CURLOPT_INFILESIZE_LARGE,
                                                        (curl_off_t) send->size) == CURLE_OK &&
                                       curl_easy_setopt(c->h, CURLOPT_CUSTOMREQUEST,
                                                        send->method) == CURLE_OK
                               ? 0
                               : -EIO;
        }
        return curl_easy_setopt(c->h, CURLOPT_POSTFIELDS, send->data ? send->data : "") ==
                                       CURLE_OK &&
                               curl_easy_setopt(c->h, CURLOPT_POSTFIELDSIZE_LARGE,
                                                (curl_off_t) send->len) == CURLE_OK &&
                               curl_easy_setopt(c->h, CURLOPT_CUSTOMREQUEST, send->method) ==
                                       CURLE_OK
                       ? 0
                       : -EIO;
}

/* One request of url (a GET when send is NULL): 2xx bodies to on_data (or
 * into t.body when NULL). */
static int get_once(OciRegistry *c, const char *url, const Send *send, const char *accept,
                    const char *auth, CurlDataFn on_data, void *userdata, size_t max,
                    long *ret_status, StrBuf *ret_body)
{
        CurlTransfer t = {.on_data = on_data, .userdata = userdata, .max = max};
        CurlRequest req = {.url = url,
                           .protocols = c->insecure ? "http,https" : "https",
                           .connect_timeout_ms = CONNECT_TIMEOUT_MS,
                           .timeout_ms = c->cfg->timeout_ms,
                           .errbuf = c->errbuf};
        int r = curl_core_setup(c->h, &req, &t);
        if (r < 0)
                return r;
        c->content_type[0] = c->challenge[0] = c->location[0] = '\0';
        struct curl_slist *hdrs = NULL, *tmp;
        cleanup_free char *ctype = NULL;
        if (send && send->content_type &&
            asprintf(&ctype, "Content-Type: %s", send->content_type) < 0)
                return -ENOMEM;
        if (accept && (tmp = curl_slist_append(hdrs, accept)))
                hdrs = tmp;
        if (auth && (tmp = curl_slist_append(hdrs, auth)))
                hdrs = tmp;
        if (ctype && (tmp = curl_slist_append(hdrs, ctype)))
                hdrs = tmp;
        if (send && (tmp = curl_slist_append(hdrs, "Expect:")))
                hdrs = tmp;
        /* Blobs are often served by a redirect to storage; curl sends our
         * Authorization header only to the host it was set for. */
        if (curl_easy_setopt(c->h, CURLOPT_HTTPHEADER, hdrs) != CURLE_OK ||
            curl_easy_setopt(c->h, CURLOPT_HEADERFUNCTION, header_cb) != CURLE_OK ||
            curl_easy_setopt(c->h, CURLOPT_HEADERDATA, c) != CURLE_OK ||
            curl_easy_setopt(c->h, CURLOPT_FOLLOWLOCATION, send ? 0L : 1L) != CURLE_OK ||
            curl_easy_setopt(c->h, CURLOPT_MAXREDIRS, 5L) != CURLE_OK ||
#if LIBCURL_VERSION_NUM >= 0x075500
            curl_easy_setopt(c->h, CURLOPT_REDIR_PROTOCOLS_STR,
                             c->insecure ? "http,https" : "https") != CURLE_OK ||
#endif
            (c->cfg->ca_file &&
             curl_easy_setopt(c->h, CURLOPT_CAINFO, c->cfg->ca_file) != CURLE_OK) ||
            set_send(c, send) < 0) {
                curl_slist_free_all(hdrs);
                strbuf_done(&t.body);
                return -EIO;
        }
        CURLcode cc = curl_easy_perform(c->h);
        curl_slist_free_all(hdrs);
        r = curl_core_errno(&t, cc);
        if (r < 0) {
                if (t.error == 0)
                        (void) snprintf(c->err, sizeof(c->err), "registry %s: %s", c->registry,
                                        c->errbuf[0] ? c->errbuf : curl_easy_strerror(cc));
                strbuf_done(&t.body);
                return r;
        }
        (void) curl_easy_getinfo(c->h, CURLINFO_RESPONSE_CODE, ret_status);
        *ret_body = t.body;
        return 0;
}

static int collect(const char *data, size_t len, void *userdata)
{
        StrBuf *b = userdata;
        return strbuf_append(b, data, len, TOKEN_BODY_MAX);
}

static int credentials(OciRegistry *c, char **ret_user, char **ret_pass)
{
        if (!c->cfg->auth_config)
                return -ENOENT;
        return oci_docker_config_auth(c->cfg->auth_config, c->cfg->auth_config_len, c->registry,
                                      ret_user, ret_pass);
}

static int basic_header(const char *user, const char *pass, char **ret)
{
        cleanup_free char *plain = NULL, *b64 = NULL;
        if (asprintf(&plain, "%s:%s", user, pass) < 0)
                return -ENOMEM;
        int r = base64_encode(plain, strlen(plain), &b64);
        explicit_bzero(plain, strlen(plain));
        if (r < 0)
                return r;
        return asprintf(ret, "Authorization: Basic %s", b64) < 0 ? -ENOMEM : 0;
}

/* Answers the last response's challenge: sets c->authorization. */
static int authenticate(OciRegistry *c)
{
        OciChallenge ch = {0};
        if (!c->challenge[0] || oci_challenge_parse(c->challenge, &ch) < 0) {
                (void) snprintf(c->err, sizeof(c->err),
                                "registry %s answered 401 without a usable WWW-Authenticate",
                                c->registry);
                return -EACCES;
        }
        cleanup_free char *user = NULL, *pass = NULL, *basic = NULL;
        int r = credentials(c, &user, &pass);
        if (r < 0 && r != -ENOENT) {
                oci_challenge_done(&ch);
                (void) snprintf(c->err, sizeof(c->err), "the registry credentials are malformed");
                return r;
        }
        if (user && (r = basic_header(user, pass, &basic)) < 0) {
                oci_challenge_done(&ch);
                return r;
        }
        if (pass)
                explicit_bzero(pass, strlen(pass));
        c->authenticated = true;
        c->used_credentials = basic != NULL;
        if (streq(ch.scheme, "basic")) {
                oci_challenge_done(&ch);
                if (!basic) {
                        (void) snprintf(c->err, sizeof(c->err),
                                        "registry %s wants credentials and none are configured",
                                        c->registry);
                        return -EACCES;
                }
                free(c->authorization);
                c->authorization = TAKE_PTR(basic);
                return 0;
        }
        if (!streq(ch.scheme, "bearer") || !ch.realm ||
            (strncmp(ch.realm, "https://", 8) != 0 &&
             !(c->insecure && strncmp(ch.realm, "http://", 7) == 0))) {
                (void) snprintf(c->err, sizeof(c->err),
                                "registry %s asks for an unsupported authentication (%s)",
                                c->registry, ch.scheme);
                oci_challenge_done(&ch);
                return -EACCES;
        }
        cleanup_free char *scope = NULL, *url = NULL;
        if (asprintf(&scope, "repository:%s:%s", c->repository,
                     c->cfg->push ? "pull,push" : "pull") < 0) {
                oci_challenge_done(&ch);
                return -ENOMEM;
        }
        /* A push asks for its own scope: the first challenge may be a HEAD's (pull). */
        char *es = curl_easy_escape(c->h, ch.scope && !c->cfg->push ? ch.scope : scope, 0);
        char *esvc = ch.service ? curl_easy_escape(c->h, ch.service, 0) : NULL;
        r = asprintf(&url, "%s%sscope=%s%s%s", ch.realm, strchr(ch.realm, '?') ? "&" : "?",
                     es ? es : "", esvc ? "&service=" : "", esvc ? esvc : "");
        curl_free(es);
        curl_free(esvc);
        oci_challenge_done(&ch);
        if (r < 0)
                return -ENOMEM;
        StrBuf body = {0}, ok = {0};
        long status = 0;
        r = get_once(c, url, NULL, NULL, basic, collect, &ok, ERROR_BODY_MAX, &status, &body);
        if (r < 0) {
                strbuf_done(&ok);
                return r;
        }
        if (status == 401 || status == 403) {
                (void) snprintf(c->err, sizeof(c->err),
                                "the token service of registry %s refused %s (%ld)", c->registry,
                                basic ? "the credentials" : "an anonymous pull", status);
                strbuf_done(&ok);
                strbuf_done(&body);
                return -EACCES;
        }
        strbuf_done(&body);
        cleanup_json json_object *doc = NULL;
        const char *token = NULL;
        if (status >= 200 && status < 300 && ok.len &&
            json_parse_strict(ok.data, ok.len, 8, &doc, NULL) == 0)
                token = json_str(doc, "token") ?: json_str(doc, "access_token");
        strbuf_done(&ok);
        if (!token || !*token || strpbrk(token, "\r\n")) {
                (void) snprintf(c->err, sizeof(c->err),
                                "the token service of registry %s gave no token (%ld)", c->registry,
                                status);
                return -EBADMSG;
        }
        free(c->authorization);
        if (asprintf(&c->authorization, "Authorization: Bearer %s", token) < 0) {
                c->authorization = NULL;
                return -ENOMEM;
        }
        return 0;
}

/* A request (a GET when send is NULL) of path below /v2/<repository>/, or of
 * url when what starts with the registry's base, answering one authentication
 * challenge. ret_status (may be NULL): the 2xx status. */
static int request(OciRegistry *c, const char *what, const Send *send, const char *accept,
                   CurlDataFn on_data, void *userdata, size_t max, StrBuf *ret_body,
                   long *ret_status)
{
        cleanup_free char *url = NULL;
        if (strncmp(what, c->base, strlen(c->base)) == 0
                    ? !(url = strdup(what))
                    : asprintf(&url, "%s/v2/%s/%s", c->base, c->repository, what) < 0)
                return -ENOMEM;
        for (;;) {
                long status = 0;
                StrBuf body = {0};
                int r = get_once(c, url, send, accept, c->authorization, on_data, userdata, max,
                                 &status, &body);
                if (r < 0)
                        return r;
                if (status == 401 && !c->authenticated) {
                        strbuf_done(&body);
                        /* Nothing reached on_data: a 401's body goes to body. */
                        if ((r = authenticate(c)) < 0)
                                return r;
                        continue;
                }
                if (status >= 200 && status < 300) {
                        *ret_body = body;
                        if (ret_status)
                                *ret_status = status;
                        return 0;
                }
                note_error_body(c, status, &body);
                strbuf_done(&body);
                if (status == 401)
                        (void) snprintf(
                                c->err + strlen(c->err), sizeof(c->err) - strlen(c->err), " (%s)",
                                c->authorization ? "credentials refused" : "credentials needed");
                return http_status_to_errno(status, NULL);
        }
}

static int get(OciRegistry *c, const char *what, const char *accept, CurlDataFn on_data,
               void *userdata, size_t max, StrBuf *ret_body)
{
        return request(c, what, NULL, accept, on_data, userdata, max, ret_body, NULL);
}

int oci_registry_get_manifest(OciRegistry *c, const char *reference, char **ret_data,
                              size_t *ret_len, char **ret_content_type, char *ret_digest)
{
        cleanup_free char *what = NULL;
        c->err[0] = '\0';
        if (asprintf(&what, "manifests/%s", reference) < 0)
                return -ENOMEM;
        StrBuf body = {0};
        int r = get(c, what, OCI_ACCEPT_HEADER, NULL, NULL, OCI_MANIFEST_MAX, &body);
        if (r == -E2BIG) {
                (void) snprintf(c->err, sizeof(c->err), "the manifest of %s is too big",
                                c->repository);
                return -EFBIG;
        }
        if (r < 0)
                return r;
        OciHasher *h = NULL;
        if ((r = oci_hasher_new(&h)) == 0 &&
            (r = oci_hasher_update(h, body.data ? body.data : "", body.len)) == 0)
                r = oci_hasher_final(h, ret_digest);
        oci_hasher_free(h);
        if (r == 0 && oci_digest_valid(reference) && !streq(reference, ret_digest)) {
                (void) snprintf(c->err, sizeof(c->err),
                                "registry %s sent a manifest whose digest is %s, not %s",
                                c->registry, ret_digest, reference);
                r = -EBADMSG;
        }
        if (r == 0 && !(*ret_content_type = strdup(c->content_type)))
                r = -ENOMEM;
        if (r < 0) {
                strbuf_done(&body);
                return r;
        }
        *ret_len = body.len;
        *ret_data = body.data ? body.data : strdup("");
        return *ret_data ? 0 : -ENOMEM;
}

static int blob_data(const char *data, size_t len, void *userdata)
{
        BlobSink *s = userdata;
        if (len > s->limit - s->got) {
                (void) snprintf(s->c->err, sizeof(s->c->err),
                                "registry %s sent more bytes than the blob's size", s->c->registry);
                return -EBADMSG;
        }
        s->got += len;
        int r = oci_hasher_update(s->hasher, data, len);
        if (r < 0)
                return r;
        if (s->mem)
                return strbuf_append(s->mem, data, len, s->mem_max);
        return write_all(s->fd, data, len);
}

static int get_blob(OciRegistry *c, const OciDescriptor *d, BlobSink *s)
{
        c->err[0] = '\0';
        if (c->cfg->max_blob_size && d->size > c->cfg->max_blob_size) {
                (void) snprintf(c->err, sizeof(c->err),
                                "blob %s is %llu bytes, more than the limit of %llu", d->digest,
                                (unsigned long long) d->size,
                                (unsigned long long) c->cfg->max_blob_size);
                return -EFBIG;
        }
        cleanup_free char *what = NULL;
        if (asprintf(&what, "blobs/%s", d->digest) < 0)
                return -ENOMEM;
        s->c = c;
        s->limit = d->size;
        int r = oci_hasher_new(&s->hasher);
        if (r < 0)
                return r;
        StrBuf body = {0};
        r = get(c, what, NULL, blob_data, s, ERROR_BODY_MAX, &body);
        strbuf_done(&body);
        char got[OCI_DIGEST_MAX] = "";
        if (r == 0 && s->got != d->size) {
                (void) snprintf(c->err, sizeof(c->err),
                                "registry %s sent %llu bytes of blob %s, not %llu", c->registry,
                                (unsigned long long) s->got, d->digest,
                                (unsigned long long) d->size);
                r = -EBADMSG;
        }
        if (r == 0)
                r = oci_hasher_final(s->hasher, got);
        if (r == 0 && !streq(got, d->digest)) {
                (void) snprintf(c->err, sizeof(c->err),
                                "blob %s from registry %s has digest %s: refused", d->digest,
                                c->registry, got);
                r = -EBADMSG;
        }
        oci_hasher_free(s->hasher);
        s->hasher = NULL;
        return r;
}

int oci_registry_get_blob(OciRegistry *c, const OciDescriptor *d, int fd)
{
        BlobSink s = {.fd = fd};
        return get_blob(c, d, &s);
}

int oci_registry_get_blob_mem(OciRegistry *c, const OciDescriptor *d, size_t max, char **ret,
                              size_t *ret_len)
{
        StrBuf b = {0};
        if (d->size > max) {
                (void) snprintf(c->err, sizeof(c->err), "blob %s is too big (%llu bytes)",
                                d->digest, (unsigned long long) d->size);
                return -EFBIG;
        }
        BlobSink s = {.fd = -1, .mem = &b, .mem_max = max};
        int r = get_blob(c, d, &s);
        if (r < 0) {
                strbuf_done(&b);
                return r;
        }
        *ret_len = b.len;
        *ret = b.data ? b.data : strdup("");
        return *ret ? 0 : -ENOMEM;
}

/* --- pushing ------------------------------------------------------------------ */

int oci_registry_has_blob(OciRegistry *c, const char *digest)
{
        cleanup_free char *what = NULL;
        c->err[0] = '\0';
        if (asprintf(&what, "blobs/%s", digest) < 0)
                return -ENOMEM;
        Send head = {.method = "HEAD", .fd = -1};
        StrBuf body = {0};
        int r = request(c, what, &head, NULL, NULL, NULL, ERROR_BODY_MAX, &body, NULL);
        strbuf_done(&body);
        if (r == -ENOENT)
                c->err[0] = '\0';
        return r;
}

int oci_registry_put_blob(OciRegistry *c, int fd, const OciDescriptor *d)
{
        int r = oci_registry_has_blob(c, d->digest);
        if (r != -ENOENT)
                return r; /* there already, or an error */
        Send post = {.method = "POST", .fd = -1};
        StrBuf body = {0};
        long status = 0;
        r = request(c, "blobs/uploads/", &post, NULL, NULL, NULL, ERROR_BODY_MAX, &body, &status);
        strbuf_done(&body);
        if (r < 0)
                return r;
        /* The upload's URL: a path on the registry, or a URL below its base. */
        const char *loc = c->location;
        cleanup_free char *url = NULL, *esc = NULL;
        bool absolute = strncmp(loc, c->base, strlen(c->base)) == 0 && loc[strlen(c->base)] == '/';
        if (status != 202 || (!absolute && loc[0] != '/') || strpbrk(loc, "\r\n#")) {
                (void) snprintf(c->err, sizeof(c->err),
                                "registry %s answered an upload with %ld and no usable Location",
                                c->registry, status);
                return -EBADMSG;
        }
        char *e = curl_easy_escape(c->h, d->digest, 0);
        if (!e)
                return -ENOMEM;
        r = asprintf(&url, "%s%s%sdigest=%s", absolute ? "" : c->base, loc,
                     strchr(loc, '?') ? "&" : "?", e);
        curl_free(e);
        if (r < 0)
                return -ENOMEM;
        Send put = {.method = "PUT",
                    .content_type = "application/octet-stream",
                    .fd = fd,
                    .size = d->size};
        r = request(c, url, &put, NULL, NULL, NULL, ERROR_BODY_MAX, &body, &status);
        strbuf_done(&body);
        if (r == 0 && status != 201 && status != 204) {
                (void) snprintf(c->err, sizeof(c->err),
                                "registry %s answered the upload of %s with %ld", c->registry,
                                d->digest, status);
                return -EBADMSG;
        }
        return r;
}

int oci_registry_put_manifest(OciRegistry *c, const char *tag, const char *data, size_t len,
                              const char *media_type, char *ret_digest)
{
        cleanup_free char *what = NULL;
        c->err[0] = '\0';
        int r = oci_digest(data, len, ret_digest);
        if (r < 0)
                return r;
        if (asprintf(&what, "manifests/%s", tag) < 0)
                return -ENOMEM;
        Send put = {
                .method = "PUT", .content_type = media_type, .data = data, .len = len, .fd = -1};
        StrBuf body = {0};
        r = request(c, what, &put, NULL, NULL, NULL, ERROR_BODY_MAX, &body, NULL);
        strbuf_done(&body);
        return r;
}

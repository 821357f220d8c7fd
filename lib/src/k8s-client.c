#include "sandpit/k8s-client.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <json-c/json.h>

#include "curl-internal.h"
#include "sandpit/json.h"
#include "sandpit/log.h"
#include "sandpit/macro.h"
#include "sandpit/util.h"

#define POOL_MAX           8
#define CONNECT_TIMEOUT_MS 10000L

struct K8sClient {
        K8sConfig *cfg;
        long timeout_ms;
        /* lock guards idle[], n_idle and the token cache below. */
        pthread_mutex_t lock;
        CURL *idle[POOL_MAX];
        size_t n_idle;
        char *token; /* from cfg->token, or the token file as last read */
        uint64_t token_read_us;
};

static void token_free(char *t)
{
        if (t) {
                explicit_bzero(t, strlen(t));
                free(t);
        }
}

int k8s_client_new(K8sConfig *cfg, K8sClient **ret)
{
        if (!cfg || !ret || !cfg->server) {
                k8s_config_free(cfg);
                return -EINVAL;
        }
        if (curl_core_global_init() < 0) {
                k8s_config_free(cfg);
                return -EIO;
        }
        K8sClient *c = calloc(1, sizeof(*c));
        if (!c) {
                k8s_config_free(cfg);
                return -ENOMEM;
        }
        c->cfg = cfg;
        c->timeout_ms = K8S_REQUEST_TIMEOUT_MS;
        if (pthread_mutex_init(&c->lock, NULL) != 0) {
                k8s_config_free(cfg);
                free(c);
                return -ENOMEM;
        }
        *ret = c;
        return 0;
}

void k8s_client_free(K8sClient *c)
{
        if (!c)
                return;
        for (size_t i = 0; i < c->n_idle; i++)
                curl_easy_cleanup(c->idle[i]);
        token_free(c->token);
        (void) pthread_mutex_destroy(&c->lock);
        k8s_config_free(c->cfg);
        free(c);
}

const K8sConfig *k8s_client_config(const K8sClient *c)
{
        return c->cfg;
}

void k8s_client_set_timeout(K8sClient *c, long timeout_ms)
{
        c->timeout_ms = timeout_ms > 0 ? timeout_ms : 0;
}

static CURL *handle_take(K8sClient *c)
{
        CURL *h = NULL;
        (void) pthread_mutex_lock(&c->lock);
        if (c->n_idle > 0)
                h = c->idle[--c->n_idle];
        (void) pthread_mutex_unlock(&c->lock);
        return h ? h : curl_easy_init();
}

static void handle_give_back(K8sClient *c, CURL *h)
{
        (void) pthread_mutex_lock(&c->lock);
        if (c->n_idle < POOL_MAX) {
                c->idle[c->n_idle++] = h;
                h = NULL;
        }
        (void) pthread_mutex_unlock(&c->lock);
        if (h)
                curl_easy_cleanup(h);
}

/* "Authorization: Bearer ..." or NULL without a token. A token file is read
 * again once it is K8S_TOKEN_FILE_REFRESH_S old; a failed read keeps the last
 * good token (the kubelet replaces the file atomically, but be lenient). */
static int auth_header(K8sClient *c, char **ret)
{
        int r = 0;
        *ret = NULL;
        (void) pthread_mutex_lock(&c->lock);
        if (c->cfg->token_file) {
                uint64_t now = now_monotonic_us();
                if (!c->token ||
                    now - c->token_read_us >= (uint64_t) K8S_TOKEN_FILE_REFRESH_S * 1000000) {
                        char *t = NULL;
                        int q = read_token_file(c->cfg->token_file, 1, &t);
                        if (q >= 0) {
                                token_free(c->token);
                                c->token = TAKE_PTR(t);
                                c->token_read_us = now;
                        } else if (!c->token) {
                                r = q;
                        }
                }
        } else if (!c->token && c->cfg->token) {
                c->token = strdup(c->cfg->token);
                if (!c->token)
                        r = -ENOMEM;
        }
        if (r >= 0 && c->token && asprintf(ret, "Authorization: Bearer %s", c->token) < 0) {
                *ret = NULL;
                r = -ENOMEM;
        }
        (void) pthread_mutex_unlock(&c->lock);
        return r;
}

bool k8s_errno_is_transient(int r)
{
        switch (r) {
        case -EAGAIN:
        case -ECONNREFUSED:
        case -ECONNRESET:
        case -ECONNABORTED:
        case -ETIMEDOUT:
        case -EHOSTUNREACH:
        case -ENETUNREACH:
        case -EPIPE:
        case -EIO:
                return true;
        default:
                return false;
        }
}

static void err_set(K8sError *err, long status, const char *reason, const char *message)
{
        if (!err)
                return;
        err->status = status;
        (void) snprintf(err->reason, sizeof(err->reason), "%s", reason ? reason : "");
        (void) snprintf(err->message, sizeof(err->message), "%s", message ? message : "");
}

static bool stop_set(const void *stop)
{
        return atomic_load((const atomic_bool *) stop);
}

#define SETOPT(h, opt, val)                                          \
        do {                                                         \
                if (curl_easy_setopt((h), (opt), (val)) != CURLE_OK) \
                        return -EIO;                                 \
        } while (0)

static int set_blob(CURL *h, CURLoption opt, const uint8_t *data, size_t len)
{
        struct curl_blob blob = {.data = (void *) data, .len = len, .flags = CURL_BLOB_COPY};
        return curl_easy_setopt(h, opt, &blob) == CURLE_OK ? 0 : -EIO;
}

/* TLS: verification always on; CA, client certificate and key from memory. */
static int setup_tls(CURL *h, const K8sConfig *cfg)
{
        SETOPT(h, CURLOPT_SSL_VERIFYPEER, 1L);
        SETOPT(h, CURLOPT_SSL_VERIFYHOST, 2L);
        if (cfg->ca && set_blob(h, CURLOPT_CAINFO_BLOB, cfg->ca, cfg->ca_len) < 0)
                return -EIO;
        if (cfg->cert) {
                SETOPT(h, CURLOPT_SSLCERTTYPE, "PEM");
                SETOPT(h, CURLOPT_SSLKEYTYPE, "PEM");
                if (set_blob(h, CURLOPT_SSLCERT_BLOB, cfg->cert, cfg->cert_len) < 0 ||
                    set_blob(h, CURLOPT_SSLKEY_BLOB, cfg->key, cfg->key_len) < 0)
                        return -EIO;
        }
        return 0;
}

static int setup(K8sClient *c, CURL *h, const char *method, const char *url, const char *payload,
                 CurlTransfer *t, long timeout_ms, struct curl_slist *headers, char *errbuf)
{
        int r = curl_core_setup(h,
                                &(CurlRequest){
                                        .url = url,
                                        .protocols = "https",
                                        .connect_timeout_ms = CONNECT_TIMEOUT_MS,
                                        .timeout_ms = timeout_ms,
                                        .no_proxy = true, /* loopback and cluster addresses */
                                        .errbuf = errbuf,
                                },
                                t);
        if (r < 0)
                return r;
        SETOPT(h, CURLOPT_USERAGENT, "sandpit/k8s-client");
        if ((r = setup_tls(h, c->cfg)) < 0 || (r = curl_core_set_method(h, method, payload)) < 0)
                return r;
        SETOPT(h, CURLOPT_HTTPHEADER, headers);
        return 0;
}

static int append_header(struct curl_slist **list, const char *line)
{
        struct curl_slist *n = curl_slist_append(*list, line);
        if (!n)
                return -ENOMEM;
        *list = n;
        return 0;
}

/* Fills err from a Status body (or the bare HTTP status) and maps it. */
static int status_error(long status, const char *body, size_t len, long retry_after, K8sError *err)
{
        cleanup_json json_object *o = NULL;
        /* Not a Status (or no body): the bare HTTP status decides. */
        (void) json_parse_strict(body, len, K8S_JSON_DEPTH, &o, NULL);
        const char *reason = json_str(o, "reason");
        err_set(err, status, reason, json_str(o, "message"));
        if (err)
                err->retry_after_s = retry_after;
        return http_status_to_errno(status, reason);
}

/* One exchange. payload may be NULL. With on_data, a 2xx body is streamed and
 * *ret_body stays NULL; otherwise it is parsed into *ret_body (NULL if empty). */
static int perform(K8sClient *c, const char *method, const char *path, const char *content_type,
                   const char *payload, K8sDataFn on_data, void *userdata, const atomic_bool *stop,
                   long timeout_ms, json_object **ret_body, K8sError *err)
{
        cleanup_free char *url = NULL;
        cleanup_free char *auth = NULL;
        struct curl_slist *headers = NULL;
        char errbuf[CURL_ERROR_SIZE];
        CurlTransfer t = {
                .on_data = on_data,
                .userdata = userdata,
                .max = K8S_BODY_MAX,
                .stopped = stop ? stop_set : NULL,
                .stop_data = stop,
        };
        int r;

        if (err)
                *err = (K8sError){0};
        if (!c || !method || !path || path[0] != '/')
                return -EINVAL;
        if (asprintf(&url, "%s%s", c->cfg->server, path) < 0) {
                url = NULL;
                return -ENOMEM;
        }
        r = auth_header(c, &auth);
        if (r < 0) {
                err_set(err, 0, NULL, "cannot read the token file");
                return r;
        }
        cleanup_free char *ctype = NULL;
        if (payload && asprintf(&ctype, "Content-Type: %s",
                                content_type ? content_type : "application/json") < 0) {
                ctype = NULL;
                return -ENOMEM;
        }
        if ((r = append_header(&headers, "Accept: application/json")) < 0 ||
            (r = append_header(&headers, "Expect:")) < 0 ||
            (ctype && (r = append_header(&headers, ctype)) < 0) ||
            (auth && (r = append_header(&headers, auth)) < 0)) {
                curl_slist_free_all(headers);
                return r;
        }

        CURL *h = handle_take(c);
        if (!h) {
                curl_slist_free_all(headers);
                return -ENOMEM;
        }
        r = setup(c, h, method, url, payload, &t, timeout_ms, headers, errbuf);
        if (r < 0)
                goto out;

        log_debug("k8s %s %s", method, path);
        CURLcode cc = curl_easy_perform(h);
        long status = 0;
        (void) curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
        if (cc == CURLE_WRITE_ERROR && t.error < 0) {
                r = t.error;
                err_set(err, status, NULL, "aborted by the receiver");
                goto out;
        }
        if (cc != CURLE_OK) {
                r = curl_core_errno(&t, cc);
                err_set(err, status, NULL, errbuf[0] ? errbuf : curl_easy_strerror(cc));
                log_debug("k8s %s %s: %s", method, path, errbuf[0] ? errbuf : "transport error");
                goto out;
        }
        log_debug("k8s %s %s: %ld", method, path, status);

        if (status < 200 || status >= 300) {
                curl_off_t retry_after = 0;
                (void) curl_easy_getinfo(h, CURLINFO_RETRY_AFTER, &retry_after);
                r = status_error(status, t.body.data, t.body.len, (long) retry_after, err);
                goto out;
        }
        if (err)
                err->status = status;
        r = 0;
        if (ret_body) {
                *ret_body = NULL;
                if (!on_data && t.body.len > 0) {
                        r = json_parse_strict(t.body.data, t.body.len, K8S_JSON_DEPTH, ret_body,
                                              NULL);
                        if (r == -ENOMEM)
                                goto out;
                        if (r < 0) {
                                err_set(err, status, NULL, "the response is not JSON");
                                r = -EBADMSG;
                                goto out;
                        }
                }
        }
out:
        (void) curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
        curl_slist_free_all(headers);
        handle_give_back(c, h);
        strbuf_done(&t.body);
        return r;
}

static const char *body_string(json_object *body)
{
        return body ? json_object_to_json_string_ext(body, JSON_C_TO_STRING_PLAIN |
                                                                   JSON_C_TO_STRING_NOSLASHESCAPE)
                    : NULL;
}

int k8s_request(K8sClient *c, const char *method, const char *path, const char *content_type,
                json_object *body, json_object **ret, K8sError *err)
{
        const char *payload = body_string(body);
        if (body && !payload)
                return -ENOMEM;
        json_object *o = NULL;
        int r = perform(c, method, path, content_type, payload, NULL, NULL, NULL,
                        c ? c->timeout_ms : 0, &o, err);
        if (r < 0)
                return r;
        if (ret)
                *ret = o;
        else
                json_object_put(o);
        return 0;
}

int k8s_stream(K8sClient *c, const char *path, K8sDataFn fn, void *userdata,
               const atomic_bool *stop, long timeout_ms, K8sError *err)
{
        if (!fn)
                return -EINVAL;
        return perform(c, "GET", path, NULL, NULL, fn, userdata, stop, timeout_ms, NULL, err);
}

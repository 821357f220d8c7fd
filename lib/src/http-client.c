#include "sandpit/http-client.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <curl/curl.h>
#include <json-c/json.h>

#include "curl-internal.h"
#include "sandpit/json.h"
#include "sandpit/log.h"
#include "sandpit/macro.h"
#include "sandpit/util.h"

#define HTTP_BODY_MAX           ((size_t) 64 * 1024 * 1024)
#define HTTP_CONNECT_TIMEOUT_MS 10000L

struct HttpClient {
        CURL *curl;
        char *url;         /* as given */
        char *base;        /* "http://localhost" for unix sockets, else url without trailing '/' */
        char *socket_path; /* NULL for TCP */
        char *auth_header; /* NULL without a token; never logged */
        char *ca_file;     /* http_client_set_tls(): PEM CAs of https://; NULL: the system's */
        char *tls_name;    /* ... the name the certificate must carry; NULL: the URL's host */
        struct curl_slist *connect_to; /* "NAME:PORT:HOST:PORT" with tls_name */
        long timeout_ms;
        const volatile sig_atomic_t *cancel;
        char errbuf[CURL_ERROR_SIZE];
};

static bool has_prefix(const char *s, const char *prefix)
{
        return strncmp(s, prefix, strlen(prefix)) == 0;
}

int http_client_new(const char *url, const char *token, HttpClient **ret)
{
        if (!url || !ret)
                return -EINVAL;
        if (token && strpbrk(token, "\r\n"))
                return -EINVAL;

        if (curl_core_global_init() < 0)
                return -EIO;

        HttpClient *c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        int r = -ENOMEM;

        c->url = strdup(url);
        if (!c->url)
                goto fail;

        if (has_prefix(url, "unix://")) {
                const char *path = url + strlen("unix://");
                if (path[0] != '/') {
                        r = -EINVAL;
                        goto fail;
                }
                c->socket_path = strdup(path);
                c->base = strdup("http://localhost");
                if (!c->socket_path || !c->base)
                        goto fail;
        } else if (has_prefix(url, "http://") || has_prefix(url, "https://")) {
                const char *host = strstr(url, "://") + 3;
                if (host[0] == '\0' || host[0] == '/') {
                        r = -EINVAL;
                        goto fail;
                }
                c->base = strdup(url);
                if (!c->base)
                        goto fail;
                size_t n = strlen(c->base);
                while (n > 0 && c->base[n - 1] == '/')
                        c->base[--n] = '\0';
        } else {
                r = -EINVAL;
                goto fail;
        }

        if (token && token[0] != '\0' &&
            asprintf(&c->auth_header, "Authorization: Bearer %s", token) < 0) {
                c->auth_header = NULL;
                goto fail;
        }

        c->curl = curl_easy_init();
        if (!c->curl)
                goto fail;

        *ret = c;
        return 0;
fail:
        http_client_free(c);
        return r;
}

int http_client_dup(const HttpClient *c, HttpClient **ret)
{
        HttpClient *n = NULL;
        int r = http_client_new(c->url, NULL, &n);
        if (r < 0)
                return r;
        if (c->auth_header && !(n->auth_header = strdup(c->auth_header))) {
                http_client_free(n);
                return -ENOMEM;
        }
        n->timeout_ms = c->timeout_ms;
        if ((c->ca_file || c->tls_name) &&
            (r = http_client_set_tls(n, c->ca_file, c->tls_name)) < 0) {
                http_client_free(n);
                return r;
        }
        *ret = n;
        return 0;
}

/* "https://HOST[:PORT][/PREFIX]" split: host (brackets kept for IPv6), port
 * (443 when absent) and the rest from the first '/' on ("" when none). */
static int split_https(const char *url, char **ret_host, unsigned *ret_port, const char **ret_rest)
{
        const char *hp = url + strlen("https://");
        size_t n = strcspn(hp, "/?#");
        const char *end = hp + n, *colon = NULL;
        if (hp[0] == '[') {
                const char *rb = memchr(hp, ']', n);
                if (!rb)
                        return -EINVAL;
                colon = rb + 1 < end && rb[1] == ':' ? rb + 1 : NULL;
                if (!colon && rb + 1 != end)
                        return -EINVAL;
        } else {
                colon = memchr(hp, ':', n);
        }
        size_t hlen = colon ? (size_t) (colon - hp) : n;
        unsigned long port = 443;
        if (colon) {
                char *e = NULL;
                errno = 0;
                port = strtoul(colon + 1, &e, 10);
                if (e != end || colon + 1 == end || errno || port == 0 || port > 65535)
                        return -EINVAL;
        }
        if (hlen == 0)
                return -EINVAL;
        char *host = strndup(hp, hlen);
        if (!host)
                return -ENOMEM;
        *ret_host = host;
        *ret_port = (unsigned) port;
        *ret_rest = end;
        return 0;
}

int http_client_set_tls(HttpClient *c, const char *ca_file, const char *server_name)
{
        if (!has_prefix(c->url, "https://"))
                return -EINVAL;
        if (server_name && (!server_name[0] || strpbrk(server_name, ":/[]@ \t\r\n")))
                return -EINVAL;
        cleanup_free char *ca = ca_file ? strdup(ca_file) : NULL;
        cleanup_free char *name = server_name ? strdup(server_name) : NULL;
        cleanup_free char *base = NULL, *host = NULL, *entry = NULL;
        struct curl_slist *connect_to = NULL;
        if ((ca_file && !ca) || (server_name && !name))
                return -ENOMEM;
        if (server_name) {
                /* The URL names server_name, which curl checks the certificate
                 * against (and sends as SNI); the connection goes to the
                 * URL's own host and port. */
                unsigned port = 0;
                const char *rest = NULL;
                int r = split_https(c->url, &host, &port, &rest);
                if (r < 0)
                        return r;
                if (asprintf(&base, "https://%s:%u%s", server_name, port, rest) < 0) {
                        base = NULL;
                        return -ENOMEM;
                }
                if (asprintf(&entry, "%s:%u:%s:%u", server_name, port, host, port) < 0) {
                        entry = NULL;
                        return -ENOMEM;
                }
                connect_to = curl_slist_append(NULL, entry);
                if (!connect_to)
                        return -ENOMEM;
        } else if (!(base = strdup(c->url))) { /* back to the URL's own host */
                return -ENOMEM;
        }
        size_t n = strlen(base);
        while (n > 0 && base[n - 1] == '/')
                base[--n] = '\0';
        free(c->ca_file);
        c->ca_file = TAKE_PTR(ca);
        free(c->tls_name);
        c->tls_name = TAKE_PTR(name);
        curl_slist_free_all(c->connect_to);
        c->connect_to = connect_to;
        free(c->base);
        c->base = TAKE_PTR(base);
        return 0;
}

void http_client_free(HttpClient *c)
{
        if (!c)
                return;
        if (c->curl)
                curl_easy_cleanup(c->curl);
        free(c->url);
        free(c->base);
        free(c->socket_path);
        free(c->ca_file);
        free(c->tls_name);
        curl_slist_free_all(c->connect_to);
        if (c->auth_header) {
                explicit_bzero(c->auth_header, strlen(c->auth_header));
                free(c->auth_header);
        }
        free(c);
}

const char *http_client_url(const HttpClient *c)
{
        return c->url;
}

void http_client_set_timeout(HttpClient *c, long timeout_ms)
{
        c->timeout_ms = timeout_ms > 0 ? timeout_ms : 0;
}

void http_client_set_cancel(HttpClient *c, const volatile sig_atomic_t *flag)
{
        c->cancel = flag;
}

const char *http_client_last_error(const HttpClient *c)
{
        return c->errbuf;
}

/* Parses a whole response body; whitespace-only is NULL. Trailing garbage or a
 * truncated document is -EBADMSG. */
static int parse_json(const char *data, size_t len, json_object **ret)
{
        size_t start = 0;
        while (start < len && strchr(" \t\r\n", data[start]))
                start++;
        if (start == len) {
                *ret = NULL;
                return 0;
        }
        return json_parse_strict(data + start, len - start, 0, ret, NULL);
}

static bool cancelled(const void *flag)
{
        return *(const volatile sig_atomic_t *) flag != 0;
}

static void log_curl_error(HttpClient *c, CURLcode cc)
{
        if (c->errbuf[0] == '\0')
                (void) snprintf(c->errbuf, sizeof(c->errbuf), "%s", curl_easy_strerror(cc));
        log_debug("http %s: curl error %d: %s", c->url, (int) cc, c->errbuf);
}

typedef struct {
        CurlTransfer x; /* a 2xx body to x.on_data (the lines or the raw data), else collected */
        HttpLineSplitter splitter;
        HttpLineFn on_line;
        void *userdata;
        bool upload; /* http_request_raw(): the request body is in_fd's contents */
        int in_fd;
} Transfer;

static int lines_cb(const char *data, size_t len, void *userdata)
{
        Transfer *t = userdata;
        return http_line_splitter_feed(&t->splitter, data, len, t->on_line, t->userdata);
}

static size_t read_cb(char *buf, size_t size, size_t nmemb, void *userdata)
{
        Transfer *t = userdata;
        for (;;) {
                ssize_t n = read(t->in_fd, buf, size * nmemb);
                if (n >= 0)
                        return (size_t) n;
                if (errno != EINTR) {
                        t->x.error = negative_errno();
                        return CURL_READFUNC_ABORT;
                }
        }
}

#define SETOPT(c, opt, val)                                          \
        do {                                                         \
                if (curl_easy_setopt((c), (opt), (val)) != CURLE_OK) \
                        return -EIO;                                 \
        } while (0)

static int request_setup(HttpClient *c, const char *method, const char *path, const char *payload,
                         bool stream, Transfer *t, char **ret_url, struct curl_slist **ret_headers)
{
        CURL *h = c->curl;
        struct curl_slist *headers = NULL;
        cleanup_free char *url = NULL;

        if (!method || !path || path[0] != '/')
                return -EINVAL;
        if (asprintf(&url, "%s%s", c->base, path) < 0) {
                url = NULL;
                return -ENOMEM;
        }

        t->x.max = HTTP_BODY_MAX;
        t->x.stopped = c->cancel ? cancelled : NULL;
        t->x.stop_data = (const void *) c->cancel;
        int r = curl_core_setup(h,
                                &(CurlRequest){
                                        .url = url,
                                        .protocols = "http,https",
                                        .unix_socket = c->socket_path,
                                        .connect_timeout_ms = HTTP_CONNECT_TIMEOUT_MS,
                                        .timeout_ms = stream ? 0 : c->timeout_ms,
                                        .no_proxy = c->socket_path != NULL,
                                        .errbuf = c->errbuf,
                                },
                                &t->x);
        if (r < 0)
                return r;
        if (c->ca_file) {
                SETOPT(h, CURLOPT_CAINFO, c->ca_file);
                SETOPT(h, CURLOPT_CAPATH, NULL); /* this CA alone, not the system's too */
        }
        if (c->connect_to)
                SETOPT(h, CURLOPT_CONNECT_TO, c->connect_to);

        struct stat st;
        if (t->upload) {
                SETOPT(h, CURLOPT_UPLOAD, 1L);
                SETOPT(h, CURLOPT_READFUNCTION, read_cb);
                SETOPT(h, CURLOPT_READDATA, t);
                if (fstat(t->in_fd, &st) == 0 && S_ISREG(st.st_mode))
                        SETOPT(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t) st.st_size);
                if (!streq(method, "PUT"))
                        SETOPT(h, CURLOPT_CUSTOMREQUEST, method);
        } else if ((r = curl_core_set_method(h, method, payload)) < 0) {
                return r;
        }

        const char *header_lines[] = {
                stream ? "Accept: application/x-ndjson, application/json"
                       : "Accept: application/json",
                payload     ? "Content-Type: application/json"
                : t->upload ? "Content-Type: application/octet-stream"
                            : NULL,
                "Expect:", /* no 100-continue round trip */
                c->auth_header,
        };
        for (size_t i = 0; i < ARRAY_SIZE(header_lines); i++) {
                if (!header_lines[i])
                        continue;
                struct curl_slist *n = curl_slist_append(headers, header_lines[i]);
                if (!n) {
                        curl_slist_free_all(headers);
                        return -ENOMEM;
                }
                headers = n;
        }
        if (curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers) != CURLE_OK) {
                curl_slist_free_all(headers);
                return -EIO;
        }

        *ret_url = TAKE_PTR(url);
        *ret_headers = headers;
        return 0;
}

static int request_perform(HttpClient *c, const char *method, const char *path, json_object *body,
                           bool stream, Transfer *t, long *ret_status)
{
        cleanup_free char *url = NULL;
        struct curl_slist *headers = NULL;
        const char *payload = NULL;

        if (!c)
                return -EINVAL;
        if (body) {
                payload = json_object_to_json_string_ext(
                        body, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
                if (!payload)
                        return -ENOMEM;
        }

        int r = request_setup(c, method, path, payload, stream, t, &url, &headers);
        if (r < 0)
                return r;

        log_debug("http %s %s%s", method, c->url, path);
        CURLcode cc = curl_easy_perform(c->curl);
        /* The handle still points at these; clear before freeing. */
        (void) curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, NULL);
        curl_slist_free_all(headers);

        if (cc != CURLE_OK) {
                log_curl_error(c, cc);
                return curl_core_errno(&t->x, cc);
        }

        long status = 0;
        if (curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &status) != CURLE_OK)
                return -EIO;
        log_debug("http %s %s%s: %ld", method, c->url, path, status);
        *ret_status = status;
        return 0;
}

int http_request_json(HttpClient *c, const char *method, const char *path, json_object *body,
                      long *ret_status, json_object **ret_body)
{
        Transfer t = {.in_fd = -1};
        json_object *parsed = NULL;
        long status = 0;

        int r = request_perform(c, method, path, body, false, &t, &status);
        if (r < 0)
                goto out;

        r = parse_json(t.x.body.data, t.x.body.len, &parsed);
        if (r < 0) {
                if (status >= 200 && status < 300)
                        goto out;
                parsed = NULL; /* an error page that is not JSON: the status says enough */
                r = 0;
        }

        if (ret_status)
                *ret_status = status;
        if (ret_body)
                *ret_body = TAKE_PTR(parsed);
out:
        json_object_put(parsed);
        strbuf_done(&t.x.body);
        return r;
}

int http_request_stream(HttpClient *c, const char *method, const char *path, json_object *body,
                        HttpLineFn on_line, void *userdata, long *ret_status,
                        json_object **ret_body)
{
        Transfer t = {.on_line = on_line, .userdata = userdata, .in_fd = -1};
        t.x.on_data = lines_cb;
        t.x.userdata = &t;
        json_object *parsed = NULL;
        long status = 0;

        if (!on_line)
                return -EINVAL;

        int r = request_perform(c, method, path, body, true, &t, &status);
        if (r < 0)
                goto out;

        if (t.x.streaming || (!t.x.decided && status >= 200 && status < 300)) {
                r = http_line_splitter_finish(&t.splitter, on_line, userdata);
                if (r < 0)
                        goto out;
        } else if (parse_json(t.x.body.data, t.x.body.len, &parsed) < 0) {
                parsed = NULL;
        }

        if (ret_status)
                *ret_status = status;
        if (ret_body)
                *ret_body = TAKE_PTR(parsed);
out:
        json_object_put(parsed);
        strbuf_done(&t.x.body);
        http_line_splitter_done(&t.splitter);
        return r;
}

int http_request_raw(HttpClient *c, const char *method, const char *path, int in_fd,
                     HttpDataFn on_data, void *userdata, long *ret_status, json_object **ret_body)
{
        Transfer t = {.upload = in_fd >= 0, .in_fd = in_fd};
        t.x.on_data = on_data;
        t.x.userdata = userdata;
        json_object *parsed = NULL;
        long status = 0;

        int r = request_perform(c, method, path, NULL, true, &t, &status);
        if (r < 0)
                goto out;
        if (!t.x.streaming && t.x.body.len > 0 &&
            parse_json(t.x.body.data, t.x.body.len, &parsed) < 0) {
                parsed = NULL;
                if (status >= 200 && status < 300) {
                        r = -EBADMSG;
                        goto out;
                }
        }
        if (ret_status)
                *ret_status = status;
        if (ret_body)
                *ret_body = TAKE_PTR(parsed);
out:
        json_object_put(parsed);
        strbuf_done(&t.x.body);
        return r;
}

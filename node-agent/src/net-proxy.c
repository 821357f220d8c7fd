/* The port proxy. The connection to the sandbox's server is a socket made
 * inside the sandbox's namespace by a short-lived thread (net-link.c) and
 * handed to libcurl, which does the HTTP. Upgrades (websockets) cannot go
 * through libcurl's transfer API: for those the request head is written and
 * the response head read here, then bytes are relayed both ways. */
#include "net-proxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <curl/curl.h>

#include "net-link.h"
#include "sandpit/log.h"
#include "sandpit/macro.h"

#define MAX_RESPONSE ((size_t) 64 << 20) /* buffered; see docs/networking.md */
#define MAX_HEAD     ((size_t) 64 << 10)
#define TIMEOUT_S    300L

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init(void)
{
        (void) curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* Hop-by-hop headers (RFC 9110 7.6.1) and ours: never forwarded. */
static bool hop_header(const char *name)
{
        static const char *const hop[] = {"connection",
                                          "keep-alive",
                                          "proxy-connection",
                                          "proxy-authorization",
                                          "te",
                                          "trailer",
                                          "transfer-encoding",
                                          "upgrade",
                                          "authorization",
                                          "host",
                                          "content-length",
                                          "expect"};
        for (size_t i = 0; i < ARRAY_SIZE(hop); i++)
                if (strcasecmp(name, hop[i]) == 0)
                        return true;
        return false;
}

static int connect_loopback(int fd, unsigned port)
{
        struct sockaddr_in sa = {.sin_family = AF_INET,
                                 .sin_port = htons((uint16_t) port),
                                 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        return connect(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0 ? -errno : 0;
}

/* "/a%20b/c?x=1" from the decoded path and arguments. */
static char *target_of(HttpRequest *req, CURL *c, const char *path)
{
        char *out = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&out, &len);
        if (!f)
                return NULL;
        const char *p = *path ? path : "/";
        while (*p) {
                if (*p == '/') {
                        (void) fputc('/', f);
                        p++;
                        continue;
                }
                size_t n = strcspn(p, "/");
                char *e = curl_easy_escape(c, p, (int) n);
                if (e)
                        (void) fputs(e, f);
                curl_free(e);
                p += n;
        }
        cleanup_strv char **args = NULL;
        if (http_request_args(req, &args) == 0)
                for (size_t i = 0; args[i] && args[i + 1]; i += 2) {
                        char *k = curl_easy_escape(c, args[i], 0);
                        char *v = curl_easy_escape(c, args[i + 1], 0);
                        if (k && v)
                                (void) fprintf(f, "%c%s=%s", i ? '&' : '?', k, v);
                        curl_free(k);
                        curl_free(v);
                }
        if (fclose(f) != 0) {
                free(out);
                return NULL;
        }
        return out;
}

/* --- plain requests through libcurl (it connects the socket we give it)
 * ----------------------------------------- */

typedef struct {
        int fd; /* handed to curl once */
        char *body;
        size_t len;
        bool too_big;
        char **headers; /* alternating names and values */
        size_t nheaders;
} Transfer;

static curl_socket_t open_socket(void *cls, curlsocktype purpose, struct curl_sockaddr *addr)
{
        Transfer *t = cls;
        (void) purpose;
        (void) addr;
        return t->fd >= 0 ? TAKE_FD(t->fd) : CURL_SOCKET_BAD;
}

static size_t on_body(char *data, size_t size, size_t n, void *cls)
{
        Transfer *t = cls;
        size_t k = size * n;
        if (t->len + k > MAX_RESPONSE) {
                t->too_big = true;
                return 0;
        }
        char *b = realloc(t->body, t->len + k + 1);
        if (!b)
                return 0;
        memcpy(b + t->len, data, k);
        t->body = b;
        t->len += k;
        return k;
}

static size_t on_header(char *data, size_t size, size_t n, void *cls)
{
        Transfer *t = cls;
        size_t k = size * n;
        if (k >= 5 && strncmp(data, "HTTP/", 5) == 0) {
                /* A new response (after a 100 Continue): forget the old headers. */
                for (size_t i = 0; i < t->nheaders; i++)
                        free(t->headers[i]);
                t->nheaders = 0;
                return k;
        }
        const char *colon = memchr(data, ':', k);
        if (!colon)
                return k;
        size_t nl = (size_t) (colon - data);
        const char *v = colon + 1, *end = data + k;
        while (v < end && (*v == ' ' || *v == '\t'))
                v++;
        while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
                end--;
        char *name = strndup(data, nl);
        if (!name)
                return 0;
        if (hop_header(name)) {
                free(name);
                return k;
        }
        char **h = realloc(t->headers, (t->nheaders + 3) * sizeof(char *));
        if (!h) {
                free(name);
                return 0;
        }
        t->headers = h;
        h[t->nheaders] = name;
        h[t->nheaders + 1] = strndup(v, (size_t) (end - v));
        h[t->nheaders + 2] = NULL;
        t->nheaders += 2;
        return h[t->nheaders - 1] ? k : 0;
}

static void proxy_plain(HttpRequest *req, int fd, unsigned port, const char *path)
{
        Transfer t = {.fd = fd};
        CURL *c = curl_easy_init();
        struct curl_slist *hdrs = NULL;
        if (!c) {
                (void) close(fd);
                http_respond_error(req, 500, "out of memory");
                return;
        }
        cleanup_free char *target = target_of(req, c, path);
        char url[64];
        (void) snprintf(url, sizeof(url), "http://127.0.0.1:%u", port);
        cleanup_free char *full = NULL;
        if (!target || asprintf(&full, "%s%s", url, target) < 0)
                full = NULL;
        cleanup_strv char **in = NULL;
        (void) http_request_headers(req, &in);
        for (size_t i = 0; in && in[i] && in[i + 1]; i += 2) {
                if (hop_header(in[i]))
                        continue;
                cleanup_free char *line = NULL;
                if (asprintf(&line, "%s: %s", in[i], in[i + 1]) >= 0) {
                        struct curl_slist *n = curl_slist_append(hdrs, line);
                        if (n)
                                hdrs = n;
                }
        }
        struct curl_slist *n = curl_slist_append(hdrs, "Expect:");
        if (n)
                hdrs = n;
        const char *method = http_request_method(req);
        size_t body_len = 0;
        const char *body = http_request_body(req, &body_len);
        (void) curl_easy_setopt(c, CURLOPT_URL, full ? full : url);
        (void) curl_easy_setopt(c, CURLOPT_OPENSOCKETFUNCTION, open_socket);
        (void) curl_easy_setopt(c, CURLOPT_OPENSOCKETDATA, &t);
        (void) curl_easy_setopt(c, CURLOPT_FORBID_REUSE, 1L);
        (void) curl_easy_setopt(c, CURLOPT_PROXY, "");
        (void) curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
        (void) curl_easy_setopt(c, CURLOPT_TIMEOUT, TIMEOUT_S);
        (void) curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
        (void) curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
        (void) curl_easy_setopt(c, CURLOPT_WRITEDATA, &t);
        (void) curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
        (void) curl_easy_setopt(c, CURLOPT_HEADERDATA, &t);
        if (streq(method, "HEAD"))
                (void) curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
        else if (!streq(method, "GET") || body_len) {
                (void) curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
                if (body_len || !streq(method, "GET")) {
                        (void) curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE,
                                                (curl_off_t) body_len);
                        (void) curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
                }
        }
        CURLcode cr = curl_easy_perform(c);
        long status = 0;
        (void) curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        curl_slist_free_all(hdrs);
        curl_easy_cleanup(c); /* closes the socket if curl took it */
        if (t.fd >= 0)
                (void) close(t.fd);
        if (t.too_big)
                http_respond_error(req, 502, "the response from port %u is larger than %zu bytes",
                                   port, MAX_RESPONSE);
        else if (cr != CURLE_OK || status < 100 || status > 999)
                http_respond_error(req, 502, "port %u in the sandbox: %s", port,
                                   curl_easy_strerror(cr));
        else
                http_respond_raw(req, (unsigned) status, t.headers, TAKE_PTR(t.body), t.len);
        for (size_t i = 0; i < t.nheaders; i++)
                free(t.headers[i]);
        free(t.headers);
        free(t.body);
}

/* --- upgrades ----------------------------------------------------------------- */

typedef struct {
        int fd;        /* to the sandbox's server */
        char *pending; /* bytes the server sent after its response head */
        size_t npending;
} Tunnel;

static int write_all(int fd, const char *p, size_t n)
{
        while (n) {
                ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0)
                        return -EPIPE;
                p += k;
                n -= (size_t) k;
        }
        return 0;
}

static void tunnel_run(void *cls, int client, const char *extra, size_t extra_len)
{
        Tunnel *t = cls;
        if (write_all(client, t->pending, t->npending) < 0 ||
            write_all(t->fd, extra, extra_len) < 0)
                return;
        char buf[16384];
        struct pollfd p[2] = {{.fd = client, .events = POLLIN}, {.fd = t->fd, .events = POLLIN}};
        for (;;) {
                int n = poll(p, 2, -1);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return;
                for (int i = 0; i < 2; i++) {
                        if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR)))
                                continue;
                        ssize_t k = recv(p[i].fd, buf, sizeof(buf), 0);
                        if (k < 0 && errno == EINTR)
                                continue;
                        if (k <= 0 || write_all(p[1 - i].fd, buf, (size_t) k) < 0)
                                return; /* either side closed: the tunnel is done */
                }
        }
}

static void tunnel_free(void *cls)
{
        Tunnel *t = cls;
        if (t->fd >= 0)
                (void) close(t->fd);
        free(t->pending);
        free(t);
}

static const HttpUpgradeOps tunnel_ops = {.run = tunnel_run, .destroy = tunnel_free};

/* Reads up to the end of the response head; returns the head length. */
static ssize_t read_head(int fd, char *buf, size_t cap, size_t *ret_len)
{
        size_t len = 0;
        while (len < cap - 1) {
                struct pollfd p = {.fd = fd, .events = POLLIN};
                if (poll(&p, 1, 30000) <= 0)
                        return -ETIMEDOUT;
                ssize_t k = recv(fd, buf + len, cap - 1 - len, 0);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0)
                        return -ECONNRESET;
                len += (size_t) k;
                buf[len] = 0;
                char *end = strstr(buf, "\r\n\r\n");
                if (end) {
                        *ret_len = len;
                        return end + 4 - buf;
                }
        }
        return -E2BIG;
}

static void proxy_upgrade(HttpRequest *req, int fd, unsigned port, const char *path)
{
        cleanup_close int sfd = fd;
        int r = connect_loopback(sfd, port);
        if (r < 0) {
                http_respond_error(req, 502, "cannot connect to port %u in the sandbox: %s", port,
                                   strerror(-r));
                return;
        }
        CURL *c = curl_easy_init(); /* only for URL escaping */
        cleanup_free char *target = c ? target_of(req, c, path) : NULL;
        curl_easy_cleanup(c);
        cleanup_free char *head = NULL;
        size_t head_len = 0;
        FILE *f = open_memstream(&head, &head_len);
        if (!target || !f) {
                if (f)
                        (void) fclose(f);
                http_respond_error(req, 500, "out of memory");
                return;
        }
        (void) fprintf(f, "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%u\r\n", http_request_method(req),
                       target, port);
        cleanup_strv char **in = NULL;
        (void) http_request_headers(req, &in);
        for (size_t i = 0; in && in[i] && in[i + 1]; i += 2)
                if (strcasecmp(in[i], "host") != 0 && strcasecmp(in[i], "authorization") != 0 &&
                    !strpbrk(in[i + 1], "\r\n"))
                        (void) fprintf(f, "%s: %s\r\n", in[i], in[i + 1]);
        (void) fputs("\r\n", f);
        if (fclose(f) != 0 || write_all(sfd, head, head_len) < 0) {
                http_respond_error(req, 502, "cannot send the upgrade to port %u", port);
                return;
        }
        cleanup_free char *buf = malloc(MAX_HEAD);
        size_t len = 0;
        ssize_t hl = buf ? read_head(sfd, buf, MAX_HEAD, &len) : -ENOMEM;
        unsigned long status = 0;
        if (hl >= 12 && strncmp(buf, "HTTP/1.", 7) == 0 && buf[8] == ' ')
                status = strtoul(buf + 9, NULL, 10);
        if (hl < 0 || status < 100 || status > 999) {
                http_respond_error(req, 502, "port %u in the sandbox answered no HTTP response",
                                   port);
                return;
        }
        if (status != 101) {
                http_respond_error(req, 502,
                                   "port %u in the sandbox refused the upgrade (status %lu)", port,
                                   status);
                return;
        }
        /* Relay the server's headers (Upgrade, Sec-WebSocket-Accept, ...). */
        char **hdrs = calloc(64 * 2 + 1, sizeof(char *));
        size_t nh = 0;
        buf[hl - 2] = 0;
        char *save = NULL;
        (void) strtok_r(buf, "\r\n", &save); /* status line */
        for (char *line = strtok_r(NULL, "\r\n", &save); hdrs && line && nh < 128;
             line = strtok_r(NULL, "\r\n", &save)) {
                char *colon = strchr(line, ':');
                if (!colon)
                        continue;
                *colon = 0;
                const char *v = colon + 1 + strspn(colon + 1, " \t");
                if (strcasecmp(line, "connection") == 0)
                        continue;
                hdrs[nh++] = strdup(line);
                hdrs[nh++] = strdup(v);
        }
        Tunnel *t = calloc(1, sizeof(*t));
        if (!t || !hdrs) {
                free(t);
                strv_free(hdrs);
                http_respond_error(req, 500, "out of memory");
                return;
        }
        t->fd = TAKE_FD(sfd);
        t->npending = len - (size_t) hl;
        if (t->npending && (t->pending = malloc(t->npending)))
                memcpy(t->pending, buf + hl, t->npending);
        else
                t->npending = 0;
        http_respond_upgrade(req, hdrs, &tunnel_ops, t);
        strv_free(hdrs);
}

void net_proxy_http(HttpRequest *req, const char *netns_path, unsigned port, const char *path)
{
        (void) pthread_once(&curl_once, curl_init);
        /* Made inside the sandbox's namespace; connected (by libcurl or by
         * proxy_upgrade) from this thread, it still reaches the sandbox's 127.0.0.1. */
        int fd = netns_socket(netns_path, AF_INET, SOCK_STREAM);
        if (fd < 0) {
                http_respond_error(req, 500, "cannot make a socket in the sandbox: %s",
                                   strerror(-fd));
                return;
        }
        cleanup_strv char **in = NULL;
        bool upgrade = false;
        if (http_request_headers(req, &in) == 0)
                for (size_t i = 0; in[i] && in[i + 1]; i += 2)
                        if (strcasecmp(in[i], "upgrade") == 0)
                                upgrade = true;
        if (upgrade)
                proxy_upgrade(req, fd, port, path);
        else
                proxy_plain(req, fd, port, path);
}

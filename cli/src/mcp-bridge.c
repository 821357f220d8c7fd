/* sandpit mcp --url: stdio to a gateway's Streamable HTTP /mcp, so a client
 * that only speaks stdio (Claude Desktop) reaches a remote sandpit and the
 * tools keep one implementation, the gateway's. Each line read is POSTed; a
 * request's answer (JSON, or SSE events: progress, then the answer) is
 * written back a message a line. Requests run on threads of their own so
 * notifications/cancelled overtakes them; initialize runs alone first, and
 * its Mcp-Session-Id and revision go on every later POST. At end of input
 * the calls in flight stop and the session is DELETEd (its sandbox with it). */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <curl/curl.h>

#include "cli.h"
#include "mcp.h"
#include "sandpit/http-client.h"
#include "sandpit/json.h"
#include "sandpit/macro.h"
#include "sandpit/util.h"

#define BRIDGE_BODY_MAX ((size_t) 64 * 1024 * 1024)

typedef struct {
        const char *url;
        const char *api_key;  /* $SANDPIT_API_KEY, or NULL */
        const char *ca_file;  /* --gateway-ca: the only CAs trusted; NULL: the system's */
        pthread_mutex_t lock; /* guards session, protocol, running, and stdout */
        pthread_cond_t idle;
        char session[128];
        char protocol[32];
        unsigned running;
        volatile sig_atomic_t stop; /* the calls in flight end */
} Bridge;

/* One POST. */
typedef struct {
        Bridge *b;
        char *body;
        json_object *id; /* the request's id, NULL for a notification */
        bool initialize;
        char content_type[128];
        char session[128];
        StrBuf data; /* a JSON body, or the SSE data being read */
        StrBuf line; /* an SSE line being read */
        bool sse;
        char error[CURL_ERROR_SIZE]; /* curl's reason when the transfer failed */
} Post;

static void emit(Bridge *b, const char *s, size_t len)
{
        /* One message a line: re-serialise (a JSON body may hold newlines). */
        cleanup_json json_object *o = NULL;
        if (json_parse_strict(s, len, 128, &o, NULL) < 0)
                return;
        const char *t = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
                                                                  JSON_C_TO_STRING_NOSLASHESCAPE);
        pthread_mutex_lock(&b->lock);
        if (t && write_all(STDOUT_FILENO, t, strlen(t)) == 0)
                (void) write_all(STDOUT_FILENO, "\n", 1);
        pthread_mutex_unlock(&b->lock);
}

static void emit_error(Bridge *b, json_object *id, const char *what, const char *detail)
{
        if (!id)
                return;
        cleanup_json json_object *e = mcp_error_new(id, MCP_INTERNAL_ERROR, "%s %s", what, detail);
        const char *t = e ? json_object_to_json_string_ext(e, JSON_C_TO_STRING_PLAIN) : NULL;
        if (t)
                emit(b, t, strlen(t));
}

static size_t on_header(char *data, size_t size, size_t n, void *userdata)
{
        Post *p = userdata;
        size_t len = size * n;
        static const struct {
                const char *name;
                size_t off;
        } want[] = {{"content-type:", offsetof(Post, content_type)},
                    {"mcp-session-id:", offsetof(Post, session)}};
        for (size_t i = 0; i < ARRAY_SIZE(want); i++) {
                size_t k = strlen(want[i].name);
                if (len > k && strncasecmp(data, want[i].name, k) == 0) {
                        const char *v = data + k;
                        size_t vl = len - k;
                        while (vl && (*v == ' ' || *v == '\t'))
                                v++, vl--;
                        while (vl && strchr("\r\n ", v[vl - 1]))
                                vl--;
                        char *dst = (char *) p + want[i].off;
                        snprintf(dst, 128, "%.*s", (int) vl, v);
                }
        }
        return len;
}

/* One SSE line: "data: ..." lines gather, an empty line ends the event. */
static int sse_line(Post *p, const char *l, size_t len)
{
        if (len && l[len - 1] == '\r')
                len--;
        if (len == 0) {
                if (p->data.len)
                        emit(p->b, p->data.data, p->data.len);
                strbuf_done(&p->data);
                return 0;
        }
        if (len >= 5 && strncmp(l, "data:", 5) == 0) {
                size_t skip = len > 5 && l[5] == ' ' ? 6 : 5;
                if (p->data.len && strbuf_append(&p->data, "\n", 1, BRIDGE_BODY_MAX) < 0)
                        return -E2BIG;
                return strbuf_append(&p->data, l + skip, len - skip, BRIDGE_BODY_MAX);
        }
        return 0; /* comments, event:, id:, retry: */
}

static size_t on_body(char *data, size_t size, size_t n, void *userdata)
{
        Post *p = userdata;
        size_t len = size * n;
        if (!p->sse) {
                p->sse = strncasecmp(p->content_type, "text/event-stream", 17) == 0;
                if (!p->sse)
                        return strbuf_append(&p->data, data, len, BRIDGE_BODY_MAX) < 0 ? 0 : len;
        }
        for (size_t i = 0; i < len; i++) {
                if (data[i] != '\n') {
                        if (strbuf_append(&p->line, data + i, 1, BRIDGE_BODY_MAX) < 0)
                                return 0;
                        continue;
                }
                int r = sse_line(p, p->line.data ? p->line.data : "", p->line.len);
                p->line.len = 0;
                if (r < 0)
                        return 0;
        }
        return len;
}

static int on_progress(void *userdata, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t d)
{
        (void) a;
        (void) b;
        (void) c;
        (void) d;
        Post *p = userdata;
        return p->b->stop ? 1 : 0;
}

/* method POST (body) or DELETE. */
static int perform(Bridge *b, Post *p, const char *method, long *status)
{
        CURL *h = curl_easy_init();
        if (!h)
                return -ENOMEM;
        struct curl_slist *hs = NULL;
        char sid[160] = "", pv[64] = "", key[512] = "";
        pthread_mutex_lock(&b->lock);
        if (b->session[0])
                snprintf(sid, sizeof(sid), "Mcp-Session-Id: %s", b->session);
        if (b->protocol[0])
                snprintf(pv, sizeof(pv), "MCP-Protocol-Version: %s", b->protocol);
        pthread_mutex_unlock(&b->lock);
        if (b->api_key)
                snprintf(key, sizeof(key), "X-API-KEY: %s", b->api_key);
        const char *lines[] = {"Content-Type: application/json",
                               "Accept: application/json, text/event-stream", sid, pv, key};
        for (size_t i = 0; i < ARRAY_SIZE(lines); i++)
                if (lines[i][0])
                        hs = curl_slist_append(hs, lines[i]);
        curl_easy_setopt(h, CURLOPT_URL, b->url);
        curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
        if (b->ca_file) {
                /* that CA alone, not the system's besides */
                curl_easy_setopt(h, CURLOPT_CAINFO, b->ca_file);
                curl_easy_setopt(h, CURLOPT_CAPATH, NULL);
        }
        curl_easy_setopt(h, CURLOPT_ERRORBUFFER, p->error);
        curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, hs);
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
        if (p->body)
                curl_easy_setopt(h, CURLOPT_POSTFIELDS, p->body);
        curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(h, CURLOPT_HEADERDATA, p);
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, p);
        curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
        curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
        curl_easy_setopt(h, CURLOPT_XFERINFODATA, p);
        CURLcode cc = curl_easy_perform(h);
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status);
        curl_slist_free_all(hs);
        curl_easy_cleanup(h);
        if (cc == CURLE_ABORTED_BY_CALLBACK)
                return -ECANCELED;
        return cc == CURLE_OK ? 0 : -EIO;
}

static void post_done(Post *p)
{
        free(p->body);
        json_object_put(p->id);
        strbuf_done(&p->data);
        strbuf_done(&p->line);
        free(p);
}

static void run_post(Post *p)
{
        Bridge *b = p->b;
        long status = 0;
        int r = perform(b, p, "POST", &status);
        if (r == -ECANCELED)
                return;
        if (r < 0) {
                char detail[1024];
                snprintf(detail, sizeof(detail), "%s%s%s", b->url, p->error[0] ? ": " : "",
                         p->error);
                emit_error(b, p->id, "cannot reach the gateway at", detail);
                return;
        }
        if (p->sse) {
                if (p->line.len) /* an event cut short at the end */
                        (void) sse_line(p, p->line.data, p->line.len);
                return;
        }
        if (status >= 200 && status < 300 && p->data.len) {
                emit(b, p->data.data, p->data.len);
                if (p->initialize && p->session[0]) {
                        cleanup_json json_object *o = NULL;
                        (void) json_parse_strict(p->data.data, p->data.len, 128, &o, NULL);
                        const char *v = json_str(json_obj(o, "result"), "protocolVersion");
                        pthread_mutex_lock(&b->lock);
                        snprintf(b->session, sizeof(b->session), "%s", p->session);
                        snprintf(b->protocol, sizeof(b->protocol), "%s", v ? v : "");
                        pthread_mutex_unlock(&b->lock);
                }
                return;
        }
        if (status >= 300) {
                /* The gateway's error body carries no id: answer the request. */
                cleanup_json json_object *o = NULL;
                (void) json_parse_strict(p->data.data ? p->data.data : "", p->data.len, 128, &o,
                                         NULL);
                const char *msg =
                        json_str(json_obj(o, "error"), "message") ?: json_str(o, "message");
                char detail[600];
                snprintf(detail, sizeof(detail), "HTTP %ld: %s", status, msg ? msg : "no message");
                emit_error(b, p->id, "the gateway answered", detail);
        }
}

static void *post_thread(void *arg)
{
        Post *p = arg;
        Bridge *b = p->b;
        run_post(p);
        post_done(p);
        pthread_mutex_lock(&b->lock);
        b->running--;
        pthread_cond_broadcast(&b->idle);
        pthread_mutex_unlock(&b->lock);
        return NULL;
}

static int on_line(const char *line, size_t len, void *userdata)
{
        Bridge *b = userdata;
        while (len && strchr(" \t\r", line[len - 1]))
                len--;
        if (!len)
                return 0;
        json_object *msg = NULL, *perr = NULL;
        int r = mcp_parse(line, len, &msg, &perr);
        if (r == -EBADMSG) {
                const char *t = json_object_to_json_string_ext(perr, JSON_C_TO_STRING_PLAIN);
                emit(b, t, strlen(t));
                json_object_put(perr);
                return 0;
        }
        if (r < 0)
                return r;
        unsigned kind = mcp_message_kind(msg);
        Post *p = calloc(1, sizeof(*p));
        if (!p || !(p->body = strndup(line, len))) {
                free(p);
                json_object_put(msg);
                return -ENOMEM;
        }
        p->b = b;
        p->initialize = kind & MCP_MSG_INITIALIZE;
        if (!(kind & MCP_MSG_BATCH) && json_object_object_get_ex(msg, "id", NULL))
                p->id = json_object_get(json_field(msg, "id"));
        json_object_put(msg);
        if (!(kind & MCP_MSG_REQUEST) || p->initialize) {
                /* Notifications are quick, and initialize must be done before
                 * anything else is sent. */
                run_post(p);
                post_done(p);
                return 0;
        }
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        pthread_mutex_lock(&b->lock);
        b->running++;
        pthread_mutex_unlock(&b->lock);
        pthread_t t;
        r = -pthread_create(&t, &attr, post_thread, p);
        pthread_attr_destroy(&attr);
        if (r < 0) {
                pthread_mutex_lock(&b->lock);
                b->running--;
                pthread_mutex_unlock(&b->lock);
                run_post(p);
                post_done(p);
        }
        return 0;
}

int cli_mcp_bridge(CliContext *ctx, const char *url, const char *ca_file,
                   const volatile sig_atomic_t *stop, const sigset_t *wait_mask)
{
        if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0) {
                snprintf(ctx->error, sizeof(ctx->error),
                         "mcp: --url must be http:// or https:// (the gateway's /mcp)");
                return -EINVAL;
        }
        if (ca_file && access(ca_file, R_OK) < 0) {
                int r = negative_errno();
                snprintf(ctx->error, sizeof(ctx->error), "mcp: cannot read the gateway CA %s: %s",
                         ca_file, strerror(-r));
                return r;
        }
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
                return -EIO;
        Bridge b = {.url = url, .ca_file = ca_file};
        const char *key = getenv("SANDPIT_API_KEY");
        b.api_key = key && *key ? key : NULL;
        pthread_mutex_init(&b.lock, NULL);
        pthread_cond_init(&b.idle, NULL);
        HttpLineSplitter lines;
        http_line_splitter_init(&lines);
        char buf[65536];
        int r = 0;
        while (!*stop) {
                struct pollfd pfd = {.fd = STDIN_FILENO, .events = POLLIN};
                int n = ppoll(&pfd, 1, NULL, wait_mask);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0) {
                        r = negative_errno();
                        break;
                }
                ssize_t got = read(STDIN_FILENO, buf, sizeof(buf));
                if (got < 0 && errno == EINTR)
                        continue;
                if (got <= 0) {
                        r = got < 0 ? negative_errno()
                                    : http_line_splitter_finish(&lines, on_line, &b);
                        break;
                }
                r = http_line_splitter_feed(&lines, buf, (size_t) got, on_line, &b);
                if (r < 0)
                        break;
        }
        b.stop = 1;
        pthread_mutex_lock(&b.lock);
        while (b.running > 0)
                pthread_cond_wait(&b.idle, &b.lock);
        pthread_mutex_unlock(&b.lock);
        if (b.session[0]) {
                b.stop = 0;
                Post p = {.b = &b};
                long status = 0;
                (void) perform(&b, &p, "DELETE", &status);
                strbuf_done(&p.data);
                strbuf_done(&p.line);
        }
        http_line_splitter_done(&lines);
        pthread_mutex_destroy(&b.lock);
        pthread_cond_destroy(&b.idle);
        if (r < 0)
                snprintf(ctx->error, sizeof(ctx->error), "mcp: %s", strerror(-r));
        return r;
}

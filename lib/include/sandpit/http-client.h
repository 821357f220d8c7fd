/* A small libcurl wrapper for talking JSON and NDJSON to the sandpit agent (and
 * later the operator's gateway).
 *
 * Server URLs: "unix:///run/sandpit/agent.sock" (requests go to http://localhost
 * over that socket), "http://host:port" or "https://host:port[/prefix]".
 *
 * A client owns one curl handle and reuses its connection: use a client from one
 * thread at a time. Functions return a negative errno on transport failure
 * (-ECONNREFUSED, -ENOENT for a missing socket, -ETIMEDOUT, -EACCES, -EIO for the
 * rest; http_client_last_error() then has curl's text). A completed exchange
 * returns 0 whatever the HTTP status; http_status_to_errno() (http-status.h)
 * maps it. */
#pragma once

#include <signal.h>
#include <stddef.h>

#include <json-c/json.h>

#include "sandpit/http-status.h"
#include "sandpit/strbuf.h"

typedef struct HttpClient HttpClient;

/* Called for each complete line of a stream, without its "\n" (or "\r\n");
 * line is NUL-terminated and valid only during the call. Empty lines are
 * skipped. A negative return aborts the transfer and becomes its result. */
typedef int (*HttpLineFn)(const char *line, size_t len, void *userdata);

/* token may be NULL or ""; otherwise every request carries "Authorization: Bearer". */
int http_client_new(const char *url, const char *token, HttpClient **ret);
void http_client_free(HttpClient *c);
/* A new client for the same server and token (and timeout), with its own
 * connection: for a second thread. */
int http_client_dup(const HttpClient *c, HttpClient **ret);

static inline void http_client_freep(HttpClient **c)
{
        http_client_free(*c);
}
#define cleanup_http_client __attribute__((cleanup(http_client_freep)))

/* TLS of an https:// client (-EINVAL for any other URL): ca_file (may be
 * NULL: the system's CAs) is the PEM file of the only CAs the server's
 * certificate may chain to, read at each new connection; server_name (may be
 * NULL: the URL's host) the name that certificate must carry whatever host
 * the URL names: requests then go to https://SERVER_NAME:PORT with curl's
 * CONNECT_TO to the URL's host and port (node IPs are not known when a
 * certificate is made; docs/security.md). Verification is never off. */
int http_client_set_tls(HttpClient *c, const char *ca_file, const char *server_name);

/* The URL given to http_client_new(). */
const char *http_client_url(const HttpClient *c);
/* Upper bound on a whole http_request_json() exchange; 0 (the default) means
 * none. Streams are never bounded (a command may run for hours). */
void http_client_set_timeout(HttpClient *c, long timeout_ms);
/* While *flag (e.g. set by a signal handler) is non-zero, requests in flight
 * stop within about a second with -ECANCELED. NULL detaches. */
void http_client_set_cancel(HttpClient *c, const volatile sig_atomic_t *flag);
/* Text of the last transport failure, "" when there was none. */
const char *http_client_last_error(const HttpClient *c);

/* Sends body (borrowed, may be NULL) as JSON to path ("/v1/..."). On success
 * *ret_status is the HTTP status and *ret_body the parsed response, or NULL when
 * the response was empty (204) or, for a non-2xx status, not JSON. A 2xx answer
 * that is not JSON is -EBADMSG. ret_body may be NULL to discard the response. */
int http_request_json(HttpClient *c, const char *method, const char *path, json_object *body,
                      long *ret_status, json_object **ret_body);

/* Like http_request_json(), but a 2xx response is handed to on_line line by line
 * as it arrives (a last line without "\n" included), and *ret_body is set to
 * NULL. A non-2xx response is collected whole and returned in *ret_body (parsed,
 * or NULL when not JSON) so the caller can show its "message". */
int http_request_stream(HttpClient *c, const char *method, const char *path, json_object *body,
                        HttpLineFn on_line, void *userdata, long *ret_status,
                        json_object **ret_body);

/* Called with a raw response body's bytes as they arrive; a negative return
 * aborts the transfer and becomes its result. */
typedef int (*HttpDataFn)(const char *data, size_t len, void *userdata);

/* Raw bytes both ways (files, archives). in_fd >= 0: the request body is its
 * contents, read to the end (Content-Type: application/octet-stream; sized
 * when it is a regular file, chunked otherwise). A 2xx response goes to
 * on_data as it arrives; with on_data NULL it is parsed as JSON into
 * *ret_body instead. A non-2xx response is returned as http_request_stream()
 * does. */
int http_request_raw(HttpClient *c, const char *method, const char *path, int in_fd,
                     HttpDataFn on_data, void *userdata, long *ret_status, json_object **ret_body);

/* Splits a byte stream into lines across arbitrary chunk boundaries; used by
 * http_request_stream() and usable on its own. Zero-initialise, or call
 * http_line_splitter_init(); release with http_line_splitter_done(). */
typedef struct HttpLineSplitter {
        StrBuf line;     /* the line so far */
        size_t max_line; /* 0: HTTP_LINE_MAX */
} HttpLineSplitter;

#define HTTP_LINE_MAX ((size_t) 64 * 1024 * 1024)

void http_line_splitter_init(HttpLineSplitter *s);
void http_line_splitter_done(HttpLineSplitter *s);
/* Calls fn for each line completed by data; -E2BIG when a line outgrows max_line. */
int http_line_splitter_feed(HttpLineSplitter *s, const char *data, size_t len, HttpLineFn fn,
                            void *userdata);
/* Calls fn for a trailing line that had no "\n", then empties the buffer. */
int http_line_splitter_finish(HttpLineSplitter *s, HttpLineFn fn, void *userdata);

/* A small HTTP/1.1 server on libmicrohttpd: a unix socket and/or a TCP port
 * with bearer-token auth, whole-body JSON requests, JSON responses and
 * streamed (chunked) responses. One thread per connection, so a handler and a
 * stream reader may block; shared state is the caller's to lock.
 *
 * TCP is for untrusted networks (docs/security.md): the token is checked as
 * soon as a request's headers are in, before any of its body is read; a
 * connection that has not authenticated yet gets header_timeout_s for that and
 * counts against small limits of its own (the oldest such connections are
 * dropped to make room), so idle or slow strangers cannot take the slots of
 * clients with the token. The unix socket has no token and no timeouts. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <json-c/json.h>

#include "sandpit/http-status.h"

typedef struct HttpServer HttpServer;
typedef struct HttpRequest HttpRequest;

typedef struct {
        const char *unix_path;  /* NULL: no unix socket; created 0660, stale one replaced */
        const char *tcp_listen; /* "ADDR:PORT" or NULL */
        const char *token;      /* required on TCP (Authorization: Bearer); NULL rejects all TCP */
        bool tcp_open; /* TCP needs no bearer token: the handler authenticates (the gateway) */
        /* TLS on the TCP listener (GnuTLS through libmicrohttpd): PEM files of
         * the certificate (chain) and its key, read once at start; both or
         * neither (-EINVAL). NULL: plain HTTP. */
        const char *tls_cert_file;
        const char *tls_key_file;
        size_t max_body; /* larger bodies get 413 */
        /* TCP limits (0: the HTTP_DEFAULT_* below). */
        unsigned header_timeout_s;  /* idle seconds before a connection authenticates */
        unsigned idle_timeout_s;    /* idle seconds of an authenticated one, between requests */
        unsigned max_unauth;        /* connections not authenticated yet, in all */
        unsigned max_unauth_per_ip; /* ... from one client address */
        /* Optional. Called once per request, when its headers are in and
         * its token is checked: a non-zero return spools the body into an
         * unlinked memory file of at most that many bytes (413 past it;
         * nothing is kept of a body whose Content-Length says so; see
         * http_request_body_fd()) instead of buffering it up to max_body.
         * For large uploads. */
        size_t (*spool_limit)(HttpRequest *req, void *userdata);
} HttpServerConfig;

#define HTTP_DEFAULT_HEADER_TIMEOUT    10
#define HTTP_DEFAULT_IDLE_TIMEOUT      300
#define HTTP_DEFAULT_MAX_UNAUTH        256
#define HTTP_DEFAULT_MAX_UNAUTH_PER_IP 32
#define HTTP_CONNECTION_LIMIT          4096 /* per listener */

/* The handler must answer with exactly one http_respond_*() call. */
typedef void (*HttpHandler)(HttpRequest *req, void *userdata);

int http_server_start(const HttpServerConfig *cfg, HttpHandler handler, void *userdata,
                      HttpServer **ret);
/* The TCP port actually bound (useful with port 0), or 0. */
unsigned http_server_tcp_port(const HttpServer *s);
/* Stops accepting, waits for connection threads to finish, frees. */
void http_server_free(HttpServer *s);

const char *http_request_method(const HttpRequest *req);
const char *http_request_path(const HttpRequest *req);
const char *http_request_query(const HttpRequest *req, const char *key);
/* Every value of a repeated query parameter; NULL-terminated strv, caller frees. */
int http_request_query_all(const HttpRequest *req, const char *key, char ***ret);
const char *http_request_body(const HttpRequest *req, size_t *ret_len);
/* Every request header, or every query argument, as a NULL-terminated strv
 * of alternating names and values (a valueless argument has ""); caller frees. */
int http_request_headers(const HttpRequest *req, char ***ret);
int http_request_args(const HttpRequest *req, char ***ret);
/* The spooled body (see spool_limit), positioned anywhere: seek or pread it.
 * -1 when the body was buffered or empty. Owned by the request. */
int http_request_body_fd(const HttpRequest *req);
/* Parses the body as a JSON object (an empty body is an error). On failure
 * answers 400 itself and returns a negative errno. */
int http_request_parse_json(HttpRequest *req, json_object **ret);

/* Takes ownership of body (may be NULL for no body). */
void http_respond_json(HttpRequest *req, unsigned status, json_object *body);
void http_respond_empty(HttpRequest *req, unsigned status);
/* {"code": status, "message": "..."} */
void http_respond_error(HttpRequest *req, unsigned status, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
/* The answer to a failure r (< 0): the status from lib's table
 * (sandpit/http-status.h), {"code": status, "reason": ..., "message": "..."}
 * with the reason only where the table has one (409s). */
void http_respond_errno(HttpRequest *req, int r, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

/* Any status with the given headers (alternating names and values, may be
 * NULL) and body; takes ownership of body (malloc'd, may be NULL). */
void http_respond_raw(HttpRequest *req, unsigned status, char *const *headers, char *body,
                      size_t len);

/* 101 Switching Protocols with the given headers ("Connection: Upgrade" is
 * added), then run() gets the client's socket for another protocol, on the
 * connection's own thread: it may block, must not close fd, and gets the bytes
 * the client sent early in extra. destroy() runs once, after run() or when the
 * upgrade never happened. */
typedef struct {
        void (*run)(void *cls, int fd, const char *extra, size_t extra_len);
        void (*destroy)(void *cls);
} HttpUpgradeOps;
void http_respond_upgrade(HttpRequest *req, char *const *headers, const HttpUpgradeOps *ops,
                          void *cls);
/* The first size bytes of fd (a regular file, read from offset 0) as the body;
 * takes ownership of fd, closed when the response is done with. */
void http_respond_fd(HttpRequest *req, unsigned status, const char *content_type, int fd,
                     uint64_t size);

/* A streamed response. read() fills buf and returns the byte count, 0 at the
 * end of the stream, or a negative errno to abort the connection. It may
 * block; poll on client_fd (POLLRDHUP) to notice a client that went away.
 * destroy() runs once when the response is done with. */
typedef struct {
        ssize_t (*read)(void *cls, int client_fd, char *buf, size_t max);
        void (*destroy)(void *cls);
} HttpStreamOps;

void http_respond_stream(HttpRequest *req, unsigned status, const char *content_type,
                         const HttpStreamOps *ops, void *cls);
/* The same with any headers (alternating names and values, may be NULL). */
void http_respond_stream_headers(HttpRequest *req, unsigned status, char *const *headers,
                                 const HttpStreamOps *ops, void *cls);

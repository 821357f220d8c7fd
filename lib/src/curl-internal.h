/* The libcurl core under both HTTP clients (http-client.c for the agent's API,
 * k8s-client.c for the Kubernetes API): one global init, the options every
 * request sets, the response-body callback and the one CURLcode -> errno map.
 * What differs stays in the clients: unix sockets and uploads (http-client),
 * TLS, the handle pool and the token (k8s-client). */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include <curl/curl.h>

#include "sandpit/util.h"

/* curl_global_init() once per process; -EIO when it failed. */
int curl_core_global_init(void);

typedef int (*CurlDataFn)(const char *data, size_t len, void *userdata);
typedef bool (*CurlStopFn)(const void *stop_data);

/* One transfer's state; lives across curl_easy_perform(). A 2xx body goes to
 * on_data when set; any other body (and a 2xx one without on_data) is collected
 * into body, at most max bytes. */
typedef struct {
        CURL *h;
        CurlDataFn on_data;
        void *userdata;
        size_t max;
        CurlStopFn stopped; /* NULL: never; else polled while the transfer runs */
        const void *stop_data;
        bool decided;   /* the first body bytes came and chose the mode */
        bool streaming; /* to on_data */
        StrBuf body;
        int error; /* why a callback stopped the transfer (< 0), else 0 */
} CurlTransfer;

/* What every request of ours sets. */
typedef struct {
        const char *url;
        const char *protocols;   /* "http,https" or "https" */
        const char *unix_socket; /* NULL: TCP */
        long connect_timeout_ms;
        long timeout_ms; /* 0: none */
        bool no_proxy;   /* an http_proxy variable must not apply */
        char *errbuf;    /* CURL_ERROR_SIZE bytes, cleared here */
} CurlRequest;

/* curl_easy_reset() (which keeps the connection cache), then the options above,
 * TCP keepalive, no signals, t's write and stop callbacks. */
int curl_core_setup(CURL *h, const CurlRequest *req, CurlTransfer *t);
/* The method and a JSON payload (may be NULL): POST/PUT/PATCH/DELETE/GET. */
int curl_core_set_method(CURL *h, const char *method, const char *payload);
/* A failed curl_easy_perform() as a negative errno (the text stays in the
 * request's errbuf): -ECANCELED (stopped), the OS errno of a failed connect
 * (-ECONNREFUSED, -ENOENT for a missing socket), -EHOSTUNREACH, -ETIMEDOUT,
 * -ENOMEM, -EKEYREJECTED (the server's certificate), -ENOKEY (ours),
 * -ECONNRESET (cut mid-transfer), else -EIO. A callback's own error (t->error)
 * wins over all of these. */
int curl_core_errno(const CurlTransfer *t, CURLcode cc);

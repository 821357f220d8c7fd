/* A stand-in for a node agent, shared by the tests of its clients
 * (test_agent_client.c, test_operator_agent_ops.c): lib's http-server on
 * 127.0.0.1 port 0 behind a bearer token that records each request (method,
 * path with its query, body, Authorization header) and answers what the test
 * set, a whole JSON body, NDJSON or nothing. One per test program. */
#pragma once

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sandpit/http-server.h"
#include "sandpit/util.h"
#include "test-support.h"

static struct {
        HttpServer *server;
        char url[64];         /* http://127.0.0.1:PORT */
        pthread_mutex_t lock; /* guards the rest: the server's threads write it */
        char request[512];    /* "METHOD path?query" */
        char auth[128];
        char body[4096];
        size_t body_len;
        unsigned status; /* the next answer */
        char answer[2048];
        bool ndjson;
} fake;

static inline void fake_agent_handle(HttpRequest *req, void *userdata)
{
        (void) userdata;
        size_t len = 0;
        const char *body = http_request_body(req, &len);
        char **args = NULL, **headers = NULL;
        assert_int_equal(http_request_args(req, &args), 0);
        assert_int_equal(http_request_headers(req, &headers), 0);
        pthread_mutex_lock(&fake.lock);
        int n = snprintf(fake.request, sizeof(fake.request), "%s %s", http_request_method(req),
                         http_request_path(req));
        for (size_t i = 0; args && args[i] && args[i + 1]; i += 2)
                n += snprintf(fake.request + n, sizeof(fake.request) - (size_t) n, "%c%s=%s",
                              i == 0 ? '?' : '&', args[i], args[i + 1]);
        fake.auth[0] = 0;
        for (size_t i = 0; headers && headers[i] && headers[i + 1]; i += 2)
                if (strcasecmp(headers[i], "Authorization") == 0)
                        snprintf(fake.auth, sizeof(fake.auth), "%s", headers[i + 1]);
        fake.body_len = len < sizeof(fake.body) ? len : sizeof(fake.body) - 1;
        if (body)
                memcpy(fake.body, body, fake.body_len);
        fake.body[fake.body_len] = 0;
        unsigned status = fake.status;
        char *answer = fake.answer[0] ? strdup(fake.answer) : NULL;
        bool ndjson = fake.ndjson;
        pthread_mutex_unlock(&fake.lock);
        strv_free(args);
        strv_free(headers);
        if (ndjson) {
                static const char *const hs[] = {"Content-Type", "application/x-ndjson", NULL};
                http_respond_raw(req, status, (char *const *) hs, answer,
                                 answer ? strlen(answer) : 0);
        } else if (answer) {
                http_respond_json(req, status, json_tokener_parse(answer));
                free(answer);
        } else {
                http_respond_empty(req, status);
        }
}

/* Starts the fake agent, requiring token; fake.url is where it listens. */
static inline int fake_agent_start(const char *token)
{
        pthread_mutex_init(&fake.lock, NULL);
        HttpServerConfig cfg = {.tcp_listen = "127.0.0.1:0", .token = token, .max_body = 65536};
        if (http_server_start(&cfg, fake_agent_handle, NULL, &fake.server) < 0)
                return -1;
        snprintf(fake.url, sizeof(fake.url), "http://127.0.0.1:%u",
                 http_server_tcp_port(fake.server));
        return 0;
}

static inline void fake_agent_stop(void)
{
        http_server_free(fake.server);
        pthread_mutex_destroy(&fake.lock);
}

/* The next answers: status with the JSON text json (NULL: no body); the
 * record of the last request is cleared. */
static inline void answer(unsigned status, const char *json)
{
        pthread_mutex_lock(&fake.lock);
        fake.status = status;
        fake.ndjson = false;
        snprintf(fake.answer, sizeof(fake.answer), "%s", json ? json : "");
        fake.request[0] = fake.body[0] = 0;
        pthread_mutex_unlock(&fake.lock);
}

/* The next answers: 200 with these NDJSON lines. */
static inline void answer_ndjson(const char *lines)
{
        answer(200, lines);
        pthread_mutex_lock(&fake.lock);
        fake.ndjson = true;
        pthread_mutex_unlock(&fake.lock);
}

/* The last request, as "METHOD path?query". */
static inline const char *request(void)
{
        static char buf[512];
        pthread_mutex_lock(&fake.lock);
        snprintf(buf, sizeof(buf), "%s", fake.request);
        pthread_mutex_unlock(&fake.lock);
        return buf;
}

/* The last request's body as text. */
static inline const char *body(void)
{
        static char buf[4096];
        pthread_mutex_lock(&fake.lock);
        memcpy(buf, fake.body, fake.body_len + 1);
        pthread_mutex_unlock(&fake.lock);
        return buf;
}

/* The last request's body parsed; the caller puts it. */
static inline json_object *request_body(void)
{
        return parse(body());
}

/* Streams a response whose producer pushes (an agent client call with a
 * callback) to lib's http-server, which pulls: the producer runs on a thread
 * of its own and writes into a pipe the response reads. The HTTP status waits
 * for the producer's first byte, so a call that fails before it has output
 * is answered as an error instead of a broken stream. */
#pragma once

#include <signal.h>
#include <stddef.h>

#include "sandpit/http-server.h"

typedef struct GwPump GwPump;

/* Runs on the pump's thread. Returns 0 or a negative errno. */
typedef int (*GwPumpFn)(GwPump *p, void *userdata);
/* Answers req when fn returned before writing anything (r its result). */
typedef void (*GwPumpFailFn)(HttpRequest *req, int r, void *userdata);

/* Writes all of data to the response; the first write starts it with status
 * 200. -EPIPE once the client has gone. */
int gw_pump_write(GwPump *p, const void *data, size_t len);
/* Set while the client is gone: hand it to agent_client_set_cancel(). The
 * producer may set it too (to stop its own call). */
volatile sig_atomic_t *gw_pump_cancel_flag(GwPump *p);

/* Answers req: fn's output as a stream with content_type, or fail()'s answer.
 * destroy(userdata) runs once, after fn has returned. */
void gw_pump_respond(HttpRequest *req, const char *content_type, GwPumpFn fn, GwPumpFailFn fail,
                     void (*destroy)(void *userdata), void *userdata);
/* The same, sending keepalive (a static string the format allows between
 * messages, such as an SSE comment) after every interval_ms without output,
 * so that clients and proxies do not time out a long silent call. Each
 * gw_pump_write() should then carry whole messages. */
void gw_pump_respond_keepalive(HttpRequest *req, const char *content_type, const char *keepalive,
                               int interval_ms, GwPumpFn fn, GwPumpFailFn fail,
                               void (*destroy)(void *userdata), void *userdata);

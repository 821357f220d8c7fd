/* MCP over stdio (mcp.h): one JSON-RPC message a line each way. tools/call
 * runs on a thread of its own, so pings and notifications/cancelled are read
 * while it runs; everything else is answered in turn. The session (and its
 * sandbox) ends at end of input or on a stop signal. */
#include "mcp-stdio.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sandpit/http-client.h"
#include "sandpit/json.h"
#include "sandpit/log.h"
#include "sandpit/macro.h"
#include "sandpit/util.h"

typedef struct {
        McpSession *s;
        int out_fd;
        pthread_mutex_t out_lock; /* one message a write */
        pthread_mutex_t lock;     /* guards running */
        pthread_cond_t idle;
        unsigned running;
} Stdio;

static int send_msg(json_object *msg, void *userdata)
{
        Stdio *st = userdata;
        const char *s = json_object_to_json_string_ext(msg, JSON_C_TO_STRING_PLAIN |
                                                                    JSON_C_TO_STRING_NOSLASHESCAPE);
        if (!s)
                return -ENOMEM;
        pthread_mutex_lock(&st->out_lock);
        int r = write_all(st->out_fd, s, strlen(s));
        if (r == 0)
                r = write_all(st->out_fd, "\n", 1);
        pthread_mutex_unlock(&st->out_lock);
        return r < 0 ? -EPIPE : 0;
}

static void handle(Stdio *st, json_object *msg)
{
        McpIo io = {.send = send_msg, .userdata = st};
        json_object *resp = NULL;
        if (mcp_session_handle(st->s, msg, &io, &resp) < 0)
                resp = mcp_error_new(json_field(msg, "id"), MCP_INTERNAL_ERROR, "out of memory");
        if (resp)
                (void) send_msg(resp, st);
        json_object_put(resp);
}

typedef struct {
        Stdio *st;
        json_object *msg;
} Job;

static void *job_thread(void *arg)
{
        Job *j = arg;
        handle(j->st, j->msg);
        json_object_put(j->msg);
        pthread_mutex_lock(&j->st->lock);
        j->st->running--;
        pthread_cond_broadcast(&j->st->idle);
        pthread_mutex_unlock(&j->st->lock);
        free(j);
        return NULL;
}

static int on_line(const char *line, size_t len, void *userdata)
{
        Stdio *st = userdata;
        while (len > 0 && strchr(" \t\r", line[len - 1]))
                len--;
        if (len == 0)
                return 0;
        json_object *msg = NULL, *perr = NULL;
        int r = mcp_parse(line, len, &msg, &perr);
        if (r == -EBADMSG) {
                (void) send_msg(perr, st);
                json_object_put(perr);
                return 0;
        }
        if (r < 0)
                return r;
        unsigned kind = mcp_message_kind(msg);
        if (!(kind & (MCP_MSG_TOOLS_CALL | MCP_MSG_BATCH))) {
                handle(st, msg);
                json_object_put(msg);
                return 0;
        }
        Job *j = malloc(sizeof(*j));
        if (!j) {
                json_object_put(msg);
                return -ENOMEM;
        }
        *j = (Job){.st = st, .msg = msg};
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        pthread_mutex_lock(&st->lock);
        st->running++;
        pthread_mutex_unlock(&st->lock);
        pthread_t t;
        r = -pthread_create(&t, &attr, job_thread, j);
        pthread_attr_destroy(&attr);
        if (r < 0) {
                pthread_mutex_lock(&st->lock);
                st->running--;
                pthread_mutex_unlock(&st->lock);
                /* Run it here instead: slower to cancel, still answered. */
                handle(st, msg);
                json_object_put(msg);
                free(j);
        }
        return 0;
}

int mcp_stdio_serve(const McpConfig *cfg, int in_fd, int out_fd, const volatile sig_atomic_t *stop,
                    const sigset_t *wait_mask)
{
        Stdio st = {.out_fd = out_fd};
        int r = mcp_session_new(cfg, &st.s);
        if (r < 0)
                return r;
        pthread_mutex_init(&st.out_lock, NULL);
        pthread_mutex_init(&st.lock, NULL);
        pthread_cond_init(&st.idle, NULL);
        HttpLineSplitter lines;
        http_line_splitter_init(&lines);
        char buf[65536];
        for (;;) {
                if (stop && *stop)
                        break;
                struct pollfd p = {.fd = in_fd, .events = POLLIN};
                int n = ppoll(&p, 1, NULL, wait_mask);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0) {
                        r = negative_errno();
                        break;
                }
                ssize_t got = read(in_fd, buf, sizeof(buf));
                if (got < 0 && (errno == EINTR || errno == EAGAIN))
                        continue;
                if (got <= 0) {
                        r = got < 0 ? negative_errno() : 0;
                        if (r == 0)
                                r = http_line_splitter_finish(&lines, on_line, &st);
                        break;
                }
                r = http_line_splitter_feed(&lines, buf, (size_t) got, on_line, &st);
                if (r < 0) {
                        log_error_errno(r, "mcp: cannot read a message from stdin");
                        break;
                }
        }
        /* The client is gone: stop its calls, wait for them, then end the
         * session (which deletes its sandbox). */
        mcp_session_cancel_all(st.s);
        pthread_mutex_lock(&st.lock);
        while (st.running > 0)
                pthread_cond_wait(&st.idle, &st.lock);
        pthread_mutex_unlock(&st.lock);
        mcp_session_free(st.s);
        http_line_splitter_done(&lines);
        pthread_mutex_destroy(&st.out_lock);
        pthread_mutex_destroy(&st.lock);
        pthread_cond_destroy(&st.idle);
        return r;
}

#include "exec.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "fsroot.h"
#include "init-client.h"
#include "initproto.h"
#include "sandpit/json.h"
#include "sandpit/log.h"
#include "sandpit/macro.h"
#include "sandpit/outbuf.h"
#include "sandpit/util.h"
#include "secrets.h"

/* --- the NDJSON stream --------------------------------------------------- */

struct ExecStream {
        int fd;
        Agent *agent;
        char *id; /* the sandbox's name: its cgroup's (Sandbox.name) */
        uint64_t oom_before;
        uint8_t *frame_buf;
        size_t frame_cap;
        OutBuf out;          /* pending NDJSON bytes */
        uint8_t carry[2][4]; /* incomplete UTF-8 tails of stdout, stderr */
        size_t carry_len[2];
        bool done;
};

static int emit(ExecStream *s, json_object *o)
{
        return outbuf_append_json(&s->out, o);
}

static json_object *event_new(const char *type)
{
        json_object *o = json_object_new_object();
        if (o)
                (void) json_object_object_add(o, "type", json_object_new_string(type));
        return o;
}

static int emit_data(ExecStream *s, int which, const uint8_t *data, size_t len, bool final)
{
        const char *type = which == 0 ? "stdout" : "stderr";
        size_t total = s->carry_len[which] + len;
        cleanup_free uint8_t *buf = malloc(total ? total : 1);
        if (!buf)
                return -ENOMEM;
        memcpy(buf, s->carry[which], s->carry_len[which]);
        if (len)
                memcpy(buf + s->carry_len[which], data, len);
        s->carry_len[which] = 0;
        bool valid;
        size_t prefix = utf8_complete_prefix(buf, total, &valid);
        if (valid && !final && total - prefix < sizeof(s->carry[which])) {
                memcpy(s->carry[which], buf + prefix, total - prefix);
                s->carry_len[which] = total - prefix;
                total = prefix;
        }
        if (total == 0)
                return 0;
        json_object *o = event_new(type);
        if (!o)
                return -ENOMEM;
        if (valid && prefix == total) {
                (void) json_object_object_add(
                        o, "data", json_object_new_string_len((const char *) buf, (int) total));
        } else {
                cleanup_free char *b64 = NULL;
                if (base64_encode(buf, total, &b64) < 0) {
                        json_object_put(o);
                        return -ENOMEM;
                }
                (void) json_object_object_add(o, "data_b64", json_object_new_string(b64));
        }
        return emit(s, o);
}

/* Terminal output is bytes, escape sequences and all: always base64, never split
 * or joined, so a client can write it to its terminal as it comes. */
static int emit_pty(ExecStream *s, const uint8_t *data, size_t len)
{
        cleanup_free char *b64 = NULL;
        if (len == 0)
                return 0;
        json_object *o = event_new("pty");
        if (!o || base64_encode(data, len, &b64) < 0) {
                json_object_put(o);
                return -ENOMEM;
        }
        (void) json_object_object_add(o, "data_b64", json_object_new_string(b64));
        return emit(s, o);
}

static int emit_exit(ExecStream *s, const IpFrame *f)
{
        for (int w = 0; w < 2; w++)
                if (s->carry_len[w] > 0)
                        (void) emit_data(s, w, NULL, 0, true);
        uint32_t pid = 0, signo = 0, timed_out = 0;
        int32_t code = -1;
        uint64_t dur = 0;
        (void) ip_get_u32(f, IP_TAG_PID, &pid);
        (void) ip_get_i32(f, IP_TAG_EXIT_CODE, &code);
        (void) ip_get_u32(f, IP_TAG_SIGNO, &signo);
        (void) ip_get_u32(f, IP_TAG_TIMED_OUT, &timed_out);
        (void) ip_get_u64(f, IP_TAG_DURATION_US, &dur);
        bool oom = false;
        /* Killed by SIGKILL, or a shell reporting that its child was (exit 137,
         * `sh -c 'big; exit $?'`): an OOM kill when the sandbox's count rose. */
        bool killed = signo == SIGKILL || (signo == 0 && code == 128 + SIGKILL);
        if (killed && !timed_out && s->agent) {
                CgStats st;
                if (cg_read_stats(s->agent->cg, s->id, &st) == 0 && st.oom_kills > s->oom_before)
                        oom = true;
        }
        json_object *o = event_new("exit");
        if (!o)
                return -ENOMEM;
        (void) json_object_object_add(o, "pid", json_object_new_int64(pid));
        (void) json_object_object_add(o, "exit_code", json_object_new_int(code));
        (void) json_object_object_add(o, "signal", json_object_new_int((int) signo));
        (void) json_object_object_add(o, "timed_out", json_object_new_boolean(timed_out != 0));
        (void) json_object_object_add(o, "oom_killed", json_object_new_boolean(oom));
        char ms[32];
        (void) snprintf(ms, sizeof(ms), "%.3f", (double) dur / 1000.0);
        (void) json_object_object_add(o, "duration_ms",
                                      json_object_new_double_s((double) dur / 1000.0, ms));
        return emit(s, o);
}

static int emit_error(ExecStream *s, const char *message)
{
        json_object *o = event_new("error");
        if (!o)
                return -ENOMEM;
        (void) json_object_object_add(o, "message", json_object_new_string(message));
        return emit(s, o);
}

/* Translates one init frame into zero or more events. */
static int translate(ExecStream *s, const IpFrame *f)
{
        const uint8_t *data;
        uint32_t len;
        switch (f->type) {
        case IP_MSG_STDOUT:
        case IP_MSG_STDERR:
                if (ip_get_bytes(f, IP_TAG_DATA, &data, &len) < 0)
                        return 0;
                return emit_data(s, f->type == IP_MSG_STDOUT ? 0 : 1, data, len, false);
        case IP_MSG_PTY:
                if (ip_get_bytes(f, IP_TAG_DATA, &data, &len) < 0)
                        return 0;
                return emit_pty(s, data, len);
        case IP_MSG_EXIT:
                s->done = true;
                return emit_exit(s, f);
        case IP_MSG_ERROR: {
                cleanup_free char *msg = NULL;
                (void) ip_get_strdup(f, IP_TAG_MESSAGE, &msg);
                s->done = true;
                return emit_error(s, msg ? msg : "error from the sandbox's init");
        }
        default:
                return 0; /* STARTED on attach, or anything newer than us */
        }
}

static int translate(ExecStream *s, const IpFrame *f);

int exec_stream_new(int fd, uint32_t start_pid, Agent *a, const char *cg_name, uint64_t oom_before,
                    ExecStream **ret)
{
        ExecStream *s = calloc(1, sizeof(*s));
        if (!s) {
                (void) close(fd);
                return -ENOMEM;
        }
        s->fd = fd;
        s->agent = a;
        s->oom_before = oom_before;
        s->id = strdup(cg_name);
        if (!s->id) {
                exec_stream_free(s);
                return -ENOMEM;
        }
        if (start_pid > 0) {
                json_object *o = event_new("start");
                if (o)
                        (void) json_object_object_add(o, "pid", json_object_new_int64(start_pid));
                if (emit(s, o) < 0) {
                        exec_stream_free(s);
                        return -ENOMEM;
                }
        }
        *ret = s;
        return 0;
}

ssize_t exec_stream_read(void *cls, int client_fd, char *buf, size_t max)
{
        ExecStream *s = cls;
        for (;;) {
                if (outbuf_pending(&s->out))
                        return (ssize_t) outbuf_take(&s->out, buf, max);
                if (s->done)
                        return 0;
                struct pollfd p[2] = {{.fd = s->fd, .events = POLLIN},
                                      {.fd = client_fd, .events = POLLRDHUP}};
                int n = poll(p, client_fd >= 0 ? 2 : 1, -1);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (client_fd >= 0 && (p[1].revents & (POLLRDHUP | POLLHUP | POLLERR)))
                        return -ECONNRESET; /* closing fd makes init kill a foreground process */
                if (!(p[0].revents & (POLLIN | POLLHUP | POLLERR)))
                        continue;
                IpFrame f;
                int r = ip_read_frame(s->fd, &s->frame_buf, &s->frame_cap, &f);
                if (r <= 0) {
                        s->done = true;
                        if (emit_error(s, "the sandbox stopped before the process exited") < 0)
                                return -ENOMEM;
                        continue;
                }
                if (translate(s, &f) < 0)
                        return -ENOMEM;
        }
}

void exec_stream_free(void *cls)
{
        ExecStream *s = cls;
        if (!s)
                return;
        if (s->fd >= 0)
                (void) close(s->fd);
        free(s->id);
        free(s->frame_buf);
        outbuf_done(&s->out);
        free(s);
}

int signal_from_string(const char *s)
{
        static const struct {
                const char *name;
                int signo;
        } names[] = {
                {"HUP", SIGHUP},   {"INT", SIGINT},   {"QUIT", SIGQUIT}, {"KILL", SIGKILL},
                {"USR1", SIGUSR1}, {"USR2", SIGUSR2}, {"TERM", SIGTERM}, {"STOP", SIGSTOP},
                {"CONT", SIGCONT}, {"ALRM", SIGALRM}, {"PIPE", SIGPIPE}, {"WINCH", SIGWINCH},
        };
        if (!s || !*s)
                return -EINVAL;
        if (s[0] >= '0' && s[0] <= '9') {
                char *end = NULL;
                long v = strtol(s, &end, 10);
                return *end || v < 1 || v > 64 ? -EINVAL : (int) v;
        }
        const char *n = strncmp(s, "SIG", 3) == 0 ? s + 3 : s;
        for (size_t i = 0; i < ARRAY_SIZE(names); i++)
                if (streq(n, names[i].name))
                        return names[i].signo;
        return -EINVAL;
}

int exec_attach(const char *socket_path, pid_t init_pid, uint32_t pid, Agent *a,
                const char *cg_name, uint64_t oom_before, ExecStream **ret, char *err,
                size_t errlen)
{
        /* The first frame tells an unknown pid (ERROR) from a stream, before any
         * response status is sent. */
        cleanup_close int fd = -1;
        cleanup_free uint8_t *body = NULL;
        size_t cap = 0;
        IpFrame f;
        int r = init_client_attach(socket_path, init_pid, pid, &fd, &body, &cap, &f, err, errlen);
        if (r < 0)
                return r;
        ExecStream *s = NULL;
        r = exec_stream_new(TAKE_FD(fd), 0, a, cg_name, oom_before, &s);
        if (r < 0)
                return r;
        if (translate(s, &f) < 0) {
                exec_stream_free(s);
                return -ENOMEM;
        }
        *ret = s;
        return 0;
}

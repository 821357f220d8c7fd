#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include <json-c/json.h>

#include "cli.h"
#include "sandpit/macro.h"
#include "sandpit/util.h"

void cli_exec_state_init(CliExecState *s, int out_fd, int err_fd)
{
        *s = (CliExecState){
                .out_fd = out_fd,
                .err_fd = err_fd,
                .pid = -1,
                .exit_status = CLI_EXIT_FAILURE,
        };
}

static int write_all(int fd, const void *data, size_t len)
{
        const char *p = data;
        while (len > 0) {
                ssize_t n = write(fd, p, len);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return negative_errno();
                }
                p += n;
                len -= (size_t) n;
        }
        return 0;
}

static bool event_bool(json_object *ev, const char *key)
{
        json_object *v = NULL;
        return json_object_object_get_ex(ev, key, &v) && json_object_get_boolean(v);
}

static int64_t event_int(json_object *ev, const char *key, int64_t fallback)
{
        json_object *v = NULL;
        if (!json_object_object_get_ex(ev, key, &v) || !v)
                return fallback;
        if (!json_object_is_type(v, json_type_int) && !json_object_is_type(v, json_type_double))
                return fallback;
        return json_object_get_int64(v);
}

int cli_exit_status_from_event(json_object *exit_event)
{
        if (event_bool(exit_event, "timed_out"))
                return CLI_EXIT_TIMEOUT;
        int64_t sig = event_int(exit_event, "signal", 0);
        if (sig > 0 && sig < 128)
                return 128 + (int) sig;
        int64_t code = event_int(exit_event, "exit_code", -1);
        if (code < 0)
                return CLI_EXIT_FAILURE;
        return (int) (code & 0xff);
}

static int write_output(CliExecState *s, json_object *ev, int fd)
{
        json_object *v = NULL;
        int r;

        if (json_object_object_get_ex(ev, "data", &v) && json_object_is_type(v, json_type_string)) {
                r = write_all(fd, json_object_get_string(v),
                              (size_t) json_object_get_string_len(v));
        } else if (json_object_object_get_ex(ev, "data_b64", &v) &&
                   json_object_is_type(v, json_type_string)) {
                cleanup_free uint8_t *bytes = NULL;
                size_t n = 0;
                r = base64_decode(json_object_get_string(v), &bytes, &n);
                if (r < 0)
                        return -EBADMSG;
                r = write_all(fd, bytes, n);
        } else {
                return -EBADMSG;
        }
        if (r < 0)
                s->write_failed = true;
        return r;
}

int cli_exec_on_line(const char *line, size_t len, void *userdata)
{
        CliExecState *s = userdata;
        json_tokener *tok = json_tokener_new();
        if (!tok)
                return -ENOMEM;
        json_object *ev = len <= INT32_MAX ? json_tokener_parse_ex(tok, line, (int) len) : NULL;
        bool ok = ev && json_tokener_get_error(tok) == json_tokener_success &&
                  json_object_is_type(ev, json_type_object);
        json_tokener_free(tok);
        if (!ok) {
                json_object_put(ev);
                return -EBADMSG;
        }

        json_object *type = NULL;
        const char *t = json_object_object_get_ex(ev, "type", &type) && type
                                ? json_object_get_string(type)
                                : "";
        int r = 0;
        if (streq(t, "stdout") || streq(t, "pty")) {
                r = write_output(s, ev, s->out_fd);
        } else if (streq(t, "stderr")) {
                r = write_output(s, ev, s->err_fd);
        } else if (streq(t, "start")) {
                s->pid = (long) event_int(ev, "pid", -1);
        } else if (streq(t, "exit")) {
                s->exited = true;
                s->exit_status = cli_exit_status_from_event(ev);
                s->oom_killed = event_bool(ev, "oom_killed");
        }
        /* Unknown event types are for newer clients: skip them. */
        json_object_put(ev);
        return r;
}

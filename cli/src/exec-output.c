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

int cli_exit_status_from_event(json_object *exit_event)
{
        if (json_boolean(exit_event, "timed_out", false))
                return CLI_EXIT_TIMEOUT;
        int64_t sig = json_int(exit_event, "signal", 0);
        if (sig > 0 && sig < 128)
                return 128 + (int) sig;
        int64_t code = json_int(exit_event, "exit_code", -1);
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

int cli_exec_on_event(json_object *ev, void *userdata)
{
        CliExecState *s = userdata;
        if (!json_object_is_type(ev, json_type_object))
                return -EBADMSG;

        const char *t = json_text(ev, "type") ?: "";
        int r = 0;
        if (streq(t, "stdout") || streq(t, "pty")) {
                r = write_output(s, ev, s->out_fd);
        } else if (streq(t, "stderr")) {
                r = write_output(s, ev, s->err_fd);
        } else if (streq(t, "start")) {
                s->pid = (long) json_int(ev, "pid", -1);
        } else if (streq(t, "exit")) {
                s->exited = true;
                s->exit_status = cli_exit_status_from_event(ev);
                s->oom_killed = json_boolean(ev, "oom_killed", false);
        }
        /* Unknown event types are for newer clients: skip them. */
        return r;
}

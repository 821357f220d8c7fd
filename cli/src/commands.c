#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "cli.h"
#include "sandpit/http-client.h"
#include "sandpit/macro.h"
#include "sandpit/util.h"

/* Finishes a message written into ctx->error: one line, and a negative errno
 * to return. A macro rather than a variadic function, for the format checks
 * without a va_list (clang-tidy 14 misreads va_start across translation units). */
static int error_done(CliContext *ctx, int r)
{
        cli_one_line(ctx->error, ctx->error, sizeof(ctx->error));
        return r < 0 ? r : -EIO;
}

#define set_error(ctx, r, ...) \
        ((void) snprintf((ctx)->error, sizeof((ctx)->error), __VA_ARGS__), error_done((ctx), (r)))

static int transport_error(CliContext *ctx, int r)
{
        const char *curl_text = http_client_last_error(ctx->http);

        if (r == -ECANCELED)
                return set_error(ctx, r, "interrupted");
        /* curl's text says more where it has no errno of its own. */
        bool curl_says_more = r == -EIO || r == -ECONNRESET || r == -EHOSTUNREACH ||
                              r == -EKEYREJECTED || r == -ENOKEY;
        if (curl_says_more && curl_text[0] != '\0')
                return set_error(ctx, r, "cannot reach the agent at %s: %s", ctx->url, curl_text);
        return set_error(ctx, r, "cannot reach the agent at %s: %s", ctx->url, strerror(-r));
}

static int api_error(CliContext *ctx, long status, json_object *body)
{
        int r = http_status_to_errno(status, NULL);
        const char *msg = json_str(body, "message");

        if (msg)
                return set_error(ctx, r, "%s", msg);
        return set_error(ctx, r, "the agent answered HTTP %ld", status);
}

/* One JSON request; on success *ret (may be NULL) gets the response body. */
static int api_call(CliContext *ctx, const char *method, const char *path, json_object *body,
                    json_object **ret)
{
        cleanup_json json_object *resp = NULL;
        long status = 0;

        int r = http_request_json(ctx->http, method, path, body, &status, &resp);
        if (r == -EBADMSG)
                return set_error(ctx, r, "the agent sent a response that is not JSON");
        if (r < 0)
                return transport_error(ctx, r);
        if (status < 200 || status >= 300)
                return api_error(ctx, status, resp);
        if (ret)
                *ret = TAKE_PTR(resp);
        return 0;
}

/* "/v1/sandboxes/ID" + suffix, with ID escaped. */
static int sandbox_path(const char *id, const char *suffix, char **ret)
{
        cleanup_free char *escaped = NULL;
        int r = cli_url_escape(id, &escaped);
        if (r < 0)
                return r;
        if (asprintf(ret, "/v1/sandboxes/%s%s", escaped, suffix) < 0)
                return -ENOMEM;
        return 0;
}

static int print_json(json_object *o)
{
        const char *s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY |
                                                                  JSON_C_TO_STRING_SPACED |
                                                                  JSON_C_TO_STRING_NOSLASHESCAPE);
        if (!s)
                return -ENOMEM;
        puts(s);
        return 0;
}

static int finish_output(CliContext *ctx)
{
        if (fflush(stdout) != 0 || ferror(stdout)) {
                int r = negative_errno();
                return set_error(ctx, r, "cannot write output: %s", strerror(-r));
        }
        return 0;
}

int cli_read_all(int fd, size_t max, char **ret, size_t *ret_len)
{
        cleanup_free char *buf = NULL;
        size_t len = 0, cap = 0;

        for (;;) {
                if (len + 1 >= cap) {
                        size_t ncap = cap ? cap * 2 : 65536;
                        char *p = realloc(buf, ncap);
                        if (!p)
                                return -ENOMEM;
                        buf = p;
                        cap = ncap;
                }
                size_t room = cap - len - 1;
                ssize_t n = read_full(fd, buf + len, room);
                if (n < 0)
                        return (int) n;
                len += (size_t) n;
                if (len > max)
                        return -EFBIG;
                if ((size_t) n < room)
                        break; /* end of file */
        }
        buf[len] = '\0';
        *ret = TAKE_PTR(buf);
        *ret_len = len;
        return 0;
}

static int add_stdin(CliContext *ctx, json_object *exec)
{
        cleanup_free char *data = NULL;
        cleanup_free char *b64 = NULL;
        size_t len = 0;

        int r = cli_read_all(STDIN_FILENO, CLI_STDIN_MAX, &data, &len);
        if (r == -EFBIG)
                return set_error(ctx, r, "stdin is larger than %zu MiB", CLI_STDIN_MAX >> 20);
        if (r < 0)
                return set_error(ctx, r, "cannot read stdin: %s", strerror(-r));
        r = base64_encode(data, len, &b64);
        if (r < 0)
                return set_error(ctx, r, "%s", strerror(-r));
        json_object *v = json_object_new_string(b64);
        if (!v || json_object_object_add(exec, "stdin_b64", v) < 0) {
                json_object_put(v);
                return set_error(ctx, -ENOMEM, "%s", strerror(ENOMEM));
        }
        return 0;
}

/* Streams an exec or attach answer to our stdout/stderr; returns the command's
 * exit status. */
static int stream_process(CliContext *ctx, const char *method, const char *path, json_object *body)
{
        cleanup_json json_object *err_body = NULL;
        CliExecState st;
        long status = 0;

        cli_exec_state_init(&st, STDOUT_FILENO, STDERR_FILENO);
        (void) fflush(stdout);

        int r = http_request_stream(ctx->http, method, path, body, cli_exec_on_line, &st, &status,
                                    &err_body);
        if (r < 0) {
                if (st.write_failed && r == -EPIPE)
                        return 128 + SIGPIPE; /* like any filter whose reader went away */
                if (st.write_failed)
                        return set_error(ctx, r, "cannot write output: %s", strerror(-r));
                if (r == -EBADMSG)
                        return set_error(ctx, r, "the agent sent an invalid event");
                return transport_error(ctx, r);
        }
        if (status < 200 || status >= 300)
                return api_error(ctx, status, err_body);
        if (!st.exited)
                return set_error(ctx, -EIO, "the output stream ended before the command exited");
        if (st.oom_killed)
                fputs("sandpit: command killed: out of memory\n", stderr);
        return st.exit_status;
}

static int cmd_create(CliContext *ctx, const CliArgs *a)
{
        cleanup_json json_object *sbx = NULL;

        int r = api_call(ctx, "POST", "/v1/sandboxes", a->create, &sbx);
        if (r < 0)
                return r;
        if (a->json)
                r = print_json(sbx);
        else
                puts(json_text(sbx, "id") ?: "");
        if (r < 0)
                return set_error(ctx, r, "%s", strerror(-r));
        return finish_output(ctx);
}

static int ls_path(const CliArgs *a, char **ret)
{
        size_t n = a->filters ? json_object_array_length(a->filters) : 0;
        size_t len = strlen("/v1/sandboxes") + 1;
        char **escaped = calloc(n + 1, sizeof(char *));
        char *path = NULL;
        int r = 0;

        if (!escaped)
                return -ENOMEM;
        for (size_t i = 0; i < n && r == 0; i++) {
                json_object *f = json_object_array_get_idx(a->filters, i);
                r = cli_url_escape(json_object_get_string(f), &escaped[i]);
                if (r == 0)
                        len += strlen("?label=") + strlen(escaped[i]);
        }
        if (r == 0)
                path = malloc(len);
        if (path) {
                size_t used = (size_t) snprintf(path, len, "/v1/sandboxes");
                for (size_t i = 0; i < n; i++)
                        used += (size_t) snprintf(path + used, len - used, "%clabel=%s",
                                                  i == 0 ? '?' : '&', escaped[i]);
                *ret = path;
        } else if (r == 0) {
                r = -ENOMEM;
        }
        strv_free(escaped);
        return r;
}

/* Cells for cli_print_table() in one allocation: a header row, then rows of
 * fixed-width strings. */
typedef struct {
        void *block;
        const char **cells;
        char *text;
        size_t n_cols;
        size_t n_rows; /* with the header */
        size_t width;
} Table;

static int table_new(const char *const *header, size_t n_cols, size_t n_rows, size_t width,
                     Table *ret)
{
        size_t n_cells = (n_rows + 1) * n_cols;
        void *block = calloc(1, n_cells * (sizeof(char *) + width));
        if (!block)
                return -ENOMEM;
        *ret = (Table){
                .block = block,
                .cells = block,
                .text = (char *) block + n_cells * sizeof(char *),
                .n_cols = n_cols,
                .n_rows = n_rows + 1,
                .width = width,
        };
        for (size_t i = 0; i < n_cells; i++)
                ret->cells[i] = i < n_cols ? header[i] : ret->text + i * width;
        return 0;
}

/* The buffer of a body cell; row 0 is the first row after the header. */
static char *table_cell(const Table *t, size_t row, size_t col)
{
        return t->text + ((row + 1) * t->n_cols + col) * t->width;
}

static int table_print(CliContext *ctx, Table *t)
{
        int r = cli_print_table(stdout, t->cells, t->n_cols, t->n_rows);
        free(t->block);
        t->block = NULL;
        if (r < 0)
                return set_error(ctx, r, "cannot write output: %s", strerror(-r));
        return finish_output(ctx);
}

static int cmd_ls(CliContext *ctx, const CliArgs *a)
{
        static const char *const header[] = {"ID", "TEMPLATE", "STATE", "CPU", "MEMORY", "EXPIRES"};
        cleanup_json json_object *resp = NULL;
        json_object *list = NULL;
        char *path = NULL;
        Table t;

        int r = ls_path(a, &path);
        if (r < 0)
                return set_error(ctx, r, "%s", strerror(-r));
        r = api_call(ctx, "GET", path, NULL, &resp);
        free(path);
        if (r < 0)
                return r;
        if (a->json) {
                r = print_json(resp);
                return r < 0 ? set_error(ctx, r, "%s", strerror(-r)) : finish_output(ctx);
        }
        if (!json_object_object_get_ex(resp, "sandboxes", &list) ||
            !json_object_is_type(list, json_type_array))
                return set_error(ctx, -EBADMSG, "the agent's answer has no \"sandboxes\" list");

        size_t n = json_object_array_length(list);
        const size_t w = 80;
        if (table_new(header, ARRAY_SIZE(header), n, w, &t) < 0)
                return set_error(ctx, -ENOMEM, "%s", strerror(ENOMEM));

        time_t now = time(NULL);
        for (size_t i = 0; i < n; i++) {
                json_object *s = json_object_array_get_idx(list, i);
                json_object *v = NULL;

                cli_one_line(json_text(s, "id") ?: "-", table_cell(&t, i, 0), w);
                cli_one_line(json_text(s, "template") ?: "-", table_cell(&t, i, 1), w);
                cli_one_line(json_text(s, "state") ?: "-", table_cell(&t, i, 2), w);
                if (json_object_object_get_ex(s, "cpu", &v) &&
                    (json_object_is_type(v, json_type_double) ||
                     json_object_is_type(v, json_type_int)))
                        (void) snprintf(table_cell(&t, i, 3), w, "%g", json_object_get_double(v));
                else
                        cli_one_line(json_text(s, "cpu") ?: "-", table_cell(&t, i, 3), w);
                if (json_object_object_get_ex(s, "memory", &v) &&
                    json_object_is_type(v, json_type_int))
                        cli_format_bytes(json_object_get_int64(v), table_cell(&t, i, 4), w);
                else
                        cli_one_line(json_text(s, "memory") ?: "-", table_cell(&t, i, 4), w);
                cli_format_remaining(json_text(s, "expires_at"), now, table_cell(&t, i, 5), w);
        }
        return table_print(ctx, &t);
}

static int cmd_get(CliContext *ctx, const CliArgs *a)
{
        cleanup_json json_object *sbx = NULL;
        cleanup_free char *path = NULL;

        int r = sandbox_path(a->args[0], "", &path);
        if (r < 0)
                return set_error(ctx, r, "%s", strerror(-r));
        r = api_call(ctx, "GET", path, NULL, &sbx);
        if (r < 0)
                return r;
        r = print_json(sbx);
        return r < 0 ? set_error(ctx, r, "%s", strerror(-r)) : finish_output(ctx);
}

static int cmd_exec(CliContext *ctx, const CliArgs *a)
{
        cleanup_free char *path = NULL;
        json_object *body = a->exec; /* borrowed; stdin_b64 is added to it */

        int r = sandbox_path(a->args[0], "/exec", &path);
        if (r < 0)
                return set_error(ctx, r, "%s", strerror(-r));
        if (a->tty && isatty(STDIN_FILENO))
                return cli_exec_tty(ctx, a, path);
        if (a->tty) /* as kubectl: say so, and go on without a terminal */
                fputs("sandpit: Unable to use a TTY - input is not a terminal\n", stderr);
        if (a->read_stdin) {
                r = add_stdin(ctx, body);
                if (r < 0)
                        return r;
        }

        if (a->background) {
                cleanup_json json_object *resp = NULL;
                json_object *pid = NULL;
                r = api_call(ctx, "POST", path, body, &resp);
                if (r < 0)
                        return r;
                if (!json_object_object_get_ex(resp, "pid", &pid))
                        return set_error(ctx, -EBADMSG, "the agent's answer has no pid");
                printf("%" PRId64 "\n", json_object_get_int64(pid));
                return finish_output(ctx);
        }
        return stream_process(ctx, "POST", path, body);
}

static int cmd_attach(CliContext *ctx, const CliArgs *a)
{
        cleanup_free char *path = NULL;
        cleanup_free char *suffix = NULL;

        if (asprintf(&suffix, "/processes/%s/stream", a->args[1]) < 0) {
                suffix = NULL;
                return set_error(ctx, -ENOMEM, "%s", strerror(ENOMEM));
        }
        int r = sandbox_path(a->args[0], suffix, &path);
        if (r < 0)
                return set_error(ctx, r, "%s", strerror(-r));
        return stream_process(ctx, "GET", path, NULL);
}

static volatile sig_atomic_t run_interrupted;
static volatile sig_atomic_t run_signal;

static void run_on_signal(int sig)
{
        /* The first signals only ask for an orderly stop (delete the sandbox);
         * the third one kills sandpit at once, for an agent that hangs. */
        if (run_interrupted >= 2) {
                (void) signal(sig, SIG_DFL);
                (void) raise(sig);
                return;
        }
        if (run_interrupted == 0)
                run_signal = sig;
        run_interrupted++;
}

static int cmd_run(CliContext *ctx, const CliArgs *a)
{
        cleanup_json json_object *sbx = NULL;
        cleanup_free char *exec_path = NULL;
        cleanup_free char *path = NULL;
        int r;

        if (a->read_stdin) {
                r = add_stdin(ctx, a->exec);
                if (r < 0)
                        return r;
        }

        struct sigaction sa = {.sa_handler = run_on_signal};
        (void) sigemptyset(&sa.sa_mask);
        /* No SA_RESTART: a blocking call should notice the signal. */
        const int signals[] = {SIGINT, SIGTERM, SIGHUP};
        for (size_t i = 0; i < ARRAY_SIZE(signals); i++)
                (void) sigaction(signals[i], &sa, NULL);

        /* Not cancellable: an aborted create could leave a sandbox we know no id of. */
        r = api_call(ctx, "POST", "/v1/sandboxes", a->create, &sbx);
        if (r < 0)
                return r;
        const char *id = json_text(sbx, "id"); /* sbx owns it */
        if (!id)
                return set_error(ctx, -EBADMSG, "the agent's answer has no sandbox id");

        r = sandbox_path(id, "", &path);
        if (r < 0)
                return set_error(ctx, r, "%s", strerror(-r));
        r = sandbox_path(id, "/exec", &exec_path);
        if (r < 0)
                return set_error(ctx, r, "%s", strerror(-r));

        int status = 0;
        if (!run_interrupted) {
                http_client_set_cancel(ctx->http, &run_interrupted);
                status = stream_process(ctx, "POST", exec_path, a->exec);
                http_client_set_cancel(ctx->http, NULL);
        }

        /* The command's failure is in ctx->error; keep it while deleting. */
        CliContext del = {.http = ctx->http, .url = ctx->url};
        r = api_call(&del, "DELETE", path, NULL, NULL);
        if (r < 0 && r != -ENOENT)
                fprintf(stderr, "sandpit: cannot delete sandbox %s: %s\n", id, del.error);

        if (run_interrupted)
                return 128 + run_signal;
        return status;
}

static int cmd_kill(CliContext *ctx, const CliArgs *a)
{
        int status = 0;

        for (int i = 0; i < a->n_args; i++) {
                cleanup_free char *path = NULL;
                int r = sandbox_path(a->args[i], "", &path);
                if (r >= 0)
                        r = api_call(ctx, "DELETE", path, NULL, NULL);
                else
                        (void) set_error(ctx, r, "%s", strerror(-r));
                if (r < 0) {
                        fprintf(stderr, "sandpit: %s\n", ctx->error);
                        status = CLI_EXIT_FAILURE;
                }
        }
        return status;
}

static int cmd_timeout(CliContext *ctx, const CliArgs *a)
{
        cleanup_json json_object *sbx = NULL;
        cleanup_free char *path = NULL;

        int r = sandbox_path(a->args[0], "/timeout", &path);
        if (r < 0)
                return set_error(ctx, r, "%s", strerror(-r));
        r = api_call(ctx, "POST", path, a->body, &sbx);
        if (r < 0)
                return r;
        if (a->json) {
                r = print_json(sbx);
                if (r < 0)
                        return set_error(ctx, r, "%s", strerror(-r));
        } else {
                puts(json_text(sbx, "expires_at") ?: "");
        }
        return finish_output(ctx);
}

static void format_process_status(json_object *p, char *buf, size_t len)
{
        json_object *v = NULL;

        if (json_object_object_get_ex(p, "running", &v) && json_object_get_boolean(v)) {
                (void) snprintf(buf, len, "running");
                return;
        }
        if (json_object_object_get_ex(p, "signal", &v) && json_object_get_int(v) > 0) {
                int sig = json_object_get_int(v);
                const char *name = sigabbrev_np(sig);
                if (name)
                        (void) snprintf(buf, len, "killed (SIG%s)", name);
                else
                        (void) snprintf(buf, len, "killed (signal %d)", sig);
                return;
        }
        if (json_object_object_get_ex(p, "exit_code", &v) && v)
                (void) snprintf(buf, len, "exited (%d)", json_object_get_int(v));
        else
                (void) snprintf(buf, len, "exited");
}

static void format_process_cmd(json_object *p, char *buf, size_t len)
{
        json_object *cmd = NULL;
        size_t used = 0;

        buf[0] = '\0';
        if (!json_object_object_get_ex(p, "cmd", &cmd) ||
            !json_object_is_type(cmd, json_type_array)) {
                cli_one_line(json_text(p, "shell") ?: "", buf, len);
                return;
        }
        for (size_t i = 0; i < json_object_array_length(cmd) && used + 1 < len; i++) {
                int n = snprintf(buf + used, len - used, "%s%s", i ? " " : "",
                                 json_object_get_string(json_object_array_get_idx(cmd, i)));
                if (n < 0)
                        break;
                used += (size_t) n;
        }
        cli_one_line(buf, buf, len);
}

static int cmd_ps(CliContext *ctx, const CliArgs *a)
{
        cleanup_json json_object *resp = NULL;
        cleanup_free char *path = NULL;
        json_object *list = NULL;

        int r = sandbox_path(a->args[0], "/processes", &path);
        if (r < 0)
                return set_error(ctx, r, "%s", strerror(-r));
        r = api_call(ctx, "GET", path, NULL, &resp);
        if (r < 0)
                return r;
        if (a->json) {
                r = print_json(resp);
                return r < 0 ? set_error(ctx, r, "%s", strerror(-r)) : finish_output(ctx);
        }
        if (!json_object_object_get_ex(resp, "processes", &list) ||
            !json_object_is_type(list, json_type_array))
                return set_error(ctx, -EBADMSG, "the agent's answer has no \"processes\" list");

        static const char *const header[] = {"PID", "STATUS", "TAG", "CMD"};
        size_t n = json_object_array_length(list);
        const size_t w = 256;
        Table t;
        if (table_new(header, ARRAY_SIZE(header), n, w, &t) < 0)
                return set_error(ctx, -ENOMEM, "%s", strerror(ENOMEM));

        for (size_t i = 0; i < n; i++) {
                json_object *p = json_object_array_get_idx(list, i);
                cli_one_line(json_text(p, "pid") ?: "-", table_cell(&t, i, 0), w);
                format_process_status(p, table_cell(&t, i, 1), w);
                cli_one_line(json_text(p, "tag") ?: "", table_cell(&t, i, 2), w);
                format_process_cmd(p, table_cell(&t, i, 3), w);
        }
        return table_print(ctx, &t);
}

static int cmd_signal(CliContext *ctx, const CliArgs *a)
{
        cleanup_free char *path = NULL;
        cleanup_free char *suffix = NULL;

        if (asprintf(&suffix, "/processes/%s/signal", a->args[1]) < 0) {
                suffix = NULL;
                return set_error(ctx, -ENOMEM, "%s", strerror(ENOMEM));
        }
        int r = sandbox_path(a->args[0], suffix, &path);
        if (r < 0)
                return set_error(ctx, r, "%s", strerror(-r));
        return api_call(ctx, "POST", path, a->body, NULL);
}

static int cmd_code(CliContext *ctx, const CliArgs *a)
{
        cleanup_free char *path = NULL;
        json_object *body = a->exec; /* borrowed; code from stdin is added to it */

        int r = sandbox_path(a->args[0], "/code", &path);
        if (r < 0)
                return set_error(ctx, r, "%s", strerror(-r));
        if (a->read_stdin) {
                cleanup_free char *code = NULL;
                size_t len = 0;
                r = cli_read_all(STDIN_FILENO, CLI_STDIN_MAX, &code, &len);
                if (r < 0)
                        return set_error(ctx, r, "cannot read the code from stdin: %s",
                                         strerror(-r));
                json_object *v = json_object_new_string_len(code, (int) len);
                if (!v || json_object_object_add(body, "code", v) < 0) {
                        json_object_put(v);
                        return set_error(ctx, -ENOMEM, "%s", strerror(ENOMEM));
                }
        }
        if (a->save_images && mkdir(a->save_images, 0755) < 0 && errno != EEXIST)
                return set_error(ctx, negative_errno(), "cannot create %s: %m", a->save_images);

        CliCodeState st;
        cleanup_json json_object *err_body = NULL;
        long status = 0;
        cli_code_state_init(&st, STDOUT_FILENO, STDERR_FILENO, a->save_images);
        (void) fflush(stdout);
        r = http_request_stream(ctx->http, "POST", path, body, cli_code_on_line, &st, &status,
                                &err_body);
        if (r < 0) {
                bool write_failed = st.write_failed;
                cli_code_state_done(&st);
                if (write_failed)
                        return set_error(ctx, r, "cannot write output: %s", strerror(-r));
                if (r == -EBADMSG)
                        return set_error(ctx, r, "the agent sent an invalid event");
                return transport_error(ctx, r);
        }
        if (status < 200 || status >= 300) {
                cli_code_state_done(&st);
                return api_error(ctx, status, err_body);
        }
        if (!st.ended) {
                cli_code_state_done(&st);
                return set_error(ctx, -EIO, "the stream ended before the run did");
        }
        r = cli_code_finish(&st);
        cli_code_state_done(&st);
        return r;
}

/* --- metrics, pause, resume ---------------------------------------------- */

static void print_metrics_sample(json_object *m)
{
        char used[32], limit[32], peak[32], dused[32], dtotal[32], left[32];
        cli_format_bytes(json_int(m, "memory_used", 0), used, sizeof(used));
        cli_format_bytes(json_int(m, "memory_limit", 0), limit, sizeof(limit));
        cli_format_bytes(json_int(m, "memory_peak", 0), peak, sizeof(peak));
        cli_format_bytes(json_int(m, "disk_used", 0), dused, sizeof(dused));
        cli_format_bytes(json_int(m, "disk_total", 0), dtotal, sizeof(dtotal));
        json_object *v = NULL;
        double pct =
                json_object_object_get_ex(m, "cpu_used_pct", &v) ? json_object_get_double(v) : 0;
        double cores =
                json_object_object_get_ex(m, "cpu_used_cores", &v) ? json_object_get_double(v) : 0;
        double count =
                json_object_object_get_ex(m, "cpu_count", &v) ? json_object_get_double(v) : 0;
        cli_format_remaining(json_text(m, "expires_at"), time(NULL), left, sizeof(left));
        printf("ID         %s\n"
               "STATE      %s\n"
               "CPU        %.1f%% of %g cores (%.2f cores busy)\n"
               "MEMORY     %s / %s (peak %s)\n"
               "DISK       %s / %s\n"
               "PIDS       %" PRId64 " / %" PRId64 "\n"
               "OOM KILLS  %" PRId64 "\n"
               "CREATED    %s\n"
               "STARTED    %s\n"
               "EXPIRES    %s (%s)\n",
               json_text(m, "id") ?: "-", json_text(m, "state") ?: "-", pct, count, cores, used,
               limit, peak, dused, dtotal, json_int(m, "pids", 0), json_int(m, "pids_limit", 0),
               json_int(m, "oom_kills", 0), json_text(m, "created_at") ?: "-",
               json_text(m, "started_at") ?: "-", json_text(m, "expires_at") ?: "-", left);
        if (json_text(m, "paused_at"))
                printf("PAUSED     %s\n", json_text(m, "paused_at"));
}

static int print_metrics_window(CliContext *ctx, json_object *resp)
{
        static const char *const header[] = {"TIME", "CPU%", "MEMORY", "DISK", "PIDS"};
        json_object *list = NULL;
        if (!json_object_object_get_ex(resp, "metrics", &list) ||
            !json_object_is_type(list, json_type_array))
                return set_error(ctx, -EBADMSG, "the agent's answer has no \"metrics\" list");
        size_t n = json_object_array_length(list);
        const size_t w = 40;
        Table t;
        if (table_new(header, ARRAY_SIZE(header), n, w, &t) < 0)
                return set_error(ctx, -ENOMEM, "%s", strerror(ENOMEM));
        for (size_t i = 0; i < n; i++) {
                json_object *m = json_object_array_get_idx(list, i), *v = NULL;
                cli_one_line(json_text(m, "timestamp") ?: "-", table_cell(&t, i, 0), w);
                (void) snprintf(table_cell(&t, i, 1), w, "%.1f",
                                json_object_object_get_ex(m, "cpu_used_pct", &v)
                                        ? json_object_get_double(v)
                                        : 0);
                cli_format_bytes(json_int(m, "memory_used", 0), table_cell(&t, i, 2), w);
                cli_format_bytes(json_int(m, "disk_used", 0), table_cell(&t, i, 3), w);
                (void) snprintf(table_cell(&t, i, 4), w, "%" PRId64, json_int(m, "pids", 0));
        }
        return table_print(ctx, &t);
}

static int cmd_metrics(CliContext *ctx, const CliArgs *a)
{
        cleanup_json json_object *resp = NULL;
        cleanup_free char *path = NULL;
        char query[64] = "";
        bool window = json_object_object_length(a->body) > 0;
        if (window)
                (void) snprintf(query, sizeof(query), "/metrics?start=%" PRId64 "&end=%" PRId64,
                                json_int(a->body, "start", 0),
                                json_object_object_get_ex(a->body, "end", NULL)
                                        ? json_int(a->body, "end", 0)
                                        : (int64_t) 253402300799);
        int r = sandbox_path(a->args[0], window ? query : "/metrics", &path);
        if (r < 0)
                return set_error(ctx, r, "%s", strerror(-r));
        r = api_call(ctx, "GET", path, NULL, &resp);
        if (r < 0)
                return r;
        if (a->json) {
                r = print_json(resp);
                return r < 0 ? set_error(ctx, r, "%s", strerror(-r)) : finish_output(ctx);
        }
        if (window)
                return print_metrics_window(ctx, resp);
        print_metrics_sample(resp);
        return finish_output(ctx);
}

static int cmd_pause_resume(CliContext *ctx, const CliArgs *a, const char *verb)
{
        cleanup_json json_object *sbx = NULL;
        cleanup_free char *path = NULL;
        int r = sandbox_path(a->args[0], verb, &path);
        if (r < 0)
                return set_error(ctx, r, "%s", strerror(-r));
        r = api_call(ctx, "POST", path, a->body, &sbx);
        if (r < 0)
                return r;
        if (a->json) {
                r = print_json(sbx);
                if (r < 0)
                        return set_error(ctx, r, "%s", strerror(-r));
        } else {
                puts(json_text(sbx, "state") ?: "");
        }
        return finish_output(ctx);
}

static int cmd_pause(CliContext *ctx, const CliArgs *a)
{
        return cmd_pause_resume(ctx, a, "/pause");
}

static int cmd_resume(CliContext *ctx, const CliArgs *a)
{
        return cmd_pause_resume(ctx, a, "/resume");
}

/* One handler a command (args.c has the names, usages and options). */
static int (*const command_handlers[CLI_CMD_COUNT])(CliContext *ctx, const CliArgs *a) = {
        [CLI_CMD_CREATE] = cmd_create,
        [CLI_CMD_LS] = cmd_ls,
        [CLI_CMD_GET] = cmd_get,
        [CLI_CMD_EXEC] = cmd_exec,
        [CLI_CMD_RUN] = cmd_run,
        [CLI_CMD_KILL] = cmd_kill,
        [CLI_CMD_TIMEOUT] = cmd_timeout,
        [CLI_CMD_PS] = cmd_ps,
        [CLI_CMD_SIGNAL] = cmd_signal,
        [CLI_CMD_CODE] = cmd_code,
        [CLI_CMD_ATTACH] = cmd_attach,
        [CLI_CMD_CP] = cli_cmd_cp,
        [CLI_CMD_FS] = cli_cmd_fs,
        [CLI_CMD_METRICS] = cmd_metrics,
        [CLI_CMD_PAUSE] = cmd_pause,
        [CLI_CMD_RESUME] = cmd_resume,
        [CLI_CMD_TEMPLATE] = cli_cmd_template,
};

int cli_run(CliContext *ctx, const CliArgs *a)
{
        if ((unsigned) a->command >= CLI_CMD_COUNT || !command_handlers[a->command])
                return set_error(ctx, -EINVAL, "unknown command");
        return command_handlers[a->command](ctx, a);
}

/* For the cp and fs commands (files.c). */
int cli_api_call(CliContext *ctx, const char *method, const char *path, json_object *body,
                 json_object **ret)
{
        return api_call(ctx, method, path, body, ret);
}

int cli_api_error(CliContext *ctx, long status, json_object *body)
{
        return api_error(ctx, status, body);
}

int cli_transport_error(CliContext *ctx, int r)
{
        return transport_error(ctx, r);
}

int cli_sandbox_path(const char *id, const char *suffix, char **ret)
{
        return sandbox_path(id, suffix, ret);
}

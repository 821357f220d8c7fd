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
#include "sandpit/macro.h"
#include "sandpit/util.h"

int cli_error_done(CliContext *ctx, int r)
{
        cli_one_line(ctx->error, ctx->error, sizeof(ctx->error));
        return r < 0 ? r : -EIO;
}

int cli_agent_error(CliContext *ctx, int r)
{
        const AgentClientError *e = agent_client_error(ctx->agent);

        if (r == -ECANCELED)
                return cli_set_error(ctx, r, "interrupted");
        if (r == -EBADMSG)
                return cli_set_error(ctx, r, "the agent sent an answer sandpit cannot read");
        if (e->status)
                return cli_set_error(ctx, r, "%s", e->message[0] ? e->message : strerror(-r));
        /* curl's text says more where it has no errno of its own. */
        bool curl_says_more = r == -EIO || r == -ECONNRESET || r == -EHOSTUNREACH ||
                              r == -EKEYREJECTED || r == -ENOKEY;
        if (curl_says_more && e->message[0] != '\0')
                return cli_set_error(ctx, r, "cannot reach the agent at %s: %s", ctx->url,
                                     e->message);
        return cli_set_error(ctx, r, "cannot reach the agent at %s: %s", ctx->url, strerror(-r));
}

int cli_finish_output(CliContext *ctx)
{
        if (fflush(stdout) != 0 || ferror(stdout)) {
                int r = negative_errno();
                return cli_set_error(ctx, r, "cannot write output: %s", strerror(-r));
        }
        return 0;
}

int cli_print_json(CliContext *ctx, json_object *o)
{
        const char *s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY |
                                                                  JSON_C_TO_STRING_SPACED |
                                                                  JSON_C_TO_STRING_NOSLASHESCAPE);
        if (!s)
                return cli_set_error(ctx, -ENOMEM, "%s", strerror(ENOMEM));
        puts(s);
        return cli_finish_output(ctx);
}

int cli_print_json_member(CliContext *ctx, const char *name, json_object *value)
{
        cleanup_json json_object *o = json_object_new_object();
        if (!o || json_object_object_add(o, name, value) < 0) {
                json_object_put(value);
                return cli_set_error(ctx, -ENOMEM, "%s", strerror(ENOMEM));
        }
        return cli_print_json(ctx, o);
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
                return cli_set_error(ctx, r, "stdin is larger than %zu MiB", CLI_STDIN_MAX >> 20);
        if (r < 0)
                return cli_set_error(ctx, r, "cannot read stdin: %s", strerror(-r));
        r = base64_encode(data, len, &b64);
        if (r < 0)
                return cli_set_error(ctx, r, "%s", strerror(-r));
        json_object *v = json_object_new_string(b64);
        if (!v || json_object_object_add(exec, "stdin_b64", v) < 0) {
                json_object_put(v);
                return cli_set_error(ctx, -ENOMEM, "%s", strerror(ENOMEM));
        }
        return 0;
}

/* Streams an exec (pid 0) or attach answer to our stdout/stderr; returns the
 * command's exit status. */
static int stream_process(CliContext *ctx, const char *id, int pid, json_object *body)
{
        CliExecState st;

        cli_exec_state_init(&st, STDOUT_FILENO, STDERR_FILENO);
        (void) fflush(stdout);

        int r = pid ? agent_client_process_stream(ctx->agent, id, pid, cli_exec_on_event, &st)
                    : agent_client_exec(ctx->agent, id, body, cli_exec_on_event, &st);
        if (r < 0) {
                if (st.write_failed && r == -EPIPE)
                        return 128 + SIGPIPE; /* like any filter whose reader went away */
                if (st.write_failed)
                        return cli_set_error(ctx, r, "cannot write output: %s", strerror(-r));
                if (r == -EBADMSG)
                        return cli_set_error(ctx, r, "the agent sent an invalid event");
                return cli_agent_error(ctx, r);
        }
        if (!st.exited)
                return cli_set_error(ctx, -EIO,
                                     "the output stream ended before the command exited");
        if (st.oom_killed)
                fputs("sandpit: command killed: out of memory\n", stderr);
        return st.exit_status;
}

static int cmd_create(CliContext *ctx, const CliArgs *a)
{
        cleanup_json json_object *sbx = NULL;

        int r = agent_client_create(ctx->agent, a->create, &sbx);
        if (r < 0)
                return cli_agent_error(ctx, r);
        if (a->json)
                return cli_print_json(ctx, sbx);
        puts(json_text(sbx, "id") ?: "");
        return cli_finish_output(ctx);
}

/* a's label filters as a NULL-terminated list borrowed from a->filters. */
static const char **label_filters(const CliArgs *a)
{
        size_t n = a->filters ? json_object_array_length(a->filters) : 0;
        const char **labels = calloc(n + 1, sizeof(char *));
        for (size_t i = 0; labels && i < n; i++)
                labels[i] = json_object_get_string(json_object_array_get_idx(a->filters, i));
        return labels;
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
                return cli_set_error(ctx, r, "cannot write output: %s", strerror(-r));
        return cli_finish_output(ctx);
}

static int cmd_ls(CliContext *ctx, const CliArgs *a)
{
        static const char *const header[] = {"ID", "TEMPLATE", "STATE", "CPU", "MEMORY", "EXPIRES"};
        cleanup_json json_object *list = NULL;
        Table t;

        const char **labels = label_filters(a);
        if (!labels)
                return cli_set_error(ctx, -ENOMEM, "%s", strerror(ENOMEM));
        int r = agent_client_list(ctx->agent, labels, &list);
        free(labels);
        if (r < 0)
                return cli_agent_error(ctx, r);
        if (a->json)
                return cli_print_json_member(ctx, "sandboxes", TAKE_PTR(list));

        size_t n = json_object_array_length(list);
        const size_t w = 80;
        if (table_new(header, ARRAY_SIZE(header), n, w, &t) < 0)
                return cli_set_error(ctx, -ENOMEM, "%s", strerror(ENOMEM));

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

        int r = agent_client_get(ctx->agent, a->args[0], &sbx);
        return r < 0 ? cli_agent_error(ctx, r) : cli_print_json(ctx, sbx);
}

static int cmd_exec(CliContext *ctx, const CliArgs *a)
{
        json_object *body = a->exec; /* borrowed; stdin_b64 is added to it */
        int r;

        if (a->tty && isatty(STDIN_FILENO))
                return cli_exec_tty(ctx, a);
        if (a->tty) /* as kubectl: say so, and go on without a terminal */
                fputs("sandpit: Unable to use a TTY - input is not a terminal\n", stderr);
        if (a->read_stdin) {
                r = add_stdin(ctx, body);
                if (r < 0)
                        return r;
        }

        if (a->background) {
                int pid = 0;
                r = agent_client_exec_background(ctx->agent, a->args[0], body, &pid);
                if (r < 0)
                        return cli_agent_error(ctx, r);
                printf("%d\n", pid);
                return cli_finish_output(ctx);
        }
        return stream_process(ctx, a->args[0], 0, body);
}

static int cmd_attach(CliContext *ctx, const CliArgs *a)
{
        return stream_process(ctx, a->args[0], a->pid, NULL);
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
        r = agent_client_create(ctx->agent, a->create, &sbx);
        if (r < 0)
                return cli_agent_error(ctx, r);
        const char *id = json_text(sbx, "id"); /* sbx owns it */
        if (!id)
                return cli_set_error(ctx, -EBADMSG, "the agent's answer has no sandbox id");

        int status = 0;
        if (!run_interrupted) {
                agent_client_set_cancel(ctx->agent, &run_interrupted);
                status = stream_process(ctx, id, 0, a->exec);
                agent_client_set_cancel(ctx->agent, NULL);
        }

        /* The command's failure is in ctx->error; keep it while deleting. */
        CliContext del = {.agent = ctx->agent, .url = ctx->url};
        r = agent_client_delete(ctx->agent, id);
        if (r < 0 && r != -ENOENT) {
                (void) cli_agent_error(&del, r);
                fprintf(stderr, "sandpit: cannot delete sandbox %s: %s\n", id, del.error);
        }

        if (run_interrupted)
                return 128 + run_signal;
        return status;
}

static int cmd_kill(CliContext *ctx, const CliArgs *a)
{
        int status = 0;

        for (int i = 0; i < a->n_args; i++) {
                int r = agent_client_delete(ctx->agent, a->args[i]);
                if (r < 0) {
                        (void) cli_agent_error(ctx, r);
                        fprintf(stderr, "sandpit: %s\n", ctx->error);
                        status = CLI_EXIT_FAILURE;
                }
        }
        return status;
}

static int cmd_timeout(CliContext *ctx, const CliArgs *a)
{
        cleanup_json json_object *sbx = NULL;

        int r = agent_client_set_deadline(ctx->agent, a->args[0],
                                          (uint64_t) json_int(a->body, "timeout", 0), &sbx);
        if (r < 0)
                return cli_agent_error(ctx, r);
        if (a->json)
                return cli_print_json(ctx, sbx);
        puts(json_text(sbx, "expires_at") ?: "");
        return cli_finish_output(ctx);
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
        cleanup_json json_object *list = NULL;

        int r = agent_client_processes(ctx->agent, a->args[0], &list);
        if (r < 0)
                return cli_agent_error(ctx, r);
        if (a->json)
                return cli_print_json_member(ctx, "processes", TAKE_PTR(list));

        static const char *const header[] = {"PID", "STATUS", "TAG", "CMD"};
        size_t n = json_object_array_length(list);
        const size_t w = 256;
        Table t;
        if (table_new(header, ARRAY_SIZE(header), n, w, &t) < 0)
                return cli_set_error(ctx, -ENOMEM, "%s", strerror(ENOMEM));

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
        int r = agent_client_process_signal(ctx->agent, a->args[0], a->pid,
                                            json_text(a->body, "signal"));
        return r < 0 ? cli_agent_error(ctx, r) : 0;
}

static int cmd_code(CliContext *ctx, const CliArgs *a)
{
        json_object *body = a->exec; /* borrowed; code from stdin is added to it */
        int r;

        if (a->read_stdin) {
                cleanup_free char *code = NULL;
                size_t len = 0;
                r = cli_read_all(STDIN_FILENO, CLI_STDIN_MAX, &code, &len);
                if (r < 0)
                        return cli_set_error(ctx, r, "cannot read the code from stdin: %s",
                                             strerror(-r));
                json_object *v = json_object_new_string_len(code, (int) len);
                if (!v || json_object_object_add(body, "code", v) < 0) {
                        json_object_put(v);
                        return cli_set_error(ctx, -ENOMEM, "%s", strerror(ENOMEM));
                }
        }
        if (a->save_images && mkdir(a->save_images, 0755) < 0 && errno != EEXIST)
                return cli_set_error(ctx, negative_errno(), "cannot create %s: %m", a->save_images);

        CliCodeState st;
        cli_code_state_init(&st, STDOUT_FILENO, STDERR_FILENO, a->save_images);
        (void) fflush(stdout);
        r = agent_client_code(ctx->agent, a->args[0], body, cli_code_on_event, &st);
        if (r < 0) {
                bool write_failed = st.write_failed;
                cli_code_state_done(&st);
                if (write_failed)
                        return cli_set_error(ctx, r, "cannot write output: %s", strerror(-r));
                if (r == -EBADMSG)
                        return cli_set_error(ctx, r, "the agent sent an invalid event");
                return cli_agent_error(ctx, r);
        }
        if (!st.ended) {
                cli_code_state_done(&st);
                return cli_set_error(ctx, -EIO, "the stream ended before the run did");
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
        json_object *list = json_field(resp, "metrics");
        if (!list || !json_object_is_type(list, json_type_array))
                return cli_set_error(ctx, -EBADMSG, "the agent's answer has no \"metrics\" list");
        size_t n = json_object_array_length(list);
        const size_t w = 40;
        Table t;
        if (table_new(header, ARRAY_SIZE(header), n, w, &t) < 0)
                return cli_set_error(ctx, -ENOMEM, "%s", strerror(ENOMEM));
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
        /* A window when --start or --end was given: from 0 to the end of time
         * for the one not given. */
        bool window = json_object_object_length(a->body) > 0;
        int64_t start = window ? json_int(a->body, "start", 0) : -1;
        int64_t end = window ? json_int(a->body, "end", 253402300799) : -1;
        int r = agent_client_metrics(ctx->agent, a->args[0], start, end, &resp);
        if (r < 0)
                return cli_agent_error(ctx, r);
        if (a->json)
                return cli_print_json(ctx, resp);
        if (window)
                return print_metrics_window(ctx, resp);
        print_metrics_sample(resp);
        return cli_finish_output(ctx);
}

/* Prints the sandbox as pause and resume answer it. */
static int print_state(CliContext *ctx, const CliArgs *a, json_object *sbx)
{
        if (a->json)
                return cli_print_json(ctx, sbx);
        puts(json_text(sbx, "state") ?: "");
        return cli_finish_output(ctx);
}

static int cmd_pause(CliContext *ctx, const CliArgs *a)
{
        cleanup_json json_object *sbx = NULL;
        int r = agent_client_pause(ctx->agent, a->args[0],
                                   json_boolean(a->body, "stop_deadline", true), &sbx);
        return r < 0 ? cli_agent_error(ctx, r) : print_state(ctx, a, sbx);
}

static int cmd_resume(CliContext *ctx, const CliArgs *a)
{
        cleanup_json json_object *sbx = NULL;
        int r = agent_client_resume(ctx->agent, a->args[0],
                                    (uint64_t) json_int(a->body, "timeout", 0), &sbx);
        return r < 0 ? cli_agent_error(ctx, r) : print_state(ctx, a, sbx);
}

/* One handler a command (args.c has the names, usages and options). */
static int (*const command_handlers[CLI_CMD_COUNT])(CliContext *ctx, const CliArgs *a) = {
        [CLI_CMD_CREATE] = cmd_create,   [CLI_CMD_LS] = cmd_ls,
        [CLI_CMD_GET] = cmd_get,         [CLI_CMD_EXEC] = cmd_exec,
        [CLI_CMD_RUN] = cmd_run,         [CLI_CMD_KILL] = cmd_kill,
        [CLI_CMD_TIMEOUT] = cmd_timeout, [CLI_CMD_PS] = cmd_ps,
        [CLI_CMD_SIGNAL] = cmd_signal,   [CLI_CMD_CODE] = cmd_code,
        [CLI_CMD_ATTACH] = cmd_attach,   [CLI_CMD_CP] = cli_cmd_cp,
        [CLI_CMD_FS] = cli_cmd_fs,       [CLI_CMD_METRICS] = cmd_metrics,
        [CLI_CMD_PAUSE] = cmd_pause,     [CLI_CMD_RESUME] = cmd_resume,
        [CLI_CMD_MCP] = cli_cmd_mcp,
};

int cli_run(CliContext *ctx, const CliArgs *a)
{
        if ((unsigned) a->command >= CLI_CMD_COUNT || !command_handlers[a->command])
                return cli_set_error(ctx, -EINVAL, "unknown command");
        return command_handlers[a->command](ctx, a);
}

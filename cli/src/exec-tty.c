/* sandpit exec -t: the command runs on a pseudo-terminal in the sandbox, as
 * `kubectl exec -it` does. The main thread streams the exec's events to our
 * stdout; with -i a second thread, with its own connection to the agent,
 * forwards what is typed (our terminal in raw mode, so ^C, ^D and ^Z reach the
 * remote terminal as bytes) and, with or without -i, the terminal's size on
 * every SIGWINCH. The terminal's mode is restored on every way out: the
 * command's exit, an error, and SIGTERM/SIGHUP/SIGINT/SIGQUIT (which cancel
 * the stream; the agent then kills the foreground command). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include "cli.h"
#include "sandpit/macro.h"
#include "sandpit/util.h"

#define TTY_INPUT_CHUNK 4096
/* One input or resize request; a stuck agent must not hold the thread forever. */
#define TTY_REQUEST_TIMEOUT_MS 30000L

static volatile sig_atomic_t tty_interrupted; /* the signal that asked us to stop */
static int tty_winch_fd = -1;                 /* write end of the SIGWINCH pipe */

static void on_stop_signal(int sig)
{
        tty_interrupted = sig;
}

static void on_winch(int sig)
{
        (void) sig;
        int saved = errno;
        (void) !write(tty_winch_fd, "w", 1);
        errno = saved;
}

typedef struct {
        AgentClient *agent; /* the thread's own connection */
        const char *id;
        bool forward_stdin;
        int pid_fd;   /* read end: the pid once known; EOF = stop */
        int winch_fd; /* read end of the SIGWINCH pipe */
} TtyInput;

typedef struct {
        CliExecState st;
        int pid_fd; /* write end; -1 once the pid was sent */
} TtyOutput;

static void winsize_of(int fd, unsigned *cols, unsigned *rows)
{
        struct winsize ws = {0};
        bool ok = ioctl(fd, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0 && ws.ws_row > 0;
        *cols = ok ? ws.ws_col : 80;
        *rows = ok ? ws.ws_row : 24;
}

static void *input_main(void *arg)
{
        TtyInput *in = arg;
        uint32_t pid = 0;
        ssize_t n;
        do
                n = read(in->pid_fd, &pid, sizeof(pid));
        while (n < 0 && errno == EINTR);
        if (n != (ssize_t) sizeof(pid))
                return NULL; /* the stream ended before it started */

        bool reading = in->forward_stdin;
        for (;;) {
                struct pollfd p[3] = {{.fd = in->pid_fd, .events = POLLIN},
                                      {.fd = in->winch_fd, .events = POLLIN},
                                      {.fd = reading ? STDIN_FILENO : -1, .events = POLLIN}};
                if (poll(p, 3, -1) < 0) {
                        if (errno == EINTR)
                                continue;
                        return NULL;
                }
                if (p[0].revents)
                        return NULL; /* EOF: the command has ended */
                if (p[1].revents & POLLIN) {
                        char drain[64];
                        (void) !read(in->winch_fd, drain, sizeof(drain));
                        unsigned cols, rows;
                        winsize_of(STDIN_FILENO, &cols, &rows);
                        /* Once the process is gone (or the agent cannot be
                         * reached) nothing more is worth sending. */
                        if (agent_client_process_resize(in->agent, in->id, (int) pid, cols, rows) <
                            0)
                                return NULL;
                }
                if (p[2].revents) {
                        uint8_t buf[TTY_INPUT_CHUNK];
                        n = read(STDIN_FILENO, buf, sizeof(buf));
                        if (n < 0 && (errno == EINTR || errno == EAGAIN))
                                continue;
                        if (n <= 0) {
                                /* Our terminal hung up: the remote one stays, as after a
                                 * lost ssh connection the command gets no more input. */
                                reading = false;
                                continue;
                        }
                        if (agent_client_process_stdin(in->agent, in->id, (int) pid, buf,
                                                       (size_t) n, false) < 0)
                                return NULL;
                }
        }
}

/* The exec's events as `exec` shows them; hands the pid to the input thread. */
static int on_event(json_object *ev, void *userdata)
{
        TtyOutput *o = userdata;
        int r = cli_exec_on_event(ev, &o->st);
        if (r >= 0 && o->pid_fd >= 0 && o->st.pid > 0 && o->st.pid <= UINT32_MAX) {
                uint32_t pid = (uint32_t) o->st.pid;
                (void) !write(o->pid_fd, &pid, sizeof(pid));
                o->pid_fd = -1; /* closed by the caller */
        }
        return r;
}

static int fail(CliContext *ctx, int r, const char *what)
{
        (void) snprintf(ctx->error, sizeof(ctx->error), "%s: %s", what, strerror(-r));
        return r;
}

/* a's exec body with "pty": {"cols": C, "rows": R}. */
static json_object *pty_request(const CliArgs *a, unsigned cols, unsigned rows)
{
        cleanup_json json_object *body = NULL;
        if (json_object_deep_copy(a->exec, &body, NULL) < 0)
                return NULL;
        json_object *size = json_object_new_object();
        if (!size || json_object_object_add(body, "pty", size) < 0) {
                json_object_put(size);
                return NULL;
        }
        if (json_object_object_add(size, "cols", json_object_new_int((int) cols)) < 0 ||
            json_object_object_add(size, "rows", json_object_new_int((int) rows)) < 0)
                return NULL;
        return TAKE_PTR(body);
}

int cli_exec_tty(CliContext *ctx, const CliArgs *a)
{
        static const int stop_signals[] = {SIGTERM, SIGHUP, SIGINT, SIGQUIT};
        unsigned cols, rows;
        winsize_of(STDIN_FILENO, &cols, &rows);
        cleanup_json json_object *body = pty_request(a, cols, rows);
        if (!body)
                return fail(ctx, -ENOMEM, "cannot build the request");

        cleanup_agent_client AgentClient *input_agent = NULL;
        int r = agent_client_dup(ctx->agent, &input_agent);
        if (r < 0)
                return fail(ctx, r, "cannot make a second connection");
        agent_client_set_timeout(input_agent, TTY_REQUEST_TIMEOUT_MS);
        int pid_pipe[2] = {-1, -1}, winch_pipe[2] = {-1, -1};
        if (pipe2(pid_pipe, O_CLOEXEC) < 0 || pipe2(winch_pipe, O_CLOEXEC | O_NONBLOCK) < 0) {
                r = negative_errno();
                closep(&pid_pipe[0]);
                closep(&pid_pipe[1]);
                return fail(ctx, r, "pipe");
        }

        /* From here on every path goes through "out", which restores everything. */
        struct sigaction old_stop[ARRAY_SIZE(stop_signals)], old_winch;
        struct sigaction sa = {.sa_handler = on_stop_signal};
        sigemptyset(&sa.sa_mask);
        tty_interrupted = 0;
        tty_winch_fd = winch_pipe[1];
        for (size_t i = 0; i < ARRAY_SIZE(stop_signals); i++)
                (void) sigaction(stop_signals[i], &sa, &old_stop[i]);
        sa.sa_handler = on_winch;
        sa.sa_flags = SA_RESTART;
        (void) sigaction(SIGWINCH, &sa, &old_winch);

        struct termios saved;
        bool raw = false;
        if (a->read_stdin && tcgetattr(STDIN_FILENO, &saved) == 0) {
                struct termios t = saved;
                cfmakeraw(&t);
                raw = tcsetattr(STDIN_FILENO, TCSANOW, &t) == 0;
        }

        TtyInput in = {.agent = input_agent,
                       .id = a->args[0],
                       .forward_stdin = a->read_stdin,
                       .pid_fd = pid_pipe[0],
                       .winch_fd = winch_pipe[0]};
        pthread_t thread;
        int tr = pthread_create(&thread, NULL, input_main, &in);
        if (tr != 0) {
                r = fail(ctx, -tr, "cannot start the input thread");
                goto out;
        }

        TtyOutput o = {.pid_fd = pid_pipe[1]};
        cli_exec_state_init(&o.st, STDOUT_FILENO, STDERR_FILENO);
        agent_client_set_cancel(ctx->agent, &tty_interrupted);
        r = agent_client_exec(ctx->agent, a->args[0], body, on_event, &o);
        agent_client_set_cancel(ctx->agent, NULL);
        closep(&pid_pipe[1]); /* the input thread ends */
        (void) pthread_join(thread, NULL);

        if (r == -ECANCELED && tty_interrupted)
                r = 128 + tty_interrupted;
        else if (r < 0 && o.st.write_failed)
                r = fail(ctx, r, "cannot write output");
        else if (r < 0)
                r = cli_agent_error(ctx, r);
        else if (!o.st.exited)
                r = fail(ctx, -EIO, "the output stream ended before the command exited");
        else
                r = o.st.exit_status;
out:
        if (raw)
                (void) tcsetattr(STDIN_FILENO, TCSANOW, &saved);
        (void) sigaction(SIGWINCH, &old_winch, NULL);
        for (size_t i = 0; i < ARRAY_SIZE(stop_signals); i++)
                (void) sigaction(stop_signals[i], &old_stop[i], NULL);
        tty_winch_fd = -1;
        for (size_t i = 0; i < 2; i++) {
                closep(&pid_pipe[i]);
                closep(&winch_pipe[i]);
        }
        return r;
}

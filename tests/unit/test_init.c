/* sandpit-init driven through its socket: the built binary (SANDPIT_INIT_BIN, else
 * build/bin/sandpit-init) runs as an ordinary child with --allow-local-peers and a
 * socket in a temporary directory; each test starts its own. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pwd.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "initproto.h"
#include "passwd.h"
#include "sandpit/macro.h"

#define IO_TIMEOUT_S 10

typedef struct {
        pid_t pid;
        char dir[64];
        char sock[96];
} Init;

typedef struct {
        uint8_t *body;
        size_t cap;
        IpFrame f;
} Rx;

typedef struct {
        char *out;
        size_t out_len;
        char *err;
        size_t err_len;
        char *pty; /* PTY events */
        size_t pty_len;
        bool exited;
        int32_t exit_code;
        uint32_t signo;
        uint32_t timed_out;
        uint64_t duration_us;
} Result;

typedef struct {
        const char *const *argv;
        const char *const *env;
        uint32_t flags;
        uint64_t timeout_ms;
        const char *user;
        const char *cwd;
        const void *data;
        size_t data_len;
        bool has_data;
        const char *tag;
        const char *const *secret_env;
        uint32_t cols, rows; /* sent when non-zero */
} SpawnReq;

static const char *init_bin(void)
{
        const char *b = getenv("SANDPIT_INIT_BIN");
        return b && *b ? b : "build/bin/sandpit-init";
}

static uint64_t mono_ms(void)
{
        struct timespec ts;
        (void) clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000u + (uint64_t) ts.tv_nsec / 1000000u;
}

static void sleep_ms(unsigned ms)
{
        struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long) (ms % 1000) * 1000000L};
        (void) nanosleep(&ts, NULL);
}

/* A unix stream socket bound at path, not listening: what the agent hands init. */
static int bound_socket(const char *path)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        (void) snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (bind(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0) {
                int r = -errno;
                (void) close(fd);
                return r;
        }
        return fd;
}

/* SIGTERM, which init forwards; it must then exit 0 by itself. */
static int init_stop(Init *in);

/* Starts init and waits for its ready byte on fd 3. With inherit, the socket
 * comes bound (not listening) as fd IP_LISTEN_FD and there is no --socket, as
 * in a sandbox. A failure leaves nothing: no process, socket or directory. */
static int init_start_mode(Init *in, bool allow_local, bool inherit)
{
        *in = (Init){.pid = -1};
        (void) snprintf(in->dir, sizeof(in->dir), "/tmp/sandpit-init-test.XXXXXX");
        if (!mkdtemp(in->dir))
                return -errno;
        (void) snprintf(in->sock, sizeof(in->sock), "%s/init.sock", in->dir);
        int lfd = inherit ? bound_socket(in->sock) : -1;
        int ready[2] = {-1, -1};
        int r = 0;
        if (inherit && lfd < 0)
                r = lfd;
        else if (pipe2(ready, O_CLOEXEC) < 0)
                r = -errno;
        else if ((in->pid = fork()) < 0)
                r = -errno;
        if (in->pid == 0) {
                /* Both above the target numbers first, so one dup2 cannot clobber the other. */
                int rfd = fcntl(ready[1], F_DUPFD_CLOEXEC, 10);
                int l = lfd >= 0 ? fcntl(lfd, F_DUPFD_CLOEXEC, 10) : -1;
                if (rfd < 0 || dup2(rfd, IP_READY_FD) < 0 ||
                    (lfd >= 0 && dup2(l, IP_LISTEN_FD) < 0))
                        _exit(126);
                (void) close_range(inherit ? IP_LISTEN_FD + 1 : IP_READY_FD + 1, ~0U, 0);
                const char *bin = init_bin();
                if (inherit)
                        execl(bin, bin, allow_local ? "--allow-local-peers" : NULL, (char *) NULL);
                else
                        execl(bin, bin, "--socket", in->sock,
                              allow_local ? "--allow-local-peers" : NULL, (char *) NULL);
                _exit(127);
        }
        if (lfd >= 0)
                (void) close(lfd);
        if (ready[1] >= 0)
                (void) close(ready[1]);
        if (r == 0) {
                struct pollfd pfd = {.fd = ready[0], .events = POLLIN};
                char byte = 0;
                if (poll(&pfd, 1, IO_TIMEOUT_S * 1000) != 1 || read(ready[0], &byte, 1) != 1)
                        r = -ETIMEDOUT;
        }
        if (ready[0] >= 0)
                (void) close(ready[0]);
        if (r < 0)
                (void) init_stop(in);
        return r;
}

static int init_start(Init *in, bool allow_local)
{
        return init_start_mode(in, allow_local, false);
}

static int init_stop(Init *in)
{
        int rc = 0;
        if (in->pid > 0) {
                (void) kill(in->pid, SIGTERM);
                int status = 0;
                uint64_t deadline = mono_ms() + (uint64_t) IO_TIMEOUT_S * 1000u;
                pid_t w;
                while ((w = waitpid(in->pid, &status, WNOHANG)) == 0 && mono_ms() < deadline)
                        sleep_ms(10);
                if (w == 0) {
                        (void) kill(in->pid, SIGKILL);
                        (void) waitpid(in->pid, &status, 0);
                        rc = -1;
                } else if (w < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                        rc = -1;
                }
                in->pid = -1;
        }
        (void) unlink(in->sock);
        (void) rmdir(in->dir);
        return rc;
}

static int setup(void **state)
{
        Init *in = calloc(1, sizeof(*in));
        if (!in || init_start(in, true) < 0) {
                free(in);
                return -1;
        }
        *state = in;
        return 0;
}

static int teardown(void **state)
{
        Init *in = *state;
        int r = init_stop(in);
        free(in);
        return r;
}

static int cli_connect(const Init *in)
{
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(fd >= 0);
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        (void) snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", in->sock);
        assert_int_equal(connect(fd, (struct sockaddr *) &sa, sizeof(sa)), 0);
        struct timeval tv = {.tv_sec = IO_TIMEOUT_S};
        assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
        assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)), 0);
        return fd;
}

static void cli_send(int fd, IpBuilder *b)
{
        assert_int_equal(ip_builder_finish(b), 0);
        assert_int_equal(ip_write_all(fd, b->buf, b->len), 0);
        ip_builder_free(b);
}

static void cli_send_simple(int fd, IpMsgType type)
{
        IpBuilder b;
        ip_builder_init(&b, type);
        cli_send(fd, &b);
}

/* Receives one frame; fails the test on timeout or EOF. */
static const IpFrame *cli_recv(int fd, Rx *rx)
{
        int r = ip_read_frame(fd, &rx->body, &rx->cap, &rx->f);
        assert_int_equal(r, 1);
        return &rx->f;
}

static uint32_t get_u32(const IpFrame *f, IpTag tag)
{
        uint32_t v = 0;
        assert_int_equal(ip_get_u32(f, tag, &v), 0);
        return v;
}

static void append(char **buf, size_t *len, const uint8_t *data, size_t n)
{
        char *b = realloc(*buf, *len + n + 1);
        assert_non_null(b);
        memcpy(b + *len, data, n);
        *len += n;
        b[*len] = '\0';
        *buf = b;
}

static void result_free(Result *r)
{
        free(r->out);
        free(r->err);
        free(r->pty);
        *r = (Result){0};
}

/* Reads output events until EXIT (or stop_at appears in stdout or the pty's output). */
static void collect_until(int fd, Rx *rx, Result *res, const char *stop_at)
{
        for (;;) {
                if (stop_at && ((res->out && strstr(res->out, stop_at)) ||
                                (res->pty && strstr(res->pty, stop_at))))
                        return;
                const IpFrame *f = cli_recv(fd, rx);
                const uint8_t *d;
                uint32_t n;
                switch (f->type) {
                case IP_MSG_STARTED: /* ATTACH's acknowledgement */
                        break;
                case IP_MSG_STDOUT:
                        assert_int_equal(ip_get_bytes(f, IP_TAG_DATA, &d, &n), 0);
                        append(&res->out, &res->out_len, d, n);
                        break;
                case IP_MSG_STDERR:
                        assert_int_equal(ip_get_bytes(f, IP_TAG_DATA, &d, &n), 0);
                        append(&res->err, &res->err_len, d, n);
                        break;
                case IP_MSG_PTY:
                        assert_int_equal(ip_get_bytes(f, IP_TAG_DATA, &d, &n), 0);
                        append(&res->pty, &res->pty_len, d, n);
                        break;
                case IP_MSG_EXIT:
                        res->exited = true;
                        assert_int_equal(ip_get_i32(f, IP_TAG_EXIT_CODE, &res->exit_code), 0);
                        res->signo = get_u32(f, IP_TAG_SIGNO);
                        res->timed_out = get_u32(f, IP_TAG_TIMED_OUT);
                        assert_int_equal(ip_get_u64(f, IP_TAG_DURATION_US, &res->duration_us), 0);
                        return;
                default:
                        fail_msg("unexpected event type %d", f->type);
                }
        }
}

static void collect(int fd, Rx *rx, Result *res)
{
        collect_until(fd, rx, res, NULL);
}

/* Sends SPAWN. Returns the connection after STARTED, or -errno from ERROR (the
 * message in errmsg). */
static int spawn(const Init *in, const SpawnReq *rq, uint32_t *ret_pid, Rx *rx, char *errmsg,
                 size_t errlen)
{
        int fd = cli_connect(in);
        IpBuilder b;
        ip_builder_init(&b, IP_MSG_SPAWN);
        for (const char *const *a = rq->argv; *a; a++)
                ip_put_str(&b, IP_TAG_ARG, *a);
        for (const char *const *e = rq->env; e && *e; e++)
                ip_put_str(&b, IP_TAG_ENV, *e);
        if (rq->flags)
                ip_put_u32(&b, IP_TAG_FLAGS, rq->flags);
        if (rq->timeout_ms)
                ip_put_u64(&b, IP_TAG_TIMEOUT_MS, rq->timeout_ms);
        if (rq->user)
                ip_put_str(&b, IP_TAG_USER, rq->user);
        if (rq->cwd)
                ip_put_str(&b, IP_TAG_CWD, rq->cwd);
        if (rq->has_data)
                ip_put_bytes(&b, IP_TAG_DATA, rq->data, rq->data_len);
        if (rq->tag)
                ip_put_str(&b, IP_TAG_TAG, rq->tag);
        for (const char *const *e = rq->secret_env; e && *e; e++)
                ip_put_str(&b, IP_TAG_SECRET_ENV, *e);
        if (rq->cols)
                ip_put_u32(&b, IP_TAG_COLS, rq->cols);
        if (rq->rows)
                ip_put_u32(&b, IP_TAG_ROWS, rq->rows);
        cli_send(fd, &b);
        const IpFrame *f = cli_recv(fd, rx);
        if (f->type == IP_MSG_ERROR) {
                uint32_t err = get_u32(f, IP_TAG_ERRNO);
                cleanup_free char *msg = NULL;
                assert_int_equal(ip_get_strdup(f, IP_TAG_MESSAGE, &msg), 0);
                if (errmsg)
                        (void) snprintf(errmsg, errlen, "%s", msg);
                (void) close(fd);
                return -(int) err;
        }
        assert_int_equal(f->type, IP_MSG_STARTED);
        *ret_pid = get_u32(f, IP_TAG_PID);
        assert_true(*ret_pid > 0);
        return fd;
}

/* Ends a conversation: closes fd and frees what rx holds. */
static void finish(int fd, Rx *rx)
{
        free(rx->body);
        *rx = (Rx){0};
        (void) close(fd);
}

/* SPAWN that must start: the streaming connection. */
static int start(const Init *in, const SpawnReq *rq, uint32_t *ret_pid, Rx *rx)
{
        int fd = spawn(in, rq, ret_pid, rx, NULL, 0);
        assert_true(fd >= 0);
        return fd;
}

static void run(const Init *in, const SpawnReq *rq, Result *res)
{
        Rx rx = {0};
        uint32_t pid = 0;
        int fd = start(in, rq, &pid, &rx);
        collect(fd, &rx, res);
        finish(fd, &rx);
}

/* Reads the answer to a one-frame request and closes fd: 0 for OK, the errno
 * of ERROR, -1 for anything else. */
static int answer_and_close(int fd)
{
        Rx rx = {0};
        const IpFrame *f = cli_recv(fd, &rx);
        int r = f->type == IP_MSG_OK      ? 0
                : f->type == IP_MSG_ERROR ? (int) get_u32(f, IP_TAG_ERRNO)
                                          : -1;
        finish(fd, &rx);
        return r;
}

/* Sends a one-frame request with an optional PID, returns the reply's errno (0 = OK). */
static int request(const Init *in, IpMsgType type, uint32_t pid, uint32_t signo, const char *data)
{
        int fd = cli_connect(in);
        IpBuilder b;
        ip_builder_init(&b, type);
        ip_put_u32(&b, IP_TAG_PID, pid);
        if (signo)
                ip_put_u32(&b, IP_TAG_SIGNO, signo);
        if (data)
                ip_put_str(&b, IP_TAG_DATA, data);
        cli_send(fd, &b);
        return answer_and_close(fd);
}

/* A connection that sent ATTACH for pid. */
static int attach(const Init *in, uint32_t pid)
{
        int fd = cli_connect(in);
        IpBuilder b;
        ip_builder_init(&b, IP_MSG_ATTACH);
        ip_put_u32(&b, IP_TAG_PID, pid);
        cli_send(fd, &b);
        return fd;
}

/* LIST; returns the PROCESS event for pid (heap copy of its body) or NULL. */
static uint8_t *list_find(const Init *in, uint32_t pid, IpFrame *ret)
{
        int fd = cli_connect(in);
        cli_send_simple(fd, IP_MSG_LIST);
        Rx rx = {0};
        uint8_t *found = NULL;
        for (;;) {
                const IpFrame *f = cli_recv(fd, &rx);
                if (f->type == IP_MSG_OK)
                        break;
                assert_int_equal(f->type, IP_MSG_PROCESS);
                if (get_u32(f, IP_TAG_PID) == pid && !found) {
                        found = malloc(f->body_len + 1);
                        assert_non_null(found);
                        memcpy(found, f->body, f->body_len);
                        *ret = (IpFrame){.type = f->type, .body = found, .body_len = f->body_len};
                }
        }
        finish(fd, &rx);
        return found;
}

static bool pid_gone(pid_t pid, unsigned timeout_ms)
{
        uint64_t deadline = mono_ms() + timeout_ms;
        while (mono_ms() < deadline) {
                if (kill(pid, 0) < 0 && errno == ESRCH)
                        return true;
                sleep_ms(10);
        }
        return false;
}

/* ---- tests ---- */

static void test_echo(void **state)
{
        Result res = {0};
        run(*state, &(SpawnReq){.argv = (const char *const[]){"echo", "hello", NULL}}, &res);
        assert_true(res.exited);
        assert_string_equal(res.out, "hello\n");
        assert_null(res.err);
        assert_int_equal(res.exit_code, 0);
        assert_int_equal(res.signo, 0);
        assert_int_equal(res.timed_out, 0);
        result_free(&res);
}

static void test_exit_code_and_stderr(void **state)
{
        Result res = {0};
        run(*state,
            &(SpawnReq){.argv = (const char *const[]){"sh", "-c", "echo oops >&2; exit 3", NULL}},
            &res);
        assert_int_equal(res.exit_code, 3);
        assert_int_equal(res.signo, 0);
        assert_null(res.out);
        assert_string_equal(res.err, "oops\n");
        result_free(&res);
}

static void test_env_and_cwd(void **state)
{
        Result res = {0};
        run(*state,
            &(SpawnReq){.argv = (const char *const[]){"sh", "-c", "echo $FOO; pwd", NULL},
                        .env = (const char *const[]){"FOO=bar baz", "PATH=/usr/bin:/bin", NULL},
                        .cwd = "/tmp"},
            &res);
        assert_int_equal(res.exit_code, 0);
        assert_string_equal(res.out, "bar baz\n/tmp\n");
        result_free(&res);
}

static void test_signal(void **state)
{
        Rx rx = {0};
        uint32_t pid = 0;
        int fd = start(*state, &(SpawnReq){.argv = (const char *const[]){"sleep", "30", NULL}},
                       &pid, &rx);
        IpBuilder b;
        ip_builder_init(&b, IP_MSG_SIGNAL);
        ip_put_u32(&b, IP_TAG_SIGNO, SIGTERM);
        cli_send(fd, &b);
        Result res = {0};
        collect(fd, &rx, &res);
        assert_int_equal(res.exit_code, -1);
        assert_int_equal(res.signo, SIGTERM);
        assert_int_equal(res.timed_out, 0);
        result_free(&res);
        finish(fd, &rx);
}

static void test_timeout(void **state)
{
        Result res = {0};
        run(*state,
            &(SpawnReq){.argv = (const char *const[]){"sleep", "30", NULL}, .timeout_ms = 300},
            &res);
        /* Killed for its timeout (sleep 30 would exit 0), and not before it:
         * init's own record of the run, on the clock its deadline is on. */
        assert_int_equal(res.timed_out, 1);
        assert_int_equal(res.exit_code, -1);
        assert_int_equal(res.signo, SIGKILL);
        assert_true(res.duration_us >= 300000);
        result_free(&res);
}

static void test_stdin_data(void **state)
{
        Result res = {0};
        const char *msg = "hello stdin";
        run(*state,
            &(SpawnReq){.argv = (const char *const[]){"cat", NULL},
                        .data = msg,
                        .data_len = strlen(msg),
                        .has_data = true},
            &res);
        assert_int_equal(res.exit_code, 0);
        assert_string_equal(res.out, msg);
        result_free(&res);

        /* More than a pipe holds: init must buffer it. */
        size_t big = 300000;
        cleanup_free char *data = malloc(big);
        assert_non_null(data);
        memset(data, 'x', big);
        run(*state,
            &(SpawnReq){.argv = (const char *const[]){"wc", "-c", NULL},
                        .data = data,
                        .data_len = big,
                        .has_data = true},
            &res);
        assert_int_equal(res.exit_code, 0);
        assert_int_equal(strtoul(res.out, NULL, 10), big);
        result_free(&res);

        /* Without DATA stdin is /dev/null: cat ends at once. */
        run(*state, &(SpawnReq){.argv = (const char *const[]){"cat", NULL}}, &res);
        assert_int_equal(res.exit_code, 0);
        assert_null(res.out);
        result_free(&res);
}

static void send_stdin(int fd, uint32_t pid, const char *s)
{
        IpBuilder b;
        ip_builder_init(&b, IP_MSG_STDIN);
        if (pid)
                ip_put_u32(&b, IP_TAG_PID, pid);
        ip_put_str(&b, IP_TAG_DATA, s);
        cli_send(fd, &b);
}

static void test_stdin_stream(void **state)
{
        Init *in = *state;
        Rx rx = {0};
        uint32_t pid = 0;
        int fd = start(in,
                       &(SpawnReq){.argv = (const char *const[]){"cat", NULL},
                                   .flags = IP_FLAG_STDIN_OPEN,
                                   .data = "0",
                                   .data_len = 1,
                                   .has_data = true},
                       &pid, &rx);
        Result res = {0};
        send_stdin(fd, 0, "abc");
        collect_until(fd, &rx, &res, "0abc");
        /* From another connection, with PID: answered by OK. */
        assert_int_equal(request(in, IP_MSG_STDIN, pid, 0, "ghi"), 0);
        collect_until(fd, &rx, &res, "0abcghi");
        send_stdin(fd, 0, "def");
        cli_send_simple(fd, IP_MSG_STDIN_EOF);
        collect(fd, &rx, &res);
        assert_int_equal(res.exit_code, 0);
        assert_string_equal(res.out, "0abcghidef");
        result_free(&res);
        finish(fd, &rx);
        assert_int_equal(request(in, IP_MSG_STDIN, pid, 0, "late"), ESRCH);
}

static void test_stdin_closed(void **state)
{
        Init *in = *state;
        Rx rx = {0};
        uint32_t pid = 0;
        /* stdin is /dev/null: STDIN to it is EPIPE. */
        int fd = start(in, &(SpawnReq){.argv = (const char *const[]){"sleep", "30", NULL}}, &pid,
                       &rx);
        assert_int_equal(request(in, IP_MSG_STDIN, pid, 0, "x"), EPIPE);
        assert_int_equal(request(in, IP_MSG_SIGNAL, pid, SIGKILL, NULL), 0);
        Result res = {0};
        collect(fd, &rx, &res);
        assert_int_equal(res.signo, SIGKILL);
        result_free(&res);
        finish(fd, &rx);
}

/* Whether everything PID wrote to its fd FDNO (a pipe to init) so far has
 * been read by init: the pipe, opened again through /proc, holds no byte. */
static bool pipe_drained(pid_t pid, int fdno)
{
        char path[64];
        (void) snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int) pid, fdno);
        int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0)
                return false;
        int unread = -1;
        bool drained = ioctl(fd, FIONREAD, &unread) == 0 && unread == 0;
        (void) close(fd);
        return drained;
}

static void test_background_attach(void **state)
{
        Init *in = *state;
        char go[160], first[160], script[512];
        (void) snprintf(go, sizeof(go), "%s/go", in->dir);
        (void) snprintf(first, sizeof(first), "%s/first", in->dir);
        (void) snprintf(script, sizeof(script),
                        "echo one; touch %s; while [ ! -e %s ]; do sleep 0.02; done; echo two; "
                        "exit 5",
                        first, go);
        Rx rx = {0};
        uint32_t pid = 0;
        int fd = start(in,
                       &(SpawnReq){.argv = (const char *const[]){"sh", "-c", script, NULL},
                                   .flags = IP_FLAG_BACKGROUND},
                       &pid, &rx);
        (void) close(fd); /* a background process survives this */

        uint64_t deadline = mono_ms() + (uint64_t) IO_TIMEOUT_S * 1000u;
        while (access(first, F_OK) < 0 && mono_ms() < deadline)
                sleep_ms(10);
        assert_int_equal(access(first, F_OK), 0);
        /* "one" was written before "first" appeared: wait until init read it
         * into the backlog, so the attach below gets it as a replay. */
        while (!pipe_drained((pid_t) pid, STDOUT_FILENO) && mono_ms() < deadline)
                sleep_ms(10);
        assert_true(pipe_drained((pid_t) pid, STDOUT_FILENO));
        assert_int_equal(kill((pid_t) pid, 0), 0);

        fd = attach(in, pid);
        Result res = {0};
        collect_until(fd, &rx, &res, "one\n");
        int gofd = open(go, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
        assert_true(gofd >= 0);
        (void) close(gofd);
        collect(fd, &rx, &res);
        assert_string_equal(res.out, "one\ntwo\n");
        assert_int_equal(res.exit_code, 5);
        result_free(&res);
        (void) close(fd);
        (void) unlink(go);
        (void) unlink(first);

        /* The record outlives the exit being seen: a second reconnect replays the
         * whole backlog and the exit; an unknown pid is ESRCH. */
        fd = attach(in, pid);
        const IpFrame *f = cli_recv(fd, &rx);
        assert_int_equal(f->type, IP_MSG_STARTED);
        collect(fd, &rx, &res);
        assert_string_equal(res.out, "one\ntwo\n");
        assert_int_equal(res.exit_code, 5);
        result_free(&res);
        (void) close(fd);

        fd = attach(in, 999999);
        f = cli_recv(fd, &rx);
        assert_int_equal(f->type, IP_MSG_ERROR);
        assert_int_equal(get_u32(f, IP_TAG_ERRNO), ESRCH);
        finish(fd, &rx);
}

static void test_exit_record(void **state)
{
        Init *in = *state;
        Rx rx = {0};
        uint32_t pid = 0;
        int fd = start(
                in,
                &(SpawnReq){.argv = (const char *const[]){"sh", "-c", "echo rec; exit 7", NULL},
                            .flags = IP_FLAG_BACKGROUND,
                            .tag = "job-1"},
                &pid, &rx);
        (void) close(fd);

        IpFrame f;
        cleanup_free uint8_t *body = NULL;
        uint64_t deadline = mono_ms() + (uint64_t) IO_TIMEOUT_S * 1000u;
        for (;;) {
                free(body);
                body = list_find(in, pid, &f);
                assert_non_null(body);
                if (get_u32(&f, IP_TAG_STATE) == IP_STATE_EXITED || mono_ms() > deadline)
                        break;
                sleep_ms(20);
        }
        assert_int_equal(get_u32(&f, IP_TAG_STATE), IP_STATE_EXITED);
        int32_t code;
        assert_int_equal(ip_get_i32(&f, IP_TAG_EXIT_CODE, &code), 0);
        assert_int_equal(code, 7);
        assert_int_equal(get_u32(&f, IP_TAG_SIGNO), 0);
        cleanup_free char *tag = NULL;
        assert_int_equal(ip_get_strdup(&f, IP_TAG_TAG, &tag), 0);
        assert_string_equal(tag, "job-1");

        fd = attach(in, pid);
        Result res = {0};
        collect(fd, &rx, &res);
        assert_string_equal(res.out, "rec\n");
        assert_int_equal(res.exit_code, 7);
        result_free(&res);
        finish(fd, &rx);

        /* Still listed after its exit was seen (records are bounded, not one-shot). */
        IpFrame g;
        uint8_t *again = list_find(in, pid, &g);
        assert_non_null(again);
        assert_int_equal(get_u32(&g, IP_TAG_STATE), IP_STATE_EXITED);
        free(again);
}

static void test_list(void **state)
{
        Init *in = *state;
        Rx rx = {0};
        uint32_t pid = 0;
        int fd = start(in,
                       &(SpawnReq){.argv = (const char *const[]){"sleep", "30", NULL},
                                   .flags = IP_FLAG_BACKGROUND,
                                   .tag = "sleeper"},
                       &pid, &rx);
        IpFrame f;
        cleanup_free uint8_t *body = list_find(in, pid, &f);
        assert_non_null(body);
        assert_int_equal(get_u32(&f, IP_TAG_STATE), IP_STATE_RUNNING);
        assert_int_equal(get_u32(&f, IP_TAG_FLAGS), IP_FLAG_BACKGROUND);
        cleanup_free char *tag = NULL;
        assert_int_equal(ip_get_strdup(&f, IP_TAG_TAG, &tag), 0);
        assert_string_equal(tag, "sleeper");
        uint64_t started;
        assert_int_equal(ip_get_u64(&f, IP_TAG_STARTED_US, &started), 0);
        assert_true(started > (uint64_t) (time(NULL) - 60) * 1000000u);
        /* ARGs in order. */
        size_t off = 0;
        uint8_t t;
        const uint8_t *v;
        uint32_t n;
        int args = 0;
        while (ip_next_field(&f, &off, &t, &v, &n) > 0)
                if (t == IP_TAG_ARG) {
                        const char *want = args == 0 ? "sleep" : "30";
                        assert_int_equal(n, strlen(want));
                        assert_memory_equal(v, want, n);
                        args++;
                }
        assert_int_equal(args, 2);

        assert_int_equal(request(in, IP_MSG_SIGNAL, pid, SIGKILL, NULL), 0);
        Result res = {0};
        collect(fd, &rx, &res);
        assert_int_equal(res.signo, SIGKILL);
        result_free(&res);
        finish(fd, &rx);
        assert_int_equal(request(in, IP_MSG_SIGNAL, 999999, SIGKILL, NULL), ESRCH);
}

static void test_spawn_errors(void **state)
{
        Init *in = *state;
        Rx rx = {0};
        uint32_t pid = 0;
        char msg[256];
        int r = spawn(in, &(SpawnReq){.argv = (const char *const[]){"/nonexistent/xyz", NULL}},
                      &pid, &rx, msg, sizeof(msg));
        assert_int_equal(r, -ENOENT);
        assert_string_equal(msg, "exec /nonexistent/xyz: No such file or directory");

        r = spawn(in, &(SpawnReq){.argv = (const char *const[]){"no-such-command-xyz", NULL}}, &pid,
                  &rx, msg, sizeof(msg));
        assert_int_equal(r, -ENOENT);
        assert_string_equal(msg, "exec no-such-command-xyz: No such file or directory");

        r = spawn(in,
                  &(SpawnReq){.argv = (const char *const[]){"true", NULL},
                              .user = "no-such-user-xyz"},
                  &pid, &rx, msg, sizeof(msg));
        assert_int_equal(r, -ENOENT);
        assert_string_equal(msg, "unknown user no-such-user-xyz");

        r = spawn(in,
                  &(SpawnReq){.argv = (const char *const[]){"true", NULL}, .cwd = "/nonexistent"},
                  &pid, &rx, msg, sizeof(msg));
        assert_int_equal(r, -ENOENT);
        assert_string_equal(msg, "chdir /nonexistent: No such file or directory");
        free(rx.body);
}

static void test_user_nobody(void **state)
{
        if (geteuid() != 0 || !getpwnam("nobody"))
                skip();
        Result res = {0};
        run(*state,
            &(SpawnReq){.argv = (const char *const[]){"sh", "-c", "id -u; id -G", NULL},
                        .user = "nobody"},
            &res);
        assert_int_equal(res.exit_code, 0);
        char want[64];
        struct passwd *pw = getpwnam("nobody");
        (void) snprintf(want, sizeof(want), "%u\n%u\n", (unsigned) pw->pw_uid,
                        (unsigned) pw->pw_gid);
        assert_string_equal(res.out, want);
        assert_int_equal(pw->pw_uid, 65534);
        result_free(&res);
}

static void test_peer_check(void **state)
{
        (void) state;
        Init strict;
        if (init_start(&strict, false) < 0)
                fail_msg("cannot start %s", init_bin());
        int fd = cli_connect(&strict);
        IpBuilder b;
        ip_builder_init(&b, IP_MSG_PING);
        assert_int_equal(ip_builder_finish(&b), 0);
        (void) send(fd, b.buf, b.len, MSG_NOSIGNAL);
        ip_builder_free(&b);
        Rx rx = {0};
        int r = ip_read_frame(fd, &rx.body, &rx.cap, &rx.f);
        /* Closed without an answer: EOF (0) or a reset. */
        assert_true(r == 0 || r == -ECONNRESET);
        finish(fd, &rx);
        assert_int_equal(init_stop(&strict), 0);
}

static void test_foreground_killed_on_close(void **state)
{
        Init *in = *state;
        Rx rx = {0};
        uint32_t pid = 0;
        int fd = start(in, &(SpawnReq){.argv = (const char *const[]){"sleep", "30", NULL}}, &pid,
                       &rx);
        assert_int_equal(kill((pid_t) pid, 0), 0);
        (void) close(fd);
        assert_true(pid_gone((pid_t) pid, 5000));
        IpFrame f;
        uint8_t *found = list_find(in, pid, &f);
        assert_null(found);
        free(found);
        free(rx.body);
}

static void test_grandchild_holds_pipe(void **state)
{
        Rx rx = {0};
        uint32_t pid = 0;
        int fd = start(*state,
                       &(SpawnReq){.argv = (const char *const[]){"sh", "-c", "sleep 30 & echo done",
                                                                 NULL}},
                       &pid, &rx);
        uint64_t t0 = mono_ms();
        Result res = {0};
        collect(fd, &rx, &res);
        assert_true(mono_ms() - t0 < 5000);
        assert_string_equal(res.out, "done\n");
        assert_int_equal(res.exit_code, 0);
        (void) kill(-(pid_t) pid, SIGKILL); /* the orphaned sleep, same group */
        result_free(&res);
        finish(fd, &rx);
}

static void expect_error_then_eof(int fd, uint32_t err)
{
        Rx rx = {0};
        const IpFrame *f = cli_recv(fd, &rx);
        assert_int_equal(f->type, IP_MSG_ERROR);
        assert_int_equal(get_u32(f, IP_TAG_ERRNO), err);
        assert_int_equal(ip_read_frame(fd, &rx.body, &rx.cap, &rx.f), 0);
        free(rx.body);
}

static void test_protocol_errors(void **state)
{
        Init *in = *state;

        int fd = cli_connect(in);
        cli_send_simple(fd, IP_MSG_PING);
        Rx rx = {0};
        assert_int_equal(cli_recv(fd, &rx)->type, IP_MSG_OK);
        cli_send_simple(fd, (IpMsgType) 99);
        expect_error_then_eof(fd, EPROTO);
        (void) close(fd);

        /* A field whose length runs past the body. */
        fd = cli_connect(in);
        const uint8_t bad[] = {6, 0, 0, 0, IP_MSG_PING, IP_TAG_PID, 9, 0, 0, 0, 1};
        assert_int_equal(ip_write_all(fd, bad, sizeof(bad)), 0);
        expect_error_then_eof(fd, EPROTO);
        (void) close(fd);

        fd = cli_connect(in);
        cli_send_simple(fd, IP_MSG_SPAWN);
        expect_error_then_eof(fd, EINVAL);
        (void) close(fd);

        /* Body length over IP_MAX_BODY. */
        fd = cli_connect(in);
        const uint8_t huge[] = {0xff, 0xff, 0xff, 0x7f, IP_MSG_PING};
        assert_int_equal(ip_write_all(fd, huge, sizeof(huge)), 0);
        expect_error_then_eof(fd, EPROTO);
        (void) close(fd);

        /* init is still fine. */
        fd = cli_connect(in);
        cli_send_simple(fd, IP_MSG_PING);
        assert_int_equal(cli_recv(fd, &rx)->type, IP_MSG_OK);
        finish(fd, &rx);
}

/* SET_SECRETS: the sandbox's secrets reach every later process unless its ENV
 * names them; SECRET_ENV adds a process's own; both are masked in the output,
 * also when a value arrives in two reads; malformed entries are refused. */
static void test_secrets(void **state)
{
        Init *in = *state;
        int fd = cli_connect(in);
        IpBuilder b;
        ip_builder_init(&b, IP_MSG_SET_SECRETS);
        ip_put_str(&b, IP_TAG_ENV, "S=abcdef-secret");
        ip_put_str(&b, IP_TAG_ENV, "T=xyz-42");
        cli_send(fd, &b);
        Rx rx = {0};
        assert_int_equal(cli_recv(fd, &rx)->type, IP_MSG_OK);
        (void) close(fd);

        Result res = {0};
        run(in,
            &(SpawnReq){.argv = (const char *const[]){"sh", "-c",
                                                      "printf %s \"${S%secret}\"; sleep 0.3; "
                                                      "printf 'secret|%s|%s|' \"$T\" \"$U\"; "
                                                      "echo \"$U\" >&2",
                                                      NULL},
                        .env = (const char *const[]){"PATH=/usr/bin:/bin", NULL},
                        .secret_env = (const char *const[]){"U=uvw-123", NULL}},
            &res);
        assert_int_equal(res.exit_code, 0);
        assert_string_equal(res.out, "***|***|***|");
        assert_string_equal(res.err, "***\n");
        result_free(&res);

        /* A name in ENV wins over the sandbox's secret. */
        run(in,
            &(SpawnReq){.argv = (const char *const[]){"sh", "-c", "echo \"$S\"", NULL},
                        .env = (const char *const[]){"PATH=/usr/bin:/bin", "S=plain", NULL}},
            &res);
        assert_string_equal(res.out, "plain\n");
        result_free(&res);

        /* A spawn error quoting a secret is masked. */
        char msg[256] = "";
        uint32_t pid = 0;
        assert_int_equal(spawn(in,
                               &(SpawnReq){.argv = (const char *const[]){"xyz-42", NULL},
                                           .env = (const char *const[]){"PATH=/bin", NULL}},
                               &pid, &rx, msg, sizeof(msg)),
                         -ENOENT);
        assert_null(strstr(msg, "xyz-42"));
        assert_non_null(strstr(msg, "***"));

        fd = cli_connect(in);
        ip_builder_init(&b, IP_MSG_SET_SECRETS);
        ip_put_str(&b, IP_TAG_ENV, "NOEQUALS");
        cli_send(fd, &b);
        expect_error_then_eof(fd, EINVAL);
        (void) close(fd);
        free(rx.body);
}

/* RESIZE with PID (pid 0: none, on the streaming connection fd); the reply's
 * errno from a new connection, 0 = OK; on fd nothing is answered. */
static int resize(const Init *in, int fd, uint32_t pid, uint32_t cols, uint32_t rows)
{
        int c = fd >= 0 ? fd : cli_connect(in);
        IpBuilder b;
        ip_builder_init(&b, IP_MSG_RESIZE);
        if (pid)
                ip_put_u32(&b, IP_TAG_PID, pid);
        ip_put_u32(&b, IP_TAG_COLS, cols);
        ip_put_u32(&b, IP_TAG_ROWS, rows);
        cli_send(c, &b);
        return fd >= 0 ? 0 : answer_and_close(c);
}

static const char *const sh_path[] = {"PATH=/usr/bin:/bin", NULL};

/* A PTY process: stdin, stdout and stderr are one terminal of the asked size,
 * its controlling tty; output comes only as PTY events; secrets are masked. */
static void test_pty(void **state)
{
        Result res = {0};
        run(*state,
            &(SpawnReq){.argv = (const char *const[]){"sh", "-c",
                                                      "tty; stty size; test -t 0 && test -t 1 && "
                                                      "test -t 2 && echo all-tty; echo err >&2; "
                                                      "echo \"$U\" >/dev/tty; exit 4",
                                                      NULL},
                        .env = sh_path,
                        .secret_env = (const char *const[]){"U=uvw-123", NULL},
                        .flags = IP_FLAG_PTY,
                        .cols = 100,
                        .rows = 30},
            &res);
        assert_true(res.exited);
        assert_int_equal(res.exit_code, 4);
        assert_null(res.out);
        assert_null(res.err);
        assert_non_null(res.pty);
        assert_non_null(strstr(res.pty, "/dev/pts/"));
        assert_non_null(strstr(res.pty, "30 100\r\n")); /* onlcr: a terminal's newlines */
        assert_non_null(strstr(res.pty, "all-tty\r\n"));
        assert_non_null(strstr(res.pty, "err\r\n"));
        assert_non_null(strstr(res.pty, "***\r\n"));
        assert_null(strstr(res.pty, "uvw-123"));
        result_free(&res);
}

/* Input goes to the terminal (and is echoed), RESIZE on the stream and with
 * PID changes the size and sends SIGWINCH, STDIN_EOF leaves the terminal alone. */
static void test_pty_input_resize(void **state)
{
        Init *in = *state;
        Rx rx = {0};
        uint32_t pid = 0;
        int fd = start(in,
                       &(SpawnReq){.argv = (const char *const[]){"sh", "-c",
                                                                 "while read l; do "
                                                                 "[ \"$l\" = q ] && exit 7; "
                                                                 "echo \"got $l\"; stty size; "
                                                                 "done",
                                                                 NULL},
                                   .env = sh_path,
                                   .flags = IP_FLAG_PTY,
                                   .cols = 80,
                                   .rows = 24},
                       &pid, &rx);
        Result res = {0};
        send_stdin(fd, 0, "one\n");
        collect_until(fd, &rx, &res, "got one\r\n24 80\r\n");
        assert_non_null(strstr(res.pty, "one\r\n")); /* the echo */
        assert_int_equal(resize(in, fd, 0, 120, 40), 0);
        send_stdin(fd, 0, "two\n");
        collect_until(fd, &rx, &res, "got two\r\n40 120\r\n");
        assert_int_equal(resize(in, -1, pid, 132, 43), 0);
        assert_int_equal(request(in, IP_MSG_STDIN, pid, 0, "three\n"), 0);
        collect_until(fd, &rx, &res, "got three\r\n43 132\r\n");
        /* Bad sizes and a process without a terminal are refused. */
        assert_int_equal(resize(in, -1, pid, 0, 10), EINVAL);
        assert_int_equal(resize(in, -1, pid, 10, IP_PTY_DIM_MAX + 1), EINVAL);
        assert_int_equal(resize(in, -1, 999999, 10, 10), ESRCH);
        send_stdin(fd, 0, "q\n");
        collect(fd, &rx, &res);
        assert_int_equal(res.exit_code, 7);
        assert_null(res.out);
        result_free(&res);
        (void) close(fd);

        /* The foreground process group gets SIGWINCH. */
        fd = start(in,
                   &(SpawnReq){.argv = (const char *const[]){"sh", "-c",
                                                             "trap 'echo winch; exit 5' WINCH; "
                                                             "echo ready; "
                                                             "while :; do sleep 0.1; done",
                                                             NULL},
                               .env = sh_path,
                               .flags = IP_FLAG_PTY,
                               .cols = 80,
                               .rows = 24},
                   &pid, &rx);
        collect_until(fd, &rx, &res, "ready\r\n");
        assert_int_equal(resize(in, fd, 0, 81, 25), 0);
        collect(fd, &rx, &res);
        assert_int_equal(res.exit_code, 5);
        assert_non_null(strstr(res.pty, "winch\r\n"));
        result_free(&res);
        (void) close(fd);

        fd = start(in, &(SpawnReq){.argv = (const char *const[]){"sleep", "30", NULL}}, &pid, &rx);
        assert_int_equal(resize(in, -1, pid, 10, 10), ENOTTY);
        (void) close(fd); /* kills the foreground sleep */
        free(rx.body);
}

/* Output still in the terminal when the process exits is all delivered, also
 * when the reader only starts after the exit. */
static void test_pty_output_complete(void **state)
{
        Init *in = *state;
        Rx rx = {0};
        uint32_t pid = 0;
        int fd = start(in,
                       &(SpawnReq){.argv = (const char *const[]){"sh", "-c",
                                                                 "head -c 1000000 /dev/zero | "
                                                                 "tr '\\0' a; exit 3",
                                                                 NULL},
                                   .env = sh_path,
                                   .flags = IP_FLAG_PTY,
                                   .cols = 80,
                                   .rows = 24},
                       &pid, &rx);
        assert_true(pid_gone((pid_t) pid, IO_TIMEOUT_S * 1000));
        Result res = {0};
        collect(fd, &rx, &res);
        assert_int_equal(res.exit_code, 3);
        assert_int_equal(res.pty_len, 1000000);
        assert_int_equal(strspn(res.pty, "a"), 1000000);
        result_free(&res);
        finish(fd, &rx);
}

/* ^C on the terminal interrupts the foreground process group; a PTY without
 * a size is refused; a background PTY process replays its PTY output on ATTACH
 * and shows the PTY flag in LIST. */
static void test_pty_intr_and_errors(void **state)
{
        Init *in = *state;
        Rx rx = {0};
        uint32_t pid = 0;
        int fd = start(in,
                       &(SpawnReq){.argv = (const char *const[]){"sleep", "100", NULL},
                                   .flags = IP_FLAG_PTY,
                                   .cols = 80,
                                   .rows = 24},
                       &pid, &rx);
        send_stdin(fd, 0, "\x03");
        Result res = {0};
        collect(fd, &rx, &res);
        assert_int_equal(res.exit_code, -1);
        assert_int_equal(res.signo, SIGINT);
        result_free(&res);
        (void) close(fd);

        char msg[256] = "";
        assert_int_equal(spawn(in,
                               &(SpawnReq){.argv = (const char *const[]){"true", NULL},
                                           .flags = IP_FLAG_PTY},
                               &pid, &rx, msg, sizeof(msg)),
                         -EINVAL);
        assert_non_null(strstr(msg, "COLS and ROWS"));
        assert_int_equal(spawn(in,
                               &(SpawnReq){.argv = (const char *const[]){"true", NULL},
                                           .flags = IP_FLAG_PTY,
                                           .cols = 80,
                                           .rows = IP_PTY_DIM_MAX + 1},
                               &pid, &rx, msg, sizeof(msg)),
                         -EINVAL);

        fd = start(in,
                   &(SpawnReq){.argv = (const char *const[]){"echo", "bg-pty", NULL},
                               .env = sh_path,
                               .flags = IP_FLAG_PTY | IP_FLAG_BACKGROUND,
                               .cols = 80,
                               .rows = 24},
                   &pid, &rx);
        collect(fd, &rx, &res);
        assert_int_equal(res.exit_code, 0);
        result_free(&res);
        (void) close(fd);
        fd = attach(in, pid);
        collect(fd, &rx, &res);
        assert_string_equal(res.pty, "bg-pty\r\n");
        result_free(&res);
        (void) close(fd);
        IpFrame pf;
        cleanup_free uint8_t *found = list_find(in, pid, &pf);
        assert_non_null(found);
        assert_true(get_u32(&pf, IP_TAG_FLAGS) & IP_FLAG_PTY);
        free(rx.body);
}

static void test_user_lookup(void **state)
{
        (void) state;
        char path[] = "/tmp/sandpit-passwd.XXXXXX";
        int fd = mkstemp(path);
        assert_true(fd >= 0);
        const char *text = "root:x:0:0:root:/root:/bin/sh\n"
                           "# comment\n"
                           "broken line\n"
                           "alice:x:1000:1001::/home/alice:/bin/sh\n"
                           "bob:x:1002:1002:Bob:/home/bob:/bin/sh";
        assert_int_equal(write(fd, text, strlen(text)), (ssize_t) strlen(text));
        (void) close(fd);

        InitUser u;
        assert_int_equal(init_user_lookup(path, "alice", &u), 0);
        assert_int_equal(u.uid, 1000);
        assert_int_equal(u.gid, 1001);
        assert_string_equal(u.home, "/home/alice");
        init_user_done(&u);
        assert_int_equal(init_user_lookup(path, "1002", &u), 0);
        assert_string_equal(u.home, "/home/bob");
        init_user_done(&u);
        assert_int_equal(init_user_lookup(path, "4242", &u), 0);
        assert_int_equal(u.uid, 4242);
        assert_int_equal(u.gid, 0);
        init_user_done(&u);
        assert_int_equal(init_user_lookup(path, "carol", &u), -ENOENT);
        assert_int_equal(init_user_lookup(path, "ali", &u), -ENOENT);
        assert_int_equal(init_user_lookup(path, "", &u), -EINVAL);
        assert_int_equal(init_user_lookup("/nonexistent/passwd", "root", &u), 0);
        assert_int_equal(u.uid, 0);
        init_user_done(&u);
        (void) unlink(path);
}

/* As in a sandbox: init listens on the socket it got as fd 4, so a connection's
 * SO_PEERCRED names init (the agent's check, docs/init-protocol.md). */
static void test_inherited_socket(void **state)
{
        (void) state;
        Init in;
        if (init_start_mode(&in, true, true) < 0)
                fail_msg("cannot start %s", init_bin());
        int fd = cli_connect(&in);
        struct ucred cred;
        socklen_t len = sizeof(cred);
        assert_int_equal(getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len), 0);
        assert_int_equal(cred.pid, in.pid);
        cli_send_simple(fd, IP_MSG_PING);
        Rx rx = {0};
        assert_int_equal(cli_recv(fd, &rx)->type, IP_MSG_OK);
        finish(fd, &rx);
        assert_int_equal(init_stop(&in), 0);
}

/* Neither fd 4 nor --socket: init refuses to start rather than bind anything. */
static void test_no_socket(void **state)
{
        (void) state;
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                (void) close_range(IP_READY_FD, ~0U, 0);
                int null = open("/dev/null", O_WRONLY);
                if (null >= 0)
                        (void) dup2(null, 2);
                const char *bin = init_bin();
                execl(bin, bin, "--allow-local-peers", (char *) NULL);
                _exit(127);
        }
        int status = 0;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), EXIT_FAILURE);
}

/* --channel (runsc): fd 0 is the agent's socket pair; each conversation is a
 * socket pair sent over it. */
static void channel_send_conn(int ch, int *ret_fd)
{
        int sp[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
        static const char conn = IP_CHANNEL_CONN;
        assert_int_equal(ip_send_fd(ch, &conn, 1, sp[1]), 1);
        (void) close(sp[1]);
        *ret_fd = sp[0];
}

static void channel_ping(int ch)
{
        int fd;
        channel_send_conn(ch, &fd);
        cli_send_simple(fd, IP_MSG_PING);
        Rx rx = {0};
        assert_int_equal(cli_recv(fd, &rx)->type, IP_MSG_OK);
        free(rx.body);
        (void) close(fd);
}

static char channel_read_byte(int fd)
{
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        char byte = 0;
        if (poll(&pfd, 1, IO_TIMEOUT_S * 1000) != 1 || read(fd, &byte, 1) != 1)
                return 0;
        return byte;
}

static pid_t spawn_with_stdin(int fd, const char *arg)
{
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                if (dup2(fd, 0) < 0)
                        _exit(126);
                (void) close_range(3, ~0U, 0);
                const char *bin = init_bin();
                execl(bin, bin, arg, (char *) NULL);
                _exit(127);
        }
        return pid;
}

static void test_channel(void **state)
{
        (void) state;
        int ch[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ch), 0);
        pid_t pid = spawn_with_stdin(ch[1], "--channel");
        (void) close(ch[1]);
        assert_int_equal(channel_read_byte(ch[0]), IP_CHANNEL_READY);
        uint8_t key[1 + IP_CHANNEL_KEY_SIZE];
        key[0] = IP_CHANNEL_KEY;
        memset(key + 1, 0x5a, IP_CHANNEL_KEY_SIZE);
        assert_int_equal(write(ch[0], key, sizeof(key)), (ssize_t) sizeof(key));
        channel_ping(ch[0]);
        channel_ping(ch[0]); /* one socket pair per conversation */

        /* A peer with a wrong key is closed without an answer; the channel stays. */
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        memcpy(sa.sun_path + 1, IP_RECHANNEL_NAME, strlen(IP_RECHANNEL_NAME));
        socklen_t len = (socklen_t) (offsetof(struct sockaddr_un, sun_path) + 1 +
                                     strlen(IP_RECHANNEL_NAME));
        int bad = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(bad >= 0);
        assert_int_equal(connect(bad, (struct sockaddr *) &sa, len), 0);
        uint8_t wrong[IP_CHANNEL_KEY_SIZE] = {0};
        assert_int_equal(write(bad, wrong, sizeof(wrong)), (ssize_t) sizeof(wrong));
        char c;
        assert_int_equal(read(bad, &c, 1), 0);
        (void) close(bad);
        channel_ping(ch[0]);

        /* `--rechannel` with the key: the new pair is the channel, the old one closed. */
        int nc[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, nc), 0);
        assert_int_equal(write(nc[0], key, sizeof(key)), (ssize_t) sizeof(key));
        pid_t helper = spawn_with_stdin(nc[1], "--rechannel");
        (void) close(nc[1]);
        int status = 0;
        assert_int_equal(waitpid(helper, &status, 0), helper);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
        assert_int_equal(channel_read_byte(nc[0]), IP_CHANNEL_READY);
        channel_ping(nc[0]);
        assert_int_equal(read(ch[0], &c, 1), 0);
        (void) close(ch[0]);

        /* The helper without a key on its stdin fails and changes nothing. */
        int empty[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, empty), 0);
        (void) close(empty[0]);
        helper = spawn_with_stdin(empty[1], "--rechannel");
        (void) close(empty[1]);
        assert_int_equal(waitpid(helper, &status, 0), helper);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), EXIT_FAILURE);
        channel_ping(nc[0]);

        (void) close(nc[0]);
        (void) kill(pid, SIGTERM);
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
}

/* Each test gets an init of its own. */
#define WITH_INIT(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
        (void) signal(SIGPIPE, SIG_IGN);
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_user_lookup),
                WITH_INIT(test_echo),
                WITH_INIT(test_exit_code_and_stderr),
                WITH_INIT(test_env_and_cwd),
                WITH_INIT(test_signal),
                WITH_INIT(test_timeout),
                WITH_INIT(test_stdin_data),
                WITH_INIT(test_stdin_stream),
                WITH_INIT(test_stdin_closed),
                WITH_INIT(test_background_attach),
                WITH_INIT(test_exit_record),
                WITH_INIT(test_list),
                WITH_INIT(test_spawn_errors),
                WITH_INIT(test_user_nobody),
                cmocka_unit_test(test_peer_check),
                cmocka_unit_test(test_inherited_socket),
                cmocka_unit_test(test_no_socket),
                cmocka_unit_test(test_channel),
                WITH_INIT(test_foreground_killed_on_close),
                WITH_INIT(test_grandchild_holds_pipe),
                WITH_INIT(test_protocol_errors),
                WITH_INIT(test_secrets),
                WITH_INIT(test_pty),
                WITH_INIT(test_pty_input_resize),
                WITH_INIT(test_pty_intr_and_errors),
                WITH_INIT(test_pty_output_complete),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}

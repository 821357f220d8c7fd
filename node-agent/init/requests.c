/* sandpit-init's requests (docs/init-protocol.md): SPAWN, ATTACH, the input
 * of a process (STDIN, STDIN_EOF, SIGNAL, RESIZE), LIST, PING and SET_SECRETS.
 * Each handler answers on its connection through the loop (main.c,
 * init-internal.h); none blocks. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "init-internal.h"
#include "initproto.h"
#include "mask.h"
#include "passwd.h"
#include "pty.h"
#include "sandpit/macro.h"
#include "spawn.h"

#define STDIN_MAX      ((size_t) 16 << 20)
#define TIMEOUT_MS_MAX (UINT64_C(1) << 40)
#define PASSWD_PATH    "/etc/passwd"

/* The sandbox's secret env, "NAME=value" (SET_SECRETS): memory only, never logged. */
static char **sandbox_secrets;

/* strv_free() that first zeroes the strings: they hold secret values. */
static void secret_strv_free(char **v)
{
        for (char **s = v; s && *s; s++)
                explicit_bzero(*s, strlen(*s));
        strv_free(v);
}

static void secret_strv_freep(char ***v)
{
        secret_strv_free(*v);
}
#define cleanup_secret_strv __attribute__((cleanup(secret_strv_freep)))

/* Collects the repeated string fields with this tag into a NULL-terminated
 * vector. 0, -EPROTO (embedded NUL) or -ENOMEM. */
static int get_strv(const IpFrame *f, IpTag tag, char ***ret, size_t *ret_n)
{
        size_t off = 0, n = 0;
        uint8_t t;
        const uint8_t *val;
        uint32_t len;
        while (ip_next_field(f, &off, &t, &val, &len) > 0)
                if (t == tag)
                        n++;
        char **v = calloc(n + 1, sizeof(char *));
        if (!v)
                return -ENOMEM;
        int r = 0;
        off = 0;
        n = 0;
        while (r == 0 && ip_next_field(f, &off, &t, &val, &len) > 0) {
                if (t != tag)
                        continue;
                if (memchr(val, 0, len))
                        r = -EPROTO;
                else if (!(v[n++] = strndup((const char *) val, len)))
                        r = -ENOMEM;
        }
        if (r < 0) {
                strv_free(v);
                return r;
        }
        *ret = v;
        *ret_n = n;
        return 0;
}

/* Optional string field: 0 with *ret NULL when absent. */
static int get_opt_str(const IpFrame *f, IpTag tag, char **ret)
{
        int r = ip_get_strdup(f, tag, ret);
        if (r == -ENOENT) {
                *ret = NULL;
                return 0;
        }
        return r;
}

/* Sets "NAME=value" (entry), replacing NAME if present (override) or leaving an
 * existing NAME alone (!override). */
static int env_put(char ***envp, size_t *n, const char *entry, bool override)
{
        size_t klen = strcspn(entry, "=");
        for (char **e = *envp; e && *e; e++)
                if (strncmp(*e, entry, klen) == 0 && (*e)[klen] == '=') {
                        if (!override)
                                return 0;
                        char *dup = strdup(entry);
                        if (!dup)
                                return -ENOMEM;
                        explicit_bzero(*e, strlen(*e));
                        free(*e);
                        *e = dup;
                        return 0;
                }
        char **v = realloc(*envp, (*n + 2) * sizeof(char *));
        if (!v)
                return -ENOMEM;
        *envp = v;
        if (!(v[*n] = strdup(entry)))
                return -ENOMEM;
        v[++*n] = NULL;
        return 0;
}

/* The values of "NAME=value" entries of both lists, for a masker. Borrowed
 * pointers into the entries; free only the array. */
static char **secret_values(char **a, char **b)
{
        size_t n = 0;
        for (char **e = a; e && *e; e++)
                n++;
        for (char **e = b; e && *e; e++)
                n++;
        char **v = calloc(n + 1, sizeof(char *));
        if (!v)
                return NULL;
        n = 0;
        for (char **e = a; e && *e; e++)
                v[n++] = *e + strcspn(*e, "=") + (strchr(*e, '=') ? 1 : 0);
        for (char **e = b; e && *e; e++)
                v[n++] = *e + strcspn(*e, "=") + (strchr(*e, '=') ? 1 : 0);
        return v;
}

/* Adds NAME=value unless the caller's environment already has NAME. */
static int env_default(char ***envp, size_t *n, const char *name, const char *value)
{
        size_t len = strlen(name);
        STRV_FOREACH(e, *envp)
                if (strncmp(*e, name, len) == 0 && (*e)[len] == '=')
                        return 0;
        char **v = realloc(*envp, (*n + 2) * sizeof(char *));
        if (!v)
                return -ENOMEM;
        *envp = v;
        if (asprintf(&v[*n], "%s=%s", name, value) < 0) {
                v[*n] = NULL;
                return -ENOMEM;
        }
        v[++*n] = NULL;
        return 0;
}

static void handle_spawn(Conn *c, const IpFrame *f)
{
        cleanup_strv char **argv = NULL;
        cleanup_secret_strv char **envp = NULL;
        cleanup_secret_strv char **secrets = NULL;
        cleanup_free char *cwd = NULL;
        cleanup_free char *user = NULL;
        cleanup_free char *tag = NULL;
        size_t nargs = 0, nenv = 0, nsecrets = 0;
        uint64_t timeout_ms = 0;
        uint32_t flags = 0;
        const uint8_t *data = NULL;
        uint32_t data_len = 0;
        bool has_data;
        int r;

        if ((r = get_strv(f, IP_TAG_ARG, &argv, &nargs)) < 0 ||
            (r = get_strv(f, IP_TAG_ENV, &envp, &nenv)) < 0 ||
            (r = get_strv(f, IP_TAG_SECRET_ENV, &secrets, &nsecrets)) < 0 ||
            (r = get_opt_str(f, IP_TAG_CWD, &cwd)) < 0 ||
            (r = get_opt_str(f, IP_TAG_USER, &user)) < 0 ||
            (r = get_opt_str(f, IP_TAG_TAG, &tag)) < 0) {
                conn_fail(c, -r, "SPAWN: bad string field");
                return;
        }
        r = ip_get_u64(f, IP_TAG_TIMEOUT_MS, &timeout_ms);
        if (r < 0 && r != -ENOENT) {
                conn_fail(c, EPROTO, "SPAWN: bad TIMEOUT_MS");
                return;
        }
        r = ip_get_u32(f, IP_TAG_FLAGS, &flags);
        if (r < 0 && r != -ENOENT) {
                conn_fail(c, EPROTO, "SPAWN: bad FLAGS");
                return;
        }
        has_data = ip_get_bytes(f, IP_TAG_DATA, &data, &data_len) == 0;
        uint32_t cols = 0, rows = 0;
        bool pty = flags & IP_FLAG_PTY;
        if (pty && (ip_get_u32(f, IP_TAG_COLS, &cols) == -EPROTO ||
                    ip_get_u32(f, IP_TAG_ROWS, &rows) == -EPROTO)) {
                conn_fail(c, EPROTO, "SPAWN: bad COLS or ROWS");
                return;
        }
        if (nargs == 0 || !*argv[0]) {
                conn_fail(c, EINVAL, "SPAWN without ARG");
                return;
        }
        if (loop_terminating()) {
                conn_error(c, ESHUTDOWN, "init is shutting down");
                return;
        }
        if (pty && (cols < 1 || cols > IP_PTY_DIM_MAX || rows < 1 || rows > IP_PTY_DIM_MAX)) {
                conn_error(c, EINVAL, "SPAWN: a PTY needs COLS and ROWS of 1 to %u",
                           IP_PTY_DIM_MAX);
                return;
        }
        if (timeout_ms > TIMEOUT_MS_MAX)
                timeout_ms = TIMEOUT_MS_MAX;

        /* The sandbox's secrets unless the request names them (an exec's env wins);
         * the request's own secrets always. Both are masked in the output. */
        Masker *mask[2] = {NULL, NULL};
        cleanup_free char **values = secret_values(sandbox_secrets, secrets);
        r = values ? 0 : -ENOMEM;
        for (char **e = sandbox_secrets; r == 0 && e && *e; e++)
                r = env_put(&envp, &nenv, *e, false);
        for (char **e = secrets; r == 0 && e && *e; e++)
                r = env_put(&envp, &nenv, *e, true);
        if (r == 0 && (r = mask_new(values, &mask[0])) == 0 && mask[0] &&
            (r = mask_new(values, &mask[1])) < 0) {
                mask_free(mask[0]);
                mask[0] = NULL;
        }
        if (r < 0) {
                conn_error(c, ENOMEM, "out of memory");
                return;
        }

        const char *uname = user ? user : "root";
        InitUser u = {0};
        r = init_user_lookup(PASSWD_PATH, uname, &u);
        if (r < 0) {
                mask_free(mask[0]);
                mask_free(mask[1]);
                if (r == -ENOMEM)
                        conn_error(c, ENOMEM, "look up user %s: %s", uname, strerror(-r));
                else
                        conn_error(c, -r, "unknown user %s", uname);
                return;
        }
        /* What login(1) would set; the caller's env wins. */
        if (env_default(&envp, &nenv, "HOME", u.home) < 0 ||
            env_default(&envp, &nenv, "USER", uname) < 0 ||
            env_default(&envp, &nenv, "LOGNAME", uname) < 0) {
                init_user_done(&u);
                mask_free(mask[0]);
                mask_free(mask[1]);
                conn_error(c, ENOMEM, "out of memory");
                return;
        }
        /* A PTY's master is both the output (out) and, through a dup so that
         * epoll can watch the two directions apart, the input (in). */
        cleanup_close int master = -1, slave = -1, master_in = -1;
        if (pty && (r = init_pty_open(cols, rows, u.uid, &master, &slave)) == 0 &&
            (master_in = fcntl(master, F_DUPFD_CLOEXEC, 3)) < 0)
                r = negative_errno();
        if (r < 0) {
                init_user_done(&u);
                mask_free(mask[0]);
                mask_free(mask[1]);
                conn_error(c, -r, "open a pseudo-terminal: %s", strerror(-r));
                return;
        }
        InitSpawnSpec spec = {
                .argv = argv,
                .envp = envp,
                .cwd = cwd ? cwd : u.home,
                .cwd_default = !cwd,
                .uid = u.uid,
                .gid = u.gid,
                .stdin_pipe = has_data || (flags & IP_FLAG_STDIN_OPEN),
                .pty = pty,
                .pty_slave = slave,
        };
        InitChild ch;
        cleanup_free char *msg = NULL;
        uint64_t started = now_us(CLOCK_REALTIME), start_mono = now_us(CLOCK_MONOTONIC);
        r = init_spawn(&spec, &ch, &msg);
        init_user_done(&u);
        /* Only the child holds the slave now: its last close ends the master's reads. */
        closep(&slave);
        if (r == 0 && pty) {
                ch.stdout_fd = TAKE_FD(master);
                ch.stdin_fd = TAKE_FD(master_in);
        }
        if (r < 0) {
                /* The message may quote argv or cwd, which may hold a secret. */
                cleanup_free char *masked = mask_string(mask[0], msg ? msg : "spawn failed");
                mask_free(mask[0]);
                mask_free(mask[1]);
                conn_error(c, -r, "%s", masked ? masked : "spawn failed");
                return;
        }

        Proc *p = calloc(1, sizeof(*p));
        if (!p) {
                mask_free(mask[0]);
                mask_free(mask[1]);
                (void) kill(ch.pid, SIGKILL); /* reaped as a stranger */
                (void) close(ch.stdout_fd);
                if (ch.stderr_fd >= 0)
                        (void) close(ch.stderr_fd);
                if (ch.stdin_fd >= 0)
                        (void) close(ch.stdin_fd);
                conn_error(c, ENOMEM, "out of memory");
                return;
        }
        *p = (Proc){
                .pid = ch.pid,
                .argv = TAKE_PTR(argv),
                .tag = TAKE_PTR(tag),
                .flags = flags,
                .started_us = started,
                .start_mono_us = start_mono,
                .deadline_us = timeout_ms ? start_mono + timeout_ms * 1000u : 0,
                .in = {.kind = SRC_STDIN, .fd = ch.stdin_fd, .owner = p},
                .out = {.kind = SRC_STDOUT, .fd = ch.stdout_fd, .owner = p},
                .err = {.kind = SRC_STDERR, .fd = ch.stderr_fd, .owner = p},
                .stdin_eof = !pty && !(flags & IP_FLAG_STDIN_OPEN),
                .mask = {mask[0], mask[1]},
        };
        proc_add(p);

        IpBuilder b;
        ip_builder_init(&b, IP_MSG_STARTED);
        ip_put_u32(&b, IP_TAG_PID, (uint32_t) p->pid);
        conn_send(c, &b);
        c->proc = p;
        c->spawner = true;
        c->streamed = true;

        if (has_data && init_buf_append(&p->stdin_buf, data, data_len) < 0)
                p->stdin_eof = true; /* cannot happen short of OOM; give EOF */
        proc_stdin_pump(p);
        conn_update(c);
}

static void handle_attach(Conn *c, const IpFrame *f)
{
        uint32_t pid;
        int r = ip_get_u32(f, IP_TAG_PID, &pid);
        if (r < 0) {
                conn_fail(c, r == -ENOENT ? EINVAL : EPROTO, "ATTACH needs PID");
                return;
        }
        Proc *p = proc_find((pid_t) pid, false);
        if (!p) {
                conn_error(c, ESRCH, "no process %u", pid);
                return;
        }
        /* STARTED acknowledges at once, so the agent can answer before any output. */
        IpBuilder b;
        ip_builder_init(&b, IP_MSG_STARTED);
        ip_put_u32(&b, IP_TAG_PID, pid);
        conn_send(c, &b);
        /* Every reconnect replays the backlog (the last BACKLOG_MAX bytes). */
        if (p->backlog.len > 0 &&
            init_buf_append(&c->out, init_buf_head(&p->backlog), p->backlog.len) < 0) {
                c->dead = true;
                conn_update(c);
                return;
        }
        if (p->exited) {
                conn_send_exit(c, p);
                return;
        }
        c->proc = p;
        c->spawner = false;
        c->streamed = true;
        conn_update(c);
}

/* STDIN, STDIN_EOF, SIGNAL and RESIZE. Without PID they refer to the process this
 * connection streams and are never answered; with PID on a connection that
 * streams nothing they are standalone requests answered by OK or ERROR. */
static void handle_input(Conn *c, const IpFrame *f)
{
        static const char *const names[] = {
                [IP_MSG_STDIN] = "STDIN",
                [IP_MSG_STDIN_EOF] = "STDIN_EOF",
                [IP_MSG_SIGNAL] = "SIGNAL",
                [IP_MSG_RESIZE] = "RESIZE",
        };
        const char *name = names[f->type];
        uint32_t pid;
        Proc *p;
        int r = ip_get_u32(f, IP_TAG_PID, &pid);
        if (r == -ENOENT) {
                if (!c->proc) {
                        if (!c->streamed)
                                conn_fail(c, EINVAL, "%s needs PID", name);
                        return; /* its process is gone: too late, not an error */
                }
                p = c->proc;
                pid = (uint32_t) p->pid;
        } else if (r < 0) {
                conn_fail(c, EPROTO, "%s: bad PID", name);
                return;
        } else {
                p = proc_find((pid_t) pid, true);
        }
        bool reply = !c->proc;

        const uint8_t *data = NULL;
        uint32_t len = 0, signo = 0;
        if (f->type == IP_MSG_STDIN && (r = ip_get_bytes(f, IP_TAG_DATA, &data, &len)) < 0) {
                conn_fail(c, r == -ENOENT ? EINVAL : EPROTO, "STDIN needs DATA");
                return;
        }
        if (f->type == IP_MSG_SIGNAL && (r = ip_get_u32(f, IP_TAG_SIGNO, &signo)) < 0) {
                conn_fail(c, r == -ENOENT ? EINVAL : EPROTO, "SIGNAL needs SIGNO");
                return;
        }
        uint32_t cols = 0, rows = 0;
        if (f->type == IP_MSG_RESIZE && ((r = ip_get_u32(f, IP_TAG_COLS, &cols)) < 0 ||
                                         (r = ip_get_u32(f, IP_TAG_ROWS, &rows)) < 0)) {
                conn_fail(c, r == -ENOENT ? EINVAL : EPROTO, "RESIZE needs COLS and ROWS");
                return;
        }

        int err = 0;
        if (!p) {
                err = ESRCH;
        } else if (f->type == IP_MSG_STDIN) {
                if (p->in.fd < 0 || p->stdin_eof)
                        err = EPIPE;
                else if (p->stdin_buf.len + len > STDIN_MAX)
                        err = ENOBUFS;
                else if (init_buf_append(&p->stdin_buf, data, len) < 0)
                        err = ENOMEM;
                else
                        proc_stdin_pump(p);
        } else if (f->type == IP_MSG_STDIN_EOF) {
                p->stdin_eof = true;
                proc_stdin_pump(p);
        } else if (f->type == IP_MSG_RESIZE) {
                if (!(p->flags & IP_FLAG_PTY))
                        err = ENOTTY;
                else if (cols < 1 || cols > IP_PTY_DIM_MAX || rows < 1 || rows > IP_PTY_DIM_MAX)
                        err = EINVAL;
                else if (p->out.fd < 0)
                        err = EPIPE;
                else
                        err = -init_pty_resize(p->out.fd, cols, rows);
        } else if (signo == 0 || signo >= NSIG) {
                err = EINVAL;
        } else if (kill(-p->pid, (int) signo) < 0) {
                err = errno;
        }
        if (!reply)
                return;
        if (err == 0)
                conn_ok(c);
        else if (err == ESRCH)
                conn_error(c, err, "%s: no running process %u", name, pid);
        else if (err == EPIPE)
                conn_error(c, err, "%s: %s of %u is closed", name,
                           f->type == IP_MSG_RESIZE ? "the terminal" : "stdin", pid);
        else if (err == ENOTTY)
                conn_error(c, err, "%s: process %u has no pseudo-terminal", name, pid);
        else if (err == EINVAL && f->type == IP_MSG_RESIZE)
                conn_error(c, err, "%s: COLS and ROWS must be 1 to %u", name, IP_PTY_DIM_MAX);
        else
                conn_error(c, err, "%s %u: %s", name, pid, strerror(err));
}

/* Replaces the sandbox's secret env (applied to and masked in every later SPAWN). */
static void handle_set_secrets(Conn *c, const IpFrame *f)
{
        char **v = NULL;
        size_t n = 0;
        int r = get_strv(f, IP_TAG_ENV, &v, &n);
        if (r < 0) {
                conn_fail(c, -r, "SET_SECRETS: bad ENV field");
                return;
        }
        for (size_t i = 0; i < n; i++)
                if (!strchr(v[i], '=') || v[i][0] == '=') {
                        secret_strv_free(v);
                        conn_fail(c, EINVAL, "SET_SECRETS: ENV must be NAME=value");
                        return;
                }
        secret_strv_free(sandbox_secrets);
        sandbox_secrets = v;
        conn_ok(c);
}

static void handle_list(Conn *c)
{
        for (Proc *p = proc_list(); p && !c->dead; p = p->next) {
                IpBuilder b;
                ip_builder_init(&b, IP_MSG_PROCESS);
                ip_put_u32(&b, IP_TAG_PID, (uint32_t) p->pid);
                STRV_FOREACH(a, p->argv) {
                        cleanup_free char *masked = mask_string(p->mask[0], *a);
                        ip_put_str(&b, IP_TAG_ARG, masked ? masked : "***");
                }
                cleanup_free char *tag = p->tag ? mask_string(p->mask[0], p->tag) : NULL;
                if (p->tag)
                        ip_put_str(&b, IP_TAG_TAG, tag ? tag : "***");
                ip_put_u32(&b, IP_TAG_FLAGS, p->flags);
                ip_put_u32(&b, IP_TAG_STATE, p->exited ? IP_STATE_EXITED : IP_STATE_RUNNING);
                ip_put_u64(&b, IP_TAG_STARTED_US, p->started_us);
                if (p->exited)
                        proc_put_exit_fields(&b, p);
                proc_put_dropped(&b, p);
                conn_send(c, &b);
        }
        conn_ok(c);
}

void request_dispatch(Conn *c)
{
        IpFrame f = {.type = (IpMsgType) c->hdr[4], .body = c->body, .body_len = c->body_len};
        if (ip_validate(&f) < 0) {
                conn_fail(c, EPROTO, "malformed frame of type %u", c->hdr[4]);
                return;
        }
        bool input = f.type == IP_MSG_STDIN || f.type == IP_MSG_STDIN_EOF ||
                     f.type == IP_MSG_SIGNAL || f.type == IP_MSG_RESIZE;
        if (c->proc && !input) {
                conn_fail(c, EINVAL, "request %u on a streaming connection", c->hdr[4]);
                return;
        }
        switch (f.type) {
        case IP_MSG_SPAWN:
                handle_spawn(c, &f);
                break;
        case IP_MSG_ATTACH:
                handle_attach(c, &f);
                break;
        case IP_MSG_STDIN:
        case IP_MSG_STDIN_EOF:
        case IP_MSG_SIGNAL:
        case IP_MSG_RESIZE:
                handle_input(c, &f);
                break;
        case IP_MSG_LIST:
                handle_list(c);
                break;
        case IP_MSG_PING:
                conn_ok(c);
                break;
        case IP_MSG_SET_SECRETS:
                handle_set_secrets(c, &f);
                break;
        default:
                conn_fail(c, EPROTO, "unknown request type %u", c->hdr[4]);
                break;
        }
}

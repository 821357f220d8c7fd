/* sandpit-init: PID 1 of every sandbox.
 *
 * Reaps zombies, forwards termination signals to the process groups it started,
 * and runs commands for the host agent over the unix socket described in
 * initproto.h. One thread, one epoll loop, every fd non-blocking and
 * close-on-exec. epoll_wait() returns one event at a time, so a handler may free
 * any connection or process without leaving a stale pointer in a pending batch.
 *
 * Backpressure: a process's stdout/stderr are read only while every connection
 * watching it has at most CONN_OUT_HIGH bytes queued. Past that its pipes leave
 * the epoll set, the pipe fills and the child blocks in write(); reading resumes
 * as the slow connection drains. A connection's own requests are not read while
 * its queue is over the mark, or while the process it feeds has more than
 * STDIN_HIGH bytes of stdin pending (standalone STDIN requests over STDIN_MAX get
 * ENOBUFS). A background process nobody watches is never paused: its output goes
 * to a BACKLOG_MAX ring of frames that drops the oldest. So memory stays bounded
 * and a slow peer never blocks init or another peer. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <malloc.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "initproto.h"
#include "mask.h"
#include "passwd.h"
#include "pty.h"
#include "sandpit/macro.h"
#include "spawn.h"

#define READ_CHUNK        ((size_t) 64 << 10)
#define CONN_OUT_HIGH     ((size_t) 4 << 20)
#define STDIN_HIGH        ((size_t) 4 << 20)
#define STDIN_MAX         ((size_t) 16 << 20)
#define BACKLOG_MAX       ((size_t) 1 << 20)
#define BACKLOG_TOTAL_MAX ((size_t) 32 << 20)
#define EXIT_RECORDS_MAX  256u
#define EXIT_DRAIN_READS  16
/* A pty master gives at most 4 KiB a read (the line discipline's buffer) and its
 * buffers hold a few tens of KiB: more reads to drain it than a 64 KiB pipe. */
#define EXIT_DRAIN_READS_PTY 64
#define FRAMES_PER_WAKEUP    64
#define CONNS_MAX            1024u
#define TIMEOUT_MS_MAX       (UINT64_C(1) << 40)
#define PASSWD_PATH          "/etc/passwd"

typedef enum {
        SRC_SIGNAL,
        SRC_LISTEN,
        SRC_CONN,
        SRC_STDIN,
        SRC_STDOUT,
        SRC_STDERR,
} SrcKind;

/* One fd in the epoll set; events == 0 means not registered. */
typedef struct {
        SrcKind kind;
        int fd;
        uint32_t events;
        void *owner;
} Source;

typedef struct Proc {
        struct Proc *next;
        pid_t pid;
        char **argv;
        char *tag;
        uint32_t flags;
        uint64_t started_us; /* CLOCK_REALTIME */
        uint64_t start_mono_us;
        uint64_t deadline_us; /* CLOCK_MONOTONIC; 0 = none */
        bool exited;
        bool timed_out;
        int status;
        uint64_t duration_us;
        uint64_t exit_seq;
        Source in, out, err; /* with IP_FLAG_PTY: out is the pty master, in a dup of it */
        InitBuf stdin_buf;
        bool stdin_eof;   /* close stdin once stdin_buf is written */
        InitBuf backlog;  /* a background process's last STDOUT/STDERR frames, for ATTACH */
        uint64_t dropped; /* output bytes dropped from the backlog */
        Masker *mask[2];  /* stdout, stderr: NULL when the process knows no secret */
} Proc;

typedef struct Conn {
        struct Conn *next;
        Source src;
        uint8_t hdr[IP_HEADER_SIZE];
        size_t hdr_got;
        uint8_t *body;
        uint32_t body_len;
        uint32_t body_got;
        InitBuf out;
        Proc *proc;    /* the process this connection streams, if any */
        bool spawner;  /* proc was spawned here: a foreground proc dies with us */
        bool streamed; /* has streamed a process: PID-less input is never an error */
        bool closing;  /* read no more; close once out is flushed */
        bool dead;     /* close at the next event */
} Conn;

static struct {
        int epfd;
        Source sig;
        Source listen;
        Proc *procs; /* in spawn order */
        Conn *conns;
        unsigned n_conns;
        bool allow_local_peers;
        bool terminating;
        uint64_t exit_seq;
        char **secrets; /* the sandbox's secret env, "NAME=value": memory only, never logged */
} g = {.epfd = -1};

static uint8_t read_chunk[READ_CHUNK];

static void conn_update(Conn *c);
static void conn_detach(Conn *c);
static void proc_update(Proc *p);

__attribute__((format(printf, 2, 3))) static void log_error(int err, const char *fmt, ...)
{
        char msg[512];
        va_list ap;
        va_start(ap, fmt);
        (void) vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        /* One JSON object per line; our messages carry no quotes or controls but
         * paths might, so replace those. */
        for (char *p = msg; *p; p++)
                if (*p == '"' || *p == '\\' || (unsigned char) *p < 0x20)
                        *p = '?';
        struct timespec ts;
        (void) clock_gettime(CLOCK_REALTIME, &ts);
        (void) fprintf(stderr,
                       "{\"ts\":%lld.%03ld,\"level\":\"error\",\"component\":\"sandpit-init\","
                       "\"msg\":\"%s\",\"err\":\"%s\"}\n",
                       (long long) ts.tv_sec, ts.tv_nsec / 1000000, msg, strerror(err));
}

static uint64_t now_us(clockid_t clk)
{
        struct timespec ts;
        (void) clock_gettime(clk, &ts);
        return (uint64_t) ts.tv_sec * 1000000u + (uint64_t) ts.tv_nsec / 1000u;
}

static uint32_t le32(const uint8_t *p)
{
        return (uint32_t) p[0] | (uint32_t) p[1] << 8 | (uint32_t) p[2] << 16 |
               (uint32_t) p[3] << 24;
}

static void src_set(Source *s, uint32_t want)
{
        if (s->fd < 0 || s->events == want)
                return;
        /* Deregister rather than wait for no events: epoll reports EPOLLHUP
         * whatever the mask, which would spin on a paused pipe. */
        struct epoll_event ev = {.events = want, .data.ptr = s};
        int op = want == 0 ? EPOLL_CTL_DEL : s->events == 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD;
        if (epoll_ctl(g.epfd, op, s->fd, &ev) < 0) {
                log_error(errno, "epoll_ctl");
                return;
        }
        s->events = want;
}

static void src_close(Source *s)
{
        src_set(s, 0);
        closep(&s->fd);
        s->fd = -1;
        s->events = 0;
}

/* ---- processes ---- */

static Proc *proc_find(pid_t pid, bool running_only)
{
        for (Proc *p = g.procs; p; p = p->next)
                if (p->pid == pid && !p->exited)
                        return p;
        if (running_only)
                return NULL;
        for (Proc *p = g.procs; p; p = p->next)
                if (p->pid == pid)
                        return p;
        return NULL;
}

static bool any_running(void)
{
        for (Proc *p = g.procs; p; p = p->next)
                if (!p->exited)
                        return true;
        return false;
}

static void proc_kill(const Proc *p, int sig)
{
        (void) kill(-p->pid, sig);
        (void) kill(p->pid, sig);
}

static void proc_remove(Proc *p)
{
        for (Proc **pp = &g.procs; *pp; pp = &(*pp)->next)
                if (*pp == p) {
                        *pp = p->next;
                        break;
                }
        for (Conn *c = g.conns; c; c = c->next)
                if (c->proc == p)
                        c->proc = NULL;
        src_close(&p->in);
        src_close(&p->out);
        src_close(&p->err);
        init_buf_clear(&p->stdin_buf);
        init_buf_clear(&p->backlog);
        mask_free(p->mask[0]);
        mask_free(p->mask[1]);
        strv_free(p->argv);
        free(p->tag);
        free(p);
}

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

static void put_le32(uint8_t *p, uint32_t v)
{
        p[0] = (uint8_t) v;
        p[1] = (uint8_t) (v >> 8);
        p[2] = (uint8_t) (v >> 16);
        p[3] = (uint8_t) (v >> 24);
}

/* Appends a frame given as header + payload; 0 or -ENOMEM (buffer unchanged). */
static int buf_append_frame(InitBuf *b, const uint8_t *hdr, size_t hlen, const uint8_t *data,
                            size_t n)
{
        if (init_buf_append(b, hdr, hlen) < 0)
                return -ENOMEM;
        if (init_buf_append(b, data, n) < 0) {
                b->len -= hlen;
                if (b->len == 0)
                        init_buf_clear(b);
                return -ENOMEM;
        }
        return 0;
}

static void backlog_add(Proc *p, const uint8_t *hdr, size_t hlen, const uint8_t *data, size_t n)
{
        while (p->backlog.len > 0 && p->backlog.len + hlen + n > BACKLOG_MAX) {
                size_t flen = IP_HEADER_SIZE + le32(init_buf_head(&p->backlog));
                p->dropped += flen - hlen;
                init_buf_consume(&p->backlog, flen);
        }
        if (buf_append_frame(&p->backlog, hdr, hlen, data, n) < 0)
                p->dropped += n;
}

/* Sends a STDOUT/STDERR event to every watcher, or keeps it for a later ATTACH.
 * Built in place rather than with IpBuilder: this is the hot path. */
static void proc_emit(Proc *p, IpMsgType type, const uint8_t *data, size_t n)
{
        uint8_t hdr[IP_HEADER_SIZE + IP_FIELD_HEADER];
        put_le32(hdr, (uint32_t) (IP_FIELD_HEADER + n));
        hdr[4] = (uint8_t) type;
        hdr[5] = IP_TAG_DATA;
        put_le32(hdr + 6, (uint32_t) n);
        for (Conn *c = g.conns; c; c = c->next)
                if (c->proc == p) {
                        if (buf_append_frame(&c->out, hdr, sizeof(hdr), data, n) < 0)
                                c->dead = true;
                        conn_update(c);
                }
        if (p->flags & IP_FLAG_BACKGROUND)
                backlog_add(p, hdr, sizeof(hdr), data, n);
}

/* Output through the process's masker (if it has secrets): a possible partial
 * secret at the end of data is held back until the next read or final. */
static void proc_output(Proc *p, int which, const uint8_t *data, size_t n, bool final)
{
        IpMsgType type = (p->flags & IP_FLAG_PTY) ? IP_MSG_PTY
                         : which == 0             ? IP_MSG_STDOUT
                                                  : IP_MSG_STDERR;
        Masker *m = p->mask[which];
        if (!m) {
                if (n > 0)
                        proc_emit(p, type, data, n);
                return;
        }
        if (n == 0 && (!final || mask_held(m) == 0))
                return;
        uint8_t *out = NULL;
        size_t len = 0;
        if (mask_feed(m, data, n, final, &out, &len) < 0) {
                /* Out of memory: drop the output rather than let a secret through. */
                p->dropped += n;
                return;
        }
        /* Chunks above IP_MAX_BODY cannot occur: masking at most triples a 64 KiB read. */
        if (len > 0)
                proc_emit(p, type, out, len);
        free(out);
}

/* One read of a stdout/stderr pipe or a pty master (EIO there means every
 * holder of the slave has closed it: the end). Returns 1 when it got data. */
static int proc_read_pipe(Proc *p, Source *s)
{
        if (s->fd < 0)
                return 0;
        int which = s->kind == SRC_STDOUT ? 0 : 1;
        ssize_t n = read(s->fd, read_chunk, sizeof(read_chunk));
        if (n > 0) {
                proc_output(p, which, read_chunk, (size_t) n, false);
                return 1;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return 0;
        proc_output(p, which, NULL, 0, true);
        src_close(s);
        return 0;
}

static void proc_stdin_pump(Proc *p)
{
        while (p->in.fd >= 0 && p->stdin_buf.len > 0) {
                ssize_t n = write(p->in.fd, init_buf_head(&p->stdin_buf), p->stdin_buf.len);
                if (n > 0) {
                        init_buf_consume(&p->stdin_buf, (size_t) n);
                        continue;
                }
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno == EAGAIN)
                        break;
                /* EPIPE: the child stopped reading stdin; what is left is lost. */
                init_buf_clear(&p->stdin_buf);
                src_close(&p->in);
        }
        if (p->in.fd >= 0 && p->stdin_buf.len == 0 && p->stdin_eof)
                src_close(&p->in);
        proc_update(p);
        for (Conn *c = g.conns; c; c = c->next)
                if (c->proc == p)
                        conn_update(c);
}

static void proc_update(Proc *p)
{
        if (p->exited)
                return;
        bool paused = false;
        for (Conn *c = g.conns; c; c = c->next)
                if (c->proc == p && c->out.len > CONN_OUT_HIGH)
                        paused = true;
        src_set(&p->out, paused ? 0 : EPOLLIN);
        src_set(&p->err, paused ? 0 : EPOLLIN);
        src_set(&p->in, p->stdin_buf.len > 0 ? EPOLLOUT : 0);
}

static void put_exit_fields(IpBuilder *b, const Proc *p)
{
        bool sig = WIFSIGNALED(p->status);
        ip_put_i32(b, IP_TAG_EXIT_CODE, sig ? -1 : WEXITSTATUS(p->status));
        ip_put_u32(b, IP_TAG_SIGNO, sig ? (uint32_t) WTERMSIG(p->status) : 0);
        ip_put_u32(b, IP_TAG_TIMED_OUT, p->timed_out ? 1 : 0);
        ip_put_u64(b, IP_TAG_DURATION_US, p->duration_us);
}

static void put_dropped(IpBuilder *b, const Proc *p)
{
        char msg[96];
        if (p->dropped == 0)
                return;
        (void) snprintf(msg, sizeof(msg), "%llu bytes of output dropped while detached",
                        (unsigned long long) p->dropped);
        ip_put_str(b, IP_TAG_MESSAGE, msg);
}

static void conn_send(Conn *c, IpBuilder *b)
{
        if (ip_builder_finish(b) == 0 && init_buf_append(&c->out, b->buf, b->len) < 0)
                c->dead = true;
        ip_builder_free(b);
        conn_update(c);
}

static void conn_send_exit(Conn *c, const Proc *p)
{
        IpBuilder b;
        ip_builder_init(&b, IP_MSG_EXIT);
        ip_put_u32(&b, IP_TAG_PID, (uint32_t) p->pid);
        put_exit_fields(&b, p);
        put_dropped(&b, p);
        conn_send(c, &b);
}

/* Drops the oldest exit records beyond the count and memory bounds. */
static void prune_exit_records(void)
{
        for (;;) {
                unsigned n = 0;
                size_t bytes = 0;
                Proc *oldest = NULL;
                for (Proc *p = g.procs; p; p = p->next)
                        if (p->exited) {
                                n++;
                                bytes += p->backlog.len;
                                if (!oldest || p->exit_seq < oldest->exit_seq)
                                        oldest = p;
                        }
                if (!oldest || (n <= EXIT_RECORDS_MAX && bytes <= BACKLOG_TOTAL_MAX))
                        return;
                proc_remove(oldest);
        }
}

static void proc_exited(Proc *p, int status)
{
        p->status = status;
        p->duration_us = now_us(CLOCK_MONOTONIC) - p->start_mono_us;
        /* Output written before the exit is in the pipes now; take it, but do not
         * wait for a grandchild that holds them open. */
        int drain = (p->flags & IP_FLAG_PTY) ? EXIT_DRAIN_READS_PTY : EXIT_DRAIN_READS;
        for (int i = 0; i < drain && proc_read_pipe(p, &p->out) > 0; i++)
                ;
        for (int i = 0; i < EXIT_DRAIN_READS && proc_read_pipe(p, &p->err) > 0; i++)
                ;
        proc_output(p, 0, NULL, 0, true);
        proc_output(p, 1, NULL, 0, true);
        p->exited = true;
        p->exit_seq = ++g.exit_seq;
        src_close(&p->out);
        src_close(&p->err);
        src_close(&p->in);
        init_buf_clear(&p->stdin_buf);

        bool seen = false;
        for (Conn *c = g.conns; c; c = c->next)
                if (c->proc == p) {
                        seen = true;
                        conn_send_exit(c, p);
                        c->proc = NULL;
                        c->spawner = false;
                        conn_update(c);
                }
        /* A background process's record stays (bounded) so the list and later
         * reconnects show how it ended; a foreground one ends with its stream. */
        (void) seen;
        if (!(p->flags & IP_FLAG_BACKGROUND))
                proc_remove(p);
        else
                prune_exit_records();
}

static void reap(void)
{
        for (;;) {
                int status;
                pid_t pid = waitpid(-1, &status, WNOHANG);
                if (pid <= 0)
                        return;
                Proc *p = proc_find(pid, true);
                if (p)
                        proc_exited(p, status);
        }
}

static int next_timeout_ms(void)
{
        uint64_t next = UINT64_MAX;
        for (Proc *p = g.procs; p; p = p->next)
                if (!p->exited && p->deadline_us && !p->timed_out && p->deadline_us < next)
                        next = p->deadline_us;
        if (next == UINT64_MAX)
                return -1;
        uint64_t now = now_us(CLOCK_MONOTONIC);
        if (next <= now)
                return 0;
        uint64_t ms = (next - now + 999) / 1000;
        return ms > 60000 ? 60000 : (int) ms;
}

static void check_timeouts(void)
{
        uint64_t now = now_us(CLOCK_MONOTONIC);
        for (Proc *p = g.procs; p; p = p->next)
                if (!p->exited && p->deadline_us && !p->timed_out && p->deadline_us <= now) {
                        p->timed_out = true;
                        proc_kill(p, SIGKILL);
                }
}

/* ---- connections ---- */

static bool conn_input_paused(const Conn *c)
{
        return c->out.len > CONN_OUT_HIGH || (c->proc && c->proc->stdin_buf.len > STDIN_HIGH);
}

static void conn_update(Conn *c)
{
        uint32_t want = 0;
        if (c->dead) {
                conn_detach(c);
                init_buf_clear(&c->out);
                want = EPOLLOUT; /* the handler frees it */
        } else {
                if (!c->closing && !conn_input_paused(c))
                        want |= EPOLLIN;
                if (c->out.len > 0 || c->closing)
                        want |= EPOLLOUT;
        }
        src_set(&c->src, want);
        if (c->proc)
                proc_update(c->proc);
}

/* Stops streaming; a foreground process dies with its spawning connection. */
static void conn_detach(Conn *c)
{
        Proc *p = c->proc;
        if (!p)
                return;
        if (c->spawner && !p->exited && !(p->flags & IP_FLAG_BACKGROUND))
                proc_kill(p, SIGKILL);
        c->proc = NULL;
        c->spawner = false;
        proc_update(p);
}

static void conn_free(Conn *c)
{
        conn_detach(c);
        src_close(&c->src);
        for (Conn **cc = &g.conns; *cc; cc = &(*cc)->next)
                if (*cc == c) {
                        *cc = c->next;
                        break;
                }
        g.n_conns--;
        free(c->body);
        init_buf_clear(&c->out);
        free(c);
}

static int conn_flush(Conn *c)
{
        while (c->out.len > 0) {
                ssize_t n = send(c->src.fd, init_buf_head(&c->out), c->out.len,
                                 MSG_NOSIGNAL | MSG_DONTWAIT);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN)
                                return 0;
                        return -errno;
                }
                init_buf_consume(&c->out, (size_t) n);
        }
        return 0;
}

static void conn_ok(Conn *c)
{
        IpBuilder b;
        ip_builder_init(&b, IP_MSG_OK);
        conn_send(c, &b);
}

__attribute__((format(printf, 3, 0))) static void conn_verror(Conn *c, int err, const char *fmt,
                                                              va_list ap)
{
        cleanup_free char *msg = NULL;
        if (vasprintf(&msg, fmt, ap) < 0)
                msg = NULL;
        IpBuilder b;
        ip_builder_init(&b, IP_MSG_ERROR);
        ip_put_u32(&b, IP_TAG_ERRNO, (uint32_t) err);
        ip_put_str(&b, IP_TAG_MESSAGE, msg ? msg : strerror(err));
        conn_send(c, &b);
}

/* ERROR; the connection stays usable. */
__attribute__((format(printf, 3, 4))) static void conn_error(Conn *c, int err, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        conn_verror(c, err, fmt, ap);
        va_end(ap);
}

/* ERROR, then close once it is sent: the peer broke the protocol. */
__attribute__((format(printf, 3, 4))) static void conn_fail(Conn *c, int err, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        conn_verror(c, err, fmt, ap);
        va_end(ap);
        conn_detach(c);
        c->closing = true;
        conn_update(c);
}

/* ---- requests ---- */

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
        if (g.terminating) {
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
        cleanup_free char **values = secret_values(g.secrets, secrets);
        r = values ? 0 : -ENOMEM;
        for (char **e = g.secrets; r == 0 && e && *e; e++)
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
        Proc **tail = &g.procs;
        while (*tail)
                tail = &(*tail)->next;
        *tail = p;

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
        secret_strv_free(g.secrets);
        g.secrets = v;
        conn_ok(c);
}

static void handle_list(Conn *c)
{
        for (Proc *p = g.procs; p && !c->dead; p = p->next) {
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
                        put_exit_fields(&b, p);
                put_dropped(&b, p);
                conn_send(c, &b);
        }
        conn_ok(c);
}

static void conn_dispatch(Conn *c)
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

/* Reads into dst. Returns bytes read, 0 when nothing is available now, or -1
 * after marking the connection closing (EOF) or dead (error). */
static ssize_t conn_read_some(Conn *c, uint8_t *dst, size_t want)
{
        for (;;) {
                ssize_t n = read(c->src.fd, dst, want);
                if (n > 0)
                        return n;
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno == EAGAIN)
                        return 0;
                /* EOF (also mid-frame) ends the conversation; queued events are
                 * still delivered. */
                conn_detach(c);
                if (n == 0)
                        c->closing = true;
                else
                        c->dead = true;
                return -1;
        }
}

static void conn_read(Conn *c)
{
        for (int frames = 0; frames < FRAMES_PER_WAKEUP; frames++) {
                if (c->closing || c->dead || conn_input_paused(c))
                        return;
                if (c->hdr_got < IP_HEADER_SIZE) {
                        ssize_t n =
                                conn_read_some(c, c->hdr + c->hdr_got, IP_HEADER_SIZE - c->hdr_got);
                        if (n <= 0)
                                return;
                        c->hdr_got += (size_t) n;
                        if (c->hdr_got < IP_HEADER_SIZE)
                                continue;
                        uint8_t type;
                        uint32_t len;
                        if (ip_parse_header(c->hdr, &type, &len) < 0) {
                                conn_fail(c, EPROTO, "frame body over %u bytes",
                                          (unsigned) IP_MAX_BODY);
                                return;
                        }
                        c->body_len = len;
                        c->body_got = 0;
                        if (len > 0 && !(c->body = malloc(len))) {
                                conn_fail(c, ENOMEM, "out of memory");
                                return;
                        }
                }
                if (c->body_got < c->body_len) {
                        ssize_t n =
                                conn_read_some(c, c->body + c->body_got, c->body_len - c->body_got);
                        if (n <= 0)
                                return;
                        c->body_got += (uint32_t) n;
                        if (c->body_got < c->body_len)
                                continue;
                }
                conn_dispatch(c);
                /* SPAWN and SET_SECRETS bodies may hold secret values. */
                if (c->body && (c->hdr[4] == IP_MSG_SPAWN || c->hdr[4] == IP_MSG_SET_SECRETS))
                        explicit_bzero(c->body, c->body_len);
                free(c->body);
                c->body = NULL;
                c->hdr_got = 0;
                c->body_len = c->body_got = 0;
        }
}

static void conn_event(Conn *c, uint32_t events)
{
        if (!c->dead && (events & EPOLLIN))
                conn_read(c);
        if (!c->dead && conn_flush(c) < 0)
                c->dead = true;
        /* Hang-up with nothing left to read: the peer is gone. */
        if ((events & (EPOLLHUP | EPOLLERR)) && !(events & EPOLLIN))
                c->dead = true;
        if (c->dead || (c->closing && c->out.len == 0)) {
                conn_free(c);
                return;
        }
        conn_update(c);
}

static void on_accept(void)
{
        for (;;) {
                cleanup_close int fd =
                        accept4(g.listen.fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (fd < 0) {
                        if (errno == EINTR || errno == ECONNABORTED)
                                continue;
                        if (errno != EAGAIN)
                                log_error(errno, "accept");
                        return;
                }
                /* Only the host agent may drive init: a peer in another pid
                 * namespace shows as pid 0. */
                struct ucred cred;
                socklen_t len = sizeof(cred);
                if (!g.allow_local_peers &&
                    (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 || cred.pid != 0))
                        continue;
                if (g.n_conns >= CONNS_MAX)
                        continue;
                Conn *c = calloc(1, sizeof(*c));
                if (!c)
                        continue;
                c->src = (Source){.kind = SRC_CONN, .fd = TAKE_FD(fd), .owner = c};
                c->next = g.conns;
                g.conns = c;
                g.n_conns++;
                conn_update(c);
        }
}

static void on_signal(void)
{
        bool child = false;
        for (;;) {
                struct signalfd_siginfo si;
                ssize_t n = read(g.sig.fd, &si, sizeof(si));
                if (n != (ssize_t) sizeof(si))
                        break;
                int sig = (int) si.ssi_signo;
                if (sig == SIGCHLD) {
                        child = true;
                        continue;
                }
                if (sig == SIGTERM)
                        g.terminating = true;
                for (Proc *p = g.procs; p; p = p->next)
                        if (!p->exited)
                                (void) kill(-p->pid, sig);
        }
        if (child)
                reap();
}

static void dispatch(Source *s, uint32_t events)
{
        switch (s->kind) {
        case SRC_SIGNAL:
                on_signal();
                break;
        case SRC_LISTEN:
                on_accept();
                break;
        case SRC_CONN:
                conn_event(s->owner, events);
                break;
        case SRC_STDIN:
                proc_stdin_pump(s->owner);
                break;
        case SRC_STDOUT:
        case SRC_STDERR:
                (void) proc_read_pipe(s->owner, s);
                break;
        }
}

/* ---- setup ---- */

/* --socket PATH (tests): init binds PATH itself. */
static int listen_on(const char *path)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        size_t len = strlen(path);
        if (len >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        memcpy(sa.sun_path, path, len + 1);
        cleanup_close int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return negative_errno();
        if (unlink(path) < 0 && errno != ENOENT)
                return negative_errno();
        if (bind(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0 || chmod(path, 0600) < 0 ||
            listen(fd, 128) < 0)
                return negative_errno();
        return TAKE_FD(fd);
}

/* In a sandbox: the agent bound /.sandpit/init.sock (a directory the sandbox
 * sees read-only) and passed it as IP_LISTEN_FD. Listening here makes this
 * process the socket's peer credentials, which the agent checks. */
static int listen_inherited(void)
{
        int domain = 0, type = 0;
        socklen_t len = sizeof(int);
        if (getsockopt(IP_LISTEN_FD, SOL_SOCKET, SO_DOMAIN, &domain, &len) < 0)
                return negative_errno();
        len = sizeof(int);
        if (getsockopt(IP_LISTEN_FD, SOL_SOCKET, SO_TYPE, &type, &len) < 0)
                return negative_errno();
        if (domain != AF_UNIX || type != SOCK_STREAM)
                return -ENOTSOCK;
        int fl = fcntl(IP_LISTEN_FD, F_GETFL);
        if (fl < 0 || fcntl(IP_LISTEN_FD, F_SETFL, fl | O_NONBLOCK) < 0 ||
            listen(IP_LISTEN_FD, 128) < 0)
                return negative_errno();
        return IP_LISTEN_FD;
}

static void usage(FILE *f)
{
        (void) fprintf(f, "usage: sandpit-init [--socket PATH] [--allow-local-peers]\n");
}

int main(int argc, char **argv)
{
        /* Look at the passed fds before opening anything that could take their number. */
        bool ready = fcntl(IP_READY_FD, F_SETFD, FD_CLOEXEC) >= 0;
        bool inherited = fcntl(IP_LISTEN_FD, F_SETFD, FD_CLOEXEC) >= 0;
        for (int fd = 0; fd <= 2; fd++)
                if (fcntl(fd, F_GETFD) < 0 && open("/dev/null", O_RDWR) < 0)
                        return EXIT_FAILURE;

        const char *socket_path = NULL;
        static const struct option opts[] = {
                {"socket", required_argument, NULL, 's'},
                {"allow-local-peers", no_argument, NULL, 'l'},
                {"help", no_argument, NULL, 'h'},
                {0},
        };
        int o;
        while ((o = getopt_long(argc, argv, "", opts, NULL)) >= 0)
                switch (o) {
                case 's':
                        socket_path = optarg;
                        break;
                case 'l':
                        g.allow_local_peers = true;
                        break;
                case 'h':
                        usage(stdout);
                        return EXIT_SUCCESS;
                default:
                        usage(stderr);
                        return 2;
                }
        if (optind != argc) {
                usage(stderr);
                return 2;
        }

        /* Fixed thresholds (no dynamic growth): big output queues are mmapped and
         * go back to the kernel once drained, so a burst does not pin memory. */
        (void) mallopt(M_MMAP_THRESHOLD, 128 * 1024);
        (void) mallopt(M_TRIM_THRESHOLD, 256 * 1024);
        /* Not PID 1 (tests): still inherit and reap orphans. */
        if (getpid() != 1)
                (void) prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
        (void) signal(SIGPIPE, SIG_IGN);
        (void) signal(SIGCHLD, SIG_DFL); /* SIG_IGN would auto-reap and hide exits */
        sigset_t set;
        sigemptyset(&set);
        static const int sigs[] = {SIGCHLD, SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};
        for (size_t i = 0; i < ARRAY_SIZE(sigs); i++)
                sigaddset(&set, sigs[i]);
        if (sigprocmask(SIG_BLOCK, &set, NULL) < 0) {
                log_error(errno, "sigprocmask");
                return EXIT_FAILURE;
        }
        g.sig = (Source){.kind = SRC_SIGNAL, .fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC)};
        g.epfd = epoll_create1(EPOLL_CLOEXEC);
        if (g.sig.fd < 0 || g.epfd < 0) {
                log_error(errno, "signalfd/epoll_create1");
                return EXIT_FAILURE;
        }
        int r = socket_path ? listen_on(socket_path) : inherited ? listen_inherited() : -EBADF;
        if (r < 0) {
                if (socket_path)
                        log_error(-r, "listen on %s", socket_path);
                else
                        log_error(-r, "no socket to listen on as fd %d", IP_LISTEN_FD);
                return EXIT_FAILURE;
        }
        g.listen = (Source){.kind = SRC_LISTEN, .fd = r};
        src_set(&g.sig, EPOLLIN);
        src_set(&g.listen, EPOLLIN);
        if (g.sig.events == 0 || g.listen.events == 0)
                return EXIT_FAILURE;

        if (ready) {
                if (write(IP_READY_FD, "1", 1) != 1)
                        log_error(errno, "write ready fd");
                (void) close(IP_READY_FD);
        }

        while (!g.terminating || any_running()) {
                struct epoll_event ev;
                int n = epoll_wait(g.epfd, &ev, 1, next_timeout_ms());
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        log_error(errno, "epoll_wait");
                        return EXIT_FAILURE;
                }
                check_timeouts();
                if (n == 1)
                        dispatch(ev.data.ptr, ev.events);
        }
        /* Best effort: hand the last EXIT events to the agent. */
        for (Conn *c = g.conns; c; c = c->next)
                (void) conn_flush(c);
        return EXIT_SUCCESS;
}

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
 * and a slow peer never blocks init or another peer.
 *
 * This file is the loop: its sources, processes and connections; the requests
 * a connection makes are handled in requests.c (init-internal.h between). */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <malloc.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
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
#include "init-internal.h"
#include "initproto.h"
#include "mask.h"
#include "sandpit/macro.h"

#define READ_CHUNK        ((size_t) 64 << 10)
#define CONN_OUT_HIGH     ((size_t) 4 << 20)
#define STDIN_HIGH        ((size_t) 4 << 20)
#define BACKLOG_MAX       ((size_t) 1 << 20)
#define BACKLOG_TOTAL_MAX ((size_t) 32 << 20)
#define EXIT_RECORDS_MAX  256u
#define EXIT_DRAIN_READS  16
/* A pty master gives at most 4 KiB a read (the line discipline's buffer) and its
 * buffers hold a few tens of KiB: more reads to drain it than a 64 KiB pipe. */
#define EXIT_DRAIN_READS_PTY 64
#define FRAMES_PER_WAKEUP    64
#define CONNS_MAX            1024u

static struct {
        int epfd;
        Source sig;
        Source listen;
        Source channel;   /* --channel */
        Source rechannel; /* --channel: IP_RECHANNEL_NAME */
        bool have_key;
        uint8_t key[IP_CHANNEL_KEY_SIZE];
        Proc *procs; /* in spawn order */
        Conn *conns;
        unsigned n_conns;
        bool allow_local_peers;
        bool terminating;
        uint64_t exit_seq;
} g = {.epfd = -1};

static uint8_t read_chunk[READ_CHUNK];

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

Proc *proc_find(pid_t pid, bool running_only)
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

void proc_add(Proc *p)
{
        Proc **tail = &g.procs;
        while (*tail)
                tail = &(*tail)->next;
        *tail = p;
}

Proc *proc_list(void)
{
        return g.procs;
}

bool loop_terminating(void)
{
        return g.terminating;
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

void proc_stdin_pump(Proc *p)
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

void proc_put_exit_fields(IpBuilder *b, const Proc *p)
{
        bool sig = WIFSIGNALED(p->status);
        ip_put_i32(b, IP_TAG_EXIT_CODE, sig ? -1 : WEXITSTATUS(p->status));
        ip_put_u32(b, IP_TAG_SIGNO, sig ? (uint32_t) WTERMSIG(p->status) : 0);
        ip_put_u32(b, IP_TAG_TIMED_OUT, p->timed_out ? 1 : 0);
        ip_put_u64(b, IP_TAG_DURATION_US, p->duration_us);
}

void proc_put_dropped(IpBuilder *b, const Proc *p)
{
        char msg[96];
        if (p->dropped == 0)
                return;
        (void) snprintf(msg, sizeof(msg), "%llu bytes of output dropped while detached",
                        (unsigned long long) p->dropped);
        ip_put_str(b, IP_TAG_MESSAGE, msg);
}

void conn_send(Conn *c, IpBuilder *b)
{
        if (ip_builder_finish(b) == 0 && init_buf_append(&c->out, b->buf, b->len) < 0)
                c->dead = true;
        ip_builder_free(b);
        conn_update(c);
}

void conn_send_exit(Conn *c, const Proc *p)
{
        IpBuilder b;
        ip_builder_init(&b, IP_MSG_EXIT);
        ip_put_u32(&b, IP_TAG_PID, (uint32_t) p->pid);
        proc_put_exit_fields(&b, p);
        proc_put_dropped(&b, p);
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

void conn_update(Conn *c)
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

void conn_ok(Conn *c)
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
void conn_error(Conn *c, int err, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        conn_verror(c, err, fmt, ap);
        va_end(ap);
}

/* ERROR, then close once it is sent: the peer broke the protocol. */
void conn_fail(Conn *c, int err, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        conn_verror(c, err, fmt, ap);
        va_end(ap);
        conn_detach(c);
        c->closing = true;
        conn_update(c);
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
                request_dispatch(c);
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

/* Takes fd (non-blocking, close-on-exec) as a new agent connection. */
static void add_conn(int fd)
{
        if (g.n_conns >= CONNS_MAX) {
                (void) close(fd);
                return;
        }
        Conn *c = calloc(1, sizeof(*c));
        if (!c) {
                (void) close(fd);
                return;
        }
        c->src = (Source){.kind = SRC_CONN, .fd = fd, .owner = c};
        c->next = g.conns;
        g.conns = c;
        g.n_conns++;
        conn_update(c);
}

/* More than one connection per message is not sent; room for a few. */
#define CHANNEL_FDS_MAX 4

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
                add_conn(TAKE_FD(fd));
        }
}

/* --channel: fd 0 was the agent's end of a socket pair, the only thing that
 * reaches it. Each connection comes as one byte carrying one end of a new
 * socket pair (SCM_RIGHTS); anything else on it is dropped. EOF: the agent is
 * gone, and with it every way to reach init. */
static void on_channel(void)
{
        for (;;) {
                char byte;
                union {
                        struct cmsghdr h;
                        char buf[CMSG_SPACE(sizeof(int) * CHANNEL_FDS_MAX)];
                } u;
                struct iovec iov = {.iov_base = &byte, .iov_len = 1};
                struct msghdr m = {.msg_iov = &iov,
                                   .msg_iovlen = 1,
                                   .msg_control = u.buf,
                                   .msg_controllen = sizeof(u.buf)};
                ssize_t n = recvmsg(g.channel.fd, &m, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno == EAGAIN)
                        return;
                if (n == 1 && byte == IP_CHANNEL_KEY) {
                        /* Sent in one piece right behind the byte; the first key stays. */
                        uint8_t key[IP_CHANNEL_KEY_SIZE];
                        if (recv(g.channel.fd, key, sizeof(key), MSG_WAITALL) !=
                            (ssize_t) sizeof(key))
                                n = 0;
                        else if (!g.have_key) {
                                memcpy(g.key, key, sizeof(key));
                                g.have_key = true;
                        }
                }
                for (struct cmsghdr *h = n > 0 ? CMSG_FIRSTHDR(&m) : NULL; h;
                     h = CMSG_NXTHDR(&m, h)) {
                        if (h->cmsg_level != SOL_SOCKET || h->cmsg_type != SCM_RIGHTS)
                                continue;
                        size_t k = (h->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                        for (size_t i = 0; i < k; i++) {
                                int fd;
                                memcpy(&fd, CMSG_DATA(h) + i * sizeof(int), sizeof(int));
                                int fl = fcntl(fd, F_GETFL);
                                if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
                                        (void) close(fd);
                                        continue;
                                }
                                add_conn(fd);
                        }
                }
                if (n <= 0) {
                        if (n < 0)
                                log_error(errno, "channel");
                        src_close(&g.channel);
                        return;
                }
        }
}

/* A `sandpit-init --rechannel` (or anything else in the sandbox) connected to
 * IP_RECHANNEL_NAME: with the key and one fd, that fd is the new channel. */
static void on_rechannel(void)
{
        for (;;) {
                cleanup_close int fd =
                        accept4(g.rechannel.fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (fd < 0) {
                        if (errno == EINTR || errno == ECONNABORTED)
                                continue;
                        return;
                }
                /* The helper sends at once; a peer that does not cannot hold
                 * init for more than this. */
                struct pollfd pf = {.fd = fd, .events = POLLIN};
                if (poll(&pf, 1, 1000) != 1)
                        continue;
                uint8_t key[IP_CHANNEL_KEY_SIZE];
                union {
                        struct cmsghdr h;
                        char buf[CMSG_SPACE(sizeof(int) * CHANNEL_FDS_MAX)];
                } u;
                struct iovec iov = {.iov_base = key, .iov_len = sizeof(key)};
                struct msghdr m = {.msg_iov = &iov,
                                   .msg_iovlen = 1,
                                   .msg_control = u.buf,
                                   .msg_controllen = sizeof(u.buf)};
                ssize_t n = recvmsg(fd, &m, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
                int got = -1;
                for (struct cmsghdr *h = n > 0 ? CMSG_FIRSTHDR(&m) : NULL; h;
                     h = CMSG_NXTHDR(&m, h))
                        if (h->cmsg_level == SOL_SOCKET && h->cmsg_type == SCM_RIGHTS) {
                                size_t k = (h->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                                for (size_t i = 0; i < k; i++) {
                                        int x;
                                        memcpy(&x, CMSG_DATA(h) + i * sizeof(int), sizeof(int));
                                        if (got < 0)
                                                got = x;
                                        else
                                                (void) close(x);
                                }
                        }
                cleanup_close int newch = got;
                uint8_t diff = 0;
                for (size_t i = 0; i < sizeof(key); i++)
                        diff |= (uint8_t) (key[i] ^ g.key[i]);
                if (!g.have_key || n != (ssize_t) sizeof(key) || diff != 0 || newch < 0) {
                        log_error(EPERM, "rechannel: refused a peer without the key");
                        continue;
                }
                src_close(&g.channel);
                g.channel = (Source){.kind = SRC_CHANNEL, .fd = TAKE_FD(newch)};
                src_set(&g.channel, EPOLLIN);
                char ready = IP_CHANNEL_READY;
                if (write(g.channel.fd, &ready, 1) != 1)
                        log_error(errno, "write ready byte on the new channel");
                if (write(fd, &ready, 1) != 1)
                        log_error(errno, "rechannel: answer the helper");
        }
}

/* The abstract socket IP_RECHANNEL_NAME (in the sandbox's own namespace). */
static int rechannel_addr(struct sockaddr_un *sa)
{
        *sa = (struct sockaddr_un){.sun_family = AF_UNIX};
        memcpy(sa->sun_path + 1, IP_RECHANNEL_NAME, strlen(IP_RECHANNEL_NAME));
        return (int) (offsetof(struct sockaddr_un, sun_path) + 1 + strlen(IP_RECHANNEL_NAME));
}

/* --rechannel: fd 0 is a restarted agent's new socket pair, on which it sent
 * IP_CHANNEL_KEY and the key; both go to init. 0 once init took them. */
static int rechannel(void)
{
        uint8_t msg[1 + IP_CHANNEL_KEY_SIZE];
        if (recv(0, msg, sizeof(msg), MSG_WAITALL) != (ssize_t) sizeof(msg) ||
            msg[0] != IP_CHANNEL_KEY) {
                log_error(EPROTO, "rechannel: no key on stdin");
                return EXIT_FAILURE;
        }
        struct sockaddr_un sa;
        socklen_t len = (socklen_t) rechannel_addr(&sa);
        cleanup_close int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *) &sa, len) < 0) {
                log_error(errno, "rechannel: connect");
                return EXIT_FAILURE;
        }
        /* fd 0, the agent's new socket pair, goes to init with the key. */
        char ok;
        if (ip_send_fd(fd, msg + 1, IP_CHANNEL_KEY_SIZE, 0) != IP_CHANNEL_KEY_SIZE ||
            read(fd, &ok, 1) != 1) {
                log_error(errno, "rechannel: init did not take the channel");
                return EXIT_FAILURE;
        }
        return EXIT_SUCCESS;
}

static int listen_rechannel(void)
{
        struct sockaddr_un sa;
        socklen_t len = (socklen_t) rechannel_addr(&sa);
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return negative_errno();
        if (bind(fd, (struct sockaddr *) &sa, len) < 0 || listen(fd, 4) < 0) {
                int r = negative_errno();
                (void) close(fd);
                return r;
        }
        return fd;
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
        case SRC_CHANNEL:
                on_channel();
                break;
        case SRC_RECHANNEL:
                on_rechannel();
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
        (void) fprintf(f,
                       "usage: sandpit-init [--socket PATH | --channel] [--allow-local-peers]\n");
}

/* --hostname NAME: a claimed pooled sandbox under gVisor gets its id as its
 * hostname. The agent's `runsc exec --cap CAP_SYS_ADMIN` gives this one
 * process what the sandbox's own lack; the host cannot reach gVisor's UTS
 * namespace as runc's setns does. */
static int set_hostname(const char *name)
{
        if (sethostname(name, strlen(name)) < 0) {
                log_error(errno, "sethostname");
                return 1;
        }
        return 0;
}

int main(int argc, char **argv)
{
        if (argc == 2 && streq(argv[1], "--rechannel"))
                return rechannel();
        if (argc == 3 && streq(argv[1], "--hostname"))
                return set_hostname(argv[2]);
        /* Look at the passed fds before opening anything that could take their number. */
        bool ready = fcntl(IP_READY_FD, F_SETFD, FD_CLOEXEC) >= 0;
        bool inherited = fcntl(IP_LISTEN_FD, F_SETFD, FD_CLOEXEC) >= 0;
        /* --channel: fd 0 is the agent's socket pair (runtimes without
         * --preserve-fds). Moved up before anything could read it. */
        int channel = -1;
        for (int i = 1; i < argc; i++)
                if (streq(argv[i], "--channel") &&
                    (channel = fcntl(0, F_DUPFD_CLOEXEC, IP_LISTEN_FD + 1)) >= 0)
                        (void) close(0);
        for (int fd = 0; fd <= 2; fd++)
                if (fcntl(fd, F_GETFD) < 0 && open("/dev/null", O_RDWR) < 0)
                        return EXIT_FAILURE;

        const char *socket_path = NULL;
        static const struct option opts[] = {
                {"socket", required_argument, NULL, 's'},
                {"allow-local-peers", no_argument, NULL, 'l'},
                {"channel", no_argument, NULL, 'c'},
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
                case 'c':
                        if (channel < 0) {
                                log_error(EBADF, "--channel: no socket as fd 0");
                                return EXIT_FAILURE;
                        }
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
        /* Not dumpable: root in the sandbox holds init's capabilities, so the
         * ptrace access check would otherwise let it write /proc/1/mem (and take
         * over the agent's peer) and reopen init's fds through /proc/1/fd (its
         * stderr is init.log on the host's disk). Without CAP_SYS_PTRACE,
         * which no sandbox has, a non-dumpable process is out of reach. The
         * processes init starts are dumpable again after their execve. */
        if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
                log_error(errno, "prctl(PR_SET_DUMPABLE)");
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
        int r = channel >= 0  ? channel
                : socket_path ? listen_on(socket_path)
                : inherited   ? listen_inherited()
                              : -EBADF;
        if (r < 0) {
                if (socket_path)
                        log_error(-r, "listen on %s", socket_path);
                else
                        log_error(-r, "no socket to listen on as fd %d", IP_LISTEN_FD);
                return EXIT_FAILURE;
        }
        Source *in = channel >= 0 ? &g.channel : &g.listen;
        *in = (Source){.kind = channel >= 0 ? SRC_CHANNEL : SRC_LISTEN, .fd = r};
        src_set(&g.sig, EPOLLIN);
        src_set(in, EPOLLIN);
        if (g.sig.events == 0 || in->events == 0)
                return EXIT_FAILURE;
        if (channel >= 0) {
                /* Before any user code: nothing else can hold the name. */
                g.rechannel = (Source){.kind = SRC_RECHANNEL, .fd = listen_rechannel()};
                if (g.rechannel.fd < 0)
                        log_error(-g.rechannel.fd, "listen on @%s", IP_RECHANNEL_NAME);
                src_set(&g.rechannel, EPOLLIN);
                /* Ready on the channel itself: one byte, as on the ready pipe. */
                char byte = IP_CHANNEL_READY;
                if (write(channel, &byte, 1) != 1)
                        log_error(errno, "write ready byte on the channel");
        }

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

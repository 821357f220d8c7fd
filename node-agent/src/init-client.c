/* The init protocol client (docs/init-protocol.md): connects to a sandbox's
 * init, checking that the peer is that init, and sends it requests. */
#include "init-client.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "exec.h"
#include "fsroot.h"
#include "initproto.h"
#include "sandpit/http-status.h"
#include "sandpit/log.h"
#include "sandpit/macro.h"
#include "sandpit/util.h"

/* The refusal of an init socket that is not the sandbox's init's. */
static int init_refused(const char *socket_path, const char *why, char *err, size_t errlen)
{
        log_warning("refusing %s: %s", socket_path, why);
        if (err)
                (void) snprintf(err, errlen, "refused to talk to the sandbox's init socket: %s",
                                why);
        return -EIO;
}

/* Connects to init: over its channel when it has one (init_client_add_channel),
 * else at socket_path (<ctl dir>/init.sock, rootfs_ctl_path()) without
 * following anything the sandbox could have put there, and only to its init:
 * the control dir is opened without following a symlink, the socket below it by
 * openat2() with RESOLVE_NO_SYMLINKS, connected through that O_PATH fd, and the
 * peer's pid (SO_PEERCRED, which names the process that called listen()) must
 * be init_pid. -EBUSY when nothing listens there (init is gone); -EIO with a
 * message in err (may be NULL) when the socket is refused. */
/* The channels of sandboxes whose runtime has no --preserve-fds (runsc), by
 * their socket path (the sandbox's key here: nothing is bound there). */
typedef struct Channel {
        struct Channel *next;
        char *socket_path;
        int fd;
} Channel;
static pthread_mutex_t channels_lock = PTHREAD_MUTEX_INITIALIZER;
static Channel *channels;

int init_client_add_channel(const char *socket_path, int fd)
{
        Channel *c = calloc(1, sizeof(*c));
        if (!c || !(c->socket_path = strdup(socket_path))) {
                free(c);
                return -ENOMEM;
        }
        c->fd = fd;
        (void) pthread_mutex_lock(&channels_lock);
        c->next = channels;
        channels = c;
        (void) pthread_mutex_unlock(&channels_lock);
        return 0;
}

void init_client_drop_channel(const char *socket_path)
{
        if (!socket_path)
                return;
        (void) pthread_mutex_lock(&channels_lock);
        for (Channel **p = &channels; *p; p = &(*p)->next)
                if (streq((*p)->socket_path, socket_path)) {
                        Channel *c = *p;
                        *p = c->next;
                        (void) close(c->fd);
                        free(c->socket_path);
                        free(c);
                        break;
                }
        (void) pthread_mutex_unlock(&channels_lock);
}

bool init_client_has_channel(const char *socket_path)
{
        (void) pthread_mutex_lock(&channels_lock);
        Channel *c = channels;
        while (c && !streq(c->socket_path, socket_path))
                c = c->next;
        (void) pthread_mutex_unlock(&channels_lock);
        return c != NULL;
}

/* A new conversation over a channel: one end of a fresh socket pair goes to
 * init with one byte. 1 with the other end in *ret_fd, 0 when socket_path has
 * no channel. Under the lock: the fd cannot be closed and reused meanwhile. */
static int channel_connect(const char *socket_path, int *ret_fd)
{
        int r = 0;
        (void) pthread_mutex_lock(&channels_lock);
        Channel *c = channels;
        while (c && !streq(c->socket_path, socket_path))
                c = c->next;
        if (c) {
                int sp[2];
                if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) < 0) {
                        r = negative_errno();
                } else {
                        static const char conn = IP_CHANNEL_CONN;
                        ssize_t n = ip_send_fd(c->fd, &conn, 1, sp[1]);
                        (void) close(sp[1]);
                        if (n == 1) {
                                *ret_fd = sp[0];
                                r = 1;
                        } else {
                                /* The channel's other end is gone: so is init. */
                                (void) close(sp[0]);
                                r = -EBUSY;
                        }
                }
        }
        (void) pthread_mutex_unlock(&channels_lock);
        return r;
}

int init_client_connect(const char *socket_path, pid_t init_pid, char *err, size_t errlen)
{
        if (!socket_path)
                return -EINVAL;
        int cfd = -1;
        int k0 = channel_connect(socket_path, &cfd);
        if (k0 != 0)
                return k0 < 0 ? k0 : cfd;
        const char *slash = strrchr(socket_path, '/');
        if (!slash || slash == socket_path || init_pid <= 0)
                return -EINVAL;
        cleanup_free char *dir = strndup(socket_path, (size_t) (slash - socket_path));
        if (!dir)
                return -ENOMEM;
        cleanup_close int dfd = open(dir, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (dfd < 0)
                return errno == ENOENT ? -EBUSY
                                       : init_refused(socket_path, strerror(errno), err, errlen);
        int k = fsroot_open_child(dfd, slash + 1, O_PATH, 0);
        if (k < 0)
                return k == -ENOENT ? -EBUSY : init_refused(socket_path, strerror(-k), err, errlen);
        cleanup_close int sfd = k;
        struct stat st;
        if (fstat(sfd, &st) < 0 || !S_ISSOCK(st.st_mode))
                return init_refused(socket_path, "not a socket", err, errlen);

        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        (void) snprintf(sa.sun_path, sizeof(sa.sun_path), "/proc/self/fd/%d", sfd);
        cleanup_close int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return negative_errno();
        if (connect(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0)
                return errno == ENOENT || errno == ECONNREFUSED ? -EBUSY : negative_errno();
        struct ucred cred;
        socklen_t len = sizeof(cred);
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
                return negative_errno();
        if (cred.pid != init_pid)
                return init_refused(socket_path, "its peer is not the sandbox's init", err, errlen);
        return TAKE_FD(fd);
}

int exec_check_init(const char *socket_path, pid_t init_pid)
{
        int fd = init_client_connect(socket_path, init_pid, NULL, 0);
        if (fd < 0)
                return fd;
        (void) close(fd);
        return 0;
}

int init_client_send(int fd, IpBuilder *b)
{
        int r = ip_builder_finish(b);
        if (r == 0)
                r = ip_write_all(fd, b->buf, b->len);
        ip_builder_free(b);
        return r;
}

/* Reads one answer frame; turns ERROR into a negative errno + message. */
int init_client_read_answer(int fd, uint8_t **body, size_t *cap, IpFrame *f, char *err,
                            size_t errlen)
{
        int r = ip_read_frame(fd, body, cap, f);
        if (r == 0) {
                (void) snprintf(err, errlen, "the sandbox's init closed the connection");
                return -EBUSY;
        }
        if (r < 0) {
                (void) snprintf(err, errlen, "reading from the sandbox's init: %s", strerror(-r));
                /* Init gone (reset) is a sandbox that no longer runs; anything
                 * else on our own socket is ours (-EIO). */
                return r == -ECONNRESET ? -EBUSY : r == -ENOMEM ? r : -EIO;
        }
        if (f->type == IP_MSG_ERROR) {
                uint32_t e = EIO;
                cleanup_free char *msg = NULL;
                (void) ip_get_u32(f, IP_TAG_ERRNO, &e);
                (void) ip_get_strdup(f, IP_TAG_MESSAGE, &msg);
                (void) snprintf(err, errlen, "%s", msg ? msg : strerror((int) e));
                return e > 0 && e < 4096 ? -(int) e : -EIO;
        }
        return 0;
}

/* What init's ERROR answer r means to the agent's caller: the one place that
 * turns init's errnos into the API's (through the errno <-> HTTP table). init's
 * errno says why it could not; the status must say whose fault that is.
 *
 * To a SPAWN, init refuses what the request asks for: a command that is not
 * there or not executable, an unknown user, a cwd that is not a directory, a
 * bad terminal size. That is the request's fault (-EINVAL, 400) whatever errno
 * init gave: ENOENT would read as "no such sandbox" (404), EACCES as "not
 * allowed to ask" (403). About the sandbox rather than the command: init is
 * stopping (-ESHUTDOWN: the sandbox is not running, -EBUSY, 409), its pids
 * limit is reached (-EAGAIN, 503), memory (-ENOMEM).
 *
 * To a request about a process (ATTACH, STDIN, SIGNAL, RESIZE): -ESRCH no such process
 * (404), -EINVAL a bad value (400); its stdin or terminal closed or absent
 * (EPIPE, ENOTTY) conflicts with the process's state (-EBUSY, 409); a full
 * stdin queue (ENOBUFS) is to be retried (-EAGAIN, 503).
 *
 * Either way -EBUSY, -ENOMEM and -EIO, which init_client_read_answer() also
 * gives for the connection itself, stay; EPROTO (the agent broke the protocol)
 * and anything else is the agent's (http_errno_internal()). */
static int init_refusal(int r, bool spawn)
{
        switch (-r) {
        case EBUSY:
        case ENOMEM:
        case EIO:
                return r;
        case ESHUTDOWN:
                return -EBUSY;
        case EPROTO:
                return -EIO;
        default:
                break;
        }
        if (spawn)
                return r == -EAGAIN ? r : -EINVAL;
        switch (-r) {
        case ESRCH:
        case EINVAL:
                return r;
        case EPIPE:
        case ENOTTY:
                return -EBUSY;
        case ENOBUFS:
                return -EAGAIN;
        default:
                return http_errno_internal(r);
        }
}

/* init_client_connect() for a request: -EBUSY (err: "not running") when init
 * is gone, -EIO when its socket is refused, any other failure the agent's. */
static int connect_init(const char *socket_path, pid_t init_pid, char *err, size_t errlen)
{
        int fd = init_client_connect(socket_path, init_pid, err, errlen);
        if (fd == -EBUSY) {
                (void) snprintf(err, errlen, "the sandbox is not running");
        } else if (fd < 0 && fd != -EIO) {
                (void) snprintf(err, errlen, "cannot connect to the sandbox's init: %s",
                                strerror(-fd));
                fd = http_errno_internal(fd);
        }
        return fd;
}

/* One request on a new connection: connects, sends b (and frees it) and reads
 * the first answer into f (its bytes in *body). init's ERROR answer comes back
 * through init_refusal(); on success *ret_fd is the conversation. */
static int request(const char *socket_path, pid_t init_pid, IpBuilder *b, bool spawn, int *ret_fd,
                   uint8_t **body, size_t *cap, IpFrame *f, char *err, size_t errlen)
{
        cleanup_close int fd = connect_init(socket_path, init_pid, err, errlen);
        if (fd < 0) {
                ip_builder_free(b);
                return fd;
        }
        int r = init_client_send(fd, b);
        if (r < 0) {
                (void) snprintf(err, errlen, "cannot send the request to the sandbox's init: %s",
                                strerror(-r));
                return r == -EMSGSIZE ? r : -EBUSY; /* too big for a frame: 413 */
        }
        r = init_client_read_answer(fd, body, cap, f, err, errlen);
        if (r < 0)
                return init_refusal(r, spawn);
        *ret_fd = TAKE_FD(fd);
        return 0;
}

int exec_spawn(const char *socket_path, pid_t init_pid, const ExecRequest *req, int *ret_fd,
               uint32_t *ret_pid, char *err, size_t errlen)
{
        IpBuilder b;
        ip_builder_init(&b, IP_MSG_SPAWN);
        STRV_FOREACH(s, req->argv)
                ip_put_str(&b, IP_TAG_ARG, *s);
        STRV_FOREACH(s, req->env)
                ip_put_str(&b, IP_TAG_ENV, *s);
        STRV_FOREACH(s, req->secret_env)
                ip_put_str(&b, IP_TAG_SECRET_ENV, *s);
        if (req->cwd)
                ip_put_str(&b, IP_TAG_CWD, req->cwd);
        ip_put_str(&b, IP_TAG_USER, req->user);
        if (req->tag)
                ip_put_str(&b, IP_TAG_TAG, req->tag);
        if (req->timeout_ms)
                ip_put_u64(&b, IP_TAG_TIMEOUT_MS, req->timeout_ms);
        ip_put_u32(&b, IP_TAG_FLAGS, req->flags);
        if (req->flags & IP_FLAG_PTY) {
                ip_put_u32(&b, IP_TAG_COLS, req->cols);
                ip_put_u32(&b, IP_TAG_ROWS, req->rows);
        }
        if (req->stdin_data)
                ip_put_bytes(&b, IP_TAG_DATA, req->stdin_data, req->stdin_len);
        cleanup_free uint8_t *body = NULL;
        size_t cap = 0;
        IpFrame f;
        cleanup_close int fd = -1;
        int r = request(socket_path, init_pid, &b, true, &fd, &body, &cap, &f, err, errlen);
        if (r < 0)
                return r;
        uint32_t pid = 0;
        if (f.type != IP_MSG_STARTED || ip_get_u32(&f, IP_TAG_PID, &pid) < 0) {
                (void) snprintf(err, errlen, "unexpected answer from the sandbox's init");
                return -EIO;
        }
        *ret_pid = pid;
        *ret_fd = TAKE_FD(fd);
        return 0;
}

int init_client_attach(const char *socket_path, pid_t init_pid, uint32_t pid, int *ret_fd,
                       uint8_t **body, size_t *cap, IpFrame *f, char *err, size_t errlen)
{
        IpBuilder b;
        ip_builder_init(&b, IP_MSG_ATTACH);
        ip_put_u32(&b, IP_TAG_PID, pid);
        return request(socket_path, init_pid, &b, false, ret_fd, body, cap, f, err, errlen);
}

static int simple_request(const char *socket_path, pid_t init_pid, IpBuilder *b, char *err,
                          size_t errlen)
{
        cleanup_free uint8_t *body = NULL;
        size_t cap = 0;
        IpFrame f;
        cleanup_close int fd = -1;
        int r = request(socket_path, init_pid, b, false, &fd, &body, &cap, &f, err, errlen);
        if (r < 0)
                return r;
        if (f.type != IP_MSG_OK) {
                (void) snprintf(err, errlen, "unexpected answer from the sandbox's init");
                return -EIO;
        }
        return 0;
}

int exec_send_stdin(const char *socket_path, pid_t init_pid, uint32_t pid, const uint8_t *data,
                    size_t len, bool eof, char *err, size_t errlen)
{
        IpBuilder b;
        int r = 0;
        if (data && len > 0) {
                ip_builder_init(&b, IP_MSG_STDIN);
                ip_put_u32(&b, IP_TAG_PID, pid);
                ip_put_bytes(&b, IP_TAG_DATA, data, len);
                r = simple_request(socket_path, init_pid, &b, err, errlen);
        }
        if (r == 0 && eof) {
                ip_builder_init(&b, IP_MSG_STDIN_EOF);
                ip_put_u32(&b, IP_TAG_PID, pid);
                r = simple_request(socket_path, init_pid, &b, err, errlen);
        }
        return r;
}

int exec_set_secrets(const char *socket_path, pid_t init_pid, char **env, char *err, size_t errlen)
{
        IpBuilder b;
        ip_builder_init(&b, IP_MSG_SET_SECRETS);
        STRV_FOREACH(s, env)
                ip_put_str(&b, IP_TAG_ENV, *s);
        return simple_request(socket_path, init_pid, &b, err, errlen); /* frees (and zeroes) b */
}

int exec_signal(const char *socket_path, pid_t init_pid, uint32_t pid, int signo, char *err,
                size_t errlen)
{
        IpBuilder b;
        ip_builder_init(&b, IP_MSG_SIGNAL);
        ip_put_u32(&b, IP_TAG_PID, pid);
        ip_put_u32(&b, IP_TAG_SIGNO, (uint32_t) signo);
        return simple_request(socket_path, init_pid, &b, err, errlen);
}

int exec_resize(const char *socket_path, pid_t init_pid, uint32_t pid, uint32_t cols, uint32_t rows,
                char *err, size_t errlen)
{
        IpBuilder b;
        ip_builder_init(&b, IP_MSG_RESIZE);
        ip_put_u32(&b, IP_TAG_PID, pid);
        ip_put_u32(&b, IP_TAG_COLS, cols);
        ip_put_u32(&b, IP_TAG_ROWS, rows);
        return simple_request(socket_path, init_pid, &b, err, errlen);
}

static json_object *process_to_json(const IpFrame *f)
{
        json_object *o = json_object_new_object(), *argv = json_object_new_array();
        uint32_t pid = 0, flags = 0, state = 0;
        uint64_t started = 0;
        (void) ip_get_u32(f, IP_TAG_PID, &pid);
        (void) ip_get_u32(f, IP_TAG_FLAGS, &flags);
        (void) ip_get_u32(f, IP_TAG_STATE, &state);
        (void) ip_get_u64(f, IP_TAG_STARTED_US, &started);
        size_t off = 0;
        uint8_t tag;
        const uint8_t *val;
        uint32_t len;
        while (ip_next_field(f, &off, &tag, &val, &len) > 0)
                if (tag == IP_TAG_ARG)
                        (void) json_object_array_add(
                                argv, json_object_new_string_len((const char *) val, (int) len));
        (void) json_object_object_add(o, "pid", json_object_new_int64(pid));
        (void) json_object_object_add(o, "cmd", argv);
        cleanup_free char *label = NULL;
        if (ip_get_strdup(f, IP_TAG_TAG, &label) == 0)
                (void) json_object_object_add(o, "tag", json_object_new_string(label));
        (void) json_object_object_add(o, "background",
                                      json_object_new_boolean((flags & IP_FLAG_BACKGROUND) != 0));
        (void) json_object_object_add(o, "pty",
                                      json_object_new_boolean((flags & IP_FLAG_PTY) != 0));
        (void) json_object_object_add(o, "running",
                                      json_object_new_boolean(state == IP_STATE_RUNNING));
        if (started) {
                char buf[40];
                format_rfc3339_us(started, buf, sizeof(buf));
                (void) json_object_object_add(o, "started_at", json_object_new_string(buf));
        }
        int32_t code = 0;
        uint32_t signo = 0;
        bool exited = state == IP_STATE_EXITED;
        (void) ip_get_i32(f, IP_TAG_EXIT_CODE, &code);
        (void) ip_get_u32(f, IP_TAG_SIGNO, &signo);
        (void) json_object_object_add(o, "exit_code", exited ? json_object_new_int(code) : NULL);
        (void) json_object_object_add(o, "signal",
                                      exited ? json_object_new_int((int) signo) : NULL);
        return o;
}

int exec_list(const char *socket_path, pid_t init_pid, json_object **ret)
{
        char err[256];
        cleanup_close int fd = init_client_connect(socket_path, init_pid, NULL, 0);
        if (fd < 0)
                return fd;
        IpBuilder b;
        ip_builder_init(&b, IP_MSG_LIST);
        int r = init_client_send(fd, &b);
        if (r < 0)
                return -EBUSY;
        json_object *arr = json_object_new_array();
        if (!arr)
                return -ENOMEM;
        cleanup_free uint8_t *body = NULL;
        size_t cap = 0;
        for (;;) {
                IpFrame f;
                r = init_client_read_answer(fd, &body, &cap, &f, err, sizeof(err));
                if (r < 0)
                        break;
                if (f.type == IP_MSG_OK)
                        break;
                if (f.type == IP_MSG_PROCESS)
                        (void) json_object_array_add(arr, process_to_json(&f));
        }
        if (r < 0) {
                json_object_put(arr);
                return r;
        }
        *ret = arr;
        return 0;
}

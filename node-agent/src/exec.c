#include "exec.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "fsroot.h"
#include "initproto.h"
#include "sandpit/json.h"
#include "sandpit/log.h"
#include "sandpit/macro.h"
#include "sandpit/outbuf.h"
#include "sandpit/util.h"
#include "secrets.h"

#define DEFAULT_PATH "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

void exec_request_done(ExecRequest *r)
{
        strv_free(r->argv);
        strv_free(r->env);
        secret_strv_free(r->secret_env);
        free(r->cwd);
        free(r->user);
        free(r->tag);
        free(r->stdin_data);
        *r = (ExecRequest){0};
}

static int strv_push(char ***v, size_t *n, char *s)
{
        if (!s)
                return -ENOMEM;
        char **nv = realloc(*v, (*n + 2) * sizeof(char *));
        if (!nv) {
                free(s);
                return -ENOMEM;
        }
        nv[(*n)++] = s;
        nv[*n] = NULL;
        *v = nv;
        return 0;
}

/* Sets NAME=value in env, replacing an existing NAME. Takes entry. */
static int env_set(char ***env, size_t *n, char *entry)
{
        if (!entry)
                return -ENOMEM;
        size_t klen = strcspn(entry, "=");
        for (size_t i = 0; i < *n; i++)
                if (strncmp((*env)[i], entry, klen) == 0 && (*env)[i][klen] == '=') {
                        free((*env)[i]);
                        (*env)[i] = entry;
                        return 0;
                }
        return strv_push(env, n, entry);
}

static int want_string(json_object *v, const char *key, char **dst, char *err, size_t errlen)
{
        if (!json_object_is_type(v, json_type_string)) {
                (void) snprintf(err, errlen, "%s must be a string", key);
                return -EINVAL;
        }
        free(*dst);
        *dst = strdup(json_object_get_string(v));
        return *dst ? 0 : -ENOMEM;
}

int exec_pty_size_from_json(json_object *o, const char *what, uint32_t *ret_cols,
                            uint32_t *ret_rows, char *err, size_t errlen)
{
        int64_t v[2] = {0, 0};
        bool ok = json_object_is_type(o, json_type_object);
        if (ok) {
                json_object_object_foreach(o, key, val) {
                        int i = streq(key, "cols") ? 0 : streq(key, "rows") ? 1 : -1;
                        if (i < 0 || !json_object_is_type(val, json_type_int)) {
                                ok = false;
                                break;
                        }
                        v[i] = json_object_get_int64(val);
                }
        }
        if (!ok || v[0] < 1 || v[0] > IP_PTY_DIM_MAX || v[1] < 1 || v[1] > IP_PTY_DIM_MAX) {
                (void) snprintf(err, errlen,
                                "%s must be {\"cols\": C, \"rows\": R} with integers of 1 to %u",
                                what, IP_PTY_DIM_MAX);
                return -EINVAL;
        }
        *ret_cols = (uint32_t) v[0];
        *ret_rows = (uint32_t) v[1];
        return 0;
}

int exec_request_from_json(json_object *body, const SandboxExecInfo *info, ExecRequest *ret,
                           char *err, size_t errlen)
{
        ExecRequest req = {0};
        size_t nenv = 0, nargv = 0;
        int r = env_set(&req.env, &nenv, strdup(DEFAULT_PATH));
        if (r == 0)
                r = env_set(&req.env, &nenv, strdup("LANG=C.UTF-8"));
        STRV_FOREACH(e, info->env)
                if (r == 0)
                        r = env_set(&req.env, &nenv, strdup(*e));
        /* The sandbox's secrets (added by init) beat its plain env and the
         * defaults; an exec's own env, added below, beats them. */
        STRV_FOREACH(n, info->secret_names) {
                size_t klen = strlen(*n);
                for (size_t i = 0; i < nenv; i++)
                        if (strncmp(req.env[i], *n, klen) == 0 && req.env[i][klen] == '=') {
                                free(req.env[i]);
                                memmove(&req.env[i], &req.env[i + 1], (nenv - i) * sizeof(char *));
                                nenv--;
                                break;
                        }
        }
        json_object *cmd = NULL, *shell = NULL;
        cleanup_strv char **secret_names = NULL;
        json_object_object_foreach(body, key, val) {
                if (r < 0)
                        break;
                if (streq(key, "cmd")) {
                        cmd = val;
                } else if (streq(key, "shell")) {
                        shell = val;
                } else if (streq(key, "env")) {
                        if (!json_object_is_type(val, json_type_object)) {
                                (void) snprintf(err, errlen, "env must be an object of strings");
                                r = -EINVAL;
                                break;
                        }
                        json_object_object_foreach(val, ek, ev) {
                                char *entry = NULL;
                                if (!json_object_is_type(ev, json_type_string) || !*ek ||
                                    strchr(ek, '=')) {
                                        (void) snprintf(err, errlen,
                                                        "env %.64s: names must be non-empty "
                                                        "without '=' and values strings",
                                                        ek);
                                        r = -EINVAL;
                                        break;
                                }
                                if (asprintf(&entry, "%s=%s", ek, json_object_get_string(ev)) < 0)
                                        entry = NULL;
                                if ((r = env_set(&req.env, &nenv, entry)) < 0)
                                        break;
                        }
                } else if (streq(key, "secret_env")) {
                        secret_strv_free(req.secret_env);
                        strv_free(secret_names);
                        req.secret_env = secret_names = NULL;
                        r = secrets_from_json(val, key, &req.secret_env, &secret_names, err,
                                              errlen);
                } else if (streq(key, "cwd")) {
                        if ((r = want_string(val, key, &req.cwd, err, errlen)) == 0 &&
                            req.cwd[0] != '/') {
                                (void) snprintf(err, errlen, "cwd must be an absolute path");
                                r = -EINVAL;
                        }
                } else if (streq(key, "user")) {
                        r = want_string(val, key, &req.user, err, errlen);
                } else if (streq(key, "tag")) {
                        r = want_string(val, key, &req.tag, err, errlen);
                } else if (streq(key, "stdin") || streq(key, "stdin_b64")) {
                        if (!json_object_is_type(val, json_type_string)) {
                                (void) snprintf(err, errlen, "%s must be a string", key);
                                r = -EINVAL;
                                break;
                        }
                        free(req.stdin_data);
                        req.stdin_data = NULL;
                        if (streq(key, "stdin")) {
                                size_t len = (size_t) json_object_get_string_len(val);
                                req.stdin_data = malloc(len + 1);
                                if (!req.stdin_data) {
                                        r = -ENOMEM;
                                        break;
                                }
                                memcpy(req.stdin_data, json_object_get_string(val), len);
                                req.stdin_len = len;
                        } else if (base64_decode(json_object_get_string(val), &req.stdin_data,
                                                 &req.stdin_len) < 0) {
                                (void) snprintf(err, errlen, "stdin_b64 is not valid base64");
                                r = -EINVAL;
                        }
                } else if (streq(key, "stdin_open") || streq(key, "background")) {
                        if (!json_object_is_type(val, json_type_boolean)) {
                                (void) snprintf(err, errlen, "%s must be a boolean", key);
                                r = -EINVAL;
                                break;
                        }
                        if (json_object_get_boolean(val))
                                req.flags |= streq(key, "background") ? IP_FLAG_BACKGROUND
                                                                      : IP_FLAG_STDIN_OPEN;
                } else if (streq(key, "timeout")) {
                        if (json_timeout_ms(val, false, &req.timeout_ms) < 0) {
                                (void) snprintf(err, errlen,
                                                "timeout must be a number of seconds > 0 and <= "
                                                "%d",
                                                TIMEOUT_MAX_S);
                                r = -EINVAL;
                                break;
                        }
                } else if (streq(key, "pty")) {
                        r = exec_pty_size_from_json(val, key, &req.cols, &req.rows, err, errlen);
                        req.flags |= IP_FLAG_PTY;
                } else {
                        (void) snprintf(err, errlen, "unknown field \"%.64s\"", key);
                        r = -EINVAL;
                }
        }
        json_object *plain_env = NULL;
        STRV_FOREACH(n, secret_names)
                if (r == 0 && json_object_object_get_ex(body, "env", &plain_env) &&
                    json_object_object_get_ex(plain_env, *n, NULL)) {
                        (void) snprintf(err, errlen, "%.64s is in both env and secret_env", *n);
                        r = -EINVAL;
                }
        if (r == 0 && !!cmd == !!shell) {
                (void) snprintf(err, errlen, "give exactly one of cmd (an argv array) and shell");
                r = -EINVAL;
        }
        if (r == 0 && cmd) {
                size_t n = json_object_is_type(cmd, json_type_array) ? json_object_array_length(cmd)
                                                                     : 0;
                if (n == 0) {
                        (void) snprintf(err, errlen, "cmd must be a non-empty array of strings");
                        r = -EINVAL;
                }
                for (size_t i = 0; r == 0 && i < n; i++) {
                        json_object *s = json_object_array_get_idx(cmd, i);
                        if (!json_object_is_type(s, json_type_string)) {
                                (void) snprintf(err, errlen,
                                                "cmd must be a non-empty array of strings");
                                r = -EINVAL;
                        } else {
                                r = strv_push(&req.argv, &nargv, strdup(json_object_get_string(s)));
                        }
                }
        } else if (r == 0 && shell) {
                if (!json_object_is_type(shell, json_type_string)) {
                        (void) snprintf(err, errlen, "shell must be a string");
                        r = -EINVAL;
                } else if ((r = strv_push(&req.argv, &nargv, strdup("/bin/sh"))) == 0 &&
                           (r = strv_push(&req.argv, &nargv, strdup("-c"))) == 0) {
                        r = strv_push(&req.argv, &nargv, strdup(json_object_get_string(shell)));
                }
        }
        if (r == 0 && !req.user && !(req.user = strdup(info->user)))
                r = -ENOMEM;
        if (r < 0) {
                exec_request_done(&req);
                return r;
        }
        *ret = req;
        return 0;
}

/* The refusal of an init socket that is not the sandbox's init's. */
static int init_refused(const char *socket_path, const char *why, char *err, size_t errlen)
{
        log_warning("refusing %s: %s", socket_path, why);
        if (err)
                (void) snprintf(err, errlen, "refused to talk to the sandbox's init socket: %s",
                                why);
        return -EIO;
}

/* Connects to init at socket_path (<sandbox dir>/ctl/init.sock) without
 * following anything the sandbox could have put there, and only to its init:
 * the control dir is opened without following a symlink, the socket below it by
 * openat2() with RESOLVE_NO_SYMLINKS, connected through that O_PATH fd, and the
 * peer's pid (SO_PEERCRED, which names the process that called listen()) must
 * be init_pid. -EBUSY when nothing listens there (init is gone); -EIO with a
 * message in err (may be NULL) when the socket is refused. */
static int init_connect(const char *socket_path, pid_t init_pid, char *err, size_t errlen)
{
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
        int fd = init_connect(socket_path, init_pid, NULL, 0);
        if (fd < 0)
                return fd;
        (void) close(fd);
        return 0;
}

static int send_frame(int fd, IpBuilder *b)
{
        int r = ip_builder_finish(b);
        if (r == 0)
                r = ip_write_all(fd, b->buf, b->len);
        ip_builder_free(b);
        return r;
}

/* Reads one answer frame; turns ERROR into a negative errno + message. */
static int read_answer(int fd, uint8_t **body, size_t *cap, IpFrame *f, char *err, size_t errlen)
{
        int r = ip_read_frame(fd, body, cap, f);
        if (r == 0) {
                (void) snprintf(err, errlen, "the sandbox's init closed the connection");
                return -EBUSY;
        }
        if (r < 0) {
                (void) snprintf(err, errlen, "reading from the sandbox's init: %s", strerror(-r));
                return r == -EPROTO ? -EIO : r;
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

int exec_spawn(const char *socket_path, pid_t init_pid, const ExecRequest *req, int *ret_fd,
               uint32_t *ret_pid, char *err, size_t errlen)
{
        cleanup_close int fd = init_connect(socket_path, init_pid, err, errlen);
        if (fd < 0) {
                if (fd != -EIO)
                        (void) snprintf(err, errlen, "the sandbox is not running");
                return fd;
        }
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
        int r = send_frame(fd, &b);
        if (r < 0) {
                (void) snprintf(err, errlen, "cannot send the request to the sandbox's init: %s",
                                strerror(-r));
                return r == -EMSGSIZE ? -EFBIG : -EBUSY;
        }
        cleanup_free uint8_t *body = NULL;
        size_t cap = 0;
        IpFrame f;
        r = read_answer(fd, &body, &cap, &f, err, errlen);
        if (r < 0)
                return r == -EBUSY || r == -EIO || r == -ENOMEM ? r : -EINVAL;
        uint32_t pid = 0;
        if (f.type != IP_MSG_STARTED || ip_get_u32(&f, IP_TAG_PID, &pid) < 0) {
                (void) snprintf(err, errlen, "unexpected answer from the sandbox's init");
                return -EIO;
        }
        *ret_pid = pid;
        *ret_fd = TAKE_FD(fd);
        return 0;
}

static int simple_request(const char *socket_path, pid_t init_pid, IpBuilder *b, char *err,
                          size_t errlen)
{
        cleanup_close int fd = init_connect(socket_path, init_pid, err, errlen);
        if (fd < 0) {
                ip_builder_free(b);
                if (fd != -EIO)
                        (void) snprintf(err, errlen, "the sandbox is not running");
                return fd;
        }
        int r = send_frame(fd, b);
        if (r < 0)
                return -EBUSY;
        cleanup_free uint8_t *body = NULL;
        size_t cap = 0;
        IpFrame f;
        r = read_answer(fd, &body, &cap, &f, err, errlen);
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
        cleanup_close int fd = init_connect(socket_path, init_pid, NULL, 0);
        if (fd < 0)
                return fd;
        IpBuilder b;
        ip_builder_init(&b, IP_MSG_LIST);
        int r = send_frame(fd, &b);
        if (r < 0)
                return -EBUSY;
        json_object *arr = json_object_new_array();
        if (!arr)
                return -ENOMEM;
        cleanup_free uint8_t *body = NULL;
        size_t cap = 0;
        for (;;) {
                IpFrame f;
                r = read_answer(fd, &body, &cap, &f, err, sizeof(err));
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

/* --- the NDJSON stream --------------------------------------------------- */

struct ExecStream {
        int fd;
        Agent *agent;
        char *id;
        uint64_t oom_before;
        uint8_t *frame_buf;
        size_t frame_cap;
        OutBuf out;          /* pending NDJSON bytes */
        uint8_t carry[2][4]; /* incomplete UTF-8 tails of stdout, stderr */
        size_t carry_len[2];
        bool done;
};

static int emit(ExecStream *s, json_object *o)
{
        return outbuf_append_json(&s->out, o);
}

static json_object *event_new(const char *type)
{
        json_object *o = json_object_new_object();
        if (o)
                (void) json_object_object_add(o, "type", json_object_new_string(type));
        return o;
}

static int emit_data(ExecStream *s, int which, const uint8_t *data, size_t len, bool final)
{
        const char *type = which == 0 ? "stdout" : "stderr";
        size_t total = s->carry_len[which] + len;
        cleanup_free uint8_t *buf = malloc(total ? total : 1);
        if (!buf)
                return -ENOMEM;
        memcpy(buf, s->carry[which], s->carry_len[which]);
        if (len)
                memcpy(buf + s->carry_len[which], data, len);
        s->carry_len[which] = 0;
        bool valid;
        size_t prefix = utf8_complete_prefix(buf, total, &valid);
        if (valid && !final && total - prefix < sizeof(s->carry[which])) {
                memcpy(s->carry[which], buf + prefix, total - prefix);
                s->carry_len[which] = total - prefix;
                total = prefix;
        }
        if (total == 0)
                return 0;
        json_object *o = event_new(type);
        if (!o)
                return -ENOMEM;
        if (valid && prefix == total) {
                (void) json_object_object_add(
                        o, "data", json_object_new_string_len((const char *) buf, (int) total));
        } else {
                cleanup_free char *b64 = NULL;
                if (base64_encode(buf, total, &b64) < 0) {
                        json_object_put(o);
                        return -ENOMEM;
                }
                (void) json_object_object_add(o, "data_b64", json_object_new_string(b64));
        }
        return emit(s, o);
}

/* Terminal output is bytes, escape sequences and all: always base64, never split
 * or joined, so a client can write it to its terminal as it comes. */
static int emit_pty(ExecStream *s, const uint8_t *data, size_t len)
{
        cleanup_free char *b64 = NULL;
        if (len == 0)
                return 0;
        json_object *o = event_new("pty");
        if (!o || base64_encode(data, len, &b64) < 0) {
                json_object_put(o);
                return -ENOMEM;
        }
        (void) json_object_object_add(o, "data_b64", json_object_new_string(b64));
        return emit(s, o);
}

static int emit_exit(ExecStream *s, const IpFrame *f)
{
        for (int w = 0; w < 2; w++)
                if (s->carry_len[w] > 0)
                        (void) emit_data(s, w, NULL, 0, true);
        uint32_t pid = 0, signo = 0, timed_out = 0;
        int32_t code = -1;
        uint64_t dur = 0;
        (void) ip_get_u32(f, IP_TAG_PID, &pid);
        (void) ip_get_i32(f, IP_TAG_EXIT_CODE, &code);
        (void) ip_get_u32(f, IP_TAG_SIGNO, &signo);
        (void) ip_get_u32(f, IP_TAG_TIMED_OUT, &timed_out);
        (void) ip_get_u64(f, IP_TAG_DURATION_US, &dur);
        bool oom = false;
        if (signo == SIGKILL && !timed_out && s->agent) {
                CgStats st;
                if (cg_read_stats(s->agent->cg, s->id, &st) == 0 && st.oom_kills > s->oom_before)
                        oom = true;
        }
        json_object *o = event_new("exit");
        if (!o)
                return -ENOMEM;
        (void) json_object_object_add(o, "pid", json_object_new_int64(pid));
        (void) json_object_object_add(o, "exit_code", json_object_new_int(code));
        (void) json_object_object_add(o, "signal", json_object_new_int((int) signo));
        (void) json_object_object_add(o, "timed_out", json_object_new_boolean(timed_out != 0));
        (void) json_object_object_add(o, "oom_killed", json_object_new_boolean(oom));
        char ms[32];
        (void) snprintf(ms, sizeof(ms), "%.3f", (double) dur / 1000.0);
        (void) json_object_object_add(o, "duration_ms",
                                      json_object_new_double_s((double) dur / 1000.0, ms));
        return emit(s, o);
}

static int emit_error(ExecStream *s, const char *message)
{
        json_object *o = event_new("error");
        if (!o)
                return -ENOMEM;
        (void) json_object_object_add(o, "message", json_object_new_string(message));
        return emit(s, o);
}

/* Translates one init frame into zero or more events. */
static int translate(ExecStream *s, const IpFrame *f)
{
        const uint8_t *data;
        uint32_t len;
        switch (f->type) {
        case IP_MSG_STDOUT:
        case IP_MSG_STDERR:
                if (ip_get_bytes(f, IP_TAG_DATA, &data, &len) < 0)
                        return 0;
                return emit_data(s, f->type == IP_MSG_STDOUT ? 0 : 1, data, len, false);
        case IP_MSG_PTY:
                if (ip_get_bytes(f, IP_TAG_DATA, &data, &len) < 0)
                        return 0;
                return emit_pty(s, data, len);
        case IP_MSG_EXIT:
                s->done = true;
                return emit_exit(s, f);
        case IP_MSG_ERROR: {
                cleanup_free char *msg = NULL;
                (void) ip_get_strdup(f, IP_TAG_MESSAGE, &msg);
                s->done = true;
                return emit_error(s, msg ? msg : "error from the sandbox's init");
        }
        default:
                return 0; /* STARTED on attach, or anything newer than us */
        }
}

static int translate(ExecStream *s, const IpFrame *f);

int exec_stream_new(int fd, uint32_t start_pid, Agent *a, const char *id, uint64_t oom_before,
                    ExecStream **ret)
{
        ExecStream *s = calloc(1, sizeof(*s));
        if (!s) {
                (void) close(fd);
                return -ENOMEM;
        }
        s->fd = fd;
        s->agent = a;
        s->oom_before = oom_before;
        s->id = strdup(id);
        if (!s->id) {
                exec_stream_free(s);
                return -ENOMEM;
        }
        if (start_pid > 0) {
                json_object *o = event_new("start");
                if (o)
                        (void) json_object_object_add(o, "pid", json_object_new_int64(start_pid));
                if (emit(s, o) < 0) {
                        exec_stream_free(s);
                        return -ENOMEM;
                }
        }
        *ret = s;
        return 0;
}

ssize_t exec_stream_read(void *cls, int client_fd, char *buf, size_t max)
{
        ExecStream *s = cls;
        for (;;) {
                if (outbuf_pending(&s->out))
                        return (ssize_t) outbuf_take(&s->out, buf, max);
                if (s->done)
                        return 0;
                struct pollfd p[2] = {{.fd = s->fd, .events = POLLIN},
                                      {.fd = client_fd, .events = POLLRDHUP}};
                int n = poll(p, client_fd >= 0 ? 2 : 1, -1);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (client_fd >= 0 && (p[1].revents & (POLLRDHUP | POLLHUP | POLLERR)))
                        return -ECONNRESET; /* closing fd makes init kill a foreground process */
                if (!(p[0].revents & (POLLIN | POLLHUP | POLLERR)))
                        continue;
                IpFrame f;
                int r = ip_read_frame(s->fd, &s->frame_buf, &s->frame_cap, &f);
                if (r <= 0) {
                        s->done = true;
                        if (emit_error(s, "the sandbox stopped before the process exited") < 0)
                                return -ENOMEM;
                        continue;
                }
                if (translate(s, &f) < 0)
                        return -ENOMEM;
        }
}

void exec_stream_free(void *cls)
{
        ExecStream *s = cls;
        if (!s)
                return;
        if (s->fd >= 0)
                (void) close(s->fd);
        free(s->id);
        free(s->frame_buf);
        outbuf_done(&s->out);
        free(s);
}

int signal_from_string(const char *s)
{
        static const struct {
                const char *name;
                int signo;
        } names[] = {
                {"HUP", SIGHUP},   {"INT", SIGINT},   {"QUIT", SIGQUIT}, {"KILL", SIGKILL},
                {"USR1", SIGUSR1}, {"USR2", SIGUSR2}, {"TERM", SIGTERM}, {"STOP", SIGSTOP},
                {"CONT", SIGCONT}, {"ALRM", SIGALRM}, {"PIPE", SIGPIPE}, {"WINCH", SIGWINCH},
        };
        if (!s || !*s)
                return -EINVAL;
        if (s[0] >= '0' && s[0] <= '9') {
                char *end = NULL;
                long v = strtol(s, &end, 10);
                return *end || v < 1 || v > 64 ? -EINVAL : (int) v;
        }
        const char *n = strncmp(s, "SIG", 3) == 0 ? s + 3 : s;
        for (size_t i = 0; i < ARRAY_SIZE(names); i++)
                if (streq(n, names[i].name))
                        return names[i].signo;
        return -EINVAL;
}

int exec_attach(const char *socket_path, pid_t init_pid, uint32_t pid, Agent *a, const char *id,
                uint64_t oom_before, ExecStream **ret, char *err, size_t errlen)
{
        cleanup_close int fd = init_connect(socket_path, init_pid, err, errlen);
        if (fd < 0) {
                if (fd != -EIO)
                        (void) snprintf(err, errlen, "the sandbox is not running");
                return fd;
        }
        IpBuilder b;
        ip_builder_init(&b, IP_MSG_ATTACH);
        ip_put_u32(&b, IP_TAG_PID, pid);
        if (send_frame(fd, &b) < 0)
                return -EBUSY;
        /* The first frame tells an unknown pid (ERROR) from a stream, before any
         * response status is sent. */
        cleanup_free uint8_t *body = NULL;
        size_t cap = 0;
        IpFrame f;
        int r = read_answer(fd, &body, &cap, &f, err, errlen);
        if (r < 0)
                return r == -ENOENT || r == -ESRCH ? -ESRCH : r;
        ExecStream *s = NULL;
        r = exec_stream_new(TAKE_FD(fd), 0, a, id, oom_before, &s);
        if (r < 0)
                return r;
        if (translate(s, &f) < 0) {
                exec_stream_free(s);
                return -ENOMEM;
        }
        *ret = s;
        return 0;
}

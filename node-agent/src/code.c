/* Code-interpreter contexts and runs (docs/code-interpreter.md).
 *
 * A context is one kernel process in the sandbox, started through sandpit-init
 * as a foreground process of a connection the agent keeps open (init_fd): if
 * the agent closes it, init kills the kernel; EXIT on it says the kernel died;
 * SIGNAL frames on it interrupt a run. The kernel talks JSON lines over a unix
 * socket (sock_fd) that the agent accepted on a listening socket it created in
 * the sandbox's code dir (bind-mounted read-only into the sandbox), after the
 * kernel proved itself with a one-time token passed on its stdin.
 *
 * Locking: reg_lock guards the context list and every field of every context
 * except the fds' use during a run, which belongs to the one thread that set
 * `busy`. Others only shutdown() the fds (under reg_lock), which wakes that
 * thread; fds are closed under reg_lock by whoever holds busy or drops the last
 * reference. */
#include "code.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "exec.h"
#include "initproto.h"
#include "sandpit/http-status.h"
#include "sandpit/log.h"
#include "sandpit/macro.h"
#include "sandpit/outbuf.h"
#include "sandpit/util.h"
#include "template.h"

#define CODE_START_TIMEOUT_MS 30000
#define CODE_INTERRUPT_GRACE  2000 /* ms from SIGINT to SIGKILL */
#define CODE_KILL_WAIT        5000 /* ms from SIGKILL to giving up on the EXIT */
#define CODE_HELLO_MAX        4096
#define CODE_HELLO_TIMEOUT_US 5000000 /* a silent connection does not hold up the kernel's */
#define CODE_CTX_ID_LEN       16
/* The sandbox's secret names (a JSON array) in a kernel's environment. */
#define CODE_SECRET_NAMES_VAR "SANDPIT_SECRET_NAMES"
/* CODE_EVENT_MAX, for the drivers (sandpit_limit.py, .js). */
#define CODE_EVENT_MAX_VAR "SANDPIT_CODE_EVENT_MAX"

typedef enum {
        CTX_STARTING,
        CTX_READY,
        CTX_DEAD,
} CtxState;

struct CodeContext {
        char *sandbox_id;
        char *id;
        const char *language; /* static */
        char *cwd;            /* requested; NULL: the user's home */
        char *real_cwd;       /* what the kernel reported */
        bool is_default;
        CtxState state;
        char *death;
        int sock_fd;
        int init_fd;
        uint32_t pid;
        bool busy;
        bool removed;
        /* Pre-started in a sandbox waiting in a warm pool (code_prestart_*),
         * not yet handed over; what it was spawned with, to compare with
         * what the claimer's sandbox would give a kernel. */
        bool pooled;
        char **spawn_env;
        char *spawn_user;
        char *spawn_cwd;
        /* Handed over at a claim and not used yet: not listed, restarted
         * nor removed by id, as a cold sandbox has no context until its
         * first run. */
        bool latent;
        unsigned refs;
        struct CodeContext *next;
};

typedef struct {
        const char *name;
        const char *title; /* in messages: "R", "TypeScript" */
        const char *argv[4];
        const char *env; /* one extra NAME=value */
} CodeLanguage;

/* How a kernel driver's start error begins when the template lacks its
 * language (bridge.py, typescript.js). */
#define KERNEL_NOT_INSTALLED "this sandbox's template has no "

static const CodeLanguage languages[] = {
        {"python", "Python", {"python3", CODE_KERNELS_MOUNT "/python.py"}, "MPLBACKEND=Agg"},
        {"javascript",
         "JavaScript",
         {"node", "--expose-internals", CODE_KERNELS_MOUNT "/javascript.js"},
         "NODE_NO_WARNINGS=1"},
        {"bash", "bash", {"python3", CODE_KERNELS_MOUNT "/bash.py"}, NULL},
        {"typescript",
         "TypeScript",
         {"node", "--expose-internals", CODE_KERNELS_MOUNT "/typescript.js"},
         "NODE_NO_WARNINGS=1"},
        /* R and Java through bridge.py (their events masked and limited there). */
        {"r", "R", {"python3", CODE_KERNELS_MOUNT "/bridge.py", "r"}, NULL},
        {"java", "Java", {"python3", CODE_KERNELS_MOUNT "/bridge.py", "java"}, NULL},
};

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t reg_cond = PTHREAD_COND_INITIALIZER;
static CodeContext *contexts;

const char *code_language_normalize(const char *name)
{
        if (!name)
                return NULL;
        if (streq(name, "js"))
                return "javascript";
        if (streq(name, "ts"))
                return "typescript";
        for (size_t i = 0; i < ARRAY_SIZE(languages); i++)
                if (streq(name, languages[i].name))
                        return languages[i].name;
        return NULL;
}

static const CodeLanguage *language_get(const char *name)
{
        for (size_t i = 0; i < ARRAY_SIZE(languages); i++)
                if (streq(name, languages[i].name))
                        return &languages[i];
        return NULL;
}

/* Whether the sandbox's template has the language, by its template.json's
 * "languages" (docs/templates.md): -EINVAL with a message naming the template
 * and its languages when the list leaves it out. A template that does not say
 * (no such field, or an image's) is given the benefit of the doubt: the
 * kernel's start tells. */
static int template_has_language(Agent *a, const SandboxExecInfo *info, const char *language,
                                 char *err, size_t errlen)
{
        Template *t = NULL;
        if (!info->template_name || !a->cfg.templates_dir ||
            template_load(a->cfg.templates_dir, info->template_name, &t) < 0)
                return 0;
        int r = 0;
        if (t->languages) {
                char list[256] = "";
                size_t n = 0;
                r = -EINVAL;
                STRV_FOREACH(l, t->languages) {
                        if (streq_ptr(code_language_normalize(*l), language))
                                r = 0;
                        int k = snprintf(list + n, sizeof(list) - n, "%s%s", n ? ", " : "", *l);
                        if (k > 0 && (size_t) k < sizeof(list) - n)
                                n += (size_t) k;
                }
                const CodeLanguage *lang = language_get(language);
                if (r < 0)
                        (void) snprintf(err, errlen,
                                        "this sandbox's template has no %s: template %s lists %s "
                                        "(its template.json's languages)",
                                        lang ? lang->title : language, t->name, n ? list : "none");
        }
        template_free(t);
        return r;
}

/* --- the registry ------------------------------------------------------- */

static void fds_close_locked(CodeContext *c)
{
        closep(&c->sock_fd);
        closep(&c->init_fd); /* init kills the kernel when this closes */
}

static void fds_shutdown_locked(CodeContext *c)
{
        if (c->sock_fd >= 0)
                (void) shutdown(c->sock_fd, SHUT_RDWR);
        if (c->init_fd >= 0)
                (void) shutdown(c->init_fd, SHUT_RDWR);
}

static void context_free(CodeContext *c)
{
        if (!c)
                return;
        fds_close_locked(c);
        free(c->sandbox_id);
        free(c->id);
        free(c->cwd);
        free(c->real_cwd);
        free(c->death);
        strv_free(c->spawn_env);
        free(c->spawn_user);
        free(c->spawn_cwd);
        free(c);
}

static CodeContext *find_locked(const char *sandbox_id, const char *id)
{
        for (CodeContext *c = contexts; c; c = c->next)
                if (streq(c->sandbox_id, sandbox_id) && streq(c->id, id))
                        return c;
        return NULL;
}

static void unlink_locked(CodeContext *c)
{
        for (CodeContext **p = &contexts; *p; p = &(*p)->next)
                if (*p == c) {
                        *p = c->next;
                        c->next = NULL;
                        return;
                }
}

static CodeContext *context_new_locked(const char *sandbox_id, const char *id, const char *language,
                                       const char *cwd, bool is_default)
{
        CodeContext *c = calloc(1, sizeof(*c));
        if (!c)
                return NULL;
        c->sock_fd = c->init_fd = -1;
        c->language = language;
        c->is_default = is_default;
        c->state = CTX_STARTING;
        c->sandbox_id = strdup(sandbox_id);
        c->id = strdup(id);
        c->cwd = cwd ? strdup(cwd) : NULL;
        if (!c->sandbox_id || !c->id || (cwd && !c->cwd)) {
                context_free(c);
                return NULL;
        }
        c->busy = true; /* the creator starts the kernel */
        c->refs = 2;    /* the list's and the creator's */
        c->next = contexts;
        contexts = c;
        return c;
}

/* Waits until c is not busy and takes it; -ENOENT if it was removed meanwhile. */
static int acquire_locked(CodeContext *c)
{
        c->refs++;
        while (c->busy && !c->removed)
                (void) pthread_cond_wait(&reg_cond, &reg_lock);
        if (c->removed) {
                if (--c->refs == 0)
                        context_free(c);
                return -ENOENT;
        }
        c->busy = true;
        return 0;
}

static void release_locked(CodeContext *c)
{
        c->busy = false;
        (void) pthread_cond_broadcast(&reg_cond);
        if (--c->refs == 0)
                context_free(c);
}

static void release(CodeContext *c)
{
        (void) pthread_mutex_lock(&reg_lock);
        release_locked(c);
        (void) pthread_mutex_unlock(&reg_lock);
}

/* Drops c from the list; with a run in progress its fds are shut down so the
 * run ends at once. */
static void remove_locked(CodeContext *c)
{
        unlink_locked(c);
        c->removed = true;
        fds_shutdown_locked(c);
        (void) pthread_cond_broadcast(&reg_cond);
        if (--c->refs == 0)
                context_free(c);
}

static void mark_dead(CodeContext *c, const char *why)
{
        (void) pthread_mutex_lock(&reg_lock);
        c->state = CTX_DEAD;
        free(c->death);
        c->death = strdup(why);
        fds_close_locked(c);
        (void) pthread_mutex_unlock(&reg_lock);
        log_sbx(LOG_LEVEL_INFO, c->sandbox_id, 0, "code context %s died: %s", c->id, why);
}

void code_forget_sandbox(const char *sandbox_id)
{
        (void) pthread_mutex_lock(&reg_lock);
        for (CodeContext *c = contexts, *next = NULL; c; c = next) {
                next = c->next;
                if (streq(c->sandbox_id, sandbox_id))
                        remove_locked(c);
        }
        (void) pthread_mutex_unlock(&reg_lock);
}

static json_object *context_json_locked(const CodeContext *c)
{
        static const char *const states[] = {"starting", "ready", "dead"};
        json_object *o = json_object_new_object();
        if (!o)
                return NULL;
        const char *cwd = c->real_cwd ? c->real_cwd : c->cwd;
        (void) json_object_object_add(o, "id", json_object_new_string(c->id));
        (void) json_object_object_add(o, "language", json_object_new_string(c->language));
        (void) json_object_object_add(o, "cwd", cwd ? json_object_new_string(cwd) : NULL);
        (void) json_object_object_add(o, "default", json_object_new_boolean(c->is_default));
        (void) json_object_object_add(o, "state", json_object_new_string(states[c->state]));
        if (c->state == CTX_DEAD && c->death)
                (void) json_object_object_add(o, "error", json_object_new_string(c->death));
        return o;
}

int code_context_list(const char *sandbox_id, json_object **ret)
{
        json_object *arr = json_object_new_array();
        if (!arr)
                return -ENOMEM;
        (void) pthread_mutex_lock(&reg_lock);
        for (CodeContext *c = contexts; c; c = c->next)
                if (streq(c->sandbox_id, sandbox_id) && !c->latent)
                        (void) json_object_array_add(arr, context_json_locked(c));
        (void) pthread_mutex_unlock(&reg_lock);
        *ret = arr;
        return 0;
}

int code_context_remove(const char *sandbox_id, const char *ctx_id)
{
        (void) pthread_mutex_lock(&reg_lock);
        CodeContext *c = find_locked(sandbox_id, ctx_id);
        if (c && c->latent) /* not there yet for the caller (code_claim_kernel) */
                c = NULL;
        if (c)
                remove_locked(c);
        (void) pthread_mutex_unlock(&reg_lock);
        return c ? 0 : -ENOENT;
}

/* --- starting a kernel -------------------------------------------------- */

static int listen_socket(int dirfd, const char *name)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        /* Through the dir fd: the state dir's path may be too long for sun_path. */
        int n = snprintf(sa.sun_path, sizeof(sa.sun_path), "/proc/self/fd/%d/%s", dirfd, name);
        if (n < 0 || (size_t) n >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        cleanup_close int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return negative_errno();
        if (bind(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0)
                return negative_errno();
        /* The kernel runs as the sandbox's user; the token keeps others out. */
        if (fchmodat(dirfd, name, 0666, 0) < 0 || listen(fd, 8) < 0) {
                int r = negative_errno();
                (void) unlinkat(dirfd, name, 0);
                return r;
        }
        return TAKE_FD(fd);
}

static int remaining_ms(uint64_t deadline_us)
{
        uint64_t now = now_monotonic_us();
        return now >= deadline_us ? 0 : (int) ((deadline_us - now + 999) / 1000);
}

/* Reads the kernel's hello line and checks its token; the kernel's cwd. */
static int read_hello(int fd, const char *token, uint64_t deadline_us, char **ret_cwd)
{
        char buf[CODE_HELLO_MAX];
        size_t len = 0;
        for (;;) {
                struct pollfd p = {.fd = fd, .events = POLLIN};
                int n = poll(&p, 1, remaining_ms(deadline_us));
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        return n < 0 ? negative_errno() : -ETIMEDOUT;
                ssize_t k = read(fd, buf + len, sizeof(buf) - 1 - len);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0)
                        return -EPROTO;
                len += (size_t) k;
                buf[len] = 0;
                if (memchr(buf, '\n', len))
                        break;
                if (len == sizeof(buf) - 1)
                        return -EPROTO;
        }
        json_object *o = json_tokener_parse(buf), *t = NULL, *cwd = NULL;
        bool ok = o && json_object_object_get_ex(o, "token", &t) &&
                  json_object_is_type(t, json_type_string) &&
                  streq(json_object_get_string(t), token);
        if (ok && json_object_object_get_ex(o, "cwd", &cwd) &&
            json_object_is_type(cwd, json_type_string))
                *ret_cwd = strdup(json_object_get_string(cwd));
        json_object_put(o);
        return ok ? 0 : -EACCES;
}

/* Starts the kernel of c (busy, held by the caller) and fills in its fds. */
static int kernel_start(const SandboxExecInfo *info, CodeContext *c, char *err, size_t errlen)
{
        const CodeLanguage *lang = language_get(c->language);
        char name[32], token[40], rnd[CODE_CTX_ID_LEN + 1];
        if (!lang || random_id(rnd, CODE_CTX_ID_LEN) < 0 || random_id(token, 32) < 0)
                return -EIO;
        (void) snprintf(name, sizeof(name), "k%s.sock", rnd);

        /* <ctl dir>/init.sock -> its sibling code (rootfs.h, both layouts) */
        cleanup_free char *dir = strdup(info->socket_path);
        char *slash = dir ? strrchr(dir, '/') : NULL;
        if (slash)
                *slash = 0;
        slash = slash ? strrchr(dir, '/') : NULL;
        if (!slash)
                return -ENOMEM;
        *slash = 0;
        cleanup_free char *code_dir = NULL;
        if (asprintf(&code_dir, "%s/" CODE_DIR_NAME, dir) < 0)
                return -ENOMEM;
        cleanup_close int dirfd = open(code_dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (dirfd < 0) {
                (void) snprintf(err, errlen,
                                "this sandbox has no code dir (created before the "
                                "code interpreter existed?)");
                return -EOPNOTSUPP;
        }
        cleanup_close int lfd = listen_socket(dirfd, name);
        if (lfd == -ENOSPC) { /* the code dir is on the sandbox's disk (rootfs.h) */
                (void) snprintf(err, errlen,
                                "cannot listen for the kernel: the sandbox's disk is full");
                return lfd;
        }
        if (lfd < 0) {
                (void) snprintf(err, errlen, "cannot listen for the kernel: %s", strerror(-lfd));
                return http_errno_internal(lfd);
        }

        json_object *body = json_object_new_object(), *cmd = json_object_new_array(),
                    *env = json_object_new_object();
        for (size_t i = 0; i < ARRAY_SIZE(lang->argv) && lang->argv[i]; i++)
                (void) json_object_array_add(cmd, json_object_new_string(lang->argv[i]));
        char sock_arg[64], stdin_data[64], tag[128];
        (void) snprintf(sock_arg, sizeof(sock_arg), CODE_SOCKETS_MOUNT "/%s", name);
        (void) snprintf(stdin_data, sizeof(stdin_data), "%s\n", token);
        (void) snprintf(tag, sizeof(tag), "code:%s:%s", c->language, c->id);
        (void) json_object_array_add(cmd, json_object_new_string(sock_arg));
        char event_max[32];
        (void) snprintf(event_max, sizeof(event_max), "%zu", CODE_EVENT_MAX);
        (void) json_object_object_add(env, CODE_EVENT_MAX_VAR, json_object_new_string(event_max));
        if (lang->env) {
                const char *eq = strchr(lang->env, '=');
                cleanup_free char *k = strndup(lang->env, (size_t) (eq - lang->env));
                if (k)
                        (void) json_object_object_add(env, k, json_object_new_string(eq + 1));
        }
        /* The secrets' names (never values: init adds those), so the driver
         * can mask the values it finds in its environment. */
        if (info->secret_names && info->secret_names[0]) {
                json_object *names = json_object_new_array();
                STRV_FOREACH(n, info->secret_names)
                        (void) json_object_array_add(names, json_object_new_string(*n));
                (void) json_object_object_add(
                        env, CODE_SECRET_NAMES_VAR,
                        json_object_new_string(json_object_to_json_string_ext(
                                names, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)));
                json_object_put(names);
        }
        (void) json_object_object_add(body, "cmd", cmd);
        (void) json_object_object_add(body, "env", env);
        (void) json_object_object_add(body, "stdin", json_object_new_string(stdin_data));
        (void) json_object_object_add(body, "tag", json_object_new_string(tag));
        if (c->cwd)
                (void) json_object_object_add(body, "cwd", json_object_new_string(c->cwd));
        ExecRequest er;
        int r = exec_request_from_json(body, info, &er, err, errlen);
        json_object_put(body);
        if (r < 0) {
                (void) unlinkat(dirfd, name, 0);
                return r;
        }
        /* A pre-started kernel keeps what it was spawned with (no secrets: a
         * pooled sandbox has none) for the comparison at the claim. */
        cleanup_strv char **spawn_env = NULL;
        cleanup_free char *spawn_user = NULL, *spawn_cwd = NULL;
        if (c->pooled && (!(spawn_env = strv_copy(er.env)) || !(spawn_user = strdup(er.user)) ||
                          (er.cwd && !(spawn_cwd = strdup(er.cwd))))) {
                exec_request_done(&er);
                (void) unlinkat(dirfd, name, 0);
                return -ENOMEM;
        }
        cleanup_close int init_fd = -1;
        uint32_t pid = 0;
        r = exec_spawn(info->socket_path, info->init_pid, &er, &init_fd, &pid, err, errlen);
        exec_request_done(&er);
        if (r < 0) {
                (void) unlinkat(dirfd, name, 0);
                return r;
        }

        /* Accept the kernel's connection, or notice that it died first. */
        uint64_t deadline = now_monotonic_us() + (uint64_t) CODE_START_TIMEOUT_MS * 1000;
        cleanup_close int sock = -1;
        cleanup_free char *real_cwd = NULL;
        char diag[1024] = "";
        size_t diag_len = 0;
        cleanup_free uint8_t *fbuf = NULL;
        size_t fcap = 0;
        r = -ETIMEDOUT;
        while (sock < 0) {
                struct pollfd p[2] = {{.fd = lfd, .events = POLLIN},
                                      {.fd = init_fd, .events = POLLIN}};
                int n = poll(p, 2, remaining_ms(deadline));
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0) {
                        r = n < 0 ? http_errno_internal(negative_errno()) : -ETIMEDOUT;
                        (void) snprintf(err, errlen, "the %s kernel did not start within %d s",
                                        c->language, CODE_START_TIMEOUT_MS / 1000);
                        break;
                }
                if (p[1].revents) {
                        IpFrame f;
                        int k = ip_read_frame(init_fd, &fbuf, &fcap, &f);
                        const uint8_t *data;
                        uint32_t len;
                        if (k > 0 && (f.type == IP_MSG_STDOUT || f.type == IP_MSG_STDERR) &&
                            ip_get_bytes(&f, IP_TAG_DATA, &data, &len) == 0) {
                                size_t m = sizeof(diag) - 1 - diag_len;
                                if (len < m)
                                        m = len;
                                memcpy(diag + diag_len, data, m);
                                diag_len += m;
                                diag[diag_len] = 0;
                                continue;
                        }
                        if (k > 0 && f.type != IP_MSG_EXIT)
                                continue;
                        (void) snprintf(err, errlen, "the %s kernel exited while starting%s%.900s",
                                        c->language, diag_len ? ": " : "", diag);
                        /* A driver that finds its language missing says so
                         * (bridge.py, typescript.js): the request's to fix. */
                        r = strncmp(diag, KERNEL_NOT_INSTALLED, strlen(KERNEL_NOT_INSTALLED)) == 0
                                    ? -EINVAL
                                    : -EIO;
                        break;
                }
                if (p[0].revents) {
                        cleanup_close int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
                        if (fd < 0)
                                continue;
                        free(real_cwd);
                        real_cwd = NULL;
                        /* Anything else in the sandbox may connect too: only the
                         * holder of the token is the kernel. */
                        uint64_t hello_by = now_monotonic_us() + CODE_HELLO_TIMEOUT_US;
                        if (read_hello(fd, token, hello_by < deadline ? hello_by : deadline,
                                       &real_cwd) == 0)
                                sock = TAKE_FD(fd);
                }
        }
        (void) unlinkat(dirfd, name, 0);
        if (sock < 0)
                return r; /* closing init_fd kills the kernel */
        (void) pthread_mutex_lock(&reg_lock);
        c->sock_fd = TAKE_FD(sock);
        c->init_fd = TAKE_FD(init_fd);
        c->pid = pid;
        free(c->real_cwd);
        c->real_cwd = TAKE_PTR(real_cwd);
        c->state = CTX_READY;
        free(c->death);
        c->death = NULL;
        if (c->pooled) {
                strv_free(c->spawn_env);
                free(c->spawn_user);
                free(c->spawn_cwd);
                c->spawn_env = TAKE_PTR(spawn_env);
                c->spawn_user = TAKE_PTR(spawn_user);
                c->spawn_cwd = TAKE_PTR(spawn_cwd);
        }
        /* A remove or sandbox delete while we were starting. */
        if (c->removed)
                fds_shutdown_locked(c);
        (void) pthread_mutex_unlock(&reg_lock);
        log_sbx(LOG_LEVEL_DEBUG, c->sandbox_id, 0, "code context %s (%s) started, pid %u", c->id,
                c->language, pid);
        return 0;
}

int code_context_create(Agent *a, const SandboxExecInfo *info, const char *language,
                        const char *cwd, json_object **ret, char *err, size_t errlen)
{
        if (!a->cfg.kernels_dir) {
                (void) snprintf(err, errlen, "the code interpreter's kernels are not installed");
                return -EOPNOTSUPP;
        }
        int r = template_has_language(a, info, language, err, errlen);
        if (r < 0)
                return r;
        char id[CODE_CTX_ID_LEN + 1];
        if ((r = random_id(id, CODE_CTX_ID_LEN)) < 0)
                return r;
        (void) pthread_mutex_lock(&reg_lock);
        CodeContext *c = context_new_locked(info->id, id, language, cwd, false);
        (void) pthread_mutex_unlock(&reg_lock);
        if (!c)
                return -ENOMEM;
        r = kernel_start(info, c, err, errlen);
        (void) pthread_mutex_lock(&reg_lock);
        if (r < 0 && !c->removed)
                remove_locked(c);
        json_object *o = r == 0 ? context_json_locked(c) : NULL;
        release_locked(c);
        (void) pthread_mutex_unlock(&reg_lock);
        if (r < 0)
                return r;
        if (!o)
                return -ENOMEM;
        *ret = o;
        return 0;
}

int code_context_restart(Agent *a, const SandboxExecInfo *info, const char *ctx_id,
                         json_object **ret, char *err, size_t errlen)
{
        if (!a->cfg.kernels_dir) {
                (void) snprintf(err, errlen, "the code interpreter's kernels are not installed");
                return -EOPNOTSUPP;
        }
        (void) pthread_mutex_lock(&reg_lock);
        CodeContext *c = find_locked(info->id, ctx_id);
        if (!c || c->latent) {
                (void) pthread_mutex_unlock(&reg_lock);
                return -ENOENT;
        }
        fds_shutdown_locked(c); /* a run in progress ends now */
        int r = acquire_locked(c);
        if (r == 0) {
                fds_close_locked(c); /* init kills the old kernel */
                c->state = CTX_STARTING;
        }
        (void) pthread_mutex_unlock(&reg_lock);
        if (r < 0)
                return r;
        r = kernel_start(info, c, err, errlen);
        if (r < 0)
                mark_dead(c, err[0] ? err : "the kernel did not restart");
        (void) pthread_mutex_lock(&reg_lock);
        json_object *o = r == 0 ? context_json_locked(c) : NULL;
        release_locked(c);
        (void) pthread_mutex_unlock(&reg_lock);
        if (r < 0)
                return r;
        if (!o)
                return -ENOMEM;
        *ret = o;
        return 0;
}

/* --- runs ---------------------------------------------------------------- */

struct CodeRun {
        CodeContext *ctx;
        uint64_t timeout_ms;
        uint64_t deadline_us; /* monotonic; 0: none */
        int phase;            /* 0 running, 1 SIGINT sent, 2 SIGKILL sent */
        bool timed_out;
        bool done;
        char *in; /* kernel bytes not yet a whole line */
        size_t in_len, in_cap;
        bool skipping; /* in a line over CODE_EVENT_MAX, dropped up to its newline */
        uint8_t *frame_buf;
        size_t frame_cap;
        OutBuf out;          /* NDJSON bytes for the client */
        uint8_t carry[2][4]; /* incomplete UTF-8 tails of init's stdout, stderr */
        size_t carry_len[2];
};

/* Queues o as one NDJSON line; takes o. */
static int emit(CodeRun *run, json_object *o)
{
        return outbuf_append_json(&run->out, o);
}

static json_object *event_new(const char *type)
{
        json_object *o = json_object_new_object();
        if (o)
                (void) json_object_object_add(o, "type", json_object_new_string(type));
        return o;
}

static int emit_error(CodeRun *run, const char *name, const char *value)
{
        json_object *o = event_new("error");
        if (!o)
                return -ENOMEM;
        (void) json_object_object_add(o, "name", json_object_new_string(name));
        (void) json_object_object_add(o, "value", json_object_new_string(value));
        (void) json_object_object_add(o, "traceback", json_object_new_string(""));
        return emit(run, o);
}

static int emit_end(CodeRun *run, json_object *exit_code)
{
        json_object *o = event_new("end_of_execution");
        if (!o) {
                json_object_put(exit_code);
                return -ENOMEM;
        }
        (void) json_object_object_add(o, "timed_out", json_object_new_boolean(run->timed_out));
        if (exit_code)
                (void) json_object_object_add(o, "exit_code", exit_code);
        run->done = true;
        return emit(run, o);
}

/* Output the kernel's process wrote to its own stdout/stderr (bypassing the
 * driver, e.g. a child process of node): forwarded as text, invalid UTF-8
 * replaced. */
static int emit_raw_output(CodeRun *run, int which, const uint8_t *data, size_t len)
{
        size_t total = run->carry_len[which] + len;
        cleanup_free uint8_t *buf = malloc(total + 1);
        cleanup_free char *text = malloc(total * 3 + 1);
        if (!buf || !text)
                return -ENOMEM;
        memcpy(buf, run->carry[which], run->carry_len[which]);
        memcpy(buf + run->carry_len[which], data, len);
        run->carry_len[which] = 0;
        size_t t = 0, i = 0;
        while (i < total) {
                bool valid = true;
                size_t ok = utf8_complete_prefix(buf + i, total - i, &valid);
                memcpy(text + t, buf + i, ok);
                t += ok;
                i += ok;
                if (i == total)
                        break;
                if (valid && total - i < sizeof(run->carry[which])) {
                        memcpy(run->carry[which], buf + i, total - i);
                        run->carry_len[which] = total - i;
                        break;
                }
                static const char replacement[3] = {'\xef', '\xbf', '\xbd'}; /* U+FFFD */
                memcpy(text + t, replacement, sizeof(replacement));
                t += sizeof(replacement);
                i++;
        }
        if (t == 0)
                return 0;
        json_object *o = event_new(which == 0 ? "stdout" : "stderr");
        if (!o)
                return -ENOMEM;
        (void) json_object_object_add(o, "text", json_object_new_string_len(text, (int) t));
        return emit(run, o);
}

static void send_signal(CodeRun *run, int signo)
{
        IpBuilder b;
        ip_builder_init(&b, IP_MSG_SIGNAL);
        ip_put_u32(&b, IP_TAG_SIGNO, (uint32_t) signo);
        if (ip_builder_finish(&b) == 0 && run->ctx->init_fd >= 0)
                (void) ip_write_all(run->ctx->init_fd, b.buf, b.len); /* never answered */
        ip_builder_free(&b);
}

/* The kernel is gone: say so, mark the context dead, end the run. */
static int kernel_gone(CodeRun *run, const char *why)
{
        char msg[512];
        (void) snprintf(msg, sizeof(msg), "the %s context's process %s; restart the context",
                        run->ctx->language, why);
        mark_dead(run->ctx, msg);
        int r = emit_error(run, "ContextDied", msg);
        return r < 0 ? r : emit_end(run, NULL);
}

static void describe_exit(const IpFrame *f, char *buf, size_t len)
{
        int32_t code = -1;
        uint32_t signo = 0;
        (void) ip_get_i32(f, IP_TAG_EXIT_CODE, &code);
        (void) ip_get_u32(f, IP_TAG_SIGNO, &signo);
        if (signo)
                (void) snprintf(buf, len, "was killed by signal %u", signo);
        else
                (void) snprintf(buf, len, "exited with status %d", code);
}

/* The kernel's socket hit EOF: wait briefly for init's EXIT to say why. */
static int kernel_eof(CodeRun *run)
{
        char why[128] = "exited";
        uint64_t deadline = now_monotonic_us() + 1000000;
        while (run->ctx->init_fd >= 0) {
                struct pollfd p = {.fd = run->ctx->init_fd, .events = POLLIN};
                if (poll(&p, 1, remaining_ms(deadline)) <= 0)
                        break;
                IpFrame f;
                if (ip_read_frame(run->ctx->init_fd, &run->frame_buf, &run->frame_cap, &f) <= 0)
                        break;
                if (f.type == IP_MSG_EXIT) {
                        describe_exit(&f, why, sizeof(why));
                        break;
                }
        }
        return kernel_gone(run, why);
}

static const char *const forwarded_types[] = {"stdout", "stderr", "result", "error",
                                              "number_of_executions"};

/* Whether line (len bytes) parses as JSON with nothing after it and holds no
 * raw control character: then it can be forwarded as it is, rather than
 * re-serialised (a second copy of a big event). */
static json_object *parse_line(const char *line, size_t len, bool *ret_verbatim)
{
        json_tokener *tok = json_tokener_new();
        if (!tok)
                return NULL;
        json_object *o = json_tokener_parse_ex(tok, line, (int) len);
        bool whole = o && json_tokener_get_error(tok) == json_tokener_success &&
                     json_tokener_get_parse_end(tok) == len;
        json_tokener_free(tok);
        for (size_t i = 0; whole && i < len; i++)
                whole = (unsigned char) line[i] >= 0x20;
        *ret_verbatim = whole;
        return o;
}

/* One line from the kernel: validated, then forwarded (or dropped). */
static int kernel_line(CodeRun *run, char *line, size_t len)
{
        bool verbatim = false;
        json_object *o = parse_line(line, len, &verbatim), *t = NULL;
        if (!o || !json_object_is_type(o, json_type_object) ||
            !json_object_object_get_ex(o, "type", &t) ||
            !json_object_is_type(t, json_type_string)) {
                json_object_put(o);
                return 0;
        }
        const char *type = json_object_get_string(t);
        if (streq(type, "end_of_execution")) {
                json_object *code = NULL;
                if (json_object_object_get_ex(o, "exit_code", &code) &&
                    json_object_is_type(code, json_type_int))
                        code = json_object_new_int(json_object_get_int(code));
                else
                        code = NULL;
                json_object_put(o);
                return emit_end(run, code);
        }
        bool known = false;
        for (size_t i = 0; i < ARRAY_SIZE(forwarded_types); i++)
                known = known || streq(type, forwarded_types[i]);
        if (!known) {
                json_object_put(o);
                return 0;
        }
        if (run->timed_out && streq(type, "error")) {
                /* The kernel saw our interrupt; the caller sees why it came. */
                char value[128];
                (void) snprintf(value, sizeof(value),
                                "execution timed out after %.3g s and was interrupted",
                                (double) run->timeout_ms / 1000.0);
                (void) json_object_object_add(o, "name", json_object_new_string("TimeoutError"));
                (void) json_object_object_add(o, "value", json_object_new_string(value));
                verbatim = false;
        }
        if (!verbatim)
                return emit(run, o);
        json_object_put(o);
        int r = outbuf_append(&run->out, line, len);
        return r < 0 ? r : outbuf_append(&run->out, "\n", 1);
}

/* A line over CODE_EVENT_MAX was dropped (only a driver bypassed by user
 * code sends one): the run goes on, and says so. */
static int line_dropped(CodeRun *run)
{
        char msg[160];
        (void) snprintf(msg, sizeof(msg),
                        "the kernel sent an event over %zu bytes; it was dropped "
                        "(docs/code-interpreter.md, \"Limits\")",
                        CODE_EVENT_MAX);
        return emit_error(run, "EventTooLarge", msg);
}

static int kernel_readable(CodeRun *run)
{
        /* Room for a whole line of CODE_EVENT_MAX and one read more, never
         * more: the buffer is bounded whatever the sandbox sends. */
        if (run->in_cap - run->in_len < 65536) {
                size_t cap = run->in_cap ? run->in_cap * 2 : 131072;
                if (cap > CODE_EVENT_MAX + 65536)
                        cap = CODE_EVENT_MAX + 65536;
                if (cap > run->in_cap) {
                        char *n = realloc(run->in, cap + 1);
                        if (!n)
                                return -ENOMEM;
                        run->in = n;
                        run->in_cap = cap;
                }
        }
        ssize_t k = read(run->ctx->sock_fd, run->in + run->in_len, run->in_cap - run->in_len);
        if (k < 0 && (errno == EINTR || errno == EAGAIN))
                return 0;
        if (k <= 0)
                return kernel_eof(run);
        size_t scan = run->in_len;
        run->in_len += (size_t) k;
        size_t start = 0;
        for (size_t i = scan; i < run->in_len && !run->done; i++) {
                if (run->in[i] != '\n')
                        continue;
                int r = 0;
                if (run->skipping) {
                        run->skipping = false;
                        r = line_dropped(run);
                } else if (i - start + 1 > CODE_EVENT_MAX) {
                        r = line_dropped(run);
                } else {
                        run->in[i] = 0;
                        r = kernel_line(run, run->in + start, i - start);
                }
                if (r < 0)
                        return r;
                start = i + 1;
        }
        if (run->done)
                return 0;
        memmove(run->in, run->in + start, run->in_len - start);
        run->in_len -= start;
        if (run->skipping || run->in_len >= CODE_EVENT_MAX) {
                /* No newline within the limit: drop up to the next one. */
                run->skipping = true;
                run->in_len = 0;
        }
        return 0;
}

static int init_readable(CodeRun *run)
{
        IpFrame f;
        int k = ip_read_frame(run->ctx->init_fd, &run->frame_buf, &run->frame_cap, &f);
        if (k <= 0)
                return kernel_gone(run, "stopped with the sandbox");
        const uint8_t *data;
        uint32_t len;
        char why[128];
        switch (f.type) {
        case IP_MSG_STDOUT:
        case IP_MSG_STDERR:
                if (ip_get_bytes(&f, IP_TAG_DATA, &data, &len) < 0)
                        return 0;
                return emit_raw_output(run, f.type == IP_MSG_STDOUT ? 0 : 1, data, len);
        case IP_MSG_EXIT:
                describe_exit(&f, why, sizeof(why));
                return kernel_gone(run, why);
        default:
                return 0;
        }
}

/* Past the deadline: interrupt, then kill. */
static int escalate(CodeRun *run)
{
        if (run->phase == 0) {
                send_signal(run, SIGINT);
                run->phase = 1;
                run->deadline_us = now_monotonic_us() + (uint64_t) CODE_INTERRUPT_GRACE * 1000;
        } else if (run->phase == 1) {
                send_signal(run, SIGKILL);
                run->phase = 2;
                run->deadline_us = now_monotonic_us() + (uint64_t) CODE_KILL_WAIT * 1000;
        } else {
                return kernel_gone(run, "did not stop after SIGKILL");
        }
        return 0;
}

ssize_t code_run_read(void *cls, int client_fd, char *buf, size_t max)
{
        CodeRun *run = cls;
        for (;;) {
                if (outbuf_pending(&run->out))
                        return (ssize_t) outbuf_take(&run->out, buf, max);
                if (run->done)
                        return 0;
                struct pollfd p[3] = {{.fd = run->ctx->sock_fd, .events = POLLIN},
                                      {.fd = run->ctx->init_fd, .events = POLLIN},
                                      {.fd = client_fd, .events = POLLRDHUP}};
                int timeout = run->deadline_us ? remaining_ms(run->deadline_us) : -1;
                int n = poll(p, client_fd >= 0 ? 3 : 2, timeout);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return negative_errno();
                int r = 0;
                if (n == 0) {
                        if (run->phase == 0)
                                run->timed_out = true;
                        r = escalate(run);
                } else if (client_fd >= 0 && (p[2].revents & (POLLRDHUP | POLLHUP | POLLERR))) {
                        return -ECONNRESET; /* code_run_free() stops the run */
                } else if (p[0].revents) {
                        r = kernel_readable(run);
                } else if (p[1].revents) {
                        r = init_readable(run);
                }
                if (r < 0)
                        return r;
        }
}

void code_run_free(void *cls)
{
        CodeRun *run = cls;
        if (!run)
                return;
        if (!run->done && run->ctx->sock_fd >= 0) {
                /* The client went away mid-run: interrupt the kernel and wait for
                 * its end (or kill it), so the next run starts clean. */
                char scratch[4096];
                if (run->phase == 0) {
                        run->phase = 0;
                        (void) escalate(run);
                }
                while (code_run_read(run, -1, scratch, sizeof(scratch)) > 0)
                        ;
        }
        release(run->ctx);
        free(run->in);
        free(run->frame_buf);
        outbuf_done(&run->out);
        free(run);
}

int code_run_start(Agent *a, const SandboxExecInfo *info, const CodeRunRequest *req, CodeRun **ret,
                   char *err, size_t errlen)
{
        if (!a->cfg.kernels_dir) {
                (void) snprintf(err, errlen, "the code interpreter's kernels are not installed");
                return -EOPNOTSUPP;
        }
        const char *ctx_id = req->context ? req->context : req->language;
        (void) pthread_mutex_lock(&reg_lock);
        CodeContext *c = find_locked(info->id, ctx_id);
        bool fresh = false;
        int r = 0;
        if (c && c->latent && req->context) /* by id: not there until its first run */
                c = NULL;
        if (c && c->latent)
                c->latent = false; /* the first run: a kernel handed over at the claim */
        if (!c && !req->context) {
                c = context_new_locked(info->id, ctx_id, req->language, NULL, true);
                fresh = c != NULL;
                r = c ? 0 : -ENOMEM;
        } else if (!c) {
                (void) snprintf(err, errlen, "context %s not found in sandbox %s", ctx_id,
                                info->id);
                r = -ENOENT;
        } else {
                r = acquire_locked(c);
                if (r == -ENOENT)
                        (void) snprintf(err, errlen, "context %s was removed", ctx_id);
        }
        (void) pthread_mutex_unlock(&reg_lock);
        if (r < 0)
                return r;
        if (fresh) {
                r = template_has_language(a, info, c->language, err, errlen);
                if (r == 0)
                        r = kernel_start(info, c, err, errlen);
                if (r < 0) {
                        (void) pthread_mutex_lock(&reg_lock);
                        if (!c->removed)
                                remove_locked(c);
                        release_locked(c);
                        (void) pthread_mutex_unlock(&reg_lock);
                        return r;
                }
        }
        (void) pthread_mutex_lock(&reg_lock);
        if (c->state != CTX_READY || c->sock_fd < 0) {
                (void) snprintf(err, errlen, "the context's process died (%s): restart it",
                                c->death ? c->death : "the context is not ready");
                release_locked(c);
                (void) pthread_mutex_unlock(&reg_lock);
                return -EBUSY;
        }
        (void) pthread_mutex_unlock(&reg_lock);

        CodeRun *run = calloc(1, sizeof(*run));
        if (!run) {
                release(c);
                return -ENOMEM;
        }
        run->ctx = c;
        run->timeout_ms = req->timeout_ms;
        if (req->timeout_ms)
                run->deadline_us = now_monotonic_us() + req->timeout_ms * 1000;
        json_object *msg = json_object_new_object();
        (void) json_object_object_add(msg, "code", json_object_new_string(req->code));
        if (req->env)
                (void) json_object_object_add(msg, "env", json_object_get(req->env));
        if (req->secret_env)
                (void) json_object_object_add(msg, "secret_env", json_object_get(req->secret_env));
        size_t len = 0;
        const char *text = json_object_to_json_string_length(
                msg, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
        cleanup_free char *line = text ? malloc(len + 1) : NULL;
        if (line) {
                memcpy(line, text, len);
                line[len] = '\n';
        }
        /* The caller's env objects must not outlive this call inside msg. */
        if (req->env)
                (void) json_object_object_del(msg, "env");
        if (req->secret_env) {
                (void) json_object_object_del(msg, "secret_env");
                /* msg's own serialisation buffer held the values. */
                if (text)
                        explicit_bzero((char *) text, len);
        }
        json_object_put(msg);
        r = line ? write_all(c->sock_fd, line, len + 1) : -ENOMEM;
        if (line && req->secret_env)
                explicit_bzero(line, len + 1);
        if (r < 0) {
                /* The kernel is gone; the stream says so. */
                r = kernel_eof(run);
                if (r < 0) {
                        code_run_free(run);
                        return r;
                }
        }
        *ret = run;
        return 0;
}

/* --- warm pools: a pre-started default python kernel --------------------- */

#define CODE_PRESTART_LANGUAGE "python"
#define CODE_CLAIM_TIMEOUT_MS  2000
#define CODE_CLAIM_REPLY_MAX   256

CodeContext *code_prestart_begin(const char *sandbox_id)
{
        const char *lang = code_language_normalize(CODE_PRESTART_LANGUAGE);
        (void) pthread_mutex_lock(&reg_lock);
        CodeContext *c = find_locked(sandbox_id, lang)
                                 ? NULL
                                 : context_new_locked(sandbox_id, lang, lang, NULL, true);
        if (c)
                c->pooled = true;
        (void) pthread_mutex_unlock(&reg_lock);
        return c;
}

int code_prestart_finish(Agent *a, const SandboxExecInfo *info, CodeContext *c, char *err,
                         size_t errlen)
{
        int r = -EOPNOTSUPP;
        if (a->cfg.kernels_dir)
                r = kernel_start(info, c, err, errlen);
        (void) pthread_mutex_lock(&reg_lock);
        if (r < 0 && !c->removed)
                remove_locked(c);
        release_locked(c);
        (void) pthread_mutex_unlock(&reg_lock);
        return r;
}

bool code_prestarted_ready(const char *sandbox_id)
{
        (void) pthread_mutex_lock(&reg_lock);
        CodeContext *c = find_locked(sandbox_id, CODE_PRESTART_LANGUAGE);
        bool ready = c && c->pooled && !c->busy && c->state == CTX_READY && c->sock_fd >= 0;
        (void) pthread_mutex_unlock(&reg_lock);
        return ready;
}

/* Variables the interpreter (or the dynamic loader, or libc) reads once at
 * its start: a kernel started with other values is not what a cold start
 * would give, so a claim that changes one of them gets a fresh kernel. */
static bool startup_var(const char *entry)
{
        static const char *const exact[] = {"PATH",           "HOME",     "USER",
                                            "LOGNAME",        "LANG",     "TZ",
                                            "GLIBC_TUNABLES", "LANGUAGE", "PYTHONPATH"};
        static const char *const prefix[] = {"PYTHON", "LC_", "LD_", "MALLOC_"};
        size_t n = strcspn(entry, "=");
        for (size_t i = 0; i < ARRAY_SIZE(exact); i++)
                if (strlen(exact[i]) == n && strncmp(entry, exact[i], n) == 0)
                        return true;
        for (size_t i = 0; i < ARRAY_SIZE(prefix); i++)
                if (n >= strlen(prefix[i]) && strncmp(entry, prefix[i], strlen(prefix[i])) == 0)
                        return true;
        return false;
}

/* The entry of env named as entry's name ("NAME=..."), or NULL. */
static const char *env_entry(char *const *env, const char *entry)
{
        size_t n = strcspn(entry, "=");
        for (char *const *e = env; e && *e; e++)
                if (strncmp(*e, entry, n) == 0 && (*e)[n] == '=')
                        return *e;
        return NULL;
}

static bool internal_var(const char *entry)
{
        size_t n = strcspn(entry, "=");
        return (n == strlen(CODE_EVENT_MAX_VAR) && strncmp(entry, CODE_EVENT_MAX_VAR, n) == 0) ||
               (n == strlen(CODE_SECRET_NAMES_VAR) &&
                strncmp(entry, CODE_SECRET_NAMES_VAR, n) == 0);
}

/* Whether a variable read at start differs between the pre-started kernel's
 * environment (old) and the one a cold kernel would get (env and secrets). */
static bool startup_differs(char *const *old, char *const *env, char *const *secrets, char *why,
                            size_t whylen)
{
        char *const *lists[] = {env, secrets};
        for (char *const *e = old; e && *e; e++) {
                if (!startup_var(*e))
                        continue;
                const char *now = env_entry(secrets, *e);
                if (!now)
                        now = env_entry(env, *e);
                if (!now || !streq(now, *e)) {
                        (void) snprintf(why, whylen, "%.*s differs", (int) strcspn(*e, "="), *e);
                        return true;
                }
        }
        for (size_t l = 0; l < ARRAY_SIZE(lists); l++)
                for (char *const *e = lists[l]; e && *e; e++)
                        if (startup_var(*e) && !env_entry(old, *e)) {
                                (void) snprintf(why, whylen, "%.*s is set", (int) strcspn(*e, "="),
                                                *e);
                                return true;
                        }
        return false;
}

/* Appends s as a JSON string to buf (room for 6 bytes per byte of s, plus 2). */
static size_t json_quote(char *buf, const char *s, size_t len)
{
        static const char hex[] = "0123456789abcdef";
        size_t o = 0;
        buf[o++] = '"';
        for (size_t i = 0; i < len; i++) {
                unsigned char ch = (unsigned char) s[i];
                if (ch == '"' || ch == '\\') {
                        buf[o++] = '\\';
                        buf[o++] = (char) ch;
                } else if (ch < 0x20) {
                        buf[o++] = '\\';
                        buf[o++] = 'u';
                        buf[o++] = '0';
                        buf[o++] = '0';
                        buf[o++] = hex[ch >> 4];
                        buf[o++] = hex[ch & 15];
                } else {
                        buf[o++] = (char) ch;
                }
        }
        buf[o++] = '"';
        return o;
}

/* The claim line: {"type":"claim","env":{...},"secret_env":{...}}\n. The
 * secrets are written straight into one buffer, which the caller zeroes. */
static char *claim_line(char *const *env, char *const *secrets, size_t *ret_len)
{
        json_object *o = json_object_new_object();
        if (!o)
                return NULL;
        for (char *const *e = env; e && *e; e++) {
                size_t n = strcspn(*e, "=");
                if (internal_var(*e) || !(*e)[n])
                        continue;
                cleanup_free char *k = strndup(*e, n);
                if (k)
                        (void) json_object_object_add(o, k, json_object_new_string(*e + n + 1));
        }
        size_t elen = 0;
        const char *etext = json_object_to_json_string_length(
                o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &elen);
        size_t cap = elen + 64;
        for (char *const *s = secrets; s && *s; s++)
                cap += strlen(*s) * 6 + 8;
        char *buf = etext ? malloc(cap) : NULL;
        if (!buf) {
                json_object_put(o);
                return NULL;
        }
        size_t len = (size_t) snprintf(buf, cap, "{\"type\":\"claim\",\"env\":%s,\"secret_env\":{",
                                       etext);
        json_object_put(o);
        for (char *const *s = secrets; s && *s; s++) {
                size_t n = strcspn(*s, "=");
                if (!(*s)[n])
                        continue;
                if (s != secrets)
                        buf[len++] = ',';
                len += json_quote(buf + len, *s, n);
                buf[len++] = ':';
                len += json_quote(buf + len, *s + n + 1, strlen(*s + n + 1));
        }
        buf[len++] = '}';
        buf[len++] = '}';
        buf[len++] = '\n';
        *ret_len = len;
        return buf;
}

/* Sends the claim to the kernel and waits for its "claimed". */
static int claim_exchange(int fd, const char *line, size_t len)
{
        int r = write_all(fd, line, len);
        if (r < 0)
                return r;
        char buf[CODE_CLAIM_REPLY_MAX];
        size_t got = 0;
        uint64_t deadline = now_monotonic_us() + (uint64_t) CODE_CLAIM_TIMEOUT_MS * 1000;
        while (!memchr(buf, '\n', got)) {
                struct pollfd p = {.fd = fd, .events = POLLIN};
                int n = poll(&p, 1, remaining_ms(deadline));
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        return n < 0 ? negative_errno() : -ETIMEDOUT;
                ssize_t k = read(fd, buf + got, sizeof(buf) - 1 - got);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0 || (got += (size_t) k) == sizeof(buf) - 1)
                        return -EPROTO;
        }
        buf[got] = 0;
        json_object *o = json_tokener_parse(buf), *t = NULL;
        bool ok = o && json_object_object_get_ex(o, "type", &t) &&
                  json_object_is_type(t, json_type_string) &&
                  streq(json_object_get_string(t), "claimed");
        json_object_put(o);
        return ok ? 0 : -EPROTO;
}

int code_claim_kernel(const char *pooled_id, const SandboxExecInfo *info, char *const *secret_env,
                      char *why, size_t whylen)
{
        (void) pthread_mutex_lock(&reg_lock);
        CodeContext *c = find_locked(pooled_id, CODE_PRESTART_LANGUAGE);
        if (!c) {
                (void) pthread_mutex_unlock(&reg_lock);
                return 0;
        }
        if (!c->pooled || c->busy || c->state != CTX_READY || c->sock_fd < 0) {
                (void) snprintf(why, whylen, "its kernel was still starting");
                remove_locked(c); /* a start in progress ends; its thread frees it */
                (void) pthread_mutex_unlock(&reg_lock);
                return -EBUSY;
        }
        c->busy = true; /* nobody else can see it: taken at once */
        c->refs++;
        int fd = c->sock_fd;
        (void) pthread_mutex_unlock(&reg_lock);

        /* What a cold start in the claimed sandbox would spawn: the same
         * request as kernel_start()'s, made for the claimer's sandbox. */
        int r = 0;
        const CodeLanguage *lang = language_get(c->language);
        json_object *body = json_object_new_object(), *cmd = json_object_new_array(),
                    *env = json_object_new_object();
        (void) json_object_array_add(cmd, json_object_new_string(lang->argv[0]));
        if (lang->env) {
                const char *eq = strchr(lang->env, '=');
                cleanup_free char *k = strndup(lang->env, (size_t) (eq - lang->env));
                if (k)
                        (void) json_object_object_add(env, k, json_object_new_string(eq + 1));
        }
        (void) json_object_object_add(body, "cmd", cmd);
        (void) json_object_object_add(body, "env", env);
        ExecRequest er = {0};
        char err[256] = "";
        if (!info->user) /* an image's default user is not known here: a cold start */
                r = -EINVAL;
        else
                r = exec_request_from_json(body, info, &er, err, sizeof(err));
        json_object_put(body);
        if (r < 0) {
                (void) snprintf(why, whylen, "%s", err[0] ? err : "the sandbox's user is unknown");
        } else if (!c->spawn_user || !streq(er.user, c->spawn_user)) {
                (void) snprintf(why, whylen, "the sandbox's user differs");
                r = -EINVAL;
        } else if (!!er.cwd != !!c->spawn_cwd || (er.cwd && !streq(er.cwd, c->spawn_cwd))) {
                (void) snprintf(why, whylen, "the sandbox's cwd differs");
                r = -EINVAL;
        } else if (startup_differs(c->spawn_env, er.env, secret_env, why, whylen)) {
                r = -EINVAL;
        }
        if (r == 0) {
                size_t len = 0;
                char *line = claim_line(er.env, secret_env, &len);
                r = line ? claim_exchange(fd, line, len) : -ENOMEM;
                if (line) {
                        explicit_bzero(line, len);
                        free(line);
                }
                if (r < 0)
                        (void) snprintf(why, whylen, "the kernel did not take it: %s",
                                        strerror(-r));
        }
        exec_request_done(&er);

        (void) pthread_mutex_lock(&reg_lock);
        if (r == 0 && c->removed) {
                (void) snprintf(why, whylen, "the sandbox went away");
                r = -ECANCELED;
        }
        if (r == 0) {
                char *id = strdup(info->id);
                if (id) {
                        free(c->sandbox_id);
                        c->sandbox_id = id;
                        c->pooled = false;
                        c->latent = true;
                        strv_free(c->spawn_env);
                        c->spawn_env = NULL;
                } else {
                        r = -ENOMEM;
                }
        }
        if (r < 0 && !c->removed)
                remove_locked(c); /* init kills the kernel when its fds close */
        release_locked(c);
        (void) pthread_mutex_unlock(&reg_lock);
        return r == 0 ? 1 : r;
}

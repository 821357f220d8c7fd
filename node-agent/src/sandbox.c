/* Sandbox lifecycle. A create is a list of setup steps (dirs, cgroup, rootfs,
 * bundle, state file, runtime run, wait for init), and every failure runs the
 * same teardown that delete runs, so a failed create leaves nothing behind. */
#include "sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/pidfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "bundle.h"
#include "code.h"
#include "exec.h"
#include "initproto.h"
#include "metrics.h"
#include "net.h"
#include "rootfs.h"
#include "runtime.h"
#include "sandpit/log.h"
#include "sandpit/macro.h"
#include "sandpit/quantity.h"
#include "sandpit/util.h"
#include "secrets.h"
#include "state.h"
#include "template.h"

#define DEFAULT_TEMPLATE "default"
#define DEFAULT_CPU      1.0
#define DEFAULT_MEMORY   (512ull << 20)
#define DEFAULT_PIDS     512u
#define DEFAULT_DISK     (512ull << 20)
#define DEFAULT_TIMEOUT  300u
#define DEFAULT_USER     "user"
#define READY_TIMEOUT_MS 10000
#define ID_LEN           20

void sandbox_spec_done(SandboxSpec *s)
{
        free(s->id);
        free(s->template_name);
        strv_free(s->env);
        secret_strv_free(s->secret_env);
        strv_free(s->secret_names);
        free(s->user);
        json_object_put(s->labels);
        net_policy_done(&s->network);
        *s = (SandboxSpec){0};
}

static Runtime agent_runtime(const Agent *a)
{
        return (Runtime){.binary = a->cfg.runtime, .root = a->runc_root};
}

/* --- request parsing ---------------------------------------------------- */

static int env_from_json(json_object *v, char ***ret, char *err, size_t errlen)
{
        if (!json_object_is_type(v, json_type_object)) {
                (void) snprintf(err, errlen, "env must be an object of strings");
                return -EINVAL;
        }
        size_t n = (size_t) json_object_object_length(v), i = 0;
        char **env = calloc(n + 1, sizeof(char *));
        if (!env)
                return -ENOMEM;
        json_object_object_foreach(v, key, val) {
                if (!json_object_is_type(val, json_type_string) || !*key || strchr(key, '=') ||
                    strlen(key) > 1024) {
                        (void) snprintf(err, errlen,
                                        "env %.64s: names must be non-empty without '=' and "
                                        "values strings",
                                        key);
                        strv_free(env);
                        return -EINVAL;
                }
                if (asprintf(&env[i], "%s=%s", key, json_object_get_string(val)) < 0) {
                        env[i] = NULL;
                        strv_free(env);
                        return -ENOMEM;
                }
                i++;
        }
        *ret = env;
        return 0;
}

int sandbox_spec_from_json(json_object *req, SandboxSpec *ret, char *err, size_t errlen)
{
        SandboxSpec s = {.cpu = DEFAULT_CPU,
                         .memory = DEFAULT_MEMORY,
                         .pids = DEFAULT_PIDS,
                         .disk = DEFAULT_DISK,
                         .timeout_s = DEFAULT_TIMEOUT};
        int r = 0;
        json_object_object_foreach(req, key, val) {
                if (streq(key, "template") || streq(key, "id") || streq(key, "user")) {
                        if (!json_object_is_type(val, json_type_string)) {
                                (void) snprintf(err, errlen, "%s must be a string", key);
                                r = -EINVAL;
                                break;
                        }
                        char **dst = streq(key, "template") ? &s.template_name
                                     : streq(key, "id")     ? &s.id
                                                            : &s.user;
                        free(*dst);
                        if (!(*dst = strdup(json_object_get_string(val)))) {
                                r = -ENOMEM;
                                break;
                        }
                } else if (streq(key, "cpu")) {
                        if (quantity_cpu_from_json(val, &s.cpu) < 0 || s.cpu < 0.01 || s.cpu > 64) {
                                (void) snprintf(err, errlen,
                                                "cpu must be a number of cores between 0.01 and "
                                                "64, or a string like \"500m\"");
                                r = -EINVAL;
                                break;
                        }
                } else if (streq(key, "memory") || streq(key, "disk")) {
                        uint64_t *dst = streq(key, "memory") ? &s.memory : &s.disk;
                        uint64_t min = streq(key, "memory") ? 4ull << 20 : 1ull << 20;
                        if (quantity_bytes_from_json(val, dst) < 0 || *dst < min ||
                            *dst > 64ull << 30) {
                                (void) snprintf(err, errlen,
                                                "%s must be bytes or a quantity like \"512Mi\", "
                                                "between %lluMi and 64Gi",
                                                key, (unsigned long long) (min >> 20));
                                r = -EINVAL;
                                break;
                        }
                } else if (streq(key, "pids") || streq(key, "timeout")) {
                        bool pids = streq(key, "pids");
                        int64_t v = json_object_get_int64(val);
                        int64_t lo = pids ? 8 : 1, hi = pids ? 65536 : TIMEOUT_MAX_S;
                        if (!json_object_is_type(val, json_type_int) || v < lo || v > hi) {
                                (void) snprintf(err, errlen,
                                                "%s must be an integer between %lld and %lld", key,
                                                (long long) lo, (long long) hi);
                                r = -EINVAL;
                                break;
                        }
                        *(pids ? &s.pids : &s.timeout_s) = (uint64_t) v;
                } else if (streq(key, "env")) {
                        strv_free(s.env);
                        s.env = NULL;
                        if ((r = env_from_json(val, &s.env, err, errlen)) < 0)
                                break;
                } else if (streq(key, "secret_env")) {
                        secret_strv_free(s.secret_env);
                        strv_free(s.secret_names);
                        s.secret_env = s.secret_names = NULL;
                        if ((r = secrets_from_json(val, key, &s.secret_env, &s.secret_names, err,
                                                   errlen)) < 0)
                                break;
                } else if (streq(key, "labels")) {
                        if (!json_object_is_type(val, json_type_object)) {
                                (void) snprintf(err, errlen, "labels must be an object");
                                r = -EINVAL;
                                break;
                        }
                        json_object_object_foreach(val, lk, lv) {
                                if (!json_object_is_type(lv, json_type_string) || !*lk ||
                                    strchr(lk, '=') || strchr(lk, ',')) {
                                        (void) snprintf(err, errlen,
                                                        "label %.64s: keys must be non-empty "
                                                        "without '=' or ',' and values strings",
                                                        lk);
                                        r = -EINVAL;
                                }
                        }
                        if (r < 0)
                                break;
                        json_object_put(s.labels);
                        s.labels = NULL;
                        if (json_object_deep_copy(val, &s.labels, NULL) < 0) {
                                r = -ENOMEM;
                                break;
                        }
                } else if (streq(key, "network")) {
                        net_policy_done(&s.network);
                        if ((r = net_policy_from_json(val, &s.network, err, errlen)) < 0)
                                break;
                } else {
                        (void) snprintf(err, errlen, "unknown field \"%.64s\"", key);
                        r = -EINVAL;
                        break;
                }
        }
        if (r == 0 && s.id && !id_is_valid(s.id)) {
                (void) snprintf(err, errlen,
                                "id must be 1-63 characters of [a-z0-9-] not starting with '-'");
                r = -EINVAL;
        }
        if (r == 0 && s.user && (!*s.user || strchr(s.user, ':') || strlen(s.user) > 64)) {
                (void) snprintf(err, errlen, "user must be a user name or uid");
                r = -EINVAL;
        }
        STRV_FOREACH(n, s.secret_names)
                if (r == 0 && env_has_name(s.env, *n)) {
                        (void) snprintf(err, errlen, "%.64s is in both env and secret_env", *n);
                        r = -EINVAL;
                }
        if (r == 0 && !s.secret_names && !(s.secret_names = calloc(1, sizeof(char *))))
                r = -ENOMEM;
        if (r == 0 && !s.template_name && !(s.template_name = strdup(DEFAULT_TEMPLATE)))
                r = -ENOMEM;
        if (r == 0 && !s.user && !(s.user = strdup(DEFAULT_USER)))
                r = -ENOMEM;
        if (r == 0 && !s.env && !(s.env = calloc(1, sizeof(char *))))
                r = -ENOMEM;
        if (r == 0 && !s.labels && !(s.labels = json_object_new_object()))
                r = -ENOMEM;
        if (r < 0) {
                sandbox_spec_done(&s);
                return r;
        }
        *ret = s;
        return 0;
}

/* --- table -------------------------------------------------------------- */

static Sandbox *find_locked(Agent *a, const char *id)
{
        for (Sandbox *s = a->sandboxes; s; s = s->next)
                if (streq(s->spec.id, id))
                        return s;
        return NULL;
}

static void unlink_locked(Agent *a, Sandbox *sb)
{
        for (Sandbox **p = &a->sandboxes; *p; p = &(*p)->next)
                if (*p == sb) {
                        *p = sb->next;
                        (void) pthread_cond_broadcast(&a->table_changed);
                        return;
                }
}

static void sandbox_free(Sandbox *sb)
{
        if (!sb)
                return;
        if (sb->pidfd >= 0)
                (void) close(sb->pidfd);
        sandbox_spec_done(&sb->spec);
        free(sb->dir);
        free(sb->socket_path);
        free(sb);
}

static void wake_monitor(Agent *a)
{
        uint64_t one = 1;
        if (a->wake_fd >= 0)
                (void) !write(a->wake_fd, &one, sizeof(one));
}

static const char *state_name(SandboxState s)
{
        switch (s) {
        case SANDBOX_CREATING:
                return "creating";
        case SANDBOX_RUNNING:
                return "running";
        case SANDBOX_EXITED:
                return "exited";
        case SANDBOX_DELETING:
                return "deleting";
        case SANDBOX_PAUSED:
                return "paused";
        }
        return "unknown";
}

static json_object *env_to_json(char **env)
{
        json_object *o = json_object_new_object();
        STRV_FOREACH(e, env) {
                const char *eq = strchr(*e, '=');
                if (!eq)
                        continue;
                cleanup_free char *k = strndup(*e, (size_t) (eq - *e));
                if (k)
                        (void) json_object_object_add(o, k, json_object_new_string(eq + 1));
        }
        return o;
}

static void add_time(json_object *o, const char *key, uint64_t us)
{
        char buf[40];
        format_rfc3339_us(us, buf, sizeof(buf));
        (void) json_object_object_add(o, key, json_object_new_string(buf));
}

/* The API view; oom_kills is read from the cgroup by the caller (outside the lock). */
static json_object *sandbox_to_json_locked(const Sandbox *sb)
{
        json_object *o = json_object_new_object();
        if (!o)
                return NULL;
        const SandboxSpec *s = &sb->spec;
        (void) json_object_object_add(o, "id", json_object_new_string(s->id));
        (void) json_object_object_add(o, "template", json_object_new_string(s->template_name));
        (void) json_object_object_add(o, "state", json_object_new_string(state_name(sb->state)));
        (void) json_object_object_add(o, "cpu", json_object_new_double(s->cpu));
        (void) json_object_object_add(o, "memory", json_object_new_int64((int64_t) s->memory));
        (void) json_object_object_add(o, "pids", json_object_new_int64((int64_t) s->pids));
        (void) json_object_object_add(o, "disk", json_object_new_int64((int64_t) s->disk));
        (void) json_object_object_add(o, "user", json_object_new_string(s->user));
        (void) json_object_object_add(o, "env", env_to_json(s->env));
        json_object *secret_names = json_object_new_array();
        STRV_FOREACH(n, s->secret_names)
                (void) json_object_array_add(secret_names, json_object_new_string(*n));
        (void) json_object_object_add(o, "secret_env", secret_names);
        /* A copy, never a shared reference: json-c's reference counts are not
         * atomic and the response is freed on another thread, outside the lock. */
        json_object *labels = NULL;
        if (json_object_deep_copy(s->labels, &labels, NULL) < 0)
                labels = json_object_new_object();
        (void) json_object_object_add(o, "labels", labels);
        (void) json_object_object_add(o, "timeout", json_object_new_int64((int64_t) s->timeout_s));
        add_time(o, "created_at", sb->created_us);
        add_time(o, "started_at", sb->started_us ? sb->started_us : sb->created_us);
        add_time(o, "expires_at", sb->expires_us);
        json_object *net = net_policy_to_json(&s->network);
        if (net && sb->ip) {
                char ip[20];
                net_addr_format(sb->ip, ip, sizeof(ip));
                (void) json_object_object_add(net, "ip", json_object_new_string(ip));
        }
        (void) json_object_object_add(o, "network", net);
        if (sb->state == SANDBOX_PAUSED) {
                add_time(o, "paused_at", sb->paused_us);
                (void) json_object_object_add(o, "deadline_paused",
                                              json_object_new_boolean(sb->deadline_paused));
        }
        return o;
}

static void add_stats(Agent *a, const char *id, json_object *o)
{
        CgStats st = {0};
        if (cg_read_stats(a->cg, id, &st) < 0)
                st.oom_kills = 0;
        (void) json_object_object_add(o, "oom_kills",
                                      json_object_new_int64((int64_t) st.oom_kills));
}

int sandbox_get_json(Agent *a, const char *id, json_object **ret)
{
        (void) pthread_mutex_lock(&a->lock);
        Sandbox *sb = find_locked(a, id);
        json_object *o = sb && sb->state != SANDBOX_CREATING ? sandbox_to_json_locked(sb) : NULL;
        (void) pthread_mutex_unlock(&a->lock);
        if (!o)
                return -ENOENT;
        add_stats(a, id, o);
        *ret = o;
        return 0;
}

static bool labels_match(json_object *labels, char **selectors)
{
        STRV_FOREACH(sel, selectors) {
                const char *eq = strchr(*sel, '=');
                if (!eq)
                        return false;
                cleanup_free char *k = strndup(*sel, (size_t) (eq - *sel));
                json_object *v = NULL;
                if (!k || !json_object_object_get_ex(labels, k, &v) ||
                    !streq(json_object_get_string(v), eq + 1))
                        return false;
        }
        return true;
}

int sandbox_list_json(Agent *a, char **selectors, json_object **ret)
{
        json_object *arr = json_object_new_array();
        if (!arr)
                return -ENOMEM;
        (void) pthread_mutex_lock(&a->lock);
        for (Sandbox *sb = a->sandboxes; sb; sb = sb->next)
                if (sb->state != SANDBOX_CREATING && labels_match(sb->spec.labels, selectors))
                        (void) json_object_array_add(arr, sandbox_to_json_locked(sb));
        (void) pthread_mutex_unlock(&a->lock);
        for (size_t i = 0; i < json_object_array_length(arr); i++) {
                json_object *o = json_object_array_get_idx(arr, i), *id = NULL;
                if (json_object_object_get_ex(o, "id", &id))
                        add_stats(a, json_object_get_string(id), o);
        }
        *ret = arr;
        return 0;
}

static char **strv_copy(char **v)
{
        size_t n = 0;
        STRV_FOREACH(e, v)
                n++;
        char **c = calloc(n + 1, sizeof(char *));
        for (size_t i = 0; c && i < n; i++)
                if (!(c[i] = strdup(v[i]))) {
                        strv_free(c);
                        return NULL;
                }
        return c;
}

int sandbox_exec_info(Agent *a, const char *id, SandboxExecInfo *ret)
{
        int r = 0;
        SandboxExecInfo info = {0};
        (void) pthread_mutex_lock(&a->lock);
        Sandbox *sb = find_locked(a, id);
        if (!sb || sb->state == SANDBOX_CREATING) {
                r = -ENOENT;
        } else if (sb->state != SANDBOX_RUNNING) {
                r = -EBUSY;
        } else {
                size_t n = 0;
                STRV_FOREACH(e, sb->spec.env)
                        n++;
                info.env = calloc(n + 1, sizeof(char *));
                info.socket_path = strdup(sb->socket_path);
                info.init_pid = sb->init_pid;
                info.user = strdup(sb->spec.user);
                info.id = strdup(sb->spec.id);
                info.secret_names = strv_copy(sb->spec.secret_names);
                for (size_t i = 0; info.env && i < n; i++)
                        if (!(info.env[i] = strdup(sb->spec.env[i])))
                                r = -ENOMEM;
                if (!info.env || !info.socket_path || !info.user || !info.id || !info.secret_names)
                        r = -ENOMEM;
        }
        (void) pthread_mutex_unlock(&a->lock);
        if (r < 0) {
                sandbox_exec_info_done(&info);
                return r;
        }
        *ret = info;
        return 0;
}

void sandbox_exec_info_done(SandboxExecInfo *i)
{
        free(i->socket_path);
        strv_free(i->env);
        free(i->user);
        free(i->id);
        strv_free(i->secret_names);
        *i = (SandboxExecInfo){0};
}

int sandbox_fs_info(Agent *a, const char *id, SandboxFsInfo *ret)
{
        int r = 0;
        SandboxFsInfo info = {0};
        (void) pthread_mutex_lock(&a->lock);
        Sandbox *sb = find_locked(a, id);
        if (!sb || sb->state == SANDBOX_CREATING)
                r = -ENOENT;
        else if (sb->state != SANDBOX_RUNNING)
                r = -EBUSY;
        else if (asprintf(&info.rootfs, "%s/rootfs", sb->dir) < 0)
                info.rootfs = NULL, r = -ENOMEM;
        else if (!(info.user = strdup(sb->spec.user)))
                r = -ENOMEM;
        else
                info.disk = sb->spec.disk;
        (void) pthread_mutex_unlock(&a->lock);
        if (r < 0) {
                if (r == -ENOMEM)
                        sandbox_fs_info_done(&info);
                return r;
        }
        *ret = info;
        return 0;
}

void sandbox_fs_info_done(SandboxFsInfo *i)
{
        free(i->rootfs);
        free(i->user);
        *i = (SandboxFsInfo){0};
}

/* --- setup and teardown -------------------------------------------------- */

/* Releases everything a sandbox may hold, whatever stage it reached. Each step
 * tolerates "already gone", so it is also the cleanup for half-made sandboxes
 * and for remains found after a restart. */
static int teardown(Agent *a, const char *id, const char *dir)
{
        Runtime rt = agent_runtime(a);
        int ret = 0;
        int r = runtime_delete(&rt, id);
        if (r < 0) {
                log_sbx(LOG_LEVEL_WARNING, id, r, "runtime delete failed; killing the cgroup");
                ret = r;
        }
        /* runc kills the container's processes; this catches anything that
         * escaped its view (e.g. after a runtime crash). */
        (void) cg_kill_all(a->cg, id, SIGKILL);
        r = net_sandbox_teardown(a->net, id, dir);
        if (r < 0)
                ret = r;
        if (dir) {
                r = rootfs_umount(dir);
                if (r < 0) {
                        log_sbx(LOG_LEVEL_ERROR, id, r, "cannot unmount the sandbox's filesystems");
                        ret = r;
                }
        }
        r = cg_destroy(a->cg, id);
        if (r < 0) {
                log_sbx(LOG_LEVEL_ERROR, id, r, "cannot remove the sandbox's cgroup");
                ret = r;
        }
        if (dir && ret == 0) {
                r = rm_rf(dir);
                if (r < 0) {
                        log_sbx(LOG_LEVEL_ERROR, id, r, "cannot remove %s", dir);
                        ret = r;
                }
        }
        return ret;
}

static int make_dirs(const char *dir)
{
        /* ctl and code are made by rootfs_mount(), as mount points. */
        if (mkdir(dir, 0700) < 0)
                return -errno;
        return 0;
}

/* init's socket, bound in the control dir (which the sandbox sees read-only)
 * and handed to init, which calls listen(): so the sandbox cannot put anything
 * else there, and the socket's peer credentials name init. */
static int bind_init_socket(const char *ctl_dir)
{
        cleanup_close int dfd = open(ctl_dir, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (dfd < 0)
                return negative_errno();
        /* Through the dir's fd: the host path may be longer than sun_path. */
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        (void) snprintf(sa.sun_path, sizeof(sa.sun_path), "/proc/self/fd/%d/" IP_SOCKET_NAME, dfd);
        cleanup_close int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return negative_errno();
        if (bind(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0 ||
            fchmodat(dfd, IP_SOCKET_NAME, 0600, 0) < 0)
                return negative_errno();
        return TAKE_FD(fd);
}

/* Waits for init's ready byte on fd, or for it to close (init died). */
static int wait_ready(int fd)
{
        struct pollfd p = {.fd = fd, .events = POLLIN};
        for (;;) {
                int n = poll(&p, 1, READY_TIMEOUT_MS);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                if (n == 0)
                        return -ETIMEDOUT;
                char c;
                ssize_t k = read(fd, &c, 1);
                if (k == 1)
                        return 0;
                if (k < 0 && errno == EINTR)
                        continue;
                return -ECHILD; /* closed without a byte: init died */
        }
}

#define WAKE_SERIAL 0 /* the eventfd's epoll key; sandbox serials start at 1 */

/* Call with a->lock held. */
static int watch_init(Agent *a, Sandbox *sb)
{
        int fd = (int) pidfd_open(sb->init_pid, 0);
        if (fd < 0)
                return -errno;
        sb->serial = ++a->next_serial;
        struct epoll_event ev = {.events = EPOLLIN, .data.u64 = sb->serial};
        if (epoll_ctl(a->epoll_fd, EPOLL_CTL_ADD, fd, &ev) < 0) {
                int r = -errno;
                (void) close(fd);
                return r;
        }
        sb->pidfd = fd;
        return 0;
}

static bool delete_requested(Agent *a, Sandbox *sb)
{
        (void) pthread_mutex_lock(&a->lock);
        bool r = sb->delete_requested;
        (void) pthread_mutex_unlock(&a->lock);
        return r;
}

int sandbox_create(Agent *a, SandboxSpec *spec, json_object **ret_obj, char *err, size_t errlen)
{
        Sandbox *sb = calloc(1, sizeof(*sb));
        if (!sb) {
                sandbox_spec_done(spec);
                return -ENOMEM;
        }
        sb->spec = *spec;
        *spec = (SandboxSpec){0};
        sb->pidfd = -1;
        sb->state = SANDBOX_CREATING;

        Template *tpl = NULL;
        int r = template_load(a->cfg.templates_dir, sb->spec.template_name, &tpl);
        if (r < 0) {
                (void) snprintf(err, errlen, "template %s %s", sb->spec.template_name,
                                r == -ENOENT ? "not found" : "is not usable");
                sandbox_free(sb);
                return r == -EINVAL ? -ENOENT : r;
        }

        if ((r = net_check_policy(a->net, &sb->spec.network, err, errlen)) < 0) {
                template_free(tpl);
                sandbox_free(sb);
                return r;
        }

        /* Reserve the id in the table, so two creates cannot race for it. */
        (void) pthread_mutex_lock(&a->lock);
        if (!sb->spec.id) {
                char id[ID_LEN + 1];
                do {
                        r = random_id(id, ID_LEN);
                } while (r == 0 && (find_locked(a, id) || id[0] < 'a'));
                if (r == 0 && !(sb->spec.id = strdup(id)))
                        r = -ENOMEM;
        } else if (find_locked(a, sb->spec.id)) {
                (void) snprintf(err, errlen, "sandbox %s already exists", sb->spec.id);
                r = -EEXIST;
        }
        if (r == 0 && a->stopping) {
                (void) snprintf(err, errlen, "the agent is shutting down");
                r = -ESHUTDOWN;
        }
        if (r == 0) {
                sb->next = a->sandboxes;
                a->sandboxes = sb;
        }
        (void) pthread_mutex_unlock(&a->lock);
        if (r < 0) {
                template_free(tpl);
                sandbox_free(sb);
                return r;
        }

        const char *id = sb->spec.id;
        const char *step = "prepare";
        uint64_t t0 = now_monotonic_us(), t_cg = 0, t_mount = 0, t_net = 0, t_files = 0, t_run = 0;
        cleanup_free char *cg_path = NULL, *ctl_dir = NULL, *rootfs = NULL, *code_dir = NULL;
        NetSandboxInfo net = {0};
        cleanup_close int ready_r = -1, ready_w = -1, log_fd = -1, listen_fd = -1;
        if (asprintf(&sb->dir, "%s/%s", a->sandboxes_dir, id) < 0 ||
            asprintf(&sb->socket_path, "%s/ctl/%s", sb->dir, IP_SOCKET_NAME) < 0 ||
            asprintf(&ctl_dir, "%s/ctl", sb->dir) < 0 ||
            asprintf(&code_dir, "%s/" CODE_DIR_NAME, sb->dir) < 0 ||
            asprintf(&rootfs, "%s/rootfs", sb->dir) < 0) {
                sb->dir = NULL;
                r = -ENOMEM;
                goto fail;
        }
        uint64_t now = now_realtime_us();
        sb->created_us = now;
        sb->expires_us = now + sb->spec.timeout_s * 1000000u;

        step = "create the sandbox directory";
        if ((r = make_dirs(sb->dir)) < 0)
                goto fail;
        step = "create the cgroup";
        CgLimits limits = {.cpu_cores = sb->spec.cpu,
                           .memory_bytes = sb->spec.memory,
                           .pids_max = sb->spec.pids};
        /* The CPU quota comes once sandpit-init is ready: runc's own start-up
         * (runc init is a Go program) runs in this cgroup, and a small quota
         * (100m) throttled it for 400 ms more. Nothing the user runs exists
         * before the create returns; memory and pids hold from the start. */
        CgLimits starting = limits;
        starting.cpu_cores = 0;
        if ((r = cg_create(a->cg, id, &starting)) < 0 ||
            (r = cg_runtime_path(a->cg, id, &cg_path)) < 0)
                goto fail;
        t_cg = now_monotonic_us();
        step = "mount the root filesystem";
        if ((r = rootfs_mount(sb->dir, tpl->rootfs, sb->spec.disk)) < 0)
                goto fail;
        t_mount = now_monotonic_us();
        step = "set up the network";
        if ((r = net_sandbox_setup(a->net, id, sb->dir, &sb->spec.network, &net)) < 0)
                goto fail;
        sb->ip = net.ip;
        t_net = now_monotonic_us();
        step = "write the OCI bundle";
        BundleSpec bs = {.id = id,
                         .rootfs = rootfs,
                         .control_dir = ctl_dir,
                         .init_binary = a->cfg.init_path,
                         .cgroups_path = cg_path,
                         .ro_binds = tpl->binds,
                         .netns_path = net.netns_path,
                         .resolv_conf = net.resolv_path,
                         .kernels_dir = a->cfg.kernels_dir,
                         .code_dir = code_dir};
        if ((r = bundle_write(sb->dir, &bs)) < 0)
                goto fail;
        step = "write the state file";
        if ((r = state_save(sb)) < 0)
                goto fail;

        t_files = now_monotonic_us();
        if (delete_requested(a, sb))
                goto cancelled;
        step = "start the container";
        int p[2];
        if (pipe2(p, O_CLOEXEC) < 0) {
                r = -errno;
                goto fail;
        }
        ready_r = p[0];
        ready_w = p[1];
        char log_path[4096];
        (void) snprintf(log_path, sizeof(log_path), "%s/init.log", sb->dir);
        log_fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        if (log_fd < 0) {
                r = -errno;
                goto fail;
        }
        listen_fd = bind_init_socket(ctl_dir);
        if (listen_fd < 0) {
                r = listen_fd;
                goto fail;
        }
        Runtime rt = agent_runtime(a);
        char rterr[512] = "";
        r = runtime_run(&rt, id, sb->dir, ready_w, listen_fd, log_fd, &sb->init_pid, rterr,
                        sizeof(rterr));
        closep(&ready_w);
        closep(&listen_fd);
        if (r < 0) {
                (void) snprintf(err, errlen, "cannot start sandbox: %s", rterr);
                log_sbx(LOG_LEVEL_ERROR, id, r, "runtime run failed: %s", rterr);
                goto fail_reported;
        }
        t_run = now_monotonic_us();
        step = "wait for sandpit-init";
        if ((r = wait_ready(ready_r)) < 0)
                goto fail;
        step = "apply the CPU limit";
        if ((r = cg_update(a->cg, id, &limits)) < 0)
                goto fail;
        if (sb->spec.secret_env && sb->spec.secret_env[0]) {
                step = "hand the secret env to sandpit-init";
                char serr[256] = "";
                if ((r = exec_set_secrets(sb->socket_path, sb->init_pid, sb->spec.secret_env, serr,
                                          sizeof(serr))) < 0)
                        goto fail;
        }
        /* From here on only init holds the values. */
        secret_strv_free(sb->spec.secret_env);
        sb->spec.secret_env = NULL;
        step = "watch sandpit-init";
        (void) pthread_mutex_lock(&a->lock);
        r = watch_init(a, sb);
        (void) pthread_mutex_unlock(&a->lock);
        if (r < 0)
                goto fail;
        if ((r = state_save(sb)) < 0)
                goto fail;

        (void) pthread_mutex_lock(&a->lock);
        if (sb->delete_requested) {
                (void) pthread_mutex_unlock(&a->lock);
                goto cancelled;
        }
        sb->state = SANDBOX_RUNNING;
        sb->started_us = now_realtime_us();
        json_object *o = sandbox_to_json_locked(sb);
        (void) pthread_cond_broadcast(&a->table_changed);
        (void) pthread_mutex_unlock(&a->lock);
        wake_monitor(a);
        template_free(tpl);
        net_sandbox_info_done(&net);
        if (o)
                (void) json_object_object_add(o, "oom_kills", json_object_new_int(0));
        uint64_t t_end = now_monotonic_us();
        log_sbx(LOG_LEVEL_INFO, id, 0, "created from template %s in %.1f ms",
                sb->spec.template_name, (double) (t_end - t0) / 1000.0);
        log_sbx(LOG_LEVEL_DEBUG, id, 0,
                "create steps (ms): dirs+cgroup %.1f, mounts %.1f, network %.1f, bundle+state "
                "%.1f, "
                "runtime run %.1f, init ready %.1f",
                (double) (t_cg - t0) / 1000.0, (double) (t_mount - t_cg) / 1000.0,
                (double) (t_net - t_mount) / 1000.0, (double) (t_files - t_net) / 1000.0,
                (double) (t_run - t_files) / 1000.0, (double) (t_end - t_run) / 1000.0);
        *ret_obj = o;
        return 0;

cancelled:
        /* A DELETE came while we were creating: it wins, nothing stays. */
        r = -ECANCELED;
        (void) snprintf(err, errlen, "sandbox %s was deleted while it was being created", id);
        log_sbx(LOG_LEVEL_INFO, id, 0, "deleted while being created; tearing down");
        goto fail_reported;
fail:
        (void) snprintf(err, errlen, "cannot %s: %s", step, strerror(-r));
        log_sbx(LOG_LEVEL_ERROR, id, r, "create failed: cannot %s", step);
fail_reported:
        template_free(tpl);
        net_sandbox_info_done(&net);
        (void) pthread_mutex_lock(&a->lock); /* the monitor may touch pidfd too */
        if (sb->pidfd >= 0) {
                (void) epoll_ctl(a->epoll_fd, EPOLL_CTL_DEL, sb->pidfd, NULL);
                closep(&sb->pidfd);
        }
        (void) pthread_mutex_unlock(&a->lock);
        (void) teardown(a, id, sb->dir);
        (void) pthread_mutex_lock(&a->lock);
        unlink_locked(a, sb);
        (void) pthread_mutex_unlock(&a->lock);
        sandbox_free(sb);
        return r == -ENOENT || r == -EINVAL || r == -EEXIST ? -EIO : r;
}

/* Waits (a->lock held) while the sandbox id is being created or deleted by
 * another request; a create is told to give up. The sandbox afterwards, or
 * NULL when it is gone; *ret_r: 1 when it waited, -ETIMEDOUT after
 * DELETE_WAIT_S, else 0. */
#define DELETE_WAIT_S 600
static Sandbox *wait_settled_locked(Agent *a, const char *id, int *ret_r)
{
        struct timespec end;
        deadline_after_ms(&end, DELETE_WAIT_S * 1000L);
        *ret_r = 0;
        Sandbox *sb;
        while ((sb = find_locked(a, id)) &&
               (sb->state == SANDBOX_CREATING || sb->state == SANDBOX_DELETING)) {
                if (sb->state == SANDBOX_CREATING && !sb->delete_requested) {
                        sb->delete_requested = true;
                        log_sbx(LOG_LEVEL_INFO, id, 0,
                                "delete requested while creating; the create gives up");
                }
                *ret_r = 1;
                if (pthread_cond_timedwait(&a->table_changed, &a->lock, &end) == ETIMEDOUT) {
                        *ret_r = -ETIMEDOUT;
                        return sb;
                }
        }
        return sb;
}

/* wait: as sandbox_delete(); without, a sandbox being created or deleted is
 * -ENOENT at once (the monitor must not block on another request). */
static int delete_sandbox(Agent *a, const char *id, bool wait)
{
        (void) pthread_mutex_lock(&a->lock);
        int wr = 0;
        Sandbox *sb = wait ? wait_settled_locked(a, id, &wr) : find_locked(a, id);
        if (wr < 0 || !sb) {
                /* Gone after a create or delete we waited for: the id is
                 * absent now, as the caller asked. */
                (void) pthread_mutex_unlock(&a->lock);
                return wr < 0 ? wr : wr > 0 ? 0 : -ENOENT;
        }
        if (sb->state == SANDBOX_CREATING || sb->state == SANDBOX_DELETING) {
                (void) pthread_mutex_unlock(&a->lock); /* only without wait */
                return -ENOENT;
        }
        bool frozen = sb->state == SANDBOX_PAUSED || sb->paused_us != 0;
        sb->state = SANDBOX_DELETING;
        code_forget_sandbox(id); /* its kernels die with it; drop our ends */
        if (sb->pidfd >= 0) {
                (void) epoll_ctl(a->epoll_fd, EPOLL_CTL_DEL, sb->pidfd, NULL);
                closep(&sb->pidfd);
        }
        (void) pthread_mutex_unlock(&a->lock);

        if (frozen) {
                /* Kill while frozen, then thaw: the processes die at once and never
                 * run again; the runtime then deletes a stopped container. */
                (void) cg_kill_all(a->cg, id, SIGKILL);
                (void) cg_freeze(a->cg, id, false);
        }
        int r = teardown(a, id, sb->dir);
        (void) pthread_mutex_lock(&a->lock);
        if (r < 0) {
                /* Keep it listed, so a retry can finish the job. */
                sb->state = SANDBOX_EXITED;
                (void) pthread_cond_broadcast(&a->table_changed);
                (void) pthread_mutex_unlock(&a->lock);
                return r;
        }
        unlink_locked(a, sb);
        (void) pthread_mutex_unlock(&a->lock);
        log_sbx(LOG_LEVEL_INFO, id, 0, "deleted");
        sandbox_free(sb);
        return 0;
}

int sandbox_delete(Agent *a, const char *id)
{
        return delete_sandbox(a, id, true);
}

int sandbox_set_timeout(Agent *a, const char *id, uint64_t timeout_s, json_object **ret_obj)
{
        (void) pthread_mutex_lock(&a->lock);
        Sandbox *sb = find_locked(a, id);
        if (!sb || sb->state == SANDBOX_CREATING || sb->state == SANDBOX_DELETING) {
                (void) pthread_mutex_unlock(&a->lock);
                return -ENOENT;
        }
        sb->spec.timeout_s = timeout_s;
        sb->expires_us = now_realtime_us() + timeout_s * 1000000u;
        if (sb->state == SANDBOX_PAUSED && sb->deadline_paused)
                sb->paused_us = now_realtime_us(); /* timeout_s left when resumed */
        int r = state_save(sb);
        json_object *o = sandbox_to_json_locked(sb);
        (void) pthread_mutex_unlock(&a->lock);
        wake_monitor(a);
        if (r < 0)
                log_sbx(LOG_LEVEL_WARNING, id, r, "cannot persist the new deadline");
        if (!o)
                return -ENOMEM;
        add_stats(a, id, o);
        *ret_obj = o;
        return 0;
}

int sandbox_netns_path(Agent *a, const char *id, char **ret)
{
        int r = 0;
        char *path = NULL;
        (void) pthread_mutex_lock(&a->lock);
        Sandbox *sb = find_locked(a, id);
        if (!sb || sb->state == SANDBOX_CREATING || sb->state == SANDBOX_DELETING)
                r = -ENOENT;
        else if (sb->state != SANDBOX_RUNNING)
                r = -EBUSY;
        else if (net_enabled(a->net))
                r = (path = net_netns_path(sb->dir)) ? 0 : -ENOMEM;
        else /* runc made it: init's, while init runs */
                r = asprintf(&path, "/proc/%d/ns/net", (int) sb->init_pid) < 0 ? -ENOMEM : 0;
        (void) pthread_mutex_unlock(&a->lock);
        if (r == 0)
                *ret = path;
        return r;
}

/* Serialises policy updates, so the rules in force and the persisted policy
 * always come from the same request. */
static pthread_mutex_t network_update_lock = PTHREAD_MUTEX_INITIALIZER;

int sandbox_set_network(Agent *a, const char *id, NetPolicy *policy, json_object **ret_obj,
                        char *err, size_t errlen)
{
        int r = net_check_policy(a->net, policy, err, errlen);
        if (r < 0)
                return r;
        (void) pthread_mutex_lock(&network_update_lock);
        (void) pthread_mutex_lock(&a->lock);
        Sandbox *sb = find_locked(a, id);
        r = !sb || sb->state == SANDBOX_CREATING || sb->state == SANDBOX_DELETING ? -ENOENT
            : sb->state != SANDBOX_RUNNING                                        ? -EBUSY
                                                                                  : 0;
        (void) pthread_mutex_unlock(&a->lock);
        if (r == 0 && (r = net_sandbox_set_policy(a->net, id, policy)) < 0)
                (void) snprintf(err, errlen, "cannot apply the network policy: %s", strerror(-r));
        json_object *o = NULL;
        if (r == 0) {
                (void) pthread_mutex_lock(&a->lock);
                if ((sb = find_locked(a, id))) {
                        net_policy_done(&sb->spec.network);
                        sb->spec.network = *policy;
                        *policy = (NetPolicy){0};
                        if (state_save(sb) < 0)
                                log_sbx(LOG_LEVEL_WARNING, id, 0,
                                        "cannot persist the new network policy");
                        o = sandbox_to_json_locked(sb);
                } else {
                        r = -ENOENT;
                }
                (void) pthread_mutex_unlock(&a->lock);
        }
        (void) pthread_mutex_unlock(&network_update_lock);
        if (r < 0)
                return r;
        if (!o)
                return -ENOMEM;
        add_stats(a, id, o);
        *ret_obj = o;
        return 0;
}

/* --- pause and resume ----------------------------------------------------- */

/* Looks a sandbox up again after the lock was dropped: the same one (serial),
 * not a newer one of the same id. Call with a->lock held. */
static Sandbox *refind_locked(Agent *a, const char *id, uint64_t serial)
{
        Sandbox *sb = find_locked(a, id);
        return sb && sb->serial == serial ? sb : NULL;
}

/* Takes the sandbox for a pause (want = RUNNING) or resume (want = PAUSED). */
static int begin_transition_locked(Agent *a, const char *id, SandboxState want,
                                   uint64_t *ret_serial, char *err, size_t errlen)
{
        Sandbox *sb = find_locked(a, id);
        if (!sb || sb->state == SANDBOX_CREATING || sb->state == SANDBOX_DELETING)
                return -ENOENT;
        if (sb->pause_busy) {
                (void) snprintf(err, errlen, "sandbox %s is being paused or resumed", id);
                return -EBUSY;
        }
        if (sb->state != want) {
                (void) snprintf(err, errlen, "sandbox %s is %s%s", id, state_name(sb->state),
                                want == SANDBOX_PAUSED && sb->state == SANDBOX_RUNNING
                                        ? ", not paused"
                                        : "");
                return -EBUSY;
        }
        sb->pause_busy = true;
        *ret_serial = sb->serial;
        return 0;
}

static int finish_transition(Agent *a, const char *id, Sandbox *sb, json_object **ret_obj)
{
        int r = state_save(sb);
        json_object *o = sandbox_to_json_locked(sb);
        (void) pthread_mutex_unlock(&a->lock);
        wake_monitor(a);
        if (r < 0)
                log_sbx(LOG_LEVEL_WARNING, id, r, "cannot persist the pause state");
        if (!o)
                return -ENOMEM;
        add_stats(a, id, o);
        *ret_obj = o;
        return 0;
}

int sandbox_pause(Agent *a, const char *id, bool stop_deadline, json_object **ret_obj, char *err,
                  size_t errlen)
{
        uint64_t serial = 0;
        (void) pthread_mutex_lock(&a->lock);
        int r = begin_transition_locked(a, id, SANDBOX_RUNNING, &serial, err, errlen);
        if (r == 0) {
                /* Paused from now on for everyone else: new execs get 409. */
                Sandbox *sb = find_locked(a, id);
                sb->state = SANDBOX_PAUSED;
                sb->paused_us = now_realtime_us();
                sb->deadline_paused = stop_deadline;
        }
        (void) pthread_mutex_unlock(&a->lock);
        if (r < 0)
                return r;
        r = cg_freeze(a->cg, id, true);
        (void) pthread_mutex_lock(&a->lock);
        Sandbox *sb = refind_locked(a, id, serial);
        if (sb)
                sb->pause_busy = false;
        if (!sb || sb->state == SANDBOX_DELETING) {
                (void) pthread_mutex_unlock(&a->lock);
                return -ENOENT;
        }
        if (r < 0) {
                if (sb->state == SANDBOX_PAUSED)
                        sb->state = SANDBOX_RUNNING;
                sb->paused_us = 0;
                sb->deadline_paused = false;
                (void) pthread_mutex_unlock(&a->lock);
                (void) cg_freeze(a->cg, id, false);
                (void) snprintf(err, errlen, "cannot freeze sandbox %s: %s", id, strerror(-r));
                log_sbx(LOG_LEVEL_ERROR, id, r, "cannot freeze");
                return r == -ENOENT ? -EIO : r;
        }
        log_sbx(LOG_LEVEL_INFO, id, 0, "paused (deadline %s)",
                stop_deadline ? "stopped" : "running");
        return finish_transition(a, id, sb, ret_obj);
}

bool sandbox_is_paused(Agent *a, const char *id)
{
        (void) pthread_mutex_lock(&a->lock);
        Sandbox *sb = find_locked(a, id);
        bool paused = sb && sb->state == SANDBOX_PAUSED;
        (void) pthread_mutex_unlock(&a->lock);
        return paused;
}

int sandbox_resume(Agent *a, const char *id, uint64_t timeout_s, json_object **ret_obj, char *err,
                   size_t errlen)
{
        uint64_t serial = 0;
        (void) pthread_mutex_lock(&a->lock);
        int r = begin_transition_locked(a, id, SANDBOX_PAUSED, &serial, err, errlen);
        (void) pthread_mutex_unlock(&a->lock);
        if (r < 0)
                return r;
        r = cg_freeze(a->cg, id, false);
        (void) pthread_mutex_lock(&a->lock);
        Sandbox *sb = refind_locked(a, id, serial);
        if (sb)
                sb->pause_busy = false;
        if (!sb || sb->state == SANDBOX_DELETING) {
                (void) pthread_mutex_unlock(&a->lock);
                return -ENOENT;
        }
        if (r < 0) {
                (void) pthread_mutex_unlock(&a->lock);
                (void) snprintf(err, errlen, "cannot thaw sandbox %s: %s", id, strerror(-r));
                log_sbx(LOG_LEVEL_ERROR, id, r, "cannot thaw");
                return r == -ENOENT ? -EIO : r;
        }
        uint64_t now = now_realtime_us();
        if (sb->state == SANDBOX_PAUSED)
                sb->state = SANDBOX_RUNNING;
        if (sb->deadline_paused && sb->paused_us && now > sb->paused_us)
                sb->expires_us += now - sb->paused_us;
        if (timeout_s > 0) {
                sb->spec.timeout_s = timeout_s;
                sb->expires_us = now + timeout_s * 1000000u;
        }
        sb->paused_us = 0;
        sb->deadline_paused = false;
        log_sbx(LOG_LEVEL_INFO, id, 0, "resumed");
        return finish_transition(a, id, sb, ret_obj);
}

/* --- monitor: deadlines and dead inits ------------------------------------ */

static void *monitor_main(void *arg)
{
        Agent *a = arg;
        for (;;) {
                (void) pthread_mutex_lock(&a->lock);
                if (a->stopping) {
                        (void) pthread_mutex_unlock(&a->lock);
                        return NULL;
                }
                uint64_t now = now_realtime_us(), next = UINT64_MAX;
                char expired[ID_LEN * 4] = "";
                for (Sandbox *sb = a->sandboxes; sb; sb = sb->next) {
                        bool ticking = sb->state == SANDBOX_RUNNING ||
                                       sb->state == SANDBOX_EXITED ||
                                       (sb->state == SANDBOX_PAUSED && !sb->deadline_paused);
                        if (!ticking)
                                continue;
                        if (sb->expires_us <= now && !expired[0])
                                (void) snprintf(expired, sizeof(expired), "%s", sb->spec.id);
                        else if (sb->expires_us < next)
                                next = sb->expires_us;
                }
                (void) pthread_mutex_unlock(&a->lock);

                if (expired[0]) {
                        log_sbx(LOG_LEVEL_INFO, expired, 0, "timeout reached; deleting");
                        int r = delete_sandbox(a, expired, false);
                        if (r < 0 && r != -ENOENT) {
                                log_sbx(LOG_LEVEL_ERROR, expired, r,
                                        "deleting expired sandbox; retrying in 10 s");
                                (void) pthread_mutex_lock(&a->lock);
                                Sandbox *sb = find_locked(a, expired);
                                if (sb)
                                        sb->expires_us = now_realtime_us() + 10000000u;
                                (void) pthread_mutex_unlock(&a->lock);
                        }
                        continue;
                }

                int timeout_ms = -1;
                if (next != UINT64_MAX)
                        timeout_ms = next <= now ? 0 : (int) ((next - now + 999) / 1000);
                if (timeout_ms > 60000 || timeout_ms < 0)
                        timeout_ms = 60000;
                struct epoll_event evs[16];
                int n = epoll_wait(a->epoll_fd, evs, ARRAY_SIZE(evs), timeout_ms);
                for (int i = 0; i < n; i++) {
                        if (evs[i].data.u64 == WAKE_SERIAL) {
                                uint64_t v;
                                (void) !read(a->wake_fd, &v, sizeof(v));
                                continue;
                        }
                        /* Look the sandbox up by serial: a delete may have freed it
                         * between epoll_wait() and taking the lock. */
                        (void) pthread_mutex_lock(&a->lock);
                        Sandbox *sb = a->sandboxes;
                        while (sb && sb->serial != evs[i].data.u64)
                                sb = sb->next;
                        if (sb && sb->pidfd >= 0) {
                                (void) epoll_ctl(a->epoll_fd, EPOLL_CTL_DEL, sb->pidfd, NULL);
                                closep(&sb->pidfd);
                                if (sb->state == SANDBOX_RUNNING || sb->state == SANDBOX_PAUSED) {
                                        sb->state = SANDBOX_EXITED;
                                        log_sbx(LOG_LEVEL_WARNING, sb->spec.id, 0,
                                                "sandpit-init exited; the sandbox stopped");
                                }
                        }
                        (void) pthread_mutex_unlock(&a->lock);
                }
        }
}

int agent_start_monitor(Agent *a)
{
        int r = -pthread_create(&a->monitor, NULL, monitor_main, a);
        if (r == 0)
                a->monitor_started = true;
        if (r == 0)
                r = metrics_start(a);
        return r;
}

/* --- startup, recovery, shutdown ----------------------------------------- */

int agent_init(Agent *a)
{
        (void) pthread_mutex_init(&a->lock, NULL);
        cond_init_monotonic(&a->table_changed);
        a->epoll_fd = -1;
        a->wake_fd = -1;
        a->started_us = now_realtime_us();
        if (metrics_new(&a->metrics) < 0)
                return -ENOMEM;
        if (asprintf(&a->runc_root, "%s/runc", a->cfg.state_dir) < 0 ||
            asprintf(&a->sandboxes_dir, "%s/sandboxes", a->cfg.state_dir) < 0)
                return -ENOMEM;
        int r = mkdir_p(a->sandboxes_dir, 0700);
        if (r < 0)
                return log_error_errno(r, "cannot create %s", a->sandboxes_dir);
        if ((r = mkdir_p(a->runc_root, 0700)) < 0)
                return log_error_errno(r, "cannot create %s", a->runc_root);
        if (access(a->cfg.init_path, X_OK) < 0)
                return log_error_errno(-errno, "sandpit-init not executable at %s",
                                       a->cfg.init_path);
        if ((r = net_manager_new(&a->cfg.net, a->cfg.state_dir, &a->net)) < 0)
                return log_error_errno(r, "cannot set up sandbox networking");
        r = cg_manager_new(a->cfg.cgroup_version, a->cfg.cgroup_parent, &a->cg);
        if (r < 0)
                return log_error_errno(r, "cannot set up cgroups under %s", a->cfg.cgroup_parent);
        a->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
        a->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (a->epoll_fd < 0 || a->wake_fd < 0)
                return -errno;
        struct epoll_event ev = {.events = EPOLLIN, .data.u64 = WAKE_SERIAL};
        if (epoll_ctl(a->epoll_fd, EPOLL_CTL_ADD, a->wake_fd, &ev) < 0)
                return -errno;
        return 0;
}

void agent_done(Agent *a)
{
        (void) pthread_mutex_lock(&a->lock);
        a->stopping = true;
        (void) pthread_mutex_unlock(&a->lock);
        wake_monitor(a);
        if (a->monitor_started)
                (void) pthread_join(a->monitor, NULL);
        metrics_stop(a);
        /* Sandboxes keep running: a restarted agent re-adopts them. */
        while (a->sandboxes) {
                Sandbox *sb = a->sandboxes;
                a->sandboxes = sb->next;
                sandbox_free(sb);
        }
        cg_manager_free(a->cg);
        net_manager_free(a->net);
        if (a->epoll_fd >= 0)
                (void) close(a->epoll_fd);
        if (a->wake_fd >= 0)
                (void) close(a->wake_fd);
        free(a->runc_root);
        free(a->sandboxes_dir);
        metrics_free(a->metrics);
        (void) pthread_cond_destroy(&a->table_changed);
        (void) pthread_mutex_destroy(&a->lock);
}

static bool strv_contains(char **v, const char *s)
{
        STRV_FOREACH(p, v)
                if (streq(*p, s))
                        return true;
        return false;
}

/* Adopts one sandbox from its state dir, or returns < 0 (caller cleans up). */
static int adopt(Agent *a, const char *id, const char *dir)
{
        Sandbox *sb = NULL;
        int r = state_load(dir, &sb);
        if (r < 0)
                return r;
        Runtime rt = agent_runtime(a);
        cleanup_free char *status = NULL;
        pid_t pid = 0;
        r = runtime_state(&rt, id, &status, &pid);
        bool paused = r >= 0 && streq(status, "paused");
        if (r < 0 || (!streq(status, "running") && !paused) || pid != sb->init_pid ||
            !streq(sb->spec.id, id)) {
                sandbox_free(sb);
                return r < 0 ? r : -ESRCH;
        }
        if (!(sb->dir = strdup(dir)) ||
            asprintf(&sb->socket_path, "%s/ctl/%s", dir, IP_SOCKET_NAME) < 0) {
                sandbox_free(sb);
                return -ENOMEM;
        }
        sb->pidfd = -1;
        /* The kernel's freezer state decides; state.json keeps the deadline facts.
         * Frozen but not saved as paused (we died mid-pause): the clock stops now. */
        sb->state = paused ? SANDBOX_PAUSED : SANDBOX_RUNNING;
        if (paused && !sb->paused_us) {
                sb->paused_us = now_realtime_us();
                sb->deadline_paused = true;
        } else if (!paused && sb->paused_us) {
                sb->paused_us = 0; /* thawed but not saved (we died mid-resume) */
        }
        (void) net_sandbox_ip(a->net, id, &sb->ip);
        /* The same check as every exec's (the peer is the init pid runc and
         * state.json agree on): say so now if the socket is not init's. */
        int k = exec_check_init(sb->socket_path, sb->init_pid);
        if (k == -EIO)
                log_sbx(LOG_LEVEL_WARNING, id, k,
                        "its init socket is not served by its init: execs will be refused");
        (void) pthread_mutex_lock(&a->lock);
        r = watch_init(a, sb);
        if (r == 0) {
                sb->next = a->sandboxes;
                a->sandboxes = sb;
        }
        (void) pthread_mutex_unlock(&a->lock);
        if (r < 0)
                sandbox_free(sb);
        return r;
}

/* Rebuilds the network rules for the adopted sandboxes (single-threaded: no
 * request is served yet, so the table needs no lock). */
static int recover_network(Agent *a)
{
        size_t n = 0, i = 0;
        for (Sandbox *sb = a->sandboxes; sb; sb = sb->next)
                n++;
        cleanup_free NetAdopted *list = calloc(n + 1, sizeof(NetAdopted));
        if (!list)
                return -ENOMEM;
        for (Sandbox *sb = a->sandboxes; sb; sb = sb->next)
                list[i++] = (NetAdopted){.id = sb->spec.id, .policy = &sb->spec.network};
        int r = net_recover(a->net, list, n);
        return r < 0 ? log_error_errno(r, "cannot restore the sandboxes' network rules") : 0;
}

int sandbox_recover(Agent *a)
{
        cleanup_strv char **dirs = NULL, **containers = NULL, **cgroups = NULL;
        int r = state_list(a->sandboxes_dir, &dirs);
        if (r < 0)
                return log_error_errno(r, "cannot read %s", a->sandboxes_dir);
        unsigned adopted = 0, removed = 0;
        STRV_FOREACH(id, dirs) {
                cleanup_free char *dir = NULL;
                if (asprintf(&dir, "%s/%s", a->sandboxes_dir, *id) < 0)
                        return -ENOMEM;
                r = adopt(a, *id, dir);
                if (r == 0) {
                        adopted++;
                        continue;
                }
                log_sbx(LOG_LEVEL_INFO, *id, r, "cannot re-adopt; removing its remains");
                (void) teardown(a, *id, dir);
                removed++;
        }
        /* Containers and cgroups with no state dir are remains too. */
        Runtime rt = agent_runtime(a);
        if (runtime_list(&rt, &containers) == 0)
                STRV_FOREACH(id, containers)
                        if (!strv_contains(dirs, *id)) {
                                log_sbx(LOG_LEVEL_INFO, *id, 0, "removing orphaned container");
                                (void) teardown(a, *id, NULL);
                                removed++;
                        }
        if (cg_list(a->cg, &cgroups) == 0)
                STRV_FOREACH(id, cgroups)
                        if (!strv_contains(dirs, *id) && !strv_contains(containers, *id)) {
                                log_sbx(LOG_LEVEL_INFO, *id, 0, "removing orphaned cgroup");
                                (void) teardown(a, *id, NULL);
                                removed++;
                        }
        if ((r = recover_network(a)) < 0)
                return r;
        log_info("recovery: %u sandboxes re-adopted, %u removed", adopted, removed);
        wake_monitor(a);
        return 0;
}

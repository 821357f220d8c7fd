/* Sandbox lifecycle. A create is a list of setup steps (dirs, cgroup, rootfs,
 * bundle, state file, runtime run, wait for init), and every failure runs the
 * same teardown that delete runs, so a failed create leaves nothing behind. */
#include "sandbox.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/pidfd.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "bundle.h"
#include "code.h"
#include "exec.h"
#include "image.h"
#include "init-client.h"
#include "initproto.h"
#include "metrics.h"
#include "net.h"
#include "rootfs.h"
#include "runtime-exe.h"
#include "runtime.h"
#include "sandbox-internal.h"
#include "sandbox-teardown.h"
#include "sandpit/http-status.h"
#include "sandpit/json.h"
#include "sandpit/log.h"
#include "sandpit/macro.h"
#include "sandpit/util.h"
#include "secrets.h"
#include "share.h"
#include "state.h"
#include "template.h"
#include "userns.h"

#define READY_TIMEOUT_MS 10000
#define TEARDOWN_WORKERS 2 /* mostly waiting on runc and umount; more would contend */

static const char *default_runtime_name(const Agent *a);

Runtime sandbox_runtime(const Agent *a, const char *name)
{
        int i = runtime_name_index(name);
        Runtime rt;
        if (i < 0 || !a->runtime_bins[i]) {
                /* The default: gVisor when --runtime names runsc. */
                const char *def = default_runtime_name(a);
                rt = (Runtime){.binary = a->cfg.runtime,
                               .root = a->runc_root,
                               .gvisor = def && streq(def, runtime_names[RUNTIME_RUNSC])};
        } else {
                rt = (Runtime){.binary = a->runtime_bins[i],
                               .root = a->runtime_roots[i],
                               .gvisor = i == RUNTIME_RUNSC};
        }
        if (a->runc_exe && streq(rt.binary, runtime_exe_binary(a->runc_exe)))
                rt.exe = a->runc_exe;
        return rt;
}

/* The default runtime's name (runtime.h), or NULL when --runtime is a binary
 * of another name. */
static const char *default_runtime_name(const Agent *a)
{
        const char *slash = strrchr(a->cfg.runtime, '/');
        const char *base = slash ? slash + 1 : a->cfg.runtime;
        return runtime_name_index(base) >= 0 ? base : NULL;
}

int sandbox_spec_runtime(Agent *a, SandboxSpec *spec, char *err, size_t errlen)
{
        if (!spec->runtime)
                return 0;
        const char *def = default_runtime_name(a);
        if (def && streq(spec->runtime, def)) {
                free(spec->runtime);
                spec->runtime = NULL; /* the default's: one name for one runtime */
                return 0;
        }
        int i = runtime_name_index(spec->runtime);
        if (i < 0) {
                (void) snprintf(err, errlen, "runtime must be runc, crun or runsc");
                return -EINVAL;
        }
        if (__atomic_load_n(&a->runtime_probed[i], __ATOMIC_ACQUIRE))
                return 0;
        Runtime rt = sandbox_runtime(a, spec->runtime);
        int r = runtime_probe(&rt, spec->runtime, err, errlen);
        if (r < 0)
                return r;
        __atomic_store_n(&a->runtime_probed[i], true, __ATOMIC_RELEASE);
        return 0;
}

/* --- setup and teardown -------------------------------------------------- */

static bool is_runc(const char *binary)
{
        const char *slash = strrchr(binary, '/');
        return streq(slash ? slash + 1 : binary, "runc");
}

/* Releases everything a sandbox may hold, whatever stage it reached. Each step
 * tolerates "already gone", so it is also the cleanup for half-made sandboxes
 * and for remains found after a restart. */
int sandbox_teardown(Agent *a, const char *id, const char *dir, const char *runtime)
{
        Runtime rt = sandbox_runtime(a, runtime);
        int ret = 0;
        int r = -EOPNOTSUPP;
        /* runc: kill the cgroup and remove what `runc delete` would, without
         * runc's start-up (a third of a create's CPU); runc delete when
         * anything is unexpected. crun and runsc delete themselves. */
        if (!rt.gvisor && is_runc(rt.binary)) {
                (void) cg_kill_all(a->cg, id, SIGKILL);
                r = teardown_runc_state(rt.root, id);
                if (r < 0) /* no state.json: a create that stopped half-way */
                        log_sbx(r == -ENOENT ? LOG_LEVEL_DEBUG : LOG_LEVEL_INFO, id, r,
                                "runc state not removed by the agent; runc delete");
        }
        if (r < 0)
                r = runtime_delete(&rt, id);
        if (rt.gvisor) {
                cleanup_free char *sdir = NULL, *sock = NULL;
                if (asprintf(&sdir, "%s/%s", a->sandboxes_dir, id) >= 0 &&
                    rootfs_ctl_path(sdir, IP_SOCKET_NAME, &sock) == 0)
                        init_client_drop_channel(sock);
        }
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
        /* ctl and code are made by rootfs_mount(), in the disk's tmpfs. */
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
        uint64_t deadline = now_monotonic_us() + (uint64_t) READY_TIMEOUT_MS * 1000;
        for (;;) {
                int r = poll_in_until(fd, deadline);
                if (r < 0)
                        return r;
                char c;
                ssize_t k = read(fd, &c, 1);
                if (k == 1)
                        return 0;
                if (k < 0 && errno == EINTR)
                        continue;
                return -ECHILD; /* closed without a byte: init died */
        }
}

#define CHANNEL_KEY_FILE "channel.key"

/* A new channel to init (fd, its ready byte read): registered for
 * init_client_connect(). With key NULL a fresh key is made, kept in the
 * sandbox's dir (the host's; nothing of the sandbox sees it) and sent to init
 * for a restarted agent's sandbox_rechannel(). Takes fd in any case. */
static int channel_start(Sandbox *sb, int fd)
{
        uint8_t msg[1 + IP_CHANNEL_KEY_SIZE] = {IP_CHANNEL_KEY};
        char path[4096];
        (void) snprintf(path, sizeof(path), "%s/" CHANNEL_KEY_FILE, sb->dir);
        int r = 0;
        if (getrandom(msg + 1, IP_CHANNEL_KEY_SIZE, 0) != IP_CHANNEL_KEY_SIZE)
                r = -EIO;
        else if ((r = write_file_atomic(path, msg + 1, IP_CHANNEL_KEY_SIZE, 0600)) >= 0 &&
                 write(fd, msg, sizeof(msg)) != (ssize_t) sizeof(msg))
                r = -EPIPE;
        explicit_bzero(msg, sizeof(msg));
        if (r >= 0)
                r = init_client_add_channel(sb->socket_path, fd);
        if (r < 0)
                (void) close(fd);
        return r;
}

int sandbox_rechannel(const Runtime *rt, const char *name, const char *dir, const char *socket_path)
{
        if (init_client_has_channel(socket_path))
                return 0;
        char path[4096];
        (void) snprintf(path, sizeof(path), "%s/" CHANNEL_KEY_FILE, dir);
        cleanup_free char *key = NULL;
        size_t len = 0;
        int r = read_file(path, IP_CHANNEL_KEY_SIZE + 1, &key, &len);
        if (r < 0)
                return r;
        if (len != IP_CHANNEL_KEY_SIZE)
                return -EBADMSG;
        int p[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, p) < 0)
                return -errno;
        cleanup_close int mine = p[0], theirs = p[1];
        uint8_t msg[1 + IP_CHANNEL_KEY_SIZE] = {IP_CHANNEL_KEY};
        memcpy(msg + 1, key, IP_CHANNEL_KEY_SIZE);
        explicit_bzero(key, len);
        ssize_t n = write(mine, msg, sizeof(msg));
        explicit_bzero(msg, sizeof(msg));
        if (n != (ssize_t) sizeof(msg))
                return -EPIPE;
        char err[256] = "";
        r = runtime_exec_rechannel(rt, name, theirs, err, sizeof(err));
        closep(&theirs);
        if (r < 0) {
                log_sbx(LOG_LEVEL_WARNING, name, r, "no new channel to its init: %s", err);
                return r;
        }
        if ((r = wait_ready(mine)) < 0)
                return r;
        if ((r = init_client_add_channel(socket_path, mine)) < 0)
                return r;
        (void) TAKE_FD(mine);
        return 0;
}

/* Call with a->lock held. */
int sandbox_watch_init(Agent *a, Sandbox *sb)
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

int sandbox_new_id_locked(Agent *a, char **ret)
{
        char id[ID_LEN + 1];
        int r;
        do {
                r = random_id(id, ID_LEN);
        } while (r == 0 && (sandbox_id_taken_locked(a, id) || id[0] < 'a'));
        if (r == 0 && !(*ret = strdup(id)))
                r = -ENOMEM;
        return r;
}

static bool delete_requested(Agent *a, Sandbox *sb)
{
        (void) pthread_mutex_lock(&a->lock);
        bool r = sb->delete_requested;
        (void) pthread_mutex_unlock(&a->lock);
        return r;
}

int sandbox_env_add_defaults(char ***env, char **defaults)
{
        size_t n = 0, k = 0;
        STRV_FOREACH(e, *env)
                n++;
        STRV_FOREACH(e, defaults)
                k++;
        char **v = calloc(n + k + 1, sizeof(char *));
        if (!v)
                return -ENOMEM;
        size_t m = 0;
        STRV_FOREACH(d, defaults) {
                size_t klen = strcspn(*d, "=");
                bool overridden = false;
                STRV_FOREACH(e, *env)
                        if (strncmp(*e, *d, klen) == 0 && (*e)[klen] == '=')
                                overridden = true;
                if (!overridden && !(v[m++] = strdup(*d))) {
                        strv_free(v);
                        return -ENOMEM;
                }
        }
        for (size_t i = 0; i < n; i++)
                v[m++] = (*env)[i];
        free(*env);
        *env = v;
        return 0;
}

static bool template_used_by(const Sandbox *list, const char *t)
{
        for (const Sandbox *sb = list; sb; sb = sb->next)
                if (streq(sb->spec.template_name, t))
                        return true;
        return false;
}

bool sandbox_image_in_use(const char *name, void *userdata)
{
        Agent *a = userdata;
        cleanup_free char *t = NULL;
        if (asprintf(&t, "%s%s", IMAGE_TEMPLATE_PREFIX, name) < 0)
                return true;
        (void) pthread_mutex_lock(&a->lock);
        /* The dying too: still mounted. */
        bool used = template_used_by(a->sandboxes, t) || template_used_by(a->dying, t);
        (void) pthread_mutex_unlock(&a->lock);
        return used;
}

#define IMAGE_TEARDOWN_WAIT_S 60

void sandbox_image_wait_teardowns(Agent *a, const char *name)
{
        cleanup_free char *t = NULL;
        if (asprintf(&t, "%s%s", IMAGE_TEMPLATE_PREFIX, name) < 0)
                return;
        struct timespec end;
        deadline_after_ms(&end, IMAGE_TEARDOWN_WAIT_S * 1000L);
        (void) pthread_mutex_lock(&a->lock);
        while (!template_used_by(a->sandboxes, t) && template_used_by(a->dying, t))
                if (pthread_cond_timedwait(&a->table_changed, &a->lock, &end) == ETIMEDOUT)
                        break;
        (void) pthread_mutex_unlock(&a->lock);
}

/* The spec's template: a directory, or a pulled (and if need be pulled now)
 * image whose config gives the defaults the request left out. */
static int template_for_spec(Agent *a, SandboxSpec *spec, Template **ret, char *err, size_t errlen)
{
        const char *name = spec->template_name;
        if (strncmp(name, IMAGE_TEMPLATE_PREFIX, strlen(IMAGE_TEMPLATE_PREFIX)) != 0) {
                int r = template_load(a->cfg.templates_dir, name, ret);
                /* No such template, or a name no template can have, is the
                 * request's fault; a template that is there but unusable is the
                 * node's. */
                if (r == -ENOENT)
                        (void) snprintf(err, errlen, "template %s not found", name);
                else if (r == -EINVAL)
                        (void) snprintf(err, errlen, "\"%.64s\" is not a template name", name);
                else if (r < 0) {
                        (void) snprintf(err, errlen, "template %s is not usable: %s", name,
                                        strerror(-r));
                        (void) log_error_errno(r, "template %s is not usable", name);
                        r = http_errno_internal(r);
                }
                return r;
        }
        const char *ref = name + strlen(IMAGE_TEMPLATE_PREFIX);
        cleanup_json json_object *img = NULL;
        int r = image_pull(a->images, ref, false, &img, err, errlen);
        if (r < 0)
                return r;
        Template *t = NULL;
        if ((r = image_template(a->images, ref, &t, err, errlen)) < 0)
                return r;
        /* The canonical name: what the sandbox shows and what image removal checks. */
        free(spec->template_name);
        spec->template_name = strdup(t->name);
        if (!spec->user) {
                /* "name:group" or "uid:gid": the user part; the group is the user's. */
                const char *u = t->user ? t->user : "root";
                spec->user = strndup(u, strcspn(u, ":"));
                if (spec->user && !*spec->user) {
                        free(spec->user);
                        spec->user = strdup("root");
                }
        }
        if (!spec->cwd && t->workdir)
                spec->cwd = strdup(t->workdir);
        if (!spec->template_name || !spec->user || (t->workdir && !spec->cwd) ||
            sandbox_env_add_defaults(&spec->env, t->env) < 0) {
                image_unpin(a->images, t->name);
                template_free(t);
                return -ENOMEM;
        }
        *ret = t;
        return 0;
}

/* --- the start command (template.h, docs/templates.md) ------------------- */

/* The start command a create runs: the request's, else the template's. A
 * pooled sandbox cannot have one (it would run without its claimer's env): a
 * warm pool of such a template makes none, and a create with one is cold. */
static int check_start_cmd(const Sandbox *sb, const Template *tpl, char *err, size_t errlen)
{
        const StartCmd *sc = sb->spec.start_cmd ? sb->spec.start_cmd : tpl->start;
        if (!sc)
                return 0;
        if (sb->spec.pool) {
                (void) snprintf(err, errlen,
                                "template %s has a start command: warm pools do not hold its "
                                "sandboxes",
                                tpl->name);
                return -EINVAL;
        }
        if (sc->from_image && (!tpl->start_cmd || !tpl->start_cmd[0])) {
                (void) snprintf(err, errlen,
                                "start_cmd.from_image: template %s is not an image with an "
                                "Entrypoint or Cmd",
                                tpl->name);
                return -EINVAL;
        }
        return 0;
}

#define PORT_CONNECT_MS 500
#define PORT_RETRY_MS   20

typedef struct {
        int nsfd;
        uint16_t port;
        int r; /* 1 answered, 0 not (yet), < 0 our own failure */
} PortCheck;

/* On a thread of its own (a network namespace is per thread): connects to
 * 127.0.0.1:port inside the sandbox's network namespace. */
static void *port_check_thread(void *p)
{
        PortCheck *c = p;
        if (setns(c->nsfd, CLONE_NEWNET) < 0) {
                c->r = -errno;
                return NULL;
        }
        cleanup_close int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0) {
                c->r = -errno;
                return NULL;
        }
        struct sockaddr_in sa = {.sin_family = AF_INET,
                                 .sin_port = htons(c->port),
                                 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        c->r = 0;
        if (connect(fd, (struct sockaddr *) &sa, sizeof(sa)) == 0) {
                c->r = 1;
                return NULL;
        }
        if (errno != EINPROGRESS)
                return NULL; /* refused: nothing listens yet */
        struct pollfd pf = {.fd = fd, .events = POLLOUT};
        int soerr = 0;
        socklen_t len = sizeof(soerr);
        if (poll(&pf, 1, PORT_CONNECT_MS) == 1 &&
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) == 0 && soerr == 0)
                c->r = 1;
        return NULL;
}

static int port_answers(int nsfd, uint32_t port)
{
        PortCheck c = {.nsfd = nsfd, .port = (uint16_t) port};
        pthread_t t;
        pthread_attr_t attr;
        (void) pthread_attr_init(&attr);
        (void) pthread_attr_setstacksize(&attr, (size_t) 128 * 1024);
        int r = -pthread_create(&t, &attr, port_check_thread, &c);
        (void) pthread_attr_destroy(&attr);
        if (r < 0)
                return r;
        (void) pthread_join(t, NULL);
        return c.r;
}

/* Keeps the last bytes of the start command's output, for the error. */
static void tail_add(char *tail, size_t cap, const uint8_t *data, size_t len)
{
        size_t have = strlen(tail);
        if (len >= cap - 1) {
                data += len - (cap - 1);
                len = cap - 1;
        }
        if (have + len > cap - 1) {
                size_t drop = have + len - (cap - 1);
                memmove(tail, tail + drop, have - drop + 1);
                have -= drop;
        }
        for (size_t i = 0; i < len; i++) {
                uint8_t b = data[i] >= 0x20 && data[i] < 0x7f ? data[i] : (uint8_t) ' ';
                tail[have + i] = (char) b;
        }
        tail[have + len] = 0;
}

/* Waits until the start command is up: started (no port), or its port
 * answers inside the sandbox. fd: the spawn's conversation with init, which
 * brings its output and its exit. The command's own failures (it exited, it
 * did not open the port in time) are -EINVAL and -ETIMEDOUT with err set. */
static int start_cmd_wait(Agent *a, Sandbox *sb, const StartCmd *sc, int fd, const char *netns,
                          char *err, size_t errlen)
{
        if (!sc->port)
                return 0;
        cleanup_close int nsfd = open(netns, O_RDONLY | O_CLOEXEC);
        if (nsfd < 0) {
                (void) snprintf(err, errlen, "cannot open the sandbox's network namespace: %s",
                                strerror(errno));
                return http_errno_internal(-errno);
        }
        uint64_t end = now_monotonic_us() + sc->ready_timeout_ms * 1000u;
        cleanup_free uint8_t *body = NULL;
        size_t cap = 0;
        char tail[201] = "";
        for (;;) {
                int r = port_answers(nsfd, sc->port);
                if (r > 0)
                        return 0;
                if (r < 0) {
                        (void) snprintf(err, errlen, "cannot check port %u in the sandbox: %s",
                                        sc->port, strerror(-r));
                        return http_errno_internal(r);
                }
                if (delete_requested(a, sb))
                        return -ECANCELED;
                uint64_t now = now_monotonic_us();
                if (now >= end) {
                        (void) snprintf(err, errlen,
                                        "the start command did not open port %u within %.1f s%s%s",
                                        sc->port, (double) sc->ready_timeout_ms / 1000.0,
                                        *tail ? "; its output ends with: " : "", tail);
                        return -ETIMEDOUT;
                }
                uint64_t left_ms = (end - now + 999) / 1000;
                struct pollfd pf = {.fd = fd, .events = POLLIN};
                int n = poll(&pf, 1, (int) (left_ms < PORT_RETRY_MS ? left_ms : PORT_RETRY_MS));
                if (n <= 0)
                        continue; /* time to try the port again (or EINTR) */
                IpFrame f;
                if ((r = ip_read_frame(fd, &body, &cap, &f)) <= 0) {
                        (void) snprintf(err, errlen,
                                        "the sandbox's init went away while the start command "
                                        "started");
                        return http_errno_internal(r < 0 ? r : -ECONNRESET);
                }
                const uint8_t *data;
                uint32_t len;
                if ((f.type == IP_MSG_STDOUT || f.type == IP_MSG_STDERR) &&
                    ip_get_bytes(&f, IP_TAG_DATA, &data, &len) == 0)
                        tail_add(tail, sizeof(tail), data, len);
                if (f.type != IP_MSG_EXIT)
                        continue;
                int32_t code = -1;
                uint32_t signo = 0;
                (void) ip_get_i32(&f, IP_TAG_EXIT_CODE, &code);
                (void) ip_get_u32(&f, IP_TAG_SIGNO, &signo);
                if (signo)
                        (void) snprintf(err, errlen,
                                        "the start command was killed by signal %u before port "
                                        "%u answered%s%s",
                                        signo, sc->port, *tail ? "; its output ends with: " : "",
                                        tail);
                else
                        (void) snprintf(err, errlen,
                                        "the start command exited with code %d before port %u "
                                        "answered%s%s",
                                        (int) code, sc->port,
                                        *tail ? "; its output ends with: " : "", tail);
                return -EINVAL;
        }
}

/* Starts the start command (if any) as init's background process tagged
 * "start_cmd", with the sandbox's env, secrets and user, and waits until it is
 * up. */
static int run_start_cmd(Agent *a, Sandbox *sb, const Template *tpl, const char *netns_path,
                         char *err, size_t errlen)
{
        const StartCmd *sc = sb->spec.start_cmd ? sb->spec.start_cmd : tpl->start;
        if (!sc)
                return 0;
        char **argv = sc->from_image ? tpl->start_cmd : sc->argv;
        cleanup_json json_object *body = json_object_new_object();
        json_object *cmd = json_object_new_array();
        if (!body || !cmd) {
                json_object_put(cmd);
                return -ENOMEM;
        }
        (void) json_object_object_add(body, "cmd", cmd);
        STRV_FOREACH(s, argv)
                (void) json_object_array_add(cmd, json_object_new_string(*s));
        (void) json_object_object_add(body, "background", json_object_new_boolean(true));
        (void) json_object_object_add(body, "tag", json_object_new_string("start_cmd"));
        if (sc->user)
                (void) json_object_object_add(body, "user", json_object_new_string(sc->user));
        if (sc->cwd)
                (void) json_object_object_add(body, "cwd", json_object_new_string(sc->cwd));
        SandboxExecInfo info = {.socket_path = sb->socket_path,
                                .init_pid = sb->init_pid,
                                .env = sb->spec.env,
                                .user = sb->spec.user,
                                .cwd = sb->spec.cwd,
                                .secret_names = sb->spec.secret_names};
        ExecRequest er;
        char eerr[256] = "";
        int r = exec_request_from_json(body, &info, &er, eerr, sizeof(eerr));
        if (r < 0) {
                (void) snprintf(err, errlen, "the start command: %s", eerr);
                return r == -EINVAL ? r : http_errno_internal(r);
        }
        cleanup_close int fd = -1;
        uint32_t pid = 0;
        r = exec_spawn(sb->socket_path, sb->init_pid, &er, &fd, &pid, eerr, sizeof(eerr));
        exec_request_done(&er);
        if (r < 0) {
                (void) snprintf(err, errlen, "cannot start the start command: %s", eerr);
                return r == -EINVAL ? r : http_errno_internal(r);
        }
        log_sbx(LOG_LEVEL_DEBUG, sb->spec.id, 0, "start command is pid %u", pid);
        cleanup_free char *ns = NULL;
        if (!netns_path && asprintf(&ns, "/proc/%d/ns/net", (int) sb->init_pid) < 0)
                return -ENOMEM;
        return start_cmd_wait(a, sb, sc, fd, netns_path ? netns_path : ns, err, errlen);
}

/* Waits (a->lock held) while a sandbox being torn down holds id, as after a
 * delete and a create with the same id: 0, or -EBUSY after SAME_ID_WAIT_S. */
#define SAME_ID_WAIT_S 60
static int wait_dying_locked(Agent *a, const char *id)
{
        struct timespec end;
        deadline_after_ms(&end, SAME_ID_WAIT_S * 1000L);
        while (!sandbox_find_locked(a, id) && !sandbox_find_name_locked(a, id) &&
               sandbox_dying_locked(a, id))
                if (pthread_cond_timedwait(&a->table_changed, &a->lock, &end) == ETIMEDOUT)
                        return sandbox_dying_locked(a, id) ? -EBUSY : 0; /* a live one: EEXIST */
        return 0;
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
        int r = template_for_spec(a, &sb->spec, &tpl, err, errlen);
        if (r < 0) {
                sandbox_free(sb);
                return r;
        }

        if ((r = sandbox_spec_runtime(a, &sb->spec, err, errlen)) < 0 ||
            (r = check_start_cmd(sb, tpl, err, errlen)) < 0 ||
            (r = net_check_policy(a->net, &sb->spec.network, err, errlen)) < 0) {
                image_unpin(a->images, tpl->name);
                template_free(tpl);
                sandbox_free(sb);
                return r;
        }

        /* Reserve the id in the table, so two creates cannot race for it. */
        (void) pthread_mutex_lock(&a->lock);
        if (!sb->spec.id) {
                r = sandbox_new_id_locked(a, &sb->spec.id);
        } else if ((r = wait_dying_locked(a, sb->spec.id)) < 0) {
                (void) snprintf(err, errlen,
                                "sandbox %s is still being torn down after a delete; try again",
                                sb->spec.id);
        } else if (sandbox_id_taken_locked(a, sb->spec.id)) {
                (void) snprintf(err, errlen, "sandbox %s already exists", sb->spec.id);
                r = -EEXIST;
        }
        if (r == 0 && a->stopping) {
                (void) snprintf(err, errlen, "the agent is shutting down");
                r = -ESHUTDOWN;
        }
        if (r == 0 && !(sb->name = strdup(sb->spec.id))) /* made under its id */
                r = -ENOMEM;
        if (r == 0) {
                sb->next = a->sandboxes;
                a->sandboxes = sb;
        }
        (void) pthread_mutex_unlock(&a->lock);
        if (r < 0) {
                image_unpin(a->images, tpl->name);
                template_free(tpl);
                sandbox_free(sb);
                return r;
        }

        const char *id = sb->spec.id;
        const char *step = "prepare";
        bool pinned = true; /* an image's pin (image_template()), until its layers are recorded */
        uint64_t t0 = now_monotonic_us(), t_cg = 0, t_userns = 0, t_mount = 0, t_net = 0,
                 t_files = 0, t_run = 0;
        cleanup_free char *cg_path = NULL, *ctl_dir = NULL, *rootfs = NULL, *code_dir = NULL,
                          *userns_path = NULL;
        NetSandboxInfo net = {0};
        cleanup_close int ready_r = -1, ready_w = -1, log_fd = -1, listen_fd = -1, userns_fd = -1;
        if (asprintf(&sb->dir, "%s/%s", a->sandboxes_dir, id) < 0 ||
            asprintf(&sb->socket_path, "%s/" ROOTFS_CTL_DIR "/%s", sb->dir, IP_SOCKET_NAME) < 0 ||
            asprintf(&ctl_dir, "%s/" ROOTFS_CTL_DIR, sb->dir) < 0 ||
            asprintf(&code_dir, "%s/" ROOTFS_CODE_DIR, sb->dir) < 0 ||
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
        if (strncmp(tpl->name, IMAGE_TEMPLATE_PREFIX, strlen(IMAGE_TEMPLATE_PREFIX)) == 0) {
                /* Kept from the image GC from now on (image.h), so the pin can go. */
                step = "record the image's layers";
                if ((r = image_write_layers(tpl, sb->dir)) < 0)
                        goto fail;
        }
        image_unpin(a->images, tpl->name);
        pinned = false;
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
        /* gVisor is its own kernel: its sandboxes' root is not the host's
         * root, and runsc maps no user namespace of ours (docs/security.md). */
        Runtime rt = sandbox_runtime(a, sb->spec.runtime);
        bool userns = a->userns && !rt.gvisor;
        /* Most often one made ahead (userns.h), with its range. */
        bool userns_ready =
                userns && a->userns_spares &&
                userns_spares_take(a->userns_spares, &sb->userns_host_id, &userns_fd) == 0;
        if (userns) {
                step = "take a host id range (all taken: raise --userns-size's count)";
                if (!userns_ready && (r = userns_alloc_take(a->userns, &sb->userns_host_id)) < 0)
                        goto fail;
                /* runc binds the rootfs from inside the user namespace, so
                 * the sandbox's root must be able to reach it: its group may
                 * search the sandbox's dir, and nobody else. */
                step = "give the sandbox's root access to its directory";
                if (chown(sb->dir, 0, sb->userns_host_id) < 0 || chmod(sb->dir, 0710) < 0) {
                        r = -errno;
                        goto fail;
                }
                step = "make the sandbox's user namespace";
                if (!userns_ready &&
                    (r = userns_make(sb->userns_host_id, userns_alloc_size(a->userns),
                                     &userns_fd)) < 0)
                        goto fail;
                /* runc (and the netns below) join it by this path while the
                 * agent holds the fd, until the runtime has started init, which
                 * keeps it from then on: no pin on the node's mount table. */
                if (asprintf(&userns_path, "/proc/%d/fd/%d", (int) getpid(), userns_fd) < 0) {
                        r = -ENOMEM;
                        goto fail;
                }
                step = "mount the root filesystem";
        }
        t_userns = now_monotonic_us();
        RootfsIdmap idmap = {
                .userns_fd = userns_fd, .host_id = sb->userns_host_id, .dropper = a->userns_spares};
        if ((r = rootfs_mount(sb->dir, tpl->lowers, sb->spec.disk, userns ? &idmap : NULL)) < 0)
                goto fail;
        t_mount = now_monotonic_us();
        step = "set up the network";
        if ((r = net_sandbox_setup(a->net, id, sb->dir, userns_path, &sb->spec.network, &net)) < 0)
                goto fail;
        sb->ip = net.ip;
        t_net = now_monotonic_us();
        /* A missing bind source fails runc's start anyway; with a user
         * namespace it fails in runc's setup, which then leaves an orphaned
         * child for the host's init to reap. Say so before. */
        STRV_FOREACH(p, tpl->binds)
                if (access(*p, F_OK) < 0) {
                        r = -errno;
                        (void) snprintf(err, errlen, "cannot start sandbox: bind source %s: %s", *p,
                                        strerror(-r));
                        log_sbx(LOG_LEVEL_ERROR, id, r, "%s", err);
                        r = http_errno_internal(r);
                        goto fail_reported;
                }
        step = "write the OCI bundle";
        BundleSpec bs = {.id = id,
                         .rootfs = rootfs,
                         .control_dir = ctl_dir,
                         .init_binary = share_init_path(a->share),
                         .cgroups_path = cg_path,
                         .ro_binds = tpl->binds,
                         .netns_path = net.netns_path,
                         .resolv_conf = net.resolv_path,
                         .kernels_dir = share_kernels_path(a->share),
                         .code_dir = code_dir,
                         .userns_path = userns_path,
                         .userns_host_id = sb->userns_host_id,
                         .userns_size = userns ? userns_alloc_size(a->userns) : 0,
                         .channel = rt.gvisor};
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
        /* runsc: a socket pair, init's end as its stdin; the ready byte comes
         * on it, and it stays the way to init (init_client_add_channel()). */
        if (rt.gvisor ? socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, p) < 0
                      : pipe2(p, O_CLOEXEC) < 0) {
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
        listen_fd = rt.gvisor ? -1 : bind_init_socket(ctl_dir);
        if (!rt.gvisor && listen_fd < 0) {
                r = listen_fd;
                goto fail;
        }
        char rterr[512] = "";
        r = runtime_run(&rt, id, sb->dir, ready_w, listen_fd, log_fd, &sb->init_pid, rterr,
                        sizeof(rterr));
        closep(&ready_w);
        closep(&listen_fd);
        closep(&userns_fd); /* init is in it, or nothing is */
        if (r < 0) {
                (void) snprintf(err, errlen, "cannot start sandbox: %s", rterr);
                log_sbx(LOG_LEVEL_ERROR, id, r, "runtime run failed: %s", rterr);
                goto fail_internal;
        }
        t_run = now_monotonic_us();
        step = "wait for sandpit-init";
        if ((r = wait_ready(ready_r)) < 0)
                goto fail;
        if (rt.gvisor) {
                step = "keep sandpit-init's channel";
                if ((r = channel_start(sb, TAKE_FD(ready_r))) < 0)
                        goto fail;
        }
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
        if ((r = run_start_cmd(a, sb, tpl, net.netns_path, err, errlen)) < 0) {
                if (r == -ECANCELED)
                        goto cancelled;
                log_sbx(LOG_LEVEL_WARNING, id, r, "create failed: %s", err);
                goto fail_reported;
        }
        step = "watch sandpit-init";
        (void) pthread_mutex_lock(&a->lock);
        r = sandbox_watch_init(a, sb);
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
        sandbox_wake_monitor(a);
        template_free(tpl);
        net_sandbox_info_done(&net);
        if (o)
                (void) json_object_object_add(o, "oom_kills", json_object_new_int(0));
        uint64_t t_end = now_monotonic_us();
        log_sbx(LOG_LEVEL_INFO, id, 0, "created from template %s in %.1f ms",
                sb->spec.template_name, (double) (t_end - t0) / 1000.0);
        log_sbx(LOG_LEVEL_DEBUG, id, 0,
                "create steps (ms): dirs+cgroup %.1f, userns %.1f, mounts %.1f, network %.1f, "
                "bundle+state %.1f, runtime run %.1f, init ready %.1f",
                (double) (t_cg - t0) / 1000.0, (double) (t_userns - t_cg) / 1000.0,
                (double) (t_mount - t_userns) / 1000.0, (double) (t_net - t_mount) / 1000.0,
                (double) (t_files - t_net) / 1000.0, (double) (t_run - t_files) / 1000.0,
                (double) (t_end - t_run) / 1000.0);
        if (a->userns_spares)
                userns_spares_refill(a->userns_spares); /* now: not beside this create */
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
fail_internal:
        /* The request was checked and its id reserved before the first step:
         * from there on every step is the agent's own work, so its failure is
         * the agent's whatever errno the kernel or the runtime gave (the
         * message and the log keep that errno). */
        r = http_errno_internal(r);
fail_reported:
        if (pinned)
                image_unpin(a->images, tpl->name);
        template_free(tpl);
        net_sandbox_info_done(&net);
        (void) pthread_mutex_lock(&a->lock); /* the monitor may touch pidfd too */
        if (sb->pidfd >= 0) {
                (void) epoll_ctl(a->epoll_fd, EPOLL_CTL_DEL, sb->pidfd, NULL);
                closep(&sb->pidfd);
        }
        (void) pthread_mutex_unlock(&a->lock);
        if (sandbox_teardown(a, id, sb->dir, sb->spec.runtime) == 0)
                sandbox_release_ids(a, sb);
        (void) pthread_mutex_lock(&a->lock);
        sandbox_unlink_locked(a, sb);
        (void) pthread_mutex_unlock(&a->lock);
        sandbox_free(sb);
        if (a->userns_spares)
                userns_spares_refill(a->userns_spares);
        return r;
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
        while ((sb = sandbox_find_locked(a, id)) &&
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

static int delete_and_unlock(Agent *a, Sandbox *sb);

/* A delete of this id (not a pooled name) is still killing it. */
static bool killing_id_locked(Agent *a, const char *id)
{
        for (const Sandbox *sb = a->dying; sb; sb = sb->next)
                if (sb->killing && !sb->spec.pool && streq(sb->spec.id, id))
                        return true;
        return false;
}

size_t sandbox_teardown_pending(Agent *a)
{
        size_t n = 0;
        (void) pthread_mutex_lock(&a->lock);
        for (const Sandbox *sb = a->dying; sb; sb = sb->next)
                n++;
        (void) pthread_mutex_unlock(&a->lock);
        return n;
}

/* wait: as sandbox_delete(); without, a sandbox being created or deleted is
 * -ENOENT at once (the monitor must not block on another request). */
int sandbox_delete_wait(Agent *a, const char *id, bool wait)
{
        (void) pthread_mutex_lock(&a->lock);
        int wr = 0;
        Sandbox *sb = wait ? wait_settled_locked(a, id, &wr) : sandbox_find_locked(a, id);
        if (!sb && wr == 0 && wait && killing_id_locked(a, id)) {
                /* Another delete of it has not answered yet: answer as it
                 * does, once the sandbox is dead (a few ms). */
                struct timespec end;
                deadline_after_ms(&end, DELETE_WAIT_S * 1000L);
                while (killing_id_locked(a, id) && wr == 0)
                        if (pthread_cond_timedwait(&a->table_changed, &a->lock, &end) == ETIMEDOUT)
                                wr = -ETIMEDOUT;
                wr = wr < 0 ? wr : 1;
        }
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
        return delete_and_unlock(a, sb);
}

/* Kills init, PID 1 of the sandbox's pid namespace, so that the kernel kills
 * every process in it, and waits (bounded) until init is gone, which is after
 * all the others. pidfd: init's, or -1. */
#define KILL_WAIT_MS 2000
static void kill_sandbox(Agent *a, const char *name, pid_t init_pid, int pidfd, bool frozen)
{
        cleanup_close int own = pidfd < 0 && init_pid > 0 ? (int) pidfd_open(init_pid, 0) : -1;
        bool gone = own < 0 && errno == ESRCH;
        if (pidfd < 0)
                pidfd = own;
        if (pidfd >= 0) {
                if (pidfd_send_signal(pidfd, SIGKILL, NULL, 0) < 0 && errno != ESRCH)
                        log_sbx(LOG_LEVEL_WARNING, name, -errno, "cannot kill sandpit-init");
        } else if (init_pid > 0 && !gone) {
                (void) kill(init_pid, SIGKILL); /* no pidfds (ENOSYS) */
        }
        if (frozen) {
                /* Kill while frozen, then thaw: the processes die at once and never
                 * run again (a v1 freezer holds even SIGKILLed ones until thawed). */
                (void) cg_kill_all(a->cg, name, SIGKILL);
                (void) cg_freeze(a->cg, name, false);
        }
        if (pidfd < 0)
                return;
        struct pollfd p = {.fd = pidfd, .events = POLLIN};
        uint64_t end = now_monotonic_us() + (uint64_t) KILL_WAIT_MS * 1000u;
        for (;;) {
                uint64_t now = now_monotonic_us();
                int n = now >= end ? 0 : poll(&p, 1, (int) ((end - now + 999) / 1000));
                if (n > 0)
                        return;
                if (n == 0) {
                        log_sbx(LOG_LEVEL_WARNING, name, -ETIMEDOUT,
                                "sandpit-init still there after SIGKILL; the teardown goes on");
                        return;
                }
                if (errno != EINTR)
                        return;
        }
}

/* The teardown queue's work (sandbox-teardown.h): everything a dead sandbox
 * still holds. A failure is tried again; its remains (state dir and marker
 * kept) are otherwise removed by the next agent's recovery. */
#define TEARDOWN_TRIES    3
#define TEARDOWN_RETRY_MS 500
static void sandbox_teardown_job(void *job, void *userdata)
{
        Agent *a = userdata;
        Sandbox *sb = job;
        uint64_t t0 = now_monotonic_us();
        int r = 0;
        for (int i = 0; i < TEARDOWN_TRIES; i++) {
                if (i > 0)
                        (void) nanosleep(
                                &(struct timespec){.tv_nsec = TEARDOWN_RETRY_MS * 1000000L}, NULL);
                /* A runtime that hung once (killed after its timeout) would
                 * hold this worker as long again: the next start retries. */
                if ((r = sandbox_teardown(a, sb->name, sb->dir, sb->spec.runtime)) == 0 ||
                    r == -ETIMEDOUT)
                        break;
        }
        /* A range goes back only once nothing of the sandbox runs; after a
         * failed teardown it stays taken until the agent restarts. */
        if (r < 0) {
                log_sbx(LOG_LEVEL_ERROR, sb->spec.id, r,
                        "teardown failed; the next agent start removes the remains");
        } else {
                sandbox_release_ids(a, sb);
                log_sbx(LOG_LEVEL_INFO, sb->spec.id, 0, "deleted (teardown %.1f ms)",
                        (double) (now_monotonic_us() - t0) / 1000.0);
        }
        (void) pthread_mutex_lock(&a->lock);
        sandbox_unlink_dying_locked(a, sb);
        (void) pthread_mutex_unlock(&a->lock);
        sandbox_free(sb);
}

/* The marker that makes a restarted agent finish the teardown. */
static void mark_deleting(const char *dir)
{
        cleanup_free char *path = NULL;
        if (!dir || asprintf(&path, "%s/" DELETING_MARKER, dir) < 0)
                return;
        int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd >= 0)
                (void) close(fd);
}

/* Deletes sb, which is settled (not creating nor deleting); called with
 * a->lock held, returns with it released. The sandbox leaves every view at
 * once and is killed before this returns; the rest of its teardown is queued. */
static int delete_and_unlock(Agent *a, Sandbox *sb)
{
        bool frozen = sb->state == SANDBOX_PAUSED || sb->paused_us != 0;
        bool exited = sb->state == SANDBOX_EXITED;
        pid_t init_pid = sb->init_pid;
        sb->state = SANDBOX_DELETING;
        code_forget_sandbox(sb->spec.id); /* its kernels die with it; drop our ends */
        if (sb->pidfd >= 0)
                (void) epoll_ctl(a->epoll_fd, EPOLL_CTL_DEL, sb->pidfd, NULL);
        cleanup_close int pidfd = TAKE_FD(sb->pidfd);
        sb->killing = true;
        sandbox_move_to_dying_locked(a, sb);
        (void) pthread_mutex_unlock(&a->lock);

        /* sb is ours now: others only read its id, name and template, under
         * the lock, until the teardown job frees it. */
        mark_deleting(sb->dir);
        kill_sandbox(a, sb->name, exited ? 0 : init_pid, exited ? -1 : pidfd, frozen);
        log_sbx(LOG_LEVEL_INFO, sb->spec.id, 0, "killed; teardown queued");
        (void) pthread_mutex_lock(&a->lock);
        sb->killing = false;
        (void) pthread_cond_broadcast(&a->table_changed);
        (void) pthread_mutex_unlock(&a->lock);
        if (teardown_queue_push(a->teardown, sb) < 0)
                sandbox_teardown_job(sb, a); /* shutting down: done here */
        return 0;
}

int sandbox_delete_pooled(Agent *a, const char *name)
{
        (void) pthread_mutex_lock(&a->lock);
        Sandbox *sb = sandbox_find_name_locked(a, name);
        if (!sb || !sb->spec.pool || sb->state == SANDBOX_CREATING ||
            sb->state == SANDBOX_DELETING) {
                (void) pthread_mutex_unlock(&a->lock);
                return -ENOENT;
        }
        return delete_and_unlock(a, sb);
}

int sandbox_delete(Agent *a, const char *id)
{
        return sandbox_delete_wait(a, id, true);
}

int sandbox_set_timeout(Agent *a, const char *id, uint64_t timeout_s, json_object **ret_obj)
{
        (void) pthread_mutex_lock(&a->lock);
        Sandbox *sb = sandbox_find_locked(a, id);
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
        sandbox_wake_monitor(a);
        if (r < 0)
                log_sbx(LOG_LEVEL_WARNING, id, r, "cannot persist the new deadline");
        if (!o)
                return -ENOMEM;
        sandbox_add_stats(a, id, o);
        *ret_obj = o;
        return 0;
}

int sandbox_netns_path(Agent *a, const char *id, char **ret)
{
        int r = 0;
        char *path = NULL;
        (void) pthread_mutex_lock(&a->lock);
        Sandbox *sb = sandbox_find_locked(a, id);
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
        Sandbox *sb = sandbox_find_locked(a, id);
        r = !sb || sb->state == SANDBOX_CREATING || sb->state == SANDBOX_DELETING ? -ENOENT
            : sb->state != SANDBOX_RUNNING                                        ? -EBUSY
                                                                                  : 0;
        cleanup_free char *name = r == 0 ? strdup(sb->name) : NULL;
        (void) pthread_mutex_unlock(&a->lock);
        if (r == 0 && !name)
                r = -ENOMEM;
        if (r == 0 && (r = net_sandbox_set_policy(a->net, name, policy)) < 0)
                (void) snprintf(err, errlen, "cannot apply the network policy: %s", strerror(-r));
        json_object *o = NULL;
        if (r == 0) {
                (void) pthread_mutex_lock(&a->lock);
                if ((sb = sandbox_find_locked(a, id))) {
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
        sandbox_add_stats(a, id, o);
        *ret_obj = o;
        return 0;
}

/* --- startup and shutdown ------------------------------------------------ */

int agent_init(Agent *a)
{
        (void) pthread_mutex_init(&a->lock, NULL);
        cond_init_monotonic(&a->table_changed);
        a->epoll_fd = -1;
        a->wake_fd = -1;
        a->started_us = now_realtime_us();
        if (metrics_new(&a->metrics) < 0)
                return -ENOMEM;
        int r = teardown_queue_new(TEARDOWN_WORKERS, sandbox_teardown_job, a, &a->teardown);
        if (r < 0)
                return r;
        a->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
        a->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (a->epoll_fd < 0 || a->wake_fd < 0)
                return -errno;
        struct epoll_event ev = {.events = EPOLLIN, .data.u64 = WAKE_SERIAL};
        if (epoll_ctl(a->epoll_fd, EPOLL_CTL_ADD, a->wake_fd, &ev) < 0)
                return -errno;
        return 0;
}

/* With user namespaces every directory above the state dir must be
 * searchable by others: a sandbox's root, an unprivileged host id, walks that
 * path when runc binds its rootfs from inside its namespace. Said at start,
 * not as runc's "permission denied" at the first create. */
static int check_searchable_above(const char *state_dir)
{
        cleanup_free char *path = realpath(state_dir, NULL);
        if (!path)
                return log_error_errno(-errno, "cannot resolve %s", state_dir);
        for (char *slash = strrchr(path, '/'); slash; slash = strrchr(path, '/')) {
                *slash = '\0';
                const char *dir = *path ? path : "/";
                struct stat st;
                if (stat(dir, &st) < 0)
                        return log_error_errno(-errno, "cannot stat %s", dir);
                if (!(st.st_mode & S_IXOTH))
                        return log_error_errno(-EACCES,
                                               "--userns=on: sandboxes must search their way to "
                                               "the state dir %s, but %s is mode %04o: make it "
                                               "searchable (chmod o+x) or use --userns=off",
                                               state_dir, dir, (unsigned) (st.st_mode & 07777));
                if (!*path)
                        break;
        }
        return 0;
}

int agent_setup_state_dir(Agent *a)
{
        if (asprintf(&a->runc_root, "%s/runc", a->cfg.state_dir) < 0 ||
            asprintf(&a->sandboxes_dir, "%s/sandboxes", a->cfg.state_dir) < 0)
                return -ENOMEM;
        /* Directories it makes above the state dir: searchable with user
         * namespaces (check_searchable_above()). */
        int r = mkdir_p(a->cfg.state_dir, a->cfg.userns ? 0711 : 0700);
        if (r == 0)
                r = mkdir_p(a->sandboxes_dir, 0700);
        if (r < 0)
                return log_error_errno(r, "cannot create %s", a->sandboxes_dir);
        if ((r = mkdir_p(a->runc_root, 0700)) < 0)
                return log_error_errno(r, "cannot create %s", a->runc_root);
        /* The runtimes a template may name: the default's keeps runc_root. */
        const char *def = default_runtime_name(a);
        for (int i = 0; i < RUNTIME_NAMES; i++) {
                const char *name = runtime_names[i], *bin = name;
                size_t n = strlen(name);
                STRV_FOREACH(p, a->cfg.runtime_paths)
                        if (strncmp(*p, name, n) == 0 && (*p)[n] == '=')
                                bin = *p + n + 1;
                if (def && streq(name, def) && bin == name)
                        bin = a->cfg.runtime;
                if (!(a->runtime_bins[i] = strdup(bin)) ||
                    (def && streq(name, def) ? !(a->runtime_roots[i] = strdup(a->runc_root))
                                             : asprintf(&a->runtime_roots[i], "%s/runtimes/%s",
                                                        a->cfg.state_dir, name) < 0)) {
                        a->runtime_roots[i] = NULL;
                        return -ENOMEM;
                }
        }
        /* runc from a sealed copy (runtime-exe.h): each start then skips its
         * own protective re-exec. */
        const char *runc = a->runtime_bins[runtime_name_index("runc")];
        if ((r = runtime_exe_new(runc, &a->runc_exe)) < 0)
                log_full(r == -ENOENT ? LOG_LEVEL_DEBUG : LOG_LEVEL_WARNING, r, NULL,
                         "cannot run %s from a sealed copy; running the file", runc);
        /* With user namespaces each sandbox's root must search its way to its
         * rootfs (runc binds it from inside): these two may be searched, not
         * listed, and each sandbox's own dir only by its root (sandbox_create). */
        if (a->cfg.userns &&
            (chmod(a->cfg.state_dir, 0711) < 0 || chmod(a->sandboxes_dir, 0711) < 0))
                return log_error_errno(-errno, "cannot make %s searchable", a->sandboxes_dir);
        return a->cfg.userns ? check_searchable_above(a->cfg.state_dir) : 0;
}

int agent_check_init(Agent *a)
{
        if (access(a->cfg.init_path, X_OK) < 0)
                return log_error_errno(-errno, "sandpit-init not executable at %s",
                                       a->cfg.init_path);
        /* Sandboxes bind init and the kernels from private copies (share.h). */
        return share_new(a->cfg.state_dir, a->cfg.init_path, a->cfg.kernels_dir, &a->share);
}

int agent_setup_network(Agent *a)
{
        int r = net_manager_new(&a->cfg.net, a->cfg.state_dir, &a->net);
        return r < 0 ? log_error_errno(r, "cannot set up sandbox networking") : 0;
}

int agent_setup_cgroups(Agent *a)
{
        int r = cg_manager_new(a->cfg.cgroup_version, a->cfg.cgroup_parent, &a->cg);
        if (r < 0)
                return log_error_errno(r, "cannot set up cgroups under %s", a->cfg.cgroup_parent);
        return 0;
}

/* How many user namespaces wait made ahead: one per create in flight at once
 * is enough for the 2-client sustained rate; each costs a namespace (a few
 * hundred bytes of kernel memory) and holds a range. */
#define USERNS_SPARES 2

int agent_start_userns_spares(Agent *a)
{
        if (!a->userns)
                return 0;
        int r = userns_spares_start(a->userns, USERNS_SPARES, &a->userns_spares);
        return r < 0 ? log_error_errno(r, "cannot start making user namespaces ahead") : 0;
}

void agent_raise_nofile(void)
{
        /* The agent holds an fd per sandbox (its init's pidfd) beside its
         * connections, so a node of 1,000 sandboxes needs more than the
         * usual soft limit of 1,024; and every sandbox's init inherits the
         * limit (bundle.c says why). So: bundle_nofile_limit() at least, and
         * the hard limit if that is higher. */
        struct rlimit rl = {.rlim_cur = (rlim_t) bundle_nofile_limit()};
        rl.rlim_max = rl.rlim_cur;
        struct rlimit cur;
        if (getrlimit(RLIMIT_NOFILE, &cur) == 0 && cur.rlim_max > rl.rlim_max)
                rl.rlim_max = rl.rlim_cur = cur.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
                log_warning_errno(-errno, "cannot raise the open files limit to %llu",
                                  (unsigned long long) rl.rlim_cur);
}

int agent_setup_userns(Agent *a)
{
        if (!a->cfg.userns)
                return 0;
        int r = userns_alloc_new(a->cfg.userns_base, a->cfg.userns_size, &a->userns);
        if (r < 0)
                return log_error_errno(r, "bad --userns-base %u / --userns-size %u",
                                       a->cfg.userns_base, a->cfg.userns_size);
        if ((r = userns_check(a->cfg.userns_base)) < 0)
                return log_error_errno(
                        r, "--userns=on, but an unprivileged id cannot make a "
                           "user namespace here (sysctls "
                           "kernel.unprivileged_userns_clone, user.max_user_namespaces); "
                           "use --userns=off");
        log_info("user namespaces on: %u ranges of %u host ids from %u",
                 userns_alloc_count(a->userns), a->cfg.userns_size, a->cfg.userns_base);
        return 0;
}

void sandbox_release_ids(Agent *a, Sandbox *sb)
{
        if (!sb->userns_host_id || !a->userns)
                return;
        int r = userns_alloc_release(a->userns, sb->userns_host_id);
        if (r < 0)
                log_sbx(LOG_LEVEL_WARNING, sb->spec.id, r, "cannot release host ids %u",
                        sb->userns_host_id);
        sb->userns_host_id = 0;
}

void agent_done(Agent *a)
{
        (void) pthread_mutex_lock(&a->lock);
        a->stopping = true;
        (void) pthread_mutex_unlock(&a->lock);
        sandbox_wake_monitor(a);
        if (a->monitor_started)
                (void) pthread_join(a->monitor, NULL);
        metrics_stop(a);
        /* Deleted ones are torn down before we go (nothing queues more now:
         * the API, the pools and the monitor have stopped). */
        size_t pending = sandbox_teardown_pending(a);
        if (pending)
                log_info("finishing %zu sandbox teardowns", pending);
        teardown_queue_free(a->teardown);
        a->teardown = NULL;
        while (a->dying) { /* only if the queue never started */
                Sandbox *sb = a->dying;
                a->dying = sb->next;
                sandbox_free(sb);
        }
        /* Sandboxes keep running: a restarted agent re-adopts them. */
        while (a->sandboxes) {
                Sandbox *sb = a->sandboxes;
                a->sandboxes = sb->next;
                sandbox_free(sb);
        }
        cg_manager_free(a->cg);
        net_manager_free(a->net);
        userns_spares_stop(a->userns_spares);
        userns_alloc_free(a->userns);
        runtime_exe_free(a->runc_exe);
        if (a->epoll_fd >= 0)
                (void) close(a->epoll_fd);
        if (a->wake_fd >= 0)
                (void) close(a->wake_fd);
        free(a->runc_root);
        share_free(a->share);
        for (int i = 0; i < RUNTIME_NAMES; i++) {
                free(a->runtime_bins[i]);
                free(a->runtime_roots[i]);
        }
        free(a->sandboxes_dir);
        metrics_free(a->metrics);
        (void) pthread_cond_destroy(&a->table_changed);
        (void) pthread_mutex_destroy(&a->lock);
}

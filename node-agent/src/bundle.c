/* OCI config.json for one sandbox. The choices are explained in docs/security.md;
 * the comments here say why each piece is there. */
#include "bundle.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>

#include "code.h"
#include "initproto.h"
#include "sandpit/macro.h"
#include "sandpit/util.h"
#include "seccomp-profile.h"

#define OCI_VERSION "1.0.2"
/* Dev tools (language servers, bundlers, test runners) open far more than 1024. */
#define NOFILE_LIMIT 65536

/* Raising RLIMIT_NOFILE above the hard limit needs CAP_SYS_RESOURCE, which an
 * agent in a container may lack (runc then fails the start): never ask for
 * more than the agent itself may have. */
int64_t bundle_nofile_limit(void)
{
        struct rlimit rl;
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_max != RLIM_INFINITY &&
            rl.rlim_max < NOFILE_LIMIT)
                return (int64_t) rl.rlim_max;
        return NOFILE_LIMIT;
}

/* Guards seccomp_shared, including its (non-atomic) json-c reference count. */
static pthread_mutex_t bundle_lock = PTHREAD_MUTEX_INITIALIZER;
/* Built on first use and never freed: every config holds a reference to it, so
 * a sandbox start costs a refcount increment instead of ~400 objects (~20 us). */
static json_object *seccomp_shared;

/* Each one kept because sandpit-init or root-run user code needs it; everything
 * else (CAP_SYS_ADMIN, CAP_NET_RAW, CAP_MKNOD, CAP_SYS_CHROOT, CAP_AUDIT_WRITE,
 * CAP_SETPCAP, ...) is gone from every set. A process run as uid 1000 loses
 * these too on setuid(), since nothing is ambient or inheritable. */
static const char *const capabilities[] = {
        "CAP_CHOWN",        /* root code chowns files it creates for the user (pip, npm) */
        "CAP_DAC_OVERRIDE", /* root code reaches into /home/user and other users' files */
        "CAP_FOWNER",       /* chmod/utime on files root does not own (tar, cp -p) */
        "CAP_FSETID",       /* writes and chmod keep set-gid bits, as install(1) and dpkg expect */
        "CAP_KILL",         /* init signals and reaps processes of every uid it started */
        "CAP_SETGID",       /* init drops to the user's gid and supplementary groups */
        "CAP_SETUID",       /* init drops to uid 1000 before running user code */
        "CAP_NET_BIND_SERVICE", /* root-run servers on ports < 1024 (port 80 previews) */
};

/* runc spec's defaults, plus powercap, whose energy counters leak host activity,
 * and the host-wide memory files the kernel keeps to root alone (mode 0400, no
 * capability check), which root in a sandbox could otherwise read: the page
 * frame tables (kpage*: which physical pages hold what, the groundwork of
 * rowhammer and page-cache attacks), the kernel heap's layout (slabinfo) and the
 * vmalloc areas with their physical addresses (vmallocinfo). */
static const char *const masked_paths[] = {
        "/proc/acpi",
        "/proc/asound",
        "/proc/kcore",
        "/proc/keys",
        "/proc/latency_stats",
        "/proc/timer_list",
        "/proc/timer_stats",
        "/proc/sched_debug",
        "/sys/firmware",
        "/proc/scsi",
        "/sys/devices/virtual/powercap",
        "/proc/kpagecount",
        "/proc/kpageflags",
        "/proc/kpagecgroup",
        "/proc/slabinfo",
        "/proc/vmallocinfo",
};

static const char *const readonly_paths[] = {
        "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
};

/* All new. With --userns=on a user namespace too (build_linux()); without it
 * init runs as real root, confined by the capability sets, seccomp and
 * no_new_privs. */
static const char *const namespaces[] = {"pid", "ipc", "uts", "mount", "network", "cgroup"};

static const char *const proc_opts[] = {"nosuid", "noexec", "nodev", NULL};
static const char *const dev_opts[] = {"nosuid", "strictatime", "mode=755", "size=65536k", NULL};
/* gid=5 is runc's default; a rootfs without a tty group just shows the number. */
static const char *const devpts_opts[] = {"nosuid",    "noexec", "newinstance", "ptmxmode=0666",
                                          "mode=0620", "gid=5",  NULL};
static const char *const shm_opts[] = {"nosuid",    "noexec",      "nodev",
                                       "mode=1777", "size=65536k", NULL};
static const char *const mqueue_opts[] = {"nosuid", "noexec", "nodev", NULL};
static const char *const sysfs_opts[] = {"nosuid", "noexec", "nodev", "ro", NULL};
/* The agent<->init socket lives here; nothing in it is ever executed. Read-only:
 * the agent bound the socket before the start, and whatever the sandbox could
 * write here would be on the host's disk and in a path the agent uses. */
static const char *const control_opts[] = {"bind", "ro", "nosuid", "nodev", "noexec", NULL};
/* Mounted on top of the noexec control dir, as its own mount so it can exec. runc
 * binds first and then remounts with "ro", so a read-only bind needs it spelled out. */
static const char *const init_opts[] = {"bind", "ro", "nosuid", "nodev", NULL};
static const char *const ro_bind_opts[] = {"rbind", "ro", "nosuid", "nodev", NULL};
static const char *const resolv_opts[] = {"bind", "ro", "nosuid", "nodev", "noexec", NULL};

/* Sticky-error document builder: after the first failure every call only
 * releases what it was given, so a function can build a whole subtree and check
 * once. */
typedef struct {
        int r;
} Builder;

/* Adds v to parent under key, or appends it when key is NULL, and returns it
 * (borrowed). Takes ownership of v in every case. */
static json_object *add(Builder *b, json_object *parent, const char *key, json_object *v)
{
        int k;

        if (b->r < 0 || !parent || !v) {
                if (b->r >= 0)
                        b->r = -ENOMEM;
                json_object_put(v);
                return NULL;
        }
        k = key ? json_object_object_add(parent, key, v) : json_object_array_add(parent, v);
        if (k < 0) {
                json_object_put(v);
                b->r = -ENOMEM;
                return NULL;
        }
        return v;
}

static void add_str(Builder *b, json_object *parent, const char *key, const char *s)
{
        (void) add(b, parent, key, json_object_new_string(s));
}

static void add_int(Builder *b, json_object *parent, const char *key, int64_t v)
{
        (void) add(b, parent, key, json_object_new_int64(v));
}

static void add_bool(Builder *b, json_object *parent, const char *key, bool v)
{
        (void) add(b, parent, key, json_object_new_boolean(v));
}

static json_object *add_obj(Builder *b, json_object *parent, const char *key)
{
        return add(b, parent, key, json_object_new_object());
}

static json_object *add_arr(Builder *b, json_object *parent, const char *key)
{
        return add(b, parent, key, json_object_new_array());
}

static void add_strs(Builder *b, json_object *parent, const char *key, const char *const *v,
                     size_t n)
{
        json_object *a = add_arr(b, parent, key);

        for (size_t i = 0; i < n; i++)
                add_str(b, a, NULL, v[i]);
}

static void add_mount(Builder *b, json_object *mounts, const char *dest, const char *type,
                      const char *source, const char *const *opts)
{
        json_object *m = add_obj(b, mounts, NULL);
        json_object *o;

        add_str(b, m, "destination", dest);
        add_str(b, m, "type", type);
        add_str(b, m, "source", source);
        o = add_arr(b, m, "options");
        for (const char *const *s = opts; *s; s++)
                add_str(b, o, NULL, *s);
}

static bool is_abs_path(const char *p)
{
        return p && p[0] == '/';
}

/* Container ids become the hostname and a runc state directory name. */
static bool is_valid_id(const char *id)
{
        size_t n;

        if (!id)
                return false;
        n = strlen(id);
        if (n == 0 || n > 63)
                return false;
        for (size_t i = 0; i < n; i++) {
                char c = id[i];
                bool alnum =
                        (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');

                if (!alnum && (i == 0 || (c != '-' && c != '.' && c != '_')))
                        return false;
        }
        return true;
}

static int spec_validate(const BundleSpec *spec)
{
        if (!spec || !is_valid_id(spec->id) || !is_abs_path(spec->rootfs) ||
            !is_abs_path(spec->control_dir) || !is_abs_path(spec->init_binary) ||
            !spec->cgroups_path || !spec->cgroups_path[0])
                return -EINVAL;
        if ((spec->resolv_conf && !is_abs_path(spec->resolv_conf)) ||
            (spec->netns_path && !is_abs_path(spec->netns_path)))
                return -EINVAL;
        if ((spec->kernels_dir && !is_abs_path(spec->kernels_dir)) ||
            (spec->code_dir && !is_abs_path(spec->code_dir)))
                return -EINVAL;
        STRV_FOREACH(p, spec->ro_binds)
                if (!is_abs_path(*p) || streq(*p, "/"))
                        return -EINVAL;
        if (spec->userns_size && (!is_abs_path(spec->userns_path) ||
                                  spec->userns_host_id > UINT32_MAX - 1 - spec->userns_size))
                return -EINVAL;
        return 0;
}

static void build_process(Builder *b, json_object *config, const BundleSpec *spec)
{
        static const char *const args[] = {IP_INIT_PATH};
        static const char *const channel_args[] = {IP_INIT_PATH, "--channel"};
        static const char *const env[] = {
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"};
        json_object *process = add_obj(b, config, "process");
        json_object *user, *caps, *rlimit;

        add_bool(b, process, "terminal", false);
        user = add_obj(b, process, "user");
        add_int(b, user, "uid", 0);
        add_int(b, user, "gid", 0);
        if (spec->channel)
                add_strs(b, process, "args", channel_args, ARRAY_SIZE(channel_args));
        else
                add_strs(b, process, "args", args, ARRAY_SIZE(args));
        add_strs(b, process, "env", env, ARRAY_SIZE(env));
        add_str(b, process, "cwd", "/");

        caps = add_obj(b, process, "capabilities");
        add_strs(b, caps, "bounding", capabilities, ARRAY_SIZE(capabilities));
        add_strs(b, caps, "effective", capabilities, ARRAY_SIZE(capabilities));
        add_strs(b, caps, "permitted", capabilities, ARRAY_SIZE(capabilities));
        add_strs(b, caps, "inheritable", NULL, 0);
        add_strs(b, caps, "ambient", NULL, 0);

        /* runc 1.1 sets rlimits with prlimit() on init once it is in the user
         * namespace, which the kernel refuses (EPERM) when the namespace was
         * made by another user (userns.c); with one, init inherits the agent's
         * limits, which agent_setup_userns() raised to the same values. */
        if (!spec->userns_size) {
                rlimit = add_obj(b, add_arr(b, process, "rlimits"), NULL);
                add_str(b, rlimit, "type", "RLIMIT_NOFILE");
                add_int(b, rlimit, "hard", bundle_nofile_limit());
                add_int(b, rlimit, "soft", bundle_nofile_limit());
        }

        /* setuid binaries and file capabilities in the rootfs give nothing back. */
        add_bool(b, process, "noNewPrivileges", true);
}

static void build_mounts(Builder *b, json_object *config, const BundleSpec *spec)
{
        json_object *mounts = add_arr(b, config, "mounts");

        add_mount(b, mounts, "/proc", "proc", "proc", proc_opts);
        add_mount(b, mounts, "/dev", "tmpfs", "tmpfs", dev_opts);
        add_mount(b, mounts, "/dev/pts", "devpts", "devpts", devpts_opts);
        add_mount(b, mounts, "/dev/shm", "tmpfs", "shm", shm_opts);
        add_mount(b, mounts, "/dev/mqueue", "mqueue", "mqueue", mqueue_opts);
        add_mount(b, mounts, "/sys", "sysfs", "sysfs", sysfs_opts);
        /* The control dir first: the init binary is mounted on a file inside it. */
        add_mount(b, mounts, IP_CONTROL_DIR, "bind", spec->control_dir, control_opts);
        add_mount(b, mounts, IP_INIT_PATH, "bind", spec->init_binary, init_opts);
        STRV_FOREACH(p, spec->ro_binds)
                add_mount(b, mounts, *p, "bind", *p, ro_bind_opts);
        if (spec->resolv_conf)
                add_mount(b, mounts, "/etc/resolv.conf", "bind", spec->resolv_conf, resolv_opts);
        /* Code interpreter (docs/code-interpreter.md): the kernel drivers, and the
         * agent's listening sockets; read-only, so nothing in the sandbox can
         * plant files the agent would use. */
        if (spec->kernels_dir)
                add_mount(b, mounts, CODE_KERNELS_MOUNT, "bind", spec->kernels_dir, resolv_opts);
        if (spec->code_dir)
                add_mount(b, mounts, CODE_SOCKETS_MOUNT, "bind", spec->code_dir, resolv_opts);
}

/* Called with bundle_lock held. */
static void build_linux(Builder *b, json_object *config, const BundleSpec *spec)
{
        json_object *linux_ = add_obj(b, config, "linux");
        json_object *ns, *dev;

        ns = add_arr(b, linux_, "namespaces");
        for (size_t i = 0; i < ARRAY_SIZE(namespaces); i++) {
                json_object *n = add_obj(b, ns, NULL);
                add_str(b, n, "type", namespaces[i]);
                /* The agent made it, with the veth already in it (net.c). */
                if (spec->netns_path && streq(namespaces[i], "network"))
                        add_str(b, n, "path", spec->netns_path);
        }
        /* The sandbox's ids are its own range of host ids (userns.h): root
         * inside is not root outside, and no two sandboxes share a uid. */
        if (spec->userns_size) {
                json_object *u = add_obj(b, ns, NULL);
                add_str(b, u, "type", "user");
                add_str(b, u, "path", spec->userns_path);
                static const char *const maps[] = {"uidMappings", "gidMappings"};
                for (size_t i = 0; i < ARRAY_SIZE(maps); i++) {
                        json_object *m = add_obj(b, add_arr(b, linux_, maps[i]), NULL);
                        add_int(b, m, "containerID", 0);
                        add_int(b, m, "hostID", spec->userns_host_id);
                        add_int(b, m, "size", spec->userns_size);
                }
        }
        add_str(b, linux_, "cgroupsPath", spec->cgroups_path);

        /* Deny every device node; runc then allows its defaults (null, zero, full,
         * random, urandom, tty, ptmx, pts). */
        dev = add_obj(b, add_arr(b, add_obj(b, linux_, "resources"), "devices"), NULL);
        add_bool(b, dev, "allow", false);
        add_str(b, dev, "access", "rwm");

        add_strs(b, linux_, "maskedPaths", masked_paths, ARRAY_SIZE(masked_paths));
        add_strs(b, linux_, "readonlyPaths", readonly_paths, ARRAY_SIZE(readonly_paths));
        /* Mounts made in the sandbox never propagate back to the host. */
        add_str(b, linux_, "rootfsPropagation", "private");

        if (b->r >= 0 && !seccomp_shared) {
                int r = seccomp_profile_new(&seccomp_shared);
                if (r < 0)
                        b->r = r;
        }
        (void) add(b, linux_, "seccomp", json_object_get(seccomp_shared));
}

int bundle_config_new(const BundleSpec *spec, json_object **ret)
{
        Builder b = {0};
        json_object *config, *root;
        int r;

        r = spec_validate(spec);
        if (r < 0)
                return r;

        config = json_object_new_object();
        if (!config)
                return -ENOMEM;
        add_str(&b, config, "ociVersion", OCI_VERSION);
        build_process(&b, config, spec);
        root = add_obj(&b, config, "root");
        add_str(&b, root, "path", spec->rootfs);
        add_bool(&b, root, "readonly", false);
        add_str(&b, config, "hostname", spec->id);
        build_mounts(&b, config, spec);

        (void) pthread_mutex_lock(&bundle_lock);
        build_linux(&b, config, spec);
        if (b.r < 0)
                json_object_put(config);
        (void) pthread_mutex_unlock(&bundle_lock);

        if (b.r < 0)
                return b.r;
        *ret = config;
        return 0;
}

/* Drops a config from bundle_config_new() under the lock that guards the shared
 * seccomp object's reference count. */
static void config_put_locked(json_object **config)
{
        if (!*config)
                return;
        (void) pthread_mutex_lock(&bundle_lock);
        json_object_put(*config);
        (void) pthread_mutex_unlock(&bundle_lock);
}

int bundle_write(const char *bundle_dir, const BundleSpec *spec)
{
        __attribute__((cleanup(config_put_locked))) json_object *config = NULL;
        cleanup_free char *tmp = NULL;
        cleanup_free char *path = NULL;
        cleanup_close int fd = -1;
        const char *text;
        size_t len = 0;
        int r;

        if (!bundle_dir)
                return -EINVAL;
        r = bundle_config_new(spec, &config);
        if (r < 0)
                return r;
        /* Serialising only reads the tree, so it needs no lock. */
        text = json_object_to_json_string_length(
                config, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
        if (!text)
                return -ENOMEM;

        if (asprintf(&tmp, "%s/.config.json.XXXXXX", bundle_dir) < 0) {
                tmp = NULL;
                return -ENOMEM;
        }
        if (asprintf(&path, "%s/config.json", bundle_dir) < 0) {
                path = NULL;
                return -ENOMEM;
        }

        fd = mkostemp(tmp, O_CLOEXEC);
        if (fd < 0)
                return negative_errno();
        /* mkostemp's 0600 is filtered through the umask; the config names host
         * paths, so make it exactly 0600. No fsync: the agent rewrites the bundle
         * on every start, and a flush would put disk latency on that path. */
        if (fchmod(fd, 0600) < 0)
                r = negative_errno();
        if (r >= 0)
                r = write_all(fd, text, len);
        if (r >= 0 && close(TAKE_FD(fd)) < 0)
                r = negative_errno();
        if (r >= 0 && rename(tmp, path) < 0)
                r = negative_errno();
        if (r < 0)
                (void) unlink(tmp);
        return r;
}

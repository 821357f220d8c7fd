/* The OCI bundle writer: what the config says, how it is written, and (as root
 * with runc on PATH) that runc accepts it and runs the process under it. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <linux/capability.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "bundle.h"
#include "initproto.h"
#include "sandpit/json.h"
#include "sandpit/macro.h"

static char *test_ro_binds[] = {"/usr", "/opt/tools", NULL};

static const BundleSpec test_spec = {
        .id = "sbx-1234",
        .rootfs = "/var/lib/sandpit/sandboxes/sbx-1234/rootfs",
        .control_dir = "/run/sandpit/sbx-1234",
        .init_binary = "/usr/libexec/sandpit/sandpit-init",
        .cgroups_path = "/sandpit/sbx-1234",
        .ro_binds = test_ro_binds,
        .resolv_conf = "/var/lib/sandpit/resolv.conf",
};

static const char *const allowed_caps[] = {
        "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID",
        "CAP_KILL",  "CAP_SETGID",       "CAP_SETUID", "CAP_NET_BIND_SERVICE",
};

static json_object *get(json_object *o, const char *key)
{
        json_object *v = NULL;

        assert_non_null(o);
        if (!json_object_object_get_ex(o, key, &v))
                fail_msg("missing key %s", key);
        return v;
}

static const char *get_str(json_object *o, const char *key)
{
        json_object *v = get(o, key);

        assert_true(json_object_is_type(v, json_type_string));
        return json_object_get_string(v);
}

static bool arr_has(json_object *a, const char *s)
{
        assert_true(json_object_is_type(a, json_type_array));
        for (size_t i = 0; i < json_object_array_length(a); i++)
                if (streq(json_object_get_string(json_object_array_get_idx(a, i)), s))
                        return true;
        return false;
}

static bool in_list(const char *s, const char *const *list, size_t n)
{
        for (size_t i = 0; i < n; i++)
                if (streq(s, list[i]))
                        return true;
        return false;
}

static json_object *new_config(const BundleSpec *spec)
{
        json_object *config = NULL;

        assert_int_equal(bundle_config_new(spec, &config), 0);
        assert_non_null(config);
        return config;
}

/* Index of the mount at dest, or -1. */
static int mount_index(json_object *config, const char *dest)
{
        json_object *mounts = get(config, "mounts");

        for (size_t i = 0; i < json_object_array_length(mounts); i++)
                if (streq(get_str(json_object_array_get_idx(mounts, i), "destination"), dest))
                        return (int) i;
        return -1;
}

static json_object *mount_at(json_object *config, const char *dest)
{
        int i = mount_index(config, dest);

        if (i < 0)
                fail_msg("no mount at %s", dest);
        return json_object_array_get_idx(get(config, "mounts"), (size_t) i);
}

static void test_process(void **state)
{
        cleanup_json json_object *config = new_config(&test_spec);
        json_object *process = get(config, "process");
        json_object *args = get(process, "args");
        json_object *rl;

        (void) state;
        assert_string_equal(get_str(config, "ociVersion"), "1.0.2");
        assert_int_equal(json_object_array_length(args), 1);
        assert_string_equal(json_object_get_string(json_object_array_get_idx(args, 0)),
                            IP_INIT_PATH);
        assert_string_equal(get_str(process, "cwd"), "/");
        assert_int_equal(json_object_get_int(get(get(process, "user"), "uid")), 0);
        assert_int_equal(json_object_get_int(get(get(process, "user"), "gid")), 0);
        assert_false(json_object_get_boolean(get(process, "terminal")));
        assert_true(json_object_is_type(get(process, "noNewPrivileges"), json_type_boolean));
        assert_true(json_object_get_boolean(get(process, "noNewPrivileges")));
        assert_true(arr_has(get(process, "env"),
                            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"));

        assert_int_equal(json_object_array_length(get(process, "rlimits")), 1);
        rl = json_object_array_get_idx(get(process, "rlimits"), 0);
        assert_string_equal(get_str(rl, "type"), "RLIMIT_NOFILE");
        /* 65536, or the agent's own hard limit when that is lower (no CAP_SYS_RESOURCE). */
        struct rlimit own;
        assert_int_equal(getrlimit(RLIMIT_NOFILE, &own), 0);
        int64_t want = own.rlim_max != RLIM_INFINITY && own.rlim_max < 65536
                               ? (int64_t) own.rlim_max
                               : 65536;
        assert_int_equal(json_object_get_int64(get(rl, "soft")), want);
        assert_int_equal(json_object_get_int64(get(rl, "hard")), want);

        assert_string_equal(get_str(get(config, "root"), "path"), test_spec.rootfs);
        assert_false(json_object_get_boolean(get(get(config, "root"), "readonly")));
        assert_string_equal(get_str(config, "hostname"), test_spec.id);
}

static void test_capabilities(void **state)
{
        cleanup_json json_object *config = new_config(&test_spec);
        json_object *caps = get(get(config, "process"), "capabilities");
        static const char *const full_sets[] = {"bounding", "effective", "permitted"};

        (void) state;
        for (size_t i = 0; i < ARRAY_SIZE(full_sets); i++) {
                json_object *set = get(caps, full_sets[i]);

                assert_int_equal(json_object_array_length(set), ARRAY_SIZE(allowed_caps));
                for (size_t j = 0; j < json_object_array_length(set); j++) {
                        const char *c = json_object_get_string(json_object_array_get_idx(set, j));
                        if (!in_list(c, allowed_caps, ARRAY_SIZE(allowed_caps)))
                                fail_msg("%s holds %s", full_sets[i], c);
                }
                for (size_t j = 0; j < ARRAY_SIZE(allowed_caps); j++)
                        assert_true(arr_has(set, allowed_caps[j]));
        }
        assert_int_equal(json_object_array_length(get(caps, "inheritable")), 0);
        assert_int_equal(json_object_array_length(get(caps, "ambient")), 0);
        /* anything that would undo the confinement */
        assert_false(arr_has(get(caps, "bounding"), "CAP_SYS_ADMIN"));
        assert_false(arr_has(get(caps, "bounding"), "CAP_NET_RAW"));
        assert_false(arr_has(get(caps, "bounding"), "CAP_SYS_PTRACE"));
}

static void test_namespaces(void **state)
{
        cleanup_json json_object *config = new_config(&test_spec);
        json_object *linux_ = get(config, "linux");
        json_object *ns = get(linux_, "namespaces");
        static const char *const want[] = {"pid", "ipc", "uts", "mount", "network", "cgroup"};

        (void) state;
        assert_int_equal(json_object_array_length(ns), ARRAY_SIZE(want));
        for (size_t i = 0; i < ARRAY_SIZE(want); i++) {
                bool found = false;

                for (size_t j = 0; j < json_object_array_length(ns); j++) {
                        json_object *n = json_object_array_get_idx(ns, j);

                        if (streq(get_str(n, "type"), want[i])) {
                                /* no path: a new namespace, not joined */
                                assert_false(json_object_object_get_ex(n, "path", NULL));
                                found = true;
                        }
                }
                if (!found)
                        fail_msg("no %s namespace", want[i]);
        }
        assert_string_equal(get_str(linux_, "cgroupsPath"), test_spec.cgroups_path);
        assert_string_equal(get_str(linux_, "rootfsPropagation"), "private");

        json_object *devs = get(get(linux_, "resources"), "devices");
        assert_int_equal(json_object_array_length(devs), 1);
        assert_false(json_object_get_boolean(get(json_object_array_get_idx(devs, 0), "allow")));
        assert_string_equal(get_str(json_object_array_get_idx(devs, 0), "access"), "rwm");
}

/* The shape only: which paths must be masked is a property of the running
 * sandbox, checked there (tests/integration/test_isolation.py reads each one
 * inside a sandbox), not a second copy of bundle.c's list. */
static void test_masked_readonly(void **state)
{
        cleanup_json json_object *config = new_config(&test_spec);
        json_object *linux_ = get(config, "linux");
        static const char *const keys[] = {"maskedPaths", "readonlyPaths"};

        (void) state;
        for (size_t k = 0; k < ARRAY_SIZE(keys); k++) {
                json_object *a = get(linux_, keys[k]);
                assert_true(json_object_is_type(a, json_type_array));
                size_t n = json_object_array_length(a);
                assert_true(n > 0);
                for (size_t i = 0; i < n; i++) {
                        const char *p = json_object_get_string(json_object_array_get_idx(a, i));
                        assert_non_null(p);
                        assert_int_equal(p[0], '/');
                        for (size_t j = 0; j < i; j++)
                                assert_string_not_equal(
                                        p, json_object_get_string(json_object_array_get_idx(a, j)));
                }
        }
}

static void test_mounts(void **state)
{
        cleanup_json json_object *config = new_config(&test_spec);
        int ctl = mount_index(config, IP_CONTROL_DIR);
        int init = mount_index(config, IP_INIT_PATH);
        json_object *m;

        (void) state;
        assert_true(ctl >= 0);
        assert_true(init > ctl);

        m = mount_at(config, IP_CONTROL_DIR);
        assert_string_equal(get_str(m, "source"), test_spec.control_dir);
        assert_true(arr_has(get(m, "options"), "bind"));
        assert_true(arr_has(get(m, "options"), "ro")); /* issue 16: no writes, no swapped socket */
        assert_false(arr_has(get(m, "options"), "rw"));
        assert_true(arr_has(get(m, "options"), "nosuid"));
        assert_true(arr_has(get(m, "options"), "nodev"));
        assert_true(arr_has(get(m, "options"), "noexec"));
        assert_false(arr_has(get(m, "options"), "rbind"));

        m = mount_at(config, IP_INIT_PATH);
        assert_string_equal(get_str(m, "source"), test_spec.init_binary);
        assert_true(arr_has(get(m, "options"), "bind"));
        assert_true(arr_has(get(m, "options"), "ro"));
        assert_true(arr_has(get(m, "options"), "nosuid"));
        assert_true(arr_has(get(m, "options"), "nodev"));
        assert_false(arr_has(get(m, "options"), "noexec")); /* it is exec'd */

        STRV_FOREACH(p, test_spec.ro_binds) {
                m = mount_at(config, *p);
                assert_string_equal(get_str(m, "source"), *p);
                assert_true(arr_has(get(m, "options"), "rbind"));
                assert_true(arr_has(get(m, "options"), "ro"));
                assert_true(arr_has(get(m, "options"), "nosuid"));
                assert_true(arr_has(get(m, "options"), "nodev"));
                assert_false(arr_has(get(m, "options"), "rw"));
        }

        m = mount_at(config, "/etc/resolv.conf");
        assert_string_equal(get_str(m, "source"), test_spec.resolv_conf);
        assert_true(arr_has(get(m, "options"), "ro"));

        assert_string_equal(get_str(mount_at(config, "/proc"), "type"), "proc");
        assert_string_equal(get_str(mount_at(config, "/dev"), "type"), "tmpfs");
        assert_true(arr_has(get(mount_at(config, "/dev/pts"), "options"), "newinstance"));
        assert_true(arr_has(get(mount_at(config, "/dev/shm"), "options"), "noexec"));
        assert_string_equal(get_str(mount_at(config, "/dev/mqueue"), "type"), "mqueue");
        assert_true(arr_has(get(mount_at(config, "/sys"), "options"), "ro"));
}

static void test_mounts_optional(void **state)
{
        BundleSpec spec = test_spec;
        cleanup_json json_object *config = NULL;
        size_t n;

        (void) state;
        spec.ro_binds = NULL;
        spec.resolv_conf = NULL;
        config = new_config(&spec);
        n = json_object_array_length(get(config, "mounts"));
        /* proc, dev, pts, shm, mqueue, sys, control, init */
        assert_int_equal(n, 8);
        assert_int_equal(mount_index(config, "/etc/resolv.conf"), -1);
        assert_int_equal(mount_index(config, IP_INIT_PATH), 7);
}

/* Every syscall name an ALLOW rule lets through, whatever its conditions. */
static bool seccomp_allows(json_object *seccomp, const char *name, bool *ret_unconditional)
{
        json_object *syscalls = get(seccomp, "syscalls");
        bool found = false;

        *ret_unconditional = false;
        for (size_t i = 0; i < json_object_array_length(syscalls); i++) {
                json_object *rule = json_object_array_get_idx(syscalls, i);

                if (!streq(get_str(rule, "action"), "SCMP_ACT_ALLOW"))
                        continue;
                if (!arr_has(get(rule, "names"), name))
                        continue;
                found = true;
                if (!json_object_object_get_ex(rule, "args", NULL))
                        *ret_unconditional = true;
        }
        return found;
}

static json_object *seccomp_rule_for(json_object *seccomp, const char *name)
{
        json_object *syscalls = get(seccomp, "syscalls");

        for (size_t i = 0; i < json_object_array_length(syscalls); i++) {
                json_object *rule = json_object_array_get_idx(syscalls, i);

                if (arr_has(get(rule, "names"), name))
                        return rule;
        }
        fail_msg("no rule names %s", name);
        return NULL;
}

static void test_seccomp(void **state)
{
        cleanup_json json_object *config = new_config(&test_spec);
        json_object *seccomp = get(get(config, "linux"), "seccomp");
        static const char *const forbidden[] = {
                "mount",
                "umount",
                "umount2",
                "pivot_root",
                "unshare",
                "setns",
                "keyctl",
                "add_key",
                "request_key",
                "bpf",
                "perf_event_open",
                "userfaultfd",
                "kexec_load",
                "kexec_file_load",
                "init_module",
                "finit_module",
                "delete_module",
                "reboot",
                "swapon",
                "swapoff",
                "open_by_handle_at",
                "io_uring_setup",
                "io_uring_enter",
                "io_uring_register",
                "ptrace",
                "process_vm_readv",
                "process_vm_writev",
                "acct",
                "quotactl",
                "clock_settime",
                "settimeofday",
                "adjtimex",
                "clock_adjtime",
                "syslog",
                "chroot",
                "fsopen",
                "move_mount",
                "open_tree",
                "sethostname",
        };
        static const char *const needed[] = {"read", "write", "execve", "openat",
                                             "mmap", "futex", "wait4",  "exit_group"};
        bool unconditional;
        json_object *rule, *arg;

        (void) state;
        assert_string_equal(get_str(seccomp, "defaultAction"), "SCMP_ACT_ERRNO");
        assert_int_equal(json_object_get_int(get(seccomp, "defaultErrnoRet")), EPERM);
#if defined(__x86_64__)
        assert_true(arr_has(get(seccomp, "architectures"), "SCMP_ARCH_X86_64"));
        assert_true(arr_has(get(seccomp, "architectures"), "SCMP_ARCH_X86"));
        assert_true(arr_has(get(seccomp, "architectures"), "SCMP_ARCH_X32"));
#endif
        for (size_t i = 0; i < ARRAY_SIZE(forbidden); i++)
                if (seccomp_allows(seccomp, forbidden[i], &unconditional))
                        fail_msg("seccomp allows %s", forbidden[i]);
        for (size_t i = 0; i < ARRAY_SIZE(needed); i++) {
                assert_true(seccomp_allows(seccomp, needed[i], &unconditional));
                assert_true(unconditional);
        }

        /* clone only without namespace flags */
        assert_true(seccomp_allows(seccomp, "clone", &unconditional));
        assert_false(unconditional);
        rule = seccomp_rule_for(seccomp, "clone");
        assert_int_equal(json_object_array_length(get(rule, "args")), 1);
        arg = json_object_array_get_idx(get(rule, "args"), 0);
        assert_string_equal(get_str(arg, "op"), "SCMP_CMP_MASKED_EQ");
        assert_int_equal(json_object_get_int(get(arg, "index")), 0);
        assert_int_equal(json_object_get_uint64(get(arg, "value")), 0x7E020000u);
        assert_int_equal(json_object_get_uint64(get(arg, "valueTwo")), 0);

        /* clone3 fails with ENOSYS so glibc falls back to clone */
        rule = seccomp_rule_for(seccomp, "clone3");
        assert_string_equal(get_str(rule, "action"), "SCMP_ACT_ERRNO");
        assert_int_equal(json_object_get_int(get(rule, "errnoRet")), ENOSYS);

        /* personality only with argument rules; socket never for AF_VSOCK */
        assert_true(seccomp_allows(seccomp, "personality", &unconditional));
        assert_false(unconditional);
        assert_true(seccomp_allows(seccomp, "socket", &unconditional));
        assert_false(unconditional);
}

static void test_seccomp_shared(void **state)
{
        cleanup_json json_object *a = new_config(&test_spec);
        cleanup_json json_object *b = new_config(&test_spec);

        (void) state;
        assert_ptr_equal(get(get(a, "linux"), "seccomp"), get(get(b, "linux"), "seccomp"));
}

static void test_invalid_spec(void **state)
{
        char *bad_binds[] = {"usr", NULL};
        char *root_bind[] = {"/", NULL};
        json_object *config = NULL;
        BundleSpec s;

        (void) state;
        assert_int_equal(bundle_config_new(NULL, &config), -EINVAL);
        s = test_spec;
        s.rootfs = "relative/rootfs";
        assert_int_equal(bundle_config_new(&s, &config), -EINVAL);
        s = test_spec;
        s.id = "bad/id";
        assert_int_equal(bundle_config_new(&s, &config), -EINVAL);
        s = test_spec;
        s.id = "";
        assert_int_equal(bundle_config_new(&s, &config), -EINVAL);
        s = test_spec;
        s.init_binary = NULL;
        assert_int_equal(bundle_config_new(&s, &config), -EINVAL);
        s = test_spec;
        s.cgroups_path = "";
        assert_int_equal(bundle_config_new(&s, &config), -EINVAL);
        s = test_spec;
        s.ro_binds = bad_binds;
        assert_int_equal(bundle_config_new(&s, &config), -EINVAL);
        s = test_spec;
        s.ro_binds = root_bind;
        assert_int_equal(bundle_config_new(&s, &config), -EINVAL);
        assert_null(config);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
        (void) st;
        (void) flag;
        (void) ftw;
        (void) remove(path);
        return 0;
}

static void rm_rf(const char *path)
{
        (void) nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
}

static void test_write(void **state)
{
        char dir[] = "/tmp/sandpit-bundle-XXXXXX";
        cleanup_free char *path = NULL;
        cleanup_json json_object *parsed = NULL;
        cleanup_json json_object *expect = new_config(&test_spec);
        struct stat st;
        DIR *d;
        int entries = 0;
        mode_t old_umask;

        (void) state;
        assert_non_null(mkdtemp(dir));
        assert_true(asprintf(&path, "%s/config.json", dir) > 0);

        old_umask = umask(0);
        assert_int_equal(bundle_write(dir, &test_spec), 0);
        /* a rewrite replaces the file */
        assert_int_equal(bundle_write(dir, &test_spec), 0);
        (void) umask(old_umask);

        assert_int_equal(stat(path, &st), 0);
        assert_true(S_ISREG(st.st_mode));
        assert_int_equal(st.st_mode & 07777, 0600);

        parsed = json_object_from_file(path);
        assert_non_null(parsed);
        assert_true(json_object_equal(parsed, expect));

        /* no temporary file left behind */
        d = opendir(dir);
        assert_non_null(d);
        for (struct dirent *e; (e = readdir(d));)
                if (!streq(e->d_name, ".") && !streq(e->d_name, ".."))
                        entries++;
        (void) closedir(d);
        assert_int_equal(entries, 1);

        rm_rf(dir);
}

static void test_write_missing_dir(void **state)
{
        (void) state;
        assert_int_equal(bundle_write("/nonexistent/sandpit/bundle", &test_spec), -ENOENT);
        assert_int_equal(bundle_write(NULL, &test_spec), -EINVAL);
}

static double now_us(void)
{
        struct timespec ts;

        (void) clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double) ts.tv_sec * 1e6 + (double) ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
        double x = *(const double *) a, y = *(const double *) b;

        return (x > y) - (x < y);
}

/* Not a pass/fail check beyond a generous bound: it reports the per-sandbox cost
 * of building and serialising a config, as medians (the box may be busy). */
static void test_build_time(void **state)
{
        enum { N = 2000 };
        static double build_us[N], serial_us[N];
        size_t bytes = 0;

        (void) state;
        for (int i = 0; i < N; i++) {
                double t0 = now_us(), t1, t2;
                cleanup_json json_object *config = new_config(&test_spec);

                t1 = now_us();
                assert_non_null(json_object_to_json_string_length(
                        config, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &bytes));
                t2 = now_us();
                build_us[i] = t1 - t0;
                serial_us[i] = t2 - t1;
        }
        qsort(build_us, N, sizeof(double), cmp_double);
        qsort(serial_us, N, sizeof(double), cmp_double);
        print_message("bundle_config_new %.1f us + serialisation %.1f us per config, medians of "
                      "%d (%zu bytes)\n",
                      build_us[N / 2], serial_us[N / 2], N, bytes);
        assert_true(build_us[N / 2] + serial_us[N / 2] < 5000.0);
}

/* ---- the real check: runc runs a process under this config ---- */

#define CGROUP_PARENT "sandpit-bundletest"

static bool runc_on_path(void)
{
        const char *path = getenv("PATH");
        cleanup_free char *copy = NULL;
        char *save = NULL;

        if (!path)
                return false;
        copy = strdup(path);
        assert_non_null(copy);
        for (char *d = strtok_r(copy, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
                cleanup_free char *p = NULL;

                assert_true(asprintf(&p, "%s/runc", d) > 0);
                if (access(p, X_OK) == 0)
                        return true;
        }
        return false;
}

/* Runs argv with stdin from /dev/null and stdout+stderr into log; returns the
 * exit status, or -1 when it was killed (after timeout_s it is). */
static int run_logged(char *const argv[], const char *log, int timeout_s)
{
        pid_t pid = fork();
        int status = 0;

        assert_true(pid >= 0);
        if (pid == 0) {
                int in = open("/dev/null", O_RDONLY | O_CLOEXEC);
                int out = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);

                if (in < 0 || out < 0 || dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(out, 2) < 0)
                        _exit(127);
                execvp(argv[0], argv);
                _exit(127);
        }
        for (int i = 0; i < timeout_s * 10; i++) {
                pid_t w = waitpid(pid, &status, WNOHANG);

                assert_true(w >= 0);
                if (w == pid)
                        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
                (void) usleep(100 * 1000);
        }
        (void) kill(pid, SIGKILL);
        (void) waitpid(pid, &status, 0);
        return -1;
}

static void print_file(const char *path)
{
        char buf[4096];
        FILE *f = fopen(path, "re");
        size_t n;

        if (!f)
                return;
        while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
                print_message("%.*s", (int) n, buf);
        (void) fclose(f);
}

static void cgroups_remove(const char *const *ids, size_t n)
{
        DIR *d = opendir("/sys/fs/cgroup");

        if (!d)
                return;
        for (struct dirent *e; (e = readdir(d));) {
                char p[PATH_MAX];

                if (e->d_name[0] == '.')
                        continue;
                for (size_t i = 0; i < n; i++) {
                        (void) snprintf(p, sizeof(p), "/sys/fs/cgroup/%s/" CGROUP_PARENT "/%s",
                                        e->d_name, ids[i]);
                        (void) rmdir(p);
                }
                (void) snprintf(p, sizeof(p), "/sys/fs/cgroup/%s/" CGROUP_PARENT, e->d_name);
                (void) rmdir(p);
        }
        /* a cgroup v2-only host */
        for (size_t i = 0; i < n; i++) {
                char p[PATH_MAX];

                (void) snprintf(p, sizeof(p), "/sys/fs/cgroup/" CGROUP_PARENT "/%s", ids[i]);
                (void) rmdir(p);
        }
        (void) rmdir("/sys/fs/cgroup/" CGROUP_PARENT);
        (void) closedir(d);
}

/* What the second run checks from inside: the kernel sees the config's
 * confinement, not just runc's acceptance of it. 0x4fb is the eight kept
 * capabilities (bits 0 1 3 4 5 6 7 10). */
static const char check_script[] =
        "grep -q '^NoNewPrivs:[[:space:]]*1$' /proc/self/status || exit 11\n"
        "grep -q '^Seccomp:[[:space:]]*2$' /proc/self/status || exit 12\n"
        "grep -q '^CapEff:[[:space:]]*00000000000004fb$' /proc/self/status || exit 13\n"
        "grep -q '^CapBnd:[[:space:]]*00000000000004fb$' /proc/self/status || exit 14\n"
        "test -x " IP_INIT_PATH " || exit 15\n"
        "touch /usr/.sandpit-probe 2>/dev/null && exit 16\n"
        "touch " IP_CONTROL_DIR "/probe 2>/dev/null && exit 17\n"
        "unshare -n true 2>/dev/null && exit 18\n"
        /* needs no capability, so only seccomp stops it */
        "unshare -U true 2>/dev/null && exit 20\n"
        "test \"$(hostname)\" = \"$1\" || exit 19\n"
        "exit 0\n";

static void test_runc_accepts(void **state)
{
        char base[] = "/tmp/sandpit-bundletest-XXXXXX";
        char rootfs[128], control[128], bundle[128], runc_root[128];
        char log[PATH_MAX], cfg_path[PATH_MAX], id[64], id2[64], cg[128], cg2[128];
        char true_path[PATH_MAX];
        char *ro_binds[] = {"/usr", NULL};
        static const char *const links[][2] = {{"bin", "usr/bin"},
                                               {"lib", "usr/lib"},
                                               {"lib64", "usr/lib64"},
                                               {"sbin", "usr/sbin"}};
        cleanup_json json_object *config = NULL;
        json_object *args;
        int rc, rc2;

        (void) state;
        if (geteuid() != 0) {
                print_message("skipping the runc check: needs root\n");
                skip();
        }
        if (!runc_on_path()) {
                print_message("skipping the runc check: no runc on PATH\n");
                skip();
        }

        assert_non_null(mkdtemp(base));
        (void) snprintf(rootfs, sizeof(rootfs), "%s/rootfs", base);
        (void) snprintf(control, sizeof(control), "%s/control", base);
        (void) snprintf(bundle, sizeof(bundle), "%s/bundle", base);
        (void) snprintf(runc_root, sizeof(runc_root), "%s/runc", base);
        (void) snprintf(log, sizeof(log), "%s/runc.log", base);
        (void) snprintf(cfg_path, sizeof(cfg_path), "%s/config.json", bundle);
        (void) snprintf(id, sizeof(id), "bundletest-%d", (int) getpid());
        (void) snprintf(id2, sizeof(id2), "bundletest-%d-b", (int) getpid());
        (void) snprintf(cg, sizeof(cg), "/" CGROUP_PARENT "/%s", id);
        (void) snprintf(cg2, sizeof(cg2), "/" CGROUP_PARENT "/%s", id2);
        assert_int_equal(mkdir(rootfs, 0755), 0);
        assert_int_equal(mkdir(control, 0700), 0);
        {
                /* The init binary's mount point: the control dir is read-only
                 * in the container, so the agent makes it beforehand. */
                char p[PATH_MAX];
                int fd;

                (void) snprintf(p, sizeof(p), "%s/init", control);
                fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0500);
                assert_true(fd >= 0);
                (void) close(fd);
        }
        assert_int_equal(mkdir(bundle, 0700), 0);
        assert_int_equal(mkdir(runc_root, 0700), 0);
        for (size_t i = 0; i < ARRAY_SIZE(links); i++) {
                char p[PATH_MAX];

                (void) snprintf(p, sizeof(p), "%s/%s", rootfs, links[i][0]);
                assert_int_equal(symlink(links[i][1], p), 0);
        }
        /* dynamic, but its libraries come through the /usr bind */
        assert_non_null(realpath("/usr/bin/true", true_path));

        BundleSpec spec = {
                .id = id,
                .rootfs = rootfs,
                .control_dir = control,
                .init_binary = true_path,
                .cgroups_path = cg,
                .ro_binds = ro_binds,
                .resolv_conf = NULL,
        };
        assert_int_equal(bundle_write(bundle, &spec), 0);
        char *run1[] = {"runc", "--root", runc_root, "run", "--bundle", bundle, id, NULL};
        rc = run_logged(run1, log, 60);

        /* The same config with a shell script as the process, which checks the
         * confinement from inside. */
        spec.id = id2;
        spec.cgroups_path = cg2;
        assert_int_equal(bundle_config_new(&spec, &config), 0);
        args = json_object_new_array();
        assert_int_equal(json_object_array_add(args, json_object_new_string("/usr/bin/sh")), 0);
        assert_int_equal(json_object_array_add(args, json_object_new_string("-c")), 0);
        assert_int_equal(json_object_array_add(args, json_object_new_string(check_script)), 0);
        assert_int_equal(json_object_array_add(args, json_object_new_string("sh")), 0);
        assert_int_equal(json_object_array_add(args, json_object_new_string(id2)), 0);
        assert_int_equal(json_object_object_add(get(config, "process"), "args", args), 0);
        assert_int_equal(json_object_to_file_ext(cfg_path, config, JSON_C_TO_STRING_PLAIN), 0);
        char *run2[] = {"runc", "--root", runc_root, "run", "--bundle", bundle, id2, NULL};
        rc2 = run_logged(run2, log, 60);

        if (rc != 0 || rc2 != 0) {
                print_message("runc exit statuses %d (init) and %d (checks); its output:\n", rc,
                              rc2);
                print_file(log);
        }
        /* clean up before asserting so a failure leaves nothing behind */
        char *del1[] = {"runc", "--root", runc_root, "delete", "--force", id, NULL};
        char *del2[] = {"runc", "--root", runc_root, "delete", "--force", id2, NULL};
        (void) run_logged(del1, "/dev/null", 30);
        (void) run_logged(del2, "/dev/null", 30);
        const char *const ids[] = {id, id2};
        cgroups_remove(ids, ARRAY_SIZE(ids));
        rm_rf(base);

        assert_int_equal(rc, 0);
        assert_int_equal(rc2, 0);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_process),
                cmocka_unit_test(test_capabilities),
                cmocka_unit_test(test_namespaces),
                cmocka_unit_test(test_masked_readonly),
                cmocka_unit_test(test_mounts),
                cmocka_unit_test(test_mounts_optional),
                cmocka_unit_test(test_seccomp),
                cmocka_unit_test(test_seccomp_shared),
                cmocka_unit_test(test_invalid_spec),
                cmocka_unit_test(test_write),
                cmocka_unit_test(test_write_missing_dir),
                cmocka_unit_test(test_build_time),
                cmocka_unit_test(test_runc_accepts),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}

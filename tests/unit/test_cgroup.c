/* cgroup module: parsers, both backends against fake cgroupfs trees in a temp directory, and,
 * as root on a cgroup v1 host, the real thing under /sys/fs/cgroup/<c>/sandpit-unittest-<pid>. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <libcgroup.h>

#include "cgroup-internal.h"
#include "cgroup.h"
#include "sandpit/macro.h"

#define MIB (UINT64_C(1) << 20)

/* ---- helpers ---- */

static char tree[64];

/* rel's path in the fake tree; valid until the next call. */
static const char *at(const char *rel)
{
        static char p[512];

        (void) snprintf(p, sizeof(p), "%s/%s", tree, rel);
        return p;
}

static void put(const char *rel, const char *content)
{
        FILE *f = fopen(at(rel), "we");

        assert_non_null(f);
        assert_int_equal(fputs(content, f) >= 0, 1);
        assert_int_equal(fclose(f), 0);
}

static void drop(const char *rel)
{
        assert_int_equal(unlink(at(rel)), 0);
}

static void dir(const char *rel)
{
        assert_int_equal(mkdir(at(rel), 0755), 0);
}

/* Content of an absolute path, or NULL when missing. Caller frees. */
static char *slurp_abs(const char *p)
{
        FILE *f = fopen(p, "re");
        char *buf = NULL;
        size_t len = 0;

        if (!f)
                return NULL;
        buf = calloc(1, 4096);
        assert_non_null(buf);
        len = fread(buf, 1, 4095, f);
        buf[len] = '\0';
        (void) fclose(f);
        return buf;
}

static char *slurp(const char *rel)
{
        return slurp_abs(at(rel));
}

static void assert_file(const char *rel, const char *want)
{
        cleanup_free char *got = slurp(rel);

        if (!got)
                fail_msg("%s missing", rel);
        assert_string_equal(got, want);
}

static bool present(const char *rel)
{
        return access(at(rel), F_OK) == 0;
}

/* Every field of got against want, named in the failure. */
static void assert_stats(const CgStats *got, const CgStats *want)
{
#define STAT_EQ(f)                                                                                \
        do {                                                                                      \
                if (got->f != want->f)                                                            \
                        fail_msg("CgStats." #f ": %" PRIu64 ", want %" PRIu64, (uint64_t) got->f, \
                                 (uint64_t) want->f);                                             \
        } while (0)
        STAT_EQ(cpu_usage_ns);
        STAT_EQ(cpu_quota_us);
        STAT_EQ(cpu_period_us);
        STAT_EQ(memory_current);
        STAT_EQ(memory_peak);
        STAT_EQ(memory_limit);
        STAT_EQ(oom_kills);
        STAT_EQ(pids_current);
        STAT_EQ(pids_limit);
#undef STAT_EQ
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
        (void) st;
        (void) flag;
        (void) ftw;
        return remove(p);
}

static int tree_setup(void **state)
{
        (void) state;
        (void) snprintf(tree, sizeof(tree), "/tmp/test_cgroup.XXXXXX");
        return mkdtemp(tree) ? 0 : -1;
}

static int tree_teardown(void **state)
{
        (void) state;
        return nftw(tree, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static bool strv_contains(char **v, const char *s)
{
        STRV_FOREACH(i, v)
                if (streq(*i, s))
                        return true;
        return false;
}

static size_t strv_len(char **v)
{
        size_t n = 0;

        STRV_FOREACH(i, v)
                n++;
        return n;
}

static pid_t spawn_sleeper(void)
{
        pid_t pid = fork();

        assert_true(pid >= 0);
        if (pid == 0) {
                for (;;)
                        pause();
        }
        return pid;
}

static int reap(pid_t pid)
{
        int status = 0;

        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFSIGNALED(status));
        return WTERMSIG(status);
}

/* ---- pure helpers ---- */

static void test_cpu_quota(void **state)
{
        uint32_t q = 7;

        (void) state;
        assert_int_equal(cg_cpu_quota_us(0, &q), 0);
        assert_int_equal(q, 0);
        assert_int_equal(cg_cpu_quota_us(0.5, &q), 0);
        assert_int_equal(q, 50000);
        assert_int_equal(cg_cpu_quota_us(2.25, &q), 0);
        assert_int_equal(q, 225000);
        assert_int_equal(cg_cpu_quota_us(0.001, &q), 0);
        assert_int_equal(q, 1000); /* the kernel's minimum */
        assert_int_equal(cg_cpu_quota_us(-1, &q), -EINVAL);
        assert_int_equal(cg_cpu_quota_us(NAN, &q), -EINVAL);
        assert_int_equal(cg_cpu_quota_us(1e9, &q), -ERANGE);
}

static void test_parsers(void **state)
{
        uint64_t v = 0;
        uint32_t quota = 1, period = 0;

        (void) state;
        assert_int_equal(cg_parse_u64("123\n", &v), 0);
        assert_int_equal(v, 123);
        assert_int_equal(cg_parse_u64("", &v), -EINVAL);
        assert_int_equal(cg_parse_u64("-5", &v), -EINVAL);
        assert_int_equal(cg_parse_u64("12x", &v), -EINVAL);
        assert_int_equal(cg_parse_limit("max\n", &v), 0);
        assert_int_equal(v, 0);
        assert_int_equal(cg_parse_limit("-1\n", &v), 0);
        assert_int_equal(v, 0);
        assert_int_equal(cg_parse_limit("4096\n", &v), 0);
        assert_int_equal(v, 4096);
        assert_int_equal(cg_parse_limit("maxi", &v), -EINVAL);

        /* oom_kill must not match oom_kill_disable. */
        assert_int_equal(
                cg_parse_keyed("oom_kill_disable 1\nunder_oom 0\noom_kill 3\n", "oom_kill", &v), 0);
        assert_int_equal(v, 3);
        assert_int_equal(cg_parse_keyed("usage_usec 42", "usage_usec", &v), 0);
        assert_int_equal(v, 42);
        assert_int_equal(cg_parse_keyed("oom 1\n", "oom_kill", &v), -ENOENT);
        assert_int_equal(cg_parse_keyed("", "x", &v), -ENOENT);

        assert_int_equal(cg_parse_cpu_max("max 100000\n", &quota, &period), 0);
        assert_int_equal(quota, 0);
        assert_int_equal(period, 100000);
        assert_int_equal(cg_parse_cpu_max("50000 100000\n", &quota, &period), 0);
        assert_int_equal(quota, 50000);
        assert_int_equal(cg_parse_cpu_max("50000", &quota, &period), -EINVAL);
}

static void test_parse_pids(void **state)
{
        cleanup_free pid_t *pids = NULL;
        pid_t *bad = NULL;
        size_t n = 0;

        (void) state;
        assert_int_equal(cg_parse_pids("1\n22\n333\n", &pids, &n), 0);
        assert_int_equal(n, 3);
        assert_int_equal(pids[0], 1);
        assert_int_equal(pids[2], 333);
        assert_int_equal(cg_parse_pids("1\nx\n", &bad, &n), -EINVAL);
        assert_null(bad);
}

/* ---- v2 on a fake tree ---- */

static void v2_tree(const char *root_controllers)
{
        put("cgroup.controllers", root_controllers);
        put("cgroup.subtree_control", "");
        dir("sandpit");
        put("sandpit/cgroup.controllers", "cpu memory pids\n");
        put("sandpit/cgroup.subtree_control", "");
}

static CgManager *v2_manager(void)
{
        CgManager *m = NULL;

        v2_tree("cpuset cpu io memory hugetlb pids rdma misc\n");
        assert_int_equal(cg_manager_new_at(CG_VERSION_AUTO, NULL, tree, &m), 0);
        assert_int_equal(cg_manager_version(m), CG_VERSION_V2);
        return m;
}

static void test_v2_setup_enables_controllers(void **state)
{
        CgManager *m = NULL;

        (void) state;
        m = v2_manager();
        assert_file("cgroup.subtree_control", "+cpu +memory +pids");
        assert_file("sandpit/cgroup.subtree_control", "+cpu +memory +pids");
        cg_manager_free(m);

        /* Already enabled (as the kernel shows it): nothing is rewritten. */
        put("sandpit/cgroup.subtree_control", "cpu io memory pids\n");
        assert_int_equal(cg_manager_new_at(CG_VERSION_V2, "sandpit", tree, &m), 0);
        assert_file("sandpit/cgroup.subtree_control", "cpu io memory pids\n");
        cg_manager_free(m);
}

static void test_v2_setup_missing_controller(void **state)
{
        CgManager *m = NULL;

        (void) state;
        v2_tree("cpu memory\n");
        assert_int_equal(cg_manager_new_at(CG_VERSION_V2, NULL, tree, &m), -ENODEV);
        assert_null(m);
}

static void test_v2_create_update(void **state)
{
        CgManager *m = NULL;
        CgLimits l = {.cpu_cores = 1.5, .memory_bytes = 256 * MIB, .pids_max = 100};
        cleanup_free char *rp = NULL;

        (void) state;
        m = v2_manager();
        assert_int_equal(cg_create(m, "box", &l), 0);
        assert_file("sandpit/box/cpu.max", "150000 100000");
        assert_file("sandpit/box/memory.max", "268435456");
        assert_file("sandpit/box/memory.swap.max", "0");
        assert_file("sandpit/box/pids.max", "100");
        assert_int_equal(cg_create(m, "box", &l), -EEXIST);

        l = (CgLimits){0};
        assert_int_equal(cg_update(m, "box", &l), 0);
        assert_file("sandpit/box/cpu.max", "max 100000");
        assert_file("sandpit/box/memory.max", "max");
        assert_file("sandpit/box/pids.max", "max");
        assert_int_equal(cg_update(m, "nobox", &l), -ENOENT);

        assert_int_equal(cg_runtime_path(m, "box", &rp), 0);
        assert_string_equal(rp, "/sandpit/box");

        l.cpu_cores = -2;
        assert_int_equal(cg_create(m, "neg", &l), -EINVAL);
        assert_false(present("sandpit/neg"));
        assert_int_equal(cg_create(m, "../x", &l), -EINVAL);
        assert_int_equal(cg_create(m, "a/b", &l), -EINVAL);
        assert_int_equal(cg_create(m, "", &l), -EINVAL);
        assert_int_equal(cg_create(m, "..", &l), -EINVAL);
        cg_manager_free(m);
}

static void test_v2_stats(void **state)
{
        CgManager *m = NULL;
        CgLimits l = {.cpu_cores = 0.5, .memory_bytes = 64 * MIB, .pids_max = 64};
        CgStats s = {0};

        (void) state;
        m = v2_manager();
        assert_int_equal(cg_create(m, "box", &l), 0);
        put("sandpit/box/cpu.stat", "usage_usec 2500\nuser_usec 2000\nsystem_usec 500\n");
        put("sandpit/box/memory.current", "1048576\n");
        put("sandpit/box/memory.peak", "2097152\n");
        put("sandpit/box/memory.events",
            "low 0\nhigh 0\nmax 4\noom 2\noom_kill 1\noom_group_kill 0\n");
        put("sandpit/box/pids.current", "3\n");
        assert_int_equal(cg_read_stats(m, "box", &s), 0);
        CgStats want = {.cpu_usage_ns = 2500000,
                        .cpu_quota_us = 50000,
                        .cpu_period_us = 100000,
                        .memory_current = 1048576,
                        .memory_peak = 2097152,
                        .memory_limit = 64 * MIB,
                        .oom_kills = 1,
                        .pids_current = 3,
                        .pids_limit = 64};
        assert_stats(&s, &want);

        /* Older kernels: no memory.peak, no oom_kill line; "max" limits read as 0. */
        drop("sandpit/box/memory.peak");
        put("sandpit/box/memory.events", "low 0\nhigh 0\nmax 0\noom 0\n");
        put("sandpit/box/memory.max", "max\n");
        put("sandpit/box/pids.max", "max\n");
        put("sandpit/box/cpu.max", "max 100000\n");
        assert_int_equal(cg_read_stats(m, "box", &s), 0);
        want.memory_peak = want.oom_kills = want.memory_limit = want.pids_limit = 0;
        want.cpu_quota_us = 0;
        assert_stats(&s, &want);

        s.pids_current = 99;
        assert_int_equal(cg_read_stats(m, "nobox", &s), -ENOENT);
        assert_int_equal(s.pids_current, 99); /* untouched on failure */
        cg_manager_free(m);
}

static void test_v2_kill_destroy_list(void **state)
{
        CgManager *m = NULL;
        CgLimits l = {0};
        cleanup_strv char **ids = NULL;
        cleanup_strv char **after = NULL;
        char procs[32];
        pid_t pid;

        (void) state;
        m = v2_manager();
        assert_int_equal(cg_create(m, "a", &l), 0);
        assert_int_equal(cg_create(m, "b", &l), 0);
        assert_int_equal(cg_list(m, &ids), 0);
        assert_int_equal(strv_len(ids), 2);
        assert_true(strv_contains(ids, "a"));
        assert_true(strv_contains(ids, "b"));

        /* Without cgroup.kill every pid in cgroup.procs gets the signal. */
        pid = spawn_sleeper();
        (void) snprintf(procs, sizeof(procs), "%d\n", (int) pid);
        put("sandpit/a/cgroup.procs", procs);
        assert_int_equal(cg_kill_all(m, "a", SIGTERM), 0);
        assert_int_equal(reap(pid), SIGTERM);
        put("sandpit/a/cgroup.procs", "");

        /* With cgroup.kill, SIGKILL goes through it. */
        put("sandpit/b/cgroup.kill", "");
        assert_int_equal(cg_kill_all(m, "b", SIGKILL), 0);
        assert_file("sandpit/b/cgroup.kill", "1");
        assert_int_equal(cg_kill_all(m, "nobox", SIGTERM), -ENOENT);

        assert_int_equal(cg_destroy(m, "a"), 0);
        assert_false(present("sandpit/a"));
        assert_int_equal(cg_destroy(m, "a"), 0); /* already gone */
        assert_int_equal(cg_list(m, &after), 0);
        assert_int_equal(strv_len(after), 1);
        assert_true(strv_contains(after, "b"));
        assert_int_equal(cg_destroy(m, "b"), 0);
        assert_false(present("sandpit/b"));
        assert_true(present("sandpit"));
        cg_manager_free(m);
}

static void test_v2_freeze(void **state)
{
        CgManager *m = NULL;
        CgLimits l = {0};

        (void) state;
        m = v2_manager();
        assert_int_equal(cg_create(m, "box", &l), 0);
        put("sandpit/box/cgroup.events", "populated 1\nfrozen 1\n");
        assert_int_equal(cg_freeze(m, "box", true), 0);
        assert_file("sandpit/box/cgroup.freeze", "1");
        put("sandpit/box/cgroup.events", "populated 1\nfrozen 0\n");
        assert_int_equal(cg_freeze(m, "box", false), 0);
        assert_file("sandpit/box/cgroup.freeze", "0");
        cg_manager_free(m);
}

static void test_v2_nested_parent(void **state)
{
        CgManager *m = NULL;
        cleanup_free char *rp = NULL;

        (void) state;
        put("cgroup.controllers", "cpu memory pids\n");
        put("cgroup.subtree_control", "cpu memory pids\n");
        dir("k8s");
        put("k8s/cgroup.controllers", "cpu memory pids\n");
        put("k8s/cgroup.subtree_control", "memory\n");
        dir("k8s/sandpit");
        put("k8s/sandpit/cgroup.controllers", "cpu memory pids\n");
        put("k8s/sandpit/cgroup.subtree_control", "");
        assert_int_equal(cg_manager_new_at(CG_VERSION_V2, "/k8s/sandpit/", tree, &m), 0);
        assert_file("cgroup.subtree_control", "cpu memory pids\n");
        assert_file("k8s/cgroup.subtree_control", "+cpu +pids");
        assert_file("k8s/sandpit/cgroup.subtree_control", "+cpu +memory +pids");
        assert_int_equal(cg_runtime_path(m, "box", &rp), 0);
        assert_string_equal(rp, "/k8s/sandpit/box");
        cg_manager_free(m);
        assert_int_equal(cg_manager_new_at(CG_VERSION_V2, "a/../b", tree, &m), -EINVAL);
}

/* ---- v1 on a fake tree ---- */

static CgManager *v1_manager(void)
{
        static const char *const hier[] = {"cpu", "cpuacct", "memory", "pids", "freezer", "cpuset"};
        CgManager *m = NULL;

        for (size_t i = 0; i < ARRAY_SIZE(hier); i++)
                dir(hier[i]);
        assert_int_equal(cg_manager_new_at(CG_VERSION_AUTO, NULL, tree, &m), 0);
        assert_int_equal(cg_manager_version(m), CG_VERSION_V1);
        assert_true(present("memory/sandpit"));
        assert_true(present("freezer/sandpit"));
        return m;
}

static void test_v1_create_update(void **state)
{
        CgManager *m = NULL;
        CgLimits l = {.cpu_cores = 0.5, .memory_bytes = 128 * MIB, .pids_max = 32};

        (void) state;
        m = v1_manager();
        assert_int_equal(cg_create(m, "box", &l), 0);
        assert_file("cpu/sandpit/box/cpu.cfs_period_us", "100000");
        assert_file("cpu/sandpit/box/cpu.cfs_quota_us", "50000");
        assert_file("memory/sandpit/box/memory.limit_in_bytes", "134217728");
        assert_file("memory/sandpit/box/memory.memsw.limit_in_bytes", "134217728");
        assert_file("pids/sandpit/box/pids.max", "32");
        assert_true(present("cpuacct/sandpit/box"));
        assert_true(present("freezer/sandpit/box"));
        assert_false(present("cpuset/sandpit")); /* runc's business */
        assert_int_equal(cg_create(m, "box", &l), -EEXIST);

        l = (CgLimits){0};
        assert_int_equal(cg_update(m, "box", &l), 0);
        assert_file("cpu/sandpit/box/cpu.cfs_quota_us", "-1");
        assert_file("memory/sandpit/box/memory.limit_in_bytes", "-1");
        assert_file("memory/sandpit/box/memory.memsw.limit_in_bytes", "-1");
        assert_file("pids/sandpit/box/pids.max", "max");
        cg_manager_free(m);
}

static void test_v1_stats(void **state)
{
        CgManager *m = NULL;
        CgLimits l = {0};
        CgStats s = {0};

        (void) state;
        m = v1_manager();
        assert_int_equal(cg_create(m, "box", &l), 0);
        put("cpuacct/sandpit/box/cpuacct.usage", "123456789\n");
        put("cpu/sandpit/box/cpu.cfs_quota_us", "-1\n");
        put("memory/sandpit/box/memory.usage_in_bytes", "4096\n");
        put("memory/sandpit/box/memory.max_usage_in_bytes", "8192\n");
        put("memory/sandpit/box/memory.limit_in_bytes", "9223372036854771712\n");
        put("memory/sandpit/box/memory.oom_control",
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n");
        put("pids/sandpit/box/pids.current", "5\n");
        assert_int_equal(cg_read_stats(m, "box", &s), 0);
        CgStats want = {.cpu_usage_ns = 123456789,
                        .cpu_period_us = 100000,
                        .memory_current = 4096,
                        .memory_peak = 8192,
                        .oom_kills = 2,
                        .pids_current = 5};
        assert_stats(&s, &want);

        put("cpu/sandpit/box/cpu.cfs_quota_us", "250000\n");
        put("memory/sandpit/box/memory.limit_in_bytes", "67108864\n");
        put("memory/sandpit/box/memory.oom_control", "oom_kill_disable 0\nunder_oom 0\n");
        put("pids/sandpit/box/pids.max", "10\n");
        assert_int_equal(cg_read_stats(m, "box", &s), 0);
        want.cpu_quota_us = 250000;
        want.memory_limit = 64 * MIB;
        want.oom_kills = 0; /* before Linux 4.13 */
        want.pids_limit = 10;
        assert_stats(&s, &want);
        cg_manager_free(m);
}

static void test_v1_destroy_list_freeze(void **state)
{
        CgManager *m = NULL;
        CgLimits l = {0};
        cleanup_strv char **ids = NULL;
        cleanup_strv char **after = NULL;

        (void) state;
        m = v1_manager();
        assert_int_equal(cg_create(m, "a", &l), 0);
        assert_int_equal(cg_create(m, "b", &l), 0);
        dir("cpuset/sandpit");
        dir("cpuset/sandpit/a"); /* as runc would have */

        assert_int_equal(cg_freeze(m, "a", true), 0);
        assert_file("freezer/sandpit/a/freezer.state", "FROZEN");
        assert_int_equal(cg_freeze(m, "a", false), 0);
        assert_file("freezer/sandpit/a/freezer.state", "THAWED");

        assert_int_equal(cg_list(m, &ids), 0);
        assert_int_equal(strv_len(ids), 2);
        assert_true(strv_contains(ids, "a") && strv_contains(ids, "b"));

        assert_int_equal(cg_destroy(m, "a"), 0);
        assert_false(present("cpu/sandpit/a"));
        assert_false(present("cpuacct/sandpit/a"));
        assert_false(present("memory/sandpit/a"));
        assert_false(present("pids/sandpit/a"));
        assert_false(present("freezer/sandpit/a"));
        assert_false(present("cpuset/sandpit/a"));
        assert_int_equal(cg_destroy(m, "a"), 0);
        assert_int_equal(cg_list(m, &after), 0);
        assert_int_equal(strv_len(after), 1);
        assert_true(strv_contains(after, "b"));
        cg_manager_free(m);
}

/* ---- real v1 (root on a v1/hybrid host) ---- */

static const char *const real_controllers[] = {"cpu", "cpuacct", "memory", "pids", "freezer"};
static char real_parent[64];
static pid_t real_children[2];

/* rel's path under the real parent in controller; valid until the next call. */
static const char *real_at(const char *controller, const char *rel)
{
        static char p[512];

        (void) snprintf(p, sizeof(p), "/sys/fs/cgroup/%s/%s/%s", controller, real_parent, rel);
        return p;
}

static char *real_file(const char *controller, const char *rel)
{
        return slurp_abs(real_at(controller, rel));
}

static void assert_real(const char *controller, const char *rel, const char *want)
{
        cleanup_free char *got = real_file(controller, rel);

        if (!got)
                fail_msg("%s/%s missing", controller, rel);
        assert_string_equal(got, want);
}

static bool real_present(const char *controller, const char *rel)
{
        return access(real_at(controller, rel), F_OK) == 0;
}

static void real_attach(const char *id, pid_t pid)
{
        char path[128];
        struct cgroup *cg = NULL;

        (void) snprintf(path, sizeof(path), "%s/%s", real_parent, id);
        cg = cgroup_new_cgroup(path);
        assert_non_null(cg);
        for (size_t i = 0; i < ARRAY_SIZE(real_controllers); i++)
                assert_non_null(cgroup_add_controller(cg, real_controllers[i]));
        assert_int_equal(cgroup_attach_task_pid(cg, pid), 0);
        cgroup_free(&cg);
}

static void test_real_v1(void **state)
{
        struct statfs fs;
        CgManager *m = NULL;
        CgLimits l = {.cpu_cores = 0.5, .memory_bytes = 64 * MIB, .pids_max = 32};
        CgStats s = {0};
        cleanup_strv char **ids = NULL;
        cleanup_free char *rp = NULL;
        cleanup_free char *want = NULL;
        bool memsw = false;

        (void) state;
        if (geteuid() != 0) {
                print_message("skipping the real v1 test: not root\n");
                skip();
        }
        if (statfs("/sys/fs/cgroup", &fs) < 0 || fs.f_type == 0x63677270 ||
            access("/sys/fs/cgroup/memory/memory.limit_in_bytes", F_OK) < 0) {
                print_message("skipping the real v1 test: /sys/fs/cgroup is not cgroup v1\n");
                skip();
        }

        (void) snprintf(real_parent, sizeof(real_parent), "sandpit-unittest-%d", (int) getpid());
        assert_int_equal(cg_manager_new(CG_VERSION_AUTO, real_parent, &m), 0);
        assert_int_equal(cg_manager_version(m), CG_VERSION_V1);
        assert_int_equal(cg_create(m, "box", &l), 0);
        assert_int_equal(cg_create(m, "box", &l), -EEXIST);
        assert_int_equal(cg_runtime_path(m, "box", &rp), 0);
        assert_int_equal(asprintf(&want, "/%s/box", real_parent) > 0, 1);
        assert_string_equal(rp, want);

        assert_real("cpu", "box/cpu.cfs_period_us", "100000\n");
        assert_real("cpu", "box/cpu.cfs_quota_us", "50000\n");
        assert_real("memory", "box/memory.limit_in_bytes", "67108864\n");
        memsw = real_present("memory", "box/memory.memsw.limit_in_bytes");
        if (memsw)
                assert_real("memory", "box/memory.memsw.limit_in_bytes", "67108864\n");
        assert_real("pids", "box/pids.max", "32\n");

        /* Raising memory needs memsw raised first; lowering the other way round. */
        l = (CgLimits){.cpu_cores = 1, .memory_bytes = 128 * MIB, .pids_max = 0};
        assert_int_equal(cg_update(m, "box", &l), 0);
        assert_real("memory", "box/memory.limit_in_bytes", "134217728\n");
        if (memsw)
                assert_real("memory", "box/memory.memsw.limit_in_bytes", "134217728\n");
        assert_real("pids", "box/pids.max", "max\n");
        l.memory_bytes = 0;
        assert_int_equal(cg_update(m, "box", &l), 0);
        l.memory_bytes = 32 * MIB;
        assert_int_equal(cg_update(m, "box", &l), 0);
        assert_real("memory", "box/memory.limit_in_bytes", "33554432\n");

        real_children[0] = spawn_sleeper();
        real_attach("box", real_children[0]);
        assert_int_equal(cg_read_stats(m, "box", &s), 0);
        assert_int_equal(s.pids_current, 1);
        assert_int_equal(s.pids_limit, 0);
        assert_int_equal(s.memory_limit, 32 * MIB);
        assert_int_equal(s.cpu_quota_us, 100000);
        assert_int_equal(s.cpu_period_us, 100000);

        assert_int_equal(cg_freeze(m, "box", true), 0);
        assert_real("freezer", "box/freezer.state", "FROZEN\n");
        assert_int_equal(cg_freeze(m, "box", false), 0);
        assert_real("freezer", "box/freezer.state", "THAWED\n");

        assert_int_equal(cg_list(m, &ids), 0);
        assert_int_equal(strv_len(ids), 1);
        assert_string_equal(ids[0], "box");

        assert_int_equal(cg_kill_all(m, "box", SIGKILL), 0);
        assert_int_equal(reap(real_children[0]), SIGKILL);
        real_children[0] = 0;

        /* destroy kills what is left, even frozen. */
        real_children[1] = spawn_sleeper();
        real_attach("box", real_children[1]);
        assert_int_equal(cg_freeze(m, "box", true), 0);
        assert_int_equal(cg_destroy(m, "box"), 0);
        assert_int_equal(reap(real_children[1]), SIGKILL);
        real_children[1] = 0;
        for (size_t i = 0; i < ARRAY_SIZE(real_controllers); i++)
                if (real_present(real_controllers[i], "box"))
                        fail_msg("%s/%s/box left behind", real_controllers[i], real_parent);
        assert_int_equal(cg_destroy(m, "box"), 0);
        assert_int_equal(cg_read_stats(m, "box", &s), -ENOENT);
        cg_manager_free(m);
}

/* Leaves nothing behind in /sys/fs/cgroup, whatever failed. */
static int real_teardown(void **state)
{
        (void) state;
        for (size_t i = 0; i < ARRAY_SIZE(real_children); i++)
                if (real_children[i] > 0) {
                        (void) kill(real_children[i], SIGKILL);
                        (void) waitpid(real_children[i], NULL, 0);
                }
        if (!real_parent[0])
                return 0;
        for (size_t i = 0; i < ARRAY_SIZE(real_controllers); i++) {
                const char *c = real_controllers[i];
                if (streq(c, "freezer")) {
                        FILE *f = fopen(real_at(c, "box/freezer.state"), "we");
                        if (f) {
                                (void) fputs("THAWED", f);
                                (void) fclose(f);
                        }
                }
                (void) rmdir(real_at(c, "box"));
                const char *p = real_at(c, "");
                if (rmdir(p) < 0 && errno != ENOENT)
                        fprintf(stderr, "leftover %s: %s\n", p, strerror(errno));
        }
        return 0;
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_cpu_quota),
                cmocka_unit_test(test_parsers),
                cmocka_unit_test(test_parse_pids),
                cmocka_unit_test_setup_teardown(test_v2_setup_enables_controllers, tree_setup,
                                                tree_teardown),
                cmocka_unit_test_setup_teardown(test_v2_setup_missing_controller, tree_setup,
                                                tree_teardown),
                cmocka_unit_test_setup_teardown(test_v2_create_update, tree_setup, tree_teardown),
                cmocka_unit_test_setup_teardown(test_v2_stats, tree_setup, tree_teardown),
                cmocka_unit_test_setup_teardown(test_v2_kill_destroy_list, tree_setup,
                                                tree_teardown),
                cmocka_unit_test_setup_teardown(test_v2_freeze, tree_setup, tree_teardown),
                cmocka_unit_test_setup_teardown(test_v2_nested_parent, tree_setup, tree_teardown),
                cmocka_unit_test_setup_teardown(test_v1_create_update, tree_setup, tree_teardown),
                cmocka_unit_test_setup_teardown(test_v1_stats, tree_setup, tree_teardown),
                cmocka_unit_test_setup_teardown(test_v1_destroy_list_freeze, tree_setup,
                                                tree_teardown),
                cmocka_unit_test_teardown(test_real_v1, real_teardown),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}

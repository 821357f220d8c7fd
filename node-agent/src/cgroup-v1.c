/* cgroup v1 backend: one directory per controller hierarchy (cpu, cpuacct, memory, pids,
 * freezer). cpuset, devices and blkio are runc's: it creates and joins them under the same path
 * itself; destroy removes them too when runc has not. */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cgroup-internal.h"
#include "sandpit/macro.h"

/* clang-tidy 14's analyzer does not model __attribute__((cleanup)) (llvm-project#160527), so
 * every early return after a cleanup_free allocation reads as a leak; ASan's leak checker in the
 * unit tests covers this instead. NOLINTBEGIN(clang-analyzer-unix.Malloc) */

static const char *const v1_controllers[] = {"cpu", "cpuacct", "memory", "pids", "freezer", NULL};

/* What runc may have created under the same path; removed on destroy when still there. */
static const char *const v1_runc_controllers[] = {
        "cpuset",   "devices",    "blkio", "hugetlb", "net_cls",
        "net_prio", "perf_event", "rdma",  "misc",
};

/* The kernel reports "no limit" as PAGE_COUNTER_MAX pages (about 2^63 bytes). */
#define V1_MEMORY_UNLIMITED_MIN (UINT64_C(1) << 62)

static int v1_setup(CgManager *m)
{
        return m->io->ops->create(m->io, m->parent, v1_controllers);
}

static int v1_exists(CgManager *m, const char *path)
{
        for (const char *const *c = v1_controllers; *c; c++) {
                int r = m->io->ops->exists(m->io, *c, path, NULL);
                if (r != 0)
                        return r;
        }
        return 0;
}

static int v1_apply_memory(CgIo *io, const char *path, uint64_t bytes)
{
        char v[32];
        int r;

        if (bytes == 0)
                (void) snprintf(v, sizeof(v), "-1");
        else
                (void) snprintf(v, sizeof(v), "%" PRIu64, bytes);

        /* memsw must stay >= the memory limit: raising the limit fails with EINVAL until memsw
         * has been raised first. */
        r = io->ops->write(io, "memory", path, "memory.limit_in_bytes", v);
        if (r == -EINVAL) {
                r = io->ops->write(io, "memory", path, "memory.memsw.limit_in_bytes", v);
                if (r < 0)
                        return r == -ENOENT ? -EINVAL : r;
                return io->ops->write(io, "memory", path, "memory.limit_in_bytes", v);
        }
        if (r < 0)
                return r;
        /* Without swap accounting (swapaccount=0) there is no memsw file. */
        r = io->ops->write(io, "memory", path, "memory.memsw.limit_in_bytes", v);
        return r == -ENOENT ? 0 : r;
}

static int v1_apply(CgManager *m, const char *path, const CgLimits *limits)
{
        CgIo *io = m->io;
        uint32_t quota = 0;
        int r;

        r = cg_cpu_quota_us(limits->cpu_cores, &quota);
        if (r < 0)
                return r;
        r = cg_write_u64(io, "cpu", path, "cpu.cfs_period_us", CG_CPU_PERIOD_US);
        if (r < 0)
                return r;
        if (quota == 0)
                r = io->ops->write(io, "cpu", path, "cpu.cfs_quota_us", "-1");
        else
                r = cg_write_u64(io, "cpu", path, "cpu.cfs_quota_us", quota);
        if (r < 0)
                return r;

        r = v1_apply_memory(io, path, limits->memory_bytes);
        if (r < 0)
                return r;

        if (limits->pids_max == 0)
                return io->ops->write(io, "pids", path, "pids.max", "max");
        return cg_write_u64(io, "pids", path, "pids.max", limits->pids_max);
}

static int v1_create(CgManager *m, const char *path, const CgLimits *limits)
{
        int r = m->io->ops->create(m->io, path, v1_controllers);

        return r < 0 ? r : v1_apply(m, path, limits);
}

static int v1_read_stats(CgManager *m, const char *path, CgStats *ret)
{
        CgIo *io = m->io;
        cleanup_free char *oom = NULL;
        CgStats s = {0};
        uint64_t quota = 0, period = 0;
        int r;

        r = cg_read_u64(io, "cpuacct", path, "cpuacct.usage", &s.cpu_usage_ns);
        if (r < 0)
                return r;
        r = cg_read_limit(io, "cpu", path, "cpu.cfs_quota_us", &quota);
        if (r < 0)
                return r;
        r = cg_read_u64(io, "cpu", path, "cpu.cfs_period_us", &period);
        if (r < 0)
                return r;
        if (quota > UINT32_MAX || period > UINT32_MAX)
                return -ERANGE;
        s.cpu_quota_us = (uint32_t) quota;
        s.cpu_period_us = (uint32_t) period;

        r = cg_read_u64(io, "memory", path, "memory.usage_in_bytes", &s.memory_current);
        if (r < 0)
                return r;
        r = cg_read_u64(io, "memory", path, "memory.max_usage_in_bytes", &s.memory_peak);
        if (r < 0)
                return r;
        r = cg_read_limit(io, "memory", path, "memory.limit_in_bytes", &s.memory_limit);
        if (r < 0)
                return r;
        if (s.memory_limit >= V1_MEMORY_UNLIMITED_MIN)
                s.memory_limit = 0;
        r = io->ops->read(io, "memory", path, "memory.oom_control", &oom);
        if (r < 0)
                return r;
        r = cg_parse_keyed(oom, "oom_kill", &s.oom_kills); /* kernels before 4.13 lack it */
        if (r < 0 && r != -ENOENT)
                return r;

        r = cg_read_u64(io, "pids", path, "pids.current", &s.pids_current);
        if (r < 0)
                return r;
        r = cg_read_limit(io, "pids", path, "pids.max", &s.pids_limit);
        if (r < 0)
                return r;
        *ret = s;
        return 0;
}

/* Signals the union of the tasks in our hierarchies; -ENOENT when the cgroup is gone. */
static int v1_signal(CgManager *m, const char *path, int sig)
{
        bool found = false;
        int count = 0;

        for (const char *const *c = v1_controllers; *c; c++) {
                cleanup_free pid_t *pids = NULL;
                size_t n = 0;
                int r = m->io->ops->procs(m->io, *c, path, &pids, &n);
                if (r == -ENOENT || r == -ENODEV)
                        continue;
                if (r < 0)
                        return r;
                found = true;
                r = cg_signal_pids(pids, n, sig);
                if (r < 0)
                        return r;
                count += r;
        }
        return found ? count : -ENOENT;
}

static int v1_wait_state(CgIo *io, const char *path, const char *state)
{
        uint64_t deadline = cg_now_ms() + CG_FREEZE_TIMEOUT_MS;

        for (;;) {
                cleanup_free char *cur = NULL;
                int r = io->ops->read(io, "freezer", path, "freezer.state", &cur);
                if (r < 0)
                        return r;
                if (strncmp(cur, state, strlen(state)) == 0)
                        return 0;
                if (cg_now_ms() >= deadline)
                        return -ETIMEDOUT;
                cg_poll_sleep();
        }
}

static int v1_freeze(CgManager *m, const char *path, bool frozen)
{
        const char *state = frozen ? "FROZEN" : "THAWED";
        int r = m->io->ops->write(m->io, "freezer", path, "freezer.state", state);

        return r < 0 ? r : v1_wait_state(m->io, path, state);
}

static int v1_kill_all(CgManager *m, const char *path, int sig)
{
        cleanup_free char *state = NULL;
        bool thawed;
        int r, k;

        /* Freeze first so nothing forks past the signal (as runc does), unless paused. */
        r = m->io->ops->read(m->io, "freezer", path, "freezer.state", &state);
        if (r < 0 && r != -ENOENT)
                return r;
        thawed = r >= 0 && strncmp(state, "THAWED", 6) == 0;
        if (thawed)
                (void) v1_freeze(m, path, true);
        k = v1_signal(m, path, sig);
        /* A frozen task only acts on SIGKILL once thawed. */
        if (r >= 0 && (thawed || sig == SIGKILL)) {
                r = m->io->ops->write(m->io, "freezer", path, "freezer.state", "THAWED");
                if (r < 0 && r != -ENOENT && k >= 0)
                        k = r;
        }
        return k < 0 ? k : 0;
}

static int v1_remove_one(CgManager *m, const char *controller, const char *path, bool *busy)
{
        int r = m->io->ops->remove(m->io, controller, path);

        if (r == -EBUSY)
                *busy = true;
        else if (r < 0 && r != -ENOENT && r != -ENODEV)
                return r;
        return 0;
}

static int v1_remove_all(CgManager *m, const char *path, bool *busy)
{
        *busy = false;
        for (const char *const *c = v1_controllers; *c; c++) {
                int r = v1_remove_one(m, *c, path, busy);
                if (r < 0)
                        return r;
        }
        for (size_t i = 0; i < ARRAY_SIZE(v1_runc_controllers); i++) {
                int r = v1_remove_one(m, v1_runc_controllers[i], path, busy);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int v1_destroy(CgManager *m, const char *path)
{
        uint64_t deadline = cg_now_ms() + CG_DESTROY_TIMEOUT_MS;

        for (;;) {
                bool busy = false;
                int r;

                /* Frozen tasks cannot die; SIGKILL again each round to catch late forks. */
                (void) m->io->ops->write(m->io, "freezer", path, "freezer.state", "THAWED");
                r = v1_signal(m, path, SIGKILL);
                if (r < 0 && r != -ENOENT)
                        return r;
                r = v1_remove_all(m, path, &busy);
                if (r < 0)
                        return r;
                if (!busy)
                        return 0;
                if (cg_now_ms() >= deadline)
                        return -EBUSY;
                cg_poll_sleep();
        }
}

static int v1_list(CgManager *m, char ***ret)
{
        cleanup_strv char **all = NULL;
        size_t n = 0;
        int r = cg_strv_new(&all);

        if (r < 0)
                return r;
        for (const char *const *c = v1_controllers; *c; c++) {
                cleanup_strv char **names = NULL;
                r = m->io->ops->children(m->io, *c, m->parent, &names);
                if (r == -ENOENT || r == -ENODEV)
                        continue;
                if (r < 0)
                        return r;
                r = cg_strv_merge(&all, &n, names);
                if (r < 0)
                        return r;
        }
        *ret = TAKE_PTR(all);
        return 0;
}

const CgBackendOps cg_v1_ops = {
        .version = CG_VERSION_V1,
        .setup = v1_setup,
        .create = v1_create,
        .apply = v1_apply,
        .exists = v1_exists,
        .read_stats = v1_read_stats,
        .kill_all = v1_kill_all,
        .destroy = v1_destroy,
        .list = v1_list,
        .freeze = v1_freeze,
};

/* NOLINTEND(clang-analyzer-unix.Malloc) */

/* cgroup v2 backend: one tree. The parent's cgroup.subtree_control enables cpu, memory and pids
 * for the sandboxes; the core cgroup.* files have no controller (NULL) in CgIoOps calls. */
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

static const char *const v2_controllers[] = {"cpu", "memory", "pids", NULL};

/* Any v2 controller names the one tree for the libcgroup I/O. */
#define V2_TREE "memory"

static bool word_in(const char *list, const char *word)
{
        size_t len = strlen(word);

        for (const char *p = list; (p = strstr(p, word)); p += len) {
                bool start = p == list || p[-1] == ' ' || p[-1] == '\n';
                bool end = p[len] == '\0' || p[len] == ' ' || p[len] == '\n';
                if (start && end)
                        return true;
        }
        return false;
}

/* Enables our controllers in path's cgroup.subtree_control (path "" = the root). */
static int v2_enable_controllers(CgIo *io, const char *path)
{
        cleanup_free char *available = NULL;
        cleanup_free char *enabled = NULL;
        char want[64] = "";
        int r;

        r = io->ops->read(io, NULL, path, "cgroup.controllers", &available);
        if (r < 0)
                return r;
        r = io->ops->read(io, NULL, path, "cgroup.subtree_control", &enabled);
        if (r < 0)
                return r;
        for (const char *const *c = v2_controllers; *c; c++) {
                if (!word_in(available, *c))
                        return -ENODEV;
                if (word_in(enabled, *c))
                        continue;
                size_t len = strlen(want);
                (void) snprintf(want + len, sizeof(want) - len, "%s+%s", len ? " " : "", *c);
        }
        if (want[0] == '\0')
                return 0;
        return io->ops->write(io, NULL, path, "cgroup.subtree_control", want);
}

static int v2_setup(CgManager *m)
{
        cleanup_free char *level = strdup(m->parent);
        int r;

        if (!level)
                return -ENOMEM;
        r = m->io->ops->create(m->io, m->parent, v2_controllers);
        if (r < 0)
                return r;
        /* Each ancestor must delegate the controllers to the next level down. */
        r = v2_enable_controllers(m->io, "");
        if (r < 0)
                return r;
        for (char *slash = level;; slash++) {
                slash = strchr(slash, '/');
                if (slash)
                        *slash = '\0';
                r = v2_enable_controllers(m->io, level);
                if (r < 0 || !slash)
                        return r;
                *slash = '/';
        }
}

static int v2_exists(CgManager *m, const char *path)
{
        return m->io->ops->exists(m->io, V2_TREE, path, NULL);
}

static int v2_apply(CgManager *m, const char *path, const CgLimits *limits)
{
        CgIo *io = m->io;
        char v[48];
        uint32_t quota = 0;
        int r;

        r = cg_cpu_quota_us(limits->cpu_cores, &quota);
        if (r < 0)
                return r;
        if (quota == 0)
                (void) snprintf(v, sizeof(v), "max %u", CG_CPU_PERIOD_US);
        else
                (void) snprintf(v, sizeof(v), "%" PRIu32 " %u", quota, CG_CPU_PERIOD_US);
        r = io->ops->write(io, "cpu", path, "cpu.max", v);
        if (r < 0)
                return r;

        if (limits->memory_bytes == 0)
                r = io->ops->write(io, "memory", path, "memory.max", "max");
        else
                r = cg_write_u64(io, "memory", path, "memory.max", limits->memory_bytes);
        if (r < 0)
                return r;
        /* No swap for sandboxes; the file is missing when swap accounting is off. */
        r = io->ops->write(io, "memory", path, "memory.swap.max", "0");
        if (r < 0 && r != -ENOENT)
                return r;

        if (limits->pids_max == 0)
                return io->ops->write(io, "pids", path, "pids.max", "max");
        return cg_write_u64(io, "pids", path, "pids.max", limits->pids_max);
}

static int v2_create(CgManager *m, const char *path, const CgLimits *limits)
{
        int r = m->io->ops->create(m->io, path, v2_controllers);

        return r < 0 ? r : v2_apply(m, path, limits);
}

/* The value of key in a flat-keyed file; 0 when the file or the key is missing. */
static int v2_read_keyed_opt(CgIo *io, const char *controller, const char *path, const char *file,
                             const char *key, uint64_t *ret)
{
        cleanup_free char *text = NULL;
        int r = io->ops->read(io, controller, path, file, &text);

        if (r == -ENOENT) {
                *ret = 0;
                return 0;
        }
        if (r < 0)
                return r;
        r = cg_parse_keyed(text, key, ret);
        if (r == -ENOENT) {
                *ret = 0;
                return 0;
        }
        return r;
}

static int v2_read_stats(CgManager *m, const char *path, CgStats *ret)
{
        CgIo *io = m->io;
        cleanup_free char *cpu_stat = NULL;
        cleanup_free char *cpu_max = NULL;
        CgStats s = {0};
        uint64_t usec = 0;
        int r;

        r = io->ops->read(io, "cpu", path, "cpu.stat", &cpu_stat);
        if (r < 0)
                return r;
        r = cg_parse_keyed(cpu_stat, "usage_usec", &usec);
        if (r < 0)
                return r;
        s.cpu_usage_ns = usec * 1000;
        r = io->ops->read(io, "cpu", path, "cpu.max", &cpu_max);
        if (r < 0)
                return r;
        r = cg_parse_cpu_max(cpu_max, &s.cpu_quota_us, &s.cpu_period_us);
        if (r < 0)
                return r;

        r = cg_read_u64(io, "memory", path, "memory.current", &s.memory_current);
        if (r < 0)
                return r;
        r = cg_read_u64(io, "memory", path, "memory.peak", &s.memory_peak); /* Linux 5.19+ */
        if (r < 0 && r != -ENOENT)
                return r;
        r = cg_read_limit(io, "memory", path, "memory.max", &s.memory_limit);
        if (r < 0)
                return r;
        r = v2_read_keyed_opt(io, "memory", path, "memory.events", "oom_kill", &s.oom_kills);
        if (r < 0)
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

static int v2_kill_all(CgManager *m, const char *path, int sig)
{
        cleanup_free pid_t *pids = NULL;
        size_t n = 0;
        int r;

        /* cgroup.kill (Linux 5.14+) kills the whole subtree atomically, forks included. */
        if (sig == SIGKILL) {
                r = m->io->ops->exists(m->io, NULL, path, "cgroup.kill");
                if (r < 0)
                        return r;
                if (r > 0)
                        return m->io->ops->write(m->io, NULL, path, "cgroup.kill", "1");
        }
        r = m->io->ops->procs(m->io, V2_TREE, path, &pids, &n);
        if (r < 0)
                return r;
        r = cg_signal_pids(pids, n, sig);
        return r < 0 ? r : 0;
}

static int v2_destroy(CgManager *m, const char *path)
{
        uint64_t deadline = cg_now_ms() + CG_DESTROY_TIMEOUT_MS;

        for (;;) {
                /* Fatal signals reach frozen tasks on v2, so no thaw is needed. */
                int r = v2_kill_all(m, path, SIGKILL);
                if (r < 0 && r != -ENOENT)
                        return r;
                r = m->io->ops->remove(m->io, V2_TREE, path);
                if (r != -EBUSY)
                        return r == -ENOENT ? 0 : r;
                if (cg_now_ms() >= deadline)
                        return -EBUSY;
                cg_poll_sleep();
        }
}

static int v2_list(CgManager *m, char ***ret)
{
        return m->io->ops->children(m->io, V2_TREE, m->parent, ret);
}

static int v2_freeze(CgManager *m, const char *path, bool frozen)
{
        uint64_t deadline = cg_now_ms() + CG_FREEZE_TIMEOUT_MS;
        int r = m->io->ops->write(m->io, NULL, path, "cgroup.freeze", frozen ? "1" : "0");

        if (r < 0)
                return r;
        /* cgroup.events says "frozen 1" once every task has stopped. */
        for (;;) {
                cleanup_free char *events = NULL;
                uint64_t state = 0;

                r = m->io->ops->read(m->io, NULL, path, "cgroup.events", &events);
                if (r == -ENOENT)
                        return 0;
                if (r < 0)
                        return r;
                r = cg_parse_keyed(events, "frozen", &state);
                if (r == -ENOENT)
                        return 0;
                if (r < 0)
                        return r;
                if ((state != 0) == frozen)
                        return 0;
                if (cg_now_ms() >= deadline)
                        return -ETIMEDOUT;
                cg_poll_sleep();
        }
}

const CgBackendOps cg_v2_ops = {
        .version = CG_VERSION_V2,
        .setup = v2_setup,
        .create = v2_create,
        .apply = v2_apply,
        .exists = v2_exists,
        .read_stats = v2_read_stats,
        .kill_all = v2_kill_all,
        .destroy = v2_destroy,
        .list = v2_list,
        .freeze = v2_freeze,
};

/* NOLINTEND(clang-analyzer-unix.Malloc) */

/* Per-sandbox cgroups: <parent>/<id>, created, limited, read and removed by the agent and handed
 * to runc as linux.cgroupsPath. One API in front of two backends (cgroup v1 and v2).
 *
 * All functions return >= 0 on success or a negative errno, and are safe to call from several
 * threads at once (see the locking note in cgroup.c). ids are single path components made of
 * [A-Za-z0-9._-]; anything else is -EINVAL. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

typedef enum {
        CG_VERSION_AUTO,
        CG_VERSION_V1,
        CG_VERSION_V2,
} CgVersion;

#define CG_CPU_PERIOD_US 100000U

typedef struct {
        double cpu_cores;      /* 0 = unlimited; else quota = cores * period (period 100000 us) */
        uint64_t memory_bytes; /* 0 = unlimited; also caps memory+swap (no swap for sandboxes) */
        uint64_t pids_max;     /* 0 = unlimited */
} CgLimits;

typedef struct {
        uint64_t cpu_usage_ns;
        uint64_t memory_current;
        uint64_t memory_limit; /* 0 = none */
        uint64_t memory_peak;  /* 0 when the kernel does not report it (v2 before 5.19) */
        uint64_t pids_current;
        uint64_t pids_limit; /* 0 = none */
        uint64_t oom_kills;
        uint32_t cpu_quota_us; /* 0 = none */
        uint32_t cpu_period_us;
} CgStats;

typedef struct CgManager CgManager;

/* AUTO detects the flavour from /sys/fs/cgroup (a hybrid host with an empty unified tree is v1).
 * Initialises libcgroup and creates the parent (default "sandpit" when parent is NULL) in every
 * controller the backend uses; on v2 it also enables cpu, memory and pids for the children
 * (-ENODEV when one of them is not available there). */
int cg_manager_new(CgVersion version, const char *parent, CgManager **ret);
void cg_manager_free(CgManager *m);
CgVersion cg_manager_version(const CgManager *m);

/* -EEXIST if the cgroup is already there. On failure nothing is left behind. */
int cg_create(CgManager *m, const char *id, const CgLimits *limits);
/* Rewrites every limit (0 = unlimited). -ENOENT if the cgroup is gone. */
int cg_update(CgManager *m, const char *id, const CgLimits *limits);
/* "/<parent>/<id>", for runc's linux.cgroupsPath (cgroupfs driver). */
int cg_runtime_path(const CgManager *m, const char *id, char **ret);
int cg_read_stats(CgManager *m, const char *id, CgStats *ret);
/* Signals every process in the cgroup; ones that exit meanwhile are not an error. */
int cg_kill_all(CgManager *m, const char *id, int sig);
/* SIGKILLs what is left (thawing first), waits for it and removes the cgroup from every
 * controller. Already gone (e.g. removed by `runc delete`) = 0; -EBUSY if tasks outlive ~5 s. */
int cg_destroy(CgManager *m, const char *id);
/* Moves pid into the sandbox's memory cgroup (v1: the memory hierarchy only; v2: its cgroup), so
 * what pid allocates from then on, tmpfs pages included, is charged to the sandbox. */
int cg_charge_pid(CgManager *m, const char *id, pid_t pid);
/* Names of the parent's children (NULL-terminated, possibly empty), for cleanup after restart. */
int cg_list(CgManager *m, char ***ret_ids);
/* Freezes or thaws, waiting up to ~2 s for the kernel to finish (-ETIMEDOUT otherwise). */
int cg_freeze(CgManager *m, const char *id, bool frozen);

/* Shared between cgroup.c, the two backends and the unit tests. Not part of the agent's API. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "cgroup.h"

/* ---- I/O: where cgroup files live. Paths are relative to a hierarchy root ("sandpit/a"). */

typedef struct CgIo CgIo;

/* controller names the hierarchy on v1 ("memory"); on v2 it is the controller a file belongs to
 * ("memory" for memory.max) or NULL for the core cgroup.* files, which libcgroup 2.0 has no
 * controller for. */
typedef struct {
        /* Creates path (and missing ancestors) in each controller; existing is not an error. */
        int (*create)(CgIo *io, const char *path, const char *const *controllers);
        int (*write)(CgIo *io, const char *controller, const char *path, const char *file,
                     const char *value);
        /* Whole file content, NUL-terminated. */
        int (*read)(CgIo *io, const char *controller, const char *path, const char *file,
                    char **ret);
        /* 1 if path (file NULL) or path/file exists, 0 if not. */
        int (*exists)(CgIo *io, const char *controller, const char *path, const char *file);
        /* Removes an empty cgroup: gone = 0, tasks or children left = -EBUSY. */
        int (*remove)(CgIo *io, const char *controller, const char *path);
        /* Names of the child cgroups of path. */
        int (*children)(CgIo *io, const char *controller, const char *path, char ***ret);
        /* Pids (v1: tids) in path, possibly none. */
        int (*procs)(CgIo *io, const char *controller, const char *path, pid_t **ret,
                     size_t *ret_n);
        void (*free)(CgIo *io);
} CgIoOps;

struct CgIo {
        const CgIoOps *ops;
        char *root;          /* plain-directory I/O: the tree's root */
        bool per_controller; /* plain-directory I/O: root/<controller>/path (v1 layout) */
        char *unified;       /* libcgroup I/O on v2: mount point, for the core cgroup.* files */
};

/* ---- Backends: what to write where, one per cgroup flavour. ---- */

typedef struct {
        CgVersion version;
        int (*setup)(CgManager *m); /* creates the parent */
        int (*create)(CgManager *m, const char *path, const CgLimits *limits);
        int (*apply)(CgManager *m, const char *path, const CgLimits *limits);
        int (*exists)(CgManager *m, const char *path);
        int (*read_stats)(CgManager *m, const char *path, CgStats *ret);
        int (*kill_all)(CgManager *m, const char *path, int sig);
        int (*destroy)(CgManager *m, const char *path);
        int (*list)(CgManager *m, char ***ret);
        int (*freeze)(CgManager *m, const char *path, bool frozen);
} CgBackendOps;

extern const CgBackendOps cg_v1_ops;
extern const CgBackendOps cg_v2_ops;

struct CgManager {
        const CgBackendOps *ops;
        CgIo *io;
        char *parent; /* relative, no leading or trailing '/' */
};

/* A manager whose I/O is plain file operations under root (a fake cgroupfs tree in tests): v1
 * expects root/<controller>/..., v2 expects root/cgroup.controllers. AUTO picks v2 when
 * root/cgroup.controllers exists. */
int cg_manager_new_at(CgVersion version, const char *parent, const char *root, CgManager **ret);

/* ---- Pure helpers (unit-tested directly). ---- */

/* cores -> quota in us for CG_CPU_PERIOD_US; 0 cores = 0 (none). Rounds, at least 1000 us. */
int cg_cpu_quota_us(double cores, uint32_t *ret);
/* Decimal number with optional trailing whitespace. */
int cg_parse_u64(const char *s, uint64_t *ret);
/* Like cg_parse_u64, but "max" (v2) or "-1" (v1) = 0, meaning no limit. */
int cg_parse_limit(const char *s, uint64_t *ret);
/* The value of "key N" in a flat-keyed file (cpu.stat, memory.events, memory.oom_control);
 * -ENOENT when the key is missing. */
int cg_parse_keyed(const char *text, const char *key, uint64_t *ret);
/* v2 cpu.max: "max 100000" or "50000 100000". */
int cg_parse_cpu_max(const char *s, uint32_t *ret_quota, uint32_t *ret_period);
int cg_parse_pids(const char *text, pid_t **ret, size_t *ret_n);

/* Helpers for the backends. */
int cg_read_u64(CgIo *io, const char *controller, const char *path, const char *file,
                uint64_t *ret);
int cg_read_limit(CgIo *io, const char *controller, const char *path, const char *file,
                  uint64_t *ret);
int cg_write_u64(CgIo *io, const char *controller, const char *path, const char *file, uint64_t v);
/* Sends sig to every pid, ignoring ones already gone. Returns how many were signalled. */
int cg_signal_pids(const pid_t *pids, size_t n, int sig);
int cg_strv_new(char ***ret);
/* Appends the names not yet in *acc (n entries, NULL-terminated). */
int cg_strv_merge(char ***acc, size_t *n, char *const *names);
/* CLOCK_MONOTONIC in milliseconds, for the bounded waits below. */
uint64_t cg_now_ms(void);
/* Sleeps between polls of a kill/freeze/remove loop. */
void cg_poll_sleep(void);
#define CG_POLL_INTERVAL_MS   10
#define CG_DESTROY_TIMEOUT_MS 5000
#define CG_FREEZE_TIMEOUT_MS  2000

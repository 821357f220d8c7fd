/* Recovery at start: re-adopt the sandboxes a previous agent left running,
 * remove the remains of those that cannot be, rebuild the network rules. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "exec.h"
#include "initproto.h"
#include "net.h"
#include "rootfs.h"
#include "runtime.h"
#include "sandbox-internal.h"
#include "sandbox.h"
#include "sandpit/log.h"
#include "sandpit/macro.h"
#include "sandpit/util.h"
#include "state.h"
#include "userns.h"

static bool strv_contains(char **v, const char *s)
{
        STRV_FOREACH(p, v)
                if (streq(*p, s))
                        return true;
        return false;
}

/* Adopts one sandbox from its state dir (named by the sandbox's name), or
 * returns < 0 (caller cleans up); -ESTALE for one waiting in a warm pool,
 * which is never adopted: the pool makes new ones; -ECANCELED for one that
 * was deleted and whose teardown did not end. */
static int adopt(Agent *a, const char *name, const char *dir)
{
        cleanup_free char *marker = NULL;
        if (asprintf(&marker, "%s/" DELETING_MARKER, dir) < 0)
                return -ENOMEM;
        if (access(marker, F_OK) == 0)
                return -ECANCELED;
        Sandbox *sb = NULL;
        int r = state_load(dir, &sb);
        if (r < 0)
                return r;
        if (sb->spec.pool) {
                sandbox_free(sb);
                return -ESTALE;
        }
        const char *id = sb->spec.id;
        Runtime rt = sandbox_runtime(a, sb->spec.runtime);
        cleanup_free char *status = NULL;
        pid_t pid = 0;
        r = runtime_state(&rt, name, &status, &pid);
        bool paused = r >= 0 && streq(status, "paused");
        if (r < 0 || (!streq(status, "running") && !paused) || pid != sb->init_pid ||
            !streq(sb->name, name) || sandbox_find_locked(a, id)) {
                sandbox_free(sb);
                return r < 0 ? r : -ESRCH;
        }
        if (!(sb->dir = strdup(dir)) ||
            rootfs_ctl_path(dir, IP_SOCKET_NAME, &sb->socket_path) < 0) {
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
        /* Its host id range stays its own: never handed out again while it
         * runs. One this agent's table does not hold (--userns-base or -size
         * changed) could overlap a new sandbox's, so such a sandbox goes. */
        if (sb->userns_host_id && a->userns &&
            (r = userns_alloc_mark(a->userns, sb->userns_host_id)) < 0) {
                log_sbx(LOG_LEVEL_WARNING, id, r,
                        "its host ids from %u are not a free range of "
                        "this agent's",
                        sb->userns_host_id);
                sandbox_free(sb);
                return r;
        }
        (void) net_sandbox_ip(a->net, name, &sb->ip);
        /* The same check as every exec's (the peer is the init pid runc and
         * state.json agree on): say so now if the socket is not init's. */
        /* A runsc sandbox's channel went with the old agent: a new one. A
         * paused one gets it when it is resumed. One it cannot reach (no
         * key, a runsc exec that failed or hung: it is killed after
         * RUNTIME_RECHANNEL_TIMEOUT_MS) is not adopted: every exec would
         * fail, and the agent's start must not wait on it. */
        if (rt.gvisor && !paused) {
                int c = sandbox_rechannel(&rt, sb->name, sb->dir, sb->socket_path);
                if (c < 0) {
                        log_sbx(LOG_LEVEL_WARNING, id, c,
                                "cannot reach its init through %s exec: not re-adopted", rt.binary);
                        sandbox_release_ids(a, sb);
                        sandbox_free(sb);
                        return c;
                }
        }
        int k = exec_check_init(sb->socket_path, sb->init_pid);
        if (k == -EIO)
                log_sbx(LOG_LEVEL_WARNING, id, k,
                        "its init socket is not served by its init: execs will be refused");
        (void) pthread_mutex_lock(&a->lock);
        r = sandbox_watch_init(a, sb);
        if (r == 0) {
                sb->next = a->sandboxes;
                a->sandboxes = sb;
        }
        (void) pthread_mutex_unlock(&a->lock);
        if (r < 0) {
                sandbox_release_ids(a, sb);
                sandbox_free(sb);
        }
        return r;
}

/* The runtime the state in dir names (NULL: the default's, or no state). */
static char *dir_runtime(const char *dir)
{
        Sandbox *sb = NULL;
        if (state_load(dir, &sb) < 0)
                return NULL;
        char *r = sb->spec.runtime ? strdup(sb->spec.runtime) : NULL;
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
                list[i++] =
                        (NetAdopted){.id = sb->name, .policy = &sb->spec.network, .dir = sb->dir};
        int r = net_recover(a->net, list, n);
        return r < 0 ? log_error_errno(r, "cannot restore the sandboxes' network rules") : 0;
}

int sandbox_recover(Agent *a)
{
        cleanup_strv char **dirs = NULL, **cgroups = NULL;
        int r = state_list(a->sandboxes_dir, &dirs);
        if (r < 0)
                return log_error_errno(r, "cannot read %s", a->sandboxes_dir);
        unsigned adopted = 0, removed = 0;
        STRV_FOREACH(id, dirs) { /* sandbox names */
                cleanup_free char *dir = NULL;
                if (asprintf(&dir, "%s/%s", a->sandboxes_dir, *id) < 0)
                        return -ENOMEM;
                r = adopt(a, *id, dir);
                if (r == 0) {
                        adopted++;
                        continue;
                }
                if (r == -ESTALE)
                        log_sbx(LOG_LEVEL_INFO, *id, 0, "was waiting in a warm pool; removing it");
                else if (r == -ECANCELED)
                        log_sbx(LOG_LEVEL_INFO, *id, 0, "was deleted; finishing its teardown");
                else
                        log_sbx(LOG_LEVEL_INFO, *id, r, "cannot re-adopt; removing its remains");
                cleanup_free char *runtime = dir_runtime(dir);
                (void) sandbox_teardown(a, *id, dir, runtime);
                removed++;
        }
        /* Containers and cgroups with no state dir are remains too, under
         * every runtime's root. */
        for (int i = -1; i < RUNTIME_NAMES; i++) {
                const char *name = i < 0 ? NULL : runtime_names[i];
                Runtime rt = sandbox_runtime(a, name);
                cleanup_strv char **found = NULL;
                if ((i >= 0 && streq(rt.root, a->runc_root)) || runtime_list(&rt, &found) < 0)
                        continue;
                STRV_FOREACH(id, found) {
                        if (strv_contains(dirs, *id))
                                continue;
                        log_sbx(LOG_LEVEL_INFO, *id, 0, "removing orphaned container");
                        (void) sandbox_teardown(a, *id, NULL, name);
                        removed++;
                }
        }
        /* Listed after the containers' teardown removed theirs. */
        if (cg_list(a->cg, &cgroups) == 0)
                STRV_FOREACH(id, cgroups)
                        if (!strv_contains(dirs, *id)) {
                                log_sbx(LOG_LEVEL_INFO, *id, 0, "removing orphaned cgroup");
                                (void) sandbox_teardown(a, *id, NULL, NULL);
                                removed++;
                        }
        if ((r = recover_network(a)) < 0)
                return r;
        log_info("recovery: %u sandboxes re-adopted, %u removed", adopted, removed);
        sandbox_wake_monitor(a);
        return 0;
}

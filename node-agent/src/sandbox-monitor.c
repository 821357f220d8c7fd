/* The monitor thread: deletes sandboxes whose deadline passed and marks
 * those whose init died as exited. */
#include <errno.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "metrics.h"
#include "sandbox-internal.h"
#include "sandbox.h"
#include "sandpit/log.h"
#include "sandpit/macro.h"
#include "sandpit/util.h"
#include "state.h"

void sandbox_wake_monitor(Agent *a)
{
        uint64_t one = 1;
        if (a->wake_fd >= 0)
                (void) !write(a->wake_fd, &one, sizeof(one));
}

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
                bool pause = false;
                for (Sandbox *sb = a->sandboxes; sb; sb = sb->next) {
                        /* Pooled ones have no deadline until claimed. */
                        bool ticking =
                                !sb->spec.pool &&
                                (sb->state == SANDBOX_RUNNING || sb->state == SANDBOX_EXITED ||
                                 (sb->state == SANDBOX_PAUSED && !sb->deadline_paused));
                        if (!ticking)
                                continue;
                        if (sb->expires_us <= now && sb->spec.timeout_pause &&
                            sb->state == SANDBOX_PAUSED) {
                                /* Paused already: it stays so, its deadline stopped. */
                                sb->deadline_paused = true;
                                (void) state_save(sb);
                                continue;
                        }
                        if (sb->expires_us <= now && !expired[0]) {
                                (void) snprintf(expired, sizeof(expired), "%s", sb->spec.id);
                                /* on_timeout "pause": a running sandbox is paused with its
                                 * deadline stopped (kept until resumed or deleted); one
                                 * being paused or resumed is looked at again shortly. */
                                pause = sb->spec.timeout_pause && sb->state == SANDBOX_RUNNING;
                        } else if (sb->expires_us < next)
                                next = sb->expires_us;
                }
                (void) pthread_mutex_unlock(&a->lock);

                if (expired[0]) {
                        int r;
                        if (pause) {
                                char err[256] = "";
                                json_object *o = NULL;
                                log_sbx(LOG_LEVEL_INFO, expired, 0, "timeout reached; pausing");
                                r = sandbox_pause(a, expired, true, &o, err, sizeof(err));
                                json_object_put(o);
                        } else {
                                log_sbx(LOG_LEVEL_INFO, expired, 0, "timeout reached; deleting");
                                r = sandbox_delete_wait(a, expired, false);
                        }
                        if (r < 0 && r != -ENOENT) {
                                log_sbx(LOG_LEVEL_ERROR, expired, r,
                                        "%s expired sandbox; retrying in 10 s",
                                        pause ? "pausing" : "deleting");
                                (void) pthread_mutex_lock(&a->lock);
                                Sandbox *sb = sandbox_find_locked(a, expired);
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
                        Sandbox *sb = sandbox_find_serial_locked(a, evs[i].data.u64);
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

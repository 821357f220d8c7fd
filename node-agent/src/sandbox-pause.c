/* Pause and resume: freeze or thaw every process of a sandbox (cgroup
 * freezer), with the deadline clock stopped or running. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sandbox-internal.h"
#include "sandbox.h"
#include "sandpit/http-status.h"
#include "sandpit/log.h"
#include "sandpit/macro.h"
#include "sandpit/util.h"
#include "state.h"

/* Looks a sandbox up again after the lock was dropped: the same one (serial),
 * not a newer one of the same id. Call with a->lock held. */
static Sandbox *refind_locked(Agent *a, const char *id, uint64_t serial)
{
        Sandbox *sb = sandbox_find_locked(a, id);
        return sb && sb->serial == serial ? sb : NULL;
}

/* Takes the sandbox for a pause (want = RUNNING) or resume (want = PAUSED). */
static int begin_transition_locked(Agent *a, const char *id, SandboxState want,
                                   uint64_t *ret_serial, char **ret_name, char *err, size_t errlen)
{
        Sandbox *sb = sandbox_find_locked(a, id);
        if (!sb || sb->state == SANDBOX_CREATING || sb->state == SANDBOX_DELETING)
                return -ENOENT;
        if (sb->pause_busy) {
                (void) snprintf(err, errlen, "sandbox %s is being paused or resumed", id);
                return -EBUSY;
        }
        if (sb->state != want) {
                (void) snprintf(
                        err, errlen, "sandbox %s is %s%s", id, sandbox_state_name(sb->state),
                        want == SANDBOX_PAUSED && sb->state == SANDBOX_RUNNING ? ", not paused"
                                                                               : "");
                return -EBUSY;
        }
        if (!(*ret_name = strdup(sb->name)))
                return -ENOMEM;
        sb->pause_busy = true;
        *ret_serial = sb->serial;
        return 0;
}

static int finish_transition(Agent *a, const char *id, Sandbox *sb, json_object **ret_obj)
{
        int r = state_save(sb);
        json_object *o = sandbox_to_json_locked(sb);
        (void) pthread_mutex_unlock(&a->lock);
        sandbox_wake_monitor(a);
        if (r < 0)
                log_sbx(LOG_LEVEL_WARNING, id, r, "cannot persist the pause state");
        if (!o)
                return -ENOMEM;
        sandbox_add_stats(a, id, o);
        *ret_obj = o;
        return 0;
}

/* A thawed sandbox runs again; a stopped deadline moves on by the time paused,
 * and a new timeout (> 0) starts now. */
static void resumed_locked(Sandbox *sb, uint64_t timeout_s)
{
        uint64_t now = now_realtime_us();
        if (sb->state == SANDBOX_PAUSED)
                sb->state = SANDBOX_RUNNING;
        if (sb->deadline_paused && sb->paused_us && now > sb->paused_us)
                sb->expires_us += now - sb->paused_us;
        if (timeout_s > 0) {
                sb->spec.timeout_s = timeout_s;
                sb->expires_us = now + timeout_s * 1000000u;
        } else if (sb->expires_us <= now) { /* paused at its deadline: a new term */
                sb->expires_us = now + sb->spec.timeout_s * 1000000u;
        }
        sb->paused_us = 0;
        sb->deadline_paused = false;
}

/* A pause (freeze) or resume: takes the sandbox, writes the freezer without the
 * lock, then applies the new state. A freezer that cannot be written is the
 * agent's failure, not the request's (http_errno_internal()); a pause that
 * fails is undone, so the sandbox runs on. */
static int transition(Agent *a, const char *id, bool freeze, bool stop_deadline, uint64_t timeout_s,
                      json_object **ret_obj, char *err, size_t errlen)
{
        uint64_t serial = 0;
        cleanup_free char *name = NULL, *dir = NULL, *socket_path = NULL;
        (void) pthread_mutex_lock(&a->lock);
        int r = begin_transition_locked(a, id, freeze ? SANDBOX_RUNNING : SANDBOX_PAUSED, &serial,
                                        &name, err, errlen);
        bool gvisor = false;
        Runtime rt = {0};
        if (r == 0) {
                /* runsc: its own pause (the cgroup freezer would hang its
                 * state and exec); and a sandbox adopted while paused gets
                 * its channel at the resume. */
                Sandbox *s = sandbox_find_locked(a, id);
                rt = sandbox_runtime(a, s->spec.runtime); /* the agent's strings */
                gvisor = rt.gvisor;
                if (gvisor && !freeze) {
                        dir = strdup(s->dir);
                        socket_path = strdup(s->socket_path);
                }
        }
        if (r == 0 && freeze) {
                /* Paused from now on for everyone else: new execs get 409. */
                Sandbox *sb = sandbox_find_locked(a, id);
                sb->state = SANDBOX_PAUSED;
                sb->paused_us = now_realtime_us();
                sb->deadline_paused = stop_deadline;
        }
        (void) pthread_mutex_unlock(&a->lock);
        if (r < 0)
                return r;
        r = gvisor ? runtime_pause(&rt, name, freeze) : cg_freeze(a->cg, name, freeze);
        if (r == 0 && gvisor && !freeze && dir && socket_path)
                (void) sandbox_rechannel(&rt, name, dir, socket_path);
        (void) pthread_mutex_lock(&a->lock);
        Sandbox *sb = refind_locked(a, id, serial);
        if (sb)
                sb->pause_busy = false;
        if (!sb || sb->state == SANDBOX_DELETING) {
                (void) pthread_mutex_unlock(&a->lock);
                return -ENOENT;
        }
        if (r < 0) {
                if (freeze) {
                        if (sb->state == SANDBOX_PAUSED)
                                sb->state = SANDBOX_RUNNING;
                        sb->paused_us = 0;
                        sb->deadline_paused = false;
                }
                (void) pthread_mutex_unlock(&a->lock);
                if (freeze && gvisor)
                        (void) runtime_pause(&rt, name, false);
                else if (freeze)
                        (void) cg_freeze(a->cg, name, false);
                const char *what = freeze ? "freeze" : "thaw";
                if (r == -ETIMEDOUT) /* 504: the runtime was killed, the sandbox is as it was */
                        (void) snprintf(err, errlen,
                                        "cannot %s sandbox %s: %s %s did not end within %d s", what,
                                        id, rt.binary, freeze ? "pause" : "resume",
                                        RUNTIME_PAUSE_TIMEOUT_MS / 1000);
                else
                        (void) snprintf(err, errlen, "cannot %s sandbox %s: %s", what, id,
                                        strerror(-r));
                log_sbx(LOG_LEVEL_ERROR, id, r, "cannot %s", what);
                return http_errno_internal(r);
        }
        if (freeze) {
                log_sbx(LOG_LEVEL_INFO, id, 0, "paused (deadline %s)",
                        stop_deadline ? "stopped" : "running");
        } else {
                resumed_locked(sb, timeout_s);
                log_sbx(LOG_LEVEL_INFO, id, 0, "resumed");
        }
        return finish_transition(a, id, sb, ret_obj);
}

int sandbox_pause(Agent *a, const char *id, bool stop_deadline, json_object **ret_obj, char *err,
                  size_t errlen)
{
        return transition(a, id, true, stop_deadline, 0, ret_obj, err, errlen);
}

bool sandbox_is_paused(Agent *a, const char *id)
{
        (void) pthread_mutex_lock(&a->lock);
        Sandbox *sb = sandbox_find_locked(a, id);
        bool paused = sb && sb->state == SANDBOX_PAUSED;
        (void) pthread_mutex_unlock(&a->lock);
        return paused;
}

int sandbox_resume(Agent *a, const char *id, uint64_t timeout_s, json_object **ret_obj, char *err,
                   size_t errlen)
{
        return transition(a, id, false, false, timeout_s, ret_obj, err, errlen);
}

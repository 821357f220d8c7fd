/* Leader election with a Lease (see leader.h and docs/operator.md). */
#include "leader.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "operator.h"
#include "sandpit/log.h"
#include "sandpit/macro.h"
#include "sandpit/util.h"

#define DURATION_MAX_MS 86400000LL

struct LeaderElector {
        K8sClient *client;
        LeaderConfig cfg;
        pthread_t thread;
        bool thread_started;

        pthread_mutex_t lock; /* guards what follows up to the thread-only part */
        pthread_cond_t cond;  /* CLOCK_MONOTONIC: stopping, leading changed */
        bool stopping;
        bool leading;
        uint64_t term;          /* bumped whenever leading changes */
        uint64_t renewed_at_us; /* monotonic: last successful renewal */
        bool held_at_stop;      /* leading when leader_stop() ran: release it */

        /* The elector thread only (and leader_free after the join). */
        json_object *lease;      /* as last written by this replica, or read */
        K8sLeaseRecord observed; /* the record last seen */
        uint64_t observed_at_us; /* monotonic: when it was first seen so */
        bool have_observed;
        char *waiting_for; /* holder last logged while standing by */
};

/* The term a worker began its current piece of work in (leader_begin). */
static _Thread_local uint64_t work_term;

int leader_parse_duration_ms(const char *s, long *ret)
{
        if (!s || !*s)
                return -EINVAL;
        int64_t ns;
        char secs[64];
        /* A bare number is seconds, as the flags always took it. */
        if (strspn(s, "0123456789.") == strlen(s)) {
                if (snprintf(secs, sizeof(secs), "%ss", s) >= (int) sizeof(secs))
                        return -EINVAL;
                s = secs;
        }
        if (parse_duration_ns(s, &ns) < 0 || ns < 1000000LL || ns > DURATION_MAX_MS * 1000000LL)
                return -EINVAL;
        *ret = (long) (ns / 1000000LL);
        return 0;
}

static bool lease_name_valid(const char *s)
{
        size_t n = s ? strlen(s) : 0;
        if (n == 0 || n > 253)
                return false;
        for (size_t i = 0; i < n; i++) {
                char c = s[i];
                bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
                if (!alnum && !((c == '-' || c == '.') && i > 0 && i + 1 < n))
                        return false;
        }
        return true;
}

const char *leader_config_check(const LeaderConfig *cfg)
{
        if (!lease_name_valid(cfg->lease_name))
                return "--leader-election-id must be a DNS subdomain name (a-z, 0-9, '-', '.')";
        if (!cfg->identity || !*cfg->identity || strlen(cfg->identity) > 253)
                return "--identity must be 1..253 characters";
        if (cfg->lease_duration_ms < 1000)
                return "--lease-duration must be at least 1s";
        if (cfg->renew_deadline_ms >= cfg->lease_duration_ms)
                return "--renew-deadline must be shorter than --lease-duration";
        if (cfg->retry_period_ms >= cfg->renew_deadline_ms)
                return "--retry-period must be shorter than --renew-deadline";
        return NULL;
}

LeaderDecision leader_decide(const K8sLeaseRecord *observed, uint64_t observed_at_us,
                             uint64_t now_us, const char *identity)
{
        const char *holder = observed->holder ? observed->holder : "";
        if (!*holder)
                return LEADER_TAKE;
        if (streq(holder, identity))
                return LEADER_RENEW;
        uint64_t dur = observed->duration_s > 0 ? (uint64_t) observed->duration_s * 1000000u : 0;
        /* client-go: valid while observedTime + leaseDuration is after now */
        return observed_at_us + dur > now_us ? LEADER_WAIT : LEADER_TAKE;
}

static int record_copy(const K8sLeaseRecord *src, K8sLeaseRecord *ret)
{
        K8sLeaseRecord r = {.duration_s = src->duration_s, .transitions = src->transitions};
        r.holder = strdup(src->holder ? src->holder : "");
        r.acquire_time = strdup(src->acquire_time ? src->acquire_time : "");
        r.renew_time = strdup(src->renew_time ? src->renew_time : "");
        if (!r.holder || !r.acquire_time || !r.renew_time) {
                k8s_lease_record_done(&r);
                return -ENOMEM;
        }
        *ret = r;
        return 0;
}

/* Notes rec as seen now when it differs from what was seen before. */
static int observe(LeaderElector *le, const K8sLeaseRecord *rec)
{
        if (le->have_observed && k8s_lease_record_equal(&le->observed, rec))
                return 0;
        K8sLeaseRecord copy;
        int r = record_copy(rec, &copy);
        if (r < 0)
                return r;
        k8s_lease_record_done(&le->observed);
        le->observed = copy;
        le->observed_at_us = now_monotonic_us();
        le->have_observed = true;
        return 0;
}

static long duration_s(const LeaderElector *le)
{
        return (le->cfg.lease_duration_ms + 999) / 1000;
}

static json_object *new_lease(const LeaderElector *le)
{
        json_object *o = json_object_new_object();
        json_object *meta = json_object_new_object();
        json_object *labels = json_object_new_object();
        json_object_object_add(o, "apiVersion", json_object_new_string("coordination.k8s.io/v1"));
        json_object_object_add(o, "kind", json_object_new_string("Lease"));
        json_object_object_add(o, "metadata", meta);
        json_object_object_add(meta, "name", json_object_new_string(le->cfg.lease_name));
        json_object_object_add(meta, "namespace", json_object_new_string(le->cfg.namespace));
        json_object_object_add(meta, "labels", labels);
        json_object_object_add(labels, "app.kubernetes.io/component",
                               json_object_new_string(LEADER_COMPONENT_LABEL));
        return o;
}

static void log_waiting(LeaderElector *le, const char *holder)
{
        if (le->waiting_for && streq(le->waiting_for, holder))
                return;
        free(le->waiting_for);
        le->waiting_for = strdup(holder);
        log_info("standing by: Lease %s/%s is held by %s", le->cfg.namespace, le->cfg.lease_name,
                 holder);
}

/* One attempt (client-go's tryAcquireOrRenew): 0 when this replica holds the
 * Lease with a fresh renewTime; -EBUSY when another holder has it and it is
 * still valid; -EAGAIN when a write raced with another replica's (look
 * again next time); other errors are the API's. */
static int try_acquire_or_renew(LeaderElector *le)
{
        char now[K8S_MICROTIME_MAX];
        k8s_format_microtime(now_realtime_us(), now, sizeof(now));
        K8sError e = {0};
        cleanup_json json_object *cur = NULL;
        int r = k8s_get(le->client, &k8s_leases, le->cfg.namespace, le->cfg.lease_name, &cur, &e);
        if (r == -ENOENT) {
                cleanup_json json_object *fresh = new_lease(le);
                K8sLeaseRecord rec = {.holder = (char *) le->cfg.identity,
                                      .duration_s = duration_s(le),
                                      .acquire_time = now,
                                      .renew_time = now};
                json_object *out = NULL;
                r = k8s_lease_record_to_json(&rec, fresh);
                if (r >= 0)
                        r = k8s_create(le->client, &k8s_leases, le->cfg.namespace, fresh, &out, &e);
                if (r == -EEXIST)
                        return -EAGAIN; /* another replica created it first: read it next time */
                if (r < 0)
                        goto fail;
                json_object_put(le->lease);
                le->lease = out;
                return observe(le, &rec);
        }
        if (r < 0)
                goto fail;

        K8sLeaseRecord old = {0};
        r = k8s_lease_record_from_json(cur, &old);
        if (r < 0)
                return r;
        r = observe(le, &old);
        LeaderDecision d = leader_decide(&le->observed, le->observed_at_us, now_monotonic_us(),
                                         le->cfg.identity);
        if (r < 0 || d == LEADER_WAIT) {
                k8s_lease_record_done(&old);
                return r < 0 ? r : -EBUSY;
        }
        K8sLeaseRecord rec = {.holder = (char *) le->cfg.identity,
                              .duration_s = duration_s(le),
                              .acquire_time = now,
                              .renew_time = now,
                              .transitions = old.transitions};
        if (d == LEADER_RENEW && *old.acquire_time)
                rec.acquire_time = old.acquire_time;
        if (d == LEADER_TAKE && !streq(old.holder, le->cfg.identity))
                rec.transitions++;
        r = k8s_lease_record_to_json(&rec, cur);
        json_object *out = NULL;
        if (r >= 0)
                r = k8s_update(le->client, &k8s_leases, cur, &out, &e);
        if (r >= 0) {
                json_object_put(le->lease);
                le->lease = out;
                r = observe(le, &rec);
        }
        k8s_lease_record_done(&old);
        if (r == -EBUSY || r == -ENOENT)
                return -EAGAIN; /* written or deleted meanwhile: look again next time */
        if (r < 0)
                goto fail;
        return 0;
fail:
        log_full(LOG_LEVEL_WARNING, r, NULL,
                 "Lease %s/%s: cannot take or renew it (HTTP %ld %s: %s)", le->cfg.namespace,
                 le->cfg.lease_name, e.status, e.reason, e.message);
        return r;
}

/* Waits ms or until stopping (lock held); true when stopping. */
static bool wait_locked(LeaderElector *le, long ms)
{
        struct timespec ts;
        deadline_after_ms(&ts, ms);
        while (!le->stopping && pthread_cond_timedwait(&le->cond, &le->lock, &ts) == 0)
                ;
        return le->stopping;
}

static bool renewed_in_time(const LeaderElector *le, uint64_t now)
{
        return now < le->renewed_at_us + (uint64_t) le->cfg.renew_deadline_ms * 1000u;
}

static void *elector_main(void *arg)
{
        LeaderElector *le = arg;
        unsigned seed = (unsigned) now_monotonic_us();
        log_info("leader election: Lease %s/%s as %s (duration %ld ms, renew deadline %ld ms, "
                 "retry period %ld ms)",
                 le->cfg.namespace, le->cfg.lease_name, le->cfg.identity, le->cfg.lease_duration_ms,
                 le->cfg.renew_deadline_ms, le->cfg.retry_period_ms);
        pthread_mutex_lock(&le->lock);
        while (!le->stopping) {
                pthread_mutex_unlock(&le->lock);
                int r = try_acquire_or_renew(le);
                uint64_t now = now_monotonic_us();
                pthread_mutex_lock(&le->lock);
                if (le->stopping)
                        break;
                if (le->leading) {
                        if (r == 0)
                                le->renewed_at_us = now;
                        else if (r == -EBUSY || !renewed_in_time(le, now)) {
                                /* Workers see this before their next write. */
                                le->leading = false;
                                le->term++;
                                pthread_cond_broadcast(&le->cond);
                                free(le->waiting_for);
                                le->waiting_for = NULL;
                                if (r == -EBUSY) {
                                        log_error("lost the leader Lease %s/%s to %s: stopped "
                                                  "reconciling, standing by",
                                                  le->cfg.namespace, le->cfg.lease_name,
                                                  le->observed.holder);
                                        le->waiting_for = strdup(le->observed.holder);
                                } else
                                        log_error("lost the leader Lease %s/%s: not renewed for "
                                                  "%ld ms: stopped reconciling, standing by",
                                                  le->cfg.namespace, le->cfg.lease_name,
                                                  le->cfg.renew_deadline_ms);
                        }
                } else if (r == -EBUSY) {
                        log_waiting(le, le->observed.holder);
                } else if (r == 0) {
                        /* Logged before any worker can act in the new term. */
                        log_info("became the leader: Lease %s/%s held by %s (transitions %ld)",
                                 le->cfg.namespace, le->cfg.lease_name, le->cfg.identity,
                                 le->observed.transitions);
                        le->leading = true;
                        le->term++;
                        le->renewed_at_us = now;
                        pthread_cond_broadcast(&le->cond);
                        pthread_mutex_unlock(&le->lock);
                        free(le->waiting_for);
                        le->waiting_for = NULL;
                        if (le->cfg.on_started_leading)
                                le->cfg.on_started_leading(le->cfg.userdata);
                        pthread_mutex_lock(&le->lock);
                }
                long delay = le->cfg.retry_period_ms;
                /* Standing by: client-go's jitter (up to 1.2 x the period), so
                 * replicas do not ask in lock step. */
                if (!le->leading)
                        delay += (long) ((double) delay * 0.2 * (rand_r(&seed) / (RAND_MAX + 1.0)));
                if (wait_locked(le, delay))
                        break;
        }
        pthread_mutex_unlock(&le->lock);
        return NULL;
}

int leader_start(K8sClient *client, const LeaderConfig *cfg, LeaderElector **ret)
{
        if (leader_config_check(cfg) || !cfg->namespace) {
                k8s_client_free(client);
                return -EINVAL;
        }
        LeaderElector *le = calloc(1, sizeof(*le));
        if (!le) {
                k8s_client_free(client);
                return -ENOMEM;
        }
        le->client = client;
        le->cfg = *cfg;
        pthread_mutex_init(&le->lock, NULL);
        cond_init_monotonic(&le->cond);
        /* No request outlives the renew deadline. */
        k8s_client_set_timeout(client, cfg->renew_deadline_ms);
        int r = -pthread_create(&le->thread, NULL, elector_main, le);
        if (r < 0) {
                le->thread_started = false;
                leader_free(le);
                return r;
        }
        le->thread_started = true;
        *ret = le;
        return 0;
}

void leader_stop(LeaderElector *le)
{
        if (!le)
                return;
        pthread_mutex_lock(&le->lock);
        if (!le->stopping) {
                le->stopping = true;
                le->held_at_stop = le->leading;
                le->leading = false;
                le->term++;
                pthread_cond_broadcast(&le->cond);
        }
        pthread_mutex_unlock(&le->lock);
        if (le->thread_started) {
                (void) pthread_join(le->thread, NULL);
                le->thread_started = false;
        }
}

/* client-go's release: holder emptied, transitions kept, so that a standby
 * replica takes the Lease at its next attempt instead of waiting for it to
 * expire. */
static void release(LeaderElector *le)
{
        if (!le->lease)
                return;
        char now[K8S_MICROTIME_MAX];
        k8s_format_microtime(now_realtime_us(), now, sizeof(now));
        K8sLeaseRecord rec = {.holder = "",
                              .duration_s = 1,
                              .acquire_time = now,
                              .renew_time = now,
                              .transitions = le->observed.transitions};
        K8sError e = {0};
        int r = k8s_lease_record_to_json(&rec, le->lease);
        if (r >= 0)
                r = k8s_update(le->client, &k8s_leases, le->lease, NULL, &e);
        if (r < 0)
                log_full(LOG_LEVEL_WARNING, r, NULL,
                         "cannot release the leader Lease %s/%s (HTTP %ld %s: %s)",
                         le->cfg.namespace, le->cfg.lease_name, e.status, e.reason, e.message);
        else
                log_info("released the leader Lease %s/%s", le->cfg.namespace, le->cfg.lease_name);
}

void leader_free(LeaderElector *le)
{
        if (!le)
                return;
        leader_stop(le);
        if (le->held_at_stop)
                release(le);
        k8s_client_free(le->client);
        json_object_put(le->lease);
        k8s_lease_record_done(&le->observed);
        free(le->waiting_for);
        pthread_mutex_destroy(&le->lock);
        pthread_cond_destroy(&le->cond);
        free(le);
}

bool leader_is_leading(LeaderElector *le)
{
        if (!le)
                return true;
        pthread_mutex_lock(&le->lock);
        bool r = le->leading && renewed_in_time(le, now_monotonic_us());
        pthread_mutex_unlock(&le->lock);
        return r;
}

bool leader_wait(LeaderElector *le)
{
        if (!le)
                return true;
        pthread_mutex_lock(&le->lock);
        while (!le->stopping && !le->leading)
                pthread_cond_wait(&le->cond, &le->lock);
        bool r = !le->stopping;
        pthread_mutex_unlock(&le->lock);
        return r;
}

bool leader_begin(LeaderElector *le)
{
        if (!le)
                return true;
        pthread_mutex_lock(&le->lock);
        bool r = le->leading;
        work_term = le->term;
        pthread_mutex_unlock(&le->lock);
        return r;
}

int leader_check(LeaderElector *le)
{
        if (!le)
                return 0;
        pthread_mutex_lock(&le->lock);
        bool ok = le->leading && le->term == work_term && renewed_in_time(le, now_monotonic_us());
        pthread_mutex_unlock(&le->lock);
        if (!ok)
                log_debug("not the leader (any more): not acting");
        return ok ? 0 : -ECANCELED;
}

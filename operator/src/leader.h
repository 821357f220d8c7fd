/* Leader election with a coordination.k8s.io/v1 Lease, after client-go's
 * leaderelection package (docs/operator.md, "Leader election").
 *
 * One thread tries to take the Lease every retry period (with jitter) while
 * another replica holds it, and renews it every retry period while it leads.
 * Expiry of someone else's Lease is judged by the local monotonic clock from
 * the moment this replica last saw the record change (never by comparing the
 * remote renewTime with the local wall clock), so clock skew between
 * replicas does not matter.
 *
 * Leadership ends (at once, before any further write) when a renewal has not
 * succeeded for the renew deadline or the Lease is seen with another holder;
 * the replica then stands by and may lead again later. Each period of
 * leadership is a term: a worker records the term it started with
 * (leader_begin) and may write only while that same term lasts
 * (leader_may_act), so work begun in an earlier term never writes in a later
 * one. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "sandpit/k8s-client.h"
#include "sandpit/k8s-lease.h"

#define LEADER_DEFAULT_LEASE_NAME "sandpit-operator"
#define LEADER_DEFAULT_LEASE_MS   15000L
#define LEADER_DEFAULT_RENEW_MS   10000L
#define LEADER_DEFAULT_RETRY_MS   2000L
#define LEADER_COMPONENT_LABEL    "sandpit-operator"

typedef struct LeaderElector LeaderElector;

typedef struct {
        const char *namespace;
        const char *lease_name;
        const char *identity;
        long lease_duration_ms;
        long renew_deadline_ms;
        long retry_period_ms;
        /* Called on the elector's thread right after this replica became the
         * leader (workers already pass leader_begin). */
        void (*on_started_leading)(void *userdata);
        void *userdata;
} LeaderConfig;

/* A Go duration ("15s", "500ms", "1.5s", "1m30s", "1h") or a bare number of
 * seconds, to ms (at least 1 ms, at most a day); -EINVAL otherwise. */
int leader_parse_duration_ms(const char *s, long *ret);
/* NULL when the configuration is usable, else why not (one line). */
const char *leader_config_check(const LeaderConfig *cfg);

typedef enum {
        LEADER_TAKE,  /* free, released or expired: try to take it */
        LEADER_RENEW, /* held by this identity: renew it */
        LEADER_WAIT,  /* held by another identity that is still valid */
} LeaderDecision;

/* The pure decision: observed is the record last seen, observed_at_us the
 * local monotonic time when it was first seen with these values. */
LeaderDecision leader_decide(const K8sLeaseRecord *observed, uint64_t observed_at_us,
                             uint64_t now_us, const char *identity);

/* Takes client (freed with the elector, or at once on failure); cfg's
 * strings must outlive the elector. */
int leader_start(K8sClient *client, const LeaderConfig *cfg, LeaderElector **ret);
/* Ends leadership at once (no worker acts after it returns), stops the
 * thread and wakes leader_wait(). Idempotent. */
void leader_stop(LeaderElector *le);
/* Releases the Lease if this replica held it when stopped (holder emptied,
 * as client-go's ReleaseOnCancel, so another replica takes over at once),
 * then frees. NULL is a no-op. */
void leader_free(LeaderElector *le);

/* NULL (no election) is always leading. */
bool leader_is_leading(LeaderElector *le);
/* Blocks until this replica leads (true) or the elector stops (false). */
bool leader_wait(LeaderElector *le);
/* A worker starts a piece of work: records the current term for this thread;
 * false when not leading. */
bool leader_begin(LeaderElector *le);
/* Leading, in the term this thread began with, and renewed within the renew
 * deadline. Checked before every write; 0 or -ECANCELED. A thread that never
 * called leader_begin() always fails it (fail-safe): any thread that acts
 * (workers, a periodic resync) begins its piece of work with leader_begin(). */
int leader_check(LeaderElector *le);

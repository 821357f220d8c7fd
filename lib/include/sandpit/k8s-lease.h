/* coordination.k8s.io/v1 Lease helpers shared by the agent's registration
 * Lease (node-agent/src/cluster.c) and the operator's leader election
 * (operator/src/leader.c): MicroTime formatting and the record in a Lease's
 * spec (client-go's LeaderElectionRecord). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#include "sandpit/k8s-client.h"

extern const K8sResource k8s_leases;

/* buf >= this for a MicroTime. */
#define K8S_MICROTIME_MAX 32

/* MicroTime: "2026-11-22T12:00:00.000000Z" for a CLOCK_REALTIME time in µs. */
void k8s_format_microtime(uint64_t us, char *buf, size_t len);

/* The spec of a Lease, as strings where the API has MicroTime (compared,
 * never parsed: a leader judges expiry by its own clock). */
typedef struct {
        char *holder;       /* "" when absent or released */
        long duration_s;    /* leaseDurationSeconds, 0 when absent */
        char *acquire_time; /* "" when absent */
        char *renew_time;   /* "" when absent */
        long transitions;   /* leaseTransitions, 0 when absent */
} K8sLeaseRecord;

void k8s_lease_record_done(K8sLeaseRecord *rec);
/* Reads lease.spec (a Lease without a spec is an empty record). */
int k8s_lease_record_from_json(json_object *lease, K8sLeaseRecord *ret);
/* Writes rec into lease.spec (created when absent); an empty holder or time
 * is written as an empty string / left out as client-go does. */
int k8s_lease_record_to_json(const K8sLeaseRecord *rec, json_object *lease);
/* Same holder, duration, times and transitions. */
bool k8s_lease_record_equal(const K8sLeaseRecord *a, const K8sLeaseRecord *b);

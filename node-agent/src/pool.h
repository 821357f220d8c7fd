/* Warm pools (docs/performance.md#warm-pools): per template and resource
 * shape, sandboxes made ahead of time (container, init, cgroup, overlay,
 * netns) that wait in the sandbox table, invisible to every lookup by id. A
 * create of the same shape claims one: the caller's id, env, secret env,
 * user, labels, timeout and egress policy are applied to it, and a
 * background thread makes a new one. A pooled sandbox is used once: claimed,
 * it is the caller's until deleted; nothing goes back to a pool.
 *
 * Pools count against the node's capacity (--capacity-cpu/--capacity-memory,
 * as the Lease announces it) with the sandboxes' cpu and memory limits: a
 * pool fills only into room no sandbox uses, and gives room back (deletes
 * pooled sandboxes) when cold creates need it. */
#pragma once

#include <stdint.h>
#include <stdio.h>

#include <json-c/json.h>

#include "agent.h"

/* Starts the refill thread. capacity: cores and bytes the node offers. */
int pools_start(Agent *a, double capacity_cpu, uint64_t capacity_memory);
/* Stops the thread and deletes every pooled sandbox (claimed ones stay). */
void pools_stop(Agent *a);

/* --pool TEMPLATE[:KEY=VALUE[,KEY=VALUE...]]=SIZE (keys cpu, memory, pids,
 * disk, name) as a pool name and the body PUT /v1/pools/NAME takes. */
int pool_flag_parse(const char *arg, char **ret_name, json_object **ret_body, char *err,
                    size_t errlen);

/* Creates or changes a pool from {"template", "cpu", "memory", "pids",
 * "disk", "size"}: -EINVAL (err), -ENOENT (no such template), -EEXIST
 * (another pool has this shape). *ret: the pool's view. */
int pool_put(Agent *a, const char *name, json_object *body, json_object **ret, char *err,
             size_t errlen);
/* Removes a pool; its waiting sandboxes are deleted in the background. */
int pool_remove(Agent *a, const char *name);
/* One pool's view (-ENOENT), or every pool's with the node's capacity (name NULL). */
int pool_get_json(Agent *a, const char *name, json_object **ret);

/* Claims a pooled sandbox for a create request of a pool's shape. 0: spec
 * taken, *ret_obj the sandbox; -ENOENT: no pool of that shape has one ready
 * (or the claim could not be finished): spec untouched, create it cold.
 * Other errors as sandbox_create(). */
int pool_claim(Agent *a, SandboxSpec *spec, json_object **ret_obj, char *err, size_t errlen);
/* Tells the refill thread the node's use changed (a cold create, a delete). */
void pool_kick(Agent *a);

/* The pools' Prometheus series, appended to /metrics. */
void pool_format_prometheus(Agent *a, FILE *f);

/* Metrics: per-sandbox samples (CPU, memory, disk, pids, OOM kills) kept in a
 * short ring by one sampler thread, and node counters exposed in Prometheus
 * text format (docs/metrics.md). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#include "agent.h"
#include "sandpit/prom.h"

#define METRICS_INTERVAL_MS 1000
#define METRICS_RING_LEN    300 /* 5 minutes at 1 s */
#define METRICS_BUCKETS     15
/* A sandbox whose metrics were asked for (current sample or window) in the
 * last METRICS_WATCH_S seconds is sampled every METRICS_INTERVAL_MS; the others
 * once every METRICS_BACKGROUND_TICKS intervals, spread over the ticks. */
#define METRICS_WATCH_S          300
#define METRICS_BACKGROUND_TICKS 30

/* Upper bounds (seconds) of the create latency histogram; +Inf is implied. */
extern const double metrics_create_buckets[METRICS_BUCKETS];

typedef struct {
        uint64_t ts_us;        /* CLOCK_REALTIME */
        double cpu_count;      /* the CPU quota in cores */
        double cpu_used_cores; /* cores busy on average since the previous sample */
        double cpu_used_pct;   /* the same as a percentage of the quota */
        double cpu_host_pct;   /* the same as a percentage of the node's online cores */
        unsigned host_cores;   /* the node's online cores when sampled */
        uint64_t cpu_usage_ns; /* cumulative CPU time */
        uint64_t memory_used;
        uint64_t memory_limit;
        uint64_t memory_peak;
        uint64_t disk_used; /* the sandbox's tmpfs (its writable layer) */
        uint64_t disk_total;
        uint64_t pids;
        uint64_t pids_limit;
        uint64_t oom_kills;
} MetricsSample;

#define METRICS_STATES 5 /* creating, running, exited, deleting, paused (SandboxState) */

typedef struct {
        uint64_t sandboxes[METRICS_STATES];
        uint64_t creations;
        uint64_t create_failures;
        uint64_t execs;
        uint64_t teardown_pending; /* deleted, teardown not ended (sandbox.h) */
        uint64_t metrics_reads;    /* sandbox samples read (sampler and on demand) */
        uint64_t metrics_watched;  /* sandboxes sampled every interval */
        PromHistogram create;      /* create latency (metrics_create_buckets) */
} MetricsNode;

typedef struct AgentMetrics AgentMetrics;

int metrics_new(AgentMetrics **ret);
void metrics_free(AgentMetrics *m);
/* The sampler thread: one sample a second of every running or paused sandbox
 * whose metrics were asked for lately, one every METRICS_BACKGROUND_TICKS
 * seconds of the others. */
int metrics_start(Agent *a);
void metrics_stop(Agent *a);

void metrics_note_create(AgentMetrics *m, bool ok, double seconds);
void metrics_note_exec(AgentMetrics *m);

/* Counters and sandboxes by state (takes a->lock, then the metrics lock). */
void metrics_node_snapshot(Agent *a, MetricsNode *ret);
/* The Prometheus text exposition (format 0.0.4) of n. */
int metrics_format_prometheus(const MetricsNode *n, char **ret, size_t *ret_len);

/* A sample read now; CPU use is measured against the newest ring sample (or,
 * with none, since the sandbox was created). Starts or extends the sandbox's
 * 1 s sampling. -ENOENT when the sandbox is unknown (or being created). */
int metrics_sample_now(Agent *a, const char *id, MetricsSample *ret);
/* The ring's samples with start_us <= ts_us <= end_us, oldest first (possibly
 * none); a sample is read now first when the newest is older than an interval.
 * Starts or extends the sandbox's 1 s sampling. -ENOENT when the sandbox is
 * unknown. */
int metrics_window(Agent *a, const char *id, uint64_t start_us, uint64_t end_us,
                   MetricsSample **ret, size_t *ret_n);
/* Sets cur's cpu_used_cores/pct from the CPU time and wall time since prev. */
void metrics_cpu_between(const MetricsSample *prev, MetricsSample *cur);
json_object *metrics_sample_to_json(const MetricsSample *s);

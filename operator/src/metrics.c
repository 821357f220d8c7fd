/* The operator's /metrics in Prometheus text format 0.0.4 (docs/operator.md,
 * "Metrics"). Reconcile counters and the latency histogram are process-wide,
 * behind one mutex (the workers update them); the gauges are read at scrape
 * time from the work queue and the informer caches. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "operator.h"
#include "sandpit/macro.h"
#include "sandpit/prom.h"
#include "sandpit/util.h"

/* Seconds: a reconcile is a few API calls (ms) up to an agent's create (s). */
static const double reconcile_bounds[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                          0.25,  0.5,    1,     2.5,  5,     10,   30};

const char *const op_metrics_results[OP_RESULTS] = {[OP_RESULT_SUCCESS] = "success",
                                                    [OP_RESULT_REQUEUE] = "requeue",
                                                    [OP_RESULT_ERROR] = "error"};

/* Every phase reconcile.c writes; an object without one yet counts as Pending. */
const char *const op_metrics_phases[OP_PHASES] = {"Pending", "Running", "Paused", "Expired",
                                                  "Failed"};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t reconciles[OP_RESULTS];
static PromHistogram duration = {.bounds = reconcile_bounds,
                                 .n_bounds = ARRAY_SIZE(reconcile_bounds)};
static double start_time_s;

__attribute__((constructor)) static void note_start(void)
{
        start_time_s = (double) now_realtime_us() / 1e6;
}

OpResult op_metrics_result(long reconcile_ret)
{
        return reconcile_ret < 0   ? OP_RESULT_ERROR
               : reconcile_ret > 0 ? OP_RESULT_REQUEUE
                                   : OP_RESULT_SUCCESS;
}

void op_metrics_note_reconcile(long reconcile_ret, double seconds)
{
        (void) pthread_mutex_lock(&lock);
        reconciles[op_metrics_result(reconcile_ret)]++;
        prom_histogram_observe(&duration, seconds);
        (void) pthread_mutex_unlock(&lock);
}

int op_metrics_phase_index(const char *phase)
{
        if (!phase || !*phase)
                return 0;
        for (size_t i = 0; i < OP_PHASES; i++)
                if (streq(phase, op_metrics_phases[i]))
                        return (int) i;
        return -1;
}

static void count_phase(const char *key, json_object *obj, void *userdata)
{
        (void) key;
        OpMetricsSnapshot *s = userdata;
        json_object *st = NULL, *ph = NULL;
        const char *phase = NULL;
        if (json_object_object_get_ex(obj, "status", &st) &&
            json_object_object_get_ex(st, "phase", &ph) &&
            json_object_is_type(ph, json_type_string))
                phase = json_object_get_string(ph);
        int i = op_metrics_phase_index(phase);
        if (i >= 0)
                s->sandboxes[i]++;
        else
                s->sandboxes_other++;
}

static void informer_stats(K8sInformer *inf, OpInformerStats *ret)
{
        K8sWatchStats st = {0};
        if (inf)
                k8s_informer_get_stats(inf, &st);
        *ret = (OpInformerStats){.lists = st.lists,
                                 .events = st.events,
                                 .gone = st.gone,
                                 .synced = inf && k8s_informer_has_synced(inf)};
}

void op_metrics_snapshot(Operator *op, OpMetricsSnapshot *ret)
{
        OpMetricsSnapshot s = {.start_time_s = start_time_s};
        (void) pthread_mutex_lock(&lock);
        memcpy(s.reconciles, reconciles, sizeof(s.reconciles));
        s.duration = duration;
        (void) pthread_mutex_unlock(&lock);
        /* A scrape may come while main() is still making these (main.c's
         * setup() publishes each with a release store). */
        K8sWorkQueue *queue = __atomic_load_n(&op->queue, __ATOMIC_ACQUIRE);
        K8sInformer *sbx = __atomic_load_n(&op->sandboxes, __ATOMIC_ACQUIRE);
        K8sInformer *leases = __atomic_load_n(&op->leases, __ATOMIC_ACQUIRE);
        if (queue) {
                s.queue_depth = k8s_workqueue_len(queue);
                s.queue_delayed = k8s_workqueue_delayed(queue);
        }
        if (sbx)
                k8s_informer_foreach(sbx, count_phase, &s);
        informer_stats(sbx, &s.informers[0]);
        informer_stats(leases, &s.informers[1]);
        s.leading = leader_is_leading(op->leader);
        s.orphan_passes = orphan_resync_passes_total();
        s.orphans_removed = orphan_resync_removed_total();
        *ret = s;
}

static void informer_metric(FILE *f, const char *name, const char *type, const char *help,
                            const OpMetricsSnapshot *s, size_t field)
{
        static const char *const resources[] = {"sandboxes", "leases"};
        prom_write_header(f, name, type, help);
        for (size_t i = 0; i < ARRAY_SIZE(resources); i++) {
                char labels[64];
                snprintf(labels, sizeof(labels), "resource=\"%s\"", resources[i]);
                const OpInformerStats *is = &s->informers[i];
                unsigned long v = field == 0   ? is->lists
                                  : field == 1 ? is->events
                                  : field == 2 ? is->gone
                                               : (unsigned long) is->synced;
                prom_write_sample(f, name, labels, (double) v);
        }
}

int op_metrics_format(const OpMetricsSnapshot *s, char **ret, size_t *ret_len)
{
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);
        if (!f)
                return -ENOMEM;
        prom_write_header(f, "sandpit_operator_reconciles_total", "counter",
                          "Sandbox reconciles by result: success (done), requeue (done, "
                          "checked again after a delay), error (retried with backoff).");
        for (size_t i = 0; i < OP_RESULTS; i++) {
                char labels[32];
                snprintf(labels, sizeof(labels), "result=\"%s\"", op_metrics_results[i]);
                prom_write_sample(f, "sandpit_operator_reconciles_total", labels,
                                  (double) s->reconciles[i]);
        }
        prom_write_histogram(f, "sandpit_operator_reconcile_duration_seconds",
                             "Time one reconcile of a Sandbox took, any result.", &s->duration);
        prom_write_metric(f, "sandpit_operator_workqueue_depth", "gauge",
                          "Keys ready in the work queue, waiting for a worker.",
                          (double) s->queue_depth);
        prom_write_metric(f, "sandpit_operator_workqueue_delayed", "gauge",
                          "Keys waiting for a requeue delay or a retry backoff.",
                          (double) s->queue_delayed);
        prom_write_header(f, "sandpit_operator_sandboxes", "gauge",
                          "Sandbox objects in the operator's cache by status.phase (none yet: "
                          "Pending; any other value: Unknown).");
        for (size_t i = 0; i < OP_PHASES; i++) {
                char labels[32];
                snprintf(labels, sizeof(labels), "phase=\"%s\"", op_metrics_phases[i]);
                prom_write_sample(f, "sandpit_operator_sandboxes", labels,
                                  (double) s->sandboxes[i]);
        }
        prom_write_sample(f, "sandpit_operator_sandboxes", "phase=\"Unknown\"",
                          (double) s->sandboxes_other);
        informer_metric(f, "sandpit_operator_informer_synced", "gauge",
                        "1 once the informer's first list is in its cache.", s, 3);
        informer_metric(f, "sandpit_operator_informer_lists_total", "counter",
                        "Lists by the informer: the first one and relists.", s, 0);
        informer_metric(f, "sandpit_operator_informer_events_total", "counter",
                        "Watch events (ADDED, MODIFIED, DELETED) the informer received.", s, 1);
        informer_metric(f, "sandpit_operator_informer_gone_total", "counter",
                        "410 Gone answers that made the informer relist.", s, 2);
        prom_write_metric(f, "sandpit_operator_orphan_resync_passes_total", "counter",
                          "Completed passes of the orphan resync.", (double) s->orphan_passes);
        prom_write_metric(f, "sandpit_operator_orphans_removed_total", "counter",
                          "Sandboxes the orphan resync removed from agents (no object claimed "
                          "them).",
                          (double) s->orphans_removed);
        prom_write_metric(f, "sandpit_operator_leader", "gauge",
                          "1 while this replica holds the leader Lease (or runs without "
                          "election) and reconciles; 0 on standby.",
                          s->leading ? 1 : 0);
        prom_write_header(f, "sandpit_operator_build_info", "gauge",
                          "The operator's version (always 1).");
        prom_write_sample(f, "sandpit_operator_build_info", "version=\"" OPERATOR_VERSION "\"", 1);
        prom_write_metric(f, "process_start_time_seconds", "gauge",
                          "Start time of the process since the unix epoch in seconds.",
                          s->start_time_s);
        if (fclose(f) != 0) {
                free(buf);
                return -ENOMEM;
        }
        *ret = buf;
        *ret_len = len;
        return 0;
}

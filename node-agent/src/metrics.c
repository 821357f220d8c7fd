/* Per-sandbox sample rings and node counters (see metrics.h).
 *
 * Locking: AgentMetrics.lock protects the rings and the counters. It is never
 * held while a->lock is taken (the sampler copies what it needs out of the
 * sandbox table first), nor across cgroup or filesystem reads. */
#include "metrics.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "cgroup.h"
#include "sandbox.h"
#include "sandpit/log.h"
#include "sandpit/macro.h"
#include "sandpit/util.h"

const double metrics_create_buckets[METRICS_BUCKETS] = {
        0.001, 0.0025, 0.005, 0.01, 0.025, /* warm pool claims */
        0.05,  0.1,    0.25,  0.5,  1,     2.5, 5, 10, 30, 60};

static const char *const state_names[METRICS_STATES] = {
        [SANDBOX_CREATING] = "creating", [SANDBOX_RUNNING] = "running", [SANDBOX_EXITED] = "exited",
        [SANDBOX_DELETING] = "deleting", [SANDBOX_PAUSED] = "paused",
};

typedef struct Ring {
        struct Ring *next;
        char *id;
        uint64_t created_us; /* tells a sandbox from a later one with the same id */
        size_t head;         /* next slot to write */
        size_t n;
        MetricsSample s[METRICS_RING_LEN];
} Ring;

struct AgentMetrics {
        pthread_mutex_t lock;
        pthread_cond_t cond;
        pthread_t thread;
        bool started;
        bool stopping;
        Ring *rings;
        uint64_t creations, create_failures, execs;
        PromHistogram create;
};

/* What sampling a sandbox needs, copied out of the table under a->lock. */
typedef struct {
        char *id;
        char *name; /* its cgroup's */
        char *disk_dir;
        double cpu;
        uint64_t created_us;
        bool paused;
} Target;

static void targets_free(Target *t, size_t n)
{
        for (size_t i = 0; i < n; i++) {
                free(t[i].id);
                free(t[i].name);
                free(t[i].disk_dir);
        }
        free(t);
}

static int target_fill(const Sandbox *sb, Target *t)
{
        t->cpu = sb->spec.cpu;
        t->created_us = sb->created_us;
        t->paused = sb->state == SANDBOX_PAUSED;
        t->id = strdup(sb->spec.id);
        t->name = strdup(sb->name);
        if (!t->id || !t->name || asprintf(&t->disk_dir, "%s/disk", sb->dir) < 0) {
                t->disk_dir = NULL;
                return -ENOMEM;
        }
        return 0;
}

static bool sampled_state(SandboxState s)
{
        return s == SANDBOX_RUNNING || s == SANDBOX_PAUSED;
}

static bool target_wanted(const Sandbox *sb, const char *id)
{
        if (sb->spec.pool) /* waiting in a warm pool: nobody's yet */
                return false;
        return id ? streq(sb->spec.id, id) && sb->state != SANDBOX_CREATING
                  : sampled_state(sb->state);
}

typedef struct {
        const char *id;
        Target *t;
        size_t n, cap;
} Collect;

/* Called under the table's lock (sandbox_foreach). */
static int collect_one(const Sandbox *sb, void *userdata)
{
        Collect *c = userdata;
        if (!target_wanted(sb, c->id))
                return 0;
        if (c->n == c->cap) {
                size_t cap = c->cap ? c->cap * 2 : 8;
                Target *t = reallocarray(c->t, cap, sizeof(*t));
                if (!t)
                        return -ENOMEM;
                memset(t + c->cap, 0, (cap - c->cap) * sizeof(*t));
                c->t = t;
                c->cap = cap;
        }
        return target_fill(sb, &c->t[c->n++]);
}

/* Every running or paused sandbox (id == NULL), or just that one; *ret is
 * NULL when there are none. */
static int collect_targets(Agent *a, const char *id, Target **ret, size_t *ret_n)
{
        Collect c = {.id = id};
        int r = sandbox_foreach(a, collect_one, &c);
        if (r < 0) {
                targets_free(c.t, c.n);
                return -ENOMEM;
        }
        *ret = c.t;
        *ret_n = c.n;
        return 0;
}

static int read_sample(Agent *a, const Target *t, MetricsSample *ret)
{
        CgStats st = {0};
        int r = cg_read_stats(a->cg, t->name, &st);
        if (r < 0)
                return r;
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        MetricsSample s = {
                .ts_us = now_realtime_us(),
                .host_cores = cores > 0 ? (unsigned) cores : 0,
                .cpu_count = t->cpu,
                .cpu_usage_ns = st.cpu_usage_ns,
                .memory_used = st.memory_current,
                .memory_limit = st.memory_limit,
                .memory_peak = st.memory_peak,
                .pids = st.pids_current,
                .pids_limit = st.pids_limit,
                .oom_kills = st.oom_kills,
        };
        struct statvfs vfs;
        if (t->disk_dir && statvfs(t->disk_dir, &vfs) == 0) {
                s.disk_total = (uint64_t) vfs.f_blocks * vfs.f_frsize;
                s.disk_used = (uint64_t) (vfs.f_blocks - vfs.f_bfree) * vfs.f_frsize;
        }
        *ret = s;
        return 0;
}

void metrics_cpu_between(const MetricsSample *prev, MetricsSample *cur)
{
        cur->cpu_used_cores = 0;
        cur->cpu_used_pct = 0;
        cur->cpu_host_pct = 0;
        if (!prev || cur->ts_us <= prev->ts_us || cur->cpu_usage_ns < prev->cpu_usage_ns)
                return;
        double wall_ns = (double) (cur->ts_us - prev->ts_us) * 1000.0;
        cur->cpu_used_cores = (double) (cur->cpu_usage_ns - prev->cpu_usage_ns) / wall_ns;
        if (cur->cpu_count > 0)
                cur->cpu_used_pct = cur->cpu_used_cores / cur->cpu_count * 100.0;
        if (cur->host_cores > 0)
                cur->cpu_host_pct = cur->cpu_used_cores / cur->host_cores * 100.0;
}

static Ring *ring_find_locked(AgentMetrics *m, const char *id)
{
        for (Ring *r = m->rings; r; r = r->next)
                if (streq(r->id, id))
                        return r;
        return NULL;
}

static const MetricsSample *ring_newest(const Ring *r)
{
        if (!r || r->n == 0)
                return NULL;
        return &r->s[(r->head + METRICS_RING_LEN - 1) % METRICS_RING_LEN];
}

static void ring_push_locked(AgentMetrics *m, const Target *t, MetricsSample *s)
{
        Ring *r = ring_find_locked(m, t->id);
        if (r && r->created_us != t->created_us) {
                r->n = r->head = 0; /* a new sandbox under an old id */
                r->created_us = t->created_us;
        }
        if (!r) {
                r = calloc(1, sizeof(*r));
                if (!r || !(r->id = strdup(t->id))) {
                        free(r);
                        return;
                }
                r->created_us = t->created_us;
                r->next = m->rings;
                m->rings = r;
        }
        metrics_cpu_between(ring_newest(r), s);
        r->s[r->head] = *s;
        r->head = (r->head + 1) % METRICS_RING_LEN;
        if (r->n < METRICS_RING_LEN)
                r->n++;
}

/* Drops the rings of sandboxes that are gone (not among the n targets). */
static void prune_locked(AgentMetrics *m, const Target *t, size_t n)
{
        for (Ring **p = &m->rings; *p;) {
                bool live = false;
                for (size_t i = 0; i < n && !live; i++)
                        live = streq(t[i].id, (*p)->id);
                if (live) {
                        p = &(*p)->next;
                        continue;
                }
                Ring *dead = *p;
                *p = dead->next;
                free(dead->id);
                free(dead);
        }
}

static void sample_all(Agent *a)
{
        AgentMetrics *m = a->metrics;
        Target *t = NULL;
        size_t n = 0;
        if (collect_targets(a, NULL, &t, &n) < 0)
                return;
        for (size_t i = 0; i < n; i++) {
                MetricsSample s;
                if (read_sample(a, &t[i], &s) < 0)
                        continue; /* deleted meanwhile */
                (void) pthread_mutex_lock(&m->lock);
                ring_push_locked(m, &t[i], &s);
                (void) pthread_mutex_unlock(&m->lock);
        }
        (void) pthread_mutex_lock(&m->lock);
        prune_locked(m, t, n);
        (void) pthread_mutex_unlock(&m->lock);
        targets_free(t, n);
}

static void *sampler_main(void *arg)
{
        Agent *a = arg;
        AgentMetrics *m = a->metrics;
        struct timespec next;
        (void) clock_gettime(CLOCK_MONOTONIC, &next);
        for (;;) {
                sample_all(a);
                timespec_add_ms(&next, METRICS_INTERVAL_MS);
                (void) pthread_mutex_lock(&m->lock);
                while (!m->stopping &&
                       pthread_cond_timedwait(&m->cond, &m->lock, &next) != ETIMEDOUT)
                        ;
                bool stop = m->stopping;
                (void) pthread_mutex_unlock(&m->lock);
                if (stop)
                        return NULL;
                /* After a stall (suspend, overload) sample now, not in a burst. */
                struct timespec now;
                (void) clock_gettime(CLOCK_MONOTONIC, &now);
                if (now.tv_sec > next.tv_sec + 1)
                        next = now;
        }
}

int metrics_new(AgentMetrics **ret)
{
        AgentMetrics *m = calloc(1, sizeof(*m));
        if (!m)
                return -ENOMEM;
        cond_init_monotonic(&m->cond);
        (void) pthread_mutex_init(&m->lock, NULL);
        prom_histogram_init(&m->create, metrics_create_buckets, METRICS_BUCKETS);
        *ret = m;
        return 0;
}

void metrics_free(AgentMetrics *m)
{
        if (!m)
                return;
        while (m->rings) {
                Ring *r = m->rings;
                m->rings = r->next;
                free(r->id);
                free(r);
        }
        (void) pthread_cond_destroy(&m->cond);
        (void) pthread_mutex_destroy(&m->lock);
        free(m);
}

int metrics_start(Agent *a)
{
        AgentMetrics *m = a->metrics;
        int r = -pthread_create(&m->thread, NULL, sampler_main, a);
        if (r == 0)
                m->started = true;
        return r;
}

void metrics_stop(Agent *a)
{
        AgentMetrics *m = a->metrics;
        if (!m || !m->started)
                return;
        (void) pthread_mutex_lock(&m->lock);
        m->stopping = true;
        (void) pthread_cond_signal(&m->cond);
        (void) pthread_mutex_unlock(&m->lock);
        (void) pthread_join(m->thread, NULL);
        m->started = false;
}

void metrics_note_create(AgentMetrics *m, bool ok, double seconds)
{
        (void) pthread_mutex_lock(&m->lock);
        if (ok) {
                m->creations++;
                prom_histogram_observe(&m->create, seconds);
        } else {
                m->create_failures++;
        }
        (void) pthread_mutex_unlock(&m->lock);
}

void metrics_note_exec(AgentMetrics *m)
{
        (void) pthread_mutex_lock(&m->lock);
        m->execs++;
        (void) pthread_mutex_unlock(&m->lock);
}

static int count_state(const Sandbox *sb, void *userdata)
{
        MetricsNode *n = userdata;
        if (!sb->spec.pool && (unsigned) sb->state < METRICS_STATES)
                n->sandboxes[sb->state]++;
        return 0;
}

void metrics_node_snapshot(Agent *a, MetricsNode *ret)
{
        MetricsNode n = {0};
        (void) sandbox_foreach(a, count_state, &n);
        n.teardown_pending = sandbox_teardown_pending(a);
        AgentMetrics *m = a->metrics;
        (void) pthread_mutex_lock(&m->lock);
        n.creations = m->creations;
        n.create_failures = m->create_failures;
        n.execs = m->execs;
        n.create = m->create;
        (void) pthread_mutex_unlock(&m->lock);
        *ret = n;
}

static void counter(FILE *f, const char *name, const char *help, const char *type, uint64_t v)
{
        (void) fprintf(f, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", name, help, name, type, name,
                       (unsigned long long) v);
}

int metrics_format_prometheus(const MetricsNode *n, char **ret, size_t *ret_len)
{
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);
        if (!f)
                return -ENOMEM;
        (void) fputs("# HELP sandpit_sandboxes Sandboxes on this node by state.\n"
                     "# TYPE sandpit_sandboxes gauge\n",
                     f);
        for (size_t i = 0; i < METRICS_STATES; i++)
                (void) fprintf(f, "sandpit_sandboxes{state=\"%s\"} %llu\n", state_names[i],
                               (unsigned long long) n->sandboxes[i]);
        counter(f, "sandpit_sandbox_creations_total", "Sandboxes created successfully.", "counter",
                n->creations);
        counter(f, "sandpit_sandbox_create_failures_total",
                "Create requests that passed validation but failed.", "counter",
                n->create_failures);
        prom_write_histogram(f, "sandpit_sandbox_create_duration_seconds",
                             "Time from a valid create request to a sandbox ready to run "
                             "commands.",
                             &n->create);
        counter(f, "sandpit_exec_total", "Processes started through exec.", "counter", n->execs);
        counter(f, "sandpit_teardown_pending",
                "Deleted sandboxes whose teardown (unmount, cgroup, network, state) has not "
                "ended.",
                "gauge", n->teardown_pending);
        if (fclose(f) != 0) {
                free(buf);
                return -ENOMEM;
        }
        *ret = buf;
        *ret_len = len;
        return 0;
}

int metrics_sample_now(Agent *a, const char *id, MetricsSample *ret)
{
        Target *t = NULL;
        size_t n = 0;
        int r = collect_targets(a, id, &t, &n);
        if (r < 0)
                return r;
        if (n == 0) {
                targets_free(t, n);
                return -ENOENT;
        }
        MetricsSample s;
        r = read_sample(a, &t[0], &s);
        if (r == 0) {
                AgentMetrics *m = a->metrics;
                (void) pthread_mutex_lock(&m->lock);
                Ring *ring = ring_find_locked(m, id);
                const MetricsSample *prev = NULL;
                if (ring && ring->created_us == t[0].created_us && ring->n > 0) {
                        prev = ring_newest(ring);
                        /* Too close to the newest sample for a fair rate: the one before. */
                        if (s.ts_us - prev->ts_us < 200000 && ring->n > 1)
                                prev = &ring->s[(ring->head + METRICS_RING_LEN - 2) %
                                                METRICS_RING_LEN];
                }
                MetricsSample p = prev ? *prev : (MetricsSample){0};
                (void) pthread_mutex_unlock(&m->lock);
                metrics_cpu_between(prev ? &p : NULL, &s);
                *ret = s;
        }
        targets_free(t, n);
        return r < 0 ? -ENOENT : 0;
}

/* A sandbox API callers can see (not still being created) of id *userdata. */
static int is_listed(const Sandbox *sb, void *userdata)
{
        const char *const *id = userdata;
        return !sb->spec.pool && streq(sb->spec.id, *id) && sb->state != SANDBOX_CREATING;
}

int metrics_window(Agent *a, const char *id, uint64_t start_us, uint64_t end_us,
                   MetricsSample **ret, size_t *ret_n)
{
        const char *want = id;
        if (sandbox_foreach(a, is_listed, &want) <= 0)
                return -ENOENT;
        AgentMetrics *m = a->metrics;
        MetricsSample *out = calloc(METRICS_RING_LEN, sizeof(*out));
        if (!out)
                return -ENOMEM;
        size_t n = 0;
        (void) pthread_mutex_lock(&m->lock);
        Ring *r = ring_find_locked(m, id);
        for (size_t i = 0; r && i < r->n; i++) {
                const MetricsSample *s =
                        &r->s[(r->head + METRICS_RING_LEN - r->n + i) % METRICS_RING_LEN];
                if (s->ts_us >= start_us && s->ts_us <= end_us)
                        out[n++] = *s;
        }
        (void) pthread_mutex_unlock(&m->lock);
        *ret = out;
        *ret_n = n;
        return 0;
}

static void add_u64(json_object *o, const char *k, uint64_t v)
{
        (void) json_object_object_add(o, k, json_object_new_int64((int64_t) v));
}

static void add_double(json_object *o, const char *k, double v, int decimals)
{
        char buf[40];
        (void) snprintf(buf, sizeof(buf), "%.*f", decimals, v);
        (void) json_object_object_add(o, k, json_object_new_double_s(v, buf));
}

json_object *metrics_sample_to_json(const MetricsSample *s)
{
        json_object *o = json_object_new_object();
        if (!o)
                return NULL;
        char ts[40];
        format_rfc3339_us(s->ts_us, ts, sizeof(ts));
        (void) json_object_object_add(o, "timestamp", json_object_new_string(ts));
        add_u64(o, "timestamp_unix", s->ts_us / 1000000u);
        add_double(o, "cpu_count", s->cpu_count, 2);
        add_double(o, "cpu_used_pct", s->cpu_used_pct, 2);
        add_double(o, "cpu_used_cores", s->cpu_used_cores, 3);
        add_double(o, "cpu_host_pct", s->cpu_host_pct, 2);
        add_u64(o, "cpu_usage_ns", s->cpu_usage_ns);
        add_u64(o, "memory_used", s->memory_used);
        add_u64(o, "memory_limit", s->memory_limit);
        add_u64(o, "memory_peak", s->memory_peak);
        add_u64(o, "disk_used", s->disk_used);
        add_u64(o, "disk_total", s->disk_total);
        add_u64(o, "pids", s->pids);
        add_u64(o, "pids_limit", s->pids_limit);
        add_u64(o, "oom_kills", s->oom_kills);
        return o;
}

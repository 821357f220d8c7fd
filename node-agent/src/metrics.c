/* Per-sandbox sample rings and node counters (see metrics.h).
 *
 * Sampling is lazy: a sandbox whose metrics were asked for in the last
 * METRICS_WATCH_S seconds ("watched") is read every interval; the others once
 * every METRICS_BACKGROUND_TICKS intervals, each in the tick its id hashes to,
 * so an idle node of many sandboxes reads a thirtieth of them a second, not
 * all, and a window asked for later still has a coarse history.
 *
 * Locking: AgentMetrics.lock protects the rings and the counters. It may be
 * taken under a->lock (the sampler's walk of the sandbox table looks rings up
 * under both, briefly), never the other way round, and is never held across
 * cgroup or filesystem reads; nor is a->lock: the sampler copies what it
 * needs out of the sandbox table and reads outside both. */
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

#define RING_HASH    1024 /* buckets of the rings' hash table */
#define RING_SPAN_US ((uint64_t) METRICS_RING_LEN * METRICS_INTERVAL_MS * 1000)
#define WATCH_US     ((uint64_t) METRICS_WATCH_S * 1000000)

/* A sandbox's samples of the last RING_SPAN_US, oldest dropped first; the
 * array grows up to METRICS_RING_LEN as samples come (a background-only
 * sandbox keeps about ten). */
typedef struct Ring {
        struct Ring *next; /* in its hash bucket */
        char *id;
        uint32_t hash;
        uint64_t created_us;     /* tells a sandbox from a later one with the same id */
        uint64_t watch_until_us; /* sampled every interval until then */
        uint64_t seen_tick;      /* the last sampler walk that found the sandbox */
        size_t head;             /* next slot to write */
        size_t n, cap;
        MetricsSample *s;
} Ring;

struct AgentMetrics {
        pthread_mutex_t lock;
        pthread_cond_t cond;
        pthread_t thread;
        bool started;
        bool stopping;
        Ring *rings[RING_HASH];
        uint64_t tick; /* sampler walks begun */
        uint64_t creations, create_failures, execs, reads;
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

static int target_push(Target **t, size_t *n, size_t *cap, const Sandbox *sb)
{
        if (*n == *cap) {
                size_t c = *cap ? *cap * 2 : 8;
                Target *nt = reallocarray(*t, c, sizeof(*nt));
                if (!nt)
                        return -ENOMEM;
                memset(nt + *cap, 0, (c - *cap) * sizeof(*nt));
                *t = nt;
                *cap = c;
        }
        return target_fill(sb, &(*t)[(*n)++]);
}

/* FNV-1a */
static uint32_t id_hash(const char *id)
{
        uint32_t h = 2166136261u;
        for (const unsigned char *p = (const unsigned char *) id; *p; p++)
                h = (h ^ *p) * 16777619u;
        return h;
}

static Ring *ring_find_locked(AgentMetrics *m, const char *id, uint32_t h)
{
        for (Ring *r = m->rings[h % RING_HASH]; r; r = r->next)
                if (r->hash == h && streq(r->id, id))
                        return r;
        return NULL;
}

static void ring_free(Ring *r)
{
        if (!r)
                return;
        free(r->id);
        free(r->s);
        free(r);
}

/* The ring of sandbox id created at created_us, made or emptied as needed;
 * NULL when out of memory. */
static Ring *ring_get_locked(AgentMetrics *m, const char *id, uint64_t created_us)
{
        uint32_t h = id_hash(id);
        Ring *r = ring_find_locked(m, id, h);
        if (r && r->created_us != created_us) {
                r->n = r->head = 0; /* a new sandbox under an old id */
                r->watch_until_us = 0;
                r->created_us = created_us;
        }
        if (r)
                return r;
        r = calloc(1, sizeof(*r));
        if (!r || !(r->id = strdup(id))) {
                free(r);
                return NULL;
        }
        r->hash = h;
        r->created_us = created_us;
        r->seen_tick = m->tick; /* survives the sweep of a walk that missed it */
        r->next = m->rings[h % RING_HASH];
        m->rings[h % RING_HASH] = r;
        return r;
}

static const MetricsSample *ring_at(const Ring *r, size_t back)
{
        if (!r || back >= r->n)
                return NULL;
        return &r->s[(r->head + r->cap - 1 - back) % r->cap];
}

static const MetricsSample *ring_newest(const Ring *r)
{
        return ring_at(r, 0);
}

/* The i-th oldest sample. */
static const MetricsSample *ring_nth(const Ring *r, size_t i)
{
        return &r->s[(r->head + r->cap - r->n + i) % r->cap];
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
        return target_push(&c->t, &c->n, &c->cap, sb);
}

/* Sandbox id, unless unknown or being created (then *ret is NULL). */
static int collect_target(Agent *a, const char *id, Target **ret)
{
        Collect c = {.id = id};
        int r = sandbox_foreach(a, collect_one, &c);
        if (r < 0) {
                targets_free(c.t, c.n);
                return -ENOMEM;
        }
        *ret = c.t;
        return 0;
}

static int read_sample(Agent *a, const Target *t, MetricsSample *ret)
{
        AgentMetrics *m = a->metrics;
        (void) pthread_mutex_lock(&m->lock);
        m->reads++;
        (void) pthread_mutex_unlock(&m->lock);
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

/* Makes room for one more sample: drops those older than the ring's span,
 * then grows the array when it is full and below METRICS_RING_LEN. */
static int ring_room(Ring *r, uint64_t now_us)
{
        while (r->n > 0 && ring_nth(r, 0)->ts_us + RING_SPAN_US < now_us)
                r->n--;
        if (r->n < r->cap || r->cap == METRICS_RING_LEN)
                return 0;
        size_t cap = r->cap ? r->cap * 2 : 8;
        if (cap > METRICS_RING_LEN)
                cap = METRICS_RING_LEN;
        MetricsSample *s = calloc(cap, sizeof(*s));
        if (!s)
                return -ENOMEM;
        for (size_t i = 0; i < r->n; i++)
                s[i] = *ring_nth(r, i);
        free(r->s);
        r->s = s;
        r->cap = cap;
        r->head = r->n;
        return 0;
}

static void ring_push_locked(AgentMetrics *m, const Target *t, MetricsSample *s)
{
        Ring *r = ring_get_locked(m, t->id, t->created_us);
        if (!r || ring_room(r, s->ts_us) < 0)
                return;
        metrics_cpu_between(ring_newest(r), s);
        r->s[r->head] = *s;
        r->head = (r->head + 1) % r->cap;
        if (r->n < r->cap)
                r->n++;
}

/* One sampler walk of the sandbox table: the sandboxes due this tick. */
typedef struct {
        AgentMetrics *m;
        uint64_t tick, now_us;
        Target *t;
        size_t n, cap;
} Plan;

/* Called under a->lock (sandbox_foreach); takes the metrics lock briefly. */
static int plan_one(const Sandbox *sb, void *userdata)
{
        Plan *p = userdata;
        if (sb->spec.pool)
                return 0;
        uint32_t h = id_hash(sb->spec.id);
        bool watched = false;
        (void) pthread_mutex_lock(&p->m->lock);
        Ring *r = ring_find_locked(p->m, sb->spec.id, h);
        if (r) {
                r->seen_tick = p->tick;
                watched = r->created_us == sb->created_us && r->watch_until_us > p->now_us;
        }
        (void) pthread_mutex_unlock(&p->m->lock);
        if (!sampled_state(sb->state))
                return 0;
        if (!watched && h % METRICS_BACKGROUND_TICKS != p->tick % METRICS_BACKGROUND_TICKS)
                return 0;
        return target_push(&p->t, &p->n, &p->cap, sb);
}

/* Drops the rings of sandboxes the walk of tick did not find (gone). */
static void sweep_locked(AgentMetrics *m, uint64_t tick)
{
        for (size_t b = 0; b < RING_HASH; b++)
                for (Ring **p = &m->rings[b]; *p;) {
                        if ((*p)->seen_tick >= tick) {
                                p = &(*p)->next;
                                continue;
                        }
                        Ring *dead = *p;
                        *p = dead->next;
                        ring_free(dead);
                }
}

static void sample_due(Agent *a)
{
        AgentMetrics *m = a->metrics;
        Plan p = {.m = m, .now_us = now_realtime_us()};
        (void) pthread_mutex_lock(&m->lock);
        p.tick = ++m->tick;
        (void) pthread_mutex_unlock(&m->lock);
        if (sandbox_foreach(a, plan_one, &p) < 0) {
                targets_free(p.t, p.n);
                return; /* out of memory: no sweep either, the walk was not whole */
        }
        for (size_t i = 0; i < p.n; i++) {
                MetricsSample s;
                if (read_sample(a, &p.t[i], &s) < 0)
                        continue; /* deleted meanwhile */
                (void) pthread_mutex_lock(&m->lock);
                ring_push_locked(m, &p.t[i], &s);
                (void) pthread_mutex_unlock(&m->lock);
        }
        (void) pthread_mutex_lock(&m->lock);
        sweep_locked(m, p.tick);
        (void) pthread_mutex_unlock(&m->lock);
        targets_free(p.t, p.n);
}

static void *sampler_main(void *arg)
{
        Agent *a = arg;
        AgentMetrics *m = a->metrics;
        struct timespec next;
        (void) clock_gettime(CLOCK_MONOTONIC, &next);
        for (;;) {
                sample_due(a);
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
        for (size_t b = 0; b < RING_HASH; b++)
                while (m->rings[b]) {
                        Ring *r = m->rings[b];
                        m->rings[b] = r->next;
                        ring_free(r);
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
        n.metrics_reads = m->reads;
        uint64_t now = now_realtime_us();
        for (size_t b = 0; b < RING_HASH; b++)
                for (const Ring *r = m->rings[b]; r; r = r->next)
                        n.metrics_watched += r->watch_until_us > now;
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
        counter(f, "sandpit_metrics_reads_total",
                "Sandbox metric samples read from cgroups (by the sampler and on request).",
                "counter", n->metrics_reads);
        counter(f, "sandpit_metrics_watched",
                "Sandboxes sampled every second because their metrics were asked for in the "
                "last 5 minutes (the others are sampled every 30 s).",
                "gauge", n->metrics_watched);
        if (fclose(f) != 0) {
                free(buf);
                return -ENOMEM;
        }
        *ret = buf;
        *ret_len = len;
        return 0;
}

/* Starts or extends t's 1 s sampling; *ret_prev gets the newest ring sample
 * (or the one before it when that is too close for a fair rate), or one of
 * zero CPU time at the sandbox's creation when the ring has none. */
static void watch(AgentMetrics *m, const Target *t, uint64_t now_us, MetricsSample *ret_prev,
                  uint64_t *ret_newest_us)
{
        (void) pthread_mutex_lock(&m->lock);
        Ring *r = ring_get_locked(m, t->id, t->created_us);
        if (r)
                r->watch_until_us = now_us + WATCH_US;
        const MetricsSample *prev = ring_newest(r);
        *ret_newest_us = prev ? prev->ts_us : 0;
        if (prev && now_us - prev->ts_us < 200000 && r->n > 1)
                prev = ring_at(r, 1);
        *ret_prev = prev ? *prev : (MetricsSample){.ts_us = t->created_us};
        (void) pthread_mutex_unlock(&m->lock);
}

int metrics_sample_now(Agent *a, const char *id, MetricsSample *ret)
{
        Target *t = NULL;
        int r = collect_target(a, id, &t);
        if (r < 0)
                return r;
        if (!t)
                return -ENOENT;
        MetricsSample prev, s;
        uint64_t newest = 0;
        watch(a->metrics, t, now_realtime_us(), &prev, &newest);
        r = read_sample(a, t, &s);
        if (r == 0) {
                metrics_cpu_between(&prev, &s);
                *ret = s;
        }
        targets_free(t, 1);
        return r < 0 ? -ENOENT : 0;
}

int metrics_window(Agent *a, const char *id, uint64_t start_us, uint64_t end_us,
                   MetricsSample **ret, size_t *ret_n)
{
        Target *t = NULL;
        int r = collect_target(a, id, &t);
        if (r < 0)
                return r;
        if (!t)
                return -ENOENT;
        AgentMetrics *m = a->metrics;
        uint64_t now = now_realtime_us();
        MetricsSample prev;
        uint64_t newest = 0;
        watch(m, t, now, &prev, &newest);
        /* Not sampled this interval (first asked, or background only): now. */
        MetricsSample s;
        if (now - newest >= (uint64_t) METRICS_INTERVAL_MS * 1000 && read_sample(a, t, &s) == 0) {
                (void) pthread_mutex_lock(&m->lock);
                ring_push_locked(m, t, &s);
                (void) pthread_mutex_unlock(&m->lock);
        }
        MetricsSample *out = calloc(METRICS_RING_LEN, sizeof(*out));
        if (!out) {
                targets_free(t, 1);
                return -ENOMEM;
        }
        size_t n = 0;
        (void) pthread_mutex_lock(&m->lock);
        Ring *ring = ring_find_locked(m, id, id_hash(id));
        for (size_t i = 0; ring && ring->created_us == t->created_us && i < ring->n; i++) {
                const MetricsSample *x = ring_nth(ring, i);
                if (x->ts_us >= start_us && x->ts_us <= end_us)
                        out[n++] = *x;
        }
        (void) pthread_mutex_unlock(&m->lock);
        targets_free(t, 1);
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

/* Warm pools (pool.h). The pooled sandboxes are ordinary table entries made
 * by sandbox_create() with spec.pool set; this file keeps the pools' config,
 * the refill threads (one action a turn: remove what is dead, orphaned or too
 * many, give capacity back, or make one) and the claim.
 *
 * Refill threads: one, or POOL_REFILLERS_MAX on a machine with a core to
 * spare, so pooled sandboxes are made side by side. The turns' decisions are
 * taken one at a time (Pools.turn); only the making runs in parallel. A
 * second make starts only while no cold create is in flight: cold creates go
 * first, the pools get the spare core.
 *
 * Locking: Pools.lock protects the pool list and the counters. It is never
 * held while a->lock is taken, nor across sandbox_*() calls. Pools.turn is
 * taken before Pools.lock and a->lock, and held across sandbox_delete_pooled()
 * (never across a make). */
#include "pool.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "code.h"
#include "exec.h"
#include "image.h"
#include "net.h"
#include "sandbox-internal.h"
#include "sandbox.h"
#include "sandpit/json.h"
#include "sandpit/log.h"
#include "sandpit/macro.h"
#include "sandpit/util.h"
#include "secrets.h"
#include "state.h"
#include "template.h"

#define POOL_IDLE_CHECK_MS 5000 /* a dead pooled sandbox is noticed within this */
#define POOL_RETRY_S       5u
#define POOL_MAX_SIZE      1000
#define POOL_SWEEP_ROUNDS  120 /* shutdown waits about this many seconds at most */
#define POOL_SWEEP_TRIES   3   /* a failed teardown is tried this often at shutdown */
#define POOL_REFILLERS_MAX 2   /* pooled sandboxes made at once, with a core to spare */

typedef struct Pool {
        struct Pool *next;
        char *name;
        SandboxSpec shape; /* template, cpu, memory, pids, disk; the rest defaults */
        char *requested;   /* the template as the PUT named it (an image's: not canonical) */
        unsigned size;
        /* Pre-start the default python context's kernel in each (true unless
         * the config says "kernel": false); not part of the shape. */
        bool kernel;
        uint64_t claims, misses, made, failures;
        uint64_t kernel_claims, kernel_drops; /* claims that took a kernel, that dropped one */
        uint64_t retry_after_us;              /* monotonic: after a failed create */
        unsigned making;                      /* refill threads making one of this pool's */
        char last_error[256];
} Pool;

typedef struct Pools {
        pthread_mutex_t lock;
        pthread_cond_t cond;
        pthread_mutex_t turn; /* one refill turn's decision at a time */
        uint64_t kicks;       /* bumped (cond broadcast) when there may be work */
        bool stopping;
        unsigned nthreads, making; /* refill threads; makes in flight, all pools */
        pthread_t threads[POOL_REFILLERS_MAX];
        Pool *list;
        double capacity_cpu;
        uint64_t capacity_memory;
        uint64_t shrinks; /* pooled sandboxes deleted to give capacity back */
} Pools;

static void pool_free(Pool *p)
{
        if (!p)
                return;
        free(p->name);
        free(p->requested);
        sandbox_spec_done(&p->shape);
        free(p);
}

static bool shape_matches(const SandboxSpec *shape, const SandboxSpec *s)
{
        /* Pools run the node's default runtime (a NULL spec.runtime). */
        return streq(shape->template_name, s->template_name) && !shape->runtime && !s->runtime &&
               shape->cpu == s->cpu && shape->memory == s->memory && shape->pids == s->pids &&
               shape->disk == s->disk;
}

static Pool *find_pool_locked(Pools *ps, const char *name)
{
        for (Pool *p = ps->list; p; p = p->next)
                if (streq(p->name, name))
                        return p;
        return NULL;
}

void pool_kick(Agent *a)
{
        Pools *ps = a->pools;
        if (!ps)
                return;
        (void) pthread_mutex_lock(&ps->lock);
        ps->kicks++;
        (void) pthread_cond_broadcast(&ps->cond);
        (void) pthread_mutex_unlock(&ps->lock);
}

/* --- what the table holds ------------------------------------------------ */

typedef struct {
        char *name; /* Sandbox.name */
        char *pool;
        SandboxState state;
        SandboxSpec shape; /* template_name and the numbers only */
        bool kernel;       /* its pre-started kernel is up (code_prestarted_ready) */
} Pooled;

typedef struct {
        Pooled *v;
        size_t n, cap;
        double cpu;      /* every sandbox's, pooled ones too */
        uint64_t memory; /* " */
        bool busy;       /* a pooled sandbox is being deleted */
        unsigned cold;   /* sandboxes of no pool being created */
} Census;

static void census_done(Census *c)
{
        for (size_t i = 0; i < c->n; i++) {
                free(c->v[i].name);
                free(c->v[i].pool);
                free(c->v[i].shape.template_name);
        }
        free(c->v);
        *c = (Census){0};
}

/* Under a->lock (sandbox_foreach). */
static int census_one(const Sandbox *sb, void *userdata)
{
        Census *c = userdata;
        if (sb->state == SANDBOX_DELETING) {
                c->busy = c->busy || sb->spec.pool;
                return 0;
        }
        c->cpu += sb->spec.cpu;
        c->memory += sb->spec.memory;
        if (!sb->spec.pool) {
                c->cold += sb->state == SANDBOX_CREATING;
                return 0;
        }
        if (c->n == c->cap) {
                size_t cap = c->cap ? c->cap * 2 : 16;
                Pooled *v = reallocarray(c->v, cap, sizeof(*v));
                if (!v)
                        return -ENOMEM;
                c->v = v;
                c->cap = cap;
        }
        Pooled *p = &c->v[c->n];
        *p = (Pooled){.name = strdup(sb->name),
                      .pool = strdup(sb->spec.pool),
                      .state = sb->state,
                      .shape = {.template_name = strdup(sb->spec.template_name),
                                .cpu = sb->spec.cpu,
                                .memory = sb->spec.memory,
                                .pids = sb->spec.pids,
                                .disk = sb->spec.disk},
                      .kernel = sb->state == SANDBOX_RUNNING && code_prestarted_ready(sb->spec.id)};
        c->n++;
        if (!p->name || !p->pool || !p->shape.template_name)
                return -ENOMEM;
        return 0;
}

static int census_take(Agent *a, Census *c)
{
        *c = (Census){0};
        int r = sandbox_foreach(a, census_one, c);
        if (r < 0)
                census_done(c);
        return r;
}

/* --- the refill thread --------------------------------------------------- */

typedef struct {
        char *name;
        SandboxSpec shape;
        unsigned size;
        bool kernel;
        bool waiting; /* backing off after a failure */
        unsigned ready, creating;
        unsigned making; /* Pool.making: made by a refill thread now, maybe not listed yet */
} PoolView;

static void views_free(PoolView *v, size_t n)
{
        for (size_t i = 0; i < n; i++) {
                free(v[i].name);
                free(v[i].shape.template_name);
        }
        free(v);
}

/* A copy of the config, so the turn runs without Pools.lock. */
static int views_take(Pools *ps, PoolView **ret, size_t *ret_n)
{
        size_t n = 0, i = 0;
        uint64_t now = now_monotonic_us();
        (void) pthread_mutex_lock(&ps->lock);
        for (Pool *p = ps->list; p; p = p->next)
                n++;
        PoolView *v = calloc(n + 1, sizeof(*v));
        int r = v ? 0 : -ENOMEM;
        for (Pool *p = ps->list; r == 0 && p; p = p->next, i++) {
                v[i] = (PoolView){.name = strdup(p->name),
                                  .shape = {.template_name = strdup(p->shape.template_name),
                                            .cpu = p->shape.cpu,
                                            .memory = p->shape.memory,
                                            .pids = p->shape.pids,
                                            .disk = p->shape.disk},
                                  .size = p->size,
                                  .kernel = p->kernel,
                                  .waiting = p->retry_after_us > now,
                                  .making = p->making};
                if (!v[i].name || !v[i].shape.template_name)
                        r = -ENOMEM;
        }
        (void) pthread_mutex_unlock(&ps->lock);
        if (r < 0) {
                views_free(v, n);
                return r;
        }
        *ret = v;
        *ret_n = n;
        return 0;
}

static PoolView *view_of(PoolView *v, size_t n, const char *name)
{
        for (size_t i = 0; i < n; i++)
                if (streq(v[i].name, name))
                        return &v[i];
        return NULL;
}

static void note_failure(Pools *ps, const char *name, int r, const char *err)
{
        (void) pthread_mutex_lock(&ps->lock);
        Pool *p = find_pool_locked(ps, name);
        if (p) {
                p->failures++;
                p->retry_after_us = now_monotonic_us() + (uint64_t) POOL_RETRY_S * 1000000u;
                (void) snprintf(p->last_error, sizeof(p->last_error), "%.250s",
                                err && *err ? err : strerror(-r));
        }
        (void) pthread_mutex_unlock(&ps->lock);
}

/* What exec needs of sb (a->lock held): sandbox_exec_info()'s copy, for a
 * sandbox it cannot find by id (waiting in a pool, or being claimed). */
static int exec_info_locked(const Sandbox *sb, SandboxExecInfo *ret)
{
        SandboxExecInfo info = {
                .socket_path = strdup(sb->socket_path),
                .init_pid = sb->init_pid,
                .env = strv_copy(sb->spec.env),
                .user = sb->spec.user ? strdup(sb->spec.user) : NULL,
                .cwd = sb->spec.cwd ? strdup(sb->spec.cwd) : NULL,
                .id = strdup(sb->spec.id),
                .name = strdup(sb->name),
                .secret_names = strv_copy(sb->spec.secret_names),
        };
        if (!info.socket_path || !info.env || (sb->spec.user && !info.user) ||
            (sb->spec.cwd && !info.cwd) || !info.id || !info.name || !info.secret_names) {
                sandbox_exec_info_done(&info);
                return -ENOMEM;
        }
        *ret = info;
        return 0;
}

/* Starts the default python context's kernel in the pooled sandbox name,
 * so that the first run after a claim finds it running. A failure costs
 * nothing but the wait: the first run starts one as for a cold sandbox. */
static void prestart_kernel(Agent *a, const char *pool, const char *name)
{
        SandboxExecInfo info = {0};
        CodeContext *c = NULL;
        (void) pthread_mutex_lock(&a->lock);
        Sandbox *sb = sandbox_find_name_locked(a, name);
        /* Registered while the sandbox is surely there: its delete finds it. */
        if (sb && sb->spec.pool && sb->state == SANDBOX_RUNNING &&
            exec_info_locked(sb, &info) == 0 && !(c = code_prestart_begin(info.id)))
                sandbox_exec_info_done(&info);
        (void) pthread_mutex_unlock(&a->lock);
        if (!c)
                return;
        char err[512] = "";
        uint64_t t0 = now_monotonic_us();
        int r = code_prestart_finish(a, &info, c, err, sizeof(err));
        if (r < 0)
                log_sbx(LOG_LEVEL_WARNING, name, r,
                        "warm pool %s: cannot pre-start the python kernel: %s; the first run "
                        "starts it",
                        pool, err[0] ? err : strerror(-r));
        else
                log_sbx(LOG_LEVEL_DEBUG, name, 0,
                        "warm pool %s: python kernel pre-started in %.1f ms", pool,
                        (double) (now_monotonic_us() - t0) / 1000.0);
        sandbox_exec_info_done(&info);
}

/* Makes one pooled sandbox for pool v. */
static void make_one(Agent *a, const PoolView *v)
{
        Pools *ps0 = a->pools;
        (void) pthread_mutex_lock(&ps0->lock);
        bool stopping = ps0->stopping;
        (void) pthread_mutex_unlock(&ps0->lock);
        if (stopping) /* shutdown began during the turn: nothing new */
                return;
        cleanup_json json_object *req = json_object_new_object();
        if (!req)
                return;
        (void) json_object_object_add(req, "template",
                                      json_object_new_string(v->shape.template_name));
        (void) json_object_object_add(req, "cpu", json_object_new_double(v->shape.cpu));
        (void) json_object_object_add(req, "memory",
                                      json_object_new_int64((int64_t) v->shape.memory));
        (void) json_object_object_add(req, "pids", json_object_new_int64((int64_t) v->shape.pids));
        (void) json_object_object_add(req, "disk", json_object_new_int64((int64_t) v->shape.disk));
        (void) json_object_object_add(req, "timeout", json_object_new_int64(TIMEOUT_MAX_S));
        char err[512] = "";
        SandboxSpec spec;
        int r = sandbox_spec_from_json(req, &spec, err, sizeof(err));
        if (r == 0 && !(spec.pool = strdup(v->name))) {
                sandbox_spec_done(&spec);
                r = -ENOMEM;
        }
        json_object *obj = NULL, *idv = NULL;
        if (r == 0)
                r = sandbox_create(a, &spec, &obj, err, sizeof(err));
        cleanup_free char *name = NULL;
        if (r == 0 && json_object_object_get_ex(obj, "id", &idv))
                name = strdup(json_object_get_string(idv));
        json_object_put(obj);
        if (r < 0) {
                log_warning("warm pool %s: cannot make a sandbox: %s; retrying in %u s", v->name,
                            err[0] ? err : strerror(-r), POOL_RETRY_S);
                note_failure(a->pools, v->name, r, err);
                return;
        }
        Pools *ps = a->pools;
        (void) pthread_mutex_lock(&ps->lock);
        Pool *p = find_pool_locked(ps, v->name);
        if (p) {
                p->made++;
                p->last_error[0] = 0;
        }
        (void) pthread_mutex_unlock(&ps->lock);
        if (v->kernel && name && a->cfg.kernels_dir)
                prestart_kernel(a, v->name, name);
}

/* Counts a make of pool name as started (delta 1) or ended (-1); a started
 * one wakes the other refill threads, which may start one more. */
static void note_making(Pools *ps, const char *name, int delta)
{
        (void) pthread_mutex_lock(&ps->lock);
        Pool *p = find_pool_locked(ps, name);
        if (delta > 0) {
                ps->making++;
                if (p)
                        p->making++;
                ps->kicks++;
                (void) pthread_cond_broadcast(&ps->cond);
        } else {
                if (ps->making)
                        ps->making--;
                if (p && p->making) /* a pool deleted and put again: 0 */
                        p->making--;
        }
        (void) pthread_mutex_unlock(&ps->lock);
}

/* Whether this turn may start a make: the first always; more (up to the
 * threads) only while no cold create is in flight. Under Pools.turn. */
static bool may_make(Pools *ps, const Census *c)
{
        (void) pthread_mutex_lock(&ps->lock);
        bool ok = ps->making == 0 || (ps->making < ps->nthreads && c->cold == 0);
        (void) pthread_mutex_unlock(&ps->lock);
        return ok;
}

/* One step towards the pools' targets; false when there is nothing to do. */
static bool refill_turn(Agent *a)
{
        Pools *ps = a->pools;
        PoolView *v = NULL;
        size_t nv = 0;
        Census c;
        (void) pthread_mutex_lock(&ps->turn);
        if (views_take(ps, &v, &nv) < 0) {
                (void) pthread_mutex_unlock(&ps->turn);
                return false;
        }
        if (census_take(a, &c) < 0) {
                views_free(v, nv);
                (void) pthread_mutex_unlock(&ps->turn);
                return false;
        }
        const char *victim = NULL, *why = NULL;
        bool shrink = false;
        /* Dead, orphaned (pool gone or reshaped) or surplus: removed. */
        for (size_t i = 0; i < c.n && !victim; i++) {
                Pooled *p = &c.v[i];
                PoolView *pv = view_of(v, nv, p->pool);
                bool mine = pv && shape_matches(&pv->shape, &p->shape);
                if (p->state == SANDBOX_EXITED) {
                        victim = p->name;
                        why = "its init died";
                } else if (!mine && p->state == SANDBOX_RUNNING) {
                        victim = p->name;
                        why = "its pool is gone or changed";
                } else if (mine && p->state == SANDBOX_RUNNING) {
                        pv->ready++;
                } else if (mine && p->state == SANDBOX_CREATING) {
                        pv->creating++;
                }
        }
        for (size_t i = 0; i < nv && !victim; i++)
                if (v[i].ready + v[i].creating > v[i].size && v[i].ready > 0)
                        for (size_t k = 0; k < c.n && !victim; k++)
                                if (streq(c.v[k].pool, v[i].name) &&
                                    c.v[k].state == SANDBOX_RUNNING)
                                        victim = c.v[k].name, why = "the pool shrank";
        /* Over capacity: cold creates took room; pooled ones give it back. */
        if (!victim && (c.cpu > ps->capacity_cpu + 1e-9 || c.memory > ps->capacity_memory)) {
                for (size_t i = 0; i < c.n && !victim; i++)
                        if (c.v[i].state == SANDBOX_RUNNING)
                                victim = c.v[i].name, why = "the node needs the room",
                                shrink = true;
        }
        PoolView *fill = NULL;
        bool can_make = !victim && may_make(ps, &c);
        for (size_t i = 0; i < nv && can_make && !fill; i++) {
                PoolView *pv = &v[i];
                /* Every pooled sandbox being made is a refill thread's: one in
                 * making may not be listed yet, or listed as ready already;
                 * the larger count, so a pool is never overfilled (the
                 * shrink above counts only what is listed). */
                unsigned creating = pv->creating > pv->making ? pv->creating : pv->making;
                if (pv->waiting || pv->ready + creating >= pv->size)
                        continue;
                if (c.cpu + pv->shape.cpu <= ps->capacity_cpu + 1e-9 &&
                    c.memory + pv->shape.memory <= ps->capacity_memory)
                        fill = pv;
        }
        bool did = false;
        if (victim) {
                log_sbx(LOG_LEVEL_INFO, victim, 0, "warm pool: removing a waiting sandbox: %s",
                        why);
                int r = sandbox_delete_pooled(a, victim);
                if (r < 0 && r != -ENOENT)
                        log_sbx(LOG_LEVEL_ERROR, victim, r, "cannot remove a pooled sandbox");
                if (r == 0 && shrink) {
                        (void) pthread_mutex_lock(&ps->lock);
                        ps->shrinks++;
                        (void) pthread_mutex_unlock(&ps->lock);
                }
                did = r == 0;
        } else if (fill) {
                note_making(ps, fill->name, 1);
        }
        (void) pthread_mutex_unlock(&ps->turn);
        if (fill) {
                make_one(a, fill);
                note_making(ps, fill->name, -1);
                did = true;
        }
        census_done(&c);
        views_free(v, nv);
        return did;
}

static void *refill_main(void *arg)
{
        Agent *a = arg;
        Pools *ps = a->pools;
        for (;;) {
                (void) pthread_mutex_lock(&ps->lock);
                if (ps->stopping) {
                        (void) pthread_mutex_unlock(&ps->lock);
                        return NULL;
                }
                uint64_t seen = ps->kicks;
                (void) pthread_mutex_unlock(&ps->lock);

                if (refill_turn(a))
                        continue;

                (void) pthread_mutex_lock(&ps->lock);
                struct timespec end;
                deadline_after_ms(&end, POOL_IDLE_CHECK_MS);
                while (ps->kicks == seen && !ps->stopping)
                        if (pthread_cond_timedwait(&ps->cond, &ps->lock, &end) == ETIMEDOUT)
                                break;
                (void) pthread_mutex_unlock(&ps->lock);
        }
}

int pools_start(Agent *a, double capacity_cpu, uint64_t capacity_memory)
{
        Pools *ps = calloc(1, sizeof(*ps));
        if (!ps)
                return -ENOMEM;
        (void) pthread_mutex_init(&ps->lock, NULL);
        (void) pthread_mutex_init(&ps->turn, NULL);
        cond_init_monotonic(&ps->cond);
        ps->capacity_cpu = capacity_cpu;
        ps->capacity_memory = capacity_memory;
        a->pools = ps;
        /* A second refill thread only with a core beside the one it takes. */
        cpu_set_t set;
        unsigned want = 1;
        if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) >= 2)
                want = POOL_REFILLERS_MAX;
        for (unsigned i = 0; i < want; i++) {
                int r = -pthread_create(&ps->threads[i], NULL, refill_main, a);
                if (r < 0 && i == 0) {
                        a->pools = NULL;
                        (void) pthread_cond_destroy(&ps->cond);
                        (void) pthread_mutex_destroy(&ps->turn);
                        (void) pthread_mutex_destroy(&ps->lock);
                        free(ps);
                        return r;
                }
                if (r < 0) {
                        log_warning_errno(r, "warm pools: one refill thread only");
                        break;
                }
                (void) pthread_mutex_lock(&ps->lock);
                ps->nthreads++;
                (void) pthread_mutex_unlock(&ps->lock);
        }
        return 0;
}

/* Nobody's sandboxes yet: removed at shutdown rather than left to the next
 * start. A pooled sandbox still being made or removed by any thread is
 * waited for (the table's condition) and then swept, so none is made after
 * the sweep looked. */
static void pools_sweep(Agent *a)
{
        unsigned failed_rounds = 0, removed = 0;
        for (unsigned round = 0; round < POOL_SWEEP_ROUNDS; round++) {
                Census c;
                if (census_take(a, &c) < 0)
                        return;
                bool busy = c.busy, failed = false;
                for (size_t i = 0; i < c.n; i++) {
                        if (c.v[i].state == SANDBOX_CREATING) {
                                busy = true;
                                continue;
                        }
                        int r = sandbox_delete_pooled(a, c.v[i].name);
                        if (r == 0) {
                                removed++;
                        } else if (r == -ENOENT) {
                                busy = true; /* being made or removed since the census */
                        } else if (failed_rounds + 1 < POOL_SWEEP_TRIES) {
                                failed = true; /* teardown failed: tried again */
                        } else {
                                log_sbx(LOG_LEVEL_WARNING, c.v[i].name, r,
                                        "warm pool: cannot remove a waiting sandbox; the next "
                                        "start removes it");
                        }
                }
                census_done(&c);
                failed_rounds += failed;
                if (!busy && !failed) {
                        if (removed)
                                log_info("warm pools: removed %u waiting sandboxes", removed);
                        return;
                }
                (void) pthread_mutex_lock(&a->lock);
                struct timespec end;
                deadline_after_ms(&end, failed ? 200 : 1000);
                (void) pthread_cond_timedwait(&a->table_changed, &a->lock, &end);
                (void) pthread_mutex_unlock(&a->lock);
        }
        log_warning(
                "warm pool: pooled sandboxes still busy at shutdown; the next start removes them");
}

void pools_stop(Agent *a)
{
        Pools *ps = a->pools;
        if (!ps)
                return;
        (void) pthread_mutex_lock(&ps->lock);
        ps->stopping = true;
        (void) pthread_cond_signal(&ps->cond);
        (void) pthread_mutex_unlock(&ps->lock);
        /* The refill in flight (a `runc run` cannot be cut short) finishes
         * first: joined, so the sweep sees what it made. */
        for (unsigned i = 0; i < ps->nthreads; i++)
                (void) pthread_join(ps->threads[i], NULL);
        pools_sweep(a);
        a->pools = NULL;
        while (ps->list) {
                Pool *p = ps->list;
                ps->list = p->next;
                pool_free(p);
        }
        (void) pthread_cond_destroy(&ps->cond);
        (void) pthread_mutex_destroy(&ps->turn);
        (void) pthread_mutex_destroy(&ps->lock);
        free(ps);
}

/* --- configuration ------------------------------------------------------- */

int pool_flag_parse(const char *arg, char **ret_name, json_object **ret_body, char *err,
                    size_t errlen)
{
        cleanup_free char *s = strdup(arg);
        if (!s)
                return -ENOMEM;
        char *eq = strrchr(s, '=');
        unsigned long size = 0;
        char *end = NULL;
        if (eq) {
                errno = 0;
                size = strtoul(eq + 1, &end, 10);
        }
        if (!eq || eq[1] < '0' || eq[1] > '9' || errno || *end || size > POOL_MAX_SIZE) {
                (void) snprintf(err, errlen,
                                "bad --pool %.64s: TEMPLATE[:KEY=VALUE,...]=SIZE with SIZE 0 to %d",
                                arg, POOL_MAX_SIZE);
                return -EINVAL;
        }
        *eq = 0;
        char *colon = strchr(s, ':');
        if (colon)
                *colon = 0;
        cleanup_json json_object *body = json_object_new_object();
        if (!body)
                return -ENOMEM;
        (void) json_object_object_add(body, "template", json_object_new_string(s));
        (void) json_object_object_add(body, "size", json_object_new_int64((int64_t) size));
        const char *name = s;
        for (char *save = NULL, *kv = colon ? strtok_r(colon + 1, ",", &save) : NULL; kv;
             kv = strtok_r(NULL, ",", &save)) {
                char *v = strchr(kv, '=');
                if (v)
                        *v++ = 0;
                if (!v || (!streq(kv, "cpu") && !streq(kv, "memory") && !streq(kv, "pids") &&
                           !streq(kv, "disk") && !streq(kv, "name") && !streq(kv, "kernel"))) {
                        (void) snprintf(err, errlen,
                                        "bad --pool %.64s: keys are cpu, memory, pids, disk, "
                                        "kernel and name",
                                        arg);
                        return -EINVAL;
                }
                if (streq(kv, "name")) {
                        name = v;
                        continue;
                }
                if (streq(kv, "kernel")) {
                        bool on = streq(v, "true") || streq(v, "1");
                        if (!on && !streq(v, "false") && !streq(v, "0")) {
                                (void) snprintf(err, errlen,
                                                "bad --pool %.64s: kernel is true or false", arg);
                                return -EINVAL;
                        }
                        (void) json_object_object_add(body, kv, json_object_new_boolean(on));
                        continue;
                }
                char *pend = NULL;
                long long n = streq(kv, "pids") ? strtoll(v, &pend, 10) : 0;
                (void) json_object_object_add(body, kv,
                                              streq(kv, "pids") && pend && !*pend && *v
                                                      ? json_object_new_int64(n)
                                                      : json_object_new_string(v));
        }
        if (!id_is_valid(name)) {
                (void) snprintf(err, errlen, "bad --pool %.64s: the pool's name %.64s is not valid",
                                arg, name);
                return -EINVAL;
        }
        if (!(*ret_name = strdup(name)))
                return -ENOMEM;
        *ret_body = TAKE_PTR(body);
        return 0;
}

static json_object *pool_to_json_locked(const Pool *p, const Census *c)
{
        unsigned ready = 0, creating = 0, kernels = 0;
        json_object *o = json_object_new_object(), *names = json_object_new_array();
        for (size_t i = 0; c && i < c->n; i++) {
                if (!streq(c->v[i].pool, p->name) || !shape_matches(&p->shape, &c->v[i].shape))
                        continue;
                if (c->v[i].state == SANDBOX_RUNNING) {
                        ready++;
                        kernels += c->v[i].kernel;
                        (void) json_object_array_add(names, json_object_new_string(c->v[i].name));
                } else if (c->v[i].state == SANDBOX_CREATING) {
                        creating++;
                }
        }
        (void) json_object_object_add(o, "name", json_object_new_string(p->name));
        (void) json_object_object_add(o, "template",
                                      json_object_new_string(p->shape.template_name));
        if (p->requested)
                (void) json_object_object_add(o, "requested_template",
                                              json_object_new_string(p->requested));
        (void) json_object_object_add(o, "cpu", json_object_new_double(p->shape.cpu));
        (void) json_object_object_add(o, "memory",
                                      json_object_new_int64((int64_t) p->shape.memory));
        (void) json_object_object_add(o, "pids", json_object_new_int64((int64_t) p->shape.pids));
        (void) json_object_object_add(o, "disk", json_object_new_int64((int64_t) p->shape.disk));
        (void) json_object_object_add(o, "size", json_object_new_int64(p->size));
        (void) json_object_object_add(o, "ready", json_object_new_int64(ready));
        (void) json_object_object_add(o, "creating", json_object_new_int64(creating));
        (void) json_object_object_add(o, "claims", json_object_new_int64((int64_t) p->claims));
        (void) json_object_object_add(o, "misses", json_object_new_int64((int64_t) p->misses));
        (void) json_object_object_add(o, "made", json_object_new_int64((int64_t) p->made));
        (void) json_object_object_add(o, "failures", json_object_new_int64((int64_t) p->failures));
        (void) json_object_object_add(o, "kernel", json_object_new_boolean(p->kernel));
        (void) json_object_object_add(o, "kernels_ready", json_object_new_int64(kernels));
        (void) json_object_object_add(o, "kernel_claims",
                                      json_object_new_int64((int64_t) p->kernel_claims));
        (void) json_object_object_add(o, "kernel_drops",
                                      json_object_new_int64((int64_t) p->kernel_drops));
        if (p->last_error[0])
                (void) json_object_object_add(o, "last_error",
                                              json_object_new_string(p->last_error));
        (void) json_object_object_add(o, "sandboxes", names);
        return o;
}

static bool is_image(const char *template_name)
{
        return strncmp(template_name, IMAGE_TEMPLATE_PREFIX, strlen(IMAGE_TEMPLATE_PREFIX)) == 0;
}

/* An "image:REF" template renamed as a cold create names it (sandbox.c's
 * template_for_spec()): "image:" and the canonical name (":latest" added, a
 * default registry...). */
static int canonical_template(Agent *a, char **template_name)
{
        cleanup_free char *name = NULL, *t = NULL;
        int r = image_canonical_name(a->images, *template_name + strlen(IMAGE_TEMPLATE_PREFIX),
                                     &name);
        if (r < 0)
                return r;
        if (asprintf(&t, "%s%s", IMAGE_TEMPLATE_PREFIX, name) < 0)
                return -ENOMEM;
        free(*template_name);
        *template_name = TAKE_PTR(t);
        return 0;
}

/* An image template's pool: the image pulled now (its sandboxes are made
 * from it, with the node's credentials), its name canonical. */
static int image_shape(Agent *a, SandboxSpec *shape, char *err, size_t errlen)
{
        cleanup_json json_object *img = NULL;
        int r = image_pull(a->images, shape->template_name + strlen(IMAGE_TEMPLATE_PREFIX), false,
                           &img, err, errlen);
        if (r < 0)
                return r;
        if ((r = canonical_template(a, &shape->template_name)) < 0)
                (void) snprintf(err, errlen, "bad image reference \"%.200s\"",
                                shape->template_name + strlen(IMAGE_TEMPLATE_PREFIX));
        return r;
}

/* What a pooled sandbox of an image was made with from the image's config
 * (user, working directory, env: template_for_spec()) and the claimer did not
 * set stays, as a cold create gives it. */
static int keep_image_defaults(SandboxSpec *claimed, SandboxSpec *pooled)
{
        if (!is_image(pooled->template_name))
                return 0;
        if (!claimed->user)
                claimed->user = TAKE_PTR(pooled->user);
        if (!claimed->cwd)
                claimed->cwd = TAKE_PTR(pooled->cwd);
        return sandbox_env_add_defaults(&claimed->env, pooled->env);
}

int pool_put(Agent *a, const char *name, json_object *body, json_object **ret, char *err,
             size_t errlen)
{
        Pools *ps = a->pools;
        if (!ps)
                return -ESHUTDOWN;
        if (!id_is_valid(name)) {
                (void) snprintf(
                        err, errlen,
                        "pool names are 1-63 characters of [a-z0-9-] not starting with '-'");
                return -EINVAL;
        }
        if (!json_object_is_type(body, json_type_object)) {
                (void) snprintf(err, errlen, "body must be a JSON object");
                return -EINVAL;
        }
        json_object *sv = NULL;
        int64_t size = json_object_object_get_ex(body, "size", &sv) &&
                                       json_object_is_type(sv, json_type_int)
                               ? json_object_get_int64(sv)
                               : -1;
        if (size < 0 || size > POOL_MAX_SIZE) {
                (void) snprintf(err, errlen, "size must be an integer from 0 to %d", POOL_MAX_SIZE);
                return -EINVAL;
        }
        /* The shape is parsed as a create request is: the same defaults and limits. */
        cleanup_json json_object *shape = json_object_new_object();
        if (!shape)
                return -ENOMEM;
        bool kernel = true;
        json_object_object_foreach(body, key, val) {
                if (streq(key, "size"))
                        continue;
                if (streq(key, "kernel")) {
                        if (!json_object_is_type(val, json_type_boolean)) {
                                (void) snprintf(err, errlen, "kernel must be true or false");
                                return -EINVAL;
                        }
                        kernel = json_object_get_boolean(val);
                        continue;
                }
                if (!streq(key, "template") && !streq(key, "cpu") && !streq(key, "memory") &&
                    !streq(key, "pids") && !streq(key, "disk")) {
                        (void) snprintf(err, errlen,
                                        "unknown field \"%.64s\": a pool has template, cpu, "
                                        "memory, pids, disk, kernel and size",
                                        key);
                        return -EINVAL;
                }
                (void) json_object_object_add(shape, key, json_object_get(val));
        }
        Pool *p = calloc(1, sizeof(*p));
        if (!p)
                return -ENOMEM;
        int r = sandbox_spec_from_json(shape, &p->shape, err, errlen);
        if (r < 0) {
                free(p);
                return r;
        }
        p->size = (unsigned) size;
        p->kernel = kernel;
        if (!(p->name = strdup(name))) {
                pool_free(p);
                return -ENOMEM;
        }
        if (!(p->requested = strdup(p->shape.template_name))) {
                pool_free(p);
                return -ENOMEM;
        }
        if (is_image(p->shape.template_name)) {
                if ((r = image_shape(a, &p->shape, err, errlen)) < 0) {
                        pool_free(p);
                        return r;
                }
        } else {
                Template *tpl = NULL;
                if ((r = template_load(a->cfg.templates_dir, p->shape.template_name, &tpl)) < 0) {
                        (void) snprintf(err, errlen, "template %s %s", p->shape.template_name,
                                        r == -ENOENT ? "not found" : "is not usable");
                        pool_free(p);
                        return -ENOENT;
                }
                template_free(tpl);
        }

        Census c;
        if ((r = census_take(a, &c)) < 0) {
                pool_free(p);
                return r;
        }
        (void) pthread_mutex_lock(&ps->lock);
        for (Pool *o = ps->list; o && r == 0; o = o->next)
                if (!streq(o->name, name) && shape_matches(&o->shape, &p->shape)) {
                        (void) snprintf(err, errlen, "pool %s already has this shape", o->name);
                        r = -EEXIST;
                }
        Pool **link = &ps->list;
        while (r == 0 && *link && !streq((*link)->name, name))
                link = &(*link)->next;
        if (r == 0 && *link) { /* a change: counters kept, the old shape's sandboxes go */
                Pool *old = *link;
                p->claims = old->claims;
                p->misses = old->misses;
                p->made = old->made;
                p->failures = old->failures;
                p->kernel_claims = old->kernel_claims;
                p->kernel_drops = old->kernel_drops;
                p->making = old->making;
                p->next = old->next;
                *link = p;
                pool_free(old);
        } else if (r == 0) {
                *link = p;
        }
        json_object *o = r == 0 ? pool_to_json_locked(p, &c) : NULL;
        ps->kicks++;
        (void) pthread_cond_broadcast(&ps->cond);
        (void) pthread_mutex_unlock(&ps->lock);
        census_done(&c);
        if (r < 0) {
                pool_free(p);
                return r;
        }
        log_info("warm pool %s: %u of template %s (cpu %g, memory %llu, pids %llu, disk %llu)%s",
                 name, (unsigned) size, p->shape.template_name, p->shape.cpu,
                 (unsigned long long) p->shape.memory, (unsigned long long) p->shape.pids,
                 (unsigned long long) p->shape.disk, kernel ? ", python kernels pre-started" : "");
        if (!o)
                return -ENOMEM;
        *ret = o;
        return 0;
}

int pool_remove(Agent *a, const char *name)
{
        Pools *ps = a->pools;
        if (!ps)
                return -ENOENT;
        int r = -ENOENT;
        (void) pthread_mutex_lock(&ps->lock);
        for (Pool **link = &ps->list; *link; link = &(*link)->next)
                if (streq((*link)->name, name)) {
                        Pool *p = *link;
                        *link = p->next;
                        pool_free(p);
                        r = 0;
                        break;
                }
        ps->kicks++;
        (void) pthread_cond_broadcast(&ps->cond);
        (void) pthread_mutex_unlock(&ps->lock);
        if (r == 0)
                log_info("warm pool %s removed", name);
        return r;
}

int pool_get_json(Agent *a, const char *name, json_object **ret)
{
        Pools *ps = a->pools;
        Census c;
        if (!ps)
                return -ENOENT;
        int r = census_take(a, &c);
        if (r < 0)
                return r;
        json_object *o = NULL;
        (void) pthread_mutex_lock(&ps->lock);
        if (name) {
                Pool *p = find_pool_locked(ps, name);
                o = p ? pool_to_json_locked(p, &c) : NULL;
                r = p ? 0 : -ENOENT;
        } else {
                json_object *arr = json_object_new_array();
                for (Pool *p = ps->list; p; p = p->next)
                        (void) json_object_array_add(arr, pool_to_json_locked(p, &c));
                o = json_object_new_object();
                json_object *cap = json_object_new_object(), *used = json_object_new_object();
                (void) json_object_object_add(cap, "cpu", json_object_new_double(ps->capacity_cpu));
                (void) json_object_object_add(cap, "memory",
                                              json_object_new_int64((int64_t) ps->capacity_memory));
                (void) json_object_object_add(used, "cpu", json_object_new_double(c.cpu));
                (void) json_object_object_add(used, "memory",
                                              json_object_new_int64((int64_t) c.memory));
                (void) json_object_object_add(o, "pools", arr);
                (void) json_object_object_add(o, "capacity", cap);
                (void) json_object_object_add(o, "used", used);
                (void) json_object_object_add(o, "shrinks",
                                              json_object_new_int64((int64_t) ps->shrinks));
        }
        (void) pthread_mutex_unlock(&ps->lock);
        census_done(&c);
        if (r < 0)
                return r;
        if (!o)
                return -ENOMEM;
        *ret = o;
        return 0;
}

void pool_format_prometheus(Agent *a, FILE *f)
{
        Pools *ps = a->pools;
        Census c;
        if (!ps || census_take(a, &c) < 0)
                return;
        static const char *const series[][3] = {
                {"sandpit_pool_size", "gauge", "Pooled sandboxes each warm pool keeps."},
                {"sandpit_pool_ready", "gauge", "Pooled sandboxes ready to be claimed."},
                {"sandpit_pool_claims_total", "counter",
                 "Creates served by a pooled sandbox (no container started)."},
                {"sandpit_pool_misses_total", "counter",
                 "Creates of a pool's shape that found it empty and were made cold."},
                {"sandpit_pool_made_total", "counter", "Pooled sandboxes made."},
                {"sandpit_pool_failures_total", "counter",
                 "Pooled sandboxes that failed to be made."},
        };
        (void) pthread_mutex_lock(&ps->lock);
        for (size_t s = 0; s < ARRAY_SIZE(series); s++) {
                (void) fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", series[s][0], series[s][2],
                               series[s][0], series[s][1]);
                for (Pool *p = ps->list; p; p = p->next) {
                        uint64_t v = 0;
                        if (s == 0) {
                                v = p->size;
                        } else if (s == 1) {
                                for (size_t i = 0; i < c.n; i++)
                                        v += streq(c.v[i].pool, p->name) &&
                                             c.v[i].state == SANDBOX_RUNNING &&
                                             shape_matches(&p->shape, &c.v[i].shape);
                        } else {
                                v = s == 2   ? p->claims
                                    : s == 3 ? p->misses
                                    : s == 4 ? p->made
                                             : p->failures;
                        }
                        (void) fprintf(f, "%s{pool=\"%s\"} %llu\n", series[s][0], p->name,
                                       (unsigned long long) v);
                }
        }
        (void) fprintf(f,
                       "# HELP sandpit_pool_shrinks_total Pooled sandboxes removed to give "
                       "capacity to cold creates.\n# TYPE sandpit_pool_shrinks_total counter\n"
                       "sandpit_pool_shrinks_total %llu\n",
                       (unsigned long long) ps->shrinks);
        (void) pthread_mutex_unlock(&ps->lock);
        census_done(&c);
}

/* --- the claim ----------------------------------------------------------- */

typedef struct {
        int nsfd;
        const char *hostname;
        int r;
} UtsArgs;

static void *uts_thread(void *arg)
{
        UtsArgs *u = arg;
        /* The namespace is this thread's alone, and the thread ends here. */
        if (setns(u->nsfd, CLONE_NEWUTS) < 0 || sethostname(u->hostname, strlen(u->hostname)) < 0)
                u->r = -errno;
        return NULL;
}

/* The hostname is the id (bundle.c); the pooled sandbox was made under its
 * name, so its UTS namespace learns the caller's id. */
static int set_hostname(pid_t init_pid, const char *hostname)
{
        char path[64];
        (void) snprintf(path, sizeof(path), "/proc/%d/ns/uts", (int) init_pid);
        cleanup_close int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        UtsArgs u = {.nsfd = fd, .hostname = hostname};
        pthread_t t;
        pthread_attr_t attr;
        (void) pthread_attr_init(&attr);
        (void) pthread_attr_setstacksize(&attr, (size_t) 64 * 1024);
        int r = -pthread_create(&t, &attr, uts_thread, &u);
        (void) pthread_attr_destroy(&attr);
        if (r < 0)
                return r;
        (void) pthread_join(t, NULL);
        return u.r;
}

/* Finds the name of the pool whose shape the request has; false if none. */
static bool pool_for(Pools *ps, const SandboxSpec *spec, char *name, size_t len)
{
        bool found = false;
        (void) pthread_mutex_lock(&ps->lock);
        for (Pool *p = ps->list; p && !found; p = p->next)
                if (p->size > 0 && shape_matches(&p->shape, spec)) {
                        (void) snprintf(name, len, "%s", p->name);
                        found = true;
                }
        (void) pthread_mutex_unlock(&ps->lock);
        return found;
}

/* Counts a claim or a miss and has the refill thread make a new one: after
 * the claim is done, so the new container's start does not slow it. */
static void note_claim(Pools *ps, const char *name, bool claimed)
{
        (void) pthread_mutex_lock(&ps->lock);
        Pool *p = find_pool_locked(ps, name);
        if (p)
                (*(claimed ? &p->claims : &p->misses))++;
        ps->kicks++;
        (void) pthread_cond_broadcast(&ps->cond);
        (void) pthread_mutex_unlock(&ps->lock);
}

/* Removes a claimed sandbox that could not be handed over; nothing of it is reused. */
static void discard(Agent *a, Sandbox *sb)
{
        code_forget_sandbox(sb->name); /* a kernel pre-started under the pooled id */
        code_forget_sandbox(sb->spec.id);
        (void) pthread_mutex_lock(&a->lock);
        if (sb->pidfd >= 0) {
                (void) epoll_ctl(a->epoll_fd, EPOLL_CTL_DEL, sb->pidfd, NULL);
                closep(&sb->pidfd);
        }
        (void) pthread_mutex_unlock(&a->lock);
        if (sandbox_teardown(a, sb->name, sb->dir, sb->spec.runtime) == 0)
                sandbox_release_ids(a, sb);
        (void) pthread_mutex_lock(&a->lock);
        sandbox_unlink_locked(a, sb);
        (void) pthread_mutex_unlock(&a->lock);
        sandbox_free(sb);
}

int pool_claim(Agent *a, SandboxSpec *spec, json_object **ret_obj, char *err, size_t errlen)
{
        Pools *ps = a->pools;
        char pool[64];
        if (!ps || spec->pool)
                return -ENOENT;
        /* Pools hold an image by its canonical name; a reference the cold
         * create would refuse is its to refuse. */
        if (is_image(spec->template_name) && canonical_template(a, &spec->template_name) < 0)
                return -ENOENT;
        if (!pool_for(ps, spec, pool, sizeof(pool)))
                return -ENOENT;
        int r = net_check_policy(a->net, &spec->network, err, errlen);
        if (r < 0)
                return r;

        /* Take a ready one and make it the caller's, in one go under the lock:
         * from here it is "creating" (invisible, a DELETE waits for us). */
        Sandbox *sb = NULL;
        char *new_id = NULL;
        (void) pthread_mutex_lock(&a->lock);
        bool id_ok = !a->stopping && (spec->id ? !sandbox_id_taken_locked(a, spec->id)
                                               : sandbox_new_id_locked(a, &new_id) == 0);
        /* One whose kernel is up first (a refill may still be starting one). */
        bool warm = false;
        for (Sandbox *s = a->sandboxes; id_ok && s && !warm; s = s->next)
                if (s->spec.pool && streq(s->spec.pool, pool) && s->state == SANDBOX_RUNNING &&
                    shape_matches(&s->spec, spec) && (!sb || code_prestarted_ready(s->spec.id))) {
                        warm = code_prestarted_ready(s->spec.id);
                        sb = s;
                }
        SandboxSpec pooled = {0};
        if (sb) {
                pooled = sb->spec;
                sb->spec = *spec;
                if (new_id)
                        sb->spec.id = TAKE_PTR(new_id);
                sb->state = SANDBOX_CREATING;
        }
        (void) pthread_mutex_unlock(&a->lock);
        free(new_id);
        if (!id_ok) /* taken id, shutting down: the cold path says so */
                return -ENOENT;
        if (!sb) {
                note_claim(ps, pool, false);
                return -ENOENT;
        }
        r = keep_image_defaults(&sb->spec, &pooled);
        sandbox_spec_done(&pooled);
        *spec = (SandboxSpec){0};

        const char *id = sb->spec.id, *step = "keep the image's defaults";
        uint64_t t0 = now_monotonic_us(), t_host = 0, t_secrets = 0, t_net = 0;
        if (r == 0) {
                step = "set the hostname";
                Runtime rt = sandbox_runtime(a, sb->spec.runtime);
                r = rt.gvisor ? runtime_exec_set_hostname(&rt, sb->name, id)
                              : set_hostname(sb->init_pid, id);
        }
        t_host = now_monotonic_us();
        if (r == 0 && sb->spec.secret_env && sb->spec.secret_env[0]) {
                step = "hand the secret env to sandpit-init";
                char serr[256] = "";
                r = exec_set_secrets(sb->socket_path, sb->init_pid, sb->spec.secret_env, serr,
                                     sizeof(serr));
        }
        t_secrets = now_monotonic_us();
        if (r == 0 && net_enabled(a->net) && sb->spec.network.egress != NET_EGRESS_DENY) {
                step = "apply the network policy"; /* pooled ones start with deny */
                r = net_sandbox_set_policy(a->net, sb->name, &sb->spec.network);
        }
        t_net = now_monotonic_us();
        /* The pre-started kernel becomes the caller's, or goes. */
        int kernel = 0;
        char kwhy[256] = "";
        if (r == 0) {
                SandboxExecInfo info;
                (void) pthread_mutex_lock(&a->lock);
                int q = exec_info_locked(sb, &info);
                (void) pthread_mutex_unlock(&a->lock);
                kernel = q < 0 ? q
                               : code_claim_kernel(sb->name, &info, sb->spec.secret_env, kwhy,
                                                   sizeof(kwhy));
                if (q < 0)
                        code_forget_sandbox(sb->name);
                else
                        sandbox_exec_info_done(&info);
        }
        uint64_t t_kernel = now_monotonic_us();
        secret_strv_free(sb->spec.secret_env); /* from here on only init holds them */
        sb->spec.secret_env = NULL;
        uint64_t now = now_realtime_us();
        sb->created_us = sb->started_us = now;
        sb->expires_us = now + sb->spec.timeout_s * 1000000u;
        if (r == 0) {
                step = "write the state file";
                r = state_save(sb);
        }
        (void) pthread_mutex_lock(&a->lock);
        bool cancelled = sb->delete_requested;
        json_object *o = NULL;
        if (r == 0 && !cancelled) {
                sb->state = SANDBOX_RUNNING;
                o = sandbox_to_json_locked(sb);
                (void) pthread_cond_broadcast(&a->table_changed);
        }
        (void) pthread_mutex_unlock(&a->lock);
        if (r < 0 || cancelled) {
                if (cancelled) {
                        (void) snprintf(err, errlen,
                                        "sandbox %s was deleted while it was being created", id);
                        r = -ECANCELED;
                } else {
                        (void) snprintf(err, errlen, "cannot %s: %s", step, strerror(-r));
                        log_sbx(LOG_LEVEL_ERROR, id, r, "claim from warm pool %s failed: cannot %s",
                                pool, step);
                        r = r == -ENOENT || r == -EINVAL || r == -EEXIST ? -EIO : r;
                }
                discard(a, sb);
                pool_kick(a);
                return r;
        }
        sandbox_wake_monitor(a);
        if (o)
                (void) json_object_object_add(o, "oom_kills", json_object_new_int(0));
        uint64_t t_end = now_monotonic_us();
        note_claim(ps, pool, true);
        if (kernel != 0) {
                (void) pthread_mutex_lock(&ps->lock);
                Pool *p = find_pool_locked(ps, pool);
                if (p)
                        (*(kernel > 0 ? &p->kernel_claims : &p->kernel_drops))++;
                (void) pthread_mutex_unlock(&ps->lock);
        }
        if (kernel < 0)
                log_sbx(LOG_LEVEL_INFO, id, 0,
                        "the pre-started python kernel was not handed over (%s): the first run "
                        "starts one",
                        kwhy);
        log_sbx(LOG_LEVEL_INFO, id, 0, "claimed from warm pool %s (%s) in %.2f ms", pool, sb->name,
                (double) (t_end - t0) / 1000.0);
        log_sbx(LOG_LEVEL_DEBUG, id, 0,
                "claim steps (ms): hostname %.2f, secrets %.2f, network %.2f, kernel %.2f, "
                "state+answer %.2f",
                (double) (t_host - t0) / 1000.0, (double) (t_secrets - t_host) / 1000.0,
                (double) (t_net - t_secrets) / 1000.0, (double) (t_kernel - t_net) / 1000.0,
                (double) (t_end - t_kernel) / 1000.0);
        if (!o)
                return -ENOMEM;
        *ret_obj = o;
        return 0;
}

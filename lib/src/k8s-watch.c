#include "sandpit/k8s-watch.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sandpit/log.h"
#include "sandpit/macro.h"
#include "sandpit/util.h"

struct K8sWatch {
        K8sClient *client;
        K8sWatchOptions opts;
        K8sWatchOps ops;
        void *userdata;
        atomic_bool stop;
        unsigned long seed;
        /* lock guards stats and pairs with wake for interruptible sleeps. */
        pthread_mutex_t lock;
        pthread_cond_t wake;
        K8sWatchStats stats;
};

int k8s_watch_new(K8sClient *client, const K8sWatchOptions *opts, const K8sWatchOps *ops,
                  void *userdata, K8sWatch **ret)
{
        if (!client || !opts || !ops || !ret || !opts->resource.version || !opts->resource.resource)
                return -EINVAL;
        K8sWatch *w = calloc(1, sizeof(*w));
        if (!w)
                return -ENOMEM;
        w->client = client;
        w->opts = *opts;
        w->ops = *ops;
        w->userdata = userdata;
        if (w->opts.page_size <= 0)
                w->opts.page_size = K8S_WATCH_PAGE_SIZE;
        if (w->opts.backoff_initial_ms <= 0)
                w->opts.backoff_initial_ms = 200;
        if (w->opts.backoff_max_ms <= 0)
                w->opts.backoff_max_ms = 30000;
        w->seed = (unsigned long) now_monotonic_us() ^ (unsigned long) (uintptr_t) w;
        atomic_init(&w->stop, false);
        (void) pthread_mutex_init(&w->lock, NULL);
        cond_init_monotonic(&w->wake);
        *ret = w;
        return 0;
}

void k8s_watch_free(K8sWatch *w)
{
        if (!w)
                return;
        (void) pthread_cond_destroy(&w->wake);
        (void) pthread_mutex_destroy(&w->lock);
        free(w);
}

void k8s_watch_stop(K8sWatch *w)
{
        (void) pthread_mutex_lock(&w->lock);
        atomic_store(&w->stop, true);
        (void) pthread_cond_broadcast(&w->wake);
        (void) pthread_mutex_unlock(&w->lock);
}

void k8s_watch_get_stats(K8sWatch *w, K8sWatchStats *ret)
{
        (void) pthread_mutex_lock(&w->lock);
        *ret = w->stats;
        (void) pthread_mutex_unlock(&w->lock);
}

static unsigned long next_random(unsigned long *seed)
{
        /* xorshift64: jitter only, not security */
        uint64_t x = *seed ? *seed : 0x9e3779b97f4a7c15ULL;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *seed = (unsigned long) x;
        return (unsigned long) x;
}

long k8s_backoff_ms(long initial_ms, long max_ms, unsigned attempt, long retry_after_s,
                    unsigned long *seed)
{
        long d = initial_ms > 0 ? initial_ms : 1;
        for (unsigned i = 0; i < attempt && d < max_ms; i++)
                d *= 2;
        if (d > max_ms)
                d = max_ms;
        long half = d / 2;
        long j = half + (half > 0 ? (long) (next_random(seed) % (unsigned long) (d - half)) : 0);
        if (retry_after_s > 0 && j < retry_after_s * 1000)
                j = retry_after_s * 1000;
        return j;
}

/* Sleeps ms unless stopped first. */
static void sleep_ms(K8sWatch *w, long ms)
{
        struct timespec ts;
        deadline_after_ms(&ts, ms);
        (void) pthread_mutex_lock(&w->lock);
        while (!atomic_load(&w->stop))
                if (pthread_cond_timedwait(&w->wake, &w->lock, &ts) == ETIMEDOUT)
                        break;
        (void) pthread_mutex_unlock(&w->lock);
}

static void backoff(K8sWatch *w, unsigned *attempt, int r, long retry_after_s)
{
        long ms = k8s_backoff_ms(w->opts.backoff_initial_ms, w->opts.backoff_max_ms, *attempt,
                                 retry_after_s, &w->seed);
        if (*attempt < 32)
                (*attempt)++;
        (void) pthread_mutex_lock(&w->lock);
        w->stats.failures++;
        w->stats.last_error = r;
        w->stats.last_backoff_ms = ms;
        (void) pthread_mutex_unlock(&w->lock);
        log_debug("k8s watch %s: %s; retrying in %ld ms", w->opts.resource.resource, strerror(-r),
                  ms);
        sleep_ms(w, ms);
}

static void set_rv(K8sWatch *w, const char *rv)
{
        (void) pthread_mutex_lock(&w->lock);
        (void) snprintf(w->stats.resource_version, sizeof(w->stats.resource_version), "%s", rv);
        (void) pthread_mutex_unlock(&w->lock);
}

static void count(K8sWatch *w, unsigned long *field)
{
        (void) pthread_mutex_lock(&w->lock);
        (*field)++;
        (void) pthread_mutex_unlock(&w->lock);
}

/* The consumer's error goes to *fatal, the API's is returned. */
static int do_list(K8sWatch *w, K8sError *err, int *fatal)
{
        K8sListOptions lo = {
                .label_selector = w->opts.label_selector,
                .field_selector = w->opts.field_selector,
                .limit = w->opts.page_size,
                .strip_managed_fields = true, /* a cache's copy needs none */
        };
        json_object *list = NULL;
        int r = k8s_list(w->client, &w->opts.resource, w->opts.namespace, &lo, &list, err);
        if (r < 0)
                return r;
        json_object *meta = NULL, *items = NULL, *rv = NULL;
        (void) json_object_object_get_ex(list, "items", &items);
        if (!json_object_object_get_ex(list, "metadata", &meta) ||
            !json_object_object_get_ex(meta, "resourceVersion", &rv) ||
            !json_object_is_type(rv, json_type_string) || json_object_get_string_len(rv) == 0) {
                json_object_put(list);
                return -EBADMSG;
        }
        set_rv(w, json_object_get_string(rv));
        count(w, &w->stats.lists);
        r = w->ops.on_list ? w->ops.on_list(items, json_object_get_string(rv), w->userdata) : 0;
        json_object_put(list);
        if (r < 0) {
                *fatal = r;
                return r;
        }
        return 0;
}

typedef struct {
        K8sWatch *w;
        K8sWatchParser parser;
        int callback_error; /* the consumer's error: fatal */
        long error_code;    /* an ERROR event's code */
        unsigned long delivered;
} StreamCtx;

static int on_watch_event(const K8sWatchEvent *ev, void *userdata)
{
        StreamCtx *s = userdata;
        K8sWatch *w = s->w;
        if (ev->type == K8S_WATCH_ERROR) {
                s->error_code = ev->code ? ev->code : 500;
                return http_status_to_errno(s->error_code, NULL);
        }
        if (ev->type != K8S_WATCH_BOOKMARK && w->ops.on_event) {
                int r = w->ops.on_event(ev, w->userdata);
                if (r < 0) {
                        s->callback_error = r;
                        return r;
                }
        }
        /* After the consumer has it: a restart resumes after this event. */
        (void) pthread_mutex_lock(&w->lock);
        (void) snprintf(w->stats.resource_version, sizeof(w->stats.resource_version), "%s",
                        ev->resource_version);
        if (ev->type == K8S_WATCH_BOOKMARK)
                w->stats.bookmarks++;
        else
                w->stats.events++;
        (void) pthread_mutex_unlock(&w->lock);
        s->delivered++;
        return 0;
}

static int on_data(const char *data, size_t len, void *userdata)
{
        StreamCtx *s = userdata;
        return k8s_watch_parser_feed(&s->parser, data, len);
}

static int watch_path(K8sWatch *w, long timeout_s, char **ret)
{
        cleanup_free char *path = NULL;
        char rv[64], timeout[32];
        (void) pthread_mutex_lock(&w->lock);
        (void) snprintf(rv, sizeof(rv), "%s", w->stats.resource_version);
        (void) pthread_mutex_unlock(&w->lock);
        (void) snprintf(timeout, sizeof(timeout), "%ld", timeout_s);
        int r = k8s_path(&w->opts.resource, w->opts.namespace, NULL, NULL, &path);
        if (r < 0)
                return r;
        if ((r = k8s_url_add_query(&path, "watch", "1")) < 0 ||
            (r = k8s_url_add_query(&path, "resourceVersion", rv)) < 0 ||
            (r = k8s_url_add_query(&path, "allowWatchBookmarks", "true")) < 0 ||
            (r = k8s_url_add_query(&path, "timeoutSeconds", timeout)) < 0 ||
            (r = k8s_url_add_query(&path, "labelSelector", w->opts.label_selector)) < 0 ||
            (r = k8s_url_add_query(&path, "fieldSelector", w->opts.field_selector)) < 0)
                return r;
        *ret = TAKE_PTR(path);
        return 0;
}

int k8s_watch_run(K8sWatch *w)
{
        bool need_list = true;
        unsigned attempt = 0;

        while (!atomic_load(&w->stop)) {
                K8sError err = {0};
                int fatal = 0;
                int r;

                if (need_list) {
                        r = do_list(w, &err, &fatal);
                        if (atomic_load(&w->stop))
                                break;
                        if (fatal < 0)
                                return fatal;
                        if (r < 0) {
                                backoff(w, &attempt, r, err.retry_after_s);
                                continue;
                        }
                        need_list = false;
                        attempt = 0;
                }

                long timeout_s = w->opts.timeout_s > 0 ? w->opts.timeout_s
                                                       : 300 + (long) (next_random(&w->seed) % 300);
                cleanup_free char *path = NULL;
                r = watch_path(w, timeout_s, &path);
                if (r < 0)
                        return r;

                StreamCtx s = {.w = w};
                k8s_watch_parser_init(&s.parser, on_watch_event, &s);
                r = k8s_stream(w->client, path, on_data, &s, &w->stop, (timeout_s + 30) * 1000,
                               &err);
                if (r == 0)
                        r = k8s_watch_parser_finish(&s.parser);
                k8s_watch_parser_done(&s.parser);
                bool opened = err.status >= 200 && err.status < 300;
                if (opened)
                        count(w, &w->stats.watches);

                if (atomic_load(&w->stop))
                        break;
                if (s.callback_error < 0)
                        return s.callback_error;
                if (r == -ESTALE) {
                        /* 410: the resourceVersion is gone; the list has the truth. */
                        count(w, &w->stats.gone);
                        need_list = true;
                        continue;
                }
                if (r == 0) {
                        /* The server ended the stream (timeoutSeconds): resume at once. */
                        count(w, &w->stats.reconnects);
                        attempt = 0;
                        continue;
                }
                if (opened && !s.error_code)
                        attempt = 0; /* a stream that worked and was cut: retry soon */
                if (r == -ECONNRESET || r == -EPIPE || r == -EBADMSG || r == -ECANCELED ||
                    k8s_errno_is_transient(r)) {
                        count(w, &w->stats.reconnects);
                        backoff(w, &attempt, r, err.retry_after_s);
                        continue;
                }
                /* 403, 404 (a CRD not there yet), TLS: back off, then list again. */
                backoff(w, &attempt, r, err.retry_after_s);
                need_list = true;
        }
        return 0;
}

/* envd's polling watchers: one thread per watcher runs the agent's watch
 * stream; GetWatcherEvents takes what it gathered. */
#include "watchers.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sandpit/json.h"
#include "sandpit/macro.h"
#include "sandpit/util.h"

#define WATCHER_START_MS 30000 /* the agent's watch must start within this */

typedef struct Watcher {
        char id[GW_WATCHER_ID_LEN + 1];
        char *sid, *path, *user;
        bool recursive;
        AgentClient *agent;
        pthread_t thread;
        bool running; /* thread created, not yet joined */
        volatile sig_atomic_t cancel;
        /* Guarded by GwWatchers.lock. */
        bool started, ended;
        int end_r;
        char end_msg[512];
        json_object *events; /* array of envd FilesystemEvent */
        uint64_t polled_us;  /* monotonic: created or last polled */
        uint64_t ended_us;   /* monotonic: when its stream ended */
        struct GwWatchers *ws;
        struct Watcher *next;
} Watcher;

struct GwWatchers {
        pthread_mutex_t lock;
        pthread_cond_t cond; /* a watcher started or ended */
        Watcher *list;
        size_t n;
};

json_object *gw_watch_event_to_envd(json_object *ev, const char *dir)
{
        static const char *const types[][2] = {{"create", "EVENT_TYPE_CREATE"},
                                               {"write", "EVENT_TYPE_WRITE"},
                                               {"remove", "EVENT_TYPE_REMOVE"},
                                               {"rename", "EVENT_TYPE_RENAME"},
                                               {"chmod", "EVENT_TYPE_CHMOD"}};
        const char *type = json_str(ev, "type"), *et = NULL;
        for (size_t i = 0; type && i < ARRAY_SIZE(types); i++)
                if (streq(type, types[i][0]))
                        et = types[i][1];
        if (!et)
                return NULL; /* start, keepalive, overflow, anything new */
        /* The name relative to the watched directory, as envd gives it. */
        const char *path = json_str(ev, "path"), *name = json_str(ev, "name");
        size_t pl = strlen(dir);
        while (pl > 1 && dir[pl - 1] == '/')
                pl--;
        if (path && strncmp(path, dir, pl) == 0 && path[pl] == '/')
                name = path + pl + 1;
        json_object *fe = json_object_new_object();
        if (!fe)
                return NULL;
        json_object_object_add(fe, "name", json_object_new_string(name ? name : ""));
        json_object_object_add(fe, "type", json_object_new_string(et));
        return fe;
}

int gw_watchers_new(GwWatchers **ret)
{
        GwWatchers *ws = calloc(1, sizeof(*ws));
        if (!ws)
                return -ENOMEM;
        pthread_mutex_init(&ws->lock, NULL);
        cond_init_monotonic(&ws->cond);
        *ret = ws;
        return 0;
}

static void watcher_free(Watcher *w)
{
        if (!w)
                return;
        if (w->running) {
                w->cancel = 1;
                (void) pthread_join(w->thread, NULL);
        }
        agent_client_free(w->agent);
        json_object_put(w->events);
        free(w->sid);
        free(w->path);
        free(w->user);
        free(w);
}

static void free_all(Watcher *list)
{
        while (list) {
                Watcher *next = list->next;
                watcher_free(list);
                list = next;
        }
}

/* Unlinks w; ws->lock held. */
static void unlink_locked(GwWatchers *ws, Watcher *w)
{
        for (Watcher **p = &ws->list; *p; p = &(*p)->next)
                if (*p == w) {
                        *p = w->next;
                        w->next = NULL;
                        ws->n--;
                        return;
                }
}

/* Moves watchers not polled for GW_WATCHER_IDLE_S onto *gone; lock held. */
static void sweep_locked(GwWatchers *ws, Watcher **gone)
{
        uint64_t now = now_monotonic_us();
        for (Watcher **p = &ws->list; *p;) {
                Watcher *w = *p;
                bool idle = (w->started || w->ended) &&
                            now - w->polled_us > (uint64_t) GW_WATCHER_IDLE_S * 1000000u;
                bool over =
                        w->ended && now - w->ended_us > (uint64_t) GW_WATCHER_ENDED_S * 1000000u;
                if (idle || over) {
                        *p = w->next;
                        ws->n--;
                        w->next = *gone;
                        *gone = w;
                } else {
                        p = &w->next;
                }
        }
}

static Watcher *find_locked(GwWatchers *ws, const char *sid, const char *id)
{
        for (Watcher *w = ws->list; w; w = w->next)
                if (streq(w->id, id) && streq(w->sid, sid))
                        return w;
        return NULL;
}

void gw_watchers_free(GwWatchers *ws)
{
        if (!ws)
                return;
        free_all(ws->list);
        pthread_cond_destroy(&ws->cond);
        pthread_mutex_destroy(&ws->lock);
        free(ws);
}

size_t gw_watchers_count(GwWatchers *ws)
{
        (void) pthread_mutex_lock(&ws->lock);
        size_t n = ws->n;
        (void) pthread_mutex_unlock(&ws->lock);
        return n;
}

static int on_event(json_object *ev, void *userdata)
{
        Watcher *w = userdata;
        if (w->cancel)
                return -ECANCELED;
        const char *type = json_str(ev, "type");
        if (type && streq(type, "start")) {
                (void) pthread_mutex_lock(&w->ws->lock);
                w->started = true;
                (void) pthread_cond_broadcast(&w->ws->cond);
                (void) pthread_mutex_unlock(&w->ws->lock);
                return 0;
        }
        json_object *fe = gw_watch_event_to_envd(ev, w->path);
        if (!fe)
                return 0;
        (void) pthread_mutex_lock(&w->ws->lock);
        if (json_object_array_length(w->events) >= GW_WATCHER_EVENTS_MAX)
                (void) json_object_array_del_idx(w->events, 0, 1);
        int r = json_object_array_add(w->events, fe);
        (void) pthread_mutex_unlock(&w->ws->lock);
        if (r < 0) {
                json_object_put(fe);
                return -ENOMEM;
        }
        return 0;
}

static void *watcher_thread(void *userdata)
{
        Watcher *w = userdata;
        int k = agent_client_watch(w->agent, w->sid, w->path, w->user, w->recursive, on_event, w);
        const AgentClientError *e = agent_client_error(w->agent);
        (void) pthread_mutex_lock(&w->ws->lock);
        w->ended = true;
        w->ended_us = now_monotonic_us();
        w->end_r = k < 0 ? (e->status == 409 ? -EBUSY : k) : -ENOENT;
        (void) snprintf(w->end_msg, sizeof(w->end_msg), "%s",
                        k < 0 && e->message[0] ? e->message
                        : k < 0                ? strerror(-k)
                                               : "the watch ended (the directory or its "
                                                 "sandbox is gone)");
        (void) pthread_cond_broadcast(&w->ws->cond);
        (void) pthread_mutex_unlock(&w->ws->lock);
        return NULL;
}

int gw_watcher_create(GwWatchers *ws, AgentClient *agent, const char *sid, const char *path,
                      const char *user, bool recursive, char id[GW_WATCHER_ID_LEN + 1], char *err,
                      size_t errlen)
{
        Watcher *w = calloc(1, sizeof(*w));
        if (!w) {
                agent_client_free(agent);
                (void) snprintf(err, errlen, "out of memory");
                return -ENOMEM;
        }
        w->agent = agent;
        w->ws = ws;
        w->recursive = recursive;
        w->polled_us = now_monotonic_us();
        if (!(w->sid = strdup(sid)) || !(w->path = strdup(path)) ||
            (user && !(w->user = strdup(user))) || !(w->events = json_object_new_array()) ||
            random_id(w->id, GW_WATCHER_ID_LEN) < 0) {
                watcher_free(w);
                (void) snprintf(err, errlen, "out of memory");
                return -ENOMEM;
        }
        agent_client_set_cancel(w->agent, &w->cancel);

        Watcher *gone = NULL;
        (void) pthread_mutex_lock(&ws->lock);
        sweep_locked(ws, &gone);
        if (ws->n >= GW_WATCHERS_MAX) {
                (void) pthread_mutex_unlock(&ws->lock);
                free_all(gone);
                watcher_free(w);
                (void) snprintf(err, errlen, "this gateway runs %u watchers: remove some first",
                                GW_WATCHERS_MAX);
                return -ENOSPC;
        }
        w->next = ws->list;
        ws->list = w;
        ws->n++;
        int r = -pthread_create(&w->thread, NULL, watcher_thread, w);
        if (r == 0) {
                w->running = true;
                struct timespec until;
                deadline_after_ms(&until, WATCHER_START_MS);
                while (!w->started && !w->ended && r == 0)
                        r = -pthread_cond_timedwait(&ws->cond, &ws->lock, &until);
        }
        if (!w->started) {
                /* Not started: the agent's answer, or no answer in time. */
                if (r == 0)
                        r = w->end_r;
                (void) snprintf(err, errlen, "%s",
                                w->ended          ? w->end_msg
                                : r == -ETIMEDOUT ? "the agent did not start the watch in time"
                                                  : strerror(-r));
                unlink_locked(ws, w);
        }
        (void) pthread_mutex_unlock(&ws->lock);
        free_all(gone);
        if (!w->started) {
                watcher_free(w);
                return r < 0 ? r : -EIO;
        }
        memcpy(id, w->id, GW_WATCHER_ID_LEN + 1);
        return 0;
}

int gw_watcher_events(GwWatchers *ws, const char *sid, const char *id, json_object **ret, char *err,
                      size_t errlen)
{
        Watcher *gone = NULL;
        json_object *fresh = json_object_new_array();
        if (!fresh)
                return -ENOMEM;
        int r = 0;
        (void) pthread_mutex_lock(&ws->lock);
        sweep_locked(ws, &gone);
        Watcher *w = find_locked(ws, sid, id);
        if (!w) {
                (void) snprintf(err, errlen, "no watcher %s in this sandbox", id);
                r = -ENOENT;
        } else if (json_object_array_length(w->events) > 0 || !w->ended) {
                w->polled_us = now_monotonic_us();
                *ret = w->events;
                w->events = TAKE_PTR(fresh);
        } else {
                /* Ended and drained: said once, then it is gone. */
                (void) snprintf(err, errlen, "watcher %s: %s", id, w->end_msg);
                r = w->end_r;
                unlink_locked(ws, w);
                w->next = gone;
                gone = w;
        }
        (void) pthread_mutex_unlock(&ws->lock);
        json_object_put(fresh);
        free_all(gone);
        return r;
}

int gw_watcher_remove(GwWatchers *ws, const char *sid, const char *id)
{
        Watcher *gone = NULL;
        (void) pthread_mutex_lock(&ws->lock);
        Watcher *w = find_locked(ws, sid, id);
        if (w)
                unlink_locked(ws, w);
        sweep_locked(ws, &gone);
        (void) pthread_mutex_unlock(&ws->lock);
        free_all(gone);
        if (!w)
                return -ENOENT;
        watcher_free(w);
        return 0;
}

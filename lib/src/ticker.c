#include "sandpit/ticker.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#include "sandpit/util.h"

struct Ticker {
        long period_ms;
        void (*fn)(void *userdata);
        void *userdata;
        pthread_mutex_t lock;
        pthread_cond_t cond; /* CLOCK_MONOTONIC: stop */
        bool stop;
        pthread_t thread;
};

static void *ticker_main(void *arg)
{
        Ticker *t = arg;
        pthread_mutex_lock(&t->lock);
        while (!t->stop) {
                struct timespec ts;
                deadline_after_ms(&ts, t->period_ms);
                while (!t->stop && pthread_cond_timedwait(&t->cond, &t->lock, &ts) != ETIMEDOUT)
                        ;
                if (t->stop)
                        break;
                pthread_mutex_unlock(&t->lock);
                t->fn(t->userdata);
                pthread_mutex_lock(&t->lock);
        }
        pthread_mutex_unlock(&t->lock);
        return NULL;
}

int ticker_start(long period_ms, void (*fn)(void *userdata), void *userdata, Ticker **ret)
{
        if (period_ms <= 0 || !fn || !ret)
                return -EINVAL;
        Ticker *t = calloc(1, sizeof(*t));
        if (!t)
                return -ENOMEM;
        *t = (Ticker){.period_ms = period_ms, .fn = fn, .userdata = userdata};
        pthread_mutex_init(&t->lock, NULL);
        cond_init_monotonic(&t->cond);
        int r = -pthread_create(&t->thread, NULL, ticker_main, t);
        if (r < 0) {
                pthread_mutex_destroy(&t->lock);
                pthread_cond_destroy(&t->cond);
                free(t);
                return r;
        }
        *ret = t;
        return 0;
}

void ticker_stop(Ticker *t)
{
        if (!t)
                return;
        pthread_mutex_lock(&t->lock);
        t->stop = true;
        pthread_cond_signal(&t->cond);
        pthread_mutex_unlock(&t->lock);
        pthread_join(t->thread, NULL);
        pthread_mutex_destroy(&t->lock);
        pthread_cond_destroy(&t->cond);
        free(t);
}

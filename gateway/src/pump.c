/* The pump (pump.h): a producer thread writing into a socket pair, the
 * response reading the other end. */
#include "pump.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sandpit/macro.h"
#include "sandpit/util.h"

struct GwPump {
        int rfd;
        int wfd;
        pthread_t thread;
        pthread_mutex_t lock;
        pthread_cond_t cond;
        bool started;
        bool finished;
        int result;
        volatile sig_atomic_t cancel;
        GwPumpFn fn;
        void (*destroy)(void *userdata);
        void *userdata;
        const char *keepalive; /* NULL: none */
        int keepalive_ms;
};

int gw_pump_write(GwPump *p, const void *data, size_t len)
{
        pthread_mutex_lock(&p->lock);
        if (!p->started) {
                p->started = true;
                pthread_cond_broadcast(&p->cond);
        }
        pthread_mutex_unlock(&p->lock);
        /* Any failure is the reader gone: -EPIPE, as pump.h says. */
        return send_all(p->wfd, data, len) < 0 ? -EPIPE : 0;
}

volatile sig_atomic_t *gw_pump_cancel_flag(GwPump *p)
{
        return &p->cancel;
}

static void *pump_thread(void *arg)
{
        GwPump *p = arg;
        int r = p->fn(p, p->userdata);
        /* EOF for the reader. */
        (void) shutdown(p->wfd, SHUT_WR);
        pthread_mutex_lock(&p->lock);
        p->finished = true;
        p->result = r;
        pthread_cond_broadcast(&p->cond);
        pthread_mutex_unlock(&p->lock);
        return NULL;
}

static void pump_free(GwPump *p)
{
        p->cancel = 1;
        (void) shutdown(p->rfd, SHUT_RDWR); /* a blocked writer gets EPIPE */
        (void) pthread_join(p->thread, NULL);
        if (p->destroy)
                p->destroy(p->userdata);
        closep(&p->rfd);
        closep(&p->wfd);
        pthread_mutex_destroy(&p->lock);
        pthread_cond_destroy(&p->cond);
        free(p);
}

static ssize_t pump_read(void *cls, int client_fd, char *buf, size_t max)
{
        GwPump *p = cls;
        for (;;) {
                struct pollfd fds[2] = {{.fd = p->rfd, .events = POLLIN},
                                        {.fd = client_fd, .events = POLLRDHUP}};
                int n = poll(fds, client_fd >= 0 ? 2 : 1, p->keepalive ? p->keepalive_ms : -1);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return negative_errno();
                if (n == 0) {
                        if (!p->keepalive)
                                continue;
                        size_t k = strlen(p->keepalive);
                        if (k > max)
                                continue;
                        memcpy(buf, p->keepalive, k);
                        return (ssize_t) k;
                }
                if (client_fd >= 0 && (fds[1].revents & (POLLRDHUP | POLLHUP | POLLERR))) {
                        p->cancel = 1;
                        return -EPIPE;
                }
                if (fds[0].revents == 0)
                        continue;
                ssize_t r = recv(p->rfd, buf, max, 0);
                if (r < 0 && errno == EINTR)
                        continue;
                return r < 0 ? negative_errno() : r;
        }
}

static void pump_destroy(void *cls)
{
        pump_free(cls);
}

void gw_pump_respond(HttpRequest *req, const char *content_type, GwPumpFn fn, GwPumpFailFn fail,
                     void (*destroy)(void *userdata), void *userdata)
{
        gw_pump_respond_keepalive(req, content_type, NULL, 0, fn, fail, destroy, userdata);
}

void gw_pump_respond_keepalive(HttpRequest *req, const char *content_type, const char *keepalive,
                               int interval_ms, GwPumpFn fn, GwPumpFailFn fail,
                               void (*destroy)(void *userdata), void *userdata)
{
        GwPump *p = calloc(1, sizeof(*p));
        int sv[2];
        if (!p || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
                free(p);
                fail(req, -ENOMEM, userdata);
                if (destroy)
                        destroy(userdata);
                return;
        }
        *p = (GwPump){.rfd = sv[0],
                      .wfd = sv[1],
                      .fn = fn,
                      .destroy = destroy,
                      .userdata = userdata,
                      .keepalive = keepalive,
                      .keepalive_ms = interval_ms};
        pthread_mutex_init(&p->lock, NULL);
        pthread_cond_init(&p->cond, NULL);
        int r = -pthread_create(&p->thread, NULL, pump_thread, p);
        if (r < 0) {
                closep(&p->rfd);
                closep(&p->wfd);
                free(p);
                fail(req, r, userdata);
                if (destroy)
                        destroy(userdata);
                return;
        }
        pthread_mutex_lock(&p->lock);
        while (!p->started && !p->finished)
                pthread_cond_wait(&p->cond, &p->lock);
        bool started = p->started;
        r = p->result;
        pthread_mutex_unlock(&p->lock);
        if (!started) {
                (void) pthread_join(p->thread, NULL);
                fail(req, r, userdata);
                if (destroy)
                        destroy(userdata);
                p->destroy = NULL;
                closep(&p->rfd);
                closep(&p->wfd);
                pthread_mutex_destroy(&p->lock);
                pthread_cond_destroy(&p->cond);
                free(p);
                return;
        }
        static const HttpStreamOps ops = {.read = pump_read, .destroy = pump_destroy};
        http_respond_stream(req, 200, content_type, &ops, p);
}

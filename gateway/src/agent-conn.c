/* Connections to an agent for the port proxy (agent-conn.h): the URL, the
 * socket, and the plain transport; TLS is agent-tls.c. */
#include "agent-conn.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "sandpit/macro.h"
#include "sandpit/util.h"

int gw_url_host_port(const char *url, const char *default_port, char *host, size_t hostlen,
                     char *port, size_t portlen)
{
        const char *hp = strstr(url, "://");
        if (!hp)
                return -EINVAL;
        hp += 3;
        size_t n = strcspn(hp, "/?#");
        const char *end = hp + n, *h = hp, *h_end, *colon;
        if (*h == '[') {
                h_end = memchr(h, ']', n);
                if (!h_end)
                        return -EINVAL;
                h++;
                colon = h_end + 1 < end ? h_end + 1 : NULL;
                if (colon && *colon != ':')
                        return -EINVAL;
        } else {
                colon = memchr(h, ':', n);
                h_end = colon ? colon : end;
        }
        const char *p = colon ? colon + 1 : default_port;
        size_t plen = colon ? (size_t) (end - p) : strlen(default_port);
        if (h_end == h || plen == 0 || plen > 5 || strspn(p, "0123456789") < plen)
                return -EINVAL;
        unsigned long v = strtoul(p, NULL, 10);
        if (v == 0 || v > 65535)
                return -EINVAL;
        if ((size_t) (h_end - h) >= hostlen || plen >= portlen)
                return -ENAMETOOLONG;
        memcpy(host, h, (size_t) (h_end - h));
        host[h_end - h] = 0;
        /* no user info, stray brackets or blanks: not a host */
        if (strpbrk(host, "[]@ \t\r\n"))
                return -EINVAL;
        memcpy(port, p, plen);
        port[plen] = 0;
        return 0;
}

/* connect() bounded by timeout_ms: non-blocking, then poll() for the
 * answer. -ETIMEDOUT when the address never answered (SYNs dropped, a full
 * backlog); the socket is blocking again on success. */
static int connect_bounded(int fd, const struct sockaddr *sa, socklen_t len, int timeout_ms)
{
        int flags = fcntl(fd, F_GETFL);
        if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
                return -errno;
        if (connect(fd, sa, len) < 0) {
                if (errno != EINPROGRESS)
                        return -errno;
                uint64_t deadline = now_monotonic_us() + (uint64_t) timeout_ms * 1000;
                for (;;) {
                        uint64_t now = now_monotonic_us();
                        if (now >= deadline)
                                return -ETIMEDOUT;
                        struct pollfd pf = {.fd = fd, .events = POLLOUT};
                        int n = poll(&pf, 1, (int) ((deadline - now + 999) / 1000));
                        if (n < 0 && errno == EINTR)
                                continue;
                        if (n < 0)
                                return -errno;
                        if (n > 0)
                                break;
                }
                int e = 0;
                socklen_t el = sizeof(e);
                if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el) < 0)
                        return -errno;
                if (e)
                        return -e;
        }
        return fcntl(fd, F_SETFL, flags) < 0 ? -errno : 0;
}

static int tcp_connect(const char *host, const char *port, int timeout_ms, int *ret)
{
        struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
        struct addrinfo *ai = NULL;
        if (getaddrinfo(host, port, &hints, &ai) != 0 || !ai)
                return -EHOSTUNREACH;
        int r = -ECONNREFUSED;
        for (struct addrinfo *a = ai; a; a = a->ai_next) {
                int fd = socket(a->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
                if (fd < 0) {
                        r = -errno;
                        continue;
                }
                r = connect_bounded(fd, a->ai_addr, a->ai_addrlen, timeout_ms);
                if (r == 0) {
                        *ret = fd;
                        break;
                }
                close(fd);
        }
        freeaddrinfo(ai);
        return r;
}

static int unix_connect(const char *path, int *ret)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        size_t n = strlen(path);
        if (n >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        memcpy(sa.sun_path, path, n + 1);
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (connect(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0) {
                int r = -errno;
                close(fd);
                return r;
        }
        *ret = fd;
        return 0;
}

static ssize_t plain_recv(GwConn *c, void *buf, size_t len)
{
        for (;;) {
                ssize_t n = recv(c->fd, buf, len, 0);
                if (n < 0 && errno == EINTR)
                        continue;
                return n < 0 ? negative_errno() : n;
        }
}

static int plain_send(GwConn *c, const void *data, size_t len)
{
        return send_all(c->fd, data, len);
}

static size_t plain_pending(GwConn *c)
{
        (void) c;
        return 0;
}

static void plain_free(GwConn *c)
{
        closep(&c->fd);
        free(c);
}

static const GwConnOps plain_ops = {
        .recv = plain_recv,
        .send = plain_send,
        .pending = plain_pending,
        .free = plain_free,
};

void gw_conn_free(GwConn *c)
{
        if (c)
                c->ops->free(c);
}

int gw_conn_open(const char *url, const AgentClientTls *tls, int connect_timeout_ms, GwConn **ret,
                 char *err, size_t errlen)
{
        bool https = strncmp(url, "https://", 8) == 0;
        int fd = -1, r;
        char host[256], port[8];
        if (strncmp(url, "unix://", 7) == 0) {
                r = unix_connect(url + 7, &fd);
        } else if (https || strncmp(url, "http://", 7) == 0) {
                if (!https && !tls->allow_http) {
                        snprintf(err, errlen,
                                 "the agent is at a plain http:// address and this gateway "
                                 "speaks only TLS to agents (--agent-insecure-http allows it)");
                        return -EPROTONOSUPPORT;
                }
                r = gw_url_host_port(url, https ? "443" : "80", host, sizeof(host), port,
                                     sizeof(port));
                if (r >= 0)
                        r = tcp_connect(host, port, connect_timeout_ms, &fd);
        } else {
                snprintf(err, errlen, "the agent's address has an unknown scheme");
                return -EPROTONOSUPPORT;
        }
        if (r == -ETIMEDOUT) {
                snprintf(err, errlen, "the agent did not answer the connect within %d ms",
                         connect_timeout_ms);
                return r;
        }
        if (r < 0) {
                snprintf(err, errlen, "cannot connect to the agent: %s", strerror(-r));
                return r;
        }
        if (https)
                return gw_conn_tls_new(fd, host, tls, ret, err, errlen);
        GwConn *c = malloc(sizeof(*c));
        if (!c) {
                close(fd);
                snprintf(err, errlen, "out of memory");
                return -ENOMEM;
        }
        *c = (GwConn){.ops = &plain_ops, .fd = fd};
        *ret = c;
        return 0;
}

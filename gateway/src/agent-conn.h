/* A byte stream to an agent, for the port proxy (proxy.c), which relays
 * bytes itself instead of through the agent client: a unix socket, plain TCP
 * (http://) or TLS (https://, GnuTLS, agent-tls.c) behind one small ops
 * struct, so the relay is written once. TLS verifies the agent's chain and
 * name as the process's agent clients do (agent_client_set_tls()); there is
 * no way to skip it. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "sandpit/agent-client.h"

typedef struct GwConn GwConn;

typedef struct {
        /* > 0 bytes, 0 the end of the stream, < 0 a negative errno. */
        ssize_t (*recv)(GwConn *c, void *buf, size_t len);
        /* All of data: 0 or a negative errno. */
        int (*send)(GwConn *c, const void *data, size_t len);
        /* Bytes already taken off the socket and not yet returned by recv
         * (TLS records): poll() on fd does not see them. */
        size_t (*pending)(GwConn *c);
        void (*free)(GwConn *c);
} GwConnOps;

struct GwConn {
        const GwConnOps *ops;
        int fd; /* the socket, for poll() */
};

/* Opens url: "unix:///path", "http://host[:port]" (only when tls allows it:
 * else -EPROTONOSUPPORT) or "https://host[:port]", whose certificate must
 * chain to tls->ca_file (NULL: the system's CAs) and carry tls->server_name
 * (NULL: the URL's host); anything after host:port is ignored. On failure
 * err says why (a TLS failure: -EKEYREJECTED for a certificate that does not
 * verify, -ECONNABORTED for any other handshake failure) and nothing is left
 * open. A TCP connect that gets no answer within connect_timeout_ms
 * fails with -ETIMEDOUT (the TLS handshake after it has its own bound). */
int gw_conn_open(const char *url, const AgentClientTls *tls, int connect_timeout_ms, GwConn **ret,
                 char *err, size_t errlen);

/* The bound the port proxy puts on a connect to an agent, as on its TLS
 * handshake (agent-tls.c). */
#define GW_AGENT_CONNECT_TIMEOUT_MS 10000

static inline ssize_t gw_conn_recv(GwConn *c, void *buf, size_t len)
{
        return c->ops->recv(c, buf, len);
}
static inline int gw_conn_send(GwConn *c, const void *data, size_t len)
{
        return c->ops->send(c, data, len);
}
static inline size_t gw_conn_pending(GwConn *c)
{
        return c->ops->pending(c);
}
void gw_conn_free(GwConn *c);

/* Splits "scheme://host[:port][/...]" (host a name, an IPv4 address or an
 * [IPv6] one, brackets dropped) with default_port when none is given. Pure.
 * -EINVAL: no host, a host with user info, blanks or stray brackets, a bad
 * port, an unclosed bracket; -ENAMETOOLONG: a buffer too small. */
int gw_url_host_port(const char *url, const char *default_port, char *host, size_t hostlen,
                     char *port, size_t portlen);

/* The TLS client on a connected socket (agent-tls.c); takes fd, closed on
 * failure too. host: the URL's host, the name checked when tls has none. */
int gw_conn_tls_new(int fd, const char *host, const AgentClientTls *tls, GwConn **ret, char *err,
                    size_t errlen);

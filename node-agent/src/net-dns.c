/* The agent's resolver for host entries (net-dns.h). One thread, one poll()
 * loop; every piece of work is bounded: queries of at most DNS_QUERY_MAX
 * bytes, at most DNS_MAX_PENDING upstream queries (DNS_MAX_PER_SOURCE from
 * one sandbox), DNS_MAX_CONNS TCP connections that are closed when idle, and
 * an upstream timeout. */
#include "net-dns.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <nftables/libnftables.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "net-dns-msg.h"
#include "sandpit/log.h"
#include "sandpit/macro.h"

#define DNS_QUERY_MAX      512
#define DNS_REPLY_MAX      4096
#define DNS_MAX_PENDING    128
#define DNS_MAX_PER_SOURCE 32
#define DNS_MAX_CONNS      32
#define DNS_CONN_IDLE_MS   10000

typedef struct {
        uint32_t ip;
        char chain[128];
        size_t n;
        char (*hosts)[DNS_NAME_MAX]; /* the k-th host entry's pattern */
} DnsClient;

typedef struct {
        int fd; /* -1: free */
        uint32_t ip;
        uint64_t gen;
        uint64_t deadline;
        size_t have;
        uint8_t buf[2 + DNS_QUERY_MAX];
} DnsConn;

typedef struct {
        int fd; /* the upstream socket; -1: free */
        uint32_t ip;
        struct sockaddr_in udp_peer; /* for a UDP query */
        int conn;                    /* for a TCP query: its DnsConn, or -1 */
        uint64_t conn_gen;
        uint64_t deadline;
        DnsQuestion q;
        size_t qlen;
        uint8_t query[DNS_QUERY_MAX];
} DnsPending;

struct NetDns {
        char *table;
        uint32_t upstream;
        int udp, tcp, stop[2];
        pthread_t thread;
        bool running;
        struct nft_ctx *nft;
        pthread_mutex_t lock; /* protects clients */
        DnsClient *clients;
        size_t nclients;
        uint64_t gen;
        DnsConn conns[DNS_MAX_CONNS];
        DnsPending pending[DNS_MAX_PENDING];
};

static uint64_t now_ms(void)
{
        struct timespec ts;
        (void) clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;
}

static DnsClient *client_find(NetDns *d, uint32_t ip)
{
        for (size_t i = 0; i < d->nclients; i++)
                if (d->clients[i].ip == ip)
                        return &d->clients[i];
        return NULL;
}

void net_dns_del(NetDns *d, uint32_t ip)
{
        if (!d)
                return;
        (void) pthread_mutex_lock(&d->lock);
        DnsClient *c = client_find(d, ip);
        if (c) {
                free(c->hosts);
                *c = d->clients[--d->nclients];
        }
        (void) pthread_mutex_unlock(&d->lock);
}

int net_dns_set(NetDns *d, uint32_t ip, const char *chain, const NetPolicy *p)
{
        if (!d)
                return 0;
        size_t n = net_policy_nhosts(p);
        if (n == 0) {
                net_dns_del(d, ip);
                return 0;
        }
        DnsClient nc = {.ip = ip, .n = n};
        if (snprintf(nc.chain, sizeof(nc.chain), "%s", chain) >= (int) sizeof(nc.chain))
                return -ENAMETOOLONG;
        if (!(nc.hosts = calloc(n, sizeof(*nc.hosts))))
                return -ENOMEM;
        for (size_t i = 0, k = 0; i < p->nallow; i++)
                if (p->allow[i].host[0])
                        memcpy(nc.hosts[k++], p->allow[i].host, DNS_NAME_MAX);
        (void) pthread_mutex_lock(&d->lock);
        DnsClient *c = client_find(d, ip);
        int r = 0;
        if (c) {
                free(c->hosts);
                *c = nc;
        } else {
                DnsClient *a = realloc(d->clients, (d->nclients + 1) * sizeof(DnsClient));
                if (a) {
                        d->clients = a;
                        a[d->nclients++] = nc;
                } else {
                        free(nc.hosts);
                        r = -ENOMEM;
                }
        }
        (void) pthread_mutex_unlock(&d->lock);
        return r;
}

/* The indices of the host entries of ip that allow name (a bit each, up to 64
 * tracked; more entries matching the same name share the first 64's sets). */
static size_t client_match(NetDns *d, uint32_t ip, const DnsQuestion *q, size_t *ks, size_t max,
                           char *chain, size_t chainlen)
{
        size_t n = 0;
        (void) pthread_mutex_lock(&d->lock);
        DnsClient *c = client_find(d, ip);
        for (size_t k = 0; c && q->plain && k < c->n && n < max; k++)
                if (dns_pattern_match(c->hosts[k], q->name))
                        ks[n++] = k;
        if (c)
                (void) snprintf(chain, chainlen, "%s", c->chain);
        (void) pthread_mutex_unlock(&d->lock);
        return n;
}

/* --- replies --------------------------------------------------------------- */

static void conn_close(DnsConn *c)
{
        if (c->fd >= 0)
                (void) close(c->fd);
        c->fd = -1;
        c->have = 0;
}

static void send_udp(NetDns *d, const struct sockaddr_in *to, const uint8_t *msg, size_t len)
{
        (void) sendto(d->udp, msg, len, MSG_DONTWAIT | MSG_NOSIGNAL, (const struct sockaddr *) to,
                      sizeof(*to));
}

/* Whole or not at all: a client that does not read is closed. */
static void send_tcp(DnsConn *c, const uint8_t *msg, size_t len)
{
        uint8_t out[2 + DNS_REPLY_MAX];
        if (c->fd < 0 || len > DNS_REPLY_MAX)
                return;
        out[0] = (uint8_t) (len >> 8);
        out[1] = (uint8_t) len;
        memcpy(out + 2, msg, len);
        if (send(c->fd, out, len + 2, MSG_DONTWAIT | MSG_NOSIGNAL) != (ssize_t) (len + 2))
                conn_close(c);
}

static void reply(NetDns *d, DnsPending *p, const uint8_t *msg, size_t len)
{
        if (p->conn < 0)
                send_udp(d, &p->udp_peer, msg, len);
        else if (d->conns[p->conn].gen == p->conn_gen)
                send_tcp(&d->conns[p->conn], msg, len);
}

static void reply_error(NetDns *d, DnsPending *p, int rcode)
{
        uint8_t out[DNS_QUERY_MAX];
        reply(d, p, out, dns_error_reply(p->query, &p->q, rcode, out));
}

static void pending_done(DnsPending *p)
{
        if (p->fd >= 0)
                (void) close(p->fd);
        p->fd = -1;
}

/* --- queries --------------------------------------------------------------- */

static void query(NetDns *d, const uint8_t *msg, size_t len, uint32_t ip,
                  const struct sockaddr_in *udp_peer, int conn)
{
        DnsPending t = {.fd = -1, .ip = ip, .conn = conn};
        if (len > DNS_QUERY_MAX || dns_query_parse(msg, len, &t.q) < 0)
                return; /* not a query: no answer */
        memcpy(t.query, msg, len);
        t.qlen = len;
        if (udp_peer)
                t.udp_peer = *udp_peer;
        if (conn >= 0)
                t.conn_gen = d->conns[conn].gen;
        size_t ks[1];
        char chain[128];
        if (client_match(d, ip, &t.q, ks, 1, chain, sizeof(chain)) == 0) {
                char a[20];
                net_addr_format(ip, a, sizeof(a));
                log_debug("dns: refused %s from %s", t.q.name, a);
                reply_error(d, &t, DNS_RCODE_REFUSED);
                return;
        }
        DnsPending *slot = NULL;
        size_t same = 0;
        for (size_t i = 0; i < DNS_MAX_PENDING; i++) {
                if (d->pending[i].fd < 0)
                        slot = slot ? slot : &d->pending[i];
                else
                        same += d->pending[i].ip == ip;
        }
        if (!slot || same >= DNS_MAX_PER_SOURCE) {
                reply_error(d, &t, DNS_RCODE_SERVFAIL);
                return;
        }
        /* A socket per query: its own random source port, and a reply is known
         * by the socket it comes to. */
        struct sockaddr_in up = {.sin_family = AF_INET,
                                 .sin_port = htons(53),
                                 .sin_addr.s_addr = htonl(d->upstream)};
        t.fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (t.fd < 0 || connect(t.fd, (struct sockaddr *) &up, sizeof(up)) < 0 ||
            send(t.fd, msg, len, MSG_NOSIGNAL) != (ssize_t) len) {
                pending_done(&t);
                reply_error(d, &t, DNS_RCODE_SERVFAIL);
                return;
        }
        t.deadline = now_ms() + NET_DNS_UPSTREAM_TIMEOUT_MS;
        *slot = t;
}

/* Adds (or refreshes) one address in one set: delete + add in one transaction
 * so the timeout starts again; plain add when it is not there yet. */
static void set_add(NetDns *d, const char *set, uint32_t addr, uint32_t ttl)
{
        char a[20], cmd[512];
        net_addr_format(addr, a, sizeof(a));
        uint32_t t = ttl < NET_DNS_TTL_MIN   ? NET_DNS_TTL_MIN
                     : ttl > NET_DNS_TTL_MAX ? NET_DNS_TTL_MAX
                                             : ttl;
        (void) snprintf(cmd, sizeof(cmd),
                        "delete element ip %s %s { %s }\nadd element ip %s %s { %s timeout %us }\n",
                        d->table, set, a, d->table, set, a, t);
        if (nft_run_cmd_from_buffer(d->nft, cmd) == 0)
                return;
        (void) snprintf(cmd, sizeof(cmd), "add element ip %s %s { %s timeout %us }\n", d->table,
                        set, a, t);
        if (nft_run_cmd_from_buffer(d->nft, cmd) != 0)
                log_debug("dns: cannot add %s to %s (a policy change or a delete meanwhile)", a,
                          set);
}

static void answer(NetDns *d, DnsPending *p)
{
        uint8_t msg[DNS_REPLY_MAX];
        ssize_t n = recv(p->fd, msg, sizeof(msg), MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return;
        DnsAddr addrs[DNS_MAX_ADDRS];
        size_t naddrs = 0;
        if (n < 0) {
                pending_done(p);
                reply_error(d, p, DNS_RCODE_SERVFAIL);
                return;
        }
        if (dns_answer_addrs(msg, (size_t) n, &p->q, addrs, &naddrs) < 0)
                return; /* not the answer to this query: keep waiting */
        /* The policy now, not when the query came: a change meanwhile wins. */
        size_t ks[64];
        char chain[128];
        size_t nk = client_match(d, p->ip, &p->q, ks, ARRAY_SIZE(ks), chain, sizeof(chain));
        for (size_t i = 0; i < nk; i++)
                for (size_t j = 0; j < naddrs; j++) {
                        char set[160];
                        (void) snprintf(set, sizeof(set), "%s-h%zu", chain, ks[i]);
                        set_add(d, set, addrs[j].addr, addrs[j].ttl);
                }
        if (nk)
                reply(d, p, msg, (size_t) n);
        else
                reply_error(d, p, DNS_RCODE_REFUSED);
        pending_done(p);
}

static void udp_readable(NetDns *d)
{
        for (int i = 0; i < 64; i++) {
                uint8_t msg[DNS_QUERY_MAX + 1];
                struct sockaddr_in from = {0};
                socklen_t fl = sizeof(from);
                ssize_t n = recvfrom(d->udp, msg, sizeof(msg), MSG_DONTWAIT,
                                     (struct sockaddr *) &from, &fl);
                if (n < 0)
                        return;
                if (fl == sizeof(from) && from.sin_family == AF_INET)
                        query(d, msg, (size_t) n, ntohl(from.sin_addr.s_addr), &from, -1);
        }
}

static void tcp_accept(NetDns *d)
{
        struct sockaddr_in from = {0};
        socklen_t fl = sizeof(from);
        int fd = accept4(d->tcp, (struct sockaddr *) &from, &fl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
                return;
        for (size_t i = 0; i < DNS_MAX_CONNS; i++)
                if (d->conns[i].fd < 0) {
                        d->conns[i] = (DnsConn){.fd = fd,
                                                .ip = ntohl(from.sin_addr.s_addr),
                                                .gen = ++d->gen,
                                                .deadline = now_ms() + DNS_CONN_IDLE_MS};
                        return;
                }
        (void) close(fd); /* full: the client retries */
}

static void tcp_readable(NetDns *d, int i)
{
        DnsConn *c = &d->conns[i];
        ssize_t n = recv(c->fd, c->buf + c->have, sizeof(c->buf) - c->have, MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return;
        if (n <= 0) {
                conn_close(c);
                return;
        }
        c->have += (size_t) n;
        c->deadline = now_ms() + DNS_CONN_IDLE_MS;
        while (c->fd >= 0 && c->have >= 2) {
                size_t need = ((size_t) c->buf[0] << 8) | c->buf[1];
                if (need < DNS_HEADER || need > DNS_QUERY_MAX) {
                        conn_close(c);
                        return;
                }
                if (c->have < 2 + need)
                        return;
                query(d, c->buf + 2, need, c->ip, NULL, i);
                if (c->fd < 0)
                        return;
                memmove(c->buf, c->buf + 2 + need, c->have - 2 - need);
                c->have -= 2 + need;
        }
}

static void expire(NetDns *d)
{
        uint64_t now = now_ms();
        for (size_t i = 0; i < DNS_MAX_PENDING; i++)
                if (d->pending[i].fd >= 0 && now >= d->pending[i].deadline) {
                        pending_done(&d->pending[i]);
                        reply_error(d, &d->pending[i], DNS_RCODE_SERVFAIL);
                }
        for (size_t i = 0; i < DNS_MAX_CONNS; i++)
                if (d->conns[i].fd >= 0 && now >= d->conns[i].deadline)
                        conn_close(&d->conns[i]);
}

static void *dns_thread(void *arg)
{
        NetDns *d = arg;
        struct pollfd pfd[3 + DNS_MAX_CONNS + DNS_MAX_PENDING];
        int who[3 + DNS_MAX_CONNS + DNS_MAX_PENDING];
        for (;;) {
                size_t n = 0;
                pfd[n] = (struct pollfd){.fd = d->stop[0], .events = POLLIN};
                who[n++] = -1;
                pfd[n] = (struct pollfd){.fd = d->udp, .events = POLLIN};
                who[n++] = -2;
                pfd[n] = (struct pollfd){.fd = d->tcp, .events = POLLIN};
                who[n++] = -3;
                for (int i = 0; i < DNS_MAX_CONNS; i++)
                        if (d->conns[i].fd >= 0) {
                                pfd[n] = (struct pollfd){.fd = d->conns[i].fd, .events = POLLIN};
                                who[n++] = i;
                        }
                for (int i = 0; i < DNS_MAX_PENDING; i++)
                        if (d->pending[i].fd >= 0) {
                                pfd[n] = (struct pollfd){.fd = d->pending[i].fd, .events = POLLIN};
                                who[n++] = 1000 + i;
                        }
                int k = poll(pfd, n, 500);
                if (k < 0 && errno != EINTR)
                        break;
                for (size_t i = 0; k > 0 && i < n; i++) {
                        if (!pfd[i].revents)
                                continue;
                        if (who[i] == -1)
                                return NULL;
                        if (who[i] == -2)
                                udp_readable(d);
                        else if (who[i] == -3)
                                tcp_accept(d);
                        else if (who[i] >= 1000 && d->pending[who[i] - 1000].fd == pfd[i].fd)
                                answer(d, &d->pending[who[i] - 1000]);
                        else if (who[i] < 1000 && d->conns[who[i]].fd == pfd[i].fd)
                                tcp_readable(d, who[i]);
                }
                expire(d);
        }
        return NULL;
}

/* --- setup ------------------------------------------------------------------ */

static int listen_socket(int type, uint32_t addr)
{
        int fd = socket(AF_INET, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        int one = 1;
        struct sockaddr_in sa = {
                .sin_family = AF_INET, .sin_port = htons(53), .sin_addr.s_addr = htonl(addr)};
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
            setsockopt(fd, IPPROTO_IP, IP_FREEBIND, &one, sizeof(one)) < 0 ||
            bind(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0 ||
            (type == SOCK_STREAM && listen(fd, 64) < 0)) {
                int r = -errno;
                (void) close(fd);
                return r;
        }
        return fd;
}

int net_dns_new(const char *table, uint32_t listen, uint32_t upstream, NetDns **ret)
{
        NetDns *d = calloc(1, sizeof(*d));
        if (!d)
                return -ENOMEM;
        d->udp = d->tcp = d->stop[0] = d->stop[1] = -1;
        (void) pthread_mutex_init(&d->lock, NULL);
        for (size_t i = 0; i < DNS_MAX_CONNS; i++)
                d->conns[i].fd = -1;
        for (size_t i = 0; i < DNS_MAX_PENDING; i++)
                d->pending[i].fd = -1;
        d->upstream = upstream;
        int r = -ENOMEM;
        if (!(d->table = strdup(table)) || !(d->nft = nft_ctx_new(NFT_CTX_DEFAULT)))
                goto fail;
        (void) nft_ctx_buffer_output(d->nft);
        (void) nft_ctx_buffer_error(d->nft);
        if ((d->udp = listen_socket(SOCK_DGRAM, listen)) < 0 ||
            (d->tcp = listen_socket(SOCK_STREAM, listen)) < 0) {
                r = d->udp < 0 ? d->udp : d->tcp;
                goto fail;
        }
        if (pipe2(d->stop, O_CLOEXEC) < 0) {
                r = -errno;
                goto fail;
        }
        if ((r = -pthread_create(&d->thread, NULL, dns_thread, d)) < 0)
                goto fail;
        d->running = true;
        *ret = d;
        return 0;
fail:
        net_dns_free(d);
        return r;
}

void net_dns_free(NetDns *d)
{
        if (!d)
                return;
        if (d->running) {
                (void) !write(d->stop[1], "x", 1);
                (void) pthread_join(d->thread, NULL);
        }
        for (size_t i = 0; i < DNS_MAX_CONNS; i++)
                conn_close(&d->conns[i]);
        for (size_t i = 0; i < DNS_MAX_PENDING; i++)
                pending_done(&d->pending[i]);
        for (size_t i = 0; i < d->nclients; i++)
                free(d->clients[i].hosts);
        free(d->clients);
        int fds[] = {d->udp, d->tcp, d->stop[0], d->stop[1]};
        for (size_t i = 0; i < ARRAY_SIZE(fds); i++)
                if (fds[i] >= 0)
                        (void) close(fds[i]);
        if (d->nft)
                nft_ctx_free(d->nft);
        free(d->table);
        (void) pthread_mutex_destroy(&d->lock);
        free(d);
}

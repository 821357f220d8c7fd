/* Network namespaces and veths. A network namespace is per thread, so every
 * step that must happen inside a sandbox's namespace runs on a short-lived
 * thread that setns()es into it; the agent's other threads never move. */
#include "net-link.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <unistd.h>

#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/link/veth.h>
#include <netlink/route/route.h>

#include "sandpit/macro.h"

#define PEER_IFNAME "eth0"

static int nl_to_errno(int e)
{
        switch (-e) {
        case 0:
                return 0;
        case NLE_EXIST:
                return -EEXIST;
        case NLE_OBJ_NOTFOUND:
        case NLE_NODEV:
                return -ENODEV;
        case NLE_NOMEM:
                return -ENOMEM;
        case NLE_PERM:
                return -EPERM;
        case NLE_INVAL:
        case NLE_RANGE:
                return -EINVAL;
        default:
                return -EIO;
        }
}

/* Runs fn on a new thread, inside the namespace nsfd (or a new one if -1). */
typedef struct {
        int nsfd;
        int (*fn)(void *arg);
        void *arg;
        int r;
} NsCall;

static void *ns_thread(void *p)
{
        NsCall *c = p;
        if (c->nsfd >= 0 ? setns(c->nsfd, CLONE_NEWNET) < 0 : unshare(CLONE_NEWNET) < 0) {
                c->r = -errno;
                return NULL;
        }
        c->r = c->fn(c->arg);
        return NULL;
}

static int ns_call(int nsfd, int (*fn)(void *arg), void *arg)
{
        NsCall c = {.nsfd = nsfd, .fn = fn, .arg = arg};
        pthread_t t;
        pthread_attr_t attr;
        (void) pthread_attr_init(&attr);
        (void) pthread_attr_setstacksize(&attr, (size_t) 256 * 1024);
        int r = -pthread_create(&t, &attr, ns_thread, &c);
        (void) pthread_attr_destroy(&attr);
        if (r < 0)
                return r;
        (void) pthread_join(t, NULL);
        return c.r;
}

static int pin_self(void *arg)
{
        const char *path = arg;
        char self[64];
        (void) snprintf(self, sizeof(self), "/proc/self/task/%d/ns/net", gettid());
        return mount(self, path, NULL, MS_BIND, NULL) < 0 ? -errno : 0;
}

int netns_create(const char *path)
{
        int fd = open(path, O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0400);
        if (fd < 0)
                return -errno;
        (void) close(fd);
        int r = ns_call(-1, pin_self, (void *) path);
        if (r < 0)
                (void) unlink(path);
        return r;
}

int netns_remove(const char *path)
{
        if (umount2(path, MNT_DETACH | UMOUNT_NOFOLLOW) < 0 && errno != EINVAL && errno != ENOENT)
                return -errno;
        if (unlink(path) < 0 && errno != ENOENT)
                return -errno;
        return 0;
}

typedef struct {
        int domain, type;
} SockArgs;

static int make_socket(void *arg)
{
        SockArgs *s = arg;
        int fd = socket(s->domain, s->type | SOCK_CLOEXEC, 0);
        return fd < 0 ? -errno : fd;
}

int netns_socket(const char *path, int domain, int type)
{
        cleanup_close int nsfd = open(path, O_RDONLY | O_CLOEXEC);
        if (nsfd < 0)
                return -errno;
        SockArgs s = {.domain = domain, .type = type};
        return ns_call(nsfd, make_socket, &s);
}

/* --- libnl ----------------------------------------------------------------- */

static void sock_freep(struct nl_sock **s)
{
        if (*s)
                nl_socket_free(*s);
}
#define cleanup_nlsock __attribute__((cleanup(sock_freep)))

static int route_socket(struct nl_sock **ret)
{
        struct nl_sock *s = nl_socket_alloc();
        if (!s)
                return -ENOMEM;
        int r = nl_connect(s, NETLINK_ROUTE);
        if (r < 0) {
                nl_socket_free(s);
                return nl_to_errno(r);
        }
        *ret = s;
        return 0;
}

static struct nl_addr *v4(uint32_t ip, int prefix)
{
        uint32_t be = htonl(ip);
        struct nl_addr *a = nl_addr_build(AF_INET, &be, sizeof(be));
        if (a)
                nl_addr_set_prefixlen(a, prefix);
        return a;
}

static int link_up(struct nl_sock *s, const char *name, int *ret_ifindex)
{
        struct rtnl_link *l = NULL, *change = NULL;
        int r = rtnl_link_get_kernel(s, 0, name, &l);
        if (r < 0)
                return nl_to_errno(r);
        change = rtnl_link_alloc();
        if (!change) {
                rtnl_link_put(l);
                return -ENOMEM;
        }
        rtnl_link_set_flags(change, IFF_UP);
        r = rtnl_link_change(s, l, change, 0);
        if (ret_ifindex)
                *ret_ifindex = rtnl_link_get_ifindex(l);
        rtnl_link_put(change);
        rtnl_link_put(l);
        return nl_to_errno(r);
}

/* local/32 with peer/32 on ifindex: the kernel adds the route to the peer. */
static int add_ptp_addr(struct nl_sock *s, int ifindex, uint32_t local, uint32_t peer)
{
        struct rtnl_addr *a = rtnl_addr_alloc();
        struct nl_addr *l = v4(local, 32), *p = v4(peer, 32);
        int r = -ENOMEM;
        if (a && l && p) {
                rtnl_addr_set_ifindex(a, ifindex);
                rtnl_addr_set_family(a, AF_INET);
                (void) rtnl_addr_set_local(a, l);
                (void) rtnl_addr_set_peer(a, p);
                rtnl_addr_set_prefixlen(a, 32);
                r = nl_to_errno(rtnl_addr_add(s, a, 0));
        }
        nl_addr_put(l);
        nl_addr_put(p);
        if (a)
                rtnl_addr_put(a);
        return r;
}

static int add_default_route(struct nl_sock *s, int ifindex, uint32_t gw)
{
        struct rtnl_route *rt = rtnl_route_alloc();
        struct rtnl_nexthop *nh = rtnl_route_nh_alloc();
        struct nl_addr *dst = v4(0, 0), *via = v4(gw, 32);
        int r = -ENOMEM;
        if (rt && nh && dst && via) {
                rtnl_route_set_family(rt, AF_INET);
                (void) rtnl_route_set_dst(rt, dst);
                rtnl_route_set_table(rt, RT_TABLE_MAIN);
                rtnl_route_set_protocol(rt, RTPROT_STATIC);
                rtnl_route_set_scope(rt, RT_SCOPE_UNIVERSE);
                rtnl_route_nh_set_ifindex(nh, ifindex);
                rtnl_route_nh_set_gateway(nh, via);
                rtnl_route_add_nexthop(rt, TAKE_PTR(nh));
                r = nl_to_errno(rtnl_route_add(s, rt, NLM_F_CREATE | NLM_F_EXCL));
        }
        if (nh)
                rtnl_route_nh_free(nh);
        nl_addr_put(dst);
        nl_addr_put(via);
        if (rt)
                rtnl_route_put(rt);
        return r;
}

/* IPv6 is off on both ends of a veth: the egress rules are IPv4 only, and a
 * link-local address would otherwise reach the node's IPv6 services. */
static int disable_ipv6(const char *ifname)
{
        char path[128];
        (void) snprintf(path, sizeof(path), "/proc/sys/net/ipv6/conf/%s/disable_ipv6", ifname);
        cleanup_close int fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd < 0)
                return errno == ENOENT ? 0 : -errno; /* no IPv6 in this kernel */
        return write(fd, "1", 1) == 1 ? 0 : negative_errno();
}

typedef struct {
        uint32_t ip, gw;
} InsideArgs;

static int configure_inside(void *arg)
{
        InsideArgs *in = arg;
        cleanup_nlsock struct nl_sock *s = NULL;
        int ifindex = 0;
        int r = route_socket(&s);
        if (r == 0)
                r = link_up(s, "lo", NULL);
        if (r == 0)
                r = disable_ipv6(PEER_IFNAME);
        if (r == 0)
                r = link_up(s, PEER_IFNAME, &ifindex);
        if (r == 0)
                r = add_ptp_addr(s, ifindex, in->ip, in->gw);
        if (r == 0)
                r = add_default_route(s, ifindex, in->gw);
        return r;
}

int net_link_setup(const char *netns_path, const char *host_if, uint32_t ip, uint32_t gw)
{
        cleanup_close int nsfd = open(netns_path, O_RDONLY | O_CLOEXEC);
        if (nsfd < 0)
                return -errno;
        cleanup_nlsock struct nl_sock *s = NULL;
        int r = route_socket(&s);
        if (r < 0)
                return r;
        struct rtnl_link *veth = rtnl_link_veth_alloc();
        if (!veth)
                return -ENOMEM;
        rtnl_link_set_name(veth, host_if);
        struct rtnl_link *peer = rtnl_link_veth_get_peer(veth);
        rtnl_link_set_name(peer, PEER_IFNAME);
        /* Born in the sandbox's namespace: the peer never exists on the node. */
        rtnl_link_set_ns_fd(peer, nsfd);
        rtnl_link_put(peer);
        r = nl_to_errno(rtnl_link_add(s, veth, NLM_F_CREATE | NLM_F_EXCL));
        rtnl_link_veth_release(veth);
        if (r < 0)
                return r;
        int ifindex = 0;
        r = disable_ipv6(host_if);
        if (r == 0)
                r = link_up(s, host_if, &ifindex);
        if (r == 0)
                r = add_ptp_addr(s, ifindex, gw, ip);
        if (r == 0) {
                InsideArgs in = {.ip = ip, .gw = gw};
                r = ns_call(nsfd, configure_inside, &in);
        }
        if (r < 0)
                (void) net_link_del(host_if);
        return r;
}

int net_link_del(const char *ifname)
{
        cleanup_nlsock struct nl_sock *s = NULL;
        int r = route_socket(&s);
        if (r < 0)
                return r;
        struct rtnl_link *l = rtnl_link_alloc();
        if (!l)
                return -ENOMEM;
        rtnl_link_set_name(l, ifname);
        r = nl_to_errno(rtnl_link_delete(s, l));
        rtnl_link_put(l);
        return r == -ENODEV ? 0 : r;
}

int net_link_list(const char *prefix, char ***ret)
{
        cleanup_nlsock struct nl_sock *s = NULL;
        struct nl_cache *cache = NULL;
        int r = route_socket(&s);
        if (r < 0)
                return r;
        if ((r = rtnl_link_alloc_cache(s, AF_UNSPEC, &cache)) < 0)
                return nl_to_errno(r);
        size_t n = 0, cap = (size_t) nl_cache_nitems(cache) + 1;
        char **names = calloc(cap, sizeof(char *));
        if (!names) {
                nl_cache_free(cache);
                return -ENOMEM;
        }
        for (struct nl_object *o = nl_cache_get_first(cache); o; o = nl_cache_get_next(o)) {
                const char *name = rtnl_link_get_name((struct rtnl_link *) o);
                if (name && n + 1 < cap && strncmp(name, prefix, strlen(prefix)) == 0)
                        if ((names[n] = strdup(name)))
                                n++;
        }
        nl_cache_free(cache);
        *ret = names;
        return 0;
}

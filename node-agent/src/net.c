/* Sandbox networking: leases, per-sandbox setup and teardown, the agent's
 * nftables table (docs/networking.md). */
#include "net.h"

#include <errno.h>
#include <fcntl.h>
#include <nftables/libnftables.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "net-dns.h"
#include "net-link.h"
#include "rootfs.h"
#include "sandpit/log.h"
#include "sandpit/macro.h"
#include "sandpit/util.h"
#include "userns.h"

#define IF_PREFIX "spx" /* node side of a veth: "spx" + the sandbox's address in hex */

typedef struct {
        char *id;
        uint32_t ip;
        NetPolicy policy;  /* in force: its host sets exist */
        char *resolv_path; /* NULL: none, or not known (adopted) */
} Lease;

struct NetManager {
        bool enabled;
        char *table;
        uint32_t dns;
        uint32_t *blocked_addr;
        uint8_t *blocked_prefix;
        size_t nblocked;
        char *leases_path;
        /* Protects pool, leases and nft (a libnftables context is not thread-safe). */
        pthread_mutex_t lock;
        NetPool pool;
        Lease *leases;
        size_t nleases;
        struct nft_ctx *nft;
        NetDns *resolver; /* with --dns: for host entries */
};

bool net_enabled(const NetManager *m)
{
        return m && m->enabled;
}

char *net_netns_path(const char *dir)
{
        char *p = NULL;
        return asprintf(&p, "%s/netns", dir) < 0 ? NULL : p;
}

static void ifname_of(uint32_t ip, char buf[16])
{
        (void) snprintf(buf, 16, IF_PREFIX "%08x", ip);
}

void net_sandbox_info_done(NetSandboxInfo *i)
{
        free(i->netns_path);
        free(i->resolv_path);
        *i = (NetSandboxInfo){0};
}

/* --- leases (call with lock held) ------------------------------------------ */

static Lease *lease_find(NetManager *m, const char *id)
{
        for (size_t i = 0; i < m->nleases; i++)
                if (streq(m->leases[i].id, id))
                        return &m->leases[i];
        return NULL;
}

static int leases_save(NetManager *m)
{
        json_object *o = json_object_new_object();
        if (!o)
                return -ENOMEM;
        for (size_t i = 0; i < m->nleases; i++) {
                char ip[20];
                net_addr_format(m->leases[i].ip, ip, sizeof(ip));
                (void) json_object_object_add(o, m->leases[i].id, json_object_new_string(ip));
        }
        size_t len = 0;
        const char *text = json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN, &len);
        int r = write_file_atomic(m->leases_path, text, len, 0600);
        json_object_put(o);
        return r;
}

static int lease_add(NetManager *m, const char *id, uint32_t ip)
{
        Lease *l = realloc(m->leases, (m->nleases + 1) * sizeof(Lease));
        if (!l)
                return -ENOMEM;
        m->leases = l;
        l[m->nleases] = (Lease){.ip = ip};
        if (!(l[m->nleases].id = strdup(id)))
                return -ENOMEM;
        m->nleases++;
        return 0;
}

static void lease_remove(NetManager *m, Lease *l)
{
        net_pool_release(&m->pool, l->ip);
        net_dns_del(m->resolver, l->ip);
        net_policy_done(&l->policy);
        free(l->resolv_path);
        free(l->id);
        *l = m->leases[--m->nleases];
}

static int leases_load(NetManager *m)
{
        cleanup_free char *text = NULL;
        int r = read_file(m->leases_path, (size_t) 16 << 20, &text, NULL);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return r;
        json_object *o = json_tokener_parse(text);
        if (!o || !json_object_is_type(o, json_type_object)) {
                json_object_put(o);
                log_warning("%s is not a JSON object; starting with no leases", m->leases_path);
                return 0;
        }
        json_object_object_foreach(o, id, val) {
                uint32_t ip;
                if (!id_is_valid(id) || net_addr_parse(json_object_get_string(val), &ip) < 0 ||
                    net_pool_reserve(&m->pool, ip) < 0) {
                        log_warning("dropping bad lease %s in %s", id, m->leases_path);
                        continue;
                }
                if ((r = lease_add(m, id, ip)) < 0)
                        break;
        }
        json_object_put(o);
        return r;
}

/* --- nftables (call with lock held) ---------------------------------------- */

/* One buffer is one netlink batch: the kernel applies all of it or none. */
static int nft_run(NetManager *m, const char *cmds)
{
        if (nft_run_cmd_from_buffer(m->nft, cmds) == 0)
                return 0;
        const char *e = nft_ctx_get_error_buffer(m->nft);
        log_debug("nft transaction failed: %s", e ? e : "?");
        return -EIO;
}

static NetChainCtx chain_ctx(const NetManager *m, const char *id, uint32_t ip, char *chain,
                             size_t chainlen, char ifname[16])
{
        (void) snprintf(chain, chainlen, "sbx-%s", id);
        ifname_of(ip, ifname);
        return (NetChainCtx){
                .table = m->table, .chain = chain, .ifname = ifname, .ip = ip, .dns = m->dns};
}

/* --- manager --------------------------------------------------------------- */

int net_manager_new(const NetConfig *cfg, const char *state_dir, NetManager **ret)
{
        NetManager *m = calloc(1, sizeof(*m));
        if (!m)
                return -ENOMEM;
        (void) pthread_mutex_init(&m->lock, NULL);
        *ret = m;
        if (!cfg->sandbox_cidr) {
                if (cfg->dns || (cfg->blocked_cidrs && cfg->blocked_cidrs[0]))
                        log_warning("--dns and --blocked-cidr take effect only with "
                                    "--sandbox-cidr");
                return 0;
        }
        m->enabled = true;
        uint32_t net;
        uint8_t prefix;
        if (net_cidr_parse(cfg->sandbox_cidr, &net, &prefix) < 0 ||
            net_pool_init(&m->pool, net, prefix) < 0)
                return log_error_errno(-EINVAL,
                                       "--sandbox-cidr %s: need a network address with a prefix "
                                       "of 16 to 29 bits, e.g. 10.88.0.0/16",
                                       cfg->sandbox_cidr);
        if (cfg->dns && net_addr_parse(cfg->dns, &m->dns) < 0)
                return log_error_errno(-EINVAL, "--dns %s is not an IPv4 address", cfg->dns);
        size_t n = 0;
        STRV_FOREACH(c, cfg->blocked_cidrs)
                n++;
        m->blocked_addr = calloc(n + 1, sizeof(uint32_t));
        m->blocked_prefix = calloc(n + 1, sizeof(uint8_t));
        if (!m->blocked_addr || !m->blocked_prefix)
                return -ENOMEM;
        STRV_FOREACH(c, cfg->blocked_cidrs) {
                if (net_cidr_parse(*c, &m->blocked_addr[m->nblocked],
                                   &m->blocked_prefix[m->nblocked]) < 0)
                        return log_error_errno(-EINVAL, "--blocked-cidr %s is not an IPv4 CIDR",
                                               *c);
                m->nblocked++;
        }
        const char *t = cfg->table ? cfg->table : "sandpit";
        for (const char *p = t; *p; p++)
                if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' ||
                      *p == '_') ||
                    strlen(t) > 64)
                        return log_error_errno(-EINVAL, "--net-table must be [a-z0-9_-]{1,64}");
        if (!*t || !(m->table = strdup(t)))
                return -EINVAL;
        cleanup_free char *dir = NULL;
        if (asprintf(&dir, "%s/network", state_dir) < 0 ||
            asprintf(&m->leases_path, "%s/leases.json", dir) < 0)
                return -ENOMEM;
        int r = mkdir_p(dir, 0700);
        if (r < 0)
                return log_error_errno(r, "cannot create %s", dir);
        if ((r = leases_load(m)) < 0)
                return log_error_errno(r, "cannot load %s", m->leases_path);
        m->nft = nft_ctx_new(NFT_CTX_DEFAULT);
        if (!m->nft)
                return -ENOMEM;
        (void) nft_ctx_buffer_output(m->nft);
        (void) nft_ctx_buffer_error(m->nft);
        /* The node routes the sandboxes' traffic. */
        cleanup_close int fd = open("/proc/sys/net/ipv4/ip_forward", O_WRONLY | O_CLOEXEC);
        if (fd < 0 || write(fd, "1\n", 2) != 2)
                return log_error_errno(negative_errno(), "cannot enable IPv4 forwarding");
        /* Host entries resolve through the agent, on the gateway address. */
        if (m->dns &&
            (r = net_dns_new(m->table, net_pool_gateway(&m->pool), m->dns, &m->resolver)) < 0)
                /* Not fatal: sandboxes keep --dns; only host entries are refused. */
                log_warning_errno(r, "cannot run the sandboxes' resolver on port 53 of the gateway "
                                     "address; allowlist host entries are refused");
        return 0;
}

void net_manager_free(NetManager *m)
{
        if (!m)
                return;
        net_dns_free(m->resolver);
        for (size_t i = 0; i < m->nleases; i++) {
                free(m->leases[i].id);
                free(m->leases[i].resolv_path);
                net_policy_done(&m->leases[i].policy);
        }
        free(m->leases);
        net_pool_done(&m->pool);
        if (m->nft)
                nft_ctx_free(m->nft);
        free(m->table);
        free(m->blocked_addr);
        free(m->blocked_prefix);
        free(m->leases_path);
        (void) pthread_mutex_destroy(&m->lock);
        free(m);
}

int net_check_policy(const NetManager *m, const NetPolicy *p, char *err, size_t errlen)
{
        if (p->egress != NET_EGRESS_DENY && !net_enabled(m)) {
                (void) snprintf(err, errlen,
                                "network.egress \"%s\" needs sandbox networking: start the agent "
                                "with --sandbox-cidr",
                                net_egress_name(p->egress));
                return -EINVAL;
        }
        if (net_policy_nhosts(p) && !m->resolver) {
                (void) snprintf(err, errlen,
                                "network.allow host entries need the agent's resolver: start "
                                "the agent with --dns (and port 53 free on the gateway "
                                "address)");
                return -EINVAL;
        }
        return 0;
}

/* In the sandbox's ctl dir, on its disk's tmpfs (rootfs.c, mounted before the
 * network is set up): a bind's source shows in the sandbox's mountinfo
 * relative to its filesystem, so "/ctl/resolv.conf" of that tmpfs, not a host
 * path naming the sandbox (a pooled sandbox's internal name). By its real
 * path: it is a bind's source in the OCI bundle. */
static int write_resolv(const char *dir, uint32_t dns, char **ret)
{
        char ip[20], text[64];
        net_addr_format(dns, ip, sizeof(ip));
        int n = snprintf(text, sizeof(text), "nameserver %s\n", ip);
        char *path = NULL;
        if (asprintf(&path, "%s/" ROOTFS_CTL_DIR "/resolv.conf", dir) < 0)
                return -ENOMEM;
        int r = write_file_atomic(path, text, (size_t) n, 0644);
        if (r < 0) {
                free(path);
                return r;
        }
        *ret = path;
        return 0;
}

/* The resolver a policy's sandbox uses: the agent's (on the gateway) when it
 * names hosts, else --dns. */
static uint32_t resolver_for(const NetManager *m, const NetPolicy *p)
{
        return m->resolver && net_policy_nhosts(p) ? net_pool_gateway(&m->pool) : m->dns;
}

/* A live change: rewritten in place, the sandbox has the file bind-mounted. */
static void rewrite_resolv(const char *path, uint32_t dns)
{
        char ip[20], text[64];
        net_addr_format(dns, ip, sizeof(ip));
        int n = snprintf(text, sizeof(text), "nameserver %s\n", ip);
        cleanup_close int fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0 || write(fd, text, (size_t) n) != n)
                log_warning_errno(negative_errno(), "cannot rewrite %s", path);
}

int net_sandbox_setup(NetManager *m, const char *id, const char *dir, const char *userns_path,
                      const NetPolicy *p, NetSandboxInfo *ret)
{
        NetSandboxInfo info = {0};
        cleanup_free char *cmds = NULL;
        if (!net_enabled(m)) {
                *ret = info;
                return 0;
        }
        uint32_t ip = 0;
        (void) pthread_mutex_lock(&m->lock);
        int r = lease_find(m, id) ? -EEXIST : net_pool_alloc(&m->pool, &ip);
        if (r == 0 && (r = lease_add(m, id, ip)) < 0)
                net_pool_release(&m->pool, ip);
        if (r == 0)
                r = leases_save(m);
        (void) pthread_mutex_unlock(&m->lock);
        if (r < 0)
                return r == -ENOSPC ? -EAGAIN : r;
        char ifname[16], chain[128];
        info.ip = ip;
        if (!(info.netns_path = net_netns_path(dir))) {
                r = -ENOMEM;
                goto fail;
        }
        if ((r = userns_path ? userns_netns_create(userns_path, info.netns_path)
                             : netns_create(info.netns_path)) < 0) {
                log_debug_errno(r, "netns %s", info.netns_path);
                goto fail;
        }
        if ((r = net_link_setup(info.netns_path, (ifname_of(ip, ifname), ifname), ip,
                                net_pool_gateway(&m->pool))) < 0) {
                log_debug_errno(r, "veth %s", ifname);
                goto fail;
        }
        if (m->dns && (r = write_resolv(dir, resolver_for(m, p), &info.resolv_path)) < 0)
                goto fail;
        NetChainCtx c = chain_ctx(m, id, ip, chain, sizeof(chain), ifname);
        if ((r = net_render_sandbox_add(p, &c, &cmds)) < 0)
                goto fail;
        (void) pthread_mutex_lock(&m->lock);
        Lease *l = lease_find(m, id);
        r = l ? nft_run(m, cmds) : -ENOENT;
        if (r == 0 && (r = net_policy_copy(p, &l->policy)) == 0 && info.resolv_path &&
            !(l->resolv_path = strdup(info.resolv_path)))
                r = -ENOMEM;
        if (r == 0)
                r = net_dns_set(m->resolver, ip, chain, p);
        (void) pthread_mutex_unlock(&m->lock);
        if (r < 0)
                goto fail;
        *ret = info;
        return 0;
fail:
        net_sandbox_info_done(&info);
        (void) net_sandbox_teardown(m, id, dir);
        return r;
}

/* The namespace's bind mount, whether or not networking is on now (an agent
 * restarted without --sandbox-cidr still removes what it made before). */
static int remove_netns(const char *id, const char *dir)
{
        if (!dir)
                return 0;
        cleanup_free char *ns = net_netns_path(dir);
        if (!ns)
                return -ENOMEM;
        int r = netns_remove(ns);
        if (r < 0)
                log_error_errno(r, "sandbox %s: cannot remove %s", id, ns);
        return r;
}

int net_sandbox_teardown(NetManager *m, const char *id, const char *dir)
{
        if (!net_enabled(m))
                return remove_netns(id, dir);
        int ret = 0, r;
        (void) pthread_mutex_lock(&m->lock);
        Lease *l = lease_find(m, id);
        uint32_t ip = l ? l->ip : 0;
        if (l) {
                char chain[128], ifname[16];
                NetChainCtx c = chain_ctx(m, id, ip, chain, sizeof(chain), ifname);
                cleanup_free char *cmds = NULL;
                net_dns_del(m->resolver, ip);
                if (net_render_sandbox_del(&l->policy, &c, &cmds) == 0 && nft_run(m, cmds) < 0) {
                        /* Part of it is gone already (a half-made sandbox): remove the rest
                         * one by one, each of which may fail. */
                        for (char *save = NULL, *line = strtok_r(cmds, "\n", &save); line;
                             line = strtok_r(NULL, "\n", &save))
                                (void) nft_run(m, line);
                }
        }
        (void) pthread_mutex_unlock(&m->lock);
        if (l) {
                char ifname[16];
                ifname_of(ip, ifname);
                if ((r = net_link_del(ifname)) < 0) {
                        log_error_errno(r, "sandbox %s: cannot delete veth %s", id, ifname);
                        ret = r;
                }
        }
        if ((r = remove_netns(id, dir)) < 0)
                ret = r;
        if (ret == 0 && l) {
                (void) pthread_mutex_lock(&m->lock);
                if ((l = lease_find(m, id))) {
                        lease_remove(m, l);
                        ret = leases_save(m);
                }
                (void) pthread_mutex_unlock(&m->lock);
        }
        return ret;
}

int net_sandbox_set_policy(NetManager *m, const char *id, const NetPolicy *p)
{
        if (!net_enabled(m))
                return p->egress == NET_EGRESS_DENY ? 0 : -EINVAL;
        (void) pthread_mutex_lock(&m->lock);
        Lease *l = lease_find(m, id);
        int r = -ENOENT;
        if (l) {
                char chain[128], ifname[16];
                NetChainCtx c = chain_ctx(m, id, l->ip, chain, sizeof(chain), ifname);
                cleanup_free char *cmds = NULL;
                NetPolicy copy = {0};
                r = net_policy_copy(p, &copy);
                if (r == 0)
                        r = net_render_sandbox_update(&l->policy, p, &c, &cmds);
                if (r == 0)
                        r = nft_run(m, cmds);
                if (r == 0) {
                        net_policy_done(&l->policy);
                        l->policy = copy;
                        copy = (NetPolicy){0};
                        r = net_dns_set(m->resolver, l->ip, chain, p);
                        if (l->resolv_path && m->dns)
                                rewrite_resolv(l->resolv_path, resolver_for(m, p));
                }
                net_policy_done(&copy);
        }
        (void) pthread_mutex_unlock(&m->lock);
        return r;
}

int net_sandbox_ip(NetManager *m, const char *id, uint32_t *ret)
{
        if (!net_enabled(m))
                return -ENOENT;
        (void) pthread_mutex_lock(&m->lock);
        Lease *l = lease_find(m, id);
        if (l)
                *ret = l->ip;
        (void) pthread_mutex_unlock(&m->lock);
        return l ? 0 : -ENOENT;
}

int net_recover(NetManager *m, const NetAdopted *adopted, size_t n)
{
        if (!net_enabled(m))
                return 0;
        (void) pthread_mutex_lock(&m->lock);
        /* Leases of sandboxes that were not adopted (their teardown already ran
         * if their dir existed): drop them with their veths. */
        for (size_t i = 0; i < m->nleases;) {
                bool keep = false;
                for (size_t k = 0; k < n && !keep; k++)
                        keep = streq(adopted[k].id, m->leases[i].id);
                if (keep) {
                        i++;
                        continue;
                }
                char ifname[16];
                ifname_of(m->leases[i].ip, ifname);
                log_info("releasing the lease of sandbox %s", m->leases[i].id);
                (void) net_link_del(ifname);
                lease_remove(m, &m->leases[i]);
        }
        int r = leases_save(m);
        /* The whole table in one transaction: what the old agent left is
         * replaced by exactly the adopted sandboxes' rules. */
        cleanup_free char *cmds = NULL;
        NetTableCtx t = {.table = m->table,
                         .if_prefix = IF_PREFIX,
                         .net = m->pool.net,
                         .prefix = m->pool.prefix,
                         .blocked_addr = m->blocked_addr,
                         .blocked_prefix = m->blocked_prefix,
                         .nblocked = m->nblocked,
                         .resolver = m->resolver ? net_pool_gateway(&m->pool) : 0};
        int k = net_render_table(&t, &cmds);
        for (size_t i = 0; k == 0 && i < n; i++) {
                Lease *l = lease_find(m, adopted[i].id);
                if (!l) {
                        log_warning("sandbox %s was adopted without an address lease; it has "
                                    "no network",
                                    adopted[i].id);
                        continue;
                }
                char chain[128], ifname[16];
                NetChainCtx c = chain_ctx(m, l->id, l->ip, chain, sizeof(chain), ifname);
                k = net_render_sandbox_add(adopted[i].policy, &c, &cmds);
                net_policy_done(&l->policy);
                if (k == 0)
                        k = net_policy_copy(adopted[i].policy, &l->policy);
                if (k == 0)
                        k = net_dns_set(m->resolver, l->ip, chain, adopted[i].policy);
                free(l->resolv_path);
                l->resolv_path = NULL;
                if (k == 0 && adopted[i].dir && m->dns &&
                    rootfs_ctl_path(adopted[i].dir, "resolv.conf", &l->resolv_path) < 0) {
                        l->resolv_path = NULL;
                        k = -ENOMEM;
                }
        }
        if (k == 0)
                k = nft_run(m, cmds);
        if (k < 0) {
                const char *e = nft_ctx_get_error_buffer(m->nft);
                log_error_errno(k, "cannot install nftables table %s: %s", m->table, e ? e : "");
                r = k;
        }
        /* Veths of ours with no lease: remains of a create the old agent did not finish. */
        cleanup_strv char **links = NULL;
        if (net_link_list(IF_PREFIX, &links) == 0)
                STRV_FOREACH(name, links) {
                        const char *hex = *name + strlen(IF_PREFIX);
                        char *end = NULL;
                        bool leased = false;
                        uint32_t ip = (uint32_t) strtoul(hex, &end, 16);
                        if (strlen(hex) != 8 || *end || !net_pool_contains(&m->pool, ip))
                                continue;
                        for (size_t i = 0; i < m->nleases; i++)
                                leased |= m->leases[i].ip == ip;
                        if (!leased) {
                                log_info("removing orphaned veth %s", *name);
                                (void) net_link_del(*name);
                        }
                }
        (void) pthread_mutex_unlock(&m->lock);
        return r;
}

/* CIDRs, the address pool, egress policies and their nftables rendering
 * (docs/networking.md). Pure: no system calls. */
#include "net-policy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net-dns-msg.h"
#include "sandpit/macro.h"

/* --- addresses ------------------------------------------------------------ */

uint32_t net_prefix_mask(uint8_t prefix)
{
        return prefix == 0 ? 0 : (uint32_t) (0xffffffffu << (32 - prefix));
}

int net_addr_parse(const char *s, uint32_t *ret_addr)
{
        struct in_addr a;
        if (!s || inet_pton(AF_INET, s, &a) != 1)
                return -EINVAL;
        *ret_addr = ntohl(a.s_addr);
        return 0;
}

int net_cidr_parse(const char *s, uint32_t *ret_addr, uint8_t *ret_prefix)
{
        char buf[32];
        if (!s || strlen(s) >= sizeof(buf))
                return -EINVAL;
        memcpy(buf, s, strlen(s) + 1);
        long prefix = 32;
        char *slash = strchr(buf, '/');
        if (slash) {
                *slash = 0;
                char *end = NULL;
                const char *p = slash + 1;
                if (*p < '0' || *p > '9' || strlen(p) > 2)
                        return -EINVAL;
                prefix = strtol(p, &end, 10);
                if (*end || prefix < 0 || prefix > 32)
                        return -EINVAL;
        }
        uint32_t addr;
        if (net_addr_parse(buf, &addr) < 0)
                return -EINVAL;
        if (addr & ~net_prefix_mask((uint8_t) prefix))
                return -EINVAL; /* host bits set: probably not what was meant */
        *ret_addr = addr;
        *ret_prefix = (uint8_t) prefix;
        return 0;
}

void net_addr_format(uint32_t addr, char *buf, size_t len)
{
        (void) snprintf(buf, len, "%u.%u.%u.%u", addr >> 24, (addr >> 16) & 0xff,
                        (addr >> 8) & 0xff, addr & 0xff);
}

void net_cidr_format(uint32_t addr, uint8_t prefix, char *buf, size_t len)
{
        if (prefix == 32)
                net_addr_format(addr, buf, len);
        else
                (void) snprintf(buf, len, "%u.%u.%u.%u/%u", addr >> 24, (addr >> 16) & 0xff,
                                (addr >> 8) & 0xff, addr & 0xff, prefix);
}

/* --- pool ----------------------------------------------------------------- */

int net_pool_init(NetPool *p, uint32_t net, uint8_t prefix)
{
        if (prefix < 16 || prefix > 29 || (net & ~net_prefix_mask(prefix)))
                return -EINVAL;
        *p = (NetPool){.net = net, .prefix = prefix, .size = 1u << (32 - prefix), .next = 2};
        p->used = calloc(p->size, 1);
        if (!p->used)
                return -ENOMEM;
        p->used[0] = p->used[1] = p->used[p->size - 1] = 1;
        return 0;
}

void net_pool_done(NetPool *p)
{
        free(p->used);
        *p = (NetPool){0};
}

uint32_t net_pool_gateway(const NetPool *p)
{
        return p->net + 1;
}

bool net_pool_contains(const NetPool *p, uint32_t ip)
{
        return p->used && (ip & net_prefix_mask(p->prefix)) == p->net;
}

int net_pool_alloc(NetPool *p, uint32_t *ret_ip)
{
        for (uint32_t i = 0; i < p->size; i++) {
                uint32_t off = (p->next + i) % p->size;
                if (!p->used[off]) {
                        p->used[off] = 1;
                        p->next = (off + 1) % p->size;
                        *ret_ip = p->net + off;
                        return 0;
                }
        }
        return -ENOSPC;
}

int net_pool_reserve(NetPool *p, uint32_t ip)
{
        if (!net_pool_contains(p, ip))
                return -ERANGE;
        uint32_t off = ip - p->net;
        if (off < 2 || off == p->size - 1)
                return -ERANGE;
        if (p->used[off])
                return -EEXIST;
        p->used[off] = 1;
        return 0;
}

void net_pool_release(NetPool *p, uint32_t ip)
{
        if (!net_pool_contains(p, ip))
                return;
        uint32_t off = ip - p->net;
        if (off >= 2 && off < p->size - 1)
                p->used[off] = 0;
}

/* --- policies ------------------------------------------------------------- */

const char *net_egress_name(NetEgress e)
{
        switch (e) {
        case NET_EGRESS_ALLOWLIST:
                return "allowlist";
        case NET_EGRESS_ALLOW:
                return "allow";
        case NET_EGRESS_DENY:
                break;
        }
        return "deny";
}

size_t net_policy_nhosts(const NetPolicy *p)
{
        size_t n = 0;
        for (size_t i = 0; p->egress == NET_EGRESS_ALLOWLIST && i < p->nallow; i++)
                n += p->allow[i].host[0] != 0;
        return n;
}

void net_policy_done(NetPolicy *p)
{
        free(p->allow);
        free(p->deny);
        *p = (NetPolicy){0};
}

static int port_from_json(json_object *v, uint16_t *lo, uint16_t *hi)
{
        if (json_object_is_type(v, json_type_int)) {
                int64_t n = json_object_get_int64(v);
                if (n < 1 || n > 65535)
                        return -EINVAL;
                *lo = *hi = (uint16_t) n;
                return 0;
        }
        if (!json_object_is_type(v, json_type_string))
                return -EINVAL;
        const char *str = json_object_get_string(v);
        char *end = NULL;
        if (str[0] < '0' || str[0] > '9')
                return -EINVAL;
        errno = 0;
        unsigned long a = strtoul(str, &end, 10), b = 0;
        if (errno || *end != '-' || end[1] < '0' || end[1] > '9')
                return -EINVAL;
        b = strtoul(end + 1, &end, 10);
        if (errno || *end || a < 1 || b > 65535 || a > b)
                return -EINVAL;
        *lo = (uint16_t) a;
        *hi = (uint16_t) b;
        return 0;
}

static int rule_from_json(json_object *o, const char *list, NetRule *r, char *err, size_t errlen)
{
        *r = (NetRule){0};
        bool have_cidr = false, have_host = false;
        if (!json_object_is_type(o, json_type_object)) {
                (void) snprintf(err, errlen, "network.%s entries must be objects", list);
                return -EINVAL;
        }
        json_object_object_foreach(o, key, val) {
                if (streq(key, "cidr")) {
                        if (!json_object_is_type(val, json_type_string) ||
                            net_cidr_parse(json_object_get_string(val), &r->addr, &r->prefix) < 0) {
                                (void) snprintf(err, errlen,
                                                "network.%s: cidr must be an IPv4 address or "
                                                "CIDR like \"198.18.0.0/15\" (no host bits set)",
                                                list);
                                return -EINVAL;
                        }
                        have_cidr = true;
                } else if (streq(key, "host") && streq(list, "allow")) {
                        if (!json_object_is_type(val, json_type_string) ||
                            dns_pattern_normalize(json_object_get_string(val), r->host) < 0) {
                                (void) snprintf(err, errlen,
                                                "network.allow: host must be a DNS name like "
                                                "\"example.com\" or \"*.example.com\"");
                                return -EINVAL;
                        }
                        have_host = true;
                } else if (streq(key, "protocol")) {
                        const char *p = json_object_is_type(val, json_type_string)
                                                ? json_object_get_string(val)
                                                : "";
                        if (streq(p, "tcp"))
                                r->proto = NET_PROTO_TCP;
                        else if (streq(p, "udp"))
                                r->proto = NET_PROTO_UDP;
                        else if (streq(p, "any"))
                                r->proto = NET_PROTO_ANY;
                        else {
                                (void) snprintf(err, errlen,
                                                "network.%s: protocol must be \"tcp\", \"udp\" or "
                                                "\"any\"",
                                                list);
                                return -EINVAL;
                        }
                } else if (streq(key, "ports")) {
                        size_t n = json_object_is_type(val, json_type_array)
                                           ? json_object_array_length(val)
                                           : NET_MAX_PORTS + 1;
                        if (n > NET_MAX_PORTS) {
                                (void) snprintf(err, errlen,
                                                "network.%s: ports must be an array of at most "
                                                "%d ports or \"LO-HI\" ranges",
                                                list, NET_MAX_PORTS);
                                return -EINVAL;
                        }
                        for (size_t i = 0; i < n; i++)
                                if (port_from_json(json_object_array_get_idx(val, i),
                                                   &r->port_lo[i], &r->port_hi[i]) < 0) {
                                        (void) snprintf(err, errlen,
                                                        "network.%s: a port is 1-65535 or a "
                                                        "string \"LO-HI\"",
                                                        list);
                                        return -EINVAL;
                                }
                        r->nports = n;
                } else {
                        (void) snprintf(err, errlen, "network.%s: unknown field \"%.64s\"", list,
                                        key);
                        return -EINVAL;
                }
        }
        if (have_cidr == have_host) {
                (void) snprintf(err, errlen, "network.%s entries need %s", list,
                                streq(list, "allow") ? "either a cidr or a host" : "a cidr");
                return -EINVAL;
        }
        return 0;
}

static int rules_from_json(json_object *v, const char *list, NetRule **ret, size_t *ret_n,
                           char *err, size_t errlen)
{
        if (!json_object_is_type(v, json_type_array) ||
            json_object_array_length(v) > NET_MAX_RULES) {
                (void) snprintf(err, errlen, "network.%s must be an array of at most %d rules",
                                list, NET_MAX_RULES);
                return -EINVAL;
        }
        size_t n = json_object_array_length(v);
        cleanup_free NetRule *rules = calloc(n ? n : 1, sizeof(NetRule));
        if (!rules)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                int r = rule_from_json(json_object_array_get_idx(v, i), list, &rules[i], err,
                                       errlen);
                if (r < 0)
                        return r;
        }
        *ret = TAKE_PTR(rules);
        *ret_n = n;
        return 0;
}

int net_policy_from_json(json_object *o, NetPolicy *ret, char *err, size_t errlen)
{
        NetPolicy p = {.egress = NET_EGRESS_DENY};
        if (!o) {
                *ret = p;
                return 0;
        }
        if (!json_object_is_type(o, json_type_object)) {
                (void) snprintf(err, errlen, "network must be an object");
                return -EINVAL;
        }
        int r = 0;
        json_object *allow = NULL, *deny = NULL;
        json_object_object_foreach(o, key, val) {
                if (streq(key, "egress")) {
                        const char *e = json_object_is_type(val, json_type_string)
                                                ? json_object_get_string(val)
                                                : "";
                        if (streq(e, "deny"))
                                p.egress = NET_EGRESS_DENY;
                        else if (streq(e, "allowlist"))
                                p.egress = NET_EGRESS_ALLOWLIST;
                        else if (streq(e, "allow"))
                                p.egress = NET_EGRESS_ALLOW;
                        else {
                                (void) snprintf(err, errlen,
                                                "network.egress must be \"deny\", \"allowlist\" "
                                                "or \"allow\"");
                                return -EINVAL;
                        }
                } else if (streq(key, "allow")) {
                        allow = val;
                } else if (streq(key, "deny")) {
                        deny = val;
                } else {
                        (void) snprintf(err, errlen, "network: unknown field \"%.64s\"", key);
                        return -EINVAL;
                }
        }
        if (allow && p.egress != NET_EGRESS_ALLOWLIST) {
                (void) snprintf(err, errlen, "network.allow needs \"egress\": \"allowlist\"");
                return -EINVAL;
        }
        if (deny && p.egress != NET_EGRESS_ALLOW) {
                (void) snprintf(err, errlen, "network.deny needs \"egress\": \"allow\"");
                return -EINVAL;
        }
        if (allow)
                r = rules_from_json(allow, "allow", &p.allow, &p.nallow, err, errlen);
        if (r == 0 && deny)
                r = rules_from_json(deny, "deny", &p.deny, &p.ndeny, err, errlen);
        if (r < 0) {
                net_policy_done(&p);
                return r;
        }
        *ret = p;
        return 0;
}

static json_object *rules_to_json(const NetRule *rules, size_t n)
{
        json_object *arr = json_object_new_array();
        for (size_t i = 0; arr && i < n; i++) {
                const NetRule *r = &rules[i];
                json_object *o = json_object_new_object();
                char cidr[32];
                net_cidr_format(r->addr, r->prefix, cidr, sizeof(cidr));
                (void) json_object_object_add(o, r->host[0] ? "host" : "cidr",
                                              json_object_new_string(r->host[0] ? r->host : cidr));
                (void) json_object_object_add(
                        o, "protocol",
                        json_object_new_string(r->proto == NET_PROTO_TCP   ? "tcp"
                                               : r->proto == NET_PROTO_UDP ? "udp"
                                                                           : "any"));
                if (r->nports) {
                        json_object *ports = json_object_new_array();
                        for (size_t k = 0; k < r->nports; k++) {
                                char range[16];
                                (void) snprintf(range, sizeof(range), "%u-%u", r->port_lo[k],
                                                r->port_hi[k]);
                                (void) json_object_array_add(
                                        ports, r->port_lo[k] == r->port_hi[k]
                                                       ? json_object_new_int(r->port_lo[k])
                                                       : json_object_new_string(range));
                        }
                        (void) json_object_object_add(o, "ports", ports);
                }
                (void) json_object_array_add(arr, o);
        }
        return arr;
}

json_object *net_policy_to_json(const NetPolicy *p)
{
        json_object *o = json_object_new_object();
        if (!o)
                return NULL;
        (void) json_object_object_add(o, "egress",
                                      json_object_new_string(net_egress_name(p->egress)));
        if (p->egress == NET_EGRESS_ALLOWLIST)
                (void) json_object_object_add(o, "allow", rules_to_json(p->allow, p->nallow));
        if (p->egress == NET_EGRESS_ALLOW)
                (void) json_object_object_add(o, "deny", rules_to_json(p->deny, p->ndeny));
        return o;
}

int net_policy_copy(const NetPolicy *src, NetPolicy *ret)
{
        NetPolicy p = {.egress = src->egress, .nallow = src->nallow, .ndeny = src->ndeny};
        if (src->nallow && !(p.allow = malloc(src->nallow * sizeof(NetRule))))
                return -ENOMEM;
        if (src->ndeny && !(p.deny = malloc(src->ndeny * sizeof(NetRule)))) {
                free(p.allow);
                return -ENOMEM;
        }
        if (src->nallow)
                memcpy(p.allow, src->allow, src->nallow * sizeof(NetRule));
        if (src->ndeny)
                memcpy(p.deny, src->deny, src->ndeny * sizeof(NetRule));
        *ret = p;
        return 0;
}

/* --- nftables rendering ----------------------------------------------------- */

static int appendf(char **buf, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int appendf(char **buf, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        cleanup_free char *add = NULL;
        int n = vasprintf(&add, fmt, ap);
        va_end(ap);
        if (n < 0) {
                add = NULL;
                return -ENOMEM;
        }
        size_t old = *buf ? strlen(*buf) : 0;
        char *b = realloc(*buf, old + (size_t) n + 1);
        if (!b)
                return -ENOMEM;
        memcpy(b + old, add, (size_t) n + 1);
        *buf = b;
        return 0;
}

/* " tcp dport { 80, 8000-8080 }" or "" (any port), for one protocol. */
static void ports_expr(const NetRule *r, const char *proto, char *out, size_t len)
{
        out[0] = 0;
        if (!r->nports)
                return;
        size_t used = (size_t) snprintf(out, len, " %s dport { ", proto);
        for (size_t k = 0; k < r->nports && used < len; k++) {
                if (r->port_lo[k] == r->port_hi[k])
                        used += (size_t) snprintf(out + used, len - used, "%s%u", k ? ", " : "",
                                                  r->port_lo[k]);
                else
                        used += (size_t) snprintf(out + used, len - used, "%s%u-%u", k ? ", " : "",
                                                  r->port_lo[k], r->port_hi[k]);
        }
        if (used < len)
                (void) snprintf(out + used, len - used, " }");
}

void net_host_set_name(const NetChainCtx *c, size_t k, char *buf, size_t len)
{
        (void) snprintf(buf, len, "%s-h%zu", c->chain, k);
}

/* One rule line per protocol the entry needs ("any" with ports: tcp and udp).
 * A host entry matches its set (k: its index among the host entries). */
static int render_rule(const NetChainCtx *c, const NetRule *r, size_t hostk, const char *verdict,
                       char **buf)
{
        char cidr[160], ports[NET_MAX_PORTS * 13 + 32];
        if (r->host[0]) {
                cidr[0] = '@';
                net_host_set_name(c, hostk, cidr + 1, sizeof(cidr) - 1);
        } else {
                net_cidr_format(r->addr, r->prefix, cidr, sizeof(cidr));
        }
        static const char *const both[] = {"tcp", "udp"};
        if (r->proto == NET_PROTO_ANY && !r->nports)
                return appendf(buf, "add rule ip %s %s ip daddr %s %s\n", c->table, c->chain, cidr,
                               verdict);
        for (size_t i = 0; i < ARRAY_SIZE(both); i++) {
                if ((r->proto == NET_PROTO_TCP && i == 1) || (r->proto == NET_PROTO_UDP && i == 0))
                        continue;
                ports_expr(r, both[i], ports, sizeof(ports));
                int k = appendf(buf, "add rule ip %s %s ip daddr %s meta l4proto %s%s %s\n",
                                c->table, c->chain, cidr, both[i], ports, verdict);
                if (k < 0)
                        return k;
        }
        return 0;
}

int net_render_chain_rules(const NetPolicy *p, const NetChainCtx *c, char **buf)
{
        char ip[20], dns[20];
        net_addr_format(c->ip, ip, sizeof(ip));
        /* Anything not from the sandbox's own address is spoofed. */
        int r = appendf(buf, "add rule ip %s %s ip saddr != %s drop\n", c->table, c->chain, ip);
        if (r < 0 || p->egress == NET_EGRESS_DENY)
                return r < 0 ? r : appendf(buf, "add rule ip %s %s drop\n", c->table, c->chain);
        /* With host entries, DNS goes to the agent's resolver (the input chain), never
         * straight to the upstream one. */
        if (c->dns && net_policy_nhosts(p) == 0) {
                net_addr_format(c->dns, dns, sizeof(dns));
                r = appendf(buf,
                            "add rule ip %s %s ip daddr %s meta l4proto { tcp, udp } th dport 53 "
                            "accept\n",
                            c->table, c->chain, dns);
                if (r < 0)
                        return r;
        }
        /* Always blocked, whatever the policy lists: before any accept. */
        if ((r = appendf(buf, "add rule ip %s %s ip daddr @blocked drop\n", c->table, c->chain)) <
            0)
                return r;
        const NetRule *rules = p->egress == NET_EGRESS_ALLOW ? p->deny : p->allow;
        size_t n = p->egress == NET_EGRESS_ALLOW ? p->ndeny : p->nallow;
        const char *verdict = p->egress == NET_EGRESS_ALLOW ? "drop" : "accept";
        for (size_t i = 0, k = 0; i < n; i++) {
                if ((r = render_rule(c, &rules[i], k, verdict, buf)) < 0)
                        return r;
                k += rules[i].host[0] != 0;
        }
        return appendf(buf, "add rule ip %s %s %s\n", c->table, c->chain,
                       p->egress == NET_EGRESS_ALLOW ? "accept" : "drop");
}

int net_render_table(const NetTableCtx *t, char **buf)
{
        char cidr[32];
        net_cidr_format(t->net, t->prefix, cidr, sizeof(cidr));
        const char *T = t->table, *P = t->if_prefix;
        int r = appendf(buf,
                        "add table ip %s\n"
                        "delete table ip %s\n"
                        "add table ip %s\n"
                        "add set ip %s blocked { type ipv4_addr; flags interval; auto-merge; }\n"
                        "add element ip %s blocked { 169.254.0.0/16, %s }\n",
                        T, T, T, T, T, cidr);
        for (size_t i = 0; r == 0 && i < t->nblocked; i++) {
                char b[32];
                net_cidr_format(t->blocked_addr[i], t->blocked_prefix[i], b, sizeof(b));
                r = appendf(buf, "add element ip %s blocked { %s }\n", T, b);
        }
        if (r < 0)
                return r;
        if (t->resolver) {
                /* The agent's resolver on the gateway, from a sandbox's own veth only
                 * (the reverse path of its source address must be that veth). */
                char gw[20];
                net_addr_format(t->resolver, gw, sizeof(gw));
                r = appendf(buf,
                            "add chain ip %s input { type filter hook input priority filter; "
                            "policy accept; }\n"
                            "add rule ip %s input iifname \"%s*\" ip daddr %s meta l4proto "
                            "{ tcp, udp } th dport 53 fib saddr . iif oif exists accept\n",
                            T, T, P, gw);
                if (r < 0)
                        return r;
        }
        return appendf(
                buf,
                "add map ip %s sandboxes { type ifname : verdict; }\n"
                /* From a sandbox: its own chain decides; an unknown veth is dropped. */
                "add chain ip %s forward { type filter hook forward priority filter; policy "
                "accept; }\n"
                "add rule ip %s forward iifname vmap @sandboxes\n"
                "add rule ip %s forward iifname \"%s*\" drop\n"
                "add rule ip %s forward ip saddr %s drop\n"
                /* To a sandbox: only replies to what it started. */
                "add rule ip %s forward oifname \"%s*\" ct state established,related accept\n"
                "add rule ip %s forward oifname \"%s*\" drop\n"
                /* The node itself (every address, the agent's port) is never reachable;
                 * only replies to what the node started get in. */
                "add chain ip %s input { type filter hook input priority filter; policy accept; }\n"
                "add rule ip %s input iifname \"%s*\" ct state established,related accept\n"
                "add rule ip %s input iifname \"%s*\" drop\n"
                "add rule ip %s input ip saddr %s drop\n"
                "add chain ip %s postrouting { type nat hook postrouting priority srcnat; policy "
                "accept; }\n"
                "add rule ip %s postrouting ip saddr %s oifname != \"%s*\" masquerade\n",
                T, T, T, T, P, T, cidr, T, P, T, P, T, T, P, T, P, T, cidr, T, T, cidr, P);
}

static int render_host_sets(const NetPolicy *old, const NetPolicy *p, const NetChainCtx *c,
                            char **buf)
{
        size_t nold = 0, n = net_policy_nhosts(p), k = 0;
        const char *oldhost[NET_MAX_RULES] = {0};
        for (size_t i = 0; old && i < old->nallow && nold < NET_MAX_RULES; i++)
                if (old->allow[i].host[0])
                        oldhost[nold++] = old->allow[i].host;
        for (size_t i = 0; i < p->nallow && k < n; i++) {
                if (!p->allow[i].host[0])
                        continue;
                char set[160];
                net_host_set_name(c, k, set, sizeof(set));
                int r = appendf(buf,
                                "add set ip %s %s { type ipv4_addr; flags timeout; size 4096; }\n",
                                c->table, set);
                if (r == 0 && k < nold && !streq(oldhost[k], p->allow[i].host))
                        r = appendf(buf, "flush set ip %s %s\n", c->table, set);
                if (r < 0)
                        return r;
                k++;
        }
        return 0;
}

static int render_host_sets_del(size_t from, size_t to, const NetChainCtx *c, char **buf)
{
        for (size_t k = from; k < to; k++) {
                char set[160];
                net_host_set_name(c, k, set, sizeof(set));
                int r = appendf(buf, "delete set ip %s %s\n", c->table, set);
                if (r < 0)
                        return r;
        }
        return 0;
}

int net_render_sandbox_add(const NetPolicy *p, const NetChainCtx *c, char **buf)
{
        int r = render_host_sets(NULL, p, c, buf);
        if (r == 0)
                r = appendf(buf, "add chain ip %s %s\n", c->table, c->chain);
        if (r == 0)
                r = net_render_chain_rules(p, c, buf);
        if (r == 0)
                r = appendf(buf, "add element ip %s sandboxes { \"%s\" : jump %s }\n", c->table,
                            c->ifname, c->chain);
        return r;
}

int net_render_sandbox_update(const NetPolicy *old, const NetPolicy *p, const NetChainCtx *c,
                              char **buf)
{
        int r = render_host_sets(old, p, c, buf);
        if (r == 0)
                r = appendf(buf, "flush chain ip %s %s\n", c->table, c->chain);
        if (r == 0)
                r = net_render_chain_rules(p, c, buf);
        if (r == 0 && old)
                r = render_host_sets_del(net_policy_nhosts(p), net_policy_nhosts(old), c, buf);
        return r;
}

int net_render_sandbox_del(const NetPolicy *p, const NetChainCtx *c, char **buf)
{
        int r = appendf(buf,
                        "delete element ip %s sandboxes { \"%s\" }\n"
                        "flush chain ip %s %s\n"
                        "delete chain ip %s %s\n",
                        c->table, c->ifname, c->table, c->chain, c->table, c->chain);
        return r < 0 || !p ? r : render_host_sets_del(0, net_policy_nhosts(p), c, buf);
}

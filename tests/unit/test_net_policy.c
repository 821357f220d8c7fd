/* CIDRs, the address pool, policy JSON and the nftables rendering. The
 * rendered commands are also checked by libnftables itself, in dry-run mode
 * (nothing is committed), when running as root. */
#include <errno.h>
#include <nftables/libnftables.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "net-dns-msg.h"
#include "net-policy.h"

static uint32_t ip4(unsigned a, unsigned b, unsigned c, unsigned d)
{
        return (a << 24) | (b << 16) | (c << 8) | d;
}

static void test_cidr_parse(void **state)
{
        (void) state;
        uint32_t a;
        uint8_t p;
        assert_int_equal(net_cidr_parse("198.18.0.0/15", &a, &p), 0);
        assert_int_equal(a, ip4(198, 18, 0, 0));
        assert_int_equal(p, 15);
        assert_int_equal(net_cidr_parse("10.1.2.3", &a, &p), 0);
        assert_int_equal(p, 32);
        assert_int_equal(net_cidr_parse("0.0.0.0/0", &a, &p), 0);
        assert_int_equal(p, 0);
        static const char *const bad[] = {"198.18.0.1/15",
                                          "198.18.0.0/33",
                                          "198.18.0.0/",
                                          "198.18.0.0/-1",
                                          "198.18.0/16",
                                          "x",
                                          "",
                                          "1.2.3.4/8a",
                                          "1.2.3.4/ 8",
                                          "::1/128",
                                          "1.2.3.4/008"};
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                assert_int_equal(net_cidr_parse(bad[i], &a, &p), -EINVAL);
        char buf[32];
        net_cidr_format(ip4(169, 254, 0, 0), 16, buf, sizeof(buf));
        assert_string_equal(buf, "169.254.0.0/16");
        net_cidr_format(ip4(1, 2, 3, 4), 32, buf, sizeof(buf));
        assert_string_equal(buf, "1.2.3.4");
}

static void test_pool(void **state)
{
        (void) state;
        NetPool p;
        assert_int_equal(net_pool_init(&p, ip4(198, 18, 64, 0), 29), 0);
        assert_int_equal(net_pool_gateway(&p), ip4(198, 18, 64, 1));
        uint32_t got[5];
        /* .0 network, .1 gateway, .7 broadcast: .2 to .6 are leased, round-robin. */
        for (int i = 0; i < 5; i++) {
                assert_int_equal(net_pool_alloc(&p, &got[i]), 0);
                assert_int_equal(got[i], ip4(198, 18, 64, 2 + i));
        }
        uint32_t x;
        assert_int_equal(net_pool_alloc(&p, &x), -ENOSPC);
        net_pool_release(&p, got[1]);
        assert_int_equal(net_pool_alloc(&p, &x), 0);
        assert_int_equal(x, got[1]);
        /* Reserve (recovery): in range, not the gateway, not twice. */
        net_pool_release(&p, got[3]);
        assert_int_equal(net_pool_reserve(&p, got[3]), 0);
        assert_int_equal(net_pool_reserve(&p, got[3]), -EEXIST);
        assert_int_equal(net_pool_reserve(&p, ip4(198, 18, 64, 1)), -ERANGE);
        assert_int_equal(net_pool_reserve(&p, ip4(198, 18, 64, 7)), -ERANGE);
        assert_int_equal(net_pool_reserve(&p, ip4(198, 18, 65, 2)), -ERANGE);
        /* Releasing the gateway or a foreign address changes nothing. */
        net_pool_release(&p, ip4(198, 18, 64, 1));
        net_pool_release(&p, ip4(10, 0, 0, 2));
        assert_int_equal(net_pool_alloc(&p, &x), -ENOSPC);
        net_pool_done(&p);
        assert_int_equal(net_pool_init(&p, ip4(198, 18, 64, 1), 24), -EINVAL);
        assert_int_equal(net_pool_init(&p, ip4(198, 18, 64, 0), 30), -EINVAL);
        assert_int_equal(net_pool_init(&p, ip4(198, 0, 0, 0), 8), -EINVAL);
}

static void test_pool_round_robin_wraps(void **state)
{
        (void) state;
        NetPool p;
        assert_int_equal(net_pool_init(&p, ip4(10, 0, 0, 0), 24), 0);
        uint32_t a, b;
        assert_int_equal(net_pool_alloc(&p, &a), 0);
        net_pool_release(&p, a);
        /* A released address is not handed out again at once. */
        assert_int_equal(net_pool_alloc(&p, &b), 0);
        assert_int_not_equal(a, b);
        for (int i = 0; i < 252; i++) /* .3 was taken: .4 to .254, then .2 */
                assert_int_equal(net_pool_alloc(&p, &b), 0);
        assert_int_equal(b, a); /* wrapped around to the first free one */
        net_pool_done(&p);
}

static int policy(const char *text, NetPolicy *p, char *err)
{
        json_object *o = json_tokener_parse(text);
        int r = net_policy_from_json(o, p, err, 256);
        json_object_put(o);
        return r;
}

static void test_policy_json(void **state)
{
        (void) state;
        char err[256];
        NetPolicy p;
        assert_int_equal(net_policy_from_json(NULL, &p, err, sizeof(err)), 0);
        assert_int_equal(p.egress, NET_EGRESS_DENY);
        assert_int_equal(policy("{\"egress\":\"allowlist\",\"allow\":[{\"cidr\":\"198.18.1.0/24\","
                                "\"ports\":[80,\"8000-8080\"],\"protocol\":\"tcp\"}]}",
                                &p, err),
                         0);
        assert_int_equal(p.nallow, 1);
        assert_int_equal(p.allow[0].nports, 2);
        assert_int_equal(p.allow[0].port_lo[1], 8000);
        assert_int_equal(p.allow[0].port_hi[1], 8080);
        json_object *o = net_policy_to_json(&p);
        assert_string_equal(json_object_to_json_string_ext(
                                    o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE),
                            "{\"egress\":\"allowlist\",\"allow\":[{\"cidr\":\"198.18.1.0/24\","
                            "\"protocol\":\"tcp\",\"ports\":[80,\"8000-8080\"]}]}");
        /* Round trip: what is persisted parses back to the same. */
        NetPolicy q;
        assert_int_equal(net_policy_from_json(o, &q, err, sizeof(err)), 0);
        assert_memory_equal(q.allow, p.allow, sizeof(NetRule));
        json_object_put(o);
        net_policy_done(&q);
        net_policy_done(&p);

        static const char *const bad[] = {
                "[]",
                "{\"egress\":\"open\"}",
                "{\"egress\":1}",
                "{\"egress\":\"allow\",\"allow\":[]}",
                "{\"egress\":\"allowlist\",\"deny\":[]}",
                "{\"deny\":[]}",
                "{\"egress\":\"allowlist\",\"allow\":[{}]}",
                "{\"egress\":\"allowlist\",\"allow\":[{\"cidr\":\"1.2.3.4/8\"}]}",
                "{\"egress\":\"allowlist\",\"allow\":[{\"cidr\":\"1.0.0.0/8\",\"ports\":[0]}]}",
                "{\"egress\":\"allowlist\",\"allow\":[{\"cidr\":\"1.0.0.0/8\",\"ports\":[65536]}]}",
                "{\"egress\":\"allowlist\",\"allow\":[{\"cidr\":\"1.0.0.0/"
                "8\",\"ports\":[\"9-8\"]}]}",
                "{\"egress\":\"allowlist\",\"allow\":[{\"cidr\":\"1.0.0.0/"
                "8\",\"ports\":[\"8-9x\"]}]}",
                "{\"egress\":\"allowlist\",\"allow\":[{\"cidr\":\"1.0.0.0/8\",\"ports\":80}]}",
                "{\"egress\":\"allowlist\",\"allow\":[{\"cidr\":\"1.0.0.0/"
                "8\",\"protocol\":\"icmp\"}]}",
                "{\"egress\":\"allowlist\",\"allow\":[{\"cidr\":\"1.0.0.0/8\",\"x\":1}]}",
                "{\"egress\":\"deny\",\"other\":1}",
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                err[0] = 0;
                assert_int_equal(policy(bad[i], &p, err), -EINVAL);
                assert_true(err[0] != 0);
        }
}

static const NetChainCtx chain = {.table = "sandpit",
                                  .chain = "sbx-abc",
                                  .ifname = "spxc6124002",
                                  .ip = 0xc6124002, /* 198.18.64.2 */
                                  .dns = 0xc6126402 /* 198.18.100.2 */};

static void test_render_deny(void **state)
{
        (void) state;
        NetPolicy p = {.egress = NET_EGRESS_DENY};
        char *buf = NULL;
        assert_int_equal(net_render_chain_rules(&p, &chain, &buf), 0);
        assert_string_equal(buf, "add rule ip sandpit sbx-abc ip saddr != 198.18.64.2 drop\n"
                                 "add rule ip sandpit sbx-abc drop\n");
        free(buf);
}

static void test_render_allowlist(void **state)
{
        (void) state;
        char err[256];
        NetPolicy p;
        assert_int_equal(policy("{\"egress\":\"allowlist\",\"allow\":[{\"cidr\":\"198.18.100.2\","
                                "\"ports\":[7001]},{\"cidr\":\"10.0.0.0/8\",\"protocol\":\"udp\"},"
                                "{\"cidr\":\"192.0.2.0/24\",\"ports\":[\"1-9\",53],"
                                "\"protocol\":\"tcp\"}]}",
                                &p, err),
                         0);
        char *buf = NULL;
        assert_int_equal(net_render_chain_rules(&p, &chain, &buf), 0);
        const char *want =
                "add rule ip sandpit sbx-abc ip saddr != 198.18.64.2 drop\n"
                "add rule ip sandpit sbx-abc ip daddr 198.18.100.2 meta l4proto { tcp, udp } th "
                "dport 53 accept\n"
                "add rule ip sandpit sbx-abc ip daddr @blocked drop\n"
                "add rule ip sandpit sbx-abc ip daddr 198.18.100.2 meta l4proto tcp tcp dport { "
                "7001 } accept\n"
                "add rule ip sandpit sbx-abc ip daddr 198.18.100.2 meta l4proto udp udp dport { "
                "7001 } accept\n"
                "add rule ip sandpit sbx-abc ip daddr 10.0.0.0/8 meta l4proto udp accept\n"
                "add rule ip sandpit sbx-abc ip daddr 192.0.2.0/24 meta l4proto tcp tcp dport { "
                "1-9, 53 } accept\n"
                "add rule ip sandpit sbx-abc drop\n";
        assert_string_equal(buf, want);
        free(buf);
        net_policy_done(&p);
}

static void test_render_allow_with_deny(void **state)
{
        (void) state;
        char err[256];
        NetPolicy p;
        assert_int_equal(
                policy("{\"egress\":\"allow\",\"deny\":[{\"cidr\":\"203.0.113.0/24\"}]}", &p, err),
                0);
        char *buf = NULL;
        assert_int_equal(net_render_sandbox_update(NULL, &p, &chain, &buf), 0);
        const char *want = "flush chain ip sandpit sbx-abc\n"
                           "add rule ip sandpit sbx-abc ip saddr != 198.18.64.2 drop\n"
                           "add rule ip sandpit sbx-abc ip daddr 198.18.100.2 meta l4proto { tcp, "
                           "udp } th dport 53 accept\n"
                           "add rule ip sandpit sbx-abc ip daddr @blocked drop\n"
                           "add rule ip sandpit sbx-abc ip daddr 203.0.113.0/24 drop\n"
                           "add rule ip sandpit sbx-abc accept\n";
        assert_string_equal(buf, want);
        free(buf);
        net_policy_done(&p);
}

/* Host entries: parsed and normalised, exclusive with cidr, allow only; each
 * has its own set; the upstream DNS is not reachable directly. */
static void test_host_entries(void **state)
{
        (void) state;
        char err[256];
        NetPolicy p;
        assert_int_equal(policy("{\"egress\":\"allowlist\",\"allow\":[{\"host\":\"OK.Test.\","
                                "\"ports\":[443],\"protocol\":\"tcp\"},{\"cidr\":\"10.0.0.0/8\"},"
                                "{\"host\":\"*.wild.test\"}]}",
                                &p, err),
                         0);
        assert_int_equal(net_policy_nhosts(&p), 2);
        assert_string_equal(p.allow[0].host, "ok.test");
        char *buf = NULL;
        assert_int_equal(net_render_sandbox_add(&p, &chain, &buf), 0);
        assert_non_null(strstr(buf, "add set ip sandpit sbx-abc-h0 { type ipv4_addr; flags "
                                    "timeout;"));
        assert_non_null(strstr(buf, "add set ip sandpit sbx-abc-h1 {"));
        assert_non_null(strstr(buf, "ip daddr @sbx-abc-h0 meta l4proto tcp tcp dport { 443 } "
                                    "accept\n"));
        assert_non_null(strstr(buf, "ip daddr @sbx-abc-h1 accept\n"));
        assert_null(strstr(buf, "dport 53"));
        json_object *o = net_policy_to_json(&p);
        assert_non_null(strstr(json_object_to_json_string(o), "\"host\": \"*.wild.test\""));
        json_object_put(o);
        free(buf);
        net_policy_done(&p);
        static const char *const bad[] = {
                "{\"egress\":\"allowlist\",\"allow\":[{\"host\":\"a.test\",\"cidr\":\"1.2.3.4\"}]}",
                "{\"egress\":\"allowlist\",\"allow\":[{\"host\":\"*.test\"}]}",
                "{\"egress\":\"allowlist\",\"allow\":[{\"host\":\"a.*.test\"}]}",
                "{\"egress\":\"allowlist\",\"allow\":[{\"host\":\"a..test\"}]}",
                "{\"egress\":\"allowlist\",\"allow\":[{\"host\":\"a b.test\"}]}",
                "{\"egress\":\"allowlist\",\"allow\":[{\"host\":\"\"}]}",
                "{\"egress\":\"allow\",\"deny\":[{\"host\":\"a.test\"}]}",
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                NetPolicy q;
                err[0] = 0;
                if (policy(bad[i], &q, err) == 0)
                        fail_msg("accepted %s", bad[i]);
                assert_true(err[0] != 0);
        }
}

static void test_host_match(void **state)
{
        (void) state;
        assert_true(dns_pattern_match("ok.test", "ok.test"));
        assert_false(dns_pattern_match("ok.test", "a.ok.test"));
        assert_true(dns_pattern_match("*.wild.test", "a.wild.test"));
        assert_true(dns_pattern_match("*.wild.test", "a.b.wild.test"));
        assert_false(dns_pattern_match("*.wild.test", "wild.test"));
        assert_false(dns_pattern_match("*.wild.test", "xwild.test"));
        assert_false(dns_pattern_match("*.wild.test", ".wild.test"));
}

/* The resolver's parsing: a query, compression (only backwards), answers
 * that must match their question, A records behind a CNAME. */
static void test_dns_messages(void **state)
{
        (void) state;
        static const uint8_t q[] = {0x12, 0x34, 0x01, 0x00, 0,   1,   0,   0, 0, 0, 0, 0, 2,
                                    'O',  'k',  4,    't',  'e', 's', 't', 0, 0, 1, 0, 1};
        DnsQuestion dq;
        assert_int_equal(dns_query_parse(q, sizeof(q), &dq), 0);
        assert_string_equal(dq.name, "ok.test");
        assert_true(dq.plain);
        assert_int_equal(dq.end, sizeof(q));
        assert_int_equal(dq.qtype, DNS_TYPE_A);
        assert_int_equal(dns_query_parse(q, sizeof(q) - 1, &dq), -EBADMSG);
        uint8_t out[64];
        assert_int_equal(dns_query_parse(q, sizeof(q), &dq), 0);
        assert_int_equal(dns_error_reply(q, &dq, DNS_RCODE_REFUSED, out), sizeof(q));
        assert_int_equal(out[2], 0x81);
        assert_int_equal(out[3], 0x85);
        /* A pointer to itself, and one forward: refused. */
        static const uint8_t loop[] = {0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1};
        static const uint8_t fwd[] = {0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 14, 0, 0, 1, 0, 1};
        assert_int_equal(dns_query_parse(loop, sizeof(loop), &dq), -EBADMSG);
        assert_int_equal(dns_query_parse(fwd, sizeof(fwd), &dq), -EBADMSG);
        /* The answer: ok.test CNAME x.test (via pointers), x.test A 198.18.101.2 TTL 7. */
        uint8_t a[128];
        size_t n = 0;
        memcpy(a, q, sizeof(q));
        a[2] = 0x81;
        a[3] = 0x80;
        a[7] = 2;
        n = sizeof(q);
        static const uint8_t cname[] = {0xc0, 12, 0, 5, 0, 1, 0, 0, 0, 60, 0, 4, 1, 'x', 0xc0, 15};
        memcpy(a + n, cname, sizeof(cname));
        size_t x = n + 12;
        n += sizeof(cname);
        const uint8_t rr[] = {0xc0, (uint8_t) x, 0, 1, 0, 1, 0, 0, 0, 7, 0, 4, 198, 18, 101, 2};
        memcpy(a + n, rr, sizeof(rr));
        n += sizeof(rr);
        assert_int_equal(dns_query_parse(q, sizeof(q), &dq), 0);
        DnsAddr addrs[DNS_MAX_ADDRS];
        size_t na = 0;
        assert_int_equal(dns_answer_addrs(a, n, &dq, addrs, &na), 0);
        assert_int_equal(na, 1);
        assert_int_equal(addrs[0].addr, 0xc6126502);
        assert_int_equal(addrs[0].ttl, 7);
        char name[DNS_NAME_MAX];
        size_t off = x;
        assert_int_equal(dns_name_read(a, n, &off, name, NULL), 0);
        assert_string_equal(name, "x.test");
        /* Another id, a truncated record, another question: not this answer. */
        a[1] ^= 1;
        assert_int_equal(dns_answer_addrs(a, n, &dq, addrs, &na), -EBADMSG);
        a[1] ^= 1;
        assert_int_equal(dns_answer_addrs(a, n - 1, &dq, addrs, &na), -EBADMSG);
        a[13] = 'x';
        assert_int_equal(dns_answer_addrs(a, n, &dq, addrs, &na), -EBADMSG);
}

/* The always-blocked set comes before any accept, whatever the policy. */
static void test_blocked_before_accept(void **state)
{
        (void) state;
        for (int e = NET_EGRESS_ALLOWLIST; e <= NET_EGRESS_ALLOW; e++) {
                NetRule r = {.addr = 0xa9fea9fe, .prefix = 32}; /* 169.254.169.254 */
                NetPolicy p = {.egress = (NetEgress) e, .allow = &r, .nallow = 1};
                char *buf = NULL;
                assert_int_equal(net_render_chain_rules(&p, &chain, &buf), 0);
                char *blocked = strstr(buf, "@blocked drop");
                char *accept = strstr(buf, "169.254.169.254");
                assert_non_null(blocked);
                assert_true(!accept || blocked < accept);
                free(buf);
        }
}

/* libnftables parses and evaluates the whole rendering (dry run: nothing is
 * committed), in a network namespace of its own so the host's ruleset is not
 * even read. Root only (unshare, netlink). */
static void test_render_is_valid_nft(void **state)
{
        (void) state;
        if (geteuid() != 0 || unshare(CLONE_NEWNET) < 0)
                skip();
        uint32_t baddr[] = {0xc613c800};
        uint8_t bprefix[] = {24};
        NetTableCtx t = {.table = "sandpit-unit-dry-run",
                         .if_prefix = "spx",
                         .net = 0xc6124000,
                         .prefix = 24,
                         .blocked_addr = baddr,
                         .blocked_prefix = bprefix,
                         .nblocked = 1,
                         .resolver = 0xc6124001};
        char err[256];
        NetPolicy p, h, h2;
        assert_int_equal(policy("{\"egress\":\"allowlist\",\"allow\":[{\"cidr\":\"198.18.100.2\","
                                "\"ports\":[7001, \"8000-8100\"]},{\"cidr\":\"10.0.0.0/8\"}]}",
                                &p, err),
                         0);
        assert_int_equal(policy("{\"egress\":\"allowlist\",\"allow\":[{\"host\":\"ok.test\","
                                "\"ports\":[443]},{\"host\":\"*.wild.test\"}]}",
                                &h, err),
                         0);
        assert_int_equal(
                policy("{\"egress\":\"allowlist\",\"allow\":[{\"host\":\"ok.test\"}]}", &h2, err),
                0);
        NetChainCtx c = chain;
        c.table = t.table;
        char *buf = NULL;
        assert_int_equal(net_render_table(&t, &buf), 0);
        assert_int_equal(net_render_sandbox_add(&p, &c, &buf), 0);
        assert_int_equal(net_render_sandbox_update(&p, &p, &c, &buf), 0);
        /* cidr -> two hosts -> one host -> cidr, then delete. */
        assert_int_equal(net_render_sandbox_update(&p, &h, &c, &buf), 0);
        assert_int_equal(net_render_sandbox_update(&h, &h2, &c, &buf), 0);
        assert_int_equal(net_render_sandbox_update(&h2, &p, &c, &buf), 0);
        assert_int_equal(net_render_sandbox_update(&p, &h, &c, &buf), 0);
        assert_int_equal(net_render_sandbox_del(&h, &c, &buf), 0);
        net_policy_done(&h);
        net_policy_done(&h2);
        struct nft_ctx *nft = nft_ctx_new(NFT_CTX_DEFAULT);
        assert_non_null(nft);
        nft_ctx_set_dry_run(nft, true);
        (void) nft_ctx_buffer_error(nft);
        int r = nft_run_cmd_from_buffer(nft, buf);
        if (r != 0)
                fail_msg("nft rejected:\n%s\n%s", buf, nft_ctx_get_error_buffer(nft));
        nft_ctx_free(nft);
        free(buf);
        net_policy_done(&p);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_cidr_parse),
                cmocka_unit_test(test_pool),
                cmocka_unit_test(test_host_entries),
                cmocka_unit_test(test_host_match),
                cmocka_unit_test(test_dns_messages),
                cmocka_unit_test(test_pool_round_robin_wraps),
                cmocka_unit_test(test_policy_json),
                cmocka_unit_test(test_render_deny),
                cmocka_unit_test(test_render_allowlist),
                cmocka_unit_test(test_render_allow_with_deny),
                cmocka_unit_test(test_blocked_before_accept),
                cmocka_unit_test(test_render_is_valid_nft),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}

/* DNS messages, the little the agent's resolver needs (docs/networking.md,
 * "Names in allowlists"): the question of a query, a REFUSED answer to it, and
 * the A records of an answer. Pure and bounds-checked: every input comes from
 * a sandbox or the network (tests/fuzz/fuzz_dns.c). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DNS_HEADER         12
#define DNS_NAME_MAX       254 /* dotted, lowercase, no trailing dot, with NUL */
#define DNS_MAX_ADDRS      64
#define DNS_TYPE_A         1
#define DNS_CLASS_IN       1
#define DNS_RCODE_SERVFAIL 2
#define DNS_RCODE_REFUSED  5

typedef struct {
        uint16_t id;
        uint16_t qtype, qclass;
        size_t end;              /* offset just past the question */
        char name[DNS_NAME_MAX]; /* lowercase, "" for the root */
        bool plain;              /* only letters, digits, '-' and '_' in its labels */
} DnsQuestion;

/* Reads the name at *off (compression pointers followed, at most 16, only
 * backwards); *off moves past it in the message. */
int dns_name_read(const uint8_t *msg, size_t len, size_t *off, char out[DNS_NAME_MAX],
                  bool *ret_plain);
/* A query (QR 0, opcode 0) with exactly one question. */
int dns_query_parse(const uint8_t *msg, size_t len, DnsQuestion *ret);
/* The header and question of the query with QR set and the given rcode, no
 * records; into out (at least q->end bytes). Returns its length. */
size_t dns_error_reply(const uint8_t *query, const DnsQuestion *q, int rcode, uint8_t *out);

typedef struct {
        uint32_t addr; /* host byte order */
        uint32_t ttl;
} DnsAddr;

/* A response to q (same id, QR set, the same question): its IN A records, at
 * most DNS_MAX_ADDRS. -EBADMSG for anything else. */
int dns_answer_addrs(const uint8_t *msg, size_t len, const DnsQuestion *q, DnsAddr *ret,
                     size_t *ret_n);

/* A pattern ("example.com", "*.example.com") matches a lowercase name; "*."
 * matches one label or more, never the bare domain. */
bool dns_pattern_match(const char *pattern, const char *name);
/* Normalises (lowercase, no trailing dot) and checks a policy's host entry. */
int dns_pattern_normalize(const char *in, char out[DNS_NAME_MAX]);

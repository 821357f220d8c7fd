/* One HTTP(S) GET into a file, for the builder's ADD of a URL (docs/build.md):
 * on the libcurl core the other clients use (curl-internal.h). Connects only
 * to public addresses unless told otherwise (http_fetch_addr_check). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sockaddr;

/* An IPv4 or IPv6 range, held in IPv6 form: IPv4 a.b.c.d/n is
 * ::ffff:a.b.c.d/(96+n), so it also covers the IPv4-mapped spelling. */
typedef struct {
        uint8_t addr[16];
        uint8_t prefix; /* 0..128 */
} HttpFetchCidr;

typedef struct {
        uint64_t max_bytes; /* past it: -EFBIG */
        long timeout_ms;    /* the whole transfer */
        long max_redirects;
        /* Which addresses a connection (the first or a redirect's) may go to:
         * by default none that http_fetch_addr_check refuses. */
        const HttpFetchCidr *allow; /* allowed even so */
        size_t nallow;
        const HttpFetchCidr *deny; /* refused beyond the built-in ranges */
        size_t ndeny;
} HttpFetchOptions;

/* "a.b.c.d[/n]" or an IPv6 "x::y[/n]" (no prefix: one address). Host bits
 * set beyond the prefix are -EINVAL, as any other malformed range. */
int http_fetch_cidr_parse(const char *s, HttpFetchCidr *ret);
/* a (16 bytes, IPv6 form) inside c. */
bool http_fetch_cidr_contains(const HttpFetchCidr *c, const uint8_t a[16]);

typedef enum {
        HTTP_ADDR_PUBLIC,  /* may be fetched from */
        HTTP_ADDR_ALLOWED, /* special, or denied, but inside an allow range */
        HTTP_ADDR_SPECIAL, /* loopback, link-local, private, ... (below) */
        HTTP_ADDR_DENIED,  /* inside a deny range */
} HttpAddrClass;

/* The pure part of the check, on a (IPv6 form; IPv4 as ::ffff:a.b.c.d).
 * Special: unspecified and "this network" 0.0.0.0/8 and ::/96 (which holds
 * ::1 and the IPv4-compatible forms), loopback 127.0.0.0/8, link-local
 * 169.254.0.0/16 and fe80::/10, RFC 1918 10/8, 172.16/12, 192.168/16,
 * CGNAT 100.64.0.0/10, 192.0.0.0/24, multicast 224.0.0.0/4 and ff00::/8,
 * reserved 240.0.0.0/4 (broadcast included), unique-local fc00::/7,
 * site-local fec0::/10; an IPv4 inside NAT64 64:ff9b::/96 as that IPv4.
 * An allow range wins over both special and deny. */
HttpAddrClass http_fetch_addr_class(const uint8_t a[16], const HttpFetchOptions *o);

/* The check for a socket address (AF_INET or AF_INET6) about to be connected
 * to: 0, or -EACCES with why ("<addr> is a private/loopback/link-local
 * address", "<addr> is an address of this node", "<addr> is in a range this
 * node blocks"). An address on one of the node's interfaces is refused too,
 * unless allowed. */
int http_fetch_addr_check(const struct sockaddr *sa, const HttpFetchOptions *o, char *why,
                          size_t whylen);

/* GETs url (http or https only, redirects to those only, no proxy from the
 * environment) and writes a 2xx body to fd. Every connection's address goes
 * through http_fetch_addr_check first. *ret_last_modified: the Last-Modified
 * time (seconds), 0 without. Errors with the reason in err: -ENOENT a 404
 * (-EREMOTEIO another non-2xx), -EHOSTUNREACH a name that does not resolve,
 * -ECONNREFUSED, -ETIMEDOUT, -EFBIG, -ELOOP too many redirects, -EACCES an
 * address the check refused (err: its why, alone). */
int http_fetch(const char *url, int fd, const HttpFetchOptions *o, int64_t *ret_last_modified,
               char *err, size_t errlen);

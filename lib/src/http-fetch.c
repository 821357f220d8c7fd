/* HTTP(S) GET into a file (see http-fetch.h). */
#include "sandpit/http-fetch.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "curl-internal.h"
#include "sandpit/macro.h"

/* --- Which addresses a fetch may connect to ---------------------------------------- */

static void v4_to_v6(uint32_t host_order, uint8_t a[16])
{
        memset(a, 0, 10);
        a[10] = a[11] = 0xff;
        a[12] = (uint8_t) (host_order >> 24);
        a[13] = (uint8_t) (host_order >> 16);
        a[14] = (uint8_t) (host_order >> 8);
        a[15] = (uint8_t) host_order;
}

int http_fetch_cidr_parse(const char *s, HttpFetchCidr *ret)
{
        char buf[INET6_ADDRSTRLEN + 8];
        size_t len = s ? strlen(s) : sizeof(buf);
        if (len >= sizeof(buf))
                return -EINVAL;
        memcpy(buf, s, len + 1);
        char *slash = strchr(buf, '/');
        long prefix = -1;
        if (slash) {
                char *end = NULL;
                *slash = 0;
                if (slash[1] < '0' || slash[1] > '9')
                        return -EINVAL;
                errno = 0;
                prefix = strtol(slash + 1, &end, 10);
                if (errno || *end)
                        return -EINVAL;
        }
        HttpFetchCidr c = {0};
        struct in_addr v4;
        if (inet_pton(AF_INET, buf, &v4) == 1) {
                if (prefix > 32)
                        return -EINVAL;
                v4_to_v6(ntohl(v4.s_addr), c.addr);
                c.prefix = (uint8_t) (96 + (prefix < 0 ? 32 : prefix));
        } else if (inet_pton(AF_INET6, buf, c.addr) == 1) {
                if (prefix > 128)
                        return -EINVAL;
                c.prefix = (uint8_t) (prefix < 0 ? 128 : prefix);
        } else
                return -EINVAL;
        for (unsigned bit = c.prefix; bit < 128; bit++)
                if (c.addr[bit / 8] & (0x80u >> (bit % 8)))
                        return -EINVAL; /* host bits set */
        *ret = c;
        return 0;
}

bool http_fetch_cidr_contains(const HttpFetchCidr *c, const uint8_t a[16])
{
        unsigned full = c->prefix / 8, rest = c->prefix % 8;
        if (memcmp(c->addr, a, full) != 0)
                return false;
        if (rest == 0)
                return true;
        uint8_t mask = (uint8_t) (0xffu << (8 - rest));
        return (c->addr[full] & mask) == (a[full] & mask);
}

static bool v4_special(const uint8_t *b)
{
        static const struct {
                uint32_t net;
                uint8_t len;
        } ranges[] = {
                {0x00000000, 8},  /* "this network", 0.0.0.0 */
                {0x0a000000, 8},  /* RFC 1918 */
                {0x64400000, 10}, /* CGNAT */
                {0x7f000000, 8},  /* loopback */
                {0xa9fe0000, 16}, /* link-local, cloud metadata */
                {0xac100000, 12}, /* RFC 1918 */
                {0xc0000000, 24}, /* IETF protocol assignments */
                {0xc0a80000, 16}, /* RFC 1918 */
                {0xe0000000, 4},  /* multicast */
                {0xf0000000, 4},  /* reserved, broadcast */
        };
        uint32_t a = (uint32_t) b[0] << 24 | (uint32_t) b[1] << 16 | (uint32_t) b[2] << 8 | b[3];
        for (size_t i = 0; i < ARRAY_SIZE(ranges); i++)
                if ((a & ~(0xffffffffu >> ranges[i].len)) == ranges[i].net)
                        return true;
        return false;
}

static bool addr_special(const uint8_t a[16])
{
        static const uint8_t zero[12] = {0};
        static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        static const uint8_t nat64[12] = {0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0};
        if (memcmp(a, mapped, 12) == 0 || memcmp(a, nat64, 12) == 0)
                return v4_special(a + 12);
        if (a[0] == 0x20 && a[1] == 0x02) /* 6to4: the IPv4 in bits 16..47 */
                return v4_special(a + 2);
        return memcmp(a, zero, 12) == 0 ||        /* ::, ::1, IPv4-compatible */
               (a[0] == 0xfe && (a[1] & 0x80)) || /* fe80::/10 link-local, fec0::/10 */
               (a[0] & 0xfe) == 0xfc ||           /* fc00::/7 unique-local */
               a[0] == 0xff;                      /* multicast */
}

static bool in_any(const HttpFetchCidr *c, size_t n, const uint8_t a[16])
{
        for (size_t i = 0; i < n; i++)
                if (http_fetch_cidr_contains(&c[i], a))
                        return true;
        return false;
}

HttpAddrClass http_fetch_addr_class(const uint8_t a[16], const HttpFetchOptions *o)
{
        bool special = addr_special(a), denied = in_any(o->deny, o->ndeny, a);
        if (!special && !denied)
                return HTTP_ADDR_PUBLIC;
        if (in_any(o->allow, o->nallow, a))
                return HTTP_ADDR_ALLOWED;
        return special ? HTTP_ADDR_SPECIAL : HTTP_ADDR_DENIED;
}

/* sa in IPv6 form; false for another family. */
static bool sockaddr_v6(const struct sockaddr *sa, uint8_t a[16])
{
        if (sa->sa_family == AF_INET) {
                const struct sockaddr_in *in = (const struct sockaddr_in *) (const void *) sa;
                v4_to_v6(ntohl(in->sin_addr.s_addr), a);
                return true;
        }
        if (sa->sa_family == AF_INET6) {
                memcpy(a, ((const struct sockaddr_in6 *) (const void *) sa)->sin6_addr.s6_addr, 16);
                return true;
        }
        return false;
}

/* Whether a is on one of the node's interfaces (then reached through loopback). */
static bool node_address(const uint8_t a[16])
{
        struct ifaddrs *ifs = NULL;
        if (getifaddrs(&ifs) < 0)
                return true; /* not knowing: refuse */
        bool found = false;
        for (struct ifaddrs *i = ifs; i && !found; i = i->ifa_next) {
                uint8_t b[16];
                found = i->ifa_addr && sockaddr_v6(i->ifa_addr, b) && memcmp(a, b, 16) == 0;
        }
        freeifaddrs(ifs);
        return found;
}

int http_fetch_addr_check(const struct sockaddr *sa, const HttpFetchOptions *o, char *why,
                          size_t whylen)
{
        uint8_t a[16];
        char text[INET6_ADDRSTRLEN] = "?";
        if (!sockaddr_v6(sa, a)) {
                (void) snprintf(why, whylen, "address family %d is not IP", sa->sa_family);
                return -EACCES;
        }
        (void) inet_ntop(
                sa->sa_family,
                sa->sa_family == AF_INET
                        ? (const void *) &((const struct sockaddr_in *) (const void *) sa)->sin_addr
                        : (const void *) &((const struct sockaddr_in6 *) (const void *) sa)
                                  ->sin6_addr,
                text, sizeof(text));
        switch (http_fetch_addr_class(a, o)) {
        case HTTP_ADDR_ALLOWED:
                return 0;
        case HTTP_ADDR_SPECIAL:
                (void) snprintf(why, whylen, "%s is a private/loopback/link-local address", text);
                return -EACCES;
        case HTTP_ADDR_DENIED:
                (void) snprintf(why, whylen, "%s is in a range this node blocks", text);
                return -EACCES;
        case HTTP_ADDR_PUBLIC:
                break;
        }
        if (node_address(a)) {
                (void) snprintf(why, whylen, "%s is an address of this node", text);
                return -EACCES;
        }
        return 0;
}

/* --- The fetch ----------------------------------------------------------------------- */

typedef struct {
        const HttpFetchOptions *o;
        bool refused;
        char why[128];
} Guard;

/* libcurl's socket for each connection it tries: none for a refused address. */
static curl_socket_t open_socket(void *clientp, curlsocktype purpose, struct curl_sockaddr *address)
{
        Guard *g = clientp;
        bool ip_size = (address->family == AF_INET &&
                        address->addrlen >= (unsigned) sizeof(struct sockaddr_in)) ||
                       (address->family == AF_INET6 &&
                        address->addrlen >= (unsigned) sizeof(struct sockaddr_in6));
        if (purpose != CURLSOCKTYPE_IPCXN || !ip_size) {
                (void) snprintf(g->why, sizeof(g->why), "not an IP connection");
                g->refused = true;
                return CURL_SOCKET_BAD;
        }
        if (http_fetch_addr_check(&address->addr, g->o, g->why, sizeof(g->why)) < 0) {
                g->refused = true;
                return CURL_SOCKET_BAD;
        }
        int fd = socket(address->family, address->socktype | SOCK_CLOEXEC, address->protocol);
        return fd < 0 ? CURL_SOCKET_BAD : fd;
}

typedef struct {
        int fd;
        uint64_t have, max;
} Sink;

static int sink_data(const char *data, size_t len, void *userdata)
{
        Sink *s = userdata;
        if (s->have + len > s->max)
                return -EFBIG;
        while (len > 0) {
                ssize_t n = write(s->fd, data, len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                data += n;
                len -= (size_t) n;
                s->have += (uint64_t) n;
        }
        return 0;
}

int http_fetch(const char *url, int fd, const HttpFetchOptions *o, int64_t *ret_last_modified,
               char *err, size_t errlen)
{
        int r = curl_core_global_init();
        if (r < 0) {
                (void) snprintf(err, errlen, "libcurl did not initialise");
                return r;
        }
        CURL *h = curl_easy_init();
        if (!h)
                return -ENOMEM;
        char errbuf[CURL_ERROR_SIZE];
        Sink sink = {.fd = fd, .max = o->max_bytes};
        CurlTransfer t = {.on_data = sink_data, .userdata = &sink, .max = 4096};
        CurlRequest req = {.url = url,
                           .protocols = "http,https",
                           .connect_timeout_ms = o->timeout_ms < 30000 ? o->timeout_ms : 30000,
                           .timeout_ms = o->timeout_ms,
                           .no_proxy = true,
                           .errbuf = errbuf};
        Guard guard = {.o = o};
        r = curl_core_setup(h, &req, &t);
        if (r == 0 && (curl_easy_setopt(h, CURLOPT_OPENSOCKETFUNCTION, open_socket) != CURLE_OK ||
                       curl_easy_setopt(h, CURLOPT_OPENSOCKETDATA, &guard) != CURLE_OK ||
                       curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L) != CURLE_OK ||
                       curl_easy_setopt(h, CURLOPT_MAXREDIRS, o->max_redirects) != CURLE_OK ||
#if LIBCURL_VERSION_NUM >= 0x075500
                       curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https") != CURLE_OK ||
#endif
                       curl_easy_setopt(h, CURLOPT_FILETIME, 1L) != CURLE_OK ||
                       curl_easy_setopt(h, CURLOPT_HTTPGET, 1L) != CURLE_OK))
                r = -EIO;
        CURLcode cc = CURLE_OK;
        if (r == 0) {
                cc = curl_easy_perform(h);
                r = cc == CURLE_TOO_MANY_REDIRECTS ? -ELOOP : curl_core_errno(&t, cc);
        }
        long status = 0;
        (void) curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
        /* An answer that is not 2xx is that, whatever its body did (a long 404
         * page stops the transfer past t.max). */
        if (r < 0 && guard.refused) {
                r = -EACCES;
                (void) snprintf(err, errlen, "%s", guard.why);
        } else if (status >= 100 && (status < 200 || status > 299) && r != -ELOOP) {
                r = status == 404 ? -ENOENT : -EREMOTEIO;
                (void) snprintf(err, errlen, "cannot fetch %s: the server answered %ld", url,
                                status);
        } else if (r == -EFBIG)
                (void) snprintf(err, errlen, "%s is larger than %llu bytes", url,
                                (unsigned long long) o->max_bytes);
        else if (r == -ELOOP)
                (void) snprintf(err, errlen, "%s: more than %ld redirects", url, o->max_redirects);
        else if (r < 0)
                (void) snprintf(err, errlen, "cannot fetch %s: %s", url,
                                errbuf[0] ? errbuf : curl_easy_strerror(cc));
        curl_off_t ft = -1;
        if (ret_last_modified)
                *ret_last_modified =
                        r == 0 && curl_easy_getinfo(h, CURLINFO_FILETIME_T, &ft) == CURLE_OK &&
                                        ft > 0
                                ? (int64_t) ft
                                : 0;
        strbuf_done(&t.body);
        curl_easy_cleanup(h);
        return r;
}

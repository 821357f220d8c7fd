/* Request routing by headers and host name. See route.h. */
#include "route.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "sandpit/macro.h"
#include "sandpit/util.h"

#define HOST_MAX 253u

int gw_route_port_parse(const char *s, size_t len, uint16_t *ret)
{
        if (len < 1 || len > 5 || s[0] == '0')
                return -EINVAL;
        unsigned v = 0;
        for (size_t i = 0; i < len; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return -EINVAL;
                v = v * 10 + (unsigned) (s[i] - '0');
        }
        if (v > 65535)
                return -EINVAL;
        *ret = (uint16_t) v;
        return 0;
}

const char *gw_route_kind_name(GwRouteKind k)
{
        switch (k) {
        case GW_ROUTE_CONTROL:
                return "control";
        case GW_ROUTE_ENVD:
                return "envd";
        case GW_ROUTE_CODE:
                return "code";
        case GW_ROUTE_PORT:
                return "port";
        }
        return "unknown";
}

static GwRouteKind kind_of(uint16_t port)
{
        return port == GW_ROUTE_ENVD_PORT   ? GW_ROUTE_ENVD
               : port == GW_ROUTE_CODE_PORT ? GW_ROUTE_CODE
                                            : GW_ROUTE_PORT;
}

__attribute__((format(printf, 3, 4))) static int fail(char *err, size_t errlen, const char *fmt,
                                                      ...)
{
        va_list ap;
        va_start(ap, fmt);
        (void) vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
        return -EINVAL;
}

/* 1 and ret set when host is "<port>-<id>.<domain>[:port]", 0 when it is some
 * other name, -EINVAL when it is under domain, starts like a sandbox host, and
 * is not a valid one. */
static int host_sandbox(const char *host, const char *domain, GwRoute *ret, char *err,
                        size_t errlen)
{
        if (host[0] == '[') /* an IPv6 literal: never a sandbox host */
                return 0;
        size_t n = strcspn(host, ":");
        while (n > 0 && host[n - 1] == '.')
                n--;
        size_t dn = strlen(domain);
        while (dn > 0 && domain[dn - 1] == '.')
                dn--;
        if (dn == 0 || n > HOST_MAX || n < dn + 2 || host[n - dn - 1] != '.' ||
            strncasecmp(host + n - dn, domain, dn) != 0)
                return 0;
        size_t ln = n - dn - 1; /* the labels left of the domain */
        if (memchr(host, '.', ln) || host[0] < '0' || host[0] > '9')
                return 0;
        const char *dash = memchr(host, '-', ln);
        if (!dash)
                return fail(err, errlen,
                            "Host %.253s: a sandbox host name is <port>-<sandbox id>.<domain>",
                            host);
        uint16_t port = 0;
        if (gw_route_port_parse(host, (size_t) (dash - host), &port) < 0)
                return fail(err, errlen, "Host %.253s: the port before '-' must be 1-65535", host);
        size_t idn = ln - (size_t) (dash - host) - 1;
        if (idn < 1 || idn > GW_ROUTE_ID_MAX)
                return fail(err, errlen,
                            "Host %.253s: the sandbox id must be 1-63 characters of [a-z0-9-] "
                            "not starting with '-'",
                            host);
        GwRoute r = {.kind = kind_of(port), .port = port};
        /* Host names are case-insensitive; sandbox ids are lower case. */
        for (size_t i = 0; i < idn; i++) {
                char c = dash[1 + i];
                r.sandbox_id[i] = (char) (c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
        }
        if (!id_is_valid(r.sandbox_id))
                return fail(err, errlen,
                            "Host %.253s: the sandbox id must be 1-63 characters of [a-z0-9-] "
                            "not starting with '-'",
                            host);
        *ret = r;
        return 1;
}

int gw_route_resolve(const char *host, const char *id, const char *port, const char *domain,
                     GwRoute *ret, char *err, size_t errlen)
{
        GwRoute by_hdr = {.kind = GW_ROUTE_CONTROL}, by_host = {.kind = GW_ROUTE_CONTROL};
        bool have_hdr = false, have_host = false;
        if (id || port) {
                if (!id || !port)
                        return fail(err, errlen, "%s",
                                    "E2b-Sandbox-Id and E2b-Sandbox-Port must be sent together");
                if (!id_is_valid(id))
                        return fail(err, errlen, "%s",
                                    "E2b-Sandbox-Id must be 1-63 characters of [a-z0-9-] not "
                                    "starting with '-'");
                if (gw_route_port_parse(port, strlen(port), &by_hdr.port) < 0)
                        return fail(err, errlen, "%s",
                                    "E2b-Sandbox-Port must be a port number 1-65535");
                by_hdr.kind = kind_of(by_hdr.port);
                memcpy(by_hdr.sandbox_id, id, strlen(id) + 1);
                have_hdr = true;
        }
        if (host && domain && *domain) {
                int r = host_sandbox(host, domain, &by_host, err, errlen);
                if (r < 0)
                        return r;
                have_host = r > 0;
        }
        if (have_hdr && have_host &&
            (by_hdr.port != by_host.port || !streq(by_hdr.sandbox_id, by_host.sandbox_id))) {
                (void) snprintf(err, errlen,
                                "Host names sandbox %s port %u but the E2b-Sandbox-Id/-Port "
                                "headers name sandbox %s port %u",
                                by_host.sandbox_id, by_host.port, by_hdr.sandbox_id, by_hdr.port);
                return -EINVAL;
        }
        *ret = have_hdr ? by_hdr : by_host;
        return 0;
}

/* Which part of the gateway a request is for, decided from its Host header and
 * the E2b-Sandbox-Id / E2b-Sandbox-Port headers, the two ways the E2B SDKs
 * address a sandbox (E2B_SANDBOX_URL and E2B_DOMAIN). Pure; see docs/gateway.md. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#define GW_ROUTE_ENVD_PORT 49983u /* envd: Connect RPC, /files, /health */
#define GW_ROUTE_CODE_PORT 49999u /* the code interpreter: /execute, /contexts */
#define GW_ROUTE_ID_MAX    63u

typedef enum {
        GW_ROUTE_CONTROL, /* the REST control plane (no sandbox named) */
        GW_ROUTE_ENVD,    /* port 49983 of a sandbox */
        GW_ROUTE_CODE,    /* port 49999 of a sandbox */
        GW_ROUTE_PORT,    /* any other port: proxied into the sandbox */
} GwRouteKind;

typedef struct {
        GwRouteKind kind;
        char sandbox_id[GW_ROUTE_ID_MAX + 1]; /* "" for GW_ROUTE_CONTROL */
        uint16_t port;                        /* 0 for GW_ROUTE_CONTROL */
} GwRoute;

/* host: the Host header (may carry ":port", may be NULL); id and port: the
 * E2b-Sandbox-Id and E2b-Sandbox-Port headers (NULL when absent); domain: the
 * configured sandbox domain (NULL or "" turns host routing off).
 *
 * A sandbox is named by the headers (both or neither) or by a host
 * "<port>-<id>.<domain>"; when both name one they must agree. Every other
 * request is for the control plane. -EINVAL with a message in err for a bad id
 * or port, a lone header, or a host under domain that looks like a sandbox
 * host but is not a valid one. */
int gw_route_resolve(const char *host, const char *id, const char *port, const char *domain,
                     GwRoute *ret, char *err, size_t errlen);

/* A port as the headers and host names write it: 1-65535, digits only, no
 * leading zero. */
int gw_route_port_parse(const char *s, size_t len, uint16_t *ret);

const char *gw_route_kind_name(GwRouteKind k);

/* Who may use the gateway's control plane (docs/auth.md): API keys (X-API-KEY),
 * bound to a namespace, from a key file or a Secret; Kubernetes tokens
 * (Authorization: Bearer), checked with TokenReview and authorised per verb
 * with SubjectAccessReview. A GwAuth is the userdata of gw_auth_authorize(),
 * a GwAuthorizeFn; the data plane is left to gw_authorize_local (per-sandbox
 * access tokens). */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "gateway.h"
#include "sandpit/k8s-client.h"

/* How long TokenReview and SubjectAccessReview answers are kept. */
#define GW_AUTH_CACHE_S 10u
/* Entries kept in each cache; when full, the expired go, then all. */
#define GW_AUTH_CACHE_MAX 1024u

typedef enum {
        GW_AUTH_KEYS, /* an API key (or a Kubernetes token) on every control-plane call */
        GW_AUTH_NONE, /* any non-empty X-API-KEY, no namespaces: loopback development only */
} GwAuthMode;

typedef struct {
        GwAuthMode mode;
        /* Local mode: keys from this file, read again when it changes (checked
         * with stat() on every request, so a revocation counts at once). */
        const char *key_file;
        /* Borrowed, may be NULL: Kubernetes tokens are then refused. */
        K8sClient *k8s;
        /* With k8s: keys from this Secret (watched) instead of key_file. */
        const char *keys_secret_namespace;
        const char *keys_secret_name;
        unsigned cache_s; /* 0: GW_AUTH_CACHE_S */
} GwAuthConfig;

typedef struct GwAuth GwAuth;

/* With a Secret, waits up to sync_ms for its first read (a gateway that
 * cannot read it yet refuses every key until it can). */
int gw_auth_new(const GwAuthConfig *cfg, long sync_ms, GwAuth **ret);
void gw_auth_free(GwAuth *a);
int gw_auth_parse_mode(const char *s, GwAuthMode *ret);

/* The GwAuthorizeFn; userdata is the GwAuth. */
int gw_auth_authorize(GwServer *gw, const GwAuthRequest *r, char *err, size_t errlen,
                      void *userdata);

/* The SubjectAccessReview verb of a control-plane request: create, list, get,
 * delete or update. */
const char *gw_auth_verb(const char *method, const char *path);
/* The verb of MCP: "/mcp" itself is get; a tool's is that of the control
 * plane call it makes (sandbox_id "": create), run_code, run_command and
 * write_file update, the reading tools get. */
const char *gw_auth_mcp_verb(const char *tool, const char *sandbox_id);

typedef struct {
        unsigned long token_reviews;  /* TokenReviews sent (cache misses) */
        unsigned long access_reviews; /* SubjectAccessReviews sent */
        unsigned long key_reloads;    /* key file or Secret read */
} GwAuthStats;
void gw_auth_get_stats(GwAuth *a, GwAuthStats *ret);

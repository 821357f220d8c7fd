/* E2B's REST control plane in JSON: create bodies (v2 POST /v2/sandboxes and v1
 * POST /sandboxes) parsed into sandpit create parameters and the agent's
 * native create request; the agent's sandbox objects turned into E2B's
 * Sandbox, ListedSandbox and SandboxDetail; list filters and nextToken
 * pagination; E2B's error body. Pure: no I/O. See docs/gateway.md. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#define GW_E2B_TIMEOUT_DEFAULT 300u         /* seconds, when create names none */
#define GW_E2B_TIMEOUT_MAX     (7u * 86400) /* the agent's own limit */
#define GW_E2B_LIST_LIMIT_MAX  100u
#define GW_E2B_ENVD_VERSION    "0.5.7"
/* The agent's labels under this prefix belong to sandpit, never to E2B metadata. */
#define GW_E2B_LABEL_PREFIX   "sandpit.dev/"
#define GW_E2B_LABEL_TEMPLATE "sandpit.dev/e2b-template" /* templateID as the caller named it */

/* An E2B template name and the sandpit template it stands for. */
typedef struct {
        const char *alias;
        const char *template_name;
} GwE2bAlias;

typedef struct {
        /* Ends with {NULL, NULL}; NULL: base and code-interpreter-v1 map to
         * "default". A name not in the table is taken as a sandpit template. */
        const GwE2bAlias *aliases;
        /* The agent can give sandboxes network access (it runs with
         * --sandbox-cidr). Without it, E2B's default of internet access becomes
         * no egress, and explicit allowOut/denyOut lists are refused. */
        bool internet;
        const char *envd_version; /* reported to the SDK; NULL: GW_E2B_ENVD_VERSION */
        const char *client_id;    /* NULL: "sandpit" */
        const char *domain;       /* the sandbox domain for the SDK; NULL: null */
} GwE2bConfig;

typedef enum {
        GW_E2B_EGRESS_DENY,      /* no network */
        GW_E2B_EGRESS_ALLOW,     /* everything but deny */
        GW_E2B_EGRESS_ALLOWLIST, /* only allow */
} GwE2bEgress;

/* A parsed create request. */
typedef struct {
        char *template_id;   /* templateID as sent */
        char *template_name; /* the sandpit template after alias mapping */
        uint64_t timeout_s;
        json_object *labels; /* from metadata: an object of strings */
        json_object *env;    /* from envVars: an object of strings */
        bool secure;         /* the caller wants a per-sandbox access token */
        bool auto_pause;     /* pause at the deadline instead of deleting */
        GwE2bEgress egress;
        char **allow; /* IPv4 CIDRs (NULL-terminated) for GW_E2B_EGRESS_ALLOWLIST */
        char **deny;  /* IPv4 CIDRs (NULL-terminated) for GW_E2B_EGRESS_ALLOW */
} GwE2bCreate;

/* body: the request's JSON. v1: POST /sandboxes (secure defaults to false; in
 * v2 it is always true). -EINVAL with a message in err for anything the
 * gateway does not take; every field is checked, unknown ones refused. */
int gw_e2b_create_parse(json_object *body, bool v1, const GwE2bConfig *cfg, GwE2bCreate *ret,
                        char *err, size_t errlen);
void gw_e2b_create_done(GwE2bCreate *c);
/* The agent's POST /v1/sandboxes body (autoPause: "on_timeout": "pause"). err
 * is for refusals of what the agent cannot do (none at present). */
int gw_e2b_create_to_agent(const GwE2bCreate *c, json_object **ret, char *err, size_t errlen);

typedef enum {
        GW_E2B_VIEW_SANDBOX, /* create and connect answers */
        GW_E2B_VIEW_LISTED,  /* a list entry */
        GW_E2B_VIEW_DETAIL,  /* GET /sandboxes/{id} */
} GwE2bView;

/* An agent sandbox object (GET /v1/sandboxes/{id}) as E2B JSON. access_token:
 * the sandbox's envd access token, or NULL. -ENOENT when the sandbox is not
 * running or paused (E2B knows no other state), -EINVAL when agent is not a
 * sandbox object. */
int gw_e2b_sandbox_from_agent(json_object *agent, GwE2bView view, const GwE2bConfig *cfg,
                              const char *access_token, json_object **ret);

/* GET /v2/sandboxes (and v1 GET /sandboxes) query parameters, as the HTTP
 * server hands them over: URL-decoded once, NULL when absent. */
typedef struct {
        const char *metadata;      /* "k=v&k2=v2", each part percent-encoded once more */
        const char *state;         /* "running,paused" */
        const char *template_id;   /* template */
        const char *started_after; /* RFC 3339 */
        const char *order;         /* "asc" (default) or "desc", by start time */
        const char *limit;         /* 1-100, default 100 */
        const char *next_token;
} GwE2bListParams;

typedef struct {
        char **metadata; /* "k=v" strv; every one must match (AND); never NULL */
        bool running;
        bool paused;
        char *template_id;
        bool have_started_after;
        int64_t started_after_sec;
        int32_t started_after_nsec;
        bool desc;
        size_t limit;
        bool have_cursor; /* next_token: the last entry of the previous page */
        int64_t cursor_sec;
        int32_t cursor_nsec;
        char *cursor_id;
} GwE2bListQuery;

/* paginate false (v1): no limit or nextToken accepted, every match listed. */
int gw_e2b_list_query_parse(const GwE2bListParams *p, bool paginate, GwE2bListQuery *ret, char *err,
                            size_t errlen);
void gw_e2b_list_query_done(GwE2bListQuery *q);
/* The metadata parameter (already URL-decoded once) as "k=v" strv. */
int gw_e2b_metadata_filter_parse(const char *s, char ***ret, char *err, size_t errlen);

/* One page of ListedSandbox entries from the agent's list ({"sandboxes":[...]}
 * or a bare array): filtered, ordered by start time then id, at most limit.
 * *ret_next_token is the X-Next-Token header's value, or NULL on the last page. */
int gw_e2b_list_page(json_object *agent_list, const GwE2bListQuery *q, const GwE2bConfig *cfg,
                     json_object **ret, char **ret_next_token);

/* GET /sandboxes/{id}/metrics: the agent's metrics answer (a window
 * {"metrics":[...]} or one current sample) as E2B's array of samples
 * (docs/metrics.md has the field mapping). -EINVAL when it is neither. */
int gw_e2b_metrics_from_agent(json_object *agent, json_object **ret);

/* POST /sandboxes/{id}/timeout {"timeout": N}: N in 1..GW_E2B_TIMEOUT_MAX. */
int gw_e2b_timeout_body_parse(json_object *body, uint64_t *ret_s, char *err, size_t errlen);
/* POST /v2/sandboxes/{id}/connect {} or {"timeout": N, "memory": bool}:
 * *ret_s is 0 when no timeout was given. */
int gw_e2b_connect_body_parse(json_object *body, uint64_t *ret_s, char *err, size_t errlen);
/* POST /sandboxes/{id}/pause {} or {"memory": bool}; NULL body is {}. */
int gw_e2b_pause_body_parse(json_object *body, char *err, size_t errlen);

/* E2B's error body {"code": status, "message": message}. */
int gw_e2b_error_new(unsigned status, const char *message, json_object **ret);
/* The HTTP status for a negative errno (-ENOENT 404, -EEXIST/-EBUSY 409, ...). */
unsigned gw_e2b_status_from_errno(int r);

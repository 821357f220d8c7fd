/* A Kubernetes API client on libcurl and json-c: typed-less REST on JSON
 * objects (no generated code). See docs/kube-client.md.
 *
 * Threads: a K8sClient may be used from any number of threads at once; it
 * keeps a small pool of curl handles (one per request in flight, idle ones
 * reused with their connections) and its token behind one mutex. json_object
 * arguments are borrowed and only read; a returned object belongs to the
 * caller (json-c reference counts are not atomic: never share one between
 * threads, hand over a deep copy or a string).
 *
 * Errors: functions return 0 or a negative errno. An HTTP error status maps
 * through http_status_to_errno() with the Status reason (sandpit/http-status.h:
 * 403 -EACCES, 5xx -EIO, 409 AlreadyExists -EEXIST, ...); when err is not NULL it receives the HTTP
 * status and the API's Status reason and message, for logs. */
#pragma once

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include <json-c/json.h>

#include "sandpit/http-status.h"
#include "sandpit/k8s-config.h"

/* A service account token file is read again after this long. */
#define K8S_TOKEN_FILE_REFRESH_S 60
/* Default bound on one request (not on watches). */
#define K8S_REQUEST_TIMEOUT_MS 30000L
/* Largest response body accepted (a list page). */
#define K8S_BODY_MAX ((size_t) 256 * 1024 * 1024)
/* Nesting accepted in API JSON (CRD schemas nest deeply). */
#define K8S_JSON_DEPTH 256

typedef struct K8sClient K8sClient;

/* A resource type: {"", "v1", "secrets", true} or
 * {"sandpit.dev", "v1alpha1", "sandboxes", true}. */
typedef struct {
        const char *group; /* NULL or "": the core group, under /api/v1 */
        const char *version;
        const char *resource; /* plural, lower case */
        bool namespaced;
} K8sResource;

typedef struct {
        long status;        /* HTTP status; 0 when the request got no answer */
        char reason[64];    /* Status.reason ("AlreadyExists", "Conflict", ...) or "" */
        char message[1024]; /* Status.message, or the transport error; "" when none */
        long retry_after_s; /* Retry-After in seconds, 0 when absent */
} K8sError;

/* Takes cfg (freed with the client, or at once on failure). */
int k8s_client_new(K8sConfig *cfg, K8sClient **ret);
void k8s_client_free(K8sClient *c);

static inline void k8s_client_freep(K8sClient **c)
{
        k8s_client_free(*c);
}
#define cleanup_k8s_client __attribute__((cleanup(k8s_client_freep)))

const K8sConfig *k8s_client_config(const K8sClient *c);
/* Bound on each non-watch request; 0 means none. Call before sharing the client. */
void k8s_client_set_timeout(K8sClient *c, long timeout_ms);

/* Namespaced resources: ns NULL means the config's namespace, except in
 * k8s_list()/k8s_list_page() and watches, where NULL means all namespaces.
 * Cluster-scoped resources ignore ns. */

int k8s_get(K8sClient *c, const K8sResource *res, const char *ns, const char *name,
            json_object **ret, K8sError *err);
/* ns NULL: metadata.namespace of obj, else the config's namespace. */
int k8s_create(K8sClient *c, const K8sResource *res, const char *ns, json_object *obj,
               json_object **ret, K8sError *err);
/* PUT of obj at its metadata.namespace/name; its metadata.resourceVersion makes
 * it conditional (a stale one is -EBUSY). */
int k8s_update(K8sClient *c, const K8sResource *res, json_object *obj, json_object **ret,
               K8sError *err);
/* The same on the /status subresource (only status is taken from obj). */
int k8s_update_status(K8sClient *c, const K8sResource *res, json_object *obj, json_object **ret,
                      K8sError *err);

typedef enum {
        K8S_PATCH_MERGE,     /* application/merge-patch+json (RFC 7386) */
        K8S_PATCH_JSON,      /* application/json-patch+json (RFC 6902), patch is an array */
        K8S_PATCH_STRATEGIC, /* application/strategic-merge-patch+json, built-in kinds only */
} K8sPatchType;

/* subresource NULL or "status". */
int k8s_patch(K8sClient *c, const K8sResource *res, const char *ns, const char *name,
              const char *subresource, K8sPatchType type, json_object *patch, json_object **ret,
              K8sError *err);

typedef struct {
        const char *uid;              /* NULL: no precondition */
        const char *resource_version; /* NULL: no precondition */
} K8sPreconditions;

/* pre may be NULL. ret (may be NULL) gets the object (still there while
 * finalizers run) or the Status the server answered. */
int k8s_delete(K8sClient *c, const K8sResource *res, const char *ns, const char *name,
               const K8sPreconditions *pre, json_object **ret, K8sError *err);

typedef struct {
        const char *label_selector; /* NULL: everything */
        const char *field_selector;
        long limit;                 /* page size; 0: the server's choice (all) */
        const char *continue_token; /* k8s_list_page() only */
        bool strip_managed_fields;  /* drop each item's metadata.managedFields as its page
                                       arrives (k8s_obj_strip_managed_fields) */
} K8sListOptions;

/* One page: the List object as the server sent it (metadata.continue set
 * when more follow). opts may be NULL. */
int k8s_list_page(K8sClient *c, const K8sResource *res, const char *ns, const K8sListOptions *opts,
                  json_object **ret, K8sError *err);
/* Every page, items joined in one List whose metadata.resourceVersion is the
 * first page's (all pages are one consistent snapshot at it). A continue
 * token that expired midway is -ESTALE: list again. */
int k8s_list(K8sClient *c, const K8sResource *res, const char *ns, const K8sListOptions *opts,
             json_object **ret, K8sError *err);

/* The request under all of the above. path starts with "/" and holds the
 * query; body may be NULL; content_type NULL means application/json. */
int k8s_request(K8sClient *c, const char *method, const char *path, const char *content_type,
                json_object *body, json_object **ret, K8sError *err);

/* Called with each piece of a 2xx response body as it arrives; a negative
 * return stops the transfer and becomes its result. */
typedef int (*K8sDataFn)(const char *data, size_t len, void *userdata);

/* A GET whose 2xx body is streamed to fn (a watch). stop, when not NULL and
 * set, ends the transfer within about a second with -ECANCELED. timeout_ms
 * (0: none) bounds the whole transfer. 0 when the server ended the body. */
int k8s_stream(K8sClient *c, const char *path, K8sDataFn fn, void *userdata,
               const atomic_bool *stop, long timeout_ms, K8sError *err);

/* "/api/v1/namespaces/NS/secrets/NAME/SUB" or "/apis/G/V/...": ns, name and
 * subresource may be NULL. Names holding '/', '?', '#', '%', whitespace or
 * control characters, or "." / "..", are -EINVAL. */
int k8s_path(const K8sResource *res, const char *ns, const char *name, const char *subresource,
             char **ret);
/* Appends "?k=v" or "&k=v" to *url, v URL-encoded; v NULL appends nothing. */
int k8s_url_add_query(char **url, const char *key, const char *value);

/* True for what is worth retrying after a back-off: -EAGAIN (429), -EIO (5xx,
 * and transport failures curl has no better name for) and the other transport
 * failures (refused, reset, timed out, unreachable). */
bool k8s_errno_is_transient(int r);

/* metadata.name etc. of obj, NULL when absent; borrowed from obj. */
const char *k8s_obj_name(json_object *obj);
const char *k8s_obj_namespace(json_object *obj);
const char *k8s_obj_resource_version(json_object *obj);
const char *k8s_obj_uid(json_object *obj);
/* Drops metadata.managedFields (server-side apply's bookkeeping, which a real
 * API server adds to every object and no controller here reads): an informer's
 * cache holds objects without it, as client-go's TransformStripManagedFields. */
void k8s_obj_strip_managed_fields(json_object *obj);
/* "namespace/name", or "name" without a namespace (client-go's key). */
int k8s_obj_key(json_object *obj, char **ret);

/* The resource half of the client: URL building, object accessors and the
 * verbs (get, create, update, patch, delete, list) on top of k8s_request(),
 * which k8s-client.c implements with the transport. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <json-c/json.h>

#include "sandpit/json.h"
#include "sandpit/k8s-client.h"
#include "sandpit/macro.h"

/* ------------------------------------------------------------------ paths */

static bool segment_ok(const char *s)
{
        if (!s || s[0] == '\0' || streq(s, ".") || streq(s, ".."))
                return false;
        for (const unsigned char *p = (const unsigned char *) s; *p; p++)
                if (*p <= ' ' || *p == 0x7f || strchr("/?#%\\", *p))
                        return false;
        return true;
}

int k8s_path(const K8sResource *res, const char *ns, const char *name, const char *subresource,
             char **ret)
{
        if (!res || !ret || !segment_ok(res->version) || !segment_ok(res->resource) ||
            (res->group && res->group[0] != '\0' && !segment_ok(res->group)) ||
            (ns && !segment_ok(ns)) || (name && !segment_ok(name)) ||
            (subresource && (!name || !segment_ok(subresource))))
                return -EINVAL;
        bool core = !res->group || res->group[0] == '\0';
        bool with_ns = res->namespaced && ns;
        int n = asprintf(ret, "%s%s/%s%s%s/%s%s%s%s%s", core ? "/api" : "/apis/",
                         core ? "" : res->group, res->version, with_ns ? "/namespaces/" : "",
                         with_ns ? ns : "", res->resource, name ? "/" : "", name ? name : "",
                         subresource ? "/" : "", subresource ? subresource : "");
        if (n < 0) {
                *ret = NULL;
                return -ENOMEM;
        }
        return 0;
}

int k8s_url_add_query(char **url, const char *key, const char *value)
{
        if (!value)
                return 0;
        char *enc = curl_easy_escape(NULL, value, 0);
        if (!enc)
                return -ENOMEM;
        char *n = NULL;
        int q = asprintf(&n, "%s%c%s=%s", *url, strchr(*url, '?') ? '&' : '?', key, enc);
        curl_free(enc);
        if (q < 0)
                return -ENOMEM;
        free(*url);
        *url = n;
        return 0;
}

/* ------------------------------------------------------------------ objects */

static const char *meta_str(json_object *obj, const char *key)
{
        return json_str(json_field(obj, "metadata"), key);
}

const char *k8s_obj_name(json_object *obj)
{
        return meta_str(obj, "name");
}

const char *k8s_obj_namespace(json_object *obj)
{
        return meta_str(obj, "namespace");
}

const char *k8s_obj_resource_version(json_object *obj)
{
        return meta_str(obj, "resourceVersion");
}

const char *k8s_obj_uid(json_object *obj)
{
        return meta_str(obj, "uid");
}

void k8s_obj_strip_managed_fields(json_object *obj)
{
        json_object *meta = NULL;
        if (json_object_object_get_ex(obj, "metadata", &meta) &&
            json_object_is_type(meta, json_type_object))
                json_object_object_del(meta, "managedFields");
}

int k8s_obj_key(json_object *obj, char **ret)
{
        const char *name = k8s_obj_name(obj);
        const char *ns = k8s_obj_namespace(obj);
        if (!name)
                return -EINVAL;
        int n = ns && ns[0] != '\0' ? asprintf(ret, "%s/%s", ns, name) : asprintf(ret, "%s", name);
        if (n < 0) {
                *ret = NULL;
                return -ENOMEM;
        }
        return 0;
}

/* ------------------------------------------------------------------ verbs */

static const char *ns_or_default(K8sClient *c, const char *ns)
{
        return ns ? ns : k8s_client_config(c)->namespace;
}

int k8s_get(K8sClient *c, const K8sResource *res, const char *ns, const char *name,
            json_object **ret, K8sError *err)
{
        cleanup_free char *path = NULL;
        if (!c || !name)
                return -EINVAL;
        int r = k8s_path(res, ns_or_default(c, ns), name, NULL, &path);
        if (r < 0)
                return r;
        return k8s_request(c, "GET", path, NULL, NULL, ret, err);
}

int k8s_create(K8sClient *c, const K8sResource *res, const char *ns, json_object *obj,
               json_object **ret, K8sError *err)
{
        cleanup_free char *path = NULL;
        if (!c || !obj)
                return -EINVAL;
        if (!ns)
                ns = k8s_obj_namespace(obj);
        int r = k8s_path(res, ns_or_default(c, ns), NULL, NULL, &path);
        if (r < 0)
                return r;
        return k8s_request(c, "POST", path, NULL, obj, ret, err);
}

static int update(K8sClient *c, const K8sResource *res, json_object *obj, const char *sub,
                  json_object **ret, K8sError *err)
{
        cleanup_free char *path = NULL;
        if (!c || !obj)
                return -EINVAL;
        const char *name = k8s_obj_name(obj);
        if (!name)
                return -EINVAL;
        int r = k8s_path(res, ns_or_default(c, k8s_obj_namespace(obj)), name, sub, &path);
        if (r < 0)
                return r;
        return k8s_request(c, "PUT", path, NULL, obj, ret, err);
}

int k8s_update(K8sClient *c, const K8sResource *res, json_object *obj, json_object **ret,
               K8sError *err)
{
        return update(c, res, obj, NULL, ret, err);
}

int k8s_update_status(K8sClient *c, const K8sResource *res, json_object *obj, json_object **ret,
                      K8sError *err)
{
        return update(c, res, obj, "status", ret, err);
}

int k8s_patch(K8sClient *c, const K8sResource *res, const char *ns, const char *name,
              const char *subresource, K8sPatchType type, json_object *patch, json_object **ret,
              K8sError *err)
{
        static const char *const types[] = {
                [K8S_PATCH_MERGE] = "application/merge-patch+json",
                [K8S_PATCH_JSON] = "application/json-patch+json",
                [K8S_PATCH_STRATEGIC] = "application/strategic-merge-patch+json",
        };
        cleanup_free char *path = NULL;
        if (!c || !name || !patch || (unsigned) type >= ARRAY_SIZE(types))
                return -EINVAL;
        if (type == K8S_PATCH_JSON ? !json_object_is_type(patch, json_type_array)
                                   : !json_object_is_type(patch, json_type_object))
                return -EINVAL;
        int r = k8s_path(res, ns_or_default(c, ns), name, subresource, &path);
        if (r < 0)
                return r;
        return k8s_request(c, "PATCH", path, types[type], patch, ret, err);
}

int k8s_delete(K8sClient *c, const K8sResource *res, const char *ns, const char *name,
               const K8sPreconditions *pre, json_object **ret, K8sError *err)
{
        cleanup_free char *path = NULL;
        json_object *body = NULL;
        if (!c || !name)
                return -EINVAL;
        int r = k8s_path(res, ns_or_default(c, ns), name, NULL, &path);
        if (r < 0)
                return r;
        if (pre && (pre->uid || pre->resource_version)) {
                body = json_object_new_object();
                json_object *p = json_object_new_object();
                if (!body || !p) {
                        json_object_put(body);
                        json_object_put(p);
                        return -ENOMEM;
                }
                (void) json_object_object_add(body, "kind",
                                              json_object_new_string("DeleteOptions"));
                (void) json_object_object_add(body, "apiVersion", json_object_new_string("v1"));
                if (pre->uid)
                        (void) json_object_object_add(p, "uid", json_object_new_string(pre->uid));
                if (pre->resource_version)
                        (void) json_object_object_add(
                                p, "resourceVersion",
                                json_object_new_string(pre->resource_version));
                (void) json_object_object_add(body, "preconditions", p);
        }
        r = k8s_request(c, "DELETE", path, NULL, body, ret, err);
        json_object_put(body);
        return r;
}

int k8s_list_page(K8sClient *c, const K8sResource *res, const char *ns, const K8sListOptions *opts,
                  json_object **ret, K8sError *err)
{
        cleanup_free char *path = NULL;
        char limit[32];
        if (!c || !ret)
                return -EINVAL;
        int r = k8s_path(res, ns, NULL, NULL, &path);
        if (r < 0)
                return r;
        if (opts) {
                (void) snprintf(limit, sizeof(limit), "%ld", opts->limit);
                if ((r = k8s_url_add_query(&path, "labelSelector", opts->label_selector)) < 0 ||
                    (r = k8s_url_add_query(&path, "fieldSelector", opts->field_selector)) < 0 ||
                    (r = k8s_url_add_query(&path, "limit", opts->limit > 0 ? limit : NULL)) < 0 ||
                    (r = k8s_url_add_query(&path, "continue", opts->continue_token)) < 0)
                        return r;
        }
        json_object *list = NULL;
        r = k8s_request(c, "GET", path, NULL, NULL, &list, err);
        if (r < 0)
                return r;
        json_object *items = NULL;
        if (!json_object_is_type(list, json_type_object) ||
            !json_object_object_get_ex(list, "items", &items) ||
            !(json_object_is_type(items, json_type_array) || !items)) {
                json_object_put(list);
                if (err)
                        (void) snprintf(err->message, sizeof(err->message),
                                        "the list has no items array");
                return -EBADMSG;
        }
        *ret = list;
        return 0;
}

static const char *list_continue(json_object *list)
{
        const char *s = json_str(json_field(list, "metadata"), "continue");
        return s && s[0] ? s : NULL;
}

/* Before the next page is read: all pages of a large list with managedFields
 * would be held at once otherwise, and the heap keeps that peak. */
static void strip_items(json_object *items)
{
        for (size_t i = 0; items && i < json_object_array_length(items); i++)
                k8s_obj_strip_managed_fields(json_object_array_get_idx(items, i));
}

int k8s_list(K8sClient *c, const K8sResource *res, const char *ns, const K8sListOptions *opts,
             json_object **ret, K8sError *err)
{
        K8sListOptions o = opts ? *opts : (K8sListOptions){0};
        json_object *all = NULL;
        json_object *page = NULL;
        cleanup_free char *cont = NULL;
        int r;

        o.continue_token = NULL;
        r = k8s_list_page(c, res, ns, &o, &all, err);
        if (r < 0)
                return r;
        json_object *all_items = NULL;
        (void) json_object_object_get_ex(all, "items", &all_items);
        if (o.strip_managed_fields)
                strip_items(all_items);
        if (!all_items) {
                all_items = json_object_new_array();
                if (!all_items) {
                        json_object_put(all);
                        return -ENOMEM;
                }
                (void) json_object_object_add(all, "items", all_items);
        }
        page = json_object_get(all);
        for (;;) {
                const char *next = list_continue(page);
                if (!next)
                        break;
                free(cont);
                cont = strdup(next);
                json_object_put(page);
                page = NULL;
                if (!cont) {
                        r = -ENOMEM;
                        goto fail;
                }
                o.continue_token = cont;
                r = k8s_list_page(c, res, ns, &o, &page, err);
                if (r < 0)
                        goto fail;
                json_object *items = NULL;
                (void) json_object_object_get_ex(page, "items", &items);
                if (o.strip_managed_fields)
                        strip_items(items);
                for (size_t i = 0; items && i < json_object_array_length(items); i++)
                        if (json_object_array_add(
                                    all_items,
                                    json_object_get(json_object_array_get_idx(items, i))) < 0) {
                                r = -ENOMEM;
                                goto fail;
                        }
        }
        json_object_put(page);
        json_object *meta = NULL;
        if (json_object_object_get_ex(all, "metadata", &meta) &&
            json_object_is_type(meta, json_type_object)) {
                json_object_object_del(meta, "continue");
                json_object_object_del(meta, "remainingItemCount");
        }
        *ret = all;
        return 0;
fail:
        json_object_put(page);
        json_object_put(all);
        return r;
}

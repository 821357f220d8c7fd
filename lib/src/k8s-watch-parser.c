#include "sandpit/k8s-watch-parser.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>

#include <json-c/json.h>

#include "sandpit/macro.h"

static const char *const type_names[] = {
        [K8S_WATCH_ADDED] = "ADDED",     [K8S_WATCH_MODIFIED] = "MODIFIED",
        [K8S_WATCH_DELETED] = "DELETED", [K8S_WATCH_BOOKMARK] = "BOOKMARK",
        [K8S_WATCH_ERROR] = "ERROR",
};

const char *k8s_watch_event_type_name(K8sWatchEventType t)
{
        return (unsigned) t < ARRAY_SIZE(type_names) ? type_names[t] : "?";
}

void k8s_watch_parser_init(K8sWatchParser *p, K8sWatchEventFn fn, void *userdata)
{
        *p = (K8sWatchParser){.fn = fn, .userdata = userdata};
        http_line_splitter_init(&p->lines);
        p->lines.max_line = K8S_WATCH_LINE_MAX;
}

void k8s_watch_parser_done(K8sWatchParser *p)
{
        http_line_splitter_done(&p->lines);
}

static const char *str_member(json_object *o, const char *key)
{
        json_object *v = NULL;
        if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
                return NULL;
        return json_object_get_string(v);
}

static int parse_line(const char *line, size_t len, void *userdata)
{
        K8sWatchParser *p = userdata;
        if (len > INT32_MAX)
                return -E2BIG;

        json_tokener *tok = json_tokener_new_ex(K8S_JSON_DEPTH);
        if (!tok)
                return -ENOMEM;
        json_object *o = json_tokener_parse_ex(tok, line, (int) len);
        int r = -EBADMSG;
        if (!o || json_tokener_get_error(tok) != json_tokener_success)
                goto out;
        /* Whitespace may trail the object, nothing else. */
        for (size_t i = json_tokener_get_parse_end(tok); i < len; i++)
                if (!strchr(" \t\r", line[i]))
                        goto out;
        if (!json_object_is_type(o, json_type_object))
                goto out;

        const char *type = str_member(o, "type");
        json_object *obj = NULL;
        if (!type || !json_object_object_get_ex(o, "object", &obj) ||
            !json_object_is_type(obj, json_type_object))
                goto out;

        K8sWatchEvent ev = {.object = obj};
        size_t t = 0;
        while (t < ARRAY_SIZE(type_names) && !streq(type, type_names[t]))
                t++;
        if (t == ARRAY_SIZE(type_names)) {
                /* A newer server's event type: not ours to understand. */
                p->skipped++;
                r = 0;
                goto out;
        }
        ev.type = (K8sWatchEventType) t;
        if (ev.type == K8S_WATCH_ERROR) {
                json_object *code = NULL;
                if (json_object_object_get_ex(obj, "code", &code) &&
                    json_object_is_type(code, json_type_int))
                        ev.code = (long) json_object_get_int64(code);
        } else {
                json_object *meta = NULL;
                if (!json_object_object_get_ex(obj, "metadata", &meta) ||
                    !json_object_is_type(meta, json_type_object))
                        goto out;
                ev.resource_version = str_member(meta, "resourceVersion");
                if (!ev.resource_version || ev.resource_version[0] == '\0')
                        goto out;
        }
        p->events++;
        r = p->fn ? p->fn(&ev, p->userdata) : 0;
out:
        json_object_put(o);
        json_tokener_free(tok);
        return r;
}

int k8s_watch_parser_feed(K8sWatchParser *p, const char *data, size_t len)
{
        return http_line_splitter_feed(&p->lines, data, len, parse_line, p);
}

int k8s_watch_parser_finish(K8sWatchParser *p)
{
        if (p->lines.len == 0)
                return 0;
        /* Whitespace alone at the end is harmless; anything else was cut off. */
        for (size_t i = 0; i < p->lines.len; i++)
                if (!strchr(" \t\r", p->lines.buf[i])) {
                        p->lines.len = 0;
                        return -EPIPE;
                }
        p->lines.len = 0;
        return 0;
}

#include "sandpit/k8s-watch-parser.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>

#include <json-c/json.h>

#include "sandpit/json.h"
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

static int parse_line(const char *line, size_t len, void *userdata)
{
        K8sWatchParser *p = userdata;
        json_object *o = NULL;
        /* Whitespace may trail the object, nothing else. */
        int r = json_parse_strict(line, len, K8S_JSON_DEPTH, &o, NULL);
        if (r < 0)
                return r;
        r = -EBADMSG;
        if (!json_object_is_type(o, json_type_object))
                goto out;

        const char *type = json_str(o, "type");
        json_object *obj = json_obj(o, "object");
        if (!type || !obj)
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
                json_object *code = json_field(obj, "code");
                if (json_object_is_type(code, json_type_int))
                        ev.code = (long) json_object_get_int64(code);
        } else {
                json_object *meta = json_obj(obj, "metadata");
                if (!meta)
                        goto out;
                ev.resource_version = json_str(meta, "resourceVersion");
                if (!ev.resource_version || ev.resource_version[0] == '\0')
                        goto out;
        }
        p->events++;
        r = p->fn ? p->fn(&ev, p->userdata) : 0;
out:
        json_object_put(o);
        return r;
}

int k8s_watch_parser_feed(K8sWatchParser *p, const char *data, size_t len)
{
        return http_line_splitter_feed(&p->lines, data, len, parse_line, p);
}

int k8s_watch_parser_finish(K8sWatchParser *p)
{
        StrBuf *rest = &p->lines.line;
        /* Whitespace alone at the end is harmless; anything else was cut off. */
        for (size_t i = 0; i < rest->len; i++)
                if (!strchr(" \t\r", rest->data[i])) {
                        rest->len = 0;
                        return -EPIPE;
                }
        rest->len = 0;
        return 0;
}

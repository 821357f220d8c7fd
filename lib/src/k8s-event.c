#include "sandpit/k8s-event.h"

#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>

#include "sandpit/json.h"
#include "sandpit/k8s-lease.h"
#include "sandpit/macro.h"
#include "sandpit/util.h"

static const K8sResource events_resource = {"events.k8s.io", "v1", "events", true};

static int add_str(json_object *o, const char *key, const char *value, size_t len)
{
        if (!value)
                return 0;
        json_object *s = json_object_new_string_len(value, (int) len);
        if (!s || json_object_object_add(o, key, s) < 0) {
                json_object_put(s);
                return -ENOMEM;
        }
        return 0;
}

#define ADD(o, k, v)                                               \
        do {                                                       \
                const char *v_ = (v);                              \
                if (v_ && add_str((o), (k), v_, strlen(v_)) < 0) { \
                        r = -ENOMEM;                               \
                        goto fail;                                 \
                }                                                  \
        } while (0)

/* The Event's name, as client-go's recorders make it: "<object>.<hex time>",
 * a DNS subdomain when the object's name is one (a generateName of
 * "<object>." would end in a dot, which the API server refuses). The time is
 * in nanoseconds; a process-wide counter in its low digits keeps two Events
 * built in the same microsecond apart. */
enum { EVENT_OBJECT_NAME_MAX = 236 }; /* 253 - "." - 16 hex digits */

static void event_name(const char *object, char *buf, size_t len)
{
        static atomic_uint seq;
        uint64_t ns = now_realtime_us() * 1000 + (atomic_fetch_add(&seq, 1) % 1000);
        (void) snprintf(buf, len, "%.*s.%" PRIx64, EVENT_OBJECT_NAME_MAX, object, ns);
}

/* MicroTime: RFC 3339 with microseconds, UTC. */
static void micro_time(char *buf, size_t len)
{
        k8s_format_microtime(now_realtime_us(), buf, len);
}

int k8s_event_build(json_object *regarding, const K8sEventInfo *info, json_object **ret)
{
        if (!regarding || !info || !ret || !info->type || !info->reason ||
            !info->reporting_controller || !info->reporting_instance ||
            (!streq(info->type, "Normal") && !streq(info->type, "Warning")))
                return -EINVAL;
        const char *name = k8s_obj_name(regarding);
        const char *ns = k8s_obj_namespace(regarding);
        const char *api_version = json_str(regarding, "apiVersion");
        const char *kind = json_str(regarding, "kind");
        if (!name || !api_version || !kind)
                return -EINVAL;

        json_object *ev = json_object_new_object();
        json_object *meta = json_object_new_object();
        json_object *ref = json_object_new_object();
        int r = 0;
        if (!ev || !meta || !ref) {
                json_object_put(meta);
                json_object_put(ref);
                r = -ENOMEM;
                goto fail;
        }
        (void) json_object_object_add(ev, "metadata", meta);
        (void) json_object_object_add(ev, "regarding", ref);

        char ev_name[300], t[48];
        event_name(name, ev_name, sizeof(ev_name));
        micro_time(t, sizeof(t));
        ADD(ev, "apiVersion", "events.k8s.io/v1");
        ADD(ev, "kind", "Event");
        ADD(meta, "name", ev_name);
        ADD(meta, "namespace", ns && ns[0] ? ns : "default");
        ADD(ref, "apiVersion", api_version);
        ADD(ref, "kind", kind);
        ADD(ref, "namespace", ns && ns[0] ? ns : NULL);
        ADD(ref, "name", name);
        ADD(ref, "uid", k8s_obj_uid(regarding));
        ADD(ref, "resourceVersion", k8s_obj_resource_version(regarding));
        ADD(ev, "eventTime", t);
        ADD(ev, "type", info->type);
        ADD(ev, "reason", info->reason);
        ADD(ev, "action", info->action ? info->action : info->reason);
        ADD(ev, "reportingController", info->reporting_controller);
        ADD(ev, "reportingInstance", info->reporting_instance);
        if (info->note) {
                size_t n = strlen(info->note);
                if (n > K8S_EVENT_NOTE_MAX) {
                        bool valid = true;
                        n = utf8_complete_prefix((const uint8_t *) info->note, K8S_EVENT_NOTE_MAX,
                                                 &valid);
                }
                if (add_str(ev, "note", info->note, n) < 0) {
                        r = -ENOMEM;
                        goto fail;
                }
        }
        *ret = ev;
        return 0;
fail:
        json_object_put(ev);
        return r;
}

int k8s_event_post(K8sClient *c, json_object *regarding, const K8sEventInfo *info,
                   json_object **ret, K8sError *err)
{
        json_object *ev = NULL;
        int r = k8s_event_build(regarding, info, &ev);
        if (r < 0)
                return r;
        r = k8s_create(c, &events_resource, k8s_obj_namespace(ev), ev, ret, err);
        json_object_put(ev);
        return r;
}

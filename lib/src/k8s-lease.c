/* Lease helpers (see sandpit/k8s-lease.h). */
#include "sandpit/k8s-lease.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sandpit/json.h"
#include "sandpit/macro.h"

const K8sResource k8s_leases = {"coordination.k8s.io", "v1", "leases", true};

void k8s_format_microtime(uint64_t us, char *buf, size_t len)
{
        time_t s = (time_t) (us / 1000000u);
        struct tm tm;
        (void) gmtime_r(&s, &tm);
        char date[K8S_MICROTIME_MAX];
        (void) strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%S", &tm);
        (void) snprintf(buf, len, "%s.%06uZ", date, (unsigned) (us % 1000000u));
}

void k8s_lease_record_done(K8sLeaseRecord *rec)
{
        free(rec->holder);
        free(rec->acquire_time);
        free(rec->renew_time);
        *rec = (K8sLeaseRecord){0};
}

static int dup_str(json_object *spec, const char *key, char **ret)
{
        *ret = strdup(json_str(spec, key) ?: "");
        return *ret ? 0 : -ENOMEM;
}

static long get_long(json_object *spec, const char *key)
{
        json_object *v = json_field(spec, key);
        return json_object_is_type(v, json_type_int) ? (long) json_object_get_int64(v) : 0;
}

int k8s_lease_record_from_json(json_object *lease, K8sLeaseRecord *ret)
{
        json_object *spec = json_obj(lease, "spec");
        K8sLeaseRecord rec = {.duration_s = get_long(spec, "leaseDurationSeconds"),
                              .transitions = get_long(spec, "leaseTransitions")};
        if (dup_str(spec, "holderIdentity", &rec.holder) < 0 ||
            dup_str(spec, "acquireTime", &rec.acquire_time) < 0 ||
            dup_str(spec, "renewTime", &rec.renew_time) < 0) {
                k8s_lease_record_done(&rec);
                return -ENOMEM;
        }
        *ret = rec;
        return 0;
}

static void put_time(json_object *spec, const char *key, const char *value)
{
        if (value && *value)
                (void) json_object_object_add(spec, key, json_object_new_string(value));
        else
                json_object_object_del(spec, key);
}

int k8s_lease_record_to_json(const K8sLeaseRecord *rec, json_object *lease)
{
        json_object *spec = NULL;
        if (!json_object_object_get_ex(lease, "spec", &spec) ||
            !json_object_is_type(spec, json_type_object)) {
                spec = json_object_new_object();
                if (!spec || json_object_object_add(lease, "spec", spec) < 0)
                        return -ENOMEM;
        }
        (void) json_object_object_add(spec, "holderIdentity",
                                      json_object_new_string(rec->holder ? rec->holder : ""));
        (void) json_object_object_add(spec, "leaseDurationSeconds",
                                      json_object_new_int((int32_t) rec->duration_s));
        put_time(spec, "acquireTime", rec->acquire_time);
        put_time(spec, "renewTime", rec->renew_time);
        (void) json_object_object_add(spec, "leaseTransitions",
                                      json_object_new_int((int32_t) rec->transitions));
        return 0;
}

static bool str_eq(const char *a, const char *b)
{
        return streq(a ? a : "", b ? b : "");
}

bool k8s_lease_record_equal(const K8sLeaseRecord *a, const K8sLeaseRecord *b)
{
        return str_eq(a->holder, b->holder) && a->duration_s == b->duration_s &&
               str_eq(a->acquire_time, b->acquire_time) && str_eq(a->renew_time, b->renew_time) &&
               a->transitions == b->transitions;
}

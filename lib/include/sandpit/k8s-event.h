/* Events (events.k8s.io/v1) about an object, for `kubectl describe` and
 * `kubectl events`: what a user should see about what happened to it. */
#pragma once

#include <json-c/json.h>

#include "sandpit/k8s-client.h"

/* The API refuses longer notes. */
#define K8S_EVENT_NOTE_MAX 1024

typedef struct {
        const char *type;   /* "Normal" or "Warning" */
        const char *reason; /* CamelCase: "Scheduled", "NoAgentWithRoom" */
        const char *action; /* what was done: "Schedule"; NULL: reason */
        const char *note;   /* for people; cut at K8S_EVENT_NOTE_MAX bytes (UTF-8 safe) */
        const char *reporting_controller; /* "sandpit.dev/operator" */
        const char *reporting_instance;   /* this replica, e.g. its pod name */
} K8sEventInfo;

/* Builds the Event (k8s_event_build) and creates it in the object's namespace
 * ("default" for a cluster-scoped object). regarding is borrowed. */
int k8s_event_post(K8sClient *c, json_object *regarding, const K8sEventInfo *info,
                   json_object **ret, K8sError *err);
/* The Event object, regarding obj (its apiVersion, kind, namespace, name, uid,
 * resourceVersion), eventTime now. -EINVAL for a missing field or a type
 * other than Normal/Warning. */
int k8s_event_build(json_object *regarding, const K8sEventInfo *info, json_object **ret);

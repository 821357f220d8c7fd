/* The cluster backend's mapping (docs/gateway.md, cluster mode): the agent's
 * create body that gw_e2b_create_to_agent() writes into a Sandbox object
 * (sandpit.dev/v1alpha1, crds/), and a Sandbox object back into the agent's
 * sandbox object that e2b-api turns into E2B's views. Pure: no I/O. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#include "mcp.h"

/* Gateway-made Sandboxes carry this label (kubectl get sbx -l ...). */
#define GW_CLUSTER_LABEL_CREATED_BY "sandpit.dev/created-by"
#define GW_CLUSTER_CREATED_BY       "e2b-gateway"
/* An MCP session's own sandbox (mcp.h's MCP_LABEL_SESSION): kept as a label
 * of the Sandbox object, not in spec.labels (the operator drops those under
 * sandpit.dev/), so kubectl get sbx -l sandpit.dev/mcp-session=ID finds it. */
#define GW_CLUSTER_LABEL_MCP_SESSION MCP_LABEL_SESSION
/* What the agent's labels say under sandpit.dev/ (the E2B templateID as sent,
 * and that envd traffic needs the access token) is kept in these
 * annotations: the operator drops spec.labels under sandpit.dev/. */
#define GW_CLUSTER_ANN_TEMPLATE "sandpit.dev/e2b-template"
#define GW_CLUSTER_ANN_SECURE   "sandpit.dev/e2b-secure"
/* The Secret holding a sandbox's access token: this prefix and its name. */
#define GW_CLUSTER_TOKEN_SECRET_PREFIX "e2b-token-"
/* spec.timeout's upper bound (the CRD's 168h). */
#define GW_CLUSTER_TIMEOUT_MAX_S 604800u /* 168h */

/* The Sandbox object for agent_req (template, timeout, labels, env,
 * network), named name in namespace ns; the label GW_CLUSTER_LABEL_MCP_SESSION
 * becomes a label of the object. -EINVAL or -EOPNOTSUPP with a
 * message in err for what a Sandbox cannot hold (a template name that is not
 * a DNS label, a deny list, a field the mapping does not know). */
int gw_cluster_sandbox_new(json_object *agent_req, const char *ns, const char *name,
                           json_object **ret, char *err, size_t errlen);

/* Sandbox sbx as the agent's sandbox object: id (the name), template, state
 * ("running", "paused", "creating" while Pending, "deleting" once deletion
 * began, else the phase in lower case), labels (spec.labels and the
 * annotations above as sandpit.dev/ labels), created_at, started_at,
 * expires_at, cpu, memory, disk, network; and, for the backend, node and
 * agent_id (status.nodeName and status.sandboxID) when placed. The label
 * GW_CLUSTER_LABEL_MCP_SESSION of the object is one of the labels. */
int gw_cluster_sandbox_view(json_object *sbx, json_object **ret);

/* spec.timeout ("Ns") that makes sbx expire timeout_s after now_us: its
 * lifetime counts from its creation on its node (status.expiresAt minus the
 * current spec.timeout; else status.startedAt; else its creationTimestamp).
 * -EINVAL with err when that is over GW_CLUSTER_TIMEOUT_MAX_S. */
int gw_cluster_timeout_for(json_object *sbx, uint64_t now_us, uint64_t timeout_s, char *buf,
                           size_t len, char *err, size_t errlen);

/* Where a create stands: 1 ready (Running, or Paused), 0 not yet (err says
 * why, for a timeout's message), < 0 it will not be (err says why): -EINVAL
 * when the spec was refused (InvalidTemplate, InvalidSpec, CreateFailed,
 * ImagePullFailed),
 * -EIO for any other failure, -ECANCELED when it is being deleted. */
int gw_cluster_ready(json_object *sbx, char *err, size_t errlen);

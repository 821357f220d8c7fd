/* libFuzzer harness for the gateway's cluster mapping (cluster-map.c): the
 * bytes, when they parse as JSON, are an agent create body turned into a
 * Sandbox object, and a Sandbox object (as the API server or a kubectl user
 * may write it) turned into the agent's view and E2B's views, asked where a
 * create stands and what spec.timeout a setTimeout would write. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "cluster-map.h"
#include "e2b-api.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        char *s = malloc(size + 1);
        if (!s)
                return 0;
        memcpy(s, data, size);
        s[size] = 0;
        json_object *o = json_tokener_parse(s);
        free(s);
        if (!o)
                return 0;
        char err[256], t[32];
        json_object *out = NULL;
        if (json_object_is_type(o, json_type_object) &&
            gw_cluster_sandbox_new(o, "ns", "name", &out, err, sizeof(err)) == 0)
                json_object_put(out);
        out = NULL;
        if (gw_cluster_sandbox_view(o, &out) == 0) {
                for (int v = GW_E2B_VIEW_SANDBOX; v <= GW_E2B_VIEW_DETAIL; v++) {
                        json_object *e2b = NULL;
                        if (gw_e2b_sandbox_from_agent(out, (GwE2bView) v, NULL, "tok", &e2b) == 0)
                                json_object_put(e2b);
                }
                json_object_put(out);
        }
        (void) gw_cluster_ready(o, err, sizeof(err));
        (void) gw_cluster_timeout_for(o, 1800000000000000u, 300, t, sizeof(t), err, sizeof(err));
        json_object_put(o);
        return 0;
}

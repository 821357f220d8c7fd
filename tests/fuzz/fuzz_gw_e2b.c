/* libFuzzer harness for the gateway's E2B control-plane JSON: the bytes, when
 * they parse as JSON, are a create body (v1 and v2, with and without sandbox
 * networking) turned into the agent's body, an agent sandbox turned into every
 * E2B view, an agent list paged through, agent metrics, and the
 * timeout/connect/pause bodies; as a string they are list query parameters. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "e2b-api.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void create(json_object *o, bool v1, const GwE2bConfig *cfg)
{
        GwE2bCreate c;
        char err[256];
        if (gw_e2b_create_parse(o, v1, cfg, &c, err, sizeof(err)) != 0)
                return;
        json_object *agent = NULL;
        if (gw_e2b_create_to_agent(&c, &agent, err, sizeof(err)) == 0)
                json_object_put(agent);
        gw_e2b_create_done(&c);
}

static void page_all(json_object *list, const GwE2bListParams *p)
{
        GwE2bListQuery q;
        char err[256];
        if (gw_e2b_list_query_parse(p, true, &q, err, sizeof(err)) != 0)
                return;
        json_object *page = NULL;
        char *next = NULL;
        if (gw_e2b_list_page(list, &q, NULL, &page, &next) == 0) {
                json_object_put(page);
                free(next);
        }
        gw_e2b_list_query_done(&q);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        json_tokener *tok = json_tokener_new();
        json_object *o = json_tokener_parse_ex(tok, (const char *) data, (int) size);
        json_tokener_free(tok);
        if (o) {
                const GwE2bConfig net = {.internet = true, .domain = "sbx.example.com"};
                create(o, false, &net);
                create(o, true, NULL);
                for (int v = GW_E2B_VIEW_SANDBOX; v <= GW_E2B_VIEW_DETAIL; v++) {
                        json_object *e = NULL;
                        if (gw_e2b_sandbox_from_agent(o, (GwE2bView) v, &net, "tok", &e) == 0)
                                json_object_put(e);
                }
                page_all(o, &(GwE2bListParams){.limit = "1"});
                page_all(o, &(GwE2bListParams){.order = "desc", .metadata = "a=b"});
                json_object *m = NULL;
                if (gw_e2b_metrics_from_agent(o, &m) == 0)
                        json_object_put(m);
                char err[256];
                uint64_t s;
                (void) gw_e2b_timeout_body_parse(o, &s, err, sizeof(err));
                (void) gw_e2b_connect_body_parse(o, &s, err, sizeof(err));
                (void) gw_e2b_pause_body_parse(o, err, sizeof(err));
                json_object_put(o);
        }
        char *s = malloc(size + 1);
        if (!s)
                return 0;
        memcpy(s, data, size);
        s[size] = 0;
        json_object *empty = json_object_new_array();
        page_all(empty, &(GwE2bListParams){.metadata = s});
        page_all(empty, &(GwE2bListParams){.next_token = s});
        page_all(empty, &(GwE2bListParams){.state = s, .limit = s});
        page_all(empty, &(GwE2bListParams){.started_after = s, .order = s});
        json_object_put(empty);
        free(s);
        return 0;
}

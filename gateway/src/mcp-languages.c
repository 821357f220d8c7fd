/* Which languages run_code can use (mcp-internal.h): what the node's GET
 * /v1/info says each template lists (template_languages). Only a backend
 * whose ids are the agent's own (the local backend: one agent) is asked; a
 * cluster's nodes may differ and its backend has no one node to ask, so
 * there every language stays offered and the agent's 400 says what a
 * sandbox lacks. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "mcp-internal.h"
#include "sandpit/json.h"
#include "sandpit/macro.h"
#include "sandpit/strbuf.h"
#include "sandpit/util.h"

/* run_code's languages, in the order its schema lists them. */
static const char *const all_languages[] = {"python", "javascript", "typescript",
                                            "r",      "java",       "bash"};

int mcp_node_info(const McpConfig *cfg, json_object **ret)
{
        const GwBackend *b = cfg->node_backend ? cfg->node_backend : cfg->backend;
        if (b->ops->agent_id)
                return -EOPNOTSUPP;
        char err[256] = "";
        cleanup_agent_client AgentClient *a = NULL;
        /* The local backend's client is its one agent's, whatever the id. */
        int r = b->ops->agent(b->data, "", &a, err, sizeof(err));
        if (r < 0)
                return r;
        agent_client_set_timeout(a, 5000);
        json_object *info = NULL;
        r = agent_client_info(a, &info);
        if (r < 0)
                return r;
        if (!json_object_is_type(json_field(info, "template_languages"), json_type_object) ||
            !json_object_is_type(json_field(info, "templates"), json_type_array)) {
                json_object_put(info);
                return -EOPNOTSUPP; /* an agent from before template_languages */
        }
        *ret = info;
        return 0;
}

json_object *mcp_template_languages(json_object *info, const char *tmpl)
{
        json_object *l = json_field(json_obj(info, "template_languages"), tmpl);
        return json_object_is_type(l, json_type_array) ? l : NULL;
}

bool mcp_language_listed(json_object *langs, const char *lang)
{
        if (!langs)
                return true;
        for (size_t i = 0; i < json_object_array_length(langs); i++)
                if (streq_ptr(json_object_get_string(json_object_array_get_idx(langs, i)), lang))
                        return true;
        return false;
}

static int put(StrBuf *b, const char *s)
{
        return strbuf_append(b, s, strlen(s), MCP_TEXT_MAX);
}

static int put_list(StrBuf *b, json_object *langs)
{
        int r = 0;
        for (size_t i = 0; r == 0 && i < json_object_array_length(langs); i++) {
                r = i ? put(b, ", ") : 0;
                r = r < 0 ? r : put(b, json_object_get_string(json_object_array_get_idx(langs, i)));
        }
        if (r == 0 && json_object_array_length(langs) == 0)
                r = put(b, "none");
        return r;
}

int mcp_languages_text(json_object *info, char **ret)
{
        StrBuf b = {0};
        int r = 0;
        json_object *tpls = json_field(info, "templates");
        for (size_t i = 0; r == 0 && i < json_object_array_length(tpls); i++) {
                const char *t = json_object_get_string(json_object_array_get_idx(tpls, i));
                json_object *l = mcp_template_languages(info, t);
                r = i ? put(&b, "; ") : 0;
                r = r < 0 ? r : put(&b, t);
                r = r < 0 ? r : put(&b, ": ");
                r = r < 0 ? r : (l ? put_list(&b, l) : put(&b, "any (not listed: tried)"));
        }
        if (r == 0 && b.len == 0)
                r = put(&b, "no templates");
        if (r < 0) {
                strbuf_done(&b);
                return r;
        }
        *ret = TAKE_PTR(b.data);
        return 0;
}

int mcp_run_code_view(json_object *info, const char *session_template, json_object *tool)
{
        /* The enum: the union over the node's templates, every language
         * when one of them does not list its own. */
        json_object *tpls = json_field(info, "templates"), *en = json_object_new_array();
        if (!en)
                return -ENOMEM;
        for (size_t k = 0; k < ARRAY_SIZE(all_languages); k++) {
                bool any = false;
                for (size_t i = 0; !any && i < json_object_array_length(tpls); i++)
                        any = mcp_language_listed(
                                mcp_template_languages(
                                        info,
                                        json_object_get_string(json_object_array_get_idx(tpls, i))),
                                all_languages[k]);
                if (any &&
                    json_object_array_add(en, json_object_new_string(all_languages[k])) < 0) {
                        json_object_put(en);
                        return -ENOMEM;
                }
        }
        json_object *lang =
                json_obj(json_obj(json_obj(tool, "inputSchema"), "properties"), "language");
        if (lang && json_object_array_length(en) > 0)
                json_object_object_add(lang, "enum", en);
        else
                json_object_put(en);

        cleanup_free char *all = NULL, *desc = NULL;
        int r = mcp_languages_text(info, &all);
        if (r < 0)
                return r;
        json_object *mine = mcp_template_languages(info, session_template);
        StrBuf b = {0};
        r = put(&b, json_str(tool, "description") ?: "");
        r = r < 0 ? r : put(&b, " Languages by template on this node: ");
        r = r < 0 ? r : put(&b, all);
        r = r < 0 ? r : put(&b, ". This session's sandbox (template ");
        r = r < 0 ? r : put(&b, session_template);
        r = r < 0 ? r : put(&b, ") runs ");
        r = r < 0 ? r : (mine ? put_list(&b, mine) : put(&b, "any of them"));
        r = r < 0 ? r : put(&b, ".");
        if (r < 0) {
                strbuf_done(&b);
                return r;
        }
        desc = TAKE_PTR(b.data);
        json_object_object_add(tool, "description", json_object_new_string(desc));
        return 0;
}

/* HTTP routes of the code interpreter (docs/agent-api.md, "Code"):
 *   POST   /v1/sandboxes/{id}/code                    run code, NDJSON events
 *   GET    /v1/sandboxes/{id}/contexts                list
 *   POST   /v1/sandboxes/{id}/contexts                create {language, cwd}
 *   DELETE /v1/sandboxes/{id}/contexts/{ctx}          remove
 *   POST   /v1/sandboxes/{id}/contexts/{ctx}/restart  restart */
#include "api-code.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "code.h"
#include "sandpit/json.h"
#include "sandpit/macro.h"
#include "sandpit/util.h"
#include "secrets.h"

static const HttpStreamOps code_stream_ops = {
        .read = code_run_read,
        .destroy = code_run_free,
};

static int parse_language(json_object *v, const char **ret, char *err, size_t errlen)
{
        const char *lang = json_object_is_type(v, json_type_string)
                                   ? code_language_normalize(json_object_get_string(v))
                                   : NULL;
        if (!lang) {
                const char *s = json_object_is_type(v, json_type_string) ? json_object_get_string(v)
                                                                         : "(not a string)";
                (void) snprintf(err, errlen,
                                "unknown language \"%.32s\": use python, javascript (js), "
                                "typescript (ts), r, java or bash",
                                s);
                return -EINVAL;
        }
        *ret = lang;
        return 0;
}

static int parse_run(json_object *body, CodeRunRequest *ret, char *err, size_t errlen)
{
        CodeRunRequest r = {0};
        json_object_object_foreach(body, key, val) {
                if (streq(key, "code")) {
                        if (!json_object_is_type(val, json_type_string)) {
                                (void) snprintf(err, errlen, "code must be a string");
                                return -EINVAL;
                        }
                        r.code = json_object_get_string(val);
                } else if (streq(key, "language")) {
                        if (parse_language(val, &r.language, err, errlen) < 0)
                                return -EINVAL;
                } else if (streq(key, "context")) {
                        if (!json_object_is_type(val, json_type_string) ||
                            !id_is_valid(json_object_get_string(val))) {
                                (void) snprintf(err, errlen, "context must be a context id");
                                return -EINVAL;
                        }
                        r.context = json_object_get_string(val);
                } else if (streq(key, "env")) {
                        if (!json_object_is_type(val, json_type_object)) {
                                (void) snprintf(err, errlen, "env must be an object of strings");
                                return -EINVAL;
                        }
                        json_object_object_foreach(val, ek, ev) {
                                if (!json_object_is_type(ev, json_type_string) || !*ek ||
                                    strchr(ek, '=')) {
                                        (void) snprintf(err, errlen,
                                                        "env %.64s: names must be non-empty "
                                                        "without '=' and values strings",
                                                        ek);
                                        return -EINVAL;
                                }
                        }
                        r.env = val;
                } else if (streq(key, "secret_env")) {
                        /* Validated like an exec's; the values go to the kernel
                         * only in this run's request line. */
                        char **senv = NULL, **snames = NULL;
                        int q = secrets_from_json(val, key, &senv, &snames, err, errlen);
                        secret_strv_free(senv);
                        strv_free(snames);
                        if (q < 0)
                                return q;
                        r.secret_env = val;
                } else if (streq(key, "timeout")) {
                        if (json_timeout_ms(val, false, &r.timeout_ms) < 0) {
                                (void) snprintf(err, errlen,
                                                "timeout must be a number of seconds > 0 and <= "
                                                "%d",
                                                TIMEOUT_MAX_S);
                                return -EINVAL;
                        }
                } else {
                        (void) snprintf(err, errlen, "unknown field \"%.64s\"", key);
                        return -EINVAL;
                }
        }
        if (!r.code) {
                (void) snprintf(err, errlen, "code is required");
                return -EINVAL;
        }
        if (r.language && r.context) {
                (void) snprintf(err, errlen,
                                "give language (its default context) or context, not both");
                return -EINVAL;
        }
        if (r.env && r.secret_env) {
                json_object_object_foreach(r.secret_env, sk, sv) {
                        (void) sv;
                        if (json_object_object_get_ex(r.env, sk, NULL)) {
                                (void) snprintf(err, errlen, "%.64s is in both env and secret_env",
                                                sk);
                                return -EINVAL;
                        }
                }
        }
        if (!r.context && !r.language)
                r.language = "python";
        *ret = r;
        return 0;
}

void api_code_handle(Agent *a, HttpRequest *req, const char *id, const char *rest)
{
        if (*rest) {
                http_respond_error(req, 404, "no such route");
                return;
        }
        if (!streq(http_request_method(req), "POST")) {
                http_respond_error(req, 405, "use POST");
                return;
        }
        cleanup_json json_object *body = NULL;
        if (http_request_parse_json(req, &body) < 0)
                return;
        char err[512] = "";
        CodeRunRequest run_req;
        if (parse_run(body, &run_req, err, sizeof(err)) < 0) {
                http_respond_error(req, 400, "%s", err);
                return;
        }
        SandboxExecInfo info;
        if (api_exec_info_or_respond(a, req, id, &info) < 0)
                return;
        CodeRun *run = NULL;
        int r = code_run_start(a, &info, &run_req, &run, err, sizeof(err));
        sandbox_exec_info_done(&info);
        if (r < 0) {
                api_respond_errno(req, r, err, "cannot run code");
                return;
        }
        http_respond_stream(req, 200, "application/x-ndjson", &code_stream_ops, run);
}

static void handle_create(Agent *a, HttpRequest *req, const char *id)
{
        cleanup_json json_object *body = NULL;
        if (http_request_parse_json(req, &body) < 0)
                return;
        char err[512] = "";
        const char *lang = "python", *cwd = NULL;
        int r = 0;
        json_object_object_foreach(body, key, val) {
                if (streq(key, "language")) {
                        r = parse_language(val, &lang, err, sizeof(err));
                } else if (streq(key, "cwd")) {
                        if (!json_object_is_type(val, json_type_string) ||
                            json_object_get_string(val)[0] != '/') {
                                (void) snprintf(err, sizeof(err), "cwd must be an absolute path");
                                r = -EINVAL;
                        } else {
                                cwd = json_object_get_string(val);
                        }
                } else {
                        (void) snprintf(err, sizeof(err), "unknown field \"%.64s\"", key);
                        r = -EINVAL;
                }
                if (r < 0)
                        break;
        }
        SandboxExecInfo info;
        if (r < 0) {
                http_respond_error(req, 400, "%s", err);
        } else if (api_exec_info_or_respond(a, req, id, &info) == 0) {
                json_object *o = NULL;
                r = code_context_create(a, &info, lang, cwd, &o, err, sizeof(err));
                sandbox_exec_info_done(&info);
                if (r < 0)
                        api_respond_errno(req, r, err, "cannot create the context");
                else
                        http_respond_json(req, 201, o);
        }
}

void api_contexts_handle(Agent *a, HttpRequest *req, const char *id, const char *rest)
{
        const char *method = http_request_method(req);
        SandboxExecInfo info;
        if (!*rest || streq(rest, "/")) {
                if (streq(method, "POST")) {
                        handle_create(a, req, id);
                        return;
                }
                if (!streq(method, "GET")) {
                        http_respond_error(req, 405, "use GET or POST");
                        return;
                }
                if (api_exec_info_or_respond(a, req, id, &info) < 0)
                        return;
                sandbox_exec_info_done(&info);
                json_object *arr = NULL;
                int r = code_context_list(id, &arr);
                if (r < 0) {
                        api_respond_errno(req, r, NULL, "cannot list the contexts");
                        return;
                }
                json_object *o = json_object_new_object();
                (void) json_object_object_add(o, "contexts", arr);
                http_respond_json(req, 200, o);
                return;
        }
        /* "/{ctx}" or "/{ctx}/restart" */
        char ctx[80];
        const char *p = rest + 1, *slash = strchr(p, '/');
        size_t n = slash ? (size_t) (slash - p) : strlen(p);
        const char *action = slash ? slash + 1 : "";
        if (n == 0 || n >= sizeof(ctx) || (*action && !streq(action, "restart"))) {
                http_respond_error(req, 404, "no such route");
                return;
        }
        memcpy(ctx, p, n);
        ctx[n] = 0;
        bool restart = streq(action, "restart");
        if (!streq(method, restart ? "POST" : "DELETE")) {
                http_respond_error(req, 405, "use %s", restart ? "POST" : "DELETE");
                return;
        }
        if (api_exec_info_or_respond(a, req, id, &info) < 0)
                return;
        char err[512] = "";
        int r = 0;
        json_object *o = NULL;
        if (!id_is_valid(ctx))
                r = -ENOENT;
        else if (restart)
                r = code_context_restart(a, &info, ctx, &o, err, sizeof(err));
        else
                r = code_context_remove(id, ctx);
        sandbox_exec_info_done(&info);
        if (r == -ENOENT)
                http_respond_error(req, 404, "context %s not found in sandbox %s", ctx, id);
        else if (r < 0)
                api_respond_errno(req, r, err, "cannot restart the context");
        else if (restart)
                http_respond_json(req, 200, o);
        else
                http_respond_empty(req, 204);
}

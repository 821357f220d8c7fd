/* The agent's native HTTP API (docs/agent-api.md): routing and the mapping
 * of requests onto the sandbox and exec modules. */
#include "api.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api-build.h"
#include "api-code.h"
#include "api-files.h"
#include "api-images.h"
#include "api-internal.h"
#include "api-metrics.h"
#include "api-net.h"
#include "api-pause.h"
#include "api-pool.h"
#include "exec.h"
#include "initproto.h"
#include "metrics.h"
#include "pool.h"
#include "sandbox.h"
#include "sandpit/log.h"
#include "sandpit/macro.h"
#include "sandpit/util.h"
#include "template.h"

/* Splits "/v1/sandboxes/ID/processes/PID/stream" into at most max segments. */
static size_t split_path(char *path, char **seg, size_t max)
{
        size_t n = 0;
        for (char *save = NULL, *t = strtok_r(path, "/", &save); t;
             t = strtok_r(NULL, "/", &save)) {
                if (n == max)
                        return max + 1;
                seg[n++] = t;
        }
        return n;
}

void api_respond_errno(HttpRequest *req, int r, const char *err, const char *what)
{
        if (err && *err)
                http_respond_errno(req, r, "%s", err);
        else
                http_respond_errno(req, r, "%s: %s", what, strerror(-r));
}

void api_sandbox_not_found(HttpRequest *req, const char *id)
{
        http_respond_error(req, 404, "sandbox %s not found", id);
}

static void handle_create(Agent *a, HttpRequest *req)
{
        cleanup_json json_object *body = NULL;
        if (http_request_parse_json(req, &body) < 0)
                return;
        char err[512] = "";
        SandboxSpec spec;
        int r = sandbox_spec_from_json(body, &spec, err, sizeof(err));
        if (r < 0) {
                api_respond_errno(req, r, err, "invalid sandbox");
                return;
        }
        if ((r = sandbox_spec_runtime(a, &spec, err, sizeof(err))) < 0) {
                sandbox_spec_done(&spec);
                api_respond_errno(req, r, err, "invalid sandbox");
                return;
        }
        json_object *obj = NULL;
        uint64_t t0 = now_monotonic_us();
        /* A pooled sandbox never runs a start command (sandbox.c): cold. */
        r = spec.start_cmd ? -ENOENT : pool_claim(a, &spec, &obj, err, sizeof(err));
        if (r == -ENOENT) { /* no warm pool of this shape has one ready: cold */
                r = sandbox_create(a, &spec, &obj, err, sizeof(err));
                pool_kick(a); /* less room: pools may give some back */
        }
        metrics_note_create(a->metrics, r >= 0, (double) (now_monotonic_us() - t0) / 1e6);
        if (r < 0) {
                api_respond_errno(req, r, err, "cannot create sandbox");
                return;
        }
        http_respond_json(req, 201, obj);
}

static void handle_list(Agent *a, HttpRequest *req)
{
        cleanup_strv char **sel = NULL;
        int r = http_request_query_all(req, "label", &sel);
        if (r < 0) {
                api_respond_errno(req, r, NULL, "cannot list");
                return;
        }
        STRV_FOREACH(s, sel)
                if (!strchr(*s, '=')) {
                        http_respond_error(req, 400,
                                           "label filter must be KEY=VALUE, got \"%.64s\"", *s);
                        return;
                }
        json_object *arr = NULL;
        if ((r = sandbox_list_json(a, sel, &arr)) < 0) {
                api_respond_errno(req, r, NULL, "cannot list");
                return;
        }
        json_object *o = json_object_new_object();
        (void) json_object_object_add(o, "sandboxes", arr);
        http_respond_json(req, 200, o);
}

static void handle_timeout(Agent *a, HttpRequest *req, const char *id, const char *rest)
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
        json_object *t = NULL;
        if (http_request_parse_json(req, &body) < 0)
                return;
        uint64_t ms = 0;
        bool ok = json_object_object_get_ex(body, "timeout", &t) &&
                  json_timeout_ms(t, true, &ms) == 0 && json_object_object_length(body) == 1;
        if (!ok) {
                http_respond_error(req, 400,
                                   "body must be {\"timeout\": SECONDS} with 1 <= SECONDS <= %d",
                                   TIMEOUT_MAX_S);
                return;
        }
        json_object *obj = NULL;
        int r = sandbox_set_timeout(a, id, ms / 1000, &obj);
        if (r == -ENOENT)
                api_sandbox_not_found(req, id);
        else if (r < 0)
                api_respond_errno(req, r, NULL, "cannot set timeout");
        else
                http_respond_json(req, 200, obj);
}

static const HttpStreamOps exec_stream_ops = {
        .read = exec_stream_read,
        .destroy = exec_stream_free,
};

int api_exec_info_or_respond(Agent *a, HttpRequest *req, const char *id, SandboxExecInfo *info)
{
        int r = sandbox_exec_info(a, id, info);
        if (r == -ENOENT)
                api_sandbox_not_found(req, id);
        else if (r == -EBUSY && sandbox_is_paused(a, id))
                http_respond_error(req, 409, "sandbox %s is paused: resume it first", id);
        else if (r == -EBUSY)
                http_respond_error(req, 409, "sandbox %s is not running", id);
        else if (r < 0)
                api_respond_errno(req, r, NULL, "cannot reach sandbox");
        return r;
}

static void handle_exec(Agent *a, HttpRequest *req, const char *id)
{
        cleanup_json json_object *body = NULL;
        if (http_request_parse_json(req, &body) < 0)
                return;
        SandboxExecInfo info;
        if (api_exec_info_or_respond(a, req, id, &info) < 0)
                return;
        char err[512] = "";
        ExecRequest er;
        int r = exec_request_from_json(body, &info, &er, err, sizeof(err));
        if (r < 0) {
                sandbox_exec_info_done(&info);
                api_respond_errno(req, r, err, "invalid exec request");
                return;
        }
        CgStats st = {0};
        (void) cg_read_stats(a->cg, info.name, &st);
        int fd = -1;
        uint32_t pid = 0;
        r = exec_spawn(info.socket_path, info.init_pid, &er, &fd, &pid, err, sizeof(err));
        bool background = er.flags & IP_FLAG_BACKGROUND;
        exec_request_done(&er);
        if (r >= 0)
                metrics_note_exec(a->metrics);
        cleanup_free char *cg_name = TAKE_PTR(info.name);
        sandbox_exec_info_done(&info);
        if (r < 0) {
                if (r == -EBUSY)
                        http_respond_error(req, 409, "sandbox %s is not running: %s", id, err);
                else
                        api_respond_errno(req, r, err, "cannot start process");
                return;
        }
        if (background) {
                (void) close(fd); /* init keeps a background process after we hang up */
                json_object *o = json_object_new_object();
                (void) json_object_object_add(o, "pid", json_object_new_int64(pid));
                http_respond_json(req, 201, o);
                return;
        }
        ExecStream *s = NULL;
        r = exec_stream_new(fd, pid, a, cg_name, st.oom_kills, &s);
        if (r < 0) {
                api_respond_errno(req, r, NULL, "cannot stream");
                return;
        }
        http_respond_stream(req, 200, "application/x-ndjson", &exec_stream_ops, s);
}

static int parse_pid(const char *s, uint32_t *ret)
{
        char *end = NULL;
        errno = 0;
        unsigned long v = strtoul(s, &end, 10);
        if (errno || *end || !*s || v == 0 || v > INT32_MAX || s[0] == '-' || s[0] == '+')
                return -EINVAL;
        *ret = (uint32_t) v;
        return 0;
}

static void handle_process(Agent *a, HttpRequest *req, const char *id, const char *pid_s,
                           const char *action)
{
        const char *method = http_request_method(req);
        uint32_t pid;
        if (parse_pid(pid_s, &pid) < 0) {
                http_respond_error(req, 400, "bad process id \"%.32s\"", pid_s);
                return;
        }
        bool stream = streq(action, "stream"), stdin_ = streq(action, "stdin"),
             signal_ = streq(action, "signal"), resize = streq(action, "resize");
        if (!stream && !stdin_ && !signal_ && !resize) {
                http_respond_error(req, 404, "no such route");
                return;
        }
        if (!streq(method, stream ? "GET" : "POST")) {
                http_respond_error(req, 405, "use %s", stream ? "GET" : "POST");
                return;
        }
        cleanup_json json_object *body = NULL;
        if (!stream && http_request_parse_json(req, &body) < 0)
                return;
        SandboxExecInfo info;
        if (api_exec_info_or_respond(a, req, id, &info) < 0)
                return;
        char err[512] = "";
        int r = 0;
        if (stream) {
                CgStats st = {0};
                (void) cg_read_stats(a->cg, info.name, &st);
                ExecStream *s = NULL;
                r = exec_attach(info.socket_path, info.init_pid, pid, a, info.name, st.oom_kills,
                                &s, err, sizeof(err));
                sandbox_exec_info_done(&info);
                if (r == -ESRCH)
                        http_respond_error(req, 404, "process %u not found in sandbox %s", pid, id);
                else if (r < 0)
                        api_respond_errno(req, r, err, "cannot attach");
                else
                        http_respond_stream(req, 200, "application/x-ndjson", &exec_stream_ops, s);
                return;
        }
        if (stdin_) {
                cleanup_free uint8_t *data = NULL;
                size_t len = 0;
                bool eof = false, ok = true;
                json_object_object_foreach(body, key, val) {
                        if (streq(key, "data") && json_object_is_type(val, json_type_string)) {
                                len = (size_t) json_object_get_string_len(val);
                                free(data);
                                data = malloc(len + 1);
                                if (data)
                                        memcpy(data, json_object_get_string(val), len);
                        } else if (streq(key, "data_b64") &&
                                   json_object_is_type(val, json_type_string)) {
                                free(data);
                                data = NULL;
                                ok = base64_decode(json_object_get_string(val), &data, &len) == 0;
                        } else if (streq(key, "eof") &&
                                   json_object_is_type(val, json_type_boolean)) {
                                eof = json_object_get_boolean(val);
                        } else {
                                ok = false;
                        }
                }
                if (!ok)
                        http_respond_error(req, 400,
                                           "body must be {\"data\": STRING} or {\"data_b64\": "
                                           "BASE64} and/or {\"eof\": true}");
                else
                        r = exec_send_stdin(info.socket_path, info.init_pid, pid, data, len, eof,
                                            err, sizeof(err));
        } else if (resize) {
                uint32_t cols = 0, rows = 0;
                r = exec_pty_size_from_json(body, "the body", &cols, &rows, err, sizeof(err));
                if (r == 0)
                        r = exec_resize(info.socket_path, info.init_pid, pid, cols, rows, err,
                                        sizeof(err));
        } else {
                json_object *sig = NULL;
                int signo = -EINVAL;
                if (json_object_object_get_ex(body, "signal", &sig))
                        signo = json_object_is_type(sig, json_type_int)
                                        ? (json_object_get_int(sig) >= 1 &&
                                                           json_object_get_int(sig) <= 64
                                                   ? json_object_get_int(sig)
                                                   : -EINVAL)
                                        : signal_from_string(json_object_get_string(sig));
                if (signo < 0)
                        http_respond_error(req, 400,
                                           "body must be {\"signal\": NAME-OR-NUMBER}, e.g. "
                                           "\"SIGTERM\"");
                else
                        r = exec_signal(info.socket_path, info.init_pid, pid, signo, err,
                                        sizeof(err));
        }
        sandbox_exec_info_done(&info);
        if (r == -ESRCH)
                http_respond_error(req, 404, "process %u not found in sandbox %s", pid, id);
        else if (r < 0)
                api_respond_errno(req, r, err, "process request failed");
        else
                http_respond_empty(req, 204);
}

static int count_one(const Sandbox *sb, void *userdata)
{
        if (!sb->spec.pool) /* warm pools are counted in /v1/pools */
                (*(size_t *) userdata)++;
        return 0;
}

static void handle_info(Agent *a, HttpRequest *req)
{
        json_object *o = json_object_new_object(), *tpls = json_object_new_array(),
                    *langs = json_object_new_object();
        cleanup_strv char **names = NULL;
        if (template_list(a->cfg.templates_dir, &names) == 0)
                STRV_FOREACH(n, names) {
                        (void) json_object_array_add(tpls, json_object_new_string(*n));
                        /* What its template.json says it can run (docs/templates.md). */
                        Template *t = NULL;
                        if (template_load(a->cfg.templates_dir, *n, &t) < 0)
                                continue;
                        if (t->languages) {
                                json_object *l = json_object_new_array();
                                STRV_FOREACH(x, t->languages)
                                        (void) json_object_array_add(l, json_object_new_string(*x));
                                (void) json_object_object_add(langs, *n, l);
                        }
                        template_free(t);
                }
        size_t count = 0;
        (void) sandbox_foreach(a, count_one, &count);
        (void) json_object_object_add(o, "version", json_object_new_string(SANDPIT_VERSION));
        (void) json_object_object_add(o, "runtime", json_object_new_string(a->cfg.runtime));
        (void) json_object_object_add(
                o, "cgroup_version",
                json_object_new_string(cg_manager_version(a->cg) == CG_VERSION_V2 ? "v2" : "v1"));
        (void) json_object_object_add(o, "templates", tpls);
        (void) json_object_object_add(o, "template_languages", langs);
        (void) json_object_object_add(o, "sandboxes", json_object_new_int64((int64_t) count));
        /* Deleted sandboxes still being torn down in the background. */
        (void) json_object_object_add(o, "teardown_pending",
                                      json_object_new_int64((int64_t) sandbox_teardown_pending(a)));
        http_respond_json(req, 200, o);
}

/* Sub-resources of a sandbox, /v1/sandboxes/{id}/{name}[/rest], each served by
 * its module's handler. rest is what follows the name: "" or "/...". */
static const struct {
        const char *name;
        ApiSubresourceHandler handler;
} subresources[] = {
        {"timeout", handle_timeout},
        {"network", api_net_handle_network},
        {"ports", api_net_handle_ports},
        {"code", api_code_handle},
        {"contexts", api_contexts_handle},
        {"files", api_files_handle},     /* api-files.c, docs/files.md */
        {"fs", api_fs_handle},           /* " */
        {"archive", api_archive_handle}, /* " */
        {"watch", api_watch_handle},     /* " */
        {"metrics", api_sandbox_metrics},
        {"pause", api_sandbox_pause},
        {"resume", api_sandbox_resume},
};

static bool dispatch_subresource(Agent *a, HttpRequest *req)
{
        static const char prefix[] = "/v1/sandboxes/";
        const char *p = http_request_path(req);
        if (strncmp(p, prefix, sizeof(prefix) - 1) != 0)
                return false;
        p += sizeof(prefix) - 1;
        const char *slash = strchr(p, '/');
        if (!slash)
                return false;
        char id[128];
        size_t idlen = (size_t) (slash - p);
        if (idlen == 0 || idlen >= sizeof(id))
                return false;
        memcpy(id, p, idlen);
        id[idlen] = '\0';
        const char *name = slash + 1;
        size_t namelen = strcspn(name, "/");
        for (size_t i = 0; i < ARRAY_SIZE(subresources); i++) {
                if (strlen(subresources[i].name) != namelen ||
                    strncmp(subresources[i].name, name, namelen) != 0)
                        continue;
                if (!id_is_valid(id))
                        api_sandbox_not_found(req, id);
                else
                        subresources[i].handler(a, req, id, name + namelen);
                return true;
        }
        return false;
}

void api_handle(HttpRequest *req, void *userdata)
{
        Agent *a = userdata;
        if (dispatch_subresource(a, req) || api_images_handle(a, req) || api_build_handle(a, req))
                return;
        const char *method = http_request_method(req);
        cleanup_free char *path = strdup(http_request_path(req));
        if (!path) {
                http_respond_error(req, 500, "out of memory");
                return;
        }
        char *seg[8];
        size_t n = split_path(path, seg, ARRAY_SIZE(seg));
        bool get = streq(method, "GET"), post = streq(method, "POST"),
             del = streq(method, "DELETE");

        if (n == 1 && streq(seg[0], "healthz")) {
                if (!get) {
                        http_respond_error(req, 405, "use GET");
                        return;
                }
                json_object *o = json_object_new_object();
                (void) json_object_object_add(o, "status", json_object_new_string("ok"));
                http_respond_json(req, 200, o);
                return;
        }
        if (n == 1 && streq(seg[0], "metrics")) {
                api_node_metrics(a, req);
                return;
        }
        if (n < 2 || n > 6 || !streq(seg[0], "v1")) {
                http_respond_error(req, 404, "no such route");
                return;
        }
        if (n == 2 && streq(seg[1], "info")) {
                if (get)
                        handle_info(a, req);
                else
                        http_respond_error(req, 405, "use GET");
                return;
        }
        if (streq(seg[1], "pools") && n <= 3) {
                api_pools_handle(a, req, n == 3 ? seg[2] : NULL);
                return;
        }
        if (!streq(seg[1], "sandboxes")) {
                http_respond_error(req, 404, "no such route");
                return;
        }
        if (n == 2) {
                if (post)
                        handle_create(a, req);
                else if (get)
                        handle_list(a, req);
                else
                        http_respond_error(req, 405, "use GET or POST");
                return;
        }
        const char *id = seg[2];
        if (!id_is_valid(id)) {
                api_sandbox_not_found(req, id);
                return;
        }
        if (n == 3) {
                int r;
                json_object *obj = NULL;
                if (get) {
                        if (sandbox_get_json(a, id, &obj) < 0)
                                api_sandbox_not_found(req, id);
                        else
                                http_respond_json(req, 200, obj);
                } else if (del) {
                        r = sandbox_delete(a, id);
                        if (r == 0)
                                pool_kick(a); /* room for the pools again */
                        if (r == -ENOENT)
                                api_sandbox_not_found(req, id);
                        else if (r < 0)
                                api_respond_errno(req, r, NULL, "cannot delete sandbox");
                        else
                                http_respond_empty(req, 204);
                } else {
                        http_respond_error(req, 405, "use GET or DELETE");
                }
                return;
        }
        if (n == 4 && streq(seg[3], "exec")) {
                if (post)
                        handle_exec(a, req, id);
                else
                        http_respond_error(req, 405, "use POST");
                return;
        }
        if (n == 4 && streq(seg[3], "processes")) {
                if (!get) {
                        http_respond_error(req, 405, "use GET");
                        return;
                }
                SandboxExecInfo info;
                if (api_exec_info_or_respond(a, req, id, &info) < 0)
                        return;
                json_object *arr = NULL;
                int r = exec_list(info.socket_path, info.init_pid, &arr);
                sandbox_exec_info_done(&info);
                if (r < 0) {
                        api_respond_errno(req, r, NULL, "cannot list processes");
                        return;
                }
                json_object *o = json_object_new_object();
                (void) json_object_object_add(o, "processes", arr);
                http_respond_json(req, 200, o);
                return;
        }
        if (n == 6 && streq(seg[3], "processes")) {
                handle_process(a, req, id, seg[4], seg[5]);
                return;
        }
        http_respond_error(req, 404, "no such route");
}

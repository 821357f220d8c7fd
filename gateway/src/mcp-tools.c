/* The MCP tools (mcp-internal.h): sandboxes through the gateway's backend,
 * commands, code, files and metrics through lib's agent client. Every failure
 * a model can do something about is an isError result saying what to do. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mcp-internal.h"
#include "sandpit/json.h"
#include "sandpit/macro.h"
#include "sandpit/util.h"

#define OPS(c)   ((c)->s->cfg.backend->ops)
#define BDATA(c) ((c)->s->cfg.backend->data)

/* ---- results ---- */

static int add_content(McpCall *c, json_object *o)
{
        if (!o)
                return -ENOMEM;
        if (json_object_array_add(c->content, o) < 0) {
                json_object_put(o);
                return -ENOMEM;
        }
        return 0;
}

static int add_text_len(McpCall *c, const char *s, size_t len)
{
        json_object *o = json_object_new_object();
        if (!o)
                return -ENOMEM;
        json_object_object_add(o, "type", json_object_new_string("text"));
        json_object_object_add(o, "text", json_object_new_string_len(s, (int) len));
        return add_content(c, o);
}

static int add_text(McpCall *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int add_text(McpCall *c, const char *fmt, ...)
{
        char *s = NULL;
        va_list ap;
        va_start(ap, fmt);
        int n = vasprintf(&s, fmt, ap);
        va_end(ap);
        if (n < 0)
                return -ENOMEM;
        int r = add_text_len(c, s, (size_t) n);
        free(s);
        return r;
}

/* An isError result: what went wrong and what to do. Returns 0 (the call
 * itself worked) or -ENOMEM. */
static int fail(McpCall *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(McpCall *c, const char *fmt, ...)
{
        char msg[1024];
        va_list ap;
        va_start(ap, fmt);
        (void) vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        c->is_error = true;
        json_object_put(TAKE_PTR(c->structured_content));
        return add_text(c, "%s%s%s", c->note, c->note[0] ? "\n" : "", msg);
}

static void set_structured(McpCall *c, json_object *o)
{
        json_object_put(c->structured_content);
        c->structured_content = o;
}

static void put_str(json_object *o, const char *k, const char *v)
{
        if (v)
                json_object_object_add(o, k, json_object_new_string(v));
}

/* ---- text capped at a limit, cut on a character boundary ---- */

typedef struct {
        StrBuf b;
        size_t max;
        size_t dropped; /* bytes not kept */
} Capped;

static int capped_add(Capped *t, const char *data, size_t len)
{
        size_t room = t->max > t->b.len ? t->max - t->b.len : 0;
        size_t keep = len;
        if (keep > room) {
                bool valid;
                keep = utf8_complete_prefix((const uint8_t *) data, room, &valid);
                if (!valid)
                        keep = room;
        }
        t->dropped += len - keep;
        return keep ? strbuf_append(&t->b, data, keep, SIZE_MAX) : 0;
}

static const char *capped_str(const Capped *t)
{
        return t->b.data ? t->b.data : "";
}

/* Appends label and text to b on a line of their own; nothing when text is "". */
static int section(StrBuf *b, const char *label, const char *text)
{
        if (!text || !*text)
                return 0;
        int r = 0;
        if (b->len && b->data[b->len - 1] != '\n')
                r = strbuf_append(b, "\n", 1, SIZE_MAX);
        if (r == 0 && label)
                r = strbuf_append(b, label, strlen(label), SIZE_MAX);
        return r < 0 ? r : strbuf_append(b, text, strlen(text), SIZE_MAX);
}

/* ---- progress ---- */

static int progress(McpCall *c, const char *tail, size_t len, double amount)
{
        c->progress += amount;
        if (!c->progress_token || !c->io->send)
                return 0;
        uint64_t now = now_monotonic_us();
        if (c->progress_us && now - c->progress_us < 100000)
                return 0; /* at most ten a second: the result has everything anyway */
        c->progress_us = now;
        if (len > MCP_PROGRESS_TAIL) {
                /* The tail, starting on a character boundary. */
                size_t skip = len - MCP_PROGRESS_TAIL;
                while (skip < len && ((unsigned char) tail[skip] & 0xC0) == 0x80)
                        skip++;
                tail += skip;
                len -= skip;
        }
        cleanup_json json_object *n = json_object_new_object();
        json_object *p = json_object_new_object();
        if (!n || !p) {
                json_object_put(p);
                return -ENOMEM;
        }
        json_object_object_add(p, "progressToken", json_object_get(c->progress_token));
        json_object_object_add(p, "progress", json_object_new_double(c->progress));
        json_object_object_add(p, "message", json_object_new_string_len(tail, (int) len));
        json_object_object_add(n, "jsonrpc", json_object_new_string("2.0"));
        json_object_object_add(n, "method", json_object_new_string("notifications/progress"));
        json_object_object_add(n, "params", p);
        return c->io->send(n, c->io->userdata);
}

/* ---- sandboxes ---- */

static int authorize(McpCall *c, const char *id, char *err, size_t errlen)
{
        if (!c->s->cfg.authorize)
                return 0;
        return c->s->cfg.authorize(c->s->cfg.authorize_userdata, c->io->request, c->tool, id, err,
                                   errlen);
}

static bool is_session_sandbox(McpCall *c, const char *id)
{
        pthread_mutex_lock(&c->s->sandbox_lock);
        bool yes = c->s->sandbox[0] && streq_ptr(c->s->sandbox, id);
        pthread_mutex_unlock(&c->s->sandbox_lock);
        return yes;
}

static void forget_session_sandbox(McpCall *c, const char *id)
{
        pthread_mutex_lock(&c->s->sandbox_lock);
        if (streq_ptr(c->s->sandbox, id))
                c->s->sandbox[0] = 0;
        pthread_mutex_unlock(&c->s->sandbox_lock);
}

/* Makes the session sandbox; sandbox_lock held. */
static int session_sandbox_create(McpCall *c, char *err, size_t errlen)
{
        McpSession *s = c->s;
        int r = authorize(c, "", err, errlen);
        if (r < 0)
                return r;
        cleanup_json json_object *req = json_object_new_object();
        json_object *labels = json_object_new_object();
        if (!req || !labels) {
                json_object_put(labels);
                return -ENOMEM;
        }
        json_object_object_add(labels, MCP_LABEL_SESSION, json_object_new_string(s->id));
        json_object_object_add(req, "template", json_object_new_string(s->cfg.template_name));
        json_object_object_add(req, "timeout", json_object_new_int64(s->cfg.sandbox_idle_s));
        json_object_object_add(req, "labels", labels);
        cleanup_json json_object *sbx = NULL;
        r = OPS(c)->create(BDATA(c), req, &sbx, err, errlen);
        if (r < 0)
                return r;
        const char *id = json_str(sbx, "id");
        if (!id || strlen(id) >= sizeof(s->sandbox))
                return -EIO;
        snprintf(s->sandbox, sizeof(s->sandbox), "%s", id);
        s->sandbox_renewed_us = now_monotonic_us();
        return 0;
}

/* The session sandbox, made on first use; its timeout is renewed once a
 * quarter of it has passed, so the agent deletes it when the session idles
 * (or its process dies) and nothing is left behind. */
static int session_sandbox(McpCall *c, char id[64], char *err, size_t errlen)
{
        McpSession *s = c->s;
        int r = 0;
        pthread_mutex_lock(&s->sandbox_lock);
        uint64_t now = now_monotonic_us(), quarter = (uint64_t) s->cfg.sandbox_idle_s * 250000;
        if (s->sandbox[0] && now - s->sandbox_renewed_us >= quarter) {
                r = OPS(c)->set_timeout(BDATA(c), s->sandbox, s->cfg.sandbox_idle_s, err, errlen);
                if (r == 0)
                        s->sandbox_renewed_us = now;
                else if (r == -ENOENT) {
                        snprintf(c->note, sizeof(c->note),
                                 "Note: this session's sandbox %s had gone (idled out or "
                                 "killed); a new one was made, so earlier files and state are "
                                 "lost.",
                                 s->sandbox);
                        s->sandbox[0] = 0;
                        r = 0;
                }
        }
        if (r == 0 && !s->sandbox[0])
                r = session_sandbox_create(c, err, errlen);
        if (r == 0)
                snprintf(id, 64, "%s", s->sandbox);
        pthread_mutex_unlock(&s->sandbox_lock);
        return r;
}

/* The sandbox a tool works on: sandbox_id, else the session's. A failure is
 * already an isError result (*done set). */
static int target(McpCall *c, char id[64], bool *done)
{
        char err[512] = "";
        const char *given = json_str(c->args, "sandbox_id");
        int r;
        *done = false;
        if (given) {
                if (!id_is_valid(given)) {
                        *done = true;
                        return fail(c,
                                    "sandbox_id '%s' is not a sandbox id (list_sandboxes shows "
                                    "them)",
                                    given);
                }
                r = authorize(c, given, err, sizeof(err));
                if (r == 0) {
                        snprintf(id, 64, "%s", given);
                        return 0;
                }
        } else {
                r = session_sandbox(c, id, err, sizeof(err));
                if (r == 0)
                        return 0;
                if (r == -ENOMEM)
                        return r;
        }
        *done = true;
        if (r == -EACCES || r == -ENOKEY)
                return fail(c, "not allowed: %s", err);
        return fail(c, "cannot make this session's sandbox: %s", err[0] ? err : strerror(-r));
}

/* A failed backend or agent call as an isError result. */
static int op_failed(McpCall *c, const char *id, int r, const char *what, const char *msg)
{
        if (r == -ECANCELED && *c->cancel)
                return r;
        if (r == -ENOMEM)
                return r;
        if (r == -ENOENT && id && msg && strncmp(msg, "sandbox ", 8) == 0) {
                if (is_session_sandbox(c, id)) {
                        forget_session_sandbox(c, id);
                        return fail(c,
                                    "%s: this session's sandbox %s is gone (idled out or "
                                    "killed); call again to get a new one",
                                    what, id);
                }
                return fail(c,
                            "%s: sandbox %s not found (it expired or was killed; "
                            "list_sandboxes shows the live ones)",
                            what, id);
        }
        if (r == -EBUSY)
                return fail(c, "%s: %s (is the sandbox paused? resume_sandbox resumes it)", what,
                            msg && *msg ? msg : strerror(-r));
        return fail(c, "%s: %s", what, msg && *msg ? msg : strerror(-r));
}

static int agent_failed(McpCall *c, AgentClient *a, const char *id, int r, const char *what)
{
        return op_failed(c, id, r, what, agent_client_error(a)->message);
}

/* A client of the agent that runs id, stopped by the call's cancellation,
 * and the id that agent knows the sandbox by (aid): the backend's own where
 * they differ (a cluster: the Sandbox's name is id, its status.sandboxID the
 * agent's), else id. Every agent call takes aid; what the tools say, id. */
static int agent_for(McpCall *c, const char *id, char aid[64], AgentClient **ret, bool *done)
{
        char err[512] = "";
        int r = 0;
        if (OPS(c)->agent_id)
                r = OPS(c)->agent_id(BDATA(c), id, aid, 64, err, sizeof(err));
        else
                snprintf(aid, 64, "%s", id);
        if (r == 0)
                r = OPS(c)->agent(BDATA(c), aid, ret, err, sizeof(err));
        *done = r < 0;
        if (r < 0)
                return op_failed(c, id, r, "cannot reach the sandbox's agent", err);
        agent_client_set_cancel(*ret, c->cancel);
        return 0;
}

/* The agent's sandbox object as the tools show it. */
static json_object *sandbox_view(McpCall *c, json_object *a)
{
        json_object *o = json_object_new_object(), *md = json_object_new_object();
        if (!o || !md) {
                json_object_put(o);
                json_object_put(md);
                return NULL;
        }
        const char *id = json_str(a, "id");
        put_str(o, "sandbox_id", id ? id : "");
        put_str(o, "template", json_str(a, "template"));
        put_str(o, "state", json_str(a, "state"));
        put_str(o, "started_at", json_str(a, "started_at"));
        put_str(o, "expires_at", json_str(a, "expires_at"));
        json_object_object_foreach(json_obj(a, "labels"), k, v) {
                if (strncmp(k, "sandpit.dev/", 12) != 0)
                        json_object_object_add(md, k, json_object_get(v));
        }
        json_object_object_add(o, "metadata", md);
        const char *sess = json_str(json_obj(a, "labels"), MCP_LABEL_SESSION);
        json_object_object_add(o, "session_sandbox",
                               json_object_new_boolean(sess && streq_ptr(sess, c->s->id)));
        return o;
}

static int reply_sandbox(McpCall *c, json_object *a, const char *verb)
{
        json_object *v = sandbox_view(c, a);
        if (!v)
                return -ENOMEM;
        set_structured(c, v);
        return add_text(c, "%s%s%ssandbox %s %s: template %s, state %s, expires %s", c->note,
                        c->note[0] ? "\n" : "", "", json_str(v, "sandbox_id"), verb,
                        json_str(v, "template") ?: "?", json_str(v, "state") ?: "?",
                        json_str(v, "expires_at") ?: "?");
}

static int tool_create_sandbox(McpCall *c)
{
        char err[512] = "";
        int r = authorize(c, "", err, sizeof(err));
        if (r < 0)
                return fail(c, "not allowed: %s", err);
        cleanup_json json_object *req = json_object_new_object();
        if (!req)
                return -ENOMEM;
        const char *tmpl = json_str(c->args, "template");
        put_str(req, "template", tmpl ? tmpl : c->s->cfg.template_name);
        json_object_object_add(req, "timeout",
                               json_object_new_int64(json_int(c->args, "timeout", 300)));
        if (json_field(c->args, "env"))
                json_object_object_add(req, "env", json_object_get(json_field(c->args, "env")));
        if (json_field(c->args, "metadata")) {
                json_object_object_foreach(json_obj(c->args, "metadata"), k, v) {
                        (void) v;
                        if (strncmp(k, "sandpit.dev/", 12) == 0)
                                return fail(c, "metadata keys under sandpit.dev/ are sandpit's "
                                               "own; use another key");
                }
                json_object_object_add(req, "labels",
                                       json_object_get(json_field(c->args, "metadata")));
        }
        if (json_field(c->args, "cpu"))
                json_object_object_add(req, "cpu", json_object_get(json_field(c->args, "cpu")));
        if (json_field(c->args, "memory"))
                json_object_object_add(req, "memory",
                                       json_object_get(json_field(c->args, "memory")));
        const char *egress = json_str(c->args, "egress");
        json_object *allow = json_field(c->args, "allow"), *deny = json_field(c->args, "deny");
        if ((allow && !streq_ptr(egress, "allowlist")) || (deny && !streq_ptr(egress, "allow")))
                return fail(c, "allow goes with egress \"allowlist\" and deny with egress "
                               "\"allow\"");
        if (egress) {
                json_object *net = json_object_new_object();
                if (!net)
                        return -ENOMEM;
                put_str(net, "egress", egress);
                json_object *rules = allow ? allow : deny;
                if (rules) {
                        json_object *arr = json_object_new_array();
                        for (size_t i = 0; arr && i < json_object_array_length(rules); i++) {
                                json_object *e = json_object_new_object();
                                put_str(e, "cidr",
                                        json_object_get_string(
                                                json_object_array_get_idx(rules, i)));
                                json_object_array_add(arr, e);
                        }
                        json_object_object_add(net, allow ? "allow" : "deny", arr);
                }
                json_object_object_add(req, "network", net);
        }
        cleanup_json json_object *sbx = NULL;
        r = OPS(c)->create(BDATA(c), req, &sbx, err, sizeof(err));
        if (r < 0)
                return op_failed(c, NULL, r, "cannot create the sandbox", err);
        return reply_sandbox(c, sbx, "created (pass its sandbox_id to the other tools)");
}

static bool labels_match(json_object *labels, json_object *want)
{
        json_object_object_foreach(want, k, v) {
                const char *have = json_str(labels, k);
                if (!have || !streq_ptr(have, json_object_get_string(v)))
                        return false;
        }
        return true;
}

static int tool_list_sandboxes(McpCall *c)
{
        char err[512] = "";
        cleanup_json json_object *all = NULL;
        int r = OPS(c)->list(BDATA(c), &all, err, sizeof(err));
        if (r < 0)
                return op_failed(c, NULL, r, "cannot list the sandboxes", err);
        json_object *want = json_obj(c->args, "metadata");
        const char *state = json_str(c->args, "state");
        json_object *arr = json_object_new_array(), *out = json_object_new_object();
        if (!arr || !out) {
                json_object_put(arr);
                json_object_put(out);
                return -ENOMEM;
        }
        json_object_object_add(out, "sandboxes", arr);
        set_structured(c, out);
        Capped text = {.max = MCP_TEXT_MAX};
        for (size_t i = 0; i < json_object_array_length(all); i++) {
                json_object *a = json_object_array_get_idx(all, i);
                const char *id = json_str(a, "id");
                if (!id || (want && !labels_match(json_obj(a, "labels"), want)) ||
                    (state && !streq_ptr(state, json_str(a, "state") ?: "")))
                        continue;
                /* What the caller may not touch it does not see. */
                if (authorize(c, id, err, sizeof(err)) < 0)
                        continue;
                json_object *v = sandbox_view(c, a);
                if (!v || json_object_array_add(arr, v) < 0) {
                        json_object_put(v);
                        strbuf_done(&text.b);
                        return -ENOMEM;
                }
                char line[512];
                int n = snprintf(line, sizeof(line), "%s  %s  %s  expires %s%s\n", id,
                                 json_str(v, "template") ?: "?", json_str(v, "state") ?: "?",
                                 json_str(v, "expires_at") ?: "?",
                                 json_boolean(v, "session_sandbox", false) ? "  (this session's)"
                                                                           : "");
                (void) capped_add(&text, line, n > 0 ? strnlen(line, sizeof(line)) : 0);
        }
        r = json_object_array_length(arr) == 0 ? add_text(c, "no sandboxes")
                                               : add_text(c, "%s", capped_str(&text));
        strbuf_done(&text.b);
        return r;
}

/* Sandbox id argument, else the session's sandbox (without making one). */
static int existing_target(McpCall *c, char id[64], bool *done)
{
        if (json_str(c->args, "sandbox_id"))
                return target(c, id, done);
        pthread_mutex_lock(&c->s->sandbox_lock);
        snprintf(id, 64, "%s", c->s->sandbox);
        pthread_mutex_unlock(&c->s->sandbox_lock);
        *done = !id[0];
        return id[0] ? 0
                     : fail(c, "no sandbox_id given and this session has no sandbox yet: name "
                               "one (list_sandboxes shows them)");
}

static int tool_kill_sandbox(McpCall *c)
{
        char id[64], err[512] = "";
        bool done;
        int r = existing_target(c, id, &done);
        if (done)
                return r;
        r = OPS(c)->remove(BDATA(c), id, err, sizeof(err));
        if (r < 0)
                return op_failed(c, id, r, "cannot kill the sandbox", err);
        forget_session_sandbox(c, id);
        json_object *o = json_object_new_object();
        if (!o)
                return -ENOMEM;
        put_str(o, "sandbox_id", id);
        json_object_object_add(o, "killed", json_object_new_boolean(true));
        set_structured(c, o);
        return add_text(c, "sandbox %s killed", id);
}

static int show_sandbox(McpCall *c, const char *id, const char *verb)
{
        char err[512] = "";
        cleanup_json json_object *sbx = NULL;
        int r = OPS(c)->get(BDATA(c), id, &sbx, err, sizeof(err));
        if (r < 0)
                return op_failed(c, id, r, "cannot read the sandbox", err);
        return reply_sandbox(c, sbx, verb);
}

static int tool_set_timeout(McpCall *c)
{
        char id[64], err[512] = "";
        bool done;
        int r = existing_target(c, id, &done);
        if (done)
                return r;
        r = OPS(c)->set_timeout(BDATA(c), id, (uint64_t) json_int(c->args, "timeout", 300), err,
                                sizeof(err));
        if (r < 0)
                return op_failed(c, id, r, "cannot set the timeout", err);
        return show_sandbox(c, id, "now");
}

static int tool_pause_sandbox(McpCall *c)
{
        char id[64], err[512] = "";
        bool done;
        int r = existing_target(c, id, &done);
        if (done)
                return r;
        r = OPS(c)->pause(BDATA(c), id, err, sizeof(err));
        if (r < 0)
                return op_failed(c, id, r, "cannot pause the sandbox", err);
        return show_sandbox(c, id, "paused (resume_sandbox resumes it)");
}

static int tool_resume_sandbox(McpCall *c)
{
        char id[64], err[512] = "";
        bool done;
        int r = existing_target(c, id, &done);
        if (done)
                return r;
        cleanup_json json_object *sbx = NULL;
        r = OPS(c)->resume(BDATA(c), id, (uint64_t) json_int(c->args, "timeout", 0), &sbx, err,
                           sizeof(err));
        if (r < 0)
                return op_failed(c, id, r, "cannot resume the sandbox", err);
        return reply_sandbox(c, sbx, "resumed");
}

static int tool_get_metrics(McpCall *c)
{
        char id[64], err[512] = "";
        bool done;
        int r = target(c, id, &done);
        if (done)
                return r;
        cleanup_json json_object *m = NULL;
        r = OPS(c)->metrics(BDATA(c), id, -1, -1, &m, err, sizeof(err));
        if (r < 0)
                return op_failed(c, id, r, "cannot read the sandbox's metrics", err);
        json_object *o = json_object_new_object();
        if (!o)
                return -ENOMEM;
        put_str(o, "sandbox_id", id);
        json_object_object_add(o, "metrics", json_object_get(m));
        set_structured(c, o);
        return add_text(c, "%s", json_object_to_json_string_ext(m, JSON_C_TO_STRING_PRETTY));
}

/* ---- commands ---- */

typedef struct {
        McpCall *c;
        Capped out, err;
        long pid;
        json_object *exit;
} CommandRun;

static int command_event(json_object *ev, void *userdata)
{
        CommandRun *k = userdata;
        const char *type = json_str(ev, "type");
        if (streq_ptr(type, "start")) {
                k->pid = (long) json_int(ev, "pid", 0);
                return 0;
        }
        if (streq_ptr(type, "exit")) {
                json_object_put(k->exit);
                k->exit = json_object_get(ev);
                return 0;
        }
        bool out = streq_ptr(type, "stdout");
        if (!out && !streq_ptr(type, "stderr"))
                return 0;
        Capped *t = out ? &k->out : &k->err;
        const char *d = json_str(ev, "data");
        if (!d) {
                const char *b64 = json_str(ev, "data_b64");
                char note[64];
                size_t n = b64 ? strlen(b64) / 4 * 3 : 0;
                snprintf(note, sizeof(note), "[%zu bytes that are not UTF-8]", n);
                int r = capped_add(t, note, strlen(note));
                return r < 0 ? r : progress(k->c, note, strlen(note), (double) n);
        }
        size_t len = strlen(d);
        int r = capped_add(t, d, len);
        return r < 0 ? r : progress(k->c, d, len, (double) len);
}

static void capped_note(Capped *t, const char *what, char *buf, size_t len)
{
        if (t->dropped)
                snprintf(buf, len, "[sandpit: %s truncated: %zu more bytes not shown]", what,
                         t->dropped);
        else
                buf[0] = 0;
}

static int tool_run_command(McpCall *c)
{
        char id[64];
        bool done;
        int r = target(c, id, &done);
        if (done)
                return r;
        cleanup_json json_object *req = json_object_new_object();
        if (!req)
                return -ENOMEM;
        put_str(req, "shell", json_str(c->args, "command"));
        put_str(req, "cwd", json_str(c->args, "cwd"));
        put_str(req, "user", json_str(c->args, "user"));
        put_str(req, "stdin", json_str(c->args, "stdin"));
        if (json_field(c->args, "env"))
                json_object_object_add(req, "env", json_object_get(json_field(c->args, "env")));
        bool background = json_boolean(c->args, "background", false);
        json_object *timeout = json_field(c->args, "timeout");
        if (timeout)
                json_object_object_add(req, "timeout", json_object_get(timeout));
        else if (!background)
                json_object_object_add(req, "timeout", json_object_new_int(300));
        cleanup_agent_client AgentClient *a = NULL;
        char aid[64];
        r = agent_for(c, id, aid, &a, &done);
        if (done)
                return r;
        json_object *o = json_object_new_object();
        if (!o)
                return -ENOMEM;
        set_structured(c, o);
        put_str(o, "sandbox_id", id);
        if (background) {
                int pid = 0;
                r = agent_client_exec_background(a, aid, req, &pid);
                if (r < 0)
                        return agent_failed(c, a, id, r, "cannot start the command");
                json_object_object_add(o, "pid", json_object_new_int(pid));
                json_object_object_add(o, "background", json_object_new_boolean(true));
                return add_text(c,
                                "%s%sstarted in the background in sandbox %s: pid %d (it keeps "
                                "running; run_command with kill %d stops it)",
                                c->note, c->note[0] ? "\n" : "", id, pid, pid);
        }
        CommandRun k = {.c = c, .out = {.max = MCP_TEXT_MAX}, .err = {.max = MCP_TEXT_MAX}};
        r = agent_client_exec(a, aid, req, command_event, &k);
        if (r < 0) {
                strbuf_done(&k.out.b);
                strbuf_done(&k.err.b);
                json_object_put(k.exit);
                if (r == -ECANCELED && *c->cancel)
                        return r;
                return agent_failed(c, a, id, r, "the command failed to run");
        }
        int code = (int) json_int(k.exit, "exit_code", -1);
        bool timed_out = json_boolean(k.exit, "timed_out", false);
        bool oom = json_boolean(k.exit, "oom_killed", false);
        int sig = (int) json_int(k.exit, "signal", 0);
        put_str(o, "stdout", capped_str(&k.out));
        put_str(o, "stderr", capped_str(&k.err));
        json_object_object_add(o, "exit_code", json_object_new_int(code));
        json_object_object_add(o, "pid", json_object_new_int((int) k.pid));
        json_object_object_add(o, "timed_out", json_object_new_boolean(timed_out));
        json_object_object_add(o, "oom_killed", json_object_new_boolean(oom));
        json_object_object_add(o, "truncated",
                               json_object_new_boolean(k.out.dropped || k.err.dropped));
        char n1[96], n2[96];
        capped_note(&k.out, "stdout", n1, sizeof(n1));
        capped_note(&k.err, "stderr", n2, sizeof(n2));
        char status[128];
        if (timed_out)
                snprintf(status, sizeof(status), "[timed out and killed; give a larger timeout]");
        else if (oom)
                snprintf(status, sizeof(status), "[killed: out of memory]");
        else if (sig)
                snprintf(status, sizeof(status), "[killed by signal %d]", sig);
        else
                snprintf(status, sizeof(status), "[exit code %d]", code);
        StrBuf t = {0};
        r = section(&t, NULL, c->note);
        r = r < 0 ? r : section(&t, NULL, capped_str(&k.out));
        r = r < 0 ? r : section(&t, NULL, n1);
        r = r < 0 ? r : section(&t, k.err.b.len ? "[stderr]\n" : NULL, capped_str(&k.err));
        r = r < 0 ? r : section(&t, NULL, n2);
        r = r < 0 ? r : section(&t, NULL, status);
        r = r < 0 ? r : add_text_len(c, t.data, t.len);
        strbuf_done(&t);
        c->is_error = timed_out;
        strbuf_done(&k.out.b);
        strbuf_done(&k.err.b);
        json_object_put(k.exit);
        return r;
}

/* ---- code ---- */

typedef struct {
        McpCall *c;
        Capped out, err;
        json_object *results; /* structured */
        json_object *images;  /* content blocks */
        Capped texts;         /* the results' text */
        json_object *error;
        bool timed_out;
} CodeRun;

static json_object *capped_string(const char *s)
{
        size_t len = strlen(s);
        if (len <= MCP_TEXT_MAX)
                return json_object_new_string(s);
        bool valid;
        size_t keep = utf8_complete_prefix((const uint8_t *) s, MCP_TEXT_MAX, &valid);
        return json_object_new_string_len(s, (int) (valid ? keep : MCP_TEXT_MAX));
}

static int code_result(CodeRun *k, json_object *ev)
{
        json_object *r = json_object_new_object(), *formats = json_object_new_array();
        if (!r || !formats || json_object_array_add(k->results, r) < 0) {
                json_object_put(r);
                json_object_put(formats);
                return -ENOMEM;
        }
        bool image = false;
        json_object_object_add(r, "is_main_result",
                               json_object_new_boolean(json_boolean(ev, "is_main_result", false)));
        json_object_object_foreach(ev, key, v) {
                if (streq_ptr(key, "type") || streq_ptr(key, "is_main_result"))
                        continue;
                json_object_array_add(formats, json_object_new_string(key));
                if (streq_ptr(key, "png") || streq_ptr(key, "jpeg")) {
                        image = true;
                        if (json_object_array_length(k->images) >= 8)
                                continue;
                        json_object *img = json_object_new_object();
                        if (!img)
                                return -ENOMEM;
                        put_str(img, "type", "image");
                        json_object_object_add(img, "data", json_object_get(v));
                        put_str(img, "mimeType",
                                streq_ptr(key, "png") ? "image/png" : "image/jpeg");
                        json_object_array_add(k->images, img);
                } else if (json_object_is_type(v, json_type_string) &&
                           (streq_ptr(key, "text") || streq_ptr(key, "html") ||
                            streq_ptr(key, "markdown") || streq_ptr(key, "latex"))) {
                        json_object_object_add(r, key, capped_string(json_object_get_string(v)));
                } else if (streq_ptr(key, "json")) {
                        json_object_object_add(r, key, json_object_get(v));
                }
        }
        json_object_object_add(r, "formats", formats);
        const char *text = json_str(ev, "text");
        if (text && !image) {
                int e = k->texts.b.len ? capped_add(&k->texts, "\n", 1) : 0;
                return e < 0 ? e : capped_add(&k->texts, text, strlen(text));
        }
        return 0;
}

static int code_event(json_object *ev, void *userdata)
{
        CodeRun *k = userdata;
        const char *type = json_str(ev, "type");
        bool out = streq_ptr(type, "stdout");
        if (out || streq_ptr(type, "stderr")) {
                const char *t = json_str(ev, "text") ?: "";
                size_t len = strlen(t);
                int r = capped_add(out ? &k->out : &k->err, t, len);
                return r < 0 ? r : progress(k->c, t, len, (double) len);
        }
        if (streq_ptr(type, "result"))
                return code_result(k, ev);
        if (streq_ptr(type, "error")) {
                json_object_put(k->error);
                k->error = json_object_new_object();
                if (!k->error)
                        return -ENOMEM;
                put_str(k->error, "name", json_str(ev, "name") ?: "Error");
                put_str(k->error, "value", json_str(ev, "value") ?: "");
                json_object_object_add(k->error, "traceback",
                                       capped_string(json_str(ev, "traceback") ?: ""));
                return 0;
        }
        if (streq_ptr(type, "end_of_execution"))
                k->timed_out = json_boolean(ev, "timed_out", false);
        return 0;
}

static void code_run_done(CodeRun *k)
{
        strbuf_done(&k->out.b);
        strbuf_done(&k->err.b);
        strbuf_done(&k->texts.b);
        json_object_put(k->results);
        json_object_put(k->images);
        json_object_put(k->error);
}

/* A run in the session sandbox (no sandbox_id) in a language its template
 * does not list fails here, before the sandbox is made, naming what runs
 * (*done set). lang NULL: a context's, known to the sandbox only. */
static int session_language(McpCall *c, const char *lang, bool *done)
{
        *done = false;
        if (!lang || json_str(c->args, "sandbox_id"))
                return 0;
        cleanup_json json_object *info = NULL;
        int r = mcp_node_info(&c->s->cfg, &info);
        if (r == -ENOMEM)
                return r;
        json_object *mine = r < 0 ? NULL : mcp_template_languages(info, c->s->cfg.template_name);
        if (mcp_language_listed(mine, lang))
                return 0; /* or not known here: the agent says */
        cleanup_free char *listed = NULL, *all = NULL;
        if (mcp_languages_text(info, &all) < 0)
                return -ENOMEM;
        listed = json_object_array_length(mine)
                         ? strdup(json_object_to_json_string_ext(mine, JSON_C_TO_STRING_PLAIN))
                         : strdup("none");
        if (!listed)
                return -ENOMEM;
        *done = true;
        return fail(c,
                    "this session's sandbox (template %s) has no %s: it runs %s. Languages by "
                    "template on this node: %s; for another, create_sandbox with such a "
                    "template and pass its sandbox_id",
                    c->s->cfg.template_name, lang, listed, all);
}

static int tool_run_code(McpCall *c)
{
        const char *lang = json_str(c->args, "language"), *ctx = json_str(c->args, "context");
        if (lang && ctx)
                return fail(c, "give a language or a context, not both (a context has its "
                               "language)");
        char id[64];
        bool done;
        int r = session_language(c, lang ? lang : ctx ? NULL : "python", &done);
        if (done)
                return r;
        r = target(c, id, &done);
        if (done)
                return r;
        cleanup_json json_object *req = json_object_new_object();
        if (!req)
                return -ENOMEM;
        put_str(req, "code", json_str(c->args, "code"));
        put_str(req, "language", lang);
        put_str(req, "context", ctx);
        if (json_field(c->args, "env"))
                json_object_object_add(req, "env", json_object_get(json_field(c->args, "env")));
        json_object *timeout = json_field(c->args, "timeout");
        json_object_object_add(req, "timeout",
                               timeout ? json_object_get(timeout) : json_object_new_int(300));
        cleanup_agent_client AgentClient *a = NULL;
        char aid[64];
        r = agent_for(c, id, aid, &a, &done);
        if (done)
                return r;
        CodeRun k = {.c = c,
                     .out = {.max = MCP_TEXT_MAX},
                     .err = {.max = MCP_TEXT_MAX},
                     .texts = {.max = MCP_TEXT_MAX},
                     .results = json_object_new_array(),
                     .images = json_object_new_array()};
        if (!k.results || !k.images) {
                code_run_done(&k);
                return -ENOMEM;
        }
        r = agent_client_code(a, aid, req, code_event, &k);
        if (r < 0) {
                code_run_done(&k);
                if (r == -ECANCELED && *c->cancel)
                        return r;
                return agent_failed(c, a, id, r, "the code did not run");
        }
        json_object *o = json_object_new_object();
        if (!o) {
                code_run_done(&k);
                return -ENOMEM;
        }
        set_structured(c, o);
        put_str(o, "sandbox_id", id);
        put_str(o, "stdout", capped_str(&k.out));
        put_str(o, "stderr", capped_str(&k.err));
        json_object_object_add(o, "results", json_object_get(k.results));
        if (k.error)
                json_object_object_add(o, "error", json_object_get(k.error));
        json_object_object_add(o, "timed_out", json_object_new_boolean(k.timed_out));
        json_object_object_add(
                o, "truncated",
                json_object_new_boolean(k.out.dropped || k.err.dropped || k.texts.dropped));
        char n1[96], n2[96], etext[MCP_TEXT_MAX / 4] = "";
        capped_note(&k.out, "stdout", n1, sizeof(n1));
        capped_note(&k.err, "stderr", n2, sizeof(n2));
        if (k.error)
                snprintf(etext, sizeof(etext), "%s: %s\n%s", json_str(k.error, "name"),
                         json_str(k.error, "value"), json_str(k.error, "traceback"));
        bool any = k.out.b.len || k.err.b.len || k.texts.b.len || k.error ||
                   json_object_array_length(k.images);
        StrBuf t = {0};
        r = section(&t, NULL, c->note);
        r = r < 0 ? r : section(&t, NULL, capped_str(&k.out));
        r = r < 0 ? r : section(&t, NULL, n1);
        r = r < 0 ? r : section(&t, k.err.b.len ? "[stderr]\n" : NULL, capped_str(&k.err));
        r = r < 0 ? r : section(&t, NULL, n2);
        r = r < 0 ? r
                  : section(&t, k.out.b.len || k.err.b.len ? "[result]\n" : NULL,
                            capped_str(&k.texts));
        r = r < 0 ? r : section(&t, k.error ? "[error] " : NULL, etext);
        r = r < 0 ? r : section(&t, NULL, k.timed_out ? "[timed out; the context survives]" : "");
        r = r < 0 ? r : section(&t, NULL, any ? "" : "(no output)");
        r = r < 0 ? r : add_text_len(c, t.data ? t.data : "", t.len);
        strbuf_done(&t);
        for (size_t i = 0; r == 0 && i < json_object_array_length(k.images); i++)
                r = add_content(c, json_object_get(json_object_array_get_idx(k.images, i)));
        c->is_error = k.error != NULL;
        code_run_done(&k);
        return r;
}

/* ---- files ---- */

typedef struct {
        StrBuf b;
        size_t max;
        bool more;
} Collect;

static int collect(const char *data, size_t len, void *userdata)
{
        Collect *k = userdata;
        size_t room = k->max - k->b.len;
        if (len > room) {
                k->more = true;
                if (room)
                        (void) strbuf_append(&k->b, data, room, SIZE_MAX);
                return -EFBIG; /* enough: stops the transfer */
        }
        return strbuf_append(&k->b, data, len, SIZE_MAX);
}

static const char *image_type(const uint8_t *d, size_t n)
{
        if (n >= 8 && memcmp(d, "\x89PNG\r\n\x1a\n", 8) == 0)
                return "image/png";
        if (n >= 3 && memcmp(d, "\xff\xd8\xff", 3) == 0)
                return "image/jpeg";
        if (n >= 6 && (memcmp(d, "GIF87a", 6) == 0 || memcmp(d, "GIF89a", 6) == 0))
                return "image/gif";
        if (n >= 12 && memcmp(d, "RIFF", 4) == 0 && memcmp(d + 8, "WEBP", 4) == 0)
                return "image/webp";
        return NULL;
}

static int add_blob(McpCall *c, const char *uri, const char *mime, const void *data, size_t len)
{
        cleanup_free char *b64 = NULL;
        int r = base64_encode(data, len, &b64);
        if (r < 0)
                return r;
        json_object *o = json_object_new_object(), *res = json_object_new_object();
        if (!o || !res) {
                json_object_put(o);
                json_object_put(res);
                return -ENOMEM;
        }
        put_str(res, "uri", uri);
        put_str(res, "mimeType", mime);
        put_str(res, "blob", b64);
        put_str(o, "type", "resource");
        json_object_object_add(o, "resource", res);
        return add_content(c, o);
}

static int tool_read_file(McpCall *c)
{
        char id[64];
        bool done;
        int r = target(c, id, &done);
        if (done)
                return r;
        const char *path = json_str(c->args, "path");
        cleanup_agent_client AgentClient *a = NULL;
        char aid[64];
        r = agent_for(c, id, aid, &a, &done);
        if (done)
                return r;
        cleanup_json json_object *st = NULL;
        r = agent_client_stat(a, aid, path, NULL, &st);
        if (r < 0)
                return agent_failed(c, a, id, r, "cannot read the file");
        if (streq_ptr(json_str(st, "type"), "dir"))
                return fail(c, "%s is a directory: list_files lists it, download_files fetches it",
                            path);
        Collect k = {.max = MCP_IMAGE_MAX + 1};
        r = agent_client_file_read(a, aid, path, NULL, collect, &k);
        if (r < 0 && !(r == -EFBIG && k.more)) {
                strbuf_done(&k.b);
                return agent_failed(c, a, id, r, "cannot read the file");
        }
        const uint8_t *d = (const uint8_t *) (k.b.data ? k.b.data : "");
        size_t n = k.b.len;
        const char *img = image_type(d, n);
        bool valid = false;
        size_t prefix = utf8_complete_prefix(d, n, &valid);
        bool text = !img && valid && !memchr(d, 0, n) && (prefix == n || k.more);
        if (img) {
                if (k.more)
                        r = fail(c,
                                 "%s is an image over %zu bytes, more than read_file returns; "
                                 "download_files fetches it",
                                 path, MCP_IMAGE_MAX);
                else {
                        cleanup_free char *b64 = NULL;
                        r = base64_encode(d, n, &b64);
                        json_object *o = r == 0 ? json_object_new_object() : NULL;
                        if (o) {
                                put_str(o, "type", "image");
                                put_str(o, "data", b64);
                                put_str(o, "mimeType", img);
                        }
                        r = r < 0 ? r : add_content(c, o);
                }
        } else if (text) {
                size_t keep = n > MCP_FILE_MAX ? MCP_FILE_MAX : n;
                if (keep < n) {
                        bool v;
                        keep = utf8_complete_prefix(d, keep, &v);
                }
                r = add_text_len(c, (const char *) d, keep);
                if (r == 0 && (keep < n || k.more))
                        r = add_text(c,
                                     "[sandpit: file truncated: the first %zu bytes of %lld "
                                     "shown; run_command with tail or sed shows other parts]",
                                     keep, (long long) json_int(st, "size", -1));
        } else if (n <= MCP_FILE_MAX) {
                char uri[512];
                snprintf(uri, sizeof(uri), "sandpit://%s%s%s", id, path[0] == '/' ? "" : "/", path);
                r = add_text(c, "%s is binary (%zu bytes): given as a resource", path, n);
                if (r == 0)
                        r = add_blob(c, uri, "application/octet-stream", d, n);
        } else {
                r = fail(c,
                         "%s is a binary file of %lld bytes, more than read_file returns; "
                         "download_files fetches it",
                         path, (long long) json_int(st, "size", -1));
        }
        strbuf_done(&k.b);
        return r;
}

static int tool_write_file(McpCall *c)
{
        const char *path = json_str(c->args, "path"), *content = json_str(c->args, "content");
        bool b64 = streq_ptr(json_str(c->args, "encoding") ?: "utf-8", "base64");
        cleanup_free uint8_t *bytes = NULL;
        size_t len = strlen(content);
        if (b64 && base64_decode(content, &bytes, &len) < 0)
                return fail(c, "content is not valid base64 (encoding \"base64\")");
        char id[64];
        bool done;
        int r = target(c, id, &done);
        if (done)
                return r;
        cleanup_agent_client AgentClient *a = NULL;
        char aid[64];
        r = agent_for(c, id, aid, &a, &done);
        if (done)
                return r;
        cleanup_json json_object *entry = NULL;
        r = agent_client_file_write(a, aid, path, NULL, b64 ? (const void *) bytes : content, len,
                                    &entry);
        if (r < 0)
                return agent_failed(c, a, id, r, "cannot write the file");
        json_object *o = json_object_new_object();
        if (!o)
                return -ENOMEM;
        put_str(o, "sandbox_id", id);
        put_str(o, "path", json_str(entry, "path") ?: path);
        json_object_object_add(o, "size", json_object_new_int64((int64_t) len));
        set_structured(c, o);
        return add_text(c, "%s%swrote %zu bytes to %s in sandbox %s", c->note,
                        c->note[0] ? "\n" : "", len, json_str(o, "path"), id);
}

static int tool_list_files(McpCall *c)
{
        char id[64];
        bool done;
        int r = target(c, id, &done);
        if (done)
                return r;
        const char *path = json_str(c->args, "path") ?: "/home/user";
        cleanup_agent_client AgentClient *a = NULL;
        char aid[64];
        r = agent_for(c, id, aid, &a, &done);
        if (done)
                return r;
        cleanup_json json_object *entries = NULL;
        r = agent_client_ls(a, aid, path, NULL, (unsigned) json_int(c->args, "depth", 1), &entries);
        if (r < 0)
                return agent_failed(c, a, id, r, "cannot list the directory");
        json_object *arr = json_object_new_array(), *o = json_object_new_object();
        if (!arr || !o) {
                json_object_put(arr);
                json_object_put(o);
                return -ENOMEM;
        }
        put_str(o, "sandbox_id", id);
        put_str(o, "path", path);
        json_object_object_add(o, "entries", arr);
        set_structured(c, o);
        size_t n = json_object_array_length(entries);
        Capped text = {.max = MCP_TEXT_MAX};
        for (size_t i = 0; i < n && i < MCP_LIST_MAX; i++) {
                json_object *e = json_object_array_get_idx(entries, i);
                json_object_array_add(arr, json_object_get(e));
                char line[1200];
                const char *type = json_str(e, "type") ?: "?";
                snprintf(line, sizeof(line), "%s%s  %lld\n", json_str(e, "path") ?: "?",
                         streq_ptr(type, "dir") ? "/" : "", (long long) json_int(e, "size", 0));
                (void) capped_add(&text, line, strlen(line));
        }
        json_object_object_add(o, "truncated", json_object_new_boolean(n > MCP_LIST_MAX));
        if (n > MCP_LIST_MAX) {
                char more[128];
                snprintf(more, sizeof(more), "[sandpit: %zu more entries not shown]\n",
                         n - MCP_LIST_MAX);
                (void) capped_add(&text, more, strlen(more));
        }
        r = n ? add_text(c, "%s", capped_str(&text)) : add_text(c, "%s is empty", path);
        strbuf_done(&text.b);
        return r;
}

static int tool_download_files(McpCall *c)
{
        char id[64];
        bool done;
        int r = target(c, id, &done);
        if (done)
                return r;
        const char *path = json_str(c->args, "path");
        cleanup_agent_client AgentClient *a = NULL;
        char aid[64];
        r = agent_for(c, id, aid, &a, &done);
        if (done)
                return r;
        /* The agent refuses more file data than this before sending anything. */
        agent_client_set_max_bytes(a, MCP_ARCHIVE_MAX);
        Collect k = {.max = MCP_ARCHIVE_MAX};
        r = agent_client_archive_read(a, aid, path, NULL, collect, &k);
        if (r < 0) {
                strbuf_done(&k.b);
                if (r == -E2BIG || r == -EFBIG)
                        return fail(c,
                                    "%s holds more than %zu bytes, more than download_files "
                                    "returns; download a subdirectory, or compress or split it "
                                    "with run_command first",
                                    path, MCP_ARCHIVE_MAX);
                return agent_failed(c, a, id, r, "cannot archive the files");
        }
        char uri[600];
        snprintf(uri, sizeof(uri), "sandpit://%s%s%s?format=tar.gz", id, path[0] == '/' ? "" : "/",
                 path);
        r = add_text(c, "%s as a tar.gz archive of %zu bytes (the resource below, base64)", path,
                     k.b.len);
        if (r == 0)
                r = add_blob(c, uri, "application/gzip", k.b.data ? k.b.data : "", k.b.len);
        json_object *o = r == 0 ? json_object_new_object() : NULL;
        if (o) {
                put_str(o, "sandbox_id", id);
                put_str(o, "path", path);
                put_str(o, "uri", uri);
                json_object_object_add(o, "bytes", json_object_new_int64((int64_t) k.b.len));
                set_structured(c, o);
        }
        strbuf_done(&k.b);
        return r == 0 && !o ? -ENOMEM : r;
}

/* ---- the table ---- */

#define SANDBOX_ID_PROP                                                                         \
        "\"sandbox_id\":{\"type\":\"string\",\"description\":\"The sandbox to use; omit it to " \
        "use this session's sandbox (made on first use, deleted when the session ends)\"}"
#define ENV_PROP                                                                       \
        "\"env\":{\"type\":\"object\",\"additionalProperties\":{\"type\":\"string\"}," \
        "\"description\":\"Environment variables\"}"
#define SANDBOX_OUT                                                                          \
        "{\"type\":\"object\",\"properties\":{\"sandbox_id\":{\"type\":\"string\"},"         \
        "\"template\":{\"type\":\"string\"},\"state\":{\"type\":\"string\"},"                \
        "\"started_at\":{\"type\":\"string\"},\"expires_at\":{\"type\":\"string\"},"         \
        "\"metadata\":{\"type\":\"object\",\"additionalProperties\":{\"type\":\"string\"}}," \
        "\"session_sandbox\":{\"type\":\"boolean\"}},\"required\":[\"sandbox_id\"]}"

const McpTool mcp_tools[] = {
        {
                .name = "run_code",
                .title = "Run code",
                .description =
                        "Run code in a notebook-style interpreter in a sandbox: Python (default), "
                        "JavaScript or bash; TypeScript, R and Java where the sandbox's template "
                        "has them (elsewhere the run fails: \"this sandbox's template has no "
                        "R\"). Variables, imports and files persist between calls "
                        "in the same context. The value of the last expression is returned; "
                        "matplotlib figures and R plots come back as PNG images, DataFrames as "
                        "HTML. Python has numpy, pandas and matplotlib.",
                .input_schema =
                        "{\"type\":\"object\",\"properties\":{"
                        "\"code\":{\"type\":\"string\",\"description\":\"The code to run\"},"
                        "\"language\":{\"type\":\"string\",\"enum\":[\"python\",\"javascript\","
                        "\"typescript\",\"r\",\"java\",\"bash\"],"
                        "\"description\":\"Default python\"},"
                        "\"context\":{\"type\":\"string\",\"description\":\"A context id (its "
                        "own state); default: the language's default context\"},"
                        "\"timeout\":{\"type\":\"number\",\"exclusiveMinimum\":0,\"maximum\":"
                        "86400,\"description\":\"Seconds (default 300); the run is interrupted "
                        "then, the context survives\"}," ENV_PROP "," SANDBOX_ID_PROP
                        "},\"required\":[\"code\"]}",
                .output_schema =
                        "{\"type\":\"object\",\"properties\":{\"sandbox_id\":{\"type\":"
                        "\"string\"},\"stdout\":{\"type\":\"string\"},\"stderr\":{\"type\":"
                        "\"string\"},\"results\":{\"type\":\"array\",\"items\":{\"type\":"
                        "\"object\",\"properties\":{\"is_main_result\":{\"type\":\"boolean\"},"
                        "\"text\":{\"type\":\"string\"},\"html\":{\"type\":\"string\"},"
                        "\"markdown\":{\"type\":\"string\"},\"formats\":{\"type\":\"array\","
                        "\"items\":{\"type\":\"string\"}}}}},\"error\":{\"type\":\"object\","
                        "\"properties\":{\"name\":{\"type\":\"string\"},\"value\":{\"type\":"
                        "\"string\"},\"traceback\":{\"type\":\"string\"}}},\"timed_out\":{"
                        "\"type\":\"boolean\"},\"truncated\":{\"type\":\"boolean\"}},"
                        "\"required\":[\"sandbox_id\",\"stdout\",\"stderr\",\"results\"]}",
                .destructive = true,
                .open_world = true,
                .run = tool_run_code,
        },
        {
                .name = "run_command",
                .title = "Run a shell command",
                .description = "Run a shell command (sh -c) in a sandbox as user 'user' in "
                               "/home/user, and return its output and exit code; or start it "
                               "in the background and return its pid.",
                .input_schema =
                        "{\"type\":\"object\",\"properties\":{"
                        "\"command\":{\"type\":\"string\",\"description\":\"The command line\"},"
                        "\"cwd\":{\"type\":\"string\",\"description\":\"Working directory\"},"
                        "\"user\":{\"type\":\"string\",\"description\":\"user (default) or "
                        "root\"},"
                        "\"timeout\":{\"type\":\"number\",\"exclusiveMinimum\":0,\"maximum\":"
                        "86400,\"description\":\"Seconds before it is killed (default 300; "
                        "none in the background)\"},"
                        "\"background\":{\"type\":\"boolean\",\"description\":\"Return at once "
                        "with the pid; the command keeps running\"},"
                        "\"stdin\":{\"type\":\"string\",\"description\":\"Text written to its "
                        "standard input, which is then closed\"}," ENV_PROP "," SANDBOX_ID_PROP
                        "},\"required\":[\"command\"]}",
                .output_schema =
                        "{\"type\":\"object\",\"properties\":{\"sandbox_id\":{\"type\":"
                        "\"string\"},\"stdout\":{\"type\":\"string\"},\"stderr\":{\"type\":"
                        "\"string\"},\"exit_code\":{\"type\":\"integer\"},\"pid\":{\"type\":"
                        "\"integer\"},\"background\":{\"type\":\"boolean\"},\"timed_out\":{"
                        "\"type\":\"boolean\"},\"oom_killed\":{\"type\":\"boolean\"},"
                        "\"truncated\":{\"type\":\"boolean\"}},\"required\":[\"sandbox_id\"]}",
                .destructive = true,
                .open_world = true,
                .run = tool_run_command,
        },
        {
                .name = "read_file",
                .title = "Read a file",
                .description = "Read a file from a sandbox: text as text, PNG, JPEG, GIF or "
                               "WebP images as images, other files as a base64 resource.",
                .input_schema =
                        "{\"type\":\"object\",\"properties\":{"
                        "\"path\":{\"type\":\"string\",\"description\":\"Absolute, or "
                        "relative to /home/user\"}," SANDBOX_ID_PROP "},\"required\":[\"path\"]}",
                .read_only = true,
                .run = tool_read_file,
        },
        {
                .name = "write_file",
                .title = "Write a file",
                .description = "Write a file in a sandbox (replacing it; parent directories "
                               "are made).",
                .input_schema =
                        "{\"type\":\"object\",\"properties\":{"
                        "\"path\":{\"type\":\"string\",\"description\":\"Absolute, or relative "
                        "to /home/user\"},"
                        "\"content\":{\"type\":\"string\",\"description\":\"The file's "
                        "content\"},"
                        "\"encoding\":{\"type\":\"string\",\"enum\":[\"utf-8\",\"base64\"],"
                        "\"description\":\"How content is written: utf-8 (default) or base64 "
                        "for binary data\"}," SANDBOX_ID_PROP "},\"required\":[\"path\","
                        "\"content\"]}",
                .output_schema = "{\"type\":\"object\",\"properties\":{\"sandbox_id\":{"
                                 "\"type\":\"string\"},\"path\":{\"type\":\"string\"},\"size\":{"
                                 "\"type\":\"integer\"}},\"required\":[\"sandbox_id\",\"path\","
                                 "\"size\"]}",
                .destructive = true,
                .idempotent = true,
                .run = tool_write_file,
        },
        {
                .name = "list_files",
                .title = "List files",
                .description = "List a directory of a sandbox (entries with type, size, "
                               "permissions, owner and modification time).",
                .input_schema =
                        "{\"type\":\"object\",\"properties\":{"
                        "\"path\":{\"type\":\"string\",\"description\":\"Default /home/user\"},"
                        "\"depth\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":10,"
                        "\"description\":\"Levels to descend (default 1)\"}," SANDBOX_ID_PROP "}}",
                .output_schema =
                        "{\"type\":\"object\",\"properties\":{\"sandbox_id\":{\"type\":"
                        "\"string\"},\"path\":{\"type\":\"string\"},\"entries\":{\"type\":"
                        "\"array\",\"items\":{\"type\":\"object\"}},\"truncated\":{\"type\":"
                        "\"boolean\"}},\"required\":[\"sandbox_id\",\"path\",\"entries\"]}",
                .read_only = true,
                .run = tool_list_files,
        },
        {
                .name = "download_files",
                .title = "Download files",
                .description = "Fetch a directory tree (or one file) of a sandbox as a tar.gz "
                               "archive, returned as a base64 resource, at most 10 MiB.",
                .input_schema = "{\"type\":\"object\",\"properties\":{"
                                "\"path\":{\"type\":\"string\",\"description\":\"A directory or "
                                "file\"}," SANDBOX_ID_PROP "},\"required\":[\"path\"]}",
                .output_schema = "{\"type\":\"object\",\"properties\":{\"sandbox_id\":{\"type\":"
                                 "\"string\"},\"path\":{\"type\":\"string\"},\"uri\":{\"type\":"
                                 "\"string\"},\"bytes\":{\"type\":\"integer\"}},\"required\":["
                                 "\"sandbox_id\",\"path\",\"bytes\"]}",
                .read_only = true,
                .run = tool_download_files,
        },
        {
                .name = "create_sandbox",
                .title = "Create a sandbox",
                .description = "Create a sandbox of its own (beside this session's) and return its "
                               "sandbox_id for the other tools. It is deleted after its timeout "
                               "(default 300 s; set_timeout extends it) or by kill_sandbox.",
                .input_schema =
                        "{\"type\":\"object\",\"properties\":{"
                        "\"template\":{\"type\":\"string\",\"description\":\"Default: "
                        "default (Debian, python3, numpy, pandas, matplotlib, nodejs)\"},"
                        "\"timeout\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":604800,"
                        "\"description\":\"Seconds until it is deleted (default 300)\"},"
                        "\"metadata\":{\"type\":\"object\",\"additionalProperties\":{\"type\":"
                        "\"string\"},\"description\":\"Labels to find it by\"}," ENV_PROP ","
                        "\"cpu\":{\"type\":\"number\",\"description\":\"Cores (default 1)\"},"
                        "\"memory\":{\"type\":\"string\",\"description\":\"e.g. 1Gi (default "
                        "512Mi)\"},"
                        "\"egress\":{\"type\":\"string\",\"enum\":[\"deny\",\"allowlist\","
                        "\"allow\"],\"description\":\"Network egress: none (deny, the "
                        "default), only the allow CIDRs, or all but the deny CIDRs\"},"
                        "\"allow\":{\"type\":\"array\",\"items\":{\"type\":\"string\"},"
                        "\"description\":\"CIDRs for egress allowlist\"},"
                        "\"deny\":{\"type\":\"array\",\"items\":{\"type\":\"string\"},"
                        "\"description\":\"CIDRs for egress allow\"}}}",
                .output_schema = SANDBOX_OUT,
                .run = tool_create_sandbox,
        },
        {
                .name = "list_sandboxes",
                .title = "List sandboxes",
                .description = "List sandboxes, optionally those whose metadata matches and in "
                               "a state.",
                .input_schema = "{\"type\":\"object\",\"properties\":{"
                                "\"metadata\":{\"type\":\"object\",\"additionalProperties\":{"
                                "\"type\":\"string\"},\"description\":\"Every key must match\"},"
                                "\"state\":{\"type\":\"string\",\"enum\":[\"running\","
                                "\"paused\"]}}}",
                .output_schema =
                        "{\"type\":\"object\",\"properties\":{\"sandboxes\":{\"type\":"
                        "\"array\",\"items\":" SANDBOX_OUT "}},\"required\":[\"sandboxes\"]}",
                .read_only = true,
                .run = tool_list_sandboxes,
        },
        {
                .name = "kill_sandbox",
                .title = "Kill a sandbox",
                .description = "Delete a sandbox and everything in it.",
                .input_schema = "{\"type\":\"object\",\"properties\":{" SANDBOX_ID_PROP "}}",
                .output_schema = "{\"type\":\"object\",\"properties\":{\"sandbox_id\":{"
                                 "\"type\":\"string\"},\"killed\":{\"type\":\"boolean\"}},"
                                 "\"required\":[\"sandbox_id\",\"killed\"]}",
                .destructive = true,
                .idempotent = true,
                .run = tool_kill_sandbox,
        },
        {
                .name = "set_timeout",
                .title = "Set a sandbox's timeout",
                .description = "Make a sandbox expire (be deleted) this many seconds from now.",
                .input_schema = "{\"type\":\"object\",\"properties\":{"
                                "\"timeout\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":"
                                "604800,\"description\":\"Seconds from now\"}," SANDBOX_ID_PROP
                                "},\"required\":[\"timeout\"]}",
                .output_schema = SANDBOX_OUT,
                .idempotent = true,
                .run = tool_set_timeout,
        },
        {
                .name = "pause_sandbox",
                .title = "Pause a sandbox",
                .description = "Freeze every process of a sandbox (its timeout stops too) until "
                               "resume_sandbox.",
                .input_schema = "{\"type\":\"object\",\"properties\":{" SANDBOX_ID_PROP "}}",
                .output_schema = SANDBOX_OUT,
                .idempotent = true,
                .run = tool_pause_sandbox,
        },
        {
                .name = "resume_sandbox",
                .title = "Resume a sandbox",
                .description = "Thaw a paused sandbox; optionally give it a new timeout.",
                .input_schema =
                        "{\"type\":\"object\",\"properties\":{"
                        "\"timeout\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":"
                        "604800,\"description\":\"Seconds from now\"}," SANDBOX_ID_PROP "}}",
                .output_schema = SANDBOX_OUT,
                .idempotent = true,
                .run = tool_resume_sandbox,
        },
        {
                .name = "get_metrics",
                .title = "Get a sandbox's metrics",
                .description = "A sandbox's CPU, memory, disk and process use now.",
                .input_schema = "{\"type\":\"object\",\"properties\":{" SANDBOX_ID_PROP "}}",
                .output_schema = "{\"type\":\"object\",\"properties\":{\"sandbox_id\":{"
                                 "\"type\":\"string\"},\"metrics\":{\"type\":\"object\"}},"
                                 "\"required\":[\"sandbox_id\",\"metrics\"]}",
                .read_only = true,
                .run = tool_get_metrics,
        },
};

const size_t mcp_n_tools = ARRAY_SIZE(mcp_tools);

const McpTool *mcp_tool_find(const char *name)
{
        for (size_t i = 0; i < mcp_n_tools; i++)
                if (streq_ptr(mcp_tools[i].name, name))
                        return &mcp_tools[i];
        return NULL;
}

/* ---- argument checks, from the input schema ---- */

static bool type_ok(json_object *v, const char *type)
{
        if (streq_ptr(type, "string"))
                return json_object_is_type(v, json_type_string);
        if (streq_ptr(type, "integer"))
                return json_object_is_type(v, json_type_int) ||
                       (json_object_is_type(v, json_type_double) &&
                        json_object_get_double(v) == (double) (int64_t) json_object_get_double(v));
        if (streq_ptr(type, "number"))
                return json_object_is_type(v, json_type_int) ||
                       json_object_is_type(v, json_type_double);
        if (streq_ptr(type, "boolean"))
                return json_object_is_type(v, json_type_boolean);
        if (streq_ptr(type, "object"))
                return json_object_is_type(v, json_type_object);
        if (streq_ptr(type, "array"))
                return json_object_is_type(v, json_type_array);
        return true;
}

static const char *type_word(const char *type)
{
        return streq_ptr(type, "integer")  ? "an integer"
               : streq_ptr(type, "array")  ? "an array"
               : streq_ptr(type, "object") ? "an object"
                                           : type;
}

static int check_value(const char *name, json_object *v, json_object *schema, char *err,
                       size_t errlen)
{
        const char *type = json_str(schema, "type");
        if (type && !type_ok(v, type)) {
                snprintf(err, errlen, "argument '%s' must be %s%s", name,
                         streq_ptr(type, "string") || streq_ptr(type, "number") ||
                                         streq_ptr(type, "boolean")
                                 ? "a "
                                 : "",
                         type_word(type));
                return -EINVAL;
        }
        json_object *en = json_field(schema, "enum");
        if (en) {
                bool found = false;
                for (size_t i = 0; i < json_object_array_length(en); i++)
                        if (streq_ptr(json_object_get_string(json_object_array_get_idx(en, i)),
                                      json_object_get_string(v)))
                                found = true;
                if (!found) {
                        snprintf(err, errlen, "argument '%s' must be one of %s", name,
                                 json_object_to_json_string_ext(en, JSON_C_TO_STRING_PLAIN));
                        return -EINVAL;
                }
        }
        if (type && (streq_ptr(type, "number") || streq_ptr(type, "integer"))) {
                double d = json_object_get_double(v);
                json_object *min = json_field(schema, "minimum"),
                            *xmin = json_field(schema, "exclusiveMinimum"),
                            *max = json_field(schema, "maximum");
                if ((min && d < json_object_get_double(min)) ||
                    (xmin && d <= json_object_get_double(xmin)) ||
                    (max && d > json_object_get_double(max))) {
                        snprintf(err, errlen, "argument '%s' is out of range (%s%g to %g)", name,
                                 xmin ? "over " : "",
                                 min ? json_object_get_double(min)
                                     : (xmin ? json_object_get_double(xmin) : 0),
                                 max ? json_object_get_double(max) : 1e18);
                        return -EINVAL;
                }
        }
        json_object *items = json_field(schema, "items");
        if (items && json_object_is_type(v, json_type_array))
                for (size_t i = 0; i < json_object_array_length(v); i++)
                        if (check_value(name, json_object_array_get_idx(v, i), items, err, errlen) <
                            0)
                                return -EINVAL;
        json_object *addl = json_field(schema, "additionalProperties");
        if (json_object_is_type(addl, json_type_object) &&
            json_object_is_type(v, json_type_object)) {
                json_object_object_foreach(v, k, val) {
                        (void) k;
                        if (!type_ok(val, json_str(addl, "type") ?: "")) {
                                snprintf(err, errlen, "argument '%s' must map names to %ss", name,
                                         json_str(addl, "type"));
                                return -EINVAL;
                        }
                }
        }
        return 0;
}

int mcp_tool_check_args(const McpTool *t, json_object *args, char *err, size_t errlen)
{
        cleanup_json json_object *schema = json_tokener_parse(t->input_schema);
        if (!schema)
                return -ENOMEM;
        json_object *props = json_obj(schema, "properties");
        json_object_object_foreach(args, k, v) {
                json_object *p = json_field(props, k);
                if (!p) {
                        char names[512] = "";
                        size_t used = 0;
                        json_object_object_foreach(props, pk, pv) {
                                (void) pv;
                                int n = snprintf(names + used, sizeof(names) - used, "%s%s",
                                                 used ? ", " : "", pk);
                                if (n > 0 && (size_t) n < sizeof(names) - used)
                                        used += (size_t) n;
                        }
                        snprintf(err, errlen, "unknown argument '%s': %s takes %s", k, t->name,
                                 names[0] ? names : "none");
                        return -EINVAL;
                }
                if (check_value(k, v, p, err, errlen) < 0)
                        return -EINVAL;
        }
        json_object *req = json_field(schema, "required");
        for (size_t i = 0; req && i < json_object_array_length(req); i++) {
                const char *name = json_object_get_string(json_object_array_get_idx(req, i));
                if (!json_field(args, name)) {
                        snprintf(err, errlen, "missing argument '%s' (%s)", name,
                                 json_str(json_obj(props, name), "description") ?: "required");
                        return -EINVAL;
                }
        }
        return 0;
}

int mcp_tool_run(const McpTool *t, McpCall *c)
{
        char err[600] = "";
        int r = mcp_tool_check_args(t, c->args, err, sizeof(err));
        if (r == -EINVAL)
                return fail(c, "%s: %s", t->name, err);
        if (r < 0)
                return r;
        r = t->run(c);
        if (*c->cancel)
                return -ECANCELED;
        if (r == 0 && c->note[0] && !c->is_error && json_object_array_length(c->content) == 0)
                r = add_text(c, "%s", c->note);
        return r;
}

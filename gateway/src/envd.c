/* envd, port 49983 (E2B-WIRE §4): the Connect services process.Process and
 * filesystem.Filesystem in the JSON codec, /files and /health, over the agent
 * that runs the sandbox (lib's agent client). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "connect.h"
#include "gw-internal.h"
#include "pump.h"
#include "sandpit/json.h"
#include "sandpit/macro.h"
#include "sandpit/util.h"

#define ERRLEN 512

/* ---------------------------------------------------------------- helpers */

/* The user of Authorization: Basic base64("<user>:"), or NULL (the sandbox's
 * default). -EINVAL for a header that is not that. */
static int basic_user(const GwRequest *r, char **ret)
{
        const char *h = gw_header(r, "Authorization");
        *ret = NULL;
        if (!h)
                return 0;
        if (strncasecmp(h, "Basic ", 6) != 0)
                return -EINVAL;
        uint8_t *raw = NULL;
        size_t len = 0;
        int k = gw_connect_b64_decode(h + 6, strlen(h + 6), &raw, &len);
        if (k < 0)
                return -EINVAL;
        cleanup_free char *s = strndup((const char *) raw, len);
        free(raw);
        if (!s)
                return -ENOMEM;
        char *colon = strchr(s, ':');
        if (colon)
                *colon = 0;
        if (!*s)
                return 0;
        *ret = TAKE_PTR(s);
        return 0;
}

static void reply_connect_error(HttpRequest *req, GwConnectCode c, const char *message)
{
        json_object *body = NULL;
        if (gw_connect_error_new(c, message, &body) < 0) {
                http_respond_error(req, 500, "out of memory");
                return;
        }
        gw_reply_json(req, gw_connect_code_http_status(c), body, NULL);
}

static void reply_connect_errno(HttpRequest *req, int r, const char *message)
{
        reply_connect_error(req, gw_connect_code_from_errno(r),
                            message && *message ? message : strerror(-r));
}

/* A whole stream that is only an end-stream frame (an error before anything). */
static void reply_stream_end(HttpRequest *req, GwConnectCode c, const char *message)
{
        char *frame = NULL;
        size_t len = 0;
        if (gw_connect_frame_end(c, message, NULL, &frame, &len) < 0) {
                http_respond_error(req, 500, "out of memory");
                return;
        }
        static const char *const hs[] = {"Content-Type", "application/connect+json", NULL};
        http_respond_raw(req, 200, (char *const *) hs, frame, len);
}

static int write_message(GwPump *p, json_object *msg)
{
        cleanup_free char *frame = NULL;
        size_t len = 0;
        int k = gw_connect_frame_message(msg, &frame, &len);
        return k < 0 ? k : gw_pump_write(p, frame, len);
}

static int write_end(GwPump *p, GwConnectCode c, const char *message)
{
        cleanup_free char *frame = NULL;
        size_t len = 0;
        int k = gw_connect_frame_end(c, message, NULL, &frame, &len);
        return k < 0 ? k : gw_pump_write(p, frame, len);
}

/* {"event": {kind: inner}} (takes inner). */
static json_object *process_event(const char *kind, json_object *inner)
{
        json_object *ev = json_object_new_object(), *outer = json_object_new_object();
        if (!ev || !outer || !inner) {
                json_object_put(ev);
                json_object_put(outer);
                json_object_put(inner);
                return NULL;
        }
        json_object_object_add(ev, kind, inner);
        json_object_object_add(outer, "event", ev);
        return outer;
}

/* An agent file entry as envd's EntryInfo. */
static json_object *entry_info(json_object *e)
{
        json_object *o = json_object_new_object();
        if (!o)
                return NULL;
        const char *type = json_str(e, "type");
        const char *t = !type                    ? "FILE_TYPE_UNSPECIFIED"
                        : streq(type, "file")    ? "FILE_TYPE_FILE"
                        : streq(type, "dir")     ? "FILE_TYPE_DIRECTORY"
                        : streq(type, "symlink") ? "FILE_TYPE_SYMLINK"
                                                 : "FILE_TYPE_UNSPECIFIED";
        static const char *const strs[][2] = {{"name", "name"},
                                              {"path", "path"},
                                              {"permissions", "permissions"},
                                              {"owner", "owner"},
                                              {"group", "group"},
                                              {"modified_time", "modifiedTime"},
                                              {"symlink_target", "symlinkTarget"}};
        for (size_t i = 0; i < ARRAY_SIZE(strs); i++) {
                const char *v = json_str(e, strs[i][0]);
                if (v)
                        json_object_object_add(o, strs[i][1], json_object_new_string(v));
        }
        json_object_object_add(o, "type", json_object_new_string(t));
        json_object *size = json_field(e, "size");
        if (size) {
                char buf[32];
                snprintf(buf, sizeof(buf), "%lld", (long long) json_object_get_int64(size));
                json_object_object_add(o, "size", json_object_new_string(buf));
        }
        json_object *mode = json_field(e, "mode");
        if (mode)
                json_object_object_add(o, "mode", json_object_new_int(json_object_get_int(mode)));
        return o;
}

/* --------------------------------------------------------------- /files */

typedef struct {
        AgentClient *agent;
        char *id;
        char *path;
        char *user;
} FileRead;

static void file_read_free(void *userdata)
{
        FileRead *f = userdata;
        agent_client_free(f->agent);
        free(f->id);
        free(f->path);
        free(f->user);
        free(f);
}

static int file_data(const char *data, size_t len, void *userdata)
{
        return gw_pump_write(userdata, data, len);
}

static int file_read_run(GwPump *p, void *userdata)
{
        FileRead *f = userdata;
        agent_client_set_cancel(f->agent, gw_pump_cancel_flag(p));
        return agent_client_file_read(f->agent, f->id, f->path, f->user, file_data, p);
}

static void file_read_fail(HttpRequest *req, int r, void *userdata)
{
        FileRead *f = userdata;
        if (r == 0) {
                static const char *const hs[] = {"Content-Type", "application/octet-stream", NULL};
                http_respond_raw(req, 200, (char *const *) hs, NULL, 0);
                return;
        }
        const AgentClientError *e = agent_client_error(f->agent);
        if (r == -ENOENT && e->status == 404)
                http_respond_error(req, 404, "path '%s' does not exist", f->path);
        else
                gw_reply_e2b_error(req, r, e->message);
}

static void files_get(GwRequest *r, AgentClient *agent, const char *user)
{
        const char *path = http_request_query(r->req, "path");
        if (!path || !*path) {
                agent_client_free(agent);
                http_respond_error(r->req, 400, "path is required");
                return;
        }
        FileRead *f = calloc(1, sizeof(*f));
        if (!f || !(f->id = strdup(r->route.sandbox_id)) || !(f->path = strdup(path)) ||
            (user && !(f->user = strdup(user)))) {
                if (f)
                        f->agent = agent;
                else
                        agent_client_free(agent);
                if (f)
                        file_read_free(f);
                http_respond_error(r->req, 500, "out of memory");
                return;
        }
        f->agent = agent;
        gw_pump_respond(r->req, "application/octet-stream", file_read_run, file_read_fail,
                        file_read_free, f);
}

/* One file written; its WriteInfo appended to out. */
static int write_one(GwRequest *r, AgentClient *agent, const char *path, const char *user,
                     const void *data, size_t len, json_object *out, char *err, size_t errlen)
{
        cleanup_json json_object *entry = NULL;
        int k = agent_client_file_write(agent, r->route.sandbox_id, path, user, data, len, &entry);
        if (k < 0) {
                snprintf(err, errlen, "%.200s: %.300s", path, agent_client_error(agent)->message);
                return k;
        }
        json_object *w = json_object_new_object();
        if (!w)
                return -ENOMEM;
        const char *name = json_str(entry, "name"), *full = json_str(entry, "path");
        json_object_object_add(w, "name", json_object_new_string(name ? name : path));
        json_object_object_add(w, "type", json_object_new_string("file"));
        json_object_object_add(w, "path", json_object_new_string(full ? full : path));
        json_object_array_add(out, w);
        return 0;
}

/* undici escapes '"', CR and LF in a filename as %22, %0D, %0A. */
static void unescape_filename(char *s)
{
        char *o = s;
        for (char *p = s; *p; p++) {
                if (p[0] == '%' && p[1] && p[2]) {
                        if (strncasecmp(p, "%22", 3) == 0 || strncasecmp(p, "%0D", 3) == 0 ||
                            strncasecmp(p, "%0A", 3) == 0) {
                                if (strncasecmp(p, "%22", 3) == 0)
                                        *o++ = '"';
                                else if (strncasecmp(p, "%0D", 3) == 0)
                                        *o++ = '\r';
                                else
                                        *o++ = '\n';
                                p += 2;
                                continue;
                        }
                }
                *o++ = *p;
        }
        *o = 0;
}

/* A parameter of a Content-Disposition or Content-Type header value. */
static char *header_param(const char *v, size_t vlen, const char *name)
{
        size_t nl = strlen(name);
        for (size_t i = 0; i + nl + 1 < vlen; i++) {
                if ((i == 0 || v[i - 1] == ';' || v[i - 1] == ' ') &&
                    strncasecmp(v + i, name, nl) == 0 && v[i + nl] == '=') {
                        const char *s = v + i + nl + 1, *end = v + vlen;
                        if (s < end && *s == '"') {
                                const char *q = memchr(s + 1, '"', (size_t) (end - s - 1));
                                return q ? strndup(s + 1, (size_t) (q - s - 1)) : NULL;
                        }
                        const char *e = s;
                        while (e < end && *e != ';' && *e != ' ' && *e != '\r')
                                e++;
                        return strndup(s, (size_t) (e - s));
                }
        }
        return NULL;
}

static int multipart_write(GwRequest *r, AgentClient *agent, const char *ct, const char *qpath,
                           const char *user, const char *body, size_t len, json_object *out,
                           char *err, size_t errlen)
{
        cleanup_free char *boundary = header_param(ct, strlen(ct), "boundary");
        if (!boundary || !*boundary) {
                snprintf(err, errlen, "multipart body without a boundary");
                return -EINVAL;
        }
        cleanup_free char *delim = NULL;
        if (asprintf(&delim, "--%s", boundary) < 0)
                return -ENOMEM;
        size_t dl = strlen(delim);
        const char *end = body + len;
        const char *p = memmem(body, len, delim, dl);
        while (p) {
                p += dl;
                if (end - p >= 2 && p[0] == '-' && p[1] == '-')
                        return 0;
                if (end - p < 2 || p[0] != '\r' || p[1] != '\n')
                        break;
                p += 2;
                const char *hend = memmem(p, (size_t) (end - p), "\r\n\r\n", 4);
                if (!hend)
                        break;
                cleanup_free char *name = NULL, *filename = NULL;
                for (const char *h = p; h < hend;) {
                        const char *eol = memmem(h, (size_t) (hend - h), "\r\n", 2);
                        if (!eol)
                                eol = hend;
                        size_t hl = (size_t) (eol - h);
                        if (hl > 20 && strncasecmp(h, "Content-Disposition:", 20) == 0) {
                                name = header_param(h + 20, hl - 20, "name");
                                filename = header_param(h + 20, hl - 20, "filename");
                        }
                        h = eol + 2;
                }
                const char *data = hend + 4;
                cleanup_free char *next_delim = NULL;
                if (asprintf(&next_delim, "\r\n%s", delim) < 0)
                        return -ENOMEM;
                const char *dend = memmem(data, (size_t) (end - data), next_delim, dl + 2);
                if (!dend)
                        break;
                if (name && streq(name, "file")) {
                        if (filename)
                                unescape_filename(filename);
                        const char *path = qpath ? qpath : filename;
                        if (!path || !*path) {
                                snprintf(err, errlen, "a file part without a path");
                                return -EINVAL;
                        }
                        int k = write_one(r, agent, path, user, data, (size_t) (dend - data), out,
                                          err, errlen);
                        if (k < 0)
                                return k;
                }
                p = dend + 2;
        }
        snprintf(err, errlen, "malformed multipart body");
        return -EINVAL;
}

static void files_post(GwRequest *r, AgentClient *agent, const char *user)
{
        cleanup_agent_client AgentClient *a = agent;
        char err[ERRLEN] = "";
        const char *ct = gw_header(r, "Content-Type");
        const char *qpath = http_request_query(r->req, "path");
        const char *enc = gw_header(r, "Content-Encoding");
        if (enc && strcasecmp(enc, "identity") != 0) {
                http_respond_error(r->req, 415, "Content-Encoding %s is not supported", enc);
                return;
        }
        size_t len = 0;
        const char *body = http_request_body(r->req, &len);
        cleanup_json json_object *out = json_object_new_array();
        if (!out) {
                http_respond_error(r->req, 500, "out of memory");
                return;
        }
        int k;
        if (ct && strncasecmp(ct, "multipart/form-data", 19) == 0) {
                k = multipart_write(r, a, ct, qpath, user, body ? body : "", len, out, err,
                                    sizeof(err));
        } else if (ct && strncasecmp(ct, "application/octet-stream", 24) == 0) {
                if (!qpath || !*qpath) {
                        http_respond_error(r->req, 400, "path is required");
                        return;
                }
                k = write_one(r, a, qpath, user, body ? body : "", len, out, err, sizeof(err));
        } else {
                http_respond_error(r->req, 415,
                                   "uploads are multipart/form-data or application/octet-stream");
                return;
        }
        if (k < 0) {
                gw_reply_e2b_error(r->req, k, err);
                return;
        }
        if (json_object_array_length(out) == 0) {
                http_respond_error(r->req, 400, "no file in the upload");
                return;
        }
        gw_reply_json(r->req, 200, TAKE_PTR(out), NULL);
}

/* ------------------------------------------------------- process.Process */

typedef struct {
        AgentClient *agent;
        char *id;
        json_object *req; /* the agent's exec body */
        int pid;          /* Connect: reconnect to this pid */
        GwPump *pump;
        bool started;
        bool ended;
        bool timed_out;
} ProcStream;

static void proc_stream_free(void *userdata)
{
        ProcStream *s = userdata;
        agent_client_free(s->agent);
        free(s->id);
        if (s->req)
                json_object_put(s->req);
        free(s);
}

static int proc_event(json_object *ev, void *userdata)
{
        ProcStream *s = userdata;
        const char *type = json_str(ev, "type");
        if (!type)
                return 0;
        json_object *msg = NULL;
        if (!s->started) {
                /* The attached stream has no start event of its own. */
                json_object *start = json_object_new_object();
                if (start)
                        json_object_object_add(start, "pid", json_object_new_int(s->pid));
                msg = process_event("start", start);
                int k = msg ? write_message(s->pump, msg) : -ENOMEM;
                json_object_put(msg);
                msg = NULL;
                if (k < 0)
                        return k;
                s->started = true;
        }
        if (streq(type, "start")) {
                if (s->started)
                        return 0;
                json_object *start = json_object_new_object();
                if (start)
                        json_object_object_add(
                                start, "pid",
                                json_object_new_int(json_object_get_int(json_field(ev, "pid"))));
                msg = process_event("start", start);
                s->started = true;
        } else if (streq(type, "stdout") || streq(type, "stderr") || streq(type, "pty")) {
                json_object *b64 = NULL;
                const char *text = json_str(ev, "data");
                const char *raw = json_str(ev, "data_b64");
                if (text) {
                        if (gw_connect_bytes_to_json(text, strlen(text), &b64) < 0)
                                return -ENOMEM;
                } else if (raw) {
                        b64 = json_object_new_string(raw);
                } else {
                        return 0;
                }
                json_object *data = json_object_new_object();
                if (data)
                        json_object_object_add(data, type, b64);
                else
                        json_object_put(b64);
                msg = process_event("data", data);
        } else if (streq(type, "exit")) {
                int code = json_object_get_int(json_field(ev, "exit_code"));
                int sig = json_object_get_int(json_field(ev, "signal"));
                s->timed_out = json_object_get_boolean(json_field(ev, "timed_out"));
                char status[64];
                if (sig > 0)
                        snprintf(status, sizeof(status), "signal: %s",
                                 sig == 9    ? "killed"
                                 : sig == 15 ? "terminated"
                                             : "other");
                else
                        snprintf(status, sizeof(status), "exit status %d", code);
                json_object *end = json_object_new_object();
                if (end) {
                        json_object_object_add(end, "exitCode", json_object_new_int(code));
                        json_object_object_add(end, "exited", json_object_new_boolean(true));
                        json_object_object_add(end, "status", json_object_new_string(status));
                        if (sig > 0)
                                json_object_object_add(end, "error",
                                                       json_object_new_string(status));
                }
                msg = process_event("end", end);
                s->ended = true;
        } else {
                return 0;
        }
        if (!msg)
                return -ENOMEM;
        int k = write_message(s->pump, msg);
        json_object_put(msg);
        return k;
}

/* -ESRCH when the sandbox has no process pid. */
static int process_exists(AgentClient *a, const char *id, int pid)
{
        cleanup_json json_object *procs = NULL;
        int k = agent_client_processes(a, id, &procs);
        if (k < 0)
                return k;
        for (size_t i = 0; i < json_object_array_length(procs); i++)
                if (json_object_get_int(json_field(json_object_array_get_idx(procs, i), "pid")) ==
                    pid)
                        return 0;
        return -ESRCH;
}

static int proc_run(GwPump *p, void *userdata)
{
        ProcStream *s = userdata;
        s->pump = p;
        agent_client_set_cancel(s->agent, gw_pump_cancel_flag(p));
        int k;
        /* Started in the background and then attached to, so the process
         * outlives this stream as envd's do (commands.connect, list, kill by
         * pid) and its output from the start is in the attached stream. */
        if (s->req) {
                k = agent_client_exec_background(s->agent, s->id, s->req, &s->pid);
                if (k < 0)
                        return k;
        } else {
                k = process_exists(s->agent, s->id, s->pid);
                if (k < 0)
                        return k;
        }
        /* The start event at once: the SDK waits for it. */
        json_object *start = json_object_new_object();
        if (start)
                json_object_object_add(start, "pid", json_object_new_int(s->pid));
        json_object *msg = process_event("start", start);
        k = msg ? write_message(p, msg) : -ENOMEM;
        json_object_put(msg);
        if (k < 0)
                return k;
        s->started = true;
        k = agent_client_process_stream(s->agent, s->id, s->pid, proc_event, s);
        if (!s->started)
                return k < 0 ? k : -EIO;
        if (k == -EPIPE || k == -ECANCELED)
                return k; /* the client went away */
        if (k < 0)
                return write_end(p, GW_CONNECT_UNAVAILABLE, agent_client_error(s->agent)->message);
        if (!s->ended)
                return write_end(p, GW_CONNECT_UNAVAILABLE,
                                 "the process's stream ended without its exit (the sandbox is "
                                 "gone)");
        if (s->timed_out)
                return write_end(p, GW_CONNECT_DEADLINE_EXCEEDED, "the command timed out");
        return write_end(p, GW_CONNECT_OK, NULL);
}

static void proc_fail(HttpRequest *req, int r, void *userdata)
{
        ProcStream *s = userdata;
        const AgentClientError *e = agent_client_error(s->agent);
        int k = r;
        /* The agent's 409 is a sandbox that is not running. */
        if (e->status == 409)
                k = -EBUSY;
        if (r == -ESRCH) {
                char m[64];
                snprintf(m, sizeof(m), "process %d not found", s->pid);
                reply_stream_end(req, GW_CONNECT_NOT_FOUND, m);
                return;
        }
        reply_stream_end(req, gw_connect_code_from_errno(k),
                         e->message[0] ? e->message : strerror(-r));
}

/* The size of a PTY message: {"size": {"cols": C, "rows": R}}. */
static int pty_size(json_object *pty, unsigned *cols, unsigned *rows)
{
        json_object *size = json_field(pty, "size");
        uint32_t c = 0, r = 0;
        if (gw_connect_uint32_from_json(json_field(size, "cols"), &c) < 0 ||
            gw_connect_uint32_from_json(json_field(size, "rows"), &r) < 0 || c == 0 || r == 0 ||
            c > 65535 || r > 65535)
                return -EINVAL;
        *cols = c;
        *rows = r;
        return 0;
}

static json_object *exec_body(json_object *msg, const char *user, const char *timeout_hdr,
                              char *err, size_t errlen)
{
        json_object *proc = json_field(msg, "process");
        const char *cmd = json_str(proc, "cmd");
        if (!cmd || !*cmd) {
                snprintf(err, errlen, "process.cmd is required");
                return NULL;
        }
        unsigned cols = 0, rows = 0;
        json_object *pty = json_field(msg, "pty");
        if (pty && pty_size(pty, &cols, &rows) < 0) {
                snprintf(err, errlen, "pty.size needs cols and rows, 1 to 65535");
                return NULL;
        }
        cleanup_json json_object *b = json_object_new_object();
        json_object *argv = json_object_new_array();
        if (!b || !argv) {
                json_object_put(argv);
                return NULL;
        }
        json_object_object_add(b, "cmd", argv);
        json_object_array_add(argv, json_object_new_string(cmd));
        json_object *args = json_field(proc, "args");
        for (size_t i = 0; args && json_object_is_type(args, json_type_array) &&
                           i < json_object_array_length(args);
             i++) {
                json_object *a = json_object_array_get_idx(args, i);
                if (!json_object_is_type(a, json_type_string)) {
                        snprintf(err, errlen, "process.args holds strings");
                        return NULL;
                }
                json_object_array_add(argv, json_object_get(a));
        }
        json_object *envs = json_field(proc, "envs");
        if (envs && json_object_is_type(envs, json_type_object))
                json_object_object_add(b, "env", json_object_get(envs));
        const char *cwd = json_str(proc, "cwd");
        if (cwd && *cwd)
                json_object_object_add(b, "cwd", json_object_new_string(cwd));
        if (user)
                json_object_object_add(b, "user", json_object_new_string(user));
        const char *tag = json_str(msg, "tag");
        if (tag)
                json_object_object_add(b, "tag", json_object_new_string(tag));
        if (pty) {
                json_object *size = json_object_new_object();
                if (!size)
                        return NULL;
                json_object_object_add(size, "cols", json_object_new_int64(cols));
                json_object_object_add(size, "rows", json_object_new_int64(rows));
                json_object_object_add(b, "pty", size);
        }
        json_object *stdin_open = json_field(msg, "stdin");
        if (stdin_open && json_object_get_boolean(stdin_open))
                json_object_object_add(b, "stdin_open", json_object_new_boolean(true));
        uint64_t ms = 0;
        if (timeout_hdr && gw_connect_timeout_parse(timeout_hdr, &ms) == 0 && ms > 0)
                json_object_object_add(b, "timeout", json_object_new_double((double) ms / 1000.0));
        return TAKE_PTR(b);
}

static void process_stream(GwRequest *r, AgentClient *agent, const char *method, json_object *msg,
                           const char *user)
{
        char err[ERRLEN] = "";
        ProcStream *s = calloc(1, sizeof(*s));
        if (!s || !(s->id = strdup(r->route.sandbox_id))) {
                free(s);
                agent_client_free(agent);
                reply_stream_end(r->req, GW_CONNECT_INTERNAL, "out of memory");
                return;
        }
        s->agent = agent;
        if (streq(method, "Start")) {
                s->req = exec_body(msg, user, gw_header(r, "Connect-Timeout-Ms"), err, sizeof(err));
                if (!s->req) {
                        proc_stream_free(s);
                        reply_stream_end(r->req, GW_CONNECT_INVALID_ARGUMENT, err);
                        return;
                }
        } else {
                uint32_t pid = 0;
                json_object *sel = json_field(msg, "process");
                if (gw_connect_uint32_from_json(json_field(sel, "pid"), &pid) < 0 || pid == 0) {
                        proc_stream_free(s);
                        reply_stream_end(r->req, GW_CONNECT_INVALID_ARGUMENT,
                                         "process.pid is required (tags are not supported)");
                        return;
                }
                s->pid = (int) pid;
        }
        gw_pump_respond(r->req, "application/connect+json", proc_run, proc_fail, proc_stream_free,
                        s);
}

/* The pid of a ProcessSelector. */
static int selector_pid(json_object *msg, int *ret)
{
        uint32_t pid = 0;
        json_object *sel = json_field(msg, "process");
        if (gw_connect_uint32_from_json(json_field(sel, "pid"), &pid) < 0 || pid == 0)
                return -EINVAL;
        *ret = (int) pid;
        return 0;
}

static void process_unary(GwRequest *r, AgentClient *a, const char *method, json_object *msg)
{
        const char *id = r->route.sandbox_id;
        int pid = 0, k;
        if (streq(method, "List")) {
                cleanup_json json_object *procs = NULL;
                k = agent_client_processes(a, id, &procs);
                if (k < 0)
                        goto fail;
                json_object *out = json_object_new_object(), *arr = json_object_new_array();
                for (size_t i = 0; arr && i < json_object_array_length(procs); i++) {
                        json_object *p = json_object_array_get_idx(procs, i);
                        if (!json_object_get_boolean(json_field(p, "running")))
                                continue;
                        json_object *info = json_object_new_object(),
                                    *cfg = json_object_new_object(),
                                    *args = json_object_new_array();
                        json_object *cmd = json_field(p, "cmd");
                        for (size_t j = 1; cmd && j < json_object_array_length(cmd); j++)
                                json_object_array_add(
                                        args, json_object_get(json_object_array_get_idx(cmd, j)));
                        json_object *c0 = cmd ? json_object_array_get_idx(cmd, 0) : NULL;
                        json_object_object_add(
                                cfg, "cmd",
                                json_object_new_string(c0 ? json_object_get_string(c0) : ""));
                        json_object_object_add(cfg, "args", args);
                        json_object_object_add(info, "config", cfg);
                        json_object_object_add(
                                info, "pid",
                                json_object_new_int(json_object_get_int(json_field(p, "pid"))));
                        const char *tag = json_str(p, "tag");
                        if (tag)
                                json_object_object_add(info, "tag", json_object_new_string(tag));
                        json_object_array_add(arr, info);
                }
                json_object_object_add(out, "processes", arr);
                gw_reply_json(r->req, 200, out, NULL);
                return;
        }
        if (selector_pid(msg, &pid) < 0) {
                reply_connect_error(r->req, GW_CONNECT_INVALID_ARGUMENT,
                                    "process.pid is required (tags are not supported)");
                return;
        }
        if (streq(method, "SendSignal")) {
                const char *sig = json_str(msg, "signal");
                const char *name = sig && strstr(sig, "SIGTERM") ? "SIGTERM" : "SIGKILL";
                k = agent_client_process_signal(a, id, pid, name);
        } else if (streq(method, "SendInput")) {
                json_object *in = json_field(msg, "input");
                json_object *v = json_field(in, "stdin");
                if (!v)
                        v = json_field(in, "pty");
                uint8_t *data = NULL;
                size_t len = 0;
                if (v && gw_connect_bytes_from_json(v, &data, &len) < 0) {
                        reply_connect_error(r->req, GW_CONNECT_INVALID_ARGUMENT,
                                            "input is base64 bytes");
                        return;
                }
                k = agent_client_process_stdin(a, id, pid, data, len, false);
                free(data);
        } else if (streq(method, "CloseStdin")) {
                k = agent_client_process_stdin(a, id, pid, NULL, 0, true);
        } else {
                /* Update: a PTY resize (the only thing it carries). */
                unsigned cols = 0, rows = 0;
                if (pty_size(json_field(msg, "pty"), &cols, &rows) < 0) {
                        reply_connect_error(r->req, GW_CONNECT_INVALID_ARGUMENT,
                                            "pty.size needs cols and rows, 1 to 65535");
                        return;
                }
                k = agent_client_process_resize(a, id, pid, cols, rows);
                if (k < 0 && agent_client_error(a)->status == 409) {
                        reply_connect_error(r->req, GW_CONNECT_FAILED_PRECONDITION,
                                            agent_client_error(a)->message);
                        return;
                }
        }
        if (k < 0)
                goto fail;
        gw_reply_json(r->req, 200, json_object_new_object(), NULL);
        return;
fail:
        reply_connect_errno(r->req, agent_client_error(a)->status == 409 ? -EBUSY : k,
                            agent_client_error(a)->message);
}

/* --------------------------------------------------- filesystem.Filesystem */

static void filesystem_unary(GwRequest *r, AgentClient *a, const char *method, json_object *msg,
                             const char *user)
{
        const char *id = r->route.sandbox_id;
        const char *path = json_str(msg, "path");
        cleanup_json json_object *res = NULL;
        json_object *out = NULL;
        int k;
        if (streq(method, "Move")) {
                const char *src = json_str(msg, "source"), *dst = json_str(msg, "destination");
                if (!src || !dst) {
                        reply_connect_error(r->req, GW_CONNECT_INVALID_ARGUMENT,
                                            "source and destination are required");
                        return;
                }
                k = agent_client_mv(a, id, src, dst, user, true, &res);
                if (k < 0)
                        goto fail;
                out = json_object_new_object();
                json_object_object_add(out, "entry", entry_info(res));
                gw_reply_json(r->req, 200, out, NULL);
                return;
        }
        if (!path || !*path) {
                reply_connect_error(r->req, GW_CONNECT_INVALID_ARGUMENT, "path is required");
                return;
        }
        if (streq(method, "Stat") || streq(method, "MakeDir")) {
                k = streq(method, "Stat") ? agent_client_stat(a, id, path, user, &res)
                                          : agent_client_mkdir(a, id, path, user, true, &res);
                if (k < 0)
                        goto fail;
                out = json_object_new_object();
                json_object_object_add(out, "entry", entry_info(res));
        } else if (streq(method, "ListDir")) {
                uint32_t depth = 1;
                json_object *d = json_field(msg, "depth");
                if (d && (gw_connect_uint32_from_json(d, &depth) < 0 || depth > 64)) {
                        reply_connect_error(r->req, GW_CONNECT_INVALID_ARGUMENT,
                                            "depth is 1 to 64");
                        return;
                }
                k = agent_client_ls(a, id, path, user, depth ? depth : 1, &res);
                if (k < 0)
                        goto fail;
                out = json_object_new_object();
                json_object *arr = json_object_new_array();
                for (size_t i = 0; i < json_object_array_length(res); i++)
                        json_object_array_add(arr, entry_info(json_object_array_get_idx(res, i)));
                json_object_object_add(out, "entries", arr);
        } else if (streq(method, "Remove")) {
                k = agent_client_rm(a, id, path, user, true);
                if (k < 0)
                        goto fail;
                out = json_object_new_object();
        } else {
                char m[128];
                snprintf(m, sizeof(m), "filesystem.Filesystem/%s is not supported yet", method);
                reply_connect_error(r->req, GW_CONNECT_UNIMPLEMENTED, m);
                return;
        }
        gw_reply_json(r->req, 200, out, NULL);
        return;
fail:
        reply_connect_errno(r->req,
                            agent_client_error(a)->status == 409 && k != -EEXIST ? -EBUSY : k,
                            agent_client_error(a)->message);
}

/* ----------------------------------------------- filesystem.Filesystem/WatchDir */

typedef struct {
        AgentClient *agent;
        char *id;
        char *path; /* the watched directory */
        char *user;
        bool recursive;
        bool started;
        GwPump *pump;
} Watch;

static void watch_free(void *userdata)
{
        Watch *w = userdata;
        agent_client_free(w->agent);
        free(w->id);
        free(w->path);
        free(w->user);
        free(w);
}

static int watch_event(json_object *ev, void *userdata)
{
        Watch *w = userdata;
        const char *type = json_str(ev, "type");
        if (!type)
                return 0;
        cleanup_json json_object *msg = json_object_new_object();
        if (!msg)
                return -ENOMEM;
        if (streq(type, "start")) {
                if (w->started)
                        return 0;
                w->started = true;
                json_object_object_add(msg, "start", json_object_new_object());
        } else if (streq(type, "keepalive")) {
                json_object_object_add(msg, "keepalive", json_object_new_object());
        } else {
                json_object *fe = gw_watch_event_to_envd(ev, w->path);
                if (!fe)
                        return 0; /* overflow and anything new: nothing E2B has */
                json_object_object_add(msg, "filesystem", fe);
        }
        return write_message(w->pump, msg);
}

static int watch_run(GwPump *p, void *userdata)
{
        Watch *w = userdata;
        w->pump = p;
        agent_client_set_cancel(w->agent, gw_pump_cancel_flag(p));
        int k = agent_client_watch(w->agent, w->id, w->path, w->user, w->recursive, watch_event, w);
        if (!w->started)
                return k < 0 ? k : -EIO;
        if (k == -EPIPE || k == -ECANCELED)
                return k;
        if (k < 0)
                return write_end(p, GW_CONNECT_UNAVAILABLE, agent_client_error(w->agent)->message);
        return write_end(p, GW_CONNECT_OK, NULL);
}

static void watch_fail(HttpRequest *req, int r, void *userdata)
{
        Watch *w = userdata;
        const AgentClientError *e = agent_client_error(w->agent);
        reply_stream_end(req, gw_connect_code_from_errno(e->status == 409 ? -EBUSY : r),
                         e->message[0] ? e->message : strerror(-r));
}

static void watch_dir(GwRequest *r, AgentClient *agent, json_object *msg, const char *user)
{
        const char *path = json_str(msg, "path");
        if (!path || !*path) {
                agent_client_free(agent);
                reply_stream_end(r->req, GW_CONNECT_INVALID_ARGUMENT, "path is required");
                return;
        }
        Watch *w = calloc(1, sizeof(*w));
        if (!w || !(w->id = strdup(r->route.sandbox_id)) || !(w->path = strdup(path)) ||
            (user && !(w->user = strdup(user)))) {
                if (w) {
                        w->agent = agent;
                        watch_free(w);
                } else {
                        agent_client_free(agent);
                }
                reply_stream_end(r->req, GW_CONNECT_INTERNAL, "out of memory");
                return;
        }
        w->agent = agent;
        w->recursive = json_object_get_boolean(json_field(msg, "recursive"));
        gw_pump_respond(r->req, "application/connect+json", watch_run, watch_fail, watch_free, w);
}

/* ---------------------------- filesystem.Filesystem's polling watchers */

static bool watcher_method(const char *method)
{
        return streq(method, "CreateWatcher") || streq(method, "GetWatcherEvents") ||
               streq(method, "RemoveWatcher");
}

static void watcher_unary(GwRequest *r, AgentClient *agent, const char *method, json_object *msg,
                          const char *user)
{
        GwWatchers *ws = r->gw->watchers;
        const char *sid = r->route.sandbox_id;
        char err[ERRLEN] = "";
        int k;
        if (streq(method, "CreateWatcher")) {
                const char *path = json_str(msg, "path");
                if (!path || !*path) {
                        agent_client_free(agent);
                        reply_connect_error(r->req, GW_CONNECT_INVALID_ARGUMENT,
                                            "path is required");
                        return;
                }
                char id[GW_WATCHER_ID_LEN + 1];
                k = gw_watcher_create(ws, agent, sid, path, user,
                                      json_object_get_boolean(json_field(msg, "recursive")), id,
                                      err, sizeof(err));
                if (k < 0) {
                        reply_connect_errno(r->req, k, err);
                        return;
                }
                json_object *out = json_object_new_object();
                json_object_object_add(out, "watcherId", json_object_new_string(id));
                gw_reply_json(r->req, 200, out, NULL);
                return;
        }
        agent_client_free(agent);
        /* proto3 JSON: lowerCamelCase, the proto name accepted too. */
        const char *id = json_str(msg, "watcherId");
        if (!id)
                id = json_str(msg, "watcher_id");
        if (!id || !*id) {
                reply_connect_error(r->req, GW_CONNECT_INVALID_ARGUMENT, "watcherId is required");
                return;
        }
        json_object *out = json_object_new_object();
        if (streq(method, "GetWatcherEvents")) {
                json_object *events = NULL;
                k = gw_watcher_events(ws, sid, id, &events, err, sizeof(err));
                if (k == 0)
                        json_object_object_add(out, "events", events);
        } else {
                k = gw_watcher_remove(ws, sid, id);
                if (k == -ENOENT)
                        snprintf(err, sizeof(err), "no watcher %s in this sandbox", id);
        }
        if (k < 0) {
                json_object_put(out);
                reply_connect_errno(r->req, k, err);
                return;
        }
        gw_reply_json(r->req, 200, out, NULL);
}

/* ----------------------------------------------------------------- dispatch */

static void rpc(GwRequest *r, const char *user)
{
        cleanup_free char *service = NULL, *method = NULL;
        if (!streq(r->method, "POST") || gw_connect_path_parse(r->path, &service, &method) < 0) {
                reply_connect_error(r->req, GW_CONNECT_UNIMPLEMENTED, "no such procedure");
                return;
        }
        bool streaming = (streq(service, "process.Process") &&
                          (streq(method, "Start") || streq(method, "Connect"))) ||
                         (streq(service, "filesystem.Filesystem") && streq(method, "WatchDir"));
        bool known_unary = (streq(service, "process.Process") &&
                            (streq(method, "List") || streq(method, "SendInput") ||
                             streq(method, "SendSignal") || streq(method, "CloseStdin") ||
                             streq(method, "Update"))) ||
                           (streq(service, "filesystem.Filesystem") &&
                            (streq(method, "Stat") || streq(method, "MakeDir") ||
                             streq(method, "Move") || streq(method, "ListDir") ||
                             streq(method, "Remove") || streq(method, "CreateWatcher") ||
                             streq(method, "GetWatcherEvents") || streq(method, "RemoveWatcher")));
        if (!streaming && !known_unary) {
                char m[160];
                bool watch =
                        (streq(service, "filesystem.Filesystem") && streq(method, "WatchDir")) ||
                        (streq(service, "process.Process") && streq(method, "StreamInput"));
                snprintf(m, sizeof(m), "%s/%s is %s", service, method,
                         watch ? "not supported yet" : "not a procedure of envd");
                reply_connect_error(r->req, GW_CONNECT_UNIMPLEMENTED, m);
                return;
        }
        GwConnectContentType ct;
        const char *cterr = NULL;
        int k = gw_connect_content_type_parse(gw_header(r, "Content-Type"), &ct, &cterr);
        if (k == -EOPNOTSUPP) {
                reply_connect_error(r->req, GW_CONNECT_UNIMPLEMENTED, cterr);
                return;
        }
        if (k < 0 || (streaming && ct != GW_CONNECT_CT_STREAM_JSON) ||
            (!streaming && ct != GW_CONNECT_CT_UNARY_JSON)) {
                http_respond_error(r->req, 415, "%s",
                                   cterr ? cterr : "wrong content type for this procedure");
                return;
        }
        if (gw_connect_protocol_version_check(gw_header(r, "Connect-Protocol-Version")) < 0) {
                reply_connect_error(r->req, GW_CONNECT_INVALID_ARGUMENT,
                                    "Connect-Protocol-Version must be 1");
                return;
        }
        size_t len = 0;
        const char *body = http_request_body(r->req, &len);
        cleanup_json json_object *msg = NULL;
        if (streaming) {
                const char *perr = NULL;
                k = gw_connect_parse_single(body ? body : "", len, GW_CONNECT_DEFAULT_MAX_MESSAGE,
                                            &msg, &perr);
                if (k < 0) {
                        reply_stream_end(r->req, GW_CONNECT_INVALID_ARGUMENT, perr);
                        return;
                }
        } else {
                msg = body && len ? json_tokener_parse(body) : json_object_new_object();
                if (!msg || !json_object_is_type(msg, json_type_object)) {
                        reply_connect_error(r->req, GW_CONNECT_INVALID_ARGUMENT,
                                            "the body is not a JSON object");
                        return;
                }
        }
        char err[ERRLEN] = "";
        AgentClient *agent = NULL;
        k = r->gw->backend.ops->agent(r->gw->backend.data, r->route.sandbox_id, &agent, err,
                                      sizeof(err));
        if (k < 0) {
                if (streaming)
                        reply_stream_end(r->req, gw_connect_code_from_errno(k), err);
                else
                        reply_connect_errno(r->req, k, err);
                return;
        }
        if (streaming) {
                if (streq(service, "filesystem.Filesystem"))
                        watch_dir(r, agent, msg, user);
                else
                        process_stream(r, agent, method, msg, user);
                return;
        }
        if (streq(service, "filesystem.Filesystem") && watcher_method(method)) {
                watcher_unary(r, agent, method, msg, user);
                return;
        }
        cleanup_agent_client AgentClient *a = agent;
        if (streq(service, "process.Process"))
                process_unary(r, a, method, msg);
        else
                filesystem_unary(r, a, method, msg, user);
}

void gw_envd_handle(GwRequest *r)
{
        cleanup_free char *user = NULL;
        if (basic_user(r, &user) < 0) {
                http_respond_error(r->req, 401, "Authorization must be Basic base64(user:)");
                return;
        }
        if (streq(r->path, "/health")) {
                http_respond_empty(r->req, 204);
                return;
        }
        if (streq(r->path, "/files")) {
                const char *qu = http_request_query(r->req, "username");
                const char *u = qu && *qu ? qu : user;
                char err[ERRLEN] = "";
                AgentClient *agent = NULL;
                int k = r->gw->backend.ops->agent(r->gw->backend.data, r->route.sandbox_id, &agent,
                                                  err, sizeof(err));
                if (k < 0) {
                        gw_reply_e2b_error(r->req, k, err);
                        return;
                }
                if (streq(r->method, "GET"))
                        files_get(r, agent, u);
                else if (streq(r->method, "POST") || streq(r->method, "PUT"))
                        files_post(r, agent, u);
                else {
                        agent_client_free(agent);
                        http_respond_error(r->req, 405, "%s is not allowed on /files", r->method);
                }
                return;
        }
        rpc(r, user);
}

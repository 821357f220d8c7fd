/* HTTP handlers for a sandbox's files (see api-files.h, docs/files.md). */
#include "api-files.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api-build.h"
#include "cgroup.h"
#include "files-archive.h"
#include "files-watch.h"
#include "files.h"
#include "fsroot.h"
#include "sandpit/json.h"
#include "sandpit/macro.h"
#include "sandpit/util.h"

static void fsroot_donep(FsRoot *r)
{
        fsroot_done(r);
}
#define cleanup_fsroot __attribute__((cleanup(fsroot_donep)))

/* Answers a failed file operation on path: the status from the one table
 * (http_respond_errno), a message that names the path (ENAMETOOLONG and
 * the rest: strerror). */
static void respond_fs_error(HttpRequest *req, int r, const char *path)
{
        const char *what = NULL;
        switch (-r) {
        case ENOENT:
                what = " does not exist";
                break;
        case ENOTDIR:
                what = ": a component is not a directory";
                break;
        case EISDIR:
                what = " is a directory";
                break;
        case EACCES:
        case EPERM:
                what = ": permission denied";
                break;
        case EEXIST:
                what = " already exists";
                break;
        case ENOTEMPTY:
                http_respond_errno(req, r, "directory '%s' is not empty", path);
                return;
        case ELOOP:
                what = ": too many levels of symbolic links";
                break;
        case EXDEV:
                what = " leaves the sandbox's filesystem";
                break;
        case EFBIG:
                what = ": size limit exceeded";
                break;
        case ENOSPC:
        case EDQUOT:
                http_respond_error(req, http_status_from_errno(r),
                                   "no space left in the sandbox writing '%s'", path);
                return;
        case EINVAL:
        case ENXIO: /* a FIFO without a reader */
                what = ": invalid (not a regular file, or the root)";
                break;
        default:
                http_respond_errno(req, r, "path '%s': %s", path, strerror(-r));
                return;
        }
        http_respond_errno(req, r, "path '%s'%s", path, what);
}

/* Opens the sandbox's root as the requested user (?user=, else the sandbox's);
 * on failure answers and returns < 0. ret_name (may be NULL): the sandbox's
 * cgroup name. */
static int open_root(Agent *a, HttpRequest *req, const char *id, FsRoot *ret, char **ret_name)
{
        SandboxFsInfo info;
        int r = sandbox_fs_info(a, id, &info);
        if (r == -ENOENT) {
                api_sandbox_not_found(req, id);
                return r;
        }
        if (r == -EBUSY) {
                http_respond_error(req, 409, "sandbox %s is not running", id);
                return r;
        }
        if (r < 0) {
                api_respond_errno(req, r, NULL, "cannot reach sandbox");
                return r;
        }
        const char *user = http_request_query(req, "user");
        if (!user)
                user = info.user;
        r = fsroot_open(info.rootfs, user, ret);
        if (r == 0)
                ret->id_shift = info.id_shift;
        if (r == -ENOENT || r == -EINVAL)
                http_respond_error(req, 400, "unknown user \"%.64s\" in sandbox %s", user, id);
        else if (r < 0)
                api_respond_errno(req, r, NULL, "cannot open the sandbox's filesystem");
        if (r >= 0 && ret_name)
                *ret_name = TAKE_PTR(info.name);
        sandbox_fs_info_done(&info);
        return r;
}

/* The normalized path of the "path" query parameter (or of s when given). */
static int get_path(HttpRequest *req, const FsRoot *root, const char *s, const char *what,
                    char **ret)
{
        if (!s)
                s = http_request_query(req, "path");
        if (!s) {
                http_respond_error(req, 400, "missing %s", what);
                return -EINVAL;
        }
        int r = fsroot_abspath(root, s, ret);
        if (r < 0)
                http_respond_error(req, 400, "invalid %s \"%.256s\"", what, s);
        return r;
}

static int parse_u64(const char *s, uint64_t max, uint64_t *ret)
{
        char *end = NULL;
        if (!s || *s < '0' || *s > '9')
                return -EINVAL;
        errno = 0;
        unsigned long long v = strtoull(s, &end, 10);
        if (errno || *end || v > max)
                return -EINVAL;
        *ret = v;
        return 0;
}

static bool query_bool(HttpRequest *req, const char *key, bool def)
{
        const char *v = http_request_query(req, key);
        if (!v)
                return def;
        return streq(v, "1") || streq(v, "true") || streq(v, "yes") || !*v;
}

static void respond_entry(HttpRequest *req, unsigned status, json_object *entry)
{
        json_object *o = json_object_new_object();
        (void) json_object_object_add(o, "entry", entry);
        http_respond_json(req, status, o);
}

/* --- /files ----------------------------------------------------------------- */

static void handle_read(HttpRequest *req, const FsRoot *root)
{
        cleanup_free char *path = NULL;
        if (get_path(req, root, NULL, "path", &path) < 0)
                return;
        int fd = -1;
        off_t size = 0;
        int r = files_open_read(root, path, &fd, &size);
        if (r < 0) {
                respond_fs_error(req, r, path);
                return;
        }
        http_respond_fd(req, 200, "application/octet-stream", fd, (uint64_t) size);
}

static int parse_mode(const char *s, int *ret)
{
        char *end = NULL;
        if (!s) {
                *ret = -1;
                return 0;
        }
        errno = 0;
        long v = strtol(s, &end, 8);
        if (errno || *end || !*s || v < 0 || v > 07777)
                return -EINVAL;
        *ret = (int) v;
        return 0;
}

/* Uploads are copied by a child charged to the sandbox's memory cgroup (files_write). */
typedef struct {
        Agent *agent;
        const char *name;
} ChargeTo;

static int charge_enter(void *userdata, pid_t pid)
{
        const ChargeTo *c = userdata;
        return cg_charge_pid(c->agent->cg, c->name, pid);
}

static void handle_write(HttpRequest *req, const FsRoot *root, const FilesCharge *charge)
{
        cleanup_free char *path = NULL;
        if (get_path(req, root, NULL, "path", &path) < 0)
                return;
        int mode = -1;
        if (parse_mode(http_request_query(req, "mode"), &mode) < 0) {
                http_respond_error(req, 400, "mode must be octal permission bits, e.g. 0644");
                return;
        }
        size_t len = 0;
        const char *data = http_request_body(req, &len);
        json_object *entry = NULL;
        int r = files_write(root, charge, path, http_request_body_fd(req), data, len, mode, &entry);
        if (r < 0)
                respond_fs_error(req, r, path);
        else
                respond_entry(req, 200, entry);
}

static void handle_batch(HttpRequest *req, const FsRoot *root, const FilesCharge *charge)
{
        cleanup_json json_object *body = NULL;
        if (http_request_parse_json(req, &body) < 0)
                return;
        json_object *files = NULL;
        if (!json_object_object_get_ex(body, "files", &files) ||
            !json_object_is_type(files, json_type_array) || json_object_object_length(body) != 1) {
                http_respond_error(req, 400,
                                   "body must be {\"files\": [{\"path\": P, \"data\": TEXT | "
                                   "\"data_b64\": BASE64, \"mode\": N}, ...]}");
                return;
        }
        json_object *out = json_object_new_array();
        for (size_t i = 0; i < json_object_array_length(files); i++) {
                json_object *f = json_object_array_get_idx(files, i), *p = NULL, *d = NULL,
                            *b = NULL, *m = NULL;
                bool ok = json_object_is_type(f, json_type_object) &&
                          json_object_object_get_ex(f, "path", &p) &&
                          json_object_is_type(p, json_type_string);
                (void) json_object_object_get_ex(f, "data", &d);
                (void) json_object_object_get_ex(f, "data_b64", &b);
                (void) json_object_object_get_ex(f, "mode", &m);
                ok = ok && !(d && b) && (!d || json_object_is_type(d, json_type_string)) &&
                     (!b || json_object_is_type(b, json_type_string)) &&
                     (!m || (json_object_is_type(m, json_type_int) && json_object_get_int(m) >= 0 &&
                             json_object_get_int(m) <= 07777));
                cleanup_free uint8_t *decoded = NULL;
                size_t len = 0;
                if (ok && b)
                        ok = base64_decode(json_object_get_string(b), &decoded, &len) == 0;
                if (!ok) {
                        json_object_put(out);
                        http_respond_error(req, 400,
                                           "files[%zu]: needs a string path, data or "
                                           "valid data_b64, and an optional mode 0..4095",
                                           i);
                        return;
                }
                cleanup_free char *path = NULL;
                if (get_path(req, root, json_object_get_string(p), "path", &path) < 0) {
                        json_object_put(out);
                        return;
                }
                const void *data =
                        b ? (const void *) decoded : (d ? json_object_get_string(d) : "");
                if (!b)
                        len = d ? (size_t) json_object_get_string_len(d) : 0;
                json_object *entry = NULL;
                int r = files_write(root, charge, path, -1, data, len,
                                    m ? json_object_get_int(m) : -1, &entry);
                if (r < 0) {
                        json_object_put(out);
                        respond_fs_error(req, r, path);
                        return;
                }
                (void) json_object_array_add(out, entry);
        }
        json_object *o = json_object_new_object();
        (void) json_object_object_add(o, "entries", out);
        http_respond_json(req, 200, o);
}

void api_files_handle(Agent *a, HttpRequest *req, const char *id, const char *rest)
{
        const char *m = http_request_method(req);
        bool batch = streq(rest, "/batch");
        if (*rest && !batch) {
                http_respond_error(req, 404, "no such route");
                return;
        }
        bool get = streq(m, "GET"), put = streq(m, "PUT") || streq(m, "POST");
        if (batch ? !streq(m, "POST") : !get && !put) {
                http_respond_error(req, 405, batch ? "use POST" : "use GET, PUT or POST");
                return;
        }
        cleanup_fsroot FsRoot root = {.root_fd = -1};
        cleanup_free char *name = NULL;
        if (open_root(a, req, id, &root, &name) < 0)
                return;
        ChargeTo to = {.agent = a, .name = name};
        FilesCharge charge = {.enter = charge_enter, .userdata = &to};
        if (batch)
                handle_batch(req, &root, &charge);
        else if (get)
                handle_read(req, &root);
        else
                handle_write(req, &root, &charge);
}

/* --- /fs/{ls,stat,exists,mkdir,rm,mv} --------------------------------------------- */

/* A string field of a JSON body, else the query parameter of the same name. */
static const char *arg_string(HttpRequest *req, json_object *body, const char *key)
{
        return json_str(body, key) ?: http_request_query(req, key);
}

/* Every field of body is one of keys (a string for "path", "source" and
 * "destination", else a boolean). On failure answers 400. */
static int check_body(HttpRequest *req, json_object *body, const char *const *keys)
{
        json_object_object_foreach(body, key, val) {
                bool known = false,
                     text = streq(key, "path") || streq(key, "source") || streq(key, "destination");
                for (const char *const *k = keys; *k; k++)
                        known = known || streq(*k, key);
                if (!known) {
                        http_respond_error(req, 400, "unknown field \"%.64s\"", key);
                        return -EINVAL;
                }
                if (!json_object_is_type(val, text ? json_type_string : json_type_boolean)) {
                        http_respond_error(req, 400, "%s must be a %s", key,
                                           text ? "string" : "boolean");
                        return -EINVAL;
                }
        }
        return 0;
}

static bool arg_bool(HttpRequest *req, json_object *body, const char *key, bool def)
{
        json_object *v = NULL;
        if (body && json_object_object_get_ex(body, key, &v))
                return json_object_get_boolean(v);
        return query_bool(req, key, def);
}

void api_fs_handle(Agent *a, HttpRequest *req, const char *id, const char *rest)
{
        const char *m = http_request_method(req);
        bool ls = streq(rest, "/ls"), st = streq(rest, "/stat"), ex = streq(rest, "/exists"),
             mk = streq(rest, "/mkdir"), rm = streq(rest, "/rm"), mv = streq(rest, "/mv");
        if (!ls && !st && !ex && !mk && !rm && !mv) {
                http_respond_error(req, 404, "no such route");
                return;
        }
        bool reading = ls || st || ex;
        if (!streq(m, reading ? "GET" : "POST")) {
                http_respond_error(req, 405, "use %s", reading ? "GET" : "POST");
                return;
        }
        cleanup_json json_object *body = NULL;
        size_t blen = 0;
        (void) http_request_body(req, &blen);
        if (!reading && blen > 0 && http_request_parse_json(req, &body) < 0)
                return;
        static const char *const mkdir_keys[] = {"path", "parents", NULL};
        static const char *const rm_keys[] = {"path", "recursive", NULL};
        static const char *const mv_keys[] = {"source", "destination", "overwrite", NULL};
        if (body && check_body(req, body, mk ? mkdir_keys : rm ? rm_keys : mv_keys) < 0)
                return;
        cleanup_fsroot FsRoot root = {.root_fd = -1};
        if (open_root(a, req, id, &root, NULL) < 0)
                return;
        cleanup_free char *path = NULL;
        if (get_path(req, &root, arg_string(req, body, mv ? "source" : "path"),
                     mv ? "source" : "path", &path) < 0)
                return;
        json_object *res = NULL;
        int r = 0;
        if (ls) {
                uint64_t depth = 1;
                const char *d = http_request_query(req, "depth");
                if (d && parse_u64(d, FILES_DEPTH_MAX, &depth) < 0) {
                        http_respond_error(req, 400, "depth must be 1..%d", FILES_DEPTH_MAX);
                        return;
                }
                json_object *arr = NULL;
                r = files_list(&root, path, (unsigned) depth, &arr);
                if (r == -EINVAL) {
                        http_respond_error(req, 400, "depth must be 1..%d", FILES_DEPTH_MAX);
                        return;
                }
                if (r == 0) {
                        res = json_object_new_object();
                        (void) json_object_object_add(res, "entries", arr);
                        http_respond_json(req, 200, res);
                        return;
                }
        } else if (st || ex) {
                json_object *entry = NULL;
                r = files_stat(&root, path, &entry);
                if (ex && (r == 0 || r == -ENOENT || r == -ENOTDIR)) {
                        json_object_put(entry);
                        res = json_object_new_object();
                        (void) json_object_object_add(res, "exists",
                                                      json_object_new_boolean(r == 0));
                        http_respond_json(req, 200, res);
                        return;
                }
                if (r == 0) {
                        respond_entry(req, 200, entry);
                        return;
                }
        } else if (mk) {
                json_object *entry = NULL;
                r = files_mkdir(&root, path, arg_bool(req, body, "parents", true), &entry);
                if (r == 0) {
                        respond_entry(req, 201, entry);
                        return;
                }
        } else if (rm) {
                r = files_remove(&root, path, arg_bool(req, body, "recursive", false));
                if (r == 0) {
                        http_respond_empty(req, 204);
                        return;
                }
        } else {
                cleanup_free char *dst = NULL;
                if (get_path(req, &root, arg_string(req, body, "destination"), "destination",
                             &dst) < 0)
                        return;
                json_object *entry = NULL;
                r = files_move(&root, path, dst, arg_bool(req, body, "overwrite", false), &entry);
                if (r == 0) {
                        respond_entry(req, 200, entry);
                        return;
                }
                if (r == -EEXIST) {
                        respond_fs_error(req, r, dst);
                        return;
                }
        }
        respond_fs_error(req, r, path);
}

/* --- /archive and /watch ------------------------------------------------------ */

static int parse_limit(HttpRequest *req, uint64_t *ret)
{
        const char *s = http_request_query(req, "max_bytes");
        *ret = FILES_UPLOAD_DEFAULT_MAX;
        if (s && parse_u64(s, FILES_UPLOAD_MAX, ret) < 0) {
                http_respond_error(req, 400, "max_bytes must be an integer up to %zu",
                                   FILES_UPLOAD_MAX);
                return -EINVAL;
        }
        return 0;
}

void api_archive_handle(Agent *a, HttpRequest *req, const char *id, const char *rest)
{
        const char *m = http_request_method(req);
        bool get = streq(m, "GET"), put = streq(m, "PUT") || streq(m, "POST");
        if (*rest) {
                http_respond_error(req, 404, "no such route");
                return;
        }
        if (!get && !put) {
                http_respond_error(req, 405, "use GET, PUT or POST");
                return;
        }
        const char *fmt_s = http_request_query(req, "format");
        FsArchiveFormat fmt;
        if (fsarchive_format_from_string(fmt_s ? fmt_s : "tar.gz", &fmt) < 0) {
                http_respond_error(req, 400, "format must be tar.gz, tar or zip");
                return;
        }
        uint64_t limit = 0;
        if (parse_limit(req, &limit) < 0)
                return;
        cleanup_fsroot FsRoot root = {.root_fd = -1};
        if (open_root(a, req, id, &root, NULL) < 0)
                return;
        cleanup_free char *path = NULL;
        if (get_path(req, &root, NULL, "path", &path) < 0)
                return;
        char err[512] = "";
        if (get) {
                FsArchiveStream *s = NULL;
                int r = fsarchive_stream_new(&root, path, fmt, limit, &s, err, sizeof(err));
                if (r == -EFBIG)
                        http_respond_error(req, 413, "%s", err);
                else if (r < 0 && err[0])
                        api_respond_errno(req, r, err, "cannot archive");
                else if (r < 0)
                        respond_fs_error(req, r, path);
                else
                        http_respond_stream(req, 200, fsarchive_content_type(fmt),
                                            &fsarchive_stream_ops, s);
                return;
        }
        int fd = http_request_body_fd(req);
        if (fd < 0) {
                http_respond_error(req, 400, "the request body must be a %s archive",
                                   fmt_s ? fmt_s : "tar.gz");
                return;
        }
        uint64_t n_entries = 0, n_bytes = 0;
        int r = fsarchive_extract(&root, path, fd, limit, &n_entries, &n_bytes, err, sizeof(err));
        if (r == -EFBIG)
                http_respond_error(req, 413, "%s", err);
        else if (r < 0 && err[0])
                http_respond_errno(req, r, "%s", err);
        else if (r < 0)
                respond_fs_error(req, r, path);
        else {
                json_object *o = json_object_new_object();
                (void) json_object_object_add(o, "path", json_object_new_string(path));
                (void) json_object_object_add(o, "entries",
                                              json_object_new_int64((int64_t) n_entries));
                (void) json_object_object_add(o, "bytes", json_object_new_int64((int64_t) n_bytes));
                http_respond_json(req, 200, o);
        }
}

void api_watch_handle(Agent *a, HttpRequest *req, const char *id, const char *rest)
{
        if (*rest) {
                http_respond_error(req, 404, "no such route");
                return;
        }
        if (!streq(http_request_method(req), "GET")) {
                http_respond_error(req, 405, "use GET");
                return;
        }
        cleanup_fsroot FsRoot root = {.root_fd = -1};
        if (open_root(a, req, id, &root, NULL) < 0)
                return;
        cleanup_free char *path = NULL;
        if (get_path(req, &root, NULL, "path", &path) < 0)
                return;
        FsWatch *w = NULL;
        int r = fs_watch_new(&root, path, query_bool(req, "recursive", false), &w);
        if (r == -EAGAIN)
                http_respond_error(req, 429, "too many watches on this node; try again later");
        else if (r < 0)
                respond_fs_error(req, r, path);
        else
                http_respond_stream(req, 200, "application/x-ndjson", &fs_watch_ops, w);
}

size_t api_files_spool_limit(HttpRequest *req, void *userdata)
{
        (void) userdata;
        size_t build = api_build_spool_limit(req); /* the build route's context tar */
        if (build > 0)
                return build;
        const char *m = http_request_method(req), *p = http_request_path(req);
        if (!streq(m, "PUT") && !streq(m, "POST"))
                return 0;
        static const char prefix[] = "/v1/sandboxes/";
        if (strncmp(p, prefix, sizeof(prefix) - 1) != 0)
                return 0;
        const char *slash = strchr(p + sizeof(prefix) - 1, '/');
        if (!slash || (!streq(slash, "/files") && !streq(slash, "/archive")))
                return 0;
        uint64_t v = FILES_UPLOAD_DEFAULT_MAX;
        const char *s = http_request_query(req, "max_bytes");
        if (s && parse_u64(s, FILES_UPLOAD_MAX, &v) < 0)
                v = FILES_UPLOAD_DEFAULT_MAX; /* the handler answers 400 */
        return v > 0 ? (size_t) v : 1;
}

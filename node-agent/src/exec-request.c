/* ExecRequest from an exec request's JSON body (docs/agent-api.md), and the
 * PTY size both exec and resize take. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "exec.h"
#include "initproto.h"
#include "sandpit/json.h"
#include "sandpit/macro.h"
#include "sandpit/util.h"
#include "secrets.h"

#define DEFAULT_PATH "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

void exec_request_done(ExecRequest *r)
{
        strv_free(r->argv);
        strv_free(r->env);
        secret_strv_free(r->secret_env);
        free(r->cwd);
        free(r->user);
        free(r->tag);
        free(r->stdin_data);
        *r = (ExecRequest){0};
}

/* Sets NAME=value in env, replacing an existing NAME. Takes entry. */
static int env_set(char ***env, size_t *n, char *entry)
{
        if (!entry)
                return -ENOMEM;
        size_t klen = strcspn(entry, "=");
        for (size_t i = 0; i < *n; i++)
                if (strncmp((*env)[i], entry, klen) == 0 && (*env)[i][klen] == '=') {
                        free((*env)[i]);
                        (*env)[i] = entry;
                        return 0;
                }
        return strv_push(env, n, entry);
}

static int want_string(json_object *v, const char *key, char **dst, char *err, size_t errlen)
{
        if (!json_object_is_type(v, json_type_string)) {
                (void) snprintf(err, errlen, "%s must be a string", key);
                return -EINVAL;
        }
        free(*dst);
        *dst = strdup(json_object_get_string(v));
        return *dst ? 0 : -ENOMEM;
}

int exec_pty_size_from_json(json_object *o, const char *what, uint32_t *ret_cols,
                            uint32_t *ret_rows, char *err, size_t errlen)
{
        int64_t v[2] = {0, 0};
        bool ok = json_object_is_type(o, json_type_object);
        if (ok) {
                json_object_object_foreach(o, key, val) {
                        int i = streq(key, "cols") ? 0 : streq(key, "rows") ? 1 : -1;
                        if (i < 0 || !json_object_is_type(val, json_type_int)) {
                                ok = false;
                                break;
                        }
                        v[i] = json_object_get_int64(val);
                }
        }
        if (!ok || v[0] < 1 || v[0] > IP_PTY_DIM_MAX || v[1] < 1 || v[1] > IP_PTY_DIM_MAX) {
                (void) snprintf(err, errlen,
                                "%s must be {\"cols\": C, \"rows\": R} with integers of 1 to %u",
                                what, IP_PTY_DIM_MAX);
                return -EINVAL;
        }
        *ret_cols = (uint32_t) v[0];
        *ret_rows = (uint32_t) v[1];
        return 0;
}

int exec_request_from_json(json_object *body, const SandboxExecInfo *info, ExecRequest *ret,
                           char *err, size_t errlen)
{
        ExecRequest req = {0};
        size_t nenv = 0, nargv = 0;
        int r = env_set(&req.env, &nenv, strdup(DEFAULT_PATH));
        if (r == 0)
                r = env_set(&req.env, &nenv, strdup("LANG=C.UTF-8"));
        STRV_FOREACH(e, info->env)
                if (r == 0)
                        r = env_set(&req.env, &nenv, strdup(*e));
        /* The sandbox's secrets (added by init) beat its plain env and the
         * defaults; an exec's own env, added below, beats them. */
        STRV_FOREACH(n, info->secret_names) {
                size_t klen = strlen(*n);
                for (size_t i = 0; i < nenv; i++)
                        if (strncmp(req.env[i], *n, klen) == 0 && req.env[i][klen] == '=') {
                                free(req.env[i]);
                                memmove(&req.env[i], &req.env[i + 1], (nenv - i) * sizeof(char *));
                                nenv--;
                                break;
                        }
        }
        json_object *cmd = NULL, *shell = NULL;
        cleanup_strv char **secret_names = NULL;
        json_object_object_foreach(body, key, val) {
                if (r < 0)
                        break;
                if (streq(key, "cmd")) {
                        cmd = val;
                } else if (streq(key, "shell")) {
                        shell = val;
                } else if (streq(key, "env")) {
                        if (!json_object_is_type(val, json_type_object)) {
                                (void) snprintf(err, errlen, "env must be an object of strings");
                                r = -EINVAL;
                                break;
                        }
                        json_object_object_foreach(val, ek, ev) {
                                char *entry = NULL;
                                if (!json_object_is_type(ev, json_type_string) || !*ek ||
                                    strchr(ek, '=')) {
                                        (void) snprintf(err, errlen,
                                                        "env %.64s: names must be non-empty "
                                                        "without '=' and values strings",
                                                        ek);
                                        r = -EINVAL;
                                        break;
                                }
                                if (asprintf(&entry, "%s=%s", ek, json_object_get_string(ev)) < 0)
                                        entry = NULL;
                                if ((r = env_set(&req.env, &nenv, entry)) < 0)
                                        break;
                        }
                } else if (streq(key, "secret_env")) {
                        secret_strv_free(req.secret_env);
                        strv_free(secret_names);
                        req.secret_env = secret_names = NULL;
                        r = secrets_from_json(val, key, &req.secret_env, &secret_names, err,
                                              errlen);
                } else if (streq(key, "cwd")) {
                        if ((r = want_string(val, key, &req.cwd, err, errlen)) == 0 &&
                            req.cwd[0] != '/') {
                                (void) snprintf(err, errlen, "cwd must be an absolute path");
                                r = -EINVAL;
                        }
                } else if (streq(key, "user")) {
                        r = want_string(val, key, &req.user, err, errlen);
                } else if (streq(key, "tag")) {
                        r = want_string(val, key, &req.tag, err, errlen);
                } else if (streq(key, "stdin") || streq(key, "stdin_b64")) {
                        if (!json_object_is_type(val, json_type_string)) {
                                (void) snprintf(err, errlen, "%s must be a string", key);
                                r = -EINVAL;
                                break;
                        }
                        free(req.stdin_data);
                        req.stdin_data = NULL;
                        if (streq(key, "stdin")) {
                                size_t len = (size_t) json_object_get_string_len(val);
                                req.stdin_data = malloc(len + 1);
                                if (!req.stdin_data) {
                                        r = -ENOMEM;
                                        break;
                                }
                                memcpy(req.stdin_data, json_object_get_string(val), len);
                                req.stdin_len = len;
                        } else if (base64_decode(json_object_get_string(val), &req.stdin_data,
                                                 &req.stdin_len) < 0) {
                                (void) snprintf(err, errlen, "stdin_b64 is not valid base64");
                                r = -EINVAL;
                        }
                } else if (streq(key, "stdin_open") || streq(key, "background")) {
                        if (!json_object_is_type(val, json_type_boolean)) {
                                (void) snprintf(err, errlen, "%s must be a boolean", key);
                                r = -EINVAL;
                                break;
                        }
                        if (json_object_get_boolean(val))
                                req.flags |= streq(key, "background") ? IP_FLAG_BACKGROUND
                                                                      : IP_FLAG_STDIN_OPEN;
                } else if (streq(key, "timeout")) {
                        if (json_timeout_ms(val, false, &req.timeout_ms) < 0) {
                                (void) snprintf(err, errlen,
                                                "timeout must be a number of seconds > 0 and <= "
                                                "%d",
                                                TIMEOUT_MAX_S);
                                r = -EINVAL;
                                break;
                        }
                } else if (streq(key, "pty")) {
                        r = exec_pty_size_from_json(val, key, &req.cols, &req.rows, err, errlen);
                        req.flags |= IP_FLAG_PTY;
                } else {
                        (void) snprintf(err, errlen, "unknown field \"%.64s\"", key);
                        r = -EINVAL;
                }
        }
        json_object *plain_env = NULL;
        STRV_FOREACH(n, secret_names)
                if (r == 0 && json_object_object_get_ex(body, "env", &plain_env) &&
                    json_object_object_get_ex(plain_env, *n, NULL)) {
                        (void) snprintf(err, errlen, "%.64s is in both env and secret_env", *n);
                        r = -EINVAL;
                }
        if (r == 0 && !!cmd == !!shell) {
                (void) snprintf(err, errlen, "give exactly one of cmd (an argv array) and shell");
                r = -EINVAL;
        }
        if (r == 0 && cmd) {
                size_t n = json_object_is_type(cmd, json_type_array) ? json_object_array_length(cmd)
                                                                     : 0;
                if (n == 0) {
                        (void) snprintf(err, errlen, "cmd must be a non-empty array of strings");
                        r = -EINVAL;
                }
                for (size_t i = 0; r == 0 && i < n; i++) {
                        json_object *s = json_object_array_get_idx(cmd, i);
                        if (!json_object_is_type(s, json_type_string)) {
                                (void) snprintf(err, errlen,
                                                "cmd must be a non-empty array of strings");
                                r = -EINVAL;
                        } else {
                                r = strv_push(&req.argv, &nargv, strdup(json_object_get_string(s)));
                        }
                }
        } else if (r == 0 && shell) {
                if (!json_object_is_type(shell, json_type_string)) {
                        (void) snprintf(err, errlen, "shell must be a string");
                        r = -EINVAL;
                } else if ((r = strv_push(&req.argv, &nargv, strdup("/bin/sh"))) == 0 &&
                           (r = strv_push(&req.argv, &nargv, strdup("-c"))) == 0) {
                        r = strv_push(&req.argv, &nargv, strdup(json_object_get_string(shell)));
                }
        }
        if (r == 0 && !req.user && !(req.user = strdup(info->user)))
                r = -ENOMEM;
        if (r == 0 && !req.cwd && info->cwd && !(req.cwd = strdup(info->cwd)))
                r = -ENOMEM;
        if (r < 0) {
                exec_request_done(&req);
                return r;
        }
        *ret = req;
        return 0;
}

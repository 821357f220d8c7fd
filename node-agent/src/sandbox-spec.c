/* Parsing a create request into a SandboxSpec (defaults, limits, env,
 * secrets, labels, network policy), and freeing one. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "image.h"
#include "net.h"
#include "sandbox-internal.h"
#include "sandbox.h"
#include "sandpit/macro.h"
#include "sandpit/quantity.h"
#include "sandpit/util.h"
#include "secrets.h"
#include "template.h"

#define DEFAULT_TEMPLATE "default"
#define DEFAULT_CPU      1.0
#define DEFAULT_MEMORY   (512ull << 20)
#define DEFAULT_PIDS     512u
#define DEFAULT_DISK     (512ull << 20)
#define DEFAULT_TIMEOUT  300u
#define DEFAULT_USER     "user"

void sandbox_spec_done(SandboxSpec *s)
{
        free(s->id);
        free(s->template_name);
        strv_free(s->env);
        secret_strv_free(s->secret_env);
        strv_free(s->secret_names);
        free(s->user);
        free(s->cwd);
        json_object_put(s->labels);
        net_policy_done(&s->network);
        free(s->pool);
        free(s->runtime);
        start_cmd_free(s->start_cmd);
        *s = (SandboxSpec){0};
}

/* --- request parsing ---------------------------------------------------- */

static int env_from_json(json_object *v, char ***ret, char *err, size_t errlen)
{
        if (!json_object_is_type(v, json_type_object)) {
                (void) snprintf(err, errlen, "env must be an object of strings");
                return -EINVAL;
        }
        size_t n = (size_t) json_object_object_length(v), i = 0;
        char **env = calloc(n + 1, sizeof(char *));
        if (!env)
                return -ENOMEM;
        json_object_object_foreach(v, key, val) {
                if (!json_object_is_type(val, json_type_string) || !*key || strchr(key, '=') ||
                    strlen(key) > 1024) {
                        (void) snprintf(err, errlen,
                                        "env %.64s: names must be non-empty without '=' and "
                                        "values strings",
                                        key);
                        strv_free(env);
                        return -EINVAL;
                }
                if (asprintf(&env[i], "%s=%s", key, json_object_get_string(val)) < 0) {
                        env[i] = NULL;
                        strv_free(env);
                        return -ENOMEM;
                }
                i++;
        }
        *ret = env;
        return 0;
}

int sandbox_spec_from_json(json_object *req, SandboxSpec *ret, char *err, size_t errlen)
{
        SandboxSpec s = {.cpu = DEFAULT_CPU,
                         .memory = DEFAULT_MEMORY,
                         .pids = DEFAULT_PIDS,
                         .disk = DEFAULT_DISK,
                         .timeout_s = DEFAULT_TIMEOUT};
        int r = 0;
        bool tpl_given = false;
        json_object_object_foreach(req, key, val) {
                if (streq(key, "template") || streq(key, "id") || streq(key, "user") ||
                    streq(key, "cwd") || streq(key, "image") || streq(key, "runtime")) {
                        if (!json_object_is_type(val, json_type_string)) {
                                (void) snprintf(err, errlen, "%s must be a string", key);
                                r = -EINVAL;
                                break;
                        }
                        char **dst = streq(key, "id")        ? &s.id
                                     : streq(key, "user")    ? &s.user
                                     : streq(key, "cwd")     ? &s.cwd
                                     : streq(key, "runtime") ? &s.runtime
                                                             : &s.template_name;
                        bool tpl = streq(key, "image") || streq(key, "template");
                        if (tpl && tpl_given) {
                                (void) snprintf(err, errlen, "give template or image, not both");
                                r = -EINVAL;
                                break;
                        }
                        tpl_given = tpl_given || tpl;
                        free(*dst);
                        /* {"image": REF} is {"template": "image:REF"} (image.h). */
                        if (streq(key, "image") ? asprintf(dst, "%s%s", IMAGE_TEMPLATE_PREFIX,
                                                           json_object_get_string(val)) < 0
                                                : !(*dst = strdup(json_object_get_string(val)))) {
                                *dst = NULL;
                                r = -ENOMEM;
                                break;
                        }
                } else if (streq(key, "cpu")) {
                        if (quantity_cpu_from_json(val, &s.cpu) < 0 || s.cpu < 0.01 || s.cpu > 64) {
                                (void) snprintf(err, errlen,
                                                "cpu must be a number of cores between 0.01 and "
                                                "64, or a string like \"500m\"");
                                r = -EINVAL;
                                break;
                        }
                } else if (streq(key, "memory") || streq(key, "disk")) {
                        uint64_t *dst = streq(key, "memory") ? &s.memory : &s.disk;
                        uint64_t min = streq(key, "memory") ? 4ull << 20 : 1ull << 20;
                        if (quantity_bytes_from_json(val, dst) < 0 || *dst < min ||
                            *dst > 64ull << 30) {
                                (void) snprintf(err, errlen,
                                                "%s must be bytes or a quantity like \"512Mi\", "
                                                "between %lluMi and 64Gi",
                                                key, (unsigned long long) (min >> 20));
                                r = -EINVAL;
                                break;
                        }
                } else if (streq(key, "pids") || streq(key, "timeout")) {
                        bool pids = streq(key, "pids");
                        int64_t v = json_object_get_int64(val);
                        int64_t lo = pids ? 8 : 1, hi = pids ? 65536 : TIMEOUT_MAX_S;
                        if (!json_object_is_type(val, json_type_int) || v < lo || v > hi) {
                                (void) snprintf(err, errlen,
                                                "%s must be an integer between %lld and %lld", key,
                                                (long long) lo, (long long) hi);
                                r = -EINVAL;
                                break;
                        }
                        *(pids ? &s.pids : &s.timeout_s) = (uint64_t) v;
                } else if (streq(key, "on_timeout")) {
                        const char *v = json_object_get_string(val);
                        if (!json_object_is_type(val, json_type_string) ||
                            (!streq(v, "delete") && !streq(v, "pause"))) {
                                (void) snprintf(err, errlen,
                                                "on_timeout must be \"delete\" or \"pause\"");
                                r = -EINVAL;
                                break;
                        }
                        s.timeout_pause = streq(v, "pause");
                } else if (streq(key, "env")) {
                        strv_free(s.env);
                        s.env = NULL;
                        if ((r = env_from_json(val, &s.env, err, errlen)) < 0)
                                break;
                } else if (streq(key, "secret_env")) {
                        secret_strv_free(s.secret_env);
                        strv_free(s.secret_names);
                        s.secret_env = s.secret_names = NULL;
                        if ((r = secrets_from_json(val, key, &s.secret_env, &s.secret_names, err,
                                                   errlen)) < 0)
                                break;
                } else if (streq(key, "labels")) {
                        if (!json_object_is_type(val, json_type_object)) {
                                (void) snprintf(err, errlen, "labels must be an object");
                                r = -EINVAL;
                                break;
                        }
                        json_object_object_foreach(val, lk, lv) {
                                if (!json_object_is_type(lv, json_type_string) || !*lk ||
                                    strchr(lk, '=') || strchr(lk, ',')) {
                                        (void) snprintf(err, errlen,
                                                        "label %.64s: keys must be non-empty "
                                                        "without '=' or ',' and values strings",
                                                        lk);
                                        r = -EINVAL;
                                }
                        }
                        if (r < 0)
                                break;
                        json_object_put(s.labels);
                        s.labels = NULL;
                        if (json_object_deep_copy(val, &s.labels, NULL) < 0) {
                                r = -ENOMEM;
                                break;
                        }
                } else if (streq(key, "start_cmd")) {
                        start_cmd_free(s.start_cmd);
                        s.start_cmd = NULL;
                        if ((r = start_cmd_from_json(val, &s.start_cmd, err, errlen)) < 0)
                                break;
                } else if (streq(key, "network")) {
                        net_policy_done(&s.network);
                        if ((r = net_policy_from_json(val, &s.network, err, errlen)) < 0)
                                break;
                } else {
                        (void) snprintf(err, errlen, "unknown field \"%.64s\"", key);
                        r = -EINVAL;
                        break;
                }
        }
        if (r == 0 && s.id && !id_is_valid(s.id)) {
                (void) snprintf(err, errlen,
                                "id must be 1-63 characters of [a-z0-9-] not starting with '-'");
                r = -EINVAL;
        }
        if (r == 0 && s.runtime && runtime_name_index(s.runtime) < 0) {
                (void) snprintf(err, errlen, "runtime must be runc, crun or runsc");
                r = -EINVAL;
        }
        if (r == 0 && s.cwd && (s.cwd[0] != '/' || strlen(s.cwd) > 4096)) {
                (void) snprintf(err, errlen, "cwd must be an absolute path");
                r = -EINVAL;
        }
        if (r == 0 && s.user && (!*s.user || strchr(s.user, ':') || strlen(s.user) > 64)) {
                (void) snprintf(err, errlen, "user must be a user name or uid");
                r = -EINVAL;
        }
        STRV_FOREACH(n, s.secret_names)
                if (r == 0 && env_has_name(s.env, *n)) {
                        (void) snprintf(err, errlen, "%.64s is in both env and secret_env", *n);
                        r = -EINVAL;
                }
        if (r == 0 && !s.secret_names && !(s.secret_names = calloc(1, sizeof(char *))))
                r = -ENOMEM;
        if (r == 0 && !s.template_name && !(s.template_name = strdup(DEFAULT_TEMPLATE)))
                r = -ENOMEM;
        /* An image's default user is its config's (sandbox_create). */
        bool image = s.template_name && strncmp(s.template_name, IMAGE_TEMPLATE_PREFIX,
                                                strlen(IMAGE_TEMPLATE_PREFIX)) == 0;
        if (r == 0 && !s.user && !image && !(s.user = strdup(DEFAULT_USER)))
                r = -ENOMEM;
        if (r == 0 && !s.env && !(s.env = calloc(1, sizeof(char *))))
                r = -ENOMEM;
        if (r == 0 && !s.labels && !(s.labels = json_object_new_object()))
                r = -ENOMEM;
        if (r < 0) {
                sandbox_spec_done(&s);
                return r;
        }
        *ret = s;
        return 0;
}

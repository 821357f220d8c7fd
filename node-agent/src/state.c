#include "state.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sandbox.h"
#include "sandpit/macro.h"
#include "sandpit/util.h"

#define STATE_VERSION 1

static json_object *spec_to_json(const SandboxSpec *s)
{
        json_object *o = json_object_new_object(), *env = json_object_new_object();
        if (!o || !env) {
                json_object_put(o);
                json_object_put(env);
                return NULL;
        }
        (void) json_object_object_add(o, "id", json_object_new_string(s->id));
        (void) json_object_object_add(o, "template", json_object_new_string(s->template_name));
        if (s->runtime)
                (void) json_object_object_add(o, "runtime", json_object_new_string(s->runtime));
        (void) json_object_object_add(o, "cpu", json_object_new_double(s->cpu));
        (void) json_object_object_add(o, "memory", json_object_new_int64((int64_t) s->memory));
        (void) json_object_object_add(o, "pids", json_object_new_int64((int64_t) s->pids));
        (void) json_object_object_add(o, "disk", json_object_new_int64((int64_t) s->disk));
        (void) json_object_object_add(o, "user", json_object_new_string(s->user));
        if (s->cwd)
                (void) json_object_object_add(o, "cwd", json_object_new_string(s->cwd));
        (void) json_object_object_add(o, "timeout", json_object_new_int64((int64_t) s->timeout_s));
        (void) json_object_object_add(
                o, "on_timeout", json_object_new_string(s->timeout_pause ? "pause" : "delete"));
        json_object *labels = NULL; /* a copy: see sandbox_to_json_locked() */
        if (json_object_deep_copy(s->labels, &labels, NULL) < 0)
                labels = json_object_new_object();
        (void) json_object_object_add(o, "labels", labels);
        STRV_FOREACH(e, s->env) {
                const char *eq = strchr(*e, '=');
                cleanup_free char *k = eq ? strndup(*e, (size_t) (eq - *e)) : NULL;
                if (k)
                        (void) json_object_object_add(env, k, json_object_new_string(eq + 1));
        }
        (void) json_object_object_add(o, "env", env);
        (void) json_object_object_add(o, "network", net_policy_to_json(&s->network));
        return o;
}

int state_save(const Sandbox *sb)
{
        json_object *o = json_object_new_object();
        json_object *spec = spec_to_json(&sb->spec);
        if (!o || !spec) {
                json_object_put(o);
                json_object_put(spec);
                return -ENOMEM;
        }
        (void) json_object_object_add(o, "version", json_object_new_int(STATE_VERSION));
        (void) json_object_object_add(o, "spec", spec);
        (void) json_object_object_add(o, "name", json_object_new_string(sb->name));
        if (sb->spec.pool) /* waiting in a warm pool: removed, not adopted, after a restart */
                (void) json_object_object_add(o, "pool", json_object_new_string(sb->spec.pool));
        (void) json_object_object_add(o, "created_us",
                                      json_object_new_int64((int64_t) sb->created_us));
        (void) json_object_object_add(o, "expires_us",
                                      json_object_new_int64((int64_t) sb->expires_us));
        (void) json_object_object_add(o, "init_pid", json_object_new_int(sb->init_pid));
        /* A restarted agent marks it taken again (userns.h). */
        if (sb->userns_host_id)
                (void) json_object_object_add(o, "userns_host_id",
                                              json_object_new_int64(sb->userns_host_id));
        (void) json_object_object_add(o, "started_us",
                                      json_object_new_int64((int64_t) sb->started_us));
        /* Pause facts; the freezer itself is the kernel's (re-read at adoption). */
        (void) json_object_object_add(o, "paused_us",
                                      json_object_new_int64((int64_t) sb->paused_us));
        (void) json_object_object_add(o, "deadline_paused",
                                      json_object_new_boolean(sb->deadline_paused));
        /* Names only: secret values never reach a file (docs/security.md). */
        json_object *names = json_object_new_array();
        STRV_FOREACH(n, sb->spec.secret_names)
                (void) json_object_array_add(names, json_object_new_string(*n));
        (void) json_object_object_add(o, "secret_env_names", names);
        size_t len = 0;
        const char *text = json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN, &len);
        char path[4096];
        (void) snprintf(path, sizeof(path), "%s/state.json", sb->dir);
        int r = write_file_atomic(path, text, len, 0600);
        json_object_put(o);
        return r;
}

int state_load(const char *dir, Sandbox **ret)
{
        char path[4096];
        (void) snprintf(path, sizeof(path), "%s/state.json", dir);
        cleanup_free char *text = NULL;
        int r = read_file(path, (size_t) 16 * 1024 * 1024, &text, NULL);
        if (r < 0)
                return r;
        json_object *o = json_tokener_parse(text);
        json_object *version = NULL, *spec = NULL, *created = NULL, *expires = NULL, *pid = NULL;
        if (!o || !json_object_object_get_ex(o, "version", &version) ||
            json_object_get_int(version) != STATE_VERSION ||
            !json_object_object_get_ex(o, "spec", &spec) ||
            !json_object_is_type(spec, json_type_object) ||
            !json_object_object_get_ex(o, "created_us", &created) ||
            !json_object_object_get_ex(o, "expires_us", &expires) ||
            !json_object_object_get_ex(o, "init_pid", &pid)) {
                json_object_put(o);
                return -EINVAL;
        }
        Sandbox *sb = calloc(1, sizeof(*sb));
        if (!sb) {
                json_object_put(o);
                return -ENOMEM;
        }
        char err[256];
        r = sandbox_spec_from_json(spec, &sb->spec, err, sizeof(err));
        if (r == 0 && !sb->spec.id)
                r = -EINVAL;
        if (r < 0) {
                json_object_put(o);
                free(sb);
                return r;
        }
        sb->created_us = (uint64_t) json_object_get_int64(created);
        sb->expires_us = (uint64_t) json_object_get_int64(expires);
        sb->init_pid = (pid_t) json_object_get_int(pid);
        sb->pidfd = -1;
        json_object *v = NULL;
        /* Before warm pools, a sandbox's name was its id. */
        const char *name =
                json_object_object_get_ex(o, "name", &v) ? json_object_get_string(v) : sb->spec.id;
        bool pooled = json_object_object_get_ex(o, "pool", &v);
        if ((pooled && !(sb->spec.pool = strdup(json_object_get_string(v) ?: ""))) ||
            !(sb->name = strdup(name ?: ""))) {
                json_object_put(o);
                sandbox_spec_done(&sb->spec);
                free(sb->name);
                free(sb);
                return -ENOMEM;
        }
        if (json_object_object_get_ex(o, "userns_host_id", &v)) {
                int64_t h = json_object_get_int64(v);
                sb->userns_host_id = h > 0 && h < UINT32_MAX ? (uint32_t) h : 0;
        }
        if (json_object_object_get_ex(o, "started_us", &v))
                sb->started_us = (uint64_t) json_object_get_int64(v);
        if (json_object_object_get_ex(o, "paused_us", &v))
                sb->paused_us = (uint64_t) json_object_get_int64(v);
        if (json_object_object_get_ex(o, "deadline_paused", &v))
                sb->deadline_paused = json_object_get_boolean(v);
        if (json_object_object_get_ex(o, "secret_env_names", &v) &&
            json_object_is_type(v, json_type_array)) {
                size_t n = json_object_array_length(v);
                char **names = calloc(n + 1, sizeof(char *));
                for (size_t i = 0; names && i < n; i++)
                        if (!(names[i] =
                                      strdup(json_object_get_string(json_object_array_get_idx(v, i))
                                                     ?: ""))) {
                                strv_free(names);
                                names = NULL;
                        }
                if (names) {
                        strv_free(sb->spec.secret_names);
                        sb->spec.secret_names = names;
                }
        }
        json_object_put(o);
        *ret = sb;
        return 0;
}

int state_list(const char *sandboxes_dir, char ***ret)
{
        return dir_list(sandboxes_dir, dir_keep_ids, NULL, ret);
}

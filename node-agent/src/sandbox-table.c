/* The sandbox table: lookup, unlink and free under a->lock, the API view of
 * a sandbox, and what exec and file operations copy out of it. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "net.h"
#include "sandbox-internal.h"
#include "sandbox.h"
#include "sandpit/macro.h"
#include "sandpit/util.h"

Sandbox *sandbox_find_locked(Agent *a, const char *id)
{
        for (Sandbox *s = a->sandboxes; s; s = s->next)
                if (!s->spec.pool && streq(s->spec.id, id))
                        return s;
        return NULL;
}

Sandbox *sandbox_find_name_locked(Agent *a, const char *name)
{
        for (Sandbox *s = a->sandboxes; s; s = s->next)
                if (s->name && streq(s->name, name))
                        return s;
        return NULL;
}

static bool has_id_or_name(const Sandbox *list, const char *id)
{
        for (const Sandbox *s = list; s; s = s->next)
                if (streq(s->spec.id, id) || (s->name && streq(s->name, id)))
                        return true;
        return false;
}

bool sandbox_id_taken_locked(Agent *a, const char *id)
{
        return has_id_or_name(a->sandboxes, id) || has_id_or_name(a->dying, id);
}

bool sandbox_dying_locked(Agent *a, const char *id)
{
        return has_id_or_name(a->dying, id);
}

Sandbox *sandbox_find_serial_locked(Agent *a, uint64_t serial)
{
        Sandbox *sb = a->sandboxes;
        while (sb && sb->serial != serial)
                sb = sb->next;
        return sb;
}

int sandbox_foreach(Agent *a, SandboxForeachFn fn, void *userdata)
{
        int r = 0;
        (void) pthread_mutex_lock(&a->lock);
        for (const Sandbox *sb = a->sandboxes; sb && r == 0; sb = sb->next)
                r = fn(sb, userdata);
        (void) pthread_mutex_unlock(&a->lock);
        return r;
}

static bool unlink_from(Sandbox **list, Sandbox *sb)
{
        for (Sandbox **p = list; *p; p = &(*p)->next)
                if (*p == sb) {
                        *p = sb->next;
                        sb->next = NULL;
                        return true;
                }
        return false;
}

void sandbox_unlink_locked(Agent *a, Sandbox *sb)
{
        if (unlink_from(&a->sandboxes, sb))
                (void) pthread_cond_broadcast(&a->table_changed);
}

void sandbox_move_to_dying_locked(Agent *a, Sandbox *sb)
{
        if (unlink_from(&a->sandboxes, sb)) {
                sb->next = a->dying;
                a->dying = sb;
                (void) pthread_cond_broadcast(&a->table_changed);
        }
}

void sandbox_unlink_dying_locked(Agent *a, Sandbox *sb)
{
        if (unlink_from(&a->dying, sb))
                (void) pthread_cond_broadcast(&a->table_changed);
}

void sandbox_free(Sandbox *sb)
{
        if (!sb)
                return;
        if (sb->pidfd >= 0)
                (void) close(sb->pidfd);
        sandbox_spec_done(&sb->spec);
        free(sb->name);
        free(sb->dir);
        free(sb->socket_path);
        free(sb);
}

const char *sandbox_state_name(SandboxState s)
{
        switch (s) {
        case SANDBOX_CREATING:
                return "creating";
        case SANDBOX_RUNNING:
                return "running";
        case SANDBOX_EXITED:
                return "exited";
        case SANDBOX_DELETING:
                return "deleting";
        case SANDBOX_PAUSED:
                return "paused";
        }
        return "unknown";
}

static json_object *env_to_json(char **env)
{
        json_object *o = json_object_new_object();
        STRV_FOREACH(e, env) {
                const char *eq = strchr(*e, '=');
                if (!eq)
                        continue;
                cleanup_free char *k = strndup(*e, (size_t) (eq - *e));
                if (k)
                        (void) json_object_object_add(o, k, json_object_new_string(eq + 1));
        }
        return o;
}

static void add_time(json_object *o, const char *key, uint64_t us)
{
        char buf[40];
        format_rfc3339_us(us, buf, sizeof(buf));
        (void) json_object_object_add(o, key, json_object_new_string(buf));
}

/* The API view; oom_kills is read from the cgroup by the caller (outside the lock). */
json_object *sandbox_to_json_locked(const Sandbox *sb)
{
        json_object *o = json_object_new_object();
        if (!o)
                return NULL;
        const SandboxSpec *s = &sb->spec;
        (void) json_object_object_add(o, "id", json_object_new_string(s->id));
        (void) json_object_object_add(o, "template", json_object_new_string(s->template_name));
        if (s->runtime)
                (void) json_object_object_add(o, "runtime", json_object_new_string(s->runtime));
        (void) json_object_object_add(o, "state",
                                      json_object_new_string(sandbox_state_name(sb->state)));
        (void) json_object_object_add(o, "cpu", json_object_new_double(s->cpu));
        (void) json_object_object_add(o, "memory", json_object_new_int64((int64_t) s->memory));
        (void) json_object_object_add(o, "pids", json_object_new_int64((int64_t) s->pids));
        (void) json_object_object_add(o, "disk", json_object_new_int64((int64_t) s->disk));
        (void) json_object_object_add(o, "user", json_object_new_string(s->user));
        if (s->cwd)
                (void) json_object_object_add(o, "cwd", json_object_new_string(s->cwd));
        (void) json_object_object_add(o, "env", env_to_json(s->env));
        json_object *secret_names = json_object_new_array();
        STRV_FOREACH(n, s->secret_names)
                (void) json_object_array_add(secret_names, json_object_new_string(*n));
        (void) json_object_object_add(o, "secret_env", secret_names);
        /* A copy, never a shared reference: json-c's reference counts are not
         * atomic and the response is freed on another thread, outside the lock. */
        json_object *labels = NULL;
        if (json_object_deep_copy(s->labels, &labels, NULL) < 0)
                labels = json_object_new_object();
        (void) json_object_object_add(o, "labels", labels);
        (void) json_object_object_add(o, "timeout", json_object_new_int64((int64_t) s->timeout_s));
        (void) json_object_object_add(
                o, "on_timeout", json_object_new_string(s->timeout_pause ? "pause" : "delete"));
        add_time(o, "created_at", sb->created_us);
        add_time(o, "started_at", sb->started_us ? sb->started_us : sb->created_us);
        add_time(o, "expires_at", sb->expires_us);
        json_object *net = net_policy_to_json(&s->network);
        if (net && sb->ip) {
                char ip[20];
                net_addr_format(sb->ip, ip, sizeof(ip));
                (void) json_object_object_add(net, "ip", json_object_new_string(ip));
        }
        (void) json_object_object_add(o, "network", net);
        if (sb->state == SANDBOX_PAUSED) {
                add_time(o, "paused_at", sb->paused_us);
                (void) json_object_object_add(o, "deadline_paused",
                                              json_object_new_boolean(sb->deadline_paused));
        }
        return o;
}

void sandbox_add_stats(Agent *a, const char *id, json_object *o)
{
        CgStats st = {0};
        (void) pthread_mutex_lock(&a->lock);
        Sandbox *sb = sandbox_find_locked(a, id);
        cleanup_free char *name = sb && sb->name ? strdup(sb->name) : NULL;
        (void) pthread_mutex_unlock(&a->lock);
        if (!name || cg_read_stats(a->cg, name, &st) < 0)
                st.oom_kills = 0;
        (void) json_object_object_add(o, "oom_kills",
                                      json_object_new_int64((int64_t) st.oom_kills));
}

int sandbox_get_json(Agent *a, const char *id, json_object **ret)
{
        (void) pthread_mutex_lock(&a->lock);
        Sandbox *sb = sandbox_find_locked(a, id);
        json_object *o = sb && sb->state != SANDBOX_CREATING ? sandbox_to_json_locked(sb) : NULL;
        (void) pthread_mutex_unlock(&a->lock);
        if (!o)
                return -ENOENT;
        sandbox_add_stats(a, id, o);
        *ret = o;
        return 0;
}

static bool labels_match(json_object *labels, char **selectors)
{
        STRV_FOREACH(sel, selectors) {
                const char *eq = strchr(*sel, '=');
                if (!eq)
                        return false;
                cleanup_free char *k = strndup(*sel, (size_t) (eq - *sel));
                json_object *v = NULL;
                if (!k || !json_object_object_get_ex(labels, k, &v) ||
                    !streq(json_object_get_string(v), eq + 1))
                        return false;
        }
        return true;
}

int sandbox_list_json(Agent *a, char **selectors, json_object **ret)
{
        json_object *arr = json_object_new_array();
        if (!arr)
                return -ENOMEM;
        (void) pthread_mutex_lock(&a->lock);
        for (Sandbox *sb = a->sandboxes; sb; sb = sb->next)
                if (sb->state != SANDBOX_CREATING && !sb->spec.pool &&
                    labels_match(sb->spec.labels, selectors))
                        (void) json_object_array_add(arr, sandbox_to_json_locked(sb));
        (void) pthread_mutex_unlock(&a->lock);
        for (size_t i = 0; i < json_object_array_length(arr); i++) {
                json_object *o = json_object_array_get_idx(arr, i), *id = NULL;
                if (json_object_object_get_ex(o, "id", &id))
                        sandbox_add_stats(a, json_object_get_string(id), o);
        }
        *ret = arr;
        return 0;
}

int sandbox_exec_info(Agent *a, const char *id, SandboxExecInfo *ret)
{
        int r = 0;
        SandboxExecInfo info = {0};
        (void) pthread_mutex_lock(&a->lock);
        Sandbox *sb = sandbox_find_locked(a, id);
        if (!sb || sb->state == SANDBOX_CREATING) {
                r = -ENOENT;
        } else if (sb->state != SANDBOX_RUNNING) {
                r = -EBUSY;
        } else {
                size_t n = 0;
                STRV_FOREACH(e, sb->spec.env)
                        n++;
                info.env = calloc(n + 1, sizeof(char *));
                info.socket_path = strdup(sb->socket_path);
                info.init_pid = sb->init_pid;
                info.user = strdup(sb->spec.user);
                info.cwd = sb->spec.cwd ? strdup(sb->spec.cwd) : NULL;
                info.id = strdup(sb->spec.id);
                info.name = strdup(sb->name);
                info.secret_names = strv_copy(sb->spec.secret_names);
                info.template_name = sb->spec.template_name ? strdup(sb->spec.template_name) : NULL;
                for (size_t i = 0; info.env && i < n; i++)
                        if (!(info.env[i] = strdup(sb->spec.env[i])))
                                r = -ENOMEM;
                if (!info.env || !info.socket_path || !info.user || !info.id || !info.name ||
                    !info.secret_names || (sb->spec.cwd && !info.cwd) ||
                    (sb->spec.template_name && !info.template_name))
                        r = -ENOMEM;
        }
        (void) pthread_mutex_unlock(&a->lock);
        if (r < 0) {
                sandbox_exec_info_done(&info);
                return r;
        }
        *ret = info;
        return 0;
}

void sandbox_exec_info_done(SandboxExecInfo *i)
{
        free(i->socket_path);
        strv_free(i->env);
        free(i->user);
        free(i->cwd);
        free(i->id);
        free(i->name);
        free(i->template_name);
        strv_free(i->secret_names);
        *i = (SandboxExecInfo){0};
}

int sandbox_fs_info(Agent *a, const char *id, SandboxFsInfo *ret)
{
        int r = 0;
        SandboxFsInfo info = {0};
        (void) pthread_mutex_lock(&a->lock);
        Sandbox *sb = sandbox_find_locked(a, id);
        if (!sb || sb->state == SANDBOX_CREATING)
                r = -ENOENT;
        else if (sb->state != SANDBOX_RUNNING)
                r = -EBUSY;
        else if (asprintf(&info.rootfs, "%s/rootfs", sb->dir) < 0)
                info.rootfs = NULL, r = -ENOMEM;
        else if (!(info.user = strdup(sb->spec.user)) ||
                 !(info.name = strdup(sb->name ? sb->name : id)))
                r = -ENOMEM;
        else
                info.disk = sb->spec.disk, info.id_shift = sb->userns_host_id;
        (void) pthread_mutex_unlock(&a->lock);
        if (r < 0) {
                if (r == -ENOMEM)
                        sandbox_fs_info_done(&info);
                return r;
        }
        *ret = info;
        return 0;
}

void sandbox_fs_info_done(SandboxFsInfo *i)
{
        free(i->rootfs);
        free(i->user);
        free(i->name);
        *i = (SandboxFsInfo){0};
}

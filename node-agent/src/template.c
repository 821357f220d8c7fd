#include "template.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <json-c/json.h>

#include "sandpit/json.h"
#include "sandpit/log.h"
#include "sandpit/macro.h"
#include "sandpit/util.h"

#define START_READY_TIMEOUT_MS     60000u
#define START_READY_TIMEOUT_MAX_MS 3600000u

void start_cmd_free(StartCmd *c)
{
        if (!c)
                return;
        strv_free(c->argv);
        free(c->user);
        free(c->cwd);
        free(c);
}

static int start_argv(json_object *v, char ***ret)
{
        size_t n = json_object_is_type(v, json_type_array) ? json_object_array_length(v) : 0;
        if (json_object_is_type(v, json_type_string)) {
                /* A shell string, as an exec's "shell". */
                if (!*json_object_get_string(v))
                        return -EINVAL;
                char **sh = calloc(4, sizeof(char *));
                if (!sh || !(sh[0] = strdup("/bin/sh")) || !(sh[1] = strdup("-c")) ||
                    !(sh[2] = strdup(json_object_get_string(v)))) {
                        strv_free(sh);
                        return -ENOMEM;
                }
                *ret = sh;
                return 0;
        }
        if (n == 0 || n > 4096)
                return -EINVAL;
        char **argv = calloc(n + 1, sizeof(char *));
        if (!argv)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                json_object *a = json_object_array_get_idx(v, i);
                if (!json_object_is_type(a, json_type_string)) {
                        strv_free(argv);
                        return -EINVAL;
                }
                if (!(argv[i] = strdup(json_object_get_string(a)))) {
                        strv_free(argv);
                        return -ENOMEM;
                }
        }
        *ret = argv;
        return 0;
}

int start_cmd_from_json(json_object *v, StartCmd **ret, char *err, size_t errlen)
{
        if (!json_object_is_type(v, json_type_object)) {
                (void) snprintf(err, errlen, "start_cmd must be an object");
                return -EINVAL;
        }
        StartCmd *c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->ready_timeout_ms = START_READY_TIMEOUT_MS;
        int r = 0;
        json_object_object_foreach(v, key, val) {
                if (streq(key, "command")) {
                        strv_free(c->argv);
                        c->argv = NULL;
                        if ((r = start_argv(val, &c->argv)) == -EINVAL)
                                (void) snprintf(err, errlen,
                                                "start_cmd.command must be a non-empty array of "
                                                "strings or a non-empty shell string");
                } else if (streq(key, "from_image")) {
                        if (!json_object_is_type(val, json_type_boolean)) {
                                (void) snprintf(err, errlen,
                                                "start_cmd.from_image must be a boolean");
                                r = -EINVAL;
                        } else {
                                c->from_image = json_object_get_boolean(val);
                        }
                } else if (streq(key, "wait_for_port")) {
                        int64_t port = json_object_get_int64(val);
                        if (!json_object_is_type(val, json_type_int) || port < 1 || port > 65535) {
                                (void) snprintf(err, errlen,
                                                "start_cmd.wait_for_port must be a port (1-65535)");
                                r = -EINVAL;
                        } else {
                                c->port = (uint32_t) port;
                        }
                } else if (streq(key, "ready_timeout")) {
                        if (json_timeout_ms(val, false, &c->ready_timeout_ms) < 0 ||
                            c->ready_timeout_ms > START_READY_TIMEOUT_MAX_MS) {
                                (void) snprintf(err, errlen,
                                                "start_cmd.ready_timeout must be a number of "
                                                "seconds > 0 and <= %u",
                                                START_READY_TIMEOUT_MAX_MS / 1000);
                                r = -EINVAL;
                        }
                } else if (streq(key, "user") || streq(key, "cwd")) {
                        char **dst = streq(key, "user") ? &c->user : &c->cwd;
                        const char *s = json_object_get_string(val);
                        if (!json_object_is_type(val, json_type_string) || !*s ||
                            (streq(key, "cwd") && s[0] != '/') ||
                            (streq(key, "user") && strchr(s, ':'))) {
                                (void) snprintf(err, errlen, "start_cmd.%s must be %s", key,
                                                streq(key, "cwd") ? "an absolute path"
                                                                  : "a user name or uid");
                                r = -EINVAL;
                        } else {
                                free(*dst);
                                if (!(*dst = strdup(s)))
                                        r = -ENOMEM;
                        }
                } else {
                        (void) snprintf(err, errlen, "start_cmd: unknown field \"%.64s\"", key);
                        r = -EINVAL;
                }
                if (r < 0)
                        break;
        }
        if (r == 0 && !!c->argv == c->from_image) {
                (void) snprintf(err, errlen,
                                "start_cmd needs exactly one of command and \"from_image\": true");
                r = -EINVAL;
        }
        if (r < 0) {
                start_cmd_free(c);
                return r;
        }
        *ret = c;
        return 0;
}

void template_free(Template *t)
{
        if (!t)
                return;
        free(t->name);
        free(t->rootfs);
        strv_free(t->lowers);
        strv_free(t->binds);
        strv_free(t->env);
        free(t->workdir);
        free(t->user);
        strv_free(t->start_cmd);
        start_cmd_free(t->start);
        strv_free(t->languages);
        free(t);
}

static bool name_ok(const char *n)
{
        if (!*n || strlen(n) > 128 || n[0] == '.')
                return false;
        for (const char *p = n; *p; p++)
                if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                      (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' || *p == '.'))
                        return false;
        return true;
}

int template_load(const char *templates_dir, const char *name, Template **ret)
{
        if (!name_ok(name))
                return -EINVAL;
        cleanup_free char *manifest = NULL, *rootfs = NULL, *text = NULL;
        if (asprintf(&manifest, "%s/%s/template.json", templates_dir, name) < 0 ||
            asprintf(&rootfs, "%s/%s/rootfs", templates_dir, name) < 0)
                return -ENOMEM;
        struct stat st;
        if (stat(rootfs, &st) < 0 || !S_ISDIR(st.st_mode))
                return -ENOENT;
        int r = read_file(manifest, (size_t) 1024 * 1024, &text, NULL);
        if (r < 0)
                return r == -ENOENT ? -ENOENT : r;
        json_object *doc = json_tokener_parse(text);
        if (!doc || !json_object_is_type(doc, json_type_object)) {
                json_object_put(doc);
                return -EBADMSG;
        }
        Template *t = calloc(1, sizeof(*t));
        if (!t) {
                json_object_put(doc);
                return -ENOMEM;
        }
        t->name = strdup(name);
        t->lowers = calloc(2, sizeof(char *));
        if (t->lowers)
                t->lowers[0] = strdup(rootfs);
        t->rootfs = TAKE_PTR(rootfs);
        json_object *binds = NULL;
        size_t n = 0;
        if (json_object_object_get_ex(doc, "binds", &binds) &&
            json_object_is_type(binds, json_type_array))
                n = json_object_array_length(binds);
        t->binds = calloc(n + 1, sizeof(char *));
        r = t->name && t->binds && t->lowers && t->lowers[0] ? 0 : -ENOMEM;
        for (size_t i = 0; r == 0 && i < n; i++) {
                json_object *b = json_object_array_get_idx(binds, i);
                const char *s = json_object_get_string(b);
                if (!json_object_is_type(b, json_type_string) || s[0] != '/' || strstr(s, "..") ||
                    strchr(s, ','))
                        r = -EBADMSG;
                else if (!(t->binds[i] = strdup(s)))
                        r = -ENOMEM;
        }
        json_object *langs = NULL;
        if (r == 0 && json_object_object_get_ex(doc, "languages", &langs)) {
                size_t m = json_object_is_type(langs, json_type_array)
                                   ? json_object_array_length(langs)
                                   : 0;
                if (!json_object_is_type(langs, json_type_array))
                        r = -EBADMSG;
                else if (!(t->languages = calloc(m + 1, sizeof(char *))))
                        r = -ENOMEM;
                for (size_t i = 0; r == 0 && i < m; i++) {
                        json_object *l = json_object_array_get_idx(langs, i);
                        if (!json_object_is_type(l, json_type_string))
                                r = -EBADMSG;
                        else if (!(t->languages[i] = strdup(json_object_get_string(l))))
                                r = -ENOMEM;
                }
                if (r == -EBADMSG)
                        (void) log_error("template %s: languages must be an array of strings",
                                         name);
        }
        json_object *start = NULL;
        if (r == 0 && json_object_object_get_ex(doc, "start_cmd", &start)) {
                char err[256] = "";
                r = start_cmd_from_json(start, &t->start, err, sizeof(err));
                if (r == 0 && t->start->from_image)
                        r = -EINVAL; /* a directory has no image */
                if (r == -EINVAL) {
                        (void) log_error("template %s: %s", name,
                                         *err ? err : "start_cmd.from_image: not an image");
                        r = -EBADMSG;
                }
        }
        json_object_put(doc);
        if (r < 0) {
                template_free(t);
                return r;
        }
        *ret = t;
        return 0;
}

static bool is_template(const char *dir, const char *name, void *userdata)
{
        (void) userdata;
        char path[4096];
        struct stat st;
        (void) snprintf(path, sizeof(path), "%s/%s/template.json", dir, name);
        return name_ok(name) && stat(path, &st) == 0;
}

int template_list(const char *templates_dir, char ***ret)
{
        return dir_list(templates_dir, is_template, NULL, ret);
}

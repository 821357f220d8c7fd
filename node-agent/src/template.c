#include "template.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <json-c/json.h>

#include "sandpit/macro.h"
#include "sandpit/util.h"

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

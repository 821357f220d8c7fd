#include "secrets.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sandpit/macro.h"

void secret_strv_free(char **v)
{
        STRV_FOREACH(s, v)
                explicit_bzero(*s, strlen(*s));
        strv_free(v);
}

bool env_has_name(char *const *env, const char *name)
{
        size_t len = strlen(name);
        for (char *const *e = env; e && *e; e++)
                if (strncmp(*e, name, len) == 0 && ((*e)[len] == '=' || (*e)[len] == '\0'))
                        return true;
        return false;
}

int secrets_from_json(json_object *v, const char *field, char ***ret_env, char ***ret_names,
                      char *err, size_t errlen)
{
        if (!json_object_is_type(v, json_type_object)) {
                (void) snprintf(err, errlen, "%s must be an object of strings", field);
                return -EINVAL;
        }
        size_t n = (size_t) json_object_object_length(v), i = 0, total = 0;
        if (n > SECRETS_MAX) {
                (void) snprintf(err, errlen, "%s: at most %d names", field, SECRETS_MAX);
                return -EINVAL;
        }
        char **env = calloc(n + 1, sizeof(char *)), **names = calloc(n + 1, sizeof(char *));
        int r = env && names ? 0 : -ENOMEM;
        json_object_object_foreach(v, key, val) {
                if (r < 0)
                        break;
                size_t len = json_object_is_type(val, json_type_string)
                                     ? (size_t) json_object_get_string_len(val)
                                     : 0;
                total += len;
                if (!json_object_is_type(val, json_type_string) || !*key || strchr(key, '=') ||
                    strlen(key) > 1024 || len > SECRET_VALUE_MAX ||
                    memchr(json_object_get_string(val), 0, len) || total > SECRETS_TOTAL_MAX) {
                        (void) snprintf(err, errlen,
                                        "%s %.64s: names must be non-empty without '=', values "
                                        "strings without NUL of at most 64 KiB (512 KiB in all)",
                                        field, key);
                        r = -EINVAL;
                        break;
                }
                if (asprintf(&env[i], "%s=%s", key, json_object_get_string(val)) < 0) {
                        env[i] = NULL;
                        r = -ENOMEM;
                        break;
                }
                if (!(names[i] = strdup(key))) {
                        r = -ENOMEM;
                        i++;
                        break;
                }
                i++;
        }
        if (r < 0) {
                secret_strv_free(env);
                strv_free(names);
                return r;
        }
        *ret_env = env;
        *ret_names = names;
        return 0;
}

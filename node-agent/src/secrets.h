/* Secret env: parsing and hygiene. Values travel from the request to
 * sandpit-init's memory and nowhere else (docs/security.md, "Secrets"). */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include <json-c/json.h>

#define SECRETS_MAX       256
#define SECRET_VALUE_MAX  ((size_t) 64 * 1024)
#define SECRETS_TOTAL_MAX ((size_t) 512 * 1024)

/* Parses {"NAME": "value", ...} into "NAME=value" entries and their names
 * (both NULL-terminated). -EINVAL with a message that names the field but
 * never quotes a value. */
int secrets_from_json(json_object *v, const char *field, char ***ret_env, char ***ret_names,
                      char *err, size_t errlen);
/* strv_free() that zeroes every string first. */
void secret_strv_free(char **v);
/* Whether env ("NAME=value" entries, or bare names) has name. */
bool env_has_name(char *const *env, const char *name);

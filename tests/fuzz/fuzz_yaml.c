/* libFuzzer harness for the YAML to JSON conversion that reads kubeconfigs
 * and manifests: no crash, no leak, bounded work on alias bombs, and a result
 * json-c can serialize and parse back. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "sandpit/yaml.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        char *buf = malloc(size ? size : 1);
        if (!buf)
                return 0;
        memcpy(buf, data, size);
        json_object *o = NULL;
        if (yaml_to_json(buf, size, &o) == 0 && o) {
                const char *s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
                json_tokener *tok = json_tokener_new_ex(YAML_DEPTH_MAX + 2);
                json_object *back = tok ? json_tokener_parse_ex(tok, s, -1) : NULL;
                if (tok && !back)
                        abort();
                json_object_put(back);
                json_tokener_free(tok);
        }
        json_object_put(o);
        free(buf);
        return 0;
}

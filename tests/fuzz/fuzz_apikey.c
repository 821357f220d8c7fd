/* libFuzzer harness for the API key stores' parsers (lib/src/apikey.c): the
 * key file and a Secret's data entries, which anyone allowed to write that
 * Secret controls. No crash, no leak; a set that parses formats and parses
 * back to the same records. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "sandpit/apikey.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        ApiKeySet s = {0};
        if (apikey_set_parse((const char *) data, size, &s) == 0) {
                char *text = NULL;
                ApiKeySet back = {0};
                if (apikey_set_format(&s, &text) != 0 ||
                    apikey_set_parse(text, strlen(text), &back) != 0 || back.n != s.n ||
                    (s.n && memcmp(back.keys, s.keys, s.n * sizeof(*s.keys)) != 0))
                        abort();
                (void) apikey_set_lookup(&s, "e2b_0000000000000000000000000000000000000000");
                apikey_set_done(&back);
                free(text);
                apikey_set_done(&s);
        }
        /* The same bytes as a Secret object. */
        json_tokener *tok = json_tokener_new_ex(16);
        json_object *o = tok ? json_tokener_parse_ex(tok, (const char *) data, (int) size) : NULL;
        if (o && apikey_set_from_secret(o, &s, NULL) == 0)
                apikey_set_done(&s);
        json_object_put(o);
        json_tokener_free(tok);
        return 0;
}

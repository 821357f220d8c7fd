/* libFuzzer harness for the secret masker: the input gives up to three
 * secrets (',' separates them, '\n' ends the list; '*' in them becomes 'x')
 * and then the output text, fed in chunks whose sizes come from the input too.
 * Checked: no secret survives in the masked stream however it is chunked; a
 * text with no secret in it comes out unchanged; nothing is held at the end. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mask.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool contains(const uint8_t *hay, size_t n, const char *needle)
{
        size_t k = strlen(needle);
        if (k == 0 || k > n)
                return false;
        for (size_t i = 0; i + k <= n; i++)
                if (memcmp(hay + i, needle, k) == 0)
                        return true;
        return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        const uint8_t *nl = memchr(data, '\n', size);
        if (!nl || nl - data > 200)
                return 0;
        char *secrets[4] = {NULL, NULL, NULL, NULL};
        size_t n = 0, start = 0, head = (size_t) (nl - data);
        for (size_t i = 0; i <= head && n < 3; i++)
                if (i == head || data[i] == ',') {
                        secrets[n] = strndup((const char *) data + start, i - start);
                        if (!secrets[n])
                                abort();
                        for (char *c = secrets[n]; *c; c++)
                                if (*c == '*')
                                        *c = 'x';
                        n++;
                        start = i + 1;
                }
        const uint8_t *text = nl + 1;
        size_t len = size - head - 1;
        Masker *m = NULL;
        if (mask_new(secrets, &m) < 0)
                abort();
        if (m) {
                uint8_t *all = NULL;
                size_t all_len = 0, off = 0;
                unsigned seed = len ? text[0] : 1;
                while (true) {
                        size_t chunk = len - off;
                        seed = seed * 1103515245u + 12345u;
                        if (chunk > 1)
                                chunk = 1 + (seed >> 16) % chunk;
                        bool final = off + chunk >= len;
                        uint8_t *out = NULL;
                        size_t out_len = 0;
                        if (mask_feed(m, text + off, chunk, final, &out, &out_len) < 0)
                                abort();
                        uint8_t *na = realloc(all, all_len + out_len + 1);
                        if (!na)
                                abort();
                        all = na;
                        memcpy(all + all_len, out, out_len);
                        all_len += out_len;
                        free(out);
                        off += chunk;
                        if (final)
                                break;
                }
                if (mask_held(m) != 0)
                        abort();
                bool any = false;
                for (size_t i = 0; i < n; i++) {
                        if (contains(all, all_len, secrets[i]))
                                abort(); /* a secret got through */
                        any |= contains(text, len, secrets[i]);
                }
                if (!any && (all_len != len || (len && memcmp(all, text, len) != 0)))
                        abort(); /* nothing to mask, yet the text changed */
                free(all);
                mask_free(m);
        }
        for (size_t i = 0; i < n; i++)
                free(secrets[i]);
        return 0;
}

/* Secret masking for output streams (see mask.h). */
#include "mask.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct Masker {
        char **values;
        size_t *lens;
        size_t n;
        uint8_t first[32]; /* bitmap of the values' first bytes: the fast path */
        uint8_t *held;
        size_t held_len;
};

static void zero_free(void *p, size_t len)
{
        if (!p)
                return;
        explicit_bzero(p, len);
        free(p);
}

void mask_free(Masker *m)
{
        if (!m)
                return;
        for (size_t i = 0; i < m->n; i++)
                zero_free(m->values[i], m->lens[i]);
        free(m->values);
        free(m->lens);
        zero_free(m->held, m->held_len);
        free(m);
}

int mask_new(char *const *values, Masker **ret)
{
        size_t n = 0;
        for (char *const *v = values; v && *v; v++)
                if (**v)
                        n++;
        *ret = NULL;
        if (n == 0)
                return 0;
        Masker *m = calloc(1, sizeof(*m));
        if (!m)
                return -ENOMEM;
        m->values = calloc(n, sizeof(char *));
        m->lens = calloc(n, sizeof(size_t));
        if (!m->values || !m->lens) {
                mask_free(m);
                return -ENOMEM;
        }
        for (char *const *v = values; *v; v++) {
                if (!**v)
                        continue;
                size_t len = strlen(*v);
                if (!(m->values[m->n] = strdup(*v))) {
                        mask_free(m);
                        return -ENOMEM;
                }
                m->lens[m->n++] = len;
                uint8_t c = (uint8_t) (*v)[0];
                m->first[c >> 3] |= (uint8_t) (1u << (c & 7));
        }
        *ret = m;
        return 0;
}

size_t mask_held(const Masker *m)
{
        return m ? m->held_len : 0;
}

/* Masks buf[0..len) into out (room for 3 * len bytes). Returns the number of
 * input bytes consumed; the rest may still become a secret (only when !final). */
static size_t mask_run(const Masker *m, const uint8_t *buf, size_t len, bool final, uint8_t *out,
                       size_t *ret_out_len)
{
        size_t i = 0, o = 0;
        while (i < len) {
                uint8_t c = buf[i];
                if (!(m->first[c >> 3] & (1u << (c & 7)))) {
                        out[o++] = c;
                        i++;
                        continue;
                }
                size_t best = 0, rem = len - i;
                bool partial = false;
                for (size_t k = 0; k < m->n; k++) {
                        size_t vl = m->lens[k];
                        if (vl <= rem) {
                                if (vl > best && memcmp(buf + i, m->values[k], vl) == 0)
                                        best = vl;
                        } else if (!final && memcmp(buf + i, m->values[k], rem) == 0) {
                                partial = true;
                        }
                }
                if (partial)
                        break; /* a longer secret may still match here: wait for more */
                if (best > 0) {
                        memcpy(out + o, MASK_REPLACEMENT, sizeof(MASK_REPLACEMENT) - 1);
                        o += sizeof(MASK_REPLACEMENT) - 1;
                        i += best;
                } else {
                        out[o++] = c;
                        i++;
                }
        }
        *ret_out_len = o;
        return i;
}

int mask_feed(Masker *m, const uint8_t *data, size_t len, bool final, uint8_t **ret,
              size_t *ret_len)
{
        size_t total = m->held_len + len;
        uint8_t *buf = calloc(1, total ? total : 1);
        uint8_t *out = malloc(total ? total * 3 : 1);
        if (!buf || !out) {
                free(buf);
                free(out);
                return -ENOMEM;
        }
        if (m->held_len)
                memcpy(buf, m->held, m->held_len);
        if (len)
                memcpy(buf + m->held_len, data, len);
        size_t out_len = 0;
        size_t used = mask_run(m, buf, total, final, out, &out_len);
        uint8_t *held = NULL;
        if (used < total && !(held = malloc(total - used))) {
                zero_free(buf, total);
                free(out);
                return -ENOMEM;
        }
        if (held)
                memcpy(held, buf + used, total - used);
        zero_free(m->held, m->held_len);
        m->held = held;
        m->held_len = total - used;
        zero_free(buf, total);
        *ret = out;
        *ret_len = out_len;
        return 0;
}

char *mask_string(const Masker *m, const char *s)
{
        size_t len = strlen(s);
        if (!m)
                return strdup(s);
        char *out = malloc(len * 3 + 1);
        if (!out)
                return NULL;
        size_t out_len = 0;
        (void) mask_run(m, (const uint8_t *) s, len, true, (uint8_t *) out, &out_len);
        out[out_len] = '\0';
        return out;
}

#include "sandpit/outbuf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "sandpit/strbuf.h"

static int reserve(OutBuf *b, size_t n)
{
        if (b->off > 0 && b->off == b->len)
                b->off = b->len = 0;
        return strbuf_grow(&b->data, &b->cap, b->len + n, 8192);
}

int outbuf_append(OutBuf *b, const void *data, size_t n)
{
        if (reserve(b, n) < 0)
                return -ENOMEM;
        if (n)
                memcpy(b->data + b->len, data, n);
        b->len += n;
        return 0;
}

int outbuf_append_json(OutBuf *b, json_object *o)
{
        if (!o)
                return -ENOMEM;
        size_t len = 0;
        const char *text = json_object_to_json_string_length(
                o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
        int r = !text || reserve(b, len + 1) < 0 ? -ENOMEM : 0;
        if (r == 0) {
                memcpy(b->data + b->len, text, len);
                b->len += len;
                b->data[b->len++] = '\n';
        }
        json_object_put(o);
        return r;
}

size_t outbuf_take(OutBuf *b, void *dst, size_t max)
{
        size_t n = b->len - b->off;
        if (n > max)
                n = max;
        memcpy(dst, b->data + b->off, n);
        b->off += n;
        return n;
}

void outbuf_done(OutBuf *b)
{
        free(b->data);
        *b = (OutBuf){0};
}

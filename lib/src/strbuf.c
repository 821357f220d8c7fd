#include "sandpit/strbuf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int strbuf_grow(char **data, size_t *cap, size_t need, size_t min_cap)
{
        if (*data && need <= *cap)
                return 0;
        size_t c = *cap ? *cap : min_cap;
        while (c < need)
                c *= 2;
        char *p = realloc(*data, c);
        if (!p)
                return -ENOMEM;
        *data = p;
        *cap = c;
        return 0;
}

int strbuf_append(StrBuf *b, const char *data, size_t len, size_t max)
{
        if (len > max || b->len > max - len)
                return -E2BIG;
        int r = strbuf_grow(&b->data, &b->cap, b->len + len + 1, 4096);
        if (r < 0)
                return r;
        memcpy(b->data + b->len, data, len);
        b->len += len;
        b->data[b->len] = '\0';
        return 0;
}

void strbuf_done(StrBuf *b)
{
        free(b->data);
        *b = (StrBuf){0};
}

#include "sandpit/strbuf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int strbuf_append(StrBuf *b, const char *data, size_t len, size_t max)
{
        if (len > max || b->len > max - len)
                return -E2BIG;
        if (b->len + len + 1 > b->cap) {
                size_t cap = b->cap ? b->cap : 4096;
                while (cap < b->len + len + 1)
                        cap *= 2;
                char *p = realloc(b->data, cap);
                if (!p)
                        return -ENOMEM;
                b->data = p;
                b->cap = cap;
        }
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

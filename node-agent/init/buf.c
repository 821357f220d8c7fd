/* Byte FIFO (see buf.h). */
#include "buf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int init_buf_append(InitBuf *b, const void *p, size_t n)
{
        if (n == 0)
                return 0;
        if (b->len + n < b->len)
                return -ENOMEM;
        if (b->off + b->len + n > b->cap) {
                /* Compact only when the moved bytes are no more than the consumed
                 * ones, so a queue that is written and drained in turn costs
                 * amortised O(1) per byte; otherwise grow. */
                if (b->off > 0 && (b->off >= b->len || b->len + n <= b->cap)) {
                        memmove(b->data, b->data + b->off, b->len);
                        b->off = 0;
                }
                if (b->off + b->len + n > b->cap) {
                        size_t need = b->off + b->len + n;
                        if (need > SIZE_MAX / 2)
                                return -ENOMEM;
                        /* Double, but start at what is needed: a queue holding one
                         * 64 KiB frame stays below the mmap threshold. */
                        size_t cap = b->cap * 2;
                        if (cap < need)
                                cap = (need + 4095) & ~(size_t) 4095;
                        uint8_t *d = realloc(b->data, cap);
                        if (!d)
                                return -ENOMEM;
                        b->data = d;
                        b->cap = cap;
                }
        }
        memcpy(b->data + b->off + b->len, p, n);
        b->len += n;
        return 0;
}

void init_buf_consume(InitBuf *b, size_t n)
{
        if (n >= b->len) {
                init_buf_clear(b);
                return;
        }
        b->off += n;
        b->len -= n;
}

void init_buf_clear(InitBuf *b)
{
        free(b->data);
        *b = (InitBuf){0};
}

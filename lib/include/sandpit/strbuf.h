/* A growable byte string (lib/src/strbuf.c): response bodies read in pieces,
 * the lines of a stream. */
#pragma once

#include <stddef.h>

/* A growable byte string, always NUL-terminated once non-empty (for response
 * bodies read in pieces). */
typedef struct {
        char *data;
        size_t len;
        size_t cap;
} StrBuf;
/* Appends len bytes; -E2BIG when the total would pass max. */
int strbuf_append(StrBuf *b, const char *data, size_t len, size_t max);
void strbuf_done(StrBuf *b);
/* Makes *data (capacity *cap) hold at least need bytes, doubling from min_cap:
 * the growth of lib's buffers (StrBuf, OutBuf). 0 or -ENOMEM (*data kept). */
int strbuf_grow(char **data, size_t *cap, size_t need, size_t min_cap);

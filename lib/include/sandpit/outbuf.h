/* A growable byte queue for streamed responses: producers append, the HTTP
 * stream's read() takes from the front. Not thread-safe (one stream's own). */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include <json-c/json.h>

typedef struct {
        char *data;
        size_t len; /* bytes queued */
        size_t off; /* bytes already taken */
        size_t cap;
} OutBuf;

/* Appends n bytes; a drained buffer starts over at its beginning. */
int outbuf_append(OutBuf *b, const void *data, size_t n);
/* Appends o as one NDJSON line (plain JSON, then '\n'); takes o (NULL: -ENOMEM). */
int outbuf_append_json(OutBuf *b, json_object *o);
/* Copies up to max queued bytes to dst; returns how many. */
size_t outbuf_take(OutBuf *b, void *dst, size_t max);
static inline bool outbuf_pending(const OutBuf *b)
{
        return b->off < b->len;
}
void outbuf_done(OutBuf *b);

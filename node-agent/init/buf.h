/* A byte FIFO: append at the tail, consume from the head. Used for connection
 * output queues, stdin buffers and the detached-output backlog. An empty buffer
 * owns no memory, so idle connections and processes hold no heap. */
#pragma once

#include <stddef.h>
#include <stdint.h>

typedef struct {
        uint8_t *data;
        size_t off; /* start of the live bytes */
        size_t len; /* live bytes */
        size_t cap;
} InitBuf;

/* Appends n bytes. 0 or -ENOMEM (the buffer is unchanged on failure). */
int init_buf_append(InitBuf *b, const void *p, size_t n);
/* Drops n (<= b->len) bytes from the head; frees the memory once empty. */
void init_buf_consume(InitBuf *b, size_t n);
void init_buf_clear(InitBuf *b);

static inline const uint8_t *init_buf_head(const InitBuf *b)
{
        return b->data + b->off;
}

/* Masks secret values in a byte stream: every occurrence of a secret becomes
 * "***", also when it arrives split across chunks. libc only (part of the
 * static sandpit-init, which masks process output before it leaves the
 * sandbox; see docs/security.md, "Secrets").
 *
 * At each position the longest secret that matches wins (leftmost-longest). A
 * chunk's tail that could still become a secret (a prefix of one) is held back
 * until the next chunk decides, or until the stream ends (final). So the held
 * bytes are always fewer than the longest secret. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MASK_REPLACEMENT "***"

typedef struct Masker Masker;

/* values: NULL-terminated; empty strings are skipped (they match nothing).
 * *ret is NULL when no value is left: a NULL Masker masks nothing. Copies the
 * values. 0 or -ENOMEM. */
int mask_new(char *const *values, Masker **ret);
/* Zeroes the copies of the values, then frees. Accepts NULL. */
void mask_free(Masker *m);
/* Appends data to what was held back, masks, and returns in *ret (malloc'd,
 * never NULL on success) the *ret_len bytes that are final now. final = the
 * stream ends: nothing is held back. 0 or -ENOMEM (state unchanged). */
int mask_feed(Masker *m, const uint8_t *data, size_t len, bool final, uint8_t **ret,
              size_t *ret_len);
/* Bytes currently held back. */
size_t mask_held(const Masker *m);
/* A NUL-terminated copy of s with every secret masked (held-back state is
 * neither used nor changed). m may be NULL: then a plain copy. */
char *mask_string(const Masker *m, const char *s);

/* Unit tests for the secret masker (node-agent/init/mask.c): whole and split
 * secrets, every split point, overlapping secrets, secrets that are prefixes
 * of others, the hold-back bound and the final flush. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mask.h"

/* Feeds the chunks (NULL-terminated) in order, then ends the stream, and
 * returns everything the masker let out, NUL-terminated. */
static char *run_chunks(char *const *secrets, const char *const *chunks)
{
        Masker *m = NULL;
        assert_int_equal(mask_new(secrets, &m), 0);
        assert_non_null(m);
        size_t cap = 1, len = 0;
        char *all = calloc(1, 1);
        for (size_t i = 0;; i++) {
                bool final = chunks[i] == NULL;
                const char *c = final ? "" : chunks[i];
                uint8_t *out = NULL;
                size_t n = 0;
                assert_int_equal(mask_feed(m, (const uint8_t *) c, strlen(c), final, &out, &n), 0);
                all = realloc(all, cap + n);
                memcpy(all + len, out, n);
                len += n;
                cap += n;
                all[len] = '\0';
                free(out);
                if (final)
                        break;
        }
        assert_int_equal(mask_held(m), 0);
        mask_free(m);
        return all;
}

static void expect(char *const *secrets, const char *const *chunks, const char *want)
{
        char *got = run_chunks(secrets, chunks);
        assert_string_equal(got, want);
        free(got);
}

static void test_whole(void **state)
{
        (void) state;
        char *s[] = {"hunter2", NULL};
        expect(s, (const char *[]){"pw=hunter2\n", NULL}, "pw=***\n");
        expect(s, (const char *[]){"hunter2hunter2 hunter", NULL}, "****** hunter");
        expect(s, (const char *[]){"nothing here\n", NULL}, "nothing here\n");
        expect(s, (const char *[]){NULL}, "");
}

static void test_every_split_point(void **state)
{
        (void) state;
        char *s[] = {"s3cr3t-value", NULL};
        const char *text = "a s3cr3t-value b s3cr3t-valu c";
        const char *want = "a *** b s3cr3t-valu c";
        size_t len = strlen(text);
        for (size_t i = 0; i <= len; i++)
                for (size_t j = i; j <= len; j++) {
                        char *a = strndup(text, i), *b = strndup(text + i, j - i),
                             *c = strdup(text + j);
                        expect(s, (const char *[]){a, b, c, NULL}, want);
                        free(a);
                        free(b);
                        free(c);
                }
}

static void test_byte_at_a_time(void **state)
{
        (void) state;
        char *s[] = {"abcabd", NULL};
        /* "abcab" then "cabd": a false start whose tail begins the real match. */
        const char *text = "xabcabcabdy";
        const char *chunks[16] = {0};
        char bytes[16][2] = {{0}};
        for (size_t i = 0; text[i]; i++) {
                bytes[i][0] = text[i];
                chunks[i] = bytes[i];
        }
        expect(s, chunks, "xabc***y");
}

static void test_prefix_secrets(void **state)
{
        (void) state;
        char *s[] = {"pass", "password", NULL};
        /* The longest wins, and a held "pass" waits for "word". */
        expect(s, (const char *[]){"my pass", "word!", NULL}, "my ***!");
        expect(s, (const char *[]){"my pass", "port", NULL}, "my ***port");
        expect(s, (const char *[]){"passwo", NULL}, "***wo");
        char *r[] = {"password", "pass", NULL};
        expect(r, (const char *[]){"password pass", NULL}, "*** ***");
}

static void test_overlapping(void **state)
{
        (void) state;
        char *s[] = {"abc", "bcd", NULL};
        expect(s, (const char *[]){"abcd", NULL}, "***d");
        expect(s, (const char *[]){"xbcd", NULL}, "x***");
        expect(s, (const char *[]){"ab", "cbcd", NULL}, "******");
}

static void test_hold_back_bound(void **state)
{
        (void) state;
        char *s[] = {"0123456789", NULL};
        Masker *m = NULL;
        assert_int_equal(mask_new(s, &m), 0);
        uint8_t *out = NULL;
        size_t n = 0;
        assert_int_equal(mask_feed(m, (const uint8_t *) "xx012345678", 11, false, &out, &n), 0);
        assert_int_equal(n, 2);
        assert_int_equal(mask_held(m), 9);
        free(out);
        /* Not the secret after all: the held bytes come out with the next chunk. */
        assert_int_equal(mask_feed(m, (const uint8_t *) "x", 1, false, &out, &n), 0);
        assert_int_equal(n, 10);
        assert_memory_equal(out, "012345678x", 10);
        assert_int_equal(mask_held(m), 0);
        free(out);
        mask_free(m);
}

static void test_empty_and_string(void **state)
{
        (void) state;
        Masker *m = NULL;
        char *none[] = {"", NULL};
        assert_int_equal(mask_new(none, &m), 0);
        assert_null(m);
        char *copy = mask_string(NULL, "plain");
        assert_string_equal(copy, "plain");
        free(copy);
        char *s[] = {"tok", "", NULL};
        assert_int_equal(mask_new(s, &m), 0);
        char *masked = mask_string(m, "a tok and to");
        assert_string_equal(masked, "a *** and to");
        free(masked);
        mask_free(m);
}

static void test_binary_and_utf8(void **state)
{
        (void) state;
        char *s[] = {"p\xc3\xa4ss", NULL};
        expect(s, (const char *[]){"\xc3\xa4p\xc3", "\xa4ss\xc3\xa4", NULL}, "\xc3\xa4***\xc3\xa4");
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_whole),
                cmocka_unit_test(test_every_split_point),
                cmocka_unit_test(test_byte_at_a_time),
                cmocka_unit_test(test_prefix_secrets),
                cmocka_unit_test(test_overlapping),
                cmocka_unit_test(test_hold_back_bound),
                cmocka_unit_test(test_empty_and_string),
                cmocka_unit_test(test_binary_and_utf8),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}

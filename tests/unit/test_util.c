/* Unit tests for the shared helpers in lib/: base64, UTF-8 boundaries,
 * quantities, ids, rm_rf's refusal to cross mounts, atomic writes. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "sandpit/macro.h"
#include "sandpit/outbuf.h"
#include "sandpit/quantity.h"
#include "sandpit/util.h"

static void test_strv_push(void **state)
{
        (void) state;
        char **v = NULL;
        size_t n = 0;
        assert_int_equal(strv_push(&v, &n, strdup("a")), 0);
        assert_int_equal(strv_push(&v, &n, strdup("b")), 0);
        assert_int_equal(n, 2);
        assert_string_equal(v[0], "a");
        assert_string_equal(v[1], "b");
        assert_null(v[2]);
        /* a failed strdup() is -ENOMEM, the list as it was */
        assert_int_equal(strv_push(&v, &n, NULL), -ENOMEM);
        assert_int_equal(n, 2);
        assert_null(v[2]);
        strv_free(v);
}

static void test_base64(void **state)
{
        (void) state;
        static const char *const plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
        static const char *const coded[] = {"",         "Zg==",     "Zm8=",    "Zm9v",
                                            "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
        uint8_t *out = NULL;
        size_t n = 0;

        for (size_t i = 0; i < ARRAY_SIZE(plain); i++) {
                char *enc = NULL;
                assert_int_equal(base64_encode(plain[i], strlen(plain[i]), &enc), 0);
                assert_string_equal(enc, coded[i]);
                free(enc);

                assert_int_equal(base64_decode(coded[i], &out, &n), 0);
                assert_int_equal(n, strlen(plain[i]));
                assert_memory_equal(out, plain[i], n);
                free(out);
        }

        /* Unpadded input is fine. */
        assert_int_equal(base64_decode("Zm9vYg", &out, &n), 0);
        assert_int_equal(n, 4);
        assert_memory_equal(out, "foob", 4);
        free(out);

        /* All 256 byte values survive a round trip. */
        uint8_t all[256];
        for (size_t i = 0; i < sizeof(all); i++)
                all[i] = (uint8_t) i;
        char *enc = NULL;
        assert_int_equal(base64_encode(all, sizeof(all), &enc), 0);
        assert_int_equal(base64_decode(enc, &out, &n), 0);
        assert_int_equal(n, sizeof(all));
        assert_memory_equal(out, all, sizeof(all));
        free(out);
        free(enc);

        static const char *const bad[] = {"Z", "Zm9v!", "Zm=9", "Zg=", "Zh==", "Zm9v====", "Zm 9"};
        for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
                assert_int_equal(base64_decode(bad[i], &out, &n), -EINVAL);
}

static void test_utf8_prefix(void **state)
{
        (void) state;
        bool valid;
        /* ASCII and complete multi-byte characters pass whole. */
        assert_int_equal(utf8_complete_prefix((const uint8_t *) "abc", 3, &valid), 3);
        assert_true(valid);
        const uint8_t euro[] = {0xE2, 0x82, 0xAC}; /* € */
        assert_int_equal(utf8_complete_prefix(euro, 3, &valid), 3);
        assert_true(valid);
        /* A character cut at the end is held back, not called invalid. */
        const uint8_t cut[] = {'a', 0xE2, 0x82};
        assert_int_equal(utf8_complete_prefix(cut, 3, &valid), 1);
        assert_true(valid);
        const uint8_t cut4[] = {0xF0, 0x9F, 0x98};
        assert_int_equal(utf8_complete_prefix(cut4, 3, &valid), 0);
        assert_true(valid);
        /* Invalid: stray continuation, overlong form, surrogate, bad lead byte. */
        const uint8_t stray[] = {'a', 0x80, 'b'};
        (void) utf8_complete_prefix(stray, 3, &valid);
        assert_false(valid);
        const uint8_t overlong[] = {0xC0, 0xAF};
        (void) utf8_complete_prefix(overlong, 2, &valid);
        assert_false(valid);
        const uint8_t surrogate[] = {0xED, 0xA0, 0x80};
        (void) utf8_complete_prefix(surrogate, 3, &valid);
        assert_false(valid);
        const uint8_t lead[] = {0xFF, 'a'};
        (void) utf8_complete_prefix(lead, 2, &valid);
        assert_false(valid);
        /* A cut sequence whose tail is not a continuation is invalid, not held. */
        const uint8_t broken[] = {0xE2, 'x'};
        (void) utf8_complete_prefix(broken, 2, &valid);
        assert_false(valid);
}

static void test_quantities(void **state)
{
        (void) state;
        uint64_t b;
        assert_int_equal(quantity_parse_bytes("512Mi", &b), 0);
        assert_int_equal(b, 512ull << 20);
        assert_int_equal(quantity_parse_bytes("1Gi", &b), 0);
        assert_int_equal(b, 1ull << 30);
        assert_int_equal(quantity_parse_bytes("2k", &b), 0);
        assert_int_equal(b, 2000);
        assert_int_equal(quantity_parse_bytes("1.5Ki", &b), 0);
        assert_int_equal(b, 1536);
        assert_int_equal(quantity_parse_bytes("123", &b), 0);
        assert_int_equal(b, 123);
        static const char *const bad_bytes[] = {"",    "-1",   "+5",  "12Qi", "Mi",
                                                "1.5", "1e30", "nan", "inf",  "1 Mi"};
        for (size_t i = 0; i < ARRAY_SIZE(bad_bytes); i++)
                assert_int_equal(quantity_parse_bytes(bad_bytes[i], &b), -EINVAL);

        double c;
        assert_int_equal(quantity_parse_cpu("500m", &c), 0);
        assert_true(c > 0.4999 && c < 0.5001);
        assert_int_equal(quantity_parse_cpu("1.5", &c), 0);
        assert_true(c > 1.4999 && c < 1.5001);
        static const char *const bad_cpu[] = {"", "-1", "1x", "m", "nan", "1.5 "};
        for (size_t i = 0; i < ARRAY_SIZE(bad_cpu); i++)
                assert_int_equal(quantity_parse_cpu(bad_cpu[i], &c), -EINVAL);

        /* formatted text parses back to the same value */
        static const uint64_t sizes[] = {0, 1000, 1024, 128ULL << 20, 3ULL << 30, (1ULL << 30) + 1};
        static const char *const size_text[] = {"0", "1000", "1Ki", "128Mi", "3Gi", "1073741825"};
        char buf[32];
        for (size_t i = 0; i < ARRAY_SIZE(sizes); i++) {
                quantity_format_bytes(sizes[i], buf, sizeof(buf));
                assert_string_equal(buf, size_text[i]);
                assert_int_equal(quantity_parse_bytes(buf, &b), 0);
                assert_true(b == sizes[i]);
        }
        static const double cores[] = {0.01, 0.5, 1, 1.5, 64};
        static const char *const core_text[] = {"10m", "500m", "1", "1500m", "64"};
        for (size_t i = 0; i < ARRAY_SIZE(cores); i++) {
                quantity_format_cpu(cores[i], buf, sizeof(buf));
                assert_string_equal(buf, core_text[i]);
                assert_int_equal(quantity_parse_cpu(buf, &c), 0);
                assert_true(c > cores[i] - 1e-9 && c < cores[i] + 1e-9);
        }
}

static void test_ids(void **state)
{
        (void) state;
        assert_true(id_is_valid("abc-123"));
        assert_true(id_is_valid("a"));
        assert_false(id_is_valid(""));
        assert_false(id_is_valid("-abc"));
        assert_false(id_is_valid("ABC"));
        assert_false(id_is_valid("a/b"));
        assert_false(id_is_valid("a.b"));
        char long_id[65];
        memset(long_id, 'a', 64);
        long_id[64] = 0;
        assert_false(id_is_valid(long_id));
        char id[21], other[21];
        assert_int_equal(random_id(id, 20), 0);
        assert_int_equal(random_id(other, 20), 0);
        assert_int_equal(strlen(id), 20);
        assert_true(id_is_valid(id));
        assert_string_not_equal(id, other);
}

static void test_atomic_write_and_read(void **state)
{
        (void) state;
        char dir[] = "/tmp/sandpit-test-util-XXXXXX";
        assert_non_null(mkdtemp(dir));
        char path[256];
        (void) snprintf(path, sizeof(path), "%s/f.json", dir);
        assert_int_equal(write_file_atomic(path, "{\"a\":1}", 7, 0600), 0);
        struct stat st;
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0600);
        char *text = NULL;
        size_t len = 0;
        assert_int_equal(read_file(path, 1024, &text, &len), 0);
        assert_int_equal(len, 7);
        assert_string_equal(text, "{\"a\":1}");
        free(text);
        assert_int_equal(read_file(path, 3, &text, &len), -EFBIG);
        assert_int_equal(read_file(path, 6, &text, &len), -EFBIG);
        assert_int_equal(read_file(path, 7, &text, &len), 0); /* exactly the limit */
        assert_int_equal(len, 7);
        free(text);
        /* Past the first 4 KiB buffer: growth up to the limit, then EFBIG. */
        char big[10000];
        memset(big, 'z', sizeof(big));
        assert_int_equal(write_file_atomic(path, big, sizeof(big), 0600), 0);
        assert_int_equal(read_file(path, sizeof(big), &text, &len), 0);
        assert_int_equal(len, sizeof(big));
        free(text);
        assert_int_equal(read_file(path, sizeof(big) - 1, &text, &len), -EFBIG);
        assert_int_equal(rm_rf(dir), 0);
        assert_int_equal(access(dir, F_OK), -1);
}

/* rm_rf must never delete through a mount point (a sandbox's tmpfs or a bind of
 * host files): it stops with -EBUSY and the mounted content survives. */
static void test_rm_rf_stops_at_mounts(void **state)
{
        (void) state;
        if (geteuid() != 0) {
                skip();
                return;
        }
        char dir[] = "/tmp/sandpit-test-rmrf-XXXXXX";
        assert_non_null(mkdtemp(dir));
        char sub[256], mnt[256], keep[512], loose[256];
        (void) snprintf(sub, sizeof(sub), "%s/a", dir);
        (void) snprintf(mnt, sizeof(mnt), "%s/a/mnt", dir);
        (void) snprintf(loose, sizeof(loose), "%s/a/loose", dir);
        assert_int_equal(mkdir_p(mnt, 0700), 0);
        assert_int_equal(mount("test", mnt, "tmpfs", 0, "size=1m"), 0);
        (void) snprintf(keep, sizeof(keep), "%s/keep", mnt);
        assert_int_equal(write_file_atomic(keep, "x", 1, 0600), 0);
        assert_int_equal(write_file_atomic(loose, "y", 1, 0600), 0);
        /* A symlink to the mounted file is removed as a link, never followed. */
        char link[256];
        (void) snprintf(link, sizeof(link), "%s/link", dir);
        assert_int_equal(symlink(keep, link), 0);

        int r = rm_rf(dir);
        assert_int_equal(r, -EBUSY);
        assert_int_equal(access(keep, F_OK), 0);   /* mounted content intact */
        assert_int_equal(access(loose, F_OK), -1); /* the rest went */
        assert_int_equal(access(link, F_OK), -1);

        assert_int_equal(umount(mnt), 0);
        assert_int_equal(rm_rf(dir), 0);
        assert_int_equal(access(dir, F_OK), -1);
}

static void test_dir_list(void **state)
{
        (void) state;
        char dir[] = "/tmp/sandpit-test-dirlist-XXXXXX";
        assert_non_null(mkdtemp(dir));
        char path[256];
        static const char *const names[] = {"abc", "Not-An-Id", ".hidden", "x1"};
        for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
                (void) snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
                assert_int_equal(mkdir(path, 0700), 0);
        }
        char **v = NULL;
        assert_int_equal(dir_list(dir, dir_keep_ids, NULL, &v), 0);
        size_t n = 0;
        bool abc = false, x1 = false;
        STRV_FOREACH(p, v) {
                n++;
                abc |= streq(*p, "abc");
                x1 |= streq(*p, "x1");
        }
        assert_int_equal(n, 2);
        assert_true(abc && x1);
        strv_free(v);
        assert_int_equal(rm_rf(dir), 0);
        /* A missing directory is an empty list, not an error. */
        assert_int_equal(dir_list(dir, dir_keep_ids, NULL, &v), 0);
        assert_null(v[0]);
        strv_free(v);
}

static void test_durations(void **state)
{
        (void) state;
        static const struct {
                const char *s;
                int64_t ns;
                long ms, sec;
        } ok[] = {
                {"0.1s", 100000000LL, 100, 1},
                {"1.5h", 5400000000000LL, 5400000, 5400},
                {"250ms", 250000000LL, 250, 1},
                {"1m1s", 61000000000LL, 61000, 61},
                {"1.000001ms", 1000001LL, 2, 1},
                {"0.0000000001s", 0, 0, 0},
                {"1000000000s", 1000000000LL * 1000000000LL, 1000000000000L, 1000000000L},
        };
        for (size_t i = 0; i < ARRAY_SIZE(ok); i++) {
                int64_t ns = -1;
                long ms = -1, sec = -1;
                assert_int_equal(parse_duration_ns(ok[i].s, &ns), 0);
                assert_int_equal(parse_duration_ms(ok[i].s, &ms), 0);
                assert_int_equal(parse_duration_s(ok[i].s, &sec), 0);
                assert_int_equal(ns, ok[i].ns);
                assert_int_equal(ms, ok[i].ms);
                assert_int_equal(sec, ok[i].sec);
        }
        static const char *const bad[] = {
                "",    "1",  ".s", "1e3s", "1000000001s", "16666667m", "99999999999999999999s",
                "1s1", "1 s"};
        for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
                long ms = -1;
                assert_int_equal(parse_duration_ms(bad[i], &ms), -EINVAL);
                assert_int_equal(ms, -1);
        }
}

/* poll_in_until(): readable, hung up, a passed deadline; never a timing. */
static void test_poll_in_until(void **state)
{
        (void) state;
        int p[2];
        assert_int_equal(pipe(p), 0);
        assert_int_equal(poll_in_until(p[0], now_monotonic_us()), -ETIMEDOUT);
        assert_int_equal(poll_in_until(p[0], now_monotonic_us() + 20000), -ETIMEDOUT);
        assert_int_equal(write(p[1], "x", 1), 1);
        assert_int_equal(poll_in_until(p[0], 0), 0);
        assert_int_equal(poll_in_until(p[0], now_monotonic_us()), 0);
        char c;
        assert_int_equal(read(p[0], &c, 1), 1);
        (void) close(p[1]);
        assert_int_equal(poll_in_until(p[0], 0), 0); /* hang-up: readable, read() gives 0 */
        (void) close(p[0]);
        assert_int_equal(poll_in_until(p[0], 0), -EBADF);
}

static void test_outbuf(void **state)
{
        (void) state;
        OutBuf b = {0};
        char dst[16];
        assert_false(outbuf_pending(&b));
        assert_int_equal(outbuf_append(&b, "hello", 5), 0);
        assert_int_equal(outbuf_append_json(&b, json_object_new_int(42)), 0);
        assert_int_equal(outbuf_append_json(&b, NULL), -ENOMEM);
        assert_true(outbuf_pending(&b));
        assert_int_equal(outbuf_take(&b, dst, 3), 3);
        assert_memory_equal(dst, "hel", 3);
        assert_int_equal(outbuf_take(&b, dst, sizeof(dst)), 5);
        assert_memory_equal(dst, "lo42\n", 5);
        assert_false(outbuf_pending(&b));
        /* Drained: the next append starts over at the beginning. */
        char big[20000];
        memset(big, 'x', sizeof(big));
        assert_int_equal(outbuf_append(&b, big, sizeof(big)), 0);
        assert_int_equal(b.off, 0);
        assert_int_equal(b.len, sizeof(big));
        assert_true(b.cap >= sizeof(big));
        assert_int_equal(outbuf_take(&b, dst, sizeof(dst)), sizeof(dst));
        assert_int_equal(b.off, sizeof(dst));
        outbuf_done(&b);
        assert_null(b.data);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_outbuf),
                cmocka_unit_test(test_poll_in_until),
                cmocka_unit_test(test_durations),
                cmocka_unit_test(test_base64),
                cmocka_unit_test(test_strv_push),
                cmocka_unit_test(test_utf8_prefix),
                cmocka_unit_test(test_quantities),
                cmocka_unit_test(test_ids),
                cmocka_unit_test(test_dir_list),
                cmocka_unit_test(test_atomic_write_and_read),
                cmocka_unit_test(test_rm_rf_stops_at_mounts),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}

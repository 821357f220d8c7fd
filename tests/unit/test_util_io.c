/* lib/util's I/O helpers: the token-file rules (the one reader of every
 * --token-file, tokenFile and service account token), write_all/read_full
 * across short reads and writes. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "sandpit/macro.h"
#include "sandpit/util.h"

static char dir[] = "/tmp/sandpit-test-util-io-XXXXXX";

static int setup(void **state)
{
        (void) state;
        return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
        (void) state;
        return rm_rf(dir);
}

/* Writes content (len bytes) to a file in dir; returns its path (static). */
static const char *token_at(const void *content, size_t len)
{
        static char path[256];
        (void) snprintf(path, sizeof(path), "%s/token", dir);
        assert_int_equal(write_file_atomic(path, content, len, 0600), 0);
        return path;
}

static void expect_token(const char *content, size_t min_len, const char *want)
{
        char *t = NULL;
        assert_int_equal(read_token_file(token_at(content, strlen(content)), min_len, &t), 0);
        assert_string_equal(t, want);
        free(t);
}

static void expect_rejected(const char *content, size_t min_len)
{
        char *t = (char *) 0x1;
        int r = read_token_file(token_at(content, strlen(content)), min_len, &t);
        if (r != -EINVAL)
                fail_msg("\"%s\" (min %zu): %d, want -EINVAL", content, min_len, r);
        assert_ptr_equal(t, (char *) 0x1);
}

static void test_token_rules(void **state)
{
        (void) state;
        expect_token("abc", 1, "abc");
        expect_token("abc\n", 1, "abc");
        expect_token(" \t abc \r\n\n", 1, "abc");
        expect_token("\nabc", 1, "abc");
        expect_token("a b", 1, "a b"); /* inner blanks are the token's */
        expect_token("0123456789abcdef\n", 16, "0123456789abcdef");

        expect_rejected("", 1);
        expect_rejected(" \n\t\r\n", 1);
        expect_rejected("abc\ndef", 1);
        expect_rejected("abc\rdef\n", 1);
        expect_rejected("0123456789abcde\n", 16); /* 15 bytes: too short */

        /* Over TOKEN_FILE_MAX: -EFBIG; exactly at it: fine. */
        char *big = malloc(TOKEN_FILE_MAX + 1);
        assert_non_null(big);
        memset(big, 'x', TOKEN_FILE_MAX + 1);
        char *t = NULL;
        assert_int_equal(read_token_file(token_at(big, TOKEN_FILE_MAX + 1), 1, &t), -EFBIG);
        assert_null(t);
        assert_int_equal(read_token_file(token_at(big, TOKEN_FILE_MAX), 1, &t), 0);
        assert_int_equal(strlen(t), TOKEN_FILE_MAX);
        free(t);
        free(big);

        char missing[256];
        (void) snprintf(missing, sizeof(missing), "%s/none", dir);
        assert_int_equal(read_token_file(missing, 1, &t), -ENOENT);
}

/* A pipe delivers in pieces: read_full gathers up to len or end of file. */
static void test_write_all_read_full(void **state)
{
        (void) state;
        int p[2];
        assert_int_equal(pipe2(p, O_CLOEXEC), 0);
        static char data[200000]; /* more than a pipe holds: short writes */
        for (size_t i = 0; i < sizeof(data); i++)
                data[i] = (char) (i * 7);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                (void) close(p[0]);
                _exit(write_all(p[1], data, sizeof(data)) == 0 ? 0 : 1);
        }
        (void) close(p[1]);
        static char got[sizeof(data) + 10];
        assert_int_equal(read_full(p[0], got, 1000), 1000);
        ssize_t n = read_full(p[0], got + 1000, sizeof(got) - 1000); /* stops at EOF */
        assert_int_equal(n, sizeof(data) - 1000);
        assert_memory_equal(got, data, sizeof(data));
        assert_int_equal(read_full(p[0], got, 10), 0);
        (void) close(p[0]);
        int status = 0;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_int_equal(status, 0);

        assert_int_equal(read_full(-1, got, 1), -EBADF);
        assert_int_equal(write_all(-1, "x", 1), -EBADF);
}

/* send_all on a socket whose peer has gone: -EPIPE, and no SIGPIPE (the
 * default action would end this process). */
/* copy_fd: from a file (sendfile) and from a pipe (read/write), from where
 * the input stands to its end. */
static void test_copy_fd(void **state)
{
        (void) state;
        char in_t[] = "/tmp/sandpit-copy-in-XXXXXX", out_t[] = "/tmp/sandpit-copy-out-XXXXXX";
        int in = mkstemp(in_t), out = mkstemp(out_t);
        assert_true(in >= 0 && out >= 0);
        (void) unlink(in_t);
        (void) unlink(out_t);
        size_t n = 200000;
        char *data = malloc(n), *got = malloc(n + 1);
        assert_non_null(data);
        assert_non_null(got);
        for (size_t i = 0; i < n; i++)
                data[i] = (char) ('a' + i % 23);
        assert_int_equal(write_all(in, data, n), 0);
        assert_int_equal(lseek(in, 10, SEEK_SET), 10);
        assert_int_equal(copy_fd(in, out), 0);
        assert_int_equal(pread(out, got, n + 1, 0), (ssize_t) (n - 10));
        assert_memory_equal(got, data + 10, n - 10);

        int p[2];
        assert_int_equal(pipe(p), 0);
        assert_int_equal(write_all(p[1], "through a pipe", 14), 0);
        (void) close(p[1]);
        assert_int_equal(ftruncate(out, 0), 0);
        assert_int_equal(lseek(out, 0, SEEK_SET), 0);
        assert_int_equal(copy_fd(p[0], out), 0);
        assert_int_equal(pread(out, got, n, 0), 14);
        assert_memory_equal(got, "through a pipe", 14);
        /* A write that cannot happen is the error, not a silent stop. */
        int ro = open("/dev/null", O_RDONLY);
        assert_int_equal(lseek(in, 0, SEEK_SET), 0);
        assert_true(copy_fd(in, ro) < 0);
        (void) close(ro);
        (void) close(p[0]);
        (void) close(in);
        (void) close(out);
        free(data);
        free(got);
}

static void test_send_all(void **state)
{
        (void) state;
        int sv[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        static char data[300000]; /* more than the socket buffers: short sends */
        memset(data, 'x', sizeof(data));
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                (void) close(sv[1]);
                _exit(send_all(sv[0], data, sizeof(data)) == 0 ? 0 : 1);
        }
        (void) close(sv[0]);
        static char got[sizeof(data)];
        assert_int_equal(read_full(sv[1], got, sizeof(got)), sizeof(got));
        assert_memory_equal(got, data, sizeof(data));
        int status = 0;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_int_equal(status, 0);
        (void) close(sv[1]);

        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        (void) close(sv[1]);
        assert_int_equal(send_all(sv[0], "x", 1), -EPIPE);
        (void) close(sv[0]);
        assert_int_equal(send_all(-1, "x", 1), -EBADF);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_token_rules),
                cmocka_unit_test(test_write_all_read_full),
                cmocka_unit_test(test_send_all),
                cmocka_unit_test(test_copy_fd),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}

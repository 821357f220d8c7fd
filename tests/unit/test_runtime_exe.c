/* Unit tests for the runtime's sealed copy (runtime-exe.h). */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "runtime-exe.h"
#include "sandpit/macro.h"
#include "sandpit/util.h"

static char dir[] = "/tmp/test-runtime-exe-XXXXXX";

/* src's content as a new file at <dir>/name (a new inode, renamed in place). */
static void install(const char *src, const char *name, char *path, size_t len)
{
        char tmp[256];
        (void) snprintf(tmp, sizeof(tmp), "%s/.new", dir);
        (void) snprintf(path, len, "%s/%s", dir, name);
        int in = open(src, O_RDONLY | O_CLOEXEC);
        int out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
        assert_true(in >= 0 && out >= 0);
        assert_int_equal(copy_fd(in, out), 0);
        (void) close(in);
        (void) close(out);
        assert_int_equal(rename(tmp, path), 0);
}

static off_t size_of(const char *path)
{
        struct stat st;
        assert_int_equal(stat(path, &st), 0);
        return st.st_size;
}

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

static void test_sealed_copy(void **state)
{
        (void) state;
        char path[256];
        install("/bin/true", "rt", path, sizeof(path));
        RuntimeExe *e = NULL;
        assert_int_equal(runtime_exe_new(path, &e), 0);
        assert_string_equal(runtime_exe_binary(e), path);
        const char *p = runtime_exe_acquire(e);
        assert_non_null(strstr(p, "/proc/self/fd/"));
        /* Above the fds a runtime's child is given (runtime.c: 0 to 4). */
        assert_true(atoi(p + strlen("/proc/self/fd/")) >= 16);
        int fd = open(p, O_RDONLY | O_CLOEXEC);
        assert_true(fd >= 0);
        /* All of runc's seals, so runc runs from it without copying again. */
        assert_int_equal(fcntl(fd, F_GET_SEALS),
                         F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE);
        assert_int_equal(write(fd, "x", 1), -1);
        (void) close(fd);
        assert_int_equal(size_of(p), size_of("/bin/true"));
        runtime_exe_release(e);

        /* An upgrade (a new file in its place) is copied at the next use. */
        install("/bin/echo", "rt", path, sizeof(path));
        assert_int_not_equal(size_of("/bin/echo"), size_of("/bin/true"));
        p = runtime_exe_acquire(e);
        assert_int_equal(size_of(p), size_of("/bin/echo"));
        runtime_exe_release(e);
        runtime_exe_free(e);
        runtime_exe_free(NULL);
}

static void test_refused(void **state)
{
        (void) state;
        RuntimeExe *e = NULL;
        char path[256];
        /* A script cannot run from a memfd it does not inherit. */
        (void) snprintf(path, sizeof(path), "%s/script", dir);
        assert_int_equal(write_file_atomic(path, "#!/bin/sh\n", 10, 0755), 0);
        assert_int_equal(runtime_exe_new(path, &e), -ENOEXEC);
        /* The trial `--version` from the copy fails. */
        install("/bin/false", "false", path, sizeof(path));
        assert_int_equal(runtime_exe_new(path, &e), -ENOEXEC);
        assert_int_equal(runtime_exe_new("no-such-runtime-here", &e), -ENOENT);
        assert_null(e);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_sealed_copy),
                cmocka_unit_test(test_refused),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}

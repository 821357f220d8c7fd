/* Unit tests for where a sandbox's control dir is (rootfs.h): on its disk's
 * tmpfs now, its own mount under older agents, whose sandboxes a new agent
 * re-adopts. */
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "rootfs.h"
#include "sandpit/macro.h"
#include "sandpit/util.h"

static void expect_path(const char *dir, const char *tail)
{
        char *got = NULL, want[PATH_MAX];
        (void) snprintf(want, sizeof(want), "%s/%s", dir, tail);
        assert_int_equal(rootfs_ctl_path(dir, "init.sock", &got), 0);
        assert_string_equal(got, want);
        free(got);
}

static void test_ctl_path_layouts(void **state)
{
        (void) state;
        char dir[] = "/tmp/sandpit-test-rootfs.XXXXXX", p[PATH_MAX];
        assert_non_null(mkdtemp(dir));
        /* An older agent's sandbox: ctl was a mount point in the sandbox's dir. */
        (void) snprintf(p, sizeof(p), "%s/ctl", dir);
        assert_int_equal(mkdir(p, 0700), 0);
        (void) snprintf(p, sizeof(p), "%s/disk", dir);
        assert_int_equal(mkdir(p, 0700), 0);
        expect_path(dir, "ctl/init.sock");
        /* A symlink at disk/ctl is not the layout (and is never followed). */
        (void) snprintf(p, sizeof(p), "%s/disk/ctl", dir);
        assert_int_equal(symlink("../ctl", p), 0);
        expect_path(dir, "ctl/init.sock");
        assert_int_equal(unlink(p), 0);
        /* This agent's: a directory on the disk's tmpfs. */
        assert_int_equal(mkdir(p, 0700), 0);
        expect_path(dir, ROOTFS_CTL_DIR "/init.sock");
        assert_int_equal(rm_rf(dir), 0);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_ctl_path_layouts),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}

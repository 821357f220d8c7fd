/* fsroot: path normalization, and (as root) that the in-root resolver and the
 * per-thread filesystem identity keep every operation inside the root. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "files.h"
#include "fsroot.h"
#include "sandpit/macro.h"
#include "sandpit/util.h"

static void check_abspath(const char *home, const char *in, const char *want)
{
        FsRoot r = {.root_fd = -1, .home = (char *) home};
        char *out = NULL;
        assert_int_equal(fsroot_abspath(&r, in, &out), 0);
        assert_string_equal(out, want);
        free(out);
}

static void test_abspath(void **state)
{
        (void) state;
        check_abspath("/home/user", "a.txt", "/home/user/a.txt");
        check_abspath("/home/user", "/etc//passwd", "/etc/passwd");
        check_abspath("/home/user", "/", "/");
        check_abspath("/home/user", ".", "/home/user");
        check_abspath("/home/user", "../../../../etc/shadow", "/etc/shadow");
        check_abspath("/home/user", "/../../x/./y/../z/", "/x/z");
        check_abspath("/", "a/..", "/");
        FsRoot r = {.root_fd = -1, .home = (char *) "/"};
        char *out = NULL;
        assert_int_equal(fsroot_abspath(&r, "", &out), -EINVAL);
        assert_int_equal(fsroot_abspath(&r, NULL, &out), -EINVAL);
}

static char base[] = "/tmp/sandpit-fsroot-XXXXXX";
static char root[128], outside[128];

static void write_text(const char *path, const char *text, mode_t mode)
{
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, text, strlen(text)), (ssize_t) strlen(text));
        (void) close(fd);
}

static int setup_tree(void **state)
{
        (void) state;
        if (geteuid() != 0)
                return 0;
        assert_non_null(mkdtemp(base));
        (void) snprintf(root, sizeof(root), "%s/root", base);
        (void) snprintf(outside, sizeof(outside), "%s/outside-secret", base);
        char p[256];
        assert_int_equal(mkdir(root, 0755), 0);
        (void) snprintf(p, sizeof(p), "%s/etc", root);
        assert_int_equal(mkdir(p, 0755), 0);
        (void) snprintf(p, sizeof(p), "%s/etc/passwd", root);
        write_text(p, "root:x:0:0::/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n", 0644);
        (void) snprintf(p, sizeof(p), "%s/home", root);
        assert_int_equal(mkdir(p, 0755), 0);
        (void) snprintf(p, sizeof(p), "%s/home/user", root);
        assert_int_equal(mkdir(p, 0755), 0);
        assert_int_equal(chown(p, 1000, 1000), 0);
        (void) snprintf(p, sizeof(p), "%s/private", root);
        write_text(p, "root only", 0600);
        write_text(outside, "HOST SECRET", 0644);
        /* Links a sandbox could plant. */
        (void) snprintf(p, sizeof(p), "%s/home/user/abs", root);
        assert_int_equal(symlink(outside, p), 0);
        (void) snprintf(p, sizeof(p), "%s/home/user/rel", root);
        assert_int_equal(symlink("../../../../../../../../../../outside-secret", p), 0);
        (void) snprintf(p, sizeof(p), "%s/home/user/up", root);
        assert_int_equal(symlink("../../..", p), 0);
        (void) snprintf(p, sizeof(p), "%s/home/user/proc", root);
        assert_int_equal(symlink("/proc/self/root", p), 0);
        return 0;
}

static int teardown_tree(void **state)
{
        (void) state;
        if (geteuid() == 0 && root[0])
                (void) rm_rf(base);
        /* mkdtemp() filled in the template: the next setup needs it back. */
        (void) snprintf(base, sizeof(base), "/tmp/sandpit-fsroot-XXXXXX");
        return 0;
}

static void test_in_root(void **state)
{
        (void) state;
        if (geteuid() != 0)
                skip(); /* needs root: chown, setfsuid */
        FsRoot r;
        assert_int_equal(fsroot_open(root, "user", &r), 0);
        assert_int_equal(r.uid, 1000);
        assert_string_equal(r.home, "/home/user");
        const char *escapes[] = {"/home/user/abs", "/home/user/rel", "/home/user/up/outside-secret",
                                 "/../../outside-secret", "/home/user/proc/etc/passwd"};
        for (size_t i = 0; i < ARRAY_SIZE(escapes); i++) {
                int fd = fsroot_open_path(&r, escapes[i], O_RDONLY, 0);
                assert_true(fd == -ENOENT || fd == -ELOOP || fd == -EXDEV);
        }
        /* Writes through the links resolve inside the root, never outside:
         * there, the link's target directory does not exist. */
        json_object *e = NULL;
        assert_int_equal(files_write(&r, NULL, "/home/user/abs", -1, "x", 1, -1, &e), -ENOENT);
        /* As the user, "rel" ends at the root's "/", which only root may write. */
        assert_int_equal(files_write(&r, NULL, "/home/user/rel", -1, "x", 1, -1, &e), -EACCES);
        FsRoot rr;
        assert_int_equal(fsroot_open(root, "root", &rr), 0);
        assert_int_equal(files_write(&rr, NULL, "/home/user/rel", -1, "x", 1, -1, &e), 0);
        json_object_put(e);
        fsroot_done(&rr);
        char p[256], buf[32] = "";
        int fd = open(outside, O_RDONLY | O_CLOEXEC);
        assert_true(read(fd, buf, sizeof(buf) - 1) > 0);
        (void) close(fd);
        assert_string_equal(buf, "HOST SECRET");
        (void) snprintf(p, sizeof(p), "%s/outside-secret", root);
        struct stat st;
        assert_int_equal(stat(p, &st), 0); /* "rel" ended at the root's own "/" */
        assert_int_equal(st.st_size, 1);
        /* Permission checks as the user; files made belong to the user. */
        int rfd = -1;
        off_t size = 0;
        assert_int_equal(files_open_read(&r, "/private", &rfd, &size), -EACCES);
        assert_int_equal(files_write(&r, NULL, "/etc/new", -1, "x", 1, -1, &e), -EACCES);
        assert_int_equal(files_write(&r, NULL, "/home/user/d/new", -1, "x", 1, -1, &e), 0);
        json_object_put(e);
        (void) snprintf(p, sizeof(p), "%s/home/user/d/new", root);
        assert_int_equal(stat(p, &st), 0);
        assert_int_equal(st.st_uid, 1000);
        assert_int_equal(st.st_gid, 1000);
        /* The thread is root again afterwards. */
        (void) snprintf(p, sizeof(p), "%s/private", root);
        fd = open(p, O_RDONLY | O_CLOEXEC);
        assert_true(fd >= 0);
        (void) close(fd);
        fsroot_done(&r);
        FsRoot bad;
        assert_int_equal(fsroot_open(root, "nosuchuser", &bad), -ENOENT);
}

/* A charge callback: records the pid it was given (and the caller's fsuid, which must be root's
 * again for a cgroup write), and answers what the test set. */
static pid_t charged_pid;
static int charged_fsuid;
static int charge_answer;

static int record_charge(void *userdata, pid_t pid)
{
        (void) userdata;
        charged_pid = pid;
        charged_fsuid = setfsuid((uid_t) -1);
        return charge_answer;
}

static void test_charged_write(void **state)
{
        (void) state;
        if (geteuid() != 0)
                skip(); /* needs root: setfsuid */
        FsRoot r;
        assert_int_equal(fsroot_open(root, "user", &r), 0);
        FilesCharge charge = {.enter = record_charge};
        json_object *e = NULL;
        char p[256], buf[32] = "";
        /* The data is copied by another process, entered with root's credentials; the file is
         * the user's with the data. */
        charged_pid = 0, charged_fsuid = -1, charge_answer = 0;
        assert_int_equal(files_write(&r, &charge, "/home/user/charged", -1, "payload", 7, -1, &e),
                         0);
        json_object_put(e);
        assert_true(charged_pid > 0 && charged_pid != getpid());
        assert_int_equal(charged_fsuid, 0);
        (void) snprintf(p, sizeof(p), "%s/home/user/charged", root);
        int fd = open(p, O_RDONLY | O_CLOEXEC);
        assert_true(fd >= 0);
        assert_int_equal(read(fd, buf, sizeof(buf) - 1), 7);
        (void) close(fd);
        assert_string_equal(buf, "payload");
        struct stat st;
        assert_int_equal(stat(p, &st), 0);
        assert_int_equal(st.st_uid, 1000);
        /* A charge that fails: its error, and the child wrote nothing. */
        charge_answer = -ENOENT;
        assert_int_equal(files_write(&r, &charge, "/home/user/charged", -1, "other", 5, -1, &e),
                         -ENOENT);
        assert_int_equal(stat(p, &st), 0);
        assert_int_equal(st.st_size, 0);
        /* The thread is root again after the call. */
        assert_int_equal(setfsuid((uid_t) -1), 0);
        fsroot_done(&r);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_abspath),
                cmocka_unit_test_setup_teardown(test_in_root, setup_tree, teardown_tree),
                cmocka_unit_test_setup_teardown(test_charged_write, setup_tree, teardown_tree),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}

/* node-agent/build-layer.c: upper dirs packed with OCI whiteouts (and back
 * through the unpacker), COPY staging that never leaves the context. Runs as
 * root (whiteout devices, trusted.* xattrs, chown), as the unit tests do. */
#include <archive.h>
#include <archive_entry.h>
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
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cmocka.h>

#include "build-layer.h"
#include "image.h"
#include "sandpit/macro.h"
#include "sandpit/util.h"

static char *mktmp(void)
{
        char *d = strdup("/tmp/sandpit-build-layer-XXXXXX");
        assert_non_null(d);
        assert_non_null(mkdtemp(d));
        return d;
}

static void put(const char *dir, const char *rel, const char *text)
{
        char p[4096];
        (void) snprintf(p, sizeof(p), "%s/%s", dir, rel);
        assert_int_equal(write_file_atomic(p, text, strlen(text), 0644), 0);
}

static void mkdirs(const char *dir, const char *rel)
{
        char p[4096];
        (void) snprintf(p, sizeof(p), "%s/%s", dir, rel);
        assert_int_equal(mkdir_p(p, 0755), 0);
}

/* The tar's entries as "name" or "name -> target", one a line. */
static char *list_tar(int fd)
{
        assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
        struct archive *a = archive_read_new();
        archive_read_support_format_tar(a);
        assert_int_equal(archive_read_open_fd(a, fd, 4096), ARCHIVE_OK);
        static char out[4096];
        out[0] = '\0';
        struct archive_entry *e;
        while (archive_read_next_header(a, &e) == ARCHIVE_OK) {
                strcat(out, archive_entry_pathname(e));
                if (archive_entry_symlink(e)) {
                        strcat(out, " -> ");
                        strcat(out, archive_entry_symlink(e));
                }
                if (archive_entry_hardlink(e)) {
                        strcat(out, " link to ");
                        strcat(out, archive_entry_hardlink(e));
                }
                strcat(out, "\n");
        }
        archive_read_free(a);
        return out;
}

static bool keep_all(const char *dir, const char *name, void *userdata)
{
        (void) dir, (void) name, (void) userdata;
        return true;
}

/* A file's second name is a hard-link entry; unpacked, one inode again. */
static void test_pack_hard_links(void **state)
{
        (void) state;
        cleanup_free char *up = mktmp(), *dest = mktmp();
        mkdirs(up, "bin");
        put(up, "bin/a", "same data");
        put(up, "solo", "other");
        char p[4096], q[4096];
        (void) snprintf(p, sizeof(p), "%s/bin/a", up);
        (void) snprintf(q, sizeof(q), "%s/z-second", up);
        assert_int_equal(link(p, q), 0);
        cleanup_close int dfd = open(up, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        char tmpl[] = "/tmp/sandpit-build-tar-XXXXXX";
        cleanup_close int fd = mkstemp(tmpl);
        assert_true(fd >= 0);
        (void) unlink(tmpl);
        char err[256] = "";
        assert_int_equal(build_layer_pack(dfd, fd, false, NULL, 0, 0, err, sizeof(err)), 0);
        assert_string_equal(list_tar(fd), "bin/\n"
                                          "bin/a\n"
                                          "solo\n"
                                          "z-second link to bin/a\n");
        assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
        assert_int_equal(image_layer_unpack(fd, dest, 1 << 20, err, sizeof(err)), 0);
        struct stat a, b;
        (void) snprintf(p, sizeof(p), "%s/bin/a", dest);
        (void) snprintf(q, sizeof(q), "%s/z-second", dest);
        assert_int_equal(stat(p, &a), 0);
        assert_int_equal(stat(q, &b), 0);
        assert_int_equal(a.st_ino, b.st_ino);
        assert_int_equal(b.st_nlink, 2);
        assert_int_equal(b.st_size, 9);
        assert_int_equal(rm_rf(up), 0);
        assert_int_equal(rm_rf(dest), 0);
}

static void test_pack_whiteouts_round_trip(void **state)
{
        (void) state;
        cleanup_free char *up = mktmp(), *dest = mktmp();
        mkdirs(up, "d/sub");
        put(up, "d/sub/f", "data");
        put(up, "top", "x");
        mkdirs(up, ".sandpit");
        char p[4096];
        (void) snprintf(p, sizeof(p), "%s/gone", up);
        assert_int_equal(mknod(p, S_IFCHR | 0600, makedev(0, 0)), 0);
        (void) snprintf(p, sizeof(p), "%s/d", up);
        assert_int_equal(setxattr(p, "trusted.overlay.opaque", "y", 1, 0), 0);
        (void) snprintf(p, sizeof(p), "%s/link", up);
        assert_int_equal(symlink("/etc/passwd", p), 0);

        cleanup_close int dfd = open(up, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        char tmpl[] = "/tmp/sandpit-build-tar-XXXXXX";
        cleanup_close int fd = mkstemp(tmpl);
        assert_true(fd >= 0);
        (void) unlink(tmpl);
        char err[256] = "";
        char *skip[] = {".sandpit", NULL};
        assert_int_equal(build_layer_pack(dfd, fd, false, skip, 0, 0, err, sizeof(err)), 0);
        assert_string_equal(list_tar(fd), "d/\n"
                                          "d/.wh..wh..opq\n"
                                          "d/sub/\n"
                                          "d/sub/f\n"
                                          ".wh.gone\n"
                                          "link -> /etc/passwd\n"
                                          "top\n");

        /* The unpacker makes overlayfs's markings again. */
        assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
        assert_int_equal(image_layer_unpack(fd, dest, 1 << 20, err, sizeof(err)), 0);
        struct stat st;
        (void) snprintf(p, sizeof(p), "%s/gone", dest);
        assert_int_equal(lstat(p, &st), 0);
        assert_true(S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0));
        (void) snprintf(p, sizeof(p), "%s/d", dest);
        char v[2] = "";
        assert_int_equal(getxattr(p, "trusted.overlay.opaque", v, sizeof(v)), 1);
        assert_int_equal(v[0], 'y');
        (void) snprintf(p, sizeof(p), "%s/.sandpit", dest);
        assert_int_equal(lstat(p, &st), -1);
        (void) rm_rf(up);
        (void) rm_rf(dest);
}

/* A user-namespaced sandbox's upper layer holds host ids: packed, they are
 * its own ids again; an id outside its range is nobody. */
static void test_pack_shifts_ids_back(void **state)
{
        (void) state;
        cleanup_free char *up = mktmp();
        put(up, "mine", "x");
        put(up, "foreign", "y");
        char p[4096];
        (void) snprintf(p, sizeof(p), "%s/mine", up);
        assert_int_equal(chown(p, 1048576 + 1000, 1048576 + 100), 0);
        (void) snprintf(p, sizeof(p), "%s/foreign", up);
        assert_int_equal(chown(p, 5, 5), 0);
        cleanup_close int dfd = open(up, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        char tmpl[] = "/tmp/sandpit-build-tar-XXXXXX";
        cleanup_close int fd = mkstemp(tmpl);
        assert_true(fd >= 0);
        (void) unlink(tmpl);
        char err[256] = "";
        assert_int_equal(build_layer_pack(dfd, fd, false, NULL, 1048576, 65536, err, sizeof(err)),
                         0);
        assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
        struct archive *a = archive_read_new();
        assert_non_null(a);
        (void) archive_read_support_format_tar(a);
        assert_int_equal(archive_read_open_fd(a, fd, 4096), ARCHIVE_OK);
        struct archive_entry *e;
        int seen = 0;
        while (archive_read_next_header(a, &e) == ARCHIVE_OK) {
                if (streq(archive_entry_pathname(e), "mine")) {
                        assert_int_equal(archive_entry_uid(e), 1000);
                        assert_int_equal(archive_entry_gid(e), 100);
                        seen++;
                } else if (streq(archive_entry_pathname(e), "foreign")) {
                        assert_int_equal(archive_entry_uid(e), 65534);
                        assert_int_equal(archive_entry_gid(e), 65534);
                        seen++;
                }
        }
        archive_read_free(a);
        assert_int_equal(seen, 2);
        (void) rm_rf(up);
}

static void test_copy_stays_in_the_context(void **state)
{
        (void) state;
        cleanup_free char *ctx = mktmp(), *stage = mktmp(), *lower = mktmp();
        mkdirs(ctx, "sub/deep");
        put(ctx, "sub/deep/f", "f");
        put(ctx, "file", "plain");
        char p[4096];
        (void) snprintf(p, sizeof(p), "%s/link", ctx);
        assert_int_equal(symlink("/etc", p), 0);
        (void) snprintf(p, sizeof(p), "%s/up", ctx);
        assert_int_equal(symlink("..", p), 0);
        /* A lower layer where /opt is 0700 and owned by 5:6. */
        mkdirs(lower, "opt");
        (void) snprintf(p, sizeof(p), "%s/opt", lower);
        assert_int_equal(chmod(p, 0700), 0);
        assert_int_equal(chown(p, 5, 6), 0);
        char *lowers[] = {lower, NULL};

        cleanup_close int cfd = open(ctx, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        cleanup_close int sfd = open(stage, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        char err[256] = "";
        assert_int_equal(build_copy(cfd, "../etc/passwd", "the build context", sfd, "/x", false,
                                    lowers, 0, 0, err, sizeof(err)),
                         -EPERM);
        assert_non_null(strstr(err, "outside the build context"));
        err[0] = '\0';
        assert_int_equal(build_copy(cfd, "link/passwd", "the build context", sfd, "/x", false,
                                    lowers, 0, 0, err, sizeof(err)),
                         -EPERM);
        assert_non_null(strstr(err, "link"));
        err[0] = '\0';
        assert_int_equal(build_copy(cfd, "up/file", "the build context", sfd, "/x", false, lowers,
                                    0, 0, err, sizeof(err)),
                         -EPERM);
        err[0] = '\0';
        assert_int_equal(build_copy(cfd, "nope", "the build context", sfd, "/x", false, lowers, 0,
                                    0, err, sizeof(err)),
                         -ENOENT);
        /* Nothing was staged by the refusals. */
        cleanup_strv char **names = NULL;
        assert_int_equal(dir_list(stage, keep_all, NULL, &names), 0);
        assert_null(names[0]);

        /* "a/../sub" is sub; its contents go into /opt/app, /opt as the lower has it. */
        assert_int_equal(build_copy(cfd, "a/../sub", "the build context", sfd, "/opt/app", false,
                                    lowers, 1000, 1000, err, sizeof(err)),
                         0);
        assert_int_equal(build_copy(cfd, "file", "the build context", sfd, "/opt/app/", true,
                                    lowers, 0, 0, err, sizeof(err)),
                         0);
        assert_int_equal(build_copy(cfd, "link", "the build context", sfd, "/l", false, lowers, 0,
                                    0, err, sizeof(err)),
                         0);
        struct stat st;
        (void) snprintf(p, sizeof(p), "%s/opt", stage);
        assert_int_equal(stat(p, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0700);
        assert_int_equal(st.st_uid, 5);
        assert_int_equal(st.st_gid, 6);
        (void) snprintf(p, sizeof(p), "%s/opt/app/deep/f", stage);
        assert_int_equal(stat(p, &st), 0);
        assert_int_equal(st.st_uid, 1000);
        (void) snprintf(p, sizeof(p), "%s/opt/app/file", stage);
        assert_int_equal(stat(p, &st), 0);
        char target[64] = "";
        (void) snprintf(p, sizeof(p), "%s/l", stage);
        assert_int_equal(readlink(p, target, sizeof(target) - 1), 4);
        assert_string_equal(target, "/etc");
        (void) rm_rf(ctx);
        (void) rm_rf(stage);
        (void) rm_rf(lower);
}

static void test_paths(void **state)
{
        (void) state;
        static const char *const cases[][2] = {
                {"/a/./b/../c/", "/a/c"}, {"/", "/"},     {"/..", "/"},
                {"//x//y", "/x/y"},       {"/a/..", "/"},
        };
        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                char *n = NULL;
                assert_int_equal(build_path_normalize(cases[i][0], &n), 0);
                assert_string_equal(n, cases[i][1]);
                free(n);
        }
        char *n = NULL;
        assert_int_equal(build_path_normalize("rel", &n), -EINVAL);

        cleanup_free char *l1 = mktmp(), *l2 = mktmp();
        mkdirs(l2, "a/b");
        mkdirs(l1, "a");
        char p[4096];
        (void) snprintf(p, sizeof(p), "%s/a/b", l1);
        assert_int_equal(mknod(p, S_IFCHR | 0600, makedev(0, 0)), 0);
        char *lowers[] = {l1, l2, NULL};
        struct stat st;
        assert_int_equal(build_lower_stat(lowers, "/a", &st), 0);
        assert_int_equal(build_lower_stat(lowers, "/a/b", &st), -ENOENT); /* whited out */
        (void) rm_rf(l1);
        (void) rm_rf(l2);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_pack_hard_links),
                cmocka_unit_test(test_pack_whiteouts_round_trip),
                cmocka_unit_test(test_pack_shifts_ids_back),
                cmocka_unit_test(test_copy_stays_in_the_context),
                cmocka_unit_test(test_paths),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}

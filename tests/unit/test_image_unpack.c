/* node-agent/image-unpack.c: layers unpacked into overlayfs lower layers;
 * whiteouts translated; nothing ever written outside the layer. Runs as root
 * (chown, mknod of whiteouts, trusted.* xattrs), as the unit tests do. */
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

#include "image.h"
#include "sandpit/macro.h"
#include "sandpit/util.h"

typedef struct {
        const char *name;
        mode_t type; /* AE_IF* */
        const char *data_or_target;
        mode_t perm;
        int64_t size; /* files: > 0 to claim a size without data (zeros) */
} Entry;

/* A layer tar (with filter: ARCHIVE_FILTER_NONE, _GZIP, _ZSTD) in an unlinked file. */
static int make_layer(const Entry *e, size_t n, int filter)
{
        char path[] = "/tmp/sandpit-layer-XXXXXX";
        int fd = mkstemp(path);
        assert_true(fd >= 0);
        (void) unlink(path);
        struct archive *a = archive_write_new();
        assert_int_equal(archive_write_set_format_pax_restricted(a), ARCHIVE_OK);
        assert_int_equal(archive_write_add_filter(a, filter), ARCHIVE_OK);
        assert_int_equal(archive_write_open_fd(a, fd), ARCHIVE_OK);
        for (size_t i = 0; i < n; i++) {
                struct archive_entry *ae = archive_entry_new();
                archive_entry_set_pathname(ae, e[i].name);
                archive_entry_set_mode(ae, e[i].type | (e[i].perm ? e[i].perm : 0644));
                archive_entry_set_uid(ae, 1000);
                archive_entry_set_gid(ae, 1000);
                size_t len = 0;
                if (e[i].type == AE_IFLNK)
                        archive_entry_set_symlink(ae, e[i].data_or_target);
                if (e[i].type == 0) { /* a hard link */
                        archive_entry_set_filetype(ae, AE_IFREG);
                        archive_entry_set_hardlink(ae, e[i].data_or_target);
                }
                if (e[i].type == AE_IFCHR)
                        archive_entry_set_rdev(ae, makedev(1, 3));
                if (e[i].type == AE_IFREG) {
                        len = e[i].size > 0
                                      ? (size_t) e[i].size
                                      : (e[i].data_or_target ? strlen(e[i].data_or_target) : 0);
                        archive_entry_set_size(ae, (la_int64_t) len);
                }
                assert_int_equal(archive_write_header(a, ae), ARCHIVE_OK);
                if (e[i].type == AE_IFREG && len) {
                        char *buf = calloc(1, len);
                        if (e[i].size <= 0)
                                memcpy(buf, e[i].data_or_target, len);
                        assert_int_equal(archive_write_data(a, buf, len), (la_ssize_t) len);
                        free(buf);
                }
                archive_entry_free(ae);
        }
        assert_int_equal(archive_write_close(a), ARCHIVE_OK);
        archive_write_free(a);
        return fd;
}

static char *mkdir_tmp(void)
{
        char *d = strdup("/tmp/sandpit-unpack-XXXXXX");
        assert_non_null(mkdtemp(d));
        return d;
}

static int unpack(const Entry *e, size_t n, int filter, const char *dest, uint64_t max, char *err)
{
        int fd = make_layer(e, n, filter);
        int r = image_layer_unpack(fd, dest, max, err, 256);
        (void) close(fd);
        return r;
}

static void test_path_split(void **state)
{
        (void) state;
        char a[] = "./a//b/./c/", b[] = "../x", c[] = "/etc/passwd", d[] = "a/../../b", e[] = "./";
        char *comps[8];
        size_t n = 0;
        assert_int_equal(image_path_split(a, comps, 8, &n), 0);
        assert_int_equal(n, 3);
        assert_string_equal(comps[0], "a");
        assert_string_equal(comps[2], "c");
        assert_int_equal(image_path_split(b, comps, 8, &n), -EPERM);
        assert_int_equal(image_path_split(c, comps, 8, &n), -EPERM);
        assert_int_equal(image_path_split(d, comps, 8, &n), -EPERM);
        assert_int_equal(image_path_split(e, comps, 8, &n), 0);
        assert_int_equal(n, 0);
        char f[] = "a/b/c";
        assert_int_equal(image_path_split(f, comps, 2, &n), -ENAMETOOLONG);
}

static void test_unpack_layer(void **state)
{
        (void) state;
        static const int filters[] = {ARCHIVE_FILTER_NONE, ARCHIVE_FILTER_GZIP,
                                      ARCHIVE_FILTER_ZSTD};
        for (size_t f = 0; f < ARRAY_SIZE(filters); f++) {
                cleanup_free char *dir = mkdir_tmp();
                char err[256] = "", p[512];
                const Entry e[] = {
                        {"./", AE_IFDIR, NULL, 0755, 0},
                        {"bin/", AE_IFDIR, NULL, 0755, 0},
                        {"bin/tool", AE_IFREG, "#!/bin/sh\n", 04755, 0},
                        {"bin/alias", AE_IFLNK, "/bin/tool", 0777, 0},
                        {"bin/hard", 0, "bin/tool", 0, 0},
                        {"etc/.wh.motd", AE_IFREG, "", 0, 0},
                        {"old/.wh..wh..opq", AE_IFREG, "", 0, 0},
                        {"old/new", AE_IFREG, "new", 0600, 0},
                        {"dev/sda", AE_IFCHR, NULL, 0600, 0},
                        {"run/fifo", AE_IFIFO, NULL, 0600, 0},
                        {"bin/tool", AE_IFREG, "replaced\n", 0755, 0}, /* a later entry wins */
                };
                assert_int_equal(unpack(e, ARRAY_SIZE(e), filters[f], dir, 1 << 20, err), 0);
                struct stat st;
                (void) snprintf(p, sizeof(p), "%s/bin/tool", dir);
                assert_int_equal(lstat(p, &st), 0);
                assert_int_equal(st.st_mode & 07777, 0755);
                assert_int_equal(st.st_uid, 1000);
                cleanup_free char *text = NULL;
                assert_int_equal(read_file(p, 100, &text, NULL), 0);
                assert_string_equal(text, "replaced\n");
                (void) snprintf(p, sizeof(p), "%s/bin/hard", dir);
                assert_int_equal(lstat(p, &st), 0);
                assert_int_equal(st.st_mode & 07777, 04755); /* the first bin/tool's inode */
                char target[64] = "";
                (void) snprintf(p, sizeof(p), "%s/bin/alias", dir);
                assert_int_equal(readlink(p, target, sizeof(target) - 1), 9);
                assert_string_equal(target, "/bin/tool");
                (void) snprintf(p, sizeof(p), "%s/etc/motd", dir);
                assert_int_equal(lstat(p, &st), 0);
                assert_true(S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0));
                (void) snprintf(p, sizeof(p), "%s/etc/.wh.motd", dir);
                assert_int_equal(lstat(p, &st), -1);
                (void) snprintf(p, sizeof(p), "%s/old", dir);
                char v[4] = "";
                assert_int_equal(getxattr(p, "trusted.overlay.opaque", v, sizeof(v)), 1);
                assert_int_equal(v[0], 'y');
                (void) snprintf(p, sizeof(p), "%s/old/.wh..wh..opq", dir);
                assert_int_equal(lstat(p, &st), -1);
                (void) snprintf(p, sizeof(p), "%s/dev/sda", dir);
                assert_int_equal(lstat(p, &st), -1); /* devices skipped */
                (void) snprintf(p, sizeof(p), "%s/run/fifo", dir);
                assert_int_equal(lstat(p, &st), 0);
                assert_true(S_ISFIFO(st.st_mode));
                assert_int_equal(rm_rf(dir), 0);
        }
}

static void test_unpack_refuses_escapes(void **state)
{
        (void) state;
        cleanup_free char *outside = mkdir_tmp();
        char canary[512];
        (void) snprintf(canary, sizeof(canary), "%s/canary", outside);
        assert_int_equal(write_file_atomic(canary, "keep", 4, 0644), 0);
        const Entry dotdot[] = {{"../../../../../../..", AE_IFDIR, NULL, 0755, 0}};
        const Entry abs[] = {{canary, AE_IFREG, "owned", 0644, 0}};
        const Entry via_symlink[] = {{"out", AE_IFLNK, outside, 0777, 0},
                                     {"out/canary", AE_IFREG, "owned", 0644, 0}};
        const Entry via_rel_symlink[] = {{"up", AE_IFLNK, "../../../../../../../../", 0777, 0},
                                         {"up/tmp/x", AE_IFREG, "owned", 0644, 0}};
        const Entry link_out[] = {{"h", 0, canary, 0, 0}};
        const Entry link_up[] = {{"h", 0, "../../../../../../../etc/hostname", 0, 0}};
        const Entry link_via_symlink[] = {{"o", AE_IFLNK, outside, 0777, 0},
                                          {"h", 0, "o/canary", 0, 0}};
        const Entry whiteout_up[] = {{"../.wh.canary", AE_IFREG, "", 0, 0}};
        const Entry opaque_via_symlink[] = {{"o", AE_IFLNK, outside, 0777, 0},
                                            {"o/.wh.canary", AE_IFREG, "", 0, 0}};
        const struct {
                const Entry *e;
                size_t n;
        } cases[] = {
                {dotdot, ARRAY_SIZE(dotdot)},
                {abs, ARRAY_SIZE(abs)},
                {via_symlink, ARRAY_SIZE(via_symlink)},
                {via_rel_symlink, ARRAY_SIZE(via_rel_symlink)},
                {link_out, ARRAY_SIZE(link_out)},
                {link_up, ARRAY_SIZE(link_up)},
                {link_via_symlink, ARRAY_SIZE(link_via_symlink)},
                {whiteout_up, ARRAY_SIZE(whiteout_up)},
                {opaque_via_symlink, ARRAY_SIZE(opaque_via_symlink)},
        };
        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                cleanup_free char *dir = mkdir_tmp();
                char err[256] = "";
                int r = unpack(cases[i].e, cases[i].n, ARCHIVE_FILTER_GZIP, dir, 1 << 20, err);
                if (r != -EPERM)
                        fail_msg("case %zu: %d (%s), want -EPERM", i, r, err);
                assert_non_null(strstr(err, "layer refused"));
                struct stat st;
                cleanup_free char *text = NULL;
                assert_int_equal(read_file(canary, 100, &text, NULL), 0);
                assert_string_equal(text, "keep");
                assert_int_equal(stat(canary, &st), 0);
                assert_int_equal(st.st_nlink, 1);
                assert_int_equal(rm_rf(dir), 0);
        }
        assert_int_equal(rm_rf(outside), 0);
}

static void test_unpack_limits_and_garbage(void **state)
{
        (void) state;
        cleanup_free char *dir = mkdir_tmp();
        char err[256] = "";
        const Entry big[] = {{"a", AE_IFREG, NULL, 0644, 600}, {"b", AE_IFREG, NULL, 0644, 600}};
        assert_int_equal(unpack(big, 2, ARCHIVE_FILTER_GZIP, dir, 1000, err), -EFBIG);
        assert_non_null(strstr(err, "size limit"));

        char path[] = "/tmp/sandpit-garbage-XXXXXX";
        int fd = mkstemp(path);
        assert_true(fd >= 0);
        (void) unlink(path);
        assert_int_equal(write_all(fd, "\x1f\x8b garbage that is not gzip at all", 34), 0);
        cleanup_free char *dir2 = mkdir_tmp();
        assert_int_equal(image_layer_unpack(fd, dir2, 1 << 20, err, sizeof(err)), -EBADMSG);
        (void) close(fd);
        assert_int_equal(rm_rf(dir), 0);
        assert_int_equal(rm_rf(dir2), 0);
}

int main(void)
{
        if (geteuid() != 0) {
                fprintf(stderr,
                        "test_image_unpack: needs root (chown, whiteouts, trusted.* xattrs)\n");
                return 1;
        }
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_path_split),
                cmocka_unit_test(test_unpack_layer),
                cmocka_unit_test(test_unpack_refuses_escapes),
                cmocka_unit_test(test_unpack_limits_and_garbage),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Unpacking one image layer (a tar, plain, gzip or zstd) into an empty
 * directory that becomes an overlayfs lower layer (see image.h and
 * docs/images.md).
 *
 * Nothing is written outside the layer: entry names with ".." or a leading
 * "/" refuse the layer, every directory on the way is opened with O_NOFOLLOW
 * (a symlink planted by an earlier entry cannot redirect a later one), files
 * are created O_EXCL|O_NOFOLLOW, and hard links must name a file of the layer
 * itself by the same rules. Symlinks are made as they are: their targets are
 * read inside the sandbox, never followed here. Devices and sockets are
 * skipped. Whiteouts become overlayfs whiteouts: ".wh.NAME" a 0/0 character
 * device NAME, ".wh..wh..opq" the trusted.overlay.opaque xattr on its
 * directory. */
#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "image.h"
#include "sandpit/macro.h"
#include "sandpit/util.h"

#define BLOCK           ((size_t) 64 * 1024)
#define ENTRIES_MAX     (1u << 20)
#define WHITEOUT        ".wh."
#define OPAQUE_WHITEOUT ".wh..wh..opq"

/* Splits a tar entry name into components in place: "./a//b/" -> a, b.
 * -EPERM for ".." anywhere or an absolute name. 0 components: the root. */
int image_path_split(char *path, char **comps, size_t max, size_t *ret_n)
{
        if (path[0] == '/')
                return -EPERM;
        size_t n = 0;
        for (char *save = NULL, *t = strtok_r(path, "/", &save); t;
             t = strtok_r(NULL, "/", &save)) {
                if (streq(t, "."))
                        continue;
                if (streq(t, ".."))
                        return -EPERM;
                if (n == max)
                        return -ENAMETOOLONG;
                comps[n++] = t;
        }
        *ret_n = n;
        return 0;
}

/* Opens (O_PATH | O_DIRECTORY) the directory comps[0..n) below root, making
 * missing ones when create; never follows a symlink. */
static int open_dirs(int root, char **comps, size_t n, bool create)
{
        int fd = fcntl(root, F_DUPFD_CLOEXEC, 3);
        if (fd < 0)
                return -errno;
        for (size_t i = 0; i < n; i++) {
                int next = openat(fd, comps[i], O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (next < 0 && errno == ENOENT && create) {
                        if (mkdirat(fd, comps[i], 0755) < 0 && errno != EEXIST) {
                                int r = -errno;
                                (void) close(fd);
                                return r;
                        }
                        next = openat(fd, comps[i], O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                }
                int r = next < 0 ? (errno == ELOOP || errno == ENOTDIR ? -EPERM : -errno) : 0;
                (void) close(fd);
                if (r < 0)
                        return r;
                fd = next;
        }
        return fd;
}

/* Removes name below dirfd, whatever it is (a later entry replaces it). */
static int remove_entry(int dirfd, const char *name)
{
        struct stat st;
        if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return errno == ENOENT ? 0 : -errno;
        if (!S_ISDIR(st.st_mode))
                return unlinkat(dirfd, name, 0) < 0 ? -errno : 0;
        char path[64];
        cleanup_close int fd = openat(dirfd, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        (void) snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
        cleanup_free char *real = realpath(path, NULL);
        if (!real)
                return -errno;
        return rm_rf(real);
}

static int set_owner_mode_times(int dirfd, const char *name, struct archive_entry *e, bool link)
{
        int flags = AT_SYMLINK_NOFOLLOW;
        if (fchownat(dirfd, name, (uid_t) archive_entry_uid(e), (gid_t) archive_entry_gid(e),
                     flags) < 0)
                return -errno;
        /* After the chown, which clears set-id bits. */
        if (!link && fchmodat(dirfd, name, archive_entry_perm(e) & 07777, 0) < 0)
                return -errno;
        struct timespec ts[2] = {{.tv_sec = archive_entry_mtime(e)},
                                 {.tv_sec = archive_entry_mtime(e)}};
        (void) utimensat(dirfd, name, ts, flags);
        return 0;
}

static int write_file(struct archive *a, int dirfd, const char *name)
{
        cleanup_close int fd =
                openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0)
                return -errno;
        int r = archive_read_data_into_fd(a, fd);
        if (r != ARCHIVE_OK && r != ARCHIVE_WARN)
                return -EBADMSG;
        return 0;
}

typedef struct {
        struct archive *a;
        int root;
        uint64_t max_bytes, bytes;
        unsigned entries;
        char *err;
        size_t errlen;
        /* The directory the last file went to: tars list a directory's files
         * together, and walking from the root for each costs an openat per
         * component. Dropped by every entry that is not a file or a FIFO (any
         * of which could replace a directory on the way). */
        char *cached_path; /* comps[0..n-1] joined by '/', "" for the root */
        int cached_fd;
} Unpack;

static void cache_drop(Unpack *u)
{
        free(u->cached_path);
        u->cached_path = NULL;
        closep(&u->cached_fd);
}

/* open_dirs(root, comps, n, true) through the cache. */
static int open_parent(Unpack *u, char **comps, size_t n, bool cacheable)
{
        StrBuf p = {0};
        for (size_t i = 0; i < n; i++)
                if (strbuf_append(&p, comps[i], strlen(comps[i]), SIZE_MAX) < 0 ||
                    strbuf_append(&p, "/", 1, SIZE_MAX) < 0) {
                        strbuf_done(&p);
                        return -ENOMEM;
                }
        const char *key = p.data ? p.data : "";
        if (cacheable && u->cached_path && streq(u->cached_path, key)) {
                strbuf_done(&p);
                int fd = fcntl(u->cached_fd, F_DUPFD_CLOEXEC, 3);
                return fd < 0 ? -errno : fd;
        }
        cache_drop(u);
        int fd = open_dirs(u->root, comps, n, true);
        if (fd >= 0 && cacheable && (u->cached_path = strdup(key))) {
                u->cached_fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
                if (u->cached_fd < 0)
                        cache_drop(u);
        }
        strbuf_done(&p);
        return fd;
}

static int refuse(Unpack *u, int r, const char *why, const char *path)
{
        (void) snprintf(u->err, u->errlen, "layer refused: %s: %.200s", why, path);
        return r;
}

static int unpack_entry(Unpack *u, struct archive_entry *e)
{
        const char *orig = archive_entry_pathname(e);
        if (!orig)
                return refuse(u, -EBADMSG, "an entry without a name", "");
        cleanup_free char *path = strdup(orig);
        if (!path)
                return -ENOMEM;
        char *comps[256];
        size_t n = 0;
        int r = image_path_split(path, comps, ARRAY_SIZE(comps), &n);
        if (r < 0)
                return refuse(u, r == -EPERM ? -EPERM : -EBADMSG,
                              "a name outside the layer or too deep", orig);
        if (n == 0)
                return 0; /* "./": the root's own attributes are the template's */
        const char *name = comps[n - 1];
        if (++u->entries > ENTRIES_MAX)
                return refuse(u, -EFBIG, "too many entries", orig);
        mode_t type = archive_entry_filetype(e);
        if (type == AE_IFCHR || type == AE_IFBLK || type == AE_IFSOCK)
                return 0; /* devices come from the runtime, not from images */
        bool plain = (type == AE_IFREG || type == AE_IFIFO) && !archive_entry_hardlink(e) &&
                     strncmp(name, WHITEOUT, strlen(WHITEOUT)) != 0;
        cleanup_close int dirfd = open_parent(u, comps, n - 1, plain);
        if (dirfd < 0)
                return refuse(u, dirfd == -EPERM ? -EPERM : dirfd,
                              dirfd == -EPERM ? "a path through a symlink or a file"
                                              : strerror(-dirfd),
                              orig);
        if (streq(name, OPAQUE_WHITEOUT)) {
                char p[64];
                (void) snprintf(p, sizeof(p), "/proc/self/fd/%d", dirfd);
                if (setxattr(p, "trusted.overlay.opaque", "y", 1, 0) < 0)
                        return refuse(u, -errno, "cannot mark an opaque directory", orig);
                return 0;
        }
        if (strncmp(name, WHITEOUT, strlen(WHITEOUT)) == 0) {
                const char *target = name + strlen(WHITEOUT);
                if (!*target || streq(target, ".") || streq(target, ".."))
                        return refuse(u, -EBADMSG, "a bad whiteout", orig);
                if ((r = remove_entry(dirfd, target)) < 0 ||
                    (mknodat(dirfd, target, S_IFCHR | 0000, makedev(0, 0)) < 0 && (r = -errno)))
                        return refuse(u, r, "cannot make a whiteout", orig);
                return 0;
        }
        struct stat st;
        bool exists = fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0;
        if (type == AE_IFDIR && exists && S_ISDIR(st.st_mode))
                return set_owner_mode_times(dirfd, name, e, false);
        if (exists)
                cache_drop(u); /* it may have been a directory on the cached path */
        if (exists && (r = remove_entry(dirfd, name)) < 0)
                return refuse(u, r, "cannot replace an entry", orig);
        const char *hardlink = archive_entry_hardlink(e);
        if (hardlink) {
                cleanup_free char *lp = strdup(hardlink);
                char *lc[256];
                size_t ln = 0;
                if (!lp)
                        return -ENOMEM;
                if (image_path_split(lp, lc, ARRAY_SIZE(lc), &ln) < 0 || ln == 0)
                        return refuse(u, -EPERM, "a hard link to outside the layer", orig);
                cleanup_close int tdir = open_dirs(u->root, lc, ln - 1, false);
                if (tdir < 0 || fstatat(tdir, lc[ln - 1], &st, AT_SYMLINK_NOFOLLOW) < 0 ||
                    S_ISDIR(st.st_mode))
                        return refuse(u, -EPERM, "a hard link to nothing in the layer", orig);
                if (linkat(tdir, lc[ln - 1], dirfd, name, 0) < 0)
                        return refuse(u, -errno, "cannot make a hard link", orig);
                return 0;
        }
        switch (type) {
        case AE_IFDIR:
                if (mkdirat(dirfd, name, 0700) < 0)
                        return refuse(u, -errno, "cannot make a directory", orig);
                return set_owner_mode_times(dirfd, name, e, false);
        case AE_IFREG: {
                la_int64_t size = archive_entry_size(e);
                if (size < 0 || (uint64_t) size > u->max_bytes - u->bytes)
                        return refuse(u, -EFBIG, "the layer unpacks past the size limit", orig);
                u->bytes += (uint64_t) size;
                if ((r = write_file(u->a, dirfd, name)) < 0)
                        return refuse(u, r,
                                      r == -EBADMSG ? "a truncated or corrupt file" : strerror(-r),
                                      orig);
                return set_owner_mode_times(dirfd, name, e, false);
        }
        case AE_IFLNK: {
                const char *target = archive_entry_symlink(e);
                if (!target || !*target)
                        return refuse(u, -EBADMSG, "a symlink without a target", orig);
                if (symlinkat(target, dirfd, name) < 0)
                        return refuse(u, -errno, "cannot make a symlink", orig);
                return set_owner_mode_times(dirfd, name, e, true);
        }
        case AE_IFIFO:
                if (mknodat(dirfd, name, S_IFIFO | 0600, 0) < 0)
                        return refuse(u, -errno, "cannot make a fifo", orig);
                return set_owner_mode_times(dirfd, name, e, false);
        default:
                return refuse(u, -EBADMSG, "an entry of unknown type", orig);
        }
}

int image_layer_unpack(int blob_fd, const char *dest, uint64_t max_bytes, char *err, size_t errlen)
{
        cleanup_close int root = open(dest, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (root < 0)
                return -errno;
        struct archive *a = archive_read_new();
        if (!a)
                return -ENOMEM;
        (void) archive_read_support_filter_gzip(a);
        (void) archive_read_support_filter_zstd(a);
        (void) archive_read_support_filter_none(a);
        (void) archive_read_support_format_tar(a);
        (void) archive_read_support_format_gnutar(a);
        Unpack u = {.a = a,
                    .root = root,
                    .max_bytes = max_bytes,
                    .err = err,
                    .errlen = errlen,
                    .cached_fd = -1};
        int r = 0;
        if (lseek(blob_fd, 0, SEEK_SET) < 0 ||
            archive_read_open_fd(a, blob_fd, BLOCK) != ARCHIVE_OK) {
                (void) snprintf(err, errlen, "layer refused: not a tar archive: %s",
                                archive_error_string(a) ?: "");
                r = -EBADMSG;
        }
        struct archive_entry *e = NULL;
        while (r == 0) {
                int k = archive_read_next_header(a, &e);
                if (k == ARCHIVE_EOF)
                        break;
                if (k != ARCHIVE_OK && k != ARCHIVE_WARN) {
                        (void) snprintf(err, errlen, "layer refused: not a tar archive: %s",
                                        archive_error_string(a) ?: "");
                        r = -EBADMSG;
                        break;
                }
                r = unpack_entry(&u, e);
        }
        cache_drop(&u);
        archive_read_free(a);
        return r;
}

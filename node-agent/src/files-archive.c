/* Archives in and out of a sandbox (see files-archive.h). Downloads are a
 * step-by-step walk driven by the HTTP stream's reads, so no thread is needed:
 * each read advances the walk (next entry, or the next block of the current
 * file) until libarchive has produced output. */
#include "files-archive.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "files.h"
#include "sandpit/macro.h"
#include "sandpit/outbuf.h"
#include "sandpit/util.h"

#define ENTRIES_MAX 1000000u
#define BLOCK       ((size_t) 256 * 1024)

int fsarchive_format_from_string(const char *s, FsArchiveFormat *ret)
{
        if (streq(s, "tar.gz") || streq(s, "tgz"))
                *ret = FSARCHIVE_TAR_GZ;
        else if (streq(s, "tar"))
                *ret = FSARCHIVE_TAR;
        else if (streq(s, "zip"))
                *ret = FSARCHIVE_ZIP;
        else
                return -EINVAL;
        return 0;
}

const char *fsarchive_content_type(FsArchiveFormat f)
{
        return f == FSARCHIVE_ZIP   ? "application/zip"
               : f == FSARCHIVE_TAR ? "application/x-tar"
                                    : "application/gzip";
}

static void closedirp(DIR **d)
{
        if (*d)
                (void) closedir(*d);
}
#define cleanup_closedir __attribute__((cleanup(closedirp)))

static int join_rel(const char *rel, const char *name, char **ret)
{
        return asprintf(ret, "%s%s%s", rel ? rel : "", rel ? "/" : "", name) < 0 ? -ENOMEM : 0;
}

/* --- download ---------------------------------------------------------------- */

/* Sums file sizes below dfd as the user; fails on what the user cannot read. */
static int measure(int dfd, const char *rel, unsigned level, uint64_t max, uint64_t *total,
                   uint64_t *count, char *err, size_t errlen)
{
        if (level > FILES_DEPTH_MAX) {
                (void) snprintf(err, errlen, "'%s' is nested too deep", rel);
                return -EINVAL;
        }
        int fd = dup(dfd);
        cleanup_closedir DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
        if (!d) {
                if (fd >= 0)
                        (void) close(fd);
                return -errno;
        }
        struct dirent *de;
        while ((errno = 0, de = readdir(d))) {
                if (streq(de->d_name, ".") || streq(de->d_name, ".."))
                        continue;
                struct stat st;
                if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                        continue;
                cleanup_free char *crel = NULL;
                if (join_rel(rel, de->d_name, &crel) < 0)
                        return -ENOMEM;
                if (++*count > ENTRIES_MAX) {
                        (void) snprintf(err, errlen, "more than %u entries", ENTRIES_MAX);
                        return -EFBIG;
                }
                if (S_ISREG(st.st_mode)) {
                        /* AT_EACCESS: checked with this thread's fsuid, not the real uid. */
                        if (faccessat(dirfd(d), de->d_name, R_OK,
                                      AT_EACCESS | AT_SYMLINK_NOFOLLOW) < 0) {
                                (void) snprintf(err, errlen, "cannot read '%s': %s", crel,
                                                strerror(errno));
                                return -errno;
                        }
                        *total += (uint64_t) st.st_size;
                        if (*total > max) {
                                (void) snprintf(err, errlen,
                                                "the tree holds more than max_bytes=%llu bytes",
                                                (unsigned long long) max);
                                return -EFBIG;
                        }
                } else if (S_ISDIR(st.st_mode)) {
                        int cfd =
                                fsroot_open_child(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY, 0);
                        if (cfd < 0) {
                                (void) snprintf(err, errlen, "cannot read '%s': %s", crel,
                                                strerror(-cfd));
                                return cfd;
                        }
                        int k = measure(cfd, crel, level + 1, max, total, count, err, errlen);
                        (void) close(cfd);
                        if (k < 0)
                                return k;
                }
        }
        return errno ? -errno : 0;
}

typedef struct {
        DIR *d;
        char *rel; /* NULL at the top */
} WalkLevel;

struct FsArchiveStream {
        FsRoot cred; /* uid and gid only: what fscred_enter() needs */
        struct archive *ar;
        WalkLevel stack[FILES_DEPTH_MAX + 1];
        int depth;
        int file_fd;
        uint64_t file_left;
        OutBuf out; /* archive bytes not yet sent */
        bool finished;
        char *buf;
};

static la_ssize_t on_write(struct archive *ar, void *cls, const void *data, size_t n)
{
        FsArchiveStream *s = cls;
        (void) ar;
        return outbuf_append(&s->out, data, n) < 0 ? -1 : (la_ssize_t) n;
}

static void stream_free(void *cls)
{
        FsArchiveStream *s = cls;
        if (!s)
                return;
        if (s->ar)
                archive_write_free(s->ar);
        for (int i = 0; i < s->depth; i++) {
                (void) closedir(s->stack[i].d);
                free(s->stack[i].rel);
        }
        closep(&s->file_fd);
        outbuf_done(&s->out);
        free(s->buf);
        free(s);
}

static int push_dir(FsArchiveStream *s, int fd, char *rel)
{
        DIR *d = fdopendir(fd);
        if (!d) {
                (void) close(fd);
                free(rel);
                return -errno;
        }
        s->stack[s->depth++] = (WalkLevel){.d = d, .rel = rel};
        return 0;
}

static int write_header(FsArchiveStream *s, const char *rel, const struct stat *st,
                        const char *link)
{
        struct archive_entry *e = archive_entry_new();
        if (!e)
                return -ENOMEM;
        archive_entry_set_pathname(e, rel);
        archive_entry_copy_stat(e, st);
        archive_entry_set_nlink(e, 1); /* hard links go out as separate files */
        if (link)
                archive_entry_set_symlink(e, link);
        if (!S_ISREG(st->st_mode))
                archive_entry_set_size(e, 0);
        int k = archive_write_header(s->ar, e);
        archive_entry_free(e);
        return k < ARCHIVE_WARN ? -EIO : 0;
}

/* One entry of the directory on top of the stack. */
static int step_entry(FsArchiveStream *s, WalkLevel *top, const char *name)
{
        int dfd = dirfd(top->d);
        struct stat st;
        if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return 0; /* gone since: skip */
        cleanup_free char *rel = NULL;
        if (join_rel(top->rel, name, &rel) < 0)
                return -ENOMEM;
        FsCred c;
        int k = 0;
        if (S_ISREG(st.st_mode)) {
                if ((k = fscred_enter(&s->cred, &c)) < 0)
                        return k;
                int fd = fsroot_open_child(dfd, name, O_RDONLY | O_NONBLOCK, 0);
                fscred_leave(&c);
                if (fd < 0)
                        return 0; /* became unreadable since the walk: skip */
                if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
                        (void) close(fd);
                        return 0;
                }
                s->file_fd = fd;
                s->file_left = (uint64_t) st.st_size;
                return write_header(s, rel, &st, NULL);
        }
        if (S_ISLNK(st.st_mode)) {
                char target[4097];
                ssize_t n = readlinkat(dfd, name, target, sizeof(target) - 1);
                if (n < 0)
                        return 0;
                target[n] = '\0';
                return write_header(s, rel, &st, target);
        }
        if (!S_ISDIR(st.st_mode) || s->depth > FILES_DEPTH_MAX)
                return 0; /* devices, fifos, sockets are not archived */
        if ((k = write_header(s, rel, &st, NULL)) < 0)
                return k;
        if ((k = fscred_enter(&s->cred, &c)) < 0)
                return k;
        int fd = fsroot_open_child(dfd, name, O_RDONLY | O_DIRECTORY, 0);
        fscred_leave(&c);
        if (fd < 0)
                return 0;
        return push_dir(s, fd, TAKE_PTR(rel));
}

static int step(FsArchiveStream *s)
{
        if (s->file_fd >= 0) {
                size_t want = s->file_left < BLOCK ? (size_t) s->file_left : BLOCK;
                ssize_t n = want ? read(s->file_fd, s->buf, want) : 0;
                if (n < 0 && errno == EINTR)
                        return 0;
                if (n <= 0) {
                        /* Shrank meanwhile: libarchive pads the entry to its size. */
                        closep(&s->file_fd);
                        return archive_write_finish_entry(s->ar) < ARCHIVE_WARN ? -EIO : 0;
                }
                s->file_left -= (uint64_t) n;
                return archive_write_data(s->ar, s->buf, (size_t) n) < 0 ? -EIO : 0;
        }
        if (s->depth == 0) {
                s->finished = true;
                return archive_write_close(s->ar) < ARCHIVE_WARN ? -EIO : 0;
        }
        WalkLevel *top = &s->stack[s->depth - 1];
        errno = 0;
        struct dirent *de = readdir(top->d);
        if (!de) {
                (void) closedir(top->d);
                free(top->rel);
                s->depth--;
                return 0;
        }
        if (streq(de->d_name, ".") || streq(de->d_name, ".."))
                return 0;
        return step_entry(s, top, de->d_name);
}

static ssize_t stream_read(void *cls, int client_fd, char *buf, size_t max)
{
        FsArchiveStream *s = cls;
        (void) client_fd;
        while (!outbuf_pending(&s->out) && !s->finished) {
                int k = step(s);
                if (k < 0)
                        return k;
        }
        return (ssize_t) outbuf_take(&s->out, buf, max);
}

const HttpStreamOps fsarchive_stream_ops = {
        .read = stream_read,
        .destroy = stream_free,
};

int fsarchive_stream_new(const FsRoot *root, const char *abspath, FsArchiveFormat fmt,
                         uint64_t max_bytes, FsArchiveStream **ret, char *err, size_t errlen)
{
        FsArchiveStream *s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->file_fd = -1;
        s->cred = (FsRoot){
                .root_fd = -1, .uid = root->uid, .gid = root->gid, .id_shift = root->id_shift};
        FsCred c;
        int k = fscred_enter(root, &c);
        if (k < 0) {
                free(s);
                return k;
        }
        uint64_t total = 0, count = 0;
        struct stat st;
        int fd = fsroot_open_path(root, abspath, O_RDONLY | O_NONBLOCK, 0);
        if (fd < 0 || fstat(fd, &st) < 0)
                k = fd < 0 ? fd : -errno;
        else if (S_ISDIR(st.st_mode))
                k = measure(fd, NULL, 0, max_bytes, &total, &count, err, errlen);
        else if (!S_ISREG(st.st_mode))
                k = -EINVAL;
        else if ((uint64_t) st.st_size > max_bytes) {
                (void) snprintf(err, errlen, "the file holds more than max_bytes=%llu bytes",
                                (unsigned long long) max_bytes);
                k = -EFBIG;
        }
        fscred_leave(&c);
        if (k == 0 && !(s->buf = malloc(BLOCK)))
                k = -ENOMEM;
        if (k == 0 && !(s->ar = archive_write_new()))
                k = -ENOMEM;
        if (k == 0) {
                int a = fmt == FSARCHIVE_ZIP ? archive_write_set_format_zip(s->ar)
                                             : archive_write_set_format_pax_restricted(s->ar);
                if (a == ARCHIVE_OK && fmt == FSARCHIVE_TAR_GZ)
                        a = archive_write_add_filter_gzip(s->ar);
                if (a == ARCHIVE_OK)
                        a = archive_write_set_bytes_in_last_block(s->ar, 1);
                if (a == ARCHIVE_OK)
                        a = archive_write_open2(s->ar, s, NULL, on_write, NULL, NULL);
                if (a != ARCHIVE_OK)
                        k = -EIO;
        }
        if (k == 0 && S_ISDIR(st.st_mode)) {
                (void) lseek(fd, 0, SEEK_SET); /* measure() read it through a dup */
                k = push_dir(s, fd, NULL);
                fd = -1;
        } else if (k == 0) {
                const char *slash = strrchr(abspath, '/');
                k = write_header(s, slash + 1, &st, NULL);
                (void) fcntl(fd, F_SETFL, 0);
                s->file_fd = TAKE_FD(fd);
                s->file_left = (uint64_t) st.st_size;
        }
        closep(&fd);
        if (k < 0) {
                stream_free(s);
                return k;
        }
        *ret = s;
        return 0;
}

/* --- upload ------------------------------------------------------------------- */

/* The entry's name as a clean relative path (leading "/" and "." dropped);
 * NULL with *bad set for "..", NULL alone for an empty name. */
static char *clean_name(const char *name, bool *bad)
{
        *bad = false;
        if (!name)
                return NULL;
        size_t len = strlen(name);
        char *out = malloc(len + 1);
        cleanup_free char *in = strdup(name);
        if (!out || !in) {
                free(out);
                *bad = true;
                return NULL;
        }
        size_t o = 0;
        char *save = NULL;
        for (char *t = strtok_r(in, "/", &save); t; t = strtok_r(NULL, "/", &save)) {
                if (streq(t, "."))
                        continue;
                if (streq(t, "..")) {
                        free(out);
                        *bad = true;
                        return NULL;
                }
                if (o)
                        out[o++] = '/';
                memcpy(out + o, t, strlen(t));
                o += strlen(t);
        }
        out[o] = '\0';
        if (o == 0) {
                free(out);
                return NULL;
        }
        return out;
}

static struct archive *reader_open(int fd)
{
        struct archive *ar = archive_read_new();
        if (!ar)
                return NULL;
        (void) archive_read_support_filter_gzip(ar);
        (void) archive_read_support_filter_none(ar);
        (void) archive_read_support_format_tar(ar);
        (void) archive_read_support_format_gnutar(ar);
        (void) archive_read_support_format_zip(ar);
        if (lseek(fd, 0, SEEK_SET) < 0 || archive_read_open_fd(ar, fd, BLOCK) != ARCHIVE_OK) {
                archive_read_free(ar);
                return NULL;
        }
        return ar;
}

/* Pass 1: every name, type and link target acceptable, data within the limit. */
int fsarchive_check(int fd, uint64_t max, uint64_t *ret_entries, char *err, size_t errlen)
{
        struct archive *ar = reader_open(fd);
        if (!ar) {
                (void) snprintf(err, errlen, "the body is not a tar, tar.gz or zip archive");
                return -EINVAL;
        }
        uint64_t total = 0, count = 0;
        int k = 0;
        struct archive_entry *e;
        cleanup_free char *buf = malloc(BLOCK);
        int a;
        while (buf && (a = archive_read_next_header(ar, &e)) == ARCHIVE_OK) {
                const char *name = archive_entry_pathname(e);
                bool bad = false;
                cleanup_free char *clean = clean_name(name, &bad);
                if (bad) {
                        (void) snprintf(err, errlen, "archive entry '%.200s' contains '..'", name);
                        k = -EINVAL;
                        break;
                }
                const char *hl = archive_entry_hardlink(e);
                mode_t type = archive_entry_filetype(e);
                if (hl) {
                        cleanup_free char *hclean = clean_name(hl, &bad);
                        if (bad || !hclean) {
                                (void) snprintf(err, errlen,
                                                "archive entry '%.200s' links outside the tree "
                                                "('%.200s')",
                                                name, hl);
                                k = -EINVAL;
                                break;
                        }
                } else if (type != AE_IFREG && type != AE_IFDIR && type != AE_IFLNK) {
                        (void) snprintf(err, errlen,
                                        "archive entry '%.200s': only files, directories, "
                                        "symlinks and hard links are accepted",
                                        name);
                        k = -EINVAL;
                        break;
                }
                if (++count > ENTRIES_MAX) {
                        (void) snprintf(err, errlen, "more than %u entries", ENTRIES_MAX);
                        k = -EFBIG;
                        break;
                }
                /* Counts the data really there, not the headers' claims. */
                la_ssize_t n;
                while ((n = archive_read_data(ar, buf, BLOCK)) > 0) {
                        total += (uint64_t) n;
                        if (total > max)
                                break;
                }
                if (total > max) {
                        (void) snprintf(err, errlen,
                                        "the archive holds more than max_bytes=%llu bytes",
                                        (unsigned long long) max);
                        k = -EFBIG;
                        break;
                }
                if (n < 0) {
                        (void) snprintf(err, errlen, "corrupt archive: %s",
                                        archive_error_string(ar));
                        k = -EINVAL;
                        break;
                }
        }
        if (!buf)
                k = -ENOMEM;
        else if (k == 0 && a != ARCHIVE_EOF) {
                (void) snprintf(err, errlen, "corrupt or unsupported archive: %s",
                                archive_error_string(ar) ? archive_error_string(ar) : "?");
                k = -EINVAL;
        }
        archive_read_free(ar);
        *ret_entries = count;
        return k;
}

static int beneath(int dfd, const char *rel, int flags, mode_t mode)
{
        struct open_how how = {.flags = (uint64_t) (flags | O_CLOEXEC | O_NOFOLLOW),
                               .mode = (flags & O_CREAT) ? mode : 0,
                               .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
                                          RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV};
        long fd = syscall(SYS_openat2, dfd, rel, &how, sizeof(how));
        return fd < 0 ? -errno : (int) fd;
}

/* The parent directory of rel below dest, made as needed; *ret_name its last part. */
static int parent_of(int dest, char *rel, int *ret_fd, const char **ret_name)
{
        char *slash = strrchr(rel, '/');
        if (!slash) {
                *ret_name = rel;
                *ret_fd = dup(dest);
                return *ret_fd < 0 ? -errno : 0;
        }
        *slash = '\0';
        *ret_name = slash + 1;
        int cur = dup(dest);
        if (cur < 0)
                return -errno;
        char *save = NULL;
        for (char *t = strtok_r(rel, "/", &save); t; t = strtok_r(NULL, "/", &save)) {
                if (mkdirat(cur, t, 0755) < 0 && errno != EEXIST) {
                        int k = -errno;
                        (void) close(cur);
                        return k;
                }
                int next = beneath(cur, t, O_PATH | O_DIRECTORY, 0);
                (void) close(cur);
                if (next < 0)
                        return next;
                cur = next;
        }
        *ret_fd = cur;
        return 0;
}

/* Directory modes and times, applied once everything is in place (a
 * read-only directory in the archive must not stop its own contents). */
typedef struct {
        char *rel;
        mode_t perm;
        struct timespec mtime;
        bool has_mtime;
} DirMode;

typedef struct {
        DirMode *v;
        size_t n;
} DirModes;

static void dir_modes_done(DirModes *d)
{
        for (size_t i = 0; i < d->n; i++)
                free(d->v[i].rel);
        free(d->v);
}

static int dir_modes_add(DirModes *d, const char *rel, struct archive_entry *e)
{
        DirMode *p = realloc(d->v, (d->n + 1) * sizeof(*p));
        if (!p)
                return -ENOMEM;
        d->v = p;
        char *copy = strdup(rel);
        if (!copy)
                return -ENOMEM;
        p[d->n++] = (DirMode){
                .rel = copy,
                .perm = archive_entry_perm(e) & 01777,
                .mtime = {.tv_sec = archive_entry_mtime(e), .tv_nsec = archive_entry_mtime_nsec(e)},
                .has_mtime = archive_entry_mtime_is_set(e)};
        return 0;
}

static void dir_modes_apply(const DirModes *d, int dest)
{
        for (size_t i = d->n; i-- > 0;) {
                int fd = beneath(dest, d->v[i].rel, O_RDONLY | O_DIRECTORY, 0);
                if (fd < 0)
                        continue;
                (void) fchmod(fd, d->v[i].perm);
                struct timespec ts[2] = {{.tv_nsec = UTIME_OMIT}, d->v[i].mtime};
                if (d->v[i].has_mtime)
                        (void) futimens(fd, ts);
                (void) close(fd);
        }
}

static int extract_entry(struct archive *ar, struct archive_entry *e, int dest, uint64_t max,
                         uint64_t *total, char *buf, DirModes *dirs)
{
        bool bad = false;
        cleanup_free char *rel = clean_name(archive_entry_pathname(e), &bad);
        if (!rel)
                return bad ? -EINVAL : 0;
        cleanup_free char *whole = strdup(rel); /* parent_of() cuts rel */
        if (!whole)
                return -ENOMEM;
        cleanup_free char *hl =
                archive_entry_hardlink(e) ? clean_name(archive_entry_hardlink(e), &bad) : NULL;
        cleanup_close int pfd = -1;
        const char *name = NULL;
        int k = parent_of(dest, rel, &pfd, &name);
        if (k < 0)
                return k;
        mode_t type = archive_entry_filetype(e), perm = archive_entry_perm(e);
        if (hl) {
                cleanup_close int tfd = beneath(dest, hl, O_PATH, 0);
                struct stat st;
                if (tfd < 0)
                        return tfd;
                if (fstat(tfd, &st) < 0 || !S_ISREG(st.st_mode))
                        return -EINVAL;
                char proc[64];
                (void) snprintf(proc, sizeof(proc), "/proc/self/fd/%d", tfd);
                (void) unlinkat(pfd, name, 0);
                return linkat(AT_FDCWD, proc, pfd, name, AT_SYMLINK_FOLLOW) < 0 ? -errno : 0;
        }
        if (type == AE_IFDIR) {
                if (mkdirat(pfd, name, 0700) < 0 && errno != EEXIST)
                        return -errno;
                cleanup_close int dfd = beneath(pfd, name, O_RDONLY | O_DIRECTORY, 0);
                return dfd < 0 ? dfd : dir_modes_add(dirs, whole, e);
        }
        if (type == AE_IFLNK) {
                /* Harmless whatever it points at: the agent resolves every path
                 * inside the sandbox and never follows links when extracting. */
                const char *target = archive_entry_symlink(e);
                if (!target)
                        return -EINVAL;
                if (symlinkat(target, pfd, name) < 0 && errno == EEXIST &&
                    unlinkat(pfd, name, 0) == 0 && symlinkat(target, pfd, name) < 0)
                        return -errno;
                return 0;
        }
        int fd = beneath(pfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_NONBLOCK, 0600);
        if (fd == -ELOOP && unlinkat(pfd, name, 0) == 0) /* a symlink there: replace it */
                fd = beneath(pfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_NONBLOCK, 0600);
        if (fd < 0)
                return fd;
        struct stat st;
        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
                (void) close(fd);
                return -EINVAL;
        }
        la_ssize_t n;
        while ((n = archive_read_data(ar, buf, BLOCK)) > 0) {
                *total += (uint64_t) n;
                if (*total > max) {
                        (void) close(fd);
                        return -EFBIG;
                }
                if ((k = write_all(fd, buf, (size_t) n)) < 0) {
                        (void) close(fd);
                        return k;
                }
        }
        if (n < 0)
                k = -EINVAL;
        if (k == 0 && fchmod(fd, perm & 0777) < 0)
                k = -errno;
        struct timespec ts[2] = {
                {.tv_nsec = UTIME_OMIT},
                {.tv_sec = archive_entry_mtime(e), .tv_nsec = archive_entry_mtime_nsec(e)}};
        if (k == 0 && archive_entry_mtime_is_set(e))
                (void) futimens(fd, ts);
        (void) close(fd);
        return k;
}

static int extract_all(const FsRoot *root, const char *abspath, int fd, uint64_t max,
                       uint64_t *ret_bytes, char *err, size_t errlen)
{
        cleanup_close int pfd = -1;
        const char *name = NULL;
        int k = 0;
        if (!streq(abspath, "/")) {
                k = fsroot_open_parent(root, abspath, true, &pfd, &name);
                if (k < 0)
                        return k;
                if (mkdirat(pfd, name, 0755) < 0 && errno != EEXIST)
                        return -errno;
        }
        cleanup_close int dest = fsroot_open_path(root, abspath, O_PATH | O_DIRECTORY, 0);
        if (dest < 0)
                return dest;
        struct archive *ar = reader_open(fd);
        cleanup_free char *buf = malloc(BLOCK);
        if (!ar || !buf) {
                if (ar)
                        archive_read_free(ar);
                return -ENOMEM;
        }
        struct archive_entry *e;
        uint64_t total = 0;
        DirModes dirs = {0};
        int a;
        while ((a = archive_read_next_header(ar, &e)) == ARCHIVE_OK) {
                k = extract_entry(ar, e, dest, max, &total, buf, &dirs);
                if (k < 0) {
                        (void) snprintf(err, errlen, "cannot extract '%.200s': %s",
                                        archive_entry_pathname(e),
                                        k == -ELOOP ? "a path component is a symlink"
                                                    : strerror(-k));
                        break;
                }
        }
        if (k == 0 && a != ARCHIVE_EOF) {
                (void) snprintf(err, errlen, "corrupt archive: %s",
                                archive_error_string(ar) ? archive_error_string(ar) : "?");
                k = -EINVAL;
        }
        archive_read_free(ar);
        if (k == 0)
                dir_modes_apply(&dirs, dest);
        dir_modes_done(&dirs);
        *ret_bytes = total;
        return k == -ELOOP ? -EINVAL : k;
}

int fsarchive_extract(const FsRoot *root, const char *abspath, int fd, uint64_t max_bytes,
                      uint64_t *ret_entries, uint64_t *ret_bytes, char *err, size_t errlen)
{
        uint64_t entries = 0, bytes = 0;
        int k = fsarchive_check(fd, max_bytes, &entries, err, errlen);
        if (k < 0)
                return k;
        FsCred c;
        if ((k = fscred_enter(root, &c)) < 0)
                return k;
        k = extract_all(root, abspath, fd, max_bytes, &bytes, err, errlen);
        fscred_leave(&c);
        if (k < 0)
                return k;
        *ret_entries = entries;
        *ret_bytes = bytes;
        return 0;
}

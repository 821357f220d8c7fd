/* Layers out of directory trees and COPY's staging (see build-layer.h). Every
 * walk goes by descriptors with O_NOFOLLOW: a symlink in the context, in an
 * upper dir or in a layer is copied or read as a link, never followed. */
#include "build-layer.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "sandpit/macro.h"
#include "sandpit/util.h"

#define DEPTH_MAX 256

static int cmp_name(const void *a, const void *b)
{
        return strcmp(*(char *const *) a, *(char *const *) b);
}

/* The names in the directory dfd, sorted; strv. */
static int list_sorted(int dfd, char ***ret)
{
        int fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        DIR *d = fdopendir(fd);
        if (!d) {
                int r = -errno;
                (void) close(fd);
                return r;
        }
        char **v = calloc(1, sizeof(char *));
        size_t n = 0;
        int r = v ? 0 : -ENOMEM;
        struct dirent *de;
        while (r == 0 && (de = readdir(d))) {
                if (streq(de->d_name, ".") || streq(de->d_name, ".."))
                        continue;
                char **nv = realloc(v, (n + 2) * sizeof(char *));
                if (!nv || !(nv[n] = strdup(de->d_name))) {
                        if (nv)
                                v = nv;
                        r = -ENOMEM;
                        break;
                }
                v = nv;
                v[++n] = NULL;
        }
        (void) closedir(d);
        if (r < 0) {
                strv_free(v);
                return r;
        }
        qsort(v, n, sizeof(char *), cmp_name);
        *ret = v;
        return 0;
}

static bool is_whiteout(const struct stat *st)
{
        return S_ISCHR(st->st_mode) && st->st_rdev == makedev(0, 0);
}

static bool is_opaque(int dfd)
{
        char v[2] = "";
        return fgetxattr(dfd, "trusted.overlay.opaque", v, sizeof(v)) == 1 && v[0] == 'y';
}

/* --- packing --------------------------------------------------------------- */

/* A file with more than one link, by the path its first entry has. */
typedef struct {
        dev_t dev;
        ino_t ino;
        char *path;
} Link;

typedef struct {
        struct archive *a;
        Link *links;
        size_t nlinks;
        bool dir_mtime_zero;
        char *const *skip;
        uint32_t id_shift, id_size; /* a user-namespaced sandbox's: host ids back to its own */
        char *err;
        size_t errlen;
} Packer;

static int write_entry(Packer *p, const char *path, const struct stat *st, const char *link,
                       int data_fd);

/* A regular file with other links in the tree: its first name is written
 * with the data, the later ones as hard links to it (one inode again when
 * unpacked). 1 when written as a link. */
/* st into e, with the owners shifted back from the build sandbox's host id
 * range (ids outside it become 65534, which the sandbox sees as nobody). */
static void entry_set_stat(const Packer *p, struct archive_entry *e, const struct stat *st)
{
        archive_entry_copy_stat(e, st);
        if (!p->id_shift)
                return;
        uint32_t u = (uint32_t) st->st_uid - p->id_shift, g = (uint32_t) st->st_gid - p->id_shift;
        archive_entry_set_uid(e, st->st_uid >= p->id_shift && u < p->id_size ? u : 65534);
        archive_entry_set_gid(e, st->st_gid >= p->id_shift && g < p->id_size ? g : 65534);
}

static int write_maybe_hardlink(Packer *p, const char *path, const struct stat *st)
{
        if (st->st_nlink < 2)
                return 0;
        for (size_t i = 0; i < p->nlinks; i++)
                if (p->links[i].dev == st->st_dev && p->links[i].ino == st->st_ino) {
                        struct archive_entry *e = archive_entry_new();
                        if (!e)
                                return -ENOMEM;
                        entry_set_stat(p, e, st);
                        archive_entry_set_pathname(e, path);
                        archive_entry_set_hardlink(e, p->links[i].path);
                        archive_entry_set_size(e, 0);
                        int r = archive_write_header(p->a, e) == ARCHIVE_OK ? 1 : -EIO;
                        if (r < 0)
                                (void) snprintf(p->err, p->errlen,
                                                "cannot write %s into the layer: %s", path,
                                                archive_error_string(p->a) ?: "?");
                        archive_entry_free(e);
                        return r;
                }
        Link *nv = realloc(p->links, (p->nlinks + 1) * sizeof(Link));
        if (!nv)
                return -ENOMEM;
        p->links = nv;
        p->links[p->nlinks] = (Link){.dev = st->st_dev, .ino = st->st_ino, .path = strdup(path)};
        if (!p->links[p->nlinks].path)
                return -ENOMEM;
        p->nlinks++;
        return 0;
}

static int write_entry(Packer *p, const char *path, const struct stat *st, const char *link,
                       int data_fd)
{
        struct archive_entry *e = archive_entry_new();
        if (!e)
                return -ENOMEM;
        entry_set_stat(p, e, st);
        archive_entry_set_pathname(e, path);
        archive_entry_set_nlink(e, 1);
        if (S_ISDIR(st->st_mode) && p->dir_mtime_zero)
                archive_entry_set_mtime(e, 0, 0);
        if (link)
                archive_entry_set_symlink(e, link);
        if (!S_ISREG(st->st_mode))
                archive_entry_set_size(e, 0);
        int r = archive_write_header(p->a, e) == ARCHIVE_OK ? 0 : -EIO;
        char buf[65536];
        int64_t left = st->st_size;
        while (r == 0 && data_fd >= 0 && left > 0) {
                ssize_t n = read(data_fd, buf,
                                 sizeof(buf) < (size_t) left ? sizeof(buf) : (size_t) left);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0) {
                        r = n < 0 ? -errno : -EIO; /* shrank while packed */
                        break;
                }
                if (archive_write_data(p->a, buf, (size_t) n) != n)
                        r = -EIO;
                left -= n;
        }
        if (r == -EIO && archive_errno(p->a))
                (void) snprintf(p->err, p->errlen, "cannot write %s into the layer: %s", path,
                                archive_error_string(p->a) ?: "?");
        archive_entry_free(e);
        return r;
}

static int pack_dir(Packer *p, int dfd, const char *prefix, unsigned depth)
{
        if (depth > DEPTH_MAX) {
                (void) snprintf(p->err, p->errlen, "%s: directories nested too deep", prefix);
                return -ELOOP;
        }
        if (*prefix && is_opaque(dfd)) {
                cleanup_free char *wh = NULL;
                if (asprintf(&wh, "%s.wh..wh..opq", prefix) < 0)
                        return -ENOMEM;
                struct stat z = {.st_mode = S_IFREG | 0644};
                int r = write_entry(p, wh, &z, NULL, -1);
                if (r < 0)
                        return r;
        }
        cleanup_strv char **names = NULL;
        int r = list_sorted(dfd, &names);
        if (r < 0)
                return r;
        STRV_FOREACH(n, names) {
                bool skipped = false;
                for (char *const *k = p->skip; !*prefix && k && *k; k++)
                        skipped = skipped || streq(*k, *n);
                if (skipped)
                        continue;
                struct stat st;
                if (fstatat(dfd, *n, &st, AT_SYMLINK_NOFOLLOW) < 0)
                        return -errno;
                cleanup_free char *path = NULL;
                if (asprintf(&path, "%s%s", prefix, *n) < 0)
                        return -ENOMEM;
                if (is_whiteout(&st)) {
                        cleanup_free char *wh = NULL;
                        if (asprintf(&wh, "%s.wh.%s", prefix, *n) < 0)
                                return -ENOMEM;
                        struct stat z = {.st_mode = S_IFREG | 0644, .st_mtime = st.st_mtime};
                        r = write_entry(p, wh, &z, NULL, -1);
                } else if (S_ISDIR(st.st_mode)) {
                        cleanup_close int fd =
                                openat(dfd, *n, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                        cleanup_free char *sub = NULL;
                        if (fd < 0)
                                return -errno;
                        if (asprintf(&sub, "%s/", path) < 0)
                                return -ENOMEM;
                        r = write_entry(p, sub, &st, NULL, -1);
                        if (r == 0)
                                r = pack_dir(p, fd, sub, depth + 1);
                } else if (S_ISREG(st.st_mode)) {
                        if ((r = write_maybe_hardlink(p, path, &st)) != 0) {
                                if (r < 0)
                                        return r;
                                r = 0;
                                continue;
                        }
                        cleanup_close int fd = openat(dfd, *n, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
                        if (fd < 0)
                                return -errno;
                        r = write_entry(p, path, &st, NULL, fd);
                } else if (S_ISLNK(st.st_mode)) {
                        char target[4096];
                        ssize_t k = readlinkat(dfd, *n, target, sizeof(target) - 1);
                        if (k < 0)
                                return -errno;
                        target[k] = '\0';
                        r = write_entry(p, path, &st, target, -1);
                } else if (S_ISFIFO(st.st_mode)) {
                        r = write_entry(p, path, &st, NULL, -1);
                } /* devices and sockets: the runtime makes /dev */
                if (r < 0)
                        return r;
        }
        return 0;
}

int build_layer_pack(int dir_fd, int out_fd, bool dir_mtime_zero, char *const *skip,
                     uint32_t id_shift, uint32_t id_size, char *err, size_t errlen)
{
        struct archive *a = archive_write_new();
        if (!a)
                return -ENOMEM;
        Packer p = {.a = a,
                    .dir_mtime_zero = dir_mtime_zero,
                    .skip = skip,
                    .id_shift = id_shift,
                    .id_size = id_size,
                    .err = err,
                    .errlen = errlen};
        int r = archive_write_set_format_pax_restricted(a) == ARCHIVE_OK &&
                                archive_write_add_filter_none(a) == ARCHIVE_OK &&
                                archive_write_open_fd(a, out_fd) == ARCHIVE_OK
                        ? 0
                        : -EIO;
        if (r == 0)
                r = pack_dir(&p, dir_fd, "", 0);
        if (archive_write_close(a) != ARCHIVE_OK && r == 0)
                r = -EIO;
        archive_write_free(a);
        for (size_t i = 0; i < p.nlinks; i++)
                free(p.links[i].path);
        free(p.links);
        if (r < 0 && !*err)
                (void) snprintf(err, errlen, "cannot pack the layer: %s", strerror(-r));
        return r;
}

/* --- paths ----------------------------------------------------------------- */

/* The components of path, "." dropped, ".." popping; -EPERM when ".." would
 * leave the root. */
static int split_path(const char *path, char ***ret)
{
        cleanup_free char *copy = strdup(path);
        if (!copy)
                return -ENOMEM;
        size_t n = 0, cap = 16;
        char **v = calloc(cap + 1, sizeof(char *));
        if (!v)
                return -ENOMEM;
        char *save = NULL;
        int r = 0;
        for (char *c = strtok_r(copy, "/", &save); c && r == 0; c = strtok_r(NULL, "/", &save)) {
                if (streq(c, "."))
                        continue;
                if (streq(c, "..")) {
                        if (n == 0)
                                r = -EPERM;
                        else {
                                free(v[--n]);
                                v[n] = NULL;
                        }
                        continue;
                }
                if (n == cap) {
                        char **nv = realloc(v, (2 * cap + 1) * sizeof(char *));
                        if (!nv) {
                                r = -ENOMEM;
                                break;
                        }
                        v = nv;
                        cap *= 2;
                }
                if (!(v[n++] = strdup(c)))
                        r = -ENOMEM;
                v[n] = NULL;
        }
        if (r < 0) {
                strv_free(v);
                return r;
        }
        *ret = v;
        return 0;
}

int build_path_normalize(const char *path, char **ret)
{
        if (path[0] != '/')
                return -EINVAL;
        cleanup_strv char **c = NULL;
        int r = split_path(path, &c);
        if (r == -EPERM) /* "/.." is "/" */
                r = split_path("/", &c);
        if (r < 0)
                return r;
        size_t len = 1;
        STRV_FOREACH(e, c)
                len += strlen(*e) + 1;
        char *s = calloc(len + 1, 1);
        if (!s)
                return -ENOMEM;
        size_t at = 0;
        STRV_FOREACH(e, c) {
                size_t n = strlen(*e);
                s[at++] = '/';
                memcpy(s + at, *e, n);
                at += n;
        }
        if (at == 0)
                s[at++] = '/';
        s[at] = '\0';
        *ret = s;
        return 0;
}

int build_lower_stat(char *const *lowers, const char *path, struct stat *ret)
{
        cleanup_strv char **c = NULL;
        int r = split_path(path, &c);
        if (r < 0)
                return r;
        for (char *const *l = lowers; l && *l; l++) {
                cleanup_close int fd = open(*l, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                if (fd < 0)
                        continue;
                bool opaque = false;
                struct stat st;
                if (!c[0]) {
                        if (fstat(fd, ret) < 0)
                                return -errno;
                        return 0;
                }
                for (size_t i = 0; c[i]; i++) {
                        if (fstatat(fd, c[i], &st, AT_SYMLINK_NOFOLLOW) < 0)
                                break;
                        if (is_whiteout(&st))
                                return -ENOENT;
                        if (!c[i + 1]) {
                                *ret = st;
                                return 0;
                        }
                        if (!S_ISDIR(st.st_mode))
                                return -ENOENT;
                        int sub = openat(fd, c[i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                        if (sub < 0)
                                break;
                        (void) close(fd);
                        fd = sub;
                        if (is_opaque(fd))
                                opaque = true;
                }
                if (opaque)
                        return -ENOENT;
        }
        return -ENOENT;
}

/* --- COPY ------------------------------------------------------------------ */

typedef struct {
        uid_t uid;
        gid_t gid;
        char *err;
        size_t errlen;
} Copier;

static int copy_node(Copier *c, int sfd, const char *sname, int dfd, const char *dname,
                     unsigned depth);

static int copy_contents(Copier *c, int sfd, int dfd, unsigned depth)
{
        if (depth > DEPTH_MAX)
                return -ELOOP;
        cleanup_strv char **names = NULL;
        int r = list_sorted(sfd, &names);
        STRV_FOREACH(n, names)
                if (r == 0)
                        r = copy_node(c, sfd, *n, dfd, *n, depth + 1);
        return r;
}

static int copy_node(Copier *c, int sfd, const char *sname, int dfd, const char *dname,
                     unsigned depth)
{
        struct stat st;
        if (fstatat(sfd, sname, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return -errno;
        struct stat old;
        if (fstatat(dfd, dname, &old, AT_SYMLINK_NOFOLLOW) == 0 &&
            !(S_ISDIR(old.st_mode) && S_ISDIR(st.st_mode)) &&
            unlinkat(dfd, dname, S_ISDIR(old.st_mode) ? AT_REMOVEDIR : 0) < 0)
                return -errno;
        struct timespec ts[2] = {st.st_atim, st.st_mtim};
        int r = 0;
        if (S_ISDIR(st.st_mode)) {
                if (mkdirat(dfd, dname, 0700) < 0 && errno != EEXIST)
                        return -errno;
                cleanup_close int s =
                        openat(sfd, sname, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                cleanup_close int d =
                        openat(dfd, dname, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (s < 0 || d < 0)
                        return -errno;
                if ((r = copy_contents(c, s, d, depth)) < 0)
                        return r;
                if (fchown(d, c->uid, c->gid) < 0 || fchmod(d, st.st_mode & 07777) < 0 ||
                    futimens(d, ts) < 0)
                        return -errno;
        } else if (S_ISREG(st.st_mode)) {
                cleanup_close int s = openat(sfd, sname, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
                cleanup_close int d = openat(
                        dfd, dname, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
                if (s < 0 || d < 0)
                        return -errno;
                if ((r = copy_fd(s, d)) < 0)
                        return r;
                if (fchown(d, c->uid, c->gid) < 0 || fchmod(d, st.st_mode & 07777) < 0 ||
                    futimens(d, ts) < 0)
                        return -errno;
        } else if (S_ISLNK(st.st_mode)) {
                char target[4096];
                ssize_t k = readlinkat(sfd, sname, target, sizeof(target) - 1);
                if (k < 0)
                        return -errno;
                target[k] = '\0';
                if (symlinkat(target, dfd, dname) < 0 ||
                    fchownat(dfd, dname, c->uid, c->gid, AT_SYMLINK_NOFOLLOW) < 0)
                        return -errno;
        } /* anything else in a context is left out */
        return 0;
}

/* Makes the directories of comps[0..n) below stage_fd, each as the lowers
 * have it (else root 0755), and returns the last one's descriptor. */
static int stage_dirs(int stage_fd, char **comps, size_t n, char *const *lowers, int *ret)
{
        int fd = openat(stage_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        size_t plen = 1;
        for (size_t i = 0; i < n; i++)
                plen += strlen(comps[i]) + 1;
        cleanup_free char *path = calloc(plen + 1, 1);
        if (!path) {
                (void) close(fd);
                return -ENOMEM;
        }
        size_t at = 0;
        for (size_t i = 0; i < n; i++) {
                size_t len = strlen(comps[i]);
                path[at++] = '/';
                memcpy(path + at, comps[i], len);
                at += len;
                path[at] = '\0';
                struct stat st;
                bool made = mkdirat(fd, comps[i], 0755) == 0;
                if (!made && errno != EEXIST) {
                        int r = -errno;
                        (void) close(fd);
                        return r;
                }
                int sub = openat(fd, comps[i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                (void) close(fd);
                if (sub < 0)
                        return -errno;
                fd = sub;
                if (!made)
                        continue;
                if (build_lower_stat(lowers, path, &st) == 0 && S_ISDIR(st.st_mode)) {
                        struct timespec ts[2] = {st.st_atim, st.st_mtim};
                        if (fchown(fd, st.st_uid, st.st_gid) < 0 ||
                            fchmod(fd, st.st_mode & 07777) < 0 || futimens(fd, ts) < 0) {
                                int r = -errno;
                                (void) close(fd);
                                return r;
                        }
                } else if (build_lower_stat(lowers, path, &st) == 0) {
                        (void) close(fd);
                        return -ENOTDIR;
                }
        }
        *ret = fd;
        return 0;
}

int build_copy(int ctx_fd, const char *src, const char *where, int stage_fd, const char *dest,
               bool dest_dir, char *const *lowers, uid_t uid, gid_t gid, char *err, size_t errlen)
{
        cleanup_strv char **sc = NULL, **dc = NULL;
        int r = split_path(src, &sc);
        if (r == -EPERM) {
                (void) snprintf(err, errlen, "COPY source %.200s is outside %s", src, where);
                return r;
        }
        if (r < 0 || (r = split_path(dest, &dc)) < 0)
                return r;
        size_t ns = 0, nd = 0;
        while (sc[ns])
                ns++;
        while (dc[nd])
                nd++;
        /* The source's parent, reached without following a link. */
        cleanup_close int parent = openat(ctx_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (parent < 0)
                return -errno;
        for (size_t i = 0; i + 1 < ns; i++) {
                int fd = openat(parent, sc[i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (fd < 0) {
                        r = -errno;
                        (void) snprintf(
                                err, errlen,
                                r == -ENOENT ? "COPY source %.200s is not in %s"
                                             : "COPY source %.200s goes through a link or a file "
                                               "in %s",
                                src, where);
                        return r == -ENOENT ? r : -EPERM;
                }
                (void) close(parent);
                parent = fd;
        }
        const char *name = ns ? sc[ns - 1] : ".";
        struct stat st;
        if (fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
                r = -errno;
                (void) snprintf(err, errlen, "COPY source %.200s is not in %s", src, where);
                return r;
        }
        Copier c = {.uid = uid, .gid = gid, .err = err, .errlen = errlen};
        cleanup_close int dfd = -1;
        if (S_ISDIR(st.st_mode) || dest_dir) {
                if ((r = stage_dirs(stage_fd, dc, nd, lowers, &dfd)) < 0)
                        goto fail;
                if (S_ISDIR(st.st_mode)) {
                        cleanup_close int s = openat(
                                parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                        r = s < 0 ? -errno : copy_contents(&c, s, dfd, 0);
                } else
                        r = copy_node(&c, parent, name, dfd, name, 0);
        } else {
                if (nd == 0) {
                        (void) snprintf(err, errlen, "COPY of the file %.200s onto /", src);
                        return -EINVAL;
                }
                if ((r = stage_dirs(stage_fd, dc, nd - 1, lowers, &dfd)) < 0)
                        goto fail;
                r = copy_node(&c, parent, name, dfd, dc[nd - 1], 0);
        }
fail:
        if (r < 0 && !*err)
                (void) snprintf(err, errlen, "COPY %.200s to %.200s: %s", src, dest, strerror(-r));
        return r;
}

int build_mkdirs(int stage_fd, const char *path, char *const *lowers)
{
        cleanup_strv char **c = NULL;
        int r = split_path(path, &c);
        if (r < 0)
                return r;
        size_t n = 0;
        while (c[n])
                n++;
        int fd = -1;
        if ((r = stage_dirs(stage_fd, c, n, lowers, &fd)) < 0)
                return r;
        (void) close(fd);
        return 0;
}

/* File operations as the sandbox user (see files.h). */
#include "files.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sandpit/macro.h"
#include "sandpit/util.h"

static void closedirp(DIR **d)
{
        if (*d)
                (void) closedir(*d);
}
#define cleanup_closedir __attribute__((cleanup(closedirp)))

int files_open_read(const FsRoot *r, const char *abspath, int *ret_fd, off_t *ret_size)
{
        FsCred c;
        int k = fscred_enter(r, &c);
        if (k < 0)
                return k;
        /* O_NONBLOCK: a FIFO planted at the path must not block the agent. */
        int fd = fsroot_open_path(r, abspath, O_RDONLY | O_NONBLOCK, 0);
        fscred_leave(&c);
        if (fd < 0)
                return fd;
        struct stat st;
        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
                k = S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL;
                (void) close(fd);
                return k;
        }
        (void) fcntl(fd, F_SETFL, 0);
        *ret_fd = fd;
        *ret_size = st.st_size;
        return 0;
}

/* The whole of in (from its start) into out. */
static int copy_from_start(int out, int in)
{
        return lseek(in, 0, SEEK_SET) < 0 ? -errno : copy_fd(in, out);
}

static int entry_of_fd(const FsRoot *r, const char *abspath, int fd, json_object **ret)
{
        struct stat st;
        if (fstat(fd, &st) < 0)
                return -errno;
        json_object *o = fsroot_entry_json(r, abspath, &st, NULL);
        if (!o)
                return -ENOMEM;
        *ret = o;
        return 0;
}

/* The copy in a child that charge->enter() has moved into the sandbox's memory cgroup before it
 * writes a byte: pages of the sandbox's tmpfs are charged to whoever first writes them, and the
 * agent's cgroup is no sandbox's. The child only reads, writes and exits (async-signal-safe:
 * the agent has threads). */
static int copy_charged(const FilesCharge *charge, int fd, int src_fd, const void *data, size_t len)
{
        int go[2];
        if (pipe2(go, O_CLOEXEC) < 0)
                return -errno;
        pid_t pid = fork();
        if (pid < 0) {
                int e = -errno;
                (void) close(go[0]);
                (void) close(go[1]);
                return e;
        }
        if (pid == 0) {
                char c = 0;
                ssize_t n;
                (void) close(go[1]);
                do
                        n = read(go[0], &c, 1);
                while (n < 0 && errno == EINTR);
                if (n != 1)
                        _exit(ECANCELED);
                int k = src_fd >= 0 ? copy_from_start(fd, src_fd) : write_all(fd, data, len);
                _exit(k < 0 ? -k : 0);
        }
        (void) close(go[0]);
        int r = charge->enter(charge->userdata, pid);
        if (r >= 0 && write(go[1], "g", 1) != 1)
                r = -EIO;
        (void) close(go[1]); /* without the byte, the child exits at once */
        int status = 0;
        while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR)
                        return r < 0 ? r : -errno;
        if (r < 0)
                return r;
        if (WIFSIGNALED(status))
                return -ENOSPC;
        return WEXITSTATUS(status) ? -WEXITSTATUS(status) : 0;
}

static int write_as_user(const FsRoot *r, FsCred *cred, const FilesCharge *charge,
                         const char *abspath, int src_fd, const void *data, size_t len, int mode,
                         json_object **ret_entry)
{
        cleanup_close int pfd = -1;
        const char *name = NULL;
        int k = fsroot_open_parent(r, abspath, true, &pfd, &name);
        if (k < 0)
                return k;
        cleanup_free char *parent = strndup(abspath, (size_t) (name - abspath));
        if (!parent)
                return -ENOMEM;
        /* The file itself is opened through the in-root resolver, so a symlink
         * at the path is followed, but only ever to a file of the sandbox. */
        cleanup_close int fd =
                fsroot_open_path(r, abspath, O_WRONLY | O_CREAT | O_NONBLOCK | O_NOCTTY,
                                 mode >= 0 ? (mode_t) mode : 0644);
        if (fd < 0)
                return fd;
        struct stat st;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode))
                return -EINVAL;
        (void) fcntl(fd, F_SETFL, 0);
        if (ftruncate(fd, 0) < 0)
                return -errno;
        if (charge) {
                /* Moving a process between cgroups takes the agent's own credentials; the
                 * file is open already, and writing to it checks nothing more. */
                fscred_leave(cred);
                k = copy_charged(charge, fd, src_fd, data, len);
                int e = fscred_enter(r, cred);
                if (k >= 0 && e < 0)
                        k = e;
        } else
                k = src_fd >= 0 ? copy_from_start(fd, src_fd) : write_all(fd, data, len);
        if (k < 0)
                return k;
        if (mode >= 0 && fchmod(fd, (mode_t) mode) < 0)
                return -errno;
        return entry_of_fd(r, abspath, fd, ret_entry);
}

int files_write(const FsRoot *r, const FilesCharge *charge, const char *abspath, int src_fd,
                const void *data, size_t len, int mode, json_object **ret_entry)
{
        FsCred c;
        int k = fscred_enter(r, &c);
        if (k < 0)
                return k;
        k = write_as_user(r, &c, charge, abspath, src_fd, data, len, mode, ret_entry);
        fscred_leave(&c);
        return k;
}

int files_stat(const FsRoot *r, const char *abspath, json_object **ret_entry)
{
        FsCred c;
        int k = fscred_enter(r, &c);
        if (k < 0)
                return k;
        k = fsroot_stat_json(r, abspath, ret_entry);
        fscred_leave(&c);
        return k;
}

static int join(const char *dir, const char *name, char **ret)
{
        return asprintf(ret, "%s/%s", streq(dir, "/") ? "" : dir, name) < 0 ? -ENOMEM : 0;
}

static int list_dir(const FsRoot *r, int dfd, const char *dirpath, unsigned depth, json_object *arr)
{
        int fd = dup(dfd);
        if (fd < 0)
                return -errno;
        cleanup_closedir DIR *d = fdopendir(fd);
        if (!d) {
                (void) close(fd);
                return -errno;
        }
        struct dirent *de;
        while ((errno = 0, de = readdir(d))) {
                if (streq(de->d_name, ".") || streq(de->d_name, ".."))
                        continue;
                if (json_object_array_length(arr) >= FILES_LIST_MAX)
                        return -EFBIG;
                struct stat st;
                if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                        continue; /* gone meanwhile */
                cleanup_free char *path = NULL;
                if (join(dirpath, de->d_name, &path) < 0)
                        return -ENOMEM;
                char target[4097];
                ssize_t n = S_ISLNK(st.st_mode)
                                    ? readlinkat(dirfd(d), de->d_name, target, sizeof(target) - 1)
                                    : -1;
                if (n >= 0)
                        target[n] = '\0';
                json_object *e = fsroot_entry_json(r, path, &st, n >= 0 ? target : NULL);
                if (!e || json_object_array_add(arr, e) < 0) {
                        json_object_put(e);
                        return -ENOMEM;
                }
                if (S_ISDIR(st.st_mode) && depth > 1) {
                        cleanup_close int cfd =
                                fsroot_open_child(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY, 0);
                        if (cfd < 0)
                                continue; /* unreadable subdirectory: listed, not descended */
                        int k = list_dir(r, cfd, path, depth - 1, arr);
                        if (k < 0)
                                return k;
                }
        }
        return errno ? -errno : 0;
}

int files_list(const FsRoot *r, const char *abspath, unsigned depth, json_object **ret_array)
{
        if (depth < 1 || depth > FILES_DEPTH_MAX)
                return -EINVAL;
        FsCred c;
        int k = fscred_enter(r, &c);
        if (k < 0)
                return k;
        int fd = fsroot_open_path(r, abspath, O_RDONLY | O_DIRECTORY, 0);
        json_object *arr = json_object_new_array();
        if (fd < 0)
                k = fd;
        else if (!arr)
                k = -ENOMEM;
        else
                k = list_dir(r, fd, abspath, depth, arr);
        if (fd >= 0)
                (void) close(fd);
        fscred_leave(&c);
        if (k < 0) {
                json_object_put(arr);
                return k;
        }
        *ret_array = arr;
        return 0;
}

int files_mkdir(const FsRoot *r, const char *abspath, bool parents, json_object **ret_entry)
{
        FsCred c;
        int k = fscred_enter(r, &c);
        if (k < 0)
                return k;
        cleanup_close int pfd = -1;
        const char *name = NULL;
        k = fsroot_open_parent(r, abspath, parents, &pfd, &name);
        if (k == 0 && mkdirat(pfd, name, 0755) < 0)
                k = -errno;
        if (k == 0)
                k = fsroot_stat_json(r, abspath, ret_entry);
        fscred_leave(&c);
        return k;
}

static int remove_tree(int pfd, const char *name, unsigned level)
{
        struct stat st;
        if (fstatat(pfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return -errno;
        if (!S_ISDIR(st.st_mode))
                return unlinkat(pfd, name, 0) < 0 ? -errno : 0;
        if (level > 256)
                return -ELOOP;
        int fd = fsroot_open_child(pfd, name, O_RDONLY | O_DIRECTORY, 0);
        if (fd < 0)
                return fd;
        cleanup_closedir DIR *d = fdopendir(fd);
        if (!d) {
                (void) close(fd);
                return -errno;
        }
        struct dirent *de;
        while ((errno = 0, de = readdir(d))) {
                if (streq(de->d_name, ".") || streq(de->d_name, ".."))
                        continue;
                int k = remove_tree(dirfd(d), de->d_name, level + 1);
                if (k < 0 && k != -ENOENT)
                        return k;
        }
        if (errno)
                return -errno;
        return unlinkat(pfd, name, AT_REMOVEDIR) < 0 ? -errno : 0;
}

int files_remove(const FsRoot *r, const char *abspath, bool recursive)
{
        FsCred c;
        int k = fscred_enter(r, &c);
        if (k < 0)
                return k;
        cleanup_close int pfd = -1;
        const char *name = NULL;
        k = fsroot_open_parent(r, abspath, false, &pfd, &name);
        if (k == 0) {
                struct stat st;
                if (fstatat(pfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                        k = -errno;
                else if (recursive)
                        k = remove_tree(pfd, name, 0);
                else if (unlinkat(pfd, name, S_ISDIR(st.st_mode) ? AT_REMOVEDIR : 0) < 0)
                        k = errno == EEXIST ? -ENOTEMPTY : -errno;
        }
        fscred_leave(&c);
        return k;
}

int files_move(const FsRoot *r, const char *src, const char *dst, bool overwrite,
               json_object **ret_entry)
{
        FsCred c;
        int k = fscred_enter(r, &c);
        if (k < 0)
                return k;
        cleanup_close int sfd = -1, dfd = -1;
        const char *sname = NULL, *dname = NULL;
        k = fsroot_open_parent(r, src, false, &sfd, &sname);
        if (k == 0)
                k = fsroot_open_parent(r, dst, true, &dfd, &dname);
        if (k == 0 && renameat2(sfd, sname, dfd, dname, overwrite ? 0 : RENAME_NOREPLACE) < 0)
                k = -errno;
        if (k == 0)
                k = fsroot_stat_json(r, dst, ret_entry);
        fscred_leave(&c);
        return k;
}

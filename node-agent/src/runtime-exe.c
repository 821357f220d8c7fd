#include "runtime-exe.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sandpit/log.h"
#include "sandpit/macro.h"
#include "sandpit/util.h"

extern char **environ;

#ifndef MFD_EXEC
#        define MFD_EXEC 0x0010U /* linux 6.3: executable even under vm.memfd_noexec=1 */
#endif
/* The copy's fd is at least this: the runtime's child gets fds 0 to 4 set up
 * before it executes /proc/self/fd/N (runtime.c), which must not be one of
 * them. */
#define FD_MIN 16
/* What runc requires of a copy it may run from without copying again. */
#define SEALS (F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE)

struct RuntimeExe {
        pthread_rwlock_t lock; /* readers: execs in flight; writer: a new copy */
        char *binary;          /* as given */
        char *path;            /* the file copied */
        struct stat st;        /* of path, when copied */
        int fd;
        char fd_path[32];
};

/* binary as exec would find it: a path, or a name looked up in $PATH. */
static int resolve(const char *binary, char **ret)
{
        if (strchr(binary, '/'))
                return (*ret = strdup(binary)) ? 0 : -ENOMEM;
        const char *path =
                getenv("PATH") ?: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
        for (const char *p = path; *p;) {
                size_t n = strcspn(p, ":");
                char *full = NULL;
                if (n > 0 && asprintf(&full, "%.*s/%s", (int) n, p, binary) >= 0) {
                        if (access(full, X_OK) == 0) {
                                *ret = full;
                                return 0;
                        }
                        free(full);
                }
                p += n + (p[n] == ':');
        }
        return -ENOENT;
}

static bool same_file(const struct stat *a, const struct stat *b)
{
        return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
               a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

/* `fd_path --version`, its output dropped: whether the copy runs at all. */
static int trial_run(const char *fd_path, const char *binary)
{
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        (void) posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
        (void) posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
        (void) posix_spawn_file_actions_adddup2(&fa, 1, 2);
        char *argv[] = {(char *) binary, "--version", NULL};
        pid_t pid;
        int r = posix_spawn(&pid, fd_path, &fa, NULL, argv, environ);
        posix_spawn_file_actions_destroy(&fa);
        if (r != 0)
                return -r;
        int status;
        while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR)
                        return -errno;
        return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -ENOEXEC;
}

/* A sealed memfd holding path's current content; its stat in *ret_st. */
static int make_copy(const char *path, const char *binary, struct stat *ret_st, int *ret_fd)
{
        cleanup_close int in = open(path, O_RDONLY | O_CLOEXEC);
        if (in < 0)
                return negative_errno();
        char magic[4];
        if (fstat(in, ret_st) < 0)
                return negative_errno();
        if (!S_ISREG(ret_st->st_mode) || pread(in, magic, 4, 0) != 4 ||
            memcmp(magic, "\177ELF", 4) != 0)
                return -ENOEXEC;
        cleanup_close int fd =
                memfd_create("sandpit-runtime", MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_EXEC);
        if (fd < 0 && errno == EINVAL) /* a kernel before MFD_EXEC */
                fd = memfd_create("sandpit-runtime", MFD_CLOEXEC | MFD_ALLOW_SEALING);
        if (fd < 0)
                return negative_errno();
        if (fd < FD_MIN) {
                int high = fcntl(fd, F_DUPFD_CLOEXEC, FD_MIN);
                if (high < 0)
                        return negative_errno();
                (void) close(fd);
                fd = high;
        }
        int r = copy_fd(in, fd);
        if (r < 0)
                return r;
        struct stat st;
        if (fstat(fd, &st) < 0)
                return negative_errno();
        if (st.st_size != ret_st->st_size)
                return -EIO; /* changed while we copied: the next use tries again */
        if (fchmod(fd, 0500) < 0 || fcntl(fd, F_ADD_SEALS, SEALS) < 0 ||
            fcntl(fd, F_GET_SEALS) != SEALS)
                return negative_errno();
        char fd_path[32];
        (void) snprintf(fd_path, sizeof(fd_path), "/proc/self/fd/%d", fd);
        if ((r = trial_run(fd_path, binary)) < 0)
                return r;
        *ret_fd = TAKE_FD(fd);
        return 0;
}

int runtime_exe_new(const char *binary, RuntimeExe **ret)
{
        RuntimeExe *e = calloc(1, sizeof(*e));
        if (!e)
                return -ENOMEM;
        e->fd = -1;
        int r = -ENOMEM;
        if (!(e->binary = strdup(binary)) || (r = resolve(binary, &e->path)) < 0 ||
            (r = make_copy(e->path, binary, &e->st, &e->fd)) < 0) {
                free(e->path);
                free(e->binary);
                free(e);
                return r;
        }
        (void) snprintf(e->fd_path, sizeof(e->fd_path), "/proc/self/fd/%d", e->fd);
        (void) pthread_rwlock_init(&e->lock, NULL);
        *ret = e;
        return 0;
}

void runtime_exe_free(RuntimeExe *e)
{
        if (!e)
                return;
        (void) pthread_rwlock_destroy(&e->lock);
        closep(&e->fd);
        free(e->path);
        free(e->binary);
        free(e);
}

const char *runtime_exe_binary(const RuntimeExe *e)
{
        return e->binary;
}

const char *runtime_exe_acquire(RuntimeExe *e)
{
        struct stat st;
        (void) pthread_rwlock_rdlock(&e->lock);
        if (stat(e->path, &st) < 0 || same_file(&st, &e->st))
                return e->fd_path; /* gone for a moment (mid-upgrade): the copy we have */
        (void) pthread_rwlock_unlock(&e->lock);
        (void) pthread_rwlock_wrlock(&e->lock);
        int fd = -1;
        int r = stat(e->path, &st) < 0 || same_file(&st, &e->st)
                        ? 0 /* another thread made the new copy */
                        : make_copy(e->path, e->binary, &st, &fd);
        if (r < 0) {
                log_warning_errno(r, "%s changed; cannot copy it again, running the old copy",
                                  e->path);
                e->st = st; /* not again at every exec; at its next change */
        } else if (fd >= 0) {
                log_info("%s changed: running the new binary from now on", e->path);
                closep(&e->fd);
                e->fd = fd;
                e->st = st;
                (void) snprintf(e->fd_path, sizeof(e->fd_path), "/proc/self/fd/%d", e->fd);
        }
        (void) pthread_rwlock_unlock(&e->lock);
        return runtime_exe_acquire(e);
}

void runtime_exe_release(RuntimeExe *e)
{
        (void) pthread_rwlock_unlock(&e->lock);
}

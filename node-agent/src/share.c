#include "share.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sandpit/log.h"
#include "sandpit/macro.h"
#include "sandpit/util.h"

#define SHARE_DIR    "share"
#define INIT_NAME    "sandpit-init"
#define KERNELS_NAME "kernels"
#define MAX_DEPTH    4 /* kernels/<lang>/<files>: deeper is not a kernels dir */

struct Share {
        char *dir; /* <state>/share, the tmpfs */
        bool mounted;
        char *init_path;
        char *kernels_path;
};

/* Copies the regular file at src (opened) into dirfd/name with mode. */
static int copy_file(int src, int dirfd, const char *name, mode_t mode)
{
        cleanup_close int dst =
                openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
        return dst < 0 ? -errno : copy_fd(src, dst);
}

/* The files and directories under src into dirfd/name (made), modes kept
 * (the tree is read-only once made). Anything else (links, devices) is left
 * out: a kernels dir holds scripts. */
static int copy_tree(int src_dir, int dirfd, const char *name, int depth)
{
        if (depth > MAX_DEPTH)
                return -ELOOP;
        if (mkdirat(dirfd, name, 0755) < 0)
                return -errno;
        cleanup_close int dst = openat(dirfd, name, O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (dst < 0)
                return -errno;
        int dup_fd = fcntl(src_dir, F_DUPFD_CLOEXEC, 3);
        if (dup_fd < 0)
                return -errno;
        DIR *d = fdopendir(dup_fd);
        if (!d) {
                int r = -errno;
                (void) close(dup_fd);
                return r;
        }
        int r = 0;
        struct dirent *de;
        while (r == 0 && (de = readdir(d))) {
                if (streq(de->d_name, ".") || streq(de->d_name, ".."))
                        continue;
                cleanup_close int fd =
                        openat(src_dir, de->d_name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
                struct stat st;
                if (fd < 0 || fstat(fd, &st) < 0) {
                        r = errno == ELOOP ? 0 : -errno; /* a symlink: left out */
                        continue;
                }
                if (S_ISREG(st.st_mode))
                        r = copy_file(fd, dst, de->d_name, st.st_mode & 0755);
                else if (S_ISDIR(st.st_mode))
                        r = copy_tree(fd, dst, de->d_name, depth + 1);
        }
        (void) closedir(d);
        return r;
}

int share_new(const char *state_dir, const char *init_path, const char *kernels_dir, Share **ret)
{
        Share *s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        int r = 0;
        cleanup_close int init = -1, kd = -1, root = -1;
        if (asprintf(&s->dir, "%s/" SHARE_DIR, state_dir) < 0) {
                s->dir = NULL;
                r = -ENOMEM;
                goto fail;
        }
        /* A previous agent's (SIGKILLed): its sandboxes keep their binds. */
        while (umount2(s->dir, MNT_DETACH | UMOUNT_NOFOLLOW) == 0)
                ;
        if ((r = mkdir_p(s->dir, 0755)) < 0) {
                r = log_error_errno(r, "cannot create %s", s->dir);
                goto fail;
        }
        /* Not noexec: a user-namespaced sandbox's bind of init could not
         * clear a flag locked from the host's mount. */
        if (mount("sandpit-share", s->dir, "tmpfs", MS_NODEV | MS_NOSUID, "size=256m,mode=0755") <
            0) {
                r = log_error_errno(-errno, "cannot mount the tmpfs for sandpit-init at %s",
                                    s->dir);
                goto fail;
        }
        s->mounted = true;
        root = open(s->dir, O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        init = open(init_path, O_RDONLY | O_CLOEXEC);
        if (root < 0 || init < 0 || (r = copy_file(init, root, INIT_NAME, 0755)) < 0) {
                r = log_error_errno(root < 0 || init < 0 ? -errno : r, "cannot copy %s", init_path);
                goto fail;
        }
        if (kernels_dir) {
                kd = open(kernels_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                if (kd < 0 || (r = copy_tree(kd, root, KERNELS_NAME, 0)) < 0) {
                        r = log_error_errno(kd < 0 ? -errno : r, "cannot copy %s", kernels_dir);
                        goto fail;
                }
        }
        if (mount(NULL, s->dir, NULL, MS_REMOUNT | MS_RDONLY | MS_NODEV | MS_NOSUID,
                  "size=256m,mode=0755") < 0) {
                r = log_error_errno(-errno, "cannot make %s read-only", s->dir);
                goto fail;
        }
        if (asprintf(&s->init_path, "%s/" INIT_NAME, s->dir) < 0 ||
            (kernels_dir && asprintf(&s->kernels_path, "%s/" KERNELS_NAME, s->dir) < 0)) {
                r = -ENOMEM;
                goto fail;
        }
        *ret = s;
        return 0;
fail:
        share_free(s);
        return r;
}

void share_free(Share *s)
{
        if (!s)
                return;
        /* Detached: the sandboxes that bound from it keep their copies. */
        if (s->mounted)
                (void) umount2(s->dir, MNT_DETACH | UMOUNT_NOFOLLOW);
        free(s->dir);
        free(s->init_path);
        free(s->kernels_path);
        free(s);
}

const char *share_init_path(const Share *s)
{
        return s->init_path;
}

const char *share_kernels_path(const Share *s)
{
        return s->kernels_path;
}

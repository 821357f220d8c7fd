#include "rootfs.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "code.h"
#include "sandpit/log.h"
#include "sandpit/macro.h"
#include "userns.h"

/* The disk's inode budget: one inode per 2 KiB of its size (at least 4096).
 * Empty files, directories and short symlinks take no blocks on tmpfs, so
 * without a budget the kernel's default (half the host's RAM pages) lets a
 * 16 MiB sandbox create millions of them, each about a KiB of kernel memory.
 * Every non-empty file takes a 4 KiB page anyway, so the budget never limits a
 * disk filled with real files. */
#define DISK_BYTES_PER_INODE 2048
#define DISK_MIN_INODES      4096

static int umount_one(const char *path)
{
        if (umount2(path, UMOUNT_NOFOLLOW) == 0)
                return 0;
        if (errno == EINVAL || errno == ENOENT)
                return 0; /* not a mount point (any more) */
        if (errno == EBUSY && umount2(path, MNT_DETACH | UMOUNT_NOFOLLOW) == 0)
                return 0;
        return -errno;
}

static int open_dir(const char *path)
{
        int fd = open(path, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        return fd < 0 ? -errno : fd;
}

/* Closes the lower layers' fds. */
static void close_fds(int *fds, size_t n)
{
        for (size_t i = 0; i < n; i++)
                closep(&fds[i]);
}

/* A lower layer: its directory, or with a user namespace an idmapped clone of
 * it, so that its files show as the sandbox's ids (k as host_id + k) without
 * being changed; the template is shared by every sandbox. */
static int open_lower(const char *path, const RootfsIdmap *idmap)
{
        if (!idmap)
                return open_dir(path);
        int fd = -1;
        int r = userns_idmapped_tree(path, idmap->userns_fd, &fd);
        return r < 0 ? r : fd;
}

/* mkdir, then the owner and mode (the umask and the creator's ids aside). */
static int make_dir(const char *path, unsigned mode, uint32_t owner)
{
        if (mkdir(path, 0700) < 0 || chown(path, owner, owner) < 0 || chmod(path, mode) < 0)
                return -errno;
        return 0;
}

int rootfs_mount(const char *dir, char **lowers, uint64_t size, const RootfsIdmap *idmap)
{
        uint32_t owner = idmap ? idmap->host_id : 0;
        char ctl[4096], code[4096], init[4096], disk[4096], upper[4096], work[4096], root[4096];
        char opts[4096]; /* a page: the kernel's bound on mount options */
        int lfds[ROOTFS_LOWERS_MAX];
        size_t nl = 0;
        cleanup_close int ufd = -1, wfd = -1;
        (void) snprintf(ctl, sizeof(ctl), "%s/" ROOTFS_CTL_DIR, dir);
        (void) snprintf(code, sizeof(code), "%s/" ROOTFS_CODE_DIR, dir);
        (void) snprintf(init, sizeof(init), "%s/" ROOTFS_CTL_DIR "/init", dir);
        (void) snprintf(disk, sizeof(disk), "%s/disk", dir);
        (void) snprintf(upper, sizeof(upper), "%s/disk/upper", dir);
        (void) snprintf(work, sizeof(work), "%s/disk/work", dir);
        (void) snprintf(root, sizeof(root), "%s/rootfs", dir);

        int fd, r = 0;
        if ((mkdir(disk, 0700) < 0 && errno != EEXIST) ||
            (mkdir(root, 0755) < 0 && errno != EEXIST)) {
                r = -errno;
                goto fail;
        }
        uint64_t inodes = size / DISK_BYTES_PER_INODE;
        if (inodes < DISK_MIN_INODES)
                inodes = DISK_MIN_INODES;
        (void) snprintf(opts, sizeof(opts), "size=%llu,nr_inodes=%llu,mode=0755",
                        (unsigned long long) size, (unsigned long long) inodes);
        if (mount("sandpit-disk", disk, "tmpfs", MS_NOSUID | MS_NODEV, opts) < 0) {
                r = -errno;
                goto fail;
        }
        if (mkdir(upper, 0755) < 0 || mkdir(work, 0700) < 0) {
                r = -errno;
                goto fail;
        }
        /* ctl is owned by the sandbox's root (with a user namespace), who must
         * reach the init binary in it; read-only inside all the same. code is
         * 0755: the sandbox's user reaches the kernels' sockets through its
         * bind. Both beside the overlay's layers, out of the sandbox's reach
         * but for those read-only binds. */
        if ((r = make_dir(ctl, 0700, owner)) < 0 || (r = make_dir(code, 0755, 0)) < 0)
                goto fail;
        /* Mount point for the read-only bind of the init binary. */
        fd = open(init, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0500);
        if (fd < 0) {
                r = -errno;
                goto fail;
        }
        (void) close(fd);
        /* The upper layer is the sandbox's own and holds host ids (the lower
         * layers' show shifted through their idmapped mounts, and a copy-up
         * keeps what it saw), so only its root, the sandbox's "/", needs an
         * owner: the sandbox's root. The overlay itself cannot be idmapped
         * (overlayfs refuses MOUNT_ATTR_IDMAP), nor can its upper layer (the
         * kernel makes the work dir with the mounter's ids, which an idmapped
         * mount cannot store). */
        if (idmap && chown(upper, idmap->host_id, idmap->host_id) < 0) {
                r = -errno;
                goto fail;
        }
        /* The layers by fd: the options are what the sandbox reads in its
         * mountinfo, and they should not name host paths (nor can a ',' or ':'
         * in a path be misread as a separator). */
        size_t len = (size_t) snprintf(opts, sizeof(opts), "lowerdir=");
        for (r = 0; r == 0 && lowers[nl]; nl++) {
                if (nl == ROOTFS_LOWERS_MAX) {
                        r = -E2BIG;
                        break;
                }
                lfds[nl] = open_lower(lowers[nl], idmap);
                if (lfds[nl] < 0) {
                        r = lfds[nl];
                        break;
                }
                len += (size_t) snprintf(opts + len, sizeof(opts) - len, "%s/proc/self/fd/%d",
                                         nl ? ":" : "", lfds[nl]);
        }
        if (r < 0 || nl == 0)
                goto fail;
        ufd = open_dir(upper);
        wfd = open_dir(work);
        if (ufd < 0 || wfd < 0) {
                r = ufd < 0 ? ufd : wfd;
                goto fail;
        }
        len += (size_t) snprintf(opts + len, sizeof(opts) - len,
                                 ",upperdir=/proc/self/fd/%d,workdir=/proc/self/fd/%d", ufd, wfd);
        if (len >= sizeof(opts)) {
                r = -E2BIG;
                goto fail;
        }
        if (mount("sandpit-root", root, "overlay", MS_NODEV, opts) < 0) {
                r = -errno;
                goto fail;
        }
        for (size_t i = 0; idmap && idmap->dropper && i < nl; i++)
                userns_spares_drop(idmap->dropper, TAKE_FD(lfds[i]));
        close_fds(lfds, nl);
        return 0;
fail:
        close_fds(lfds, nl);
        (void) rootfs_umount(dir);
        return r == 0 ? -EINVAL : r;
}

int rootfs_ctl_path(const char *dir, const char *name, char **ret)
{
        char ctl[4096];
        struct stat st;
        (void) snprintf(ctl, sizeof(ctl), "%s/" ROOTFS_CTL_DIR, dir);
        bool now = lstat(ctl, &st) == 0 && S_ISDIR(st.st_mode);
        return asprintf(ret, "%s/%s/%s", dir, now ? ROOTFS_CTL_DIR : "ctl", name) < 0 ? -ENOMEM : 0;
}

int rootfs_umount(const char *dir)
{
        /* ctl and code: mount points in sandboxes made by older agents. */
        static const char *const names[] = {"rootfs", "disk", "ctl", CODE_DIR_NAME,
                                            ROOTFS_USERNS_NAME};
        int ret = 0;
        for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
                char path[4096];
                (void) snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
                int r = umount_one(path);
                if (r < 0) {
                        log_debug_errno(r, "umount %s", path);
                        if (ret == 0)
                                ret = r;
                }
        }
        return ret;
}

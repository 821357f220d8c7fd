#include "rootfs.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include "sandpit/log.h"
#include "sandpit/macro.h"

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

int rootfs_mount(const char *dir, const char *lower, uint64_t size)
{
        char disk[4096], upper[4096], work[4096], root[4096], opts[3 * 4096 + 64];
        (void) snprintf(disk, sizeof(disk), "%s/disk", dir);
        (void) snprintf(upper, sizeof(upper), "%s/disk/upper", dir);
        (void) snprintf(work, sizeof(work), "%s/disk/work", dir);
        (void) snprintf(root, sizeof(root), "%s/rootfs", dir);
        if (strchr(lower, ',') || strchr(lower, ':') || strchr(dir, ',') || strchr(dir, ':'))
                return -EINVAL; /* would be misread as overlay option separators */

        if (mkdir(disk, 0700) < 0 && errno != EEXIST)
                return -errno;
        if (mkdir(root, 0755) < 0 && errno != EEXIST)
                return -errno;
        (void) snprintf(opts, sizeof(opts), "size=%llu,mode=0755", (unsigned long long) size);
        if (mount("sandpit-disk", disk, "tmpfs", MS_NOSUID | MS_NODEV, opts) < 0)
                return -errno;
        int r = 0;
        if (mkdir(upper, 0755) < 0 || mkdir(work, 0700) < 0) {
                r = -errno;
                goto fail;
        }
        (void) snprintf(opts, sizeof(opts), "lowerdir=%s,upperdir=%s,workdir=%s", lower, upper,
                        work);
        if (mount("sandpit-root", root, "overlay", MS_NODEV, opts) < 0) {
                r = -errno;
                goto fail;
        }
        return 0;
fail:
        (void) umount_one(disk);
        return r;
}

int rootfs_umount(const char *dir)
{
        char path[4096];
        (void) snprintf(path, sizeof(path), "%s/rootfs", dir);
        int r = umount_one(path);
        if (r < 0)
                log_debug_errno(r, "umount %s", path);
        (void) snprintf(path, sizeof(path), "%s/disk", dir);
        int k = umount_one(path);
        if (k < 0)
                log_debug_errno(k, "umount %s", path);
        return r < 0 ? r : k;
}

/* A sandbox's root filesystem: a tmpfs capped at the disk size holding the
 * overlay's upper and work dirs, and an overlay with the template below. */
#pragma once

#include <stdint.h>

/* Mounts <dir>/disk (tmpfs, size bytes) and <dir>/rootfs (overlay over
 * lower). On failure nothing stays mounted. */
int rootfs_mount(const char *dir, const char *lower, uint64_t size);
/* Unmounts both; not mounted is fine. */
int rootfs_umount(const char *dir);

/* A sandbox's filesystems: a tmpfs capped at the disk size holding the
 * overlay's upper and work dirs, an overlay with the template below, and two
 * small tmpfs the sandbox sees read-only (the control dir <dir>/ctl and the code
 * interpreter's <dir>/code). Nothing the sandbox can write is on the host's
 * disk, and no host path shows in the sandbox's mountinfo. */
#pragma once

#include <stdint.h>

#define ROOTFS_LOWERS_MAX 128 /* as OCI_LAYERS_MAX: /proc/self/fd/N each fits a page */
/* <dir>/userns: the sandbox's user namespace, pinned (userns.h); unmounted by
 * rootfs_umount() with the rest. */
#define ROOTFS_USERNS_NAME "userns"

typedef struct {
        int userns_fd;    /* a user namespace with the sandbox's mapping (userns_open()) */
        uint32_t host_id; /* the host id of the sandbox's root */
        /* Closes the lower layers' idmapped clones once the overlay holds them
         * (NULL: here): each close dissolves a detached mount, which waits for
         * an RCU grace period (userns_spares_drop()). */
        struct UsernsSpares *dropper;
} RootfsIdmap;

/* Mounts <dir>/ctl and <dir>/code (with the init binary's mount point
 * ctl/init), <dir>/disk (tmpfs, size bytes) and <dir>/rootfs (overlay over
 * lowers, a strv with the top layer first). With idmap (NULL: none) the lower
 * layers are idmapped so the sandbox's files show as its mapped host ids, and
 * the rootfs' "/" and ctl belong to its root. On failure nothing stays mounted. */
int rootfs_mount(const char *dir, char **lowers, uint64_t size, const RootfsIdmap *idmap);
/* Unmounts them all; not mounted is fine. */
int rootfs_umount(const char *dir);

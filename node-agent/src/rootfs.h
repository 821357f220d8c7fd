/* A sandbox's filesystems, two mounts on the node: a tmpfs capped at the disk
 * size holding the overlay's upper and work dirs and the two dirs the sandbox
 * sees read-only (the control dir and the code interpreter's sockets), and an
 * overlay with the template below. Nothing the sandbox can write is on the
 * host's disk, and no host path shows in the sandbox's mountinfo (a bind of a
 * dir in that tmpfs shows as "/ctl" of it). Every mount of the node's table
 * costs each later create: runc and every new mount namespace read or copy
 * the whole table (docs/performance.md#density). */
#pragma once

#include <stdint.h>

#define ROOTFS_LOWERS_MAX 128 /* as OCI_LAYERS_MAX: /proc/self/fd/N each fits a page */
/* <dir>/userns: where agents before the fd path (userns.h) pinned the
 * sandbox's user namespace; rootfs_umount() unmounts such a pin with the rest. */
#define ROOTFS_USERNS_NAME "userns"
/* The control dir and the code dir, relative to the sandbox's dir. Agents
 * before this layout mounted a small tmpfs at <dir>/ctl and one at <dir>/code
 * (rootfs_umount() unmounts those too); rootfs_ctl_path() finds either. */
#define ROOTFS_CTL_DIR  "disk/ctl"
#define ROOTFS_CODE_DIR "disk/code"

typedef struct {
        int userns_fd;    /* a user namespace with the sandbox's mapping (userns_open()) */
        uint32_t host_id; /* the host id of the sandbox's root */
        /* Closes the lower layers' idmapped clones once the overlay holds them
         * (NULL: here): each close dissolves a detached mount, which waits for
         * an RCU grace period (userns_spares_drop()). */
        struct UsernsSpares *dropper;
} RootfsIdmap;

/* Mounts <dir>/disk (tmpfs, size bytes) with ROOTFS_CTL_DIR (and in it the
 * init binary's mount point "init") and ROOTFS_CODE_DIR, and <dir>/rootfs
 * (overlay over lowers, a strv with the top layer first). With idmap (NULL: none) the lower
 * layers are idmapped so the sandbox's files show as its mapped host ids, and
 * the rootfs' "/" and ctl belong to its root. On failure nothing stays mounted. */
int rootfs_mount(const char *dir, char **lowers, uint64_t size, const RootfsIdmap *idmap);
/* <ctl dir>/name in *ret (malloc'd): in ROOTFS_CTL_DIR, or in <dir>/ctl for a
 * sandbox an older agent made. The code dir is the control dir's sibling
 * "code" in both layouts. No symlink on the way: the agent opens these paths
 * refusing symlinks (init-client.c). */
int rootfs_ctl_path(const char *dir, const char *name, char **ret);
/* Unmounts them all; not mounted is fine. */
int rootfs_umount(const char *dir);

/* Path-safe access to a sandbox's root filesystem from the host (docs/files.md).
 *
 * Every path is resolved by openat2(2) below an O_PATH fd of the sandbox's
 * merged overlay with RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV:
 * ".." stops at the sandbox's "/", absolute symlinks are read relative to it,
 * and no component may leave the overlay mount, so nothing a sandbox plants
 * reaches a host file. Operations run with this thread's filesystem identity
 * switched to the sandbox user (fscred_enter), so the kernel checks permissions
 * and new files belong to that user. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <json-c/json.h>

typedef struct {
        uid_t id;
        char *name;
} FsName;

typedef struct {
        int root_fd;  /* O_PATH | O_DIRECTORY of the merged rootfs */
        char *rootfs; /* its host path */
        uid_t uid;
        gid_t gid;
        /* With a user namespace (userns.h), the host id of the sandbox's uid and
         * gid 0: uid k in the sandbox is host id id_shift + k. 0: none. */
        uid_t id_shift;
        char *home;             /* in the sandbox; relative paths start here */
        FsName *users, *groups; /* from the sandbox's /etc/passwd and /etc/group */
        size_t n_users, n_groups;
} FsRoot;

/* Opens rootfs_path and resolves user (a name or a numeric uid) from the
 * sandbox's own /etc/passwd, read through the safe resolver. -ENOENT for an
 * unknown user name. */
int fsroot_open(const char *rootfs_path, const char *user, FsRoot *ret);
void fsroot_done(FsRoot *r);

/* This thread's filesystem identity while an operation runs as the user:
 * setfsuid/setfsgid and an empty supplementary group list, all per thread
 * (raw syscalls). Dropping fsuid from 0 also clears the thread's filesystem
 * capabilities; fscred_leave() restores everything. No-op for uid 0 without a
 * user namespace; with one, the sandbox's root is its mapped host id with the
 * filesystem capabilities raised again, as root inside has them over its own
 * files. */
typedef struct {
        bool active;
        int n_groups;
        gid_t groups[64];
} FsCred;
int fscred_enter(const FsRoot *r, FsCred *ret);
void fscred_leave(FsCred *c);

/* The normalized absolute in-sandbox path of p ("." and ".." resolved
 * lexically, relative to the user's home). -EINVAL for an empty path or one
 * with a NUL. */
int fsroot_abspath(const FsRoot *r, const char *p, char **ret);

/* openat2() of an absolute in-sandbox path below the root (see above). */
int fsroot_open_path(const FsRoot *r, const char *abspath, int flags, mode_t mode);
/* openat2() of one directory entry name below dirfd: no symlinks at all, no
 * "..", no mount crossing. For walking trees. */
int fsroot_open_child(int dirfd, const char *name, int flags, mode_t mode);
/* Opens the parent directory of abspath (O_PATH) and returns the last
 * component; with create_parents, missing parents are made (mode 0755).
 * -EINVAL for "/". */
int fsroot_open_parent(const FsRoot *r, const char *abspath, bool create_parents, int *ret_dirfd,
                       const char **ret_name);

/* "file", "dir", "symlink" or "other". */
const char *fsroot_type_name(mode_t mode);
/* An entry as the API shows it: name, type, path, size, mode, permissions,
 * owner, group, uid, gid, modified_time, symlink_target. */
json_object *fsroot_entry_json(const FsRoot *r, const char *abspath, const struct stat *st,
                               const char *symlink_target);
/* lstat of abspath; the entry JSON in *ret. */
int fsroot_stat_json(const FsRoot *r, const char *abspath, json_object **ret);

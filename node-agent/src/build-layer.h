/* The builder's file work (docs/build.md): a directory tree packed into a
 * layer tar, and COPY's files staged from the build context. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

/* Writes the tree below dir_fd as an uncompressed tar into out_fd, entries
 * sorted by name. Overlayfs's own markings become the OCI ones that the
 * unpacker turns back: a 0/0 character device NAME is a whiteout .wh.NAME,
 * a directory with trusted.overlay.opaque=y gets .wh..wh..opq. Other devices
 * and sockets are left out, no symlink is followed; a file's further hard
 * links in the tree are hard-link entries to its first name. dir_mtime_zero: directories
 * get mtime 0 (a staged tree: the same inputs give the same bytes). skip:
 * names at the top left out (a sandbox's mount points), may be NULL.
 * id_shift, id_size: a user-namespaced sandbox's range (userns.h): its files'
 * host ids become its own ids again (outside the range: 65534); 0: as they are. */
int build_layer_pack(int dir_fd, int out_fd, bool dir_mtime_zero, char *const *skip,
                     uint32_t id_shift, uint32_t id_size, char *err, size_t errlen);

/* The stat of path (absolute) in the merged view of lowers (top first): the
 * first layer that has it, unless a whiteout there or an opaque directory on
 * the way hides it. -ENOENT when none has it. */
int build_lower_stat(char *const *lowers, const char *path, struct stat *ret);

/* Copies src (a path in the context ctx_fd, its root "/"; ".." may not leave
 * it, no symlink on the way is followed) into the staged tree at stage_fd: a
 * directory's contents into dest, a file to dest, or into dest when dest_dir.
 * dest is absolute and normalised; its missing parents are made with the
 * attributes the lowers give them (else root 0755). Files get uid/gid; links
 * are copied as links. -EPERM for an escape, -ENOENT for a missing source,
 * with the reason in err, which calls the context where ("the build context",
 * "stage builder"). */
int build_copy(int ctx_fd, const char *src, const char *where, int stage_fd, const char *dest,
               bool dest_dir, char *const *lowers, uid_t uid, gid_t gid, char *err, size_t errlen);

/* Makes the directory path (absolute, normalised) and its parents in the
 * staged tree at stage_fd, as build_copy() makes dest's parents. */
int build_mkdirs(int stage_fd, const char *path, char *const *lowers);

/* Normalises an absolute path ("/a/./b/../c/" -> "/a/c"); -EINVAL for one
 * that is not absolute. */
int build_path_normalize(const char *path, char **ret);

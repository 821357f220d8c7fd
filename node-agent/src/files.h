/* File operations on a sandbox's root filesystem, each done as the sandbox
 * user through fsroot's safe resolver (docs/files.md). Paths are normalized
 * absolute in-sandbox paths (fsroot_abspath). Errors are negative errnos:
 * -ENOENT missing, -ENOTDIR / -EISDIR wrong type, -EACCES denied, -EEXIST,
 * -ENOTEMPTY, -EINVAL, -EFBIG past a limit, -ENOSPC disk full. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <json-c/json.h>

#include "fsroot.h"

#define FILES_LIST_MAX  100000 /* entries in one listing */
#define FILES_DEPTH_MAX 64

/* Opens a regular file for reading; *ret_size is its size. */
int files_open_read(const FsRoot *r, const char *abspath, int *ret_fd, off_t *ret_size);
/* Who pays for the pages a write puts on the sandbox's tmpfs: enter() moves the
 * writing process (a child of the agent's, pid) into the sandbox's memory cgroup. */
typedef struct {
        int (*enter)(void *userdata, pid_t pid);
        void *userdata;
} FilesCharge;

/* Writes a file (creating parent directories), replacing its contents with
 * src_fd's (read to its end) or, when src_fd < 0, with data/len. mode < 0
 * keeps an existing file's mode and gives a new one 0644. With charge, the
 * data is copied by a child process charged to the sandbox (charge NULL: by
 * this process). A child killed meanwhile (the sandbox's OOM killer, its
 * delete) is -ENOSPC. */
int files_write(const FsRoot *r, const FilesCharge *charge, const char *abspath, int src_fd,
                const void *data, size_t len, int mode, json_object **ret_entry);
/* Entries below abspath, depth levels deep (1: the directory's own entries). */
int files_list(const FsRoot *r, const char *abspath, unsigned depth, json_object **ret_array);
int files_mkdir(const FsRoot *r, const char *abspath, bool parents, json_object **ret_entry);
int files_remove(const FsRoot *r, const char *abspath, bool recursive);
int files_move(const FsRoot *r, const char *src, const char *dst, bool overwrite,
               json_object **ret_entry);
/* lstat as the user: the entry JSON. */
int files_stat(const FsRoot *r, const char *abspath, json_object **ret_entry);

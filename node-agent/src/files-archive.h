/* Directory trees in and out of a sandbox as archives (libarchive), through
 * fsroot's safe resolver and as the sandbox user (docs/files.md). */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "fsroot.h"
#include "sandpit/http-server.h"

typedef enum {
        FSARCHIVE_TAR_GZ,
        FSARCHIVE_TAR,
        FSARCHIVE_ZIP,
} FsArchiveFormat;

/* "tar.gz" (or "tgz"), "tar", "zip". */
int fsarchive_format_from_string(const char *s, FsArchiveFormat *ret);
const char *fsarchive_content_type(FsArchiveFormat f);

/* A streamed archive of abspath (a directory: its contents; a file: itself).
 * The tree is walked first: more than max_bytes of file data is -EFBIG, an
 * unreadable file or directory -EACCES; err says which. */
typedef struct FsArchiveStream FsArchiveStream;
int fsarchive_stream_new(const FsRoot *root, const char *abspath, FsArchiveFormat fmt,
                         uint64_t max_bytes, FsArchiveStream **ret, char *err, size_t errlen);
extern const HttpStreamOps fsarchive_stream_ops;

/* Extracts the archive in fd (tar, tar.gz or zip) into the directory abspath,
 * made if missing. The archive is checked whole before anything is written:
 * entries with ".." (-EINVAL), types other than file, directory, symlink and
 * hard link (-EINVAL), hard links to outside the tree (-EINVAL), more than
 * max_bytes of data (-EFBIG). Absolute names are taken relative to abspath.
 * Entries are created below abspath without following any symlink. */
/* The checks of fsarchive_extract() alone (-EINVAL, -EFBIG; err says why);
 * *ret_entries counts the entries. */
int fsarchive_check(int fd, uint64_t max_bytes, uint64_t *ret_entries, char *err, size_t errlen);
int fsarchive_extract(const FsRoot *root, const char *abspath, int fd, uint64_t max_bytes,
                      uint64_t *ret_entries, uint64_t *ret_bytes, char *err, size_t errlen);

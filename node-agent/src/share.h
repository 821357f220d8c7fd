/* What every sandbox binds read-only from the agent (sandpit-init, the
 * code-interpreter kernels), copied into one private tmpfs that is attached
 * nowhere in the host's tree: a sandbox's /proc/self/mountinfo then names
 * "/sandpit-init" of a tmpfs, not where the agent is installed, and no path
 * of the host's leads to the copies. */
#pragma once

typedef struct Share Share;

/* Copies init_path (a file) and kernels_dir (a tree of files; NULL: none)
 * into a new detached tmpfs, then makes it read-only. Errors are logged. */
int share_new(const char *init_path, const char *kernels_dir, Share **ret);
void share_free(Share *s);
/* Paths that reach the copies while the agent lives (/proc/<pid>/fd/N/...),
 * for the bundle's bind mounts; a bind made from one outlives the agent. */
const char *share_init_path(const Share *s);
const char *share_kernels_path(const Share *s); /* NULL without kernels */

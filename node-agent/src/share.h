/* What every sandbox binds read-only from the agent (sandpit-init, the
 * code-interpreter kernels), copied into a tmpfs of the agent's own at
 * <state>/share: a sandbox's /proc/self/mountinfo then names "/sandpit-init"
 * of a tmpfs, not where the agent is installed. (A tmpfs attached nowhere,
 * reached as /proc/<agent>/fd/N, would hide even that; but runc makes a
 * user-namespaced sandbox's binds from inside its namespace, which may not
 * follow another user's /proc fd links.) */
#pragma once

typedef struct Share Share;

/* Mounts a tmpfs at <state_dir>/share (detaching a previous agent's there),
 * copies init_path (a file) and kernels_dir (a tree of files; NULL: none)
 * into it, then makes it read-only. Errors are logged. */
int share_new(const char *state_dir, const char *init_path, const char *kernels_dir, Share **ret);
/* Detaches the tmpfs (the sandboxes keep what they bound). */
void share_free(Share *s);
/* The copies' paths, for the bundle's bind mounts; share_free() detaches the
 * tmpfs, and a bind made from it outlives that. */
const char *share_init_path(const Share *s);
const char *share_kernels_path(const Share *s); /* NULL without kernels */

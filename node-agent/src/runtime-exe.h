/* A sealed in-memory copy of the runc binary, executed in place of the file.
 *
 * runc 1.1 guards every container start against CVE-2019-5736 (a container
 * overwriting the host's runc through /proc/<pid>/exe): `runc init` first
 * re-executes itself from a private copy (a sealed memfd; Debian's 1.1.5 a
 * read-only bind mount it makes and removes in its state dir), unless
 * /proc/self/exe already is a memfd carrying all of F_SEAL_SEAL, F_SEAL_SHRINK,
 * F_SEAL_GROW and F_SEAL_WRITE: such a file can never be written again, which
 * runc's own source names as a sanctioned way to share one copy
 * (libcontainer/nsenter/cloned_binary.c, is_self_cloned()). Running runc from
 * such a copy saves each create that second exec and its mounts.
 *
 * Thread-safe. The copy follows the file: a changed binary (an upgrade: other
 * inode, size or mtime) is copied again at the next use, so a new runc takes
 * effect without restarting the agent. */
#pragma once

typedef struct RuntimeExe RuntimeExe;

/* A sealed copy of binary (a path, or a name looked up in $PATH). -ENOEXEC
 * when it is not an ELF executable (a script cannot run from a memfd it does
 * not inherit); other errors from the copy, the seals or a trial run of
 * `binary --version` from the copy. */
int runtime_exe_new(const char *binary, RuntimeExe **ret);
void runtime_exe_free(RuntimeExe *e);
/* The binary as given to runtime_exe_new(). */
const char *runtime_exe_binary(const RuntimeExe *e);
/* The path to execute ("/proc/self/fd/N"), valid until runtime_exe_release():
 * hold it only across the exec (posix_spawn returns once the child has
 * exec'd). Makes a new copy first when the file changed; keeps the old one
 * when that fails. */
const char *runtime_exe_acquire(RuntimeExe *e);
void runtime_exe_release(RuntimeExe *e);

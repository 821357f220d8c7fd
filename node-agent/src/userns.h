/* User namespaces (docs/security.md, "User namespaces"): each sandbox gets its
 * own range of host ids, uid and gid 0..size-1 inside mapped onto
 * host_id..host_id+size-1, so no two sandboxes (and no sandbox and the host)
 * share a uid and with it the kernel's per-user limits (inotify instances and
 * watches, RLIMIT_NPROC, message queues, keys). */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define USERNS_DEFAULT_BASE ((uint32_t) 1 << 20) /* above any distribution's subuid ranges */
#define USERNS_DEFAULT_SIZE ((uint32_t) 65536)   /* 0..65535 inside, nobody (65534) included */
#define USERNS_MAX_RANGES   ((uint32_t) 16384)

/* The agent's table of ranges: range i is [base + i*size, base + (i+1)*size).
 * Thread-safe (one lock of its own). */
typedef struct UsernsAlloc UsernsAlloc;

/* -EINVAL when size is 0 or base + size does not fit below the highest id
 * (4294967295 is (uid_t) -1, never a valid id). The number of ranges is as many
 * as fit, at most USERNS_MAX_RANGES. */
int userns_alloc_new(uint32_t base, uint32_t size, UsernsAlloc **ret);
void userns_alloc_free(UsernsAlloc *a);
/* A free range's first host id in *ret_host_id; -ENOSPC when all are taken.
 * Hands out the range after the last one given, so a freed range is reused
 * last. */
int userns_alloc_take(UsernsAlloc *a, uint32_t *ret_host_id);
/* Marks host_id's range taken (an adopted sandbox's, after a restart).
 * -EINVAL when host_id is not the start of one of this table's ranges, -EEXIST
 * when it is already taken. */
int userns_alloc_mark(UsernsAlloc *a, uint32_t host_id);
/* Frees host_id's range; freeing one that is not taken is -ENOENT. */
int userns_alloc_release(UsernsAlloc *a, uint32_t host_id);
uint32_t userns_alloc_size(const UsernsAlloc *a);
uint32_t userns_alloc_count(const UsernsAlloc *a);
uint32_t userns_alloc_used(UsernsAlloc *a);

/* A new user namespace whose uid and gid maps are "0 host_id size", created by
 * host_id (so the kernel's per-user counts of everything in it are charged to
 * host_id on the host, not to root), open in *ret_fd (for MOUNT_ATTR_IDMAP, and
 * for runc to join as /proc/<agent>/fd/<fd>): nothing else keeps it, and
 * nothing runs in it yet. The caller must be root on the host. */
int userns_make(uint32_t host_id, uint32_t size, int *ret_fd);

/* User namespaces made ahead by a thread of their own, so a create need not
 * wait for the fork that makes one (userns_make()): up to want (at most 8) at
 * a time, each on a range taken from the table. The same thread closes the
 * fds handed to userns_spares_drop(). */
typedef struct UsernsSpares UsernsSpares;
int userns_spares_start(UsernsAlloc *a, unsigned want, UsernsSpares **ret);
/* A ready namespace: its range's first host id (taken: the caller releases it
 * as any other) and its fd (the caller's to close). -EAGAIN when none is
 * ready. */
int userns_spares_take(UsernsSpares *s, uint32_t *ret_host_id, int *ret_fd);
/* Wakes the thread to make up for those taken: called once the create that
 * took one is done, so that the fork does not compete with it for the CPUs. */
void userns_spares_refill(UsernsSpares *s);
/* Closes fd in that thread, soon: for idmapped clones (userns_idmapped_tree())
 * once an overlay holds them, as closing the last fd of a detached mount
 * waits for an RCU grace period (about 4 ms on a 2-core VM). Closes it here
 * when the thread cannot take it. */
void userns_spares_drop(UsernsSpares *s, int fd);
/* Stops the thread; the ready ones and the fds to drop are closed and the
 * ranges released. */
void userns_spares_stop(UsernsSpares *s);
/* Whether host_id may make a user namespace here (-EPERM where the kernel or
 * an LSM keeps that to root: kernel.unprivileged_userns_clone=0). */
int userns_check(uint32_t host_id);
/* A new network namespace owned by the user namespace at userns_path, pinned
 * on a new file at pin_path. runc joins the user namespace first, and may then
 * join only a network namespace that namespace owns. */
int userns_netns_create(const char *userns_path, const char *pin_path);
/* A detached clone of the mount at path (open_tree OPEN_TREE_CLONE), idmapped
 * through userns_fd: an inode owned by k shows as host_id + k. */
int userns_idmapped_tree(const char *path, int userns_fd, int *ret_fd);

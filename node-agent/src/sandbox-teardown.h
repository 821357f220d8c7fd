/* The teardown queue: what a delete leaves to do once the sandbox is dead
 * (runtime delete, cgroup, mounts, network, state dir), done in the background
 * by a small fixed set of worker threads, so DELETE answers at once. Generic:
 * it runs fn(job, userdata) for each job, in the order pushed. */
#pragma once

#include <stddef.h>

typedef struct TeardownQueue TeardownQueue;
typedef void (*TeardownFn)(void *job, void *userdata);

/* Starts workers (1 or more) threads. */
int teardown_queue_new(unsigned workers, TeardownFn fn, void *userdata, TeardownQueue **ret);
/* Queues job; -ESHUTDOWN once teardown_queue_free() began (the caller then
 * does the work itself), -ENOMEM. */
int teardown_queue_push(TeardownQueue *q, void *job);
/* Jobs queued or being worked on; 0 for NULL. */
size_t teardown_queue_pending(TeardownQueue *q);
/* Refuses new jobs, finishes every queued one, joins the workers and frees.
 * Accepts NULL. */
void teardown_queue_free(TeardownQueue *q);

/* What `runc delete` does for a container whose processes the caller has
 * killed (every task of its cgroup SIGKILLed), without runc's own start-up:
 * waits for its init (state.json's pid and start time) to exit, removes every
 * cgroup listed in state.json's cgroup_paths (in every v1 hierarchy runc
 * joined, name=systemd too) and runc's state dir <root>/<id>. 0 when done or
 * when runc knows no such container; a negative errno when anything is not as
 * expected (poststop hooks, the systemd cgroup driver, Intel RDT, a cgroup
 * path outside /sys/fs/cgroup or not ending in id, init still alive after a
 * while, a cgroup that stays busy): the caller then runs `runc delete`. Only
 * for runc's state format. */
int teardown_runc_state(const char *root, const char *id);

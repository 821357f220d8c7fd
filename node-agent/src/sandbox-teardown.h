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

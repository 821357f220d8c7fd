/* Shared by the sandbox-*.c files (and sandbox.c) only: the table's locked
 * helpers, teardown, and the monitor's wake-up. The public API is sandbox.h. */
#pragma once

#include "agent.h"
#include "runtime.h"

#define ID_LEN      20
#define WAKE_SERIAL 0 /* the eventfd's epoll key; sandbox serials start at 1 */
/* In a sandbox's dir once it is deleted: a restarted agent finishes its
 * teardown instead of re-adopting it. */
#define DELETING_MARKER "deleting"

/* sandbox.c */
/* The runtime of that name (runtime_names; NULL: the default, --runtime). */
Runtime sandbox_runtime(const Agent *a, const char *name);
/* Releases everything a sandbox may hold, whatever stage it reached; runtime
 * is its spec's (NULL: the default). */
int sandbox_teardown(Agent *a, const char *id, const char *dir, const char *runtime);
/* Gives the sandbox's host id range back (after its teardown); none is fine. */
void sandbox_release_ids(Agent *a, Sandbox *sb);
/* Call with a->lock held: a new random id no sandbox has as id or name. */
int sandbox_new_id_locked(Agent *a, char **ret);
/* Call with a->lock held: watches init's pidfd in the monitor's epoll. */
int sandbox_watch_init(Agent *a, Sandbox *sb);
/* A restarted agent's way back to a runsc sandbox's init (its channel died
 * with the old agent): `sandpit-init --rechannel` through the runtime's exec,
 * proven by the key kept in the sandbox's dir. 0 at once when it has one. */
int sandbox_rechannel(const Runtime *rt, const char *name, const char *dir,
                      const char *socket_path);
/* wait: as sandbox_delete(); without, a sandbox being created or deleted is
 * -ENOENT at once (the monitor must not block on another request). */
int sandbox_delete_wait(Agent *a, const char *id, bool wait);
/* Deletes a sandbox waiting in a warm pool, by name; -ENOENT when there is
 * none of that name (or it is being created, claimed or deleted). */
int sandbox_delete_pooled(Agent *a, const char *name);

/* sandbox-table.c; the _locked ones with a->lock held. By id: never a
 * sandbox waiting in a warm pool. */
Sandbox *sandbox_find_locked(Agent *a, const char *id);
/* By Sandbox.name, pooled ones too. */
Sandbox *sandbox_find_name_locked(Agent *a, const char *name);
/* id is some sandbox's id or name (pooled ones and those being torn down
 * too): a create must not take it. */
bool sandbox_id_taken_locked(Agent *a, const char *id);
/* id is the id or name of a sandbox being torn down (a->dying). */
bool sandbox_dying_locked(Agent *a, const char *id);
/* The one whose serial is serial (epoll events name sandboxes by it), or NULL. */
Sandbox *sandbox_find_serial_locked(Agent *a, uint64_t serial);
void sandbox_unlink_locked(Agent *a, Sandbox *sb);
/* Moves sb from the table to a->dying. */
void sandbox_move_to_dying_locked(Agent *a, Sandbox *sb);
void sandbox_unlink_dying_locked(Agent *a, Sandbox *sb);
void sandbox_free(Sandbox *sb);
const char *sandbox_state_name(SandboxState s);
/* The API view; oom_kills is added by sandbox_add_stats (outside the lock). */
json_object *sandbox_to_json_locked(const Sandbox *sb);
void sandbox_add_stats(Agent *a, const char *id, json_object *o);

/* sandbox-monitor.c */
void sandbox_wake_monitor(Agent *a);
/* Prepends NAME=value defaults to env, unless env names them. */
int sandbox_env_add_defaults(char ***env, char **defaults);

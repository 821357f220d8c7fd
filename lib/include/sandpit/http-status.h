/* The one table between HTTP (and Kubernetes) statuses and negative errnos
 * (STYLE.md, docs/kube-client.md): the clients map a status they received to an
 * errno, the agent's API maps an errno it failed with to the status it answers.
 *
 *   status                      errno          errno                         status
 *   2xx                         0              -ENOENT -ESRCH                404
 *   400 422                     -EINVAL        -EEXIST -EBUSY -ECHILD
 *   401 403                     -EACCES          -ENOTEMPTY -ECANCELED       409
 *   404                         -ENOENT        -EINVAL -E2BIG -ERANGE -ENOTDIR
 *   405 406 415 501             -EOPNOTSUPP      -EISDIR -ELOOP -EXDEV
 *   409 reason AlreadyExists    -EEXIST          -ENXIO -ENAMETOOLONG        400
 *   409 otherwise (Conflict)    -EBUSY         -EACCES -EPERM                403
 *   410 (Gone, Expired)         -ESTALE        -EFBIG -EMSGSIZE              413
 *   413                         -E2BIG         -ENOSPC -EDQUOT               507
 *   429                         -EAGAIN        -EAGAIN -ESHUTDOWN            503
 *   other 5xx                   -EIO           -ETIMEDOUT                    504
 *                                              -EREMOTEIO (bad upstream)     502
 *                                              -EMEDIUMTYPE                  415
 *   anything else (3xx, 4xx)    -EPROTO        anything else                 500
 *
 * A transport timeout is -ETIMEDOUT from the clients themselves.
 *
 * The agent's error bodies carry the reason of a 409 as Kubernetes' Status
 * does ({"code": 409, "reason": "AlreadyExists", "message": ...}), so its
 * clients tell an id in use (-EEXIST: adopt it) from any other conflict
 * (-EBUSY, such as a create given up for a concurrent delete: retry). */
#pragma once

/* reason: a Kubernetes Status reason (tells AlreadyExists from Conflict), or NULL. */
int http_status_to_errno(long status, const char *reason);
/* The status the agent's API answers for a failure r (< 0). */
unsigned http_status_from_errno(int r);
/* The reason an answer for the failure r carries beside its status, the one
 * http_status_to_errno() reads back: "AlreadyExists" (-EEXIST), "Conflict"
 * (the other errnos answered 409), NULL for the rest. */
const char *http_reason_from_errno(int r);
/* The errno to answer for a failure that is the server's own, not the
 * request's (a mount, the cgroup, the freezer, the runtime): r when the table
 * answers 5xx for it, else -EIO. An errno such a step got from the kernel
 * (ENOENT of a missing file, EINVAL of a syscall, EEXIST of a leftover) says
 * nothing about the request and must not read as the client's 404, 400 or 409
 * (an operator adopts a sandbox on 409). Keep the real errno in the message. */
int http_errno_internal(int r);

/* The one table between HTTP (and Kubernetes) statuses and negative errnos
 * (STYLE.md, docs/kube-client.md): the clients map a status they received to an
 * errno, the agent's API maps an errno it failed with to the status it answers.
 *
 *   status                      errno          errno                         status
 *   2xx                         0              -ENOENT -ESRCH                404
 *   400 422                     -EINVAL        -EEXIST -EBUSY -ECHILD
 *   401 403                     -EACCES          -ENOTEMPTY                  409
 *   404                         -ENOENT        -EINVAL -E2BIG -ERANGE -ENOTDIR
 *   405 406 415 501             -EOPNOTSUPP      -EISDIR -ELOOP -EXDEV
 *   409 reason AlreadyExists    -EEXIST          -ENXIO -ENAMETOOLONG        400
 *   409 otherwise (Conflict)    -EBUSY         -EACCES -EPERM                403
 *   410 (Gone, Expired)         -ESTALE        -EFBIG -EMSGSIZE              413
 *   413                         -E2BIG         -ENOSPC -EDQUOT               507
 *   429                         -EAGAIN        -EAGAIN -ESHUTDOWN            503
 *   other 5xx                   -EIO           -ETIMEDOUT                    504
 *                                              -EBADMSG (bad upstream)       502
 *                                              -EMEDIUMTYPE                  415
 *   anything else (3xx, 4xx)    -EPROTO        anything else                 500
 *
 * A transport timeout is -ETIMEDOUT from the clients themselves. */
#pragma once

/* reason: a Kubernetes Status reason (tells AlreadyExists from Conflict), or NULL. */
int http_status_to_errno(long status, const char *reason);
/* The status the agent's API answers for a failure r (< 0). */
unsigned http_status_from_errno(int r);

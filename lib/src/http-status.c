/* HTTP status <-> negative errno, both ways (see sandpit/http-status.h). */
#include "sandpit/http-status.h"

#include <errno.h>
#include <string.h>

int http_status_to_errno(long status, const char *reason)
{
        if (status >= 200 && status < 300)
                return 0;
        switch (status) {
        case 400:
        case 422:
                return -EINVAL;
        case 401:
        case 403:
                return -EACCES;
        case 404:
                return -ENOENT;
        case 405:
        case 406:
        case 415:
        case 501:
                return -EOPNOTSUPP;
        case 409:
                return reason && strcmp(reason, "AlreadyExists") == 0 ? -EEXIST : -EBUSY;
        case 410:
                return -ESTALE;
        case 413:
                return -E2BIG;
        case 429:
                return -EAGAIN;
        default:
                return status >= 500 && status < 600 ? -EIO : -EPROTO;
        }
}

unsigned http_status_from_errno(int r)
{
        switch (-r) {
        case ENOENT:
        case ESRCH:
                return 404;
        case EEXIST:
        case EBUSY:
        case ECHILD:
        case ENOTEMPTY:
        case ECANCELED: /* given up for a conflicting request (a delete during a create) */
                return 409;
        case EINVAL:
        case E2BIG:
        case ERANGE:
        case ENOTDIR:
        case EISDIR:
        case ELOOP:
        case EXDEV:
        case ENXIO:
        case ENAMETOOLONG:
                return 400;
        case EACCES:
        case EPERM:
                return 403;
        case EFBIG:
        case EMSGSIZE:
                return 413;
        case ENOSPC:
        case EDQUOT:
                return 507;
        case ESHUTDOWN:
        case EAGAIN:
                return 503;
        case ETIMEDOUT:
                return 504;
        case EREMOTEIO: /* an upstream (a registry) answered something unusable */
                return 502;
        case EMEDIUMTYPE:
                return 415;
        case ENOPKG: /* this node lacks what it takes (a runtime) */
                return 501;
        default:
                return 500;
        }
}

const char *http_reason_from_errno(int r)
{
        if (r == -EEXIST)
                return "AlreadyExists";
        return http_status_from_errno(r) == 409 ? "Conflict" : NULL;
}

int http_errno_internal(int r)
{
        return http_status_from_errno(r) >= 500 ? r : -EIO;
}

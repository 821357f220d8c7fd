/* User lookup for sandpit-init. Static glibc cannot use NSS, so init parses the
 * sandbox's /etc/passwd itself. */
#pragma once

#include <sys/types.h>

typedef struct {
        uid_t uid;
        gid_t gid;
        char *home; /* heap */
} InitUser;

/* Resolves name (a user name or a numeric uid) from the passwd file at path.
 * A numeric uid missing from the file resolves to that uid, gid 0, home "/";
 * "root" missing from it to 0, 0, "/". Returns 0, -ENOENT for an unknown name,
 * -EINVAL for an empty one, or -ENOMEM. */
int init_user_lookup(const char *path, const char *name, InitUser *ret);
void init_user_done(InitUser *u);

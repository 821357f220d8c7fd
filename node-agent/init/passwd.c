/* /etc/passwd parsing (see passwd.h). */
#include "passwd.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sandpit/macro.h"

static bool parse_id(const char *s, unsigned long *ret)
{
        if (*s < '0' || *s > '9')
                return false;
        char *end = NULL;
        errno = 0;
        unsigned long v = strtoul(s, &end, 10);
        if (errno != 0 || *end != '\0' || v >= (unsigned long) (uid_t) -1)
                return false;
        *ret = v;
        return true;
}

/* Splits a passwd line "name:pw:uid:gid:gecos:home:shell" in place. */
static bool split_line(char *line, char *fields[7])
{
        line[strcspn(line, "\n")] = '\0';
        for (int i = 0; i < 7; i++) {
                fields[i] = line;
                char *colon = strchr(line, ':');
                if (i < 6) {
                        if (!colon)
                                return false;
                        *colon = '\0';
                        line = colon + 1;
                }
        }
        return true;
}

static int user_set(InitUser *ret, unsigned long uid, unsigned long gid, const char *home)
{
        char *h = strdup(*home ? home : "/");
        if (!h)
                return -ENOMEM;
        *ret = (InitUser){.uid = (uid_t) uid, .gid = (gid_t) gid, .home = h};
        return 0;
}

int init_user_lookup(const char *path, const char *name, InitUser *ret)
{
        if (!*name)
                return -EINVAL;
        unsigned long want_uid = 0;
        bool numeric = parse_id(name, &want_uid);

        cleanup_fclose FILE *f = fopen(path, "re");
        cleanup_free char *line = NULL;
        size_t cap = 0;
        while (f && getline(&line, &cap, f) > 0) {
                char *fld[7];
                unsigned long uid, gid;
                if (!split_line(line, fld) || !parse_id(fld[2], &uid) || !parse_id(fld[3], &gid))
                        continue;
                if (numeric ? uid == want_uid : streq(fld[0], name))
                        return user_set(ret, uid, gid, fld[5]);
        }
        if (numeric)
                return user_set(ret, want_uid, 0, "/");
        if (streq(name, "root"))
                return user_set(ret, 0, 0, "/");
        return -ENOENT;
}

void init_user_done(InitUser *u)
{
        free(u->home);
        u->home = NULL;
}

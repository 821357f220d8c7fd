/* Path-safe access to a sandbox's root filesystem (see fsroot.h). */
#include "fsroot.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/openat2.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "sandpit/macro.h"
#include "sandpit/util.h"

#define ROOT_RESOLVE (RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV)
#define CHILD_RESOLVE \
        (RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV)
#define NAMES_MAX      4096
#define NAMES_FILE_MAX (4u << 20)

static int openat2_retry(int dirfd, const char *path, int flags, mode_t mode, uint64_t resolve)
{
        struct open_how how = {.flags = (uint64_t) (flags | O_CLOEXEC),
                               .mode = (flags & (O_CREAT | O_TMPFILE)) ? mode : 0,
                               .resolve = resolve};
        /* EAGAIN: a rename or mount elsewhere raced the in-root walk; retry. */
        for (int i = 0; i < 16; i++) {
                long fd = syscall(SYS_openat2, dirfd, path, &how, sizeof(how));
                if (fd >= 0)
                        return (int) fd;
                if (errno != EAGAIN)
                        return -errno;
        }
        return -EAGAIN;
}

int fsroot_open_path(const FsRoot *r, const char *abspath, int flags, mode_t mode)
{
        return openat2_retry(r->root_fd, abspath, flags, mode, ROOT_RESOLVE);
}

int fsroot_open_child(int dirfd, const char *name, int flags, mode_t mode)
{
        if (!*name || strchr(name, '/') || streq(name, ".") || streq(name, ".."))
                return -EINVAL;
        return openat2_retry(dirfd, name, flags | O_NOFOLLOW, mode, CHILD_RESOLVE);
}

/* --- users and groups from the sandbox's own files ------------------------ */

static FILE *open_names_file(const FsRoot *r, const char *path)
{
        int fd = fsroot_open_path(r, path, O_RDONLY | O_NONBLOCK, 0);
        struct stat st;
        if (fd < 0)
                return NULL;
        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > NAMES_FILE_MAX) {
                (void) close(fd);
                return NULL;
        }
        FILE *f = fdopen(fd, "re");
        if (!f)
                (void) close(fd);
        return f;
}

static int names_add(FsName **v, size_t *n, uid_t id, const char *name)
{
        if (*n >= NAMES_MAX)
                return 0;
        FsName *p = realloc(*v, (*n + 1) * sizeof(FsName));
        if (!p)
                return -ENOMEM;
        *v = p;
        if (!(p[*n].name = strdup(name)))
                return -ENOMEM;
        p[(*n)++].id = id;
        return 0;
}

static int load_names(FsRoot *r)
{
        char buf[4096];
        cleanup_fclose FILE *pf = open_names_file(r, "/etc/passwd");
        struct passwd pw, *pwp = NULL;
        while (pf && fgetpwent_r(pf, &pw, buf, sizeof(buf), &pwp) == 0 && pwp) {
                int k = names_add(&r->users, &r->n_users, pw.pw_uid, pw.pw_name);
                if (k < 0)
                        return k;
        }
        cleanup_fclose FILE *gf = open_names_file(r, "/etc/group");
        struct group gr, *grp = NULL;
        while (gf && fgetgrent_r(gf, &gr, buf, sizeof(buf), &grp) == 0 && grp) {
                int k = names_add(&r->groups, &r->n_groups, gr.gr_gid, gr.gr_name);
                if (k < 0)
                        return k;
        }
        return 0;
}

static bool parse_uid(const char *s, uid_t *ret)
{
        if (*s < '0' || *s > '9')
                return false;
        char *end = NULL;
        errno = 0;
        unsigned long v = strtoul(s, &end, 10);
        if (errno || *end || v >= (unsigned long) (uid_t) -1)
                return false;
        *ret = (uid_t) v;
        return true;
}

/* The same rules as sandpit-init's (node-agent/init/passwd.c). */
static int resolve_user(FsRoot *r, const char *user)
{
        uid_t want = 0;
        bool numeric = parse_uid(user, &want);
        char buf[4096];
        cleanup_fclose FILE *pf = open_names_file(r, "/etc/passwd");
        struct passwd pw, *pwp = NULL;
        const char *home = NULL;
        while (pf && fgetpwent_r(pf, &pw, buf, sizeof(buf), &pwp) == 0 && pwp)
                if (numeric ? pw.pw_uid == want : streq(pw.pw_name, user)) {
                        r->uid = pw.pw_uid;
                        r->gid = pw.pw_gid;
                        home = pw.pw_dir;
                        break;
                }
        if (!home) {
                if (!numeric && !streq(user, "root"))
                        return -ENOENT;
                r->uid = want;
                r->gid = 0;
        }
        return (r->home = strdup(home && home[0] == '/' ? home : "/")) ? 0 : -ENOMEM;
}

int fsroot_open(const char *rootfs_path, const char *user, FsRoot *ret)
{
        FsRoot r = {.root_fd = -1};
        if (!*user)
                return -EINVAL;
        r.root_fd = open(rootfs_path, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (r.root_fd < 0)
                return -errno;
        if (!(r.rootfs = strdup(rootfs_path))) {
                fsroot_done(&r);
                return -ENOMEM;
        }
        int k = resolve_user(&r, user);
        if (k == 0)
                k = load_names(&r);
        if (k < 0) {
                fsroot_done(&r);
                return k;
        }
        *ret = r;
        return 0;
}

void fsroot_done(FsRoot *r)
{
        closep(&r->root_fd);
        free(r->rootfs);
        free(r->home);
        for (size_t i = 0; i < r->n_users; i++)
                free(r->users[i].name);
        for (size_t i = 0; i < r->n_groups; i++)
                free(r->groups[i].name);
        free(r->users);
        free(r->groups);
        *r = (FsRoot){.root_fd = -1};
}

/* --- per-thread filesystem identity ---------------------------------------- */

/* Raises this thread's filesystem capabilities (dropped by setfsuid() away from
 * 0) in its effective set again; they are still permitted. */
static int raise_fs_caps(void)
{
        struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3};
        struct __user_cap_data_struct d[2];
        if (syscall(SYS_capget, &h, d) < 0)
                return -errno;
        static const int caps[] = {CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER,
                                   CAP_FSETID};
        for (size_t i = 0; i < ARRAY_SIZE(caps); i++)
                d[caps[i] / 32].effective |= d[caps[i] / 32].permitted & (1u << (caps[i] % 32));
        return syscall(SYS_capset, &h, d) < 0 ? -errno : 0;
}

int fscred_enter(const FsRoot *r, FsCred *ret)
{
        *ret = (FsCred){0};
        if (r->uid == 0 && r->id_shift == 0)
                return 0;
        uid_t uid = r->uid + r->id_shift;
        gid_t gid = r->gid + r->id_shift;
        int n = getgroups((int) ARRAY_SIZE(ret->groups), ret->groups);
        if (n < 0)
                return -errno;
        ret->n_groups = n;
        /* Raw syscalls: glibc's wrappers would apply them to every thread. */
        if (syscall(SYS_setgroups, 0, NULL) < 0)
                return -errno;
        ret->active = true;
        (void) syscall(SYS_setfsgid, gid);
        (void) syscall(SYS_setfsuid, uid);
        /* setfsuid() reports the previous value; read back to be sure it took. */
        if ((uid_t) syscall(SYS_setfsuid, -1) != uid || (gid_t) syscall(SYS_setfsgid, -1) != gid) {
                fscred_leave(ret);
                return -EPERM;
        }
        int k = r->uid == 0 ? raise_fs_caps() : 0;
        if (k < 0) {
                fscred_leave(ret);
                return k;
        }
        return 0;
}

void fscred_leave(FsCred *c)
{
        if (!c->active)
                return;
        (void) syscall(SYS_setfsuid, 0);
        (void) syscall(SYS_setfsgid, 0);
        (void) syscall(SYS_setgroups, (size_t) c->n_groups, c->groups);
        c->active = false;
}

/* --- paths ----------------------------------------------------------------- */

int fsroot_abspath(const FsRoot *r, const char *p, char **ret)
{
        if (!p || !*p)
                return -EINVAL;
        size_t plen = strlen(p), hlen = p[0] == '/' ? 0 : strlen(r->home);
        if (plen > 4096)
                return -ENAMETOOLONG;
        cleanup_free char *in = malloc(hlen + plen + 2);
        cleanup_free char *out = malloc(hlen + plen + 2);
        if (!in || !out)
                return -ENOMEM;
        (void) snprintf(in, hlen + plen + 2, "%s/%s", hlen ? r->home : "", p);
        size_t o = 0;
        char *save = NULL;
        for (char *t = strtok_r(in, "/", &save); t; t = strtok_r(NULL, "/", &save)) {
                if (streq(t, "."))
                        continue;
                if (streq(t, "..")) {
                        while (o > 0 && out[o - 1] != '/')
                                o--;
                        if (o > 0)
                                o--; /* the slash before it */
                        continue;
                }
                out[o++] = '/';
                size_t tl = strlen(t);
                memcpy(out + o, t, tl);
                o += tl;
        }
        if (o == 0)
                out[o++] = '/';
        out[o] = '\0';
        *ret = TAKE_PTR(out);
        return 0;
}

static int mkdir_parents(const FsRoot *r, const char *dir)
{
        int fd = fsroot_open_path(r, dir, O_PATH | O_DIRECTORY, 0);
        if (fd >= 0) {
                (void) close(fd);
                return 0;
        }
        if (fd != -ENOENT)
                return fd;
        cleanup_free char *copy = strdup(dir);
        if (!copy)
                return -ENOMEM;
        char *slash = strrchr(copy, '/');
        const char *name = slash + 1;
        *slash = '\0';
        const char *parent = slash == copy ? "/" : copy;
        int k = mkdir_parents(r, parent);
        if (k < 0)
                return k;
        cleanup_close int pfd = fsroot_open_path(r, parent, O_PATH | O_DIRECTORY, 0);
        if (pfd < 0)
                return pfd;
        if (mkdirat(pfd, name, 0755) < 0 && errno != EEXIST)
                return -errno;
        return 0;
}

int fsroot_open_parent(const FsRoot *r, const char *abspath, bool create_parents, int *ret_dirfd,
                       const char **ret_name)
{
        const char *slash = strrchr(abspath, '/');
        if (!slash || !slash[1])
                return -EINVAL;
        cleanup_free char *parent =
                slash == abspath ? strdup("/") : strndup(abspath, (size_t) (slash - abspath));
        if (!parent)
                return -ENOMEM;
        if (create_parents) {
                int k = mkdir_parents(r, parent);
                if (k < 0)
                        return k;
        }
        int fd = fsroot_open_path(r, parent, O_PATH | O_DIRECTORY, 0);
        if (fd < 0)
                return fd;
        *ret_dirfd = fd;
        *ret_name = slash + 1;
        return 0;
}

/* --- entries ------------------------------------------------------------------ */

const char *fsroot_type_name(mode_t mode)
{
        return S_ISREG(mode) ? "file" : S_ISDIR(mode) ? "dir" : S_ISLNK(mode) ? "symlink" : "other";
}

/* A host id as the sandbox sees it: shifted back, or the overflow id (nobody)
 * for one outside its range, as the kernel shows it inside. */
static uid_t sandbox_id(const FsRoot *r, uid_t host)
{
        if (!r->id_shift)
                return host;
        return host >= r->id_shift && host - r->id_shift < 65536 ? host - r->id_shift : 65534;
}

static const char *name_of(const FsName *v, size_t n, uid_t id)
{
        for (size_t i = 0; i < n; i++)
                if (v[i].id == id)
                        return v[i].name;
        return NULL;
}

static void permissions_string(mode_t m, char out[11])
{
        out[0] = S_ISDIR(m) ? 'd' : S_ISLNK(m) ? 'l' : S_ISREG(m) ? '-' : '?';
        const char *rwx = "rwxrwxrwx";
        for (int i = 0; i < 9; i++) {
                out[1 + i] = '-';
                if (m & (1u << (8 - i)))
                        out[1 + i] = rwx[i];
        }
        out[10] = '\0';
}

json_object *fsroot_entry_json(const FsRoot *r, const char *abspath, const struct stat *st,
                               const char *symlink_target)
{
        json_object *o = json_object_new_object();
        if (!o)
                return NULL;
        const char *slash = strrchr(abspath, '/');
        const char *name = slash && slash[1] ? slash + 1 : "/";
        char perms[11], num[16], ts[40];
        permissions_string(st->st_mode, perms);
        (void) json_object_object_add(o, "name", json_object_new_string(name));
        (void) json_object_object_add(o, "type",
                                      json_object_new_string(fsroot_type_name(st->st_mode)));
        (void) json_object_object_add(o, "path", json_object_new_string(abspath));
        (void) json_object_object_add(o, "size", json_object_new_int64((int64_t) st->st_size));
        (void) json_object_object_add(o, "mode", json_object_new_int((int) (st->st_mode & 07777)));
        (void) json_object_object_add(o, "permissions", json_object_new_string(perms));
        uid_t uid = sandbox_id(r, st->st_uid);
        gid_t gid = sandbox_id(r, st->st_gid);
        const char *owner = name_of(r->users, r->n_users, uid);
        (void) snprintf(num, sizeof(num), "%u", (unsigned) uid);
        (void) json_object_object_add(o, "owner", json_object_new_string(owner ? owner : num));
        const char *group = name_of(r->groups, r->n_groups, gid);
        (void) snprintf(num, sizeof(num), "%u", (unsigned) gid);
        (void) json_object_object_add(o, "group", json_object_new_string(group ? group : num));
        (void) json_object_object_add(o, "uid", json_object_new_int64(uid));
        (void) json_object_object_add(o, "gid", json_object_new_int64(gid));
        format_rfc3339_us((uint64_t) st->st_mtim.tv_sec * 1000000u +
                                  (uint64_t) st->st_mtim.tv_nsec / 1000u,
                          ts, sizeof(ts));
        (void) json_object_object_add(o, "modified_time", json_object_new_string(ts));
        if (symlink_target)
                (void) json_object_object_add(o, "symlink_target",
                                              json_object_new_string(symlink_target));
        return o;
}

int fsroot_stat_json(const FsRoot *r, const char *abspath, json_object **ret)
{
        struct stat st;
        char target[4097] = "";
        bool link = false;
        if (streq(abspath, "/")) {
                if (fstat(r->root_fd, &st) < 0)
                        return -errno;
        } else {
                cleanup_close int pfd = -1;
                const char *name = NULL;
                int k = fsroot_open_parent(r, abspath, false, &pfd, &name);
                if (k < 0)
                        return k;
                if (fstatat(pfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                        return -errno;
                if (S_ISLNK(st.st_mode)) {
                        ssize_t n = readlinkat(pfd, name, target, sizeof(target) - 1);
                        if (n >= 0) {
                                target[n] = '\0';
                                link = true;
                        }
                }
        }
        json_object *o = fsroot_entry_json(r, abspath, &st, link ? target : NULL);
        if (!o)
                return -ENOMEM;
        *ret = o;
        return 0;
}

/* Per-sandbox cgroups: the public API, the two I/O implementations and the pure parsers.
 *
 * Two ops structs, as crun's cgroup.c does:
 *   - CgBackendOps (cgroup-v1.c, cgroup-v2.c) decides which value goes into which file and how
 *     stats are read back; it never touches the filesystem itself.
 *   - CgIoOps does the I/O: create, write, read, remove, list children, list tasks.
 *
 * Testability: libcgroup only knows the hierarchies it parsed from /proc/mounts in cgroup_init().
 * It has no public call to point it at another directory: its own unit tests fill the internal
 * cg_mount_table (exported, but its layout is in libcgroup-internal.h, which is not installed)
 * and use cgroup_process_v{1,2}_mnt(), which exist only in the UNIT_TEST build; the mount
 * section of cgconfig.conf really mount(2)s a cgroupfs. So the I/O sits behind CgIoOps with two
 * implementations: cg_io_libcgroup (production, everything through libcgroup) and cg_io_dir
 * (plain files under a root directory, selected by cg_manager_new_at(), used by the unit tests
 * with a fake cgroupfs tree). The value mapping and parsing the tests check is the same code in
 * both cases.
 *
 * Locking: libcgroup keeps global state after cgroup_init() (mount table, last errno), so every
 * libcgroup call, cgroup_init() included, runs under cg_libcgroup_lock. A CgManager does not
 * change after cg_manager_new(), so it needs no lock of its own; cg_io_dir is plain syscalls. */
#include "cgroup.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <time.h>
#include <unistd.h>

#include <libcgroup.h>

#include "cgroup-internal.h"
#include "sandpit/log.h"
#include "sandpit/macro.h"
#include "sandpit/util.h"

/* clang-tidy 14's analyzer does not model __attribute__((cleanup)) (llvm-project#160527), so
 * every early return after a cleanup_free allocation reads as a leak; ASan's leak checker in the
 * unit tests covers this instead. NOLINTBEGIN(clang-analyzer-unix.Malloc) */

#define CG_ROOT           "/sys/fs/cgroup"
#define CG_DEFAULT_PARENT "sandpit"
#define CG_FILE_MAX       ((size_t) 64 * 1024)
#define CGROUP2_MAGIC     0x63677270
#define CG_NAME_MAX       128
#define CG_CPU_MIN_QUOTA  1000U

/* ---------------------------------------------------------------------------------------- */
/* Pure helpers                                                                             */

int cg_cpu_quota_us(double cores, uint32_t *ret)
{
        if (!isfinite(cores) || cores < 0)
                return -EINVAL;
        if (cores == 0) {
                *ret = 0;
                return 0;
        }
        /* Rounded by hand: the agent does not link libm for one call. */
        double q = cores * CG_CPU_PERIOD_US + 0.5;
        if (q >= (double) UINT32_MAX)
                return -ERANGE;
        *ret = q < CG_CPU_MIN_QUOTA ? CG_CPU_MIN_QUOTA : (uint32_t) q;
        return 0;
}

int cg_parse_u64(const char *s, uint64_t *ret)
{
        char *end = NULL;

        if (!s || *s < '0' || *s > '9')
                return -EINVAL;
        errno = 0;
        unsigned long long v = strtoull(s, &end, 10);
        if (errno == ERANGE)
                return -ERANGE;
        while (*end == ' ' || *end == '\n' || *end == '\t')
                end++;
        if (*end)
                return -EINVAL;
        *ret = v;
        return 0;
}

int cg_parse_limit(const char *s, uint64_t *ret)
{
        size_t n = strcspn(s, " \t\n");

        if (s[n + strspn(s + n, " \t\n")] == '\0' &&
            ((n == 3 && strncmp(s, "max", 3) == 0) || (n == 2 && strncmp(s, "-1", 2) == 0))) {
                *ret = 0;
                return 0;
        }
        return cg_parse_u64(s, ret);
}

int cg_parse_keyed(const char *text, const char *key, uint64_t *ret)
{
        size_t klen = strlen(key);

        for (const char *line = text; line && *line;) {
                const char *eol = strchr(line, '\n');
                size_t len = eol ? (size_t) (eol - line) : strlen(line);

                if (len > klen && strncmp(line, key, klen) == 0 && line[klen] == ' ') {
                        char buf[32];
                        size_t vlen = len - klen - 1;

                        if (vlen == 0 || vlen >= sizeof(buf))
                                return -EINVAL;
                        memcpy(buf, line + klen + 1, vlen);
                        buf[vlen] = '\0';
                        return cg_parse_u64(buf, ret);
                }
                line = eol ? eol + 1 : NULL;
        }
        return -ENOENT;
}

int cg_parse_cpu_max(const char *s, uint32_t *ret_quota, uint32_t *ret_period)
{
        char quota[32];
        uint64_t q = 0, p = 0;
        const char *sp = strchr(s, ' ');
        int r;

        if (!sp || (size_t) (sp - s) >= sizeof(quota))
                return -EINVAL;
        memcpy(quota, s, (size_t) (sp - s));
        quota[sp - s] = '\0';
        if (!streq(quota, "max")) {
                r = cg_parse_u64(quota, &q);
                if (r < 0)
                        return r;
        }
        r = cg_parse_u64(sp + 1, &p);
        if (r < 0)
                return r;
        if (q > UINT32_MAX || p > UINT32_MAX)
                return -ERANGE;
        *ret_quota = (uint32_t) q;
        *ret_period = (uint32_t) p;
        return 0;
}

int cg_parse_pids(const char *text, pid_t **ret, size_t *ret_n)
{
        cleanup_free pid_t *pids = NULL;
        size_t n = 0, cap = 0;

        if (!text)
                return -EINVAL;
        for (const char *line = text; *line;) {
                char *end = NULL;

                if (*line == '\n') {
                        line++;
                        continue;
                }
                errno = 0;
                long v = strtol(line, &end, 10);
                if (errno != 0 || end == line || v <= 0 || v > INT_MAX ||
                    (*end != '\n' && *end != '\0'))
                        return -EINVAL;
                if (n == cap) {
                        size_t ncap = cap ? cap * 2 : 16;
                        pid_t *p = reallocarray(pids, ncap, sizeof(*p));
                        if (!p)
                                return -ENOMEM;
                        pids = p;
                        cap = ncap;
                }
                pids[n++] = (pid_t) v;
                line = end;
        }
        *ret = TAKE_PTR(pids);
        *ret_n = n;
        return 0;
}

int cg_read_u64(CgIo *io, const char *controller, const char *path, const char *file, uint64_t *ret)
{
        cleanup_free char *s = NULL;
        int r = io->ops->read(io, controller, path, file, &s);

        return r < 0 ? r : cg_parse_u64(s, ret);
}

int cg_read_limit(CgIo *io, const char *controller, const char *path, const char *file,
                  uint64_t *ret)
{
        cleanup_free char *s = NULL;
        int r = io->ops->read(io, controller, path, file, &s);

        return r < 0 ? r : cg_parse_limit(s, ret);
}

int cg_write_u64(CgIo *io, const char *controller, const char *path, const char *file, uint64_t v)
{
        char buf[32];

        (void) snprintf(buf, sizeof(buf), "%" PRIu64, v);
        return io->ops->write(io, controller, path, file, buf);
}

int cg_signal_pids(const pid_t *pids, size_t n, int sig)
{
        int count = 0;

        for (size_t i = 0; i < n; i++) {
                if (kill(pids[i], sig) == 0)
                        count++;
                else if (errno != ESRCH)
                        return negative_errno();
        }
        return count;
}

uint64_t cg_now_ms(void)
{
        struct timespec ts;

        (void) clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;
}

void cg_poll_sleep(void)
{
        struct timespec ts = {.tv_nsec = CG_POLL_INTERVAL_MS * 1000000L};

        (void) nanosleep(&ts, NULL);
}

int cg_strv_new(char ***ret)
{
        char **v = calloc(1, sizeof(char *));

        if (!v)
                return -ENOMEM;
        *ret = v;
        return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* I/O through libcgroup (production)                                                       */

static pthread_mutex_t cg_libcgroup_lock = PTHREAD_MUTEX_INITIALIZER;
static bool cg_libcgroup_initialised;

static void cg_lock(void)
{
        (void) pthread_mutex_lock(&cg_libcgroup_lock);
}

static void cg_unlock(void)
{
        (void) pthread_mutex_unlock(&cg_libcgroup_lock);
}

static void cgroup_freep(struct cgroup **cg)
{
        if (*cg)
                cgroup_free(cg);
}
#define cleanup_cgroup __attribute__((cleanup(cgroup_freep)))

/* Called with the lock held: cgroup_get_last_errno() is libcgroup global state. */
static int cg_lib_errno(int r)
{
        switch (r) {
        case 0:
                return 0;
        case ECGOTHER: {
                int e = cgroup_get_last_errno();
                return e > 0 ? -e : -EIO;
        }
        case ECGROUPNOTEXIST:
        case ECGROUPVALUENOTEXIST:
                return -ENOENT;
        case ECGROUPNOTMOUNTED:
        case ECGROUPSUBSYSNOTMOUNTED:
                return -ENODEV;
        case ECGROUPNOTOWNER:
                return -EPERM;
        case ECGROUPNOTALLOWED:
                return -EACCES;
        case ECGINVAL:
                return -EINVAL;
        case ECGNONEMPTY:
                return -EBUSY;
        case ECGROUPUNSUPP:
                return -EOPNOTSUPP;
        case ECGEOF:
                return -ENODATA;
        default:
                return -EIO;
        }
}

static int cg_lib_init_locked(void)
{
        if (cg_libcgroup_initialised)
                return 0;
        int r = cg_lib_errno(cgroup_init());
        if (r < 0)
                return r;
        cg_libcgroup_initialised = true;
        return 0;
}

/* Absolute path of path/file in controller's hierarchy (the unified mount for NULL). */
static int cg_lib_path_locked(CgIo *io, const char *controller, const char *path, const char *file,
                              char **ret)
{
        cleanup_free char *mnt = NULL;
        char *s = NULL;

        if (controller) {
                int r = cg_lib_errno(cgroup_get_subsys_mount_point(controller, &mnt));
                if (r < 0)
                        return r;
        } else if (io->unified) {
                mnt = strdup(io->unified);
                if (!mnt)
                        return -ENOMEM;
        } else {
                return -ENODEV;
        }
        if (asprintf(&s, "%s/%s%s%s", mnt, path, file ? "/" : "", file ? file : "") < 0)
                return -ENOMEM;
        *ret = s;
        return 0;
}

static int cg_file_write(const char *p, const char *value, int flags)
{
        cleanup_close int fd = open(p, O_WRONLY | O_CLOEXEC | flags, 0644);
        size_t len = strlen(value);

        if (fd < 0)
                return negative_errno();
        ssize_t n = write(fd, value, len);
        if (n < 0)
                return negative_errno();
        return (size_t) n == len ? 0 : -EIO;
}

static int cg_file_read(const char *p, char **ret)
{
        cleanup_close int fd = open(p, O_RDONLY | O_CLOEXEC);
        cleanup_free char *buf = NULL;

        if (fd < 0)
                return negative_errno();
        buf = malloc(CG_FILE_MAX + 1);
        if (!buf)
                return -ENOMEM;
        ssize_t n = read_full(fd, buf, CG_FILE_MAX);
        if (n < 0)
                return (int) n;
        if (n == CG_FILE_MAX)
                return -EFBIG;
        buf[n] = '\0';
        *ret = TAKE_PTR(buf);
        return 0;
}

/* A struct cgroup for path in the given controllers. Lock held (cgroup_add_controller() looks at
 * the mount table). */
static int cg_lib_new_locked(const char *path, const char *const *controllers, struct cgroup **ret)
{
        cleanup_cgroup struct cgroup *cg = cgroup_new_cgroup(path);

        if (!cg)
                return -ENOMEM;
        for (const char *const *c = controllers; *c; c++)
                if (!cgroup_add_controller(cg, *c))
                        return -EINVAL;
        *ret = TAKE_PTR(cg);
        return 0;
}

static int cg_lib_create_locked(const char *path, const char *const *controllers)
{
        cleanup_cgroup struct cgroup *cg = NULL;
        int r = cg_lib_new_locked(path, controllers, &cg);

        return r < 0 ? r : cg_lib_errno(cgroup_create_cgroup(cg, /* ignore_ownership= */ 1));
}

static int cg_lib_create(CgIo *io, const char *path, const char *const *controllers)
{
        (void) io;
        cg_lock();
        int r = cg_lib_create_locked(path, controllers);
        cg_unlock();
        return r;
}

static int cg_lib_write_locked(const char *controller, const char *path, const char *file,
                               const char *value)
{
        const char *const controllers[] = {controller, NULL};
        cleanup_cgroup struct cgroup *cg = NULL;
        int r = cg_lib_new_locked(path, controllers, &cg);

        if (r < 0)
                return r;
        if (cgroup_add_value_string(cgroup_get_controller(cg, controller), file, value) != 0)
                return -ENOMEM;
        return cg_lib_errno(cgroup_modify_cgroup(cg));
}

static int cg_lib_write(CgIo *io, const char *controller, const char *path, const char *file,
                        const char *value)
{
        cleanup_free char *p = NULL;
        int r;

        cg_lock();
        if (controller)
                r = cg_lib_write_locked(controller, path, file, value);
        else
                /* Core v2 files (cgroup.subtree_control, cgroup.freeze, cgroup.kill). */
                r = cg_lib_path_locked(io, NULL, path, file, &p);
        cg_unlock();
        if (r < 0 || controller)
                return r;
        return cg_file_write(p, value, 0);
}

static int cg_lib_read(CgIo *io, const char *controller, const char *path, const char *file,
                       char **ret)
{
        cleanup_free char *p = NULL;
        cleanup_free char *out = NULL;
        char name[NAME_MAX + 1];
        char line[4096];
        size_t outlen = 0;
        void *h = NULL;
        int r;

        if (!controller) {
                cg_lock();
                r = cg_lib_path_locked(io, NULL, path, file, &p);
                cg_unlock();
                return r < 0 ? r : cg_file_read(p, ret);
        }
        if ((size_t) snprintf(name, sizeof(name), "%s", file) >= sizeof(name))
                return -ENAMETOOLONG;
        out = strdup("");
        if (!out)
                return -ENOMEM;

        cg_lock();
        r = cgroup_read_value_begin(controller, path, name, &h, line, sizeof(line));
        while (r == 0) {
                size_t n = strlen(line);
                char *o = outlen + n < CG_FILE_MAX ? realloc(out, outlen + n + 1) : NULL;
                if (!o) {
                        r = -ENOMEM;
                        break;
                }
                out = o;
                memcpy(out + outlen, line, n + 1);
                outlen += n;
                r = cgroup_read_value_next(&h, line, sizeof(line));
        }
        if (r > 0)
                r = r == ECGEOF ? 0 : cg_lib_errno(r);
        if (h)
                (void) cgroup_read_value_end(&h);
        cg_unlock();
        if (r < 0)
                return r;
        *ret = TAKE_PTR(out);
        return 0;
}

static int cg_lib_exists(CgIo *io, const char *controller, const char *path, const char *file)
{
        cleanup_free char *p = NULL;
        int r;

        cg_lock();
        r = cg_lib_path_locked(io, controller, path, file, &p);
        cg_unlock();
        if (r < 0)
                return r;
        if (access(p, F_OK) == 0)
                return 1;
        return errno == ENOENT ? 0 : negative_errno();
}

static int cg_lib_remove_locked(const char *controller, const char *path)
{
        const char *const controllers[] = {controller, NULL};
        cleanup_cgroup struct cgroup *cg = NULL;
        int r = cg_lib_new_locked(path, controllers, &cg);

        /* EMPTY_ONLY: the default would move leftover tasks into the parent. */
        return r < 0 ? r : cg_lib_errno(cgroup_delete_cgroup_ext(cg, CGFLAG_DELETE_EMPTY_ONLY));
}

static int cg_lib_remove(CgIo *io, const char *controller, const char *path)
{
        int r = cg_lib_exists(io, controller, path, NULL);

        /* Not mounted here, or already gone (runc delete got there first). */
        if (r <= 0)
                return r == -ENODEV || r == -ENOENT ? 0 : r;
        cg_lock();
        r = cg_lib_remove_locked(controller, path);
        cg_unlock();
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return r;
        /* libcgroup 2.0.2 reports success when rmdir failed with EBUSY (tasks still exiting). */
        r = cg_lib_exists(io, controller, path, NULL);
        return r > 0 ? -EBUSY : r;
}

static int cg_lib_children(CgIo *io, const char *controller, const char *path, char ***ret)
{
        (void) io;
        cleanup_strv char **names = NULL;
        struct cgroup_file_info info;
        size_t n = 0;
        void *h = NULL;
        int base = 0, r;

        r = cg_strv_new(&names);
        if (r < 0)
                return r;
        cg_lock();
        r = cgroup_walk_tree_begin(controller, path, 1, &h, &info, &base);
        if (r == 0)
                r = cgroup_walk_tree_set_flags(&h, CGROUP_WALK_TYPE_PRE_DIR);
        while (r == 0) {
                if (info.type == CGROUP_FILE_TYPE_DIR && info.depth == 1) {
                        r = strv_push(&names, &n, strdup(info.path));
                        if (r < 0)
                                break;
                }
                r = cgroup_walk_tree_next(1, &h, &info, base);
        }
        if (r > 0)
                r = r == ECGEOF ? 0 : cg_lib_errno(r);
        if (h)
                (void) cgroup_walk_tree_end(&h);
        cg_unlock();
        if (r < 0)
                return r;
        *ret = TAKE_PTR(names);
        return 0;
}

static int cg_lib_procs(CgIo *io, const char *controller, const char *path, pid_t **ret,
                        size_t *ret_n)
{
        (void) io;
        cleanup_free pid_t *pids = NULL;
        size_t n = 0, cap = 0;
        char name[PATH_MAX];
        void *h = NULL;
        pid_t pid = 0;
        int r;

        if ((size_t) snprintf(name, sizeof(name), "%s", path) >= sizeof(name))
                return -ENAMETOOLONG;
        cg_lock();
        r = cgroup_get_task_begin(name, controller, &h, &pid);
        while (r == 0) {
                if (n == cap) {
                        size_t ncap = cap ? cap * 2 : 16;
                        pid_t *p = reallocarray(pids, ncap, sizeof(*p));
                        if (!p) {
                                r = -ENOMEM;
                                break;
                        }
                        pids = p;
                        cap = ncap;
                }
                pids[n++] = pid;
                r = cgroup_get_task_next(&h, &pid);
        }
        if (r > 0)
                r = r == ECGEOF ? 0 : cg_lib_errno(r);
        if (h)
                (void) cgroup_get_task_end(&h);
        cg_unlock();
        if (r < 0)
                return r;
        *ret = TAKE_PTR(pids);
        *ret_n = n;
        return 0;
}

static void cg_io_free(CgIo *io)
{
        if (!io)
                return;
        free(io->root);
        free(io->unified);
        free(io);
}

static const CgIoOps cg_io_libcgroup = {
        .create = cg_lib_create,
        .write = cg_lib_write,
        .read = cg_lib_read,
        .exists = cg_lib_exists,
        .remove = cg_lib_remove,
        .children = cg_lib_children,
        .procs = cg_lib_procs,
        .free = cg_io_free,
};

/* ---------------------------------------------------------------------------------------- */
/* I/O on plain directories (fake cgroupfs trees in tests)                                  */

static int cg_dir_path(CgIo *io, const char *controller, const char *path, const char *file,
                       char **ret)
{
        char *s = NULL;
        int r;

        if (io->per_controller)
                r = asprintf(&s, "%s/%s/%s%s%s", io->root, controller ? controller : "", path,
                             file ? "/" : "", file ? file : "");
        else
                r = asprintf(&s, "%s/%s%s%s", io->root, path, file ? "/" : "", file ? file : "");
        if (r < 0)
                return -ENOMEM;
        *ret = s;
        return 0;
}

static int cg_dir_create(CgIo *io, const char *path, const char *const *controllers)
{
        for (const char *const *c = controllers; *c; c++) {
                cleanup_free char *p = NULL;
                int r = cg_dir_path(io, *c, path, NULL, &p);
                if (r < 0)
                        return r;
                r = mkdir_p(p, 0755);
                if (r < 0)
                        return r;
                if (!io->per_controller)
                        break;
        }
        return 0;
}

static int cg_dir_write(CgIo *io, const char *controller, const char *path, const char *file,
                        const char *value)
{
        cleanup_free char *p = NULL;
        int r = cg_dir_path(io, controller, path, file, &p);

        if (r < 0)
                return r;
        /* The kernel creates interface files with the directory; a fake tree gets them here. */
        return cg_file_write(p, value, O_CREAT | O_TRUNC);
}

static int cg_dir_read(CgIo *io, const char *controller, const char *path, const char *file,
                       char **ret)
{
        cleanup_free char *p = NULL;
        int r = cg_dir_path(io, controller, path, file, &p);

        return r < 0 ? r : cg_file_read(p, ret);
}

static int cg_dir_exists(CgIo *io, const char *controller, const char *path, const char *file)
{
        cleanup_free char *p = NULL;
        int r = cg_dir_path(io, controller, path, file, &p);

        if (r < 0)
                return r;
        if (access(p, F_OK) == 0)
                return 1;
        return errno == ENOENT ? 0 : negative_errno();
}

static int cg_dir_remove(CgIo *io, const char *controller, const char *path)
{
        cleanup_free char *p = NULL;
        DIR *d = NULL;
        int r = cg_dir_path(io, controller, path, NULL, &p);

        if (r < 0)
                return r;
        /* A fake cgroup directory holds regular files; a real one's vanish with rmdir. */
        d = opendir(p);
        if (!d)
                return errno == ENOENT ? 0 : negative_errno();
        for (struct dirent *de; (de = readdir(d));) {
                struct stat st;
                if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
                    S_ISREG(st.st_mode))
                        (void) unlinkat(dirfd(d), de->d_name, 0);
        }
        (void) closedir(d);
        if (rmdir(p) < 0) {
                if (errno == ENOENT)
                        return 0;
                return errno == ENOTEMPTY ? -EBUSY : negative_errno();
        }
        return 0;
}

static int cg_dir_children(CgIo *io, const char *controller, const char *path, char ***ret)
{
        cleanup_strv char **names = NULL;
        cleanup_free char *p = NULL;
        size_t n = 0;
        DIR *d = NULL;
        int r = cg_dir_path(io, controller, path, NULL, &p);

        if (r < 0)
                return r;
        r = cg_strv_new(&names);
        if (r < 0)
                return r;
        d = opendir(p);
        if (!d)
                return negative_errno();
        for (struct dirent *de; (de = readdir(d));) {
                struct stat st;
                if (streq(de->d_name, ".") || streq(de->d_name, ".."))
                        continue;
                if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
                    !S_ISDIR(st.st_mode))
                        continue;
                r = strv_push(&names, &n, strdup(de->d_name));
                if (r < 0)
                        break;
        }
        (void) closedir(d);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(names);
        return 0;
}

static int cg_dir_procs(CgIo *io, const char *controller, const char *path, pid_t **ret,
                        size_t *ret_n)
{
        cleanup_free char *text = NULL;
        int r = cg_dir_read(io, controller, path, "cgroup.procs", &text);

        if (r == -ENOENT && cg_dir_exists(io, controller, path, NULL) > 0) {
                *ret = NULL; /* a fake cgroup without a cgroup.procs file: empty */
                *ret_n = 0;
                return 0;
        }
        if (r < 0)
                return r;
        return cg_parse_pids(text, ret, ret_n);
}

static const CgIoOps cg_io_dir = {
        .create = cg_dir_create,
        .write = cg_dir_write,
        .read = cg_dir_read,
        .exists = cg_dir_exists,
        .remove = cg_dir_remove,
        .children = cg_dir_children,
        .procs = cg_dir_procs,
        .free = cg_io_free,
};

/* ---------------------------------------------------------------------------------------- */
/* Public API                                                                               */

static bool cg_name_char_ok(char c)
{
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '-' || c == '_' || c == '.';
}

static bool cg_component_ok(const char *s, size_t len)
{
        if (len == 0 || len > CG_NAME_MAX)
                return false;
        if ((len == 1 && s[0] == '.') || (len == 2 && s[0] == '.' && s[1] == '.'))
                return false;
        for (size_t i = 0; i < len; i++)
                if (!cg_name_char_ok(s[i]))
                        return false;
        return true;
}

/* "sandpit", "/a/b/" -> "a/b"; every component must be a valid name. */
static int cg_normalize_parent(const char *parent, char **ret)
{
        cleanup_free char *s = NULL;
        size_t len;

        parent += strspn(parent, "/");
        len = strlen(parent);
        while (len > 0 && parent[len - 1] == '/')
                len--;
        s = strndup(parent, len);
        if (!s)
                return -ENOMEM;
        for (const char *c = s;;) {
                size_t n = strcspn(c, "/");
                if (!cg_component_ok(c, n))
                        return -EINVAL;
                if (!c[n])
                        break;
                c += n + 1;
        }
        *ret = TAKE_PTR(s);
        return 0;
}

static int cg_child_path(const CgManager *m, const char *id, char **ret)
{
        char *s = NULL;

        if (!m || !id || !cg_component_ok(id, strlen(id)))
                return -EINVAL;
        if (asprintf(&s, "%s/%s", m->parent, id) < 0)
                return -ENOMEM;
        *ret = s;
        return 0;
}

static int cg_limits_check(const CgLimits *l)
{
        uint32_t q = 0;

        return l ? cg_cpu_quota_us(l->cpu_cores, &q) : -EINVAL;
}

static bool cg_is_cgroup2(const char *p)
{
        struct statfs fs;

        return statfs(p, &fs) == 0 && fs.f_type == CGROUP2_MAGIC;
}

static int cg_detect_version(CgVersion *ret)
{
        struct statfs fs;

        if (statfs(CG_ROOT, &fs) < 0)
                return negative_errno();
        if (fs.f_type == CGROUP2_MAGIC) {
                *ret = CG_VERSION_V2;
                return 0;
        }
        /* Hybrid hosts mount an (often empty) cgroup2 at unified: the controllers we need are
         * the v1 ones. */
        *ret = CG_VERSION_V1;
        return 0;
}

void cg_manager_free(CgManager *m)
{
        if (!m)
                return;
        if (m->io)
                m->io->ops->free(m->io);
        free(m->parent);
        free(m);
}

DEFINE_CLEANUP_FUNC(CgManager, cg_manager_free)

static int cg_manager_alloc(CgVersion version, const char *parent, CgIo *io_in, CgManager **ret)
{
        __attribute__((cleanup(cg_manager_freep))) CgManager *m = NULL;
        CgIo *io = io_in;
        int r;

        m = calloc(1, sizeof(*m));
        if (!m) {
                io->ops->free(io);
                return -ENOMEM;
        }
        m->io = io;
        m->ops = version == CG_VERSION_V2 ? &cg_v2_ops : &cg_v1_ops;
        r = cg_normalize_parent(parent ? parent : CG_DEFAULT_PARENT, &m->parent);
        if (r < 0)
                return r;
        r = m->ops->setup(m);
        if (r < 0)
                return log_debug_errno(r, "cgroup: setting up parent %s failed", m->parent);
        *ret = TAKE_PTR(m);
        return 0;
}

int cg_manager_new(CgVersion version, const char *parent, CgManager **ret)
{
        CgIo *io = NULL;
        int r;

        if (!ret || version < CG_VERSION_AUTO || version > CG_VERSION_V2)
                return -EINVAL;
        if (version == CG_VERSION_AUTO) {
                r = cg_detect_version(&version);
                if (r < 0)
                        return r;
        } else if (version == CG_VERSION_V1 && cg_is_cgroup2(CG_ROOT)) {
                return -ENODEV; /* a unified-only host has no v1 hierarchies */
        }
        io = calloc(1, sizeof(*io));
        if (!io)
                return -ENOMEM;
        io->ops = &cg_io_libcgroup;

        cg_lock();
        r = cg_lib_init_locked();
        if (r >= 0 && version == CG_VERSION_V2) {
                r = cg_lib_errno(cgroup_get_subsys_mount_point("memory", &io->unified));
                if (r == -ENOENT)
                        r = -ENODEV;
        }
        cg_unlock();
        if (r >= 0 && version == CG_VERSION_V2 && !cg_is_cgroup2(io->unified))
                r = -ENODEV; /* v2 asked for, but memory is a v1 hierarchy here */
        if (r < 0) {
                cg_io_free(io);
                return log_debug_errno(r, "cgroup: libcgroup initialisation failed");
        }
        return cg_manager_alloc(version, parent, io, ret);
}

int cg_manager_new_at(CgVersion version, const char *parent, const char *root, CgManager **ret)
{
        CgIo *io = NULL;

        if (!ret || !root || version < CG_VERSION_AUTO || version > CG_VERSION_V2)
                return -EINVAL;
        if (version == CG_VERSION_AUTO) {
                cleanup_free char *p = NULL;
                if (asprintf(&p, "%s/cgroup.controllers", root) < 0)
                        return -ENOMEM;
                version = access(p, F_OK) == 0 ? CG_VERSION_V2 : CG_VERSION_V1;
        }
        io = calloc(1, sizeof(*io));
        if (!io)
                return -ENOMEM;
        io->ops = &cg_io_dir;
        io->per_controller = version == CG_VERSION_V1;
        io->root = strdup(root);
        if (!io->root) {
                cg_io_free(io);
                return -ENOMEM;
        }
        return cg_manager_alloc(version, parent, io, ret);
}

CgVersion cg_manager_version(const CgManager *m)
{
        return m ? m->ops->version : CG_VERSION_AUTO;
}

int cg_create(CgManager *m, const char *id, const CgLimits *limits)
{
        cleanup_free char *path = NULL;
        int r = cg_child_path(m, id, &path);

        if (r < 0)
                return r;
        r = cg_limits_check(limits);
        if (r < 0)
                return r;
        r = m->ops->exists(m, path);
        if (r < 0)
                return r;
        if (r > 0)
                return -EEXIST;
        r = m->ops->create(m, path, limits);
        if (r < 0) {
                (void) m->ops->destroy(m, path);
                return log_debug_errno(r, "cgroup: creating %s failed", path);
        }
        return 0;
}

int cg_update(CgManager *m, const char *id, const CgLimits *limits)
{
        cleanup_free char *path = NULL;
        int r = cg_child_path(m, id, &path);

        if (r < 0)
                return r;
        r = cg_limits_check(limits);
        if (r < 0)
                return r;
        r = m->ops->exists(m, path);
        if (r <= 0)
                return r < 0 ? r : -ENOENT;
        return m->ops->apply(m, path, limits);
}

int cg_charge_pid(CgManager *m, const char *id, pid_t pid)
{
        cleanup_free char *path = NULL;
        char v[24];
        int r = cg_child_path(m, id, &path);

        if (r < 0)
                return r;
        (void) snprintf(v, sizeof(v), "%d", (int) pid);
        /* v2: the core cgroup.procs file; v1: the memory hierarchy's. */
        return m->io->ops->write(m->io, m->ops->version == CG_VERSION_V2 ? NULL : "memory", path,
                                 "cgroup.procs", v);
}

int cg_runtime_path(const CgManager *m, const char *id, char **ret)
{
        cleanup_free char *path = NULL;
        char *s = NULL;
        int r = cg_child_path(m, id, &path);

        if (r < 0)
                return r;
        if (asprintf(&s, "/%s", path) < 0)
                return -ENOMEM;
        *ret = s;
        return 0;
}

int cg_read_stats(CgManager *m, const char *id, CgStats *ret)
{
        cleanup_free char *path = NULL;
        int r = cg_child_path(m, id, &path);

        if (r < 0)
                return r;
        return m->ops->read_stats(m, path, ret);
}

int cg_kill_all(CgManager *m, const char *id, int sig)
{
        cleanup_free char *path = NULL;
        int r = cg_child_path(m, id, &path);

        if (r < 0)
                return r;
        if (sig <= 0 || sig >= NSIG)
                return -EINVAL;
        return m->ops->kill_all(m, path, sig);
}

int cg_destroy(CgManager *m, const char *id)
{
        cleanup_free char *path = NULL;
        int r = cg_child_path(m, id, &path);

        if (r < 0)
                return r;
        r = m->ops->destroy(m, path);
        if (r < 0)
                return log_debug_errno(r, "cgroup: removing %s failed", path);
        return 0;
}

int cg_list(CgManager *m, char ***ret_ids)
{
        if (!m || !ret_ids)
                return -EINVAL;
        return m->ops->list(m, ret_ids);
}

int cg_freeze(CgManager *m, const char *id, bool frozen)
{
        cleanup_free char *path = NULL;
        int r = cg_child_path(m, id, &path);

        if (r < 0)
                return r;
        return m->ops->freeze(m, path, frozen);
}

int cg_strv_merge(char ***acc, size_t *n, char *const *names)
{
        for (char *const *s = names; s && *s; s++) {
                bool dup = false;
                for (size_t i = 0; i < *n; i++)
                        if (streq((*acc)[i], *s))
                                dup = true;
                if (dup)
                        continue;
                int r = strv_push(acc, n, strdup(*s));
                if (r < 0)
                        return r;
        }
        return 0;
}

/* NOLINTEND(clang-analyzer-unix.Malloc) */

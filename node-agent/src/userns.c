#include "userns.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/mount.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sandpit/log.h"
#include "sandpit/macro.h"
#include "sandpit/util.h"

struct UsernsAlloc {
        pthread_mutex_t lock; /* guards used, next, n_used */
        uint32_t base, size, count;
        uint32_t next; /* where the next search starts */
        uint32_t n_used;
        uint8_t *used; /* one bit a range */
};

int userns_alloc_new(uint32_t base, uint32_t size, UsernsAlloc **ret)
{
        if (size == 0 || base > UINT32_MAX - 1 - size)
                return -EINVAL;
        uint64_t count = ((uint64_t) UINT32_MAX - 1 - base) / size;
        if (count > USERNS_MAX_RANGES)
                count = USERNS_MAX_RANGES;
        UsernsAlloc *a = calloc(1, sizeof(*a));
        if (!a)
                return -ENOMEM;
        if (!(a->used = calloc((size_t) (count + 7) / 8, 1))) {
                free(a);
                return -ENOMEM;
        }
        (void) pthread_mutex_init(&a->lock, NULL);
        a->base = base;
        a->size = size;
        a->count = (uint32_t) count;
        *ret = a;
        return 0;
}

void userns_alloc_free(UsernsAlloc *a)
{
        if (!a)
                return;
        (void) pthread_mutex_destroy(&a->lock);
        free(a->used);
        free(a);
}

static bool bit_get(const UsernsAlloc *a, uint32_t i)
{
        return a->used[i / 8] & (1u << (i % 8));
}

static void bit_set(UsernsAlloc *a, uint32_t i, bool v)
{
        if (v)
                a->used[i / 8] |= (uint8_t) (1u << (i % 8));
        else
                a->used[i / 8] &= (uint8_t) ~(1u << (i % 8));
}

int userns_alloc_take(UsernsAlloc *a, uint32_t *ret_host_id)
{
        int r = -ENOSPC;
        (void) pthread_mutex_lock(&a->lock);
        for (uint32_t k = 0; k < a->count; k++) {
                uint32_t i = (a->next + k) % a->count;
                if (bit_get(a, i))
                        continue;
                bit_set(a, i, true);
                a->n_used++;
                a->next = (i + 1) % a->count;
                *ret_host_id = a->base + i * a->size;
                r = 0;
                break;
        }
        (void) pthread_mutex_unlock(&a->lock);
        return r;
}

/* The index of host_id's range, or -EINVAL. */
static int64_t index_of(const UsernsAlloc *a, uint32_t host_id)
{
        if (host_id < a->base || (host_id - a->base) % a->size != 0 ||
            (host_id - a->base) / a->size >= a->count)
                return -EINVAL;
        return (host_id - a->base) / a->size;
}

int userns_alloc_mark(UsernsAlloc *a, uint32_t host_id)
{
        int64_t i = index_of(a, host_id);
        if (i < 0)
                return (int) i;
        int r = 0;
        (void) pthread_mutex_lock(&a->lock);
        if (bit_get(a, (uint32_t) i)) {
                r = -EEXIST;
        } else {
                bit_set(a, (uint32_t) i, true);
                a->n_used++;
        }
        (void) pthread_mutex_unlock(&a->lock);
        return r;
}

int userns_alloc_release(UsernsAlloc *a, uint32_t host_id)
{
        int64_t i = index_of(a, host_id);
        if (i < 0)
                return (int) i;
        int r = 0;
        (void) pthread_mutex_lock(&a->lock);
        if (!bit_get(a, (uint32_t) i)) {
                r = -ENOENT;
        } else {
                bit_set(a, (uint32_t) i, false);
                a->n_used--;
        }
        (void) pthread_mutex_unlock(&a->lock);
        return r;
}

uint32_t userns_alloc_size(const UsernsAlloc *a)
{
        return a->size;
}

uint32_t userns_alloc_count(const UsernsAlloc *a)
{
        return a->count;
}

uint32_t userns_alloc_used(UsernsAlloc *a)
{
        (void) pthread_mutex_lock(&a->lock);
        uint32_t n = a->n_used;
        (void) pthread_mutex_unlock(&a->lock);
        return n;
}

static int write_map(pid_t pid, const char *file, const char *map)
{
        char path[64];
        (void) snprintf(path, sizeof(path), "/proc/%d/%s", (int) pid, file);
        cleanup_close int fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd < 0)
                return negative_errno();
        return write_all(fd, map, strlen(map));
}

/* Forks a child that enters or makes the namespaces prep() sets up and then
 * waits to be killed; *ret_pid once it says it is ready. The child makes only
 * async-signal-safe calls, as the agent has threads, and waits for a signal,
 * not for a pipe to close, since a concurrent fork elsewhere in the agent may
 * hold a copy of any pipe end. */
typedef int (*ChildPrep)(const void *arg);

static void child_stop(pid_t pid);

static int child_start(ChildPrep prep, const void *arg, pid_t *ret_pid)
{
        int ready[2];
        if (pipe2(ready, O_CLOEXEC) < 0)
                return negative_errno();
        pid_t parent = getpid();
        pid_t pid = fork();
        if (pid == 0) {
                char c = prep(arg) == 0 ? 'y' : 'n';
                /* Dies with the agent, even a SIGKILLed one: else it would
                 * pause forever. Set after prep(), whose change of ids clears
                 * it; the parent may already be gone by then. */
                if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
                        _exit(1);
                if (write(ready[1], &c, 1) != 1)
                        _exit(1);
                for (;;)
                        (void) pause();
        }
        (void) close(ready[1]);
        if (pid < 0) {
                int r = negative_errno();
                (void) close(ready[0]);
                return r;
        }
        char c = 0;
        int r = read(ready[0], &c, 1) == 1 && c == 'y' ? 0 : -EPERM;
        (void) close(ready[0]);
        if (r < 0) {
                child_stop(pid);
                return r;
        }
        *ret_pid = pid;
        return 0;
}

static void child_stop(pid_t pid)
{
        (void) kill(pid, SIGKILL);
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
                ;
}

/* Binds /proc/<pid>/ns/<ns> onto a new file at pin_path, as `ip netns` does. */
static int pin_ns(pid_t pid, const char *ns, const char *pin_path)
{
        char src[64];
        (void) snprintf(src, sizeof(src), "/proc/%d/ns/%s", (int) pid, ns);
        int fd = open(pin_path, O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0400);
        if (fd < 0)
                return negative_errno();
        (void) close(fd);
        if (mount(src, pin_path, NULL, MS_BIND, NULL) < 0) {
                int r = negative_errno();
                (void) unlink(pin_path);
                return r;
        }
        return 0;
}

/* The namespace's creator is what the kernel charges every per-user count of
 * it to, one level up (kernel/ucount.c): created by root, all sandboxes would
 * share root's limits again. So it is made as the range's first host id. */
static int prep_userns(const void *arg)
{
        gid_t id = *(const uint32_t *) arg;
        /* Raw syscalls: only this (forked, single-threaded) process changes. */
        if (syscall(SYS_setgroups, 0, NULL) < 0 || syscall(SYS_setresgid, id, id, id) < 0 ||
            syscall(SYS_setresuid, id, id, id) < 0)
                return -1;
        return unshare(CLONE_NEWUSER);
}

int userns_make(uint32_t host_id, uint32_t size, int *ret_fd)
{
        pid_t pid = -1;
        int r = child_start(prep_userns, &host_id, &pid);
        if (r < 0)
                return r;
        char map[64];
        (void) snprintf(map, sizeof(map), "0 %u %u\n", host_id, size);
        if ((r = write_map(pid, "uid_map", map)) == 0)
                r = write_map(pid, "gid_map", map);
        int fd = -1;
        if (r == 0) {
                char path[64];
                (void) snprintf(path, sizeof(path), "/proc/%d/ns/user", (int) pid);
                if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
                        r = negative_errno();
        }
        child_stop(pid); /* the namespace lives on in the fd */
        if (r < 0)
                return r;
        *ret_fd = fd;
        return 0;
}

/* --- namespaces made ahead ----------------------------------------------- */

#define SPARES_MAX      8
#define SPARES_RETRY_MS 1000
#define DROPS_MAX       64

struct UsernsSpares {
        UsernsAlloc *alloc;
        pthread_mutex_t lock; /* guards everything below */
        pthread_cond_t wake;
        pthread_t thread;
        unsigned want, n;
        bool stopping;
        struct {
                uint32_t host_id;
                int fd;
        } ready[SPARES_MAX];
        int drops[DROPS_MAX]; /* fds to close */
        unsigned n_drops;
};

/* Closes the fds handed over (s->lock held; dropped while closing). */
static void close_drops_locked(UsernsSpares *s)
{
        while (s->n_drops > 0) {
                int fd = s->drops[--s->n_drops];
                (void) pthread_mutex_unlock(&s->lock);
                (void) close(fd);
                (void) pthread_mutex_lock(&s->lock);
        }
}

static void *spares_main(void *arg)
{
        UsernsSpares *s = arg;
        struct timespec retry_at = {0}; /* after a failure: not before then */
        (void) pthread_mutex_lock(&s->lock);
        while (!s->stopping) {
                if (s->n_drops > 0) {
                        close_drops_locked(s);
                        continue;
                }
                struct timespec now;
                (void) clock_gettime(CLOCK_MONOTONIC, &now);
                bool backoff = now.tv_sec < retry_at.tv_sec ||
                               (now.tv_sec == retry_at.tv_sec && now.tv_nsec < retry_at.tv_nsec);
                if (s->n >= s->want || backoff) {
                        if (backoff)
                                (void) pthread_cond_timedwait(&s->wake, &s->lock, &retry_at);
                        else
                                (void) pthread_cond_wait(&s->wake, &s->lock);
                        continue;
                }
                (void) pthread_mutex_unlock(&s->lock);
                uint32_t host_id = 0;
                int fd = -1;
                struct timespec t0, t1;
                (void) clock_gettime(CLOCK_MONOTONIC, &t0);
                int r = userns_alloc_take(s->alloc, &host_id);
                if (r == 0 && (r = userns_make(host_id, userns_alloc_size(s->alloc), &fd)) < 0)
                        (void) userns_alloc_release(s->alloc, host_id);
                (void) clock_gettime(CLOCK_MONOTONIC, &t1);
                if (r == 0)
                        log_debug("made a user namespace ahead (host ids from %u) in %.2f ms",
                                  host_id,
                                  (double) (t1.tv_sec - t0.tv_sec) * 1e3 +
                                          (double) (t1.tv_nsec - t0.tv_nsec) / 1e6);
                (void) pthread_mutex_lock(&s->lock);
                if (r == 0) {
                        s->ready[s->n].host_id = host_id;
                        s->ready[s->n].fd = fd;
                        s->n++;
                } else {
                        /* All ranges taken, or the kernel refused: creates
                         * make their own (and say why) until a later try
                         * works. */
                        log_debug_errno(r, "cannot make a user namespace ahead");
                        deadline_after_ms(&retry_at, SPARES_RETRY_MS);
                }
        }
        (void) pthread_mutex_unlock(&s->lock);
        return NULL;
}

int userns_spares_start(UsernsAlloc *a, unsigned want, UsernsSpares **ret)
{
        if (want == 0 || want > SPARES_MAX)
                return -EINVAL;
        UsernsSpares *s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->alloc = a;
        s->want = want;
        (void) pthread_mutex_init(&s->lock, NULL);
        cond_init_monotonic(&s->wake);
        int r = pthread_create(&s->thread, NULL, spares_main, s);
        if (r != 0) {
                (void) pthread_cond_destroy(&s->wake);
                (void) pthread_mutex_destroy(&s->lock);
                free(s);
                return -r;
        }
        *ret = s;
        return 0;
}

int userns_spares_take(UsernsSpares *s, uint32_t *ret_host_id, int *ret_fd)
{
        int r = -EAGAIN;
        (void) pthread_mutex_lock(&s->lock);
        if (s->n > 0) {
                /* The oldest: ranges are handed out in the allocator's order. */
                *ret_host_id = s->ready[0].host_id;
                *ret_fd = s->ready[0].fd;
                s->n--;
                memmove(&s->ready[0], &s->ready[1], s->n * sizeof(s->ready[0]));
                r = 0;
        }
        (void) pthread_mutex_unlock(&s->lock);
        return r;
}

void userns_spares_refill(UsernsSpares *s)
{
        (void) pthread_mutex_lock(&s->lock);
        (void) pthread_cond_signal(&s->wake);
        (void) pthread_mutex_unlock(&s->lock);
}

void userns_spares_drop(UsernsSpares *s, int fd)
{
        (void) pthread_mutex_lock(&s->lock);
        bool queued = !s->stopping && s->n_drops < DROPS_MAX;
        if (queued) {
                s->drops[s->n_drops++] = fd;
                (void) pthread_cond_signal(&s->wake);
        }
        (void) pthread_mutex_unlock(&s->lock);
        if (!queued)
                (void) close(fd);
}

void userns_spares_stop(UsernsSpares *s)
{
        if (!s)
                return;
        (void) pthread_mutex_lock(&s->lock);
        s->stopping = true;
        (void) pthread_cond_signal(&s->wake);
        (void) pthread_mutex_unlock(&s->lock);
        (void) pthread_join(s->thread, NULL);
        for (unsigned i = 0; i < s->n_drops; i++)
                (void) close(s->drops[i]);
        for (unsigned i = 0; i < s->n; i++) {
                (void) close(s->ready[i].fd);
                (void) userns_alloc_release(s->alloc, s->ready[i].host_id);
        }
        (void) pthread_cond_destroy(&s->wake);
        (void) pthread_mutex_destroy(&s->lock);
        free(s);
}

int userns_check(uint32_t host_id)
{
        pid_t pid = -1;
        int r = child_start(prep_userns, &host_id, &pid);
        if (r == 0)
                child_stop(pid);
        return r;
}

static int prep_netns(const void *arg)
{
        if (setns(*(const int *) arg, CLONE_NEWUSER) < 0)
                return -1;
        return unshare(CLONE_NEWNET);
}

int userns_netns_create(const char *userns_path, const char *pin_path)
{
        cleanup_close int ufd = open(userns_path, O_RDONLY | O_CLOEXEC);
        if (ufd < 0)
                return negative_errno();
        pid_t pid = -1;
        int r = child_start(prep_netns, &ufd, &pid);
        if (r < 0)
                return r;
        r = pin_ns(pid, "net", pin_path);
        child_stop(pid);
        return r;
}

int userns_idmapped_tree(const char *path, int userns_fd, int *ret_fd)
{
        cleanup_close int fd =
                (int) syscall(SYS_open_tree, AT_FDCWD, path, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
        if (fd < 0)
                return negative_errno();
        struct mount_attr attr = {.attr_set = MOUNT_ATTR_IDMAP, .userns_fd = (uint64_t) userns_fd};
        if (syscall(SYS_mount_setattr, fd, "", AT_EMPTY_PATH, &attr, sizeof(attr)) < 0)
                return negative_errno();
        *ret_fd = TAKE_FD(fd);
        return 0;
}

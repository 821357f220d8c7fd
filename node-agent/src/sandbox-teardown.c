/* The teardown queue (sandbox-teardown.h): a FIFO of jobs and a fixed set of
 * worker threads; one lock for all of it. */
#include "sandbox-teardown.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "sandpit/macro.h"
#include "sandpit/util.h"

#define MAX_WORKERS 16

typedef struct Job {
        void *job;
        struct Job *next;
} Job;

struct TeardownQueue {
        TeardownFn fn;
        void *userdata;
        /* lock protects everything below; cond: a job came, or stopping. */
        pthread_mutex_t lock;
        pthread_cond_t cond;
        Job *head, *tail;
        size_t pending; /* queued plus running */
        bool stopping;
        unsigned nthreads;
        pthread_t threads[MAX_WORKERS];
};

static void *worker_main(void *arg)
{
        TeardownQueue *q = arg;
        (void) pthread_mutex_lock(&q->lock);
        for (;;) {
                while (!q->head && !q->stopping)
                        (void) pthread_cond_wait(&q->cond, &q->lock);
                Job *j = q->head;
                if (!j) /* stopping and drained */
                        break;
                q->head = j->next;
                if (!q->head)
                        q->tail = NULL;
                (void) pthread_mutex_unlock(&q->lock);
                q->fn(j->job, q->userdata);
                free(j);
                (void) pthread_mutex_lock(&q->lock);
                q->pending--;
        }
        (void) pthread_mutex_unlock(&q->lock);
        return NULL;
}

static void stop_and_join(TeardownQueue *q)
{
        (void) pthread_mutex_lock(&q->lock);
        q->stopping = true;
        (void) pthread_cond_broadcast(&q->cond);
        (void) pthread_mutex_unlock(&q->lock);
        for (unsigned i = 0; i < q->nthreads; i++)
                (void) pthread_join(q->threads[i], NULL);
        q->nthreads = 0;
}

void teardown_queue_free(TeardownQueue *q)
{
        if (!q)
                return;
        stop_and_join(q);
        (void) pthread_cond_destroy(&q->cond);
        (void) pthread_mutex_destroy(&q->lock);
        free(q);
}

int teardown_queue_new(unsigned workers, TeardownFn fn, void *userdata, TeardownQueue **ret)
{
        if (workers == 0 || workers > MAX_WORKERS || !fn || !ret)
                return -EINVAL;
        TeardownQueue *q = calloc(1, sizeof(*q));
        if (!q)
                return -ENOMEM;
        q->fn = fn;
        q->userdata = userdata;
        (void) pthread_mutex_init(&q->lock, NULL);
        (void) pthread_cond_init(&q->cond, NULL);
        for (unsigned i = 0; i < workers; i++) {
                int r = -pthread_create(&q->threads[i], NULL, worker_main, q);
                if (r < 0) {
                        teardown_queue_free(q);
                        return r;
                }
                q->nthreads++;
        }
        *ret = q;
        return 0;
}

int teardown_queue_push(TeardownQueue *q, void *job)
{
        if (!q)
                return -ESHUTDOWN;
        Job *j = calloc(1, sizeof(*j));
        if (!j)
                return -ENOMEM;
        j->job = job;
        (void) pthread_mutex_lock(&q->lock);
        if (q->stopping) {
                (void) pthread_mutex_unlock(&q->lock);
                free(j);
                return -ESHUTDOWN;
        }
        if (q->tail)
                q->tail->next = j;
        else
                q->head = j;
        q->tail = j;
        q->pending++;
        (void) pthread_cond_signal(&q->cond);
        (void) pthread_mutex_unlock(&q->lock);
        return 0;
}

size_t teardown_queue_pending(TeardownQueue *q)
{
        if (!q)
                return 0;
        (void) pthread_mutex_lock(&q->lock);
        size_t n = q->pending;
        (void) pthread_mutex_unlock(&q->lock);
        return n;
}

/* --- runc's state of a dead container ------------------------------------ */

#define RUNC_STATE_MAX     (4u << 20)
#define RUNC_INIT_WAIT_MS  2000
#define CGROUP_RMDIR_TRIES 50
#define CGROUP_FS          "/sys/fs/cgroup/"

/* The start time (in ticks since boot, field 22 of /proc/PID/stat) of pid;
 * -ENOENT when there is no such process, -ESRCH when it is a zombie. */
static int proc_start_time(pid_t pid, uint64_t *ret)
{
        char path[64];
        cleanup_free char *buf = NULL;
        (void) snprintf(path, sizeof(path), "/proc/%d/stat", (int) pid);
        int r = read_file(path, 4096, &buf, NULL);
        if (r < 0)
                return r == -ESRCH ? -ENOENT : r;
        const char *p = strrchr(buf, ')'); /* the command may hold anything */
        if (!p || p[1] != ' ' || !p[2])
                return -EIO;
        if (p[2] == 'Z' || p[2] == 'X')
                return -ESRCH;
        p += 2; /* field 3, the state */
        for (int field = 3; field < 22; field++) {
                p = strchr(p, ' ');
                if (!p)
                        return -EIO;
                p++;
        }
        char *end = NULL;
        errno = 0;
        unsigned long long v = strtoull(p, &end, 10);
        if (errno || end == p)
                return -EIO;
        *ret = v;
        return 0;
}

/* Waits until init (pid, started at start) has exited: through a pidfd, which
 * turns readable when the process exits. */
static int wait_init_gone(pid_t pid, uint64_t start)
{
        if (pid <= 0)
                return -EINVAL;
        cleanup_close int fd = pidfd_open(pid, 0);
        if (fd < 0)
                return errno == ESRCH ? 0 : -errno;
        uint64_t now = 0;
        int r = proc_start_time(pid, &now);
        if (r == -ENOENT || r == -ESRCH || (r == 0 && now != start))
                return 0; /* gone, a zombie, or the pid is another process's now */
        if (r < 0)
                return r;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        for (;;) {
                int n = poll(&p, 1, RUNC_INIT_WAIT_MS);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                return n == 0 ? -ETIMEDOUT : 0;
        }
}

/* A cgroup path as runc records it: under /sys/fs/cgroup, no "..", its last
 * component the container's id. */
static bool runc_cgroup_path_ok(const char *path, const char *id)
{
        size_t n = strlen(path), k = strlen(id);
        if (strncmp(path, CGROUP_FS, strlen(CGROUP_FS)) != 0 || strstr(path, "/..") || n <= k + 1)
                return false;
        return path[n - k - 1] == '/' && streq(path + n - k, id);
}

static void short_pause(void)
{
        struct timespec ts = {.tv_nsec = 10000000L}; /* 10 ms */
        (void) nanosleep(&ts, NULL);
}

/* rmdir of a cgroup and, first, of any child cgroups made under it (runc
 * removes those too). A cgroup whose last task is still exiting refuses with
 * EBUSY for a moment: tried again (as runc does), then given up. */
static int cgroup_rmdir_tree(const char *path, unsigned depth)
{
        if (depth > 16)
                return -ELOOP;
        for (unsigned i = 0; i < CGROUP_RMDIR_TRIES; i++) {
                if (rmdir(path) == 0 || errno == ENOENT)
                        return 0;
                if (errno != EBUSY && errno != ENOTEMPTY)
                        return -errno;
                DIR *d = opendir(path);
                if (!d)
                        return errno == ENOENT ? 0 : -errno;
                bool children = false;
                int r = 0;
                struct dirent *e;
                while (r == 0 && (e = readdir(d))) {
                        if (e->d_type != DT_DIR || streq(e->d_name, ".") || streq(e->d_name, ".."))
                                continue;
                        char sub[4096];
                        if (snprintf(sub, sizeof(sub), "%s/%s", path, e->d_name) >=
                            (int) sizeof(sub)) {
                                r = -ENAMETOOLONG;
                                break;
                        }
                        children = true;
                        r = cgroup_rmdir_tree(sub, depth + 1);
                }
                (void) closedir(d);
                if (r < 0)
                        return r;
                if (!children)
                        short_pause(); /* tasks still leaving */
        }
        return -EBUSY;
}

/* Whether a hooks object of runc's config holds a poststop hook. */
static bool has_poststop(json_object *config)
{
        json_object *hooks = NULL, *post = NULL;
        if (!json_object_object_get_ex(config, "hooks", &hooks) || !hooks)
                return false;
        if (!json_object_object_get_ex(hooks, "poststop", &post) || !post)
                return false;
        return !json_object_is_type(post, json_type_array) || json_object_array_length(post) > 0;
}

int teardown_runc_state(const char *root, const char *id)
{
        if (!root || !id || !id_is_valid(id))
                return -EINVAL;
        char dir[4096], path[4096];
        if (snprintf(dir, sizeof(dir), "%s/%s", root, id) >= (int) sizeof(dir) ||
            snprintf(path, sizeof(path), "%s/state.json", dir) >= (int) sizeof(path))
                return -ENAMETOOLONG;
        struct stat st;
        if (lstat(dir, &st) < 0)
                return errno == ENOENT ? 0 : -errno; /* unknown to runc: nothing to do */
        cleanup_free char *text = NULL;
        int r = read_file(path, RUNC_STATE_MAX, &text, NULL);
        if (r < 0)
                return r; /* e.g. runc stopped before writing it: runc delete decides */
        json_object *o = json_tokener_parse(text);
        json_object *pid = NULL, *start = NULL, *paths = NULL, *config = NULL, *v = NULL;
        r = 0;
        if (!o || !json_object_object_get_ex(o, "init_process_pid", &pid) ||
            !json_object_object_get_ex(o, "init_process_start", &start) ||
            !json_object_object_get_ex(o, "cgroup_paths", &paths) ||
            !json_object_is_type(paths, json_type_object) ||
            !json_object_object_get_ex(o, "config", &config) ||
            !json_object_is_type(config, json_type_object))
                r = -EBADMSG;
        else if (has_poststop(config) ||
                 (json_object_object_get_ex(o, "intel_rdt_path", &v) &&
                  !streq_ptr(json_object_get_string(v), NULL) && *json_object_get_string(v)) ||
                 (json_object_object_get_ex(config, "cgroups", &v) &&
                  json_object_object_get_ex(v, "systemd", &v) && json_object_get_boolean(v)))
                r = -EOPNOTSUPP;
        if (r == 0) {
                json_object_object_foreach(paths, key, value) {
                        (void) key;
                        if (!json_object_is_type(value, json_type_string) ||
                            !runc_cgroup_path_ok(json_object_get_string(value), id))
                                r = -EBADMSG;
                }
        }
        if (r == 0)
                r = wait_init_gone((pid_t) json_object_get_int(pid),
                                   (uint64_t) json_object_get_int64(start));
        if (r == 0) {
                json_object_object_foreach(paths, key2, value2) {
                        (void) key2;
                        int k = cgroup_rmdir_tree(json_object_get_string(value2), 0);
                        if (k < 0 && r == 0)
                                r = k;
                }
        }
        json_object_put(o);
        if (r < 0)
                return r;
        return rm_rf(dir);
}

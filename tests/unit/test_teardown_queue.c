/* node-agent/sandbox-teardown: every pushed job runs once, pending counts
 * queued and running jobs, free drains the queue, pushes after it are refused;
 * teardown_runc_state() removes a dead container's state and refuses (leaving
 * it for `runc delete`) what it does not expect. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "sandbox-teardown.h"

#define NJOBS 200

typedef struct {
        pthread_mutex_t lock;
        pthread_cond_t cond;
        bool hold; /* jobs wait until released */
        unsigned started;
        unsigned runs[NJOBS];
} Ctx;

static void job_fn(void *job, void *userdata)
{
        Ctx *c = userdata;
        size_t i = (size_t) (uintptr_t) job;
        pthread_mutex_lock(&c->lock);
        c->started++;
        pthread_cond_broadcast(&c->cond);
        while (c->hold)
                pthread_cond_wait(&c->cond, &c->lock);
        c->runs[i]++;
        pthread_mutex_unlock(&c->lock);
}

static void ctx_init(Ctx *c)
{
        *c = (Ctx){0};
        pthread_mutex_init(&c->lock, NULL);
        pthread_cond_init(&c->cond, NULL);
}

static void ctx_done(Ctx *c)
{
        pthread_mutex_destroy(&c->lock);
        pthread_cond_destroy(&c->cond);
}

static void test_every_job_once_and_drained_by_free(void **state)
{
        (void) state;
        Ctx c;
        ctx_init(&c);
        TeardownQueue *q = NULL;
        assert_int_equal(teardown_queue_new(2, job_fn, &c, &q), 0);
        for (size_t i = 0; i < NJOBS; i++)
                assert_int_equal(teardown_queue_push(q, (void *) (uintptr_t) i), 0);
        teardown_queue_free(q); /* waits for all of them */
        for (size_t i = 0; i < NJOBS; i++)
                assert_int_equal(c.runs[i], 1);
        ctx_done(&c);
}

static void test_pending_counts_queued_and_running(void **state)
{
        (void) state;
        Ctx c;
        ctx_init(&c);
        c.hold = true;
        TeardownQueue *q = NULL;
        assert_int_equal(teardown_queue_new(2, job_fn, &c, &q), 0);
        assert_int_equal(teardown_queue_pending(q), 0);
        for (size_t i = 0; i < 5; i++)
                assert_int_equal(teardown_queue_push(q, (void *) (uintptr_t) i), 0);
        /* Both workers hold a job; three wait in the queue. */
        pthread_mutex_lock(&c.lock);
        while (c.started < 2)
                pthread_cond_wait(&c.cond, &c.lock);
        pthread_mutex_unlock(&c.lock);
        assert_int_equal(teardown_queue_pending(q), 5);
        assert_int_equal(c.started, 2);
        pthread_mutex_lock(&c.lock);
        c.hold = false;
        pthread_cond_broadcast(&c.cond);
        pthread_mutex_unlock(&c.lock);
        teardown_queue_free(q);
        for (size_t i = 0; i < 5; i++)
                assert_int_equal(c.runs[i], 1);
        ctx_done(&c);
}

/* A job that pushes another while the queue is being freed: refused, so the
 * caller does the work itself and nothing is lost or run after free. */
static TeardownQueue *pushing_q;
static int late_push;

static void pushing_fn(void *job, void *userdata)
{
        (void) userdata;
        if (job)
                late_push = teardown_queue_push(pushing_q, NULL);
}

static void test_push_after_free_began_is_refused(void **state)
{
        (void) state;
        assert_int_equal(teardown_queue_new(1, pushing_fn, NULL, &pushing_q), 0);
        assert_int_equal(teardown_queue_push(pushing_q, (void *) 1), 0);
        /* The job may run before or after free began: either its push was
         * taken (and drained) or refused with -ESHUTDOWN. */
        teardown_queue_free(pushing_q);
        assert_true(late_push == 0 || late_push == -ESHUTDOWN);
        assert_int_equal(teardown_queue_push(NULL, NULL), -ESHUTDOWN);
        assert_int_equal(teardown_queue_pending(NULL), 0);
        teardown_queue_free(NULL);
}

static void test_bad_arguments(void **state)
{
        (void) state;
        TeardownQueue *q = NULL;
        assert_int_equal(teardown_queue_new(0, job_fn, NULL, &q), -EINVAL);
        assert_int_equal(teardown_queue_new(2, NULL, NULL, &q), -EINVAL);
        assert_int_equal(teardown_queue_new(2, job_fn, NULL, NULL), -EINVAL);
        assert_null(q);
}

/* --- teardown_runc_state ------------------------------------------------- */

#define CID "c0ffee00c0ffee00c0ff"

/* A runc root holding CID with state.json = json; returns the root. */
static char *runc_root_with(const char *json)
{
        char *root = strdup("/tmp/test-runc-state.XXXXXX");
        assert_non_null(root);
        assert_non_null(mkdtemp(root));
        char path[512];
        (void) snprintf(path, sizeof(path), "%s/" CID, root);
        assert_int_equal(mkdir(path, 0700), 0);
        (void) snprintf(path, sizeof(path), "%s/" CID "/state.json", root);
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        assert_true(fputs(json, f) >= 0);
        assert_int_equal(fclose(f), 0);
        return root;
}

static bool container_dir_exists(const char *root)
{
        char path[512];
        struct stat st;
        (void) snprintf(path, sizeof(path), "%s/" CID, root);
        return stat(path, &st) == 0;
}

static void runc_root_free(char *root)
{
        char cmd[600];
        (void) snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
        assert_int_equal(system(cmd), 0);
        free(root);
}

/* A pid that no process has: a child's, reaped. */
static pid_t dead_pid(void)
{
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0)
                _exit(0);
        assert_int_equal(waitpid(pid, NULL, 0), pid);
        return pid;
}

static void test_runc_state_removed_when_init_is_gone(void **state)
{
        (void) state;
        char json[512];
        (void) snprintf(json, sizeof(json),
                        "{\"init_process_pid\": %d, \"init_process_start\": 1,"
                        " \"cgroup_paths\": {}, \"intel_rdt_path\": \"\", \"config\": {}}",
                        (int) dead_pid());
        char *root = runc_root_with(json);
        assert_int_equal(teardown_runc_state(root, CID), 0);
        assert_false(container_dir_exists(root));
        /* Unknown to runc: nothing to do. */
        assert_int_equal(teardown_runc_state(root, CID), 0);
        runc_root_free(root);
}

static void test_runc_state_left_for_runc_delete(void **state)
{
        (void) state;
        const char *bad[] = {
                "not json",
                "{\"init_process_pid\": 1}", /* fields missing */
                "{\"init_process_pid\": 1, \"init_process_start\": 1, \"cgroup_paths\": "
                "{\"memory\": \"/tmp/x/" CID "\"}, \"config\": {}}", /* outside cgroupfs */
                "{\"init_process_pid\": 1, \"init_process_start\": 1, \"cgroup_paths\": "
                "{\"memory\": \"/sys/fs/cgroup/memory/other\"}, \"config\": {}}", /* not CID's */
                "{\"init_process_pid\": 1, \"init_process_start\": 1, \"cgroup_paths\": "
                "{\"memory\": \"/sys/fs/cgroup/memory/../" CID "\"}, \"config\": {}}",
                "{\"init_process_pid\": 1, \"init_process_start\": 1, \"cgroup_paths\": {},"
                " \"config\": {\"hooks\": {\"poststop\": [{\"path\": \"/bin/true\"}]}}}",
                "{\"init_process_pid\": 1, \"init_process_start\": 1, \"cgroup_paths\": {},"
                " \"config\": {\"cgroups\": {\"systemd\": true}}}",
                "{\"init_process_pid\": 1, \"init_process_start\": 1, \"cgroup_paths\": {},"
                " \"intel_rdt_path\": \"/sys/fs/resctrl/x\", \"config\": {}}",
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                char *root = runc_root_with(bad[i]);
                assert_true(teardown_runc_state(root, CID) < 0);
                assert_true(container_dir_exists(root)); /* left for runc delete */
                runc_root_free(root);
        }
        assert_int_equal(teardown_runc_state("/tmp", "../etc"), -EINVAL);
        assert_int_equal(teardown_runc_state(NULL, CID), -EINVAL);
}

/* Field 22 of /proc/PID/stat. */
static unsigned long long start_time(pid_t pid)
{
        char path[64], buf[1024];
        (void) snprintf(path, sizeof(path), "/proc/%d/stat", (int) pid);
        FILE *f = fopen(path, "r");
        assert_non_null(f);
        size_t n = fread(buf, 1, sizeof(buf) - 1, f);
        (void) fclose(f);
        buf[n] = 0;
        char *p = strrchr(buf, ')');
        assert_non_null(p);
        p += 2;
        for (int field = 3; field < 22; field++) {
                p = strchr(p, ' ');
                assert_non_null(p);
                p++;
        }
        return strtoull(p, NULL, 10);
}

/* An init that does not die: waited for a while (2 s), then left to runc. */
static void test_runc_state_of_a_live_init_kept(void **state)
{
        (void) state;
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                for (;;)
                        (void) pause();
        }
        char json[512];
        (void) snprintf(json, sizeof(json),
                        "{\"init_process_pid\": %d, \"init_process_start\": %llu,"
                        " \"cgroup_paths\": {}, \"config\": {}}",
                        (int) pid, start_time(pid));
        char *root = runc_root_with(json);
        assert_int_equal(teardown_runc_state(root, CID), -ETIMEDOUT);
        assert_true(container_dir_exists(root));
        assert_int_equal(kill(pid, SIGKILL), 0);
        assert_int_equal(waitpid(pid, NULL, 0), pid);
        /* Gone now: removed. */
        assert_int_equal(teardown_runc_state(root, CID), 0);
        assert_false(container_dir_exists(root));
        runc_root_free(root);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_every_job_once_and_drained_by_free),
                cmocka_unit_test(test_pending_counts_queued_and_running),
                cmocka_unit_test(test_push_after_free_began_is_refused),
                cmocka_unit_test(test_bad_arguments),
                cmocka_unit_test(test_runc_state_removed_when_init_is_gone),
                cmocka_unit_test(test_runc_state_left_for_runc_delete),
                cmocka_unit_test(test_runc_state_of_a_live_init_kept),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}

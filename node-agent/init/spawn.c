/* clone + exec for sandpit-init (see spawn.h).
 *
 * The child is made with CLONE_VM | CLONE_VFORK, as posix_spawn does: it shares
 * init's memory and init sleeps until it has exec'd or died. That skips copying
 * init's page tables, which a fork() pays for (on the VMs we measured fork+exit
 * cost 3.5 ms against 0.15 ms this way). The price is care in the child: no
 * malloc, no stdio, only syscalls on its own stack, and credentials changed
 * with raw syscalls so glibc's multi-thread setxid machinery stays out. */
#include "spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sandpit/macro.h"

typedef enum {
        STAGE_STDIO = 1,
        STAGE_CHDIR,
        STAGE_SETGROUPS,
        STAGE_SETGID,
        STAGE_SETUID,
        STAGE_EXEC,
} SpawnStage;

typedef struct {
        int stage;
        int err;
} SpawnReport;

static const char *env_get(char **envp, const char *name)
{
        size_t n = strlen(name);
        STRV_FOREACH(e, envp)
                if (strncmp(*e, name, n) == 0 && (*e)[n] == '=')
                        return *e + n + 1;
        return NULL;
}

/* A file without a #! line is run by /bin/sh, as execvp does. script_argv has
 * room for argc + 2 pointers, allocated before the child exists. */
static void exec_script(const char *path, char **argv, char **envp, char **script_argv)
{
        size_t argc = 0;
        while (argv[argc])
                argc++;
        script_argv[0] = (char *) "sh";
        script_argv[1] = (char *) path;
        for (size_t i = 1; i <= argc; i++)
                script_argv[i + 1] = argv[i];
        (void) execve("/bin/sh", script_argv, envp);
        errno = ENOEXEC;
}

static int exec_one(const char *path, char **argv, char **envp, char **script_argv)
{
        (void) execve(path, argv, envp);
        if (errno == ENOEXEC && script_argv)
                exec_script(path, argv, envp, script_argv);
        return errno;
}

int init_exec_path(char **argv, char **envp)
{
        return init_exec_path_script(argv, envp, NULL);
}

int init_exec_path_script(char **argv, char **envp, char **script_argv)
{
        const char *file = argv[0];
        if (!file || !*file)
                return ENOENT;
        if (strchr(file, '/'))
                return exec_one(file, argv, envp, script_argv);

        const char *path = env_get(envp, "PATH");
        if (!path)
                path = INIT_DEFAULT_PATH;
        size_t flen = strlen(file);
        bool eacces = false;
        for (const char *p = path;; p++) {
                const char *end = strchrnul(p, ':');
                size_t dlen = (size_t) (end - p);
                char buf[PATH_MAX];
                if (dlen + 1 + flen + 1 <= sizeof(buf)) {
                        if (dlen == 0)
                                buf[dlen++] = '.';
                        else
                                memcpy(buf, p, dlen);
                        buf[dlen] = '/';
                        memcpy(buf + dlen + 1, file, flen + 1);
                        int err = exec_one(buf, argv, envp, script_argv);
                        switch (err) {
                        case EACCES:
                                eacces = true;
                                break;
                        case ENOENT:
                        case ENOTDIR:
                        case ESTALE:
                        case ENODEV:
                        case ETIMEDOUT:
                        case ELOOP:
                        case ENAMETOOLONG:
                                break;
                        default:
                                return err;
                        }
                }
                if (*end == '\0')
                        break;
                p = end;
        }
        return eacces ? EACCES : ENOENT;
}

static void child_fail(int fd, SpawnStage stage, int err)
{
        SpawnReport r = {.stage = stage, .err = err};
        (void) !write(fd, &r, sizeof(r));
        _exit(127);
}

static void reset_signals(void)
{
        for (int sig = 1; sig < NSIG; sig++)
                if (sig != SIGKILL && sig != SIGSTOP)
                        (void) signal(sig, SIG_DFL);
        sigset_t none;
        sigemptyset(&none);
        (void) sigprocmask(SIG_SETMASK, &none, NULL);
}

typedef struct {
        const InitSpawnSpec *spec;
        int in_r, out_w, err_w, report;
        char **script_argv;
} ChildArgs;

/* Runs in the child; never returns. Init keeps fds 0-2 open, so the dup2
 * targets never coincide with the (close-on-exec) pipe ends. */
static int child_main(void *arg)
{
        const ChildArgs *a = arg;
        const InitSpawnSpec *s = a->spec;
        int in_r = a->in_r, out_w = a->out_w, err_w = a->err_w, report = a->report;

        (void) setsid();
        if (s->pty) {
                if (ioctl(s->pty_slave, TIOCSCTTY, 0) < 0 || dup2(s->pty_slave, STDIN_FILENO) < 0 ||
                    dup2(s->pty_slave, STDOUT_FILENO) < 0 || dup2(s->pty_slave, STDERR_FILENO) < 0)
                        child_fail(report, STAGE_STDIO, errno);
        } else {
                int in = in_r >= 0 ? in_r : open("/dev/null", O_RDONLY | O_CLOEXEC);
                if (in < 0 || dup2(in, STDIN_FILENO) < 0 || dup2(out_w, STDOUT_FILENO) < 0 ||
                    dup2(err_w, STDERR_FILENO) < 0)
                        child_fail(report, STAGE_STDIO, errno);
        }
        if (chdir(s->cwd) < 0 && (!s->cwd_default || chdir("/") < 0))
                child_fail(report, STAGE_CHDIR, errno);
        if (s->uid != geteuid()) {
                if (syscall(SYS_setgroups, 0, NULL) < 0)
                        child_fail(report, STAGE_SETGROUPS, errno);
                if (syscall(SYS_setresgid, s->gid, s->gid, s->gid) < 0)
                        child_fail(report, STAGE_SETGID, errno);
                if (syscall(SYS_setresuid, s->uid, s->uid, s->uid) < 0)
                        child_fail(report, STAGE_SETUID, errno);
        }
        reset_signals();
        child_fail(report, STAGE_EXEC, init_exec_path_script(s->argv, s->envp, a->script_argv));
        return 127;
}

/* The child's stack while it runs before exec. Init is single-threaded and
 * CLONE_VFORK keeps it asleep meanwhile, so one stack serves every spawn. */
#define CHILD_STACK_SIZE ((size_t) 64 * 1024)
static char child_stack[CHILD_STACK_SIZE] __attribute__((aligned(16)));

static char *report_message(const InitSpawnSpec *s, const SpawnReport *r)
{
        char *msg = NULL;
        const char *e = strerror(r->err);
        int n;
        switch (r->stage) {
        case STAGE_STDIO:
                n = asprintf(&msg, "set up stdio: %s", e);
                break;
        case STAGE_CHDIR:
                n = asprintf(&msg, "chdir %s: %s", s->cwd, e);
                break;
        case STAGE_SETGROUPS:
                n = asprintf(&msg, "setgroups: %s", e);
                break;
        case STAGE_SETGID:
                n = asprintf(&msg, "setgid %u: %s", (unsigned) s->gid, e);
                break;
        case STAGE_SETUID:
                n = asprintf(&msg, "setuid %u: %s", (unsigned) s->uid, e);
                break;
        default:
                n = asprintf(&msg, "exec %s: %s", s->argv[0], e);
                break;
        }
        return n < 0 ? NULL : msg;
}

static int set_nonblock(int fd)
{
        int fl = fcntl(fd, F_GETFL);
        if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
                return negative_errno();
        return 0;
}

int init_spawn(const InitSpawnSpec *spec, InitChild *ret, char **ret_msg)
{
        int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1}, rep[2] = {-1, -1};
        cleanup_free char **script_argv = NULL;
        int r = 0;
        *ret_msg = NULL;

        bool pipes = !spec->pty;
        if ((pipes && spec->stdin_pipe && pipe2(in, O_CLOEXEC) < 0) ||
            (pipes && pipe2(out, O_CLOEXEC) < 0) || (pipes && pipe2(err, O_CLOEXEC) < 0) ||
            pipe2(rep, O_CLOEXEC) < 0) {
                r = negative_errno();
                goto out;
        }
        size_t argc = 0;
        while (spec->argv[argc])
                argc++;
        script_argv = calloc(argc + 2, sizeof(char *));
        if (!script_argv) {
                r = -ENOMEM;
                goto out;
        }
        ChildArgs args = {.spec = spec,
                          .in_r = in[0],
                          .out_w = out[1],
                          .err_w = err[1],
                          .report = rep[1],
                          .script_argv = script_argv};
        pid_t pid = clone(child_main, child_stack + CHILD_STACK_SIZE,
                          CLONE_VM | CLONE_VFORK | SIGCHLD, &args);
        if (pid < 0) {
                r = negative_errno();
                goto out;
        }
        closep(&rep[1]);
        rep[1] = -1;

        SpawnReport rpt;
        ssize_t n;
        do
                n = read(rep[0], &rpt, sizeof(rpt));
        while (n < 0 && errno == EINTR);
        if (n == (ssize_t) sizeof(rpt)) {
                (void) waitpid(pid, NULL, 0);
                *ret_msg = report_message(spec, &rpt);
                r = rpt.err > 0 ? -rpt.err : -EIO;
                goto out;
        }
        r = pipes && spec->stdin_pipe ? set_nonblock(in[1]) : 0;
        if (r >= 0 && pipes)
                r = set_nonblock(out[0]);
        if (r >= 0 && pipes)
                r = set_nonblock(err[0]);
        if (r < 0) {
                (void) kill(pid, SIGKILL);
                (void) waitpid(pid, NULL, 0);
                goto out;
        }
        *ret = (InitChild){
                .pid = pid,
                .stdin_fd = TAKE_FD(in[1]),
                .stdout_fd = TAKE_FD(out[0]),
                .stderr_fd = TAKE_FD(err[0]),
        };
out:
        for (size_t i = 0; i < 2; i++) {
                closep(&in[i]);
                closep(&out[i]);
                closep(&err[i]);
                closep(&rep[i]);
        }
        if (r < 0 && !*ret_msg &&
            asprintf(ret_msg, "spawn %s: %s", spec->argv[0], strerror(-r)) < 0)
                *ret_msg = NULL;
        return r;
}

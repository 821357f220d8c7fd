#include "runtime.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/pidfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <json-c/json.h>

#include "initproto.h"
#include "runtime-exe.h"
#include "sandpit/log.h"
#include "sandpit/macro.h"
#include "sandpit/util.h"

extern char **environ;

#define GVISOR_STATE_SEP "_sandbox:"
#define SPAWN_OUT_MAX    ((size_t) 64 * 1024)

/* A bounded runtime runs as the leader of its own process group: at its
 * deadline the group is killed, so that what it started (a shell script's
 * sleep, runsc's own helpers) goes with it and holds no pipe of ours. */
static void kill_and_reap(pid_t pid)
{
        (void) kill(-pid, SIGKILL);
        (void) kill(pid, SIGKILL);
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
                ;
}

/* Waits for pid; with deadline_us (monotonic) set kills its process group
 * (SIGKILL) once that has passed, reaps it and returns -ETIMEDOUT. The exit
 * status (>= 0) or a negative errno. */
static int wait_child(pid_t pid, uint64_t deadline_us)
{
        if (deadline_us) {
                cleanup_close int pfd = (int) pidfd_open(pid, 0);
                if (pfd >= 0 && poll_in_until(pfd, deadline_us) == -ETIMEDOUT) {
                        kill_and_reap(pid);
                        return -ETIMEDOUT;
                }
        }
        int status;
        while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR)
                        return -errno;
        if (WIFEXITED(status))
                return WEXITSTATUS(status);
        return 128 + WTERMSIG(status);
}

/* Reads fd to its end or SPAWN_OUT_MAX bytes into buf (NUL-terminated), until
 * deadline_us (0: none): -ETIMEDOUT then. */
static int read_out(int fd, char *buf, uint64_t deadline_us)
{
        size_t len = 0;
        buf[0] = 0;
        while (len < SPAWN_OUT_MAX) {
                if (deadline_us) {
                        int r = poll_in_until(fd, deadline_us);
                        if (r < 0)
                                return r;
                }
                ssize_t n = read(fd, buf + len, SPAWN_OUT_MAX - len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                if (n == 0)
                        break;
                len += (size_t) n;
                buf[len] = 0;
        }
        return 0;
}

/* Runs argv with stdin from stdin_fd (/dev/null when < 0); captures stdout (up to 64 KiB) when
 * ret_out is set; passes ready_fd as fd IP_READY_FD, listen_fd as IP_LISTEN_FD
 * and log_fd as 1 and 2 when they are >= 0; executes exe's copy of argv[0] when
 * exe is set; with timeout_ms >= 0 runs it in its own process group and kills
 * that group after timeout_ms (-ETIMEDOUT, reaped, ret_out not set). Returns
 * the exit status (>= 0) or a negative errno. */
static int spawn_wait_timeout(RuntimeExe *exe, char *const argv[], int stdin_fd, int ready_fd,
                              int listen_fd, int log_fd, char **ret_out, int timeout_ms)
{
        /* A source that is itself one of the target numbers would be clobbered
         * by the other dup2: move it above them first. */
        cleanup_close int ready_hi = -1, listen_hi = -1;
        if (ready_fd >= 0 && ready_fd <= IP_LISTEN_FD) {
                if ((ready_hi = fcntl(ready_fd, F_DUPFD_CLOEXEC, IP_LISTEN_FD + 1)) < 0)
                        return negative_errno();
                ready_fd = ready_hi;
        }
        if (listen_fd >= 0 && listen_fd <= IP_LISTEN_FD) {
                if ((listen_hi = fcntl(listen_fd, F_DUPFD_CLOEXEC, IP_LISTEN_FD + 1)) < 0)
                        return negative_errno();
                listen_fd = listen_hi;
        }
        int out[2] = {-1, -1};
        cleanup_free char *outbuf = NULL;
        if (ret_out) {
                if (!(outbuf = malloc(SPAWN_OUT_MAX + 1)))
                        return -ENOMEM;
                if (pipe2(out, O_CLOEXEC) < 0)
                        return -errno;
        }
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        if (stdin_fd >= 0)
                (void) posix_spawn_file_actions_adddup2(&fa, stdin_fd, 0);
        else
                (void) posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
        if (ret_out)
                (void) posix_spawn_file_actions_adddup2(&fa, out[1], 1);
        else if (log_fd >= 0)
                (void) posix_spawn_file_actions_adddup2(&fa, log_fd, 1);
        else
                (void) posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
        if (log_fd >= 0)
                (void) posix_spawn_file_actions_adddup2(&fa, log_fd, 2);
        if (ready_fd >= 0)
                (void) posix_spawn_file_actions_adddup2(&fa, ready_fd, IP_READY_FD);
        if (listen_fd >= 0)
                (void) posix_spawn_file_actions_adddup2(&fa, listen_fd, IP_LISTEN_FD);
        posix_spawnattr_t attr;
        (void) posix_spawnattr_init(&attr);
        uint64_t deadline = 0;
        if (timeout_ms >= 0) {
                deadline = now_monotonic_us() + (uint64_t) timeout_ms * 1000;
                (void) posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
                (void) posix_spawnattr_setpgroup(&attr, 0);
        }
        pid_t pid;
        /* posix_spawn returns once the child has exec'd: the copy is then
         * no longer needed. */
        const char *path = exe ? runtime_exe_acquire(exe) : argv[0];
        int r = posix_spawnp(&pid, path, &fa, &attr, argv, environ);
        if (exe)
                runtime_exe_release(exe);
        posix_spawnattr_destroy(&attr);
        posix_spawn_file_actions_destroy(&fa);
        if (out[1] >= 0)
                (void) close(out[1]);
        if (r != 0) {
                if (out[0] >= 0)
                        (void) close(out[0]);
                return -r;
        }
        if (ret_out) {
                r = read_out(out[0], outbuf, deadline);
                (void) close(out[0]);
                if (r < 0) {
                        kill_and_reap(pid);
                        return r;
                }
        }
        r = wait_child(pid, deadline);
        if (r >= 0 && ret_out)
                *ret_out = TAKE_PTR(outbuf);
        return r;
}

static int spawn_wait(RuntimeExe *exe, char *const argv[], int stdin_fd, int ready_fd,
                      int listen_fd, int log_fd, char **ret_out)
{
        return spawn_wait_timeout(exe, argv, stdin_fd, ready_fd, listen_fd, log_fd, ret_out, -1);
}

/* The runtime writes JSON log lines {"level":..,"msg":..}; the last error is
 * the one to show. */
static void last_log_error(const char *log_path, char *err, size_t errlen)
{
        cleanup_free char *text = NULL;
        if (read_file(log_path, (size_t) 1024 * 1024, &text, NULL) < 0)
                return;
        char *line = strtok(text, "\n");
        for (; line; line = strtok(NULL, "\n")) {
                json_object *o = json_tokener_parse(line);
                json_object *msg = NULL, *level = NULL;
                if (o && json_object_object_get_ex(o, "msg", &msg) &&
                    json_object_object_get_ex(o, "level", &level) &&
                    streq(json_object_get_string(level), "error"))
                        (void) snprintf(err, errlen, "%s", json_object_get_string(msg));
                json_object_put(o);
        }
}

static int run_and_read_pid(const Runtime *rt, char *const argv[], int stdin_fd, int ready_fd,
                            int listen_fd, int log_fd, const char *log_path, const char *pid_path,
                            pid_t *ret_pid, char *err, size_t errlen);

int runtime_run(const Runtime *rt, const char *id, const char *dir, int ready_fd, int listen_fd,
                int log_fd, pid_t *ret_pid, char *err, size_t errlen)
{
        char log_path[4096], pid_path[4096];
        (void) snprintf(log_path, sizeof(log_path), "%s/runtime.log", dir);
        (void) snprintf(pid_path, sizeof(pid_path), "%s/init.pid", dir);
        if (rt->gvisor) {
                /* No --preserve-fds: the channel is init's stdin. The root
                 * mount "shared": the files API changes the rootfs from the
                 * host, which runsc's default (exclusive) would not see; and
                 * no overlay in memory, so that what the sandbox writes is on
                 * the host's rootfs too (and counts against its disk).
                 * --network=host: in the sandbox's own netns (the bundle names
                 * it), gVisor uses the host kernel's stack there. Its own
                 * netstack (--network=sandbox) refuses any netns on kernels
                 * where /proc/sys/net/core/rmem_default is per netns, which
                 * runsc 2022 reads as "the root netns" (docs/security.md).
                 * --host-uds=open: the code kernels connect to the agent's
                 * sockets in their mount (only connect; gVisor resolves the
                 * path in the sandbox's own mounts, nothing else of the host's).
                 * No --oci-seccomp: with it, gVisor 2022 applies the bundle's
                 * profile so that threads cannot be made (docs/security.md). */
                char *gv[] = {(char *) rt->binary,
                              "--root",
                              (char *) rt->root,
                              "--log",
                              log_path,
                              "--log-format",
                              "json",
                              "--file-access=shared",
                              "--overlay2=none",
                              "--network=host",
                              "--host-uds=open",
                              "run",
                              "--detach",
                              "--bundle",
                              (char *) dir,
                              "--pid-file",
                              pid_path,
                              (char *) id,
                              NULL};
                return run_and_read_pid(rt, gv, ready_fd, -1, -1, log_fd, log_path, pid_path,
                                        ret_pid, err, errlen);
        }
        char *argv[] = {(char *) rt->binary,
                        "--root",
                        (char *) rt->root,
                        "--log",
                        log_path,
                        "--log-format",
                        "json",
                        "run",
                        "--detach",
                        "--bundle",
                        (char *) dir,
                        "--pid-file",
                        pid_path,
                        "--preserve-fds",
                        "2", /* IP_READY_FD and IP_LISTEN_FD */
                        (char *) id,
                        NULL};
        return run_and_read_pid(rt, argv, -1, ready_fd, listen_fd, log_fd, log_path, pid_path,
                                ret_pid, err, errlen);
}

static int run_and_read_pid(const Runtime *rt, char *const argv[], int stdin_fd, int ready_fd,
                            int listen_fd, int log_fd, const char *log_path, const char *pid_path,
                            pid_t *ret_pid, char *err, size_t errlen)
{
        int r = spawn_wait(rt->exe, argv, stdin_fd, ready_fd, listen_fd, log_fd, NULL);
        if (r != 0) {
                if (r > 0) {
                        (void) snprintf(err, errlen, "%s run exited with status %d", rt->binary, r);
                        last_log_error(log_path, err, errlen);
                } else {
                        (void) snprintf(err, errlen, "cannot run %s: %s", rt->binary, strerror(-r));
                }
                return r > 0 ? -EIO : r;
        }
        cleanup_free char *pidtext = NULL;
        r = read_file(pid_path, 64, &pidtext, NULL);
        if (r < 0) {
                (void) snprintf(err, errlen, "%s left no pid file", rt->binary);
                return r;
        }
        long pid = strtol(pidtext, NULL, 10);
        if (pid <= 0) {
                (void) snprintf(err, errlen, "%s wrote a bad pid file", rt->binary);
                return -EIO;
        }
        *ret_pid = (pid_t) pid;
        return 0;
}

int runtime_exec_rechannel(const Runtime *rt, const char *id, int stdin_fd, char *err,
                           size_t errlen)
{
        char *argv[] = {(char *) rt->binary, "--root",     (char *) rt->root, "exec",
                        (char *) id,         IP_INIT_PATH, "--rechannel",     NULL};
        cleanup_close int errfd = memfd_create("runtime-exec", MFD_CLOEXEC);
        if (errfd < 0)
                return -errno;
        int r = spawn_wait_timeout(rt->exe, argv, stdin_fd, -1, -1, errfd, NULL,
                                   RUNTIME_RECHANNEL_TIMEOUT_MS);
        if (r == 0)
                return 0;
        if (r == -ETIMEDOUT) {
                (void) snprintf(err, errlen, "%s exec did not end within %d s: killed", rt->binary,
                                RUNTIME_RECHANNEL_TIMEOUT_MS / 1000);
                return r;
        }
        char text[512];
        ssize_t n = pread(errfd, text, sizeof(text) - 1, 0);
        text[n > 0 ? n : 0] = 0;
        text[strcspn(text, "\n")] = 0;
        (void) snprintf(err, errlen, "%s exec: %s", rt->binary,
                        r < 0     ? strerror(-r)
                        : text[0] ? text
                                  : "failed");
        return r < 0 ? r : -EIO;
}

int runtime_exec_set_hostname(const Runtime *rt, const char *id, const char *hostname)
{
        char *argv[] = {(char *) rt->binary,
                        "--root",
                        (char *) rt->root,
                        "exec",
                        "--cap",
                        "CAP_SYS_ADMIN",
                        (char *) id,
                        IP_INIT_PATH,
                        "--hostname",
                        (char *) hostname,
                        NULL};
        int r = spawn_wait_timeout(rt->exe, argv, -1, -1, -1, -1, NULL,
                                   RUNTIME_RECHANNEL_TIMEOUT_MS);
        if (r == -ETIMEDOUT)
                log_sbx(LOG_LEVEL_ERROR, hostname, r, "%s exec did not end within %d s: killed",
                        rt->binary, RUNTIME_RECHANNEL_TIMEOUT_MS / 1000);
        return r < 0 ? r : r > 0 ? -EIO : 0;
}

/* Says that a bounded command was killed (spawn_wait_timeout), once, here. */
static int timed_out(const Runtime *rt, const char *cmd, const char *id, int timeout_ms)
{
        log_sbx(LOG_LEVEL_ERROR, id, -ETIMEDOUT, "%s %s did not end within %d s: killed",
                rt->binary, cmd, timeout_ms / 1000);
        return -ETIMEDOUT;
}

int runtime_pause(const Runtime *rt, const char *id, bool pause)
{
        const char *cmd = pause ? "pause" : "resume";
        char *argv[] = {(char *) rt->binary, "--root",    (char *) rt->root,
                        (char *) cmd,        (char *) id, NULL};
        int r = spawn_wait_timeout(rt->exe, argv, -1, -1, -1, -1, NULL, RUNTIME_PAUSE_TIMEOUT_MS);
        if (r == -ETIMEDOUT)
                return timed_out(rt, cmd, id, RUNTIME_PAUSE_TIMEOUT_MS);
        return r < 0 ? r : r > 0 ? -EIO : 0;
}

int runtime_state(const Runtime *rt, const char *id, char **ret_status, pid_t *ret_pid)
{
        char *argv[] = {(char *) rt->binary, "--root", (char *) rt->root, "state",
                        (char *) id,         NULL};
        cleanup_free char *out = NULL;
        int r = spawn_wait_timeout(rt->exe, argv, -1, -1, -1, -1, &out, RUNTIME_STATE_TIMEOUT_MS);
        if (r == -ETIMEDOUT)
                return timed_out(rt, "state", id, RUNTIME_STATE_TIMEOUT_MS);
        if (r < 0)
                return r;
        if (r != 0 || !out)
                return -ENOENT;
        json_object *o = json_tokener_parse(out);
        json_object *status = NULL, *pid = NULL;
        if (!o || !json_object_object_get_ex(o, "status", &status) ||
            !json_object_object_get_ex(o, "pid", &pid)) {
                json_object_put(o);
                return -EIO;
        }
        char *s = strdup(json_object_get_string(status));
        *ret_pid = (pid_t) json_object_get_int(pid);
        json_object_put(o);
        if (!s)
                return -ENOMEM;
        *ret_status = s;
        return 0;
}

int runtime_delete(const Runtime *rt, const char *id)
{
        char *argv[] = {(char *) rt->binary, "--root", (char *) rt->root, "delete", "--force",
                        (char *) id,         NULL};
        int r = spawn_wait_timeout(rt->exe, argv, -1, -1, -1, -1, NULL, RUNTIME_DELETE_TIMEOUT_MS);
        if (r == -ETIMEDOUT)
                return timed_out(rt, "delete", id, RUNTIME_DELETE_TIMEOUT_MS);
        if (r < 0)
                return r;
        if (r == 0)
                return 0;
        /* Unknown to the runtime: nothing to delete. */
        char path[4096];
        if (rt->gvisor)
                (void) snprintf(path, sizeof(path), "%s/%s" GVISOR_STATE_SEP "%s.state", rt->root,
                                id, id);
        else
                (void) snprintf(path, sizeof(path), "%s/%s", rt->root, id);
        return access(path, F_OK) < 0 ? 0 : -EIO;
}

/* runsc keeps <sandbox id>_sandbox:<container id>.state (and .lock) per
 * container under --root; sandpit's containers are their sandbox's root, the
 * two ids the same. */
static bool keep_gvisor_state(const char *dir, const char *name, void *userdata)
{
        (void) dir;
        (void) userdata;
        const char *sep = strstr(name, GVISOR_STATE_SEP);
        size_t n = sep ? (size_t) (sep - name) : 0;
        char id[128];
        if (!sep || n == 0 || n >= sizeof(id))
                return false;
        memcpy(id, name, n);
        id[n] = 0;
        const char *rest = sep + strlen(GVISOR_STATE_SEP);
        return id_is_valid(id) && strncmp(rest, id, n) == 0 && streq(rest + n, ".state");
}

int runtime_list(const Runtime *rt, char ***ret)
{
        /* runc and crun keep one directory per container under --root. */
        if (!rt->gvisor)
                return dir_list(rt->root, dir_keep_ids, NULL, ret);
        char **names = NULL;
        int r = dir_list(rt->root, keep_gvisor_state, NULL, &names);
        if (r < 0)
                return r;
        for (char **p = names; p && *p; p++)
                (*p)[strstr(*p, GVISOR_STATE_SEP) - *p] = 0;
        *ret = names;
        return 0;
}

const char *const runtime_names[RUNTIME_NAMES] = {"runc", "crun", "runsc"};

int runtime_name_index(const char *name)
{
        for (int i = 0; name && i < RUNTIME_NAMES; i++)
                if (streq(name, runtime_names[i]))
                        return i;
        return -1;
}

/* binary as exec would find it: a path, or a name looked up in $PATH. */
static bool binary_installed(const char *binary)
{
        if (strchr(binary, '/'))
                return access(binary, X_OK) == 0;
        const char *path =
                getenv("PATH") ?: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
        for (const char *p = path; *p;) {
                size_t n = strcspn(p, ":");
                char full[4096];
                if (n > 0 &&
                    snprintf(full, sizeof(full), "%.*s/%s", (int) n, p, binary) <
                            (int) sizeof(full) &&
                    access(full, X_OK) == 0)
                        return true;
                p += n + (p[n] == ':');
        }
        return false;
}

/* runsc prints its global flags with `flags`, on stderr. */
static int probe_gvisor(const Runtime *rt, const char *name, char *err, size_t errlen)
{
        cleanup_close int errfd = memfd_create("runtime-flags", MFD_CLOEXEC);
        if (errfd < 0)
                return -errno;
        char *argv[] = {(char *) rt->binary, "flags", NULL};
        cleanup_free char *out = NULL;
        int r = spawn_wait_timeout(rt->exe, argv, -1, -1, -1, errfd, &out,
                                   RUNTIME_PROBE_TIMEOUT_MS);
        if (r == -ETIMEDOUT) {
                (void) snprintf(err, errlen, "runtime %s (%s): `%s flags` did not end within %d s",
                                name, rt->binary, rt->binary, RUNTIME_PROBE_TIMEOUT_MS / 1000);
                return r;
        }
        cleanup_free char *text = NULL;
        off_t size = lseek(errfd, 0, SEEK_END);
        if (r >= 0 && size >= 0 && (text = malloc((size_t) size + 1))) {
                ssize_t n = pread(errfd, text, (size_t) size, 0);
                text[n > 0 ? n : 0] = 0;
        }
        static const char *const needed[] = {"-file-access", "-overlay2", "-host-uds"};
        for (size_t i = 0; i < ARRAY_SIZE(needed); i++)
                if (r != 0 || !text || !strstr(text, needed[i])) {
                        (void) snprintf(err, errlen,
                                        "runtime %s (%s) cannot run sandpit sandboxes: `%s "
                                        "flags` lists no %s",
                                        name, rt->binary, rt->binary, needed[i]);
                        return -ENOPKG;
                }
        return 0;
}

int runtime_probe(const Runtime *rt, const char *name, char *err, size_t errlen)
{
        if (!binary_installed(rt->binary)) {
                (void) snprintf(err, errlen,
                                "runtime %s is not installed on this node (%s not found)", name,
                                rt->binary);
                return -ENOPKG;
        }
        /* runc and crun print their flags on stdout, runsc on stderr. */
        cleanup_close int errfd = memfd_create("runtime-help", MFD_CLOEXEC);
        if (errfd < 0)
                return -errno;
        char *argv[] = {(char *) rt->binary, "run", "--help", NULL};
        cleanup_free char *out = NULL;
        int r = spawn_wait_timeout(rt->exe, argv, -1, -1, -1, errfd, &out,
                                   RUNTIME_PROBE_TIMEOUT_MS);
        if (r == -ETIMEDOUT) {
                (void) snprintf(err, errlen,
                                "runtime %s (%s): `%s run --help` did not end within %d s", name,
                                rt->binary, rt->binary, RUNTIME_PROBE_TIMEOUT_MS / 1000);
                return r;
        }
        if (r < 0) {
                (void) snprintf(err, errlen, "runtime %s (%s) cannot be run: %s", name, rt->binary,
                                strerror(-r));
                return -ENOPKG;
        }
        char help[16384];
        ssize_t n = pread(errfd, help, sizeof(help) - 1, 0);
        help[n > 0 ? n : 0] = 0;
        if (rt->gvisor)
                return probe_gvisor(rt, name, err, errlen);
        if ((!out || !strstr(out, "preserve-fds")) && !strstr(help, "preserve-fds")) {
                (void) snprintf(err, errlen,
                                "runtime %s (%s) cannot run sandpit sandboxes: its run has no "
                                "--preserve-fds, which hands sandpit-init its sockets",
                                name, rt->binary);
                return -ENOPKG;
        }
        return 0;
}

/* Starting one sandboxed command: fork, set up the child, exec, and report
 * whether the exec happened (through a close-on-exec error pipe). */
#pragma once

#include <stdbool.h>
#include <sys/types.h>

#define INIT_DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

typedef struct {
        char **argv;      /* borrowed, NULL-terminated, argv[0] required */
        char **envp;      /* borrowed, NULL-terminated: the whole environment */
        const char *cwd;  /* borrowed */
        bool cwd_default; /* cwd is the user's home: fall back to "/" if it fails */
        uid_t uid;
        gid_t gid;
        bool stdin_pipe; /* else stdin is /dev/null */
        bool pty;        /* stdin, stdout and stderr are pty_slave, the controlling tty */
        int pty_slave;   /* borrowed; only with pty */
} InitSpawnSpec;

typedef struct {
        pid_t pid;
        int stdin_fd;  /* write end, non-blocking; -1 without stdin_pipe or with pty */
        int stdout_fd; /* read ends, non-blocking; -1 with pty */
        int stderr_fd;
} InitChild;

/* Forks and execs. The child leads its own session and process group, has stdin,
 * stdout and stderr on pipes (or /dev/null) or on the pty slave, which becomes
 * its controlling terminal, default signal mask and
 * dispositions, and the given credentials. Returns 0 once the exec succeeded;
 * else a negative errno and, in *ret_msg (heap), text such as
 * "exec foo: No such file or directory". The failed child has been reaped. */
int init_spawn(const InitSpawnSpec *spec, InitChild *ret, char **ret_msg);

/* execvpe() that takes PATH from envp, not from the caller's environment.
 * Returns only on failure, with a positive errno. */
int init_exec_path(char **argv, char **envp);
/* The same; a file without #! is run with /bin/sh using script_argv (room for
 * argc + 2 pointers; NULL = no such fallback), so no allocation happens. */
int init_exec_path_script(char **argv, char **envp, char **script_argv);

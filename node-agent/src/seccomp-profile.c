/* The sandbox seccomp profile.
 *
 * Source: Docker's default profile, moby/moby profiles/seccomp/default.json (the
 * 2023 revision: syscalls up to futex_waitv / set_mempolicy_home_node), rewritten
 * as data for a container that keeps only the capabilities bundle.c grants
 * (CHOWN, DAC_OVERRIDE, FOWNER, FSETID, KILL, SETGID, SETUID, NET_BIND_SERVICE).
 *
 * Kept from Docker:
 *   - defaultAction SCMP_ACT_ERRNO with EPERM, and the same architectures for
 *     this build (x86_64 + x86 + x32, or aarch64 + arm);
 *   - every name Docker allows unconditionally, except those listed below;
 *   - the per-architecture allows (arch_prctl, modify_ldt; the arm helpers);
 *   - socket() for any family but AF_VSOCK;
 *   - personality() only for PER_LINUX, PER_LINUX32, UNAME26, both, and the
 *     0xffffffff query;
 *   - clone() only without namespace flags, and clone3() failing with ENOSYS so
 *     libc falls back to clone() (seccomp cannot look inside clone3's struct).
 * Docker's rules that depend on a capability we drop are left out, because none
 * of them is about a capability we keep: everything gated on CAP_SYS_ADMIN
 * (mount, umount2, unshare, setns, bpf, perf_event_open, fsopen & co, sethostname,
 * syslog, quotactl, lookup_dcookie, fanotify_init), CAP_SYS_CHROOT (chroot),
 * CAP_SYS_BOOT (reboot), CAP_SYS_MODULE (*_module), CAP_SYS_PACCT (acct),
 * CAP_SYS_PTRACE (kcmp, pidfd_getfd, process_madvise), CAP_SYS_RAWIO (iopl,
 * ioperm), CAP_SYS_TIME (settimeofday, stime, clock_settime*), CAP_SYS_TTY_CONFIG
 * (vhangup), CAP_SYS_NICE (mbind, *_mempolicy), CAP_SYSLOG, CAP_BPF, CAP_PERFMON
 * and CAP_DAC_READ_SEARCH (open_by_handle_at).
 *
 * Stricter than Docker:
 *   - ptrace, process_vm_readv, process_vm_writev: Docker allows them on kernels
 *     >= 4.8; we do not. Code in a sandbox has no business debugging its
 *     neighbours, and ptrace has a long history of kernel bugs.
 *   - io_uring_setup/enter/register: a large, fast-moving kernel surface that has
 *     produced a string of privilege escalations (newer Docker drops it too).
 *   - adjtimex, clock_adjtime, clock_adjtime64: only reads are possible without
 *     CAP_SYS_TIME, but nothing in a sandbox needs to read the kernel's NTP state.
 * Never allowed, whatever changes here: mount, umount2, pivot_root, unshare,
 * setns, keyctl, add_key, request_key, bpf, perf_event_open, userfaultfd,
 * kexec_load, kexec_file_load, init/finit/delete_module, reboot, swapon, swapoff,
 * open_by_handle_at, io_uring_*, ptrace, acct, quotactl, clock_settime,
 * settimeofday, adjtimex, syslog (tests/unit/test_bundle.c checks them). */
#include "seccomp-profile.h"

#include <errno.h>
#include <sched.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/personality.h>
#include <sys/socket.h>

#include <json-c/json.h>

#include "sandpit/macro.h"

/* Allowed with any arguments, on every architecture. Names the kernel or
 * libseccomp does not know on an architecture (the *32 and *_time64 variants on
 * x86_64, for example) are skipped by runc. */
static const char *const allow_names[] = {
        "accept",
        "accept4",
        "access",
        "alarm",
        "bind",
        "brk",
        "capget",
        "capset",
        "chdir",
        "chmod",
        "chown",
        "chown32",
        "clock_getres",
        "clock_getres_time64",
        "clock_gettime",
        "clock_gettime64",
        "clock_nanosleep",
        "clock_nanosleep_time64",
        "close",
        "close_range",
        "connect",
        "copy_file_range",
        "creat",
        "dup",
        "dup2",
        "dup3",
        "epoll_create",
        "epoll_create1",
        "epoll_ctl",
        "epoll_ctl_old",
        "epoll_pwait",
        "epoll_pwait2",
        "epoll_wait",
        "epoll_wait_old",
        "eventfd",
        "eventfd2",
        "execve",
        "execveat",
        "exit",
        "exit_group",
        "faccessat",
        "faccessat2",
        "fadvise64",
        "fadvise64_64",
        "fallocate",
        "fanotify_mark",
        "fchdir",
        "fchmod",
        "fchmodat",
        "fchown",
        "fchown32",
        "fchownat",
        "fcntl",
        "fcntl64",
        "fdatasync",
        "fgetxattr",
        "flistxattr",
        "flock",
        "fork",
        "fremovexattr",
        "fsetxattr",
        "fstat",
        "fstat64",
        "fstatat64",
        "fstatfs",
        "fstatfs64",
        "fsync",
        "ftruncate",
        "ftruncate64",
        "futex",
        "futex_time64",
        "futex_waitv",
        "futimesat",
        "getcpu",
        "getcwd",
        "getdents",
        "getdents64",
        "getegid",
        "getegid32",
        "geteuid",
        "geteuid32",
        "getgid",
        "getgid32",
        "getgroups",
        "getgroups32",
        "getitimer",
        "getpeername",
        "getpgid",
        "getpgrp",
        "getpid",
        "getppid",
        "getpriority",
        "getrandom",
        "getresgid",
        "getresgid32",
        "getresuid",
        "getresuid32",
        "getrlimit",
        "get_robust_list",
        "getrusage",
        "getsid",
        "getsockname",
        "getsockopt",
        "get_thread_area",
        "gettid",
        "gettimeofday",
        "getuid",
        "getuid32",
        "getxattr",
        "inotify_add_watch",
        "inotify_init",
        "inotify_init1",
        "inotify_rm_watch",
        "io_cancel",
        "ioctl",
        "io_destroy",
        "io_getevents",
        "io_pgetevents",
        "io_pgetevents_time64",
        "ioprio_get",
        "ioprio_set",
        "io_setup",
        "io_submit",
        "ipc",
        "kill",
        "landlock_add_rule",
        "landlock_create_ruleset",
        "landlock_restrict_self",
        "lchown",
        "lchown32",
        "lgetxattr",
        "link",
        "linkat",
        "listen",
        "listxattr",
        "llistxattr",
        "_llseek",
        "lremovexattr",
        "lseek",
        "lsetxattr",
        "lstat",
        "lstat64",
        "madvise",
        "membarrier",
        "memfd_create",
        "memfd_secret",
        "mincore",
        "mkdir",
        "mkdirat",
        "mknod",
        "mknodat",
        "mlock",
        "mlock2",
        "mlockall",
        "mmap",
        "mmap2",
        "mprotect",
        "mq_getsetattr",
        "mq_notify",
        "mq_open",
        "mq_timedreceive",
        "mq_timedreceive_time64",
        "mq_timedsend",
        "mq_timedsend_time64",
        "mq_unlink",
        "mremap",
        "msgctl",
        "msgget",
        "msgrcv",
        "msgsnd",
        "msync",
        "munlock",
        "munlockall",
        "munmap",
        "name_to_handle_at",
        "nanosleep",
        "newfstatat",
        "_newselect",
        "open",
        "openat",
        "openat2",
        "pause",
        "pidfd_open",
        "pidfd_send_signal",
        "pipe",
        "pipe2",
        "pkey_alloc",
        "pkey_free",
        "pkey_mprotect",
        "poll",
        "ppoll",
        "ppoll_time64",
        "prctl",
        "pread64",
        "preadv",
        "preadv2",
        "prlimit64",
        "process_mrelease",
        "pselect6",
        "pselect6_time64",
        "pwrite64",
        "pwritev",
        "pwritev2",
        "read",
        "readahead",
        "readlink",
        "readlinkat",
        "readv",
        "recv",
        "recvfrom",
        "recvmmsg",
        "recvmmsg_time64",
        "recvmsg",
        "remap_file_pages",
        "removexattr",
        "rename",
        "renameat",
        "renameat2",
        "restart_syscall",
        "rmdir",
        "rseq",
        "rt_sigaction",
        "rt_sigpending",
        "rt_sigprocmask",
        "rt_sigqueueinfo",
        "rt_sigreturn",
        "rt_sigsuspend",
        "rt_sigtimedwait",
        "rt_sigtimedwait_time64",
        "rt_tgsigqueueinfo",
        "sched_getaffinity",
        "sched_getattr",
        "sched_getparam",
        "sched_get_priority_max",
        "sched_get_priority_min",
        "sched_getscheduler",
        "sched_rr_get_interval",
        "sched_rr_get_interval_time64",
        "sched_setaffinity",
        "sched_setattr",
        "sched_setparam",
        "sched_setscheduler",
        "sched_yield",
        "seccomp",
        "select",
        "semctl",
        "semget",
        "semop",
        "semtimedop",
        "semtimedop_time64",
        "send",
        "sendfile",
        "sendfile64",
        "sendmmsg",
        "sendmsg",
        "sendto",
        "setfsgid",
        "setfsgid32",
        "setfsuid",
        "setfsuid32",
        "setgid",
        "setgid32",
        "setgroups",
        "setgroups32",
        "setitimer",
        "setpgid",
        "setpriority",
        "setregid",
        "setregid32",
        "setresgid",
        "setresgid32",
        "setresuid",
        "setresuid32",
        "setreuid",
        "setreuid32",
        "setrlimit",
        "set_robust_list",
        "setsid",
        "setsockopt",
        "set_thread_area",
        "set_tid_address",
        "setuid",
        "setuid32",
        "setxattr",
        "shmat",
        "shmctl",
        "shmdt",
        "shmget",
        "shutdown",
        "sigaltstack",
        "signalfd",
        "signalfd4",
        "sigprocmask",
        "sigreturn",
        "socketcall",
        "socketpair",
        "splice",
        "stat",
        "stat64",
        "statfs",
        "statfs64",
        "statx",
        "symlink",
        "symlinkat",
        "sync",
        "sync_file_range",
        "syncfs",
        "sysinfo",
        "tee",
        "tgkill",
        "time",
        "timer_create",
        "timer_delete",
        "timer_getoverrun",
        "timer_gettime",
        "timer_gettime64",
        "timer_settime",
        "timer_settime64",
        "timerfd_create",
        "timerfd_gettime",
        "timerfd_gettime64",
        "timerfd_settime",
        "timerfd_settime64",
        "times",
        "tkill",
        "truncate",
        "truncate64",
        "ugetrlimit",
        "umask",
        "uname",
        "unlink",
        "unlinkat",
        "utime",
        "utimensat",
        "utimensat_time64",
        "utimes",
        "vfork",
        "vmsplice",
        "wait4",
        "waitid",
        "waitpid",
        "write",
        "writev",
};

#if defined(__x86_64__)
static const char *const arch_names[] = {
        "SCMP_ARCH_X86_64",
        "SCMP_ARCH_X86",
        "SCMP_ARCH_X32",
};
static const char *const arch_allow_names[] = {
        "arch_prctl",
        "modify_ldt",
};
#elif defined(__aarch64__)
static const char *const arch_names[] = {
        "SCMP_ARCH_AARCH64",
        "SCMP_ARCH_ARM",
};
static const char *const arch_allow_names[] = {
        "arm_fadvise64_64", "arm_sync_file_range", "sync_file_range2",
        "breakpoint",       "cacheflush",          "set_tls",
};
#else
#        error "seccomp profile: add this architecture (see moby's default.json archMap)"
#endif

/* personality() personas Docker allows: the defaults plus what 32-bit and
 * uname26 shims use; 0xffffffff only queries the current persona. */
static const unsigned long personality_values[] = {
        PER_LINUX, PER_LINUX32, UNAME26, PER_LINUX32 | UNAME26, 0xffffffffUL,
};

/* clone() flags that create namespaces: code in a sandbox must not make new ones. */
#define CLONE_NAMESPACE_FLAGS                                                         \
        ((unsigned long) (CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | \
                          CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWCGROUP))
_Static_assert(CLONE_NAMESPACE_FLAGS == 2114060288UL, "same mask as Docker's profile");

/* Takes ownership of v in every case. */
static int obj_add(json_object *o, const char *key, json_object *v)
{
        if (!v)
                return -ENOMEM;
        if (json_object_object_add(o, key, v) < 0) {
                json_object_put(v);
                return -ENOMEM;
        }
        return 0;
}

/* Takes ownership of v in every case. */
static int arr_add(json_object *a, json_object *v)
{
        if (!v)
                return -ENOMEM;
        if (json_object_array_add(a, v) < 0) {
                json_object_put(v);
                return -ENOMEM;
        }
        return 0;
}

static int str_array_add(json_object *a, const char *const *names, size_t n)
{
        for (size_t i = 0; i < n; i++) {
                int r = arr_add(a, json_object_new_string(names[i]));
                if (r < 0)
                        return r;
        }
        return 0;
}

/* One syscalls[] entry. arg is an optional condition on argument `index`. */
typedef struct {
        const char *const *names;
        size_t n_names;
        const char *action;
        int errno_ret; /* 0: none */
        bool has_arg;
        unsigned index;
        unsigned long value;
        const char *op;
} Rule;

static int rule_add(json_object *syscalls, const Rule *rule)
{
        json_object *entry = json_object_new_object();
        json_object *names = json_object_new_array();
        int r;

        if (!names) {
                json_object_put(entry);
                return -ENOMEM;
        }
        r = arr_add(syscalls, entry);
        if (r < 0) {
                json_object_put(names);
                return r;
        }
        /* entry now belongs to syscalls */
        r = obj_add(entry, "names", names);
        if (r < 0)
                return r;
        r = str_array_add(names, rule->names, rule->n_names);
        if (r < 0)
                return r;
        r = obj_add(entry, "action", json_object_new_string(rule->action));
        if (r < 0)
                return r;
        if (rule->errno_ret > 0) {
                r = obj_add(entry, "errnoRet", json_object_new_int(rule->errno_ret));
                if (r < 0)
                        return r;
        }
        if (rule->has_arg) {
                json_object *args = json_object_new_array();
                json_object *arg = json_object_new_object();

                r = obj_add(entry, "args", args);
                if (r < 0) {
                        json_object_put(arg);
                        return r;
                }
                r = arr_add(args, arg);
                if (r < 0)
                        return r;
                r = obj_add(arg, "index", json_object_new_int((int) rule->index));
                if (r < 0)
                        return r;
                r = obj_add(arg, "value", json_object_new_uint64(rule->value));
                if (r < 0)
                        return r;
                r = obj_add(arg, "valueTwo", json_object_new_uint64(0));
                if (r < 0)
                        return r;
                r = obj_add(arg, "op", json_object_new_string(rule->op));
                if (r < 0)
                        return r;
        }
        return 0;
}

#define ALLOW "SCMP_ACT_ALLOW"

static const char *const socket_name[] = {"socket"};
static const char *const personality_name[] = {"personality"};
static const char *const clone_name[] = {"clone"};
static const char *const clone3_name[] = {"clone3"};

static int build(json_object *profile)
{
        json_object *archs = json_object_new_array();
        json_object *syscalls = json_object_new_array();
        int r;

        r = obj_add(profile, "architectures", archs);
        if (r < 0) {
                json_object_put(syscalls);
                return r;
        }
        r = obj_add(profile, "syscalls", syscalls);
        if (r < 0)
                return r;
        r = obj_add(profile, "defaultAction", json_object_new_string("SCMP_ACT_ERRNO"));
        if (r < 0)
                return r;
        r = obj_add(profile, "defaultErrnoRet", json_object_new_int(EPERM));
        if (r < 0)
                return r;
        r = str_array_add(archs, arch_names, ARRAY_SIZE(arch_names));
        if (r < 0)
                return r;

        const Rule rules[] = {
                {.names = allow_names, .n_names = ARRAY_SIZE(allow_names), .action = ALLOW},
                {.names = arch_allow_names,
                 .n_names = ARRAY_SIZE(arch_allow_names),
                 .action = ALLOW},
                /* AF_VSOCK would reach the hypervisor's host side on a VM node. */
                {.names = socket_name,
                 .n_names = 1,
                 .action = ALLOW,
                 .has_arg = true,
                 .index = 0,
                 .value = AF_VSOCK,
                 .op = "SCMP_CMP_NE"},
                /* MASKED_EQ: value is the mask, valueTwo (0) what the masked argument must be */
                {.names = clone_name,
                 .n_names = 1,
                 .action = ALLOW,
                 .has_arg = true,
                 .index = 0,
                 .value = CLONE_NAMESPACE_FLAGS,
                 .op = "SCMP_CMP_MASKED_EQ"},
                {.names = clone3_name,
                 .n_names = 1,
                 .action = "SCMP_ACT_ERRNO",
                 .errno_ret = ENOSYS},
        };
        for (size_t i = 0; i < ARRAY_SIZE(rules); i++) {
                r = rule_add(syscalls, &rules[i]);
                if (r < 0)
                        return r;
        }
        /* Docker's shape: one rule per allowed persona, since conditions in one rule AND. */
        for (size_t i = 0; i < ARRAY_SIZE(personality_values); i++) {
                const Rule rule = {.names = personality_name,
                                   .n_names = 1,
                                   .action = ALLOW,
                                   .has_arg = true,
                                   .index = 0,
                                   .value = personality_values[i],
                                   .op = "SCMP_CMP_EQ"};
                r = rule_add(syscalls, &rule);
                if (r < 0)
                        return r;
        }
        return 0;
}

int seccomp_profile_new(json_object **ret)
{
        json_object *profile = json_object_new_object();
        int r;

        if (!profile)
                return -ENOMEM;
        r = build(profile);
        if (r < 0) {
                json_object_put(profile);
                return r;
        }
        *ret = profile;
        return 0;
}

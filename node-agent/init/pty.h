/* Pseudo-terminals for processes that asked for one (IP_FLAG_PTY). */
#pragma once

#include <sys/types.h>

/* Opens a new pseudo-terminal of cols x rows on the devpts of init's /dev/ptmx
 * (in a sandbox its own /dev/pts instance). The slave is owned by uid (as
 * login(1) does), mode 0620. *ret_master is non-blocking; both close-on-exec.
 * 0 or a negative errno. */
int init_pty_open(unsigned cols, unsigned rows, uid_t uid, int *ret_master, int *ret_slave);

/* Sets the terminal size; the kernel sends SIGWINCH to its foreground process
 * group. 0 or a negative errno. */
int init_pty_resize(int master, unsigned cols, unsigned rows);

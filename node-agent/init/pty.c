/* Pseudo-terminals for sandpit-init (see pty.h). */
#include "pty.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include "sandpit/macro.h"

int init_pty_resize(int master, unsigned cols, unsigned rows)
{
        struct winsize ws = {.ws_row = (unsigned short) rows, .ws_col = (unsigned short) cols};
        if (ioctl(master, TIOCSWINSZ, &ws) < 0)
                return negative_errno();
        return 0;
}

/* The slave by its fd on the master, so no path under /dev/pts (which code in
 * the sandbox could have replaced) is looked up; by name on kernels before 4.13. */
static int open_slave(int master)
{
        int fd = ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (fd >= 0 || (errno != EINVAL && errno != ENOTTY))
                return fd >= 0 ? fd : negative_errno();
        char name[PATH_MAX];
        if (ptsname_r(master, name, sizeof(name)) != 0)
                return negative_errno();
        fd = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
        return fd >= 0 ? fd : negative_errno();
}

int init_pty_open(unsigned cols, unsigned rows, uid_t uid, int *ret_master, int *ret_slave)
{
        cleanup_close int master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (master < 0)
                return negative_errno();
        if (grantpt(master) < 0 || unlockpt(master) < 0)
                return negative_errno();
        int r = init_pty_resize(master, cols, rows);
        if (r < 0)
                return r;
        int fl = fcntl(master, F_GETFL);
        if (fl < 0 || fcntl(master, F_SETFL, fl | O_NONBLOCK) < 0)
                return negative_errno();
        cleanup_close int slave = open_slave(master);
        if (slave < 0)
                return slave;
        /* Like login(1): the user owns their terminal (group stays tty's). */
        if (fchown(slave, uid, (gid_t) -1) < 0 || fchmod(slave, 0620) < 0)
                return negative_errno();
        *ret_master = TAKE_FD(master);
        *ret_slave = TAKE_FD(slave);
        return 0;
}

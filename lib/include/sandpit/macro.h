/* Scope-bound cleanup and small helpers shared by every sandpit component.
 *
 * Convention (systemd style): a variable declared with one of the cleanup_*
 * attributes is released when it leaves scope; ownership moves out only with
 * TAKE_PTR / TAKE_FD or through a ret_ parameter. */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#define TAKE_PTR(p)                               \
        ({                                        \
                __typeof__(p) take_ptr_tmp = (p); \
                (p) = NULL;                       \
                take_ptr_tmp;                     \
        })

#define TAKE_FD(fd)                     \
        ({                              \
                int take_fd_tmp = (fd); \
                (fd) = -1;              \
                take_fd_tmp;            \
        })

static inline void freep(void *p)
{
        free(*(void **) p);
}

/* Closes *fd and sets it to -1, so a later cleanup cannot close the number
 * again after another thread has reused it. */
static inline void closep(int *fd)
{
        if (*fd >= 0) {
                int saved = errno;
                (void) close(*fd);
                errno = saved;
                *fd = -1;
        }
}

static inline void fclosep(FILE **f)
{
        if (*f)
                (void) fclose(*f);
}

/* Frees a NULL-terminated array of strings and the array itself. */
static inline void strv_free(char **v)
{
        if (!v)
                return;
        for (char **s = v; *s; s++)
                free(*s);
        free(v);
}

static inline void strv_freep(char ***v)
{
        strv_free(*v);
}

#define cleanup_free   __attribute__((cleanup(freep)))
#define cleanup_close  __attribute__((cleanup(closep)))
#define cleanup_fclose __attribute__((cleanup(fclosep)))
#define cleanup_strv   __attribute__((cleanup(strv_freep)))

/* Declares name##p, a cleanup function for a pointer-to-pointer, calling func. */
/* type and func are pasted, not expressions. */
/* NOLINTBEGIN(bugprone-macro-parentheses) */
#define DEFINE_CLEANUP_FUNC(type, func)      \
        static inline void func##p(type **p) \
        {                                    \
                if (*p)                      \
                        func(*p);            \
        }
/* NOLINTEND(bugprone-macro-parentheses) */

/* NOLINTNEXTLINE(bugprone-macro-parentheses): s names the loop variable */
#define STRV_FOREACH(s, l) for (char **s = (l); s && *s; s++)

/* Returns -errno of the last failed libc call, never 0 (callers report failure). */
static inline int negative_errno(void)
{
        return errno > 0 ? -errno : -EIO;
}

#define streq(a, b) (strcmp((a), (b)) == 0)
/* streq() for strings that may be NULL (equal only to NULL). */
static inline bool streq_ptr(const char *a, const char *b)
{
        return a && b ? strcmp(a, b) == 0 : a == b;
}

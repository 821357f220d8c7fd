/* Small file, time and string helpers shared by the daemons and the CLI. */
#pragma once

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "sandpit/strbuf.h"

/* Wall clock and monotonic clock in microseconds. */
uint64_t now_realtime_us(void);
uint64_t now_monotonic_us(void);
/* Waits until fd is readable (or hung up) or now_monotonic_us() reaches
 * deadline_us (0: no deadline), restarting after signals: 0, -ETIMEDOUT, -EBADF
 * (fd not open) or a negative errno. */
int poll_in_until(int fd, uint64_t deadline_us);
/* RFC 3339 UTC with milliseconds: "2026-11-22T10:00:00.000Z"; buf >= 32 bytes. */
void format_rfc3339_us(uint64_t us, char *buf, size_t len);
/* RFC 3339 ("2026-11-22T12:00:00.000000Z", fraction and offset optional) to
 * microseconds since the epoch; -EINVAL when malformed. */
int parse_rfc3339_us(const char *s, uint64_t *ret);
/* Go-style duration ("300s", "1h30m", "1.5h", "250ms"; units ms, s, m, h;
 * at most 10^9 s) to nanoseconds, exactly; -EINVAL when malformed. */
int parse_duration_ns(const char *s, int64_t *ret);
/* The same in whole milliseconds or seconds, rounded up. */
int parse_duration_ms(const char *s, long *ret);
int parse_duration_s(const char *s, long *ret);
/* Adds ms (>= 0) to ts, normalised. */
void timespec_add_ms(struct timespec *ts, long ms);
/* CLOCK_MONOTONIC now plus ms: a deadline for a cond_init_monotonic() wait. */
void deadline_after_ms(struct timespec *ts, long ms);
/* Initialises c so that pthread_cond_timedwait() takes CLOCK_MONOTONIC
 * deadlines (a wall clock step neither shortens nor stretches a wait). */
void cond_init_monotonic(pthread_cond_t *c);

/* Creates dir and missing parents with mode; existing dirs are fine. */
int mkdir_p(const char *path, unsigned mode);
/* Removes a tree without crossing into other mounts or following links. A mount
 * point inside the tree makes it fail with -EBUSY rather than delete through it. */
int rm_rf(const char *path);
/* Writes data to path atomically (temp file in the same dir, fsync-free rename). */
int write_file_atomic(const char *path, const void *data, size_t len, unsigned mode);
/* Reads a whole (small) file; *ret is NUL-terminated. max bounds the size. */
int read_file(const char *path, size_t max, char **ret, size_t *ret_len);
/* A bearer token from a file, the one reader of every --token-file, tokenFile
 * and service account token. The rules: at most TOKEN_FILE_MAX bytes (else
 * -EFBIG); white space (space, tab, CR, LF) around the token is dropped; what
 * remains must be one line of at least min_len (>= 1) bytes, else -EINVAL. A
 * rejected token is zeroed before it is freed. */
#define TOKEN_FILE_MAX ((size_t) 64 * 1024)
int read_token_file(const char *path, size_t min_len, char **ret);

/* Writes all len bytes, across short writes and EINTR. */
int write_all(int fd, const void *data, size_t len);
/* Copies what in_fd has left to read into out_fd (write_all); 0 at its end. */
int copy_fd(int in_fd, int out_fd);
/* The same on a socket with send(MSG_NOSIGNAL): a peer that went away is
 * -EPIPE (or -ECONNRESET), never a SIGPIPE. */
int send_all(int fd, const void *data, size_t len);
/* Reads until len bytes or end of file, across short reads and EINTR; returns
 * how many bytes it read (< len only at end of file). */
ssize_t read_full(int fd, void *buf, size_t len);

/* The longest timeout the agent's API takes, in seconds (one week): a
 * sandbox's lifetime, an exec's or a code run's (json_timeout_ms()). */
#define TIMEOUT_MAX_S 604800

/* A deep copy of a NULL-terminated string array (NULL: an empty one); NULL
 * when out of memory. */
char **strv_copy(char *const *v);
/* Appends s to the NULL-terminated *v, whose length is *n, and takes it: a
 * NULL s (a failed strdup()) is -ENOMEM, and s is freed on failure. */
int strv_push(char ***v, size_t *n, char *s);

/* Names of the entries in dir for which keep(dir, name, userdata) is true
 * (dot entries skipped); a missing dir is an empty list. NULL-terminated strv. */
int dir_list(const char *dir, bool (*keep)(const char *dir, const char *name, void *userdata),
             void *userdata, char ***ret);
/* A keep function for dir_list(): names that are valid ids (id_is_valid). */
bool dir_keep_ids(const char *dir, const char *name, void *userdata);

/* Random id of len chars from [a-z0-9] (len < bufsize). */
int random_id(char *buf, size_t len);
/* true when s is a valid DNS label-like id: 1..63 of [a-z0-9-], not starting with '-'. */
bool id_is_valid(const char *s);

/* Base64, standard alphabet. Encode pads; decode accepts padded or unpadded
 * input and returns -EINVAL on anything else (bad characters, stray padding,
 * non-zero trailing bits). */
int base64_encode(const void *data, size_t len, char **ret);
int base64_decode(const char *s, uint8_t **ret, size_t *ret_len);
/* Length of the longest prefix of buf that is complete, valid UTF-8 ending on
 * a character boundary; *ret_valid is false when invalid bytes occur. */
size_t utf8_complete_prefix(const uint8_t *buf, size_t len, bool *ret_valid);

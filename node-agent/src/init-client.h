#pragma once

/* The init protocol client's primitives (init-client.c), for exec.c's streams. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "initproto.h"

/* Sandboxes whose runtime cannot pass init a listening socket (runsc) are
 * reached over a channel: a socket pair whose other end is init's stdin, which
 * nothing else holds (docs/init-protocol.md#channel). Each connection is a
 * new socket pair, one end sent over it. The channel is keyed by the
 * sandbox's socket path; add takes fd, drop closes it. */
int init_client_add_channel(const char *socket_path, int fd);
void init_client_drop_channel(const char *socket_path);
bool init_client_has_channel(const char *socket_path);

/* Connects to init: over its channel, or at socket_path, checking that its
 * peer is init_pid. */
int init_client_connect(const char *socket_path, pid_t init_pid, char *err, size_t errlen);
/* Finishes, sends and frees b. */
int init_client_send(int fd, IpBuilder *b);
/* Reads one answer frame; turns ERROR into a negative errno + message. */
int init_client_read_answer(int fd, uint8_t **body, size_t *cap, IpFrame *f, char *err,
                            size_t errlen);
/* Asks init to stream process pid (ATTACH) on a new connection: on success
 * *ret_fd is the conversation and f init's first answer (its bytes in *body).
 * Errors as for STDIN or SIGNAL (exec.h): -ESRCH when init does not know pid. */
int init_client_attach(const char *socket_path, pid_t init_pid, uint32_t pid, int *ret_fd,
                       uint8_t **body, size_t *cap, IpFrame *f, char *err, size_t errlen);

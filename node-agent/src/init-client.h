#pragma once

/* The init protocol client's primitives (init-client.c), for exec.c's streams. */

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "initproto.h"

/* Connects to init at socket_path, checking that its peer is init_pid. */
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

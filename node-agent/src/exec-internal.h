#pragma once

/* Private to exec.c and init-client.c: the init protocol client's primitives. */

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "initproto.h"

/* Connects to init at socket_path, checking that its peer is init_pid. */
int init_connect(const char *socket_path, pid_t init_pid, char *err, size_t errlen);
int send_frame(int fd, IpBuilder *b);
/* Reads one answer frame; turns ERROR into a negative errno + message. */
int read_answer(int fd, uint8_t **body, size_t *cap, IpFrame *f, char *err, size_t errlen);

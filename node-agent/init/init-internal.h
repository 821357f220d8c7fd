/* sandpit-init inside: what its event loop (main.c) and its request handlers
 * (requests.c) share. The loop owns every process and connection; a handler
 * reads a request off a connection, acts, and answers through conn_*(). */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "buf.h"
#include "initproto.h"
#include "mask.h"

typedef enum {
        SRC_SIGNAL,
        SRC_LISTEN,
        SRC_CHANNEL,
        SRC_RECHANNEL,
        SRC_CONN,
        SRC_STDIN,
        SRC_STDOUT,
        SRC_STDERR,
} SrcKind;

/* One fd in the epoll set; events == 0 means not registered. */
typedef struct {
        SrcKind kind;
        int fd;
        uint32_t events;
        void *owner;
} Source;

typedef struct Proc {
        struct Proc *next;
        pid_t pid;
        char **argv;
        char *tag;
        uint32_t flags;
        uint64_t started_us; /* CLOCK_REALTIME */
        uint64_t start_mono_us;
        uint64_t deadline_us; /* CLOCK_MONOTONIC; 0 = none */
        bool exited;
        bool timed_out;
        int status;
        uint64_t duration_us;
        uint64_t exit_seq;
        Source in, out, err; /* with IP_FLAG_PTY: out is the pty master, in a dup of it */
        InitBuf stdin_buf;
        bool stdin_eof;   /* close stdin once stdin_buf is written */
        InitBuf backlog;  /* a background process's last STDOUT/STDERR frames, for ATTACH */
        uint64_t dropped; /* output bytes dropped from the backlog */
        Masker *mask[2];  /* stdout, stderr: NULL when the process knows no secret */
} Proc;

typedef struct Conn {
        struct Conn *next;
        Source src;
        uint8_t hdr[IP_HEADER_SIZE];
        size_t hdr_got;
        uint8_t *body;
        uint32_t body_len;
        uint32_t body_got;
        InitBuf out;
        Proc *proc;    /* the process this connection streams, if any */
        bool spawner;  /* proc was spawned here: a foreground proc dies with us */
        bool streamed; /* has streamed a process: PID-less input is never an error */
        bool closing;  /* read no more; close once out is flushed */
        bool dead;     /* close at the next event */
} Conn;

static inline uint64_t now_us(clockid_t clk)
{
        struct timespec ts;
        (void) clock_gettime(clk, &ts);
        return (uint64_t) ts.tv_sec * 1000000u + (uint64_t) ts.tv_nsec / 1000u;
}

/* ---- the loop (main.c) ---- */

bool loop_terminating(void); /* SIGTERM came: no new processes */

/* A process by pid (running_only: not one that has exited), or NULL. */
Proc *proc_find(pid_t pid, bool running_only);
/* Adds a spawned process at the end of the list; the loop owns it from now on. */
void proc_add(Proc *p);
/* The first process, in spawn order (follow ->next). */
Proc *proc_list(void);
/* Writes what is queued for the process's stdin, closes it at EOF. */
void proc_stdin_pump(Proc *p);
/* The EXIT fields of an exited process, and the dropped-output MESSAGE. */
void proc_put_exit_fields(IpBuilder *b, const Proc *p);
void proc_put_dropped(IpBuilder *b, const Proc *p);

/* Queues a frame (finishes and frees b). */
void conn_send(Conn *c, IpBuilder *b);
void conn_send_exit(Conn *c, const Proc *p);
void conn_ok(Conn *c);
/* ERROR; the connection stays usable. */
__attribute__((format(printf, 3, 4))) void conn_error(Conn *c, int err, const char *fmt, ...);
/* ERROR, then close once it is sent: the peer broke the protocol. */
__attribute__((format(printf, 3, 4))) void conn_fail(Conn *c, int err, const char *fmt, ...);
/* Re-arms the connection's (and its process's) epoll interest after a change. */
void conn_update(Conn *c);

/* ---- the requests (requests.c) ---- */

/* Handles the complete frame in c->hdr and c->body. */
void request_dispatch(Conn *c);

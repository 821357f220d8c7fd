/* The wire protocol between sandpit-agent (host side) and sandpit-init (PID 1 in
 * the sandbox), spoken over the unix socket /.sandpit/init.sock. The agent binds
 * that socket in the per-sandbox control directory (mounted read-only at
 * /.sandpit) and hands it to init as fd IP_LISTEN_FD; init calls listen(), so
 * the socket's peer credentials name init. The agent opens it without following
 * symlinks and talks only to a peer whose pid is the init pid it recorded
 * (docs/init-protocol.md, docs/security.md).
 *
 * Framing: every message is a frame
 *     u32 length (little endian, of the body only) | u8 type | body
 * and a body is a sequence of fields
 *     u8 tag | u32 length (little endian) | value bytes
 * Strings carry no NUL; integers are little-endian u32/u64/i32 of exactly that
 * size. Repeated tags (ARG, ENV) keep their order. Unknown tags are skipped so
 * either side can grow. A frame body is at most IP_MAX_BODY bytes.
 *
 * One connection carries one conversation: the agent sends a request frame, init
 * answers with event frames. SPAWN and ATTACH then stream STDOUT / STDERR (or,
 * for a process on a pseudo-terminal, PTY) events and end with EXIT; on the
 * SPAWN connection the agent may also send STDIN / STDIN_EOF / SIGNAL / RESIZE
 * frames without a PID field (they refer to that process).
 * Other requests are answered by one OK, ERROR, or a list of PROCESS events
 * followed by OK. Init only accepts peers outside its pid namespace
 * (SO_PEERCRED pid 0), so code in the sandbox cannot drive it. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define IP_SOCKET_NAME  "init.sock"
#define IP_CONTROL_DIR  "/.sandpit"      /* inside the sandbox */
#define IP_INIT_PATH    "/.sandpit/init" /* the init binary, bind-mounted read-only */
#define IP_MAX_BODY     ((size_t) 1024 * 1024)
#define IP_HEADER_SIZE  5u
#define IP_FIELD_HEADER 5u
/* Init writes one byte to this fd once its socket listens, then closes it. */
#define IP_READY_FD 3
/* The agent's socket, bound at /.sandpit/init.sock but not listening yet. */
#define IP_LISTEN_FD 4

/* The channel (init --channel, for runtimes without --preserve-fds): init's
 * stdin is one end of a socket pair the agent holds the other end of. Init
 * writes IP_CHANNEL_READY once; the agent sends IP_CHANNEL_CONN with one end
 * of a new socket pair (SCM_RIGHTS) per conversation, and once
 * IP_CHANNEL_KEY followed by IP_CHANNEL_KEY_SIZE bytes: the key a restarted
 * agent proves itself with to get a new channel. That comes through
 * `sandpit-init --rechannel` started by the runtime's exec with its stdin a
 * new socket pair on which the agent first sends IP_CHANNEL_KEY and the key;
 * it hands both to init on the abstract socket IP_RECHANNEL_NAME. */
#define IP_CHANNEL_READY    '1'
#define IP_CHANNEL_CONN     'c'
#define IP_CHANNEL_KEY      'k'
#define IP_CHANNEL_KEY_SIZE 32
#define IP_RECHANNEL_NAME   "sandpit-init-rechannel" /* abstract: a leading NUL */

typedef enum {
        /* requests: agent -> init */
        IP_MSG_SPAWN = 1,
        IP_MSG_ATTACH = 2,
        IP_MSG_STDIN = 3,
        IP_MSG_STDIN_EOF = 4,
        IP_MSG_SIGNAL = 5,
        IP_MSG_LIST = 6,
        IP_MSG_PING = 7,
        IP_MSG_SET_SECRETS = 8, /* ENV* "NAME=value": the sandbox's secret env, kept in memory */
        IP_MSG_RESIZE = 9,      /* COLS, ROWS (+ PID): a PTY process's terminal size */
        /* events: init -> agent */
        IP_MSG_STARTED = 64,
        IP_MSG_STDOUT = 65,
        IP_MSG_STDERR = 66,
        IP_MSG_EXIT = 67,
        IP_MSG_ERROR = 68,
        IP_MSG_OK = 69,
        IP_MSG_PROCESS = 70,
        IP_MSG_PTY = 71, /* DATA: output of a process on a pseudo-terminal */
} IpMsgType;

typedef enum {
        IP_TAG_ARG = 1,          /* string, repeated: argv */
        IP_TAG_ENV = 2,          /* string "NAME=value", repeated */
        IP_TAG_CWD = 3,          /* string; default: the user's home */
        IP_TAG_USER = 4,         /* string: name or numeric uid, looked up in /etc/passwd */
        IP_TAG_TIMEOUT_MS = 5,   /* u64; 0 = none */
        IP_TAG_FLAGS = 6,        /* u32: IP_FLAG_* */
        IP_TAG_DATA = 7,         /* bytes: stdin data / output data */
        IP_TAG_PID = 8,          /* u32 */
        IP_TAG_SIGNO = 9,        /* u32 */
        IP_TAG_EXIT_CODE = 10,   /* i32; -1 when killed by a signal */
        IP_TAG_TIMED_OUT = 11,   /* u32 0/1 */
        IP_TAG_DURATION_US = 12, /* u64 */
        IP_TAG_ERRNO = 13,       /* u32, positive errno */
        IP_TAG_MESSAGE = 14,     /* string */
        IP_TAG_STATE = 15,       /* u32: IP_STATE_* */
        IP_TAG_TAG = 16,         /* string: caller's label for the process */
        IP_TAG_STARTED_US = 17,  /* u64: CLOCK_REALTIME at spawn, microseconds */
        IP_TAG_SECRET_ENV = 18,  /* string "NAME=value", repeated: env whose values are masked */
        IP_TAG_COLS = 19,        /* u32: terminal columns, 1..IP_PTY_DIM_MAX */
        IP_TAG_ROWS = 20,        /* u32: terminal rows, 1..IP_PTY_DIM_MAX */
} IpTag;

typedef enum {
        IP_FLAG_BACKGROUND = 1u << 0, /* survives the spawning connection's close */
        IP_FLAG_STDIN_OPEN =
                1u << 1, /* keep stdin open for STDIN frames (else /dev/null or DATA then EOF) */
        IP_FLAG_PTY = 1u << 2, /* run on a pseudo-terminal of COLS x ROWS; output comes as PTY */
} IpFlag;

/* A terminal dimension fits struct winsize's unsigned short; more is nonsense. */
#define IP_PTY_DIM_MAX 9999u

typedef enum {
        IP_STATE_RUNNING = 1,
        IP_STATE_EXITED = 2,
} IpState;

/* A frame being built. Grows on the heap; ip_builder_free() releases it. */
typedef struct {
        uint8_t *buf;
        size_t len;
        size_t cap;
        bool oom;
} IpBuilder;

void ip_builder_init(IpBuilder *b, IpMsgType type);
void ip_builder_free(IpBuilder *b);
void ip_put_bytes(IpBuilder *b, IpTag tag, const void *data, size_t len);
void ip_put_str(IpBuilder *b, IpTag tag, const char *s);
void ip_put_u32(IpBuilder *b, IpTag tag, uint32_t v);
void ip_put_i32(IpBuilder *b, IpTag tag, int32_t v);
void ip_put_u64(IpBuilder *b, IpTag tag, uint64_t v);
/* Fills in the length header. Returns -ENOMEM if any put failed, -EMSGSIZE when
 * the body is over IP_MAX_BODY, else 0; then b->buf/b->len is the whole frame. */
int ip_builder_finish(IpBuilder *b);

/* A parsed frame: views into a body buffer owned by the caller. */
typedef struct {
        IpMsgType type;
        const uint8_t *body;
        size_t body_len;
} IpFrame;

/* Parses the 5-byte header. Returns 0 and the body length, or -EPROTO. */
int ip_parse_header(const uint8_t hdr[IP_HEADER_SIZE], uint8_t *ret_type, uint32_t *ret_len);

/* Field iteration: start with *offset = 0; returns 1 with a field, 0 at the
 * end, -EPROTO on a truncated field. */
int ip_next_field(const IpFrame *f, size_t *offset, uint8_t *ret_tag, const uint8_t **ret_val,
                  uint32_t *ret_len);
/* First field with this tag; returns 0 or -ENOENT (or -EPROTO when malformed or of
 * the wrong size for the integer getters). */
int ip_get_bytes(const IpFrame *f, IpTag tag, const uint8_t **ret_val, uint32_t *ret_len);
int ip_get_u32(const IpFrame *f, IpTag tag, uint32_t *ret);
int ip_get_i32(const IpFrame *f, IpTag tag, int32_t *ret);
int ip_get_u64(const IpFrame *f, IpTag tag, uint64_t *ret);
/* Copies a string field into a new NUL-terminated heap string; rejects embedded NULs. */
int ip_get_strdup(const IpFrame *f, IpTag tag, char **ret);
/* Validates a whole body: every field well-formed. 0 or -EPROTO. */
int ip_validate(const IpFrame *f);

/* Blocking helpers for a connected socket (restart on EINTR, handle short I/O). */
int ip_write_all(int fd, const void *buf, size_t len);
/* One sendmsg of len bytes with fd attached (SCM_RIGHTS; the channel's
 * hand-overs), restarted on EINTR, never SIGPIPE. The bytes sent or a negative
 * errno. */
ssize_t ip_send_fd(int sock, const void *data, size_t len, int fd);
/* Reads one frame into *body (realloc'd, caller frees). Returns 1 with a frame,
 * 0 on clean EOF before a header, negative errno on error or truncation. */
int ip_read_frame(int fd, uint8_t **body, size_t *body_cap, IpFrame *ret);

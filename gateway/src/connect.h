/* The Connect protocol (connectrpc.com) with the JSON codec, as envd speaks it
 * on port 49983: 5-byte envelopes, the end-stream frame, the error codes and
 * their HTTP statuses, content types, Connect-Timeout-Ms, and the protobuf
 * canonical JSON encodings (bytes, 64-bit integers, timestamps, enums). Pure:
 * no I/O, no logging. See docs/gateway.md. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#define GW_CONNECT_FLAG_COMPRESSED 0x01u
#define GW_CONNECT_FLAG_END_STREAM 0x02u
#define GW_CONNECT_HEADER_LEN      5u
/* Default cap on one message (envd's own default is 4 MiB). */
#define GW_CONNECT_DEFAULT_MAX_MESSAGE (4u << 20)

/* Connect error codes; the numbers are gRPC's (the SDK prints them). */
typedef enum {
        GW_CONNECT_OK = 0, /* no error: only for gw_connect_frame_end() */
        GW_CONNECT_CANCELED = 1,
        GW_CONNECT_UNKNOWN = 2,
        GW_CONNECT_INVALID_ARGUMENT = 3,
        GW_CONNECT_DEADLINE_EXCEEDED = 4,
        GW_CONNECT_NOT_FOUND = 5,
        GW_CONNECT_ALREADY_EXISTS = 6,
        GW_CONNECT_PERMISSION_DENIED = 7,
        GW_CONNECT_RESOURCE_EXHAUSTED = 8,
        GW_CONNECT_FAILED_PRECONDITION = 9,
        GW_CONNECT_ABORTED = 10,
        GW_CONNECT_OUT_OF_RANGE = 11,
        GW_CONNECT_UNIMPLEMENTED = 12,
        GW_CONNECT_INTERNAL = 13,
        GW_CONNECT_UNAVAILABLE = 14,
        GW_CONNECT_DATA_LOSS = 15,
        GW_CONNECT_UNAUTHENTICATED = 16,
} GwConnectCode;

/* "not_found"...; NULL for GW_CONNECT_OK or a value out of range. */
const char *gw_connect_code_name(GwConnectCode c);
/* -EINVAL for a name that is not a Connect code. */
int gw_connect_code_from_name(const char *name, GwConnectCode *ret);
/* The HTTP status of a unary error response (not_found 404, canceled 499, ...). */
unsigned gw_connect_code_http_status(GwConnectCode c);
/* The negative errno a code stands for (not_found -ENOENT, ...). */
int gw_connect_code_to_errno(GwConnectCode c);
/* The code for a (negative or positive) errno; anything unlisted is internal. */
GwConnectCode gw_connect_code_from_errno(int r);
/* Connect's mapping for an error response whose body is not a Connect error
 * (what a client assumes): 400 internal, 404 unimplemented, 502-504
 * unavailable, ... */
GwConnectCode gw_connect_code_from_http_status(unsigned status);

/* A unary error body {"code":"not_found","message":"..."}; message may be NULL. */
int gw_connect_error_new(GwConnectCode c, const char *message, json_object **ret);

/* One envelope: flags, big-endian length, data. */
int gw_connect_envelope(uint8_t flags, const void *data, size_t len, char **ret, size_t *ret_len);
/* A message envelope holding msg as compact JSON (msg is borrowed). */
int gw_connect_frame_message(json_object *msg, char **ret, size_t *ret_len);
/* The end-stream envelope: {} for GW_CONNECT_OK, else
 * {"error":{"code","message"},"metadata":{...}}. metadata (borrowed, may be
 * NULL) maps names to a string or an array of strings; -EINVAL otherwise. */
int gw_connect_frame_end(GwConnectCode c, const char *message, json_object *metadata, char **ret,
                         size_t *ret_len);

/* An incremental envelope reader for a request body that arrives in pieces. */
typedef struct {
        size_t max;                         /* largest message accepted */
        bool allow_end_stream;              /* accept flag 0x02 (reading a response) */
        uint8_t hdr[GW_CONNECT_HEADER_LEN]; /* header bytes so far */
        size_t hdr_len;                     /* 0..5 */
        uint8_t flags;                      /* of the current envelope */
        uint32_t len;                       /* its message length */
        uint8_t *buf;                       /* its message bytes so far (+ NUL) */
        size_t buf_len;
        bool ready;        /* a whole envelope awaits gw_connect_reader_take() */
        const char *error; /* static text of the first error, or NULL */
        int err;           /* its negative errno */
} GwConnectReader;

void gw_connect_reader_init(GwConnectReader *r, size_t max);
void gw_connect_reader_done(GwConnectReader *r);
/* Consumes bytes up to the end of the current envelope and sets *ret_used.
 * Returns 1 when an envelope is complete (take it before feeding more), 0 when
 * more input is needed, or: -EPROTONOSUPPORT compressed flag, -EBADMSG unknown
 * flag bits, -EMSGSIZE message over the cap. After an error the reader stays
 * failed; gw_connect_reader_error() says why. */
int gw_connect_reader_feed(GwConnectReader *r, const void *data, size_t len, size_t *ret_used);
/* Hands over the complete envelope: its flags and message (NUL-terminated; the
 * caller frees it). -EAGAIN when none is ready. */
int gw_connect_reader_take(GwConnectReader *r, uint8_t *ret_flags, char **ret_msg, size_t *ret_len);
/* At the end of the body: 0 at an envelope boundary, -EBADMSG when an
 * envelope was cut short. */
int gw_connect_reader_finish(GwConnectReader *r);
const char *gw_connect_reader_error(const GwConnectReader *r);

/* A streaming request body: exactly one message envelope holding a JSON
 * object, at most max bytes. -EBADMSG (framing, trailing bytes, not a JSON
 * object), -EPROTONOSUPPORT, -EMSGSIZE; *ret_error gets a static message. */
int gw_connect_parse_single(const void *body, size_t len, size_t max, json_object **ret,
                            const char **ret_error);

/* Request content types. Unary is application/json, server streaming
 * application/connect+json; "; charset=utf-8" is allowed. The protobuf codec
 * (application/proto, application/connect+proto) is -EOPNOTSUPP (answer
 * unimplemented), anything else -EINVAL (answer 415); *ret_error says which. */
typedef enum {
        GW_CONNECT_CT_UNARY_JSON,
        GW_CONNECT_CT_STREAM_JSON,
} GwConnectContentType;
int gw_connect_content_type_parse(const char *ct, GwConnectContentType *ret,
                                  const char **ret_error);
/* A procedure path "/process.Process/Start" split into the service
 * ("process.Process": dotted identifiers, at least one dot) and the method
 * ("Start": one identifier). -EINVAL for anything else (answer 404 with
 * unimplemented, as an unknown procedure). */
int gw_connect_path_parse(const char *path, char **ret_service, char **ret_method);
/* Connect-Timeout-Ms: 1 to 10 ASCII digits; -EINVAL otherwise. */
int gw_connect_timeout_parse(const char *v, uint64_t *ret_ms);
/* Connect-Protocol-Version: absent or "1"; -EINVAL otherwise. */
int gw_connect_protocol_version_check(const char *v);

/* Protobuf canonical JSON. JSON null means "unset" everywhere: the readers
 * return -ENODATA for it, so a caller can keep its default. */

/* bytes: standard or URL-safe base64, padded or not. */
int gw_connect_b64_decode(const char *s, size_t len, uint8_t **ret, size_t *ret_len);
int gw_connect_bytes_from_json(json_object *v, uint8_t **ret, size_t *ret_len);
/* Standard base64 with padding. */
int gw_connect_bytes_to_json(const void *data, size_t len, json_object **ret);
/* Integers: a JSON number (integral) or a decimal string; -ERANGE when out of
 * range, -EINVAL for anything else. json-c clamps an integer number that does
 * not fit to INT64_MIN or UINT64_MAX, so those two are -ERANGE as numbers
 * (protobuf JSON sends 64-bit values as strings, which are exact). */
int gw_connect_int64_from_json(json_object *v, int64_t *ret);
int gw_connect_uint64_from_json(json_object *v, uint64_t *ret);
int gw_connect_int32_from_json(json_object *v, int32_t *ret);
int gw_connect_uint32_from_json(json_object *v, uint32_t *ret);
/* 64-bit integers are written as strings. */
int gw_connect_int64_to_json(int64_t v, json_object **ret);
/* google.protobuf.Timestamp: RFC 3339 with 'Z' or an offset, up to 9
 * fraction digits, years 0001-9999. */
int gw_connect_timestamp_parse(const char *s, int64_t *ret_sec, int32_t *ret_nsec);
/* UTC 'Z' form with 0, 3, 6 or 9 fraction digits; buf >= 40 bytes. */
int gw_connect_timestamp_format(int64_t sec, int32_t nsec, char *buf, size_t len);

/* An enum: a table of names and numbers ending with {NULL, 0}. */
typedef struct {
        const char *name;
        int value;
} GwConnectEnumValue;
/* A listed name, or any int32 number (proto3 enums are open). */
int gw_connect_enum_from_json(json_object *v, const GwConnectEnumValue *table, int *ret);
/* The name of value, or NULL when it is not in the table. */
const char *gw_connect_enum_name(const GwConnectEnumValue *table, int value);

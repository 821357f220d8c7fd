/* Connect protocol, JSON codec: framing, errors, headers and the protobuf
 * canonical JSON encodings. See connect.h. */
#include "connect.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "sandpit/json.h"
#include "sandpit/macro.h"
#include "sandpit/util.h"

/* --- error codes ---------------------------------------------------------- */

typedef struct {
        const char *name;
        unsigned http;
        int err; /* negative errno */
} CodeInfo;

/* Indexed by GwConnectCode. The HTTP statuses are Connect's own table. */
static const CodeInfo codes[] = {
        [GW_CONNECT_OK] = {NULL, 200, 0},
        [GW_CONNECT_CANCELED] = {"canceled", 499, -ECANCELED},
        [GW_CONNECT_UNKNOWN] = {"unknown", 500, -EPROTO},
        [GW_CONNECT_INVALID_ARGUMENT] = {"invalid_argument", 400, -EINVAL},
        [GW_CONNECT_DEADLINE_EXCEEDED] = {"deadline_exceeded", 504, -ETIMEDOUT},
        [GW_CONNECT_NOT_FOUND] = {"not_found", 404, -ENOENT},
        [GW_CONNECT_ALREADY_EXISTS] = {"already_exists", 409, -EEXIST},
        [GW_CONNECT_PERMISSION_DENIED] = {"permission_denied", 403, -EACCES},
        [GW_CONNECT_RESOURCE_EXHAUSTED] = {"resource_exhausted", 429, -EAGAIN},
        [GW_CONNECT_FAILED_PRECONDITION] = {"failed_precondition", 400, -EBUSY},
        [GW_CONNECT_ABORTED] = {"aborted", 409, -ECONNABORTED},
        [GW_CONNECT_OUT_OF_RANGE] = {"out_of_range", 400, -ERANGE},
        [GW_CONNECT_UNIMPLEMENTED] = {"unimplemented", 501, -EOPNOTSUPP},
        [GW_CONNECT_INTERNAL] = {"internal", 500, -EIO},
        [GW_CONNECT_UNAVAILABLE] = {"unavailable", 503, -ECONNREFUSED},
        [GW_CONNECT_DATA_LOSS] = {"data_loss", 500, -EBADMSG},
        [GW_CONNECT_UNAUTHENTICATED] = {"unauthenticated", 401, -ENOKEY},
};

static bool code_valid(GwConnectCode c)
{
        return (unsigned) c < ARRAY_SIZE(codes);
}

const char *gw_connect_code_name(GwConnectCode c)
{
        return code_valid(c) ? codes[c].name : NULL;
}

int gw_connect_code_from_name(const char *name, GwConnectCode *ret)
{
        for (size_t i = 1; name && i < ARRAY_SIZE(codes); i++)
                if (streq(codes[i].name, name)) {
                        *ret = (GwConnectCode) i;
                        return 0;
                }
        return -EINVAL;
}

unsigned gw_connect_code_http_status(GwConnectCode c)
{
        return code_valid(c) ? codes[c].http : 500;
}

int gw_connect_code_to_errno(GwConnectCode c)
{
        return code_valid(c) ? codes[c].err : -EIO;
}

GwConnectCode gw_connect_code_from_errno(int r)
{
        switch (r < 0 ? -r : r) {
        case 0:
                return GW_CONNECT_OK;
        case ECANCELED:
                return GW_CONNECT_CANCELED;
        case EPROTO:
                return GW_CONNECT_UNKNOWN;
        case EINVAL:
        case EISDIR:
        case ENOTDIR:
        case ENAMETOOLONG:
                return GW_CONNECT_INVALID_ARGUMENT;
        case ETIMEDOUT:
                return GW_CONNECT_DEADLINE_EXCEEDED;
        case ENOENT:
        case ESRCH:
                return GW_CONNECT_NOT_FOUND;
        case EEXIST:
                return GW_CONNECT_ALREADY_EXISTS;
        case EACCES:
        case EPERM:
                return GW_CONNECT_PERMISSION_DENIED;
        case EAGAIN:
        case E2BIG:
        case EMSGSIZE:
        case ENOSPC:
        case EDQUOT:
        case EMFILE:
        case ENFILE:
        case ENOMEM:
                return GW_CONNECT_RESOURCE_EXHAUSTED;
        case EBUSY:
        case ENOTEMPTY:
                return GW_CONNECT_FAILED_PRECONDITION;
        case ECONNABORTED:
                return GW_CONNECT_ABORTED;
        case ERANGE:
                return GW_CONNECT_OUT_OF_RANGE;
        case EOPNOTSUPP:
        case ENOSYS:
        case EPROTONOSUPPORT:
                return GW_CONNECT_UNIMPLEMENTED;
        case ECONNREFUSED:
        case ECONNRESET:
        case EHOSTUNREACH:
        case ESHUTDOWN:
        case EPIPE:
                return GW_CONNECT_UNAVAILABLE;
        case EBADMSG:
                return GW_CONNECT_DATA_LOSS;
        case ENOKEY:
                return GW_CONNECT_UNAUTHENTICATED;
        default:
                return GW_CONNECT_INTERNAL;
        }
}

GwConnectCode gw_connect_code_from_http_status(unsigned status)
{
        switch (status) {
        case 200:
                return GW_CONNECT_OK;
        case 400:
                return GW_CONNECT_INTERNAL;
        case 401:
                return GW_CONNECT_UNAUTHENTICATED;
        case 403:
                return GW_CONNECT_PERMISSION_DENIED;
        case 404:
                return GW_CONNECT_UNIMPLEMENTED;
        case 429:
        case 502:
        case 503:
        case 504:
                return GW_CONNECT_UNAVAILABLE;
        default:
                return GW_CONNECT_UNKNOWN;
        }
}

static int error_object(GwConnectCode c, const char *message, json_object **ret)
{
        const char *name = gw_connect_code_name(c);
        if (!name)
                return -EINVAL;
        cleanup_json json_object *o = json_object_new_object();
        if (!o || json_object_object_add(o, "code", json_object_new_string(name)) < 0)
                return -ENOMEM;
        if (message && *message &&
            json_object_object_add(o, "message", json_object_new_string(message)) < 0)
                return -ENOMEM;
        *ret = TAKE_PTR(o);
        return 0;
}

int gw_connect_error_new(GwConnectCode c, const char *message, json_object **ret)
{
        return error_object(c, message, ret);
}

/* --- envelopes ------------------------------------------------------------ */

int gw_connect_envelope(uint8_t flags, const void *data, size_t len, char **ret, size_t *ret_len)
{
        if (len > UINT32_MAX)
                return -EMSGSIZE;
        cleanup_free char *out = malloc(GW_CONNECT_HEADER_LEN + len + 1);
        if (!out)
                return -ENOMEM;
        out[0] = (char) flags;
        out[1] = (char) ((len >> 24) & 0xff);
        out[2] = (char) ((len >> 16) & 0xff);
        out[3] = (char) ((len >> 8) & 0xff);
        out[4] = (char) (len & 0xff);
        if (len)
                memcpy(out + GW_CONNECT_HEADER_LEN, data, len);
        out[GW_CONNECT_HEADER_LEN + len] = 0;
        *ret_len = GW_CONNECT_HEADER_LEN + len;
        *ret = TAKE_PTR(out);
        return 0;
}

static int frame_json(uint8_t flags, json_object *o, char **ret, size_t *ret_len)
{
        size_t n = 0;
        const char *s = json_object_to_json_string_length(
                o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &n);
        if (!s)
                return -ENOMEM;
        return gw_connect_envelope(flags, s, n, ret, ret_len);
}

int gw_connect_frame_message(json_object *msg, char **ret, size_t *ret_len)
{
        if (!msg || !json_object_is_type(msg, json_type_object))
                return -EINVAL;
        return frame_json(0, msg, ret, ret_len);
}

static int metadata_copy(json_object *md, json_object **ret)
{
        if (!json_object_is_type(md, json_type_object))
                return -EINVAL;
        cleanup_json json_object *out = json_object_new_object();
        if (!out)
                return -ENOMEM;
        json_object_object_foreach(md, key, val) {
                if (!*key)
                        return -EINVAL;
                json_object *arr = json_object_new_array();
                if (!arr || json_object_object_add(out, key, arr) < 0) {
                        json_object_put(arr);
                        return -ENOMEM;
                }
                if (json_object_is_type(val, json_type_string)) {
                        if (json_object_array_add(arr, json_object_get(val)) < 0)
                                return -ENOMEM;
                        continue;
                }
                if (!json_object_is_type(val, json_type_array))
                        return -EINVAL;
                for (size_t i = 0; i < json_object_array_length(val); i++) {
                        json_object *s = json_object_array_get_idx(val, i);
                        if (!json_object_is_type(s, json_type_string))
                                return -EINVAL;
                        if (json_object_array_add(arr, json_object_get(s)) < 0)
                                return -ENOMEM;
                }
        }
        *ret = TAKE_PTR(out);
        return 0;
}

int gw_connect_frame_end(GwConnectCode c, const char *message, json_object *metadata, char **ret,
                         size_t *ret_len)
{
        cleanup_json json_object *o = json_object_new_object();
        if (!o)
                return -ENOMEM;
        int r;
        if (c != GW_CONNECT_OK) {
                json_object *err = NULL;
                if ((r = error_object(c, message, &err)) < 0)
                        return r;
                if (json_object_object_add(o, "error", err) < 0) {
                        json_object_put(err);
                        return -ENOMEM;
                }
        }
        if (metadata) {
                json_object *md = NULL;
                if ((r = metadata_copy(metadata, &md)) < 0)
                        return r;
                if (json_object_object_add(o, "metadata", md) < 0) {
                        json_object_put(md);
                        return -ENOMEM;
                }
        }
        return frame_json(GW_CONNECT_FLAG_END_STREAM, o, ret, ret_len);
}

/* --- reader --------------------------------------------------------------- */

void gw_connect_reader_init(GwConnectReader *r, size_t max)
{
        *r = (GwConnectReader){.max = max};
}

void gw_connect_reader_done(GwConnectReader *r)
{
        free(r->buf);
        r->buf = NULL;
}

static int reader_fail(GwConnectReader *r, int err, const char *why)
{
        if (!r->error) {
                r->error = why;
                r->err = err;
        }
        return r->err;
}

static int reader_header(GwConnectReader *r)
{
        r->flags = r->hdr[0];
        r->len = ((uint32_t) r->hdr[1] << 24) | ((uint32_t) r->hdr[2] << 16) |
                 ((uint32_t) r->hdr[3] << 8) | (uint32_t) r->hdr[4];
        if (r->flags & GW_CONNECT_FLAG_COMPRESSED)
                return reader_fail(r, -EPROTONOSUPPORT,
                                   "compressed envelopes are not supported (no compression "
                                   "was negotiated)");
        uint8_t known = r->allow_end_stream ? GW_CONNECT_FLAG_END_STREAM : 0;
        if (r->flags & ~known)
                return reader_fail(r, -EBADMSG, "envelope has unknown flags");
        if (r->len > r->max)
                return reader_fail(r, -EMSGSIZE, "message is larger than the limit");
        if (!(r->buf = malloc((size_t) r->len + 1)))
                return reader_fail(r, -ENOMEM, "out of memory");
        r->buf_len = 0;
        return 0;
}

int gw_connect_reader_feed(GwConnectReader *r, const void *data, size_t len, size_t *ret_used)
{
        const uint8_t *p = data;
        size_t used = 0;
        *ret_used = 0;
        if (r->error)
                return r->err;
        if (r->ready)
                return 1;
        if (r->hdr_len < GW_CONNECT_HEADER_LEN) {
                size_t n = GW_CONNECT_HEADER_LEN - r->hdr_len;
                if (n > len)
                        n = len;
                if (n)
                        memcpy(r->hdr + r->hdr_len, p, n);
                r->hdr_len += n;
                used += n;
                if (r->hdr_len < GW_CONNECT_HEADER_LEN) {
                        *ret_used = used;
                        return 0;
                }
                int e = reader_header(r);
                if (e < 0) {
                        *ret_used = used;
                        return e;
                }
        }
        size_t n = (size_t) r->len - r->buf_len;
        if (n > len - used)
                n = len - used;
        if (n)
                memcpy(r->buf + r->buf_len, p + used, n);
        r->buf_len += n;
        used += n;
        *ret_used = used;
        if (r->buf_len < r->len)
                return 0;
        r->buf[r->buf_len] = 0;
        r->ready = true;
        return 1;
}

int gw_connect_reader_take(GwConnectReader *r, uint8_t *ret_flags, char **ret_msg, size_t *ret_len)
{
        if (!r->ready)
                return -EAGAIN;
        *ret_flags = r->flags;
        *ret_len = r->buf_len;
        *ret_msg = (char *) TAKE_PTR(r->buf);
        r->ready = false;
        r->hdr_len = 0;
        r->buf_len = 0;
        return 0;
}

int gw_connect_reader_finish(GwConnectReader *r)
{
        if (r->error)
                return r->err;
        if (r->ready || r->hdr_len > 0)
                return reader_fail(r, -EBADMSG, "request body ends inside an envelope");
        return 0;
}

const char *gw_connect_reader_error(const GwConnectReader *r)
{
        return r->error;
}

int gw_connect_parse_single(const void *body, size_t len, size_t max, json_object **ret,
                            const char **ret_error)
{
        GwConnectReader rd;
        gw_connect_reader_init(&rd, max);
        size_t used = 0;
        int r = gw_connect_reader_feed(&rd, body, len, &used);
        if (r == 0) {
                r = gw_connect_reader_finish(&rd);
                *ret_error = r < 0 ? gw_connect_reader_error(&rd) : "request body holds no message";
                gw_connect_reader_done(&rd);
                return -EBADMSG;
        }
        if (r < 0) {
                *ret_error = gw_connect_reader_error(&rd);
                gw_connect_reader_done(&rd);
                return r;
        }
        uint8_t flags = 0;
        size_t n = 0;
        cleanup_free char *msg = NULL;
        (void) gw_connect_reader_take(&rd, &flags, &msg, &n);
        gw_connect_reader_done(&rd);
        if (used != len) {
                *ret_error = "request body holds more than one envelope";
                return -EBADMSG;
        }
        if (n > INT_MAX || memchr(msg, 0, n)) {
                *ret_error = "message is not valid JSON";
                return -EBADMSG;
        }
        json_tokener *tok = json_tokener_new();
        if (!tok)
                return -ENOMEM;
        json_object *o = json_tokener_parse_ex(tok, msg, (int) n);
        bool complete = json_tokener_get_error(tok) == json_tokener_success &&
                        json_tokener_get_parse_end(tok) == n;
        json_tokener_free(tok);
        if (!complete || !json_object_is_type(o, json_type_object)) {
                json_object_put(o);
                *ret_error = "message is not a JSON object";
                return -EBADMSG;
        }
        *ret = o;
        return 0;
}

/* --- headers -------------------------------------------------------------- */

static bool token_eq(const char *s, size_t n, const char *want)
{
        return strlen(want) == n && strncasecmp(s, want, n) == 0;
}

static void trim(const char **s, size_t *n)
{
        while (*n && (**s == ' ' || **s == '\t')) {
                (*s)++;
                (*n)--;
        }
        while (*n && ((*s)[*n - 1] == ' ' || (*s)[*n - 1] == '\t'))
                (*n)--;
}

/* Parameters after the media type: only charset, and only UTF-8, matter. */
static bool params_ok(const char *p)
{
        while (*p == ';') {
                p++;
                const char *end = strchr(p, ';');
                size_t n = end ? (size_t) (end - p) : strlen(p);
                const char *s = p;
                trim(&s, &n);
                const char *eq = memchr(s, '=', n);
                if (eq && token_eq(s, (size_t) (eq - s), "charset")) {
                        const char *v = eq + 1;
                        size_t vn = n - (size_t) (v - s);
                        trim(&v, &vn);
                        if (vn >= 2 && v[0] == '"' && v[vn - 1] == '"') {
                                v++;
                                vn -= 2;
                        }
                        if (!token_eq(v, vn, "utf-8") && !token_eq(v, vn, "utf8"))
                                return false;
                }
                p = end ? end : p + strlen(p);
        }
        return *p == 0;
}

int gw_connect_content_type_parse(const char *ct, GwConnectContentType *ret, const char **ret_error)
{
        if (!ct || !*ct) {
                *ret_error = "Content-Type is missing; use application/json (unary) or "
                             "application/connect+json (streaming)";
                return -EINVAL;
        }
        const char *semi = strchr(ct, ';');
        const char *s = ct;
        size_t n = semi ? (size_t) (semi - ct) : strlen(ct);
        trim(&s, &n);
        if (token_eq(s, n, "application/proto") || token_eq(s, n, "application/connect+proto")) {
                *ret_error = "the protobuf codec is not supported: use the JSON codec "
                             "(application/json or application/connect+json)";
                return -EOPNOTSUPP;
        }
        GwConnectContentType t;
        if (token_eq(s, n, "application/json"))
                t = GW_CONNECT_CT_UNARY_JSON;
        else if (token_eq(s, n, "application/connect+json"))
                t = GW_CONNECT_CT_STREAM_JSON;
        else {
                *ret_error = "unsupported Content-Type; use application/json (unary) or "
                             "application/connect+json (streaming)";
                return -EINVAL;
        }
        if (semi && !params_ok(semi)) {
                *ret_error = "unsupported charset; only UTF-8 is accepted";
                return -EINVAL;
        }
        *ret = t;
        return 0;
}

static bool ident_char(char c)
{
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '_';
}

int gw_connect_path_parse(const char *path, char **ret_service, char **ret_method)
{
        if (!path || path[0] != '/')
                return -EINVAL;
        const char *svc = path + 1, *slash = strchr(svc, '/');
        if (!slash || slash == svc || !slash[1] || strlen(path) > 256)
                return -EINVAL;
        bool dot = false;
        for (const char *p = svc; p < slash; p++) {
                if (*p == '.') {
                        /* no empty component: not first, not last, not doubled */
                        if (p == svc || p + 1 == slash || p[1] == '.')
                                return -EINVAL;
                        dot = true;
                } else if (!ident_char(*p))
                        return -EINVAL;
        }
        for (const char *p = slash + 1; *p; p++)
                if (!ident_char(*p))
                        return -EINVAL;
        if (!dot)
                return -EINVAL;
        cleanup_free char *s = strndup(svc, (size_t) (slash - svc));
        cleanup_free char *m = strdup(slash + 1);
        if (!s || !m)
                return -ENOMEM;
        *ret_service = TAKE_PTR(s);
        *ret_method = TAKE_PTR(m);
        return 0;
}

static int parse_decimal_u64(const char *s, size_t n, uint64_t max, uint64_t *ret)
{
        if (n == 0)
                return -EINVAL;
        uint64_t v = 0;
        for (size_t i = 0; i < n; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return -EINVAL;
                unsigned d = (unsigned) (s[i] - '0');
                if (v > (max - d) / 10)
                        return -ERANGE;
                v = v * 10 + d;
        }
        *ret = v;
        return 0;
}

int gw_connect_timeout_parse(const char *v, uint64_t *ret_ms)
{
        if (!v)
                return -EINVAL;
        size_t n = strlen(v);
        uint64_t ms = 0;
        if (n < 1 || n > 10 || parse_decimal_u64(v, n, UINT64_MAX, &ms) < 0)
                return -EINVAL;
        *ret_ms = ms;
        return 0;
}

int gw_connect_protocol_version_check(const char *v)
{
        return !v || streq(v, "1") ? 0 : -EINVAL;
}

/* --- canonical JSON ------------------------------------------------------- */

int gw_connect_b64_decode(const char *s, size_t len, uint8_t **ret, size_t *ret_len)
{
        cleanup_free char *std = malloc(len + 1);
        if (!std)
                return -ENOMEM;
        for (size_t i = 0; i < len; i++) {
                char c = s[i];
                if (c == 0)
                        return -EINVAL;
                std[i] = (char) (c == '-' ? '+' : c == '_' ? '/' : c);
        }
        std[len] = 0;
        return base64_decode(std, ret, ret_len);
}

int gw_connect_bytes_from_json(json_object *v, uint8_t **ret, size_t *ret_len)
{
        if (!v)
                return -ENODATA;
        if (!json_object_is_type(v, json_type_string))
                return -EINVAL;
        return gw_connect_b64_decode(json_object_get_string(v),
                                     (size_t) json_object_get_string_len(v), ret, ret_len);
}

int gw_connect_bytes_to_json(const void *data, size_t len, json_object **ret)
{
        cleanup_free char *s = NULL;
        int r = base64_encode(data, len, &s);
        if (r < 0)
                return r;
        json_object *o = json_object_new_string(s);
        if (!o)
                return -ENOMEM;
        *ret = o;
        return 0;
}

/* An integer in [lo, hi] from a number or a decimal string. */
static int int_from_json(json_object *v, int64_t lo, uint64_t hi, bool *ret_neg, uint64_t *ret_abs)
{
        if (!v)
                return -ENODATA;
        switch (json_object_get_type(v)) {
        case json_type_int: {
                /* json-c keeps positive values past INT64_MAX as uint64, and
                 * clamps what does not fit to INT64_MIN or UINT64_MAX: those
                 * two, as numbers, cannot be told from an overflow (protobuf
                 * JSON writers send 64-bit values as strings anyway). */
                int64_t i = json_object_get_int64(v);
                if (i == INT64_MIN)
                        return -ERANGE;
                if (i == INT64_MAX) {
                        uint64_t u = json_object_get_uint64(v);
                        if (u == UINT64_MAX || u > hi)
                                return -ERANGE;
                        *ret_neg = false;
                        *ret_abs = u;
                        return 0;
                }
                if (i < lo || (i > 0 && (uint64_t) i > hi))
                        return -ERANGE;
                *ret_neg = i < 0;
                *ret_abs = i < 0 ? (uint64_t) (-(i + 1)) + 1 : (uint64_t) i;
                return 0;
        }
        case json_type_double: {
                double d = json_object_get_double(v);
                if (!isfinite(d) || d != floor(d))
                        return -EINVAL;
                if (d < 0) {
                        /* lo >= INT64_MIN, which a double holds exactly */
                        if (d < (double) lo)
                                return -ERANGE;
                        *ret_neg = true;
                        *ret_abs = (uint64_t) -d;
                        return 0;
                }
                if (d >= 18446744073709551616.0 || (uint64_t) d > hi)
                        return -ERANGE;
                *ret_neg = false;
                *ret_abs = (uint64_t) d;
                return 0;
        }
        case json_type_string: {
                const char *s = json_object_get_string(v);
                size_t n = (size_t) json_object_get_string_len(v);
                bool neg = n > 0 && s[0] == '-';
                if (neg) {
                        s++;
                        n--;
                }
                if (n > 1 && s[0] == '0')
                        return -EINVAL;
                uint64_t lim = neg ? (lo < 0 ? (uint64_t) (-(lo + 1)) + 1 : 0) : hi;
                uint64_t a = 0;
                int r = parse_decimal_u64(s, n, UINT64_MAX, &a);
                if (r < 0)
                        return r;
                if (a > lim)
                        return -ERANGE;
                *ret_neg = neg && a != 0;
                *ret_abs = a;
                return 0;
        }
        case json_type_null:
                return -ENODATA;
        default:
                return -EINVAL;
        }
}

int gw_connect_int64_from_json(json_object *v, int64_t *ret)
{
        bool neg = false;
        uint64_t a = 0;
        int r = int_from_json(v, INT64_MIN, INT64_MAX, &neg, &a);
        if (r < 0)
                return r;
        if (neg && a > (uint64_t) INT64_MAX + 1)
                return -ERANGE;
        *ret = neg ? (a == (uint64_t) INT64_MAX + 1 ? INT64_MIN : -(int64_t) a) : (int64_t) a;
        return 0;
}

int gw_connect_uint64_from_json(json_object *v, uint64_t *ret)
{
        bool neg = false;
        uint64_t a = 0;
        int r = int_from_json(v, 0, UINT64_MAX, &neg, &a);
        if (r < 0)
                return r;
        if (neg)
                return -ERANGE;
        *ret = a;
        return 0;
}

int gw_connect_int32_from_json(json_object *v, int32_t *ret)
{
        int64_t x = 0;
        int r = gw_connect_int64_from_json(v, &x);
        if (r < 0)
                return r;
        if (x < INT32_MIN || x > INT32_MAX)
                return -ERANGE;
        *ret = (int32_t) x;
        return 0;
}

int gw_connect_uint32_from_json(json_object *v, uint32_t *ret)
{
        uint64_t x = 0;
        int r = gw_connect_uint64_from_json(v, &x);
        if (r < 0)
                return r;
        if (x > UINT32_MAX)
                return -ERANGE;
        *ret = (uint32_t) x;
        return 0;
}

int gw_connect_int64_to_json(int64_t v, json_object **ret)
{
        char buf[24];
        (void) snprintf(buf, sizeof(buf), "%lld", (long long) v);
        json_object *o = json_object_new_string(buf);
        if (!o)
                return -ENOMEM;
        *ret = o;
        return 0;
}

static int digits(const char **p, int n, int *ret)
{
        int v = 0;
        for (int i = 0; i < n; i++) {
                char c = (*p)[i];
                if (c < '0' || c > '9')
                        return -EINVAL;
                v = v * 10 + (c - '0');
        }
        *p += n;
        *ret = v;
        return 0;
}

static bool leap(int y)
{
        return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (no time_t limits). */
static int64_t days_from_civil(int y, int m, int d)
{
        y -= m <= 2;
        int64_t era = (y >= 0 ? y : y - 399) / 400;
        int64_t yoe = y - era * 400;
        int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
        int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        return era * 146097 + doe - 719468;
}

int gw_connect_timestamp_parse(const char *s, int64_t *ret_sec, int32_t *ret_nsec)
{
        static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
        int y, mo, d, h, mi, sec;
        const char *p = s;
        if (!s || digits(&p, 4, &y) < 0 || *p++ != '-' || digits(&p, 2, &mo) < 0 || *p++ != '-' ||
            digits(&p, 2, &d) < 0 || (*p != 'T' && *p != 't'))
                return -EINVAL;
        p++;
        if (digits(&p, 2, &h) < 0 || *p++ != ':' || digits(&p, 2, &mi) < 0 || *p++ != ':' ||
            digits(&p, 2, &sec) < 0)
                return -EINVAL;
        if (y < 1 || mo < 1 || mo > 12 || d < 1 ||
            d > mdays[mo - 1] + (mo == 2 && leap(y) ? 1 : 0) || h > 23 || mi > 59 || sec > 59)
                return -EINVAL;
        int32_t nsec = 0;
        if (*p == '.') {
                p++;
                int n = 0;
                while (p[n] >= '0' && p[n] <= '9')
                        n++;
                if (n < 1 || n > 9)
                        return -EINVAL;
                for (int i = 0; i < 9; i++)
                        nsec = nsec * 10 + (i < n ? p[i] - '0' : 0);
                p += n;
        }
        int64_t off = 0;
        if (*p == 'Z' || *p == 'z')
                p++;
        else if (*p == '+' || *p == '-') {
                int sign = *p == '-' ? -1 : 1, oh, om;
                p++;
                if (digits(&p, 2, &oh) < 0 || *p++ != ':' || digits(&p, 2, &om) < 0 || oh > 23 ||
                    om > 59)
                        return -EINVAL;
                off = (int64_t) sign * ((int64_t) oh * 3600 + (int64_t) om * 60);
        } else
                return -EINVAL;
        if (*p)
                return -EINVAL;
        int64_t t = days_from_civil(y, mo, d) * 86400 + (int64_t) h * 3600 + (int64_t) mi * 60 +
                    sec - off;
        /* Protobuf's range: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z. */
        if (t < -62135596800LL || t > 253402300799LL)
                return -ERANGE;
        *ret_sec = t;
        *ret_nsec = nsec;
        return 0;
}

int gw_connect_timestamp_format(int64_t sec, int32_t nsec, char *buf, size_t len)
{
        if (sec < -62135596800LL || sec > 253402300799LL || nsec < 0 || nsec > 999999999 ||
            len < 40)
                return -EINVAL;
        /* civil_from_days */
        int64_t z = (sec >= 0 ? sec : sec - 86399) / 86400;
        int64_t rem = sec - z * 86400;
        z += 719468;
        int64_t era = (z >= 0 ? z : z - 146096) / 146097;
        int64_t doe = z - era * 146097;
        int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
        int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        int64_t mp = (5 * doy + 2) / 153;
        int64_t d = doy - (153 * mp + 2) / 5 + 1;
        int64_t m = mp + (mp < 10 ? 3 : -9);
        int64_t y = yoe + era * 400 + (m <= 2);
        int n = snprintf(buf, len, "%04lld-%02lld-%02lldT%02lld:%02lld:%02lld", (long long) y,
                         (long long) m, (long long) d, (long long) (rem / 3600),
                         (long long) (rem / 60 % 60), (long long) (rem % 60));
        if (n < 0)
                return -EINVAL;
        size_t at = (size_t) n;
        if (nsec % 1000000 == 0 && nsec)
                (void) snprintf(buf + at, len - at, ".%03dZ", nsec / 1000000);
        else if (nsec % 1000 == 0 && nsec)
                (void) snprintf(buf + at, len - at, ".%06dZ", nsec / 1000);
        else if (nsec)
                (void) snprintf(buf + at, len - at, ".%09dZ", nsec);
        else
                (void) snprintf(buf + at, len - at, "Z");
        return 0;
}

int gw_connect_enum_from_json(json_object *v, const GwConnectEnumValue *table, int *ret)
{
        if (!v || json_object_is_type(v, json_type_null))
                return -ENODATA;
        if (json_object_is_type(v, json_type_string)) {
                const char *s = json_object_get_string(v);
                for (const GwConnectEnumValue *e = table; e->name; e++)
                        if (streq(e->name, s)) {
                                *ret = e->value;
                                return 0;
                        }
                return -EINVAL;
        }
        int32_t n = 0;
        if (!json_object_is_type(v, json_type_int) && !json_object_is_type(v, json_type_double))
                return -EINVAL;
        int r = gw_connect_int32_from_json(v, &n);
        if (r < 0)
                return r;
        *ret = n;
        return 0;
}

const char *gw_connect_enum_name(const GwConnectEnumValue *table, int value)
{
        for (const GwConnectEnumValue *e = table; e->name; e++)
                if (e->value == value)
                        return e->name;
        return NULL;
}

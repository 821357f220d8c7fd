/* libFuzzer harness for the gateway's Connect module: the bytes are a request
 * body fed to the envelope reader in pieces (sizes taken from the input),
 * then to the one-envelope parser; as a string they go to the header parsers,
 * the procedure path parser, the timestamp and base64 readers, and, when they
 * parse as JSON, to the integer and enum readers. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "connect.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const GwConnectEnumValue sig[] = {{"SIGNAL_SIGTERM", 15}, {"SIGNAL_SIGKILL", 9}, {NULL, 0}};

static void json_readers(json_object *o)
{
        int64_t i64;
        uint64_t u64;
        int32_t i32;
        uint32_t u32;
        int e;
        uint8_t *b = NULL;
        size_t n;
        (void) gw_connect_int64_from_json(o, &i64);
        (void) gw_connect_uint64_from_json(o, &u64);
        (void) gw_connect_int32_from_json(o, &i32);
        (void) gw_connect_uint32_from_json(o, &u32);
        (void) gw_connect_enum_from_json(o, sig, &e);
        if (gw_connect_bytes_from_json(o, &b, &n) == 0)
                free(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        /* The reader, fed in pieces of 1..16 bytes chosen by the input itself. */
        GwConnectReader r;
        gw_connect_reader_init(&r, 4096);
        r.allow_end_stream = size > 0 && (data[0] & 1);
        size_t off = 0;
        int x = 0;
        while (off < size) {
                size_t piece = (size_t) (data[off] % 16) + 1, used = 0;
                if (piece > size - off)
                        piece = size - off;
                x = gw_connect_reader_feed(&r, data + off, piece, &used);
                if (x < 0)
                        break;
                off += used;
                if (x == 1) {
                        uint8_t flags;
                        char *msg = NULL;
                        size_t n;
                        if (gw_connect_reader_take(&r, &flags, &msg, &n) == 0)
                                free(msg);
                }
        }
        if (x >= 0)
                (void) gw_connect_reader_finish(&r);
        gw_connect_reader_done(&r);

        json_object *o = NULL;
        const char *why = NULL;
        if (gw_connect_parse_single(data, size, 4096, &o, &why) == 0) {
                char *f = NULL;
                size_t n;
                if (gw_connect_frame_message(o, &f, &n) == 0)
                        free(f);
                json_object_object_foreach(o, key, val) {
                        (void) key;
                        json_readers(val);
                }
                json_object_put(o);
        }

        char *s = malloc(size + 1);
        if (!s)
                return 0;
        memcpy(s, data, size);
        s[size] = 0;
        GwConnectContentType t;
        uint64_t ms;
        int64_t sec;
        int32_t nsec;
        (void) gw_connect_content_type_parse(s, &t, &why);
        (void) gw_connect_timeout_parse(s, &ms);
        (void) gw_connect_protocol_version_check(s);
        if (gw_connect_timestamp_parse(s, &sec, &nsec) == 0) {
                char buf[40];
                if (gw_connect_timestamp_format(sec, nsec, buf, sizeof(buf)) != 0)
                        abort(); /* whatever parses must format */
        }
        char *svc = NULL, *method = NULL;
        if (gw_connect_path_parse(s, &svc, &method) == 0) {
                if (!strchr(svc, '.') || strchr(method, '/'))
                        abort();
                free(svc);
                free(method);
        }
        uint8_t *b = NULL;
        size_t n;
        if (gw_connect_b64_decode(s, strlen(s), &b, &n) == 0)
                free(b);
        json_object *j = json_tokener_parse(s);
        json_readers(j);
        json_object_put(j);
        free(s);
        return 0;
}

/* libFuzzer harness for the init wire protocol parser: the input is one frame,
 * header included, as init would read it from the agent's socket. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "initproto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        if (size < IP_HEADER_SIZE)
                return 0;
        uint8_t type;
        uint32_t len;
        if (ip_parse_header(data, &type, &len) < 0)
                return 0;
        size_t avail = size - IP_HEADER_SIZE;
        if (len > avail)
                len = (uint32_t) avail;
        /* A copy of exactly the body, so ASan catches any read past it. */
        uint8_t *body = malloc(len ? len : 1);
        if (!body)
                return 0;
        memcpy(body, data + IP_HEADER_SIZE, len);
        IpFrame f = {.type = (IpMsgType) type, .body = body, .body_len = len};

        int valid = ip_validate(&f);
        size_t off = 0;
        uint8_t tag;
        const uint8_t *val;
        uint32_t vlen;
        int r;
        while ((r = ip_next_field(&f, &off, &tag, &val, &vlen)) > 0)
                if (val < body || val + vlen > body + len)
                        abort();
        if (r != valid)
                abort();

        for (unsigned t = 0; t < 20; t++) {
                uint32_t u32;
                int32_t i32;
                uint64_t u64;
                (void) ip_get_bytes(&f, (IpTag) t, &val, &vlen);
                (void) ip_get_u32(&f, (IpTag) t, &u32);
                (void) ip_get_i32(&f, (IpTag) t, &i32);
                (void) ip_get_u64(&f, (IpTag) t, &u64);
                char *s = NULL;
                if (ip_get_strdup(&f, (IpTag) t, &s) == 0) {
                        if (ip_get_bytes(&f, (IpTag) t, &val, &vlen) < 0 || strlen(s) != vlen)
                                abort();
                        free(s);
                }
        }
        free(body);
        return 0;
}

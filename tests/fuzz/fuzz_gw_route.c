/* libFuzzer harness for the gateway's router: the input is split at NUL bytes
 * into a Host header, an E2b-Sandbox-Id, an E2b-Sandbox-Port and a domain. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "route.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        char *s = malloc(size + 1);
        if (!s)
                return 0;
        memcpy(s, data, size);
        s[size] = 0;
        const char *part[4] = {NULL, NULL, NULL, NULL};
        size_t k = 0;
        for (char *p = s; k < 4 && p <= s + size; p += strlen(p) + 1)
                part[k++] = p;
        /* an empty header part stands for a missing header */
        const char *id = part[1] && *part[1] ? part[1] : NULL;
        const char *port = part[2] && *part[2] ? part[2] : NULL;
        GwRoute r;
        char err[256];
        if (gw_route_resolve(part[0], id, port, part[3] ? part[3] : "sbx.example.com", &r, err,
                             sizeof(err)) == 0) {
                /* a sandbox route always names a valid id and port */
                if (r.kind != GW_ROUTE_CONTROL && (r.port == 0 || r.sandbox_id[0] == 0))
                        abort();
                if (r.kind == GW_ROUTE_CONTROL && (r.port != 0 || r.sandbox_id[0] != 0))
                        abort();
        }
        free(s);
        return 0;
}

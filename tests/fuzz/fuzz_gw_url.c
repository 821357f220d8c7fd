/* libFuzzer harness for the port proxy's split of an agent's URL (from its
 * Lease) into host and port (gateway/src/agent-conn.h). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent-conn.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        char *s = malloc(size + 1);
        if (!s)
                return 0;
        memcpy(s, data, size);
        s[size] = 0;
        char host[64], port[8];
        if (gw_url_host_port(s, "443", host, sizeof(host), port, sizeof(port)) == 0) {
                /* a host without the URL's punctuation, a port 1-65535 */
                unsigned long v = strtoul(port, NULL, 10);
                if (!host[0] || strpbrk(host, "/?#[]") || v == 0 || v > 65535 ||
                    strspn(port, "0123456789") != strlen(port))
                        abort();
        }
        free(s);
        return 0;
}

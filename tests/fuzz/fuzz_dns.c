/* libFuzzer harness for the agent's DNS parsing (net-dns-msg.c): the input is
 * a message as a sandbox would send it to the resolver; it is parsed as a
 * query, answered REFUSED, and, with its own question, parsed as an answer
 * (what the upstream could send back). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net-dns-msg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        /* A copy of exactly the input, so ASan catches any read past it. */
        uint8_t *msg = malloc(size ? size : 1);
        if (!msg)
                return 0;
        memcpy(msg, data, size);
        DnsQuestion q;
        if (dns_query_parse(msg, size, &q) == 0) {
                if (q.end > size || strlen(q.name) >= DNS_NAME_MAX)
                        abort();
                uint8_t *out = malloc(q.end);
                if (out && dns_error_reply(msg, &q, DNS_RCODE_REFUSED, out) != q.end)
                        abort();
                free(out);
                (void) dns_pattern_match("*.example.com", q.name);
                (void) dns_pattern_match("example.com", q.name);
        } else {
                q = (DnsQuestion){.id = size >= 2 ? (uint16_t) ((msg[0] << 8) | msg[1]) : 0};
        }
        DnsAddr addrs[DNS_MAX_ADDRS];
        size_t n = DNS_MAX_ADDRS + 1;
        if (dns_answer_addrs(msg, size, &q, addrs, &n) == 0 && n > DNS_MAX_ADDRS)
                abort();
        size_t off = size ? msg[0] % size : 0;
        char name[DNS_NAME_MAX];
        if (dns_name_read(msg, size, &off, name, NULL) == 0 &&
            (off > size || strlen(name) >= DNS_NAME_MAX))
                abort();
        char pat[DNS_NAME_MAX];
        char *s = malloc(size + 1);
        if (s) {
                memcpy(s, data, size);
                s[size] = 0;
                if (dns_pattern_normalize(s, pat) == 0 && strlen(pat) >= DNS_NAME_MAX)
                        abort();
                free(s);
        }
        free(msg);
        return 0;
}

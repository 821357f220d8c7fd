/* DNS messages: parse a question, build an error reply, read A records.
 * Every offset is checked against the length before it is read. */
#include "net-dns-msg.h"

#include <errno.h>
#include <string.h>

#define DNS_MAX_HOPS 16

static uint16_t rd16(const uint8_t *p)
{
        return (uint16_t) ((p[0] << 8) | p[1]);
}

static bool label_char(uint8_t c)
{
        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

int dns_name_read(const uint8_t *msg, size_t len, size_t *off, char out[DNS_NAME_MAX],
                  bool *ret_plain)
{
        size_t pos = *off, used = 0, after = 0;
        bool jumped = false, plain = true;
        unsigned hops = 0;
        for (;;) {
                if (pos >= len)
                        return -EBADMSG;
                uint8_t l = msg[pos];
                if ((l & 0xc0) == 0xc0) {
                        if (pos + 1 >= len || ++hops > DNS_MAX_HOPS)
                                return -EBADMSG;
                        size_t to = ((size_t) (l & 0x3f) << 8) | msg[pos + 1];
                        if (to >= pos) /* only backwards: no loops */
                                return -EBADMSG;
                        if (!jumped)
                                after = pos + 2;
                        jumped = true;
                        pos = to;
                        continue;
                }
                if (l & 0xc0)
                        return -EBADMSG; /* 0x40, 0x80: reserved label types */
                if (l == 0) {
                        pos++;
                        break;
                }
                if (pos + 1 + l > len || used + (used ? 1 : 0) + l + 1 > DNS_NAME_MAX)
                        return -EBADMSG;
                if (used)
                        out[used++] = '.';
                for (size_t i = 0; i < l; i++) {
                        uint8_t c = msg[pos + 1 + i];
                        if (c >= 'A' && c <= 'Z')
                                c = (uint8_t) (c - 'A' + 'a');
                        plain = plain && label_char(c);
                        /* Kept printable: a name only ever goes to a comparison or a log. */
                        out[used++] = (char) (c > 0x20 && c < 0x7f && c != '.' ? c : '?');
                }
                pos += 1 + l;
        }
        out[used] = 0;
        *off = jumped ? after : pos;
        if (ret_plain)
                *ret_plain = plain;
        return 0;
}

int dns_query_parse(const uint8_t *msg, size_t len, DnsQuestion *ret)
{
        if (len < DNS_HEADER)
                return -EBADMSG;
        /* QR 0, opcode 0 (QUERY), one question, no answers. */
        if ((msg[2] & 0xf8) != 0 || rd16(msg + 4) != 1 || rd16(msg + 6) != 0)
                return -EBADMSG;
        DnsQuestion q = {.id = rd16(msg)};
        size_t off = DNS_HEADER;
        if (dns_name_read(msg, len, &off, q.name, &q.plain) < 0 || off + 4 > len)
                return -EBADMSG;
        q.qtype = rd16(msg + off);
        q.qclass = rd16(msg + off + 2);
        q.end = off + 4;
        *ret = q;
        return 0;
}

size_t dns_error_reply(const uint8_t *query, const DnsQuestion *q, int rcode, uint8_t *out)
{
        memmove(out, query, q->end);
        out[2] = (uint8_t) (0x80 | (query[2] & 0x01)); /* QR, keep RD */
        out[3] = (uint8_t) (0x80 | (rcode & 0x0f));    /* RA, rcode */
        memset(out + 6, 0, 6);                         /* no AN, NS, AR */
        return q->end;
}

int dns_answer_addrs(const uint8_t *msg, size_t len, const DnsQuestion *q, DnsAddr *ret,
                     size_t *ret_n)
{
        *ret_n = 0;
        if (len < DNS_HEADER || rd16(msg) != q->id || !(msg[2] & 0x80) || rd16(msg + 4) != 1)
                return -EBADMSG;
        char name[DNS_NAME_MAX];
        size_t off = DNS_HEADER;
        if (dns_name_read(msg, len, &off, name, NULL) < 0 || off + 4 > len ||
            strcmp(name, q->name) != 0 || rd16(msg + off) != q->qtype ||
            rd16(msg + off + 2) != q->qclass)
                return -EBADMSG;
        off += 4;
        if ((msg[3] & 0x0f) != 0)
                return 0; /* an error: no addresses */
        unsigned an = rd16(msg + 6);
        size_t n = 0;
        for (unsigned i = 0; i < an; i++) {
                if (dns_name_read(msg, len, &off, name, NULL) < 0 || off + 10 > len)
                        return -EBADMSG;
                uint16_t type = rd16(msg + off), class = rd16(msg + off + 2);
                uint32_t ttl = ((uint32_t) rd16(msg + off + 4) << 16) | rd16(msg + off + 6);
                size_t rdlen = rd16(msg + off + 8);
                off += 10;
                if (off + rdlen > len)
                        return -EBADMSG;
                if (type == DNS_TYPE_A && class == DNS_CLASS_IN && rdlen == 4 &&
                    n < DNS_MAX_ADDRS) {
                        ret[n].addr = ((uint32_t) rd16(msg + off) << 16) | rd16(msg + off + 2);
                        ret[n].ttl = ttl > 0x7fffffffu ? 0 : ttl; /* RFC 2181 8 */
                        n++;
                }
                off += rdlen;
        }
        *ret_n = n;
        return 0;
}

bool dns_pattern_match(const char *pattern, const char *name)
{
        if (pattern[0] != '*')
                return strcmp(pattern, name) == 0;
        const char *suffix = pattern + 1; /* ".example.com" */
        size_t ls = strlen(suffix), ln = strlen(name);
        return ln > ls && strcmp(name + ln - ls, suffix) == 0 && name[ln - ls - 1] != '.';
}

int dns_pattern_normalize(const char *in, char out[DNS_NAME_MAX])
{
        size_t n = strlen(in);
        if (n && in[n - 1] == '.')
                n--;
        if (n == 0 || n >= DNS_NAME_MAX)
                return -EINVAL;
        size_t start = 0, label = 0;
        if (n > 2 && in[0] == '*' && in[1] == '.') {
                out[0] = '*';
                out[1] = '.';
                start = 2;
        }
        size_t labels = 0;
        for (size_t i = start; i < n; i++) {
                char c = in[i];
                if (c >= 'A' && c <= 'Z')
                        c = (char) (c - 'A' + 'a');
                if (c == '.') {
                        if (label == 0)
                                return -EINVAL;
                        label = 0;
                } else if (label_char((uint8_t) c) && ++label <= 63) {
                        if (label == 1)
                                labels++;
                } else {
                        return -EINVAL;
                }
                out[i] = c;
        }
        if (label == 0 || (start && labels < 2))
                return -EINVAL; /* "a." or "*.com": a wildcard needs a domain of two labels */
        out[n] = 0;
        return 0;
}

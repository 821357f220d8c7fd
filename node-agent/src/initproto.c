/* Encoder and decoder of the agent <-> init wire protocol (see initproto.h).
 * Linked into both sandpit-agent and the static sandpit-init: libc only. */
#include "initproto.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void put_le32(uint8_t *p, uint32_t v)
{
        p[0] = (uint8_t) v;
        p[1] = (uint8_t) (v >> 8);
        p[2] = (uint8_t) (v >> 16);
        p[3] = (uint8_t) (v >> 24);
}

static uint32_t get_le32(const uint8_t *p)
{
        return (uint32_t) p[0] | (uint32_t) p[1] << 8 | (uint32_t) p[2] << 16 |
               (uint32_t) p[3] << 24;
}

static bool builder_reserve(IpBuilder *b, size_t more)
{
        if (b->oom)
                return false;
        if (b->len + more <= b->cap)
                return true;
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + more)
                cap *= 2;
        uint8_t *n = realloc(b->buf, cap);
        if (!n) {
                b->oom = true;
                return false;
        }
        b->buf = n;
        b->cap = cap;
        return true;
}

void ip_builder_init(IpBuilder *b, IpMsgType type)
{
        *b = (IpBuilder){0};
        if (!builder_reserve(b, IP_HEADER_SIZE))
                return;
        put_le32(b->buf, 0);
        b->buf[4] = (uint8_t) type;
        b->len = IP_HEADER_SIZE;
}

void ip_builder_free(IpBuilder *b)
{
        /* Frames may carry secret env values: leave nothing in freed memory. */
        if (b->buf)
                explicit_bzero(b->buf, b->cap);
        free(b->buf);
        *b = (IpBuilder){0};
}

void ip_put_bytes(IpBuilder *b, IpTag tag, const void *data, size_t len)
{
        if (len > IP_MAX_BODY) {
                b->oom = true;
                return;
        }
        if (!builder_reserve(b, IP_FIELD_HEADER + len))
                return;
        b->buf[b->len] = (uint8_t) tag;
        put_le32(b->buf + b->len + 1, (uint32_t) len);
        if (len)
                memcpy(b->buf + b->len + IP_FIELD_HEADER, data, len);
        b->len += IP_FIELD_HEADER + len;
}

void ip_put_str(IpBuilder *b, IpTag tag, const char *s)
{
        ip_put_bytes(b, tag, s, strlen(s));
}

void ip_put_u32(IpBuilder *b, IpTag tag, uint32_t v)
{
        uint8_t p[4];
        put_le32(p, v);
        ip_put_bytes(b, tag, p, sizeof(p));
}

void ip_put_i32(IpBuilder *b, IpTag tag, int32_t v)
{
        ip_put_u32(b, tag, (uint32_t) v);
}

void ip_put_u64(IpBuilder *b, IpTag tag, uint64_t v)
{
        uint8_t p[8];
        put_le32(p, (uint32_t) v);
        put_le32(p + 4, (uint32_t) (v >> 32));
        ip_put_bytes(b, tag, p, sizeof(p));
}

int ip_builder_finish(IpBuilder *b)
{
        if (b->oom || !b->buf)
                return -ENOMEM;
        if (b->len - IP_HEADER_SIZE > IP_MAX_BODY)
                return -EMSGSIZE;
        put_le32(b->buf, (uint32_t) (b->len - IP_HEADER_SIZE));
        return 0;
}

int ip_parse_header(const uint8_t hdr[IP_HEADER_SIZE], uint8_t *ret_type, uint32_t *ret_len)
{
        uint32_t len = get_le32(hdr);
        if (len > IP_MAX_BODY)
                return -EPROTO;
        *ret_type = hdr[4];
        *ret_len = len;
        return 0;
}

int ip_next_field(const IpFrame *f, size_t *offset, uint8_t *ret_tag, const uint8_t **ret_val,
                  uint32_t *ret_len)
{
        size_t off = *offset;
        if (off >= f->body_len)
                return 0;
        if (f->body_len - off < IP_FIELD_HEADER)
                return -EPROTO;
        uint32_t len = get_le32(f->body + off + 1);
        if (len > f->body_len - off - IP_FIELD_HEADER)
                return -EPROTO;
        *ret_tag = f->body[off];
        *ret_val = f->body + off + IP_FIELD_HEADER;
        *ret_len = len;
        *offset = off + IP_FIELD_HEADER + len;
        return 1;
}

int ip_validate(const IpFrame *f)
{
        size_t off = 0;
        uint8_t tag;
        const uint8_t *val;
        uint32_t len;
        int r;
        while ((r = ip_next_field(f, &off, &tag, &val, &len)) > 0)
                ;
        return r;
}

int ip_get_bytes(const IpFrame *f, IpTag tag, const uint8_t **ret_val, uint32_t *ret_len)
{
        size_t off = 0;
        uint8_t t;
        const uint8_t *val;
        uint32_t len;
        int r;
        while ((r = ip_next_field(f, &off, &t, &val, &len)) > 0)
                if (t == tag) {
                        *ret_val = val;
                        *ret_len = len;
                        return 0;
                }
        return r < 0 ? r : -ENOENT;
}

int ip_get_u32(const IpFrame *f, IpTag tag, uint32_t *ret)
{
        const uint8_t *v;
        uint32_t len;
        int r = ip_get_bytes(f, tag, &v, &len);
        if (r < 0)
                return r;
        if (len != 4)
                return -EPROTO;
        *ret = get_le32(v);
        return 0;
}

int ip_get_i32(const IpFrame *f, IpTag tag, int32_t *ret)
{
        uint32_t u;
        int r = ip_get_u32(f, tag, &u);
        if (r < 0)
                return r;
        *ret = (int32_t) u;
        return 0;
}

int ip_get_u64(const IpFrame *f, IpTag tag, uint64_t *ret)
{
        const uint8_t *v;
        uint32_t len;
        int r = ip_get_bytes(f, tag, &v, &len);
        if (r < 0)
                return r;
        if (len != 8)
                return -EPROTO;
        *ret = (uint64_t) get_le32(v) | (uint64_t) get_le32(v + 4) << 32;
        return 0;
}

int ip_get_strdup(const IpFrame *f, IpTag tag, char **ret)
{
        const uint8_t *v;
        uint32_t len;
        int r = ip_get_bytes(f, tag, &v, &len);
        if (r < 0)
                return r;
        if (memchr(v, 0, len))
                return -EPROTO;
        char *s = malloc((size_t) len + 1);
        if (!s)
                return -ENOMEM;
        memcpy(s, v, len);
        s[len] = 0;
        *ret = s;
        return 0;
}

/* lib's write_all(), again: sandpit-init links libc only (mk/build.mk). */
int ip_write_all(int fd, const void *buf, size_t len)
{
        const uint8_t *p = buf;
        while (len > 0) {
                ssize_t n = write(fd, p, len);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                p += n;
                len -= (size_t) n;
        }
        return 0;
}

ssize_t ip_send_fd(int sock, const void *data, size_t len, int fd)
{
        union {
                struct cmsghdr h;
                char buf[CMSG_SPACE(sizeof(int))];
        } u = {0};
        struct iovec iov = {.iov_base = (void *) data, .iov_len = len};
        struct msghdr m = {.msg_iov = &iov,
                           .msg_iovlen = 1,
                           .msg_control = u.buf,
                           .msg_controllen = sizeof(u.buf)};
        struct cmsghdr *h = CMSG_FIRSTHDR(&m);
        h->cmsg_level = SOL_SOCKET;
        h->cmsg_type = SCM_RIGHTS;
        h->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(h), &fd, sizeof(int));
        ssize_t n;
        while ((n = sendmsg(sock, &m, MSG_NOSIGNAL)) < 0 && errno == EINTR)
                ;
        return n < 0 ? -errno : n;
}

static int read_exact(int fd, uint8_t *p, size_t len, bool eof_ok)
{
        size_t got = 0;
        while (got < len) {
                ssize_t n = read(fd, p + got, len - got);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (n == 0)
                        return (got == 0 && eof_ok) ? 0 : -EPROTO;
                got += (size_t) n;
        }
        return 1;
}

int ip_read_frame(int fd, uint8_t **body, size_t *body_cap, IpFrame *ret)
{
        uint8_t hdr[IP_HEADER_SIZE];
        int r = read_exact(fd, hdr, sizeof(hdr), true);
        if (r <= 0)
                return r;
        uint8_t type;
        uint32_t len;
        r = ip_parse_header(hdr, &type, &len);
        if (r < 0)
                return r;
        if (len > *body_cap || !*body) {
                size_t cap = len > 4096 ? len : 4096;
                uint8_t *n = realloc(*body, cap);
                if (!n)
                        return -ENOMEM;
                *body = n;
                *body_cap = cap;
        }
        if (len > 0) {
                r = read_exact(fd, *body, len, false);
                if (r < 0)
                        return r;
        }
        *ret = (IpFrame){.type = (IpMsgType) type, .body = *body, .body_len = len};
        r = ip_validate(ret);
        return r < 0 ? r : 1;
}

#include "sandpit/util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "sandpit/macro.h"

uint64_t now_realtime_us(void)
{
        struct timespec ts;
        (void) clock_gettime(CLOCK_REALTIME, &ts);
        return (uint64_t) ts.tv_sec * 1000000u + (uint64_t) ts.tv_nsec / 1000u;
}

uint64_t now_monotonic_us(void)
{
        struct timespec ts;
        (void) clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000u + (uint64_t) ts.tv_nsec / 1000u;
}

int poll_in_until(int fd, uint64_t deadline_us)
{
        struct pollfd p = {.fd = fd, .events = POLLIN};
        for (;;) {
                int left = -1;
                if (deadline_us) {
                        uint64_t now = now_monotonic_us();
                        left = now >= deadline_us ? 0 : (int) ((deadline_us - now + 999) / 1000);
                }
                int n = poll(&p, 1, left);
                if (n > 0)
                        return p.revents & POLLNVAL ? -EBADF : 0;
                if (n == 0)
                        return -ETIMEDOUT;
                if (errno != EINTR)
                        return -errno;
        }
}

void timespec_add_ms(struct timespec *ts, long ms)
{
        ts->tv_sec += ms / 1000;
        ts->tv_nsec += (ms % 1000) * 1000000L;
        if (ts->tv_nsec >= 1000000000L) {
                ts->tv_sec++;
                ts->tv_nsec -= 1000000000L;
        }
}

void deadline_after_ms(struct timespec *ts, long ms)
{
        (void) clock_gettime(CLOCK_MONOTONIC, ts);
        timespec_add_ms(ts, ms);
}

void cond_init_monotonic(pthread_cond_t *c)
{
        pthread_condattr_t ca;
        (void) pthread_condattr_init(&ca);
        (void) pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        (void) pthread_cond_init(c, &ca);
        (void) pthread_condattr_destroy(&ca);
}

void format_rfc3339_us(uint64_t us, char *buf, size_t len)
{
        time_t secs = (time_t) (us / 1000000u);
        struct tm tm;
        (void) gmtime_r(&secs, &tm);
        char date[32];
        (void) strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%S", &tm);
        (void) snprintf(buf, len, "%s.%03uZ", date, (unsigned) ((us / 1000u) % 1000u));
}

int mkdir_p(const char *path, unsigned mode)
{
        cleanup_free char *p = strdup(path);
        if (!p)
                return -ENOMEM;
        for (char *s = p + 1; *s; s++) {
                if (*s != '/')
                        continue;
                *s = 0;
                if (mkdir(p, mode) < 0 && errno != EEXIST)
                        return -errno;
                *s = '/';
        }
        if (mkdir(p, mode) < 0 && errno != EEXIST)
                return -errno;
        return 0;
}

static int rm_rf_at(int dfd, dev_t dev)
{
        cleanup_close int fd = dup(dfd);
        if (fd < 0)
                return -errno;
        DIR *d = fdopendir(fd);
        if (!d)
                return -errno;
        (void) TAKE_FD(fd); /* owned by d now */
        int ret = 0;
        struct dirent *de;
        while ((de = readdir(d))) {
                if (streq(de->d_name, ".") || streq(de->d_name, ".."))
                        continue;
                struct stat st;
                if (fstatat(dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
                        if (errno != ENOENT && ret == 0)
                                ret = -errno;
                        continue;
                }
                if (S_ISDIR(st.st_mode)) {
                        if (st.st_dev != dev) {
                                ret = -EBUSY; /* a mount point: never delete through it */
                                continue;
                        }
                        int sub = openat(dfd, de->d_name,
                                         O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                        if (sub < 0) {
                                if (ret == 0)
                                        ret = -errno;
                                continue;
                        }
                        int r = rm_rf_at(sub, dev);
                        (void) close(sub);
                        if (r < 0 && ret == 0)
                                ret = r;
                        if (unlinkat(dfd, de->d_name, AT_REMOVEDIR) < 0 && errno != ENOENT &&
                            ret == 0)
                                ret = -errno;
                } else if (unlinkat(dfd, de->d_name, 0) < 0 && errno != ENOENT && ret == 0) {
                        ret = -errno;
                }
        }
        (void) closedir(d);
        return ret;
}

int rm_rf(const char *path)
{
        cleanup_close int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0) {
                if (errno == ENOENT)
                        return 0;
                if (errno == ENOTDIR || errno == ELOOP)
                        return unlink(path) < 0 ? -errno : 0;
                return -errno;
        }
        struct stat st;
        if (fstat(fd, &st) < 0)
                return -errno;
        int r = rm_rf_at(fd, st.st_dev);
        if (r < 0)
                return r;
        if (rmdir(path) < 0 && errno != ENOENT)
                return -errno;
        return 0;
}

int write_file_atomic(const char *path, const void *data, size_t len, unsigned mode)
{
        cleanup_free char *tmp = NULL;
        if (asprintf(&tmp, "%s.tmp.%d", path, (int) gettid()) < 0)
                return -ENOMEM;
        cleanup_close int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
        if (fd < 0)
                return -errno;
        int r = write_all(fd, data, len);
        if (r < 0) {
                (void) unlink(tmp);
                return r;
        }
        if (rename(tmp, path) < 0) {
                r = -errno;
                (void) unlink(tmp);
                return r;
        }
        return 0;
}

int read_file(const char *path, size_t max, char **ret, size_t *ret_len)
{
        cleanup_close int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        size_t cap = max < 4096 ? max + 1 : 4096, len = 0; /* cap counts the NUL */
        cleanup_free char *buf = malloc(cap);
        if (!buf)
                return -ENOMEM;
        for (;;) {
                if (len == cap - 1) {
                        if (len == max) {
                                /* Full at the limit: fine only if nothing follows. */
                                char c;
                                ssize_t k;
                                while ((k = read(fd, &c, 1)) < 0 && errno == EINTR)
                                        ;
                                if (k < 0)
                                        return -errno;
                                if (k > 0)
                                        return -EFBIG;
                                break;
                        }
                        cap = cap - 1 > max / 2 ? max + 1 : cap * 2;
                        char *n = realloc(buf, cap);
                        if (!n)
                                return -ENOMEM;
                        buf = n;
                }
                ssize_t n = read(fd, buf + len, cap - 1 - len);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (n == 0)
                        break;
                len += (size_t) n;
        }
        buf[len] = 0;
        if (ret_len)
                *ret_len = len;
        *ret = TAKE_PTR(buf);
        return 0;
}

int dir_list(const char *dir, bool (*keep)(const char *dir, const char *name, void *userdata),
             void *userdata, char ***ret)
{
        size_t n = 0;
        char **v = calloc(1, sizeof(char *));
        if (!v)
                return -ENOMEM;
        DIR *d = opendir(dir);
        if (!d) {
                if (errno != ENOENT) {
                        int r = -errno;
                        free(v);
                        return r;
                }
                *ret = v;
                return 0;
        }
        int r = 0;
        struct dirent *de;
        while ((de = readdir(d))) {
                if (de->d_name[0] == '.' || !keep(dir, de->d_name, userdata))
                        continue;
                char **nv = realloc(v, (n + 2) * sizeof(char *));
                if (!nv) {
                        r = -ENOMEM;
                        break;
                }
                v = nv;
                if (!(v[n] = strdup(de->d_name))) {
                        r = -ENOMEM;
                        break;
                }
                v[++n] = NULL;
        }
        (void) closedir(d);
        if (r < 0) {
                strv_free(v);
                return r;
        }
        *ret = v;
        return 0;
}

bool dir_keep_ids(const char *dir, const char *name, void *userdata)
{
        (void) dir;
        (void) userdata;
        return id_is_valid(name);
}

int random_id(char *buf, size_t len)
{
        static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";
        uint8_t rnd[64];
        if (len >= sizeof(rnd))
                return -EINVAL;
        if (getrandom(rnd, len, 0) != (ssize_t) len)
                return -EIO;
        /* 256 % 36 != 0: a slight bias is fine for ids, which are not secrets. */
        for (size_t i = 0; i < len; i++)
                buf[i] = alphabet[rnd[i] % (sizeof(alphabet) - 1)];
        buf[len] = 0;
        return 0;
}

bool id_is_valid(const char *s)
{
        size_t n = strlen(s);
        if (n == 0 || n > 63 || s[0] == '-')
                return false;
        for (size_t i = 0; i < n; i++)
                if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
                        return false;
        return true;
}

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int base64_encode(const void *data, size_t len, char **ret)
{
        const uint8_t *in = data;
        char *out = malloc((len + 2) / 3 * 4 + 1);
        if (!out)
                return -ENOMEM;
        size_t o = 0;
        for (size_t i = 0; i < len; i += 3) {
                uint32_t v = (uint32_t) in[i] << 16;
                if (i + 1 < len)
                        v |= (uint32_t) in[i + 1] << 8;
                if (i + 2 < len)
                        v |= in[i + 2];
                out[o++] = b64[(v >> 18) & 63];
                out[o++] = b64[(v >> 12) & 63];
                out[o++] = (char) (i + 1 < len ? b64[(v >> 6) & 63] : '=');
                out[o++] = (char) (i + 2 < len ? b64[v & 63] : '=');
        }
        out[o] = 0;
        *ret = out;
        return 0;
}

static int b64_value(char c)
{
        const char *p = c ? strchr(b64, c) : NULL;
        return p ? (int) (p - b64) : -1;
}

int base64_decode(const char *s, uint8_t **ret, size_t *ret_len)
{
        size_t len = strlen(s);
        /* Padding is optional, but when present it must complete a quantum. */
        size_t pad = 0;
        while (len > 0 && s[len - 1] == '=' && pad < 2) {
                len--;
                pad++;
        }
        if ((pad > 0 && (len + pad) % 4 != 0) || len % 4 == 1)
                return -EINVAL;
        cleanup_free uint8_t *out = malloc(len / 4 * 3 + 3);
        if (!out)
                return -ENOMEM;
        size_t n = 0;
        uint32_t acc = 0;
        unsigned bits = 0;
        for (size_t i = 0; i < len; i++) {
                int v = b64_value(s[i]);
                if (v < 0)
                        return -EINVAL;
                acc = (acc << 6) | (uint32_t) v;
                bits += 6;
                if (bits >= 8) {
                        bits -= 8;
                        out[n++] = (uint8_t) (acc >> bits);
                        acc &= (1U << bits) - 1;
                }
        }
        if (acc != 0) /* leftover bits must be zero: the input was not canonical */
                return -EINVAL;
        *ret_len = n;
        *ret = TAKE_PTR(out);
        return 0;
}

size_t utf8_complete_prefix(const uint8_t *buf, size_t len, bool *ret_valid)
{
        size_t i = 0;
        *ret_valid = true;
        while (i < len) {
                uint8_t c = buf[i];
                size_t need;
                uint32_t min;
                if (c < 0x80) {
                        i++;
                        continue;
                } else if ((c & 0xE0) == 0xC0) {
                        need = 1;
                        min = 0x80;
                } else if ((c & 0xF0) == 0xE0) {
                        need = 2;
                        min = 0x800;
                } else if ((c & 0xF8) == 0xF0) {
                        need = 3;
                        min = 0x10000;
                } else {
                        *ret_valid = false;
                        return len;
                }
                if (i + need >= len) {
                        /* Possibly a character cut at the end: check what is there. */
                        for (size_t k = i + 1; k < len; k++)
                                if ((buf[k] & 0xC0) != 0x80) {
                                        *ret_valid = false;
                                        return len;
                                }
                        return i;
                }
                uint32_t cp = c & (0x3F >> need);
                for (size_t k = 1; k <= need; k++) {
                        if ((buf[i + k] & 0xC0) != 0x80) {
                                *ret_valid = false;
                                return len;
                        }
                        cp = cp << 6 | (buf[i + k] & 0x3F);
                }
                if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
                        *ret_valid = false;
                        return len;
                }
                i += need + 1;
        }
        return len;
}

int read_token_file(const char *path, size_t min_len, char **ret)
{
        char *buf = NULL;
        size_t n = 0;
        int r = read_file(path, TOKEN_FILE_MAX, &buf, &n);
        if (r < 0)
                return r;
        if (!buf)
                return -EINVAL;
        while (n > 0 && strchr(" \t\r\n", buf[n - 1]))
                buf[--n] = '\0';
        size_t start = strspn(buf, " \t\r\n");
        if (start == n || n - start < min_len || strpbrk(buf + start, "\r\n")) {
                explicit_bzero(buf, n);
                free(buf);
                return -EINVAL;
        }
        memmove(buf, buf + start, n - start + 1);
        *ret = buf;
        return 0;
}

/* write() or, on a socket, send() without SIGPIPE, until all len bytes are out. */
static int put_all(int fd, const void *data, size_t len, bool socket)
{
        const char *p = data;
        while (len > 0) {
                ssize_t n = socket ? send(fd, p, len, MSG_NOSIGNAL) : write(fd, p, len);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return negative_errno();
                }
                p += n;
                len -= (size_t) n;
        }
        return 0;
}

int write_all(int fd, const void *data, size_t len)
{
        return put_all(fd, data, len, false);
}

int copy_fd(int in_fd, int out_fd)
{
        for (;;) {
                ssize_t n = sendfile(out_fd, in_fd, NULL, 1u << 30);
                if (n == 0)
                        return 0;
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno != EINVAL && errno != ENOSYS)
                                return -errno;
                        break; /* not a pair sendfile takes: read and write */
                }
        }
        char buf[65536];
        for (;;) {
                ssize_t n = read(in_fd, buf, sizeof(buf));
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        return n < 0 ? -errno : 0;
                int r = write_all(out_fd, buf, (size_t) n);
                if (r < 0)
                        return r;
        }
}

int send_all(int fd, const void *data, size_t len)
{
        return put_all(fd, data, len, true);
}

ssize_t read_full(int fd, void *buf, size_t len)
{
        char *p = buf;
        size_t got = 0;
        while (got < len) {
                ssize_t n = read(fd, p + got, len - got);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return negative_errno();
                }
                if (n == 0)
                        break;
                got += (size_t) n;
        }
        return (ssize_t) got;
}

/* At most 10^9 seconds: well inside int64 nanoseconds. */
#define DURATION_MAX_NS (1000000000LL * 1000000000LL)

int parse_duration_ns(const char *s, int64_t *ret)
{
        static const struct {
                const char *unit;
                int64_t ns;
        } units[] = {{"ms", 1000000LL},
                     {"s", 1000000000LL},
                     {"m", 60000000000LL},
                     {"h", 3600000000000LL}};
        int64_t total = 0;
        const char *p = s;
        if (!s || !*s)
                return -EINVAL;
        while (*p) {
                /* Whole part and fraction, in exact integers: "1.5h" is 5400 s,
                 * "0.1s" 100 ms (a double would make it 100.000...01). */
                int64_t whole = 0, frac = 0, scale = 1;
                bool digits = false;
                for (; *p >= '0' && *p <= '9'; p++, digits = true) {
                        if (whole > DURATION_MAX_NS / 10)
                                return -EINVAL;
                        whole = whole * 10 + (*p - '0');
                }
                if (*p == '.') {
                        for (p++; *p >= '0' && *p <= '9'; p++, digits = true)
                                if (scale < 1000000000LL) { /* digits past the 9th: dropped */
                                        frac = frac * 10 + (*p - '0');
                                        scale *= 10;
                                }
                }
                if (!digits)
                        return -EINVAL;
                int64_t unit = 0;
                size_t ulen = 0;
                for (size_t i = 0; i < ARRAY_SIZE(units); i++) {
                        size_t l = strlen(units[i].unit);
                        if (strncmp(p, units[i].unit, l) == 0 && l > ulen) {
                                unit = units[i].ns;
                                ulen = l;
                        }
                }
                if (!ulen)
                        return -EINVAL;
                p += ulen;
                if (whole > DURATION_MAX_NS / unit)
                        return -EINVAL;
                /* frac * unit / scale without overflow: frac < scale <= 10^9,
                 * unit <= 3.6 * 10^12, so each product stays below 4 * 10^18. */
                total += whole * unit + frac * (unit / scale) + frac * (unit % scale) / scale;
                if (total > DURATION_MAX_NS)
                        return -EINVAL;
        }
        *ret = total;
        return 0;
}

int parse_duration_ms(const char *s, long *ret)
{
        int64_t ns;
        int r = parse_duration_ns(s, &ns);
        if (r < 0)
                return r;
        *ret = (long) ((ns + 999999) / 1000000);
        return 0;
}

int parse_duration_s(const char *s, long *ret)
{
        int64_t ns;
        int r = parse_duration_ns(s, &ns);
        if (r < 0)
                return r;
        *ret = (long) ((ns + 999999999) / 1000000000);
        return 0;
}

int parse_rfc3339_us(const char *s, uint64_t *ret)
{
        struct tm tm = {0};
        const char *p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
        if (!p)
                return -EINVAL;
        uint64_t frac = 0;
        if (*p == '.') {
                p++;
                unsigned digits = 0;
                while (*p >= '0' && *p <= '9') {
                        if (digits < 6) {
                                frac = frac * 10 + (uint64_t) (*p - '0');
                                digits++;
                        }
                        p++;
                }
                for (; digits < 6; digits++)
                        frac *= 10;
        }
        long offset = 0;
        if (*p == '+' || *p == '-') {
                /* "+hh:mm" */
                const char *o = p + 1;
                for (int i = 0; i < 5; i++)
                        if (i == 2 ? o[i] != ':' : (o[i] < '0' || o[i] > '9'))
                                return -EINVAL;
                if (o[5])
                        return -EINVAL;
                long hh = (o[0] - '0') * 10 + (o[1] - '0'), mm = (o[3] - '0') * 10 + (o[4] - '0');
                offset = (*p == '-' ? -1 : 1) * (hh * 3600L + mm * 60L);
        } else if (*p != 'Z' || p[1])
                return -EINVAL;
        time_t t = timegm(&tm);
        if (t < 0)
                return -EINVAL;
        *ret = (uint64_t) (t - offset) * 1000000u + frac;
        return 0;
}

int strv_push(char ***v, size_t *n, char *s)
{
        if (!s)
                return -ENOMEM;
        char **nv = realloc(*v, (*n + 2) * sizeof(char *));
        if (!nv) {
                free(s);
                return -ENOMEM;
        }
        nv[(*n)++] = s;
        nv[*n] = NULL;
        *v = nv;
        return 0;
}

char **strv_copy(char *const *v)
{
        size_t n = 0;
        for (char *const *e = v; e && *e; e++)
                n++;
        char **c = calloc(n + 1, sizeof(char *));
        for (size_t i = 0; c && i < n; i++)
                if (!(c[i] = strdup(v[i]))) {
                        strv_free(c);
                        return NULL;
                }
        return c;
}

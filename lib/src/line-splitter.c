/* Lines out of a byte stream cut at any point (sandpit/http-client.h): the
 * client's NDJSON streams and the Kubernetes watch parser. A file of its own so
 * the watch parser's fuzz harness links it without the HTTP client. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "sandpit/http-client.h"

void http_line_splitter_init(HttpLineSplitter *s)
{
        *s = (HttpLineSplitter){0};
}

void http_line_splitter_done(HttpLineSplitter *s)
{
        free(s->buf);
        s->buf = NULL;
        s->len = s->cap = 0;
}

static int splitter_emit(char *line, size_t len, HttpLineFn fn, void *userdata)
{
        if (len > 0 && line[len - 1] == '\r')
                len--;
        if (len == 0)
                return 0;
        line[len] = '\0';
        return fn(line, len, userdata);
}

static int splitter_reserve(HttpLineSplitter *s, size_t need)
{
        if (need <= s->cap)
                return 0;
        size_t cap = s->cap ? s->cap : 4096;
        while (cap < need)
                cap *= 2;
        char *p = realloc(s->buf, cap);
        if (!p)
                return -ENOMEM;
        s->buf = p;
        s->cap = cap;
        return 0;
}

int http_line_splitter_feed(HttpLineSplitter *s, const char *data, size_t len, HttpLineFn fn,
                            void *userdata)
{
        size_t max = s->max_line ? s->max_line : HTTP_LINE_MAX;

        while (len > 0) {
                const char *nl = memchr(data, '\n', len);
                size_t take = nl ? (size_t) (nl - data) : len;

                if (take > max || s->len > max - take)
                        return -E2BIG;
                /* One spare byte for the NUL that splitter_emit() writes. */
                int r = splitter_reserve(s, s->len + take + 1);
                if (r < 0)
                        return r;
                memcpy(s->buf + s->len, data, take);
                s->len += take;

                if (!nl)
                        break;

                size_t line_len = s->len;
                s->len = 0;
                r = splitter_emit(s->buf, line_len, fn, userdata);
                if (r < 0)
                        return r;
                data += take + 1;
                len -= take + 1;
        }
        return 0;
}

int http_line_splitter_finish(HttpLineSplitter *s, HttpLineFn fn, void *userdata)
{
        if (s->len == 0)
                return 0;
        size_t line_len = s->len;
        s->len = 0;
        return splitter_emit(s->buf, line_len, fn, userdata);
}

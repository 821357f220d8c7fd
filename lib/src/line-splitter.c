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
        strbuf_done(&s->line);
}

/* Hands the line so far (without its "\r") to fn and starts the next one. */
static int emit(HttpLineSplitter *s, HttpLineFn fn, void *userdata)
{
        size_t len = s->line.len;
        s->line.len = 0;
        if (len > 0 && s->line.data[len - 1] == '\r')
                len--;
        if (len == 0)
                return 0;
        s->line.data[len] = '\0';
        return fn(s->line.data, len, userdata);
}

int http_line_splitter_feed(HttpLineSplitter *s, const char *data, size_t len, HttpLineFn fn,
                            void *userdata)
{
        size_t max = s->max_line ? s->max_line : HTTP_LINE_MAX;

        while (len > 0) {
                const char *nl = memchr(data, '\n', len);
                size_t take = nl ? (size_t) (nl - data) : len;
                int r = strbuf_append(&s->line, data, take, max);
                if (r < 0)
                        return r;
                if (!nl)
                        break;
                r = emit(s, fn, userdata);
                if (r < 0)
                        return r;
                data += take + 1;
                len -= take + 1;
        }
        return 0;
}

int http_line_splitter_finish(HttpLineSplitter *s, HttpLineFn fn, void *userdata)
{
        return emit(s, fn, userdata);
}

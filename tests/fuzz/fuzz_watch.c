/* libFuzzer harness for the watch event stream parser. The first byte picks
 * where the input is split into two chunks; the rest is the stream. Every
 * delivered event must be well-formed, and the split must not change what is
 * delivered (the same input fed whole gives the same events and result). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sandpit/k8s-watch-parser.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct {
        unsigned long n;
        uint64_t hash;
} Seen;

static int on_event(const K8sWatchEvent *ev, void *userdata)
{
        Seen *s = userdata;
        if (!json_object_is_type(ev->object, json_type_object))
                abort();
        if (ev->type != K8S_WATCH_ERROR) {
                if (!ev->resource_version || ev->resource_version[0] == '\0')
                        abort();
                for (const char *p = ev->resource_version; *p; p++)
                        s->hash = s->hash * 131 + (uint8_t) *p;
        }
        s->hash = s->hash * 31 + (uint64_t) ev->type + (uint64_t) ev->code;
        s->n++;
        return 0;
}

static int run(const char *buf, size_t len, size_t split, Seen *s)
{
        K8sWatchParser p;
        k8s_watch_parser_init(&p, on_event, s);
        int r = k8s_watch_parser_feed(&p, buf, split);
        if (r == 0)
                r = k8s_watch_parser_feed(&p, buf + split, len - split);
        if (r == 0)
                r = k8s_watch_parser_finish(&p);
        k8s_watch_parser_done(&p);
        return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        if (size < 1)
                return 0;
        size_t len = size - 1;
        /* A copy of exactly the stream, so ASan catches any read past it. */
        char *buf = malloc(len ? len : 1);
        if (!buf)
                return 0;
        memcpy(buf, data + 1, len);
        size_t split = len ? (size_t) data[0] * len / 255 : 0;

        Seen a = {0}, b = {0};
        int ra = run(buf, len, split, &a);
        int rb = run(buf, len, len, &b);
        if (ra != rb || a.n != b.n || a.hash != b.hash)
                abort();
        free(buf);
        return 0;
}

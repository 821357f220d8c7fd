/* HTTP(S) GET into a file (see http-fetch.h). */
#include "sandpit/http-fetch.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "curl-internal.h"

typedef struct {
        int fd;
        uint64_t have, max;
} Sink;

static int sink_data(const char *data, size_t len, void *userdata)
{
        Sink *s = userdata;
        if (s->have + len > s->max)
                return -EFBIG;
        while (len > 0) {
                ssize_t n = write(s->fd, data, len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                data += n;
                len -= (size_t) n;
                s->have += (uint64_t) n;
        }
        return 0;
}

int http_fetch(const char *url, int fd, const HttpFetchOptions *o, int64_t *ret_last_modified,
               char *err, size_t errlen)
{
        int r = curl_core_global_init();
        if (r < 0) {
                (void) snprintf(err, errlen, "libcurl did not initialise");
                return r;
        }
        CURL *h = curl_easy_init();
        if (!h)
                return -ENOMEM;
        char errbuf[CURL_ERROR_SIZE];
        Sink sink = {.fd = fd, .max = o->max_bytes};
        CurlTransfer t = {.on_data = sink_data, .userdata = &sink, .max = 4096};
        CurlRequest req = {.url = url,
                           .protocols = "http,https",
                           .connect_timeout_ms = o->timeout_ms < 30000 ? o->timeout_ms : 30000,
                           .timeout_ms = o->timeout_ms,
                           .no_proxy = true,
                           .errbuf = errbuf};
        r = curl_core_setup(h, &req, &t);
        if (r == 0 && (curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L) != CURLE_OK ||
                       curl_easy_setopt(h, CURLOPT_MAXREDIRS, o->max_redirects) != CURLE_OK ||
#if LIBCURL_VERSION_NUM >= 0x075500
                       curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https") != CURLE_OK ||
#endif
                       curl_easy_setopt(h, CURLOPT_FILETIME, 1L) != CURLE_OK ||
                       curl_easy_setopt(h, CURLOPT_HTTPGET, 1L) != CURLE_OK))
                r = -EIO;
        CURLcode cc = CURLE_OK;
        if (r == 0) {
                cc = curl_easy_perform(h);
                r = cc == CURLE_TOO_MANY_REDIRECTS ? -ELOOP : curl_core_errno(&t, cc);
        }
        long status = 0;
        (void) curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
        /* An answer that is not 2xx is that, whatever its body did (a long 404
         * page stops the transfer past t.max). */
        if (status >= 100 && (status < 200 || status > 299) && r != -ELOOP) {
                r = status == 404 ? -ENOENT : -EREMOTEIO;
                (void) snprintf(err, errlen, "cannot fetch %s: the server answered %ld", url,
                                status);
        } else if (r == -EFBIG)
                (void) snprintf(err, errlen, "%s is larger than %llu bytes", url,
                                (unsigned long long) o->max_bytes);
        else if (r == -ELOOP)
                (void) snprintf(err, errlen, "%s: more than %ld redirects", url, o->max_redirects);
        else if (r < 0)
                (void) snprintf(err, errlen, "cannot fetch %s: %s", url,
                                errbuf[0] ? errbuf : curl_easy_strerror(cc));
        curl_off_t ft = -1;
        if (ret_last_modified)
                *ret_last_modified =
                        r == 0 && curl_easy_getinfo(h, CURLINFO_FILETIME_T, &ft) == CURLE_OK &&
                                        ft > 0
                                ? (int64_t) ft
                                : 0;
        strbuf_done(&t.body);
        curl_easy_cleanup(h);
        return r;
}

/* The libcurl core of both HTTP clients (see curl-internal.h). */
#include <errno.h>
#include <pthread.h>
#include <string.h>

#include "curl-internal.h"
#include "sandpit/macro.h"

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_result = CURLE_FAILED_INIT;

static void curl_init_once(void)
{
        curl_init_result = curl_global_init(CURL_GLOBAL_DEFAULT);
}

int curl_core_global_init(void)
{
        (void) pthread_once(&curl_once, curl_init_once);
        return curl_init_result == CURLE_OK ? 0 : -EIO;
}

static size_t write_cb(char *data, size_t size, size_t nmemb, void *userdata)
{
        CurlTransfer *t = userdata;
        size_t n = size * nmemb;
        if (!t->decided) {
                long status = 0;
                (void) curl_easy_getinfo(t->h, CURLINFO_RESPONSE_CODE, &status);
                t->streaming = t->on_data && status >= 200 && status < 300;
                t->decided = true;
        }
        int r = t->streaming ? t->on_data(data, n, t->userdata)
                             : strbuf_append(&t->body, data, n, t->max);
        if (r < 0) {
                t->error = r;
                return 0; /* anything but n makes curl stop with CURLE_WRITE_ERROR */
        }
        return n;
}

static int xferinfo_cb(void *userdata, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
        const CurlTransfer *t = userdata;
        (void) dltotal;
        (void) dlnow;
        (void) ultotal;
        (void) ulnow;
        return t->stopped(t->stop_data) ? 1 : 0;
}

#define SETOPT(h, opt, val)                                          \
        do {                                                         \
                if (curl_easy_setopt((h), (opt), (val)) != CURLE_OK) \
                        return -EIO;                                 \
        } while (0)

int curl_core_setup(CURL *h, const CurlRequest *req, CurlTransfer *t)
{
        curl_easy_reset(h);
        req->errbuf[0] = '\0';
        t->h = h;
        SETOPT(h, CURLOPT_ERRORBUFFER, req->errbuf);
        SETOPT(h, CURLOPT_URL, req->url);
        SETOPT(h, CURLOPT_NOSIGNAL, 1L);
#if LIBCURL_VERSION_NUM >= 0x075500
        SETOPT(h, CURLOPT_PROTOCOLS_STR, req->protocols);
#else
        SETOPT(h, CURLOPT_PROTOCOLS,
               (long) (streq(req->protocols, "https") ? CURLPROTO_HTTPS
                                                      : CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
        if (req->no_proxy)
                SETOPT(h, CURLOPT_PROXY, "");
        SETOPT(h, CURLOPT_CONNECTTIMEOUT_MS, req->connect_timeout_ms);
        SETOPT(h, CURLOPT_TCP_KEEPALIVE, 1L);
        if (req->unix_socket)
                SETOPT(h, CURLOPT_UNIX_SOCKET_PATH, req->unix_socket);
        if (req->timeout_ms > 0)
                SETOPT(h, CURLOPT_TIMEOUT_MS, req->timeout_ms);
        if (t->stopped) {
                SETOPT(h, CURLOPT_NOPROGRESS, 0L);
                SETOPT(h, CURLOPT_XFERINFOFUNCTION, xferinfo_cb);
                SETOPT(h, CURLOPT_XFERINFODATA, t);
        }
        SETOPT(h, CURLOPT_WRITEFUNCTION, write_cb);
        SETOPT(h, CURLOPT_WRITEDATA, t);
        return 0;
}

int curl_core_set_method(CURL *h, const char *method, const char *payload)
{
        if (payload) {
                SETOPT(h, CURLOPT_POSTFIELDS, payload);
                SETOPT(h, CURLOPT_POSTFIELDSIZE, (long) strlen(payload));
                if (!streq(method, "POST"))
                        SETOPT(h, CURLOPT_CUSTOMREQUEST, method);
        } else if (streq(method, "GET")) {
                SETOPT(h, CURLOPT_HTTPGET, 1L);
        } else if (streq(method, "POST")) {
                SETOPT(h, CURLOPT_POSTFIELDS, "");
                SETOPT(h, CURLOPT_POSTFIELDSIZE, 0L);
        } else {
                SETOPT(h, CURLOPT_CUSTOMREQUEST, method);
        }
        return 0;
}

int curl_core_errno(const CurlTransfer *t, CURLcode cc)
{
        if ((cc == CURLE_WRITE_ERROR || cc == CURLE_ABORTED_BY_CALLBACK ||
             cc == CURLE_READ_ERROR) &&
            t->error < 0)
                return t->error;
        switch (cc) {
        case CURLE_OK:
                return 0;
        case CURLE_ABORTED_BY_CALLBACK:
                return -ECANCELED;
        case CURLE_COULDNT_CONNECT: {
                /* curl says "couldn't connect" for a missing socket and for a
                 * refused connection alike; the OS errno tells them apart. */
                long os_errno = 0;
                if (curl_easy_getinfo(t->h, CURLINFO_OS_ERRNO, &os_errno) == CURLE_OK &&
                    os_errno > 0 && os_errno < 4096)
                        return (int) -os_errno;
                return -ECONNREFUSED;
        }
        case CURLE_COULDNT_RESOLVE_HOST:
                return -EHOSTUNREACH;
        case CURLE_OPERATION_TIMEDOUT:
                return -ETIMEDOUT;
        case CURLE_OUT_OF_MEMORY:
                return -ENOMEM;
        case CURLE_PEER_FAILED_VERIFICATION:
        case CURLE_SSL_CACERT_BADFILE:
                return -EKEYREJECTED; /* the server is not who the CA says */
        case CURLE_SSL_CERTPROBLEM:
                return -ENOKEY; /* our client certificate or key is unusable */
        case CURLE_RECV_ERROR:
        case CURLE_SEND_ERROR:
        case CURLE_PARTIAL_FILE:
        case CURLE_GOT_NOTHING:
                return -ECONNRESET;
        default:
                return -EIO;
        }
}

/* The TLS transport of agent-conn.h: a GnuTLS client session on a connected
 * socket. The CA file is read at each connection, as lib's HTTP client does,
 * so a rotated CA is taken without a restart. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent-conn.h"
#include "sandpit/macro.h"

#define TLS_HANDSHAKE_TIMEOUT_MS 10000u

typedef struct {
        GwConn conn; /* first: the GwConn * is this */
        gnutls_session_t session;
        gnutls_certificate_credentials_t cred;
} TlsConn;

static ssize_t tls_recv(GwConn *c, void *buf, size_t len)
{
        TlsConn *t = (TlsConn *) c;
        for (;;) {
                ssize_t n = gnutls_record_recv(t->session, buf, len);
                if (n >= 0)
                        return n;
                if (n == GNUTLS_E_INTERRUPTED || n == GNUTLS_E_AGAIN)
                        continue;
                /* A peer that closes without close_notify ends the stream as
                 * a plain socket would: the HTTP framing (length, chunks)
                 * says whether the body was whole. */
                if (n == GNUTLS_E_PREMATURE_TERMINATION)
                        return 0;
                return -ECONNRESET;
        }
}

static int tls_send(GwConn *c, const void *data, size_t len)
{
        TlsConn *t = (TlsConn *) c;
        const char *p = data;
        while (len > 0) {
                ssize_t n = gnutls_record_send(t->session, p, len);
                if (n == GNUTLS_E_INTERRUPTED || n == GNUTLS_E_AGAIN)
                        continue;
                if (n < 0)
                        return -EPIPE;
                p += n;
                len -= (size_t) n;
        }
        return 0;
}

static size_t tls_pending(GwConn *c)
{
        return gnutls_record_check_pending(((TlsConn *) c)->session);
}

static void tls_free(GwConn *c)
{
        TlsConn *t = (TlsConn *) c;
        if (t->session) {
                /* close_notify, without waiting on a peer that does not read */
                if (t->conn.fd >= 0) {
                        int fl = fcntl(t->conn.fd, F_GETFL);
                        if (fl >= 0)
                                (void) fcntl(t->conn.fd, F_SETFL, fl | O_NONBLOCK);
                        (void) gnutls_bye(t->session, GNUTLS_SHUT_WR);
                }
                gnutls_deinit(t->session);
        }
        if (t->cred)
                gnutls_certificate_free_credentials(t->cred);
        closep(&t->conn.fd);
        free(t);
}

/* A connection that never completed its handshake: no close_notify. */
static void tls_discard(TlsConn *t)
{
        if (t->session)
                gnutls_deinit(t->session);
        t->session = NULL;
        tls_free(&t->conn);
}

static const GwConnOps tls_ops = {
        .recv = tls_recv,
        .send = tls_send,
        .pending = tls_pending,
        .free = tls_free,
};

static bool is_ip_literal(const char *host)
{
        unsigned char buf[16];
        return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

/* Why the handshake failed, into err; the errno for it. */
static int handshake_error(TlsConn *t, int g, const char *name, char *err, size_t errlen)
{
        if (g != GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR && g != GNUTLS_E_CERTIFICATE_ERROR) {
                snprintf(err, errlen, "TLS handshake with the agent failed: %s",
                         gnutls_strerror(g));
                return g == GNUTLS_E_TIMEDOUT ? -ETIMEDOUT : -ECONNABORTED;
        }
        unsigned status = gnutls_session_get_verify_cert_status(t->session);
        gnutls_datum_t out = {0};
        if (status != 0 && gnutls_certificate_verification_status_print(
                                   status, gnutls_certificate_type_get(t->session), &out, 0) == 0) {
                snprintf(err, errlen,
                         "the agent's TLS certificate was not accepted (expected name %s): %s",
                         name, (const char *) out.data);
                gnutls_free(out.data);
        } else {
                snprintf(err, errlen,
                         "the agent's TLS certificate was not accepted (expected name %s): %s",
                         name, gnutls_strerror(g));
        }
        return -EKEYREJECTED;
}

int gw_conn_tls_new(int fd, const char *host, const AgentClientTls *tls, GwConn **ret, char *err,
                    size_t errlen)
{
        TlsConn *t = calloc(1, sizeof(*t));
        if (!t) {
                close(fd);
                snprintf(err, errlen, "out of memory");
                return -ENOMEM;
        }
        t->conn = (GwConn){.ops = &tls_ops, .fd = fd};
        const char *name = tls->server_name ? tls->server_name : host;
        int g = gnutls_certificate_allocate_credentials(&t->cred);
        if (g < 0) {
                t->cred = NULL;
                goto fail;
        }
        g = tls->ca_file ? gnutls_certificate_set_x509_trust_file(t->cred, tls->ca_file,
                                                                  GNUTLS_X509_FMT_PEM)
                         : gnutls_certificate_set_x509_system_trust(t->cred);
        if (g <= 0) {
                /* 0: no certificate in it, which would trust nothing */
                snprintf(err, errlen, "cannot read the agents' CA %s: %s",
                         tls->ca_file ? tls->ca_file : "(the system's)",
                         g < 0 ? gnutls_strerror(g) : "no certificate in it");
                tls_free(&t->conn);
                return -EKEYREJECTED;
        }
        g = gnutls_init(&t->session, GNUTLS_CLIENT);
        if (g < 0) {
                t->session = NULL;
                goto fail;
        }
        if ((g = gnutls_set_default_priority(t->session)) < 0 ||
            (g = gnutls_credentials_set(t->session, GNUTLS_CRD_CERTIFICATE, t->cred)) < 0)
                goto fail;
        if (!is_ip_literal(name) &&
            (g = gnutls_server_name_set(t->session, GNUTLS_NAME_DNS, name, strlen(name))) < 0)
                goto fail;
        /* The chain and the name, checked during the handshake: it fails
         * with GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR when they do not. */
        gnutls_session_set_verify_cert(t->session, name, 0);
        gnutls_transport_set_int(t->session, fd);
        gnutls_handshake_set_timeout(t->session, TLS_HANDSHAKE_TIMEOUT_MS);
        do {
                g = gnutls_handshake(t->session);
        } while (g < 0 && gnutls_error_is_fatal(g) == 0);
        if (g < 0) {
                int r = handshake_error(t, g, name, err, errlen);
                tls_discard(t);
                return r;
        }
        *ret = &t->conn;
        return 0;
fail:
        snprintf(err, errlen, "TLS setup failed: %s", gnutls_strerror(g));
        tls_discard(t);
        return -ENOMEM;
}

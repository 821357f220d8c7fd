/* Certificates for the TLS unit tests, made once with the openssl CLI for
 * them only (valid 100 years): a CA, a certificate for "sandpit-agent" it
 * signed (and its key), another CA; and tls_pem_files_make(), which writes
 * them into a temporary directory for the servers and clients that take
 * paths. */
#pragma once

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static const char CA_PEM[] = "-----BEGIN CERTIFICATE-----\n"
                             "MIIBizCCATGgAwIBAgIUVVGk12H10u1wV7kdQx81Q0q4O2IwCgYIKoZIzj0EAwIw\n"
                             "EjEQMA4GA1UEAwwHdW5pdC1jYTAgFw0yNjEyMDYyMDE4MTNaGA8yMTI2MTExMjIw\n"
                             "MTgxM1owEjEQMA4GA1UEAwwHdW5pdC1jYTBZMBMGByqGSM49AgEGCCqGSM49AwEH\n"
                             "A0IABGS8qqvsMd1CDd+xxU0sx2r+sKzZblPk5ze+uSpOLIbpm4zfHzuV4o3HPSVu\n"
                             "plgYm92DFFAVIW3GmikhixrtQjqjYzBhMB0GA1UdDgQWBBSUlts7+M55HEFEkVGw\n"
                             "Qt8Ae3REHDAfBgNVHSMEGDAWgBSUlts7+M55HEFEkVGwQt8Ae3REHDAPBgNVHRMB\n"
                             "Af8EBTADAQH/MA4GA1UdDwEB/wQEAwICBDAKBggqhkjOPQQDAgNIADBFAiBZ7RL/\n"
                             "zrNRHg97xiEz4vGWgi9e+UhQCgciLrf1dNz1ggIhAKQCxJORs8xQ4PvQsR8goCr/\n"
                             "/q2pB8+/EGS9e2mDt7Xp\n"
                             "-----END CERTIFICATE-----\n";
static const char OTHER_CA_PEM[] =
        "-----BEGIN CERTIFICATE-----\n"
        "MIIBjjCCATOgAwIBAgIUEgDUT3uGr/vvP12jRT3g9mtA0NswCgYIKoZIzj0EAwIw\n"
        "EzERMA8GA1UEAwwIb3RoZXItY2EwIBcNMjYxMjA2MjAxODEzWhgPMjEyNjExMTIy\n"
        "MDE4MTNaMBMxETAPBgNVBAMMCG90aGVyLWNhMFkwEwYHKoZIzj0CAQYIKoZIzj0D\n"
        "AQcDQgAE2v9RhKZKzofIzaKddpBbJ22/ukOOCffX0PpI7JgtKDGNzFv3IYieB9TN\n"
        "JJqHldYmICMlbcidTfph8/XymjrR+KNjMGEwHQYDVR0OBBYEFLtsYBxkDoJj9scy\n"
        "kFvR40o7KTX4MB8GA1UdIwQYMBaAFLtsYBxkDoJj9scykFvR40o7KTX4MA8GA1Ud\n"
        "EwEB/wQFMAMBAf8wDgYDVR0PAQH/BAQDAgIEMAoGCCqGSM49BAMCA0kAMEYCIQDj\n"
        "CXE+aTUIvKFM7d+nJIDS2PRHnQuP9eekNubowOHidwIhAMBRC2IEneVEHnHtvVrQ\n"
        "L8rH1VJcjMJgA5lE46WkW3Ct\n"
        "-----END CERTIFICATE-----\n";
static const char CERT_PEM[] = "-----BEGIN CERTIFICATE-----\n"
                               "MIIBnjCCAUWgAwIBAgIUI8eO+KCnP31cRWe7lSsDX/HL9CgwCgYIKoZIzj0EAwIw\n"
                               "EjEQMA4GA1UEAwwHdW5pdC1jYTAgFw0yNjEyMDYyMDE4MTRaGA8yMTI2MTExMjIw\n"
                               "MTgxNFowGDEWMBQGA1UEAwwNc2FuZHBpdC1hZ2VudDBZMBMGByqGSM49AgEGCCqG\n"
                               "SM49AwEHA0IABKb+yMCJXNRxdprQQx4zebYms0JvipQLTeNlEoyyqZa8UWqo9e5c\n"
                               "AruVzBoDfuKkoIBpWjVaEddJBjbQBa4tSuqjcTBvMBgGA1UdEQQRMA+CDXNhbmRw\n"
                               "aXQtYWdlbnQwEwYDVR0lBAwwCgYIKwYBBQUHAwEwHQYDVR0OBBYEFJvzNX807GER\n"
                               "u85yU/vidX8n8XXhMB8GA1UdIwQYMBaAFJSW2zv4znkcQUSRUbBC3wB7dEQcMAoG\n"
                               "CCqGSM49BAMCA0cAMEQCIC0OLXN7LVwniacN4h68iuZFT4JVru38LVcVJnHRYRNr\n"
                               "AiA1H6Y2gYI4bGtzeZcVN081XZcLwsQVU8MKfWF9Au+Jbw==\n"
                               "-----END CERTIFICATE-----\n";
static const char KEY_PEM[] = "-----BEGIN PRIVATE KEY-----\n"
                              "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgIk71UrVy97N5+gB+\n"
                              "+3kMqxyqxgBj3kcNh3eveVQvvSyhRANCAASm/sjAiVzUcXaa0EMeM3m2JrNCb4qU\n"
                              "C03jZRKMsqmWvFFqqPXuXAK7lcwaA37ipKCAaVo1WhHXSQY20AWuLUrq\n"
                              "-----END PRIVATE KEY-----\n";

/* The certificates above as files, and an empty one, in a directory of their own. */
typedef struct {
        char dir[64];
        char ca[96], other[96], cert[96], key[96], empty[96];
} TlsPemFiles;

static inline int tls_pem_write(const char *path, const char *data)
{
        FILE *f = fopen(path, "w");
        if (!f)
                return -1;
        int ok = fputs(data, f) >= 0;
        return fclose(f) == 0 && ok ? 0 : -1;
}

static inline void tls_pem_files_remove(TlsPemFiles *f)
{
        const char *files[] = {f->ca, f->other, f->cert, f->key, f->empty};
        for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
                if (files[i][0])
                        (void) unlink(files[i]);
        if (f->dir[0])
                (void) rmdir(f->dir);
        *f = (TlsPemFiles){0};
}

/* Makes /tmp/sandpit-test-NAME-XXXXXX and writes the files into it: 0, or
 * -1 with nothing left behind. */
static inline int tls_pem_files_make(TlsPemFiles *f, const char *name)
{
        *f = (TlsPemFiles){0};
        char dir[64];
        (void) snprintf(dir, sizeof(dir), "/tmp/sandpit-test-%s-XXXXXX", name);
        if (!mkdtemp(dir))
                return -1;
        (void) snprintf(f->dir, sizeof(f->dir), "%s", dir);
        (void) snprintf(f->ca, sizeof(f->ca), "%s/ca.pem", dir);
        (void) snprintf(f->other, sizeof(f->other), "%s/other.pem", dir);
        (void) snprintf(f->cert, sizeof(f->cert), "%s/cert.pem", dir);
        (void) snprintf(f->key, sizeof(f->key), "%s/key.pem", dir);
        (void) snprintf(f->empty, sizeof(f->empty), "%s/empty.pem", dir);
        if (tls_pem_write(f->ca, CA_PEM) < 0 || tls_pem_write(f->other, OTHER_CA_PEM) < 0 ||
            tls_pem_write(f->cert, CERT_PEM) < 0 || tls_pem_write(f->key, KEY_PEM) < 0 ||
            tls_pem_write(f->empty, "") < 0) {
                tls_pem_files_remove(f);
                return -1;
        }
        return 0;
}

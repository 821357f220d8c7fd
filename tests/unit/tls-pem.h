/* Certificates for the TLS unit tests, made once with the openssl CLI for
 * them only (valid 100 years): a CA, a certificate for "sandpit-agent" it
 * signed (and its key), another CA. */
#pragma once

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

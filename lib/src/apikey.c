/* API keys: generation, hashing, the record and its two stores' formats
 * (apikey.h, docs/auth.md). */
#include "sandpit/apikey.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <unistd.h>

#include "sandpit/json.h"
#include "sandpit/macro.h"
#include "sandpit/util.h"

static const char hexdigits[] = "0123456789abcdef";

static int random_bytes(unsigned char *buf, size_t len)
{
        size_t got = 0;
        while (got < len) {
                ssize_t n = getrandom(buf + got, len - got, 0);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return negative_errno();
                got += (size_t) n;
        }
        return 0;
}

int apikey_hash(const char *key, char ret[APIKEY_HASH_HEX + 1])
{
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int mdlen = 0;
        if (EVP_Digest(key, strlen(key), md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != 32)
                return -EIO;
        for (size_t i = 0; i < mdlen; i++) {
                ret[2 * i] = hexdigits[md[i] >> 4];
                ret[2 * i + 1] = hexdigits[md[i] & 15];
        }
        ret[APIKEY_HASH_HEX] = 0;
        return 0;
}

bool apikey_namespace_valid(const char *ns)
{
        size_t n = ns ? strlen(ns) : 0;
        if (n < 1 || n > APIKEY_NS_MAX || ns[0] == '-' || ns[n - 1] == '-')
                return false;
        for (size_t i = 0; i < n; i++)
                if (!((ns[i] >= 'a' && ns[i] <= 'z') || (ns[i] >= '0' && ns[i] <= '9') ||
                      ns[i] == '-'))
                        return false;
        return true;
}

bool apikey_name_valid(const char *name)
{
        size_t n = name ? strlen(name) : 0;
        if (n < 1 || n > APIKEY_NAME_MAX)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!((name[i] >= 'a' && name[i] <= 'z') || (name[i] >= 'A' && name[i] <= 'Z') ||
                      (name[i] >= '0' && name[i] <= '9') || name[i] == '.' || name[i] == '_' ||
                      name[i] == '-'))
                        return false;
        return true;
}

static bool hex_valid(const char *s, size_t len)
{
        if (strlen(s) != len)
                return false;
        for (size_t i = 0; i < len; i++)
                if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
                        return false;
        return true;
}

static bool id_valid(const char *id)
{
        return strlen(id) == APIKEY_ID_LEN && id_is_valid(id);
}

int apikey_generate(const char *ns, const char *name, char ret[APIKEY_LEN + 1], ApiKey *rec)
{
        if (!apikey_namespace_valid(ns) || (name && !apikey_name_valid(name)))
                return -EINVAL;
        unsigned char raw[APIKEY_HEX / 2];
        int r = random_bytes(raw, sizeof(raw));
        if (r < 0)
                return r;
        ApiKey k = {0};
        r = random_id(k.id, APIKEY_ID_LEN);
        if (r < 0) {
                explicit_bzero(raw, sizeof(raw));
                return r;
        }
        char key[APIKEY_LEN + 1];
        size_t p = strlen(APIKEY_PREFIX);
        memcpy(key, APIKEY_PREFIX, p);
        for (size_t i = 0; i < sizeof(raw); i++) {
                key[p + 2 * i] = hexdigits[raw[i] >> 4];
                key[p + 2 * i + 1] = hexdigits[raw[i] & 15];
        }
        key[APIKEY_LEN] = 0;
        explicit_bzero(raw, sizeof(raw));
        r = apikey_hash(key, k.sha256);
        if (r < 0) {
                explicit_bzero(key, sizeof(key));
                return r;
        }
        snprintf(k.name, sizeof(k.name), "%s", name ? name : k.id);
        snprintf(k.ns, sizeof(k.ns), "%s", ns);
        format_rfc3339_us(now_realtime_us(), k.created, sizeof(k.created));
        memcpy(ret, key, sizeof(key));
        explicit_bzero(key, sizeof(key));
        *rec = k;
        return 0;
}

static int copy_field(json_object *o, const char *name, char *buf, size_t size)
{
        const char *v = json_str(o, name);
        if (!v || strlen(v) >= size)
                return -EBADMSG;
        memcpy(buf, v, strlen(v) + 1);
        return 0;
}

int apikey_record_from_json(json_object *o, ApiKey *ret)
{
        ApiKey k = {0};
        if (!json_object_is_type(o, json_type_object) ||
            copy_field(o, "id", k.id, sizeof(k.id)) < 0 ||
            copy_field(o, "name", k.name, sizeof(k.name)) < 0 ||
            copy_field(o, "namespace", k.ns, sizeof(k.ns)) < 0 ||
            copy_field(o, "sha256", k.sha256, sizeof(k.sha256)) < 0)
                return -EBADMSG;
        if (json_str(o, "created"))
                (void) copy_field(o, "created", k.created, sizeof(k.created));
        if (!id_valid(k.id) || !apikey_name_valid(k.name) || !apikey_namespace_valid(k.ns) ||
            !hex_valid(k.sha256, APIKEY_HASH_HEX))
                return -EBADMSG;
        *ret = k;
        return 0;
}

int apikey_record_to_json(const ApiKey *k, json_object **ret)
{
        cleanup_json json_object *o = json_object_new_object();
        if (!o || json_object_object_add(o, "id", json_object_new_string(k->id)) < 0 ||
            json_object_object_add(o, "name", json_object_new_string(k->name)) < 0 ||
            json_object_object_add(o, "namespace", json_object_new_string(k->ns)) < 0 ||
            json_object_object_add(o, "sha256", json_object_new_string(k->sha256)) < 0 ||
            json_object_object_add(o, "created", json_object_new_string(k->created)) < 0)
                return -ENOMEM;
        *ret = TAKE_PTR(o);
        return 0;
}

void apikey_set_done(ApiKeySet *s)
{
        free(s->keys);
        s->keys = NULL;
        s->n = 0;
}

const ApiKey *apikey_set_find(const ApiKeySet *s, const char *id_or_name)
{
        for (size_t i = 0; i < s->n; i++)
                if (streq(s->keys[i].id, id_or_name) || streq(s->keys[i].name, id_or_name))
                        return &s->keys[i];
        return NULL;
}

int apikey_set_add(ApiKeySet *s, const ApiKey *k)
{
        if (apikey_set_find(s, k->id) || apikey_set_find(s, k->name))
                return -EEXIST;
        ApiKey *n = realloc(s->keys, (s->n + 1) * sizeof(*n));
        if (!n)
                return -ENOMEM;
        s->keys = n;
        s->keys[s->n++] = *k;
        return 0;
}

int apikey_set_remove(ApiKeySet *s, const char *id_or_name, ApiKey *ret)
{
        const ApiKey *k = apikey_set_find(s, id_or_name);
        if (!k)
                return -ENOENT;
        size_t i = (size_t) (k - s->keys);
        if (ret)
                *ret = s->keys[i];
        memmove(&s->keys[i], &s->keys[i + 1], (s->n - i - 1) * sizeof(*s->keys));
        s->n--;
        return 0;
}

const ApiKey *apikey_set_lookup(const ApiKeySet *s, const char *key)
{
        char h[APIKEY_HASH_HEX + 1];
        if (!key || strlen(key) > APIKEY_PRESENTED_MAX || apikey_hash(key, h) < 0)
                return NULL;
        const ApiKey *found = NULL;
        /* Every record is compared, so the time says nothing about which matched. */
        for (size_t i = 0; i < s->n; i++)
                if (CRYPTO_memcmp(h, s->keys[i].sha256, APIKEY_HASH_HEX) == 0)
                        found = &s->keys[i];
        return found;
}

int apikey_set_parse(const char *text, size_t len, ApiKeySet *ret)
{
        cleanup_json json_object *doc = NULL;
        int r = json_parse_strict(text, len, 8, &doc, NULL);
        if (r < 0)
                return r == -ENOMEM ? r : -EBADMSG;
        json_object *keys = json_field(doc, "keys");
        if (!json_object_is_type(keys, json_type_array))
                return -EBADMSG;
        ApiKeySet s = {0};
        for (size_t i = 0; i < json_object_array_length(keys); i++) {
                ApiKey k;
                r = apikey_record_from_json(json_object_array_get_idx(keys, i), &k);
                if (r == 0)
                        r = apikey_set_add(&s, &k);
                if (r < 0) {
                        apikey_set_done(&s);
                        return r == -EEXIST ? -EBADMSG : r;
                }
        }
        *ret = s;
        return 0;
}

int apikey_set_format(const ApiKeySet *s, char **ret)
{
        cleanup_json json_object *doc = json_object_new_object();
        json_object *arr = json_object_new_array();
        if (!doc || !arr || json_object_object_add(doc, "keys", arr) < 0) {
                json_object_put(arr);
                return -ENOMEM;
        }
        for (size_t i = 0; i < s->n; i++) {
                json_object *o = NULL;
                int r = apikey_record_to_json(&s->keys[i], &o);
                if (r < 0)
                        return r;
                if (json_object_array_add(arr, o) < 0) {
                        json_object_put(o);
                        return -ENOMEM;
                }
        }
        const char *t = json_object_to_json_string_ext(doc, JSON_C_TO_STRING_PRETTY |
                                                                    JSON_C_TO_STRING_SPACED |
                                                                    JSON_C_TO_STRING_NOSLASHESCAPE);
        char *out = NULL;
        if (!t || asprintf(&out, "%s\n", t) < 0)
                return -ENOMEM;
        *ret = out;
        return 0;
}

int apikey_set_from_secret(json_object *secret, ApiKeySet *ret, size_t *ret_bad)
{
        ApiKeySet s = {0};
        size_t bad = 0;
        json_object *data = json_obj(secret, "data");
        if (!data) {
                if (ret_bad)
                        *ret_bad = 0;
                *ret = s;
                return 0;
        }
        json_object_object_foreach(data, name, val) {
                cleanup_free uint8_t *raw = NULL;
                size_t len = 0;
                cleanup_json json_object *o = NULL;
                ApiKey k;
                if (!json_object_is_type(val, json_type_string) ||
                    base64_decode(json_object_get_string(val), &raw, &len) < 0 ||
                    json_parse_strict((const char *) raw, len, 4, &o, NULL) < 0 ||
                    apikey_record_from_json(o, &k) < 0 || !streq(k.id, name)) {
                        bad++;
                        continue;
                }
                int r = apikey_set_add(&s, &k);
                if (r == -EEXIST) {
                        bad++;
                        continue;
                }
                if (r < 0) {
                        apikey_set_done(&s);
                        return r;
                }
        }
        if (ret_bad)
                *ret_bad = bad;
        *ret = s;
        return 0;
}

int apikey_file_load(const char *path, ApiKeySet *ret)
{
        cleanup_free char *text = NULL;
        size_t len = 0;
        int r = read_file(path, APIKEY_FILE_MAX, &text, &len);
        if (r < 0)
                return r;
        return apikey_set_parse(text, len, ret);
}

int apikey_file_update(const char *path, int (*fn)(ApiKeySet *s, void *userdata), void *userdata)
{
        cleanup_free char *lock_path = NULL;
        if (asprintf(&lock_path, "%s.lock", path) < 0)
                return -ENOMEM;
        cleanup_close int lfd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (lfd < 0)
                return negative_errno();
        if (flock(lfd, LOCK_EX) < 0)
                return negative_errno();
        ApiKeySet s = {0};
        int r = apikey_file_load(path, &s);
        if (r == -ENOENT)
                r = 0;
        if (r < 0)
                return r;
        int res = fn(&s, userdata);
        if (res >= 0) {
                cleanup_free char *text = NULL;
                r = apikey_set_format(&s, &text);
                if (r == 0)
                        r = write_file_atomic(path, text, strlen(text), 0600);
                if (r < 0)
                        res = r;
        }
        apikey_set_done(&s);
        return res;
}

/* API keys of the gateway (docs/auth.md), shared by the gateway, which checks
 * them, and the CLI, which makes and revokes them.
 *
 * A key is "e2b_" and 40 hex digits (160 bits from getrandom()): the form every
 * E2B SDK line accepts, so a sandpit key is an E2B_API_KEY as it is. It is
 * shown once and stored only as its SHA-256: a key is random, not a password
 * a person chose, so no guess list shortens the 2^160 search and a slow hash
 * (bcrypt, argon2) would only add milliseconds to every request.
 *
 * A record: {"id","name","namespace","sha256","created"}. The local store is
 * the file {"keys":[record, ...]} (mode 0600); the cluster store a Secret with
 * one data entry per key, its id to the record's JSON. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include <json-c/json.h>

#define APIKEY_PREFIX   "e2b_"
#define APIKEY_HEX      40u
#define APIKEY_LEN      (sizeof(APIKEY_PREFIX) - 1 + APIKEY_HEX)
#define APIKEY_HASH_HEX 64u /* SHA-256 in hex */
#define APIKEY_ID_LEN   12u
#define APIKEY_NAME_MAX 63u
#define APIKEY_NS_MAX   63u
/* Larger presented keys are refused before they are hashed. */
#define APIKEY_PRESENTED_MAX 256u
/* The key file's size bound. */
#define APIKEY_FILE_MAX ((size_t) 4 << 20)

typedef struct {
        char id[APIKEY_ID_LEN + 1];
        char name[APIKEY_NAME_MAX + 1];
        char ns[APIKEY_NS_MAX + 1];
        char sha256[APIKEY_HASH_HEX + 1];
        char created[32]; /* RFC 3339 */
} ApiKey;

typedef struct {
        ApiKey *keys;
        size_t n;
} ApiKeySet;

/* A new key in ret and its record in *rec (id, hash, created; name defaults
 * to the id). ns and name are checked: -EINVAL. */
int apikey_generate(const char *ns, const char *name, char ret[APIKEY_LEN + 1], ApiKey *rec);
/* SHA-256 of key in lower-case hex. */
int apikey_hash(const char *key, char ret[APIKEY_HASH_HEX + 1]);

/* A Kubernetes namespace name (RFC 1123 label: 1-63 of [a-z0-9-], starting and
 * ending with a letter or digit). */
bool apikey_namespace_valid(const char *ns);
/* 1-63 of [A-Za-z0-9._-]. */
bool apikey_name_valid(const char *name);

int apikey_record_from_json(json_object *o, ApiKey *ret);
int apikey_record_to_json(const ApiKey *k, json_object **ret);

/* The file's text ({"keys":[...]}) into a set; -EBADMSG for anything malformed. */
int apikey_set_parse(const char *text, size_t len, ApiKeySet *ret);
int apikey_set_format(const ApiKeySet *s, char **ret);
/* A Secret's data entries (base64 of a record each) into a set; a Secret
 * without data is an empty set; entries that do not parse are skipped and
 * counted in *ret_bad (may be NULL). */
int apikey_set_from_secret(json_object *secret, ApiKeySet *ret, size_t *ret_bad);
/* -EEXIST when its id or name is taken. */
int apikey_set_add(ApiKeySet *s, const ApiKey *k);
/* By id or name; -ENOENT. *ret (may be NULL) gets the removed record. */
int apikey_set_remove(ApiKeySet *s, const char *id_or_name, ApiKey *ret);
const ApiKey *apikey_set_find(const ApiKeySet *s, const char *id_or_name);
/* The record of the presented key, compared by hash in constant time, or NULL. */
const ApiKey *apikey_set_lookup(const ApiKeySet *s, const char *key);
void apikey_set_done(ApiKeySet *s);

/* Reads path; a missing file is -ENOENT. */
int apikey_file_load(const char *path, ApiKeySet *ret);
/* Under an exclusive lock (flock on PATH.lock), loads path (missing: empty),
 * calls fn, and when it returns >= 0 writes the set back atomically, mode 0600.
 * Answers fn's return. */
int apikey_file_update(const char *path, int (*fn)(ApiKeySet *s, void *userdata), void *userdata);

/* OCI images (docs/images.md): references, manifests, indexes, image configs,
 * digests, WWW-Authenticate challenges and docker config credentials (oci.c:
 * parsing, and digests of buffers and files; no network), and a client of the
 * OCI distribution API (oci-registry.c).
 *
 * Everything read from a registry is outside input: the parsers take bytes and
 * a length, bound what they keep, and return -EBADMSG for anything malformed. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* --- references ----------------------------------------------------------- */

typedef struct {
        char *registry;   /* host[:port] */
        char *repository; /* path components, e.g. "team/python" */
        char *tag;        /* NULL when the reference names only a digest */
        char *digest;     /* "sha256:<hex>" or NULL */
} OciRef;

/* [registry/]repository[:tag][@digest]. The first component is a registry
 * when it has a '.' or ':' or is "localhost"; otherwise default_registry
 * applies (-EINVAL when that is NULL). No tag and no digest means "latest".
 * -EINVAL for anything else malformed. */
int oci_ref_parse(const char *s, const char *default_registry, OciRef *ret);
void oci_ref_done(OciRef *r);
/* registry/repository[:tag][@digest]: the canonical name an image is stored under. */
int oci_ref_format(const OciRef *r, char **ret);

/* --- digests ---------------------------------------------------------------- */

#define OCI_DIGEST_MAX 80 /* "sha256:" + 64 hex + NUL, with room */

/* "sha256:" and 64 lowercase hex digits (the only algorithm taken). */
bool oci_digest_valid(const char *d);

typedef struct OciHasher OciHasher;
int oci_hasher_new(OciHasher **ret);
void oci_hasher_free(OciHasher *h);
int oci_hasher_update(OciHasher *h, const void *data, size_t len);
/* "sha256:<hex>" of everything so far into buf (OCI_DIGEST_MAX bytes). */
int oci_hasher_final(OciHasher *h, char *buf);
/* The digest of a buffer; 0 when it equals expected, else -EBADMSG. */
int oci_digest_check(const void *data, size_t len, const char *expected);
/* The digest of a buffer into ret (OCI_DIGEST_MAX bytes). */
int oci_digest(const void *data, size_t len, char *ret);
/* The digest of what fd holds, read from its start (pread: its offset stays),
 * into ret; its size into *ret_size (may be NULL). */
int oci_digest_fd(int fd, char *ret, uint64_t *ret_size);

/* --- manifests, indexes, configs -------------------------------------------- */

#define OCI_MANIFEST_MAX ((size_t) 4 * 1024 * 1024)
#define OCI_CONFIG_MAX   ((size_t) 8 * 1024 * 1024)
#define OCI_LAYERS_MAX   128 /* overlayfs stacks at most 500 lowers; images rarely pass 50 */
#define OCI_ACCEPT_HEADER                                             \
        "Accept: application/vnd.oci.image.index.v1+json, "           \
        "application/vnd.oci.image.manifest.v1+json, "                \
        "application/vnd.docker.distribution.manifest.list.v2+json, " \
        "application/vnd.docker.distribution.manifest.v2+json"

typedef enum {
        OCI_COMPRESSION_NONE,
        OCI_COMPRESSION_GZIP,
        OCI_COMPRESSION_ZSTD,
} OciCompression;

typedef struct {
        char digest[OCI_DIGEST_MAX];
        uint64_t size;
        OciCompression compression; /* layers only */
} OciDescriptor;

typedef struct {
        bool is_index;
        OciDescriptor config;  /* image manifest */
        OciDescriptor *layers; /* image manifest: bottom layer first */
        size_t n_layers;
        OciDescriptor platform; /* index: the linux/amd64 manifest */
} OciManifest;

/* An image manifest (OCI or Docker schema 2) or an index (OCI or a Docker
 * manifest list); content_type (may be NULL) is the registry's Content-Type,
 * used when the document has no mediaType. An index yields the linux/amd64
 * entry in platform, or -ENOENT when it has none. Schema 1, foreign layers
 * and unknown media types: -EOPNOTSUPP. Malformed: -EBADMSG. */
int oci_manifest_parse(const char *data, size_t len, const char *content_type, OciManifest *ret);
void oci_manifest_done(OciManifest *m);

typedef struct {
        char *os, *architecture;
        char **env;        /* "NAME=value" strv (possibly empty) */
        char **entrypoint; /* strv or NULL */
        char **cmd;        /* strv or NULL */
        char *working_dir; /* NULL when unset */
        char *user;        /* NULL when unset */
        char **diff_ids;   /* strv, one per layer */
} OciImageConfig;

int oci_config_parse(const char *data, size_t len, OciImageConfig *ret);
void oci_config_done(OciImageConfig *c);

/* --- authentication --------------------------------------------------------- */

typedef struct {
        char *scheme; /* lower case: "bearer", "basic" */
        char *realm, *service, *scope;
} OciChallenge;

/* A WWW-Authenticate value: scheme, then comma-separated key=value or
 * key="quoted" parameters. -EBADMSG when malformed. */
int oci_challenge_parse(const char *value, OciChallenge *ret);
void oci_challenge_done(OciChallenge *c);

/* Credentials for registry from a docker config file's text ($HOME/.docker/
 * config.json; also the .dockerconfigjson of a kubernetes.io/dockerconfigjson
 * Secret, which has the same "auths" map): "auth" (base64 user:password) or
 * "username"/"password"; keys may carry a scheme and a path. -ENOENT when
 * none matches, -EBADMSG when the document is malformed. */
int oci_docker_config_auth(const char *json_text, size_t len, const char *registry, char **ret_user,
                           char **ret_password);

/* --- the registry client ---------------------------------------------------- */

typedef struct {
        const char *ca_file;     /* NULL: the system's CAs */
        char **insecure;         /* registries (host[:port]) spoken to over plain HTTP */
        const char *auth_config; /* docker config text with credentials, or NULL */
        size_t auth_config_len;
        uint64_t max_blob_size; /* 0: no limit beyond the descriptor's size */
        long timeout_ms;        /* each request's bound; 0: none */
        bool push;              /* a token asks for "pull,push" (else "pull") */
} OciRegistryConfig;

typedef struct OciRegistry OciRegistry;

/* One client for one repository; cfg is borrowed for the client's life. */
int oci_registry_new(const OciRegistryConfig *cfg, const OciRef *ref, OciRegistry **ret);
void oci_registry_free(OciRegistry *c);
/* The manifest (or index) named by reference (a tag or a digest): its bytes,
 * Content-Type and digest (computed; checked when reference is a digest).
 * Errors: -ENOENT unknown, -EACCES denied (after trying the credentials),
 * -EBADMSG garbage or a digest mismatch, -EFBIG too big, transport errors. */
int oci_registry_get_manifest(OciRegistry *c, const char *reference, char **ret_data,
                              size_t *ret_len, char **ret_content_type, char *ret_digest);
/* Writes blob d to fd (from its start), checking its size and digest as it
 * goes: -EBADMSG on a mismatch (fd's contents are then garbage), -EFBIG past
 * d->size or the configured limit. */
int oci_registry_get_blob(OciRegistry *c, const OciDescriptor *d, int fd);
/* A blob small enough for memory (an image config), checked likewise. */
int oci_registry_get_blob_mem(OciRegistry *c, const OciDescriptor *d, size_t max, char **ret,
                              size_t *ret_len);
/* Pushing (the config's push set): 0 when the repository has the blob,
 * -ENOENT when not, else an error as for a GET. */
int oci_registry_has_blob(OciRegistry *c, const char *digest);
/* Uploads d->size bytes of fd (from its start) as blob d unless the registry has
 * it: a POST to blobs/uploads/, then one PUT of the whole blob (monolithic).
 * -EBADMSG: the registry answered the upload with nonsense. */
int oci_registry_put_blob(OciRegistry *c, int fd, const OciDescriptor *d);
/* PUTs a manifest under tag, with media_type as its Content-Type; ret_digest
 * (OCI_DIGEST_MAX): its digest. Its blobs must be pushed first. */
int oci_registry_put_manifest(OciRegistry *c, const char *tag, const char *data, size_t len,
                              const char *media_type, char *ret_digest);
/* Text of the last failure (the registry's error message, or curl's). */
const char *oci_registry_last_error(const OciRegistry *c);
/* Did a challenge get answered with credentials from the configuration? false:
 * everything so far was anonymous (no challenge, or an anonymous token). */
bool oci_registry_used_credentials(const OciRegistry *c);

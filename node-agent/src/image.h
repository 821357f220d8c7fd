/* OCI images as templates (docs/images.md): a content-addressed store of
 * unpacked layers on the node, shared by every image that has them, and the
 * images pulled into it (image-store.c); unpacking one layer (image-unpack.c).
 *
 * <images_dir>/
 *   layers/<hex>/     one unpacked layer, named by its blob's sha256; an
 *                     overlayfs lower layer (whiteouts already translated)
 *   images/<hex>.json one pulled image, named by the sha256 of its name:
 *                     {name, digest, layers, config, size}
 *   tmp/<pid>/        downloads and unpacks in progress of that agent; those
 *                     of agents that are gone are removed at start
 *
 * A sandbox from an image lists its layers in <sandbox dir>/layers (one hex
 * name a line, image_write_layers()): the garbage collection never removes
 * those, whatever became of the image's record. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#include "sandpit/oci.h"
#include "template.h"

#define IMAGE_TEMPLATE_PREFIX "image:"

typedef struct {
        const char *dir;
        const char *ca_file;          /* NULL: the system's CAs */
        char **insecure;              /* registries pulled from over plain HTTP */
        const char *auth_file;        /* docker config.json with credentials, or NULL */
        const char *default_registry; /* for names without one; NULL: required */
        uint64_t max_layer_size;      /* compressed and unpacked, per layer */
        uint64_t max_store_size;      /* the layers' disk use the GC keeps to; 0: no GC */
        const char *sandboxes_dir;    /* <dir>/<id>/layers: layers in use */
        const char *templates_dir;    /* for images built on a directory template */
        /* true while a sandbox uses the image name (canonical) */
        bool (*in_use)(const char *name, void *userdata);
        void *userdata;
} ImageStoreConfig;

typedef struct ImageStore ImageStore;

/* Makes the directories and empties tmp/. */
int image_store_new(const ImageStoreConfig *cfg, ImageStore **ret);
void image_store_free(ImageStore *s);

/* The image named ref, pulled unless it is in the store already (refresh:
 * resolve the tag again). Concurrent pulls of one name share one download.
 * *ret is the image as the API shows it. Errors carry a message in err:
 * -EINVAL bad reference, -ENOENT unknown image, -EACCES denied, -EREMOTEIO a
 * registry answer or blob that fails its checks (nothing of it stays),
 * -EFBIG a layer past the size limit, -EMEDIUMTYPE an unsupported format or
 * no linux/amd64 image. */
int image_pull(ImageStore *s, const char *ref, bool refresh, json_object **ret, char *err,
               size_t errlen);

typedef struct {
        bool refresh; /* resolve the tag again even when the store has the image */
        /* A copy in the store that this call did not pull itself (one pulled
         * before, or another caller's pull in flight) is used only when it was
         * pulled anonymously ("public" in its record) or the registry gives its
         * manifest to this call's credentials; else -EACCES. */
        bool verify;
        /* This call's credentials (docker config text, borrowed; never
         * logged or stored): instead of the agent's --registry-auth-file for
         * this pull and its check. NULL: the agent's. */
        const char *auth;
        size_t auth_len;
} ImagePullOptions;

/* image_pull() with the caller's credentials and the check of a cached copy
 * (docs/images.md, "Credentials per request"). */
int image_pull_with(ImageStore *s, const char *ref, const ImagePullOptions *o, json_object **ret,
                    char *err, size_t errlen);
/* A Template for a pulled image (no pull): lowers top first, the config's
 * Env, WorkingDir, User and start command. -ENOENT when not in the store.
 * The image is pinned: image_remove() refuses it until image_unpin(t->name),
 * which the caller calls once its sandbox is in the table (or will not be). */
int image_template(ImageStore *s, const char *ref, Template **ret, char *err, size_t errlen);
void image_unpin(ImageStore *s, const char *template_name);
/* Holds name (an image's canonical name or a layer's digest) against the GC
 * and image_remove() until as many image_release(); counted. */
int image_hold(ImageStore *s, const char *name);
void image_release(ImageStore *s, const char *name);
/* The canonical name of ref ("registry/repository:tag" or "...@digest"). */
int image_canonical_name(ImageStore *s, const char *ref, char **ret);
int image_list_json(ImageStore *s, json_object **ret);
/* Removes the image named ref and every layer no other image has; -EBUSY
 * while a sandbox uses it (the configured in_use) or a pull runs. */
int image_remove(ImageStore *s, const char *ref, char *err, size_t errlen);
/* Writes <sandbox_dir>/layers for a Template from image_template(). */
int image_write_layers(const Template *t, const char *sandbox_dir);
/* With max_store_size: removes unused images, oldest pull first, and layers
 * that neither an image nor a sandbox has, until the layers' disk use is
 * within it; keep (a canonical name, may be NULL) stays. Runs after every
 * pull; a no-op while another pull runs. The bytes still used in *ret_used. */
int image_gc(ImageStore *s, const char *keep, uint64_t *ret_used);

/* --- local images, made by the builder (build.c, docs/build.md) --- */

/* The store's tmp/<pid>: where a build stages its files. */
const char *image_store_tmp_dir(ImageStore *s);
uint64_t image_store_max_layer_size(ImageStore *s);
/* The unpacked directory of a layer of the store. */
int image_layer_path(ImageStore *s, const char *digest, char **ret);
/* Adds the layer tar in fd (from offset 0, whiteouts as .wh. entries) to the
 * store: its sha256 into digest (OCI_DIGEST_MAX), unpacked into layers/
 * unless there already, held (image_hold()) for the caller to release once a
 * record names it. Nothing stays on failure. */
int image_layer_add(ImageStore *s, int fd, char *digest, char *err, size_t errlen);
/* A registry client's configuration as pulls have it: the caller's credentials
 * (auth, or NULL) or the agent's --registry-auth-file, read into *ret_auth,
 * which image_registry_auth_done() wipes and frees after the client's life. */
OciRegistryConfig image_registry_config(ImageStore *s, const char *auth, size_t auth_len,
                                        char **ret_auth, size_t *ret_auth_len);
void image_registry_auth_done(char *auth, size_t len);
/* The record of an image in the store; -ENOENT. */
int image_record_get(ImageStore *s, const char *ref, json_object **ret);
/* Records a built image named name (canonical): layers bottom first, base a
 * directory template under them (or NULL), config as image records have it
 * (env, working_dir, user, entrypoint, cmd). cache: a build's intermediate
 * step, which the image list leaves out. */
int image_record_local(ImageStore *s, const char *name, const char *base, char *const *layers,
                       json_object *config, bool cache);

/* --- image-push.c --- */

/* Pushes image ref of the store to the registry as to (a tag): each layer
 * packed again as a plain tar (build-layer.c) and uploaded unless the
 * registry has it, then the config, then an OCI manifest under the tag. auth:
 * the caller's docker config text or NULL (then --registry-auth-file). *ret:
 * {"name", "digest" (the manifest's), "size" (of the layers and config)}.
 * -ENOENT unknown image, -EINVAL bad target or an image built on a directory
 * template, -EACCES refused, -EREMOTEIO a registry answering nonsense. */
int image_push(ImageStore *s, const char *ref, const char *to, const char *auth, size_t auth_len,
               json_object **ret, char *err, size_t errlen);

/* --- image-unpack.c --- */

/* Unpacks the layer tar in blob_fd (plain, gzip or zstd) into the empty
 * directory dest; see image-unpack.c for the rules. -EPERM for an entry that
 * would leave the layer, -EFBIG past max_bytes, -EBADMSG for a broken archive;
 * the reason in err. dest is left half-filled on failure: remove it. */
int image_layer_unpack(int blob_fd, const char *dest, uint64_t max_bytes, char *err, size_t errlen);
/* A tar entry name's components (in place; "." dropped): -EPERM for ".." or
 * a leading "/", -ENAMETOOLONG past max. */
int image_path_split(char *path, char **comps, size_t max, size_t *ret_n);

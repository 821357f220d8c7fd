/* Pushing an image of the store to a registry (see image.h, docs/build.md). The
 * store keeps layers unpacked only: each is packed again, deterministically, as
 * a plain tar, whose digest is both the blob's and its diff_id. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "build-layer.h"
#include "image.h"
#include "sandpit/json.h"
#include "sandpit/macro.h"
#include "sandpit/oci.h"
#include "sandpit/util.h"

#define MT_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define MT_CONFIG   "application/vnd.oci.image.config.v1+json"
#define MT_LAYER    "application/vnd.oci.image.layer.v1.tar"

static json_object *descriptor_json(const char *media_type, const OciDescriptor *d)
{
        json_object *o = json_object_new_object();
        (void) json_object_object_add(o, "mediaType", json_object_new_string(media_type));
        (void) json_object_object_add(o, "digest", json_object_new_string(d->digest));
        (void) json_object_object_add(o, "size", json_object_new_int64((int64_t) d->size));
        return o;
}

static int upload(OciRegistry *reg, int fd, OciDescriptor *d, char *err, size_t errlen)
{
        int r = oci_digest_fd(fd, d->digest, &d->size);
        if (r < 0) {
                (void) snprintf(err, errlen, "cannot read a blob to push: %s", strerror(-r));
                return r;
        }
        if ((r = oci_registry_put_blob(reg, fd, d)) < 0)
                (void) snprintf(err, errlen, "%s", oci_registry_last_error(reg));
        return r;
}

/* Packs layer digest of the store and uploads it: its descriptor into d. */
static int push_layer(ImageStore *s, OciRegistry *reg, const char *digest, OciDescriptor *d,
                      char *err, size_t errlen)
{
        cleanup_free char *dir = NULL;
        int r = image_layer_path(s, digest, &dir);
        if (r < 0)
                return r;
        cleanup_close int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0) {
                (void) snprintf(err, errlen, "layer %s is missing from the store", digest);
                return -ENOENT;
        }
        cleanup_close int fd = open(image_store_tmp_dir(s), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
        if (fd < 0)
                return -errno;
        if ((r = build_layer_pack(dfd, fd, false, NULL, 0, 0, err, errlen)) < 0)
                return r;
        return upload(reg, fd, d, err, errlen);
}

/* The OCI image config of a store record's config, with the pushed diff_ids. */
static json_object *image_config(json_object *cfg, json_object *diff_ids)
{
        json_object *o = json_object_new_object(), *c = json_object_new_object(),
                    *rootfs = json_object_new_object();
        static const struct {
                const char *ours, *oci;
        } keys[] = {{"env", "Env"},
                    {"working_dir", "WorkingDir"},
                    {"user", "User"},
                    {"entrypoint", "Entrypoint"},
                    {"cmd", "Cmd"}};
        for (size_t i = 0; i < ARRAY_SIZE(keys); i++) {
                json_object *v = json_field(cfg, keys[i].ours);
                if (v)
                        (void) json_object_object_add(c, keys[i].oci, json_object_get(v));
        }
        (void) json_object_object_add(o, "architecture", json_object_new_string("amd64"));
        (void) json_object_object_add(o, "os", json_object_new_string("linux"));
        (void) json_object_object_add(o, "config", c);
        (void) json_object_object_add(rootfs, "type", json_object_new_string("layers"));
        (void) json_object_object_add(rootfs, "diff_ids", diff_ids);
        (void) json_object_object_add(o, "rootfs", rootfs);
        return o;
}

static int push(ImageStore *s, OciRegistry *reg, const OciRef *to, json_object *rec,
                json_object **ret, char *err, size_t errlen)
{
        json_object *layers = json_field(rec, "layers");
        cleanup_json json_object *manifest = json_object_new_object(),
                                 *descs = json_object_new_array(),
                                 *diff_ids = json_object_new_array(), *config = NULL;
        uint64_t total = 0;
        int r = 0;
        for (size_t i = 0; r == 0 && i < json_object_array_length(layers); i++) {
                const char *digest = json_object_get_string(json_object_array_get_idx(layers, i));
                OciDescriptor d = {0};
                r = push_layer(s, reg, digest ? digest : "", &d, err, errlen);
                if (r == 0) {
                        (void) json_object_array_add(descs, descriptor_json(MT_LAYER, &d));
                        (void) json_object_array_add(diff_ids, json_object_new_string(d.digest));
                        total += d.size;
                }
        }
        if (r < 0)
                return r;
        config = image_config(json_obj(rec, "config"), json_object_get(diff_ids));
        size_t len = 0;
        const char *text = json_object_to_json_string_length(config, JSON_C_TO_STRING_PLAIN, &len);
        cleanup_close int fd = open(image_store_tmp_dir(s), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
        if (fd < 0)
                return -errno;
        if ((r = write_all(fd, text, len)) < 0)
                return r;
        OciDescriptor cd = {0};
        if ((r = upload(reg, fd, &cd, err, errlen)) < 0)
                return r;
        total += cd.size;
        (void) json_object_object_add(manifest, "schemaVersion", json_object_new_int(2));
        (void) json_object_object_add(manifest, "mediaType", json_object_new_string(MT_MANIFEST));
        (void) json_object_object_add(manifest, "config", descriptor_json(MT_CONFIG, &cd));
        (void) json_object_object_add(manifest, "layers", json_object_get(descs));
        text = json_object_to_json_string_length(manifest, JSON_C_TO_STRING_PLAIN, &len);
        char digest[OCI_DIGEST_MAX];
        if ((r = oci_registry_put_manifest(reg, to->tag, text, len, MT_MANIFEST, digest)) < 0) {
                (void) snprintf(err, errlen, "%s", oci_registry_last_error(reg));
                return r;
        }
        cleanup_free char *name = NULL;
        if ((r = oci_ref_format(to, &name)) < 0)
                return r;
        json_object *o = json_object_new_object();
        (void) json_object_object_add(o, "name", json_object_new_string(name));
        (void) json_object_object_add(o, "digest", json_object_new_string(digest));
        (void) json_object_object_add(o, "size", json_object_new_int64((int64_t) total));
        *ret = o;
        return 0;
}

int image_push(ImageStore *s, const char *ref, const char *to, const char *auth, size_t auth_len,
               json_object **ret, char *err, size_t errlen)
{
        cleanup_json json_object *rec = NULL;
        cleanup_free char *target = NULL;
        int r = image_record_get(s, ref, &rec);
        if (r == -EINVAL) {
                (void) snprintf(err, errlen, "bad image reference \"%.200s\"", ref);
                return r;
        }
        if (r < 0) {
                (void) snprintf(err, errlen, "image %.200s is not on this node", ref);
                return r == -EBADMSG ? -EIO : r;
        }
        if (json_str(rec, "base")) {
                (void) snprintf(err, errlen,
                                "image %.200s is built on directory template %s, which a "
                                "registry cannot hold",
                                ref, json_str(rec, "base"));
                return -EINVAL;
        }
        OciRef t = {0};
        if (image_canonical_name(s, to, &target) < 0 || oci_ref_parse(target, NULL, &t) < 0 ||
            !t.tag || t.digest) {
                oci_ref_done(&t);
                (void) snprintf(err, errlen,
                                "bad target \"%.200s\": give registry/repository[:tag]", to);
                return -EINVAL;
        }
        size_t file_auth_len = 0;
        char *file_auth = NULL;
        OciRegistryConfig rc = image_registry_config(s, auth, auth_len, &file_auth, &file_auth_len);
        rc.push = true;
        OciRegistry *reg = NULL;
        r = oci_registry_new(&rc, &t, &reg);
        if (r == 0)
                r = push(s, reg, &t, rec, ret, err, errlen);
        if (r == -EBADMSG) /* the registry answered nonsense */
                r = -EREMOTEIO;
        oci_registry_free(reg);
        image_registry_auth_done(file_auth, file_auth_len);
        oci_ref_done(&t);
        return r;
}

/* libFuzzer harness for what a registry sends (lib/oci.c): manifests and
 * indexes, image configs, WWW-Authenticate values, docker config files, and
 * image references. No crash, no leak; what parses holds its invariants. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sandpit/macro.h"
#include "sandpit/oci.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        char *buf = malloc(size + 1);
        if (!buf)
                return 0;
        memcpy(buf, data, size);
        buf[size] = '\0';
        OciManifest m = {0};
        if (oci_manifest_parse(buf, size, "application/vnd.oci.image.manifest.v1+json", &m) == 0) {
                if (m.is_index ? !oci_digest_valid(m.platform.digest)
                               : (!oci_digest_valid(m.config.digest) || m.n_layers == 0 ||
                                  m.n_layers > OCI_LAYERS_MAX))
                        abort();
                for (size_t i = 0; i < m.n_layers; i++)
                        if (!oci_digest_valid(m.layers[i].digest))
                                abort();
                oci_manifest_done(&m);
        }
        OciImageConfig c = {0};
        if (oci_config_parse(buf, size, &c) == 0) {
                if (!c.env || (c.working_dir && c.working_dir[0] != '/'))
                        abort();
                oci_config_done(&c);
        }
        OciChallenge ch = {0};
        if (oci_challenge_parse(buf, &ch) == 0) {
                if (!ch.scheme || !*ch.scheme)
                        abort();
                oci_challenge_done(&ch);
        }
        char *u = NULL, *p = NULL;
        if (oci_docker_config_auth(buf, size, "r.io", &u, &p) == 0) {
                free(u);
                free(p);
        }
        OciRef r = {0};
        if (oci_ref_parse(buf, "r.io", &r) == 0) {
                if (!r.registry || !r.repository || (!r.tag && !r.digest))
                        abort();
                oci_ref_done(&r);
        }
        free(buf);
        return 0;
}

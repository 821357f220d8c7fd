/* libFuzzer harness for the Dockerfile parser (node-agent/dockerfile.c) and
 * its word splitting and substitution. No crash, no leak; what parses holds
 * its invariants. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dockerfile.h"
#include "sandpit/macro.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        char *buf = malloc(size + 1);
        if (!buf)
                return 0;
        memcpy(buf, data, size);
        buf[size] = '\0';
        Dockerfile d = {0};
        char err[256];
        if (dockerfile_parse(buf, size, &d, err, sizeof(err)) == 0) {
                if (d.n == 0 || d.n > DOCKERFILE_MAX_INSTRUCTIONS)
                        abort();
                for (size_t i = 0; i < d.n; i++)
                        if (d.v[i].line == 0 || !d.v[i].args)
                                abort();
                dockerfile_done(&d);
        }
        char *vars[] = {"A=1", "B=x y", NULL};
        char **w = NULL;
        if (dockerfile_words(buf, vars, &w, err, sizeof(err)) == 0)
                strv_free(w);
        if (dockerfile_env_pairs(buf, vars, &w, err, sizeof(err)) == 0)
                strv_free(w);
        free(buf);
        return 0;
}

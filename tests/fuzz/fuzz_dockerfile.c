/* libFuzzer harness for the Dockerfile parser (node-agent/dockerfile.c) and
 * its word splitting and substitution. No crash, no leak; what parses holds
 * its invariants. */
#include <stdbool.h>
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
                for (size_t i = 0; i < d.n; i++) {
                        const DfInstr *in = &d.v[i];
                        if (in->line == 0 || !in->args || in->stage >= (int) d.nstages)
                                abort();
                        /* A stage names only earlier ones. */
                        if (in->from_stage >= 0 && in->from_stage >= in->stage)
                                abort();
                }
                if (d.nstages == 0 || d.stages[0].first >= d.n)
                        abort();
                bool *needed = calloc(d.nstages, sizeof(bool));
                size_t t = 0;
                if (needed &&
                    dockerfile_plan(&d, d.stages[0].name, needed, &t, err, sizeof(err)) == 0 &&
                    (t >= d.nstages || !needed[t]))
                        abort();
                if (needed && dockerfile_plan(&d, NULL, needed, &t, err, sizeof(err)) != 0)
                        abort();
                free(needed);
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

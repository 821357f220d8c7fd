/* Images from a Dockerfile (docs/build.md): each instruction a step, run one
 * at a time so its progress streams as it goes. A RUN runs in a sandbox of the
 * agent's own on the layers so far; its overlay upper dir becomes a layer of
 * the store. COPY/ADD stage the context's files into a layer. Every step's
 * result is a hidden image record named by the digest of the chain of steps
 * and their inputs (the cache), so a rebuild redoes only what changed. */
#pragma once

#include <json-c/json.h>

#include "agent.h"
#include "dockerfile.h"
#include "sandpit/strbuf.h"

/* The record of a build step's result: IMAGE_BUILD_CACHE_REPO:<hex of its key>. */
#define BUILD_CACHE_REPO "localhost/sandpit-build-cache"
/* A name without a registry is recorded under this one: -t app is localhost/app:latest. */
#define BUILD_LOCAL_REGISTRY "localhost"

typedef struct Build Build;

typedef struct {
        const char *name;   /* canonical name of the result */
        const char *target; /* the stage built (its name); NULL: the last one */
        char **build_args;  /* "K=V" */
        /* Fields for the RUN sandboxes' create request (network, memory, disk,
         * cpu, pids); borrowed, copied. NULL: the defaults. */
        json_object *sandbox;
} BuildOptions;

/* Takes df and the extracted context directory ctx_dir (removed by
 * build_free()). -ENOENT for a target that is no stage of df (check it first
 * with dockerfile_plan() for the reason). */
int build_new(Agent *a, Dockerfile *df, char *ctx_dir, const BuildOptions *o, Build **ret);
/* Does the next piece of work and appends its NDJSON progress lines to out:
 * 1 more to come, 0 finished (the last line says how: "image" or "error"), < 0
 * stop now (client_fd hung up; the caller then frees). */
int build_next(Build *b, int client_fd, StrBuf *out);
/* Ends a RUN in progress (its sandbox is deleted), removes the context and
 * what is staged. */
void build_free(Build *b);

/* The canonical name a build's -t NAME is recorded under: NAME with a
 * registry as it is, else localhost/NAME; :latest without a tag. */
int build_image_name(Agent *a, const char *tag, char **ret);

/* Templates: read-only root filesystem directories on the node (see
 * docs/templates.md): <templates_dir>/<name>/{rootfs/,template.json}. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <json-c/json.h>

/* A start command (docs/templates.md): run by init as a background process
 * when a sandbox starts; the create returns once it is up. */
typedef struct StartCmd {
        char **argv;     /* NULL when from_image: the image's Entrypoint + Cmd */
        bool from_image; /* run the image's Entrypoint + Cmd */
        uint32_t port;   /* 0: up once started; else once 127.0.0.1:port answers */
        uint64_t ready_timeout_ms;
        char *user; /* NULL: the sandbox's */
        char *cwd;  /* NULL: the sandbox's */
} StartCmd;

/* Parses {"command": [argv] or "shell string", "from_image": true,
 * "wait_for_port": N, "ready_timeout": S, "user": U, "cwd": D} (exactly one of
 * command and from_image); -EINVAL with a message in err. */
int start_cmd_from_json(json_object *v, StartCmd **ret, char *err, size_t errlen);
void start_cmd_free(StartCmd *c);

typedef struct {
        char *name;
        char *rootfs;  /* absolute path of the (top) lower layer */
        char **lowers; /* every lower layer, top first; strv (a directory: rootfs) */
        char **binds;  /* host paths bound read-only at the same path; strv */
        /* From an image's config (image.h); NULL for directory templates. */
        char **env;       /* "NAME=value" defaults under the create's env */
        char *workdir;    /* commands' default cwd */
        char *user;       /* the default user */
        char **start_cmd; /* Entrypoint + Cmd: run only when asked (from_image) */
        StartCmd *start;  /* template.json's "start_cmd"; NULL: none */
        /* template.json's "languages" (code interpreter names, as written);
         * NULL when it does not say, as an image's template. */
        char **languages;
} Template;

/* -EINVAL for a name that cannot be a template's, -ENOENT when no such
 * template, -EBADMSG for a template.json that is not a valid manifest. */
int template_load(const char *templates_dir, const char *name, Template **ret);
void template_free(Template *t);
/* Names of complete templates (those with rootfs/ and template.json). */
int template_list(const char *templates_dir, char ***ret);

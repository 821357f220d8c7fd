/* Templates: read-only root filesystem directories on the node (see
 * docs/templates.md): <templates_dir>/<name>/{rootfs/,template.json}. */
#pragma once

typedef struct {
        char *name;
        char *rootfs;  /* absolute path of the (top) lower layer */
        char **lowers; /* every lower layer, top first; strv (a directory: rootfs) */
        char **binds;  /* host paths bound read-only at the same path; strv */
        /* From an image's config (image.h); NULL for directory templates. */
        char **env;       /* "NAME=value" defaults under the create's env */
        char *workdir;    /* commands' default cwd */
        char *user;       /* the default user */
        char **start_cmd; /* Entrypoint + Cmd: stored and shown, not run yet */
} Template;

/* -EINVAL for a name that cannot be a template's, -ENOENT when no such
 * template, -EBADMSG for a template.json that is not a valid manifest. */
int template_load(const char *templates_dir, const char *name, Template **ret);
void template_free(Template *t);
/* Names of complete templates (those with rootfs/ and template.json). */
int template_list(const char *templates_dir, char ***ret);

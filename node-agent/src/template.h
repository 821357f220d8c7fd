/* Templates: read-only root filesystem directories on the node (see
 * docs/templates.md): <templates_dir>/<name>/{rootfs/,template.json}. */
#pragma once

typedef struct {
        char *name;
        char *rootfs; /* absolute path of the lower layer */
        char **binds; /* host paths bound read-only at the same path; strv */
} Template;

/* -EINVAL for a name that cannot be a template's, -ENOENT when no such
 * template, -EBADMSG for a template.json that is not a valid manifest. */
int template_load(const char *templates_dir, const char *name, Template **ret);
void template_free(Template *t);
/* Names of complete templates (those with rootfs/ and template.json). */
int template_list(const char *templates_dir, char ***ret);

/* Dockerfiles (docs/build.md): the parser, pure. Instructions keep their
 * argument text; variables ($X, ${X}, ${X:-d}, ${X:+d}) are substituted at
 * build time by dockerfile_words(), because ARG and ENV change them from one
 * instruction to the next. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

typedef enum {
        DF_FROM,
        DF_RUN,
        DF_CMD,
        DF_ENTRYPOINT,
        DF_COPY,
        DF_ADD,
        DF_ENV,
        DF_ARG,
        DF_WORKDIR,
        DF_USER,
        DF_LABEL,  /* accepted, not applied */
        DF_EXPOSE, /* accepted, not applied */
} DfKind;

typedef struct {
        DfKind kind;
        unsigned line;  /* of the instruction's first line, from 1 */
        char *args;     /* the text after the keyword, continuations joined */
        char **argv;    /* the JSON form's strings (RUN, CMD, ENTRYPOINT, COPY, ADD); else NULL */
        char *chown;    /* COPY/ADD --chown=VALUE; NULL without */
        char *from;     /* COPY --from=VALUE; NULL without */
        char *checksum; /* ADD --checksum=sha256:HEX; NULL without */
        /* FROM: the earlier stage its image names; COPY --from: the stage it
         * names (a name or an index); -1: none, an image or template. */
        int from_stage;
        int stage; /* the stage the instruction is in; -1: an ARG before the first FROM */
} DfInstr;

typedef struct {
        size_t first; /* the index of its FROM */
        char *name;   /* FROM ... AS NAME, lowercased; NULL without */
} DfStage;

typedef struct {
        DfInstr *v;
        size_t n;
        DfStage *stages;
        size_t nstages;
} Dockerfile;

#define DOCKERFILE_MAX_INSTRUCTIONS 1000

/* Parses text: instructions (any case), comments, line continuations
 * ("\" at a line's end; comment lines inside one are dropped), JSON and shell
 * forms, stages (each FROM starts one; FROM X AS NAME names it). -EINVAL with
 * "line N: why" in err for an unknown instruction, a missing or malformed
 * argument or flag, an instruction before FROM (ARG aside), a stage name used
 * twice or not [a-zA-Z][a-zA-Z0-9._-]*, a COPY --from naming its own or a later
 * stage, -E2BIG past DOCKERFILE_MAX_INSTRUCTIONS. */
int dockerfile_parse(const char *text, size_t len, Dockerfile *ret, char *err, size_t errlen);
void dockerfile_done(Dockerfile *d);
/* The stage a build of target makes (a stage name, NULL: the last one) into
 * *ret_target, and in needed[0..nstages) the stages it needs: itself, and
 * transitively those its FROM or a COPY --from names. -ENOENT with the
 * reason in err for an unknown target. */
int dockerfile_plan(const Dockerfile *d, const char *target, bool *needed, size_t *ret_target,
                    char *err, size_t errlen);
const char *dockerfile_kind_name(DfKind k);

/* Splits s into words as a shell would (unquoted blanks separate, '…' is
 * literal, "…" and \ quote) and substitutes $NAME, ${NAME}, ${NAME:-word} and
 * ${NAME:+word} from vars ("NAME=value" strv, the last one of a name wins;
 * unset is ""), outside single quotes; \$ is a literal $. vars NULL: no
 * substitution, $ kept as written. -EINVAL with the reason in err for an
 * unterminated quote or ${. */
int dockerfile_words(const char *s, char *const *vars, char ***ret, char *err, size_t errlen);
/* Substitutes variables in s as dockerfile_words() does, without splitting
 * or quote removal (the JSON form's strings). */
int dockerfile_expand(const char *s, char *const *vars, char **ret, char *err, size_t errlen);
/* The ENV form: "K=V K2=V2 ..." or "K value with blanks"; ARG: "NAME" or
 * "NAME=default". Each pair as "K=V" (ARG without default: "NAME" alone);
 * -EINVAL for a bad name or form. */
int dockerfile_env_pairs(const char *args, char *const *vars, char ***ret, char *err,
                         size_t errlen);
/* Whether s is a variable name: [A-Za-z_][A-Za-z0-9_]*. */
bool dockerfile_name_valid(const char *s, size_t len);

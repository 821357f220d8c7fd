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
        unsigned line; /* of the instruction's first line, from 1 */
        char *args;    /* the text after the keyword, continuations joined */
        char **argv;   /* the JSON form's strings (RUN, CMD, ENTRYPOINT, COPY, ADD); else NULL */
        char *chown;   /* COPY/ADD --chown=VALUE; NULL without */
} DfInstr;

typedef struct {
        DfInstr *v;
        size_t n;
} Dockerfile;

#define DOCKERFILE_MAX_INSTRUCTIONS 1000

/* Parses text: instructions (any case), comments, line continuations
 * ("\" at a line's end; comment lines inside one are dropped), JSON and shell
 * forms. -EINVAL with "line N: why" in err for an unknown instruction, a
 * missing or malformed argument, an instruction before FROM (ARG aside), a
 * second FROM (one stage only), -E2BIG past DOCKERFILE_MAX_INSTRUCTIONS. */
int dockerfile_parse(const char *text, size_t len, Dockerfile *ret, char *err, size_t errlen);
void dockerfile_done(Dockerfile *d);
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

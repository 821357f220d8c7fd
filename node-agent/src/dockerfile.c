/* The Dockerfile parser (see dockerfile.h). Pure: no I/O. */
#include "dockerfile.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <json-c/json.h>

#include "sandpit/json.h"
#include "sandpit/macro.h"
#include "sandpit/strbuf.h"
#include "sandpit/util.h"

#define WORD_MAX ((size_t) 1024 * 1024)

static const struct {
        const char *name;
        DfKind kind;
} KEYWORDS[] = {
        {"FROM", DF_FROM},       {"RUN", DF_RUN},
        {"CMD", DF_CMD},         {"ENTRYPOINT", DF_ENTRYPOINT},
        {"COPY", DF_COPY},       {"ADD", DF_ADD},
        {"ENV", DF_ENV},         {"ARG", DF_ARG},
        {"WORKDIR", DF_WORKDIR}, {"USER", DF_USER},
        {"LABEL", DF_LABEL},     {"EXPOSE", DF_EXPOSE},
};

/* Known to Docker, not to this builder: a clearer error than "unknown". */
static const char *const UNSUPPORTED[] = {"SHELL",      "VOLUME",     "HEALTHCHECK", "ONBUILD",
                                          "STOPSIGNAL", "MAINTAINER", NULL};

const char *dockerfile_kind_name(DfKind k)
{
        for (size_t i = 0; i < ARRAY_SIZE(KEYWORDS); i++)
                if (KEYWORDS[i].kind == k)
                        return KEYWORDS[i].name;
        return "?";
}

bool dockerfile_name_valid(const char *s, size_t len)
{
        if (len == 0 || !(isalpha((unsigned char) s[0]) || s[0] == '_'))
                return false;
        for (size_t i = 1; i < len; i++)
                if (!(isalnum((unsigned char) s[i]) || s[i] == '_'))
                        return false;
        return true;
}

void dockerfile_done(Dockerfile *d)
{
        for (size_t i = 0; i < d->n; i++) {
                free(d->v[i].args);
                free(d->v[i].chown);
                free(d->v[i].from);
                free(d->v[i].checksum);
                strv_free(d->v[i].argv);
        }
        free(d->v);
        for (size_t i = 0; i < d->nstages; i++)
                free(d->stages[i].name);
        free(d->stages);
        *d = (Dockerfile){0};
}

/* The stage ref names among stages [0, before): a name (any case) or an
 * index; -1 for none. */
static int stage_find(const Dockerfile *d, const char *ref, size_t before)
{
        size_t n = strlen(ref);
        if (n > 0 && n < 8 && strspn(ref, "0123456789") == n) {
                unsigned long i = strtoul(ref, NULL, 10);
                return i < before ? (int) i : -1;
        }
        for (size_t i = 0; i < before && i < d->nstages; i++)
                if (d->stages[i].name && strcasecmp(d->stages[i].name, ref) == 0)
                        return (int) i;
        return -1;
}

int dockerfile_plan(const Dockerfile *d, const char *target, bool *needed, size_t *ret_target,
                    char *err, size_t errlen)
{
        if (d->nstages == 0) {
                (void) snprintf(err, errlen, "no stage");
                return -ENOENT;
        }
        size_t t = d->nstages - 1;
        if (target) {
                int i = -1;
                for (size_t k = 0; k < d->nstages; k++)
                        if (d->stages[k].name && strcasecmp(d->stages[k].name, target) == 0)
                                i = (int) k;
                if (i < 0) {
                        (void) snprintf(err, errlen, "target stage %.64s is not in the Dockerfile",
                                        target);
                        return -ENOENT;
                }
                t = (size_t) i;
        }
        for (size_t k = 0; k < d->nstages; k++)
                needed[k] = k == t;
        /* A stage only names earlier ones: one pass from the target down. */
        for (size_t k = t + 1; k-- > 0;) {
                if (!needed[k])
                        continue;
                for (size_t i = 0; i < d->n; i++)
                        if (d->v[i].stage == (int) k && d->v[i].from_stage >= 0)
                                needed[d->v[i].from_stage] = true;
        }
        *ret_target = t;
        return 0;
}

/* --- words and substitution ------------------------------------------------ */

static const char *var_lookup(char *const *vars, const char *name, size_t len)
{
        const char *found = NULL;
        for (char *const *v = vars; v && *v; v++)
                if (strncmp(*v, name, len) == 0 && (*v)[len] == '=')
                        found = *v + len + 1;
        return found;
}

static int put(StrBuf *b, const char *s, size_t n)
{
        /* strbuf_append() keeps an empty buffer's data NULL: words may be "". */
        return strbuf_append(b, s, n, WORD_MAX);
}

/* One $... at s[*i] (s[*i] == '$'); appends its value; *i past it. */
static int expand_var(const char *s, size_t *i, char *const *vars, StrBuf *b, char *err,
                      size_t errlen)
{
        size_t p = *i + 1;
        if (s[p] == '{') {
                size_t start = p + 1, q = start;
                while (s[q] && (isalnum((unsigned char) s[q]) || s[q] == '_'))
                        q++;
                if (!dockerfile_name_valid(s + start, q - start)) {
                        (void) snprintf(err, errlen, "bad variable name in ${...}");
                        return -EINVAL;
                }
                const char *val = var_lookup(vars, s + start, q - start);
                if (s[q] == '}') {
                        *i = q + 1;
                        return val ? put(b, val, strlen(val)) : 0;
                }
                if (s[q] != ':' || (s[q + 1] != '-' && s[q + 1] != '+')) {
                        (void) snprintf(err, errlen, "unterminated or unsupported ${...}");
                        return -EINVAL;
                }
                bool plus = s[q + 1] == '+';
                size_t w = q + 2, e = w;
                while (s[e] && s[e] != '}')
                        e++;
                if (!s[e]) {
                        (void) snprintf(err, errlen, "unterminated ${...}");
                        return -EINVAL;
                }
                *i = e + 1;
                bool set = val && *val;
                if (plus)
                        return set ? put(b, s + w, e - w) : 0;
                return set ? put(b, val, strlen(val)) : put(b, s + w, e - w);
        }
        size_t q = p;
        while (s[q] && (isalnum((unsigned char) s[q]) || s[q] == '_'))
                q++;
        if (q == p || !dockerfile_name_valid(s + p, q - p)) {
                *i = p; /* a lone $ stays */
                return put(b, "$", 1);
        }
        const char *val = var_lookup(vars, s + p, q - p);
        *i = q;
        return val ? put(b, val, strlen(val)) : 0;
}

int dockerfile_words(const char *s, char *const *vars, char ***ret, char *err, size_t errlen)
{
        char **v = calloc(1, sizeof(char *));
        size_t n = 0;
        StrBuf b = {0};
        bool in_word = false;
        int r = v ? 0 : -ENOMEM;
        size_t i = 0;
        while (r == 0 && s[i]) {
                char c = s[i];
                if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
                        if (in_word) {
                                char *w = b.data ? b.data : strdup("");
                                b.data = NULL;
                                b.len = b.cap = 0;
                                r = w ? strv_push(&v, &n, w) : -ENOMEM;
                                in_word = false;
                        }
                        i++;
                        continue;
                }
                in_word = true;
                if (c == '\'') {
                        const char *e = strchr(s + i + 1, '\'');
                        if (!e) {
                                (void) snprintf(err, errlen, "unterminated single quote");
                                r = -EINVAL;
                                break;
                        }
                        r = put(&b, s + i + 1, (size_t) (e - s - i - 1));
                        i = (size_t) (e - s) + 1;
                } else if (c == '"') {
                        i++;
                        while (r == 0 && s[i] && s[i] != '"') {
                                if (s[i] == '\\' &&
                                    (s[i + 1] == '"' || s[i + 1] == '\\' || s[i + 1] == '$')) {
                                        r = put(&b, s + i + 1, 1);
                                        i += 2;
                                } else if (s[i] == '$' && vars) {
                                        r = expand_var(s, &i, vars, &b, err, errlen);
                                } else {
                                        r = put(&b, s + i, 1);
                                        i++;
                                }
                        }
                        if (r == 0 && s[i] != '"') {
                                (void) snprintf(err, errlen, "unterminated double quote");
                                r = -EINVAL;
                        }
                        i++;
                } else if (c == '\\' && s[i + 1]) {
                        r = put(&b, s + i + 1, 1);
                        i += 2;
                } else if (c == '$' && vars) {
                        r = expand_var(s, &i, vars, &b, err, errlen);
                } else {
                        r = put(&b, s + i, 1);
                        i++;
                }
        }
        if (r == 0 && in_word) {
                char *w = b.data ? b.data : strdup("");
                b.data = NULL;
                r = w ? strv_push(&v, &n, w) : -ENOMEM;
        }
        strbuf_done(&b);
        if (r < 0) {
                strv_free(v);
                return r;
        }
        *ret = v;
        return 0;
}

int dockerfile_expand(const char *s, char *const *vars, char **ret, char *err, size_t errlen)
{
        StrBuf b = {0};
        int r = 0;
        for (size_t i = 0; r == 0 && s[i];) {
                if (s[i] == '\\' && s[i + 1] == '$') {
                        r = put(&b, "$", 1);
                        i += 2;
                } else if (s[i] == '$') {
                        r = expand_var(s, &i, vars, &b, err, errlen);
                } else {
                        r = put(&b, s + i, 1);
                        i++;
                }
        }
        char *v = r == 0 ? (b.data ? b.data : strdup("")) : NULL;
        if (r < 0 || !v) {
                strbuf_done(&b);
                return r < 0 ? r : -ENOMEM;
        }
        *ret = v;
        return 0;
}

int dockerfile_env_pairs(const char *args, char *const *vars, char ***ret, char *err, size_t errlen)
{
        /* Legacy "K value with blanks": the first word has no '='. */
        size_t k = strcspn(args, " \t=");
        if (args[k] != '=') {
                if (!dockerfile_name_valid(args, k)) {
                        (void) snprintf(err, errlen, "bad variable name");
                        return -EINVAL;
                }
                const char *rest = args + k;
                rest += strspn(rest, " \t");
                cleanup_strv char **w = NULL;
                int r = dockerfile_words(rest, vars, &w, err, errlen);
                if (r < 0)
                        return r;
                StrBuf b = {0};
                r = put(&b, args, k);
                if (r == 0 && *rest)
                        r = put(&b, "=", 1);
                for (size_t i = 0; r == 0 && w[i]; i++) {
                        if (i > 0)
                                r = put(&b, " ", 1);
                        if (r == 0)
                                r = put(&b, w[i], strlen(w[i]));
                }
                char **v = calloc(2, sizeof(char *));
                if (r < 0 || !v) {
                        strbuf_done(&b);
                        free(v);
                        return r < 0 ? r : -ENOMEM;
                }
                v[0] = b.data;
                *ret = v;
                return 0;
        }
        char **w = NULL;
        int r = dockerfile_words(args, vars, &w, err, errlen);
        if (r < 0)
                return r;
        for (size_t i = 0; w[i]; i++) {
                size_t n = strcspn(w[i], "=");
                if (!w[i][n] || !dockerfile_name_valid(w[i], n)) {
                        (void) snprintf(err, errlen, "expected NAME=VALUE, got \"%.64s\"", w[i]);
                        strv_free(w);
                        return -EINVAL;
                }
        }
        *ret = w;
        return 0;
}

/* --- instructions ---------------------------------------------------------- */

/* The JSON form: an array of strings; NULL when args is not one. */
static char **json_form(const char *args)
{
        if (args[0] != '[')
                return NULL;
        json_object *o = NULL;
        if (json_parse_strict(args, strlen(args), 2, &o, NULL) < 0)
                return NULL;
        char **v = NULL;
        if (json_object_is_type(o, json_type_array)) {
                size_t n = json_object_array_length(o);
                v = calloc(n + 1, sizeof(char *));
                for (size_t i = 0; v && i < n; i++) {
                        json_object *e = json_object_array_get_idx(o, i);
                        if (!json_object_is_type(e, json_type_string) ||
                            !(v[i] = strdup(json_object_get_string(e)))) {
                                strv_free(v);
                                v = NULL;
                        }
                }
        }
        json_object_put(o);
        return v;
}

static size_t strv_len(char *const *v)
{
        size_t n = 0;
        while (v && v[n])
                n++;
        return n;
}

/* Checks one instruction's arguments and fills argv/chown. */
static int check_instr(DfInstr *in, char *err, size_t errlen)
{
        char why[160] = "";
        cleanup_strv char **w = NULL;
        const char *kw = dockerfile_kind_name(in->kind);
        if (!*in->args && in->kind != DF_CMD && in->kind != DF_ENTRYPOINT) {
                (void) snprintf(err, errlen, "line %u: %s needs an argument", in->line, kw);
                return -EINVAL;
        }
        switch (in->kind) {
        case DF_RUN:
        case DF_CMD:
        case DF_ENTRYPOINT:
                /* Docker's rule: what does not parse as a JSON array is the shell form. */
                in->argv = json_form(in->args);
                if (in->argv && !in->argv[0] && in->kind == DF_RUN) {
                        (void) snprintf(err, errlen, "line %u: RUN [] has no command", in->line);
                        return -EINVAL;
                }
                return 0;
        case DF_COPY:
        case DF_ADD: {
                /* Flags first: --chown=, the rest refused. */
                char *a = in->args;
                while (strncmp(a, "--", 2) == 0) {
                        size_t n = strcspn(a, " \t");
                        char **slot = NULL;
                        size_t skip = 0;
                        if (strncmp(a, "--chown=", 8) == 0 && n > 8)
                                slot = &in->chown, skip = 8;
                        else if (in->kind == DF_COPY && strncmp(a, "--from=", 7) == 0 && n > 7)
                                slot = &in->from, skip = 7;
                        else if (in->kind == DF_ADD && strncmp(a, "--checksum=", 11) == 0 && n > 11)
                                slot = &in->checksum, skip = 11;
                        if (slot) {
                                free(*slot);
                                if (!(*slot = strndup(a + skip, n - skip)))
                                        return -ENOMEM;
                        } else {
                                (void) snprintf(err, errlen,
                                                "line %u: %s flag %.*s is not supported", in->line,
                                                kw, (int) (n < 64 ? n : 64), a);
                                return -EINVAL;
                        }
                        a += n;
                        a += strspn(a, " \t");
                }
                memmove(in->args, a, strlen(a) + 1);
                in->argv = json_form(in->args);
                size_t n = strv_len(in->argv);
                if (!in->argv) {
                        int r = dockerfile_words(in->args, NULL, &w, why, sizeof(why));
                        if (r < 0) {
                                (void) snprintf(err, errlen, "line %u: %s: %s", in->line, kw, why);
                                return r;
                        }
                        n = strv_len(w);
                }
                if (n < 2) {
                        (void) snprintf(err, errlen, "line %u: %s needs a source and a destination",
                                        in->line, kw);
                        return -EINVAL;
                }
                if (in->checksum) {
                        const char *c = in->checksum, *src = in->argv ? in->argv[0] : w[0];
                        if (strncmp(c, "sha256:", 7) != 0 || strlen(c + 7) != 64 ||
                            strspn(c + 7, "0123456789abcdef") != 64) {
                                (void) snprintf(err, errlen,
                                                "line %u: ADD --checksum takes sha256:<64 hex "
                                                "digits>",
                                                in->line);
                                return -EINVAL;
                        }
                        if (n != 2 ||
                            (strncmp(src, "http://", 7) != 0 && strncmp(src, "https://", 8) != 0)) {
                                (void) snprintf(err, errlen,
                                                "line %u: ADD --checksum needs one http(s) URL "
                                                "source",
                                                in->line);
                                return -EINVAL;
                        }
                }
                return 0;
        }
        case DF_ENV:
        case DF_ARG: {
                int r = dockerfile_env_pairs(in->args, NULL, &w, why, sizeof(why));
                if (r < 0) {
                        (void) snprintf(err, errlen, "line %u: %s: %s", in->line, kw, why);
                        return r;
                }
                if (!w[0]) {
                        (void) snprintf(err, errlen, "line %u: %s needs an argument", in->line, kw);
                        return -EINVAL;
                }
                if (in->kind == DF_ENV && !strchr(w[0], '=')) {
                        (void) snprintf(err, errlen, "line %u: ENV %s has no value", in->line,
                                        w[0]);
                        return -EINVAL;
                }
                if (in->kind == DF_ARG && strv_len(w) != 1) {
                        (void) snprintf(err, errlen, "line %u: ARG takes one NAME[=default]",
                                        in->line);
                        return -EINVAL;
                }
                return 0;
        }
        case DF_FROM: {
                int r = dockerfile_words(in->args, NULL, &w, why, sizeof(why));
                size_t n = r == 0 ? strv_len(w) : 0;
                if (r == 0 && !(n == 1 || (n == 3 && strcasecmp(w[1], "AS") == 0))) {
                        (void) snprintf(why, sizeof(why), "expected FROM IMAGE [AS NAME]");
                        r = -EINVAL;
                }
                if (r == 0 && n == 3 &&
                    (!isalpha((unsigned char) w[2][0]) ||
                     strspn(w[2], "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                  "0123456789._-") != strlen(w[2]))) {
                        (void) snprintf(why, sizeof(why),
                                        "stage name %.64s is not [a-zA-Z][a-zA-Z0-9._-]*", w[2]);
                        r = -EINVAL;
                }
                if (r < 0)
                        (void) snprintf(err, errlen, "line %u: FROM: %s", in->line, why);
                return r;
        }
        case DF_WORKDIR:
        case DF_USER: {
                int r = dockerfile_words(in->args, NULL, &w, why, sizeof(why));
                if (r == 0 && strv_len(w) != 1) {
                        (void) snprintf(why, sizeof(why), "takes one argument");
                        r = -EINVAL;
                }
                if (r < 0)
                        (void) snprintf(err, errlen, "line %u: %s: %s", in->line, kw, why);
                return r;
        }
        case DF_LABEL:
        case DF_EXPOSE:
                return 0;
        }
        return -EINVAL;
}

/* A FROM starts a stage: its name (lowercased, not used before) and the
 * earlier stage its image names, if any. */
static int add_stage(Dockerfile *d, DfInstr *in, char *err, size_t errlen)
{
        cleanup_strv char **w = NULL;
        char why[160];
        int r = dockerfile_words(in->args, NULL, &w, why, sizeof(why));
        if (r < 0)
                return r;
        if (!w[0]) /* check_instr() refused it already */
                return -EINVAL;
        cleanup_free char *name = w[1] && w[2] ? strdup(w[2]) : NULL;
        if (w[1] && w[2] && !name)
                return -ENOMEM;
        for (char *c = name; c && *c; c++)
                *c = (char) tolower((unsigned char) *c);
        for (size_t i = 0; name && i < d->nstages; i++)
                if (d->stages[i].name && streq(d->stages[i].name, name)) {
                        (void) snprintf(err, errlen, "line %u: stage name %.64s is used twice",
                                        in->line, name);
                        return -EINVAL;
                }
        /* FROM of an earlier stage's name; with a $ it is resolved at build time,
         * as an image. */
        if (!strchr(in->args, '$')) {
                size_t n = strlen(w[0]);
                in->from_stage =
                        strspn(w[0], "0123456789") == n ? -1 : stage_find(d, w[0], d->nstages);
        }
        DfStage *nv = realloc(d->stages, (d->nstages + 1) * sizeof(DfStage));
        if (!nv)
                return -ENOMEM;
        d->stages = nv;
        d->stages[d->nstages] = (DfStage){.first = (size_t) (in - d->v), .name = TAKE_PTR(name)};
        in->stage = (int) d->nstages++;
        return 0;
}

/* The next logical line from *pos: continuations joined, comment lines
 * inside dropped. *ret NULL at the end; *ret_line the first line's number. */
static int next_logical(const char *text, size_t len, size_t *pos, unsigned *lineno, char **ret,
                        unsigned *ret_line)
{
        StrBuf b = {0};
        bool started = false;
        *ret = NULL;
        while (*pos < len) {
                const char *l = text + *pos;
                const char *nl = memchr(l, '\n', len - *pos);
                size_t n = nl ? (size_t) (nl - l) : len - *pos;
                *pos += n + (nl ? 1 : 0);
                (*lineno)++;
                if (memchr(l, '\0', n)) {
                        strbuf_done(&b);
                        return -EBADMSG;
                }
                size_t s = 0;
                while (s < n && (l[s] == ' ' || l[s] == '\t'))
                        s++;
                size_t e = n;
                while (e > s && (l[e - 1] == ' ' || l[e - 1] == '\t' || l[e - 1] == '\r'))
                        e--;
                if (s == e || l[s] == '#') {
                        if (!started)
                                continue;
                        /* A blank or comment line inside a continuation is skipped. */
                        continue;
                }
                if (!started)
                        *ret_line = *lineno;
                started = true;
                bool cont = l[e - 1] == '\\';
                if (cont)
                        e--;
                int r = put(&b, l + s, e - s);
                if (r == 0 && cont)
                        r = put(&b, " ", 1);
                if (r < 0) {
                        strbuf_done(&b);
                        return r;
                }
                if (!cont)
                        break;
        }
        if (!started)
                return 0;
        /* A continuation at the end of the file ends the instruction. */
        size_t e = b.len, s = 0;
        while (e > 0 && b.data[e - 1] == ' ')
                e--;
        while (s < e && b.data[s] == ' ')
                s++;
        memmove(b.data, b.data + s, e - s);
        b.data[e - s] = '\0';
        *ret = b.data;
        return 0;
}

int dockerfile_parse(const char *text, size_t len, Dockerfile *ret, char *err, size_t errlen)
{
        Dockerfile d = {0};
        size_t pos = 0;
        unsigned lineno = 0;
        bool seen_from = false;
        int r = 0;
        for (;;) {
                cleanup_free char *l = NULL;
                unsigned line = 0;
                r = next_logical(text, len, &pos, &lineno, &l, &line);
                if (r == -EBADMSG)
                        (void) snprintf(err, errlen, "line %u: a NUL byte", lineno);
                if (r < 0 || !l)
                        break;
                size_t k = strcspn(l, " \t");
                const char *args = l + k + strspn(l + k, " \t");
                int kind = -1;
                for (size_t i = 0; i < ARRAY_SIZE(KEYWORDS); i++)
                        if (strlen(KEYWORDS[i].name) == k &&
                            strncasecmp(l, KEYWORDS[i].name, k) == 0)
                                kind = (int) KEYWORDS[i].kind;
                if (kind < 0) {
                        bool known = false;
                        for (size_t i = 0; UNSUPPORTED[i]; i++)
                                if (strlen(UNSUPPORTED[i]) == k &&
                                    strncasecmp(l, UNSUPPORTED[i], k) == 0)
                                        known = true;
                        (void) snprintf(
                                err, errlen,
                                known ? "line %u: %.*s is not supported by sandpit's builder"
                                      : "line %u: unknown instruction %.*s",
                                line, (int) (k < 32 ? k : 32), l);
                        r = -EINVAL;
                        break;
                }
                if (kind != DF_FROM && kind != DF_ARG && !seen_from) {
                        (void) snprintf(err, errlen, "line %u: %s before FROM", line,
                                        dockerfile_kind_name((DfKind) kind));
                        r = -EINVAL;
                        break;
                }
                seen_from = seen_from || kind == DF_FROM;
                if (d.n >= DOCKERFILE_MAX_INSTRUCTIONS) {
                        (void) snprintf(err, errlen, "line %u: more than %d instructions", line,
                                        DOCKERFILE_MAX_INSTRUCTIONS);
                        r = -E2BIG;
                        break;
                }
                DfInstr *nv = realloc(d.v, (d.n + 1) * sizeof(DfInstr));
                if (!nv) {
                        r = -ENOMEM;
                        break;
                }
                d.v = nv;
                DfInstr *in = &d.v[d.n];
                *in = (DfInstr){.kind = (DfKind) kind,
                                .line = line,
                                .args = strdup(args),
                                .from_stage = -1,
                                .stage = (int) d.nstages - 1};
                d.n++;
                if (!in->args) {
                        r = -ENOMEM;
                        break;
                }
                if ((r = check_instr(in, err, errlen)) < 0)
                        break;
                if (kind == DF_FROM && (r = add_stage(&d, in, err, errlen)) < 0)
                        break;
                if (in->from) {
                        in->from_stage = stage_find(&d, in->from, (size_t) in->stage);
                        if (in->from_stage < 0 && stage_find(&d, in->from, d.nstages) >= 0) {
                                (void) snprintf(err, errlen,
                                                "line %u: COPY --from=%.64s names its own stage",
                                                line, in->from);
                                r = -EINVAL;
                                break;
                        }
                        if (in->from_stage < 0 &&
                            strspn(in->from, "0123456789") == strlen(in->from)) {
                                (void) snprintf(err, errlen,
                                                "line %u: COPY --from=%.64s: no such stage before "
                                                "this one",
                                                line, in->from);
                                r = -EINVAL;
                                break;
                        }
                }
        }
        /* A --from naming a later stage (Docker would look for an image). */
        for (size_t i = 0; r == 0 && i < d.n; i++) {
                DfInstr *in = &d.v[i];
                if (in->from && in->from_stage < 0 && stage_find(&d, in->from, d.nstages) >= 0) {
                        (void) snprintf(err, errlen,
                                        "line %u: COPY --from=%.64s names a later stage", in->line,
                                        in->from);
                        r = -EINVAL;
                }
        }
        if (r == 0 && !seen_from) {
                (void) snprintf(err, errlen, "no FROM instruction");
                r = -EINVAL;
        }
        if (r < 0) {
                dockerfile_done(&d);
                return r;
        }
        *ret = d;
        return 0;
}

/* Per-sandbox access tokens (envdAccessToken): made at create, kept in the
 * gateway's memory and token file (never in a label, a log or the agent's
 * state), or where the backend keeps them (GwBackendOps.token_put), and
 * checked on envd and /execute traffic. */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "gw-internal.h"
#include "sandpit/log.h"
#include "sandpit/macro.h"
#include "sandpit/util.h"

int gw_token_new(char ret[GW_TOKEN_LEN + 1])
{
        static const char hex[] = "0123456789abcdef";
        unsigned char raw[GW_TOKEN_LEN / 2];
        size_t got = 0;
        while (got < sizeof(raw)) {
                ssize_t n = getrandom(raw + got, sizeof(raw) - got, 0);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return negative_errno();
                got += (size_t) n;
        }
        for (size_t i = 0; i < sizeof(raw); i++) {
                ret[2 * i] = hex[raw[i] >> 4];
                ret[2 * i + 1] = hex[raw[i] & 15];
        }
        ret[GW_TOKEN_LEN] = 0;
        explicit_bzero(raw, sizeof(raw));
        return 0;
}

/* Writes every token to gw->token_file (0600, replaced atomically); called
 * with the lock held. A failure is logged: the tokens stay valid in memory. */
static void save(GwServer *gw)
{
        if (!gw->token_file)
                return;
        size_t len = gw->n_tokens * (GW_ROUTE_ID_MAX + GW_TOKEN_LEN + 2) + 1;
        cleanup_free char *buf = malloc(len);
        if (!buf)
                return;
        size_t n = 0;
        for (size_t i = 0; i < gw->n_tokens; i++)
                n += (size_t) snprintf(buf + n, len - n, "%s %s\n", gw->tokens[i].id,
                                       gw->tokens[i].token);
        int r = write_file_atomic(gw->token_file, buf, n, 0600);
        explicit_bzero(buf, n);
        if (r < 0)
                log_warning_errno(r, "gateway: cannot save the access tokens to %s",
                                  gw->token_file);
}

int gw_token_load(GwServer *gw)
{
        if (!gw->token_file)
                return 0;
        cleanup_free char *text = NULL;
        size_t len = 0;
        int r = read_file(gw->token_file, (size_t) 16 << 20, &text, &len);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return r;
        char *save_ptr = NULL;
        for (char *line = strtok_r(text, "\n", &save_ptr); line;
             line = strtok_r(NULL, "\n", &save_ptr)) {
                char *sp = strchr(line, ' ');
                if (!sp)
                        continue;
                *sp = 0;
                if (!id_is_valid(line) || strlen(sp + 1) != GW_TOKEN_LEN)
                        continue;
                GwToken *n = realloc(gw->tokens, (gw->n_tokens + 1) * sizeof(*n));
                if (!n) {
                        explicit_bzero(text, len);
                        return -ENOMEM;
                }
                gw->tokens = n;
                GwToken *t = &gw->tokens[gw->n_tokens++];
                snprintf(t->id, sizeof(t->id), "%s", line);
                memcpy(t->token, sp + 1, GW_TOKEN_LEN + 1);
        }
        explicit_bzero(text, len);
        return 0;
}

static GwToken *find(GwServer *gw, const char *id)
{
        for (size_t i = 0; i < gw->n_tokens; i++)
                if (streq(gw->tokens[i].id, id))
                        return &gw->tokens[i];
        return NULL;
}

int gw_token_put(GwServer *gw, const char *id, const char *token)
{
        if (strlen(id) > GW_ROUTE_ID_MAX || strlen(token) != GW_TOKEN_LEN)
                return -EINVAL;
        if (gw->backend.ops->token_put)
                return gw->backend.ops->token_put(gw->backend.data, id, token);
        pthread_mutex_lock(&gw->lock);
        GwToken *t = find(gw, id);
        if (!t) {
                GwToken *n = realloc(gw->tokens, (gw->n_tokens + 1) * sizeof(*n));
                if (!n) {
                        pthread_mutex_unlock(&gw->lock);
                        return -ENOMEM;
                }
                gw->tokens = n;
                t = &gw->tokens[gw->n_tokens++];
        }
        snprintf(t->id, sizeof(t->id), "%s", id);
        memcpy(t->token, token, GW_TOKEN_LEN + 1);
        save(gw);
        pthread_mutex_unlock(&gw->lock);
        return 0;
}

int gw_token_get(GwServer *gw, const char *id, char ret[GW_TOKEN_LEN + 1])
{
        if (gw->backend.ops->token_get)
                return gw->backend.ops->token_get(gw->backend.data, id, ret, GW_TOKEN_LEN + 1);
        pthread_mutex_lock(&gw->lock);
        GwToken *t = find(gw, id);
        if (t)
                memcpy(ret, t->token, GW_TOKEN_LEN + 1);
        pthread_mutex_unlock(&gw->lock);
        return t ? 0 : -ENOENT;
}

void gw_token_remove(GwServer *gw, const char *id)
{
        if (gw->backend.ops->token_remove) {
                gw->backend.ops->token_remove(gw->backend.data, id);
                return;
        }
        pthread_mutex_lock(&gw->lock);
        GwToken *t = find(gw, id);
        if (t) {
                size_t i = (size_t) (t - gw->tokens);
                explicit_bzero(t, sizeof(*t));
                memmove(t, t + 1, (gw->n_tokens - i - 1) * sizeof(*t));
                gw->n_tokens--;
                save(gw);
        }
        pthread_mutex_unlock(&gw->lock);
}

void gw_token_prune(GwServer *gw, json_object *sandboxes)
{
        pthread_mutex_lock(&gw->lock);
        size_t kept = 0, before = gw->n_tokens;
        for (size_t i = 0; i < gw->n_tokens; i++) {
                bool live = false;
                for (size_t j = 0; !live && j < json_object_array_length(sandboxes); j++) {
                        json_object *id = NULL;
                        live = json_object_object_get_ex(json_object_array_get_idx(sandboxes, j),
                                                         "id", &id) &&
                               streq(json_object_get_string(id), gw->tokens[i].id);
                }
                if (live)
                        gw->tokens[kept++] = gw->tokens[i];
        }
        for (size_t i = kept; i < before; i++)
                explicit_bzero(&gw->tokens[i], sizeof(gw->tokens[i]));
        gw->n_tokens = kept;
        if (kept != before)
                save(gw);
        pthread_mutex_unlock(&gw->lock);
}

/* Constant time in the tokens' content. */
static bool token_equal(const char *a, const char *b)
{
        size_t la = strlen(a), lb = strlen(b);
        unsigned char diff = la != lb;
        for (size_t i = 0; i < la && i < lb; i++)
                diff |= (unsigned char) (a[i] ^ b[i]);
        return diff == 0;
}

int gw_check_access_token(GwServer *gw, const char *id, const char *tok, char *err, size_t errlen)
{
        char want[GW_TOKEN_LEN + 1];
        if (gw_token_get(gw, id, want) == 0) {
                bool ok = tok && token_equal(tok, want);
                explicit_bzero(want, sizeof(want));
                if (ok)
                        return 0;
                snprintf(err, errlen, "%s",
                         tok ? "wrong access token" : "missing access token (X-Access-Token)");
                return -ENOKEY;
        }
        /* No token here: a sandbox made without secure, or one whose token
         * this gateway never had (it was restarted): the label says which. */
        json_object *sbx = NULL;
        int r = gw->backend.ops->get(gw->backend.data, id, &sbx, err, errlen);
        if (r < 0)
                return r;
        json_object *labels = NULL, *v = NULL;
        bool secure = json_object_object_get_ex(sbx, "labels", &labels) &&
                      json_object_object_get_ex(labels, GW_LABEL_SECURE, &v) &&
                      json_object_is_type(v, json_type_string) &&
                      streq(json_object_get_string(v), "true");
        json_object_put(sbx);
        if (secure) {
                snprintf(err, errlen,
                         "this gateway does not know the sandbox's access token "
                         "(it was restarted since the sandbox was made)");
                return -ENOKEY;
        }
        return 0;
}

int gw_authorize_local(GwServer *gw, const GwAuthRequest *r, char *err, size_t errlen,
                       void *userdata)
{
        (void) userdata;
        switch (r->action) {
        case GW_ACTION_CONTROL:
                /* Any key: gw_auth_authorize() (auth.c) checks real ones. */
                if (!r->api_key || !*r->api_key) {
                        snprintf(err, errlen, "missing API key (X-API-KEY)");
                        return -ENOKEY;
                }
                return 0;
        case GW_ACTION_ENVD:
        case GW_ACTION_CODE:
                return gw_check_access_token(gw, r->sandbox_id, r->access_token, err, errlen);
        case GW_ACTION_CONTEXTS:
                /* The SDK sends no access token here (E2B-WIRE §5.2). */
        case GW_ACTION_PORT:
                /* E2B's envd access token guards envd only; a sandbox's other
                 * ports are public (no traffic access token is issued). */
        case GW_ACTION_MCP:
                /* No keys (--gateway-auth none, the default hook): /mcp is
                 * guarded by its Origin check and the listen address;
                 * gw_auth_authorize() checks keys and tokens on it. */
                return 0;
        }
        return -EACCES;
}

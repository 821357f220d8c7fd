/* E2B control-plane JSON: create parsing, sandbox views, list pages. See
 * e2b-api.h and docs/gateway.md. */
#include "e2b-api.h"

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "connect.h"
#include "route.h"
#include "sandpit/json.h"
#include "sandpit/macro.h"
#include "sandpit/util.h"

#define MAX_RULES    256u /* the agent's NET_MAX_RULES */
#define MAX_MAP      256u /* metadata and envVars entries */
#define MAX_KEY      256u
#define MAX_ENV_NAME 1024u /* the agent's limit */
#define MAX_VALUE    (64u << 10)
#define ALL_TRAFFIC  "0.0.0.0/0"
#define TEMPLATE_MAX 128u

static const GwE2bAlias default_aliases[] = {
        {"base", "default"},
        {"code-interpreter-v1", "code-interpreter"},
        {NULL, NULL},
};

__attribute__((format(printf, 3, 4))) static int fail(char *err, size_t errlen, const char *fmt,
                                                      ...)
{
        va_list ap;
        va_start(ap, fmt);
        (void) vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
        return -EINVAL;
}

static bool is_null(json_object *v)
{
        return !v || json_object_is_type(v, json_type_null);
}

/* A JSON string without NUL bytes (json-c allows them; C strings end there). */
static bool plain_string(json_object *v)
{
        return json_object_is_type(v, json_type_string) &&
               strlen(json_object_get_string(v)) == (size_t) json_object_get_string_len(v);
}

static int add_str(json_object *o, const char *key, const char *val)
{
        json_object *s = val ? json_object_new_string(val) : NULL;
        if (val && !s)
                return -ENOMEM;
        if (json_object_object_add(o, key, s) < 0) {
                json_object_put(s);
                return -ENOMEM;
        }
        return 0;
}

static int add_obj(json_object *o, const char *key, json_object *val)
{
        if (!val)
                return -ENOMEM;
        if (json_object_object_add(o, key, val) < 0) {
                json_object_put(val);
                return -ENOMEM;
        }
        return 0;
}

/* --- create --------------------------------------------------------------- */

static bool template_name_ok(const char *n)
{
        size_t len = strlen(n);
        if (len == 0 || len > TEMPLATE_MAX || n[0] == '.')
                return false;
        for (const char *p = n; *p; p++)
                if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                      (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' || *p == '.'))
                        return false;
        return true;
}

static int parse_template(json_object *v, const GwE2bConfig *cfg, GwE2bCreate *c, char *err,
                          size_t errlen)
{
        if (is_null(v))
                return fail(err, errlen, "templateID is required");
        if (!plain_string(v) || !*json_object_get_string(v))
                return fail(err, errlen, "templateID must be a non-empty string");
        const char *id = json_object_get_string(v);
        const char *name = id;
        for (const GwE2bAlias *a = cfg && cfg->aliases ? cfg->aliases : default_aliases; a->alias;
             a++)
                if (streq(a->alias, id)) {
                        name = a->template_name;
                        break;
                }
        if (!template_name_ok(id) || !template_name_ok(name))
                return fail(err, errlen,
                            "templateID \"%.128s\" is not a template name (1-128 characters of "
                            "[A-Za-z0-9._-], not starting with '.')",
                            id);
        if (!(c->template_id = strdup(id)) || !(c->template_name = strdup(name)))
                return -ENOMEM;
        return 0;
}

static int parse_timeout(json_object *v, const char *what, uint64_t *ret, char *err, size_t errlen)
{
        int64_t t = json_object_is_type(v, json_type_int) ? json_object_get_int64(v) : 0;
        if (t < 1 || t > (int64_t) GW_E2B_TIMEOUT_MAX)
                return fail(err, errlen, "%s must be an integer number of seconds from 1 to %u",
                            what, GW_E2B_TIMEOUT_MAX);
        *ret = (uint64_t) t;
        return 0;
}

static int parse_bool(json_object *v, const char *what, bool *ret, char *err, size_t errlen)
{
        if (is_null(v))
                return 0;
        if (!json_object_is_type(v, json_type_boolean))
                return fail(err, errlen, "%s must be true or false", what);
        *ret = json_object_get_boolean(v);
        return 0;
}

/* metadata (env false) or envVars (env true): an object of strings. */
static int parse_map(json_object *v, bool env, json_object **ret, char *err, size_t errlen)
{
        const char *what = env ? "envVars" : "metadata";
        if (!json_object_is_type(v, json_type_object) ||
            (size_t) json_object_object_length(v) > MAX_MAP)
                return fail(err, errlen, "%s must be an object of at most %u strings", what,
                            MAX_MAP);
        json_object_object_foreach(v, key, val) {
                size_t kn = strlen(key);
                if (!plain_string(val) || (size_t) json_object_get_string_len(val) > MAX_VALUE)
                        return fail(err, errlen,
                                    "%s %.64s: values must be strings of at most %u "
                                    "bytes without NUL",
                                    what, key, MAX_VALUE);
                if (env && (kn == 0 || kn > MAX_ENV_NAME || strchr(key, '=')))
                        return fail(err, errlen,
                                    "envVars %.64s: names must be 1-%u characters without '='", key,
                                    MAX_ENV_NAME);
                if (!env && (kn == 0 || kn > MAX_KEY || strchr(key, '=') || strchr(key, ',')))
                        return fail(err, errlen,
                                    "metadata %.64s: keys must be 1-%u characters without '=' "
                                    "or ','",
                                    key, MAX_KEY);
                if (!env && strncmp(key, GW_E2B_LABEL_PREFIX, strlen(GW_E2B_LABEL_PREFIX)) == 0)
                        return fail(err, errlen,
                                    "metadata %.64s: keys starting with %s are "
                                    "reserved for sandpit",
                                    key, GW_E2B_LABEL_PREFIX);
        }
        if (json_object_deep_copy(v, ret, NULL) < 0)
                return -ENOMEM;
        return 0;
}

typedef struct {
        uint32_t addr;
        uint8_t prefix;
} Cidr;

static int cidr_parse(const char *s, Cidr *ret)
{
        char ip[16];
        const char *slash = strchr(s, '/');
        size_t n = slash ? (size_t) (slash - s) : strlen(s);
        unsigned prefix = 32;
        if (n == 0 || n >= sizeof(ip))
                return -EINVAL;
        memcpy(ip, s, n);
        ip[n] = 0;
        struct in_addr a;
        if (inet_pton(AF_INET, ip, &a) != 1)
                return -EINVAL;
        if (slash) {
                const char *p = slash + 1;
                size_t pn = strlen(p);
                if (pn < 1 || pn > 2 || (pn == 2 && p[0] == '0'))
                        return -EINVAL;
                prefix = 0;
                for (size_t i = 0; i < pn; i++) {
                        if (p[i] < '0' || p[i] > '9')
                                return -EINVAL;
                        prefix = prefix * 10 + (unsigned) (p[i] - '0');
                }
                if (prefix > 32)
                        return -EINVAL;
        }
        uint32_t addr = ntohl(a.s_addr);
        uint32_t mask = prefix ? ~0u << (32 - prefix) : 0;
        if (addr & ~mask)
                return -ERANGE; /* host bits set */
        *ret = (Cidr){addr, (uint8_t) prefix};
        return 0;
}

static bool cidr_overlap(Cidr a, Cidr b)
{
        uint8_t p = a.prefix < b.prefix ? a.prefix : b.prefix;
        uint32_t mask = p ? ~0u << (32 - p) : 0;
        return (a.addr & mask) == (b.addr & mask);
}

/* A domain in allowOut ("api.example.com", "*.example.com"): it goes to the
 * agent as a host entry, which checks it fully. prefix 33 marks it. */
static bool looks_like_host(const char *s)
{
        bool letter = false;
        for (const char *p = s; *p; p++) {
                if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z'))
                        letter = true;
                else if (!((*p >= '0' && *p <= '9') || *p == '.' || *p == '-' || *p == '_' ||
                           (*p == '*' && p == s)))
                        return false;
        }
        return letter && strlen(s) <= 253;
}

/* allowOut or denyOut: an array of IPv4 addresses and CIDRs; allowOut may
 * also name domains. */
static int parse_cidrs(json_object *v, const char *what, char ***ret, Cidr **ret_parsed,
                       bool *ret_all, char *err, size_t errlen)
{
        if (!json_object_is_type(v, json_type_array) || json_object_array_length(v) > MAX_RULES)
                return fail(err, errlen, "network.%s must be an array of at most %u addresses",
                            what, MAX_RULES);
        size_t n = json_object_array_length(v);
        cleanup_strv char **list = calloc(n + 1, sizeof(char *));
        cleanup_free Cidr *parsed = calloc(n + 1, sizeof(Cidr));
        if (!list || !parsed)
                return -ENOMEM;
        *ret_all = false;
        for (size_t i = 0; i < n; i++) {
                json_object *e = json_object_array_get_idx(v, i);
                const char *s = plain_string(e) ? json_object_get_string(e) : "";
                int r = cidr_parse(s, &parsed[i]);
                if (r < 0 && r != -ERANGE && streq(what, "allowOut") && looks_like_host(s)) {
                        parsed[i].prefix = 33;
                        r = 0;
                }
                if (r == -ERANGE)
                        return fail(err, errlen,
                                    "network.%s: %.64s has host bits set; write the network "
                                    "address",
                                    what, s);
                if (r < 0)
                        return fail(err, errlen,
                                    "network.%s: \"%.64s\" is not an IPv4 address or CIDR "
                                    "(IPv6 is not supported; domains only in allowOut)",
                                    what, s);
                if (parsed[i].prefix == 0)
                        *ret_all = true;
                if (!(list[i] = strdup(s)))
                        return -ENOMEM;
        }
        *ret = TAKE_PTR(list);
        *ret_parsed = TAKE_PTR(parsed);
        return 0;
}

/* allow_internet_access and network become one egress policy. E2B's rules:
 * allow_internet_access false is denyOut [0.0.0.0/0]; allowOut wins over
 * denyOut. */
static int parse_network(json_object *net, json_object *internet, const GwE2bConfig *cfg,
                         GwE2bCreate *c, char *err, size_t errlen)
{
        bool allow_internet = true;
        int r = parse_bool(internet, "allow_internet_access", &allow_internet, err, errlen);
        if (r < 0)
                return r;
        cleanup_strv char **allow = NULL, **deny = NULL;
        cleanup_free Cidr *allow_c = NULL, *deny_c = NULL;
        bool allow_all = false, deny_all = !allow_internet;
        if (!is_null(net)) {
                if (!json_object_is_type(net, json_type_object))
                        return fail(err, errlen, "network must be an object");
                json_object_object_foreach(net, key, val) {
                        if (is_null(val))
                                continue;
                        if (streq(key, "allowOut") || streq(key, "denyOut")) {
                                bool a = streq(key, "allowOut"), all = false;
                                if ((r = parse_cidrs(val, key, a ? &allow : &deny,
                                                     a ? &allow_c : &deny_c, &all, err, errlen)) <
                                    0)
                                        return r;
                                if (a)
                                        allow_all = all;
                                else
                                        deny_all = deny_all || all;
                        } else if (streq(key, "allowPublicTraffic")) {
                                bool pub = true;
                                if ((r = parse_bool(val, "network.allowPublicTraffic", &pub, err,
                                                    errlen)) < 0)
                                        return r;
                                if (!pub)
                                        return fail(err, errlen,
                                                    "network.allowPublicTraffic false (traffic "
                                                    "access tokens) is not supported");
                        } else if (streq(key, "rules")) {
                                if (!json_object_is_type(val, json_type_object) ||
                                    json_object_object_length(val) > 0)
                                        return fail(err, errlen,
                                                    "network.rules (per-host request rules) is "
                                                    "not supported");
                        } else if (streq(key, "httpsPorts")) {
                                if (!json_object_is_type(val, json_type_array) ||
                                    json_object_array_length(val) > 0)
                                        return fail(err, errlen,
                                                    "network.httpsPorts is not supported");
                        } else if (streq(key, "egressProxy") || streq(key, "maskRequestHost")) {
                                return fail(err, errlen, "network.%s is not supported", key);
                        } else
                                return fail(err, errlen, "network: unknown field \"%.64s\"", key);
                }
        }
        bool lists = (allow && allow[0]) || (deny && deny[0]);
        if (allow_all) {
                c->egress = GW_E2B_EGRESS_ALLOW; /* allowOut wins */
        } else if (deny_all) {
                c->egress = allow && allow[0] ? GW_E2B_EGRESS_ALLOWLIST : GW_E2B_EGRESS_DENY;
        } else {
                /* allowOut only matters where it punches a hole in denyOut */
                for (size_t i = 0; allow && allow[i]; i++)
                        for (size_t k = 0; deny && deny[k]; k++)
                                if (allow_c[i].prefix <= 32 && cidr_overlap(allow_c[i], deny_c[k]))
                                        return fail(err, errlen,
                                                    "network: allowOut %.64s inside denyOut "
                                                    "%.64s is only supported when denyOut is %s",
                                                    allow[i], deny[k], ALL_TRAFFIC);
                c->egress = GW_E2B_EGRESS_ALLOW;
        }
        if (c->egress != GW_E2B_EGRESS_DENY && !(cfg && cfg->internet)) {
                /* E2B's default of internet access becomes none here; an explicit
                 * list asking for some access cannot be met. */
                if (lists)
                        return fail(err, errlen,
                                    "network.allowOut/denyOut need sandbox networking, which "
                                    "this gateway's agent does not have (--sandbox-cidr)");
                c->egress = GW_E2B_EGRESS_DENY;
        }
        if (c->egress == GW_E2B_EGRESS_ALLOWLIST)
                c->allow = TAKE_PTR(allow);
        else if (c->egress == GW_E2B_EGRESS_ALLOW && !allow_all)
                c->deny = TAKE_PTR(deny);
        return 0;
}

void gw_e2b_create_done(GwE2bCreate *c)
{
        free(c->template_id);
        free(c->template_name);
        json_object_put(c->labels);
        json_object_put(c->env);
        strv_free(c->allow);
        strv_free(c->deny);
        *c = (GwE2bCreate){0};
}

static int create_field(const char *key, json_object *val, bool *seen_secure, GwE2bCreate *c,
                        char *err, size_t errlen)
{
        if (streq(key, "templateID") || streq(key, "allow_internet_access") ||
            streq(key, "network"))
                return 0; /* read together, after the loop */
        if (streq(key, "timeout"))
                return is_null(val) ? 0 : parse_timeout(val, "timeout", &c->timeout_s, err, errlen);
        if (streq(key, "metadata") || streq(key, "envVars")) {
                bool env = streq(key, "envVars");
                json_object **dst = env ? &c->env : &c->labels;
                if (is_null(val))
                        return 0;
                json_object_put(*dst);
                *dst = NULL;
                return parse_map(val, env, dst, err, errlen);
        }
        if (streq(key, "secure")) {
                *seen_secure = !is_null(val);
                return parse_bool(val, "secure", &c->secure, err, errlen);
        }
        if (streq(key, "autoPause"))
                return parse_bool(val, "autoPause", &c->auto_pause, err, errlen);
        if (streq(key, "autoPauseMemory")) {
                /* sandpit's pause always keeps memory; either answer is met. */
                bool keep = true;
                return parse_bool(val, "autoPauseMemory", &keep, err, errlen);
        }
        if (streq(key, "autoResume")) {
                if (is_null(val))
                        return 0;
                json_object *en = json_field(val, "enabled");
                bool on = false;
                if (!json_object_is_type(val, json_type_object) ||
                    (json_object_object_length(val) > (en ? 1 : 0)) ||
                    parse_bool(en, "autoResume.enabled", &on, err, errlen) < 0)
                        return fail(err, errlen, "autoResume must be {\"enabled\": true|false}");
                if (on)
                        return fail(err, errlen, "autoResume is not supported");
                return 0;
        }
        if (streq(key, "volumeMounts")) {
                if (is_null(val) ||
                    (json_object_is_type(val, json_type_array) && !json_object_array_length(val)))
                        return 0;
                return fail(err, errlen, "volumeMounts are not supported");
        }
        if (streq(key, "mcp") || streq(key, "iam")) {
                if (is_null(val))
                        return 0;
                return fail(err, errlen, "%s is not supported", key);
        }
        return fail(err, errlen, "unknown field \"%.64s\"", key);
}

int gw_e2b_create_parse(json_object *body, bool v1, const GwE2bConfig *cfg, GwE2bCreate *ret,
                        char *err, size_t errlen)
{
        if (!json_object_is_type(body, json_type_object))
                return fail(err, errlen, "the request body must be a JSON object");
        GwE2bCreate c = {.timeout_s = GW_E2B_TIMEOUT_DEFAULT, .secure = !v1};
        bool seen_secure = false;
        int r = 0;
        json_object_object_foreach(body, key, val) {
                if ((r = create_field(key, val, &seen_secure, &c, err, errlen)) < 0)
                        break;
        }
        if (r == 0)
                r = parse_template(json_field(body, "templateID"), cfg, &c, err, errlen);
        if (r == 0)
                r = parse_network(json_field(body, "network"),
                                  json_field(body, "allow_internet_access"), cfg, &c, err, errlen);
        if (r == 0 && !v1 && seen_secure && !c.secure)
                r = fail(err, errlen,
                         "secure: false is not supported; sandboxes always get an "
                         "access token");
        if (r == 0 && !c.labels && !(c.labels = json_object_new_object()))
                r = -ENOMEM;
        if (r == 0 && !c.env && !(c.env = json_object_new_object()))
                r = -ENOMEM;
        if (r < 0) {
                gw_e2b_create_done(&c);
                return r;
        }
        *ret = c;
        return 0;
}

static int rules_json(char **cidrs, json_object **ret)
{
        cleanup_json json_object *arr = json_object_new_array();
        if (!arr)
                return -ENOMEM;
        STRV_FOREACH(s, cidrs) {
                json_object *rule = json_object_new_object();
                Cidr c;
                int k = cidr_parse(*s, &c);
                if (!rule || add_str(rule, k == 0 || k == -ERANGE ? "cidr" : "host", *s) < 0 ||
                    json_object_array_add(arr, rule) < 0) {
                        json_object_put(rule);
                        return -ENOMEM;
                }
        }
        *ret = TAKE_PTR(arr);
        return 0;
}

int gw_e2b_create_to_agent(const GwE2bCreate *c, json_object **ret, char *err, size_t errlen)
{
        (void) err;
        (void) errlen;
        cleanup_json json_object *o = json_object_new_object();
        cleanup_json json_object *labels = NULL, *env = NULL, *net = NULL;
        if (!o || add_str(o, "template", c->template_name) < 0 ||
            add_obj(o, "timeout", json_object_new_int64((int64_t) c->timeout_s)) < 0)
                return -ENOMEM;
        /* autoPause: the agent pauses at the deadline instead of deleting. */
        if (c->auto_pause && add_str(o, "on_timeout", "pause") < 0)
                return -ENOMEM;
        if (json_object_deep_copy(c->labels, &labels, NULL) < 0 ||
            add_str(labels, GW_E2B_LABEL_TEMPLATE, c->template_id) < 0 ||
            add_obj(o, "labels", TAKE_PTR(labels)) < 0)
                return -ENOMEM;
        if (json_object_object_length(c->env) > 0 &&
            (json_object_deep_copy(c->env, &env, NULL) < 0 || add_obj(o, "env", TAKE_PTR(env)) < 0))
                return -ENOMEM;
        if (!(net = json_object_new_object()))
                return -ENOMEM;
        const char *egress = c->egress == GW_E2B_EGRESS_ALLOW       ? "allow"
                             : c->egress == GW_E2B_EGRESS_ALLOWLIST ? "allowlist"
                                                                    : "deny";
        if (add_str(net, "egress", egress) < 0)
                return -ENOMEM;
        char **list = c->egress == GW_E2B_EGRESS_ALLOW       ? c->deny
                      : c->egress == GW_E2B_EGRESS_ALLOWLIST ? c->allow
                                                             : NULL;
        if (list && list[0]) {
                json_object *rules = NULL;
                int r = rules_json(list, &rules);
                if (r < 0)
                        return r;
                if (add_obj(net, c->egress == GW_E2B_EGRESS_ALLOW ? "deny" : "allow", rules) < 0)
                        return -ENOMEM;
        }
        if (add_obj(o, "network", TAKE_PTR(net)) < 0)
                return -ENOMEM;
        *ret = TAKE_PTR(o);
        return 0;
}

/* --- sandbox views -------------------------------------------------------- */

static int64_t json_int_field(json_object *o, const char *key)
{
        json_object *v = json_field(o, key);
        return v && (json_object_is_type(v, json_type_int) ||
                     json_object_is_type(v, json_type_double))
                       ? json_object_get_int64(v)
                       : 0;
}

static int metadata_from_labels(json_object *labels, json_object **ret)
{
        cleanup_json json_object *md = json_object_new_object();
        if (!md)
                return -ENOMEM;
        if (json_object_is_type(labels, json_type_object)) {
                json_object_object_foreach(labels, key, val) {
                        if (strncmp(key, GW_E2B_LABEL_PREFIX, strlen(GW_E2B_LABEL_PREFIX)) == 0 ||
                            !json_object_is_type(val, json_type_string))
                                continue;
                        if (add_str(md, key, json_object_get_string(val)) < 0)
                                return -ENOMEM;
                }
        }
        *ret = TAKE_PTR(md);
        return 0;
}

/* The agent's network policy as E2B's allowOut/denyOut. */
static int network_view(json_object *net, bool *ret_internet, json_object **ret)
{
        const char *egress = json_str(net, "egress");
        bool allow = egress && streq(egress, "allow");
        bool allowlist = egress && streq(egress, "allowlist");
        cleanup_json json_object *o = json_object_new_object();
        cleanup_json json_object *allow_out = json_object_new_array();
        cleanup_json json_object *deny_out = json_object_new_array();
        if (!o || !allow_out || !deny_out)
                return -ENOMEM;
        json_object *rules = json_field(net, allow ? "deny" : "allow");
        json_object *dst = allow ? deny_out : allow_out;
        for (size_t i = 0; (allow || allowlist) && json_object_is_type(rules, json_type_array) &&
                           i < json_object_array_length(rules);
             i++) {
                json_object *rule = json_object_array_get_idx(rules, i);
                const char *cidr =
                        json_str(rule, "cidr") ? json_str(rule, "cidr") : json_str(rule, "host");
                json_object *s = cidr ? json_object_new_string(cidr) : NULL;
                if (cidr && (!s || json_object_array_add(dst, s) < 0)) {
                        json_object_put(s);
                        return -ENOMEM;
                }
        }
        if (!allow) {
                json_object *s = json_object_new_string(ALL_TRAFFIC);
                if (!s || json_object_array_add(deny_out, s) < 0) {
                        json_object_put(s);
                        return -ENOMEM;
                }
        }
        if (add_obj(o, "allowOut", TAKE_PTR(allow_out)) < 0 ||
            add_obj(o, "denyOut", TAKE_PTR(deny_out)) < 0)
                return -ENOMEM;
        *ret_internet = allow || allowlist;
        *ret = TAKE_PTR(o);
        return 0;
}

int gw_e2b_sandbox_from_agent(json_object *agent, GwE2bView view, const GwE2bConfig *cfg,
                              const char *access_token, json_object **ret)
{
        const char *id = json_str(agent, "id");
        const char *state = json_str(agent, "state");
        if (!id || !state)
                return -EINVAL;
        if (!streq(state, "running") && !streq(state, "paused"))
                return -ENOENT;
        json_object *labels = json_field(agent, "labels");
        const char *tmpl = json_str(labels, GW_E2B_LABEL_TEMPLATE);
        if (!tmpl)
                tmpl = json_str(agent, "template");
        const char *envd = cfg && cfg->envd_version ? cfg->envd_version : GW_E2B_ENVD_VERSION;
        const char *client = cfg && cfg->client_id ? cfg->client_id : "sandpit";
        const char *domain = cfg && cfg->domain && *cfg->domain ? cfg->domain : NULL;
        cleanup_json json_object *o = json_object_new_object();
        if (!o || add_str(o, "sandboxID", id) < 0 || add_str(o, "templateID", tmpl) < 0 ||
            add_str(o, "alias", tmpl) < 0 || add_str(o, "clientID", client) < 0 ||
            add_str(o, "envdVersion", envd) < 0)
                return -ENOMEM;
        if (view == GW_E2B_VIEW_SANDBOX || view == GW_E2B_VIEW_DETAIL) {
                if ((access_token && add_str(o, "envdAccessToken", access_token) < 0) ||
                    add_str(o, "domain", domain) < 0)
                        return -ENOMEM;
        }
        if (view == GW_E2B_VIEW_SANDBOX) {
                if (add_str(o, "trafficAccessToken", NULL) < 0)
                        return -ENOMEM;
                *ret = TAKE_PTR(o);
                return 0;
        }
        json_object *cpu = json_field(agent, "cpu");
        double cores = cpu ? json_object_get_double(cpu) : 1;
        int64_t cpus = cores > 1 ? (int64_t) ceil(cores) : 1;
        json_object *md = NULL;
        int r = metadata_from_labels(labels, &md);
        if (r < 0)
                return r;
        if (add_obj(o, "metadata", md) < 0 ||
            add_str(o, "startedAt", json_str(agent, "started_at")) < 0 ||
            add_str(o, "endAt", json_str(agent, "expires_at")) < 0 ||
            add_str(o, "state", state) < 0 ||
            add_obj(o, "cpuCount", json_object_new_int64(cpus)) < 0 ||
            add_obj(o, "memoryMB", json_object_new_int64(json_int_field(agent, "memory") >> 20)) <
                    0 ||
            add_obj(o, "diskSizeMB", json_object_new_int64(json_int_field(agent, "disk") >> 20)) <
                    0 ||
            add_obj(o, "volumeMounts", json_object_new_array()) < 0)
                return -ENOMEM;
        if (view == GW_E2B_VIEW_DETAIL) {
                bool internet = false;
                json_object *net = NULL;
                if ((r = network_view(json_field(agent, "network"), &internet, &net)) < 0)
                        return r;
                if (add_obj(o, "network", net) < 0 ||
                    add_obj(o, "allowInternetAccess", json_object_new_boolean(internet)) < 0)
                        return -ENOMEM;
                json_object *lc = json_object_new_object();
                const char *ot = json_str(agent, "on_timeout");
                if (add_obj(o, "lifecycle", lc) < 0 ||
                    add_str(lc, "onTimeout", ot && streq(ot, "pause") ? "pause" : "kill") < 0 ||
                    add_obj(lc, "autoResume", json_object_new_boolean(false)) < 0)
                        return -ENOMEM;
        }
        *ret = TAKE_PTR(o);
        return 0;
}

/* --- list ----------------------------------------------------------------- */

static int hexval(char c)
{
        return c >= '0' && c <= '9'   ? c - '0'
               : c >= 'a' && c <= 'f' ? c - 'a' + 10
               : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                      : -1;
}

/* Percent-decodes s[0..n) ('+' is a space when form is true). -EINVAL for a
 * bad escape or a NUL byte. */
static int pct_decode(const char *s, size_t n, bool form, char **ret)
{
        cleanup_free char *out = calloc(n + 1, 1);
        if (!out)
                return -ENOMEM;
        size_t k = 0;
        for (size_t i = 0; i < n; i++) {
                char c = s[i];
                if (c == '%') {
                        if (i + 2 >= n)
                                return -EINVAL;
                        int hi = hexval(s[i + 1]), lo = hexval(s[i + 2]);
                        if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
                                return -EINVAL;
                        out[k++] = (char) (hi * 16 + lo);
                        i += 2;
                } else if (c == '+' && form)
                        out[k++] = ' ';
                else if (c == 0)
                        return -EINVAL;
                else
                        out[k++] = c;
        }
        out[k] = 0;
        *ret = TAKE_PTR(out);
        return 0;
}

/* One more percent-decoding of a form-decoded part (the SDK encodes twice). */
static int metadata_part(const char *s, size_t n, char **ret)
{
        cleanup_free char *once = NULL;
        int r = pct_decode(s, n, true, &once);
        if (r < 0)
                return r;
        return pct_decode(once, strlen(once), false, ret);
}

int gw_e2b_metadata_filter_parse(const char *s, char ***ret, char *err, size_t errlen)
{
        size_t cap = 1;
        for (const char *p = s; *p; p++)
                cap += *p == '&';
        cleanup_strv char **out = calloc(cap + 1, sizeof(char *));
        if (!out)
                return -ENOMEM;
        size_t n = 0;
        for (const char *p = s; *p;) {
                size_t len = strcspn(p, "&");
                const char *eq = memchr(p, '=', len);
                if (len > 0) {
                        cleanup_free char *k = NULL, *v = NULL;
                        size_t kn = eq ? (size_t) (eq - p) : len;
                        if (metadata_part(p, kn, &k) < 0 ||
                            metadata_part(eq ? eq + 1 : p + len, eq ? len - kn - 1 : 0, &v) < 0)
                                return fail(err, errlen, "metadata filter: bad percent-encoding");
                        if (!*k || strchr(k, '=') || strchr(k, ','))
                                return fail(err, errlen,
                                            "metadata filter: keys must be non-empty without "
                                            "'=' or ','");
                        if (asprintf(&out[n], "%s=%s", k, v) < 0) {
                                out[n] = NULL;
                                return -ENOMEM;
                        }
                        n++;
                }
                p += len;
                if (*p == '&')
                        p++;
        }
        *ret = TAKE_PTR(out);
        return 0;
}

static int token_encode(int64_t sec, int32_t nsec, const char *id, char **ret)
{
        cleanup_free char *raw = NULL, *b64 = NULL;
        if (asprintf(&raw, "%lld.%09d/%s", (long long) sec, nsec, id) < 0)
                return -ENOMEM;
        int r = base64_encode(raw, strlen(raw), &b64);
        if (r < 0)
                return r;
        /* URL-safe and unpadded, so it survives a query string as is. */
        size_t n = strlen(b64);
        while (n > 0 && b64[n - 1] == '=')
                b64[--n] = 0;
        for (char *p = b64; *p; p++)
                *p = (char) (*p == '+' ? '-' : *p == '/' ? '_' : *p);
        *ret = TAKE_PTR(b64);
        return 0;
}

static int token_decode(const char *tok, GwE2bListQuery *q)
{
        cleanup_free uint8_t *raw = NULL;
        size_t n = 0;
        if (strlen(tok) > 256 || gw_connect_b64_decode(tok, strlen(tok), &raw, &n) < 0)
                return -EINVAL;
        cleanup_free char *s = strndup((const char *) raw, n);
        if (!s || strlen(s) != n)
                return -EINVAL;
        char *slash = strchr(s, '/');
        if (!slash || !id_is_valid(slash + 1))
                return -EINVAL;
        *slash = 0;
        /* "<seconds>.<9 digits>": digits only, an optional '-' for times before 1970 */
        char *dot = strchr(s, '.');
        if (!dot || strlen(dot + 1) != 9 || dot == s || (dot - s == 1 && s[0] == '-'))
                return -EINVAL;
        for (char *p = s; *p; p++)
                if (!((*p >= '0' && *p <= '9') || p == dot || (p == s && *p == '-')))
                        return -EINVAL;
        errno = 0;
        long long sec = strtoll(s, NULL, 10);
        long ns = strtol(dot + 1, NULL, 10);
        if (errno)
                return -EINVAL;
        if (!(q->cursor_id = strdup(slash + 1)))
                return -ENOMEM;
        q->have_cursor = true;
        q->cursor_sec = sec;
        q->cursor_nsec = (int32_t) ns;
        return 0;
}

void gw_e2b_list_query_done(GwE2bListQuery *q)
{
        strv_free(q->metadata);
        free(q->template_id);
        free(q->cursor_id);
        *q = (GwE2bListQuery){0};
}

static int parse_states(const char *s, GwE2bListQuery *q, char *err, size_t errlen)
{
        q->running = q->paused = false;
        for (const char *p = s;;) {
                size_t n = strcspn(p, ",");
                if (n == 7 && strncmp(p, "running", 7) == 0)
                        q->running = true;
                else if (n == 6 && strncmp(p, "paused", 6) == 0)
                        q->paused = true;
                else
                        return fail(err, errlen,
                                    "state must be a comma-separated list of running and paused");
                p += n;
                if (!*p)
                        return 0;
                p++;
        }
}

static int list_query_fields(const GwE2bListParams *p, bool paginate, GwE2bListQuery *q, char *err,
                             size_t errlen)
{
        int r;
        if (p->metadata &&
            (r = gw_e2b_metadata_filter_parse(p->metadata, &q->metadata, err, errlen)) < 0)
                return r;
        if (!q->metadata && !(q->metadata = calloc(1, sizeof(char *))))
                return -ENOMEM;
        if (p->state && (r = parse_states(p->state, q, err, errlen)) < 0)
                return r;
        if (p->template_id && !(q->template_id = strdup(p->template_id)))
                return -ENOMEM;
        if (p->started_after) {
                if (gw_connect_timestamp_parse(p->started_after, &q->started_after_sec,
                                               &q->started_after_nsec) < 0)
                        return fail(err, errlen, "startedAfter must be an RFC 3339 time");
                q->have_started_after = true;
        }
        if (p->order) {
                if (streq(p->order, "desc"))
                        q->desc = true;
                else if (!streq(p->order, "asc"))
                        return fail(err, errlen, "order must be asc or desc");
        }
        if (!paginate && (p->limit || p->next_token))
                return fail(err, errlen, "limit and nextToken are only taken by GET /v2/sandboxes");
        if (p->limit) {
                uint16_t lim = 0;
                if (gw_route_port_parse(p->limit, strlen(p->limit), &lim) < 0 ||
                    lim > GW_E2B_LIST_LIMIT_MAX)
                        return fail(err, errlen, "limit must be an integer from 1 to %u",
                                    GW_E2B_LIST_LIMIT_MAX);
                q->limit = lim;
        }
        if (p->next_token && *p->next_token && (r = token_decode(p->next_token, q)) < 0)
                return r == -ENOMEM ? r : fail(err, errlen, "nextToken is not valid");
        return 0;
}

int gw_e2b_list_query_parse(const GwE2bListParams *p, bool paginate, GwE2bListQuery *ret, char *err,
                            size_t errlen)
{
        GwE2bListQuery q = {.running = true,
                            .paused = true,
                            .limit = paginate ? GW_E2B_LIST_LIMIT_MAX : SIZE_MAX};
        int r = list_query_fields(p, paginate, &q, err, errlen);
        if (r < 0) {
                gw_e2b_list_query_done(&q);
                return r;
        }
        *ret = q;
        return 0;
}

typedef struct {
        json_object *sb; /* borrowed from the agent's list */
        const char *id;
        int64_t sec;
        int32_t nsec;
} Entry;

static int entry_cmp(const Entry *a, int64_t sec, int32_t nsec, const char *id)
{
        if (a->sec != sec)
                return a->sec < sec ? -1 : 1;
        if (a->nsec != nsec)
                return a->nsec < nsec ? -1 : 1;
        return strcmp(a->id, id);
}

static int entry_qsort_asc(const void *x, const void *y)
{
        const Entry *b = y;
        return entry_cmp(x, b->sec, b->nsec, b->id);
}

static int entry_qsort_desc(const void *x, const void *y)
{
        return -entry_qsort_asc(x, y);
}

static bool entry_matches(json_object *sb, const GwE2bListQuery *q, Entry *ret)
{
        const char *id = json_str(sb, "id"), *state = json_str(sb, "state");
        const char *started = json_str(sb, "started_at");
        int64_t sec = 0;
        int32_t nsec = 0;
        if (!id || !state || !started || gw_connect_timestamp_parse(started, &sec, &nsec) < 0)
                return false;
        if (!((streq(state, "running") && q->running) || (streq(state, "paused") && q->paused)))
                return false;
        json_object *labels = json_field(sb, "labels");
        STRV_FOREACH(m, q->metadata) {
                const char *eq = strchr(*m, '=');
                cleanup_free char *k = eq ? strndup(*m, (size_t) (eq - *m)) : NULL;
                const char *v = k ? json_str(labels, k) : NULL;
                if (!v || !streq(v, eq + 1) ||
                    strncmp(k, GW_E2B_LABEL_PREFIX, strlen(GW_E2B_LABEL_PREFIX)) == 0)
                        return false;
        }
        if (q->template_id) {
                const char *t = json_str(labels, GW_E2B_LABEL_TEMPLATE);
                const char *native = json_str(sb, "template");
                if (!((t && streq(t, q->template_id)) || (native && streq(native, q->template_id))))
                        return false;
        }
        if (q->have_started_after &&
            (sec < q->started_after_sec ||
             (sec == q->started_after_sec && nsec <= q->started_after_nsec)))
                return false;
        *ret = (Entry){sb, id, sec, nsec};
        return true;
}

int gw_e2b_list_page(json_object *agent_list, const GwE2bListQuery *q, const GwE2bConfig *cfg,
                     json_object **ret, char **ret_next_token)
{
        json_object *arr = json_object_is_type(agent_list, json_type_array)
                                   ? agent_list
                                   : json_field(agent_list, "sandboxes");
        if (!json_object_is_type(arr, json_type_array))
                return -EINVAL;
        size_t n = json_object_array_length(arr), m = 0;
        cleanup_free Entry *e = calloc(n + 1, sizeof(Entry));
        if (!e)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++)
                if (entry_matches(json_object_array_get_idx(arr, i), q, &e[m]))
                        m++;
        qsort(e, m, sizeof(Entry), q->desc ? entry_qsort_desc : entry_qsort_asc);
        size_t start = 0;
        if (q->have_cursor)
                while (start < m) {
                        int c = entry_cmp(&e[start], q->cursor_sec, q->cursor_nsec, q->cursor_id);
                        if (q->desc ? c < 0 : c > 0)
                                break;
                        start++;
                }
        cleanup_json json_object *out = json_object_new_array();
        if (!out)
                return -ENOMEM;
        size_t i = start;
        for (; i < m && i - start < q->limit; i++) {
                json_object *o = NULL;
                int r = gw_e2b_sandbox_from_agent(e[i].sb, GW_E2B_VIEW_LISTED, cfg, NULL, &o);
                if (r < 0)
                        return r;
                if (json_object_array_add(out, o) < 0) {
                        json_object_put(o);
                        return -ENOMEM;
                }
        }
        cleanup_free char *next = NULL;
        if (i < m && i > start) {
                int r = token_encode(e[i - 1].sec, e[i - 1].nsec, e[i - 1].id, &next);
                if (r < 0)
                        return r;
        }
        *ret = TAKE_PTR(out);
        *ret_next_token = TAKE_PTR(next);
        return 0;
}

/* --- metrics -------------------------------------------------------------- */

/* A copy of a numeric field (as the agent wrote it, 49.87 stays 49.87), or 0. */
static json_object *num_field(json_object *o, const char *key)
{
        json_object *v = json_field(o, key), *c = NULL;
        if (!json_object_is_type(v, json_type_int) && !json_object_is_type(v, json_type_double))
                return json_object_new_int64(0);
        return json_object_deep_copy(v, &c, NULL) < 0 ? NULL : c;
}

static int metrics_sample(json_object *m, json_object **ret)
{
        const char *ts = json_str(m, "timestamp");
        if (!ts)
                return -EINVAL;
        json_object *cpu = json_field(m, "cpu_count");
        double cores = cpu ? json_object_get_double(cpu) : 1;
        cleanup_json json_object *o = json_object_new_object();
        if (!o || add_str(o, "timestamp", ts) < 0 ||
            add_obj(o, "timestampUnix", num_field(m, "timestamp_unix")) < 0 ||
            add_obj(o, "cpuCount", json_object_new_int64(cores > 1 ? (int64_t) ceil(cores) : 1)) <
                    0 ||
            add_obj(o, "cpuUsedPct", num_field(m, "cpu_used_pct")) < 0 ||
            add_obj(o, "memUsed", num_field(m, "memory_used")) < 0 ||
            add_obj(o, "memTotal", num_field(m, "memory_limit")) < 0 ||
            add_obj(o, "memCache", json_object_new_int64(0)) < 0 ||
            add_obj(o, "diskUsed", num_field(m, "disk_used")) < 0 ||
            add_obj(o, "diskTotal", num_field(m, "disk_total")) < 0)
                return -ENOMEM;
        *ret = TAKE_PTR(o);
        return 0;
}

int gw_e2b_metrics_from_agent(json_object *agent, json_object **ret)
{
        if (!json_object_is_type(agent, json_type_object))
                return -EINVAL;
        json_object *window = json_field(agent, "metrics");
        if (window && !json_object_is_type(window, json_type_array))
                return -EINVAL;
        size_t n = window ? json_object_array_length(window) : 1;
        cleanup_json json_object *arr = json_object_new_array();
        if (!arr)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                json_object *o = NULL;
                int r = metrics_sample(window ? json_object_array_get_idx(window, i) : agent, &o);
                if (r < 0)
                        return r;
                if (json_object_array_add(arr, o) < 0) {
                        json_object_put(o);
                        return -ENOMEM;
                }
        }
        *ret = TAKE_PTR(arr);
        return 0;
}

/* --- small bodies and errors ---------------------------------------------- */

static int check_fields(json_object *body, const char *const *known, char *err, size_t errlen)
{
        if (!json_object_is_type(body, json_type_object))
                return fail(err, errlen, "the request body must be a JSON object");
        json_object_object_foreach(body, key, val) {
                (void) val;
                bool ok = false;
                for (const char *const *k = known; *k && !ok; k++)
                        ok = streq(*k, key);
                if (!ok)
                        return fail(err, errlen, "unknown field \"%.64s\"", key);
        }
        return 0;
}

int gw_e2b_timeout_body_parse(json_object *body, uint64_t *ret_s, char *err, size_t errlen)
{
        static const char *const known[] = {"timeout", NULL};
        int r = check_fields(body, known, err, errlen);
        if (r < 0)
                return r;
        json_object *t = json_field(body, "timeout");
        if (!t)
                return fail(err, errlen, "timeout is required");
        return parse_timeout(t, "timeout", ret_s, err, errlen);
}

int gw_e2b_connect_body_parse(json_object *body, uint64_t *ret_s, char *err, size_t errlen)
{
        static const char *const known[] = {"timeout", "memory", NULL};
        if (!body) {
                *ret_s = 0;
                return 0;
        }
        int r = check_fields(body, known, err, errlen);
        bool memory = true;
        if (r == 0)
                r = parse_bool(json_field(body, "memory"), "memory", &memory, err, errlen);
        if (r < 0)
                return r;
        json_object *t = json_field(body, "timeout");
        uint64_t s = 0;
        if (!is_null(t) && (r = parse_timeout(t, "timeout", &s, err, errlen)) < 0)
                return r;
        *ret_s = s;
        return 0;
}

int gw_e2b_pause_body_parse(json_object *body, char *err, size_t errlen)
{
        static const char *const known[] = {"memory", NULL};
        if (!body)
                return 0;
        int r = check_fields(body, known, err, errlen);
        bool memory = true;
        if (r == 0)
                r = parse_bool(json_field(body, "memory"), "memory", &memory, err, errlen);
        return r;
}

int gw_e2b_error_new(unsigned status, const char *message, json_object **ret)
{
        cleanup_json json_object *o = json_object_new_object();
        if (!o || add_obj(o, "code", json_object_new_int((int) status)) < 0 ||
            add_str(o, "message", message ? message : "") < 0)
                return -ENOMEM;
        *ret = TAKE_PTR(o);
        return 0;
}

unsigned gw_e2b_status_from_errno(int r)
{
        switch (r < 0 ? -r : r) {
        case 0:
                return 200;
        case EINVAL:
        case EBADMSG:
                return 400;
        case ENOKEY:
                return 401;
        case EACCES:
        case EPERM:
                return 403;
        case ENOENT:
                return 404;
        case EEXIST:
        case EBUSY:
                return 409;
        case E2BIG:
        case EMSGSIZE:
                return 413;
        case EAGAIN:
                return 429;
        case EOPNOTSUPP:
        case ENOSYS:
                return 501;
        case ECONNREFUSED:
        case ESHUTDOWN:
                return 503;
        case ETIMEDOUT:
                return 504;
        case ENOSPC:
                return 507;
        default:
                return 500;
        }
}

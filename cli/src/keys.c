/* sandpit keys create|list|revoke (keys.h, docs/auth.md): the gateway's API
 * keys, in the agent's key file (local mode) or in a Secret of the operator's
 * namespace (cluster mode, --kubeconfig or --in-cluster). The key is printed
 * once, by create; the stores hold only its SHA-256. */
#include "keys.h"

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "sandpit/apikey.h"
#include "sandpit/json.h"
#include "sandpit/k8s-client.h"
#include "sandpit/k8s-config.h"
#include "sandpit/macro.h"
#include "sandpit/util.h"

static const char usage[] =
        "Usage: sandpit keys create --namespace NS [--name NAME] [--json]\n"
        "       sandpit keys list [--json]\n"
        "       sandpit keys revoke ID|NAME\n"
        "Where the keys are (default: the local agent's key file):\n"
        "      --state-dir DIR       the agent's --state-dir (default " CLI_KEYS_DEFAULT_STATE_DIR
        "):\n"
        "                            keys in DIR/" CLI_KEYS_FILE_NAME "\n"
        "      --key-file FILE       that file instead\n"
        "      --kubeconfig FILE     a cluster's keys: the Secret " CLI_KEYS_SECRET_NAME " in the\n"
        "                            operator's namespace\n"
        "      --in-cluster          the same from a pod's service account\n"
        "      --secret-namespace NS the operator's namespace (default " CLI_KEYS_SECRET_NAMESPACE
        ")\n";

typedef struct {
        const char *verb;
        const char *ns, *name, *state_dir, *key_file, *kubeconfig, *secret_ns, *target;
        bool in_cluster, json;
} KeysArgs;

enum {
        OPT_NAMESPACE = 0x100,
        OPT_NAME,
        OPT_STATE_DIR,
        OPT_KEY_FILE,
        OPT_KUBECONFIG,
        OPT_IN_CLUSTER,
        OPT_SECRET_NS,
        OPT_JSON,
};

static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int fail(const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        fputs("sandpit: keys: ", stderr);
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
        va_end(ap);
        return CLI_EXIT_FAILURE;
}

static int usage_error(const char *msg, const char *arg)
{
        fprintf(stderr, "sandpit: keys: %s%s%s (see 'sandpit keys --help')\n", msg, arg ? " " : "",
                arg ? arg : "");
        return CLI_EXIT_USAGE;
}

/* 0, CLI_EXIT_USAGE after saying why, or -1 for --help (printed). */
static int parse(int argc, char **argv, KeysArgs *a)
{
        static const struct option opts[] = {
                {"namespace", required_argument, NULL, OPT_NAMESPACE},
                {"name", required_argument, NULL, OPT_NAME},
                {"state-dir", required_argument, NULL, OPT_STATE_DIR},
                {"key-file", required_argument, NULL, OPT_KEY_FILE},
                {"kubeconfig", required_argument, NULL, OPT_KUBECONFIG},
                {"in-cluster", no_argument, NULL, OPT_IN_CLUSTER},
                {"secret-namespace", required_argument, NULL, OPT_SECRET_NS},
                {"json", no_argument, NULL, OPT_JSON},
                {"help", no_argument, NULL, 'h'},
                {0},
        };
        optind = 0; /* glibc: start over (main() ran getopt already) */
        opterr = 0;
        for (;;) {
                int c = getopt_long(argc, argv, ":h", opts, NULL);
                if (c == -1)
                        break;
                switch (c) {
                case 'h':
                        fputs(usage, stdout);
                        return -1;
                case OPT_NAMESPACE:
                        a->ns = optarg;
                        break;
                case OPT_NAME:
                        a->name = optarg;
                        break;
                case OPT_STATE_DIR:
                        a->state_dir = optarg;
                        break;
                case OPT_KEY_FILE:
                        a->key_file = optarg;
                        break;
                case OPT_KUBECONFIG:
                        a->kubeconfig = optarg;
                        break;
                case OPT_IN_CLUSTER:
                        a->in_cluster = true;
                        break;
                case OPT_SECRET_NS:
                        a->secret_ns = optarg;
                        break;
                case OPT_JSON:
                        a->json = true;
                        break;
                case ':':
                        return usage_error("option needs an argument:", argv[optind - 1]);
                default:
                        return usage_error("unknown option", argv[optind - 1]);
                }
        }
        if (optind >= argc)
                return usage_error("missing subcommand (create, list or revoke)", NULL);
        a->verb = argv[optind++];
        bool create = streq(a->verb, "create"), list = streq(a->verb, "list"),
             revoke = streq(a->verb, "revoke");
        if (!create && !list && !revoke)
                return usage_error("unknown subcommand", a->verb);
        if (revoke) {
                if (optind >= argc)
                        return usage_error("revoke needs the key's ID or NAME", NULL);
                a->target = argv[optind++];
        }
        if (optind < argc)
                return usage_error("unexpected argument", argv[optind]);
        if (create && !a->ns)
                return usage_error("create needs --namespace NS", NULL);
        if (!create && (a->ns || a->name))
                return usage_error("--namespace and --name are for create", NULL);
        if (a->ns && !apikey_namespace_valid(a->ns))
                return usage_error("invalid namespace (1-63 of a-z, 0-9 and '-', starting and "
                                   "ending with a letter or digit):",
                                   a->ns);
        if (a->name && !apikey_name_valid(a->name))
                return usage_error("invalid name (1-63 of A-Z, a-z, 0-9, '.', '_' and '-'):",
                                   a->name);
        bool cluster = a->kubeconfig || a->in_cluster;
        if (a->kubeconfig && a->in_cluster)
                return usage_error("--kubeconfig and --in-cluster exclude each other", NULL);
        if (cluster && (a->state_dir || a->key_file))
                return usage_error("--state-dir and --key-file are for the local key file", NULL);
        if (!cluster && a->secret_ns)
                return usage_error("--secret-namespace needs --kubeconfig or --in-cluster", NULL);
        if (a->state_dir && a->key_file)
                return usage_error("--state-dir and --key-file exclude each other", NULL);
        if (a->secret_ns && !apikey_namespace_valid(a->secret_ns))
                return usage_error("invalid --secret-namespace", a->secret_ns);
        return 0;
}

static int print_created(const KeysArgs *a, const ApiKey *k, const char *key)
{
        if (!a->json) {
                printf("%s\n", key);
                return 0;
        }
        cleanup_json json_object *o = NULL;
        if (apikey_record_to_json(k, &o) < 0 ||
            json_object_object_add(o, "key", json_object_new_string(key)) < 0)
                return fail("out of memory");
        json_object_object_del(o, "sha256");
        printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
                                                                 JSON_C_TO_STRING_NOSLASHESCAPE));
        return 0;
}

static int print_list(const KeysArgs *a, const ApiKeySet *s)
{
        if (a->json) {
                cleanup_json json_object *arr = json_object_new_array();
                for (size_t i = 0; arr && i < s->n; i++) {
                        json_object *o = NULL;
                        if (apikey_record_to_json(&s->keys[i], &o) < 0)
                                return fail("out of memory");
                        json_object_object_del(o, "sha256");
                        json_object_array_add(arr, o);
                }
                if (!arr)
                        return fail("out of memory");
                printf("%s\n",
                       json_object_to_json_string_ext(arr, JSON_C_TO_STRING_PLAIN |
                                                                   JSON_C_TO_STRING_NOSLASHESCAPE));
                return 0;
        }
        size_t n = (s->n + 1) * 4;
        cleanup_free const char **cells = calloc(n, sizeof(*cells));
        if (!cells)
                return fail("out of memory");
        cells[0] = "ID";
        cells[1] = "NAME";
        cells[2] = "NAMESPACE";
        cells[3] = "CREATED";
        for (size_t i = 0; i < s->n; i++) {
                cells[(i + 1) * 4] = s->keys[i].id;
                cells[(i + 1) * 4 + 1] = s->keys[i].name;
                cells[(i + 1) * 4 + 2] = s->keys[i].ns;
                cells[(i + 1) * 4 + 3] = s->keys[i].created;
        }
        return cli_print_table(stdout, cells, 4, s->n + 1) < 0 ? CLI_EXIT_FAILURE : 0;
}

/* ---- the local key file */

typedef struct {
        const KeysArgs *a;
        ApiKey rec;
        char key[APIKEY_LEN + 1];
        ApiKeySet copy; /* list */
} FileOp;

static int file_create(ApiKeySet *s, void *userdata)
{
        FileOp *op = userdata;
        if (op->a->name && apikey_set_find(s, op->a->name))
                return -EEXIST;
        int r = apikey_generate(op->a->ns, op->a->name, op->key, &op->rec);
        return r < 0 ? r : apikey_set_add(s, &op->rec);
}

static int file_revoke(ApiKeySet *s, void *userdata)
{
        FileOp *op = userdata;
        return apikey_set_remove(s, op->a->target, &op->rec);
}

static int run_file(const KeysArgs *a)
{
        cleanup_free char *path = NULL;
        if (a->key_file)
                path = strdup(a->key_file);
        else if (asprintf(&path, "%s/%s", a->state_dir ? a->state_dir : CLI_KEYS_DEFAULT_STATE_DIR,
                          CLI_KEYS_FILE_NAME) < 0)
                path = NULL;
        if (!path)
                return fail("out of memory");
        FileOp op = {.a = a};
        int r;
        if (streq(a->verb, "create")) {
                r = apikey_file_update(path, file_create, &op);
                if (r == -EEXIST)
                        return fail("a key named %s exists already", a->name);
                if (r < 0)
                        return fail("cannot write %s: %s", path, strerror(-r));
                r = print_created(a, &op.rec, op.key);
                explicit_bzero(op.key, sizeof(op.key));
                return r;
        }
        if (streq(a->verb, "revoke")) {
                r = apikey_file_update(path, file_revoke, &op);
                if (r == -ENOENT)
                        return fail("no key %s", a->target);
                if (r < 0)
                        return fail("cannot update %s: %s", path, strerror(-r));
                return 0;
        }
        ApiKeySet s = {0};
        r = apikey_file_load(path, &s);
        if (r == -EBADMSG)
                return fail("%s is not a key file", path);
        if (r < 0 && r != -ENOENT)
                return fail("cannot read %s: %s", path, strerror(-r));
        r = print_list(a, &s);
        apikey_set_done(&s);
        return r;
}

/* ---- the cluster's Secret */

static const K8sResource secrets = {"", "v1", "secrets", true};

static int k8s_fail(const char *what, int r, const K8sError *e)
{
        return fail("%s: %s%s%s", what, strerror(-r), e->message[0] ? ": " : "", e->message);
}

/* A merge patch {"data": {id: value}} (value NULL deletes the entry). */
static int patch_entry(K8sClient *c, const char *ns, const char *id, const char *value, K8sError *e)
{
        cleanup_json json_object *patch = json_object_new_object();
        json_object *data = json_object_new_object();
        if (!patch || !data || json_object_object_add(patch, "data", data) < 0) {
                json_object_put(data);
                return -ENOMEM;
        }
        if (json_object_object_add(data, id, value ? json_object_new_string(value) : NULL) < 0)
                return -ENOMEM;
        return k8s_patch(c, &secrets, ns, CLI_KEYS_SECRET_NAME, NULL, K8S_PATCH_MERGE, patch, NULL,
                         e);
}

/* The Secret with the key record id: b64 added: secret's own object (its
 * resourceVersion makes the PUT conditional), else a new Secret. */
static int secret_write(K8sClient *c, const char *ns, json_object *secret, const char *id,
                        const char *b64, K8sError *e)
{
        if (secret) {
                json_object *data = json_obj(secret, "data");
                if (!data) {
                        data = json_object_new_object();
                        if (!data || json_object_object_add(secret, "data", data) < 0) {
                                json_object_put(data);
                                return -ENOMEM;
                        }
                }
                if (json_object_object_add(data, id, json_object_new_string(b64)) < 0)
                        return -ENOMEM;
                return k8s_update(c, &secrets, secret, NULL, e);
        }
        cleanup_json json_object *obj = json_object_new_object();
        json_object *meta = json_object_new_object(), *data = json_object_new_object();
        if (!obj || !meta || !data) {
                json_object_put(meta);
                json_object_put(data);
                return -ENOMEM;
        }
        json_object_object_add(obj, "apiVersion", json_object_new_string("v1"));
        json_object_object_add(obj, "kind", json_object_new_string("Secret"));
        json_object_object_add(obj, "type", json_object_new_string("Opaque"));
        json_object_object_add(meta, "name", json_object_new_string(CLI_KEYS_SECRET_NAME));
        json_object_object_add(meta, "namespace", json_object_new_string(ns));
        json_object_object_add(obj, "metadata", meta);
        json_object_object_add(data, id, json_object_new_string(b64));
        json_object_object_add(obj, "data", data);
        return k8s_create(c, &secrets, ns, obj, NULL, e);
}

/* The Secret (*ret NULL when there is none) and its keys: 0, or the CLI's
 * exit status after saying why. */
static int secret_read(K8sClient *c, const char *ns, json_object **ret, ApiKeySet *s)
{
        K8sError e = {0};
        int r = k8s_get(c, &secrets, ns, CLI_KEYS_SECRET_NAME, ret, &e);
        if (r < 0 && r != -ENOENT)
                return k8s_fail("cannot read the Secret " CLI_KEYS_SECRET_NAME, r, &e);
        r = apikey_set_from_secret(*ret, s, NULL);
        if (r < 0)
                return fail("cannot read the Secret: %s", strerror(-r));
        return 0;
}

/* Reads the Secret, checks the name is free, writes it back with the new
 * record only if nobody wrote it meanwhile (its resourceVersion, or create
 * when there was none): of creates of one name run at once, one makes the
 * key and the others are told it exists; a write lost to another key's is
 * tried again on the new Secret. */
static int secret_create(K8sClient *c, const KeysArgs *a, const char *ns)
{
        for (int attempt = 0;; attempt++) {
                K8sError e = {0};
                cleanup_json json_object *secret = NULL;
                ApiKeySet s = {0};
                int r = secret_read(c, ns, &secret, &s);
                if (r != 0)
                        return r;
                bool taken = a->name && apikey_set_find(&s, a->name);
                apikey_set_done(&s);
                if (taken)
                        return fail("a key named %s exists already", a->name);
                ApiKey rec;
                char key[APIKEY_LEN + 1];
                r = apikey_generate(a->ns, a->name, key, &rec);
                if (r < 0)
                        return fail("cannot make a key: %s", strerror(-r));
                cleanup_json json_object *o = NULL;
                cleanup_free char *b64 = NULL;
                const char *text =
                        apikey_record_to_json(&rec, &o) < 0
                                ? NULL
                                : json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
                if (!text || base64_encode(text, strlen(text), &b64) < 0) {
                        explicit_bzero(key, sizeof(key));
                        return fail("out of memory");
                }
                r = secret_write(c, ns, secret, rec.id, b64, &e);
                if ((r == -EBUSY || r == -EEXIST) && attempt < CLI_KEYS_WRITE_ATTEMPTS) {
                        explicit_bzero(key, sizeof(key));
                        continue; /* written meanwhile: read it again */
                }
                if (r < 0) {
                        explicit_bzero(key, sizeof(key));
                        return k8s_fail("cannot write the Secret " CLI_KEYS_SECRET_NAME, r, &e);
                }
                r = print_created(a, &rec, key);
                explicit_bzero(key, sizeof(key));
                return r;
        }
}

static int run_secret(const KeysArgs *a)
{
        char errbuf[256] = "";
        K8sConfig *cfg = NULL;
        int r = a->in_cluster ? k8s_config_in_cluster(NULL, &cfg, errbuf, sizeof(errbuf))
                              : k8s_config_from_kubeconfig(a->kubeconfig, NULL, &cfg, errbuf,
                                                           sizeof(errbuf));
        if (r < 0)
                return fail("cannot load the Kubernetes configuration: %s",
                            errbuf[0] ? errbuf : strerror(-r));
        cleanup_k8s_client K8sClient *c = NULL;
        r = k8s_client_new(cfg, &c);
        if (r < 0)
                return fail("cannot make a Kubernetes client: %s", strerror(-r));
        const char *ns = a->secret_ns ? a->secret_ns : CLI_KEYS_SECRET_NAMESPACE;
        if (streq(a->verb, "create"))
                return secret_create(c, a, ns);
        K8sError e = {0};
        cleanup_json json_object *secret = NULL;
        ApiKeySet s = {0};
        r = secret_read(c, ns, &secret, &s);
        if (r != 0)
                return r;
        if (streq(a->verb, "list")) {
                r = print_list(a, &s);
                apikey_set_done(&s);
                return r;
        }
        const ApiKey *k = apikey_set_find(&s, a->target);
        char id[APIKEY_ID_LEN + 1] = "";
        if (k)
                snprintf(id, sizeof(id), "%s", k->id);
        apikey_set_done(&s);
        if (!id[0])
                return fail("no key %s", a->target);
        r = patch_entry(c, ns, id, NULL, &e);
        if (r < 0)
                return k8s_fail("cannot update the Secret " CLI_KEYS_SECRET_NAME, r, &e);
        return 0;
}

int cli_keys_main(int argc, char **argv)
{
        KeysArgs a = {0};
        int r = parse(argc, argv, &a);
        if (r < 0)
                return 0;
        if (r > 0)
                return r;
        return a.kubeconfig || a.in_cluster ? run_secret(&a) : run_file(&a);
}

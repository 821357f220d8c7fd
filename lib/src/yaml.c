#include "sandpit/yaml.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>
#include <yaml.h>

#include "sandpit/macro.h"

typedef struct {
        yaml_document_t *doc;
        size_t nodes; /* visited, aliases counted each time they expand */
} Converter;

static bool plain_is(const char *s, const char *const *words, size_t n)
{
        for (size_t i = 0; i < n; i++)
                if (streq(s, words[i]))
                        return true;
        return false;
}

/* YAML 1.2 core schema integers and floats, decimal only. */
static json_object *plain_number(const char *s)
{
        if (s[0] == '\0' || strspn(s, "0123456789+-.eE") != strlen(s))
                return NULL;
        char *end = NULL;
        errno = 0;
        long long i = strtoll(s, &end, 10);
        if (*end == '\0' && errno == 0)
                return json_object_new_int64(i);
        errno = 0;
        double d = strtod(s, &end);
        if (*end == '\0' && errno == 0 && strpbrk(s, "0123456789"))
                return json_object_new_double(d);
        return NULL;
}

static int scalar_to_json(const yaml_node_t *n, json_object **ret)
{
        const char *s = (const char *) n->data.scalar.value;
        static const char *const nulls[] = {"", "~", "null", "Null", "NULL"};
        static const char *const trues[] = {"true", "True", "TRUE"};
        static const char *const falses[] = {"false", "False", "FALSE"};
        json_object *o = NULL;

        if (n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE) {
                if (plain_is(s, nulls, ARRAY_SIZE(nulls))) {
                        *ret = NULL;
                        return 0;
                }
                if (plain_is(s, trues, ARRAY_SIZE(trues)))
                        o = json_object_new_boolean(1);
                else if (plain_is(s, falses, ARRAY_SIZE(falses)))
                        o = json_object_new_boolean(0);
                else
                        o = plain_number(s);
        }
        if (!o)
                o = json_object_new_string_len(s, (int) n->data.scalar.length);
        if (!o)
                return -ENOMEM;
        *ret = o;
        return 0;
}

static int node_to_json(Converter *cv, yaml_node_t *n, unsigned depth, json_object **ret)
{
        if (!n || depth > YAML_DEPTH_MAX)
                return -EINVAL;
        if (++cv->nodes > YAML_NODES_MAX)
                return -E2BIG;
        if (n->type == YAML_SCALAR_NODE)
                return scalar_to_json(n, ret);

        json_object *o = n->type == YAML_MAPPING_NODE    ? json_object_new_object()
                         : n->type == YAML_SEQUENCE_NODE ? json_object_new_array()
                                                         : NULL;
        if (!o)
                return n->type == YAML_NO_NODE ? -EINVAL : -ENOMEM;

        int r = 0;
        if (n->type == YAML_SEQUENCE_NODE) {
                for (yaml_node_item_t *it = n->data.sequence.items.start;
                     it < n->data.sequence.items.top; it++) {
                        json_object *v = NULL;
                        r = node_to_json(cv, yaml_document_get_node(cv->doc, *it), depth + 1, &v);
                        if (r < 0)
                                break;
                        if (json_object_array_add(o, v) < 0) {
                                json_object_put(v);
                                r = -ENOMEM;
                                break;
                        }
                }
        } else {
                for (yaml_node_pair_t *p = n->data.mapping.pairs.start;
                     p < n->data.mapping.pairs.top; p++) {
                        yaml_node_t *k = yaml_document_get_node(cv->doc, p->key);
                        json_object *v = NULL;
                        if (!k || k->type != YAML_SCALAR_NODE) {
                                r = -EINVAL;
                                break;
                        }
                        r = node_to_json(cv, yaml_document_get_node(cv->doc, p->value), depth + 1,
                                         &v);
                        if (r < 0)
                                break;
                        if (json_object_object_add(o, (const char *) k->data.scalar.value, v) < 0) {
                                json_object_put(v);
                                r = -ENOMEM;
                                break;
                        }
                }
        }
        if (r < 0) {
                json_object_put(o);
                return r;
        }
        *ret = o;
        return 0;
}

int yaml_to_json(const char *data, size_t len, json_object **ret)
{
        yaml_parser_t parser;
        yaml_document_t doc;

        if (!data || !ret)
                return -EINVAL;
        if (!yaml_parser_initialize(&parser))
                return -ENOMEM;
        yaml_parser_set_input_string(&parser, (const unsigned char *) data, len);
        if (!yaml_parser_load(&parser, &doc)) {
                yaml_parser_delete(&parser);
                return parser.error == YAML_MEMORY_ERROR ? -ENOMEM : -EINVAL;
        }

        int r;
        yaml_node_t *root = yaml_document_get_root_node(&doc);
        if (!root) {
                r = -ENODATA;
        } else {
                Converter cv = {.doc = &doc};
                json_object *o = NULL;
                r = node_to_json(&cv, root, 0, &o);
                if (r >= 0)
                        *ret = o;
        }
        yaml_document_delete(&doc);
        yaml_parser_delete(&parser);
        return r;
}

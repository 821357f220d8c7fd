/* YAML to json-c, for kubeconfigs and manifests (libyaml's document loader).
 *
 * Plain scalars follow the YAML 1.2 core schema: null/~/empty, true/false,
 * decimal integers and floats become JSON null, booleans and numbers; quoted
 * scalars stay strings. Mapping keys must be scalars. Aliases are expanded,
 * bounded by YAML_NODES_MAX nodes so an alias bomb is refused (-E2BIG). */
#pragma once

#include <stddef.h>

#include <json-c/json.h>

#define YAML_NODES_MAX 1000000
#define YAML_DEPTH_MAX 128

/* The first document of data. An empty stream is -ENODATA; a syntax error,
 * a non-scalar key or nesting beyond YAML_DEPTH_MAX is -EINVAL. */
int yaml_to_json(const char *data, size_t len, json_object **ret);

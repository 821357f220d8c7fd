/* Parsing of resource quantities in the forms Kubernetes users know. */
#pragma once

#include <stdint.h>

#include <json-c/json.h>

/* Bytes: a JSON integer, or a string "123", "512Mi", "1Gi", "2k", "1.5G". */
int quantity_parse_bytes(const char *s, uint64_t *ret);
int quantity_bytes_from_json(json_object *v, uint64_t *ret);
/* CPU cores: a JSON number, or a string "1.5" or "500m". */
int quantity_parse_cpu(const char *s, double *ret);
int quantity_cpu_from_json(json_object *v, double *ret);

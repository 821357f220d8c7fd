/* Parsing of resource quantities in the forms Kubernetes users know. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

/* Bytes: a JSON integer, or a string "123", "512Mi", "1Gi", "2k", "1.5G". */
int quantity_parse_bytes(const char *s, uint64_t *ret);
int quantity_bytes_from_json(json_object *v, uint64_t *ret);
/* CPU cores: a JSON number, or a string "1.5" or "500m". */
int quantity_parse_cpu(const char *s, double *ret);
int quantity_cpu_from_json(json_object *v, double *ret);

/* Canonical Kubernetes quantity text: bytes with the largest binary suffix
 * that divides them ("128Mi", "1000"); cores as a whole number or millicores
 * ("2", "500m"). buf of 32 bytes always suffices. */
void quantity_format_bytes(uint64_t bytes, char *buf, size_t len);
void quantity_format_cpu(double cores, char *buf, size_t len);

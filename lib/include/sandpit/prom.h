/* Prometheus text exposition (format 0.0.4) helpers shared by the agent's and
 * the operator's /metrics: a fixed-bucket histogram and writers for HELP/TYPE
 * headers and samples. Not thread-safe: callers keep a histogram behind
 * their own lock and render a copy. */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define PROM_MAX_BUCKETS 16

typedef struct {
        const double *bounds;               /* upper bounds, ascending; +Inf is implied */
        size_t n_bounds;                    /* <= PROM_MAX_BUCKETS */
        uint64_t buckets[PROM_MAX_BUCKETS]; /* per bucket, not cumulative */
        uint64_t count;
        double sum;
} PromHistogram;

/* bounds is borrowed (usually a static array); extra bounds are ignored. */
void prom_histogram_init(PromHistogram *h, const double *bounds, size_t n_bounds);
void prom_histogram_observe(PromHistogram *h, double v);

/* "# HELP name help\n# TYPE name type\n" */
void prom_write_header(FILE *f, const char *name, const char *type, const char *help);
/* One sample line; labels is the text inside {} (NULL or "" for none). */
void prom_write_sample(FILE *f, const char *name, const char *labels, double v);
/* Header plus one unlabelled sample. */
void prom_write_metric(FILE *f, const char *name, const char *type, const char *help, double v);
/* Header, cumulative _bucket lines with le (and +Inf == count), _sum, _count. */
void prom_write_histogram(FILE *f, const char *name, const char *help, const PromHistogram *h);

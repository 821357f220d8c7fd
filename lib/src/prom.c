/* Prometheus text exposition helpers (see prom.h). */
#include "sandpit/prom.h"

#include <math.h>
#include <stdbool.h>

void prom_histogram_init(PromHistogram *h, const double *bounds, size_t n_bounds)
{
        *h = (PromHistogram){
                .bounds = bounds,
                .n_bounds = n_bounds < PROM_MAX_BUCKETS ? n_bounds : PROM_MAX_BUCKETS,
        };
}

void prom_histogram_observe(PromHistogram *h, double v)
{
        h->count++;
        h->sum += v;
        for (size_t i = 0; i < h->n_bounds; i++)
                if (v <= h->bounds[i]) {
                        h->buckets[i]++;
                        return;
                }
}

void prom_write_header(FILE *f, const char *name, const char *type, const char *help)
{
        (void) fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void prom_write_sample(FILE *f, const char *name, const char *labels, double v)
{
        bool has = labels && *labels;
        (void) fprintf(f, "%s%s%s%s ", name, has ? "{" : "", has ? labels : "", has ? "}" : "");
        /* Whole numbers (counts) exactly, others with a double's precision. */
        if (v == floor(v) && fabs(v) < 9.007199254740992e15)
                (void) fprintf(f, "%.0f\n", v);
        else
                (void) fprintf(f, "%.17g\n", v);
}

void prom_write_metric(FILE *f, const char *name, const char *type, const char *help, double v)
{
        prom_write_header(f, name, type, help);
        prom_write_sample(f, name, NULL, v);
}

void prom_write_histogram(FILE *f, const char *name, const char *help, const PromHistogram *h)
{
        prom_write_header(f, name, "histogram", help);
        uint64_t cum = 0;
        for (size_t i = 0; i < h->n_bounds; i++) {
                cum += h->buckets[i];
                (void) fprintf(f, "%s_bucket{le=\"%g\"} %llu\n", name, h->bounds[i],
                               (unsigned long long) cum);
        }
        (void) fprintf(f, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n", name,
                       (unsigned long long) h->count, name, h->sum, name,
                       (unsigned long long) h->count);
}

/* stats.h -- the one list of counters, shared by /stats (JSON), /metrics (Prometheus) and
 * uidcast.stats() in Lua, so the three never disagree on names. */
#ifndef UC_STATS_H
#define UC_STATS_H

#include <stddef.h>

#include "server.h"

struct uc_stat_field {
    const char *name; /* JSON and Lua key; Prometheus name is uidcast_<name>[_total] */
    const char *help; /* one line for # HELP */
    int counter;      /* 1: only grows (Prometheus counter, _total); 0: gauge */
    size_t offset;    /* of a uint64_t in struct uc_stats */
};

extern const struct uc_stat_field uc_stat_fields[];
extern const size_t uc_stat_field_count;

static inline unsigned long long uc_stat_value(const struct uc_stats *s,
                                               const struct uc_stat_field *f)
{
    return (unsigned long long)*(const uint64_t *)((const char *)s + f->offset);
}

#endif

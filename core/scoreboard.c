/* scoreboard.c -- shared counters of the --workers processes (see scoreboard.h). Every value is
 * written and read with relaxed atomics: a reader may see one worker's counters from one tick
 * and another's from the next, never a torn number. */
#include "scoreboard.h"

#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#include "stats.h"

#define MAX_STAT_FIELDS 48

struct slot {
    pid_t pid; /* 0: no worker */
    uint64_t values[MAX_STAT_FIELDS];
};

struct uc_scoreboard {
    size_t size;
    unsigned n;
    uint64_t retired[MAX_STAT_FIELDS];
    struct slot slots[];
};

struct uc_scoreboard *uc_scoreboard_new(unsigned n)
{
    _Static_assert(sizeof(struct uc_stats) / sizeof(uint64_t) <= MAX_STAT_FIELDS,
                   "a slot holds every counter");
    size_t size = sizeof(struct uc_scoreboard) + n * sizeof(struct slot);
    struct uc_scoreboard *sb =
        mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sb == MAP_FAILED)
        return NULL;
    memset(sb, 0, size);
    sb->size = size;
    sb->n = n;
    return sb;
}

void uc_scoreboard_free(struct uc_scoreboard *sb)
{
    if (sb)
        munmap(sb, sb->size);
}

void uc_scoreboard_publish(struct uc_scoreboard *sb, unsigned slot, pid_t pid,
                           const struct uc_stats *s)
{
    struct slot *sl = &sb->slots[slot];
    for (size_t i = 0; i < uc_stat_field_count; i++)
        __atomic_store_n(&sl->values[i], uc_stat_value(s, &uc_stat_fields[i]), __ATOMIC_RELAXED);
    __atomic_store_n(&sl->pid, pid, __ATOMIC_RELAXED);
}

void uc_scoreboard_retire(struct uc_scoreboard *sb, unsigned slot)
{
    struct slot *sl = &sb->slots[slot];
    __atomic_store_n(&sl->pid, 0, __ATOMIC_RELAXED);
    for (size_t i = 0; i < uc_stat_field_count; i++) {
        uint64_t v = __atomic_exchange_n(&sl->values[i], 0, __ATOMIC_RELAXED);
        if (uc_stat_fields[i].counter)
            __atomic_fetch_add(&sb->retired[i], v, __ATOMIC_RELAXED);
    }
}

unsigned uc_scoreboard_sum(const struct uc_scoreboard *sb, struct uc_stats *out,
                           struct uc_process_stats *proc)
{
    unsigned live = 0;
    uint64_t totals[MAX_STAT_FIELDS];
    for (size_t i = 0; i < uc_stat_field_count; i++)
        totals[i] = __atomic_load_n(&sb->retired[i], __ATOMIC_RELAXED);
    for (unsigned w = 0; w < sb->n; w++) {
        const struct slot *sl = &sb->slots[w];
        pid_t pid = __atomic_load_n(&sl->pid, __ATOMIC_RELAXED);
        for (size_t i = 0; i < uc_stat_field_count; i++)
            totals[i] += __atomic_load_n(&sl->values[i], __ATOMIC_RELAXED);
        struct uc_process_stats p;
        if (pid && uc_procstat_read(pid, &p) == 0) {
            uc_procstat_add(proc, &p);
            live++;
        }
    }
    for (size_t i = 0; i < uc_stat_field_count; i++)
        *(uint64_t *)((char *)out + uc_stat_fields[i].offset) = totals[i];
    return live;
}

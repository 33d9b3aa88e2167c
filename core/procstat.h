/* procstat.h -- what the kernel says about a process (/proc/PID), for the process_* metrics
 * that Prometheus exporters conventionally expose. */
#ifndef UC_PROCSTAT_H
#define UC_PROCSTAT_H

#include <stdint.h>
#include <sys/types.h>

struct uc_process_stats {
    double cpu_seconds;      /* user + system CPU time */
    double start_time;       /* seconds since the Unix epoch */
    uint64_t resident_bytes; /* resident set size */
    uint64_t virtual_bytes;
    uint64_t open_fds;
    uint64_t max_fds; /* the soft RLIMIT_NOFILE */
};

/* Reads pid's figures. Returns 0, or UC_ERR_SYS when /proc cannot tell (the process is gone). */
int uc_procstat_read(pid_t pid, struct uc_process_stats *out);

/* Adds b into a: sums, except start_time (the earliest) and max_fds (the largest). */
void uc_procstat_add(struct uc_process_stats *a, const struct uc_process_stats *b);

#endif

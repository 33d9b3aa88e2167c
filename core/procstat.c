/* procstat.c -- a process's CPU time, memory, descriptors and start time from /proc. */
#include "procstat.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "err.h"

/* Copies the first line of path that starts with prefix into line (cap bytes): 1, or 0. */
static int find_line(const char *path, const char *prefix, char *line, int cap)
{
    FILE *f = fopen(path, "r");
    int found = 0;
    while (f && !found && fgets(line, cap, f))
        found = strncmp(line, prefix, strlen(prefix)) == 0;
    if (f)
        fclose(f);
    return found;
}

/* The system's boot time (btime in /proc/stat): /proc/PID/stat gives start time since boot. */
static double boot_time(void)
{
    static double btime = -1;
    char line[256];
    if (btime < 0 && !(find_line("/proc/stat", "btime ", line, sizeof line) &&
                       sscanf(line, "btime %lf", &btime) == 1))
        btime = 0;
    return btime;
}

static uint64_t count_fds(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
    DIR *d = opendir(path);
    if (!d)
        return 0;
    uint64_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n > 0 ? n - (pid == getpid()) : 0; /* not counting the one opendir holds */
}

static uint64_t max_fds(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/limits", (int)pid);
    unsigned long long soft = 0;
    if (find_line(path, "Max open files", line, sizeof line))
        sscanf(line, "Max open files %llu", &soft);
    return soft;
}

int uc_procstat_read(pid_t pid, struct uc_process_stats *out)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return UC_ERR_SYS;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* The command name (field 2) may hold spaces and parentheses: fields resume after the
     * last ')'. Then: state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
     * utime stime cutime cstime priority nice threads itrealvalue starttime vsize rss. */
    const char *p = strrchr(buf, ')');
    unsigned long long utime, stime, start, vsize;
    long long rss;
    if (!p || sscanf(p + 2,
                     "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d %*d "
                     "%*d %*d %llu %llu %lld",
                     &utime, &stime, &start, &vsize, &rss) != 5)
        return UC_ERR_SYS;
    double ticks = (double)sysconf(_SC_CLK_TCK);
    *out = (struct uc_process_stats){
        .cpu_seconds = (double)(utime + stime) / ticks,
        .start_time = boot_time() + (double)start / ticks,
        .resident_bytes = (uint64_t)(rss > 0 ? rss : 0) * (uint64_t)sysconf(_SC_PAGESIZE),
        .virtual_bytes = vsize,
        .open_fds = count_fds(pid),
        .max_fds = max_fds(pid),
    };
    return 0;
}

void uc_procstat_add(struct uc_process_stats *a, const struct uc_process_stats *b)
{
    a->cpu_seconds += b->cpu_seconds;
    if (!a->start_time || (b->start_time && b->start_time < a->start_time))
        a->start_time = b->start_time;
    a->resident_bytes += b->resident_bytes;
    a->virtual_bytes += b->virtual_bytes;
    a->open_fds += b->open_fds;
    if (b->max_fds > a->max_fds)
        a->max_fds = b->max_fds;
}

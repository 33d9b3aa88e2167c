/* log.c -- leveled logging to stderr with a UTC timestamp, one line per call. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

enum uc_log_level uc_log_threshold = UC_LOG_INFO;
void (*uc_log_sink)(const char *line, size_t len);

static const char *const level_names[] = {"error", "warn", "info", "debug"};

int uc_log_parse_level(const char *name, enum uc_log_level *out)
{
    for (size_t i = 0; i < sizeof level_names / sizeof level_names[0]; i++) {
        if (strcmp(name, level_names[i]) == 0) {
            *out = (enum uc_log_level)i;
            return 0;
        }
    }
    return -1;
}

void uc_log(enum uc_log_level level, const char *fmt, ...)
{
    if (!uc_log_enabled(level))
        return;
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);

    /* One buffer and one write so that lines from several workers never interleave. */
    char line[2048];
    int n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ [%d] %-5s ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     (int)(tv.tv_usec / 1000), (int)getpid(), level_names[level]);
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof line - 2)
        len = sizeof line - 2;
    line[len++] = '\n';
    if (uc_log_sink) {
        uc_log_sink(line, len);
        return;
    }
    ssize_t ignored = write(STDERR_FILENO, line, len);
    (void)ignored;
}

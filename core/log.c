/* log.c -- leveled logging to stderr with a UTC timestamp, one line per call. */
#include "log.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "utf8.h"

enum uc_log_level uc_log_threshold = UC_LOG_INFO;
void (*uc_log_sink)(const char *line, size_t len);
int uc_log_json;

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

/* "core/broker.c" -> "broker": the event of a line that names none. */
static void source_name(const char *source, char *out, size_t cap)
{
    const char *base = strrchr(source, '/');
    base = base ? base + 1 : source;
    size_t n = strcspn(base, ".");
    snprintf(out, cap, "%.*s", (int)n, base);
}

void uc_log_at(enum uc_log_level level, const char *source, const char *event,
               struct json_t *fields, const char *fmt, ...)
{
    if (!uc_log_enabled(level)) {
        json_decref(fields);
        return;
    }
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);

    char stamp[96]; /* room for any int the compiler imagines in each field */
    snprintf(stamp, sizeof stamp, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(tv.tv_usec / 1000));
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    size_t msg_len = m < 0 ? 0 : (size_t)m < sizeof msg ? (size_t)m : sizeof msg - 1;

    /* One buffer and one write so that lines from several workers never interleave. */
    char line[2048 * 6 + 128];
    size_t len;
    if (uc_log_json) {
        char from[64];
        if (!event)
            source_name(source, from, sizeof from);
        len = (size_t)snprintf(line, sizeof line,
                               "{\"time\":\"%s\",\"level\":\"%s\",\"pid\":%d,\"event\":\"%s\","
                               "\"msg\":\"",
                               stamp, level_names[level], (int)getpid(), event ? event : from);
        len += uc_json_escape(line + len, sizeof line - len - 4096, msg, msg_len);
        line[len++] = '"';
        if (fields) {
            static const char key[] = ",\"fields\":";
            size_t room = sizeof line - len - sizeof key - 2;
            size_t n = json_dumpb(fields, line + len + sizeof key - 1, room, JSON_COMPACT);
            if (n && n <= room) {
                memcpy(line + len, key, sizeof key - 1);
                len += sizeof key - 1 + n;
            }
        }
        line[len++] = '}';
    } else {
        len = (size_t)snprintf(line, sizeof line, "%s [%d] %-5s %.*s", stamp, (int)getpid(),
                               level_names[level], (int)msg_len, msg);
        if (len > sizeof line - 2)
            len = sizeof line - 2;
    }
    line[len++] = '\n';
    if (uc_log_sink)
        uc_log_sink(line, len);
    else {
        ssize_t ignored = write(STDERR_FILENO, line, len);
        (void)ignored;
    }
    json_decref(fields);
}

/* log.h -- leveled logging to stderr; the only place the core writes diagnostics. */
#ifndef UC_LOG_H
#define UC_LOG_H

#include <stddef.h>

enum uc_log_level { UC_LOG_ERROR, UC_LOG_WARN, UC_LOG_INFO, UC_LOG_DEBUG };

/* Messages above this level are dropped before formatting. */
extern enum uc_log_level uc_log_threshold;

/* 1: one JSON object per line instead of text (--log-format json), for log shippers:
 * {"time":...,"level":...,"pid":...,"event":...,"msg":...[,"fields":{...}]}. */
extern int uc_log_json;

/* Parses "error", "warn", "info" or "debug"; returns 0, or -1 for anything else. */
int uc_log_parse_level(const char *name, enum uc_log_level *out);

struct json_t;

/* One line at level. event names what happened, a stable dotted name ("cluster.connected");
 * NULL names the file it came from (source, __FILE__: "core/broker.c" -> "broker"). fields,
 * a JSON object the call takes (may be NULL), carries its data to JSON lines; text lines are
 * the sentence fmt makes. */
void uc_log_at(enum uc_log_level level, const char *source, const char *event,
               struct json_t *fields, const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Where lines go instead of stderr when set (a test harness collects them); line is borrowed
 * and ends with a newline. */
extern void (*uc_log_sink)(const char *line, size_t len);

#define uc_log_enabled(level) ((level) <= uc_log_threshold)
#define uc_log(level, ...) uc_log_at(level, __FILE__, NULL, NULL, __VA_ARGS__)
#define uc_error(...) uc_log(UC_LOG_ERROR, __VA_ARGS__)
#define uc_warn(...) uc_log(UC_LOG_WARN, __VA_ARGS__)
#define uc_info(...) uc_log(UC_LOG_INFO, __VA_ARGS__)
#define uc_debug(...)                                                                              \
    do {                                                                                           \
        if (uc_log_enabled(UC_LOG_DEBUG))                                                          \
            uc_log(UC_LOG_DEBUG, __VA_ARGS__);                                                     \
    } while (0)
/* A named event with its fields (built only when the level is on). */
#define uc_log_event(level, event, fields, ...)                                                    \
    do {                                                                                           \
        if (uc_log_enabled(level))                                                                 \
            uc_log_at(level, __FILE__, event, fields, __VA_ARGS__);                                \
    } while (0)

#endif

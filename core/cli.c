/* cli.c -- the command line as one table: a row per option gives its name, how its value is
 * read and bounded, where it goes, its default and its help. Parsing, defaults, the checks and
 * the --help text all come from the rows, so they cannot disagree (and a spec holds the
 * README's option table to the same rows). */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ini.h>

#include "net.h"
#include "redis_url.h"

/* Where an installed uidcast reads its options when no --config is given and the file exists
 * (make install and the Debian package define UC_DEFAULT_CONFIG); a build run from the source
 * tree reads none unless told. */
#ifdef UC_DEFAULT_CONFIG
#define UC_DEFAULT_CONFIG_HELP UC_DEFAULT_CONFIG
#define UC_CONFIG_FILES UC_DEFAULT_CONFIG " (options, read when present), SCRIPT."
#else
#define UC_DEFAULT_CONFIG_HELP NULL
#define UC_CONFIG_FILES "the --config FILE (options), SCRIPT."
#endif

enum kind {
    K_HOSTPORT,        /* HOST:PORT into a char array */
    K_HOSTPORT_OR_OFF, /* the same, or "off" */
    K_REDIS_URL,       /* redis:// or sentinel:// URLs (repeatable; the broker parses them) */
    K_TEXT,            /* any text */
    K_NONEMPTY,        /* any text but the empty one */
    K_BYTES,           /* a byte count, suffixes k, m, g (powers of 1024), into a size_t */
    K_SECONDS,         /* seconds, a positive number, into a double */
    K_COUNT,           /* a whole number into an unsigned */
    K_LEVEL,           /* error, warn, info or debug */
    K_LOG_FORMAT,      /* text or json, into an int (1: json) */
    K_TOKEN_FILE,      /* a file whose first line is a secret (the push token, the webhook's) */
    K_HTTP_URL,        /* an http:// or https:// URL */
    K_ORIGIN,          /* one more allowed Origin (repeatable) */
    K_FLAG,            /* no value: sets an int to 1 */
    K_CONFIG,          /* the config file: read before the other options (see uc_cli_parse) */
    K_HELP,
    K_VERSION,
};

struct row {
    const char *name; /* the long option, without "--" */
    char short_name;  /* or 0 */
    enum kind kind;
    size_t offset;    /* of the field in struct uc_cli */
    size_t size;      /* of a char array field */
    double min, max;  /* bounds of numbers (max 0: none) */
    const char *arg;  /* what --help calls the value */
    const char *def;  /* the default as written on the command line, or NULL */
    const char *help; /* lines separated by '\n' */
};

#define AT(field) offsetof(struct uc_cli, field), sizeof(((struct uc_cli *)0)->field)

static const struct row rows[] = {
    {"listen", 'l', K_HOSTPORT, AT(opt.listen), 0, 0, "HOST:PORT", "127.0.0.1:1234",
     "WebSocket listener ([::1]:PORT for IPv6; port 0 picks a\nfree port and logs it)"},
    {"redis", 0, K_REDIS_URL, 0, 0, 0, 0, "URL", NULL,
     "cluster mode: deliveries reach every node on this Redis;\n"
     "URL is redis://[[USER]:PASSWORD@]HOST[:PORT][/DB] or\n"
     "sentinel://[[USER]:PASSWORD@]HOST[:PORT][,...]/MASTER[/DB];\n"
     "repeat it (or list URLs separated by spaces) to shard\n"
     "the cluster over several Redis, the same list on every node"},
    {"redis-timeout", 0, K_SECONDS, AT(opt.redis_timeout), 0.05, 0, "S", "1",
     "cluster mode: a Redis that does not answer within S\nseconds is treated as down"},
    {"redis-max-pending", 0, K_BYTES, AT(opt.redis_max_pending), 64 * 1024, 0, "BYTES", "4m",
     "cluster mode: publications waiting for Redis beyond this\nare dropped and counted"},
    {"presence-ttl", 0, K_SECONDS, AT(opt.presence_ttl), 1, 0, "S", "15",
     "cluster mode: a node that stops heart-beating is offline\nfor the others after S seconds"},
    {"offline-grace", 0, K_SECONDS, AT(opt.offline_grace), 0, 0, "S", "5",
     "a uid whose last connection closed is offline (on_offline,\n"
     "webhook) only when none came back within S seconds"},
    {"workers", 0, K_COUNT, AT(opt.workers), 1, 256, "N", "1",
     "N processes share the listeners (SO_REUSEPORT); a\n"
     "supervisor restarts any that dies; N > 1 needs --redis"},
    {"push", 0, K_HOSTPORT_OR_OFF, AT(opt.push), 0, 0, "HOST:PORT|off", "127.0.0.1:1235",
     "HTTP push API, or off"},
    {"push-token", 0, K_NONEMPTY, AT(opt.push_token), 0, 0, "TOKEN", NULL,
     "require \"Authorization: Bearer TOKEN\" on the push API\n"
     "(default: env UIDCAST_PUSH_TOKEN, else none)"},
    {"push-token-file", 0, K_TOKEN_FILE, AT(opt.push_token), 0, 0, "FILE", NULL,
     "read the push token from FILE's first line, so it stays out\nof the command line"},
    {"push-timeout", 0, K_SECONDS, AT(opt.push_timeout), 0, 0, "S", "30",
     "seconds a push connection may idle"},
    {"www", 0, K_NONEMPTY, AT(opt.www), 0, 0, "DIR", NULL,
     "serve DIR's files (the client library, the demo page) to\nplain GETs on the WebSocket port"},
    {"max-message", 0, K_BYTES, AT(opt.max_message), 1, 1 << 30, "BYTES", "1m",
     "largest message accepted; larger closes with 1009\n(suffixes k, m, g)"},
    {"max-send-buffer", 0, K_BYTES, AT(opt.max_send_buffer), 1024, 0, "BYTES", "4m",
     "memory queued for one connection before a slow reader is\nclosed"},
    {"max-connections", 0, K_COUNT, AT(opt.max_connections), 0, 0, "N", "0",
     "refuse sockets beyond N with HTTP 503 (0: no limit)"},
    {"max-groups-per-connection", 0, K_COUNT, AT(opt.max_groups_per_connection), 1, 0, "N", "1024",
     "groups one connection may be in"},
    {"handshake-timeout", 0, K_SECONDS, AT(opt.handshake_timeout), 0, 0, "S", "10",
     "seconds to complete the HTTP upgrade"},
    {"ping-interval", 0, K_SECONDS, AT(opt.ping_interval), 0, 0, "S", "25",
     "ping a client silent for S seconds"},
    {"idle-timeout", 0, K_SECONDS, AT(opt.idle_timeout), 0, 0, "S", "60",
     "close (1001) a client silent for S seconds, pongs included"},
    {"max-fragments", 0, K_COUNT, AT(opt.max_fragments), 1, 0, "N", "1024",
     "empty fragments one message may have beyond one per\npayload byte; more closes with 1008"},
    {"message-timeout", 0, K_SECONDS, AT(opt.message_timeout), 0, 0, "S", "30",
     "seconds a message may stay unfinished; then 1008"},
    {"allow-origin", 0, K_ORIGIN, 0, 0, 0, 0, "ORIGIN", NULL,
     "accept browsers only from ORIGIN (repeatable; others get\n403); default: any origin"},
    {"close-timeout", 0, K_SECONDS, AT(opt.close_timeout), 0, 0, "S", "2",
     "seconds to wait for a peer to finish closing"},
    {"drain-timeout", 0, K_SECONDS, AT(opt.drain_timeout), 0, 0, "S", "2",
     "seconds SIGTERM waits for connections to close"},
    {"mailbox-max-messages", 0, K_COUNT, AT(mailbox_max_messages), 1, 0, "N", "1000",
     "kept messages one uid may have; the oldest go first"},
    {"mailbox-max-bytes", 0, K_BYTES, AT(mailbox_max_bytes), 1, 0, "BYTES", "1m",
     "payload bytes of kept messages one uid may have; the\noldest go first"},
    {"mailbox-memory", 0, K_BYTES, AT(mailbox_memory), 64 * 1024, 0, "BYTES", "64m",
     "memory every kept message together may take; the oldest\ngo first"},
    {"webhook", 0, K_HTTP_URL, AT(webhook), 0, 0, "URL", NULL,
     "POST each online/offline event and undelivered kept message\n"
     "to URL as JSON, signed with the webhook secret"},
    {"webhook-secret-file", 0, K_TOKEN_FILE, AT(webhook_secret), 0, 0, "FILE", NULL,
     "the HMAC-SHA256 key of the X-Uidcast-Signature header, from\n"
     "FILE's first line (default: env UIDCAST_WEBHOOK_SECRET)"},
    {"webhook-timeout", 0, K_SECONDS, AT(webhook_timeout), 0.1, 0, "S", "5",
     "an attempt the receiver has not answered in S seconds fails"},
    {"webhook-retry-for", 0, K_SECONDS, AT(webhook_retry_for), 0, 0, "S", "60",
     "a failed event is retried with back-off for S seconds, then\n"
     "given up (counted in webhook_failed)"},
    {"lua-memory", 0, K_BYTES, AT(lua_memory), 1024 * 1024, 0, "BYTES", "256m",
     "memory the Lua state may use"},
    {"lua-budget", 0, K_COUNT, AT(lua_budget), 10000, 0, "N", "5000000",
     "VM instructions one handler call may run before it is\naborted, counted from its first "
     "4 ms of CPU"},
    {"lua-timeout", 0, K_SECONDS, AT(lua_timeout), 0.001, 0, "S", "1",
     "seconds one handler call may run, time in C functions\nsuch as pattern matching included"},
    {"lua-path", 0, K_TEXT, AT(lua_path), 0, 0, "DIR", NULL,
     "directory require() loads modules from (default: none)"},
    {"log-level", 0, K_LEVEL, AT(log_level), 0, 0, "LEVEL", "info", "error, warn, info or debug"},
    {"log-format", 0, K_LOG_FORMAT, AT(log_json), 0, 0, "FORMAT", "text",
     "text, or json: one object per line (time, level, pid,\nevent, msg, fields)"},
    {"check", 0, K_FLAG, AT(check), 0, 0, NULL, NULL,
     "load SCRIPT (and the config file), report any error, exit\n0 or 1"},
    {"config", 'c', K_CONFIG, AT(config), 0, 0, "FILE", UC_DEFAULT_CONFIG_HELP,
     "read options from FILE, one \"name = value\" per line (names\n"
     "as the long options, script = SCRIPT); the command line\noverrides it"},
    {"help", 'h', K_HELP, 0, 0, 0, 0, NULL, NULL, "this text"},
    {"version", 'V', K_VERSION, 0, 0, 0, 0, NULL, NULL, "the version"},
};

#define NROWS (sizeof rows / sizeof rows[0])

/* Writes the byte count n the way the help writes it: 64k, 4m, 1g, or plain. */
static void format_bytes(double n, char *out, size_t cap)
{
    static const char units[] = "gmk";
    for (int i = 0; i < 3; i++) {
        double unit = (double)(1ULL << (10 * (3 - i)));
        if (n >= unit && fmod(n, unit) == 0) {
            snprintf(out, cap, "%.0f%c", n / unit, units[i]);
            return;
        }
    }
    snprintf(out, cap, "%.0f", n);
}

static void print_usage(FILE *f)
{
    fputs("Usage: uidcast [OPTIONS] [SCRIPT]\n"
          "WebSocket server that delivers messages to clients by user id; policy in Lua.\n"
          "SCRIPT is a Lua file returning a table of handlers (default " UC_DEFAULT_SCRIPT ").\n\n",
          f);
    for (size_t i = 0; i < NROWS; i++) {
        const struct row *r = &rows[i];
        char flag[64];
        snprintf(flag, sizeof flag, "--%s%s%s", r->name, r->arg ? " " : "", r->arg ? r->arg : "");
        char lead[8] = "   ";
        if (r->short_name)
            snprintf(lead, sizeof lead, "-%c,", r->short_name);
        /* The name on a line of its own when it does not fit the column. */
        if (strlen(flag) >= 25)
            fprintf(f, "  %s %s\n%31s", lead, flag, "");
        else
            fprintf(f, "  %s %-25s", lead, flag);
        size_t column = 31;
        for (const char *p = r->help; *p;) {
            const char *nl = strchr(p, '\n');
            size_t n = nl ? (size_t)(nl - p) : strlen(p);
            fprintf(f, "%.*s", (int)n, p);
            column += n;
            p += n;
            if (*p == '\n') {
                p++;
                fprintf(f, "\n%31s", "");
                column = 31;
            }
        }
        if (r->def) {
            char def[64];
            int n = snprintf(def, sizeof def, "(default %s)", r->def);
            if (column + 1 + (size_t)n > 96)
                fprintf(f, "\n%31s%s", "", def);
            else
                fprintf(f, " %s", def);
        }
        fputc('\n', f);
    }
    fputs("\nSignals: SIGHUP reloads SCRIPT without dropping connections; SIGTERM/SIGINT close "
          "every\n"
          "connection with 1001 and exit 0.\n"
          "Exit status: 0 on success, 1 on a start-up error, 2 on a bad command line or\n"
          "config file.\n"
          "Environment: UIDCAST_PUSH_TOKEN (the push token), UIDCAST_WEBHOOK_SECRET (the\n"
          "webhook's key), UIDCAST_* (readable by scripts through uidcast.env), NOTIFY_SOCKET\n"
          "(systemd's: READY=1, RELOADING=1, STOPPING=1 are sent there).\n"
          "Files: " UC_CONFIG_FILES "\n",
          f);
}

/* Reads value into the row's field; returns NULL, or what the value should have been. */
static const char *apply(const struct row *r, const char *value, struct uc_cli *cli, char *why,
                         size_t why_size)
{
    void *field = (char *)cli + r->offset;
    char lo[32], hi[32];
    char *end;
    errno = 0;
    switch (r->kind) {
    case K_HOSTPORT:
    case K_HOSTPORT_OR_OFF: {
        char host[256], port[8];
        if (!(r->kind == K_HOSTPORT_OR_OFF && strcmp(value, "off") == 0) &&
            uc_net_split_hostport(value, host, sizeof host, port, sizeof port, why, why_size) != 0)
            return why;
        snprintf(field, r->size, "%s", value);
        return NULL;
    }
    case K_REDIS_URL: {
        size_t urls = 0, len;
        for (const char *p = value, *url; (url = uc_redis_url_next(&p, &len)); urls++)
            if (strncmp(url, "redis://", 8) != 0 && strncmp(url, "sentinel://", 11) != 0)
                return "a URL such as redis://127.0.0.1:6379 (or sentinel://HOST:PORT/MASTER)";
        if (!urls)
            return "a URL such as redis://127.0.0.1:6379";
        if (cli->opt.n_redis == sizeof cli->opt.redis / sizeof cli->opt.redis[0])
            return "at most 16 values";
        cli->opt.redis[cli->opt.n_redis++] = value;
        return NULL;
    }
    case K_TEXT:
    case K_NONEMPTY:
        *(const char **)field = value;
        return r->kind == K_NONEMPTY && !value[0] ? "a value that is not empty" : NULL;
    case K_BYTES: {
        unsigned long long v = strtoull(value, &end, 10), mult = 1;
        if (*end == 'k' || *end == 'K')
            mult = 1ULL << 10, end++;
        else if (*end == 'm' || *end == 'M')
            mult = 1ULL << 20, end++;
        else if (*end == 'g' || *end == 'G')
            mult = 1ULL << 30, end++;
        int ok = end != value && !*end && !errno && value[0] != '-' &&
                 v <= (unsigned long long)SIZE_MAX / mult && (double)(v * mult) >= r->min &&
                 (!r->max || (double)(v * mult) <= r->max);
        if (ok) {
            *(size_t *)field = (size_t)(v * mult);
            return NULL;
        }
        format_bytes(r->min, lo, sizeof lo);
        format_bytes(r->max, hi, sizeof hi);
        if (r->max)
            snprintf(why, why_size, "a byte count from %s to %s (e.g. %s)", lo, hi,
                     r->def ? r->def : lo);
        else
            snprintf(why, why_size, "a byte count of at least %s (e.g. %s)", lo,
                     r->def ? r->def : lo);
        return why;
    }
    case K_SECONDS: {
        double v = strtod(value, &end);
        if (end != value && !*end && !errno && isfinite(v) && v > 0 && v >= r->min &&
            v <= 86400 * 365) {
            *(double *)field = v;
            return NULL;
        }
        if (r->min > 0)
            snprintf(why, why_size, "a number of seconds, at least %g", r->min);
        else
            snprintf(why, why_size, "a positive number of seconds");
        return why;
    }
    case K_COUNT: {
        unsigned long v = strtoul(value, &end, 10);
        if (end != value && !*end && !errno && value[0] != '-' && v <= 100000000UL &&
            (double)v >= r->min && (!r->max || (double)v <= r->max)) {
            *(unsigned *)field = (unsigned)v;
            return NULL;
        }
        snprintf(why, why_size, "a whole number from %.0f to %.0f", r->min,
                 r->max ? r->max : 100000000.0);
        return why;
    }
    case K_LEVEL:
        return uc_log_parse_level(value, field) == 0 ? NULL : "error, warn, info or debug";
    case K_LOG_FORMAT:
        if (strcmp(value, "text") != 0 && strcmp(value, "json") != 0)
            return "text or json";
        *(int *)field = strcmp(value, "json") == 0;
        return NULL;
    case K_TOKEN_FILE: {
        /* Kept for the life of the process, like the strings of argv the other options keep:
         * one buffer for each option of this kind. */
        static char tokens[2][1024];
        char *token = tokens[field == (void *)&cli->opt.push_token ? 0 : 1];
        FILE *f = fopen(value, "r");
        if (!f) {
            snprintf(why, why_size, "a readable file (%s)", strerror(errno));
            return why;
        }
        int ok = fgets(token, sizeof tokens[0], f) != NULL;
        fclose(f);
        token[ok ? strcspn(token, "\r\n") : 0] = '\0';
        if (!token[0])
            return "a file whose first line is the token (this one has none)";
        *(const char **)field = token;
        return NULL;
    }
    case K_HTTP_URL:
        if ((strncmp(value, "http://", 7) != 0 || !value[7]) &&
            (strncmp(value, "https://", 8) != 0 || !value[8]))
            return "an http:// or https:// URL";
        *(const char **)field = value;
        return NULL;
    case K_ORIGIN:
        if (!value[0])
            return "an origin such as https://example.com";
        if (cli->opt.n_allow_origins ==
            sizeof cli->opt.allow_origins / sizeof cli->opt.allow_origins[0])
            return "at most 16 origins";
        cli->opt.allow_origins[cli->opt.n_allow_origins++] = value;
        return NULL;
    case K_FLAG: *(int *)field = 1; return NULL;
    case K_CONFIG: return NULL; /* read first, by uc_cli_parse */
    case K_HELP:
    case K_VERSION: return NULL;
    }
    return NULL;
}

/* ---- the config file ---- */

struct config_read {
    struct uc_cli *cli;
    char message[512]; /* the first bad line's complaint */
};

/* Keeps a value of the file for the life of cli (options point into it). */
static const char *keep_value(struct uc_cli *cli, const char *value)
{
    char **more = realloc(cli->config_values, (cli->n_config_values + 1) * sizeof *more);
    char *copy = more ? strdup(value) : NULL;
    if (more)
        cli->config_values = more;
    if (!copy)
        return NULL;
    cli->config_values[cli->n_config_values++] = copy;
    return copy;
}

/* One "name = value" line (inih's handler): 1 taken, 0 refused (the message says why). */
static int config_line(void *user, const char *section, const char *name, const char *value)
{
    struct config_read *cr = user;
    char *msg = cr->message;
    size_t cap = sizeof cr->message;
    if (msg[0])
        return 1; /* only the first bad line is told */
    if (section[0]) {
        snprintf(msg, cap, "sections are not used (\"[%s]\"): one \"name = value\" per line",
                 section);
        return 0;
    }
    const char *kept = keep_value(cr->cli, value);
    if (!kept) {
        snprintf(msg, cap, "out of memory");
        return 0;
    }
    if (strcmp(name, "script") == 0) {
        cr->cli->script = kept;
        return 1;
    }
    const struct row *r = NULL;
    for (size_t i = 0; i < NROWS && !r; i++)
        if (strcmp(rows[i].name, name) == 0)
            r = &rows[i];
    if (!r) {
        snprintf(msg, cap, "unknown option '%s' (names are the long options without --)", name);
        return 0;
    }
    if (r->kind == K_HELP || r->kind == K_VERSION || r->kind == K_CONFIG || r->kind == K_FLAG) {
        snprintf(msg, cap, "%s is for the command line only", name);
        return 0;
    }
    char why[256];
    const char *bad = apply(r, kept, cr->cli, why, sizeof why);
    if (bad && (r->kind == K_HOSTPORT || r->kind == K_HOSTPORT_OR_OFF))
        snprintf(msg, cap, "%s", bad);
    else if (bad)
        snprintf(msg, cap, "%s takes %s, not '%s'", name, bad, value);
    return !bad;
}

/* The --config FILE (or --config=FILE, -c FILE) of argv, or NULL. */
static const char *config_argument(int argc, char **argv)
{
    const char *found = NULL;
    for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++) {
        if ((strcmp(argv[i], "--config") == 0 || strcmp(argv[i], "-c") == 0) && i + 1 < argc)
            found = argv[++i];
        else if (strncmp(argv[i], "--config=", 9) == 0)
            found = argv[i] + 9;
    }
    return found;
}

/* Reads path into cli. Returns 0, or -1 with "PATH:LINE: why" in err. */
/* inih reads a line in INI_MAX_LINE - 1 bytes and takes the rest for the next line: a
 * longer line is refused here, by number, rather than cut. Returns 0 or -1 (err says). */
static int check_line_lengths(const char *path, char *err, size_t err_size)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 0; /* ini_parse says why */
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int number = 0, bad = 0;
    while (!bad && (n = getline(&line, &cap, f)) >= 0) {
        number++;
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            n--;
        bad = n > INI_MAX_LINE - 2;
    }
    free(line);
    fclose(f);
    if (bad)
        snprintf(err, err_size,
                 "%s:%d: a line longer than %d bytes (put long values, such as "
                 "secrets, in a file option)",
                 path, number, INI_MAX_LINE - 2);
    return bad ? -1 : 0;
}

static int read_config(const char *path, struct uc_cli *cli, char *err, size_t err_size)
{
    struct config_read cr = {.cli = cli};
    if (check_line_lengths(path, err, err_size) != 0)
        return -1;
    int line = ini_parse(path, config_line, &cr);
    if (line == -1) {
        snprintf(err, err_size, "%s: %s", path, strerror(errno));
        return -1;
    }
    if (line != 0) {
        snprintf(err, err_size, "%s:%d: %s", path, line,
                 cr.message[0] ? cr.message : "expected \"name = value\"");
        return -1;
    }
    cli->config = path;
    return 0;
}

void uc_cli_free(struct uc_cli *cli)
{
    for (size_t i = 0; i < cli->n_config_values; i++)
        free(cli->config_values[i]);
    free(cli->config_values);
    cli->config_values = NULL;
    cli->n_config_values = 0;
}

enum uc_cli_result uc_cli_parse(int argc, char **argv, struct uc_cli *cli, char *err,
                                size_t err_size)
{
    memset(cli, 0, sizeof *cli);
    char why[256];
    for (size_t i = 0; i < NROWS; i++)
        if (rows[i].def && apply(&rows[i], rows[i].def, cli, why, sizeof why))
            abort(); /* a default the table cannot read is a bug in the table */
    cli->script = UC_DEFAULT_SCRIPT;
    cli->opt.push_token = getenv("UIDCAST_PUSH_TOKEN");
    cli->webhook_secret = getenv("UIDCAST_WEBHOOK_SECRET");
    const char *config = config_argument(argc, argv);
#ifdef UC_DEFAULT_CONFIG
    if (!config && access(UC_DEFAULT_CONFIG, F_OK) == 0)
        config = UC_DEFAULT_CONFIG;
#endif
    if (config && read_config(config, cli, err, err_size) != 0)
        return UC_CLI_USAGE;

    struct option longs[NROWS + 1];
    char shorts[2 * NROWS + 2] = ":";
    for (size_t i = 0; i < NROWS; i++) {
        int has_arg = rows[i].arg ? required_argument : no_argument;
        longs[i] = (struct option){rows[i].name, has_arg, NULL, 256 + (int)i};
        if (rows[i].short_name) {
            size_t n = strlen(shorts);
            shorts[n] = rows[i].short_name;
            shorts[n + 1] = has_arg == required_argument ? ':' : '\0';
            shorts[n + 2] = '\0';
        }
    }
    longs[NROWS] = (struct option){0};

    optind = 1;
    opterr = 0; /* we print our own messages */
    int c;
    while ((c = getopt_long(argc, argv, shorts, longs, NULL)) != -1) {
        if (c == ':') {
            snprintf(err, err_size, "option '%s' needs a value", argv[optind - 1]);
            return UC_CLI_USAGE;
        }
        const struct row *r = NULL;
        for (size_t i = 0; i < NROWS && !r; i++)
            if (c == 256 + (int)i || (rows[i].short_name && c == rows[i].short_name))
                r = &rows[i];
        if (!r) {
            snprintf(err, err_size, "unknown option '%s'", argv[optind - 1]);
            return UC_CLI_USAGE;
        }
        if (r->kind == K_HELP) {
            print_usage(stdout);
            return UC_CLI_EXIT_OK;
        }
        if (r->kind == K_VERSION)
            return UC_CLI_VERSION;
        const char *bad = apply(r, optarg, cli, why, sizeof why);
        if (bad && (r->kind == K_HOSTPORT || r->kind == K_HOSTPORT_OR_OFF)) {
            snprintf(err, err_size, "%s", bad); /* the address parser says it all */
            return UC_CLI_USAGE;
        }
        if (bad) {
            snprintf(err, err_size, "--%s takes %s, not '%s'", r->name, bad, optarg);
            return UC_CLI_USAGE;
        }
    }
    if (cli->opt.workers > 1 && !cli->opt.n_redis) {
        snprintf(err, err_size,
                 "--workers %u needs --redis: without it a worker could not "
                 "reach the clients of the others",
                 cli->opt.workers);
        return UC_CLI_USAGE;
    }
    if (cli->opt.idle_timeout <= cli->opt.ping_interval) {
        snprintf(err, err_size,
                 "--idle-timeout (%g) must be longer than --ping-interval (%g), "
                 "or clients that answer pings would be dropped",
                 cli->opt.idle_timeout, cli->opt.ping_interval);
        return UC_CLI_USAGE;
    }
    if (optind < argc)
        cli->script = argv[optind++];
    if (optind < argc) {
        snprintf(err, err_size, "unexpected argument '%s' (only one SCRIPT)", argv[optind]);
        return UC_CLI_USAGE;
    }
    return UC_CLI_RUN;
}

/* cli.c -- parsing the command line into struct uc_cli; every option is documented in usage. */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net.h"

static const char usage[] =
    "Usage: uidcast [OPTIONS] [SCRIPT]\n"
    "WebSocket server that delivers messages to clients by user id; policy in Lua.\n"
    "SCRIPT is a Lua file returning a table of handlers (default " UC_DEFAULT_SCRIPT ").\n"
    "\n"
    "  -l, --listen HOST:PORT       WebSocket listener (default 127.0.0.1:1234; [::1]:PORT for\n"
    "                               IPv6; port 0 picks a free port and logs it)\n"
    "      --redis URL              cluster mode: deliveries reach every node on this Redis;\n"
    "                               URL is redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]\n"
    "      --presence-ttl S         cluster mode: a node that stops heart-beating is offline\n"
    "                               for the others after S seconds (default 15)\n"
    "      --redis-timeout S        cluster mode: a Redis that does not answer within S\n"
    "                               seconds is treated as down (default 1)\n"
    "      --redis-max-pending BYTES\n"
    "                               cluster mode: publications waiting for Redis beyond this\n"
    "                               are dropped and counted (default 4m)\n"
    "      --workers N              N processes share the listeners (SO_REUSEPORT); a\n"
    "                               supervisor restarts any that dies; N > 1 needs --redis\n"
    "      --push HOST:PORT|off     HTTP push API (default 127.0.0.1:1235)\n"
    "      --push-token TOKEN       require \"Authorization: Bearer TOKEN\" on the push API\n"
    "                               (default: env UIDCAST_PUSH_TOKEN, else none)\n"
    "      --push-timeout S         seconds a push connection may idle (default 30)\n"
    "      --max-message BYTES      largest message accepted; larger closes with 1009\n"
    "                               (default 1048576; suffixes k, m allowed)\n"
    "      --max-send-buffer BYTES  bytes queued per connection before a slow reader is\n"
    "                               closed (default 4194304; suffixes k, m allowed)\n"
    "      --max-connections N      refuse sockets beyond N with HTTP 503 (default 0: no limit)\n"
    "      --handshake-timeout S    seconds to complete the HTTP upgrade (default 10)\n"
    "      --ping-interval S        ping a client silent for S seconds (default 25)\n"
    "      --idle-timeout S         close (1001) a client silent for S seconds, pongs\n"
    "                               included (default 60)\n"
    "      --max-groups-per-connection N\n"
    "                               groups one connection may be in (default 1024)\n"
    "      --max-fragments N        empty fragments one message may have beyond one per\n"
    "                               payload byte; more closes with 1008 (default 1024)\n"
    "      --message-timeout S      seconds a message may stay unfinished; then 1008\n"
    "                               (default 30)\n"
    "      --allow-origin ORIGIN    accept browsers only from ORIGIN (repeatable; others get\n"
    "                               403); default: any origin\n"
    "      --close-timeout S        seconds to wait for a peer to finish closing (default 2)\n"
    "      --drain-timeout S        seconds SIGTERM waits for connections to close (default 2)\n"
    "      --lua-memory BYTES       memory the Lua state may use (default 256m)\n"
    "      --lua-budget N           VM instructions one handler call may run before it is\n"
    "                               aborted (default 5000000)\n"
    "      --lua-timeout S          seconds one handler call may run, time in C functions\n"
    "                               such as pattern matching included (default 1)\n"
    "      --lua-path DIR           directory require() loads modules from (default: none)\n"
    "      --log-level LEVEL        error, warn, info or debug (default info)\n"
    "      --check                  load SCRIPT, report any error, exit 0 or 1\n"
    "  -h, --help                   this text\n"
    "  -V, --version                the version\n"
    "\n"
    "Signals: SIGHUP reloads SCRIPT without dropping connections; SIGTERM/SIGINT close every\n"
    "connection with 1001 and exit 0.\n"
    "Exit status: 0 on success, 1 on a start-up error, 2 on a bad command line.\n";

enum {
    OPT_WORKERS = 254,
    OPT_REDIS = 255,
    OPT_PUSH = 256,
    OPT_PUSH_TOKEN,
    OPT_PUSH_TIMEOUT,
    OPT_MAX_MESSAGE,
    OPT_MAX_SEND_BUFFER,
    OPT_MAX_CONNECTIONS,
    OPT_HANDSHAKE_TIMEOUT,
    OPT_PING_INTERVAL,
    OPT_IDLE_TIMEOUT,
    OPT_MAX_FRAGMENTS,
    OPT_MAX_GROUPS,
    OPT_MESSAGE_TIMEOUT,
    OPT_PRESENCE_TTL,
    OPT_REDIS_TIMEOUT,
    OPT_REDIS_MAX_PENDING,
    OPT_ALLOW_ORIGIN,
    OPT_CLOSE_TIMEOUT,
    OPT_DRAIN_TIMEOUT,
    OPT_LOG_LEVEL,
    OPT_LUA_MEMORY,
    OPT_LUA_BUDGET,
    OPT_LUA_TIMEOUT,
    OPT_LUA_PATH,
    OPT_CHECK,
};

static const struct option long_options[] = {
    {"listen", required_argument, NULL, 'l'},
    {"redis", required_argument, NULL, OPT_REDIS},
    {"workers", required_argument, NULL, OPT_WORKERS},
    {"push", required_argument, NULL, OPT_PUSH},
    {"push-token", required_argument, NULL, OPT_PUSH_TOKEN},
    {"push-timeout", required_argument, NULL, OPT_PUSH_TIMEOUT},
    {"max-message", required_argument, NULL, OPT_MAX_MESSAGE},
    {"max-send-buffer", required_argument, NULL, OPT_MAX_SEND_BUFFER},
    {"max-connections", required_argument, NULL, OPT_MAX_CONNECTIONS},
    {"handshake-timeout", required_argument, NULL, OPT_HANDSHAKE_TIMEOUT},
    {"ping-interval", required_argument, NULL, OPT_PING_INTERVAL},
    {"idle-timeout", required_argument, NULL, OPT_IDLE_TIMEOUT},
    {"max-fragments", required_argument, NULL, OPT_MAX_FRAGMENTS},
    {"max-groups-per-connection", required_argument, NULL, OPT_MAX_GROUPS},
    {"message-timeout", required_argument, NULL, OPT_MESSAGE_TIMEOUT},
    {"presence-ttl", required_argument, NULL, OPT_PRESENCE_TTL},
    {"redis-timeout", required_argument, NULL, OPT_REDIS_TIMEOUT},
    {"redis-max-pending", required_argument, NULL, OPT_REDIS_MAX_PENDING},
    {"allow-origin", required_argument, NULL, OPT_ALLOW_ORIGIN},
    {"close-timeout", required_argument, NULL, OPT_CLOSE_TIMEOUT},
    {"drain-timeout", required_argument, NULL, OPT_DRAIN_TIMEOUT},
    {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
    {"lua-memory", required_argument, NULL, OPT_LUA_MEMORY},
    {"lua-budget", required_argument, NULL, OPT_LUA_BUDGET},
    {"lua-timeout", required_argument, NULL, OPT_LUA_TIMEOUT},
    {"lua-path", required_argument, NULL, OPT_LUA_PATH},
    {"check", no_argument, NULL, OPT_CHECK},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, 'V'},
    {NULL, 0, NULL, 0},
};

/* A byte count with an optional k/m/g suffix (powers of 1024), at least min. */
static int parse_bytes(const char *s, size_t min, size_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (end == s || errno || s[0] == '-')
        return -1;
    unsigned long long mult = 1;
    if (*end == 'k' || *end == 'K')
        mult = 1024ULL, end++;
    else if (*end == 'm' || *end == 'M')
        mult = 1024ULL * 1024, end++;
    else if (*end == 'g' || *end == 'G')
        mult = 1024ULL * 1024 * 1024, end++;
    if (*end != '\0' || v > (unsigned long long)SIZE_MAX / mult || v * mult < min)
        return -1;
    *out = (size_t)(v * mult);
    return 0;
}

static int parse_seconds(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end != '\0' || errno || !isfinite(v) || v <= 0 || v > 86400 * 365)
        return -1;
    *out = v;
    return 0;
}

static int parse_count(const char *s, unsigned *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (end == s || *end != '\0' || errno || s[0] == '-' || v > 100000000UL)
        return -1;
    *out = (unsigned)v;
    return 0;
}

enum uc_cli_result uc_cli_parse(int argc, char **argv, struct uc_cli *cli, char *err,
                                size_t err_size)
{
    memset(cli, 0, sizeof *cli);
    snprintf(cli->opt.listen, sizeof cli->opt.listen, "127.0.0.1:1234");
    cli->opt.max_message = 1024 * 1024;
    cli->opt.max_send_buffer = 4 * 1024 * 1024;
    cli->opt.handshake_timeout = 10;
    cli->opt.ping_interval = 25;
    cli->opt.idle_timeout = 60;
    cli->opt.max_fragments = 1024;
    cli->opt.max_groups_per_connection = 1024;
    cli->opt.message_timeout = 30;
    cli->opt.presence_ttl = 15;
    cli->opt.redis_timeout = 1;
    cli->opt.redis_max_pending = 4 * 1024 * 1024;
    cli->opt.close_timeout = 2;
    cli->opt.drain_timeout = 2;
    cli->log_level = UC_LOG_INFO;
    cli->lua_memory = 256u * 1024 * 1024;
    cli->lua_budget = 5000000;
    cli->lua_timeout = 1;
    cli->script = UC_DEFAULT_SCRIPT;
    snprintf(cli->opt.push, sizeof cli->opt.push, "127.0.0.1:1235");
    cli->opt.push_token = getenv("UIDCAST_PUSH_TOKEN");
    cli->opt.push_timeout = 30;
    cli->opt.workers = 1;

    optind = 1;
    opterr = 0; /* we print our own messages */
    int c;
    while ((c = getopt_long(argc, argv, ":l:hV", long_options, NULL)) != -1) {
        const char *bad = NULL;
        switch (c) {
        case 'l': {
            char host[256], port[8];
            if (uc_net_split_hostport(optarg, host, sizeof host, port, sizeof port, err,
                                      err_size) != 0)
                return UC_CLI_USAGE;
            snprintf(cli->opt.listen, sizeof cli->opt.listen, "%s", optarg);
            break;
        }
        case OPT_WORKERS:
            if (parse_count(optarg, &cli->opt.workers) != 0 || cli->opt.workers < 1 ||
                cli->opt.workers > 256)
                bad = "--workers takes a number from 1 to 256";
            break;
        case OPT_REDIS:
            if (strncmp(optarg, "redis://", 8) != 0)
                bad = "--redis takes a URL such as redis://127.0.0.1:6379";
            cli->opt.redis = optarg;
            break;
        case OPT_PUSH: {
            char host[256], port[8];
            if (strcmp(optarg, "off") != 0 &&
                uc_net_split_hostport(optarg, host, sizeof host, port, sizeof port, err,
                                      err_size) != 0)
                return UC_CLI_USAGE;
            snprintf(cli->opt.push, sizeof cli->opt.push, "%s", optarg);
            break;
        }
        case OPT_PUSH_TOKEN:
            if (optarg[0] == '\0')
                bad = "--push-token must not be empty";
            cli->opt.push_token = optarg;
            break;
        case OPT_PUSH_TIMEOUT:
            if (parse_seconds(optarg, &cli->opt.push_timeout) != 0)
                bad = "--push-timeout takes a positive number of seconds";
            break;
        case OPT_MAX_MESSAGE:
            if (parse_bytes(optarg, 1, &cli->opt.max_message) != 0 ||
                cli->opt.max_message > (size_t)1 << 30)
                bad = "--max-message takes a byte count from 1 to 1g (e.g. 1048576 or 1m)";
            break;
        case OPT_MAX_SEND_BUFFER:
            if (parse_bytes(optarg, 1024, &cli->opt.max_send_buffer) != 0)
                bad = "--max-send-buffer takes a byte count of at least 1024 (e.g. 4m)";
            break;
        case OPT_MAX_CONNECTIONS:
            if (parse_count(optarg, &cli->opt.max_connections) != 0)
                bad = "--max-connections takes a whole number";
            break;
        case OPT_HANDSHAKE_TIMEOUT:
            if (parse_seconds(optarg, &cli->opt.handshake_timeout) != 0)
                bad = "--handshake-timeout takes a positive number of seconds";
            break;
        case OPT_PING_INTERVAL:
            if (parse_seconds(optarg, &cli->opt.ping_interval) != 0)
                bad = "--ping-interval takes a positive number of seconds";
            break;
        case OPT_IDLE_TIMEOUT:
            if (parse_seconds(optarg, &cli->opt.idle_timeout) != 0)
                bad = "--idle-timeout takes a positive number of seconds";
            break;
        case OPT_MESSAGE_TIMEOUT:
            if (parse_seconds(optarg, &cli->opt.message_timeout) != 0)
                bad = "--message-timeout takes a positive number of seconds";
            break;
        case OPT_PRESENCE_TTL:
            if (parse_seconds(optarg, &cli->opt.presence_ttl) != 0 || cli->opt.presence_ttl < 1)
                bad = "--presence-ttl takes a number of seconds, at least 1";
            break;
        case OPT_REDIS_TIMEOUT:
            if (parse_seconds(optarg, &cli->opt.redis_timeout) != 0 ||
                cli->opt.redis_timeout < 0.05)
                bad = "--redis-timeout takes a number of seconds, at least 0.05";
            break;
        case OPT_REDIS_MAX_PENDING:
            if (parse_bytes(optarg, 64 * 1024, &cli->opt.redis_max_pending) != 0)
                bad = "--redis-max-pending takes a byte count of at least 64k";
            break;
        case OPT_MAX_FRAGMENTS:
            if (parse_count(optarg, &cli->opt.max_fragments) != 0 || cli->opt.max_fragments == 0)
                bad = "--max-fragments takes a whole number of at least 1";
            break;
        case OPT_MAX_GROUPS:
            if (parse_count(optarg, &cli->opt.max_groups_per_connection) != 0 ||
                cli->opt.max_groups_per_connection == 0)
                bad = "--max-groups-per-connection takes a whole number of at least 1";
            break;
        case OPT_ALLOW_ORIGIN:
            if (cli->opt.n_allow_origins ==
                sizeof cli->opt.allow_origins / sizeof cli->opt.allow_origins[0])
                bad = "--allow-origin may be given at most 16 times";
            else if (optarg[0] == '\0')
                bad = "--allow-origin takes an origin such as https://example.com";
            else
                cli->opt.allow_origins[cli->opt.n_allow_origins++] = optarg;
            break;
        case OPT_CLOSE_TIMEOUT:
            if (parse_seconds(optarg, &cli->opt.close_timeout) != 0)
                bad = "--close-timeout takes a positive number of seconds";
            break;
        case OPT_DRAIN_TIMEOUT:
            if (parse_seconds(optarg, &cli->opt.drain_timeout) != 0)
                bad = "--drain-timeout takes a positive number of seconds";
            break;
        case OPT_LOG_LEVEL:
            if (uc_log_parse_level(optarg, &cli->log_level) != 0)
                bad = "--log-level takes error, warn, info or debug";
            break;
        case OPT_LUA_MEMORY:
            if (parse_bytes(optarg, 1024 * 1024, &cli->lua_memory) != 0)
                bad = "--lua-memory takes a byte count of at least 1m";
            break;
        case OPT_LUA_BUDGET: {
            unsigned budget;
            if (parse_count(optarg, &budget) != 0 || budget < 10000)
                bad = "--lua-budget takes a whole number of instructions, at least 10000";
            cli->lua_budget = (long)budget;
            break;
        }
        case OPT_LUA_TIMEOUT:
            if (parse_seconds(optarg, &cli->lua_timeout) != 0 || cli->lua_timeout < 0.001)
                bad = "--lua-timeout takes seconds, at least 0.001";
            break;
        case OPT_LUA_PATH: cli->lua_path = optarg; break;
        case OPT_CHECK: cli->check = 1; break;
        case 'h': fputs(usage, stdout); return UC_CLI_EXIT_OK;
        case 'V': printf("uidcast " UC_VERSION "\n"); return UC_CLI_EXIT_OK;
        case ':':
            snprintf(err, err_size, "option '%s' needs a value", argv[optind - 1]);
            return UC_CLI_USAGE;
        default:
            snprintf(err, err_size, "unknown option '%s'", argv[optind - 1]);
            return UC_CLI_USAGE;
        }
        if (bad) {
            snprintf(err, err_size, "%s, not '%s'", bad, optarg);
            return UC_CLI_USAGE;
        }
    }
    if (cli->opt.workers > 1 && !cli->opt.redis) {
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

/* cli.h -- the command line: options, defaults, --help and --version. */
#ifndef UC_CLI_H
#define UC_CLI_H

#include "log.h"
#include "server.h"

#define UC_VERSION "0.1.0"
/* An installed build is told where its scripts are (make install, the Debian package). */
#ifndef UC_DEFAULT_SCRIPT
#define UC_DEFAULT_SCRIPT "scripts/default.lua"
#endif

struct uc_cli {
    struct uc_options opt;
    const char *script;
    enum uc_log_level log_level;
    int check;                     /* --check: load the script, report, exit */
    int log_json;                  /* --log-format json */
    size_t lua_memory;             /* --lua-memory: bytes the Lua state may allocate */
    unsigned lua_budget;           /* --lua-budget: instructions per handler call */
    double lua_timeout;            /* --lua-timeout: seconds per handler call */
    const char *lua_path;          /* --lua-path: directory for require(), or NULL */
    unsigned mailbox_max_messages; /* --mailbox-max-messages: kept messages per uid */
    size_t mailbox_max_bytes;      /* --mailbox-max-bytes: kept payload bytes per uid */
    size_t mailbox_memory;         /* --mailbox-memory: bytes every kept message may take */
    const char *webhook;           /* --webhook: URL events are POSTed to, or NULL */
    const char *webhook_secret;    /* --webhook-secret-file, env UIDCAST_WEBHOOK_SECRET */
    double webhook_timeout;        /* --webhook-timeout: seconds per attempt */
    double webhook_retry_for;      /* --webhook-retry-for: seconds an event is retried */
    const char *config;            /* --config: the file read, or NULL */
    char **config_values;          /* the file's values, which options point into: owned */
    size_t n_config_values;
};

enum uc_cli_result {
    UC_CLI_RUN = 0, /* start the server */
    UC_CLI_EXIT_OK, /* --help was printed */
    UC_CLI_VERSION, /* --version: the caller prints what it is built from */
    UC_CLI_USAGE,   /* a bad option or value; the message is in err */
};

/* Fills cli: the defaults, the environment (UIDCAST_PUSH_TOKEN, UIDCAST_WEBHOOK_SECRET), the
 * config file (--config, or UC_DEFAULT_CONFIG when it exists), then argv. Writes a one-line
 * message to err on UC_CLI_USAGE ("FILE:LINE: ..." for a bad line of the file) and prints
 * --help/--version itself to stdout. Free with uc_cli_free whatever it returns. */
enum uc_cli_result uc_cli_parse(int argc, char **argv, struct uc_cli *cli, char *err,
                                size_t err_size);
/* Frees what the config file's values took (the options pointing into them go with it). */
void uc_cli_free(struct uc_cli *cli);

#endif

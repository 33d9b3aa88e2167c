/* main.c -- uidcast's entry point: parse the command line, load the policy, run the server. */
#include <stdio.h>
#include <stdlib.h>

#include "../lua/policy.h"
#include "cli.h"
#include "log.h"
#include "supervisor.h"

static struct ucl_limits limits_of(const struct uc_cli *cli)
{
    return (struct ucl_limits){.memory = cli->lua_memory,
                               .budget = cli->lua_budget,
                               .timeout = cli->lua_timeout,
                               .lua_path = cli->lua_path};
}

/* One server process: load the policy, serve until stopped. A worker under --workers too. */
static int serve(struct uc_cli *cli)
{
    char err[1024];
    struct ucl_limits limits = limits_of(cli);
    struct ucl_policy *policy = ucl_policy_new(cli->script, &limits, err, sizeof err);
    if (!policy) {
        uc_error("cannot load script: %s", err);
        return 1;
    }
    struct uc_handlers handlers;
    ucl_policy_handlers(policy, &handlers);
    struct uc_server *srv = uc_server_new(&cli->opt, &handlers, err, sizeof err);
    if (!srv) {
        uc_error("%s", err);
        ucl_policy_free(policy);
        return 1;
    }
    uc_info("uidcast " UC_VERSION " running %s", cli->script);
    ucl_policy_start(policy, srv);
    uc_server_run(srv);
    /* The policy first: closing its Lua state stops its timers, which needs the loop alive. */
    ucl_policy_free(policy);
    uc_server_free(srv);
    uc_info("stopped");
    return 0;
}

int main(int argc, char **argv)
{
    struct uc_cli cli;
    char err[1024];
    switch (uc_cli_parse(argc, argv, &cli, err, sizeof err)) {
    case UC_CLI_EXIT_OK: return 0;
    case UC_CLI_USAGE:
        fprintf(stderr, "uidcast: %s\nTry 'uidcast --help' for the options.\n", err);
        return 2;
    case UC_CLI_RUN: break;
    }
    uc_log_threshold = cli.log_level;

    if (cli.check) {
        struct ucl_limits limits = limits_of(&cli);
        struct ucl_policy *policy = ucl_policy_new(cli.script, &limits, err, sizeof err);
        if (!policy) {
            fprintf(stderr, "uidcast: %s\n", err);
            return 1;
        }
        printf("uidcast: %s is OK\n", cli.script);
        ucl_policy_free(policy);
        return 0;
    }
    if (cli.opt.workers > 1) {
        /* A script that cannot load would only make every worker die at start, over and over:
         * refuse it here, once, as a single process would. */
        struct ucl_limits limits = limits_of(&cli);
        struct ucl_policy *policy = ucl_policy_new(cli.script, &limits, err, sizeof err);
        if (!policy) {
            uc_error("cannot load script: %s", err);
            return 1;
        }
        ucl_policy_free(policy);
        return uc_supervise(&cli, serve);
    }
    return serve(&cli);
}

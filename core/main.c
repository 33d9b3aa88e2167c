/* main.c -- uidcast's entry point: parse the command line, load the policy, run the server. */
#include <ev.h>
#include <hiredis/hiredis.h>
#include <http_parser.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lua/policy.h"
#include "broker.h"
#include "cli.h"
#include "cluster_events.h"
#include "events.h"
#include "log.h"
#include "mailbox.h"
#include "push.h"
#include "streams.h"
#include "supervisor.h"
#include "version.h"
#include "webhook.h"
#include <wslay/wslayver.h>

static struct ucl_limits limits_of(const struct uc_cli *cli)
{
    return (struct ucl_limits){.memory = cli->lua_memory,
                               .budget = cli->lua_budget,
                               .timeout = cli->lua_timeout,
                               .lua_path = cli->lua_path};
}

/* Where the events of the services go: the policy's handlers, and the webhook when there is
 * one. Set once by attach_services; the handlers outlive the server. */
static struct {
    const struct uc_handlers *policy;
    struct uc_webhook *webhook;
} events_out;

static void presence_out(const char *uid, size_t uid_len, int online, uint64_t version, void *arg)
{
    (void)arg;
    if (events_out.webhook)
        uc_webhook_presence(events_out.webhook, uid, uid_len, online, version);
    events_out.policy->on_presence(uid, uid_len, online, version, events_out.policy->user_data);
}

static void undelivered_out(const char *uid, size_t uid_len, uint64_t seq, const void *data,
                            size_t len, int binary, const char *reason, void *arg)
{
    (void)arg;
    if (events_out.webhook)
        uc_webhook_undelivered(events_out.webhook, uid, uid_len, seq, data, len, binary, reason);
    events_out.policy->on_undelivered(uid, uid_len, seq, data, len, binary, reason,
                                      events_out.policy->user_data);
}

/* The services around the core, composed here and nowhere else: the webhook, the store of
 * kept messages, the online/offline tracker, the cluster broker (the server's relay to the
 * other nodes) and the push API, all freed with the server in reverse order: what answers
 * last (the broker, at its teardown) is freed first. */
static int attach_services(struct uc_server *srv, const struct uc_cli *cli,
                           const struct uc_handlers *handlers, char *err, size_t err_size)
{
    const struct uc_options *opt = &cli->opt;
    struct ev_loop *loop = uc_server_loop(srv);
    struct uc_broker *broker = NULL;
    if (opt->n_redis && !(broker = uc_broker_new(srv, opt->redis, opt->n_redis, err, err_size)))
        return -1;
    events_out.policy = handlers;
    if (cli->webhook) {
        struct uc_webhook_options wo = {.url = cli->webhook,
                                        .secret = cli->webhook_secret,
                                        .timeout = cli->webhook_timeout,
                                        .retry_for = cli->webhook_retry_for,
                                        .node_id = broker ? uc_broker_node_id(broker) : NULL};
        if (!(events_out.webhook = uc_webhook_new(loop, &wo, err, err_size))) {
            uc_broker_free(broker);
            return -1;
        }
        struct uc_service svc = uc_webhook_service(events_out.webhook);
        uc_server_attach(srv, &svc);
    }
    struct uc_store store;
    struct uc_service store_svc, events_svc;
    struct uc_tracker tracker;
    if (broker) {
        /* Kept messages live in Redis Streams, and online/offline is decided in Redis, both
         * reached through the broker's connection. */
        struct uc_streams *streams = uc_streams_new(loop, broker, cli->mailbox_max_messages,
                                                    cli->mailbox_max_bytes, undelivered_out, NULL);
        struct uc_cluster_events *ce =
            uc_cluster_events_new(srv, broker, opt->offline_grace, presence_out, NULL);
        if (!streams || !ce) {
            uc_streams_free(streams);
            uc_cluster_events_free(ce);
            uc_broker_free(broker);
            snprintf(err, err_size, "out of memory");
            return -1;
        }
        store = uc_streams_store(streams);
        store_svc = uc_streams_service(streams);
        tracker = uc_cluster_events_tracker(ce);
        events_svc = uc_cluster_events_service(ce);
    } else {
        struct uc_mailbox_limits limits = {.max_messages = cli->mailbox_max_messages,
                                           .max_bytes = cli->mailbox_max_bytes,
                                           .memory = cli->mailbox_memory};
        struct uc_mailbox *mailbox = uc_mailbox_new(loop, &limits, undelivered_out, NULL);
        struct uc_events *events = uc_events_new(loop, opt->offline_grace, presence_out, NULL);
        if (!mailbox || !events) {
            uc_mailbox_free(mailbox);
            uc_events_free(events);
            snprintf(err, err_size, "out of memory");
            return -1;
        }
        store = uc_mailbox_store(mailbox);
        store_svc = uc_mailbox_service(mailbox);
        tracker = uc_events_tracker(events);
        events_svc = uc_events_service(events);
    }
    uc_server_set_store(srv, &store);
    uc_server_attach(srv, &store_svc);
    uc_server_set_tracker(srv, &tracker);
    uc_server_attach(srv, &events_svc);
    if (broker) {
        struct uc_relay relay = uc_broker_relay(broker);
        struct uc_service svc = uc_broker_service(broker);
        uc_server_set_relay(srv, &relay);
        uc_server_attach(srv, &svc);
    }
    if (strcmp(opt->push, "off") != 0) {
        struct uc_push *push = uc_push_new(srv, opt->push, opt->push_token, err, err_size);
        if (!push)
            return -1;
        struct uc_service svc = uc_push_service(push);
        uc_server_attach(srv, &svc);
    }
    return 0;
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
    if (!srv || attach_services(srv, cli, &handlers, err, sizeof err) != 0) {
        uc_error("%s", err);
        uc_server_free(srv);
        ucl_policy_free(policy);
        return 1;
    }
    uc_log_event(UC_LOG_INFO, "server.started",
                 json_pack("{s:s,s:s,s:s?}", "version", UC_VERSION, "script", cli->script, "config",
                           cli->config),
                 "uidcast " UC_VERSION " running %s", cli->script);
    ucl_policy_start(policy, srv);
    uc_server_run(srv);
    /* The policy first: closing its Lua state stops its timers, which needs the loop alive. */
    ucl_policy_free(policy);
    uc_server_free(srv);
    uc_log_event(UC_LOG_INFO, "server.stopped", NULL, "stopped");
    return 0;
}

/* What this binary is and runs with: the commit it was built from, the libraries' versions as
 * loaded now (libev, http-parser, jansson, OpenSSL) or as compiled in (wslay, hiredis, Lua). */
static void print_version(void)
{
    unsigned long hp = http_parser_version();
    printf("uidcast " UC_VERSION " (commit " UC_GIT_COMMIT ")\n");
    printf("libev %d.%d, wslay %s, %s, hiredis %d.%d.%d, http-parser %lu.%lu.%lu, jansson %s, %s\n",
           ev_version_major(), ev_version_minor(), WSLAY_VERSION, ucl_lua_version(), HIREDIS_MAJOR,
           HIREDIS_MINOR, HIREDIS_PATCH, (hp >> 16) & 255, (hp >> 8) & 255, hp & 255,
           jansson_version_str(), OpenSSL_version(OPENSSL_VERSION));
}

/* What the command line asked for, once parsed. Returns the exit status. */
static int run(struct uc_cli *cli)
{
    char err[1024];
    uc_log_threshold = cli->log_level;
    uc_log_json = cli->log_json;
    if (cli->check) {
        struct ucl_limits limits = limits_of(cli);
        struct ucl_policy *policy = ucl_policy_new(cli->script, &limits, err, sizeof err);
        if (!policy) {
            fprintf(stderr, "uidcast: %s\n", err);
            return 1;
        }
        if (cli->config)
            printf("uidcast: %s and %s are OK\n", cli->config, cli->script);
        else
            printf("uidcast: %s is OK\n", cli->script);
        ucl_policy_free(policy);
        return 0;
    }
    if (cli->opt.workers > 1) {
        /* A script that cannot load would only make every worker die at start, over and over:
         * refuse it here, once, as a single process would. */
        struct ucl_limits limits = limits_of(cli);
        struct ucl_policy *policy = ucl_policy_new(cli->script, &limits, err, sizeof err);
        if (!policy) {
            uc_error("cannot load script: %s", err);
            return 1;
        }
        ucl_policy_free(policy);
        return uc_supervise(cli, serve);
    }
    return serve(cli);
}

int main(int argc, char **argv)
{
    struct uc_cli cli;
    char err[1024];
    int status = 0;
    switch (uc_cli_parse(argc, argv, &cli, err, sizeof err)) {
    case UC_CLI_EXIT_OK: break;
    case UC_CLI_VERSION: print_version(); break;
    case UC_CLI_USAGE:
        fprintf(stderr, "uidcast: %s\nTry 'uidcast --help' for the options.\n", err);
        status = 2;
        break;
    case UC_CLI_RUN: status = run(&cli); break;
    }
    uc_cli_free(&cli);
    return status;
}

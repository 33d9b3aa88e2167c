/* webhook.h -- the application's backend told of events over HTTP (see webhook.c): online and
 * offline, and kept messages dropped undelivered, POSTed as signed JSON. */
#ifndef UC_WEBHOOK_H
#define UC_WEBHOOK_H

#include <stddef.h>
#include <stdint.h>

#include "server.h"

struct ev_loop;
struct uc_webhook;

struct uc_webhook_options {
    const char *url;
    const char *secret;  /* the HMAC-SHA256 key, or NULL: unsigned */
    double timeout;      /* seconds per attempt */
    double retry_for;    /* seconds from the first attempt until it is given up */
    const char *node_id; /* said in each event, or NULL */
};

/* A webhook on loop. NULL with a message in err when libcurl cannot start. */
struct uc_webhook *uc_webhook_new(struct ev_loop *loop, const struct uc_webhook_options *opts,
                                  char *err, size_t err_size);
/* Queues an event: {"event":"online"|"offline","uid":...,"version":N,"time":T}. */
void uc_webhook_presence(struct uc_webhook *wh, const char *uid, size_t uid_len, int online,
                         uint64_t version);
/* Queues {"event":"undelivered","uid":...,"seq":N,"reason":...,"data":...} (data in base64
 * with "binary":true for a binary message). */
void uc_webhook_undelivered(struct uc_webhook *wh, const char *uid, size_t uid_len, uint64_t seq,
                            const void *data, size_t len, int binary, const char *reason);
/* What to give uc_server_attach: the webhook_* counters, and freed with the server. */
struct uc_service uc_webhook_service(struct uc_webhook *wh);
void uc_webhook_free(struct uc_webhook *wh);

#endif

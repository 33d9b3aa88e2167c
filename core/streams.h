/* streams.h -- the cluster's store of kept messages: Redis Streams, reached through the broker's
 * connection (see streams.c). What --redis uses instead of the embedded store (mailbox.h). */
#ifndef UC_STREAMS_H
#define UC_STREAMS_H

#include <stddef.h>

#include "server.h"

struct ev_loop;
struct uc_broker;
struct uc_streams;

/* A store on broker's Redis, each uid's stream capped at max_messages and max_bytes of
 * payload (the oldest go first); undelivered (with arg)
 * hears, on one node of the cluster, of each kept message whose keep ran out before any
 * connection was handed it. NULL when out of memory. Attach its service before the broker's,
 * so that it outlives the broker's last answers. */
struct uc_streams *uc_streams_new(struct ev_loop *loop, struct uc_broker *broker,
                                  size_t max_messages, size_t max_bytes,
                                  uc_undelivered_fn *undelivered, void *arg);
struct uc_store uc_streams_store(struct uc_streams *st);
struct uc_service uc_streams_service(struct uc_streams *st);
void uc_streams_free(struct uc_streams *st);

#endif

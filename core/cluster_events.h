/* cluster_events.h -- online and offline events over a cluster (see cluster_events.c): a
 * uid's first connection on any node makes it online, its last one gone from every node for
 * the grace period makes it offline, once in the whole cluster, on one node; a node that dies
 * counts as gone once its presence expires (--presence-ttl). */
#ifndef UC_CLUSTER_EVENTS_H
#define UC_CLUSTER_EVENTS_H

#include "server.h"

struct uc_broker;
struct uc_cluster_events;

/* Events decided in the broker's Redis, each handed to emit(…, arg) from the loop. NULL when
 * out of memory. */
struct uc_cluster_events *uc_cluster_events_new(struct uc_server *srv, struct uc_broker *broker,
                                                double grace, uc_presence_event_fn *emit,
                                                void *arg);
/* What to give uc_server_set_tracker, and uc_server_attach: attach it before the broker, so
 * that it is freed after it (the broker's last answers, at its teardown, reach it). */
struct uc_tracker uc_cluster_events_tracker(struct uc_cluster_events *ce);
struct uc_service uc_cluster_events_service(struct uc_cluster_events *ce);
void uc_cluster_events_free(struct uc_cluster_events *ce);

#endif

/* events.h -- online and offline events of a node that is alone (see events.c): a uid's first
 * connection makes it online, its last one gone for the grace period makes it offline. */
#ifndef UC_EVENTS_H
#define UC_EVENTS_H

#include "server.h"

struct ev_loop;
struct uc_events;

/* Events on loop, each handed to emit(…, arg) from the loop; a uid that returns within grace
 * seconds of leaving makes no event. NULL when out of memory. */
struct uc_events *uc_events_new(struct ev_loop *loop, double grace, uc_presence_event_fn *emit,
                                void *arg);
/* What to give uc_server_set_tracker, and uc_server_attach (freed with the server; a
 * graceful stop makes the uids waiting out their grace offline at once). */
struct uc_tracker uc_events_tracker(struct uc_events *ev);
struct uc_service uc_events_service(struct uc_events *ev);
void uc_events_free(struct uc_events *ev);

#endif

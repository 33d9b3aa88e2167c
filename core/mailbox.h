/* mailbox.h -- the embedded store of kept messages: for each uid, in this process's memory,
 * the messages sent with `keep`, numbered, until they expire or a cap drops them. A
 * connection that resumes is replayed what it missed. Survives reconnects, not a restart.
 *
 * Numbers are per uid, strictly increasing, never reused while the process runs: a uid's
 * first message is numbered one above the store's floor, which starts at the clock (in
 * microseconds) when the store is made, so numbers of an earlier run are below it, and rises
 * to the last number of every mailbox the store forgets (emptied by expiry or eviction). */
#ifndef UC_MAILBOX_H
#define UC_MAILBOX_H

#include <stddef.h>
#include <stdint.h>

#include "server.h"

struct ev_loop;
struct uc_mailbox;

struct uc_mailbox_limits {
    size_t max_messages; /* per uid; the oldest go first */
    size_t max_bytes;    /* payload bytes per uid; the oldest go first */
    size_t memory;       /* bytes the whole store may hold, bookkeeping included */
};

/* A store on loop; undelivered (may be NULL) is called with arg, from the loop, never inside a
 * delivery. NULL when out of memory. */
struct uc_mailbox *uc_mailbox_new(struct ev_loop *loop, const struct uc_mailbox_limits *limits,
                                  uc_undelivered_fn *undelivered, void *arg);
/* The store as the server uses it, and as a service (freed with the server). */
struct uc_store uc_mailbox_store(struct uc_mailbox *mb);
struct uc_service uc_mailbox_service(struct uc_mailbox *mb);
void uc_mailbox_free(struct uc_mailbox *mb);

#endif

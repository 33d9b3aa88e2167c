/* push.h -- the HTTP push API (--push): other systems deliver to uids, groups and everyone, and
 * read presence and counters, over HTTP/1.1 with keep-alive. A client of the server's public
 * API: main creates it and attaches it (uc_push_service), the server never calls it. */
#ifndef UC_PUSH_H
#define UC_PUSH_H

#include <stddef.h>

#include "server.h"

struct uc_push;

/* Listens on spec (and logs where). token (may be NULL) is copied. Returns NULL with a message
 * in err. */
struct uc_push *uc_push_new(struct uc_server *srv, const char *spec, const char *token, char *err,
                            size_t err_size);

/* Stops accepting; open push connections finish their current response and close. */
void uc_push_stop(struct uc_push *push);

void uc_push_free(struct uc_push *push);

/* What to give uc_server_attach: stopped when a graceful stop begins, freed with the server. */
struct uc_service uc_push_service(struct uc_push *push);

/* Serves an already connected socket (non-blocking) as a push connection; takes ownership of
 * fd. The listener uses it, and so does the fuzzer. */
void uc_push_adopt(struct uc_push *push, int fd);

const char *uc_push_addr(const struct uc_push *push);

/* Open push connections. */
size_t uc_push_connections(const struct uc_push *push);

#endif

/* www.h -- static files served on the WebSocket port (--www DIR): a plain GET that is not an
 * upgrade gets a file of DIR (the client library and the demo page) instead of 426. Read-only,
 * nothing outside DIR, answers within the handshake's limits and then closed. */
#ifndef UC_WWW_H
#define UC_WWW_H

#include "buf.h"

struct uc_www;
struct uc_http_request;

/* The directory dir, served. NULL with a message in err when it is not a readable directory. */
struct uc_www *uc_www_open(const char *dir, char *err, size_t err_size);
void uc_www_free(struct uc_www *w);

/* The whole answer to req (GET or HEAD: 200 with the file, 304 when If-None-Match holds its
 * ETag, 404; other methods 405), ending with "Connection: close"; *status gets its status.
 * NULL when out of memory. */
struct uc_buf *uc_www_respond(const struct uc_www *w, const struct uc_http_request *req,
                              int *status);

#endif

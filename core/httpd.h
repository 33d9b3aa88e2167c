/* httpd.h -- a small HTTP/1.1 server on the server's loop (see httpd.c): keep-alive,
 * pipelining, Content-Length and chunked bodies, answers in request order, an answer that may
 * come later. The push API's routes (push.c) sit on it. */
#ifndef UC_HTTPD_H
#define UC_HTTPD_H

#include <stddef.h>
#include <stdint.h>

struct ev_loop;
struct uc_httpd;
struct uc_httpd_conn;
struct uc_httpd_later;

struct uc_httpd_request {
    int method; /* http-parser's HTTP_GET, HTTP_POST, ... */
    const char *url;
    size_t url_len;
    const char *auth; /* the Authorization header, or empty */
    size_t auth_len;
    const char *body;
    size_t body_len;
};

/* One complete request (borrowed for the call): answer it with uc_httpd_respond before
 * returning, or take uc_httpd_defer and answer later. */
typedef void uc_httpd_handler(void *ctx, struct uc_httpd_conn *c,
                              const struct uc_httpd_request *req);

struct uc_httpd_options {
    const char *name;     /* in the log: "push API" */
    double idle_timeout;  /* seconds a connection may idle between requests */
    double close_timeout; /* seconds a closing connection lingers for the client's EOF */
    size_t max_body;      /* larger bodies are refused with 413 before they are read */
};

/* Serves the listening socket fd (the caller's, which closes it after uc_httpd_free). */
struct uc_httpd *uc_httpd_new(struct ev_loop *loop, int fd, const struct uc_httpd_options *opts,
                              uc_httpd_handler *handler, void *ctx);
/* Serves an already connected socket (non-blocking), taking it: the fuzzer's way in. */
void uc_httpd_adopt(struct uc_httpd *h, int fd);
/* Queues the answer to the request being handled (extra: more header lines, each ending in
 * CRLF, or NULL). The server's own refusals (a head over 8 KiB, a body over max_body, a
 * malformed request) are JSON {"error": ...}, as the routes' should be. */
void uc_httpd_respond(struct uc_httpd_conn *c, int status, const char *extra, const char *type,
                      const void *body, size_t len);
/* The request being handled is answered later: nothing more is read from its connection (and
 * no later answer overtakes it) until uc_httpd_answer. NULL when out of memory (then answer
 * at once). The handle outlives the connection. */
struct uc_httpd_later *uc_httpd_defer(struct uc_httpd_conn *c);
/* Answers a deferred request and frees the handle; only frees it when the connection went
 * away meanwhile. May be called inside the handler that deferred. */
void uc_httpd_answer(struct uc_httpd_later *later, int status, const char *extra, const char *type,
                     const void *body, size_t len);
/* Stops accepting: open connections finish their answers and close. */
void uc_httpd_stop(struct uc_httpd *h);
void uc_httpd_free(struct uc_httpd *h);
/* Requests read (answered or refused), and open connections. */
uint64_t uc_httpd_requests(const struct uc_httpd *h);
size_t uc_httpd_connections(const struct uc_httpd *h);

#endif

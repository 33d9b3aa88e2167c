/* httpd.c -- a small HTTP/1.1 server: the push API's transport.
 *
 * Requests are parsed as a stream with http-parser, so keep-alive, pipelining, Content-Length
 * and chunked bodies all come from the library. Each complete request goes to the handler
 * from on_message_complete. An answer may come later (uc_httpd_defer): the connection then
 * pauses, the parser stops after that request, the bytes already read behind it are kept,
 * reading stops, and everything resumes in order once the answer is written, so pipelined
 * answers never overtake each other. A client that pipelines without reading its answers is
 * read no further while MAX_UNSENT waits to be written.
 *
 * A connection is owned by the server's list from accept to close; a deferred handle is
 * owned by whoever answers it, and only loses its connection (c = NULL) when that goes. */
#include "httpd.h"

#include <errno.h>
#include <http_parser.h>
#include <jansson.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <utlist.h>

#include <ev.h>

#include "acceptor.h"
#include "buf.h"
#include "container.h"
#include "http.h"
#include "log.h"
#include "outq.h"
#include "str.h"

#define MAX_URL 4096
#define MAX_AUTH 1024
/* Unsent answers one connection may have before it is read no further: a client that pipelines
 * requests and never reads the answers holds at most this much (plus one read). */
#define MAX_UNSENT (256 * 1024)
/* After a final answer (413, 400, Connection: close) the socket is half-closed and what the
 * client still sends is read and dropped, up to this many bytes or the close timeout, so that
 * the answer is not destroyed by the RST a close with unread input sends (as nginx lingers). */
#define LINGER_BYTES (8 * 1024 * 1024)

struct uc_httpd_later {
    struct uc_httpd_conn *c; /* NULL once the connection went away */
};

struct uc_httpd_conn {
    struct uc_httpd *h;
    ev_io rio, wio;
    ev_timer timer;
    int fd;
    int closing;     /* answer sent that ends the connection: close once flushed */
    int lingering;   /* that answer is sent: reading and dropping until EOF */
    size_t lingered; /* bytes dropped while lingering */
    int held;        /* parsing paused (an answer waits, or too much unsent): not reading */
    int handling;    /* inside the handler: answers are queued, written after the parse */
    unsigned active_iteration; /* the loop iteration it last made progress in */
    int write_wait;            /* write watcher started after EAGAIN */
    http_parser parser;
    struct uc_outq outq;
    /* the request being parsed */
    size_t head_bytes;
    char url[MAX_URL];
    size_t url_len;
    char field[32];
    size_t field_len;
    int last_was_value;
    char auth[MAX_AUTH];
    size_t auth_len;
    int in_auth;
    char *body;
    size_t body_len, body_cap;
    struct uc_httpd_later *waiting; /* the request paused for its answer, or NULL */
    char *stash;                    /* bytes read behind the request parsing paused after */
    size_t stash_len;
    struct uc_httpd_conn *prev, *next;
};

struct uc_httpd {
    struct ev_loop *loop;
    struct uc_httpd_options opt;
    uc_httpd_handler *handler;
    void *ctx;
    struct uc_acceptor acceptor;
    int accepting;
    uint64_t requests;
    size_t nconns;
    uint8_t rbuf[64 * 1024]; /* one read buffer for every connection */
    struct uc_httpd_conn *conns;
};

/* True when the connection must stop after the request just parsed: an answer waits (answers
 * stay in order), or more than MAX_UNSENT is waiting to be written. */
static int must_hold(const struct uc_httpd_conn *c)
{
    return c->waiting || uc_outq_bytes(&c->outq) > MAX_UNSENT;
}

/* The idle timeout counts from the connection's last progress (a request parsed, answers
 * written). The deadline is set from the loop's cached time, which one long iteration (a read
 * carrying thousands of pipelined requests, under valgrind say) can leave behind: timeout_cb
 * therefore spares a connection that made progress in the iteration before. */
static void restart_idle_timer(struct uc_httpd_conn *c)
{
    c->active_iteration = ev_iteration(c->h->loop);
    ev_timer_again(c->h->loop, &c->timer);
}

/* ---- answers ---- */

void uc_httpd_respond(struct uc_httpd_conn *c, int status, const char *extra, const char *type,
                      const void *body, size_t len)
{
    int keep = !c->closing && http_should_keep_alive(&c->parser);
    /* An HTTP/1.0 client keeps the connection only when told so (ab -k, old proxies): without
     * the header it would wait for a close that never comes. */
    char headers[256];
    if (keep && c->parser.http_major == 1 && c->parser.http_minor == 0 &&
        (size_t)snprintf(headers, sizeof headers, "Connection: keep-alive\r\n%s",
                         extra ? extra : "") < sizeof headers)
        extra = headers;
    struct uc_buf *b = uc_http_response(status, extra, type, body, len, keep);
    if (!keep)
        c->closing = 1;
    if (b) {
        uc_outq_push(&c->outq, b);
        uc_buf_unref(b);
    } else {
        c->closing = 1;
    }
}

/* The server's own refusal: {"error": msg}, logged. */
static void refuse(struct uc_httpd_conn *c, int status, const char *msg)
{
    uc_info("%s %d: %s", c->h->opt.name, status, msg);
    json_t *o = json_pack("{s:s}", "error", msg);
    char text[512];
    size_t len = o ? json_dumpb(o, text, sizeof text, JSON_COMPACT) : 0;
    json_decref(o);
    if (!len || len > sizeof text)
        len = (size_t)snprintf(text, sizeof text, "{\"error\":\"refused\"}");
    uc_httpd_respond(c, status, NULL, "application/json", text, len);
}

static void conn_free(struct uc_httpd_conn *c);
static void flush(struct uc_httpd_conn *c);
static void feed(struct uc_httpd_conn *c, const char *data, size_t len);

struct uc_httpd_later *uc_httpd_defer(struct uc_httpd_conn *c)
{
    struct uc_httpd_later *l = malloc(sizeof *l);
    if (l) {
        l->c = c;
        c->waiting = l; /* on_message_complete pauses the parser */
    }
    return l;
}

void uc_httpd_answer(struct uc_httpd_later *l, int status, const char *extra, const char *type,
                     const void *body, size_t len)
{
    struct uc_httpd_conn *c = l->c;
    free(l);
    if (!c)
        return; /* the connection went away */
    c->waiting = NULL;
    uc_httpd_respond(c, status, extra, type, body, len);
    if (!c->handling)
        flush(c); /* and, once the answers are out, what was read behind this request */
}

/* Answers a request that cannot be read to its end, and stops reading the connection. */
static void fail(struct uc_httpd_conn *c, int status, const char *msg)
{
    if (c->closing)
        return;
    c->h->requests++;
    c->closing = 1;
    refuse(c, status, msg);
    /* http-parser aborts the process if asked to pause a parser that already failed. */
    if (HTTP_PARSER_ERRNO(&c->parser) == HPE_OK)
        http_parser_pause(&c->parser, 1);
}

/* ---- http-parser callbacks ---- */

static int on_message_begin(http_parser *p)
{
    struct uc_httpd_conn *c = p->data;
    c->head_bytes = c->url_len = c->field_len = c->auth_len = c->body_len = 0;
    c->last_was_value = c->in_auth = 0;
    return 0;
}

static int count_head(struct uc_httpd_conn *c, size_t len)
{
    c->head_bytes += len;
    if (c->head_bytes > UC_HTTP_MAX_HEAD) {
        fail(c, 431, "request head larger than 8 KiB");
        return -1;
    }
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    struct uc_httpd_conn *c = p->data;
    if (count_head(c, len))
        return 0;
    if (c->url_len + len > sizeof c->url) {
        fail(c, 414, "request target longer than 4 KiB");
        return 0;
    }
    memcpy(c->url + c->url_len, at, len);
    c->url_len += len;
    return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    struct uc_httpd_conn *c = p->data;
    if (count_head(c, len))
        return 0;
    if (c->last_was_value) {
        c->field_len = 0;
        c->last_was_value = 0;
    }
    for (size_t i = 0; i < len && c->field_len < sizeof c->field; i++)
        c->field[c->field_len++] = uc_lower(at[i]);
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    struct uc_httpd_conn *c = p->data;
    if (count_head(c, len))
        return 0;
    if (!c->last_was_value) {
        c->last_was_value = 1;
        c->in_auth = uc_str_eq(c->field, c->field_len, UC_LIT("authorization"));
        if (c->in_auth)
            c->auth_len = 0;
    }
    if (c->in_auth) {
        size_t room = sizeof c->auth - c->auth_len;
        size_t n = len < room ? len : room;
        memcpy(c->auth + c->auth_len, at, n);
        c->auth_len += n;
    }
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    struct uc_httpd_conn *c = p->data;
    /* Refuse before reading a byte of a body that can only be refused. */
    if (p->content_length != ULLONG_MAX && p->content_length > c->h->opt.max_body)
        fail(c, 413, "body larger than --max-message");
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    struct uc_httpd_conn *c = p->data;
    if (c->closing)
        return 0;
    if (c->body_len + len > c->h->opt.max_body) {
        fail(c, 413, "body larger than --max-message");
        return 0;
    }
    if (c->body_len + len > c->body_cap) {
        size_t cap = c->body_cap ? c->body_cap : 4096;
        while (cap < c->body_len + len)
            cap *= 2;
        char *grown = realloc(c->body, cap);
        if (!grown) {
            fail(c, 503, "out of memory");
            return 0;
        }
        c->body = grown;
        c->body_cap = cap;
    }
    memcpy(c->body + c->body_len, at, len);
    c->body_len += len;
    return 0;
}

static int on_message_complete(http_parser *p)
{
    struct uc_httpd_conn *c = p->data;
    if (c->closing)
        return 0;
    c->h->requests++;
    struct uc_httpd_request req = {.method = (int)p->method,
                                   .url = c->url,
                                   .url_len = c->url_len,
                                   .auth = c->auth,
                                   .auth_len = c->auth_len,
                                   .body = c->body ? c->body : "",
                                   .body_len = c->body_len};
    c->handling = 1;
    c->h->handler(c->h->ctx, c, &req);
    c->handling = 0;
    /* A large body's buffer is not kept for the next request on this connection. */
    if (c->body_cap > 65536) {
        free(c->body);
        c->body = NULL;
        c->body_cap = 0;
    }
    restart_idle_timer(c);
    if (c->closing || must_hold(c))
        http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* ---- connection lifecycle ---- */

static void conn_free(struct uc_httpd_conn *c)
{
    struct uc_httpd *h = c->h;
    ev_io_stop(h->loop, &c->rio);
    ev_io_stop(h->loop, &c->wio);
    ev_timer_stop(h->loop, &c->timer);
    close(c->fd);
    DL_DELETE(h->conns, c);
    h->nconns--;
    if (c->waiting)
        c->waiting->c = NULL; /* whoever answers frees it */
    uc_outq_clear(&c->outq);
    free(c->stash);
    free(c->body);
    free(c);
}

/* Parses again what was read behind the request parsing paused after, once nothing holds the
 * connection any more; then reads again, unless a request in that stash held it anew. */
static void resume(struct uc_httpd_conn *c)
{
    char *stash = c->stash;
    size_t stash_len = c->stash_len;
    c->stash = NULL;
    c->stash_len = 0;
    c->held = 0;
    http_parser_pause(&c->parser, 0);
    if (stash_len)
        feed(c, stash, stash_len);
    free(stash);
    if (!c->held && !c->closing)
        ev_io_start(c->h->loop, &c->rio);
}

/* The answers are out and no more will come: half-close, then drop what the client still sends
 * until its EOF (or LINGER_BYTES, or the close timeout). */
static void linger(struct uc_httpd_conn *c)
{
    struct ev_loop *loop = c->h->loop;
    shutdown(c->fd, SHUT_WR);
    c->lingering = 1;
    ev_io_start(loop, &c->rio);
    ev_timer_stop(loop, &c->timer);
    ev_timer_set(&c->timer, c->h->opt.close_timeout, 0.);
    ev_timer_start(loop, &c->timer);
}

/* Flushes, and resumes a connection held for its backlog once the backlog is written; frees
 * c on a write error. */
static void flush(struct uc_httpd_conn *c)
{
    for (;;) {
        size_t before = uc_outq_bytes(&c->outq);
        int r = uc_outq_flush(&c->outq, c->fd);
        if (r < 0) {
            conn_free(c);
            return;
        }
        /* A client reading its answers is not idle, even while nothing new is parsed (the
         * connection is held for its backlog): the idle timeout counts from the last progress
         * either way. */
        if (uc_outq_bytes(&c->outq) < before && !c->lingering)
            restart_idle_timer(c);
        if (r == UC_AGAIN) {
            if (!c->write_wait) {
                c->write_wait = 1;
                ev_io_start(c->h->loop, &c->wio);
            }
            return;
        }
        if (c->write_wait) {
            c->write_wait = 0;
            ev_io_stop(c->h->loop, &c->wio);
        }
        if (c->closing) {
            if (!c->lingering)
                linger(c);
            return;
        }
        if (!c->held || c->waiting)
            return;
        resume(c); /* may answer more: write those too */
        if (uc_outq_empty(&c->outq))
            return;
    }
}

static void read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    struct uc_httpd_conn *c = container_of(w, struct uc_httpd_conn, rio);
    struct uc_httpd *h = c->h;
    ssize_t n = recv(c->fd, h->rbuf, sizeof h->rbuf, 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        conn_free(c);
        return;
    }
    if (c->lingering) {
        c->lingered += (size_t)n;
        if (c->lingered > LINGER_BYTES)
            conn_free(c);
        return;
    }
    if (c->closing)
        return; /* answered and closing: what follows is ignored */
    feed(c, (const char *)h->rbuf, (size_t)n);
    flush(c);
}

/* Parses data; when a request pauses the connection, keeps the rest and stops reading. */
static void feed(struct uc_httpd_conn *c, const char *data, size_t len)
{
    size_t used = http_parser_execute(&c->parser, &settings, data, len);
    enum http_errno err = HTTP_PARSER_ERRNO(&c->parser);
    if (err == HPE_PAUSED && !c->closing) { /* held: see must_hold */
        if (used < len) {
            c->stash = malloc(len - used);
            if (!c->stash) {
                fail(c, 503, "out of memory");
                return;
            }
            memcpy(c->stash, data + used, len - used);
            c->stash_len = len - used;
        }
        c->held = 1;
        ev_io_stop(c->h->loop, &c->rio);
        return;
    }
    if (err != HPE_OK && err != HPE_PAUSED) {
        char msg[160];
        snprintf(msg, sizeof msg, "malformed HTTP request: %s", http_errno_description(err));
        fail(c, 400, msg);
    }
}

static void write_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    flush(container_of(w, struct uc_httpd_conn, wio));
}

static void timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    struct uc_httpd_conn *c = container_of(w, struct uc_httpd_conn, timer);
    if (!c->lingering && ev_iteration(loop) - c->active_iteration <= 1) {
        ev_timer_again(loop, w); /* busy until just now: the deadline was set from stale time */
        return;
    }
    conn_free(c);
}

void uc_httpd_adopt(struct uc_httpd *h, int fd)
{
    struct uc_httpd_conn *c = calloc(1, sizeof *c);
    if (!c) {
        close(fd);
        return;
    }
    c->h = h;
    c->fd = fd;
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    ev_io_init(&c->rio, read_cb, fd, EV_READ);
    ev_io_init(&c->wio, write_cb, fd, EV_WRITE);
    ev_init(&c->timer, timeout_cb);
    c->timer.repeat = h->opt.idle_timeout;
    ev_io_start(h->loop, &c->rio);
    ev_timer_again(h->loop, &c->timer);
    DL_PREPEND(h->conns, c);
    h->nconns++;
}

static void accepted(void *ctx, int fd, const struct sockaddr *addr)
{
    (void)addr;
    uc_httpd_adopt(ctx, fd);
}

struct uc_httpd *uc_httpd_new(struct ev_loop *loop, int fd, const struct uc_httpd_options *opts,
                              uc_httpd_handler *handler, void *ctx)
{
    struct uc_httpd *h = calloc(1, sizeof *h);
    if (!h)
        return NULL;
    h->loop = loop;
    h->opt = *opts;
    h->handler = handler;
    h->ctx = ctx;
    uc_acceptor_init(&h->acceptor, loop, fd, 16, opts->name, accepted, h);
    uc_acceptor_start(&h->acceptor);
    h->accepting = 1;
    return h;
}

void uc_httpd_stop(struct uc_httpd *h)
{
    if (h->accepting)
        uc_acceptor_free(&h->acceptor);
    h->accepting = 0;
}

void uc_httpd_free(struct uc_httpd *h)
{
    if (!h)
        return;
    uc_httpd_stop(h);
    while (h->conns)
        conn_free(h->conns);
    free(h);
}

uint64_t uc_httpd_requests(const struct uc_httpd *h) { return h->requests; }

size_t uc_httpd_connections(const struct uc_httpd *h) { return h->nconns; }

/* push.c -- the HTTP push API: POST /send, POST /broadcast, GET /online, /stats, /metrics.
 *
 * Requests are parsed as a stream with http-parser, so keep-alive, pipelining, Content-Length
 * and chunked bodies all come from the library. Each complete request is answered from
 * on_message_complete; deliveries go straight to the core (the Lua policy is for WebSocket
 * clients, a push is already authorised by its token). Every error is a JSON body.
 *
 * GET /online may have to wait for Redis (cluster presence). The connection then pauses: the
 * parser stops after that request, the bytes already read behind it are kept, reading stops,
 * and everything resumes in order once the answer is written, so pipelined answers never
 * overtake each other. */
#include "push.h"

#include <errno.h>
#include <http_parser.h>
#include <jansson.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/crypto.h>
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
#include "net.h"
#include "outq.h"
#include "procstat.h"
#include "server.h"
#include "stats.h"
#include "str.h"
#include "umap.h"
#include "utf8.h"

#define PUSH_MAX_URL 4096
#define PUSH_MAX_AUTH 1024
/* Unsent answers one connection may have before it is read no further: a client that pipelines
 * requests and never reads the answers holds at most this much (plus one read). */
#define PUSH_MAX_UNSENT (256 * 1024)
/* After a final answer (413, 400, Connection: close) the socket is half-closed and what the
 * client still sends is read and dropped, up to this many bytes or --close-timeout, so that
 * the answer is not destroyed by the RST a close with unread input sends (as nginx lingers). */
#define PUSH_LINGER_BYTES (8 * 1024 * 1024)

/* A request waiting for its answer: a GET /online for its count (uid is the one asked of), a
 * kept POST /send for its number (no uid), a command on a uid's connections (op UC_UID_*,
 * which runs when the count is in; arg after the uid), a GET /uids or /members for its page
 * (op 'u' or 'g', the group in uid). Owned by whoever answers; the
 * connection may be freed first, which only clears pc. */
struct online_wait {
    struct push_conn *pc;
    struct uc_server *srv; /* for a command, which runs even when pc went away */
    int op, code;
    size_t uid_len, arg_len;
    char uid[];
};

struct push_conn {
    struct uc_push *push;
    ev_io rio, wio;
    ev_timer timer;
    int fd;
    int closing;     /* answer sent that ends the connection: close once flushed */
    int lingering;   /* that answer is sent: reading and dropping until EOF */
    size_t lingered; /* bytes dropped while lingering */
    int held;        /* parsing paused (a GET /online waits, or too much unsent): not reading */
    unsigned active_iteration; /* the loop iteration it last made progress in */
    int write_wait;            /* write watcher started after EAGAIN */
    http_parser parser;
    struct uc_outq outq;
    /* the request being parsed */
    size_t head_bytes;
    char url[PUSH_MAX_URL];
    size_t url_len;
    char field[32];
    size_t field_len;
    int last_was_value;
    char auth[PUSH_MAX_AUTH];
    size_t auth_len;
    int in_auth;
    char *body;
    size_t body_len, body_cap;
    struct online_wait *waiting; /* a request paused for its answer, or NULL */
    char *stash;                 /* bytes read behind the request parsing paused after */
    size_t stash_len;
    struct push_conn *prev, *next;
};

struct uc_push {
    struct uc_server *srv;
    uint64_t requests;       /* push_requests */
    uint8_t rbuf[64 * 1024]; /* one read buffer for every push connection */
    int fd;
    struct uc_acceptor acceptor;
    char *token;
    size_t token_len;
    char addr[300];
    struct push_conn *conns;
};

/* True when the connection must stop after the request just parsed: a GET /online waits for
 * its answer (answers stay in order), or more than PUSH_MAX_UNSENT is waiting to be written. */
static int must_hold(const struct push_conn *pc)
{
    return pc->waiting || uc_outq_bytes(&pc->outq) > PUSH_MAX_UNSENT;
}

/* --push-timeout counts from the connection's last progress (a request parsed, answers
 * written). The deadline is set from the loop's cached time, which one long iteration (a read
 * carrying thousands of pipelined requests, under valgrind say) can leave behind: timeout_cb
 * therefore spares a connection that made progress in the iteration before. */
static void restart_idle_timer(struct push_conn *pc)
{
    struct ev_loop *loop = uc_server_loop(pc->push->srv);
    pc->active_iteration = ev_iteration(loop);
    ev_timer_again(loop, &pc->timer);
}

/* ---- responses ---- */

static void respond(struct push_conn *pc, int status, const char *extra, const char *type,
                    const char *body, size_t len)
{
    int keep = !pc->closing && http_should_keep_alive(&pc->parser);
    struct uc_buf *b = uc_http_response(status, extra, type, body, len, keep);
    if (!keep)
        pc->closing = 1;
    if (b) {
        uc_outq_push(&pc->outq, b);
        uc_buf_unref(b);
    } else {
        pc->closing = 1;
    }
}

/* Answers body as compact JSON text, and drops the reference; a NULL body (jansson ran out of
 * memory building it) is answered 503. */
static void respond_value(struct push_conn *pc, int status, const char *extra, json_t *body)
{
    static const char oom[] = "{\"error\":\"out of memory\"}";
    const size_t flags = JSON_COMPACT | JSON_REAL_PRECISION(15);
    char small[1024], *text = small;
    size_t len = body ? json_dumpb(body, small, sizeof small, flags) : 0;
    if (len > sizeof small && (text = malloc(len)) != NULL)
        len = json_dumpb(body, text, len, flags);
    json_decref(body);
    if (text && len)
        respond(pc, status, extra, "application/json", text, len);
    else
        respond(pc, 503, extra, "application/json", oom, sizeof oom - 1);
    if (text != small)
        free(text);
}

static void respond_error(struct push_conn *pc, int status, const char *extra, const char *msg)
{
    if (status >= 400 && status != 401 && status != 404 && status != 405)
        uc_info("push %d: %s", status, msg);
    respond_value(pc, status, extra, json_pack("{s:s}", "error", msg));
}

/* A uid as a JSON string: as it is when it is UTF-8, else each byte as the code point of the
 * same number (U+0000..U+00FF), so that any uid can be echoed. */
static json_t *uid_value(const char *uid, size_t len)
{
    if (uc_utf8_valid((const uint8_t *)uid, len))
        return json_stringn(uid, len);
    char text[2 * UC_UID_MAX];
    size_t o = 0;
    for (size_t i = 0; i < len && i < UC_UID_MAX; i++) {
        unsigned char c = (unsigned char)uid[i];
        if (c < 0x80) {
            text[o++] = (char)c;
        } else {
            text[o++] = (char)(0xc0 | c >> 6);
            text[o++] = (char)(0x80 | (c & 0x3f));
        }
    }
    return json_stringn(text, o);
}

/* ---- endpoints ---- */

/* The query parameter name, decoded; 1 found, 0 absent, -1 malformed or too long. */
static int query_value(struct http_parser_url *u, const char *url, const char *name, char *out,
                       size_t cap, size_t *len)
{
    if (!(u->field_set & (1 << UF_QUERY)))
        return 0;
    long n = uc_http_query_param(url + u->field_data[UF_QUERY].off, u->field_data[UF_QUERY].len,
                                 name, out, cap);
    if (n == -1)
        return 0;
    if (n < 0)
        return -1;
    *len = (size_t)n;
    return 1;
}

static int query_flag(struct http_parser_url *u, const char *url, const char *name)
{
    char v[8];
    size_t len;
    return query_value(u, url, name, v, sizeof v, &len) == 1 && len == 1 && v[0] == '1';
}

/* r: what uc_send_uid_kept said (0 when the store answered later, with seq 0 for a refusal). */
static void answer_kept(struct push_conn *pc, int r, size_t delivered, uint64_t seq)
{
    if (r == UC_ERR_LIMIT) {
        respond_error(pc, 413, NULL,
                      "cannot be kept: larger than --mailbox-max-bytes or --mailbox-memory "
                      "(nothing was sent)");
    } else if (r == UC_ERR_UNREACHABLE) {
        /* Sent here, not kept: the store counts it, and a resume is told of the gap. */
        respond_value(pc, 200, NULL,
                      json_pack("{s:I,s:n}", "delivered", (json_int_t)delivered, "seq"));
    } else if (r != 0 || !seq) {
        respond_error(pc, 503, NULL, "the store did not take the message (nothing was sent)");
    } else {
        respond_value(
            pc, 200, NULL,
            json_pack("{s:I,s:I}", "delivered", (json_int_t)delivered, "seq", (json_int_t)seq));
    }
}

static void flush(struct push_conn *pc);

static void kept_answered(void *arg, size_t delivered, uint64_t seq)
{
    struct online_wait *w = arg;
    struct push_conn *pc = w->pc;
    free(w);
    if (!pc)
        return; /* the connection went away */
    pc->waiting = NULL;
    answer_kept(pc, 0, delivered, seq);
    flush(pc); /* and, once the answers are out, what was read behind this request */
}

static void handle_send(struct push_conn *pc, struct http_parser_url *u, int broadcast)
{
    struct uc_server *srv = pc->push->srv;
    char uid[UC_UID_MAX], group[UC_UID_MAX];
    size_t uid_len = 0, group_len = 0;
    int has_uid = 0, has_group = 0;
    if (!broadcast) {
        has_uid = query_value(u, pc->url, "uid", uid, sizeof uid, &uid_len);
        has_group = query_value(u, pc->url, "group", group, sizeof group, &group_len);
        if (has_uid < 0 || has_group < 0 || (has_uid && uid_len == 0) ||
            (has_group && group_len == 0)) {
            respond_error(pc, 400, NULL, "uid and group must be 1 to 1024 bytes, %-encoded");
            return;
        }
        if (has_uid == has_group) {
            respond_error(pc, 400, NULL, "give exactly one of ?uid= or ?group=");
            return;
        }
    }
    int binary = query_flag(u, pc->url, "binary");
    if (pc->body_len > uc_server_options(srv)->max_message) {
        respond_error(pc, 413, NULL, "body larger than --max-message");
        return;
    }
    if (!binary && !uc_utf8_valid((const uint8_t *)pc->body, pc->body_len)) {
        respond_error(pc, 400, NULL, "a text message must be valid UTF-8 (or use &binary=1)");
        return;
    }
    double keep = 0;
    char keep_text[32];
    size_t keep_len;
    int has_keep = query_value(u, pc->url, "keep", keep_text, sizeof keep_text - 1, &keep_len);
    if (has_keep) {
        char *end;
        keep_text[has_keep > 0 ? keep_len : 0] = '\0';
        keep = has_keep > 0 ? strtod(keep_text, &end) : 0;
        if (has_keep < 0 || end == keep_text || *end || !(keep > 0 && keep <= UC_KEEP_MAX)) {
            respond_error(pc, 400, NULL, "keep must be seconds, more than 0 and at most 2592000");
            return;
        }
        if (!has_uid) {
            respond_error(pc, 400, NULL, "keep is for ?uid= only (messages are kept per uid)");
            return;
        }
    }
    const char *data = pc->body ? pc->body : "";
    size_t n;
    if (has_keep) {
        /* In cluster mode Redis numbers the message: the answer waits for it, as /online's
         * does (on_message_complete pauses the parser meanwhile). */
        struct online_wait *w = malloc(sizeof *w);
        if (!w) {
            respond_error(pc, 503, NULL, "out of memory");
            return;
        }
        *w = (struct online_wait){.pc = pc};
        uint64_t seq;
        int r = uc_send_uid_kept(srv, uid, uid_len, data, pc->body_len, binary, keep, &n, &seq,
                                 kept_answered, w);
        if (r == UC_PENDING) {
            pc->waiting = w;
            return;
        }
        free(w);
        answer_kept(pc, r, n, seq);
        return;
    }
    if (broadcast)
        n = uc_broadcast(srv, data, pc->body_len, binary, NULL);
    else if (has_uid)
        n = uc_send_uid(srv, uid, uid_len, data, pc->body_len, binary, NULL);
    else
        n = uc_send_group(srv, group, group_len, data, pc->body_len, binary, NULL);
    respond_value(pc, 200, NULL, json_pack("{s:I}", "delivered", (json_int_t)n));
}

static void feed(struct push_conn *pc, const char *data, size_t len);

static void online_answered(void *arg, long long count, int partial)
{
    struct online_wait *w = arg;
    struct push_conn *pc = w->pc;
    if (!pc || count < 0) { /* the connection went away, or the server is stopping */
        if (pc)
            pc->waiting = NULL;
        free(w);
        return;
    }
    json_t *body = json_pack("{s:o,s:b,s:I}", "uid", uid_value(w->uid, w->uid_len), "online",
                             count > 0, "connections", (json_int_t)count);
    if (body && partial)
        json_object_set_new(body, "partial", json_true());
    pc->waiting = NULL;
    free(w);
    respond_value(pc, 200, NULL, body);
    flush(pc); /* and, once the answers are out, what was read behind this request */
}

static void handle_online(struct push_conn *pc, struct http_parser_url *u)
{
    char uid[UC_UID_MAX];
    size_t uid_len = 0;
    if (query_value(u, pc->url, "uid", uid, sizeof uid, &uid_len) != 1 || uid_len == 0) {
        respond_error(pc, 400, NULL, "GET /online needs ?uid= (1 to 1024 bytes, %-encoded)");
        return;
    }
    struct online_wait *w = malloc(sizeof *w + uid_len);
    if (!w) {
        respond_error(pc, 503, NULL, "out of memory");
        return;
    }
    *w = (struct online_wait){.pc = pc, .uid_len = uid_len};
    memcpy(w->uid, uid, uid_len);
    if (uc_online_query(pc->push->srv, uid, uid_len, online_answered, w) != 0) {
        free(w);
        respond_error(pc, 503, NULL, "out of memory");
        return;
    }
    pc->waiting = w; /* on_message_complete pauses the parser */
}

/* A command's count came (the uid's connections over the cluster, before it runs): it runs
 * now, on this node and, published, on the others; the client hears how many it was for. */
static void command_answered(void *arg, long long count, int partial)
{
    struct online_wait *w = arg;
    struct push_conn *pc = w->pc;
    const char *a = w->uid + w->uid_len;
    if (count >= 0) { /* -1: the server is stopping */
        if (w->op == UC_UID_DISCONNECT)
            uc_disconnect_uid(w->srv, w->uid, w->uid_len, w->code, a, w->arg_len);
        else if (w->op == UC_UID_JOIN)
            uc_join_uid(w->srv, w->uid, w->uid_len, a, w->arg_len);
        else
            uc_leave_uid(w->srv, w->uid, w->uid_len, a, w->arg_len);
    }
    int op = w->op;
    free(w);
    if (!pc)
        return; /* the client went away; the command ran all the same */
    pc->waiting = NULL;
    if (count < 0)
        return;
    json_t *body = json_pack("{s:I}",
                             op == UC_UID_DISCONNECT ? "disconnected"
                             : op == UC_UID_JOIN     ? "joined"
                                                     : "left",
                             (json_int_t)count);
    if (body && partial)
        json_object_set_new(body, "partial", json_true());
    respond_value(pc, 200, NULL, body);
    flush(pc); /* and, once the answers are out, what was read behind this request */
}

/* POST /disconnect?uid=U[&code=C&reason=R], /join?uid=U&group=G, /leave?uid=U&group=G. */
static void handle_uid_command(struct push_conn *pc, struct http_parser_url *u, int op)
{
    char uid[UC_UID_MAX], arg[UC_UID_MAX], code_text[8];
    size_t uid_len = 0, arg_len = 0, code_len = 0;
    if (query_value(u, pc->url, "uid", uid, sizeof uid, &uid_len) != 1 || !uid_len) {
        respond_error(pc, 400, NULL, "needs ?uid= (1 to 1024 bytes, %-encoded)");
        return;
    }
    int code = 1000;
    if (op == UC_UID_DISCONNECT) {
        int has = query_value(u, pc->url, "code", code_text, sizeof code_text - 1, &code_len);
        if (has) {
            code_text[has > 0 ? code_len : 0] = '\0';
            char *end;
            long c = has > 0 ? strtol(code_text, &end, 10) : 0;
            if (has < 0 || !code_len || *end || !uc_close_code_valid((int)c)) {
                respond_error(pc, 400, NULL, "code must be 1000-1003, 1007-1011 or 3000-4999");
                return;
            }
            code = (int)c;
        }
        if (query_value(u, pc->url, "reason", arg, 124, &arg_len) < 0) {
            respond_error(pc, 400, NULL, "reason must be at most 123 bytes, %-encoded");
            return;
        }
    } else if (query_value(u, pc->url, "group", arg, sizeof arg, &arg_len) != 1 || !arg_len) {
        respond_error(pc, 400, NULL, "needs ?group= (1 to 1024 bytes, %-encoded)");
        return;
    }
    struct online_wait *w = malloc(sizeof *w + uid_len + arg_len);
    if (!w) {
        respond_error(pc, 503, NULL, "out of memory");
        return;
    }
    *w = (struct online_wait){.pc = pc,
                              .srv = pc->push->srv,
                              .op = op,
                              .code = code,
                              .uid_len = uid_len,
                              .arg_len = arg_len};
    memcpy(w->uid, uid, uid_len);
    memcpy(w->uid + uid_len, arg, arg_len);
    if (uc_online_query(pc->push->srv, uid, uid_len, command_answered, w) != 0) {
        free(w);
        respond_error(pc, 503, NULL, "out of memory");
        return;
    }
    pc->waiting = w; /* on_message_complete pauses the parser */
}

static void page_answered(void *arg, const struct uc_roster_page *page)
{
    struct online_wait *w = arg;
    struct push_conn *pc = w->pc;
    if (!pc || !page) { /* the connection went away, or the server is stopping */
        if (pc)
            pc->waiting = NULL;
        free(w);
        return;
    }
    json_t *list = json_array();
    for (size_t i = 0; list && i < page->n; i++) {
        const struct uc_roster_entry *e = &page->entries[i];
        if (json_array_append_new(list, json_pack("{s:o,s:I}", "uid", uid_value(e->uid, e->len),
                                                  "connections", (json_int_t)e->connections)) !=
            0) {
            json_decref(list);
            list = NULL;
        }
    }
    char cursor[UC_ROSTER_CURSOR_LEN + 1];
    uc_roster_cursor_format(&page->next, cursor);
    json_t *body = json_pack("{s:o,s:s?}", w->op == 'u' ? "uids" : "members", list, "cursor",
                             page->more ? cursor : NULL);
    if (body && w->op == 'g')
        json_object_set_new(body, "group", uid_value(w->uid, w->uid_len));
    if (body && page->partial)
        json_object_set_new(body, "partial", json_true());
    pc->waiting = NULL;
    free(w);
    respond_value(pc, 200, NULL, body);
    flush(pc); /* and, once the answers are out, what was read behind this request */
}

/* GET /uids[?cursor=C&limit=L], GET /members?group=G[&cursor=C&limit=L]. */
static void handle_roster(struct push_conn *pc, struct http_parser_url *u, int kind)
{
    char group[UC_UID_MAX], text[24];
    size_t group_len = 0, len = 0;
    if (kind == 'g' &&
        (query_value(u, pc->url, "group", group, sizeof group, &group_len) != 1 || !group_len)) {
        respond_error(pc, 400, NULL, "GET /members needs ?group= (1 to 1024 bytes, %-encoded)");
        return;
    }
    struct uc_roster_cursor cursor = {0};
    int has = query_value(u, pc->url, "cursor", text, sizeof text, &len);
    if (has < 0 || (has && uc_roster_cursor_parse(text, len, &cursor) != 0)) {
        respond_error(pc, 400, NULL,
                      "cursor must be the \"cursor\" of the page before (16 hex digits)");
        return;
    }
    unsigned long limit = 100;
    has = query_value(u, pc->url, "limit", text, sizeof text - 1, &len);
    if (has) {
        char *end;
        text[has > 0 ? len : 0] = '\0';
        limit = has > 0 ? strtoul(text, &end, 10) : 0;
        if (has < 0 || !len || *end || text[0] == '-' || limit < 1 || limit > UC_ROSTER_LIMIT_MAX) {
            respond_error(pc, 400, NULL, "limit must be 1 to 1000");
            return;
        }
    }
    struct online_wait *w = malloc(sizeof *w + group_len);
    if (!w) {
        respond_error(pc, 503, NULL, "out of memory");
        return;
    }
    *w = (struct online_wait){.pc = pc, .op = kind, .uid_len = group_len};
    memcpy(w->uid, group, group_len);
    if (uc_members_query(pc->push->srv, kind, group, group_len, &cursor, limit, page_answered, w) !=
        0) {
        free(w);
        respond_error(pc, 503, NULL, "out of memory");
        return;
    }
    pc->waiting = w; /* on_message_complete pauses the parser */
}

/* Under --workers the counters are every worker's (see scoreboard.h), whichever one answers. */
static void handle_stats(struct push_conn *pc)
{
    struct uc_stats s;
    struct uc_process_stats p;
    unsigned workers = uc_server_stats_all(pc->push->srv, &s, &p);
    json_t *body = json_object();
    for (size_t i = 0; body && i < uc_stat_field_count; i++)
        json_object_set_new(body, uc_stat_fields[i].name,
                            json_integer((json_int_t)uc_stat_value(&s, &uc_stat_fields[i])));
    json_t *process = json_pack("{s:f,s:i,s:f,s:I,s:I,s:I,s:f}", "uptime", s.uptime, "workers",
                                (int)workers, "process_cpu_seconds_total", p.cpu_seconds,
                                "process_resident_memory_bytes", (json_int_t)p.resident_bytes,
                                "process_open_fds", (json_int_t)p.open_fds, "process_max_fds",
                                (json_int_t)p.max_fds, "process_start_time_seconds", p.start_time);
    if (body && (!process || json_object_update(body, process) != 0)) {
        json_decref(body);
        body = NULL;
    }
    json_decref(process);
    respond_value(pc, 200, NULL, body);
}

static void handle_metrics(struct push_conn *pc)
{
    struct uc_stats s;
    struct uc_process_stats p;
    unsigned workers = uc_server_stats_all(pc->push->srv, &s, &p);
    char text[16384];
    size_t o = 0;
    for (size_t i = 0; i < uc_stat_field_count; i++) {
        const struct uc_stat_field *f = &uc_stat_fields[i];
        const char *suffix = f->counter ? "_total" : "";
        o += (size_t)snprintf(text + o, sizeof text - o,
                              "# HELP uidcast_%s%s %s\n# TYPE uidcast_%s%s %s\nuidcast_%s%s %llu\n",
                              f->name, suffix, f->help, f->name, suffix,
                              f->counter ? "counter" : "gauge", f->name, suffix,
                              uc_stat_value(&s, f));
    }
    o += (size_t)snprintf(text + o, sizeof text - o,
                          "# HELP uidcast_uptime_seconds Seconds since the server started.\n"
                          "# TYPE uidcast_uptime_seconds gauge\nuidcast_uptime_seconds %.3f\n"
                          "# HELP uidcast_workers Processes serving (1 without --workers).\n"
                          "# TYPE uidcast_workers gauge\nuidcast_workers %u\n"
                          "# HELP process_cpu_seconds_total Total user and system CPU time spent "
                          "in seconds.\n# TYPE process_cpu_seconds_total counter\n"
                          "process_cpu_seconds_total %.2f\n"
                          "# HELP process_resident_memory_bytes Resident memory size in bytes.\n"
                          "# TYPE process_resident_memory_bytes gauge\n"
                          "process_resident_memory_bytes %llu\n"
                          "# HELP process_virtual_memory_bytes Virtual memory size in bytes.\n"
                          "# TYPE process_virtual_memory_bytes gauge\n"
                          "process_virtual_memory_bytes %llu\n"
                          "# HELP process_open_fds Number of open file descriptors.\n"
                          "# TYPE process_open_fds gauge\nprocess_open_fds %llu\n"
                          "# HELP process_max_fds Maximum number of open file descriptors.\n"
                          "# TYPE process_max_fds gauge\nprocess_max_fds %llu\n"
                          "# HELP process_start_time_seconds Start time of the process since "
                          "unix epoch in seconds.\n# TYPE process_start_time_seconds gauge\n"
                          "process_start_time_seconds %.2f\n",
                          s.uptime, workers, p.cpu_seconds, (unsigned long long)p.resident_bytes,
                          (unsigned long long)p.virtual_bytes, (unsigned long long)p.open_fds,
                          (unsigned long long)p.max_fds, p.start_time);
    respond(pc, 200, NULL, "text/plain; version=0.0.4", text, o);
}

static int authorized(struct push_conn *pc)
{
    struct uc_push *push = pc->push;
    if (!push->token)
        return 1;
    static const char prefix[] = "Bearer ";
    size_t plen = sizeof prefix - 1;
    if (pc->auth_len != plen + push->token_len || strncasecmp(pc->auth, prefix, plen) != 0)
        return 0;
    /* Constant time, so the comparison does not tell an attacker how much of a guess is right. */
    return CRYPTO_memcmp(pc->auth + plen, push->token, push->token_len) == 0;
}

/* Answers a request that cannot be read to its end, and stops reading the connection. */
static void fail(struct push_conn *pc, int status, const char *msg)
{
    if (pc->closing)
        return;
    pc->push->requests++;
    pc->closing = 1;
    respond_error(pc, status, NULL, msg);
    /* http-parser aborts the process if asked to pause a parser that already failed. */
    if (HTTP_PARSER_ERRNO(&pc->parser) == HPE_OK)
        http_parser_pause(&pc->parser, 1);
}

static void route(struct push_conn *pc)
{
    pc->push->requests++;
    if (!authorized(pc)) {
        respond_error(pc, 401, "WWW-Authenticate: Bearer\r\n",
                      "missing or wrong Authorization: Bearer token");
        return;
    }
    struct http_parser_url u;
    http_parser_url_init(&u);
    if (http_parser_parse_url(pc->url, pc->url_len, 0, &u) != 0 ||
        !(u.field_set & (1 << UF_PATH))) {
        respond_error(pc, 400, NULL, "malformed request target");
        return;
    }
    const char *path = pc->url + u.field_data[UF_PATH].off;
    size_t path_len = u.field_data[UF_PATH].len;
    int method = pc->parser.method;
#define IS(p) uc_str_eq(path, path_len, UC_LIT(p))
    if (IS("/send") || IS("/broadcast")) {
        if (method != HTTP_POST)
            respond_error(pc, 405, "Allow: POST\r\n", "use POST");
        else
            handle_send(pc, &u, IS("/broadcast"));
    } else if (IS("/disconnect") || IS("/join") || IS("/leave")) {
        if (method != HTTP_POST)
            respond_error(pc, 405, "Allow: POST\r\n", "use POST");
        else
            handle_uid_command(pc, &u,
                               IS("/disconnect") ? UC_UID_DISCONNECT
                               : IS("/join")     ? UC_UID_JOIN
                                                 : UC_UID_LEAVE);
    } else if (IS("/online") || IS("/uids") || IS("/members") || IS("/stats") || IS("/metrics")) {
        if (method != HTTP_GET)
            respond_error(pc, 405, "Allow: GET\r\n", "use GET");
        else if (IS("/online"))
            handle_online(pc, &u);
        else if (IS("/uids") || IS("/members"))
            handle_roster(pc, &u, IS("/uids") ? 'u' : 'g');
        else if (IS("/stats"))
            handle_stats(pc);
        else
            handle_metrics(pc);
    } else {
        respond_error(pc, 404, NULL,
                      "no such endpoint: try /send, /broadcast, /disconnect, /join, /leave, "
                      "/online, /uids, /members, /stats, /metrics");
    }
#undef IS
}

/* ---- http-parser callbacks ---- */

static int on_message_begin(http_parser *p)
{
    struct push_conn *pc = p->data;
    pc->head_bytes = pc->url_len = pc->field_len = pc->auth_len = pc->body_len = 0;
    pc->last_was_value = pc->in_auth = 0;
    return 0;
}

static int count_head(struct push_conn *pc, size_t len)
{
    pc->head_bytes += len;
    if (pc->head_bytes > UC_HTTP_MAX_HEAD) {
        fail(pc, 431, "request head larger than 8 KiB");
        return -1;
    }
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    struct push_conn *pc = p->data;
    if (count_head(pc, len))
        return 0;
    if (pc->url_len + len > sizeof pc->url) {
        fail(pc, 414, "request target longer than 4 KiB");
        return 0;
    }
    memcpy(pc->url + pc->url_len, at, len);
    pc->url_len += len;
    return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    struct push_conn *pc = p->data;
    if (count_head(pc, len))
        return 0;
    if (pc->last_was_value) {
        pc->field_len = 0;
        pc->last_was_value = 0;
    }
    for (size_t i = 0; i < len && pc->field_len < sizeof pc->field; i++)
        pc->field[pc->field_len++] = uc_lower(at[i]);
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    struct push_conn *pc = p->data;
    if (count_head(pc, len))
        return 0;
    if (!pc->last_was_value) {
        pc->last_was_value = 1;
        pc->in_auth = uc_str_eq(pc->field, pc->field_len, UC_LIT("authorization"));
        if (pc->in_auth)
            pc->auth_len = 0;
    }
    if (pc->in_auth) {
        size_t room = sizeof pc->auth - pc->auth_len;
        size_t n = len < room ? len : room;
        memcpy(pc->auth + pc->auth_len, at, n);
        pc->auth_len += n;
    }
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    struct push_conn *pc = p->data;
    size_t max = uc_server_options(pc->push->srv)->max_message;
    /* Refuse before reading a byte of a body that can only be refused. */
    if (p->content_length != ULLONG_MAX && p->content_length > max)
        fail(pc, 413, "body larger than --max-message");
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    struct push_conn *pc = p->data;
    size_t max = uc_server_options(pc->push->srv)->max_message;
    if (pc->closing)
        return 0;
    if (pc->body_len + len > max) {
        fail(pc, 413, "body larger than --max-message");
        return 0;
    }
    if (pc->body_len + len > pc->body_cap) {
        size_t cap = pc->body_cap ? pc->body_cap : 4096;
        while (cap < pc->body_len + len)
            cap *= 2;
        char *grown = realloc(pc->body, cap);
        if (!grown) {
            fail(pc, 503, "out of memory");
            return 0;
        }
        pc->body = grown;
        pc->body_cap = cap;
    }
    memcpy(pc->body + pc->body_len, at, len);
    pc->body_len += len;
    return 0;
}

static int on_message_complete(http_parser *p)
{
    struct push_conn *pc = p->data;
    if (pc->closing)
        return 0;
    route(pc);
    /* A large body's buffer is not kept for the next request on this connection. */
    if (pc->body_cap > 65536) {
        free(pc->body);
        pc->body = NULL;
        pc->body_cap = 0;
    }
    restart_idle_timer(pc);
    if (pc->closing || must_hold(pc))
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

static void conn_free(struct push_conn *pc)
{
    struct uc_push *push = pc->push;
    struct ev_loop *loop = uc_server_loop(push->srv);
    ev_io_stop(loop, &pc->rio);
    ev_io_stop(loop, &pc->wio);
    ev_timer_stop(loop, &pc->timer);
    close(pc->fd);
    DL_DELETE(push->conns, pc);
    if (pc->waiting)
        pc->waiting->pc = NULL; /* whoever answers frees it */
    uc_outq_clear(&pc->outq);
    free(pc->stash);
    free(pc->body);
    free(pc);
}

/* Parses again what was read behind the request parsing paused after, once nothing holds the
 * connection any more; then reads again, unless a request in that stash held it anew. */
static void resume(struct push_conn *pc)
{
    char *stash = pc->stash;
    size_t stash_len = pc->stash_len;
    pc->stash = NULL;
    pc->stash_len = 0;
    pc->held = 0;
    http_parser_pause(&pc->parser, 0);
    if (stash_len)
        feed(pc, stash, stash_len);
    free(stash);
    if (!pc->held && !pc->closing)
        ev_io_start(uc_server_loop(pc->push->srv), &pc->rio);
}

/* The answers are out and no more will come: half-close, then drop what the client still sends
 * until its EOF (or PUSH_LINGER_BYTES, or --close-timeout). */
static void linger(struct push_conn *pc)
{
    struct ev_loop *loop = uc_server_loop(pc->push->srv);
    shutdown(pc->fd, SHUT_WR);
    pc->lingering = 1;
    ev_io_start(loop, &pc->rio);
    ev_timer_stop(loop, &pc->timer);
    ev_timer_set(&pc->timer, uc_server_options(pc->push->srv)->close_timeout, 0.);
    ev_timer_start(loop, &pc->timer);
}

/* Flushes, and resumes a connection held for its backlog once the backlog is written; frees
 * pc on a write error. */
static void flush(struct push_conn *pc)
{
    for (;;) {
        size_t before = uc_outq_bytes(&pc->outq);
        int r = uc_outq_flush(&pc->outq, pc->fd);
        if (r < 0) {
            conn_free(pc);
            return;
        }
        /* A client reading its answers is not idle, even while nothing new is parsed (the
         * connection is held for its backlog): --push-timeout counts from the last progress
         * either way. */
        if (uc_outq_bytes(&pc->outq) < before && !pc->lingering)
            restart_idle_timer(pc);
        if (r == UC_AGAIN) {
            if (!pc->write_wait) {
                pc->write_wait = 1;
                ev_io_start(uc_server_loop(pc->push->srv), &pc->wio);
            }
            return;
        }
        if (pc->write_wait) {
            pc->write_wait = 0;
            ev_io_stop(uc_server_loop(pc->push->srv), &pc->wio);
        }
        if (pc->closing) {
            if (!pc->lingering)
                linger(pc);
            return;
        }
        if (!pc->held || pc->waiting)
            return;
        resume(pc); /* may answer more: write those too */
        if (uc_outq_empty(&pc->outq))
            return;
    }
}

static void read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    struct push_conn *pc = container_of(w, struct push_conn, rio);
    struct uc_push *push = pc->push;
    ssize_t n = read(pc->fd, push->rbuf, sizeof push->rbuf);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        conn_free(pc);
        return;
    }
    if (pc->lingering) {
        pc->lingered += (size_t)n;
        if (pc->lingered > PUSH_LINGER_BYTES)
            conn_free(pc);
        return;
    }
    if (pc->closing)
        return; /* answered and closing: what follows is ignored */
    feed(pc, (const char *)push->rbuf, (size_t)n);
    flush(pc);
}

/* Parses data; when a request pauses the connection, keeps the rest and stops reading. */
static void feed(struct push_conn *pc, const char *data, size_t len)
{
    size_t used = http_parser_execute(&pc->parser, &settings, data, len);
    enum http_errno err = HTTP_PARSER_ERRNO(&pc->parser);
    if (err == HPE_PAUSED && !pc->closing) { /* held: see must_hold */
        if (used < len) {
            pc->stash = malloc(len - used);
            if (!pc->stash) {
                fail(pc, 503, "out of memory");
                return;
            }
            memcpy(pc->stash, data + used, len - used);
            pc->stash_len = len - used;
        }
        pc->held = 1;
        ev_io_stop(uc_server_loop(pc->push->srv), &pc->rio);
        return;
    }
    if (err != HPE_OK && err != HPE_PAUSED) {
        char msg[160];
        snprintf(msg, sizeof msg, "malformed HTTP request: %s", http_errno_description(err));
        fail(pc, 400, msg);
    }
}

static void write_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    flush(container_of(w, struct push_conn, wio));
}

static void timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    struct push_conn *pc = container_of(w, struct push_conn, timer);
    if (!pc->lingering && ev_iteration(loop) - pc->active_iteration <= 1) {
        ev_timer_again(loop, w); /* busy until just now: the deadline was set from stale time */
        return;
    }
    conn_free(pc);
}

void uc_push_adopt(struct uc_push *push, int fd)
{
    struct push_conn *pc = calloc(1, sizeof *pc);
    if (!pc) {
        close(fd);
        return;
    }
    struct ev_loop *loop = uc_server_loop(push->srv);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    pc->push = push;
    pc->fd = fd;
    http_parser_init(&pc->parser, HTTP_REQUEST);
    pc->parser.data = pc;
    ev_io_init(&pc->rio, read_cb, fd, EV_READ);
    ev_io_init(&pc->wio, write_cb, fd, EV_WRITE);
    ev_init(&pc->timer, timeout_cb);
    pc->timer.repeat = uc_server_options(push->srv)->push_timeout;
    ev_io_start(loop, &pc->rio);
    ev_timer_again(loop, &pc->timer);
    DL_PREPEND(push->conns, pc);
}

static void accepted(void *ctx, int fd, const struct sockaddr *addr)
{
    (void)addr;
    uc_push_adopt(ctx, fd);
}

static int is_loopback(const char *addr)
{
    return strncmp(addr, "127.", 4) == 0 || strncmp(addr, "[::1]", 5) == 0;
}

struct uc_push *uc_push_new(struct uc_server *srv, const char *spec, const char *token, char *err,
                            size_t err_size)
{
    struct uc_push *push = calloc(1, sizeof *push);
    if (!push) {
        snprintf(err, err_size, "out of memory");
        return NULL;
    }
    push->srv = srv;
    push->fd = uc_net_listen(spec, uc_server_options(srv)->workers > 1, err, err_size);
    if (push->fd < 0) {
        free(push);
        return NULL;
    }
    if (token && *token) {
        push->token = strdup(token);
        push->token_len = strlen(token);
    }
    uc_net_local_addr(push->fd, push->addr, sizeof push->addr);
    if (!push->token && !is_loopback(push->addr))
        uc_warn("WARNING: the push API on %s has no --push-token: anyone who can reach it can "
                "send to every user. Set --push-token or UIDCAST_PUSH_TOKEN.",
                push->addr);
    uc_acceptor_init(&push->acceptor, uc_server_loop(srv), push->fd, 16, "push API", accepted,
                     push);
    uc_acceptor_start(&push->acceptor);
    uc_log_event(UC_LOG_INFO, "push.listening",
                 json_pack("{s:s++}", "url", "http://", push->addr, "/"), "push API on http://%s/",
                 push->addr);
    return push;
}

void uc_push_stop(struct uc_push *push)
{
    if (push->fd >= 0) {
        uc_acceptor_free(&push->acceptor);
        close(push->fd);
        push->fd = -1;
    }
}

void uc_push_free(struct uc_push *push)
{
    if (!push)
        return;
    uc_push_stop(push);
    while (push->conns)
        conn_free(push->conns);
    free(push->token);
    free(push);
}

static void stop_service(void *ctx) { uc_push_stop(ctx); }
static void free_service(void *ctx) { uc_push_free(ctx); }

static void service_stats(void *ctx, struct uc_stats *out)
{
    out->push_requests += ((struct uc_push *)ctx)->requests;
}

struct uc_service uc_push_service(struct uc_push *push)
{
    return (struct uc_service){
        .ctx = push, .stop = stop_service, .free = free_service, .stats = service_stats};
}

const char *uc_push_addr(const struct uc_push *push) { return push->addr; }

size_t uc_push_connections(const struct uc_push *push)
{
    size_t n = 0;
    for (const struct push_conn *pc = push->conns; pc; pc = pc->next)
        n++;
    return n;
}

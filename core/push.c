/* push.c -- the HTTP push API's routes, on httpd.c: POST /send, /broadcast, /disconnect,
 * /join, /leave; GET /online, /uids, /members, /stats, /metrics.
 *
 * Deliveries go straight to the core (the Lua policy is for WebSocket clients, a push is
 * already authorised by its token). Every answer is JSON, errors {"error": ...}. What needs
 * another node's word (presence, pages, a kept message's number in cluster mode) is answered
 * later through httpd's deferred answers, which keep pipelined answers in order. */
#include "push.h"

#include <http_parser.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "http.h"
#include "httpd.h"
#include "log.h"
#include "net.h"
#include "procstat.h"
#include "server.h"
#include "stats.h"
#include "str.h"
#include "umap.h"
#include "utf8.h"

/* A request answered later: a GET /online for its count (uid is the one asked of), a kept POST
 * /send for its number (no uid), a command on a uid's connections (op UC_UID_*, which runs
 * when the count is in; arg after the uid), a GET /uids or /members for its page (op 'u' or
 * 'g', the group in uid). Owned by whoever answers, which frees it. */
struct online_wait {
    struct uc_httpd_later *later;
    struct uc_server *srv; /* for a command, which runs even when the client went away */
    int op, code;
    size_t uid_len, arg_len;
    char uid[];
};

struct uc_push {
    struct uc_server *srv;
    struct uc_httpd *httpd;
    int fd;
    char *token;
    size_t token_len;
    char addr[300];
};

/* The request being handled. */
struct request {
    struct uc_push *push;
    struct uc_httpd_conn *c;
    const struct uc_httpd_request *req;
    struct http_parser_url u;
};

/* Where an answer goes: the request being handled (now), or a deferred one (later). */
struct reply {
    struct uc_httpd_conn *now;
    struct uc_httpd_later *later;
};

static struct reply now(const struct request *r) { return (struct reply){.now = r->c}; }
static struct reply later(struct uc_httpd_later *l) { return (struct reply){.later = l}; }

/* ---- responses ---- */

static void respond(struct reply to, int status, const char *extra, const char *type,
                    const char *body, size_t len)
{
    if (to.later)
        uc_httpd_answer(to.later, status, extra, type, body, len);
    else
        uc_httpd_respond(to.now, status, extra, type, body, len);
}

/* Answers body as compact JSON text, and drops the reference; a NULL body (jansson ran out of
 * memory building it) is answered 503. */
static void respond_value(struct reply to, int status, const char *extra, json_t *body)
{
    static const char oom[] = "{\"error\":\"out of memory\"}";
    const size_t flags = JSON_COMPACT | JSON_REAL_PRECISION(15);
    char small[1024], *text = small;
    size_t len = body ? json_dumpb(body, small, sizeof small, flags) : 0;
    if (len > sizeof small && (text = malloc(len)) != NULL)
        len = json_dumpb(body, text, len, flags);
    json_decref(body);
    if (text && len)
        respond(to, status, extra, "application/json", text, len);
    else
        respond(to, 503, extra, "application/json", oom, sizeof oom - 1);
    if (text != small)
        free(text);
}

static void respond_error(struct reply to, int status, const char *extra, const char *msg)
{
    if (status >= 400 && status != 401 && status != 404 && status != 405)
        uc_info("push %d: %s", status, msg);
    respond_value(to, status, extra, json_pack("{s:s}", "error", msg));
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
static int query_value(const struct request *r, const char *name, char *out, size_t cap,
                       size_t *len)
{
    const struct http_parser_url *u = &r->u;
    if (!(u->field_set & (1 << UF_QUERY)))
        return 0;
    int found = uc_http_query_param(r->req->url + u->field_data[UF_QUERY].off,
                                    u->field_data[UF_QUERY].len, name, out, cap, len);
    return found < 0 ? -1 : found;
}

static int query_flag(const struct request *r, const char *name)
{
    char v[8];
    size_t len;
    return query_value(r, name, v, sizeof v, &len) == 1 && len == 1 && v[0] == '1';
}

/* r: what uc_send_uid_kept said (0 when the store answered later, with seq 0 for a refusal). */
static void answer_kept(struct reply to, int r, size_t delivered, uint64_t seq)
{
    if (r == UC_ERR_LIMIT) {
        respond_error(to, 413, NULL,
                      "cannot be kept: larger than --mailbox-max-bytes or --mailbox-memory "
                      "(nothing was sent)");
    } else if (r == UC_ERR_UNREACHABLE) {
        /* Sent here, not kept: the store counts it, and a resume is told of the gap. */
        respond_value(to, 200, NULL,
                      json_pack("{s:I,s:n}", "delivered", (json_int_t)delivered, "seq"));
    } else if (r != 0 || !seq) {
        respond_error(to, 503, NULL, "the store did not take the message (nothing was sent)");
    } else {
        respond_value(
            to, 200, NULL,
            json_pack("{s:I,s:I}", "delivered", (json_int_t)delivered, "seq", (json_int_t)seq));
    }
}

static void kept_answered(void *arg, size_t delivered, uint64_t seq)
{
    struct online_wait *w = arg;
    struct uc_httpd_later *l = w->later;
    free(w);
    answer_kept(later(l), 0, delivered, seq);
}

/* A wait for the request being handled, with size more bytes; answers 503 and returns NULL
 * when out of memory. */
static struct online_wait *wait_for(const struct request *r, size_t size)
{
    struct online_wait *w = malloc(sizeof *w + size);
    struct uc_httpd_later *l = w ? uc_httpd_defer(r->c) : NULL;
    if (!l) {
        free(w);
        respond_error(now(r), 503, NULL, "out of memory");
        return NULL;
    }
    *w = (struct online_wait){.later = l, .srv = r->push->srv};
    return w;
}

/* A wait whose question could not be asked: answered 503 and freed. */
static void wait_failed(struct online_wait *w)
{
    struct uc_httpd_later *l = w->later;
    free(w);
    respond_error(later(l), 503, NULL, "out of memory");
}

static void handle_send(const struct request *r, int broadcast)
{
    struct uc_server *srv = r->push->srv;
    const char *body = r->req->body;
    size_t body_len = r->req->body_len;
    char uid[UC_UID_MAX], group[UC_UID_MAX];
    size_t uid_len = 0, group_len = 0;
    int has_uid = 0, has_group = 0;
    if (!broadcast) {
        has_uid = query_value(r, "uid", uid, sizeof uid, &uid_len);
        has_group = query_value(r, "group", group, sizeof group, &group_len);
        if (has_uid < 0 || has_group < 0 || (has_uid && uid_len == 0) ||
            (has_group && group_len == 0)) {
            respond_error(now(r), 400, NULL, "uid and group must be 1 to 1024 bytes, %-encoded");
            return;
        }
        if (has_uid == has_group) {
            respond_error(now(r), 400, NULL, "give exactly one of ?uid= or ?group=");
            return;
        }
    }
    int binary = query_flag(r, "binary");
    if (body_len > uc_server_options(srv)->max_message) {
        respond_error(now(r), 413, NULL, "body larger than --max-message");
        return;
    }
    if (!binary && !uc_utf8_valid((const uint8_t *)body, body_len)) {
        respond_error(now(r), 400, NULL, "a text message must be valid UTF-8 (or use &binary=1)");
        return;
    }
    double keep = 0;
    char keep_text[32];
    size_t keep_len;
    int has_keep = query_value(r, "keep", keep_text, sizeof keep_text - 1, &keep_len);
    if (has_keep) {
        char *end;
        keep_text[has_keep > 0 ? keep_len : 0] = '\0';
        keep = has_keep > 0 ? strtod(keep_text, &end) : 0;
        if (has_keep < 0 || end == keep_text || *end || !(keep > 0 && keep <= UC_KEEP_MAX)) {
            respond_error(now(r), 400, NULL,
                          "keep must be seconds, more than 0 and at most 2592000");
            return;
        }
        if (!has_uid) {
            respond_error(now(r), 400, NULL, "keep is for ?uid= only (messages are kept per uid)");
            return;
        }
    }
    size_t n;
    if (has_keep) {
        /* In cluster mode Redis numbers the message: the answer waits for it, as /online's
         * does. */
        struct online_wait *w = wait_for(r, 0);
        if (!w)
            return;
        uint64_t seq;
        int kept = uc_send_uid_kept(srv, uid, uid_len, body, body_len, binary, keep, &n, &seq,
                                    kept_answered, w);
        if (kept != UC_PENDING) {
            struct uc_httpd_later *l = w->later;
            free(w);
            answer_kept(later(l), kept, n, seq);
        }
        return;
    }
    if (broadcast)
        n = uc_broadcast(srv, body, body_len, binary, NULL);
    else if (has_uid)
        n = uc_send_uid(srv, uid, uid_len, body, body_len, binary, NULL);
    else
        n = uc_send_group(srv, group, group_len, body, body_len, binary, NULL);
    respond_value(now(r), 200, NULL, json_pack("{s:I}", "delivered", (json_int_t)n));
}

static void online_answered(void *arg, long long count, int partial)
{
    struct online_wait *w = arg;
    struct uc_httpd_later *l = w->later;
    json_t *body = count < 0 ? NULL /* the server is stopping */
                             : json_pack("{s:o,s:b,s:I}", "uid", uid_value(w->uid, w->uid_len),
                                         "online", count > 0, "connections", (json_int_t)count);
    if (body && partial)
        json_object_set_new(body, "partial", json_true());
    free(w);
    respond_value(later(l), 200, NULL, body);
}

static void handle_online(const struct request *r)
{
    char uid[UC_UID_MAX];
    size_t uid_len = 0;
    if (query_value(r, "uid", uid, sizeof uid, &uid_len) != 1 || uid_len == 0) {
        respond_error(now(r), 400, NULL, "GET /online needs ?uid= (1 to 1024 bytes, %-encoded)");
        return;
    }
    struct online_wait *w = wait_for(r, uid_len);
    if (!w)
        return;
    w->uid_len = uid_len;
    memcpy(w->uid, uid, uid_len);
    if (uc_online_query(r->push->srv, uid, uid_len, online_answered, w) != 0)
        wait_failed(w);
}

/* A command's count came (the uid's connections over the cluster, before it runs): it runs
 * now, on this node and, published, on the others; the client hears how many it was for. */
static void command_answered(void *arg, long long count, int partial)
{
    struct online_wait *w = arg;
    struct uc_httpd_later *l = w->later;
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
    /* A client that went away does not hear it; the command ran all the same. */
    json_t *body = count < 0 ? NULL
                             : json_pack("{s:I}",
                                         op == UC_UID_DISCONNECT ? "disconnected"
                                         : op == UC_UID_JOIN     ? "joined"
                                                                 : "left",
                                         (json_int_t)count);
    if (body && partial)
        json_object_set_new(body, "partial", json_true());
    respond_value(later(l), 200, NULL, body);
}

/* POST /disconnect?uid=U[&code=C&reason=R], /join?uid=U&group=G, /leave?uid=U&group=G. */
static void handle_uid_command(const struct request *r, int op)
{
    char uid[UC_UID_MAX], arg[UC_UID_MAX], code_text[8];
    size_t uid_len = 0, arg_len = 0, code_len = 0;
    if (query_value(r, "uid", uid, sizeof uid, &uid_len) != 1 || !uid_len) {
        respond_error(now(r), 400, NULL, "needs ?uid= (1 to 1024 bytes, %-encoded)");
        return;
    }
    int code = 1000;
    if (op == UC_UID_DISCONNECT) {
        int has = query_value(r, "code", code_text, sizeof code_text - 1, &code_len);
        if (has) {
            code_text[has > 0 ? code_len : 0] = '\0';
            char *end;
            long c = has > 0 ? strtol(code_text, &end, 10) : 0;
            if (has < 0 || !code_len || *end || !uc_close_code_valid((int)c)) {
                respond_error(now(r), 400, NULL, "code must be 1000-1003, 1007-1011 or 3000-4999");
                return;
            }
            code = (int)c;
        }
        if (query_value(r, "reason", arg, 124, &arg_len) < 0) {
            respond_error(now(r), 400, NULL, "reason must be at most 123 bytes, %-encoded");
            return;
        }
    } else if (query_value(r, "group", arg, sizeof arg, &arg_len) != 1 || !arg_len) {
        respond_error(now(r), 400, NULL, "needs ?group= (1 to 1024 bytes, %-encoded)");
        return;
    }
    struct online_wait *w = wait_for(r, uid_len + arg_len);
    if (!w)
        return;
    w->op = op;
    w->code = code;
    w->uid_len = uid_len;
    w->arg_len = arg_len;
    memcpy(w->uid, uid, uid_len);
    memcpy(w->uid + uid_len, arg, arg_len);
    if (uc_online_query(r->push->srv, uid, uid_len, command_answered, w) != 0)
        wait_failed(w);
}

static void page_answered(void *arg, const struct uc_roster_page *page)
{
    struct online_wait *w = arg;
    struct uc_httpd_later *l = w->later;
    if (!page) { /* the server is stopping */
        free(w);
        respond_value(later(l), 200, NULL, NULL);
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
    free(w);
    respond_value(later(l), 200, NULL, body);
}

/* GET /uids[?cursor=C&limit=L], GET /members?group=G[&cursor=C&limit=L]. */
static void handle_roster(const struct request *r, int kind)
{
    char group[UC_UID_MAX], text[24];
    size_t group_len = 0, len = 0;
    if (kind == 'g' &&
        (query_value(r, "group", group, sizeof group, &group_len) != 1 || !group_len)) {
        respond_error(now(r), 400, NULL, "GET /members needs ?group= (1 to 1024 bytes, %-encoded)");
        return;
    }
    struct uc_roster_cursor cursor = {0};
    int has = query_value(r, "cursor", text, sizeof text, &len);
    if (has < 0 || (has && uc_roster_cursor_parse(text, len, &cursor) != 0)) {
        respond_error(now(r), 400, NULL,
                      "cursor must be the \"cursor\" of the page before (16 hex digits)");
        return;
    }
    unsigned long limit = 100;
    has = query_value(r, "limit", text, sizeof text - 1, &len);
    if (has) {
        char *end;
        text[has > 0 ? len : 0] = '\0';
        limit = has > 0 ? strtoul(text, &end, 10) : 0;
        if (has < 0 || !len || *end || text[0] == '-' || limit < 1 || limit > UC_ROSTER_LIMIT_MAX) {
            respond_error(now(r), 400, NULL, "limit must be 1 to 1000");
            return;
        }
    }
    struct online_wait *w = wait_for(r, group_len);
    if (!w)
        return;
    w->op = kind;
    w->uid_len = group_len;
    memcpy(w->uid, group, group_len);
    if (uc_members_query(r->push->srv, kind, group, group_len, &cursor, limit, page_answered, w) !=
        0)
        wait_failed(w);
}

/* Under --workers the counters are every worker's (see scoreboard.h), whichever one answers. */
static void handle_stats(const struct request *r)
{
    struct uc_stats s;
    struct uc_process_stats p;
    unsigned workers = uc_server_stats_all(r->push->srv, &s, &p);
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
    respond_value(now(r), 200, NULL, body);
}

static void handle_metrics(const struct request *r)
{
    struct uc_stats s;
    struct uc_process_stats p;
    unsigned workers = uc_server_stats_all(r->push->srv, &s, &p);
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
    respond(now(r), 200, NULL, "text/plain; version=0.0.4", text, o);
}

static int authorized(const struct request *r)
{
    const struct uc_push *push = r->push;
    if (!push->token)
        return 1;
    static const char prefix[] = "Bearer ";
    size_t plen = sizeof prefix - 1;
    const struct uc_httpd_request *req = r->req;
    if (req->auth_len != plen + push->token_len || strncasecmp(req->auth, prefix, plen) != 0)
        return 0;
    /* Constant time, so the comparison does not tell an attacker how much of a guess is right. */
    return CRYPTO_memcmp(req->auth + plen, push->token, push->token_len) == 0;
}

/* httpd's handler: one complete request. */
static void route(void *ctx, struct uc_httpd_conn *c, const struct uc_httpd_request *req)
{
    struct request rq = {.push = ctx, .c = c, .req = req}, *r = &rq;
    if (!authorized(r)) {
        respond_error(now(r), 401, "WWW-Authenticate: Bearer\r\n",
                      "missing or wrong Authorization: Bearer token");
        return;
    }
    struct http_parser_url *u = &rq.u;
    http_parser_url_init(u);
    if (http_parser_parse_url(req->url, req->url_len, 0, u) != 0 ||
        !(u->field_set & (1 << UF_PATH))) {
        respond_error(now(r), 400, NULL, "malformed request target");
        return;
    }
    const char *path = req->url + u->field_data[UF_PATH].off;
    size_t path_len = u->field_data[UF_PATH].len;
    int method = req->method;
#define IS(p) uc_str_eq(path, path_len, UC_LIT(p))
    if (IS("/send") || IS("/broadcast")) {
        if (method != HTTP_POST)
            respond_error(now(r), 405, "Allow: POST\r\n", "use POST");
        else
            handle_send(r, IS("/broadcast"));
    } else if (IS("/disconnect") || IS("/join") || IS("/leave")) {
        if (method != HTTP_POST)
            respond_error(now(r), 405, "Allow: POST\r\n", "use POST");
        else
            handle_uid_command(r, IS("/disconnect") ? UC_UID_DISCONNECT
                                  : IS("/join")     ? UC_UID_JOIN
                                                    : UC_UID_LEAVE);
    } else if (IS("/online") || IS("/uids") || IS("/members") || IS("/stats") || IS("/metrics")) {
        if (method != HTTP_GET)
            respond_error(now(r), 405, "Allow: GET\r\n", "use GET");
        else if (IS("/online"))
            handle_online(r);
        else if (IS("/uids") || IS("/members"))
            handle_roster(r, IS("/uids") ? 'u' : 'g');
        else if (IS("/stats"))
            handle_stats(r);
        else
            handle_metrics(r);
    } else {
        respond_error(now(r), 404, NULL,
                      "no such endpoint: try /send, /broadcast, /disconnect, /join, /leave, "
                      "/online, /uids, /members, /stats, /metrics");
    }
#undef IS
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
    const struct uc_options *opt = uc_server_options(srv);
    struct uc_httpd_options ho = {.name = "push API",
                                  .idle_timeout = opt->push_timeout,
                                  .close_timeout = opt->close_timeout,
                                  .max_body = opt->max_message};
    if (!(push->httpd = uc_httpd_new(uc_server_loop(srv), push->fd, &ho, route, push))) {
        snprintf(err, err_size, "out of memory");
        close(push->fd);
        free(push->token);
        free(push);
        return NULL;
    }
    uc_log_event(UC_LOG_INFO, "push.listening",
                 json_pack("{s:s++}", "url", "http://", push->addr, "/"), "push API on http://%s/",
                 push->addr);
    return push;
}

void uc_push_stop(struct uc_push *push)
{
    if (push->fd >= 0) {
        uc_httpd_stop(push->httpd);
        close(push->fd);
        push->fd = -1;
    }
}

void uc_push_free(struct uc_push *push)
{
    if (!push)
        return;
    uc_push_stop(push);
    uc_httpd_free(push->httpd);
    free(push->token);
    free(push);
}

void uc_push_adopt(struct uc_push *push, int fd) { uc_httpd_adopt(push->httpd, fd); }

static void stop_service(void *ctx) { uc_push_stop(ctx); }
static void free_service(void *ctx) { uc_push_free(ctx); }

static void service_stats(void *ctx, struct uc_stats *out)
{
    out->push_requests += uc_httpd_requests(((struct uc_push *)ctx)->httpd);
}

struct uc_service uc_push_service(struct uc_push *push)
{
    return (struct uc_service){
        .ctx = push, .stop = stop_service, .free = free_service, .stats = service_stats};
}

const char *uc_push_addr(const struct uc_push *push) { return push->addr; }

size_t uc_push_connections(const struct uc_push *push) { return uc_httpd_connections(push->httpd); }

/* policy.c -- the bridge from the core's callbacks to the script's handlers, and reloads.
 *
 * Each core event becomes exactly one protected Lua call. Lua never sees a raw pointer: the
 * connection reaches it as a handle (conn.c), the request as a fresh table. */
#include <stdlib.h>
#include <string.h>

#include "../core/http.h"
#include "../core/log.h"
#include "../core/str.h"
#include "internal.h"

struct ucl_policy *ucl_policy_new(const char *script, const struct ucl_limits *limits, char *err,
                                  size_t err_size)
{
    struct ucl_policy *p = calloc(1, sizeof *p);
    if (!p || !(p->script = strdup(script))) {
        free(p);
        snprintf(err, err_size, "out of memory");
        return NULL;
    }
    p->limits = *limits;
    p->st = ucl_state_new(p, err, err_size);
    if (!p->st) {
        free(p->script);
        free(p);
        return NULL;
    }
    return p;
}

const char *ucl_lua_version(void) { return LUA_RELEASE; }

void ucl_policy_free(struct ucl_policy *p)
{
    if (!p)
        return;
    ucl_state_free(p->st);
    free(p->script);
    free(p);
}

/* Runs a hook that takes no arguments; returns its pcall status (0 when absent). */
static int run_plain_hook(struct ucl_state *st, enum ucl_hook hook)
{
    if (!ucl_push_hook(st, hook))
        return 0;
    return ucl_call(st, 0, 0, ucl_hook_names[hook]);
}

void ucl_policy_start(struct ucl_policy *p, struct uc_server *srv)
{
    p->srv = srv;
    run_plain_hook(p->st, UCL_ON_START);
}

int ucl_policy_reload(struct ucl_policy *p)
{
    char err[1024];
    struct ucl_state *fresh = ucl_state_new(p, err, sizeof err);
    if (!fresh) {
        uc_error("reload failed, the running script stays: %s", err);
        return -1;
    }
    enum ucl_hook hook = fresh->hooks[UCL_ON_RELOAD] != LUA_NOREF ? UCL_ON_RELOAD : UCL_ON_START;
    if (run_plain_hook(fresh, hook) != 0) {
        uc_error("reload failed in %s, the running script stays", ucl_hook_names[hook]);
        ucl_state_free(fresh);
        return -1;
    }
    ucl_state_free(p->st);
    p->st = fresh;
    uc_info("reloaded %s", p->script);
    return 0;
}

/* req.query: each name=value pair of the query string, %-decoded; the first of a name wins. */
static void push_query(lua_State *L, const char *q, size_t len)
{
    lua_newtable(L);
    char decoded[UC_HTTP_MAX_HEAD];
    size_t pos = 0, name_len, value_len;
    const char *name, *value;
    while (uc_http_query_next(q, len, &pos, &name, &name_len, &value, &value_len)) {
        long n = uc_http_url_decode(name, name_len, decoded, sizeof decoded);
        if (n <= 0)
            continue;
        lua_pushlstring(L, decoded, (size_t)n);
        if (lua_rawget(L, -2) != LUA_TNIL) {
            lua_pop(L, 1);
            continue;
        }
        lua_pop(L, 1);
        lua_pushlstring(L, decoded, (size_t)n);
        n = uc_http_url_decode(value, value_len, decoded, sizeof decoded);
        if (n < 0)
            lua_pushlstring(L, value, value_len); /* malformed escape: keep the raw text */
        else
            lua_pushlstring(L, decoded, (size_t)n);
        lua_rawset(L, -3);
    }
}

/* req.headers: lower-case names; repeated headers joined with ", " as RFC 9110 allows. */
static void push_headers(lua_State *L, const struct uc_http_request *http)
{
    lua_createtable(L, 0, (int)http->nheaders);
    for (size_t i = 0; i < http->nheaders; i++) {
        const struct uc_http_header *h = &http->headers[i];
        lua_pushlstring(L, h->name, h->name_len);
        lua_pushvalue(L, -1);
        if (lua_rawget(L, -3) == LUA_TSTRING) {
            lua_pushliteral(L, ", ");
            lua_pushlstring(L, h->value, h->value_len);
            lua_concat(L, 3);
        } else {
            lua_pop(L, 1);
            lua_pushlstring(L, h->value, h->value_len);
        }
        lua_rawset(L, -3);
    }
}

static int on_open(struct uc_conn *conn, const struct uc_open_request *req,
                   struct uc_refusal *refusal, void *user_data)
{
    struct ucl_policy *p = user_data;
    struct ucl_state *st = p->st;
    lua_State *L = st->L, *co = ucl_push_hook(st, UCL_ON_OPEN);
    if (!co)
        return 0;
    ucl_push_hook_conn(co, conn);
    lua_createtable(co, 0, 5);
    lua_pushlstring(co, req->http->path, req->http->path_len);
    lua_setfield(co, -2, "path");
    push_query(co, req->http->query, req->http->query_len);
    lua_setfield(co, -2, "query");
    push_headers(co, req->http);
    lua_setfield(co, -2, "headers");
    lua_pushstring(co, req->remote_addr);
    lua_setfield(co, -2, "remote_addr");
    if (ucl_call(st, 2, 3, "on_open") != LUA_OK) {
        /* Fail closed: a broken authentication check must not let everyone in. */
        lua_pop(L, 3);
        refusal->status = 500;
        snprintf(refusal->reason, sizeof refusal->reason, "internal error");
        return -1;
    }
    int refused = lua_type(L, -3) == LUA_TBOOLEAN && !lua_toboolean(L, -3);
    if (refused) {
        lua_Integer status = lua_isinteger(L, -2) ? lua_tointeger(L, -2) : 403;
        refusal->status = status >= 400 && status <= 599 ? (int)status : 403;
        const char *reason = lua_tostring(L, -1);
        snprintf(refusal->reason, sizeof refusal->reason, "%s",
                 reason ? reason : uc_http_reason(refusal->status));
    }
    lua_pop(L, 3);
    return refused ? -1 : 0;
}

static void on_message(struct uc_conn *conn, const uint8_t *data, size_t len, int binary,
                       void *user_data)
{
    struct ucl_policy *p = user_data;
    struct ucl_state *st = p->st;
    lua_State *co = ucl_push_hook(st, UCL_ON_MESSAGE);
    if (!co)
        return;
    /* conn.uid and conn.protocol, which nearly every handler reads, handed over: reading a
     * field is a call into C. */
    struct conn_handle *h = ucl_push_hook_conn(co, conn);
    lua_pushlstring(co, (const char *)data, len);
    lua_pushboolean(co, binary);
    ucl_push_conn_uid(co, -3, h);
    const char *protocol = uc_conn_protocol(conn);
    if (protocol)
        lua_pushstring(co, protocol);
    else
        lua_pushnil(co);
    if (ucl_call(st, 5, 0, "on_message") == UCL_BUDGET)
        uc_conn_close(conn, 1011, UC_LIT("script took too long"));
}

static void on_close(struct uc_conn *conn, int code, const char *reason, size_t reason_len,
                     void *user_data)
{
    struct ucl_policy *p = user_data;
    struct ucl_state *st = p->st;
    lua_State *co = ucl_push_hook(st, UCL_ON_CLOSE);
    if (co) {
        ucl_push_hook_conn(co, conn);
        lua_pushinteger(co, code);
        lua_pushlstring(co, reason ? reason : "", reason_len);
        ucl_call(st, 3, 0, "on_close");
    }
    ucl_conn_forget(st->L, conn);
}

static void on_stop(void *user_data)
{
    struct ucl_policy *p = user_data;
    run_plain_hook(p->st, UCL_ON_STOP);
}

static void on_cluster_gap(void *user_data)
{
    struct ucl_policy *p = user_data;
    run_plain_hook(p->st, UCL_ON_CLUSTER_GAP);
}

static void on_undelivered(const char *uid, size_t uid_len, uint64_t seq, const void *data,
                           size_t len, int binary, const char *reason, void *user_data)
{
    struct ucl_policy *p = user_data;
    struct ucl_state *st = p->st;
    lua_State *co = ucl_push_hook(st, UCL_ON_UNDELIVERED);
    if (!co)
        return;
    lua_pushlstring(co, uid, uid_len);
    lua_pushinteger(co, (lua_Integer)seq);
    lua_pushlstring(co, data, len);
    lua_pushstring(co, reason);
    lua_pushboolean(co, binary);
    ucl_call(st, 5, 0, "on_undelivered");
}

static void on_presence(const char *uid, size_t uid_len, int online, uint64_t version,
                        void *user_data)
{
    struct ucl_policy *p = user_data;
    struct ucl_state *st = p->st;
    lua_State *co = ucl_push_hook(st, online ? UCL_ON_ONLINE : UCL_ON_OFFLINE);
    if (!co)
        return;
    lua_pushlstring(co, uid, uid_len);
    lua_pushinteger(co, (lua_Integer)version);
    ucl_call(st, 2, 0, online ? "on_online" : "on_offline");
}

static size_t memory_used(void *user_data)
{
    struct ucl_policy *p = user_data;
    return p->st->mem_used;
}

static void on_reload(struct uc_server *srv, void *user_data)
{
    (void)srv;
    ucl_policy_reload(user_data);
}

void ucl_policy_handlers(struct ucl_policy *p, struct uc_handlers *out)
{
    *out = (struct uc_handlers){
        .user_data = p,
        .on_open = on_open,
        .on_message = on_message,
        .on_close = on_close,
        .on_stop = on_stop,
        .on_reload = on_reload,
        .memory_used = memory_used,
        .on_cluster_gap = on_cluster_gap,
        .on_undelivered = on_undelivered,
        .on_presence = on_presence,
    };
}

/* api.c -- the uidcast module: what a script calls to deliver, look up and log.
 *
 * Misuse (a wrong type, an empty uid) raises a Lua error naming the argument; a runtime
 * outcome (nobody online, a closed connection) is a return value. */
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <utlist.h>

#include "../core/log.h"
#include "../core/stats.h"
#include "../core/umap.h"
#include "internal.h"

static struct uc_server *server_of(lua_State *L)
{
    struct uc_server *srv = ucl_state_of(L)->policy->srv;
    if (!srv)
        luaL_error(L, "the server is not running (uidcast functions work from handlers)");
    return srv;
}

static const char *check_uid(lua_State *L, int idx, size_t *len)
{
    return ucl_check_key(L, idx, "uid", len);
}

/* The core's side of one waiting is_online(uid, fn): its query and, in cluster mode, the Redis
 * command and reply, with malloc's overhead (a measured upper bound, uid bytes aside). */
#define ONLINE_QUERY_COST 192

/* A callback waiting for the core's answer: is_online(uid, fn)'s, or send_uid's opts.kept in
 * cluster mode. Owned by the core's query until it answers; listed in its state so that a
 * reload can orphan it (st = NULL). */
struct ucl_online {
    struct ucl_state *st;
    int fn_ref;
    size_t cost; /* C memory charged to the state's cap while it waits */
    struct ucl_online *prev, *next;
};

struct send_opts {
    int binary;
    struct uc_conn *except;
    double keep;  /* seconds, or 0: not kept */
    int kept_idx; /* stack index of opts.kept (a function), or 0 */
};

/* opts: nil or {binary = bool, except = conn, keep = seconds} (keep only where allowed). */
static void check_opts(lua_State *L, int idx, struct send_opts *o, int keep_allowed)
{
    *o = (struct send_opts){0};
    if (lua_isnoneornil(L, idx))
        return;
    luaL_checktype(L, idx, LUA_TTABLE);
    lua_getfield(L, idx, "binary");
    o->binary = lua_toboolean(L, -1);
    lua_getfield(L, idx, "except");
    if (!lua_isnil(L, -1)) {
        if (!luaL_testudata(L, -1, "uidcast.conn"))
            luaL_argerror(L, idx, "opts.except must be a connection");
        o->except = ucl_check_conn(L, -1);
    }
    lua_getfield(L, idx, "keep");
    if (!lua_isnil(L, -1)) {
        if (!keep_allowed)
            luaL_argerror(L, idx, "opts.keep is for send_uid only (messages are kept per uid)");
        int is_num;
        o->keep = lua_tonumberx(L, -1, &is_num);
        if (!is_num || !(o->keep > 0 && o->keep <= UC_KEEP_MAX))
            luaL_argerror(L, idx, "opts.keep must be seconds, more than 0 and at most 2592000");
        if (o->except)
            luaL_argerror(L, idx, "opts.except cannot be combined with opts.keep");
    }
    lua_pop(L, 3);
    if (lua_getfield(L, idx, "kept") == LUA_TNIL) {
        lua_pop(L, 1);
        return;
    }
    if (!lua_isfunction(L, -1) || !o->keep)
        luaL_argerror(L, idx, "opts.kept must be a function, with opts.keep");
    o->kept_idx = lua_gettop(L); /* left on the stack for the caller */
}

/* The answer for a waiting callback came: unlists it and pushes its function. Returns the
 * state to call it in, or NULL when a reload orphaned it (nothing pushed). */
static struct ucl_state *take_callback(struct ucl_online *o)
{
    struct ucl_state *st = o->st;
    if (!st)
        return NULL;
    DL_DELETE(st->online, o);
    st->mem_used -= o->cost;
    lua_rawgeti(st->L, LUA_REGISTRYINDEX, o->fn_ref);
    luaL_unref(st->L, LUA_REGISTRYINDEX, o->fn_ref);
    return st;
}

static void kept_answered(void *arg, size_t delivered, uint64_t seq)
{
    struct ucl_online *o = arg;
    struct ucl_state *st = take_callback(o);
    if (st) {
        lua_State *L = st->L;
        if (seq)
            lua_pushinteger(L, (lua_Integer)seq);
        else
            lua_pushnil(L);
        lua_pushinteger(L, (lua_Integer)delivered);
        ucl_call(st, 2, 0, "a send_uid kept callback");
    }
    free(o);
}

/* send_uid(uid, data [, opts]) -> number of connections it was queued to; with opts.keep,
 * also the number it is kept under (nil and a reason when it cannot be kept), and
 * opts.kept(seq, delivered) runs with it: at once, or in cluster mode when Redis numbered it */
static int api_send_uid(lua_State *L)
{
    size_t uid_len, len;
    const char *uid = check_uid(L, 1, &uid_len);
    const char *data = luaL_checklstring(L, 2, &len);
    struct send_opts o;
    check_opts(L, 3, &o, 1);
    struct uc_server *srv = server_of(L);
    if (!o.keep) {
        lua_pushinteger(L,
                        (lua_Integer)uc_send_uid(srv, uid, uid_len, data, len, o.binary, o.except));
        return 1;
    }
    struct ucl_state *st = ucl_state_of(L);
    struct ucl_online *w = NULL;
    if (o.kept_idx) {
        size_t cost = sizeof *w + ONLINE_QUERY_COST + 2 * uid_len;
        if (st->mem_used + cost > st->mem_limit)
            return luaL_error(L, "not enough memory");
        if (!(w = malloc(sizeof *w)))
            return luaL_error(L, "out of memory");
        lua_pushvalue(L, o.kept_idx);
        *w = (struct ucl_online){.st = st, .fn_ref = luaL_ref(L, LUA_REGISTRYINDEX), .cost = cost};
    }
    size_t delivered;
    uint64_t seq;
    int r = uc_send_uid_kept(srv, uid, uid_len, data, len, o.binary, o.keep, &delivered, &seq,
                             w ? kept_answered : NULL, w);
    if (r == UC_PENDING) {
        if (w) {
            DL_PREPEND(st->online, w);
            st->mem_used += w->cost;
        }
        lua_pushinteger(L, (lua_Integer)delivered);
        return 1; /* cluster mode: Redis numbers it, later */
    }
    if (w) {
        /* Settled now: the callback runs now, inside this call, as a plain function call. */
        lua_rawgeti(L, LUA_REGISTRYINDEX, w->fn_ref);
        luaL_unref(L, LUA_REGISTRYINDEX, w->fn_ref);
        free(w);
        if (r == 0)
            lua_pushinteger(L, (lua_Integer)seq);
        else
            lua_pushnil(L);
        lua_pushinteger(L, (lua_Integer)delivered);
        lua_call(L, 2, 0);
    }
    lua_pushinteger(L, (lua_Integer)delivered);
    if (r != 0) {
        lua_pushnil(L);
        lua_pushstring(L, r == UC_ERR_UNREACHABLE
                              ? "not kept: redis is unreachable (sent to this node only)"
                              : "cannot be kept: larger than --mailbox-max-bytes");
        return 3;
    }
    lua_pushinteger(L, (lua_Integer)seq);
    return 2;
}

/* broadcast(data [, opts]) -> number of bound connections it was queued to */
static int api_broadcast(lua_State *L)
{
    size_t len;
    const char *data = luaL_checklstring(L, 1, &len);
    struct send_opts o;
    check_opts(L, 2, &o, 0);
    lua_pushinteger(L, (lua_Integer)uc_broadcast(server_of(L), data, len, o.binary, o.except));
    return 1;
}

/* send_group(group, data [, opts]) -> number of members it was queued to */
static int api_send_group(lua_State *L)
{
    size_t group_len, len;
    const char *group = ucl_check_key(L, 1, "group", &group_len);
    const char *data = luaL_checklstring(L, 2, &len);
    struct send_opts o;
    check_opts(L, 3, &o, 0);
    lua_pushinteger(L, (lua_Integer)uc_send_group(server_of(L), group, group_len, data, len,
                                                  o.binary, o.except));
    return 1;
}

/* disconnect(uid [, code [, reason]]) -> connections of uid closed on this node (every node's
 * close too, in cluster mode) */
static int api_disconnect(lua_State *L)
{
    size_t uid_len, reason_len;
    const char *uid = check_uid(L, 1, &uid_len);
    lua_Integer code = luaL_optinteger(L, 2, 1000);
    const char *reason = luaL_optlstring(L, 3, "", &reason_len);
    luaL_argcheck(L, code >= 1000 && code <= 4999 && uc_close_code_valid((int)code), 2,
                  "close code must be 1000-1003, 1007-1011 or 3000-4999");
    luaL_argcheck(L, reason_len <= 123, 3, "close reason must be at most 123 bytes");
    lua_pushinteger(L, (lua_Integer)uc_disconnect_uid(server_of(L), uid, uid_len, (int)code, reason,
                                                      reason_len));
    return 1;
}

/* join(uid, group) / leave(uid, group) -> connections of uid on this node that it applied to
 * (every node's too, in cluster mode) */
static int uid_group(lua_State *L, int join)
{
    size_t uid_len, group_len;
    const char *uid = check_uid(L, 1, &uid_len);
    const char *group = ucl_check_key(L, 2, "group", &group_len);
    struct uc_server *srv = server_of(L);
    lua_pushinteger(L, (lua_Integer)(join ? uc_join_uid(srv, uid, uid_len, group, group_len)
                                          : uc_leave_uid(srv, uid, uid_len, group, group_len)));
    return 1;
}

static int api_join(lua_State *L) { return uid_group(L, 1); }
static int api_leave(lua_State *L) { return uid_group(L, 0); }

static int api_group_count(lua_State *L)
{
    size_t group_len;
    const char *group = luaL_checklstring(L, 1, &group_len);
    lua_pushinteger(L, (lua_Integer)uc_group_count(server_of(L), group, group_len));
    return 1;
}

/* env(name) -> the value of environment variable name, which must start with UIDCAST_ so
 * that a script reads only what the operator meant for it; nil when unset. */
static int api_env(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    luaL_argcheck(L, strncmp(name, "UIDCAST_", 8) == 0, 1,
                  "only variables named UIDCAST_* are readable");
    const char *value = getenv(name);
    if (value)
        lua_pushstring(L, value);
    else
        lua_pushnil(L);
    return 1;
}

void ucl_online_orphan(struct ucl_state *st)
{
    for (struct ucl_online *o = st->online; o; o = o->next)
        o->st = NULL;
    st->online = NULL;
}

static void online_answered(void *arg, long long count, int partial)
{
    struct ucl_online *o = arg;
    struct ucl_state *st = take_callback(o);
    if (st) {
        lua_State *L = st->L;
        if (count >= 0) {
            lua_pushboolean(L, count > 0);
            lua_pushinteger(L, (lua_Integer)count);
            lua_pushboolean(L, partial);
            ucl_call(st, 3, 0, "an is_online callback");
        } else {
            lua_pop(L, 1); /* the server is stopping: nobody to answer */
        }
    }
    free(o);
}

/* A callback (the function at fn) to wait for the core's answer, charged cost bytes against
 * --lua-memory like the script's own memory (so a loop of calls is bounded); raises when the
 * state has no room. Hand it to the core, then to wait_asked. */
static struct ucl_online *wait_new(lua_State *L, int fn, size_t cost)
{
    struct ucl_state *st = ucl_state_of(L);
    if (st->mem_used + cost > st->mem_limit)
        luaL_error(L, "not enough memory");
    struct ucl_online *o = malloc(sizeof *o);
    if (!o)
        luaL_error(L, "out of memory");
    lua_pushvalue(L, fn);
    *o = (struct ucl_online){.st = st, .fn_ref = luaL_ref(L, LUA_REGISTRYINDEX), .cost = cost};
    return o;
}

/* What the core said to the wait (asked: 0 taken, else not, which raises): a taken wait is
 * listed until answered. Returns the Lua function's result, true. */
static int wait_asked(lua_State *L, struct ucl_online *o, int asked)
{
    if (asked != 0) {
        luaL_unref(L, LUA_REGISTRYINDEX, o->fn_ref);
        free(o);
        return luaL_error(L, "out of memory");
    }
    DL_PREPEND(o->st->online, o);
    o->st->mem_used += o->cost;
    lua_pushboolean(L, 1);
    return 1;
}

/* is_online(uid) -> whether uid has a connection on this node, at once.
 * is_online(uid, fn) -> true; later fn(online, connections) with the count over every node in
 * cluster mode (this node's alone without --redis, or while Redis is unreachable). */
static int api_is_online(lua_State *L)
{
    size_t uid_len;
    const char *uid = check_uid(L, 1, &uid_len);
    struct uc_server *srv = server_of(L);
    if (lua_isnoneornil(L, 2)) {
        lua_pushboolean(L, uc_uid_count(srv, uid, uid_len) > 0);
        return 1;
    }
    luaL_checktype(L, 2, LUA_TFUNCTION);
    /* What waits in C: this callback, the core's query, the Redis command. */
    struct ucl_online *o =
        wait_new(L, 2, sizeof(struct ucl_online) + ONLINE_QUERY_COST + 2 * uid_len);
    return wait_asked(L, o, uc_online_query(srv, uid, uid_len, online_answered, o));
}

/* Runs (protected, on the handler thread) fn(list, cursor, partial) for a roster page given
 * as a light userdata: the list is built here, where running out of memory is a Lua error. */
static int call_with_page(lua_State *L)
{
    const struct uc_roster_page *page = lua_touserdata(L, 2);
    lua_settop(L, 1);
    lua_createtable(L, (int)page->n, 0);
    for (size_t i = 0; i < page->n; i++) {
        lua_createtable(L, 0, 2);
        lua_pushlstring(L, page->entries[i].uid, page->entries[i].len);
        lua_setfield(L, -2, "uid");
        lua_pushinteger(L, (lua_Integer)page->entries[i].connections);
        lua_setfield(L, -2, "connections");
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    if (page->more) {
        char cursor[UC_ROSTER_CURSOR_LEN + 1];
        uc_roster_cursor_format(&page->next, cursor);
        lua_pushstring(L, cursor);
    } else {
        lua_pushnil(L);
    }
    lua_pushboolean(L, page->partial);
    lua_call(L, 3, 0);
    return 0;
}

static void page_answered(void *arg, const struct uc_roster_page *page)
{
    struct ucl_online *o = arg;
    struct ucl_state *st = take_callback(o);
    if (st) {
        lua_State *L = st->L;
        if (page) {
            lua_pushcfunction(L, call_with_page);
            lua_insert(L, -2);
            lua_pushlightuserdata(L, (void *)page);
            ucl_call(st, 2, 0, "a uids or members callback");
        } else {
            lua_pop(L, 1); /* the server is stopping: nobody to answer */
        }
    }
    free(o);
}

/* uids(fn [, opts]) / members(group, fn [, opts]) -> true; later fn(list, cursor, partial):
 * list = { {uid = , connections = }, ... }, cursor the next page's (nil after the last). */
static int roster(lua_State *L, int kind)
{
    size_t group_len = 0, cursor_len = 0;
    const char *group = kind == 'g' ? ucl_check_key(L, 1, "group", &group_len) : NULL;
    int fn = kind == 'g' ? 2 : 1, opts = fn + 1;
    luaL_checktype(L, fn, LUA_TFUNCTION);
    struct uc_roster_cursor cursor = {0};
    lua_Integer limit = 100;
    if (!lua_isnoneornil(L, opts)) {
        luaL_checktype(L, opts, LUA_TTABLE);
        lua_getfield(L, opts, "cursor");
        const char *text = lua_tolstring(L, -1, &cursor_len);
        if (!lua_isnil(L, -1) && (!text || uc_roster_cursor_parse(text, cursor_len, &cursor) != 0))
            luaL_argerror(L, opts, "cursor must be a cursor a page gave (16 hex digits)");
        lua_getfield(L, opts, "limit");
        if (!lua_isnil(L, -1)) {
            int ok;
            limit = lua_tointegerx(L, -1, &ok);
            if (!ok || limit < 1 || limit > UC_ROSTER_LIMIT_MAX)
                luaL_argerror(L, opts, "limit must be an integer from 1 to 1000");
        }
        lua_pop(L, 2);
    }
    struct uc_server *srv = server_of(L);
    /* A page waits in C: charged like is_online's query. */
    struct ucl_online *o =
        wait_new(L, fn, sizeof(struct ucl_online) + ONLINE_QUERY_COST + group_len);
    return wait_asked(
        L, o,
        uc_members_query(srv, kind, group, group_len, &cursor, (size_t)limit, page_answered, o));
}

static int api_uids(lua_State *L) { return roster(L, 'u'); }
static int api_members(lua_State *L) { return roster(L, 'g'); }

struct collect {
    lua_State *L;
    lua_Integer n;
};

static void collect_conn(struct uc_conn *c, void *ctx)
{
    struct collect *col = ctx;
    ucl_push_conn(col->L, c);
    lua_rawseti(col->L, -2, ++col->n);
}

/* connections(uid) -> array of the uid's connection handles */
static int api_connections(lua_State *L)
{
    size_t uid_len;
    const char *uid = check_uid(L, 1, &uid_len);
    struct uc_server *srv = server_of(L);
    lua_createtable(L, (int)uc_uid_count(srv, uid, uid_len), 0);
    struct collect col = {L, 0};
    uc_uid_each(srv, uid, uid_len, collect_conn, &col);
    return 1;
}

static int api_stats(lua_State *L)
{
    struct uc_stats s;
    uc_server_stats(server_of(L), &s);
    lua_createtable(L, 0, (int)uc_stat_field_count + 2);
    for (size_t i = 0; i < uc_stat_field_count; i++) {
        lua_pushinteger(L, (lua_Integer)uc_stat_value(&s, &uc_stat_fields[i]));
        lua_setfield(L, -2, uc_stat_fields[i].name);
    }
    lua_pushnumber(L, s.uptime);
    lua_setfield(L, -2, "uptime");
    return 1;
}

/* log(level, ...) -- the values joined with spaces, as print would show them. */
static int api_log(lua_State *L)
{
    static const char *const levels[] = {"error", "warn", "info", "debug", NULL};
    int level = luaL_checkoption(L, 1, NULL, levels);
    if (!uc_log_enabled((enum uc_log_level)level))
        return 0;
    int n = lua_gettop(L);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (int i = 2; i <= n; i++) {
        if (i > 2)
            luaL_addchar(&b, ' ');
        luaL_tolstring(L, i, NULL);
        luaL_addvalue(&b);
    }
    luaL_pushresult(&b);
    uc_log_event((enum uc_log_level)level, "lua.log", NULL, "[lua] %s", lua_tostring(L, -1));
    return 0;
}

/* now() -> wall-clock seconds since the epoch, with sub-second precision */
static int api_now(lua_State *L)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    lua_pushnumber(L, (lua_Number)tv.tv_sec + (lua_Number)tv.tv_usec / 1e6);
    return 1;
}

/* hmac_sha256(key, data) -> lower-case hex digest */
static int api_hmac_sha256(lua_State *L)
{
    size_t key_len, data_len;
    const char *key = luaL_checklstring(L, 1, &key_len);
    const char *data = luaL_checklstring(L, 2, &data_len);
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int digest_len = 0;
    if (!HMAC(EVP_sha256(), key, (int)key_len, (const unsigned char *)data, data_len, digest,
              &digest_len))
        return luaL_error(L, "hmac_sha256 failed");
    char hex[EVP_MAX_MD_SIZE * 2];
    static const char digits[] = "0123456789abcdef";
    for (unsigned i = 0; i < digest_len; i++) {
        hex[2 * i] = digits[digest[i] >> 4];
        hex[2 * i + 1] = digits[digest[i] & 15];
    }
    lua_pushlstring(L, hex, 2 * (size_t)digest_len);
    return 1;
}

/* split(s, sep) -> what comes before the first sep and what comes after it, or nil when s has
 * no sep (plain bytes, not a pattern): the "target:payload" of most protocols in one call
 * where string.find and two string.sub make three. */
static int api_split(lua_State *L)
{
    size_t len, sep_len;
    const char *s = luaL_checklstring(L, 1, &len);
    const char *sep = luaL_checklstring(L, 2, &sep_len);
    if (!sep_len)
        return luaL_argerror(L, 2, "the separator is empty");
    const char *at = sep_len == 1 ? memchr(s, sep[0], len) : memmem(s, len, sep, sep_len);
    if (!at) {
        lua_pushnil(L);
        return 1;
    }
    lua_pushlstring(L, s, (size_t)(at - s));
    lua_pushlstring(L, at + sep_len, len - (size_t)(at - s) - sep_len);
    return 2;
}

static const luaL_Reg api[] = {
    {"split", api_split},
    {"send_uid", api_send_uid},
    {"broadcast", api_broadcast},
    {"send_group", api_send_group},
    {"disconnect", api_disconnect},
    {"join", api_join},
    {"leave", api_leave},
    {"group_count", api_group_count},
    {"env", api_env},
    {"timer", ucl_api_timer},
    {"every", ucl_api_every},
    {"is_online", api_is_online},
    {"uids", api_uids},
    {"members", api_members},
    {"connections", api_connections},
    {"stats", api_stats},
    {"log", api_log},
    {"now", api_now},
    {"hmac_sha256", api_hmac_sha256},
    {NULL, NULL},
};

int ucl_open_api(lua_State *L)
{
    luaL_newlib(L, api);
    ucl_open_json(L);
    lua_setfield(L, -2, "json");
    return 1;
}

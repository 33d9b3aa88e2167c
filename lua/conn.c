/* conn.c -- the connection handle (userdata "uidcast.conn"): fields, methods, and its life.
 *
 * One handle per connection per Lua state, so the same connection is always the same Lua value:
 * every live handle is found by id in a weak table. Handles are made on first use and held
 * while recently used: in two generations, the recent one replaced once HANDLES_FRESH handles
 * were made since it was, so a connection that was handed to no handler while HANDLES_FRESH
 * to 2 * HANDLES_FRESH other connections got their handles loses its own to the collector,
 * unless the script keeps it (or its conn.data). That saves an idle connection its ~140 bytes
 * of Lua memory, and the next handler call makes it again. A handle used again is held in the
 * recent generation once per generation (its gen says where it is), so busy connections cost
 * one lookup a call however many there are. When the core reports the close, the handle is
 * forgotten and its pointer cleared: a script that kept it gets a harmless closed handle whose
 * send returns false. */
#include <string.h>

#include "../core/umap.h"
#include "internal.h"

#define CONN_MT "uidcast.conn"
#define HANDLES_FRESH 1024

struct conn_handle {
    struct uc_conn *conn; /* NULL once closed */
    lua_Integer id;
    unsigned gen; /* the generation that holds it (see the top) */
    /* The bytes of the uid string in user value 2 (see push_uid), or NULL: that string keeps
     * them alive and in place. */
    const char *uid;
    size_t uid_len;
};

static struct conn_handle *check_handle(lua_State *L, int idx)
{
    return luaL_checkudata(L, idx, CONN_MT);
}

struct uc_conn *ucl_check_conn(lua_State *L, int idx) { return check_handle(L, idx)->conn; }

static void push_table(lua_State *L, int ref) { lua_rawgeti(L, LUA_REGISTRYINDEX, ref); }

/* A new table in the registry (weak-valued with mode "v"); its ref. */
static int new_table(lua_State *L, const char *mode)
{
    lua_newtable(L);
    if (mode) {
        lua_createtable(L, 0, 1);
        lua_pushstring(L, mode);
        lua_setfield(L, -2, "__mode");
        lua_setmetatable(L, -2);
    }
    return luaL_ref(L, LUA_REGISTRYINDEX);
}

/* Holds h, the handle on top, in the recent generation. Once HANDLES_FRESH handles were made
 * since the recent generation was, it becomes the older one, and the older one is let go: its
 * handles live on only where something else keeps them. */
static void hold_recent(lua_State *L, struct ucl_state *st, struct conn_handle *h)
{
    if (st->handles.made >= HANDLES_FRESH) {
        luaL_unref(L, LUA_REGISTRYINDEX, st->handles.older);
        st->handles.older = st->handles.recent;
        st->handles.recent = new_table(L, NULL);
        st->handles.made = 0;
        st->handles.gen++;
    }
    push_table(L, st->handles.recent);
    lua_pushvalue(L, -2);
    lua_rawseti(L, -2, h->id);
    lua_pop(L, 1);
    h->gen = st->handles.gen;
}

/* Pushes c's handle, found in or added to the table of every handle at index all (absolute). */
static struct conn_handle *push_handle(lua_State *L, int all, struct uc_conn *c)
{
    struct ucl_state *st = ucl_state_of(L);
    lua_Integer id = (lua_Integer)uc_conn_id(c);
    struct conn_handle *h;
    if (lua_rawgeti(L, all, id) != LUA_TNIL) {
        h = lua_touserdata(L, -1);
    } else {
        lua_pop(L, 1);
        h = lua_newuserdatauv(L, sizeof *h, 2);
        *h = (struct conn_handle){.conn = c, .id = id, .gen = st->handles.gen - 1};
        luaL_setmetatable(L, CONN_MT);
        lua_pushvalue(L, -1);
        lua_rawseti(L, all, id);
        st->handles.made++;
    }
    if (h->gen != st->handles.gen)
        hold_recent(L, st, h);
    return h;
}

struct conn_handle *ucl_push_conn(lua_State *L, struct uc_conn *c)
{
    push_table(L, ucl_state_of(L)->handles.all);
    struct conn_handle *h = push_handle(L, lua_gettop(L), c);
    lua_remove(L, -2);
    return h;
}

struct conn_handle *ucl_push_hook_conn(lua_State *co, struct uc_conn *c)
{
    return push_handle(co, UCL_CO_HANDLES, c);
}

static void forget_in(lua_State *L, int ref, lua_Integer id)
{
    push_table(L, ref);
    lua_pushnil(L);
    lua_rawseti(L, -2, id);
    lua_pop(L, 1);
}

void ucl_conn_forget(lua_State *L, struct uc_conn *c)
{
    struct ucl_state *st = ucl_state_of(L);
    lua_Integer id = (lua_Integer)uc_conn_id(c);
    push_table(L, st->handles.all);
    if (lua_rawgeti(L, -1, id) == LUA_TUSERDATA)
        ((struct conn_handle *)lua_touserdata(L, -1))->conn = NULL;
    lua_pop(L, 2);
    forget_in(L, st->handles.all, id);
    forget_in(L, st->handles.recent, id);
    forget_in(L, st->handles.older, id);
    forget_in(L, st->handles.kept, id);
}

/* Returns true for 0, or false and the core's error text (misuse raised earlier; only running
 * out of memory is raised here, as Lua itself would). */
static int push_result(lua_State *L, int r)
{
    if (r == UC_ERR_NOMEM)
        return luaL_error(L, "not enough memory");
    lua_pushboolean(L, r == 0);
    if (r == 0)
        return 1;
    lua_pushstring(L, uc_strerror(r));
    return 2;
}

/* conn:bind(uid [, {since = N}]) -> true | false, "closed". With since (a uidcast.v1
 * connection only) the uid's kept messages numbered above N are replayed first. */
static int conn_bind(lua_State *L)
{
    struct conn_handle *h = check_handle(L, 1);
    size_t len;
    const char *uid = ucl_check_key(L, 2, "uid", &len);
    lua_Integer since = -1;
    if (!lua_isnoneornil(L, 3)) {
        luaL_checktype(L, 3, LUA_TTABLE);
        if (lua_getfield(L, 3, "since") != LUA_TNIL) {
            int is_int;
            since = lua_tointegerx(L, -1, &is_int);
            if (!is_int || since < 0 || since >= ((lua_Integer)1 << 53))
                return luaL_argerror(L, 3, "opts.since must be a whole number, 0 to 2^53-1");
            if (h->conn && !uc_conn_protocol(h->conn))
                return luaL_argerror(L, 3,
                                     "opts.since needs a connection that speaks uidcast.v1 "
                                     "(conn.protocol), where kept messages carry numbers");
        }
        lua_pop(L, 1);
    }
    if (!h->conn)
        return push_result(L, UC_ERR_CLOSED);
    return push_result(L, since < 0 ? uc_conn_bind(h->conn, uid, len)
                                    : uc_conn_bind_since(h->conn, uid, len, (uint64_t)since));
}

static int conn_unbind(lua_State *L)
{
    struct conn_handle *h = check_handle(L, 1);
    if (h->conn)
        uc_conn_unbind(h->conn);
    return 0;
}

/* conn:send(data [, binary]) -> true | false, "closed" */
static int conn_send(lua_State *L)
{
    struct conn_handle *h = check_handle(L, 1);
    size_t len;
    const char *data = luaL_checklstring(L, 2, &len);
    int binary = lua_toboolean(L, 3);
    return push_result(L, h->conn ? uc_conn_send(h->conn, data, len, binary) : UC_ERR_CLOSED);
}

/* conn:close([code [, reason]]) -> true | false, "closed" */
static int conn_close(lua_State *L)
{
    struct conn_handle *h = check_handle(L, 1);
    lua_Integer code = luaL_optinteger(L, 2, 1000);
    size_t reason_len;
    const char *reason = luaL_optlstring(L, 3, "", &reason_len);
    luaL_argcheck(L, code >= 1000 && code <= 4999 && uc_close_code_valid((int)code), 2,
                  "close code must be 1000-1003, 1007-1011 or 3000-4999");
    luaL_argcheck(L, reason_len <= 123, 3, "close reason must be at most 123 bytes");
    return push_result(L, h->conn ? uc_conn_close(h->conn, (int)code, reason, reason_len)
                                  : UC_ERR_CLOSED);
}

static const char *check_group(lua_State *L, int idx, size_t *len)
{
    return ucl_check_key(L, idx, "group", len);
}

/* conn:join(group) -> true | false, "closed" */
static int conn_join(lua_State *L)
{
    struct conn_handle *h = check_handle(L, 1);
    size_t len;
    const char *group = check_group(L, 2, &len);
    return push_result(L, h->conn ? uc_conn_join(h->conn, group, len) : UC_ERR_CLOSED);
}

/* conn:leave(group) -> true when it was a member */
static int conn_leave(lua_State *L)
{
    struct conn_handle *h = check_handle(L, 1);
    size_t len;
    const char *group = check_group(L, 2, &len);
    lua_pushboolean(L, h->conn && uc_conn_leave(h->conn, group, len));
    return 1;
}

/* conn:in_group(group) -> boolean */
static int conn_in_group(lua_State *L)
{
    struct conn_handle *h = check_handle(L, 1);
    size_t len;
    const char *group = check_group(L, 2, &len);
    lua_pushboolean(L, h->conn && uc_conn_in_group(h->conn, group, len));
    return 1;
}

static void append_name(const char *name, size_t len, void *ctx)
{
    lua_State *L = ctx;
    lua_pushlstring(L, name, len);
    lua_rawseti(L, -2, (lua_Integer)luaL_len(L, -2) + 1);
}

/* conn:groups() -> array of the names of the groups it is in */
static int conn_groups(lua_State *L)
{
    struct conn_handle *h = check_handle(L, 1);
    lua_newtable(L);
    if (h->conn)
        uc_conn_each_group(h->conn, append_name, L);
    return 1;
}

static const luaL_Reg methods[] = {
    {"bind", conn_bind},   {"unbind", conn_unbind},     {"join", conn_join},
    {"leave", conn_leave}, {"in_group", conn_in_group}, {"groups", conn_groups},
    {"send", conn_send},   {"close", conn_close},       {NULL, NULL},
};

/* conn.data: a table of the script's own, created on first access (user value 1); from then
 * on the handle is held for the connection's life, or the data would go with it. */
static void push_data(lua_State *L, int idx)
{
    if (lua_getiuservalue(L, idx, 1) == LUA_TTABLE)
        return;
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setiuservalue(L, idx, 1);
    push_table(L, ucl_state_of(L)->handles.kept);
    lua_pushvalue(L, idx);
    lua_rawseti(L, -2, ((struct conn_handle *)lua_touserdata(L, idx))->id);
    lua_pop(L, 1);
}

/* conn.uid: the Lua string of the uid is kept in the handle's second user value and reused
 * while the core's uid is the same bytes (compared with the handle's pointer to them), so
 * reading it on every message interns nothing. */
static void push_uid(lua_State *L, int idx, struct conn_handle *h)
{
    size_t len = 0;
    const char *uid = h->conn ? uc_conn_uid(h->conn, &len) : NULL;
    if (!uid) {
        lua_pushnil(L);
        return;
    }
    if (h->uid && h->uid_len == len && memcmp(h->uid, uid, len) == 0) {
        lua_getiuservalue(L, idx, 2);
        return;
    }
    h->uid = lua_pushlstring(L, uid, len);
    h->uid_len = len;
    lua_pushvalue(L, -1);
    lua_setiuservalue(L, idx, 2);
}

void ucl_push_conn_uid(lua_State *L, int idx, struct conn_handle *h)
{
    push_uid(L, lua_absindex(L, idx), h);
}

/* The fields, by length and bytes: this runs for every conn.uid a handler reads, and comparing
 * a few bytes is cheaper than a hash lookup. Returns 0 for a key that is no field. */
static int push_field(lua_State *L, struct conn_handle *h, const char *key, size_t len)
{
#define IS(name) (len == sizeof name - 1 && memcmp(key, name, len) == 0)
    if (IS("uid")) {
        push_uid(L, 1, h);
    } else if (IS("protocol")) {
        const char *protocol = h->conn ? uc_conn_protocol(h->conn) : NULL;
        if (protocol)
            lua_pushstring(L, protocol);
        else
            lua_pushnil(L);
    } else if (IS("id")) {
        lua_pushinteger(L, h->id);
    } else if (IS("data")) {
        push_data(L, 1);
    } else if (IS("closed")) {
        lua_pushboolean(L, !h->conn || !uc_conn_is_open(h->conn));
    } else if (IS("since")) {
        uint64_t since;
        if (h->conn && uc_conn_since(h->conn, &since))
            lua_pushinteger(L, (lua_Integer)since);
        else
            lua_pushnil(L);
    } else if (IS("remote_addr")) {
        if (h->conn)
            lua_pushstring(L, uc_conn_remote_addr(h->conn));
        else
            lua_pushnil(L);
    } else {
        return 0;
    }
#undef IS
    return 1;
}

/* __index. Its first argument is always a handle: the metatable is hidden (__metatable), so
 * no script can call this function with anything else. */
static int conn_index(lua_State *L)
{
    struct conn_handle *h = lua_touserdata(L, 1);
    size_t len;
    const char *key = lua_tolstring(L, 2, &len);
    if (key && lua_type(L, 2) == LUA_TSTRING && push_field(L, h, key, len))
        return 1;
    lua_pushvalue(L, 2);
    lua_rawget(L, lua_upvalueindex(1)); /* a method, or nil */
    return 1;
}

static int conn_newindex(lua_State *L)
{
    const char *key = luaL_checkstring(L, 2);
    return luaL_error(L, "conn.%s is read-only; keep your own values in conn.data", key);
}

static int conn_tostring(lua_State *L)
{
    struct conn_handle *h = check_handle(L, 1);
    lua_pushfstring(L, "uidcast.conn(%I%s)", h->id, h->conn ? "" : ", closed");
    return 1;
}

void ucl_conn_register(lua_State *L)
{
    struct ucl_state *st = ucl_state_of(L);
    st->handles.recent = new_table(L, NULL);
    st->handles.older = new_table(L, NULL);
    st->handles.all = new_table(L, "v");
    st->handles.kept = new_table(L, NULL);
    luaL_newmetatable(L, CONN_MT);
    luaL_newlib(L, methods);
    lua_pushcclosure(L, conn_index, 1);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, conn_newindex);
    lua_setfield(L, -2, "__newindex");
    lua_pushcfunction(L, conn_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushliteral(L, "uidcast.conn");
    lua_setfield(L, -2, "__name");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable"); /* scripts cannot swap the methods under the core */
    lua_pop(L, 1);
}

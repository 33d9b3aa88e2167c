/* json.c -- uidcast.json: Lua values to JSON text and back, on jansson (Debian's libjansson).
 *
 * jansson rather than cJSON: it keeps integers exact in 64 bits, as Lua 5.4 does (cJSON
 * holds every number as a double), and says where a text is wrong by line, column and byte.
 *
 * The mapping: nil and uidcast.json.null <-> null; booleans; integers <-> integers, floats <->
 * reals (finite, 15 significant digits as Lua prints them); strings (UTF-8) <-> strings; a table
 * whose keys are exactly 1..n, or any table with uidcast.json.array_mt as metatable, <-> array;
 * other tables <-> objects (keys strings or integers). Decoded arrays carry array_mt, so an empty
 * one encodes as [] again. Nesting and text size are bounded so that a script cannot make the host
 * recurse or allocate without limit: jansson's memory is not counted by the Lua state's cap.
 *
 * A jansson tree in the making is held by a box userdata whose __gc frees it, so a Lua error
 * halfway (out of memory) leaks nothing; each function frees it at once when it is done. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>

#include "internal.h"

#define JSON_DEPTH_MAX 128
#define JSON_TEXT_MAX (16u << 20)
#define BOX_MT "uidcast.json.box"
#define ARRAY_MT_KEY "uidcast.json.array_mt" /* registry: the metatable marking arrays */

static int box_gc(lua_State *L)
{
    json_t **box = luaL_checkudata(L, 1, BOX_MT);
    json_decref(*box);
    *box = NULL;
    return 0;
}

static json_t **push_box(lua_State *L)
{
    json_t **box = lua_newuserdatauv(L, sizeof *box, 0);
    *box = NULL;
    luaL_setmetatable(L, BOX_MT);
    return box;
}

static void free_box(json_t **box)
{
    json_decref(*box);
    *box = NULL;
}

/* ---- encode ---- */

/* Why an encoding failed; the caller raises it once the partial tree is freed. */
struct encode_error {
    char text[128];
};

static json_t *value_to_json(lua_State *L, int idx, int depth, struct encode_error *e);

static int is_array(lua_State *L, int idx, size_t *len)
{
    *len = lua_rawlen(L, idx);
    if (lua_getmetatable(L, idx)) {
        lua_getfield(L, LUA_REGISTRYINDEX, ARRAY_MT_KEY);
        int marked = lua_rawequal(L, -1, -2);
        lua_pop(L, 2);
        if (marked)
            return 1;
    }
    if (*len == 0)
        return 0;
    size_t keys = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 1 ||
            (size_t)lua_tointeger(L, -1) > *len || ++keys > *len) {
            lua_pop(L, 1);
            return 0;
        }
    }
    return keys == *len;
}

static json_t *table_to_json(lua_State *L, int idx, int depth, struct encode_error *e)
{
    size_t len;
    if (is_array(L, idx, &len)) {
        json_t *a = json_array();
        for (size_t i = 1; a && i <= len; i++) {
            lua_rawgeti(L, idx, (lua_Integer)i);
            json_t *v = value_to_json(L, lua_gettop(L), depth + 1, e);
            lua_pop(L, 1);
            if (!v || json_array_append_new(a, v) != 0) {
                json_decref(a);
                return NULL;
            }
        }
        return a;
    }
    json_t *o = json_object();
    lua_pushnil(L);
    while (o && lua_next(L, idx)) {
        char number[32];
        const char *key;
        size_t key_len;
        if (lua_type(L, -2) == LUA_TSTRING) {
            key = lua_tolstring(L, -2, &key_len);
        } else if (lua_isinteger(L, -2)) {
            key_len =
                (size_t)snprintf(number, sizeof number, "%lld", (long long)lua_tointeger(L, -2));
            key = number;
        } else {
            snprintf(e->text, sizeof e->text, "a key must be a string or an integer, not a %s",
                     luaL_typename(L, -2));
            lua_pop(L, 2);
            json_decref(o);
            return NULL;
        }
        json_t *v = value_to_json(L, lua_gettop(L), depth + 1, e);
        lua_pop(L, 1);
        if (!v || json_object_setn_new(o, key, key_len, v) != 0) {
            if (v && !e->text[0])
                snprintf(e->text, sizeof e->text, "a key is not valid UTF-8");
            lua_pop(L, 1);
            json_decref(o);
            return NULL;
        }
    }
    return o;
}

/* Calls nothing that raises, so the partial tree is always the caller's to free. */
static json_t *value_to_json(lua_State *L, int idx, int depth, struct encode_error *e)
{
    if (depth > JSON_DEPTH_MAX || !lua_checkstack(L, 4)) {
        snprintf(e->text, sizeof e->text, "nested deeper than %d (a table that contains itself?)",
                 JSON_DEPTH_MAX);
        return NULL;
    }
    json_t *v = NULL;
    switch (lua_type(L, idx)) {
    case LUA_TNIL: return json_null();
    case LUA_TLIGHTUSERDATA:
        if (lua_touserdata(L, idx) == NULL)
            return json_null();
        break;
    case LUA_TBOOLEAN: return json_boolean(lua_toboolean(L, idx));
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx))
            return json_integer((json_int_t)lua_tointeger(L, idx));
        if (!isfinite(lua_tonumber(L, idx))) {
            snprintf(e->text, sizeof e->text, "cannot encode %g (JSON has no inf or nan)",
                     lua_tonumber(L, idx));
            return NULL;
        }
        return json_real(lua_tonumber(L, idx));
    case LUA_TSTRING: {
        size_t len;
        const char *s = lua_tolstring(L, idx, &len);
        v = json_stringn(s, len);
        if (!v)
            snprintf(e->text, sizeof e->text, "a string is not valid UTF-8 (JSON text is Unicode)");
        return v;
    }
    case LUA_TTABLE: return table_to_json(L, idx, depth, e);
    }
    snprintf(e->text, sizeof e->text, "cannot encode a %s value", luaL_typename(L, idx));
    return NULL;
}

static int dump_to_buffer(const char *data, size_t size, void *arg)
{
    luaL_addlstring(arg, data, size);
    return 0;
}

/* encode(value) -> text; compact, object keys sorted so equal values give equal texts. */
static int json_encode(lua_State *L)
{
    luaL_checkany(L, 1);
    lua_settop(L, 1);
    json_t **box = push_box(L);
    struct encode_error e = {{0}};
    *box = value_to_json(L, 1, 1, &e);
    if (!*box)
        return luaL_error(L, "uidcast.json.encode: %s", e.text[0] ? e.text : "out of memory");
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    json_dump_callback(*box, dump_to_buffer, &b,
                       JSON_ENCODE_ANY | JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(15));
    luaL_pushresult(&b);
    free_box(box);
    return 1;
}

/* ---- decode ---- */

static void push_value(lua_State *L, json_t *v, int depth)
{
    if (depth > JSON_DEPTH_MAX)
        luaL_error(L, "uidcast.json.decode: nested deeper than %d", JSON_DEPTH_MAX);
    luaL_checkstack(L, 3, "uidcast.json.decode");
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        lua_createtable(L, 0, (int)json_object_size(v));
        for (void *it = json_object_iter(v); it; it = json_object_iter_next(v, it)) {
            lua_pushlstring(L, json_object_iter_key(it), json_object_iter_key_len(it));
            push_value(L, json_object_iter_value(it), depth + 1);
            lua_rawset(L, -3);
        }
        break;
    }
    case JSON_ARRAY: {
        size_t n = json_array_size(v);
        lua_createtable(L, n > INT32_MAX ? INT32_MAX : (int)n, 0);
        for (size_t i = 0; i < n; i++) {
            push_value(L, json_array_get(v, i), depth + 1);
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
        luaL_getmetatable(L, ARRAY_MT_KEY);
        lua_setmetatable(L, -2);
        break;
    }
    case JSON_STRING: lua_pushlstring(L, json_string_value(v), json_string_length(v)); break;
    case JSON_INTEGER: lua_pushinteger(L, (lua_Integer)json_integer_value(v)); break;
    case JSON_REAL: lua_pushnumber(L, json_real_value(v)); break;
    case JSON_TRUE:
    case JSON_FALSE: lua_pushboolean(L, json_is_true(v)); break;
    case JSON_NULL: lua_pushlightuserdata(L, NULL); break;
    }
}

/* decode(text) -> value; a bad text raises an error saying where. */
static int json_decode(lua_State *L)
{
    size_t len;
    const char *text = luaL_checklstring(L, 1, &len);
    if (len > JSON_TEXT_MAX)
        return luaL_error(L, "uidcast.json.decode: text of %I bytes, more than the %d allowed",
                          (lua_Integer)len, (int)JSON_TEXT_MAX);
    json_t **box = push_box(L);
    json_error_t err;
    *box = json_loadb(text, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
    if (!*box)
        return luaL_error(L, "uidcast.json.decode: %s at line %d, column %d (byte %d)", err.text,
                          err.line, err.column, err.position);
    push_value(L, *box, 1);
    free_box(box);
    return 1;
}

int ucl_open_json(lua_State *L)
{
    static const luaL_Reg functions[] = {
        {"encode", json_encode},
        {"decode", json_decode},
        {NULL, NULL},
    };
    if (luaL_newmetatable(L, BOX_MT)) {
        lua_pushcfunction(L, box_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    luaL_newlib(L, functions);
    lua_pushlightuserdata(L, NULL);
    lua_setfield(L, -2, "null");
    luaL_newmetatable(L, ARRAY_MT_KEY);
    lua_setfield(L, -2, "array_mt");
    return 1;
}

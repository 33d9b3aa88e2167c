/* vm.c -- one Lua state: capped allocator, sandbox, loading the script and caching its handlers.
 *
 * The sandbox is built by construction, not by removal after the fact: only the libraries
 * in allowed_libs are opened, os is reduced to time/clock/date, load refuses bytecode, and
 * require finds only the uidcast module. */
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/log.h"
#include "internal.h"

static const luaL_Reg allowed_libs[] = {
    {LUA_GNAME, luaopen_base},          {LUA_LOADLIBNAME, luaopen_package},
    {LUA_COLIBNAME, luaopen_coroutine}, {LUA_TABLIBNAME, luaopen_table},
    {LUA_STRLIBNAME, luaopen_string},   {LUA_MATHLIBNAME, luaopen_math},
    {LUA_UTF8LIBNAME, luaopen_utf8},    {NULL, NULL},
};

static const char *const allowed_os[] = {"time", "clock", "date", NULL};
static const char *const removed_globals[] = {"dofile", "loadfile", NULL};

const char *const ucl_hook_names[UCL_HOOK_COUNT] = {
    "on_open", "on_message", "on_close", "on_start", "on_reload", "on_stop",
};

/* Fails allocations beyond the state's limit: the failing handler gets a "not enough memory"
 * error, the process keeps its memory. */
static void *capped_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    struct ucl_state *st = ud;
    if (!ptr)
        osize = 0;
    if (nsize == 0) {
        free(ptr);
        st->mem_used -= osize;
        return NULL;
    }
    if (nsize > osize && st->mem_used + (nsize - osize) > st->mem_limit)
        return NULL;
    void *p = realloc(ptr, nsize);
    if (p)
        st->mem_used = st->mem_used - osize + nsize;
    return p;
}

/* load() with the mode forced to text, keeping the caller's argument count (an explicit nil
 * env differs from none). */
static int text_only_load(lua_State *L)
{
    int n = lua_gettop(L);
    luaL_checkany(L, 1);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_pushvalue(L, 1);
    if (n >= 2)
        lua_pushvalue(L, 2);
    else
        lua_pushnil(L);
    lua_pushliteral(L, "t");
    int nargs = 3;
    if (n >= 4) {
        lua_pushvalue(L, 4);
        nargs = 4;
    }
    lua_call(L, nargs, LUA_MULTRET);
    return lua_gettop(L) - n;
}

static int open_sandbox(lua_State *L)
{
    for (const luaL_Reg *lib = allowed_libs; lib->func; lib++) {
        luaL_requiref(L, lib->name, lib->func, 1);
        lua_pop(L, 1);
    }
    for (const char *const *g = removed_globals; *g; g++) {
        lua_pushnil(L);
        lua_setglobal(L, *g);
    }
    lua_getglobal(L, "load");
    lua_pushcclosure(L, text_only_load, 1);
    lua_setglobal(L, "load");

    /* os: a fresh table with only the clock functions. */
    luaL_requiref(L, LUA_OSLIBNAME, luaopen_os, 0);
    lua_newtable(L);
    for (const char *const *f = allowed_os; *f; f++) {
        lua_getfield(L, -2, *f);
        lua_setfield(L, -2, *f);
    }
    lua_pushvalue(L, -1);
    lua_setglobal(L, LUA_OSLIBNAME);
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_pushvalue(L, -2);
    lua_setfield(L, -2, LUA_OSLIBNAME);
    lua_pop(L, 3);

    /* require: preload only (uidcast); no file or C searchers, no loadlib. */
    lua_getglobal(L, LUA_LOADLIBNAME);
    lua_pushliteral(L, "");
    lua_setfield(L, -2, "path");
    lua_pushliteral(L, "");
    lua_setfield(L, -2, "cpath");
    lua_pushnil(L);
    lua_setfield(L, -2, "loadlib");
    lua_getfield(L, -1, "searchers");
    for (lua_Integer i = luaL_len(L, -1); i > 1; i--) {
        lua_pushnil(L);
        lua_rawseti(L, -2, i);
    }
    lua_pop(L, 1);
    lua_getfield(L, -1, "preload");
    lua_pushcfunction(L, ucl_open_api);
    lua_setfield(L, -2, "uidcast");
    lua_pop(L, 2);
    ucl_conn_register(L);
    return 0;
}

/* Runs the script and keeps what it returned; on error leaves the message on the stack. */
static int load_script(struct ucl_state *st, const char *script)
{
    lua_State *L = st->L;
    lua_pushcfunction(L, ucl_traceback);
    if (luaL_loadfilex(L, script, "t") != LUA_OK)
        return -1; /* "script:line: message", or "cannot open script" */
    if (lua_pcall(L, 0, 1, -2) != LUA_OK)
        return -1;
    lua_remove(L, -2);
    if (!lua_istable(L, -1)) {
        lua_pushfstring(L, "%s: the script must return a table of handlers, not %s", script,
                        luaL_typename(L, -1));
        return -1;
    }
    for (int h = 0; h < UCL_HOOK_COUNT; h++) {
        lua_getfield(L, -1, ucl_hook_names[h]);
        if (lua_isnil(L, -1)) {
            lua_pop(L, 1);
            continue;
        }
        if (!lua_isfunction(L, -1)) {
            lua_pushfstring(L, "%s: handler %s must be a function, not %s", script,
                            ucl_hook_names[h], luaL_typename(L, -1));
            return -1;
        }
        st->hooks[h] = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    lua_pop(L, 1);
    return 0;
}

struct ucl_state *ucl_state_new(struct ucl_policy *p, char *err, size_t err_size)
{
    struct ucl_state *st = calloc(1, sizeof *st);
    if (!st) {
        snprintf(err, err_size, "out of memory");
        return NULL;
    }
    st->policy = p;
    st->mem_limit = p->limits.memory;
    for (int h = 0; h < UCL_HOOK_COUNT; h++)
        st->hooks[h] = LUA_NOREF;
    st->L = lua_newstate(capped_alloc, st);
    if (!st->L) {
        snprintf(err, err_size, "cannot create a Lua state (memory limit %zu bytes)",
                 st->mem_limit);
        free(st);
        return NULL;
    }
    *(struct ucl_state **)lua_getextraspace(st->L) = st;
    lua_State *L = st->L;
    lua_pushcfunction(L, open_sandbox);
    if (lua_pcall(L, 0, 0, 0) != LUA_OK)
        goto fail;
    lua_newtable(L);
    st->conns_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    if (load_script(st, p->script) != 0)
        goto fail;
    return st;

fail:
    snprintf(err, err_size, "%s", lua_isstring(L, -1) ? lua_tostring(L, -1) : "error");
    ucl_state_free(st);
    return NULL;
}

void ucl_state_free(struct ucl_state *st)
{
    if (!st)
        return;
    lua_close(st->L);
    free(st);
}

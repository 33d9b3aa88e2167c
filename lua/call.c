/* call.c -- every call from C into Lua goes through ucl_call: a traceback handler, lua_pcall,
 * one log line naming the handler, and the stack left as the caller expects. */
#include <assert.h>

#include "../core/log.h"
#include "internal.h"

int ucl_traceback(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    if (!msg) {
        if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
            msg = lua_tostring(L, -1);
        else
            msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    }
    luaL_traceback(L, L, msg, 1);
    return 1;
}

int ucl_call(struct ucl_state *st, int nargs, int nresults, const char *what)
{
    lua_State *L = st->L;
    int func = lua_gettop(L) - nargs;
#ifndef NDEBUG
    int expected_top = func - 1 + nresults;
#endif
    lua_pushcfunction(L, ucl_traceback);
    lua_insert(L, func);
    int status = lua_pcall(L, nargs, nresults, func);
    lua_remove(L, func);
    if (status != LUA_OK) {
        if (st->policy->srv)
            uc_server_count_policy_error(st->policy->srv);
        uc_error("lua error in %s: %s", what,
                 lua_isstring(L, -1) ? lua_tostring(L, -1) : "(no message)");
        lua_pop(L, 1);
        for (int i = 0; i < nresults; i++)
            lua_pushnil(L);
    }
    assert(lua_gettop(L) == expected_top);
    return status;
}

int ucl_push_hook(struct ucl_state *st, enum ucl_hook hook)
{
    if (st->hooks[hook] == LUA_NOREF)
        return 0;
    lua_rawgeti(st->L, LUA_REGISTRYINDEX, st->hooks[hook]);
    return 1;
}

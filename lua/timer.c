/* timer.c -- uidcast.timer / uidcast.every: libev timers that call back into the script.
 *
 * A timer handle is a userdata that embeds its ev_timer. While it is armed it is anchored in
 * the registry, so a script may drop it and still be called; stopping (or a one-shot firing)
 * releases the anchor. Its __gc stops the watcher, so closing a Lua state on reload stops
 * every timer that state created. */
#include <ev.h>

#include "../core/log.h"
#include "internal.h"

#define TIMER_MT "uidcast.timer"

struct timer_handle {
    ev_timer w;
    struct ucl_state *st;
    struct ev_loop *loop;
    int fn_ref;   /* the callback */
    int self_ref; /* anchors the handle while armed; LUA_NOREF when stopped */
};

static void disarm(lua_State *L, struct timer_handle *t)
{
    if (t->self_ref == LUA_NOREF)
        return;
    ev_timer_stop(t->loop, &t->w);
    luaL_unref(L, LUA_REGISTRYINDEX, t->self_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, t->fn_ref);
    t->self_ref = t->fn_ref = LUA_NOREF;
}

static void fire(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct timer_handle *t = (struct timer_handle *)w;
    struct ucl_state *st = t->st;
    lua_State *L = st->L;
    /* Keep the handle reachable during the call even if the callback stops it. */
    lua_rawgeti(L, LUA_REGISTRYINDEX, t->self_ref);
    lua_rawgeti(L, LUA_REGISTRYINDEX, t->fn_ref);
    if (w->repeat == 0.)
        disarm(L, t);
    ucl_call(st, 0, 0, "a timer callback");
    lua_pop(L, 1);
}

static int start(lua_State *L, int repeat)
{
    lua_Number seconds = luaL_checknumber(L, 1);
    luaL_argcheck(L, seconds >= 0.001 && seconds <= 86400 * 365, 1,
                  "seconds must be from 0.001 to a year");
    luaL_checktype(L, 2, LUA_TFUNCTION);
    struct ucl_state *st = ucl_state_of(L);
    if (!st->policy->srv)
        return luaL_error(L, "timers start once the server runs: create them in on_start");
    struct timer_handle *t = lua_newuserdatauv(L, sizeof *t, 0);
    t->st = st;
    t->loop = uc_server_loop(st->policy->srv);
    t->self_ref = t->fn_ref = LUA_NOREF;
    luaL_setmetatable(L, TIMER_MT);
    ev_timer_init(&t->w, fire, seconds, repeat ? seconds : 0.);
    lua_pushvalue(L, 2);
    t->fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pushvalue(L, -1);
    t->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    ev_timer_start(t->loop, &t->w);
    return 1;
}

/* uidcast.timer(seconds, fn) -> handle: fn runs once after seconds */
int ucl_api_timer(lua_State *L) { return start(L, 0); }

/* uidcast.every(seconds, fn) -> handle: fn runs every seconds until handle:stop() */
int ucl_api_every(lua_State *L) { return start(L, 1); }

/* handle:stop() -> true when it was still armed */
static int timer_stop(lua_State *L)
{
    struct timer_handle *t = luaL_checkudata(L, 1, TIMER_MT);
    int armed = t->self_ref != LUA_NOREF;
    disarm(L, t);
    lua_pushboolean(L, armed);
    return 1;
}

static int timer_gc(lua_State *L)
{
    struct timer_handle *t = luaL_checkudata(L, 1, TIMER_MT);
    /* Only reached once unanchored, or when the whole state closes (reload, exit). */
    ev_timer_stop(t->loop, &t->w);
    return 0;
}

void ucl_timer_register(lua_State *L)
{
    static const luaL_Reg methods[] = {{"stop", timer_stop}, {NULL, NULL}};
    luaL_newmetatable(L, TIMER_MT);
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, timer_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
}

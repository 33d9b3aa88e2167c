/* vm.c -- one Lua state: capped allocator, sandbox, loading the script and caching its handlers.
 *
 * The sandbox is built by construction, not by removal after the fact: only the libraries
 * in allowed_libs are opened, os is reduced to time/clock/date, load refuses bytecode, and
 * require finds only the uidcast module. */
#include <limits.h>
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
    "on_open", "on_message",     "on_close",       "on_start",  "on_reload",
    "on_stop", "on_cluster_gap", "on_undelivered", "on_online", "on_offline",
};

/* Every message makes a few short-lived strings (the message, the parts a script cuts from it)
 * that the collector frees in batches; glibc's free is slow for a batch larger than its
 * per-thread cache. So blocks up to 256 bytes are kept on a free list per 16-byte size class
 * and handed out again. A small block is always malloc'd at its class's full size, so a block
 * Lua resizes within its class stays where it is.
 *
 * A collection cycle frees about what was allocated since the last one, which is about the
 * live heap (Lua collects when the heap has doubled), all within its sweep: the lists keep up
 * to as many bytes as the state uses (at least SMALL_KEEP_MIN), so that the next cycle's
 * allocations find them all. The process then holds at most what Lua's own peak would be. */
#define SMALL_KEEP_MIN (256 * 1024)

/* The class of a size (1..UCL_SMALL_CLASSES), or 0 for a large one. */
static size_t small_class(size_t size)
{
    size_t c = (size + UCL_SMALL_STEP - 1) / UCL_SMALL_STEP;
    return size && c <= UCL_SMALL_CLASSES ? c : 0;
}

/* A kept block of class c, or NULL when there is none. */
static void *small_reuse(struct ucl_state *st, size_t c)
{
    void *p = uc_freelist_pop(&st->small[c - 1]);
    if (p)
        st->small_kept -= c * UCL_SMALL_STEP;
    return p;
}

static void *small_take(struct ucl_state *st, size_t c)
{
    void *p = small_reuse(st, c);
    return p ? p : malloc(c * UCL_SMALL_STEP);
}

/* Keeps p, a block Lua knew as size bytes, for reuse if it is small and the lists have room;
 * says whether it did. */
static int small_keep(struct ucl_state *st, void *p, size_t size)
{
    size_t c = small_class(size), bytes = c * UCL_SMALL_STEP;
    size_t keep = st->mem_used > SMALL_KEEP_MIN ? st->mem_used : SMALL_KEEP_MIN;
    if (!c || st->small_kept + bytes > keep)
        return 0;
    uc_freelist_push(&st->small[c - 1], p, UINT_MAX);
    st->small_kept += bytes;
    return 1;
}

/* Frees a block Lua knew as size bytes. */
static void block_free(struct ucl_state *st, void *p, size_t size)
{
    if (!small_keep(st, p, size))
        free(p);
}

static void small_free_all(struct ucl_state *st)
{
    for (size_t c = 0; c < UCL_SMALL_CLASSES; c++)
        uc_freelist_drain(&st->small[c]);
    st->small_kept = 0;
}

/* Whether growing the state by grow bytes would pass its cap (applied while a handler runs). */
static int over_cap(const struct ucl_state *st, size_t grow)
{
    return st->enforce_limit && st->mem_used + grow > st->mem_limit;
}

/* Every case of capped_alloc (below); kept out of line so that the two cases on the path of
 * every message need no stack frame. */
__attribute__((noinline)) static void *alloc_any(struct ucl_state *st, void *ptr, size_t osize,
                                                 size_t nsize)
{
    if (!ptr) { /* a new block; osize then only says what Lua makes */
        if (nsize == 0 || over_cap(st, nsize))
            return NULL;
        size_t c = small_class(nsize);
        void *p = c ? small_take(st, c) : malloc(nsize);
        if (p)
            st->mem_used += nsize;
        return p;
    }
    if (nsize == 0) {
        block_free(st, ptr, osize);
        st->mem_used -= osize;
        return NULL;
    }
    if (nsize > osize && over_cap(st, nsize - osize))
        return NULL;
    size_t oc = small_class(osize), nc = small_class(nsize);
    void *p;
    if (oc && oc == nc) {
        p = ptr; /* it fits the block it has */
    } else if (!oc && !nc) {
        p = realloc(ptr, nsize);
    } else {
        p = nc ? small_take(st, nc) : malloc(nsize);
        if (p) {
            memcpy(p, ptr, osize < nsize ? osize : nsize);
            block_free(st, ptr, osize);
        }
    }
    if (!p) {
        if (nsize > osize)
            return NULL;
        p = ptr; /* Lua counts on a shrink never failing; the block is big enough */
    }
    st->mem_used = st->mem_used - osize + nsize;
    return p;
}

/* Fails allocations beyond the state's limit while a handler runs: the handler gets a "not
 * enough memory" error, the process keeps its memory. Outside a handler (the core building a
 * request table, a traceback being formatted) the cap is not applied, because a memory error
 * outside a protected call would make Lua abort the whole process; those allocations are
 * small and bounded by the core's own limits. */
static void *capped_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    struct ucl_state *st = ud;
    /* The calls every message's strings make, in short: a new small block taken from its list,
     * and a small block freed onto its list; anything else goes to alloc_any. */
    if (!ptr) {
        size_t c = small_class(nsize);
        void *p;
        if (c && !over_cap(st, nsize) && (p = small_reuse(st, c))) {
            st->mem_used += nsize;
            return p;
        }
    } else if (nsize == 0 && small_keep(st, ptr, osize)) {
        st->mem_used -= osize;
        return NULL;
    }
    return alloc_any(st, ptr, osize, nsize);
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

/* package.searchers entry for --lua-path: "a.b" is <dir>/a/b.lua, loaded as text only. */
static int search_lua_path(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    const char *dir = ucl_state_of(L)->policy->limits.lua_path;
    if (!dir) {
        lua_pushliteral(L, "\n\tno --lua-path is set");
        return 1;
    }
    if (strstr(name, "..") || name[0] == '/' || strchr(name, '\\')) {
        lua_pushfstring(L, "\n\tmodule name '%s' may not leave --lua-path", name);
        return 1;
    }
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    luaL_addstring(&b, dir);
    luaL_addchar(&b, '/');
    for (const char *p = name; *p; p++)
        luaL_addchar(&b, *p == '.' ? '/' : *p);
    luaL_addstring(&b, ".lua");
    luaL_pushresult(&b);
    const char *file = lua_tostring(L, -1);
    int status = luaL_loadfilex(L, file, "t");
    if (status == LUA_ERRFILE) {
        lua_pushfstring(L, "\n\tno file '%s'", file);
        return 1;
    }
    if (status != LUA_OK)
        return lua_error(L);
    lua_pushvalue(L, -2); /* the file name, passed to the chunk as require does */
    return 2;
}

/* setmetatable() refusing __gc: Lua runs finalizers with hooks off, so a finalizer's loop
 * would escape the budget and freeze the server. (A __gc added to the metatable later does not
 * mark the object for finalization, so checking here is enough.) */
static int setmetatable_without_gc(lua_State *L)
{
    if (lua_type(L, 2) == LUA_TTABLE) {
        lua_pushliteral(L, "__gc");
        int has_gc = lua_rawget(L, 2) != LUA_TNIL;
        lua_pop(L, 1);
        if (has_gc)
            return luaL_argerror(L, 2,
                                 "__gc metamethods are not allowed in scripts (finalizers "
                                 "would run outside the instruction budget)");
    }
    int n = lua_gettop(L);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, n, LUA_MULTRET);
    return lua_gettop(L);
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

    /* require: preload (uidcast), then --lua-path only; no C searchers, no loadlib. */
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
    lua_pushcfunction(L, search_lua_path);
    lua_rawseti(L, -2, 2);
    lua_pop(L, 1);
    lua_getfield(L, -1, "preload");
    lua_pushcfunction(L, ucl_open_api);
    lua_setfield(L, -2, "uidcast");
    lua_pop(L, 2);
    ucl_strmatch_install(L);
    lua_getglobal(L, "setmetatable");
    lua_pushcclosure(L, setmetatable_without_gc, 1);
    lua_setglobal(L, "setmetatable");
    ucl_guard_catchers(L);
    ucl_conn_register(L);
    ucl_timer_register(L);
    return 0;
}

/* Edit distance between two short names (handler names are under 16 bytes). */
static size_t distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), row[32];
    if (la >= 32 || lb >= 32)
        return (size_t)-1;
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

/* Warns about an on_* field of the handler table (at -1) that no event calls: a misspelled
 * handler (on_mesage) would otherwise never run, silently. */
static void warn_unknown_handlers(lua_State *L, const char *script)
{
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING)
            continue;
        const char *name = lua_tostring(L, -1);
        if (strncmp(name, "on_", 3) != 0)
            continue;
        const char *closest = NULL;
        size_t best = (size_t)-1;
        for (int h = 0; h < UCL_HOOK_COUNT; h++) {
            size_t d = distance(name, ucl_hook_names[h]);
            if (d < best) {
                best = d;
                closest = ucl_hook_names[h];
            }
        }
        if (best == 0)
            continue;
        if (best <= 3)
            uc_warn("%s: %s is not a handler uidcast calls (did you mean %s?)", script, name,
                    closest);
        else
            uc_warn("%s: %s is not a handler uidcast calls", script, name);
    }
}

/* Runs the script (under the budget, like any handler) and keeps what it returned; on error
 * leaves the message on the stack. */
static int load_script(struct ucl_state *st, const char *script)
{
    lua_State *L = st->L;
    if (luaL_loadfilex(L, script, "t") != LUA_OK)
        return -1; /* "script:line: message", or "cannot open script" */
    char err[4096];
    if (ucl_run(st, 0, 1, err, sizeof err) != LUA_OK) {
        lua_pushstring(L, err);
        return -1;
    }
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
    warn_unknown_handlers(L, script);
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
    if (ucl_watchdog_start(err, err_size) != 0) {
        free(st);
        return NULL;
    }
    st->policy = p;
    st->mem_limit = p->limits.memory;
    for (int h = 0; h < UCL_HOOK_COUNT; h++)
        st->hooks[h] = LUA_NOREF;
    st->co_ref = LUA_NOREF;
    st->L = lua_newstate(capped_alloc, st);
    if (!st->L) {
        snprintf(err, err_size, "cannot create a Lua state (memory limit %zu bytes)",
                 st->mem_limit);
        small_free_all(st);
        ucl_watchdog_stop();
        free(st);
        return NULL;
    }
    *(struct ucl_state **)lua_getextraspace(st->L) = st;
    /* Generational: nearly everything a message makes (its data, the payload split off it)
     * dies young, while the connection handles and the script's tables live long. An
     * incremental cycle re-marks and re-sweeps all of those for each few hundred messages; a
     * young collection only visits what is new (make profile: 158 fewer instructions per
     * routed message, 17 more bytes per idle connection). */
    lua_gc(st->L, LUA_GCGEN, 0, 0);
    lua_State *L = st->L;
    lua_pushcfunction(L, open_sandbox);
    if (lua_pcall(L, 0, 0, 0) != LUA_OK)
        goto fail;
    ucl_new_handler_thread(st);
    if (load_script(st, p->script) != 0)
        goto fail;
    ucl_new_handler_thread(st); /* with the hooks in its base */
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
    ucl_online_orphan(st);
    lua_close(st->L);
    small_free_all(st);
    ucl_watchdog_stop();
    free(st);
}

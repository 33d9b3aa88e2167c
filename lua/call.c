/* call.c -- every call from C into Lua goes through here: one handler thread, an instruction
 * budget the script cannot catch, one log line with a traceback on failure.
 *
 * Handlers run as a coroutine (st->co) so that the count hook can stop a runaway one by
 * yielding: a yield unwinds through the script's own pcall, which an error would not. Where a
 * yield is impossible (inside a C function such as table.sort's comparator) the hook raises
 * an error instead, and the guarded pcall/xpcall/coroutine.resume rethrow it while the state
 * is aborting, so it still reaches the top.
 *
 * The count hook is armed late. While any hook is set, Lua 5.4 traps every VM instruction
 * (about twenty machine instructions each, whatever the count), which was a tenth of the work
 * of a routed message. So a handler starts unhooked, and a CPU-time timer of this thread (the
 * watchdog: a signal every WATCHDOG_NS of CPU the thread uses, none while it sleeps) arms the
 * hook on the handler thread when it finds a handler running. A handler that ends within a
 * tick costs nothing; a longer one is metered from the tick on. Coroutines the script makes
 * are hooked from their creation, because the watchdog only knows the handler thread. */
#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../core/log.h"
#include "internal.h"

/* The hook runs every HOOK_EVERY instructions: rare enough to cost nothing measurable, often
 * enough that the budget is exact to within a thousand instructions. */
#define HOOK_EVERY 1000

static const char budget_message[] = "instruction budget exceeded";
static const char deadline_message[] = "time limit exceeded";

/* The coarse clock: a few nanoseconds a read, and a 4 ms resolution is plenty for a deadline
 * of a second. */
static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Charges HOOK_EVERY instructions' worth; true once the budget or the deadline is spent (and
 * from then on, until the handler has unwound). The first charge starts the clock: it comes
 * within one watchdog tick of the handler's start (the tick hooks it), and reading the clock
 * there rather than in ucl_run keeps it off the path of every handler that ends sooner. */
static int spent(struct ucl_state *st)
{
    if (st->aborting)
        return 1;
    int64_t now = now_ns();
    if (st->deadline_ns == 0)
        st->deadline_ns = now + (int64_t)(st->policy->limits.timeout * 1e9);
    if (--st->hooks_left <= 0)
        st->aborting = budget_message;
    else if (now >= st->deadline_ns)
        st->aborting = deadline_message;
    return st->aborting != NULL;
}

static void count_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    struct ucl_state *st = ucl_state_of(L);
    if (!spent(st))
        return;
    /* From a hook, lua_yield only marks the thread: the yield happens when the hook returns. */
    if (L == st->co && lua_isyieldable(L)) {
        lua_yield(L, 0);
        return;
    }
    luaL_error(L, "%s", st->aborting);
}

/* ---- the watchdog ---- */

/* One scheduler tick of CPU (Linux checks CPU timers at each tick, 4 ms at HZ=250). */
#define WATCHDOG_NS 4000000L
#define WATCHDOG_SIGNAL (SIGRTMIN + 1)

/* The handler thread running now, or NULL. Written by ucl_run on this thread, read by the
 * signal handler on this thread (a signal is delivered between two of its instructions). */
static lua_State *volatile running;

/* The timer, while any Lua state lives in this process. It stops with the last state, so that
 * no signal can reach a handler that is gone (this code is also loaded as a module, by the
 * specs' harness, and unloaded before its process exits). */
static struct {
    pid_t pid; /* the process the timer belongs to: a forked child inherits neither */
    unsigned states;
    timer_t timer;
} watchdog;

static void watchdog_tick(int sig)
{
    (void)sig;
    lua_State *co = running;
    /* lua_sethook is the one Lua call made to be safe in a signal handler (lua.c's Ctrl-C). */
    if (co && !lua_gethookmask(co))
        lua_sethook(co, count_hook, LUA_MASKCOUNT, HOOK_EVERY);
}

int ucl_watchdog_start(char *err, size_t err_size)
{
    pid_t pid = getpid();
    if (watchdog.pid == pid && watchdog.states++ > 0)
        return 0;
    struct sigaction sa = {.sa_handler = watchdog_tick, .sa_flags = SA_RESTART};
    sigemptyset(&sa.sa_mask);
    struct sigevent sev = {.sigev_notify = SIGEV_THREAD_ID, .sigev_signo = WATCHDOG_SIGNAL};
    sev._sigev_un._tid = gettid(); /* sigev_notify_thread_id, which glibc 2.36 does not name */
    struct itimerspec every = {.it_interval = {0, WATCHDOG_NS}, .it_value = {0, WATCHDOG_NS}};
    if (sigaction(WATCHDOG_SIGNAL, &sa, NULL) != 0 ||
        timer_create(CLOCK_THREAD_CPUTIME_ID, &sev, &watchdog.timer) != 0) {
        snprintf(err, err_size, "cannot start the Lua watchdog timer: %s", strerror(errno));
        return -1;
    }
    if (timer_settime(watchdog.timer, 0, &every, NULL) != 0) {
        snprintf(err, err_size, "cannot start the Lua watchdog timer: %s", strerror(errno));
        timer_delete(watchdog.timer);
        return -1;
    }
    watchdog.pid = pid;
    watchdog.states = 1;
    return 0;
}

void ucl_watchdog_stop(void)
{
    if (watchdog.pid != getpid() || --watchdog.states > 0)
        return;
    timer_delete(watchdog.timer);
    signal(WATCHDOG_SIGNAL, SIG_IGN); /* drops a tick already pending */
    watchdog.pid = 0;
}

/* Hooks a thread the script creates (coroutine.create, coroutine.wrap) from its start. */
void ucl_hook_thread(lua_State *co) { lua_sethook(co, count_hook, LUA_MASKCOUNT, HOOK_EVERY); }

void ucl_meter(lua_State *L)
{
    struct ucl_state *st = ucl_state_of(L);
    if (spent(st))
        luaL_error(L, "%s", st->aborting);
}

static int guarded_k(lua_State *L, int status, lua_KContext ctx)
{
    (void)status;
    (void)ctx;
    const char *aborting = ucl_state_of(L)->aborting;
    if (aborting)
        return luaL_error(L, "%s", aborting);
    return lua_gettop(L);
}

/* Calls the original catcher (upvalue 1) with every argument, yieldably. */
static int guarded(lua_State *L)
{
    int n = lua_gettop(L);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_callk(L, n, LUA_MULTRET, 0, guarded_k);
    return guarded_k(L, LUA_OK, 0);
}

/* Calls the function replaced (upvalue 1) with every argument; leaves its one result. */
static void call_replaced(lua_State *L)
{
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, 1);
}

/* coroutine.create with the new thread hooked (the watchdog arms only the handler thread). */
static int hooked_create(lua_State *L)
{
    call_replaced(L);
    ucl_hook_thread(lua_tothread(L, -1));
    return 1;
}

/* coroutine.wrap likewise: the function it returns holds its thread as upvalue 1. */
static int hooked_wrap(lua_State *L)
{
    call_replaced(L);
    if (lua_getupvalue(L, -1, 1)) {
        if (lua_isthread(L, -1))
            ucl_hook_thread(lua_tothread(L, -1));
        lua_pop(L, 1);
    }
    return 1;
}

static void replace(lua_State *L, int table, const char *name, lua_CFunction with)
{
    table = lua_absindex(L, table);
    lua_getfield(L, table, name);
    lua_pushcclosure(L, with, 1);
    lua_setfield(L, table, name);
}

void ucl_guard_catchers(lua_State *L)
{
    lua_pushglobaltable(L);
    replace(L, -1, "pcall", guarded);
    replace(L, -1, "xpcall", guarded);
    lua_getfield(L, -1, "coroutine");
    replace(L, -1, "resume", guarded);
    replace(L, -1, "create", hooked_create);
    replace(L, -1, "wrap", hooked_wrap);
    lua_pop(L, 2);
}

static void describe_failure(lua_State *co, int status, char *err, size_t err_size)
{
    const char *msg = lua_tostring(co, -1);
    if (!msg)
        msg = status == LUA_ERRMEM ? "not enough memory" : "(error object is not a string)";
    luaL_traceback(co, co, msg, 0);
    snprintf(err, err_size, "%s", lua_tostring(co, -1));
}

/* Besides the first, a new handler thread replaces the old after every failure. A thread that an
 * error or a budget yield left is not safe to reuse, even after lua_resetthread: an error raised
 * from the count hook leaves hooks disabled on it for good (Lua restores allowhook only in its own
 * pcall, not in lua_resume), and a yield out of xpcall leaves xpcall's message handler installed.
 * Its to-be-closed variables are not closed: running their __close there would run it with hooks
 * off, outside the budget. */
void ucl_new_handler_thread(struct ucl_state *st)
{
    lua_State *L = st->L;
    luaL_unref(L, LUA_REGISTRYINDEX, st->co_ref);
    lua_State *co = lua_newthread(L);
    st->co_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    st->co = co;
    lua_rawgeti(co, LUA_REGISTRYINDEX, st->handles.all);
    for (int h = 0; h < UCL_HOOK_COUNT; h++)
        lua_rawgeti(co, LUA_REGISTRYINDEX, st->hooks[h]); /* LUA_NOREF gives nil */
}

int ucl_run(struct ucl_state *st, int nargs, int nresults, char *err, size_t err_size)
{
    lua_State *L = st->L, *co = st->co;
    /* A hook comes pushed on the handler thread already (ucl_push_hook), which saves moving
     * it and its arguments on the path of every message; other calls move over from L. */
    if (lua_gettop(co) == UCL_CO_BASE)
        lua_xmove(L, co, nargs + 1);
    st->aborting = NULL;
    st->hooks_left = st->policy->limits.budget / HOOK_EVERY + 1;
    st->deadline_ns = 0; /* set by the first charge (spent) */
    int nres = 0;
    st->enforce_limit = 1;
    lua_State *outer = running;
    running = co;
    int status = lua_resume(co, L, nargs, &nres);
    running = outer;
    st->enforce_limit = 0;
    if (lua_gethookmask(co))
        lua_sethook(co, NULL, 0, 0); /* the next handler starts unhooked again */
    if (status == LUA_OK) {
        /* lua_resume counts the thread's whole stack, the base below the handler included;
         * moving the results leaves the base alone on it. */
        nres -= UCL_CO_BASE;
        if (nres > nresults)
            lua_pop(co, nres - nresults);
        if (nresults > 0)
            lua_xmove(co, L, nres < nresults ? nres : nresults);
        for (int i = nres; i < nresults; i++)
            lua_pushnil(L);
        return LUA_OK;
    }
    if (st->aborting == budget_message) {
        luaL_traceback(co, co, budget_message, 0);
        snprintf(err, err_size, "%s (%ld instructions)", lua_tostring(co, -1),
                 st->policy->limits.budget);
        status = UCL_BUDGET;
    } else if (st->aborting) {
        luaL_traceback(co, co, deadline_message, 0);
        snprintf(err, err_size, "%s (%g s)", lua_tostring(co, -1), st->policy->limits.timeout);
        status = UCL_BUDGET;
    } else if (status == LUA_YIELD) {
        snprintf(err, err_size, "a handler must not yield (coroutine.yield outside a coroutine)");
        status = LUA_ERRRUN;
    } else {
        describe_failure(co, status, err, err_size);
    }
    ucl_new_handler_thread(st);
    st->aborting = NULL;
    for (int i = 0; i < nresults; i++)
        lua_pushnil(L);
    return status;
}

/* Logs a handler's error, at most UCL_ERROR_LINES_PER_SECOND lines a second for each handler:
 * a timer failing every millisecond must not flood the log (every error is still counted in
 * lua_errors). The first error of a later second says how many were left out before it. */
static void log_error(struct ucl_policy *p, const char *what, const char *err)
{
    struct ucl_error_rate *r = NULL, *oldest = &p->error_rates[0];
    for (size_t i = 0; i < sizeof p->error_rates / sizeof p->error_rates[0] && !r; i++) {
        struct ucl_error_rate *e = &p->error_rates[i];
        if (e->what && strcmp(e->what, what) == 0)
            r = e;
        else if (e->second < oldest->second)
            oldest = e;
    }
    if (!r) {
        r = oldest;
        *r = (struct ucl_error_rate){.what = what};
    }
    int64_t second = now_ns() / 1000000000;
    if (r->second != second) {
        if (r->suppressed)
            uc_error("lua error in %s: %u more errors there were not logged", what, r->suppressed);
        r->second = second;
        r->logged = r->suppressed = 0;
    }
    if (r->logged++ < UCL_ERROR_LINES_PER_SECOND)
        uc_log_event(UC_LOG_ERROR, "lua.error",
                     json_pack("{s:s,s:s}", "handler", what, "error", err), "lua error in %s: %s",
                     what, err);
    else
        r->suppressed++;
}

int ucl_call(struct ucl_state *st, int nargs, int nresults, const char *what)
{
    char err[4096];
    int status = ucl_run(st, nargs, nresults, err, sizeof err);
    if (status != LUA_OK) {
        if (st->policy->srv)
            uc_server_count_policy_error(st->policy->srv);
        log_error(st->policy, what, err);
    }
    return status;
}

lua_State *ucl_push_hook(struct ucl_state *st, enum ucl_hook hook)
{
    if (st->hooks[hook] == LUA_NOREF)
        return NULL;
    lua_pushvalue(st->co, UCL_CO_HOOK(hook));
    return st->co;
}

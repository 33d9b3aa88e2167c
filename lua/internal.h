/* internal.h -- what the files of lua/ share: one Lua state and the policy that owns it. */
#ifndef UCL_INTERNAL_H
#define UCL_INTERNAL_H

#include <lauxlib.h>
#include <lua.h>
#include <stdint.h>

#include "../core/freelist.h"
#include "../core/umap.h"
#include "policy.h"

/* The handlers a script may return, cached as registry references at load time. */
enum ucl_hook {
    UCL_ON_OPEN,
    UCL_ON_MESSAGE,
    UCL_ON_CLOSE,
    UCL_ON_START,
    UCL_ON_RELOAD,
    UCL_ON_STOP,
    UCL_ON_CLUSTER_GAP,
    UCL_ON_UNDELIVERED,
    UCL_ON_ONLINE,
    UCL_ON_OFFLINE,
    UCL_HOOK_COUNT
};

/* One Lua state. A reload builds a new one and frees the old; connections, uids and groups
 * live in the core and survive, conn handles and conn.data do not. */
/* Free blocks of the state's small sizes, kept for its next allocations (vm.c). */
#define UCL_SMALL_STEP 16
#define UCL_SMALL_CLASSES 16 /* blocks of 16, 32, ... 256 bytes */

/* The handler thread's stack starts with what every hook call pushes, so that pushing it is a
 * copy, not a registry lookup: the table of every conn handle (conn.c), then each hook's
 * function (nil where the script has none). A handler runs above it and cannot reach it. */
#define UCL_CO_HANDLES 1
#define UCL_CO_HOOK(hook) (2 + (hook))
#define UCL_CO_BASE (1 + UCL_HOOK_COUNT)

struct ucl_state {
    lua_State *L;
    /* The thread every handler runs on, so the budget can stop it by yielding; its stack starts
     * with UCL_CO_BASE values (above). */
    lua_State *co;
    int co_ref;
    struct ucl_policy *policy;
    size_t mem_used, mem_limit;
    struct uc_freelist small[UCL_SMALL_CLASSES];
    size_t small_kept; /* bytes in the lists of small */
    int enforce_limit; /* the memory cap applies while a handler runs (see vm.c) */
    long hooks_left;   /* count-hook calls left in the current handler's budget */
    /* CLOCK_MONOTONIC_COARSE time the current handler must end by; 0 until its first charge. */
    int64_t deadline_ns;
    /* Why the current handler is being stopped (budget or deadline), or NULL: while set, every
     * pcall rethrows until the handler is gone. */
    const char *aborting;
    int hooks[UCL_HOOK_COUNT]; /* registry refs, LUA_NOREF when the script has none */
    /* Conn handles (conn.c), registry refs of tables id -> handle: the recently used ones in
     * two generations (recent, older), every live one in a weak table (all), and those with a
     * conn.data for good (kept). */
    struct {
        int recent, older, all, kept;
        unsigned made; /* handles made since recent was */
        unsigned gen;  /* recent's number: a handle whose gen is this one is held there */
    } handles;
    struct ucl_online *online; /* is_online callbacks waiting for their answer */
};

/* How many error lines one handler (by name) logged in the current second; past
 * UCL_ERROR_LINES_PER_SECOND the rest are counted and reported in one line. */
#define UCL_ERROR_LINES_PER_SECOND 5
struct ucl_error_rate {
    const char *what; /* a static string: a handler's name */
    int64_t second;
    unsigned logged, suppressed;
};

struct ucl_policy {
    struct uc_server *srv; /* NULL until started (and in --check) */
    char *script;
    struct ucl_limits limits;
    struct ucl_state *st;
    struct ucl_error_rate error_rates[8]; /* kept across reloads */
};

/* The state a C function runs in, stored in the state's extra space. */
static inline struct ucl_state *ucl_state_of(lua_State *L)
{
    return *(struct ucl_state **)lua_getextraspace(L);
}

/* vm.c */
struct ucl_state *ucl_state_new(struct ucl_policy *p, char *err, size_t err_size);
void ucl_state_free(struct ucl_state *st);

/* call.c: runs the function below nargs arguments on st->L's stack on the handler thread,
 * under the instruction budget. Leaves nresults values on st->L (nil-padded on failure).
 * Returns LUA_OK, UCL_BUDGET when the budget ran out, or another Lua status; on failure
 * writes the message and a traceback into err. */
#define UCL_BUDGET 100
int ucl_run(struct ucl_state *st, int nargs, int nresults, char *err, size_t err_size);
/* ucl_run, logging a failure as "lua error in <what>: ..." and counting it. */
int ucl_call(struct ucl_state *st, int nargs, int nresults, const char *what);
/* Charges the running handler for a thousand steps of work done in C (pattern matching) and
 * raises the budget error once its budget or deadline is spent. */
void ucl_meter(lua_State *L);
/* Replaces string.find, match, gmatch and gsub with versions that call ucl_meter as they go. */
void ucl_strmatch_install(lua_State *L);
/* Replaces pcall, xpcall and coroutine.resume with versions that rethrow once the budget has
 * run out, so a script cannot catch its own abort, and coroutine.create and wrap with versions
 * whose threads are metered from their start. */
void ucl_guard_catchers(lua_State *L);
/* Starts this process's watchdog, which arms the count hook on a handler that runs past one
 * tick of CPU, or counts one more state using it. Returns 0, or -1 with the reason in err. */
int ucl_watchdog_start(char *err, size_t err_size);
/* One state fewer uses the watchdog; the last one stops it. */
void ucl_watchdog_stop(void);
/* Sets the count hook on a thread for good. */
void ucl_hook_thread(lua_State *co);
/* Pushes the hook function on the handler thread and returns that thread, where the caller
 * pushes the arguments (ucl_call leaves the results on st->L); or pushes nothing and returns
 * NULL when the script has no such hook. */
lua_State *ucl_push_hook(struct ucl_state *st, enum ucl_hook hook);
/* Makes a new handler thread with its base (UCL_CO_BASE), dropping the old one (if any):
 * once at the start, again when the hooks are known, and after every failure. */
void ucl_new_handler_thread(struct ucl_state *st);
extern const char *const ucl_hook_names[UCL_HOOK_COUNT];

/* conn.c */
void ucl_conn_register(lua_State *L);
struct conn_handle;
/* Pushes the handle of c, creating it on first use in this state, and returns it. */
struct conn_handle *ucl_push_conn(lua_State *L, struct uc_conn *c);
/* The same, for a hook's argument pushed on the handler thread after ucl_push_hook (it finds
 * the handles in the thread's base). */
struct conn_handle *ucl_push_hook_conn(lua_State *co, struct uc_conn *c);
/* Pushes conn.uid of h, the handle at idx (nil when unbound). */
void ucl_push_conn_uid(lua_State *L, int idx, struct conn_handle *h);
/* Marks c's handle (if any) closed and forgets it. */
void ucl_conn_forget(lua_State *L, struct uc_conn *c);
/* The open connection at idx, or NULL for a closed handle; raises for a non-handle. */
struct uc_conn *ucl_check_conn(lua_State *L, int idx);

/* timer.c */
void ucl_timer_register(lua_State *L);
int ucl_api_timer(lua_State *L);
int ucl_api_every(lua_State *L);

/* The string at idx as a uid or group name (1..UC_UID_MAX bytes), or a Lua argument error
 * "<what> must be 1 to 1024 bytes". Inline: api.c and conn.c both check keys, and neither
 * should call into the other for it. */
static inline const char *ucl_check_key(lua_State *L, int idx, const char *what, size_t *len)
{
    const char *key = luaL_checklstring(L, idx, len);
    if (*len < 1 || *len > UC_UID_MAX)
        luaL_argerror(L, idx, lua_pushfstring(L, "%s must be 1 to %d bytes", what, UC_UID_MAX));
    return key;
}

/* api.c */
int ucl_open_api(lua_State *L);
/* json.c: pushes the uidcast.json table (encode, decode, null, array_mt). */
int ucl_open_json(lua_State *L);
/* The state is closing: its waiting is_online callbacks will not be called. */
void ucl_online_orphan(struct ucl_state *st);

#endif

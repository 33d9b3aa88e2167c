/* policy.h -- the Lua policy as the core sees it: load a script, hand the core its handlers.
 *
 * This header is the only part of lua/ that main includes; it needs no Lua headers. */
#ifndef UCL_POLICY_H
#define UCL_POLICY_H

#include <stddef.h>

#include "../core/server.h"

struct ucl_policy;

struct ucl_limits {
    size_t memory;        /* bytes the Lua state may allocate */
    long budget;          /* VM instructions one handler call may run */
    double timeout;       /* seconds one handler call may run, C functions it calls included */
    const char *lua_path; /* directory require() may load modules from, or NULL */
};

/* Loads script into a fresh sandboxed state. Returns NULL and writes the error (with file and
 * line) into err when the file cannot be read, does not compile, fails when run, or does not
 * return a table. */
struct ucl_policy *ucl_policy_new(const char *script, const struct ucl_limits *limits, char *err,
                                  size_t err_size);

/* The callbacks for uc_server_new(); user_data is the policy. */
void ucl_policy_handlers(struct ucl_policy *p, struct uc_handlers *out);

/* Gives the policy the server its API delivers through, and runs on_start. */
void ucl_policy_start(struct ucl_policy *p, struct uc_server *srv);

/* Loads the script again into a new state and swaps it in if it loads and its on_reload (or,
 * without one, on_start) succeeds; otherwise keeps the running state and logs why. Returns 0
 * on a swap, -1 when the old state was kept. */
int ucl_policy_reload(struct ucl_policy *p);

void ucl_policy_free(struct ucl_policy *p);

/* The Lua release the policy runs on ("Lua 5.4.4"). */
const char *ucl_lua_version(void);

#endif

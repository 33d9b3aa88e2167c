/* harness.c -- the Lua module `uidcast_harness`: a script under test in the real server, for
 * busted specs of policies.
 *
 * A spec loads a script into the real core and the real Lua layer (sandbox, limits, the real
 * `uidcast` module), then plays clients over socketpairs: the bytes take the path network bytes
 * take (HTTP upgrade, wslay, the output queues), only the network itself is left out. The loop
 * runs when the spec waits (receive, run), never on its own. One harness at a time per
 * process: they share libev's default loop.
 *
 *   local harness = require "uidcast_harness"
 *   local h = harness.start("scripts/default.lua" [, { "--max-message", "4k", ... } [, env]])
 *   local c = h:connect([path [, { "Header: value", ... }]])   -- or nil, status, body
 *   c:send(data [, binary]);  c:receive([timeout]) -> data, binary | nil, "timeout"
 *                                                   | nil, "close", code, reason
 *   c:close([code]);  c:drop()           -- close handshake / cut the socket
 *   h:run(seconds);  h:log();  h:stop()  -- drive timers; the log so far; on_stop and free */
#include <errno.h>
#include <ev.h>
#include <lauxlib.h>
#include <lua.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../../core/cli.h"
#include "../../core/log.h"
#include "../../core/server.h"
#include "../../lua/policy.h"

#define HARNESS_META "uidcast_harness"
#define CLIENT_META "uidcast_harness.client"
#define LOG_MAX (4 * 1024 * 1024)

struct harness {
    struct uc_server *srv;
    struct ucl_policy *policy;
    struct uc_cli cli;
    char **argv; /* the CLI words, owned: cli points into them */
    int argc;
    unsigned next_port;
};

struct client {
    int fd; /* our end of the socketpair, -1 once closed */
    char *in;
    size_t in_len, in_cap;
};

/* The log of the running harness: stderr stays quiet, specs read it with h:log(). */
static char *log_text;
static size_t log_len;

static void collect_log(const char *line, size_t len)
{
    if (log_len + len > LOG_MAX)
        return;
    char *grown = realloc(log_text, log_len + len + 1);
    if (!grown)
        return;
    log_text = grown;
    memcpy(log_text + log_len, line, len);
    log_len += len;
    log_text[log_len] = '\0';
}

static struct harness *check_harness(lua_State *L)
{
    struct harness *h = luaL_checkudata(L, 1, HARNESS_META);
    if (!h->srv)
        luaL_error(L, "the harness is stopped");
    return h;
}

static void free_argv(struct harness *h)
{
    for (int i = 0; i < h->argc; i++)
        free(h->argv[i]);
    free(h->argv);
    h->argv = NULL;
    h->argc = 0;
}

/* harness.start(script [, args [, env]]) -> harness; raises with the loader's message.
 * env: a table of environment variables set first (UIDCAST_SECRET for uidcast.env). */
static int harness_start(lua_State *L)
{
    const char *script = luaL_checkstring(L, 1);
    if (lua_istable(L, 3)) {
        lua_pushnil(L);
        while (lua_next(L, 3)) {
            setenv(luaL_checkstring(L, -2), luaL_checkstring(L, -1), 1);
            lua_pop(L, 1);
        }
    }
    int nargs = lua_istable(L, 2) ? (int)luaL_len(L, 2) : 0;
    struct harness *h = lua_newuserdatauv(L, sizeof *h, 0);
    memset(h, 0, sizeof *h);
    luaL_setmetatable(L, HARNESS_META);
    h->argv = calloc((size_t)nargs + 7, sizeof *h->argv);
    if (!h->argv)
        return luaL_error(L, "not enough memory");
    const char *fixed[] = {"uidcast", "--listen", "127.0.0.1:0", "--push", "off"};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        h->argv[h->argc++] = strdup(fixed[i]);
    for (int i = 1; i <= nargs; i++) {
        lua_geti(L, 2, i);
        h->argv[h->argc++] = strdup(luaL_checkstring(L, -1));
        lua_pop(L, 1);
    }
    h->argv[h->argc++] = strdup(script);
    char err[1024];
    if (uc_cli_parse(h->argc, h->argv, &h->cli, err, sizeof err) != UC_CLI_RUN) {
        free_argv(h);
        return luaL_error(L, "bad arguments: %s", err);
    }
    free(log_text);
    log_text = NULL;
    log_len = 0;
    uc_log_sink = collect_log;
    uc_log_threshold = h->cli.log_level;
    struct ucl_limits limits = {.memory = h->cli.lua_memory,
                                .budget = h->cli.lua_budget,
                                .timeout = h->cli.lua_timeout,
                                .lua_path = h->cli.lua_path};
    h->policy = ucl_policy_new(h->cli.script, &limits, err, sizeof err);
    if (!h->policy) {
        free_argv(h);
        return luaL_error(L, "%s", err);
    }
    struct uc_handlers handlers;
    ucl_policy_handlers(h->policy, &handlers);
    h->srv = uc_server_new(&h->cli.opt, &handlers, err, sizeof err);
    if (!h->srv) {
        ucl_policy_free(h->policy);
        h->policy = NULL;
        free_argv(h);
        return luaL_error(L, "%s", err);
    }
    ucl_policy_start(h->policy, h->srv);
    return 1;
}

static void wake(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop, (void)w, (void)revents;
}

/* Runs the loop for up to `seconds`, or until done(ctx) says so (checked after each turn). */
static void run_loop(struct harness *h, double seconds, int (*done)(void *ctx), void *ctx)
{
    struct ev_loop *loop = uc_server_loop(h->srv);
    ev_tstamp until = ev_time() + seconds;
    ev_timer tick;
    ev_timer_init(&tick, wake, 0., 0.);
    for (;;) {
        ev_run(loop, EVRUN_NOWAIT);
        if (done && done(ctx))
            break;
        ev_tstamp left = until - ev_time();
        if (left <= 0)
            break;
        /* Block until something happens or a short while passes (timers, our own writes). */
        ev_timer_set(&tick, left < 0.01 ? left : 0.01, 0.);
        ev_timer_start(loop, &tick);
        ev_run(loop, EVRUN_ONCE);
        ev_timer_stop(loop, &tick);
    }
}

/* h:run(seconds): lets timers fire and deliveries flow for that long. */
static int harness_run(lua_State *L)
{
    struct harness *h = check_harness(L);
    run_loop(h, luaL_checknumber(L, 2), NULL, NULL);
    return 0;
}

static int harness_log(lua_State *L)
{
    lua_pushlstring(L, log_text ? log_text : "", log_len);
    return 1;
}

static void stop(struct harness *h)
{
    if (!h->srv)
        return;
    /* The policy first: its Lua state owns timers on the server's loop. */
    ucl_policy_free(h->policy);
    uc_server_free(h->srv);
    h->policy = NULL;
    h->srv = NULL;
    free_argv(h);
    uc_log_sink = NULL;
}

static int harness_stop(lua_State *L)
{
    struct harness *h = luaL_checkudata(L, 1, HARNESS_META);
    if (h->srv) {
        struct uc_handlers handlers;
        ucl_policy_handlers(h->policy, &handlers);
        if (handlers.on_stop)
            handlers.on_stop(handlers.user_data);
    }
    stop(h);
    return 0;
}

static int harness_gc(lua_State *L)
{
    stop(luaL_checkudata(L, 1, HARNESS_META));
    return 0;
}

/* ---- clients ---- */

static struct client *check_client(lua_State *L) { return luaL_checkudata(L, 1, CLIENT_META); }

/* Reads what the server wrote so far into the client's buffer; 0, or -1 at EOF/error. */
static int pull(struct client *c)
{
    for (;;) {
        if (c->in_cap - c->in_len < 65536) {
            size_t cap = c->in_cap ? c->in_cap * 2 : 131072;
            char *grown = realloc(c->in, cap);
            if (!grown)
                return -1;
            c->in = grown;
            c->in_cap = cap;
        }
        ssize_t n = read(c->fd, c->in + c->in_len, c->in_cap - c->in_len);
        if (n > 0) {
            c->in_len += (size_t)n;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return 0;
        return -1;
    }
}

static void consume(struct client *c, size_t n)
{
    memmove(c->in, c->in + n, c->in_len - n);
    c->in_len -= n;
}

/* Length of a complete server frame at the start of the buffer (header + payload), or 0. */
static size_t frame_ready(const struct client *c, size_t *head, uint64_t *len)
{
    if (c->in_len < 2)
        return 0;
    const uint8_t *p = (const uint8_t *)c->in;
    uint64_t n = p[1] & 0x7f;
    size_t h = 2;
    if (n == 126 || n == 127) {
        size_t ext = n == 126 ? 2 : 8;
        if (c->in_len < 2 + ext)
            return 0;
        n = 0;
        for (size_t i = 0; i < ext; i++)
            n = n << 8 | p[2 + i];
        h += ext;
    }
    if (c->in_len - h < n)
        return 0;
    *head = h;
    *len = n;
    return h + (size_t)n;
}

/* Writes one masked client frame (FIN set). */
static int write_frame(struct client *c, int opcode, const char *data, size_t len)
{
    size_t head = 2 + (len < 126 ? 0 : len <= 0xffff ? 2 : 8) + 4;
    uint8_t *f = malloc(head + len);
    if (!f)
        return -1;
    f[0] = (uint8_t)(0x80 | opcode);
    size_t o = 2;
    if (len < 126) {
        f[1] = (uint8_t)(0x80 | len);
    } else if (len <= 0xffff) {
        f[1] = 0x80 | 126;
        f[o++] = (uint8_t)(len >> 8);
        f[o++] = (uint8_t)len;
    } else {
        f[1] = 0x80 | 127;
        for (int i = 7; i >= 0; i--)
            f[o++] = (uint8_t)((uint64_t)len >> (8 * i));
    }
    static const uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d};
    memcpy(f + o, key, 4);
    o += 4;
    for (size_t i = 0; i < len; i++)
        f[o + i] = (uint8_t)data[i] ^ key[i & 3];
    size_t off = 0, total = o + len;
    while (off < total) {
        ssize_t w = write(c->fd, f + off, total - off);
        if (w < 0 && errno == EAGAIN)
            continue; /* the server reads it on the next turn; our side never blocks long */
        if (w < 0) {
            free(f);
            return -1;
        }
        off += (size_t)w;
    }
    free(f);
    return 0;
}

static int http_head_in(void *ctx)
{
    struct client *c = ctx;
    if (pull(c) != 0)
        return 1;
    return c->in_len >= 4 && memmem(c->in, c->in_len, "\r\n\r\n", 4) != NULL;
}

/* h:connect([path [, headers]]) -> client | nil, status, body */
static int harness_connect(lua_State *L)
{
    struct harness *h = check_harness(L);
    const char *path = luaL_optstring(L, 2, "/");
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    luaL_addstring(&b, "GET ");
    luaL_addstring(&b, path);
    luaL_addstring(&b,
                   " HTTP/1.1\r\nHost: harness\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n");
    if (lua_istable(L, 3)) {
        for (lua_Integer i = 1; i <= luaL_len(L, 3); i++) {
            lua_geti(L, 3, i);
            luaL_addvalue(&b);
            luaL_addstring(&b, "\r\n");
        }
    }
    luaL_addstring(&b, "\r\n");
    luaL_pushresult(&b);
    size_t req_len;
    const char *req = lua_tolstring(L, -1, &req_len);

    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0)
        return luaL_error(L, "socketpair: %s", strerror(errno));
    struct client *c = lua_newuserdatauv(L, sizeof *c, 0);
    memset(c, 0, sizeof *c);
    c->fd = sv[1];
    luaL_setmetatable(L, CLIENT_META);
    char remote[32];
    snprintf(remote, sizeof remote, "127.0.0.1:%u", 40000 + h->next_port++ % 20000);
    uc_server_adopt(h->srv, sv[0], remote);
    if (write(c->fd, req, req_len) != (ssize_t)req_len)
        return luaL_error(L, "cannot write the upgrade request");
    run_loop(h, 5, http_head_in, c);
    char *end = c->in_len ? memmem(c->in, c->in_len, "\r\n\r\n", 4) : NULL;
    if (!end)
        return luaL_error(L, "no answer to the upgrade request");
    int status = 0;
    sscanf(c->in, "HTTP/1.1 %d", &status);
    size_t head_len = (size_t)(end - c->in) + 4;
    if (status == 101) {
        consume(c, head_len);
        return 1;
    }
    /* A refusal: its body, then the server closes. */
    run_loop(h, 1, NULL, NULL);
    pull(c);
    lua_pushnil(L);
    lua_pushinteger(L, status);
    lua_pushlstring(L, c->in + head_len, c->in_len - head_len);
    close(c->fd);
    c->fd = -1;
    return 3;
}

/* The running harness (there is one at a time), which a client's waits drive. */
static struct harness *harness_of_client(lua_State *L)
{
    lua_getfield(L, LUA_REGISTRYINDEX, "uidcast_harness.running");
    struct harness *h = luaL_testudata(L, -1, HARNESS_META);
    lua_pop(L, 1);
    if (!h || !h->srv)
        luaL_error(L, "no harness is running");
    return h;
}

/* c:send(data [, binary]) -> true | false, "closed" */
static int client_send(lua_State *L)
{
    struct client *c = check_client(L);
    size_t len;
    const char *data = luaL_checklstring(L, 2, &len);
    if (c->fd < 0 || write_frame(c, lua_toboolean(L, 3) ? 2 : 1, data, len) != 0) {
        lua_pushboolean(L, 0);
        lua_pushliteral(L, "closed");
        return 2;
    }
    lua_pushboolean(L, 1);
    return 1;
}

static int frame_in(void *ctx)
{
    struct client *c = ctx;
    size_t head;
    uint64_t len;
    return pull(c) != 0 || frame_ready(c, &head, &len) != 0;
}

/* Pushes what c:receive returns; returns how many values. */
static int receive(lua_State *L, struct client *c, struct harness *h, double timeout)
{
    for (;;) {
        if (c->fd < 0) {
            lua_pushnil(L);
            lua_pushliteral(L, "closed");
            return 2;
        }
        run_loop(h, timeout, frame_in, c);
        size_t head, total;
        uint64_t len;
        if (!(total = frame_ready(c, &head, &len))) {
            lua_pushnil(L);
            if (pull(c) != 0) {
                close(c->fd);
                c->fd = -1;
                lua_pushliteral(L, "closed");
            } else {
                lua_pushliteral(L, "timeout");
            }
            return 2;
        }
        int opcode = c->in[0] & 0x0f;
        const char *payload = c->in + head;
        if (opcode == 9) { /* ping */
            write_frame(c, 10, payload, (size_t)len);
            consume(c, total);
            continue;
        }
        if (opcode == 10) {
            consume(c, total);
            continue;
        }
        if (opcode == 8) {
            lua_pushnil(L);
            lua_pushliteral(L, "close");
            if (len >= 2)
                lua_pushinteger(L, ((uint8_t)payload[0] << 8) | (uint8_t)payload[1]);
            else
                lua_pushnil(L);
            lua_pushlstring(L, len > 2 ? payload + 2 : "", len > 2 ? (size_t)len - 2 : 0);
            consume(c, total);
            return 4;
        }
        lua_pushlstring(L, payload, (size_t)len);
        lua_pushboolean(L, opcode == 2);
        consume(c, total);
        return 2;
    }
}

/* c:receive([timeout]) -> data, binary | nil, "timeout" | nil, "close", code, reason
 * | nil, "closed". Pings are answered; pongs skipped. */
static int client_receive(lua_State *L)
{
    struct client *c = check_client(L);
    return receive(L, c, harness_of_client(L), luaL_optnumber(L, 2, 2));
}

/* c:close([code [, reason]]): the close handshake; returns the server's code. */
static int client_close(lua_State *L)
{
    struct client *c = check_client(L);
    if (c->fd < 0)
        return 0;
    int code = (int)luaL_optinteger(L, 2, 1000);
    size_t rlen;
    const char *reason = luaL_optlstring(L, 3, "", &rlen);
    char payload[125];
    payload[0] = (char)(code >> 8);
    payload[1] = (char)code;
    if (rlen > sizeof payload - 2)
        rlen = sizeof payload - 2;
    memcpy(payload + 2, reason, rlen);
    write_frame(c, 8, payload, 2 + rlen);
    struct harness *h = harness_of_client(L);
    lua_settop(L, 1);
    lua_pushnil(L); /* the server's close code, when it sends one */
    for (;;) {
        int n = receive(L, c, h, 2);
        if (lua_isnil(L, -n)) {
            if (n == 4)
                lua_copy(L, -2, 2);
            lua_pop(L, n);
            break;
        }
        lua_pop(L, n); /* a message still on its way: skipped */
    }
    if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
    }
    run_loop(h, 0.05, NULL, NULL); /* let on_close run */
    return 1;
}

/* c:drop(): the socket goes away without a close frame (a network cut). */
static int client_drop(lua_State *L)
{
    struct client *c = check_client(L);
    if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
    }
    run_loop(harness_of_client(L), 0.05, NULL, NULL);
    return 0;
}

static int client_gc(lua_State *L)
{
    struct client *c = check_client(L);
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    free(c->in);
    c->in = NULL;
    return 0;
}

static int harness_start_registered(lua_State *L)
{
    lua_getfield(L, LUA_REGISTRYINDEX, "uidcast_harness.running");
    struct harness *old = luaL_testudata(L, -1, HARNESS_META);
    if (old)
        stop(old); /* one at a time: a spec that forgot to stop must not leak into the next */
    lua_pop(L, 1);
    harness_start(L);
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, "uidcast_harness.running");
    return 1;
}

static const luaL_Reg harness_methods[] = {
    {"connect", harness_connect}, {"run", harness_run}, {"log", harness_log},
    {"stop", harness_stop},       {NULL, NULL},
};

static const luaL_Reg client_methods[] = {
    {"send", client_send},
    {"receive", client_receive},
    {"close", client_close},
    {"drop", client_drop},
    {NULL, NULL},
};

static void new_class(lua_State *L, const char *name, const luaL_Reg *methods, lua_CFunction gc)
{
    luaL_newmetatable(L, name);
    lua_newtable(L);
    luaL_setfuncs(L, methods, 0);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
}

int luaopen_uidcast_harness(lua_State *L);
int luaopen_uidcast_harness(lua_State *L)
{
    new_class(L, HARNESS_META, harness_methods, harness_gc);
    new_class(L, CLIENT_META, client_methods, client_gc);
    lua_newtable(L);
    lua_pushcfunction(L, harness_start_registered);
    lua_setfield(L, -2, "start");
    return 1;
}

/* broker.c -- the cluster engine on Redis pub/sub (see broker.h), on the server's own loop
 * through hiredis's libev adapter.
 *
 * Two connections: one subscribed (a subscribed Redis connection can do nothing else), one
 * for PUBLISH. A publication is "<node id (16 hex)><t|b><payload>" on uidcast:u:<uid>,
 * uidcast:g:<group> or uidcast:a, so payloads stay binary-safe and keep their frame type, and a
 * node recognises (and skips) its own echo: it already delivered locally. */
#include "broker.h"

#include <hiredis/adapters/libev.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "core.h"
#include "log.h"

#define NODE_ID_LEN 16
#define BACKOFF_MIN 0.1
#define BACKOFF_MAX 5.0

struct uc_broker {
    struct uc_server *srv;
    char host[300];
    int port;
    char *password;
    redisAsyncContext *pub, *sub;
    int pub_up, sub_up;
    int closing;
    ev_timer retry;
    double backoff;
    char node_id[NODE_ID_LEN + 1];
};

static void connect_missing(struct uc_broker *b);

static void schedule_retry(struct uc_broker *b)
{
    if (b->closing || ev_is_active(&b->retry))
        return;
    ev_timer_set(&b->retry, b->backoff, 0.);
    ev_timer_start(b->srv->loop, &b->retry);
    b->backoff = b->backoff * 2 > BACKOFF_MAX ? BACKOFF_MAX : b->backoff * 2;
}

static void retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    connect_missing(container_of(w, struct uc_broker, retry));
}

static int channel_name(char *out, size_t cap, enum uc_broker_kind kind, const char *key,
                        size_t key_len)
{
    if (kind == UC_BROKER_ALL)
        return snprintf(out, cap, "uidcast:a");
    if (key_len + 16 > cap)
        return -1;
    int n = snprintf(out, cap, "uidcast:%c:", (char)kind);
    memcpy(out + n, key, key_len);
    return n + (int)key_len;
}

/* ---- receiving ---- */

static void on_publication(redisAsyncContext *ac, void *r, void *privdata)
{
    (void)ac;
    struct uc_broker *b = privdata;
    redisReply *reply = r;
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != 3 ||
        reply->element[0]->type != REDIS_REPLY_STRING ||
        strcmp(reply->element[0]->str, "message") != 0)
        return; /* subscribe confirmations */
    const redisReply *chan = reply->element[1], *msg = reply->element[2];
    if (msg->len < NODE_ID_LEN + 1 || chan->len < 9)
        return;
    if (memcmp(msg->str, b->node_id, NODE_ID_LEN) == 0)
        return; /* our own publication: delivered locally already */
    int binary = msg->str[NODE_ID_LEN] == 'b';
    const char *data = msg->str + NODE_ID_LEN + 1;
    size_t len = msg->len - NODE_ID_LEN - 1;
    char kind = chan->str[8];
    const char *key = chan->str + 10;
    size_t key_len = chan->len > 10 ? chan->len - 10 : 0;
    b->srv->stats.cluster_received++;
    uc_server_deliver_local(b->srv, kind, key, key_len, data, len, binary);
}

static void subscribe_raw(struct uc_broker *b, const char *chan, size_t len)
{
    redisAsyncCommand(b->sub, on_publication, b, "SUBSCRIBE %b", chan, len);
}

void uc_broker_subscribe(struct uc_broker *b, enum uc_broker_kind kind, const char *key,
                         size_t key_len)
{
    char chan[UC_UID_MAX + 32];
    int n = channel_name(chan, sizeof chan, kind, key, key_len);
    if (n > 0 && b->sub_up)
        subscribe_raw(b, chan, (size_t)n);
    /* when down, the reconnect subscribes everything the maps hold */
}

void uc_broker_unsubscribe(struct uc_broker *b, enum uc_broker_kind kind, const char *key,
                           size_t key_len)
{
    char chan[UC_UID_MAX + 32];
    int n = channel_name(chan, sizeof chan, kind, key, key_len);
    if (n > 0 && b->sub_up)
        redisAsyncCommand(b->sub, NULL, NULL, "UNSUBSCRIBE %b", chan, (size_t)n);
}

static void subscribe_everything(struct uc_broker *b)
{
    struct uc_server *srv = b->srv;
    subscribe_raw(b, "uidcast:a", 9);
    struct uc_umap_entry *e, *tmp;
    HASH_ITER(hh, srv->umap.table, e, tmp) uc_broker_subscribe(b, UC_BROKER_UID, e->name, e->len);
    HASH_ITER(hh, srv->groups.table, e, tmp)
    uc_broker_subscribe(b, UC_BROKER_GROUP, e->name, e->len);
}

/* ---- publishing ---- */

void uc_broker_publish(struct uc_broker *b, enum uc_broker_kind kind, const char *key,
                       size_t key_len, const void *data, size_t len, int binary)
{
    char chan[UC_UID_MAX + 32];
    int n = channel_name(chan, sizeof chan, kind, key, key_len);
    if (n < 0)
        return;
    if (!b->pub_up) {
        b->srv->stats.cluster_dropped++;
        return;
    }
    char *msg = malloc(NODE_ID_LEN + 1 + len);
    if (!msg) {
        b->srv->stats.cluster_dropped++;
        return;
    }
    memcpy(msg, b->node_id, NODE_ID_LEN);
    msg[NODE_ID_LEN] = binary ? 'b' : 't';
    if (len)
        memcpy(msg + NODE_ID_LEN + 1, data, len);
    redisAsyncCommand(b->pub, NULL, NULL, "PUBLISH %b %b", chan, (size_t)n, msg,
                      NODE_ID_LEN + 1 + len);
    free(msg);
    b->srv->stats.cluster_published++;
}

/* ---- connections ---- */

static void on_connect(const redisAsyncContext *ac, int status)
{
    struct uc_broker *b = ac->data;
    int is_sub = ac == b->sub;
    if (status != REDIS_OK) {
        uc_warn("redis %s:%d: %s; retrying in %.1f s", b->host, b->port, ac->errstr, b->backoff);
        if (is_sub)
            b->sub = NULL;
        else
            b->pub = NULL;
        schedule_retry(b);
        return;
    }
    if (is_sub) {
        b->sub_up = 1;
        subscribe_everything(b);
    } else {
        b->pub_up = 1;
    }
    if (b->pub_up && b->sub_up) {
        b->backoff = BACKOFF_MIN;
        uc_info("cluster: connected to redis %s:%d as node %s", b->host, b->port, b->node_id);
    }
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    (void)status;
    struct uc_broker *b = ac->data;
    if (ac == b->sub) {
        b->sub = NULL;
        b->sub_up = 0;
    } else {
        b->pub = NULL;
        b->pub_up = 0;
    }
    if (b->closing)
        return;
    uc_warn("cluster: lost redis %s:%d; local delivery goes on, reconnecting", b->host,
            b->port);
    schedule_retry(b);
}

static redisAsyncContext *open_one(struct uc_broker *b)
{
    redisAsyncContext *ac = redisAsyncConnect(b->host, b->port);
    if (!ac || ac->err) {
        uc_warn("redis %s:%d: %s", b->host, b->port, ac ? ac->errstr : "out of memory");
        if (ac)
            redisAsyncFree(ac);
        return NULL;
    }
    ac->data = b;
    redisLibevAttach(b->srv->loop, ac);
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    if (b->password)
        redisAsyncCommand(ac, NULL, NULL, "AUTH %s", b->password);
    return ac;
}

static void connect_missing(struct uc_broker *b)
{
    if (!b->pub)
        b->pub = open_one(b);
    if (!b->sub)
        b->sub = open_one(b);
    if (!b->pub || !b->sub)
        schedule_retry(b);
}

struct uc_broker *uc_broker_new(struct uc_server *srv, const char *url, char *err,
                                size_t err_size)
{
    static const char scheme[] = "redis://";
    if (strncmp(url, scheme, sizeof scheme - 1) != 0) {
        snprintf(err, err_size, "--redis '%s': expected redis://[:PASSWORD@]HOST:PORT", url);
        return NULL;
    }
    const char *rest = url + sizeof scheme - 1;
    struct uc_broker *b = calloc(1, sizeof *b);
    if (!b) {
        snprintf(err, err_size, "out of memory");
        return NULL;
    }
    const char *at = strrchr(rest, '@');
    if (at) {
        const char *colon = memchr(rest, ':', (size_t)(at - rest));
        const char *pw = colon ? colon + 1 : rest; /* redis://user:pw@ or redis://:pw@ */
        b->password = strndup(pw, (size_t)(at - pw));
        rest = at + 1;
    }
    char hostport[300];
    snprintf(hostport, sizeof hostport, "%s", rest);
    char *slash = strchr(hostport, '/');
    if (slash)
        *slash = '\0'; /* a /DB suffix: pub/sub channels are global to the server */
    char *colon = strrchr(hostport, ':');
    char *end = NULL;
    long port = colon ? strtol(colon + 1, &end, 10) : 6379;
    if (colon)
        *colon = '\0';
    if (!hostport[0] || (colon && (*end || port < 1 || port > 65535))) {
        snprintf(err, err_size, "--redis '%s': expected redis://[:PASSWORD@]HOST:PORT", url);
        free(b->password);
        free(b);
        return NULL;
    }
    snprintf(b->host, sizeof b->host, "%s", hostport);
    b->port = (int)port;
    b->srv = srv;
    b->backoff = BACKOFF_MIN;
    /* 64 random bits: how a node tells its own echo from another node's publication. */
    uint64_t id;
    if (getrandom(&id, sizeof id, 0) != sizeof id)
        id = (uint64_t)time(NULL) << 32 ^ (uint64_t)getpid() << 16 ^ (uint64_t)(uintptr_t)b;
    snprintf(b->node_id, sizeof b->node_id, "%016llx", (unsigned long long)id);
    ev_init(&b->retry, retry_cb);
    connect_missing(b);
    return b;
}

void uc_broker_free(struct uc_broker *b)
{
    if (!b)
        return;
    b->closing = 1;
    ev_timer_stop(b->srv->loop, &b->retry);
    if (b->pub)
        redisAsyncFree(b->pub);
    if (b->sub)
        redisAsyncFree(b->sub);
    free(b->password);
    free(b);
}

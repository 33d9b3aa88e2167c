/* webhook.c -- events POSTed to the application's backend, on libcurl's multi interface
 * driven by the server's own loop (a socket callback maps curl's sockets to ev_io watchers, a
 * timer callback to one ev_timer), so no thread and no blocking call.
 *
 * Each event is one JSON body (jansson), signed with HMAC-SHA256 under the secret in
 * X-Uidcast-Signature: sha256=<hex>. Events go out as they come, several at a time over kept-
 * alive connections; the receiver orders them by version (each uid's grows), so a retried one
 * arriving late is recognisably stale. A failed attempt (no connection, a timeout, an answer
 * other than 2xx) is tried again after a back-off that doubles from half a second up to
 * RETRY_MAX, until --webhook-retry-for has passed since the first; then it is given up and
 * counted. At most QUEUE_MAX events wait at once: beyond, new ones are dropped and counted, so
 * a receiver that is down costs bounded memory.
 *
 * A delivery is owned by the webhook from queueing to its end (success, given up, or the
 * webhook freed with the server, which abandons what is still pending). */
#include "webhook.h"

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <utlist.h>

#include <ev.h>

#include "container.h"
#include "log.h"

#define QUEUE_MAX 10000
#define RETRY_MIN 0.5
#define RETRY_MAX 30.0
#define CONNECTIONS_MAX 8

struct delivery {
    struct uc_webhook *wh;
    CURL *easy; /* while an attempt runs */
    struct curl_slist *headers;
    char *body;
    size_t len;
    ev_tstamp first_try;
    double backoff;
    ev_timer retry; /* between attempts */
    char error[CURL_ERROR_SIZE];
    struct delivery *prev, *next;
};

/* One of curl's sockets, watched for what curl asked. */
struct watch {
    struct uc_webhook *wh;
    ev_io io;
    struct watch *prev, *next;
};

struct uc_webhook {
    struct ev_loop *loop;
    struct uc_webhook_options opt;
    CURLM *multi;
    ev_timer timeout; /* curl's own timer */
    struct delivery *pending;
    size_t npending;
    struct watch *watches;
    uint64_t sent, retried, failed;
    ev_tstamp last_log[2]; /* of a failed attempt, of an event given up */
};

static void attempt(struct delivery *d);

static void delivery_free(struct delivery *d)
{
    struct uc_webhook *wh = d->wh;
    DL_DELETE(wh->pending, d);
    wh->npending--;
    ev_timer_stop(wh->loop, &d->retry);
    if (d->easy) {
        curl_multi_remove_handle(wh->multi, d->easy);
        curl_easy_cleanup(d->easy);
    }
    curl_slist_free_all(d->headers);
    free(d->body);
    free(d);
}

/* Logs a failed attempt (lost = 0) or a lost event (lost = 1), each at most every 10 s: a
 * receiver that is down makes a line now and then, not one per event. */
static void log_failure(struct uc_webhook *wh, int lost, const char *what)
{
    ev_tstamp now = ev_now(wh->loop);
    if (wh->last_log[lost] && now - wh->last_log[lost] < 10)
        return;
    wh->last_log[lost] = now;
    uc_log_event(UC_LOG_WARN, lost ? "webhook.given_up" : "webhook.failed",
                 json_pack("{s:s,s:s}", "url", wh->opt.url, "error", what), "webhook %s: %s",
                 wh->opt.url, what);
}

static void retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    attempt(container_of(w, struct delivery, retry));
}

/* An attempt ended: done, or later again, or given up. */
static void ended(struct delivery *d, CURLcode code)
{
    struct uc_webhook *wh = d->wh;
    long status = 0;
    curl_easy_getinfo(d->easy, CURLINFO_RESPONSE_CODE, &status);
    curl_multi_remove_handle(wh->multi, d->easy);
    curl_easy_cleanup(d->easy);
    d->easy = NULL;
    if (code == CURLE_OK && status >= 200 && status < 300) {
        wh->sent++;
        delivery_free(d);
        return;
    }
    char why[CURL_ERROR_SIZE + 64];
    if (code != CURLE_OK)
        snprintf(why, sizeof why, "%s", d->error[0] ? d->error : curl_easy_strerror(code));
    else
        snprintf(why, sizeof why, "answered %ld", status);
    ev_tstamp now = ev_now(wh->loop);
    if (now + d->backoff - d->first_try > wh->opt.retry_for) {
        wh->failed++;
        char line[sizeof why + 96];
        snprintf(line, sizeof line, "%s; an event was given up after %.0f s (webhook_failed)", why,
                 now - d->first_try);
        log_failure(wh, 1, line);
        delivery_free(d);
        return;
    }
    wh->retried++;
    log_failure(wh, 0, why);
    ev_timer_set(&d->retry, d->backoff, 0.);
    ev_timer_start(wh->loop, &d->retry);
    d->backoff = d->backoff * 2 > RETRY_MAX ? RETRY_MAX : d->backoff * 2;
}

static void check_done(struct uc_webhook *wh)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(wh->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        struct delivery *d;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&d);
        ended(d, msg->data.result);
    }
}

static void io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    struct watch *watch = container_of(w, struct watch, io);
    struct uc_webhook *wh = watch->wh;
    int action =
        (revents & EV_READ ? CURL_CSELECT_IN : 0) | (revents & EV_WRITE ? CURL_CSELECT_OUT : 0);
    int running;
    curl_multi_socket_action(wh->multi, w->fd, action, &running);
    check_done(wh);
}

static void timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct uc_webhook *wh = container_of(w, struct uc_webhook, timeout);
    int running;
    curl_multi_socket_action(wh->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(wh);
}

/* curl says which of its sockets to watch for what (CURLMOPT_SOCKETFUNCTION). */
static int socket_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    (void)easy;
    struct uc_webhook *wh = userp;
    struct watch *watch = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (watch) {
            ev_io_stop(wh->loop, &watch->io);
            DL_DELETE(wh->watches, watch);
            free(watch);
            curl_multi_assign(wh->multi, s, NULL);
        }
        return 0;
    }
    if (!watch) {
        if (!(watch = malloc(sizeof *watch)))
            return -1;
        watch->wh = wh;
        ev_init(&watch->io, io_cb);
        DL_APPEND(wh->watches, watch);
        curl_multi_assign(wh->multi, s, watch);
    }
    ev_io_stop(wh->loop, &watch->io);
    ev_io_set(&watch->io, s,
              (what & CURL_POLL_IN ? EV_READ : 0) | (what & CURL_POLL_OUT ? EV_WRITE : 0));
    ev_io_start(wh->loop, &watch->io);
    return 0;
}

/* curl asks to be called back after timeout_ms (CURLMOPT_TIMERFUNCTION); -1: never. */
static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    struct uc_webhook *wh = userp;
    ev_timer_stop(wh->loop, &wh->timeout);
    if (timeout_ms >= 0) {
        ev_timer_set(&wh->timeout, (double)timeout_ms / 1000., 0.);
        ev_timer_start(wh->loop, &wh->timeout);
    }
    return 0;
}

static size_t discard(char *data, size_t size, size_t n, void *arg)
{
    (void)data;
    (void)arg;
    return size * n;
}

static void drop(struct delivery *d)
{
    d->wh->failed++;
    log_failure(d->wh, 1, "out of memory; an event was dropped (webhook_failed)");
    delivery_free(d);
}

static void attempt(struct delivery *d)
{
    struct uc_webhook *wh = d->wh;
    d->error[0] = '\0';
    if (!(d->easy = curl_easy_init())) {
        drop(d);
        return;
    }
    curl_easy_setopt(d->easy, CURLOPT_URL, wh->opt.url);
    curl_easy_setopt(d->easy, CURLOPT_HTTPHEADER, d->headers);
    curl_easy_setopt(d->easy, CURLOPT_POSTFIELDS, d->body);
    curl_easy_setopt(d->easy, CURLOPT_POSTFIELDSIZE, (long)d->len);
    curl_easy_setopt(d->easy, CURLOPT_TIMEOUT_MS, (long)(wh->opt.timeout * 1000));
    curl_easy_setopt(d->easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(d->easy, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(d->easy, CURLOPT_USERAGENT, "uidcast-webhook");
    curl_easy_setopt(d->easy, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(d->easy, CURLOPT_ERRORBUFFER, d->error);
    curl_easy_setopt(d->easy, CURLOPT_PRIVATE, d);
    if (curl_multi_add_handle(wh->multi, d->easy) != CURLM_OK) {
        curl_easy_cleanup(d->easy);
        d->easy = NULL;
        drop(d);
    }
}

/* Takes body (a JSON object): signs it and sends it. */
static void queue(struct uc_webhook *wh, json_t *body)
{
    if (!body)
        return;
    char *text = wh->npending < QUEUE_MAX ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    struct delivery *d = text ? calloc(1, sizeof *d) : NULL;
    if (!d) {
        wh->failed++;
        log_failure(wh, 1,
                    text ? "out of memory; an event was dropped (webhook_failed)"
                         : "10000 events wait already; an event was dropped (webhook_failed)");
        free(text);
        return;
    }
    *d = (struct delivery){.wh = wh,
                           .body = text,
                           .len = strlen(text),
                           .first_try = ev_now(wh->loop),
                           .backoff = RETRY_MIN};
    ev_init(&d->retry, retry_cb);
    d->headers = curl_slist_append(NULL, "Content-Type: application/json");
    if (wh->opt.secret && d->headers) {
        unsigned char mac[EVP_MAX_MD_SIZE];
        unsigned mac_len = 0;
        HMAC(EVP_sha256(), wh->opt.secret, (int)strlen(wh->opt.secret), (const unsigned char *)text,
             d->len, mac, &mac_len);
        char header[40 + 2 * EVP_MAX_MD_SIZE] = "X-Uidcast-Signature: sha256=";
        size_t o = strlen(header);
        for (unsigned i = 0; i < mac_len; i++, o += 2)
            snprintf(header + o, 3, "%02x", mac[i]);
        struct curl_slist *more = curl_slist_append(d->headers, header);
        if (more)
            d->headers = more;
    }
    DL_APPEND(wh->pending, d);
    wh->npending++;
    attempt(d);
}

static double now_seconds(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

/* Bytes as a base64 JSON string, or NULL when out of memory. */
static json_t *base64_value(const void *data, size_t len)
{
    unsigned char *b64 = malloc(4 * ((len + 2) / 3) + 1);
    if (!b64)
        return NULL;
    EVP_EncodeBlock(b64, data, (int)len);
    json_t *v = json_string((char *)b64);
    free(b64);
    return v;
}

/* The event's common fields (a uid that is not UTF-8 as uid_base64); NULL when out of
 * memory. */
static json_t *event(struct uc_webhook *wh, const char *name, const char *uid, size_t uid_len)
{
    json_t *o = json_pack("{s:s,s:f}", "event", name, "time", now_seconds());
    json_t *u = o ? json_stringn(uid, uid_len) : NULL;
    if (u) {
        json_object_set_new(o, "uid", u);
    } else if (o && (u = base64_value(uid, uid_len)) != NULL) {
        json_object_set_new(o, "uid_base64", u);
    }
    if (o && wh->opt.node_id)
        json_object_set_new(o, "node", json_string(wh->opt.node_id));
    return o;
}

void uc_webhook_presence(struct uc_webhook *wh, const char *uid, size_t uid_len, int online,
                         uint64_t version)
{
    json_t *o = event(wh, online ? "online" : "offline", uid, uid_len);
    if (o)
        json_object_set_new(o, "version", json_integer((json_int_t)version));
    queue(wh, o);
}

void uc_webhook_undelivered(struct uc_webhook *wh, const char *uid, size_t uid_len, uint64_t seq,
                            const void *data, size_t len, int binary, const char *reason)
{
    json_t *o = event(wh, "undelivered", uid, uid_len);
    if (!o)
        return;
    json_object_set_new(o, "seq", json_integer((json_int_t)seq));
    json_object_set_new(o, "reason", json_string(reason));
    json_t *text = binary ? NULL : json_stringn(data, len);
    if (text) {
        json_object_set_new(o, "data", text);
    } else {
        json_t *b64 = base64_value(data, len);
        if (!b64) {
            json_decref(o);
            return;
        }
        json_object_set_new(o, "data", b64);
        json_object_set_new(o, "binary", json_true());
    }
    queue(wh, o);
}

struct uc_webhook *uc_webhook_new(struct ev_loop *loop, const struct uc_webhook_options *opts,
                                  char *err, size_t err_size)
{
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        snprintf(err, err_size, "webhook: libcurl did not start");
        return NULL;
    }
    struct uc_webhook *wh = calloc(1, sizeof *wh);
    if (!wh || !(wh->multi = curl_multi_init())) {
        free(wh);
        curl_global_cleanup();
        snprintf(err, err_size, "webhook: out of memory");
        return NULL;
    }
    wh->loop = loop;
    wh->opt = *opts;
    ev_init(&wh->timeout, timeout_cb);
    curl_multi_setopt(wh->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
    curl_multi_setopt(wh->multi, CURLMOPT_SOCKETDATA, wh);
    curl_multi_setopt(wh->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(wh->multi, CURLMOPT_TIMERDATA, wh);
    curl_multi_setopt(wh->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)CONNECTIONS_MAX);
    return wh;
}

static void service_stats(void *ctx, struct uc_stats *out)
{
    const struct uc_webhook *wh = ctx;
    out->webhook_sent += wh->sent;
    out->webhook_retried += wh->retried;
    out->webhook_failed += wh->failed;
}

static void free_service(void *ctx) { uc_webhook_free(ctx); }

struct uc_service uc_webhook_service(struct uc_webhook *wh)
{
    return (struct uc_service){.ctx = wh, .free = free_service, .stats = service_stats};
}

void uc_webhook_free(struct uc_webhook *wh)
{
    if (!wh)
        return;
    if (wh->npending)
        uc_warn("webhook: %zu events still pending are dropped at exit", wh->npending);
    while (wh->pending)
        delivery_free(wh->pending);
    curl_multi_cleanup(wh->multi);
    while (wh->watches) { /* sockets curl closed without saying so */
        struct watch *w = wh->watches;
        ev_io_stop(wh->loop, &w->io);
        DL_DELETE(wh->watches, w);
        free(w);
    }
    ev_timer_stop(wh->loop, &wh->timeout);
    free(wh);
    curl_global_cleanup();
}

/* ws.c -- the wslay glue: inbound frames through wslay, outbound data frames encoded here.
 *
 * wslay parses and validates what clients send (masking, RSV bits, opcodes, control frame
 * rules, UTF-8 of text and close reasons, the message size cap) and produces its own control
 * frames (pong, close), which its send callback accepts whole into our output queue. Data frames
 * from the server never pass through wslay_event_queue_msg, which would malloc and copy the
 * payload per connection: uc_ws_frame() encodes a message once, and every receiver's queue
 * shares the bytes. Because the send callback never blocks, wslay never holds a half-sent
 * frame, so our frames and its frames can interleave safely in one queue. */
#include <arpa/inet.h>
#include <string.h>

#include "core.h"
#include "log.h"

static ssize_t recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags,
                       void *user_data)
{
    (void)flags;
    struct uc_conn *c = user_data;
    if (c->in_len == 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    size_t n = len < c->in_len ? len : c->in_len;
    memcpy(buf, c->in, n);
    c->in += n;
    c->in_len -= n;
    return (ssize_t)n;
}

static ssize_t send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags,
                       void *user_data)
{
    (void)flags;
    struct uc_conn *c = user_data;
    struct uc_buf *b = uc_buf_new_copy(data, len);
    int r = b ? uc_conn_queue(c, b) : UC_ERR_NOMEM;
    uc_buf_unref(b);
    if (r != 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    return (ssize_t)len;
}

static void on_msg_recv(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg,
                        void *user_data)
{
    (void)ctx;
    struct uc_conn *c = user_data;
    struct uc_server *srv = c->srv;
    switch (arg->opcode) {
    case WSLAY_TEXT_FRAME:
    case WSLAY_BINARY_FRAME: {
        /* wslay runs without buffering data: the message is either one chunk still in its
         * input buffer, or what on_chunk assembled. */
        const uint8_t *data = (const uint8_t *)"";
        size_t len = 0;
        struct uc_msgbuf *assembled = c->msgbuf;
        c->msgbuf = NULL;
        if (assembled) {
            data = assembled->data;
            len = assembled->len;
        } else if (srv->whole_conn == c) {
            data = srv->whole_data;
            len = srv->whole_len;
        }
        srv->whole_conn = NULL;
        /* Messages after we started closing are read (to find the peer's close) but dropped. */
        if (c->state == CONN_OPEN) {
            srv->stats.messages_in++;
            if (srv->handlers.on_message)
                srv->handlers.on_message(c, data, len, arg->opcode == WSLAY_BINARY_FRAME,
                                         srv->handlers.user_data);
        }
        free(assembled);
        break;
    }
    case WSLAY_CONNECTION_CLOSE: {
        c->flags |= CONN_CLOSE_RECV;
        int code = arg->status_code ? arg->status_code : 1005;
        const char *reason = arg->msg_length > 2 ? (const char *)arg->msg + 2 : "";
        size_t reason_len = arg->msg_length > 2 ? arg->msg_length - 2 : 0;
        uc_conn_leave_open(c, code, reason, reason_len);
        break;
    }
    default: break; /* ping is answered by wslay; pong needs nothing */
    }
}

static void on_frame_start(wslay_event_context_ptr ctx,
                           const struct wslay_event_on_frame_recv_start_arg *arg, void *user_data);
static void on_chunk(wslay_event_context_ptr ctx,
                     const struct wslay_event_on_frame_recv_chunk_arg *arg, void *user_data);

static const struct wslay_event_callbacks callbacks = {
    .recv_callback = recv_cb,
    .send_callback = send_cb,
    .on_frame_recv_start_callback = on_frame_start,
    .on_frame_recv_chunk_callback = on_chunk,
    .on_msg_recv_callback = on_msg_recv,
};

int uc_ws_ensure(struct uc_conn *c)
{
    if (c->ws)
        return 0;
    if (wslay_event_context_server_init(&c->ws, &callbacks, c) != 0) {
        c->ws = NULL;
        return UC_ERR_NOMEM;
    }
    /* Before any frame is read: wslay allocates a frame's declared length when its header
     * arrives, so without this a header claiming 2^62 bytes would be honoured. */
    wslay_event_config_set_max_recv_msg_length(c->ws, c->srv->opt.max_message);
    wslay_event_config_set_no_buffering(c->ws, 1);
    c->srv->ws_contexts++;
    return 0;
}

void uc_ws_free(struct uc_conn *c)
{
    if (c->ws) {
        wslay_event_context_free(c->ws);
        c->ws = NULL;
        c->srv->ws_contexts--;
    }
    free(c->msgbuf);
    c->msgbuf = NULL;
}

void uc_ws_pump(struct uc_conn *c)
{
    if (!c->ws || c->state == CONN_DEAD || (c->flags & CONN_FINISHING))
        return;
    if (wslay_event_want_write(c->ws) && wslay_event_send(c->ws) != 0) {
        if (c->state != CONN_DEAD)
            uc_conn_abort(c, 1011, "internal error sending a control frame");
        return;
    }
    if (c->state == CONN_DEAD || !wslay_event_get_close_sent(c->ws))
        return;
    /* wslay queued a close on its own: a protocol error (1002), bad UTF-8 (1007), a message
     * over the limit (1009), or the echo of the peer's close. */
    int sent = wslay_event_get_status_code_sent(c->ws);
    if (c->state == CONN_OPEN) {
        c->srv->stats.protocol_errors++;
        uc_info("conn %llu (%s): closing with %d (protocol violation)", (unsigned long long)c->id,
                c->remote_addr, sent);
        uc_conn_leave_open(c, sent, "protocol error", 14);
    }
    if (!wslay_event_get_read_enabled(c->ws)) {
        c->flags |= CONN_FINISHING;
        uc_conn_mark_dirty(c);
    }
}

void uc_ws_fail(struct uc_conn *c, int code, const char *why)
{
    c->flags |= CONN_FINISHING;
    if (c->ws)
        wslay_event_shutdown_read(c->ws);
    if (c->state != CONN_OPEN) {
        uc_conn_mark_dirty(c);
        return;
    }
    c->srv->stats.protocol_errors++;
    uc_info("conn %llu (%s): closing with %d (%s)", (unsigned long long)c->id, c->remote_addr, code,
            why);
    uc_conn_leave_open(c, code, why, strlen(why));
    const uint8_t payload[2] = {(uint8_t)(code >> 8), (uint8_t)code};
    struct uc_buf *frame = uc_ws_frame(WSLAY_CONNECTION_CLOSE, payload, sizeof payload);
    if (!frame) {
        uc_conn_abort(c, code, why);
        return;
    }
    uc_conn_queue(c, frame);
    uc_buf_unref(frame);
}

/* Payload bytes of a data frame, already unmasked (and UTF-8 checked) by wslay. A message
 * that is one whole frame in one chunk is not copied at all; anything else is appended to
 * the connection's msgbuf, which wslay's size limit bounds. */
static void on_chunk(wslay_event_context_ptr ctx,
                     const struct wslay_event_on_frame_recv_chunk_arg *arg, void *user_data)
{
    struct uc_conn *c = user_data;
    if (c->flags & CONN_FRAME_CTRL)
        return; /* wslay buffers control frames itself */
    if ((c->flags & CONN_FRAME_WHOLE) && !c->msgbuf && arg->data_length == c->frame_len) {
        c->srv->whole_conn = c;
        c->srv->whole_data = arg->data;
        c->srv->whole_len = arg->data_length;
        return;
    }
    struct uc_msgbuf *m = c->msgbuf;
    size_t need = (m ? m->len : 0) + arg->data_length;
    if (!m || need > m->cap) {
        size_t cap = m ? m->cap * 2 : 4096;
        while (cap < need)
            cap *= 2;
        struct uc_msgbuf *grown = realloc(m, sizeof *m + cap);
        if (!grown) {
            wslay_event_set_error(ctx, WSLAY_ERR_NOMEM);
            uc_ws_fail(c, 1011, "out of memory");
            return;
        }
        if (!m)
            grown->len = 0;
        grown->cap = cap;
        c->msgbuf = m = grown;
    }
    memcpy(m->data + m->len, arg->data, arg->data_length);
    m->len += arg->data_length;
}

/* wslay bounds a message's size but not its number of fragments: a client could keep one
 * message going forever in empty frames. A fragment costs us about what its header costs the
 * client, so every fragment that carries a byte is fair, however small: a message may have one
 * fragment per payload byte, plus --max-fragments more (the empty ones). Any message within
 * --max-message passes whatever its fragmentation; a flood of empty frames does not. (How long
 * an unfinished message may take is uc_ws_feed's business.) */
static void on_frame_start(wslay_event_context_ptr ctx,
                           const struct wslay_event_on_frame_recv_start_arg *arg, void *user_data)
{
    (void)ctx;
    struct uc_conn *c = user_data;
    struct uc_server *srv = c->srv;
    if (arg->opcode & 0x8) {
        c->flags |= CONN_FRAME_CTRL; /* control frames may come between fragments */
        /* A close payload is empty or a 2-byte code and a reason; wslay answers a 1-byte one
         * with an empty close instead of the protocol error it is (RFC 6455 5.5.1). */
        if (arg->opcode == WSLAY_CONNECTION_CLOSE && arg->payload_length == 1)
            uc_ws_fail(c, 1002, "close frame with a 1-byte payload");
        return;
    }
    c->flags &= (uint16_t) ~(CONN_FRAME_CTRL | CONN_FRAME_WHOLE);
    if (arg->opcode != WSLAY_CONTINUATION_FRAME) {
        c->fragments = 0;
        if (arg->fin)
            c->flags |= CONN_FRAME_WHOLE;
    }
    /* Without buffering, wslay checks each frame against the limit but not their sum. */
    uint64_t total =
        (arg->opcode == WSLAY_CONTINUATION_FRAME ? c->msg_len : 0) + arg->payload_length;
    if (total > srv->opt.max_message) {
        uc_ws_fail(c, 1009, "message too big");
        return;
    }
    c->msg_len = (uint32_t)total;
    c->frame_len = (uint32_t)arg->payload_length;
    c->fragments++;
    if (c->fragments > (uint64_t)c->msg_len + srv->opt.max_fragments) {
        uc_ws_fail(c, 1008, "too many fragments");
        return;
    }
    if (arg->fin)
        c->fragments = 0;
}

/* Follows frame boundaries in the bytes fed to wslay, so we know when it holds nothing
 * half-read. Only lengths are read here; wslay still validates everything. */
static void scan_frames(struct uc_conn *c, const uint8_t *p, size_t len)
{
    while (len) {
        if (c->head_len == 0 && c->frame_left) {
            size_t n = len < c->frame_left ? len : (size_t)c->frame_left;
            c->frame_left -= n;
            p += n;
            len -= n;
            continue;
        }
        /* A header byte: 2 fixed, then 0/2/8 of extended length, then 0/4 of mask key.
         * frame_left accumulates the length while the header is incomplete. */
        uint8_t b = *p++;
        len--;
        if (c->head_len < 2)
            c->head[c->head_len] = b;
        c->head_len++;
        if (c->head_len < 2)
            continue;
        uint8_t len7 = c->head[1] & 0x7f;
        size_t ext = len7 == 126 ? 2 : len7 == 127 ? 8 : 0;
        size_t need = 2 + ext + ((c->head[1] & 0x80) ? 4 : 0);
        if (c->head_len == 2)
            c->frame_left = ext ? 0 : len7;
        else if (c->head_len <= 2 + ext)
            c->frame_left = c->frame_left << 8 | b;
        if (c->head_len == need)
            c->head_len = 0;
    }
}

/* True when wslay holds no partial frame or message of this connection, so its context can go:
 * an idle connection then costs a few hundred bytes instead of wslay's ~9 KB. The liveness
 * timer releases it a moment after the last bytes (not at once: a busy connection would pay
 * for a 9 KB calloc on every read). */
int uc_ws_at_rest(const struct uc_conn *c)
{
    return c->ws && c->state == CONN_OPEN && !c->frame_left && !c->head_len && !c->fragments &&
           !(c->flags & CONN_FINISHING) && !wslay_event_want_write(c->ws);
}

void uc_ws_feed(struct uc_conn *c, const uint8_t *data, size_t len)
{
    if (uc_ws_ensure(c) != 0) {
        uc_conn_abort(c, 1011, "out of memory");
        return;
    }
    scan_frames(c, data, len);
    c->in = data;
    c->in_len = len;
    int r = wslay_event_recv(c->ws);
    c->in = NULL;
    c->in_len = 0;
    if (c->state == CONN_DEAD)
        return; /* cut off inside (a slow reader's pong overflowed, say) */
    if (r == WSLAY_ERR_NOMEM) {
        uc_conn_abort(c, 1011, "out of memory reading frames");
        return;
    }
    /* Our recv callback never fails, so any other failure is the peer's malformed frame. */
    if (r != 0) {
        uc_ws_fail(c, 1002, "malformed frame");
        return;
    }
    uc_ws_pump(c);
    /* Any message left unfinished (a fragmented one, or one frame trickling in) must end within
     * --message-timeout of when it became unfinished: a partial message holds memory. */
    if (c->state == CONN_OPEN) {
        int unfinished = c->frame_left || c->head_len || c->fragments;
        struct ev_loop *loop = c->srv->loop;
        if (unfinished && !ev_is_active(&c->timer)) {
            ev_timer_set(&c->timer, c->srv->opt.message_timeout, 0.);
            ev_timer_start(loop, &c->timer);
        } else if (!unfinished && ev_is_active(&c->timer)) {
            ev_timer_stop(loop, &c->timer);
        }
    }
    /* A connection that was quiet before these bytes (a login, a message now and then) gives
     * its context back at once; a busy one keeps it, and the liveness timer takes it back
     * once the connection has been quiet for a moment. */
    uint32_t now_ms = (uint32_t)((ev_now(c->srv->loop) - c->srv->started) * 1000) | 1;
    int busy = c->last_feed_ms && now_ms - c->last_feed_ms < 500;
    c->last_feed_ms = now_ms;
    if (!busy && uc_ws_at_rest(c))
        uc_ws_free(c);
}

int uc_ws_close(struct uc_conn *c, int code, const char *reason, size_t reason_len)
{
    /* From here on the context stays: it follows the close handshake to its end. */
    if (uc_ws_ensure(c) != 0)
        return UC_ERR_NOMEM;
    int r = wslay_event_queue_close(c->ws, (uint16_t)code, (const uint8_t *)reason, reason_len);
    return r == 0 ? 0 : UC_ERR_INVALID;
}

struct uc_buf *uc_ws_frame(int opcode, const void *payload, size_t len)
{
    uint8_t head[10];
    size_t head_len;
    head[0] = (uint8_t)(0x80 | (opcode & 0x0f));
    if (len < 126) {
        head[1] = (uint8_t)len;
        head_len = 2;
    } else if (len <= 0xffff) {
        head[1] = 126;
        head[2] = (uint8_t)(len >> 8);
        head[3] = (uint8_t)len;
        head_len = 4;
    } else {
        head[1] = 127;
        for (int i = 0; i < 8; i++)
            head[2 + i] = (uint8_t)((uint64_t)len >> (56 - 8 * i));
        head_len = 10;
    }
    struct uc_buf *b = uc_buf_new(head_len + len);
    if (!b)
        return NULL;
    memcpy(b->data, head, head_len);
    if (len)
        memcpy(b->data + head_len, payload, len);
    return b;
}

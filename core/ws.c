/* ws.c -- the RFC 6455 codec on wslay (see ws.h).
 *
 * Server data frames never pass through wslay_event_queue_msg, which would malloc and copy the
 * payload per connection: uc_ws_frame() encodes a message once, and every receiver's queue
 * shares the bytes. wslay's own frames leave through on_write whole, so wslay never holds a
 * half-sent frame and the owner may interleave its frames with them in one queue.
 *
 * wslay's callbacks reach the codec through the context's user data (the struct uc_ws) and
 * the call in progress (struct call below): the events, the owner and the input exist only for
 * the length of one uc_ws_feed or uc_ws_pump, so no connection stores them. */
#include "ws.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "utf8.h"

enum { FRAME_CTRL = 1 << 0, FRAME_WHOLE = 1 << 1 };

/* A message being assembled from several frames or reads. */
struct uc_msgbuf {
    size_t len, cap;
    uint8_t data[];
};

/* The codec's state while wslay reads or writes for the connection. */
struct uc_wslay {
    wslay_event_context_ptr ctx;
    struct uc_msgbuf *msgbuf; /* only while a message spans frames or reads */
    uint64_t frame_left;      /* payload bytes of the current frame not yet fed to wslay */
    uint32_t frame_len;       /* payload length of the frame being read (<= max_message) */
    uint32_t msg_len;         /* payload bytes of the message so far, over its frames */
    unsigned fragments;       /* frames of the message being received so far */
    uint8_t head_len;         /* bytes of the next frame's header seen so far */
    uint8_t head[2];          /* its first two bytes (enough to know its full length) */
    uint8_t frame_flags;      /* the frame being read: control, a whole message */
};

/* What one uc_ws_feed or uc_ws_pump is doing; callbacks read it. Calls nest (an on_message may
 * close another connection), so each entry point saves and restores the one before. */
struct call {
    const struct uc_ws_events *ev;
    void *owner;
    const struct uc_ws_limits *lim;
    const uint8_t *in; /* bytes the recv callback hands out */
    size_t in_len;
    const uint8_t *whole; /* a message that arrived whole in one chunk of wslay's buffer */
    size_t whole_len;
    int violation; /* a close code for what the codec itself refused, or 0 */
    const char *why;
};

static struct call *current;

/* Stops reading and remembers why: the feed returns the code to the owner. */
static void refuse(struct uc_wslay *ws, int code, const char *why)
{
    if (!current->violation) {
        current->violation = code;
        current->why = why;
    }
    wslay_event_shutdown_read(ws->ctx);
}

static ssize_t recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags,
                       void *user_data)
{
    (void)flags;
    (void)user_data;
    if (!current->in_len) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    size_t n = len < current->in_len ? len : current->in_len;
    memcpy(buf, current->in, n);
    current->in += n;
    current->in_len -= n;
    return (ssize_t)n;
}

static ssize_t send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags,
                       void *user_data)
{
    (void)flags;
    (void)user_data;
    if (current->ev->on_write(current->owner, data, len) != 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    return (ssize_t)len;
}

static void on_msg_recv(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg,
                        void *user_data)
{
    (void)ctx;
    struct uc_wslay *ws = user_data;
    if (current->violation)
        return; /* refused as it began: the owner closes for that, not for what follows */
    switch (arg->opcode) {
    case WSLAY_TEXT_FRAME:
    case WSLAY_BINARY_FRAME: {
        /* wslay runs without buffering data: the message is either one chunk still in its
         * input buffer, or what on_chunk assembled. */
        const uint8_t *data = (const uint8_t *)"";
        size_t len = 0;
        struct uc_msgbuf *assembled = ws->msgbuf;
        ws->msgbuf = NULL;
        if (assembled) {
            data = assembled->data;
            len = assembled->len;
        } else if (current->whole) {
            data = current->whole;
            len = current->whole_len;
        }
        current->whole = NULL;
        current->ev->on_message(current->owner, data, len, arg->opcode == WSLAY_BINARY_FRAME);
        free(assembled);
        break;
    }
    case WSLAY_CONNECTION_CLOSE: {
        int code = arg->status_code ? arg->status_code : 1005;
        const char *reason = arg->msg_length > 2 ? (const char *)arg->msg + 2 : "";
        size_t reason_len = arg->msg_length > 2 ? arg->msg_length - 2 : 0;
        current->ev->on_peer_close(current->owner, code, reason, reason_len);
        break;
    }
    default: break; /* ping is answered by wslay; pong needs nothing */
    }
}

/* Payload bytes of a data frame, already unmasked (and UTF-8 checked) by wslay. A message
 * that is one whole frame in one chunk is not copied at all; anything else is appended to
 * msgbuf, which the size limit bounds. */
static void on_chunk(wslay_event_context_ptr ctx,
                     const struct wslay_event_on_frame_recv_chunk_arg *arg, void *user_data)
{
    struct uc_wslay *ws = user_data;
    if (ws->frame_flags & FRAME_CTRL)
        return; /* wslay buffers control frames itself */
    if ((ws->frame_flags & FRAME_WHOLE) && !ws->msgbuf && arg->data_length == ws->frame_len) {
        current->whole = arg->data;
        current->whole_len = arg->data_length;
        return;
    }
    struct uc_msgbuf *m = ws->msgbuf;
    size_t need = (m ? m->len : 0) + arg->data_length;
    if (!m || need > m->cap) {
        size_t cap = m ? m->cap * 2 : 4096;
        while (cap < need)
            cap *= 2;
        struct uc_msgbuf *grown = realloc(m, sizeof *m + cap);
        if (!grown) {
            wslay_event_set_error(ctx, WSLAY_ERR_NOMEM);
            refuse(ws, 1011, "out of memory");
            return;
        }
        if (!m)
            grown->len = 0;
        grown->cap = cap;
        ws->msgbuf = m = grown;
    }
    memcpy(m->data + m->len, arg->data, arg->data_length);
    m->len += arg->data_length;
}

/* wslay bounds a message's size but not its number of fragments: a client could keep one
 * message going forever in empty frames. A fragment costs us about what its header costs the
 * client, so every fragment that carries a byte is fair, however small: a message may have one
 * fragment per payload byte, plus max_fragments more (the empty ones). Any message within the
 * size cap passes whatever its fragmentation; a flood of empty frames does not. */
static void on_frame_start(wslay_event_context_ptr ctx,
                           const struct wslay_event_on_frame_recv_start_arg *arg, void *user_data)
{
    (void)ctx;
    struct uc_wslay *ws = user_data;
    const struct uc_ws_limits *lim = current->lim;
    if (arg->opcode & 0x8) {
        ws->frame_flags |= FRAME_CTRL; /* control frames may come between fragments */
        /* A close payload is empty or a 2-byte code and a reason; wslay answers a 1-byte one
         * with an empty close instead of the protocol error it is (RFC 6455 5.5.1). */
        if (arg->opcode == WSLAY_CONNECTION_CLOSE && arg->payload_length == 1)
            refuse(ws, 1002, "close frame with a 1-byte payload");
        return;
    }
    ws->frame_flags &= (uint8_t) ~(FRAME_CTRL | FRAME_WHOLE);
    if (arg->opcode != WSLAY_CONTINUATION_FRAME) {
        ws->fragments = 0;
        if (arg->fin)
            ws->frame_flags |= FRAME_WHOLE;
    }
    /* Without buffering, wslay checks each frame against the limit but not their sum. */
    uint64_t total =
        (arg->opcode == WSLAY_CONTINUATION_FRAME ? ws->msg_len : 0) + arg->payload_length;
    if (total > lim->max_message) {
        refuse(ws, 1009, "message too big");
        return;
    }
    ws->msg_len = (uint32_t)total;
    ws->frame_len = (uint32_t)arg->payload_length;
    ws->fragments++;
    if (ws->fragments > (uint64_t)ws->msg_len + lim->max_fragments) {
        refuse(ws, 1008, "too many fragments");
        return;
    }
    if (arg->fin)
        ws->fragments = 0;
}

static const struct wslay_event_callbacks callbacks = {
    .recv_callback = recv_cb,
    .send_callback = send_cb,
    .on_frame_recv_start_callback = on_frame_start,
    .on_frame_recv_chunk_callback = on_chunk,
    .on_msg_recv_callback = on_msg_recv,
};

/* Creates the state and wslay's context when the connection needs them. Returns 0, or -1 when
 * out of memory. */
static int ensure(struct uc_ws *ws, const struct uc_ws_limits *lim, int *created)
{
    *created = 0;
    if (ws->w)
        return 0;
    struct uc_wslay *w = calloc(1, sizeof *w);
    if (!w)
        return -1;
    if (wslay_event_context_server_init(&w->ctx, &callbacks, w) != 0) {
        free(w);
        return -1;
    }
    /* Before any frame is read: wslay allocates a frame's declared length when its header
     * arrives, so without this a header claiming 2^62 bytes would be honoured. */
    wslay_event_config_set_max_recv_msg_length(w->ctx, lim->max_message);
    wslay_event_config_set_no_buffering(w->ctx, 1);
    ws->w = w;
    *created = 1;
    return 0;
}

/* Follows frame boundaries in the bytes fed to wslay, so we know when it holds nothing
 * half-read. Only lengths are read here; wslay still validates everything. */
static void scan_frames(struct uc_wslay *ws, const uint8_t *p, size_t len)
{
    while (len) {
        if (ws->head_len == 0 && ws->frame_left) {
            size_t n = len < ws->frame_left ? len : (size_t)ws->frame_left;
            ws->frame_left -= n;
            p += n;
            len -= n;
            continue;
        }
        /* A header byte: 2 fixed, then 0/2/8 of extended length, then 0/4 of mask key.
         * frame_left accumulates the length while the header is incomplete. */
        uint8_t b = *p++;
        len--;
        if (ws->head_len < 2)
            ws->head[ws->head_len] = b;
        ws->head_len++;
        if (ws->head_len < 2)
            continue;
        uint8_t len7 = ws->head[1] & 0x7f;
        size_t ext = len7 == 126 ? 2 : len7 == 127 ? 8 : 0;
        size_t need = 2 + ext + ((ws->head[1] & 0x80) ? 4 : 0);
        if (ws->head_len == 2)
            ws->frame_left = ext ? 0 : len7;
        else if (ws->head_len <= 2 + ext)
            ws->frame_left = ws->frame_left << 8 | b;
        if (ws->head_len == need)
            ws->head_len = 0;
    }
}

/* XORs len bytes with the 4-byte mask key, eight at a time. Twice restores them. */
static void unmask(uint8_t *p, size_t len, const uint8_t key[4])
{
    uint32_t k32;
    memcpy(&k32, key, 4);
    uint64_t k64 = (uint64_t)k32 << 32 | k32;
    size_t i = 0;
    for (; i + 16 <= len; i += 16) {
        uint64_t w[2];
        memcpy(w, p + i, 16);
        w[0] ^= k64;
        w[1] ^= k64;
        memcpy(p + i, w, 16);
    }
    for (; i + 4 <= len; i += 4) {
        uint32_t w;
        memcpy(&w, p + i, 4);
        w ^= k32;
        memcpy(p + i, &w, 4);
    }
    for (; i < len; i++)
        p[i] ^= key[i & 3];
}

/* True while frames may be read without wslay: at a frame boundary, no message begun, and
 * reading not stopped. */
static int simple_reading(const struct uc_ws *ws)
{
    return !ws->w ||
           (!uc_ws_unfinished(ws) && !ws->w->msgbuf && wslay_event_get_read_enabled(ws->w->ctx));
}

/* Most messages arrive as one whole, final, masked data frame of a few bytes, and most reads
 * hold only such frames. Those are read here without wslay (whose context and two copies cost
 * more than the message): unmasked where they lie, checked as wslay checks them (FIN, no RSV,
 * text or binary, masked, the shortest length encoding, the size cap, UTF-8 of text) and handed
 * over. The first frame that is anything else (or not whole) stops this, masked as it came,
 * and wslay reads from there, starting at a frame boundary. Returns the bytes read. */
static size_t read_simple_frames(struct uc_ws *ws, const struct uc_ws_limits *lim,
                                 const struct uc_ws_events *ev, void *owner, uint8_t *data,
                                 size_t len)
{
    size_t used = 0;
    while (len - used >= 6 && simple_reading(ws)) {
        uint8_t *p = data + used;
        int opcode = p[0] & 0x0f;
        if ((p[0] & 0xf0) != 0x80 || (opcode != WSLAY_TEXT_FRAME && opcode != WSLAY_BINARY_FRAME) ||
            !(p[1] & 0x80))
            break;
        size_t n = p[1] & 0x7f, head = 6;
        if (n == 126) {
            if (len - used < 8)
                break;
            n = (size_t)p[2] << 8 | p[3];
            head = 8;
            if (n < 126)
                break; /* not the shortest encoding: wslay's protocol error */
        } else if (n == 127) {
            break;
        }
        if (n > lim->max_message || len - used - head < n)
            break;
        uint8_t *payload = p + head;
        unmask(payload, n, payload - 4);
        if (opcode == WSLAY_TEXT_FRAME && !uc_utf8_valid(payload, n)) {
            unmask(payload, n, payload - 4);
            break;
        }
        used += head + n;
        ev->on_message(owner, payload, n, opcode == WSLAY_BINARY_FRAME);
    }
    return used;
}

int uc_ws_feed(struct uc_ws *ws, const struct uc_ws_limits *lim, const struct uc_ws_events *ev,
               void *owner, uint8_t *data, size_t len, const char **why, int *created)
{
    *created = 0;
    size_t simple = read_simple_frames(ws, lim, ev, owner, data, len);
    data += simple;
    len -= simple;
    if (!len || !uc_ws_reading(ws))
        return 0; /* all read; or the owner stopped reading inside, and the rest is dropped */
    if (ensure(ws, lim, created) != 0)
        return -1;
    struct uc_wslay *w = ws->w;
    scan_frames(w, data, len);
    struct call call = {.ev = ev, .owner = owner, .lim = lim, .in = data, .in_len = len};
    struct call *outer = current;
    current = &call;
    int r = wslay_event_recv(w->ctx);
    current = outer;
    if (call.violation) {
        *why = call.why;
        return call.violation;
    }
    if (r == WSLAY_ERR_NOMEM) {
        *why = "out of memory reading frames";
        wslay_event_shutdown_read(w->ctx);
        return 1011;
    }
    /* Our recv callback never fails, so any other failure is the peer's malformed frame (wslay
     * answers some header errors with an empty close and a failure: ours says 1002). */
    if (r != 0) {
        *why = "malformed frame";
        wslay_event_shutdown_read(w->ctx);
        return 1002;
    }
    return 0;
}

int uc_ws_pump(struct uc_ws *ws, const struct uc_ws_events *ev, void *owner)
{
    if (!ws->w || !wslay_event_want_write(ws->w->ctx))
        return 0;
    struct call call = {.ev = ev, .owner = owner};
    struct call *outer = current;
    current = &call;
    int r = wslay_event_send(ws->w->ctx);
    current = outer;
    return r == 0 ? 0 : -1;
}

int uc_ws_close_sent(const struct uc_ws *ws)
{
    if (!ws->w || !wslay_event_get_close_sent(ws->w->ctx))
        return 0;
    return wslay_event_get_status_code_sent(ws->w->ctx);
}

int uc_ws_reading(const struct uc_ws *ws)
{
    return !ws->w || wslay_event_get_read_enabled(ws->w->ctx);
}

void uc_ws_stop_reading(struct uc_ws *ws)
{
    if (ws->w)
        wslay_event_shutdown_read(ws->w->ctx);
}

int uc_ws_close(struct uc_ws *ws, const struct uc_ws_limits *lim, int code, const char *reason,
                size_t reason_len, int *created)
{
    if (ensure(ws, lim, created) != 0)
        return -1;
    int r =
        wslay_event_queue_close(ws->w->ctx, (uint16_t)code, (const uint8_t *)reason, reason_len);
    return r == 0 ? 0 : -2;
}

int uc_ws_unfinished(const struct uc_ws *ws)
{
    const struct uc_wslay *w = ws->w;
    return w && (w->frame_left || w->head_len || w->fragments);
}

int uc_ws_active(const struct uc_ws *ws) { return ws->w != NULL; }

int uc_ws_at_rest(const struct uc_ws *ws)
{
    return ws->w && !uc_ws_unfinished(ws) && !wslay_event_want_write(ws->w->ctx);
}

int uc_ws_release(struct uc_ws *ws)
{
    struct uc_wslay *w = ws->w;
    if (!w)
        return 0;
    wslay_event_context_free(w->ctx);
    free(w->msgbuf);
    free(w);
    ws->w = NULL;
    return 1;
}

struct uc_buf *uc_ws_frame(int opcode, const void *payload, size_t len)
{
    return uc_ws_frame_prefixed(opcode, NULL, 0, payload, len);
}

struct uc_buf *uc_ws_frame_prefixed(int opcode, const void *prefix, size_t prefix_len,
                                    const void *payload, size_t len)
{
    size_t total = prefix_len + len;
    size_t head_len = total < 126 ? 2 : total <= 0xffff ? 4 : 10;
    struct uc_buf *b = uc_buf_new(head_len + total);
    if (!b)
        return NULL;
    uint8_t *head = b->data;
    head[0] = (uint8_t)(0x80 | (opcode & 0x0f));
    if (head_len == 2) {
        head[1] = (uint8_t)total;
    } else if (head_len == 4) {
        head[1] = 126;
        head[2] = (uint8_t)(total >> 8);
        head[3] = (uint8_t)total;
    } else {
        head[1] = 127;
        for (int i = 0; i < 8; i++)
            head[2 + i] = (uint8_t)((uint64_t)total >> (56 - 8 * i));
    }
    if (prefix_len)
        memcpy(b->data + head_len, prefix, prefix_len);
    if (len)
        memcpy(b->data + head_len + prefix_len, payload, len);
    return b;
}

const uint8_t *uc_ws_frame_payload(const struct uc_buf *frame, int *opcode, size_t *len)
{
    size_t head_len = frame->data[1] == 127 ? 10 : frame->data[1] == 126 ? 4 : 2;
    *opcode = frame->data[0] & 0x0f;
    *len = frame->len - head_len;
    return frame->data + head_len;
}

struct uc_buf *uc_ws_close_frame(int code)
{
    const uint8_t payload[2] = {(uint8_t)(code >> 8), (uint8_t)code};
    return uc_ws_frame(WSLAY_CONNECTION_CLOSE, payload, sizeof payload);
}

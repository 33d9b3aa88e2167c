/* ws.h -- the RFC 6455 codec of one server-side connection, on wslay: bytes in; messages, the
 * peer's close and the bytes to send out through struct uc_ws_events; a verdict back, which
 * the owner (conn.c) acts on. It knows nothing of sockets, connections or the server.
 *
 * wslay parses and validates what clients send (masking, RSV bits, opcodes, control frame
 * rules, UTF-8 of text and close reasons, the size cap) and produces its own control frames
 * (pong, close), handed to on_write whole. The one exception is the common case: a read that
 * starts with whole, final, small data frames has those read by the codec itself, with the
 * same checks, and no wslay context is made for them. The codec adds what wslay lacks: a bound on
 * fragments, the sum of fragments against the size cap (wslay checks frames, not their sum,
 * without buffering), a 1-byte close payload refused, messages handed over without a copy when
 * a frame arrives whole, and knowing when it holds nothing half-read, so that an idle
 * connection can give its ~9 KB wslay context back. */
#ifndef UC_WS_H
#define UC_WS_H

#include <stddef.h>
#include <stdint.h>
#include <wslay/wslay.h>

#include "buf.h"

/* What the codec tells its owner. owner is the pointer given with each call. */
struct uc_ws_events {
    /* A complete message, reassembled from its fragments; data is borrowed until return. */
    void (*on_message)(void *owner, const uint8_t *data, size_t len, int binary);
    /* The peer's close frame: its code (1005 when it had none) and reason (borrowed). wslay
     * echoes it on the next uc_ws_pump. */
    void (*on_peer_close)(void *owner, int code, const char *reason, size_t reason_len);
    /* Bytes to send exactly as they are (a pong, a close): queue them whole. Returns 0, or
     * nonzero when the owner could not (it was cut off): the codec then stops. */
    int (*on_write)(void *owner, const uint8_t *data, size_t len);
};

struct uc_ws_limits {
    size_t max_message;     /* payload bytes of one message, over all its fragments */
    unsigned max_fragments; /* empty fragments a message may have beyond one per byte */
};

/* One connection's codec state, embedded in the connection (zeroed = fresh): a pointer, NULL
 * until wslay is needed (a frame the codec does not read itself, a close) and again once the
 * owner releases it, so an idle connection pays 8 bytes for it. The rest (wslay's context, a
 * message being assembled, where the reading is within a frame) lives in one block of ws.c's,
 * freed by uc_ws_release. */
struct uc_ws {
    struct uc_wslay *w;
};

/* Feeds bytes the peer sent; the codec may change them (it unmasks in place), so they are the
 * owner's scratch. Messages and the peer's close reach ev from inside; wslay's
 * answers wait for uc_ws_pump. Returns 0; or a close code (1002, 1007, 1008, 1009, 1011) for a
 * violation the codec saw itself, with *why set: it has stopped reading, and the owner closes
 * with that code (uc_ws_close_frame gives the frame); or -1 when it could not allocate its
 * context (nothing was read). *created is set to 1 when this call created the wslay context
 * (the owner may count contexts; uc_ws_release says when one goes). */
int uc_ws_feed(struct uc_ws *ws, const struct uc_ws_limits *lim, const struct uc_ws_events *ev,
               void *owner, uint8_t *data, size_t len, const char **why, int *created);

/* Hands wslay's queued frames (pong, close) to ev->on_write. Returns 0, or -1 when a write
 * failed (the owner aborts). */
int uc_ws_pump(struct uc_ws *ws, const struct uc_ws_events *ev, void *owner);

/* The close code wslay sent (its own protocol error, or the echo of the peer's), or 0. */
int uc_ws_close_sent(const struct uc_ws *ws);

/* 0 once the codec reads nothing more (a close exchanged, or a violation). */
int uc_ws_reading(const struct uc_ws *ws);

/* Stops reading frames (the owner is closing for its own reason). */
void uc_ws_stop_reading(struct uc_ws *ws);

/* Queues a close frame through wslay (sent by the next uc_ws_pump); from then on the context
 * stays until the close handshake ends. Returns 0, -1 when out of memory, or -2 for a code
 * wslay refuses. *created as for uc_ws_feed. */
int uc_ws_close(struct uc_ws *ws, const struct uc_ws_limits *lim, int code, const char *reason,
                size_t reason_len, int *created);

/* True when a message or frame is partly received (the owner times it). */
int uc_ws_unfinished(const struct uc_ws *ws);

/* True while wslay has a context for the connection (something partly read, to send, or a
 * close under way). */
int uc_ws_active(const struct uc_ws *ws);

/* True when the context holds nothing half-read or unsent and may be released. */
int uc_ws_at_rest(const struct uc_ws *ws);

/* Frees the wslay context and any partial message. Returns 1 when a context was freed. */
int uc_ws_release(struct uc_ws *ws);

/* Encodes one unmasked server frame (FIN set) into a new buffer; NULL when out of memory. */
struct uc_buf *uc_ws_frame(int opcode, const void *payload, size_t len);
/* The same with prefix_len bytes of prefix in front of the payload, in one frame. */
struct uc_buf *uc_ws_frame_prefixed(int opcode, const void *prefix, size_t prefix_len,
                                    const void *payload, size_t len);
/* The payload of a frame made by the two above, and its opcode. */
const uint8_t *uc_ws_frame_payload(const struct uc_buf *frame, int *opcode, size_t *len);

/* The close frame the owner sends for a violation: code in two bytes, no reason. */
struct uc_buf *uc_ws_close_frame(int code);

#endif

/* stats.c -- the list of counters (see stats.h). */
#include "stats.h"

#define F(field, is_counter, text)                                                                 \
    {                                                                                              \
#field, text, is_counter, offsetof(struct uc_stats, field)                                 \
    }
#define F_AS(name, field, is_counter, text)                                                        \
    {                                                                                              \
        name, text, is_counter, offsetof(struct uc_stats, field)                                   \
    }

const struct uc_stat_field uc_stat_fields[] = {
    F(connections, 0, "Open WebSocket connections."),
    F(bound_connections, 0, "Open connections bound to a uid."),
    F(uids, 0, "Distinct uids bound."),
    F(groups, 0, "Groups with at least one member."),
    F(accepted, 1, "TCP connections accepted."),
    F(handshakes_refused, 1, "Upgrades refused (bad request, policy, limits)."),
    F(messages_in, 1, "WebSocket messages received."),
    F(messages_out, 1, "WebSocket messages queued to connections."),
    F(bytes_in, 1, "Bytes read from WebSocket sockets."),
    F(bytes_out, 1, "Bytes written to WebSocket sockets."),
    F(slow_readers_closed, 1, "Connections closed for overflowing --max-send-buffer."),
    F(protocol_errors, 1, "Connections closed for a protocol violation."),
    F(idle_closed, 1, "Connections closed after --idle-timeout of silence."),
    F_AS("lua_errors", policy_errors, 1, "Errors raised by Lua handlers."),
    F(push_requests, 1, "Requests to the HTTP push API."),
    F(cluster_published, 1, "Deliveries published to the other nodes through Redis."),
    F(cluster_received, 1, "Publications of other nodes delivered here."),
    F(cluster_dropped, 1, "Publications Redis did not take: unreachable, refused or backlogged."),
    F(cluster_gaps, 1, "Times the cluster subscriptions were lost (messages may be missed)."),
    F_AS("lua_memory", policy_memory, 0, "Bytes the Lua state holds."),
    F(mailbox_kept, 1, "Messages kept for their uid (sent with keep)."),
    F(mailbox_messages, 0, "Kept messages held now."),
    F(mailbox_memory, 0, "Bytes the store of kept messages holds."),
    F(mailbox_expired, 1, "Kept messages dropped when their keep ran out."),
    F(mailbox_evicted, 1, "Kept messages dropped early by a --mailbox-* cap."),
    F(mailbox_undelivered, 1, "Kept messages dropped before any connection was handed them."),
    F(mailbox_replayed, 1, "Kept messages replayed to resuming connections."),
    F(mailbox_gaps, 1, "Gaps announced to resuming connections (messages no longer kept)."),
    F(mailbox_unkept, 1, "Kept sends Redis did not store (sent to this node only, if at all)."),
    F(webhook_sent, 1, "Events the webhook's receiver took (a 2xx answer)."),
    F(webhook_retried, 1, "Webhook attempts that failed and were tried again."),
    F(webhook_failed, 1, "Webhook events given up (past --webhook-retry-for) or dropped."),
};

const size_t uc_stat_field_count = sizeof uc_stat_fields / sizeof uc_stat_fields[0];

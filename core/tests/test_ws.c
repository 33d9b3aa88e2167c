/* test_ws.c -- the RFC 6455 codec driven with scripted bytes: no sockets, no connection. */
#include "../ws.h"

#include <stdlib.h>
#include <string.h>

#include "../outq.h"
#include "check.h"

/* What the codec told us. */
struct owner {
    char messages[8][256];
    size_t lens[8];
    int binary[8];
    int nmessages;
    int close_code;
    char out[512]; /* bytes it asked us to send */
    size_t out_len;
    int refuse_writes;
};

static void on_message(void *o, const uint8_t *data, size_t len, int binary)
{
    struct owner *w = o;
    memcpy(w->messages[w->nmessages], data, len < 256 ? len : 256);
    w->lens[w->nmessages] = len;
    w->binary[w->nmessages++] = binary;
}

static void on_peer_close(void *o, int code, const char *reason, size_t reason_len)
{
    (void)reason, (void)reason_len;
    ((struct owner *)o)->close_code = code;
}

static int on_write(void *o, const uint8_t *data, size_t len)
{
    struct owner *w = o;
    if (w->refuse_writes)
        return -1;
    memcpy(w->out + w->out_len, data, len);
    w->out_len += len;
    return 0;
}

static const struct uc_ws_events events = {on_message, on_peer_close, on_write};
static const struct uc_ws_limits limits = {.max_message = 1000, .max_fragments = 4};

/* Appends one masked client frame to buf; returns the new length. */
static size_t frame(uint8_t *buf, size_t at, int fin, int opcode, const char *payload, size_t len)
{
    static const uint8_t key[4] = {1, 2, 3, 4};
    buf[at++] = (uint8_t)((fin ? 0x80 : 0) | opcode);
    if (len < 126) {
        buf[at++] = (uint8_t)(0x80 | len);
    } else {
        buf[at++] = 0x80 | 126;
        buf[at++] = (uint8_t)(len >> 8);
        buf[at++] = (uint8_t)len;
    }
    memcpy(buf + at, key, 4);
    at += 4;
    for (size_t i = 0; i < len; i++)
        buf[at + i] = (uint8_t)payload[i] ^ key[i & 3];
    return at + len;
}

/* Feeds the bytes one at a time or all at once; returns the codec's verdict. */
static int feed(struct uc_ws *ws, struct owner *w, uint8_t *bytes, size_t len, int bytewise)
{
    const char *why = NULL;
    int created, verdict = 0;
    if (!bytewise)
        return uc_ws_feed(ws, &limits, &events, w, bytes, len, &why, &created);
    for (size_t i = 0; i < len && verdict == 0; i++)
        verdict = uc_ws_feed(ws, &limits, &events, w, bytes + i, 1, &why, &created);
    return verdict;
}

TEST(reassembles_fragments_with_a_ping_between_them_and_answers_the_ping)
{
    for (int bytewise = 0; bytewise <= 1; bytewise++) {
        struct uc_ws ws = {0};
        struct owner w = {0};
        uint8_t in[256];
        size_t n = frame(in, 0, 0, WSLAY_TEXT_FRAME, "hel", 3);
        n = frame(in, n, 1, WSLAY_PING, "p", 1);
        n = frame(in, n, 1, WSLAY_CONTINUATION_FRAME, "lo", 2);
        CHECK_EQ_INT(feed(&ws, &w, in, n, bytewise), 0);
        CHECK_EQ_INT(w.nmessages, 1);
        CHECK_MEM(w.messages[0], w.lens[0], "hello");
        CHECK_EQ_INT(w.binary[0], 0);
        CHECK_EQ_INT(uc_ws_pump(&ws, &events, &w), 0);
        CHECK_EQ_INT(w.out_len, 3); /* the pong: 0x8a, length 1, "p" */
        CHECK_EQ_INT(w.out[0] & 0xff, 0x8a);
        CHECK(uc_ws_at_rest(&ws));
        CHECK_EQ_INT(uc_ws_release(&ws), 1);
    }
}

TEST(knows_a_message_is_unfinished_until_its_last_byte)
{
    struct uc_ws ws = {0};
    struct owner w = {0};
    uint8_t in[64];
    size_t n = frame(in, 0, 1, WSLAY_BINARY_FRAME, "abcdef", 6);
    CHECK_EQ_INT(feed(&ws, &w, in, n - 1, 0), 0);
    CHECK(uc_ws_unfinished(&ws));
    CHECK(!uc_ws_at_rest(&ws));
    CHECK_EQ_INT(feed(&ws, &w, in + n - 1, 1, 0), 0);
    CHECK(!uc_ws_unfinished(&ws));
    CHECK_EQ_INT(w.nmessages, 1);
    CHECK_EQ_INT(w.binary[0], 1);
    uc_ws_release(&ws);
}

TEST(closes_with_1007_for_utf8_split_badly_across_fragments)
{
    struct uc_ws ws = {0};
    struct owner w = {0};
    uint8_t in[64];
    size_t n = frame(in, 0, 0, WSLAY_TEXT_FRAME, "ok \xe2\x82", 5);
    n = frame(in, n, 1, WSLAY_CONTINUATION_FRAME, "x", 1); /* not the continuation byte */
    feed(&ws, &w, in, n, 0);
    CHECK_EQ_INT(uc_ws_pump(&ws, &events, &w), 0);
    CHECK_EQ_INT(uc_ws_close_sent(&ws), 1007);
    CHECK_EQ_INT(w.nmessages, 0);
    uc_ws_release(&ws);
}

TEST(refuses_fragments_that_add_up_past_the_size_cap_with_1009)
{
    struct uc_ws ws = {0};
    struct owner w = {0};
    static uint8_t in[2048];
    char part[600];
    memset(part, 'a', sizeof part);
    size_t n = frame(in, 0, 0, WSLAY_TEXT_FRAME, part, sizeof part);
    n = frame(in, n, 1, WSLAY_CONTINUATION_FRAME, part, sizeof part);
    CHECK_EQ_INT(feed(&ws, &w, in, n, 0), 1009);
    CHECK(!uc_ws_reading(&ws));
    CHECK_EQ_INT(w.nmessages, 0);
    uc_ws_release(&ws);
}

TEST(passes_one_fragment_per_byte_and_refuses_a_flood_of_empty_ones_with_1008)
{
    struct uc_ws ws = {0};
    struct owner w = {0};
    uint8_t in[1024];
    size_t n = frame(in, 0, 0, WSLAY_TEXT_FRAME, "a", 1);
    for (int i = 0; i < 30; i++)
        n = frame(in, n, 0, WSLAY_CONTINUATION_FRAME, "b", 1);
    n = frame(in, n, 1, WSLAY_CONTINUATION_FRAME, "c", 1);
    CHECK_EQ_INT(feed(&ws, &w, in, n, 0), 0); /* 32 fragments, 32 bytes: fine */
    CHECK_EQ_INT(w.nmessages, 1);
    CHECK_EQ_INT(w.lens[0], 32);
    n = frame(in, 0, 0, WSLAY_TEXT_FRAME, "a", 1);
    for (int i = 0; i < 5; i++)
        n = frame(in, n, 0, WSLAY_CONTINUATION_FRAME, "", 0);
    CHECK_EQ_INT(feed(&ws, &w, in, n, 0), 1008); /* 1 byte + 4 allowed, the 6th refused */
    uc_ws_release(&ws);
}

TEST(reports_the_peers_close_and_echoes_it)
{
    struct uc_ws ws = {0};
    struct owner w = {0};
    uint8_t in[64];
    size_t n = frame(in, 0, 1, WSLAY_CONNECTION_CLOSE,
                     "\x0f\xa2"
                     "bye",
                     5); /* 4002 */
    CHECK_EQ_INT(feed(&ws, &w, in, n, 0), 0);
    CHECK_EQ_INT(w.close_code, 4002);
    CHECK_EQ_INT(uc_ws_pump(&ws, &events, &w), 0);
    CHECK_EQ_INT(uc_ws_close_sent(&ws), 4002);
    CHECK(!uc_ws_reading(&ws));
    uc_ws_release(&ws);
}

TEST(refuses_a_one_byte_close_payload_with_1002_and_reports_no_close)
{
    struct uc_ws ws = {0};
    struct owner w = {0};
    uint8_t in[64];
    size_t n = frame(in, 0, 1, WSLAY_CONNECTION_CLOSE, "\x03", 1);
    CHECK_EQ_INT(feed(&ws, &w, in, n, 0), 1002);
    CHECK_EQ_INT(w.close_code, 0);
    uc_ws_release(&ws);
}

TEST(refuses_an_unmasked_frame_as_a_protocol_error)
{
    struct uc_ws ws = {0};
    struct owner w = {0};
    uint8_t in[] = {0x81, 0x01, 'x'};
    int verdict = feed(&ws, &w, in, sizeof in, 0);
    CHECK_EQ_INT(uc_ws_pump(&ws, &events, &w), 0);
    CHECK(verdict == 1002 || uc_ws_close_sent(&ws) == 1002);
    CHECK_EQ_INT(w.nmessages, 0);
    uc_ws_release(&ws);
}

TEST(reads_whole_small_frames_itself_without_a_wslay_context)
{
    struct uc_ws ws = {0};
    struct owner w = {0};
    static uint8_t in[1024];
    char big[300];
    memset(big, 'b', sizeof big);
    size_t n = frame(in, 0, 1, WSLAY_TEXT_FRAME, "h\xc3\xa9llo", 6);
    n = frame(in, n, 1, WSLAY_BINARY_FRAME, big, sizeof big); /* a 16-bit length */
    n = frame(in, n, 1, WSLAY_TEXT_FRAME, "", 0);
    const char *why = NULL;
    int created = -1;
    CHECK_EQ_INT(uc_ws_feed(&ws, &limits, &events, &w, in, n, &why, &created), 0);
    CHECK_EQ_INT(created, 0);
    CHECK(!uc_ws_active(&ws));
    CHECK_EQ_INT(w.nmessages, 3);
    CHECK_MEM(w.messages[0], w.lens[0], "h\xc3\xa9llo");
    CHECK_EQ_INT(w.binary[0], 0);
    CHECK_EQ_INT(w.lens[1], 300);
    CHECK(memcmp(w.messages[1], big, 256) == 0);
    CHECK_EQ_INT(w.binary[1], 1);
    CHECK_EQ_INT(w.lens[2], 0);
    CHECK(!uc_ws_unfinished(&ws));
}

/* Unmasking goes sixteen, four and one byte at a time: every length comes out right. */
TEST(unmasks_a_whole_frame_of_every_length)
{
    for (size_t len = 0; len <= 70; len++) {
        struct uc_ws ws = {0};
        struct owner w = {0};
        uint8_t in[128];
        char text[80];
        for (size_t i = 0; i < len; i++)
            text[i] = (char)('a' + i % 26);
        size_t n = frame(in, 1, 1, WSLAY_TEXT_FRAME, text, len) - 1;
        CHECK_EQ_INT(feed(&ws, &w, in + 1, n, 0), 0); /* at an odd address, too */
        CHECK_EQ_INT(w.nmessages, 1);
        CHECK_EQ_INT(w.lens[0], len);
        CHECK(memcmp(w.messages[0], text, len) == 0);
    }
}

TEST(hands_a_frame_cut_by_the_read_to_wslay_after_the_whole_ones)
{
    struct uc_ws ws = {0};
    struct owner w = {0};
    uint8_t in[64];
    size_t n = frame(in, 0, 1, WSLAY_TEXT_FRAME, "one", 3);
    size_t first = n;
    n = frame(in, n, 1, WSLAY_TEXT_FRAME, "two", 3);
    CHECK_EQ_INT(feed(&ws, &w, in, first + 4, 0), 0);
    CHECK_EQ_INT(w.nmessages, 1);
    CHECK(uc_ws_unfinished(&ws));
    CHECK_EQ_INT(feed(&ws, &w, in + first + 4, n - first - 4, 0), 0);
    CHECK_EQ_INT(w.nmessages, 2);
    CHECK_MEM(w.messages[1], w.lens[1], "two");
    /* at a frame boundary again: the next whole frame needs no wslay */
    n = frame(in, 0, 1, WSLAY_BINARY_FRAME, "three", 5);
    CHECK_EQ_INT(feed(&ws, &w, in, n, 0), 0);
    CHECK_EQ_INT(w.nmessages, 3);
    CHECK_MEM(w.messages[2], w.lens[2], "three");
    uc_ws_release(&ws);
}

TEST(refuses_bad_utf8_in_a_whole_text_frame_with_1007_after_the_good_ones)
{
    struct uc_ws ws = {0};
    struct owner w = {0};
    uint8_t in[64];
    size_t n = frame(in, 0, 1, WSLAY_TEXT_FRAME, "fine", 4);
    n = frame(in, n, 1, WSLAY_TEXT_FRAME, "ok \xff", 4);
    feed(&ws, &w, in, n, 0);
    CHECK_EQ_INT(w.nmessages, 1);
    CHECK_EQ_INT(uc_ws_pump(&ws, &events, &w), 0);
    CHECK_EQ_INT(uc_ws_close_sent(&ws), 1007);
    uc_ws_release(&ws);
}

TEST(refuses_a_length_not_in_its_shortest_form_as_a_protocol_error)
{
    struct uc_ws ws = {0};
    struct owner w = {0};
    uint8_t in[] = {0x81, 0x80 | 126, 0, 2, 0, 0, 0, 0, 'h', 'i'};
    int verdict = feed(&ws, &w, in, sizeof in, 0);
    CHECK_EQ_INT(uc_ws_pump(&ws, &events, &w), 0);
    CHECK(verdict == 1002 || uc_ws_close_sent(&ws) == 1002);
    CHECK_EQ_INT(w.nmessages, 0);
    uc_ws_release(&ws);
}

TEST(a_write_the_owner_cannot_take_fails_the_pump)
{
    struct uc_ws ws = {0};
    struct owner w = {.refuse_writes = 1};
    uint8_t in[64];
    size_t n = frame(in, 0, 1, WSLAY_PING, "", 0);
    CHECK_EQ_INT(feed(&ws, &w, in, n, 0), 0);
    CHECK_EQ_INT(uc_ws_pump(&ws, &events, &w), -1);
    uc_ws_release(&ws);
}

int main(void)
{
    RUN(reassembles_fragments_with_a_ping_between_them_and_answers_the_ping);
    RUN(knows_a_message_is_unfinished_until_its_last_byte);
    RUN(closes_with_1007_for_utf8_split_badly_across_fragments);
    RUN(refuses_fragments_that_add_up_past_the_size_cap_with_1009);
    RUN(passes_one_fragment_per_byte_and_refuses_a_flood_of_empty_ones_with_1008);
    RUN(reports_the_peers_close_and_echoes_it);
    RUN(refuses_a_one_byte_close_payload_with_1002_and_reports_no_close);
    RUN(refuses_an_unmasked_frame_as_a_protocol_error);
    RUN(a_write_the_owner_cannot_take_fails_the_pump);
    RUN(reads_whole_small_frames_itself_without_a_wslay_context);
    RUN(unmasks_a_whole_frame_of_every_length);
    RUN(hands_a_frame_cut_by_the_read_to_wslay_after_the_whole_ones);
    RUN(refuses_bad_utf8_in_a_whole_text_frame_with_1007_after_the_good_ones);
    RUN(refuses_a_length_not_in_its_shortest_form_as_a_protocol_error);
    uc_outq_release_pool();
    return CHECK_SUMMARY("test_ws");
}

/* test_ws_frame.c -- server frame encoding: the three length forms, FIN, opcode, no mask. */
#include "../ws.h"

#include <stdlib.h>

#include "check.h"

TEST(encodes_a_short_text_frame)
{
    struct uc_buf *b = uc_ws_frame(WSLAY_TEXT_FRAME, "hi", 2);
    CHECK_EQ_INT(b->len, 4);
    CHECK(b->data[0] == 0x81 && b->data[1] == 2 && memcmp(b->data + 2, "hi", 2) == 0);
    uc_buf_unref(b);
}

TEST(encodes_a_16_bit_length)
{
    char payload[300] = {0};
    struct uc_buf *b = uc_ws_frame(WSLAY_BINARY_FRAME, payload, sizeof payload);
    CHECK_EQ_INT(b->len, 4 + 300);
    CHECK(b->data[0] == 0x82 && b->data[1] == 126 && b->data[2] == 1 && b->data[3] == 44);
    uc_buf_unref(b);
}

TEST(encodes_a_64_bit_length)
{
    size_t len = 70000;
    char *payload = calloc(1, len);
    struct uc_buf *b = uc_ws_frame(WSLAY_TEXT_FRAME, payload, len);
    CHECK_EQ_INT(b->len, 10 + len);
    CHECK(b->data[1] == 127);
    size_t decoded = 0;
    for (int i = 0; i < 8; i++)
        decoded = decoded << 8 | b->data[2 + i];
    CHECK_EQ_INT(decoded, len);
    uc_buf_unref(b);
    free(payload);
}

TEST(encodes_an_empty_frame)
{
    struct uc_buf *b = uc_ws_frame(WSLAY_TEXT_FRAME, NULL, 0);
    CHECK_EQ_INT(b->len, 2);
    CHECK(b->data[1] == 0);
    uc_buf_unref(b);
}

int main(void)
{
    RUN(encodes_a_short_text_frame);
    RUN(encodes_a_16_bit_length);
    RUN(encodes_a_64_bit_length);
    RUN(encodes_an_empty_frame);
    return CHECK_SUMMARY("test_ws_frame");
}

/* split_reads.c -- libFuzzer target: a request head and the frames behind it, delivered in
 * several reads split where the fuzzer chooses, so the handshake's buffering path (a head that
 * arrives in parts, frames in the same read as its last part) is exercised as well as the
 * frame parser's resumption in the middle of a header or payload.
 *
 * Input: byte 0 = number of cuts (low 3 bits) and whether the input carries its own head
 * (bit 3); then one byte per cut, each the length of the piece before it (1..256); the rest is
 * the stream, behind the fixed handshake unless it carries its own. */
#include "harness.h"

static const char handshake[] = "GET /?fuzzer HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                                "Connection: Upgrade\r\n"
                                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                                "Sec-WebSocket-Version: 13\r\n\r\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int ncuts = data[0] & 7, own_head = data[0] & 8;
    if (size < 1 + (size_t)ncuts)
        return 0;
    size_t cuts[8], at = 0;
    for (int i = 0; i < ncuts; i++) {
        at += (size_t)data[1 + i] + 1;
        cuts[i] = at;
    }
    const uint8_t *body = data + 1 + ncuts;
    size_t body_len = size - 1 - (size_t)ncuts;
    size_t head_len = own_head ? 0 : sizeof handshake - 1;
    uint8_t *stream = malloc(head_len + body_len + 1);
    memcpy(stream, handshake, head_len);
    if (body_len)
        memcpy(stream + head_len, body, body_len);

    struct uc_server *srv = fuzz_server();
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) != 0)
        abort();
    uc_server_adopt(srv, sv[0], "fuzz:0");
    fuzz_drive_split(srv, sv[1], stream, head_len + body_len, cuts, ncuts);
    free(stream);
    return 0;
}

/* ws_frames.c -- libFuzzer target: frames after a good handshake, through wslay, the UTF-8,
 * size and fragment checks, the C policy's deliveries and the close handshake. The input may
 * also begin with its own request head: the first byte chooses. */
#include "harness.h"

static const char handshake[] = "GET /?fuzzer HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                                "Connection: Upgrade\r\n"
                                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                                "Sec-WebSocket-Version: 13\r\n\r\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct uc_server *srv = fuzz_server();
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) != 0)
        abort();
    uc_server_adopt(srv, sv[0], "fuzz:0");
    /* An odd first byte means "the input is the whole stream, head included". */
    if (size > 0 && (data[0] & 1)) {
        fuzz_drive(srv, sv[1], data + 1, size - 1);
        return 0;
    }
    uint8_t *stream = malloc(sizeof handshake - 1 + size);
    memcpy(stream, handshake, sizeof handshake - 1);
    if (size > 1)
        memcpy(stream + sizeof handshake - 1, data + 1, size - 1);
    fuzz_drive(srv, sv[1], stream, sizeof handshake - 1 + (size ? size - 1 : 0));
    free(stream);
    return 0;
}

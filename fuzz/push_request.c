/* push_request.c -- libFuzzer target: bytes from a push API client, through http-parser, the
 * routing, the deliveries and the responses, on a real server loop. */
#include "harness.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct uc_server *srv = fuzz_server();
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) != 0)
        abort();
    uc_push_adopt(fuzz_push, sv[0]);
    fuzz_drive(srv, sv[1], data, size);
    return 0;
}

/* http_head.c -- libFuzzer target: the request-head parser and the RFC 6455 upgrade check. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../core/http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* The parser lower-cases header names in place, so it gets a writable copy. */
    char *buf = malloc(size ? size : 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    struct uc_http_request req;
    long n = uc_http_parse_head(buf, size, &req);
    if (n > 0) {
        if ((size_t)n > size)
            abort(); /* the head can never be longer than the input */
        char accept[29];
        uc_http_check_upgrade(&req, accept);
        char value[64];
        size_t len = 0;
        if (uc_http_query_param(req.query, req.query_len, "uid", value, sizeof value, &len) == 1 &&
            len > sizeof value)
            abort(); /* a decoded value never passes its buffer */
    }
    free(buf);
    return 0;
}

/* test_http.c -- request-head parsing and the RFC 6455 upgrade check. */
#include "../http.h"

#include <stdlib.h>

#include "check.h"

#define GOOD_UPGRADE                                                                               \
    "GET /chat?room=a%20b HTTP/1.1\r\n"                                                            \
    "Host: server.example.com\r\n"                                                                 \
    "Upgrade: websocket\r\n"                                                                       \
    "Connection: Upgrade\r\n"                                                                      \
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"                                              \
    "Sec-WebSocket-Version: 13\r\n\r\n"

static long parse(const char *text, struct uc_http_request *req, char **copy)
{
    *copy = strdup(text);
    return uc_http_parse_head(*copy, strlen(text), req);
}

TEST(parses_a_complete_head_and_reports_its_length)
{
    struct uc_http_request req;
    char *buf;
    long n = parse(GOOD_UPGRADE "\x81\x85", &req, &buf);
    CHECK_EQ_INT(n, (long)strlen(GOOD_UPGRADE));
    CHECK_MEM(req.path, req.path_len, "/chat");
    CHECK_MEM(req.query, req.query_len, "room=a%20b");
    CHECK_EQ_INT(req.nheaders, 5);
    size_t len;
    const char *v = uc_http_header_get(&req, "sec-websocket-version", &len);
    CHECK(v && len == 2 && memcmp(v, "13", 2) == 0);
    free(buf);
}

TEST(asks_for_more_bytes_until_the_head_is_complete)
{
    struct uc_http_request req;
    char *buf;
    CHECK_EQ_INT(parse("GET / HTTP/1.1\r\nHost: x\r\n", &req, &buf), 0);
    free(buf);
}

TEST(refuses_garbage_with_400)
{
    struct uc_http_request req;
    char *buf;
    CHECK_EQ_INT(parse("\x16\x03\x01 hello\r\n\r\n", &req, &buf), -400);
    free(buf);
}

TEST(refuses_a_head_over_8_kib_with_431)
{
    size_t size = UC_HTTP_MAX_HEAD + 100;
    char *big = malloc(size);
    memset(big, 'a', size);
    memcpy(big, "GET / HTTP/1.1\r\nX: ", 19);
    struct uc_http_request req;
    CHECK_EQ_INT(uc_http_parse_head(big, size, &req), -431);
    free(big);
}

TEST(accepts_the_rfc_example_and_computes_its_accept_key)
{
    struct uc_http_request req;
    char *buf;
    parse(GOOD_UPGRADE, &req, &buf);
    char accept[29];
    CHECK_EQ_INT(uc_http_check_upgrade(&req, accept), 0);
    CHECK(strcmp(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") == 0);
    free(buf);
}

static int check_text(const char *text)
{
    struct uc_http_request req;
    char *buf;
    char accept[29];
    long n = parse(text, &req, &buf);
    int status = n > 0 ? uc_http_check_upgrade(&req, accept) : (int)-n;
    free(buf);
    return status;
}

TEST(answers_a_plain_get_with_426)
{
    CHECK_EQ_INT(check_text("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), 426);
}

TEST(answers_version_8_with_426)
{
    CHECK_EQ_INT(check_text("GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                            "Sec-WebSocket-Version: 8\r\n\r\n"),
                 426);
}

TEST(answers_a_short_key_with_400)
{
    CHECK_EQ_INT(check_text("GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                            "Connection: Upgrade\r\nSec-WebSocket-Key: YWJj\r\n"
                            "Sec-WebSocket-Version: 13\r\n\r\n"),
                 400);
}

TEST(answers_a_post_with_400)
{
    CHECK_EQ_INT(check_text("POST / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                            "Sec-WebSocket-Version: 13\r\nContent-Length: 0\r\n\r\n"),
                 400);
}

TEST(finds_tokens_in_comma_lists_case_insensitively)
{
    const char *v = "keep-alive ,  UPGRADE";
    CHECK(uc_http_has_token(v, strlen(v), "upgrade"));
    CHECK(!uc_http_has_token(v, strlen(v), "close"));
    CHECK(!uc_http_has_token("upgraded", 8, "upgrade"));
}

TEST(decodes_query_parameters)
{
    const char *q = "a=1&uid=al%69ce+x&bad=%zz&empty=";
    char out[32];
    size_t len = 0;
    CHECK_EQ_INT(uc_http_query_param(q, strlen(q), "uid", out, sizeof out, &len), 1);
    CHECK_EQ_INT(len, 7);
    CHECK(memcmp(out, "alice x", 7) == 0);
    CHECK_EQ_INT(uc_http_query_param(q, strlen(q), "missing", out, sizeof out, &len), 0);
    CHECK_EQ_INT(uc_http_query_param(q, strlen(q), "bad", out, sizeof out, &len), UC_ERR_PARSE);
    CHECK_EQ_INT(uc_http_query_param(q, strlen(q), "empty", out, sizeof out, &len), 1);
    CHECK_EQ_INT(len, 0);
    CHECK_EQ_INT(uc_http_query_param(q, strlen(q), "uid", out, 3, &len), UC_ERR_OVERFLOW);
}

TEST(iterates_query_pairs_skipping_empty_ones)
{
    const char *q = "a=1&&flag&b=";
    size_t pos = 0, nl, vl;
    const char *n, *v;
    CHECK(uc_http_query_next(q, strlen(q), &pos, &n, &nl, &v, &vl));
    CHECK(nl == 1 && n[0] == 'a' && vl == 1 && v[0] == '1');
    CHECK(uc_http_query_next(q, strlen(q), &pos, &n, &nl, &v, &vl));
    CHECK(nl == 4 && memcmp(n, "flag", 4) == 0 && vl == 0);
    CHECK(uc_http_query_next(q, strlen(q), &pos, &n, &nl, &v, &vl));
    CHECK(nl == 1 && n[0] == 'b' && vl == 0);
    CHECK(!uc_http_query_next(q, strlen(q), &pos, &n, &nl, &v, &vl));
    pos = 0;
    CHECK(!uc_http_query_next(NULL, 0, &pos, &n, &nl, &v, &vl));
}

TEST(refuses_a_truncated_escape)
{
    char out[8];
    CHECK_EQ_INT(uc_http_url_decode("ab%4", 4, out, sizeof out), UC_ERR_PARSE);
    CHECK_EQ_INT(uc_http_url_decode("%", 1, out, sizeof out), UC_ERR_PARSE);
}

TEST(builds_a_response_with_length_and_connection_close)
{
    struct uc_buf *b = uc_http_response(404, NULL, "application/json", "{}", 2, 0);
    const char *expected = "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n"
                           "Content-Length: 2\r\nConnection: close\r\n\r\n{}";
    CHECK_MEM(b->data, b->len, expected);
    uc_buf_unref(b);
}

int main(void)
{
    RUN(parses_a_complete_head_and_reports_its_length);
    RUN(asks_for_more_bytes_until_the_head_is_complete);
    RUN(refuses_garbage_with_400);
    RUN(refuses_a_head_over_8_kib_with_431);
    RUN(accepts_the_rfc_example_and_computes_its_accept_key);
    RUN(answers_a_plain_get_with_426);
    RUN(answers_version_8_with_426);
    RUN(answers_a_short_key_with_400);
    RUN(answers_a_post_with_400);
    RUN(finds_tokens_in_comma_lists_case_insensitively);
    RUN(decodes_query_parameters);
    RUN(iterates_query_pairs_skipping_empty_ones);
    RUN(refuses_a_truncated_escape);
    RUN(builds_a_response_with_length_and_connection_close);
    return CHECK_SUMMARY("test_http");
}

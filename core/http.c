/* http.c -- request heads via http-parser, the RFC 6455 upgrade check and canned responses.
 *
 * The whole head is parsed from one contiguous buffer, so each header name and value arrives
 * in a single http-parser callback and can be kept as a pointer into that buffer: no copies,
 * no per-header allocation. The caller re-parses from the start when more bytes arrive;
 * a head is at most 8 KiB, and almost always arrives in one read. */
#include "http.h"
#include "str.h"

#include <ctype.h>
#include <http_parser.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

struct head_parse {
    struct uc_http_request *req;
    const char *url;
    size_t url_len;
    int last_was_value;
    int too_many;
    int complete;
};

static int on_url(http_parser *p, const char *at, size_t len)
{
    struct head_parse *hp = p->data;
    if (!hp->url)
        hp->url = at;
    hp->url_len = (size_t)(at + len - hp->url);
    return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    struct head_parse *hp = p->data;
    struct uc_http_request *req = hp->req;
    if (hp->last_was_value || req->nheaders == 0) {
        if (req->nheaders == UC_HTTP_MAX_HEADERS) {
            hp->too_many = 1;
            return 1;
        }
        struct uc_http_header *h = &req->headers[req->nheaders++];
        h->name = at;
        h->name_len = len;
        h->value = "";
        h->value_len = 0;
        hp->last_was_value = 0;
    } else {
        struct uc_http_header *h = &req->headers[req->nheaders - 1];
        h->name_len = (size_t)(at + len - h->name);
    }
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    struct head_parse *hp = p->data;
    struct uc_http_header *h = &hp->req->headers[hp->req->nheaders - 1];
    if (!hp->last_was_value) {
        h->value = at;
        h->value_len = len;
        hp->last_was_value = 1;
    } else {
        h->value_len = (size_t)(at + len - h->value);
    }
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    struct head_parse *hp = p->data;
    hp->complete = 1;
    /* Stop right after the head: the caller reads a body (push API) or frames (WebSocket). */
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings head_settings = {
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
};

static void trim(const char **s, size_t *len)
{
    while (*len && (**s == ' ' || **s == '\t')) {
        (*s)++;
        (*len)--;
    }
    while (*len && ((*s)[*len - 1] == ' ' || (*s)[*len - 1] == '\t'))
        (*len)--;
}

long uc_http_parse_head(char *buf, size_t len, struct uc_http_request *req)
{
    memset(req, 0, offsetof(struct uc_http_request, headers));
    req->nheaders = 0;
    struct head_parse hp = {.req = req};
    http_parser parser;
    http_parser_init(&parser, HTTP_REQUEST);
    parser.data = &hp;
    size_t limit = len < UC_HTTP_MAX_HEAD ? len : UC_HTTP_MAX_HEAD;
    size_t n = http_parser_execute(&parser, &head_settings, buf, limit);

    if (hp.too_many)
        return -431;
    if (!hp.complete) {
        if (HTTP_PARSER_ERRNO(&parser) != HPE_OK)
            return -400;
        return len >= UC_HTTP_MAX_HEAD ? -431 : 0;
    }
    /* When paused inside on_headers_complete, http-parser reports the position of the final
     * LF; the head ends one byte later. */
    size_t head_len = n;
    if (head_len < limit && buf[head_len] == '\n')
        head_len++;

    req->method = parser.method;
    req->http_major = parser.http_major;
    req->http_minor = parser.http_minor;
    req->chunked = (parser.flags & F_CHUNKED) != 0;
    req->content_length =
        parser.content_length == ULLONG_MAX ? 0 : (unsigned long long)parser.content_length;
    req->has_body = req->chunked || req->content_length > 0;
    req->keep_alive = http_should_keep_alive(&parser);

    for (size_t i = 0; i < req->nheaders; i++) {
        struct uc_http_header *h = &req->headers[i];
        char *name = (char *)h->name;
        for (size_t k = 0; k < h->name_len; k++)
            name[k] = uc_lower(name[k]);
        trim(&h->value, &h->value_len);
    }

    struct http_parser_url u;
    http_parser_url_init(&u);
    if (!hp.url || http_parser_parse_url(hp.url, hp.url_len, 0, &u) != 0)
        return -400;
    if (u.field_set & (1 << UF_PATH)) {
        req->path = hp.url + u.field_data[UF_PATH].off;
        req->path_len = u.field_data[UF_PATH].len;
    } else {
        req->path = "/";
        req->path_len = 1;
    }
    if (u.field_set & (1 << UF_QUERY)) {
        req->query = hp.url + u.field_data[UF_QUERY].off;
        req->query_len = u.field_data[UF_QUERY].len;
    }
    return (long)head_len;
}

const char *uc_http_header_get(const struct uc_http_request *req, const char *name, size_t *len)
{
    size_t name_len = strlen(name);
    for (size_t i = 0; i < req->nheaders; i++) {
        const struct uc_http_header *h = &req->headers[i];
        if (h->name_len == name_len && memcmp(h->name, name, name_len) == 0) {
            *len = h->value_len;
            return h->value;
        }
    }
    *len = 0;
    return NULL;
}

static size_t header_count(const struct uc_http_request *req, const char *name)
{
    size_t name_len = strlen(name), count = 0;
    for (size_t i = 0; i < req->nheaders; i++)
        if (req->headers[i].name_len == name_len &&
            memcmp(req->headers[i].name, name, name_len) == 0)
            count++;
    return count;
}

int uc_http_has_token(const char *value, size_t len, const char *token)
{
    size_t token_len = strlen(token);
    size_t i = 0;
    while (i < len) {
        size_t start = i;
        while (i < len && value[i] != ',')
            i++;
        const char *item = value + start;
        size_t item_len = i - start;
        trim(&item, &item_len);
        if (item_len == token_len && strncasecmp(item, token, token_len) == 0)
            return 1;
        i++; /* skip the comma */
    }
    return 0;
}

int uc_http_check_upgrade(const struct uc_http_request *req, char accept[29])
{
    size_t len;
    const char *v;

    if (req->method != HTTP_GET || req->has_body)
        return 400;
    if (req->http_major != 1 || req->http_minor < 1)
        return 400;
    if (!uc_http_header_get(req, "host", &len))
        return 400;
    v = uc_http_header_get(req, "upgrade", &len);
    if (!v)
        return 426; /* a plain GET: tell the client this endpoint speaks WebSocket only */
    if (!uc_http_has_token(v, len, "websocket"))
        return 400;
    v = uc_http_header_get(req, "connection", &len);
    if (!v || !uc_http_has_token(v, len, "upgrade"))
        return 400;
    v = uc_http_header_get(req, "sec-websocket-version", &len);
    if (!v || len != 2 || memcmp(v, "13", 2) != 0)
        return 426;
    if (header_count(req, "sec-websocket-key") != 1)
        return 400;
    v = uc_http_header_get(req, "sec-websocket-key", &len);
    /* 16 random bytes in base64 are always 24 characters ending in "==". */
    if (len != 24 || v[22] != '=' || v[23] != '=')
        return 400;
    unsigned char raw[20];
    if (EVP_DecodeBlock(raw, (const unsigned char *)v, 24) != 18)
        return 400;
    uc_http_accept_key(v, len, accept);
    return 0;
}

void uc_http_accept_key(const char *key, size_t key_len, char out[29])
{
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    unsigned char digest[SHA_DIGEST_LENGTH];
    char joined[64 + sizeof guid];
    if (key_len > 64)
        key_len = 64; /* callers pass the validated 24-byte key; never overrun on misuse */
    memcpy(joined, key, key_len);
    memcpy(joined + key_len, guid, sizeof guid - 1);
    SHA1((const unsigned char *)joined, key_len + sizeof guid - 1, digest);
    EVP_EncodeBlock((unsigned char *)out, digest, SHA_DIGEST_LENGTH);
}

const char *uc_http_reason(int status)
{
    switch (status) {
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Payload Too Large";
    case 414: return "URI Too Long";
    case 426: return "Upgrade Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return "Error";
    }
}

struct uc_buf *uc_http_response_101(const char accept[29], const char *protocol)
{
    char head[224];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 101 Switching Protocols\r\n"
                     "Upgrade: websocket\r\n"
                     "Connection: Upgrade\r\n"
                     "Sec-WebSocket-Accept: %s\r\n%s%s%s\r\n",
                     accept, protocol ? "Sec-WebSocket-Protocol: " : "", protocol ? protocol : "",
                     protocol ? "\r\n" : "");
    if (n < 0 || (size_t)n >= sizeof head)
        return NULL;
    return uc_buf_new_copy(head, (size_t)n);
}

struct uc_buf *uc_http_response(int status, const char *extra_headers, const char *content_type,
                                const char *body, size_t body_len, int keep_alive)
{
    return uc_http_response_sized(status, extra_headers, content_type, body_len, body, body_len,
                                  keep_alive);
}

struct uc_buf *uc_http_response_sized(int status, const char *extra_headers,
                                      const char *content_type, size_t length, const char *body,
                                      size_t body_len, int keep_alive)
{
    char head[1024];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d %s\r\n%sContent-Type: %s\r\nContent-Length: %zu\r\n%s\r\n",
                     status, uc_http_reason(status), extra_headers ? extra_headers : "",
                     content_type, length, keep_alive ? "" : "Connection: close\r\n");
    if (n < 0 || (size_t)n >= sizeof head)
        return NULL;
    struct uc_buf *b = uc_buf_new((size_t)n + body_len);
    if (!b)
        return NULL;
    memcpy(b->data, head, (size_t)n);
    if (body_len)
        memcpy(b->data + n, body, body_len);
    return b;
}

static int hex_value(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = uc_lower((char)c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

long uc_http_url_decode(const char *src, size_t src_len, char *dst, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < src_len; i++, o++) {
        if (o == cap)
            return UC_ERR_OVERFLOW;
        if (src[i] == '%') {
            if (i + 2 >= src_len)
                return UC_ERR_PARSE;
            int hi = hex_value((unsigned char)src[i + 1]);
            int lo = hex_value((unsigned char)src[i + 2]);
            if (hi < 0 || lo < 0)
                return UC_ERR_PARSE;
            dst[o] = (char)(hi << 4 | lo);
            i += 2;
        } else {
            dst[o] = src[i] == '+' ? ' ' : src[i];
        }
    }
    return (long)o;
}

int uc_http_query_next(const char *query, size_t query_len, size_t *pos, const char **name,
                       size_t *name_len, const char **value, size_t *value_len)
{
    while (query && *pos < query_len) {
        const char *pair = query + *pos;
        const char *amp = memchr(pair, '&', query_len - *pos);
        size_t pair_len = amp ? (size_t)(amp - pair) : query_len - *pos;
        *pos += pair_len + 1;
        if (pair_len == 0)
            continue;
        const char *eq = memchr(pair, '=', pair_len);
        *name = pair;
        *name_len = eq ? (size_t)(eq - pair) : pair_len;
        *value = eq ? eq + 1 : pair + pair_len;
        *value_len = eq ? pair_len - *name_len - 1 : 0;
        return 1;
    }
    return 0;
}

int uc_http_query_param(const char *query, size_t query_len, const char *name, char *dst,
                        size_t cap, size_t *len)
{
    size_t want = strlen(name), pos = 0, name_len, value_len;
    const char *n, *v;
    while (uc_http_query_next(query, query_len, &pos, &n, &name_len, &v, &value_len)) {
        if (name_len == want && memcmp(n, name, want) == 0) {
            long decoded = uc_http_url_decode(v, value_len, dst, cap);
            if (decoded < 0)
                return (int)decoded;
            *len = (size_t)decoded;
            return 1;
        }
    }
    return 0;
}

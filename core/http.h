/* http.h -- HTTP/1.1 request heads (parsed with http-parser) and the RFC 6455 upgrade check.
 *
 * Pure functions over caller-owned bytes: no sockets, no allocation except the response
 * buffers they return, so the fuzzer and the unit tests drive them directly. */
#ifndef UC_HTTP_H
#define UC_HTTP_H

#include <stddef.h>

#include "buf.h"
#include "err.h"

/* A request head larger than this is refused with 431. */
#define UC_HTTP_MAX_HEAD 8192
/* More header lines than this are refused with 431. */
#define UC_HTTP_MAX_HEADERS 64

struct uc_http_header {
    const char *name; /* lower-cased in place */
    size_t name_len;
    const char *value; /* surrounding white space trimmed */
    size_t value_len;
};

struct uc_http_request {
    int method; /* enum http_method */
    unsigned short http_major, http_minor;
    const char *path; /* the URL path, without the query */
    size_t path_len;
    const char *query; /* the raw query string after '?', or NULL */
    size_t query_len;
    int has_body; /* a Content-Length > 0 or chunked body follows the head */
    unsigned long long content_length;
    int chunked;
    int keep_alive;
    struct uc_http_header headers[UC_HTTP_MAX_HEADERS];
    size_t nheaders;
};

/* Parses one request head at the start of buf, which must be writable: header names are
 * lower-cased in place and req points into buf (it borrows buf for as long as req is used).
 * Returns the length of the head (the first byte after it is buf[ret]) when complete,
 * 0 when more bytes are needed, or -status (-400, -431) when the bytes can never make a
 * valid request. A body is not consumed: see req->has_body. */
long uc_http_parse_head(char *buf, size_t len, struct uc_http_request *req);

/* The value of the first header called name (lower case), or NULL; *len gets its length. */
const char *uc_http_header_get(const struct uc_http_request *req, const char *name, size_t *len);

/* 1 when the comma-separated header value holds token (case-insensitive), else 0. */
int uc_http_has_token(const char *value, size_t len, const char *token);

/* Checks an upgrade request per RFC 6455 section 4.2.1. Returns 0 and fills accept (the
 * Sec-WebSocket-Accept value, NUL-terminated) when it is valid, else the HTTP status to
 * answer: 400, or 426 when the version is not 13 or the request is not an upgrade at all. */
int uc_http_check_upgrade(const struct uc_http_request *req, char accept[29]);

/* Sec-WebSocket-Accept for key: base64(SHA-1(key + GUID)), NUL-terminated in out. */
void uc_http_accept_key(const char *key, size_t key_len, char out[29]);

/* The canonical reason phrase for status ("Bad Request"), or "Error". */
const char *uc_http_reason(int status);

/* "HTTP/1.1 101 Switching Protocols" with the accept key, and the subprotocol chosen (or
 * NULL). NULL when out of memory. */
struct uc_buf *uc_http_response_101(const char accept[29], const char *protocol);

/* A complete response: status line, the given extra header lines (each ending in CRLF, or
 * NULL), Content-Type, Content-Length and the body. keep_alive 0 adds "Connection: close".
 * NULL when out of memory. */
struct uc_buf *uc_http_response(int status, const char *extra_headers, const char *content_type,
                                const char *body, size_t body_len, int keep_alive);
/* The same with a Content-Length of length over a body of body_len bytes: a HEAD or 304
 * answer says the length GET would send, and sends no body. */
struct uc_buf *uc_http_response_sized(int status, const char *extra_headers,
                                      const char *content_type, size_t length, const char *body,
                                      size_t body_len, int keep_alive);

/* Decodes a %-escaped query component (also '+' as space) from src into dst (capacity cap).
 * Returns the decoded length, UC_ERR_PARSE for a malformed escape, or UC_ERR_OVERFLOW when it
 * does not fit in cap. */
long uc_http_url_decode(const char *src, size_t src_len, char *dst, size_t cap);

/* Iterates the name=value pairs of a raw query string: *pos starts at 0; each call returns 1
 * with the raw (still %-encoded) name and value, or 0 at the end. A pair without '=' has an
 * empty value; empty pairs ("a&&b") are skipped. */
int uc_http_query_next(const char *query, size_t query_len, size_t *pos, const char **name,
                       size_t *name_len, const char **value, size_t *value_len);

/* Finds parameter name in a raw query string and decodes its value into dst (capacity cap),
 * its length into *len. Returns 1 found, 0 absent, UC_ERR_PARSE (a malformed escape) or
 * UC_ERR_OVERFLOW (longer than cap). */
int uc_http_query_param(const char *query, size_t query_len, const char *name, char *dst,
                        size_t cap, size_t *len);

#endif

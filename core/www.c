/* www.c -- static files for a plain GET on the WebSocket port (--www DIR; see www.h).
 *
 * Only regular files inside the directory are served: the path is %-decoded, refused when it
 * holds a NUL byte or a "." or ".." segment or a dotfile, and the file's real path (symlinks
 * resolved) must still lie inside the directory's. Answers revalidate by ETag (size and
 * modification time), so a browser asks again each time and gets 304 while nothing changed. */
#include "www.h"

#include <errno.h>
#include <fcntl.h>
#include <http_parser.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "http.h"

#define WWW_MAX_FILE (16u << 20) /* larger files are not what this is for: 404 */

struct uc_www {
    char root[PATH_MAX]; /* the directory's real path */
    size_t root_len;
};

struct uc_www *uc_www_open(const char *dir, char *err, size_t err_size)
{
    struct uc_www *w = calloc(1, sizeof *w);
    struct stat st;
    if (!w) {
        snprintf(err, err_size, "out of memory");
        return NULL;
    }
    if (!realpath(dir, w->root) || stat(w->root, &st) != 0 || !S_ISDIR(st.st_mode)) {
        snprintf(err, err_size, "--www '%s': %s", dir,
                 errno && !S_ISDIR(st.st_mode) ? strerror(errno) : "not a directory");
        free(w);
        return NULL;
    }
    w->root_len = strlen(w->root);
    return w;
}

void uc_www_free(struct uc_www *w) { free(w); }

static const char *content_type(const char *path)
{
    static const struct {
        const char *ext, *type;
    } types[] = {
        {".html", "text/html; charset=utf-8"},
        {".js", "text/javascript; charset=utf-8"},
        {".mjs", "text/javascript; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},
        {".json", "application/json"},
        {".svg", "image/svg+xml"},
        {".png", "image/png"},
        {".ico", "image/x-icon"},
        {".txt", "text/plain; charset=utf-8"},
    };
    const char *dot = strrchr(path, '.');
    for (size_t i = 0; dot && i < sizeof types / sizeof types[0]; i++)
        if (strcmp(dot, types[i].ext) == 0)
            return types[i].type;
    return "application/octet-stream";
}

/* The decoded path relative to the root ("index.html" for a directory), or -1 when it must not
 * be served: malformed, a NUL byte, a "." or ".." segment, a dotfile. */
static int relative_path(const struct uc_http_request *req, char *out, size_t cap)
{
    long n = uc_http_url_decode(req->path, req->path_len, out, cap - 16);
    if (n < 1 || out[0] != '/' || memchr(out, '\0', (size_t)n))
        return -1;
    out[n] = '\0';
    for (const char *seg = out; seg; seg = strchr(seg + 1, '/'))
        if (seg[1] == '.')
            return -1; /* ".", "..", ".git", ".env": none of them */
    if (out[n - 1] == '/')
        memcpy(out + n, "index.html", 11);
    memmove(out, out + 1, strlen(out)); /* drop the leading '/' */
    return 0;
}

static struct uc_buf *plain(int status, const char *extra, const char *text, int *status_out)
{
    *status_out = status;
    return uc_http_response(status, extra, "text/plain; charset=utf-8", text, strlen(text), 0);
}

static struct uc_buf *not_found(int *status) { return plain(404, NULL, "not found\n", status); }

/* Reads the whole regular file at path, when it is one and small enough. */
static char *read_file(const char *path, struct stat *st)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return NULL;
    char *data = NULL;
    if (fstat(fd, st) == 0 && S_ISREG(st->st_mode) && (size_t)st->st_size <= WWW_MAX_FILE &&
        (data = malloc((size_t)st->st_size + 1))) {
        size_t got = 0;
        while (got < (size_t)st->st_size) {
            ssize_t r = read(fd, data + got, (size_t)st->st_size - got);
            if (r <= 0) {
                free(data);
                data = NULL;
                break;
            }
            got += (size_t)r;
        }
    }
    close(fd);
    return data;
}

struct uc_buf *uc_www_respond(const struct uc_www *w, const struct uc_http_request *req,
                              int *status)
{
    if (req->method != HTTP_GET && req->method != HTTP_HEAD)
        return plain(405, "Allow: GET, HEAD\r\n", "GET or HEAD only\n", status);
    char rel[PATH_MAX], full[PATH_MAX + 2], real[PATH_MAX];
    if (relative_path(req, rel, sizeof rel) != 0 ||
        (size_t)snprintf(full, sizeof full, "%s/%s", w->root, rel) >= sizeof full ||
        !realpath(full, real) || strncmp(real, w->root, w->root_len) != 0 ||
        real[w->root_len] != '/')
        return not_found(status); /* missing, or outside the directory once symlinks resolve */
    struct stat st;
    char *data = read_file(real, &st);
    if (!data)
        return not_found(status);
    char etag[64], date[64], headers[512];
    snprintf(etag, sizeof etag, "\"%llx-%llx\"", (unsigned long long)st.st_size,
             (unsigned long long)st.st_mtim.tv_sec * 1000000000ull +
                 (unsigned long long)st.st_mtim.tv_nsec);
    struct tm tm;
    strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", gmtime_r(&st.st_mtime, &tm));
    snprintf(headers, sizeof headers,
             "ETag: %s\r\nLast-Modified: %s\r\nCache-Control: no-cache\r\n"
             "X-Content-Type-Options: nosniff\r\n",
             etag, date);
    size_t len;
    const char *match = uc_http_header_get(req, "if-none-match", &len);
    struct uc_buf *b;
    const char *type = content_type(real);
    if (match && len == strlen(etag) && memcmp(match, etag, len) == 0) {
        *status = 304;
        b = uc_http_response_sized(304, headers, type, 0, NULL, 0, 0);
    } else {
        *status = 200;
        b = uc_http_response_sized(200, headers, type, (size_t)st.st_size, data,
                                   req->method == HTTP_HEAD ? 0 : (size_t)st.st_size, 0);
    }
    free(data);
    return b;
}

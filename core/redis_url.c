/* redis_url.c -- --redis URLs and the shard of a key (see redis_url.h). */
#include "redis_url.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int url_error(char *err, size_t err_size, const char *url, size_t len, const char *why)
{
    snprintf(err, err_size,
             "--redis '%.*s': %s; expected redis://[[USER]:PASSWORD@]HOST[:PORT][/DB] or "
             "sentinel://[[USER]:PASSWORD@]HOST[:PORT][,HOST[:PORT]...]/MASTER[/DB]",
             (int)len, url, why);
    return -1;
}

/* HOST[:PORT] or [IPV6][:PORT], NUL-terminated and written over, into a; NULL, or what is
 * wrong. */
static const char *parse_hostport(char *s, int default_port, struct uc_redis_addr *a)
{
    char *port = NULL;
    if (s[0] == '[') {
        char *close = strchr(s, ']');
        if (!close || (close[1] && close[1] != ':'))
            return "an IPv6 address goes in brackets: [ADDRESS]:PORT";
        *close = '\0';
        port = close[1] ? close + 2 : NULL;
        s++;
    } else if ((port = strrchr(s, ':'))) {
        *port++ = '\0';
    }
    size_t len = strlen(s);
    if (!len)
        return "no host";
    if (len >= sizeof a->host)
        return "host too long";
    memcpy(a->host, s, len + 1);
    a->port = default_port;
    if (port) {
        char *end;
        long n = strtol(port, &end, 10);
        if (!port[0] || *end || n < 1 || n > 65535)
            return "the port must be 1 to 65535";
        a->port = (int)n;
    }
    return NULL;
}

/* /DB: a number, or nothing. */
static int parse_db(const char *s, long *db)
{
    char *end;
    *db = s[0] ? strtol(s, &end, 10) : 0;
    return s[0] && (*end || *db < 0 || *db > 1000000) ? -1 : 0;
}

const char *uc_redis_url_next(const char **p, size_t *len)
{
    const char *url = *p + strspn(*p, " \t\n");
    *len = strcspn(url, " \t\n");
    *p = url + *len;
    return *len ? url : NULL;
}

int uc_redis_url_parse(const char *url, size_t len, struct uc_redis_url *out, char *err,
                       size_t err_size)
{
    static const char redis_scheme[] = "redis://", sentinel_scheme[] = "sentinel://";
    *out = (struct uc_redis_url){0};
    int sentinel = 0;
    size_t skip;
    if (len >= sizeof redis_scheme - 1 && !memcmp(url, redis_scheme, sizeof redis_scheme - 1))
        skip = sizeof redis_scheme - 1;
    else if (len >= sizeof sentinel_scheme - 1 &&
             !memcmp(url, sentinel_scheme, sizeof sentinel_scheme - 1))
        skip = sizeof sentinel_scheme - 1, sentinel = 1;
    else
        return url_error(err, err_size, url, len, "not a redis:// or sentinel:// URL");
    char rest[1024];
    if (len - skip >= sizeof rest)
        return url_error(err, err_size, url, len, "too long");
    memcpy(rest, url + skip, len - skip);
    rest[len - skip] = '\0';
    char *hosts = rest, *at = strrchr(rest, '@');
    const char *why = NULL;
    if (at) {
        *at = '\0';
        char *colon = strchr(rest, ':');
        if (!colon) {
            why = "credentials need a ':' before the password";
            goto fail;
        }
        *colon = '\0';
        if (colon > rest)
            out->user = strdup(rest);
        out->password = strdup(colon + 1);
        hosts = at + 1;
    }
    char *path = strchr(hosts, '/');
    if (path)
        *path++ = '\0';
    if (!hosts[0]) {
        why = "no host";
        goto fail;
    }
    if (!sentinel) {
        if ((why = parse_hostport(hosts, 6379, &out->server)))
            goto fail;
        if (path && parse_db(path, &out->db) != 0) {
            why = "the database must be a number";
            goto fail;
        }
        return 0;
    }
    for (char *save = NULL, *h = strtok_r(hosts, ",", &save); h; h = strtok_r(NULL, ",", &save)) {
        if (out->nsentinels == UC_REDIS_MAX_SENTINELS) {
            why = "at most 8 sentinels";
            goto fail;
        }
        if ((why = parse_hostport(h, 26379, &out->sentinels[out->nsentinels++])))
            goto fail;
    }
    char *db = path ? strchr(path, '/') : NULL;
    if (db)
        *db++ = '\0';
    if (!path || !path[0] || strlen(path) >= sizeof out->master) {
        why = "no master name after the sentinels";
        goto fail;
    }
    memcpy(out->master, path, strlen(path) + 1);
    if (db && parse_db(db, &out->db) != 0) {
        why = "the database must be a number";
        goto fail;
    }
    if (!out->nsentinels) {
        why = "no sentinel";
        goto fail;
    }
    return 0;
fail:
    uc_redis_url_free(out);
    return url_error(err, err_size, url, len, why);
}

void uc_redis_url_free(struct uc_redis_url *u)
{
    free(u->user);
    free(u->password);
    u->user = u->password = NULL;
}

size_t uc_redis_shard_of(const char *key, size_t len, size_t n)
{
    if (n <= 1)
        return 0;
    uint64_t h = 14695981039346656037ULL; /* FNV-1a, 64 bits */
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)key[i]) * 1099511628211ULL;
    int64_t b = -1, j = 0;
    while (j < (int64_t)n) {
        b = j;
        h = h * 2862933555777941757ULL + 1;
        j = (int64_t)((double)(b + 1) * ((double)(1LL << 31) / (double)((h >> 33) + 1)));
    }
    return (size_t)b;
}

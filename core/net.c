/* net.c -- listening sockets and address formatting (see net.h). */
#include "net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "err.h"

int uc_net_split_hostport(const char *spec, char *host, size_t host_size, char *port,
                          size_t port_size, char *err, size_t err_size)
{
    const char *colon;
    const char *h = spec;
    size_t hlen;
    if (spec[0] == '[') {
        const char *close = strchr(spec, ']');
        if (!close || close[1] != ':') {
            snprintf(err, err_size, "'%s': expected [IPv6]:PORT", spec);
            return UC_ERR_PARSE;
        }
        h = spec + 1;
        hlen = (size_t)(close - h);
        colon = close + 1;
    } else {
        colon = strrchr(spec, ':');
        if (!colon || strchr(spec, ':') != colon) {
            snprintf(err, err_size, "'%s': expected HOST:PORT (IPv6 as [ADDR]:PORT)", spec);
            return UC_ERR_PARSE;
        }
        hlen = (size_t)(colon - spec);
    }
    const char *p = colon + 1;
    char *end;
    long portnum = strtol(p, &end, 10);
    if (*p == '\0' || *end != '\0' || portnum < 0 || portnum > 65535) {
        snprintf(err, err_size, "'%s': port must be a number from 0 to 65535", spec);
        return UC_ERR_PARSE;
    }
    if (hlen == 0 || hlen >= host_size) {
        snprintf(err, err_size, "'%s': missing or overlong host", spec);
        return UC_ERR_PARSE;
    }
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    snprintf(port, port_size, "%ld", portnum);
    return 0;
}

static int open_socket(const char *spec, int reuse_port, int do_listen, char *err, size_t err_size);

int uc_net_listen(const char *spec, int reuse_port, char *err, size_t err_size)
{
    return open_socket(spec, reuse_port, 1, err, err_size);
}

int uc_net_reserve(const char *spec, char *out, size_t out_size, char *err, size_t err_size)
{
    int fd = open_socket(spec, 1, 0, err, err_size);
    if (fd >= 0)
        uc_net_local_addr(fd, out, out_size);
    return fd;
}

static int open_socket(const char *spec, int reuse_port, int do_listen, char *err, size_t err_size)
{
    char host[256], port[8];
    int r = uc_net_split_hostport(spec, host, sizeof host, port, sizeof port, err, err_size);
    if (r != 0)
        return r;
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    struct addrinfo *res;
    int gai = getaddrinfo(host, port, &hints, &res);
    if (gai != 0) {
        snprintf(err, err_size, "%s: %s", spec, gai_strerror(gai));
        return UC_ERR_PARSE;
    }
    int fd = -1;
    int saved = 0;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            saved = errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (reuse_port)
            setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
        if (ai->ai_family == AF_INET6)
            setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && (!do_listen || listen(fd, 4096) == 0))
            break;
        saved = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd >= 0)
        return fd;
    snprintf(err, err_size, "cannot listen on %s: %s", spec, strerror(saved));
    return UC_ERR_SYS;
}

void uc_net_format_addr(const struct sockaddr *addr, char *out, size_t out_size)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    if (addr->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)addr;
        inet_ntop(AF_INET, &in->sin_addr, ip, sizeof ip);
        snprintf(out, out_size, "%s:%u", ip, ntohs(in->sin_port));
    } else if (addr->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)addr;
        inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof ip);
        snprintf(out, out_size, "[%s]:%u", ip, ntohs(in6->sin6_port));
    } else {
        snprintf(out, out_size, "unknown");
    }
}

void uc_net_local_addr(int fd, char *out, size_t out_size)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0)
        uc_net_format_addr((struct sockaddr *)&ss, out, out_size);
    else
        snprintf(out, out_size, "unknown");
}

/* route_floor.c -- the least a WebSocket server can do for the bench's route workload, as a
 * floor to measure real servers against: epoll, one recv per readable socket, one send per
 * message, and nothing else -- no policy, no hash (uid "u<N>" is slot N of an array), no output
 * queue (a write that does not go through whole ends the run), no limits, no timers.
 *
 * With one message in flight per client, nine tenths of every server's time per message is the
 * kernel's (two system calls and TCP over loopback). How close uidcast and uWebSockets come to
 * this program on the same run says how much any user-space change could still win there.
 *
 *   build/route_floor PORT */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_FD 65536
#define MAX_UID 65536
#define IN_CAP 8192

struct conn {
    int fd;
    int upgraded;
    int uid; /* -1 until the first message */
    size_t len;
    uint8_t in[IN_CAP];
};

static struct conn *by_fd[MAX_FD];
static struct conn *by_uid[MAX_UID];

static void drop(struct conn *c)
{
    if (c->uid >= 0 && by_uid[c->uid] == c)
        by_uid[c->uid] = NULL;
    by_fd[c->fd] = NULL;
    close(c->fd);
    free(c);
}

static void send_all(struct conn *c, const void *data, size_t len)
{
    ssize_t w = send(c->fd, data, len, MSG_NOSIGNAL);
    if (w != (ssize_t)len) {
        fprintf(stderr,
                "route_floor: a write did not go through whole (%zd of %zu); this server "
                "has no output queue\n",
                w, len);
        exit(1);
    }
}

static void send_text(struct conn *c, const char *data, size_t len)
{
    uint8_t frame[4 + IN_CAP];
    size_t head = 2;
    frame[0] = 0x81;
    if (len < 126) {
        frame[1] = (uint8_t)len;
    } else {
        frame[1] = 126;
        frame[2] = (uint8_t)(len >> 8);
        frame[3] = (uint8_t)len;
        head = 4;
    }
    memcpy(frame + head, data, len);
    send_all(c, frame, head + len);
}

static int upgrade(struct conn *c)
{
    uint8_t *end = memmem(c->in, c->len, "\r\n\r\n", 4);
    if (!end)
        return c->len < IN_CAP ? 0 : -1;
    const char *key = memmem(c->in, (size_t)(end - c->in), "Sec-WebSocket-Key: ", 19);
    if (!key)
        return -1;
    key += 19;
    const char *eol = memchr(key, '\r', (size_t)((const char *)end + 2 - key));
    char joined[128];
    int n = snprintf(joined, sizeof joined, "%.*s258EAFA5-E914-47DA-95CA-C5AB0DC85B11",
                     (int)(eol - key), key);
    if (n < 0 || n >= (int)sizeof joined)
        return -1;
    uint8_t digest[SHA_DIGEST_LENGTH];
    SHA1((const uint8_t *)joined, (size_t)n, digest);
    char accept[32];
    EVP_EncodeBlock((uint8_t *)accept, digest, SHA_DIGEST_LENGTH);
    char reply[256];
    n = snprintf(reply, sizeof reply,
                 "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                 "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
                 accept);
    send_all(c, reply, (size_t)n);
    size_t used = (size_t)(end + 4 - c->in);
    memmove(c->in, c->in + used, c->len - used);
    c->len -= used;
    c->upgraded = 1;
    return 0;
}

/* "u<N>" -> N, or -1 */
static int uid_slot(const char *s, size_t len)
{
    if (len < 2 || len > 6 || s[0] != 'u')
        return -1;
    int n = 0;
    for (size_t i = 1; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        n = n * 10 + (s[i] - '0');
    }
    return n < MAX_UID ? n : -1;
}

static int on_text(struct conn *c, char *msg, size_t len)
{
    if (c->uid < 0) {
        int uid = uid_slot(msg, len);
        if (uid < 0)
            return -1;
        c->uid = uid;
        by_uid[uid] = c;
        char reply[64];
        int n = snprintf(reply, sizeof reply, "login success, your uid is u%d", uid);
        send_text(c, reply, (size_t)n);
        return 0;
    }
    char *colon = memchr(msg, ':', len);
    if (!colon)
        return 0;
    int uid = uid_slot(msg, (size_t)(colon - msg));
    struct conn *to = uid >= 0 ? by_uid[uid] : NULL;
    if (to)
        send_text(to, colon + 1, len - (size_t)(colon + 1 - msg));
    return 0;
}

/* Whole masked client frames, unmasked in place; a partial one stays for the next read. */
static int on_frames(struct conn *c)
{
    size_t off = 0;
    while (c->len - off >= 6) {
        uint8_t *p = c->in + off;
        size_t len = p[1] & 0x7f, head = 6;
        if (!(p[1] & 0x80) || len == 127)
            return -1;
        if (len == 126) {
            if (c->len - off < 8)
                break;
            len = (size_t)p[2] << 8 | p[3];
            head = 8;
        }
        if (c->len - off < head + len)
            break;
        uint8_t *mask = p + head - 4, *data = p + head;
        for (size_t i = 0; i < len; i++)
            data[i] ^= mask[i & 3];
        int opcode = p[0] & 0x0f;
        if (opcode == 8 || (opcode == 1 && on_text(c, (char *)data, len) < 0))
            return -1;
        off += head + len;
    }
    if (off == 0 && c->len == IN_CAP)
        return -1;
    memmove(c->in, c->in + off, c->len - off);
    c->len -= off;
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s PORT\n", argv[0]);
        return 2;
    }
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1]))};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(ls, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(ls, SOMAXCONN) != 0) {
        perror("route_floor: listen");
        return 1;
    }
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = ls};
    epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
    struct epoll_event evs[1024];
    for (;;) {
        int n = epoll_wait(ep, evs, 1024, -1);
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == ls) {
                int cfd;
                while ((cfd = accept4(ls, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    struct conn *c = cfd < MAX_FD ? malloc(sizeof *c) : NULL;
                    if (!c) {
                        close(cfd);
                        continue;
                    }
                    *c = (struct conn){.fd = cfd, .uid = -1};
                    setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    by_fd[cfd] = c;
                    struct epoll_event cev = {.events = EPOLLIN, .data.fd = cfd};
                    epoll_ctl(ep, EPOLL_CTL_ADD, cfd, &cev);
                }
                continue;
            }
            struct conn *c = by_fd[fd];
            if (!c)
                continue;
            ssize_t r = recv(fd, c->in + c->len, IN_CAP - c->len, 0);
            if (r < 0 && errno == EAGAIN)
                continue;
            if (r <= 0) {
                drop(c);
                continue;
            }
            c->len += (size_t)r;
            if ((!c->upgraded && upgrade(c) < 0) || (c->upgraded && on_frames(c) < 0))
                drop(c);
        }
    }
}

/* loadgen.c -- uidcast's load generator: many WebSocket clients on one epoll loop, speaking the
 * default protocol (first message = uid, then "target:payload"), plus HTTP push clients.
 *
 * It shares no code with the server: frames are encoded and parsed here, so a bug in the
 * server's framing cannot hide itself. Every run is bounded in connections and time and stops
 * by itself. Workloads:
 *   hold       N idle logged-in connections: server RSS per connection, connect+login rate
 *   route      client i sends to uid i+1, K messages in flight each: msgs/s, latency, losses
 *   broadcast  one sender of "all:" messages to N logged-in receivers: deliveries/s, latency
 *   push       HTTP keep-alive pushes to logged-in uids: pushes/s, deliveries checked
 * Each prints one human line and one JSON line. --port P1,P2 spreads the clients over several
 * servers (client i on port i mod count: with two, every routed message crosses nodes), and
 * --server-pid A,B,... sums the CPU time of every process the server side is made of. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum mode { HOLD, ROUTE, BROADCAST, PUSH };
enum state { CONNECTING, UPGRADING, LOGGING_IN, READY };

struct buf {
    uint8_t *data;
    size_t len, cap;
};

struct client {
    int fd;
    int idx;
    int is_push;
    enum state state;
    struct buf in, out;
    /* route: as sender */
    uint64_t sent, acked; /* acked = delivered to the receiver */
    /* as receiver: next sequence expected from its (only) sender */
    uint64_t expect;
    /* push: requests outstanding on this connection */
    uint64_t pending;
    int queued; /* on the list of senders to refill after this epoll batch */
};

static struct {
    enum mode mode;
    int port, push_port;
    int ports[8], nports;
    int conns, push_conns, inflight, payload, src_ips;
    double duration;
    int server_pid; /* the first of server_pids: its RSS is the hold figure */
    int server_pids[8], npids;
    int procs; /* hold: connections spread over this many processes (20,000 files each here) */
    const char *label;
    const char *name; /* the workload's name in the output (default: the mode) */
    int keep;         /* clients speak uidcast.v1 (the default script keeps their uid:message
                         sends) and pushes carry &keep=60: kept messages */
} opt = {.port = 1234,
         .push_port = 1235,
         .conns = -1,
         .push_conns = 8,
         .inflight = -1,
         .payload = 64,
         .src_ips = 50,
         .duration = 5,
         .label = "uidcast"};

static int ep;
/* Senders whose window opened during one epoll batch are refilled once, after it: like a real
 * client library that coalesces its writes, and the same for every server measured. */
static struct client **refill;
static int nrefill;
static struct client *clients;
static struct client *pushers;
static int ready_count, connecting_now;
static int sending; /* 1 while the measured phase runs */
static uint64_t total_sent, total_received, lost_order, dup_count, pushes_done, push_errors;
static uint64_t bcast_completed, *bcast_counts; /* broadcast: receipts per sequence (ring) */
#define BCAST_RING 1024
#define HIST_BUCKETS 100000 /* 10 us buckets up to 1 s */
static uint64_t hist[HIST_BUCKETS + 1], hist_n;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char *what)
{
    perror(what);
    exit(1);
}

static void buf_add(struct buf *b, const void *data, size_t len)
{
    if (b->len + len > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 256;
        while (cap < b->len + len)
            cap *= 2;
        b->data = realloc(b->data, cap);
        if (!b->data)
            die("realloc");
        b->cap = cap;
    }
    memcpy(b->data + b->len, data, len);
    b->len += len;
}

static void buf_consume(struct buf *b, size_t n)
{
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
}

static void want_write(struct client *c, int on)
{
    struct epoll_event ev = {.events = EPOLLIN | (on ? EPOLLOUT : 0), .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static void flush(struct client *c)
{
    while (c->out.len) {
        ssize_t w = write(c->fd, c->out.data, c->out.len);
        if (w < 0) {
            if (errno == EAGAIN) {
                want_write(c, 1);
                return;
            }
            fprintf(stderr, "loadgen: write: %s\n", strerror(errno));
            exit(1);
        }
        buf_consume(&c->out, (size_t)w);
    }
}

/* A masked client frame (the mask key is zero, so the payload is sent as is: legal, and the
 * server's unmasking is still exercised). */
static void send_frame(struct client *c, int opcode, const char *payload, size_t len)
{
    uint8_t head[14];
    size_t n = 0;
    head[n++] = (uint8_t)(0x80 | opcode);
    if (len < 126) {
        head[n++] = (uint8_t)(0x80 | len);
    } else if (len <= 0xffff) {
        head[n++] = 0x80 | 126;
        head[n++] = (uint8_t)(len >> 8);
        head[n++] = (uint8_t)len;
    } else {
        head[n++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--)
            head[n++] = (uint8_t)((uint64_t)len >> (8 * i));
    }
    memset(head + n, 0, 4);
    n += 4;
    buf_add(&c->out, head, n);
    buf_add(&c->out, payload, len);
}

static void record_latency(uint64_t sent_ns)
{
    uint64_t us10 = (now_ns() - sent_ns) / 10000;
    hist[us10 < HIST_BUCKETS ? us10 : HIST_BUCKETS]++;
    hist_n++;
}

static double percentile_ms(double p)
{
    uint64_t target = (uint64_t)(p * (double)hist_n), seen = 0;
    for (int i = 0; i <= HIST_BUCKETS; i++) {
        seen += hist[i];
        if (seen > target)
            return i * 0.01;
    }
    return HIST_BUCKETS * 0.01;
}

/* payload: "<target>:<sender>,<seq>,<ns>," padded with 'x' to opt.payload bytes after ':' */
static void send_message(struct client *c, const char *target, uint64_t seq)
{
    char msg[4096];
    int n = snprintf(msg, sizeof msg, "%s:", target);
    int body = snprintf(msg + n, sizeof msg - (size_t)n, "%d,%llu,%llu,", c->idx,
                        (unsigned long long)seq, (unsigned long long)now_ns());
    int total = n + (body > opt.payload ? body : opt.payload);
    memset(msg + n + body, 'x', (size_t)(total - n - body));
    send_frame(c, 1, msg, (size_t)total);
    c->sent++;
    total_sent++;
}

static void route_pump(struct client *c)
{
    char target[32];
    snprintf(target, sizeof target, "u%d", (c->idx + 1) % opt.conns);
    while (sending && c->sent - c->acked < (uint64_t)opt.inflight)
        send_message(c, target, c->sent);
    flush(c);
}

static void bcast_pump(void)
{
    struct client *c = &clients[0];
    while (sending && c->sent - bcast_completed < (uint64_t)opt.inflight) {
        bcast_counts[c->sent % BCAST_RING] = 0;
        send_message(c, "all", c->sent);
    }
    flush(c);
}

static void push_pump(struct client *p)
{
    static uint64_t next_uid;
    char req[4096];
    while (sending && p->pending < (uint64_t)opt.inflight) {
        char body[2048];
        int b = snprintf(body, sizeof body, "%d,%llu,%llu,", -1, (unsigned long long)0,
                         (unsigned long long)now_ns());
        if (b < opt.payload) {
            memset(body + b, 'x', (size_t)(opt.payload - b));
            b = opt.payload;
        }
        int n = snprintf(req, sizeof req,
                         "POST /send?uid=u%llu%s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n",
                         (unsigned long long)(next_uid++ % (uint64_t)opt.conns),
                         opt.keep ? "&keep=60" : "", b);
        buf_add(&p->out, req, (size_t)n);
        buf_add(&p->out, body, (size_t)b);
        p->pending++;
        total_sent++;
    }
    flush(p);
}

static void on_text(struct client *c, const char *msg, size_t len)
{
    if (opt.keep) {
        /* uidcast.v1: "<number> " or "- " in front */
        const char *space = memchr(msg, ' ', len < 24 ? len : 24);
        if (!space) {
            fprintf(stderr, "loadgen: a uidcast.v1 message without a header: %.*s\n", (int)len,
                    msg);
            exit(1);
        }
        len -= (size_t)(space + 1 - msg);
        msg = space + 1;
    }
    if (c->state == LOGGING_IN) {
        if (len < 13 || memcmp(msg, "login success", 13) != 0) {
            fprintf(stderr, "loadgen: login refused: %.*s\n", (int)len, msg);
            exit(1);
        }
        c->state = READY;
        ready_count++;
        connecting_now--;
        return;
    }
    /* "<sender>,<seq>,<ns>,xxx" */
    char tmp[64];
    size_t n = len < sizeof tmp - 1 ? len : sizeof tmp - 1;
    memcpy(tmp, msg, n);
    tmp[n] = 0;
    int sender;
    unsigned long long seq, ns;
    if (sscanf(tmp, "%d,%llu,%llu,", &sender, &seq, &ns) != 3) {
        fprintf(stderr, "loadgen: unexpected message: %.*s\n", (int)n, msg);
        exit(1);
    }
    total_received++;
    record_latency(ns);
    if (opt.mode == PUSH) {
        pushes_done++; /* counted at the receiver: a delivery checked end to end */
        return;
    }
    if (seq != c->expect) {
        if (seq < c->expect)
            dup_count++;
        else
            lost_order++;
    }
    if (seq >= c->expect)
        c->expect = seq + 1;
    if (opt.mode == ROUTE) {
        struct client *s = &clients[sender];
        s->acked++;
        if (!s->queued) {
            s->queued = 1;
            refill[nrefill++] = s;
        }
    } else if (opt.mode == BROADCAST) {
        uint64_t *cnt = &bcast_counts[seq % BCAST_RING];
        if (++*cnt == (uint64_t)opt.conns) {
            bcast_completed++;
            bcast_pump();
        }
    }
}

static void parse_frames(struct client *c)
{
    size_t off = 0;
    while (c->in.len - off >= 2) {
        const uint8_t *p = c->in.data + off;
        size_t avail = c->in.len - off;
        int opcode = p[0] & 0x0f;
        uint64_t len = p[1] & 0x7f;
        size_t head = 2;
        if (len == 126) {
            if (avail < 4)
                break;
            len = (uint64_t)p[2] << 8 | p[3];
            head = 4;
        } else if (len == 127) {
            if (avail < 10)
                break;
            len = 0;
            for (int i = 0; i < 8; i++)
                len = len << 8 | p[2 + i];
            head = 10;
        }
        if (avail < head + len)
            break;
        if (opcode == 1 || opcode == 2)
            on_text(c, (const char *)p + head, (size_t)len);
        else if (opcode == 9)
            send_frame(c, 10, (const char *)p + head, (size_t)len), flush(c);
        else if (opcode == 8) {
            fprintf(stderr, "loadgen: server closed client %d\n", c->idx);
            exit(1);
        }
        off += head + (size_t)len;
    }
    buf_consume(&c->in, off);
}

static void parse_push_responses(struct client *p)
{
    for (;;) {
        uint8_t *end = memmem(p->in.data, p->in.len, "\r\n\r\n", 4);
        if (!end)
            return;
        size_t head = (size_t)(end - p->in.data) + 4;
        char *cl = memmem(p->in.data, head, "Content-Length: ", 16);
        size_t body = cl ? strtoul(cl + 16, NULL, 10) : 0;
        if (p->in.len < head + body)
            return;
        if (memcmp(p->in.data, "HTTP/1.1 200", 12) != 0 ||
            !memmem(p->in.data + head, body, "\"delivered\":1", 13))
            push_errors++;
        buf_consume(&p->in, head + body);
        p->pending--;
        push_pump(p);
    }
}

static void start_connect(struct client *c, int port)
{
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (c->fd < 0)
        die("socket");
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in src = {.sin_family = AF_INET};
    src.sin_addr.s_addr = htonl(0x7f000002 + (uint32_t)(c->idx % opt.src_ips));
    if (bind(c->fd, (struct sockaddr *)&src, sizeof src) != 0)
        die("bind");
    struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    dst.sin_addr.s_addr = htonl(0x7f000001);
    if (connect(c->fd, (struct sockaddr *)&dst, sizeof dst) != 0 && errno != EINPROGRESS)
        die("connect");
    c->state = CONNECTING;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
}

static void on_event(struct client *c, uint32_t events)
{
    if (events & (EPOLLERR | EPOLLHUP)) {
        fprintf(stderr, "loadgen: connection %d failed (state %d)\n", c->idx, c->state);
        exit(1);
    }
    if (c->state == CONNECTING && (events & EPOLLOUT)) {
        if (c->is_push) {
            c->state = READY;
            want_write(c, 0);
            return;
        }
        static const char req[] = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                                  "Connection: Upgrade\r\n"
                                  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                                  "Sec-WebSocket-Version: 13\r\n";
        static const char v1[] = "Sec-WebSocket-Protocol: uidcast.v1\r\n";
        buf_add(&c->out, req, sizeof req - 1);
        if (opt.keep)
            buf_add(&c->out, v1, sizeof v1 - 1);
        buf_add(&c->out, "\r\n", 2);
        c->state = UPGRADING;
        want_write(c, 0);
        flush(c);
        return;
    }
    if (events & EPOLLOUT) {
        want_write(c, 0);
        flush(c);
    }
    if (!(events & EPOLLIN))
        return;
    uint8_t tmp[65536];
    for (;;) {
        ssize_t n = read(c->fd, tmp, sizeof tmp);
        if (n < 0 && errno == EAGAIN)
            break;
        if (n <= 0) {
            fprintf(stderr, "loadgen: connection %d closed by the server\n", c->idx);
            exit(1);
        }
        buf_add(&c->in, tmp, (size_t)n);
        if ((size_t)n < sizeof tmp)
            break;
    }
    if (c->is_push) {
        parse_push_responses(c);
        return;
    }
    if (c->state == UPGRADING) {
        uint8_t *end = memmem(c->in.data, c->in.len, "\r\n\r\n", 4);
        if (!end)
            return;
        if (memcmp(c->in.data, "HTTP/1.1 101", 12) != 0) {
            fprintf(stderr, "loadgen: upgrade refused: %.40s\n", c->in.data);
            exit(1);
        }
        buf_consume(&c->in, (size_t)(end - c->in.data) + 4);
        c->state = LOGGING_IN;
        char uid[32];
        int n = snprintf(uid, sizeof uid, "u%d", c->idx);
        send_frame(c, 1, uid, (size_t)n);
        flush(c);
    }
    parse_frames(c);
}

static void loop_once(int timeout_ms)
{
    struct epoll_event evs[512];
    int n = epoll_wait(ep, evs, 512, timeout_ms);
    for (int i = 0; i < n; i++)
        on_event(evs[i].data.ptr, evs[i].events);
    for (int i = 0; i < nrefill; i++) {
        refill[i]->queued = 0;
        route_pump(refill[i]);
    }
    nrefill = 0;
}

/* CPU seconds pid has used, in user mode and in the kernel on its behalf. */
static double process_cpu(int pid, double *user)
{
    char path[64], line[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f || !fgets(line, sizeof line, f)) {
        if (f)
            fclose(f);
        return 0;
    }
    fclose(f);
    char *p = strrchr(line, ')');
    unsigned long utime = 0, stime = 0;
    /* fields after the command: state(3) ... utime(14) stime(15) */
    sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime, &stime);
    *user += (double)utime / (double)sysconf(_SC_CLK_TCK);
    return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

/* The servers' CPU seconds, and in *user those in user mode: where a server's work goes when
 * the kernel's share of each message dominates. */
static double server_cpu(double *user)
{
    double sum = 0;
    *user = 0;
    for (int i = 0; i < opt.npids; i++)
        sum += process_cpu(opt.server_pids[i], user);
    return sum;
}

/* "1,2,3" into out (at most max numbers); returns how many. */
static int parse_list(const char *arg, int *out, int max)
{
    int n = 0;
    for (char *end; *arg && n < max; arg = *end ? end + 1 : end) {
        out[n++] = (int)strtol(arg, &end, 10);
        if (*end && *end != ',')
            break;
    }
    return n;
}

static long server_rss_kb(void)
{
    if (!opt.server_pid)
        return 0;
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", opt.server_pid);
    FILE *f = fopen(path, "r");
    long kb = 0;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
            break;
    if (f)
        fclose(f);
    return kb;
}

/* Connects and logs in clients[0..count), whose uids are u<first>..u<first+count-1>. */
static void connect_all(int first, int count)
{
    int next = 0;
    uint64_t deadline = now_ns() + 60000000000ull; /* a server that stops answering: give up */
    while (ready_count < count) {
        if (now_ns() > deadline) {
            fprintf(stderr, "loadgen: only %d of %d clients logged in within 60 s\n", ready_count,
                    count);
            exit(1);
        }
        while (next < count && connecting_now < 1000) {
            clients[next].idx = first + next;
            start_connect(&clients[next], opt.nports ? opt.ports[next % opt.nports] : opt.port);
            next++;
            connecting_now++;
        }
        loop_once(100);
    }
}

static const char *mode_name[] = {"hold", "route", "broadcast", "push"};

static void report_hold(long rss_before, double connect_s)
{
    long rss_after = server_rss_kb();
    double per_conn = (double)(rss_after - rss_before) * 1024 / opt.conns;
    printf("%-8s %-15s %6d conns: server RSS %ld -> %ld kB, %.0f bytes/conn; "
           "connect+login %.0f/s\n",
           opt.label, opt.name, opt.conns, rss_before, rss_after, per_conn, opt.conns / connect_s);
    printf("{\"label\":\"%s\",\"workload\":\"%s\",\"conns\":%d,\"rss_before_kb\":%ld,"
           "\"rss_after_kb\":%ld,\"bytes_per_conn\":%.0f,\"connect_login_per_s\":%.0f}\n",
           opt.label, opt.name, opt.conns, rss_before, rss_after, per_conn, opt.conns / connect_s);
}

/* Before the hold's first RSS sample: a hundred clients connect, log in and leave, so that
 * code and libraries the server pages in on its first connections (2 MB of them for uidcast)
 * are not billed to the connections measured. */
static void warm_up(void)
{
    pid_t pid = fork();
    if (pid < 0)
        die("fork");
    if (pid == 0) {
        close(ep);
        ep = epoll_create1(0);
        connect_all(opt.conns, opt.conns < 100 ? opt.conns : 100);
        _exit(0);
    }
    waitpid(pid, NULL, 0);
    sleep(1); /* the server reaps them */
}

/* hold across several processes: each child connects its share, says so on a pipe, and keeps
 * its connections until the parent has measured and closes the other pipe. */
static int hold_in_processes(long rss_before, uint64_t t0)
{
    int ready[2], done[2];
    if (pipe(ready) != 0 || pipe(done) != 0)
        die("pipe");
    int per = opt.conns / opt.procs;
    for (int p = 0; p < opt.procs; p++) {
        int first = p * per, count = p == opt.procs - 1 ? opt.conns - first : per;
        pid_t pid = fork();
        if (pid < 0)
            die("fork");
        if (pid == 0) {
            close(ready[0]);
            close(done[1]);
            close(ep); /* an epoll instance must not be shared with the other processes */
            ep = epoll_create1(0);
            connect_all(first, count);
            if (write(ready[1], "r", 1) != 1)
                _exit(1);
            char c;
            while (read(done[0], &c, 1) > 0) {
            }
            _exit(0);
        }
    }
    close(ready[1]);
    close(done[0]);
    for (int p = 0; p < opt.procs; p++) {
        char c;
        if (read(ready[0], &c, 1) != 1) {
            fprintf(stderr, "loadgen: a hold process failed\n");
            return 1;
        }
    }
    double connect_s = (double)(now_ns() - t0) / 1e9;
    sleep(2); /* connections at rest release their parser state within 1 s */
    report_hold(rss_before, connect_s);
    close(done[1]);
    while (wait(NULL) > 0) {
    }
    return 0;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {{"port", 1, 0, 'p'},     {"push-port", 1, 0, 'P'},
                                             {"conns", 1, 0, 'n'},    {"push-conns", 1, 0, 'c'},
                                             {"inflight", 1, 0, 'k'}, {"payload", 1, 0, 'b'},
                                             {"duration", 1, 0, 'd'}, {"server-pid", 1, 0, 's'},
                                             {"label", 1, 0, 'l'},    {"src-ips", 1, 0, 'i'},
                                             {"name", 1, 0, 'N'},     {"procs", 1, 0, 'j'},
                                             {"keep", 0, 0, 'K'},     {0, 0, 0, 0}};
    if (argc < 2) {
        fprintf(stderr,
                "usage: loadgen hold|route|broadcast|push [--port P[,P...]] [--push-port P] "
                "[--conns N] [--push-conns N] [--inflight K] [--payload B] "
                "[--duration S] [--server-pid PID[,PID...]] [--label NAME] [--name WORKLOAD] "
                "[--src-ips N] [--procs N] [--keep]\n");
        return 2;
    }
    for (int m = 0; m < 4; m++)
        if (strcmp(argv[1], mode_name[m]) == 0)
            opt.mode = (enum mode)m;
    optind = 2;
    int ch;
    while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (ch) {
        case 'p':
            opt.nports = parse_list(optarg, opt.ports, 8);
            opt.port = opt.ports[0];
            break;
        case 'P': opt.push_port = atoi(optarg); break;
        case 'n': opt.conns = atoi(optarg); break;
        case 'c': opt.push_conns = atoi(optarg); break;
        case 'k': opt.inflight = atoi(optarg); break;
        case 'b': opt.payload = atoi(optarg); break;
        case 'd': opt.duration = atof(optarg); break;
        case 's':
            opt.npids = parse_list(optarg, opt.server_pids, 8);
            opt.server_pid = opt.server_pids[0];
            break;
        case 'l': opt.label = optarg; break;
        case 'i': opt.src_ips = atoi(optarg); break;
        case 'N': opt.name = optarg; break;
        case 'j': opt.procs = atoi(optarg); break;
        case 'K': opt.keep = 1; break;
        default: return 2;
        }
    }
    static const int default_conns[] = {19000, 1000, 10000, 1000};
    static const int default_inflight[] = {0, 8, 4, 32};
    if (opt.conns < 0)
        opt.conns = default_conns[opt.mode];
    if (!opt.name)
        opt.name = mode_name[opt.mode];
    if (opt.inflight < 0)
        opt.inflight = default_inflight[opt.mode];
    if (opt.src_ips < 1 || opt.src_ips > 253)
        opt.src_ips = 1;

    ep = epoll_create1(0);
    clients = calloc((size_t)opt.conns, sizeof *clients);
    refill = calloc((size_t)opt.conns, sizeof *refill);
    bcast_counts = calloc(BCAST_RING, sizeof *bcast_counts);
    if (opt.mode == HOLD)
        warm_up();
    long rss_before = server_rss_kb();
    uint64_t t0 = now_ns();
    if (opt.mode == HOLD && opt.procs > 1)
        return hold_in_processes(rss_before, t0);
    connect_all(0, opt.conns);
    double connect_s = (double)(now_ns() - t0) / 1e9;

    if (opt.mode == HOLD) {
        for (int i = 0; i < 20; i++)
            loop_once(100); /* connections at rest release their parser state within 1 s */
        report_hold(rss_before, connect_s);
        return 0;
    }

    if (opt.mode == PUSH) {
        pushers = calloc((size_t)opt.push_conns, sizeof *pushers);
        for (int i = 0; i < opt.push_conns; i++) {
            pushers[i].idx = i;
            pushers[i].is_push = 1;
            start_connect(&pushers[i], opt.push_port);
        }
        for (int i = 0; i < 20; i++)
            loop_once(10);
    }

    /* the measured phase */
    sending = 1;
    double user0, user1;
    double cpu0 = server_cpu(&user0);
    uint64_t start = now_ns(), stop = start + (uint64_t)(opt.duration * 1e9);
    if (opt.mode == ROUTE)
        for (int i = 0; i < opt.conns; i++)
            route_pump(&clients[i]);
    else if (opt.mode == BROADCAST)
        bcast_pump();
    else
        for (int i = 0; i < opt.push_conns; i++)
            push_pump(&pushers[i]);
    while (now_ns() < stop)
        loop_once(10);
    sending = 0;
    double elapsed = (double)(now_ns() - start) / 1e9;
    double cpu = server_cpu(&user1) - cpu0, user = user1 - user0;
    uint64_t received_in_window = total_received;
    /* drain what is in flight, up to 3 s */
    uint64_t expected = opt.mode == BROADCAST ? clients[0].sent * (uint64_t)opt.conns : total_sent;
    uint64_t drain_end = now_ns() + 3000000000ull;
    while (total_received < expected && now_ns() < drain_end)
        loop_once(10);
    uint64_t lost = expected > total_received ? expected - total_received : 0;
    double rate = (double)received_in_window / elapsed;
    double per_cpu = cpu > 0 ? (double)received_in_window / cpu : 0;
    const char *unit = opt.mode == ROUTE ? "msgs" : opt.mode == BROADCAST ? "deliveries" : "pushes";
    printf("%-8s %-15s %6d conns: %.0f %s/s, %.0f per server CPU-second (server CPU %.0f%%, "
           "user %.0f%%), p50 %.2f ms, p99 %.2f ms, lost %llu, dup %llu, out-of-order %llu%s\n",
           opt.label, opt.name, opt.conns, rate, unit, per_cpu, 100 * cpu / elapsed,
           100 * user / elapsed, percentile_ms(0.50), percentile_ms(0.99), (unsigned long long)lost,
           (unsigned long long)dup_count, (unsigned long long)lost_order,
           push_errors ? " PUSH ERRORS" : "");
    printf("{\"label\":\"%s\",\"workload\":\"%s\",\"conns\":%d,\"per_s\":%.0f,"
           "\"per_server_cpu_s\":%.0f,\"server_cpu_share\":%.3f,\"server_user_share\":%.3f,"
           "\"p50_ms\":%.3f,\"p99_ms\":%.3f,"
           "\"lost\":%llu,\"dup\":%llu,\"out_of_order\":%llu,\"push_errors\":%llu,"
           "\"received\":%llu}\n",
           opt.label, opt.name, opt.conns, rate, per_cpu, cpu / elapsed, user / elapsed,
           percentile_ms(0.50), percentile_ms(0.99), (unsigned long long)lost,
           (unsigned long long)dup_count, (unsigned long long)lost_order,
           (unsigned long long)push_errors, (unsigned long long)total_received);
    return lost || dup_count || lost_order || push_errors ? 3 : 0;
}

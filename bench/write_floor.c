/* write_floor.c -- what one writev(2) to a loopback TCP socket costs the writer on this machine:
 * 2,000 connected pairs, a reader thread draining them on core 1, the writer on core 0 sending
 * one ~300-byte writev (four 75-byte frames) to each in turn. A server's broadcast to N clients
 * with K messages in flight needs at least N writes per K messages, so this cost bounds every
 * server's deliveries per CPU-second at K / (cost per write), whatever its own code does. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define PAIRS 2000
#define ROUNDS 300

static int writer_fd[PAIRS], reader_fd[PAIRS];
static volatile int stop;

static void pin(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    sched_setaffinity(0, sizeof set, &set);
}

static void *reader(void *arg)
{
    (void)arg;
    pin(1);
    int ep = epoll_create1(0);
    for (int i = 0; i < PAIRS; i++) {
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = reader_fd[i]};
        epoll_ctl(ep, EPOLL_CTL_ADD, reader_fd[i], &ev);
    }
    static char buf[65536];
    struct epoll_event evs[512];
    while (!stop) {
        int n = epoll_wait(ep, evs, 512, 10);
        for (int i = 0; i < n; i++)
            while (read(evs[i].data.fd, buf, sizeof buf) > 0)
                ;
    }
    close(ep);
    return NULL;
}

static double thread_cpu(void)
{
    struct rusage r;
    getrusage(RUSAGE_THREAD, &r);
    return (double)(r.ru_utime.tv_sec + r.ru_stime.tv_sec) +
           (double)(r.ru_utime.tv_usec + r.ru_stime.tv_usec) / 1e6;
}

int main(void)
{
    int listener = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001)};
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    socklen_t len = sizeof addr;
    if (bind(listener, (struct sockaddr *)&addr, sizeof addr) || listen(listener, 4096) ||
        getsockname(listener, (struct sockaddr *)&addr, &len)) {
        perror("listen");
        return 1;
    }
    for (int i = 0; i < PAIRS; i++) {
        reader_fd[i] = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(reader_fd[i], (struct sockaddr *)&addr, sizeof addr) ||
            (writer_fd[i] = accept(listener, NULL, NULL)) < 0) {
            perror("connect");
            return 1;
        }
        setsockopt(writer_fd[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        fcntl(reader_fd[i], F_SETFL, O_NONBLOCK);
        fcntl(writer_fd[i], F_SETFL, O_NONBLOCK);
    }
    pthread_t t;
    pthread_create(&t, NULL, reader, NULL);
    pin(0);
    char frame[75];
    memset(frame, 'x', sizeof frame);
    struct iovec iov[4];
    for (int k = 0; k < 4; k++)
        iov[k] = (struct iovec){frame, sizeof frame};
    double before = thread_cpu();
    long writes = 0;
    for (int round = 0; round < ROUNDS; round++)
        for (int i = 0; i < PAIRS; i++)
            writes += writev(writer_fd[i], iov, 4) > 0;
    double cpu = thread_cpu() - before;
    stop = 1;
    pthread_join(t, NULL);
    printf("write floor: %.2f us of writer CPU per writev (%ld writes of 300 bytes to %d loopback "
           "sockets)\n",
           cpu * 1e6 / (double)writes, writes, PAIRS);
    printf("{\"workload\":\"write-floor\",\"us_per_writev\":%.3f}\n", cpu * 1e6 / (double)writes);
    return 0;
}

/* net.h -- TCP listening sockets and address formatting; no event loop here. */
#ifndef UC_NET_H
#define UC_NET_H

#include <stddef.h>
#include <sys/socket.h>

/* Splits "HOST:PORT" or "[V6]:PORT" into host and port. Returns 0, or UC_ERR_PARSE with a
 * message in err. */
int uc_net_split_hostport(const char *spec, char *host, size_t host_size, char *port,
                          size_t port_size, char *err, size_t err_size);

/* Opens a non-blocking listening socket on spec. reuse_port sets SO_REUSEPORT (workers).
 * Returns the fd, or UC_ERR_PARSE (the address) or UC_ERR_SYS (the socket) with a message in
 * err. */
int uc_net_listen(const char *spec, int reuse_port, char *err, size_t err_size);

/* Binds (without listening) a SO_REUSEPORT socket on spec, so that port 0 becomes a concrete
 * port that workers can then listen on; a bound socket that does not listen takes no
 * connections. Returns the fd (keep it open while the workers live) and writes HOST:PORT to
 * out, or a negative uc_err with a message in err. */
int uc_net_reserve(const char *spec, char *out, size_t out_size, char *err, size_t err_size);

/* Formats addr as "IP:PORT" or "[IPv6]:PORT" into out. */
void uc_net_format_addr(const struct sockaddr *addr, char *out, size_t out_size);

/* The locally bound address of fd, formatted as above. */
void uc_net_local_addr(int fd, char *out, size_t out_size);

#endif

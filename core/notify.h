/* notify.h -- telling a service manager how the server is doing (systemd's sd_notify protocol,
 * without libsystemd): a datagram to the socket $NOTIFY_SOCKET names, when it is set. */
#ifndef UC_NOTIFY_H
#define UC_NOTIFY_H

/* Sends state ("READY=1", "STOPPING=1", ...). Does nothing without $NOTIFY_SOCKET; a failure
 * is logged at debug level only (the manager's problem, not the server's). */
void uc_notify(const char *state);

#endif

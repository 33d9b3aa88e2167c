/* err.h -- the one error convention of the core: 0 (or a count, a descriptor, a length) for
 * success, a negative enum uc_err for a failure, and UC_AGAIN for "would block: call again when
 * the descriptor is ready". Functions that answer with an HTTP status or a parsed length say so
 * where they are declared. */
#ifndef UC_ERR_H
#define UC_ERR_H

enum uc_err {
    UC_AGAIN = 1, /* would block: not done, not failed */
    UC_OK = 0,
    UC_ERR_NOMEM = -1,       /* an allocation failed */
    UC_ERR_CLOSED = -2,      /* the connection is closing or closed */
    UC_ERR_INVALID = -3,     /* an argument is out of range */
    UC_ERR_OVERFLOW = -4,    /* a bound (send buffer, uid length, ...) would be exceeded */
    UC_ERR_SYS = -5,         /* a system call failed; errno says why */
    UC_ERR_LIMIT = -6,       /* a configured limit (groups per connection) is reached */
    UC_ERR_UNREACHABLE = -7, /* a service the call needs (Redis) cannot be reached now */
    UC_ERR_PARSE = -8,       /* text that must follow a syntax does not (an address, an escape) */
};

/* A short, stable, lower-case description of err. */
const char *uc_strerror(int err);

#endif

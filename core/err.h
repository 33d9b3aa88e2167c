/* err.h -- the one error convention of the core: 0 or a negative enum uc_err. */
#ifndef UC_ERR_H
#define UC_ERR_H

enum uc_err {
    UC_OK = 0,
    UC_ERR_NOMEM = -1,       /* an allocation failed */
    UC_ERR_CLOSED = -2,      /* the connection is closing or closed */
    UC_ERR_INVALID = -3,     /* an argument is out of range */
    UC_ERR_OVERFLOW = -4,    /* a bound (send buffer, uid length, ...) would be exceeded */
    UC_ERR_SYS = -5,         /* a system call failed; errno says why */
    UC_ERR_LIMIT = -6,       /* a configured limit (groups per connection) is reached */
    UC_ERR_UNREACHABLE = -7, /* a service the call needs (Redis) cannot be reached now */
};

/* A short, stable, lower-case description of err. */
const char *uc_strerror(int err);

#endif

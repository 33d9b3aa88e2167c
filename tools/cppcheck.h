/* tools/cppcheck.h -- what cppcheck must know of the system headers it does not read: the
 * limits Lua's luaconf.h checks, and the shape of uthash's iteration macro. */
#define LLONG_MAX 9223372036854775807LL
#define LLONG_MIN (-LLONG_MAX - 1LL)
#define INT_MAX 2147483647
#define HASH_ITER(hh, head, el, tmp)                                                               \
    for ((el) = (head), (tmp) = (el) ? (el)->hh.next : NULL; (el);                                 \
         (el) = (tmp), (tmp) = (el) ? (el)->hh.next : NULL)

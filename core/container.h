/* container.h -- from a pointer to a member back to the struct that holds it: how a libev
 * watcher or a list link embedded in a struct finds its owner. */
#ifndef UC_CONTAINER_H
#define UC_CONTAINER_H

#include <stddef.h>

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

#endif

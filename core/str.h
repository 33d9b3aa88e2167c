/* str.h -- small string helpers every file may use: a literal with its length, and the one
 * ASCII lower-casing (header names, hex digits) that does not depend on the locale. */
#ifndef UC_STR_H
#define UC_STR_H

#include <stddef.h>
#include <string.h>

/* A string literal and its length, for the (pointer, length) argument pairs of the core:
 * uc_conn_close(c, 1001, UC_LIT("idle timeout")). */
#define UC_LIT(s) ("" s ""), (sizeof(s) - 1)

static inline char uc_lower(char c) { return c >= 'A' && c <= 'Z' ? (char)(c + 32) : c; }

/* True when the bytes a[0..alen) are b[0..blen): uc_str_eq(name, len, UC_LIT("origin")). */
static inline int uc_str_eq(const char *a, size_t alen, const char *b, size_t blen)
{
    return alen == blen && memcmp(a, b, alen) == 0;
}

#endif

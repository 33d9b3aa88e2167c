/* utf8.h -- UTF-8 validation (RFC 3629): what a text frame and a pushed text body must be. */
#ifndef UC_UTF8_H
#define UC_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* 1 when s[0..len) is well-formed UTF-8 (no overlongs, no surrogates, at most U+10FFFF). */
int uc_utf8_valid(const uint8_t *s, size_t len);

#endif

/* utf8.h -- UTF-8 validation (RFC 3629): what a text frame and a pushed text body must be; and
 * text made safe inside a JSON string, valid UTF-8 or not. */
#ifndef UC_UTF8_H
#define UC_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* 1 when s[0..len) is well-formed UTF-8 (no overlongs, no surrogates, at most U+10FFFF). */
int uc_utf8_valid(const uint8_t *s, size_t len);

/* Writes s as the inside of a JSON string (no quotes) into out, at most cap bytes; quotes,
 * backslashes and control bytes are escaped, and so is every byte >= 0x80 when s is not valid
 * UTF-8, so the document stays valid JSON whatever s holds. Returns the bytes written (stops
 * early rather than split an escape). */
size_t uc_json_escape(char *out, size_t cap, const char *s, size_t len);

#endif

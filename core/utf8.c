/* utf8.c -- UTF-8 validation per RFC 3629, table 3-7 of the Unicode standard. */
#include "utf8.h"

#include <string.h>

#define HIGH_BITS 0x8080808080808080ULL

int uc_utf8_valid(const uint8_t *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        /* Most text is ASCII: sixteen bytes at a time while none has its top bit set, and the
         * last few as the final eight (re-reading some: i is at a character boundary, so
         * ASCII from there to the end is all that is left to check). */
        uint64_t w, w2;
        if (len - i >= 16) {
            memcpy(&w, s + i, 8);
            memcpy(&w2, s + i + 8, 8);
            if (((w | w2) & HIGH_BITS) == 0) {
                i += 16;
                continue;
            }
        }
        if (len >= 8 && len - i <= 8 && (memcpy(&w, s + len - 8, 8), (w & HIGH_BITS) == 0))
            return 1;
        if (len - i >= 8 && (memcpy(&w, s + i, 8), (w & HIGH_BITS) == 0)) {
            i += 8;
            continue;
        }
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t need;
        uint8_t lo = 0x80, hi = 0xbf; /* allowed range of the first continuation byte */
        if (c >= 0xc2 && c <= 0xdf) {
            need = 1;
        } else if (c >= 0xe0 && c <= 0xef) {
            need = 2;
            if (c == 0xe0)
                lo = 0xa0; /* overlong */
            else if (c == 0xed)
                hi = 0x9f; /* surrogates */
        } else if (c >= 0xf0 && c <= 0xf4) {
            need = 3;
            if (c == 0xf0)
                lo = 0x90; /* overlong */
            else if (c == 0xf4)
                hi = 0x8f; /* beyond U+10FFFF */
        } else {
            return 0;
        }
        if (len - i <= need)
            return 0;
        if (s[i + 1] < lo || s[i + 1] > hi)
            return 0;
        for (size_t k = 2; k <= need; k++)
            if ((s[i + k] & 0xc0) != 0x80)
                return 0;
        i += need + 1;
    }
    return 1;
}

size_t uc_json_escape(char *out, size_t cap, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    int valid = uc_utf8_valid((const uint8_t *)s, len);
    size_t o = 0;
    for (size_t i = 0; i < len && o + 6 <= cap; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c < 0x20 || (!valid && c >= 0x80)) {
            memcpy(out + o, "\\u00", 4);
            out[o + 4] = hex[c >> 4];
            out[o + 5] = hex[c & 15];
            o += 6;
        } else {
            out[o++] = (char)c;
        }
    }
    return o;
}

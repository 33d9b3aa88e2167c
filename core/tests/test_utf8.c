/* test_utf8.c -- UTF-8 validation: ASCII in sixteen- and eight-byte steps, the last bytes as one
 * final word and one byte at a time, multibyte sequences wherever they fall against those steps,
 * and what RFC 3629 forbids. */
#include "../utf8.h"

#include "check.h"

static int valid(const char *s) { return uc_utf8_valid((const uint8_t *)s, strlen(s)); }

TEST(accepts_ascii_and_multibyte_text_at_every_offset)
{
    CHECK(valid(""));
    CHECK(valid("plain ascii, longer than eight bytes"));
    const char *seqs[] = {"\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80"};
    for (size_t k = 0; k < 3; k++) {
        for (size_t at = 0; at < 17; at++) {
            char s[64];
            memset(s, 'a', at);
            strcpy(s + at, seqs[k]);
            strcat(s, "tail of ascii");
            CHECK(valid(s));
        }
    }
}

TEST(refuses_a_bad_byte_after_whole_ascii_blocks)
{
    for (size_t at = 0; at < 25; at++) {
        char s[64];
        memset(s, 'a', at);
        strcpy(s + at, "\xff");
        strcat(s, "more ascii after it");
        CHECK(!valid(s));
    }
}

/* A sequence (or a bad byte) at every offset, followed by every length of ASCII tail: whatever
 * the steps and the final word cover, it is seen. */
TEST(sees_every_byte_whatever_the_lengths)
{
    const char *good[] = {"\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80"};
    const char *bad[] = {"\xff", "\xc3", "\xe2\x82", "\xf0\x9f\x98", "\x80", "\xc0\xaf"};
    for (size_t at = 0; at < 40; at++) {
        for (size_t tail = 0; tail < 10; tail++) {
            char s[128];
            for (size_t k = 0; k < 3; k++) {
                memset(s, 'a', at);
                strcpy(s + at, good[k]);
                memset(s + strlen(s), 'z', tail);
                s[at + strlen(good[k]) + tail] = '\0';
                CHECK(valid(s));
            }
            for (size_t k = 0; k < 6; k++) {
                memset(s, 'a', at);
                strcpy(s + at, bad[k]);
                memset(s + strlen(s), 'z', tail);
                s[at + strlen(bad[k]) + tail] = '\0';
                if (valid(s))
                    fprintf(stderr, "  accepted: %zu ascii, bad #%zu, %zu ascii\n", at, k, tail);
                CHECK(!valid(s));
            }
        }
    }
}

TEST(refuses_overlongs_surrogates_truncations_and_beyond_u10ffff)
{
    CHECK(!valid("12345678\xc0\xaf"));         /* overlong '/' */
    CHECK(!valid("12345678\xe0\x80\xaf"));     /* overlong, three bytes */
    CHECK(!valid("12345678\xed\xa0\x80"));     /* a surrogate */
    CHECK(!valid("12345678\xf4\x90\x80\x80")); /* U+110000 */
    CHECK(!valid("12345678\xe2\x82"));         /* cut short at the end */
    CHECK(!valid("\xe2\x82"
                 "12345678")); /* a missing continuation byte */
}

int main(void)
{
    RUN(accepts_ascii_and_multibyte_text_at_every_offset);
    RUN(refuses_a_bad_byte_after_whole_ascii_blocks);
    RUN(sees_every_byte_whatever_the_lengths);
    RUN(refuses_overlongs_surrogates_truncations_and_beyond_u10ffff);
    return CHECK_SUMMARY("test_utf8");
}

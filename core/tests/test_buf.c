/* test_buf.c -- refcounted buffers: shared until the last reference, small ones recycled. */
#include "../buf.h"

#include <stdlib.h>

#include "check.h"

TEST(frees_on_the_last_reference_only)
{
    struct uc_buf *b = uc_buf_new_copy("abc", 3);
    uc_buf_ref(b);
    uc_buf_unref(b);
    CHECK_EQ_INT(b->refs, 1);
    CHECK_MEM(b->data, b->len, "abc");
    uc_buf_unref(b);
}

TEST(recycles_a_small_buffer_for_the_next_of_its_size_whole_and_fresh)
{
    struct uc_buf *a = uc_buf_new_copy("first message", 13);
    uc_buf_unref(a);
    struct uc_buf *b = uc_buf_new_copy("second one!!", 12); /* the same 64-byte class */
    CHECK(b == a);
    CHECK_EQ_INT(b->refs, 1);
    CHECK_MEM(b->data, b->len, "second one!!");
    struct uc_buf *c = uc_buf_new(100); /* another class: not that one */
    CHECK(c != b);
    CHECK_EQ_INT(c->len, 100);
    uc_buf_unref(c);
    uc_buf_unref(b);
}

TEST(gives_large_buffers_back_to_malloc)
{
    struct uc_buf *big = uc_buf_new(4096);
    if (!big) {
        CHECK(!"out of memory");
        return;
    }
    CHECK_EQ_INT(big->pool_class, 0);
    uc_buf_unref(big);
}

int main(void)
{
    RUN(frees_on_the_last_reference_only);
    RUN(recycles_a_small_buffer_for_the_next_of_its_size_whole_and_fresh);
    RUN(gives_large_buffers_back_to_malloc);
    uc_buf_release_pool();
    return CHECK_SUMMARY("test_buf");
}

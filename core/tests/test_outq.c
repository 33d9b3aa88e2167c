/* test_outq.c -- output queues: shared buffers, partial writes, EAGAIN and errors. */
#include "../outq.h"

#include <errno.h>
#include <stdlib.h>

#include "../err.h"
#include "check.h"

/* A writer that accepts at most `budget` bytes per call, then reports EAGAIN once empty. */
struct fake_writer {
    size_t per_call;
    size_t budget; /* total bytes before EAGAIN */
    int fail_errno;
    char out[4096];
    size_t out_len;
    int calls, last_iovcnt;
    const void *first_base; /* the first iovec of the last call */
};

static ssize_t fake_write(void *ctx, const struct iovec *iov, int iovcnt)
{
    struct fake_writer *w = ctx;
    w->calls++;
    w->last_iovcnt = iovcnt;
    w->first_base = iovcnt ? iov[0].iov_base : NULL;
    if (w->fail_errno) {
        errno = w->fail_errno;
        return -1;
    }
    if (w->budget == 0) {
        errno = EAGAIN;
        return -1;
    }
    size_t allowed = w->per_call < w->budget ? w->per_call : w->budget, done = 0;
    for (int i = 0; i < iovcnt && done < allowed; i++) {
        size_t n = iov[i].iov_len < allowed - done ? iov[i].iov_len : allowed - done;
        memcpy(w->out + w->out_len, iov[i].iov_base, n);
        w->out_len += n;
        done += n;
    }
    w->budget -= done;
    return (ssize_t)done;
}

TEST(shares_one_buffer_between_queues_without_copying)
{
    struct uc_buf *b = uc_buf_new_copy("hello", 5);
    struct uc_outq q1 = {0}, q2 = {0};
    CHECK_EQ_INT(uc_outq_push(&q1, b), 0);
    CHECK_EQ_INT(uc_outq_push(&q2, b), 0);
    CHECK_EQ_INT(b->refs, 3);
    uc_buf_unref(b);
    uc_outq_clear(&q1);
    CHECK_EQ_INT(b->refs, 1);
    CHECK_EQ_INT(uc_outq_bytes(&q2), 5);
    uc_outq_clear(&q2);
}

TEST(resumes_after_one_byte_partial_writes)
{
    struct uc_outq q = {0};
    struct uc_buf *a = uc_buf_new_copy("abc", 3), *b = uc_buf_new_copy("defg", 4);
    uc_outq_push(&q, a);
    uc_outq_push(&q, b);
    uc_buf_unref(a);
    uc_buf_unref(b);
    struct fake_writer w = {.per_call = 1, .budget = 1000};
    int r;
    int calls = 0;
    while ((r = uc_outq_flush_with(&q, fake_write, &w)) == UC_AGAIN)
        calls++;
    CHECK_EQ_INT(r, 0);
    CHECK(calls >= 6);
    CHECK_MEM(w.out, w.out_len, "abcdefg");
    CHECK(uc_outq_empty(&q));
    CHECK_EQ_INT(uc_outq_bytes(&q), 0);
}

TEST(reports_would_block_and_keeps_the_rest)
{
    struct uc_outq q = {0};
    struct uc_buf *a = uc_buf_new_copy("0123456789", 10);
    uc_outq_push(&q, a);
    uc_buf_unref(a);
    struct fake_writer w = {.per_call = 100, .budget = 4};
    CHECK_EQ_INT(uc_outq_flush_with(&q, fake_write, &w), UC_AGAIN);
    CHECK_EQ_INT(uc_outq_bytes(&q), 6);
    w.budget = 100;
    CHECK_EQ_INT(uc_outq_flush_with(&q, fake_write, &w), 0);
    CHECK_MEM(w.out, w.out_len, "0123456789");
}

TEST(reports_a_write_error)
{
    struct uc_outq q = {0};
    struct uc_buf *a = uc_buf_new_copy("x", 1);
    uc_outq_push(&q, a);
    uc_buf_unref(a);
    struct fake_writer w = {.fail_errno = EPIPE};
    CHECK_EQ_INT(uc_outq_flush_with(&q, fake_write, &w), UC_ERR_SYS);
    CHECK_EQ_INT(uc_outq_bytes(&q), 1);
    uc_outq_clear(&q);
}

TEST(flushes_more_buffers_than_one_writev_takes)
{
    struct uc_outq q = {0};
    struct uc_buf *a = uc_buf_new_copy("ab", 2);
    for (int i = 0; i < 200; i++)
        uc_outq_push(&q, a);
    uc_buf_unref(a);
    struct fake_writer w = {.per_call = 4096, .budget = 4096};
    CHECK_EQ_INT(uc_outq_flush_with(&q, fake_write, &w), 0);
    CHECK_EQ_INT(w.out_len, 400);
}

TEST(counts_the_memory_of_small_frames_not_only_their_bytes)
{
    struct uc_outq q = {0};
    struct uc_buf *pong = uc_buf_new_copy("\x8a\x00", 2);
    for (int i = 0; i < 1000; i++)
        uc_outq_push(&q, pong);
    uc_buf_unref(pong);
    CHECK_EQ_INT(uc_outq_bytes(&q), 2000);
    CHECK_EQ_INT(uc_outq_cost(&q), 1000 * (2 + UC_OUTQ_ENTRY_COST));
    struct fake_writer w = {.per_call = 1001, .budget = 1001};
    CHECK_EQ_INT(uc_outq_flush_with(&q, fake_write, &w), UC_AGAIN);
    /* 500 whole frames written, one half written: it still holds its node */
    CHECK_EQ_INT(uc_outq_cost(&q), 500 * (2 + UC_OUTQ_ENTRY_COST));
    uc_outq_clear(&q);
    CHECK_EQ_INT(uc_outq_cost(&q), 0);
}

/* Queues the frames "<i>:<size bytes of letter i>" for sizes[i]; returns the expected stream. */
static size_t queue_frames(struct uc_outq *q, const size_t *sizes, int n, char *expect)
{
    size_t len = 0;
    for (int i = 0; i < n; i++) {
        struct uc_buf *b = uc_buf_new(sizes[i]);
        memset(b->data, 'a' + i, sizes[i]);
        uc_outq_push(q, b);
        uc_buf_unref(b);
        memset(expect + len, 'a' + i, sizes[i]);
        len += sizes[i];
    }
    return len;
}

TEST(writes_small_frames_back_to_back_as_one_iovec_and_large_ones_as_they_are)
{
    struct uc_outq q = {0};
    static char expect[4096];
    const size_t sizes[] = {70, 70, 70, 2000, 70, 70};
    size_t len = queue_frames(&q, sizes, 6, expect);
    struct fake_writer w = {.per_call = 1 << 20, .budget = 1 << 20};
    CHECK_EQ_INT(uc_outq_flush_with(&q, fake_write, &w), 0);
    CHECK_EQ_INT(w.calls, 1);
    CHECK_EQ_INT(w.last_iovcnt, 3); /* the three small ones, the large one, the last two */
    CHECK(w.out_len == len && memcmp(w.out, expect, len) == 0);
    CHECK(uc_outq_empty(&q));
}

TEST(resumes_a_short_write_inside_coalesced_frames_at_the_right_byte)
{
    struct uc_outq q = {0};
    static char expect[4096];
    const size_t sizes[] = {100, 100, 100, 100, 600, 100, 100};
    size_t len = queue_frames(&q, sizes, 7, expect);
    struct fake_writer w = {.per_call = 137, .budget = 1 << 20};
    int rounds = 0;
    while (uc_outq_flush_with(&q, fake_write, &w) == UC_AGAIN && rounds < 100)
        rounds++; /* each short write: the socket is full until the next writable event */
    CHECK(rounds > 5);
    CHECK(w.out_len == len && memcmp(w.out, expect, len) == 0);
    CHECK_EQ_INT(uc_outq_cost(&q), 0);
}

TEST(does_not_copy_a_lone_small_frame)
{
    struct uc_outq q = {0};
    struct uc_buf *b = uc_buf_new_copy("only", 4);
    uc_outq_push(&q, b);
    struct fake_writer w = {.per_call = 100, .budget = 100};
    CHECK_EQ_INT(uc_outq_flush_with(&q, fake_write, &w), 0);
    CHECK_EQ_INT(w.last_iovcnt, 1);
    CHECK(w.first_base == b->data);
    uc_buf_unref(b);
}

int main(void)
{
    RUN(shares_one_buffer_between_queues_without_copying);
    RUN(resumes_after_one_byte_partial_writes);
    RUN(reports_would_block_and_keeps_the_rest);
    RUN(reports_a_write_error);
    RUN(flushes_more_buffers_than_one_writev_takes);
    RUN(counts_the_memory_of_small_frames_not_only_their_bytes);
    RUN(writes_small_frames_back_to_back_as_one_iovec_and_large_ones_as_they_are);
    RUN(resumes_a_short_write_inside_coalesced_frames_at_the_right_byte);
    RUN(does_not_copy_a_lone_small_frame);
    uc_outq_release_pool();
    return CHECK_SUMMARY("test_outq");
}

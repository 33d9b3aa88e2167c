/* test_hashkey.c -- uthash tables in the core hash with the process's key: keys chosen to
 * collide under uthash's own (unkeyed) hash spread out as any others do. */
#include "../hashkey.h"

#include <stdio.h>
#include <stdlib.h>

#include "check.h"

struct item {
    char name[16];
    UT_hash_handle hh;
};

TEST(keys_that_collide_under_jenkins_spread_under_the_keyed_hash)
{
    enum { N = 300, BITS = 0xfff };
    static struct item items[N];
    struct item *table = NULL;
    /* What an attacker can compute offline: names whose Jenkins hashes agree in the low 12
     * bits, so that under uthash's default they share one chain in any table up to 4,096
     * buckets. */
    unsigned target = 0;
    int n = 0;
    for (unsigned long i = 0; n < N; i++) {
        char name[16];
        int len = snprintf(name, sizeof name, "u%lu", i);
        unsigned jen;
        HASH_JEN(name, (unsigned)len, jen);
        if (n == 0)
            target = jen & BITS;
        if ((jen & BITS) != target)
            continue;
        memcpy(items[n].name, name, (size_t)len + 1);
        HASH_ADD_STR(table, name, &items[n]);
        n++;
    }
    unsigned longest = 0;
    for (unsigned b = 0; b < table->hh.tbl->num_buckets; b++)
        if (table->hh.tbl->buckets[b].count > longest)
            longest = table->hh.tbl->buckets[b].count;
    CHECK(longest <= 12);
    CHECK_EQ_INT(table->hh.tbl->noexpand, 0);
    struct item *found;
    HASH_FIND_STR(table, items[N - 1].name, found);
    CHECK(found == &items[N - 1]);
    HASH_CLEAR(hh, table);
}

int main(void)
{
    RUN(keys_that_collide_under_jenkins_spread_under_the_keyed_hash);
    return CHECK_SUMMARY("test_hashkey");
}

/* test_redis_url.c -- --redis URLs (redis://, sentinel://) and the shard a key lives on. */
#include "../redis_url.h"

#include <string.h>

#include "check.h"

static int parse(const char *url, struct uc_redis_url *u, char *err, size_t err_size)
{
    return uc_redis_url_parse(url, strlen(url), u, err, err_size);
}

TEST(reads_credentials_host_port_and_database)
{
    struct uc_redis_url u;
    char err[512];
    CHECK_EQ_INT(parse("redis://alice:s3cret@10.0.0.5:6380/2", &u, err, sizeof err), 0);
    CHECK(strcmp(u.user, "alice") == 0 && strcmp(u.password, "s3cret") == 0);
    CHECK(strcmp(u.server.host, "10.0.0.5") == 0 && u.server.port == 6380 && u.db == 2);
    CHECK(!u.master[0] && u.nsentinels == 0);
    uc_redis_url_free(&u);
    CHECK_EQ_INT(parse("redis://:pw@[::1]", &u, err, sizeof err), 0);
    CHECK(!u.user && strcmp(u.password, "pw") == 0);
    CHECK(strcmp(u.server.host, "::1") == 0 && u.server.port == 6379 && u.db == 0);
    uc_redis_url_free(&u);
}

TEST(reads_sentinels_and_the_master_name)
{
    struct uc_redis_url u;
    char err[512];
    CHECK_EQ_INT(parse("sentinel://:pw@s1,s2:26380,[::1]:5000/mymaster/3", &u, err, sizeof err), 0);
    CHECK_EQ_INT(u.nsentinels, 3);
    CHECK(strcmp(u.sentinels[0].host, "s1") == 0 && u.sentinels[0].port == 26379);
    CHECK(strcmp(u.sentinels[1].host, "s2") == 0 && u.sentinels[1].port == 26380);
    CHECK(strcmp(u.sentinels[2].host, "::1") == 0 && u.sentinels[2].port == 5000);
    CHECK(strcmp(u.master, "mymaster") == 0 && u.db == 3 && strcmp(u.password, "pw") == 0);
    uc_redis_url_free(&u);
}

TEST(names_what_is_wrong)
{
    static const struct {
        const char *url, *says;
    } cases[] = {
        {"http://x", "not a redis:// or sentinel:// URL"},
        {"redis://h:0", "the port must be 1 to 65535"},
        {"redis://h:99999", "the port must be 1 to 65535"},
        {"redis://user@h", "credentials need a ':'"},
        {"redis://h/x", "the database must be a number"},
        {"redis://:pw@", "no host"},
        {"redis://[::1", "brackets"},
        {"sentinel://s1:26379", "no master name"},
        {"sentinel://s1:26379/", "no master name"},
        {"sentinel://s1,s2:x/m", "the port must be 1 to 65535"},
        {"sentinel://a,b,c,d,e,f,g,h,i/m", "at most 8 sentinels"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct uc_redis_url u;
        char err[512] = "";
        CHECK_EQ_INT(parse(cases[i].url, &u, err, sizeof err), -1);
        if (!strstr(err, cases[i].says) || !strstr(err, cases[i].url))
            fprintf(stderr, "  %s: %s\n", cases[i].url, err);
        CHECK(strstr(err, cases[i].says) && strstr(err, cases[i].url));
    }
}

/* Every node must agree, across versions and platforms: these come from an independent
 * implementation of FNV-1a and jump consistent hash. */
TEST(puts_a_key_on_the_same_shard_everywhere)
{
    CHECK_EQ_INT(uc_redis_shard_of("alice", 5, 1), 0);
    CHECK_EQ_INT(uc_redis_shard_of("alice", 5, 4), 3);
    CHECK_EQ_INT(uc_redis_shard_of("alice", 5, 16), 4);
    CHECK_EQ_INT(uc_redis_shard_of("bob", 3, 3), 2);
    CHECK_EQ_INT(uc_redis_shard_of("bob", 3, 16), 12);
    CHECK_EQ_INT(uc_redis_shard_of("user:42", 7, 2), 1);
    CHECK_EQ_INT(uc_redis_shard_of("user:42", 7, 16), 15);
    CHECK_EQ_INT(uc_redis_shard_of("", 0, 16), 13);
}

TEST(spreads_keys_evenly_and_moves_few_when_a_shard_is_added)
{
    enum { KEYS = 20000 };
    size_t per_shard[4] = {0}, moved = 0;
    for (int i = 0; i < KEYS; i++) {
        char key[32];
        int n = snprintf(key, sizeof key, "user-%d", i);
        size_t on3 = uc_redis_shard_of(key, (size_t)n, 3),
               on4 = uc_redis_shard_of(key, (size_t)n, 4);
        per_shard[on4]++;
        if (on3 != on4) {
            moved++;
            CHECK(on4 == 3); /* a key moves only to the new shard */
        }
    }
    for (int s = 0; s < 4; s++)
        CHECK(per_shard[s] > KEYS / 4 * 9 / 10 && per_shard[s] < KEYS / 4 * 11 / 10);
    CHECK(moved > KEYS / 4 * 9 / 10 && moved < KEYS / 4 * 11 / 10);
}

int main(void)
{
    RUN(reads_credentials_host_port_and_database);
    RUN(reads_sentinels_and_the_master_name);
    RUN(names_what_is_wrong);
    RUN(puts_a_key_on_the_same_shard_everywhere);
    RUN(spreads_keys_evenly_and_moves_few_when_a_shard_is_added);
    return CHECK_SUMMARY("redis_url");
}

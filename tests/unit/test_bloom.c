/*
 * test_bloom.c -- the day filters' Bloom filter: no false negatives across
 * growth, the false-positive rate, counting, and concurrent adders with a
 * concurrent reader.
 */
#include "test.h"
#include "bloom.h"
#include "util.h"

#include <pthread.h>
#include <stdatomic.h>
#include <xxhash.h>

static uint64_t key_hash(uint64_t i, uint64_t seed)
{
    return XXH3_64bits_withSeed(&i, sizeof i, seed);
}

TEST(bloom_grows_without_false_negatives)
{
    /* sized for 1024, fed 200,000: grows through several segments */
    pd_bloom *b = pd_bloom_new(1000, 10, NULL);
    size_t bytes0 = pd_bloom_bytes(b);
    int fresh = 0;
    for (uint64_t i = 0; i < 200000; i++) fresh += pd_bloom_add(b, key_hash(i, 1));
    int missing = 0;
    for (uint64_t i = 0; i < 200000; i++) missing += !pd_bloom_may_contain(b, key_hash(i, 1));
    CHECK_INT(missing, 0);
    /* a hash already in the filter is neither counted nor "fresh" */
    CHECK_INT(pd_bloom_add(b, key_hash(7, 1)), 0);
    CHECK((uint64_t)fresh == pd_bloom_count(b));
    CHECK(pd_bloom_count(b) > 190000 && pd_bloom_count(b) <= 200000); /* false positives are not counted */
    CHECK(pd_bloom_bytes(b) > bytes0 * 100);
    /* at most ~2 bytes per key after growth (1.25 B at 10 bits, x4 steps) */
    CHECK(pd_bloom_bytes(b) < 200000u * 3);
    int fp = 0;
    for (uint64_t i = 0; i < 200000; i++) fp += pd_bloom_may_contain(b, key_hash(i, 2));
    /* every segment of the chain is probed: a few % at most */
    CHECK(fp < 200000 * 5 / 100);
    pd_bloom_free(b);
}

TEST(bloom_false_positive_rate_when_sized)
{
    pd_bloom *b = pd_bloom_new(100000, 10, NULL);
    for (uint64_t i = 0; i < 100000; i++) pd_bloom_add(b, key_hash(i, 3));
    int fp = 0;
    for (uint64_t i = 0; i < 100000; i++) fp += pd_bloom_may_contain(b, key_hash(i, 4));
    CHECK(fp < 100000 * 2 / 100); /* ~1 % expected */
    CHECK(fp > 0);                /* it is a Bloom filter */
    /* more bits, fewer false positives */
    pd_bloom *b16 = pd_bloom_new(100000, 16, NULL);
    for (uint64_t i = 0; i < 100000; i++) pd_bloom_add(b16, key_hash(i, 3));
    int fp16 = 0;
    for (uint64_t i = 0; i < 100000; i++) fp16 += pd_bloom_may_contain(b16, key_hash(i, 4));
    CHECK(fp16 < fp);
    pd_bloom_free(b);
    pd_bloom_free(b16);
}

typedef struct {
    pd_bloom *b;
    uint64_t seed;
    _Atomic uint64_t published; /* keys [0, published) are added */
} adder;

static void *adder_main(void *arg)
{
    adder *a = arg;
    for (uint64_t i = 0; i < 100000; i++) {
        pd_bloom_add(a->b, key_hash(i, a->seed));
        atomic_store_explicit(&a->published, i + 1, memory_order_release);
    }
    return NULL;
}

TEST(bloom_concurrent_adders_and_reader)
{
    pd_bloom *b = pd_bloom_new(1024, 10, NULL);
    adder a[2] = {{.b = b, .seed = 11}, {.b = b, .seed = 12}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++) pthread_create(&th[i], NULL, adder_main, &a[i]);
    /* whatever an adder published must be found, while segments are added */
    int missing = 0, checks = 0;
    /* until both adders are done (bounded: they finish in well under a second) */
    for (long round = 0; round < 100000000; round++) {
        int busy = 0;
        for (int k = 0; k < 2; k++) {
            uint64_t n = atomic_load_explicit(&a[k].published, memory_order_acquire);
            busy += n < 100000;
            for (uint64_t i = n > 64 ? n - 64 : 0; i < n; i++, checks++)
                missing += !pd_bloom_may_contain(b, key_hash(i, a[k].seed));
        }
        if (!busy) break;
    }
    for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
    CHECK_INT(missing, 0);
    CHECK(checks > 0);
    for (int k = 0; k < 2; k++)
        for (uint64_t i = 0; i < 100000; i++) missing += !pd_bloom_may_contain(b, key_hash(i, a[k].seed));
    CHECK_INT(missing, 0);
    pd_bloom_free(b);
}

TEST(bloom_budget_caps_memory_without_false_negatives)
{
    /* room for the first segments of two filters and one growth step */
    pd_bloom *probe = pd_bloom_new(1024, 10, NULL);
    size_t first = pd_bloom_bytes(probe);
    pd_bloom_free(probe);
    /* room for two first segments and one growth step (x4: 4096 keys,
     * 5120 bytes plus a segment header), not for a second step */
    pd_bloom_budget bg = {.limit = 2 * first + 4096 * 10 / 8 + 128};
    pd_bloom *a = pd_bloom_new(1024, 10, &bg);
    pd_bloom *b = pd_bloom_new(1024, 10, &bg);
    CHECK(a && b);
    CHECK_INT((int)atomic_load(&bg.used), (int)(2 * first));
    /* a grows once, then runs over capacity */
    for (uint64_t i = 0; i < 50000; i++) pd_bloom_add(a, key_hash(i, 5));
    CHECK(atomic_load(&bg.used) <= bg.limit);
    CHECK(pd_bloom_bytes(a) > first + 4096 * 10 / 8 && pd_bloom_bytes(a) < first + 4096 * 2);
    CHECK_INT((int)atomic_load(&bg.used), (int)(pd_bloom_bytes(a) + pd_bloom_bytes(b)));
    CHECK(pd_bloom_overfull(a));
    CHECK(!pd_bloom_overfull(b));
    /* no room for a third filter: nothing is taken */
    size_t used = atomic_load(&bg.used);
    CHECK(pd_bloom_new(1024, 10, &bg) == NULL);
    CHECK_INT((int)atomic_load(&bg.used), (int)used);
    /* over capacity it says "maybe" more often, never "no" for an added key */
    int missing = 0;
    for (uint64_t i = 0; i < 50000; i++) missing += !pd_bloom_may_contain(a, key_hash(i, 5));
    CHECK_INT(missing, 0);
    int fp = 0;
    for (uint64_t i = 0; i < 10000; i++) fp += pd_bloom_may_contain(a, key_hash(i, 6));
    CHECK(fp > 10000 / 2);
    /* freeing gives the bytes back */
    pd_bloom_free(b);
    CHECK_INT((int)atomic_load(&bg.used), (int)pd_bloom_bytes(a));
    pd_bloom_free(a);
    CHECK_INT((int)atomic_load(&bg.used), 0);
    pd_bloom_budget big = {.limit = 1 << 20};
    pd_bloom *c = pd_bloom_new(1024, 10, &big);
    for (uint64_t i = 0; i < 50000; i++) pd_bloom_add(c, key_hash(i, 7));
    CHECK(!pd_bloom_overfull(c));
    CHECK_INT((int)atomic_load(&big.used), (int)pd_bloom_bytes(c));
    pd_bloom_free(c);
}

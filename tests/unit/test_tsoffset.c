/* test_tsoffset.c -- the decision logic of the start-offset resolution
 * (tsoffset.h: pd_tsoff_plan, pd_tsoff_check), without a broker.
 *
 * Oracle: Kafka's definition computed here by brute force over a list of
 * record timestamps (the first offset stamped >= target, the end when
 * none is; a record without a timestamp counts as at or after), and the
 * rule "the answer stands when the record before it is stamped earlier
 * and the record at it is not". Every candidate answer of every small
 * partition is tried: the check must accept Kafka's answer, and accept
 * any other only when the boundary looks like Kafka's (non-monotonic
 * stamps: the check is local, tsoffset.h). */
#include "test.h"
#include "tsoffset.h"
#include "util.h"

#include <stdint.h>

/* the first offset in [lo, hi) stamped >= target; hi when none is */
static int64_t kafka_answer(const int64_t *ts, int64_t lo, int64_t hi, int64_t target)
{
    for (int64_t o = lo; o < hi; o++)
        if (ts[o] < 0 || ts[o] >= target) return o;
    return hi;
}

/* what the resolution would fetch for answer o: the records from `from`, up to `need` */
static const char *judge(const int64_t *ts, int64_t lo, int64_t hi, int64_t o, int64_t target)
{
    int64_t from = 0, offs[2] = {0}, got[2] = {0};
    int need = 0, n = 0;
    if (pd_tsoff_plan(lo, hi, o, &from, &need) == PD_OK)
        for (int64_t x = from; x < hi && n < need; x++, n++) {
            offs[n] = x;
            got[n] = ts[x];
        }
    return pd_tsoff_check(lo, hi, o, offs, got, n, target);
}

TEST(tsoffset_plan)
{
    int64_t from = -9;
    int need = -9;
    CHECK_INT(pd_tsoff_plan(0, 0, -1, &from, &need), PD_OK); /* empty: nothing to read */
    CHECK_INT(need, 0);
    CHECK_INT(pd_tsoff_plan(5, 10, -1, &from, &need), PD_OK); /* "none": the end; the last record */
    CHECK_INT(from, 9);
    CHECK_INT(need, 1);
    CHECK_INT(pd_tsoff_plan(5, 10, 5, &from, &need), PD_OK); /* the first record alone */
    CHECK_INT(from, 5);
    CHECK_INT(need, 1);
    CHECK_INT(pd_tsoff_plan(5, 10, 7, &from, &need), PD_OK); /* 6 and 7 */
    CHECK_INT(from, 6);
    CHECK_INT(need, 2);
    CHECK_INT(pd_tsoff_plan(5, 10, 4, &from, &need), PD_ERANGE); /* below the low watermark */
    CHECK_INT(pd_tsoff_plan(5, 10, 11, &from, &need), PD_ERANGE);
}

TEST(tsoffset_check_cases)
{
    /* stamps 100 300 200 400 50, target 250: Kafka's answer is 1 */
    const int64_t ts[] = {100, 300, 200, 400, 50};
    CHECK_INT(kafka_answer(ts, 0, 5, 250), 1);
    CHECK(judge(ts, 0, 5, 1, 250) == NULL);
    /* the mock's "none" (the end): the last record is older -- accepted
     * (a local check; the scan is not asked), with 50 < 250 */
    CHECK(judge(ts, 0, 5, -1, 250) == NULL);
    /* but with a newer last record "none" is refuted */
    const int64_t ts2[] = {100, 300, 200, 400, 260};
    CHECK(judge(ts2, 0, 5, -1, 250) != NULL);
    /* off by one either way */
    CHECK(judge(ts, 0, 5, 0, 250) != NULL);
    CHECK(judge(ts, 0, 5, 2, 250) != NULL);
    /* 3: the record before (200) is older and the one at it newer: locally right, not Kafka's */
    CHECK(judge(ts, 0, 5, 3, 250) == NULL);
    /* a record without timestamp counts as at or after */
    const int64_t ts3[] = {100, -1, 300};
    CHECK_INT(kafka_answer(ts3, 0, 3, 250), 1);
    CHECK(judge(ts3, 0, 3, 1, 250) == NULL);
    CHECK(judge(ts3, 0, 3, 2, 250) != NULL);
    /* missing or misplaced records refute */
    int64_t offs[2] = {3, 5}, got[2] = {100, 300};
    CHECK(pd_tsoff_check(0, 10, 5, offs, got, 2, 250) != NULL); /* nothing at 4 */
    offs[0] = 4;
    CHECK(pd_tsoff_check(0, 10, 5, offs, got, 2, 250) == NULL);
    CHECK(pd_tsoff_check(0, 10, 5, offs, got, 1, 250) != NULL); /* the record at 5 not read */
    offs[1] = 7;                                                /* a gap at 5, 6: the first visible record */
    CHECK(pd_tsoff_check(0, 10, 5, offs, got, 2, 250) == NULL);
    CHECK(pd_tsoff_check(0, 10, 5, offs, got, 0, 250) != NULL);
    CHECK(pd_tsoff_check(0, 10, 12, offs, got, 2, 250) != NULL); /* beyond the end */
    CHECK(pd_tsoff_check(6, 10, 5, offs, got, 2, 250) != NULL);  /* below the start */
    CHECK(pd_tsoff_at_or_after(-1, 5));
    CHECK(pd_tsoff_at_or_after(5, 5));
    CHECK(!pd_tsoff_at_or_after(4, 5));
}

/* Every partition of up to 6 records with stamps from {-1, 10, 20, 30},
 * every window [lo, hi), every target and every answer: Kafka's answer
 * always verifies; a verified answer o is a boundary (record o-1 older,
 * record o not) and, when stamps grow with offsets, Kafka's answer. */
TEST(tsoffset_check_exhaustive)
{
    static const int64_t vals[] = {-1, 10, 20, 30};
    int64_t ts[6];
    long verified_other = 0;
    for (int len = 0; len <= 6; len++) {
        int combos = 1;
        for (int i = 0; i < len; i++) combos *= 4;
        for (int c = 0; c < combos; c++) {
            int monotonic = 1;
            for (int i = 0, x = c; i < len; i++, x /= 4) {
                ts[i] = vals[x % 4];
                if (ts[i] < 0 || (i && ts[i] < ts[i - 1])) monotonic = 0;
            }
            for (int64_t lo = 0; lo <= len; lo++)
                for (int64_t target = 5; target <= 35; target += 5) {
                    const int64_t k = kafka_answer(ts, lo, len, target);
                    if (judge(ts, lo, len, k, target) != NULL) {
                        CHECK(!"Kafka's own answer refuted");
                        return;
                    }
                    if (k == len && judge(ts, lo, len, -1, target) != NULL) {
                        CHECK(!"Kafka's 'none' refuted when right");
                        return;
                    }
                    for (int64_t o = lo; o <= len; o++) {
                        if (o == k || judge(ts, lo, len, o, target) != NULL) continue;
                        verified_other++;
                        int boundary = (o == lo || (ts[o - 1] >= 0 && ts[o - 1] < target)) &&
                                       (o == len || ts[o] < 0 || ts[o] >= target);
                        if (!boundary || monotonic) {
                            CHECK(!"a wrong answer verified");
                            return;
                        }
                    }
                }
        }
    }
    CHECK(verified_other > 0); /* the local check's limit is real (tsoffset.h) */
}

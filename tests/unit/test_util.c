/* test_util.c -- murmur2 against Kafka's published vectors, UTF-8, calendar,
 * RFC 3339, varints, time zones, JSON string escaping and the number
 * formats. */
#include "test.h"
#include "util.h"

#include <math.h>
#include <stdlib.h>

TEST(murmur2_kafka_vectors)
{
    /* Expected values from Apache Kafka's UtilsTest.testMurmur2 (Java ints). */
    static const struct { const char *k; int32_t h; } v[] = {
        {"21", -973932308},
        {"foobar", -790332482},
        {"a-little-bit-long-string", -985981536},
        {"a-little-bit-longer-string", -1486304829},
        {"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971},
        {"abc", 479470107},
    };
    for (size_t i = 0; i < PD_ARRAY_LEN(v); i++)
        CHECK_INT((int32_t)pd_murmur2(v[i].k, strlen(v[i].k)), v[i].h);
}

TEST(murmur2_partition_to_positive)
{
    /* toPositive(h) = h & 0x7fffffff, then modulo. */
    int32_t h = -973932308; /* "21" */
    CHECK_INT(pd_partition_for("21", 2, 12), (int32_t)(((uint32_t)h & 0x7fffffffu) % 12u));
    CHECK_INT(pd_partition_for("21", 2, 1), 0);
    CHECK_INT(pd_partition_for("x", 1, 0), -1);
    /* Empty key is still hashed (Java hashes zero bytes: seed ^ 0 mixed). */
    CHECK(pd_partition_for("", 0, 7) >= 0);
}

TEST(utf8_validation)
{
    CHECK(pd_utf8_valid("plain", 5));
    CHECK(pd_utf8_valid("\xc3\xa4", 2));             /* ä */
    CHECK(pd_utf8_valid("\xe2\x82\xac", 3));         /* € */
    CHECK(pd_utf8_valid("\xf0\x9f\x9a\x97", 4));     /* 🚗 */
    CHECK(!pd_utf8_valid("\xc3", 1));                /* truncated */
    CHECK(!pd_utf8_valid("\xe2\x82", 2));
    CHECK(!pd_utf8_valid("\xc0\xaf", 2));            /* overlong */
    CHECK(!pd_utf8_valid("\xed\xa0\x80", 3));        /* surrogate */
    CHECK(!pd_utf8_valid("\xf4\x90\x80\x80", 4));    /* > U+10FFFF */
    CHECK(!pd_utf8_valid("\xff", 1));
    CHECK(!pd_utf8_valid("a\x80", 2));               /* stray continuation */
}

TEST(calendar_days)
{
    CHECK_INT(pd_days_from_civil(1970, 1, 1), 0);
    CHECK_INT(pd_days_from_civil(2000, 3, 1), 11017);
    CHECK_INT(pd_days_from_civil(2026, 11, 22), 20779);
    char d[16];
    pd_day_format(20779, d);
    CHECK_STR(d, "2026-11-22");
    pd_day_format(11016, d);
    CHECK_STR(d, "2000-02-29");
    int64_t day;
    CHECK_INT(pd_day_parse("2024-02-29", 10, &day), PD_OK);
    CHECK_INT(day, pd_days_from_civil(2024, 2, 29));
    CHECK_INT(pd_day_parse("2023-02-29", 10, &day), PD_EINVAL);
    CHECK_INT(pd_day_parse("2023-13-01", 10, &day), PD_EINVAL);
    CHECK_INT(pd_day_parse("2023-1-01", 9, &day), PD_EINVAL);
    CHECK_INT(pd_day_parse("2023/01/01", 10, &day), PD_EINVAL);
}

TEST(rfc3339)
{
    int64_t ms;
    const char *s = "2026-11-22T08:00:01Z";
    CHECK_INT(pd_ts_parse_rfc3339(s, strlen(s), &ms), PD_OK);
    CHECK_INT(ms, 20779LL * 86400000 + 8 * 3600000 + 1000);
    s = "2026-11-22T08:00:01.5+01:00";
    CHECK_INT(pd_ts_parse_rfc3339(s, strlen(s), &ms), PD_OK);
    CHECK_INT(ms, 20779LL * 86400000 + 7 * 3600000 + 1500);
    s = "2026-11-22T08:00:01.123456789-02:30";
    CHECK_INT(pd_ts_parse_rfc3339(s, strlen(s), &ms), PD_OK);
    CHECK_INT(ms, 20779LL * 86400000 + 10 * 3600000 + 30 * 60000 + 1123);
    const char *bad[] = {"2026-11-22", "2026-11-22T08:00:01", "2026-11-22T25:00:00Z", "2026-11-22T08:00:01.Z",
                         "2026-11-22T08:00:01+0100", "2026-11-22T08:00:01Zjunk", "x026-11-22T08:00:01Z"};
    for (size_t i = 0; i < PD_ARRAY_LEN(bad); i++)
        CHECK_INT(pd_ts_parse_rfc3339(bad[i], strlen(bad[i]), &ms), PD_EINVAL);
    char out[32];
    pd_ts_format(20779LL * 86400000 + 8 * 3600000 + 1001, out);
    CHECK_STR(out, "2026-11-22T08:00:01.001Z");
}

TEST(varints_and_zigzag)
{
    uint64_t vals[] = {0, 1, 127, 128, 300, 1ULL << 35, UINT64_MAX};
    for (size_t i = 0; i < PD_ARRAY_LEN(vals); i++) {
        pd_buf b = {0};
        pd_put_uvarint(&b, vals[i]);
        uint64_t out = 0;
        CHECK_INT(pd_get_uvarint((const uint8_t *)b.p, b.len, &out), (long long)b.len);
        CHECK(out == vals[i]);
        CHECK_INT(pd_get_uvarint((const uint8_t *)b.p, b.len - 1, &out), 0); /* truncated */
        pd_buf_free(&b);
    }
    CHECK(pd_zigzag(-1) == 1 && pd_zigzag(1) == 2 && pd_unzigzag(pd_zigzag(INT64_MIN)) == INT64_MIN);
}

TEST(timezones)
{
    pd_tz tz;
    char err[128];
    int64_t t = 20779LL * 86400000 + 23 * 3600000; /* 2026-11-22T23:00Z */
    CHECK_INT(pd_tz_parse(&tz, "UTC", err, sizeof err), PD_OK);
    CHECK_INT(pd_tz_day(&tz, t), 20779);
    CHECK_INT(pd_tz_parse(&tz, "+02:00", err, sizeof err), PD_OK);
    CHECK_INT(pd_tz_day(&tz, t), 20780);
    CHECK_INT(pd_tz_parse(&tz, "-05:00", err, sizeof err), PD_OK);
    CHECK_INT(pd_tz_day(&tz, 20779LL * 86400000 + 3600000), 20778);
    CHECK_INT(pd_tz_parse(&tz, "Mars/Olympus", err, sizeof err), PD_EINVAL);
    CHECK_INT(pd_tz_parse(&tz, "+25:00", err, sizeof err), PD_EINVAL);
    CHECK_INT(pd_tz_day(&(pd_tz){0, 0}, -1), -1);
}

TEST(json_string_escape)
{
    pd_buf b = {0};
    pd_buf_json_str(&b, "a\"b\\c\n\x01", 7);
    CHECK_STR(b.p, "\"a\\\"b\\\\c\\n\\u0001\"");
    pd_buf_free(&b);
}

/* pd_fmt_u64 / pd_fmt_i64 against printf: every power of ten and its
 * neighbours, the extremes, and random values of every bit length. */
static int fmt_int_check(uint64_t u)
{
    char got[PD_INT_TEXT_MAX], want[32];
    int bad = 0;
    size_t n = pd_fmt_u64(got, u);
    snprintf(want, sizeof want, "%llu", (unsigned long long)u);
    bad += n != strlen(want) || strcmp(got, want) != 0;
    int64_t v = (int64_t)u;
    n = pd_fmt_i64(got, v);
    snprintf(want, sizeof want, "%lld", (long long)v);
    bad += n != strlen(want) || strcmp(got, want) != 0;
    return bad;
}

TEST(fmt_integers_match_printf)
{
    int bad = 0;
    uint64_t p = 1;
    for (int k = 0; k <= 19; k++, p *= 10) bad += fmt_int_check(p - 1) + fmt_int_check(p) + fmt_int_check(p + 1);
    bad += fmt_int_check(0) + fmt_int_check(UINT64_MAX) + fmt_int_check((uint64_t)INT64_MAX) +
           fmt_int_check((uint64_t)INT64_MIN);
    uint64_t rng = 0x853C49E6748FEA9BULL;
    for (int i = 0; i < 200000; i++) {
        rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
        bad += fmt_int_check(rng >> (i % 64));
    }
    CHECK_INT(bad, 0);
}

/* ---- the one number format (pd_fmt_double) ----
 * Fixed cases: the expected texts were computed with Python's %-formatting
 * (its own dtoa, not glibc's printf) under the rule as util.h states it.
 * Random doubles of every exponent are checked against properties of the
 * rule that need no formatter of ours: the text reads back as exactly v;
 * integral values below 2^53 are the "%lld" text; at most 17 significant
 * digits, and more than 15 only when no 15-digit decimal ("%.14e") reads
 * back; no exponent for 1e-4 <= |v| < 1e15. */
static const struct {
    double v;
    const char *want;
} fmt_fixed[] = {
    {0.1, "0.1"},
    {0.2, "0.2"},
    {0.3, "0.3"},
    {1.0 / 3, "0.33333333333333331"},
    {2.0 / 3, "0.66666666666666663"},
    {-0.5, "-0.5"},
    {0.0001, "0.0001"},
    {9.99999999999999e-5, "9.99999999999999e-05"},
    {1e-5, "1e-05"},
    {0.00012345, "0.00012345"},
    {1234567890123.125, "1234567890123.125"},
    {123456789012345.5, "123456789012345.5"},
    {999999999999999.9, "999999999999999.88"},
    {9.9999999999999995, "10"},
    {0.99999999999999994, "0.99999999999999989"},
    {1e15 + 0.5, "1000000000000000.5"},
    {4503599627370495.5, "4503599627370495.5"},
    {9007199254740993.0, "9007199254740992"},
    {9007199254740992.0, "9007199254740992"},
    {-9007199254740991.0, "-9007199254740991"},
    {1e300, "1e+300"},
    {-1e-300, "-1e-300"},
    {5e-324, "4.94065645841247e-324"},
    {1.7976931348623157e308, "1.7976931348623157e+308"},
    {18990.333333333332, "18990.333333333332"},
    {12.353553390593273, "12.353553390593273"},
    {-0.0, "0"},
    {0.0, "0"},
    {42, "42"},
    {-42, "-42"},
    {1e15, "1000000000000000"},
    {1e16, "1e+16"},
    {1e21, "1e+21"},
    {0.099999999999999992, "0.099999999999999992"},
    {999999999999999.88, "999999999999999.88"},
    {2.0022, "2.0022"},
    {1795328747.333, "1795328747.333"},
    {0.1 + 0.2, "0.30000000000000004"},
    {100.5, "100.5"},
    {1e-7, "1e-07"},
};

/* Significant digits of a %g-style text (sign, point, exponent and
 * leading zeros not counted; trailing zeros of an integer part counted,
 * which only makes the check stricter). */
static int sig_digits(const char *t)
{
    int n = 0, lead = 1;
    for (; *t && *t != 'e'; t++) {
        if (*t < '0' || *t > '9') continue;
        if (lead && *t == '0') continue;
        lead = 0;
        n++;
    }
    return n ? n : 1;
}

static int fmt_double_props(double v)
{
    char got[PD_NUM_TEXT_MAX], t[64];
    size_t n = pd_fmt_double(got, v, 0);
    int bad = n != strlen(got) || strtod(got, NULL) != v;
    double a = fabs(v);
    if (v == trunc(v) && a < 9007199254740992.0) {
        snprintf(t, sizeof t, "%lld", (long long)v);
        bad += strcmp(got, t) != 0;
    } else {
        int sd = sig_digits(got);
        bad += sd > 17;
        snprintf(t, sizeof t, "%.14e", v);
        if (sd > 15) bad += strtod(t, NULL) == v; /* a 15-digit text would have done */
        if (a >= 1e-4 && a < 1e15) bad += strchr(got, 'e') != NULL;
    }
    if (bad) pd_test_fail(__FILE__, __LINE__, "%a: got \"%s\"", v, got);
    return bad;
}

TEST(fmt_double_rule)
{
    char got[PD_NUM_TEXT_MAX];
    for (size_t i = 0; i < PD_ARRAY_LEN(fmt_fixed); i++) {
        size_t n = pd_fmt_double(got, fmt_fixed[i].v, 0);
        CHECK_STR(got, fmt_fixed[i].want);
        CHECK_INT(n, strlen(fmt_fixed[i].want));
    }
    /* non-finite: null, or Prometheus's spellings */
    pd_fmt_double(got, NAN, 0);
    CHECK_STR(got, "null");
    pd_fmt_double(got, -INFINITY, 0);
    CHECK_STR(got, "null");
    pd_fmt_double(got, INFINITY, PD_NUM_PROM);
    CHECK_STR(got, "+Inf");
    pd_fmt_double(got, -INFINITY, PD_NUM_PROM);
    CHECK_STR(got, "-Inf");
    pd_fmt_double(got, NAN, PD_NUM_PROM);
    CHECK_STR(got, "NaN");
    pd_fmt_double(got, 0.25, PD_NUM_PROM);
    CHECK_STR(got, "0.25");
    pd_buf b = {0};
    PD_BUF_LIT(&b, "x=");
    pd_buf_put_double(&b, 18990.5, 0);
    CHECK_STR(b.p, "x=18990.5");
    pd_buf_free(&b);

    int bad = 0;
    uint64_t rng = 0x2545F4914F6CDD1DULL;
    for (int i = 0; i < 200000 && bad < 20; i++) {
        rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
        double v;
        memcpy(&v, &rng, sizeof v); /* any bit pattern: every exponent */
        if (isfinite(v)) bad += fmt_double_props(v);
        /* ratios like a mean of counts and prices, and integers */
        double x = (double)(rng % 100000000), y = (double)(rng >> 40) + 1;
        bad += fmt_double_props(x / y) + fmt_double_props(-x / y / 1000) + fmt_double_props(x);
        bad += fmt_double_props((double)(int64_t)rng); /* around and beyond 2^53 */
    }
    CHECK_INT(bad, 0);
}


/* pd_fmt_double's printf-free path against the rule computed by libc
 * (the oracle: snprintf "%.15g", strtod, "%.17g"), byte for byte, over
 * doubles where the path applies and around its edges: random bit
 * patterns in 1e-18..1e16, log-uniform magnitudes, ratios and log ratios
 * (scores), dyadic fractions (exact decimal ties at 15 and 17 digits),
 * neighbours of powers of ten and of 9.5, 99.5, ... (carries). */
static int fmt_vs_printf(double v)
{
    char got[PD_NUM_TEXT_MAX], want[64];
    size_t n = pd_fmt_double(got, v, 0);
    if (v == 0) v = 0;
    if (v == trunc(v) && fabs(v) < 9007199254740992.0) {
        snprintf(want, sizeof want, "%lld", (long long)v);
    } else {
        snprintf(want, sizeof want, "%.15g", v);
        if (strtod(want, NULL) != v) snprintf(want, sizeof want, "%.17g", v);
    }
    if (strcmp(got, want) != 0 || n != strlen(want)) {
        pd_test_fail(__FILE__, __LINE__, "%a: got \"%s\", printf rule \"%s\"", v, got, want);
        return 1;
    }
    return 0;
}

TEST(fmt_double_exact_matches_printf)
{
    int bad = 0;
    uint64_t rng = 0x9E3779B97F4A7C15ULL;
#define NEXT() (rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17)
    for (int i = 0; i < 300000 && bad < 20; i++) {
        NEXT();
        /* every bit pattern with a biased exponent for 2^-60..2^54 */
        uint64_t b = (rng & ((UINT64_C(1) << 52) - 1)) | ((uint64_t)(1023 - 60 + (int)((rng >> 52) % 115)) << 52);
        double v;
        memcpy(&v, &b, sizeof v);
        bad += fmt_vs_printf(v) + fmt_vs_printf(-v);
        /* log-uniform magnitudes and score-like values */
        double u = (double)(rng >> 11) / 9007199254740992.0;
        bad += fmt_vs_printf(pow(10.0, -18 + 34 * u));
        bad += fmt_vs_printf(log(((double)(rng % 1000) + 1) / ((double)(rng >> 50) + 1)));
        bad += fmt_vs_printf((double)(rng % 1000003) / (double)((rng >> 32) % 9973 + 1));
        /* dyadic fractions: odd / 2^j (decimal expansions that end in 5) */
        uint64_t odd = (rng >> 20) | 1;
        int j = (int)(rng % 60) + 1;
        bad += fmt_vs_printf(ldexp((double)(odd & ((UINT64_C(1) << 53) - 1)), -j));
        bad += fmt_vs_printf(ldexp((double)(odd % 100000000000000000ULL % (UINT64_C(1) << 53)), -(j % 20) - 1));
    }
    /* edges: powers of ten, carries (x.999.. -> 10^k), the path's range */
    for (int e = -20; e <= 17 && bad < 20; e++) {
        double p = pow(10.0, e);
        double c[] = {p, nextafter(p, 0), nextafter(p, 1e300), 9.5 * p, 0.95 * p, 9.9999999999999995 * p,
                      nextafter(9.5 * p, 0), nextafter(9.5 * p, 1e300)};
        for (size_t i = 0; i < PD_ARRAY_LEN(c); i++) {
            double v = c[i];
            for (int s = 0; s < 40; s++) {
                bad += fmt_vs_printf(v) + fmt_vs_printf(-v);
                v = nextafter(v, 1e300);
            }
        }
    }
#undef NEXT
    CHECK_INT(bad, 0);
}


/* pd_fmt_scaled against the rule itself: pd_fmt_double of the double
 * nearest to units / 10^d, for every share (0..10000 / 10^4, both signs)
 * and random units of every magnitude with 0..9 decimals, including the
 * edges of its fast path (1e-4, 10^15) and non-finite units. */
static int scaled_check(double units, int d)
{
    static const double p10[] = {1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9};
    char a[PD_NUM_TEXT_MAX], b[PD_NUM_TEXT_MAX];
    size_t na = pd_fmt_scaled(a, units, d), nb = pd_fmt_double(b, units / p10[d], 0);
    if (na != strlen(a) || na != nb || strcmp(a, b) != 0) {
        printf("    pd_fmt_scaled(%.17g, %d) = \"%s\", pd_fmt_double = \"%s\"\n", units, d, a, b);
        return 1;
    }
    return 0;
}

TEST(fmt_scaled_matches_fmt_double)
{
    int bad = 0;
    for (int k = -10000; k <= 10000 && bad < 5; k++) bad += scaled_check(k, 4);
    static const double edges[] = {0, 1, 9, 10, 99, 100, 999, 1000, 999999999999999.0, 1e15, 1e15 + 2,
                                   123456789012345.0, 9007199254740992.0, 1e300};
    for (size_t i = 0; i < PD_ARRAY_LEN(edges); i++)
        for (int d = 0; d <= 9; d++) bad += scaled_check(edges[i], d) + scaled_check(-edges[i], d);
    bad += scaled_check(INFINITY, 6) + scaled_check(-INFINITY, 6);
    uint64_t rng = 0x9E3779B97F4A7C15ULL;
    for (int i = 0; i < 300000 && bad < 5; i++) {
        rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
        int bits = (int)(rng % 53), d = (int)((rng >> 8) % 10);
        double u = (double)((rng >> 11) & ((1ULL << bits) - 1 + (1ULL << bits)));
        if (rng & (1ULL << 63)) u = -u;
        bad += scaled_check(u, d);
    }
    CHECK_INT(bad, 0);
}

/*
 * util.c -- allocation wrappers, error strings, logging, buffers, varints,
 * the one number format (pd_fmt_double), UTF-8 validation, calendar
 * arithmetic, Kafka's murmur2 partitioner, hex digits and percent-encoding.
 *
 * Everything here is pure or touches only stderr and the clock; no module
 * state. Calendar math uses Howard Hinnant's civil-from-days algorithm
 * (public domain description), valid for the whole int64 day range we use.
 */
#define _POSIX_C_SOURCE 200809L
#include "util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <pthread.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

int pd_log_quiet = 0;

_Noreturn void pd_oom(const char *file, int line, size_t n)
{
    fprintf(stderr, "profiled: out of memory allocating %zu bytes at %s:%d\n", n, file, line);
    abort();
}

void *pd_malloc_(size_t n, const char *file, int line)
{
    void *p = malloc(n ? n : 1);
    if (!p) pd_oom(file, line, n);
    return p;
}

void *pd_calloc_(size_t nmemb, size_t n, const char *file, int line)
{
    void *p = calloc(nmemb ? nmemb : 1, n ? n : 1);
    if (!p) pd_oom(file, line, nmemb * n);
    return p;
}

void *pd_realloc_(void *p, size_t n, const char *file, int line)
{
    void *q = realloc(p, n ? n : 1);
    if (!q) pd_oom(file, line, n);
    return q;
}

char *pd_strndup_(const char *s, size_t n, const char *file, int line)
{
    char *p = pd_malloc_(n + 1, file, line);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

void pd_assert_fail(const char *expr, const char *file, int line)
{
    fprintf(stderr, "profiled: assertion failed: %s (%s:%d)\n", expr, file, line);
    abort();
}

int pd_seterr(char *err, size_t errlen, int code, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return code;
}

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

void pd_log(const char *level, const char *fmt, ...)
{
    if (pd_log_quiet && level[0] == 'i') return;
    char ts[32];
    pd_ts_format(pd_now_ms(), ts);
    va_list ap;
    va_start(ap, fmt);
    pthread_mutex_lock(&log_lock);
    fprintf(stderr, "%s %-5s ", ts, level);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    pthread_mutex_unlock(&log_lock);
    va_end(ap);
}

int64_t pd_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void pd_thread_name(const char *name)
{
    (void)prctl(PR_SET_NAME, name, 0, 0, 0);
}

int pd_thread_nice(int nice)
{
    return setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), nice) == 0 ? PD_OK : PD_ERR;
}

void pd_stash_init(pd_stash *s)
{
    memset(s, 0, sizeof *s);
    pthread_mutex_init(&s->mu, NULL);
}

void *pd_stash_take(pd_stash *s)
{
    void *x = NULL;
    pthread_mutex_lock(&s->mu);
    if (s->n > 0) x = s->item[--s->n];
    pthread_mutex_unlock(&s->mu);
    return x;
}

int pd_stash_give(pd_stash *s, void *x)
{
    pthread_mutex_lock(&s->mu);
    int kept = s->n < PD_STASH_MAX;
    if (kept) s->item[s->n++] = x;
    pthread_mutex_unlock(&s->mu);
    return kept;
}

void pd_stash_drain(pd_stash *s, void (*destroy)(void *))
{
    for (int i = 0; i < s->n; i++) destroy(s->item[i]);
    s->n = 0;
    pthread_mutex_destroy(&s->mu);
}

int64_t pd_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ---- buffers ---- */

void pd_buf_grow(pd_buf *b, size_t extra)
{
    if (b->len + extra <= b->cap) return;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->len + extra) cap *= 2;
    b->p = pd_realloc(b->p, cap);
    b->cap = cap;
}

/* A plain loop: the two-digits-at-a-time version it replaced left the
 * worker's CPU per query within the noise (its own commit, 6558936: 4
 * interleaved pairs), so the "measured, or gone" rule retired it. */
size_t pd_fmt_u64(char *out, uint64_t u)
{
    char t[PD_INT_TEXT_MAX];
    size_t n = 0;
    do {
        t[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    for (size_t i = 0; i < n; i++) out[i] = t[n - 1 - i];
    out[n] = '\0';
    return n;
}

size_t pd_fmt_i64(char *out, int64_t v)
{
    if (v >= 0) return pd_fmt_u64(out, (uint64_t)v);
    out[0] = '-';
    return 1 + pd_fmt_u64(out + 1, (uint64_t)0 - (uint64_t)v);
}

/* The rule is stated in util.h (and docs/api.md). Until issue 18 the
 * query renderer computed the %.15g/%.17g digits in exact 128-bit integer
 * arithmetic for 1e-4 <= |v| < 1e15 (~40 ns against ~350 ns for snprintf +
 * strtod). It went by the "measured, or gone" rule: GET
 * /v1/profiles?days=30 on the 250k-event end-to-end data, 6 interleaved
 * pairs of 10 s wrk runs against workers on the same store, this printf
 * version over the emulation: worker CPU per query 1.03 1.01 0.95 1.07
 * 1.04 1.04, throughput 1.00 1.04 1.09 1.03 1.08 1.12 -- within the
 * run-to-run noise. (In-process rendering of the heaviest users, ~22
 * non-integers an answer, does show it: 6.8 against 10.7 us an answer.) */
#ifdef __SIZEOF_INT128__
/* pd_fmt_double's rule without printf for most non-integral doubles: the
 * same bytes as "%.15g" when that text reads back as v, else "%.17g".
 * v = m 2^e (m the 53-bit significand); v 10^k = m 5^k 2^(e+k) is an
 * exact 128-bit integer shifted right by -(e+k) bits, so the P-digit
 * decimal (correctly rounded, ties to even as glibc's printf) and its
 * exact distance to v come from integer arithmetic; the 15-digit text
 * reads back (strtod rounds correctly, ties to even) iff that distance is
 * below half an ulp, or equal to it and m is even. Covers normal v with
 * m != 2^52 and 0 <= k <= 32 (about 1e-16 <= |v| < 1e14); returns 0
 * otherwise, and the caller formats with printf. Unit test
 * fmt_double_exact_matches_printf compares it byte for byte with the
 * printf rule over ~2 million doubles. Measured: rank answers print one
 * unrounded score per candidate and nearly all fail the 15-digit round
 * trip (two snprintf and a strtod each, ~1.2 us; this path ~0.12 us).
 * In-process on the bench's 100-candidate body, render 86-97 -> 24-27 us;
 * end to end (bench step rank, interleaved N D N D N D against the same
 * build with the printf rule only) rank100 worker CPU 315-358 -> 254-280
 * us per request, medians 329 -> 266 (docs/BENCHMARKS.md "Issue 20", "The
 * exact printer alone"). */
typedef unsigned __int128 pd_u128;

static const uint64_t pow5_64[28] = {
    1ull, 5ull, 25ull, 125ull, 625ull, 3125ull, 15625ull, 78125ull, 390625ull, 1953125ull, 9765625ull,
    48828125ull, 244140625ull, 1220703125ull, 6103515625ull, 30517578125ull, 152587890625ull,
    762939453125ull, 3814697265625ull, 19073486328125ull, 95367431640625ull, 476837158203125ull,
    2384185791015625ull, 11920928955078125ull, 59604644775390625ull, 298023223876953125ull,
    1490116119384765625ull, 7450580596923828125ull};
static const uint64_t pow10_64[18] = {1ull, 10ull, 100ull, 1000ull, 10000ull, 100000ull, 1000000ull,
                                      10000000ull, 100000000ull, 1000000000ull, 10000000000ull,
                                      100000000000ull, 1000000000000ull, 10000000000000ull,
                                      100000000000000ull, 1000000000000000ull, 10000000000000000ull,
                                      100000000000000000ull};

static pd_u128 pow5(int k)
{
    return k <= 27 ? (pd_u128)pow5_64[k] : (pd_u128)pow5_64[27] * pow5_64[k - 27];
}

/* The P significant digits of m 2^e (P <= 17) as *q with decimal exponent
 * *xout (v ~ q 10^(xout - P + 1) after rounding); *reads_back (when not NULL): the
 * text reads back as v. Returns 0 when out of the covered range. */
static int digits_exact(uint64_t m, int e, int P, int x0, uint64_t *q, int *xout, int *reads_back)
{
    for (int x = x0; x <= x0 + 1; x++) {
        int k = P - 1 - x;
        if (k < 0 || k > 32) return 0;
        pd_u128 M = (pd_u128)m * pow5(k); /* < 2^53 5^32 < 2^128 */
        int t = e + k;
        pd_u128 n, r = 0, half = 0;
        int s = -t;
        if (t >= 0) {
            if (t > 64) return 0;
            n = M << t; /* exact: v 10^k is an integer */
        } else {
            if (s >= 127) return 0;
            n = M >> s;
            r = M - (n << s);
            half = (pd_u128)1 << (s - 1);
        }
        if (n >= (pd_u128)pow10_64[P]) continue; /* x0 one too low */
        if (n < (pd_u128)pow10_64[P - 1]) return 0; /* not expected: x0 is never too high */
        uint64_t d = (uint64_t)n;
        int up = t < 0 && (r > half || (r == half && (d & 1))); /* nearest, ties to even */
        d += (uint64_t)up;
        int xx = x;
        if (d == pow10_64[P]) { /* 9.99.. rounded up to 10.0.. */
            d = pow10_64[P - 1];
            xx = x + 1;
        }
        if (reads_back) {
            /* |d 2^s - M| (in units of 2^-s 10^-k) against half an ulp
             * of v, which is 5^k / 2 in those units */
            if (t >= 0) {
                *reads_back = 1; /* exact */
            } else {
                pd_u128 D = (pd_u128)(up ? (uint64_t)n + 1 : (uint64_t)n) << s;
                pd_u128 dist = D > M ? D - M : M - D, h5 = pow5(k);
                *reads_back = 2 * dist < h5 || (2 * dist == h5 && !(m & 1));
            }
        }
        *q = d;
        *xout = xx;
        return 1;
    }
    return 0;
}

/* printf's %.<P>g of the value q 10^(x - P + 1) (q has P digits). */
static size_t put_g(char *out, int neg, uint64_t q, int x, int P)
{
    char dig[20];
    for (int i = P - 1; i >= 0; i--) {
        dig[i] = (char)('0' + q % 10);
        q /= 10;
    }
    int nd = P;
    while (nd > 1 && dig[nd - 1] == '0') nd--; /* %g drops trailing zeros */
    size_t o = 0;
    if (neg) out[o++] = '-';
    if (x < -4 || x >= P) {
        out[o++] = dig[0];
        if (nd > 1) {
            out[o++] = '.';
            for (int i = 1; i < nd; i++) out[o++] = dig[i];
        }
        int ax = x < 0 ? -x : x;
        out[o++] = 'e';
        out[o++] = x < 0 ? '-' : '+';
        if (ax >= 100) out[o++] = (char)('0' + ax / 100);
        out[o++] = (char)('0' + ax / 10 % 10);
        out[o++] = (char)('0' + ax % 10);
    } else if (x >= 0) {
        for (int i = 0; i <= x; i++) out[o++] = i < nd ? dig[i] : '0';
        if (nd > x + 1) {
            out[o++] = '.';
            for (int i = x + 1; i < nd; i++) out[o++] = dig[i];
        }
    } else {
        out[o++] = '0';
        out[o++] = '.';
        for (int i = 0; i < -x - 1; i++) out[o++] = '0';
        for (int i = 0; i < nd; i++) out[o++] = dig[i];
    }
    out[o] = '\0';
    return o;
}

static size_t fmt_g_exact(char *out, double v)
{
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    int neg = (int)(bits >> 63), be = (int)((bits >> 52) & 0x7ff);
    uint64_t frac = bits & ((UINT64_C(1) << 52) - 1);
    if (be == 0 || be == 0x7ff || frac == 0) return 0; /* subnormal, non-finite, m == 2^52 */
    uint64_t m = frac | (UINT64_C(1) << 52);
    int e = be - 1075;
    /* floor(log10(2^(e+52))) = floor((e + 52) log10 2): the decimal
     * exponent of v or one less */
    int x0 = (int)(((int64_t)(e + 52) * 78913) >> 18);
    uint64_t q;
    int x, ok = 0;
    if (!digits_exact(m, e, 15, x0, &q, &x, &ok)) return 0;
    if (ok) return put_g(out, neg, q, x, 15);
    if (!digits_exact(m, e, 17, x0, &q, &x, NULL)) return 0;
    return put_g(out, neg, q, x, 17);
}
#endif

size_t pd_fmt_double(char *out, double v, unsigned flags)
{
    if (!isfinite(v)) {
        const char *t = !(flags & PD_NUM_PROM) ? "null" : isnan(v) ? "NaN" : v > 0 ? "+Inf" : "-Inf";
        size_t n = strlen(t);
        memcpy(out, t, n + 1);
        return n;
    }
    if (v == 0) v = 0; /* no "-0" */
    if (v == trunc(v) && fabs(v) < 9007199254740992.0) return pd_fmt_i64(out, (int64_t)v);
#ifdef __SIZEOF_INT128__
    size_t fn = fmt_g_exact(out, v);
    if (fn) return fn;
#endif
    int n = snprintf(out, PD_NUM_TEXT_MAX, "%.15g", v);
    if (strtod(out, NULL) != v) n = snprintf(out, PD_NUM_TEXT_MAX, "%.17g", v);
    return (size_t)n;
}

/* Kept beside the rule (not a second rule: the unit test
 * fmt_scaled_matches_fmt_double compares it with pd_fmt_double over every
 * share and random weighted counts) because shares are most of an answer's
 * non-integers. Measured (issue 18, `bench/measure.py --steps local`, worker
 * CPU per local query, df90727 against this tree, interleaved): with every
 * share through snprintf + strtod 43.5/54.3 42.3/55.8 43.1/47.1 us (ratios
 * 1.25 1.32 1.09); with this 40.2/47.2 45.6/46.2 44.5/45.3 us (1.17 1.01
 * 1.02). */
size_t pd_fmt_scaled(char *out, double units, int decimals)
{
    static const uint64_t p10[] = {1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000,
                                   1000000000};
    pd_assert(decimals >= 0 && decimals <= 9 && units == trunc(units));
    double a = fabs(units);
    if (!(a < 1e15) || (a != 0 && a * 1e4 < (double)p10[decimals]))
        return pd_fmt_double(out, units / (double)p10[decimals], 0);
    uint64_t u = (uint64_t)a, ip = u / p10[decimals], fp = u % p10[decimals];
    size_t n = 0;
    if (units < 0 && u) out[n++] = '-';
    n += pd_fmt_u64(out + n, ip);
    if (fp) {
        int d = decimals;
        while (fp % 10 == 0) fp /= 10, d--;
        out[n++] = '.';
        for (int i = d - 1; i >= 0; i--, fp /= 10) out[n + (size_t)i] = (char)('0' + fp % 10);
        n += (size_t)d;
        out[n] = '\0';
    }
    return n;
}

void pd_buf_put_scaled(pd_buf *b, double units, int decimals)
{
    pd_buf_reserve(b, PD_NUM_TEXT_MAX);
    b->len += pd_fmt_scaled(b->p + b->len, units, decimals);
}

void pd_buf_put_double(pd_buf *b, double v, unsigned flags)
{
    pd_buf_reserve(b, PD_NUM_TEXT_MAX); /* formatted in place, NUL included */
    b->len += pd_fmt_double(b->p + b->len, v, flags);
}

void pd_buf_puts(pd_buf *b, const char *s) { pd_buf_append(b, s, strlen(s)); }

void pd_buf_put_u64(pd_buf *b, uint64_t u)
{
    char t[PD_INT_TEXT_MAX];
    pd_buf_append(b, t, pd_fmt_u64(t, u));
}

void pd_buf_put_i64(pd_buf *b, int64_t v)
{
    char t[PD_INT_TEXT_MAX];
    pd_buf_append(b, t, pd_fmt_i64(t, v));
}

void pd_buf_printf(pd_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char tmp[256];
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n < sizeof tmp) {
        pd_buf_append(b, tmp, (size_t)n);
        return;
    }
    pd_buf_reserve(b, (size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void pd_buf_json_error(pd_buf *b, const char *error, const char *detail)
{
    PD_BUF_LIT(b, "{\"error\":");
    pd_buf_json_str(b, error, strlen(error));
    PD_BUF_LIT(b, ",\"detail\":");
    pd_buf_json_str(b, detail, strlen(detail));
    pd_buf_putc(b, '}');
}

void pd_buf_free(pd_buf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

void pd_buf_json_str(pd_buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    pd_buf_reserve(b, n + 3);
    b->p[b->len++] = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') {
            if (b->len + 2 > b->cap) pd_buf_reserve(b, 2);
            b->p[b->len++] = (char)c;
            continue;
        }
        char esc[7];
        size_t k = 0;
        esc[k++] = '\\';
        switch (c) {
        case '"': esc[k++] = '"'; break;
        case '\\': esc[k++] = '\\'; break;
        case '\n': esc[k++] = 'n'; break;
        case '\r': esc[k++] = 'r'; break;
        case '\t': esc[k++] = 't'; break;
        default:
            esc[k++] = 'u'; esc[k++] = '0'; esc[k++] = '0';
            esc[k++] = hex[c >> 4]; esc[k++] = hex[c & 15];
        }
        pd_buf_reserve(b, k + 2);
        memcpy(b->p + b->len, esc, k);
        b->len += k;
    }
    pd_buf_reserve(b, 2);
    b->p[b->len++] = '"';
    b->p[b->len] = '\0';
}

/* ---- varints and fixed-width integers ---- */

uint8_t *pd_uvarint_write(uint8_t *o, uint64_t v)
{
    while (v >= 0x80) {
        *o++ = (uint8_t)((v & 0x7f) | 0x80);
        v >>= 7;
    }
    *o++ = (uint8_t)v;
    return o;
}

void pd_put_uvarint(pd_buf *b, uint64_t v)
{
    pd_buf_reserve(b, PD_UVARINT_MAX + 1);
    uint8_t *o = (uint8_t *)b->p + b->len;
    b->len += (size_t)(pd_uvarint_write(o, v) - o);
}

size_t pd_get_uvarint(const uint8_t *p, size_t n, uint64_t *out)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n && i < 10; i++) {
        uint64_t c = p[i];
        if (i == 9 && c > 1) return 0; /* overflow */
        v |= (c & 0x7f) << (7 * i);
        if (!(c & 0x80)) {
            *out = v;
            return i + 1;
        }
    }
    return 0;
}

void pd_put_u32be(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}

uint32_t pd_get_u32be(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

void pd_put_u64be(uint8_t *p, uint64_t v)
{
    pd_put_u32be(p, (uint32_t)(v >> 32));
    pd_put_u32be(p + 4, (uint32_t)v);
}

uint64_t pd_get_u64be(const uint8_t *p)
{
    return (uint64_t)pd_get_u32be(p) << 32 | pd_get_u32be(p + 4);
}

/* ---- UTF-8 ---- */

int pd_utf8_valid(const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        if (c < 0x80) { i++; continue; }
        size_t need;
        uint32_t cp, min;
        if ((c & 0xe0) == 0xc0) { need = 1; cp = c & 0x1f; min = 0x80; }
        else if ((c & 0xf0) == 0xe0) { need = 2; cp = c & 0x0f; min = 0x800; }
        else if ((c & 0xf8) == 0xf0) { need = 3; cp = c & 0x07; min = 0x10000; }
        else return 0;
        if (need >= n - i) return 0; /* truncated sequence */
        for (size_t k = 1; k <= need; k++) {
            unsigned cc = s[i + k];
            if ((cc & 0xc0) != 0x80) return 0;
            cp = (cp << 6) | (cc & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
        i += need + 1;
    }
    return 1;
}

/* ---- calendar ---- */

int64_t pd_days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const unsigned yoe = (unsigned)(y - era * 400);
    const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

void pd_civil_from_days(int64_t z, int *y, unsigned *m, unsigned *d)
{
    z += 719468;
    const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    const unsigned doe = (unsigned)(z - era * 146097);
    const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    const int64_t yy = (int64_t)yoe + era * 400;
    const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int)(yy + (*m <= 2));
}

static void put_digits(char *out, unsigned v, int n)
{
    for (int i = n - 1; i >= 0; i--) {
        out[i] = (char)('0' + v % 10);
        v /= 10;
    }
}

void pd_day_format(int64_t day, char *out)
{
    int y;
    unsigned m, d;
    pd_civil_from_days(day, &y, &m, &d);
    put_digits(out, (unsigned)(y < 0 ? 0 : y), 4);
    out[4] = '-';
    put_digits(out + 5, m, 2);
    out[7] = '-';
    put_digits(out + 8, d, 2);
    out[10] = '\0';
}

static int digits(const char *s, size_t n, int *out)
{
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

static int days_in_month(int y, int m)
{
    static const int dm[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0)) return 29;
    return dm[m - 1];
}

int pd_day_parse(const char *s, size_t n, int64_t *day)
{
    int y, m, d;
    if (n != 10 || s[4] != '-' || s[7] != '-') return PD_EINVAL;
    if (digits(s, 4, &y) || digits(s + 5, 2, &m) || digits(s + 8, 2, &d)) return PD_EINVAL;
    if (y < 1970 || m < 1 || m > 12 || d < 1 || d > days_in_month(y, m)) return PD_EINVAL;
    *day = pd_days_from_civil(y, (unsigned)m, (unsigned)d);
    return PD_OK;
}

void pd_ts_format(int64_t ms, char *out)
{
    int64_t day = ms >= 0 ? ms / 86400000 : -((-ms + 86399999) / 86400000);
    unsigned rem = (unsigned)(ms - day * 86400000);
    pd_day_format(day, out);
    out[10] = 'T';
    put_digits(out + 11, rem / 3600000, 2);
    out[13] = ':';
    put_digits(out + 14, rem / 60000 % 60, 2);
    out[16] = ':';
    put_digits(out + 17, rem / 1000 % 60, 2);
    out[19] = '.';
    put_digits(out + 20, rem % 1000, 3);
    out[23] = 'Z';
    out[24] = '\0';
}

int pd_ts_parse_rfc3339(const char *s, size_t n, int64_t *ms)
{
    /* YYYY-MM-DDTHH:MM:SS[.frac](Z|+hh:mm|-hh:mm) */
    int64_t day;
    int hh, mi, ss;
    if (n < 20) return PD_EINVAL;
    if (pd_day_parse(s, 10, &day)) return PD_EINVAL;
    if (s[10] != 'T' && s[10] != 't' && s[10] != ' ') return PD_EINVAL;
    if (s[13] != ':' || s[16] != ':') return PD_EINVAL;
    if (digits(s + 11, 2, &hh) || digits(s + 14, 2, &mi) || digits(s + 17, 2, &ss)) return PD_EINVAL;
    if (hh > 23 || mi > 59 || ss > 60) return PD_EINVAL;
    if (ss == 60) ss = 59; /* leap second: clamp */
    size_t i = 19;
    int frac = 0, fd = 0;
    if (i < n && s[i] == '.') {
        i++;
        size_t st = i;
        while (i < n && s[i] >= '0' && s[i] <= '9') {
            if (fd < 3) { frac = frac * 10 + (s[i] - '0'); fd++; }
            i++;
        }
        if (i == st || i - st > 9) return PD_EINVAL;
        while (fd < 3) { frac *= 10; fd++; }
    }
    int64_t off = 0;
    if (i < n && (s[i] == 'Z' || s[i] == 'z')) {
        i++;
    } else if (i < n && (s[i] == '+' || s[i] == '-')) {
        int oh, om;
        if (n - i != 6 || s[i + 3] != ':') return PD_EINVAL;
        if (digits(s + i + 1, 2, &oh) || digits(s + i + 4, 2, &om) || oh > 23 || om > 59) return PD_EINVAL;
        off = (int64_t)(oh * 60 + om) * 60000;
        if (s[i] == '-') off = -off;
        i += 6;
    } else {
        return PD_EINVAL;
    }
    if (i != n) return PD_EINVAL;
    *ms = day * 86400000 + (int64_t)hh * 3600000 + mi * 60000 + ss * 1000 + frac - off;
    return PD_OK;
}

/* ---- Kafka murmur2 (as in the Java client's Utils.murmur2) ---- */

uint32_t pd_murmur2(const void *data, size_t len)
{
    const uint8_t *p = data;
    const uint32_t m = 0x5bd1e995;
    const int r = 24;
    uint32_t h = 0x9747b28cU ^ (uint32_t)len;
    size_t n4 = len / 4;
    for (size_t i = 0; i < n4; i++) {
        uint32_t k = (uint32_t)p[i * 4] | (uint32_t)p[i * 4 + 1] << 8 |
                     (uint32_t)p[i * 4 + 2] << 16 | (uint32_t)p[i * 4 + 3] << 24;
        k *= m;
        k ^= k >> r;
        k *= m;
        h *= m;
        h ^= k;
    }
    const uint8_t *t = p + n4 * 4;
    switch (len & 3) {
    case 3: h ^= (uint32_t)t[2] << 16; /* fall through */
    case 2: h ^= (uint32_t)t[1] << 8;  /* fall through */
    case 1: h ^= t[0]; h *= m;
    }
    h ^= h >> 13;
    h *= m;
    h ^= h >> 15;
    return h;
}

int32_t pd_partition_for(const void *key, size_t len, int32_t nparts)
{
    if (nparts <= 0) return -1;
    return (int32_t)((pd_murmur2(key, len) & 0x7fffffffU) % (uint32_t)nparts);
}

/* ---- time zones ---- */

int pd_tz_parse(pd_tz *tz, const char *spec, char *err, size_t errlen)
{
    memset(tz, 0, sizeof *tz);
    if (!*spec || strcmp(spec, "UTC") == 0 || strcmp(spec, "Z") == 0 || strcmp(spec, "Etc/UTC") == 0)
        return PD_OK;
    if ((spec[0] == '+' || spec[0] == '-') && strlen(spec) == 6 && spec[3] == ':') {
        int h, m;
        if (digits(spec + 1, 2, &h) || digits(spec + 4, 2, &m) || h > 23 || m > 59)
            return pd_seterr(err, errlen, PD_EINVAL, "timezone: bad offset '%s'", spec);
        tz->offset_ms = (int64_t)(h * 60 + m) * 60000 * (spec[0] == '-' ? -1 : 1);
        return PD_OK;
    }
    /* IANA name: must exist in the zoneinfo database. */
    char path[512] = "/usr/share/zoneinfo/";
    size_t sl = strlen(spec), pl = strlen(path);
    if (sl + pl >= sizeof path) return pd_seterr(err, errlen, PD_EINVAL, "timezone: name too long");
    memcpy(path + pl, spec, sl + 1);
    FILE *f = strstr(spec, "..") ? NULL : fopen(path, "rb");
    if (!f) return pd_seterr(err, errlen, PD_EINVAL, "timezone: unknown zone '%s' (use UTC, +HH:MM or an IANA name)", spec);
    fclose(f);
    setenv("TZ", spec, 1);
    tzset();
    tz->iana = 1;
    return PD_OK;
}

int64_t pd_tz_day(const pd_tz *tz, int64_t ms)
{
    int64_t off = tz->offset_ms;
    if (tz->iana) {
        time_t t = (time_t)(ms >= 0 ? ms / 1000 : -((-ms + 999) / 1000));
        struct tm tm;
        if (localtime_r(&t, &tm)) off = (int64_t)tm.tm_gmtoff * 1000;
    }
    int64_t l = ms + off;
    return l >= 0 ? l / 86400000 : -((-l + 86399999) / 86400000);
}

/* ---- hex digits and percent-encoding (RFC 3986) ---- */

int pd_hexval(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int pd_pct_decode(const char *s, size_t n, unsigned flags, char *out, size_t cap, size_t *outlen)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)s[i];
        if (c == '+' && (flags & PD_PCT_FORM)) {
            c = ' ';
        } else if (c == '%') {
            if (i + 2 >= n) return PD_EINVAL;
            int h1 = pd_hexval((unsigned char)s[i + 1]), h2 = pd_hexval((unsigned char)s[i + 2]);
            if (h1 < 0 || h2 < 0) return PD_EINVAL;
            c = h1 * 16 + h2;
            if (c == 0 && (flags & PD_PCT_NO_NUL)) return PD_EINVAL;
            i += 2;
        }
        if (k >= cap) return PD_ERANGE;
        out[k++] = (char)c;
    }
    *outlen = k;
    return PD_OK;
}

void pd_pct_encode(pd_buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    pd_buf_reserve(b, 3 * n + 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
            c == '_' || c == '~') {
            b->p[b->len++] = (char)c;
        } else {
            b->p[b->len++] = '%';
            b->p[b->len++] = hex[c >> 4];
            b->p[b->len++] = hex[c & 15];
        }
    }
    b->p[b->len] = '\0';
}

/*
 * util.h -- the one error convention, allocation wrappers, assertions and
 * small helpers shared by every module.
 *
 * Errors: every fallible function returns 0 (PD_OK) on success or a negative
 * PD_E* code, and, when given one, writes a human-readable message into a
 * caller-supplied `char *err, size_t errlen` buffer (the librdkafka errstr
 * way). Callers clean up with `goto out`.
 *
 * Allocation: pd_malloc/pd_calloc/pd_realloc/pd_strdup never return NULL;
 * allocation failure aborts in one place (pd_oom) with file and line.
 */
#ifndef PD_UTIL_H
#define PD_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>

enum {
    PD_OK = 0,
    PD_ERR = -1,       /* generic failure, see errstr */
    PD_EINVAL = -2,    /* invalid argument / input */
    PD_ENOTFOUND = -3, /* key, user, file not found */
    PD_EIO = -4,       /* storage or OS I/O failure */
    PD_ECORRUPT = -5,  /* encoded data failed validation */
    PD_ERANGE = -6,    /* value out of bounds */
    PD_EAGAIN = -7,    /* try again later (busy, restoring, unreachable) */
    PD_EAUTH = -8,     /* authentication failed (a MAC that does not verify) */
};

/* Reports a failed allocation of n bytes at file:line and aborts. */
_Noreturn void pd_oom(const char *file, int line, size_t n);
void *pd_malloc_(size_t n, const char *file, int line);
void *pd_calloc_(size_t nmemb, size_t n, const char *file, int line);
void *pd_realloc_(void *p, size_t n, const char *file, int line);
char *pd_strndup_(const char *s, size_t n, const char *file, int line);
#define pd_malloc(n) pd_malloc_((n), __FILE__, __LINE__)
#define pd_calloc(m, n) pd_calloc_((m), (n), __FILE__, __LINE__)
#define pd_realloc(p, n) pd_realloc_((p), (n), __FILE__, __LINE__)
#define pd_strndup(s, n) pd_strndup_((s), (n), __FILE__, __LINE__)
#define pd_strdup(s) pd_strndup_((s), strlen(s), __FILE__, __LINE__)
#define pd_free(p) free(p)

_Noreturn void pd_assert_fail(const char *expr, const char *file, int line);
#define pd_assert(e) ((e) ? (void)0 : pd_assert_fail(#e, __FILE__, __LINE__))

/* snprintf into err (may be NULL / errlen 0); returns `code` for chaining:
 * `return pd_seterr(err, errlen, PD_EINVAL, "bad %s", key);` */
int pd_seterr(char *err, size_t errlen, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Logging to stderr with a timestamp and level; level names: "info",
 * "warn", "error". pd_log_quiet suppresses info. */
extern int pd_log_quiet;
void pd_log(const char *level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
#define pd_info(...) pd_log("info", __VA_ARGS__)
#define pd_warn(...) pd_log("warn", __VA_ARGS__)
#define pd_error(...) pd_log("error", __VA_ARGS__)

/* Monotonic and wall clocks in milliseconds / microseconds. */
int64_t pd_now_ms(void);      /* CLOCK_REALTIME, epoch ms */
int64_t pd_mono_us(void);     /* CLOCK_MONOTONIC, microseconds */
/* Names the calling thread (at most 15 bytes show; ps -L, top -H, /proc). */
void pd_thread_name(const char *name);
/* Sets the nice value of the calling thread only (Linux: PRIO_PROCESS on a
 * thread id); threads it creates afterwards inherit it. PD_OK or PD_ERR
 * with errno set. */
int pd_thread_nice(int nice);

/* A stash: at most PD_STASH_MAX idle reusable objects (scratch buffers
 * worth keeping warm) shared by threads, handed out last in, first out so
 * the most recently used, cache-warm one goes first. pd_stash_take returns
 * one (now the caller's) or NULL when empty. pd_stash_give keeps x and
 * returns 1, or returns 0 when full (x stays the caller's, to free). The
 * stash owns what it keeps until pd_stash_drain, which calls destroy on
 * each and releases the stash's mutex (no take or give may follow). */
#define PD_STASH_MAX 8
typedef struct {
    pthread_mutex_t mu;
    int n;
    void *item[PD_STASH_MAX];
} pd_stash;
void pd_stash_init(pd_stash *s);
void *pd_stash_take(pd_stash *s);
int pd_stash_give(pd_stash *s, void *x);
void pd_stash_drain(pd_stash *s, void (*destroy)(void *));

/* Growable byte buffer. Owns `p`; pd_buf_free releases it. */
typedef struct {
    char *p;
    size_t len, cap;
} pd_buf;
/* Grows b->p to hold at least len + extra bytes (doubling). */
void pd_buf_grow(pd_buf *b, size_t extra);
/* The appenders run per event and per answer field: their fast path is
 * inline. Every append keeps p NUL-terminated. */
static inline void pd_buf_reserve(pd_buf *b, size_t extra)
{
    if (b->len + extra > b->cap) pd_buf_grow(b, extra);
}
static inline void pd_buf_append(pd_buf *b, const void *data, size_t n)
{
    pd_buf_reserve(b, n + 1);
    if (n) memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = '\0';
}
static inline void pd_buf_putc(pd_buf *b, char c)
{
    pd_buf_reserve(b, 2);
    b->p[b->len++] = c;
    b->p[b->len] = '\0';
}
/* Appends a string literal (its length known at compile time). */
#define PD_BUF_LIT(b, lit) pd_buf_append((b), "" lit, sizeof(lit) - 1)
void pd_buf_printf(pd_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void pd_buf_puts(pd_buf *b, const char *s);       /* a C string */
void pd_buf_put_u64(pd_buf *b, uint64_t u);       /* decimal, like %llu */
void pd_buf_put_i64(pd_buf *b, int64_t v);        /* decimal, like %lld */
void pd_buf_put_double(pd_buf *b, double v, unsigned flags); /* pd_fmt_double */
void pd_buf_free(pd_buf *b);
/* Append s as a JSON string literal (quotes + escapes). */
void pd_buf_json_str(pd_buf *b, const char *s, size_t n);
/* Appends the one JSON error shape of every API answer:
 * {"error":"<error>","detail":"<detail>"} (docs/api.md, "Errors"). */
void pd_buf_json_error(pd_buf *b, const char *error, const char *detail);

/* Decimal text of u / v (what %llu / %lld print) into out, which must
 * hold PD_INT_TEXT_MAX bytes; NUL-terminated, returns the length. */
#define PD_INT_TEXT_MAX 24
size_t pd_fmt_u64(char *out, uint64_t u);
size_t pd_fmt_i64(char *out, int64_t v);

/* The one number format of every output (API JSON, profilectl dump text
 * and JSON, /metrics; the rule is documented in docs/api.md, "Numbers"):
 *   - a finite integral v with |v| < 2^53 prints as an integer, without
 *     exponent or fraction ("18990", "-3"); -0 prints "0";
 *   - any other finite v prints as printf's "%.15g" when that text reads
 *     back (strtod) as exactly v, else as "%.17g" (which always does);
 *   - non-finite v prints "null", or with PD_NUM_PROM the Prometheus
 *     spellings "+Inf", "-Inf", "NaN" (the only exception to the rule).
 * Writes into out (PD_NUM_TEXT_MAX bytes), NUL-terminated; returns the
 * length. pd_buf_put_double appends the same text to a buffer. */
#define PD_NUM_TEXT_MAX 32
#define PD_NUM_PROM 1u
size_t pd_fmt_double(char *out, double v, unsigned flags);

/* pd_fmt_scaled: the text pd_fmt_double gives the double nearest to
 * units / 10^decimals, for an integral `units` (decimals 0..9) -- the form
 * of every value the renderer rounds to a fixed number of places (shares
 * to 4, weighted counts to 6). For |units| < 10^15 and a value that is 0 or
 * at least 1e-4 in magnitude it writes units' own digits with the point
 * inserted and trailing zeros dropped (that is what %.15g prints for a
 * decimal of at most 15 significant digits, DBL_DIG, and it reads back);
 * otherwise it calls pd_fmt_double. Same buffer contract as pd_fmt_double. */
size_t pd_fmt_scaled(char *out, double units, int decimals);
void pd_buf_put_scaled(pd_buf *b, double units, int decimals);

/* Varints (LEB128, unsigned) and zigzag. Decoders return bytes consumed, or
 * 0 on truncation/overflow. */
void pd_put_uvarint(pd_buf *b, uint64_t v);
/* Writes v as a LEB128 uvarint at o (room for PD_UVARINT_MAX bytes);
 * returns the byte after it. */
#define PD_UVARINT_MAX 10
uint8_t *pd_uvarint_write(uint8_t *o, uint64_t v);
size_t pd_get_uvarint(const uint8_t *p, size_t n, uint64_t *out);
static inline uint64_t pd_zigzag(int64_t v) { return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63); }
static inline int64_t pd_unzigzag(uint64_t v) { return (int64_t)(v >> 1) ^ -(int64_t)(v & 1); }
void pd_put_u32be(uint8_t *p, uint32_t v);
uint32_t pd_get_u32be(const uint8_t *p);
void pd_put_u64be(uint8_t *p, uint64_t v);
uint64_t pd_get_u64be(const uint8_t *p);

/* Returns 1 when [s, s+n) is valid UTF-8 (no overlongs, no surrogates,
 * <= U+10FFFF), else 0. */
int pd_utf8_valid(const char *s, size_t n);

/* Calendar helpers (proleptic Gregorian, UTC). day number = days since
 * 1970-01-01. */
int64_t pd_days_from_civil(int64_t y, unsigned m, unsigned d);
void pd_civil_from_days(int64_t z, int *y, unsigned *m, unsigned *d);
/* Formats day number as "YYYY-MM-DD" into out (>= 11 bytes). */
void pd_day_format(int64_t day, char *out);
/* Parses "YYYY-MM-DD"; returns PD_OK or PD_EINVAL. */
int pd_day_parse(const char *s, size_t n, int64_t *day);
/* Formats epoch ms as RFC 3339 UTC "2026-11-02T10:11:12.345Z" (>= 25 bytes) */
void pd_ts_format(int64_t ms, char *out);
/* Parses RFC 3339 ("2026-11-02T10:11:12Z", fraction and +hh:mm offset
 * allowed) into epoch ms; PD_OK or PD_EINVAL. */
int pd_ts_parse_rfc3339(const char *s, size_t n, int64_t *ms);

/* Kafka's Java default partitioner: murmur2 with seed 0x9747b28c,
 * toPositive(h) % nparts. */
uint32_t pd_murmur2(const void *data, size_t len);
int32_t pd_partition_for(const void *key, size_t len, int32_t nparts);

#define PD_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define PD_MIN(a, b) ((a) < (b) ? (a) : (b))
#define PD_MAX(a, b) ((a) > (b) ? (a) : (b))



/* Time zone that decides an event's day: UTC, a fixed offset, or an IANA
 * zone (via the process TZ; one IANA zone per process). */
typedef struct {
    int iana;            /* 1: use localtime_r with the process TZ */
    int64_t offset_ms;   /* fixed offset when !iana */
} pd_tz;
int pd_tz_parse(pd_tz *tz, const char *spec, char *err, size_t errlen);
/* Day number (days since 1970-01-01 in that zone) of epoch ms. */
int64_t pd_tz_day(const pd_tz *tz, int64_t ms);

/* Hex digits and percent-encoding (RFC 3986). pd_hexval: the value of hex
 * digit c (either case), or -1. pd_pct_decode decodes "%XX" escapes of
 * s[0..n) into out (cap bytes; not NUL-terminated), *outlen = decoded
 * length. Flags: PD_PCT_FORM decodes '+' as a space (query strings,
 * application/x-www-form-urlencoded; in a path '+' is literal);
 * PD_PCT_NO_NUL rejects "%00". PD_EINVAL on a '%' not followed by two hex
 * digits (or a rejected NUL), PD_ERANGE when the result exceeds cap (out
 * never does). pd_pct_encode appends s[0..n) with every byte but the
 * unreserved ones (ALPHA DIGIT - . _ ~) as "%XX" (upper case). */
int pd_hexval(int c);
#define PD_PCT_FORM 1u
#define PD_PCT_NO_NUL 2u
int pd_pct_decode(const char *s, size_t n, unsigned flags, char *out, size_t cap, size_t *outlen);
void pd_pct_encode(pd_buf *b, const char *s, size_t n);
#endif

/*
 * event.c -- parse and validate one interaction event (pure function).
 *
 * Design. pd_event_parse turns one Kafka record value into a pd_event, or
 * rejects it with exactly one pd_ev_reason and a message that names the
 * field, what was expected and what was found. It does no I/O and keeps no
 * state between calls (per-thread scratch memory aside, see below).
 *
 * Checks run in a fixed order and the first failure decides the reason:
 *   1. empty value, 2. over max_bytes, 3. whole value not valid UTF-8,
 *   4. not JSON (including trailing non-whitespace after the value),
 *   5. top level not an object,
 *   6. user_id, 7. ts, 8. type, 9. event_id,
 *   10. attribute containers (the first segment of every schema path of
 *       depth >= 2, i.e. "item" / "filters"): present and neither object nor
 *       null -> bad_attr_container.
 * For the required fields user_id, ts and type, JSON null is treated the
 * same as a missing key (missing_*); for event_id null means absent.
 * Object members are looked up by their decoded key; when a key repeats,
 * the FIRST member with that key counts.
 *
 * Attributes. For each dimension the schema's paths are tried in order. A
 * path whose value (or any container on the way) is missing or null is
 * skipped; the first path with a present, non-null value decides the
 * attribute, even if that value has the wrong type (then PD_ATTR_BAD, no
 * fall-through to later paths). A non-object, non-null container below
 * the top level also makes the attribute PD_ATTR_BAD.
 *   categorical: string 1..PD_MAX_CAT_VALUE bytes of valid UTF-8;
 *                finite number -> "%lld" when integral and |v| < 2^53,
 *                else "%.17g";
 *                true/false -> "true"/"false".
 *   numeric:     finite number.
 *   Everything else (objects, arrays, empty or over-long strings, booleans
 *   or strings for numeric dimensions, non-finite numbers) is PD_ATTR_BAD
 *   and counted in ev->n_bad_attrs; the event stays valid.
 *
 * The JSON dialect: RFC 8259, strictly (docs/data-model.md, "Event JSON"):
 *   - UTF-8 without a byte order mark; the whole value is UTF-8-validated
 *     first (overlong forms, UTF-8-encoded surrogates and code points over
 *     U+10FFFF are invalid_utf8), then parsed;
 *   - whitespace is space, tab, LF and CR only, before, between and after
 *     tokens; nothing but whitespace after the top-level value;
 *   - null / true / false exactly; numbers per the RFC grammar
 *     -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? with no length limit
 *     (no leading zeros, '+', '.5', '1.', hex, NaN or Infinity). Values are
 *     the correctly rounded double (strtod in the C locale); a magnitude
 *     beyond the double range is syntactically valid and reads as +-inf,
 *     which every field rule rejects (ts: bad_ts_format; attributes: bad);
 *   - strings: no raw bytes below 0x20; escapes \" \\ \/ \b \f \n \r \t and
 *     \uXXXX with exactly four hex digits; a \u escape of a high surrogate
 *     must be followed by one of a low surrogate, and a low surrogate alone
 *     is invalid. \u0000 is a NUL byte inside the decoded string, which
 *     keeps its full length (keys compare by their decoded bytes);
 *   - at most NESTING_LIMIT (64) nested arrays/objects, the top level
 *     included;
 *   - duplicate keys are allowed (RFC: SHOULD be unique); the FIRST member
 *     with a given key counts, everywhere.
 * Every decoded string is valid UTF-8 (the input is, and escapes decode
 * only to scalar values). tests/json_corpus.py labels a corpus of valid and
 * invalid documents with Python's json module made strict, and the unit
 * test event_json_corpus requires the same verdict from this scanner and,
 * on documents both accept, the same fields as a cJSON-based extraction
 * (tests/unit/event_cjson.c).
 *
 * Implementation. Pass 1 (scan_doc) validates the whole document in one
 * pass without recursion and writes a tape: one 16-byte token per value or
 * key, in document order. A container's token records the index just past
 * its last descendant; an object key's token records the index of the
 * object's next key and a 16-bit hash of its bytes, so member lookup walks
 * keys only and touches the bytes of a key only when the hash matches. A
 * string token keeps the raw byte range and whether it needs decoding (it
 * contains a backslash); string ends are found eight bytes at
 * a time, and escapes are decoded (str_decode) only for such strings and
 * only when pass 2 reads them. Pass 2 does the lookups above on the tape:
 * keys without escapes compare directly against the raw bytes; an object
 * of 9..32 members without escaped keys (the attribute containers) gets a
 * small hash index on its first lookup, since every dimension looks into
 * it; numbers are converted only when read (decimals of at most 15 digits
 * without exponent exactly in place, anything else by strtod on a
 * NUL-terminated copy). Measured with callgrind on generated events
 * (built-in schema, ~390 bytes): about 19k instructions per event for
 * parse+validate+free, against about 30k for a bare cJSON parse+delete.
 *
 * Memory. The tape, the container stack and a scratch buffer (long number
 * runs, decoded ts strings) are per thread, reused and grown on demand,
 * released when they grew past TLS_KEEP_BYTES (a pathological event) and
 * when the thread exits: no allocation in steady state. Strings the event
 * returns are copied into ev->text_ (2 KB); an event whose extracted
 * strings do not fit (only possible with many long values) gets one heap
 * block of the worst-case size, freed by pd_event_free.
 */
#include "event.h"

#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "sketch.h"
#include "util.h"

#define PD_EV_DEFAULT_MAX_BYTES ((size_t)1 << 20)
#define TWO_POW_53 9007199254740992.0
#define TWO_POW_63 9223372036854775808.0
#define NESTING_LIMIT 64                 /* arrays/objects, the top level included */
#define TAPE_MIN 256                     /* tokens */
#define TLS_KEEP_BYTES ((size_t)1 << 20) /* larger per-thread buffers are released */
/* Worst case of the text an event returns: user_id, event_id, type, one
 * categorical value per dimension and the "recent" item id, each
 * NUL-terminated. */
#define TEXT_MAX (PD_MAX_USER_ID + PD_MAX_EVENT_ID + PD_MAX_TYPE + 3 + \
                  (PD_MAX_DIMS + 1) * (PD_MAX_CAT_VALUE + 1))

/* ---- the tape ---- */

/* the public kinds of pd_json_doc (event.h) */
#define TK_NULL PD_JTOK_NULL
#define TK_FALSE PD_JTOK_FALSE
#define TK_TRUE PD_JTOK_TRUE
#define TK_NUM PD_JTOK_NUM
#define TK_STR PD_JTOK_STR
#define TK_ARR PD_JTOK_ARR
#define TK_OBJ PD_JTOK_OBJ

/* A token (pd_json_tok_ in event.h, where pd_json_doc's inline accessors
 * read it):
 *   off   TK_STR: first byte after the opening quote; TK_NUM: first byte
 *   len   TK_STR: raw bytes before the closing quote; TK_NUM: run length
 *   next  a value: index of the first token after it and its descendants;
 *         an object key: index of the object's next key, or the object's
 *         end (so member lookup walks keys only)
 *   kind  TK_*
 *   esc   TK_STR: holds a backslash escape, decode before use
 *   hash  object key without esc: key_hash of its bytes */
typedef pd_json_tok_ ev_tok;

/* Per-thread reusable memory (see the design comment). */
typedef struct {
    ev_tok *tok;
    size_t cap;                     /* tokens */
    uint32_t stack[NESTING_LIMIT];  /* open containers: token index */
    uint32_t lastkey[NESTING_LIMIT]; /* open objects: token index of the last key, or 0 */
    char *scratch;
    size_t scratch_cap;
} ev_tls;

static __thread ev_tls *tl_state;
static pthread_key_t tls_key;
static pthread_once_t tls_once = PTHREAD_ONCE_INIT;

static void tls_destroy(void *arg)
{
    ev_tls *t = arg;
    free(t->tok);
    free(t->scratch);
    free(t);
}

/* strtod in the C locale whatever the process locale is: '.' is the
 * decimal point of JSON numbers in every locale. */
static locale_t c_locale;

static void tls_init_once(void)
{
    int rc = pthread_key_create(&tls_key, tls_destroy);
    pd_assert(rc == 0);
    c_locale = newlocale(LC_ALL_MASK, "C", (locale_t)0);
    pd_assert(c_locale != (locale_t)0);
}

static ev_tls *tls_get(void)
{
    ev_tls *t = tl_state;
    if (t) return t;
    pthread_once(&tls_once, tls_init_once);
    t = pd_calloc(1, sizeof *t);
    t->cap = TAPE_MIN;
    t->tok = pd_malloc(t->cap * sizeof *t->tok);
    tl_state = t;
    pthread_setspecific(tls_key, t);
    return t;
}

/* Scratch of at least n bytes; contents are not kept. */
static char *tls_scratch(ev_tls *t, size_t n)
{
    if (t->scratch_cap < n) {
        size_t cap = t->scratch_cap ? t->scratch_cap : 256;
        while (cap < n) cap *= 2;
        free(t->scratch);
        t->scratch = pd_malloc(cap);
        t->scratch_cap = cap;
    }
    return t->scratch;
}

/* Releases per-thread buffers that a pathological event made large. */
static void tls_trim(ev_tls *t)
{
    if (t->cap * sizeof *t->tok > TLS_KEEP_BYTES) {
        free(t->tok);
        t->cap = TAPE_MIN;
        t->tok = pd_malloc(t->cap * sizeof *t->tok);
    }
    if (t->scratch_cap > TLS_KEEP_BYTES) {
        free(t->scratch);
        t->scratch = NULL;
        t->scratch_cap = 0;
    }
}

static const char *const reason_names[PD_EV__COUNT] = {
    [PD_EV_OK] = "ok",
    [PD_EV_EMPTY] = "empty",
    [PD_EV_TOO_LARGE] = "too_large",
    [PD_EV_INVALID_JSON] = "invalid_json",
    [PD_EV_NOT_OBJECT] = "not_object",
    [PD_EV_INVALID_UTF8] = "invalid_utf8",
    [PD_EV_MISSING_USER_ID] = "missing_user_id",
    [PD_EV_BAD_USER_ID_TYPE] = "bad_user_id_type",
    [PD_EV_EMPTY_USER_ID] = "empty_user_id",
    [PD_EV_USER_ID_TOO_LONG] = "user_id_too_long",
    [PD_EV_MISSING_TS] = "missing_ts",
    [PD_EV_BAD_TS_TYPE] = "bad_ts_type",
    [PD_EV_BAD_TS_FORMAT] = "bad_ts_format",
    [PD_EV_TS_OUT_OF_RANGE] = "ts_out_of_range",
    [PD_EV_MISSING_TYPE] = "missing_type",
    [PD_EV_BAD_TYPE_TYPE] = "bad_type_type",
    [PD_EV_EMPTY_TYPE] = "empty_type",
    [PD_EV_TYPE_TOO_LONG] = "type_too_long",
    [PD_EV_BAD_EVENT_ID] = "bad_event_id",
    [PD_EV_BAD_ATTR_CONTAINER] = "bad_attr_container",
    [PD_EV_FUTURE_TS] = "future_ts",
    [PD_EV_FUTURE_TIMESTAMP] = "future_timestamp",
    [PD_EV_BAD_ERASURE] = "bad_erasure",
    [PD_EV_BAD_CONTROL] = "bad_control",
};

const char *pd_ev_reason_name(int reason)
{
    if (reason < 0 || reason >= PD_EV__COUNT || !reason_names[reason]) return "unknown";
    return reason_names[reason];
}

/* JSON type name of a token kind, for error messages. */
static const char *kind_name(int k)
{
    switch (k) {
    case TK_STR: return "string";
    case TK_NUM: return "number";
    case TK_OBJ: return "object";
    case TK_ARR: return "array";
    case TK_TRUE:
    case TK_FALSE: return "boolean";
    case TK_NULL: return "null";
    default: return "invalid";
    }
}

/* Length of the all-ASCII prefix of [s, s+n), 32 then eight bytes at a
 * time (with the one-compare whitespace skip below: in-process scan of the
 * 40 KB rank body 48.7-49.4 -> 46.4-46.5 us). The
 * first non-ASCII byte always starts a UTF-8 sequence, so validation can
 * resume there. */
static size_t ascii_prefix(const char *s, size_t n)
{
    size_t i = 0;
    for (; i + 32 <= n; i += 32) { /* 32 bytes per test: a rank body is mostly ASCII */
        uint64_t w[4];
        memcpy(w, s + i, 32);
        if ((w[0] | w[1] | w[2] | w[3]) & UINT64_C(0x8080808080808080)) break;
    }
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        if (w & UINT64_C(0x8080808080808080)) break;
    }
    while (i < n && !((unsigned char)s[i] & 0x80)) i++;
    return i;
}

/* Resets the public fields and the text buffers (after freeing heap_);
 * attrs[] past nattrs are never read, so they are left alone. */
static void ev_reset(pd_event *ev)
{
    ev->user_id = ev->event_id = ev->type = NULL;
    ev->user_id_len = ev->event_id_len = ev->type_len = 0;
    ev->ts_ms = 0;
    ev->okey = 0;
    ev->nattrs = 0;
    ev->n_bad_attrs = 0;
    ev->item_id = NULL;
    ev->item_id_len = 0;
    ev->heap_ = NULL;
    ev->text_used_ = ev->heap_used_ = 0;
}

/* Room for n bytes plus a NUL in the event's text: text_ while it fits,
 * else the heap block (allocated once, of the worst-case size). */
static char *ev_text(pd_event *ev, size_t n)
{
    char *p;
    if (n + 1 <= PD_EV_TEXT_INLINE - ev->text_used_) {
        p = ev->text_ + ev->text_used_;
        ev->text_used_ += (uint32_t)(n + 1);
        return p;
    }
    if (!ev->heap_) ev->heap_ = pd_malloc(TEXT_MAX);
    pd_assert(n + 1 <= TEXT_MAX - ev->heap_used_);
    p = ev->heap_ + ev->heap_used_;
    ev->heap_used_ += (uint32_t)(n + 1);
    return p;
}

static const char *ev_copy(pd_event *ev, const char *s, size_t n)
{
    char *p = ev_text(ev, n);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

/* ---- pass 1: the validating scanner ---- */

/* A 16-bit hash of a key from its length and three of its bytes: O(1), and
 * enough to skip nearly every non-matching member without touching its
 * bytes. */
static inline uint16_t key_hash(const unsigned char *k, size_t n)
{
    if (n == 0) return 0;
    return (uint16_t)((n * 0x9E37u) ^ ((unsigned)k[0] << 8) ^ ((unsigned)k[n / 2] << 4) ^ k[n - 1]);
}

/* Bytes a string scan stops at: quote, backslash, control bytes. */
static const uint8_t str_stop[256] = {
    [0x00] = 1, [0x01] = 1, [0x02] = 1, [0x03] = 1, [0x04] = 1, [0x05] = 1, [0x06] = 1,
    [0x07] = 1, [0x08] = 1, [0x09] = 1, [0x0a] = 1, [0x0b] = 1, [0x0c] = 1, [0x0d] = 1,
    [0x0e] = 1, [0x0f] = 1, [0x10] = 1, [0x11] = 1, [0x12] = 1, [0x13] = 1, [0x14] = 1,
    [0x15] = 1, [0x16] = 1, [0x17] = 1, [0x18] = 1, [0x19] = 1, [0x1a] = 1, [0x1b] = 1,
    [0x1c] = 1, [0x1d] = 1, [0x1e] = 1, [0x1f] = 1, ['"'] = 1, ['\\'] = 1,
};
/* JSON whitespace (RFC 8259 ws). */
static const uint8_t ws_char[256] = {[' '] = 1, ['\t'] = 1, ['\n'] = 1, ['\r'] = 1};
/* Bytes of a number run. */
static const uint8_t num_char[256] = {
    ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1,
    ['7'] = 1, ['8'] = 1, ['9'] = 1, ['+'] = 1, ['-'] = 1, ['e'] = 1, ['E'] = 1, ['.'] = 1,
};

typedef struct {
    const unsigned char *b;
    size_t n, p;        /* input, length, position */
    ev_tls *t;          /* tape owner */
    size_t ntok;
    size_t depth;       /* open containers */
    const char *what;   /* on failure: what was expected / wrong */
    size_t bad_len;     /* on failure: bytes of the bad token at p to quote, or 0 */
    ev_tok *tok;        /* t->tok and t->cap, kept here while scanning: the
                           tape's byte stores could alias t's fields, and
                           reloading them per token cost ~6 % of a scan */
    size_t cap;
} scanner;

/* The code of \uXXXX's four hex digits at s, or -1 when any is not hex. */
static long hex4(const unsigned char *s)
{
    long h = 0;
    for (int i = 0; i < 4; i++) {
        int v = pd_hexval(s[i]);
        if (v < 0) return -1;
        h = (h << 4) | v;
    }
    return h;
}

/* Checks the escapes of the raw string b[s, e) (e: the closing quote) in
 * decoding order. Returns 0, or -1 with *at set to the failing escape. */
static int str_check(const unsigned char *b, size_t s, size_t e, size_t *at, const char **what)
{
    size_t i = s;
    while (i < e) {
        if (b[i] != '\\') {
            i++;
            continue;
        }
        *at = i;
        switch (b[i + 1]) { /* i + 1 <= e: b[e] is the quote */
        case 'b': case 'f': case 'n': case 'r': case 't': case '"': case '\\': case '/':
            i += 2;
            break;
        case 'u': {
            long c1 = e - i < 6 ? -1 : hex4(b + i + 2);
            if (c1 < 0) {
                *what = "\\u escape without four hex digits";
                return -1;
            }
            if (c1 >= 0xDC00 && c1 <= 0xDFFF) {
                *what = "lone low surrogate escape";
                return -1;
            }
            if (c1 >= 0xD800 && c1 <= 0xDBFF) {
                size_t j = i + 6;
                if (e - j < 6 || b[j] != '\\' || b[j + 1] != 'u') {
                    *what = "high surrogate escape not followed by \\u";
                    return -1;
                }
                long c2 = hex4(b + j + 2);
                if (c2 < 0xDC00 || c2 > 0xDFFF) {
                    *what = "high surrogate escape not followed by a low surrogate";
                    return -1;
                }
                i += 12;
            } else {
                i += 6;
            }
            break;
        }
        default:
            *what = "invalid escape";
            return -1;
        }
    }
    return 0;
}

/* Decodes the raw string b[s, e) (already checked by str_check) into out,
 * stopping once at least `cap` bytes are written (out needs cap + 4 bytes;
 * cap >= e - s decodes all). \u0000 decodes to a NUL byte like any other
 * code point. Returns the number of bytes written. */
static size_t str_decode(const unsigned char *b, size_t s, size_t e, char *out, size_t cap)
{
    size_t i = s, o = 0;
    while (i < e && o < cap) {
        unsigned char c = b[i];
        if (c != '\\') {
            out[o++] = (char)c;
            i++;
            continue;
        }
        unsigned long cp;
        switch (b[i + 1]) {
        case 'b': out[o++] = '\b'; i += 2; continue;
        case 'f': out[o++] = '\f'; i += 2; continue;
        case 'n': out[o++] = '\n'; i += 2; continue;
        case 'r': out[o++] = '\r'; i += 2; continue;
        case 't': out[o++] = '\t'; i += 2; continue;
        case 'u': break;
        default: out[o++] = (char)b[i + 1]; i += 2; continue; /* " \ / */
        }
        cp = (unsigned long)hex4(b + i + 2);
        if (cp >= 0xD800 && cp <= 0xDBFF) {
            cp = 0x10000 + (((cp & 0x3FF) << 10) | ((unsigned long)hex4(b + i + 8) & 0x3FF));
            i += 12;
        } else {
            i += 6;
        }
        if (cp < 0x80) {
            out[o++] = (char)cp;
        } else if (cp < 0x800) {
            out[o++] = (char)(0xC0 | (cp >> 6));
            out[o++] = (char)(0x80 | (cp & 0x3F));
        } else if (cp < 0x10000) {
            out[o++] = (char)(0xE0 | (cp >> 12));
            out[o++] = (char)(0x80 | ((cp >> 6) & 0x3F));
            out[o++] = (char)(0x80 | (cp & 0x3F));
        } else {
            out[o++] = (char)(0xF0 | (cp >> 18));
            out[o++] = (char)(0x80 | ((cp >> 12) & 0x3F));
            out[o++] = (char)(0x80 | ((cp >> 6) & 0x3F));
            out[o++] = (char)(0x80 | (cp & 0x3F));
        }
    }
    return o;
}

static void tape_grow(ev_tls *t)
{
    t->cap *= 2;
    t->tok = pd_realloc(t->tok, t->cap * sizeof *t->tok);
}

/* Appends a token; returns its index. */
static inline size_t tok_push(scanner *sc, int kind, size_t off, size_t len)
{
    if (sc->ntok == sc->cap) {
        tape_grow(sc->t);
        sc->tok = sc->t->tok;
        sc->cap = sc->t->cap;
    }
    size_t i = sc->ntok++;
    sc->tok[i] = (ev_tok){(uint32_t)off, (uint32_t)len, (uint32_t)(i + 1), (uint8_t)kind, 0, 0};
    return i;
}

static inline void skip_ws(scanner *sc)
{
    /* a byte above ' ' (the common case: none or one space) ends it at once */
    while (sc->p < sc->n && sc->b[sc->p] <= ' ' && ws_char[sc->b[sc->p]]) sc->p++;
}

/* Non-zero when the 8 bytes of w hold a quote, a backslash or a control
 * byte (< 0x20); the lowest set bit is then in the first such byte (in
 * memory order on little-endian machines: borrows only propagate upwards,
 * so only bytes after the first hit can be flagged wrongly). */
static inline uint64_t swar_stop(uint64_t w)
{
    const uint64_t ones = UINT64_C(0x0101010101010101), highs = UINT64_C(0x8080808080808080);
    uint64_t q = w ^ UINT64_C(0x2222222222222222), bs = w ^ UINT64_C(0x5c5c5c5c5c5c5c5c);
    return (((w - UINT64_C(0x2020202020202020)) & ~w) | ((q - ones) & ~q) | ((bs - ones) & ~bs)) &
           highs;
}

#if defined(__GNUC__) && defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define SWAR_FIRST(m) ((size_t)__builtin_ctzll(m) >> 3)
#define SWAR_EXACT 1 /* SWAR_FIRST is the first stop byte */
#else
#define SWAR_FIRST(m) ((size_t)0) /* the byte loop finds it */
#endif

/* Scans the string whose opening quote is at sc->p; a key when `key`.
 * With SSE2 (every x86-64) 16 bytes are tested per step and the first
 * stop byte is exact, as it is for the SWAR step on little-endian
 * machines; the byte loop then only sees the input's last bytes. Strings
 * are most of a rank body's tokens (~3,300 in the bench's 40 KB body);
 * with this step, the direct jump to the stop byte and the inline
 * pd_json_* accessors the in-process scan of that body went from 51.6 to
 * 48.9 us, the whole parse from 113 to 105 us (docs/BENCHMARKS.md
 * "Issue 20", "The rank request's own CPU"). */
#if defined(__GNUC__)
#define SCAN_INLINE inline __attribute__((always_inline))
#else
#define SCAN_INLINE inline
#endif
/* (inlined into both callers: the scanner's fields then stay in registers,
 * in-process scan of the 40 KB body 46.3 -> 43.5 us, and with the tape
 * pointer kept in the scanner 42.2 us) */
static SCAN_INLINE int scan_string(scanner *sc, int key)
{
    const unsigned char *b = sc->b;
    size_t n = sc->n, s = sc->p + 1, q = s;
    int bs = 0;
    for (;;) {
#ifdef __SSE2__
        {
            const __m128i quote = _mm_set1_epi8('"'), bsl = _mm_set1_epi8('\\'), c1f = _mm_set1_epi8(0x1f),
                          zero = _mm_setzero_si128();
            for (; q + 16 <= n; q += 16) {
                __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(b + q));
                __m128i m = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, bsl)),
                                         _mm_cmpeq_epi8(_mm_subs_epu8(v, c1f), zero)); /* <= 0x1f */
                unsigned mask = (unsigned)_mm_movemask_epi8(m);
                if (mask) {
                    q += (size_t)__builtin_ctz(mask);
                    goto stop;
                }
            }
        }
#endif
        for (; q + 8 <= n; q += 8) {
            uint64_t w, m;
            memcpy(&w, b + q, 8);
            if ((m = swar_stop(w)) != 0) {
                q += SWAR_FIRST(m);
#ifdef SWAR_EXACT
                goto stop;
#else
                break;
#endif
            }
        }
        while (q < n && !str_stop[b[q]]) q++;
#if defined(__SSE2__) || defined(SWAR_EXACT)
    stop:
#endif
        if (q >= n) {
            sc->p = s - 1;
            sc->what = "unterminated string";
            return -1;
        }
        if (b[q] == '"') break;
        if (b[q] != '\\') {
            sc->p = q;
            sc->what = "raw control character in a string (escape it)";
            return -1;
        }
        bs = 1;
        q += 2; /* q + 1 == n is caught above on the next round */
    }
    if (bs) {
        size_t at = 0;
        if (str_check(b, s, q, &at, &sc->what)) {
            sc->p = at;
            sc->bad_len = q - at < 12 ? q - at : 12;
            return -1;
        }
    }
    size_t i = tok_push(sc, TK_STR, s, q - s);
    ev_tok *k = &sc->tok[i];
    k->esc = (uint8_t)bs;
    if (key) {
        if (!k->esc) k->hash = key_hash(b + s, q - s);
        uint32_t *last = &sc->t->lastkey[sc->depth - 1];
        if (*last) sc->tok[*last].next = (uint32_t)i;
        *last = (uint32_t)i;
    }
    sc->p = q + 1;
    return 0;
}

/* Whether run b[0, n) is a whole RFC 8259 number:
 * -?(0|[1-9]D*)(.D+)?([eE][+-]?D+)? */
static int num_grammar(const unsigned char *b, size_t n)
{
    size_t i = 0, d = 0;
    if (i < n && b[i] == '-') i++;
    if (i < n && b[i] == '0') {
        i++;
    } else {
        while (i < n && b[i] >= '0' && b[i] <= '9') i++, d++;
        if (d == 0) return 0;
    }
    if (i < n && b[i] == '.') {
        i++, d = 0;
        while (i < n && b[i] >= '0' && b[i] <= '9') i++, d++;
        if (d == 0) return 0;
    }
    if (i < n && (b[i] == 'e' || b[i] == 'E')) {
        size_t e = 0;
        i++;
        if (i < n && (b[i] == '+' || b[i] == '-')) i++;
        while (i < n && b[i] >= '0' && b[i] <= '9') i++, e++;
        if (e == 0) return 0;
    }
    return i == n;
}

/* Validates the document and builds the tape. On success sc->p is just
 * past the top-level value. */
static int scan_doc(scanner *sc)
{
    const unsigned char *b = sc->b;
    size_t n = sc->n;
    uint32_t *stack = sc->t->stack;

    if (n >= 3 && b[0] == 0xEF && b[1] == 0xBB && b[2] == 0xBF) {
        sc->what = "byte order mark (not allowed)";
        return -1;
    }
    skip_ws(sc);

value:
    if (sc->p >= n) {
        sc->what = "expected a value";
        return -1;
    }
    switch (b[sc->p]) {
    case '{':
    case '[': {
        int obj = b[sc->p] == '{';
        if (sc->depth >= NESTING_LIMIT) {
            sc->what = "nesting deeper than 64 arrays/objects";
            return -1;
        }
        sc->t->lastkey[sc->depth] = 0;
        stack[sc->depth++] = (uint32_t)tok_push(sc, obj ? TK_OBJ : TK_ARR, sc->p, 0);
        sc->p++;
        skip_ws(sc);
        if (sc->p < n && b[sc->p] == (obj ? '}' : ']')) {
            sc->p++;
            sc->depth--;
            goto after_value;
        }
        if (obj) goto key;
        goto value;
    }
    case '"':
        if (scan_string(sc, 0)) return -1;
        goto after_value;
    case 'n':
    case 't':
        if (n - sc->p >= 4 && memcmp(b + sc->p, b[sc->p] == 'n' ? "null" : "true", 4) == 0) {
            tok_push(sc, b[sc->p] == 'n' ? TK_NULL : TK_TRUE, sc->p, 4);
            sc->p += 4;
            goto after_value;
        }
        sc->what = "invalid literal";
        return -1;
    case 'f':
        if (n - sc->p >= 5 && memcmp(b + sc->p, "false", 5) == 0) {
            tok_push(sc, TK_FALSE, sc->p, 5);
            sc->p += 5;
            goto after_value;
        }
        sc->what = "invalid literal";
        return -1;
    case '-': case '0': case '1': case '2': case '3': case '4':
    case '5': case '6': case '7': case '8': case '9': {
        size_t s = sc->p, e = s;
        while (e < n && num_char[b[e]]) e++;
        if (!num_grammar(b + s, e - s)) {
            sc->what = "invalid number";
            sc->bad_len = e - s;
            return -1;
        }
        tok_push(sc, TK_NUM, s, e - s);
        sc->p = e;
        goto after_value;
    }
    default:
        sc->what = "expected a value";
        return -1;
    }

key:
    if (sc->p >= n || b[sc->p] != '"') {
        sc->what = "expected a string key";
        return -1;
    }
    if (scan_string(sc, 1)) return -1;
    skip_ws(sc);
    if (sc->p >= n || b[sc->p] != ':') {
        sc->what = "expected ':' after an object key";
        return -1;
    }
    sc->p++;
    skip_ws(sc);
    goto value;

after_value:
    if (sc->depth == 0) return 0;
    skip_ws(sc);
    {
        ev_tok *top = &sc->tok[stack[sc->depth - 1]];
        int obj = top->kind == TK_OBJ;
        if (sc->p < n && b[sc->p] == ',') {
            sc->p++;
            skip_ws(sc);
            if (obj) goto key;
            goto value;
        }
        if (sc->p < n && b[sc->p] == (obj ? '}' : ']')) {
            sc->p++;
            top->next = (uint32_t)sc->ntok;
            if (obj) sc->tok[sc->t->lastkey[sc->depth - 1]].next = (uint32_t)sc->ntok;
            sc->depth--;
            goto after_value;
        }
        sc->what = obj ? "expected ',' or '}' after an object member"
                       : "expected ',' or ']' after an array element";
        return -1;
    }
}

/* ---- pass 2: lookups on the tape ---- */

/* Member indexes of the objects most looked up (the attribute containers):
 * an open-addressing table, linear probing, from key_hash to key token.
 * Keys of one hash keep document order along their probe sequence, so the
 * first match found is the first member with that key. Built on the first
 * lookup into an object of IX_MIN_MEMBERS..IX_MAX_MEMBERS members without
 * escaped keys; other objects are scanned linearly. */
#define IX_OBJS 4
#define IX_SLOTS 64
#define IX_MIN_MEMBERS 9
#define IX_MAX_MEMBERS (IX_SLOTS / 2)
typedef struct {
    int n;
    uint32_t obj[IX_OBJS];
    uint8_t usable[IX_OBJS];
    uint32_t slot[IX_OBJS][IX_SLOTS]; /* key token index; 0 = empty */
} obj_index;

typedef struct {
    const unsigned char *b;
    const ev_tok *tok;
    ev_tls *t;
    obj_index *ix;
} doc;

/* The index of object `obj`, or NULL when it has none (after building it
 * when there is room). */
static const uint32_t *ix_get(const doc *d, size_t obj)
{
    obj_index *ix = d->ix;
    if (!ix) return NULL; /* pd_json_doc: no member indexes */
    for (int i = 0; i < ix->n; i++)
        if (ix->obj[i] == obj) return ix->usable[i] ? ix->slot[i] : NULL;
    if (ix->n == IX_OBJS) return NULL;
    int x = ix->n++;
    size_t end = d->tok[obj].next, count = 0;
    ix->obj[x] = (uint32_t)obj;
    ix->usable[x] = 0;
    for (size_t i = obj + 1; i < end; i = d->tok[i].next)
        if (d->tok[i].esc || ++count > IX_MAX_MEMBERS) return NULL;
    if (count < IX_MIN_MEMBERS) return NULL;
    uint32_t *slot = ix->slot[x];
    memset(slot, 0, sizeof ix->slot[x]);
    for (size_t i = obj + 1; i < end; i = d->tok[i].next) {
        size_t h = d->tok[i].hash & (IX_SLOTS - 1);
        while (slot[h]) h = (h + 1) & (IX_SLOTS - 1);
        slot[h] = (uint32_t)i;
    }
    ix->usable[x] = 1;
    return slot;
}

/* Whether key token k (decoded) equals name. */
static int key_eq(const doc *d, const ev_tok *k, const char *name, size_t nlen)
{
    if (!k->esc) return k->len == nlen && memcmp(d->b + k->off, name, nlen) == 0;
    char tmp[PD_MAX_NAME + 8];
    if (nlen >= PD_MAX_NAME) return 0; /* schema names are shorter */
    size_t o = str_decode(d->b, k->off, (size_t)k->off + k->len, tmp, nlen + 1);
    return o == nlen && memcmp(tmp, name, nlen) == 0;
}

/* The value of member `name` of object token `obj` (the first one when
 * keys repeat), or -1. */
static long obj_get(const doc *d, size_t obj, const char *name)
{
    size_t nlen = strlen(name), end = d->tok[obj].next;
    uint16_t h = key_hash((const unsigned char *)name, nlen);
    const uint32_t *slot = ix_get(d, obj);
    if (slot) {
        for (size_t x = h & (IX_SLOTS - 1); slot[x]; x = (x + 1) & (IX_SLOTS - 1)) {
            const ev_tok *k = &d->tok[slot[x]];
            if (k->hash == h && key_eq(d, k, name, nlen)) return (long)slot[x] + 1;
        }
        return -1;
    }
    for (size_t i = obj + 1; i < end; i = d->tok[i].next) {
        const ev_tok *k = &d->tok[i];
        if ((k->hash == h || k->esc) && key_eq(d, k, name, nlen)) return (long)(i + 1);
    }
    return -1;
}

/* The decoded bytes of string token k: points into
 * the input when nothing needs decoding, else into the thread's scratch
 * (valid until the next str_get). */
static const char *str_get(const doc *d, const ev_tok *k, size_t *n)
{
    if (!k->esc) {
        *n = k->len;
        return (const char *)d->b + k->off;
    }
    char *out = tls_scratch(d->t, (size_t)k->len + 5);
    *n = str_decode(d->b, k->off, (size_t)k->off + k->len, out, k->len);
    return out;
}

static const double pow10_exact[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                     1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15};

/* The value of number token k: what strtod returns for its run. Runs of
 * at most 15 digits without exponent are exact (an integer below 2^53
 * divided by an exact power of ten is correctly rounded, as strtod is). */
static double num_get(const doc *d, const ev_tok *k)
{
    const unsigned char *s = d->b + k->off;
    size_t n = k->len, i = 0, nd = 0, frac = 0;
    int neg = 0, dot = 0;
    uint64_t m = 0;
    if (s[0] == '-') neg = 1, i = 1;
    for (; i < n; i++) {
        unsigned char c = s[i];
        if (c >= '0' && c <= '9') {
            m = m * 10 + (uint64_t)(c - '0');
            nd++;
            frac += (size_t)dot;
        } else if (c == '.') {
            dot = 1;
        } else {
            break;
        }
    }
    if (i == n && nd <= 15) {
        double v = (double)m;
        if (frac) v /= pow10_exact[frac];
        return neg ? -v : v;
    }
    char tmp[64];
    char *z = n < sizeof tmp ? tmp : tls_scratch(d->t, n + 1);
    memcpy(z, s, n);
    z[n] = '\0';
    return strtod_l(z, NULL, c_locale);
}

/* Validates a required string field of 1..maxlen bytes. On success sets
 * *out / *outlen to a copy owned by the event. Returns 0 or the given
 * reason code with a message in err. */
static int get_required_str(pd_event *ev, const doc *d, const char *name, size_t maxlen,
                            int r_missing, int r_type, int r_empty, int r_long,
                            const char **out, size_t *outlen, char *err, size_t errlen)
{
    long j = obj_get(d, 0, name);
    if (j < 0 || d->tok[j].kind == TK_NULL)
        return pd_seterr(err, errlen, r_missing, "missing required field '%s'%s", name,
                         j >= 0 ? " (null)" : "");
    if (d->tok[j].kind != TK_STR)
        return pd_seterr(err, errlen, r_type, "field '%s': expected string, got %s", name,
                         kind_name(d->tok[j].kind));
    size_t n;
    const char *s = str_get(d, &d->tok[j], &n);
    if (n == 0)
        return pd_seterr(err, errlen, r_empty, "field '%s': expected non-empty string, got \"\"",
                         name);
    if (n > maxlen)
        return pd_seterr(err, errlen, r_long,
                         "field '%s': expected at most %zu bytes, got %zu bytes", name, maxlen, n);
    *out = ev_copy(ev, s, n);
    *outlen = n;
    return PD_EV_OK;
}

static int get_ts(const doc *d, int64_t *ms, char *err, size_t errlen)
{
    long j = obj_get(d, 0, "ts");
    int64_t v;
    if (j < 0 || d->tok[j].kind == TK_NULL)
        return pd_seterr(err, errlen, PD_EV_MISSING_TS, "missing required field 'ts'%s",
                         j >= 0 ? " (null)" : "");
    const ev_tok *k = &d->tok[j];
    if (k->kind == TK_NUM) {
        double x = num_get(d, k);
        if (!(x >= -TWO_POW_63 && x < TWO_POW_63))
            return pd_seterr(err, errlen, PD_EV_BAD_TS_FORMAT,
                             "field 'ts': expected integer epoch ms, got %.17g (beyond int64)", x);
        if (x != floor(x))
            return pd_seterr(err, errlen, PD_EV_BAD_TS_FORMAT,
                             "field 'ts': expected integer epoch ms, got non-integral %.17g", x);
        v = (int64_t)x;
    } else if (k->kind == TK_STR) {
        size_t n;
        const char *s = str_get(d, k, &n);
        if (pd_ts_parse_rfc3339(s, n, &v) != PD_OK)
            return pd_seterr(err, errlen, PD_EV_BAD_TS_FORMAT,
                             "field 'ts': expected RFC 3339 timestamp "
                             "(YYYY-MM-DDTHH:MM:SS[.frac](Z|+hh:mm)), got \"%.*s\"%s",
                             (int)(n > 64 ? 64 : n), s, n > 64 ? "..." : "");
    } else {
        return pd_seterr(err, errlen, PD_EV_BAD_TS_TYPE,
                         "field 'ts': expected integer epoch ms or RFC 3339 string, got %s",
                         kind_name(k->kind));
    }
    if (v < PD_TS_MIN_MS || v >= PD_TS_MAX_MS)
        return pd_seterr(err, errlen, PD_EV_TS_OUT_OF_RANGE,
                         "field 'ts': expected epoch ms in [%lld, %lld) "
                         "(2000-01-01 to 2200-01-01), got %lld",
                         (long long)PD_TS_MIN_MS, (long long)PD_TS_MAX_MS, (long long)v);
    *ms = v;
    return PD_EV_OK;
}

static int get_event_id(pd_event *ev, const doc *d, char *err, size_t errlen)
{
    long j = obj_get(d, 0, "event_id");
    if (j < 0 || d->tok[j].kind == TK_NULL) return PD_EV_OK; /* optional */
    if (d->tok[j].kind != TK_STR)
        return pd_seterr(err, errlen, PD_EV_BAD_EVENT_ID,
                         "field 'event_id': expected string, got %s", kind_name(d->tok[j].kind));
    size_t n;
    const char *s = str_get(d, &d->tok[j], &n);
    if (n == 0)
        return pd_seterr(err, errlen, PD_EV_BAD_EVENT_ID,
                         "field 'event_id': expected non-empty string, got \"\"");
    if (n > PD_MAX_EVENT_ID)
        return pd_seterr(err, errlen, PD_EV_BAD_EVENT_ID,
                         "field 'event_id': expected at most %d bytes, got %zu bytes",
                         PD_MAX_EVENT_ID, n);
    ev->event_id = ev_copy(ev, s, n);
    ev->event_id_len = n;
    return PD_EV_OK;
}

/* Top-level attribute containers ("item", "filters"), looked up once per
 * event. node is -1 when the container is absent or JSON null; slot[d][p]
 * is the cache slot of path p of dimension d, or -1 (depth 1, or a name
 * beyond the first CTR_CACHE). */
#define CTR_CACHE 8
typedef struct {
    int n;
    const char *name[CTR_CACHE];
    uint64_t word[CTR_CACHE]; /* name_word of name[i] */
    long node[CTR_CACHE];
    int8_t slot[PD_MAX_DIMS][PD_MAX_PATHS];
} ctr_cache;

static int name_eq(const char *a, const char *b)
{
    while (*a && *a == *b) a++, b++;
    return *a == *b;
}

/* The first 8 bytes of a schema name (a PD_MAX_NAME array, so 8 bytes are
 * readable) with the bytes from its NUL on zeroed; *longer is set when the
 * name has 8 bytes or more (equal words then need name_eq). */
static inline uint64_t name_word(const char *s, int *longer)
{
    uint64_t w = 0;
#if defined(__GNUC__) && defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    const uint64_t ones = UINT64_C(0x0101010101010101), highs = UINT64_C(0x8080808080808080);
    memcpy(&w, s, 8);
    uint64_t z = (w - ones) & ~w & highs;
    *longer = z == 0;
    if (z) {
        unsigned nb = (unsigned)__builtin_ctzll(z) >> 3; /* bytes before the NUL */
        w = nb ? w & (~UINT64_C(0) >> (64 - 8 * nb)) : 0;
    }
#else
    size_t i = 0;
    for (; i < 8 && s[i]; i++) w |= (uint64_t)(unsigned char)s[i] << (8 * i);
    *longer = i == 8;
#endif
    return w;
}

/* Returns the cache slot holding `name`, or -1. */
static int ctr_find(const ctr_cache *cc, const char *name)
{
    int longer;
    uint64_t w = name_word(name, &longer);
    for (int i = 0; i < cc->n; i++)
        if (cc->word[i] == w && (!longer || name_eq(cc->name[i], name))) return i;
    return -1;
}

/* Checks every top-level container named by a schema path of depth >= 2
 * (each distinct name once) and remembers the first CTR_CACHE of them in
 * *cc; names beyond that are checked again each time they appear. */
static int check_containers(const doc *d, const pd_schema *s, ctr_cache *cc, char *err,
                            size_t errlen)
{
    cc->n = 0;
    for (int di = 0; di < s->ndims; di++) {
        const pd_dim *dim = &s->dims[di];
        for (int p = 0; p < dim->npaths; p++) {
            const pd_path *path = &dim->paths[p];
            int slot = path->depth < 2 ? -1 : ctr_find(cc, path->seg[0]);
            cc->slot[di][p] = (int8_t)slot;
            if (path->depth < 2 || slot >= 0) continue;
            long c = obj_get(d, 0, path->seg[0]);
            int kind = c >= 0 ? d->tok[c].kind : -1;
            if (c >= 0 && kind != TK_OBJ && kind != TK_NULL)
                return pd_seterr(err, errlen, PD_EV_BAD_ATTR_CONTAINER,
                                 "field '%s': expected object or null, got %s", path->seg[0],
                                 kind_name(kind));
            if (cc->n < CTR_CACHE) {
                cc->slot[di][p] = (int8_t)cc->n;
                int longer;
                cc->name[cc->n] = path->seg[0];
                cc->word[cc->n] = name_word(path->seg[0], &longer);
                cc->node[cc->n] = kind == TK_OBJ ? c : -1;
                cc->n++;
            }
        }
    }
    return PD_EV_OK;
}

/* The schema's "recent" item id: the value at `path`, read as a
 * categorical attribute is (a string of 1..256 bytes, a number, a
 * boolean); anything else (absent, null, an object, ...) leaves it absent.
 * It never makes the event bad. */
static void resolve_item_id(pd_event *ev, const doc *d, const pd_path *path)
{
    long cur = 0;
    for (int k = 0; k < path->depth; k++) {
        if (d->tok[cur].kind != TK_OBJ) return;
        cur = obj_get(d, (size_t)cur, path->seg[k]);
        if (cur < 0) return;
    }
    const ev_tok *k = &d->tok[cur];
    if (k->kind == TK_STR) {
        size_t n;
        const char *s = str_get(d, k, &n);
        if (n == 0 || n > PD_MAX_CAT_VALUE || (k->esc && !pd_utf8_valid(s, n))) return;
        ev->item_id = ev_copy(ev, s, n);
        ev->item_id_len = (uint32_t)n;
    } else if (k->kind == TK_NUM) {
        double x = num_get(d, k);
        char t[32];
        int n;
        if (!isfinite(x)) return;
        if (x == floor(x) && fabs(x) < TWO_POW_53)
            n = (int)pd_fmt_i64(t, (int64_t)x);
        else
            n = snprintf(t, sizeof t, "%.17g", x);
        ev->item_id = ev_copy(ev, t, (size_t)n);
        ev->item_id_len = (uint32_t)n;
    } else if (k->kind == TK_TRUE || k->kind == TK_FALSE) {
        ev->item_id = k->kind == TK_TRUE ? "true" : "false";
        ev->item_id_len = k->kind == TK_TRUE ? 4 : 5;
    }
}

/* Resolves dimension `di` into ev->attrs[di]. The value token is the
 * first present non-null value along the dimension's paths. */
static void resolve_attr(pd_event *ev, const doc *d, const ctr_cache *cc, const pd_dim *dim,
                         int di)
{
    pd_attr *a = &ev->attrs[di];
    long v = -1;
    int bad_container = 0;
    a->kind = PD_ATTR_ABSENT;
    a->len = 0;
    a->s = NULL;
    a->num = 0;
    for (int p = 0; p < dim->npaths && v < 0 && !bad_container; p++) {
        const pd_path *path = &dim->paths[p];
        long cur = 0; /* the root */
        int k = 0;
        if (path->depth >= 2) {
            int slot = cc->slot[di][p];
            if (slot >= 0) {
                cur = cc->node[slot];
                if (cur < 0) continue; /* container absent or null */
                k = 1;
            }
        }
        for (; k < path->depth; k++) {
            if (d->tok[cur].kind != TK_OBJ) {
                /* top level is checked by check_containers; deeper ones
                 * make the attribute bad */
                bad_container = 1;
                cur = -1;
                break;
            }
            cur = obj_get(d, (size_t)cur, path->seg[k]);
            if (cur < 0 || d->tok[cur].kind == TK_NULL) {
                cur = -1;
                break;
            }
        }
        v = cur;
    }
    if (bad_container) goto bad;
    if (v < 0) return;

    const ev_tok *k = &d->tok[v];
    if (dim->type == PD_DIM_NUMERIC) {
        if (k->kind != TK_NUM) goto bad;
        double x = num_get(d, k);
        if (!isfinite(x)) goto bad;
        a->kind = PD_ATTR_NUM;
        a->num = x;
        return;
    }
    if (k->kind == TK_STR) {
        size_t n;
        const char *s = str_get(d, k, &n);
        /* Raw bytes between two quotes of the (already validated) input
         * are valid UTF-8; only decoded escapes need checking. */
        if (n == 0 || n > PD_MAX_CAT_VALUE || (k->esc && !pd_utf8_valid(s, n))) goto bad;
        a->kind = PD_ATTR_STR;
        a->s = ev_copy(ev, s, n);
        a->len = (uint32_t)n;
        return;
    }
    if (k->kind == TK_NUM) {
        double x = num_get(d, k);
        char t[32];
        int n;
        if (!isfinite(x)) goto bad;
        if (x == floor(x) && fabs(x) < TWO_POW_53)
            n = (int)pd_fmt_i64(t, (int64_t)x);
        else
            n = snprintf(t, sizeof t, "%.17g", x);
        pd_assert(n > 0 && (size_t)n < sizeof t);
        a->kind = PD_ATTR_STR;
        a->s = ev_copy(ev, t, (size_t)n);
        a->len = (uint32_t)n;
        return;
    }
    if (k->kind == TK_TRUE || k->kind == TK_FALSE) {
        int t = k->kind == TK_TRUE;
        a->kind = PD_ATTR_STR;
        a->s = t ? "true" : "false";
        a->len = t ? 4 : 5;
        return;
    }
bad:
    a->kind = PD_ATTR_BAD;
    ev->n_bad_attrs++;
}

/* The common start of every parse: size and UTF-8 checks, the scan, only
 * whitespace after the value, and a top-level object. Fills *d (tokens in
 * t's tape, index ix). PD_EV_OK or a reason with err set. */
static int open_doc(const char *buf, size_t len, size_t max_bytes, ev_tls *t, obj_index *ix, doc *d, char *err,
                    size_t errlen)
{
    if (len == 0 || !buf) return pd_seterr(err, errlen, PD_EV_EMPTY, "empty value (0 bytes)");
    if (len > max_bytes)
        return pd_seterr(err, errlen, PD_EV_TOO_LARGE, "value is %zu bytes, expected at most %zu",
                         len, max_bytes);
    if (len >= UINT32_MAX) /* tape offsets are 32-bit; Kafka values are < 2 GiB */
        return pd_seterr(err, errlen, PD_EV_TOO_LARGE,
                         "value is %zu bytes, expected less than 4 GiB", len);
    size_t ascii = ascii_prefix(buf, len);
    if (ascii < len && !pd_utf8_valid(buf + ascii, len - ascii))
        return pd_seterr(err, errlen, PD_EV_INVALID_UTF8, "value is not valid UTF-8");

    scanner sc = {(const unsigned char *)buf, len, 0, t, 0, 0, NULL, 0, t->tok, t->cap};
    if (scan_doc(&sc)) {
        char got[48] = "end of input";
        unsigned char c = sc.p < len ? (unsigned char)buf[sc.p] : 0;
        if (sc.bad_len) { /* the number run or the escape; control bytes as '?' */
            size_t k = sc.bad_len > 32 ? 32 : sc.bad_len, o = 0;
            got[o++] = '"';
            for (size_t i = 0; i < k; i++) {
                unsigned char x = (unsigned char)buf[sc.p + i];
                got[o++] = x < 0x20 || x == 0x7f ? '?' : (char)x;
            }
            snprintf(got + o, sizeof got - o, "\"%s", sc.bad_len > 32 ? "..." : "");
        } else if (sc.p < len)
            snprintf(got, sizeof got, c > 0x20 && c < 0x7f ? "'%c'" : "byte 0x%02x", (unsigned)c);
        return pd_seterr(err, errlen, PD_EV_INVALID_JSON, "invalid JSON at byte %zu of %zu: %s, got %s",
                         sc.p, len, sc.what, got);
    }
    /* Only whitespace may follow the top-level value. */
    size_t end = sc.p;
    while (end < len && ws_char[(unsigned char)buf[end]]) end++;
    if (end != len) {
        return pd_seterr(err, errlen, PD_EV_INVALID_JSON,
                         "invalid JSON: unexpected data after the top-level value at byte %zu of %zu",
                         end, len);
    }
    ix->n = 0;
    *d = (doc){(const unsigned char *)buf, t->tok, t, ix};
    if (d->tok[0].kind != TK_OBJ)
        return pd_seterr(err, errlen, PD_EV_NOT_OBJECT, "top-level value: expected object, got %s",
                         kind_name(d->tok[0].kind));
    return PD_EV_OK;
}


int pd_event_parse(pd_event *ev, const pd_schema *s, const char *buf, size_t len,
                   size_t max_bytes, char *err, size_t errlen)
{
    ctr_cache cc;
    int rc;

    pd_assert(ev && s && s->ndims >= 0 && s->ndims <= PD_MAX_DIMS);
    ev_reset(ev);
    if (err && errlen) err[0] = '\0';
    if (max_bytes == 0) max_bytes = PD_EV_DEFAULT_MAX_BYTES;

    ev_tls *t = tls_get();
    obj_index ix;
    doc d;
    rc = open_doc(buf, len, max_bytes, t, &ix, &d, err, errlen);
    if (rc) goto out;

    rc = get_required_str(ev, &d, "user_id", PD_MAX_USER_ID, PD_EV_MISSING_USER_ID,
                          PD_EV_BAD_USER_ID_TYPE, PD_EV_EMPTY_USER_ID, PD_EV_USER_ID_TOO_LONG,
                          &ev->user_id, &ev->user_id_len, err, errlen);
    if (rc) goto out;
    rc = get_ts(&d, &ev->ts_ms, err, errlen);
    if (rc) goto out;
    rc = get_required_str(ev, &d, "type", PD_MAX_TYPE, PD_EV_MISSING_TYPE, PD_EV_BAD_TYPE_TYPE,
                          PD_EV_EMPTY_TYPE, PD_EV_TYPE_TOO_LONG, &ev->type, &ev->type_len, err,
                          errlen);
    if (rc) goto out;
    rc = get_event_id(ev, &d, err, errlen);
    if (rc) goto out;
    rc = check_containers(&d, s, &cc, err, errlen);
    if (rc) goto out;

    ev->okey = pd_okey(ev->event_id, ev->event_id_len, ev->ts_ms, ev->type, ev->type_len);
    ev->nattrs = s->ndims;
    for (int di = 0; di < s->ndims; di++) resolve_attr(ev, &d, &cc, &s->dims[di], di);
    ev->item_id = NULL;
    ev->item_id_len = 0;
    if (s->recent_max > 0 && s->recent_item.depth > 0) resolve_item_id(ev, &d, &s->recent_item);

out:
    tls_trim(t);
    if (rc) pd_event_free(ev);
    return rc;
}

void pd_event_free(pd_event *ev)
{
    if (!ev) return;
    free(ev->heap_);
    ev_reset(ev);
}

int pd_json_get_str(const char *buf, size_t len, const char *name, char *out, size_t cap, size_t *outlen,
                    char *err, size_t errlen)
{
    pd_assert(cap > 0);
    *outlen = 0;
    if (err && errlen) err[0] = '\0';
    ev_tls *t = tls_get();
    obj_index ix;
    doc d;
    int rc = open_doc(buf, len, PD_EV_DEFAULT_MAX_BYTES, t, &ix, &d, err, errlen);
    if (rc) {
        rc = PD_JSON_BAD;
        goto out;
    }
    long j = obj_get(&d, 0, name);
    if (j < 0) {
        rc = pd_seterr(err, errlen, PD_JSON_MISSING, "field '%s' missing", name);
        goto out;
    }
    if (d.tok[j].kind != TK_STR) {
        rc = pd_seterr(err, errlen, PD_JSON_TYPE, "field '%s': expected string, got %s", name,
                       kind_name(d.tok[j].kind));
        goto out;
    }
    size_t n;
    const char *v = str_get(&d, &d.tok[j], &n);
    if (n >= cap) {
        rc = pd_seterr(err, errlen, PD_JSON_LONG, "field '%s': %zu bytes, expected at most %zu", name, n, cap - 1);
        goto out;
    }
    memcpy(out, v, n);
    out[n] = '\0';
    *outlen = n;
    rc = PD_OK;
out:
    tls_trim(t);
    return rc;
}

/* ---- the dialect for other documents (pd_json_doc, event.h) ---- */

static doc jdoc(const pd_json_doc *d)
{
    return (doc){(const unsigned char *)d->buf_, ((ev_tls *)d->tls_)->tok, d->tls_, NULL};
}

int pd_json_open(pd_json_doc *d, const char *buf, size_t len, size_t max_bytes, char *err, size_t errlen)
{
    memset(d, 0, sizeof *d);
    if (err && errlen) err[0] = '\0';
    if (max_bytes == 0) max_bytes = PD_EV_DEFAULT_MAX_BYTES;
    ev_tls *t = tls_get();
    obj_index ix;
    doc x;
    int rc = open_doc(buf, len, max_bytes, t, &ix, &x, err, errlen);
    if (rc) {
        tls_trim(t);
        return rc == PD_EV_NOT_OBJECT ? PD_JSON_TYPE : PD_JSON_BAD;
    }
    d->buf_ = buf;
    d->tls_ = t;
    d->tok_ = t->tok; /* stable until the thread's next scan */
    return PD_OK;
}

void pd_json_close(pd_json_doc *d)
{
    if (d->tls_) tls_trim(d->tls_);
    memset(d, 0, sizeof *d);
}

const char *pd_json_kind_name(int kind)
{
    return kind_name(kind);
}

long pd_json_get(const pd_json_doc *d, uint32_t obj, const char *name)
{
    doc x = jdoc(d);
    pd_assert(x.tok[obj].kind == TK_OBJ);
    return obj_get(&x, obj, name);
}

const char *pd_json_str_esc_(const pd_json_doc *d, uint32_t v, size_t *n)
{
    doc x = jdoc(d);
    pd_assert(x.tok[v].kind == TK_STR);
    return str_get(&x, &x.tok[v], n);
}

double pd_json_num(const pd_json_doc *d, uint32_t v)
{
    doc x = jdoc(d);
    pd_assert(x.tok[v].kind == TK_NUM);
    return num_get(&x, &x.tok[v]);
}

/* ---- member sets (pd_json_members, event.h) ---- */

/* An open-addressing table from key_hash to the set's names (unique), so
 * that one walk over an object's members finds them all: a member costs
 * one probe with the hash its key got while scanning, and its bytes are
 * compared only on a hash match. It replaced score.c's per-member XXH3 and
 * memcmp chain (per-candidate lookups of a rank body): in-process parse of
 * the bench's 100-candidate body 149-154 -> 116-124 us. */
typedef struct {
    const char *name;   /* borrowed; NULL: empty slot */
    uint32_t len;
    uint16_t hash;
    int idx;
} nm_slot;

struct pd_json_names {
    int n;
    size_t mask;
    size_t maxlen;
    nm_slot *slot;
};

pd_json_names *pd_json_names_new(const char *const *names, const size_t *lens, int n)
{
    pd_json_names *nm = pd_calloc(1, sizeof *nm);
    size_t cap = 16;
    while (cap < 2 * (size_t)n) cap <<= 1;
    nm->n = n;
    nm->mask = cap - 1;
    nm->slot = pd_calloc(cap, sizeof *nm->slot);
    for (int i = 0; i < n; i++) {
        size_t len = lens[i];
        pd_assert(len < PD_MAX_NAME);
        uint16_t h = key_hash((const unsigned char *)names[i], len);
        size_t x = h & nm->mask;
        for (; nm->slot[x].name; x = (x + 1) & nm->mask)
            pd_assert(!(nm->slot[x].len == len && memcmp(nm->slot[x].name, names[i], len) == 0)); /* unique */
        nm->slot[x] = (nm_slot){names[i], (uint32_t)len, h, i};
        if (len > nm->maxlen) nm->maxlen = len;
    }
    return nm;
}

void pd_json_names_free(pd_json_names *nm)
{
    if (!nm) return;
    pd_free(nm->slot);
    pd_free(nm);
}

static inline int bytes_eq(const unsigned char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (a[i] != (unsigned char)b[i]) return 0;
    return 1;
}

void pd_json_members(const pd_json_doc *d, uint32_t obj, const pd_json_names *nm, long *out)
{
    const ev_tok *tok = d->tok_;
    const unsigned char *b = (const unsigned char *)d->buf_;
    pd_assert(tok[obj].kind == TK_OBJ);
    for (int i = 0; i < nm->n; i++) out[i] = -1;
    int left = nm->n;
    char tmp[PD_MAX_NAME + 8];
    for (uint32_t k = obj + 1, end = tok[obj].next; k < end && left > 0; k = tok[k].next) {
        const ev_tok *kt = &tok[k];
        const unsigned char *key = b + kt->off;
        size_t len = kt->len;
        if (kt->esc) { /* decode (names are short: a longer key matches none) */
            len = str_decode(b, kt->off, (size_t)kt->off + kt->len, tmp, nm->maxlen + 1);
            if (len > nm->maxlen) continue;
            key = (const unsigned char *)tmp;
        } else if (len > nm->maxlen) {
            continue;
        }
        uint16_t h = kt->esc ? key_hash(key, len) : kt->hash;
        for (size_t x = h & nm->mask; nm->slot[x].name; x = (x + 1) & nm->mask) {
            const nm_slot *e = &nm->slot[x];
            if (e->hash != h || e->len != len || !bytes_eq(key, e->name, len)) continue;
            if (out[e->idx] < 0) {
                out[e->idx] = (long)k + 1;
                left--;
            }
            break; /* names are unique */
        }
    }
}

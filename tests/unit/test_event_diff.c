/* test_event_diff.c -- differential tests of pd_event_parse (the hand-written
 * scanner) against pd_event_parse_ref (the former cJSON-based parser, see
 * event_ref.c): a corpus of tricky inputs aimed at every cJSON quirk the
 * scanner reproduces, each placed in several positions of an event, plus a
 * few thousand seeded random mutations of generated events. Both parsers
 * must agree on the reason and on every extracted field. */
#include "test.h"

#include <stdlib.h>

#include "event.h"
#include "event_ref.h"
#include "gen.h"
#include "schema.h"
#include "util.h"

#define MAX_FAILS 20

static pd_schema schema_default, schema_ref;
static int nfails;

static void schemas(void)
{
    static int init;
    if (init) return;
    pd_schema_default(&schema_default, 0);
    pd_event_ref_schema(&schema_ref);
    init = 1;
}

/* Compares both parsers under both schemas (and a tight max_bytes). */
static void diff(const char *buf, size_t len, const char *file, int line)
{
    char why[1200];
    schemas();
    if (pd_event_ref_compare(&schema_default, buf, len, 0, why, sizeof why) ||
        pd_event_ref_compare(&schema_ref, buf, len, 0, why, sizeof why) ||
        pd_event_ref_compare(&schema_ref, buf, len, 64, why, sizeof why)) {
        if (nfails++ < MAX_FAILS) pd_test_fail(file, line, "%s", why);
    }
}
#define DIFF(b, n) diff((b), (n), __FILE__, __LINE__)

/* A literal with its exact length (NUL bytes included). */
#define S(x) {x, sizeof(x) - 1}
typedef struct {
    const char *s;
    size_t n;
} lit;

/* Values placed into every slot of the event templates below. */
static const lit values[] = {
    /* numbers */
    S("0"), S("-0"), S("01"), S("00"), S("-01.0e-0"), S("1."), S("1.e5"), S("-"), S("-.5"),
    S(".5"), S("1.5.3"), S("1e"), S("1e+"), S("1E+2"), S("1e5e5"), S("+1"), S("--1"), S("1-2"),
    S("1+2"), S("0x10"), S("1_0"), S("1e999"), S("-1e999"), S("1e-999"), S("4.9e-324"),
    S("2.5e-324"), S("1.7976931348623157e308"), S("1.7976931348623159e308"),
    S("9007199254740993"), S("9007199254740992"), S("-9007199254740992"), S("123456789012345"),
    S("1234567890123456"), S("0.1"), S("0.30000000000000004"), S("1.0000000000000002"),
    S("123456789012345.5"), S("12345678901234.55"), S("-0.0"), S("0e0"), S("1E5"), S("5e-1"),
    S("946684800000"), S("946684800000.0"), S("9.466848e11"), S("1795328747333"),
    S("7258118400000"), S("1e19"), S("9223372036854775807"), S("-9223372036854775808"),
    S("9223372036854775808"), S("18990"), S("18990.5"), S("1.5e3"), S("2019"), S("1e2.5"),
    S("1.2e"), S("1.2e-"), S("0.000000000000000000001"), S("100000000000000000000000"),
    S("NaN"), S("Infinity"), S("-Infinity"), S("inf"),
    /* literals */
    S("null"), S("true"), S("false"), S("nul"), S("tru"), S("fals"), S("nulll"), S("True"),
    S("NULL"), S("truee"), S("n"),
    /* strings */
    S("\"\""), S("\"a\""), S("\"blue\""), S("\"\\u0000\""), S("\"a\\u0000b\""), S("\"\\uZZZZ\""),
    S("\"ab\\uZZZZcd\""), S("\"\\u00e9\""), S("\"\\u00E9t\\u00e9\""), S("\"\\uD83D\\uDE00\""),
    S("\"\\uD83D\""), S("\"\\uDE00\""), S("\"\\uD83Dx\""), S("\"\\uD83D\\u0041\""),
    S("\"\\uD83D\\u\""), S("\"\\uDBFF\\uDFFF\""), S("\"\\uD800\\uDC00\""), S("\"\\uD83D\\uZZZZ\""),
    S("\"\\uD83D\\\\uDE00\""), S("\"\\/\""), S("\"\\b\\f\\n\\r\\t\""), S("\"\\x\""), S("\"\\'\""),
    S("\"\\a\""), S("\"\\U0041\""), S("\"\\u41\""), S("\"\\u004\""), S("\"\\u0041\""),
    S("\"\\u00411\""), S("\"\x01\x02\x1f\""), S("\"a\tb\""), S("\"a\x00z\""), S("\"\x00\""),
    S("\"\\uZZZ\\\\x\""), S("\"\\u000\\\\\""), S("\"\\u00\\\"ab\""), S("\"\\uZZ\\x\""),
    S("\"\\uZZZ\\\"x\""), S("\"\\\\\""), S("\"\\\"\""), S("\"\\\""), S("\"abc"), S("\"\\"),
    S("\"\\u\""), S("\"\\u12\""), S("\"\\uFFFF\""), S("\"\\uFDD0\""), S("\"\\u0080\""),
    S("\"\\u07FF\""), S("\"\\u0800\""), S("\"\\u007F\""), S("\"\xc3\xa9\""), S("\"\xf0\x9f\x98\x80\""),
    S("\"2026-11-02T10:11:12Z\""), S("\"2026-11-02T10:11:12.123456789+01:00\""),
    S("\"2026-11-02T10:11:12\\u005a\""), S("\"2026-11-02T10:11:12Z\\u0000junk\""),
    S("\"2026-11-02T10:11:12Z\x00junk\""), S("\"1795328747333\""), S("\"view\""), S("\"e-1\""),
    /* containers */
    S("{}"), S("[]"), S("[1]"), S("[1,]"), S("[,1]"), S("{\"color\":\"x\"}"), S("[{\"a\":1}]"),
    S("{\"b\":{\"c\":\"deep\",\"d\":5}}"), S("{\"b\":[1]}"), S("{\"b\":null}"), S("{\"b\":{\"c\":null}}"),
    S("{\"v\":\"x\"}"), S("{\"v\":7}"), S("{\"v\":null}"), S("{,}"), S("{\"a\"}"), S("{\"a\":}"),
    S("{\"a\" : 1 , }"), S("[1 2]"), S("{\"a\":1 \"b\":2}"), S("{1:2}"), S("{'a':1}"), S("[\x00]"),
    S("[\x01 1\x1f]"), S("{\"q\":{\"r\":{\"s\":\"four\"}}}"), S("{\"q\":{\"r\":[]}}"),
};

/* Templates: %V is replaced by a value. */
static const char *const templates[] = {
    "%V",
    "\xEF\xBB\xBF%V",
    "{\"user_id\":%V,\"ts\":946684800000,\"type\":\"t\"}",
    "{\"user_id\":\"u\",\"ts\":%V,\"type\":\"t\"}",
    "{\"user_id\":\"u\",\"ts\":946684800000,\"type\":%V}",
    "{\"user_id\":\"u\",\"ts\":946684800000,\"type\":\"t\",\"event_id\":%V}",
    "{\"user_id\":\"u\",\"ts\":946684800000,\"type\":\"t\",\"item\":%V}",
    "{\"user_id\":\"u\",\"ts\":946684800000,\"type\":\"t\",\"item\":{\"color\":%V,\"price\":%V}}",
    "{\"user_id\":\"u\",\"ts\":946684800000,\"type\":\"t\",\"item\":{\"price\":null},"
    "\"filters\":{\"color\":%V,\"price\":%V}}",
    "{\"user_id\":\"u\",\"ts\":946684800000,\"type\":\"t\",\"a\":%V,\"top\":\"T\",\"topnum\":3}",
    "{\"user_id\":\"u\",\"ts\":946684800000,\"type\":\"t\",\"a\":{\"b\":%V},\"top\":\"T\"}",
    "{\"user_id\":\"u\",\"ts\":946684800000,\"type\":\"t\",\"a\":{\"b\":{\"c\":%V,\"d\":%V}}}",
    "{\"user_id\":\"u\",\"ts\":946684800000,\"type\":\"t\",\"p\":{\"q\":%V},\"c7\":%V,\"c8\":{\"v\":%V}}",
    "{\"user_id\":\"u\",\"ts\":946684800000,\"type\":\"t\",\"c9\":{\"v\":%V},\"item\":{\"v\":%V}}",
    "{\"user_id\":\"u\",\"ts\":946684800000,\"type\":\"t\",\"x\":[%V,{\"y\":%V}],\"z\":%V}",
    "{\"user_id\":\"u\",\"ts\":946684800000,\"type\":\"t\",\"item\":{\"color\":%V,\"color\":\"second\"}}",
    "{\"event_id\":\"e-1-0\",\"user_id\":\"u-2\",\"ts\":1794734293699,\"type\":\"view\",\"item\":{"
    "\"id\":\"ad-1\",\"make\":%V,\"model\":\"GLC\",\"color\":\"white\",\"damaged\":%V,\"doors\":%V,"
    "\"price\":%V,\"mileage\":47000,\"year\":2022}}",
    "{\"user_id\":\"u\",\"ts\":946684800000,\"type\":\"t\"}%V",
    "[%V]",
    "{\"k\":%V}",
};

/* Expands template t with value v into out (cap bytes); returns the length. */
static size_t expand(char *out, size_t cap, const char *t, const lit *v)
{
    size_t o = 0;
    for (const char *p = t; *p; p++) {
        if (p[0] == '%' && p[1] == 'V') {
            if (o + v->n < cap) memcpy(out + o, v->s, v->n);
            o += v->n;
            p++;
        } else {
            if (o < cap) out[o] = *p;
            o++;
        }
    }
    pd_assert(o < cap);
    return o;
}

TEST(event_diff_values_in_templates)
{
    char buf[4096];
    for (size_t t = 0; t < PD_ARRAY_LEN(templates); t++)
        for (size_t v = 0; v < PD_ARRAY_LEN(values); v++) {
            size_t n = expand(buf, sizeof buf, templates[t], &values[v]);
            DIFF(buf, n);
        }
}

/* Whole documents: keys, duplicates, whitespace, BOM, trailing data. */
static const lit docs[] = {
    S("{\"user_id\\u0000zz\":\"u\",\"ts\":946684800000,\"type\":\"t\"}"),
    S("{\"user_id\x00zz\":\"u\",\"ts\":946684800000,\"type\":\"t\"}"),
    S("{\"user\\u005fid\":\"u\",\"ts\":946684800000,\"type\":\"t\"}"),
    S("{\"\\u0075ser_id\":\"u\",\"t\\u0073\":946684800000,\"typ\\u0065\":\"t\"}"),
    S("{\"user_id\\u0000\":\"u\",\"user_id\":\"v\",\"ts\":946684800000,\"type\":\"t\"}"),
    S("{\"user_id\":\"a\",\"user_id\":\"b\",\"ts\":946684800000,\"type\":\"t\"}"),
    S("{\"user_id\":null,\"user_id\":\"b\",\"ts\":946684800000,\"type\":\"t\"}"),
    S("{\"user_id\":\"u\",\"ts\":946684800000,\"ts\":\"x\",\"type\":\"t\"}"),
    S("{\"user_id\":\"u\",\"ts\":946684800000,\"type\":\"t\",\"item\":null,\"item\":{\"color\":\"x\"}}"),
    S("{\"user_id\":\"u\",\"ts\":946684800000,\"type\":\"t\",\"item\":{\"color\":null},"
      "\"filters\":{\"color\":\"red\"}}"),
    S("{\"user_id\":\"u\",\"ts\":946684800000,\"type\":\"t\",\"item\":{\"color\":[]},"
      "\"filters\":{\"color\":\"red\"}}"),
    S("{\"user_id\":\"u\",\"ts\":946684800000,\"type\":\"t\",\"item\":{\"\\u00e9t\\u00e9\":\"x\","
      "\"k\\\"e\\\\y\":\"y\",\"a\\tb\":\"z\",\"\\/\":\"w\"}}"),
    S("{\"user_id\":\"u\",\"ts\":946684800000,\"type\":\"t\",\"item\":{\"k\\\"e\\\\y\":\"y\","
      "\"a\tb\":\"z\",\"/\":\"w\",\"\xc3\xa9t\xc3\xa9\":1.5}}"),
    S("{\"user_id\":\"u\",\"ts\":946684800000,\"type\":\"t\",\"item\":{\"col\\u006fr\\u0000x\":\"y\"}}"),
    S("{\"user_id\":\"u\",\"ts\":946684800000,\"type\":\"t\",\"item\":{\"color\\uZZZZ\":\"y\"}}"),
    S("{\"user_id\":\"u\",\"ts\":946684800000,\"type\":\"t\",\"item\":{\"\":\"y\",\"\\u0000\":1}}"),
    S("\x01{\x02\"user_id\"\x1f:\x00\"u\"\x0b,\x0c\"ts\"\x7f:946684800000,\"type\":\"t\"}"),
    S("{\x01\"user_id\"\x1f:\x00\"u\"\x0b,\x0c\"ts\":946684800000,\"type\":\"t\"\x10}"),
    S("{\"user_id\":\"u\",\"ts\":946684800000,\"type\":\"t\"}\x00"),
    S("{\"user_id\":\"u\",\"ts\":946684800000,\"type\":\"t\"}\x0b"),
    S("{\"user_id\":\"u\",\"ts\":946684800000,\"type\":\"t\"}\x0c"),
    S("{\"user_id\":\"u\",\"ts\":946684800000,\"type\":\"t\"} \t\r\n"),
    S("{\"user_id\":\"u\",\"ts\":946684800000,\"type\":\"t\"} x"),
    S("{\"user_id\":\"u\",\"ts\":946684800000,\"type\":\"t\"}{}"),
    S("\x00{\"user_id\":\"u\",\"ts\":946684800000,\"type\":\"t\"}"),
    S("\xEF\xBB\xBF{\"user_id\":\"u\",\"ts\":946684800000,\"type\":\"t\"}"),
    S("\xEF\xBB\xBF \x01{\"user_id\":\"u\",\"ts\":946684800000,\"type\":\"t\"}"),
    S("\xEF\xBB\xBF\xEF\xBB\xBF{}"),
    S(" \xEF\xBB\xBF{}"),
    S("\xEF\xBB\xBF{}"), S("\xEF\xBB\xBF[]"), S("\xEF\xBB\xBF" "7"), S("\xEF\xBB\xBF" "77"),
    S("\xEF\xBB\xBF"), S("\xEF\xBB\xBF "), S("\xEF\xBB"), S(" "), S("\x00"), S("\t\n"),
    S("{"), S("}"), S("["), S("{\"a\""), S("{\"a\":"), S("{\"a\":1"), S("{\"a\":1,"),
    S("{\"a\":1,}"), S("{\"a\":1 "), S("{\"a\":1\x00"), S("{\"a\":1,\"b\""), S("{ "),
    S("[1,"), S("[1"), S("[ "), S("\"abc\\"), S("{\"a\\"), S("{\"a\\\"}"),
    S("{\"user_id\":\"u\",\"ts\":946684800000,\"type\":\"t\",\"item\":{\"color\":\"x\"},\"filters\":5}"),
    S("{\"user_id\":\"u\",\"ts\":946684800000,\"type\":\"t\",\"c5\":[]}"),
    S("{\"user_id\":\"u\",\"ts\":946684800000,\"type\":\"t\",\"c5\":{\"v\":{}},\"c6\":{\"v\":\"six\"}}"),
    S("{\"user_id\":\"u\",\"ts\":\"2026-11-02T10:11:12Z\",\"type\":\"t\",\"event_id\":null}"),
    S("{\"type\":\"t\",\"ts\":946684800000,\"user_id\":\"u\",\"item\":{}}"),
    S("{\"user_id\":\"u\xc3\xa9\",\"ts\":946684800000,\"type\":\"t\\u00e9\"}"),
    S("{\"user_id\":\"u\",\"ts\":946684800000,\"type\":\"t\"\xc3}"),
    S("{\"user_id\":\"u\xed\xa0\x80\",\"ts\":946684800000,\"type\":\"t\"}"),
};

TEST(event_diff_documents)
{
    for (size_t i = 0; i < PD_ARRAY_LEN(docs); i++) DIFF(docs[i].s, docs[i].n);
}

/* Big objects (the scanner indexes objects of 9..32 members without
 * escaped keys): duplicate keys, escaped keys, null first members. */
TEST(event_diff_big_objects)
{
    static const char *const extra[] = {"", "\"\\u0063olor\":\"esc\",", "\"color\":null,",
                                        "\"color\":[],", "\"make\":\"M0\","};
    pd_buf b = {0};
    for (int members = 7; members <= 40; members += 3)
        for (size_t x = 0; x < PD_ARRAY_LEN(extra); x++)
            for (int dup = 0; dup < 3; dup++) {
                b.len = 0;
                pd_buf_printf(&b, "{\"user_id\":\"u\",\"ts\":946684800000,\"type\":\"t\",\"item\":{%s",
                              extra[x]);
                for (int i = 0; i < members; i++) {
                    static const char *const names[] = {"color", "make", "price", "doors", "year",
                                                        "fuel", "v", "mileage", "body", "seats"};
                    const char *nm = names[i % 10];
                    if (i >= 10 && !dup) pd_buf_printf(&b, "\"k%d\":%d,", i, i);
                    else pd_buf_printf(&b, "\"%s\":\"%s%d\",", nm, nm, i);
                    if (dup == 2) pd_buf_printf(&b, "\"%s\":%d,", nm, i);
                }
                pd_buf_printf(&b, "\"last\":1}}");
                DIFF(b.p, b.len);
            }
    pd_buf_free(&b);
}

/* Nesting around the limit of 1000 arrays/objects (the event itself
 * counts as one level). */
TEST(event_diff_nesting)
{
    static const char head[] = "{\"user_id\":\"u\",\"ts\":946684800000,\"type\":\"t\",\"x\":";
    static const int levels[] = {997, 998, 999, 1000, 1001, 1500};
    pd_buf b = {0};
    for (size_t li = 0; li < PD_ARRAY_LEN(levels); li++)
        for (int style = 0; style < 4; style++) {
            int n = levels[li];
            b.len = 0;
            if (style < 3) pd_buf_append(&b, head, sizeof head - 1);
            for (int i = 0; i < n; i++) {
                int obj = style == 1 || (style == 2 && i % 2);
                pd_buf_append(&b, obj ? "{\"k\":" : "[", obj ? 5 : 1);
            }
            pd_buf_append(&b, "1", 1);
            for (int i = n - 1; i >= 0; i--) {
                int obj = style == 1 || (style == 2 && i % 2);
                pd_buf_append(&b, obj ? "}" : "]", 1);
            }
            if (style < 3) pd_buf_append(&b, "}", 1);
            DIFF(b.p, b.len);
        }
    pd_buf_free(&b);
}

/* Long number runs (upstream cJSON 1.7.15 stopped at 63 bytes; Debian's
 * fix for CVE-2023-26819 removed the limit) and long strings. */
TEST(event_diff_long_tokens)
{
    static const char head[] = "{\"user_id\":\"u\",\"ts\":946684800000,\"type\":\"t\",\"item\":{\"price\":";
    static const int lens[] = {14, 15, 16, 17, 61, 62, 63, 64, 65, 100, 400, 2000};
    static const char *const shapes[] = {"9", "0", "1.", "0.0", "-1", "1e-", "-0.", "1.5e3"};
    char buf[8192];
    for (size_t li = 0; li < PD_ARRAY_LEN(lens); li++)
        for (size_t si = 0; si < PD_ARRAY_LEN(shapes); si++) {
            size_t o = sizeof head - 1;
            memcpy(buf, head, o);
            const char *sh = shapes[si];
            size_t shl = strlen(sh);
            /* the shape's prefix, then digits up to the run length, then a
             * possible tail digit */
            memcpy(buf + o, sh, shl);
            size_t i = shl;
            for (; i < (size_t)lens[li]; i++) buf[o + i] = (char)('0' + (i * 7) % 10);
            o += i;
            memcpy(buf + o, "}}", 2);
            o += 2;
            DIFF(buf, o);
            /* the same run as ts, and as the whole document */
            char b2[8192];
            int m = snprintf(b2, sizeof b2, "{\"user_id\":\"u\",\"ts\":%.*s,\"type\":\"t\"}",
                             (int)i, buf + sizeof head - 1);
            DIFF(b2, (size_t)m);
            DIFF(buf + sizeof head - 1, i);
        }
    /* strings around the length limits, plain and escaped */
    static const int slens[] = {63, 64, 65, 255, 256, 257, 300, 5000};
    for (size_t li = 0; li < PD_ARRAY_LEN(slens); li++)
        for (int style = 0; style < 4; style++) {
            pd_buf v = {0}, b = {0};
            for (int i = 0; i < slens[li]; i++) {
                if (style == 1 && i % 2 == 0 && i + 1 < slens[li]) {
                    pd_buf_append(&v, "\\u00e9", 6); /* 2 bytes */
                    i++;
                } else if (style == 2 && i == slens[li] - 1) {
                    pd_buf_append(&v, "\\u0000x", 7);
                } else if (style == 3 && i % 3 == 0) {
                    pd_buf_append(&v, "\xc3\xa9", 2);
                    i++;
                } else {
                    pd_buf_append(&v, "abcdefghij" + i % 10, 1);
                }
            }
            for (int slot = 0; slot < 4; slot++) {
                b.len = 0;
                static const char *const fmt[] = {
                    "{\"user_id\":\"%s\",\"ts\":946684800000,\"type\":\"t\"}",
                    "{\"user_id\":\"u\",\"ts\":946684800000,\"type\":\"%s\"}",
                    "{\"user_id\":\"u\",\"ts\":946684800000,\"type\":\"t\",\"event_id\":\"%s\"}",
                    "{\"user_id\":\"u\",\"ts\":946684800000,\"type\":\"t\",\"item\":{\"color\":\"%s\"}}",
                };
                pd_buf_append(&v, "", 1); /* NUL for %s */
                v.len--;
                pd_buf_printf(&b, fmt[slot], v.p);
                DIFF(b.p, b.len);
            }
            pd_buf_free(&v);
            pd_buf_free(&b);
        }
}

/* Events big enough to grow (and then release) the per-thread tape and
 * scratch buffers past their 1 MiB keep limit. */
TEST(event_diff_huge)
{
    char why[1200];
    pd_buf b = {0};
    schemas();
    for (int shape = 0; shape < 3; shape++) {
        b.len = 0;
        pd_buf_printf(&b, "{\"user_id\":\"u\",\"type\":\"t\",\"ts\":");
        if (shape == 0) {
            pd_buf_printf(&b, "946684800000,\"item\":{\"color\":\"c\"},\"big\":[");
            for (int i = 0; i < 100000; i++) pd_buf_printf(&b, "%s%d", i ? "," : "", i % 10);
            pd_buf_printf(&b, "]}");
        } else {
            /* a ts string (decoded in the scratch buffer) or number run of 1.2 MB */
            pd_buf_printf(&b, shape == 1 ? "\"\\u0032" : "1");
            for (int i = 0; i < 1200000; i++) pd_buf_append(&b, "0", 1);
            pd_buf_printf(&b, shape == 1 ? "\"}" : "}");
        }
        if (pd_event_ref_compare(&schema_default, b.p, b.len, (size_t)4 << 20, why, sizeof why))
            pd_test_fail(__FILE__, __LINE__, "%s", why);
    }
    /* and a small one afterwards still parses */
    static const char small[] = "{\"user_id\":\"x\",\"ts\":946684800000,\"type\":\"y\"}";
    DIFF(small, sizeof small - 1);
    pd_buf_free(&b);
}

/* Every categorical dimension of the default schema with a long value:
 * the extracted strings overflow the event's inline text buffer. */
TEST(event_diff_text_overflow)
{
    schemas();
    pd_buf b = {0};
    for (int len = 200; len <= 256; len += 56) {
        b.len = 0;
        pd_buf_printf(&b, "{\"user_id\":\"");
        for (int i = 0; i < 256; i++) pd_buf_append(&b, "u", 1);
        pd_buf_printf(&b, "\",\"event_id\":\"");
        for (int i = 0; i < 256; i++) pd_buf_append(&b, "e", 1);
        pd_buf_printf(&b, "\",\"ts\":946684800000,\"type\":\"");
        for (int i = 0; i < 64; i++) pd_buf_append(&b, "t", 1);
        pd_buf_printf(&b, "\",\"item\":{");
        for (int d = 0; d < schema_default.ndims; d++) {
            pd_buf_printf(&b, "%s\"%s\":\"", d ? "," : "", schema_default.dims[d].name);
            for (int i = 0; i < len; i++) pd_buf_append(&b, i % 2 ? "\\u0041" : "A", i % 2 ? 6 : 1);
            pd_buf_printf(&b, "\"");
        }
        pd_buf_printf(&b, "}}");
        DIFF(b.p, b.len);
        /* two events alive at once keep their own strings */
        pd_event e1, e2;
        char err[256];
        CHECK_INT(pd_event_parse(&e1, &schema_default, b.p, b.len, 0, err, sizeof err), PD_EV_OK);
        static const char small[] = "{\"user_id\":\"x\",\"ts\":946684800000,\"type\":\"y\"}";
        CHECK_INT(pd_event_parse(&e2, &schema_default, small, sizeof small - 1, 0, err, sizeof err),
                  PD_EV_OK);
        CHECK(e1.user_id_len == 256 && e1.user_id[0] == 'u' && e1.user_id[256] == '\0');
        CHECK(e2.user_id_len == 1 && e2.user_id[0] == 'x');
        pd_event_free(&e2);
        pd_event_free(&e1);
    }
    pd_buf_free(&b);
}

/* ---- random mutations of generated events ---- */

static uint64_t rng_state;

static uint64_t rnd(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}

static void mutate(pd_buf *b)
{
    static const char *const ins[] = {"\\", "\"", "{", "}", "[", "]", ",", ":", "0", "1", "9",
                                      "-", ".", "e", "E", "+", " ", "\x00", "\x01", "\\u",
                                      "\\u0000", "\\uD800", "\\uDC00", "\\uD83D\\uDE00", "\\\"",
                                      "null", "true", "\xc3\xa9", "1e999", "[]", "{}", "\"\":1,"};
    int k = 1 + (int)(rnd() % 3);
    for (int m = 0; m < k; m++) {
        size_t at = b->len ? (size_t)(rnd() % (b->len + 1)) : 0;
        switch (rnd() % 6) {
        case 0: /* byte flip */
            if (at < b->len) b->p[at] = (char)(rnd() & 0xff);
            break;
        case 1: /* bit flip */
            if (at < b->len) b->p[at] ^= (char)(1u << (rnd() % 8));
            break;
        case 2:
        case 3: { /* insertion */
            const char *s = ins[rnd() % PD_ARRAY_LEN(ins)];
            size_t n = s[0] ? strlen(s) : 1;
            pd_buf_append(b, s, n); /* grow */
            memmove(b->p + at + n, b->p + at, b->len - n - at);
            memcpy(b->p + at, s, n);
            break;
        }
        case 4: /* deletion */
            if (at < b->len) {
                memmove(b->p + at, b->p + at + 1, b->len - at - 1);
                b->len--;
            }
            break;
        default: /* truncation */
            b->len = at;
            break;
        }
    }
}

TEST(event_diff_mutations)
{
    pd_gen_opts o = {.seed = 7, .count = 400, .users = 50, .days = 7,
                     .start_ts = 1793577600000LL, .bad_rate = 0.2, .dup_rate = 0.0};
    pd_gen *g = NULL;
    char err[256];
    CHECK_INT(pd_gen_new(&o, &g, err, sizeof err), PD_OK);
    if (!g) return;
    pd_buf line = {0}, m = {0};
    size_t nseeds = 0;
    char **seeds = pd_calloc((size_t)o.count, sizeof *seeds);
    size_t *lens = pd_calloc((size_t)o.count, sizeof *lens);
    while (pd_gen_next(g, &line, NULL) != PD_GEN_END) {
        DIFF(line.p, line.len);
        seeds[nseeds] = pd_malloc(line.len);
        memcpy(seeds[nseeds], line.p, line.len);
        lens[nseeds++] = line.len;
    }
    rng_state = 0x9E3779B97F4A7C15ULL;
    for (int i = 0; i < 6000; i++) {
        size_t s = (size_t)(rnd() % nseeds);
        m.len = 0;
        pd_buf_append(&m, seeds[s], lens[s]);
        mutate(&m);
        DIFF(m.p, m.len);
    }
    for (size_t i = 0; i < nseeds; i++) free(seeds[i]);
    free(seeds);
    free(lens);
    pd_buf_free(&line);
    pd_buf_free(&m);
    pd_gen_free(g);
}

#!/usr/bin/env python3
"""json_corpus.py -- a labelled corpus of event documents for the strict
JSON dialect (docs/data-model.md, "Event JSON": RFC 8259, UTF-8 without
BOM, at most 64 nested arrays/objects).

Writes one document per line: "V <hex>" when the document is JSON under the
dialect, "I <hex>" when it is not. The label comes from Python's json module
made strict (see strict_valid), never from the C scanner; the unit test
event_json_corpus (tests/unit/test_event_corpus.c) runs pd_event_parse over
every document and requires the same verdict, then compares the fields it
extracts from the valid ones with a cJSON-based extraction.

The corpus is deterministic (fixed seed): hand-written edge cases (values
placed in event templates, whole documents, nesting and long tokens around
the limits), random valid JSON values, generated events and random
mutations of them.
Usage: tests/json_corpus.py [--seed N] [--mutations N] > corpus.txt
"""
import argparse
import json
import json.decoder
import random
import sys

NESTING_LIMIT = 64


def _bad_constant(name):
    raise ValueError("non-RFC constant %s" % name)


def _lone_surrogate(s):
    return any(0xD800 <= ord(ch) <= 0xDFFF for ch in s)


def _check(v, depth):
    """Raises ValueError on a lone surrogate or nesting over the limit.
    Objects arrive as lists of (key, value) pairs (duplicates kept)."""
    if isinstance(v, str):
        if _lone_surrogate(v):
            raise ValueError("lone surrogate")
    elif isinstance(v, (list, _Obj)):
        if depth + 1 > NESTING_LIMIT:
            raise ValueError("nesting")
        if isinstance(v, _Obj):
            for k, x in v:
                _check(k, depth + 1)
                _check(x, depth + 1)
        else:
            for x in v:
                _check(x, depth + 1)


class _Obj(list):
    """An object's members in order, duplicates included."""


def strict_valid(doc: bytes) -> bool:
    """RFC 8259 with the dialect's limits. Python's json alone is lax in two
    ways, closed here: it accepts NaN/Infinity/-Infinity (parse_constant
    raises) and lone surrogate escapes (checked on every decoded string,
    keys included). Strict UTF-8 decoding rejects overlong forms, encoded
    surrogates and code points over U+10FFFF; json.loads rejects a leading
    BOM and raw control characters in strings (strict=True)."""
    try:
        text = doc.decode("utf-8", errors="strict")
    except UnicodeDecodeError:
        return False
    if not text or text[0] == "\ufeff":
        return False
    try:
        v = json.loads(text, parse_constant=_bad_constant, parse_int=float,
                       object_pairs_hook=_Obj, strict=True)
        _check(v, 0)
    except (ValueError, RecursionError):
        return False
    return True


OK = b'"user_id":"u","ts":946684800000,"type":"t"'

VALUES = [
    # numbers
    b"0", b"-0", b"01", b"00", b"-01.0e-0", b"1.", b"1.e5", b"-", b"-.5", b".5", b"1.5.3", b"1e",
    b"1e+", b"1E+2", b"1e5e5", b"+1", b"--1", b"1-2", b"1+2", b"0x10", b"1_0", b"1e999", b"-1e999",
    b"1e-999", b"4.9e-324", b"2.5e-324", b"1.7976931348623157e308", b"1.7976931348623159e308",
    b"9007199254740993", b"9007199254740992", b"-9007199254740992", b"123456789012345",
    b"1234567890123456", b"0.1", b"0.30000000000000004", b"1.0000000000000002",
    b"123456789012345.5", b"12345678901234.55", b"-0.0", b"0e0", b"1E5", b"5e-1", b"0.5", b"-0.5",
    b"946684800000", b"946684800000.0", b"9.466848e11", b"1795328747333", b"7258118400000", b"1e19",
    b"9223372036854775807", b"-9223372036854775808", b"9223372036854775808", b"18990", b"18990.5",
    b"1.5e3", b"2019", b"1e2.5", b"1.2e", b"1.2e-", b"0.000000000000000000001",
    b"100000000000000000000000", b"NaN", b"Infinity", b"-Infinity", b"inf", b"-NaN", b"0.e1",
    b"1e0001", b"-00", b"00.5", b"0e", b"- 1", b"1 ",
    # literals
    b"null", b"true", b"false", b"nul", b"tru", b"fals", b"nulll", b"True", b"NULL", b"truee", b"n",
    # strings
    b'""', b'"a"', b'"blue"', b'"\\u0000"', b'"a\\u0000b"', b'"\\uZZZZ"', b'"ab\\uZZZZcd"',
    b'"\\u00e9"', b'"\\u00E9t\\u00e9"', b'"\\uD83D\\uDE00"', b'"\\ud83d\\ude00"', b'"\\uD83D"',
    b'"\\uDE00"', b'"\\uD83Dx"', b'"\\uD83D\\u0041"', b'"\\uD83D\\u"', b'"\\uDBFF\\uDFFF"',
    b'"\\uD800\\uDC00"', b'"\\uD83D\\uZZZZ"', b'"\\uD83D\\\\uDE00"', b'"\\uDE00\\uD83D"',
    b'"\\uD83D\\uD83D\\uDE00"', b'"\\/"', b'"\\b\\f\\n\\r\\t"', b'"\\x"', b"\"\\'\"", b'"\\a"',
    b'"\\U0041"', b'"\\u41"', b'"\\u004"', b'"\\u0041"', b'"\\u00411"', b'"\\u+041"', b'"\\u 041"',
    b'"\\u-041"', b'"\\u0x41"', b'"\x01\x02\x1f"', b'"a\tb"', b'"a\nb"', b'"a\x00z"', b'"\x00"',
    b'"\x7f"', b'"\\u007f"', b'"\\uZZZ\\\\x"', b'"\\u000\\\\"', b'"\\u00\\"ab"', b'"\\\\"', b'"\\""',
    b'"\\"', b'"abc', b'"\\', b'"\\u"', b'"\\u12"', b'"\\uFFFF"', b'"\\uFDD0"', b'"\\u0080"',
    b'"\\u07FF"', b'"\\u0800"', b'"\\u007F"', b'"\xc3\xa9"', b'"\xf0\x9f\x98\x80"',
    b'"\xef\xbf\xbf"', b'"\xf4\x8f\xbf\xbf"', b'"\xf4\x90\x80\x80"', b'"\xed\xa0\x80"',
    b'"\xc0\xaf"', b'"\xe0\x80\xaf"', b'"\xc3"', b'"\xef\xbb\xbf"', b'"\\ufeff"',
    b'"2026-11-02T10:11:12Z"', b'"2026-11-02T10:11:12.123456789+01:00"',
    b'"2026-11-02T10:11:12\\u005a"', b'"2026-11-02T10:11:12Z\\u0000junk"',
    b'"2026-11-02T10:11:12Z\x00junk"', b'"1795328747333"', b'"view"', b'"e-1"', b"'a'",
    # containers
    b"{}", b"[]", b"[1]", b"[1,]", b"[,1]", b'{"color":"x"}', b'[{"a":1}]',
    b'{"b":{"c":"deep","d":5}}', b'{"b":[1]}', b'{"b":null}', b'{"b":{"c":null}}', b'{"v":"x"}',
    b'{"v":7}', b'{"v":null}', b"{,}", b'{"a"}', b'{"a":}', b'{"a" : 1 , }', b"[1 2]",
    b'{"a":1 "b":2}', b"{1:2}", b"{'a':1}", b"[\x00]", b"[\x01 1\x1f]", b"[\x0b1]", b"[\x0c1]",
    b"[\xc2\xa01]", b'{"q":{"r":{"s":"four"}}}', b'{"q":{"r":[]}}', b"[ 1 ,\t2\r\n]",
]

TEMPLATES = [
    b"%V",
    b"\xef\xbb\xbf%V",
    b'{"user_id":%V,"ts":946684800000,"type":"t"}',
    b'{"user_id":"u","ts":%V,"type":"t"}',
    b'{"user_id":"u","ts":946684800000,"type":%V}',
    b'{' + OK + b',"event_id":%V}',
    b'{' + OK + b',"item":%V}',
    b'{' + OK + b',"item":{"color":%V,"price":%V}}',
    b'{' + OK + b',"item":{"price":null},"filters":{"color":%V,"price":%V}}',
    b'{' + OK + b',"a":%V,"top":"T","topnum":3}',
    b'{' + OK + b',"a":{"b":%V},"top":"T"}',
    b'{' + OK + b',"a":{"b":{"c":%V,"d":%V}}}',
    b'{' + OK + b',"p":{"q":%V},"c7":%V,"c8":{"v":%V}}',
    b'{' + OK + b',"c9":{"v":%V},"item":{"v":%V}}',
    b'{' + OK + b',"x":[%V,{"y":%V}],"z":%V}',
    b'{' + OK + b',"item":{"color":%V,"color":"second"}}',
    b'{"event_id":"e-1-0","user_id":"u-2","ts":1794734293699,"type":"view","item":{'
    b'"id":"ad-1","make":%V,"model":"GLC","color":"white","damaged":%V,"doors":%V,'
    b'"price":%V,"mileage":47000,"year":2022}}',
    b'{' + OK + b'}%V',
    b"[%V]",
    b'{"k":%V}',
    b'{%V:1,' + OK + b'}',
]

DOCS = [
    b'{"user_id\\u0000zz":"u","ts":946684800000,"type":"t"}',
    b'{"user_id\x00zz":"u","ts":946684800000,"type":"t"}',
    b'{"user\\u005fid":"u","ts":946684800000,"type":"t"}',
    b'{"\\u0075ser_id":"u","t\\u0073":946684800000,"typ\\u0065":"t"}',
    b'{"user_id\\u0000":"u","user_id":"v","ts":946684800000,"type":"t"}',
    b'{"user_id":"a","user_id":"b","ts":946684800000,"type":"t"}',
    b'{"user_id":null,"user_id":"b","ts":946684800000,"type":"t"}',
    b'{"user_id":"u","ts":946684800000,"ts":"x","type":"t"}',
    b'{' + OK + b',"item":null,"item":{"color":"x"}}',
    b'{' + OK + b',"item":{"color":null},"filters":{"color":"red"}}',
    b'{' + OK + b',"item":{"color":[]},"filters":{"color":"red"}}',
    b'{' + OK + b',"item":{"\\u00e9t\\u00e9":"x","k\\"e\\\\y":"y","a\\tb":"z","\\/":"w"}}',
    b'{' + OK + b',"item":{"k\\"e\\\\y":"y","a\tb":"z","/":"w","\xc3\xa9t\xc3\xa9":1.5}}',
    b'{' + OK + b',"item":{"col\\u006fr\\u0000x":"y"}}',
    b'{' + OK + b',"item":{"color\\uZZZZ":"y"}}',
    b'{' + OK + b',"item":{"":"y","\\u0000":1}}',
    b'{' + OK + b',"item":{"\\ud800":"y"}}',
    b'\x01{\x02"user_id"\x1f:\x00"u"\x0b,\x0c"ts"\x7f:946684800000,"type":"t"}',
    b'{\x01"user_id":"u","ts":946684800000,"type":"t"}',
    b'{"user_id":"u","ts":946684800000,"type":"t"}\x00',
    b'{"user_id":"u","ts":946684800000,"type":"t"}\x0b',
    b'{"user_id":"u","ts":946684800000,"type":"t"}\x0c',
    b'{"user_id":"u","ts":946684800000,"type":"t"} \t\r\n',
    b' \t\r\n{"user_id":"u","ts":946684800000,"type":"t"}',
    b'{"user_id":"u","ts":946684800000,"type":"t"} x',
    b'{"user_id":"u","ts":946684800000,"type":"t"}{}',
    b'\x00{"user_id":"u","ts":946684800000,"type":"t"}',
    b'\xef\xbb\xbf{"user_id":"u","ts":946684800000,"type":"t"}',
    b'\xef\xbb\xbf \x01{"user_id":"u","ts":946684800000,"type":"t"}',
    b"\xef\xbb\xbf\xef\xbb\xbf{}", b" \xef\xbb\xbf{}", b"\xef\xbb\xbf{}", b"\xef\xbb\xbf[]",
    b"\xef\xbb\xbf7", b"\xef\xbb\xbf77", b"\xef\xbb\xbf", b"\xef\xbb\xbf ", b"\xef\xbb", b" ",
    b"\x00", b"\t\n", b"", b"{", b"}", b"[", b'{"a"', b'{"a":', b'{"a":1', b'{"a":1,', b'{"a":1,}',
    b'{"a":1 ', b'{"a":1\x00', b'{"a":1,"b"', b"{ ", b"[1,", b"[1", b"[ ", b'"abc\\', b'{"a\\',
    b'{"a\\"}',
    b'{' + OK + b',"item":{"color":"x"},"filters":5}',
    b'{' + OK + b',"c5":[]}',
    b'{' + OK + b',"c5":{"v":{}},"c6":{"v":"six"}}',
    b'{"user_id":"u","ts":"2026-11-02T10:11:12Z","type":"t","event_id":null}',
    b'{"type":"t","ts":946684800000,"user_id":"u","item":{}}',
    b'{"user_id":"u\xc3\xa9","ts":946684800000,"type":"t\\u00e9"}',
    b'{"user_id":"u","ts":946684800000,"type":"t"\xc3}',
    b'{"user_id":"u\xed\xa0\x80","ts":946684800000,"type":"t"}',
    b'{"user_id":"\\u0000","ts":946684800000,"type":"t"}',
    b'{"user_id":"u","ts":946684800000,"type":"\\uZZZZ"}',
    b'{"user_id":"u","ts":946684800000,"type":"a\x01b"}',
    b'{"user_id":"u","ts":946684800000,"type":"\\udc00"}',
]


def nesting_docs():
    head = b'{' + OK + b',"x":'
    out = []
    for n in (1, 2, 61, 62, 63, 64, 65, 100, 999, 1000, 1001, 3000):
        for style in range(4):
            body = b""
            opens = []
            for i in range(n):
                obj = style == 1 or (style == 2 and i % 2)
                opens.append(obj)
                body += b'{"k":' if obj else b"["
            body += b"1" + b"".join(b"}" if o else b"]" for o in reversed(opens))
            out.append(head + body + b"}" if style < 3 else body)
    return out


def long_token_docs():
    out = []
    head = b'{' + OK + b',"item":{"price":'
    for ln in (14, 15, 16, 17, 63, 64, 65, 400, 2000):
        for shape in (b"9", b"0", b"1.", b"0.0", b"-1", b"1e-", b"-0.", b"1.5e3", b"-0.0", b"0.5e-"):
            run = shape + bytes(b"0123456789"[(i * 7) % 10] for i in range(len(shape), ln))
            out.append(head + run + b"}}")
            out.append(b'{"user_id":"u","ts":' + run + b',"type":"t"}')
            out.append(run)
    fmts = [b'{"user_id":"%s","ts":946684800000,"type":"t"}',
            b'{"user_id":"u","ts":946684800000,"type":"%s"}',
            b'{' + OK + b',"event_id":"%s"}',
            b'{' + OK + b',"item":{"color":"%s"}}']
    for ln in (63, 64, 65, 255, 256, 257, 5000):
        for style in range(4):
            v = b""
            i = 0
            while i < ln:
                if style == 1 and i % 2 == 0 and i + 1 < ln:
                    v += b"\\u00e9"
                    i += 2
                    continue
                if style == 2 and i == ln - 1:
                    v += b"\\u0000x"
                elif style == 3 and i % 3 == 0:
                    v += b"\xc3\xa9"
                    i += 2
                    continue
                else:
                    v += b"abcdefghij"[i % 10:i % 10 + 1]
                i += 1
            for f in fmts:
                out.append(f.replace(b"%s", v))
    return out


def big_object_docs():
    out = []
    names = ["color", "make", "price", "doors", "year", "fuel", "v", "mileage", "body", "seats"]
    for members in range(7, 41, 3):
        for extra in ("", '"\\u0063olor":"esc",', '"color":null,', '"color":[],', '"make":"M0",'):
            for dup in range(3):
                s = '{"user_id":"u","ts":946684800000,"type":"t","item":{' + extra
                for i in range(members):
                    nm = names[i % 10]
                    s += ('"k%d":%d,' % (i, i)) if (i >= 10 and not dup) else ('"%s":"%s%d",' % (nm, nm, i))
                    if dup == 2:
                        s += '"%s":%d,' % (nm, i)
                s += '"last":1}}'
                out.append(s.encode())
    return out


MAKES = ["BMW", "Audi", "VW", "Skoda", "Kia", "M\u00e9gane", "\u65e5\u7523"]
COLORS = ["blue", "red", "white", "black", "gr\u00fcn"]


def gen_event(r):
    ev = {"user_id": "u-%d" % r.randrange(200), "type": r.choice(["view", "click", "lead"])}
    ev["ts"] = r.choice([1794734293699 + r.randrange(10 ** 9), "2026-11-02T10:11:12.%03dZ" % r.randrange(1000)])
    if r.random() < 0.7:
        ev["event_id"] = "e-%d" % r.randrange(10 ** 6)
    item = {"make": r.choice(MAKES), "color": r.choice(COLORS), "price": r.randrange(1000, 90000),
            "year": r.randrange(1990, 2027), "doors": r.choice([3, 5, "5"]), "damaged": r.random() < 0.2,
            "mileage": round(r.random() * 200000, r.randrange(4))}
    ev["item"] = {k: v for k, v in item.items() if r.random() < 0.8}
    if r.random() < 0.4:
        ev["filters"] = {"color": r.choice(COLORS), "fuel": r.choice(["diesel", "petrol", None]),
                         "price": r.choice([None, 5000.5, -1, 1e300])}
    keys = list(ev)
    r.shuffle(keys)
    ev = {k: ev[k] for k in keys}
    sep = r.choice([(",", ":"), (", ", ": "), (",\n ", " :\t")])
    return json.dumps(ev, ensure_ascii=r.random() < 0.3, separators=sep).encode()


def random_value(r, depth=0):
    k = r.randrange(8 if depth < 5 else 5)
    if k == 0:
        return None
    if k == 1:
        return r.random() < 0.5
    if k == 2:
        return r.choice([0, -1, 7, 2 ** 53 + 1, 10 ** 30, -0.0, 0.1, 1e-300, 1.5e300, r.random() * 1e6])
    if k in (3, 4):
        return "".join(r.choice(["a", "\u00e9", "\"", "\\", "/", "\n", "\x00", "\x1f", "\u2028",
                                 "\U0001f600", "\uffff", "\ud7ff", " "]) for _ in range(r.randrange(6)))
    if k == 5:
        return [random_value(r, depth + 1) for _ in range(r.randrange(4))]
    return {r.choice(["k0", "k1", "k2", "", "\u00e9", "a\"b", "\x00"]): random_value(r, depth + 1)
            for _ in range(r.randrange(4))}


INSERTS = [b"\\", b'"', b"{", b"}", b"[", b"]", b",", b":", b"0", b"1", b"9", b"-", b".", b"e", b"E",
           b"+", b" ", b"\x00", b"\x01", b"\x1f", b"\x7f", b"\\u", b"\\u0000", b"\\uD800", b"\\uDC00",
           b"\\uD83D\\uDE00", b"\\uZZZZ", b'\\"', b"null", b"true", b"\xc3\xa9", b"1e999", b"[]",
           b"{}", b'"":1,', b"\xef\xbb\xbf", b"NaN", b"Infinity", b"01", b".5", b"\t", b"\r\n",
           b"\x0b", b"\xc2\xa0", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xc0\xaf"]


def mutate(r, b):
    b = bytearray(b)
    for _ in range(1 + r.randrange(3)):
        at = r.randrange(len(b) + 1)
        op = r.randrange(7)
        if op == 0 and at < len(b):
            b[at] = r.randrange(256)
        elif op == 1 and at < len(b):
            b[at] ^= 1 << r.randrange(8)
        elif op in (2, 3, 4):
            b[at:at] = r.choice(INSERTS)
        elif op == 5 and at < len(b):
            del b[at]
        elif op == 6:
            del b[at:]
    return bytes(b)


def corpus(seed, nmut):
    r = random.Random(seed)
    docs = []
    for t in TEMPLATES:
        for v in VALUES:
            docs.append(t.replace(b"%V", v))
    docs += DOCS + nesting_docs() + long_token_docs() + big_object_docs()
    for _ in range(300):
        v = random_value(r)
        ev = json.loads(gen_event(r))
        ev[r.choice(["x", "item", "filters", "top"])] = v
        docs.append(json.dumps(v, ensure_ascii=r.random() < 0.5).encode())
        docs.append(json.dumps(ev, ensure_ascii=r.random() < 0.5).encode())
    events = [gen_event(r) for _ in range(400)]
    docs += events
    for _ in range(nmut):
        docs.append(mutate(r, r.choice(events)))
    return docs


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=18)
    ap.add_argument("--mutations", type=int, default=6000)
    a = ap.parse_args()
    # The C accelerator checks \u escapes digit by digit; the pure-Python
    # fallback would take int(s, 16) of "+041" or " 041".
    assert json.decoder.c_scanstring is not None, "json's C accelerator is missing"
    out = sys.stdout.buffer
    for d in corpus(a.seed, a.mutations):
        out.write(b"V " if strict_valid(d) else b"I ")
        out.write(d.hex().encode() + b"\n")


if __name__ == "__main__":
    main()

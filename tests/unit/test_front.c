/*
 * test_front.c -- the HTTP front end's head scanning (http_front.c): where a
 * head ends and which bytes civetweb refuses (the two must read the same
 * request), which requests are ops probes, which carry a body, and which
 * absolute-form targets name this server. Expected values are written out
 * from RFC 9112 and civetweb 1.15's get_http_header_len /
 * get_rel_url_at_current_server.
 */
#include "test.h"

#include "http_front.h"

#define HL(s) pd_front_head_len((s), sizeof(s) - 1)

TEST(front_head_len)
{
    CHECK_INT(HL("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), 27);
    CHECK_INT(HL("GET / HTTP/1.1\r\nHost: a\r\n\r"), 0);
    CHECK_INT(HL("GET / HTTP/1.1\r\nHost: a\r\n"), 0);
    CHECK_INT(HL("GET / HTTP/1.1\nHost: a\n\nrest"), 24);       /* bare LF, as civetweb */
    CHECK_INT(HL("GET / HTTP/1.1\r\nHost: a\n\r\n"), 0);         /* "\n\r\n" ends nothing */
    CHECK_INT(HL("GET / HTTP/1.1\r\nX: a\tb\r\n\r\n"), -1);      /* a control byte */
    CHECK_INT(HL("GET / HTTP/1.1\r\nX: \x01\r\n"), -1);
    CHECK_INT(HL("GET / HTTP/1.1\r\nX: caf\xc3\xa9\r\n\r\n"), 28); /* bytes >= 128 pass */
    CHECK_INT(HL("GET / HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n"), 18); /* the first of two */
    CHECK_INT(pd_front_head_len("", 0), 0);
}

static pd_front_head parse(const char *s, int port)
{
    pd_front_head h;
    int n = pd_front_head_len(s, strlen(s));
    pd_front_parse_head(s, n > 0 ? (size_t)n : strlen(s), port, &h);
    return h;
}

TEST(front_parse_head)
{
    pd_front_head h = parse("GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n", 8080);
    CHECK(h.ops && !h.has_body && !h.path_off);
    CHECK_INT(h.target_off, 4);
    CHECK_INT(h.target_len, 8);
    CHECK(parse("GET /metrics?x=1 HTTP/1.1\r\n\r\n", 1).ops);
    CHECK(parse("GET /readyz HTTP/1.0\r\n\r\n", 1).ops);
    CHECK(!parse("GET /healthzz HTTP/1.1\r\n\r\n", 1).ops);
    CHECK(!parse("POST /healthz HTTP/1.1\r\n\r\n", 1).ops);
    CHECK(!parse("GET /v1/profiles/u HTTP/1.1\r\n\r\n", 1).ops);
    /* bodies and unclear framings */
    CHECK(!parse("GET / HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 1).has_body);
    CHECK(!parse("GET / HTTP/1.1\r\nContent-Length: 000\r\n\r\n", 1).has_body);
    CHECK(parse("GET / HTTP/1.1\r\nContent-Length: 5\r\n\r\n", 1).has_body);
    CHECK(parse("GET / HTTP/1.1\r\ncontent-length : 5\r\n\r\n", 1).has_body);
    CHECK(parse("GET / HTTP/1.1\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n", 1).has_body);
    CHECK(parse("GET / HTTP/1.1\r\nContent-Length: 0, 5\r\n\r\n", 1).has_body);
    CHECK(parse("GET / HTTP/1.1\r\nContent-Length:\r\n\r\n", 1).has_body);
    CHECK(parse("GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 1).has_body);
    CHECK(parse("GET / HTTP/1.1\nTransfer-Encoding: identity\n\n", 1).has_body);
    /* the one Content-Length of a clear framing, and Expect: 100-continue */
    CHECK_INT(parse("POST / HTTP/1.1\r\nContent-Length: 12345\r\n\r\n", 1).content_length, 12345);
    CHECK_INT(parse("POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 1).content_length, 0);
    CHECK_INT(parse("POST / HTTP/1.1\r\n\r\n", 1).content_length, -1);
    CHECK_INT(parse("POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", 1).content_length, -1);
    CHECK_INT(parse("POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 1).content_length,
              -1);
    CHECK_INT(parse("POST / HTTP/1.1\r\nContent-Length: 5x\r\n\r\n", 1).content_length, -1);
    const char *ex = "POST /r HTTP/1.1\r\nHost: a\r\nexpect:  100-Continue \r\nContent-Length: 3\r\n\r\n";
    h = parse(ex, 1);
    CHECK_INT(h.expect_off, 27);
    CHECK(strncmp(ex + h.expect_off, "expect:", 7) == 0);
    CHECK_INT(parse("POST / HTTP/1.1\r\nExpect: something\r\n\r\n", 1).expect_off, 0);
    /* absolute form: the path replaces the target when the port is ours */
    const char *a = "GET http://127.0.0.1:8080/healthz HTTP/1.1\r\n\r\n";
    h = parse(a, 8080);
    CHECK_INT(h.target_off, 4);
    CHECK_INT(h.path_off, 25);
    CHECK(strncmp(a + h.path_off, "/healthz ", 9) == 0);
    CHECK(!parse(a, 8081).path_off);
    CHECK(parse("GET HTTP://h/x HTTP/1.1\r\n\r\n", 80).path_off);   /* default port 80 */
    CHECK(!parse("GET http://h/x HTTP/1.1\r\n\r\n", 8080).path_off);
    CHECK(parse("GET https://h/x HTTP/1.1\r\n\r\n", 443).path_off);
    CHECK(!parse("GET http://h:80x/x HTTP/1.1\r\n\r\n", 80).path_off); /* bad port */
    CHECK(!parse("GET http://h:8080 HTTP/1.1\r\n\r\n", 8080).path_off); /* no path */
    CHECK(!parse("GET ftp://h:21/x HTTP/1.1\r\n\r\n", 21).path_off);
    CHECK(!parse("OPTIONS * HTTP/1.1\r\n\r\n", 80).path_off);
}

/* Unit tests for cli/http: URL parsing (what the CLI accepts as an API
 * address) and the response parser (framing, chunked decoding, truncation
 * and malformed input). The TLS transport is exercised by the integration
 * tests against a real server. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/http.h"

/* ---- URLs ------------------------------------------------------------------ */

static void expect_url(const char *url, const char *host, const char *port)
{
    struct vg_http_target t;
    char err[256] = "";

    memset(&t, 0, sizeof t);
    snprintf(t.cacert, sizeof t.cacert, "%s", "/etc/vigil/ca.crt");
    snprintf(t.token, sizeof t.token, "%s", "vgt_x");
    if (vg_http_target_from_url(&t, url, err, sizeof err) != 0)
        fail_msg("%s refused: %s", url, err);
    assert_string_equal(t.host, host);
    assert_string_equal(t.port, port);
    /* cacert and token are left alone. */
    assert_string_equal(t.cacert, "/etc/vigil/ca.crt");
    assert_string_equal(t.token, "vgt_x");
}

static void refuse_url(const char *url, const char *why)
{
    struct vg_http_target t;
    char err[256] = "";

    memset(&t, 0, sizeof t);
    snprintf(t.host, sizeof t.host, "%s", "untouched");
    snprintf(t.port, sizeof t.port, "%s", "1");
    if (vg_http_target_from_url(&t, url, err, sizeof err) == 0)
        fail_msg("%s accepted as %s:%s", url, t.host, t.port);
    assert_true(err[0] != '\0');
    if (why && !strstr(err, why))
        fail_msg("%s: error \"%s\" does not mention \"%s\"", url, err, why);
    /* A refused URL leaves the target as it was. */
    assert_string_equal(t.host, "untouched");
    assert_string_equal(t.port, "1");
}

static void test_url_accepted(void **state)
{
    (void)state;
    expect_url("https://127.0.0.1:8443", "127.0.0.1", "8443");
    expect_url("https://127.0.0.1:8443/", "127.0.0.1", "8443");
    expect_url("https://localhost", "localhost", "443");
    expect_url("https://localhost/", "localhost", "443");
    expect_url("https://gw-1.ward3.example.org:9443", "gw-1.ward3.example.org", "9443");
    expect_url("HTTPS://Example.ORG:1", "Example.ORG", "1");
    expect_url("https://[::1]:8443", "::1", "8443");
    expect_url("https://[::1]", "::1", "443");
    expect_url("https://[2001:db8::7]:65535/", "2001:db8::7", "65535");
}

static void test_url_refused(void **state)
{
    (void)state;
    refuse_url("http://127.0.0.1:8443", "http://");
    refuse_url("HTTP://localhost", "http://");
    refuse_url("ftp://localhost", "https://");
    refuse_url("127.0.0.1:8443", "https://");
    refuse_url("", "https://");
    refuse_url("https://", "host");
    refuse_url("https:///", "host");
    refuse_url("https://localhost/api", "path");
    refuse_url("https://localhost//", "path");
    refuse_url("https://localhost?x=1", "query");
    refuse_url("https://localhost/#frag", "path");
    refuse_url("https://admin:secret@localhost:8443", "user");
    refuse_url("https://localhost:", "port");
    refuse_url("https://localhost:0", "port");
    refuse_url("https://localhost:65536", "port");
    refuse_url("https://localhost:+443", "port");
    refuse_url("https://localhost:80a", "port");
    refuse_url("https://localhost:123456", "port");
    refuse_url("https://::1:8443", "brackets");
    refuse_url("https://[::1", "IPv6");
    refuse_url("https://[]:8443", "IPv6");
    refuse_url("https://[not-v6]:8443", "IPv6");
    refuse_url("https://[::1%25eth0]:8443", "IPv6");
    refuse_url("https://[::1]x", "after");
    refuse_url("https://[::1]:", "port");
    refuse_url("https://bad_host:8443", "host");
    refuse_url("https://-lead.example", "host");
    refuse_url("https://trail-.example", "host");
    refuse_url("https://a..b", "host");
    refuse_url("https://example.org.", "host");
    refuse_url("https://999.1.2.3", "host");
    refuse_url("https://host name", "host");
    refuse_url("https://host\r\nX-Evil: 1", NULL);
    refuse_url(NULL, NULL);

    char long_host[300];
    memcpy(long_host, "https://", 8);
    memset(long_host + 8, 'a', sizeof long_host - 9);
    long_host[sizeof long_host - 1] = '\0';
    refuse_url(long_host, "host");
}

/* ---- request argument checks (refused before any connection) ------------- */

static void test_request_refuses_bad_arguments(void **state)
{
    (void)state;
    struct vg_http_target t;
    struct vg_http_response r;
    char err[256];

    memset(&t, 0, sizeof t);
    assert_int_equal(vg_http_target_from_url(&t, "https://127.0.0.1:1", err, sizeof err), 0);
    snprintf(t.cacert, sizeof t.cacert, "%s", "/nonexistent/ca.crt");

    assert_int_equal(vg_http_request(&t, "GET", "/x\r\nEvil: 1", NULL, 0, &r, err, sizeof err),
                     -1);
    assert_non_null(strstr(err, "path"));
    assert_int_equal(vg_http_request(&t, "GET", "relative", NULL, 0, &r, err, sizeof err), -1);
    assert_int_equal(vg_http_request(&t, "G T", "/", NULL, 0, &r, err, sizeof err), -1);
    assert_non_null(strstr(err, "method"));
    assert_int_equal(vg_http_request(&t, "POST", "/", NULL, 5, &r, err, sizeof err), -1);

    snprintf(t.token, sizeof t.token, "%s", "vgt_abc\r\nX-Evil: 1");
    assert_int_equal(vg_http_request(&t, "GET", "/", NULL, 0, &r, err, sizeof err), -1);
    assert_non_null(strstr(err, "token"));
    assert_null(strstr(err, "vgt_abc")); /* never echo the token */
    t.token[0] = '\0';

    t.cacert[0] = '\0';
    assert_int_equal(vg_http_request(&t, "GET", "/", NULL, 0, &r, err, sizeof err), -1);
    assert_non_null(strstr(err, "CA certificate"));

    snprintf(t.cacert, sizeof t.cacert, "%s", "/nonexistent/ca.crt");
    assert_int_equal(vg_http_request(&t, "GET", "/", NULL, 0, &r, err, sizeof err), -1);
    assert_non_null(strstr(err, "/nonexistent/ca.crt"));
    assert_null(r.body);
}

/* ---- response parser -------------------------------------------------------- */

static void parse_ok(const char *raw, int head, long status, const char *body, size_t body_len,
                     const char *ctype)
{
    struct vg_http_response r;
    char err[256] = "";

    if (vg_http_parse_response(raw, strlen(raw), head, &r, err, sizeof err) != 0)
        fail_msg("refused: %s", err);
    assert_int_equal(r.status, status);
    assert_int_equal(r.body_len, body_len);
    assert_non_null(r.body);
    assert_memory_equal(r.body, body, body_len);
    assert_int_equal(r.body[body_len], '\0');
    assert_string_equal(r.content_type, ctype);
    vg_http_response_free(&r);
    assert_null(r.body);
}

static void parse_bad(const char *raw, size_t len, const char *why)
{
    struct vg_http_response r;
    char err[256] = "";

    if (vg_http_parse_response(raw, len, 0, &r, err, sizeof err) == 0)
        fail_msg("accepted: status %ld body %zu bytes", r.status, r.body_len);
    assert_null(r.body);
    if (why && !strstr(err, why))
        fail_msg("error \"%s\" does not mention \"%s\"", err, why);
}

#define BAD(raw, why) parse_bad(raw, sizeof raw - 1, why)

static void test_parse_content_length(void **state)
{
    (void)state;
    parse_ok("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n"
             "{\"ok\":true}",
             0, 200, "{\"ok\":true}", 11, "application/json");
    /* Bytes past Content-Length are ignored. */
    parse_ok("HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\nhiEXTRA", 0, 201, "hi", 2, "");
    parse_ok("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", 0, 404, "", 0, "");
    /* Repeated identical Content-Length is tolerated (RFC 9112 §6.3). */
    parse_ok("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx", 0, 200, "x", 1,
             "");
    /* Whitespace around values; empty reason phrase; HTTP/1.0. */
    parse_ok("HTTP/1.0 200\r\nContent-Type:   text/plain \t\r\nContent-Length:3\r\n\r\nabc", 0,
             200, "abc", 3, "text/plain");
    /* A body holding NUL bytes keeps its length. */
    struct vg_http_response r;
    char err[256];
    static const char nul_body[] = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\na\0b";
    assert_int_equal(
        vg_http_parse_response(nul_body, sizeof nul_body - 1, 0, &r, err, sizeof err), 0);
    assert_int_equal(r.body_len, 3);
    assert_memory_equal(r.body, "a\0b", 3);
    vg_http_response_free(&r);
}

static void test_parse_chunked(void **state)
{
    (void)state;
    parse_ok("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n"
             "\r\n4\r\n{\"a\"\r\nA\r\n:123456789\r\n1;ext=1\r\n}\r\n0\r\n\r\n",
             0, 200, "{\"a\":123456789}", 15, "application/json");
    /* Trailers are skipped; chunked wins over Content-Length. */
    parse_ok("HTTP/1.1 200 OK\r\nContent-Length: 99\r\nTransfer-Encoding: Chunked\r\n\r\n"
             "3\r\nabc\r\n0\r\nX-Trailer: 1\r\n\r\n",
             0, 200, "abc", 3, "");
    parse_ok("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 0, 200, "", 0, "");
    parse_ok("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n00000002 ;x\r\nhi\r\n0\r\n\r\n",
             0, 200, "hi", 2, "");
}

static void test_parse_no_body_cases(void **state)
{
    (void)state;
    /* HEAD: the Content-Length describes a body that is not sent. */
    parse_ok("HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n", 1, 200, "", 0, "");
    parse_ok("HTTP/1.1 204 No Content\r\n\r\n", 0, 204, "", 0, "");
    parse_ok("HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n", 0, 304, "", 0, "");
    /* Interim 1xx responses are skipped. */
    parse_ok("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n"
             "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
             0, 200, "ok", 2, "");
    /* Close-delimited (clean close assumed by the parser). */
    parse_ok("HTTP/1.0 200 ok\r\nContent-type: text/html\r\n\r\n<html>", 0, 200, "<html>", 6,
             "text/html");
}

static void test_parse_truncated(void **state)
{
    (void)state;
    BAD("", "cut short");
    BAD("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n", "cut short");
    BAD("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nabc", "cut short");
    BAD("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabc", "cut short");
    BAD("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n", "cut short");
    BAD("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n", "cut short");
    BAD("HTTP/1.1 100 Continue\r\n\r\n", "cut short");
}

static void test_parse_malformed(void **state)
{
    (void)state;
    BAD("HTTP/2 200 OK\r\n\r\n", "status line");
    BAD("HTTP/1.1 20 OK\r\n\r\n", "status line");
    BAD("HTTP/1.1 2000 OK\r\n\r\n", "status line");
    BAD("HTTP/1.1 600 Odd\r\n\r\n", "status line");
    BAD("HTTP/1.1 099 Odd\r\n\r\n", "status line");
    BAD("HTTP/1.1 200OK\r\n\r\n", "status line");
    BAD("http/1.1 200 OK\r\n\r\n", "status line");
    BAD("HTTP/1.1 101 Switching Protocols\r\n\r\n", "101");
    BAD("HTTP/1.1 200 OK\r\nNo-Colon\r\n\r\n", "header");
    BAD("HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n", "header");
    BAD("HTTP/1.1 200 OK\r\nContent-Length : 1\r\n\r\nx", "header");
    BAD("HTTP/1.1 200 OK\r\n: empty\r\n\r\n", "header");
    BAD("HTTP/1.1 200 OK\r\nX: a\r\n folded\r\n\r\n", "folding");
    BAD("HTTP/1.1 200 OK\r\nX: a\x01" "b\r\n\r\n", "control");
    BAD("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "Content-Length");
    BAD("HTTP/1.1 200 OK\r\nContent-Length: 1, 1\r\n\r\nx", "Content-Length");
    BAD("HTTP/1.1 200 OK\r\nContent-Length: 0x10\r\n\r\n", "Content-Length");
    BAD("HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n", "Content-Length");
    BAD("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxy", "conflicting");
    BAD("HTTP/1.1 200 OK\r\nContent-Length: 67108865\r\n\r\n", "64 MiB");
    BAD("HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n", "Content-Length");
    BAD("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", "Transfer-Encoding");
    BAD("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
        "Transfer-Encoding");
    BAD("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "chunk size");
    BAD("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\r\n", "chunk size");
    BAD("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n", "chunk size");
    BAD("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3x\r\nabc\r\n0\r\n\r\n",
        "chunk size");
    BAD("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcd\r\n0\r\n\r\n", "CRLF");
    BAD("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFFF\r\n", "64 MiB");
    BAD("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4000001\r\n", "64 MiB");
}

static void test_parse_limits(void **state)
{
    (void)state;
    /* A header section beyond 64 KiB is refused, complete or not. */
    size_t n = 70 * 1024;
    char *big = malloc(n + 64);
    assert_non_null(big);
    size_t off = (size_t)snprintf(big, n, "HTTP/1.1 200 OK\r\nX-Big: ");
    memset(big + off, 'a', n - off);
    parse_bad(big, n, "64 KiB");
    memcpy(big + n, "\r\n\r\n", 4);
    parse_bad(big, n + 4, "64 KiB");

    /* Many small headers count too. */
    off = (size_t)snprintf(big, n, "HTTP/1.1 200 OK\r\n");
    while (off + 8 < n) {
        memcpy(big + off, "A: b\r\n", 6);
        off += 6;
    }
    memcpy(big + off, "\r\n", 2);
    parse_bad(big, off + 2, "64 KiB");

    /* A chunk-size line of unbounded length is refused. */
    off = (size_t)snprintf(big, n, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;");
    memset(big + off, 'e', 5000);
    parse_bad(big, off + 5000, "too long");
    free(big);

    struct vg_http_response r;
    char err[128];
    assert_int_equal(
        vg_http_parse_response("x", VG_HTTP_MAX_RESPONSE + 1, 0, &r, err, sizeof err), -1);
    assert_non_null(strstr(err, "64 MiB"));
    assert_int_equal(vg_http_parse_response(NULL, 0, 0, &r, err, sizeof err), -1);
    vg_http_response_free(&r);
    vg_http_response_free(NULL);
}

static void test_parse_content_type_truncated(void **state)
{
    (void)state;
    char raw[512];
    char ctype[300];
    memset(ctype, 'c', sizeof ctype - 1);
    ctype[sizeof ctype - 1] = '\0';
    snprintf(raw, sizeof raw, "HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: 0\r\n\r\n",
             ctype);
    struct vg_http_response r;
    char err[128];
    assert_int_equal(vg_http_parse_response(raw, strlen(raw), 0, &r, err, sizeof err), 0);
    assert_int_equal(strlen(r.content_type), sizeof r.content_type - 1);
    vg_http_response_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_url_accepted),
        cmocka_unit_test(test_url_refused),
        cmocka_unit_test(test_request_refuses_bad_arguments),
        cmocka_unit_test(test_parse_content_length),
        cmocka_unit_test(test_parse_chunked),
        cmocka_unit_test(test_parse_no_body_cases),
        cmocka_unit_test(test_parse_truncated),
        cmocka_unit_test(test_parse_malformed),
        cmocka_unit_test(test_parse_limits),
        cmocka_unit_test(test_parse_content_type_truncated),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

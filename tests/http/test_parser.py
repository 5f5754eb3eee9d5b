"""The strict request parser, one test per rule of issue 3 ("The HTTP/1.1 engine").

Most tests go through HTTPConnection so that find_head_end, parse_head and the
body readers all see the bytes, exactly as the worker feeds them.
"""

from __future__ import annotations

import pytest

from prefork.http.connection import HTTPConnection
from prefork.http.errors import (
    BadRequest,
    BodyTooLarge,
    ExpectationFailed,
    HeadersTooLarge,
    NotImplementedCoding,
    RequestError,
    URITooLong,
    VersionNotSupported,
)
from prefork.http.parser import (
    MAX_CHUNK_LINE,
    MAX_TRAILER_BYTES,
    MAX_TRAILER_FIELDS,
    ChunkedReader,
    LengthReader,
    Limits,
    RequestHead,
    find_head_end,
    parse_head,
    skip_leading_crlf,
)


def head_of(raw: bytes, limits: Limits | None = None) -> RequestHead:
    """Parse a complete head through the connection and return it."""
    conn = HTTPConnection(limits or Limits())
    conn.receive(raw)
    req = conn.next_request()
    assert req is not None, "request should be complete"
    return req.head


def status_of(raw: bytes, limits: Limits | None = None) -> int | None:
    """The status of the RequestError the connection raises for ``raw``, or None."""
    conn = HTTPConnection(limits or Limits())
    conn.receive(raw)
    try:
        conn.next_request()
    except RequestError as e:
        return e.status
    return None


def get(target: bytes = b"/", headers: bytes = b"Host: a\r\n", version: bytes = b"1.1",
        method: bytes = b"GET") -> bytes:
    return method + b" " + target + b" HTTP/" + version + b"\r\n" + headers + b"\r\n"


# --- errors -----------------------------------------------------------------

@pytest.mark.parametrize("cls, status", [
    (BadRequest, 400), (BodyTooLarge, 413), (URITooLong, 414), (ExpectationFailed, 417),
    (HeadersTooLarge, 431), (NotImplementedCoding, 501), (VersionNotSupported, 505),
])
def test_every_rejection_is_a_typed_error_with_its_status(cls, status):
    err = cls("detail for the log")
    assert isinstance(err, RequestError)
    assert err.status == status
    assert str(err).startswith(f"{status} ")
    assert err.detail == "detail for the log"


# --- request line -----------------------------------------------------------

def test_origin_form_gives_path_and_raw_query():
    head = head_of(get(b"/a/b%20c?x=1&y=%41"))
    assert head.method == "GET"
    assert head.target == "/a/b%20c?x=1&y=%41"
    assert head.path == "/a/b%20c"
    assert head.query == "x=1&y=%41"
    assert head.version == "HTTP/1.1"
    assert head.host == "a"


def test_origin_form_without_query_has_empty_query():
    head = head_of(get(b"/only/path"))
    assert (head.path, head.query) == ("/only/path", "")


def test_method_is_case_sensitive_token_kept_as_sent():
    assert head_of(get(method=b"get")).method == "get"
    assert head_of(get(method=b"M-SEARCH")).method == "M-SEARCH"


@pytest.mark.parametrize("line", [
    b"GE(T / HTTP/1.1", b"GET  / HTTP/1.1", b" GET / HTTP/1.1", b"GET / HTTP/1.1 ",
    b"GET /  HTTP/1.1", b"GET\t/ HTTP/1.1", b"GET / a HTTP/1.1", b"GET /a b HTTP/1.1",
    b"GET", b"GET /", b"/ HTTP/1.1",
])
def test_malformed_request_line_is_400(line):
    assert status_of(line + b"\r\nHost: a\r\n\r\n") == 400


def test_request_without_version_http09_is_400():
    assert status_of(b"GET /\r\n\r\n") == 400


def test_obs_text_in_target_is_accepted_as_latin1():
    head = head_of(get("/caf\u00e9".encode()))
    assert head.path == "/caf\u00e9".encode().decode("latin-1")


def test_absolute_form_authority_overrides_host():
    head = head_of(get(b"http://a.example:8080/p/q?x=1", headers=b"Host: b.example\r\n"))
    assert head.host == "a.example:8080"
    assert head.path == "/p/q"
    assert head.query == "x=1"
    assert head.target == "http://a.example:8080/p/q?x=1"


def test_absolute_form_needs_no_host_header_on_http11():
    head = head_of(get(b"https://a.example/x", headers=b""))
    assert head.host == "a.example"
    assert head.path == "/x"


def test_absolute_form_scheme_is_case_insensitive():
    assert head_of(get(b"HTTP://a.example/x")).host == "a.example"


def test_absolute_form_without_path_means_root():
    head = head_of(get(b"http://a.example"))
    assert (head.path, head.query) == ("/", "")
    head = head_of(get(b"http://a.example?x=1"))
    assert (head.path, head.query) == ("/", "x=1")


@pytest.mark.parametrize("target", [
    b"ftp://a.example/", b"http:/a.example/", b"http//a.example/", b"http://u@a.example/",
    b"http://a b/",
])
def test_malformed_absolute_form_is_400(target):
    assert status_of(get(target)) == 400


def test_absolute_form_with_empty_authority_is_400():
    # RFC 9110 §4.2.1: an "http" URI with an empty host MUST be rejected as invalid.
    assert status_of(get(b"http:///x", headers=b"")) == 400


def test_absolute_form_with_two_host_headers_is_400():
    assert status_of(get(b"http://a.example/", headers=b"Host: a\r\nHost: b\r\n")) == 400


def test_asterisk_form_is_accepted_with_options():
    head = head_of(get(b"*", method=b"OPTIONS"))
    assert head.path == "*"
    assert head.query == ""


@pytest.mark.parametrize("method", [b"GET", b"POST", b"HEAD", b"options"])
def test_asterisk_form_with_other_method_is_400(method):
    assert status_of(get(b"*", method=method)) == 400


def test_connect_with_authority_form_is_501():
    err = pytest.raises(NotImplementedCoding, parse_head,
                        get(b"a.example:443", method=b"CONNECT"), Limits())
    assert err.value.status == 501


def test_connect_with_origin_form_is_refused():
    # "CONNECT -> 501": the method is not supported whatever target it names.
    assert status_of(get(b"/", method=b"CONNECT")) in (400, 501)


def test_authority_form_without_connect_is_400():
    assert status_of(get(b"a.example:80")) == 400


# --- versions ---------------------------------------------------------------

@pytest.mark.parametrize("version, keep", [(b"1.0", False), (b"1.1", True)])
def test_http10_and_http11_are_accepted(version, keep):
    head = head_of(get(version=version))
    assert head.version == "HTTP/" + version.decode()
    assert head.keep_alive is keep


@pytest.mark.parametrize("version", [b"1.2", b"1.9"])
def test_higher_http1_minor_is_served_as_http11(version):
    # RFC 9110 §2.5: answer with the highest 1.x version the server conforms to.
    head = head_of(get(version=version))
    assert head.version == "HTTP/1.1"
    assert head.keep_alive is True


@pytest.mark.parametrize("version", [b"2.0", b"0.9", b"3.0", b"9.9"])
def test_unsupported_version_is_505(version):
    with pytest.raises(VersionNotSupported):
        parse_head(get(version=version), Limits())
    assert status_of(get(version=version)) == 505


@pytest.mark.parametrize("version", [b"1", b"1.1.1", b"x.1", b"1.x", b"11.1", b"1.10", b"",
                                     b"1,1", b"\xb9.1"])
def test_garbage_version_is_400(version):
    assert status_of(get(version=version)) == 400


@pytest.mark.parametrize("line", [b"GET / http/1.1", b"GET / HTTPS/1.1", b"GET / HTTP 1.1",
                                  b"GET / HTTP/1.1/"])
def test_garbage_protocol_name_is_400(line):
    assert status_of(line + b"\r\nHost: a\r\n\r\n") == 400


# --- header fields ----------------------------------------------------------

def test_header_names_and_values_are_kept_as_received():
    head = head_of(get(headers=b"Host: a\r\nX-Foo:   bar  baz \t \r\nx-empty:\r\nX-Tab:\tv\r\n"))
    assert head.headers == [("Host", "a"), ("X-Foo", "bar  baz"), ("x-empty", ""),
                            ("X-Tab", "v")]


def test_obs_text_in_header_value_is_kept_as_latin1():
    head = head_of(get(headers=b"Host: a\r\nX-Name: caf\xc3\xa9\r\n"))
    assert ("X-Name", "caf\xc3\xa9") in head.headers


def test_horizontal_tab_inside_value_is_allowed():
    head = head_of(get(headers=b"Host: a\r\nX: a\tb\r\n"))
    assert ("X", "a\tb") in head.headers


@pytest.mark.parametrize("line", [
    b"Bad(Name): x", b"Bad Name: x", b"B\xe4d: x", b": x", b'Na"me: x', b"Na/me: x",
    b"Na@me: x", b"Na[me]: x", b"Na{me}: x", b"Name=x", b"no colon at all",
])
def test_header_names_must_be_tokens(line):
    assert status_of(get(headers=b"Host: a\r\n" + line + b"\r\n")) == 400


@pytest.mark.parametrize("line", [b"Host : a", b"Host\t: a", b"X-Foo  : a"])
def test_whitespace_before_colon_is_400(line):
    headers = line + b"\r\n" if line.startswith(b"Host") else b"Host: a\r\n" + line + b"\r\n"
    assert status_of(get(headers=headers)) == 400


@pytest.mark.parametrize("headers", [
    b"Host: a\r\nX-Foo: a\r\n b\r\n",
    b"Host: a\r\nX-Foo: a\r\n\tb\r\n",
    b"Host: a\r\n b\r\n",
    b" Host: a\r\n",
])
def test_obs_fold_is_400(headers):
    assert status_of(get(headers=headers)) == 400


_CTLS = [bytes([c]) for c in range(0x20) if c not in (0x09, 0x0A, 0x0D)] + [b"\x7f"]


@pytest.mark.parametrize("ctl", _CTLS, ids=lambda b: f"0x{b[0]:02x}")
def test_control_character_in_header_value_is_400(ctl):
    assert status_of(get(headers=b"Host: a\r\nX: a" + ctl + b"b\r\n")) == 400


@pytest.mark.parametrize("ctl", _CTLS + [b"\t", b" "], ids=lambda b: f"0x{b[0]:02x}")
def test_control_character_in_header_name_is_400(ctl):
    assert status_of(get(headers=b"Host: a\r\nX" + ctl + b"Y: v\r\n")) == 400


@pytest.mark.parametrize("ctl", _CTLS, ids=lambda b: f"0x{b[0]:02x}")
def test_control_character_in_request_line_is_400(ctl):
    assert status_of(get(b"/a" + ctl + b"b")) == 400
    assert status_of(get(method=b"G" + ctl + b"ET")) == 400


def test_nul_anywhere_is_400():
    assert status_of(b"GET /\x00 HTTP/1.1\r\nHost: a\r\n\r\n") == 400
    assert status_of(b"GET / HTTP/1.1\r\nHost: a\x00\r\n\r\n") == 400
    assert status_of(b"GET / HTTP/1.1\r\nHo\x00st: a\r\n\r\n") == 400
    assert status_of(b"GET / HTTP/1.1\r\nHost: a\r\n\x00\r\n\r\n") == 400
    assert status_of(b"\x00GET / HTTP/1.1\r\nHost: a\r\n\r\n") == 400


@pytest.mark.parametrize("raw", [
    b"GET /\r HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET / HTTP/1.1\r\rHost: a\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nX: b\r\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\n\r\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nX\r: b\r\n\r\n",
])
def test_bare_cr_anywhere_in_head_is_400(raw):
    assert status_of(raw) == 400


@pytest.mark.parametrize("raw", [
    b"GET / HTTP/1.1\nHost: a\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nX: b\nY: c\r\n\r\n",
    b"GET / HTTP/1.1\nHost: a\n\n",
    b"GET / HTTP/1.1\r\nHost: a\r\n\n\r\n\r\n",
    b"GET /\n HTTP/1.1\r\nHost: a\r\n\r\n",
])
def test_bare_lf_anywhere_in_head_is_400(raw):
    assert status_of(raw) == 400


def test_bare_lf_in_incomplete_head_raises_before_the_head_ends():
    with pytest.raises(BadRequest):
        find_head_end(b"GET / HTTP/1.1\nHost: a", Limits())
    assert status_of(b"GET / HTTP/1.1\r\nHost: a\nX") == 400


# --- Content-Length ---------------------------------------------------------

def test_content_length_sets_the_body_length():
    head = head_of(get(method=b"POST", headers=b"Host: a\r\nContent-Length:  5 \r\n") + b"hello")
    assert head.content_length == 5
    assert head.has_body and not head.chunked


def test_content_length_zero_means_no_body():
    head = head_of(get(method=b"POST", headers=b"Host: a\r\nContent-Length: 0\r\n"))
    assert head.content_length == 0
    assert not head.has_body


@pytest.mark.parametrize("value", [b"+5", b"-5", b"0x5", b"5.0", b"5 5", b"5,5", b"", b"five",
                                   b"5e1", b"\xb5", b"\xd9\xa5"])
def test_content_length_must_be_digits_only(value):
    headers = b"Host: a\r\nContent-Length: " + value + b"\r\n"
    assert status_of(get(method=b"POST", headers=headers) + b"xxxxxxxxxx") == 400


@pytest.mark.parametrize("headers", [
    b"Content-Length: 5\r\nContent-Length: 5\r\n",
    b"Content-Length: 5\r\nContent-Length: 6\r\n",
    b"Content-Length: 5, 5\r\n",
    b"Content-Length: 5\r\ncontent-length: 5\r\n",
])
def test_content_length_must_be_a_single_value(headers):
    assert status_of(get(method=b"POST", headers=b"Host: a\r\n" + headers) + b"hello") == 400


def test_content_length_over_the_body_limit_is_413():
    limits = Limits(body=10)
    ok = get(method=b"POST", headers=b"Host: a\r\nContent-Length: 10\r\n") + b"x" * 10
    assert head_of(ok, limits).content_length == 10
    over = get(method=b"POST", headers=b"Host: a\r\nContent-Length: 11\r\n")
    assert status_of(over, limits) == 413


def test_content_length_larger_than_any_integer_is_413():
    # Twenty digits are still digits only: the number is simply over the limit.
    headers = b"Host: a\r\nContent-Length: 99999999999999999999\r\n"
    assert status_of(get(method=b"POST", headers=headers)) == 413


def test_body_limit_zero_means_no_limit():
    headers = b"Host: a\r\nContent-Length: 999999999999999\r\n"
    conn = HTTPConnection(Limits(body=0))
    conn.receive(get(method=b"POST", headers=headers))
    assert conn.next_request() is None
    assert conn.waiting_for_body


# --- Transfer-Encoding ------------------------------------------------------

@pytest.mark.parametrize("headers", [
    b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
    b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
    b"Transfer-Encoding: chunked\r\nContent-Length: 0\r\n",
])
def test_content_length_with_transfer_encoding_is_400(headers):
    raw = get(method=b"POST", headers=b"Host: a\r\n" + headers) + b"5\r\nhello\r\n0\r\n\r\n"
    with pytest.raises(BadRequest):
        parse_head(get(method=b"POST", headers=b"Host: a\r\n" + headers), Limits())
    assert status_of(raw) == 400


@pytest.mark.parametrize("value", [b"chunked, gzip", b"gzip", b"identity", b"chunked;q=1",
                                   b"", b"chunkedx", b"chunked, identity"])
def test_transfer_encoding_not_ending_in_chunked_is_400(value):
    headers = b"Host: a\r\nTransfer-Encoding: " + value + b"\r\n"
    assert status_of(get(method=b"POST", headers=headers)) == 400


def test_transfer_encoding_on_http10_is_400():
    headers = b"Transfer-Encoding: chunked\r\n"
    assert status_of(get(method=b"POST", headers=headers, version=b"1.0")) == 400


@pytest.mark.parametrize("value", [b"gzip, chunked", b"deflate, chunked", b"x-custom,chunked",
                                   b"compress ,  chunked"])
def test_unknown_transfer_coding_is_501(value):
    headers = b"Host: a\r\nTransfer-Encoding: " + value + b"\r\n"
    assert status_of(get(method=b"POST", headers=headers)) == 501


def test_unknown_coding_on_its_own_header_line_is_501():
    headers = b"Host: a\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n"
    assert status_of(get(method=b"POST", headers=headers)) == 501


@pytest.mark.parametrize("headers", [
    b"Transfer-Encoding: chunked, chunked\r\n",
    b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
    b"Transfer-Encoding: Chunked,chunked\r\n",
])
def test_chunked_twice_is_400(headers):
    assert status_of(get(method=b"POST", headers=b"Host: a\r\n" + headers)) == 400


@pytest.mark.parametrize("value", [b", chunked", b"g(zip), chunked", b"gzip;q=1, chunked"])
def test_malformed_transfer_coding_list_is_400(value):
    headers = b"Host: a\r\nTransfer-Encoding: " + value + b"\r\n"
    assert status_of(get(method=b"POST", headers=headers)) == 400


def test_transfer_encoding_chunked_is_case_insensitive():
    head = head_of(get(method=b"POST", headers=b"Host: a\r\nTransfer-Encoding:  ChUnKeD \r\n")
                   + b"0\r\n\r\n")
    assert head.chunked and head.has_body
    assert head.content_length is None


# --- Host -------------------------------------------------------------------

def test_http11_without_host_is_400():
    assert status_of(get(headers=b"")) == 400
    assert status_of(get(headers=b"X-Host: a\r\n")) == 400


@pytest.mark.parametrize("headers", [b"Host: a\r\nHost: a\r\n", b"Host: a\r\nhost: b\r\n"])
def test_http11_with_two_hosts_is_400(headers):
    assert status_of(get(headers=headers)) == 400


def test_http10_needs_no_host_but_refuses_two():
    assert head_of(get(headers=b"", version=b"1.0")).host is None
    assert status_of(get(headers=b"Host: a\r\nHost: b\r\n", version=b"1.0")) == 400


@pytest.mark.parametrize("host", [b"a b", b"a/b", b"a@b", b"a:b", b"a:80:80", b"[::1",
                                  b"::1", b"a?b", b"a#b", b"a\\b", b"caf\xc3\xa9", b'"a"'])
def test_bad_host_is_400(host):
    assert status_of(get(headers=b"Host: " + host + b"\r\n")) == 400


@pytest.mark.parametrize("host", [b"example.com", b"example.com:8080", b"[::1]", b"[::1]:80",
                                  b"127.0.0.1:1", b"xn--caf-dma.example", b""])
def test_valid_host_is_accepted(host):
    assert head_of(get(headers=b"Host: " + host + b"\r\n")).host == host.decode()


# --- limits -----------------------------------------------------------------

def test_request_line_over_limit_is_414():
    limits = Limits(request_line=64)
    line_at_limit = b"GET /" + b"a" * (64 - len(b"GET / HTTP/1.1")) + b" HTTP/1.1"
    assert len(line_at_limit) == 64
    assert head_of(line_at_limit + b"\r\nHost: a\r\n\r\n", limits).method == "GET"
    over = b"GET /" + b"a" * (65 - len(b"GET / HTTP/1.1")) + b" HTTP/1.1"
    assert status_of(over + b"\r\nHost: a\r\n\r\n", limits) == 414
    with pytest.raises(URITooLong):
        parse_head(over + b"\r\nHost: a\r\n\r\n", limits)


def test_incomplete_request_line_over_limit_is_414_before_its_crlf():
    limits = Limits(request_line=64)
    conn = HTTPConnection(limits)
    conn.receive(b"GET /" + b"a" * 59)        # 64 bytes, still could be valid
    assert conn.next_request() is None
    conn.receive(b"a")                        # 65 bytes and no CRLF
    conn.receive(b"a")
    with pytest.raises(URITooLong):
        conn.next_request()


def test_field_count_over_limit_is_431():
    limits = Limits(fields=3)
    ok = get(headers=b"Host: a\r\nA: 1\r\nB: 2\r\n")
    assert len(head_of(ok, limits).headers) == 3
    assert status_of(get(headers=b"Host: a\r\nA: 1\r\nB: 2\r\nC: 3\r\n"), limits) == 431


def test_field_size_over_limit_is_431():
    limits = Limits(field_size=20)
    line = b"X-Long: " + b"v" * 12
    assert len(line) == 20
    assert ("X-Long", "v" * 12) in head_of(get(headers=b"Host: a\r\n" + line + b"\r\n"),
                                          limits).headers
    assert status_of(get(headers=b"Host: a\r\n" + line + b"v\r\n"), limits) == 431


def test_incomplete_head_over_the_head_limit_raises_early():
    limits = Limits(request_line=64, fields=2, field_size=32)
    conn = HTTPConnection(limits)
    conn.receive(b"GET / HTTP/1.1\r\n")
    assert conn.next_request() is None
    with pytest.raises(HeadersTooLarge):
        for _ in range(limits.head):
            conn.receive(b"X")                 # one endless header line, never a CRLF
            conn.next_request()


def test_incomplete_head_under_the_limits_waits():
    limits = Limits(request_line=64, fields=2, field_size=32)
    assert find_head_end(b"GET / HTTP/1.1\r\nHost: a\r\n", limits) == -1
    assert find_head_end(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nrest", limits) == 27


# --- chunked bodies ---------------------------------------------------------

def chunked_post(body: bytes, headers: bytes = b"") -> bytes:
    return get(method=b"POST", headers=b"Host: a\r\nTransfer-Encoding: chunked\r\n" + headers) + body


def body_of(raw: bytes, limits: Limits | None = None) -> bytes:
    conn = HTTPConnection(limits or Limits())
    conn.receive(raw)
    req = conn.next_request()
    assert req is not None
    return req.body.read()


def test_chunked_body_is_decoded_and_what_follows_is_returned():
    reader = ChunkedReader()
    pieces, rest = reader.feed(b"5\r\nhello\r\nA\r\n0123456789\r\n0\r\n\r\nGET / ...")
    assert b"".join(pieces) == b"hello0123456789"
    assert rest == b"GET / ..."
    assert reader.total == 15


def test_chunk_size_is_hex_in_either_case():
    assert body_of(chunked_post(b"a\r\n0123456789\r\nA\r\n0123456789\r\n0\r\n\r\n")) \
        == b"0123456789" * 2


@pytest.mark.parametrize("ext", [b";name", b";name=value", b' ; n = "quoted \\" str"', b";a;b=c",
                                 b";a=\"\"", b"\t;\tx=y\t"])
def test_valid_chunk_extensions_are_accepted_and_ignored(ext):
    assert body_of(chunked_post(b"5" + ext + b"\r\nhello\r\n0" + ext + b"\r\n\r\n")) == b"hello"


@pytest.mark.parametrize("line", [
    b"", b"-5", b"+5", b"0x5", b" 5", b"g", b"5x", b"5;", b"5;=x", b"5;a=", b'5;a="open',
    b'5;a="x\x00"', b"5;a b", b"5;a=b c", b"5\x00", b"5\r", b"\xb5", b"00000000000000005",
])
def test_malformed_chunk_size_line_is_400(line):
    assert status_of(chunked_post(line + b"\r\nhello\r\n0\r\n\r\n")) == 400


def test_chunk_size_line_ended_by_bare_lf_is_400():
    assert status_of(chunked_post(b"5\nhello\r\n0\r\n\r\n")) == 400


def test_chunk_size_line_over_its_bound_is_400_even_unfinished():
    with pytest.raises(BadRequest):
        ChunkedReader().feed(b"5;" + b"a" * MAX_CHUNK_LINE + b"\r\n")
    reader = ChunkedReader()
    with pytest.raises(BadRequest):
        for _ in range(MAX_CHUNK_LINE + 2):
            reader.feed(b"0")                 # never ends: must not buffer forever


def test_chunk_data_longer_than_its_size_is_400():
    assert status_of(chunked_post(b"3\r\nhello\r\n0\r\n\r\n")) == 400


def test_chunk_data_not_followed_by_crlf_is_400():
    assert status_of(chunked_post(b"5\r\nhello\n0\r\n\r\n")) == 400
    assert status_of(chunked_post(b"5\r\nhello\r0\r\n\r\n")) == 400
    reader = ChunkedReader()
    reader.feed(b"5\r\nhello")
    with pytest.raises(BadRequest):
        reader.feed(b"X")                      # refused at the first wrong byte


def test_chunked_body_over_the_body_limit_is_413():
    limits = Limits(body=10)
    assert body_of(chunked_post(b"5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n"), limits) == b"helloworld"
    assert status_of(chunked_post(b"B\r\nhello world\r\n0\r\n\r\n"), limits) == 413
    assert status_of(chunked_post(b"6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n"), limits) == 413


def test_huge_chunk_size_is_413_before_any_data():
    with pytest.raises(BodyTooLarge):
        ChunkedReader(limit=1 << 30).feed(b"ffffffffffffffff\r\n")


def test_trailer_fields_are_validated_and_dropped():
    body = b"5\r\nhello\r\n0\r\nX-Checksum: abc\r\nX-Other:\tv w \r\n\r\n"
    assert body_of(chunked_post(body)) == b"hello"


@pytest.mark.parametrize("trailer", [
    b"X y: z", b"X : z", b" folded", b"X: a\x00b", b"X: a\rb", b"no-colon", b": v",
])
def test_malformed_trailer_field_is_400(trailer):
    assert status_of(chunked_post(b"5\r\nhello\r\n0\r\n" + trailer + b"\r\n\r\n")) == 400


def test_trailer_line_ended_by_bare_lf_is_400():
    assert status_of(chunked_post(b"0\r\nX: y\n\r\n")) == 400
    assert status_of(chunked_post(b"0\r\n\n")) == 400


def test_too_many_trailer_fields_is_431():
    ok = b"".join(b"X-%d: v\r\n" % i for i in range(MAX_TRAILER_FIELDS))
    assert body_of(chunked_post(b"0\r\n" + ok + b"\r\n")) == b""
    over = ok + b"X-last: v\r\n"
    assert status_of(chunked_post(b"0\r\n" + over + b"\r\n")) == 431


def test_trailer_bytes_over_the_bound_are_refused():
    line = b"X: " + b"v" * 1000 + b"\r\n"
    over = line * (MAX_TRAILER_BYTES // 1000 + 1)
    assert status_of(chunked_post(b"0\r\n" + over + b"\r\n")) == 431
    one_long = b"X: " + b"v" * MAX_TRAILER_BYTES + b"\r\n"
    assert status_of(chunked_post(b"0\r\n" + one_long + b"\r\n")) in (400, 431)


def test_length_reader_takes_exactly_its_length():
    reader = LengthReader(5)
    assert reader.feed(b"hel") == (b"hel", None)
    assert reader.feed(b"loGET") == (b"lo", b"GET")
    assert reader.remaining == 0


# --- Expect -----------------------------------------------------------------

@pytest.mark.parametrize("value", [b"100-continue", b"100-Continue", b"100-CONTINUE "])
def test_expect_100_continue_is_noted_on_http11(value):
    raw = get(method=b"POST", headers=b"Host: a\r\nContent-Length: 2\r\nExpect: " + value + b"\r\n")
    assert head_of(raw + b"hi").expect_continue is True


def test_expect_100_continue_is_ignored_on_http10():
    raw = get(method=b"POST", headers=b"Content-Length: 2\r\nExpect: 100-continue\r\n",
              version=b"1.0")
    assert head_of(raw + b"hi").expect_continue is False


@pytest.mark.parametrize("value", [b"foo", b"200-ok", b"100-continue, foo", b"", b"100-continued"])
def test_expect_other_than_100_continue_is_417(value):
    assert status_of(get(headers=b"Host: a\r\nExpect: " + value + b"\r\n")) == 417


def test_expect_other_than_100_continue_on_a_second_line_is_417():
    # Two field lines mean the same as one comma-joined line (RFC 9110 §5.3),
    # and "100-continue, foo" is refused.
    headers = b"Host: a\r\nExpect: foo\r\nExpect: 100-continue\r\n"
    assert status_of(get(headers=headers)) == 417


# --- keep-alive -------------------------------------------------------------

@pytest.mark.parametrize("version, connection, keep", [
    (b"1.1", None, True),
    (b"1.1", b"close", False),
    (b"1.1", b"Close", False),
    (b"1.1", b"keep-alive", True),
    (b"1.1", b"Upgrade, close", False),
    (b"1.1", b"keep-alive, close", False),
    (b"1.0", None, False),
    (b"1.0", b"keep-alive", True),
    (b"1.0", b"Keep-Alive", True),
    (b"1.0", b"close", False),
    (b"1.0", b"te , keep-alive", True),
])
def test_keep_alive_follows_version_and_connection_header(version, connection, keep):
    headers = b"Host: a\r\n" + (b"Connection: " + connection + b"\r\n" if connection else b"")
    assert head_of(get(headers=headers, version=version)).keep_alive is keep


def test_close_on_a_second_connection_line_wins():
    headers = b"Host: a\r\nConnection: keep-alive\r\nConnection: close\r\n"
    assert head_of(get(headers=headers, version=b"1.0")).keep_alive is False


# --- leading empty lines ----------------------------------------------------

def test_skip_leading_crlf_drops_only_whole_crlfs():
    assert skip_leading_crlf(b"\r\n\r\n\r\nGET") == (b"GET", 3)
    assert skip_leading_crlf(b"GET\r\n") == (b"GET\r\n", 0)
    assert skip_leading_crlf(b"\r\n\r") == (b"\r", 1)


def test_leading_crlfs_before_a_request_are_ignored():
    head = head_of(b"\r\n\r\n\r\n" + get(b"/x"))
    assert head.path == "/x"


def test_leading_crlf_split_across_reads_is_ignored():
    conn = HTTPConnection(Limits())
    for piece in (b"\r", b"\n", b"\r", b"\n\r\nGET /y HTTP/1.1\r\nHost: a\r\n\r\n"):
        conn.receive(piece)
        req = conn.next_request()
    assert req is not None and req.head.path == "/y"


def test_leading_bare_lf_is_400():
    assert status_of(b"\n" + get()) == 400

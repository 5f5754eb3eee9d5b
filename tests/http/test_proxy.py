"""prefork.http.proxy without sockets: trust, forwarded headers, PROXY headers."""

from __future__ import annotations

import ipaddress
import random
import struct
import time

import pytest

from prefork.http.errors import BadRequest
from prefork.http.proxy import (
    V1_MAX,
    V2_MAX_LENGTH,
    V2_SIGNATURE,
    Forwarding,
    Networks,
    ProxyError,
    parse_forwarded,
    parse_node,
    parse_proxy_header,
)

# -- Networks ------------------------------------------------------------------


def test_networks_cidrs_star_and_unix():
    nets = Networks(["10.0.0.0/8", "192.168.1.7", "::1"])
    assert nets.trusts("10.1.2.3") and nets.trusts("192.168.1.7") and nets.trusts("::1")
    assert not nets.trusts("192.168.1.8")
    assert not nets.trusts("")              # a unix peer only with "unix"
    assert not nets.trusts("not an address")
    assert nets.trusts("::ffff:10.0.0.1")   # v4-mapped on a dual-stack socket
    assert Networks(["unix"]).trusts("") and not Networks(["unix"]).trusts("127.0.0.1")
    assert Networks(["*"]).trusts("203.0.113.9")


def test_networks_refuse_a_bad_item_by_name():
    with pytest.raises(ValueError, match="'10.0.0.0/33'"):
        Networks(["10.0.0.0/33"])


def test_networks_cache_is_bounded():
    nets = Networks(["10.0.0.0/8"])
    for i in range(Networks.CACHE_SIZE + 10):
        nets.trusts(str(ipaddress.IPv4Address(i)))
    assert len(nets._cache) <= Networks.CACHE_SIZE


# -- nodes and the Forwarded grammar ---------------------------------------------


@pytest.mark.parametrize("text, node", [
    ("1.2.3.4", ("1.2.3.4", "")),
    (" 1.2.3.4:8080 ", ("1.2.3.4", "8080")),
    ("2001:db8::1", ("2001:db8::1", "")),
    ("[2001:db8::1]:443", ("2001:db8::1", "443")),
    ("[2001:db8::1]", ("2001:db8::1", "")),
    ("1.2.3.4:_obf", ("1.2.3.4", "")),
    ("unknown", None), ("_hidden", None), ("", None), ("[::1", None), ("[::1]x", None),
    ("1.2.3.4:99999", ("1.2.3.4", "")),
])
def test_parse_node(text, node):
    assert parse_node(text) == node


def test_parse_forwarded():
    assert parse_forwarded('for=192.0.2.60;proto=http;by=203.0.113.43') == [
        {"for": "192.0.2.60", "proto": "http", "by": "203.0.113.43"}]
    assert parse_forwarded('For="[2001:db8:cafe::17]:4711", for=198.51.100.17') == [
        {"for": "[2001:db8:cafe::17]:4711"}, {"for": "198.51.100.17"}]
    assert parse_forwarded('for="a\\"b" ; host=x') == [{"for": 'a"b', "host": "x"}]
    assert parse_forwarded(",, for=1.2.3.4 ,") == [{"for": "1.2.3.4"}]
    for bad in ('for="unterminated', "for", "for=", "=x", "for=1;for=2", "for=a b",
                'for="x\\'):
        assert parse_forwarded(bad) is None, bad


def test_parse_forwarded_is_linear():
    # 200 KB of hostile shapes parse (or fail) in well under a second each.
    for value in ('for="' + "\\a" * 100_000, "for=1;" * 40_000, ",;" * 100_000):
        t = time.perf_counter()
        parse_forwarded(value)
        assert time.perf_counter() - t < 1.0


# -- Forwarding.apply ------------------------------------------------------------


def env(**headers):
    e = {"REMOTE_ADDR": "127.0.0.1", "REMOTE_PORT": "50000", "SERVER_NAME": "127.0.0.1",
         "SERVER_PORT": "8000", "SCRIPT_NAME": "", "PATH_INFO": "/x", "HTTP_HOST": "backend",
         "wsgi.url_scheme": "http"}
    e.update({"HTTP_" + k.upper(): v for k, v in headers.items()})
    return e


ALL = ["Forwarded", "X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host",
       "X-Forwarded-Port", "X-Forwarded-Prefix"]


def fwd(trusted=("127.0.0.1", "10.0.0.0/8"), headers=ALL, secure=None):
    return Forwarding(Networks(trusted), headers, secure or {})


def test_nothing_forwarded_changes_nothing():
    e = env()
    before = dict(e)
    fwd().apply(e)
    assert e == before


def test_rightmost_untrusted_hop_is_the_client():
    e = env(x_forwarded_for="6.6.6.6, 203.0.113.5, 10.0.0.2")
    fwd().apply(e)
    # 10.0.0.2 is a trusted proxy; 203.0.113.5 is who connected to it; 6.6.6.6
    # is what that client claimed.
    assert (e["REMOTE_ADDR"], e["REMOTE_PORT"]) == ("203.0.113.5", "0")


def test_every_hop_trusted_gives_the_leftmost():
    e = env(x_forwarded_for="10.0.0.9, 10.0.0.2")
    fwd().apply(e)
    assert e["REMOTE_ADDR"] == "10.0.0.9"


def test_a_hop_that_is_no_address_keeps_the_socket_peer():
    e = env(x_forwarded_for="203.0.113.5, garbage")
    fwd().apply(e)
    assert e["REMOTE_ADDR"] == "127.0.0.1"


def test_proto_host_port_prefix():
    e = env(x_forwarded_proto="https", x_forwarded_host="example.com",
            x_forwarded_prefix="/shop/", x_forwarded_for="203.0.113.5")
    fwd().apply(e)
    assert e["wsgi.url_scheme"] == "https"
    assert (e["HTTP_HOST"], e["SERVER_NAME"], e["SERVER_PORT"]) == ("example.com", "example.com", "443")
    assert (e["SCRIPT_NAME"], e["PATH_INFO"]) == ("/shop", "/x")
    e = env(x_forwarded_host="example.com:8443", x_forwarded_port="9443")
    fwd().apply(e)
    assert e["SERVER_PORT"] == "9443"      # X-Forwarded-Port wins over the host's port
    e = env(x_forwarded_prefix="/shop")
    e["PATH_INFO"] = "/shop/cart"          # a proxy that did not strip the prefix
    fwd().apply(e)
    assert (e["SCRIPT_NAME"], e["PATH_INFO"]) == ("/shop", "/cart")


def test_invalid_values_are_ignored():
    e = env(x_forwarded_proto="gopher", x_forwarded_host="bad host/evil",
            x_forwarded_port="70000", x_forwarded_prefix="no-slash")
    before = dict(e)
    fwd().apply(e)
    assert e == before


def test_only_the_listed_headers_count():
    e = env(x_forwarded_for="203.0.113.5", x_forwarded_host="evil.example")
    fwd(headers=["X-Forwarded-For"]).apply(e)
    assert e["REMOTE_ADDR"] == "203.0.113.5" and e["HTTP_HOST"] == "backend"


def test_rightmost_value_of_single_valued_headers():
    e = env(x_forwarded_proto="http, https")
    fwd().apply(e)
    assert e["wsgi.url_scheme"] == "https"


def test_forwarded_wins_and_picks_the_client_element():
    e = env(forwarded='for=6.6.6.6;proto=http;host=evil, for=203.0.113.5;proto=https;'
                      'host=shop.example, for=10.0.0.2;proto=http;host=lb',
            x_forwarded_for="1.1.1.1", x_forwarded_proto="http")
    fwd().apply(e)
    assert e["REMOTE_ADDR"] == "203.0.113.5"
    assert e["wsgi.url_scheme"] == "https" and e["HTTP_HOST"] == "shop.example"


def test_malformed_forwarded_falls_back_to_nothing_from_it():
    e = env(forwarded='for="broken', x_forwarded_for="203.0.113.5")
    fwd().apply(e)
    assert e["REMOTE_ADDR"] == "203.0.113.5"     # X-Forwarded-For, as if Forwarded were absent


def test_secure_scheme_headers_and_conflicts():
    f = fwd(headers=["X-Forwarded-Proto"], secure={"X-Forwarded-Ssl": "on"})
    e = env(x_forwarded_ssl="on")
    f.apply(e)
    assert e["wsgi.url_scheme"] == "https"
    e = env(x_forwarded_ssl="on", x_forwarded_proto="https")
    f.apply(e)
    assert e["wsgi.url_scheme"] == "https"
    with pytest.raises(BadRequest, match="disagree"):
        f.apply(env(x_forwarded_ssl="on", x_forwarded_proto="http"))


def test_unknown_header_name_refused():
    with pytest.raises(ValueError, match="X-Real-IP"):
        Forwarding(Networks([]), ["X-Real-IP"])


# -- PROXY v1 --------------------------------------------------------------------


def test_v1_tcp4_and_tcp6_and_unknown():
    h, used = parse_proxy_header(b"PROXY TCP4 203.0.113.5 10.0.0.1 56324 443\r\nGET /")
    assert (h.version, h.source, h.dest, used) == (1, ("203.0.113.5", "56324"), ("10.0.0.1", "443"), 43)
    h, _ = parse_proxy_header(b"PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n")
    assert h.source == ("2001:db8::1", "1")
    h, used = parse_proxy_header(b"PROXY UNKNOWN whatever\r\n")
    assert h.source is None and used == 24


def test_v1_incomplete_needs_more():
    line = b"PROXY TCP4 203.0.113.5 10.0.0.1 56324 443\r\n"
    for i in range(1, len(line)):
        assert parse_proxy_header(line[:i]) is None, i


@pytest.mark.parametrize("raw", [
    b"GET / HTTP/1.1\r\n",
    b"PROXY TCP4 203.0.113.5 10.0.0.1 56324\r\n",
    b"PROXY TCP4 2001:db8::1 10.0.0.1 1 2\r\n",
    b"PROXY TCP4 1.2.3.4 10.0.0.1 01 2\r\n",
    b"PROXY TCP4 1.2.3.4 10.0.0.1 1 65536\r\n",
    b"PROXY TCP4 1.2.3.4  10.0.0.1 1 2\r\n",
    b"PROXY UDP4 1.2.3.4 10.0.0.1 1 2\r\n",
    b"PROXY TCP4 1.2.3.4 10.0.0.1 1 2\n",
    b"PROXY TCP4 1.2.3.\xff 10.0.0.1 1 2\r\n",
    b"PROXY " + b"9" * V1_MAX,
])
def test_v1_malformed(raw):
    with pytest.raises(ProxyError):
        parse_proxy_header(raw)


def test_v1_only_refuses_v2_and_back():
    with pytest.raises(ProxyError):
        parse_proxy_header(V2_SIGNATURE, "v1")
    with pytest.raises(ProxyError):
        parse_proxy_header(b"PROXY UNKNOWN\r\n", "v2")


# -- PROXY v2 --------------------------------------------------------------------


def v2(command=1, family=0x11, addresses=b"", tlvs=b"", length=None):
    body = addresses + tlvs
    size = len(body) if length is None else length
    return V2_SIGNATURE + bytes([0x20 | command, family]) + struct.pack("!H", size) + body


def ipv4(src="203.0.113.5", dst="10.0.0.1", sport=56324, dport=443):
    return (ipaddress.IPv4Address(src).packed + ipaddress.IPv4Address(dst).packed
            + struct.pack("!HH", sport, dport))


def tlv(kind, value):
    return bytes([kind]) + struct.pack("!H", len(value)) + value


def test_v2_ipv4_with_tlvs():
    ssl = tlv(0x20, bytes([0x01]) + b"\0\0\0\0" + tlv(0x21, b"TLSv1.3"))
    raw = v2(addresses=ipv4(), tlvs=tlv(0x02, b"shop.example") + tlv(0x05, b"req-1") + ssl)
    h, used = parse_proxy_header(raw + b"GET /")
    assert used == len(raw)
    assert (h.version, h.source, h.dest) == (2, ("203.0.113.5", "56324"), ("10.0.0.1", "443"))
    assert h.ssl and h.ssl_version == "TLSv1.3"
    e = h.environ({"wsgi.url_scheme": "http", "SERVER_PORT": "8000"}, ("127.0.0.1", "40000"))
    assert e["wsgi.url_scheme"] == "https" and e["SERVER_PORT"] == "443"
    assert (e["PROXY_ADDR"], e["PROXY_PORT"], e["PROXY_AUTHORITY"], e["PROXY_UNIQUE_ID"]) == (
        "127.0.0.1", "40000", "shop.example", "req-1")


def test_v2_ipv6_local_unspec_unix():
    addrs = (ipaddress.IPv6Address("2001:db8::1").packed + ipaddress.IPv6Address("::1").packed
             + struct.pack("!HH", 1, 2))
    h, _ = parse_proxy_header(v2(family=0x21, addresses=addrs))
    assert h.source == ("2001:db8::1", "1")
    h, _ = parse_proxy_header(v2(command=0, family=0x11, addresses=ipv4()))
    assert h.source is None          # LOCAL: the proxy's own connection
    h, _ = parse_proxy_header(v2(family=0x00))
    assert h.source is None
    h, _ = parse_proxy_header(v2(family=0x31, addresses=b"\0" * 216))
    assert h.source == ("", "")


def test_v2_incomplete_needs_more():
    raw = v2(addresses=ipv4(), tlvs=tlv(0x05, b"x" * 40))
    for i in range(1, len(raw)):
        assert parse_proxy_header(raw[:i]) is None, i


@pytest.mark.parametrize("raw", [
    V2_SIGNATURE[:-1] + b"X" + b"\x21\x11\x00\x0c" + ipv4(),
    V2_SIGNATURE + b"\x11\x11\x00\x0c" + ipv4(),                  # version 1 in a v2 header
    V2_SIGNATURE + b"\x22\x11\x00\x0c" + ipv4(),                  # command 2
    v2(family=0x12, addresses=ipv4()),                            # UDP
    v2(family=0x41, addresses=ipv4()),                            # family 4
    v2(addresses=ipv4()[:8]),                                     # too short for IPv4
    v2(family=0x21, addresses=ipv4()),                            # too short for IPv6
    v2(addresses=ipv4(), tlvs=b"\x05\x00"),                       # truncated TLV
    v2(addresses=ipv4(), tlvs=b"\x05\x00\x09abc"),                # TLV past the end
    v2(addresses=ipv4(), tlvs=tlv(0x20, b"\x01")),                # SSL TLV too short
    v2(length=V2_MAX_LENGTH + 1),                                 # over our bound
])
def test_v2_malformed(raw):
    with pytest.raises(ProxyError):
        parse_proxy_header(raw + b"\0" * 64)


def test_v2_fuzz_never_raises_anything_else():
    rng = random.Random(7)
    good = v2(addresses=ipv4(), tlvs=tlv(0x20, b"\x01\0\0\0\0" + tlv(0x21, b"TLSv1.2")))
    for _ in range(20_000):
        raw = bytearray(good)
        for _ in range(rng.randint(1, 4)):
            raw[rng.randrange(12, len(raw))] = rng.randrange(256)
        raw = bytes(raw[:rng.randint(1, len(raw))])
        try:
            got = parse_proxy_header(raw)
        except ProxyError:
            continue
        if got is not None:
            assert got[1] <= len(raw)


# -- request ids -----------------------------------------------------------------


def test_request_ids_kept_from_trusted_made_otherwise():
    from prefork.http.proxy import RequestIds
    ids = RequestIds("X-Request-ID")
    e = {"HTTP_X_REQUEST_ID": "abc-123"}
    assert ids.assign(e, trusted=True) == "abc-123" == e["prefork.request_id"]
    e = {"HTTP_X_REQUEST_ID": "abc-123"}
    made = ids.assign(e, trusted=False)
    assert made != "abc-123" and e["HTTP_X_REQUEST_ID"] == made == e["prefork.request_id"]
    for bad in ("x" * 201, "has space", "", "caf\u00e9"):
        assert ids.assign({"HTTP_X_REQUEST_ID": bad}, trusted=True) != bad
    seen = {ids.assign({}, trusted=True) for _ in range(1000)}
    assert len(seen) == 1000
    other = RequestIds("X-Request-ID")
    assert other.assign({}, True).split("-")[0] != made.split("-")[0]   # its own prefix


def test_request_ids_unique_across_threads():
    import threading

    from prefork.http.proxy import RequestIds
    ids = RequestIds("X-Request-ID")
    out: list[str] = []

    def run():
        got = [ids.assign({}, False) for _ in range(5000)]
        out.extend(got)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(out)) == 20000

"""Forwarded headers and the PROXY protocol, against a real server over raw sockets.

The real nginx and HAProxy in front are in test_behind_proxies.py; here the
test itself plays the proxy (or the attacker), byte by byte.
"""

from __future__ import annotations

import ipaddress
import json
import random
import struct
import time

import pytest

from tests.server import HTTPReader, get, running, workers_of

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def environ_of(resp):
    assert resp.status == 200, resp
    return json.loads(resp.body)


def send(srv, raw: bytes, timeout: float = 5.0):
    """``raw`` on a new connection: the response, or None when the server
    closed it without one."""
    with srv.connect(timeout) as s:
        s.sendall(raw)
        try:
            return HTTPReader(s).read_response()
        except (ConnectionError, AssertionError, EOFError, ValueError):
            return None


def closed_without_answer(srv, raw: bytes, timeout: float = 5.0) -> bool:
    with srv.connect(timeout) as s:
        try:
            s.sendall(raw)
            return s.recv(65536) == b""
        except ConnectionResetError:
            return True


REQ = b"GET /environ HTTP/1.1\r\nHost: backend\r\nConnection: close\r\n\r\n"


def test_trusted_peer_forwarded_headers_reach_the_environ():
    # 127.0.0.1 is trusted by default, as gunicorn does.
    with running("testapp:app", "--forwarded-headers", "X-Forwarded-For",
                 "--forwarded-headers", "X-Forwarded-Proto", "--forwarded-headers",
                 "X-Forwarded-Host", "--forwarded-headers", "X-Forwarded-Prefix") as srv:
        e = environ_of(get(srv, "/shop/environ", "X-Forwarded-For: 6.6.6.6, 203.0.113.5\r\n"
                                                 "X-Forwarded-Proto: https\r\n"
                                                 "X-Forwarded-Host: shop.example\r\n"
                                                 "X-Forwarded-Prefix: /shop\r\n"))
        assert e["REMOTE_ADDR"] == "203.0.113.5"
        assert e["wsgi.url_scheme"] == "https"
        assert (e["HTTP_HOST"], e["SERVER_NAME"], e["SERVER_PORT"]) == ("shop.example", "shop.example", "443")
        assert (e["SCRIPT_NAME"], e["PATH_INFO"]) == ("/shop", "/environ")


def test_untrusted_peer_headers_are_left_as_sent():
    with running("testapp:app", "--forwarded-allow-ips", "10.0.0.0/8",
                 "--forwarded-headers", "X-Forwarded-For",
                 "--forwarded-headers", "X-Forwarded-Host",
                 "--secure-scheme-headers", "X-Forwarded-Proto=https") as srv:
        e = environ_of(get(srv, "/environ", "X-Forwarded-For: 203.0.113.5\r\n"
                                            "X-Forwarded-Proto: https\r\nX-Forwarded-Host: evil\r\n"))
        assert e["REMOTE_ADDR"] == "127.0.0.1"
        assert e["wsgi.url_scheme"] == "http" and e["HTTP_HOST"] == "test"
        assert e["HTTP_X_FORWARDED_FOR"] == "203.0.113.5"     # as sent, for the app to judge


def test_conflicting_scheme_headers_get_400_and_the_server_goes_on():
    with running("testapp:app", "--secure-scheme-headers", "X-Forwarded-Ssl=on") as srv:
        resp = get(srv, "/environ", "X-Forwarded-Proto: http\r\nX-Forwarded-Ssl: on\r\n")
        assert resp.status == 400
        assert b"disagree" in resp.body
        assert environ_of(get(srv, "/environ", "X-Forwarded-Ssl: on\r\n"))["wsgi.url_scheme"] == "https"


def v2_header(src="203.0.113.5", sport=56324, dst="10.0.0.1", dport=443, tlvs=b""):
    addrs = (ipaddress.IPv4Address(src).packed + ipaddress.IPv4Address(dst).packed
             + struct.pack("!HH", sport, dport))
    return V2_SIGNATURE + b"\x21\x11" + struct.pack("!H", len(addrs) + len(tlvs)) + addrs + tlvs


def test_proxy_v1_and_v2_give_the_client_address():
    with running("testapp:app", "--proxy-protocol", "auto", "--threads", "2") as srv:
        e = environ_of(send(srv, b"PROXY TCP4 203.0.113.5 10.0.0.1 56324 443\r\n" + REQ))
        assert (e["REMOTE_ADDR"], e["REMOTE_PORT"], e["SERVER_PORT"]) == ("203.0.113.5", "56324", "443")
        assert (e["PROXY_PROTOCOL"], e["PROXY_ADDR"]) == ("v1", "127.0.0.1")
        ssl = b"\x20" + struct.pack("!H", 5) + b"\x01\0\0\0\0"
        e = environ_of(send(srv, v2_header(src="198.51.100.7", tlvs=ssl) + REQ))
        assert (e["REMOTE_ADDR"], e["PROXY_PROTOCOL"]) == ("198.51.100.7", "v2")
        assert e["wsgi.url_scheme"] == "https"
        # The header in pieces, then two kept-alive requests: the header is read once.
        with srv.connect() as s:
            line = b"PROXY TCP4 203.0.113.9 10.0.0.1 1000 80\r\n"
            for piece in (line[:3], line[3:20], line[20:]):
                s.sendall(piece)
                time.sleep(0.05)
            reader = HTTPReader(s)
            for _ in range(2):
                s.sendall(b"GET /environ HTTP/1.1\r\nHost: x\r\n\r\n")
                assert environ_of(reader.read_response())["REMOTE_ADDR"] == "203.0.113.9"


def test_proxy_missing_or_malformed_header_closes_the_connection():
    with running("testapp:app", "--proxy-protocol", "v1", "--threads", "2") as srv:
        pid = workers_of(srv)
        assert closed_without_answer(srv, REQ)
        assert closed_without_answer(srv, b"PROXY TCP4 1.2.3.4 nope 1 2\r\n" + REQ)
        assert closed_without_answer(srv, v2_header() + REQ)        # v2 on a v1-only listener
        assert closed_without_answer(srv, b"PROXY " + b"1" * 200)
        e = environ_of(send(srv, b"PROXY UNKNOWN\r\n" + REQ))
        assert e["REMOTE_ADDR"] == "127.0.0.1"          # UNKNOWN: the socket's peer stands
        assert workers_of(srv) == pid


def test_proxy_header_from_a_peer_not_allowed_is_refused():
    with running("testapp:app", "--proxy-protocol", "v1", "--proxy-allow-ips", "10.0.0.0/8") as srv:
        assert closed_without_answer(srv, b"PROXY TCP4 203.0.113.5 10.0.0.1 1 2\r\n" + REQ)
        srv.wait_for_log(r"refused a connection from 127\.0\.0\.1: not in proxy_allow_ips")


def test_a_slow_proxy_header_is_under_header_timeout():
    with running("testapp:app", "--proxy-protocol", "v1", "--header-timeout", "1") as srv:
        with srv.connect() as s:
            s.sendall(b"PROXY TCP4 ")
            t = time.monotonic()
            s.settimeout(5)
            assert s.recv(100) == b""
            assert time.monotonic() - t < 3.5


def test_hostile_proxy_headers_never_take_the_worker_down():
    # A mangled length can leave the header incomplete: header_timeout ends those.
    with running("testapp:app", "--proxy-protocol", "auto", "--threads", "2",
                 "--header-timeout", "0.5") as srv:
        pids = workers_of(srv)
        rng = random.Random(11)
        good = [b"PROXY TCP4 203.0.113.5 10.0.0.1 56324 443\r\n",
                v2_header(tlvs=b"\x05\x00\x03abc\x20\x00\x05\x01\0\0\0\0")]
        for i in range(200):
            raw = bytearray(good[i % 2])
            for _ in range(rng.randint(1, 3)):
                raw[rng.randrange(len(raw))] = rng.randrange(256)
            with srv.connect(2) as s:
                try:
                    s.sendall(bytes(raw) + REQ)
                    s.settimeout(3)
                    while s.recv(65536):
                        pass
                except (ConnectionResetError, BrokenPipeError):
                    pass
                except TimeoutError:
                    pytest.fail(f"a mangled header {bytes(raw)!r} left the connection hanging")
        assert workers_of(srv) == pids
        assert environ_of(send(srv, good[0] + REQ))["REMOTE_ADDR"] == "203.0.113.5"


def test_request_ids_in_the_environ_and_the_access_log():
    with running("testapp:app", "--request-id-header", "X-Request-ID", "--accesslog", "-",
                 "--access-log-format", "json", "--forwarded-allow-ips", "127.0.0.1") as srv:
        e = environ_of(get(srv, "/environ", "X-Request-ID: from-the-proxy-1\r\n"))
        assert e["prefork.request_id"] == e["HTTP_X_REQUEST_ID"] == "from-the-proxy-1"
        made = [environ_of(get(srv, "/environ"))["prefork.request_id"] for _ in range(3)]
        assert len(set(made)) == 3 and all(m != "from-the-proxy-1" for m in made)
        bad = environ_of(get(srv, "/environ", "X-Request-ID: " + "x" * 300 + "\r\n"))
        assert len(bad["prefork.request_id"]) < 40
        srv.wait_for_log(r'"request_id":"from-the-proxy-1"')
        srv.wait_for_log(f'"request_id":"{made[0]}"')
    # From a peer that is not trusted, the client's id is replaced.
    with running("testapp:app", "--request-id-header", "X-Request-ID",
                 "--forwarded-allow-ips", "10.0.0.0/8") as srv:
        e = environ_of(get(srv, "/environ", "X-Request-ID: forged\r\n"))
        assert e["prefork.request_id"] == e["HTTP_X_REQUEST_ID"] != "forged"

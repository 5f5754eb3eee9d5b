"""prefork behind a real nginx and a real HAProxy, with the configs of docs/proxies.md
(and docs/deployment.md's nginx with TLS).

Each proxy runs in the foreground from a temporary prefix, on a listening
socket this test binds on port 0 and hands over (nginx takes it through its
NGINX variable, HAProxy as ``bind fd@N``). The client connects from
127.0.0.2, so the address the app sees tells the client from the proxy
(127.0.0.1), and sends forged forwarded headers that must change nothing.
The tests skip, saying so, when the binary is absent (``.ci/run`` installs
both from Debian).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest

from tests.server import ROOT, HTTPReader, running, workers_of

DOC = ROOT / "docs" / "proxies.md"
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
HAPROXY = shutil.which("haproxy") or (
    "/usr/sbin/haproxy" if os.path.exists("/usr/sbin/haproxy") else None)
CLIENT = "127.0.0.2"        # all of 127/8 is loopback on Linux

needs_nginx = pytest.mark.skipif(NGINX is None, reason="nginx is not installed (apt-get install nginx-light)")
needs_haproxy = pytest.mark.skipif(HAPROXY is None, reason="haproxy is not installed (apt-get install haproxy)")


def doc_block(name: str, doc: Path = DOC) -> str:
    """The fenced block after ``<!-- tested: NAME -->`` in ``doc`` (docs/proxies.md)."""
    m = re.search(rf"<!-- tested: {re.escape(name)} -->\s*```\w*\n(.*?)```", doc.read_text(), re.S)
    assert m, f"{doc.name} has no block marked 'tested: {name}'"
    return m.group(1)


def substitute(text: str, **pairs: str) -> str:
    for old, new in pairs.items():
        assert old in text, f"{old!r} is not in the documented config any more"
        text = text.replace(old, new)
    return text


def listening() -> socket.socket:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(64)
    return s


@contextmanager
def proxy_process(argv: list[str], sock: socket.socket | list[socket.socket],
                  env: dict[str, str] | None = None):
    socks = sock if isinstance(sock, list) else [sock]
    proc = subprocess.Popen(argv, pass_fds=[s.fileno() for s in socks], env=env,
                            start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    for s in socks:
        s.close()   # the proxy has them; the ports stay bound
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
        if proc.stdout:
            proc.stdout.close()
        print(out[-4000:])      # shown with a failure


@contextmanager
def nginx(site: str, prefix: Path, listen: tuple[str, ...] = ("listen 80;",)):
    """nginx serving ``site``, each of the ``listen`` directives moved to a
    port of its own (bound here, handed over); yields (process, port of the first)."""
    socks = [listening() for _ in listen]
    ports = [s.getsockname()[1] for s in socks]
    for directive, port in zip(listen, ports, strict=True):
        site = substitute(site, **{directive: directive.replace(
            directive.split()[1].rstrip(";"), f"127.0.0.1:{port}", 1)})
    for d in ("body", "proxy", "fastcgi", "uwsgi", "scgi", "logs"):
        (prefix / d).mkdir(exist_ok=True)
    # As root, nginx's workers would run as nobody, who cannot enter the
    # test's temporary directories (the unix socket is in one).
    user = "user root;" if os.geteuid() == 0 else ""
    (prefix / "nginx.conf").write_text(f"""
{user}
daemon off;
worker_processes 1;
error_log stderr warn;
pid {prefix}/nginx.pid;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body; proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi; uwsgi_temp_path {prefix}/uwsgi; scgi_temp_path {prefix}/scgi;
{site}
}}
""")
    argv = [NGINX, "-p", str(prefix), "-c", str(prefix / "nginx.conf")]
    fds = "".join(f"{s.fileno()};" for s in socks)
    with proxy_process(argv, socks, {"NGINX": fds, "PATH": os.environ["PATH"]}) as p:
        yield p, ports[0]


@contextmanager
def haproxy(cfg: str, prefix: Path):
    sock = listening()
    port = sock.getsockname()[1]
    cfg = substitute(cfg, **{"bind :80": f"bind fd@{sock.fileno()}"})
    (prefix / "haproxy.cfg").write_text(cfg)
    with proxy_process([HAPROXY, "-db", "-f", str(prefix / "haproxy.cfg")], sock) as p:
        yield p, port


def client(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(CLIENT, 0))


def ask(sock: socket.socket, reader: HTTPReader, path: str, headers: str = "") -> dict:
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: shop.example\r\n{headers}\r\n".encode())
    resp = reader.read_response()
    assert resp.status == 200, resp
    return json.loads(resp.body)


def first_answer(port: int, path: str) -> dict:
    """The proxy may take a moment to start: retry the first request."""
    last: Exception | None = None
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with client(port) as s:
                return ask(s, HTTPReader(s), path, "Connection: close\r\n")
        except (OSError, AssertionError, ValueError) as e:
            last = e
            time.sleep(0.1)
    raise AssertionError(f"the proxy never answered: {last}")


SPOOF = "X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Host: evil.example\r\nX-Forwarded-Proto: https\r\n"


def through_proxy(port: int, path: str, n: int) -> list[dict]:
    """What the app saw of ``n`` forged requests on one kept-alive client
    connection to the proxy, once it answers."""
    first_answer(port, path)
    with client(port) as s:
        reader = HTTPReader(s)
        return [ask(s, reader, path, SPOOF) for _ in range(n)]


def established_from(worker: int, port: int) -> int:
    conns = psutil.Process(worker).net_connections(kind="tcp")
    return sum(1 for c in conns if c.status == psutil.CONN_ESTABLISHED and c.laddr.port == port)


@needs_nginx
def test_nginx_over_tcp_keepalive(tmp_path):
    with running("testapp:app", "--threads", "4", "--forwarded-allow-ips", "127.0.0.1",
                 *[a for h in ("X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host",
                               "X-Forwarded-Prefix") for a in ("--forwarded-headers", h)]) as srv:
        site = substitute(doc_block("nginx-tcp"), **{"127.0.0.1:8000": f"127.0.0.1:{srv.port}"})
        with nginx(site, tmp_path) as (_, port):
            for e in through_proxy(port, "/shop/environ", 5):
                assert e["REMOTE_ADDR"] == CLIENT         # not 6.6.6.6, not nginx
                assert e["wsgi.url_scheme"] == "http"     # nginx's $scheme overwrote it
                assert e["HTTP_HOST"] == e["SERVER_NAME"] == "shop.example"
                assert (e["SCRIPT_NAME"], e["PATH_INFO"]) == ("/shop", "/environ")
            # keepalive + proxy_http_version 1.1: the upstream connection outlives the requests.
            (worker,) = workers_of(srv)
            assert established_from(worker, srv.port) >= 1
        # And straight to prefork from 127.0.0.2, untrusted: the forgery is left as sent.
        with socket.create_connection((srv.host, srv.port), timeout=5,
                                      source_address=(CLIENT, 0)) as s:
            e = ask(s, HTTPReader(s), "/environ", SPOOF)
            assert e["REMOTE_ADDR"] == CLIENT and e["wsgi.url_scheme"] == "http"
            assert e["HTTP_HOST"] == "shop.example" and e["HTTP_X_FORWARDED_FOR"] == "6.6.6.6"


@needs_nginx
def test_nginx_over_a_unix_socket(tmp_path):
    path = tmp_path / "prefork.sock"
    with running("testapp:app", "--bind", f"unix:{path}", "--unix-socket-mode", "666") as srv:
        site = substitute(doc_block("nginx-unix"), **{"/run/prefork/prefork.sock": str(path)})
        with nginx(site, tmp_path) as (_, port):
            for e in through_proxy(port, "/environ", 3):
                assert e["REMOTE_ADDR"] == CLIENT       # a unix peer is trusted by default
                assert e["wsgi.url_scheme"] == "http"
                assert e["HTTP_HOST"] == "shop.example"  # X-Forwarded-Host not listed: ignored
        assert "error reading" not in srv.log


@needs_haproxy
@pytest.mark.parametrize("block, version", [("haproxy-v2", "v2"), ("haproxy-v1", "v1")])
def test_haproxy_proxy_protocol(tmp_path, block, version):
    with running("testapp:app", "--threads", "4", "--proxy-protocol", version,
                 "--proxy-allow-ips", "127.0.0.1") as srv:
        pids = workers_of(srv)
        cfg = substitute(doc_block(block), **{"127.0.0.1:8000": f"127.0.0.1:{srv.port}"})
        with haproxy(cfg, tmp_path) as (_, port):
            for e in through_proxy(port, "/environ", 3):
                assert e["PROXY_PROTOCOL"] == version and e["PROXY_ADDR"] == "127.0.0.1"
                assert e["REMOTE_ADDR"] == CLIENT        # from the PROXY header
                # The client is not a trusted peer: its headers change nothing.
                assert e["wsgi.url_scheme"] == "http" and e["HTTP_HOST"] == "shop.example"
                assert "6.6.6.6" in e["HTTP_X_FORWARDED_FOR"]
        # A client straight to the PROXY listener, without the header: closed unanswered.
        with socket.create_connection((srv.host, srv.port), timeout=5) as s:
            s.sendall(b"GET /environ HTTP/1.1\r\nHost: x\r\n\r\n")
            assert s.recv(100) == b""
        assert workers_of(srv) == pids


@needs_nginx
@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_the_deployment_guides_nginx_with_tls_static_files_and_a_unix_socket(tmp_path):
    """docs/deployment.md's nginx, as written but for paths, ports and a
    throwaway certificate: https reaches the app as https from a trusted
    unix peer, nginx serves /static/ itself, port 80 redirects."""
    import ssl
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=example.com", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    static = tmp_path / "static"
    static.mkdir()
    (static / "site.css").write_text("body { color: teal }")
    path = tmp_path / "prefork.sock"
    with running("testapp:app", "--bind", f"unix:{path}", "--unix-socket-mode", "666") as srv:
        site = substitute(doc_block("nginx-tls", ROOT / "docs" / "deployment.md"), **{
            "/run/prefork/prefork.sock": str(path),
            "/etc/letsencrypt/live/example.com/fullchain.pem": str(cert),
            "/etc/letsencrypt/live/example.com/privkey.pem": str(key),
            "/srv/myapp/static/": f"{static}/",
        })
        with nginx(site, tmp_path, ("listen 443 ssl http2;", "listen 80;")) as (proc, port):
            tls = ssl.create_default_context()
            tls.check_hostname = False
            tls.verify_mode = ssl.CERT_NONE

            def over_tls(raw: bytes) -> tuple[int, bytes]:
                deadline = time.monotonic() + 10
                while True:
                    try:
                        with tls.wrap_socket(client(port), server_hostname="example.com") as s:
                            s.sendall(raw)
                            r = HTTPReader(s).read_response()
                            return r.status, r.body
                    except (OSError, EOFError):
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(0.1)

            status, body = over_tls(b"GET /environ HTTP/1.1\r\nHost: example.com\r\n"
                                    b"X-Forwarded-Proto: http\r\nConnection: close\r\n\r\n")
            assert status == 200
            e = json.loads(body)
            assert e["wsgi.url_scheme"] == "https"      # nginx's $scheme, not the client's
            assert e["REMOTE_ADDR"] == CLIENT           # a unix peer is trusted by default
            assert e["HTTP_HOST"] == "example.com"
            status, body = over_tls(b"GET /static/site.css HTTP/1.1\r\nHost: example.com\r\n"
                                    b"Connection: close\r\n\r\n")
            # From nginx: the app answers 404 for any path it does not know.
            assert (status, body) == (200, b"body { color: teal }")
        assert "error reading" not in srv.log

"""Start a real prefork process for a test and talk to it over raw sockets.

The server is started as ``python -m prefork start APP --bind 127.0.0.1:0 ...``.
It prints ``Listening at: http://HOST:PORT`` once bound (that line gives the
port) and ``Ready: N workers serving`` once every worker has booted; by
default a test starts talking after the second. Every process is stopped (TERM, then KILL) when the test
ends, so nothing is left behind.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LISTEN_RE = re.compile(r"Listening at: http://(\[[^\]]+\]|[^:\s]+):(\d+)")
READY_RE = r"Ready: \d+ workers serving"


class ServerProcess:
    """A running prefork; ``log`` accumulates everything it printed."""

    def __init__(self, args: list[str], env: dict[str, str | None] | None = None,
                 cwd: str | os.PathLike[str] | None = None, startup_timeout: float = 15.0,
                 wait_ready: bool = True, log_files: list[Path] | None = None,
                 command: list[str] | None = None, wait_listening: bool = True):
        """``command`` replaces ``python -m prefork ARGS`` (e.g. a wrapper that
        starts prefork); without ``wait_listening`` there is no port to learn."""
        # Files the server logs to (--errorlog); ``log`` includes their text.
        self.log_files = log_files or []
        full_env = dict(os.environ)
        full_env["PYTHONPATH"] = os.pathsep.join(
            [str(ROOT), str(ROOT / "tests" / "apps"), full_env.get("PYTHONPATH", "")]
        ).rstrip(os.pathsep)
        full_env.setdefault("PYTHONUNBUFFERED", "1")
        for key, value in (env or {}).items():     # None: not in the environment
            if value is None:
                full_env.pop(key, None)
            else:
                full_env[key] = value
        self.args = command or [sys.executable, "-m", "prefork", *args]
        self.proc = subprocess.Popen(
            self.args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            env=full_env, cwd=cwd, start_new_session=True,
        )
        self._lines: list[str] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.host, self.port = "", 0
        if wait_listening:
            self.host, self.port = self._wait_listening(startup_timeout)
        if wait_ready:
            try:
                self.wait_for_log(READY_RE, startup_timeout)
            except AssertionError:
                self.stop()
                raise

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            with self._cond:
                self._lines.append(raw.decode("utf-8", "replace"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    @property
    def log(self) -> str:
        with self._cond:
            return self._text()

    def _text(self) -> str:
        files = "".join(p.read_text(errors="replace") for p in self.log_files if p.exists())
        return "".join(self._lines) + files

    def wait_for_log(self, pattern: str, timeout: float = 10.0) -> re.Match[str]:
        """Wait until the server's output matches ``pattern``; fail with the log if not."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                m = rx.search(self._text())
                if m:
                    return m
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(f"{pattern!r} never appeared in the server log:\n{self.log}")
                self._cond.wait(min(left, 0.2))

    def _wait_listening(self, timeout: float) -> tuple[str, int]:
        try:
            m = self.wait_for_log(LISTEN_RE.pattern, timeout)
        except AssertionError:
            self.stop()
            raise
        return m.group(1).strip("[]"), int(m.group(2))

    def connect(self, timeout: float = 5.0) -> socket.socket:
        return socket.create_connection((self.host, self.port), timeout=timeout)

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 10.0) -> int:
        """TERM the server and wait; KILL its whole process group if it lingers."""
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(5)
        else:
            # Reap any worker the server forked that outlived it.
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self._reader.join(2)
        return self.proc.returncode


@contextmanager
def running(app: str | None = None, *args: str, env: dict[str, str | None] | None = None,
            cwd: str | os.PathLike[str] | None = None, wait_ready: bool = True,
            log_files: list[Path] | None = None, one_worker: bool = True
            ) -> Iterator[ServerProcess]:
    """``with running("app_module:app", "--threads", "2") as srv: ...``"""
    # One worker unless the test asks for more (or for none on the command
    # line: one_worker=False): fewer processes, and the single-worker
    # behaviour (accept gating, ...) is what most tests check.
    extra = [] if "--workers" in args or not one_worker else ["--workers", "1"]
    ctl_dir = tempfile.mkdtemp(prefix="prefork-test-")
    if "--control-socket" not in args:
        # Each server its own control socket: they must not meet in the cwd.
        extra += ["--control-socket", os.path.join(ctl_dir, "ctl")]
    argv = ["start"] + ([app] if app else []) + ["--bind", "127.0.0.1:0", *extra, *args]
    try:
        srv = ServerProcess(argv, env=env, cwd=cwd, wait_ready=wait_ready, log_files=log_files)
        try:
            yield srv
        finally:
            srv.stop()
    finally:
        shutil.rmtree(ctl_dir, ignore_errors=True)


def workers_of(srv: ServerProcess) -> list[int]:
    """The pids of the server's live workers (the master's children), sorted."""
    import psutil
    try:
        return sorted(p.pid for p in psutil.Process(srv.proc.pid).children()
                      if p.status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return []


def wait_until(predicate: Callable[[], object], timeout: float = 10.0,
               interval: float = 0.05) -> object:
    """Poll ``predicate`` until it returns something true; return that."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


class Response:
    def __init__(self, status: int, reason: str, version: str,
                 headers: list[tuple[str, str]], body: bytes, raw_head: bytes):
        self.status, self.reason, self.version = status, reason, version
        self.headers, self.body, self.raw_head = headers, body, raw_head

    def header(self, name: str, default: str | None = None) -> str | None:
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return default

    def header_list(self, name: str) -> list[str]:
        name = name.lower()
        return [v for k, v in self.headers if k.lower() == name]

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.headers!r} {self.body[:80]!r}>"


class HTTPReader:
    """Reads responses off a raw socket, one at a time, honouring the framing."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buf = b""

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        if not data:
            return False
        self.buf += data
        return True

    def _read_until(self, sep: bytes) -> bytes:
        while sep not in self.buf:
            if not self._fill():
                raise EOFError(f"connection closed while waiting for {sep!r}; got {self.buf!r}")
        i = self.buf.index(sep) + len(sep)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def _read_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._fill():
                raise EOFError(f"connection closed with {n - len(self.buf)} body bytes missing")
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_response(self, method: str = "GET") -> Response:
        head = self._read_until(b"\r\n\r\n")
        lines = head[:-4].decode("latin-1").split("\r\n")
        version, code, *reason = lines[0].split(" ", 2)
        headers = [tuple(x.strip() for x in line.split(":", 1)) for line in lines[1:]]
        resp = Response(int(code), reason[0] if reason else "", version, headers, b"", head)  # type: ignore[arg-type]
        status = resp.status
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            return resp
        te = (resp.header("transfer-encoding") or "").lower()
        if te == "chunked":
            body = b""
            while True:
                size_line = self._read_until(b"\r\n")
                size = int(size_line.split(b";")[0], 16)
                if size == 0:
                    while self._read_until(b"\r\n") != b"\r\n":
                        pass
                    break
                body += self._read_exact(size)
                assert self._read_exact(2) == b"\r\n"
            resp.body = body
        elif resp.header("content-length") is not None:
            resp.body = self._read_exact(int(resp.header("content-length") or 0))
        else:
            while self._fill():
                pass
            resp.body, self.buf = self.buf, b""
        return resp

    def at_eof(self, timeout: float = 2.0) -> bool:
        """True when the server closed the connection (no more bytes)."""
        if self.buf:
            return False
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True


def request(srv: ServerProcess, raw: bytes, method: str = "GET") -> Response:
    """Send ``raw`` on a fresh connection and read one response."""
    with srv.connect() as s:
        s.sendall(raw)
        return HTTPReader(s).read_response(method)


def get(srv: ServerProcess, path: str = "/", headers: str = "") -> Response:
    raw = f"GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n{headers}\r\n".encode("latin-1")
    return request(srv, raw)


class LoadLoop:
    """A bounded client load in background threads, for "zero lost requests" tests.

    Each thread sends requests until ``stop()`` (or ``max_seconds``), half of them
    on a kept-alive connection and half on fresh ones (all on kept-alive
    connections with ``keepalive_only``). A request counts as lost
    when a fresh connection fails or a response is cut short. A kept-alive
    connection the server closed before answering (it was idle when its worker
    retired) is retried on a new connection, as HTTP clients do (RFC 9112 §9.3.1),
    unless ``strict``: then it counts as lost too, as it does for clients
    that do not retry (and for a non-idempotent request).
    """

    def __init__(self, srv: ServerProcess, path: str = "/hello", threads: int = 4,
                 max_seconds: float = 30.0, keepalive_only: bool = False,
                 strict: bool = False):
        self.srv, self.path, self.strict = srv, path, strict
        self.ok = 0
        self.bodies: list[bytes] = []
        self.lost: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._deadline = time.monotonic() + max_seconds
        self._threads = [threading.Thread(target=self._run, args=(keepalive_only or i % 2 == 0,),
                                         daemon=True)
                         for i in range(threads)]
        for t in self._threads:
            t.start()

    def _one(self, sock: socket.socket, reader: HTTPReader) -> Response:
        sock.sendall(f"GET {self.path} HTTP/1.1\r\nHost: load\r\n\r\n".encode())
        return reader.read_response()

    def _record(self, r: Response) -> None:
        with self._lock:
            if r.status == 200:
                self.ok += 1
                if len(self.bodies) < 100000:
                    self.bodies.append(r.body)
            else:
                self.lost.append(f"status {r.status}: {r.body[:200]!r}")

    def _fresh(self) -> tuple[socket.socket, HTTPReader]:
        s = socket.create_connection((self.srv.host, self.srv.port), timeout=10)
        return s, HTTPReader(s)

    def _run(self, keepalive: bool) -> None:
        sock = reader = None
        while not self._stop.is_set() and time.monotonic() < self._deadline:
            reused = sock is not None
            try:
                if sock is None:
                    sock, reader = self._fresh()
                assert reader is not None
                r = self._one(sock, reader)
            except (EOFError, ConnectionResetError, BrokenPipeError) as e:
                partial = reader is not None and reader.buf
                if sock is not None:
                    sock.close()
                sock = reader = None
                if reused and not partial and not self.strict:
                    continue    # idle kept-alive connection closed under us: retry
                with self._lock:
                    self.lost.append(f"{type(e).__name__}: {e}")
                continue
            except OSError as e:
                if sock is not None:
                    sock.close()
                sock = reader = None
                with self._lock:
                    self.lost.append(f"{type(e).__name__}: {e}")
                continue
            self._record(r)
            if not keepalive or r.header("connection") == "close":
                sock.close()
                sock = reader = None
        if sock is not None:
            sock.close()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(15)


def multipart(fields: dict[str, str], files: dict[str, tuple[str, bytes, str]]
              ) -> tuple[bytes, str]:
    """A multipart/form-data body of ``fields`` and ``files`` (name: (filename,
    data, content type)), and its Content-Type."""
    boundary = "----preforkBoundary7MA4YWxkTrZu0gW"
    parts = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
                     .encode() + value.encode() + b"\r\n")
    for name, (filename, data, ctype) in files.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
                     f'filename="{filename}"\r\nContent-Type: {ctype}\r\n\r\n'.encode()
                     + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"

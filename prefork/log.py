"""The error log and the access log.

Error log: stdlib ``logging`` under the ``prefork`` logger, to stderr ("-"),
a file, or syslog. Files are reopened on USR1 (logrotate's ``postrotate``).

Access log: one line per request, in a gunicorn-compatible format
(``%(h)s %(r)s %(s)s %(b)s %(D)s %({header}i)s`` ...) or as JSON lines. The
request thread only appends a tuple to a deque; a writer thread wakes every
50 ms, formats what is there and writes it with one ``write()``. Values are escaped
(quotes, backslashes, control bytes), so a client cannot forge a log line
through a header (gunicorn #2457).
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import re
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, TextIO

from .threads import start_thread

FLUSH_INTERVAL = 0.05
DEFAULT_ACCESS_FORMAT = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"'
ERROR_FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s"
ERROR_DATEFMT = "%Y-%m-%d %H:%M:%S %z"

_ATOM = re.compile(r"%\((\{[^}]*\}[ioe]|[a-zA-Z])\)s")
_UNSAFE = re.compile(r'[\x00-\x1f\x7f-\xff"\\]')


def _escape(value: str) -> str:
    if value.isascii() and value.isprintable() and '"' not in value and "\\" not in value:
        return value
    return _UNSAFE.sub(lambda m: f"\\x{ord(m.group()):02x}", value)


class Reopenable(logging.StreamHandler):  # type: ignore[type-arg]
    """A file handler whose file can be reopened after logrotate moved it."""

    def __init__(self, path: str):
        self.path = path
        super().__init__(open(path, "a", buffering=1, encoding="utf-8"))  # noqa: SIM115

    def reopen(self) -> None:
        self.acquire()
        try:
            old = self.stream
            self.stream = open(self.path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115
            old.close()
        finally:
            self.release()


def _syslog_handler(address: str, facility: str) -> logging.Handler:
    if address.startswith("unix://"):
        target: Any = address[len("unix://"):]
    elif address.startswith(("udp://", "tcp://")):
        host, _, port = address[6:].rpartition(":")
        target = (host, int(port))
    else:
        raise ValueError("syslog_addr is unix://PATH, udp://HOST:PORT or tcp://HOST:PORT")
    import socket
    kind = socket.SOCK_STREAM if address.startswith("tcp://") else socket.SOCK_DGRAM
    handler = logging.handlers.SysLogHandler(
        target, facility=logging.handlers.SysLogHandler.facility_names[facility],
        socktype=kind if not isinstance(target, str) else None)
    handler.ident = "prefork: "
    return handler


def setup_error_log(level: str = "info", errorlog: str = "-", syslog_addr: str = "",
                    syslog_facility: str = "user") -> None:
    """Point the ``prefork`` logger at its destination(s); safe to call again."""
    logger = logging.getLogger("prefork")
    for h in list(logger.handlers):
        if getattr(h, "_prefork", False):
            logger.removeHandler(h)
            if isinstance(h, Reopenable):
                h.close()
    handler: logging.Handler = (logging.StreamHandler(sys.stderr) if errorlog in ("-", "")
                                else Reopenable(errorlog))
    handler.setFormatter(logging.Formatter(ERROR_FORMAT, ERROR_DATEFMT))
    handlers = [handler]
    if syslog_addr:
        sh = _syslog_handler(syslog_addr, syslog_facility)
        sh.setFormatter(logging.Formatter("[%(process)d] [%(levelname)s] %(message)s"))
        handlers.append(sh)
    for h in handlers:
        h._prefork = True  # type: ignore[attr-defined]
        logger.addHandler(h)
    logger.propagate = False
    logger.setLevel(level.upper())


def reopen_error_log() -> None:
    for h in logging.getLogger("prefork").handlers:
        if isinstance(h, Reopenable):
            h.reopen()


class AccessLog:
    """Formats and writes access log lines off the request path.

    ``log(environ, status, length, headers, start, end)`` is what a request
    thread calls: one tuple onto a queue.
    """

    def __init__(self, target: str, fmt: str = DEFAULT_ACCESS_FORMAT):
        self.target = target
        self.json = fmt.strip().lower() == "json"
        self.fmt = fmt
        self.line = None if self.json else compile_format(fmt)
        # deque.append is atomic and wakes nobody: the writer drains the
        # deque every FLUSH_INTERVAL instead of being woken for every line.
        self.pending: deque[tuple[Any, ...]] = deque()
        self.stream: TextIO = self._open()
        self._reopen = False
        self._stop = threading.Event()
        self._thread = start_thread(self._writer, "prefork-accesslog")

    def _open(self) -> TextIO:
        if self.target == "-":
            return sys.stdout
        return open(self.target, "a", encoding="utf-8")  # noqa: SIM115

    def log(self, environ: dict[str, Any], status: str | None, length: int,
            headers: list[tuple[str, str]], start: float, end: float) -> None:
        self.pending.append((environ, status, length, headers, start, end, time.time()))

    def reopen(self) -> None:
        self._reopen = True

    def close(self, timeout: float = 2.0) -> None:
        """Write what is pending, then stop the writer."""
        self._stop.set()
        self._thread.join(timeout)

    def _writer(self) -> None:
        while not self._stop.wait(FLUSH_INTERVAL):
            self._flush()
        self._flush()

    def _flush(self) -> None:
        pending, popleft = self.pending, self.pending.popleft
        line, compiled = self.format_line, self.line
        while pending:
            batch = [popleft() for _ in range(min(len(pending), 5000))]
            if compiled is not None:
                lines = [compiled(e, s, n, h, end - start, w) for e, s, n, h, start, end, w in batch]
            else:
                lines = [line(*item) for item in batch]
            try:
                self.stream.write("\n".join(lines) + "\n")
                self.stream.flush()
            except (OSError, ValueError):
                pass
        if self._reopen:
            self._reopen = False
            if self.stream is not sys.stdout:
                old, self.stream = self.stream, self._open()
                old.close()

    def format_line(self, environ: dict[str, Any], status: str | None, length: int,
                    headers: list[tuple[str, str]], start: float, end: float,
                    wall: float) -> str:
        if self.json:
            return json.dumps(self._json_record(environ, status, length, headers, start, end,
                                                wall), separators=(",", ":"))
        assert self.line is not None
        return self.line(environ, status, length, headers, end - start, wall)

    def _json_record(self, environ: dict[str, Any], status: str | None, length: int,
                     headers: list[tuple[str, str]], start: float, end: float,
                     wall: float) -> dict[str, Any]:
        return {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(wall)),
            "remote_addr": environ.get("REMOTE_ADDR", ""),
            "method": environ.get("REQUEST_METHOD", ""),
            "path": environ.get("RAW_URI", environ.get("PATH_INFO", "")),
            "protocol": environ.get("SERVER_PROTOCOL", ""),
            "status": int(status[:3]) if status else 0,
            "bytes": length,
            "duration_us": int((end - start) * 1e6),
            "referer": environ.get("HTTP_REFERER", ""),
            "user_agent": environ.get("HTTP_USER_AGENT", ""),
            "pid": os.getpid(),
        }


# Each atom is an expression over (e=environ, s=status, n=bytes, h=response
# headers, d=duration, w=wall time). The whole format compiles, once, into one
# function that joins literals and these expressions: no per-atom calls.
_EXPRESSIONS: dict[str, str] = {
    "h": 'e.get("REMOTE_ADDR") or "-"',
    "l": '"-"',
    "u": '"-"',
    "t": "_clf_time(w)",
    "r": '_escape(f"{e[\'REQUEST_METHOD\']} {e.get(\'RAW_URI\', \'\')} {e[\'SERVER_PROTOCOL\']}")',
    "m": '_escape(e.get("REQUEST_METHOD") or "-")',
    "U": '_escape(e.get("PATH_INFO") or "-")',
    "q": '_escape(e.get("QUERY_STRING") or "")',
    "H": 'e.get("SERVER_PROTOCOL") or "-"',
    "s": 's[:3] if s else "-"',
    "B": "str(n)",
    "b": 'str(n) if n else "-"',
    "f": '_escape(e.get("HTTP_REFERER") or "-")',
    "a": '_escape(e.get("HTTP_USER_AGENT") or "-")',
    "T": "str(int(d))",
    "D": "str(int(d * 1e6))",
    "M": "str(int(d * 1e3))",
    "L": 'f"{d:.6f}"',
    "p": 'f"<{_pid()}>"',
}

_clf_cache: list[Any] = [0, ""]


def _clf_time(wall: float) -> str:
    sec = int(wall)
    if _clf_cache[0] != sec:
        _clf_cache[1] = time.strftime("[%d/%b/%Y:%H:%M:%S %z]", time.localtime(sec))
        _clf_cache[0] = sec
    return _clf_cache[1]


def _response_header(headers: list[tuple[str, str]], lname: str) -> str:
    return _escape(next((v for k, v in headers if k.lower() == lname), "-"))


def _expression(atom: str) -> str:
    if atom[0] != "{":
        return _EXPRESSIONS[atom]
    name, kind = atom[1:-2], atom[-1]
    if kind == "i":
        return f'_escape(e.get({"HTTP_" + name.upper().replace("-", "_")!r}) or "-")'
    if kind == "o":
        return f"_response_header(h, {name.lower()!r})"
    return f'_escape(str(e.get({name!r}, "-")))'


def compile_format(fmt: str) -> Callable[..., str]:
    """Turn a gunicorn-style format into ``f(e, s, n, h, d, w) -> line``."""
    parts: list[str] = []
    pos = 0
    for m in _ATOM.finditer(fmt):
        parts.append(repr(fmt[pos:m.start()].replace("%%", "%")))
        parts.append(f"({_expression(m.group(1))})")
        pos = m.end()
    parts.append(repr(fmt[pos:].replace("%%", "%")))
    source = "lambda e, s, n, h, d, w: " + " + ".join(parts)
    namespace = {"_escape": _escape, "_clf_time": _clf_time, "_response_header": _response_header,
                 "_pid": os.getpid}
    return eval(compile(source, "<access_log_format>", "eval"), namespace)  # noqa: S307


def check_access_format(fmt: str) -> None:
    """Raise ValueError when a format has an atom we do not know."""
    if fmt.strip().lower() == "json":
        return
    for atom in _ATOM.findall(fmt):
        if atom[0] != "{" and atom not in _EXPRESSIONS:
            raise ValueError(f"unknown access log atom %({atom})s")
    try:
        fmt % {a: "" for a in _ATOM.findall(fmt)}
        compile_format(fmt)
    except (KeyError, ValueError, TypeError, SyntaxError) as e:
        raise ValueError(f"access log format does not work: {e}") from None

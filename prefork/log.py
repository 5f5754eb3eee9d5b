"""The error log and the access log.

Error log: stdlib ``logging`` under the ``prefork`` logger, to stderr ("-"),
a file, or syslog. Files are reopened on USR1 (logrotate's ``postrotate``).

Access log: one line per request, in a gunicorn-compatible format
(``%(h)s %(r)s %(s)s %(b)s %(D)s %({header}i)s`` ...) or as JSON lines. The
request thread only appends a tuple of the values a line needs to a deque; a
writer thread wakes every 10 ms (100 ms while there is nothing to write),
formats what is there and writes it with one ``write()``. Values are escaped
(quotes, backslashes, control bytes), so a client cannot forge a log line
through a header (gunicorn #2457).
"""

from __future__ import annotations

import ast
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
from typing import Any, NamedTuple, TextIO

from .daemon import give_files_to
from .threads import start_thread

# The writer's wake-ups: 10 ms while lines come in, because a longer interval
# makes batches large enough to evict the request path from the CPU caches
# (docs/benchmarks.md, "Where the time goes", has the figures); 100 ms while
# idle, so that an idle worker hardly wakes.
FLUSH_INTERVAL = 0.01
IDLE_FLUSH_INTERVAL = 0.1
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
        # Reopened after the master's chdir: from where it was first opened.
        self.path = os.path.abspath(path)
        super().__init__(open(path, "a", buffering=1, encoding="utf-8"))  # noqa: SIM115

    def reopen(self) -> None:
        """Open the path again; if that fails (its directory moved, no
        permission), raise OSError and keep writing to the file already open."""
        self.acquire()
        try:
            new = open(self.path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115
            old, self.stream = self.stream, new
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


def error_log_file() -> TextIO:
    """The file the error log writes to now (stderr unless it is a file):
    where faulthandler must write stack dumps, which come from C."""
    for h in logging.getLogger("prefork").handlers:
        if isinstance(h, Reopenable):
            return h.stream  # type: ignore[no-any-return]
    return sys.stderr


def dump_stacks_to_error_log(signum: int) -> None:
    """Point faulthandler at the error log: all threads' stacks on ``signum``
    (the master's request for them) and on a fatal signal (an ABRT while
    the app is still importing, a segfault). Called again after every reopen:
    faulthandler keeps the descriptor it was given, which the reopen closes."""
    import faulthandler
    import signal
    stream = error_log_file()
    faulthandler.register(signum, file=stream, all_threads=True, chain=False)
    # enable() takes over SIGABRT too; a worker that has its own handler for
    # it (the worker_abort hook) keeps that one.
    abrt = signal.getsignal(signal.SIGABRT)
    faulthandler.enable(file=stream, all_threads=True)
    if callable(abrt):
        signal.signal(signal.SIGABRT, abrt)


def reopen_error_log() -> None:
    """Reopen the error log file(s). Never raises (it runs in signal handlers):
    a file that cannot be opened again is said in the log, which goes on to
    the file already open."""
    logger = logging.getLogger("prefork")
    for h in logger.handlers:
        if isinstance(h, Reopenable):
            try:
                h.reopen()
            except OSError as e:
                logger.error("cannot reopen the error log %s: %s; still writing to the file "
                             "open before", h.path, e)


def give_log_files_to_workers(accesslog: str, user: str, group: str) -> None:
    """As root with ``user``/``group``: create the error log file(s) and the
    ``accesslog`` file if missing and make them the workers' user's, so the
    workers can open the access log at start and reopen both on USR1. The
    master calls it before it forks workers and after its own USR1 reopen
    (which may just have created the error log as root, 0644). A relative
    ``accesslog`` is taken from the current directory, as the workers do.
    Never raises."""
    paths = [h.path for h in logging.getLogger("prefork").handlers if isinstance(h, Reopenable)]
    if accesslog not in ("", "-"):
        paths.append(os.path.abspath(accesslog))
    give_files_to(paths, user, group)


# The environ keys json_line reads.
_JSON_KEYS: tuple[str, ...] = ("REMOTE_ADDR", "REQUEST_METHOD", "RAW_URI", "PATH_INFO",
                                "SERVER_PROTOCOL", "HTTP_REFERER", "HTTP_USER_AGENT",
                                "prefork.request_id")


class AccessLog:
    """Formats and writes access log lines off the request path.

    ``log(environ, status, length, headers, start, end)`` is what a request
    thread calls. It copies the few environ values the format reads into a
    tuple (one compiled function) and queues it; the environ and the
    response headers go with the request, because holding them in the queue
    until the writer's next turn, as the first version did, cost more than
    the copy (docs/benchmarks.md).
    """

    def __init__(self, target: str, fmt: str = DEFAULT_ACCESS_FORMAT):
        self.target = target
        self.json = fmt.strip().lower() == "json"
        self.fmt = fmt
        self.line: Callable[..., str] | None = None
        if self.json:
            self.keys, self.headers = _JSON_KEYS, False
        else:
            self.keys, self.headers, self.line = compile_positional(fmt)
        self.extract: Callable[[dict[str, Any]], tuple[Any, ...]] = eval(  # noqa: S307
            "lambda e: (" + "".join(f"e.get({k!r}), " for k in self.keys) + ")")
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
        self.pending.append((self.extract(environ), status, length,
                             headers if self.headers else (), start, end))

    def reopen(self) -> None:
        self._reopen = True

    def close(self, timeout: float = 2.0) -> None:
        """Write what is pending, then stop the writer."""
        self._stop.set()
        self._thread.join(timeout)

    def _writer(self) -> None:
        wait = FLUSH_INTERVAL
        while not self._stop.wait(wait):
            try:
                wait = FLUSH_INTERVAL if self._flush() else IDLE_FLUSH_INTERVAL
            except Exception:
                # The writer must outlive any one failure: if it stopped,
                # lines would pile up in memory for good.
                logging.getLogger("prefork.error").exception("the access log writer failed")
        self._flush()

    def _flush(self) -> bool:
        """Write what is pending; whether there was anything."""
        pending, popleft = self.pending, self.pending.popleft
        wrote = bool(pending)
        compiled, keys = self.line, self.keys
        # Wall-clock time from the monotonic end: off by a clock step at most.
        offset = time.time() - time.monotonic()
        while pending:
            batch = [popleft() for _ in range(min(len(pending), 5000))]
            if compiled is not None:
                lines = [compiled(v, s, n, h, end - start, end + offset)
                         for v, s, n, h, start, end in batch]
            else:
                lines = [self.json_line(dict(zip(keys, v, strict=True)), s, n, start, end,
                                        end + offset) for v, s, n, h, start, end in batch]
            try:
                self.stream.write("\n".join(lines) + "\n")
                self.stream.flush()
            except (OSError, ValueError):
                pass
        if self._reopen:
            self._reopen = False
            if self.stream is not sys.stdout:
                try:
                    new = self._open()
                except OSError as e:
                    logging.getLogger("prefork.error").error(
                        "cannot reopen the access log %s: %s; still writing to the file open "
                        "before", self.target, e)
                else:
                    old, self.stream = self.stream, new
                    old.close()
        return wrote

    @staticmethod
    def json_line(e: dict[str, Any], status: str | None, length: int, start: float, end: float,
                  wall: float) -> str:
        """One line of the ``json`` format; ``e`` holds the _JSON_KEYS (None when missing)."""
        line = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(wall)),
            "remote_addr": e["REMOTE_ADDR"] or "",
            "method": e["REQUEST_METHOD"] or "",
            "path": e["RAW_URI"] or e["PATH_INFO"] or "",
            "protocol": e["SERVER_PROTOCOL"] or "",
            "status": int(status[:3]) if status else 0,
            "bytes": length,
            "duration_us": int((end - start) * 1e6),
            "referer": e["HTTP_REFERER"] or "",
            "user_agent": e["HTTP_USER_AGENT"] or "",
            "pid": os.getpid(),
        }
        if e["prefork.request_id"]:
            line["request_id"] = e["prefork.request_id"]
        return json.dumps(line, separators=(",", ":"))


# Each atom is an expression over (E("KEY")=an environ value, s=status,
# n=bytes, h=response headers, d=duration, w=wall time). The whole format
# compiles, once, into one function that joins literals and these
# expressions: no per-atom calls.
_EXPRESSIONS: dict[str, str] = {
    "h": 'E("REMOTE_ADDR") or "-"',
    "l": '"-"',
    "u": '"-"',
    "t": "_clf_time(w)",
    "r": '_escape(" ".join((E("REQUEST_METHOD") or "-", E("RAW_URI") or "",'
         ' E("SERVER_PROTOCOL") or "-")))',
    "m": '_escape(E("REQUEST_METHOD") or "-")',
    "U": '_escape(E("PATH_INFO") or "-")',
    "q": '_escape(E("QUERY_STRING") or "")',
    "H": 'E("SERVER_PROTOCOL") or "-"',
    "s": 's[:3] if s else "-"',
    "B": "str(n)",
    "b": 'str(n) if n else "-"',
    "f": '_escape(E("HTTP_REFERER") or "-")',
    "a": '_escape(E("HTTP_USER_AGENT") or "-")',
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
    text: str = _clf_cache[1]
    return text


def _response_header(headers: list[tuple[str, str]], lname: str) -> str:
    return _escape(next((v for k, v in headers if k.lower() == lname), "-"))


def _expression(atom: str) -> str:
    if atom[0] != "{":
        return _EXPRESSIONS[atom]
    name, kind = atom[1:-2], atom[-1]
    if kind == "i":
        return f'_escape(E({"HTTP_" + name.upper().replace("-", "_")!r}) or "-")'
    if kind == "o":
        return f"_response_header(h, {name.lower()!r})"
    return f'_escape("-" if E({name!r}) is None else str(E({name!r})))'


_ENV_VALUE = re.compile(r"""E\(('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")\)""")


class CompiledFormat(NamedTuple):
    """``line(v, s, n, h, d, w)``: ``v`` holds the environ values named by
    ``keys`` (None when missing), ``h`` the response headers (needed only
    when ``headers``), ``s`` the status, ``n`` the bytes sent, ``d`` the
    duration and ``w`` the wall-clock time."""

    keys: tuple[str, ...]
    headers: bool
    line: Callable[..., str]


def _compile(fmt: str, environ_value: Callable[[str, list[str]], str]) -> CompiledFormat:
    keys: list[str] = []

    def value(m: re.Match[str]) -> str:
        return environ_value(ast.literal_eval(m.group(1)), keys)

    parts: list[str] = []
    pos = 0
    for m in _ATOM.finditer(fmt):
        parts.append(repr(fmt[pos:m.start()].replace("%%", "%")))
        parts.append(f"({_ENV_VALUE.sub(value, _expression(m.group(1)))})")
        pos = m.end()
    parts.append(repr(fmt[pos:].replace("%%", "%")))
    # One join of a tuple, the cheaper of the two ways measured against a
    # chain of + (docs/benchmarks.md).
    source = "lambda v, s, n, h, d, w: ''.join((" + ", ".join(parts) + ",))"
    namespace = {"_escape": _escape, "_clf_time": _clf_time, "_response_header": _response_header,
                 "_pid": os.getpid}
    line = eval(compile(source, "<access_log_format>", "eval"), namespace)  # noqa: S307
    return CompiledFormat(tuple(keys), "_response_header(h" in source, line)


def compile_positional(fmt: str) -> CompiledFormat:
    """The format over a tuple of the environ values it reads: what the
    access log queues at request time instead of the whole environ."""
    def at(key: str, keys: list[str]) -> str:
        if key not in keys:
            keys.append(key)
        return f"v[{keys.index(key)}]"
    return _compile(fmt, at)


def compile_format(fmt: str) -> Callable[..., str]:
    """Turn a gunicorn-style format into ``f(environ, s, n, h, d, w) -> line``."""
    return _compile(fmt, lambda key, keys: f"v.get({key!r})").line


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

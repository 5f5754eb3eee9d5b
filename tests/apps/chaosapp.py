"""The app the chaos tests and ``bench/reliability.py`` serve: every response
can be checked by the client, byte for byte.

Plain WSGI and nothing else, so prefork and gunicorn serve the same thing.

``GET /blob?size=N&seed=S[&delay=MS]``
    N bytes computed from S by :func:`blob` (the client computes the same
    bytes and compares).
``POST /echo[?delay=MS]``
    the request body, back as it came.

Every response carries ``Content-Length``, ``X-Body-Sha256`` (the digest of
the body the app read, for POST, or made, for GET), ``X-Body-Length`` and
``X-Worker-Pid`` (so a client knows which worker answered: the SIGKILL test
checks that only the killed worker's connections failed). ``delay`` keeps a
request in the app for that many milliseconds, so that signals find requests
in flight.

For deploys: with ``CHAOS_VERSION_FILE`` set, the import reads the version
from it (sent back as ``X-App-Version``) and then takes
``CHAOS_BOOT_DELAY`` seconds more, like an app with a slow import: the code a
worker serves is the one on disk when its import began.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterable
from urllib.parse import parse_qs

_PATTERN = bytes(range(256)) * 16     # 4 KiB, rotated per seed

VERSION = ""
if os.environ.get("CHAOS_VERSION_FILE"):
    with open(os.environ["CHAOS_VERSION_FILE"]) as _f:
        VERSION = _f.read().strip()
    time.sleep(float(os.environ.get("CHAOS_BOOT_DELAY") or 0))


def blob(size: int, seed: int) -> bytes:
    """``size`` bytes that depend on ``seed``: cheap to make on both sides,
    and a truncated or shifted body never matches another seed's."""
    start = seed % len(_PATTERN)
    ring = _PATTERN[start:] + _PATTERN[:start]
    whole, rest = divmod(size, len(ring))
    return ring * whole + ring[:rest]


def _query(environ: dict[str, object]) -> dict[str, int]:
    qs = parse_qs(str(environ.get("QUERY_STRING", "")))
    return {k: int(v[0]) for k, v in qs.items() if v and v[0].lstrip("-").isdigit()}


def app(environ: dict[str, object],
        start_response: Callable[..., object]) -> Iterable[bytes]:
    q = _query(environ)
    method, path = environ["REQUEST_METHOD"], environ["PATH_INFO"]
    if method == "POST" and path == "/echo":
        length = int(str(environ.get("CONTENT_LENGTH") or 0))
        stream = environ["wsgi.input"]
        body = stream.read(length) if length else b""   # type: ignore[attr-defined]
    elif method in ("GET", "HEAD") and path in ("/blob", "/"):
        body = blob(q.get("size", 13), q.get("seed", 0))
    else:
        start_response("404 Not Found", [("Content-Type", "text/plain"),
                                         ("Content-Length", "9")])
        return [b"not found"]
    if q.get("delay"):
        time.sleep(q["delay"] / 1000)
    start_response("200 OK", [
        ("Content-Type", "application/octet-stream"),
        ("Content-Length", str(len(body))),
        ("X-Body-Sha256", hashlib.sha256(body).hexdigest()),
        ("X-Body-Length", str(len(body))),
        ("X-Worker-Pid", str(os.getpid())),
        ("X-App-Version", VERSION),
    ])
    return [body]

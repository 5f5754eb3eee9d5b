"""A real prefork server for your own test suite.

    from prefork.testing import live_server

    def test_home_page():
        with live_server(app) as url:
            assert urllib.request.urlopen(url + "/").status == 200

The server binds 127.0.0.1 on a free port, runs in a child process with its
own workers, and is stopped (and waited for) when the block ends.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from .server import Server


@contextmanager
def live_server(app: Callable[..., Any], **settings: Any) -> Iterator[str]:
    settings.setdefault("bind", "127.0.0.1:0")
    settings.setdefault("workers", 1)
    settings.setdefault("loglevel", "warning")
    server = Server(app, **settings).start()
    try:
        yield server.url
    finally:
        server.stop()

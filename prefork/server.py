"""Run prefork from Python: in the foreground, or in the background of a
program that wants to stop it again (tests, embedding).

``prefork start`` and :func:`prefork.serve` both end up in
:class:`prefork.master.Master`; this module holds what they share.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import sockets
from .config import Config
from .log import setup_error_log

if TYPE_CHECKING:
    from .master import Master

log = logging.getLogger("prefork.error")


def setup_logging(cfg: Config) -> None:
    setup_error_log(cfg.loglevel, cfg.errorlog, cfg.syslog_addr, cfg.syslog_facility)


def _config(settings: dict[str, Any]) -> Config:
    if isinstance(settings.get("bind"), str):
        settings["bind"] = [settings["bind"]]
    return Config(settings)


class Server:
    """A master serving ``app`` with the given settings.

    ``run()`` serves in the foreground (main thread) until a signal stops it.
    ``start()`` binds the sockets, then runs the master in a child process and
    returns at once; ``stop()`` stops that child and waits for it. Use it as
    a context manager to be sure it is stopped.
    """

    def __init__(self, app: Callable[..., Any] | None = None, app_spec: str | None = None,
                 **settings: Any):
        self.cfg = _config(settings)
        self.app = app
        self.app_spec = app_spec
        self.listeners = sockets.bind_all(self.cfg)
        self.pid: int | None = None

    @property
    def addresses(self) -> list[str]:
        return [sockets.describe(s) for s in self.listeners]

    @property
    def url(self) -> str:
        return self.addresses[0]

    def _master(self) -> Master:
        from .master import Master
        return Master(self.cfg, self.app_spec, app=self.app, listeners=self.listeners)

    def run(self) -> int:
        setup_logging(self.cfg)
        return int(self._master().run())

    def start(self, ready_timeout: float = 30.0) -> Server:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.close(r)
                os.setsid()
                setup_logging(self.cfg)
                master = self._master()

                def tell_parent() -> None:
                    os.write(w, b"ready")
                    os.close(w)

                master.on_ready.append(tell_parent)
                code = master.run()
            finally:
                os._exit(code)
        os.close(w)
        self.pid = pid
        try:
            import select
            ready, _, _ = select.select([r], [], [], ready_timeout)
            if not ready or not os.read(r, 16):
                self.stop()
                raise RuntimeError("prefork did not become ready; see its log")
        finally:
            os.close(r)
        return self

    def stop(self, graceful: bool = True, timeout: float = 30.0) -> int | None:
        """Stop a server begun with start(); returns the master's exit status."""
        if self.pid is None:
            return None
        pid, self.pid = self.pid, None
        try:
            os.kill(pid, signal.SIGTERM if graceful else signal.SIGQUIT)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                for sock in self.listeners:
                    sock.close()
                return os.waitstatus_to_exitcode(status)
            time.sleep(0.02)
        os.killpg(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        for sock in self.listeners:
            sock.close()
        return os.waitstatus_to_exitcode(status)

    def __enter__(self) -> Server:
        if self.pid is None:
            self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def serve(app: Callable[..., Any], **settings: Any) -> int:
    """Serve ``app`` in the foreground until TERM/INT; returns the exit status.

    Settings are those of ``prefork.config.SETTINGS``, e.g.
    ``serve(app, bind="127.0.0.1:8000", workers=4, threads=8)``.
    """
    return Server(app, **settings).run()

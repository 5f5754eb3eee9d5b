"""Run prefork from Python: bind, build the worker, serve until stopped.

Until the master lands this runs one worker in the calling process, in the
foreground; ``prefork start`` and :func:`prefork.serve` both come through here.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable
from typing import Any

from . import sockets
from .config import Config
from .http.parser import Limits
from .worker import Worker, WorkerSettings

log = logging.getLogger("prefork.error")


def setup_logging(level: str) -> None:
    logger = logging.getLogger("prefork")
    if not any(getattr(h, "_prefork", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(
            "[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s", "%Y-%m-%d %H:%M:%S %z"))
        handler._prefork = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(level.upper())


def worker_settings(cfg: Config) -> WorkerSettings:
    return WorkerSettings(
        threads=cfg.threads,
        max_connections=cfg.max_connections,
        keepalive=cfg.keepalive,
        header_timeout=cfg.header_timeout,
        body_timeout=cfg.body_timeout,
        write_timeout=cfg.write_timeout,
        graceful_timeout=cfg.graceful_timeout,
        limits=Limits(request_line=cfg.limit_request_line, fields=cfg.limit_request_fields,
                      field_size=cfg.limit_request_field_size, body=cfg.limit_request_body),
        spool_threshold=cfg.spool_threshold,
        tmp_upload_dir=cfg.tmp_upload_dir or None,
        root_path=cfg.root_path,
        multiprocess=cfg.workers > 1,
    )


class Server:
    """A configured server. ``run()`` serves in the calling thread until stopped."""

    def __init__(self, app: Callable[..., Any], cfg: Config):
        self.app = app
        self.cfg = cfg
        self.listeners = [sockets.bind(addr, cfg.backlog) for addr in cfg.bind]
        self.worker = Worker(app, self.listeners, worker_settings(cfg))

    @property
    def addresses(self) -> list[str]:
        return [sockets.describe(s) for s in self.listeners]

    def run(self) -> None:
        if threading.current_thread() is threading.main_thread():
            self.worker.install_signals()
        for address in self.addresses:
            log.info("Listening at: %s", address)
        try:
            self.worker.run()
        finally:
            for sock in self.listeners:
                sock.close()
            log.info("Stopped")

    def stop(self, graceful: bool = True) -> None:
        self.worker.stop(graceful)


def serve(app: Callable[..., Any], **settings: Any) -> None:
    """Serve ``app`` until a signal (or :meth:`Server.stop`) stops it.

    Settings are those of ``prefork.config.SETTINGS``, e.g.
    ``serve(app, bind="127.0.0.1:8000", threads=4)``.
    """
    if isinstance(settings.get("bind"), str):
        settings["bind"] = [settings["bind"]]
    cfg = Config(settings)
    setup_logging(cfg.loglevel)
    Server(app, cfg).run()

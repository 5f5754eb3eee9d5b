"""A worker's life after fork, up to its exit status: everything the child
does, and nothing the master does.

The master forks and calls :func:`run_worker` with a :class:`WorkerBoot`
value: the listeners, the scoreboard slot, the configuration and hooks of
the worker's generation, and the master's descriptors the child must close.
The child resets the signal handlers it inherited, closes those
descriptors, drops privileges, loads the app (unless preloaded), runs the
``ready_path`` self-check when one is set, and serves until stopped.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .app import AppImportError, load_app
from .config import Config
from .daemon import drop_privileges
from .dump import install as install_dump
from .hooks import Hooks, ServerView, WorkerView
from .http.parser import Limits
from .http.proxy import Forwarding, Networks, RequestIds
from .log import dump_stacks_to_error_log
from .scoreboard import Scoreboard, Slot
from .supervisor import BOOT_ERROR
from .worker import Worker, WorkerSettings

log = logging.getLogger("prefork.error")


def worker_settings(cfg: Config) -> WorkerSettings:
    """The narrow settings object a worker reads, from the full configuration."""
    return WorkerSettings(
        threads=cfg.threads,
        max_connections=cfg.max_connections,
        keepalive=cfg.keepalive,
        header_timeout=cfg.header_timeout,
        body_timeout=cfg.body_timeout,
        body_min_rate=cfg.body_min_rate,
        write_timeout=cfg.write_timeout,
        graceful_timeout=cfg.graceful_timeout,
        limits=Limits(request_line=cfg.limit_request_line, fields=cfg.limit_request_fields,
                      field_size=cfg.limit_request_field_size, body=cfg.limit_request_body),
        spool_threshold=cfg.spool_threshold,
        buffer_memory=cfg.limit_buffer_memory,
        tmp_upload_dir=cfg.tmp_upload_dir or None,
        root_path=cfg.root_path,
        multiprocess=cfg.workers > 1,
        accesslog=cfg.accesslog,
        access_log_format=cfg.access_log_format,
        ready_path=cfg.ready_path,
        forwarding=Forwarding(Networks(cfg.forwarded_allow_ips), cfg.forwarded_headers,
                              cfg.secure_scheme_headers),
        proxy_protocol=cfg.proxy_protocol,
        proxy_allow=Networks(cfg.proxy_allow_ips),
        request_ids=RequestIds(cfg.request_id_header) if cfg.request_id_header else None,
    )


@dataclass
class WorkerBoot:
    """What a forked worker needs from the master, and what it must let go of."""

    cfg: Config
    app_spec: str | None
    app: Callable[..., Any] | None          # preloaded or embedded; else imported here
    listeners: list[socket.socket]
    board: Scoreboard
    slot: int
    number: int
    generation: int
    master_pid: int
    hooks: Hooks                            # the hooks of this worker's generation
    server: ServerView
    close_fds: list[int] = field(default_factory=list)
    close_socks: list[socket.socket] = field(default_factory=list)
    dump_dir: str = ""                      # where to answer ``prefork dump`` (DUMP_SIGNAL)


def run_worker(boot: WorkerBoot) -> int:
    """Runs in the forked child; returns its exit status."""
    signal.set_wakeup_fd(-1)
    # The master's handlers came along with the fork: until the worker
    # installs its own, a TERM would be queued in this copy of the master
    # and lost, and the booting worker would hang until graceful_timeout.
    # With the default action a worker stopped while booting just exits.
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    for sig in (signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU, signal.SIGWINCH, signal.SIGUSR1):
        signal.signal(sig, signal.SIG_IGN)
    # The master's own descriptors came along with the fork. A worker holding
    # the control socket would keep answering connects after the master is
    # gone, and one holding a control client would keep it from seeing EOF.
    for fd in boot.close_fds:
        try:
            os.close(fd)
        except OSError:
            pass
    for sock in boot.close_socks:
        sock.close()
    random.seed()
    cfg = boot.cfg
    try:
        drop_privileges(cfg.user, cfg.group)
    except (OSError, KeyError) as e:
        log.error("worker %d cannot switch to user %r / group %r: %s", os.getpid(),
                  cfg.user, cfg.group, e)
        return BOOT_ERROR
    # The master asks for stacks with USR2 (request_timeout) and ABRT
    # (heartbeat timeout). faulthandler writes them from C, so they come out
    # even when the loop is stuck holding the GIL; to the error log, not fd 2
    # (which is /dev/null under --daemon). An ABRT before the worker's own
    # handler is in (a hung import) dumps them too.
    dump_stacks_to_error_log(signal.SIGUSR2)
    set_title(f"prefork: worker {boot.number} [{boot.app_spec or 'demo'}]")
    me = WorkerView(os.getpid(), boot.number, boot.generation)
    hooks = boot.hooks
    hooks.call("post_fork", boot.server, me)
    slot = Slot(boot.board, boot.slot)
    app = boot.app
    if app is None:
        try:
            app = load_app(boot.app_spec)
        except AppImportError as e:
            log.error("worker %d: %s", os.getpid(), e)
            slot.set_message(str(e))
            return BOOT_ERROR
        except BaseException as e:
            log.exception("worker %d: the application failed to import", os.getpid())
            slot.set_message(f"{type(e).__name__}: {e}")
            return BOOT_ERROR
    worker = Worker(app, boot.listeners, worker_settings(cfg), slot=slot,
                    parent_pid=boot.master_pid)
    worker.dump_signal = signal.SIGUSR2
    worker.install_signals()
    if boot.dump_dir:
        install_dump(boot.dump_dir, worker.current)    # prefork dump

    def on_abort(*_: Any) -> None:
        # The stacks were already written on the USR2 sent just before.
        hooks.call("worker_abort", me)
        os._exit(1)

    def on_int(*_: Any) -> None:
        hooks.call("worker_int", me)
        worker.stop(graceful=False)

    signal.signal(signal.SIGABRT, on_abort)
    signal.signal(signal.SIGINT, on_int)
    signal.signal(signal.SIGQUIT, on_int)
    worker.pre_request = hooks.get("pre_request")
    worker.post_request = hooks.get("post_request")
    worker.hook_view = me
    hooks.call("post_worker_init", me)
    if cfg.ready_path:
        problem = worker.self_check(cfg.ready_path)
        if problem:
            log.error("worker %d is not ready: %s", os.getpid(), problem)
            slot.set_message(problem)
            return BOOT_ERROR
    if cfg.reload:      # development mode: watch the app's files (reloader.py)
        from .reloader import start_reloader
        start_reloader(cfg, boot.master_pid, boot.board)
    worker.run()
    hooks.call("worker_exit", boot.server, me)
    return 0


def set_title(title: str) -> None:
    try:
        import setproctitle
        setproctitle.setproctitle(title)
    except ImportError:
        pass

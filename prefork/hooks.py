"""Server hooks: callables named in the configuration, run at points of the
master's and the workers' lives.

A hook is given as ``"module:function"`` (TOML, env, CLI) or as a callable
(``prefork.serve(app, post_fork=fn)``). Hooks receive small read-only views,
never the master or worker objects themselves, so nothing internal becomes
public by accident. A hook that raises is logged and otherwise ignored: a bug
in a hook never takes the server down.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from .objref import ObjectNotFound, import_object

if TYPE_CHECKING:
    # The settings' types, not config.py: config imports this module for
    # the hook names.
    from ._settings import Settings

log = logging.getLogger("prefork.error")

# Every hook's name. The server calls hooks by these names (``hooks.call(
# "post_fork", ...)``), so mypy rejects a misspelt one; a misspelt one in the
# configuration is an unknown setting, or, in a gunicorn file, an error that
# names the closest hook.
HookName = Literal[
    "on_starting", "when_ready", "pre_fork", "post_fork", "post_worker_init",
    "worker_int", "worker_abort", "pre_request", "post_request", "child_exit",
    "worker_exit", "nworkers_changed", "on_reload", "on_exit",
]

# name -> what it is called with (for the docs)
HOOKS: dict[HookName, str] = {
    "on_starting": "(server) in the master, before the sockets are bound and workers forked",
    "when_ready": "(server) in the master, once every worker has booted",
    "pre_fork": "(server, worker) in the master, just before a worker is forked",
    "post_fork": "(server, worker) in the new worker, just after the fork",
    "post_worker_init": "(worker) in the worker, after the app is loaded, before serving",
    "worker_int": "(worker) in the worker, on INT or QUIT",
    "worker_abort": "(worker) in the worker, on ABRT (sent when it timed out)",
    "pre_request": "(worker, environ) in the worker thread, before the app is called",
    "post_request": "(worker, environ, status) in the worker thread, after the response",
    "child_exit": "(server, worker) in the master, when a worker process has exited",
    "worker_exit": "(server, worker) in the worker, just before it exits",
    "nworkers_changed": "(server, new_value, old_value) in the master, when the worker count changes",
    "on_reload": "(server) in the master, on HUP, before new workers are started",
    "on_exit": "(server) in the master, just before it exits",
}


@dataclass(frozen=True)
class ServerView:
    """What a hook may know about the master."""

    pid: int
    app: str
    workers: int
    generation: int
    bind: tuple[str, ...]


@dataclass(frozen=True)
class WorkerView:
    """What a hook may know about a worker."""

    pid: int
    number: int
    generation: int
    exit_code: int | None = None


def resolve_hook(value: object) -> Callable[..., Any] | None:
    """``"module:function"`` -> the function; a callable as is; "" or None -> None.

    Raises ValueError for a value that names no callable, ObjectNotFound
    for a module or function that does not exist, and whatever the
    module raises while it is imported.
    """
    if not value:
        return None
    if callable(value):
        return value
    module_name, sep, attr = str(value).partition(":")
    if not sep or not attr:
        raise ValueError("a hook is named as MODULE:FUNCTION")
    obj = import_object(module_name, attr)
    if not callable(obj):
        raise ValueError(f"{value} is not callable (got {type(obj).__name__})")
    return obj


class Hooks:
    """The resolved hooks; ``hooks.call("post_fork", server, worker)``."""

    def __init__(self, cfg: Settings):
        self._fns: dict[HookName, Callable[..., Any]] = {}
        for name in HOOKS:
            try:
                fn = resolve_hook(getattr(cfg, name))
            except Exception as e:
                # A wrong name says so itself; an error raised inside the
                # hook's module is named by its type, so that "No module
                # named 'x'" from the module's own imports reads as such.
                why = str(e) if isinstance(e, ObjectNotFound | ValueError) \
                    else f"{type(e).__name__}: {e}"
                raise ValueError(f"hook {name}={getattr(cfg, name)!r} cannot be loaded: "
                                 f"{why}") from e
            if fn is not None:
                self._fns[name] = fn

    def get(self, name: HookName) -> Callable[..., Any] | None:
        if name not in HOOKS:
            raise KeyError(f"no hook is named {name!r}")
        return self._fns.get(name)

    def call(self, name: HookName, *args: Any) -> None:
        fn = self.get(name)
        if fn is None:
            return
        try:
            fn(*args)
        except Exception:
            log.exception("the %s hook raised; carrying on", name)

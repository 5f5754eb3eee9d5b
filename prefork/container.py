"""What changes when prefork is the first process of a container (PID 1).

With no init in the container, the kernel makes prefork's master the init
of its PID namespace, and three things follow:

- Every process in the container whose parent dies is re-parented to the
  master: a program a view started in the background, a daemon it forked.
  The master reaps whatever ``waitpid(-1)`` hands it; a pid that is not a
  worker is reaped quietly (see ``Master._reap``).
- The kernel gives init no default signal actions: a signal without a
  handler is dropped, not acted on. The master has handlers for every
  signal it obeys; :func:`stop_on_early_signals` covers the start-up
  before it installs them (config, bind, a ``preload`` import), so that
  ``docker stop`` or a pod deletion during it is not ignored until the
  KILL.
- When init exits, the kernel kills everything left in the namespace. A
  master that hands over to another one (USR2, or HUP with ``preload``) or
  detaches (``daemon``) would take the container down with it, so those
  are refused with a reason (:func:`why_no_upgrade`, :func:`why_no_daemon`).
"""

from __future__ import annotations

import os
import signal
from typing import Any

EARLY_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)


def is_init() -> bool:
    """Whether this process is PID 1 of its PID namespace."""
    return os.getpid() == 1


def stop_on_early_signals() -> None:
    """As PID 1: until the master installs its own handlers, TERM, INT and
    QUIT stop start-up at once (nothing serves yet, so nothing is lost).

    Elsewhere the default actions do that already and nothing is changed.
    """
    if not is_init():
        return

    def stop(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    for sig in EARLY_SIGNALS:
        signal.signal(sig, stop)


def why_no_daemon() -> str | None:
    """Why ``daemon`` cannot work here (as PID 1), or None."""
    if not is_init():
        return None
    return ("daemon = true cannot work as PID 1 (the container's first process): the "
            "process that detaches is init, and the container stops when it exits; "
            "run prefork in the foreground")


def why_no_upgrade() -> str | None:
    """Why an in-place upgrade (USR2) cannot work here (as PID 1), or None."""
    if not is_init():
        return None
    return ("an in-place upgrade cannot work as PID 1 (the container's first process): the "
            "old master is init, and the kernel stops the whole container when it retires; "
            "roll out a new container instead, or reload the workers with HUP (no preload)")

"""Threads that leave signals to the main thread.

The kernel delivers a process-directed signal to any thread that does not
block it, and Python runs its handlers only in the main thread. If ABRT (say)
lands on a pool thread while the main thread is asleep, the main thread is
not interrupted and the handler waits for as long as the sleep lasts. Every
thread prefork starts therefore blocks the signals prefork handles, so they
reach the main thread, which wakes at once.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from typing import Any

HANDLED = {signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGUSR1,
           signal.SIGUSR2, signal.SIGABRT, signal.SIGALRM, signal.SIGWINCH, signal.SIGTTIN,
           signal.SIGTTOU, signal.SIGCHLD}


def start_thread(target: Callable[..., Any], name: str, args: tuple[Any, ...] = ()
                 ) -> threading.Thread:
    """Start a daemon thread with HANDLED blocked (it inherits the mask set here)."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED)
    try:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        thread.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
    return thread

"""Threads that leave signals to the main thread.

The kernel delivers a process-directed signal to any thread that does not
block it, and Python runs its handlers only in the main thread. A worker's
main thread waits in epoll on the signal wakeup descriptor
(``signal.set_wakeup_fd``), so a signal caught by any thread wakes it at
once; prefork's own helper threads (the access-log writer, the reloader)
block the signals prefork handles all the same, so none of them is ever
interrupted for one.

The pool threads that run the application block nothing: a thread's mask
is kept across fork and exec, and a program a view starts with
``subprocess`` would inherit it — with TERM blocked, ``Popen.terminate()``
does nothing. Their signals are handled like everyone else's, through the
wakeup descriptor.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from typing import Any

HANDLED = {signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGUSR1,
           signal.SIGUSR2, signal.SIGABRT, signal.SIGALRM, signal.SIGWINCH, signal.SIGTTIN,
           signal.SIGTTOU, signal.SIGCHLD}


def start_thread(target: Callable[..., Any], name: str, args: tuple[Any, ...] = (),
                 block_signals: bool = True) -> threading.Thread:
    """Start a daemon thread; with ``block_signals``, with HANDLED blocked (it
    inherits the mask set here). Threads that run the app pass False."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK if block_signals else signal.SIG_UNBLOCK,
                                 HANDLED)
    try:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        thread.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
    return thread

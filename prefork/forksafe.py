"""Let go of state that must not be shared across a fork, in the master,
before the first worker is forked.

Only an application that lives in the master — ``preload``, an app given to
:func:`prefork.serve`, ``manage.py prefork`` — can have opened anything. A
database connection opened while importing (a query at module level, a
system check, a cache warmed at start-up) is one socket or one sqlite handle;
after the fork every worker holds the same one, and their requests interleave
on it: answers go to the wrong worker, sqlite's locks and journal go wrong.
So the master closes such connections before forking, and each worker opens
its own on first use, as it would have without ``preload``.

The libraries are looked up in ``sys.modules``: a library the application
did not import is never imported here. What each step does, and what Python
already takes care of, is listed in docs/django.md ("Fork safety").
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

log = logging.getLogger("prefork.error")


def _django_databases() -> list[str]:
    """Close every Django database connection this thread opened, and the
    connection pools of the backends that have one (Django >= 5.1)."""
    from django.db import connections

    closed = []
    for conn in connections.all(initialized_only=True):
        if conn.connection is not None:
            closed.append(f"database {conn.alias!r}")
        conn.close()
        # PostgreSQL's and Oracle's pools (OPTIONS "pool"), keyed by alias
        # (and user): only one that exists, since asking for ``conn.pool``
        # would make one.
        pools = getattr(conn, "_connection_pools", None) or {}
        if any(key == conn.alias or (isinstance(key, tuple) and key[0] == conn.alias)
               for key in pools):
            conn.close_pool()
            closed.append(f"connection pool of database {conn.alias!r}")
    return closed


def _django_caches() -> list[str]:
    """Close the cache clients that were created (memcached and redis hold
    sockets; the local-memory cache closes to nothing)."""
    from django.core.cache import caches
    from django.core.cache.backends.base import BaseCache

    closed = []
    for cache in caches.all(initialized_only=True):
        if type(cache).close is not BaseCache.close:     # not a no-op
            cache.close()
            closed.append(f"cache {type(cache).__name__}")
    return closed


# (module that must already be imported, what to do) in order.
STEPS: list[tuple[str, Callable[[], list[str]]]] = [
    ("django.db", _django_databases),
    ("django.core.cache", _django_caches),
]


def before_fork() -> list[str]:
    """Run each step whose library the application imported; return what was
    closed, for the log. A step that fails is logged and the others still run:
    a worker can open a fresh connection, so a failure here never stops start-up."""
    done: list[str] = []
    for module, step in STEPS:
        if module not in sys.modules:
            continue
        try:
            done += step()
        except Exception as e:
            # An app imported django.db without configuring settings, say.
            log.debug("fork safety: %s skipped: %s: %s", module, type(e).__name__, e)
    if done:
        log.info("Closed before forking the workers: %s", ", ".join(done))
    return done

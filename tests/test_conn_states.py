"""The worker's connection lifecycle (prefork.worker.ConnState): which state
may follow which, and the bookkeeping done on the way (the count of unread
connections, the body clock). End to end, the same paths are exercised by
tests/e2e/test_http.py and tests/hostile/."""

from __future__ import annotations

import inspect
import socket
import sys

import pytest

from prefork.worker import ARMED, Conn, ConnState, Phase, Worker, WorkerSettings

pytestmark = pytest.mark.timeout(10)
C = ConnState


@pytest.fixture
def worker_and_conn():
    a, b = socket.socketpair()
    worker = Worker(lambda e, s: [], [], WorkerSettings(threads=1))
    conn = Conn(a, ("", ""), {}, worker.settings, 0.0)
    worker.conns[conn.fd] = conn
    worker.unread = 1
    yield worker, conn
    a.close()
    b.close()


def test_a_request_takes_a_new_connection_to_the_pool_and_out_of_the_unread_count(worker_and_conn):
    worker, conn = worker_and_conn
    conn.body_since = 5.0
    worker._enter(conn, C.OWNED)
    assert conn.state is C.OWNED and worker.unread == 0 and conn.body_since == 0.0
    worker._enter(conn, C.IDLE)
    worker._enter(conn, C.READING)
    worker._enter(conn, C.OWNED)
    assert worker.unread == 0


@pytest.mark.parametrize("path", [
    [C.LINGERING, C.OWNED],          # an answered error never serves again
    [C.OWNED, C.NEW],                # NEW is only the start
    [C.CLOSED, C.IDLE],              # nothing comes after CLOSED
    [C.LINGERING, C.DRAINING],
    [C.OWNED, C.READING, C.IDLE],    # a half-received request is not idle
])
def test_transitions_outside_the_table_are_refused(worker_and_conn, path):
    worker, conn = worker_and_conn
    *before, last = path
    for state in before:
        worker._enter(conn, state)
    with pytest.raises(AssertionError):
        worker._enter(conn, last)


def test_every_state_but_owned_and_closed_belongs_to_the_loop():
    assert ARMED == set(ConnState) - {C.OWNED, C.CLOSED}


def test_a_graceful_stop_drains_idle_connections_and_leaves_the_rest(worker_and_conn):
    worker, conn = worker_and_conn
    a, b = socket.socketpair()
    busy = Conn(a, ("", ""), {}, worker.settings, 0.0)
    worker.conns[busy.fd] = busy
    worker.unread += 1
    worker._enter(busy, C.OWNED)
    worker.stop()
    worker.ep = None
    worker._update_accepting = lambda rejoin=False: None     # no epoll in this test
    worker._begin_graceful_stop()
    assert conn.state is C.DRAINING and worker.unread == 0
    assert busy.state is C.OWNED       # answered first; its grace starts then
    a.close()
    b.close()


def test_a_stop_only_moves_the_worker_forward():
    worker = Worker(lambda e, s: [], [], WorkerSettings(threads=1))
    assert worker.phase is Phase.RUNNING and not worker.stop_requested()
    worker.stop(graceful=True)
    assert worker.phase is Phase.GRACEFUL_STOP and worker.stop_requested()
    worker.stop(graceful=False)
    assert worker.phase is Phase.FAST_STOP
    worker.stop(graceful=True)       # a TERM after INT does not slow the stop down
    assert worker.phase is Phase.FAST_STOP


@pytest.mark.parametrize("where", ["self.phase = GRACEFUL_STOP", "if self._fast_stop:"])
def test_a_fast_stop_that_lands_inside_a_graceful_one_wins(where):
    # The INT handler runs between two bytecodes of the main thread, which
    # may be inside stop(graceful=True) (the TERM handler, or the beat that
    # found the master gone): the worker must end up stopping fast.
    worker = Worker(lambda e, s: [], [], WorkerSettings(threads=1))
    source = inspect.getsource(Worker.stop).splitlines()
    first = Worker.stop.__code__.co_firstlineno
    line = first + next(i for i, text in enumerate(source) if where in text)
    code = Worker.stop.__code__
    interrupted = []

    def local(frame, event, arg):
        if event == "line" and frame.f_lineno == line and not interrupted:
            interrupted.append(True)
            worker.stop(graceful=False)         # the INT handler, right here
        return local

    def tracer(frame, event, arg):
        return local if frame.f_code is code and not interrupted else None

    sys.settrace(tracer)
    try:
        worker.stop(graceful=True)
    finally:
        sys.settrace(None)
    assert interrupted and worker.phase is Phase.FAST_STOP

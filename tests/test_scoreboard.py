"""The scoreboard between real processes: what the master reads is what a worker wrote."""

from __future__ import annotations

import os
import signal
import struct
import time

from prefork.scoreboard import _OFF_SEQ, FREE, READ_PATIENCE, READY, STOPPING, Scoreboard, Slot

READS = 100_000
# The reads stop here if they take longer (a loaded machine), and this many
# must have been checked for the test to prove anything.
READ_SECONDS = 10.0
MIN_CHECKED = 5_000


def _request(k: int) -> str:
    # Lengths vary, so half of a new text over an old one shows.
    return f"GET /{k}/" + "x" * (k % 80)


def _write_forever(board: Scoreboard) -> None:
    slot = Slot(board, 0)
    k = 0
    while True:
        k += 1
        slot.beat(float(k), k, k % 1000, float(k), _request(k))
        if k % 7 == 0:
            slot.set_message(chr(ord("a") + k % 26) * (40 + k % 56))
        # Some time between two writes, as a worker has (it beats every
        # 0.2 s): a writer that is always mid-write makes every read wait
        # for READ_PATIENCE, and the test take minutes, without testing more.
        sum(range(200))


def test_a_reader_never_sees_half_of_a_beat_or_a_message():
    # A worker wrote a beat's fields one by one while the master unpacked
    # the slot at once: it saw one request's text with another's start, or
    # half of a text.
    board = Scoreboard(1)
    board.claim(os.getpid(), 1, 1)
    Slot(board, 0).set_state(READY)
    pid = os.fork()
    if pid == 0:
        try:
            _write_forever(board)
        finally:
            os._exit(0)
    torn: list[str] = []
    gave_up = checked = 0
    try:
        time.sleep(0.05)
        stop_at = time.monotonic() + READ_SECONDS
        for _ in range(READS):
            if time.monotonic() > stop_at:
                break
            start = time.perf_counter()
            v = board.read(0)
            if time.perf_counter() - start >= READ_PATIENCE:
                # The contract's one exception: the writer was held (here,
                # preempted on a loaded machine) in a write for that long.
                gave_up += 1
                continue
            k = v.requests
            if k == 0:
                continue
            checked += 1
            if (v.heartbeat, v.oldest_start, v.in_flight, v.oldest_request) != (
                    float(k), float(k), k % 1000, _request(k)):
                torn.append(f"requests={k} heartbeat={v.heartbeat} oldest={v.oldest_start} "
                            f"in_flight={v.in_flight} request={v.oldest_request!r}")
            if v.message and len(set(v.message)) != 1:
                torn.append(f"message={v.message!r}")
            if v.state != READY:
                torn.append(f"state={v.state}")
        last = board.read(0).requests
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    assert last > 1000 and checked >= MIN_CHECKED and gave_up < checked // 10, \
        f"the test proves nothing: {checked} reads checked, {gave_up} gave up"
    assert torn == [], f"{len(torn)} torn reads of {checked}, e.g. {torn[:3]}"


def test_the_count_never_goes_back_and_a_live_slot_never_looks_free():
    # struct.pack_into zero-fills before it writes: a count read as 0 at
    # both ends of a copy let torn copies through, and a state byte read as
    # FREE (0) would let the master claim a live worker's slot.
    board = Scoreboard(1)
    board.claim(os.getpid(), 1, 1)
    Slot(board, 0).set_state(READY)
    pid = os.fork()
    if pid == 0:
        try:
            slot = Slot(board, 0)
            while True:
                slot.set_state(STOPPING)
                slot.set_state(READY)
        finally:
            os._exit(0)
    went_back = looked_free = 0
    try:
        last = 0
        for _ in range(300_000):
            (seq,) = struct.unpack_from("=Q", board.mem, _OFF_SEQ)
            went_back += seq < last
            last = seq
            looked_free += board._state(0) == FREE
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    assert last > 10_000, "the writer did not run: the test proves nothing"
    assert (went_back, looked_free) == (0, 0)


def test_a_reader_of_a_slot_stuck_mid_write_returns_rather_than_hangs():
    board = Scoreboard(1)
    board.claim(123, 1, 1)
    slot = Slot(board, 0)
    slot._begin()                       # a worker stopped in the middle of a write
    start = time.monotonic()
    assert board.read(0).pid == 123
    assert time.monotonic() - start < 1.0

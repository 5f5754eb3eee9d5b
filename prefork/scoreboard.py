"""The scoreboard: one shared-memory slot per worker, written by the worker, read
by the master (and by ``prefork status``).

An anonymous ``MAP_SHARED`` mmap is created before the first fork, so every
worker inherits it. Each worker writes only its own slot; the master only
reads, except to claim and free slots. No file system, no pipes to poll: a
heartbeat is a few stores to memory, so a slow disk can never make a healthy worker
look dead (gunicorn's heartbeat file can, #1863, #1194).

A worker writes its fields one by one (a beat is five stores) while a reader
unpacks the whole slot at once: unguarded, it could see the new oldest
request's text with the old one's start, or half of a text. So each slot is
a seqlock: its last 8 bytes count the worker's writes and are odd while one
is under way; :meth:`Scoreboard.read` retries until the count was the same
and even before and after its copy. There is one writer per slot, the
worker's loop thread (never a signal handler, which could nest two writes);
the master writes only a slot no worker uses yet, and the pid, one aligned
store. So the count needs no atomic increment.

The count, the state byte and the pid are stored whole, never with
``struct.pack_into``: it zero-fills its target before it writes the value,
so a reader can catch the zero in between. A count read as 0 at both ends
of a torn copy passed for an even, unchanged count (a few torn reads in
10^5 against a busy writer), and a state byte read as FREE let the master
claim a slot a live worker was writing. x86 keeps stores, and loads,
in program order, which is what a seqlock needs; a weakly ordered CPU could
in theory let a reader on another core see the count before the fields.
"""

from __future__ import annotations

import mmap
import struct
import time
from dataclasses import dataclass
from typing import Any

FREE, BOOTING, READY, STOPPING = 0, 1, 2, 3
STATE_NAMES = {FREE: "free", BOOTING: "booting", READY: "ready", STOPPING: "stopping"}

# What a worker counts for the metrics (prefork/metrics.py), in this order
# after the fixed fields: each a monotonic 64-bit count, summed over the
# worker's threads at each beat. Requests are those that reached the
# application, by status class (no_status: the client left before one was
# sent) and by method; their latency in LATENCY_BOUNDS buckets (seconds,
# the last one +Inf) and its sum in microseconds; the response bytes sent;
# the request bytes received; connections accepted; requests the server
# answered itself, by REJECT_REASONS.
METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "other")
LATENCY_BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
REJECT_REASONS = ("bad_request", "timeout", "too_large", "overload", "proxy", "error")
C_STATUS = 0                                    # 1xx .. 5xx, then no_status
C_METHOD = C_STATUS + 6
C_LATENCY = C_METHOD + len(METHODS)             # len(LATENCY_BOUNDS) + 1 buckets
C_LATENCY_SUM_US = C_LATENCY + len(LATENCY_BOUNDS) + 1
C_BYTES_OUT = C_LATENCY_SUM_US + 1
C_BYTES_IN = C_BYTES_OUT + 1
C_ACCEPTED = C_BYTES_IN + 1
C_REJECTED = C_ACCEPTED + 1
N_COUNTERS = C_REJECTED + len(REJECT_REASONS)

# pid, worker number, generation, state, pad | booted_at (wall), heartbeat (monotonic),
# requests, in-flight, responses with a 5xx status | oldest in-flight start (monotonic) |
# "METHOD /path" of it | a message from the worker (why it failed to boot) |
# connections open (at _OFF_CONNS) | the counters (at _OFF_COUNTERS) |
# (the seqlock count, at _OFF_SEQ)
_LAYOUT = struct.Struct("=iIIB3x d d Q I I d 96s 96s")
SLOT_SIZE = 1024
_OFF_CONNS = 248
_OFF_COUNTERS = 256
_COUNTERS = struct.Struct(f"={N_COUNTERS}Q")
_OFF_SEQ = SLOT_SIZE - 8
assert _LAYOUT.size <= _OFF_CONNS and _OFF_COUNTERS + _COUNTERS.size <= _OFF_SEQ
# A reader that finds a write under way tries again at once READ_SPINS times
# (a write takes a few microseconds), then, in case the worker was preempted
# in the middle of one, every millisecond until READ_PATIENCE has passed; then
# it takes the last copy (a worker stopped mid-write, by SIGSTOP or a
# debugger): the master must never hang on a slot. 1,000 spins alone were
# not enough for a worker preempted on a busy 2-core machine.
READ_SPINS = 100
READ_PATIENCE = 0.05

_OFF_PID = 0
_OFF_STATE = 12
_OFF_HEARTBEAT = 24
_OFF_REQUESTS = 32
_OFF_INFLIGHT = 40
_OFF_ERRORS = 44
_OFF_OLDEST = 48
_OFF_OLDEST_REQ = 56
_OFF_MESSAGE = 152
_D = struct.Struct("=d")
_Q = struct.Struct("=Q")
_I = struct.Struct("=I")


@dataclass(frozen=True)
class SlotView:
    """A snapshot of one slot, for the master's checks and for status output."""

    index: int
    pid: int
    number: int
    generation: int
    state: int
    booted_at: float
    heartbeat: float
    requests: int
    in_flight: int
    errors: int
    oldest_start: float
    oldest_request: str
    message: str
    connections: int = 0
    counters: tuple[int, ...] = (0,) * N_COUNTERS

    @property
    def state_name(self) -> str:
        return STATE_NAMES.get(self.state, "?")


def _view(index: int, fields: tuple[Any, ...], conns: int, counters: tuple[int, ...]) -> SlotView:
    pid, number, gen, state, booted, beat, reqs, inflight, errors, oldest, oreq, msg = fields
    return SlotView(index, pid, number, gen, state, booted, beat, reqs, inflight, errors, oldest,
                    oreq.rstrip(b"\0").decode("latin-1"),
                    msg.rstrip(b"\0").decode("utf-8", "replace"), conns, counters)


class Scoreboard:
    """``capacity`` slots in shared memory. Create it before forking."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.mem = mmap.mmap(-1, capacity * SLOT_SIZE, flags=mmap.MAP_SHARED)
        # 64-bit words, for the seqlock counts: an item is loaded and stored
        # in one aligned move (see the module's docstring).
        self.words = memoryview(self.mem).cast("Q")

    # -- master side -------------------------------------------------------

    def claim(self, pid: int, number: int, generation: int) -> int:
        """Take a free slot for a new worker; raise RuntimeError when full."""
        for i in range(self.capacity):
            if self._state(i) == FREE:
                _LAYOUT.pack_into(self.mem, i * SLOT_SIZE, pid, number, generation, BOOTING,
                                  time.time(), time.monotonic(), 0, 0, 0, 0.0, b"", b"")
                return i
        raise RuntimeError(f"the scoreboard is full ({self.capacity} workers)")

    def set_pid(self, index: int, pid: int) -> None:
        at = index * SLOT_SIZE + _OFF_PID
        self.mem[at:at + 4] = pid.to_bytes(4, "little", signed=True)

    def free(self, index: int) -> None:
        self.mem[index * SLOT_SIZE:(index + 1) * SLOT_SIZE] = bytes(SLOT_SIZE)

    def _state(self, index: int) -> int:
        return self.mem[index * SLOT_SIZE + _OFF_STATE]

    def read(self, index: int) -> SlotView:
        """A consistent copy of the slot: all of each write or none of it
        (unless a write stays under way for READ_PATIENCE)."""
        mem, words, base = self.mem, self.words, index * SLOT_SIZE
        seq_at = (base + _OFF_SEQ) // 8
        unpack, unpack_counters = _LAYOUT.unpack_from, _COUNTERS.unpack_from
        deadline = 0.0
        while True:
            for _ in range(READ_SPINS):
                before = words[seq_at]
                fields = unpack(mem, base)
                conns = _I.unpack_from(mem, base + _OFF_CONNS)[0]
                counters = unpack_counters(mem, base + _OFF_COUNTERS)
                if not before & 1 and words[seq_at] == before:
                    return _view(index, fields, conns, counters)
            now = time.monotonic()
            deadline = deadline or now + READ_PATIENCE
            if now >= deadline:
                return _view(index, fields, conns, counters)    # stuck mid-write: the last copy
            time.sleep(0.001)

    def slots(self) -> list[SlotView]:
        return [self.read(i) for i in range(self.capacity) if self._state(i) != FREE]

    def close(self) -> None:
        self.words.release()
        self.mem.close()


class Slot:
    """A worker's handle on its own slot. Each method is one write under the
    slot's seqlock: a reader sees all of it or none of it. Only the worker
    that owns the slot may call them (one writer)."""

    __slots__ = ("mem", "base", "words", "seq_at")

    def __init__(self, board: Scoreboard, index: int):
        self.mem = board.mem
        self.base = index * SLOT_SIZE
        self.words = board.words
        self.seq_at = (self.base + _OFF_SEQ) // 8

    def _begin(self) -> int:
        """Make the count odd (a write is under way); returns it."""
        seq: int = self.words[self.seq_at] + 1
        self.words[self.seq_at] = seq
        return seq

    def _end(self, seq: int) -> None:
        self.words[self.seq_at] = seq + 1

    def set_state(self, state: int) -> None:
        seq = self._begin()
        self.mem[self.base + _OFF_STATE] = state     # one byte, never 0 (FREE) on the way
        self._end(seq)

    def set_message(self, text: str) -> None:
        raw = text.encode("utf-8", "replace")[:96]
        seq = self._begin()
        self.mem[self.base + _OFF_MESSAGE:self.base + _OFF_MESSAGE + 96] = raw.ljust(96, b"\0")
        self._end(seq)

    def beat(self, now: float, requests: int, in_flight: int, oldest_start: float,
             oldest_request: str, errors: int = 0, connections: int = 0,
             counters: list[int] | None = None) -> None:
        mem, base = self.mem, self.base
        raw = oldest_request.encode("latin-1", "replace")[:96]
        seq = self._begin()
        if counters is not None:
            _COUNTERS.pack_into(mem, base + _OFF_COUNTERS, *counters)
        _I.pack_into(mem, base + _OFF_CONNS, connections)
        _Q.pack_into(mem, base + _OFF_REQUESTS, requests)
        _I.pack_into(mem, base + _OFF_INFLIGHT, in_flight)
        _I.pack_into(mem, base + _OFF_ERRORS, errors & 0xFFFFFFFF)
        _D.pack_into(mem, base + _OFF_OLDEST, oldest_start)
        mem[base + _OFF_OLDEST_REQ:base + _OFF_OLDEST_REQ + 96] = raw.ljust(96, b"\0")
        _D.pack_into(mem, base + _OFF_HEARTBEAT, now)
        self._end(seq)

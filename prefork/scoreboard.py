"""The scoreboard: one shared-memory slot per worker, written by the worker, read
by the master (and by ``prefork status``).

An anonymous ``MAP_SHARED`` mmap is created before the first fork, so every
worker inherits it. Each worker writes only its own slot; the master only
reads, except to claim and free slots. No file system, no pipes to poll: a
heartbeat is one 8-byte store, so a slow disk can never make a healthy worker
look dead (gunicorn's heartbeat file can, #1863, #1194).

Fields are naturally aligned 8-byte values where they matter (heartbeat,
counters, the oldest request's start), so a reader never sees half of one.
"""

from __future__ import annotations

import mmap
import struct
import time
from dataclasses import dataclass

FREE, BOOTING, READY, STOPPING = 0, 1, 2, 3
STATE_NAMES = {FREE: "free", BOOTING: "booting", READY: "ready", STOPPING: "stopping"}

# pid, worker number, generation, state, pad | booted_at (wall), heartbeat (monotonic),
# requests, in-flight, responses with a 5xx status | oldest in-flight start (monotonic) |
# "METHOD /path" of it | a message from the worker (why it failed to boot)
_LAYOUT = struct.Struct("=iIIB3x d d Q I I d 96s 96s")
SLOT_SIZE = 256
assert _LAYOUT.size <= SLOT_SIZE

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
_B = struct.Struct("=B")


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

    @property
    def state_name(self) -> str:
        return STATE_NAMES.get(self.state, "?")


class Scoreboard:
    """``capacity`` slots in shared memory. Create it before forking."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.mem = mmap.mmap(-1, capacity * SLOT_SIZE, flags=mmap.MAP_SHARED)

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
        struct.pack_into("=i", self.mem, index * SLOT_SIZE + _OFF_PID, pid)

    def free(self, index: int) -> None:
        self.mem[index * SLOT_SIZE:(index + 1) * SLOT_SIZE] = bytes(SLOT_SIZE)

    def _state(self, index: int) -> int:
        return self.mem[index * SLOT_SIZE + _OFF_STATE]

    def read(self, index: int) -> SlotView:
        pid, number, gen, state, booted, beat, reqs, inflight, errors, oldest, oreq, msg = \
            _LAYOUT.unpack_from(self.mem, index * SLOT_SIZE)
        return SlotView(index, pid, number, gen, state, booted, beat, reqs, inflight, errors,
                        oldest,
                        oreq.rstrip(b"\0").decode("latin-1"),
                        msg.rstrip(b"\0").decode("utf-8", "replace"))

    def slots(self) -> list[SlotView]:
        return [self.read(i) for i in range(self.capacity) if self._state(i) != FREE]

    def close(self) -> None:
        self.mem.close()


class Slot:
    """A worker's handle on its own slot."""

    __slots__ = ("mem", "base")

    def __init__(self, board: Scoreboard, index: int):
        self.mem = board.mem
        self.base = index * SLOT_SIZE

    def set_state(self, state: int) -> None:
        _B.pack_into(self.mem, self.base + _OFF_STATE, state)

    def set_message(self, text: str) -> None:
        raw = text.encode("utf-8", "replace")[:96]
        self.mem[self.base + _OFF_MESSAGE:self.base + _OFF_MESSAGE + 96] = raw.ljust(96, b"\0")

    def beat(self, now: float, requests: int, in_flight: int, oldest_start: float,
             oldest_request: str, errors: int = 0) -> None:
        mem, base = self.mem, self.base
        _Q.pack_into(mem, base + _OFF_REQUESTS, requests)
        _I.pack_into(mem, base + _OFF_INFLIGHT, in_flight)
        _I.pack_into(mem, base + _OFF_ERRORS, errors & 0xFFFFFFFF)
        _D.pack_into(mem, base + _OFF_OLDEST, oldest_start)
        raw = oldest_request.encode("latin-1", "replace")[:96]
        mem[base + _OFF_OLDEST_REQ:base + _OFF_OLDEST_REQ + 96] = raw.ljust(96, b"\0")
        _D.pack_into(mem, base + _OFF_HEARTBEAT, now)

"""``prefork dump``: every worker's threads, their stacks and the request
each one serves, taken while everything goes on.

The master owns a private directory (made at start, given to the workers'
user). On the control socket's ``dump`` command it sends DUMP_SIGNAL to each
live worker and waits, off its loop, for one file per worker there. A
worker's handler runs in its main thread between two turns of the loop (a
few milliseconds), writes ``<pid>.json`` by rename, and the loop goes on;
pool threads are only read, never stopped. A worker that does not answer
within DUMP_WAIT is listed as missing (stuck in C code without the GIL,
or gone), which is itself the answer an operator needs.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

# A real-time signal: it has no other meaning to anyone, and USR2 already
# means "stacks to the error log" (the step before an abort).
DUMP_SIGNAL = signal.SIGRTMIN + 1
DUMP_WAIT = 2.0                 # seconds the master waits for every worker's answer


def _is_pool(name: str) -> bool:
    """A pool thread is named prefork-N (N its index in Worker.current)."""
    return name.startswith("prefork-") and name[8:].isdigit()


def thread_dump(current: list[Any] | None = None) -> dict[str, Any]:
    """This process's threads: name, what it serves (from ``current``, the
    worker's per-pool-thread (start, head) or None, indexed by the number
    in the thread name ``prefork-N``), and its stack, innermost call last."""
    frames = sys._current_frames()
    now = time.monotonic()
    threads = []
    for t in threading.enumerate():
        frame = frames.get(t.ident or -1)
        request = None
        if current is not None and _is_pool(t.name):
            index = int(t.name.removeprefix("prefork-"))
            slot = current[index] if index < len(current) else None
            if slot is not None:
                start, head = slot
                request = {"method": head.method, "target": head.target[:500],
                           "age": round(now - start, 3)}
        stack = traceback.format_stack(frame) if frame is not None else []
        while stack and __file__ in stack[-1]:
            stack.pop()         # the handler's own frames, in the thread it interrupted
        threads.append({
            "name": t.name,
            "main": t is threading.main_thread(),
            "pool": _is_pool(t.name),
            "request": request,
            "stack": stack,
        })
    return {"pid": os.getpid(), "threads": threads}


def write_dump(directory: str, current: list[Any] | None = None) -> None:
    """The handler's work: this process's dump into ``directory``, whole or
    not at all (a rename). Never raises: it runs in a signal handler."""
    try:
        data = json.dumps(thread_dump(current))
        path = os.path.join(directory, f"{os.getpid()}.json")
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            f.write(data)
        os.replace(path + ".tmp", path)
    except Exception:       # a full disk, a directory gone: no dump, the worker goes on
        pass


def install(directory: str, current: list[Any]) -> None:
    """In a worker: answer DUMP_SIGNAL with a dump of its threads."""
    signal.signal(DUMP_SIGNAL, lambda *_: write_dump(directory, current))


@dataclass
class _Waiting:
    client: Any                 # a control.ControlClient
    workers: dict[int, int]     # pid -> worker number
    deadline: float


@dataclass
class Dumps:
    """The master's side: the directory, and the dump commands under way."""

    directory: str = ""
    waiting: list[_Waiting] = field(default_factory=list)

    def open(self, uid: int = -1, gid: int = -1) -> None:
        self.directory = tempfile.mkdtemp(prefix="prefork-dump-")
        if uid != -1 or gid != -1:
            os.chown(self.directory, uid, gid)    # the workers write there as their user

    def close(self) -> None:
        if self.directory:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = ""

    def start(self, client: Any, workers: dict[int, int], now: float) -> None:
        """Ask every worker in ``workers`` (pid -> number) for its dump."""
        for pid in workers:
            try:
                os.unlink(os.path.join(self.directory, f"{pid}.json"))
            except FileNotFoundError:
                pass
            try:
                os.kill(pid, DUMP_SIGNAL)
            except ProcessLookupError:
                pass
        self.waiting.append(_Waiting(client, dict(workers), now + DUMP_WAIT))

    def tick(self, now: float) -> None:
        """Answer the dump commands whose workers have all written, or whose
        time is up."""
        for w in list(self.waiting):
            paths = {pid: os.path.join(self.directory, f"{pid}.json") for pid in w.workers}
            if now < w.deadline and not all(os.path.exists(p) for p in paths.values()):
                continue
            self.waiting.remove(w)
            dumps, missing = [], []
            for pid, path in paths.items():
                try:
                    with open(path, encoding="utf-8") as f:
                        dump = json.load(f)
                    os.unlink(path)
                except (OSError, ValueError):
                    missing.append({"pid": pid, "number": w.workers[pid]})
                    continue
                dump["number"] = w.workers[pid]
                dumps.append(dump)
            dumps.sort(key=lambda d: d["number"])
            w.client.reply({"ok": True, "workers": dumps, "missing": missing})


def format_dump(answer: dict[str, Any], idle_stacks: bool = False) -> str:
    """``prefork dump``'s text: per worker, each thread, its request and stack.
    A pool thread with no request is one line unless ``idle_stacks``."""
    lines: list[str] = []
    for w in answer["workers"]:
        busy = sum(1 for t in w["threads"] if t["request"])
        lines.append(f"worker {w['number']} (pid {w['pid']}): {len(w['threads'])} threads, "
                     f"{busy} serving a request")
        for t in w["threads"]:
            r = t["request"]
            if r:
                what = f"{r['method']} {r['target']} for {r['age']:.3f} s"
            elif t["main"]:
                what = "the worker's loop"
            elif t["pool"]:
                what = "idle"
            else:
                what = "not a pool thread"
            lines.append(f"  thread {t['name']}: {what}")
            if r or idle_stacks or not t["pool"]:
                lines.extend("    " + ln for s in t["stack"] for ln in s.rstrip("\n").split("\n"))
        lines.append("")
    for m in answer.get("missing", []):
        lines.append(f"worker {m['number']} (pid {m['pid']}): no answer within {DUMP_WAIT:g} s "
                     "(stuck outside Python, or gone)")
    return "\n".join(lines).rstrip("\n")

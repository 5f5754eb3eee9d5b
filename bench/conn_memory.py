"""What one client connection costs a worker in memory, measured.

Starts one prefork worker (hello app) on 127.0.0.1, opens N connections in
each of a few states, and reports the worker's RSS growth per connection:

* idle: connected, nothing sent;
* partial head: 4 KB of a request head, not finished;
* slow body: a whole head and 200 KB of a 400 KB body (below spool_threshold),
  with and without a limit_buffer_memory that the bodies exceed.

Run: ``python -m bench.conn_memory`` (``--conns N`` to change the count).
The numbers go in docs/security.md by hand; nothing here is a test.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil

from .compare import free_port, stop_group

ROOT = Path(__file__).resolve().parent.parent


def rss(pid: int) -> int:
    return int(psutil.Process(pid).memory_info().rss)


def start(port: int, *extra: str) -> tuple[subprocess.Popen[bytes], int]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "prefork", "start", "bench.apps:hello",
                             "--bind", f"127.0.0.1:{port}", "--workers", "1",
                             "--max-connections", "100000", "--control-socket",
                             f"/tmp/prefork-mem-{port}.ctl", *extra],
                            env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            kids = psutil.Process(proc.pid).children()
            if kids:
                time.sleep(0.5)
                return proc, kids[0].pid
        except OSError:
            time.sleep(0.1)
    stop_group(proc)
    raise SystemExit("prefork did not start")


def measure(label: str, n: int, payload: bytes, *extra: str) -> None:
    port = free_port()
    proc, worker = start(port, *extra)
    socks = []
    try:
        before = rss(worker)
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", port))
            if payload:
                s.sendall(payload)
            socks.append(s)
        time.sleep(1.5)
        after = rss(worker)
        print(f"{label:<44} {n:>6} conns  {(after - before) / n / 1024:8.1f} KiB each  "
              f"(worker RSS {before / 2**20:.1f} -> {after / 2**20:.1f} MiB)")
    finally:
        for s in socks:
            s.close()
        stop_group(proc)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--conns", type=int, default=1000)
    args = p.parse_args(argv)
    n = args.conns
    head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"p" * 4000
    body = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 400000\r\n\r\n" + b"b" * 200000
    measure("idle", n, b"")
    measure("partial head, 4 KB", n, head)
    measure("slow body, 200 KB in memory (no limit)", n // 5, body, "--limit-buffer-memory", "0")
    measure("slow body, 200 KB (limit_buffer_memory 16 MiB)", n // 5, body,
            "--limit-buffer-memory", str(16 * 2**20))
    return 0


if __name__ == "__main__":
    sys.exit(main())

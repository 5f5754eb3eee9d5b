"""How many processes wake up per accepted connection (the thundering herd).

Starts prefork and gunicorn (gthread) with the same number of idle workers,
sends sequential `Connection: close` requests, and reads each worker's
voluntary context switches from /proc before and after. With EPOLLEXCLUSIVE
one worker wakes per connection; without it every worker's epoll wakes.
Also prints how the requests spread over the workers.

    python -m bench.herd [--workers 4] [--requests 2000]
"""

from __future__ import annotations

import argparse
import collections
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil

from bench.compare import ROOT, free_port, stop_group

APP = '''
import os
def app(environ, start_response):
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
'''


def wait_port(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def one_request(port: int) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
        c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := c.recv(4096):
            data += chunk
    return int(data.rsplit(b"\r\n\r\n", 1)[1])


def measure(name: str, argv: list[str], port: int, workers: int, requests: int,
            env: dict[str, str]) -> dict[str, float]:
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        wait_port(port)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            kids = psutil.Process(proc.pid).children()
            if len(kids) == workers:
                break
            time.sleep(0.1)
        time.sleep(1.0)   # let every worker settle into its idle wait
        for _ in range(50):
            one_request(port)
        before = {k.pid: k.num_ctx_switches().voluntary for k in kids}
        served = collections.Counter(one_request(port) for _ in range(requests))
        after = {k.pid: k.num_ctx_switches().voluntary for k in kids}
        switches = sum(after[p] - before[p] for p in before)
        spread = sorted(served.values(), reverse=True)
        return {"switches_per_request": switches / requests,
                "busiest_share": spread[0] / requests, "workers_used": len(spread)}
    finally:
        stop_group(proc)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--requests", type=int, default=2000)
    args = p.parse_args(argv)
    import tempfile
    appdir = tempfile.mkdtemp(prefix="herd-")
    Path(appdir, "herdapp.py").write_text(APP)
    env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{appdir}")
    py = sys.executable
    servers = {
        "prefork": lambda port: [py, "-m", "prefork", "start", "herdapp:app", "--bind",
                                 f"127.0.0.1:{port}", "--workers", str(args.workers),
                                 "--threads", "4", "--control-socket", "",
                                 "--loglevel", "warning"],
        "gunicorn": lambda port: [py, "-m", "gunicorn", "-k", "gthread", "--threads", "4",
                                  "-w", str(args.workers), "-b", f"127.0.0.1:{port}",
                                  "herdapp:app"],
    }
    print(f"{args.workers} idle workers, {args.requests} sequential Connection: close requests")
    print(f"{'server':10} {'worker wake-ups per request':>28} {'busiest worker share':>21} "
          f"{'workers used':>13}")
    for name, make in servers.items():
        port = free_port()
        r = measure(name, make(port), port, args.workers, args.requests, env)
        print(f"{name:10} {r['switches_per_request']:28.2f} {r['busiest_share']:21.0%} "
              f"{r['workers_used']:13d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

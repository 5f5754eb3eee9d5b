"""An app whose views leave orphans behind, as careless apps do.

``/orphan?s=N`` double-forks a ``sleep N``: the middle process exits at
once and the worker reaps it, so the ``sleep`` loses its parent and the
kernel re-parents it to the init of the PID namespace (or to the nearest
subreaper). ``/pid`` answers the worker's pid and its namespace's view of
its parent. ``/sleep?s=N`` holds a request for N seconds.
"""

import json
import os
import time
from urllib.parse import parse_qs


def _json(start_response, data):
    body = json.dumps(data).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]


def _orphan(seconds: str) -> int:
    """Leave a ``sleep`` whose parent is gone; return its pid (in this namespace)."""
    r, w = os.pipe()
    middle = os.fork()
    if middle == 0:
        try:
            os.close(r)
            pid = os.fork()
            if pid == 0:
                os.execvp("sleep", ["sleep", seconds])
            os.write(w, str(pid).encode())
        finally:
            os._exit(0)
    os.close(w)
    data = os.read(r, 64)
    os.close(r)
    os.waitpid(middle, 0)
    return int(data)


def app(environ, start_response):
    path = environ["PATH_INFO"]
    qs = parse_qs(environ["QUERY_STRING"])
    if path == "/orphan":
        return _json(start_response, {"orphan": _orphan(qs.get("s", ["0.2"])[0])})
    if path == "/pid":
        return _json(start_response, {"pid": os.getpid(), "ppid": os.getppid()})
    if path == "/sleep":
        time.sleep(float(qs.get("s", ["1"])[0]))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"slept"]
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not found"]

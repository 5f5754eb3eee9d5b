"""A WSGI app whose paths exercise the server: one behaviour per path."""

import hashlib
import json
import os
import tempfile
import time
from urllib.parse import parse_qs


def _json(start_response, data, status="200 OK"):
    body = json.dumps(data, sort_keys=True).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def app(environ, start_response):
    path = environ["PATH_INFO"]
    qs = parse_qs(environ["QUERY_STRING"])
    if path == "/hello":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"Hello, World!"]
    if path == "/environ" or path.startswith("/environ-at/"):
        return _json(start_response, {k: v for k, v in environ.items() if isinstance(v, str)}
                     | {"wsgi.input_terminated": environ.get("wsgi.input_terminated"),
                        "wsgi.multithread": environ["wsgi.multithread"]})
    if path == "/echo":
        # read(n) with the length, as PEP 3333 asks (wsgiref.validate checks it);
        # for a chunked request prefork sets CONTENT_LENGTH to the decoded size.
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        return _json(start_response, {"length": len(body), "sha256": hashlib.sha256(body).hexdigest(),
                                      "content_length": environ.get("CONTENT_LENGTH"),
                                      "head": body[:64].decode("latin-1")})
    if path == "/readlines":
        inp = environ["wsgi.input"]
        first = inp.readline()
        rest = list(inp)
        return _json(start_response, {"first": first.decode(), "rest": [x.decode() for x in rest],
                                      "after": inp.read(1024).decode()})
    if path == "/stream":
        n = int(qs.get("n", ["3"])[0])
        start_response("200 OK", [("Content-Type", "text/plain")])
        return (b"chunk %d\n" % i for i in range(n))
    if path == "/write":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"written ")
        return [b"then returned"]
    if path == "/error":
        raise RuntimeError("boom from the test app")
    if path == "/error-after-start":
        def gen():
            yield b"partial"
            raise RuntimeError("boom after the head was sent")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return gen()
    if path == "/bad-header":
        start_response("200 OK", [("X-Evil", "a\r\nInjected: yes")])
        return [b"never"]
    if path == "/no-start-response":
        return [b"oops"]
    if path.startswith("/status/"):
        code = int(path.rsplit("/", 1)[1])
        start_response(f"{code} Whatever", [("Content-Type", "text/plain")])
        return [b"body that must not be sent"] if code in (204, 304) else [b"status body"]
    if path.startswith("/status-cl/"):
        # A status with the application's own Content-Length (and a body).
        code = int(path.rsplit("/", 1)[1])
        start_response(f"{code} Whatever", [("Content-Type", "text/plain"),
                                            ("Content-Length", "5")])
        return [b"12345"]
    if path == "/sleep":
        time.sleep(float(qs.get("s", ["1"])[0]))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"slept"]
    if path == "/file":
        size = int(qs.get("size", ["100000"])[0])
        f = tempfile.TemporaryFile()
        f.write(bytes(i % 251 for i in range(size)))
        f.seek(0)
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return environ["wsgi.file_wrapper"](f)
    if path == "/short":
        start_response("200 OK", [("Content-Length", "100")])
        return [b"only ten!!"]
    if path == "/long":
        start_response("200 OK", [("Content-Length", "5")])
        return [b"0123456789"]
    if path == "/spawn":
        # A subprocess that outlives the request (and the server), as
        # os.system("... &") would: what descriptors does it inherit?
        import subprocess
        child = subprocess.Popen(["sleep", "30"], close_fds=False, start_new_session=True)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [str(child.pid).encode()]
    if path == "/subprocess-signals":
        # What a view's subprocess inherits: its blocked signals, and
        # whether terminate() reaches it.
        import subprocess
        child = subprocess.Popen(["sleep", "30"])
        with open(f"/proc/{child.pid}/status") as f:
            blocked = next(line.split()[1] for line in f if line.startswith("SigBlk:"))
        child.terminate()
        try:
            code = child.wait(5)
        except subprocess.TimeoutExpired:
            child.kill()
            code = child.wait()
            code = f"still running after terminate() ({code})"
        return _json(start_response, {"blocked": blocked, "returncode": code})
    if path == "/pid":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [str(os.getpid()).encode()]
    if path == "/closing":
        closed = []

        class Body:
            def __iter__(self):
                yield b"body"

            def close(self):
                closed.append(True)
                with open(qs["marker"][0], "w") as f:
                    f.write("closed")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Body()
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not found"]



_hoard = []


def control(environ, start_response):
    """Paths that misbehave on purpose, for the master's tests."""
    path = environ["PATH_INFO"]
    if path == "/hoard":
        _hoard.append(bytearray(150 * 1024 * 1024))
        for i in range(0, len(_hoard[-1]), 4096):
            _hoard[-1][i] = 1
    elif path == "/exit":
        os._exit(7)
    elif path == "/db-down":
        raise ConnectionRefusedError(111, "the database is down")
    else:
        return app(environ, start_response)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(os.getpid()).encode()]

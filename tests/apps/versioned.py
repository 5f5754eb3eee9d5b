"""An app whose code changes between reloads: it reads VERSION_FILE at import.

The version's first word says how this deploy behaves, like a bad one would:
"broken..." fails to import; "fails..." imports but answers every request
with 500; "crashes..." kills its worker on every request; "unhealthy..."
answers 503 on /healthz and serves everything else.
"""

import os

with open(os.environ["VERSION_FILE"]) as f:
    VERSION = f.read().strip()

if VERSION.startswith("broken"):
    raise RuntimeError(f"this deploy is broken: {VERSION}")


def app(environ, start_response):
    if VERSION.startswith("crashes"):
        os._exit(1)
    status = "200 OK"
    if VERSION.startswith("fails"):
        status = "500 Internal Server Error"
    elif environ["PATH_INFO"] == "/healthz" and VERSION.startswith("unhealthy"):
        status = "503 Service Unavailable"
    body = f"{VERSION} {os.getpid()}".encode()
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]

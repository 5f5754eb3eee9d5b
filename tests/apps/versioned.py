"""An app whose code changes between reloads: it reads VERSION_FILE at import.

A version that starts with "broken" makes the import fail, like a bad deploy.
"""

import os

with open(os.environ["VERSION_FILE"]) as f:
    VERSION = f.read().strip()

if VERSION.startswith("broken"):
    raise RuntimeError(f"this deploy is broken: {VERSION}")


def app(environ, start_response):
    body = f"{VERSION} {os.getpid()}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]

"""Records the pid of every process that imports it in $IMPORT_RECORD."""

import os

with open(os.environ["IMPORT_RECORD"], "a") as f:
    f.write(f"{os.getpid()}\n")


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]

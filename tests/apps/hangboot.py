"""An app whose import hangs, deaf to TERM, while the file $HANG_FILE exists:
with --preload, a master started by USR2 that never gets ready."""

import os
import signal
import time

if os.path.exists(os.environ.get("HANG_FILE", "/nonexistent")):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    time.sleep(60)


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]

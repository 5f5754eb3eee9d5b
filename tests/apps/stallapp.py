"""An app that can make its worker's event loop hang, for the timeout test.

Importing it (in the worker's main thread, which becomes the event loop)
installs a SIGALRM handler; GET /stall-loop arms the alarm, and the handler
then sleeps in the main thread, so the loop never beats again.
"""

import os
import signal
import time


def stuck_in_the_loop(signum, frame):
    time.sleep(120)


signal.signal(signal.SIGALRM, stuck_in_the_loop)


def app(environ, start_response):
    if environ["PATH_INFO"] == "/stall-loop":
        signal.alarm(1)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(os.getpid()).encode()]

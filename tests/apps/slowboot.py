"""An app that takes a while to import, like a big Django project."""

import time

time.sleep(3)


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"booted"]

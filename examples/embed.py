"""Embedding prefork: serve a WSGI application from your own Python program.

    python examples/embed.py            # then: curl http://127.0.0.1:8000/

``prefork.serve(app, **settings)`` takes the settings of ``prefork start``
(see docs/settings.md) as keyword arguments, serves until SIGTERM/SIGINT and
returns the exit status.
Any WSGI callable works: a Django ``get_wsgi_application()``, a Flask app, or
a plain function like the one below.
"""

import json
import os

import prefork


def app(environ, start_response):
    """The smallest useful WSGI app: a greeting, and the request as JSON at /env."""
    if environ["PATH_INFO"] == "/env":
        shown = {k: v for k, v in environ.items() if isinstance(v, str)}
        body = json.dumps(shown, indent=2, sort_keys=True).encode()
        content_type = "application/json"
    else:
        body = b"Hello from an embedded prefork!\n"
        content_type = "text/plain; charset=utf-8"
    start_response("200 OK", [("Content-Type", content_type),
                              ("Content-Length", str(len(body)))])
    return [body]


if __name__ == "__main__":
    # serve() returns the exit status once a signal has stopped the server.
    raise SystemExit(prefork.serve(app, bind=os.environ.get("BIND", "127.0.0.1:8000"), threads=4))

"""The demo site, through wsgiref.validate."""

from __future__ import annotations

import json
import os

from prefork.demo import app, application
from tests.web.helpers import call


def test_home_shows_pid_and_counts_requests() -> None:
    first = call(application, "/")
    assert first.code == 200 and f"pid {os.getpid()}" in first.text
    before = json.loads(call(app, "/api/status/").body)["requests"]
    call(app, "/")
    after = json.loads(call(app, "/api/status/").body)
    assert after["requests"] == before + 2 and after["pid"] == os.getpid()


def test_hello_escapes_the_name() -> None:
    r = call(app, "/hello/<i>bob/")
    assert r.code == 200 and "Hello, &lt;i&gt;bob!" in r.text


def test_form_post_echoes_escaped() -> None:
    r = call(app, "/form/", method="POST", body=b"message=%3Cscript%3E",
             headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.code == 200 and "&lt;script&gt;" in r.text and "<script>" not in r.text
    assert call(app, "/form/", method="PUT").code == 405


def test_stream_and_missing_page() -> None:
    r = call(app, "/stream/")
    assert r.body.decode().count("\n") == 10
    assert call(app, "/nope/").code == 404
    assert call(app, "/hello/x").code == 301

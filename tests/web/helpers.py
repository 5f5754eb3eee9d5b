"""Drive a WSGI app in-process, through wsgiref.validate, with no socket."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, field
from typing import Any
from wsgiref.util import FileWrapper, setup_testing_defaults
from wsgiref.validate import WSGIWarning, validator


@dataclass
class Result:
    status: str
    headers: list[tuple[str, str]]
    body: bytes
    closed: bool = field(default=False)

    @property
    def code(self) -> int:
        return int(self.status.split()[0])

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    def header_list(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


def build_environ(path: str = "/", method: str = "GET", query: str = "", body: bytes = b"",
                  headers: dict[str, str] | None = None, file_wrapper: bool = False,
                  **extra: Any) -> dict[str, Any]:
    environ: dict[str, Any] = {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": query,
                               "SCRIPT_NAME": ""}
    if body or method in ("POST", "PUT", "PATCH"):
        environ["CONTENT_LENGTH"] = str(len(body))
    environ["wsgi.input"] = io.BytesIO(body)
    for name, value in (headers or {}).items():
        key = name.upper().replace("-", "_")
        environ[key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + key] = value
    environ.update(extra)
    setup_testing_defaults(environ)
    if file_wrapper:
        environ["wsgi.file_wrapper"] = FileWrapper
    return environ


def call(app: Any, path: str = "/", method: str = "GET", query: str = "", body: bytes = b"",
         headers: dict[str, str] | None = None, environ: dict[str, Any] | None = None,
         validate: bool = True, **kw: Any) -> Result:
    """Call ``app`` wrapped in wsgiref.validate; any WSGIWarning fails the test."""
    env = environ if environ is not None else build_environ(path, method, query, body, headers, **kw)
    captured: dict[str, Any] = {}

    def start_response(status: str, response_headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        captured["status"], captured["headers"] = status, response_headers
        return lambda data: None

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        iterable = (validator(app) if validate else app)(env, start_response)
        try:
            body_out = b"".join(iterable)
        finally:
            iterable.close()
    bad = [w for w in caught if issubclass(w.category, WSGIWarning)]
    assert not bad, [str(w.message) for w in bad]
    return Result(captured["status"], captured["headers"], body_out, closed=True)

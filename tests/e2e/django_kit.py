"""The example Django project (examples/django_site), migrated into a temporary
directory and served by ``manage.py prefork``, and a small HTTP client that
keeps cookies and finds CSRF tokens the way a browser's form would.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlencode

import psutil

from tests.server import ROOT, HTTPReader, Response, ServerProcess, multipart

DJANGO_DIR = ROOT / "examples" / "django_site"
ADMIN_USER, ADMIN_PASSWORD = "admin", "prefork-e2e-password"
CSRF_FIELD = re.compile(rb'name="csrfmiddlewaretoken" value="([^"]+)"')


def project_env(data_dir: Path, debug: bool = True) -> dict[str, str | None]:
    return {"MYSITE_DATA_DIR": str(data_dir), "MYSITE_DEBUG": "1" if debug else "0",
            "PYTHONPATH": os.pathsep.join([str(DJANGO_DIR), str(ROOT), str(ROOT / "tests" / "apps")])}


def manage(env: dict[str, str | None], *args: str, timeout: float = 60,
           cwd: Path = DJANGO_DIR) -> subprocess.CompletedProcess[str]:
    """``python manage.py ARGS`` with the project's environment; not checked."""
    full = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    full.update({k: v for k, v in env.items() if v is not None})
    return subprocess.run([sys.executable, "manage.py", *args], cwd=cwd, env=full,
                          capture_output=True, text=True, timeout=timeout)


def migrate(data_dir: Path) -> dict[str, str | None]:
    """Tables and a superuser in ``data_dir``/mysite.sqlite3; the environment to serve it."""
    env = project_env(data_dir)
    done = manage(env, "migrate", "--noinput", "-v", "0")
    assert done.returncode == 0, done.stderr
    done = manage(dict(env, DJANGO_SUPERUSER_PASSWORD=ADMIN_PASSWORD), "createsuperuser",
                  "--noinput", "--username", ADMIN_USER, "--email", "admin@example.com")
    assert done.returncode == 0, done.stderr
    return env


@contextmanager
def manage_prefork(env: dict[str, str | None], *args: str, addrport: str = "127.0.0.1:0",
                   cwd: Path = DJANGO_DIR, wait_ready: bool = True
                   ) -> Iterator[ServerProcess]:
    """``python manage.py prefork ADDRPORT ARGS``, stopped (whole group) at the end."""
    with tempfile.TemporaryDirectory(prefix="prefork-dj-") as ctl:
        command = [sys.executable, "manage.py", "prefork", addrport,
                   "--control-socket", os.path.join(ctl, "ctl"), *args]
        srv = ServerProcess([], env={**env, "DJANGO_SETTINGS_MODULE": None}, cwd=cwd,
                            command=command, wait_ready=wait_ready)
        try:
            yield srv
        finally:
            stop_successor(srv)
            srv.stop()


def stop_successor(srv: ServerProcess, timeout: float = 15) -> None:
    """After a reload re-executed the command, the master serving is not the
    process we started (that one has retired): TERM the newest, so it cleans
    up after itself rather than being killed with its process group."""
    pids = [int(p) for p in re.findall(r"Master (\d+) started", srv.log)]
    if not pids or pids[-1] == srv.proc.pid:
        return
    try:
        master = psutil.Process(pids[-1])
        master.terminate()
        master.wait(timeout)
    except (psutil.NoSuchProcess, psutil.TimeoutExpired):
        pass


class Client:
    """One browser, as far as the server can tell: its cookies, sent back."""

    def __init__(self, srv: ServerProcess, host: str = "test"):
        self.srv, self.host = srv, host
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, body: bytes = b"",
                headers: dict[str, str] | None = None) -> Response:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}", "Connection: close"]
        if self.cookies:
            lines.append("Cookie: " + "; ".join(f"{k}={v}" for k, v in self.cookies.items()))
        if body or method == "POST":
            lines.append(f"Content-Length: {len(body)}")
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        raw = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
        with self.srv.connect(timeout=20) as s:
            s.sendall(raw)
            r = HTTPReader(s).read_response(method)
        for cookie in r.header_list("set-cookie"):
            name, _, rest = cookie.partition("=")
            value = rest.split(";", 1)[0]
            if "max-age=0" in cookie.lower() or 'expires=thu, 01 jan 1970' in cookie.lower():
                self.cookies.pop(name.strip(), None)
            else:
                self.cookies[name.strip()] = value
        return r

    def get(self, path: str) -> Response:
        return self.request("GET", path)

    def csrf_token(self, path: str) -> str:
        """GET the page holding the form; the token its hidden field carries."""
        page = self.get(path)
        assert page.status == 200, page
        m = CSRF_FIELD.search(page.body)
        assert m, page.body[:500]
        assert "csrftoken" in self.cookies, page.headers
        return m.group(1).decode()

    def post_form(self, path: str, fields: dict[str, str], token: str | None = None) -> Response:
        if token is not None:
            fields = {"csrfmiddlewaretoken": token, **fields}
        return self.request("POST", path, urlencode(fields).encode(),
                            {"Content-Type": "application/x-www-form-urlencoded"})

    def post_multipart(self, path: str, fields: dict[str, str],
                       files: dict[str, tuple[str, bytes, str]]) -> Response:
        body, ctype = multipart(fields, files)
        return self.request("POST", path, body, {"Content-Type": ctype})

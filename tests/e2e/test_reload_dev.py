"""Development mode: ``prefork start --reload`` against a real server.

Each test writes an app module into its own temporary directory, starts the
server with ``--reload`` and edits the files the way editors do (in place, or
a new file renamed over the old one), with both engines.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.server import ROOT, ServerProcess, get, running

pytestmark = pytest.mark.timeout(120)

TIMEOUT = 60.0

APP = '''\
import os

{extra}
VERSION = {version!r}


def app(environ, start_response):
    body = {body}.encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
'''


def app_source(version: str, extra: str = "", body: str = "VERSION") -> str:
    return APP.format(version=version, extra=extra, body=body)


def save(path: Path, text: str, atomic: bool = False) -> None:
    """Write ``text`` as an editor does: in place, or (atomic) to a new file renamed over."""
    if atomic:
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
    else:
        with open(path, "w") as f:
            f.write(text)


def env_for(*dirs: Path) -> dict[str, str]:
    return {"PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests" / "apps"),
                                           *map(str, dirs)])}


def wait_for_body(srv: ServerProcess, expected: bytes, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = get(srv, "/").body
        except (OSError, EOFError) as e:
            last = repr(e).encode()
        if last == expected:
            return
        time.sleep(0.1)
    raise AssertionError(f"never got {expected!r} (last: {last!r}); log:\n{srv.log}")


def start_args(engine: str, *more: str) -> tuple[str, ...]:
    return ("--reload", "--reload-engine", engine, *more)


def engine_line(engine: str) -> str:
    return "inotify" if engine == "inotify" else "stat polling"


@pytest.fixture(params=["inotify", "poll"])
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_edit_serves_new_code(tmp_path: Path, engine: str) -> None:
    module = tmp_path / "devapp.py"
    save(module, app_source("one"))
    with running("devapp:app", *start_args(engine), env=env_for(tmp_path), cwd=tmp_path) as srv:
        srv.wait_for_log(rf"Reloader: watching \d+ files in \d+ directories with "
                         rf"{engine_line(engine)}", TIMEOUT)
        assert get(srv, "/").body == b"one"
        save(module, app_source("two"))                 # in place, same size
        wait_for_body(srv, b"two")
        srv.wait_for_log(r"Reloader: devapp\.py changed; reloading", TIMEOUT)
        save(module, app_source("three"), atomic=True)  # as vim and most IDEs save
        wait_for_body(srv, b"three")


def test_syntax_error_keeps_old_code_until_fixed(tmp_path: Path, engine: str) -> None:
    module = tmp_path / "devapp.py"
    save(module, app_source("good"))
    with running("devapp:app", *start_args(engine), env=env_for(tmp_path), cwd=tmp_path) as srv:
        srv.wait_for_log(r"Reloader: watching", TIMEOUT)
        assert get(srv, "/").body == b"good"
        save(module, app_source("good").replace("def app(", "def app(:"))
        srv.wait_for_log(r"reload failed: .*SyntaxError.*\(devapp\.py, line \d+\); "
                         r"the current workers keep serving", TIMEOUT)
        # The traceback names the file, and the old code goes on serving.
        assert f'File "{module}", line' in srv.log
        for _ in range(5):
            assert get(srv, "/").body == b"good"
        save(module, app_source("fixed"))
        wait_for_body(srv, b"fixed")
        assert srv.proc.poll() is None


def test_change_to_an_extra_file_reloads(tmp_path: Path, engine: str) -> None:
    module = tmp_path / "devapp.py"
    data = tmp_path / "conf" / "greeting.txt"
    data.parent.mkdir()
    data.write_text("hello")
    save(module, app_source("v", extra=f"GREETING = open({str(data)!r}).read()",
                             body="GREETING"))
    with running("devapp:app", *start_args(engine, "--reload-extra-files", "conf/*.txt"),
                 env=env_for(tmp_path), cwd=tmp_path) as srv:
        srv.wait_for_log(r"Reloader: watching", TIMEOUT)
        assert get(srv, "/").body == b"hello"
        save(data, "bonjour", atomic=True)
        wait_for_body(srv, b"bonjour")
        srv.wait_for_log(r"Reloader: conf/greeting\.txt changed; reloading", TIMEOUT)


def test_lazily_imported_module_is_watched(tmp_path: Path, engine: str) -> None:
    """A module imported by a request, in a directory of its own, with two workers:
    whichever worker imports it, the watching one learns of it."""
    lazy_dir = tmp_path / "lazy"
    lazy_dir.mkdir()
    (lazy_dir / "lazymod.py").write_text("VALUE = 'first'\n")
    save(tmp_path / "devapp.py", app_source("v", body="__import__('lazymod').VALUE"))
    with running("devapp:app", *start_args(engine, "--workers", "2", "--loglevel", "debug"),
                 env=env_for(tmp_path, lazy_dir), cwd=tmp_path) as srv:
        for _ in range(6):      # likely both workers, at least one
            assert get(srv, "/").body == b"first"
        srv.wait_for_log(rf"Reloader: now watching .*{lazy_dir}", TIMEOUT)
        save(lazy_dir / "lazymod.py", "VALUE = 'second'\n")
        wait_for_body(srv, b"second")


def test_reload_is_off_by_default(tmp_path: Path) -> None:
    module = tmp_path / "devapp.py"
    save(module, app_source("one"))
    with running("devapp:app", env=env_for(tmp_path), cwd=tmp_path) as srv:
        save(module, app_source("two"))
        time.sleep(2.5)
        assert get(srv, "/").body == b"one"
        assert "Reloader" not in srv.log

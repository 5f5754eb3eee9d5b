"""End-to-end: Django projects served by prefork (prefork.contrib.django,
``prefork start`` on a project, connections closed before the fork).

The example project (examples/django_site) is migrated into a temporary
directory, a superuser created, and served by ``manage.py prefork`` with
several workers; every test speaks raw HTTP with real cookies and CSRF tokens.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from prefork.config import BY_NAME
from tests.e2e.django_kit import (
    ADMIN_PASSWORD,
    ADMIN_USER,
    DJANGO_DIR,
    Client,
    manage,
    manage_prefork,
    migrate,
)
from tests.server import ROOT, HTTPReader, get, running, wait_until, workers_of

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("mysite-db")


@pytest.fixture(scope="module")
def env(data_dir) -> dict[str, str | None]:
    return migrate(data_dir)


@pytest.fixture(scope="module")
def site(env):
    # workers from the flag, threads (4) from PREFORK in settings.py.
    with manage_prefork(env, "--workers", "3") as srv:
        yield srv


def db_info(srv) -> dict:
    r = get(srv, "/api/db/")
    assert r.status == 200, r
    return json.loads(r.body)


def db_files(pid: int, db: Path) -> list[str]:
    """The files of the sqlite database ``db`` (and its -wal, -shm) process ``pid`` holds open."""
    proc = psutil.Process(pid)
    paths = [f.path for f in proc.open_files()]
    paths += [m.path for m in proc.memory_maps() if m.path.startswith(str(db))]
    return sorted(p for p in paths if p.startswith(str(db)))


# -- manage.py prefork: start-up --------------------------------------------

def test_manage_py_prefork_checks_then_serves_wsgi_application_with_its_settings(site):
    log = site.log
    assert "Performing system checks..." in log
    assert "System check identified no issues (0 silenced)." in log
    assert re.search(r"Django 5\.\d[\w.]*, settings mysite\.settings: serving WSGI_APPLICATION "
                     r"mysite\.wsgi\.application; static files at /static/", log), log
    # --workers from the command line over PREFORK's 2; threads from PREFORK.
    assert re.search(r"Master \d+ started: 3 workers, 4 threads each", log), log
    assert log.index("System check identified") < log.index("Listening at")
    # The migrations check opened the database in this master: closed before the fork.
    assert "Closed before forking the workers: database 'default'" in log


def test_several_workers_answer(site):
    pids: set[int] = set()

    def burst() -> bool:
        threads = [threading.Thread(target=lambda: pids.add(db_info(site)["pid"]))
                   for _ in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)
        return len(pids) >= 2

    wait_until(burst, timeout=20, interval=0)
    assert pids <= set(workers_of(site))


def test_system_check_error_stops_startup_with_djangos_message(env):
    done = manage(dict(env, VARIANT_BREAK_CHECKS="1"), "prefork", "127.0.0.1:0",
                  "--settings", "mysite_variant", timeout=30)
    assert done.returncode == 1
    assert "SystemCheckError: System check identified some issues:" in done.stderr, done.stderr
    assert "admin.E409" in done.stderr
    assert "Listening at" not in done.stderr + done.stdout


def test_skip_checks_serves_anyway(env):
    with manage_prefork(dict(env, VARIANT_BREAK_CHECKS="1"), "--settings", "mysite_variant",
                        "--skip-checks", "--workers", "1") as srv:
        assert get(srv, "/api/info/").status == 200
    assert "Performing system checks" not in srv.log


@pytest.mark.parametrize("prefork, expected", [
    ({"wokers": 2}, "CommandError: unknown setting 'wokers' (Django setting PREFORK); "
                    "did you mean 'workers'?"),
    ({"threads": 0}, "CommandError: invalid value for setting 'threads' (Django setting "
                     "PREFORK): 0; allowed: an integer from 1 to 1024"),
    (["workers", 2], "CommandError: the Django setting PREFORK must be a dict of prefork "
                     "settings (names as in docs/settings.md), not list"),
])
def test_bad_prefork_setting_gets_prefork_error(env, prefork, expected):
    done = manage(dict(env, VARIANT_PREFORK=json.dumps(prefork)), "prefork", "127.0.0.1:0",
                  "--settings", "mysite_variant", timeout=30)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines()[-1] == expected


def test_prefork_typo_is_worded_as_a_toml_typo(env, tmp_path):
    toml = tmp_path / "prefork.toml"
    toml.write_text("wokers = 2\n")
    django = manage(dict(env, VARIANT_PREFORK='{"wokers": 2}'), "prefork",
                    "--settings", "mysite_variant", timeout=30)
    plain = subprocess.run([sys.executable, "-m", "prefork", "check", "-c", str(toml)],
                           capture_output=True, text=True, timeout=30,
                           env=dict(os.environ, PYTHONPATH=str(ROOT)))
    shape = re.compile(r"unknown setting 'wokers' \([^)]*\); did you mean 'workers'\?")
    assert shape.search(django.stderr) and shape.search(plain.stderr), (django.stderr,
                                                                        plain.stderr)


PRECEDENCE = """
import json, os, sys
import django
django.setup()
from prefork.contrib.django.management.commands.prefork import resolve_config
cfg = resolve_config({"timeout": 13}, sys.argv[1],
                     {"PREFORK_KEEPALIVE": "9", "PREFORK_TIMEOUT": "11"}, addrport="0.0.0.0:9")
print(json.dumps({n: [getattr(cfg, n), cfg.source(n)]
                  for n in ("workers", "threads", "keepalive", "timeout", "bind", "backlog")}))
"""


def test_settings_precedence_prefork_then_toml_then_env_then_flags(env, tmp_path):
    toml = tmp_path / "p.toml"
    toml.write_text("threads = 5\nkeepalive = 7\ntimeout = 8\n")
    full = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    full.update({k: v for k, v in env.items() if v is not None},
                DJANGO_SETTINGS_MODULE="mysite_variant",
                VARIANT_PREFORK='{"workers": 2, "threads": 3, "keepalive": 4, "bind": "unix:x"}')
    done = subprocess.run([sys.executable, "-c", PRECEDENCE, str(toml)], cwd=DJANGO_DIR,
                          env=full, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    assert got == {
        "workers": [2, "Django setting PREFORK"],
        "threads": [5, f"config file {toml}"],
        "keepalive": [9.0, "environment PREFORK_KEEPALIVE"],
        "timeout": [13.0, "command line --timeout"],
        "bind": [["0.0.0.0:9"], "command line addrport"],
        "backlog": [2048, "default"],
    }


@pytest.mark.parametrize("addrport, ipv6, bind", [
    (None, False, "127.0.0.1:8000"),
    ("8001", False, "127.0.0.1:8001"),
    ("0.0.0.0:8000", False, "0.0.0.0:8000"),
    ("[::1]:8000", False, "[::1]:8000"),
    ("localhost:8002", False, "localhost:8002"),
    (None, True, "[::1]:8000"),
    ("8003", True, "[::1]:8003"),
])
def test_addrport_taken_as_runserver_takes_it(addrport, ipv6, bind):
    from prefork.contrib.django.management.commands.prefork import bind_of
    assert bind_of(addrport, ipv6) == bind


def test_bad_addrport_gets_runserver_message(env):
    done = manage(env, "prefork", "127.0.0.1:http", timeout=30)
    assert done.returncode == 1
    assert done.stderr.strip() == ('CommandError: "127.0.0.1:http" is not a valid port number '
                                   'or address:port pair.')


def test_ipv6_addrport(env):
    if not socket_has_ipv6():
        pytest.skip("no IPv6 loopback here")
    with manage_prefork(env, "--workers", "1", addrport="[::1]:0") as srv:
        assert srv.host == "::1"
        assert get(srv, "/api/info/").status == 200


def socket_has_ipv6() -> bool:
    import socket
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


# -- what a browser does: admin, forms, uploads, streams, static files -------

def test_admin_login_with_csrf_and_session_cookie(site):
    anonymous = Client(site)
    r = anonymous.get("/admin/")
    assert r.status == 302 and r.header("location") == "/admin/login/?next=/admin/"

    browser = Client(site)
    token = browser.csrf_token("/admin/login/?next=/admin/")
    wrong = browser.post_form("/admin/login/?next=/admin/",
                              {"username": ADMIN_USER, "password": "nope", "next": "/admin/"},
                              token)
    assert wrong.status == 200 and b"Please enter the correct username and password" in wrong.body
    r = browser.post_form("/admin/login/?next=/admin/",
                          {"username": ADMIN_USER, "password": ADMIN_PASSWORD,
                           "next": "/admin/"}, token)
    assert r.status == 302, r
    assert r.header("location") == "/admin/"
    assert "sessionid" in browser.cookies
    home = browser.get("/admin/")
    assert home.status == 200 and b"Site administration" in home.body
    assert b"Entries" in home.body and b"Uploads" in home.body
    entries = browser.get("/admin/mysite/entry/")
    assert entries.status == 200 and b"Select entry to change" in entries.body


def test_form_post_without_csrf_token_is_refused(site):
    c = Client(site)
    r = c.post_form("/guestbook/", {"name": "mallory", "message": "no token"})
    assert r.status == 403 and b"CSRF verification failed" in r.body
    c.csrf_token("/guestbook/")
    r = c.post_form("/guestbook/", {"name": "mallory", "message": "bad token"}, "x" * 64)
    assert r.status == 403


def test_form_post_with_csrf_token_writes_a_row(site):
    c = Client(site)
    token = c.csrf_token("/guestbook/")
    r = c.post_form("/guestbook/", {"name": "Ann", "message": "signed through prefork"}, token)
    assert r.status == 302 and r.header("location") == "/guestbook/", r
    page = c.get("/guestbook/")
    assert page.status == 200
    assert b"<strong>Ann</strong>: signed through prefork" in page.body
    invalid = c.post_form("/guestbook/", {"name": "", "message": ""}, token)
    assert invalid.status == 400 and b"This field is required." in invalid.body


def test_concurrent_form_posts_across_workers_lose_and_corrupt_nothing(site, data_dir):
    before = db_info(site)["entries"]
    statuses: list[int] = []
    pids: set[int] = set()

    def writer(n: int) -> None:
        c = Client(site)
        token = c.csrf_token("/guestbook/")
        for i in range(6):
            r = c.post_form("/guestbook/", {"name": f"w{n}", "message": f"post {n}-{i}"}, token)
            statuses.append(r.status)
        pids.add(db_info(site)["pid"])

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(40)
    assert statuses == [302] * 48
    assert db_info(site)["entries"] == before + 48
    with sqlite3.connect(data_dir / "mysite.sqlite3", timeout=20) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        rows = {m for (m,) in db.execute("SELECT message FROM mysite_entry")}
    assert {f"post {n}-{i}" for n in range(8) for i in range(6)} <= rows


def test_upload_form_larger_than_spool_threshold(site):
    data = os.urandom(BY_NAME["spool_threshold"].default * 6 + 11)   # 3 MB: spooled
    c = Client(site)
    token = c.csrf_token("/upload/")
    before = db_info(site)["uploads"]
    r = c.post_multipart("/upload/", {"csrfmiddlewaretoken": token},
                         {"file": ("big.bin", data, "application/octet-stream")})
    assert r.status == 200, r
    digest = hashlib.sha256(data).hexdigest()
    assert (f"Received big.bin: {len(data)} bytes, sha256 <code>{digest}</code>"
            .encode() in r.body), r.body[:800]
    assert db_info(site)["uploads"] == before + 1
    # And refused without the token, whatever its size.
    r = Client(site).post_multipart("/upload/", {}, {"file": ("big.bin", data, "x/y")})
    assert r.status == 403


def test_streaming_response_arrives_while_it_is_produced(site):
    with site.connect(timeout=20) as s:
        start = time.monotonic()
        s.sendall(b"GET /stream/?n=4&delay=0.3 HTTP/1.1\r\nHost: test\r\n"
                  b"Connection: close\r\n\r\n")
        first = b""
        while b"line 0" not in first:
            first += s.recv(65536)
        first_at = time.monotonic() - start
        reader = HTTPReader(s)
        reader.buf = first
        r = reader.read_response()
        total = time.monotonic() - start
    assert r.status == 200 and (r.header("transfer-encoding") or "").lower() == "chunked"
    assert r.body == b"line 0\nline 1\nline 2\nline 3\n"
    assert total >= 0.85 and first_at < total - 0.5, (first_at, total)


def test_static_files_served_in_debug(site):
    r = get(site, "/static/mysite/site.css")
    assert r.status == 200, r
    assert (r.header("content-type") or "").startswith("text/css")
    assert r.body == (DJANGO_DIR / "mysite" / "static" / "mysite" / "site.css").read_bytes()
    admin_css = get(site, "/static/admin/css/base.css")
    assert admin_css.status == 200 and admin_css.body
    assert get(site, "/static/mysite/missing.css").status == 404


def test_static_files_not_served_without_debug(env):
    with manage_prefork(dict(env, MYSITE_DEBUG="0"), "--workers", "1") as srv:
        assert get(srv, "/static/mysite/site.css").status == 404
        assert get(srv, "/api/info/").status == 200
    assert "static files at" not in srv.log


def test_insecure_serves_static_without_debug_and_nostatic_does_not(env):
    with manage_prefork(dict(env, MYSITE_DEBUG="0"), "--workers", "1", "--insecure") as srv:
        assert get(srv, "/static/mysite/site.css").status == 200
    with manage_prefork(env, "--workers", "1", "--nostatic") as srv:
        assert get(srv, "/static/mysite/site.css").status == 404


# -- --reload --------------------------------------------------------------

def test_reload_reexecutes_the_command_and_serves_new_code(env, tmp_path):
    project = tmp_path / "site"
    shutil.copytree(DJANGO_DIR, project, ignore=shutil.ignore_patterns("__pycache__"))
    run_env = dict(env, PYTHONPATH=os.pathsep.join([str(project), str(ROOT)]))
    views = project / "mysite" / "views.py"
    source = views.read_text()
    marker = '"method": request.method,'
    assert marker in source
    with manage_prefork(run_env, "--workers", "1", "--reload", "--reload-engine", "poll",
                        cwd=project) as srv:
        assert "edition" not in json.loads(get(srv, "/api/info/").body)
        views.write_text(source.replace(marker, marker + ' "edition": 2,'))
        wait_until(lambda: json.loads(get(srv, "/api/info/").body).get("edition") == 2,
                   timeout=20, interval=0.2)
        srv.wait_for_log(r"re-executing the master")
        # A broken edit: the new command fails its checks, the old code serves on.
        views.write_text(source.replace(marker, marker + ' "edition": 3,,'))
        srv.wait_for_log(r"SyntaxError", timeout=20)
        assert json.loads(get(srv, "/api/info/").body).get("edition") == 2
        views.write_text(source.replace(marker, marker + ' "edition": 4,'))
        wait_until(lambda: json.loads(get(srv, "/api/info/").body).get("edition") == 4,
                   timeout=20, interval=0.2)
        # Templates are watched too (Django's loaders cache them).
        assert b"<h1>prefork + Django</h1>" in get(srv, "/").body     # compiled, cached
        home = project / "mysite" / "templates" / "mysite" / "home.html"
        home.write_text(home.read_text().replace("<h1>{{ title }}</h1>", "<h1>Edited</h1>"))
        wait_until(lambda: b"<h1>Edited</h1>" in get(srv, "/").body, timeout=20, interval=0.2)


# -- prefork start on a Django project ----------------------------------------

def test_prefork_start_finds_the_project_from_its_directory(env):
    start_env = {**env, "DJANGO_SETTINGS_MODULE": None, "PYTHONPATH": str(ROOT)}
    with running("examples/django_site", env=start_env, cwd=ROOT) as srv:
        assert db_info(srv)["pid"] in workers_of(srv)
    assert (f"Django project in {DJANGO_DIR}: settings mysite.settings (named by manage.py), "
            "serving WSGI_APPLICATION mysite.wsgi.application") in srv.log


def test_prefork_start_finds_the_project_from_its_settings_module(env):
    start_env = {**env, "DJANGO_SETTINGS_MODULE": None}
    with running("mysite.settings", env=start_env, cwd=DJANGO_DIR) as srv:
        assert get(srv, "/guestbook/").status == 200
    assert ("Django project: settings mysite.settings (named on the command line), "
            "serving WSGI_APPLICATION mysite.wsgi.application") in srv.log


def test_prefork_start_directory_takes_django_settings_module_from_the_environment(env):
    start_env = {**env, "DJANGO_SETTINGS_MODULE": "mysite_variant",
                 "VARIANT_PREFORK": "{}",
                 "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests" / "apps")])}
    with running(str(DJANGO_DIR), env=start_env) as srv:
        assert get(srv, "/api/info/").status == 200
    assert ("settings mysite_variant (from the environment DJANGO_SETTINGS_MODULE)"
            in srv.log)


def test_prefork_start_on_a_directory_that_is_no_project_says_so(tmp_path):
    (tmp_path / "a").mkdir()
    done = subprocess.run([sys.executable, "-m", "prefork", "start", str(tmp_path),
                           "--bind", "127.0.0.1:0", "--control-socket", ""],
                          capture_output=True, text=True, timeout=30,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert done.returncode == 3
    assert (f"directory '{tmp_path}' is not a Django project: no manage.py naming "
            "DJANGO_SETTINGS_MODULE, and no */settings.py") in done.stderr


def test_finding_a_settings_module_imports_nothing(monkeypatch):
    from prefork.app import find_django_project

    monkeypatch.syspath_prepend(str(DJANGO_DIR))
    for name in [m for m in sys.modules if m == "mysite" or m.startswith("mysite.")]:
        monkeypatch.delitem(sys.modules, name)
    project = find_django_project("mysite.settings", environ={})
    assert project is not None and project.wsgi_application == "mysite.wsgi.application"
    assert "mysite" not in sys.modules and "mysite.settings" not in sys.modules
    assert find_django_project("mysite.wsgi", environ={}) is None       # defines application
    assert find_django_project("mysite.wsgi:application", environ={}) is None
    assert find_django_project("hello", environ={}) is None             # tests/apps/hello.py


# -- preload: the master's connections are closed before the fork -------------

def test_preload_closes_the_connection_opened_at_import_before_forking(env, data_dir, tmp_path):
    db = data_dir / "mysite.sqlite3"
    raw = tmp_path / "raw.sqlite3"
    with running("django_preload", "--preload", "--workers", "3",
                 env={**env, "RAW_SQLITE_AT_IMPORT": str(raw)}) as srv:
        workers = workers_of(srv)
        assert len(workers) == 3
        # Nothing of the database is held by the master or, before their
        # first request, by the workers: the connection of the import is gone.
        assert db_files(srv.proc.pid, db) == []
        for pid in workers:
            assert db_files(pid, db) == [], pid
            # The control: a connection prefork does not know is inherited.
            assert str(raw) in db_files(pid, raw)
        assert "Closed before forking the workers: database 'default'" in srv.log

        # Under concurrent writes, each worker opens its own connection.
        before = db_info(srv)["entries"]
        statuses: list[int] = []
        seen: list[dict] = []

        def writer(n: int) -> None:
            c = Client(srv)
            token = c.csrf_token("/guestbook/")
            for i in range(5):
                statuses.append(c.post_form("/guestbook/", {"name": f"p{n}",
                                                            "message": f"pre {n}-{i}"},
                                            token).status)
                seen.append(db_info(srv))

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(40)
        assert statuses == [302] * 40
        assert db_info(srv)["entries"] == before + 40
        assert db_files(srv.proc.pid, db) == []        # the master still holds none
        # Each request found the database open in its worker: a descriptor
        # the worker opened itself, since it had none after the fork.
        def burst() -> bool:
            threads = [threading.Thread(target=lambda: seen.append(db_info(srv)))
                       for _ in range(9)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(20)
            return len({info["pid"] for info in seen}) >= 2

        wait_until(burst, timeout=20, interval=0)       # answers from several workers
        assert {info["pid"] for info in seen} <= set(workers)
        assert all(info["database_fds"] for info in seen), seen
    with sqlite3.connect(db, timeout=20) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


FORKSAFE = """
import sys
from prefork.forksafe import before_fork
assert before_fork() == []
assert "django" not in sys.modules, "before_fork imported django"
import django
from django.conf import settings
from django.core.cache.backends.locmem import LocMemCache

class ClosingCache(LocMemCache):      # as memcached's: close() lets go of sockets
    closed = 0
    def close(self, **kwargs):
        ClosingCache.closed += 1

settings.configure(DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3",
                                          "NAME": sys.argv[1]}},
                   CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
                           "net": {"BACKEND": "__main__.ClosingCache"},
                           "unused": {"BACKEND": "__main__.ClosingCache"}})
django.setup()
from django.core.cache import caches
from django.db import connection
connection.ensure_connection()
caches["default"].set("k", 1)
caches["net"].set("k", 1)
done = before_fork()
assert done == ["database 'default'", "cache ClosingCache"], done
assert connection.connection is None
assert ClosingCache.closed == 1     # not the cache nobody used
print("ok")
"""


def test_before_fork_closes_only_what_was_imported_and_opened(tmp_path):
    done = subprocess.run([sys.executable, "-c", FORKSAFE, str(tmp_path / "x.sqlite3")],
                          capture_output=True, text=True, timeout=30,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr

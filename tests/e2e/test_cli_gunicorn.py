"""A gunicorn user's command line and gunicorn.conf.py, run by prefork:
real processes, real sockets, real signals."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.server import ROOT, ServerProcess, get, wait_until, workers_of

APPS = ROOT / "tests" / "apps"
ENV = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{APPS}")

pytestmark = pytest.mark.timeout(90)


def prefork(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "prefork", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=cwd, env=env or ENV)


@pytest.fixture
def ctl():
    d = tempfile.mkdtemp(prefix="prefork-test-")
    yield os.path.join(d, "ctl")
    shutil.rmtree(d, ignore_errors=True)


def make_mysite(root: Path) -> None:
    """A Django-shaped project: mysite/wsgi.py defining ``application``."""
    (root / "mysite").mkdir()
    (root / "mysite" / "__init__.py").write_text("")
    (root / "mysite" / "wsgi.py").write_text(
        "import os\n"
        "def application(environ, start_response):\n"
        "    body = f\"mysite {os.getpid()} {os.environ.get('STAGE', '-')}\".encode()\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain'),\n"
        "                              ('Content-Length', str(len(body)))])\n"
        "    return [body]\n")


def test_gunicorns_command_line_serves_with_two_workers(tmp_path, ctl):
    make_mysite(tmp_path)
    srv = ServerProcess(["start", "-w", "2", "-b", "127.0.0.1:0", "-t", "20", "--keep-alive",
                         "1", "-e", "STAGE=prod", "--access-logfile", "-",
                         "--access-logformat", "%(m)s %(U)s %(s)s", "--control-socket", ctl,
                         "mysite.wsgi"], cwd=tmp_path)
    try:
        assert len(workers_of(srv)) == 2
        pids = set()
        for _ in range(20):
            r = get(srv, "/hello")
            assert r.status == 200
            word, pid, stage = r.body.decode().split()
            assert word == "mysite" and stage == "prod"
            pids.add(int(pid))
        assert pids <= set(workers_of(srv))
        srv.wait_for_log(r"GET /hello 200")
        assert "Master" in srv.log and "2 workers" in srv.log
    finally:
        assert srv.stop() == 0


def test_gunicorn_conf_py_with_workers_bind_and_hooks(tmp_path, ctl):
    record = tmp_path / "hooks.log"
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text(
        "import multiprocessing\n"
        "import os\n"
        "bind = ['127.0.0.1:0']\n"
        "workers = 2\n"
        "threads = 3\n"
        "worker_class = 'gthread'\n"
        "worker_tmp_dir = '/dev/shm'\n"
        "wsgi_app = 'hello:app'\n"
        f"control_socket = {ctl!r}\n"
        f"RECORD = {str(record)!r}\n"
        "def _rec(line):\n"
        "    with open(RECORD, 'a') as f:\n"
        "        f.write(line + '\\n')\n"
        "def on_starting(server):\n"
        "    _rec('on_starting')\n"
        "def when_ready(server):\n"
        "    server.log.info('ready hook: %s workers', server.num_workers)\n"
        "    _rec(f'when_ready {server.num_workers}')\n"
        "def post_fork(server, worker):\n"
        "    _rec(f'post_fork {worker.pid}')\n"
        "def post_worker_init(worker):\n"
        "    _rec(f'post_worker_init {worker.pid}')\n"
        "def pre_request(worker, req):\n"
        "    worker.log.debug('%s %s', req.method, req.path)\n"
        "    _rec(f'pre_request {req.method} {req.path}')\n"
        "def post_request(worker, req, environ, resp):\n"
        "    _rec(f'post_request {req.uri} {resp.status_code}')\n"
        "def worker_exit(server, worker):\n"
        "    _rec(f'worker_exit {worker.pid}')\n"
        "def on_exit(server):\n"
        "    _rec('on_exit')\n")

    out = prefork("check", "-c", str(conf), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "OK: the configuration is valid and hello:app imports" in out.stdout
    for line in ("workers", "threads", "when_ready", "post_request"):
        assert any(row.split()[0] == line and f"gunicorn file {conf}" in row
                   for row in out.stdout.splitlines()), (line, out.stdout)
    assert "'worker_tmp_dir' (gunicorn file" in out.stderr
    assert record.exists() is False     # check defines the hooks, it does not run them

    srv = ServerProcess(["start", "-c", str(conf)], cwd=tmp_path)
    try:
        assert len(workers_of(srv)) == 2
        assert "2 workers, 3 threads each" in srv.log
        srv.wait_for_log(r"ready hook: 2 workers")
        assert srv.log.count("is ignored: prefork's workers report") == 1
        assert get(srv, "/x?y=1").body == b"Hello, World!"
        wait_until(lambda: "post_request" in record.read_text())
        workers = workers_of(srv)
    finally:
        assert srv.stop() == 0
    lines = record.read_text().splitlines()
    assert lines[0] == "on_starting" and lines[-1] == "on_exit"
    assert "when_ready 2" in lines
    assert sorted(int(x.split()[1]) for x in lines if x.startswith("post_fork")) == workers
    assert sum(x.startswith("post_worker_init") for x in lines) == 2
    assert "pre_request GET /x" in lines and "post_request /x?y=1 200" in lines
    assert sum(x.startswith("worker_exit") for x in lines) == 2


def test_hup_reads_the_gunicorn_file_again(tmp_path, ctl):
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text(f"bind = '127.0.0.1:0'\nworkers = 1\ncontrol_socket = {ctl!r}\n")
    srv = ServerProcess(["start", "hello:app", "-c", str(conf)], cwd=tmp_path)
    try:
        assert len(workers_of(srv)) == 1
        conf.write_text(f"bind = '127.0.0.1:0'\nworkers = 3\ncontrol_socket = {ctl!r}\n")
        srv.signal(signal.SIGHUP)
        wait_until(lambda: len(workers_of(srv)) == 3, timeout=20)
        assert get(srv, "/").status == 200
    finally:
        srv.stop()


def test_print_config_names_each_source(tmp_path):
    toml = tmp_path / "prefork.toml"
    toml.write_text("threads = 3\nbacklog = 64\n")
    env = dict(ENV, PREFORK_KEEPALIVE="7")
    out = prefork("print-config", "--json", "-c", str(toml), "-w", "2", cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)["settings"]
    assert data["threads"] == {"value": 3, "source": "toml", "from": f"config file {toml}"}
    assert data["keepalive"]["source"] == "env" and data["keepalive"]["value"] == 7.0
    assert data["workers"] == {"value": 2, "source": "cli", "from": "command line --workers"}
    assert data["header_timeout"]["source"] == "default"

    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text("workers = 4\ntimeout = 60\nwsgi_app = 'hello:app'\n"
                    "def post_fork(server, worker):\n    pass\n")
    out = prefork("print-config", "-c", str(conf), "-t", "90", cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    rows = {line.split()[0]: line for line in out.stdout.splitlines()[1:]}
    assert out.stdout.startswith("APP  hello:app")
    assert rows["workers"].split()[1] == "4" and rows["workers"].endswith(f"gunicorn file {conf}")
    assert rows["timeout"].split()[1] == "90.0" and rows["timeout"].endswith("command line --timeout")
    assert rows["keepalive"].endswith("environment PREFORK_KEEPALIVE")
    assert rows["post_fork"].split()[1] == f"{conf}:post_fork"
    assert rows["backlog"].endswith("default")
    assert "SETTING" in out.stdout and len(rows) > 60


def test_mistyped_flags_and_commands_get_a_did_you_mean():
    out = prefork("start", "--workrs", "4", "hello:app")
    assert out.returncode == 2
    assert out.stderr.strip() == ("prefork start: error: unknown flag --workrs; did you mean "
                                  "--workers? (see prefork start --help)")
    out = prefork("check", "--keep-alve=3", "hello:app")
    assert out.returncode == 2 and "did you mean --keep-alive?" in out.stderr
    out = prefork("strat", "hello:app")
    assert out.returncode == 2 and "did you mean 'start'?" in out.stderr
    out = prefork("stop", "--pidfle", "x.pid")
    assert out.returncode == 2 and "did you mean --pidfile?" in out.stderr


@pytest.mark.parametrize("argv, expected", [
    (["-k", "gevent"], "gunicorn's worker class 'gevent' (command line --worker-class) is not "
                       "supported: prefork runs every request in a thread"),
    (["--certfile", "cert.pem", "--keyfile", "key.pem"], "prefork serves plain HTTP"),
    (["--check-config"], "use `prefork check APP` with the same flags"),
    (["--paste", "development.ini"], "paste.deploy.loadapp"),
])
def test_gunicorn_flags_prefork_refuses_say_what_to_use(argv, expected):
    out = prefork("start", *argv, "hello:app", "-b", "127.0.0.1:0")
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and expected in out.stderr, out.stderr


def test_gunicorn_flags_prefork_ignores_warn_and_serve(tmp_path, ctl):
    srv = ServerProcess(["start", "hello:app", "-b", "127.0.0.1:0", "-w", "1",
                         "--worker-tmp-dir", "/dev/shm", "--statsd-host", "localhost:8125",
                         "-k", "sync", "--control-socket", ctl], cwd=tmp_path)
    try:
        assert "'worker_tmp_dir' (command line --worker-tmp-dir) is ignored" in srv.log
        assert "'statsd_host' (command line --statsd-host) is ignored: prefork has no StatsD" \
            in srv.log
        assert "1 workers, 1 threads each" in srv.log    # -k sync: one request at a time
        assert get(srv, "/").body == b"Hello, World!"
    finally:
        srv.stop()


def test_daemon_pidfile_and_log_file_by_gunicorns_flags(tmp_path):
    pidfile, errlog = tmp_path / "app.pid", tmp_path / "error.log"
    out = prefork("start", "hello:app", "-D", "-p", str(pidfile), "--log-file", str(errlog),
                  "-b", "127.0.0.1:0", "-w", "1", "--control-socket", "", cwd=tmp_path)
    try:
        assert out.returncode == 0, out.stderr
        pid = int(pidfile.read_text())
        assert "Ready: 1 workers serving" in errlog.read_text()
    finally:
        stopped = prefork("stop", "--pid", str(pidfile), "--control-socket", "", cwd=tmp_path)
        if stopped.returncode != 0 and pidfile.exists():
            os.kill(int(pidfile.read_text()), signal.SIGKILL)
    assert stopped.returncode == 0, stopped.stderr
    assert f"master {pid} stopped" in stopped.stdout


def test_a_gunicorn_conf_py_left_in_the_directory_is_pointed_out(tmp_path):
    (tmp_path / "gunicorn.conf.py").write_text("workers = 2\n")
    out = prefork("check", "hello:app", cwd=tmp_path,
                  env=dict(ENV, GUNICORN_CMD_ARGS="--workers 3"))
    assert out.returncode == 0
    assert "./gunicorn.conf.py is not read unless named: -c gunicorn.conf.py" in out.stderr
    assert "GUNICORN_CMD_ARGS is not read" in out.stderr
    assert "Every setting is at its default." in out.stdout

"""gunicorn's flags and config-file names, mapped through the settings table."""

from __future__ import annotations

import pytest

from prefork.cli import GUNICORN_DEST, build_parser, resolve, unknown_arguments
from prefork.config import BY_GUNICORN_NAME, BY_NAME, SETTINGS, Config, ConfigError
from prefork.gunicorn_conf import (
    BY_ONLY_NAME,
    GUNICORN_ONLY,
    GunicornRequest,
    cli_implied,
    gunicorn_hook,
    gunicorn_map_markdown,
    is_gunicorn_file,
    load_file,
)

# Every setting of gunicorn 26.1 (gunicorn/config.py), with its flags.
GUNICORN_26 = {
    "config": ("-c", "--config"), "wsgi_app": (), "bind": ("-b", "--bind"),
    "backlog": ("--backlog",), "workers": ("-w", "--workers"),
    "worker_class": ("-k", "--worker-class"), "threads": ("--threads",),
    "worker_connections": ("--worker-connections",), "max_requests": ("--max-requests",),
    "max_requests_jitter": ("--max-requests-jitter",), "timeout": ("-t", "--timeout"),
    "graceful_timeout": ("--graceful-timeout",), "keepalive": ("--keep-alive",),
    "limit_request_line": ("--limit-request-line",),
    "limit_request_fields": ("--limit-request-fields",),
    "limit_request_field_size": ("--limit-request-field_size",), "reload": ("--reload",),
    "reload_engine": ("--reload-engine",), "reload_extra_files": ("--reload-extra-file",),
    "spew": ("--spew",), "check_config": ("--check-config",),
    "print_config": ("--print-config",), "preload_app": ("--preload",),
    "sendfile": ("--no-sendfile",), "reuse_port": ("--reuse-port",), "chdir": ("--chdir",),
    "daemon": ("-D", "--daemon"), "raw_env": ("-e", "--env"), "pidfile": ("-p", "--pid"),
    "worker_tmp_dir": ("--worker-tmp-dir",), "user": ("-u", "--user"),
    "group": ("-g", "--group"), "umask": ("-m", "--umask"), "initgroups": ("--initgroups",),
    "tmp_upload_dir": (), "secure_scheme_headers": (),
    "forwarded_allow_ips": ("--forwarded-allow-ips",), "accesslog": ("--access-logfile",),
    "disable_redirect_access_to_syslog": ("--disable-redirect-access-to-syslog",),
    "access_log_format": ("--access-logformat",),
    "errorlog": ("--error-logfile", "--log-file"), "loglevel": ("--log-level",),
    "capture_output": ("--capture-output",), "logger_class": ("--logger-class",),
    "logconfig": ("--log-config",), "logconfig_dict": (),
    "logconfig_json": ("--log-config-json",), "syslog_addr": ("--log-syslog-to",),
    "syslog": ("--log-syslog",), "syslog_prefix": ("--log-syslog-prefix",),
    "syslog_facility": ("--log-syslog-facility",),
    "enable_stdio_inheritance": ("-R", "--enable-stdio-inheritance"),
    "statsd_host": ("--statsd-host",), "dogstatsd_tags": ("--dogstatsd-tags",),
    "statsd_prefix": ("--statsd-prefix",), "enable_backlog_metric": ("--enable-backlog-metric",),
    "proc_name": ("-n", "--name"), "default_proc_name": (), "pythonpath": ("--pythonpath",),
    "paste": ("--paste", "--paster"), "on_starting": (), "on_reload": (), "when_ready": (),
    "pre_fork": (), "post_fork": (), "post_worker_init": (), "worker_int": (),
    "worker_abort": (), "pre_exec": (), "pre_request": (), "post_request": (),
    "child_exit": (), "worker_exit": (), "nworkers_changed": (), "on_exit": (),
    "ssl_context": (), "proxy_protocol": ("--proxy-protocol",),
    "proxy_allow_ips": ("--proxy-allow-from",), "protocol": ("--protocol",),
    "uwsgi_allow_ips": ("--uwsgi-allow-from",), "keyfile": ("--keyfile",),
    "certfile": ("--certfile",), "ssl_version": ("--ssl-version",),
    "cert_reqs": ("--cert-reqs",), "ca_certs": ("--ca-certs",),
    "suppress_ragged_eofs": ("--suppress-ragged-eofs",),
    "do_handshake_on_connect": ("--do-handshake-on-connect",), "ciphers": ("--ciphers",),
    "http_protocols": ("--http-protocols",), "http2_cleartext": ("--http2-cleartext",),
    "http2_max_concurrent_streams": ("--http2-max-concurrent-streams",),
    "http2_initial_window_size": ("--http2-initial-window-size",),
    "http2_max_frame_size": ("--http2-max-frame-size",),
    "http2_max_header_list_size": ("--http2-max-header-list-size",),
    "raw_paste_global_conf": ("--paste-global",),
    "permit_obsolete_folding": ("--permit-obsolete-folding",),
    "strip_header_spaces": ("--strip-header-spaces",),
    "permit_unconventional_http_method": ("--permit-unconventional-http-method",),
    "permit_unconventional_http_version": ("--permit-unconventional-http-version",),
    "casefold_http_method": ("--casefold-http-method",),
    "forwarder_headers": ("--forwarder-headers",), "header_map": ("--header-map",),
    "asgi_loop": ("--asgi-loop",), "asgi_lifespan": ("--asgi-lifespan",),
    "asgi_disconnect_grace_period": ("--asgi-disconnect-grace-period",),
    "http_parser": ("--http-parser",), "root_path": ("--root-path",),
    "dirty_apps": ("--dirty-app",), "dirty_workers": ("--dirty-workers",),
    "dirty_timeout": ("--dirty-timeout",), "dirty_threads": ("--dirty-threads",),
    "dirty_graceful_timeout": ("--dirty-graceful-timeout",), "on_dirty_starting": (),
    "dirty_post_fork": (), "dirty_worker_init": (), "dirty_worker_exit": (),
    "control_socket": ("--control-socket",), "control_socket_mode": ("--control-socket-mode",),
    "control_socket_disable": ("--no-control-socket",),
}


def parse(*argv: str) -> dict:
    ns, extras = build_parser().parse_known_args(["start", *argv])
    assert not extras
    return vars(ns)


def test_every_gunicorn_setting_is_mapped_or_answered_with_its_own_flags():
    for name, flags in GUNICORN_26.items():
        if name in BY_GUNICORN_NAME:
            assert BY_GUNICORN_NAME[name].gunicorn.flags == flags, name
        else:
            assert name in BY_ONLY_NAME, f"gunicorn's {name} is neither mapped nor answered"
            assert BY_ONLY_NAME[name].flags == flags, name
    assert not set(BY_ONLY_NAME) & set(BY_GUNICORN_NAME)
    assert set(BY_ONLY_NAME) | set(BY_GUNICORN_NAME) == set(GUNICORN_26)


def test_every_gunicorn_flag_parses_on_start():
    parser = build_parser()
    start = parser.commands["start"]
    for flags in GUNICORN_26.values():
        for flag in flags:
            assert flag in start._option_string_actions, flag


@pytest.mark.parametrize("argv, name, value", [
    (["-w", "4"], "workers", 4),
    (["-b", "0.0.0.0:8000", "-b", "unix:/tmp/x.sock"], "bind", ["0.0.0.0:8000", "unix:/tmp/x.sock"]),
    (["-t", "60"], "timeout", 60.0),
    (["-D"], "daemon", True),
    (["-p", "/run/app.pid"], "pidfile", "/run/app.pid"),
    (["--pid", "/run/app.pid"], "pidfile", "/run/app.pid"),
    (["-u", "nobody"], "user", "nobody"),
    (["-g", "nogroup"], "group", "nogroup"),
    (["-m", "007"], "umask", 0o007),
    (["-e", "A=1", "-e", "B=x=y"], "env", {"A": "1", "B": "x=y"}),
    (["--access-logfile", "-"], "accesslog", "-"),
    (["--error-logfile", "/tmp/e.log"], "errorlog", "/tmp/e.log"),
    (["--log-file", "/tmp/e.log"], "errorlog", "/tmp/e.log"),
    (["--log-level", "DEBUG"], "loglevel", "debug"),
    (["--max-requests", "1000"], "max_requests", 1000),
    (["--max-requests-jitter", "50"], "max_requests_jitter", 50),
    (["--graceful-timeout", "5"], "graceful_timeout", 5.0),
    (["--keep-alive", "2"], "keepalive", 2.0),
    (["--forwarded-allow-ips", "10.0.0.1,10.0.0.0/8"], "forwarded_allow_ips",
     ["10.0.0.1", "10.0.0.0/8"]),
    (["--forwarded-allow-ips", "*"], "forwarded_allow_ips", ["*"]),
    (["--proxy-protocol"], "proxy_protocol", "auto"),
    (["--proxy-protocol", "v2"], "proxy_protocol", "v2"),
    (["--proxy-allow-from", "10.0.0.1"], "proxy_allow_ips", ["10.0.0.1"]),
    (["--threads", "4"], "threads", 4),
    (["--preload"], "preload", True),
    (["--chdir", "/srv"], "chdir", "/srv"),
    (["--pythonpath", "/a,/b"], "pythonpath", ["/a", "/b"]),
    (["--reload"], "reload", True),
    (["--reload-extra-file", "t.html", "--reload-extra-file", "u.html"], "reload_extra_files",
     ["t.html", "u.html"]),
    (["--limit-request-line", "4094"], "limit_request_line", 4094),
    (["--limit-request-fields", "50"], "limit_request_fields", 50),
    (["--limit-request-field_size", "4096"], "limit_request_field_size", 4096),
    (["--backlog", "64"], "backlog", 64),
    (["--worker-connections", "1000"], "max_connections", 1000),
    (["--access-logformat", "%(h)s %(s)s"], "access_log_format", "%(h)s %(s)s"),
    (["--log-syslog-to", "udp://127.0.0.1:514"], "syslog_addr", "udp://127.0.0.1:514"),
    (["--root-path", "/app"], "root_path", "/app"),
])
def test_gunicorn_flags_set_the_prefork_setting(argv, name, value):
    args = parse(*argv)
    cfg = resolve({k: v for k, v in args.items() if k in BY_NAME}, None, {})
    assert getattr(cfg, name) == value
    assert cfg.source(name) == f"command line {BY_NAME[name].flag}"


def _given(*argv: str) -> dict:
    return {k[len(GUNICORN_DEST):]: v for k, v in parse(*argv).items()
            if k.startswith(GUNICORN_DEST)}


def _flags() -> dict:
    return {g.name: next(f for f in g.flags if f.startswith("--")) for g in GUNICORN_ONLY
            if g.flags}


@pytest.mark.parametrize("argv, implied", [
    (["-k", "gthread"], {}),
    (["-k", "gunicorn.workers.gthread.ThreadWorker"], {}),
    (["-k", "sync"], {"threads": 1}),
    (["-k", "gunicorn.workers.sync.SyncWorker"], {"threads": 1}),
    (["--log-syslog"], {"syslog_addr": "udp://localhost:514"}),
    (["--no-control-socket"], {"control_socket": ""}),
    (["--protocol", "http"], {}),
    (["--initgroups"], {}),
])
def test_gunicorn_only_flags_that_translate(argv, implied):
    warnings: list[str] = []
    got = cli_implied(_given(*argv), _flags(), warnings)
    assert {k: v for k, (v, _) in got.items()} == implied
    assert warnings == []


def test_sync_worker_yields_to_threads_given_explicitly():
    warnings: list[str] = []
    implied = cli_implied(_given("-k", "sync"), _flags(), warnings)
    assert resolve({}, None, {}, implied).threads == 1
    cfg = resolve({"threads": "4"}, None, {}, implied)
    assert cfg.threads == 4 and cfg.source("threads") == "command line --threads"


@pytest.mark.parametrize("argv, expected", [
    (["-k", "gevent"], "worker class 'gevent' (command line --worker-class) is not supported: "
                       "prefork runs every request in a thread"),
    (["-k", "eventlet"], "without monkey-patching"),
    (["-k", "uvicorn.workers.UvicornWorker"], "prefork serves WSGI only"),
    (["-k", "tornado"], "Tornado's own server"),
    (["-k", "gunicorn.workers.ggevent.GeventWorker"], "without monkey-patching"),
    (["-k", "egg:gunicorn#gevent"], "without monkey-patching"),
    (["-k", "gunicorn.workers.gasgi.ASGIWorker"], "prefork serves WSGI only"),
    (["-k", "myproject.workers.Custom"], "prefork has no worker classes"),
    (["--certfile", "c.pem"], "gunicorn setting 'certfile' (command line --certfile) is not "
                              "supported: prefork serves plain HTTP"),
    (["--keyfile", "k.pem"], "end TLS in nginx"),
    (["--paste", "app.ini"], "paste.deploy.loadapp"),
    (["--check-config"], "use `prefork check APP`"),
    (["--print-config"], "use `prefork print-config`"),
    (["--protocol", "uwsgi"], "not uwsgi_pass"),
])
def test_gunicorn_only_flags_that_are_refused(argv, expected):
    with pytest.raises(ConfigError) as e:
        cli_implied(_given(*argv), _flags(), [])
    assert expected in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("argv, expected", [
    (["--worker-tmp-dir", "/dev/shm"], "'worker_tmp_dir' (command line --worker-tmp-dir) is "
                                       "ignored: prefork's workers report to the master"),
    (["--statsd-host", "localhost:8125"], "prefork status --json"),
    (["--no-sendfile"], "sendfile(2)"),
    (["--capture-output"], "journal"),
    (["-n", "myapp"], "prefork: master [APP]"),
    (["-R"], "/dev/null"),
    (["--spew"], "pdb"),
    (["--log-config", "log.ini"], "dictConfig"),
    (["--header-map", "dangerous"], "underscore"),
])
def test_gunicorn_only_flags_that_are_ignored_with_a_warning(argv, expected):
    warnings: list[str] = []
    assert cli_implied(_given(*argv), _flags(), warnings) == {}
    assert len(warnings) == 1 and expected in warnings[0]


def test_gunicorn_defaults_pass_silently():
    warnings: list[str] = []
    cli_implied(_given("--header-map", "drop", "--http-protocols", "h1"), _flags(), warnings)
    assert warnings == []


def test_mistyped_flag_gets_the_closest_one():
    parser = build_parser()
    start = parser.commands["start"]
    assert unknown_arguments(start, "start", ["--workrs", "4"]) == \
        "prefork start: error: unknown flag --workrs; did you mean --workers? " \
        "(see prefork start --help)"
    assert "did you mean --keep-alive?" in unknown_arguments(start, "start", ["--keep-alve=3"])
    assert "did you mean --access-logfile?" in unknown_arguments(start, "start",
                                                                   ["--acces-logfile"])
    assert "did you mean" not in unknown_arguments(start, "start", ["--zzzzzzzz"])
    stop = parser.commands["stop"]
    assert "did you mean --pidfile?" in unknown_arguments(stop, "stop", ["--pidfle"])


# -- the config file ------------------------------------------------------------

def test_is_gunicorn_file():
    assert is_gunicorn_file("gunicorn.conf.py") and is_gunicorn_file("python:mysite.gconf")
    assert is_gunicorn_file("file:/etc/gunicorn/app.conf")
    assert not is_gunicorn_file("prefork.toml")


def test_file_names_are_mapped_and_sourced(tmp_path):
    f = tmp_path / "gunicorn.conf.py"
    f.write_text(
        "import multiprocessing\n"
        "bind = '0.0.0.0:8000'\n"
        "workers = 3\n"
        "worker_connections = 500\n"
        "preload_app = True\n"
        "raw_env = ['A=1', 'B=2']\n"
        "user = 0\n"
        "proxy_protocol = True\n"
        "accesslog = None\n"
        "pidfile = None\n"
        "forwarded_allow_ips = '10.0.0.1,10.0.0.2'\n"
        "secure_scheme_headers = {'X-FORWARDED-PROTO': 'https'}\n"
        "header_timeout = 4\n"              # prefork's own name works too
        "wsgi_app = 'mysite.wsgi:application'\n"
        "cores = multiprocessing.cpu_count()\n"   # a helper variable: ignored
        "def helper(): pass\n")
    cfg = resolve({"workers": "5"}, str(f), {"PREFORK_THREADS": "2"})
    assert cfg.bind == ["0.0.0.0:8000"] and cfg.max_connections == 500 and cfg.preload
    assert cfg.env == {"A": "1", "B": "2"} and cfg.user == "0"
    assert cfg.proxy_protocol == "auto" and cfg.accesslog == "" and cfg.pidfile == ""
    assert cfg.forwarded_allow_ips == ["10.0.0.1", "10.0.0.2"]
    assert cfg.secure_scheme_headers == {"X-FORWARDED-PROTO": "https"}
    assert cfg.header_timeout == 4.0
    assert cfg.wsgi_app == "mysite.wsgi:application"
    assert cfg.source("bind") == f"gunicorn file {f}"
    assert cfg.workers == 5 and cfg.source("workers") == "command line --workers"
    assert cfg.threads == 2 and cfg.source("threads") == "environment PREFORK_THREADS"
    assert cfg.warnings == []


def test_file_warns_once_per_unsupported_name_and_suggests_for_typos(tmp_path):
    f = tmp_path / "g.py"
    f.write_text("worker_tmp_dir = '/dev/shm'\nstatsd_host = 'localhost:8125'\n"
                 "statsd_prefix = ''\nworkres = 4\nspew = False\n"
                 "def pre_exec(server): pass\n")
    cfg = Config()
    load_file(cfg, str(f))
    assert len(cfg.warnings) == 4, cfg.warnings
    assert any("'worker_tmp_dir' (gunicorn file" in w and "shared memory" in w
               for w in cfg.warnings)
    assert any("'statsd_host'" in w for w in cfg.warnings)
    assert any("'pre_exec'" in w and "re-executes" in w for w in cfg.warnings)
    assert any("'workres' in" in w and "did you mean 'workers'?" in w for w in cfg.warnings)


def test_file_with_a_misspelt_hook_is_an_error_naming_the_hook(tmp_path):
    f = tmp_path / "g.py"
    f.write_text("def post_fok(server, worker):\n    pass\n")
    with pytest.raises(ConfigError, match=r"'post_fok' \(gunicorn file .*g.py\) is not a hook, "
                                          r"so it would never be called; did you mean 'post_fork'\?"):
        load_file(Config(), str(f))
    # Helpers and real hooks are fine.
    f.write_text("import os\ndef _post_fok(): pass\ndef number_of_workers(): return 2\n"
                 "workers = number_of_workers()\ndef post_fork(server, worker): pass\n")
    cfg = Config()
    load_file(cfg, str(f))
    assert cfg.workers == 2 and callable(cfg.post_fork) and cfg.warnings == []


def test_hook_names_are_declared_once():
    from typing import get_args

    from prefork.hooks import HOOKS, HookName, Hooks
    assert tuple(HOOKS) == get_args(HookName)
    hooks = Hooks(Config())
    with pytest.raises(KeyError, match="no hook is named 'post_fok'"):
        hooks.call("post_fok")      # type: ignore[arg-type]
    hooks.call("post_fork")         # none configured: nothing happens


def test_file_refuses_what_would_change_what_clients_get(tmp_path):
    f = tmp_path / "g.py"
    f.write_text("certfile = '/etc/ssl/c.pem'\n")
    with pytest.raises(ConfigError, match=r"'certfile' \(gunicorn file .*g.py\) is not supported"):
        load_file(Config(), str(f))
    f.write_text("worker_class = 'gevent'\n")
    with pytest.raises(ConfigError, match="worker class 'gevent'"):
        load_file(Config(), str(f))
    f.write_text("worker_class = 'sync'\n")
    cfg = Config()
    load_file(cfg, str(f))
    assert cfg.threads == 1


def test_file_bad_value_names_setting_value_and_allowed(tmp_path):
    f = tmp_path / "g.py"
    f.write_text("workers = 'four'\n")
    with pytest.raises(ConfigError) as e:
        load_file(Config(), str(f))
    assert str(e.value) == (f"invalid value for setting 'workers' (gunicorn file {f}): "
                            "'four'; allowed: an integer from 1 to 1024")


def test_file_that_fails_says_where(tmp_path):
    f = tmp_path / "g.py"
    f.write_text("workers = 2\nbind = undefined_name\n")
    with pytest.raises(ConfigError, match=r"failed at line 2: NameError: name 'undefined_name'"):
        load_file(Config(), str(f))
    f.write_text("workers = (\n")
    with pytest.raises(ConfigError, match="failed at line 1: SyntaxError"):
        load_file(Config(), str(f))
    with pytest.raises(ConfigError, match="cannot read config file .*missing.py"):
        load_file(Config(), str(tmp_path / "missing.py"))


def test_syslog_addr_counts_only_with_syslog_as_in_gunicorn(tmp_path):
    f = tmp_path / "g.py"
    f.write_text("syslog = False\nsyslog_addr = 'udp://localhost:514'\n")
    cfg = Config()
    load_file(cfg, str(f))
    assert cfg.syslog_addr == "" and cfg.warnings == []
    f.write_text("syslog = True\n")
    cfg = Config()
    load_file(cfg, str(f))
    assert cfg.syslog_addr == "udp://localhost:514"
    f.write_text("syslog = True\nsyslog_addr = 'unix:///dev/log'\n")
    cfg = Config()
    load_file(cfg, str(f))
    assert cfg.syslog_addr == "unix:///dev/log"


def test_python_module_config(tmp_path, monkeypatch):
    (tmp_path / "gconf_for_test.py").write_text("workers = 2\nkeepalive = 9\n")
    monkeypatch.chdir(tmp_path)
    cfg = resolve({}, "python:gconf_for_test", {})
    assert cfg.workers == 2 and cfg.keepalive == 9.0
    assert cfg.source("workers") == "gunicorn file python:gconf_for_test"


def test_hooks_get_gunicorn_shaped_arguments():
    seen = []
    worker = type("W", (), {"pid": 7, "number": 1, "generation": 1})()

    def pre_request(worker, req):
        seen.append(("pre", worker.pid, worker.log.name, req.method, req.path, req.uri,
                     req.version, dict(req.headers)["HOST"]))

    def post_request(worker, req, environ, resp):
        seen.append(("post", req.path, environ["QUERY_STRING"], resp.status_code))

    def post_request_short(worker, req):
        seen.append(("short", req.method))

    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/a", "QUERY_STRING": "b=1",
               "RAW_URI": "/a?b=1", "SERVER_PROTOCOL": "HTTP/1.1", "HTTP_HOST": "x"}
    gunicorn_hook("pre_request", pre_request, "f:pre_request")(worker, environ)
    gunicorn_hook("post_request", post_request, "f:post_request")(worker, environ, "404 Not Found")
    gunicorn_hook("post_request", post_request_short, "f:p")(worker, environ, "200 OK")
    assert seen == [("pre", 7, "prefork.error", "GET", "/a", "/a?b=1", (1, 1), "x"),
                    ("post", "/a", "b=1", 404), ("short", "GET")]
    assert GunicornRequest({"CONTENT_TYPE": "text/plain"}).headers == [("CONTENT-TYPE",
                                                                        "text/plain")]


def test_settings_docs_name_gunicorn_and_the_map_covers_every_row():
    table = gunicorn_map_markdown()
    for name in GUNICORN_26:
        assert f"| `{name}` |" in table, name
    assert sum(1 for s in SETTINGS if s.gunicorn) == len(BY_GUNICORN_NAME)

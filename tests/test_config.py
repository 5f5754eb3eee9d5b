"""The settings table: sources, precedence, validation messages, generated docs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from prefork.cli import resolve
from prefork.config import (
    SETTINGS,
    Config,
    ConfigError,
    example_toml,
    settings_markdown,
    settings_module,
)

ROOT = Path(__file__).resolve().parent.parent


def test_defaults_come_from_the_table():
    cfg = Config()
    for s in SETTINGS:
        assert getattr(cfg, s.name) == s.default
        assert cfg.source(s.name) == "default"


def test_precedence_defaults_toml_env_cli(tmp_path):
    toml = tmp_path / "p.toml"
    toml.write_text('threads = 3\nkeepalive = 7\nbacklog = 100\nbind = ["127.0.0.1:9"]\n')
    cfg = resolve({"threads": "5"}, str(toml), {"PREFORK_KEEPALIVE": "9", "PREFORK_THREADS": "4"})
    assert cfg.threads == 5 and cfg.source("threads").startswith("command line")
    assert cfg.keepalive == 9.0 and cfg.source("keepalive") == "environment PREFORK_KEEPALIVE"
    assert cfg.backlog == 100 and "config file" in cfg.source("backlog")
    assert cfg.bind == ["127.0.0.1:9"]
    assert cfg.header_timeout == 10.0


def test_prefork_toml_in_cwd_is_read(tmp_path, monkeypatch):
    (tmp_path / "prefork.toml").write_text("threads = 2\n")
    monkeypatch.chdir(tmp_path)
    assert resolve({}, None, {}).threads == 2


@pytest.mark.parametrize("name, value, expected", [
    ("threads", "abc", "invalid value for setting 'threads' (test): 'abc'; allowed: an integer from 1 to 1024"),
    ("threads", 0, "allowed: an integer from 1 to 1024"),
    ("keepalive", "-1", "allowed: a number of seconds >= 0"),
    ("keepalive", True, "allowed: a number of seconds >= 0"),
    ("bind", "localhost", "expected HOST:PORT, [IPv6]:PORT or unix:PATH"),
    ("bind", "127.0.0.1:99999", "port '99999' is not a number from 0 to 65535"),
    ("loglevel", "loud", "allowed: one of debug, info, warning, error, critical"),
    ("bind", ["127.0.0.1:0", "unix:"],
     "invalid value for setting 'bind' (test): 'unix:'; unix: needs a path"),
    ("metrics_bind", "fd://3",
     "invalid value for setting 'metrics_bind' (test): 'fd://3'; an inherited descriptor "
     "cannot be used here"),
    ("metrics_bind", "nowhere", "'nowhere'; expected HOST:PORT, [IPv6]:PORT or unix:PATH"),
    ("access_log_format", "%(h)s %(nope)s",
     "invalid value for setting 'access_log_format' (test): '%(h)s %(nope)s'; "
     "access log format does not work"),
])
def test_bad_values_name_setting_value_and_what_is_allowed(name, value, expected):
    with pytest.raises(ConfigError) as e:
        Config().set(name, value, "test")
    assert expected in str(e.value)
    assert "\n" not in str(e.value)


def test_a_refused_value_leaves_the_setting_as_it_was():
    cfg = Config({"bind": ["127.0.0.1:0"], "access_log_format": "%(h)s"})
    for name, bad in (("bind", ["localhost"]), ("access_log_format", "%(zz)s"),
                      ("metrics_bind", "fd://4")):
        with pytest.raises(ConfigError):
            cfg.set(name, bad, "test")
    assert cfg.bind == ["127.0.0.1:0"] and cfg.access_log_format == "%(h)s"
    assert cfg.metrics_bind == "" and cfg.source("metrics_bind") == "default"


def test_good_addresses_pass():
    cfg = Config({"bind": ["fd://3", "[::1]:0", "unix:/tmp/x.sock"], "metrics_bind": "unix:/m"})
    assert cfg.bind == ["fd://3", "[::1]:0", "unix:/tmp/x.sock"] and cfg.metrics_bind == "unix:/m"


def test_unknown_setting_suggests_the_closest():
    with pytest.raises(ConfigError, match=r"unknown setting 'thread' \(test\); did you mean 'threads'\?"):
        Config().update({"thread": 4}, "test")


def test_unknown_env_setting_is_refused():
    with pytest.raises(ConfigError, match="unknown setting 'keepalvie'.*did you mean 'keepalive'"):
        resolve({}, None, {"PREFORK_KEEPALVIE": "3"})


def test_bad_toml_is_one_clear_line(tmp_path):
    f = tmp_path / "bad.toml"
    f.write_text("threads = = 3\n")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        resolve({}, str(f), {})


def test_cli_bad_setting_exits_2_with_one_line():
    proc = subprocess.run([sys.executable, "-m", "prefork", "start", "--threads", "many"],
                          capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("prefork: error: invalid value for setting 'threads' "
                                   "(command line --threads): 'many'; allowed: an integer from 1 to 1024")


def test_cli_missing_app_module_exits_3_with_reason():
    proc = subprocess.run([sys.executable, "-m", "prefork", "start", "no_such_module_xyz:app",
                           "--bind", "127.0.0.1:0"], capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert proc.returncode == 3
    assert "cannot import module 'no_such_module_xyz'" in proc.stderr


def test_cli_app_that_raises_on_import_exits_3_with_traceback(tmp_path):
    (tmp_path / "broken_app.py").write_text("raise RuntimeError('import-time failure')\n")
    proc = subprocess.run([sys.executable, "-m", "prefork", "start", "broken_app:app",
                           "--bind", "127.0.0.1:0"], capture_output=True, text=True, timeout=30,
                          cwd=tmp_path)
    assert proc.returncode == 3
    assert "RuntimeError: import-time failure" in proc.stderr


def test_address_in_use_is_a_clear_error():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        proc = subprocess.run([sys.executable, "-m", "prefork", "start", "hello:app",
                               "--bind", f"127.0.0.1:{port}"], capture_output=True, text=True,
                              timeout=30, cwd=ROOT / "tests" / "apps")
    assert proc.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in proc.stderr


def test_docs_settings_md_is_current():
    assert (ROOT / "docs" / "settings.md").read_text() == settings_markdown(), \
        "docs/settings.md is stale: run `make settings`"


def test_settings_types_module_is_current():
    assert (ROOT / "prefork" / "_settings.py").read_text() == settings_module(), \
        "prefork/_settings.py is stale: run `make settings`"


def test_every_setting_has_a_declared_type_and_its_default_fits_it():
    import typing

    from prefork._settings import Settings
    hints = typing.get_type_hints(Settings)
    assert sorted(hints) == sorted(s.name for s in SETTINGS)
    for s in SETTINGS:
        hint = hints[s.name]
        origin = typing.get_origin(hint)
        if origin is typing.Literal:
            assert s.default in typing.get_args(hint), s.name
        elif origin in (list, dict):
            assert isinstance(s.default, origin), s.name
        elif hint in (int, float, bool, str):
            assert type(s.default) is hint, s.name
        else:   # a hook: "module:function" or a callable
            assert s.default == "", s.name


def test_no_setting_is_shadowed_by_a_config_method():
    # Config reads settings through __getattr__, which a method of the same
    # name (a setting called "source" or "update") would silently win over.
    assert [s.name for s in SETTINGS if hasattr(Config, s.name)] == []


def test_docs_migrating_md_gunicorn_map_is_current():
    from prefork.gunicorn_conf import update_migrating
    text = (ROOT / "docs" / "migrating.md").read_text()
    assert update_migrating(text) == text, \
        "the gunicorn map in docs/migrating.md is stale: run `make settings`"


def test_conf_prefork_toml_is_current_and_loads():
    text = (ROOT / "conf" / "prefork.toml").read_text()
    assert text == example_toml(), "conf/prefork.toml is stale: run `make settings`"
    # Uncommenting every setting gives a valid file with the defaults.
    import tomllib
    values = tomllib.loads("\n".join(line[2:] for line in text.splitlines()
                                     if line.startswith("# ") and " = " in line
                                     and " = ..." not in line))
    fixed = [s for s in SETTINGS if s.default_doc is None]
    assert {s.name for s in fixed} == set(values)
    assert all(values[s.name] == s.default for s in fixed)
    for s in SETTINGS:
        if s.default_doc is not None:
            assert f"# {s.name} = ...  (default: {s.default_doc})" in text

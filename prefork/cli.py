"""The ``prefork`` command (also ``python -m prefork``).

``start`` serves; ``stop``, ``reload``, ``upgrade`` and ``status`` find the
running master through its control socket (falling back to the pidfile and a
signal) and wait for the outcome; ``check`` validates the configuration and
imports the app without serving. The flags of ``start`` come from
prefork.config.SETTINGS.
"""

from __future__ import annotations

import argparse
import difflib
import json
import logging
import os
import re
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

from . import container, control, gunicorn_conf, systemd
from ._version import __version__
from .config import (
    BY_NAME,
    SETTINGS,
    Bool,
    Config,
    ConfigError,
    Octal,
    Setting,
    sections,
    source_kind,
    toml_value,
)
from .daemon import check_user_group, read_pid
from .gunicorn_conf import GUNICORN_ONLY, cli_implied, is_gunicorn_file

log = logging.getLogger("prefork.error")

APP_HELP = ("MODULE:CALLABLE, MODULE (defining 'application' or 'app'), a factory "
            "MODULE:create_app(), or nothing for the built-in demo site")


CONFIG_HELP = ("config file: TOML, or a gunicorn config (a .py file, file:PATH or python:MODULE) "
               "(default: ./prefork.toml when present)")
GUNICORN_DEST = "gunicorn:"     # argparse dest prefix of the flags in GUNICORN_ONLY


def load_config_file(cfg: Config, path: str) -> None:
    """Read ``-c FILE`` into ``cfg``: a gunicorn Python file (``*.py``,
    ``python:MODULE``, ``file:PATH``) or TOML.

    Chosen here, above both loaders, because gunicorn_conf reads the
    settings table in config: config cannot call it back without a cycle.
    """
    if is_gunicorn_file(path):
        gunicorn_conf.load_file(cfg, path)
    else:
        cfg.load_toml(path)


def resolve(cli: Mapping[str, Any], config_file: str | None = None,
            environ: Mapping[str, str] | None = None,
            implied: Mapping[str, tuple[Any, str]] | None = None) -> Config:
    """The settings from every source, each overriding the one before:
    defaults < config file (``-c``, else ``./prefork.toml`` when present;
    TOML or gunicorn's) < environment < command line.

    ``implied`` are settings that a command-line flag of gunicorn's implies
    (``-k sync`` means threads = 1), as (value, source): below the flags
    given for those settings themselves. Raises ConfigError. HUP calls it
    again, so that a reload reads the same sources afresh.
    """
    cfg = Config()
    if config_file is None and os.path.exists("prefork.toml"):
        config_file = "prefork.toml"
    if config_file:
        load_config_file(cfg, config_file)
    cfg.load_env(os.environ if environ is None else environ)
    for name, (value, source) in (implied or {}).items():
        cfg.set(name, value, source)
    for name, value in cli.items():
        setting = BY_NAME[name]
        cfg.set(name, value, f"command line {setting.flag}")
    return cfg


class Parser(argparse.ArgumentParser):
    """argparse with a did-you-mean for a mistyped command."""

    def error(self, message: str) -> NoReturn:
        m = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if m:
            choices = re.findall(r"'([^']*)'", m.group(2))
            close = difflib.get_close_matches(m.group(1), choices, n=1)
            if close:
                message += f"; did you mean '{close[0]}'?"
        super().error(message)


def _add_setting(parser: argparse._ActionsContainer, name: str) -> None:
    s = BY_NAME[name]
    parser.add_argument(*s.flags, **setting_argument(s))


def setting_argument(s: Setting) -> dict[str, Any]:
    """argparse's add_argument() keywords for setting ``s`` (its flags aside):
    also used by ``manage.py prefork``."""
    default = s.default_doc or repr(s.default)
    kwargs: dict[str, Any] = {"dest": s.name, "default": argparse.SUPPRESS,
                              "metavar": s.metavar or s.name.upper(),
                              # argparse %-formats help texts: escape ours.
                              "help": f"{s.doc} [default: {default}; env {s.env}]".replace(
                                  "%", "%%")}
    if s.multiple:
        kwargs["action"] = "append"
    elif isinstance(s.type, Bool):
        kwargs["action"] = argparse.BooleanOptionalAction
        del kwargs["metavar"]
    elif s.const is not None:
        kwargs.update(nargs="?", const=s.const)
    return kwargs


def _add_settings(cmd: argparse.ArgumentParser) -> None:
    """Every setting's flags, then gunicorn's flags that prefork answers
    (hidden from --help: docs/migrating.md lists them)."""
    for section, settings in sections():
        group = cmd.add_argument_group(section)
        for s in settings:
            _add_setting(group, s.name)
    taken = set(cmd._option_string_actions)
    for g in GUNICORN_ONLY:
        flags = [f for f in g.flags if f not in taken]
        if not flags:
            continue
        kwargs: dict[str, Any] = {"dest": GUNICORN_DEST + g.name, "default": argparse.SUPPRESS,
                                  "help": argparse.SUPPRESS}
        if not g.takes_value:
            kwargs.update(action="store_const",
                          const=not g.default if isinstance(g.default, bool) else True)
        elif g.multiple:
            kwargs["action"] = "append"
        cmd.add_argument(*flags, **kwargs)


# The subcommands that ask a running master, by their control commands' names.
REMOTE: dict[control.ControlCommand, str] = {
    "stop": "stop the running server (gracefully unless --fast)",
    "reload": "reload the configuration and the app (like HUP), and report whether the new "
              "app booted",
    "upgrade": "start a new master from the current code (like USR2)",
    "status": "show the master and each worker",
    "dump": "print every worker's threads, their stacks and the request each one serves, "
            "without stopping anything",
}


def build_parser() -> Parser:
    parser = Parser(prog="prefork", description="A production WSGI server.",
                    epilog="gunicorn's flags work too; docs/migrating.md maps each one.")
    parser.add_argument("--version", action="version", version=f"prefork {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands: dict[str, argparse.ArgumentParser] = {}

    def app_command(name: str, help: str, description: str,
                    app_help: str = APP_HELP) -> argparse.ArgumentParser:
        """A command that takes an APP, -c FILE and every setting's flag."""
        cmd = sub.add_parser(name, help=help, description=description)
        cmd.add_argument("app", nargs="?", metavar="APP", help=app_help)
        cmd.add_argument("-c", "--config", metavar="FILE", help=CONFIG_HELP)
        commands[name] = cmd
        return cmd

    _add_settings(app_command("start", "serve an application",
                              f"Serve a WSGI application. APP is {APP_HELP}.",
                              app_help="the WSGI application to serve"))
    _add_settings(app_command("check", "validate the configuration and import the app",
                              "Validate the configuration and import the application "
                              "without serving; print the settings that are not at their "
                              "defaults. Exit status 0 when both are fine."))
    show = app_command("print-config", "show every setting and where it came from",
                       "Show the effective value of every setting and where it came from: "
                       "default, TOML file, gunicorn file, environment or command line. Takes "
                       "the same arguments as start; serves nothing.")
    show.add_argument("--json", action="store_true", help="print JSON")
    _add_settings(show)

    for name, text in REMOTE.items():
        cmd = sub.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")
        cmd.add_argument("-c", "--config", metavar="FILE", help=CONFIG_HELP)
        for setting in ("control_socket", "pidfile"):
            _add_setting(cmd, setting)
        if name == "stop":
            _add_setting(cmd, "graceful_timeout")
            cmd.add_argument("--fast", action="store_true",
                             help="stop at once (like INT), without waiting for requests")
        if name in ("status", "dump"):
            cmd.add_argument("--json", action="store_true", help="print JSON")
        if name == "dump":
            cmd.add_argument("--all", action="store_true",
                             help="the stacks of idle pool threads too")
        commands[name] = cmd
    parser.commands = commands  # type: ignore[attr-defined]
    return parser


def unknown_arguments(parser: argparse.ArgumentParser, command: str | None,
                      extras: list[str]) -> str:
    """One line for what argparse could not place: the first unknown flag
    with the closest flag of that command, or an unexpected argument."""
    flags = [f for f in parser._option_string_actions if f.startswith("-")]
    prog = f"prefork {command}" if command else "prefork"
    for token in extras:
        if token.startswith("-") and token != "-":
            flag = token.partition("=")[0]
            close = difflib.get_close_matches(flag, flags, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]}?" if close else ""
            return f"{prog}: error: unknown flag {flag}{hint} (see {prog} --help)"
    return f"{prog}: error: unexpected argument {extras[0]!r}"


def main(argv: Sequence[str] | None = None) -> int:
    # As PID 1 (a container), TERM/INT/QUIT stop start-up: the kernel would
    # drop them until the master's handlers are in.
    container.stop_on_early_signals()
    # First of all, before anything forks, daemonizes or calls setproctitle:
    # take NOTIFY_SOCKET, WATCHDOG_USEC and LISTEN_* out of the environment.
    sd = systemd.capture()
    parser = build_parser()
    ns, extras = parser.parse_known_args(argv)
    args = vars(ns)
    command = args.pop("command", None)
    if extras:
        sub = parser.commands.get(command, parser)  # type: ignore[attr-defined]
        print(unknown_arguments(sub, command, extras), file=sys.stderr)
        return 2
    if command is None:
        parser.print_help()
        return 2
    config_file = args.pop("config", None)
    app_spec = args.pop("app", None)
    extra: dict[str, Any] = {k: args.pop(k) for k in ("fast", "json", "all") if k in args}
    gunicorn_only = {k[len(GUNICORN_DEST):]: args.pop(k) for k in list(args)
                     if k.startswith(GUNICORN_DEST)}
    cli = {k: v for k, v in args.items() if k in BY_NAME}
    warnings: list[str] = []
    try:
        implied = cli_implied(gunicorn_only, _GUNICORN_FLAG, warnings)
        cfg = resolve(cli, config_file, implied=implied)
    except ConfigError as e:
        print(f"prefork: error: {e}", file=sys.stderr)
        return 2
    cfg.warnings[:0] = warnings
    if (command in ("start", "check", "print-config") and config_file is None
            and not os.path.exists("prefork.toml") and os.path.exists("gunicorn.conf.py")):
        cfg.warnings.append("./gunicorn.conf.py is not read unless named: "
                            "-c gunicorn.conf.py")
    if command in ("start", "check", "print-config") and os.environ.get("GUNICORN_CMD_ARGS"):
        cfg.warnings.append("GUNICORN_CMD_ARGS is not read: put its flags on the command "
                            "line, or use PREFORK_* variables (PREFORK_WORKERS=4)")
    app_spec = app_spec or cfg.wsgi_app
    if command == "start":
        return start(cfg, app_spec, cli, config_file, argv, sd, implied)
    _print_warnings(cfg)
    if command == "check":
        return check(cfg, app_spec)
    if command == "print-config":
        return print_config(cfg, app_spec, bool(extra.get("json")))
    return remote(control.command_named(command), cfg, extra)


# gunicorn-only setting -> the flag messages name it by (its long one)
_GUNICORN_FLAG = {g.name: next((f for f in g.flags if f.startswith("--")), g.name)
                  for g in GUNICORN_ONLY if g.flags}


def _print_warnings(cfg: Config) -> None:
    for line in cfg.warnings:
        print(f"prefork: warning: {line}", file=sys.stderr)


def _log_warnings(cfg: Config) -> None:
    for line in cfg.warnings:
        log.warning("%s", line)


def start(cfg: Config, app_spec: str | None, cli: dict[str, Any], config_file: str | None,
          argv: Sequence[str] | None, sd: systemd.Systemd | None = None,
          implied: dict[str, tuple[Any, str]] | None = None) -> int:
    from .master import Master
    from .server import setup_logging

    refused = container.why_no_daemon() if cfg.daemon else None
    if refused:
        print(f"prefork: error: {refused}", file=sys.stderr)
        return 2
    try:
        check_user_group(cfg.user, cfg.group)
        setup_logging(cfg)
    except (OSError, ValueError) as e:
        print(f"prefork: error: {e}", file=sys.stderr)
        return 2
    _log_warnings(cfg)
    sys.path.insert(0, os.getcwd())
    # HUP reads the file again after the master's chdir: from where it was found.
    found = config_file or ("prefork.toml" if os.path.exists("prefork.toml") else None)
    if found and not found.startswith("python:"):
        prefix = "file:" if found.startswith("file:") else ""
        found = prefix + os.path.abspath(found.removeprefix("file:"))
    config_path = found

    def reload_config() -> Config:
        new = resolve(cli, config_path, implied=implied)
        _log_warnings(new)
        return new

    try:
        master = Master(cfg, app_spec, argv=list(sys.argv[1:] if argv is None else argv),
                        reload_config=reload_config, systemd=sd)
    except ValueError as e:      # a hook that cannot be loaded
        log.error("%s", e)
        return 2
    return master.run()


def check(cfg: Config, app_spec: str | None) -> int:
    from .app import AppImportError, load_app
    from .hooks import Hooks

    try:
        check_user_group(cfg.user, cfg.group)
        Hooks(cfg)
    except ValueError as e:
        print(f"prefork: error: {e}", file=sys.stderr)
        return 2
    if cfg.chdir:
        os.chdir(cfg.chdir)
    sys.path[:0] = [os.getcwd(), *cfg.pythonpath]
    os.environ.update(cfg.env)
    try:
        app = load_app(app_spec)
    except AppImportError as e:
        print(f"prefork: error: {e}", file=sys.stderr)
        return 3
    except Exception:
        import traceback
        traceback.print_exc()
        print(f"prefork: error: the application {app_spec!r} failed to import", file=sys.stderr)
        return 3
    changed = [s for s in SETTINGS if cfg.source(s.name) != "default"]
    if changed:
        print("Settings other than the defaults (prefork print-config shows all):")
        print(settings_table(cfg, changed))
    else:
        print("Every setting is at its default.")
    print(f"OK: the configuration is valid and {app_spec or 'the demo site'} imports "
          f"({type(app).__name__})")
    return 0


def display_value(setting: Setting, value: Any) -> str:
    """A setting's value as TOML would write it; a hook as where it is defined."""
    if callable(value):
        return getattr(value, "prefork_origin", None) or \
            f"{value.__module__}:{getattr(value, '__qualname__', repr(value))}"
    if isinstance(setting.type, Octal):
        return f"0o{value:03o}"
    return toml_value(value)


def settings_table(cfg: Config, settings: Sequence[Setting]) -> str:
    rows = [("SETTING", "VALUE", "SOURCE")]
    rows += [(s.name, display_value(s, getattr(cfg, s.name)), cfg.source(s.name))
             for s in settings]
    # Past 40 characters a value pushes its own line's source out, not every line's.
    widths = [max(len(r[i]) for r in rows) for i in range(2)]
    widths[1] = min(widths[1], 40)
    return "\n".join(f"{r[0].ljust(widths[0])}  {r[1].ljust(widths[1])}  {r[2]}".rstrip()
                     for r in rows)


def print_config(cfg: Config, app_spec: str | None, as_json: bool) -> int:
    """Every setting's effective value and where it came from."""
    if as_json:
        out: dict[str, Any] = {"app": app_spec, "settings": {}}
        for s in SETTINGS:
            value = getattr(cfg, s.name)
            out["settings"][s.name] = {
                "value": display_value(s, value) if callable(value) else value,
                "source": source_kind(cfg.source(s.name)), "from": cfg.source(s.name)}
        print(json.dumps(out, indent=2))
        return 0
    print(f"APP  {app_spec or '(none: the demo site)'}")
    print(settings_table(cfg, SETTINGS))
    return 0


# -- talking to a running master -------------------------------------------

class NoMaster(Exception):
    pass


def _signal_by_pidfile(cfg: Config, sig: int) -> int:
    if not cfg.pidfile:
        raise NoMaster(f"no master answers on the control socket {cfg.control_socket!r}, "
                       "and no pidfile is configured")
    pid = read_pid(cfg.pidfile)
    if pid is None:
        raise NoMaster(f"no master answers on the control socket {cfg.control_socket!r}, "
                       f"and the pidfile {cfg.pidfile} holds no pid")
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        raise NoMaster(f"the pidfile {cfg.pidfile} names pid {pid}, which is not running") from None
    return pid


def _wait_gone(pid: int, timeout: float) -> bool:
    import psutil

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True     # exited; its parent has not reaped it yet
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


def remote(command: control.ControlCommand, cfg: Config, extra: dict[str, Any]) -> int:
    ctl = cfg.control_socket
    try:
        if command == "stop":
            fast = bool(extra.get("fast"))
            try:
                pid = control.request(ctl, "stop", 10, graceful=not fast)["pid"]
            except (ConnectionError, OSError):
                pid = _signal_by_pidfile(cfg, signal.SIGQUIT if fast else signal.SIGTERM)
            if _wait_gone(pid, 5 if fast else cfg.graceful_timeout + 10):
                print(f"prefork: master {pid} stopped")
                return 0
            print(f"prefork: error: master {pid} is still running", file=sys.stderr)
            return 1
        if command in ("reload", "upgrade"):
            try:
                wait = cfg.upgrade_timeout if command == "upgrade" or cfg.preload else cfg.timeout
                answer = control.request(ctl, command, wait + 120)
            except (ConnectionError, OSError):
                pid = _signal_by_pidfile(cfg, signal.SIGHUP if command == "reload" else signal.SIGUSR2)
                print(f"prefork: sent {'HUP' if command == 'reload' else 'USR2'} to master {pid}; "
                      "without a control socket the outcome is only in the error log")
                return 0
            if not answer.get("ok"):
                print(f"prefork: error: {answer.get('error')}", file=sys.stderr)
                return 1
            if command == "reload":
                print(f"prefork: reloaded; generation {answer.get('generation')} is serving")
            else:
                print(f"prefork: upgraded; the new master is pid {answer.get('pid')}")
            return 0
        if command == "dump":
            return dump(ctl, extra)
        # status
        try:
            answer = control.request(ctl, "status", 10)
        except (ConnectionError, OSError) as e:
            raise NoMaster(f"{e}; status needs the control socket") from None
        if extra.get("json"):
            print(json.dumps(answer, indent=2))
        else:
            print(format_status(answer))
        return 0
    except NoMaster as e:
        print(f"prefork: error: {e}", file=sys.stderr)
        return 1


def dump(ctl: str, extra: dict[str, Any]) -> int:
    from .dump import DUMP_WAIT, format_dump
    try:
        answer = control.request(ctl, "dump", DUMP_WAIT + 10)
    except (ConnectionError, OSError) as e:
        raise NoMaster(f"{e}; dump needs the control socket") from None
    if not answer.get("ok"):
        print(f"prefork: error: {answer.get('error')}", file=sys.stderr)
        return 1
    print(json.dumps(answer, indent=2) if extra.get("json")
          else format_dump(answer, idle_stacks=bool(extra.get("all"))))
    return 0 if not answer.get("missing") else 1


def _mib(n: int) -> str:
    return f"{n / 1048576:.1f}M" if n else "-"


def _age(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def format_status(answer: dict[str, Any]) -> str:
    m = answer["master"]
    lines = [f"master {m['pid']}  app {m['app']}  generation {m['generation']}  "
             f"workers {m['workers_wanted']}  up {_age(m['uptime'])}  "
             f"rss {_mib(m['rss'])}  listening on {', '.join(m['listeners'])}", ""]
    header = ("PID", "WORKER", "GEN", "STATE", "REQUESTS", "IN-FLIGHT", "OLDEST", "RSS", "USS",
              "PSS", "CPU%", "UPTIME")
    rows = [header]
    for w in answer["workers"]:
        rows.append((str(w["pid"]), str(w["number"]), str(w["generation"]), w["state"],
                     str(w["requests"]), str(w["in_flight"]),
                     _age(w["oldest_request_age"]) if w["in_flight"] else "-",
                     _mib(w["rss"]), _mib(w["uss"]), _mib(w["pss"]), f"{w['cpu_percent']:.1f}",
                     _age(w["uptime"])))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines += ["  ".join(c.rjust(wd) if i not in (3,) else c.ljust(wd)
                        for i, (c, wd) in enumerate(zip(r, widths, strict=True))) for r in rows]
    if m.get("reload"):
        lines += ["", f"reload in progress: {m['reload']}"]
    if m.get("boot_failures"):
        lines += ["", f"workers failing to boot: {m['boot_failures']} in a row: "
                      f"{m['last_boot_error']}"]
    if m.get("crashes"):
        lines += ["", f"workers crashed after booting: {m['crashes']}, the last "
                      f"{_age(m['last_crash_age'])} ago: {m['last_crash']}"]
    busy = [w for w in answer["workers"] if w["in_flight"] and w["oldest_request"]]
    if busy:
        oldest = max(busy, key=lambda w: w["oldest_request_age"])
        lines += ["", f"oldest request: {oldest['oldest_request']} in worker {oldest['pid']}, "
                      f"running for {oldest['oldest_request_age']:.1f}s"]
    return "\n".join(lines)


__all__ = ["main", "SETTINGS"]

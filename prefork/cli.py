"""The ``prefork`` command (also ``python -m prefork``).

``start`` serves; ``stop``, ``reload``, ``upgrade`` and ``status`` find the
running master through its control socket (falling back to the pidfile and a
signal) and wait for the outcome; ``check`` validates the configuration and
imports the app without serving. The flags of ``start`` come from
prefork.config.SETTINGS.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from typing import Any

from . import __version__, container, control, systemd
from .config import BY_NAME, SETTINGS, Bool, Config, ConfigError, resolve, sections
from .daemon import check_user_group, read_pid

log = logging.getLogger("prefork.error")

APP_HELP = ("MODULE:CALLABLE, MODULE (defining 'application' or 'app'), a factory "
            "MODULE:create_app(), or nothing for the built-in demo site")


def _add_setting(parser: argparse._ActionsContainer, name: str) -> None:
    s = BY_NAME[name]
    flags = [s.flag] + ([s.short] if s.short else [])
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
    parser.add_argument(*flags, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="prefork", description="A production WSGI server.")
    parser.add_argument("--version", action="version", version=f"prefork {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    start = sub.add_parser("start", help="serve an application",
                           description=f"Serve a WSGI application. APP is {APP_HELP}.")
    start.add_argument("app", nargs="?", metavar="APP", help="the WSGI application to serve")
    start.add_argument("-c", "--config", metavar="FILE",
                       help="TOML config file (default: ./prefork.toml when present)")
    for section, settings in sections():
        group = start.add_argument_group(section)
        for s in settings:
            _add_setting(group, s.name)

    check = sub.add_parser("check", help="validate the configuration and import the app",
                           description="Validate the configuration and import the application "
                           "without serving. Exit status 0 when both are fine.")
    check.add_argument("app", nargs="?", metavar="APP", help=APP_HELP)
    check.add_argument("-c", "--config", metavar="FILE", help="TOML config file")
    for section, settings in sections():
        group = check.add_argument_group(section)
        for s in settings:
            _add_setting(group, s.name)

    for name, text in (("stop", "stop the running server (gracefully unless --fast)"),
                       ("reload", "reload the configuration and the app (like HUP), and "
                                  "report whether the new app booted"),
                       ("upgrade", "start a new master from the current code (like USR2)"),
                       ("status", "show the master and each worker"),
                       ("dump", "print every worker's threads, their stacks and the request "
                                "each one serves, without stopping anything")):
        cmd = sub.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")
        cmd.add_argument("-c", "--config", metavar="FILE", help="TOML config file")
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # As PID 1 (a container), TERM/INT/QUIT stop start-up: the kernel would
    # drop them until the master's handlers are in.
    container.stop_on_early_signals()
    # First of all, before anything forks, daemonizes or calls setproctitle:
    # take NOTIFY_SOCKET, WATCHDOG_USEC and LISTEN_* out of the environment.
    sd = systemd.capture()
    parser = build_parser()
    args = vars(parser.parse_args(argv))
    command = args.pop("command", None)
    if command is None:
        parser.print_help()
        return 2
    config_file = args.pop("config", None)
    app_spec = args.pop("app", None)
    extra: dict[str, Any] = {k: args.pop(k) for k in ("fast", "json", "all") if k in args}
    cli = {k: v for k, v in args.items() if k in BY_NAME}
    try:
        cfg = resolve(cli, config_file)
    except ConfigError as e:
        print(f"prefork: error: {e}", file=sys.stderr)
        return 2
    if command == "start":
        return start(cfg, app_spec, cli, config_file, argv, sd)
    if command == "check":
        return check(cfg, app_spec)
    return remote(command, cfg, extra)


def start(cfg: Config, app_spec: str | None, cli: dict[str, Any], config_file: str | None,
          argv: Sequence[str] | None, sd: systemd.Systemd | None = None) -> int:
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
    sys.path.insert(0, os.getcwd())
    # HUP reads the file again after the master's chdir: from where it was found.
    found = config_file or ("prefork.toml" if os.path.exists("prefork.toml") else None)
    config_path = os.path.abspath(found) if found else None
    try:
        master = Master(cfg, app_spec, argv=list(sys.argv[1:] if argv is None else argv),
                        reload_config=lambda: resolve(cli, config_path), systemd=sd)
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
    print(f"OK: the configuration is valid and {app_spec or 'the demo site'} imports "
          f"({type(app).__name__})")
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


def remote(command: str, cfg: Config, extra: dict[str, Any]) -> int:
    ctl = cfg.control_socket
    try:
        if command == "stop":
            fast = bool(extra.get("fast"))
            try:
                pid = control.request(ctl, {"cmd": "stop", "graceful": not fast}, 10)["pid"]
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
                answer = control.request(ctl, {"cmd": command}, wait + 120)
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
            answer = control.request(ctl, {"cmd": "status"}, 10)
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
        answer = control.request(ctl, {"cmd": "dump"}, DUMP_WAIT + 10)
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

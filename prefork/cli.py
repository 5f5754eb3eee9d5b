"""The ``prefork`` command. Flags come from prefork.config.SETTINGS."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from . import __version__
from .config import SETTINGS, Bool, ConfigError, resolve, sections
from .master import Master
from .server import setup_logging

log = logging.getLogger("prefork.error")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="prefork", description="A production WSGI server.")
    parser.add_argument("--version", action="version", version=f"prefork {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    start = sub.add_parser("start", help="serve an application in the foreground",
                           description="Serve a WSGI application. APP is MODULE:CALLABLE, "
                           "MODULE (defining 'application' or 'app'), a factory "
                           "MODULE:create_app(), or nothing for the built-in demo site.")
    start.add_argument("app", nargs="?", metavar="APP", help="the WSGI application to serve")
    start.add_argument("-c", "--config", metavar="FILE",
                       help="TOML config file (default: ./prefork.toml when present)")
    for section, settings in sections():
        group = start.add_argument_group(section)
        for s in settings:
            flags = [s.flag] + ([s.short] if s.short else [])
            kwargs: dict[str, Any] = {"dest": s.name, "default": argparse.SUPPRESS,
                                      "metavar": s.metavar or s.name.upper(),
                                      "help": f"{s.doc} [default: {s.default!r}; env {s.env}]"}
            if s.multiple:
                kwargs["action"] = "append"
            elif isinstance(s.type, Bool):
                kwargs["action"] = argparse.BooleanOptionalAction
                del kwargs["metavar"]
            group.add_argument(*flags, **kwargs)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = vars(parser.parse_args(argv))
    command = args.pop("command", None)
    if command != "start":
        parser.print_help()
        return 2
    app_spec = args.pop("app")
    config_file = args.pop("config")
    cli = {k: v for k, v in args.items() if any(s.name == k for s in SETTINGS)}
    try:
        cfg = resolve(cli, config_file)
    except ConfigError as e:
        print(f"prefork: error: {e}", file=sys.stderr)
        return 2
    try:
        setup_logging(cfg)
    except (OSError, ValueError) as e:
        print(f"prefork: error: cannot open the error log: {e}", file=sys.stderr)
        return 2
    sys.path.insert(0, os.getcwd())
    try:
        master = Master(cfg, app_spec, argv=list(sys.argv[1:] if argv is None else argv),
                        reload_config=lambda: resolve(cli, config_file))
    except ValueError as e:      # a hook that cannot be loaded
        log.error("%s", e)
        return 2
    return master.run()

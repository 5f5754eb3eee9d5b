"""``manage.py prefork [addrport]``: the project served by prefork, with
runserver's habits where they fit.

- the address as runserver takes it: ``8000``, ``0.0.0.0:8000``,
  ``[::1]:8000``, ``localhost:8000`` (and ``-6`` for ``[::1]`` by default);
- Django's system checks first: an error stops start-up with Django's own
  message and a non-zero exit (``--skip-checks`` skips them), and unapplied
  migrations are pointed out as runserver does;
- static files through django.contrib.staticfiles' handler when DEBUG is on
  (``--nostatic``, ``--insecure`` as runserver's);
- ``--reload``: prefork's reloader, which watches the template directories
  too. Django is set up in this process (the master) before the fork, so a
  change re-executes the whole command — the checks run again, and until the
  new code starts the old one keeps serving.

Settings: every prefork setting as a flag (as ``prefork start`` has them),
over the ``PREFORK_*`` environment, over the TOML file (``-c/--config``, or
``./prefork.toml``), over ``PREFORK = {...}`` in settings.py, over the
defaults. A wrong name or value in any of them gets prefork's own one-line
error. Django's ``--pythonpath`` stands for prefork's ``pythonpath``.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from prefork.cli import resolve, setting_argument
from prefork.config import BY_NAME, Config, ConfigError, sections

# prefork settings that Django's own options stand for.
NOT_FLAGS = frozenset({"pythonpath"})
SOURCE = "Django setting PREFORK"
DEFAULT_PORT = "8000"

# runserver's address forms (django/core/management/commands/runserver.py).
ADDRPORT = re.compile(
    r"""^(?:(?P<addr>
        (?P<ipv4>\d{1,3}(?:\.\d{1,3}){3}) |
        (?P<ipv6>\[[a-fA-F0-9:]+\]) |
        (?P<fqdn>[a-zA-Z0-9-]+(?:\.[a-zA-Z0-9-]+)*)
    ):)?(?P<port>\d+)$""", re.X)

log = logging.getLogger("prefork.error")


def bind_of(addrport: str | None, ipv6: bool = False) -> str:
    """runserver's ``addrport`` as a prefork bind address; CommandError with
    runserver's wording when it is not one."""
    if not addrport:
        return f"[::1]:{DEFAULT_PORT}" if ipv6 else f"127.0.0.1:{DEFAULT_PORT}"
    m = ADDRPORT.match(addrport)
    if m is None:
        raise CommandError(f'"{addrport}" is not a valid port number or address:port pair.')
    addr = m.group("addr") or ("[::1]" if ipv6 else "127.0.0.1")
    return f"{addr}:{m.group('port')}"


def resolve_config(cli: Mapping[str, Any], config_file: str | None = None,
                   environ: Mapping[str, str] | None = None,
                   addrport: str | None = None) -> Config:
    """Defaults < PREFORK in settings.py < what prefork.cli.resolve() reads
    (the TOML file, the environment, the flags), with ``addrport``,
    runserver's address, counted as the flag ``--bind``.

    Raises prefork.config.ConfigError, worded as prefork's own.
    """
    layer = getattr(settings, "PREFORK", {})
    if not isinstance(layer, Mapping):
        raise ConfigError(f"the Django setting PREFORK must be a dict of prefork settings "
                          f"(names as in docs/settings.md), not {type(layer).__name__}")
    Config().update(layer, SOURCE)      # every name and value checked, as a TOML file's
    cfg = resolve(cli, config_file, environ)
    for name, value in layer.items():
        if cfg.source(name) == "default":
            cfg.set(name, value, SOURCE)
    if addrport is not None:
        cfg.set("bind", [addrport], "command line addrport")
    return cfg


def watch_templates(cfg: Config) -> None:
    """Add the project's template directories to ``reload_extra_files``.

    runserver resets Django's (cached) template loaders when a template
    changes; here a template change reloads like a source change does.
    """
    from django.template.autoreload import get_template_directories

    globs = [os.path.join(d, "**", "*") for d in sorted(map(str, get_template_directories()))]
    cfg.set("reload_extra_files", [*cfg.reload_extra_files, *globs],
            cfg.source("reload_extra_files"))


def _add_setting(parser: argparse._ActionsContainer, name: str) -> None:
    s = BY_NAME[name]
    kwargs = setting_argument(s)
    flags = [s.flag] + ([s.short] if s.short else [])
    try:
        parser.add_argument(*flags, **kwargs)
    except argparse.ArgumentError:      # a short flag Django uses itself (-v, -h)
        parser.add_argument(s.flag, **kwargs)


class Command(BaseCommand):
    help = ("Serve this project with prefork: WSGI_APPLICATION, Django's system checks "
            "first, static files in DEBUG; settings from PREFORK in settings.py, then "
            "prefork.toml, PREFORK_* and the flags.")
    # Run by handle() itself, as runserver does, so that --skip-checks works
    # and the checks run again when --reload re-executes the command.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("addrport", nargs="?",
                            help="optional port number, or ipaddr:port (as runserver); "
                                 "default 127.0.0.1:8000")
        parser.add_argument("-6", "--ipv6", action="store_true", dest="use_ipv6",
                            help="default to the IPv6 address ::1")
        parser.add_argument("--nostatic", action="store_false", dest="use_static_handler",
                            help="do not serve static files at STATIC_URL in DEBUG")
        parser.add_argument("--insecure", action="store_true", dest="insecure_serving",
                            help="serve static files even with DEBUG off")
        parser.add_argument("--skip-checks", action="store_true",
                            help="do not run Django's system checks first")
        parser.add_argument("-c", "--config", dest="prefork_config", metavar="FILE",
                            help="prefork TOML config file (default: ./prefork.toml when "
                                 "present)")
        for section, group_settings in sections():
            group = parser.add_argument_group(f"prefork {section.lower()}")
            for s in group_settings:
                if s.name not in NOT_FLAGS:
                    _add_setting(group, s.name)

    def handle(self, *args: Any, **options: Any) -> None:
        from prefork import systemd

        # Before anything forks: take NOTIFY_SOCKET and LISTEN_* for the master.
        sd = systemd.capture()
        cli: dict[str, Any] = {name: options[name] for name in BY_NAME
                               if name in options and name not in NOT_FLAGS}
        addrport = None
        if options.get("addrport") or options["use_ipv6"]:
            if "bind" in cli:
                raise CommandError("give the address either as addrport or with --bind, "
                                   "not both", returncode=2)
            addrport = bind_of(options.get("addrport"), options["use_ipv6"])
        try:
            cfg = resolve_config(cli, options.get("prefork_config"), addrport=addrport)
        except ConfigError as e:
            raise CommandError(str(e), returncode=2) from None
        if not options["skip_checks"]:
            self.stdout.write("Performing system checks...\n\n")
            self.check(display_num_errors=True)     # errors raise SystemCheckError
        self.check_migrations()     # a note only; its connection is closed before the fork
        if cfg.reload:
            watch_templates(cfg)
        sys.exit(self.serve(cfg, sd, options))

    def serve(self, cfg: Config, sd: Any, options: dict[str, Any]) -> int:
        import django

        from prefork.daemon import check_user_group
        from prefork.master import Master
        from prefork.server import setup_logging

        from ...wsgi import get_application, static_files_served

        try:
            check_user_group(cfg.user, cfg.group)
            setup_logging(cfg)
        except (OSError, ValueError) as e:
            raise CommandError(str(e), returncode=2) from None
        app = get_application(static=options["use_static_handler"],
                              insecure=options["insecure_serving"])
        wsgi = settings.WSGI_APPLICATION or "django.core.wsgi.get_wsgi_application()"
        static = (f"; static files at {settings.STATIC_URL} (django.contrib.staticfiles)"
                  if options["use_static_handler"] and static_files_served(
                      options["insecure_serving"]) else "")
        log.info("Django %s, settings %s: serving WSGI_APPLICATION %s%s", django.get_version(),
                 settings.SETTINGS_MODULE, wsgi, static)
        # A reload (HUP, --reload) or upgrade (USR2) runs this command again
        # from scratch: Django is set up in this process, the master, so
        # forking new workers from it would serve the old code.
        command = [sys.executable, *sys.orig_argv[1:]]
        master = Master(cfg, wsgi, app=app, argv=sys.argv[1:], systemd=sd,
                        exec_command=command)
        return int(master.run())

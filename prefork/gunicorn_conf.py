"""gunicorn's configuration, as prefork reads it: its Python config file and
the flags of gunicorn's that prefork has no setting for.

A gunicorn config file (``-c gunicorn.conf.py``, ``-c file:PATH`` or
``-c python:MODULE``) is executed the way gunicorn executes it: as a module
named ``__config__``. Its module-level names are then mapped through the
settings table (``Setting.gunicorn`` holds gunicorn's name for each setting
prefork has; prefork's own names are accepted too), its functions named like
server hooks become hooks, and ``wsgi_app`` is the APP when the command line
names none. Names that are neither are ignored, as gunicorn ignores them,
except a gunicorn setting prefork does not have: it gets one warning saying
what to use instead (``GUNICORN_ONLY``), or stops start-up when going on
without it would change what clients get (TLS, an async worker class).

The same table answers those settings' flags on the command line, so that a
gunicorn command line either works or says, in one line, what to change.
"""

from __future__ import annotations

import functools
import importlib
import importlib.machinery
import importlib.util
import inspect
import logging
import os
import sys
import traceback
import types
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from .config import BY_GUNICORN_NAME, BY_NAME, SETTINGS, Config, ConfigError, Hook, Str
from .hooks import HOOKS

log = logging.getLogger("prefork.error")

_ANY = object()     # GunicornOnly.default when every value gets the answer


@dataclass(frozen=True)
class GunicornOnly:
    """A gunicorn setting prefork has no equivalent for.

    ``answer`` says what to use instead or why it is not needed. ``refuse``:
    going on without it would change what clients get, so start-up stops
    instead of warning. A value equal to gunicorn's ``default`` (a file that
    lists gunicorn's defaults) passes silently; so does every value when
    ``quiet`` (prefork does that anyway). ``translate`` turns a value into
    the prefork settings it means, or raises ConfigError for one it cannot
    serve.
    """

    name: str
    flags: tuple[str, ...]
    answer: str
    takes_value: bool = True
    multiple: bool = False
    refuse: bool = False
    quiet: bool = False
    default: Any = _ANY
    translate: Callable[[Any, str], dict[str, Any]] | None = None


_TLS = ("prefork serves plain HTTP: end TLS in nginx, HAProxy or the load balancer in front "
        "(docs/deployment.md)")
_STRICT = "prefork's request parser is strict (RFC 9112) and has no switch to relax it"
_STATSD = ("prefork has no StatsD client: set metrics_bind for Prometheus metrics and "
           "health checks (docs/metrics.md), or read `prefork status --json`")
_LOGCONFIG = ("prefork configures only its own log (errorlog, loglevel, syslog_addr); configure "
              "the app's logging from the app (logging.config.dictConfig)")
_DIRTY = ("prefork has no dirty arbiters: run long jobs in a task queue (Celery, RQ) next to it")
_H2 = "prefork speaks HTTP/1.1: let the proxy in front speak HTTP/2 to clients"
_ASGI = "prefork serves WSGI only; an ASGI app needs an ASGI server (uvicorn, granian)"
_NAME = ("prefork names its processes 'prefork: master [APP]' and 'prefork: worker N [APP]'; "
         "there is no setting for it")

_THREADED = ("prefork runs every request in a thread of a bounded pool and keeps idle and slow "
             "connections in its event loop, without monkey-patching: drop -k, and size "
             "--threads (requests at once per worker) and --max-connections (open connections "
             "per worker)")
_TORNADO = "a Tornado app runs on Tornado's own server; prefork serves WSGI apps"
# gunicorn's worker classes by short name and by module (gunicorn.workers.X.Class);
# eventlet's was dropped in gunicorn 24, but older configs name it.
_WORKER_CLASSES = {
    "gevent": _THREADED, "gevent_wsgi": _THREADED, "gevent_pywsgi": _THREADED,
    "eventlet": _THREADED, "tornado": _TORNADO, "asgi": _ASGI,
    "ggevent": _THREADED, "geventlet": _THREADED, "gtornado": _TORNADO, "gasgi": _ASGI,
}


def _worker_class(value: Any, source: str) -> dict[str, Any]:
    name = str(value).strip()
    short = name.lower().removeprefix("egg:gunicorn#").removeprefix("gunicorn.workers.")
    if short in ("sync", "sync.syncworker"):
        # gunicorn's sync worker runs one request at a time: an app that relies on
        # it keeps that. (With --threads given too, that flag wins, as in gunicorn.)
        return {"threads": 1}
    if short in ("gthread", "gthread.threadworker"):
        return {}           # what prefork's workers are anyway
    answer = _WORKER_CLASSES.get(short.split(".")[0])
    if answer is None and "uvicorn" in short:
        answer = _ASGI
    if answer is None:
        answer = ("prefork has no worker classes: every worker runs an event loop and a "
                  "thread pool")
    raise ConfigError(f"gunicorn's worker class {name!r} ({source}) is not supported: {answer}")


def _protocol(value: Any, source: str) -> dict[str, Any]:
    if str(value).strip().lower() != "http":
        raise ConfigError(f"gunicorn's protocol {value!r} ({source}) is not supported: prefork "
                          "speaks HTTP only; point nginx at it with proxy_pass, not uwsgi_pass")
    return {}


def _syslog(value: Any, source: str) -> dict[str, Any]:
    # gunicorn's Linux default for syslog_addr; an address given too wins.
    return {"syslog_addr": "udp://localhost:514"} if value else {}


def _no_control_socket(value: Any, source: str) -> dict[str, Any]:
    return {"control_socket": ""} if value else {}


GUNICORN_ONLY: list[GunicornOnly] = [
    GunicornOnly("config", ("-c", "--config"), "prefork's -c reads a .py file (or file:PATH, "
                 "python:MODULE) as a gunicorn config file, anything else as TOML; "
                 "./gunicorn.conf.py only when named", quiet=True),
    GunicornOnly("wsgi_app", (), "the APP argument; a gunicorn file's wsgi_app is used when "
                 "the command line names none", quiet=True),
    GunicornOnly("worker_class", ("-k", "--worker-class"),
                 "sync means threads = 1 (one request at a time per worker, unless --threads "
                 "says otherwise); gthread is what prefork's workers are; gevent, eventlet, "
                 "tornado and ASGI workers are refused with the reason",
                 quiet=True, translate=_worker_class),
    GunicornOnly("spew", ("--spew",), "prefork has no line tracer: debug the app with pdb "
                 "or python -m trace outside the server", takes_value=False, default=False),
    GunicornOnly("check_config", ("--check-config",), "use `prefork check APP` with the same "
                 "flags: it checks them and imports the app", takes_value=False, refuse=True,
                 default=False),
    GunicornOnly("print_config", ("--print-config",), "use `prefork print-config` with the same "
                 "flags: every setting and where it came from", takes_value=False, refuse=True,
                 default=False),
    GunicornOnly("sendfile", ("--no-sendfile",), "prefork always sends a wsgi.file_wrapper of "
                 "a regular file with sendfile(2); there is no switch", takes_value=False,
                 default=True),
    GunicornOnly("worker_tmp_dir", ("--worker-tmp-dir",), "prefork's workers "
                 "report to the master through shared memory, not a file", default=None),
    GunicornOnly("initgroups", ("--initgroups",), "prefork always sets the user's "
                 "supplementary groups when it changes user", takes_value=False, quiet=True),
    GunicornOnly("paste", ("--paste", "--paster"), "APP must be a WSGI callable; for a "
                 "PasteDeploy ini, write a module with application = "
                 "paste.deploy.loadapp('config:/path/app.ini')", refuse=True, default=None),
    GunicornOnly("raw_paste_global_conf", ("--paste-global",), "goes with paste, which prefork "
                 "does not read", multiple=True, default=[]),
    GunicornOnly("permit_obsolete_folding", ("--permit-obsolete-folding",), _STRICT,
                 takes_value=False, default=False),
    GunicornOnly("strip_header_spaces", ("--strip-header-spaces",), _STRICT,
                 takes_value=False, default=False),
    GunicornOnly("permit_unconventional_http_method", ("--permit-unconventional-http-method",),
                 _STRICT, takes_value=False, default=False),
    GunicornOnly("permit_unconventional_http_version",
                 ("--permit-unconventional-http-version",), _STRICT, takes_value=False,
                 default=False),
    GunicornOnly("casefold_http_method", ("--casefold-http-method",), _STRICT,
                 takes_value=False, default=False),
    GunicornOnly("forwarder_headers", ("--forwarder-headers",), "prefork sets SCRIPT_NAME "
                 "from root_path, or from X-Forwarded-Prefix when forwarded_headers names it",
                 default="SCRIPT_NAME,PATH_INFO"),
    GunicornOnly("header_map", ("--header-map",), "prefork always drops a header whose name "
                 "has an underscore (gunicorn's drop)", default="drop"),
    GunicornOnly("protocol", ("--protocol",), "http is all prefork speaks; uwsgi is refused",
                 quiet=True, translate=_protocol),
    GunicornOnly("uwsgi_allow_ips", ("--uwsgi-allow-from",), "prefork has no uwsgi protocol",
                 default="127.0.0.1,::1"),
    GunicornOnly("disable_redirect_access_to_syslog", ("--disable-redirect-access-to-syslog",),
                 "not needed: prefork never sends the access log to syslog", takes_value=False,
                 quiet=True),
    GunicornOnly("capture_output", ("--capture-output",), "prefork does not copy the app's "
                 "stdout and stderr into the error log; use logging, or let systemd's journal "
                 "collect them", takes_value=False, default=False),
    GunicornOnly("logger_class", ("--logger-class",), "the error log is the stdlib logger "
                 "'prefork', the access log has access_log_format; add handlers with logging",
                 default="gunicorn.glogging.Logger"),
    GunicornOnly("logconfig", ("--log-config",), _LOGCONFIG, default=None),
    GunicornOnly("logconfig_dict", (), _LOGCONFIG, default={}),
    GunicornOnly("logconfig_json", ("--log-config-json",), _LOGCONFIG, default=None),
    GunicornOnly("syslog", ("--log-syslog",), "syslog_addr turns syslog on; --log-syslog alone "
                 "means syslog_addr = udp://localhost:514, as gunicorn's default on Linux",
                 takes_value=False, quiet=True, translate=_syslog),
    GunicornOnly("syslog_prefix", ("--log-syslog-prefix",), "prefork's syslog lines are tagged "
                 "'prefork:'", default=None),
    GunicornOnly("enable_stdio_inheritance", ("-R", "--enable-stdio-inheritance"), "with "
                 "--daemon prefork sends stdout and stderr to /dev/null: give errorlog and "
                 "accesslog files", takes_value=False, default=False),
    GunicornOnly("statsd_host", ("--statsd-host",), _STATSD, default=None),
    GunicornOnly("dogstatsd_tags", ("--dogstatsd-tags",), _STATSD, default=""),
    GunicornOnly("statsd_prefix", ("--statsd-prefix",), _STATSD, default=""),
    GunicornOnly("enable_backlog_metric", ("--enable-backlog-metric",), _STATSD,
                 takes_value=False, default=False),
    GunicornOnly("proc_name", ("-n", "--name"), _NAME, default=None),
    GunicornOnly("default_proc_name", (), _NAME, default="gunicorn"),
    GunicornOnly("pre_exec", (), "there is no hook before prefork re-executes itself (USR2, "
                 "or HUP with preload)"),
    GunicornOnly("ssl_context", (), _TLS),
    GunicornOnly("keyfile", ("--keyfile",), _TLS, refuse=True, default=None),
    GunicornOnly("certfile", ("--certfile",), _TLS, refuse=True, default=None),
    GunicornOnly("ssl_version", ("--ssl-version",), _TLS),
    GunicornOnly("cert_reqs", ("--cert-reqs",), _TLS, default=0),
    GunicornOnly("ca_certs", ("--ca-certs",), _TLS, default=None),
    GunicornOnly("suppress_ragged_eofs", ("--suppress-ragged-eofs",), _TLS, takes_value=False,
                 default=True),
    GunicornOnly("do_handshake_on_connect", ("--do-handshake-on-connect",), _TLS,
                 takes_value=False, default=False),
    GunicornOnly("ciphers", ("--ciphers",), _TLS, default=None),
    GunicornOnly("http_protocols", ("--http-protocols",), _H2, default="h1"),
    GunicornOnly("http2_cleartext", ("--http2-cleartext",), _H2, default="off"),
    GunicornOnly("http2_max_concurrent_streams", ("--http2-max-concurrent-streams",), _H2,
                 default=100),
    GunicornOnly("http2_initial_window_size", ("--http2-initial-window-size",), _H2,
                 default=65535),
    GunicornOnly("http2_max_frame_size", ("--http2-max-frame-size",), _H2, default=16384),
    GunicornOnly("http2_max_header_list_size", ("--http2-max-header-list-size",), _H2,
                 default=65536),
    GunicornOnly("asgi_loop", ("--asgi-loop",), _ASGI, default="auto"),
    GunicornOnly("asgi_lifespan", ("--asgi-lifespan",), _ASGI, default="auto"),
    GunicornOnly("asgi_disconnect_grace_period", ("--asgi-disconnect-grace-period",), _ASGI,
                 default=3),
    GunicornOnly("http_parser", ("--http-parser",), "prefork has one request parser",
                 default="auto"),
    GunicornOnly("dirty_apps", ("--dirty-app",), _DIRTY, multiple=True, default=[]),
    GunicornOnly("dirty_workers", ("--dirty-workers",), _DIRTY, default=0),
    GunicornOnly("dirty_timeout", ("--dirty-timeout",), _DIRTY, default=300),
    GunicornOnly("dirty_threads", ("--dirty-threads",), _DIRTY, default=1),
    GunicornOnly("dirty_graceful_timeout", ("--dirty-graceful-timeout",), _DIRTY, default=30),
    GunicornOnly("on_dirty_starting", (), _DIRTY),
    GunicornOnly("dirty_post_fork", (), _DIRTY),
    GunicornOnly("dirty_worker_init", (), _DIRTY),
    GunicornOnly("dirty_worker_exit", (), _DIRTY),
    GunicornOnly("control_socket_disable", ("--no-control-socket",), "control_socket = \"\" "
                 "(no control socket)", takes_value=False, quiet=True,
                 translate=_no_control_socket),
]

BY_ONLY_NAME: dict[str, GunicornOnly] = {g.name: g for g in GUNICORN_ONLY}


def is_gunicorn_file(location: str) -> bool:
    """``-c`` names a gunicorn config (Python) rather than a TOML file."""
    return location.startswith(("python:", "file:")) or location.endswith((".py", ".pyc"))


def apply(entry: GunicornOnly, value: Any, source: str, warnings: list[str]) -> dict[str, Any]:
    """What a gunicorn-only setting given as ``value`` means: the prefork
    settings it implies; a warning appended when it is ignored; ConfigError
    when it is refused."""
    if entry.translate is not None:
        return entry.translate(value, source)
    if entry.quiet or (entry.default is not _ANY and value == entry.default):
        return {}
    if entry.refuse:
        raise ConfigError(f"gunicorn setting '{entry.name}' ({source}) is not supported: "
                          f"{entry.answer}")
    warnings.append(f"gunicorn setting '{entry.name}' ({source}) is ignored: {entry.answer}")
    return {}


# -- the config file ---------------------------------------------------------

def _execute(location: str) -> dict[str, Any]:
    """Run the file (or import the module) and return its namespace."""
    if location.startswith("python:"):
        name = location[len("python:"):]
        added = os.getcwd() not in sys.path
        if added:
            sys.path.insert(0, os.getcwd())
        try:
            return vars(importlib.import_module(name))
        except Exception as e:
            raise ConfigError(f"gunicorn config module {name} cannot be imported: "
                              f"{type(e).__name__}: {e}") from None
        finally:
            if added:
                sys.path.remove(os.getcwd())
    path = location.removeprefix("file:")
    if not os.path.isfile(path):
        raise ConfigError(f"cannot read config file {path}: No such file")
    if path.endswith((".py", ".pyc")):
        spec = importlib.util.spec_from_file_location("__config__", path)
    else:   # gunicorn reads any file as Python; so does prefork with file:
        loader = importlib.machinery.SourceFileLoader("__config__", path)
        spec = importlib.util.spec_from_file_location("__config__", path, loader=loader)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["__config__"] = module
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        frames = [f for f in traceback.extract_tb(e.__traceback__)
                  if os.path.abspath(f.filename) == os.path.abspath(path)]
        where = f" at line {frames[-1].lineno}" if frames else ""
        if isinstance(e, SyntaxError) and e.lineno:
            where = f" at line {e.lineno}"
        raise ConfigError(f"gunicorn config file {path} failed{where}: "
                          f"{type(e).__name__}: {e}") from None
    return vars(module)


def _file_value(name: str, value: Any) -> Any:
    """A value as a gunicorn file writes it -> as the prefork setting takes it."""
    setting = BY_NAME[name]
    if value is None:       # gunicorn's "not set"
        return "" if isinstance(setting.type, Str | Hook) else _UNSET
    if name in ("user", "group") and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if name == "proxy_protocol":
        if isinstance(value, bool):
            return "auto" if value else "off"
        if isinstance(value, str):
            v = value.strip().lower()
            return {"true": "auto", "1": "auto", "false": "off", "0": "off",
                    "none": "off"}.get(v, v)
    if name == "bind" and isinstance(value, str):
        return [value]      # gunicorn takes a string as one address
    if isinstance(value, tuple):
        return list(value)
    return value


_UNSET = object()


def load_file(cfg: Config, location: str) -> None:
    """Execute a gunicorn config file and set what it says on ``cfg``."""
    namespace = _execute(location)
    label = location.removeprefix("file:")
    source = f"gunicorn file {label}"
    values: dict[str, Any] = {}
    implied: dict[str, Any] = {}
    syslog_on = bool(namespace.get("syslog"))
    for key, value in namespace.items():
        if key.startswith("_") or isinstance(value, types.ModuleType):
            continue
        setting = BY_GUNICORN_NAME.get(key) or BY_NAME.get(key)
        if setting is not None:
            if key == "syslog_addr" and not syslog_on:
                # gunicorn sends to syslog_addr only with syslog = True
                if value not in (None, "", "udp://localhost:514"):
                    cfg.warnings.append(f"'syslog_addr' in {label} is ignored without "
                                        "syslog = True, as gunicorn ignores it")
                continue
            value = _file_value(setting.name, value)
            if value is _UNSET:
                continue
            if isinstance(setting.type, Hook) and callable(value):
                value = gunicorn_hook(setting.name, value, f"{label}:{key}")
            values[setting.name] = value
        elif key == "wsgi_app":
            if value:
                cfg.wsgi_app = str(value)
        elif key in BY_ONLY_NAME:
            implied.update(apply(BY_ONLY_NAME[key], value, f"{source}", cfg.warnings))
        elif key.islower() and callable(value) and not isinstance(value, type):
            # A function here is a hook or a helper; one named almost like a
            # hook is a misspelt hook, which would otherwise never run.
            close = _close_hook(key)
            if close:
                raise ConfigError(f"'{key}' ({source}) is not a hook, so it would never be "
                                  f"called; did you mean '{close}'? (a helper function's "
                                  f"name may start with _)")
        elif (key.islower() and not callable(value)
              and isinstance(value, int | float | str | list | tuple | dict)):
            close = _close_name(key)
            if close:
                cfg.warnings.append(f"'{key}' in {label} is not a setting and is ignored; "
                                    f"did you mean '{close}'?")
    for name, value in implied.items():
        if name not in values:
            cfg.set(name, value, source)
    for name, value in values.items():
        cfg.set(name, value, source)


def _close_hook(key: str) -> str | None:
    import difflib
    names = [name for name in HOOKS if name != key]
    close = difflib.get_close_matches(key, names, n=1, cutoff=0.8)
    return close[0] if close else None


def _close_name(key: str) -> str | None:
    import difflib
    names = list(BY_GUNICORN_NAME) + list(BY_NAME) + list(BY_ONLY_NAME)
    close = difflib.get_close_matches(key, names, n=1, cutoff=0.85)
    return close[0] if close else None


# -- hooks written for gunicorn ------------------------------------------------

class _View:
    """A prefork hook view (ServerView, WorkerView) with what gunicorn's
    hooks habitually use: ``.log`` (the error log), ``num_workers``."""

    def __init__(self, view: Any):
        self._view = view
        self.log = log

    def __getattr__(self, name: str) -> Any:
        if name == "num_workers":
            return self._view.workers
        return getattr(self._view, name)

    def __repr__(self) -> str:
        return repr(self._view)


class GunicornRequest:
    """What a gunicorn pre_request/post_request hook reads from ``req``."""

    def __init__(self, environ: dict[str, Any]):
        self.method = environ.get("REQUEST_METHOD", "")
        self.path = environ.get("PATH_INFO", "")
        self.query = environ.get("QUERY_STRING", "")
        self.uri = environ.get("RAW_URI") or (self.path + ("?" + self.query if self.query else ""))
        proto = environ.get("SERVER_PROTOCOL", "HTTP/1.1")
        major, _, minor = proto.removeprefix("HTTP/").partition(".")
        self.version = (int(major or 1), int(minor or 0))
        self.scheme = environ.get("wsgi.url_scheme", "http")
        self.remote_addr = environ.get("REMOTE_ADDR")
        self.headers = [(k[5:].replace("_", "-"), v) for k, v in environ.items()
                        if k.startswith("HTTP_")]
        for key, name in (("CONTENT_TYPE", "CONTENT-TYPE"), ("CONTENT_LENGTH", "CONTENT-LENGTH")):
            if environ.get(key):
                self.headers.append((name, environ[key]))


class GunicornResponse:
    """What a gunicorn post_request hook reads from ``resp``."""

    def __init__(self, status: str | None):
        self.status = status
        self.status_code = int(status.split(None, 1)[0]) if status else None


def _arity(fn: Callable[..., Any]) -> int:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return 4
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return 4
    return sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params)


def gunicorn_hook(name: str, fn: Callable[..., Any], origin: str) -> Callable[..., Any]:
    """Wrap a hook written for gunicorn so prefork can call it: views gain
    ``.log``, pre_request gets ``(worker, req)``, post_request
    ``(worker, req[, environ[, resp]])`` as gunicorn gives them."""
    if name == "pre_request":
        def call(worker: Any, environ: dict[str, Any]) -> Any:
            return fn(_View(worker), GunicornRequest(environ))
    elif name == "post_request":
        n = _arity(fn)

        def call(worker: Any, environ: dict[str, Any], status: str | None) -> Any:  # type: ignore[misc]
            args = (_View(worker), GunicornRequest(environ), environ, GunicornResponse(status))
            return fn(*args[:max(2, min(n, 4))])
    else:
        def call(*args: Any) -> Any:  # type: ignore[misc]
            return fn(*(_View(a) if hasattr(a, "pid") else a for a in args))
    functools.update_wrapper(call, fn)
    call.prefork_origin = origin  # type: ignore[attr-defined]
    return call


# -- the command line ----------------------------------------------------------

def cli_implied(given: dict[str, Any], flag_of: dict[str, str],
                warnings: list[str]) -> dict[str, tuple[Any, str]]:
    """The gunicorn-only flags given on the command line (name -> value) ->
    the prefork settings they imply, as (value, source); warnings appended,
    ConfigError for a refused one."""
    implied: dict[str, tuple[Any, str]] = {}
    for name, value in given.items():
        source = f"command line {flag_of[name]}"
        for setting, v in apply(BY_ONLY_NAME[name], value, source, warnings).items():
            implied[setting] = (v, source)
    return implied


# -- docs/migrating.md -----------------------------------------------------------

MAP_START = "<!-- gunicorn map: generated by `make settings` from prefork/config.py and " \
            "prefork/gunicorn_conf.py; do not edit -->"
MAP_END = "<!-- end of gunicorn map -->"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _flags(flags: Iterable[str]) -> str:
    return ", ".join(f"`{f}`" for f in flags) or "(file only)"


def gunicorn_map_markdown() -> str:
    """The table of every gunicorn setting and what prefork does with it."""
    rows = ["| gunicorn setting | gunicorn flags | prefork | notes |",
            "|---|---|---|---|"]
    for s in SETTINGS:
        if s.gunicorn is None:
            continue
        g = s.gunicorn
        rows.append(f"| `{g.name}` | {_flags(g.flags)} | `{s.name}` (`{s.flag}`) | "
                    f"{_cell(g.note) or 'the same'} |")
    for o in GUNICORN_ONLY:
        kind = ("refused" if o.refuse else "translated" if o.translate else
                "accepted" if o.quiet else "ignored, with a warning")
        rows.append(f"| `{o.name}` | {_flags(o.flags)} | {kind} | {_cell(o.answer)} |")
    return "\n".join([MAP_START, "", *rows, "", MAP_END])


def update_migrating(text: str) -> str:
    """docs/migrating.md with its generated gunicorn map replaced by the current one."""
    start, end = text.index(MAP_START), text.index(MAP_END) + len(MAP_END)
    return text[:start] + gunicorn_map_markdown() + text[end:]

"""Every setting, declared once.

``SETTINGS`` is the single table: the command-line flags, the TOML keys, the
``PREFORK_*`` environment variables, validation and docs/settings.md are all
derived from it. A setting that is not in the table does not exist.

Sources are applied in this order, each overriding the one before: defaults,
the config file (``-c/--config``, else ``./prefork.toml`` when present), the
environment, the command line. prefork.cli.resolve() applies them, and picks
the reader for the file: TOML here, or gunicorn's Python in
prefork.gunicorn_conf (which reads this table, so this module never calls
it). A bad value stops start-up with one line that names the setting, the value
given and what is allowed.
"""

from __future__ import annotations

import difflib
import logging.handlers
import textwrap
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from ._settings import Settings
from .cgroup import usable_cpus
from .hooks import HOOKS
from .http.proxy import FORWARDED_HEADERS, Networks
from .log import DEFAULT_ACCESS_FORMAT, check_access_format
from .sockets import FD_FAMILY, parse_address


class ConfigError(Exception):
    """A setting has a value that is not allowed; the message is one log line."""


class BadValue(ValueError):
    """A value type's refusal that says what is wrong with ``value`` (one item
    of a list, say) instead of only what is allowed."""

    def __init__(self, value: Any, reason: str):
        super().__init__(reason)
        self.value = value
        self.reason = reason


# -- value types: each turns a TOML value or a CLI/env string into a checked value --
#
# Each has describe() (what is allowed, for errors and the docs) and
# ``annotation``: the Python type of the value it returns, as written in the
# generated prefork/_settings.py, so that mypy knows what ``cfg.x`` is.

@dataclass(frozen=True)
class Int:
    min: int | None = None
    max: int | None = None

    annotation: ClassVar[str] = "int"

    def describe(self) -> str:
        if self.min is not None and self.max is not None:
            return f"an integer from {self.min} to {self.max}"
        if self.min is not None:
            return f"an integer >= {self.min}"
        return "an integer"

    def __call__(self, value: Any) -> int:
        if isinstance(value, bool):
            raise ValueError
        if isinstance(value, str):
            value = int(value.strip().replace("_", ""), 10)
        if not isinstance(value, int):
            raise ValueError
        if (self.min is not None and value < self.min) or (self.max is not None and value > self.max):
            raise ValueError
        return value


@dataclass(frozen=True)
class Seconds:
    min: float = 0.0

    annotation: ClassVar[str] = "float"

    def describe(self) -> str:
        return f"a number of seconds >= {self.min:g}"

    def __call__(self, value: Any) -> float:
        if isinstance(value, bool):
            raise ValueError
        seconds = float(value)
        if seconds != seconds or seconds < self.min or seconds == float("inf"):
            raise ValueError
        return seconds


class Bool:
    TRUE = {"1", "true", "yes", "on"}
    FALSE = {"0", "false", "no", "off"}

    annotation: ClassVar[str] = "bool"

    def describe(self) -> str:
        return "true or false"

    def __call__(self, value: Any) -> bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str):
            v = value.strip().lower()
            if v in self.TRUE:
                return True
            if v in self.FALSE:
                return False
        raise ValueError


class Str:
    annotation: ClassVar[str] = "str"

    def describe(self) -> str:
        return "a string"

    def __call__(self, value: Any) -> str:
        if not isinstance(value, str):
            raise ValueError
        return value


@dataclass(frozen=True)
class Choice:
    """One of a few fixed strings."""

    choices: tuple[str, ...]

    @property
    def annotation(self) -> str:
        return "Literal[" + ", ".join(f'"{c}"' for c in self.choices) + "]"

    def describe(self) -> str:
        return "one of " + ", ".join(self.choices)

    def __call__(self, value: Any) -> str:
        if not isinstance(value, str) or value.strip().lower() not in self.choices:
            raise ValueError
        return value.strip().lower()


class StrList:
    """A list of strings; from a string, comma-separated (env) or one item (CLI).

    With ``split_items``, each item of a list (a repeated flag, a TOML array)
    is split on commas too, as gunicorn does for addresses and pythonpath.
    """

    split_items = False

    def __init__(self, split_items: bool | None = None):
        if split_items is not None:
            self.split_items = split_items

    annotation: ClassVar[str] = "list[str]"

    def describe(self) -> str:
        return "a list of strings"

    def __call__(self, value: Any) -> list[str]:
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
            if self.split_items:
                return [v.strip() for item in value for v in item.split(",") if v.strip()]
            return list(value)
        raise ValueError


class Octal:
    """A file mode: an int, or a string of octal digits like "660" or "0o660"."""

    annotation: ClassVar[str] = "int"

    def describe(self) -> str:
        return "a file mode in octal, like 600 or 660"

    def __call__(self, value: Any) -> int:
        if isinstance(value, bool):
            raise ValueError
        if isinstance(value, str):
            value = int(value.strip().removeprefix("0o"), 8)
        if not isinstance(value, int) or not 0 <= value <= 0o7777:
            raise ValueError
        return value


class Hook:
    """A callable, or the name of one as MODULE:FUNCTION ("" for none)."""

    annotation: ClassVar[str] = "str | Callable[..., Any]"

    def describe(self) -> str:
        return "MODULE:FUNCTION, or a callable when given from Python"

    def __call__(self, value: Any) -> Any:
        if callable(value):
            return value
        if isinstance(value, str) and (not value or
                                       (":" in value and all(value.partition(":")[::2]))):
            return value
        raise ValueError


class StrMap:
    """KEY=VALUE pairs: a TOML table, repeated KEY=VALUE flags, or "A=1,B=2" in the environment."""

    annotation: ClassVar[str] = "dict[str, str]"

    def describe(self) -> str:
        return "KEY=VALUE pairs (a TOML table)"

    def __call__(self, value: Any) -> dict[str, str]:
        if isinstance(value, dict):
            if all(isinstance(k, str) and isinstance(v, str | int | float | bool)
                   for k, v in value.items()):
                return {k: str(v) for k, v in value.items()}
            raise ValueError
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list):
            raise ValueError
        out = {}
        for item in items:
            key, sep, val = str(item).partition("=")
            if not sep or not key.strip():
                raise ValueError
            out[key.strip()] = val
        return out


class NetList(StrList):
    """Peers to trust: addresses or CIDRs, "*" for any, "unix" for unix-socket peers."""

    split_items = True

    def describe(self) -> str:
        return "a list of addresses or CIDRs, '*' or 'unix'"

    def __call__(self, value: Any) -> list[str]:
        items = super().__call__(value)
        Networks(items)     # raises ValueError on a bad item
        return items


class ForwardedHeaders(StrList):
    split_items = True

    def describe(self) -> str:
        return "a list of: " + ", ".join(h.title() for h in FORWARDED_HEADERS)

    def __call__(self, value: Any) -> list[str]:
        items = super().__call__(value)
        if any(item.strip().lower() not in FORWARDED_HEADERS for item in items):
            raise ValueError
        return items


def _check_address(address: str, inherited: bool) -> None:
    try:
        if parse_address(address)[0] == FD_FAMILY and not inherited:
            raise ValueError("an inherited descriptor cannot be used here")
    except ValueError as e:
        raise BadValue(address, str(e)) from None


class Addresses(StrList):
    """Addresses to listen on; fd://N (a socket inherited from the parent) too."""

    def describe(self) -> str:
        return "a list of HOST:PORT, [IPv6]:PORT, unix:PATH or fd://N"

    def __call__(self, value: Any) -> list[str]:
        items = super().__call__(value)
        for address in items:
            _check_address(address, inherited=True)
        return items


class Address(Str):
    """One address that prefork binds itself (never an inherited fd); "" for none."""

    def describe(self) -> str:
        return "HOST:PORT, [IPv6]:PORT or unix:PATH, or empty for none"

    def __call__(self, value: Any) -> str:
        address = super().__call__(value)
        if address:
            _check_address(address, inherited=False)
        return address


class AccessLogFormat(Str):
    """A format of gunicorn's access log atoms, or "json"."""

    def describe(self) -> str:
        return "a format of access log atoms such as %(h)s, or json"

    def __call__(self, value: Any) -> str:
        fmt = super().__call__(value)
        try:
            check_access_format(fmt)
        except ValueError as e:
            raise BadValue(fmt, str(e)) from None
        return fmt


@dataclass(frozen=True)
class Gunicorn:
    """What gunicorn calls a setting that prefork has too: its name in a
    gunicorn config file and its flags, which prefork accepts with the same
    meaning; ``note`` says where gunicorn's differs (a default, a range)."""

    name: str
    flags: tuple[str, ...] = ()
    note: str = ""


@dataclass(frozen=True)
class Setting:
    name: str
    section: str
    type: Any
    default: Any
    doc: str
    short: str | None = None
    metavar: str | None = None
    multiple: bool = False          # the CLI flag may repeat, appending
    default_doc: str | None = None  # how the docs state a default that depends on the host
    gunicorn: Gunicorn | None = None
    const: Any = None               # the value of the flag given bare (nargs="?")

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def flags(self) -> list[str]:
        """Every flag that sets it: its own, its short one, then gunicorn's spellings."""
        own = [self.flag] + ([self.short] if self.short else [])
        extra = self.gunicorn.flags if self.gunicorn else ()
        return own + [f for f in extra if f not in own]

    @property
    def env(self) -> str:
        return "PREFORK_" + self.name.upper()

    def convert(self, value: Any, source: str) -> Any:
        try:
            return self.type(value)
        except BadValue as e:
            raise ConfigError(f"invalid value for setting '{self.name}' ({source}): "
                              f"{e.value!r}; {e.reason}") from None
        except (ValueError, TypeError):
            raise ConfigError(
                f"invalid value for setting '{self.name}' ({source}): {value!r}; "
                f"allowed: {self.type.describe()}"
            ) from None


def _cpus() -> int:
    return usable_cpus().cpus


LOGLEVELS = ("debug", "info", "warning", "error", "critical")
SYSLOG_FACILITIES = tuple(logging.handlers.SysLogHandler.facility_names)

KiB, MiB, GiB = 1024, 1024 * 1024, 1024 * 1024 * 1024

SETTINGS: list[Setting] = [
    # Server socket
    Setting("bind", "Server socket", Addresses(), ["127.0.0.1:8000"],
            "Addresses to listen on: HOST:PORT, [IPv6]:PORT or unix:PATH. Repeat the flag "
            "to listen on several. Port 0 picks a free port.", short="-b", metavar="ADDRESS",
            multiple=True,
            gunicorn=Gunicorn("bind", ("-b", "--bind"),
                     "gunicorn's default is 0.0.0.0:$PORT when PORT is set; prefork does not read "
                     "PORT")),
    Setting("backlog", "Server socket", Int(1, 65535), 2048,
            "Connections the kernel queues before they are accepted.",
            gunicorn=Gunicorn("backlog", ("--backlog",))),
    Setting("reuse_port", "Server socket", Bool(), False,
            "Set SO_REUSEPORT on TCP listeners, so another process may bind the same port.",
            gunicorn=Gunicorn("reuse_port", ("--reuse-port",))),
    Setting("unix_socket_mode", "Server socket", Octal(), 0o600,
            "File mode of unix sockets prefork binds. Make it 660 (and the group the proxy's) "
            "for nginx on the same host."),
    Setting("unix_socket_owner", "Server socket", Str(), "",
            "Owner of unix sockets prefork binds: USER, USER:GROUP or :GROUP (for example "
            ":www-data, so nginx can connect with mode 660). Empty: leave as created."),
    # Workers
    Setting("workers", "Worker processes", Int(1, 1024), _cpus(),
            "Worker processes the master keeps running. Defaults to the number of CPUs this "
            "process may use: its CPU affinity, capped by its cgroup's CPU quota rounded up "
            "(a container limited to 1.5 CPUs gets 2). TTIN and TTOU add and remove one at "
            "run time.",
            default_doc="the number of usable CPUs, cgroup CPU quota included",
            gunicorn=Gunicorn("workers", ("-w", "--workers"),
                     "gunicorn's default is 1, or $WEB_CONCURRENCY; prefork's is the number of "
                     "usable CPUs and it does not read WEB_CONCURRENCY")),
    Setting("threads", "Worker processes", Int(1, 1024), 8,
            "Threads per worker that run the application: the most requests one worker "
            "runs at once. When all are busy the worker stops accepting connections.",
            gunicorn=Gunicorn("threads", ("--threads",),
                     "gunicorn's default is 1 (its sync worker); prefork's is 8")),
    Setting("max_connections", "Worker processes", Int(1, 1_000_000), 10000,
            "Open client connections per worker, idle keep-alive ones included (about 2 KiB "
            "of memory each while open). Past it the worker stops accepting. prefork raises "
            "its open-files limit to fit, up to the hard limit.",
            gunicorn=Gunicorn("worker_connections", ("--worker-connections",),
                     "gunicorn's default is 1000 and counts only for its gthread and async "
                     "workers; prefork's is 10000")),
    Setting("graceful_timeout", "Worker processes", Seconds(), 30.0,
            "On a graceful stop, how long in-flight requests may run before the worker exits.",
            gunicorn=Gunicorn("graceful_timeout", ("--graceful-timeout",))),
    Setting("timeout", "Worker processes", Seconds(1), 30.0,
            "A worker whose event loop has not beaten for this many seconds (or that has not "
            "booted in this time) has the stacks of all its threads written to the error log, "
            "and is then killed and replaced.",
            gunicorn=Gunicorn("timeout", ("-t", "--timeout"),
                     "gunicorn's 0 (never) is not allowed, the least is 1 s; prefork's timeout "
                     "watches the worker's loop, and request_timeout a request")),
    Setting("request_timeout", "Worker processes", Seconds(), 0.0,
            "A request running longer than this is logged with the stacks of its worker, and "
            "the worker is replaced gracefully (a new one starts first). 0 turns it off."),
    Setting("ready_path", "Worker processes", Str(), "",
            "A path every new worker sends itself (GET, through the app and the whole request "
            "path) after loading the app and before it accepts connections; an answer other "
            "than 2xx or 3xx counts as a failed boot, so a reload whose code cannot serve is "
            "rolled back. Empty: no check."),
    Setting("canary_probation", "Worker processes", Seconds(), 1.0,
            "On a reload, how long the first worker of the new code (the canary) serves next to "
            "the old workers before they are replaced. The reload fails, and the old workers "
            "stay, if the canary dies meanwhile or answers most of its requests (at least 5) "
            "with a 5xx status while the old workers do not."),
    Setting("max_requests", "Worker processes", Int(0), 0,
            "Replace a worker after it has served this many requests (0: never). The new "
            "worker starts before the old one stops.",
            gunicorn=Gunicorn("max_requests", ("--max-requests",))),
    Setting("max_requests_jitter", "Worker processes", Int(0), 0,
            "Add a random 0..N to max_requests per worker, so workers are not all due at once.",
            gunicorn=Gunicorn("max_requests_jitter", ("--max-requests-jitter",))),
    Setting("max_worker_lifetime", "Worker processes", Seconds(), 0.0,
            "Replace a worker after it has run this many seconds, plus up to 10% jitter "
            "(0: never)."),
    Setting("max_worker_memory", "Worker processes", Int(0), 0,
            "Replace a worker whose resident memory (RSS) passes this many MiB, after its "
            "in-flight requests finish (0: never)."),
    Setting("max_recycling", "Worker processes", Int(1, 1024), 1,
            "The most workers replaced at once for max_requests, max_worker_lifetime, "
            "max_worker_memory or request_timeout, so recycling never takes a large share "
            "of capacity."),
    Setting("max_boot_failures", "Worker processes", Int(1, 1000), 5,
            "Workers that fail to boot this many times in a row make the master stop with "
            "status 3 (it retries with growing delays until then), unless workers are "
            "serving: then it goes on with them and keeps retrying."),
    Setting("preload", "Worker processes", Bool(), False,
            "Import the application in the master before forking (then gc.freeze()), so "
            "workers share its memory copy-on-write; Django database connections and caches "
            "opened meanwhile are closed before the fork (docs/django.md). HUP then "
            "re-executes the master.",
            gunicorn=Gunicorn("preload_app", ("--preload",),
                     "prefork also runs gc.freeze(), and HUP re-executes the master so that the "
                     "new code is loaded")),
    # Timeouts
    Setting("keepalive", "Timeouts", Seconds(), 5.0,
            "Seconds an idle keep-alive connection is kept open. 0 closes after each response.",
            gunicorn=Gunicorn("keepalive", ("--keep-alive",),
                     "gunicorn's default is 2 s, prefork's 5 s")),
    Setting("header_timeout", "Timeouts", Seconds(0.1), 10.0,
            "Seconds a client has to send a whole request head, from its first byte "
            "(or from connecting). A client trickling bytes (slowloris) gets 408 and is closed."),
    Setting("body_timeout", "Timeouts", Seconds(0.1), 30.0,
            "Seconds a request body may go without progress before the client gets 408."),
    Setting("body_min_rate", "Timeouts", Int(0), 500,
            "Slowest upload rate allowed, in bytes per second: a body gets body_timeout from "
            "its start plus one second for every this many bytes received, so a client "
            "trickling bytes gets 408 even if it never pauses for body_timeout. 0 turns it off."),
    Setting("write_timeout", "Timeouts", Seconds(0.1), 30.0,
            "Seconds a response write may go without progress (the client stopped reading) "
            "before the connection is dropped."),
    # Limits
    Setting("limit_request_line", "Limits", Int(64, 1 * MiB), 8190,
            "Longest request line in bytes (method, target, version). Longer gets 414.",
            gunicorn=Gunicorn("limit_request_line", ("--limit-request-line",),
                     "gunicorn's default is 4094 and 0 means no limit; prefork's default is 8190 "
                     "and 0 is not allowed")),
    Setting("limit_request_fields", "Limits", Int(1, 10_000), 100,
            "Most header fields in a request. More gets 431.",
            gunicorn=Gunicorn("limit_request_fields", ("--limit-request-fields",))),
    Setting("limit_request_field_size", "Limits", Int(64, 1 * MiB), 8190,
            "Longest header line in bytes. Longer gets 431.",
            gunicorn=Gunicorn("limit_request_field_size", ("--limit-request-field_size",),
                     "gunicorn's 0 (no limit) is not allowed")),
    Setting("limit_request_body", "Limits", Int(0), 1 * GiB,
            "Largest request body in bytes, with Content-Length or chunked. Larger gets 413. "
            "0 means no limit."),
    Setting("spool_threshold", "Limits", Int(0), 512 * KiB,
            "Request bodies larger than this many bytes are buffered in a temporary file "
            "instead of memory."),
    Setting("limit_buffer_memory", "Limits", Int(0), 64 * MiB,
            "Most bytes of requests still arriving (partial heads, bodies below "
            "spool_threshold) that one worker holds in memory. Past it, bodies go to a "
            "temporary file at once and a partial head gets 503. 0 means no limit."),
    Setting("tmp_upload_dir", "Limits", Str(), "",
            "Directory for spooled request bodies; empty means the system default.",
            gunicorn=Gunicorn("tmp_upload_dir")),
    # Application
    Setting("root_path", "Application", Str(), "",
            "URL prefix the application is mounted under: it becomes SCRIPT_NAME and is "
            "stripped from PATH_INFO.",
            gunicorn=Gunicorn("root_path", ("--root-path",))),
    # Proxies
    Setting("forwarded_allow_ips", "Proxies", NetList(), ["127.0.0.1", "::1", "unix"],
            "Peers whose forwarded headers (forwarded_headers, secure_scheme_headers) are "
            "believed: addresses or CIDRs, '*' for any peer, 'unix' for a peer on a unix "
            "socket. From any other peer those headers reach the app as sent and change "
            "nothing. The client is the rightmost hop of X-Forwarded-For (or Forwarded) "
            "that is not itself in this list.", metavar="CIDR", multiple=True,
            gunicorn=Gunicorn("forwarded_allow_ips", ("--forwarded-allow-ips",),
                     "gunicorn's FORWARDED_ALLOW_IPS variable is PREFORK_FORWARDED_ALLOW_IPS here;"
                     " prefork's default also trusts unix-socket peers")),
    Setting("forwarded_headers", "Proxies", ForwardedHeaders(),
            ["X-Forwarded-For", "X-Forwarded-Proto"],
            "The forwarded headers a trusted peer may set: Forwarded (RFC 7239), "
            "X-Forwarded-For (REMOTE_ADDR), X-Forwarded-Proto (wsgi.url_scheme), "
            "X-Forwarded-Host (HTTP_HOST, SERVER_NAME), X-Forwarded-Port (SERVER_PORT), "
            "X-Forwarded-Prefix (SCRIPT_NAME). Name only headers your proxy sets or "
            "overwrites itself: one it passes through unchanged is the client's to forge.",
            metavar="HEADER", multiple=True),
    Setting("secure_scheme_headers", "Proxies", StrMap(),
            {"X-Forwarded-Protocol": "ssl", "X-Forwarded-Ssl": "on"},
            "Headers that, from a trusted peer, mean https when they have the given value "
            "(as gunicorn's). Scheme headers that disagree get a 400.", metavar="HEADER=VALUE",
            multiple=True,
            gunicorn=Gunicorn("secure_scheme_headers")),
    Setting("proxy_protocol", "Proxies", Choice(("off", "v1", "v2", "auto")), "off",
            "Expect a PROXY protocol header (HAProxy's; v1 text, v2 binary, or auto for "
            "either) at the start of every connection, and take the client's address from "
            "it. A connection without a valid one is closed.",
            gunicorn=Gunicorn("proxy_protocol", ("--proxy-protocol",),
                     "a bare --proxy-protocol means auto; true and false in a gunicorn file "
                     "mean auto and off"), const="auto"),
    Setting("proxy_allow_ips", "Proxies", NetList(), ["127.0.0.1", "::1", "unix"],
            "Peers allowed to send a PROXY protocol header; a connection from any other "
            "peer is closed when proxy_protocol is on. Same forms as forwarded_allow_ips.",
            metavar="CIDR", multiple=True,
            gunicorn=Gunicorn("proxy_allow_ips", ("--proxy-allow-from",),
                     "prefork's default also allows unix-socket peers")),
    # Process
    Setting("daemon", "Process", Bool(), False,
            "Detach from the terminal and run in the background. `prefork start --daemon` "
            "returns once the server is ready, or fails with the reason. Send the error log "
            "to a file or syslog, since stderr goes to /dev/null.",
            gunicorn=Gunicorn("daemon", ("-D", "--daemon"))),
    Setting("user", "Process", Str(), "",
            "Run the workers as this user (name or uid); the master, started as root, keeps "
            "root to bind and re-exec, as nginx's does. It creates the errorlog and accesslog "
            "files and gives them to this user and group, at start and after each USR1 "
            "reopen, so the workers can open them.",
            gunicorn=Gunicorn("user", ("-u", "--user"))),
    Setting("group", "Process", Str(), "",
            "Run the workers with this group (name or gid); default: the user's group.",
            gunicorn=Gunicorn("group", ("-g", "--group"))),
    Setting("umask", "Process", Octal(), 0o022,
            "The umask of the master and the workers.",
            gunicorn=Gunicorn("umask", ("-m", "--umask"),
                     "always read as octal (gunicorn reads -m 22 as decimal, -m 022 as octal); "
                     "gunicorn's default is 0, prefork's 022")),
    Setting("chdir", "Process", Str(), "",
            "Change to this directory before loading the application. Relative paths of the "
            "config file, pidfile, control socket and error log are still taken from the "
            "directory prefork was started in (where a USR2 upgrade starts the new master "
            "too); those of the access log and reload_extra_files from this one.",
            gunicorn=Gunicorn("chdir", ("--chdir",))),
    Setting("pythonpath", "Process", StrList(split_items=True), [],
            "Directories put in front of sys.path before the application is imported "
            "(comma-separated in the environment variable).", multiple=True,
            gunicorn=Gunicorn("pythonpath", ("--pythonpath",))),
    Setting("env", "Process", StrMap(), {},
            "Environment variables set for the application: KEY=VALUE (repeat the flag), or "
            "a TOML table.", metavar="KEY=VALUE", multiple=True,
            gunicorn=Gunicorn("raw_env", ("-e", "--env"))),
    # Control
    Setting("control_socket", "Control", Str(), "prefork.ctl",
            "Path of the master's control socket (JSON lines), used by prefork stop, reload, "
            "upgrade and status. A relative path is taken from the directory prefork starts "
            "in (not chdir). Empty: none.",
            gunicorn=Gunicorn("control_socket", ("--control-socket",),
                     "gunicorn's --no-control-socket is --control-socket ''")),
    Setting("control_socket_mode", "Control", Octal(), 0o600,
            "File mode of the control socket. Whoever can connect can stop the server.",
            gunicorn=Gunicorn("control_socket_mode", ("--control-socket-mode",))),
    Setting("upgrade_timeout", "Control", Seconds(1), 60.0,
            "How long a new master started by USR2 (or by HUP with preload) has to be ready, "
            "all its workers booted. Past it the old master stops it (TERM, then KILL 2 s "
            "later), logs why, takes back the pidfile and the control socket and goes on "
            "serving."),
    Setting("metrics_bind", "Control", Address(), "",
            "Address (HOST:PORT, [IPv6]:PORT or unix:PATH) where the master serves Prometheus "
            "metrics at /metrics and health checks at /livez and /readyz (docs/kubernetes.md). "
            "Empty: off. Anyone who can connect can read them: keep it on a private address.",
            metavar="ADDRESS"),
    Setting("pidfile", "Control", Str(), "",
            "Write the master's pid to this file (a stale one is replaced, a live one refused). "
            "prefork stop/reload/status fall back to it when there is no control socket.",
            gunicorn=Gunicorn("pidfile", ("-p", "--pid"))),
    # Logging
    Setting("loglevel", "Logging", Choice(LOGLEVELS), "info",
            "Error log level: debug, info, warning, error or critical.",
            gunicorn=Gunicorn("loglevel", ("--log-level",))),
    Setting("errorlog", "Logging", Str(), "-",
            "Where the error log goes: - for stderr, or a file path (reopened on USR1).",
            gunicorn=Gunicorn("errorlog", ("--error-logfile", "--log-file"))),
    Setting("accesslog", "Logging", Str(), "",
            "Where the access log goes: empty for nowhere, - for stdout, or a file path "
            "(reopened on USR1).",
            gunicorn=Gunicorn("accesslog", ("--access-logfile",))),
    Setting("access_log_format", "Logging", AccessLogFormat(), DEFAULT_ACCESS_FORMAT,
            "Access log line format, with gunicorn's atoms: h remote address, t time, r request "
            "line, m method, U path, q query, H protocol, s status, b/B response bytes, f referer, "
            "a user agent, T/M/D/L duration in s/ms/us/decimal s, p pid, {Name}i request header, "
            "{Name}o response header, {key}e environ value. Or json for JSON lines. Values are "
            "escaped so a client cannot forge a line.",
            gunicorn=Gunicorn("access_log_format", ("--access-logformat",),
                     "the same atoms, but %(u)s is always - (prefork does not decode a Basic "
                     "auth user); json gives JSON lines")),
    Setting("request_id_header", "Logging", Str(), "",
            "Give every request an id, in this header (e.g. X-Request-ID): kept as sent by a "
            "peer in forwarded_allow_ips, made up by prefork otherwise. The app finds it in "
            "the environ as prefork.request_id and as the header; the access log with "
            "{X-Request-ID}i, and in the json format. Empty: no ids."),
    Setting("syslog_addr", "Logging", Str(), "",
            "Also send the error log to syslog: unix:///dev/log, udp://HOST:PORT or "
            "tcp://HOST:PORT. Empty: no syslog.",
            gunicorn=Gunicorn("syslog_addr", ("--log-syslog-to",),
                     "turns syslog on by itself (in gunicorn only with --log-syslog, which "
                     "alone means udp://localhost:514); no #TYPE suffix")),
    Setting("syslog_facility", "Logging", Choice(SYSLOG_FACILITIES), "user",
            "Syslog facility (user, daemon, local0 ... local7).",
            gunicorn=Gunicorn("syslog_facility", ("--log-syslog-facility",))),
    # Development
    Setting("reload", "Development", Bool(), False,
            "For development only, like Django's runserver: reload the workers when a source "
            "file changes — a .py file in a directory holding one of the app's modules (not "
            "the standard library or site-packages), or one of reload_extra_files. The new "
            "code boots in a canary first: a syntax error is logged and the old code keeps "
            "serving until the next save. Needs an APP to import (not preload or an embedded "
            "app, which re-execute the master instead). Don't use it in production.",
            gunicorn=Gunicorn("reload", ("--reload",))),
    Setting("reload_extra_files", "Development", StrList(), [],
            "More files whose change reloads the workers with reload on: templates, "
            "configuration, ... Glob patterns such as templates/**/*.html are allowed; "
            "relative paths are taken from chdir.", metavar="PATH", multiple=True,
            gunicorn=Gunicorn("reload_extra_files", ("--reload-extra-file",))),
    Setting("reload_engine", "Development", Choice(("auto", "inotify", "poll")), "auto",
            "How reload watches files: inotify (Linux, no extra package) wakes at once; poll "
            "stats the files once a second and works everywhere, including network and "
            "container-mounted file systems that send no inotify events; auto uses inotify "
            "when available.",
            gunicorn=Gunicorn("reload_engine", ("--reload-engine",))),
]

SETTINGS += [Setting(name, "Server hooks", Hook(), "", f"Called {signature}.",
                     metavar="MODULE:FUNCTION", gunicorn=Gunicorn(name))
             for name, signature in HOOKS.items()]

BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}
# A gunicorn config file's names for the settings prefork has.
BY_GUNICORN_NAME: dict[str, Setting] = {s.gunicorn.name: s for s in SETTINGS if s.gunicorn}


class Config(Settings):
    """Resolved settings, read as attributes: ``cfg.threads``.

    Each attribute's type is declared in ``Settings`` (prefork/_settings.py,
    generated from SETTINGS), so mypy checks every ``cfg.x``: a misspelt
    setting is an error there, not an ``Any``.
    """

    def __init__(self, values: Mapping[str, Any] | None = None):
        self._values = {s.name: s.default for s in SETTINGS}
        self._sources = {s.name: "default" for s in SETTINGS}
        # Not settings: the APP a gunicorn file names (its wsgi_app), used when
        # the command line names none; what a source asked for that prefork
        # ignores, one line each, for the caller to show.
        self.wsgi_app: str | None = None
        self.warnings: list[str] = []
        if values:
            self.update(values, "argument")

    if not TYPE_CHECKING:
        # Hidden from mypy, which would otherwise type every unknown name as
        # this method's Any; it reads the declared attributes of Settings.
        def __getattr__(self, name: str) -> Any:
            try:
                return self.__dict__["_values"][name]
            except KeyError:
                raise AttributeError(name) from None

    def source(self, name: str) -> str:
        return self._sources[name]

    def set(self, name: str, value: Any, source: str) -> None:
        setting = BY_NAME.get(name)
        if setting is None:
            raise ConfigError(unknown_setting(name, source))
        self._values[name] = setting.convert(value, source)
        self._sources[name] = source

    def update(self, values: Mapping[str, Any], source: str) -> None:
        for name, value in values.items():
            self.set(name, value, source)

    def load_toml(self, path: str) -> None:
        try:
            with open(path, "rb") as f:
                data = tomllib.load(f)
        except OSError as e:
            raise ConfigError(f"cannot read config file {path}: {e.strerror}") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"config file {path} is not valid TOML: {e}") from None
        self.update(data, f"config file {path}")

    def load_env(self, environ: Mapping[str, str]) -> None:
        for key, value in environ.items():
            if not key.startswith("PREFORK_"):
                continue
            name = key[len("PREFORK_"):].lower()
            if name in BY_NAME:
                self.set(name, value, f"environment {key}")
            elif name not in _NOT_SETTINGS:
                raise ConfigError(unknown_setting(name, f"environment {key}"))


# PREFORK_* variables that are not settings (set by the server for its children).
_NOT_SETTINGS = frozenset({"fds", "upgrade_fd", "metrics_fd"})


def unknown_setting(name: str, source: str) -> str:
    msg = f"unknown setting '{name}' ({source})"
    close = difflib.get_close_matches(name, list(BY_NAME), n=1)
    return msg + (f"; did you mean '{close[0]}'?" if close else "")


def source_kind(source: str) -> str:
    """What kind of source a ``Config.source()`` names: default, toml,
    gunicorn (a gunicorn config file), env, cli or argument (Python)."""
    for prefix, kind in (("config file", "toml"), ("gunicorn file", "gunicorn"),
                         ("environment", "env"), ("command line", "cli")):
        if source.startswith(prefix):
            return kind
    return source


def sections() -> Iterable[tuple[str, list[Setting]]]:
    order: dict[str, list[Setting]] = {}
    for s in SETTINGS:
        order.setdefault(s.section, []).append(s)
    return order.items()


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        if not value:
            return "{}"
        return "{ " + ", ".join(f"{toml_value(k)} = {toml_value(v)}" for k, v in value.items()) + " }"
    return repr(value)


def settings_markdown() -> str:
    """docs/settings.md, generated from SETTINGS (``make settings``)."""
    out = ["# Settings reference", "",
           "Generated from `prefork/config.py` by `make settings`; do not edit.",
           "", "Each setting can be given, from lowest to highest precedence, as a key in the "
           "TOML file (`-c FILE`, or `./prefork.toml`), as a `PREFORK_*` environment variable, "
           "or as a command-line flag. gunicorn's flags and config-file names work too: "
           "see [Migrating](migrating.md).", ""]
    for section, settings in sections():
        out += [f"## {section}", ""]
        for s in settings:
            flags = ", ".join(f"`{f}`" for f in s.flags)
            if s.const is not None:
                flags += f" (alone: {s.const})"
            out += [f"### `{s.name}`", "",
                    f"- flag: {flags}" + (" (repeatable)" if s.multiple else ""),
                    f"- environment: `{s.env}`",
                    f"- TOML: `{s.name} = {toml_value(s.default)}`" if s.default_doc is None
                    else f"- default: {s.default_doc}",
                    f"- allowed: {s.type.describe()}"]
            if s.gunicorn is not None:
                out += [f"- gunicorn: `{s.gunicorn.name}`"
                        + (f"; {s.gunicorn.note}" if s.gunicorn.note else "")]
            out += ["", s.doc, ""]
    return "\n".join(out)


def example_toml() -> str:
    """conf/prefork.toml: every setting at its default, with its doc as a comment."""
    out = ["# prefork configuration: every setting, at its default.",
           "# Generated by `make settings`; see docs/settings.md.", ""]
    for section, settings in sections():
        out += [f"# --- {section} ---", ""]
        for s in settings:
            out += [f"# {line}" for line in textwrap.wrap(s.doc, 86)]
            if s.default_doc is None:
                out += [f"# {s.name} = {toml_value(s.default)}", ""]
            else:
                out += [f"# {s.name} = ...  (default: {s.default_doc})", ""]
    return "\n".join(out)



def settings_module() -> str:
    """prefork/_settings.py, generated from SETTINGS (``make settings``): the
    type of every setting as an annotated attribute of ``Settings``."""
    out = ['"""The type of every setting, for mypy: generated from SETTINGS in',
           'prefork/config.py by `make settings`; do not edit."""', "",
           "from __future__ import annotations", "",
           "from collections.abc import Callable",
           "from typing import Any, Literal", "", "",
           "class Settings:",
           '    """One attribute per setting, with the type of its checked value;',
           '    ``Config`` inherits these, and fills them in at run time."""']
    for section, settings in sections():
        out += ["", f"    # {section}"]
        out += [f"    {s.name}: {s.type.annotation}" for s in settings]
    return "\n".join(out) + "\n"

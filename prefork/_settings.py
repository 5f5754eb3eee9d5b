"""The type of every setting, for mypy: generated from SETTINGS in
prefork/config.py by `make settings`; do not edit."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal


class Settings:
    """One attribute per setting, with the type of its checked value;
    ``Config`` inherits these, and fills them in at run time."""

    # Server socket
    bind: list[str]
    backlog: int
    reuse_port: bool
    unix_socket_mode: int
    unix_socket_owner: str

    # Worker processes
    workers: int
    threads: int
    max_connections: int
    graceful_timeout: float
    timeout: float
    request_timeout: float
    ready_path: str
    canary_probation: float
    max_requests: int
    max_requests_jitter: int
    max_worker_lifetime: float
    max_worker_memory: int
    max_recycling: int
    max_boot_failures: int
    preload: bool

    # Timeouts
    keepalive: float
    header_timeout: float
    body_timeout: float
    body_min_rate: int
    write_timeout: float

    # Limits
    limit_request_line: int
    limit_request_fields: int
    limit_request_field_size: int
    limit_request_body: int
    spool_threshold: int
    limit_buffer_memory: int
    tmp_upload_dir: str

    # Application
    root_path: str

    # Proxies
    forwarded_allow_ips: list[str]
    forwarded_headers: list[str]
    secure_scheme_headers: dict[str, str]
    proxy_protocol: Literal["off", "v1", "v2", "auto"]
    proxy_allow_ips: list[str]

    # Process
    daemon: bool
    user: str
    group: str
    umask: int
    chdir: str
    pythonpath: list[str]
    env: dict[str, str]

    # Control
    control_socket: str
    control_socket_mode: int
    upgrade_timeout: float
    metrics_bind: str
    pidfile: str

    # Logging
    loglevel: Literal["debug", "info", "warning", "error", "critical"]
    errorlog: str
    accesslog: str
    access_log_format: str
    request_id_header: str
    syslog_addr: str
    syslog_facility: Literal["auth", "authpriv", "console", "cron", "daemon", "ftp", "kern", "lpr", "mail", "news", "ntp", "security", "solaris-cron", "syslog", "user", "uucp", "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7"]

    # Development
    reload: bool
    reload_extra_files: list[str]
    reload_engine: Literal["auto", "inotify", "poll"]

    # Server hooks
    on_starting: str | Callable[..., Any]
    when_ready: str | Callable[..., Any]
    pre_fork: str | Callable[..., Any]
    post_fork: str | Callable[..., Any]
    post_worker_init: str | Callable[..., Any]
    worker_int: str | Callable[..., Any]
    worker_abort: str | Callable[..., Any]
    pre_request: str | Callable[..., Any]
    post_request: str | Callable[..., Any]
    child_exit: str | Callable[..., Any]
    worker_exit: str | Callable[..., Any]
    nworkers_changed: str | Callable[..., Any]
    on_reload: str | Callable[..., Any]
    on_exit: str | Callable[..., Any]

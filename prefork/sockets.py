"""Listening sockets: parse bind addresses, bind them, or take them over.

``HOST:PORT``, ``[IPv6]:PORT``, ``unix:PATH`` and ``fd://N`` (a listening
socket inherited from the parent) are bound here, once, in the master; the
workers inherit them. A master started by USR2 finds its predecessor's
listeners in ``PREFORK_FDS`` and uses those instead of binding.
"""

from __future__ import annotations

import os
import socket
import stat
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    # The settings' types, not config.py: config imports this module to
    # check bind addresses.
    from ._settings import Settings

FD_FAMILY = -1


def parse_address(address: str) -> tuple[int, object]:
    """Return ``(family, sockaddr)`` for a bind string, or raise ValueError.

    ``fd://N`` gives ``(FD_FAMILY, N)``.
    """
    if address.startswith("fd://"):
        if not address[5:].isdigit():
            raise ValueError("fd:// needs a file descriptor number")
        return FD_FAMILY, int(address[5:])
    if address.startswith("unix:"):
        path = address[5:]
        if not path:
            raise ValueError("unix: needs a path")
        return socket.AF_UNIX, path
    if address.startswith("["):
        host, sep, port = address[1:].partition("]:")
        if not sep:
            raise ValueError("IPv6 addresses are written [ADDR]:PORT")
        family = socket.AF_INET6
    else:
        host, sep, port = address.rpartition(":")
        if not sep:
            raise ValueError("expected HOST:PORT, [IPv6]:PORT or unix:PATH")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
    if not port.isdigit() or int(port) > 65535:
        raise ValueError(f"port {port!r} is not a number from 0 to 65535")
    return family, (host or ("::" if family == socket.AF_INET6 else "0.0.0.0"), int(port))


def bind_all(cfg: Settings, addresses: list[str] | None = None) -> list[socket.socket]:
    """Bind every address of ``cfg.bind`` (or ``addresses``) with ``cfg``'s socket
    settings; on an error close what was bound and raise."""
    bound: list[socket.socket] = []
    try:
        for address in cfg.bind if addresses is None else addresses:
            bound.append(bind(address, cfg.backlog, cfg.reuse_port, cfg.unix_socket_mode,
                              cfg.unix_socket_owner))
    except OSError:
        for sock in bound:
            sock.close()
        raise
    return bound


def bind(address: str, backlog: int = 2048, reuse_port: bool = False,
         unix_mode: int | None = None, unix_owner: str = "") -> socket.socket:
    """Create, bind and listen; raise OSError with the address in the message."""
    family, sockaddr = parse_address(address)
    if family == FD_FAMILY:
        return adopt(int(sockaddr), address)  # type: ignore[call-overload]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if family == socket.AF_UNIX:
            _remove_stale_unix_socket(str(sockaddr))
        else:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(sockaddr)  # type: ignore[arg-type]
        if family == socket.AF_UNIX:
            if unix_mode is not None:
                os.chmod(str(sockaddr), unix_mode)
            if unix_owner:
                _chown(str(sockaddr), unix_owner)
        sock.listen(backlog)
    except OSError as e:
        sock.close()
        raise OSError(e.errno, f"cannot listen on {address}: {e.strerror}") from None
    # Close-on-exec: workers get it by fork, a USR2 successor by an explicit
    # hand-over (upgrade.py); a program the app runs must not keep the port.
    sock.set_inheritable(False)
    return sock


def _chown(path: str, owner: str) -> None:
    """``USER``, ``USER:GROUP`` or ``:GROUP`` (names or numbers)."""
    import grp
    import pwd

    user, _, group = owner.partition(":")
    try:
        uid = -1 if not user else int(user) if user.isdigit() else pwd.getpwnam(user).pw_uid
        gid = -1 if not group else int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
    except KeyError as e:
        raise OSError(22, f"unix_socket_owner {owner!r}: no such user or group {e}") from None
    os.chown(path, uid, gid)


def adopt(fd: int, what: str) -> socket.socket:
    """Wrap an inherited descriptor, which must be a listening stream socket."""
    try:
        sock = socket.socket(fileno=fd)
    except OSError as e:
        raise OSError(e.errno, f"cannot use {what}: {e.strerror}") from None
    if sock.type != socket.SOCK_STREAM or not sock.getsockopt(socket.SOL_SOCKET,
                                                               socket.SO_ACCEPTCONN):
        sock.detach()
        raise OSError(22, f"cannot use {what}: descriptor {fd} is not a listening stream socket")
    sock.set_inheritable(False)     # see bind()
    return sock


def inherited_from_env() -> list[socket.socket]:
    """Listeners handed over by the master that started this one (USR2)."""
    value = os.environ.pop("PREFORK_FDS", "")
    return [adopt(int(fd), f"inherited fd {fd}") for fd in value.split(",") if fd.strip()]


def unlink_unix(sock: socket.socket) -> None:
    """Remove a unix socket's file when its server stops for good."""
    path = sock.getsockname()
    if isinstance(path, str) and path and not path.startswith("\x00"):
        try:
            os.unlink(path)
        except OSError:
            pass


def _remove_stale_unix_socket(path: str) -> None:
    """Replace a socket file nobody listens on; refuse a live one or a non-socket."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise OSError(17, f"{path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError:
        os.unlink(path)   # nobody answers: stale
        return
    finally:
        probe.close()
    raise OSError(98, f"{path} is in use by a running server")


def describe(sock: socket.socket) -> str:
    """``http://HOST:PORT`` or ``unix:PATH`` for log lines."""
    if sock.family == socket.AF_UNIX:
        return f"unix:{sock.getsockname()}"
    host, port = sock.getsockname()[:2]
    if sock.family == socket.AF_INET6:
        host = f"[{host}]"
    return f"http://{host}:{port}"

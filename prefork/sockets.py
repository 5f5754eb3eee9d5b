"""Listening sockets: parse bind addresses and bind them.

``HOST:PORT``, ``[IPv6]:PORT`` and ``unix:PATH`` are supported here; inherited
descriptors and systemd socket activation come with the master.
"""

from __future__ import annotations

import os
import socket
import stat


def parse_address(address: str) -> tuple[int, object]:
    """Return ``(family, sockaddr)`` for a bind string, or raise ValueError."""
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


def bind(address: str, backlog: int = 2048) -> socket.socket:
    """Create, bind and listen; raise OSError with the address in the message."""
    family, sockaddr = parse_address(address)
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if family == socket.AF_UNIX:
            _remove_stale_unix_socket(str(sockaddr))
        else:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(sockaddr)  # type: ignore[arg-type]
        sock.listen(backlog)
    except OSError as e:
        sock.close()
        raise OSError(e.errno, f"cannot listen on {address}: {e.strerror}") from None
    sock.set_inheritable(True)
    return sock


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

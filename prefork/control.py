"""The master's control socket: a unix socket speaking JSON lines.

One request per connection: the client sends ``{"cmd": ...}`` and a newline,
the master answers one JSON line and closes. ``reload`` and ``upgrade``
answer when the outcome is known (the canary booted or failed; the new
master became ready or died), so ``prefork reload`` can say *why* a reload
failed. The socket is created with mode 0600 (``control_socket_mode``): it
can stop the server.

Commands: status, reload, upgrade, stop (``graceful``: bool), add_workers
and remove_workers (``n``: int).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("prefork.error")

MAX_REQUEST = 4096


class ControlServer:
    """The master's end. ``handle_ready()`` when its fd is readable."""

    def __init__(self, path: str, mode: int,
                 handler: Callable[[dict[str, Any], ControlClient], None], takeover: bool = False):
        self.path = os.path.abspath(path)
        self.handler = handler
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            if os.path.lexists(self.path):
                if takeover:
                    os.unlink(self.path)
                else:
                    _remove_if_stale(self.path)
            old_umask = os.umask(0o777 & ~mode)
            try:
                self.sock.bind(self.path)
            finally:
                os.umask(old_umask)
            os.chmod(self.path, mode)
            self.sock.listen(16)
        except OSError as e:
            self.sock.close()
            raise OSError(e.errno, f"cannot create the control socket {self.path}: "
                                   f"{e.strerror}") from None
        self.sock.setblocking(False)
        self.inode = os.stat(self.path).st_ino

    def fileno(self) -> int:
        return self.sock.fileno()

    def handle_ready(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                log.warning("control socket accept failed: %s", e)
                return
            client = ControlClient(conn)
            request = client.read_request()
            if request is None:
                continue
            try:
                self.handler(request, client)
            except Exception as e:
                log.exception("control command %r failed", request.get("cmd"))
                client.reply({"ok": False, "error": f"internal error: {e}"})

    def close(self) -> None:
        self.sock.close()
        try:
            # Only remove our own socket file, not one a newer master made.
            if os.stat(self.path).st_ino == self.inode:
                os.unlink(self.path)
        except OSError:
            pass


class ControlClient:
    """One connected client, possibly waiting for a deferred answer."""

    def __init__(self, conn: socket.socket):
        self.conn = conn
        self.conn.settimeout(1.0)

    def read_request(self) -> dict[str, Any] | None:
        data = b""
        try:
            while b"\n" not in data and len(data) < MAX_REQUEST:
                chunk = self.conn.recv(MAX_REQUEST)
                if not chunk:
                    break
                data += chunk
            request = json.loads(data.split(b"\n", 1)[0])
            if not isinstance(request, dict) or not isinstance(request.get("cmd"), str):
                raise ValueError("expected a JSON object with a 'cmd'")
            return request
        except (OSError, ValueError) as e:
            self.reply({"ok": False, "error": f"bad request: {e}"})
            return None

    def reply(self, answer: dict[str, Any]) -> None:
        try:
            self.conn.settimeout(2.0)
            self.conn.sendall(json.dumps(answer).encode() + b"\n")
        except OSError:
            pass
        finally:
            self.conn.close()


def _remove_if_stale(path: str) -> None:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError:
        os.unlink(path)
        return
    finally:
        probe.close()
    raise OSError(98, "another prefork master is using it")


def request(path: str, command: dict[str, Any], timeout: float = 60.0) -> dict[str, Any]:
    """The client's end: send one command, wait for its answer.

    Raises ConnectionError when nobody listens on ``path``.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        try:
            sock.connect(path)
        except (FileNotFoundError, ConnectionRefusedError) as e:
            raise ConnectionError(f"no master listens on {path}") from e
        sock.sendall(json.dumps(command).encode() + b"\n")
        data = b""
        deadline = time.monotonic() + timeout
        while not data.endswith(b"\n") and time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        sock.close()
    if not data:
        raise ConnectionError(f"the master on {path} closed without answering")
    answer: dict[str, Any] = json.loads(data)
    return answer

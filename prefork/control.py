"""The master's control socket: a unix socket speaking JSON lines.

One request per connection: the client sends ``{"cmd": ...}`` and a newline,
the master answers one JSON line and closes. ``reload`` and ``upgrade``
answer when the outcome is known (the canary booted or failed; the new
master became ready or died), so ``prefork reload`` can say *why* a reload
failed. The socket is created with mode 0600 (``control_socket_mode``): it
can stop the server.

The commands are ``COMMANDS``, declared once here: the master's handlers
(``Master.CONTROL``), the ``prefork`` CLI's subcommands and ``request()`` all
use these names, so mypy rejects a misspelt one, and the master answers an
unknown one with the closest name.

The master never waits on a client: requests are read without blocking as
bytes arrive, in the master's own select loop, and a client that has not
sent its whole line within ``READ_TIMEOUT`` is answered with an error and
dropped. A client trickling bytes therefore cannot freeze supervision
(reaping, heartbeats, the systemd watchdog).
"""

from __future__ import annotations

import difflib
import json
import logging
import os
import socket
import stat
import time
from collections.abc import Callable
from typing import Any, Literal

log = logging.getLogger("prefork.error")

ControlCommand = Literal["status", "stop", "reload", "upgrade", "dump", "add_workers",
                         "remove_workers"]

# name -> what it does (and its arguments)
COMMANDS: dict[ControlCommand, str] = {
    "status": "the master's and every worker's state",
    "stop": "stop the server; graceful: bool (default true)",
    "reload": "reload the configuration and the app; answers once the canary is decided",
    "upgrade": "start a new master from the current code; answers once it is ready or dead",
    "dump": "every worker's threads, their stacks and the request each serves",
    "add_workers": "run n: int (default 1) more workers",
    "remove_workers": "run n: int (default 1) fewer workers, at least one",
}
# What a stopping server refuses (it would start something the stop then kills).
REFUSED_WHILE_STOPPING: frozenset[ControlCommand] = frozenset(
    {"reload", "upgrade", "add_workers", "remove_workers"})


def command_named(name: str) -> ControlCommand:
    """``name`` as a ControlCommand; ValueError (naming the closest) if it is none."""
    for cmd in COMMANDS:
        if cmd == name:
            return cmd
    raise ValueError(unknown_command(name))


def unknown_command(cmd: str) -> str:
    close = difflib.get_close_matches(cmd, list(COMMANDS), n=1)
    return (f"unknown command {cmd!r}" + (f"; did you mean {close[0]!r}?" if close else "")
            + "; commands: " + ", ".join(COMMANDS))


MAX_REQUEST = 4096
READ_TIMEOUT = 2.0      # seconds a client has to send its request line
MAX_PENDING = 32        # clients still sending, at most; more are refused
REPLY_TIMEOUT = 1.0     # an answer larger than the socket buffer waits this long at most


class ControlServer:
    """The master's end: ``handle_ready(ready)`` when any of ``fds()`` is
    readable, ``expire(now)`` on every turn of the master's loop."""

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
        self.pending: dict[int, ControlClient] = {}

    def fileno(self) -> int:
        return self.sock.fileno()

    def fds(self) -> list[int]:
        """What to wait on: the socket and every client still sending."""
        return [self.sock.fileno(), *self.pending]

    def handle_ready(self, ready: set[int] | list[int] | None = None) -> None:
        """Accept new clients and read from those in ``ready``; run each
        request whose line is complete. Never blocks."""
        listen_fd = self.sock.fileno()
        if ready is None or listen_fd in ready:
            self._accept()
        for fd in [fd for fd in self.pending if ready is None or fd in ready]:
            client = self.pending[fd]
            request = client.read_some()
            if request is not None or client.done:
                del self.pending[fd]
            if request is not None:
                self._run(request, client)

    def expire(self, now: float) -> None:
        """Drop clients that did not send their request in time."""
        for fd, client in list(self.pending.items()):
            if now >= client.deadline:
                del self.pending[fd]
                client.reply({"ok": False, "error": f"bad request: no complete request line "
                                                    f"within {READ_TIMEOUT:g} s"})

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                log.warning("control socket accept failed: %s", e)
                return
            client = ControlClient(conn)
            if len(self.pending) >= MAX_PENDING:
                client.reply({"ok": False, "error": "too many control clients at once"})
                continue
            request = client.read_some()
            if request is not None:
                self._run(request, client)
            elif not client.done:
                self.pending[client.conn.fileno()] = client

    def _run(self, request: dict[str, Any], client: ControlClient) -> None:
        try:
            self.handler(request, client)
        except Exception as e:
            log.exception("control command %r failed", request.get("cmd"))
            client.reply({"ok": False, "error": f"internal error: {e}"})

    def close(self) -> None:
        for client in self.pending.values():
            client.reply({"ok": False, "error": "the master stopped"})
        self.pending.clear()
        self.sock.close()
        try:
            # Only remove our own socket file, not one a newer master made.
            if os.stat(self.path).st_ino == self.inode:
                os.unlink(self.path)
        except OSError:
            pass


class ControlClient:
    """One connected client: its request as it arrives, then one answer
    (perhaps deferred: a reload answers when its canary is decided)."""

    def __init__(self, conn: socket.socket):
        self.conn = conn
        self.conn.setblocking(False)
        self.deadline = time.monotonic() + READ_TIMEOUT
        self.done = False           # answered (a bad request) or gone
        self._data = bytearray()

    def read_some(self) -> dict[str, Any] | None:
        """Read what has arrived; the request once its line is complete.
        A bad or over-long request is answered here (``done`` is then set)."""
        try:
            while b"\n" not in self._data:
                chunk = self.conn.recv(MAX_REQUEST)
                if not chunk:
                    break
                self._data += chunk
                if len(self._data) > MAX_REQUEST:
                    raise ValueError(f"request longer than {MAX_REQUEST} bytes")
        except (BlockingIOError, InterruptedError):
            return None
        except (OSError, ValueError) as e:
            self.reply({"ok": False, "error": f"bad request: {e}"})
            return None
        try:
            request = json.loads(bytes(self._data).split(b"\n", 1)[0])
            if not isinstance(request, dict) or not isinstance(request.get("cmd"), str):
                raise ValueError("expected a JSON object with a 'cmd'")
        except ValueError as e:
            self.reply({"ok": False, "error": f"bad request: {e}"})
            return None
        return request

    def reply(self, answer: dict[str, Any]) -> None:
        self.done = True
        try:
            self.conn.settimeout(REPLY_TIMEOUT)
            self.conn.sendall(json.dumps(answer).encode() + b"\n")
        except OSError:
            pass
        finally:
            self.conn.close()


def _remove_if_stale(path: str) -> None:
    """Remove a socket file no master answers on; refuse anything else."""
    if not stat.S_ISSOCK(os.lstat(path).st_mode):
        raise OSError(17, "it exists and is not a socket (not removed)")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError:
        os.unlink(path)
        return
    finally:
        probe.close()
    raise OSError(98, "another prefork master is using it")


def request(path: str, cmd: ControlCommand, timeout: float = 60.0,
            **args: Any) -> dict[str, Any]:
    """The client's end: send one command (with its ``args``), wait for its
    answer.

    Raises ConnectionError when nobody listens on ``path``.
    """
    command = {"cmd": cmd, **args}
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

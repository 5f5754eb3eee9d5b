"""Development mode (``prefork start --reload``): reload the workers when a
source file changes.

What is watched: every non-hidden ``*.py`` file in each directory that holds
a module the application imported (``sys.modules`` entries with a ``__file__``
outside the standard library, site-packages and prefork itself), plus the
files named by ``reload_extra_files`` (glob patterns allowed). Whole
directories rather than single files, so that a module added next to the
others — say a new ``helpers.py`` with a syntax error that made the reload
fail — is watched too, and fixing it reloads again. ``sys.modules`` is
rescanned every second, so modules imported lazily, after start-up, count.

How a change becomes a reload: the watcher sends HUP to the master, and the
master's ordinary reload does the rest. A *canary* worker imports the new
code first; when that fails (a syntax error, an exception at import) the
traceback goes to the error log and the old workers keep serving, and the
next save reloads again. Before sending HUP the watcher deletes the cached
bytecode of the changed files, so an edit that keeps the size within the
same second as the last compile cannot be served from a stale ``.pyc``.

Where the watcher runs — the design choice:

* Not in the master. The master never imports the application (unless
  ``preload``), so it does not know which modules to watch, and a thread in a
  process that forks is a hazard we do not need.
* In the workers, which do know: each worker starts a watcher thread right
  after importing the app, and takes a *snapshot* of the watched files then.
  Only one of them watches, the *leader*: the one that binds the abstract
  unix datagram socket ``\\0prefork-reload-<master pid>``. The kernel lets only
  one process bind a name and frees it when that process exits, so this is a
  lock with no file to clean up and no stale state after a crash. The others
  try again every second; when the leader exits (retired after a reload), one
  of them takes over and first compares the files with its own snapshot,
  so a change made during the hand-over is not lost.
* The same socket carries the other workers' directories to the leader: a
  module one worker imported lazily is watched even if the leader never
  imported it.
* The master ignores HUP while a canary boots, so the leader waits until no
  worker of the scoreboard is booting before it sends one.

Engines: ``inotify`` (through libc with ctypes; the parent directories are
watched, since editors save by writing a new file and renaming it over the
old one) wakes the leader on an event, and it then compares stats as the
poll engine does every second. ``poll`` stats the files once a second and
works everywhere. ``auto`` picks inotify when libc has it.

This is for development only: a reload replaces every worker, and the
watcher costs one thread and some stat calls. Don't enable it in production.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import glob
import importlib.util
import logging
import os
import select
import signal
import site
import socket
import struct
import sys
import sysconfig
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .scoreboard import BOOTING, Scoreboard
from .threads import start_thread

if TYPE_CHECKING:
    from .config import Config

log = logging.getLogger("prefork.error")

POLL_INTERVAL = 1.0        # poll engine: seconds between two scans
RESCAN_INTERVAL = 1.0      # seconds between two looks at sys.modules and the globs
SHARE_INTERVAL = 10.0      # a non-leader resends its directories this often
DEBOUNCE = 0.2             # quiet time after a change before reloading
SETTLE = 0.5               # after the last booting worker, before HUP
BOOT_WAIT = 120.0          # longest wait for booting workers before HUP anyway
MAX_DATAGRAM = 32 * 1024

# inotify(7)
IN_MODIFY = 0x2
IN_ATTRIB = 0x4
IN_CLOSE_WRITE = 0x8
IN_MOVED_FROM = 0x40
IN_MOVED_TO = 0x80
IN_CREATE = 0x100
IN_DELETE = 0x200
IN_DELETE_SELF = 0x400
IN_MOVE_SELF = 0x800
IN_IGNORED = 0x8000
IN_ONLYDIR = 0x1000000
WATCH_MASK = (IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE
              | IN_DELETE | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR)
_EVENT = struct.Struct("iIII")

StatKey = tuple[int, int, int]   # (mtime_ns, size, inode)


def leader_address(master_pid: int) -> str:
    return f"\0prefork-reload-{master_pid}"


def excluded_dirs() -> tuple[str, ...]:
    """The standard library, site-packages and prefork itself: not watched."""
    paths: set[str] = set()
    for scheme_vars in ({}, {"base": sys.base_prefix, "platbase": sys.base_exec_prefix}):
        found = sysconfig.get_paths(vars=scheme_vars)
        paths.update(found[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")
                     if k in found)
    try:
        paths.update(site.getsitepackages())
    except AttributeError:      # some virtualenvs' site.py
        pass
    user_site = site.getusersitepackages()
    if isinstance(user_site, str):
        paths.add(user_site)
    paths.add(os.path.dirname(os.path.abspath(__file__)))
    out: set[str] = set()
    for p in paths:
        out.add(os.path.join(os.path.abspath(p), ""))
        out.add(os.path.join(os.path.realpath(p), ""))
    return tuple(sorted(out))


def _stat(path: str) -> StatKey | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def _is_source(name: str) -> bool:
    return name.endswith(".py") and not name.startswith(".")


class Inotify:
    """The few inotify calls we need, through libc."""

    def __init__(self) -> None:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        self._init1 = libc.inotify_init1          # AttributeError when libc has none
        self._init1.argtypes = [ctypes.c_int]
        self._init1.restype = ctypes.c_int
        self._add = libc.inotify_add_watch
        self._add.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        self._add.restype = ctypes.c_int
        fd = self._init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            e = ctypes.get_errno()
            raise OSError(e, os.strerror(e))
        self.fd = fd
        self.watches: dict[int, str] = {}      # wd -> directory
        self.dirs: set[str] = set()

    def watch(self, directory: str) -> None:
        """Watch ``directory``; a missing one is skipped (tried again later)."""
        if directory in self.dirs:
            return
        wd = self._add(self.fd, os.fsencode(directory), WATCH_MASK)
        if wd < 0:
            e = ctypes.get_errno()
            if e in (errno.ENOENT, errno.ENOTDIR, errno.EACCES):
                return
            raise OSError(e, f"inotify_add_watch({directory}): {os.strerror(e)}")
        self.watches[wd] = directory
        self.dirs.add(directory)

    def read(self) -> bool:
        """Drain pending events; True when there were any."""
        got = False
        while True:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                return got
            if not data:
                return got
            got = True
            offset = 0
            while offset + _EVENT.size <= len(data):
                wd, mask, _cookie, length = _EVENT.unpack_from(data, offset)
                offset += _EVENT.size + length
                if mask & IN_IGNORED:           # the directory went away
                    directory = self.watches.pop(wd, None)
                    if directory is not None:
                        self.dirs.discard(directory)

    def close(self) -> None:
        os.close(self.fd)


class Reloader:
    """Watches the application's source files; see the module docstring."""

    def __init__(self, master_pid: int, extra_files: Iterable[str] = (), engine: str = "auto",
                 board: Scoreboard | None = None):
        self.master_pid = master_pid
        self.extra_patterns = [os.path.abspath(p) for p in extra_files]
        self.engine = engine
        self.board = board
        self.excluded = excluded_dirs()
        self.dirs: set[str] = set()            # directories whose *.py files are watched
        self.extra: set[str] = set()           # reload_extra_files, globs expanded
        self.snapshot: dict[str, StatKey | None] = {}
        self._module_dirs: dict[tuple[str, str], str | None] = {}
        self.leader = False
        self._lock_sock: socket.socket | None = None
        self._send_sock: socket.socket | None = None
        self._shared: frozenset[str] = frozenset()
        self._shared_at = 0.0
        self.inotify: Inotify | None = None
        self.thread: threading.Thread | None = None

    # -- what to watch -------------------------------------------------------

    def module_dirs(self) -> set[str]:
        """Directories of the imported modules that are not excluded."""
        out: set[str] = set()
        for name, module in list(sys.modules.items()):
            path = getattr(module, "__file__", None)
            if not isinstance(path, str) or name == "__main__":
                continue
            key = (name, path)
            if key not in self._module_dirs:
                self._module_dirs[key] = self._dir_of(path)
            directory = self._module_dirs[key]
            if directory is not None:
                out.add(directory)
        return out

    def _dir_of(self, path: str) -> str | None:
        path = os.path.abspath(path)
        if path.startswith(self.excluded) or os.path.realpath(path).startswith(self.excluded):
            return None
        directory = os.path.dirname(path)
        return directory if os.path.isdir(directory) else None

    def extra_files(self) -> set[str]:
        out: set[str] = set()
        for pattern in self.extra_patterns:
            if glob.has_magic(pattern):
                out.update(p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p))
            else:
                out.add(pattern)
        return out

    def scan(self, dirs: Iterable[str] | None = None,
             extra: Iterable[str] | None = None) -> dict[str, StatKey | None]:
        """Stat every watched file: the *.py of ``dirs``, and ``extra`` (None if missing)."""
        out: dict[str, StatKey | None] = {}
        for directory in self.dirs if dirs is None else dirs:
            try:
                names = os.listdir(directory)
            except OSError:
                continue
            for name in names:
                if _is_source(name):
                    path = os.path.join(directory, name)
                    key = _stat(path)
                    if key is not None:
                        out[path] = key
        for path in self.extra if extra is None else extra:
            out[path] = _stat(path)
        return out

    def rescan(self) -> None:
        """Pick up modules imported since the last look, and new glob matches."""
        self.add(self.module_dirs(), self.extra_files())

    def add(self, dirs: Iterable[str], extra: Iterable[str] = ()) -> None:
        """Watch more directories and files; their current state is the baseline."""
        new_dirs = set(dirs) - self.dirs
        new_extra = set(extra) - self.extra
        if not new_dirs and not new_extra:
            return
        self.snapshot.update(self.scan(new_dirs, new_extra))
        self.dirs |= new_dirs
        self.extra |= new_extra
        if self.leader:
            log.debug("Reloader: now watching %s", ", ".join(sorted(new_dirs | new_extra)))
        if self.inotify is not None:
            self._watch_dirs(new_dirs | {os.path.dirname(p) for p in new_extra})

    def changes(self) -> list[str]:
        """Files whose stat differs from the snapshot (added, changed, removed)."""
        current = self.scan()
        return sorted(p for p in current.keys() | self.snapshot.keys()
                      if current.get(p) != self.snapshot.get(p))

    # -- the thread ----------------------------------------------------------

    def start(self) -> None:
        """Take the snapshot now (the app was just imported) and start watching."""
        self.rescan()
        self.thread = start_thread(self._run, "prefork-reloader")

    def _run(self) -> None:
        try:
            while True:
                if not self.leader and not self._try_lead():
                    self._share()
                    time.sleep(RESCAN_INTERVAL)
                    self.rescan()
                    continue
                self._lead()
        except Exception:
            log.exception("the reloader stopped; files are no longer watched")

    def _try_lead(self) -> bool:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.bind(leader_address(self.master_pid))
        except OSError:
            sock.close()
            return False
        sock.setblocking(False)
        self._lock_sock = sock
        self.leader = True
        return True

    def _share(self) -> None:
        """Not the leader: send it our directories when they changed, and now and then."""
        dirs = frozenset(self.dirs)
        now = time.monotonic()
        if dirs == self._shared and now - self._shared_at < SHARE_INTERVAL:
            return
        if self._send_sock is None:
            self._send_sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._send_sock.setblocking(False)
        chunk: list[bytes] = []
        size = 0
        try:
            for d in sorted(dirs):
                raw = os.fsencode(d)
                if chunk and size + len(raw) + 1 > MAX_DATAGRAM:
                    self._send_sock.sendto(b"\n".join(chunk), leader_address(self.master_pid))
                    chunk, size = [], 0
                chunk.append(raw)
                size += len(raw) + 1
            if chunk:
                self._send_sock.sendto(b"\n".join(chunk), leader_address(self.master_pid))
        except OSError:
            return      # no leader right now, or it is busy: try again later
        self._shared, self._shared_at = dirs, now

    def _receive(self) -> None:
        assert self._lock_sock is not None
        dirs: set[str] = set()
        while True:
            try:
                data = self._lock_sock.recv(MAX_DATAGRAM + 1024)
            except (BlockingIOError, InterruptedError):
                break
            dirs.update(os.fsdecode(d) for d in data.split(b"\n") if d)
        dirs = {d for d in dirs - self.dirs if os.path.isabs(d) and os.path.isdir(d)
                and not os.path.join(d, "").startswith(self.excluded)}
        if dirs:
            self.add(dirs)

    def _lead(self) -> None:
        assert self._lock_sock is not None
        engine = self._start_engine()
        log.info("Reloader: watching %d files in %d directories with %s (worker %d)",
                 len(self.snapshot), len(self.dirs), engine, os.getpid())
        # Changes since this worker imported the app: the previous leader may
        # have exited before it could report them.
        changed = self.changes()
        if changed:
            self._reload(changed)
        next_rescan = time.monotonic() + RESCAN_INTERVAL
        while True:
            fds: list[Any] = [self._lock_sock]
            if self.inotify is not None:
                fds.append(self.inotify.fd)
            timeout = max(0.0, next_rescan - time.monotonic())
            ready, _, _ = select.select(fds, [], [], timeout)
            if self._lock_sock in ready:
                self._receive()
            look = self.inotify is None     # poll: every pass
            if self.inotify is not None and self.inotify.fd in ready:
                look = self.inotify.read() or look
            if time.monotonic() >= next_rescan:
                next_rescan = time.monotonic() + (POLL_INTERVAL if self.inotify is None
                                                  else RESCAN_INTERVAL)
                self.rescan()
            if look:
                changed = self.changes()
                if changed:
                    self._reload(self._settle(changed))

    def _start_engine(self) -> str:
        if self.engine == "poll":
            return "stat polling"
        try:
            self.inotify = Inotify()
            self._watch_dirs(self.dirs | {os.path.dirname(p) for p in self.extra})
        except (OSError, AttributeError) as e:
            if self.inotify is not None:
                self.inotify.close()
                self.inotify = None
            level = logging.WARNING if self.engine == "inotify" else logging.INFO
            log.log(level, "Reloader: inotify is not available (%s); polling instead", e)
            return "stat polling"
        return "inotify"

    def _watch_dirs(self, dirs: Iterable[str]) -> None:
        assert self.inotify is not None
        try:
            for d in dirs:
                self.inotify.watch(d)
        except OSError as e:    # e.g. ENOSPC: fs.inotify.max_user_watches reached
            log.warning("Reloader: %s; polling instead", e)
            self.inotify.close()
            self.inotify = None

    def _settle(self, changed: list[str]) -> list[str]:
        """Let an editor finish saving (several writes, a rename), then re-snapshot."""
        seen = set(changed)
        deadline = time.monotonic() + 10 * DEBOUNCE
        while time.monotonic() < deadline:
            time.sleep(DEBOUNCE)
            more = self.changes()
            if self.inotify is not None:
                self.inotify.read()
            if set(more) <= seen:
                break
            seen.update(more)
        return sorted(seen)

    def _reload(self, changed: list[str]) -> None:
        self.snapshot = self.scan()
        for path in changed:
            if path.endswith(".py"):
                _drop_bytecode(path)
        names = ", ".join(_display(p) for p in changed[:5])
        more = f" and {len(changed) - 5} more" if len(changed) > 5 else ""
        self._wait_for_boots()
        log.info("Reloader: %s changed%s; reloading", names, more)
        try:
            os.kill(self.master_pid, signal.SIGHUP)
        except ProcessLookupError:
            pass

    def _wait_for_boots(self) -> None:
        """A HUP while a worker (the canary) boots would be ignored: wait."""
        if self.board is None:
            return
        deadline = time.monotonic() + BOOT_WAIT
        saw_boot = False
        while time.monotonic() < deadline:
            if any(s.state == BOOTING for s in self.board.slots()):
                saw_boot = True
                time.sleep(0.1)
            elif saw_boot:
                # The master notices a canary is ready within its loop
                # interval; until then it would still ignore HUP.
                saw_boot = False
                time.sleep(SETTLE)
            else:
                return


def _display(path: str) -> str:
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


def _drop_bytecode(path: str) -> None:
    """Remove the cached .pyc of ``path``, so the new worker compiles the source."""
    for optimization in ("", 1, 2):
        try:
            os.unlink(importlib.util.cache_from_source(path, optimization=optimization))
        except (OSError, ValueError, NotImplementedError):
            pass


def start_reloader(cfg: Config, master_pid: int, board: Scoreboard | None = None) -> Reloader:
    """Called in a worker right after the app is imported (when ``cfg.reload``)."""
    reloader = Reloader(master_pid, cfg.reload_extra_files, cfg.reload_engine, board)
    reloader.start()
    return reloader

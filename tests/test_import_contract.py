"""The layering rules of docs/architecture.md, checked on the code: on the
import statements of every module under prefork/ (the AST, so an import
inside a function or under TYPE_CHECKING counts too), and on what a fresh
interpreter has loaded after importing a layer (``sys.modules``).

Each rule is one test; docs/architecture.md names the test beside the rule.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(30)

PACKAGE = Path(__file__).resolve().parent.parent / "prefork"


@dataclass(frozen=True)
class Import:
    module: str         # the importing module, e.g. "prefork.http.wsgi"
    target: str         # what it imports, absolute: "prefork.http.parser", "socket"
    line: int
    type_only: bool     # under ``if TYPE_CHECKING:``

    def __str__(self) -> str:
        kind = " (TYPE_CHECKING)" if self.type_only else ""
        return f"{self.module}:{self.line} imports {self.target}{kind}"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(path: Path) -> Iterator[Import]:
    """Every import in one file, with relative ones made absolute. ``from X
    import y`` where X.y is a module of ours counts as importing X.y."""
    module = module_name(path)
    is_package = path.name == "__init__.py"
    tree = ast.parse(path.read_text(), str(path))

    def walk(node: ast.AST, type_only: bool) -> Iterator[Import]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                for stmt in child.body:
                    yield from walk_one(stmt, True)
                for stmt in child.orelse:
                    yield from walk_one(stmt, type_only)
            else:
                yield from walk_one(child, type_only)

    def walk_one(node: ast.AST, type_only: bool) -> Iterator[Import]:
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(module, alias.name, node.lineno, type_only)
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, is_package, node)
            yield Import(module, target, node.lineno, type_only)
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                if _our_module_exists(sub):
                    yield Import(module, sub, node.lineno, type_only)
        else:
            yield from walk(node, type_only)

    yield from walk(tree, False)


def _our_module_exists(name: str) -> bool:
    if not name.startswith("prefork."):
        return False
    rel = Path(*name.split(".")[1:])
    return (PACKAGE / rel).with_suffix(".py").exists() or (PACKAGE / rel / "__init__.py").exists()


ALL_IMPORTS = [imp for path in sorted(PACKAGE.rglob("*.py")) for imp in imports_of(path)]
OUR_MODULES = {module_name(p) for p in PACKAGE.rglob("*.py")}


def imports_from(prefix: str) -> list[Import]:
    return [i for i in ALL_IMPORTS if i.module == prefix or i.module.startswith(prefix + ".")]


def ours(imp: Import) -> bool:
    return imp.target == "prefork" or imp.target.startswith("prefork.")


def _within(target: str, *allowed: str) -> bool:
    return any(target == a or target.startswith(a + ".") for a in allowed)


def test_the_walker_sees_lazy_and_type_only_imports():
    """The rules below are only as good as the walker: it must see an
    import inside a function and one under TYPE_CHECKING."""
    server = [i for i in ALL_IMPORTS if i.module == "prefork.server"]
    assert any(i.target == "prefork.master" and not i.type_only for i in server)   # in _master()
    assert any(i.target == "prefork.master" and i.type_only for i in server)


# -- the app layer ---------------------------------------------------------

def test_web_imports_nothing_of_the_server():
    """prefork.web (and the demo site built on it) import no module of
    prefork outside prefork.web, not even lazily or for typing."""
    bad = [str(i) for i in imports_from("prefork.web") + imports_from("prefork.demo")
           if ours(i) and not _within(i.target, "prefork.web", "prefork.demo")]
    assert bad == []


def loaded_after(code: str) -> list[str]:
    """The prefork modules a fresh interpreter holds after running ``code``."""
    probe = (f"{code}\nimport json, sys\n"
             "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'prefork')))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         timeout=20, cwd=PACKAGE.parent, check=True)
    return list(json.loads(out.stdout))


def test_importing_web_loads_no_server_module():
    loaded = loaded_after("import prefork.web")
    assert [m for m in loaded if not _within(m, "prefork.web")] == ["prefork", "prefork._version"]


def test_the_package_root_loads_the_server_only_when_asked():
    assert loaded_after("import prefork") == ["prefork", "prefork._version"]
    loaded = loaded_after("from prefork import serve, Config, __version__")
    assert {"prefork.server", "prefork.config"} <= set(loaded)
    assert "prefork.master" not in loaded       # only when a server runs


def test_the_package_root_still_has_its_public_names():
    out = subprocess.run(
        [sys.executable, "-c",
         "import prefork; print(prefork.Config.__name__, prefork.serve.__name__, "
         "prefork.Server.__name__, prefork.__version__ != '', 'serve' in dir(prefork))"],
        capture_output=True, text=True, timeout=20, cwd=PACKAGE.parent, check=True)
    assert out.stdout.split() == ["Config", "serve", "Server", "True", "True"]
    probe = subprocess.run([sys.executable, "-c", "import prefork; prefork.nothing"],
                           capture_output=True, text=True, timeout=20, cwd=PACKAGE.parent)
    assert "module 'prefork' has no attribute 'nothing'" in probe.stderr


# -- the protocol layer ----------------------------------------------------

# What moves bytes, waits, or makes processes and threads: the worker's
# business, never the protocol layer's.
IO_MODULES = ("socket", "select", "selectors", "threading", "_thread", "multiprocessing",
              "subprocess", "signal", "asyncio", "concurrent")


def test_http_imports_no_io_and_nothing_of_the_server():
    bad = [str(i) for i in imports_from("prefork.http")
           if (ours(i) and not _within(i.target, "prefork.http", "prefork._version"))
           or _within(i.target, *IO_MODULES)]
    assert bad == []


def test_importing_http_loads_no_server_module():
    loaded = loaded_after("import prefork.http.parser, prefork.http.connection, "
                          "prefork.http.wsgi, prefork.http.proxy, prefork.http.errors")
    assert [m for m in loaded if not _within(m, "prefork.http")] == ["prefork", "prefork._version"]


def test_the_parser_is_bytes_in_events_out():
    """parser.py: regexes and dataclasses, nothing that touches the world."""
    targets = {i.target for i in ALL_IMPORTS if i.module == "prefork.http.parser"}
    assert targets <= {"__future__", "re", "dataclasses", "prefork.http.errors"}


# -- supervision -----------------------------------------------------------

def test_the_supervisor_does_no_io_and_reads_no_clock():
    """supervisor.py decides; the master acts. Its time is the ``now`` it is
    given, so its tests run on a fake clock."""
    targets = {i.target for i in ALL_IMPORTS if i.module == "prefork.supervisor"}
    # ``signal`` is there for the numbers its Signal actions name; the
    # master sends them.
    io = [m for m in IO_MODULES if m != "signal"]
    assert {t for t in targets if _within(t, *io, "os", "time", "psutil")} == set()
    assert {t for t in targets if _within(t, "prefork")
            and not _within(t, "prefork.scoreboard", "prefork.config")} == set()


def test_status_and_systemd_do_not_reach_into_the_master():
    bad = [str(i) for i in imports_from("prefork.status") + imports_from("prefork.systemd")
           if _within(i.target, "prefork.master")]
    assert bad == []


def test_the_master_never_parses_http():
    """The master's only bytes of HTTP are the metrics address's request
    line, read by metrics.py; it imports nothing of prefork.http."""
    bad = [str(i) for i in imports_from("prefork.master") if _within(i.target, "prefork.http")]
    assert bad == []


def test_the_worker_never_forks():
    tree = ast.parse((PACKAGE / "worker.py").read_text())
    forks = [f"worker.py:{node.lineno}" for node in ast.walk(tree)
             if isinstance(node, ast.Attribute) and node.attr in ("fork", "forkpty", "posix_spawn")]
    assert forks == []
    assert not [str(i) for i in imports_from("prefork.worker")
                if _within(i.target, "subprocess", "multiprocessing", "prefork.master")]


# -- the whole graph -------------------------------------------------------

def run_time_graph() -> dict[str, set[str]]:
    """Module -> the modules of ours it imports when it runs (at import time
    or later, in a function): TYPE_CHECKING imports are left out, since
    they never run."""
    graph: dict[str, set[str]] = {m: set() for m in OUR_MODULES}
    for imp in ALL_IMPORTS:
        if not imp.type_only and ours(imp) and imp.target in OUR_MODULES \
                and imp.target != imp.module:
            graph[imp.module].add(imp.target)
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_find_cycles_finds_one():
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_in_prefork():
    """Counting imports made inside functions: a lazy import that closes a
    cycle is still a cycle, only one that fails later. A package's
    ``__init__`` importing its own submodules is not counted as the
    submodules importing the package."""
    graph = run_time_graph()
    for module, targets in graph.items():
        # "from . import x" inside prefork/web/ names the package prefork.web
        # as well as x; the package is not a module of its own here.
        graph[module] = {t for t in targets if not module.startswith(t + ".")}
    assert find_cycles(graph) == []

"""Find the WSGI application an operator names: ``module:callable``, ``module``
(which must define ``application`` or ``app``), a factory ``module:create_app()``,
a Django project (its directory, or its settings module), or nothing (the
built-in demo site).

A Django project is recognised without importing anything: a directory is
one when its ``manage.py`` names a ``DJANGO_SETTINGS_MODULE`` (or one
``*/settings.py`` lies below it); a module is one when its source assigns
Django settings (``INSTALLED_APPS``, ``ROOT_URLCONF``, ``WSGI_APPLICATION``)
and defines no ``application``. The master reads the project this way for
its start-up log, and the workers import it (Django only then).
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .objref import ObjectNotFound, import_object


class AppImportError(Exception):
    """The application could not be found or imported; the message says why."""


_SETTINGS_NAMES = frozenset({"INSTALLED_APPS", "ROOT_URLCONF", "WSGI_APPLICATION"})
_MANAGE_PY_SETTINGS = re.compile(
    r"""DJANGO_SETTINGS_MODULE['"]\s*,\s*['"]([A-Za-z_][\w.]*)['"]""")


@dataclass(frozen=True)
class DjangoProject:
    """A Django project named by an APP: what to import, and how it was found."""

    settings: str               # the DJANGO_SETTINGS_MODULE to use
    found: str                  # where the settings module's name came from
    path: str | None = None     # directory to put on sys.path (the project's)
    wsgi_application: str | None = None     # WSGI_APPLICATION, when the file says it literally

    def describe(self) -> str:
        where = f" in {self.path}" if self.path else ""
        wsgi = f" {self.wsgi_application}" if self.wsgi_application else ""
        return (f"Django project{where}: settings {self.settings} ({self.found}), "
                f"serving WSGI_APPLICATION{wsgi}")


def _module_file(name: str, path: list[str]) -> str | None:
    """The source file of module ``name`` on ``path``, found without importing
    anything (importlib would import the parent packages)."""
    parts = name.split(".")
    for entry in path:
        base = os.path.join(entry or os.curdir, *parts)
        for candidate in (base + ".py", os.path.join(base, "__init__.py")):
            if os.path.isfile(candidate):
                return candidate
    return None


def _settings_assignments(filename: str) -> dict[str, Any] | None:
    """Top-level names the file assigns (with their value when it is a
    literal); None when it does not parse."""
    try:
        with open(filename, "rb") as f:
            tree = ast.parse(f.read(), filename)
    except (OSError, SyntaxError, ValueError):
        return None
    names: dict[str, Any] = {}
    for node in tree.body:
        targets: list[ast.expr] = []
        value: ast.expr | None = None
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        elif isinstance(node, ast.FunctionDef | ast.ClassDef):
            names[node.name] = None
        for t in targets:
            if isinstance(t, ast.Name) and value is not None:
                try:
                    names[t.id] = ast.literal_eval(value)
                except (ValueError, TypeError, SyntaxError, RecursionError):
                    names[t.id] = None
    return names


def _project_from_settings(settings: str, found: str, path: list[str],
                           project_dir: str | None = None) -> DjangoProject:
    wsgi = None
    filename = _module_file(settings, path)
    if filename:
        value = (_settings_assignments(filename) or {}).get("WSGI_APPLICATION")
        wsgi = value if isinstance(value, str) else None
    return DjangoProject(settings, found, project_dir, wsgi)


def find_django_project(spec: str | None,
                        environ: Any = os.environ) -> DjangoProject | None:
    """The Django project ``spec`` names, or None when it names something else.

    Raises AppImportError for a directory that is no Django project.
    """
    if not spec or ":" in spec:
        return None
    if os.path.isdir(spec):
        directory = os.path.abspath(spec)
        manage = os.path.join(directory, "manage.py")
        settings = environ.get("DJANGO_SETTINGS_MODULE")
        if settings:
            found = "from the environment DJANGO_SETTINGS_MODULE"
        else:
            try:
                with open(manage, encoding="utf-8", errors="replace") as f:
                    m = _MANAGE_PY_SETTINGS.search(f.read())
            except OSError:
                m = None
            if m:
                settings, found = m.group(1), "named by manage.py"
            else:
                candidates = sorted(
                    entry for entry in os.listdir(directory)
                    if os.path.isfile(os.path.join(directory, entry, "settings.py")))
                if len(candidates) != 1:
                    raise AppImportError(
                        f"directory {spec!r} is not a Django project: no manage.py naming "
                        "DJANGO_SETTINGS_MODULE, and "
                        + (f"several */settings.py ({', '.join(candidates)})" if candidates
                           else "no */settings.py")
                        + "; name the settings module or MODULE:CALLABLE instead")
                settings, found = f"{candidates[0]}.settings", f"{candidates[0]}/settings.py"
        return _project_from_settings(settings, found, [directory, *sys.path], directory)
    if "/" in spec:
        raise AppImportError(f"app {spec!r} is no directory (a Django project's), and a "
                             "module is named with dots, not slashes")
    if not re.fullmatch(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*", spec):
        return None
    filename = _module_file(spec, [os.getcwd(), *sys.path])
    if filename is None:
        return None
    names = _settings_assignments(filename)
    if not names or not (_SETTINGS_NAMES & names.keys()) or "application" in names \
            or "app" in names:
        return None
    return _project_from_settings(spec, "named on the command line", [os.getcwd(), *sys.path])


def load_django_project(project: DjangoProject) -> Callable[..., Any]:
    """Import the project's WSGI application (this imports Django)."""
    if project.path and project.path not in sys.path:
        sys.path.insert(0, project.path)
    os.environ["DJANGO_SETTINGS_MODULE"] = project.settings
    if importlib.util.find_spec("django") is None:
        raise AppImportError(f"{project.describe()}; but Django is not installed "
                             f"(python: {sys.executable})")
    from .contrib.django.wsgi import get_application
    return get_application()


def load_app(spec: str | None) -> Callable[..., Any]:
    """The WSGI callable ``spec`` names (the demo site for None or "").

    Raises AppImportError when ``spec`` names nothing callable; an exception
    the app's own code raises while it is imported (or its factory called)
    is raised as it is, with its traceback.
    """
    if not spec:
        spec = "prefork.demo:application"
    project = find_django_project(spec)
    if project is not None:
        return load_django_project(project)
    module_name, _, attr = spec.partition(":")
    call_args: tuple[Any, ...] | None = None
    if attr.endswith(")") and "(" in attr:
        attr, _, argtext = attr.partition("(")
        try:
            parsed = ast.parse(f"f({argtext}", mode="eval").body
            assert isinstance(parsed, ast.Call) and not parsed.keywords
            call_args = tuple(ast.literal_eval(a) for a in parsed.args)
        except (SyntaxError, ValueError, AssertionError):
            raise AppImportError(f"factory call {spec!r} may only take literal "
                                 "positional arguments") from None
    try:
        if attr:
            obj = import_object(module_name, attr)
        else:
            module = import_object(module_name)
            attr = next((name for name in ("application", "app") if hasattr(module, name)), "")
            if not attr:
                raise AppImportError(f"module {module_name!r} defines neither 'application' "
                                     "nor 'app'; name the callable as MODULE:NAME")
            obj = getattr(module, attr)
    except ObjectNotFound as e:
        raise AppImportError(f"app {spec!r}: {e}") from e
    if call_args is not None:
        if not callable(obj):
            raise AppImportError(f"factory {module_name}:{attr} of app {spec!r} is not "
                                 f"callable (got {type(obj).__name__})")
        obj = obj(*call_args)
    if not callable(obj):
        raise AppImportError(f"{spec!r} is not callable (got {type(obj).__name__})")
    return obj

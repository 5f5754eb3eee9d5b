"""MODULE:ATTR references: one resolver for the app and the hooks, and the
line each says when the name is wrong, or the module itself is broken."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import pytest

from prefork.app import AppImportError, load_app
from prefork.config import Config
from prefork.hooks import Hooks
from prefork.objref import ObjectNotFound, import_object


@pytest.fixture
def module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Write a module with the given source; return its (unique) name."""
    monkeypatch.syspath_prepend(str(tmp_path))
    written: list[str] = []

    def write(source: str) -> str:
        name = f"objref_{uuid.uuid4().hex[:8]}"
        (tmp_path / f"{name}.py").write_text(source)
        written.append(name)
        return name

    yield write
    for name in written:
        sys.modules.pop(name, None)


def test_finds_a_dotted_path_in_a_module(module):
    name = module("class App:\n    def make(self): pass\nvalue = 3\n")
    assert import_object(name, "value") == 3
    assert import_object(name, "App.make").__name__ == "make"
    assert import_object(name).__name__ == name


def test_a_missing_module_is_named():
    with pytest.raises(ObjectNotFound, match="cannot import module 'no_such_module_xyz': "
                                             "No module named 'no_such_module_xyz'"):
        import_object("no_such_module_xyz", "app")
    with pytest.raises(ObjectNotFound, match="cannot import module 'no_such_pkg_xyz.sub'"):
        import_object("no_such_pkg_xyz.sub", "app")
    with pytest.raises(ObjectNotFound, match="cannot import module 'os.no_such_sub'"):
        import_object("os.no_such_sub")
    with pytest.raises(ObjectNotFound, match="'' is not a module name"):
        import_object("", "app")


def test_a_missing_attribute_is_named_with_where_the_path_stops(module):
    name = module("class App: pass\n")
    with pytest.raises(ObjectNotFound, match=f"module '{name}' has no attribute 'nope'$"):
        import_object(name, "nope")
    with pytest.raises(ObjectNotFound, match=f"module '{name}' has no attribute 'App.make' "
                                             r"\('App' has no 'make'\)"):
        import_object(name, "App.make")


def test_an_import_error_inside_the_module_is_raised_as_it_is(module):
    # The module exists: what it imports does not. That is a broken module,
    # not a wrong name, and its traceback must survive.
    name = module("import no_such_dependency_xyz\napp = None\n")
    with pytest.raises(ModuleNotFoundError) as info:
        import_object(name, "app")
    assert not isinstance(info.value, ObjectNotFound)
    assert info.value.name == "no_such_dependency_xyz"
    name = module("from os import no_such_name\napp = None\n")
    with pytest.raises(ImportError, match="cannot import name 'no_such_name'"):
        import_object(name, "app")


def test_app_errors_name_the_app(module):
    with pytest.raises(AppImportError, match="app 'no_such_module_xyz:app': cannot import "
                                             "module 'no_such_module_xyz'"):
        load_app("no_such_module_xyz:app")
    name = module("application = None\n")
    with pytest.raises(AppImportError, match=f"app '{name}:nope': module '{name}' has no "
                                             "attribute 'nope'"):
        load_app(f"{name}:nope")
    with pytest.raises(AppImportError, match=f"'{name}' is not callable"):
        load_app(name)
    other = module("x = 1\n")
    with pytest.raises(AppImportError, match="defines neither 'application' nor 'app'"):
        load_app(other)


def test_app_with_a_broken_import_raises_its_own_error(module):
    name = module("import no_such_dependency_xyz\ndef app(environ, start_response): pass\n")
    with pytest.raises(ModuleNotFoundError, match="no_such_dependency_xyz"):
        load_app(f"{name}:app")


def test_app_factory_and_default_names(module):
    name = module("def create_app(n):\n    return lambda e, s: n\napplication = create_app(0)\n")
    assert load_app(f"{name}:create_app(7)")(None, None) == 7
    assert load_app(name)(None, None) == 0
    with pytest.raises(AppImportError, match="literal positional arguments"):
        load_app(f"{name}:create_app(n=1)")


def test_hook_errors_say_which_hook_and_why(module):
    with pytest.raises(ValueError, match="hook post_fork='no_such_module_xyz:fn' cannot be "
                                         "loaded: cannot import module 'no_such_module_xyz'"):
        Hooks(Config({"post_fork": "no_such_module_xyz:fn"}))
    name = module("value = 1\n")
    with pytest.raises(ValueError, match=f"cannot be loaded: module '{name}' has no "
                                         "attribute 'fn'"):
        Hooks(Config({"post_fork": f"{name}:fn"}))
    with pytest.raises(ValueError, match=f"{name}:value is not callable"):
        Hooks(Config({"post_fork": f"{name}:value"}))
    broken = module("import no_such_dependency_xyz\ndef fn(server, worker): pass\n")
    with pytest.raises(ValueError, match="cannot be loaded: ModuleNotFoundError: No module "
                                         "named 'no_such_dependency_xyz'"):
        Hooks(Config({"post_fork": f"{broken}:fn"}))

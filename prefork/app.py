"""Find the WSGI application an operator names: ``module:callable``, ``module``
(which must define ``application`` or ``app``), a factory ``module:create_app()``,
or nothing (the built-in demo site).
"""

from __future__ import annotations

import ast
import importlib
from collections.abc import Callable
from typing import Any


class AppImportError(Exception):
    """The application could not be found or imported; the message says why."""


def load_app(spec: str | None) -> Callable[..., Any]:
    if not spec:
        spec = "prefork.demo:application"
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        if e.name and module_name.startswith(e.name) or e.name == module_name:
            raise AppImportError(f"cannot import module {module_name!r} for app {spec!r}: "
                                 f"{e}") from e
        raise
    if not attr:
        for candidate in ("application", "app"):
            if hasattr(module, candidate):
                attr = candidate
                break
        else:
            raise AppImportError(f"module {module_name!r} defines neither 'application' "
                                 "nor 'app'; name the callable as MODULE:NAME")
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
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise AppImportError(f"module {module_name!r} has no attribute {attr!r}") from None
    if call_args is not None:
        obj = obj(*call_args)
    if not callable(obj):
        raise AppImportError(f"{spec!r} is not callable (got {type(obj).__name__})")
    return obj

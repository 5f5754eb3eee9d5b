"""prefork: a production WSGI server.

The public names are imported on first use (PEP 562), so that
``import prefork.web`` or ``import prefork.http.parser`` loads no server
code: the app layer and the protocol layer stand on their own
(tests/test_import_contract.py holds them to it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:
    from .config import Config
    from .server import Server, serve

__all__ = ["Config", "Server", "serve", "__version__"]

# Public name -> the module that defines it.
_LAZY = {"Config": "config", "Server": "server", "serve": "server"}


# Hidden from mypy, which reads the imports above instead: a module
# __getattr__ returning Any would let it accept any name on prefork.
if not TYPE_CHECKING:
    def __getattr__(name: str) -> Any:
        module = _LAZY.get(name)
        if module is None:
            raise AttributeError(f"module 'prefork' has no attribute {name!r}")
        from importlib import import_module

        value = getattr(import_module(f".{module}", __name__), name)
        globals()[name] = value     # once: later lookups skip this function
        return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

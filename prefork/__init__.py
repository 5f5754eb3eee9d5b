"""prefork: a production WSGI server."""

__version__ = "0.1.0.dev0"

from .config import Config  # noqa: E402
from .server import Server, serve  # noqa: E402

__all__ = ["Config", "Server", "serve", "__version__"]

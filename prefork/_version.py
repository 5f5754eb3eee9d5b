"""The version, in a module of its own: the protocol layer (``SERVER_SOFTWARE``),
the metrics and the CLI read it without importing the package's public API,
and with it the server."""

__version__ = "0.1.0.dev0"

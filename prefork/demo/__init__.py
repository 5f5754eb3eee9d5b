"""The built-in demo site; ``prefork.demo:application`` (alias ``app``) is its WSGI callable."""

from .site import app, application

__all__ = ["app", "application"]

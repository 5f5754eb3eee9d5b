"""View decorators: restrict methods (405 with Allow) and answer HEAD like GET."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any

from .response import MethodNotAllowedResponse

View = Callable[..., Any]


def require_http_methods(methods: Iterable[str]) -> Callable[[View], View]:
    """Allow only ``methods``; anything else gets 405 with an Allow header.

    Listing GET allows HEAD too, since the handler sends HEAD responses
    without their body and a client may always ask for the headers alone.
    """
    allowed = [m.upper() for m in methods]
    if "GET" in allowed and "HEAD" not in allowed:
        allowed.append("HEAD")

    def decorator(view: View) -> View:
        @functools.wraps(view)
        def inner(request: Any, *args: Any, **kwargs: Any) -> Any:
            if request.method not in allowed:
                return MethodNotAllowedResponse(allowed)
            return view(request, *args, **kwargs)
        return inner
    return decorator


require_GET = require_http_methods(["GET"])  # noqa: N816 - Django's names
require_POST = require_http_methods(["POST"])  # noqa: N816
require_safe = require_http_methods(["GET", "HEAD"])

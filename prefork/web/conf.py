"""The settings object: everything the application layer can be told.

One explicit, immutable-by-convention object is built by the application and
handed to :class:`~prefork.web.handler.WSGIHandler`; the handler puts it on
every request as ``request.settings``, which is how middleware and views read
it. There is no module-level settings singleton and no thread-local.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

MiB = 1024 * 1024


@dataclass(frozen=True)
class Settings:
    """Configuration of one application.

    ``urlconf`` is a list of patterns, a module with ``urlpatterns`` or a dotted
    module name. ``middleware`` lists factories ``mw(get_response)`` (or dotted
    names), outermost first, as in Django's ``MIDDLEWARE``.
    """

    urlconf: Any = ()
    middleware: Sequence[Any] = ()
    debug: bool = False
    append_slash: bool = True
    # Hosts accepted by request.get_host(); "*" accepts any, ".example.com" a domain.
    allowed_hosts: Sequence[str] = ("*",)
    # e.g. ("HTTP_X_FORWARDED_PROTO", "https"): trust this header for is_secure().
    secure_proxy_ssl_header: tuple[str, str] | None = None
    use_x_forwarded_host: bool = False
    default_charset: str = "utf-8"
    # Limits: a body or the non-file part of a form bigger than this is refused.
    data_upload_max_memory_size: int | None = int(2.5 * MiB)
    data_upload_max_number_fields: int | None = 1000
    # Files in one multipart body (Django's default): every part costs a parse.
    data_upload_max_number_files: int | None = 100
    # Uploaded files stay in memory up to this size, then spill to a temp file.
    file_upload_max_memory_size: int = int(2.5 * MiB)
    # Total size of all uploaded files in one request (None: unlimited).
    file_upload_max_size: int | None = 100 * MiB
    file_upload_temp_dir: str | None = None
    # Views called as view(request, exception) (400/403/404) or view(request) (500).
    handler400: Callable[..., Any] | None = None
    handler403: Callable[..., Any] | None = None
    handler404: Callable[..., Any] | None = None
    handler500: Callable[..., Any] | None = None
    # SecurityMiddleware
    secure_ssl_redirect: bool = False
    secure_hsts_seconds: int = 0
    secure_hsts_include_subdomains: bool = False
    secure_referrer_policy: str | None = "same-origin"
    secure_content_type_nosniff: bool = True
    secure_cross_origin_opener_policy: str | None = "same-origin"
    x_frame_options: str | None = "DENY"
    # GZipMiddleware: smaller bodies are not worth compressing.
    gzip_min_length: int = 200
    request_id_header: str = "X-Request-ID"
    extra: dict[str, Any] = field(default_factory=dict)

    def with_changes(self, **changes: Any) -> Settings:
        """A copy with some fields changed (settings are never mutated in place)."""
        return replace(self, **changes)

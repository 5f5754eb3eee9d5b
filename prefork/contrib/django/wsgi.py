"""The project's WSGI application, as ``runserver`` finds it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast


def get_application(static: bool = False, insecure: bool = False) -> Callable[..., Any]:
    """``settings.WSGI_APPLICATION`` (or Django's default handler when it is
    None), set up. With ``static``, wrapped in django.contrib.staticfiles'
    handler when that app is installed and DEBUG is on (or ``insecure``), as
    runserver does.

    Raises django.core.exceptions.ImproperlyConfigured as Django words it.
    """
    import django
    from django.core.servers.basehttp import get_internal_wsgi_application

    django.setup(set_prefix=False)
    app = get_internal_wsgi_application()
    if static and static_files_served(insecure):
        from django.contrib.staticfiles.handlers import StaticFilesHandler

        app = StaticFilesHandler(app)
    return cast(Callable[..., Any], app)


def static_files_served(insecure: bool = False) -> bool:
    from django.apps import apps
    from django.conf import settings

    return apps.is_installed("django.contrib.staticfiles") and bool(settings.DEBUG or insecure)

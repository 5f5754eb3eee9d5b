"""Run in a subprocess: the shared middleware spec through Django's WSGIHandler."""

from __future__ import annotations

import io
import json
import logging
import sys
import types
from types import SimpleNamespace
from wsgiref.util import setup_testing_defaults

import django
from django.conf import settings

settings.configure(ROOT_URLCONF="web_mw_root", DEBUG=False, ALLOWED_HOSTS=["*"], USE_I18N=False,
                   SECRET_KEY="x", MIDDLEWARE=[])
django.setup()
logging.disable(logging.CRITICAL)

from django.core.exceptions import MiddlewareNotUsed, PermissionDenied  # noqa: E402
from django.core.handlers.wsgi import WSGIHandler  # noqa: E402
from django.http import HttpResponse  # noqa: E402
from django.urls import path  # noqa: E402

from tests.web import mw_spec  # noqa: E402

trace: list[str] = []
fw = SimpleNamespace(Response=HttpResponse, MiddlewareNotUsed=MiddlewareNotUsed,
                     PermissionDenied=PermissionDenied, path=path)
middleware, urlpatterns = mw_spec.build(fw, trace)
root = types.ModuleType("web_mw_root")
root.urlpatterns = urlpatterns  # type: ignore[attr-defined]
sys.modules["web_mw_root"] = root
mod = types.ModuleType("web_mw_classes")
for cls in middleware:
    setattr(mod, cls.__name__, cls)
sys.modules["web_mw_classes"] = mod
settings.MIDDLEWARE = [f"web_mw_classes.{cls.__name__}" for cls in middleware]

handler = WSGIHandler()
results = {"init": list(trace)}
for p in mw_spec.PATHS:
    trace.clear()
    environ = {"PATH_INFO": p, "REQUEST_METHOD": "GET", "wsgi.input": io.BytesIO()}
    setup_testing_defaults(environ)
    status: list[str] = []
    body = handler(environ, lambda s, h, e=None, status=status: status.append(s))
    body.close()
    results[p] = [*trace, status[0].split()[0]]
print(json.dumps(results))

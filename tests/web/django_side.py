"""Run in a subprocess: resolve/reverse the shared spec with real Django, print JSON."""

from __future__ import annotations

import json
import sys
import types

import django
from django.conf import settings

settings.configure(ROOT_URLCONF="web_spec_root", DEBUG=False, ALLOWED_HOSTS=["*"],
                   USE_I18N=False, SECRET_KEY="x")
django.setup()

from django.urls import (  # noqa: E402
    NoReverseMatch,
    Resolver404,
    include,
    path,
    re_path,
    register_converter,
    resolve,
    reverse,
)

from tests.web import url_spec as spec  # noqa: E402

register_converter(spec.FourDigitYear, "yyyy")
register_converter(spec.EvenInt, "even")
root = types.ModuleType("web_spec_root")
root.urlpatterns = spec.build(path, re_path, include)  # type: ignore[attr-defined]
sys.modules["web_spec_root"] = root


def describe_match(p: str) -> object:
    try:
        m = resolve(p)
    except Resolver404:
        return "404"
    return {"func": m.func.__name__, "args": repr(m.args), "kwargs": repr(sorted(m.kwargs.items())),
            "url_name": m.url_name, "route": m.route, "namespaces": m.namespaces,
            "app_names": m.app_names, "view_name": m.view_name}


def describe_reverse(name: str, args: tuple, kwargs: dict, current_app: str | None) -> object:
    try:
        return reverse(name, args=args or None, kwargs=kwargs or None, current_app=current_app)
    except NoReverseMatch:
        return "NoReverseMatch"


print(json.dumps({
    "resolve": {p: describe_match(p) for p in spec.RESOLVE_PATHS},
    "reverse": [describe_reverse(*case) for case in spec.REVERSE_CASES],
}))

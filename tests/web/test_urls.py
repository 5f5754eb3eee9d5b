"""Resolver, reverse, converters and namespaces, cross-checked against real Django."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from prefork.web import urls
from prefork.web.exceptions import ImproperlyConfigured, NoReverseMatch, Resolver404
from prefork.web.urls import get_resolver, include, path, re_path, register_converter
from tests.web import url_spec as spec

# The Django side runs as tests.web.<module>, from the repository root.
ROOT = Path(__file__).resolve().parents[2]

for _name, _conv in (("yyyy", spec.FourDigitYear), ("even", spec.EvenInt)):
    if _name not in urls._CONVERTERS:
        register_converter(_conv, _name)

RESOLVER = get_resolver(spec.build(path, re_path, include))


@pytest.fixture(scope="module")
def django_answers() -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-m", "tests.web.django_side"], env=env,
                         capture_output=True, text=True, timeout=60, check=True)
    return json.loads(out.stdout)


def describe_match(p: str) -> object:
    try:
        m = RESOLVER.resolve(p)
    except Resolver404:
        return "404"
    return {"func": m.func.__name__, "args": repr(m.args), "kwargs": repr(sorted(m.kwargs.items())),
            "url_name": m.url_name, "route": m.route, "namespaces": m.namespaces,
            "app_names": m.app_names, "view_name": m.view_name}


@pytest.mark.parametrize("p", spec.RESOLVE_PATHS)
def test_resolve_matches_django(django_answers: dict, p: str) -> None:
    assert describe_match(p) == django_answers["resolve"][p]


@pytest.mark.parametrize("i", range(len(spec.REVERSE_CASES)))
def test_reverse_matches_django(django_answers: dict, i: int) -> None:
    name, args, kwargs, current_app = spec.REVERSE_CASES[i]
    try:
        ours: object = RESOLVER.reverse(name, args, kwargs, current_app)
    except NoReverseMatch:
        ours = "NoReverseMatch"
    assert ours == django_answers["reverse"][i], spec.REVERSE_CASES[i]


def test_resolve_converts_values() -> None:
    m = RESOLVER.resolve("/u/12345678-1234-5678-1234-567812345678/")
    assert m.kwargs == {"id": uuid.UUID("12345678-1234-5678-1234-567812345678")}
    func, args, kwargs = RESOLVER.resolve("/articles/2024/5/")
    assert func is spec.VIEWS["article_month"] and kwargs == {"year": 2024, "month": 5}


def test_reverse_by_callable() -> None:
    assert RESOLVER.reverse(spec.VIEWS["slug_view"], ["x"]) == "/s/x/"


def test_reverse_error_names_the_patterns_tried() -> None:
    with pytest.raises(NoReverseMatch) as err:
        RESOLVER.reverse("article-year", kwargs={"year": "abc"})
    assert "articles/(?P<year>[0-9]+)/" in str(err.value) and "1 pattern(s) tried" in str(err.value)


def test_reverse_unknown_name_suggests_close_names() -> None:
    with pytest.raises(NoReverseMatch, match="article-year"):
        RESOLVER.reverse("article-yaer")


def test_reverse_unknown_namespace_lists_registered() -> None:
    with pytest.raises(NoReverseMatch, match="'nope' is not a registered namespace.*blog2"):
        RESOLVER.reverse("nope:post", [1])


def test_reverse_rejects_args_and_kwargs_together() -> None:
    with pytest.raises(ValueError):
        RESOLVER.reverse("article-year", [1], {"year": 1})


def test_reverse_prefix_and_leading_slashes() -> None:
    assert RESOLVER.reverse("home", prefix="/app/") == "/app/"
    assert RESOLVER.reverse("files", ["/etc/passwd"]) == "/files//etc/passwd"
    r = get_resolver([path("<path:p>", spec.VIEWS["path_view"], name="p")])
    assert r.reverse("p", ["/evil.com"]) == "/%2Fevil.com"


def test_unknown_converter_is_a_clear_error() -> None:
    with pytest.raises(ImproperlyConfigured, match="unknown converter 'nope'"):
        path("<nope:x>/", spec.VIEWS["home"])


def test_register_converter_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_converter(spec.EvenInt, "even")


def test_namespace_without_app_name_is_refused() -> None:
    with pytest.raises(ImproperlyConfigured, match="app_name"):
        include([path("", spec.VIEWS["home"])], namespace="x")


def test_include_accepts_a_module_with_app_name() -> None:
    import types
    mod = types.ModuleType("fake_app_urls")
    mod.app_name = "fake"  # type: ignore[attr-defined]
    mod.urlpatterns = [path("<int:n>/", spec.VIEWS["home"], name="n")]  # type: ignore[attr-defined]
    r = get_resolver([path("f/", include(mod))])
    assert r.reverse("fake:n", [3]) == "/f/3/"
    assert r.resolve("/f/3/").namespaces == ["fake"]


def test_regex_literal_prefix_is_conservative() -> None:
    lp = urls._regex_literal_prefix
    assert lp(r"^blog/(?P<x>\d+)/$") == "blog/"
    assert lp(r"^blogs?/") == "blog"
    assert lp(r"blog/") == ""
    assert lp(r"^a/|^b/") == ""
    assert lp(r"^a\.b/") == "a.b/"
    assert lp(r"^(?i)abc/") == ""


def test_later_pattern_is_still_found_when_segments_share_prefix_index() -> None:
    v = spec.VIEWS
    r = get_resolver([
        re_path(r"^(?P<anything>[a-z]+)/x/$", v["home"]),
        path("blog/<int:n>/", v["blog_post"]),
        re_path(r"^blog/(?P<s>[a-z]+)/$", v["slug_view"]),
    ])
    assert r.resolve("/blog/x/").func is v["home"]  # order wins over the index
    assert r.resolve("/blog/3/").func is v["blog_post"]
    assert r.resolve("/blog/abc/").func is v["slug_view"]


def test_resolution_stays_fast_with_hundreds_of_routes() -> None:
    view = spec.VIEWS["home"]
    patterns = [path(f"section{i}/<int:pk>/detail/", view, name=f"r{i}") for i in range(500)]
    patterns += [path(f"app{i}/", include([path(f"x{j}/<slug:s>/", view) for j in range(10)]))
                 for i in range(50)]
    r = get_resolver(patterns)
    r.resolve("/section1/1/detail/")
    n = 5000

    def rate(p: str) -> float:
        start = time.perf_counter()
        for _ in range(n):
            r.resolve(p)
        return n / (time.perf_counter() - start)

    last, first = rate("/section499/7/detail/"), rate("/section0/7/detail/")
    nested = rate("/app49/x9/hello/")
    # Indexed by first segment: the last route costs about what the first does.
    assert last > first / 3, (first, last)
    assert last > 20_000 and nested > 10_000, (last, nested)

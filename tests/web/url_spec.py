"""One URLconf, built with either Django's or prefork.web's path/re_path/include,
so both resolvers can be asked the same questions."""

from __future__ import annotations

from typing import Any


class FourDigitYear:
    regex = "[0-9]{4}"

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value: Any) -> str:
        return f"{int(value):04d}"


class EvenInt:
    """Rejects odd numbers on both sides: to_python/to_url raise ValueError."""

    regex = "[0-9]+"

    def to_python(self, value: str) -> int:
        if int(value) % 2:
            raise ValueError("odd")
        return int(value)

    def to_url(self, value: Any) -> str:
        if int(value) % 2:
            raise ValueError("odd")
        return str(value)


def _view(name: str) -> Any:
    def view(request: Any, *args: Any, **kwargs: Any) -> Any:
        return None
    view.__name__ = view.__qualname__ = name
    return view


VIEWS = {name: _view(name) for name in [
    "home", "article_year", "article_month", "article_detail", "slug_view", "uuid_view",
    "path_view", "regex_year", "regex_positional", "optional_page", "blog_index", "blog_post",
    "even", "year4", "dup_a", "dup_b", "extra", "nested_leaf", "shop_item", "with_default",
]}


def build(path: Any, re_path: Any, include: Any) -> list[Any]:
    v = VIEWS
    blog = ([
        path("", v["blog_index"], name="index"),
        path("<int:pk>/", v["blog_post"], name="post"),
    ], "blog")
    nested_inner = ([path("leaf/<slug:s>/", v["nested_leaf"], name="leaf")], "inner")
    nested_outer = ([path("in/", include(nested_inner, namespace="inner-ns"))], "outer")
    shop = [path("item/<int:id>/", v["shop_item"], name="item")]
    return [
        path("", v["home"], name="home"),
        path("articles/<int:year>/", v["article_year"], name="article-year"),
        path("articles/<int:year>/<int:month>/", v["article_month"], name="article-month"),
        path("articles/<int:year>/<int:month>/<slug:slug>/", v["article_detail"], name="article-detail"),
        path("s/<slug:slug>/", v["slug_view"], name="slug"),
        path("u/<uuid:id>/", v["uuid_view"], name="uuid"),
        path("files/<path:rest>", v["path_view"], name="files"),
        path("even/<even:n>/", v["even"], name="even"),
        path("y/<yyyy:year>/", v["year4"], name="year4"),
        re_path(r"^r/(?P<year>[0-9]{4})/$", v["regex_year"], name="regex-year"),
        re_path(r"^pos/([0-9]+)/([a-z]+)/$", v["regex_positional"], name="regex-pos"),
        re_path(r"^pages/(?:(?P<page>[0-9]+)/)?$", v["optional_page"], name="optional-page"),
        path("dup/<int:x>/", v["dup_a"], name="dup"),
        path("dup/<str:x>/", v["dup_b"], name="dup"),
        path("dup2/", v["dup_a"], name="dup2"),
        path("dup2/x/", v["dup_b"], name="dup2"),
        path("extra/", v["extra"], {"flag": True}, name="extra"),
        path("default/<int:n>/", v["with_default"], {"mode": "full"}, name="with-default"),
        path("blog/", include(blog)),
        path("blog2/", include(blog, namespace="blog2")),
        path("nest/<int:tenant>/", include(nested_outer)),
        path("shop/<slug:store>/", include(shop)),
        re_path(r"^re-shop/(?P<store>[a-z]+)/", include(shop)),
    ]


RESOLVE_PATHS = [
    "/", "/articles/2024/", "/articles/2024/5/", "/articles/2024/05/hello-world/",
    "/articles/x/", "/articles/2024", "/s/a_b-C9/", "/s/a b/", "/u/12345678-1234-5678-1234-567812345678/",
    "/u/12345678-1234-5678-1234-56781234567Z/", "/files/a/b/c.txt", "/files/", "/even/4/",
    "/even/3/", "/y/2024/", "/y/24/", "/r/1999/", "/r/1999", "/pos/12/ab/", "/pages/",
    "/pages/3/", "/dup/7/", "/dup/seven/", "/extra/", "/default/3/", "/blog/", "/blog/9/",
    "/blog2/9/", "/nest/3/in/leaf/x-y/", "/shop/acme/item/5/", "/re-shop/acme/item/5/",
    "/nowhere/", "nope", "/blog/x/", "//", "/articles/0099/",
]

REVERSE_CASES: list[tuple[str, tuple[Any, ...], dict[str, Any], str | None]] = [
    ("home", (), {}, None),
    ("article-year", (2024,), {}, None),
    ("article-year", (), {"year": 2024}, None),
    ("article-month", (), {"year": 2024, "month": 5}, None),
    ("article-detail", (2024, 5, "hi-there"), {}, None),
    ("article-detail", (), {"year": 2024, "month": 5, "slug": "not a slug"}, None),
    ("article-year", (), {"year": "abc"}, None),
    ("article-year", (), {}, None),
    ("slug", ("a-b",), {}, None),
    ("uuid", ("12345678-1234-5678-1234-567812345678",), {}, None),
    ("files", ("a/b c/d.txt",), {}, None),
    ("even", (4,), {}, None),
    ("even", (3,), {}, None),
    ("year4", (99,), {}, None),
    ("regex-year", (), {"year": "2020"}, None),
    ("regex-year", (), {"year": "20"}, None),
    ("regex-pos", ("12", "ab"), {}, None),
    ("optional-page", (), {}, None),
    ("optional-page", (), {"page": 3}, None),
    ("dup", (7,), {}, None),
    ("dup", ("seven",), {}, None),
    ("dup2", (), {}, None),
    ("extra", (), {}, None),
    ("extra", (), {"flag": True}, None),
    ("extra", (), {"flag": False}, None),
    ("with-default", (3,), {}, None),
    ("with-default", (), {"n": 3, "mode": "full"}, None),
    ("blog:index", (), {}, None),
    ("blog:post", (5,), {}, None),
    ("blog2:post", (5,), {}, None),
    ("blog:post", (5,), {}, "blog2"),
    ("blog:post", (5,), {}, "blog"),
    ("outer:inner-ns:leaf", (), {"tenant": 2, "s": "q"}, None),
    ("outer:inner:leaf", (), {"tenant": 2, "s": "q"}, None),
    ("item", (), {"store": "acme", "id": 3}, None),
    ("item", (), {"store": "Acme!", "id": 3}, None),
    ("nope:post", (1,), {}, None),
    ("blog:nope", (), {}, None),
    ("missing-name", (), {}, None),
]

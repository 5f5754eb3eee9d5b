"""In-process benchmark: prefork.web against Django's WSGIHandler on the same view.

Both sides get the same URLconf (``--routes`` patterns, the target near the end),
five middleware doing equivalent work (request id, security headers, gzip
negotiation, ETag + conditional GET, append-slash), and the same environ; no
sockets are involved, so this measures the application layer alone. Django
runs in a subprocess so its global settings never meet ours.

    .venv/bin/python bench/web_bench.py [--seconds 3] [--routes 100]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any
from wsgiref.util import setup_testing_defaults

ROOT = Path(__file__).resolve().parent.parent
TARGET = "/items/4242/"
BODY = "<html><body><h1>Item {id}</h1><p>Served by a routed view.</p></body></html>"


def _environ() -> dict[str, Any]:
    env: dict[str, Any] = {"REQUEST_METHOD": "GET", "PATH_INFO": TARGET, "QUERY_STRING": "q=1",
                           "SCRIPT_NAME": "", "HTTP_ACCEPT": "text/html",
                           "HTTP_ACCEPT_ENCODING": "gzip", "HTTP_USER_AGENT": "bench"}
    setup_testing_defaults(env)
    return env


def measure(app: Callable[..., Any], seconds: float) -> float:
    """Requests per second for ``app`` on the target URL, fully consumed and closed."""
    template = _environ()
    statuses: list[str] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        statuses.append(status)

    def one() -> None:
        env = dict(template)
        env["wsgi.input"] = io.BytesIO()
        body = app(env, start_response)
        try:
            for _ in body:
                pass
        finally:
            body.close()

    for _ in range(200):  # warm caches (resolver index, lazy imports)
        one()
    if not statuses[-1].startswith("200"):
        raise SystemExit(f"benchmark target answered {statuses[-1]!r}, not 200")
    n, start = 0, time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(100):
            one()
        n += 100
        now = time.perf_counter()
        if now >= deadline:
            return n / (now - start)


def prefork_app(routes: int) -> Callable[..., Any]:
    from prefork.web import STANDARD_MIDDLEWARE, Response, Settings, WSGIHandler, path

    def filler(request: Any, pk: int) -> Response:
        return Response("filler")

    def item(request: Any, id: int) -> Response:
        return Response(BODY.format(id=id))

    patterns = [path(f"section{i}/<int:pk>/", filler, name=f"s{i}") for i in range(routes - 2)]
    patterns += [path("items/<int:id>/", item, name="item"), path("about/", filler, name="about")]
    return WSGIHandler(Settings(urlconf=patterns, middleware=STANDARD_MIDDLEWARE))


class DjangoRequestId:
    """Django has no request-id middleware; this does what prefork.web's does."""

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response

    def __call__(self, request: Any) -> Any:
        import re
        import uuid
        incoming = request.META.get("HTTP_X_REQUEST_ID", "")
        request.id = incoming if re.match(r"^[A-Za-z0-9._:-]{1,200}$", incoming) else uuid.uuid4().hex
        response = self.get_response(request)
        response["X-Request-ID"] = request.id
        return response


def django_app(routes: int) -> Callable[..., Any]:
    import django
    from django.conf import settings

    settings.configure(
        DEBUG=False, ALLOWED_HOSTS=["*"], SECRET_KEY="bench", USE_I18N=False, USE_TZ=True,
        ROOT_URLCONF="web_bench_urls", INSTALLED_APPS=[],
        MIDDLEWARE=["bench_mw.DjangoRequestId", "django.middleware.security.SecurityMiddleware",
                    "django.middleware.gzip.GZipMiddleware",
                    "django.middleware.http.ConditionalGetMiddleware",
                    "django.middleware.common.CommonMiddleware"],
    )
    mw = types.ModuleType("bench_mw")
    mw.DjangoRequestId = DjangoRequestId  # type: ignore[attr-defined]
    sys.modules["bench_mw"] = mw
    django.setup()
    from django.core.handlers.wsgi import WSGIHandler
    from django.http import HttpResponse
    from django.urls import path

    def filler(request: Any, pk: int) -> HttpResponse:
        return HttpResponse("filler")

    def item(request: Any, id: int) -> HttpResponse:
        return HttpResponse(BODY.format(id=id))

    urls = types.ModuleType("web_bench_urls")
    urls.urlpatterns = [  # type: ignore[attr-defined]
        *[path(f"section{i}/<int:pk>/", filler, name=f"s{i}") for i in range(routes - 2)],
        path("items/<int:id>/", item, name="item"), path("about/", filler, name="about")]
    sys.modules["web_bench_urls"] = urls
    return WSGIHandler()


def _run_django_subprocess(seconds: float, routes: int) -> float:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--side", "django",
                          "--seconds", str(seconds), "--routes", str(routes), "--json"],
                         env=env, capture_output=True, text=True, check=True,
                         timeout=seconds * 4 + 60)
    return float(json.loads(out.stdout)["django"])


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="time per side (default 3)")
    parser.add_argument("--routes", type=int, default=100, help="URL patterns (default 100)")
    parser.add_argument("--side", choices=["both", "prefork", "django"], default="both")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    results: dict[str, float] = {}
    if args.side in ("both", "prefork"):
        results["prefork.web"] = measure(prefork_app(args.routes), args.seconds)
    if args.side == "django":
        results["django"] = measure(django_app(args.routes), args.seconds)
    elif args.side == "both":
        results["django"] = _run_django_subprocess(args.seconds, args.routes)
    if "prefork.web" in results and "django" in results:
        results["ratio"] = results["prefork.web"] / results["django"]
    if args.json:
        print(json.dumps(results))
    else:
        print(f"{args.routes} routes, target near the end, 5 middleware, {args.seconds:g} s per side")
        for name in ("prefork.web", "django"):
            if name in results:
                print(f"  {name:<12} {results[name]:>10,.0f} req/s")
        if "ratio" in results:
            print(f"  ratio        {results['ratio']:>10.2f}x  (target >= 3x)")
    return results


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()

"""URL routing: ``path()``, ``re_path()``, ``include()``, ``resolve()``, ``reverse()``.

The surface and the results are Django's (same matching order, same kwargs
merging, same namespace rules, same reverse priorities); the insides are
smaller. Patterns are plain objects with ``match(path) -> (rest, args, kwargs)
| None``, which makes ``include()`` recursive. Each pattern also knows its
*literal prefix* (the fixed text before the first parameter), and every
resolver indexes its children by the first path segment of that prefix, so a
URLconf of hundreds of routes costs one dict lookup plus the few regexes that
share the segment, instead of a scan. Reversal is built from the same parsed
pieces (literal text and parameters), so ``path()`` routes need no regex
normalisation.

There is no global URLconf: build a resolver with :func:`get_resolver` and pass
it around (the handler puts it on ``request.resolver``).
"""

from __future__ import annotations

import difflib
import functools
import importlib
import re
import uuid
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any, Protocol
from urllib.parse import quote

from .exceptions import ImproperlyConfigured, NoReverseMatch, Resolver404

__all__ = [
    "ResolverMatch", "URLPattern", "URLResolver", "get_resolver", "include",
    "path", "re_path", "register_converter", "resolve", "reverse",
]


# --- converters ---------------------------------------------------------------------

class Converter(Protocol):
    regex: str

    def to_python(self, value: str) -> Any: ...

    def to_url(self, value: Any) -> str: ...


class StringConverter:
    regex = "[^/]+"

    def to_python(self, value: str) -> Any:
        return value

    def to_url(self, value: Any) -> str:
        return str(value)


class IntConverter(StringConverter):
    regex = "[0-9]+"

    def to_python(self, value: str) -> Any:
        return int(value)


class SlugConverter(StringConverter):
    regex = "[-a-zA-Z0-9_]+"


class UUIDConverter(StringConverter):
    regex = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"

    def to_python(self, value: str) -> Any:
        return uuid.UUID(value)


class PathConverter(StringConverter):
    regex = ".+"


# Converter *types* are process-wide, as codecs are: a route string names them,
# and routes are built at import time, before any settings object exists.
_CONVERTERS: dict[str, Converter] = {
    "str": StringConverter(), "int": IntConverter(), "slug": SlugConverter(),
    "uuid": UUIDConverter(), "path": PathConverter(),
}


def register_converter(converter: type | Converter, type_name: str) -> None:
    """Make ``<type_name:param>`` usable in routes built after this call.

    ``converter`` is a class (instantiated once) or an instance with ``regex``,
    ``to_python`` (raise ValueError to reject a match) and ``to_url`` (raise
    ValueError to reject a reverse). Raises ValueError if the name is taken.
    """
    if type_name in _CONVERTERS:
        raise ValueError(f"converter {type_name!r} is already registered")
    _CONVERTERS[type_name] = converter() if isinstance(converter, type) else converter


# --- patterns -----------------------------------------------------------------------

class _Unreversible(Exception):
    """A regex construct we cannot turn back into a URL."""


# A reverse "possibility": a tuple of literal strings and parameter names
# (wrapped in _Param), and the tuple of parameter names in order.
class _Param(str):
    pass


Possibility = tuple[tuple[str, ...], tuple[str, ...]]

_ROUTE_PARAM = re.compile(r"<(?:(?P<converter>[^>:]+):)?(?P<parameter>[^>]+)>")


class RoutePattern:
    """A ``path()`` route such as ``'articles/<int:year>/'``."""

    def __init__(self, route: str, name: str | None = None, is_endpoint: bool = False) -> None:
        self.route = route
        self.name = name
        self.is_endpoint = is_endpoint
        self.converters: dict[str, Converter] = {}
        regex, pieces, params, end = ["^"], [], [], 0
        for m in _ROUTE_PARAM.finditer(route):
            conv_name, param = m.group("converter") or "str", m.group("parameter")
            if any(c.isspace() for c in m.group(0)):
                raise ImproperlyConfigured(f"route {route!r} has whitespace inside <...>")
            if not param.isidentifier():
                raise ImproperlyConfigured(f"route {route!r}: {param!r} is not a Python identifier")
            if conv_name not in _CONVERTERS:
                raise ImproperlyConfigured(
                    f"route {route!r} uses unknown converter {conv_name!r}; "
                    f"known: {', '.join(sorted(_CONVERTERS))}")
            self.converters[param] = _CONVERTERS[conv_name]
            regex += [re.escape(route[end:m.start()]), f"(?P<{param}>{_CONVERTERS[conv_name].regex})"]
            pieces += [route[end:m.start()], _Param(param)]
            params.append(param)
            end = m.end()
        regex.append(re.escape(route[end:]))
        pieces.append(route[end:])
        if is_endpoint:
            regex.append(r"\Z")
        self.regex = re.compile("".join(regex))
        self.possibilities: list[Possibility] = [
            (tuple(p for p in pieces if p), tuple(params))]
        first = _ROUTE_PARAM.search(route)
        self.literal_prefix = route[:first.start()] if first else route
        # Most routes have no parameter: compare strings, skip the regex.
        self._plain = None if self.converters else route

    def match(self, path: str) -> tuple[str, tuple[Any, ...], dict[str, Any]] | None:
        plain = self._plain
        if plain is not None:
            if self.is_endpoint:
                return ("", (), {}) if path == plain else None
            return (path[len(plain):], (), {}) if path.startswith(plain) else None
        m = self.regex.search(path)
        if m is None:
            return None
        kwargs = m.groupdict()
        try:
            for key, value in kwargs.items():
                kwargs[key] = self.converters[key].to_python(value)
        except ValueError:
            return None
        return path[m.end():], (), kwargs

    @property
    def regex_text(self) -> str:
        return self.regex.pattern

    def __str__(self) -> str:
        return self.route


class RegexPattern:
    """A ``re_path()`` regex; named groups become kwargs, else groups become args."""

    def __init__(self, regex: str, name: str | None = None, is_endpoint: bool = False) -> None:
        self.name = name
        self.is_endpoint = is_endpoint
        try:
            self.regex = re.compile(regex)
        except re.error as e:
            raise ImproperlyConfigured(f"{regex!r} is not a valid regular expression: {e}") from e
        self.converters: dict[str, Converter] = {}
        self._full = is_endpoint and regex.endswith("$")
        self.literal_prefix = _regex_literal_prefix(regex)
        try:
            self.possibilities = _normalize(regex)
        except _Unreversible:
            self.possibilities = []

    def match(self, path: str) -> tuple[str, tuple[Any, ...], dict[str, Any]] | None:
        m = self.regex.fullmatch(path) if self._full else self.regex.search(path)
        if m is None:
            return None
        named = m.groupdict()
        args = () if named else m.groups()
        return path[m.end():], args, {k: v for k, v in named.items() if v is not None}

    @property
    def regex_text(self) -> str:
        return self.regex.pattern

    def __str__(self) -> str:
        return self.regex.pattern


_REGEX_SPECIAL = set(".^$*+?{}[]|()\\")


def _regex_literal_prefix(regex: str) -> str:
    """The text every match must start with, or '' when unsure (used only to skip)."""
    if not regex.startswith("^") or "|" in regex:
        return ""
    out: list[str] = []
    i = 1
    while i < len(regex):
        c = regex[i]
        if c == "\\" and i + 1 < len(regex) and not regex[i + 1].isalnum():
            out.append(regex[i + 1])
            i += 2
        elif c in _REGEX_SPECIAL:
            if c in "*?{" and out:
                out.pop()  # the previous character may be absent
            break
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _skip_group(regex: str, i: int) -> int:
    """Index just past the group whose '(' is at ``i``."""
    depth = 0
    while i < len(regex):
        c = regex[i]
        if c == "\\":
            i += 2
            continue
        if c == "[":
            i = regex.index("]", i + 2 if regex[i + 1:i + 2] == "]" else i + 1) + 1
            continue
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    raise _Unreversible(regex)


def _normalize(regex: str) -> list[Possibility]:
    """Turn a regex back into URL templates, the way Django's ``normalize()`` does
    for the constructs URLconfs use: literals, groups, optional groups, simple
    quantifiers and alternation (first branch). Anything else is unreversible."""
    positional = [0]

    def seq(text: str) -> list[tuple[list[str], list[str]]]:
        results: list[tuple[list[str], list[str]]] = [([], [])]
        i = 0
        while i < len(text):
            c = text[i]
            if c == "|":
                break  # the first alternative stands for the whole
            if c in "^$" or text.startswith(r"\Z", i) or text.startswith(r"\A", i):
                i += 1 if c in "^$" else 2
                continue
            if c == "(":
                end = _skip_group(text, i)
                body = text[i + 1:end - 1]
                alts: list[tuple[list[str], list[str]]]
                if body.startswith("?P<"):
                    name = body[3:body.index(">")]
                    alts = [([_Param(name)], [name])]
                elif body.startswith("?:"):
                    alts = seq(body[2:])
                elif body.startswith("?"):
                    raise _Unreversible(text)
                else:
                    name = f"_{positional[0]}"
                    positional[0] += 1
                    alts = [([_Param(name)], [name])]
                i = end
            elif c == "\\":
                if i + 1 >= len(text) or text[i + 1].isalnum():
                    raise _Unreversible(text)
                alts = [([text[i + 1]], [])]
                i += 2
            elif c in ".[":
                raise _Unreversible(text)
            else:
                alts = [([c], [])]
                i += 1
            # A quantifier on the piece just read.
            q = text[i] if i < len(text) else ""
            if q and q in "?*":
                i += 1
                if text[i:i + 1] == "?":
                    i += 1
                has_params = any(params for _, params in alts)
                alts = [([], [])] + alts if has_params else [([], [])]
            elif q == "+":
                i += 1
            elif q == "{":
                close = text.index("}", i)
                low = int(text[i + 1:close].split(",")[0] or 0)
                i = close + 1
                alts = [(pieces * low, params * low) for pieces, params in alts] if low else [([], [])]
            results = [(p1 + p2, a1 + a2) for p1, a1 in results for p2, a2 in alts]
        return results

    out: list[Possibility] = []
    for pieces, params in seq(regex):
        merged: list[str] = []
        for piece in pieces:
            if merged and not isinstance(piece, _Param) and not isinstance(merged[-1], _Param):
                merged[-1] += piece
            else:
                merged.append(piece)
        out.append((tuple(merged), tuple(params)))
    return out


# --- the tree -----------------------------------------------------------------------

class ResolverMatch:
    """What ``resolve()`` found. Unpacks as ``func, args, kwargs`` like Django's."""

    __slots__ = ("func", "args", "kwargs", "url_name", "route", "app_names", "namespaces")

    def __init__(self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
                 url_name: str | None, route: str, app_names: list[str] | None = None,
                 namespaces: list[str] | None = None) -> None:
        self.func, self.args, self.kwargs = func, args, kwargs
        self.url_name, self.route = url_name, route
        self.app_names = [x for x in app_names or [] if x]
        self.namespaces = [x for x in namespaces or [] if x]

    @property
    def app_name(self) -> str:
        return ":".join(self.app_names)

    @property
    def namespace(self) -> str:
        return ":".join(self.namespaces)

    @property
    def view_name(self) -> str:
        return ":".join([*self.namespaces, self.url_name or ""]) if self.url_name else self.namespace

    def __iter__(self) -> Any:
        return iter((self.func, self.args, self.kwargs))

    def __repr__(self) -> str:
        return (f"ResolverMatch(func={getattr(self.func, '__qualname__', self.func)!r}, "
                f"args={self.args!r}, kwargs={self.kwargs!r}, url_name={self.url_name!r}, "
                f"namespaces={self.namespaces!r}, route={self.route!r})")


Pattern = RoutePattern | RegexPattern


class URLPattern:
    """A leaf: a pattern, the view it routes to, and extra kwargs for the view."""

    def __init__(self, pattern: Pattern, callback: Callable[..., Any],
                 default_args: dict[str, Any] | None = None, name: str | None = None) -> None:
        self.pattern, self.callback = pattern, callback
        self.default_args = default_args or {}
        self.name = name

    def resolve(self, path: str) -> ResolverMatch | None:
        m = self.pattern.match(path)
        if m is None:
            return None
        _, args, kwargs = m
        if self.default_args:
            kwargs = {**kwargs, **self.default_args}
        return ResolverMatch(self.callback, args, kwargs, self.name, str(self.pattern))

    def __repr__(self) -> str:
        return f"<URLPattern {str(self.pattern)!r}" + (f" [name={self.name!r}]>" if self.name else ">")


# A reverse entry: possibilities, regex text (without '^'), defaults, converters.
_Entry = tuple[list[Possibility], str, dict[str, Any], dict[str, Converter]]


def _join(prefix: list[Possibility], entry: list[Possibility]) -> list[Possibility]:
    return [(a + b, pa + pb) for a, pa in prefix for b, pb in entry]


class URLResolver:
    """A node: a prefix pattern and a list of patterns (a list, a module with
    ``urlpatterns``, or a dotted module name), with optional namespace."""

    def __init__(self, pattern: Pattern, urlconf: Any, default_kwargs: dict[str, Any] | None = None,
                 app_name: str | None = None, namespace: str | None = None) -> None:
        self.pattern, self.urlconf = pattern, urlconf
        self.default_kwargs = default_kwargs or {}
        self.app_name, self.namespace = app_name, namespace
        self._patterns: list[URLPattern | URLResolver] | None = None
        self._index: tuple[dict[str, tuple[Any, ...]], tuple[Any, ...]] | None = None
        self._reverse: tuple[dict[Any, list[_Entry]], dict[str, Any], dict[str, list[str]]] | None = None

    @property
    def url_patterns(self) -> list[URLPattern | URLResolver]:
        if self._patterns is None:
            conf = self.urlconf
            if isinstance(conf, str):
                conf = importlib.import_module(conf)
            patterns = getattr(conf, "urlpatterns", conf)
            try:
                self._patterns = list(patterns)
            except TypeError:
                raise ImproperlyConfigured(f"URLconf {self.urlconf!r} has no patterns") from None
        return self._patterns

    def _build_index(self) -> tuple[dict[str, tuple[Any, ...]], tuple[Any, ...]]:
        keyed: dict[str, list[int]] = {}
        wild: list[int] = []
        patterns = self.url_patterns
        for i, p in enumerate(patterns):
            prefix = p.pattern.literal_prefix
            slash = prefix.find("/")
            if slash >= 0:
                keyed.setdefault(prefix[:slash + 1], []).append(i)
            else:
                wild.append(i)
        index = {k: tuple(patterns[i] for i in sorted(v + wild)) for k, v in keyed.items()}
        self._index = (index, tuple(patterns[i] for i in wild))
        return self._index

    def resolve(self, path: str) -> ResolverMatch:
        """Match ``path`` (relative to the parent) or raise :class:`Resolver404`."""
        m = self.pattern.match(path)
        if m is None:
            raise Resolver404(path)
        new_path, args, kwargs = m
        index, wild = self._index or self._build_index()
        slash = new_path.find("/")
        candidates = index.get(new_path[:slash + 1], wild) if slash >= 0 else wild
        for p in candidates:
            if isinstance(p, URLPattern):
                sub = p.resolve(new_path)
                if sub is None:
                    continue
                route = ""
            else:
                try:
                    sub = p.resolve(new_path)
                except Resolver404:
                    continue
                route = str(p.pattern)
            merged = {**kwargs, **self.default_kwargs, **sub.kwargs} if (
                kwargs or self.default_kwargs) else sub.kwargs
            sub_args = sub.args if merged else args + sub.args
            if route:
                route = route + sub.route.removeprefix("^")
            else:
                route = sub.route
            return ResolverMatch(sub.func, sub_args, merged, sub.url_name, route,
                                 [self.app_name or "", *sub.app_names],
                                 [self.namespace or "", *sub.namespaces])
        raise Resolver404(new_path, self)

    def all_routes(self) -> list[list[Any]]:
        """Every leaf as the chain of patterns leading to it (for 404 debug pages)."""
        out: list[list[Any]] = []
        for p in self.url_patterns:
            if isinstance(p, URLResolver):
                out.extend([p, *chain] for chain in p.all_routes())
            else:
                out.append([p])
        return out

    # --- reverse ---

    def _populate(self) -> tuple[dict[Any, list[_Entry]], dict[str, Any], dict[str, list[str]]]:
        if self._reverse is not None:
            return self._reverse
        lookups: dict[Any, list[_Entry]] = {}
        namespaces: dict[str, Any] = {}
        apps: dict[str, list[str]] = {}
        # Walked backwards like Django, so a later pattern with the same name
        # is tried first and the last deployed instance is an app's default.
        for p in reversed(self.url_patterns):
            text = p.pattern.regex_text.removeprefix("^")
            if isinstance(p, URLPattern):
                entry = (p.pattern.possibilities, text, p.default_args, p.pattern.converters)
                lookups.setdefault(p.callback, []).append(entry)
                if p.name is not None:
                    lookups.setdefault(p.name, []).append(entry)
                continue
            sub_lookups, sub_ns, sub_apps = p._populate()
            if p.app_name:
                apps.setdefault(p.app_name, []).append(p.namespace or p.app_name)
                namespaces[p.namespace or p.app_name] = (
                    p.pattern.possibilities, text, dict(p.pattern.converters), p)
                continue
            for key, entries in sub_lookups.items():
                for poss, sub_text, defaults, convs in entries:
                    lookups.setdefault(key, []).append((
                        _join(p.pattern.possibilities, poss), text + sub_text,
                        {**defaults, **p.default_kwargs},
                        {**self.pattern.converters, **p.pattern.converters, **convs}))
            for ns, (poss, sub_text, convs, resolver) in sub_ns.items():
                namespaces[ns] = (_join(p.pattern.possibilities, poss), text + sub_text,
                                  {**p.pattern.converters, **convs}, resolver)
            for app, instances in sub_apps.items():
                apps.setdefault(app, []).extend(instances)
        self._reverse = (lookups, namespaces, apps)
        return self._reverse

    def reverse(self, viewname: str | Callable[..., Any], args: Sequence[Any] | None = None,
                kwargs: dict[str, Any] | None = None, current_app: str | None = None,
                prefix: str = "/") -> str:
        """The URL for ``viewname`` (``'ns:name'``, a name, or a view callable).

        Raises :class:`NoReverseMatch` naming the patterns tried (or close names
        when none has this name), and ValueError when given both args and kwargs.
        """
        if args and kwargs:
            raise ValueError("reverse() takes args or kwargs, not both")
        resolver: URLResolver = self
        prefix_poss: list[Possibility] = [((), ())]
        prefix_text = ""
        ns_converters: dict[str, Converter] = {}
        view: Any
        if isinstance(viewname, str):
            *path, view = viewname.split(":")
        else:
            path, view = [], viewname
        current = current_app.split(":") if current_app else []
        current.reverse()
        resolved: list[str] = []
        for ns in path:
            _, namespaces, apps = resolver._populate()
            current_ns = current.pop() if current else None
            instances = apps.get(ns)
            if instances is not None:
                if current_ns and current_ns in instances:
                    ns = current_ns
                elif ns not in instances:
                    ns = instances[0]
            if ns != current_ns:
                current = []
            if ns not in namespaces:
                where = f" inside {':'.join(resolved)!r}" if resolved else ""
                known = sorted(namespaces)
                raise NoReverseMatch(f"{ns!r} is not a registered namespace{where}; "
                                     f"registered: {known}")
            poss, text, convs, resolver = namespaces[ns]
            prefix_poss = _join(prefix_poss, poss)
            prefix_text += text
            ns_converters.update(convs)
            resolved.append(ns)
        return resolver._reverse_in(view, args or (), kwargs or {}, prefix, prefix_poss,
                                    prefix_text, ns_converters, viewname)

    def _reverse_in(self, view: Any, args: Sequence[Any], kwargs: dict[str, Any], prefix: str,
                    prefix_poss: list[Possibility], prefix_text: str,
                    ns_converters: dict[str, Converter], viewname: Any) -> str:
        lookups = self._populate()[0]
        entries = lookups.get(view, [])
        for poss, text, defaults, convs in entries:
            converters = {**ns_converters, **convs}
            for pieces, params in _join(prefix_poss, poss):
                if args:
                    if len(args) != len(params):
                        continue
                    subs = dict(zip(params, args, strict=True))
                else:
                    if set(kwargs).symmetric_difference(params).difference(defaults):
                        continue
                    if any(k not in params and kwargs.get(k, v) != v for k, v in defaults.items()):
                        continue
                    subs = kwargs
                try:
                    text_subs = {k: converters[k].to_url(v) if k in converters else str(v)
                                 for k, v in subs.items()}
                except ValueError:
                    continue
                candidate = "".join(text_subs[p] if isinstance(p, _Param) else p for p in pieces)
                if _compiled("^" + prefix_text + text).search(candidate):
                    url = quote(prefix + candidate, safe="!$&'()*+,;=/~:@")
                    return "/%2F" + url[2:] if url.startswith("//") else url
        name = getattr(viewname, "__qualname__", viewname)
        if not entries:
            names = [k for k in lookups if isinstance(k, str)]
            close = difflib.get_close_matches(str(view), names, n=3)
            hint = f" Did you mean {close}?" if close else f" Known names: {sorted(names)[:20]}"
            raise NoReverseMatch(f"Reverse for {name!r} not found: no pattern has that name.{hint}")
        tried = [prefix_text + text for _, text, _, _ in entries]
        raise NoReverseMatch(
            f"Reverse for {name!r} with args {tuple(args)!r} and kwargs {kwargs!r} not found. "
            f"{len(tried)} pattern(s) tried: {tried}")

    def __repr__(self) -> str:
        ns = f" ({self.app_name}:{self.namespace})" if self.app_name else ""
        return f"<URLResolver {str(self.pattern)!r}{ns}>"


@functools.lru_cache(maxsize=256)
def _compiled(regex: str) -> re.Pattern[str]:
    return re.compile(regex)


# --- the public constructors --------------------------------------------------------

def include(arg: Any, namespace: str | None = None) -> tuple[Any, str | None, str | None]:
    """Mount another URLconf: a list, a module, a dotted name, or ``(patterns, app_name)``.

    The module's ``app_name`` attribute (or the tuple's second item) is the
    application namespace; ``namespace`` is the instance namespace and
    defaults to the application namespace. Raises ImproperlyConfigured for an
    instance namespace without an application namespace.
    """
    app_name = None
    if isinstance(arg, tuple):
        if len(arg) != 2:
            raise ImproperlyConfigured("include() takes (patterns, app_name) as a tuple")
        arg, app_name = arg
    if isinstance(arg, str):
        arg = importlib.import_module(arg)
    if isinstance(arg, ModuleType):
        app_name = app_name or getattr(arg, "app_name", None)
    if namespace and not app_name:
        raise ImproperlyConfigured(
            f"include() with namespace {namespace!r} needs an app_name: set app_name in the "
            "included module or pass (patterns, app_name)")
    return arg, app_name, namespace or app_name


def _make(view: Any, name: str | None, kwargs: dict[str, Any] | None,
          pattern: Pattern) -> URLPattern | URLResolver:
    if isinstance(view, tuple):
        urlconf, app_name, namespace = view
        return URLResolver(pattern, urlconf, kwargs, app_name=app_name, namespace=namespace)
    if callable(view):
        return URLPattern(pattern, view, kwargs, name)
    raise TypeError(f"view must be a callable or include(), not {type(view).__name__}")


def path(route: str, view: Any, kwargs: dict[str, Any] | None = None,
         name: str | None = None) -> URLPattern | URLResolver:
    """Route ``route`` (with ``<conv:name>`` parameters) to a view or an include()."""
    return _make(view, name, kwargs, RoutePattern(route, name, is_endpoint=not isinstance(view, tuple)))


def re_path(route: str, view: Any, kwargs: dict[str, Any] | None = None,
            name: str | None = None) -> URLPattern | URLResolver:
    """Route a regular expression to a view or an include()."""
    return _make(view, name, kwargs, RegexPattern(route, name, is_endpoint=not isinstance(view, tuple)))


def get_resolver(urlconf: Any) -> URLResolver:
    """The root resolver for a URLconf (list, module, dotted name, or a resolver)."""
    if isinstance(urlconf, URLResolver):
        return urlconf
    return URLResolver(RegexPattern("^/"), urlconf)


def resolve(path: str, urlconf: Any) -> ResolverMatch:
    """Resolve an absolute path (``'/articles/2024/'``) against ``urlconf``."""
    return get_resolver(urlconf).resolve(path)


def reverse(viewname: str | Callable[..., Any], urlconf: Any, args: Sequence[Any] | None = None,
            kwargs: dict[str, Any] | None = None, current_app: str | None = None,
            prefix: str = "/") -> str:
    """The absolute path for ``viewname`` in ``urlconf``; see :meth:`URLResolver.reverse`."""
    return get_resolver(urlconf).reverse(viewname, args, kwargs, current_app, prefix)

"""Objects named in the configuration as ``MODULE:ATTR.ATTR``.

That form is what Python packaging calls an object reference (entry points
use it); the app (``myproject.wsgi:application``) and the server hooks
(``myproject.hooks:post_fork``) are named this way. Each caller keeps its
own policy (the app's default names and factory calls, a hook's callable
check); this module only finds the object, and says clearly when there is
none.

``pkgutil.resolve_name`` does the same walk, but reports a module that is
missing and a module whose own import of something else fails alike; an
operator needs to tell "wrong name" from "broken app".
"""

from __future__ import annotations

import importlib


class ObjectNotFound(LookupError):
    """The reference names nothing: there is no such module, or the module
    has no such attribute. The message is one log line that says which."""


def import_object(module: str, attrs: str = "") -> object:
    """Import ``module`` and return the object at the dotted path ``attrs``
    in it (the module itself when ``attrs`` is empty).

    Raises ObjectNotFound when ``module`` does not exist (nor a package on
    its way) or an attribute on the path is missing. Anything raised while
    the module runs is raised as it is, with its traceback: that includes
    an ImportError for something the module itself imports, which means a
    broken module, not a wrong name.
    """
    if not module or module.startswith("."):
        raise ObjectNotFound(f"{module!r} is not a module name (write MODULE:NAME, "
                             "MODULE absolute and dotted)")
    try:
        obj: object = importlib.import_module(module)
    except ModuleNotFoundError as e:
        # e.name is the module that was not found: ours, or one of the
        # packages it lies in; anything else was imported by the module.
        if e.name is None or not (module == e.name or module.startswith(e.name + ".")):
            raise
        raise ObjectNotFound(f"cannot import module {module!r}: {e}") from e
    if not attrs:
        return obj
    found: list[str] = []
    for part in attrs.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            where = f" ({'.'.join(found)!r} has no {part!r})" if found else ""
            raise ObjectNotFound(f"module {module!r} has no attribute {attrs!r}{where}") \
                from None
        found.append(part)
    return obj

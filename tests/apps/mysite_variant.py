"""The example site's settings (examples/django_site), changed for one test by
the environment: ``VARIANT_PREFORK`` (JSON) replaces PREFORK, and
``VARIANT_BREAK_CHECKS=1`` drops the messages middleware the admin needs, a
system check error (admin.E409)."""

import json
import os

from mysite.settings import *  # noqa: F403
from mysite.settings import MIDDLEWARE

if "VARIANT_PREFORK" in os.environ:
    PREFORK = json.loads(os.environ["VARIANT_PREFORK"])
if os.environ.get("VARIANT_BREAK_CHECKS"):
    MIDDLEWARE = [m for m in MIDDLEWARE if not m.endswith(".MessageMiddleware")]

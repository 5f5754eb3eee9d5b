"""The example Django site, with a query run while it is imported — in the
master, under ``--preload`` — as an app that warms a cache or checks its
schema at start-up does. ``RAW_SQLITE_AT_IMPORT=PATH`` also opens a plain
sqlite3 connection to PATH, which prefork does not know and cannot close: the
control that shows an inherited descriptor is seen when there is one."""

import os
import sqlite3

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")

from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.db import connection  # noqa: E402

application = get_wsgi_application()

with connection.cursor() as cursor:
    cursor.execute("SELECT count(*) FROM mysite_entry")
    ENTRIES_AT_IMPORT = cursor.fetchone()[0]

if os.environ.get("RAW_SQLITE_AT_IMPORT"):
    RAW = sqlite3.connect(os.environ["RAW_SQLITE_AT_IMPORT"])
    RAW.execute("CREATE TABLE IF NOT EXISTS t (x)")

"""Settings of the example site.

Close to what ``django-admin startproject`` writes, with production defaults:
DEBUG is off unless ``MYSITE_DEBUG=1``, and the secret key comes from the
environment when set. Sessions live in signed cookies, so most pages serve
without ``migrate``; the admin, the guestbook and the upload form need the
tables (``python manage.py migrate``). The sqlite file is ``MYSITE_DB``, or
``mysite.sqlite3`` in ``MYSITE_DATA_DIR``, or in the system's temp directory.
"""

import os
import tempfile
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent

SECRET_KEY = os.environ.get(
    "MYSITE_SECRET_KEY", "example-only-not-secret-0b3c1d9e5a7f4e2c8d6b"
)
DEBUG = os.environ.get("MYSITE_DEBUG", "") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]", "test"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "prefork.contrib.django",   # manage.py prefork
    "mysite",
]

# Read by `manage.py prefork`, under prefork.toml, PREFORK_* and the flags.
PREFORK = {
    "workers": 2,
    "threads": 4,
}

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "mysite.urls"
WSGI_APPLICATION = "mysite.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("MYSITE_DB")
        or Path(os.environ.get("MYSITE_DATA_DIR") or tempfile.gettempdir()) / "mysite.sqlite3",
        # Several workers write at once: wait for sqlite's lock, don't fail.
        "OPTIONS": {"timeout": 20, "transaction_mode": "IMMEDIATE",
                    "init_command": "PRAGMA journal_mode=WAL;"},
    }
}

# Cookie-backed sessions: no table, so no migrations are needed to serve.
SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"

# request.body of the upload view may hold a few megabytes.
DATA_UPLOAD_MAX_MEMORY_SIZE = 16 * 1024 * 1024

# Files the download view may send (a test points this at its own folder).
DOWNLOAD_DIR = Path(os.environ.get("MYSITE_DOWNLOAD_DIR") or BASE_DIR / "files")

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# `manage.py collectstatic` puts the files here, for nginx in production;
# with DEBUG on, `manage.py prefork` serves them itself.
STATIC_ROOT = os.environ.get("MYSITE_STATIC_ROOT") or BASE_DIR.parent / "staticfiles"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "loggers": {"django": {"handlers": ["stderr"], "level": "WARNING"}},
}

"""Settings of the example site.

Close to what ``django-admin startproject`` writes, with production defaults:
DEBUG is off unless ``MYSITE_DEBUG=1``, the secret key comes from the
environment when set, and the site runs without ``migrate``: sessions live in
signed cookies and no view touches the database. The sqlite file (created only
if something does) goes to ``MYSITE_DATA_DIR``, or the system's temp directory.
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
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "mysite",
]

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
        "NAME": Path(os.environ.get("MYSITE_DATA_DIR") or tempfile.gettempdir())
        / "mysite.sqlite3",
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
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "loggers": {"django": {"handlers": ["stderr"], "level": "WARNING"}},
}

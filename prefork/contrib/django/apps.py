from django.apps import AppConfig


class PreforkConfig(AppConfig):
    """Gives ``manage.py prefork``; no models, no signals."""

    name = "prefork.contrib.django"
    label = "prefork"
    verbose_name = "prefork"

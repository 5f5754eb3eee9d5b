"""prefork for Django projects.

Put ``"prefork.contrib.django"`` in ``INSTALLED_APPS`` and run
``python manage.py prefork [addrport]``: the project's ``WSGI_APPLICATION``
served by prefork, with the settings in ``PREFORK = {...}`` (under the TOML
file, the ``PREFORK_*`` environment and the flags), Django's system checks
first, and static files in DEBUG. See docs/django.md.

``prefork start`` needs no app here: given the project's directory or its
settings module it finds the application itself (prefork.app).
"""

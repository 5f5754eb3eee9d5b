"""WSGI entry point of the example site: ``prefork start mysite.wsgi:application``.

Run it with ``examples/django_site`` on the import path (``PYTHONPATH`` or the
working directory: ``prefork start`` adds its working directory to ``sys.path``).
"""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")

application = get_wsgi_application()

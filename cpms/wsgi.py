"""WSGI entry point, for management tooling only; the product is served over ASGI by daphne."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cpms.settings")
application = get_wsgi_application()

"""Production settings: refuse to start with unsafe values.

Required: ``DJANGO_SECRET_KEY``. Also read: ``DJANGO_ALLOWED_HOSTS``,
``DJANGO_CSRF_TRUSTED_ORIGINS``, ``DATABASE_URL``, ``CELERY_BROKER_URL``, ``DJANGO_SECURE_COOKIES``,
``DJANGO_SECURE_SSL_REDIRECT``, ``DJANGO_SECURE_HSTS_SECONDS`` and everything in ``base``.
"""

import os

from django.core.exceptions import ImproperlyConfigured

from webapp.settings.base import *  # noqa: F403
from webapp.settings.base import EMBEDDED_SECRET_KEY, env_bool

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "").strip()
if not SECRET_KEY:
    raise ImproperlyConfigured(
        "DJANGO_SECRET_KEY must be set in production (for example: "
        "python -c 'import secrets; print(secrets.token_urlsafe(50))')."
    )
if SECRET_KEY == EMBEDDED_SECRET_KEY:
    raise ImproperlyConfigured(
        "DJANGO_SECRET_KEY is the embedded development key; set a secret one in production."
    )
if env_bool("DJANGO_DEBUG", False):
    raise ImproperlyConfigured(
        "DJANGO_DEBUG must be off in production (unset it or set DJANGO_DEBUG=0)."
    )
DEBUG = False

# TLS usually ends at nginx (or a load balancer in front of it), which sets X-Forwarded-Proto.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", True)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", False)
SECURE_HSTS_SECONDS = int(os.environ.get("DJANGO_SECURE_HSTS_SECONDS", "0"))
SECURE_CONTENT_TYPE_NOSNIFF = True
DATA_SERVING = os.environ.get("ANNOTOME_DATA_SERVING", "nginx")
# The viewer embeds Neuroglancer in a same-origin iframe: SAMEORIGIN is deliberate.
SILENCED_SYSTEM_CHECKS = ["security.W019"]

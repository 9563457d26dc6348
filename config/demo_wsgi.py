"""The demo's WSGI application (``make demo`` serves it with gunicorn): Django plus its static files from the
same processes, as ``runserver`` would. Uploaded media are answered by Django itself (``SERVE_MEDIA``,
config/media.py). A production deployment serves /static/ (after ``collectstatic``) and /media/ from its web
server or a CDN instead; see docs/deployment.md."""

from __future__ import annotations

import os

from django.contrib.staticfiles.handlers import StaticFilesHandler
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

application = StaticFilesHandler(get_wsgi_application())

"""The demo's WSGI application (``make demo`` serves it with gunicorn): Django plus its static files and the
uploaded media from the same processes. A production deployment serves /static/ (after ``collectstatic``)
and /media/ from its web server or a CDN instead; see docs/deployment.md."""

from __future__ import annotations

import os

from django.conf import settings
from django.contrib.staticfiles.handlers import StaticFilesHandler
from django.core.wsgi import get_wsgi_application
from django.http import FileResponse, HttpRequest
from django.views.static import serve

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")


class MediaFilesHandler(StaticFilesHandler):
    """Serves MEDIA_URL from MEDIA_ROOT, as StaticFilesHandler serves STATIC_URL."""

    def get_base_url(self) -> str:
        return str(settings.MEDIA_URL)

    def serve(self, request: HttpRequest) -> FileResponse:
        response = serve(request, self.file_path(request.path), document_root=str(settings.MEDIA_ROOT))
        # Uploaded files are served as what their extension says, never sniffed into something else.
        response["X-Content-Type-Options"] = "nosniff"
        return response


application = MediaFilesHandler(StaticFilesHandler(get_wsgi_application()))

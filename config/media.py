"""``/media/`` served by Django (``SERVE_MEDIA``: the demo, or one machine with no web server in front).

Uploaded files come from marketers and remote stores. They are stored under names and extensions taken from
their decoded image format, and served here so that a browser never treats one as a page: ``nosniff`` (the
declared type is final) and a Content-Security-Policy that runs no script and loads nothing, should a file
be opened directly.
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponseBase
from django.urls import URLPattern, re_path
from django.views.static import serve

MEDIA_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; sandbox",
}


def serve_media(request: HttpRequest, path: str) -> HttpResponseBase:
    response = serve(request, path, document_root=str(settings.MEDIA_ROOT))
    for name, value in MEDIA_HEADERS.items():
        response[name] = value
    return response


def media_urlpatterns() -> list[URLPattern]:
    prefix = settings.MEDIA_URL.lstrip("/")
    return [re_path(rf"^{prefix}(?P<path>.*)$", serve_media, name="media")] if prefix else []
